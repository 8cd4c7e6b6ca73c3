"""Reference hyperparameters of every benchmark pair, read from figkd_jax.trainer.protocol.

`benchmark_config(dataset, arg)` turns a config argument such as
``teacher=resnet32x4,student=resnet8x4,method=figkd`` into a full config:
the default (configs/default.py) with the dataset, the models, the method
and the pair's values of `figkd_jax.trainer.protocol` filled in (the dataset's solver,
learning rate, DKD's beta, the KD+LS and MLKD+LS recipes, MLKD's own solver, and the
teacher's own learning rate for a sweep that trains it); each value's source is there.
The per-dataset config files (cifar100.py, tiny_imagenet.py, finegrained.py) are
one-line wrappers.
"""

from __future__ import annotations

import ml_collections

from configs import default
from figkd_jax.trainer import protocol

FINEGRAINED_DATASETS = protocol.FINEGRAINED_DATASETS


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
    if dataset in protocol.SOLVERS:  # every benchmark; digits (benchmarks' quick paths) keeps
        _apply(config, protocol.SOLVERS[dataset])  # configs/default.py's solver
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
        for block, recipe in (
            (config.method.kd, protocol.ls_recipe("kd", dataset, teacher, student)),
            (config.method.mlkd, protocol.ls_recipe("mlkd", dataset, teacher, student)),
        ):
            block.ls_temperature, block.ls_kd_weight = recipe.temperature, recipe.kd_weight
        # A teacher trained inside a sweep follows its own protocol, not the student's.
        config.sweep.teacher_learning_rate = protocol.learning_rate(
            dataset, teacher, base_learning_rate
        )
        if dataset in protocol.MLKD_SOLVERS:
            # MLKD's own solver, for a run of method=mlkd and the mlkd runs of a sweep.
            mlkd = protocol.MLKD_SOLVERS[dataset][teacher, student]
            config.sweep.mlkd_num_epochs = mlkd.num_epochs
            config.sweep.mlkd_learning_rate = mlkd.learning_rate
            if method == "mlkd":
                _apply(config, mlkd)
    return config


def _apply(config: ml_collections.ConfigDict, solver: protocol.Solver) -> None:
    config.batch_size, config.num_epochs = solver.batch_size, solver.num_epochs
    config.optim.learning_rate = solver.learning_rate
    config.optim.lr_decay_epochs = solver.lr_decay_epochs
    config.optim.weight_decay = solver.weight_decay
