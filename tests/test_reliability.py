"""Reliability: kill-and-resume, preemption, non-finite steps, and bad input."""

import functools
import json
import os
import signal
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from figkd_jax.io import events
from figkd_jax.trainer import checkpoints, methods, run_setup, steps, train
from tests.helpers import launch, write_teacher
from tests.train_worker import digits_config

# A digits run of 3 epochs x 21 steps, checkpointed every epoch.
LAUNCH_ARGS = [
    "--config=configs/default.py",
    "--config.num_epochs=3",
    "--config.eval_batch_size=128",
    "--config.log_every_steps=5",
    "--config.optim.lr_decay_epochs=(2,)",
]


def _launch(workdir):
    return launch(f"--workdir={workdir}", *LAUNCH_ARGS)


def _wait_for(predicate, proc, timeout=300):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"run ended early:\n{proc.stdout.read()[-3000:]}"
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


def _steps(workdir):
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def _writing_checkpoint(workdir):
    directory = os.path.join(workdir, "checkpoints")
    return os.path.isdir(directory) and any("tmp" in n for n in os.listdir(directory))


@pytest.mark.slow
def test_killed_and_preempted_run_resumes_to_the_uninterrupted_result(tmp_path):
    workdir = str(tmp_path / "run")
    # 1. SIGTERM (preemption) in epoch 2: a checkpoint at the current step.
    proc = _launch(workdir)
    _wait_for(lambda: _steps(workdir), proc)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, out[-3000:]
    assert "rerun the same command to resume" in out
    preempted_at = max(_steps(workdir))
    # 2. SIGKILL while a checkpoint is being written (or just after).
    proc = _launch(workdir)
    _wait_for(lambda: _writing_checkpoint(workdir) or max(_steps(workdir)) > preempted_at, proc)
    proc.kill()
    proc.wait()
    # 3. SIGKILL at once after the next completed checkpoint.
    proc = _launch(workdir)
    before = max(_steps(workdir))
    _wait_for(lambda: max(_steps(workdir)) > before, proc)
    proc.kill()
    proc.wait()
    # A partial checkpoint of a later step, as a kill during a save leaves it.
    os.makedirs(os.path.join(workdir, "checkpoints", "60.orbax-checkpoint-tmp-0", "variables"))
    # 4. Run to the end.
    proc = _launch(workdir)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]

    config = digits_config(num_epochs=3, log_every_steps=5, eval_batch_size=128)
    config.model = "resnet8"
    config.optim.lr_decay_epochs = (2,)
    reference = train.train_and_evaluate(config, str(tmp_path / "reference"))
    with open(os.path.join(workdir, "results.json")) as f:
        resumed = json.load(f)
    assert resumed["history"] == reference["history"]
    run = run_setup.build_run(config)
    shapes = jax.eval_shape(lambda: run_setup.initial_state(run).variables)
    for a, b in zip(
        jax.tree.leaves(_restore(workdir, shapes)),
        jax.tree.leaves(_restore(str(tmp_path / "reference"), shapes)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    # TensorBoard: every tag logged once per step, eval at every epoch end.
    scalars = events.read_scalars(workdir)
    for tag, points in scalars.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), tag
    assert [s for s, _ in scalars["eval/top1"]] == [21, 42, 63]
    train_steps = {*range(5, 64, 5), 21, 42, 63}
    assert sorted(s for s, _ in scalars["train/loss"]) == sorted(train_steps)


def _restore(workdir, shapes):
    directory = os.path.join(workdir, "checkpoints")
    step, _ = checkpoints.read_meta(directory)
    return checkpoints.restore_variables(directory, step, checkpoints.abstract(shapes))


def test_nonfinite_step_is_skipped_and_counted():
    config = digits_config()
    run = run_setup.build_run(config)
    state = run_setup.initial_state(run)
    step = jax.jit(lambda s, b: steps.make_train_step(run, None)(s, b, None))
    images = jnp.ones((4, 8, 8, 1)).at[0, 0, 0, 0].set(jnp.nan)
    new, metrics = step(state, {"image": images, "label": jnp.zeros(4, jnp.int32)})
    assert int(new.step) == 1 and int(new.nonfinite_steps) == 1 and int(metrics["nonfinite"]) == 1
    for a, b in zip(jax.tree.leaves(new.variables), jax.tree.leaves(state.variables), strict=True):
        np.testing.assert_array_equal(a, b)
    good, _ = step(new, {"image": jnp.ones((4, 8, 8, 1)), "label": jnp.zeros(4, jnp.int32)})
    assert int(good.nonfinite_steps) == 0


class _BiasOnly(nn.Module):
    """Logits = a learned bias (NaN where the image is): the CE gradient is known in closed
    form, and one batch-statistics counter shows whether a step's statistics were kept."""

    @nn.compact
    def __call__(self, images, train):
        bias = self.param("bias", nn.initializers.zeros, (10,))
        seen = self.variable("batch_stats", "seen", lambda: jnp.zeros((), jnp.float32))
        if train:
            seen.value += images.shape[0]
        return bias + 0.0 * jnp.sum(images, axis=(1, 2, 3))[:, None]


def _applied_rates(skip_at):
    """(applied, logged) learning rate of each of 7 steps (3 per epoch, decay x0.1 after
    epoch 1); the step `skip_at` has a NaN image. Plain SGD (no momentum, no weight decay), so
    a step moves the bias by -rate * mean CE gradient, which the rate is read back from."""
    config = digits_config()
    config.optim.update(
        learning_rate=0.1, momentum=0.0, weight_decay=0.0, lr_decay_epochs=(1,), lr_decay_rate=0.1
    )
    schedule = steps.learning_rate_schedule(config, 3)
    tx = steps.make_optimizer(config, schedule)
    student = _BiasOnly()
    variables = student.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
    state = steps.TrainState(
        step=jnp.array(0),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(variables["params"]),
        nonfinite_steps=jnp.array(0),
    )
    step_fn = jax.jit(
        functools.partial(
            steps.train_step,
            teacher_variables=None,
            student=student,
            teacher=None,
            objective=methods.build(config.method),
            tx=tx,
            schedule=schedule,
            steps_per_epoch=3,
        )
    )
    labels = jnp.array([1, 2, 2, 7], jnp.int32)
    applied, logged = [], []
    for k in range(7):
        images = jnp.ones((4, 8, 8, 1))
        if k == skip_at:
            images = images.at[0, 0, 0, 0].set(jnp.nan)
        bias = state.params["bias"]
        state, metrics = step_fn(state, {"image": images, "label": labels})
        assert int(state.step) == k + 1
        gradient = jnp.mean(jax.nn.softmax(bias) - jax.nn.one_hot(labels, 10), axis=0)
        moved = bias - state.params["bias"]
        if k == skip_at:
            assert int(metrics["nonfinite"]) == 1 and jnp.all(moved == 0)
            assert float(state.batch_stats["seen"]) == 4 * k  # rolled back too
            applied.append(None)
        else:
            # moved = rate * gradient in float32 on O(0.1) values: 1e-3 tells 0.1 from 0.01.
            rates = moved / gradient
            np.testing.assert_allclose(rates, rates[0], rtol=1e-3)
            applied.append(float(rates[0]))
        logged.append(float(metrics["learning_rate"]))
    return applied, logged


def test_a_skipped_step_does_not_shift_the_learning_rate_schedule():
    clean, clean_logged = _applied_rates(skip_at=None)
    skipped, skipped_logged = _applied_rates(skip_at=1)
    # Epochs of 3 steps, decay after epoch 1: steps 0-2 at 0.1, from step 3 on at 0.01,
    # with or without the skipped step 1.
    expected = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01]
    np.testing.assert_allclose(clean, expected, rtol=1e-3)
    assert skipped[1] is None
    np.testing.assert_allclose(skipped[:1] + skipped[2:], expected[:1] + expected[2:], rtol=1e-3)
    # The logged rate is the schedule at the state's step, skipped or not, and it is the
    # rate that was applied.
    np.testing.assert_allclose(clean_logged, expected, rtol=1e-6)
    assert skipped_logged == clean_logged
    for applied, logged in zip(skipped, skipped_logged, strict=True):
        if applied is not None:
            assert applied == pytest.approx(logged, rel=1e-3)


def test_run_stops_after_consecutive_nonfinite_steps(tmp_path):
    config = digits_config(max_consecutive_nonfinite_steps=2, log_every_steps=1)
    config.optim.learning_rate = 1e30
    with pytest.raises(FloatingPointError, match="consecutive steps with non-finite"):
        train.train_and_evaluate(config, str(tmp_path))
    assert _steps(str(tmp_path)) == []  # no checkpoint of diverged parameters


# --------------------------------------------------------------------------
# Bad input: one clear error before anything is written.


def _distil(**teacher):
    config = digits_config()
    config.method.name = "kd"
    config.teacher.model = "resnet8"
    config.teacher.update(teacher)
    return config


def _snapshot(path):
    if not os.path.exists(path):
        return None
    return sorted(
        (os.path.relpath(os.path.join(d, f), path), os.path.getmtime(os.path.join(d, f)))
        for d, _, fs in os.walk(path)
        for f in fs
    )


BAD_CONFIGS = {
    "unknown dataset": (lambda c: c.dataset.update(name="imagenet"), "config.dataset.name"),
    "unknown model": (lambda c: c.update(model="resnet9"), "config.model='resnet9' is unknown"),
    "unknown method": (lambda c: c.method.update(name="fitnet"), "valid methods"),
    "teacher missing": (lambda c: c.method.update(name="figkd"), "set config.teacher.model"),
    "temperature <= 0": (lambda c: c.method.update(temperature=0.0), "temperature"),
    "level out of range": (
        lambda c: (
            c.method.update(name="figkd"),
            c.teacher.update(model="resnet8", workdir="/nonexistent"),
            c.method.figkd.update(level=4),
        ),
        "level",
    ),
    "dataset not prepared": (
        lambda c: c.dataset.update(name="cifar100", data_dir="/nonexistent/tfds"),
        "cifar100",
    ),
    "cache size < 1": (
        lambda c: c.dataset.update(name="mit67", cache_size=0),
        r"config\.dataset: data_config\.cache_size must be an int >= 1",
    ),
    "teacher run missing": (
        lambda c: (
            c.method.update(name="kd"),
            c.teacher.update(model="resnet8", workdir="/nonexistent/teacher"),
        ),
        "has no checkpoint",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_before_touching_the_workdir(case, tmp_path):
    mutate, message = BAD_CONFIGS[case]
    config = digits_config()
    mutate(config)
    workdir = str(tmp_path / "run")
    with pytest.raises((run_setup.ConfigError, FileNotFoundError), match=message):
        train.train_and_evaluate(config, workdir)
    assert not os.path.exists(workdir)


def test_batch_not_divisible_by_devices(monkeypatch, tmp_path):
    monkeypatch.setattr(jax, "device_count", lambda: 3)
    with pytest.raises(run_setup.ConfigError, match="multiple of the 3 devices"):
        run_setup.build_run(digits_config())


def test_teacher_of_another_architecture_or_class_count(tmp_path):
    wrong_model = write_teacher(tmp_path / "a", model="resnet8", meta_model="resnet20")
    with pytest.raises(run_setup.ConfigError, match="holds a 'resnet20'"):
        train.train_and_evaluate(_distil(checkpoint=wrong_model), str(tmp_path / "w1"))
    wrong_classes = write_teacher(tmp_path / "b", num_classes=100)
    with pytest.raises(run_setup.ConfigError, match="has 100 classes, but dataset 'digits' has 10"):
        train.train_and_evaluate(_distil(checkpoint=wrong_classes), str(tmp_path / "w2"))
    # Metadata that lies about the architecture: the restore itself refuses.
    lying = write_teacher(tmp_path / "c", model="resnet14", meta_model="resnet8")
    with pytest.raises(run_setup.ConfigError, match="could not be restored as a resnet8"):
        train.train_and_evaluate(_distil(checkpoint=lying), str(tmp_path / "w3"))
    for name in ("w1", "w2", "w3"):
        assert not os.path.exists(tmp_path / name)


@pytest.mark.slow
def test_workdir_of_a_different_run_is_refused_unless_told(tmp_path):
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(digits_config(max_steps=2), workdir)
    os.makedirs(os.path.join(workdir, "notes"))
    with open(os.path.join(workdir, "notes", "mine.txt"), "w") as f:
        f.write("keep me")
    before = _snapshot(workdir)
    changed = digits_config(max_steps=2, seed=1)
    with pytest.raises(run_setup.ConfigError, match=r"different config \(seed differ"):
        train.train_and_evaluate(changed, workdir)
    assert _snapshot(workdir) == before
    # The same config resumes; max_steps may change.
    train.train_and_evaluate(digits_config(max_steps=3), workdir)
    assert _steps(workdir) == [2, 3]
    changed.on_changed_config = "overwrite"
    train.train_and_evaluate(changed, workdir)
    assert _steps(workdir) == [2]  # a fresh run
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["seed"] == 1
    with open(os.path.join(workdir, "notes", "mine.txt")) as f:
        assert f.read() == "keep me"
