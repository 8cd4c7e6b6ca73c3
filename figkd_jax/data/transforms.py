"""The train augmentation and normalisation of the fixed-resolution datasets, in JAX, once.

Digits, CIFAR-100 and TinyImageNet are read and shuffled as uint8 images (by TensorFlow on
the host, or gathered from the split on the device); what happens to the pixels then is
defined here and nowhere else, and runs wherever the step runs: inside the jitted train step
on the accelerator (``device_input.batch_at``), or jitted on the host CPU when the input comes
from the host (``pipeline.train_stream``). Both paths therefore see the same pixels for the
same (seed, step).

Randomness enters only through ``draws``: uniform [0, 1) float32 that the pipeline derives from
(seed, epoch, example index). Each transform is split into ``sample_*`` (draws -> parameters)
and an apply step (parameters -> pixels), so tests can check each against its reference
(torchvision's ``RandomCrop(padding)`` + ``RandomHorizontalFlip``; PIL's ``rotate``).
Geometry happens in uint8 pixel space, before normalisation, as torchvision on PIL images.

The fine-grained datasets' crops are decoded and resized on the host (``augment``,
``decoded``); they share only ``normalization`` with this module.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from figkd_jax.data import rotation
from figkd_jax.data.registry import DatasetInfo, PadCropFlip, RotateFlip
from figkd_jax.models import compute_dtype

PAD_CROP_FLIP_DRAWS = 3
"""Draws per example of ``sample_pad_crop_flip``: row offset, column offset, flip."""


def normalization(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) float32 [C]: ``(x / 255 - mean) / std`` as ``x * scale + shift``, the
    constants of every normalisation here and of the fine-grained crops (TensorFlow)."""
    scale = (1 / (255 * np.asarray(std, np.float64))).astype(np.float32)
    shift = (-np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)
    return scale, shift


def normalize(images: jax.Array, mean, std, dtype: str = "float32") -> jax.Array:
    """uint8 pixels [..., C] -> (x / 255 - mean) / std in ``dtype``.

    A lookup in the table of the 256 values of each channel, made once in NumPy float32 as
    ``x * scale + shift`` (``normalization``) with a rounding after the multiply and after the
    add. A compiler that fuses the two into one rounding (XLA does, on CPU and GPU) would move
    the last bit of about half the values with the backend; the table gives every backend the
    same pixels, those of the unfused arithmetic.
    """
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise ValueError(f"normalize needs uint8 pixels, got {images.dtype}")
    scale, shift = normalization(mean, std)
    table = np.arange(256, dtype=np.float32)[:, None] * scale + shift
    values = jnp.asarray(table)[images.astype(jnp.int32), np.arange(len(scale))]
    return values.astype(compute_dtype(dtype))


def normalized_images(images: jax.Array, info: DatasetInfo, dtype: str = "float32") -> jax.Array:
    """Images of a host batch as a model takes them: uint8 (the streams that leave
    normalisation to the step, ImageNet's) through ``normalize`` in ``dtype``; float (normalised
    on the host) as they are. For jit: the choice is made from the dtype, at trace time."""
    if images.dtype != jnp.uint8:
        return images
    return normalize(images, info.mean, info.std, dtype)


def normalize_batch(batch: dict, info: DatasetInfo, dtype: str = "float32") -> dict:
    """``batch`` with its "image" through ``normalized_images``; where "mask" is False
    (padding of an eval batch) the normalised image is 0, as the host pipelines yield it."""
    image = normalized_images(batch["image"], info, dtype)
    if "mask" in batch and image is not batch["image"]:
        image = jnp.where(batch["mask"][:, None, None, None], image, 0)
    return {**batch, "image": image}


def sample_pad_crop_flip(draws: jax.Array, pad: int, flip: bool):
    """Draws float32 [B, 3] in [0, 1) -> row offsets [B] int32, column offsets [B] int32, flips [B].

    Offsets are uniform in [0, 2 * pad] (``torch.randint(0, 2 * pad + 1)``); flips are
    ``draw < 0.5`` when ``flip``, else all False.
    """
    offsets = jnp.floor(draws[:, :2] * jnp.float32(2 * pad + 1)).astype(jnp.int32)
    offsets = jnp.minimum(offsets, 2 * pad)  # guards float rounding of draws just below 1
    flips = (draws[:, 2] < 0.5) & flip
    return offsets[:, 0], offsets[:, 1], flips


def pad_crop_flip(
    images: jax.Array, rows: jax.Array, cols: jax.Array, flips: jax.Array, pad: int
) -> jax.Array:
    """Zero-pad by ``pad``, crop at (rows[b], cols[b]), mirror where flips[b].

    images [B, H, W, C] (uint8) -> [B, H, W, C], same dtype; padding is in pixel space, so padded
    pixels are 0 before normalisation, like torchvision's ``RandomCrop(padding=pad)`` on a PIL
    image.
    """
    _, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    crop = lambda image, row, col: jax.lax.dynamic_slice(
        image, (row, col, 0), (height, width, channels)
    )
    cropped = jax.vmap(crop)(padded, rows, cols)
    return jnp.where(flips[:, None, None, None], cropped[:, :, ::-1], cropped)


def sample_flips(draws: jax.Array, flip: bool) -> jax.Array:
    """Draws float32 [B, rotation.ROTATE_FLIP_DRAWS] -> flips [B] bool, ``draws[:, 1] < 0.5`` when
    ``flip``. Column 0 is the angle, whose fixed-point coefficients the host computes
    (``rotation.affine_from_draws``: float64, as PIL)."""
    return (draws[:, 1] < 0.5) & flip


def rotate_flip(images: jax.Array, affine: jax.Array, flips: jax.Array) -> jax.Array:
    """PIL's nearest-neighbour rotation with fixed-point coefficients affine [B, 6] int32, fill 0,
    then a mirror where flips[b]: images [B, H, W, C] -> same shape and dtype.

    Integer arithmetic only (``rotation``), so the pixels are PIL's on every backend.
    """
    _, height, width, _ = images.shape
    rows = jnp.arange(height, dtype=jnp.int32)[:, None]
    cols = jnp.arange(width, dtype=jnp.int32)[None, :]

    def one(image, a, flipped):
        # Mirroring the rotated image = reading it at the mirrored column.
        read_cols = jnp.where(flipped, width - 1 - cols, cols)
        src_cols = jnp.right_shift(a[2] + read_cols * a[0] + rows * a[1], rotation.FIXED_POINT_BITS)
        src_rows = jnp.right_shift(a[5] + read_cols * a[3] + rows * a[4], rotation.FIXED_POINT_BITS)
        inside = (src_cols >= 0) & (src_cols < width) & (src_rows >= 0) & (src_rows < height)
        pixels = image[jnp.clip(src_rows, 0, height - 1), jnp.clip(src_cols, 0, width - 1)]
        return jnp.where(inside[..., None], pixels, jnp.zeros_like(pixels))

    return jax.vmap(one)(images, affine, flips)


def fixed_resolution_spec(info: DatasetInfo) -> PadCropFlip | RotateFlip:
    """The dataset's augmentation, which this module applies; a ValueError for the others."""
    if not isinstance(info.augment, (PadCropFlip, RotateFlip)):
        raise ValueError(
            f"this input path needs a fixed-resolution dataset (digits, cifar100, tiny_imagenet), "
            f"not {info.name}: its images have different sizes"
        )
    return info.augment


def train_batch(
    source: jax.Array,
    label: jax.Array,
    draws: jax.Array,
    *,
    affine: jax.Array | None = None,
    strong_draws: jax.Array | None = None,
    info: DatasetInfo,
    dtype: str = "float32",
) -> dict[str, jax.Array]:
    """A train batch from its examples' uint8 images source [B, H, W, C] and labels [B].

    Returns {"image": ``dtype`` [B, H, W, C], the dataset's augmentation (pad-crop-flip by
    ``draws`` [B, 3], or rotate-flip by ``affine`` [B, 6] and ``draws`` [B, 2]) then
    normalisation; "label"}. With ``strong_draws`` [B, randaugment.STRONG_VIEW_DRAWS] (MLKD)
    also "strong_image", uint8 [B, H, W, C]: the sources padded, cropped and flipped by their
    own draws, which ``device_input.finish_strong_view`` completes; and "strong_draws".
    Pure; for jit on any backend.
    """
    spec = fixed_resolution_spec(info)
    if isinstance(spec, RotateFlip):
        images = rotate_flip(source, affine, sample_flips(draws, spec.flip))
    else:
        images = pad_crop_flip(source, *sample_pad_crop_flip(draws, spec.pad, spec.flip), spec.pad)
    batch = {"image": normalize(images, info.mean, info.std, dtype), "label": label}
    if strong_draws is not None:
        if not isinstance(spec, PadCropFlip):
            raise ValueError(f"a strong view (MLKD) needs a pad-crop-flip dataset, not {info.name}")
        strong = sample_pad_crop_flip(strong_draws, spec.pad, spec.flip)
        batch["strong_image"] = pad_crop_flip(source, *strong, spec.pad)
        batch["strong_draws"] = strong_draws
    return batch
