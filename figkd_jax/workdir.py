"""A run's workdir: its config, checkpoints of the training state, and results.

Layout of ``<workdir>``: ``config.json`` (the flat config), ``checkpoints/`` (orbax: the
student's variables, the optimiser state, and a JSON meta with the history), TensorBoard
event files, and ``results.json`` (written by process 0 after every epoch).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from figkd_jax import checkpoints, class_order, events, methods
from figkd_jax.run_setup import Run
from figkd_jax.steps import TrainState

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
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        previous = json.load(f)
    resolved = config_to_dict(config)
    return sorted(
        k
        for k in set(previous) | set(resolved)
        if k not in RESUMABLE_CHANGES and previous.get(k) != resolved.get(k)
    )


def delete_run(workdir: str) -> None:
    """Removes what a run wrote in `workdir`, and nothing else."""
    shutil.rmtree(os.path.join(workdir, CHECKPOINTS_DIR), ignore_errors=True)
    for name in (CONFIG_FILE, RESULTS_FILE, class_order.FILE_NAME, *events.files(workdir)):
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            os.remove(path)


def write_json(path: str, obj: Any) -> None:
    """Atomic JSON write: a reader (or a kill) never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def checkpoint_manager(workdir: str, keep_last: int):
    return checkpoints.manager(os.path.join(workdir, CHECKPOINTS_DIR), keep_last=keep_last)


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


def restore_state(mngr, template: TrainState, run: Run) -> tuple[TrainState, dict]:
    """The latest checkpoint's state (laid out like `template`) and meta."""
    step = mngr.latest_step()
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
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
