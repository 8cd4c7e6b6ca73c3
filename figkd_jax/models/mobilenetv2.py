"""MobileNetV2 as in ``mdistiller/models/cifar/mobilenetv2.py`` (RepDistiller's ``mobile_half``).

The benchmark's "MobileNetV2" student is ``mobilenetv2_T_w(T=6, W=0.5)``: a 3x3 stride-2 stem of
16 channels, inverted-residual stages (expansion, width, repeats, stride) = (1, 8, 1, 1),
(6, 12, 2, 1), (6, 16, 3, 2), (6, 32, 4, 2), (6, 48, 3, 1), (6, 80, 3, 2), (6, 160, 1, 1), a
1x1 conv to 1280 channels, global average pooling and a linear head. Activations are ReLU (not
ReLU6), and every block has its 1x1 expansion conv, even at expansion 1, as in the reference.

The reference pools with a window fixed for 32x32 inputs; the global mean here equals it there
and also serves 64x64 inputs.

Initialisation as in the reference: convolutions Kaiming normal fan_out, BatchNorm scale 1 /
bias 0, classifier N(0, 0.01) with zero bias.

Param tree mirrors the reference's container indices: stem ``conv1_0`` (conv) / ``conv1_1``
(BN); blocks ``blocks_{stage}_{i}``, each with ``conv_0`` (expand), ``conv_1`` (BN),
``conv_3`` (depthwise), ``conv_4`` (BN), ``conv_6`` (project), ``conv_7`` (BN); then
``conv2_0`` / ``conv2_1`` and the head ``classifier_0``.
"""

from __future__ import annotations

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

# (output channels at width 1, repeats, stride of the first repeat); the first stage has
# expansion 1, the others the model's expansion T.
INVERTED_RESIDUAL_STAGES = (
    (16, 1, 1),
    (24, 2, 1),
    (32, 3, 2),
    (64, 4, 2),
    (96, 3, 1),
    (160, 3, 2),
    (320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 (strided) -> project 1x1, residual when shapes agree.

    (N, H, W, C) -> (N, H / stride, W / stride, out_channels).
    """

    out_channels: int
    stride: int
    expansion: int
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        hidden = x.shape[-1] * self.expansion

        def conv(features: int, kernel_size: int, stride: int, groups: int, name: str) -> nn.Conv:
            return conv2d(
                features,
                kernel_size,
                stride=stride,
                groups=groups,
                kernel_init=KAIMING_NORMAL_FAN_OUT,
                dtype=self.dtype,
                name=name,
            )

        def bn(name: str) -> BatchNorm:
            return BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name=name)

        y = conv(hidden, 1, 1, 1, "conv_0")(x)
        y = nn.relu(bn("conv_1")(y, train=train))
        y = conv(hidden, 3, self.stride, hidden, "conv_3")(y)
        y = nn.relu(bn("conv_4")(y, train=train))
        y = conv(self.out_channels, 1, 1, 1, "conv_6")(y)
        y = bn("conv_7")(y, train=train)
        if self.stride == 1 and x.shape[-1] == self.out_channels:
            return x + y
        return y


class MobileNetV2(nn.Module):
    """MobileNetV2 at ``width_mult`` with expansion ``expansion`` for the non-first stages.

    (N, H, W, 3) -> (N, num_classes) float32 logits.
    """

    num_classes: int
    width_mult: float = 0.5
    expansion: int = 6
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        def conv_bn_relu(
            x: jax.Array, features: int, kernel_size: int, stride: int, name: str
        ) -> jax.Array:
            y = conv2d(
                features,
                kernel_size,
                stride=stride,
                kernel_init=KAIMING_NORMAL_FAN_OUT,
                dtype=self.dtype,
                name=f"{name}_0",
            )(x)
            bn = BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name=f"{name}_1")
            return nn.relu(bn(y, train=train))

        x = conv_bn_relu(x, int(32 * self.width_mult), 3, 2, "conv1")
        for stage, (channels, repeats, stride) in enumerate(INVERTED_RESIDUAL_STAGES):
            for i in range(repeats):
                x = InvertedResidual(
                    int(channels * self.width_mult),
                    stride=stride if i == 0 else 1,
                    expansion=1 if stage == 0 else self.expansion,
                    dtype=self.dtype,
                    bn_axis_name=self.bn_axis_name,
                    name=f"blocks_{stage}_{i}",
                )(x, train=train)
        last_channels = int(1280 * self.width_mult) if self.width_mult > 1.0 else 1280
        x = conv_bn_relu(x, last_channels, 1, 1, "conv2")
        return Linear(
            self.num_classes, kernel_init=NORMAL_0_01, zero_bias=True, name="classifier_0"
        )(global_avg_pool(x))
