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

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Initialise JAX's distributed runtime.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Index of this process.")
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_library_info(record) -> bool:
    """Drops orbax's per-save INFO chatter (dozens of lines per checkpoint)."""
    return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_quiet_library_info)
    import jax

    # TensorFlow only feeds the input pipeline: keep it off the accelerators.
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    # Reruns, resumptions and the runs of a sweep share many programs (the
    # teacher's forward pass, evaluation): cache their compilation on disk.
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/figkd_jax/xla"))
    if _DISTRIBUTED.value or _COORDINATOR.value:
        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
        )
    from figkd_jax import sweep, train
    from figkd_jax.run_setup import ConfigError

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
    except (ConfigError, FileNotFoundError, FloatingPointError) as e:
        # One actionable line, no traceback: the message says what to change.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except train.Preempted as e:
        print(e, file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    app.run(main)
