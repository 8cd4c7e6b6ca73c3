"""Logit distillation losses: KD, DKD, FiGKD and logit standardization.

Every loss is a pure function of logits of shape ``(*batch_shape, C)`` and returns per-example
losses of shape ``batch_shape``; the caller reduces them (for example with ``jnp.mean``).

Shared conventions:

* Math runs in at least float32: bfloat16 and float16 inputs are upcast, float64 stays float64.
* ``temperature`` ``T`` divides the logits of both softmaxes and the divergence is scaled by
  ``T**2`` so that gradient magnitudes do not depend on ``T`` (Hinton et al., 2015).
* ``where`` is an optional boolean array broadcastable to ``batch_shape``. Examples where it is
  False give exactly 0 and exactly zero gradient, even if their logits are inf or NaN: their
  logits are replaced by zeros before any arithmetic, not only after.
* Invalid arguments raise ``ValueError`` / ``TypeError`` when the function is called or traced,
  from shapes, dtypes and Python values. The values of traced arguments (a ``temperature``,
  ``labels`` or the entries of a ``class_permutation`` under ``jit``) cannot be checked there.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from figkd_jax.wavelets import MODES, _check_level, haar_highpass, haar_lowpass, haar_wavedec

__all__ = [
    "BANDS",
    "DOMAINS",
    "dkd_loss",
    "dkd_terms",
    "figkd_loss",
    "kd_loss",
    "standardize_logits",
]

BANDS = ("high", "low", "all")
DOMAINS = ("logits", "coefficients")


def kd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float | ArrayLike = 4.0,
    where: ArrayLike | None = None,
) -> Array:
    """Knowledge distillation loss of Hinton et al. (2015), per example.

    ``T**2 * KL(softmax(t / T) || softmax(s / T))`` over the last axis, with ``s`` the student
    and ``t`` the teacher logits. Classes where the teacher probability is exactly 0 (for example
    a teacher logit of ``-inf``) contribute 0.

    Args:
      student_logits: floating array ``(*batch_shape, C)``.
      teacher_logits: floating array of the same shape (stop its gradient yourself if needed).
      temperature: ``T > 0``.
      where: optional bool mask broadcastable to ``batch_shape``; False gives 0 loss and 0 grad.

    Returns:
      Array ``batch_shape`` of non-negative losses.

    >>> s = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    >>> t = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 8.0]])
    >>> [round(v, 4) for v in kd_loss(s, t, temperature=1.0).tolist()]
    [0.0, 1.0926]
    """
    _check_temperature(temperature)
    student, teacher, mask = _prepare_logits(student_logits, teacher_logits, where)
    return _masked(_tempered_kl(student, teacher, temperature), mask)


def dkd_terms(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: ArrayLike,
    *,
    temperature: float | ArrayLike = 4.0,
    where: ArrayLike | None = None,
) -> tuple[Array, Array]:
    """The two terms of Decoupled KD (Zhao et al., CVPR 2022), per example, unweighted.

    With ``y`` the label and ``p = softmax(z / T)`` for either logit vector:

    * ``tckd = T**2 * KL([p_t_y, 1 - p_t_y] || [p_s_y, 1 - p_s_y])`` (target vs rest);
    * ``nckd = T**2 * KL(q_t || q_s)``, with ``q`` the softmax of ``z / T`` over the classes
      other than ``y`` (the target class is removed exactly, with ``-inf``, where the published
      code subtracts 1000 from its logit).

    ``log p_y`` and ``log(1 - p_y)`` come from log-sum-exps of the logits, never from a
    probability, so both terms stay finite for logits of any finite size.

    Args:
      student_logits: floating array ``(*batch_shape, C)`` with ``C >= 2``.
      teacher_logits: floating array of the same shape.
      labels: integer array ``batch_shape`` of target classes in ``[0, C)``; an example with a
        label outside that range gives NaN (unless masked by ``where``).
      temperature: ``T > 0``.
      where: optional bool mask broadcastable to ``batch_shape``; False gives 0 and 0 grad.

    Returns:
      ``(tckd, nckd)``, two arrays ``batch_shape``.

    >>> s = jnp.array([[2.0, 1.0, 0.0]])
    >>> tckd, nckd = dkd_terms(s, s, jnp.array([0]), temperature=1.0)
    >>> tckd.tolist(), nckd.tolist()
    ([0.0], [0.0])
    """
    _check_temperature(temperature)
    student, teacher, mask = _prepare_logits(student_logits, teacher_logits, where)
    num_classes = student.shape[-1]
    if num_classes < 2:
        raise ValueError(f"DKD needs at least 2 classes, got logits of shape {student.shape}")
    labels = _check_labels(labels, student.shape[:-1])
    is_target = labels[..., None] == jnp.arange(num_classes)

    def binary_and_non_target(scaled: Array) -> tuple[Array, Array]:
        # log_softmax([z_y, logsumexp(z_rest)]) is exactly [log p_y, log(1 - p_y)].
        non_target = jnp.where(is_target, -jnp.inf, scaled)
        target = jnp.sum(jnp.where(is_target, scaled, 0.0), axis=-1)
        rest = jax.nn.logsumexp(non_target, axis=-1)
        return jnp.stack([target, rest], axis=-1), non_target

    student_binary, student_rest = binary_and_non_target(student / temperature)
    teacher_binary, teacher_rest = binary_and_non_target(teacher / temperature)
    tckd = temperature**2 * _softmax_kl(student_binary, teacher_binary)
    nckd = temperature**2 * _softmax_kl(student_rest, teacher_rest)
    valid = (labels >= 0) & (labels < num_classes)
    tckd, nckd = (_masked(jnp.where(valid, term, jnp.nan), mask) for term in (tckd, nckd))
    return tckd, nckd


def dkd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: ArrayLike,
    *,
    temperature: float | ArrayLike = 4.0,
    alpha: float | ArrayLike = 1.0,
    beta: float | ArrayLike = 8.0,
    where: ArrayLike | None = None,
) -> Array:
    """Decoupled KD (Zhao et al., CVPR 2022) per example: ``alpha * tckd + beta * nckd``.

    The terms are those of :func:`dkd_terms` (both already scaled by ``T**2``). Defaults are the
    paper's CIFAR-100 setting (``T = 4``, ``alpha = 1``, ``beta = 8``); the paper's warm-up of
    the loss weight over the first epochs is the training loop's business.

    Args:
      student_logits: floating array ``(*batch_shape, C)`` with ``C >= 2``.
      teacher_logits: floating array of the same shape.
      labels: integer array ``batch_shape`` of target classes in ``[0, C)``.
      temperature: ``T > 0``.
      alpha: weight of the target-class term.
      beta: weight of the non-target-class term.
      where: optional bool mask broadcastable to ``batch_shape``; False gives 0 and 0 grad.

    Returns:
      Array ``batch_shape``.

    >>> s = jnp.array([[2.0, 1.0, 0.0]])
    >>> t = jnp.array([[3.0, 0.0, 1.0]])
    >>> loss = dkd_loss(s, t, jnp.array([0]), temperature=1.0, beta=0.0)
    >>> loss.shape, bool(loss[0] > 0.0)
    ((1,), True)
    """
    tckd, nckd = dkd_terms(
        student_logits, teacher_logits, labels, temperature=temperature, where=where
    )
    return alpha * tckd + beta * nckd


def figkd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float | ArrayLike = 4.0,
    level: int = 1,
    band: str = "high",
    domain: str = "logits",
    mode: str = "symmetric",
    class_permutation: ArrayLike | None = None,
    where: ArrayLike | None = None,
) -> Array:
    """FiGKD loss per example: KD between Haar frequency bands of the logits over classes.

    ``T**2 * KL(softmax(B(t) / T) || softmax(B(s) / T))`` where ``B`` picks a band of the Haar
    decomposition over the class axis (see docs/method.md):

    * ``domain="logits"``: ``B = high_L`` (``band="high"``, the default) or ``low_L``
      (``band="low"``), the band components, of length ``C``;
    * ``domain="coefficients"``: ``B(z) = concat([cD_L, ..., cD_1])`` (``"high"``) or ``cA_L``
      (``"low"``), the wavelet coefficients themselves;
    * ``band="all"``: ``B(z) = z`` whatever ``domain``, which is :func:`kd_loss` (same code).

    With ``mode="symmetric"`` (or ``"periodization"``) the loss is unchanged when a constant is
    added to all logits of an example, like softmax.

    Args:
      student_logits: floating array ``(*batch_shape, C)``.
      teacher_logits: floating array of the same shape.
      temperature: ``T > 0``.
      level: ``1 <= level <= haar_max_level(C)`` (checked for every band).
      band: ``"high"``, ``"low"`` or ``"all"``.
      domain: ``"logits"`` or ``"coefficients"``.
      mode: Haar boundary mode: ``"symmetric"``, ``"zero"`` or ``"periodization"``.
      class_permutation: optional integer array ``(C,)``, a permutation of ``range(C)``, static
        or traced: both logit vectors become ``logits[..., class_permutation]`` before the
        transform, which decides which classes the Haar steps pair up.
      where: optional bool mask broadcastable to ``batch_shape``; False gives 0 and 0 grad.

    Returns:
      Array ``batch_shape`` of non-negative losses.

    >>> t = jnp.array([[4.0, 0.0, 1.0, 1.0]])
    >>> s = t + jnp.array([[1.0, 1.0, 0.0, 0.0]])  # the same detail, a different pair mean
    >>> figkd_loss(s, t).tolist()
    [0.0]
    >>> bool(figkd_loss(s, t, band="all")[0] > 0.0)
    True
    """
    _check_temperature(temperature)
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {band!r}")
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    student, teacher, mask = _prepare_logits(student_logits, teacher_logits, where)
    num_classes = student.shape[-1]
    _check_level(level, num_classes)
    if class_permutation is not None:
        permutation = _check_permutation(class_permutation, num_classes)
        student = jnp.take(student, permutation, axis=-1)
        teacher = jnp.take(teacher, permutation, axis=-1)
    if band != "all":
        student = _band(student, band, domain, level, mode)
        teacher = _band(teacher, band, domain, level, mode)
    return _masked(_tempered_kl(student, teacher, temperature), mask)


def standardize_logits(
    logits: ArrayLike, *, axis: int = -1, eps: float = 1e-7, ddof: int = 1
) -> Array:
    """Logit standardization (Sun et al., CVPR 2024) as published: ``(z - mean) / (eps + std)``.

    Mean and standard deviation are taken over ``axis``. The defaults reproduce the authors'
    released ``normalize`` (sunshangquan/logit-standardization-KD,
    ``mdistiller/distillers/KD.py``): ``torch.std``, which is Bessel-corrected (``ddof=1``),
    and ``eps=1e-7`` added to it. ``ddof=0`` gives the population standard deviation of the
    paper's formula instead (a result ``sqrt(C / (C - 1))`` times larger). Apply it to both
    logit vectors before any loss of this module. A constant vector maps to zeros, with
    finite gradients.

    Args:
      logits: floating array of any shape.
      axis: the class axis.
      eps: added to the standard deviation, ``>= 0``.
      ddof: delta degrees of freedom of the standard deviation: 1 (published) or 0.

    Returns:
      Array of ``logits``'s shape, in at least float32.

    >>> z = standardize_logits(jnp.array([1.0, 2.0, 3.0]), eps=0.0)
    >>> [round(v, 4) for v in z.tolist()]
    [-1.0, 0.0, 1.0]
    >>> z = standardize_logits(jnp.array([1.0, 2.0, 3.0]), eps=0.0, ddof=0)
    >>> [round(v, 4) for v in z.tolist()]
    [-1.2247, 0.0, 1.2247]
    """
    z = _as_float(logits, "logits")
    if z.ndim == 0:
        raise ValueError("logits must have at least 1 dimension, got a scalar")
    if isinstance(axis, bool) or not isinstance(axis, int) or not -z.ndim <= axis < z.ndim:
        raise ValueError(f"axis must be an int in [{-z.ndim}, {z.ndim - 1}], got {axis!r}")
    if isinstance(eps, numbers.Real) and not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
    if z.shape[axis] <= ddof:
        raise ValueError(
            f"axis {axis} of logits needs more than ddof={ddof} entries, got {z.shape}"
        )
    centred = z - jnp.mean(z, axis=axis, keepdims=True)
    variance = jnp.sum(centred**2, axis=axis, keepdims=True) / (z.shape[axis] - ddof)
    # sqrt has an infinite derivative at 0: keep the constant-vector case off that branch.
    positive = variance > 0
    std = jnp.where(positive, jnp.sqrt(jnp.where(positive, variance, 1.0)), 0.0)
    return centred / (std + eps)


def _tempered_kl(student: Array, teacher: Array, temperature: float | ArrayLike) -> Array:
    """``T**2 * KL(softmax(teacher / T) || softmax(student / T))`` over the last axis."""
    return temperature**2 * _softmax_kl(student / temperature, teacher / temperature)


def _softmax_kl(student: Array, teacher: Array) -> Array:
    """``KL(softmax(teacher) || softmax(student))`` over the last axis; 0 log 0 counts as 0."""
    log_q = jax.nn.log_softmax(student, axis=-1)
    log_p = jax.nn.log_softmax(teacher, axis=-1)
    p = jnp.exp(log_p)
    # Where p == 0 the term is 0, also when log_p - log_q is -inf - (-inf): select before the
    # product so that neither the value nor the gradient sees that NaN.
    log_ratio = jnp.where(p > 0, log_p - log_q, 0.0)
    return jnp.sum(p * log_ratio, axis=-1)


def _band(logits: Array, band: str, domain: str, level: int, mode: str) -> Array:
    if domain == "logits":
        split = haar_highpass if band == "high" else haar_lowpass
        return split(logits, level, mode=mode)
    coeffs = haar_wavedec(logits, level, mode=mode)
    return jnp.concatenate(coeffs[1:], axis=-1) if band == "high" else coeffs[0]


def _prepare_logits(
    student_logits: ArrayLike, teacher_logits: ArrayLike, where: ArrayLike | None
) -> tuple[Array, Array, Array | None]:
    """Checks shapes and dtypes, upcasts, and zeroes the logits of masked-out examples."""
    student = _as_float(student_logits, "student_logits")
    teacher = _as_float(teacher_logits, "teacher_logits")
    if student.shape != teacher.shape:
        raise ValueError(
            "student_logits and teacher_logits must have the same shape, got "
            f"{student.shape} and {teacher.shape}"
        )
    if student.ndim == 0 or student.shape[-1] == 0:
        raise ValueError(
            f"logits must have shape (*batch_shape, C) with C >= 1, got {student.shape}"
        )
    dtype = jnp.promote_types(student.dtype, teacher.dtype)
    student, teacher = student.astype(dtype), teacher.astype(dtype)
    if where is None:
        return student, teacher, None
    mask = jnp.asarray(where)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"where must be a bool array, got dtype {mask.dtype}")
    batch_shape = student.shape[:-1]
    try:
        mask = jnp.broadcast_to(mask, batch_shape)
    except ValueError:
        raise ValueError(
            f"where must be broadcastable to batch_shape {batch_shape}, got shape {mask.shape}"
        ) from None
    keep = mask[..., None]
    return jnp.where(keep, student, 0.0), jnp.where(keep, teacher, 0.0), mask


def _masked(loss: Array, mask: Array | None) -> Array:
    return loss if mask is None else jnp.where(mask, loss, 0.0)


def _as_float(x: ArrayLike, name: str) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_temperature(temperature: float | ArrayLike) -> None:
    if isinstance(temperature, bool):
        raise TypeError(f"temperature must be a positive number, got {temperature!r}")
    if isinstance(temperature, numbers.Real) and not (
        temperature > 0 and math.isfinite(temperature)
    ):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")


def _check_labels(labels: ArrayLike, batch_shape: tuple[int, ...]) -> Array:
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.shape != batch_shape:
        raise ValueError(
            f"labels must have shape batch_shape = {batch_shape} (logits without the class "
            f"axis), got {labels.shape}"
        )
    return labels


def _check_permutation(permutation: ArrayLike, num_classes: int) -> Array:
    if isinstance(permutation, jax.core.Tracer):
        shape, dtype = permutation.shape, permutation.dtype
    else:
        values = np.asarray(permutation)
        shape, dtype = values.shape, values.dtype
        if shape == (num_classes,) and np.issubdtype(dtype, np.integer):
            if not np.array_equal(np.sort(values), np.arange(num_classes)):
                raise ValueError(
                    f"class_permutation must contain each of 0..{num_classes - 1} exactly once"
                )
            permutation = values
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"class_permutation must be an integer array, got dtype {dtype}")
    if shape != (num_classes,):
        raise ValueError(
            f"class_permutation must have shape (C,) = ({num_classes},), got {tuple(shape)}"
        )
    return jnp.asarray(permutation)
