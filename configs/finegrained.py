"""Fine-grained sets (224x224, ImageNet-style ResNet34 -> ResNet18, from scratch).

`dataset` is one of caltech_birds2011, stanford_dogs, mit67, stanford40:

  python launch.py \
      --config=configs/finegrained.py:dataset=caltech_birds2011,student=resnet34_imagenet \
      --workdir=runs/cub/resnet34
  python launch.py --config=configs/finegrained.py:dataset=caltech_birds2011,\
teacher=resnet34_imagenet,student=resnet18_imagenet,method=figkd \
      --config.teacher.workdir=runs/cub/resnet34 --workdir=runs/cub/r34-r18-figkd

The published recipe is unknown; this uses the CIFAR optimiser and schedule
(docs/protocol.md: "SGD as above").
"""

from configs import benchmarks


def get_config(arg=None):
    fields = benchmarks.parse_arg(arg)
    dataset = fields.pop("dataset", None)
    if dataset not in benchmarks.FINEGRAINED_DATASETS:
        raise ValueError(
            f"config argument dataset={dataset} is not valid; use one of "
            f"{benchmarks.FINEGRAINED_DATASETS}"
        )
    config = benchmarks.benchmark_config(dataset, ",".join(f"{k}={v}" for k, v in fields.items()))
    config.eval_batch_size = 128
    return config
