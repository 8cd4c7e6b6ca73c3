"""Checkpoint layout shared by training, teacher loading, conversion and export.

A checkpoint directory is an orbax ``CheckpointManager`` directory whose steps
hold up to three items:

- ``variables``: the model's ``{"params", "batch_stats"}``, all a teacher or an
  exported student needs;
- ``optimizer``: ``{"opt_state", "nonfinite_steps"}``, written by training only;
- ``meta``: JSON with at least ``model`` and ``num_classes`` (and, from
  training, the epoch, the metrics history and the best step).

Keeping the variables apart lets a teacher be restored without its
optimiser, and lets a converted PyTorch teacher or an exported student be a
checkpoint directory like any other.

A step that fails to restore is set aside by `set_aside`: renamed to
``<step>.damaged-<UTC time>``, a name orbax's step listing does not match, so it is
never restored, overwritten or pruned again, and stays for inspection.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from figkd_jax import models
from figkd_jax.io import storage

VARIABLES, OPTIMIZER, META = "variables", "optimizer", "meta"


def _drop_read_only_notice(record: logging.LogRecord) -> bool:
    """orbax warns on every read-only manager (each teacher restore); reading is all we ask."""
    return not record.getMessage().startswith("Given directory is read only")


logging.getLogger("absl").addFilter(_drop_read_only_notice)


def manager(
    directory: str, *, keep_last: int = 2, best_metric: str | None = "top1", read_only=False
) -> ocp.CheckpointManager:
    """A manager keeping the `keep_last` newest steps plus the best by `best_metric`.

    `directory` may be a URL (``gs://bucket/run/checkpoints``).
    """
    policies = [ocp.checkpoint_managers.LatestN(n=keep_last)]
    if best_metric is not None:
        policies.append(
            ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[best_metric],
                n=1,
                keep_checkpoints_without_metrics=False,
            )
        )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        create=not read_only,
        read_only=read_only,
        # What orbax would force (with a warning) for a read-only manager anyway.
        save_interval_steps=0 if read_only else 1,
        # Synchronous saves: a step is on disk (and atomically committed) when
        # save() returns, so a kill right after cannot lose it.
        enable_async_checkpointing=False,
    )
    return ocp.CheckpointManager(
        storage.path(directory), options=options, item_names=(VARIABLES, OPTIMIZER, META)
    )


def save(
    mngr: ocp.CheckpointManager,
    step: int,
    *,
    variables: Any,
    meta: dict,
    optimizer: Any = None,
    metrics: dict | None = None,
) -> None:
    items = {VARIABLES: ocp.args.StandardSave(variables), META: ocp.args.JsonSave(meta)}
    if optimizer is not None:
        items[OPTIMIZER] = ocp.args.StandardSave(optimizer)
    mngr.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    mngr.wait_until_finished()


def read_meta(directory: str, step: int | None = None) -> tuple[int, dict]:
    """(step, meta) of `step` (default: the latest) of a checkpoint directory."""
    mngr = manager(directory, read_only=True, best_metric=None)
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    restored = mngr.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))
    return step, dict(restored[META])


def restore_variables(directory: str, step: int, abstract_variables: Any) -> Any:
    """The ``variables`` item of `step`, laid out like `abstract_variables`."""
    mngr = manager(directory, read_only=True, best_metric=None)
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(**{VARIABLES: ocp.args.StandardRestore(abstract_variables)}),
    )
    return restored[VARIABLES]


def restore_training(
    mngr: ocp.CheckpointManager, step: int, *, variables: Any, optimizer: Any
) -> tuple[Any, Any, dict]:
    """(variables, optimizer, meta) of `step`, laid out like the given abstract trees."""
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            **{
                VARIABLES: ocp.args.StandardRestore(variables),
                OPTIMIZER: ocp.args.StandardRestore(optimizer),
                META: ocp.args.JsonRestore(),
            }
        ),
    )
    return restored[VARIABLES], restored[OPTIMIZER], dict(restored[META])


def abstract(tree: Any, sharding: jax.sharding.Sharding | None = None) -> Any:
    """ShapeDtypeStructs of `tree` (with `sharding`), the restore target orbax needs."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def select(directory: str, which: str = "last") -> tuple[int, dict]:
    """(step, meta) of the latest checkpoint, or of the best one (``which="best"``):
    the step that the latest checkpoint's meta names as ``best_step``."""
    if which not in ("last", "best"):
        raise ValueError(f"which={which!r}; valid: 'last', 'best'")
    step, meta = read_meta(directory)
    if which == "best":
        best_step = meta.get("best_step")
        if best_step is None:
            raise ValueError(
                f"{directory} records no best_step (no epoch evaluated yet): use which='last'"
            )
        step, meta = read_meta(directory, best_step)
    return step, meta


def restore_model(
    directory: str,
    step: int,
    meta: dict,
    *,
    image_shape: tuple[int, ...],
    dtype=jnp.float32,
    sharding: jax.sharding.Sharding | None = None,
):
    """(module, variables) of the model that `meta` names, restored from `step`."""
    model = models.create(meta["model"], num_classes=meta["num_classes"], dtype=dtype)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), train=False)
    )
    return model, restore_variables(directory, step, abstract(shapes, sharding))


def failure_reason(error: BaseException) -> str:
    """Why a checkpoint could not be read, in one line.

    TensorStore wraps the cause (which names the damaged file) in an exception
    whose message is a 60-line spec, and appends its spec to its own messages.
    """
    while error.__cause__ is not None:
        error = error.__cause__
    message = str(error).split(" [tensorstore_spec")[0]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return f"{type(error).__name__}: {' '.join(lines)}" if lines else type(error).__name__


def _drop_abandoned_read_failures(record: logging.LogRecord) -> bool:
    # asyncio names the class: "Future exception ..." for a bare future, "Task
    # exception ..." for a read coroutine's task; which one is collected first varies.
    message = record.getMessage()
    return not (
        message.startswith(
            ("Future exception was never retrieved", "Task exception was never retrieved")
        )
        and ("OCDBT" in message or "tensorstore" in message.lower())
    )


def silence_abandoned_reads() -> None:
    """Keeps the reads that orbax abandons when a restore fails off stderr (idempotent).

    Orbax runs a restore's reads in an event loop that it closes as soon as one
    read fails; each read still in flight then reports "Event loop is closed",
    and each abandoned read coroutine its error when it is collected, through
    `sys.unraisablehook`: a traceback per array. They arrive whenever those
    reads finish or are collected, possibly long after the restore returned,
    so the filter stays for the life of the process. It drops only these two
    kinds and passes everything else to the hook it replaces.
    """
    previous = sys.unraisablehook
    if getattr(previous, "drops_abandoned_reads", False):
        return
    # The same reads' failed futures and tasks, when collected, are logged by asyncio instead.
    logging.getLogger("asyncio").addFilter(_drop_abandoned_read_failures)

    def hook(unraisable):
        closed_loop = isinstance(unraisable.exc_value, RuntimeError) and (
            str(unraisable.exc_value) == "Event loop is closed"
        )
        orbax_read = inspect.iscoroutine(unraisable.object) and (
            "/orbax/" in unraisable.object.cr_code.co_filename
        )
        if not (closed_loop or orbax_read):
            previous(unraisable)

    hook.drops_abandoned_reads = True
    sys.unraisablehook = hook


def set_aside(directory: str | os.PathLike, step: int) -> epath.Path:
    """Renames the checkpoint of `step` out of orbax's sight; returns its new path."""
    source = epath.Path(directory) / str(step)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = source.with_name(f"{step}.damaged-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = source.with_name(f"{step}.damaged-{stamp}-{suffix}")
    # On object storage a rename copies then deletes: a kill midway leaves
    # both halves, and the leftover step fails (and is set aside) again.
    source.rename(target)
    return target
