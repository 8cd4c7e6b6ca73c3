"""The optimiser, the schedule and the method registry against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from figkd_jax import losses, methods, steps


def _config(**optim):
    config = default.get_config()
    config.optim.update(optim)
    return config


def test_schedule_is_epochwise_reference_applied_per_step():
    config = _config(learning_rate=0.05, lr_decay_epochs=(3, 5), lr_decay_rate=0.1)
    steps_per_epoch = 7
    schedule = steps.learning_rate_schedule(config, steps_per_epoch)
    for step in range(8 * steps_per_epoch):
        epoch = step // steps_per_epoch + 1  # the reference counts epochs from 1
        decays = sum(epoch > e for e in (3, 5))
        np.testing.assert_allclose(schedule(step), 0.05 * 0.1**decays, rtol=1e-6)
    # The first decayed step is the first step of epoch 4.
    assert float(schedule(3 * 7 - 1)) == pytest.approx(0.05)
    assert float(schedule(3 * 7)) == pytest.approx(0.005)


def test_sgd_matches_pytorch_update_by_hand():
    lr, wd, mu = 0.1, 0.01, 0.9
    config = _config(learning_rate=lr, weight_decay=wd, momentum=mu, lr_decay_epochs=())
    tx = steps.make_optimizer(config, steps.learning_rate_schedule(config, 10))
    p = jnp.array([1.0, -2.0])
    g1, g2 = jnp.array([0.5, 0.25]), jnp.array([-1.0, 3.0])
    state = tx.init(p)
    u, state = tx.update(g1, state, p, step=0)
    p1 = optax.apply_updates(p, u)
    u, state = tx.update(g2, state, p1, step=1)
    p2 = optax.apply_updates(p1, u)
    # torch.optim.SGD(momentum=mu, weight_decay=wd): d = g + wd p; buf = mu buf + d.
    d1 = np.array([0.5, 0.25]) + wd * np.array([1.0, -2.0])
    e1 = np.array([1.0, -2.0]) - lr * d1
    buf = mu * d1 + (np.array([-1.0, 3.0]) + wd * e1)
    e2 = e1 - lr * buf
    np.testing.assert_allclose(p1, e1, rtol=1e-6)
    np.testing.assert_allclose(p2, e2, rtol=1e-6)


def _method(name, **fields):
    config = default.get_config().method
    config.name = name
    for key, value in fields.items():
        block, _, field = key.rpartition("__")
        (config[block] if block else config)[field] = value
    return methods.build(config)


def _logits(seed, shape=(6, 10)):
    return jax.random.normal(jax.random.key(seed), shape) * 3


def test_dkd_warmup_scales_by_epoch_over_warmup():
    s, t, y = _logits(0), _logits(1), jnp.arange(6) % 10
    objective = _method("dkd", dkd__warmup_epochs=20)
    full = losses.dkd_loss(s, t, y, temperature=4.0, alpha=1.0, beta=8.0)
    for epoch, factor in [(1, 1 / 20), (10, 0.5), (20, 1.0), (30, 1.0)]:
        np.testing.assert_allclose(objective(s, t, y, epoch=epoch)["dkd"], factor * full, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "terms"),
    [("ce", {"ce"}), ("kd", {"ce", "kd"}), ("dkd", {"ce", "dkd"}), ("figkd", {"ce", "figkd"})],
)
def test_every_method_returns_its_named_per_example_terms(name, terms):
    s, t, y = _logits(0), _logits(1), jnp.arange(6) % 10
    out = _method(name)(s, t, y, epoch=1)
    assert set(out) == terms
    assert all(v.shape == (6,) for v in out.values())


def test_kd_weights_follow_the_config():
    s, t, y = _logits(0), _logits(1), jnp.arange(6) % 10
    out = _method("kd", kd__ce_weight=0.1, kd__kd_weight=0.9)(s, t, y, epoch=1)
    ce = optax.softmax_cross_entropy_with_integer_labels(s, y)
    np.testing.assert_allclose(out["ce"], 0.1 * ce, rtol=1e-6)
    np.testing.assert_allclose(out["kd"], 0.9 * losses.kd_loss(s, t, temperature=4.0), rtol=1e-6)


def test_standardize_applies_to_the_distillation_term_only():
    s, t, y = _logits(0), _logits(1), jnp.arange(6) % 10
    out = _method("figkd", standardize=True)(s, t, y, epoch=1)
    plain = _method("figkd")(s, t, y, epoch=1)
    np.testing.assert_allclose(out["ce"], plain["ce"], rtol=1e-6)
    expected = losses.figkd_loss(
        losses.standardize_logits(s), losses.standardize_logits(t), temperature=4.0
    )
    np.testing.assert_allclose(out["figkd"], expected, rtol=1e-6)
    # Standardized logits are invariant to a positive scale of either input.
    scaled = _method("figkd", standardize=True)(s, 5 * t, y, epoch=1)
    np.testing.assert_allclose(scaled["figkd"], out["figkd"], rtol=1e-4)


def test_cross_entropy_mask_gives_zero_value_and_gradient_for_nan_logits():
    s = _logits(0).at[0].set(jnp.nan)
    y = jnp.arange(6) % 10
    where = jnp.arange(6) > 0
    value = methods.cross_entropy(s, y, where)
    grad = jax.grad(lambda s: methods.cross_entropy(s, y, where).sum())(s)
    assert value[0] == 0 and jnp.all(jnp.isfinite(value))
    assert jnp.all(grad[0] == 0) and jnp.all(jnp.isfinite(grad))


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"valid methods: \['ce', 'dist', 'dkd', 'figkd', 'kd', 'mlkd'\]"
    ):
        methods.get("fitnet")
