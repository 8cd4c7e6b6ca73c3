"""Orthonormal Haar wavelet transform along one axis, matching PyWavelets.

Every function transforms the axis ``axis`` of an array of any shape; the other axes are
batch axes. Values, coefficient lengths and boundary handling are those of
``pywt.dwt / idwt / wavedec / waverec(..., "haar", mode=mode)``:

* analysis pairs samples ``(2k, 2k + 1)``: ``a_k = (x_2k + x_2k+1) / sqrt(2)`` and
  ``d_k = (x_2k - x_2k+1) / sqrt(2)``;
* an odd-length signal is first extended by one sample: a copy of its last sample for
  ``"symmetric"`` and ``"periodization"`` (for the two-tap Haar filter PyWavelets gives both
  modes the same values), a zero for ``"zero"``; coefficients then have ``ceil(n / 2)`` samples;
* synthesis returns ``2 * n`` samples, and the multi-level synthesis drops the last sample of an
  approximation that is one longer than the next detail, exactly like ``pywt.waverec``.

Arrays are computed in at least float32: bfloat16, float16, integer and bool inputs give
float32 results, float64 stays float64 (with ``jax_enable_x64``). Only static shapes are used
(pads, reshapes and slices, no gathers), so everything works under ``jit``, ``vmap`` and
``grad``; ``axis``, ``level``, ``mode`` and ``length`` must be Python values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jax.typing import ArrayLike, DTypeLike

__all__ = [
    "MODES",
    "haar_dwt",
    "haar_highpass",
    "haar_idwt",
    "haar_lowpass",
    "haar_max_level",
    "haar_wavedec",
    "haar_waverec",
]

MODES = ("symmetric", "zero", "periodization")

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
# Largest block that _band_last projects with a matrix product: its cost grows with the block.
_MAX_PROJECTED_BLOCK = 8


def haar_max_level(length: int) -> int:
    """Deepest useful decomposition level of a signal of ``length`` samples.

    Equals ``pywt.dwt_max_level(length, 2)``, that is ``floor(log2(length))``; it is 0 for
    ``length == 1``, so a length-1 signal has no valid level.

    >>> haar_max_level(100), haar_max_level(128), haar_max_level(1)
    (6, 7, 0)
    """
    if isinstance(length, bool) or not isinstance(length, int):
        raise TypeError(f"length must be a Python int >= 1, got {length!r}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    return length.bit_length() - 1


def haar_dwt(x: ArrayLike, *, axis: int = -1, mode: str = "symmetric") -> tuple[Array, Array]:
    """Single-level Haar analysis along ``axis`` (``pywt.dwt(x, "haar", mode, axis=axis)``).

    Args:
      x: array of any shape with ``n >= 1`` samples along ``axis``.
      axis: the transformed axis.
      mode: boundary extension for odd ``n``: ``"symmetric"``, ``"zero"`` or ``"periodization"``.

    Returns:
      ``(approx, detail)``, each of ``x``'s shape with ``ceil(n / 2)`` samples along ``axis``.

    >>> a, d = haar_dwt(jnp.array([1.0, 3.0, 5.0]))
    >>> [round(v * 2**0.5, 4) for v in a.tolist()], [round(v * 2**0.5, 4) for v in d.tolist()]
    ([4.0, 10.0], [-2.0, 0.0])
    """
    x, axis = _prepare(x, axis, "x")
    _check_mode(mode)
    a, d = _dwt_last(jnp.moveaxis(x, axis, -1), mode)
    return jnp.moveaxis(a, -1, axis), jnp.moveaxis(d, -1, axis)


def haar_idwt(
    approx: ArrayLike | None,
    detail: ArrayLike | None,
    *,
    axis: int = -1,
    length: int | None = None,
) -> Array:
    """Single-level Haar synthesis along ``axis`` (``pywt.idwt(approx, detail, "haar")``).

    The result is the same for every mode, so none is taken.

    Args:
      approx: approximation coefficients, ``m`` samples along ``axis``; ``None`` means zeros.
      detail: detail coefficients of the same shape as ``approx``; ``None`` means zeros.
      axis: the transformed axis.
      length: keep the first ``length`` samples along ``axis`` (``1 <= length <= 2 * m``); by
        default all ``2 * m``, like pywt. ``2 * m - 1`` drops the sample that an odd-length
        analysis added.

    Returns:
      Array of the coefficients' shape with ``length`` samples along ``axis``.

    >>> [round(v, 4) for v in haar_idwt(*haar_dwt(jnp.array([1.0, 3.0, 5.0])), length=3).tolist()]
    [1.0, 3.0, 5.0]
    """
    approx, detail, axis = _prepare_pair(approx, detail, axis)
    x = _idwt_last(jnp.moveaxis(approx, axis, -1), jnp.moveaxis(detail, axis, -1))
    return jnp.moveaxis(_crop(x, length), -1, axis)


def haar_wavedec(
    x: ArrayLike, level: int, *, axis: int = -1, mode: str = "symmetric"
) -> list[Array]:
    """Multi-level Haar analysis (``pywt.wavedec(x, "haar", mode, level, axis=axis)``).

    Args:
      x: array of any shape with ``n`` samples along ``axis``.
      level: number of analysis steps, ``1 <= level <= haar_max_level(n)``.
      axis: the transformed axis.
      mode: ``"symmetric"``, ``"zero"`` or ``"periodization"``.

    Returns:
      ``[cA_level, cD_level, ..., cD_1]``; ``cD_j`` has ``n_j = ceil(n_{j-1} / 2)`` samples
      along ``axis`` (``n_0 = n``) and ``cA_level`` has ``n_level``.

    >>> [c.shape for c in haar_wavedec(jnp.zeros((2, 10)), 2)]
    [(2, 3), (2, 3), (2, 5)]
    """
    x, axis = _prepare(x, axis, "x")
    _check_mode(mode)
    _check_level(level, x.shape[axis])
    approx = jnp.moveaxis(x, axis, -1)
    details = []
    for _ in range(level):
        approx, detail = _dwt_last(approx, mode)
        details.append(detail)
    return [jnp.moveaxis(c, -1, axis) for c in [approx, *reversed(details)]]


def haar_waverec(
    coeffs: Sequence[ArrayLike | None], *, axis: int = -1, length: int | None = None
) -> Array:
    """Multi-level Haar synthesis (``pywt.waverec(coeffs, "haar", axis=axis)``).

    Before each synthesis step an approximation one sample longer than the next detail loses
    its last sample, as in pywt. The result is the same for every mode, so none is taken.

    Args:
      coeffs: ``[cA_L, cD_L, ..., cD_1]`` as returned by :func:`haar_wavedec`; any entry may be
        ``None`` (zeros), but not ``cA_L`` and ``cD_L`` both.
      axis: the transformed axis.
      length: keep the first ``length`` samples along ``axis`` (at most ``2 * len(cD_1)``, all of
        them by default, like pywt); the original signal length recovers the signal exactly.

    Returns:
      The reconstructed array.

    >>> x = jnp.arange(7.0)
    >>> [round(v, 4) + 0.0 for v in haar_waverec(haar_wavedec(x, 2), length=7).tolist()]
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    """
    if isinstance(coeffs, (str, bytes)) or not isinstance(coeffs, Sequence) or len(coeffs) < 2:
        raise ValueError(
            "coeffs must be a sequence [cA_L, cD_L, ..., cD_1] of at least 2 arrays, "
            f"got {type(coeffs).__name__}"
        )
    approx, detail, axis = _prepare_pair(coeffs[0], coeffs[1], axis)
    x = _idwt_last(jnp.moveaxis(approx, axis, -1), jnp.moveaxis(detail, axis, -1))
    for j, d in enumerate(coeffs[2:], start=2):
        if d is None:
            x = _idwt_last(x, jnp.zeros_like(x))
            continue
        d = jnp.asarray(d)
        if d.ndim != x.ndim:
            raise ValueError(f"coeffs[{j}] must have {x.ndim} dimensions, got shape {d.shape}")
        d = jnp.moveaxis(d, axis, -1)
        n = d.shape[-1]
        if x.shape[-1] not in (n, n + 1) or x.shape[:-1] != d.shape[:-1]:
            raise ValueError(
                f"coeffs[{j}] has {n} samples along axis {axis} and shape "
                f"{jnp.moveaxis(d, -1, axis).shape}; after coeffs[:{j}] it needs "
                f"{x.shape[-1] - 1} or {x.shape[-1]} samples and the same other axes"
            )
        x = _idwt_last(x[..., :n], d.astype(_float_dtype(jnp.promote_types(d.dtype, x.dtype))))
    return jnp.moveaxis(_crop(x, length), -1, axis)


def haar_lowpass(x: ArrayLike, level: int, *, axis: int = -1, mode: str = "symmetric") -> Array:
    """Low-frequency component of ``x`` along ``axis``, in the signal domain.

    ``low_L(x) = waverec([cA_L, 0, ..., 0])[:n]``. Computed directly: it is the mean of each
    block of ``2**level`` neighbouring samples (of the signal extended at every level according
    to ``mode``), repeated over the block.

    Args:
      x: array of any shape with ``n`` samples along ``axis``.
      level: ``1 <= level <= haar_max_level(n)``.
      axis: the transformed axis.
      mode: ``"symmetric"``, ``"zero"`` or ``"periodization"``.

    Returns:
      Array of ``x``'s shape; ``haar_lowpass(x) + haar_highpass(x) == x`` up to rounding.

    >>> haar_lowpass(jnp.array([1.0, 3.0, 4.0, 8.0, 5.0]), 1).tolist()
    [2.0, 2.0, 6.0, 6.0, 5.0]
    """
    x, axis = _prepare(x, axis, "x")
    _check_mode(mode)
    _check_level(level, x.shape[axis])
    return jnp.moveaxis(_band_last(jnp.moveaxis(x, axis, -1), level, mode, high=False), -1, axis)


def haar_highpass(x: ArrayLike, level: int, *, axis: int = -1, mode: str = "symmetric") -> Array:
    """High-frequency component of ``x`` along ``axis``, in the signal domain.

    ``high_L(x) = waverec([0, cD_L, ..., cD_1])[:n]``, computed as ``x - low_L(x)``: at level 1
    with even ``n`` this is each sample minus the mean of its pair ``(2k, 2k + 1)``.

    Args:
      x: array of any shape with ``n`` samples along ``axis``.
      level: ``1 <= level <= haar_max_level(n)``.
      axis: the transformed axis.
      mode: ``"symmetric"``, ``"zero"`` or ``"periodization"``.

    Returns:
      Array of ``x``'s shape.

    >>> haar_highpass(jnp.array([1.0, 3.0, 4.0, 8.0, 5.0]), 1).tolist()
    [-1.0, 1.0, -2.0, 2.0, 0.0]
    """
    x, axis = _prepare(x, axis, "x")
    _check_mode(mode)
    _check_level(level, x.shape[axis])
    return jnp.moveaxis(_band_last(jnp.moveaxis(x, axis, -1), level, mode, high=True), -1, axis)


def _dwt_last(x: Array, mode: str) -> tuple[Array, Array]:
    even, odd = _pairs(x, mode)
    return (even + odd) * _INV_SQRT2, (even - odd) * _INV_SQRT2


def _idwt_last(approx: Array, detail: Array) -> Array:
    even = (approx + detail) * _INV_SQRT2
    odd = (approx - detail) * _INV_SQRT2
    return jnp.stack([even, odd], axis=-1).reshape(*approx.shape[:-1], 2 * approx.shape[-1])


def _band_last(x: Array, level: int, mode: str, *, high: bool) -> Array:
    """``high_L(x)`` (``high=True``) or ``low_L(x)`` along the last axis.

    Synthesis from ``cA_L`` alone repeats each coefficient over its block of ``2**L`` samples
    (scaled by ``2**(-L/2)``) and pywt's crops only ever cut a suffix, so ``low_L`` is the mean
    of each block of the extended signal, repeated over the block, cut to ``n``; and
    ``high_L = x - low_L``. Under XLA on CPU, reducing over or broadcasting along a short last
    axis is several times slower than elementwise work or a small matrix product, so level 1
    pairs each sample with its partner through a reversing reshape, and blocks of up to 8
    samples are projected by a ``block x block`` matrix.
    """
    n = x.shape[-1]
    x = _extend_blocks(x, level, mode)
    block = 2**level
    blocks = x.reshape(*x.shape[:-1], -1, block)
    if level == 1:
        partner = blocks[..., ::-1].reshape(x.shape)
        band = (x - partner) * 0.5 if high else (x + partner) * 0.5
    elif block <= _MAX_PROJECTED_BLOCK:
        averaging = np.full((block, block), 1.0 / block)
        projection = np.eye(block) - averaging if high else averaging
        band = jnp.matmul(
            blocks, jnp.asarray(projection, x.dtype), precision=lax.Precision.HIGHEST
        ).reshape(x.shape)
    else:
        # Pairwise averaging, level by level as in the transform itself: a plain mean over
        # hundreds of float32 samples rounds about twice as much.
        means = blocks
        for _ in range(level):
            means = (means[..., 0::2] + means[..., 1::2]) * 0.5
        band = (blocks - means if high else jnp.broadcast_to(means, blocks.shape)).reshape(x.shape)
    return band[..., :n]


def _extend_blocks(x: Array, level: int, mode: str) -> Array:
    """Extends ``x`` so that its blocks of ``2**level`` samples hold what each level's odd-length
    extension puts there: averaging a copy of the last block of ``2**j`` samples (or zeros) is
    averaging in a copy of the last level-``j`` approximation (or a zero)."""
    blocks = x.shape[-1]
    for j in range(level):
        if blocks % 2:
            last = x[..., -(2**j) :]
            x = jnp.concatenate([x, jnp.zeros_like(last) if mode == "zero" else last], axis=-1)
            blocks += 1
        blocks //= 2
    return x


def _pairs(x: Array, mode: str) -> tuple[Array, Array]:
    """Samples ``2k`` and ``2k + 1`` of ``x`` extended to even length per ``mode``."""
    n = x.shape[-1]
    if n % 2:
        pad = jnp.zeros_like(x[..., -1:]) if mode == "zero" else x[..., -1:]
        x = jnp.concatenate([x, pad], axis=-1)
    pairs = x.reshape(*x.shape[:-1], (n + 1) // 2, 2)
    return pairs[..., 0], pairs[..., 1]


def _crop(x: Array, length: int | None) -> Array:
    full = x.shape[-1]
    if length is None:
        return x
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= full:
        raise ValueError(f"length must be None or an int in [1, {full}], got {length!r}")
    return x[..., :length]


def _float_dtype(dtype: DTypeLike) -> np.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def _prepare(x: ArrayLike, axis: int, name: str) -> tuple[Array, int]:
    x = jnp.asarray(x)
    x = x.astype(_float_dtype(x.dtype))
    axis = _normalize_axis(axis, x.ndim, name)
    if x.shape[axis] == 0:
        raise ValueError(
            f"{name} must have at least 1 sample along axis {axis}, got shape {x.shape}"
        )
    return x, axis


def _prepare_pair(
    approx: ArrayLike | None, detail: ArrayLike | None, axis: int
) -> tuple[Array, Array, int]:
    if approx is None and detail is None:
        raise ValueError("approx and detail cannot both be None")
    approx = jnp.zeros_like(jnp.asarray(detail)) if approx is None else jnp.asarray(approx)
    detail = jnp.zeros_like(approx) if detail is None else jnp.asarray(detail)
    if approx.shape != detail.shape:
        raise ValueError(
            f"approx and detail must have the same shape, got {approx.shape} and {detail.shape}"
        )
    dtype = _float_dtype(jnp.promote_types(approx.dtype, detail.dtype))
    axis = _normalize_axis(axis, approx.ndim, "approx")
    return approx.astype(dtype), detail.astype(dtype), axis


def _normalize_axis(axis: int, ndim: int, name: str) -> int:
    if ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension, got a scalar")
    if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise ValueError(f"axis must be an int in [{-ndim}, {ndim - 1}] for {name}, got {axis!r}")
    return axis % ndim


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _check_level(level: int, length: int) -> None:
    if isinstance(level, jax.core.Tracer):
        raise TypeError(
            "level must be a static Python int, got a traced value: under jax.jit, mark it "
            "static (jax.jit(f, static_argnames='level')) or close over it"
        )
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"level must be a Python int, got {level!r}")
    max_level = haar_max_level(length)
    if max_level == 0:
        raise ValueError(
            f"level {level} is invalid: a signal of length {length} has no Haar level "
            "(valid levels are 1 <= level <= haar_max_level(length) = 0; it needs >= 2 samples)"
        )
    if not 1 <= level <= max_level:
        raise ValueError(
            f"level must satisfy 1 <= level <= haar_max_level({length}) = {max_level}, got {level}"
        )
