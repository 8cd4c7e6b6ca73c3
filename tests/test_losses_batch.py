"""DIST and MLKD, whose terms couple the examples of a batch, against NumPy transcriptions of
the authors' code; the class ``axis`` and the ``where`` contract of every loss."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from figkd_jax import (
    MLKD_TEMPERATURES,
    dist_loss,
    dist_terms,
    figkd_loss,
    kd_loss,
    mlkd_batch_loss,
    mlkd_class_loss,
    mlkd_confidence_fractions,
    mlkd_terms,
)


def logits(shape, seed, scale=3.0, dtype=np.float64):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


# NumPy transcriptions (float64) of the authors' code: DIST from hunto/image_classification_sota
# (lib/models/losses/dist_kd.py, with the temperature of its later versions), MLKD from
# Jin-Ying/Multi-Level-Logit-Distillation (mdistiller/distillers/KD_ours.py).


def np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_pearson_rows(a, b, eps=1e-8):
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + eps)


def np_dist(s, t, temperature, beta, gamma):
    """(batch loss, per-example inter-class terms, intra-class term)."""
    y_s, y_t = np_softmax(s / temperature), np_softmax(t / temperature)
    inter_rows = temperature**2 * (1 - np_pearson_rows(y_s, y_t))
    intra = temperature**2 * (1 - np_pearson_rows(y_s.T, y_t.T).mean())
    return beta * inter_rows.mean() + gamma * intra, inter_rows, intra


def np_kd_mean(s, t, temperature):
    log_q = np.log(np_softmax(s / temperature))
    p = np_softmax(t / temperature)
    return temperature**2 * np.sum(p * (np.log(p) - log_q), axis=1).mean()


def np_class_consistency(s, t, temperature):
    p_s, p_t = np_softmax(s / temperature), np_softmax(t / temperature)
    return ((p_t.T @ p_t - p_s.T @ p_s) ** 2).sum() / s.shape[1]


def np_batch_consistency(s, t, temperature):
    p_s, p_t = np_softmax(s / temperature), np_softmax(t / temperature)
    return ((p_t @ p_t.T - p_s @ p_s.T) ** 2).sum() / s.shape[0]


def np_standardize(z, ddof):
    return (z - z.mean(1, keepdims=True)) / (z.std(1, ddof=ddof, keepdims=True) + 1e-7)


def np_mlkd(sw, tw, ss, ts, standardize_ddof=None):
    """MLKD's kd, cc and bc losses of the code (``loss_kd``, ``loss_cc``, ``loss_bc``) before
    ``kd_weight``; the logit-standardization repo z-scores the inputs of ``kd_loss`` only."""
    confidence = np_softmax(tw).max(1)
    mask = confidence <= np.percentile(confidence, 50)
    class_confidence = np_softmax(tw).sum(0)
    class_mask = class_confidence <= np.percentile(class_confidence, 50)
    if standardize_ddof is None:
        kw_s, kw_t, ks_s, ks_t = sw, tw, ss, ts
    else:
        kw_s, kw_t, ks_s, ks_t = (np_standardize(z, standardize_ddof) for z in (sw, tw, ss, ts))
    temps = MLKD_TEMPERATURES
    kd_weak = sum((np_kd_mean(kw_s, kw_t, T) * mask).mean() for T in temps)
    kd_strong = (
        np_kd_mean(ks_s, ks_t, temps[0])
        + np_kd_mean(ks_s, ks_t, 3.0)
        + np_kd_mean(ks_s, ks_t, 5.0)
        + np_kd_mean(kw_s, kw_t, 2.0)  # the weak view, as in the code
        + np_kd_mean(kw_s, kw_t, 6.0)
    )
    cc_weak = sum((np_class_consistency(sw, tw, T) * class_mask).mean() for T in temps)
    bc_weak = sum((np_batch_consistency(sw, tw, T) * mask).mean() for T in temps)
    return {"instance": kd_weak + kd_strong, "class": cc_weak, "batch": bc_weak}


# float64 runs the same arithmetic as the references: agreement to a few ulps of the sums
# (B * C = 60 terms), far below this tolerance.
RTOL64 = 1e-10


def test_dist_matches_the_authors_code(x64):
    s, t = logits((6, 10), 0), logits((6, 10), 1)
    for temperature, beta, gamma in ((1.0, 1.0, 1.0), (4.0, 2.0, 2.0), (2.5, 0.5, 3.0)):
        inter, intra = jax.jit(dist_terms, static_argnames="temperature")(
            s, t, temperature=temperature
        )
        loss = dist_loss(s, t, temperature=temperature, beta=beta, gamma=gamma)
        batch, inter_rows, intra_ref = np_dist(s, t, temperature, beta, gamma)
        np.testing.assert_allclose(inter, inter_rows, rtol=RTOL64)
        np.testing.assert_allclose(intra, np.full(6, intra_ref), rtol=RTOL64)
        np.testing.assert_allclose(jnp.mean(loss), batch, rtol=RTOL64)


def test_dist_properties(x64):
    s, t = logits((5, 7), 2), logits((5, 7), 3)
    inter, intra = dist_terms(s, s)
    # Identical predictions: the correlations are 1 up to the code's 1e-8 in the denominator.
    np.testing.assert_allclose(inter, 0.0, atol=1e-5)
    np.testing.assert_allclose(intra, 0.0, atol=1e-5)
    # Correlations are in [-1, 1]: each term is in [0, 2 T^2].
    inter, intra = dist_terms(s, t, temperature=3.0)
    assert np.all((inter >= 0) & (inter <= 18)) and np.all((intra >= 0) & (intra <= 18))
    # Shifting a row of logits changes no softmax.
    shifted = s + np.arange(5)[:, None]
    np.testing.assert_allclose(dist_loss(shifted, t), dist_loss(s, t), rtol=1e-9)
    # Permuting the batch permutes the per-example values and keeps the batch term.
    order = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(dist_loss(s[order], t[order]), dist_loss(s, t)[order], rtol=1e-9)


def test_defaults_are_the_documented_ones():
    """DIST: T = 1, beta = gamma = 1; MLKD's Gram terms: T = 4; mlkd_terms: the code's
    temperatures, 3 of them on the strong view, raw logits. Both calls of each pair run the
    same arithmetic in one program: equal to the bit."""
    sw, tw, ss, ts = (logits((4, 5), seed, dtype=np.float32) for seed in range(90, 94))

    @jax.jit
    def default_and_explicit(sw, tw, ss, ts):
        return {
            "dist_terms": (dist_terms(sw, tw), dist_terms(sw, tw, temperature=1.0)),
            "dist": (dist_loss(sw, tw), dist_loss(sw, tw, temperature=1.0, beta=1.0, gamma=1.0)),
            "batch": (mlkd_batch_loss(sw, tw), mlkd_batch_loss(sw, tw, temperature=4.0)),
            "class": (mlkd_class_loss(sw, tw), mlkd_class_loss(sw, tw, temperature=4.0)),
            "mlkd_terms": (
                mlkd_terms(sw, tw, ss, ts),
                mlkd_terms(
                    sw,
                    tw,
                    ss,
                    ts,
                    temperatures=(4.0, 3.0, 5.0, 2.0, 6.0),
                    strong_temperatures=3,
                    standardize=False,
                ),
            ),
        }

    for name, (default, explicit) in default_and_explicit(sw, tw, ss, ts).items():
        for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(explicit), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_dist_loss_passes_its_arguments_to_the_terms(x64):
    """dist_loss = beta * inter + gamma * intra with its own temperature, mask and class axis:
    the kept examples get the weighted terms of the sub-batch without the masked one, which
    gets 0 (the NumPy transcription of the authors' code on the sub-batch)."""
    s, t = logits((5, 7), 95), logits((5, 7), 96)
    where = np.array([True, True, False, True, True])
    keep = where.nonzero()[0]
    loss = dist_loss(s.T, t.T, temperature=2.0, beta=0.5, gamma=3.0, where=where, axis=0)
    _, inter_rows, intra = np_dist(s[keep], t[keep], 2.0, 0.5, 3.0)
    np.testing.assert_allclose(loss[keep], 0.5 * inter_rows + 3.0 * intra, rtol=RTOL64)
    assert loss[2] == 0.0


def test_dist_with_two_classes_and_a_batch_of_two_axes():
    """Two classes: each centred probability vector is (a, -a), so every correlation is +-1 up
    to the code's 1e-8, and inter is 0 or 2 T**2. A batch of two axes: the terms of the
    flattened batch (the intra-class correlation runs over every unmasked position)."""
    s = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    t = np.array([[2.0, 0.0], [2.0, 0.0]], np.float32)
    grid_s, grid_t = (
        logits((2, 3, 5), 80, dtype=np.float32),
        logits((2, 3, 5), 81, dtype=np.float32),
    )
    where = np.array([[True, False, True], [True, True, True]])

    @jax.jit
    def values(s, t, grid_s, grid_t):
        flat = dist_terms(
            grid_s.reshape(6, 5), grid_t.reshape(6, 5), temperature=2.0, where=where.reshape(6)
        )
        return (
            dist_terms(s, t, temperature=3.0),
            flat,
            dist_terms(grid_s, grid_t, temperature=2.0, where=where),
        )

    (inter, _), flat, grid = values(s, t, grid_s, grid_t)
    # 1 - rho with |rho| = 1 - O(1e-8 / |a| |b|): float32 keeps 1 - rho within a few ulps.
    np.testing.assert_allclose(inter, [0.0, 18.0], atol=1e-5)
    for a, b in zip(flat, grid, strict=True):
        assert b.shape == (2, 3)
        # The same float32 arithmetic on the same rows.
        np.testing.assert_allclose(np.reshape(b, -1), a, rtol=1e-6)


def test_mlkd_matches_the_authors_code(x64):
    b, c = 8, 12
    sw, tw, ss, ts = (logits((b, c), seed) for seed in range(4))
    for standardize in (False, True):
        # False through the default: raw logits are what MLKD's own code distils.
        options = {"standardize": True} if standardize else {}
        terms = jax.jit(functools.partial(mlkd_terms, **options))(sw, tw, ss, ts)
        reference = np_mlkd(sw, tw, ss, ts, standardize_ddof=1 if standardize else None)
        for name, value in terms.items():
            assert value.shape == (b,)
            np.testing.assert_allclose(jnp.mean(value), reference[name], rtol=RTOL64, err_msg=name)


def test_mlkd_confidence_fractions(x64):
    # Even batch, distinct confidences: exactly half at or below the median.
    tw = logits((8, 5), 5)
    example, klass = mlkd_confidence_fractions(tw)
    # float32 scalars: the exact ratio, rounded once.
    assert (example, klass) == (np.float32(0.5), np.float32(3 / 5))  # 3 of 5 classes
    # Odd batch: the median is an element, (B + 1) / 2 of B examples.
    example, _ = mlkd_confidence_fractions(tw[:7])
    assert example == np.float32(4 / 7)
    # Ties count as at or below, as numpy's `<=` in the code.
    example, _ = mlkd_confidence_fractions(np.zeros((4, 3)))
    assert float(example) == 1.0
    # Confidence is each example's own softmax: [1, 0] and [2, 1] tie above [0, 0] and all three
    # are at or below the median (one softmax over the whole batch would rank them apart).
    example, _ = mlkd_confidence_fractions(np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0]]))
    assert float(example) == 1.0
    # A masked example is left out: the fractions of the sub-batch.
    where = np.array([True] * 7 + [False])
    masked = mlkd_confidence_fractions(tw, where=where)
    np.testing.assert_array_equal(masked, mlkd_confidence_fractions(tw[:7]))


def test_gram_terms_are_zero_for_equal_predictions_and_positive_otherwise(x64):
    s, t = logits((4, 6), 6), logits((4, 6), 7)
    for loss in (mlkd_batch_loss, mlkd_class_loss):
        np.testing.assert_allclose(loss(s, s + 1.0), 0.0, atol=1e-15)
        value = loss(s, t, temperature=2.0)
        assert np.all(value > 0) and np.ptp(value) == 0.0


@pytest.mark.slow
def test_masks_take_examples_out_of_the_batch_terms():
    b, c = 6, 10
    sw, tw, ss, ts = (logits((b, c), seed, dtype=np.float32) for seed in range(10, 14))
    where = np.array([True, True, False, True, True, True])
    keep = where.nonzero()[0]
    bad = [x.copy() for x in (sw, tw, ss, ts)]
    bad[0][2, 1], bad[1][2, 4], bad[2][2, 0], bad[3][2, 9] = np.nan, np.inf, -np.inf, np.nan

    def batch_losses(sw, tw, ss, ts, where):
        return {
            "dist": dist_loss(sw, tw, temperature=4.0, where=where),
            **mlkd_terms(sw, tw, ss, ts, where=where),
        }

    @jax.jit
    def values_and_grads(sw, tw, ss, ts):
        values = batch_losses(sw, tw, ss, ts, where)
        grads = {
            name: jax.grad(
                lambda a, b, n=name: jnp.sum(batch_losses(a, tw, b, ts, where)[n]), argnums=(0, 1)
            )(sw, ss)
            for name in values
        }
        return values, grads

    values, grads = jax.tree.map(np.asarray, values_and_grads(*bad))
    sub = jax.jit(lambda *x: batch_losses(*x, None))(*(x[keep] for x in (sw, tw, ss, ts)))
    for name, value in values.items():
        assert value[2] == 0.0, name
        # float32: the masked batch sums over 5 examples in another order than the sub-batch;
        # both are within a few ulps (2**-24 ~ 6e-8) times the terms' sizes of the value.
        np.testing.assert_allclose(value[keep], sub[name], rtol=1e-5, err_msg=name)
        for g in grads[name]:
            np.testing.assert_array_equal(g[2], 0.0)
            assert np.all(np.isfinite(g)), name
    # Everything masked: zeros, not NaN.
    none = jax.jit(lambda *x: batch_losses(*x, np.zeros(b, bool)))(sw, tw, ss, ts)
    for value in none.values():
        np.testing.assert_array_equal(value, 0.0)


def test_batch_terms_leave_masked_examples_out():
    """The fast tier's check of the where contract of DIST and MLKD (standardized logits
    included): a masked example with non-finite logits in both views gives 0 and exactly zero
    gradient, and the others get the values of the sub-batch without it (MLKD's confidence
    fractions included: 2 of 3 examples at or below the median, not 2 of 4)."""
    clean = [logits((4, 5), seed, dtype=np.float32) for seed in range(50, 54)]
    where = np.array([True, False, True, True])
    keep = where.nonzero()[0]
    bad = [x.copy() for x in clean]
    bad[0][1, 0], bad[1][1, 2], bad[2][1, 3], bad[3][1, 4] = np.nan, np.inf, np.nan, -np.inf
    options = {"temperatures": (4.0, 2.0), "strong_temperatures": 1, "standardize": True}

    def batch_terms(sw, tw, ss, ts, where):
        inter, intra = dist_terms(sw, tw, temperature=2.0, where=where)
        return {
            "inter": inter,
            "intra": intra,
            **mlkd_terms(sw, tw, ss, ts, where=where, **options),
        }

    @jax.jit
    def values_and_grads(sw, tw, ss, ts):
        def total(sw, ss):
            return sum(jnp.sum(term) for term in batch_terms(sw, tw, ss, ts, where).values())

        sub = batch_terms(*(x[keep] for x in (sw, tw, ss, ts)), None)
        return batch_terms(sw, tw, ss, ts, where), sub, jax.grad(total, argnums=(0, 1))(sw, ss)

    masked, sub, grads = jax.tree.map(np.asarray, values_and_grads(*bad))
    for name, value in masked.items():
        assert value[1] == 0.0, name
        # float32 sums over the same terms in another order: a few ulps (2**-24 ~ 6e-8).
        np.testing.assert_allclose(value[keep], sub[name], rtol=1e-5, err_msg=name)
    for grad in grads:
        np.testing.assert_array_equal(grad[1], 0.0)
        assert np.all(np.isfinite(grad))


def test_batch_terms_with_one_or_no_unmasked_example():
    """One unmasked example: the batch terms of that example alone (its centred probabilities
    are 0, so DIST's class correlations are 0, not NaN, and intra is T**2). None: zeros."""
    s, t = logits((3, 5), 70, dtype=np.float32), logits((3, 5), 71, dtype=np.float32)
    one, none = np.array([False, True, False]), np.zeros(3, bool)

    @jax.jit
    def values(s, t):
        def terms(s, t, where):
            inter, intra = dist_terms(s, t, temperature=2.0, where=where)
            return {
                "inter": inter,
                "intra": intra,
                "batch": mlkd_batch_loss(s, t, where=where),
                "class": mlkd_class_loss(s, t, where=where),
                "example_fraction": mlkd_confidence_fractions(t, where=where)[0],
            }

        return terms(s, t, one), terms(s[1:2], t[1:2], None), terms(s, t, none)

    masked, alone, empty = values(s, t)
    fraction = masked.pop("example_fraction")
    assert fraction == alone.pop("example_fraction") == 1.0
    assert empty.pop("example_fraction") == 0.0
    for name, value in masked.items():
        # The same float32 arithmetic on the same row, with zeros added: a few ulps.
        np.testing.assert_allclose(value[1], alone[name][0], rtol=1e-6, err_msg=name)
        assert value[0] == value[2] == 0.0, name
        np.testing.assert_array_equal(empty[name], 0.0)
    np.testing.assert_allclose(masked["intra"][1], 4.0, rtol=1e-6)


def test_mlkd_strong_temperatures_bounds_are_allowed(x64):
    """strong_temperatures may be 0 (the strong view unused) or len(temperatures) (the strong
    view at every temperature)."""
    sw, tw, ss, ts = (logits((4, 5), seed) for seed in range(60, 64))
    temperatures = (4.0, 2.0)
    fraction = float(mlkd_confidence_fractions(tw)[0])
    kd_weak = [np.mean(kd_loss(sw, tw, temperature=T)) for T in temperatures]
    kd_strong = [np.mean(kd_loss(ss, ts, temperature=T)) for T in temperatures]
    none = mlkd_terms(sw, tw, ss, ts, temperatures=temperatures, strong_temperatures=0)
    every = mlkd_terms(sw, tw, ss, ts, temperatures=temperatures, strong_temperatures=2)
    np.testing.assert_allclose(
        np.mean(none["instance"]), (1 + fraction) * sum(kd_weak), rtol=RTOL64
    )
    np.testing.assert_allclose(
        np.mean(every["instance"]), fraction * sum(kd_weak) + sum(kd_strong), rtol=RTOL64
    )


@pytest.mark.slow
def test_gradients(x64):
    sw, tw, ss, ts = (logits((4, 5), seed, scale=1.0) for seed in range(20, 24))

    def losses(sw, ss):
        terms = mlkd_terms(sw, tw, ss, ts, temperatures=(4.0, 2.0), strong_temperatures=1)
        return dist_loss(sw, tw, temperature=4.0), terms["instance"], terms["class"], terms["batch"]

    check_grads(jax.jit(losses), (sw, ss), order=1, modes=["rev"])


def test_dist_gradient_at_a_constant_student_is_its_formulas(x64):
    # A student that puts the same probability on every class of every example has zero centred
    # vectors in both correlations. The code's cosine a.b / (|a| |b| + 1e-8) is differentiable
    # there, with gradient b / 1e-8 in a: the norm's zero-gradient branch must neither make it
    # NaN nor change it. Central differences with steps far below 1e-8 (float64) measure it.
    teacher = logits((3, 4), 25, scale=1.0)
    loss = jax.jit(lambda s: jnp.sum(dist_loss(s, teacher)))
    check_grads(loss, (np.zeros((3, 4)),), order=1, modes=["rev"], eps=1e-12, rtol=1e-3)


def test_low_precision_inputs_compute_in_float32():
    sw, tw, ss, ts = (logits((4, 6), seed, dtype=np.float32) for seed in range(30, 34))

    @jax.jit
    def all_values(sw, tw, ss, ts):
        return [dist_loss(sw, tw, temperature=4.0), *mlkd_terms(sw, tw, ss, ts).values()]

    upcast = [jnp.asarray(x, jnp.bfloat16).astype(jnp.float32) for x in (sw, tw, ss, ts)]
    reference = all_values(*upcast)
    values = all_values(*(jnp.asarray(x, jnp.bfloat16) for x in (sw, tw, ss, ts)))
    for value, expected in zip(values, reference, strict=True):
        assert value.dtype == jnp.float32
        # Same float32 arithmetic on the same values; only XLA's fusion of the convert may
        # reorder a sum: a few float32 ulps.
        np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_float32_inputs_stay_float32_with_x64_enabled(x64):
    """float32 in, float32 out even where JAX's default dtype is float64 (shapes only: no
    compilation)."""
    spec = jax.ShapeDtypeStruct((4, 6), jnp.float32)
    outputs = [
        jax.eval_shape(dist_terms, spec, spec),
        jax.eval_shape(mlkd_terms, spec, spec, spec, spec),
        jax.eval_shape(mlkd_batch_loss, spec, spec),
        jax.eval_shape(mlkd_class_loss, spec, spec),
        jax.eval_shape(mlkd_confidence_fractions, spec),
    ]
    for leaf in jax.tree.leaves(outputs):
        assert leaf.dtype == jnp.float32, outputs


def test_class_axis_and_where_contract():
    s, t = logits((3, 4, 10), 40, dtype=np.float32), logits((3, 4, 10), 41, dtype=np.float32)
    where = np.array([True, False, True, True])
    for loss in (kd_loss, figkd_loss, dist_loss):
        last = loss(s, t, where=where)
        first = loss(np.moveaxis(s, -1, 0), np.moveaxis(t, -1, 0), where=where, axis=0)
        middle = loss(np.moveaxis(s, -1, 1), np.moveaxis(t, -1, 1), where=where, axis=1)
        assert last.shape == first.shape == middle.shape == (3, 4)
        # Moving the axis moves data, not arithmetic: the same values.
        np.testing.assert_array_equal(first, last)
        np.testing.assert_array_equal(middle, last)
    with pytest.raises(ValueError, match=re.escape("it has the logits' shape")):
        kd_loss(s, t, where=np.ones(s.shape, bool))
    with pytest.raises(ValueError, match=re.escape("axis must be an int in [-3, 2]")):
        figkd_loss(s, t, axis=3)


F = jnp.zeros((4, 6))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: dist_loss(F[:, :1], F[:, :1]), ValueError, "DIST needs at least 2 classes"),
        (lambda: dist_loss(F, F, temperature=0.0), ValueError, "temperature must be finite"),
        (
            lambda: dist_loss(jnp.zeros((2, 3, 1)), jnp.zeros((2, 3, 1))),
            ValueError,
            "DIST needs at least 2 classes",
        ),
        (lambda: dist_loss(F, jnp.zeros((4, 5))), ValueError, "same shape"),
        (lambda: dist_terms(F, F, axis=2), ValueError, "axis must be an int in [-2, 1]"),
        (lambda: dist_terms(F, F, axis=True), ValueError, "axis must be an int"),
        (lambda: mlkd_batch_loss(F[None], F[None]), ValueError, "must have shape (B, C)"),
        (lambda: mlkd_class_loss(F, F, temperature=-1.0), ValueError, "temperature must"),
        (lambda: mlkd_terms(F, F, F, F, temperatures=()), ValueError, "non-empty tuple"),
        (lambda: mlkd_terms(F, F, F, F, temperatures=(4.0, 0.0)), ValueError, "temperature"),
        (lambda: mlkd_terms(F, F, F, F, strong_temperatures=6), ValueError, "in [0, 5]"),
        (lambda: mlkd_terms(F, F, F[:2], F[:2]), ValueError, "both views must have the same"),
        (
            lambda: mlkd_confidence_fractions(jnp.zeros((2, 3, 4))),
            ValueError,
            "teacher_logits must have shape (B, C)",
        ),
        (
            lambda: mlkd_terms(F, F, F, F, where=jnp.ones(4)),
            TypeError,
            "where must be a bool array",
        ),
    ],
)
def test_invalid_arguments(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: mlkd_terms(F, F, F, F, temperatures=(jnp.full((4,), 4.0),)),
            ValueError,
            "temperature of mlkd_terms must be a scalar (its batch term couples the examples), "
            "got shape (4,)",
        ),
        *(
            (
                lambda loss=loss: loss(F, F, temperature=jnp.full((4,), 4.0)),
                ValueError,
                f"temperature of {loss.__name__} must be a scalar (its batch term couples the "
                "examples), got shape (4,)",
            )
            for loss in (mlkd_batch_loss, mlkd_class_loss)
        ),
        *(
            (
                lambda k=k: mlkd_terms(F, F, F, F, temperatures=(4.0, 2.0), strong_temperatures=k),
                ValueError,
                f"strong_temperatures must be an int in [0, 2], got {k!r}",
            )
            for k in (-1, 3, 1.0, True)
        ),
        (
            lambda: mlkd_terms(F, F, F[:2], F[:2]),
            ValueError,
            "the logits of both views must have the same shape (B, C), got (4, 6) and (2, 6)",
        ),
        (
            lambda: dist_terms(F, F, temperature=jnp.full((4,), 2.0)),
            ValueError,
            "temperature of dist_terms must be a scalar (its batch term couples the examples), "
            "got shape (4,)",
        ),
    ],
)
def test_invalid_arguments_whole_message(call, error, message):
    """The whole one-line message, not a part of it: the argument, its valid range, the value."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()
