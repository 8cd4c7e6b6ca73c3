"""The benchmark pairs: per-pair protocol values and published top-1, in one table.

`configs/benchmarks.py` reads the protocol values (learning rate, DKD's beta, the KD+LS
recipe) and `figkd_jax.tools.report` the published numbers; docs/protocol.md and docs/method.md
show the same table (tests/test_protocol.py checks all four agree).

The format, so that a pair or a column is one line:

- `PAIRS` holds one `Pair` per line: dataset, teacher, student (registry names), the
  student's base learning rate, DKD's beta, and ``top1``, a dict from column key to the
  published top-1 (%) of that pair; a key that is absent means nothing was published.
  A ``kd_ls=(T, weight)`` keyword overrides the KD+LS recipe of the published run.
- `COLUMNS` declares every column key once, with its header. A key is the method label
  the report gives a run (``"kd"``, ``"kd+LS"``, ...), or ``"teacher"`` / ``"student"`` for
  the two models trained alone. A new column is one `Column` line, then its numbers in
  the rows that have one.

Sources: CIFAR-100 teacher, student, KD and DKD from the mdistiller README; DIST from the
DIST_KD README (hunto/DIST_KD, the mean of its runs); MLKD, KD+LS
and DKD+LS from the logit-standardization README (sunshangquan/logit-standardization-KD);
FiGKD on every dataset, and the fine-grained teacher, student, KD and DKD, from the FiGKD
author's leaderboard (docs/method.md). TinyImageNet KD for mdistiller's own pairs (ResNet18 ->
MobileNetV2 / ShuffleV2): the mdistiller README, DOT section (KD+DOT, not a column here, is
64.01 and 65.75; its ShuffleV2 numbers come from code other than the released one, which
cannot classify 64x64 inputs: see configs/tiny_imagenet.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

# The logit-standardization authors' default recipe (their tools/train.py flags
# ``--base-temp 2 --kd-weight 9``): base temperature and KD weight.
LS_DEFAULT = (2.0, 9.0)


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of published top-1: its key (a report method label) and header."""

    key: str
    header: str


@dataclasses.dataclass(frozen=True)
class Pair:
    """One benchmark pair: its protocol values and its published top-1 (%) by column key.

    `learning_rate` is the student's base rate, also when the student is trained alone.
    `kd_ls` is (base temperature, KD weight) of the published KD+LS run of the pair: the
    authors' log file names (``logs/KD/kd,<teacher>,<student>,<T>,<weight>.txt``).
    """

    dataset: str
    teacher: str
    student: str
    learning_rate: float
    dkd_beta: float
    top1: Mapping[str, float]
    kd_ls: tuple[float, float] = LS_DEFAULT


COLUMNS: tuple[Column, ...] = (
    Column("teacher", "teacher alone"),
    Column("student", "student alone"),
    Column("kd", "KD"),
    Column("dkd", "DKD"),
    Column("dist", "DIST"),
    Column("mlkd", "MLKD"),
    Column("kd+LS", "KD+LS"),
    Column("dkd+LS", "DKD+LS"),
    Column("figkd", "FiGKD (published)"),
)

FINEGRAINED_DATASETS = ("caltech_birds2011", "stanford_dogs", "mit67", "stanford40")


@dataclasses.dataclass(frozen=True)
class Solver:
    """A dataset's own solver, where it is not the CIFAR-100 one of configs/default.py
    (batch 64, 240 epochs, decays after 150, 180, 210, base rate 0.05)."""

    batch_size: int
    num_epochs: int
    learning_rate: float
    lr_decay_epochs: tuple[int, ...]
    weight_decay: float = 5e-4


# mdistiller's TinyImageNet setting (configs/tiny_imagenet/dot/*.yaml), for the teacher and
# every student: batch 256, 200 epochs, lr 0.2 decayed x0.1 after 60, 120, 160.
SOLVERS: dict[str, Solver] = {
    "tiny_imagenet": Solver(
        batch_size=256, num_epochs=200, learning_rate=0.2, lr_decay_epochs=(60, 120, 160)
    ),
}

# fmt: off
PAIRS: tuple[Pair, ...] = (
    #    dataset          teacher              student              lr    DKD beta  published top-1 (%)
    Pair("cifar100",      "resnet32x4",        "resnet8x4",         0.05, 8.0, {"teacher": 79.42, "student": 72.50, "kd": 73.33, "dkd": 76.32, "dist": 76.31, "mlkd": 77.08, "kd+LS": 76.62, "dkd+LS": 77.01, "figkd": 78.05}),
    Pair("cifar100",      "resnet56",          "resnet20",          0.05, 2.0, {"teacher": 72.34, "student": 69.06, "kd": 70.66, "dkd": 71.97, "dist": 71.75, "mlkd": 72.19, "kd+LS": 71.43, "dkd+LS": 72.32}),
    Pair("cifar100",      "resnet110",         "resnet32",          0.05, 2.0, {"teacher": 74.31, "student": 71.14, "kd": 73.08, "dkd": 74.11, "mlkd": 74.11, "kd+LS": 74.17, "dkd+LS": 74.29, "figkd": 74.31}),
    Pair("cifar100",      "wrn_40_2",          "wrn_16_2",          0.05, 6.0, {"teacher": 75.61, "student": 73.26, "kd": 74.92, "dkd": 76.24, "mlkd": 76.63, "kd+LS": 76.11, "dkd+LS": 76.39, "figkd": 77.06}),
    Pair("cifar100",      "wrn_40_2",          "wrn_40_1",          0.05, 6.0, {"teacher": 75.61, "student": 71.98, "kd": 73.54, "dkd": 74.81, "dist": 74.43, "mlkd": 75.35, "kd+LS": 74.37, "dkd+LS": 74.89, "figkd": 76.04}),
    Pair("cifar100",      "vgg13",             "vgg8",              0.05, 6.0, {"teacher": 74.64, "student": 70.36, "kd": 72.98, "dkd": 74.68, "mlkd": 75.18, "kd+LS": 74.36, "dkd+LS": 74.81, "figkd": 76.17}, kd_ls=(3.0, 9.0)),
    Pair("cifar100",      "resnet32x4",        "shufflenetv2",      0.01, 8.0, {"teacher": 79.42, "student": 71.82, "kd": 74.45, "dkd": 77.07, "dist": 77.35, "mlkd": 78.44, "kd+LS": 75.56, "dkd+LS": 77.37, "figkd": 79.64}),
    Pair("cifar100",      "vgg13",             "mobilenetv2",       0.01, 6.0, {"teacher": 74.64, "student": 64.60, "kd": 67.37, "dkd": 69.71, "mlkd": 70.57, "kd+LS": 68.61, "dkd+LS": 69.98, "figkd": 71.81}, kd_ls=(3.0, 9.0)),
    Pair("cifar100",      "resnet50",          "mobilenetv2",       0.01, 8.0, {"teacher": 79.34, "student": 64.60, "kd": 67.35, "dkd": 70.35, "dist": 68.66, "mlkd": 71.04, "kd+LS": 69.02, "dkd+LS": 70.45, "figkd": 72.08}, kd_ls=(3.0, 1.0)),
    Pair("cifar100",      "resnet32x4",        "shufflenetv1",      0.01, 8.0, {"teacher": 79.42, "student": 70.50, "kd": 74.07, "dkd": 76.45, "dist": 76.34, "mlkd": 77.18, "figkd": 78.70}),
    Pair("cifar100",      "wrn_40_2",          "shufflenetv1",      0.01, 8.0, {"teacher": 75.61, "student": 70.50, "kd": 74.83, "dkd": 76.70, "mlkd": 77.44, "figkd": 78.84}),
    Pair("tiny_imagenet", "resnet18",          "mobilenetv2_tin",   0.2,  8.0, {"kd": 58.35}),
    Pair("tiny_imagenet", "resnet18",          "shufflenetv2",      0.2,  8.0, {"kd": 62.26}),
    Pair("tiny_imagenet", "resnet32x4",        "resnet8x4",         0.2,  8.0, {"figkd": 60.92}),
    Pair("tiny_imagenet", "resnet56",          "resnet20",          0.2,  2.0, {}),
    Pair("tiny_imagenet", "resnet110",         "resnet32",          0.2,  2.0, {"figkd": 59.73}),
    Pair("tiny_imagenet", "wrn_40_2",          "wrn_16_2",          0.2,  6.0, {"figkd": 61.91}),
    Pair("tiny_imagenet", "wrn_40_2",          "wrn_40_1",          0.2,  6.0, {"figkd": 60.69}),
    Pair("tiny_imagenet", "vgg13",             "vgg8",              0.2,  6.0, {"figkd": 64.52}),
    Pair("tiny_imagenet", "resnet32x4",        "shufflenetv2",      0.2,  8.0, {"figkd": 70.10}),
    Pair("tiny_imagenet", "vgg13",             "mobilenetv2",       0.2,  6.0, {"figkd": 63.99}),
    Pair("tiny_imagenet", "resnet50",          "mobilenetv2",       0.2,  8.0, {"figkd": 63.68}),
    Pair("tiny_imagenet", "resnet32x4",        "shufflenetv1",      0.2,  8.0, {"figkd": 65.84}),
    Pair("tiny_imagenet", "wrn_40_2",          "shufflenetv1",      0.2,  8.0, {"figkd": 64.95}),
    Pair("caltech_birds2011", "resnet34_imagenet", "resnet18_imagenet", 0.05, 8.0, {"teacher": 61.43, "student": 58.14, "kd": 60.92, "dkd": 62.17, "figkd": 67.93}),
    Pair("mit67",         "resnet34_imagenet", "resnet18_imagenet", 0.05, 8.0, {"teacher": 59.55, "student": 57.49, "kd": 58.78, "dkd": 60.00, "figkd": 65.67}),
    Pair("stanford40",    "resnet34_imagenet", "resnet18_imagenet", 0.05, 8.0, {"teacher": 49.06, "student": 45.94, "kd": 49.42, "dkd": 49.84, "figkd": 53.69}),
    Pair("stanford_dogs", "resnet34_imagenet", "resnet18_imagenet", 0.05, 8.0, {"teacher": 69.28, "student": 66.97, "kd": 68.28, "dkd": 69.04, "figkd": 72.79}),
)
# fmt: on


# --- ImageNet-1k (issue 24) -------------------------------------------------------------------
# Solver: megvii-research/mdistiller@e8c5bb331e78c9d79a8894ca233caae78531cf7f:
# configs/imagenet/r34_r18/{kd,dkd}.yaml (and @fae6658142ff8cad6626f2571c54fb376fd2c119:
# configs/imagenet/r50_mv1/{kd,dkd}.yaml, the same SOLVER block): batch 512, 100 epochs, lr 0.2
# decayed x0.1 after 30, 60, 90, weight decay 1e-4, momentum 0.9. DKD's beta: the same files.
# Published top-1 (%):
# - KD, DKD: megvii-research/mdistiller@a08d46f10d6102bd6e3f258ca5ac880b020ea259:README.md,
#   "On ImageNet" (71.03 / 71.70; 70.50 / 72.05).
# - DIST, and the teachers and the ResNet-18 student trained alone (torchvision's weights):
#   hunto/DIST_KD@2418f18b1fedd7c2646a7b1b9a27d5c674c2170b:README.md, "Baseline settings"
#   (its own trainer: batch 256, lr 0.1; its MobileNetV1 alone, 70.13, is another model's
#   number and is left out).
# - MLKD, KD+LS, DKD+LS on ImageNet: not found in the authors' READMEs; left out.
SOLVERS["imagenet2012"] = Solver(
    batch_size=512,
    num_epochs=100,
    learning_rate=0.2,
    lr_decay_epochs=(30, 60, 90),
    weight_decay=1e-4,
)
# fmt: off
PAIRS += (
    Pair("imagenet2012",  "resnet34_imagenet", "resnet18_imagenet", 0.2,  0.5, {"teacher": 73.31, "student": 69.76, "kd": 71.03, "dkd": 71.70, "dist": 72.07}),
    Pair("imagenet2012",  "resnet50_imagenet", "mobilenetv1",       0.2,  2.0, {"teacher": 76.16, "kd": 70.50, "dkd": 72.05, "dist": 73.24}),
)
# fmt: on
# --- end of ImageNet-1k ------------------------------------------------------------------------


def pairs(dataset: str) -> dict[tuple[str, str], Pair]:
    """The pairs of `dataset`, by (teacher, student)."""
    return {(p.teacher, p.student): p for p in PAIRS if p.dataset == dataset}


def find(dataset: str, teacher: str | None, student: str) -> Pair | None:
    """The pair (teacher, student) of `dataset`, or None if it is not a benchmark pair."""
    return pairs(dataset).get((teacher, student))


def learning_rate(dataset: str, model: str, default: float) -> float:
    """The base learning rate of `model` on `dataset`, as a student or trained alone.

    A model that is a student of some pair gets that pair's rate (mdistiller: 0.01 for the
    ShuffleNets and MobileNetV2); others, the teachers among them, get `default`.
    """
    rates = {p.learning_rate for p in PAIRS if p.dataset == dataset and p.student == model}
    if len(rates) > 1:
        raise ValueError(f"protocol.PAIRS gives {model} on {dataset} several rates: {rates}")
    return rates.pop() if rates else default


def published_top1(dataset: str, teacher: str | None, model: str, key: str) -> float | None:
    """The published top-1 (%) of column `key` for (teacher, model) on `dataset`.

    Without a teacher, `model` trained alone: the "teacher" or "student" column of any pair
    of `dataset` where `model` has that role (`key` is then ignored). None where nothing was
    published.
    """
    if teacher is not None:
        pair = find(dataset, teacher, model)
        return None if pair is None else pair.top1.get(key)
    for pair in PAIRS:
        if pair.dataset != dataset:
            continue
        for role, name in (("teacher", pair.teacher), ("student", pair.student)):
            if name == model and role in pair.top1:
                return pair.top1[role]
    return None
