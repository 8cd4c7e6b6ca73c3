"""MLKD's strong view in both input paths: the same views, pure functions of (seed, epoch,
index), and a weak view unchanged by it."""

import itertools

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from configs import benchmarks
from figkd_jax import data
from figkd_jax.data import device_input, pipeline, randaugment, sources
from figkd_jax.io import events
from figkd_jax.trainer import train
from tests.test_train_tfds import mock_tfds  # noqa: F401 (a fixture)

CIFAR = ml_collections.ConfigDict({"name": "cifar100"})
REPLICATED = NamedSharding(Mesh(np.asarray(jax.devices()), ("data",)), P())


def _mock_cifar(monkeypatch, num_examples=40):
    info = data.get_info("cifar100")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (num_examples, *info.image_shape), dtype=np.uint8)
    labels = rng.integers(0, info.num_classes, num_examples).astype(np.int32)
    monkeypatch.setattr(pipeline, "load_split", lambda *_: sources.Split(images, labels))
    return info, images, labels


def test_both_paths_give_the_same_strong_view(monkeypatch):
    info, images, labels = _mock_cifar(monkeypatch)  # 2 steps of 16 per epoch
    steps = 3
    host = list(
        itertools.islice(
            data.train_stream(CIFAR, global_batch_size=16, seed=5, strong_view=True), steps
        )
    )
    plain = list(itertools.islice(data.train_stream(CIFAR, global_batch_size=16, seed=5), steps))
    dataset = device_input.DeviceDataset.from_arrays(
        images, labels, info, seed=5, global_batch_size=16, sharding=REPLICATED, strong_view=True
    )
    batch_at = jax.jit(lambda a, p, s: device_input.batch_at(a, p, s, info=info))
    finish = jax.jit(lambda i, d: device_input.finish_strong_view(i, d, info=info))
    for step in range(steps):
        ours = jax.device_get(batch_at(dataset.arrays, dataset.plan(step // 2), step))
        theirs = host[step]
        assert theirs["strong_image"].dtype == np.uint8
        assert theirs["strong_draws"].shape == (16, randaugment.STRONG_VIEW_DRAWS)
        # Both paths run the same transforms: the same draws, crops, flips and pixels.
        for key in ("label", "image", "strong_image", "strong_draws"):
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
        # The weak view is the batch of a run without a strong view (its own random stream).
        np.testing.assert_array_equal(theirs["image"], plain[step]["image"])
        strong = np.asarray(finish(ours["strong_image"], ours["strong_draws"]))
        assert strong.shape == ours["image"].shape and strong.dtype == np.float32
        assert not np.allclose(strong, ours["image"])


def test_strong_view_is_a_function_of_seed_epoch_and_index():
    first = pipeline.strong_view_draws(3, 2, 50).numpy()
    np.testing.assert_array_equal(first, pipeline.strong_view_draws(3, 2, 50).numpy())
    assert not np.array_equal(first, pipeline.strong_view_draws(3, 1, 50).numpy())
    assert not np.array_equal(first, pipeline.strong_view_draws(4, 2, 50).numpy())
    # A row does not depend on the split size: example i's draws are its own.
    np.testing.assert_array_equal(first[:20], pipeline.strong_view_draws(3, 2, 20).numpy()[:20])


def test_variable_resolution_datasets_refuse_a_strong_view():
    with pytest.raises(ValueError, match=r"strong view .* fixed-resolution"):
        data.train_stream(
            ml_collections.ConfigDict({"name": "stanford_dogs"}),
            global_batch_size=4,
            seed=0,
            strong_view=True,
        )


@pytest.mark.slow
@pytest.mark.usefixtures("mock_tfds")
def test_mlkd_trains_end_to_end_on_both_input_paths(tmp_path):
    def small(arg):
        config = benchmarks.benchmark_config("cifar100", arg)
        config.model = "resnet8"
        config.num_epochs = 1
        config.optim.lr_decay_epochs = ()
        config.batch_size = 4
        config.eval_batch_size = 4
        config.log_every_steps = 1
        return config

    teacher_dir = str(tmp_path / "teacher")
    train.train_and_evaluate(small("student=resnet8"), teacher_dir)
    histories = {}
    for path in ("host", "device"):
        config = small("teacher=resnet56,student=resnet20,method=mlkd")
        config.teacher.model = "resnet8"
        config.teacher.workdir = teacher_dir
        config.input_on_device = path
        results = train.train_and_evaluate(config, str(tmp_path / path))
        assert results["epochs_done"] == 1
        histories[path] = results["history"][-1]
    tags = set(events.read_scalars(str(tmp_path / "host")))
    assert {"train/loss_mlkd_instance", "train/loss_mlkd_class", "train/loss_mlkd_batch"} <= tags
    # Same examples, same strong views; the weak views agree up to float32 rounding of the
    # normalisation (1e-6), which two steps of a small network keep far below 1e-3.
    host, device = histories["host"], histories["device"]
    for key in ("top1", "top5", "agreement"):
        assert device[key] == pytest.approx(host[key], abs=1e-3), key
