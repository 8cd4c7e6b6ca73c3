"""Logit distillation losses: KD, DKD, FiGKD, DIST, MLKD and logit standardization.

Every loss is a pure function of logits of shape ``(*batch_shape, C)`` (the classes on
``axis``) and returns per-example losses of shape ``batch_shape``; the caller reduces them
(for example with ``jnp.mean``). In optax's terms, with ``s``, ``t`` the student and teacher
logits::

    kd_loss(s, t, temperature=T)
      == T**2 * optax.losses.kl_divergence(log_softmax(s / T), softmax(t / T))
    figkd_loss(s, t, temperature=T, level=L)
      == kd_loss(haar_highpass(s, L), haar_highpass(t, L), temperature=T)

Terms of DIST and MLKD couple the examples of a batch (a correlation or a Gram matrix over
the batch). They are returned per example too: each unmasked example carries the batch
term, so that the mean over the unmasked examples is the published batch loss. Computed on
a global batch that is sharded over devices (``jit`` with a sharded input), the value does not
depend on the device count: the batch statistics are those of the global batch.

One signature for every loss and term function: the logits (and DKD's ``labels``) are
positional; ``temperature``, ``where`` and ``axis`` are keyword-only. Two take no single
``temperature``: ``mlkd_terms`` takes a tuple ``temperatures`` (MLKD sums over several) and
``mlkd_confidence_fractions`` none (the authors' code uses the teacher's plain softmax).
``standardize_logits`` is a transform, not a loss: it takes ``axis`` only.

* Math runs in at least float32: bfloat16 and float16 inputs are upcast, float64 stays float64.
* ``temperature`` ``T`` divides the logits of both softmaxes and the divergence is scaled by
  ``T**2`` so that gradient magnitudes do not depend on ``T`` (Hinton et al., 2015). It is a
  scalar or, for the losses that are per example (KD, DKD, FiGKD), one value per example
  (shape ``batch_shape``); the batch terms of DIST and MLKD take a scalar. Any other shape is
  refused.
* ``where`` is an optional boolean array broadcastable to ``batch_shape``: one flag per
  example. This differs from optax, whose ``where`` masks single entries of the logits; a mask
  of the logits' shape is refused here, since a loss cannot leave out single classes.
  What it guarantees: an example where it is False gives exactly 0 and exactly zero gradient
  with respect to its logits (and to its ``temperature``), even if those logits are inf or
  NaN, since they are replaced by zeros before any arithmetic; it takes no part in the batch
  terms of DIST and MLKD. It does not protect what produced the logits: a NaN input to a
  network still makes NaN parameter gradients through the network's own backward pass (zero
  times NaN), as in any JAX code; filter such inputs before the network.
* Invalid arguments raise ``ValueError`` / ``TypeError`` when the function is called or traced,
  from shapes, dtypes and concrete values (Python numbers, NumPy arrays, JAX arrays that are
  not traced). The values of traced arguments (a ``temperature``, ``labels`` or the entries of
  a ``class_permutation`` passed through ``jit``) cannot be checked there: a traced
  ``temperature`` of 0 gives inf or NaN. Structural arguments (``level``, ``band``,
  ``domain``, ``mode``, ``axis``) must be Python values: under ``jax.jit`` mark them static
  (``static_argnames``).
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
    "MLKD_TEMPERATURES",
    "dist_loss",
    "dist_terms",
    "dkd_loss",
    "dkd_terms",
    "figkd_loss",
    "kd_loss",
    "mlkd_batch_loss",
    "mlkd_class_loss",
    "mlkd_confidence_fractions",
    "mlkd_terms",
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
    axis: int = -1,
) -> Array:
    """Knowledge distillation loss of Hinton et al. (2015), per example.

    ``T**2 * KL(softmax(t / T) || softmax(s / T))`` over the class axis, with ``s`` the student
    and ``t`` the teacher logits. Classes where the teacher probability is exactly 0 (for example
    a teacher logit of ``-inf``) contribute 0.

    Args:
      student_logits: floating array ``(*batch_shape, C)`` (classes on ``axis``).
      teacher_logits: floating array of the same shape (stop its gradient yourself if needed).
      temperature: ``T > 0``, a scalar or one per example (shape ``batch_shape``); checked
        only where concrete (a traced value cannot be).
      where: optional bool mask broadcastable to ``batch_shape``; False gives 0 loss and 0 grad.
      axis: the class axis.

    Returns:
      Array ``batch_shape`` of non-negative losses.

    >>> s = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    >>> t = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 8.0]])
    >>> [round(v, 4) for v in kd_loss(s, t, temperature=1.0).tolist()]
    [0.0, 1.0926]
    """
    student, teacher, mask = _prepare_logits(student_logits, teacher_logits, where, axis)
    temperature = _prepare_temperature(temperature, student.shape[:-1], mask)
    return _masked(_tempered_kl(student, teacher, temperature), mask)


def dkd_terms(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: ArrayLike,
    *,
    temperature: float | ArrayLike = 4.0,
    where: ArrayLike | None = None,
    axis: int = -1,
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
      temperature: ``T > 0``, a scalar or one per example (shape ``batch_shape``); checked
        only where concrete (a traced value cannot be).
      where: optional bool mask broadcastable to ``batch_shape``; False gives 0 and 0 grad.
      axis: the class axis.

    Returns:
      ``(tckd, nckd)``, two arrays ``batch_shape``.

    >>> s = jnp.array([[2.0, 1.0, 0.0]])
    >>> tckd, nckd = dkd_terms(s, s, jnp.array([0]), temperature=1.0)
    >>> tckd.tolist(), nckd.tolist()
    ([0.0], [0.0])
    """
    student, teacher, mask = _prepare_logits(student_logits, teacher_logits, where, axis)
    num_classes = student.shape[-1]
    if num_classes < 2:
        raise ValueError(f"DKD needs at least 2 classes, got logits of shape {student.shape}")
    labels = _check_labels(labels, student.shape[:-1])
    temperature = _prepare_temperature(temperature, student.shape[:-1], mask)
    scale = _per_class(temperature)
    is_target = labels[..., None] == jnp.arange(num_classes)

    def binary_and_non_target(scaled: Array) -> tuple[Array, Array]:
        # log_softmax([z_y, logsumexp(z_rest)]) is exactly [log p_y, log(1 - p_y)].
        non_target = jnp.where(is_target, -jnp.inf, scaled)
        target = jnp.sum(jnp.where(is_target, scaled, 0.0), axis=-1)
        rest = jax.nn.logsumexp(non_target, axis=-1)
        return jnp.stack([target, rest], axis=-1), non_target

    student_binary, student_rest = binary_and_non_target(student / scale)
    teacher_binary, teacher_rest = binary_and_non_target(teacher / scale)
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
    axis: int = -1,
) -> Array:
    """Decoupled KD (Zhao et al., CVPR 2022) per example: ``alpha * tckd + beta * nckd``.

    The terms are those of :func:`dkd_terms` (both already scaled by ``T**2``). Defaults are the
    paper's CIFAR-100 setting (``T = 4``, ``alpha = 1``, ``beta = 8``); the paper's warm-up of
    the loss weight over the first epochs is the training loop's business.

    Args:
      student_logits: floating array ``(*batch_shape, C)`` with ``C >= 2``.
      teacher_logits: floating array of the same shape.
      labels: integer array ``batch_shape`` of target classes in ``[0, C)``.
      temperature: ``T > 0``, a scalar or one per example (shape ``batch_shape``); checked
        only where concrete (a traced value cannot be).
      alpha: weight of the target-class term.
      beta: weight of the non-target-class term.
      where: optional bool mask broadcastable to ``batch_shape``; False gives 0 and 0 grad.
      axis: the class axis.

    Returns:
      Array ``batch_shape``.

    >>> s = jnp.array([[2.0, 1.0, 0.0]])
    >>> t = jnp.array([[3.0, 0.0, 1.0]])
    >>> loss = dkd_loss(s, t, jnp.array([0]), temperature=1.0, beta=0.0)
    >>> loss.shape, bool(loss[0] > 0.0)
    ((1,), True)
    """
    tckd, nckd = dkd_terms(
        student_logits, teacher_logits, labels, temperature=temperature, where=where, axis=axis
    )
    return jnp.asarray(alpha) * tckd + jnp.asarray(beta) * nckd


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
    axis: int = -1,
) -> Array:
    """FiGKD loss per example: KD between Haar frequency bands of the logits over classes.

    ``T**2 * KL(softmax(B(t) / T) || softmax(B(s) / T))`` where ``B`` picks a band of the Haar
    decomposition over the class axis (see :mod:`figkd_jax.wavelets`):

    * ``domain="logits"``: ``B = high_L`` (``band="high"``, the default) or ``low_L``
      (``band="low"``), the band components, of length ``C``;
    * ``domain="coefficients"``: ``B(z) = concat([cD_L, ..., cD_1])`` (``"high"``) or ``cA_L``
      (``"low"``), the wavelet coefficients themselves;
    * ``band="all"``: ``B(z) = z`` whatever ``domain``, which is :func:`kd_loss` (same code).

    With ``mode="symmetric"`` (or ``"periodization"``) the loss is unchanged when a constant is
    added to all logits of an example, like softmax.

    Args:
      student_logits: floating array ``(*batch_shape, C)`` (classes on ``axis``).
      teacher_logits: floating array of the same shape.
      temperature: ``T > 0``, a scalar or one per example (shape ``batch_shape``); checked
        only where concrete (a traced value cannot be).
      level: ``1 <= level <= haar_max_level(C)`` (checked for every band).
      band: ``"high"``, ``"low"`` or ``"all"``.
      domain: ``"logits"`` or ``"coefficients"``.
      mode: Haar boundary mode: ``"symmetric"``, ``"zero"`` or ``"periodization"``.
      class_permutation: optional integer array ``(C,)``, a permutation of ``range(C)``, static
        or traced: both logit vectors become ``logits[..., class_permutation]`` before the
        transform, which decides which classes the Haar steps pair up.
      where: optional bool mask broadcastable to ``batch_shape``; False gives 0 and 0 grad.
      axis: the class axis (the axis the Haar transform runs along).

    Returns:
      Array ``batch_shape`` of non-negative losses.

    >>> t = jnp.array([[4.0, 0.0, 1.0, 1.0]])
    >>> s = t + jnp.array([[1.0, 1.0, 0.0, 0.0]])  # the same detail, a different pair mean
    >>> figkd_loss(s, t).tolist()
    [0.0]
    >>> bool(figkd_loss(s, t, band="all")[0] > 0.0)
    True
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {band!r}")
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    student, teacher, mask = _prepare_logits(student_logits, teacher_logits, where, axis)
    num_classes = student.shape[-1]
    _check_level(level, num_classes)
    temperature = _prepare_temperature(temperature, student.shape[:-1], mask)
    if class_permutation is not None:
        permutation = _check_permutation(class_permutation, num_classes)
        student = jnp.take(student, permutation, axis=-1)
        teacher = jnp.take(teacher, permutation, axis=-1)
    if band != "all":
        student = _band(student, band, domain, level, mode)
        teacher = _band(teacher, band, domain, level, mode)
    return _masked(_tempered_kl(student, teacher, temperature), mask)


def dist_terms(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float | ArrayLike = 1.0,
    where: ArrayLike | None = None,
    axis: int = -1,
) -> tuple[Array, Array]:
    """The two relation terms of DIST (Huang et al., NeurIPS 2022), per example, unweighted.

    With ``P = softmax(z / T)`` over the classes and ``rho(a, b)`` the Pearson correlation
    written as in the authors' code, ``(a - mean a) . (b - mean b) / (|a - mean a| |b - mean b|
    + 1e-8)``:

    * ``inter = T**2 * (1 - rho(P_s[i, :], P_t[i, :]))`` for each example ``i`` (correlation
      over the classes: a per-example term);
    * ``intra = T**2 * (1 - mean_c rho(P_s[:, c], P_t[:, c]))``, the correlation of each class
      over the batch, averaged over the classes: one value per batch, which every unmasked
      example carries.

    The batch of the intra-class term is every unmasked position of ``batch_shape`` (all of it
    flattened, like the authors' dense-prediction variant); masked examples are left out of its
    means and norms, so the term is that of the unmasked sub-batch. The mean of ``inter`` or
    ``intra`` over the unmasked examples is the authors' batch value (their ``tau`` scaling
    included). The authors' classification code (``image_classification_sota``) applies
    ``T**2`` to both terms; ``T = 1`` is the published ImageNet setting.

    Args:
      student_logits: floating array ``(*batch_shape, C)`` (classes on ``axis``), ``C >= 2``.
      teacher_logits: floating array of the same shape.
      temperature: ``T > 0``, a scalar (the batch term has one temperature); checked only
        where concrete.
      where: optional bool mask broadcastable to ``batch_shape``; False gives 0 and 0 grad and
        leaves the example out of the intra-class correlation.
      axis: the class axis.

    Returns:
      ``(inter, intra)``, two arrays ``batch_shape``; ``intra`` is constant over the unmasked
      examples.

    >>> z = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    >>> inter, intra = dist_terms(z, z)
    >>> # Zero up to the 1e-8 in the correlation and rounding (either sign).
    >>> bool(jnp.allclose(inter, 0.0, atol=1e-4) & jnp.allclose(intra, 0.0, atol=1e-4))
    True
    """
    student, teacher, mask = _prepare_logits(student_logits, teacher_logits, where, axis)
    if student.shape[-1] < 2:
        raise ValueError(f"DIST needs at least 2 classes, got logits of shape {student.shape}")
    temperature = _prepare_temperature(temperature, (), None, coupled="dist_terms")
    p_s = jax.nn.softmax(student / temperature, axis=-1)
    p_t = jax.nn.softmax(teacher / temperature, axis=-1)
    inter = temperature**2 * (1.0 - _pearson(p_s, p_t, axis=-1))

    batch_shape = p_s.shape[:-1]
    num_classes = p_s.shape[-1]
    flat_s, flat_t = p_s.reshape(-1, num_classes), p_t.reshape(-1, num_classes)
    valid = None if mask is None else mask.reshape(-1, 1)
    intra_per_class = _pearson(flat_s, flat_t, axis=0, where=valid)
    intra = temperature**2 * (1.0 - jnp.mean(intra_per_class))
    return _masked(inter, mask), _masked(jnp.broadcast_to(intra, batch_shape), mask)


def dist_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float | ArrayLike = 1.0,
    beta: float | ArrayLike = 1.0,
    gamma: float | ArrayLike = 1.0,
    where: ArrayLike | None = None,
    axis: int = -1,
) -> Array:
    """DIST (Huang et al., NeurIPS 2022) per example: ``beta * inter + gamma * intra``.

    The terms are those of :func:`dist_terms`; the defaults are the paper's (``beta = gamma =
    1``, ``T = 1``). The intra-class term couples the examples of the batch: the mean of this
    loss over the unmasked examples is the published batch loss.

    Args:
      student_logits: floating array ``(*batch_shape, C)`` (classes on ``axis``), ``C >= 2``.
      teacher_logits: floating array of the same shape.
      temperature: ``T > 0``, a scalar (the batch term has one temperature); checked only
        where concrete.
      beta: weight of the inter-class (per-example) term.
      gamma: weight of the intra-class (batch) term.
      where: optional bool mask broadcastable to ``batch_shape``; see :func:`dist_terms`.
      axis: the class axis.

    Returns:
      Array ``batch_shape``.

    >>> s = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    >>> t = jnp.array([[0.0, 1.0, 2.0], [0.0, 3.0, 1.0]])
    >>> loss = dist_loss(s, t)
    >>> loss.shape, bool(loss[0] > loss[1] > 0.0)
    ((2,), True)
    """
    inter, intra = dist_terms(
        student_logits, teacher_logits, temperature=temperature, where=where, axis=axis
    )
    return jnp.asarray(beta) * inter + jnp.asarray(gamma) * intra


MLKD_TEMPERATURES = (4.0, 3.0, 5.0, 2.0, 6.0)
"""The temperatures of MLKD's prediction augmentation, in the order of the authors' code."""


def mlkd_confidence_fractions(
    teacher_logits: ArrayLike, *, where: ArrayLike | None = None, axis: int = -1
) -> tuple[Array, Array]:
    """The weights that MLKD's confidence masks amount to in the authors' code.

    The code (``KD_ours.py`` of Jin-Ying/Multi-Level-Logit-Distillation, ``MLKD.py`` of the
    logit-standardization repo) takes the teacher's softmax ``P`` of the weak view, marks the
    examples whose confidence ``max_c P`` is at most its batch median (``np.percentile(., 50)``)
    and the classes whose summed probability ``sum_i P[i, c]`` is at most its median, and
    multiplies these masks with losses *already averaged over the batch*; the mean of the
    product is the loss times the fraction of marked entries. The paper describes a mask that
    selects examples; the code's masks weight every example alike, by about 1/2. This function
    returns the two fractions, as the code computes them (medians with linear interpolation
    over the unmasked examples).

    Args:
      teacher_logits: floating array ``(B, C)``.
      where: optional bool mask ``(B,)``; masked examples take no part.
      axis: the class axis.

    Returns:
      ``(example_fraction, class_fraction)``, float32 scalars in ``[0, 1]`` (the first is 0
      when no example is unmasked).

    >>> t = jnp.array([[4.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    >>> [float(f) for f in mlkd_confidence_fractions(t)]
    [0.5, 0.5]
    """
    teacher, _, mask = _prepare_logits(teacher_logits, teacher_logits, where, axis)
    if teacher.ndim != 2:
        raise ValueError(f"teacher_logits must have shape (B, C), got {teacher.shape}")
    probs = jax.nn.softmax(teacher, axis=-1)
    confidence = jnp.max(probs, axis=-1)
    valid = jnp.ones(confidence.shape, bool) if mask is None else mask
    threshold = jnp.nanquantile(jnp.where(valid, confidence, jnp.nan), 0.5)
    below = valid & (confidence <= threshold)
    example_fraction = jnp.sum(below) / jnp.maximum(jnp.sum(valid), 1)
    class_confidence = jnp.sum(jnp.where(valid[:, None], probs, 0.0), axis=0)
    class_fraction = jnp.mean(class_confidence <= jnp.quantile(class_confidence, 0.5))
    return example_fraction.astype(jnp.float32), class_fraction.astype(jnp.float32)


def mlkd_batch_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float | ArrayLike = 4.0,
    where: ArrayLike | None = None,
    axis: int = -1,
) -> Array:
    """MLKD's batch-level alignment (the code's ``bc_loss``), carried by every example.

    With ``P = softmax(z / T)`` of shape ``(B, C)`` over the ``n`` unmasked examples, the
    example-by-example Gram matrices ``G = P P^T`` are compared:
    ``sum((G_t - G_s)**2) / n``. No ``T**2`` factor, as in the code.

    Args:
      student_logits: floating array ``(B, C)``.
      teacher_logits: floating array of the same shape.
      temperature: ``T > 0``, a scalar (the batch term has one temperature); checked only
        where concrete.
      where: optional bool mask ``(B,)``; masked examples give 0, take no part in ``G``, and
        do not count in ``n``.
      axis: the class axis.

    Returns:
      Array ``(B,)``: the batch value at every unmasked example.

    >>> z = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    >>> mlkd_batch_loss(z, z).tolist()
    [0.0, 0.0]
    """
    p_s, p_t, mask, count = _batch_probs(
        student_logits, teacher_logits, temperature, where, axis, "mlkd_batch_loss"
    )
    gram_s, gram_t = p_s @ p_s.T, p_t @ p_t.T
    value = jnp.sum((gram_t - gram_s) ** 2) / count
    return _masked(jnp.broadcast_to(value, p_s.shape[:1]), mask)


def mlkd_class_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float | ArrayLike = 4.0,
    where: ArrayLike | None = None,
    axis: int = -1,
) -> Array:
    """MLKD's class-level alignment (the code's ``cc_loss``), carried by every example.

    With ``P = softmax(z / T)`` of shape ``(B, C)``, the class-by-class Gram matrices
    ``G = P^T P`` (a sum over the unmasked examples) are compared:
    ``sum((G_t - G_s)**2) / C``. No ``T**2`` factor, as in the code.

    Args:
      student_logits: floating array ``(B, C)``.
      teacher_logits: floating array of the same shape.
      temperature: ``T > 0``, a scalar (the batch term has one temperature); checked only
        where concrete.
      where: optional bool mask ``(B,)``; masked examples give 0 and take no part in ``G``.
      axis: the class axis.

    Returns:
      Array ``(B,)``: the batch value at every unmasked example.

    >>> z = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    >>> mlkd_class_loss(z, z).tolist()
    [0.0, 0.0]
    """
    p_s, p_t, mask, _ = _batch_probs(
        student_logits, teacher_logits, temperature, where, axis, "mlkd_class_loss"
    )
    gram_s, gram_t = p_s.T @ p_s, p_t.T @ p_t
    value = jnp.sum((gram_t - gram_s) ** 2) / p_s.shape[-1]
    return _masked(jnp.broadcast_to(value, p_s.shape[:1]), mask)


def mlkd_terms(
    student_weak: ArrayLike,
    teacher_weak: ArrayLike,
    student_strong: ArrayLike,
    teacher_strong: ArrayLike,
    *,
    temperatures: tuple[float, ...] = MLKD_TEMPERATURES,
    strong_temperatures: int = 3,
    standardize: bool = False,
    where: ArrayLike | None = None,
    axis: int = -1,
) -> dict[str, Array]:
    """The distillation terms of MLKD (Jin et al., CVPR 2023) as the authors' code has them.

    Inputs are the logits of a weakly and a strongly augmented view of the same examples.
    With ``f_e`` and ``f_c`` the fractions of :func:`mlkd_confidence_fractions` and the sums
    over ``T`` in ``temperatures``, the terms are, per example (unweighted):

    * ``"instance"``: ``sum_T f_e * kd_T(weak) + sum_{T in first k} kd_T(strong)
      + sum_{T in the rest} kd_T(weak)``, with ``kd_T`` :func:`kd_loss` and ``k =
      strong_temperatures``. The code's "strong" sum takes its last two temperatures (2 and
      6) from the *weak* view; this follows the code.
    * ``"class"``: ``f_c * sum_T`` :func:`mlkd_class_loss` of the weak view;
    * ``"batch"``: ``f_e * sum_T`` :func:`mlkd_batch_loss` of the weak view.

    The code also computes class- and batch-level terms of the strong view but leaves them out
    of the loss; so does this function. The paper's text describes the confidence masks as
    selecting examples; the code weights (see :func:`mlkd_confidence_fractions`), followed
    here. The cross-entropy of both views is the caller's (the code: ``ce_weight *
    (CE(weak) + CE(strong))``), as is the common ``kd_weight`` of all terms.

    Args:
      student_weak: floating array ``(B, C)``, the student's logits of the weak view.
      teacher_weak: the teacher's logits of the weak view, same shape.
      student_strong: the student's logits of the strong view, same shape.
      teacher_strong: the teacher's logits of the strong view, same shape.
      temperatures: the temperatures, each ``> 0``; the code's are ``MLKD_TEMPERATURES``.
      strong_temperatures: how many of the first temperatures use the strong view in the
        second instance-level sum, ``0 <= k <= len(temperatures)`` (the code: 3).
      standardize: z-score the logits of the instance-level terms as the
        logit-standardization authors' code does for MLKD (:func:`standardize_logits` with
        ``eps=1e-7, ddof=1``: their ``torch.std``); the class and batch terms and the
        confidence fractions keep the raw logits, as in their code.
      where: optional bool mask ``(B,)``; masked examples give 0 and take no part.
      axis: the class axis.

    Returns:
      ``{"instance": (B,), "class": (B,), "batch": (B,)}``; the mean of each over the unmasked
      examples is the code's loss value of that level (before ``kd_weight``).
    """
    if not isinstance(temperatures, (tuple, list)) or not temperatures:
        raise ValueError(f"temperatures must be a non-empty tuple, got {temperatures!r}")
    for temperature in temperatures:
        _prepare_temperature(temperature, (), None, coupled="mlkd_terms")
    if (
        isinstance(strong_temperatures, bool)
        or not isinstance(strong_temperatures, int)
        or not 0 <= strong_temperatures <= len(temperatures)
    ):
        raise ValueError(
            f"strong_temperatures must be an int in [0, {len(temperatures)}], "
            f"got {strong_temperatures!r}"
        )
    s_weak, t_weak, mask = _prepare_logits(student_weak, teacher_weak, where, axis)
    s_strong, t_strong, _ = _prepare_logits(student_strong, teacher_strong, where, axis)
    if s_weak.ndim != 2 or s_strong.shape != s_weak.shape:
        raise ValueError(
            "the logits of both views must have the same shape (B, C), got "
            f"{s_weak.shape} and {s_strong.shape}"
        )
    example_fraction, class_fraction = mlkd_confidence_fractions(t_weak, where=mask)
    instance_inputs = [s_weak, t_weak, s_strong, t_strong]
    if standardize:
        instance_inputs = [standardize_logits(z, eps=1e-7, ddof=1) for z in instance_inputs]
    iw_s, iw_t, is_s, is_t = instance_inputs
    instance = class_level = batch_level = jnp.zeros(s_weak.shape[:1], s_weak.dtype)
    for k, temperature in enumerate(temperatures):
        weak_kd = kd_loss(iw_s, iw_t, temperature=temperature, where=mask)
        second = (
            kd_loss(is_s, is_t, temperature=temperature, where=mask)
            if k < strong_temperatures
            else weak_kd
        )
        instance = instance + example_fraction * weak_kd + second
        class_level = class_level + mlkd_class_loss(
            s_weak, t_weak, temperature=temperature, where=mask
        )
        batch_level = batch_level + mlkd_batch_loss(
            s_weak, t_weak, temperature=temperature, where=mask
        )
    return {
        "instance": instance,
        "class": class_fraction * class_level,
        "batch": example_fraction * batch_level,
    }


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


def _tempered_kl(student: Array, teacher: Array, temperature: Array) -> Array:
    """``T**2 * KL(softmax(teacher / T) || softmax(student / T))`` over the last axis, with
    ``temperature`` from :func:`_prepare_temperature`."""
    scale = _per_class(temperature)
    return temperature**2 * _softmax_kl(student / scale, teacher / scale)


def _softmax_kl(student: Array, teacher: Array) -> Array:
    """``KL(softmax(teacher) || softmax(student))`` over the last axis; 0 log 0 counts as 0."""
    log_q = jax.nn.log_softmax(student, axis=-1)
    log_p = jax.nn.log_softmax(teacher, axis=-1)
    p = jnp.exp(log_p)
    # Where p == 0 the term is 0, also when log_p - log_q is -inf - (-inf): select before the
    # product so that neither the value nor the gradient sees that NaN.
    log_ratio = jnp.where(p > 0, log_p - log_q, 0.0)
    return jnp.sum(p * log_ratio, axis=-1)


def _pearson(a: Array, b: Array, *, axis: int, where: Array | None = None) -> Array:
    """Pearson correlation along ``axis`` as the DIST code writes it: the cosine of the centred
    vectors with 1e-8 added to the product of norms; ``where`` (broadcastable) selects the
    entries of each vector."""
    count: int | Array
    keep: float | Array
    if where is None:
        count = a.shape[axis]
        keep = 1.0
    else:
        keep = where.astype(a.dtype)
        # At least 1: with every entry masked out, the result is 0, not NaN.
        count = jnp.maximum(jnp.sum(jnp.broadcast_to(keep, a.shape), axis=axis, keepdims=True), 1)
    a = keep * (a - jnp.sum(keep * a, axis=axis, keepdims=True) / count)
    b = keep * (b - jnp.sum(keep * b, axis=axis, keepdims=True) / count)
    return jnp.sum(a * b, axis=axis) / (_norm(a, axis) * _norm(b, axis) + 1e-8)


def _norm(x: Array, axis: int) -> Array:
    """Euclidean norm with a zero (not NaN) gradient at the zero vector."""
    squares = jnp.sum(x**2, axis=axis)
    positive = squares > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


def _batch_probs(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    temperature: float | ArrayLike,
    where: ArrayLike | None,
    axis: int,
    name: str,
) -> tuple[Array, Array, Array | None, int | Array]:
    """Softmaxes ``(B, C)`` of both logits for MLKD's Gram terms, zero at masked examples."""
    student, teacher, mask = _prepare_logits(student_logits, teacher_logits, where, axis)
    if student.ndim != 2:
        raise ValueError(f"logits must have shape (B, C), got {student.shape}")
    temperature = _prepare_temperature(temperature, (), None, coupled=name)
    p_s = jax.nn.softmax(student / temperature, axis=-1)
    p_t = jax.nn.softmax(teacher / temperature, axis=-1)
    if mask is None:
        return p_s, p_t, None, student.shape[0]
    keep = mask[:, None]
    count = jnp.maximum(jnp.sum(mask), 1)  # all masked: 0, not NaN
    return jnp.where(keep, p_s, 0.0), jnp.where(keep, p_t, 0.0), mask, count


def _band(logits: Array, band: str, domain: str, level: int, mode: str) -> Array:
    if domain == "logits":
        split = haar_highpass if band == "high" else haar_lowpass
        return split(logits, level, mode=mode)
    coeffs = haar_wavedec(logits, level, mode=mode)
    return jnp.concatenate(coeffs[1:], axis=-1) if band == "high" else coeffs[0]


def _prepare_logits(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    where: ArrayLike | None,
    axis: int = -1,
) -> tuple[Array, Array, Array | None]:
    """Checks shapes and dtypes, moves the class axis last, upcasts, and zeroes the logits of
    masked-out examples."""
    student = _as_float(student_logits, "student_logits")
    teacher = _as_float(teacher_logits, "teacher_logits")
    if student.shape != teacher.shape:
        raise ValueError(
            "student_logits and teacher_logits must have the same shape, got "
            f"{student.shape} and {teacher.shape}"
        )
    logits_shape = student.shape
    if student.ndim:
        if (
            isinstance(axis, bool)
            or not isinstance(axis, int)
            or not -student.ndim <= axis < student.ndim
        ):
            raise ValueError(
                f"axis must be an int in [{-student.ndim}, {student.ndim - 1}] (the class axis "
                f"of logits of shape {student.shape}), got {axis!r}"
            )
        student, teacher = jnp.moveaxis(student, axis, -1), jnp.moveaxis(teacher, axis, -1)
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
        hint = (
            " (it has the logits' shape: where masks whole examples, not single logits)"
            if mask.shape == logits_shape
            else ""
        )
        raise ValueError(
            f"where must be broadcastable to batch_shape {batch_shape}, got shape "
            f"{mask.shape}{hint}"
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


def _prepare_temperature(
    temperature: float | ArrayLike,
    batch_shape: tuple[int, ...],
    mask: Array | None,
    *,
    coupled: str | None = None,
) -> Array:
    """``temperature`` as a float array of shape ``()`` or ``batch_shape`` (one per example).

    Concrete values (Python numbers, NumPy and committed JAX arrays) must be finite and > 0;
    traced values cannot be checked. Masked examples get 1, so that a traced 0 or NaN there
    leaves no NaN in the gradient. ``coupled`` names a function whose terms couple the
    examples: it takes a scalar only (one batch term has one temperature).
    """
    if isinstance(temperature, bool):
        raise TypeError(f"temperature must be a positive number, got {temperature!r}")
    if isinstance(temperature, numbers.Real):
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
        # Weakly typed, as in `logits / 4.0`: the logits' precision (float64 under x64).
        return jnp.asarray(float(temperature))
    value = jnp.asarray(temperature)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"temperature must be a floating-point value, got dtype {value.dtype}")
    if coupled is not None and value.shape != ():
        raise ValueError(
            f"temperature of {coupled} must be a scalar (its batch term couples the examples), "
            f"got shape {value.shape}"
        )
    if value.shape not in ((), batch_shape):
        raise ValueError(
            "temperature must be a scalar or one value per example, of shape batch_shape = "
            f"{batch_shape}, got shape {value.shape}"
        )
    if not isinstance(value, jax.core.Tracer):
        concrete = np.asarray(value)
        bad = concrete[~(np.isfinite(concrete) & (concrete > 0))]
        if bad.size:
            raise ValueError(f"temperature must be finite and > 0 everywhere, got {bad[0]}")
    value = value.astype(jnp.promote_types(value.dtype, jnp.float32))
    if mask is not None and value.ndim:
        value = jnp.where(mask, value, 1.0)
    return value


def _per_class(temperature: Array) -> Array:
    """A temperature from :func:`_prepare_temperature`, broadcastable against the logits (a
    scalar becomes shape ``(1,)``, which divides them alike)."""
    return temperature[..., None]


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
