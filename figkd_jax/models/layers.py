"""Building blocks shared by every architecture: initialisers, conv, linear, BatchNorm, pooling.

Everything here reproduces PyTorch semantics, so that a network built from these blocks matches
its PyTorch reference parameter for parameter and, for BatchNorm, statistic for statistic.

Layouts (all NHWC activations):

- ``conv2d`` -> ``flax.linen.Conv``: ``kernel`` (kh, kw, in_channels / groups, out_channels),
  optional ``bias`` (out_channels,). PyTorch stores (out, in / groups, kh, kw).
- ``Linear``: ``kernel`` (in_features, out_features), ``bias`` (out_features,). PyTorch stores
  ``weight`` as (out, in).
- ``BatchNorm``: params ``scale``, ``bias``; batch_stats ``mean``, ``var`` (all (channels,),
  float32). PyTorch calls them ``weight``, ``bias``, ``running_mean``, ``running_var``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

Dtype = Any
Initializer = jax.nn.initializers.Initializer

# torch.nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"): N(0, 2 / fan_out),
# untruncated. WRN, VGG and MobileNetV2 write the same thing by hand as
# normal_(0, sqrt(2 / (kh * kw * out_channels))).
KAIMING_NORMAL_FAN_OUT: Initializer = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch's default weight init for Conv2d and Linear, kaiming_uniform_(a=sqrt(5)), is
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)), whose variance is 1 / (3 fan_in).
TORCH_DEFAULT_WEIGHT: Initializer = jax.nn.initializers.variance_scaling(
    1.0 / 3.0, "fan_in", "uniform"
)
# nn.init.normal_(linear.weight, 0, 0.01) of the VGG and MobileNetV2 references.
NORMAL_0_01: Initializer = jax.nn.initializers.normal(0.01)

# PyTorch's BatchNorm2d defaults: momentum 0.1 weights the new batch statistic.
TORCH_BN_MOMENTUM = 0.1
TORCH_BN_EPSILON = 1e-5


def conv2d(
    features: int,
    kernel_size: int,
    *,
    stride: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    kernel_init: Initializer,
    bias_init: Initializer = jax.nn.initializers.zeros,
    padding: int | None = None,
    dtype: Dtype,
    name: str,
) -> nn.Conv:
    """A square convolution padded like PyTorch's ``Conv2d(padding=kernel_size // 2)``.

    Explicit symmetric padding matters: Flax's "SAME" pads stride-2 layers asymmetrically and
    would sample different pixels than the reference. Parameters are float32; ``dtype`` is the
    compute dtype. A bias, where present, starts at ``bias_init`` (zero, as VGG's reference;
    ``torch_default_bias`` for references that keep PyTorch's default). ``padding`` overrides
    ``kernel_size // 2`` for references that pad otherwise.

    Maps (N, H, W, C_in) -> (N, ceil(H / stride), ceil(W / stride), features) for odd kernels
    at the default padding.
    """
    pad = kernel_size // 2 if padding is None else padding
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


class Linear(nn.Module):
    """Fully connected layer, (..., in_features) -> (..., features).

    ``zero_bias=False`` draws the bias like PyTorch's ``nn.Linear`` default,
    U(-1/sqrt(in_features), 1/sqrt(in_features)); Flax's bias initialisers cannot see the fan-in,
    hence this module instead of ``nn.Dense``.
    """

    features: int
    kernel_init: Initializer = TORCH_DEFAULT_WEIGHT
    zero_bias: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features), jnp.float32)
        if self.zero_bias:
            bias_init = jax.nn.initializers.zeros
        else:
            bound = 1.0 / math.sqrt(in_features)
            bias_init = _uniform_symmetric(bound)
        bias = self.param("bias", bias_init, (self.features,), jnp.float32)
        x = x.astype(self.dtype)
        return x @ kernel.astype(self.dtype) + bias.astype(self.dtype)


def torch_default_bias(fan_in: int) -> Initializer:
    """PyTorch's default bias of ``Conv2d`` / ``Linear``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    ``fan_in`` = input channels / groups * kernel area (Flax's initialisers cannot see it)."""
    return _uniform_symmetric(1.0 / math.sqrt(fan_in))


def _uniform_symmetric(bound: float) -> Initializer:
    def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class BatchNorm(nn.Module):
    """BatchNorm over the channel (last) axis with PyTorch's ``BatchNorm2d`` semantics.

    Training (``train=True``): normalises with the biased batch variance and updates the running
    statistics as PyTorch does, ``running = (1 - momentum) * running + momentum * batch`` with
    ``momentum=0.1`` and the *unbiased* batch variance ``var * n / (n - 1)`` (n = elements per
    channel). Flax's own BatchNorm stores the biased one, so its running variance drifts from a
    PyTorch checkpoint's; this one does not. Batch statistics are computed in float32 whatever
    the compute dtype. ``model.init`` leaves the running statistics at 0 / 1.

    Evaluation (``train=False``): normalises with the running statistics, changes nothing.

    ``axis_name``: for ``shard_map`` / ``pmap`` / ``vmap`` users, the mapped axis whose shards
    form one logical batch; the mean and variance are then averaged over it (``lax.pmean``) and
    ``n`` counts the whole logical batch. Under plain ``jax.jit`` with a sharded batch leave it
    ``None``: the reductions already run over the global batch.

    Shapes: (..., C) -> (..., C) in ``dtype``.
    """

    momentum: float = TORCH_BN_MOMENTUM
    epsilon: float = TORCH_BN_EPSILON
    axis_name: str | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", jax.nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", jax.nn.initializers.zeros, (channels,), jnp.float32)
        running_mean = self.variable(
            "batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32)
        )
        running_var = self.variable(
            "batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32)
        )

        x32 = x.astype(jnp.float32)
        if train:
            reduce_axes = tuple(range(x.ndim - 1))
            count = math.prod(x.shape[:-1])
            mean = jnp.mean(x32, axis=reduce_axes)
            if self.axis_name is not None:
                mean = jax.lax.pmean(mean, self.axis_name)
                count *= jax.lax.axis_size(self.axis_name)
            elif count < 2:
                raise ValueError(
                    f"BatchNorm in training needs more than 1 value per channel, got input shape "
                    f"{x.shape}; use a larger batch or train=False"
                )
            # Two passes (mean first, then squared deviations) keep float32 accuracy on
            # activations with a large mean, like PyTorch's kernels.
            var = jnp.mean(jnp.square(x32 - mean), axis=reduce_axes)
            if self.axis_name is not None:
                var = jax.lax.pmean(var, self.axis_name)
            if not self.is_initializing():
                unbiased_var = var * (count / (count - 1))
                running_mean.value = (
                    1.0 - self.momentum
                ) * running_mean.value + self.momentum * mean
                running_var.value = (
                    1.0 - self.momentum
                ) * running_var.value + self.momentum * unbiased_var
        else:
            mean, var = running_mean.value, running_var.value

        multiplier = scale * jax.lax.rsqrt(var + self.epsilon)
        shift = bias - mean * multiplier
        return (x32 * multiplier + shift).astype(self.dtype)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, C) float32 mean over the spatial axes.

    The references pool with fixed windows sized for their input (e.g. ``AvgPool2d(8)`` after a
    8x8 map on 32x32 CIFAR images), which equals this global mean there; the global mean also
    serves 64x64 TinyImageNet inputs.
    """
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """ShuffleNet's channel shuffle on NHWC: channel ``g * (C / groups) + j`` moves to
    ``j * groups + g``, the same permutation the references apply to NCHW. Shape preserved."""
    *batch_dims, channels = x.shape
    x = x.reshape(*batch_dims, groups, channels // groups)
    return jnp.swapaxes(x, -1, -2).reshape(*batch_dims, channels)
