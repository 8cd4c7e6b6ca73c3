"""CIFAR-100 under the mdistiller protocol (240 epochs, batch 64, SGD).

Train a teacher, then distil it:

  python launch.py --config=configs/cifar100.py:student=resnet32x4 \
      --workdir=runs/cifar100/resnet32x4
  python launch.py \
      --config=configs/cifar100.py:teacher=resnet32x4,student=resnet8x4,method=figkd \
      --config.teacher.workdir=runs/cifar100/resnet32x4 \
      --workdir=runs/cifar100/resnet32x4-resnet8x4-figkd

Methods: ce, kd, dkd, figkd, dist, mlkd (add --config.method.standardize=True for
logit standardization, with each pair's published +LS recipe). mlkd takes its authors'
released learning rate and epochs per pair (480 or 960 epochs; protocol.MLKD_SOLVERS) and
trains on a weak and a strong view of each batch. Pairs and the source of every value:
figkd_jax/trainer/protocol.py, docs/protocol.md.
"""

from configs import benchmarks


def get_config(arg=None):
    return benchmarks.benchmark_config("cifar100", arg)
