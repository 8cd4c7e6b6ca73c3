"""Band diagnostics: hand-checked values, agreement with figkd_loss, masks and jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from figkd_jax import figkd_loss
from figkd_jax.diagnostics import DIAGNOSTICS
from figkd_jax.diagnostics import band_diagnostics as eager_band_diagnostics

# One compilation per call signature instead of one per primitive keeps the tests fast on CPU.
band_diagnostics = jax.jit(eager_band_diagnostics, static_argnames=("level", "mode"))
mean_figkd_loss = jax.jit(
    lambda s, t, **kw: jnp.mean(figkd_loss(s, t, **kw)), static_argnames=("band", "level")
)


def _logits(seed, shape=(6, 10), scale=3.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def test_hand_checked_values():
    # Pairs (4, 0) and (1, 1): low = (2, 2, 1, 1), high = (2, -2, 0, 0).
    teacher = jnp.array([[4.0, 0.0, 1.0, 1.0]])
    student = jnp.array([[1.0, 1.0, 1.0, 1.0]])
    d = band_diagnostics(student, teacher)
    assert set(d) == set(DIAGNOSTICS)
    assert float(d["teacher_low_energy"]) == pytest.approx((4 + 4 + 1 + 1) / 4)
    assert float(d["teacher_high_energy"]) == pytest.approx((4 + 4) / 4)
    assert float(d["student_low_energy"]) == pytest.approx(1.0)
    assert float(d["student_high_energy"]) == 0.0
    # The student's high band is flat (uniform softmax); the teacher's is (2, -2, 0, 0) / T.
    p = np.exp(np.array([2.0, -2.0, 0.0, 0.0]) / 4.0)
    p /= p.sum()
    kl_high = 16.0 * float(np.sum(p * np.log(p * 4)))
    assert float(d["kl_high"]) == pytest.approx(kl_high, rel=1e-5)


def test_identical_logits_have_zero_kl():
    logits = _logits(0)
    d = band_diagnostics(logits, logits, level=2)
    assert float(d["kl_low"]) == pytest.approx(0.0, abs=1e-6)
    assert float(d["kl_high"]) == pytest.approx(0.0, abs=1e-6)
    assert float(d["teacher_high_energy"]) == pytest.approx(float(d["student_high_energy"]))


@pytest.mark.parametrize(("level", "num_classes"), [(1, 10), (1, 7), (2, 10), (3, 100)])
def test_kls_are_figkd_loss_of_each_band(level, num_classes):
    student, teacher = _logits(1, (5, num_classes)), _logits(2, (5, num_classes))
    d = band_diagnostics(student, teacher, level=level, temperature=2.0)
    for band in ("low", "high"):
        expected = mean_figkd_loss(student, teacher, band=band, level=level, temperature=2.0)
        np.testing.assert_allclose(d[f"kl_{band}"], expected, rtol=1e-6)


def test_constant_shift_leaves_the_high_band_unchanged():
    logits = _logits(3, (6, 9))  # odd C: the symmetric padding keeps shift invariance
    shift = np.arange(6.0, dtype=np.float32)[:, None] * 5.0
    a = band_diagnostics(logits, logits + shift)
    b = band_diagnostics(logits + shift, logits)
    np.testing.assert_allclose(a["teacher_high_energy"], b["student_high_energy"], rtol=1e-5)
    np.testing.assert_allclose(a["teacher_high_energy"], a["student_high_energy"], rtol=1e-5)
    assert float(a["kl_high"]) == pytest.approx(0.0, abs=1e-5)
    assert float(a["teacher_low_energy"]) > float(a["student_low_energy"])


@pytest.mark.parametrize(("level", "num_classes"), [(1, 10), (1, 100), (2, 100), (3, 200)])
def test_orthogonal_bands_split_the_energy(level, num_classes):
    # Orthonormal Haar with C a multiple of 2**level: low and high are orthogonal.
    logits = _logits(4, (3, num_classes))
    d = band_diagnostics(logits, 2 * logits, level=level)
    total = float(np.mean(logits**2))
    assert float(d["student_low_energy"]) + float(d["student_high_energy"]) == pytest.approx(total)
    assert float(d["teacher_low_energy"]) + float(d["teacher_high_energy"]) == pytest.approx(
        4 * total
    )


def test_masked_examples_are_excluded_even_when_not_finite():
    student, teacher = _logits(5), _logits(6)
    mask = np.array([True, False, True, True, False, True])
    bad = student.copy()
    bad[1], bad[4] = np.nan, np.inf
    masked = band_diagnostics(bad, teacher, where=mask)
    kept = band_diagnostics(student[mask], teacher[mask])
    for name in DIAGNOSTICS:
        np.testing.assert_allclose(masked[name], kept[name], rtol=1e-6, err_msg=name)
    nothing = band_diagnostics(bad, teacher, where=np.zeros(6, bool))
    assert all(float(v) == 0.0 for v in nothing.values())


def test_batch_shape_and_broadcast_mask():
    student, teacher = _logits(7, (2, 3, 8)), _logits(8, (2, 3, 8))
    where = np.array([True, False, True])  # broadcast over the leading batch axis
    d = band_diagnostics(student, teacher, where=where)
    flat = band_diagnostics(student[:, where].reshape(4, 8), teacher[:, where].reshape(4, 8))
    for name in DIAGNOSTICS:
        np.testing.assert_allclose(d[name], flat[name], rtol=1e-6, err_msg=name)


def _numpy_diagnostics(student, teacher, temperature):
    """Level 1, even C: low is each pair's mean, repeated."""

    def bands(z):
        low = np.repeat((z[:, 0::2] + z[:, 1::2]) / 2, 2, axis=1)
        return low, z - low

    def log_softmax(z):
        z = z / temperature
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))

    def kl(s, t):
        log_p, log_q = log_softmax(t), log_softmax(s)
        return temperature**2 * np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1))

    (s_low, s_high), (t_low, t_high) = bands(student), bands(teacher)
    energy = lambda band: np.mean(band**2)
    return {
        "teacher_low_energy": energy(t_low),
        "teacher_high_energy": energy(t_high),
        "student_low_energy": energy(s_low),
        "student_high_energy": energy(s_high),
        "kl_low": kl(s_low, t_low),
        "kl_high": kl(s_high, t_high),
    }


def test_jitted_with_traced_temperature_and_mask_matches_numpy():
    student = jnp.asarray(_logits(9), jnp.bfloat16)  # upcast to float32 inside
    teacher = _logits(10)
    mask = np.arange(6) < 4
    d = band_diagnostics(student, teacher, temperature=3.0, where=mask)
    expected = _numpy_diagnostics(
        np.asarray(student, np.float64)[mask], teacher.astype(np.float64)[mask], 3.0
    )
    for name in DIAGNOSTICS:
        assert d[name].shape == () and d[name].dtype == jnp.float32
        np.testing.assert_allclose(d[name], expected[name], rtol=1e-5, err_msg=name)


def test_bad_arguments_raise():
    band_diagnostics = eager_band_diagnostics
    logits = _logits(11, (2, 4))
    with pytest.raises(ValueError, match="same shape"):
        band_diagnostics(logits, logits[:, :3])
    with pytest.raises(ValueError, match="level"):
        band_diagnostics(logits, logits, level=3)
    with pytest.raises(TypeError, match="where must be a bool"):
        band_diagnostics(logits, logits, where=np.ones(2))
    with pytest.raises(ValueError, match="broadcastable"):
        band_diagnostics(logits, logits, where=np.ones(3, bool))
    with pytest.raises(TypeError, match="floating"):
        band_diagnostics(np.ones((2, 4), np.int32), logits)
