"""MobileNetV2 of mdistiller's TinyImageNet benchmark (``models/cifar/mv2_tinyimagenet.py``).

The student of the reference's ResNet18 -> MobileNetV2 TinyImageNet pair. Unlike the CIFAR
``mobilenetv2`` (``mobile_half``) it is full width and keeps PyTorch's layer defaults:

- stem: a 1x1 conv of 32 channels *with padding 1* (64x64 inputs become 66x66, the border
  holding the conv's bias only), BatchNorm, ReLU6;
- inverted-residual bottlenecks (expand 1x1, depthwise 3x3, project 1x1, each followed by
  BatchNorm; ReLU6 after the first two; a residual when stride 1 and widths agree): one of
  (expansion 1, 16 channels), then stages of (repeats, channels, first stride) (2, 24, 2),
  (3, 32, 2), (4, 64, 2), (3, 96, 1), (3, 160, 1), all expansion 6, and one of (6, 320);
- a 1x1 conv to 1280 channels, BatchNorm, ReLU6, global average pooling, and a 1x1 conv
  classifier;
- every conv has a bias, initialised like every weight with PyTorch's defaults
  (kaiming_uniform(a=sqrt(5)) weights, U(+-1/sqrt(fan_in)) biases; BatchNorm scale 1, bias 0).

Strides: 64x64 -> 66 -> 33 -> 17 -> 9 spatially before pooling. 2,497,480 parameters at 200
classes (PyTorch's count of the reference).

Param tree, mirroring the reference's module names: ``pre_0`` (conv) / ``pre_1`` (BN);
``stage1`` and ``stage7`` (single blocks) and ``stage{2..6}_{i}``, each with ``residual_0``
(expand), ``residual_1`` (BN), ``residual_3`` (depthwise), ``residual_4`` (BN), ``residual_6``
(project), ``residual_7`` (BN); ``conv1_0`` / ``conv1_1``; the classifier ``conv2``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from figkd_jax.models.layers import (
    TORCH_DEFAULT_WEIGHT,
    BatchNorm,
    Dtype,
    conv2d,
    global_avg_pool,
    torch_default_bias,
)

# (repeats, output channels, stride of the first repeat) of stages 2 to 6, expansion 6.
STAGES = ((2, 24, 2), (3, 32, 2), (4, 64, 2), (3, 96, 1), (3, 160, 1))


def _conv(features, kernel_size, *, in_features, stride=1, groups=1, padding=None, dtype, name):
    """A biased conv with PyTorch's default initialisation."""
    fan_in = in_features // groups * kernel_size * kernel_size
    return conv2d(
        features,
        kernel_size,
        stride=stride,
        groups=groups,
        use_bias=True,
        kernel_init=TORCH_DEFAULT_WEIGHT,
        bias_init=torch_default_bias(fan_in),
        padding=padding,
        dtype=dtype,
        name=name,
    )


class LinearBottleneck(nn.Module):
    """Expand 1x1 -> depthwise 3x3 (strided) -> project 1x1, residual when shapes agree.

    (N, H, W, C) -> (N, ceil(H / stride), ceil(W / stride), out_channels).
    """

    out_channels: int
    stride: int
    expansion: int
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        channels = x.shape[-1]
        hidden = channels * self.expansion

        def bn(name: str) -> BatchNorm:
            return BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name=name)

        y = _conv(hidden, 1, in_features=channels, dtype=self.dtype, name="residual_0")(x)
        y = nn.relu6(bn("residual_1")(y, train=train))
        y = _conv(
            hidden,
            3,
            in_features=hidden,
            stride=self.stride,
            groups=hidden,
            dtype=self.dtype,
            name="residual_3",
        )(y)
        y = nn.relu6(bn("residual_4")(y, train=train))
        y = _conv(self.out_channels, 1, in_features=hidden, dtype=self.dtype, name="residual_6")(y)
        y = bn("residual_7")(y, train=train)
        if self.stride == 1 and channels == self.out_channels:
            return x + y
        return y


class MobileNetV2TinyImageNet(nn.Module):
    """(N, H, W, 3) -> (N, num_classes) float32 logits."""

    num_classes: int
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        shared = {"dtype": self.dtype, "bn_axis_name": self.bn_axis_name}

        def bn(name: str) -> BatchNorm:
            return BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name=name)

        x = _conv(32, 1, in_features=x.shape[-1], padding=1, dtype=self.dtype, name="pre_0")(x)
        x = nn.relu6(bn("pre_1")(x, train=train))
        x = LinearBottleneck(16, 1, expansion=1, name="stage1", **shared)(x, train=train)
        for stage, (repeats, channels, stride) in enumerate(STAGES, start=2):
            for i in range(repeats):
                stride_i = stride if i == 0 else 1
                x = LinearBottleneck(
                    channels, stride_i, expansion=6, name=f"stage{stage}_{i}", **shared
                )(x, train=train)
        x = LinearBottleneck(320, 1, expansion=6, name="stage7", **shared)(x, train=train)
        x = _conv(1280, 1, in_features=320, dtype=self.dtype, name="conv1_0")(x)
        x = nn.relu6(bn("conv1_1")(x, train=train))
        # The classifier is a 1x1 conv on the pooled features, in float32 like every head.
        pooled = global_avg_pool(x)[:, None, None, :]
        logits = _conv(self.num_classes, 1, in_features=1280, dtype=jnp.float32, name="conv2")(
            pooled
        )
        return logits[:, 0, 0, :]
