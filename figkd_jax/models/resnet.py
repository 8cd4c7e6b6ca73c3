"""ResNets: the CIFAR ResNets of RepDistiller / mdistiller and 4-stage ResNet18/34/50.

Three references, one set of blocks (their computations are identical):

- ``CifarResNet``: ``mdistiller/models/cifar/resnet.py`` (resnet8 ... resnet110, resnet8x4,
  resnet32x4). 3x3 stem, three stages of BasicBlocks, shortcut named ``downsample``, head ``fc``.
- ``ResNet(style="cifar")``: ``mdistiller/models/cifar/resnetv2.py`` (ResNet18, ResNet50 on
  CIFAR). 3x3 stride-1 stem of 64 channels, four stages, shortcut ``shortcut``, head ``linear``.
- ``ResNet(style="imagenet")``: torchvision ``resnet18/34/50`` (v1.5: stride on the 3x3 conv of
  the bottleneck). 7x7 stride-2 stem + 3x3 stride-2 max-pool, shortcut ``downsample``, head
  ``fc``.

Initialisation, as all three references set it: convolutions Kaiming-normal fan_out (ReLU gain),
BatchNorm scale 1 / bias 0, the classifier PyTorch's ``nn.Linear`` default (weight
U(+-1/sqrt(fan_in)) = variance_scaling(1/3, fan_in, uniform); bias likewise). No zero-init of
the last BatchNorm of a block (the references' default).

The fixed-size average pools of the references equal the global mean used here at their
native input size (32x32 CIFAR, 224x224 ImageNet); other sizes (64x64 TinyImageNet) work too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

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


class _ResidualBlock(nn.Module):
    """Fields and the projection shortcut shared by BasicBlock and Bottleneck."""

    planes: int
    stride: int = 1
    shortcut_name: str = "downsample"
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    def _conv(self, features: int, kernel_size: int, name: str, stride: int = 1) -> nn.Conv:
        return conv2d(
            features,
            kernel_size,
            stride=stride,
            kernel_init=KAIMING_NORMAL_FAN_OUT,
            dtype=self.dtype,
            name=name,
        )

    def _bn(self, name: str) -> BatchNorm:
        return BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name=name)

    def _shortcut(self, x: jax.Array, out_channels: int, *, train: bool) -> jax.Array:
        """Identity, or 1x1 conv + BN (``<shortcut_name>_0`` / ``_1``) where the shape changes."""
        if self.stride == 1 and x.shape[-1] == out_channels:
            return x
        x = self._conv(out_channels, 1, f"{self.shortcut_name}_0", stride=self.stride)(x)
        return self._bn(f"{self.shortcut_name}_1")(x, train=train)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs: (N, H, W, C) -> (N, H / stride, W / stride, planes).

    Params: ``conv1``, ``bn1``, ``conv2``, ``bn2`` and, when the shape changes, the shortcut.
    """

    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = self._conv(self.planes, 3, "conv1", stride=self.stride)(x)
        y = nn.relu(self._bn("bn1")(y, train=train))
        y = self._conv(self.planes, 3, "conv2")(y)
        y = self._bn("bn2")(y, train=train)
        return nn.relu(y + self._shortcut(x, self.planes, train=train))


class Bottleneck(_ResidualBlock):
    """1x1 -> 3x3 (strided) -> 1x1 x4: (N, H, W, C) -> (N, H / stride, W / stride, 4 planes).

    Params: ``conv1``/``bn1``, ``conv2``/``bn2``, ``conv3``/``bn3`` and possibly the shortcut.
    """

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        out_channels = self.planes * self.expansion
        y = self._conv(self.planes, 1, "conv1")(x)
        y = nn.relu(self._bn("bn1")(y, train=train))
        y = self._conv(self.planes, 3, "conv2", stride=self.stride)(y)
        y = nn.relu(self._bn("bn2")(y, train=train))
        y = self._conv(out_channels, 1, "conv3")(y)
        y = self._bn("bn3")(y, train=train)
        return nn.relu(y + self._shortcut(x, out_channels, train=train))


class CifarResNet(nn.Module):
    """RepDistiller's CIFAR ResNet of depth ``6n + 2`` with BasicBlocks.

    ``num_filters``: (stem, stage1, stage2, stage3) widths, e.g. (16, 16, 32, 64) for resnet20,
    (32, 64, 128, 256) for the x4 variants. Stages 2 and 3 halve the resolution.
    (N, H, W, 3) -> (N, num_classes) float32 logits.

    Param tree: ``conv1``, ``bn1``, ``layer{1,2,3}_{i}`` (BasicBlocks, ``i`` from 0), ``fc``.
    """

    depth: int
    num_filters: Sequence[int]
    num_classes: int
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if (self.depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n + 2 (8, 14, 20, ...), got {self.depth}")
        blocks_per_stage = (self.depth - 2) // 6
        x = conv2d(
            self.num_filters[0],
            3,
            kernel_init=KAIMING_NORMAL_FAN_OUT,
            dtype=self.dtype,
            name="conv1",
        )(x)
        x = BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name="bn1")(x, train=train)
        x = nn.relu(x)
        for stage, (planes, stride) in enumerate(
            zip(self.num_filters[1:], (1, 2, 2), strict=True), start=1
        ):
            for i in range(blocks_per_stage):
                x = BasicBlock(
                    planes,
                    stride=stride if i == 0 else 1,
                    shortcut_name="downsample",
                    dtype=self.dtype,
                    bn_axis_name=self.bn_axis_name,
                    name=f"layer{stage}_{i}",
                )(x, train=train)
        return Linear(self.num_classes, name="fc")(global_avg_pool(x))


class ResNet(nn.Module):
    """Four-stage ResNet (widths 64, 128, 256, 512 times the block expansion).

    ``style="cifar"``: mdistiller's resnetv2.py, 3x3 stride-1 stem, for 32x32 / 64x64 inputs.
    ``style="imagenet"``: torchvision, 7x7 stride-2 stem and 3x3 stride-2 max-pool, for 224x224.
    (N, H, W, 3) -> (N, num_classes) float32 logits.

    Param tree: ``conv1``, ``bn1``, ``layer{1..4}_{i}`` (blocks, ``i`` from 0) and the head,
    ``linear`` (cifar) or ``fc`` (imagenet); block shortcuts are ``shortcut_0``/``shortcut_1``
    (cifar) or ``downsample_0``/``downsample_1`` (imagenet), as named in each reference.
    """

    block: type[BasicBlock] | type[Bottleneck]
    stage_sizes: Sequence[int]
    num_classes: int
    style: Literal["cifar", "imagenet"]
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if self.style not in ("cifar", "imagenet"):
            raise ValueError(f"style must be 'cifar' or 'imagenet', got {self.style!r}")
        imagenet = self.style == "imagenet"
        x = conv2d(
            64,
            7 if imagenet else 3,
            stride=2 if imagenet else 1,
            kernel_init=KAIMING_NORMAL_FAN_OUT,
            dtype=self.dtype,
            name="conv1",
        )(x)
        x = BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name="bn1")(x, train=train)
        x = nn.relu(x)
        if imagenet:
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage, num_blocks in enumerate(self.stage_sizes, start=1):
            for i in range(num_blocks):
                x = self.block(
                    64 * 2 ** (stage - 1),
                    stride=2 if stage > 1 and i == 0 else 1,
                    shortcut_name="downsample" if imagenet else "shortcut",
                    dtype=self.dtype,
                    bn_axis_name=self.bn_axis_name,
                    name=f"layer{stage}_{i}",
                )(x, train=train)
        head = "fc" if imagenet else "linear"
        return Linear(self.num_classes, name=head)(global_avg_pool(x))
