"""Launches a run: `python launch.py --config=configs/<file>.py[:args] --workdir=<dir>`.

The config is locked; any field can be overridden on the command line, e.g.
`--config.optim.learning_rate=0.1`. On a multi-host TPU slice or a SLURM/GPU
cluster, pass --distributed so that every process joins JAX's distributed
runtime (addresses from the environment, or --coordinator_address,
--num_processes and --process_id explicitly).
"""

import logging as std_logging
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:
    from absl import app, flags, logging
    from ml_collections import config_flags
except ModuleNotFoundError as missing:  # a library-only install
    print(
        f"error: {missing.name} is not installed: the launcher needs the trainer: "
        'pip install "figkd_jax[train]"',
        file=sys.stderr,
    )
    sys.exit(2)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Initialise JAX's distributed runtime.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Index of this process.")
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with any mistake in the flags or the config printed in one
    line (exit status 2) rather than a traceback or absl's usage text."""
    try:
        rest = flags.FLAGS(argv)
        # A config file that failed to load raises only when the config is read.
        _CONFIG.value.keys()
    except Exception as e:  # flags.Error, and whatever a config file or an override raises
        print(f"error: {_one_line(e, argv)}", file=sys.stderr)
        sys.exit(2)
    if len(rest) > 1:
        print(f"error: unexpected arguments {rest[1:]}: all arguments are --flags", file=sys.stderr)
        sys.exit(2)
    return rest


def _one_line(error: BaseException, argv: list[str]) -> str:
    """The message of a flag or config error in one line.

    ml_collections wraps a config file's own error in a traceback (its cause is
    the plain error) and quotes a missing field's name and "Did you mean"
    suggestion on two lines of a KeyError inside an AttributeError.
    """
    where = ""
    if isinstance(error, flags.Error) and "Error whilst parsing config file" in str(error):
        where = str(error).split(": ")[0] + ": "  # "flag --config=<the argument>: "
        while (error.__cause__ or error.__context__) is not None:
            error = error.__cause__ or error.__context__
    while error.__cause__ is not None:
        error = error.__cause__
    message = error
    while isinstance(message, BaseException):
        message = message.args[0] if len(message.args) == 1 else str(message)
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if isinstance(error, (KeyError, AttributeError)) and lines:
        field = lines[0].strip("'\"")
        overrides = [
            a.split("=")[0] for a in argv if a.startswith("--config.") and field in a.split("=")[0]
        ]
        where = f"{overrides[0]}: " if overrides else ""
        return " ".join([f"{where}no config field {field!r}.", *lines[1:]])
    if isinstance(error, OSError) and lines:
        # "Failed loading config file ... Attempted ...: [Errno 2] No such file ..."
        return f"--config: {lines[-1]}"
    return where + " ".join(lines)


def _quiet_library_info(record) -> bool:
    """Drops orbax's per-save INFO chatter (dozens of lines per checkpoint), and that of
    fsspec and gcsfs on gs:// workdirs (a line per file read)."""
    return record.levelno >= std_logging.WARNING or not any(
        f"/{library}/" in record.pathname for library in ("orbax", "fsspec", "gcsfs")
    )


def _check_before_jax() -> None:
    """The config checks that need neither jax nor TensorFlow, and a bounded probe of a
    Cloud Storage workdir: a mistake answers in one line before seconds of imports and their
    start-up logging, and an unreachable bucket within seconds rather than minutes."""
    from figkd_jax.io import storage
    from figkd_jax.trainer import config_checks

    try:
        config_checks.check(_CONFIG.value)
        if storage.is_url(storage.path(_WORKDIR.value)):
            storage.probe(_WORKDIR.value)
    except (config_checks.ConfigError, storage.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    del argv  # _parse_flags refuses positional arguments
    logging.get_absl_handler().addFilter(_quiet_library_info)
    _check_before_jax()
    import jax

    if _DISTRIBUTED.value or _COORDINATOR.value:
        try:
            jax.distributed.initialize(
                coordinator_address=_COORDINATOR.value,
                num_processes=_NUM_PROCESSES.value,
                process_id=_PROCESS_ID.value,
            )
        except (ValueError, RuntimeError) as e:
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            print(
                f"error: --distributed: cannot join a cluster ({reason}). JAX finds its peers by "
                "itself on a Cloud TPU slice and in SLURM or Open MPI jobs; elsewhere pass "
                "--coordinator_address=<host0>:<port> --num_processes=<N> --process_id=<i>, "
                "and on one machine leave out --distributed",
                file=sys.stderr,
            )
            sys.exit(2)
    # TensorFlow only feeds the input pipeline: keep it off the accelerators.
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    # Reruns, resumptions and the runs of a sweep share many programs (the
    # teacher's forward pass, evaluation): cache their compilation on disk.
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/figkd_jax/xla"))
    from figkd_jax.io import workdir_lock
    from figkd_jax.io.storage import StorageError
    from figkd_jax.trainer import sweep, train
    from figkd_jax.trainer.errors import ConfigError
    from figkd_jax.trainer.workdir import UnrestorableRun

    logging.info(
        "JAX process %d/%d, %d devices",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
    )
    try:
        if sweep.is_sweep(_CONFIG.value):
            sweep.run(_CONFIG.value, _WORKDIR.value)
        else:
            train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (
        ConfigError,
        StorageError,
        FileNotFoundError,
        FloatingPointError,
        UnrestorableRun,
        workdir_lock.WorkdirLocked,
    ) as e:
        # One actionable line, no traceback: the message says what to change.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except train.Preempted as e:
        print(e, file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
