"""Tests of the Haar transform against PyWavelets and of its JAX behaviour."""

import re
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt
from jax.test_util import check_grads

from figkd_jax import wavelets
from figkd_jax.wavelets import (
    MODES,
    haar_dwt,
    haar_highpass,
    haar_idwt,
    haar_lowpass,
    haar_max_level,
    haar_wavedec,
    haar_waverec,
)
from tests.jax_compat import enable_x64

ALL_LENGTHS = (*range(1, 258), 1000)
# XLA compiles every operation anew for each shape (0.05-0.1 s apiece on a busy CPU), so XLA
# runs few cases (length, modes, levels): small lengths with odd and even halvings at every
# level, and the longest at its first and deepest level, which averages blocks of 512 samples
# (where float32 rounding accumulates).
XLA_CASES = {
    np.float32: (
        (1, MODES, None),
        (2, MODES, None),
        (3, MODES, None),
        (6, MODES, None),
        (7, MODES, None),
        (1000, ("symmetric",), (1, 9)),
    ),
    np.float64: ((2, MODES, None), (7, MODES, None)),
}
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-6}


def max_relative_error(actual, expected) -> float:
    """``max |actual - expected| / max |expected|`` over all entries of one or more arrays."""
    if isinstance(expected, list):
        actual = np.concatenate([np.ravel(a) for a in actual])
        expected = np.concatenate([np.ravel(e) for e in expected])
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = max(np.max(np.abs(expected)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(actual - expected)) / scale)


def pywt_bands(x, level, mode):
    coeffs = pywt.wavedec(x, "haar", mode=mode, level=level)
    low = pywt.waverec([coeffs[0]] + [np.zeros_like(c) for c in coeffs[1:]], "haar", mode=mode)
    high = pywt.waverec([np.zeros_like(coeffs[0]), *coeffs[1:]], "haar", mode=mode)
    n = x.shape[-1]
    return coeffs, low[..., :n], high[..., :n]


def transform_everything(x, modes=MODES, levels=None):
    """Every function of the module on ``x``, for each of ``modes`` and ``levels`` (default:
    every valid level)."""
    n = x.shape[-1]
    outputs = {}
    for mode in modes:
        a, d = haar_dwt(x, mode=mode)
        outputs["dwt", mode] = [a, d]
        outputs["idwt", mode] = haar_idwt(a, d)
        for level in levels or range(1, haar_max_level(n) + 1):
            coeffs = haar_wavedec(x, level, mode=mode)
            outputs["wavedec", mode, level] = coeffs
            outputs["waverec", mode, level] = haar_waverec(coeffs)
            outputs["waverec_cropped", mode, level] = haar_waverec(coeffs, length=n)
            outputs["lowpass", mode, level] = haar_lowpass(x, level, mode=mode)
            outputs["highpass", mode, level] = haar_highpass(x, level, mode=mode)
    return outputs


def parity_errors(x, outputs, dtype):
    """Relative error of each output of ``transform_everything(x)``, computed in ``dtype``,
    against pywt run in float64 on the same values."""
    reference = np.asarray(x, np.float64)
    expected = {}
    for key in outputs:
        function, mode, *level = key
        level = level[0] if level else None
        if function == "dwt":
            pa, pd = pywt.dwt(reference, "haar", mode=mode)
            expected[key] = [pa, pd]
            expected["idwt", mode] = pywt.idwt(pa, pd, "haar", mode=mode)
        elif function == "wavedec":
            coeffs, low, high = pywt_bands(reference, level, mode)
            expected[key] = coeffs
            expected["waverec", mode, level] = pywt.waverec(coeffs, "haar", mode=mode)
            expected["waverec_cropped", mode, level] = reference
            expected["lowpass", mode, level] = low
            expected["highpass", mode, level] = high
    errors = {}
    for key, output in outputs.items():
        arrays = output if isinstance(output, list) else [output]
        assert all(a.dtype == dtype for a in arrays), key
        if isinstance(output, list):
            assert [a.shape for a in output] == [e.shape for e in expected[key]], key
        errors[key] = max_relative_error(output, expected[key])
    return errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pywt_for_every_length_level_and_mode(dtype, monkeypatch):
    # XLA would compile each of the ~20,000 (function, length, level, mode) cases separately
    # (many minutes on CPU), so this sweep runs the module's own code with NumPy standing in for
    # jax.numpy: it uses only functions whose semantics the two share (matmul's precision
    # argument aside, which only matters on accelerators). The next test runs the same checks
    # through XLA on a subset of lengths.
    numpy_as_jnp = SimpleNamespace(
        **{
            **{name: getattr(np, name) for name in dir(np) if not name.startswith("_")},
            "matmul": lambda a, b, precision: np.matmul(a, b),
        }
    )
    monkeypatch.setattr(wavelets, "jnp", numpy_as_jnp)
    rng = np.random.default_rng(0)
    worst = {}
    for n in ALL_LENGTHS:
        x = rng.standard_normal((3, n)).astype(dtype)
        errors = parity_errors(x, transform_everything(x), dtype)
        worst.update({(n, *key): value for key, value in errors.items()})
    bad = {key: value for key, value in worst.items() if value > TOLERANCE[dtype]}
    assert not bad, f"{len(bad)} cases over tolerance, e.g. {sorted(bad.items())[:5]}"
    assert len(worst) > 20_000


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pywt_through_xla(dtype):
    rng = np.random.default_rng(1)
    with enable_x64(dtype == np.float64):
        for n, modes, levels in XLA_CASES[dtype]:
            x = rng.standard_normal((2, n)).astype(dtype)
            outputs = jax.jit(transform_everything, static_argnums=(1, 2))(x, modes, levels)
            errors = parity_errors(x, outputs, dtype)
            bad = {key: value for key, value in errors.items() if value > TOLERANCE[dtype]}
            assert not bad, f"length {n}: {bad}"


# The tests below put all of their JAX work in one jitted function: a single compilation is far
# cheaper than compiling each operation of each shape separately, as eager execution does.


def test_hand_computed_values():
    @jax.jit
    def values():
        x5 = jnp.array([1.0, 3.0, 4.0, 8.0, 5.0])
        x4 = x5[:4]
        return {
            "dwt": haar_dwt(x5),
            "dwt_zero": haar_dwt(x5[:3], mode="zero"),
            "high1": haar_highpass(x4, 1),
            "low1": haar_lowpass(x4, 1),
            "low2": haar_lowpass(x4, 2),
            "high2": haar_highpass(x4, 2),
            "low1_odd": haar_lowpass(x5[:3], 1),
            "low2_odd": haar_lowpass(x5, 2),
        }

    s = 2**0.5
    v = jax.tree.map(np.asarray, values())
    np.testing.assert_allclose(v["dwt"][0], [4 / s, 12 / s, 10 / s], rtol=1e-6)
    np.testing.assert_allclose(v["dwt"][1], [-2 / s, -4 / s, 0.0], atol=1e-6)
    np.testing.assert_allclose(v["dwt_zero"][0], [4 / s, 4 / s], rtol=1e-6)
    np.testing.assert_allclose(v["dwt_zero"][1], [-2 / s, 4 / s], rtol=1e-6)
    np.testing.assert_allclose(v["high1"], [-1.0, 1.0, -2.0, 2.0])
    np.testing.assert_allclose(v["low1"], [2.0, 2.0, 6.0, 6.0])
    np.testing.assert_allclose(v["low2"], [4.0, 4.0, 4.0, 4.0])
    np.testing.assert_allclose(v["high2"], [-3.0, -1.0, 0.0, 4.0])
    np.testing.assert_allclose(v["low1_odd"], [2.0, 2.0, 4.0])
    # Level 1 gives pair means [2, 6, 5]; level 2 extends them to [2, 6, 5, 5].
    np.testing.assert_allclose(v["low2_odd"], [4.0, 4.0, 4.0, 4.0, 5.0])


def test_low_plus_high_is_identity_and_shift_only_moves_the_low_band():
    lengths = (6, 7)
    xs = tuple(jax.random.normal(jax.random.key(n), (3, n)) for n in lengths)
    shift = jnp.array([[-5.0], [0.5], [40.0]])

    @jax.jit
    def bands(xs):
        out = {}
        for x in xs:
            n = x.shape[-1]
            for mode in MODES:
                for level in range(1, haar_max_level(n) + 1):
                    out[n, mode, level] = (
                        haar_lowpass(x, level, mode=mode),
                        haar_highpass(x, level, mode=mode),
                        haar_highpass(x + shift, level, mode=mode),
                        haar_wavedec(jnp.ones((n,)), level, mode=mode)[1:],
                    )
        return out

    for (n, mode, level), (low, high, high_shifted, details) in bands(xs).items():
        x = xs[lengths.index(n)]
        np.testing.assert_allclose(low + high, x, atol=1e-5)
        if mode == "zero" and n % 2**level:
            # Some level had odd length and was extended by a zero, not by the offset.
            assert not np.allclose(high_shifted, high, atol=1e-3)
            continue
        # A constant signal has no detail, so the high band ignores per-example offsets.
        assert all(np.max(np.abs(d)) == 0.0 for d in details)
        np.testing.assert_allclose(high_shifted, high, atol=2e-5)


def test_any_axis_matches_pywt():
    x = np.random.default_rng(2).standard_normal((9, 6, 5)).astype(np.float32)

    @jax.jit
    def per_axis(x):
        out = {}
        for axis in (0, 1, -1):
            coeffs = haar_wavedec(x, 2, axis=axis)
            a, d = haar_dwt(x, axis=axis, mode="zero")
            out[axis] = {
                "wavedec": coeffs,
                "waverec": haar_waverec(coeffs, axis=axis),
                "dwt": [a, d],
                "idwt": haar_idwt(a, d, axis=axis),
                "low": haar_lowpass(x, 2, axis=axis),
                "high": haar_highpass(x, 2, axis=axis),
            }
        return out

    for axis, ours in per_axis(x).items():
        coeffs = pywt.wavedec(x, "haar", level=2, axis=axis)
        _, low, high = pywt_bands(np.moveaxis(x, axis, -1), 2, "symmetric")
        expected = {
            "wavedec": coeffs,
            "waverec": pywt.waverec(coeffs, "haar", axis=axis),
            "dwt": list(pywt.dwt(x, "haar", mode="zero", axis=axis)),
            "idwt": pywt.idwt(*pywt.dwt(x, "haar", mode="zero", axis=axis), "haar", axis=axis),
            "low": np.moveaxis(low, -1, axis),
            "high": np.moveaxis(high, -1, axis),
        }
        for key, value in ours.items():
            assert max_relative_error(value, expected[key]) < 1e-6, (axis, key)


def test_none_coefficients_mean_zeros():
    x = jnp.arange(11.0)

    @jax.jit
    def reconstructions(x):
        coeffs = haar_wavedec(x, 3)
        a, d = haar_dwt(x)
        return {
            "high": (haar_waverec([None, *coeffs[1:]], length=11), haar_highpass(x, 3)),
            "low": (haar_waverec([coeffs[0], None, None, None], length=11), haar_lowpass(x, 3)),
            "idwt": (haar_idwt(None, d), haar_idwt(jnp.zeros_like(a), d)),
            "uncropped": (haar_waverec([coeffs[0], None, None, None]), jnp.zeros(16)),
        }

    for key, (actual, expected) in reconstructions(x).items():
        assert actual.shape == expected.shape, key
        if key != "uncropped":
            np.testing.assert_allclose(actual, expected, atol=1e-5, err_msg=key)


def test_jit_vmap_and_grad(x64):
    x = jax.random.normal(jax.random.key(3), (3, 2, 7), dtype=jnp.float64)

    @jax.jit
    def batched_and_not(x):
        return {
            mode: (
                jax.vmap(lambda row, mode=mode: haar_wavedec(row, 2, mode=mode))(x),
                haar_wavedec(x, 2, mode=mode),
            )
            for mode in MODES
        }

    for batched, direct in batched_and_not(x).values():
        for b, c in zip(batched, direct, strict=True):
            np.testing.assert_allclose(b, c, rtol=1e-12)

    @jax.jit
    def transforms(v):
        return (
            [haar_highpass(v, 2, mode=mode) for mode in MODES],
            haar_lowpass(v, 1),
            haar_waverec(haar_wavedec(v, 2, mode="zero"), length=7),
        )

    check_grads(transforms, (x,), order=1, modes=["fwd", "rev"])
    # The transpose of an orthogonal projection is itself: grad <w, high(x)> = high(w) (n = 2^k).
    w = jax.random.normal(jax.random.key(4), (16,), dtype=jnp.float64)

    @jax.jit
    def grads_and_bands(w):
        grad = jax.grad(lambda v, level: jnp.vdot(w, haar_highpass(v, level)), argnums=0)
        return [(grad(jnp.ones(16), level), haar_highpass(w, level)) for level in (1, 2, 4)]

    for grad, band in grads_and_bands(w):
        np.testing.assert_allclose(grad, band, rtol=1e-12)


def test_dtypes(x64):
    def everything(x):
        coeffs = haar_wavedec(x, 3)
        bands = [haar_highpass(x, 2), haar_lowpass(x, 1)]
        return [*haar_dwt(x), haar_idwt(*haar_dwt(x)), *bands, *coeffs, haar_waverec(coeffs)]

    for dtype, expected in [
        (jnp.bfloat16, jnp.float32),
        (jnp.float16, jnp.float32),
        (jnp.float32, jnp.float32),
        (jnp.float64, jnp.float64),
        (jnp.int32, jnp.float32),
    ]:
        outputs = jax.eval_shape(everything, jax.ShapeDtypeStruct((2, 10), dtype))
        assert all(o.dtype == expected for o in outputs), dtype
    # bfloat16 inputs are transformed in float32, not rounded at every step.
    x = jnp.linspace(-3, 3, 10).astype(jnp.bfloat16)
    from_bf16, from_f32 = jax.jit(lambda x: (everything(x), everything(x.astype(jnp.float32))))(x)
    for a, b in zip(from_bf16, from_f32, strict=True):
        np.testing.assert_array_equal(a, b)


def test_max_level_matches_pywt():
    assert [haar_max_level(n) for n in range(1, 1100)] == [
        pywt.dwt_max_level(n, 2) for n in range(1, 1100)
    ]


MODE_LIST = "('symmetric', 'zero', 'periodization')"
NO_LEVEL = (
    "level 1 is invalid: a signal of length 1 has no Haar level (valid levels are "
    "1 <= level <= haar_max_level(length) = 0; it needs >= 2 samples)"
)


# Whole messages: each names the argument, its valid range and the value given.
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: haar_wavedec(jnp.ones(10), 0),
            ValueError,
            "level must satisfy 1 <= level <= haar_max_level(10) = 3, got 0",
        ),
        (
            lambda: haar_wavedec(jnp.ones(10), 4),
            ValueError,
            "level must satisfy 1 <= level <= haar_max_level(10) = 3, got 4",
        ),
        (
            lambda: haar_lowpass(jnp.ones(8), 4),
            ValueError,
            "level must satisfy 1 <= level <= haar_max_level(8) = 3, got 4",
        ),
        (lambda: haar_highpass(jnp.ones(1), 1), ValueError, NO_LEVEL),
        (lambda: haar_lowpass(jnp.ones((4, 1)), 1), ValueError, NO_LEVEL),
        (lambda: haar_highpass(jnp.ones(8), 1.0), TypeError, "level must be a Python int, got 1.0"),
        (
            lambda: haar_highpass(jnp.ones(8), True),
            TypeError,
            "level must be a Python int, got True",
        ),
        (
            lambda: jax.jit(haar_highpass)(jnp.ones(8), 1),
            TypeError,
            "level must be a static Python int, got a traced value: under jax.jit, mark it "
            "static (jax.jit(f, static_argnames='level')) or close over it",
        ),
        (
            lambda: haar_dwt(jnp.ones(8), mode="smooth"),
            ValueError,
            f"mode must be one of {MODE_LIST}, got 'smooth'",
        ),
        (
            lambda: haar_wavedec(jnp.ones(8), 1, mode="per"),
            ValueError,
            f"mode must be one of {MODE_LIST}, got 'per'",
        ),
        (
            lambda: haar_lowpass(jnp.ones(8), 1, mode="zeros"),
            ValueError,
            f"mode must be one of {MODE_LIST}, got 'zeros'",
        ),
        (
            lambda: haar_highpass(jnp.ones(8), 1, mode="Zero"),
            ValueError,
            f"mode must be one of {MODE_LIST}, got 'Zero'",
        ),
        (
            lambda: haar_dwt(jnp.ones((2, 3)), axis=2),
            ValueError,
            "axis must be an int in [-2, 1] for x, got 2",
        ),
        (
            lambda: haar_wavedec(jnp.ones((2, 8)), 1, axis=-3),
            ValueError,
            "axis must be an int in [-2, 1] for x, got -3",
        ),
        (
            lambda: haar_dwt(jnp.ones((2, 8)), axis=True),
            ValueError,
            "axis must be an int in [-2, 1] for x, got True",
        ),
        (
            lambda: haar_lowpass(jnp.ones((2, 8)), 1, axis=2),
            ValueError,
            "axis must be an int in [-2, 1] for x, got 2",
        ),
        (
            lambda: haar_highpass(jnp.ones((2, 8)), 1, axis=-3),
            ValueError,
            "axis must be an int in [-2, 1] for x, got -3",
        ),
        (
            lambda: haar_idwt(jnp.ones(3), jnp.ones(3), axis=1),
            ValueError,
            "axis must be an int in [-1, 0] for approx, got 1",
        ),
        (
            lambda: haar_dwt(jnp.float32(1.0)),
            ValueError,
            "x must have at least 1 dimension, got a scalar",
        ),
        (
            lambda: haar_lowpass(jnp.float32(1.0), 1),
            ValueError,
            "x must have at least 1 dimension, got a scalar",
        ),
        (
            lambda: haar_highpass(jnp.ones((3, 0)), 1),
            ValueError,
            "x must have at least 1 sample along axis 1, got shape (3, 0)",
        ),
        (
            lambda: haar_idwt(jnp.float32(1.0), jnp.float32(1.0)),
            ValueError,
            "approx must have at least 1 dimension, got a scalar",
        ),
        (
            lambda: haar_dwt(jnp.ones((2, 0))),
            ValueError,
            "x must have at least 1 sample along axis 1, got shape (2, 0)",
        ),
        (
            lambda: haar_idwt(jnp.ones(3), jnp.ones(4)),
            ValueError,
            "approx and detail must have the same shape, got (3,) and (4,)",
        ),
        (lambda: haar_idwt(None, None), ValueError, "approx and detail cannot both be None"),
        (
            lambda: haar_idwt(jnp.ones(3), jnp.ones(3), length=7),
            ValueError,
            "length must be None or an int in [1, 6], got 7",
        ),
        (
            lambda: haar_idwt(jnp.ones(3), jnp.ones(3), length=0),
            ValueError,
            "length must be None or an int in [1, 6], got 0",
        ),
        (
            lambda: haar_idwt(jnp.ones(3), jnp.ones(3), length=True),
            ValueError,
            "length must be None or an int in [1, 6], got True",
        ),
        (
            lambda: haar_waverec([jnp.ones(3)]),
            ValueError,
            "coeffs must be a sequence [cA_L, cD_L, ..., cD_1] of at least 2 arrays, got list",
        ),
        (
            lambda: haar_waverec("ab"),
            ValueError,
            "coeffs must be a sequence [cA_L, cD_L, ..., cD_1] of at least 2 arrays, got str",
        ),
        (
            lambda: haar_waverec([jnp.ones(2), jnp.ones(2), jnp.ones(6)]),
            ValueError,
            "coeffs[2] has 6 samples along axis 0 and shape (6,); after coeffs[:2] it needs "
            "3 or 4 samples and the same other axes",
        ),
        (
            lambda: haar_waverec([jnp.ones((2, 2)), jnp.ones((2, 2)), jnp.ones((3, 4))]),
            ValueError,
            "coeffs[2] has 4 samples along axis 1 and shape (3, 4); after coeffs[:2] it needs "
            "3 or 4 samples and the same other axes",
        ),
        (
            lambda: haar_waverec([jnp.ones(2), jnp.ones(2), jnp.ones((1, 4))]),
            ValueError,
            "coeffs[2] must have 1 dimensions, got shape (1, 4)",
        ),
        (
            lambda: haar_waverec(haar_wavedec(jnp.ones(9), 2), length=11),
            ValueError,
            "length must be None or an int in [1, 10], got 11",
        ),
        (lambda: haar_max_level(0), ValueError, "length must be >= 1, got 0"),
        (lambda: haar_max_level(4.0), TypeError, "length must be a Python int >= 1, got 4.0"),
        (lambda: haar_max_level(True), TypeError, "length must be a Python int >= 1, got True"),
    ],
)
def test_invalid_arguments(call, error, message):
    # The whole first line: pytest matches notes too, which JAX adds to errors raised in a trace.
    with pytest.raises(error, match=f"^{re.escape(message)}(\n|$)"):
        call()


def test_length_bounds_are_accepted():
    # The valid range's ends: [1, 2 * len(approx)] (a length-1 signal's coefficients, cropped).
    np.testing.assert_allclose(haar_idwt(jnp.ones(1), jnp.zeros(1), length=1), [2**-0.5])
    assert haar_idwt(jnp.ones(3), jnp.ones(3), length=6).shape == (6,)
