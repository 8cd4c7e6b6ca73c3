"""torchvision's ``RandomRotation`` on PIL images, in the fixed-point arithmetic PIL computes it in.

mdistiller's TinyImageNet augmentation is ``RandomRotation(20)`` with torchvision's defaults
(nearest interpolation, ``expand=False``, ``center=None``, ``fill=0``) on PIL images: it draws
``angle ~ U(-20, 20)`` degrees and calls PIL's ``Image.rotate(angle, NEAREST, fillcolor=0)``,
which turns the image counter-clockwise about its continuous centre ``(width / 2, height / 2)``
(pixel edges at integer coordinates, pixel centres at +0.5). PIL maps each output pixel back to
the input with six 16.16 fixed-point integers ``a0 ... a5`` (Pillow's ``affine_fixed``, the path
of every nearest-neighbour affine transform of an 8-bit image whose coordinates stay below
32768): output pixel (row ``y``, column ``x``) reads input pixel (row ``yy >> 16``, column
``xx >> 16``) with::

    xx = a2 + x * a0 + y * a1        yy = a5 + x * a3 + y * a4

and is 0 (the fill) where that pixel lies outside the image.

``fixed_point_affine`` computes ``a0 ... a5`` with PIL's own float64 operations, in Python on the
host; ``transforms.rotate_flip`` applies them in int32, on the host CPU or the accelerator. It
therefore produces PIL's pixels exactly on every backend, which float32 arithmetic on an
accelerator could not promise (a coefficient near a rounding boundary of the fixed point would
move a pixel).
"""

from __future__ import annotations

import math

import numpy as np

ROTATE_FLIP_DRAWS = 2
"""Draws per example of the rotate-and-flip augmentation: the angle, then the flip."""

FIXED_POINT_BITS = 16
"""Fractional bits of PIL's fixed-point coordinates (``xx >> 16`` is the input column)."""


def angles(draws, degrees: float) -> np.ndarray:
    """Uniform draws in [0, 1) -> float64 angles in degrees, uniform in [-degrees, degrees).

    torch's ``uniform_(-degrees, degrees)``, which torchvision's ``RandomRotation.get_params``
    calls: ``low + (high - low) * u``.
    """
    return -degrees + (2.0 * degrees) * np.asarray(draws, np.float64)


def _pil_coefficients(angle: float, height: int, width: int) -> tuple[int, ...]:
    # Pillow's Image.rotate (no expansion, centre None, no translation), then the integer
    # coefficients of affine_fixed; Python floats are the C doubles PIL uses, operation by
    # operation (its round(..., 15) included), so the integers are PIL's.
    angle = -math.radians(angle % 360.0)
    cos, sin, neg_sin = (round(v, 15) for v in (math.cos(angle), math.sin(angle), -math.sin(angle)))
    center_x, center_y = width / 2, height / 2
    shift_x = cos * -center_x + sin * -center_y + 0.0 + center_x
    shift_y = neg_sin * -center_x + cos * -center_y + 0.0 + center_y

    def fix(value: float) -> int:
        return math.floor(value * 65536.0 + 0.5)

    return (
        fix(cos),
        fix(sin),
        fix(shift_x + cos * 0.5 + sin * 0.5),
        fix(neg_sin),
        fix(cos),
        fix(shift_y + neg_sin * 0.5 + cos * 0.5),
    )


def fixed_point_affine(angles_deg, height: int, width: int) -> np.ndarray:
    """Angles in degrees (counter-clockwise), any shape [...] -> int32 [..., 6]: ``a0 ... a5``.

    ``PIL.Image.rotate(angle, NEAREST)`` of a ``height`` x ``width`` image is the output of
    ``transforms.rotate_flip`` with these coefficients (no flip).
    Angles whose rotation PIL special-cases (multiples of 90 degrees) give the same pixels.
    """
    values = np.asarray(angles_deg, np.float64)
    flat = [_pil_coefficients(float(a), height, width) for a in values.reshape(-1)]
    return np.asarray(flat, np.int32).reshape(*values.shape, 6)


def affine_from_draws(draws, degrees: float, height: int, width: int) -> np.ndarray:
    """Angle draws in [0, 1), any shape [...] -> int32 [..., 6]: their angles' coefficients."""
    return fixed_point_affine(angles(draws, degrees), height, width)
