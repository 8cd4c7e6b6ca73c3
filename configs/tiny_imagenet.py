"""TinyImageNet (64x64, 200 classes) as mdistiller runs it, the setting of the logit-KD papers.

mdistiller's own TinyImageNet benchmark (``dataset/tiny_imagenet.py``,
``configs/tiny_imagenet/dot/*.yaml``; protocol.md): teacher ResNet18 (CIFAR stem) -> students
``mobilenetv2_tin`` (its ``mv2_tinyimagenet.MobileNetV2``) and ``shufflenetv2``; train images
rotated by up to 20 degrees (nearest, fill 0) and flipped, not cropped; TinyImageNet's own mean
and std; SGD with batch 256, 200 epochs, lr 0.2 decayed x0.1 after epochs 60, 120 and 160 (the
per-pair and solver values live in configs/benchmarks.py).

ShuffleV2: the reference pools with a fixed ``avg_pool2d(out, 4)`` written for 32x32 inputs.
On 64x64 inputs its last map is 8x8, the pool leaves 2x2x1024 = 4096 features, and its
1024-input linear layer raises a shape error: the released code cannot run this pair, so the
published ShuffleV2 numbers come from code that is not public. ``shufflenetv2`` here pools the
whole map (what the reference's pool computes at 32x32), keeping the reference's parameters;
that is the nearest definition that runs.

The CIFAR-100 pairs are accepted too, under the same setting (the FiGKD paper reports
TinyImageNet results, its abstract says; its pairs and recipe could not be read, and no
author released a TinyImageNet recipe for these pairs: figkd_jax/trainer/protocol.py).

Prepare the data once (docs/datasets.md), then:

  python launch.py --config=configs/tiny_imagenet.py:student=resnet18 --workdir=runs/tin/resnet18
  python launch.py \
      --config=configs/tiny_imagenet.py:teacher=resnet18,student=mobilenetv2_tin,method=figkd \
      --config.teacher.workdir=runs/tin/resnet18 --workdir=runs/tin/r18-mv2-figkd
"""

from configs import benchmarks


def get_config(arg=None):
    return benchmarks.benchmark_config("tiny_imagenet", arg)
