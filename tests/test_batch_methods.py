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
    for standardize in (False, True):
        out = build_objective("mlkd", standardize=standardize)(
            sw, tw, y, epoch=1, student_strong=ss, teacher_strong=ts
        )
        assert set(out) == {"ce", "mlkd_instance", "mlkd_class", "mlkd_batch"}
        ce = optax.softmax_cross_entropy_with_integer_labels
        np.testing.assert_allclose(out["ce"], 0.1 * (ce(sw, y) + ce(ss, y)), rtol=1e-6)
        terms = losses.mlkd_terms(sw, tw, ss, ts, standardize=standardize)
        for level, value in terms.items():
            np.testing.assert_allclose(out[f"mlkd_{level}"], 0.9 * value, rtol=1e-6)
    with pytest.raises(TypeError, match="student_strong"):
        build_objective("mlkd")(sw, tw, y, epoch=1)


def test_only_mlkd_needs_a_strong_view():
    assert [name for name in methods.names() if methods.get(name).needs_strong_view] == ["mlkd"]
    assert methods.get("dist").needs_teacher and methods.get("mlkd").needs_teacher


@pytest.mark.parametrize(("pair", "solver"), sorted(benchmarks.MLKD_CIFAR_SOLVER.items()))
def test_mlkd_takes_its_authors_solver_per_pair(pair, solver):
    teacher, student = pair
    config = benchmarks.benchmark_config(
        "cifar100", f"teacher={teacher},student={student},method=mlkd"
    )
    assert (config.optim.learning_rate, config.num_epochs) == solver
    assert tuple(config.optim.lr_decay_epochs) == (150, 180, 210)
    other = benchmarks.benchmark_config(
        "cifar100", f"teacher={teacher},student={student},method=dist"
    )
    assert other.num_epochs == 240
    assert other.optim.learning_rate == protocol.find("cifar100", teacher, student).learning_rate


def test_mlkd_solver_table_covers_every_cifar_pair():
    assert set(benchmarks.MLKD_CIFAR_SOLVER) == set(protocol.pairs("cifar100"))
