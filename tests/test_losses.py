"""Tests of the distillation losses against NumPy references of the published formulas."""

import doctest
import importlib
import inspect
import itertools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt
from jax.test_util import check_grads

import figkd_jax
import figkd_jax.diagnostics
from figkd_jax import (
    MODES,
    dkd_loss,
    dkd_terms,
    figkd_loss,
    kd_loss,
    losses,
    standardize_logits,
    wavelets,
)

# Most tests put all of their JAX work in one jitted function: one compilation is far cheaper
# on CPU than eager execution, which compiles each operation of each shape separately.
BATCH, CLASSES = 5, 10


def logits_pair(batch=BATCH, classes=CLASSES, seed=0, dtype=np.float64, scale=3.0):
    rng = np.random.default_rng(seed)
    return tuple((scale * rng.standard_normal((batch, classes))).astype(dtype) for _ in range(2))


# NumPy references, written from the papers' formulas (float64).


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_kl(p, log_p, log_q):
    """sum p (log p - log q), with the 0 log 0 = 0 convention of torch's kl_div."""
    safe = np.where(p > 0, log_p - log_q, 0.0)
    return np.sum(p * safe, axis=-1)


def np_kd(s, t, temperature):
    """Hinton et al. (2015): T^2 KL(softmax(t / T) || softmax(s / T))."""
    log_p = np_log_softmax(t / temperature)
    return temperature**2 * np_kl(np.exp(log_p), log_p, np_log_softmax(s / temperature))


def np_dkd(s, t, labels, temperature, alpha, beta):
    """Zhao et al. (2022), as in the authors' mdistiller code, per example."""
    gt = np.eye(s.shape[-1])[labels]
    p_s = np.exp(np_log_softmax(s / temperature))
    p_t = np.exp(np_log_softmax(t / temperature))
    b_s = np.stack([(p_s * gt).sum(-1), (p_s * (1 - gt)).sum(-1)], axis=-1)
    b_t = np.stack([(p_t * gt).sum(-1), (p_t * (1 - gt)).sum(-1)], axis=-1)
    tckd = np_kl(b_t, np.log(b_t), np.log(b_s)) * temperature**2
    log_p_t2 = np_log_softmax(t / temperature - 1000.0 * gt)
    log_p_s2 = np_log_softmax(s / temperature - 1000.0 * gt)
    nckd = np_kl(np.exp(log_p_t2), log_p_t2, log_p_s2) * temperature**2
    return alpha * tckd + beta * nckd, tckd, nckd


def np_band(z, level, band, domain, mode):
    """FiGKD's band (docs/method.md) computed with PyWavelets."""
    if band == "all":
        return z
    coeffs = pywt.wavedec(z, "haar", mode=mode, level=level)
    if domain == "coefficients":
        return np.concatenate(coeffs[1:], axis=-1) if band == "high" else coeffs[0]
    if band == "high":
        kept = [np.zeros_like(coeffs[0]), *coeffs[1:]]
    else:
        kept = [coeffs[0]] + [np.zeros_like(c) for c in coeffs[1:]]
    return pywt.waverec(kept, "haar", mode=mode)[..., : z.shape[-1]]


def np_figkd(s, t, temperature, level, band, domain, mode):
    return np_kd(
        np_band(s, level, band, domain, mode), np_band(t, level, band, domain, mode), temperature
    )


FIGKD_CONFIGS = [
    {"level": level, "band": band, "domain": domain, "mode": mode}
    for level, band, domain, mode in itertools.product(
        (1, 3), ("high", "low", "all"), ("logits", "coefficients"), MODES
    )
]


def test_hand_computed_values():
    def kd_with_ruled_out_class(s):
        return kd_loss(s, jnp.array([[math.log(3.0), 0.0, -jnp.inf]]), temperature=1.0)[0]

    @jax.jit
    def values():
        zeros2 = jnp.zeros((1, 2))
        return {
            "kd_t1": kd_loss(zeros2, jnp.array([[math.log(3.0), 0.0]]), temperature=1.0),
            "kd_t2": kd_loss(zeros2, jnp.array([[2 * math.log(3.0), 0.0]]), temperature=2.0),
            "dkd_a": dkd_terms(
                jnp.zeros((1, 3)),
                jnp.log(jnp.array([[2.0, 1.0, 3.0]])),
                jnp.array([0]),
                temperature=1.0,
            ),
            "dkd_b": dkd_terms(
                jnp.zeros((1, 3)),
                jnp.log(jnp.array([[4.0, 1.0, 1.0]])),
                jnp.array([0]),
                temperature=1.0,
            ),
            "figkd": figkd_loss(
                jnp.zeros((1, 4)), jnp.array([[3.0, -1.0, 5.0, 5.0]]), temperature=1.0
            ),
            "kd_teacher_inf": jax.value_and_grad(kd_with_ruled_out_class)(jnp.zeros((1, 3))),
            "figkd_same_detail": figkd_loss(
                jnp.array([[5.0, 1.0, 1.0, 1.0]]), jnp.array([[4.0, 0.0, 1.0, 1.0]])
            ),
        }

    v = values()
    # softmax([ln 3, 0]) = [3/4, 1/4] against [1/2, 1/2].
    kd = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    np.testing.assert_allclose(v["kd_t1"], [kd], rtol=1e-6)
    np.testing.assert_allclose(v["kd_t2"], [4 * kd], rtol=1e-6)
    # A class the teacher rules out (p = 0) adds nothing, and its gradient is finite.
    value, grad = v["kd_teacher_inf"]
    np.testing.assert_allclose(value, 0.75 * math.log(2.25) + 0.25 * math.log(0.75), rtol=1e-6)
    np.testing.assert_allclose(grad, [[1 / 3 - 0.75, 1 / 3 - 0.25, 1 / 3]], rtol=1e-5)
    # Teacher [2, 1, 3] / 6 with label 0: binary [1/3, 2/3] as the student's, so TCKD is 0;
    # non-target [1/4, 3/4] against [1/2, 1/2].
    np.testing.assert_allclose(v["dkd_a"][0], [0.0], atol=1e-6)
    np.testing.assert_allclose(
        v["dkd_a"][1], [0.25 * math.log(0.5) + 0.75 * math.log(1.5)], rtol=1e-6
    )
    # Teacher [4, 1, 1] / 6: binary [2/3, 1/3] against [1/3, 2/3]; non-target both uniform.
    np.testing.assert_allclose(v["dkd_b"][0], [math.log(2.0) / 3], rtol=1e-6)
    np.testing.assert_allclose(v["dkd_b"][1], [0.0], atol=1e-6)
    # high_1([3, -1, 5, 5]) = [2, -2, 0, 0]; the student's high band is 0 (uniform softmax).
    p = np.exp([2.0, -2.0, 0.0, 0.0]) / np.exp([2.0, -2.0, 0.0, 0.0]).sum()
    np.testing.assert_allclose(v["figkd"], [np.sum(p * np.log(4 * p))], rtol=1e-6)
    np.testing.assert_allclose(v["figkd_same_detail"], [0.0], atol=1e-7)


def test_parity_with_numpy_references(x64):
    s, t = logits_pair()
    labels = np.array([0, 3, 9, 5, 1])

    @jax.jit
    def all_losses(s, t):
        return {
            # 0.3 has no float32 value: a temperature rounded to float32 misses rtol=1e-10.
            "kd": [kd_loss(s, t, temperature=temp) for temp in (0.3, 4.0)],
            "dkd": [
                dkd_loss(s, t, labels, temperature=4.0),
                *dkd_terms(s, t, labels, temperature=2.0),
            ],
            "figkd": [figkd_loss(s, t, temperature=2.0, **c) for c in FIGKD_CONFIGS],
        }

    ours = all_losses(s, t)
    for loss, temperature in zip(ours["kd"], (0.3, 4.0), strict=True):
        assert loss.dtype == jnp.float64 and loss.shape == (BATCH,)
        np.testing.assert_allclose(loss, np_kd(s, t, temperature), rtol=1e-10)
    np.testing.assert_allclose(ours["dkd"][0], np_dkd(s, t, labels, 4.0, 1.0, 8.0)[0], rtol=1e-10)
    _, tckd, nckd = np_dkd(s, t, labels, 2.0, 1.0, 8.0)
    np.testing.assert_allclose(ours["dkd"][1], tckd, rtol=1e-10)
    np.testing.assert_allclose(ours["dkd"][2], nckd, rtol=1e-10)
    for loss, config in zip(ours["figkd"], FIGKD_CONFIGS, strict=True):
        np.testing.assert_allclose(loss, np_figkd(s, t, 2.0, **config), rtol=1e-9, err_msg=config)


def test_float32_parity_and_band_all_is_kd():
    s, t = logits_pair(dtype=np.float32)
    labels = np.array([2, 3, 4, 5, 6])

    @jax.jit
    def all_losses(s, t):
        return (
            kd_loss(s, t),
            dkd_loss(s, t, labels, alpha=0.5, beta=2.0),
            figkd_loss(s, t, level=2, mode="zero"),
            [
                figkd_loss(s, t, band="all", level=level, domain=d)
                for level in (1, 3)
                for d in ("logits", "coefficients")
            ],
        )

    kd, dkd, figkd, band_all = all_losses(s, t)
    assert kd.dtype == dkd.dtype == figkd.dtype == jnp.float32
    np.testing.assert_allclose(kd, np_kd(s, t, 4.0), rtol=1e-5)
    np.testing.assert_allclose(dkd, np_dkd(s, t, labels, 4.0, 0.5, 2.0)[0], rtol=1e-5)
    np.testing.assert_allclose(
        figkd, np_figkd(s, t, 4.0, 2, "high", "logits", "zero"), rtol=1e-5, atol=1e-7
    )
    for loss in band_all:
        np.testing.assert_array_equal(loss, kd)


def test_figkd_invariances():
    def shifted(z, seed):
        return z + 10 * np.random.default_rng(seed).standard_normal((BATCH, 1)).astype(np.float32)

    cases = {}
    for classes in (7, 10):
        s, t = logits_pair(classes=classes, dtype=np.float32, seed=classes)
        cases[classes] = (s, t, shifted(s, 1), shifted(t, 2))
    # For Haar, pywt's "periodization" gives the values of "symmetric": one case suffices.
    configs = [
        {"level": level, "band": band, "domain": domain, "mode": mode}
        for level, band, domain, mode in itertools.product(
            (1, 2), ("high", "low"), ("logits", "coefficients"), ("symmetric", "zero")
        )
    ] + [{"level": 2, "band": "high", "domain": "logits", "mode": "periodization"}]

    @jax.jit
    def losses_for(cases):
        return {
            (classes, i): (
                figkd_loss(s, t, **config),
                figkd_loss(s_shifted, t_shifted, **config),
                figkd_loss(s, s, **config),
            )
            for classes, (s, t, s_shifted, t_shifted) in cases.items()
            for i, config in enumerate(configs)
        }

    for (classes, i), (loss, loss_shifted, loss_same) in losses_for(cases).items():
        config = configs[i]
        np.testing.assert_array_equal(loss_same, 0.0)
        assert np.all(loss > 0)
        if config["mode"] == "zero" and classes % 2 ** config["level"]:
            # A zero extension does not move with the logits: offsets change the loss.
            assert not np.allclose(loss_shifted, loss, rtol=1e-3), (classes, config)
        else:
            np.testing.assert_allclose(loss_shifted, loss, rtol=2e-4, err_msg=(classes, config))


def test_class_permutation():
    s, t = logits_pair(dtype=np.float32)
    perm = np.random.default_rng(5).permutation(CLASSES)
    inverse = np.argsort(perm)
    s_perm, t_perm = s[:, perm], t[:, perm]

    @jax.jit
    def losses_for(traced_inverse):
        return {
            "reference": figkd_loss(s, t, level=2),
            "undone_static": figkd_loss(s_perm, t_perm, level=2, class_permutation=inverse),
            "undone_traced": figkd_loss(s_perm, t_perm, level=2, class_permutation=traced_inverse),
            "undone_list": figkd_loss(s_perm, t_perm, level=2, class_permutation=inverse.tolist()),
            "not_undone": figkd_loss(s_perm, t_perm, level=2),
            "kd": kd_loss(s, t),
            "kd_permuted": kd_loss(s_perm, t_perm),
        }

    v = losses_for(jnp.asarray(inverse))
    for key in ("undone_static", "undone_traced", "undone_list"):
        np.testing.assert_allclose(v[key], v["reference"], rtol=1e-5, err_msg=key)
    assert not np.allclose(v["not_undone"], v["reference"], rtol=1e-2)
    np.testing.assert_allclose(v["kd_permuted"], v["kd"], rtol=1e-6)


def test_gradients(x64):
    s, t = logits_pair(batch=2, classes=6, seed=7)
    labels = jnp.array([1, 4])

    def all_losses(s, t):
        return (
            kd_loss(s, t, temperature=2.0),
            dkd_loss(s, t, labels, temperature=2.0),
            figkd_loss(s, t, temperature=2.0),
            figkd_loss(s, t, level=2, band="low", domain="coefficients", mode="zero"),
            kd_loss(standardize_logits(s), standardize_logits(t, ddof=1)),
        )

    check_grads(jax.jit(all_losses), (s, t), order=1, modes=["rev"])
    # Second order (through the Haar band) once: it costs several compilations per loss.
    check_grads(jax.jit(lambda s, t: figkd_loss(s, t, level=2)), (s, t), order=2, modes=["rev"])


def test_large_logits_and_low_precision_inputs():
    s, t = logits_pair(batch=4, classes=6, dtype=np.float32, scale=1e4)
    s2, t2 = logits_pair(batch=4, classes=2, dtype=np.float32, scale=1e4)
    labels = jnp.array([0, 1, 5, 2])
    labels2 = jnp.array([0, 1, 1, 0])

    def all_losses(s, t, s2, t2):
        return [
            kd_loss(s, t),
            dkd_loss(s, t, labels),
            dkd_loss(s2, t2, labels2),
            figkd_loss(s, t),
            figkd_loss(s, t, level=2, domain="coefficients"),
            kd_loss(standardize_logits(s), standardize_logits(t)),
        ]

    def total(s, s2):
        return sum(jnp.sum(loss) for loss in all_losses(s, t, s2, t2))

    @jax.jit
    def values_and_grads(s, t, s2, t2):
        return all_losses(s, t, s2, t2), jax.grad(total, argnums=(0, 1))(s, s2)

    for arrays in ((s, t, s2, t2), tuple(jnp.asarray(a, jnp.bfloat16) for a in (s, t, s2, t2))):
        values, grads = values_and_grads(*arrays)
        for value in values:
            assert value.dtype == jnp.float32
            assert np.all(np.isfinite(value)) and np.all(value >= 0)
        assert all(np.all(np.isfinite(g)) for g in grads)
        assert np.any(np.asarray(values[1]) > 1.0)
    float16 = jax.ShapeDtypeStruct(s.shape, jnp.float16)
    assert all(v.dtype == jnp.float32 for v in jax.eval_shape(all_losses, *[float16] * 4))


def test_mask_gives_zero_value_and_gradient():
    s, t = logits_pair(batch=3, classes=8, dtype=np.float32)
    s_bad, t_bad = s.copy(), t.copy()
    s_bad[1, 2], t_bad[1, 5], s_bad[1, 7] = np.nan, np.inf, -np.inf
    where = jnp.array([True, False, True])
    labels = jnp.array([1, -1, 3])  # A padding label is fine where the example is masked.

    def all_losses(s, t, where):
        return [
            kd_loss(s, t, where=where),
            dkd_loss(s, t, labels, where=where),
            figkd_loss(s, t, level=2, where=where),
            figkd_loss(
                s, t, domain="coefficients", class_permutation=np.arange(8)[::-1], where=where
            ),
        ]

    @jax.jit
    def values_and_grads(s, t, where):
        grads = [
            jax.grad(lambda s, t, i=i: jnp.sum(all_losses(s, t, where)[i]), argnums=(0, 1))(s, t)
            for i in range(4)
        ]
        return all_losses(s, t, where), grads, all_losses(s, t, None)

    values, grads, unmasked = jax.tree.map(np.asarray, values_and_grads(s_bad, t_bad, where))
    _, _, clean = jax.tree.map(np.asarray, values_and_grads(s, t, where))
    for value, grad, reference in zip(values, grads, clean, strict=True):
        assert value[1] == 0.0
        np.testing.assert_allclose(value[[0, 2]], reference[[0, 2]], rtol=1e-6)
        for g in grad:
            np.testing.assert_array_equal(g[1], 0.0)
            assert np.all(np.isfinite(g))
    assert all(np.isnan(u[1]) for u in unmasked)

    # A mask broadcasts to batch_shape: here (2, 3) from (3,).
    s3, t3 = s.reshape(1, 3, 8).repeat(2, 0), t.reshape(1, 3, 8).repeat(2, 0)
    masked = jax.jit(lambda s, t: kd_loss(s, t, where=where))(s3, t3)
    assert masked.shape == (2, 3)
    np.testing.assert_array_equal(masked[:, 1], 0.0)


def test_dkd_labels_out_of_range_give_nan():
    s, t = logits_pair(batch=3, classes=4, dtype=np.float32)
    labels = jnp.array([4, -1, 2])
    values = jax.jit(
        lambda s, t: (
            dkd_loss(s, t, labels),
            dkd_loss(s, t, labels, where=jnp.array([False, False, True])),
        )
    )(s, t)
    assert np.isnan(values[0][0]) and np.isnan(values[0][1]) and np.isfinite(values[0][2])
    np.testing.assert_array_equal(values[1][:2], 0.0)


def test_temperature_scaling(x64):
    s, t = logits_pair(batch=3, classes=7, seed=3, scale=1.0)
    d = t - s
    centred = d - d.mean(axis=-1, keepdims=True)

    @jax.jit
    def values(s, t):
        return (
            kd_loss(s, t, temperature=3.0),
            kd_loss(s / 3.0, t / 3.0, temperature=1.0),
            kd_loss(s, t, temperature=1e4),
            figkd_loss(s, t, temperature=1e4, band="all"),
        )

    kd3, kd1_scaled, kd_hot, figkd_all_hot = values(s, t)
    np.testing.assert_allclose(kd3, 9.0 * kd1_scaled, rtol=1e-12)
    # As T grows both softmaxes approach uniform and T^2 KL approaches half the variance of
    # t - s over the classes: T^2 KL -> sum_i (d_i - mean(d))^2 / (2 C).
    limit = np.sum(centred**2, axis=-1) / (2 * 7)
    np.testing.assert_allclose(kd_hot, limit, rtol=1e-3)
    np.testing.assert_allclose(figkd_all_hot, limit, rtol=1e-3)


def test_standardize_logits():
    z = np.random.default_rng(4).standard_normal((3, 9)).astype(np.float32) * 5 + 2
    weights = np.array([1.0, -2.0, 0.5, 4.0], np.float32)

    @jax.jit
    def values(z):
        constant = jnp.full((2, 4), 3.0)
        return {
            "z": standardize_logits(z),
            "z_ddof0": standardize_logits(z, ddof=0),
            "z_axis0": standardize_logits(z, axis=0),
            "scaled_kd": kd_loss(standardize_logits(3 * z[:1]), standardize_logits(z[1:2])),
            "kd": kd_loss(standardize_logits(z[:1]), standardize_logits(z[1:2])),
            "constant": standardize_logits(constant),
            "constant_grad": jax.grad(lambda c: jnp.sum(standardize_logits(c) * weights))(
                constant[0]
            ),
            "constant_grad_eps": jax.grad(
                lambda c: jnp.sum(standardize_logits(c, eps=0.5) * weights)
            )(constant[0]),
        }

    v = values(z)
    # The authors' normalize: (z - mean) / (1e-7 + torch.std(z)), Bessel-corrected.
    expected = (z - z.mean(-1, keepdims=True)) / (1e-7 + z.std(-1, ddof=1, keepdims=True))
    np.testing.assert_allclose(v["z"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v["z"].std(-1, ddof=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        v["z_ddof0"],
        (z - z.mean(-1, keepdims=True)) / (z.std(-1, keepdims=True) + 1e-7),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(v["z_axis0"].mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(v["scaled_kd"], v["kd"], rtol=1e-5)
    np.testing.assert_array_equal(v["constant"], 0.0)
    # std is not differentiable at a constant vector c, but the standardization is:
    # f(c + t v) = t (v - mean v) / (eps + |t| std v), so its derivative is (v - mean v) / eps.
    # float32: summing w / eps rounds up to 3 times, in any order, by 2**-24 of partial sums of
    # at most 7.5 / eps; the mean (a quarter) is then off by under 3e-6 of the smallest entry,
    # 0.125 / eps.
    expected = weights - weights.mean()
    np.testing.assert_allclose(v["constant_grad"], expected / 1e-7, rtol=1e-5)
    np.testing.assert_allclose(v["constant_grad_eps"], expected / 0.5, rtol=1e-5)


def test_vmap_matches_batch():
    s, t = logits_pair(dtype=np.float32)
    labels = jnp.arange(BATCH)

    @jax.jit
    def both(s, t):
        def per_example(s_i, t_i, y_i):
            return (
                kd_loss(s_i, t_i),
                dkd_loss(s_i, t_i, y_i),
                figkd_loss(s_i, t_i, level=2),
            )

        return jax.vmap(per_example)(s, t, labels), (
            kd_loss(s, t),
            dkd_loss(s, t, labels),
            figkd_loss(s, t, level=2),
        )

    mapped, batched = both(s, t)
    for a, b in zip(mapped, batched, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_traced_temperature():
    s, t = logits_pair(dtype=np.float32)
    traced = jax.jit(lambda s, t, temp: figkd_loss(s, t, temperature=temp))(s, t, 2.0)
    np.testing.assert_allclose(
        traced, np_figkd(s, t, 2.0, 1, "high", "logits", "symmetric"), rtol=1e-5
    )


def test_float32_inputs_stay_float32_with_x64_enabled(x64):
    """float32 logits and temperatures in, float32 out where JAX's default dtype is float64
    (shapes only: no compilation)."""
    spec = jax.ShapeDtypeStruct((2, 8), jnp.float32)
    labels = jnp.zeros(2, jnp.int32)
    for temperature in (2.0, np.full(2, 2.0, np.float32)):
        outputs = [
            jax.eval_shape(lambda s, t, T=temperature: kd_loss(s, t, temperature=T), spec, spec),
            jax.eval_shape(lambda s, t, T=temperature: figkd_loss(s, t, temperature=T), spec, spec),
            jax.eval_shape(
                lambda s, t, T=temperature: dkd_terms(s, t, labels, temperature=T), spec, spec
            ),
        ]
        assert {leaf.dtype for leaf in jax.tree.leaves(outputs)} == {np.dtype(np.float32)}, (
            temperature
        )


def test_per_example_temperature(x64):
    """A temperature of shape batch_shape gives each example the loss of its own scalar T."""
    s, t = logits_pair()
    labels = np.arange(BATCH) % CLASSES
    temps = np.linspace(0.5, 6.0, BATCH)
    expected_dkd = np.stack(
        [np_dkd(s[i], t[i], labels[i], temps[i], 1.0, 8.0)[0] for i in range(BATCH)]
    )
    expected_kd = np.stack([np_kd(s[i], t[i], temps[i]) for i in range(BATCH)])
    expected_figkd = np.stack(
        [np_figkd(s[i], t[i], temps[i], 1, "high", "logits", "symmetric") for i in range(BATCH)]
    )

    @jax.jit
    def per_example(s, t, temps):
        return (
            kd_loss(s, t, temperature=temps),
            figkd_loss(s, t, temperature=temps),
            dkd_loss(s, t, labels, temperature=temps),
            # Classes on axis 0, and a batch of two axes with a temperature of that shape.
            kd_loss(s.T, t.T, temperature=temps, axis=0),
            kd_loss(s.reshape(1, BATCH, -1), t.reshape(1, BATCH, -1), temperature=temps[None]),
        )

    kd, figkd, dkd, kd_axis0, kd_2d = per_example(s, t, temps)
    # Concrete, the temperatures are range-checked: any T > 0 passes, 0.5 included.
    np.testing.assert_allclose(kd_loss(s, t, temperature=temps), expected_kd, rtol=1e-12)
    np.testing.assert_allclose(kd, expected_kd, rtol=1e-12)
    np.testing.assert_allclose(figkd, expected_figkd, rtol=1e-12)
    np.testing.assert_allclose(dkd, expected_dkd, rtol=1e-10)
    np.testing.assert_allclose(kd_axis0, expected_kd, rtol=1e-12)
    np.testing.assert_allclose(kd_2d, expected_kd[None], rtol=1e-12)


def test_defaults_are_the_documented_ones():
    """T = 4 for KD, DKD (both functions) and FiGKD; DKD's alpha = 1 and beta = 8; FiGKD's
    level 1, high band of the logits, symmetric mode. Both calls of each pair run the same
    arithmetic in one program: equal to the bit."""
    s, t = logits_pair(dtype=np.float32)
    labels = np.array([1, 0, 9, 4, 4])

    @jax.jit
    def default_and_explicit(s, t):
        return {
            "kd": (kd_loss(s, t), kd_loss(s, t, temperature=4.0)),
            "dkd_terms": (dkd_terms(s, t, labels), dkd_terms(s, t, labels, temperature=4.0)),
            "dkd": (
                dkd_loss(s, t, labels),
                dkd_loss(s, t, labels, temperature=4.0, alpha=1.0, beta=8.0),
            ),
            "figkd": (
                figkd_loss(s, t),
                figkd_loss(
                    s, t, temperature=4.0, level=1, band="high", domain="logits", mode="symmetric"
                ),
            ),
        }

    for name, (default, explicit) in default_and_explicit(s, t).items():
        for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(explicit), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_batch_of_two_axes_is_the_flattened_batch():
    """batch_shape (2, 3) gives the losses of the 6 examples as a batch of one axis: per-example
    temperatures, labels, mask, a class permutation and the deepest Haar level (3 for C = 8),
    in both FiGKD domains, follow the examples, not an axis position."""
    s, t = logits_pair(batch=6, classes=8, dtype=np.float32)
    temps = np.linspace(1.0, 6.0, 6, dtype=np.float32)
    labels = np.array([0, 7, 3, 1, 5, 2])
    keep = np.array([True, True, False, True, True, True])
    perm = np.random.default_rng(9).permutation(8)

    def all_losses(s, t, temps, labels, keep):
        return [
            kd_loss(s, t, temperature=temps, where=keep),
            *dkd_terms(s, t, labels, temperature=temps, where=keep),
            figkd_loss(s, t, temperature=temps, level=3, class_permutation=perm, where=keep),
            figkd_loss(s, t, temperature=temps, level=3, domain="coefficients", where=keep),
        ]

    @jax.jit
    def both(s, t):
        flat = all_losses(s, t, temps, labels, keep)
        grid = all_losses(*(x.reshape(2, 3, *x.shape[1:]) for x in (s, t, temps, labels, keep)))
        return flat, grid

    flat, grid = both(s, t)
    for a, b in zip(flat, grid, strict=True):
        assert b.shape == (2, 3)
        # The same float32 arithmetic on the same rows.
        np.testing.assert_allclose(np.reshape(b, -1), a, rtol=1e-6)


def test_masked_example_with_traced_zero_temperature_has_zero_gradient_in_kd_dkd_figkd():
    s, t = logits_pair(batch=3, dtype=np.float32)
    keep = jnp.array([True, False, True])
    temps = jnp.array([2.0, 0.0, 4.0])  # traced under jit: its values cannot be checked
    labels = jnp.array([0, 1, 2])
    per_example_losses = {
        "kd": kd_loss,
        "figkd": figkd_loss,
        "dkd": lambda s, t, **kw: dkd_loss(s, t, labels, **kw),
    }

    @jax.jit
    def grads(s, temps):
        def total(s, temps, loss):
            return jnp.sum(loss(s, t, temperature=temps, where=keep))

        return {
            name: jax.grad(total, argnums=(0, 1))(s, temps, loss)
            for name, loss in per_example_losses.items()
        }

    for name, (grad_s, grad_temps) in grads(s, temps).items():
        assert np.all(np.isfinite(grad_s)) and np.all(np.isfinite(grad_temps)), name
        assert np.all(grad_s[1] == 0.0) and grad_temps[1] == 0.0, name
        assert np.any(grad_s[0] != 0.0), name


@pytest.mark.parametrize(
    "temperature",
    [jnp.full((2, 1), 4.0), jnp.full((1,), 4.0), jnp.full((3,), 4.0), jnp.full((2, 8), 4.0)],
    ids=["(B,1)", "(1,)", "(B+1,)", "logits-shaped"],
)
@pytest.mark.parametrize(
    "loss",
    [
        kd_loss,
        figkd_loss,
        lambda s, t, **kw: dkd_loss(s, t, jnp.zeros(2, int), **kw),
        lambda s, t, **kw: dkd_terms(s, t, jnp.zeros(2, int), **kw),
    ],
    ids=["kd", "figkd", "dkd", "dkd_terms"],
)
def test_temperature_of_another_shape_is_refused(loss, temperature):
    message = (
        "temperature must be a scalar or one value per example, of shape batch_shape = (2,), "
        f"got shape {temperature.shape}"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        loss(F, F, temperature=temperature)


@pytest.mark.parametrize(
    "loss", [figkd_jax.dist_loss, figkd_jax.dist_terms, figkd_jax.mlkd_batch_loss]
)
def test_batch_terms_take_a_scalar_temperature(loss):
    with pytest.raises(ValueError, match=r"must be a scalar \(its batch term couples"):
        loss(F, F, temperature=jnp.full((2,), 4.0))
    assert loss(F, F, temperature=jnp.asarray(2.0)) is not None


@pytest.mark.parametrize(
    "temperature",
    [jnp.asarray(0.0), np.array([1.0, 0.0]), jnp.array([2.0, jnp.nan]), np.float32(-1.0)],
    ids=["jax-zero", "numpy-zero-entry", "nan-entry", "numpy-scalar"],
)
def test_concrete_array_temperature_is_range_checked(temperature):
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        kd_loss(F, F, temperature=temperature)


def test_traced_level_names_static_argnames():
    with pytest.raises(TypeError, match="static_argnames"):
        jax.jit(lambda s, level: figkd_loss(s, s, level=level))(F, 1)
    value = jax.jit(figkd_loss, static_argnames="level")(F, F, level=2)
    np.testing.assert_array_equal(value, np.zeros(2))


# The public loss and term functions: everything callable that figkd_jax exports from
# figkd_jax.losses, except the one transform. Exemptions from the convention, with their reasons
# in the docstring of figkd_jax.losses.
LOSS_NAMES = sorted(
    name
    for name in figkd_jax.__all__
    if inspect.isfunction(getattr(figkd_jax, name))
    and getattr(figkd_jax, name).__module__ == "figkd_jax.losses"
    and name != "standardize_logits"
)
TEMPERATURE_EXEMPT = {"mlkd_terms": "temperatures", "mlkd_confidence_fractions": None}


def test_loss_names_cover_the_library():
    """figkd_jax exports every function of figkd_jax.losses, so the walk below sees them all."""
    functions = {name for name in losses.__all__ if inspect.isfunction(getattr(losses, name))}
    assert {*LOSS_NAMES, "standardize_logits"} == functions
    assert len(LOSS_NAMES) == 10


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_follows_one_signature(name):
    """Logits (and labels) positional; temperature, where and axis keyword-only; the class axis
    may be any axis."""
    function = getattr(figkd_jax, name)
    parameters = inspect.signature(function).parameters.values()
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keyword = {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert positional and all(
        n == "labels" or n.endswith(("_logits", "_weak", "_strong")) for n in positional
    ), positional
    assert len(positional) + len(keyword) == len(parameters), "no *args or **kwargs"
    assert keyword.get("where", "missing") is None
    assert keyword.get("axis") == -1
    if name in TEMPERATURE_EXEMPT:
        assert "temperature" not in keyword
        plural = TEMPERATURE_EXEMPT[name]
        assert plural is None or plural in keyword
    else:
        assert "temperature" in keyword
        assert "temperature" in inspect.getdoc(function)

    s, t = logits_pair(batch=4, classes=6, dtype=np.float32)
    labels = np.array([0, 5, 2, 3])

    def call(s, t, **kwargs):
        args = [labels if n == "labels" else (s if "student" in n else t) for n in positional]
        return function(*args, **kwargs)

    keep = np.array([True, True, False, True])
    np.testing.assert_allclose(
        np.concatenate([np.ravel(v) for v in jax.tree.leaves(call(s.T, t.T, axis=0, where=keep))]),
        np.concatenate([np.ravel(v) for v in jax.tree.leaves(call(s, t, where=keep))]),
        rtol=1e-6,
    )


def test_optax_correspondence_stated_in_the_docs():
    """figkd_jax.losses' docstring: kd_loss is T**2 optax.losses.kl_divergence of the tempered
    softmaxes, and figkd_loss is kd_loss of the high bands."""
    optax = pytest.importorskip("optax")  # not in the library-only environment of .ci/library
    s, t = logits_pair(dtype=np.float32)
    temperature = 3.0
    optax_kd = temperature**2 * optax.losses.kl_divergence(
        jax.nn.log_softmax(s / temperature), jax.nn.softmax(t / temperature)
    )
    np.testing.assert_allclose(kd_loss(s, t, temperature=temperature), optax_kd, rtol=1e-5)
    high_s, high_t = figkd_jax.haar_highpass(s, 2), figkd_jax.haar_highpass(t, 2)
    np.testing.assert_allclose(
        figkd_loss(s, t, temperature=temperature, level=2),
        kd_loss(high_s, high_t, temperature=temperature),
        rtol=1e-6,
    )


F = jnp.zeros((2, 8))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: kd_loss(F, jnp.zeros((2, 9))), ValueError, "same shape, got (2, 8) and (2, 9)"),
        (
            lambda: kd_loss(F, jnp.zeros((2, 8), jnp.int32)),
            TypeError,
            "teacher_logits must be a floating",
        ),
        (
            lambda: figkd_loss(jnp.zeros((2, 8), jnp.int8), F),
            TypeError,
            "student_logits must be a floating",
        ),
        (lambda: kd_loss(F, F, temperature=0.0), ValueError, "temperature must be finite and > 0"),
        (lambda: dkd_loss(F, F, jnp.zeros(2, int), temperature=-1), ValueError, "temperature must"),
        (lambda: figkd_loss(F, F, temperature=math.inf), ValueError, "temperature must"),
        (lambda: kd_loss(F, F, temperature=True), TypeError, "temperature must be a positive"),
        (
            lambda: kd_loss(F, F, temperature=jnp.array([4, 2])),
            TypeError,
            "temperature must be a floating-point value, got dtype int32",
        ),
        (lambda: kd_loss(jnp.zeros(()), jnp.zeros(())), ValueError, "with C >= 1"),
        (lambda: kd_loss(jnp.zeros((2, 0)), jnp.zeros((2, 0))), ValueError, "with C >= 1"),
        (lambda: kd_loss(F, F, where=jnp.ones(2)), TypeError, "where must be a bool array"),
        (
            lambda: dkd_loss(F, F, jnp.zeros(3, int)),
            ValueError,
            "labels must have shape batch_shape = (2,)",
        ),
        (lambda: dkd_loss(F, F, jnp.zeros((2, 1), int)), ValueError, "labels must have shape"),
        (lambda: dkd_loss(F, F, jnp.zeros(2)), TypeError, "labels must be an integer array"),
        (lambda: dkd_loss(F[:, :1], F[:, :1], jnp.zeros(2, int)), ValueError, "at least 2 classes"),
        (
            lambda: figkd_loss(F, F, band="mid"),
            ValueError,
            "band must be one of ('high', 'low', 'all')",
        ),
        (lambda: figkd_loss(F, F, domain="freq"), ValueError, "domain must be one of"),
        (lambda: figkd_loss(F, F, mode="smooth"), ValueError, "mode must be one of"),
        (lambda: figkd_loss(F, F, level=4), ValueError, "1 <= level <= haar_max_level(8) = 3"),
        (
            lambda: figkd_loss(F, F, level=0, band="all"),
            ValueError,
            "1 <= level <= haar_max_level(8) = 3",
        ),
        (lambda: figkd_loss(F[:, :1], F[:, :1]), ValueError, "length 1 has no Haar level"),
        (lambda: figkd_loss(F, F, level=1.0), TypeError, "level must be a Python int"),
        (lambda: figkd_loss(F, F, class_permutation=np.arange(7)), ValueError, "shape (C,) = (8,)"),
        (
            lambda: figkd_loss(F, F, class_permutation=np.zeros(8, int)),
            ValueError,
            "each of 0..7 exactly once",
        ),
        (lambda: figkd_loss(F, F, class_permutation=np.arange(8.0)), TypeError, "integer array"),
        (
            lambda: jax.jit(lambda p: figkd_loss(F, F, class_permutation=p))(jnp.arange(9)),
            ValueError,
            "shape (C,) = (8,)",
        ),
        (lambda: standardize_logits(F, axis=2), ValueError, "axis must be an int in [-2, 1]"),
        (lambda: standardize_logits(F, axis=True), ValueError, "in [-2, 1], got True"),
        (lambda: standardize_logits(F, axis=1.0), ValueError, "in [-2, 1], got 1.0"),
        (lambda: standardize_logits(F, eps=-1.0), ValueError, "eps must be >= 0"),
        (lambda: standardize_logits(F, ddof=2), ValueError, "ddof must be 0 or 1"),
        (lambda: standardize_logits(F[:, :1], ddof=1), ValueError, "more than ddof=1 entries"),
        (lambda: standardize_logits(jnp.arange(3)), TypeError, "logits must be a floating"),
    ],
)
def test_invalid_arguments(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_standardize_logits_refuses_a_scalar_in_one_line():
    with pytest.raises(ValueError) as scalar:
        standardize_logits(jnp.zeros(()))
    assert str(scalar.value) == "logits must have at least 1 dimension, got a scalar"


def test_a_mask_of_the_logits_shape_gets_a_hint():
    # The likeliest mistake, a mask per logit, is told apart from any other shape.
    with pytest.raises(ValueError) as other:
        kd_loss(F, F, where=jnp.ones(3, bool))
    assert str(other.value) == "where must be broadcastable to batch_shape (2,), got shape (3,)"
    with pytest.raises(ValueError) as per_logit:
        kd_loss(F, F, where=jnp.ones((2, 8), bool))
    assert str(per_logit.value) == (
        "where must be broadcastable to batch_shape (2,), got shape (2, 8) (it has the logits' "
        "shape: where masks whole examples, not single logits)"
    )


def test_docstring_examples():
    for module in (losses, wavelets):
        result = doctest.testmod(module, extraglobs={"jnp": jnp}, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_docstring_references_resolve_in_the_installed_package():
    """Docstrings point only to what an installed package holds: no repository files, and every
    :func: or :mod: reference names a function of the module or an importable module."""
    for module in (losses, wavelets, figkd_jax.diagnostics):
        texts = [module.__doc__] + [getattr(module, name).__doc__ for name in module.__all__]
        for text in filter(None, texts):
            assert not re.search(r"docs/|\.md\b", text), (module.__name__, text[:80])
            for name in re.findall(r":func:`(\w+)`", text):
                assert inspect.isfunction(getattr(module, name, None)), (module.__name__, name)
            for name in re.findall(r":mod:`([\w.]+)`", text):
                importlib.import_module(name)


def test_public_api():
    assert figkd_jax.__version__ == "0.1.0"
    for name in figkd_jax.__all__:
        assert getattr(figkd_jax, name) is not None
