"""Wide ResNet WRN-d-k as in ``mdistiller/models/cifar/wrn.py`` (RepDistiller).

Pre-activation blocks (BN-ReLU-conv), depth ``6n + 4``, widths (16, 16k, 32k, 64k), a final
BN-ReLU, global average pooling and a linear head. The reference's dropout rate defaults to 0
and no benchmark model sets it, so there is no dropout.

Initialisation as in the reference: convolutions N(0, 2 / (kh * kw * out_channels)) (Kaiming
normal fan_out), BatchNorm scale 1 / bias 0, head weight PyTorch's ``nn.Linear`` default
(variance_scaling(1/3, fan_in, uniform)) and bias 0.

Param tree: ``conv1``, ``block{1,2,3}`` each holding ``layer_{i}`` (blocks: ``bn1``, ``conv1``,
``bn2``, ``conv2`` and, where the width changes, ``convShortcut``), ``bn1``, ``fc``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from figkd_jax.models.layers import (
    KAIMING_NORMAL_FAN_OUT,
    BatchNorm,
    Dtype,
    Linear,
    conv2d,
    global_avg_pool,
)


class WideBasicBlock(nn.Module):
    """(N, H, W, C) -> (N, H / stride, W / stride, out_channels).

    When the width changes, the shortcut is a 1x1 conv of the *activated* input, as in the
    reference; otherwise the raw input is added.
    """

    out_channels: int
    stride: int
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        def conv(features: int, kernel_size: int, stride: int, name: str) -> nn.Conv:
            return conv2d(
                features,
                kernel_size,
                stride=stride,
                kernel_init=KAIMING_NORMAL_FAN_OUT,
                dtype=self.dtype,
                name=name,
            )

        def bn(name: str) -> BatchNorm:
            return BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name=name)

        activated = nn.relu(bn("bn1")(x, train=train))
        y = conv(self.out_channels, 3, self.stride, "conv1")(activated)
        y = nn.relu(bn("bn2")(y, train=train))
        y = conv(self.out_channels, 3, 1, "conv2")(y)
        if x.shape[-1] == self.out_channels:
            return x + y
        return conv(self.out_channels, 1, self.stride, "convShortcut")(activated) + y


class NetworkBlock(nn.Module):
    """``num_layers`` WideBasicBlocks named ``layer_{i}``; the first one applies ``stride``."""

    num_layers: int
    out_channels: int
    stride: int
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        for i in range(self.num_layers):
            x = WideBasicBlock(
                self.out_channels,
                stride=self.stride if i == 0 else 1,
                dtype=self.dtype,
                bn_axis_name=self.bn_axis_name,
                name=f"layer_{i}",
            )(x, train=train)
        return x


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``: (N, H, W, 3) -> (N, num_classes) float32 logits."""

    depth: int
    widen_factor: int
    num_classes: int
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if (self.depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n + 4 (10, 16, 22, ...), got {self.depth}")
        blocks_per_stage = (self.depth - 4) // 6
        widths = (16 * self.widen_factor, 32 * self.widen_factor, 64 * self.widen_factor)
        x = conv2d(16, 3, kernel_init=KAIMING_NORMAL_FAN_OUT, dtype=self.dtype, name="conv1")(x)
        for stage, (width, stride) in enumerate(zip(widths, (1, 2, 2), strict=True), start=1):
            x = NetworkBlock(
                blocks_per_stage,
                width,
                stride,
                dtype=self.dtype,
                bn_axis_name=self.bn_axis_name,
                name=f"block{stage}",
            )(x, train=train)
        x = BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name="bn1")(x, train=train)
        x = nn.relu(x)
        return Linear(self.num_classes, zero_bias=True, name="fc")(global_avg_pool(x))
