"""MLKD's strong view against Pillow, which the authors' RandAugment runs on."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from figkd_jax.data import randaugment

# The authors' operations (mdistiller/dataset/cifar100.py of the MLKD and logit-standardization
# repositories), each on a PIL image with the magnitude v.
PILLOW_OPS = {
    "auto_contrast": lambda im, v: ImageOps.autocontrast(im),
    "brightness": lambda im, v: ImageEnhance.Brightness(im).enhance(v),
    "color": lambda im, v: ImageEnhance.Color(im).enhance(v),
    "contrast": lambda im, v: ImageEnhance.Contrast(im).enhance(v),
    "equalize": lambda im, v: ImageOps.equalize(im),
    "identity": lambda im, v: im,
    "posterize": lambda im, v: ImageOps.posterize(im, max(1, int(v))),
    "rotate": lambda im, v: im.rotate(v),
    "sharpness": lambda im, v: ImageEnhance.Sharpness(im).enhance(v),
    "shear_x": lambda im, v: im.transform(im.size, Image.AFFINE, (1, v, 0, 0, 1, 0)),
    "shear_y": lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, 0, v, 1, 0)),
    "solarize": lambda im, v: ImageOps.solarize(im, v),
    "translate_x": lambda im, v: im.transform(
        im.size, Image.AFFINE, (1, 0, v * im.size[0], 0, 1, 0)
    ),
    "translate_y": lambda im, v: im.transform(
        im.size, Image.AFFINE, (1, 0, 0, 0, 1, v * im.size[1])
    ),
}
# Operations whose tables are exact integers on both sides: equal, always. (AutoContrast's
# table is the exact quotient here and a double-precision product in Pillow, which can fall
# one below an exact integer.)
EXACT = {"equalize", "identity", "posterize", "solarize"}


def pillow_cutout(image, fraction, x_draw, y_draw):
    """The code's Cutout/CutoutAbs with its np.random.uniform(w) replaced by w + (1 - w) u."""
    if fraction <= 0:
        return image
    v = fraction * image.size[0]
    w, h = image.size
    x0 = int(max(0, w + (1 - w) * x_draw - v / 2.0))
    y0 = int(max(0, h + (1 - h) * y_draw - v / 2.0))
    image = image.copy()
    ImageDraw.Draw(image).rectangle((x0, y0, min(w, x0 + v), min(h, y0 + v)), (125, 123, 114))
    return image


def sample_images(count=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (count // 2, size, size, 3), dtype=np.uint8)
    # Smooth, low-contrast images too: their histograms have gaps and narrow ranges.
    steps = rng.integers(0, 6, (count - count // 2, size, size, 3))
    smooth = (40 + np.cumsum(steps, axis=2) // 2).astype(np.uint8)
    return np.concatenate([noise, smooth])


def test_every_operation_matches_pillow():
    images = sample_images()
    rng = np.random.default_rng(1)
    apply = jax.jit(jax.vmap(randaugment.apply_op, in_axes=(0, None, 0)))
    for index, (name, low, high) in enumerate(randaugment.OPS):
        magnitudes = (low + (high - low) * rng.random(len(images))).astype(np.float32)
        ours = np.asarray(apply(images, index, magnitudes)).astype(int)
        reference = np.stack(
            [
                np.asarray(PILLOW_OPS[name](Image.fromarray(image), float(magnitude)))
                for image, magnitude in zip(images, magnitudes, strict=True)
            ]
        ).astype(int)
        difference = np.abs(ours - reference)
        if name in EXACT:
            np.testing.assert_array_equal(ours, reference, err_msg=name)
        else:
            # float32 or exact integers here, double or float with FMA in Pillow: a value
            # within rounding of an integer may truncate to its neighbour (one gray level), an
            # affine sample may move by one pixel. Blends and affine samples need a
            # coincidence within ~1e-6 (rare); AutoContrast differs wherever its quotient is
            # an exact integer that Pillow's double rounds down (a few per mille of pixels).
            assert np.mean(difference > 0) < 0.005, name
            if name not in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
                assert difference.max() <= 1, name


def test_cutout_matches_the_authors_code():
    images = sample_images(count=6)
    cases = [(0.0, 0.3, 0.3), (0.5 * 0.999, 0.0, 0.999), (0.17, 0.5, 0.1), (0.33, 0.999, 0.0)]
    cases += [(0.5 * u, x, y) for u, x, y in np.random.default_rng(2).random((12, 3))]
    cut = jax.jit(randaugment.cutout)
    for fraction, x_draw, y_draw in cases:
        for image in images[:2]:
            ours = cut(image, np.float32(fraction), np.float32(x_draw), np.float32(y_draw))
            reference = pillow_cutout(Image.fromarray(image), fraction, x_draw, y_draw)
            np.testing.assert_array_equal(ours, np.asarray(reference))


def test_rand_augment_matches_the_authors_transform():
    images = sample_images(count=16, seed=3)
    draws = np.random.default_rng(4).random((16, randaugment.STRONG_VIEW_DRAWS)).astype(np.float32)
    params = jax.jit(randaugment.sample_rand_augment)(draws)
    ours = np.asarray(jax.jit(randaugment.rand_augment)(images, params)).astype(int)
    names = [name for name, _, _ in randaugment.OPS]
    for b, image in enumerate(images):
        # RandAugment.__call__ with random.choices / random.random replaced by the draws.
        pil = Image.fromarray(image)
        for k in range(randaugment.NUM_OPS):
            op = int(np.floor(draws[b, 3 + 2 * k] * 14))
            low, high = randaugment.OPS[op][1:]
            assert int(params["ops"][b, k]) == op
            pil = PILLOW_OPS[names[op]](pil, low + (high - low) * float(draws[b, 4 + 2 * k]))
        pil = pillow_cutout(pil, 0.5 * float(draws[b, 7]), float(draws[b, 8]), float(draws[b, 9]))
        reference = np.asarray(pil).astype(int)
        assert np.mean(ours[b] != reference) < 0.005


def test_parameters_cover_the_published_ranges():
    draws = jnp.asarray(np.random.default_rng(5).random((4000, 10)), jnp.float32)
    params = randaugment.sample_rand_augment(draws)
    ops = np.asarray(params["ops"])
    assert set(np.unique(ops)) == set(range(14))
    lows = np.array([op[1] for op in randaugment.OPS])[ops]
    highs = np.array([op[2] for op in randaugment.OPS])[ops]
    magnitudes = np.asarray(params["magnitudes"])
    assert np.all((magnitudes >= lows - 1e-6) & (magnitudes <= highs + 1e-6))
    assert float(params["cutout"].min()) >= 0.0 and float(params["cutout"].max()) < 0.5
    # A draw just below 1 picks the last operation, never an index past it.
    edge = randaugment.sample_rand_augment(jnp.full((1, 10), np.nextafter(1, 0), jnp.float32))
    assert int(edge["ops"].max()) == 13


@pytest.mark.parametrize("op", ["rotate", "shear_x", "translate_y"])
def test_geometric_operations_fill_black(op):
    white = np.full((8, 8, 3), 255, np.uint8)
    magnitude = {"rotate": 30.0, "shear_x": 0.3, "translate_y": 0.3}[op]
    index = [name for name, _, _ in randaugment.OPS].index(op)
    out = np.asarray(randaugment.apply_op(white, index, magnitude))
    assert out.min() == 0 and out.max() == 255
    np.testing.assert_array_equal(
        out, np.asarray(PILLOW_OPS[op](Image.fromarray(white), magnitude))
    )


def test_rand_augment_needs_rgb_uint8_images():
    params = randaugment.sample_rand_augment(jnp.zeros((2, randaugment.STRONG_VIEW_DRAWS)))
    with pytest.raises(
        ValueError, match=re.escape("uint8 RGB images [B, H, W, 3], got uint8 [2, 8, 8, 1]")
    ):
        randaugment.rand_augment(np.zeros((2, 8, 8, 1), np.uint8), params)
    with pytest.raises(ValueError, match="got float32"):
        randaugment.rand_augment(np.zeros((2, 8, 8, 3), np.float32), params)
