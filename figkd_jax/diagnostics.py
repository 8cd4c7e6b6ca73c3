"""Band diagnostics: how the logits' energy splits between Haar bands, and how far the student
is from the teacher within each band.

Meant to be logged every training step: one Haar low-pass per logit vector (the high band is
its complement), elementwise arithmetic and two softmaxes per band, no forward passes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from figkd_jax.losses import kd_loss
from figkd_jax.wavelets import haar_lowpass

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
      student_logits: floating array ``(*batch_shape, C)``.
      teacher_logits: floating array of the same shape.
      level: Haar level, ``1 <= level <= haar_max_level(C)``.
      mode: Haar boundary mode: ``"symmetric"``, ``"zero"`` or ``"periodization"``.
      temperature: ``T > 0`` of the KLs.
      where: optional bool array broadcastable to ``batch_shape``; False excludes an example
        (even with non-finite logits). With no example left every value is 0.
      class_permutation: optional ``(C,)`` permutation of the classes (see
        ``figkd_jax.trainer.class_order``):
        both logit vectors become ``logits[..., class_permutation]`` before the transform,
        as in ``figkd_loss``.

    Returns:
      ``{name: scalar}`` (at least float32) for each name of ``DIAGNOSTICS``.
    """
    student = _as_float(student_logits, "student_logits")
    teacher = _as_float(teacher_logits, "teacher_logits")
    if student.shape != teacher.shape or student.ndim == 0:
        raise ValueError(
            "student_logits and teacher_logits must have the same shape (*batch_shape, C), got "
            f"{student.shape} and {teacher.shape}"
        )
    if class_permutation is not None:
        student = jnp.take(student, jnp.asarray(class_permutation), axis=-1)
        teacher = jnp.take(teacher, jnp.asarray(class_permutation), axis=-1)
    mask = _mask(where, student.shape[:-1])
    if mask is not None:
        # Zeroed before the transform so that a masked non-finite example leaves no NaN.
        student = jnp.where(mask[..., None], student, 0.0)
        teacher = jnp.where(mask[..., None], teacher, 0.0)
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


def _as_float(x: ArrayLike, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _mask(where: ArrayLike | None, batch_shape: tuple[int, ...]) -> jax.Array | None:
    if where is None:
        return None
    mask = jnp.asarray(where)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"where must be a bool array, got dtype {mask.dtype}")
    try:
        return jnp.broadcast_to(mask, batch_shape)
    except ValueError:
        raise ValueError(
            f"where must be broadcastable to batch_shape {batch_shape}, got shape {mask.shape}"
        ) from None


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(values)
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return total / jnp.maximum(jnp.sum(mask), 1)
