"""Tables and statistics of a set of runs, in one place: mean ± sample std over seeds,
differences from a baseline marked by a pooled two-sample t-test, and the Markdown and CSV
writers. The sweep prints `variant_table`; the report writes it for every sweep it finds, and
its per-pair table and the class-order energy table go through the same writers.

A run here is a parsed ``results.json`` (`figkd_jax.trainer.workdir`), as a run returns it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import stats

# Config keys that may differ between runs of one row: the seed, and where things live or how
# often they are logged, none of which changes a result.
RUN_LOCAL_KEYS = (
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

# The significance level of the noise marks.
ALPHA = 0.05


# --------------------------------------------------------------------------
# Statistics


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(mean, sample std with ddof=1) of `values`; None for the mean without values and for
    the std with fewer than two."""
    if not values:
        return None, None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return float(np.mean(values)), std


@dataclasses.dataclass(frozen=True)
class Difference:
    """The difference of two means; `significant` is None where the seeds cannot tell (fewer
    than three runs in all)."""

    value: float
    significant: bool | None

    def __str__(self) -> str:
        return f"{self.value:+.2f}{' *' if self.significant else ''}"


def difference(values: Sequence[float], baseline: Sequence[float]) -> Difference:
    """mean(values) − mean(baseline), marked significant when a pooled two-sample t-test
    over the seeds rejects equal means at `ALPHA`:
    ``|diff| > t_{1-ALPHA/2}(n_a + n_b - 2) * s_pooled * sqrt(1/n_a + 1/n_b)``."""
    diff = float(np.mean(values) - np.mean(baseline))
    dof = len(values) + len(baseline) - 2
    if dof < 1:
        return Difference(diff, None)
    # Sums of squared deviations, so that one seed on a side adds nothing (not NaN).
    pooled = (_squared_deviations(values) + _squared_deviations(baseline)) / dof
    standard_error = np.sqrt(pooled * (1 / len(values) + 1 / len(baseline)))
    return Difference(diff, bool(abs(diff) > stats.t.ppf(1 - ALPHA / 2, dof) * standard_error))


def _squared_deviations(values: Sequence[float]) -> float:
    return float(np.sum((np.asarray(values) - np.mean(values)) ** 2))


NOISE_NOTE = (
    "`*`: the difference from {baseline} exceeds its noise (pooled two-sample t-test over "
    f"seeds, {ALPHA:.0%}). Seeds vary initialisation and data order only, on one fixed test set."
)


# --------------------------------------------------------------------------
# Writers


def format_mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; cells are written with str()."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV of the rows; None becomes an empty field, floats keep 4 decimals."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow("" if v is None else f"{v:.4f}" if isinstance(v, float) else v for v in row)
    return buffer.getvalue()


# --------------------------------------------------------------------------
# Settings and variants


def setting(results: dict[str, Any]) -> dict[str, Any]:
    """The config keys of a run that can change its result: not `RUN_LOCAL_KEYS`, not the
    sweep's, and of the per-method blocks only the run's own method's."""
    method = results["method"]
    found = {}
    for key, value in results.get("config", {}).items():
        parts = key.split(".")
        if key in RUN_LOCAL_KEYS or parts[0] == "sweep":
            continue
        if parts[0] == "method" and len(parts) == 3 and parts[1] != method:
            continue
        found[key] = value
    return found


def differing_keys(settings: Sequence[dict[str, Any]]) -> list[str]:
    """The keys whose value differs between the `settings` that hold them (a key that only
    some hold, such as another method's block, differs only if its values do)."""
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({json.dumps(s[k]) for s in settings if k in s}) > 1]


def format_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def variant_of(results: dict[str, Any]) -> str:
    """The run's sweep variant (recorded in its config), else its method (with "+LS")."""
    variant = results.get("config", {}).get("sweep.variant")
    if variant:
        return variant
    return results["method"] + ("+LS" if results.get("standardize") else "")


@dataclasses.dataclass(frozen=True)
class VariantRow:
    """The runs of one variant. Top-1 in percent; differences from the baseline variant are
    None for the baseline itself, the teacher, and without a baseline."""

    variant: str
    model: str
    seeds: tuple[int, ...]
    # {varied config key: formatted value}; "" where the key does not apply to this variant.
    fields: dict[str, str]
    best: tuple[float | None, float | None]
    last: tuple[float | None, float | None]
    best_difference: Difference | None
    last_difference: Difference | None
    wall_time: float
    # (seed, epochs_done) of the runs that stopped before num_epochs.
    unfinished: tuple[tuple[int, int], ...] = ()

    @property
    def seeds_cell(self) -> str:
        if not self.unfinished:
            return str(len(self.seeds))
        runs = ", ".join(f"seed {seed} at epoch {done}" for seed, done in self.unfinished)
        return f"{len(self.seeds)} (**unfinished**: {runs})"


def unfinished(members: Iterable[dict[str, Any]]) -> tuple[tuple[int, int], ...]:
    """(seed, epochs_done) of the runs with epochs_done < num_epochs, by seed."""
    return tuple(
        sorted(
            (r["seed"], r["epochs_done"])
            for r in members
            if r.get("epochs_done", 0) < r.get("num_epochs", 0)
        )
    )


def variant_rows(
    runs: Sequence[dict[str, Any]], baseline: str
) -> tuple[list[str], list[VariantRow]]:
    """(varied config keys, one row per variant: the teacher's first, then in first-seen
    order) of the runs of one sweep.

    The varied keys are those that differ between the students' variants (the teacher's row
    differs in everything and shows only its model).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    # The teacher first, then the variants as the runs come.
    for r in sorted(runs, key=lambda r: variant_of(r) != "teacher"):
        groups.setdefault(variant_of(r), []).append(r)
    students = {v: members for v, members in groups.items() if v != "teacher"}
    settings = {v: setting(members[0]) for v, members in students.items()}
    keys = differing_keys(list(settings.values())) if len(settings) > 1 else []

    def top1(members, which):
        return [100 * r[f"{which}_top1"] for r in members if r.get(f"{which}_top1") is not None]

    rows = []
    for variant, members in groups.items():
        has_baseline = variant not in ("teacher", baseline) and baseline in groups
        diffs = {}
        for which in ("best", "last"):
            values, reference = top1(members, which), top1(groups.get(baseline, []), which)
            diffs[which] = (
                difference(values, reference) if has_baseline and values and reference else None
            )
        own = settings.get(variant, {})
        rows.append(
            VariantRow(
                variant=variant,
                model=members[0]["model"],
                seeds=tuple(sorted(r["seed"] for r in members)),
                fields={k: format_value(own[k]) if k in own else "" for k in keys},
                best=mean_std(top1(members, "best")),
                last=mean_std(top1(members, "last")),
                best_difference=diffs["best"],
                last_difference=diffs["last"],
                wall_time=float(sum(r.get("wall_time", 0.0) for r in members)),
                unfinished=unfinished(members),
            )
        )
    return keys, rows


def variant_table(runs: Sequence[dict[str, Any]], baseline: str) -> str:
    """The summary of one sweep as Markdown: one row per variant with its varied config fields,
    the seeds, mean ± std of best and last top-1, their differences from `baseline`'s means
    (marked ``*`` beyond their noise: `difference`) and the summed wall time."""
    keys, rows = variant_rows(runs, baseline)
    header = (
        "variant",
        "model",
        *keys,
        "seeds",
        "best top-1 (%)",
        "last top-1 (%)",
        f"best − {baseline}",
        f"last − {baseline}",
        "wall time (s)",
    )
    cells = [
        (
            row.variant,
            row.model,
            *row.fields.values(),
            row.seeds_cell,
            format_mean_std(*row.best),
            format_mean_std(*row.last),
            "" if row.best_difference is None else row.best_difference,
            "" if row.last_difference is None else row.last_difference,
            f"{row.wall_time:.1f}",
        )
        for row in rows
    ]
    return markdown_table(header, cells) + "\n\n" + NOISE_NOTE.format(baseline=baseline)
