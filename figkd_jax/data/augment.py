"""Image transforms of the input pipeline, as pure TensorFlow functions.

Randomness enters only through ``draws``: uniform [0, 1) floats that the pipeline derives from
(seed, epoch, example index) with stateless ops. Each transform is split into ``sample_*``
(draws -> parameters) and an apply step (parameters -> pixels), so tests can check the
parameters and the pixels separately and an on-device path can reuse the parameter semantics.
All geometry follows torchvision (RandomCrop with padding, RandomRotation, RandomResizedCrop,
Resize, CenterCrop, RandomHorizontalFlip).
"""

from figkd_jax import extras

extras.require_tensorflow()

import math

import numpy as np
import tensorflow as tf

from figkd_jax.data import rotation

PAD_CROP_FLIP_DRAWS = 3
"""Draws per example of ``sample_pad_crop_flip``: row offset, column offset, flip."""

_RESIZED_CROP_TRIES = 10
RESIZED_CROP_FLIP_DRAWS = 2 * _RESIZED_CROP_TRIES + 3
"""Draws per example of ``sample_resized_crop`` (10 scales, 10 log-ratios, top, left) + flip."""


def normalize(images: tf.Tensor, mean, std) -> tf.Tensor:
    """Pixels in [0, 255] (any real or integer dtype) [..., C] -> float32 (x/255 - mean) / std."""
    scale = tf.constant(1 / (255 * np.asarray(std)), tf.float32)
    shift = tf.constant(-np.asarray(mean) / np.asarray(std), tf.float32)
    return tf.cast(images, tf.float32) * scale + shift  # one multiply-add per pixel


def sample_pad_crop_flip(draws: tf.Tensor, pad: int, flip: bool):
    """Draws [B, 3] -> row offsets [B] int32, column offsets [B] int32, flips [B] bool.

    Offsets are uniform in [0, 2 * pad] (``torch.randint(0, 2 * pad + 1)``); flips are
    ``draw < 0.5`` when ``flip`` else all False.
    """
    offsets = tf.cast(tf.floor(draws[:, :2] * (2 * pad + 1)), tf.int32)
    offsets = tf.minimum(offsets, 2 * pad)  # guards float rounding of draws just below 1
    flips = tf.logical_and(draws[:, 2] < 0.5, flip)
    return offsets[:, 0], offsets[:, 1], flips


def pad_crop_flip(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor, flips: tf.Tensor, pad: int):
    """Batched zero-pad + crop + mirror: images [B, H, W, C] -> [B, H, W, C], same dtype.

    Example b is cropped from its zero-padded copy at (rows[b], cols[b]) and mirrored
    left-right where flips[b]. Padding happens in pixel space, so padded pixels are 0 before
    normalisation, like torchvision's RandomCrop on a PIL image.
    """
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    row_index = rows[:, None] + tf.range(height)[None, :]
    col_range = tf.range(width)[None, :]
    col_index = cols[:, None] + tf.where(flips[:, None], width - 1 - col_range, col_range)
    cropped = tf.gather(padded, row_index, axis=1, batch_dims=1)
    return tf.gather(cropped, col_index, axis=2, batch_dims=1)


def sample_rotate_flip(draws: tf.Tensor, degrees: float, flip: bool, height: int, width: int):
    """Draws [B, 2] -> PIL's rotation coefficients int32 [B, 6], flips [B] bool.

    Column 0 gives the angle, uniform in [-degrees, degrees) (``rotation.affine_from_draws``,
    computed on the host in float64 as PIL does); flips are ``draws[:, 1] < 0.5`` when ``flip``.
    """
    affine = tf.numpy_function(
        lambda angle_draws: rotation.affine_from_draws(angle_draws, degrees, height, width),
        [draws[:, 0]],
        tf.int32,
        stateful=False,
    )
    affine.set_shape([draws.shape[0], 6])
    return affine, tf.logical_and(draws[:, 1] < 0.5, flip)


def rotate_flip(images: tf.Tensor, affine: tf.Tensor, flips: tf.Tensor) -> tf.Tensor:
    """Batched PIL nearest-neighbour rotation, then mirror: [B, H, W, C] -> same shape and dtype.

    Example b is rotated with the fixed-point coefficients affine[b] (``rotation``), pixels from
    outside the image are 0 (in pixel space, before normalisation, as torchvision's fill), and
    the result is mirrored left-right where flips[b].
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    # Mirroring the rotated image = reading it at the mirrored column.
    cols = tf.where(flips[:, None, None], width - 1 - cols, cols)
    a = [affine[:, k, None, None] for k in range(6)]
    # Row and column terms [B, H, 1] + [B, 1, W]: the integers of PIL's accumulation.
    src_cols = tf.bitwise.right_shift((a[2] + rows * a[1]) + cols * a[0], rotation.FIXED_POINT_BITS)
    src_rows = tf.bitwise.right_shift((a[5] + rows * a[4]) + cols * a[3], rotation.FIXED_POINT_BITS)
    inside = (src_cols >= 0) & (src_cols < width) & (src_rows >= 0) & (src_rows < height)
    # Pixels from outside read an appended zero pixel (the fill) in one flat gather per example.
    fill_index = height * width
    flat_index = tf.where(inside, src_rows * width + src_cols, fill_index)
    flat_images = tf.pad(tf.reshape(images, [-1, fill_index, channels]), [[0, 0], [0, 1], [0, 0]])
    return tf.gather(flat_images, flat_index, batch_dims=1)


def sample_resized_crop(draws: tf.Tensor, height: tf.Tensor, width: tf.Tensor, scale, ratio):
    """torchvision ``RandomResizedCrop.get_params`` for one image, without a loop.

    Args:
      draws: [>= 22] uniforms: [0:10] area fractions, [10:20] log aspect ratios of the 10
        tries, [20] top, [21] left.
      height, width: int32 scalars, the source image size.
      scale: (min, max) fraction of the image area; ratio: (min, max) of width / height.

    Returns:
      (top, left, crop_height, crop_width) int32 scalars: the first of the 10 tries whose box
      fits the image, at a uniform position; if none fits, torchvision's central fallback
      (the whole image, clamped to the ratio range).
    """
    draws = tf.cast(draws, tf.float64)
    height_f = tf.cast(height, tf.float64)
    width_f = tf.cast(width, tf.float64)
    tries = _RESIZED_CROP_TRIES
    target_area = height_f * width_f * (scale[0] + draws[:tries] * (scale[1] - scale[0]))
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = tf.exp(log_low + draws[tries : 2 * tries] * (log_high - log_low))
    # tf.round rounds half to even, as Python's round() in torchvision.
    widths = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
    heights = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    crop_h, crop_w = heights[first], widths[first]
    top = tf.cast(tf.floor(draws[2 * tries] * tf.cast(height - crop_h + 1, tf.float64)), tf.int32)
    left = tf.cast(
        tf.floor(draws[2 * tries + 1] * tf.cast(width - crop_w + 1, tf.float64)), tf.int32
    )
    top = tf.minimum(top, height - crop_h)
    left = tf.minimum(left, width - crop_w)

    in_ratio = width_f / height_f
    fallback_w = tf.where(
        in_ratio > ratio[1], tf.cast(tf.round(height_f * ratio[1]), tf.int32), width
    )
    fallback_h = tf.where(
        in_ratio < ratio[0], tf.cast(tf.round(width_f / ratio[0]), tf.int32), height
    )
    found = tf.reduce_any(fits)
    return (
        tf.where(found, top, (height - fallback_h) // 2),
        tf.where(found, left, (width - fallback_w) // 2),
        tf.where(found, crop_h, fallback_h),
        tf.where(found, crop_w, fallback_w),
    )


def resized_crop(image: tf.Tensor, top, left, crop_height, crop_width, size: int) -> tf.Tensor:
    """Crop the box from image [H, W, C] and resize it to [size, size, C] float32 in [0, 255].

    Bilinear with antialiasing, like torchvision on PIL images.
    """
    box = image[top : top + crop_height, left : left + crop_width]
    return tf.image.resize(box, [size, size], method="bilinear", antialias=True)


def resize_center_crop(image: tf.Tensor, resize: int, crop: int) -> tf.Tensor:
    """torchvision ``Resize(resize)`` + ``CenterCrop(crop)``: [H, W, C] -> [crop, crop, C] float32.

    The shorter side becomes ``resize`` and the longer ``int(resize * long / short)``
    (truncated, as torchvision); the crop starts at ``round((side - crop) / 2)``.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    short = tf.cast(tf.minimum(height, width), tf.float64)
    new_height = tf.where(
        height <= width, resize, tf.cast(resize * tf.cast(height, tf.float64) / short, tf.int32)
    )
    new_width = tf.where(
        width < height, resize, tf.cast(resize * tf.cast(width, tf.float64) / short, tf.int32)
    )
    resized = tf.image.resize(image, [new_height, new_width], method="bilinear", antialias=True)
    top = tf.cast(tf.round(tf.cast(new_height - crop, tf.float64) / 2), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_width - crop, tf.float64) / 2), tf.int32)
    return resized[top : top + crop, left : left + crop]


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes -> uint8 [H, W, 3] (grayscale expanded, alpha dropped)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image
