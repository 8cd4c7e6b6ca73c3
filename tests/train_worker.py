"""Trains a small digits run in a fresh process and saves its final parameters.

Used by the data-parallel tests, which need a process whose JAX was started
with a given number of (simulated) devices, or which joins a distributed
runtime. Usage:

  python tests/train_worker.py WORKDIR OUT.npz [--max_steps N]
      [--coordinator HOST:PORT --num_processes P --process_id I]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import worker_cli


def digits_config(**overrides):
    from configs import default

    config = default.get_config()
    config.model = "resnet8"
    config.num_epochs = 2
    config.batch_size = 64
    config.eval_batch_size = 128
    config.log_every_steps = 5
    config.optim.lr_decay_epochs = (1,)
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


def main():
    args = worker_cli.parse(
        "workdir",
        "out",
        configure=lambda parser: parser.add_argument("--max_steps", type=int, default=None),
    )

    import jax
    import numpy as np

    worker_cli.join_runtime(args)
    from figkd_jax.trainer import run_setup, train

    config = digits_config(max_steps=args.max_steps)
    train.train_and_evaluate(config, args.workdir)
    run = run_setup.build_run(config)
    from figkd_jax.trainer import checkpoints

    step, _ = checkpoints.read_meta(os.path.join(args.workdir, "checkpoints"))
    shapes = jax.eval_shape(lambda: run_setup.initial_state(run).variables)
    variables = checkpoints.restore_variables(
        os.path.join(args.workdir, "checkpoints"),
        step,
        checkpoints.abstract(shapes, run.replicated),
    )
    if jax.process_index() == 0:
        flat = {
            jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]
        }
        np.savez(args.out, step=step, devices=jax.device_count(), **flat)


if __name__ == "__main__":
    main()
