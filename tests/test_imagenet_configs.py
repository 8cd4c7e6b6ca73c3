"""configs/imagenet.py: every ImageNet pair and method traces a train step, the settings are
the authors', and bfloat16 compute gives the float32 first-step loss up to bfloat16 rounding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import imagenet
from figkd_jax.trainer import protocol, run_setup, steps
from tests import test_configs


def _trace_one_step(config):
    # test_configs' helper names a teacher workdir, the other of the two teacher sources.
    config.teacher.checkpoint = None
    return test_configs._trace_one_step(config)


PAIRS = [("resnet34", "resnet18"), ("resnet50", "mobilenetv1")]
METHODS = ["ce", "kd", "dkd", "dist", "figkd", "mlkd"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("teacher", "student"), PAIRS)
def test_every_pair_and_method_traces_a_step(teacher, student, method):
    config = imagenet.get_config(f"teacher={teacher},student={student},method={method}")
    metrics = _trace_one_step(config)
    assert method == "ce" or "agreement" in metrics


@pytest.mark.parametrize("method", ["kd", "dkd", "figkd", "mlkd"])
def test_logit_standardization_traces(method):
    config = imagenet.get_config(f"teacher=resnet34,student=resnet18,method={method}")
    config.method.standardize = True
    _trace_one_step(config)


def test_the_teachers_alone_trace():
    for teacher, _ in PAIRS:
        _trace_one_step(imagenet.get_config(f"student={teacher}"))


def test_protocol_settings():
    config = imagenet.get_config("teacher=resnet34,student=resnet18,method=dkd")
    assert config.dataset.name == "imagenet2012"
    assert (config.model, config.teacher.model) == ("resnet18_imagenet", "resnet34_imagenet")
    assert config.teacher.checkpoint == "teachers/resnet34" and config.teacher.workdir is None
    assert (config.batch_size, config.num_epochs, config.optim.learning_rate) == (512, 100, 0.2)
    assert tuple(config.optim.lr_decay_epochs) == (30, 60, 90)
    assert (config.optim.momentum, config.optim.weight_decay) == (0.9, 1e-4)
    dkd = config.method.dkd
    assert (config.method.temperature, dkd.ce_weight, dkd.beta, dkd.warmup_epochs) == (
        1.0,
        1.0,
        0.5,
        1,
    )
    config = imagenet.get_config("teacher=resnet50,student=mobilenetv1,method=dkd")
    assert config.method.dkd.beta == 2.0 and config.model == "mobilenetv1"
    config = imagenet.get_config("teacher=resnet50,student=mobilenetv1,method=kd")
    kd = config.method.kd
    assert (config.method.temperature, kd.ce_weight, kd.kd_weight) == (1.0, 0.5, 0.5)
    config = imagenet.get_config("teacher=resnet34,student=resnet18,method=dist")
    dist = config.method.dist
    assert (config.method.temperature, dist.ce_weight, dist.beta, dist.gamma) == (1, 1, 2, 2)
    # The teachers keep the protocol's rate when a sweep trains them.
    assert config.sweep.teacher_learning_rate == 0.2
    # Published numbers for the report.
    assert protocol.published_top1("imagenet2012", "resnet34_imagenet", "resnet18_imagenet", "dkd")
    # Not on TPU here: float32.
    assert config.dtype == ("bfloat16" if jax.default_backend() == "tpu" else "float32")


@pytest.mark.parametrize(
    ("teacher", "student", "learning_rate"), [(*PAIRS[0], 0.1), (*PAIRS[1], 0.2)]
)
def test_mlkd_takes_its_authors_imagenet_setting(teacher, student, learning_rate):
    # Jin-Ying/Multi-Level-Logit-Distillation@77b91ec:configs/imagenet/{r34_r18,r50_mv2}/
    # kd_ours.yaml: mdistiller's solver with lr 0.1 / 0.2; T 1 first of KD_ours' 1, 3, 5, 2, 6.
    config = imagenet.get_config(f"teacher={teacher},student={student},method=mlkd")
    assert (config.batch_size, config.num_epochs, config.optim.learning_rate) == (
        512,
        100,
        learning_rate,
    )
    assert tuple(config.optim.lr_decay_epochs) == (30, 60, 90)
    assert config.optim.weight_decay == 1e-4
    mlkd = config.method.mlkd
    assert (mlkd.ce_weight, mlkd.kd_weight) == (0.5, 0.5)
    assert tuple(mlkd.temperatures) == (1.0, 3.0, 5.0, 2.0, 6.0)
    # A sweep's mlkd runs get the same solver; its other methods keep the protocol's.
    assert config.sweep.mlkd_learning_rate == learning_rate
    assert config.sweep.mlkd_num_epochs == 100
    other = imagenet.get_config(f"teacher={teacher},student={student},method=kd")
    assert other.optim.learning_rate == 0.2


def test_unknown_pairs_are_clear_errors():
    with pytest.raises(ValueError, match="not a imagenet2012 benchmark pair"):
        imagenet.get_config("teacher=resnet50,student=resnet18,method=kd")


@pytest.mark.slow
def test_bfloat16_first_step_loss_equals_float32_up_to_bfloat16_rounding():
    """The first step of ResNet-18 (the ImageNet config, trained alone: the teacher's forward
    would only double the XLA:CPU compile time) on the same batch and initial state in both
    compute dtypes; 32-pixel images keep it quick, the network is size-agnostic."""
    losses = {}
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.normal(size=(4, 32, 32, 3)), jnp.float32),
        "label": jnp.asarray([1, 7, 300, 999], jnp.int32),
    }
    for dtype in ("float32", "bfloat16"):
        config = imagenet.get_config("student=resnet18")
        config.dtype = dtype
        run = run_setup.build_run(config)
        state = jax.jit(functools.partial(run_setup.initial_state, run))()
        _, metrics = jax.jit(steps.make_train_step(run, None))(state, batch, None)
        losses[dtype] = float(metrics["loss"])
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 per value); through the 18
    # layers the rounding adds up to well under the 3% allowed here, and the loss itself is
    # computed in float32 from float32 logits.
    assert np.isfinite(losses["bfloat16"]) and losses["bfloat16"] != losses["float32"]
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.03)
