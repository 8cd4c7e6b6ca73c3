"""MobileNetV1 as in ``mdistiller/models/imagenet/mobilenetv1.py``, the ImageNet student of the
ResNet-50 -> MobileNetV1 pair (megvii-research/mdistiller@fae6658142ff8cad6626f2571c54fb376fd2c119).

A 3x3 stride-2 stem of 32 channels, then 13 depthwise-separable blocks (depthwise 3x3, BN, ReLU,
pointwise 1x1, BN, ReLU) with (output channels, stride) = (64, 1), (128, 2), (128, 1), (256, 2),
(256, 1), (512, 2), 5 x (512, 1), (1024, 2), (1024, 1); global average pooling (the reference's
``AvgPool2d(7)`` on the 7x7 map of a 224x224 input) and a linear head. 4,231,976 parameters at
1,000 classes. The reference fixes the head at 1,000 classes; ``num_classes`` generalises it.

Initialisation: the reference sets none, so every layer keeps PyTorch's default (convolutions and
the linear weight kaiming_uniform(a=sqrt(5)), the linear bias U(+-1/sqrt(fan_in)), BatchNorm
scale 1 / bias 0).

Param tree mirrors the reference's ``nn.Sequential`` indices: ``model_0_0`` (stem conv) /
``model_0_1`` (BN); block ``i`` in 1..13: ``model_{i}_0`` (depthwise), ``model_{i}_1`` (BN),
``model_{i}_3`` (pointwise), ``model_{i}_4`` (BN); head ``fc``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from figkd_jax.models.layers import (
    TORCH_DEFAULT_WEIGHT,
    BatchNorm,
    Dtype,
    Linear,
    conv2d,
    global_avg_pool,
)

STEM_CHANNELS = 32
# (output channels, stride) of each depthwise-separable block, in order.
SEPARABLE_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class MobileNetV1(nn.Module):
    """(N, H, W, 3) -> (N, num_classes) float32 logits."""

    num_classes: int
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        def conv_bn_relu(
            x: jax.Array, features: int, kernel_size: int, stride: int, groups: int, prefix: str
        ) -> jax.Array:
            y = conv2d(
                features,
                kernel_size,
                stride=stride,
                groups=groups,
                kernel_init=TORCH_DEFAULT_WEIGHT,
                dtype=self.dtype,
                name=prefix,
            )(x)
            # The BatchNorm follows its conv in the reference's Sequential: the next index.
            block, _, index = prefix.rpartition("_")
            bn = BatchNorm(
                axis_name=self.bn_axis_name, dtype=self.dtype, name=f"{block}_{int(index) + 1}"
            )
            return nn.relu(bn(y, train=train))

        x = conv_bn_relu(x, STEM_CHANNELS, 3, 2, 1, "model_0_0")
        for block, (channels, stride) in enumerate(SEPARABLE_BLOCKS, start=1):
            x = conv_bn_relu(x, x.shape[-1], 3, stride, x.shape[-1], f"model_{block}_0")
            x = conv_bn_relu(x, channels, 1, 1, 1, f"model_{block}_3")
        return Linear(self.num_classes, name="fc")(global_avg_pool(x))
