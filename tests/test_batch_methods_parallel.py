"""DIST and MLKD couple the examples of a batch: one train step on 4 simulated devices must
compute what it computes on 1 (the batch terms are those of the global batch)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a process with 4 simulated CPU devices: the same step, state, teacher and batch on a
# mesh of the first device and on a mesh of all four; prints the largest differences.
WORKER = r"""
import dataclasses, json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh
from configs import benchmarks
from figkd_jax import models
from figkd_jax.data import randaugment
from figkd_jax.trainer import run_setup, steps

method = sys.argv[1]
pair = f"teacher=resnet56,student=resnet20,method={method}"
config = benchmarks.benchmark_config("cifar100", pair)
config.model = config.teacher.model = "resnet8"
config.teacher.checkpoint = "(random initialisation)"
config.batch_size = 16
run = run_setup.build_run(config)
info = run.info
rng = np.random.default_rng(0)
raw = rng.integers(0, 256, (16, *info.image_shape), dtype=np.uint8)
batch = {
    "image": ((raw / 255.0 - np.asarray(info.mean)) / np.asarray(info.std)).astype(np.float32),
    "label": rng.integers(0, info.num_classes, 16).astype(np.int32),
}
if method == "mlkd":
    batch["strong_image"] = raw[::-1].copy()
    batch["strong_draws"] = rng.random((16, randaugment.STRONG_VIEW_DRAWS), dtype=np.float32)
teacher = models.create("resnet8", num_classes=info.num_classes)
teacher_vars = teacher.init(jax.random.key(1), jnp.zeros((1, *info.image_shape)), train=False)

outputs = {}
for count in (1, 4):
    mesh = Mesh(np.asarray(jax.devices()[:count]), (steps.DATA_AXIS,))
    r = dataclasses.replace(run, mesh=mesh)
    state = jax.jit(lambda: run_setup.initial_state(r), out_shardings=r.replicated)()
    step = jax.jit(
        steps.make_train_step(r, teacher),
        in_shardings=(r.replicated, r.batch_sharded, r.replicated),
        out_shardings=(r.replicated, r.replicated),
    )
    new_state, metrics = jax.device_get(step(state, batch, teacher_vars))
    old = jax.device_get(state)
    outputs[count] = (
        jax.tree.map(lambda n, o: np.asarray(n) - np.asarray(o), new_state.params, old.params),
        new_state.batch_stats,
        {k: float(v) for k, v in metrics.items() if k.startswith("loss")},
    )
(update_1, stats_1, loss_1), (update_4, stats_4, loss_4) = outputs[1], outputs[4]
largest = lambda tree: max(float(np.max(np.abs(x))) for x in jax.tree.leaves(tree))
diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
print(json.dumps({
    "devices": jax.device_count(),
    "update_scale": largest(update_1),
    "update_diff": diff(update_1, update_4),
    "stats_scale": largest(stats_1),
    "stats_diff": diff(stats_1, stats_4),
    "loss_1": loss_1,
    "loss_4": loss_4,
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dist", "mlkd"])
def test_one_step_on_four_devices_equals_one_device(method):
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        PYTHONPATH=ROOT,
        JAX_PLATFORMS="cpu",
    )
    done = subprocess.run(
        [sys.executable, "-c", WORKER, method],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert set(result["loss_1"]) == set(result["loss_4"]) and len(result["loss_1"]) >= 3
    # Splitting the batch over devices reorders float32 sums over the batch: each sum moves by
    # a few ulps (2**-24 ~ 6e-8) of its terms' magnitudes, and a gradient's cancellation can
    # amplify that relative to the result. 1e-4 of the largest value bounds it with a wide
    # margin; a batch term computed per device instead of over the global batch would change
    # the loss and updates by orders of magnitude more (a median or correlation over 4
    # examples instead of 16).
    for name, value in result["loss_1"].items():
        assert result["loss_4"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert result["update_diff"] <= 1e-4 * result["update_scale"]
    assert result["stats_diff"] <= 1e-4 * result["stats_scale"]
