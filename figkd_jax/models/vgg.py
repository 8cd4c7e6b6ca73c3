"""VGG with BatchNorm as in ``mdistiller/models/cifar/vgg.py`` (RepDistiller's ``vgg*_bn``).

Five conv blocks; inside a block each 3x3 conv (with bias) is followed by BN and ReLU, except
that the block's last ReLU is applied outside the block (the reference drops it from the
``nn.Sequential``; the computation is the same). 2x2 max-pools follow blocks 0, 1 and 2, and
block 3 only for 64-pixel-high inputs (TinyImageNet), exactly as the reference's
``if h == 64`` does, so that block 4 always sees a 4x4 map. Global average pooling, one
linear layer of 512 -> num_classes.

Initialisation as in the reference: convolutions Kaiming normal fan_out with zero bias,
BatchNorm scale 1 / bias 0, classifier N(0, 0.01) with zero bias.

Param tree mirrors the reference's ``nn.Sequential`` indices: ``block{b}_{3j}`` is the j-th conv
of block b and ``block{b}_{3j+1}`` its BatchNorm (index 3j+2 was the parameter-free ReLU);
the head is ``classifier``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from figkd_jax.models.layers import (
    KAIMING_NORMAL_FAN_OUT,
    NORMAL_0_01,
    BatchNorm,
    Dtype,
    Linear,
    conv2d,
    global_avg_pool,
)

# Conv widths per block, the reference's configurations "S", "A", "B", "D", "E".
VGG_CONFIGS: dict[int, tuple[tuple[int, ...], ...]] = {
    8: ((64,), (128,), (256,), (512,), (512,)),
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: (
        (64, 64),
        (128, 128),
        (256, 256, 256, 256),
        (512, 512, 512, 512),
        (512, 512, 512, 512),
    ),
}


class VGG(nn.Module):
    """VGG-BN with conv widths ``config`` (one tuple per block, five blocks).

    (N, H, W, 3) -> (N, num_classes) float32 logits.
    """

    config: Sequence[Sequence[int]]
    num_classes: int
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if len(self.config) != 5:
            raise ValueError(f"config must hold 5 blocks of conv widths, got {len(self.config)}")
        pool_block3 = x.shape[1] == 64
        for block, widths in enumerate(self.config):
            for j, width in enumerate(widths):
                x = conv2d(
                    width,
                    3,
                    use_bias=True,
                    kernel_init=KAIMING_NORMAL_FAN_OUT,
                    dtype=self.dtype,
                    name=f"block{block}_{3 * j}",
                )(x)
                x = BatchNorm(
                    axis_name=self.bn_axis_name, dtype=self.dtype, name=f"block{block}_{3 * j + 1}"
                )(x, train=train)
                x = nn.relu(x)
            if block < 3 or (block == 3 and pool_block3):
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return Linear(self.num_classes, kernel_init=NORMAL_0_01, zero_bias=True, name="classifier")(
            global_avg_pool(x)
        )
