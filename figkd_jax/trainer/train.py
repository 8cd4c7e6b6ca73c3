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
from figkd_jax.trainer.run_setup import ConfigError, Run, Teacher


class Preempted(RuntimeError):
    """The run saved a checkpoint and stopped on a preemption notice (SIGTERM)."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (and evaluates every epoch) the run of `config` in `workdir`.

    Returns the contents of ``<workdir>/results.json``.
    """
    # Every check that can fail on a user's mistake runs before the workdir
    # is touched: config, data, teacher, and the workdir's own config.
    run_setup.build_run(config)
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
    config = run.config
    is_writer = jax.process_index() == 0
    teacher_vars = teacher.variables if teacher else None
    teacher_model = teacher.model if teacher else None

    mngr = workdir_lib.checkpoint_manager(workdir, keep_last=config.checkpoints_to_keep)
    state = jax.jit(lambda: run_setup.initial_state(run), out_shardings=run.replicated)()
    meta = {"history": [], "best_step": None}
    resumed = workdir_lib.resume_state(mngr, state, run)
    if resumed is not None:
        state, meta = resumed
        logging.info("Resumed from step %d of %s", int(state.step), workdir)
    start_step = int(state.step)

    on_device = run_setup.input_on_device(config, run.info)
    eval_sums = feeds.DeviceEval(run) if on_device else feeds.HostEval(run)
    evaluate = lambda variables, model, teacher: feeds.eval_means(
        eval_sums(variables, teacher_vars, model, teacher)
    )

    # Drops what a killed predecessor logged after its last checkpoint.
    writer = events.Writer(workdir, start_step) if is_writer else None
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
    stop_step = run.total_steps
    if config.max_steps is not None:
        stop_step = min(stop_step, config.max_steps)

    timer = _Throughput(config.batch_size)
    pending: list[dict[str, jax.Array]] = []
    step = start_step
    # Wall time accumulates over resumptions.
    t_start = time.time() - meta.get("wall_time", 0.0)
    results_path = storage.path(workdir) / workdir_lib.RESULTS_FILE
    if step < stop_step:
        logging.info("Compiling the train step...")
    with _PreemptionWatcher(mngr) as preemption:
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
                _log_eval(writer, record)
                workdir_lib.save_state(mngr, state, meta, run, metrics={"top1": record["top1"]})
                if is_writer:
                    workdir_lib.write_json(results_path, workdir_lib.results(run, meta))
                timer.pause()
            elif step == stop_step or preemption.reached(step):
                # Stopped inside an epoch: keep the position resumable.
                meta["wall_time"] = time.time() - t_start
                workdir_lib.save_state(mngr, state, meta, run, metrics=None)
            if preemption.reached(step):
                if writer is not None:
                    writer.flush()
                mngr.close()
                raise Preempted(
                    f"preempted: checkpoint of step {step} saved in {workdir}; "
                    "rerun the same command to resume"
                )
    if is_writer:
        workdir_lib.write_json(results_path, workdir_lib.results(run, meta))
    if writer is not None:
        writer.flush()
    mngr.close()
    return workdir_lib.results(run, meta)


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
