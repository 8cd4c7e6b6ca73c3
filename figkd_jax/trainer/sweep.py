"""Several runs of one config in one parent workdir: methods x seeds, optionally
after training their teacher.

Layout of ``<workdir>``:

- ``teacher/``: the teacher run (``config.teacher.model``, method ``ce``), when
  ``config.sweep.train_teacher`` is set; it trains with the students' config except
  for the ``config.sweep.teacher_*`` fields (its own epochs, decay epochs and learning
  rate; the benchmark configs set the protocol's rate of the teacher architecture);
- ``<method>_seed<seed>/``: one run per method and seed; the ``mlkd`` runs take
  ``config.sweep.mlkd_*`` (MLKD's own epochs and learning rate) where set.

Each run is an ordinary run (its own config.json, checkpoints and
results.json, and its own lock while it trains), so an interrupted sweep
resumes run by run when relaunched, a second launch of the same sweep stops at
the run the first one holds, and ``python -m figkd_jax.tools.report <workdir>``
tabulates it.
"""

from __future__ import annotations

import ml_collections
import numpy as np
from absl import logging
from scipy import stats

from figkd_jax.io import storage
from figkd_jax.trainer import methods, train
from figkd_jax.trainer.errors import ConfigError
from figkd_jax.trainer.run_setup import build_run


def is_sweep(config: ml_collections.ConfigDict) -> bool:
    """Whether `config` describes several runs (methods x seeds, or a teacher first)."""
    return bool(config.sweep.methods or config.sweep.seeds or config.sweep.train_teacher)


def plan(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
    """(sub-directory, config) of every run of the sweep, in launch order."""
    runs = []
    base = ml_collections.ConfigDict(config.to_dict())
    base.sweep.methods, base.sweep.seeds, base.sweep.train_teacher = (), (), False
    base.sweep.teacher_num_epochs = base.sweep.teacher_lr_decay_epochs = None
    base.sweep.teacher_learning_rate = None
    base.sweep.teacher_train_split = None
    base.sweep.mlkd_num_epochs = base.sweep.mlkd_learning_rate = None
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
        if config.sweep.teacher_learning_rate is not None:
            teacher.optim.learning_rate = config.sweep.teacher_learning_rate
        if config.sweep.teacher_train_split is not None:
            teacher.dataset.train_split = config.sweep.teacher_train_split
        runs.append(("teacher", teacher))
    for method in config.sweep.methods or (config.method.name,):
        methods.get(method)
        for seed in config.sweep.seeds or (config.seed,):
            run = ml_collections.ConfigDict(base.to_dict())
            run.method.name = method
            run.seed = seed
            if method == "mlkd" and config.sweep.mlkd_num_epochs is not None:
                run.num_epochs = config.sweep.mlkd_num_epochs
            if method == "mlkd" and config.sweep.mlkd_learning_rate is not None:
                run.optim.learning_rate = config.sweep.mlkd_learning_rate
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
            run_config.teacher.workdir = str(storage.path(workdir) / "teacher")
        build_run(run_config)
    results = {}
    for name, run_config in runs:
        logging.info("Sweep: run %s", name)
        results[name] = train.train_and_evaluate(run_config, str(storage.path(workdir) / name))
    print(summary_table(results))
    return results


def summary_table(results: dict[str, dict], baseline: str = "ce") -> str:
    """A Markdown table of the sweep: one row per run name without its ``_seed<k>``.

    Each row holds the number of seeds, the mean ± sample std of best and last top-1, their
    differences from the `baseline` method's means, and the summed wall time. A difference is
    marked ``*`` when it exceeds its noise: a pooled two-sample t-test over the seeds rejects
    equal means at 5% (``|diff| > t_0.975(n_a + n_b - 2) * s_pooled * sqrt(1/n_a + 1/n_b)``).
    Seeds vary initialisation and data order only, on one fixed test set.
    """
    groups: dict[str, list[dict]] = {}
    for name, r in results.items():
        prefix, sep, seed = name.rpartition("_seed")
        groups.setdefault(prefix if sep and seed.isdigit() else name, []).append(r)
    top1 = {
        name: {k: [100 * r[f"{k}_top1"] for r in members] for k in ("best", "last")}
        for name, members in groups.items()
    }
    lines = [
        f"| run | model | seeds | best top-1 (%) | last top-1 (%) | best − {baseline} "
        f"| last − {baseline} | wall time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, members in groups.items():
        cells = [name, members[0]["model"], str(len(members))]
        cells += [_mean_std(top1[name][k]) for k in ("best", "last")]
        for k in ("best", "last"):
            is_baseline = name == baseline or baseline not in top1 or name == "teacher"
            cells.append("" if is_baseline else _difference(top1[name][k], top1[baseline][k]))
        cells.append(f"{sum(r['wall_time'] for r in members):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\n`*`: the difference from {baseline} exceeds its noise (pooled two-sample t-test "
        "over seeds, 5%)."
    )
    return "\n".join(lines)


def _mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def _difference(values: list[float], baseline: list[float]) -> str:
    """Mean difference, marked ``*`` when a pooled two-sample t-test rejects it at 5%."""
    diff = float(np.mean(values) - np.mean(baseline))
    dof = len(values) + len(baseline) - 2
    if dof < 1:
        return f"{diff:+.2f}"
    pooled = (
        (len(values) - 1) * np.var(values, ddof=1) + (len(baseline) - 1) * np.var(baseline, ddof=1)
    ) / dof
    standard_error = np.sqrt(pooled * (1 / len(values) + 1 / len(baseline)))
    significant = abs(diff) > stats.t.ppf(0.975, dof) * standard_error
    return f"{diff:+.2f}{' *' if significant else ''}"
