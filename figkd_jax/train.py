"""Teacher and student training: `train_and_evaluate(config, workdir)`.

One jitted, pure `train_step` runs data-parallel over every device of every
process: the batch is sharded on a one-axis `Mesh` ("data"), the student's
state and the frozen teacher's variables are replicated, and BatchNorm
statistics, losses and gradients are reductions over the global batch, so N
devices compute what one device computes on the same global batch.

The teacher is restored from a finished run (or a converted/exported
checkpoint), kept in eval mode, never differentiated and never written into
the student's checkpoints.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.metrics import tensorboard
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from figkd_jax import (
    checkpoints,
    data,
    device_input,
    diagnostics,
    events,
    losses,
    methods,
    models,
)

DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs, besides the config and the data position.

    `step` also fixes the data position: batch k of the run is a pure function
    of (seed, k), so no data-loader or RNG state needs saving.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    # Consecutive steps whose loss or gradients were not finite (not applied).
    nonfinite_steps: jax.Array

    @property
    def variables(self):
        return {"params": self.params, "batch_stats": self.batch_stats}


@dataclasses.dataclass(frozen=True)
class Teacher:
    model: nn.Module
    variables: Any
    name: str


class ConfigError(ValueError):
    """A config that cannot run; raised before anything is written."""


# --------------------------------------------------------------------------
# Optimiser


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
    """Base rate times `lr_decay_rate` for each of `lr_decay_epochs` already passed.

    The reference decays at the start of epoch ``e + 1`` (counted from 1) for
    each ``e`` in ``lr_decay_epochs``; per step that is step ``e * steps_per_epoch``.
    """
    return optax.piecewise_constant_schedule(
        config.optim.learning_rate,
        {
            int(e) * steps_per_epoch: config.optim.lr_decay_rate
            for e in config.optim.lr_decay_epochs
        },
    )


def make_optimizer(config, schedule: optax.Schedule) -> optax.GradientTransformation:
    """PyTorch SGD: g + wd * p, then momentum (buffer starts at the first gradient)."""
    return optax.chain(
        optax.add_decayed_weights(config.optim.weight_decay),
        optax.sgd(schedule, momentum=config.optim.momentum),
    )


# --------------------------------------------------------------------------
# Pure steps


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    teacher_variables: Any,
    *,
    student: nn.Module,
    teacher: nn.Module | None,
    objective: methods.Objective,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    steps_per_epoch: int,
    band_diagnostics: Callable[..., dict[str, jax.Array]] | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on a global batch; a non-finite step is counted, not applied.

    With a teacher, `band_diagnostics(student_logits, teacher_logits)` (if
    given) adds the Haar band energies and per-band KLs to the metrics.
    """
    images, labels = batch["image"], batch["label"]
    epoch = state.step // steps_per_epoch + 1
    teacher_logits = None
    if teacher is not None:
        teacher_logits = jax.lax.stop_gradient(
            teacher.apply(teacher_variables, images, train=False)
        )

    def loss_fn(params):
        logits, updates = student.apply(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        terms = {
            k: v.mean() for k, v in objective(logits, teacher_logits, labels, epoch=epoch).items()
        }
        return sum(terms.values()), (terms, logits, updates["batch_stats"])

    (loss, (terms, logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    finite = jnp.isfinite(loss) & jnp.all(
        jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = TrainState(
        step=state.step + 1,
        params=keep(params, state.params),
        batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state),
        nonfinite_steps=jnp.where(finite, 0, state.nonfinite_steps + 1),
    )
    metrics = {
        "loss": loss,
        **{f"loss_{k}": v for k, v in terms.items()},
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
        "learning_rate": schedule(state.step),
        "nonfinite": 1 - finite.astype(jnp.int32),
    }
    if teacher is not None:
        metrics["agreement"] = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(teacher_logits, -1))
        if band_diagnostics is not None:
            bands = band_diagnostics(jax.lax.stop_gradient(logits), teacher_logits)
            metrics.update({f"bands/{k}": v for k, v in bands.items()})
    return new_state, metrics


def eval_step(
    variables: Any,
    batch: dict[str, jax.Array],
    teacher_variables: Any,
    *,
    model: nn.Module,
    teacher: nn.Module | None,
) -> dict[str, jax.Array]:
    """Sums over the unmasked examples of a padded eval batch."""
    mask = batch["mask"]
    labels = batch["label"]
    logits = model.apply(variables, batch["image"], train=False)
    topk = jnp.argsort(logits, axis=-1)[:, ::-1][:, : min(5, logits.shape[-1])]
    hits = topk == labels[:, None]
    sums = {
        "count": jnp.sum(mask),
        "top1": jnp.sum(mask & hits[:, 0]),
        "top5": jnp.sum(mask & jnp.any(hits, axis=-1)),
    }
    if teacher is not None:
        teacher_logits = teacher.apply(teacher_variables, batch["image"], train=False)
        sums["agreement"] = jnp.sum(
            mask & (jnp.argmax(logits, -1) == jnp.argmax(teacher_logits, -1))
        )
        sums["teacher_kl"] = jnp.sum(
            losses.kd_loss(logits, teacher_logits, temperature=1.0, where=mask)
        )
    return sums


# --------------------------------------------------------------------------
# Set-up


@dataclasses.dataclass
class Run:
    """What the loop needs, built from a validated config before any write."""

    config: ml_collections.ConfigDict
    info: data.DatasetInfo
    mesh: Mesh
    student: nn.Module
    objective: methods.Objective
    steps_per_epoch: int
    total_steps: int
    schedule: optax.Schedule
    tx: optax.GradientTransformation

    @property
    def replicated(self):
        return NamedSharding(self.mesh, P())

    @property
    def batch_sharded(self):
        return NamedSharding(self.mesh, P(DATA_AXIS))


def validate(config, info: data.DatasetInfo | None = None) -> Run:
    """Checks everything checkable without reading data or checkpoints; builds the Run.

    `info` gives the prepared split sizes (data.prepared_info); by default the
    registry's sizes of the default splits.
    """
    try:
        info = info or data.get_info(config.dataset.name)
    except ValueError as e:
        raise ConfigError(f"config.dataset.name: {e}") from None
    try:
        method = methods.get(config.method.name)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if config.model not in models.names():
        raise ConfigError(
            f"config.model={config.model!r} is unknown; valid models: {models.names()}"
        )
    if method.needs_teacher:
        if not config.teacher.model:
            raise ConfigError(
                f"method {config.method.name!r} distils from a teacher: set config.teacher.model "
                "and config.teacher.workdir (or config.teacher.checkpoint)"
            )
        if config.teacher.model not in models.names():
            raise ConfigError(
                f"config.teacher.model={config.teacher.model!r} is unknown; "
                f"valid models: {models.names()}"
            )
        if bool(config.teacher.workdir) == bool(config.teacher.checkpoint):
            raise ConfigError(
                "set exactly one of config.teacher.workdir (a teacher run) and "
                "config.teacher.checkpoint (a converted or exported checkpoint)"
            )
        if config.teacher.which not in ("last", "best"):
            raise ConfigError(
                f"config.teacher.which={config.teacher.which!r}; valid: 'last', 'best'"
            )
    if config.input_on_device not in ("auto", "device", "host"):
        raise ConfigError(
            f"config.input_on_device={config.input_on_device!r}; valid: 'auto', 'device', 'host'"
        )
    if config.input_on_device == "device" and not info.fixed_resolution:
        raise ConfigError(
            f"config.input_on_device='device' needs a fixed-resolution dataset "
            f"(digits, cifar100, tiny_imagenet), not {info.name!r}"
        )
    if config.steps_per_dispatch < 1:
        raise ConfigError(f"config.steps_per_dispatch={config.steps_per_dispatch} must be >= 1")
    if config.steps_per_dispatch > 1 and not _input_on_device(config, info):
        raise ConfigError(
            "config.steps_per_dispatch > 1 needs on-device input: "
            "set config.input_on_device='device'"
        )
    if config.on_changed_config not in ("refuse", "continue", "overwrite"):
        raise ConfigError(
            f"config.on_changed_config={config.on_changed_config!r}; "
            "valid: 'refuse', 'continue', 'overwrite'"
        )
    if config.dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"config.dtype={config.dtype!r}; valid: 'float32', 'bfloat16'")
    if config.method.temperature <= 0:
        raise ConfigError(f"config.method.temperature={config.method.temperature} must be > 0")
    num_devices = jax.device_count()
    for field in ("batch_size", "eval_batch_size"):
        size = config[field]
        if size <= 0 or size % num_devices:
            raise ConfigError(
                f"config.{field}={size} must be a positive multiple of the {num_devices} devices"
            )
    if config.num_epochs <= 0:
        raise ConfigError(f"config.num_epochs={config.num_epochs} must be >= 1")
    objective = methods.build(config.method)
    # Tracing the objective once on dummy logits runs every argument check of
    # the losses (temperature, wavelet level against the class count, ...).
    dummy = jax.ShapeDtypeStruct((2, info.num_classes), jnp.float32)
    try:
        jax.eval_shape(lambda s, t: objective(s, t, jnp.zeros(2, jnp.int32), epoch=1), dummy, dummy)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.method: {e}") from None
    steps_per_epoch = data.steps_per_epoch(info.num_train, config.batch_size)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    return Run(
        config=config,
        info=info,
        mesh=Mesh(np.asarray(jax.devices()), (DATA_AXIS,)),
        student=models.create(
            config.model, num_classes=info.num_classes, dtype=models.compute_dtype(config.dtype)
        ),
        objective=objective,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * config.num_epochs,
        schedule=schedule,
        tx=make_optimizer(config, schedule),
    )


def load_teacher(run: Run) -> Teacher | None:
    """The frozen teacher of `run`, replicated over the mesh; None for "ce"."""
    config = run.config
    if not methods.get(config.method.name).needs_teacher:
        return None
    if config.teacher.workdir:
        directory = os.path.join(config.teacher.workdir, "checkpoints")
        what = f"teacher run {config.teacher.workdir}"
    else:
        directory = config.teacher.checkpoint
        what = f"teacher checkpoint {directory}"
    try:
        step, meta = checkpoints.select(directory, config.teacher.which)
    except FileNotFoundError:
        raise ConfigError(
            f"{what} has no checkpoint: train the teacher first, or fix config.teacher"
        ) from None
    except Exception as e:  # a corrupt directory fails in many ways
        raise ConfigError(f"{what} could not be read: {e}") from None
    if meta.get("model") != config.teacher.model:
        raise ConfigError(
            f"{what} holds a {meta.get('model')!r}, "
            f"but config.teacher.model={config.teacher.model!r}"
        )
    if meta.get("num_classes") != run.info.num_classes:
        raise ConfigError(
            f"{what} has {meta.get('num_classes')} classes, but dataset {run.info.name!r} has "
            f"{run.info.num_classes}"
        )
    try:
        model, variables = checkpoints.restore_model(
            directory,
            step,
            meta,
            image_shape=run.info.image_shape,
            dtype=models.compute_dtype(config.dtype),
            sharding=run.replicated,
        )
    except Exception as e:  # orbax raises several types for tree mismatches
        raise ConfigError(
            f"{what} could not be restored as a {config.teacher.model}: {e}"
        ) from None
    return Teacher(model=model, variables=variables, name=config.teacher.model)


def _dummy_images(info: data.DatasetInfo, batch: int = 1):
    return jnp.zeros((batch, *info.image_shape), jnp.float32)


def initial_state(run: Run) -> TrainState:
    """The deterministic initial state of `run` (a pure function of config.seed)."""
    # RBG rather than threefry: XLA compiles the initialisers of a deep model
    # several times faster with it (tens of seconds saved per run on CPU).
    key = jax.random.key(run.config.seed, impl="rbg")
    variables = run.student.init(key, _dummy_images(run.info), train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=run.tx.init(params),
        nonfinite_steps=jnp.zeros((), jnp.int32),
    )


# --------------------------------------------------------------------------
# The run


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (and evaluates every epoch) the run of `config` in `workdir`.

    Returns the contents of ``<workdir>/results.json``. A config with a sweep
    runs each of its runs in a sub-directory instead (figkd_jax.sweep).
    """
    if config.sweep.methods or config.sweep.seeds or config.sweep.train_teacher:
        from figkd_jax import sweep

        return sweep.run(config, workdir)

    # Every check that can fail on a user's mistake runs before the workdir
    # is touched: config, data, teacher, and the workdir's own config.
    validate(config)
    data.check_prepared(config.dataset)
    run = validate(config, data.prepared_info(config.dataset))
    teacher = load_teacher(run)
    changed = _changed_fields(config, workdir)
    if changed and config.on_changed_config == "refuse":
        raise ConfigError(
            f"workdir {workdir} holds a run with a different config ({', '.join(changed)} "
            "differ): use a new --workdir, restore the original config, or set "
            "--config.on_changed_config=continue (resume with the new config) or "
            "=overwrite (delete that run)"
        )
    if jax.process_index() == 0:
        if changed and config.on_changed_config == "overwrite":
            _delete_run(workdir)
        os.makedirs(workdir, exist_ok=True)
        _write_json(os.path.join(workdir, "config.json"), config_to_dict(config))
    return _train(run, teacher, workdir)


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


def _changed_fields(config, workdir: str) -> list[str]:
    """Config fields that differ from the run already in `workdir` (if any)."""
    path = os.path.join(workdir, "config.json")
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


def _delete_run(workdir: str) -> None:
    """Removes what a run wrote in `workdir`, and nothing else."""
    shutil.rmtree(os.path.join(workdir, "checkpoints"), ignore_errors=True)
    for name in ("config.json", "results.json", *events.files(workdir)):
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            os.remove(path)


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


def _write_json(path: str, obj: Any) -> None:
    """Atomic JSON write: a reader (or a kill) never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _train(run: Run, teacher: Teacher | None, workdir: str) -> dict:
    config = run.config
    is_writer = jax.process_index() == 0
    teacher_vars = teacher.variables if teacher else None
    teacher_model = teacher.model if teacher else None

    mngr = checkpoints.manager(
        os.path.join(workdir, "checkpoints"), keep_last=config.checkpoints_to_keep
    )
    state = jax.jit(lambda: initial_state(run), out_shardings=run.replicated)()
    meta = {"history": [], "best_step": None}
    if mngr.latest_step() is not None:
        state, meta = _restore(mngr, state, run)
        logging.info("Resumed from step %d of %s", int(state.step), workdir)
    start_step = int(state.step)
    if is_writer:
        # Drop what a killed predecessor logged after its last checkpoint.
        events.truncate_events(workdir, start_step)

    eval_sums = _DeviceEval(run) if _input_on_device(config, run.info) else _HostEval(run)
    evaluate = lambda variables, model, teacher: _means(
        eval_sums(variables, teacher_vars, model, teacher)
    )

    writer = tensorboard.SummaryWriter(workdir) if is_writer else None
    if teacher is not None and "teacher" not in meta:
        meta["teacher"] = evaluate(teacher_vars, teacher_model, None)
        logging.info(
            "Teacher %s: top-1 %.2f%%, top-5 %.2f%%",
            teacher.name,
            100 * meta["teacher"]["top1"],
            100 * meta["teacher"]["top5"],
        )

    one_step = make_train_step(run, teacher_model)
    if _input_on_device(config, run.info):
        advance = _DeviceInput(run, one_step, teacher_vars)
    else:
        advance = _HostInput(run, one_step, teacher_vars, start_step)
    stop_step = run.total_steps
    if config.max_steps is not None:
        stop_step = min(stop_step, config.max_steps)

    timer = _Throughput(config.batch_size)
    pending: list[dict[str, jax.Array]] = []
    step = start_step
    # Wall time accumulates over resumptions.
    t_start = time.time() - meta.get("wall_time", 0.0)
    results_path = os.path.join(workdir, "results.json")
    with _PreemptionWatcher(mngr) as preemption:
        while step < stop_step:
            next_log = (step // config.log_every_steps + 1) * config.log_every_steps
            state, metrics, done = advance(state, step, min(stop_step, next_log))
            pending.append(metrics)
            step += done
            timer.tick(done)
            if step == start_step + done:
                # Leave compilation out of the throughput.
                jax.block_until_ready(metrics)
                timer.pause()
            if step % config.log_every_steps == 0 or step % run.steps_per_epoch == 0:
                _log_train(writer, step, pending, timer, run)
                pending = []
                _check_nonfinite(state, config, step, mngr, workdir)
            if step % run.steps_per_epoch == 0:
                record = {
                    "epoch": step // run.steps_per_epoch,
                    "step": step,
                    **evaluate(state.variables, run.student, teacher_model),
                }
                meta["history"].append(record)
                if record is max(meta["history"], key=lambda r: r["top1"]):
                    meta["best_step"] = step
                meta["wall_time"] = time.time() - t_start
                # Logged before the checkpoint: a kill in between leaves a
                # duplicate (removed on resumption), never a gap.
                _log_eval(writer, record, run)
                _save(mngr, state, meta, run, metrics={"top1": record["top1"]})
                if is_writer:
                    _write_json(results_path, _results(run, meta))
                timer.pause()
            elif step == stop_step or preemption.reached(step):
                # Stopped inside an epoch: keep the position resumable.
                meta["wall_time"] = time.time() - t_start
                _save(mngr, state, meta, run, metrics=None)
            if preemption.reached(step):
                if writer is not None:
                    writer.flush()
                mngr.close()
                raise Preempted(
                    f"preempted: checkpoint of step {step} saved in {workdir}; "
                    "rerun the same command to resume"
                )
    if is_writer:
        _write_json(results_path, _results(run, meta))
    if writer is not None:
        writer.flush()
    mngr.close()
    return _results(run, meta)


class Preempted(RuntimeError):
    """The run saved a checkpoint and stopped on a preemption notice (SIGTERM)."""


class _PreemptionWatcher:
    """Whether a preemption notice arrived, with every process agreeing on the step.

    With several processes, JAX's distributed runtime catches SIGTERM and
    orbax's `reached_preemption` makes all processes stop at the same step.
    A single process installs its own SIGTERM handler for the same effect.
    """

    def __init__(self, mngr):
        self._mngr = mngr
        self._signalled = False
        self._multi_process = jax.process_count() > 1
        self._previous = None
        self._answers: dict[int, bool] = {}

    def __enter__(self):
        if not self._multi_process:
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc):
        if not self._multi_process:
            signal.signal(signal.SIGTERM, self._previous)

    def _on_sigterm(self, signum, frame):
        del signum, frame
        logging.warning("SIGTERM received: saving a checkpoint after this step")
        self._signalled = True

    def reached(self, step: int) -> bool:
        # Asked at most once per step: the multi-process answer is a sync point.
        if step not in self._answers:
            if self._multi_process:
                self._answers = {step: self._mngr.reached_preemption(step)}
            else:
                self._answers = {step: self._signalled}
        return self._answers[step]


def _check_nonfinite(state: TrainState, config, step: int, mngr, workdir: str) -> None:
    """Stops the run after too many consecutive skipped (non-finite) steps."""
    nonfinite = int(state.nonfinite_steps)
    if nonfinite:
        logging.warning("%d consecutive non-finite steps skipped at step %d", nonfinite, step)
    if nonfinite >= config.max_consecutive_nonfinite_steps:
        raise FloatingPointError(
            f"{nonfinite} consecutive steps with non-finite loss or gradients at step "
            f"{step} (none applied); last good checkpoint: step {mngr.latest_step()} "
            f"in {workdir}. Lower config.optim.learning_rate or check the data."
        )


def make_train_step(run: Run, teacher: nn.Module | None):
    """`train_step` with the run's models, objective, optimiser and schedule bound:
    (state, batch, teacher_variables) -> (state, metrics)."""
    return functools.partial(
        train_step,
        student=run.student,
        teacher=teacher,
        objective=run.objective,
        tx=run.tx,
        schedule=run.schedule,
        steps_per_epoch=run.steps_per_epoch,
        band_diagnostics=_band_diagnostics(run.config),
    )


def device_steps(run: Run, one_step):
    """(state, arrays, plan, teacher_variables, num_steps) -> (state, metrics [num_steps]):
    `num_steps` (static) applications of `one_step` in one lax.scan, each on the batch
    that device_input.batch_at builds on device for the state's step."""

    def steps(state, arrays, plan, teacher_variables, num_steps):
        batch_at = functools.partial(
            device_input.batch_at,
            arrays,
            plan,
            info=run.info,
            dtype=run.config.dtype,
            sharding=run.batch_sharded,
        )
        step_fn = lambda s, b: one_step(s, b, teacher_variables)
        if num_steps == 1:
            # No loop: XLA:CPU lays out convolutions inside a scan body poorly.
            state, metrics = step_fn(state, batch_at(state.step))
            return state, jax.tree.map(lambda x: x[None], metrics)
        return device_input.scan_train_steps(step_fn, state, batch_at, num_steps)

    return steps


def _input_on_device(config, info: data.DatasetInfo) -> bool:
    """Whether the train split is uploaded once and augmented inside the step.

    "auto" chooses it on accelerators for datasets whose split fits at a fixed
    resolution; on the CPU the TensorFlow pipeline is faster.
    """
    if config.input_on_device == "auto":
        return info.fixed_resolution and jax.default_backend() != "cpu"
    return config.input_on_device == "device"


class _HostInput:
    """One train step per call, on the next batch of the TensorFlow pipeline."""

    def __init__(self, run: Run, one_step, teacher_vars, start_step: int):
        config = run.config
        self._teacher_vars = teacher_vars
        self._batch_sharding = run.batch_sharded
        self._stream = data.train_stream(
            config.dataset,
            global_batch_size=config.batch_size,
            seed=config.seed,
            start_step=start_step,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            num_devices=jax.device_count(),
            dtype=config.dtype,
        )
        self._step = jax.jit(
            one_step,
            in_shardings=(run.replicated, run.batch_sharded, run.replicated),
            out_shardings=(run.replicated, run.replicated),
            donate_argnums=(0,),
        )

    def __call__(self, state, step: int, limit: int):
        del step, limit
        batch = _to_global(next(self._stream), self._batch_sharding)
        state, metrics = self._step(state, batch, self._teacher_vars)
        return state, metrics, 1


class _DeviceInput:
    """Up to config.steps_per_dispatch train steps per call (one lax.scan), each on a
    batch gathered and augmented on device from the uploaded split (device_input).

    A call never crosses an epoch end or the caller's `limit` (the next log step
    or the end of the run), so logging, evaluation and checkpoints keep their
    places; each distinct number of steps compiles once.
    """

    def __init__(self, run: Run, one_step, teacher_vars):
        config = run.config
        self._dataset = device_input.DeviceDataset.create(
            config.dataset,
            seed=config.seed,
            global_batch_size=config.batch_size,
            sharding=run.replicated,
        )
        assert self._dataset.steps_per_epoch == run.steps_per_epoch
        self._teacher_vars = teacher_vars
        self._block = config.steps_per_dispatch
        self._steps_per_epoch = run.steps_per_epoch
        self._plan, self._plan_epoch = None, None

        self._steps = jax.jit(
            device_steps(run, one_step),
            static_argnums=(4,),
            in_shardings=(run.replicated,) * 4,
            out_shardings=(run.replicated, run.replicated),
            donate_argnums=(0,),
        )

    def __call__(self, state, step: int, limit: int):
        epoch, position = divmod(step, self._steps_per_epoch)
        if epoch != self._plan_epoch:
            self._plan, self._plan_epoch = self._dataset.plan(epoch), epoch
        num_steps = min(self._block, self._steps_per_epoch - position, limit - step)
        state, metrics = self._steps(
            state, self._dataset.arrays, self._plan, self._teacher_vars, num_steps
        )
        return state, metrics, num_steps


def _band_diagnostics(config) -> Callable[..., dict[str, jax.Array]]:
    """Band diagnostics at the run's FiGKD level and mode (level 1 for other methods)."""
    figkd = config.method.name == "figkd"
    return functools.partial(
        diagnostics.band_diagnostics,
        level=config.method.figkd.level if figkd else 1,
        mode=config.method.figkd.mode if figkd else "symmetric",
        temperature=config.method.temperature,
    )


def _to_global(local_batch: dict[str, np.ndarray], sharding) -> dict[str, jax.Array]:
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }


class _HostEval:
    """Sums of eval_step over the eval split, one dispatch per batch of the TF pipeline."""

    def __init__(self, run: Run):
        self._run = run
        self._step = jax.jit(
            lambda v, b, t, model, teacher: eval_step(v, b, t, model=model, teacher=teacher),
            static_argnums=(3, 4),
            in_shardings=(run.replicated, run.batch_sharded, run.replicated),
            out_shardings=run.replicated,
        )

    def __call__(self, variables, teacher_vars, model, teacher) -> dict[str, jax.Array]:
        config = self._run.config
        totals = None
        for local in data.eval_stream(
            config.dataset,
            global_batch_size=config.eval_batch_size,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            dtype=config.dtype,
        ):
            batch = _to_global(local, self._run.batch_sharded)
            sums = self._step(variables, batch, teacher_vars, model, teacher)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        return totals


class _DeviceEval:
    """Sums of eval_step over the eval split, uploaded once (uint8, padded to whole
    batches): one dispatch per evaluation, a lax.scan over the batches."""

    def __init__(self, run: Run):
        config, info = run.config, run.info
        images, labels = data.load_arrays(config.dataset, info.eval_split)
        host = device_input.padded_eval_batches(images, labels, config.eval_batch_size)
        sharding = NamedSharding(run.mesh, P(None, DATA_AXIS))
        self._batches = {
            k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
            for k, v in host.items()
        }

        def sums(variables, batches, teacher_vars, model, teacher):
            def body(carry, batch):
                batch = jax.lax.with_sharding_constraint(batch, run.batch_sharded)
                image = device_input.normalize(batch["image"], info.mean, info.std, config.dtype)
                batch = {**batch, "image": image}
                return carry, eval_step(
                    variables, batch, teacher_vars, model=model, teacher=teacher
                )

            _, per_batch = jax.lax.scan(body, None, batches)
            return jax.tree.map(lambda x: jnp.sum(x, axis=0), per_batch)

        self._sums = jax.jit(sums, static_argnums=(3, 4), out_shardings=run.replicated)

    def __call__(self, variables, teacher_vars, model, teacher) -> dict[str, jax.Array]:
        return self._sums(variables, self._batches, teacher_vars, model, teacher)


def _means(totals: dict[str, jax.Array]) -> dict[str, float]:
    """Per-example means from eval sums (their "count" entry is the number of examples)."""
    totals = jax.device_get(totals)
    count = float(totals.pop("count"))
    return {k: float(v) / count for k, v in totals.items()}


def _save(mngr, state: TrainState, meta: dict, run: Run, metrics):
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


def _restore(mngr, template: TrainState, run: Run) -> tuple[TrainState, dict]:
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


def _optimizer_item(state: TrainState) -> dict:
    """What the checkpoint's ``optimizer`` item holds."""
    return {"opt_state": state.opt_state, "nonfinite_steps": state.nonfinite_steps}


class _Throughput:
    """Images/s over the training steps since the last report (eval excluded)."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.pause()

    def pause(self):
        self.t0, self.steps = time.time(), 0

    def tick(self, steps: int = 1):
        self.steps += steps

    def rate(self) -> float:
        rate = self.steps * self.batch_size / max(time.time() - self.t0, 1e-9)
        self.pause()
        return rate


def _log_train(writer, step: int, pending: list, timer: _Throughput, run: Run) -> None:
    means = {
        k: float(v)
        for k, v in jax.device_get(
            jax.tree.map(
                lambda *x: jnp.mean(jnp.concatenate([jnp.atleast_1d(v) for v in x])), *pending
            )
        ).items()
    }
    rate = timer.rate()
    means["images_per_second"] = rate
    remaining = (run.total_steps - step) * run.config.batch_size / max(rate, 1e-9)
    epoch = step / run.steps_per_epoch
    terms = " ".join(f"{k}={v:.4f}" for k, v in means.items() if k.startswith("loss"))
    logging.info(
        "epoch %.2f step %d/%d %s lr=%.4g acc=%.3f %.0f img/s ETA %s",
        epoch,
        step,
        run.total_steps,
        terms,
        means["learning_rate"],
        means["accuracy"],
        rate,
        time.strftime("%H:%M:%S", time.gmtime(remaining)) if math.isfinite(remaining) else "?",
    )
    if writer is not None:
        for k, v in means.items():
            writer.scalar(f"train/{k}", v, step)


def _log_eval(writer, record: dict, run: Run) -> None:
    logging.info(
        "epoch %d: test top-1 %.2f%% top-5 %.2f%%%s",
        record["epoch"],
        100 * record["top1"],
        100 * record["top5"],
        f" agreement {100 * record['agreement']:.2f}%" if "agreement" in record else "",
    )
    if writer is not None:
        for k, v in record.items():
            if k not in ("epoch", "step"):
                writer.scalar(f"eval/{k}", v, record["step"])
        writer.flush()


def _results(run: Run, meta: dict) -> dict:
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
        "git_commit": _git_commit(),
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
        "devices": {
            "kind": jax.devices()[0].device_kind,
            "count": jax.device_count(),
            "processes": jax.process_count(),
        },
        "wall_time": meta.get("wall_time", 0.0),
    }


def _git_commit() -> str | None:
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
