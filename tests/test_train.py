"""End-to-end training on the embedded digits data: teacher, student, resume,
and data parallelism over simulated devices and processes."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from figkd_jax.io import events
from figkd_jax.trainer import checkpoints, feeds, run_setup, train
from tests.tolerances import assert_close_after_steps
from tests.train_worker import digits_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def teacher_workdir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("teacher"))
    train.train_and_evaluate(digits_config(model="resnet8", num_epochs=2), workdir)
    return workdir


def test_teacher_run_writes_results_checkpoints_and_events(teacher_workdir):
    with open(os.path.join(teacher_workdir, "results.json")) as f:
        results = json.load(f)
    assert results["method"] == "ce" and results["teacher"] is None
    assert [r["epoch"] for r in results["history"]] == [1, 2]
    assert results["last_epoch"] == 2 and results["best_epoch"] in (1, 2)
    assert results["best_top1"] >= results["last_top1"] > 0.3
    assert results["devices"]["count"] == jax.device_count()
    assert results["config"]["model"] == "resnet8"
    step, meta = checkpoints.read_meta(os.path.join(teacher_workdir, "checkpoints"))
    assert step == 2 * (1400 // 64) and meta["model"] == "resnet8" and meta["num_classes"] == 10
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(teacher_workdir))


@pytest.mark.slow
def test_student_distils_from_the_teacher_run(teacher_workdir, tmp_path):
    config = digits_config(num_epochs=1)
    config.method.name = "figkd"
    config.teacher.model = "resnet8"
    config.teacher.workdir = teacher_workdir
    results = train.train_and_evaluate(config, str(tmp_path))
    teacher_eval = results["teacher_eval"]
    with open(os.path.join(teacher_workdir, "results.json")) as f:
        teacher_results = json.load(f)
    # The teacher evaluated at start is the teacher run's last epoch.
    assert teacher_eval["top1"] == pytest.approx(teacher_results["last_top1"])
    record = results["history"][0]
    assert {"agreement", "teacher_kl", "top5"} <= set(record)
    # The student's checkpoint holds the student only.
    _, meta = checkpoints.read_meta(str(tmp_path / "checkpoints"))
    assert meta["model"] == "resnet8"
    # Every loss term and the Haar band diagnostics reach TensorBoard.
    tags = set(events.read_scalars(str(tmp_path)))
    assert {"train/loss_ce", "train/loss_figkd", "eval/agreement", "eval/teacher_kl"} <= tags
    assert {"train/bands/kl_high", "train/bands/teacher_high_energy"} <= tags


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    config = digits_config(num_epochs=2)
    full = train.train_and_evaluate(config, str(tmp_path / "full"))
    partial_config = digits_config(num_epochs=2, max_steps=30)
    train.train_and_evaluate(partial_config, str(tmp_path / "resumed"))
    resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert resumed["history"] == full["history"]
    _assert_same_variables(tmp_path / "full", tmp_path / "resumed", config)


@pytest.mark.slow
def test_same_config_and_seed_rerun_bit_for_bit(tmp_path):
    # The README promises that a rerun on the same machine reproduces the demo's table
    # exactly: same XLA programs on the same CPU, and every batch a pure function of
    # (seed, step). Equality, not closeness, is the promise.
    config = digits_config(num_epochs=1)
    first = train.train_and_evaluate(config, str(tmp_path / "first"))
    second = train.train_and_evaluate(config, str(tmp_path / "second"))
    assert first["history"] == second["history"]
    _assert_same_variables(tmp_path / "first", tmp_path / "second", config)


def _variables(workdir, config):
    run = run_setup.build_run(config)
    directory = os.path.join(workdir, "checkpoints")
    step, _ = checkpoints.read_meta(directory)
    shapes = jax.eval_shape(lambda: run_setup.initial_state(run).variables)
    return checkpoints.restore_variables(directory, step, checkpoints.abstract(shapes))


def _assert_same_variables(a, b, config, exact=True):
    """Bitwise equal (exact), or equal up to what reduction order moves in a few steps."""
    va, vb = _variables(str(a), config), _variables(str(b), config)
    for x, y in zip(jax.tree.leaves(va), jax.tree.leaves(vb), strict=True):
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            assert_close_after_steps(x, y)


def _worker(workdir, out, devices, *extra, background=False):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    cmd = [sys.executable, os.path.join(ROOT, "tests", "train_worker.py"), workdir, out, *extra]
    if background:
        return subprocess.Popen(cmd, env=env, cwd=ROOT)
    subprocess.run(cmd, env=env, cwd=ROOT, check=True)


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# Few steps: see tests/tolerances.py for what float32 reduction order moves, and how
# training amplifies it.
PARALLEL_STEPS = "3"


def _assert_close(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if key in ("devices",):
            continue
        if key == "step":
            assert a[key] == b[key]
            continue
        assert_close_after_steps(a[key], b[key], key)


@pytest.mark.slow
def test_four_devices_compute_what_one_device_computes(tmp_path):
    _worker(str(tmp_path / "one"), str(tmp_path / "one.npz"), 1, "--max_steps", PARALLEL_STEPS)
    _worker(str(tmp_path / "four"), str(tmp_path / "four.npz"), 4, "--max_steps", PARALLEL_STEPS)
    one, four = _load(tmp_path / "one.npz"), _load(tmp_path / "four.npz")
    assert (int(one["devices"]), int(four["devices"])) == (1, 4)
    _assert_close(one, four)


@pytest.mark.slow
def test_two_processes_compute_what_one_process_computes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = str(tmp_path / "multi")
    procs = [
        _worker(
            workdir,
            str(tmp_path / f"multi{i}.npz"),
            2,
            "--max_steps",
            PARALLEL_STEPS,
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num_processes",
            "2",
            "--process_id",
            str(i),
            background=True,
        )
        for i in range(2)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    _worker(
        str(tmp_path / "single"), str(tmp_path / "single.npz"), 4, "--max_steps", PARALLEL_STEPS
    )
    multi, single = _load(tmp_path / "multi0.npz"), _load(tmp_path / "single.npz")
    assert int(multi["devices"]) == 4
    assert not os.path.exists(tmp_path / "multi1.npz")  # only process 0 writes
    _assert_close(multi, single)


@pytest.mark.slow
def test_on_device_input_and_scanned_steps_match_host_steps(tmp_path):
    runs = {
        "host": digits_config(max_steps=3, input_on_device="host"),
        "device": digits_config(max_steps=3, input_on_device="device"),
        "device5": digits_config(max_steps=5, input_on_device="device", log_every_steps=5),
        # Calls of 3 (to the log step 3) and 2 steps.
        "scanned5": digits_config(
            max_steps=5, input_on_device="device", steps_per_dispatch=4, log_every_steps=3
        ),
    }
    for name, config in runs.items():
        train.train_and_evaluate(config, str(tmp_path / name))
    config = runs["host"]
    assert checkpoints.read_meta(str(tmp_path / "scanned5" / "checkpoints"))[0] == 5
    # The same batches and steps up to float rounding (of the normalisation; of the
    # reduction orders XLA picks for another program or inside a loop): few steps.
    _assert_same_variables(tmp_path / "host", tmp_path / "device", config, exact=False)
    _assert_same_variables(tmp_path / "device5", tmp_path / "scanned5", config, exact=False)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters_and_losses(tmp_path):
    config = digits_config(max_steps=4, dtype="bfloat16", log_every_steps=2)
    train.train_and_evaluate(config, str(tmp_path))
    variables = _variables(str(tmp_path), config)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {np.dtype("float32")}
    losses = events.read_scalars(str(tmp_path))["train/loss"]
    assert [step for step, _ in losses] == [2, 4]
    assert all(np.isfinite(value) for _, value in losses)


def test_on_device_evaluation_equals_host_evaluation():
    config = digits_config(eval_batch_size=128)  # 397 examples: 4 batches, the last padded
    run = run_setup.build_run(config)
    student = jax.jit(lambda: run_setup.initial_state(run))().variables
    teacher_model = run.student
    teacher = jax.jit(lambda: run_setup.initial_state(run_setup.build_run(digits_config(seed=1))))()
    args = (student, teacher.variables, run.student, teacher_model)
    host = jax.device_get(feeds.HostEval(run)(*args))
    device = jax.device_get(feeds.DeviceEval(run)(*args))
    assert host.keys() == device.keys() == {"count", "top1", "top5", "agreement", "teacher_kl"}
    assert int(host["count"]) == int(device["count"]) == 397
    for key in ("top1", "top5", "agreement"):
        assert int(host[key]) == int(device[key]), key
    # A sum of 397 per-example KLs, in other orders and fusions: a reordered float32 sum of n
    # non-negative terms moves by at most n * 2^-24 of it (2.4e-5 for n = 397).
    np.testing.assert_allclose(host["teacher_kl"], device["teacher_kl"], rtol=397 * 2**-24)
