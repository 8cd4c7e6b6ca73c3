"""Pictures of runs: test top-1 and agreement curves over epochs, and a teacher's logits with
their Haar bands over the class index. matplotlib comes with the ``report`` extra.

`figkd_jax.tools.report` groups runs into `CurvePanel`s and calls `plot_panel`; `plot_bands`
pictures FiGKD's input from a teacher run or checkpoint.
"""

from __future__ import annotations

from figkd_jax import extras

extras.require_report()

import dataclasses
import io
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from figkd_jax.io import storage


@dataclasses.dataclass(frozen=True)
class Curve:
    """The runs of one method (all seeds) drawn as one line with a min–max band."""

    label: str
    color: str
    members: Sequence[dict[str, Any]]
    distilled: bool


@dataclasses.dataclass(frozen=True)
class CurvePanel:
    """One plot: the curves of a (dataset, teacher, student), or of a model trained alone."""

    name: str
    title: str
    curves: Sequence[Curve]
    teacher_top1: float | None


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


def plot_panel(panel: CurvePanel, out_dir: str) -> list[str]:
    """Top-1 per epoch of every curve (and the teacher's top-1 as a dashed line), and the
    teacher–student agreement of the distilled curves; returns the paths written."""
    paths = [
        _plot_metric(
            panel.curves,
            "top1",
            panel.title,
            "test top-1 (%)",
            panel.teacher_top1,
            out_dir,
            panel.name,
        )
    ]
    distilled = [c for c in panel.curves if c.distilled]
    if distilled:
        paths.append(
            _plot_metric(
                distilled,
                "agreement",
                panel.title,
                "teacher–student top-1 agreement (%)",
                None,
                out_dir,
                panel.name,
            )
        )
    return [p for p in paths if p is not None]


def _plot_metric(curves, metric, title, ylabel, hline, out_dir, name) -> str | None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    lines = []
    for curve in curves:
        values = epoch_curve(curve.members, metric)
        if values is not None:
            lines.append((f"{curve.label}, n={len(curve.members)}", curve.color, values))
    if not lines:
        return None
    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, color, (epochs, mean, low, high) in lines:
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
    return save_figure(fig, storage.path(out_dir) / f"{metric}_{safe_name(name)}.png")


def save_figure(fig, path) -> str:
    """Writes `fig` as a PNG to `path` (any storage); returns the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    storage.write_bytes(path, buffer.getvalue())
    return str(path)


def safe_name(name: str) -> str:
    """`name` with every run of characters unsafe in a file name replaced by "-"."""
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


def band_teacher(
    source: str,
    *,
    dataset: str | None = None,
    default_dataset: str | None = None,
    data_dir: str | None = None,
):
    """(teacher, data config) of a teacher run's workdir or a checkpoint directory.

    The dataset is `dataset`, else the checkpoint's, else the run's config, else
    `default_dataset`; the data directory `data_dir`, else the run's config, else TFDS's default.
    """
    from figkd_jax import data
    from figkd_jax.trainer import run_setup

    run_config = {}
    config_path = storage.path(source) / "config.json"
    if config_path.exists():
        run_config = json.loads(config_path.read_text())
    _, _, meta = run_setup.teacher_checkpoint(source)
    dataset = dataset or meta.get("dataset") or run_config.get("dataset.name") or default_dataset
    if dataset is None:
        raise ValueError(
            f"the dataset of checkpoint {source} is unknown: pass it (--dataset <name>)"
        )
    teacher = run_setup.restore_teacher(source, data.get_info(dataset))
    data_config = data.default_data_config(dataset)
    if run_config.get("dataset.name") == dataset:
        for field in ("data_dir", "manual_dir", "eval_split"):
            data_config[field] = run_config.get(f"dataset.{field}")
    if data_dir is not None:
        data_config.data_dir = data_dir
    return teacher, data_config


def plot_bands(
    source: str,
    out_dir: str,
    *,
    num_examples: int = 4,
    dataset: str | None = None,
    default_dataset: str | None = None,
    data_dir: str | None = None,
    class_order: tuple[str, Sequence[int]] | None = None,
) -> str:
    """Pictures FiGKD's input: a teacher's logits on test examples and their Haar bands.

    Args:
      source: a teacher run's workdir (with ``checkpoints/``) or a checkpoint directory; its
        latest step is used.
      out_dir: where ``bands_<dataset>_<model>.png`` is written (``..._<order name>.png`` with
        a `class_order`).
      num_examples: how many test examples (the first of the eval split), >= 1.
      dataset: the dataset of the examples; default: the checkpoint's, else the run's config,
        else `default_dataset`.
      data_dir: TFDS data directory; default: the run's config, else the TFDS default.
      class_order: (name, permutation): the logits are drawn, and split into bands, with the
        classes in that order (figkd_jax.trainer.class_order); default: index order.

    Returns:
      The path of the PNG.
    """
    if num_examples < 1:
        raise ValueError(f"num_examples={num_examples} must be >= 1")
    import jax

    from figkd_jax import data
    from figkd_jax.data import transforms

    teacher, data_config = band_teacher(
        source, dataset=dataset, default_dataset=default_dataset, data_dir=data_dir
    )
    batch = next(iter(data.eval_stream(data_config, global_batch_size=num_examples)))
    info = data.get_info(data_config.name)
    apply = jax.jit(
        lambda v, images: teacher.model.apply(
            v, transforms.normalized_images(images, info), train=False
        )
    )
    logits = np.asarray(apply(teacher.variables, batch["image"]))
    order_name, permutation = class_order or ("index", np.arange(logits.shape[-1]))
    permutation = np.asarray(permutation)
    logits = logits[:, permutation]
    labels = np.asarray(batch["label"])
    keep = np.asarray(batch["mask"])
    panels = {k: v[keep] for k, v in logit_bands(logits).items()}
    name = f"{data_config.name}_{teacher.name}"
    if class_order is not None:
        name += f"_{order_name}"
    return _draw_bands(
        panels,
        labels[keep],
        f"{teacher.name} on {data_config.name} (step {teacher.step}), {order_name} order",
        storage.path(out_dir) / f"bands_{safe_name(name)}.png",
        permutation,
    )


def _draw_bands(
    panels: dict[str, np.ndarray],
    labels: np.ndarray,
    title: str,
    path,
    permutation: np.ndarray,
) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    logits = panels["logits"]
    num_examples, num_classes = logits.shape
    columns = list(panels)
    fig = Figure(figsize=(3.2 * len(columns), 2.2 * num_examples + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(num_examples, len(columns), sharex=True, sharey="row", squeeze=False)
    positions = np.arange(num_classes)
    for i in range(num_examples):
        predicted = int(permutation[np.argmax(logits[i])])
        for j, column in enumerate(columns):
            ax = axes[i, j]
            values = panels[column][i]
            colors = np.where(permutation == labels[i], "tab:red", "tab:blue")
            ax.bar(positions, values, width=0.9, color=colors)
            ax.axhline(0, color="black", linewidth=0.5)
            energy = float(np.mean(values**2))
            ax.set_title(f"{column} (energy {energy:.3g})", fontsize="small")
            if j == 0:
                ax.set_ylabel(f"label {labels[i]}, pred {predicted}", fontsize="small")
            if i == num_examples - 1:
                ax.set_xlabel("class, in this order")
                if num_classes <= 20:
                    ax.set_xticks(positions, [str(c) for c in permutation], fontsize="x-small")
    fig.suptitle(f"{title}: teacher logits and Haar bands over classes (red: true class)")
    fig.tight_layout()
    return save_figure(fig, path)
