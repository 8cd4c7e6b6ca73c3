"""The fine-grained datasets' host transforms against torchvision's definitions
(figkd_jax.data.augment)."""

import io
import math

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from figkd_jax.data import augment, transforms


def torchvision_resized_crop_params(draws, height, width, scale, ratio):
    """torchvision RandomResizedCrop.get_params, with its random numbers taken from draws."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for attempt in range(10):
        target_area = area * (scale[0] + draws[attempt] * (scale[1] - scale[0]))
        aspect = math.exp(log_ratio[0] + draws[10 + attempt] * (log_ratio[1] - log_ratio[0]))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = min(math.floor(draws[20] * (height - h + 1)), height - h)
            left = min(math.floor(draws[21] * (width - w + 1)), width - w)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def test_normalize_uses_the_shared_constants():
    # The fine-grained crops' TF normalisation: transforms.normalization's multiply-add.
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    images = np.random.default_rng(0).integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    scale, shift = transforms.normalization(mean, std)
    np.testing.assert_allclose(
        augment.normalize(tf.constant(images), mean, std).numpy(),
        images.astype(np.float32) * scale + shift,
        rtol=np.finfo(np.float32).eps,  # fused or not: one rounding apart
        atol=np.finfo(np.float32).eps,
    )


# Images of a few pixels too, where crops of width or height 0 (refused) and 1 (taken) occur.
@pytest.mark.parametrize(
    "height, width", [(375, 500), (500, 333), (40, 12), (7, 90), (1, 1), (2, 3), (3, 2)]
)
def test_resized_crop_params_match_torchvision(height, width):
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    draws = np.random.default_rng(height).random((60, augment.RESIZED_CROP_FLIP_DRAWS))
    for row in draws:
        got = augment.sample_resized_crop(tf.constant(row), height, width, scale, ratio)
        expected = torchvision_resized_crop_params(row, height, width, scale, ratio)
        assert tuple(int(v) for v in got) == expected
        top, left, h, w = expected
        assert 0 <= top <= height - h and 0 <= left <= width - w


@pytest.mark.parametrize(
    "height, width, expected",
    # area fraction > 1 never fits, so torchvision falls back to the central crop, clamped to
    # the ratio range: (top, left, height, width).
    [(100, 400, (0, 133, 100, 133)), (400, 100, (133, 0, 133, 100)), (90, 100, (0, 0, 90, 100))],
)
def test_resized_crop_falls_back_to_the_central_crop(height, width, expected):
    draws = tf.fill([augment.RESIZED_CROP_FLIP_DRAWS], 0.5)
    got = augment.sample_resized_crop(draws, height, width, (1.5, 2.0), (3 / 4, 4 / 3))
    assert tuple(int(v) for v in got) == expected


def test_resize_center_crop_geometry():
    # Columns are numbered, so the crop's left edge can be read off after resizing 300x400 to
    # 256x341 (torchvision truncates 341.33) and cropping at round((341 - 224) / 2) = 58.
    image = tf.cast(tf.tile(tf.range(400)[None, :, None], [300, 1, 3]), tf.uint8)
    out = augment.resize_center_crop(image, resize=256, crop=224)
    assert out.shape == (224, 224, 3)
    resized = tf.image.resize(image, [256, 341], method="bilinear", antialias=True)
    np.testing.assert_allclose(out.numpy(), resized[16:240, 58:282].numpy())


@pytest.mark.parametrize("box", [(3, 4, 20, 10), (0, 0, 30, 40), (7, 25, 23, 15)])
def test_resized_crop_is_pils_bilinear_resize_of_the_box(box):
    # torchvision's resized_crop on a PIL image: crop the box, then PIL's bilinear resize
    # (antialiased when it shrinks). Noise, so a box one pixel off or a resize without
    # antialiasing moves pixels by tens of grey levels; PIL rounds to uint8 after each of its
    # two passes (<= 1 grey level).
    pixels = np.random.default_rng(3).integers(0, 256, (30, 40, 3), np.uint8)
    top, left, height, width = box
    out = augment.resized_crop(tf.constant(pixels), top, left, height, width, size=16)
    assert out.shape == (16, 16, 3) and out.dtype == tf.float32
    crop = PIL.Image.fromarray(pixels[top : top + height, left : left + width])
    reference = np.asarray(crop.resize((16, 16), PIL.Image.Resampling.BILINEAR))
    np.testing.assert_allclose(out.numpy(), reference, rtol=0, atol=1 + 1e-3)


@pytest.mark.parametrize("mode, image_format", [("L", "JPEG"), ("RGB", "PNG"), ("P", "GIF")])
def test_decode_image_gives_three_channels(mode, image_format):
    buffer = io.BytesIO()
    PIL.Image.new(mode, (7, 5)).save(buffer, format=image_format)
    assert augment.decode_image(tf.constant(buffer.getvalue())).shape == (5, 7, 3)
    # In a tf.data graph the channel count is known before any image is decoded: the crops,
    # resizes and batches that follow need it.
    dataset = tf.data.Dataset.from_tensors(buffer.getvalue()).map(augment.decode_image)
    assert dataset.element_spec.shape.as_list() == [None, None, 3]
