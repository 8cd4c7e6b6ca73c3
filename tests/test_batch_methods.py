"""The methods dist and mlkd: their terms, weights and per-pair settings."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import benchmarks
from figkd_jax import losses
from figkd_jax.trainer import methods, protocol
from tests.objectives import build_objective, random_logits


def _logits(seed, shape=(8, 10)):
    return random_logits(seed, shape)


def test_dist_is_cross_entropy_plus_the_weighted_relations():
    s, t, y = _logits(0), _logits(1), jnp.arange(8) % 10
    out = build_objective("dist")(s, t, y, epoch=1)
    assert set(out) == {"ce", "dist"}
    ce = optax.softmax_cross_entropy_with_integer_labels(s, y)
    np.testing.assert_allclose(out["ce"], ce, rtol=1e-6)
    expected = losses.dist_loss(s, t, temperature=4.0, beta=2.0, gamma=2.0)
    np.testing.assert_allclose(out["dist"], expected, rtol=1e-6)
    standardized = build_objective("dist", standardize=True)(s, t, y, epoch=1)
    expected = losses.dist_loss(
        losses.standardize_logits(s),
        losses.standardize_logits(t),
        temperature=4.0,
        beta=2.0,
        gamma=2.0,
    )
    np.testing.assert_allclose(standardized["dist"], expected, rtol=1e-6)


def test_mlkd_weights_both_views_and_every_level():
    sw, tw, ss, ts = (_logits(seed) for seed in range(2, 6))
    y = jnp.arange(8) % 10
    out = build_objective("mlkd")(sw, tw, y, epoch=1, student_strong=ss, teacher_strong=ts)
    assert set(out) == {"ce", "mlkd_instance", "mlkd_class", "mlkd_batch"}
    ce = optax.softmax_cross_entropy_with_integer_labels
    np.testing.assert_allclose(out["ce"], 0.1 * (ce(sw, y) + ce(ss, y)), rtol=1e-6)
    terms = losses.mlkd_terms(sw, tw, ss, ts)
    for level, value in terms.items():
        np.testing.assert_allclose(out[f"mlkd_{level}"], 0.9 * value, rtol=1e-6)
    with pytest.raises(TypeError, match="student_strong"):
        build_objective("mlkd")(sw, tw, y, epoch=1)


def test_mlkd_ls_is_the_ls_authors_recipe():
    # Their MLKD.py under --logit-stand --base-temp T --kd-weight W: the first temperature of
    # every level becomes T (3, 5, 2, 6 stay), every level is weighted W, CE stays 0.1.
    sw, tw, ss, ts = (_logits(seed) for seed in range(2, 6))
    y = jnp.arange(8) % 10
    fields = {"mlkd__ls_temperature": 2.5, "mlkd__ls_kd_weight": 6.0}
    out = build_objective("mlkd", standardize=True, **fields)(
        sw, tw, y, epoch=1, student_strong=ss, teacher_strong=ts
    )
    ce = optax.softmax_cross_entropy_with_integer_labels
    np.testing.assert_allclose(out["ce"], 0.1 * (ce(sw, y) + ce(ss, y)), rtol=1e-6)
    terms = losses.mlkd_terms(
        sw, tw, ss, ts, temperatures=(2.5, 3.0, 5.0, 2.0, 6.0), standardize=True
    )
    for level, value in terms.items():
        np.testing.assert_allclose(out[f"mlkd_{level}"], 6.0 * value, rtol=1e-6)
    # Without standardize the ls_* fields are not read.
    plain = build_objective("mlkd", **fields)(
        sw, tw, y, epoch=1, student_strong=ss, teacher_strong=ts
    )
    np.testing.assert_allclose(
        plain["mlkd_class"], 0.9 * losses.mlkd_terms(sw, tw, ss, ts)["class"], rtol=1e-6
    )


def test_only_mlkd_needs_a_strong_view():
    assert [name for name in methods.names() if methods.get(name).needs_strong_view] == ["mlkd"]
    assert methods.get("dist").needs_teacher and methods.get("mlkd").needs_teacher


@pytest.mark.parametrize(("pair", "solver"), sorted(protocol.MLKD_SOLVERS["cifar100"].items()))
def test_mlkd_takes_its_authors_solver_per_pair(pair, solver):
    teacher, student = pair
    config = benchmarks.benchmark_config(
        "cifar100", f"teacher={teacher},student={student},method=mlkd"
    )
    assert (config.optim.learning_rate, config.num_epochs) == (
        solver.learning_rate,
        solver.num_epochs,
    )
    assert config.batch_size == solver.batch_size
    assert tuple(config.optim.lr_decay_epochs) == solver.lr_decay_epochs == (150, 180, 210)
    recipe = protocol.ls_recipe("mlkd", "cifar100", teacher, student)
    ls = (config.method.mlkd.ls_temperature, config.method.mlkd.ls_kd_weight)
    assert ls == (recipe.temperature, recipe.kd_weight)
    other = benchmarks.benchmark_config(
        "cifar100", f"teacher={teacher},student={student},method=dist"
    )
    assert other.num_epochs == 240
    assert other.optim.learning_rate == protocol.find("cifar100", teacher, student).learning_rate


def test_mlkd_solver_table_covers_every_cifar_pair_as_released():
    assert set(protocol.MLKD_SOLVERS) == {"cifar100", "imagenet2012"}
    assert set(protocol.MLKD_SOLVERS["cifar100"]) == set(protocol.pairs("cifar100"))
    # Jin-Ying/Multi-Level-Logit-Distillation@77b91ec, configs/cifar100/ours/*.yaml: 480 epochs
    # (960 for ResNet32x4 -> ShuffleNetV1/V2); 0.025, or 0.01 for a MobileNetV2 or ShuffleNet
    # student.
    for (teacher, student), solver in protocol.MLKD_SOLVERS["cifar100"].items():
        small = student.startswith(("mobilenetv2", "shufflenet"))
        assert solver.learning_rate == (0.01 if small else 0.025), (teacher, student)
        long = teacher == "resnet32x4" and student.startswith("shufflenet")
        assert solver.num_epochs == (960 if long else 480), (teacher, student)


def test_mlkd_ls_recipe_per_pair():
    # The LS authors' logs: weight 6 for these three pairs, 9 (their default) elsewhere; T = 2.
    weight_6 = {("vgg13", "vgg8"), ("resnet32x4", "shufflenetv2"), ("vgg13", "mobilenetv2")}
    for teacher, student in protocol.pairs("cifar100"):
        recipe = protocol.ls_recipe("mlkd", "cifar100", teacher, student)
        assert recipe.temperature == 2.0
        assert recipe.kd_weight == (6.0 if (teacher, student) in weight_6 else 9.0)
