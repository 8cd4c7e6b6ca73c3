"""Several runs of one config in one parent workdir: variants (or methods) x seeds,
optionally after training their teacher.

Layout of ``<workdir>``:

- ``teacher/``: the teacher run (``config.teacher.model``, method ``ce``), when
  ``config.sweep.train_teacher`` is set; it trains with the students' config except
  for the ``config.sweep.teacher_*`` fields (its own epochs, decay epochs and learning
  rate; the benchmark configs set the protocol's rate of the teacher architecture);
- ``<variant>_seed<seed>/``: one run per variant and seed. A variant is a name and a set of
  config field overrides: those of ``config.sweep.variants``, then one per combination of the
  values of ``config.sweep.grid``; without either, one per method of ``config.sweep.methods``
  (named after the method). Runs of method ``mlkd`` take ``config.sweep.mlkd_*`` (MLKD's
  own epochs and learning rate) where set.

Each run is an ordinary run (its own config.json, checkpoints and results.json, and its own
lock while it trains) that records its variant in ``config.sweep.variant``, so an interrupted
sweep resumes run by run when relaunched, a second launch of the same sweep stops at the run
the first one holds, and ``python -m figkd_jax.tools.report <workdir>`` tabulates it by variant.
Every run is built (config checked) before the first one trains: a bad override stops the
sweep in one line naming its variant.
"""

from __future__ import annotations

import itertools
import re

import ml_collections
from absl import logging

from figkd_jax.io import storage
from figkd_jax.trainer import methods, summary, train
from figkd_jax.trainer.errors import ConfigError
from figkd_jax.trainer.run_setup import build_run

# A variant's name becomes a directory name: no separators, nothing a shell would expand.
_VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]*")
# Fields a variant may not set: the sweep's own (one sweep, not nested ones), the seed (the
# sweep's seeds vary it) and where runs live (the sweep decides).
_FIELDS_NOT_VARIED = ("sweep", "seed", "teacher.workdir", "teacher.checkpoint")


def is_sweep(config: ml_collections.ConfigDict) -> bool:
    """Whether `config` describes several runs (variants, methods or seeds, or a teacher
    first)."""
    s = config.sweep
    return bool(s.methods or s.seeds or s.variants or s.grid or s.train_teacher)


def variants(config: ml_collections.ConfigDict) -> list[tuple[str, dict]]:
    """(name, {dotted field: value}) of every variant of the sweep, in launch order.

    Raises ConfigError on a malformed, duplicate or reserved variant name, a variant that sets
    a field that a variant may not set, or a sweep that lists both variants and methods.
    """
    s = config.sweep
    found: list[tuple[str, dict]] = []
    for entry in s.variants:
        if not (
            isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[1], dict)
        ):
            raise ConfigError(
                f"config.sweep.variants entry {entry!r} must be a (name, {{field: value}}) pair"
            )
        found.append((entry[0], dict(entry[1])))
    if s.grid:
        axes = []
        for entry in s.grid:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and entry[1]):
                raise ConfigError(
                    f"config.sweep.grid entry {entry!r} must be a (field, (value, ...)) pair with "
                    "at least one value"
                )
            axes.append((entry[0], tuple(entry[1])))
        for values in itertools.product(*(values for _, values in axes)):
            overrides = {field: value for (field, _), value in zip(axes, values, strict=True)}
            name = "_".join(
                f"{field.rsplit('.', 1)[-1]}{value}" for field, value in overrides.items()
            )
            found.append((name, overrides))
    if found and s.methods:
        raise ConfigError(
            "config.sweep.methods and config.sweep.variants/grid are exclusive: give each "
            'variant its method ("method.name")'
        )
    if not found:
        found = [(method, {"method.name": method}) for method in s.methods or (config.method.name,)]
    names = [name for name, _ in found]
    for name, overrides in found:
        if (
            not (isinstance(name, str) and _VARIANT_NAME.fullmatch(name))
            or name == "teacher"
            or "_seed" in name
        ):
            raise ConfigError(
                f"sweep variant name {name!r} must be letters, digits and . _ = + - (a directory "
                "name; not 'teacher', no '_seed')"
            )
        if names.count(name) > 1:
            raise ConfigError(f"sweep variant name {name!r} is used twice: names must be unique")
        for field in overrides:
            if not isinstance(field, str) or any(
                field == f or field.startswith(f + ".") for f in _FIELDS_NOT_VARIED
            ):
                raise ConfigError(
                    f"sweep variant {name!r}: {field!r} cannot be varied by a variant "
                    f"(not {', '.join(_FIELDS_NOT_VARIED)})"
                )
    return found


def _apply(run: ml_collections.ConfigDict, name: str, overrides: dict) -> None:
    """Sets each dotted field of `overrides` on `run`; ConfigError naming the variant if the
    field does not exist or the value does not fit its type."""
    for field, value in overrides.items():
        *parents, leaf = field.split(".")
        node = run
        try:
            for key in parents:
                node = node[key]
            if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
                raise KeyError(field)
            if isinstance(node[leaf], ml_collections.ConfigDict):
                raise ConfigError(
                    f"sweep variant {name!r}: config.{field} is a block; set its fields"
                )
            node[leaf] = tuple(value) if isinstance(value, list) else value
        except (KeyError, AttributeError, TypeError) as e:
            reason = "no such config field" if not isinstance(e, TypeError) else str(e)
            raise ConfigError(
                f"sweep variant {name!r}: config.{field}={value!r}: {reason}"
            ) from None


def plan(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
    """(sub-directory, config) of every run of the sweep, in launch order: the teacher, then
    each variant's seeds."""
    runs = []
    base = ml_collections.ConfigDict(config.to_dict())
    base.sweep.methods, base.sweep.seeds, base.sweep.train_teacher = (), (), False
    base.sweep.variants, base.sweep.grid = (), ()
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
        teacher.sweep.variant = "teacher"
        if config.sweep.teacher_num_epochs is not None:
            teacher.num_epochs = config.sweep.teacher_num_epochs
        if config.sweep.teacher_lr_decay_epochs is not None:
            teacher.optim.lr_decay_epochs = tuple(config.sweep.teacher_lr_decay_epochs)
        if config.sweep.teacher_learning_rate is not None:
            teacher.optim.learning_rate = config.sweep.teacher_learning_rate
        if config.sweep.teacher_train_split is not None:
            teacher.dataset.train_split = config.sweep.teacher_train_split
        runs.append(("teacher", teacher))
    for name, overrides in variants(config):
        variant = ml_collections.ConfigDict(base.to_dict())
        _apply(variant, name, overrides)
        try:
            needs_teacher = methods.get(variant.method.name).needs_teacher
        except ValueError as e:
            raise ConfigError(f"sweep variant {name!r}: {e}") from None
        variant.sweep.variant = name
        for seed in config.sweep.seeds or (config.seed,):
            run = ml_collections.ConfigDict(variant.to_dict())
            run.seed = seed
            if variant.method.name == "mlkd" and config.sweep.mlkd_num_epochs is not None:
                run.num_epochs = config.sweep.mlkd_num_epochs
            if variant.method.name == "mlkd" and config.sweep.mlkd_learning_rate is not None:
                run.optim.learning_rate = config.sweep.mlkd_learning_rate
            if config.sweep.train_teacher and needs_teacher:
                run.teacher.workdir = "teacher"  # made absolute by run()
                run.teacher.checkpoint = None
            runs.append((f"{name}_seed{seed}", run))
    return runs


def validate(
    config: ml_collections.ConfigDict, workdir: str
) -> list[tuple[str, ml_collections.ConfigDict]]:
    """The plan, every run built (config checked) before any trains, the teacher links made
    absolute under `workdir`. Raises ConfigError naming the variant of the first bad run."""
    runs = plan(config)
    names = {name.rpartition("_seed")[0] or name for name, _ in runs}
    if (config.sweep.variants or config.sweep.grid) and config.sweep.baseline not in names:
        raise ConfigError(
            f"config.sweep.baseline={config.sweep.baseline!r} is not a variant of the sweep: one "
            f"of {', '.join(sorted(names))}"
        )
    for _, run_config in runs:
        if run_config.teacher.workdir == "teacher":
            run_config.teacher.workdir = str(storage.path(workdir) / "teacher")
        try:
            build_run(run_config)
        except ConfigError as e:
            raise ConfigError(f"sweep variant {run_config.sweep.variant!r}: {e}") from None
    return runs


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every run of the plan (all validated first), then prints their summary."""
    runs = validate(config, workdir)
    results = {}
    for name, run_config in runs:
        logging.info("Sweep: run %s", name)
        results[name] = train.train_and_evaluate(run_config, str(storage.path(workdir) / name))
    print(summary.variant_table(list(results.values()), config.sweep.baseline))
    return results
