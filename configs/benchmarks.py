"""Reference hyperparameters of every benchmark pair, in one place.

`benchmark_config(dataset, arg)` turns a config argument such as
``teacher=resnet32x4,student=resnet8x4,method=figkd`` into a full config:
the default (configs/default.py) with the dataset, the models, the method
and this module's per-pair overrides filled in. The per-dataset config files
(cifar100.py, tiny_imagenet.py, finegrained.py) are one-line wrappers.
"""

from __future__ import annotations

import ml_collections

from configs import default

# (teacher, student) pairs of protocol.md for CIFAR-100 and TinyImageNet,
# with DKD's beta (mdistiller's per-pair setting).
CIFAR_PAIRS: dict[tuple[str, str], float] = {
    ("resnet32x4", "resnet8x4"): 8.0,
    ("resnet56", "resnet20"): 2.0,
    ("resnet110", "resnet32"): 2.0,
    ("wrn_40_2", "wrn_16_2"): 6.0,
    ("wrn_40_2", "wrn_40_1"): 6.0,
    ("vgg13", "vgg8"): 6.0,
    ("resnet32x4", "shufflenetv2"): 8.0,
    ("vgg13", "mobilenetv2"): 6.0,
    ("resnet50", "mobilenetv2"): 8.0,
    ("resnet32x4", "shufflenetv1"): 8.0,
    ("wrn_40_2", "shufflenetv1"): 8.0,
}
# The fine-grained benchmarks use one pair of ImageNet-style ResNets.
FINEGRAINED_PAIRS: dict[tuple[str, str], float] = {
    ("resnet34_imagenet", "resnet18_imagenet"): 8.0,
}
FINEGRAINED_DATASETS = ("caltech_birds2011", "stanford_dogs", "mit67", "stanford40")

# MLKD's own solver per CIFAR-100 pair: (learning rate, epochs), from the authors'
# configs/cifar100/ours/*.yaml (Jin-Ying/Multi-Level-Logit-Distillation). Their decay
# epochs stay (150, 180, 210) also for the 480-epoch runs.
MLKD_CIFAR_SOLVER: dict[tuple[str, str], tuple[float, int]] = {
    ("resnet32x4", "resnet8x4"): (0.025, 240),
    ("resnet56", "resnet20"): (0.025, 240),
    ("resnet110", "resnet32"): (0.025, 240),
    ("wrn_40_2", "wrn_16_2"): (0.025, 240),
    ("wrn_40_2", "wrn_40_1"): (0.025, 240),
    ("vgg13", "vgg8"): (0.025, 240),
    ("resnet32x4", "shufflenetv2"): (0.01, 480),
    ("vgg13", "mobilenetv2"): (0.0025, 480),
    ("resnet50", "mobilenetv2"): (0.0025, 480),
    ("resnet32x4", "shufflenetv1"): (0.01, 480),
    ("wrn_40_2", "shufflenetv1"): (0.0025, 480),
}

# Students trained at a lower base learning rate (mdistiller: 0.01 for the
# ShuffleNets and MobileNetV2, 0.05 otherwise).
LOW_LR_STUDENTS = ("shufflenetv1", "shufflenetv2", "mobilenetv2")


def pairs(dataset: str) -> dict[tuple[str, str], float]:
    return FINEGRAINED_PAIRS if dataset in FINEGRAINED_DATASETS else CIFAR_PAIRS


def parse_arg(arg: str | None) -> dict[str, str]:
    """'a=1,b=x' -> {'a': '1', 'b': 'x'}."""
    if not arg:
        return {}
    fields = {}
    for item in arg.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"config argument {item!r} is not of the form key=value")
        fields[key.strip()] = value.strip()
    return fields


def benchmark_config(dataset: str, arg: str | None) -> ml_collections.ConfigDict:
    """The reference config of `dataset` for the pair and method named in `arg`.

    `arg` keys: ``student`` (required), ``teacher`` (required unless
    ``method=ce``), ``method`` (default ``ce``: train `student` alone, e.g. a
    teacher), ``seed``.
    """
    fields = parse_arg(arg)
    unknown = set(fields) - {"student", "teacher", "method", "seed"}
    if unknown:
        raise ValueError(
            f"unknown config argument(s) {sorted(unknown)}; valid: student, teacher, method, seed"
        )
    if "student" not in fields:
        raise ValueError("config argument student=<model> is required")
    method = fields.get("method", "ce")
    student, teacher = fields["student"], fields.get("teacher")
    known = pairs(dataset)

    config = default.get_config()
    config.dataset.name = dataset
    config.model = student
    config.method.name = method
    config.seed = int(fields.get("seed", 0))
    if method != "ce":
        if (teacher, student) not in known:
            raise ValueError(
                f"teacher={teacher}, student={student} is not a {dataset} benchmark pair; "
                f"valid pairs: {sorted(known)}"
            )
        config.teacher.model = teacher
        config.method.dkd.beta = known[teacher, student]
    if student in LOW_LR_STUDENTS:
        config.optim.learning_rate = 0.01
    if method == "mlkd" and dataset == "cifar100":
        config.optim.learning_rate, config.num_epochs = MLKD_CIFAR_SOLVER[teacher, student]
    return config
