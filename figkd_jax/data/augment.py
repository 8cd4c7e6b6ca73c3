"""Host transforms of the fine-grained (variable-size JPEG) datasets, as TensorFlow functions.

Their crops belong on the host, fused with decoding (``decoded``); the fixed-resolution
datasets' augmentation and normalisation are JAX's (``transforms``), whose normalisation
constants ``normalize`` here shares.

Randomness enters only through ``draws``: uniform [0, 1) floats that the pipeline derives from
(seed, epoch, example index) with stateless ops. ``sample_resized_crop`` (draws -> box) and
``resized_crop`` (box -> pixels) are separate, so tests can check each. All geometry follows
torchvision (RandomResizedCrop, Resize, CenterCrop, RandomHorizontalFlip).
"""

from figkd_jax import extras

extras.require_tensorflow()

import math

import tensorflow as tf

from figkd_jax.data import transforms

_RESIZED_CROP_TRIES = 10
RESIZED_CROP_FLIP_DRAWS = 2 * _RESIZED_CROP_TRIES + 3
"""Draws per example of ``sample_resized_crop`` (10 scales, 10 log-ratios, top, left) + flip."""


def normalize(images: tf.Tensor, mean, std) -> tf.Tensor:
    """Pixels in [0, 255] (any real or integer dtype) [..., C] -> float32 (x/255 - mean) / std,
    with the constants of ``transforms.normalization``."""
    scale, shift = transforms.normalization(mean, std)
    return tf.cast(images, tf.float32) * scale + shift  # one multiply-add per pixel


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
    """torchvision ``Resize(resize)`` + ``CenterCrop(crop)``: [H, W, C] -> [crop, crop, C] float32,
    with ``center_crop_geometry``."""
    new_height, new_width, top, left = center_crop_geometry(
        tf.shape(image)[0], tf.shape(image)[1], resize, crop
    )
    resized = tf.image.resize(image, [new_height, new_width], method="bilinear", antialias=True)
    return resized[top : top + crop, left : left + crop]


def center_crop_geometry(height: tf.Tensor, width: tf.Tensor, resize: int, crop: int):
    """(resized height, resized width, crop top, crop left), int32 scalars, of torchvision's
    ``Resize(resize)`` + ``CenterCrop(crop)`` of an image [height, width].

    The shorter side becomes ``resize`` and the longer ``int(resize * long / short)``
    (truncated, as torchvision); the crop starts at ``round((side - crop) / 2)``.
    """
    short = tf.cast(tf.minimum(height, width), tf.float64)
    new_height = tf.where(
        height <= width, resize, tf.cast(resize * tf.cast(height, tf.float64) / short, tf.int32)
    )
    new_width = tf.where(
        width < height, resize, tf.cast(resize * tf.cast(width, tf.float64) / short, tf.int32)
    )
    top = tf.cast(tf.round(tf.cast(new_height - crop, tf.float64) / 2), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_width - crop, tf.float64) / 2), tf.int32)
    return new_height, new_width, top, left


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes -> uint8 [H, W, 3] (grayscale expanded, alpha dropped)."""
    # channels=3 and no animations: the graph knows the shape [None, None, 3] before decoding.
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)
