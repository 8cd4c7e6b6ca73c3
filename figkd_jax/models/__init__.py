"""Model zoo: the teachers and students of the benchmark, equal to their PyTorch references.

``create(name, num_classes=...)`` returns a Flax Linen module; ``names()`` lists the registry.

CIFAR-style models (3x3 or 1x1 stem, no early down-sampling; for 32x32 CIFAR-100 and 64x64
TinyImageNet), from mdistiller / RepDistiller ``models/cifar``:
``resnet8 resnet14 resnet20 resnet32 resnet44 resnet56 resnet110 resnet8x4 resnet32x4``
(resnet.py), ``resnet18 resnet50`` (resnetv2.py: "ResNet18", "ResNet50"),
``wrn_16_1 wrn_16_2 wrn_40_1 wrn_40_2``, ``vgg8 vgg11 vgg13 vgg16 vgg19`` (all with BatchNorm,
the references' ``vgg*_bn``), ``mobilenetv2`` (``mobile_half``: T=6, width 0.5),
``shufflenetv1`` (``ShuffleV1``), ``shufflenetv2`` (``ShuffleV2``), and the TinyImageNet
student ``mobilenetv2_tin`` (``mv2_tinyimagenet.MobileNetV2``: full width, ReLU6, biased convs).

ImageNet-style models (7x7 stride-2 stem + max-pool, for 224x224), as torchvision:
``resnet18_imagenet resnet34_imagenet resnet50_imagenet``, and ``mobilenetv1`` (mdistiller's
``models/imagenet/mobilenetv1.py``, the student of ResNet-50 on ImageNet).

Calling convention::

    model = create("resnet8x4", num_classes=100, dtype=jnp.bfloat16)
    variables = model.init(key, images, train=False)  # {"params", "batch_stats"}
    logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
    logits = model.apply(variables, images, train=False)

``images``: (N, H, W, 3) float. ``logits``: (N, num_classes) float32 whatever ``dtype``.
``dtype`` is the compute dtype of convolutions and activations; parameters and BatchNorm
statistics are always float32, batch statistics are computed in float32, and the global pooling
and classifier run in float32 so the logits that the distillation losses read carry no
bfloat16 rounding. There is no dropout or other randomness at apply time.

BatchNorm (``layers.BatchNorm``) follows PyTorch: momentum 0.1, epsilon 1e-5, normalisation with
the biased batch variance, running variance updated with the unbiased one. Under ``jax.jit``
with the batch sharded over a ``Mesh`` (``NamedSharding`` on the batch axis) the batch mean and
variance are reductions over the global, logical batch, so the statistics span all devices with
no extra code (like PyTorch's SyncBatchNorm). Under ``shard_map`` / ``pmap`` each program sees
only its shard: pass ``bn_axis_name`` to ``create`` to average the statistics over that axis.

Parameter tree, for importing PyTorch checkpoints. The module structure is 1:1 with the
reference (same blocks, same order, same attribute names). A PyTorch ``state_dict`` key maps to
a Flax path by one rule: split the key at ".", merge every numeric component (an
``nn.Sequential`` / ``nn.ModuleList`` index) into the component before it with "_", and rename
the leaf:

- ``layer2.0.downsample.1.running_var`` -> ``batch_stats / layer2_0 / downsample_1 / var``
- ``blocks.3.0.conv.3.weight`` -> ``params / blocks_3_0 / conv_3 / kernel``

Leaves: conv ``weight`` (O, I/groups, kh, kw) -> ``kernel`` (kh, kw, I/groups, O), i.e.
transpose (2, 3, 1, 0); linear ``weight`` (O, I) -> ``kernel`` (I, O); BatchNorm ``weight`` ->
``scale``; ``bias`` -> ``bias``; ``running_mean`` / ``running_var`` -> ``mean`` / ``var`` in
``batch_stats``; ``num_batches_tracked`` has no counterpart. Each module's docstring lists its
tree.
"""

from __future__ import annotations

from figkd_jax import extras

extras.require_train()

import math
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import linen as nn

from figkd_jax.models.layers import BatchNorm
from figkd_jax.models.mobilenetv1 import MobileNetV1
from figkd_jax.models.mobilenetv2 import MobileNetV2
from figkd_jax.models.mobilenetv2_tin import MobileNetV2TinyImageNet
from figkd_jax.models.resnet import BasicBlock, Bottleneck, CifarResNet, ResNet
from figkd_jax.models.shufflenet import ShuffleNetV1, ShuffleNetV2
from figkd_jax.models.vgg import VGG, VGG_CONFIGS
from figkd_jax.models.wrn import WideResNet

__all__ = [
    "VGG",
    "BatchNorm",
    "CifarResNet",
    "MobileNetV1",
    "MobileNetV2",
    "MobileNetV2TinyImageNet",
    "ResNet",
    "ShuffleNetV1",
    "ShuffleNetV2",
    "WideResNet",
    "compute_dtype",
    "count_params",
    "create",
    "input_style",
    "names",
]

InputStyle = Literal["cifar", "imagenet"]
_Builder = Callable[..., nn.Module]

_CIFAR_RESNETS = {
    "resnet8": (8, (16, 16, 32, 64)),
    "resnet14": (14, (16, 16, 32, 64)),
    "resnet20": (20, (16, 16, 32, 64)),
    "resnet32": (32, (16, 16, 32, 64)),
    "resnet44": (44, (16, 16, 32, 64)),
    "resnet56": (56, (16, 16, 32, 64)),
    "resnet110": (110, (16, 16, 32, 64)),
    "resnet8x4": (8, (32, 64, 128, 256)),
    "resnet32x4": (32, (32, 64, 128, 256)),
}
_RESNET18 = (BasicBlock, (2, 2, 2, 2))
_RESNET34 = (BasicBlock, (3, 4, 6, 3))
_RESNET50 = (Bottleneck, (3, 4, 6, 3))
_FOUR_STAGE_RESNETS = {
    "resnet18": (*_RESNET18, "cifar"),
    "resnet50": (*_RESNET50, "cifar"),
    "resnet18_imagenet": (*_RESNET18, "imagenet"),
    "resnet34_imagenet": (*_RESNET34, "imagenet"),
    "resnet50_imagenet": (*_RESNET50, "imagenet"),
}
_WRNS = {"wrn_16_1": (16, 1), "wrn_16_2": (16, 2), "wrn_40_1": (40, 1), "wrn_40_2": (40, 2)}


def _registry() -> dict[str, tuple[_Builder, InputStyle]]:
    registry: dict[str, tuple[_Builder, InputStyle]] = {}
    for name, (depth, filters) in _CIFAR_RESNETS.items():
        registry[name] = (partial(CifarResNet, depth=depth, num_filters=filters), "cifar")
    for name, (block, stages, style) in _FOUR_STAGE_RESNETS.items():
        registry[name] = (partial(ResNet, block=block, stage_sizes=stages, style=style), style)
    for name, (depth, widen) in _WRNS.items():
        registry[name] = (partial(WideResNet, depth=depth, widen_factor=widen), "cifar")
    for depth, config in VGG_CONFIGS.items():
        registry[f"vgg{depth}"] = (partial(VGG, config=config), "cifar")
    registry["mobilenetv1"] = (MobileNetV1, "imagenet")
    registry["mobilenetv2"] = (partial(MobileNetV2, width_mult=0.5, expansion=6), "cifar")
    registry["mobilenetv2_tin"] = (MobileNetV2TinyImageNet, "cifar")
    registry["shufflenetv1"] = (ShuffleNetV1, "cifar")
    registry["shufflenetv2"] = (ShuffleNetV2, "cifar")
    return dict(sorted(registry.items()))


_MODELS = _registry()


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
    """The activation dtype of a config's ``dtype`` name ("float32" or "bfloat16")."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {name!r}")
    return COMPUTE_DTYPES[name]


def names() -> list[str]:
    """All registry names, sorted."""
    return list(_MODELS)


def _entry(name: str) -> tuple[_Builder, InputStyle]:
    if name not in _MODELS:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(_MODELS)}")
    return _MODELS[name]


def create(
    name: str,
    *,
    num_classes: int,
    dtype: Any = jnp.float32,
    bn_axis_name: str | None = None,
) -> nn.Module:
    """The Flax module registered as ``name`` with a ``num_classes``-way linear head.

    ``dtype``: compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32 and the logits are
    float32. ``bn_axis_name``: mapped axis over which BatchNorm averages batch statistics under
    ``shard_map`` / ``pmap`` (leave None under ``jax.jit``, where the batch is already global).
    """
    builder, _ = _entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return builder(num_classes=num_classes, dtype=dtype, bn_axis_name=bn_axis_name)


def input_style(name: str) -> InputStyle:
    """ "cifar" (32x32 / 64x64 inputs, 3x3 stem) or "imagenet" (224x224, 7x7 stem + max-pool)."""
    return _entry(name)[1]


def count_params(params: Any) -> int:
    """Number of scalars in a pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. the
    ``"params"`` collection, which equals PyTorch's ``sum(p.numel() for p in
    model.parameters())`` for these models)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
