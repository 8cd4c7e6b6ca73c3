"""Augmentation ops against torchvision's definitions (figkd_jax.data.augment)."""

import io
import math

import numpy as np
import PIL.Image
import pytest
import scipy.stats
import tensorflow as tf

from figkd_jax.data import augment, rotation


def _torchvision_resized_crop_params(draws, height, width, scale, ratio):
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


def test_pad_crop_flip_offsets_cover_exactly_the_padded_range():
    draws = tf.random.stateless_uniform([4000, augment.PAD_CROP_FLIP_DRAWS], seed=[0, 1])
    rows, cols, flips = augment.sample_pad_crop_flip(draws, pad=4, flip=True)
    assert sorted(set(rows.numpy())) == list(range(9))
    assert sorted(set(cols.numpy())) == list(range(9))
    assert 0.45 < flips.numpy().mean() < 0.55
    _, _, no_flips = augment.sample_pad_crop_flip(draws, pad=4, flip=False)
    assert not no_flips.numpy().any()


def test_pad_crop_flip_pixels():
    images = tf.constant(np.random.default_rng(0).integers(1, 256, (2, 6, 5, 3)), tf.uint8)
    rows, cols = tf.constant([1, 0]), tf.constant([2, 0])
    kept = augment.pad_crop_flip(images, rows, cols, tf.constant([False, False]), pad=1).numpy()
    flipped = augment.pad_crop_flip(images, rows, cols, tf.constant([True, True]), pad=1).numpy()
    np.testing.assert_array_equal(flipped, kept[:, :, ::-1])
    padded = np.pad(images.numpy(), [(0, 0), (1, 1), (1, 1), (0, 0)])
    np.testing.assert_array_equal(kept[0], padded[0, 1:7, 2:7])
    np.testing.assert_array_equal(kept[1], padded[1, 0:6, 0:5])
    # Zero padding happens in pixel space: after normalisation it reads -mean/std.
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    normalized = augment.normalize(kept[1], mean, std).numpy()
    np.testing.assert_allclose(normalized[0], np.broadcast_to(-np.divide(mean, std), (5, 3)))
    np.testing.assert_allclose(normalized[1:, 0], np.broadcast_to(-np.divide(mean, std), (5, 3)))


@pytest.mark.parametrize("height, width", [(375, 500), (500, 333), (40, 12), (7, 90)])
def test_resized_crop_params_match_torchvision(height, width):
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    draws = np.random.default_rng(height).random((60, augment.RESIZED_CROP_FLIP_DRAWS))
    for row in draws:
        got = augment.sample_resized_crop(tf.constant(row), height, width, scale, ratio)
        expected = _torchvision_resized_crop_params(row, height, width, scale, ratio)
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


def test_resized_crop_output():
    image = tf.fill([30, 40, 3], tf.constant(200, tf.uint8))
    out = augment.resized_crop(image, 3, 4, 20, 10, size=16)
    assert out.shape == (16, 16, 3) and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), 200.0)


@pytest.mark.parametrize("mode, image_format", [("L", "JPEG"), ("RGB", "PNG"), ("P", "GIF")])
def test_decode_image_gives_three_channels(mode, image_format):
    buffer = io.BytesIO()
    PIL.Image.new(mode, (7, 5)).save(buffer, format=image_format)
    assert augment.decode_image(tf.constant(buffer.getvalue())).shape == (5, 7, 3)


def _torchvision_rotate_flip(image: np.ndarray, draws, degrees: float) -> np.ndarray:
    """torchvision's RandomRotation(degrees) (defaults: NEAREST, expand=False, center=None,
    fill=0) then RandomHorizontalFlip() on a PIL image, with their random numbers taken from
    draws: ``torch.empty(1).uniform_(-degrees, degrees)`` is ``-degrees + 2 * degrees * u``,
    the flip is ``u < 0.5``. PIL does the pixel work, as in the reference."""
    angle = -degrees + 2 * degrees * float(draws[0])
    out = PIL.Image.fromarray(image).rotate(angle, PIL.Image.NEAREST, expand=False, fillcolor=0)
    if draws[1] < 0.5:
        out = out.transpose(PIL.Image.FLIP_LEFT_RIGHT)
    return np.asarray(out)


def _rotation_draws(count: int, seed: int) -> np.ndarray:
    draws = np.random.default_rng(seed).random((count, 2), dtype=np.float32)
    # The ends of the angle range, no rotation (which PIL special-cases), each with both flips.
    edges = [0.0, 0.5, np.nextafter(np.float32(1), 0)]
    draws[: 2 * len(edges)] = [[u, f] for u in edges for f in (0.25, 0.75)]
    return draws


@pytest.mark.parametrize("height, width", [(64, 64), (7, 10)])
def test_rotate_flip_equals_torchvision_on_pil_images(height, width):
    # Exact: the coefficients are PIL's own float64 arithmetic and the pixels its int32 one.
    draws = _rotation_draws(40, seed=height)
    images = np.random.default_rng(1).integers(1, 256, (len(draws), height, width, 3), np.uint8)
    affine, flips = augment.sample_rotate_flip(tf.constant(draws), 20.0, True, height, width)
    ours = augment.rotate_flip(tf.constant(images), affine, flips).numpy()
    for image, row, got in zip(images, draws, ours, strict=True):
        np.testing.assert_array_equal(got, _torchvision_rotate_flip(image, row, 20.0))
    _, no_flips = augment.sample_rotate_flip(tf.constant(draws), 20.0, False, height, width)
    assert not no_flips.numpy().any()


def test_rotation_moves_pixels_and_fills_corners_with_zero():
    draws = _rotation_draws(40, seed=2)
    draws[:, 1] = 0.75  # no flips
    images = np.random.default_rng(3).integers(1, 256, (len(draws), 64, 64, 3), np.uint8)
    affine, flips = augment.sample_rotate_flip(tf.constant(draws), 20.0, True, 64, 64)
    ours = augment.rotate_flip(tf.constant(images), affine, flips).numpy()
    # Beyond a degree a 64x64 image's corners move by more than a pixel: 0 (in pixel space;
    # the images have no 0) fills them. At no rotation the image is unchanged.
    angles = rotation.angles(draws[:, 0], 20.0)
    turned = np.abs(angles) > 1
    assert turned.sum() > len(draws) // 2
    assert (ours[turned] == 0).all(axis=-1).any(axis=(1, 2)).all()
    assert (ours[turned] != images[turned]).any(axis=(1, 2, 3)).all()
    np.testing.assert_array_equal(ours[angles == 0], images[angles == 0])


def test_rotation_angles_cover_the_range_uniformly():
    angles = rotation.angles(np.random.default_rng(0).random(20_000), 20.0)
    assert -20.0 <= angles.min() < -19.9 and 19.9 < angles.max() < 20.0
    assert scipy.stats.kstest(angles, scipy.stats.uniform(-20, 40).cdf).pvalue > 1e-3
