"""Benchmark report: tables and plots of finished (or running) runs.

    python -m figkd_jax.tools.report <dir>... [--out <dir>] [--baseline <variant>]

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
- ``agreement_<dataset>_<teacher>_to_<student>.png``: teacher–student top-1 agreement per epoch.

report.md also holds, for every sweep whose runs recorded their variant
(`figkd_jax.trainer.sweep`), the sweep's own summary (`figkd_jax.trainer.summary.variant_table`):
one row per variant, its varied config fields as columns, and the differences from the
sweep's baseline variant (``--baseline`` names another) marked beyond their noise.

The report only reads what runs wrote; pictures and tables computed from a teacher (its logits'
Haar bands, their energy by class order) are `figkd_jax.tools.bands`.

A FiGKD row names its class order (``figkd (teacher order)``) when its runs recorded one.

Runs of one row that differ in a setting (besides the seed and paths) get one row per
variant, labelled with the differing config keys, so a sweep of an ablation never averages
different settings.
"""

from __future__ import annotations

from figkd_jax import extras

extras.require_report()

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from figkd_jax.io import storage
from figkd_jax.tools import plots
from figkd_jax.trainer import protocol, summary

# Order of methods within a pair; others follow alphabetically.
METHOD_ORDER = ("ce", "kd", "dkd", "dist", "mlkd", "figkd")

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
        settings = [summary.setting(r) for r in members]
        differing = summary.differing_keys(settings)
        for run, setting in zip(members, settings, strict=True):
            variant = ", ".join(f"{k}={summary.format_value(setting.get(k))}" for k in differing)
            groups.setdefault((*base, variant), []).append(run)
    return groups


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
        best_mean, best_std = summary.mean_std(
            [100 * r["best_top1"] for r in members if r.get("best_top1") is not None]
        )
        last_mean, last_std = summary.mean_std(
            [100 * r["last_top1"] for r in members if r.get("last_top1") is not None]
        )
        rows.append(
            Row(
                dataset=dataset,
                teacher=teacher,
                student=student,
                method=method,
                variant=variant,
                seeds=tuple(sorted(r["seed"] for r in members)),
                num_epochs=max(r["num_epochs"] for r in members),
                best_mean=best_mean,
                best_std=best_std,
                last_mean=last_mean,
                last_std=last_std,
                unfinished=summary.unfinished(members),
                teacher_top1=_teacher_top1(members),
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


def _teacher_top1(members: Iterable[dict[str, Any]]) -> float | None:
    """Mean top-1 (%) of the teacher as the runs recorded it."""
    values = [100 * r["teacher_eval"]["top1"] for r in members if r.get("teacher_eval") is not None]
    return summary.mean_std(values)[0]


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
    return summary.markdown_table(TABLE_COLUMNS, (_table_cells(row) for row in rows))


def _table_cells(row: Row) -> tuple[str, ...]:
    return (
        row.dataset,
        row.teacher or "—",
        row.student,
        row.label,
        str(len(row.seeds)),
        _epochs_cell(row),
        summary.format_mean_std(row.best_mean, row.best_std),
        summary.format_mean_std(row.last_mean, row.last_std),
        _number(row.reference),
        _signed(None if row.reference is None else _minus(row.best_mean, row.reference)),
        _number(row.teacher_top1),
    )


def _epochs_cell(row: Row) -> str:
    if not row.unfinished:
        return str(row.num_epochs)
    runs = ", ".join(f"seed {seed} at {done}" for seed, done in row.unfinished)
    return f"{row.num_epochs} (**unfinished**: {runs})"


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
    lines = (
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
            row.best_mean,
            row.best_std,
            row.last_mean,
            row.last_std,
            row.reference,
            row.teacher_top1,
            row.class_order or "",
        )
        for row in rows
    )
    storage.write_text(path, summary.csv_text(CSV_FIELDS, lines))


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
    return summary.markdown_table(
        header,
        (
            (
                pair.dataset,
                pair.teacher,
                pair.student,
                *(_number(pair.top1.get(c.key)) for c in protocol.COLUMNS),
            )
            for pair in known
        ),
    )


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
            teacher_top1 = _teacher_top1(
                r
                for (_, run_teacher, *_), members in entries
                if run_teacher == teacher
                for r in members
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
    # {sweep directory: its summary by variant (Markdown)}, for the sweeps among the runs.
    sweeps: dict[str, str] = dataclasses.field(default_factory=dict)


def sweep_tables(runs: Sequence[dict[str, Any]], baseline: str | None = None) -> dict[str, str]:
    """{sweep directory: `summary.variant_table` of its runs} for every run that recorded its
    sweep variant; the baseline is `baseline`, else the one the sweep recorded."""
    by_sweep: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run.get("config", {}).get("sweep.variant"):
            # <sweep>/<variant>_seed<seed>/results.json
            by_sweep.setdefault(str(storage.path(run["path"]).parent.parent), []).append(run)
    return {
        directory: summary.variant_table(
            members, baseline or members[0]["config"].get("sweep.baseline") or "ce"
        )
        for directory, members in by_sweep.items()
    }


def write_report(
    directories: Sequence[str], out: str | None = None, *, baseline: str | None = None
) -> Report:
    """Finds the runs under `directories` and writes report.md, report.csv and the plots to `out`.

    `out` defaults to the first directory; `baseline` replaces each sweep's recorded baseline
    variant. See the module docstring for the files.
    """
    if not directories:
        raise ValueError("directories is empty: pass at least one run or sweep workdir")
    runs = find_results(directories)
    out = out or directories[0]
    storage.path(out).mkdir(parents=True, exist_ok=True)
    rows = summarize(runs)
    table = markdown_table(rows)
    pictures = [path for panel in curve_panels(runs) for path in plots.plot_panel(panel, out)]
    sweeps = sweep_tables(runs, baseline)
    sections = ["# Benchmark report", "", table, ""]
    if any(row.unfinished for row in rows):
        sections += [
            "**unfinished**: runs stopped before `num_epochs`; their best and last top-1 are "
            "included in the means.",
            "",
        ]
    for directory, variants in sweeps.items():
        sections += [f"## Sweep `{directory}`, by variant", "", variants, ""]
    references = reference_table((r.dataset, r.teacher, r.student) for r in rows if r.teacher)
    if references:
        sections += ["## Published numbers of these pairs (top-1 %)", "", references, ""]
    sections += ["## Plots", ""]
    names = [storage.path(p).name for p in pictures]
    sections += [f"![{name}]({name})" for name in names]
    markdown_path = str(storage.path(out) / "report.md")
    storage.write_text(markdown_path, "\n".join(sections) + "\n")
    csv_path = str(storage.path(out) / "report.csv")
    write_csv(rows, csv_path)
    return Report(rows, table, markdown_path, csv_path, pictures, sweeps)


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
        "--baseline",
        help="variant the sweeps' differences are taken from (default: each sweep's own)",
    )
    args = parser.parse_args(argv)
    try:
        report = write_report(args.directories, args.out, baseline=args.baseline)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.markdown)
    for directory, variants in report.sweeps.items():
        print(f"\nSweep {directory}, by variant:\n{variants}")
    print(f"\nWrote {report.markdown_path}, {report.csv_path} and {len(report.plots)} plots.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
