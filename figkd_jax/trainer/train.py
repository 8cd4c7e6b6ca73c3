"""Teacher and student training: `train_and_evaluate(config, workdir)`.

The loop: build the run and restore the frozen teacher (`run_setup`), lock the workdir
(`workdir_lock`), resume from the workdir's newest intact checkpoint (`workdir`), feed the
pure train step (`steps`) from the host or the device (`feeds`), evaluate and checkpoint
every epoch, log to the console and TensorBoard, and stop cleanly on a preemption notice.
Sweeps of several runs live in `figkd_jax.trainer.sweep`.

The teacher is kept in eval mode, never differentiated and never written into the student's
checkpoints.
"""

from __future__ import annotations

import math
import signal
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from figkd_jax import data
from figkd_jax.io import events, storage, workdir_lock
from figkd_jax.trainer import class_order, feeds, run_setup, steps
from figkd_jax.trainer import workdir as workdir_lib
from figkd_jax.trainer.errors import ConfigError
from figkd_jax.trainer.run_setup import Run, Teacher


class Preempted(RuntimeError):
    """The run saved a checkpoint and stopped on a preemption notice (SIGTERM)."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (and evaluates every epoch) the run of `config` in `workdir`.

    Returns the contents of ``<workdir>/results.json``.
    """
    # Every check that can fail on a user's mistake runs before the workdir
    # is touched: config, data, teacher, and the workdir's own config.
    run_setup.check_config(config)
    try:  # bad data fields, or decoded fine-grained splits too large for host memory
        data.check_prepared(config.dataset)
        info = data.prepared_info(config.dataset)
        data.check_host_memory(config.dataset, info)
    except storage.StorageError:
        raise  # already one line naming the path
    except ValueError as e:  # a dataset not prepared raises FileNotFoundError
        raise ConfigError(f"config.dataset: {e}") from None
    run = run_setup.build_run(config, info)
    teacher = run_setup.load_teacher(run)
    # Writable, and the same storage for every process, before the lock is written there.
    workdir_lib.check_workdir(workdir)
    # One launch at a time per workdir: the lock is taken before the workdir's
    # config is compared, so that no other launch rewrites it meanwhile.
    with workdir_lock.hold(workdir) as lock:
        changed = workdir_lib.changed_fields(config, workdir)
        if changed and config.on_changed_config == "refuse":
            raise ConfigError(
                f"workdir {workdir} holds a run with a different config ({', '.join(changed)} "
                "differ): use a new --workdir, restore the original config, or set "
                "--config.on_changed_config=continue (resume with the new config) or "
                "=overwrite (delete that run)"
            )
        overwrite = bool(changed) and config.on_changed_config == "overwrite"
        run, new_order = _in_class_order(run, teacher, workdir, reuse=not overwrite)
        if jax.process_index() == 0:
            if overwrite:
                workdir_lib.delete_run(workdir)
            storage.path(workdir).mkdir(parents=True, exist_ok=True)
            workdir_lib.write_json(
                storage.path(workdir) / workdir_lib.CONFIG_FILE, workdir_lib.config_to_dict(config)
            )
            if new_order:
                class_order.save(workdir, run.class_order)
        return _train(run, teacher, workdir, lock)


def _in_class_order(run: Run, teacher: Teacher | None, workdir: str, *, reuse: bool):
    """(`run` in its FiGKD class order, whether that order is new and must be saved).

    The order saved in `workdir` is reused when it was made for the same config value (a
    resumption never recomputes it); otherwise it is made now, the teacher's from its
    predictions on the training split.
    """
    config = run.config
    if config.method.name != "figkd":
        return run, False
    requested = config.method.figkd.class_order
    try:
        saved = class_order.load_saved(workdir, run.info.num_classes) if reuse else None
    except ValueError as e:
        raise ConfigError(f"workdir {workdir}: {e}") from None
    if saved is not None and saved.requested == requested:
        order, new = saved, False
    else:
        order = run_setup.make_class_order(
            run,
            lambda: feeds.split_logits(
                teacher.model,
                teacher.variables,
                config.dataset,
                run.info.train_split,
                batch_size=config.eval_batch_size,
                run=run,
            ),
        )
        new = True
    shown = ", ".join(map(str, order.permutation[:32]))
    more = ", ..." if len(order.permutation) > 32 else ""
    logging.info(
        "Class order %s (%s): [%s%s]", order.label, "made" if new else "reused", shown, more
    )
    return run_setup.with_class_order(run, order), new


def _train(
    run: Run, teacher: Teacher | None, workdir: str, lock: workdir_lock.WorkdirLock | None
) -> dict:
    """Trains `run` from its workdir's newest checkpoint (or step 0) to its last step."""
    config = run.config
    mngr = workdir_lib.checkpoint_manager(workdir, keep_last=config.checkpoints_to_keep)
    state, meta = _initial_or_resumed(run, mngr, workdir)
    start_step = int(state.step)
    on_device = run_setup.input_on_device(config, run.info)
    eval_sums = feeds.DeviceEval(run) if on_device else feeds.HostEval(run)
    teacher_vars = teacher.variables if teacher else None
    teacher_model = teacher.model if teacher else None
    evaluate = lambda variables, model, teacher: feeds.eval_means(
        eval_sums(variables, teacher_vars, model, teacher)
    )
    if teacher is not None and "teacher" not in meta:
        meta["teacher"] = evaluate(teacher_vars, teacher_model, None)
        logging.info(
            "Teacher %s: top-1 %.2f%%, top-5 %.2f%%",
            teacher.name,
            100 * meta["teacher"]["top1"],
            100 * meta["teacher"]["top5"],
        )
    one_step = steps.make_train_step(run, teacher_model)
    if on_device:
        advance = feeds.DeviceInput(run, one_step, teacher_vars)
    else:
        advance = feeds.HostInput(run, one_step, teacher_vars, start_step)
    evaluate_student = lambda variables: evaluate(variables, run.student, teacher_model)
    progress = _Progress(run, workdir, mngr, meta, start_step, evaluate_student)
    with _PreemptionWatcher(mngr) as preemption:
        _loop(run, state, advance, progress, lock, preemption)
    return progress.finish()


def _initial_or_resumed(run: Run, mngr, workdir: str):
    """(state, meta) of the workdir's newest intact checkpoint, or of step 0."""
    state = jax.jit(lambda: run_setup.initial_state(run), out_shardings=run.replicated)()
    resumed = workdir_lib.resume_state(mngr, state, run)
    if resumed is None:
        return state, {"history": [], "best_step": None}
    logging.info("Resumed from step %d of %s", int(resumed[0].step), workdir)
    return resumed


def _loop(run: Run, state, advance, progress: _Progress, lock, preemption) -> None:
    """Steps from `state` to the run's stop step, logging every config.log_every_steps and
    handing each epoch's end (and a stop inside an epoch) to `progress`."""
    config = run.config
    stop_step = run.total_steps
    if config.max_steps is not None:
        stop_step = min(stop_step, config.max_steps)
    timer = _Throughput(config.batch_size)
    pending: list[dict[str, jax.Array]] = []
    start_step = step = int(state.step)
    if step < stop_step:
        logging.info("Compiling the train step...")
    while step < stop_step:
        if lock is not None:
            lock.check()  # stop before the next checkpoint if another launch took over
        next_log = (step // config.log_every_steps + 1) * config.log_every_steps
        state, metrics, done = advance(state, step, min(stop_step, next_log))
        pending.append(metrics)
        step += done
        timer.tick(done)
        if step == start_step + done:
            # Leave compilation out of the throughput.
            jax.block_until_ready(metrics)
            logging.info("Compiled and ran the first step in %.1f s", time.time() - timer.t0)
            timer.pause()
        if step % config.log_every_steps == 0 or step % run.steps_per_epoch == 0:
            _log_train(progress.writer, step, pending, timer, run)
            pending = []
            _check_nonfinite(state, config, step, progress.mngr, progress.workdir)
        if step % run.steps_per_epoch == 0:
            progress.end_epoch(state, step)
            timer.pause()
        elif step == stop_step or preemption.reached(step):
            progress.save_position(state)  # stopped inside an epoch: keep it resumable
        if preemption.reached(step):
            progress.stop_preempted(step)


class _Progress:
    """What a run keeps of its progress: the evaluation history and wall time (`meta`),
    checkpoints, TensorBoard events and results.json (the last two from process 0 only)."""

    def __init__(self, run: Run, workdir: str, mngr, meta: dict, start_step: int, evaluate):
        self.run, self.workdir, self.mngr, self.meta = run, workdir, mngr, meta
        self._evaluate = evaluate  # variables -> the student's test-split means
        self._is_writer = jax.process_index() == 0
        # Drops what a killed predecessor logged after its last checkpoint.
        self.writer = events.Writer(workdir, start_step) if self._is_writer else None
        self._results_path = storage.path(workdir) / workdir_lib.RESULTS_FILE
        # Wall time accumulates over resumptions.
        self._t_start = time.time() - meta.get("wall_time", 0.0)

    def end_epoch(self, state, step: int) -> None:
        """Evaluates, records the epoch (and the best step), logs it, checkpoints, and
        rewrites results.json."""
        run, meta = self.run, self.meta
        record = {
            "epoch": step // run.steps_per_epoch,
            "step": step,
            **self._evaluate(state.variables),
        }
        meta["history"].append(record)
        if record is max(meta["history"], key=lambda r: r["top1"]):
            meta["best_step"] = step
        meta["wall_time"] = time.time() - self._t_start
        # Logged before the checkpoint: a kill in between leaves a
        # duplicate (removed on resumption), never a gap.
        _log_eval(self.writer, record)
        workdir_lib.save_state(self.mngr, state, meta, run, metrics={"top1": record["top1"]})
        self._write_results()

    def save_position(self, state) -> None:
        self.meta["wall_time"] = time.time() - self._t_start
        workdir_lib.save_state(self.mngr, state, self.meta, self.run, metrics=None)

    def stop_preempted(self, step: int):
        if self.writer is not None:
            self.writer.flush()
        self.mngr.close()
        raise Preempted(
            f"preempted: checkpoint of step {step} saved in {self.workdir}; "
            "rerun the same command to resume"
        )

    def finish(self) -> dict:
        """Writes the final results.json and closes the run's files; returns the results."""
        self._write_results()
        if self.writer is not None:
            self.writer.flush()
        self.mngr.close()
        return workdir_lib.results(self.run, self.meta)

    def _write_results(self) -> None:
        if self._is_writer:
            workdir_lib.write_json(self._results_path, workdir_lib.results(self.run, self.meta))


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


def _check_nonfinite(state, config, step: int, mngr, workdir: str) -> None:
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


def format_duration(seconds: float) -> str:
    """``HH:MM:SS``, with whole days in front past a day (``1d 06:00:00``); ``?`` if unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    days, rest = divmod(round(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


def mean_metrics(pending: list[dict]) -> dict[str, float]:
    """Means over the steps of `pending` (each a dict of scalars or [num_steps] arrays),
    fetched from the device once and reduced on the host."""
    fetched = jax.device_get(pending)
    return {
        k: float(np.mean(np.concatenate([np.atleast_1d(m[k]) for m in fetched])))
        for k in fetched[0]
    }


def _log_train(writer, step: int, pending: list, timer: _Throughput, run: Run) -> None:
    means = mean_metrics(pending)
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
        format_duration(remaining),
    )
    if writer is not None:
        for k, v in means.items():
            writer.scalar(f"train/{k}", v, step)
        writer.flush(force=False)


def _log_eval(writer, record: dict) -> None:
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
