"""A teacher's logits as FiGKD sees them: band pictures and the energy share by class order.

    python -m figkd_jax.tools.bands <teacher run or checkpoint> [--runs <dir>...] [--out <dir>]
        [--dataset <name>] [--data_dir <dir>]

Unlike the report, which only reads what runs wrote, this command runs the teacher. ``--out``
(default: the teacher's directory) receives:

- ``bands_<dataset>_<model>.png``: the teacher's logits on a few test examples beside their
  low and high Haar bands (levels 1 and 2) over the class index, and
  ``bands_<dataset>_<model>_<order>.png`` in each other class order that the FiGKD runs under
  ``--runs`` used;
- ``bands.md``: the share of the teacher's logit energy on the eval split in the high band
  under each class order (index, superclass where the dataset has superclasses, the runs'
  orders, the teacher's own, and 20 random orders: `figkd_jax.trainer.class_order`), Haar
  levels 1 to 3, and the pictures.
"""

from __future__ import annotations

from figkd_jax import extras

extras.require_report()

import argparse
import dataclasses
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from figkd_jax.io import storage
from figkd_jax.tools import plots, report


@dataclasses.dataclass(frozen=True)
class Bands:
    # The high-band energy share by class order (Markdown).
    energy: str
    markdown_path: str
    plots: list[str]


def runs_class_orders(runs: Iterable[dict[str, Any]]) -> dict[str, tuple[int, ...]]:
    """{label: permutation} of the class orders the runs used (the first run's of each label),
    random orders left out (one seed's draw says little: see `class_order_energy`)."""
    from figkd_jax.trainer import class_order

    orders = {}
    for run in runs:
        if run.get("class_order"):
            order = class_order.ClassOrder.from_json(run["class_order"])
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


def write_bands(
    source: str,
    runs_directories: Sequence[str] = (),
    out: str | None = None,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
) -> Bands:
    """Writes the band pictures and bands.md of the teacher in `source` to `out` (default:
    `source`); the runs under `runs_directories` give the class orders and the dataset."""
    runs = report.find_results(runs_directories) if runs_directories else []
    out = out or source
    storage.path(out).mkdir(parents=True, exist_ok=True)
    datasets = sorted({r["dataset"] for r in runs})
    teacher_source = dict(
        dataset=dataset,
        default_dataset=datasets[0] if len(datasets) == 1 else None,
        data_dir=data_dir,
    )
    pictures = [plots.plot_bands(source, out, **teacher_source)]
    orders = runs_class_orders(runs)
    for name, permutation in orders.items():
        if name != "index":
            pictures.append(
                plots.plot_bands(source, out, class_order=(name, permutation), **teacher_source)
            )
    energy = class_order_energy(source, orders, runs, **teacher_source)
    names = [storage.path(p).name for p in pictures]
    sections = [
        "# The teacher's logits by Haar band",
        "",
        "## The teacher's logit energy in the high band, by class order",
        "",
        f"Teacher `{source}` on the eval split: the share of its centred logit energy in the "
        "Haar high band (lower: neighbouring classes get similar logits).",
        "",
        energy,
        "",
        "## Pictures",
        "",
        *(f"![{name}]({name})" for name in names),
    ]
    markdown_path = str(storage.path(out) / "bands.md")
    storage.write_text(markdown_path, "\n".join(sections) + "\n")
    return Bands(energy, markdown_path, pictures)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m figkd_jax.tools.bands",
        description="Band pictures of a teacher's logits and their high-band energy share by "
        "class order.",
    )
    parser.add_argument("source", help="teacher run workdir or checkpoint directory")
    parser.add_argument(
        "--runs", nargs="*", default=(), help="run or sweep workdirs whose class orders to add"
    )
    parser.add_argument("--out", help="output directory (default: the teacher's directory)")
    parser.add_argument("--dataset", help="dataset of the examples (default: inferred)")
    parser.add_argument("--data_dir", help="TFDS data directory")
    args = parser.parse_args(argv)
    try:
        bands = write_bands(
            args.source, args.runs, args.out, dataset=args.dataset, data_dir=args.data_dir
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"High-band share of the teacher's logit energy by class order:\n{bands.energy}")
    print(f"\nWrote {bands.markdown_path} and {len(bands.plots)} pictures.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
