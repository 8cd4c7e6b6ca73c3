"""Benchmark report: tables and plots of finished (or running) runs.

    python -m figkd_jax.report <dir>... [--out <dir>] [--bands_from <teacher run or checkpoint>]

Every ``results.json`` under the given directories (a sweep parent, single runs, or any tree
of them) becomes part of one table with a row per (dataset, teacher, student, method): mean ±
sample standard deviation over seeds of the best-epoch and last-epoch test top-1, the number of
seeds, the epochs (unfinished runs flagged), and the published number of protocol.md /
method.md for the same pair and method where one exists. ``--out`` (default: the first
directory) receives:

- ``report.md``: the table, the published numbers of every pair present, and the plots;
- ``report.csv``: the same rows, one numeric field per column;
- ``top1_<dataset>_<teacher>_to_<student>.png``: test top-1 per epoch of every method of the
  pair (mean over seeds, min–max band), with the student trained alone and the teacher's top-1;
  ``top1_<dataset>_<model>.png`` for models trained alone;
- ``agreement_<dataset>_<teacher>_to_<student>.png``: teacher–student top-1 agreement per epoch;
- with ``--bands_from``, ``bands_<dataset>_<model>.png``: a teacher's logits on a few test
  examples beside their low and high Haar bands (levels 1 and 2) over the class index.

Runs of one row that differ in a setting (besides the seed and paths) get one row per
variant, labelled with the differing config keys, so a sweep of an ablation never averages
different settings.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import statistics
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

# Published top-1 (%): dataset -> (teacher, student) in registry names -> one value (or None)
# per REFERENCE_COLUMNS: the teacher and the student trained alone, then each method distilling
# the pair. Sources: CIFAR-100 from docs/protocol.md (teacher, student, KD, DKD: mdistiller
# README; MLKD, KD+LS: logit-standardization README; FiGKD: the author's leaderboard);
# TinyImageNet and the fine-grained sets from docs/method.md (the FiGKD author's leaderboard).
REFERENCE_COLUMNS = ("teacher", "student", "kd", "dkd", "mlkd", "kd+LS", "figkd")
_RESNET34_TO_18 = ("resnet34_imagenet", "resnet18_imagenet")
REFERENCE_TOP1: dict[str, dict[tuple[str, str], tuple[float | None, ...]]] = {
    "cifar100": {
        ("resnet32x4", "resnet8x4"): (79.42, 72.50, 73.33, 76.32, 77.08, 76.62, 78.05),
        ("resnet56", "resnet20"): (72.34, 69.06, 70.66, 71.97, 72.19, 71.43, None),
        ("resnet110", "resnet32"): (74.31, 71.14, 73.08, 74.11, 74.11, 74.17, 74.31),
        ("wrn_40_2", "wrn_16_2"): (75.61, 73.26, 74.92, 76.24, 76.63, 76.11, 77.06),
        ("wrn_40_2", "wrn_40_1"): (75.61, 71.98, 73.54, 74.81, 75.35, 74.37, 76.04),
        ("vgg13", "vgg8"): (74.64, 70.36, 72.98, 74.68, 75.18, 74.36, 76.17),
        ("resnet32x4", "shufflenetv2"): (79.42, 71.82, 74.45, 77.07, 78.44, 75.56, 79.64),
        ("vgg13", "mobilenetv2"): (74.64, 64.60, 67.37, 69.71, 70.57, 68.61, 71.81),
        ("resnet50", "mobilenetv2"): (79.34, 64.60, 67.35, 70.35, 71.04, 69.02, 72.08),
        ("resnet32x4", "shufflenetv1"): (79.42, 70.50, 74.07, 76.45, 77.18, None, 78.70),
        ("wrn_40_2", "shufflenetv1"): (75.61, 70.50, 74.83, 76.70, 77.44, None, 78.84),
    },
    "tiny_imagenet": {
        ("resnet110", "resnet32"): (None, None, None, None, None, None, 59.73),
        ("resnet32x4", "resnet8x4"): (None, None, None, None, None, None, 60.92),
        ("wrn_40_2", "wrn_16_2"): (None, None, None, None, None, None, 61.91),
        ("wrn_40_2", "wrn_40_1"): (None, None, None, None, None, None, 60.69),
        ("vgg13", "vgg8"): (None, None, None, None, None, None, 64.52),
        ("wrn_40_2", "shufflenetv1"): (None, None, None, None, None, None, 64.95),
        ("resnet32x4", "shufflenetv1"): (None, None, None, None, None, None, 65.84),
        ("resnet50", "mobilenetv2"): (None, None, None, None, None, None, 63.68),
        ("vgg13", "mobilenetv2"): (None, None, None, None, None, None, 63.99),
        ("resnet32x4", "shufflenetv2"): (None, None, None, None, None, None, 70.10),
    },
    "caltech_birds2011": {_RESNET34_TO_18: (61.43, 58.14, 60.92, 62.17, None, None, 67.93)},
    "mit67": {_RESNET34_TO_18: (59.55, 57.49, 58.78, 60.00, None, None, 65.67)},
    "stanford40": {_RESNET34_TO_18: (49.06, 45.94, 49.42, 49.84, None, None, 53.69)},
    "stanford_dogs": {_RESNET34_TO_18: (69.28, 66.97, 68.28, 69.04, None, None, 72.79)},
}
_REFERENCE_HEADERS = (
    "teacher alone",
    "student alone",
    "KD",
    "DKD",
    "MLKD",
    "KD+LS",
    "FiGKD (published)",
)

# Order of methods within a pair; others follow alphabetically.
METHOD_ORDER = ("ce", "kd", "dkd", "mlkd", "figkd")

# Config keys that may differ between runs of one row: the seed, and where things live or how
# often they are logged, none of which changes a result.
_RUN_LOCAL_KEYS = (
    "seed",
    "teacher.workdir",
    "teacher.checkpoint",
    "dataset.data_dir",
    "dataset.manual_dir",
    "max_steps",
    "log_every_steps",
    "checkpoints_to_keep",
    "max_consecutive_nonfinite_steps",
    "eval_batch_size",
)

_REQUIRED_FIELDS = ("dataset", "model", "method", "seed", "num_epochs", "epochs_done", "history")


# --------------------------------------------------------------------------
# Finding and grouping runs


def find_results(directories: Sequence[str]) -> list[dict[str, Any]]:
    """Every run's results.json under `directories` (searched recursively), each once.

    Returns the parsed dicts in path order, each with its file under ``"path"``. Checkpoint
    directories are not searched. Raises ValueError when a directory does not exist or when
    nothing is found.
    """
    paths = set()
    for directory in directories:
        if not os.path.isdir(directory):
            raise ValueError(f"{directory} is not a directory: pass run or sweep workdirs")
        for root, subdirs, files in os.walk(directory):
            subdirs[:] = sorted(d for d in subdirs if d != "checkpoints")
            if "results.json" in files:
                paths.add(os.path.realpath(os.path.join(root, "results.json")))
    if not paths:
        raise ValueError(
            f"no results.json under {', '.join(directories)}: pass run or sweep workdirs of "
            "runs that finished at least one epoch"
        )
    return [_load_results(path) for path in sorted(paths)]


def _load_results(path: str) -> dict[str, Any]:
    with open(path) as f:
        results = json.load(f)
    missing = [k for k in _REQUIRED_FIELDS if k not in results]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: not a figkd_jax results.json")
    return {**results, "path": path}


def method_label(results: dict[str, Any]) -> str:
    """The method's name, with "+LS" when the logits were standardized."""
    return results["method"] + ("+LS" if results.get("standardize") else "")


def _base_key(results: dict[str, Any]) -> tuple[str, str | None, str, str]:
    return (results["dataset"], results.get("teacher"), results["model"], method_label(results))


def _setting(results: dict[str, Any]) -> dict[str, Any]:
    """The config keys that can change a result (the run's own method block only)."""
    method = results["method"]
    setting = {}
    for key, value in results.get("config", {}).items():
        parts = key.split(".")
        if key in _RUN_LOCAL_KEYS or parts[0] == "sweep":
            continue
        if parts[0] == "method" and len(parts) == 3 and parts[1] != method:
            continue
        setting[key] = value
    return setting


def group_runs(runs: Iterable[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Runs by (dataset, teacher, student, method label, variant).

    ``variant`` is "" unless runs sharing the first four differ in a setting: then each
    distinct setting gets "key=value, ..." of the keys that differ.
    """
    by_base: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        by_base.setdefault(_base_key(run), []).append(run)
    groups = {}
    for base, members in by_base.items():
        settings = [_setting(r) for r in members]
        keys = sorted({k for s in settings for k in s})
        differing = [k for k in keys if len({json.dumps(s.get(k)) for s in settings}) > 1]
        for run, setting in zip(members, settings, strict=True):
            variant = ", ".join(f"{k}={_format_value(setting.get(k))}" for k in differing)
            groups.setdefault((*base, variant), []).append(run)
    return groups


def _format_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


# --------------------------------------------------------------------------
# Rows


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the report: the runs of one (dataset, teacher, student, method, variant).

    Top-1 values are in percent. Means and stds are None without runs that finished an epoch;
    stds are None for one seed (sample std, ddof=1).
    """

    dataset: str
    teacher: str | None
    student: str
    method: str
    variant: str
    seeds: tuple[int, ...]
    num_epochs: int
    best_mean: float | None
    best_std: float | None
    last_mean: float | None
    last_std: float | None
    # (seed, epochs_done) of the runs with epochs_done < num_epochs.
    unfinished: tuple[tuple[int, int], ...]
    teacher_top1: float | None
    reference: float | None

    @property
    def label(self) -> str:
        return f"{self.method} [{self.variant}]" if self.variant else self.method


def summarize(runs: Iterable[dict[str, Any]]) -> list[Row]:
    """The rows of `runs` (parsed results.json dicts), in table order."""
    rows = []
    for (dataset, teacher, student, method, variant), members in group_runs(runs).items():
        best = [100 * r["best_top1"] for r in members if r.get("best_top1") is not None]
        last = [100 * r["last_top1"] for r in members if r.get("last_top1") is not None]
        teacher_top1 = [
            100 * r["teacher_eval"]["top1"] for r in members if r.get("teacher_eval") is not None
        ]
        rows.append(
            Row(
                dataset=dataset,
                teacher=teacher,
                student=student,
                method=method,
                variant=variant,
                seeds=tuple(sorted(r["seed"] for r in members)),
                num_epochs=max(r["num_epochs"] for r in members),
                best_mean=_mean(best),
                best_std=_std(best),
                last_mean=_mean(last),
                last_std=_std(last),
                unfinished=tuple(
                    sorted(
                        (r["seed"], r["epochs_done"])
                        for r in members
                        if r["epochs_done"] < r["num_epochs"]
                    )
                ),
                teacher_top1=_mean(teacher_top1),
                reference=reference_top1(dataset, teacher, student, method),
            )
        )
    return sorted(rows, key=_row_order)


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _std(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _row_order(row: Row):
    base, _, suffix = row.method.partition("+")
    rank = METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER)
    return (row.dataset, row.teacher or "", row.student, rank, base, suffix, row.variant)


def reference_top1(dataset: str, teacher: str | None, student: str, method: str) -> float | None:
    """The published top-1 (%) of `method` on (teacher, student), or of `student` alone.

    A run without a teacher ("ce") is matched to the model's "teacher" or "student" column of
    any pair of `dataset`. None where nothing was published.
    """
    pairs = REFERENCE_TOP1.get(dataset, {})
    if teacher is not None:
        if method not in REFERENCE_COLUMNS or (teacher, student) not in pairs:
            return None
        return pairs[teacher, student][REFERENCE_COLUMNS.index(method)]
    if method != "ce":
        return None
    for pair, values in pairs.items():
        for role, model in zip(("teacher", "student"), pair, strict=True):
            value = values[REFERENCE_COLUMNS.index(role)]
            if model == student and value is not None:
                return value
    return None


# --------------------------------------------------------------------------
# Table


TABLE_COLUMNS = (
    "dataset",
    "teacher",
    "student",
    "method",
    "seeds",
    "epochs",
    "best top-1 (%)",
    "last top-1 (%)",
    "published (%)",
    "best − published",
    "teacher top-1 (%)",
)


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table; unfinished runs are listed in the epochs column."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for row in rows:
        cells = (
            row.dataset,
            row.teacher or "—",
            row.student,
            row.label,
            str(len(row.seeds)),
            _epochs_cell(row),
            _mean_std_cell(row.best_mean, row.best_std),
            _mean_std_cell(row.last_mean, row.last_std),
            _number(row.reference),
            _signed(None if row.reference is None else _minus(row.best_mean, row.reference)),
            _number(row.teacher_top1),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _epochs_cell(row: Row) -> str:
    if not row.unfinished:
        return str(row.num_epochs)
    runs = ", ".join(f"seed {seed} at {done}" for seed, done in row.unfinished)
    return f"{row.num_epochs} (**unfinished**: {runs})"


def _mean_std_cell(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f} ± {'—' if std is None else f'{std:.2f}'}"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _minus(a: float | None, b: float) -> float | None:
    return None if a is None else a - b


CSV_FIELDS = (
    "dataset",
    "teacher",
    "student",
    "method",
    "variant",
    "num_seeds",
    "seeds",
    "num_epochs",
    "unfinished",
    "best_top1_mean",
    "best_top1_std",
    "last_top1_mean",
    "last_top1_std",
    "published_top1",
    "teacher_top1",
)


def write_csv(rows: Sequence[Row], path: str) -> None:
    """The rows as CSV (`CSV_FIELDS`); missing numbers are empty fields.

    ``seeds`` is space-separated; ``unfinished`` lists ``seed:epochs_done``.
    """
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for row in rows:
            writer.writerow(
                (
                    row.dataset,
                    row.teacher or "",
                    row.student,
                    row.method,
                    row.variant,
                    len(row.seeds),
                    " ".join(map(str, row.seeds)),
                    row.num_epochs,
                    " ".join(f"{s}:{d}" for s, d in row.unfinished),
                    *(
                        "" if v is None else f"{v:.4f}"
                        for v in (
                            row.best_mean,
                            row.best_std,
                            row.last_mean,
                            row.last_std,
                            row.reference,
                            row.teacher_top1,
                        )
                    ),
                )
            )


def reference_table(pairs: Iterable[tuple[str, str, str]]) -> str:
    """Markdown table of every published number of the (dataset, teacher, student) `pairs`."""
    known = [
        (dataset, teacher, student)
        for dataset, teacher, student in dict.fromkeys(pairs)
        if (teacher, student) in REFERENCE_TOP1.get(dataset, {})
    ]
    if not known:
        return ""
    header = ("dataset", "teacher", "student", *_REFERENCE_HEADERS)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for dataset, teacher, student in known:
        values = REFERENCE_TOP1[dataset][teacher, student]
        cells = (dataset, teacher, student, *map(_number, values))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Curves


def epoch_curve(
    members: Sequence[dict[str, Any]], metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(epochs, mean, min, max) of history `metric` (in %) over the runs that reached each epoch.

    None when no run has the metric.
    """
    by_epoch: dict[int, list[float]] = {}
    for run in members:
        for record in run["history"]:
            if metric in record:
                by_epoch.setdefault(record["epoch"], []).append(100 * record[metric])
    if not by_epoch:
        return None
    epochs = np.array(sorted(by_epoch))
    values = [np.array(by_epoch[e]) for e in epochs]
    return (
        epochs,
        np.array([v.mean() for v in values]),
        np.array([v.min() for v in values]),
        np.array([v.max() for v in values]),
    )


def plot_curves(runs: Sequence[dict[str, Any]], out_dir: str) -> list[str]:
    """Top-1 and agreement per epoch, one PNG per (dataset, teacher, student); returns paths.

    Pair plots also show the student's runs without a teacher ("ce") and the teacher's top-1 as
    a dashed line.
    """
    groups = group_runs(runs)
    plots: dict[tuple[str, str | None, str], list] = {}
    for key, members in groups.items():
        plots.setdefault(key[:3], []).append((key, members))
    for (dataset, teacher, student), entries in list(plots.items()):
        if teacher is not None:
            entries.extend(plots.get((dataset, None, student), []))
    paths = []
    for (dataset, teacher, student), entries in sorted(
        plots.items(), key=lambda i: _sort_key(i[0])
    ):
        # One colour per method, the same in the top-1 and the agreement plot.
        entries = [
            (key, members, f"C{i % 10}")
            for i, (key, members) in enumerate(
                sorted(entries, key=lambda e: _row_order(_stub_row(e[0])))
            )
        ]
        name = f"{dataset}_{student}" if teacher is None else f"{dataset}_{teacher}_to_{student}"
        title = student if teacher is None else f"{teacher} → {student}"
        teacher_line = None
        if teacher is not None:
            values = [
                100 * r["teacher_eval"]["top1"]
                for key, members, _ in entries
                if key[1] == teacher
                for r in members
                if r.get("teacher_eval") is not None
            ]
            teacher_line = _mean(values)
        path = _plot_metric(
            entries, "top1", f"{dataset}: {title}", "test top-1 (%)", teacher_line, out_dir, name
        )
        paths.append(path)
        if teacher is not None:
            path = _plot_metric(
                [e for e in entries if e[0][1] is not None],
                "agreement",
                f"{dataset}: {title}",
                "teacher–student top-1 agreement (%)",
                None,
                out_dir,
                name,
            )
            if path is not None:
                paths.append(path)
    return paths


def _sort_key(key: tuple[str, str | None, str]):
    return (key[0], key[1] or "", key[2])


def _stub_row(key: tuple) -> Row:
    dataset, teacher, student, method, variant = key
    return Row(dataset, teacher, student, method, variant, (), 0, *([None] * 4), (), None, None)


def _plot_metric(entries, metric, title, ylabel, hline, out_dir, name) -> str | None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    curves = []
    for (_, teacher, _, method, variant), members, color in entries:
        curve = epoch_curve(members, metric)
        if curve is not None:
            label = method if teacher is not None else f"{method} (no teacher)"
            label = f"{label} [{variant}]" if variant else label
            curves.append((f"{label}, n={len(members)}", color, curve))
    if not curves:
        return None
    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, color, (epochs, mean, low, high) in curves:
        ax.plot(epochs, mean, label=label, color=color, linewidth=1.3)
        if len(epochs) > 1:
            ax.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
        else:
            ax.errorbar(epochs, mean, yerr=[mean - low, high - mean], color=color, fmt="o")
    if hline is not None:
        ax.axhline(
            hline, color="black", linestyle="--", linewidth=1, label=f"teacher ({hline:.2f})"
        )
    ax.set(title=f"{title} (mean over seeds, band: min–max)", xlabel="epoch", ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = os.path.join(out_dir, f"{metric}_{_safe(name)}.png")
    fig.savefig(path)
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


# --------------------------------------------------------------------------
# The method, pictured on a teacher's logits


def logit_bands(logits: np.ndarray, *, max_level: int = 2, mode: str = "symmetric"):
    """The logits and their low and high Haar bands, per level, over the class axis.

    Args:
      logits: (N, C) array.
      max_level: highest level shown, capped at the largest level C allows.
      mode: Haar boundary mode (see figkd_jax.wavelets).

    Returns:
      {"logits": (N, C), "low, level 1": (N, C), "high, level 1": (N, C), ...} as numpy arrays.
    """
    import jax

    from figkd_jax import haar_highpass, haar_lowpass, haar_max_level

    logits = np.asarray(logits, np.float32)
    levels = range(1, min(max_level, haar_max_level(logits.shape[-1])) + 1)

    names = ["logits"]
    for level in levels:
        names += [f"low, level {level}", f"high, level {level}"]

    @jax.jit
    def bands(z):
        panels = [z]
        for level in levels:
            panels += [haar_lowpass(z, level, mode=mode), haar_highpass(z, level, mode=mode)]
        return panels

    return {name: np.asarray(values) for name, values in zip(names, bands(logits), strict=True)}


def plot_bands(
    source: str,
    out_dir: str,
    *,
    num_examples: int = 4,
    dataset: str | None = None,
    default_dataset: str | None = None,
    data_dir: str | None = None,
) -> str:
    """Pictures FiGKD's input: a teacher's logits on test examples and their Haar bands.

    Args:
      source: a teacher run's workdir (with ``checkpoints/``) or a checkpoint directory; its
        latest step is used.
      out_dir: where ``bands_<dataset>_<model>.png`` is written.
      num_examples: how many test examples (the first of the eval split), >= 1.
      dataset: the dataset of the examples; default: the checkpoint's, else the run's config,
        else `default_dataset`.
      data_dir: TFDS data directory; default: the run's config, else the TFDS default.

    Returns:
      The path of the PNG.
    """
    if num_examples < 1:
        raise ValueError(f"num_examples={num_examples} must be >= 1")
    model, variables, meta, data_config = _restore_teacher(
        source, dataset, default_dataset, data_dir
    )
    import jax

    from figkd_jax import data

    batch = next(iter(data.eval_stream(data_config, global_batch_size=num_examples)))
    apply = jax.jit(lambda v, images: model.apply(v, images, train=False))
    logits = np.asarray(apply(variables, batch["image"]))
    labels = np.asarray(batch["label"])
    keep = np.asarray(batch["mask"])
    panels = {k: v[keep] for k, v in logit_bands(logits).items()}
    name = f"{data_config.name}_{meta['model']}"
    return _draw_bands(
        panels,
        labels[keep],
        f"{meta['model']} on {data_config.name} (step {meta.get('step', '?')})",
        os.path.join(out_dir, f"bands_{_safe(name)}.png"),
    )


def _restore_teacher(source, dataset, default_dataset, data_dir):
    """(model, variables, checkpoint meta, data config) of the latest step of `source`."""

    from figkd_jax import checkpoints, data

    run_config = {}
    directory = source
    if os.path.isdir(os.path.join(source, "checkpoints")):
        directory = os.path.join(source, "checkpoints")
        if os.path.exists(os.path.join(source, "config.json")):
            with open(os.path.join(source, "config.json")) as f:
                run_config = json.load(f)
    try:
        step, meta = checkpoints.read_meta(directory)
    except FileNotFoundError:
        raise ValueError(
            f"--bands_from {source} holds no checkpoint: pass a teacher run's workdir or a "
            "checkpoint directory"
        ) from None
    dataset = dataset or meta.get("dataset") or run_config.get("dataset.name") or default_dataset
    if dataset is None:
        raise ValueError(
            f"the dataset of checkpoint {source} is unknown: pass it (--bands_dataset <name>)"
        )
    info = data.get_info(dataset)
    if meta.get("num_classes") != info.num_classes:
        raise ValueError(
            f"checkpoint {source} has {meta.get('num_classes')} classes, dataset {dataset!r} has "
            f"{info.num_classes}: pass the teacher's dataset"
        )
    data_config = data.default_data_config(dataset)
    if run_config.get("dataset.name") == dataset:
        for field in ("data_dir", "manual_dir", "eval_split"):
            data_config[field] = run_config.get(f"dataset.{field}")
    if data_dir is not None:
        data_config.data_dir = data_dir
    model, variables = checkpoints.restore_model(
        directory, step, meta, image_shape=info.image_shape
    )
    return model, variables, {**meta, "step": step}, data_config


def _draw_bands(panels: dict[str, np.ndarray], labels: np.ndarray, title: str, path: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    logits = panels["logits"]
    num_examples, num_classes = logits.shape
    columns = list(panels)
    fig = Figure(figsize=(3.2 * len(columns), 2.2 * num_examples + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(num_examples, len(columns), sharex=True, sharey="row", squeeze=False)
    classes = np.arange(num_classes)
    for i in range(num_examples):
        predicted = int(np.argmax(logits[i]))
        for j, column in enumerate(columns):
            ax = axes[i, j]
            values = panels[column][i]
            colors = np.where(classes == labels[i], "tab:red", "tab:blue")
            ax.bar(classes, values, width=0.9, color=colors)
            ax.axhline(0, color="black", linewidth=0.5)
            energy = float(np.mean(values**2))
            ax.set_title(f"{column} (energy {energy:.3g})", fontsize="small")
            if j == 0:
                ax.set_ylabel(f"label {labels[i]}, pred {predicted}", fontsize="small")
            if i == num_examples - 1:
                ax.set_xlabel("class index")
    fig.suptitle(f"{title}: teacher logits and Haar bands over classes (red: true class)")
    fig.tight_layout()
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------
# Entry points


@dataclasses.dataclass(frozen=True)
class Report:
    rows: list[Row]
    markdown: str
    markdown_path: str
    csv_path: str
    plots: list[str]


def write_report(
    directories: Sequence[str],
    out: str | None = None,
    *,
    bands_from: str | None = None,
    bands_dataset: str | None = None,
    data_dir: str | None = None,
) -> Report:
    """Finds the runs under `directories` and writes report.md, report.csv and the plots to `out`.

    `out` defaults to the first directory. See the module docstring for the files.
    """
    if not directories:
        raise ValueError("directories is empty: pass at least one run or sweep workdir")
    runs = find_results(directories)
    out = out or directories[0]
    os.makedirs(out, exist_ok=True)
    rows = summarize(runs)
    table = markdown_table(rows)
    plots = plot_curves(runs, out)
    if bands_from is not None:
        datasets = sorted({r["dataset"] for r in runs})
        plots.append(
            plot_bands(
                bands_from,
                out,
                dataset=bands_dataset,
                default_dataset=datasets[0] if len(datasets) == 1 else None,
                data_dir=data_dir,
            )
        )
    sections = ["# Benchmark report", "", table, ""]
    if any(row.unfinished for row in rows):
        sections += [
            "**unfinished**: runs stopped before `num_epochs`; their best and last top-1 are "
            "included in the means.",
            "",
        ]
    references = reference_table((r.dataset, r.teacher, r.student) for r in rows if r.teacher)
    if references:
        sections += ["## Published numbers of these pairs (top-1 %)", "", references, ""]
    sections += ["## Plots", ""]
    sections += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots]
    markdown_path = os.path.join(out, "report.md")
    with open(markdown_path, "w") as f:
        f.write("\n".join(sections) + "\n")
    csv_path = os.path.join(out, "report.csv")
    write_csv(rows, csv_path)
    return Report(rows, table, markdown_path, csv_path, plots)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m figkd_jax.report",
        description="Tabulate and plot the runs (results.json) under run or sweep workdirs.",
    )
    parser.add_argument(
        "directories", nargs="+", help="run or sweep workdirs, searched recursively"
    )
    parser.add_argument("--out", help="output directory (default: the first directory)")
    parser.add_argument(
        "--bands_from", help="teacher run workdir or checkpoint directory for the band picture"
    )
    parser.add_argument("--bands_dataset", help="dataset of the band picture (default: inferred)")
    parser.add_argument("--data_dir", help="TFDS data directory for the band picture")
    args = parser.parse_args(argv)
    try:
        report = write_report(
            args.directories,
            args.out,
            bands_from=args.bands_from,
            bands_dataset=args.bands_dataset,
            data_dir=args.data_dir,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.markdown)
    print(f"\nWrote {report.markdown_path}, {report.csv_path} and {len(report.plots)} plots.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
