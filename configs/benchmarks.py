"""Reference hyperparameters of every benchmark pair, read from figkd_jax.trainer.protocol.

`benchmark_config(dataset, arg)` turns a config argument such as
``teacher=resnet32x4,student=resnet8x4,method=figkd`` into a full config:
the default (configs/default.py) with the dataset, the models, the method
and the pair's values of `figkd_jax.trainer.protocol.PAIRS` filled in (learning rate,
DKD's beta, the KD+LS recipe, and the teacher's own learning rate for a sweep
that trains it). The per-dataset config files (cifar100.py, tiny_imagenet.py,
finegrained.py) are one-line wrappers.
"""

from __future__ import annotations

import ml_collections

from configs import default
from figkd_jax.trainer import protocol

FINEGRAINED_DATASETS = protocol.FINEGRAINED_DATASETS

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
    teacher, or, with a teacher, a sweep's base config), ``seed``.
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
    known = protocol.pairs(dataset)

    config = default.get_config()
    config.dataset.name = dataset
    config.model = student
    config.method.name = method
    config.seed = int(fields.get("seed", 0))
    solver = protocol.SOLVERS.get(dataset)
    if solver is not None:
        config.batch_size, config.num_epochs = solver.batch_size, solver.num_epochs
        config.optim.learning_rate = solver.learning_rate
        config.optim.lr_decay_epochs = solver.lr_decay_epochs
        config.optim.weight_decay = solver.weight_decay
    base_learning_rate = config.optim.learning_rate
    config.optim.learning_rate = protocol.learning_rate(dataset, student, base_learning_rate)
    # A teacher without a distilling method serves a sweep's methods (config.sweep.methods).
    if method != "ce" or teacher is not None:
        if (teacher, student) not in known:
            raise ValueError(
                f"teacher={teacher}, student={student} is not a {dataset} benchmark pair; "
                f"valid pairs: {sorted(known)}"
            )
        pair = known[teacher, student]
        config.teacher.model = teacher
        config.method.dkd.beta = pair.dkd_beta
        config.method.kd.ls_temperature, config.method.kd.ls_kd_weight = pair.kd_ls
        # A teacher trained inside a sweep follows its own protocol, not the student's.
        config.sweep.teacher_learning_rate = protocol.learning_rate(
            dataset, teacher, base_learning_rate
        )
    if method == "mlkd" and dataset == "cifar100":
        config.optim.learning_rate, config.num_epochs = MLKD_CIFAR_SOLVER[teacher, student]
    return config
