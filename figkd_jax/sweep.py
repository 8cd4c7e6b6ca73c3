"""Several runs of one config in one parent workdir: methods x seeds, optionally
after training their teacher.

Layout of ``<workdir>``:

- ``teacher/``: the teacher run (``config.teacher.model``, method ``ce``), when
  ``config.sweep.train_teacher`` is set;
- ``<method>_seed<seed>/``: one run per method and seed.

Each run is an ordinary run (its own config.json, checkpoints and
results.json), so an interrupted sweep resumes run by run when relaunched,
and ``python -m figkd_jax.report <workdir>`` tabulates it.
"""

from __future__ import annotations

import os

import ml_collections
from absl import logging

from figkd_jax import methods, train
from figkd_jax.run_setup import ConfigError, build_run


def is_sweep(config: ml_collections.ConfigDict) -> bool:
    """Whether `config` describes several runs (methods x seeds, or a teacher first)."""
    return bool(config.sweep.methods or config.sweep.seeds or config.sweep.train_teacher)


def plan(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
    """(sub-directory, config) of every run of the sweep, in launch order."""
    runs = []
    base = ml_collections.ConfigDict(config.to_dict())
    base.sweep.methods, base.sweep.seeds, base.sweep.train_teacher = (), (), False
    base.sweep.teacher_num_epochs = base.sweep.teacher_lr_decay_epochs = None
    base.sweep.teacher_train_split = None
    if config.sweep.train_teacher:
        if not config.teacher.model:
            raise ConfigError("config.sweep.train_teacher needs config.teacher.model")
        teacher = ml_collections.ConfigDict(base.to_dict())
        teacher.model = config.teacher.model
        teacher.method.name = "ce"
        teacher.teacher.model = None
        teacher.teacher.workdir = None
        teacher.teacher.checkpoint = None
        if config.sweep.teacher_num_epochs is not None:
            teacher.num_epochs = config.sweep.teacher_num_epochs
        if config.sweep.teacher_lr_decay_epochs is not None:
            teacher.optim.lr_decay_epochs = tuple(config.sweep.teacher_lr_decay_epochs)
        if config.sweep.teacher_train_split is not None:
            teacher.dataset.train_split = config.sweep.teacher_train_split
        runs.append(("teacher", teacher))
    for method in config.sweep.methods or (config.method.name,):
        methods.get(method)
        for seed in config.sweep.seeds or (config.seed,):
            run = ml_collections.ConfigDict(base.to_dict())
            run.method.name = method
            run.seed = seed
            if config.sweep.train_teacher and methods.get(method).needs_teacher:
                run.teacher.workdir = "teacher"  # made absolute by run()
                run.teacher.checkpoint = None
            runs.append((f"{method}_seed{seed}", run))
    return runs


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every run of the plan (validated first), then prints their table."""
    runs = plan(config)
    for _, run_config in runs:
        if run_config.teacher.workdir == "teacher":
            run_config.teacher.workdir = os.path.join(workdir, "teacher")
        build_run(run_config)
    results = {}
    for name, run_config in runs:
        logging.info("Sweep: run %s", name)
        results[name] = train.train_and_evaluate(run_config, os.path.join(workdir, name))
    print(summary_table(results))
    return results


def summary_table(results: dict[str, dict]) -> str:
    """A Markdown table: run, model, method, best and last top-1, wall time."""
    lines = [
        "| run | model | method | best top-1 (%) | last top-1 (%) | wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['model']} | {r['method']} | {100 * r['best_top1']:.2f} "
            f"| {100 * r['last_top1']:.2f} | {r['wall_time']:.1f} |"
        )
    return "\n".join(lines)
