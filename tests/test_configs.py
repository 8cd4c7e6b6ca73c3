"""Every benchmark config of docs/protocol.md instantiates and traces one train step."""

import importlib

import jax
import jax.numpy as jnp
import pytest

from figkd_jax import models
from figkd_jax.data import randaugment
from figkd_jax.trainer import methods, protocol, run_setup, steps, sweep


def _load(module, arg):
    return importlib.import_module(f"configs.{module}").get_config(arg)


def _trace_one_step(config):
    if config.teacher.model:
        config.teacher.workdir = "teacher-run"  # validate() only checks that it is set
    run = run_setup.build_run(config)
    batch = {
        "image": jax.ShapeDtypeStruct((2, *run.info.image_shape), jnp.float32),
        "label": jax.ShapeDtypeStruct((2,), jnp.int32),
    }
    if methods.get(config.method.name).needs_strong_view:
        batch["strong_image"] = jax.ShapeDtypeStruct((2, *run.info.image_shape), jnp.uint8)
        batch["strong_draws"] = jax.ShapeDtypeStruct(
            (2, randaugment.STRONG_VIEW_DRAWS), jnp.float32
        )
    teacher, teacher_vars = None, None
    if config.teacher.model:
        teacher = models.create(config.teacher.model, num_classes=run.info.num_classes)
        teacher_vars = jax.eval_shape(
            lambda: teacher.init(
                jax.random.key(0), jnp.zeros((1, *run.info.image_shape)), train=False
            )
        )
    state = jax.eval_shape(lambda: run_setup.initial_state(run))
    new_state, metrics = jax.eval_shape(
        steps.make_train_step(run, teacher),
        state,
        batch,
        teacher_vars,
    )
    assert metrics["loss"].shape == ()
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    return metrics


CIFAR_CASES = [
    (module, f"teacher={t},student={s},method=figkd")
    for module in ("cifar100", "tiny_imagenet")
    for t, s in protocol.pairs(module)
] + [
    ("cifar100", f"teacher={t},student={s},method={method}")
    for method in ("dist", "mlkd")
    for t, s in protocol.pairs("cifar100")
]
FINEGRAINED_CASES = [
    ("finegrained", f"dataset={d},teacher={t},student={s},method=dkd")
    for d in protocol.FINEGRAINED_DATASETS
    for t, s in protocol.pairs(d)
]


# mdistiller's TinyImageNet pairs, with every method but MLKD (its strong view is the CIFAR
# one, crop + flip + RandAugment; build_run refuses it on a rotating dataset).
TINY_IMAGENET_CASES = [
    ("tiny_imagenet", f"teacher={t},student={s},method={m}")
    for t, s in protocol.pairs("tiny_imagenet")
    if t == "resnet18"
    for m in methods.names()
    if not methods.get(m).needs_strong_view
]


@pytest.mark.parametrize(("module", "arg"), CIFAR_CASES + FINEGRAINED_CASES + TINY_IMAGENET_CASES)
def test_every_pair_traces_a_distillation_step(module, arg):
    metrics = _trace_one_step(_load(module, arg))
    assert {"loss_ce", "accuracy"} <= set(metrics)
    assert "method=ce" in arg or "agreement" in metrics


TEACHERS = sorted({t for t, _ in protocol.pairs("cifar100")})


@pytest.mark.parametrize("teacher", TEACHERS)
def test_every_teacher_config_traces_a_ce_step(teacher):
    config = _load("cifar100", f"student={teacher}")
    assert config.method.name == "ce" and config.teacher.model is None
    _trace_one_step(config)


@pytest.mark.parametrize("method", ["ce", "kd", "dkd", "figkd", "dist", "mlkd"])
def test_every_method_traces(method):
    arg = "teacher=resnet56,student=resnet20" if method != "ce" else "student=resnet20"
    config = _load("cifar100", f"{arg},method={method}")
    config.method.standardize = True
    _trace_one_step(config)


def test_reference_hyperparameters_per_pair():
    config = _load("cifar100", "teacher=resnet32x4,student=shufflenetv2,method=dkd")
    assert config.optim.learning_rate == 0.01 and config.method.dkd.beta == 8.0
    config = _load("cifar100", "teacher=vgg13,student=vgg8,method=dkd")
    assert config.optim.learning_rate == 0.05 and config.method.dkd.beta == 6.0
    config = _load("cifar100", "teacher=resnet110,student=resnet32,method=kd")
    assert config.method.dkd.beta == 2.0
    assert (config.method.kd.ce_weight, config.method.kd.kd_weight) == (0.1, 0.9)
    assert config.num_epochs == 240 and config.batch_size == 64
    assert tuple(config.optim.lr_decay_epochs) == (150, 180, 210)


def test_a_sweep_trains_the_teacher_under_the_teachers_protocol():
    config = _load("cifar100", "teacher=resnet32x4,student=shufflenetv1")  # as in the README
    config.sweep.train_teacher = True
    config.sweep.methods = ("ce", "kd")
    runs = dict(sweep.plan(config))
    teacher = runs.pop("teacher")
    assert (teacher.model, teacher.optim.learning_rate) == ("resnet32x4", 0.05)
    assert teacher.method.name == "ce"
    # The students keep the student protocol's rate (0.01 for a ShuffleNet).
    assert {name: run.optim.learning_rate for name, run in runs.items()} == {
        "ce_seed0": 0.01,
        "kd_seed0": 0.01,
    }


def test_a_sweeps_mlkd_runs_take_mlkds_own_solver():
    config = _load("cifar100", "teacher=resnet32x4,student=shufflenetv1")
    config.sweep.methods = ("kd", "mlkd")
    runs = dict(sweep.plan(config))
    solver = {name: (run.num_epochs, run.optim.learning_rate) for name, run in runs.items()}
    # Jin-Ying/Multi-Level-Logit-Distillation@77b91ec:configs/cifar100/ours/res32x4_shuv1.yaml.
    assert solver == {"kd_seed0": (240, 0.01), "mlkd_seed0": (960, 0.01)}
    assert runs["mlkd_seed0"].sweep.mlkd_num_epochs is None
    single = _load("cifar100", "teacher=resnet32x4,student=resnet8x4,method=mlkd")
    assert (single.num_epochs, single.optim.learning_rate) == (480, 0.025)


def test_a_strong_view_needs_an_rgb_pad_crop_flip_dataset():
    config = _load(
        "finegrained",
        "dataset=stanford_dogs,teacher=resnet34_imagenet,student=resnet18_imagenet,method=mlkd",
    )
    config.teacher.workdir = "teacher-run"
    with pytest.raises(run_setup.ConfigError, match=r"strong view .* not 'stanford_dogs'"):
        run_setup.build_run(config)
    config = _load("tiny_imagenet", "teacher=resnet18,student=shufflenetv2,method=mlkd")
    config.teacher.workdir = "teacher-run"
    with pytest.raises(run_setup.ConfigError, match=r"strong view .* not 'tiny_imagenet'"):
        run_setup.build_run(config)


@pytest.mark.parametrize("student", ["mobilenetv2_tin", "shufflenetv2", "resnet8x4"])
def test_tiny_imagenet_runs_mdistillers_setting(student):
    teacher = "resnet32x4" if student == "resnet8x4" else "resnet18"
    config = _load("tiny_imagenet", f"teacher={teacher},student={student},method=dkd")
    # configs/tiny_imagenet/dot/*.yaml, for every student (no lower rate for ShuffleNet).
    assert (config.batch_size, config.num_epochs, config.optim.learning_rate) == (256, 200, 0.2)
    assert tuple(config.optim.lr_decay_epochs) == (60, 120, 160)
    assert (config.optim.momentum, config.optim.weight_decay) == (0.9, 5e-4)
    assert config.method.dkd.beta == 8.0
    assert config.dataset.name == "tiny_imagenet" and config.model == student
    # A teacher trained inside a sweep follows the same setting.
    assert config.sweep.teacher_learning_rate == 0.2


def test_unknown_pair_and_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="not a cifar100 benchmark pair"):
        _load("cifar100", "teacher=resnet8,student=resnet110,method=kd")
    with pytest.raises(ValueError, match="unknown config argument"):
        _load("cifar100", "student=resnet8,lr=3")
    with pytest.raises(ValueError, match="dataset=None is not valid"):
        _load("finegrained", "student=resnet18_imagenet")
