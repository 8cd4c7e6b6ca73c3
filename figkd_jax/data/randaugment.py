"""MLKD's strong view: the FixMatch-style RandAugment of its authors' code, in JAX, per example.

MLKD (Jin et al., CVPR 2023) trains on two views of each batch. Its data code
(``get_cifar100_train_transform_strong`` in the authors' ``mdistiller/dataset/cifar100.py``,
the same in the logit-standardization repo) makes the weak view with ``RandomCrop(32,
padding=4)`` + ``RandomHorizontalFlip`` and the strong view with an independent crop and flip
followed by ``RandAugment(2, 10)``:

* two operations drawn with replacement (``random.choices``) from 14: AutoContrast,
  Brightness, Color, Contrast, Equalize, Identity, Posterize, Rotate, Sharpness, ShearX,
  ShearY, Solarize, TranslateX, TranslateY; each with a magnitude uniform in its range
  (``OPS``; the ``10`` of ``RandAugment(2, 10)`` is unused by that code);
* then Cutout: a square of side ``u * 0.5 * W`` pixels (``u`` uniform) filled with
  (125, 123, 114), at a corner drawn by ``np.random.uniform(W)`` -- which is uniform on
  ``(1, W]``, not ``[0, W)``, since numpy reads it as ``low=W, high=1``; followed here.

The operations act on uint8 PIL images; this module reproduces Pillow's arithmetic (its
lookup tables, ``Image.blend`` with truncation, the 16.16 fixed-point nearest-neighbour affine
transform of ``Image.transform``/``rotate``, ``ImageDraw.rectangle`` with inclusive corners).
Tests compare every operation with Pillow itself. Where Pillow computes in double precision
and this module in float32 or exact integers (AutoContrast's scale, the blend factors, the
rotation matrix), a pixel can differ by one gray level, or an affine sample by one pixel,
when the exact value lies within float rounding of an integer.

Randomness enters only through ``STRONG_VIEW_DRAWS`` uniform draws per example, derived like
every augmentation here from (seed, epoch, example index).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# (name, low, high) of the magnitude of each operation, in the order of the authors'
# augment_list(); an operation's index is its position here.
OPS = (
    ("auto_contrast", 0.0, 1.0),
    ("brightness", 0.05, 0.95),
    ("color", 0.05, 0.95),
    ("contrast", 0.05, 0.95),
    ("equalize", 0.0, 1.0),
    ("identity", 0.0, 1.0),
    ("posterize", 4.0, 8.0),
    ("rotate", -30.0, 30.0),
    ("sharpness", 0.05, 0.95),
    ("shear_x", -0.3, 0.3),
    ("shear_y", -0.3, 0.3),
    ("solarize", 0.0, 256.0),
    ("translate_x", -0.3, 0.3),
    ("translate_y", -0.3, 0.3),
)
NUM_OPS = 2
CUTOUT_FILL = (125, 123, 114)
STRONG_VIEW_DRAWS = 3 + 2 * NUM_OPS + 3
"""Draws per example: crop row, crop column, flip; per operation its choice and magnitude;
Cutout's size, x and y."""


def sample_rand_augment(draws: jax.Array) -> dict[str, jax.Array]:
    """Draws float32 [B, >= 10] in [0, 1) -> the parameters of RandAugment + Cutout.

    Columns 3.. of ``draws`` are used (0-2 are the crop and flip of the strong view):
    ``[3 + 2k]`` picks operation ``k`` (``floor(u * 14)``, as ``random.choices``), ``[4 + 2k]``
    its magnitude ``low + (high - low) * u``; ``[7]`` Cutout's size fraction ``0.5 * u``,
    ``[8]`` and ``[9]`` its corner draws.

    Returns: {"ops": int32 [B, 2], "magnitudes": float32 [B, 2], "cutout": float32 [B],
    "cutout_x": float32 [B], "cutout_y": float32 [B]} (the last two still uniforms).
    """
    choice = draws[:, 3 : 3 + 2 * NUM_OPS : 2]
    ops = jnp.minimum(jnp.floor(choice * len(OPS)).astype(jnp.int32), len(OPS) - 1)
    low = jnp.asarray([op[1] for op in OPS], jnp.float32)[ops]
    high = jnp.asarray([op[2] for op in OPS], jnp.float32)[ops]
    magnitudes = low + (high - low) * draws[:, 4 : 4 + 2 * NUM_OPS : 2]
    first_cutout = 3 + 2 * NUM_OPS
    return {
        "ops": ops,
        "magnitudes": magnitudes,
        "cutout": 0.5 * draws[:, first_cutout],
        "cutout_x": draws[:, first_cutout + 1],
        "cutout_y": draws[:, first_cutout + 2],
    }


def rand_augment(images: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """The two operations then Cutout on uint8 images [B, H, W, 3] -> uint8 [B, H, W, 3]."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != jnp.uint8:
        raise ValueError(
            f"RandAugment works on uint8 RGB images [B, H, W, 3], got {images.dtype} "
            f"{list(images.shape)}"
        )

    def one(image, ops, magnitudes, cutout_fraction, cutout_x, cutout_y):
        for k in range(NUM_OPS):
            image = apply_op(image, ops[k], magnitudes[k])
        return cutout(image, cutout_fraction, cutout_x, cutout_y)

    return jax.vmap(one)(
        images,
        params["ops"],
        params["magnitudes"],
        params["cutout"],
        params["cutout_x"],
        params["cutout_y"],
    )


def apply_op(image: jax.Array, op: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Operation ``OPS[op]`` with ``magnitude`` on one uint8 image [H, W, 3] (op may be traced)."""
    branches = [_OP_FUNCTIONS[name] for name, _, _ in OPS]
    return jax.lax.switch(op, branches, image, jnp.float32(magnitude))


# --------------------------------------------------------------------------
# Operations on one uint8 image [H, W, 3] with a float32 magnitude.


def auto_contrast(image, _):
    """``ImageOps.autocontrast``: each channel stretched from [min, max] to [0, 255].

    The table is the exact ``floor(255 (i - lo) / (hi - lo))``; Pillow evaluates ``i * scale +
    offset`` in double, which can land just below an exact integer."""
    values = image.astype(jnp.int32)
    lo = jnp.min(values, axis=(0, 1))
    hi = jnp.max(values, axis=(0, 1))
    span = jnp.maximum(hi - lo, 1)
    stretched = jnp.clip((values - lo) * 255 // span, 0, 255)
    return jnp.where(hi > lo, stretched, values).astype(jnp.uint8)


def equalize(image, _):
    """``ImageOps.equalize``: Pillow's histogram-equalisation table, in exact integers."""

    def table(channel):
        histogram = jnp.bincount(channel.ravel(), length=256)
        present = histogram > 0
        last = jnp.max(jnp.where(present, jnp.arange(256), -1))
        step = (jnp.sum(histogram) - histogram[last]) // 255
        safe_step = jnp.maximum(step, 1)
        cumulative = jnp.cumsum(histogram) - histogram  # pixels below each value
        lut = jnp.clip((safe_step // 2 + cumulative) // safe_step, 0, 255)
        identity = (jnp.sum(present) <= 1) | (step == 0)
        return jnp.where(identity, jnp.arange(256), lut)[channel]

    values = image.astype(jnp.int32)
    return jax.vmap(table, in_axes=2, out_axes=2)(values).astype(jnp.uint8)


def identity(image, _):
    return image


def posterize(image, magnitude):
    """``ImageOps.posterize`` with ``max(1, int(magnitude))`` bits kept."""
    bits = jnp.maximum(magnitude.astype(jnp.int32), 1)
    mask = 256 - jnp.left_shift(1, 8 - bits)
    return jnp.bitwise_and(image.astype(jnp.int32), mask).astype(jnp.uint8)


def solarize(image, threshold):
    """``ImageOps.solarize``: values at or above ``threshold`` inverted."""
    values = image.astype(jnp.int32)
    return jnp.where(values < threshold, values, 255 - values).astype(jnp.uint8)


def brightness(image, factor):
    """``ImageEnhance.Brightness``: a blend with black."""
    return _blend(jnp.zeros_like(image, jnp.int32), image, factor)


def color(image, factor):
    """``ImageEnhance.Color``: a blend with the image's grayscale (Pillow's ``L``)."""
    return _blend(jnp.broadcast_to(_luma(image)[..., None], image.shape), image, factor)


def contrast(image, factor):
    """``ImageEnhance.Contrast``: a blend with the mean gray level, rounded half up."""
    luma = _luma(image)
    count = luma.size
    mean = (2 * jnp.sum(luma) + count) // (2 * count)  # int(mean + 0.5), exactly
    return _blend(jnp.full(image.shape, mean, jnp.int32), image, factor)


def sharpness(image, factor):
    """``ImageEnhance.Sharpness``: a blend with ``ImageFilter.SMOOTH`` (3x3 kernel 1 1 1 / 1 5 1
    / 1 1 1 over 13, rounded; border pixels unfiltered, as Pillow)."""
    values = image.astype(jnp.int32)
    padded = jnp.pad(values, ((1, 1), (1, 1), (0, 0)))
    height, width = values.shape[:2]
    window = sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    weighted = window + 4 * values
    # The exact quotient is never within 1/26 of a rounding boundary, so the integer
    # rounding equals Pillow's float32 one.
    smooth = (2 * weighted + 13) // 26
    rows = jnp.arange(height)[:, None, None]
    cols = jnp.arange(width)[None, :, None]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    return _blend(jnp.where(interior, smooth, values), image, factor)


def rotate(image, degrees):
    """``Image.rotate(degrees)``: counter-clockwise about the centre, nearest, black fill."""
    height, width = image.shape[:2]
    theta = -jnp.deg2rad(degrees)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    cx, cy = width / 2.0, height / 2.0
    matrix = (
        cos,
        sin,
        cos * -cx + sin * -cy + cx,
        -sin,
        cos,
        -sin * -cx + cos * -cy + cy,
    )
    return _affine_fixed(image, matrix)


def shear_x(image, shear):
    """``Image.transform(AFFINE, (1, shear, 0, 0, 1, 0))``."""
    return _affine_fixed(image, (1.0, shear, 0.0, 0.0, 1.0, 0.0))


def shear_y(image, shear):
    """``Image.transform(AFFINE, (1, 0, 0, shear, 1, 0))``."""
    return _affine_fixed(image, (1.0, 0.0, 0.0, shear, 1.0, 0.0))


def translate_x(image, fraction):
    """``Image.transform(AFFINE, (1, 0, fraction * W, 0, 1, 0))``: output x reads input
    x + fraction * W."""
    width = image.shape[1]
    source = _nearest_index(jnp.arange(width) + 0.5 + fraction * width, width)
    return _gather(image, jnp.arange(image.shape[0])[:, None], source[None, :])


def translate_y(image, fraction):
    """``Image.transform(AFFINE, (1, 0, 0, 0, 1, fraction * H))``."""
    height = image.shape[0]
    source = _nearest_index(jnp.arange(height) + 0.5 + fraction * height, height)
    return _gather(image, source[:, None], jnp.arange(image.shape[1])[None, :])


def cutout(image, fraction, x_draw, y_draw):
    """The code's ``Cutout(img, fraction)``: nothing when ``fraction <= 0``; else a square of
    side ``v = fraction * W`` with corner ``(int(max(0, x - v/2)), int(max(0, y - v/2)))``,
    ``x = W + (1 - W) * x_draw`` (``np.random.uniform(W)``), filled to ``min(W, x0 + v)``
    inclusive (``ImageDraw.rectangle`` truncates the float corners)."""
    height, width = image.shape[:2]
    side = fraction * width
    x0 = jnp.floor(jnp.maximum(0.0, width + (1 - width) * x_draw - side / 2)).astype(jnp.int32)
    y0 = jnp.floor(jnp.maximum(0.0, height + (1 - height) * y_draw - side / 2)).astype(jnp.int32)
    x1 = jnp.floor(jnp.minimum(width, x0 + side)).astype(jnp.int32)
    y1 = jnp.floor(jnp.minimum(height, y0 + side)).astype(jnp.int32)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    inside = (fraction > 0) & (rows >= y0) & (rows <= y1) & (cols >= x0) & (cols <= x1)
    fill = jnp.asarray(CUTOUT_FILL, jnp.uint8)
    return jnp.where(inside[..., None], fill, image)


_OP_FUNCTIONS = {
    "auto_contrast": auto_contrast,
    "brightness": brightness,
    "color": color,
    "contrast": contrast,
    "equalize": equalize,
    "identity": identity,
    "posterize": posterize,
    "rotate": rotate,
    "sharpness": sharpness,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "solarize": solarize,
    "translate_x": translate_x,
    "translate_y": translate_y,
}


# --------------------------------------------------------------------------
# Pillow's arithmetic


def _luma(image):
    """Pillow's RGB -> L: (19595 R + 38470 G + 7471 B + 2**15) >> 16, int32 [H, W]."""
    values = image.astype(jnp.int32)
    weights = np.array([19595, 38470, 7471], np.int32)
    return jnp.right_shift(jnp.sum(values * weights, axis=-1) + 0x8000, 16)


def _blend(degenerate, image, factor):
    """``Image.blend(degenerate, image, factor)``: float32 ``d + f (i - d)``, truncated and
    clipped to [0, 255]."""
    low = degenerate.astype(jnp.float32)
    value = low + factor * (image.astype(jnp.float32) - low)
    return jnp.clip(jnp.floor(value), 0, 255).astype(jnp.uint8)


def _fix(value):
    """Pillow's 16.16 fixed point: floor(v * 65536 + 0.5)."""
    return jnp.floor(value * 65536.0 + 0.5).astype(jnp.int32)


def _affine_fixed(image, matrix):
    """Pillow's nearest-neighbour affine transform (``affine_fixed`` in Geometry.c): output
    pixel (x, y) reads input (xx >> 16, yy >> 16) of the 16.16 fixed-point
    ``xx = FIX(c + a/2 + b/2) + x FIX(a) + y FIX(b)`` (likewise ``yy``), black outside."""
    a, b, c, d, e, f = (jnp.asarray(v, jnp.float32) for v in matrix)
    height, width = image.shape[:2]
    x = jnp.arange(width, dtype=jnp.int32)[None, :]
    y = jnp.arange(height, dtype=jnp.int32)[:, None]
    xx = _fix(c + a * 0.5 + b * 0.5) + x * _fix(a) + y * _fix(b)
    yy = _fix(f + d * 0.5 + e * 0.5) + x * _fix(d) + y * _fix(e)
    return _gather(image, jnp.right_shift(yy, 16), jnp.right_shift(xx, 16))


def _nearest_index(coordinate, size):
    """Pillow's ``COORD``: -1 below 0, else truncation; -1 or >= size means outside."""
    return jnp.where(coordinate < 0, -1, jnp.floor(coordinate)).astype(jnp.int32)


def _gather(image, rows, cols):
    """image[rows, cols] where both are inside, else black; rows and cols broadcast to
    [H, W]."""
    height, width = image.shape[:2]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    values = image[jnp.clip(rows, 0, height - 1), jnp.clip(cols, 0, width - 1)]
    return jnp.where(inside[..., None], values, jnp.zeros((), image.dtype))
