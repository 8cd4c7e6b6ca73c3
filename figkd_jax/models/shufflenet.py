"""ShuffleNetV1 and ShuffleNetV2 as in mdistiller's ``ShuffleNetv1.py`` / ``ShuffleNetv2.py``.

These CIFAR variants (RepDistiller's ``ShuffleV1`` / ``ShuffleV2``) use a 1x1 stride-1 stem of
24 channels and no max-pool, so three stride-2 stages take 32x32 inputs to 4x4.

- ShuffleNetV1: groups 3, stage widths (240, 480, 960), (4, 8, 4) bottlenecks; the first
  bottleneck of each stage has stride 2 and concatenates a 3x3 average-pooled shortcut
  (``count_include_pad`` as PyTorch's default); its first 1x1 conv is ungrouped when it reads
  the 24-channel stem.
- ShuffleNetV2 (net size 1): stage widths (116, 232, 464), (3, 7, 3) basic blocks after one
  down-sampling block per stage, a 1x1 conv to 1024 channels before pooling.

The references pool with a 4x4 window fixed for 32x32 inputs; the global mean used here equals
it there and also serves 64x64 inputs.

Initialisation: the references set none, so PyTorch's defaults apply: conv and linear weights
variance_scaling(1/3, fan_in, uniform) (= kaiming_uniform(a=sqrt(5))), linear bias
U(+-1/sqrt(fan_in)), BatchNorm scale 1 / bias 0.

Param tree: ``conv1``, ``bn1``, ``layer{1,2,3}_{i}`` (blocks with ``conv{k}`` / ``bn{k}`` as
named in the references; in ShuffleNetV2 ``layer{s}_0`` is the down-sampling block), for V2
``conv2`` / ``bn2``, and the head ``linear``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from figkd_jax.models.layers import (
    TORCH_DEFAULT_WEIGHT,
    BatchNorm,
    Dtype,
    Linear,
    channel_shuffle,
    conv2d,
    global_avg_pool,
)

STEM_CHANNELS = 24


class _ShuffleModule(nn.Module):
    """Conv / BN factories shared by the ShuffleNet modules (PyTorch default conv init)."""

    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    def _conv(
        self, features: int, kernel_size: int, name: str, *, stride: int = 1, groups: int = 1
    ) -> nn.Conv:
        return conv2d(
            features,
            kernel_size,
            stride=stride,
            groups=groups,
            kernel_init=TORCH_DEFAULT_WEIGHT,
            dtype=self.dtype,
            name=name,
        )

    def _bn(self, name: str) -> BatchNorm:
        return BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype, name=name)

    def _stem(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = self._conv(STEM_CHANNELS, 1, "conv1")(x)
        return nn.relu(self._bn("bn1")(x, train=train))


class ShuffleV1Bottleneck(_ShuffleModule, kw_only=True):
    """Grouped 1x1 -> shuffle -> depthwise 3x3 -> grouped 1x1, plus shortcut.

    stride 1: (N, H, W, C) -> (N, H, W, out_channels), residual sum (needs C == out_channels).
    stride 2: (N, H, W, C) -> (N, H/2, W/2, out_channels + C), concatenating the pooled input.
    """

    out_channels: int
    stride: int
    groups: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        mid = self.out_channels // 4
        first_groups = 1 if x.shape[-1] == STEM_CHANNELS else self.groups
        y = self._conv(mid, 1, "conv1", groups=first_groups)(x)
        y = nn.relu(self._bn("bn1")(y, train=train))
        y = channel_shuffle(y, first_groups)
        y = self._conv(mid, 3, "conv2", stride=self.stride, groups=mid)(y)
        y = nn.relu(self._bn("bn2")(y, train=train))
        y = self._conv(self.out_channels, 1, "conv3", groups=self.groups)(y)
        y = self._bn("bn3")(y, train=train)
        if self.stride == 2:
            shortcut = nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
            return nn.relu(jnp.concatenate([y, shortcut], axis=-1))
        return nn.relu(y + x)


class ShuffleNetV1(_ShuffleModule, kw_only=True):
    """(N, H, W, 3) -> (N, num_classes) float32 logits."""

    num_classes: int
    stage_widths: Sequence[int] = (240, 480, 960)
    stage_blocks: Sequence[int] = (4, 8, 4)
    groups: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = self._stem(x, train=train)
        for stage, (width, num_blocks) in enumerate(
            zip(self.stage_widths, self.stage_blocks, strict=True), start=1
        ):
            for i in range(num_blocks):
                # The stride-2 block concatenates its input, so its own branch is narrower.
                x = ShuffleV1Bottleneck(
                    out_channels=width - x.shape[-1] if i == 0 else width,
                    stride=2 if i == 0 else 1,
                    groups=self.groups,
                    dtype=self.dtype,
                    bn_axis_name=self.bn_axis_name,
                    name=f"layer{stage}_{i}",
                )(x, train=train)
        return Linear(self.num_classes, name="linear")(global_avg_pool(x))


class ShuffleV2BasicBlock(_ShuffleModule):
    """Splits channels in half, transforms the second half, concatenates, shuffles.

    (N, H, W, C) -> (N, H, W, C).
    """

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        half = x.shape[-1] // 2
        kept, transformed = x[..., :half], x[..., half:]
        channels = transformed.shape[-1]
        y = self._conv(channels, 1, "conv1")(transformed)
        y = nn.relu(self._bn("bn1")(y, train=train))
        y = self._conv(channels, 3, "conv2", groups=channels)(y)
        y = self._bn("bn2")(y, train=train)
        y = self._conv(channels, 1, "conv3")(y)
        y = nn.relu(self._bn("bn3")(y, train=train))
        return channel_shuffle(jnp.concatenate([kept, y], axis=-1), 2)


class ShuffleV2DownBlock(_ShuffleModule, kw_only=True):
    """Two stride-2 branches concatenated and shuffled: (N, H, W, C) -> (N, H/2, W/2, out)."""

    out_channels: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        in_channels = x.shape[-1]
        mid = self.out_channels // 2
        left = self._conv(in_channels, 3, "conv1", stride=2, groups=in_channels)(x)
        left = self._bn("bn1")(left, train=train)
        left = self._conv(mid, 1, "conv2")(left)
        left = nn.relu(self._bn("bn2")(left, train=train))
        right = self._conv(mid, 1, "conv3")(x)
        right = nn.relu(self._bn("bn3")(right, train=train))
        right = self._conv(mid, 3, "conv4", stride=2, groups=mid)(right)
        right = self._bn("bn4")(right, train=train)
        right = self._conv(mid, 1, "conv5")(right)
        right = nn.relu(self._bn("bn5")(right, train=train))
        return channel_shuffle(jnp.concatenate([left, right], axis=-1), 2)


class ShuffleNetV2(_ShuffleModule, kw_only=True):
    """(N, H, W, 3) -> (N, num_classes) float32 logits."""

    num_classes: int
    stage_widths: Sequence[int] = (116, 232, 464)
    stage_blocks: Sequence[int] = (3, 7, 3)
    last_channels: int = 1024

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = self._stem(x, train=train)
        for stage, (width, num_blocks) in enumerate(
            zip(self.stage_widths, self.stage_blocks, strict=True), start=1
        ):
            shared = {"dtype": self.dtype, "bn_axis_name": self.bn_axis_name}
            x = ShuffleV2DownBlock(out_channels=width, name=f"layer{stage}_0", **shared)(
                x, train=train
            )
            for i in range(1, num_blocks + 1):
                x = ShuffleV2BasicBlock(name=f"layer{stage}_{i}", **shared)(x, train=train)
        x = self._conv(self.last_channels, 1, "conv2")(x)
        x = nn.relu(self._bn("bn2")(x, train=train))
        return Linear(self.num_classes, name="linear")(global_avg_pool(x))
