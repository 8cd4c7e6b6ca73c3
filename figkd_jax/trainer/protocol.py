"""The benchmark pairs: per-pair protocol values and published top-1, each with its source.

`configs/benchmarks.py` reads the protocol values (learning rate, DKD's beta, the +LS
recipes, MLKD's solver) and `figkd_jax.tools.report` the published numbers; docs/protocol.md
shows the same tables (tests/test_protocol.py checks that they agree and that every value
names its source).

Provenance, the one rule of this module: every published number and every setting names
where it comes from, in a ``source`` string of one of the forms

- ``owner/repo@commit:path`` (a file of the authors' repository at a commit), optionally
  followed by a space and a remark in parentheses;
- ``<paper>, Table N, <row>``;
- ``this project: <reason>``, for a value no author released (say why).

The format, so that a pair, a column or a recipe is one line:

- `PAIRS` holds one `Pair` per line: dataset, teacher, student (registry names), the
  student's base learning rate and DKD's beta with the ``source`` of both, and ``top1``, a
  dict from column key to the published top-1 (%) of that pair; a key that is absent means
  nothing was published.
- `COLUMNS` declares every column key once, with its header. A key is the method label
  the report gives a run (``"kd"``, ``"kd+LS"``, ...), or ``"teacher"`` / ``"student"`` for
  the two models trained alone. `TOP1_SOURCES` names the source of each (dataset, column)
  that holds a number.
- `KD_LS` and `MLKD_LS` (read through `ls_recipe`): the (temperature, KD weight) of each
  pair's published +LS run, `LS_DEFAULT` elsewhere; `MLKD_SOLVERS`: MLKD's own solver per
  dataset (CIFAR-100, ImageNet) and pair; `SOLVERS`: each dataset's solver.

No FiGKD number is shown as published: the paper's tables (arXiv:2505.11897) could not be
read from any stored source, and the numbers this table once held came from a page that
names none (docs/method.md).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

# Commits of the authors' repositories every source below refers to.
MDISTILLER = "megvii-research/mdistiller@a08d46f"
MLKD_REPO = "Jin-Ying/Multi-Level-Logit-Distillation@77b91ec"
LS_REPO = "sunshangquan/logit-standardization-KD@f6e5aa5"
DIST_REPO = "hunto/DIST_KD@2418f18"
DIST_TRAINER = "hunto/image_classification_sota@d9662f7"
CRD_REPO = "HobbitLong/RepDistiller@b84f547"

_SOURCE_FORMS = (
    re.compile(r"[\w.-]+/[\w.-]+@[0-9a-f]{7,40}:\S+( \(.+\))?"),
    re.compile(r".+, Table \w+, .+"),
    re.compile(r"this project: .+"),
)


def is_source(text: str) -> bool:
    """Whether `text` is a source in one of the module's forms (see the module docstring)."""
    return any(form.fullmatch(text) for form in _SOURCE_FORMS)


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of published top-1: its key (a report method label) and header."""

    key: str
    header: str


@dataclasses.dataclass(frozen=True)
class Pair:
    """One benchmark pair: its protocol values and its published top-1 (%) by column key.

    `learning_rate` is the student's base rate, also when the student is trained alone;
    `source` is where it and `dkd_beta` come from.
    """

    dataset: str
    teacher: str
    student: str
    learning_rate: float
    dkd_beta: float
    top1: Mapping[str, float]
    source: str


@dataclasses.dataclass(frozen=True)
class LsRecipe:
    """The logit-standardization authors' (base temperature, KD weight) of one run."""

    temperature: float
    kd_weight: float
    source: str


@dataclasses.dataclass(frozen=True)
class Solver:
    """A solver: batch, epochs, base learning rate, the epochs after which it decays x0.1, and
    the weight decay (SGD, momentum 0.9, throughout)."""

    batch_size: int
    num_epochs: int
    learning_rate: float
    lr_decay_epochs: tuple[int, ...]
    source: str
    weight_decay: float = 5e-4


COLUMNS: tuple[Column, ...] = (
    Column("teacher", "teacher alone"),
    Column("student", "student alone"),
    Column("kd", "KD"),
    Column("dkd", "DKD"),
    Column("dist", "DIST"),
    Column("mlkd", "MLKD"),
    Column("kd+LS", "KD+LS"),
    Column("dkd+LS", "DKD+LS"),
    Column("mlkd+LS", "MLKD+LS"),
)

TOP1_SOURCES: dict[tuple[str, str], str] = {
    ("cifar100", "teacher"): f"{CRD_REPO}:README.md (teacher row of both tables)",
    ("cifar100", "student"): f"{CRD_REPO}:README.md (student row of both tables)",
    ("cifar100", "kd"): f"{MDISTILLER}:README.md (DKD section, KD row)",
    ("cifar100", "dkd"): f"{MDISTILLER}:README.md (DKD section, DKD row)",
    ("cifar100", "dist"): f"{DIST_REPO}:README.md (CIFAR-100 table, mean of its runs)",
    ("cifar100", "mlkd"): f"{LS_REPO}:README.md (MLKD row)",
    ("cifar100", "kd+LS"): f"{LS_REPO}:README.md (KD+Ours row)",
    ("cifar100", "dkd+LS"): f"{LS_REPO}:README.md (DKD+Ours row)",
    ("cifar100", "mlkd+LS"): f"{LS_REPO}:README.md (MLKD+Ours row)",
    ("tiny_imagenet", "kd"): f"{MDISTILLER}:README.md (DOT section, Tiny-ImageNet, KD row)",
    ("imagenet2012", "kd"): f"{MDISTILLER}:README.md (On ImageNet, KD row)",
    ("imagenet2012", "dkd"): f"{MDISTILLER}:README.md (On ImageNet, DKD row)",
    # DIST's own trainer (batch 256, lr 0.1); the teachers and ResNet-18 are torchvision's
    # weights. Its MobileNetV1 alone (70.13) is another model than mdistiller's: left out.
    ("imagenet2012", "dist"): f"{DIST_REPO}:README.md (ImageNet, Baseline settings, DIST)",
    ("imagenet2012", "teacher"): f"{DIST_REPO}:README.md (ImageNet, Baseline settings, teacher)",
    ("imagenet2012", "student"): f"{DIST_REPO}:README.md (ImageNet, Baseline settings, student)",
}

FINEGRAINED_DATASETS = ("caltech_birds2011", "stanford_dogs", "mit67", "stanford40")

# The logit-standardization authors' command for KD+LS, DKD+LS and MLKD+LS.
LS_DEFAULT = LsRecipe(2.0, 9.0, f"{LS_REPO}:README.md (--logit-stand --base-temp 2 --kd-weight 9)")

_CIFAR_SOLVER = Solver(64, 240, 0.05, (150, 180, 210), f"{MDISTILLER}:configs/cifar100/kd.yaml")

# Each dataset's solver, for the teacher and every student (a pair's own rate aside).
SOLVERS: dict[str, Solver] = {
    "cifar100": _CIFAR_SOLVER,
    "tiny_imagenet": Solver(
        256, 200, 0.2, (60, 120, 160), f"{MDISTILLER}:configs/tiny_imagenet/dot/r18_mv2.yaml"
    ),
    **{
        name: dataclasses.replace(
            _CIFAR_SOLVER,
            source="this project: the published fine-grained recipe is unknown; the CIFAR-100 "
            "optimiser and schedule (docs/protocol.md)",
        )
        for name in FINEGRAINED_DATASETS
    },
    "imagenet2012": Solver(
        512,
        100,
        0.2,
        (30, 60, 90),
        "megvii-research/mdistiller@e8c5bb3:configs/imagenet/r34_r18/kd.yaml (SOLVER; the same "
        "in r50_mv1/kd.yaml @fae6658)",
        weight_decay=1e-4,
    ),
}

_DKD = f"{MDISTILLER}:configs/cifar100/dkd"
_NO_TIN_RECIPE = (
    "this project: mdistiller's TinyImageNet solver; DKD's beta of the CIFAR-100 pair (no "
    "TinyImageNet DKD recipe released)"
)
_FINEGRAINED = "this project: recipe unknown; CIFAR-100 rate, DKD's default beta"
_DKD_IMAGENET = "megvii-research/mdistiller@e8c5bb3:configs/imagenet"  # r34_r18

# fmt: off
PAIRS: tuple[Pair, ...] = (
    #    dataset          teacher              student              lr    DKD beta  published top-1 (%); source of lr and beta
    Pair("cifar100",      "resnet32x4",        "resnet8x4",         0.05, 8.0, {"teacher": 79.42, "student": 72.50, "kd": 73.33, "dkd": 76.32, "dist": 76.31, "mlkd": 77.08, "kd+LS": 76.62, "dkd+LS": 77.01, "mlkd+LS": 78.28}, f"{_DKD}/res32x4_res8x4.yaml"),
    Pair("cifar100",      "resnet56",          "resnet20",          0.05, 2.0, {"teacher": 72.34, "student": 69.06, "kd": 70.66, "dkd": 71.97, "dist": 71.75, "mlkd": 72.19, "kd+LS": 71.43, "dkd+LS": 72.32, "mlkd+LS": 72.33}, f"{_DKD}/res56_res20.yaml"),
    Pair("cifar100",      "resnet110",         "resnet32",          0.05, 2.0, {"teacher": 74.31, "student": 71.14, "kd": 73.08, "dkd": 74.11, "mlkd": 74.11, "kd+LS": 74.17, "dkd+LS": 74.29, "mlkd+LS": 74.32}, f"{_DKD}/res110_res32.yaml"),
    Pair("cifar100",      "wrn_40_2",          "wrn_16_2",          0.05, 6.0, {"teacher": 75.61, "student": 73.26, "kd": 74.92, "dkd": 76.23, "mlkd": 76.63, "kd+LS": 76.11, "dkd+LS": 76.39, "mlkd+LS": 76.95}, f"{_DKD}/wrn40_2_wrn_16_2.yaml"),
    Pair("cifar100",      "wrn_40_2",          "wrn_40_1",          0.05, 6.0, {"teacher": 75.61, "student": 71.98, "kd": 73.54, "dkd": 74.81, "dist": 74.43, "mlkd": 75.35, "kd+LS": 74.37, "dkd+LS": 74.89, "mlkd+LS": 75.56}, f"{_DKD}/wrn40_2_wrn_40_1.yaml"),
    Pair("cifar100",      "vgg13",             "vgg8",              0.05, 6.0, {"teacher": 74.64, "student": 70.36, "kd": 72.98, "dkd": 74.68, "mlkd": 75.18, "kd+LS": 74.36, "dkd+LS": 74.81, "mlkd+LS": 75.22}, f"{_DKD}/vgg13_vgg8.yaml"),
    Pair("cifar100",      "resnet32x4",        "shufflenetv2",      0.01, 8.0, {"teacher": 79.42, "student": 71.82, "kd": 74.45, "dkd": 77.07, "dist": 77.35, "mlkd": 78.44, "kd+LS": 75.56, "dkd+LS": 77.37, "mlkd+LS": 78.76}, f"{_DKD}/res32x4_shuv2.yaml"),
    Pair("cifar100",      "vgg13",             "mobilenetv2",       0.01, 6.0, {"teacher": 74.64, "student": 64.60, "kd": 67.37, "dkd": 69.71, "mlkd": 70.57, "kd+LS": 68.61, "dkd+LS": 69.98, "mlkd+LS": 70.94}, f"{_DKD}/vgg13_mv2.yaml"),
    Pair("cifar100",      "resnet50",          "mobilenetv2",       0.01, 8.0, {"teacher": 79.34, "student": 64.60, "kd": 67.35, "dkd": 70.35, "dist": 68.66, "mlkd": 71.04, "kd+LS": 69.02, "dkd+LS": 70.45, "mlkd+LS": 71.19}, f"{_DKD}/res50_mv2.yaml"),
    Pair("cifar100",      "resnet32x4",        "shufflenetv1",      0.01, 8.0, {"teacher": 79.42, "student": 70.50, "kd": 74.07, "dkd": 76.45, "dist": 76.34}, f"{_DKD}/res32x4_shuv1.yaml"),
    Pair("cifar100",      "wrn_40_2",          "shufflenetv1",      0.01, 8.0, {"teacher": 75.61, "student": 70.50, "kd": 74.83, "dkd": 76.70}, f"{_DKD}/wrn40_2_shuv1.yaml"),
    Pair("tiny_imagenet", "resnet18",          "mobilenetv2_tin",   0.2,  8.0, {"kd": 58.35}, f"{MDISTILLER}:configs/tiny_imagenet/dot/r18_mv2.yaml (DKD's default beta)"),
    Pair("tiny_imagenet", "resnet18",          "shufflenetv2",      0.2,  8.0, {"kd": 62.26}, f"{MDISTILLER}:configs/tiny_imagenet/dot/r18_shuv2.yaml (DKD's default beta)"),
    Pair("tiny_imagenet", "resnet32x4",        "resnet8x4",         0.2,  8.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "resnet56",          "resnet20",          0.2,  2.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "resnet110",         "resnet32",          0.2,  2.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "wrn_40_2",          "wrn_16_2",          0.2,  6.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "wrn_40_2",          "wrn_40_1",          0.2,  6.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "vgg13",             "vgg8",              0.2,  6.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "resnet32x4",        "shufflenetv2",      0.2,  8.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "vgg13",             "mobilenetv2",       0.2,  6.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "resnet50",          "mobilenetv2",       0.2,  8.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "resnet32x4",        "shufflenetv1",      0.2,  8.0, {}, _NO_TIN_RECIPE),
    Pair("tiny_imagenet", "wrn_40_2",          "shufflenetv1",      0.2,  8.0, {}, _NO_TIN_RECIPE),
    Pair("caltech_birds2011", "resnet34_imagenet", "resnet18_imagenet", 0.05, 8.0, {}, _FINEGRAINED),
    Pair("mit67",         "resnet34_imagenet", "resnet18_imagenet", 0.05, 8.0, {}, _FINEGRAINED),
    Pair("stanford40",    "resnet34_imagenet", "resnet18_imagenet", 0.05, 8.0, {}, _FINEGRAINED),
    Pair("stanford_dogs", "resnet34_imagenet", "resnet18_imagenet", 0.05, 8.0, {}, _FINEGRAINED),
    Pair("imagenet2012",  "resnet34_imagenet", "resnet18_imagenet", 0.2,  0.5, {"teacher": 73.31, "student": 69.76, "kd": 71.03, "dkd": 71.70, "dist": 72.07}, f"{_DKD_IMAGENET}/r34_r18/dkd.yaml"),
    Pair("imagenet2012",  "resnet50_imagenet", "mobilenetv1",       0.2,  2.0, {"teacher": 76.16, "kd": 70.50, "dkd": 72.05, "dist": 73.24}, "megvii-research/mdistiller@fae6658:configs/imagenet/r50_mv1/dkd.yaml"),
)

# MLKD's own solver per dataset and pair, as released with the paper (the authors' trainer
# "ours"). CIFAR-100 (configs/cifar100/ours/): the decays stay after epochs 150, 180, 210
# whatever the length. A later commit of theirs (5ee473f, 2024) cut the same-architecture
# pairs to 240 epochs; the published numbers come from these (the LS authors' MLKD configs and
# logs agree: docs/protocol.md). ImageNet (configs/imagenet/*/kd_ours.yaml): mdistiller's
# ImageNet solver but lr 0.1 for ResNet-34 -> ResNet-18. Their "MobileNetV2" student is
# mdistiller's MobileNetV1 under another name (models/imagenet/mobilenetv2.py: the same layers).
_MLKD = f"{MLKD_REPO}:configs/cifar100/ours"
_MLKD_IMAGENET = f"{MLKD_REPO}:configs/imagenet"
MLKD_SOLVERS: dict[str, dict[tuple[str, str], Solver]] = {
    "cifar100": {
        ("resnet32x4", "resnet8x4"):    Solver(64, 480, 0.025, (150, 180, 210), f"{_MLKD}/res32x4_res8x4.yaml"),
        ("resnet56", "resnet20"):       Solver(64, 480, 0.025, (150, 180, 210), f"{_MLKD}/res56_res20.yaml"),
        ("resnet110", "resnet32"):      Solver(64, 480, 0.025, (150, 180, 210), f"{_MLKD}/res110_res32.yaml"),
        ("wrn_40_2", "wrn_16_2"):       Solver(64, 480, 0.025, (150, 180, 210), f"{_MLKD}/wrn40_2_wrn_16_2.yaml"),
        ("wrn_40_2", "wrn_40_1"):       Solver(64, 480, 0.025, (150, 180, 210), f"{_MLKD}/wrn40_2_wrn_40_1.yaml"),
        ("vgg13", "vgg8"):              Solver(64, 480, 0.025, (150, 180, 210), f"{_MLKD}/vgg13_vgg8.yaml"),
        ("resnet32x4", "shufflenetv2"): Solver(64, 960, 0.01,  (150, 180, 210), f"{_MLKD}/res32x4_shuv2.yaml"),
        ("vgg13", "mobilenetv2"):       Solver(64, 480, 0.01,  (150, 180, 210), f"{_MLKD}/vgg13_mv2.yaml"),
        ("resnet50", "mobilenetv2"):    Solver(64, 480, 0.01,  (150, 180, 210), f"{_MLKD}/res50_mv2.yaml"),
        ("resnet32x4", "shufflenetv1"): Solver(64, 960, 0.01,  (150, 180, 210), f"{_MLKD}/res32x4_shuv1.yaml"),
        ("wrn_40_2", "shufflenetv1"):   Solver(64, 480, 0.01,  (150, 180, 210), f"{_MLKD}/wrn40_2_shuv1.yaml"),
    },
    "imagenet2012": {
        ("resnet34_imagenet", "resnet18_imagenet"): Solver(512, 100, 0.1, (30, 60, 90), f"{_MLKD_IMAGENET}/r34_r18/kd_ours.yaml", weight_decay=1e-4),
        ("resnet50_imagenet", "mobilenetv1"):       Solver(512, 100, 0.2, (30, 60, 90), f"{_MLKD_IMAGENET}/r50_mv2/kd_ours.yaml (its MobileNetV2 is mdistiller's MobileNetV1)", weight_decay=1e-4),
    },
}

# The published KD+LS run of each CIFAR-100 pair: (T, weight) in its log's name,
# logs/KD/kd,<teacher>,<student>,<T>,<weight>.txt, as the LS README links them.
_KD_LOG = f"{LS_REPO}:logs/KD/kd,"
KD_LS: dict[tuple[str, str], LsRecipe] = {
    ("resnet32x4", "resnet8x4"):    LsRecipe(2.0, 9.0, f"{_KD_LOG}resnet32x4,resnet8x4,2,9.txt"),
    ("resnet56", "resnet20"):       LsRecipe(2.0, 9.0, f"{_KD_LOG}resnet56,resnet20,2,9.txt"),
    ("resnet110", "resnet32"):      LsRecipe(2.0, 9.0, f"{_KD_LOG}resnet110,resnet32,2,9.txt"),
    ("wrn_40_2", "wrn_16_2"):       LsRecipe(2.0, 9.0, f"{_KD_LOG}wrn_40_2,wrn_16_2,2,9.txt"),
    ("wrn_40_2", "wrn_40_1"):       LsRecipe(2.0, 9.0, f"{_KD_LOG}wrn_40_2,wrn_40_1,2,9.txt"),
    ("vgg13", "vgg8"):              LsRecipe(3.0, 9.0, f"{_KD_LOG}vgg13,vgg8,3,9.txt"),
    ("resnet32x4", "shufflenetv2"): LsRecipe(2.0, 9.0, f"{_KD_LOG}resnet32x4,ShuffleV2,2,9.txt"),
    ("vgg13", "mobilenetv2"):       LsRecipe(3.0, 9.0, f"{_KD_LOG}vgg13,MobileNetV2,3,9.txt"),
    ("resnet50", "mobilenetv2"):    LsRecipe(3.0, 1.0, f"{_KD_LOG}ResNet50,MobileNetV2,3,1.txt"),
}

# The published MLKD+LS run of each CIFAR-100 pair: logs/MLKD/mlkd,<teacher>,<student>,<T>,
# <weight>.txt as the LS README links them (ResNet56 -> ResNet20: the README's link is empty).
_MLKD_LOG = f"{LS_REPO}:logs/MLKD/mlkd,"
MLKD_LS: dict[tuple[str, str], LsRecipe] = {
    ("resnet32x4", "resnet8x4"):    LsRecipe(2.0, 9.0, f"{_MLKD_LOG}resnet32x4,resnet8x4,2,9.txt"),
    ("resnet110", "resnet32"):      LsRecipe(2.0, 9.0, f"{_MLKD_LOG}res110,res32,2,9.txt"),
    ("wrn_40_2", "wrn_16_2"):       LsRecipe(2.0, 9.0, f"{_MLKD_LOG}wrn_40_2,wrn_16_2,2,9.txt"),
    ("wrn_40_2", "wrn_40_1"):       LsRecipe(2.0, 9.0, f"{_MLKD_LOG}wrn_40_2,wrn_40_1,2,9.txt"),
    ("vgg13", "vgg8"):              LsRecipe(2.0, 6.0, f"{_MLKD_LOG}vgg13,vgg8,2,6.txt"),
    ("resnet32x4", "shufflenetv2"): LsRecipe(2.0, 6.0, f"{_MLKD_LOG}resnet32x4,ShuffleV2,2,6.txt"),
    ("vgg13", "mobilenetv2"):       LsRecipe(2.0, 6.0, f"{_MLKD_LOG}vgg13,MobileNetV2,2,6.txt"),
    ("resnet50", "mobilenetv2"):    LsRecipe(2.0, 9.0, f"{_MLKD_LOG}res50,mv2,2,9.txt"),
}
# fmt: on


def all_sources() -> list[tuple[str, str]]:
    """(what, source) of every value of the tables above that names a source: the one list
    tests/test_protocol.py checks, and docs/protocol.md's "Sources of every value" shows."""
    return [
        *((f"{p.dataset} {p.teacher} -> {p.student}: lr, DKD beta", p.source) for p in PAIRS),
        *((f"{name}: solver", solver.source) for name, solver in SOLVERS.items()),
        *(
            (f"{dataset} {t} -> {s}: MLKD solver", solver.source)
            for dataset, solvers in MLKD_SOLVERS.items()
            for (t, s), solver in solvers.items()
        ),
        *((f"cifar100 {t} -> {s}: KD+LS T, weight", r.source) for (t, s), r in KD_LS.items()),
        *((f"cifar100 {t} -> {s}: MLKD+LS T, weight", r.source) for (t, s), r in MLKD_LS.items()),
        ("LS default", LS_DEFAULT.source),
        *(
            (f"{dataset}: published {key}", source)
            for (dataset, key), source in TOP1_SOURCES.items()
        ),
    ]


def pairs(dataset: str) -> dict[tuple[str, str], Pair]:
    """The pairs of `dataset`, by (teacher, student)."""
    return {(p.teacher, p.student): p for p in PAIRS if p.dataset == dataset}


def find(dataset: str, teacher: str | None, student: str) -> Pair | None:
    """The pair (teacher, student) of `dataset`, or None if it is not a benchmark pair."""
    return pairs(dataset).get((teacher, student))


def ls_recipe(method: str, dataset: str, teacher: str, student: str) -> LsRecipe:
    """The +LS recipe of `method` ("kd" or "mlkd") in the pair's published run (`KD_LS`,
    `MLKD_LS`), else the authors' default `LS_DEFAULT`."""
    published = {"kd": KD_LS, "mlkd": MLKD_LS}[method] if dataset == "cifar100" else {}
    return published.get((teacher, student), LS_DEFAULT)


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
