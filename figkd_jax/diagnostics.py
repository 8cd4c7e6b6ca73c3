"""Band diagnostics: how the logits' energy splits between Haar bands, and how far the student
is from the teacher within each band.

Meant to be logged every training step: one Haar low-pass per logit vector (the high band is
its complement), elementwise arithmetic and two softmaxes per band, no forward passes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from figkd_jax.losses import _check_permutation, _prepare_logits, kd_loss
from figkd_jax.wavelets import haar_lowpass

__all__ = ["DIAGNOSTICS", "band_diagnostics"]

DIAGNOSTICS = (
    "teacher_low_energy",
    "teacher_high_energy",
    "student_low_energy",
    "student_high_energy",
    "kl_low",
    "kl_high",
)


def band_diagnostics(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    level: int = 1,
    mode: str = "symmetric",
    temperature: float | ArrayLike = 4.0,
    where: ArrayLike | None = None,
    class_permutation: ArrayLike | None = None,
    axis: int = -1,
) -> dict[str, jax.Array]:
    """Energies of the low and high Haar bands of both logit vectors, and the KL in each band.

    With ``low = haar_lowpass(z, level, mode=mode)`` and ``high = z - low`` (= haar_highpass)
    over the class axis, every value is a mean over the unmasked examples of:

    * ``{teacher,student}_{low,high}_energy``: ``mean_c band_c**2``, the band's mean squared
      value over the classes. For orthonormal Haar the bands are orthogonal when ``C`` is a
      multiple of ``2**level`` (no padding), so ``low + high`` energy is ``mean_c z_c**2``.
    * ``kl_low``, ``kl_high``: ``T**2 * KL(softmax(band(t) / T) || softmax(band(s) / T))``,
      i.e. ``figkd_loss(s, t, band="low"/"high", level=level, mode=mode)``.

    Args:
      student_logits: floating array ``(*batch_shape, C)`` (classes on ``axis``).
      teacher_logits: floating array of the same shape.
      level: Haar level, ``1 <= level <= haar_max_level(C)``.
      mode: Haar boundary mode: ``"symmetric"``, ``"zero"`` or ``"periodization"``.
      temperature: ``T > 0`` of the KLs, a scalar or one per example (``batch_shape``).
      where: optional bool array broadcastable to ``batch_shape``; False excludes an example
        (even with non-finite logits). With no example left every value is 0.
      class_permutation: optional ``(C,)`` permutation of the classes (see
        ``figkd_jax.trainer.class_order``):
        both logit vectors become ``logits[..., class_permutation]`` before the transform,
        as in ``figkd_loss``.
      axis: the class axis.

    Returns:
      ``{name: scalar}`` (at least float32) for each name of ``DIAGNOSTICS``.
    """
    # Masked examples come back zeroed, so that a non-finite one leaves no NaN in the bands.
    student, teacher, mask = _prepare_logits(student_logits, teacher_logits, where, axis)
    if class_permutation is not None:
        permutation = _check_permutation(class_permutation, student.shape[-1])
        student = jnp.take(student, permutation, axis=-1)
        teacher = jnp.take(teacher, permutation, axis=-1)
    bands = {}
    for name, logits in (("student", student), ("teacher", teacher)):
        low = haar_lowpass(logits, level, mode=mode)
        bands[name] = {"low": low, "high": logits - low}
    values = {}
    for name in ("teacher", "student"):
        for band in ("low", "high"):
            values[f"{name}_{band}_energy"] = jnp.mean(jnp.square(bands[name][band]), axis=-1)
    for band in ("low", "high"):
        values[f"kl_{band}"] = kd_loss(
            bands["student"][band], bands["teacher"][band], temperature=temperature, where=mask
        )
    return {name: _masked_mean(values[name], mask) for name in DIAGNOSTICS}


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(values)
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return total / jnp.maximum(jnp.sum(mask), 1)
