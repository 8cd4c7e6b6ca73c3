"""A run's workdir: its config, checkpoints of the training state, and results.

Layout of ``<workdir>``: ``config.json`` (the flat config), ``checkpoints/`` (orbax: the
student's variables, the optimiser state, and a JSON meta with the history; damaged steps set
aside as ``<step>.damaged-<time>``), TensorBoard event files, ``results.json`` (written by
process 0 after every epoch) and, while a launch runs, ``lock.json`` (`workdir_lock`).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from figkd_jax.io import events, storage
from figkd_jax.trainer import checkpoints, class_order, methods
from figkd_jax.trainer.errors import ConfigError
from figkd_jax.trainer.run_setup import Run
from figkd_jax.trainer.steps import TrainState

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
CHECKPOINTS_DIR = "checkpoints"

# Fields that may differ between a run and its resumption.
RESUMABLE_CHANGES = (
    "max_steps",
    "input_on_device",
    "steps_per_dispatch",
    "log_every_steps",
    "dataset.data_dir",
    "dataset.manual_dir",
    "on_changed_config",
)


def config_to_dict(config) -> dict[str, Any]:
    """The config as a flat {dotted key: JSON value} dict."""
    flat = {}

    def visit(prefix, node):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, ml_collections.ConfigDict):
                visit(f"{name}.", value)
            else:
                flat[name] = list(value) if isinstance(value, tuple) else value

    visit("", config)
    return flat


def changed_fields(config, workdir: str) -> list[str]:
    """Config fields that differ from the run already in `workdir` (if any)."""
    path = storage.path(workdir) / CONFIG_FILE
    if not path.exists():
        return []
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        # `write_json` never leaves half a file: this one was changed by hand.
        raise ConfigError(
            f"{path} is not valid JSON ({e}): restore it, or use a new --workdir"
        ) from None
    resolved = config_to_dict(config)
    return sorted(
        k
        for k in set(previous) | set(resolved)
        if k not in RESUMABLE_CHANGES and previous.get(k) != resolved.get(k)
    )


def delete_run(workdir: str) -> None:
    """Removes what a run wrote in `workdir`, and nothing else."""
    directory = storage.path(workdir)
    if (directory / CHECKPOINTS_DIR).exists():
        (directory / CHECKPOINTS_DIR).rmtree()
    for name in (CONFIG_FILE, RESULTS_FILE, class_order.FILE_NAME, *events.files(workdir)):
        (directory / name).unlink(missing_ok=True)


def write_json(path: str, obj: Any) -> None:
    """Writes `obj` as JSON so that a reader (or a kill) never sees half a file.

    Locally through a renamed temporary file; on GCS as one object upload, which replaces
    the object whole or not at all (`storage`). After a kill, ``config.json`` and
    ``results.json`` therefore hold either the previous complete version or the new one. A
    resumed run reads ``config.json`` (and refuses an unparsable one) but never reads
    ``results.json``: it rewrites it from the checkpoint's meta after its first epoch.
    """
    storage.write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def check_workdir(workdir: str) -> None:
    """Raises StorageError unless `workdir` is writable and, with several processes, the
    same directory for all of them (shared storage such as GCS, not a host's local disk).

    Process 0 writes a marker with a random token; after a barrier every process reads it
    back, and all of them agree on the outcome, so none waits at a later barrier alone.
    """
    if jax.process_count() == 1:
        storage.check_writable(workdir)
        storage.remove_marker(workdir)
        return
    failure = None
    token = bytes(16)
    if jax.process_index() == 0:
        try:
            token = bytes.fromhex(storage.check_writable(workdir))
        except storage.StorageError as e:
            failure = str(e)
    token = bytes(multihost_utils.broadcast_one_to_all(np.frombuffer(token, np.uint8)))
    if not any(token):  # process 0 could not write
        raise storage.StorageError(
            failure or f"process 0 cannot write to {workdir}: see its log for why"
        )
    seen = storage.read_marker(workdir) == token.hex()
    everyone = multihost_utils.process_allgather(np.asarray(seen))
    if jax.process_index() == 0:
        storage.remove_marker(workdir)
    if not everyone.all():
        blind = [int(i) for i in np.flatnonzero(~everyone)]
        raise storage.StorageError(
            f"--workdir {workdir} is not the same directory for every process (processes "
            f"{blind} do not see what process 0 wrote): the workdir must be shared storage, "
            "a gs:// bucket or a shared filesystem"
        )


def checkpoint_manager(workdir: str, keep_last: int):
    return checkpoints.manager(storage.path(workdir) / CHECKPOINTS_DIR, keep_last=keep_last)


def _optimizer_item(state: TrainState) -> dict:
    """What the checkpoint's ``optimizer`` item holds."""
    return {"opt_state": state.opt_state, "nonfinite_steps": state.nonfinite_steps}


def save_state(mngr, state: TrainState, meta: dict, run: Run, metrics) -> None:
    """Checkpoints `state` at its step, with `meta` and what a teacher restore needs."""
    step = int(state.step)
    meta = {
        **meta,
        "model": run.config.model,
        "num_classes": run.info.num_classes,
        "dataset": run.info.name,
        "step": step,
    }
    checkpoints.save(
        mngr,
        step,
        variables=state.variables,
        optimizer=_optimizer_item(state),
        meta=meta,
        metrics=metrics,
    )


class UnrestorableRun(RuntimeError):
    """A workdir holds checkpoints but none of them restores."""


def restore_state(mngr, template: TrainState, run: Run, step: int) -> tuple[TrainState, dict]:
    """The state of checkpoint `step` (laid out like `template`) and its meta."""
    variables, optimizer, meta = checkpoints.restore_training(
        mngr,
        step,
        variables=checkpoints.abstract(template.variables, run.replicated),
        optimizer=checkpoints.abstract(_optimizer_item(template), run.replicated),
    )
    state = TrainState(
        step=jax.device_put(jnp.asarray(step, jnp.int32), run.replicated),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=optimizer["opt_state"],
        nonfinite_steps=optimizer["nonfinite_steps"],
    )
    return state, meta


def resume_state(mngr, template: TrainState, run: Run) -> tuple[TrainState, dict] | None:
    """The state and meta of the newest checkpoint that restores and validates.

    Newer checkpoints that fail are set aside (`checkpoints.set_aside`), each
    with one warning line. None if there is no checkpoint. If there are some
    but none restores, raises UnrestorableRun, unless config.on_changed_config
    is "overwrite": then all are set aside and the run starts afresh.
    """
    checkpoints.silence_abandoned_reads()
    failures: list[tuple[int, str]] = []
    restored = None
    for step in sorted(mngr.all_steps(), reverse=True):
        reason = "it failed to restore on another process"
        try:
            restored = restore_state(mngr, template, run, step)
            _check_restored(*restored, step)
        except Exception as e:  # damage surfaces as many exception types
            restored, reason = None, checkpoints.failure_reason(e)
        if _on_every_process(restored is not None):
            break
        restored = None
        failures.append((step, reason))
    directory = mngr.directory
    if failures and restored is None and run.config.on_changed_config != "overwrite":
        details = "; ".join(f"step {step}: {reason}" for step, reason in failures)
        raise UnrestorableRun(
            f"no checkpoint in {directory} restores: rerun with "
            "--config.on_changed_config=overwrite to start the run afresh (the damaged "
            f"checkpoints are kept, renamed), or remove {directory}; {details}"
        )
    for step, reason in failures:
        if jax.process_index() == 0:
            kept = checkpoints.set_aside(directory, step)
            logging.warning(
                "Checkpoint step %d could not be restored (%s); kept as %s, never retried",
                step,
                reason,
                kept,
            )
    if failures:
        multihost_utils.sync_global_devices("figkd_jax: damaged checkpoints set aside")
        mngr.reload()
    return restored


def _check_restored(state: TrainState, meta: dict, step: int) -> None:
    """Raises ValueError unless a restored checkpoint is one the trainer could have written."""
    if meta.get("step", step) != step or not isinstance(meta.get("history"), list):
        raise ValueError(f"its meta does not describe step {step}: {meta}")
    floats = [
        x
        for x in jax.tree.leaves((state.variables, state.opt_state))
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    # Non-finite steps are never applied, so a non-finite value is damage.
    all_finite = jax.jit(lambda xs: jnp.all(jnp.stack([jnp.isfinite(x).all() for x in xs])))
    if not bool(all_finite(floats)):
        raise ValueError("it holds non-finite parameters or optimiser state")


def _on_every_process(holds: bool) -> bool:
    """Whether `holds` on every process (all must resume from the same step)."""
    if jax.process_count() == 1:
        return holds
    return bool(np.all(multihost_utils.process_allgather(np.asarray(holds))))


def results(run: Run, meta: dict) -> dict:
    """The contents of ``results.json``: best and last top-1, history, config, provenance."""
    history = meta["history"]
    best = max(history, key=lambda r: r["top1"]) if history else None
    last = history[-1] if history else None
    return {
        "dataset": run.info.name,
        "model": run.config.model,
        "teacher": run.config.teacher.model
        if methods.get(run.config.method.name).needs_teacher
        else None,
        "method": run.config.method.name,
        "standardize": bool(run.config.method.standardize),
        "class_order": run.class_order.to_json() if run.class_order else None,
        "seed": run.config.seed,
        "num_epochs": run.config.num_epochs,
        "epochs_done": last["epoch"] if last else 0,
        "best_top1": best["top1"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "last_top1": last["top1"] if last else None,
        "last_epoch": last["epoch"] if last else None,
        "teacher_eval": meta.get("teacher"),
        "history": history,
        "config": config_to_dict(run.config),
        "git_commit": git_commit(),
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
        "devices": {
            "kind": jax.devices()[0].device_kind,
            "count": jax.device_count(),
            "processes": jax.process_count(),
        },
        "wall_time": meta.get("wall_time", 0.0),
    }


def git_commit() -> str | None:
    """The commit of the figkd_jax checkout that runs, if it is one."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=pathlib.Path(__file__).resolve().parent,  # the package's own checkout: always local
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
