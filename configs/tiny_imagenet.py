"""TinyImageNet (64x64, 200 classes) with the CIFAR-style models and protocol.

Prepare the data once (see README), then:

  python launch.py --config=configs/tiny_imagenet.py:student=resnet32x4 \
      --workdir=runs/tin/resnet32x4
  python launch.py \
      --config=configs/tiny_imagenet.py:teacher=resnet32x4,student=resnet8x4,method=figkd \
      --config.teacher.workdir=runs/tin/resnet32x4 --workdir=runs/tin/r32x4-r8x4-figkd
"""

from configs import benchmarks


def get_config(arg=None):
    return benchmarks.benchmark_config("tiny_imagenet", arg)
