"""A few training steps end to end on mocked TFDS data: CIFAR-100 and CUB-200."""

import dataclasses
import importlib

import pytest
import tensorflow_datasets as tfds

from figkd_jax import data
from figkd_jax.data import sources
from figkd_jax.trainer import run_setup, train

NUM_EXAMPLES = 8


@pytest.fixture
def mock_tfds(monkeypatch):
    """Random examples from each builder's feature spec; no files are read.

    mock_data neither marks builders prepared nor fills their split sizes, so
    both are patched as a prepared dataset would report them.
    """
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    monkeypatch.setattr(
        data,
        "prepared_info",
        lambda config: dataclasses.replace(
            data.get_info(config.name), num_train=NUM_EXAMPLES, num_eval=NUM_EXAMPLES
        ),
    )
    sources.load_split.cache_clear()
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE):
        yield
    sources.load_split.cache_clear()


def _small(config):
    # The benchmark configs with a small student and a tiny schedule.
    config.model = "resnet8"
    config.num_epochs = 2
    config.batch_size = 4
    config.eval_batch_size = 4
    config.log_every_steps = 1
    config.optim.lr_decay_epochs = (1,)
    return config


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "arg", "image_shape", "num_classes"),
    [
        ("cifar100", "student=resnet32x4", (32, 32, 3), 100),
        ("finegrained", "dataset=caltech_birds2011,student=resnet34_imagenet", (224, 224, 3), 200),
    ],
)
def test_teacher_then_student_on_mock_tfds(
    mock_tfds, tmp_path, module, arg, image_shape, num_classes
):
    get_config = importlib.import_module(f"configs.{module}").get_config
    teacher_dir = str(tmp_path / "teacher")
    teacher = train.train_and_evaluate(_small(get_config(arg)), teacher_dir)
    assert teacher["epochs_done"] == 2 and len(teacher["history"]) == 2
    assert run_setup.build_run(get_config(arg)).info.image_shape == image_shape

    student_config = _small(get_config(arg))
    student_config.method.name = "figkd"
    student_config.teacher.model = "resnet8"
    student_config.teacher.workdir = teacher_dir
    student = train.train_and_evaluate(student_config, str(tmp_path / "student"))
    record = student["history"][-1]
    assert student["teacher_eval"]["top1"] == pytest.approx(teacher["last_top1"])
    assert 0 <= record["top1"] <= record["top5"] <= 1 and 0 <= record["agreement"] <= 1
    assert student["config"]["dataset.name"] == (
        "cifar100" if module == "cifar100" else "caltech_birds2011"
    )
    assert run_setup.build_run(student_config).info.num_classes == num_classes
