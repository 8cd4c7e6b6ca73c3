"""Storage faults and user mistakes, through launch.py: damaged checkpoints and teachers,
two launches on one workdir, and config mistakes (one line, exit status 2)."""

import json
import os
import shutil
import socket
import subprocess
import time

import jax
import numpy as np
import pytest

from figkd_jax.io import workdir_lock
from figkd_jax.trainer import checkpoints, config_checks, run_setup, train
from tests.helpers import error_line, launch, launch_and_wait, write_teacher
from tests.train_worker import digits_config

# A digits run of 2 epochs x 21 steps, checkpointed every epoch and at max_steps.
LAUNCH_ARGS = [
    "--config=configs/default.py",
    "--config.num_epochs=2",
    "--config.eval_batch_size=128",
    "--config.log_every_steps=5",
    "--config.optim.lr_decay_epochs=(1,)",
]


def _launch(workdir, *extra, wait=True):
    args = (f"--workdir={workdir}", *LAUNCH_ARGS, *extra)
    return launch_and_wait(*args) if wait else launch(*args)


def _launch_config(**overrides):
    """The config that LAUNCH_ARGS give, for in-process runs on the same workdir."""
    config = digits_config(num_epochs=2, eval_batch_size=128, log_every_steps=5, **overrides)
    config.optim.lr_decay_epochs = (1,)
    return config


def _truncate_largest_file(step_dir):
    """What a full disk or an interrupted copy leaves: the largest file cut short."""
    paths = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs]
    largest = max(paths, key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.truncate(os.path.getsize(largest) // 2)


def _checkpoint_names(workdir):
    return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def _final_variables(workdir):
    directory = os.path.join(workdir, "checkpoints")
    step, _ = checkpoints.read_meta(directory)
    run = run_setup.build_run(_launch_config())
    shapes = jax.eval_shape(lambda: run_setup.initial_state(run).variables)
    return step, checkpoints.restore_variables(directory, step, checkpoints.abstract(shapes))


# --------------------------------------------------------------------------
# Damaged checkpoints.


@pytest.mark.slow
def test_damaged_checkpoints_are_set_aside_and_the_run_resumes_from_an_intact_one(tmp_path):
    workdir, reference = str(tmp_path / "run"), str(tmp_path / "reference")
    proc = _launch(workdir, "--config.max_steps=30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _checkpoint_names(workdir) == ["21", "30"]
    # The reference: the same run resumed from step 21 without ever seeing step 30.
    shutil.copytree(workdir, reference)
    shutil.rmtree(os.path.join(reference, "checkpoints", "30"))

    _truncate_largest_file(os.path.join(workdir, "checkpoints", "30"))
    proc = _launch(workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if "could not be restored" in line]
    assert len(warnings) == 1 and "Checkpoint step 30 could not be restored" in warnings[0]
    assert "Resumed from step 21" in proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    # Kept under a name orbax does not list: never restored, pruned or overwritten.
    set_aside = [n for n in _checkpoint_names(workdir) if not n.isdigit()]
    assert len(set_aside) == 1 and set_aside[0].startswith("30.damaged-"), set_aside
    assert checkpoints.manager(os.path.join(workdir, "checkpoints")).all_steps() == [21, 42]

    proc = _launch(reference)
    assert proc.returncode == 0, proc.stderr[-3000:]
    step, resumed = _final_variables(workdir)
    reference_step, expected = _final_variables(reference)
    assert step == reference_step == 42
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    with (
        open(os.path.join(workdir, "results.json")) as f,
        open(os.path.join(reference, "results.json")) as g,
    ):
        assert json.load(f)["history"] == json.load(g)["history"]

    # Every checkpoint damaged: one line saying what to do, nothing renamed.
    for name in ("21", "42"):
        _truncate_largest_file(os.path.join(workdir, "checkpoints", name))
    before = _checkpoint_names(workdir)
    line = error_line(_launch(workdir))
    assert line.startswith(f"error: no checkpoint in {workdir}/checkpoints restores"), line
    assert "--config.on_changed_config=overwrite" in line and "step 42: " in line
    assert _checkpoint_names(workdir) == before
    # Told to overwrite, the run sets them all aside and starts afresh.
    config = _launch_config(max_steps=1, on_changed_config="overwrite")
    train.train_and_evaluate(config, workdir)
    names = _checkpoint_names(workdir)
    assert [n for n in names if n.isdigit()] == ["1"]
    assert sum(n.startswith(("21.damaged", "42.damaged", "30.damaged")) for n in names) == 3


def _overwrite_files(directory):
    """What a botched copy leaves: every file garbage."""
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, names_the_file", [(_truncate_largest_file, True), (_overwrite_files, False)]
)
def test_damaged_teacher_is_refused_in_one_line(damage, names_the_file, tmp_path):
    directory = write_teacher(tmp_path / "teacher")
    damage(os.path.join(directory, "0", "variables"))
    workdir = str(tmp_path / "run")
    line = error_line(
        _launch(
            workdir,
            "--config.method.name=kd",
            "--config.teacher.model=resnet8",
            f"--config.teacher.checkpoint={directory}",
        )
    )
    assert line.startswith(f"error: teacher checkpoint {directory}/0 could not be restored"), line
    if names_the_file:  # as TensorStore names it; garbage metadata fails before any file
        assert f"{directory}/0/variables/" in line, line
    assert not os.path.exists(workdir)


# --------------------------------------------------------------------------
# One launch per workdir.


@pytest.mark.slow
def test_second_launch_refuses_and_a_dead_launchs_lock_is_taken_over(tmp_path):
    workdir = str(tmp_path / "run")
    lock_file = os.path.join(workdir, workdir_lock.LOCK_FILE)
    # Long enough to outlast the second launch's start-up; killed below.
    longer = ["--config.num_epochs=20", "--config.optim.lr_decay_epochs=(10,)"]
    first = _launch(workdir, *longer, wait=False)
    try:
        deadline = time.time() + 300
        while not os.path.exists(lock_file):
            assert first.poll() is None, first.communicate()[0][-3000:]
            assert time.time() < deadline, "no lock taken"
            time.sleep(0.05)
        line = error_line(_launch(workdir, *longer))
        assert line.startswith(f"error: workdir {workdir} is in use by PID {first.pid} on host"), (
            line
        )
        assert first.poll() is None  # the holder runs on
    finally:
        first.kill()
        first.communicate()
    # Killed: its lock stays, naming a process that is gone.
    proc = _launch(workdir, *longer, "--config.max_steps=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    takeover = [line for line in proc.stderr.splitlines() if "Taking over the stale lock" in line]
    assert len(takeover) == 1 and f"process {first.pid} is gone" in takeover[0], proc.stderr
    assert not os.path.exists(lock_file)  # released at the end


@pytest.fixture
def quick_lock(monkeypatch):
    monkeypatch.setattr(workdir_lock, "SETTLE_SECONDS", 0.01)
    monkeypatch.setattr(workdir_lock, "REFRESH_SECONDS", 0.02)


def _write_lock(workdir, **fields):
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "refreshed": time.time(),
        "token": "theirs",
        **fields,
    }
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, workdir_lock.LOCK_FILE), "w") as f:
        json.dump(holder, f)


def test_lock_is_taken_released_and_refused_to_a_live_holder(tmp_path, quick_lock):
    workdir = str(tmp_path / "run")
    lock_file = os.path.join(workdir, workdir_lock.LOCK_FILE)
    with workdir_lock.hold(workdir) as lock:
        with open(lock_file) as f:
            holder = json.load(f)
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
        refreshed = holder["refreshed"]
        time.sleep(0.2)
        with open(lock_file) as f:
            assert json.load(f)["refreshed"] > refreshed  # the thread refreshes it
        lock.check()
    assert not os.path.exists(lock_file)

    alive = subprocess.Popen(["sleep", "60"])
    try:
        _write_lock(workdir, pid=alive.pid)
        with pytest.raises(workdir_lock.WorkdirLocked, match=f"in use by PID {alive.pid} on"):
            workdir_lock.WorkdirLock(workdir).acquire()
        _write_lock(workdir, host="elsewhere", pid=alive.pid)  # fresh, on another host
        with pytest.raises(workdir_lock.WorkdirLocked, match="on host elsewhere"):
            workdir_lock.WorkdirLock(workdir).acquire()
    finally:
        alive.kill()
        alive.wait()


STALE_LOCKS = {
    "process gone": dict(pid=None),  # filled with a reaped child's PID
    "own PID (a restarted container)": dict(),
    "another host, not refreshed": dict(host="elsewhere", pid=1, refreshed=time.time() - 3600),
    "not a lock file": None,
}


@pytest.mark.parametrize("case", sorted(STALE_LOCKS))
def test_stale_lock_is_taken_over_with_a_warning(case, tmp_path, quick_lock, caplog):
    workdir = str(tmp_path / "run")
    fields = STALE_LOCKS[case]
    if fields is None:
        os.makedirs(workdir)
        with open(os.path.join(workdir, workdir_lock.LOCK_FILE), "w") as f:
            f.write('{"host": "tr')  # a torn write from some other tool
    else:
        if "pid" in fields and fields["pid"] is None:
            gone = subprocess.Popen(["true"])
            gone.wait()
            fields = dict(pid=gone.pid)
        _write_lock(workdir, **fields)
    lock = workdir_lock.WorkdirLock(workdir)
    lock.acquire()
    try:
        assert any("Taking over" in r.getMessage() for r in caplog.records)
        assert workdir_lock.read_holder(lock.path).pid == os.getpid()
    finally:
        lock.release()


def test_holder_whose_lock_was_taken_over_stops(tmp_path, quick_lock):
    workdir = str(tmp_path / "run")
    lock = workdir_lock.WorkdirLock(workdir)
    lock.acquire()
    try:
        _write_lock(workdir, host="elsewhere", pid=1)  # another launch took it over
        time.sleep(0.2)
        with pytest.raises(workdir_lock.WorkdirLocked, match="taken over by PID 1 on host"):
            lock.check()
    finally:
        lock.release()
    assert workdir_lock.read_holder(lock.path).host == "elsewhere"  # theirs, left alone


# --------------------------------------------------------------------------
# Config mistakes.

# One bad value per field of config_checks.RANGES, and the decay epochs' rules.
OUT_OF_RANGE = {
    "num_epochs": 0,
    "eval_batch_size": 0,
    "batch_size": -64,
    "steps_per_dispatch": 0,
    "log_every_steps": 0,
    "checkpoints_to_keep": 0,
    "max_consecutive_nonfinite_steps": 0,
    "max_steps": 0,
    "optim.learning_rate": -0.1,
    "optim.momentum": 1.0,
    "optim.weight_decay": -5e-4,
    "optim.lr_decay_rate": 0.0,
    "method.temperature": 0.0,
    "method.ce.ce_weight": -1.0,
    "method.kd.ce_weight": -0.1,
    "method.kd.kd_weight": float("nan"),
    "method.dkd.ce_weight": -1.0,
    "method.dkd.alpha": -1.0,
    "method.dkd.beta": -8.0,
    "method.dkd.warmup_epochs": -1,
    "method.figkd.ce_weight": -1.0,
    "method.figkd.figkd_weight": -1.0,
    "method.figkd.level": 0,
    "method.figkd.ls_temperature": 0.0,
    "method.figkd.ls_weight_scale": -9.0,
    "method.kd.ls_temperature": -2.0,
    "method.kd.ls_kd_weight": -9.0,
    "method.dkd.ls_temperature": 0.0,
    "method.dkd.ls_weight_scale": -1.0,
    "method.dist.ce_weight": -1.0,
    "method.dist.beta": -2.0,
    "method.dist.gamma": float("nan"),
    "method.mlkd.ce_weight": -0.1,
    "method.mlkd.kd_weight": -0.9,
    "method.mlkd.ls_temperature": 0.0,
    "method.mlkd.ls_kd_weight": -9.0,
    "sweep.teacher_num_epochs": 0,
    "sweep.mlkd_num_epochs": 0,
    "sweep.mlkd_learning_rate": 0.0,
}


def test_every_ranged_field_has_a_case():
    assert sorted(OUT_OF_RANGE) == sorted(field for field, _, _ in config_checks.RANGES)


@pytest.mark.parametrize("field", sorted(OUT_OF_RANGE))
def test_out_of_range_field_is_refused_naming_field_and_range(field):
    config = digits_config(**{field: OUT_OF_RANGE[field]})
    valid = {f: v for f, _, v in config_checks.RANGES}[field]
    with pytest.raises(run_setup.ConfigError) as error:
        run_setup.build_run(config)
    assert str(error.value) == f"config.{field}={OUT_OF_RANGE[field]} must be {valid}"


@pytest.mark.parametrize("decay", [(2, 1), (1, 1), (0,), (3,), (1.5,), ("1",)])
def test_decay_epochs_out_of_order_or_range_are_refused(decay):
    config = digits_config(num_epochs=2)
    config.optim.lr_decay_epochs = decay
    with pytest.raises(run_setup.ConfigError, match=r"strictly increasing integers in \[1, num_e"):
        run_setup.build_run(config)


def test_range_boundaries_are_accepted():
    config = digits_config(num_epochs=2, max_steps=1, checkpoints_to_keep=1)
    config.optim.update(momentum=0.0, weight_decay=0.0, lr_decay_rate=1.0, lr_decay_epochs=(1, 2))
    config.method.dkd.update(warmup_epochs=0, alpha=0.0)
    config.method.kd.ce_weight = 0.0
    run_setup.build_run(config)


LAUNCH_MISTAKES = {
    "typo": (
        ["--config.optim.learnin_rate=0.1"],
        "error: --config.optim.learnin_rate: no config field 'learnin_rate'. "
        'Did you mean "learning_rate" instead of "learnin_rate"?',
    ),
    "wrong type": (
        ["--config.num_epochs=1.5"],
        "error: flag --config.num_epochs=1.5: invalid literal for int() with base 10: '1.5'",
    ),
    "missing value": (
        ["--config.optim.learning_rate"],
        "error: Missing value for flag --config.optim.learning_rate",
    ),
    "bad config argument": (
        ["--config=configs/cifar100.py:studnt=x"],
        "error: flag --config=configs/cifar100.py:studnt=x: unknown config argument(s) "
        "['studnt']; valid: student, teacher, method, seed",
    ),
    "config argument not key=value": (
        ["--config=configs/cifar100.py:student"],
        "error: flag --config=configs/cifar100.py:student: config argument 'student' is not "
        "of the form key=value",
    ),
    "positional argument": (
        ["extra"],
        "error: unexpected arguments ['extra']: all arguments are --flags",
    ),
    "missing config file": (
        ["--config=configs/nope.py"],
        "error: --config: [Errno 2] No such file or directory: 'configs/nope.py'",
    ),
}


@pytest.mark.parametrize("case", sorted(LAUNCH_MISTAKES))
def test_launcher_reports_a_flag_or_config_mistake_in_one_line(case, tmp_path):
    args, expected = LAUNCH_MISTAKES[case]
    workdir = str(tmp_path / "run")
    proc = launch_and_wait(
        f"--workdir={workdir}", "--config=configs/default.py", *args, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip() == expected  # the whole output
    assert not os.path.exists(workdir)


@pytest.mark.slow
def test_launcher_refuses_an_out_of_range_value_in_one_line(tmp_path):
    workdir = str(tmp_path / "run")
    # An int given to a float field is shown as the float the config holds.
    line = error_line(_launch(workdir, "--config.method.temperature=-1"))
    assert line == "error: config.method.temperature=-1.0 must be > 0"
    assert not os.path.exists(workdir)
