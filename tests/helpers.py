"""Scaffolding that several test files share: launch.py in a subprocess and its one-line
errors, and checkpoints written in the trainer's layout without training."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from figkd_jax import models
from figkd_jax.trainer import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args: str, env=None) -> subprocess.Popen:
    """launch.py started from the repository root with `args`; stdout and stderr in one pipe."""
    return subprocess.Popen(
        [sys.executable, "launch.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def launch_and_wait(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """launch.py run to its end from the repository root with `args`; stderr apart."""
    return subprocess.run(
        [sys.executable, "launch.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The last stderr line of a launch that must fail in one line with status 2."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), proc.stderr[-3000:]
    return line


def model_variables(model: str, *, num_classes: int = 10, image_shape=(8, 8, 1), seed=0) -> dict:
    """Variables of `model`: the tree of its init, filled with random values (BatchNorm
    statistics included, which eval mode then depends on).

    numpy fills the tree instead of ``model.init``, whose random initialisers take XLA tens of
    seconds to compile on a busy 2-core machine.
    """
    module = models.create(model, num_classes=num_classes)
    shapes = jax.eval_shape(
        lambda: module.init(jax.random.key(0), jnp.zeros((1, *image_shape)), train=False)
    )
    rng = np.random.default_rng(seed)

    def param(leaf):  # He-scaled, so activations stay O(1) through the network.
        fan_in = np.prod(leaf.shape[:-1]) if len(leaf.shape) > 1 else 1
        return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def statistic(leaf):
        return rng.uniform(0.5, 2.0, leaf.shape).astype(np.float32)

    return {
        "params": jax.tree.map(param, shapes["params"]),
        "batch_stats": jax.tree.map(statistic, shapes["batch_stats"]),
    }


def write_teacher(
    directory, *, model="resnet8", num_classes=10, meta_model=None, step=0, config=None
) -> str:
    """A teacher as convert_torch and export write one: a checkpoint directory holding one
    step of `model` (random values), its meta naming `meta_model` (default: `model`).

    With `config` (a dict), `directory` is a teacher run's workdir instead: the checkpoint
    in its ``checkpoints/`` and `config` as its config.json.
    """
    directory = str(directory)
    checkpoint_dir = os.path.join(directory, "checkpoints") if config is not None else directory
    mngr = checkpoints.manager(checkpoint_dir, best_metric=None)
    checkpoints.save(
        mngr,
        step,
        variables=model_variables(model, num_classes=num_classes),
        meta={"model": meta_model or model, "num_classes": num_classes},
    )
    mngr.close()
    if config is not None:
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(config, f)
    return directory
