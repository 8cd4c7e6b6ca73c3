"""The fixed-resolution augmentation and normalisation (figkd_jax.data.transforms) against their
references: torchvision's RandomCrop(padding) + RandomHorizontalFlip (NumPy from their
definition) and PIL's rotate (PIL itself). Both input paths run these functions, so each is
tested once, here; no TensorFlow needed."""

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
import scipy.stats

from figkd_jax.data import rotation, transforms


def test_pad_crop_flip_offsets_cover_exactly_the_padded_range():
    # One column more than it reads, as in the strong view (train_batch passes its longer rows):
    # only the first PAD_CROP_FLIP_DRAWS count.
    draws = np.random.default_rng(0).random((4000, transforms.PAD_CROP_FLIP_DRAWS + 1), np.float32)
    # The ends of the range, and a flip draw of exactly 1/2: torchvision flips when u < 1/2.
    draws[:3] = [[0.0, 0.0, 0.0, 0.9], [np.nextafter(np.float32(1), 0)] * 4, [0.5, 0.5, 0.5, 0.1]]
    rows, cols, flips = transforms.sample_pad_crop_flip(jnp.asarray(draws), pad=4, flip=True)
    assert rows.dtype == cols.dtype == jnp.int32  # offsets for dynamic_slice
    assert sorted(set(np.asarray(rows))) == list(range(9))
    assert sorted(set(np.asarray(cols))) == list(range(9))
    # torch.randint(0, 2 * pad + 1) from a uniform u: floor(u * (2 * pad + 1)).
    np.testing.assert_array_equal(rows, np.floor(draws[:, 0] * 9).astype(np.int32))
    np.testing.assert_array_equal(cols, np.floor(draws[:, 1] * 9).astype(np.int32))
    np.testing.assert_array_equal(flips, draws[:, 2] < 0.5)
    assert 0.45 < np.asarray(flips).mean() < 0.55
    _, _, no_flips = transforms.sample_pad_crop_flip(jnp.asarray(draws), pad=4, flip=False)
    assert not np.asarray(no_flips).any()


def test_pad_crop_flip_pixels_are_torchvisions_random_crop_then_flip():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (16, 6, 5, 3), dtype=np.uint8)
    rows, cols = rng.integers(0, 3, 16), rng.integers(0, 3, 16)
    flips = rng.random(16) < 0.5
    ours = jax.jit(transforms.pad_crop_flip, static_argnums=4)(images, rows, cols, flips, 1)
    # RandomCrop(padding=1) on a PIL image: zero-pad in pixel space, then crop at (row, col).
    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)])
    for b in range(16):
        expected = padded[b, rows[b] : rows[b] + 6, cols[b] : cols[b] + 5]
        np.testing.assert_array_equal(ours[b], expected[:, ::-1] if flips[b] else expected)
    assert ours.dtype == np.uint8


def test_normalize_is_the_published_formula_and_padding_reads_minus_mean_over_std():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    images = np.random.default_rng(1).integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    ours = np.asarray(jax.jit(transforms.normalize, static_argnums=(1, 2))(images, mean, std))
    expected = (images / 255.0 - np.asarray(mean)) / np.asarray(std)  # float64
    # Float32 constants and two float32 roundings: a few ulps of |x| <= 2.5 / 0.2.
    np.testing.assert_allclose(ours, expected, rtol=0, atol=8 * np.finfo(np.float32).eps * 12.5)
    # A promise, on every backend: the unfused float32 multiply, then add.
    scale, shift = transforms.normalization(mean, std)
    np.testing.assert_array_equal(ours, images.astype(np.float32) * scale + shift)
    zeros = np.asarray(transforms.normalize(np.zeros((2, 3), np.uint8), mean, std))
    np.testing.assert_allclose(zeros, np.broadcast_to(-np.divide(mean, std), (2, 3)), rtol=1e-6)
    half = transforms.normalize(images, mean, std, "bfloat16")
    assert half.dtype == jnp.bfloat16
    np.testing.assert_array_equal(half, ours.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16"):
        transforms.normalize(images, mean, std, "float16")
    with pytest.raises(ValueError, match="normalize needs uint8 pixels, got float32"):
        transforms.normalize(images.astype(np.float32), mean, std)


def test_normalization_constants_are_float64_arithmetic_whatever_the_statistics_dtype():
    # Statistics given in float32 (as read from a file) give the constants of their float64
    # values: 1 / (255 * std) in float32 arithmetic rounds twice and moves the last bit.
    rng = np.random.default_rng(0)
    mean, std = rng.uniform(0.2, 0.6, 64).astype(np.float32), rng.uniform(0.1, 0.5, 64)
    std = std.astype(np.float32)
    scale, shift = transforms.normalization(mean, std)
    scale64, shift64 = transforms.normalization(mean.astype(np.float64), std.astype(np.float64))
    np.testing.assert_array_equal(scale, scale64)
    np.testing.assert_array_equal(shift, shift64)
    assert scale.dtype == shift.dtype == np.float32
    assert np.any((1 / (255 * std)).astype(np.float32) != scale)


def test_the_step_normalises_uint8_batches_and_zeroes_their_padding():
    # normalize_batch, in the jitted step, finishes the uint8 streams (ImageNet's): the dataset's
    # statistics, float32 unless told, padded examples (mask False) exactly 0 as the host
    # pipelines yield them. A float batch was normalised on the host and passes untouched.
    from figkd_jax.data.registry import get_info

    info = get_info("imagenet2012")
    images = np.random.default_rng(7).integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    mask = np.array([True, False, True])
    batch = {"image": images, "label": np.arange(3, dtype=np.int32), "mask": mask}
    expected = np.asarray(transforms.normalize(images, info.mean, info.std))
    got = jax.jit(transforms.normalize_batch, static_argnums=(1, 2))(batch, info, "float32")
    default = transforms.normalize_batch(batch, info)
    for normalised in (got, default):
        assert sorted(normalised) == ["image", "label", "mask"]
        assert normalised["image"].dtype == jnp.float32
        np.testing.assert_array_equal(normalised["image"][mask], expected[mask])
        assert np.all(np.asarray(normalised["image"])[~mask] == 0)
        np.testing.assert_array_equal(normalised["label"], batch["label"])
        np.testing.assert_array_equal(normalised["mask"], mask)
    np.testing.assert_array_equal(
        transforms.normalize_batch({"image": images}, info)["image"], expected
    )
    half = transforms.normalize_batch(batch, info, "bfloat16")["image"]
    assert half.dtype == jnp.bfloat16
    np.testing.assert_array_equal(half[mask], expected[mask].astype(jnp.bfloat16))
    assert transforms.normalized_images(images, info).dtype == jnp.float32
    assert transforms.normalized_images(images, info, "bfloat16").dtype == jnp.bfloat16
    floats = {"image": np.ones((2, 4, 4, 3), np.float32), "mask": np.array([True, False])}
    assert transforms.normalize_batch(floats, info)["image"] is floats["image"]
    assert transforms.normalized_images(floats["image"], info) is floats["image"]


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
    draws = np.random.default_rng(seed).random((count, rotation.ROTATE_FLIP_DRAWS), np.float32)
    # The ends of the angle range, no rotation (which PIL special-cases), each with a flip and
    # with a flip draw of exactly 1/2, which does not flip (torchvision flips when u < 1/2).
    edges = [0.0, 0.5, np.nextafter(np.float32(1), 0)]
    draws[: 2 * len(edges)] = [[u, f] for u in edges for f in (0.25, 0.5)]
    return draws


def _rotate_flip(images, draws, degrees, flip=True):
    affine = rotation.affine_from_draws(draws[:, 0], degrees, *images.shape[1:3])
    flips = transforms.sample_flips(jnp.asarray(draws), flip)
    return np.asarray(jax.jit(transforms.rotate_flip)(images, affine, flips)), np.asarray(flips)


@pytest.mark.parametrize("height, width", [(64, 64), (7, 10), (9, 12)])
def test_rotate_flip_equals_torchvision_on_pil_images(height, width):
    # Exact: the coefficients are PIL's own float64 arithmetic and the pixels its int32 one.
    draws = _rotation_draws(40, seed=height)
    images = np.random.default_rng(1).integers(1, 256, (len(draws), height, width, 3), np.uint8)
    ours, _ = _rotate_flip(images, draws, 20.0)
    for image, row, got in zip(images, draws, ours, strict=True):
        np.testing.assert_array_equal(got, _torchvision_rotate_flip(image, row, 20.0))
    _, no_flips = _rotate_flip(images, draws, 20.0, flip=False)
    assert not no_flips.any()


def test_rotation_moves_pixels_and_fills_corners_with_zero():
    draws = _rotation_draws(40, seed=2)
    draws[:, 1] = 0.75  # no flips
    images = np.random.default_rng(3).integers(1, 256, (len(draws), 64, 64, 3), np.uint8)
    ours, _ = _rotate_flip(images, draws, 20.0)
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


def test_variable_resolution_datasets_are_refused():
    from figkd_jax.data.registry import get_info

    info = get_info("stanford_dogs")
    with pytest.raises(ValueError, match="needs a fixed-resolution dataset"):
        transforms.train_batch(jnp.zeros((1, 8, 8, 3), jnp.uint8), jnp.zeros(1), None, info=info)


def test_train_batch_is_its_datasets_augmentation_then_normalisation():
    # Each part is tested against its reference above; this pins how train_batch wires them:
    # which draws go where, the dataset's parameters, the strong view's own draws.
    from figkd_jax.data.randaugment import STRONG_VIEW_DRAWS
    from figkd_jax.data.registry import get_info

    cifar, tiny = get_info("cifar100"), get_info("tiny_imagenet")
    rng = np.random.default_rng(5)
    images = rng.integers(1, 256, (8, 9, 9, 3), dtype=np.uint8)
    labels = np.arange(8, dtype=np.int32)
    draws = rng.random((8, transforms.PAD_CROP_FLIP_DRAWS), np.float32)
    strong_draws = rng.random((8, STRONG_VIEW_DRAWS), np.float32)
    rotation_draws = rng.random((8, rotation.ROTATE_FLIP_DRAWS), np.float32)
    affine = rotation.affine_from_draws(rotation_draws[:, 0], tiny.augment.degrees, 9, 9)

    @jax.jit
    def batches(images, labels, draws, strong_draws, rotation_draws, affine):
        return {
            "cifar": transforms.train_batch(
                images, labels, draws, strong_draws=strong_draws, info=cifar
            ),
            "cifar_bf16": transforms.train_batch(
                images, labels, draws, info=cifar, dtype="bfloat16"
            ),
            "tiny": transforms.train_batch(
                images, labels, rotation_draws, affine=affine, info=tiny
            ),
        }

    got = batches(images, labels, draws, strong_draws, rotation_draws, affine)
    rows, cols, flips = transforms.sample_pad_crop_flip(draws, 4, True)
    cropped = transforms.pad_crop_flip(images, rows, cols, flips, 4)
    expected_cifar = transforms.normalize(cropped, cifar.mean, cifar.std)
    strong = transforms.pad_crop_flip(
        images, *transforms.sample_pad_crop_flip(strong_draws, 4, True), 4
    )
    rotated = transforms.rotate_flip(images, affine, transforms.sample_flips(rotation_draws, True))
    assert sorted(got["cifar"]) == ["image", "label", "strong_draws", "strong_image"]
    np.testing.assert_array_equal(got["cifar"]["image"], expected_cifar)
    np.testing.assert_array_equal(got["cifar"]["strong_image"], strong)
    np.testing.assert_array_equal(got["cifar"]["strong_draws"], strong_draws)
    assert (
        got["cifar_bf16"]["image"].dtype == jnp.bfloat16 and "strong_image" not in got["cifar_bf16"]
    )
    np.testing.assert_array_equal(
        got["cifar_bf16"]["image"], np.asarray(expected_cifar).astype(jnp.bfloat16)
    )
    assert sorted(got["tiny"]) == ["image", "label"]
    np.testing.assert_array_equal(
        got["tiny"]["image"], transforms.normalize(rotated, tiny.mean, tiny.std)
    )
    for batch in got.values():
        np.testing.assert_array_equal(batch["label"], labels)
    # The draws tell rows from columns and flip some of the images, not all.
    assert not np.array_equal(rows, cols) and 0 < np.sum(flips) < len(flips)
    with pytest.raises(ValueError, match="a strong view \\(MLKD\\) needs a pad-crop-flip dataset"):
        transforms.train_batch(
            images, labels, rotation_draws, affine=affine, strong_draws=strong_draws, info=tiny
        )
