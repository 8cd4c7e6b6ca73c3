"""The optimiser, the schedule and the method registry against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from figkd_jax import losses
from figkd_jax.trainer import methods, steps
from tests.objectives import build_objective, random_logits


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


def _logits(seed, shape=(6, 10)):
    return random_logits(seed, shape)


def test_dkd_warmup_scales_by_epoch_over_warmup():
    s, t, y = _logits(0), _logits(1), jnp.arange(6) % 10
    objective = build_objective("dkd", dkd__warmup_epochs=20)
    full = losses.dkd_loss(s, t, y, temperature=4.0, alpha=1.0, beta=8.0)
    for epoch, factor in [(1, 1 / 20), (10, 0.5), (20, 1.0), (30, 1.0)]:
        np.testing.assert_allclose(objective(s, t, y, epoch=epoch)["dkd"], factor * full, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "terms"),
    [("ce", {"ce"}), ("kd", {"ce", "kd"}), ("dkd", {"ce", "dkd"}), ("figkd", {"ce", "figkd"})],
)
def test_every_method_returns_its_named_per_example_terms(name, terms):
    s, t, y = _logits(0), _logits(1), jnp.arange(6) % 10
    out = build_objective(name)(s, t, y, epoch=1)
    assert set(out) == terms
    assert all(v.shape == (6,) for v in out.values())


def test_kd_weights_follow_the_config():
    s, t, y = _logits(0), _logits(1), jnp.arange(6) % 10
    out = build_objective("kd", kd__ce_weight=0.1, kd__kd_weight=0.9)(s, t, y, epoch=1)
    ce = optax.softmax_cross_entropy_with_integer_labels(s, y)
    np.testing.assert_allclose(out["ce"], 0.1 * ce, rtol=1e-6)
    np.testing.assert_allclose(out["kd"], 0.9 * losses.kd_loss(s, t, temperature=4.0), rtol=1e-6)


# A NumPy (float64) transcription of the logit-standardization authors' code,
# sunshangquan/logit-standardization-KD: `normalize`, `kd_loss` (mdistiller/distillers/KD.py),
# `dkd_loss` (mdistiller/distillers/DKD.py), per example instead of the batch mean, and the
# recipe that tools/train.py applies for --logit-stand --base-temp 2 --kd-weight 9.
def _np_normalize(z):
    return (z - z.mean(-1, keepdims=True)) / (1e-7 + z.std(-1, ddof=1, keepdims=True))


def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_kl(log_q, p):
    """F.kl_div(log_q, p) summed over classes: p (log p - log q), 0 where p == 0."""
    safe_p = np.where(p > 0, p, 1.0)
    return np.sum(np.where(p > 0, p * (np.log(safe_p) - log_q), 0.0), -1)


def _np_kd(s, t, temperature):
    p = np.exp(_np_log_softmax(t / temperature))
    return temperature**2 * _np_kl(_np_log_softmax(s / temperature), p)


def _np_dkd(s, t, labels, alpha, beta, temperature):
    gt = np.eye(s.shape[-1], dtype=bool)[labels]
    ps, pt = (np.exp(_np_log_softmax(z / temperature)) for z in (s, t))
    binary = lambda p: np.stack([(p * gt).sum(-1), (p * ~gt).sum(-1)], -1)
    tckd = temperature**2 * _np_kl(np.log(binary(ps)), binary(pt))
    log_q2 = _np_log_softmax(s / temperature - 1000.0 * gt)
    p2 = np.exp(_np_log_softmax(t / temperature - 1000.0 * gt))
    nckd = temperature**2 * _np_kl(log_q2, p2)
    return alpha * tckd + beta * nckd


def _np_high_band(z):
    """Level-1 Haar high band in the logit domain (even C): each logit minus its pair's mean."""
    pairs = z.reshape(*z.shape[:-1], -1, 2)
    return (pairs - pairs.mean(-1, keepdims=True)).reshape(z.shape)


def _fixed_logits():
    rng = np.random.default_rng(13)
    s, t = (rng.standard_normal((6, 10)).astype(np.float32) * 3 for _ in range(2))
    labels = np.arange(6) % 10
    ce = -_np_log_softmax(s.astype(np.float64))[np.arange(6), labels]
    return s, t, labels, ce


@pytest.mark.parametrize(
    ("name", "fields", "expected_term"),
    [
        # KD+LS: T = 2, KD weight 9 (replacing 0.9); CE weight stays 0.1.
        ("kd", {}, lambda s, t, y: 9.0 * _np_kd(s, t, 2.0)),
        # A pair's published run (ResNet50 -> MobileNetV2: logs/KD/kd,...,3,1.txt).
        (
            "kd",
            {"kd__ls_temperature": 3.0, "kd__ls_kd_weight": 1.0},
            lambda s, t, y: 1.0 * _np_kd(s, t, 3.0),
        ),
        # DKD+LS: T = 2, alpha and beta times 9; warm-up 10 / 20 at epoch 10.
        ("dkd", {}, lambda s, t, y: 0.5 * _np_dkd(s, t, y, 9.0, 72.0, 2.0)),
        # FiGKD+LS: the high band of the standardized logits, T = 2, weight 1 x 9.
        ("figkd", {}, lambda s, t, y: 9.0 * _np_kd(_np_high_band(s), _np_high_band(t), 2.0)),
    ],
)
def test_standardize_gives_the_published_recipe(name, fields, expected_term):
    s, t, labels, ce = _fixed_logits()
    objective = build_objective(name, standardize=True, **fields)
    out = objective(jnp.asarray(s), jnp.asarray(t), jnp.asarray(labels), epoch=10)
    s64, t64 = _np_normalize(s.astype(np.float64)), _np_normalize(t.astype(np.float64))
    ce_weight = {"kd": 0.1, "dkd": 1.0, "figkd": 1.0}[name]
    # float32 against float64: softmaxes and KLs over 10 classes of O(1) standardized logits
    # round to a few float32 ulps (~1e-6 relative); 1e-4 leaves wide headroom.
    np.testing.assert_allclose(out["ce"], ce_weight * ce, rtol=1e-4)
    np.testing.assert_allclose(out[name], expected_term(s64, t64, labels), rtol=1e-4)
    # The recipe changes the value: without standardize the term is another number.
    plain = build_objective(name, **fields)(
        jnp.asarray(s), jnp.asarray(t), jnp.asarray(labels), epoch=10
    )
    assert not np.allclose(plain[name], out[name], rtol=1e-2)


def test_standardized_terms_ignore_a_positive_scale_of_either_input():
    s, t, labels, _ = _fixed_logits()
    for name in ("kd", "dkd", "figkd"):
        objective = build_objective(name, standardize=True)
        out = objective(s, t, labels, epoch=1)
        scaled = objective(s, 5 * t, labels, epoch=1)
        np.testing.assert_allclose(scaled[name], out[name], rtol=1e-4)


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
