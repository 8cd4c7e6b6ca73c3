"""Benchmark report: tables and plots of finished (or running) runs.

    python -m figkd_jax.tools.report <dir>... [--out <dir>]
        [--bands_from <teacher run or checkpoint>]

Every ``results.json`` under the given directories (a sweep parent, single runs, or any tree
of them) becomes part of one table with a row per (dataset, teacher, student, method): mean ±
sample standard deviation over seeds of the best-epoch and last-epoch test top-1, the number of
seeds, the epochs (unfinished runs flagged), and the published number of the same pair and
method where one exists (`figkd_jax.trainer.protocol`, shown in docs/protocol.md and
docs/method.md).
``--out`` (default: the first directory) receives:

- ``report.md``: the table, the published numbers of every pair present, and the plots;
- ``report.csv``: the same rows, one numeric field per column;
- ``top1_<dataset>_<teacher>_to_<student>.png``: test top-1 per epoch of every method of the
  pair (mean over seeds, min–max band), with the student trained alone and the teacher's top-1;
  ``top1_<dataset>_<model>.png`` for models trained alone;
- ``agreement_<dataset>_<teacher>_to_<student>.png``: teacher–student top-1 agreement per epoch;
- with ``--bands_from``, ``bands_<dataset>_<model>.png``: a teacher's logits on a few test
  examples beside their low and high Haar bands (levels 1 and 2) over the class index, and
  ``bands_<dataset>_<model>_<order>.png`` in each other class order that FiGKD runs used;
  report.md then also holds the share of that teacher's logit energy on the eval split in the
  high band under each class order (index, superclass where the dataset has superclasses, the
  runs' orders, the teacher's own, and random orders: figkd_jax.trainer.class_order).

A FiGKD row names its class order (``figkd (teacher order)``) when its runs recorded one.

Runs of one row that differ in a setting (besides the seed and paths) get one row per
variant, labelled with the differing config keys, so a sweep of an ablation never averages
different settings.
"""

from __future__ import annotations

from figkd_jax import extras

extras.require_report()

import argparse
import csv
import dataclasses
import io
import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from figkd_jax.io import storage
from figkd_jax.tools import plots
from figkd_jax.trainer import protocol

# Order of methods within a pair; others follow alphabetically.
METHOD_ORDER = ("ce", "kd", "dkd", "dist", "mlkd", "figkd")

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
        root = storage.path(directory)
        if not root.is_dir():
            raise ValueError(f"{directory} is not a directory: pass run or sweep workdirs")
        for path in _results_files(root):
            # Local paths resolved, so a run reached through a link counts once.
            paths.add(str(path) if storage.is_url(path) else str(path.resolve()))
    if not paths:
        raise ValueError(
            f"no results.json under {', '.join(directories)}: pass run or sweep workdirs of "
            "runs that finished at least one epoch"
        )
    return [_load_results(path) for path in sorted(paths)]


def _results_files(directory):
    """The results.json files under `directory` (an epath Path), checkpoints not searched."""
    for child in sorted(directory.iterdir()):
        if child.name == "results.json":
            yield child
        elif child.name != "checkpoints" and child.is_dir():
            yield from _results_files(child)


def _load_results(path: str) -> dict[str, Any]:
    results = json.loads(storage.path(path).read_text())
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
    # The class order(s) of FiGKD runs (figkd_jax.trainer.class_order labels); None if not recorded.
    class_order: str | None = None

    @property
    def label(self) -> str:
        method = (
            self.method if self.class_order is None else f"{self.method} ({self.class_order} order)"
        )
        return f"{method} [{self.variant}]" if self.variant else method


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
                class_order=_class_order_label(members),
            )
        )
    return sorted(rows, key=_row_order)


def _class_order_label(members: Sequence[dict[str, Any]]) -> str | None:
    labels = dict.fromkeys(_order_of(r).label for r in members if r.get("class_order"))
    return " / ".join(labels) if labels else None


def _order_of(results: dict[str, Any]):
    from figkd_jax.trainer import class_order

    return class_order.ClassOrder.from_json(results["class_order"])


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _std(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _method_rank(method: str, variant: str):
    base, _, suffix = method.partition("+")
    rank = METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER)
    return (rank, base, suffix, variant)


def _row_order(row: Row):
    return (row.dataset, row.teacher or "", row.student, *_method_rank(row.method, row.variant))


def reference_top1(dataset: str, teacher: str | None, student: str, method: str) -> float | None:
    """The published top-1 (%) of `method` (a method label) on (teacher, student), or of
    `student` trained alone.

    A run without a teacher ("ce") is matched to the model's "teacher" or "student" column of
    any pair of `dataset`. None where nothing was published.
    """
    if teacher is None and method != "ce":
        return None
    return protocol.published_top1(dataset, teacher, student, method)


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
    "class_order",
)


def write_csv(rows: Sequence[Row], path: str) -> None:
    """The rows as CSV (`CSV_FIELDS`); missing numbers are empty fields.

    ``seeds`` is space-separated; ``unfinished`` lists ``seed:epochs_done``.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
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
                row.class_order or "",
            )
        )
    storage.write_text(path, buffer.getvalue())


def reference_table(pairs: Iterable[tuple[str, str, str]]) -> str:
    """Markdown table of every published number of the (dataset, teacher, student) `pairs`."""
    known = [
        found
        for dataset, teacher, student in dict.fromkeys(pairs)
        if (found := protocol.find(dataset, teacher, student)) is not None
    ]
    if not known:
        return ""
    header = ("dataset", "teacher", "student", *(c.header for c in protocol.COLUMNS))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pair in known:
        values = (_number(pair.top1.get(c.key)) for c in protocol.COLUMNS)
        lines.append("| " + " | ".join((pair.dataset, pair.teacher, pair.student, *values)) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Curves


def curve_panels(runs: Sequence[dict[str, Any]]) -> list[plots.CurvePanel]:
    """One panel per (dataset, teacher, student), and per model trained alone.

    A pair's panel also shows the student trained alone ("ce", undistilled) and the teacher's
    top-1; each method keeps one colour across the panel's plots.
    """
    by_pair: dict[tuple[str, str | None, str], list] = {}
    for key, members in group_runs(runs).items():
        by_pair.setdefault(key[:3], []).append((key, members))
    for (dataset, teacher, student), entries in list(by_pair.items()):
        if teacher is not None:
            entries.extend(by_pair.get((dataset, None, student), []))
    panels = []
    for (dataset, teacher, student), entries in sorted(
        by_pair.items(), key=lambda item: (item[0][0], item[0][1] or "", item[0][2])
    ):
        curves = []
        for i, ((_, run_teacher, _, method, variant), members) in enumerate(
            sorted(entries, key=lambda e: _method_rank(e[0][3], e[0][4]))
        ):
            label = method if run_teacher is not None else f"{method} (no teacher)"
            curves.append(
                plots.Curve(
                    label=f"{label} [{variant}]" if variant else label,
                    color=f"C{i % 10}",
                    members=members,
                    distilled=run_teacher is not None,
                )
            )
        teacher_top1 = None
        if teacher is not None:
            teacher_top1 = _mean(
                [
                    100 * r["teacher_eval"]["top1"]
                    for (_, run_teacher, *_), members in entries
                    if run_teacher == teacher
                    for r in members
                    if r.get("teacher_eval") is not None
                ]
            )
        name = f"{dataset}_{student}" if teacher is None else f"{dataset}_{teacher}_to_{student}"
        title = student if teacher is None else f"{teacher} → {student}"
        panels.append(plots.CurvePanel(name, f"{dataset}: {title}", curves, teacher_top1))
    return panels


# --------------------------------------------------------------------------
# Entry points


@dataclasses.dataclass(frozen=True)
class Report:
    rows: list[Row]
    markdown: str
    markdown_path: str
    csv_path: str
    plots: list[str]
    # The high-band energy share by class order (Markdown; "" without bands_from).
    energy: str = ""


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
    storage.path(out).mkdir(parents=True, exist_ok=True)
    rows = summarize(runs)
    table = markdown_table(rows)
    pictures = [path for panel in curve_panels(runs) for path in plots.plot_panel(panel, out)]
    energy = ""
    if bands_from is not None:
        datasets = sorted({r["dataset"] for r in runs})
        teacher_source = dict(
            dataset=bands_dataset,
            default_dataset=datasets[0] if len(datasets) == 1 else None,
            data_dir=data_dir,
        )
        pictures.append(plots.plot_bands(bands_from, out, **teacher_source))
        orders = runs_class_orders(runs)
        for name, permutation in orders.items():
            if name != "index":
                pictures.append(
                    plots.plot_bands(
                        bands_from, out, class_order=(name, permutation), **teacher_source
                    )
                )
        energy = class_order_energy(bands_from, orders, runs, **teacher_source)
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
    if energy:
        sections += [
            "## The teacher's logit energy in the high band, by class order",
            "",
            f"Teacher `{bands_from}` on the eval split: the share of its centred logit energy "
            "in the Haar high band (lower: neighbouring classes get similar logits).",
            "",
            energy,
            "",
        ]
    sections += ["## Plots", ""]
    names = [storage.path(p).name for p in pictures]
    sections += [f"![{name}]({name})" for name in names]
    markdown_path = str(storage.path(out) / "report.md")
    storage.write_text(markdown_path, "\n".join(sections) + "\n")
    csv_path = str(storage.path(out) / "report.csv")
    write_csv(rows, csv_path)
    return Report(rows, table, markdown_path, csv_path, pictures, energy)


def runs_class_orders(runs: Iterable[dict[str, Any]]) -> dict[str, tuple[int, ...]]:
    """{label: permutation} of the class orders the runs used (the first run's of each label),
    random orders left out (one seed's draw says little: see `class_order_energy`)."""
    orders = {}
    for run in runs:
        if run.get("class_order"):
            order = _order_of(run)
            if order.kind != "random":
                orders.setdefault(order.label, order.permutation)
    return orders


def class_order_energy(
    source: str,
    orders: dict[str, Sequence[int]],
    runs: Sequence[dict[str, Any]],
    **teacher_source,
) -> str:
    """The table of `figkd_jax.trainer.class_order.energy_share_table` for the teacher in
    `source` on its eval split: index order, superclass order where the dataset has one,
    `orders`, the teacher's own order (made now, at the runs' temperature, unless a run
    recorded one) and 20 random orders; Haar levels 1 to 3."""
    from figkd_jax import data
    from figkd_jax.trainer import class_order, feeds

    teacher, data_config = plots.band_teacher(source, **teacher_source)
    info = data.get_info(data_config.name)
    eval_split = data_config.get("eval_split") or info.eval_split
    logits, _ = feeds.split_logits(
        teacher.model, teacher.variables, data_config, eval_split, batch_size=256
    )
    table_orders = {"index": tuple(range(info.num_classes))}
    if data_config.name in class_order.COARSE_LABELS:
        table_orders["superclass"] = tuple(class_order.superclass_order(data_config.name))
    table_orders.update(orders)
    if "teacher" not in table_orders:
        temperatures = [
            r["config"]["method.temperature"]
            for r in runs
            if r["method"] == "figkd" and "method.temperature" in r.get("config", {})
        ]
        train_logits, train_labels = feeds.split_logits(
            teacher.model,
            teacher.variables,
            data_config,
            data_config.get("train_split") or info.train_split,
            batch_size=256,
        )
        table_orders["teacher"] = tuple(
            class_order.teacher_order(
                train_logits, train_labels, temperatures[0] if temperatures else 4.0
            )
        )
    return class_order.energy_share_table(logits, table_orders, levels=(1, 2, 3))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m figkd_jax.tools.report",
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
    if report.energy:
        print(f"\nHigh-band share of the teacher's logit energy by class order:\n{report.energy}")
    print(f"\nWrote {report.markdown_path}, {report.csv_path} and {len(report.plots)} plots.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
