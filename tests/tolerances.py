"""Tolerances derived from float32 arithmetic, shared by the tests that compare the same
training computed two ways (another device count, another process count, on-device input, a
scanned loop).

Such programs differ only in the order of float32 reductions (BatchNorm statistics over up to
64x8x8 = 4096 values, gradient sums over a batch, loss means). Reordering a sum of n terms
moves it by at most about n * 2^-24 of the sum of their magnitudes, and typically by
sqrt(n) * 2^-24 (4e-6 relative for n = 4096). Training carries these differences from step
to step and amplifies them (after 12 steps they reached 1.4% of a BatchNorm bias on AMD EPYC,
after 3 steps 6e-7 of each array's largest magnitude), so these comparisons run at most a
few steps and allow STEPS_SCALE_TOLERANCE of each array's largest magnitude: more than 20x
the typical per-step difference, and far below what a real bug moves (per-device BatchNorm
statistics, an unreduced gradient or a wrong batch differ by tens of percent at once).
"""

import numpy as np

STEPS_SCALE_TOLERANCE = 1e-4
# A parameter whose exact gradient is zero (a convolution bias in front of BatchNorm) holds
# nothing but rounding residue: learning rate x 2^-24 x the gradients' scale per step, below
# 1e-8 in these tests. Such an array has no scale to be relative to; this floor bounds it.
ROUNDING_RESIDUE = 1e-7


def assert_close_after_steps(actual, expected, name: str = "") -> None:
    """`actual` equals `expected` up to STEPS_SCALE_TOLERANCE of max|expected| (or up to
    ROUNDING_RESIDUE, whichever is larger)."""
    expected = np.asarray(expected, np.float64)
    atol = max(
        STEPS_SCALE_TOLERANCE * float(np.max(np.abs(expected), initial=0.0)), ROUNDING_RESIDUE
    )
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), expected, rtol=0, atol=atol, err_msg=name
    )


# A deep float32 forward pass computed by two libraries (PyTorch against XLA) differs by the
# rounding of each layer's reductions, carried through the layers: a 3x3 convolution over 512
# channels sums 4608 products (typically sqrt(4608) x 2^-24 = 4e-6 relative) and ResNet-50 has
# 53 such layers. Measured on random-weight ImageNet ResNet-34/50 and MobileNetV1 (logits up
# to 150 in magnitude): 4e-6 to 3e-5 of max|logits|; torchvision's own ResNet-34 / ResNet-50 at
# 224x224 (tests/test_convert_torch.py): 3.1e-6 / 1.4e-5. A wrong layout (a transposed kernel, a
# swapped statistic) moves the logits by tens of percent.
DEEP_FORWARD_SCALE_TOLERANCE = 1e-4
