"""Evaluates a stand-in classifier over a prepared imagenet2012 validation split in one process
of a distributed runtime (or alone) and writes the global counts, as the trainer's HostEval
assembles them: each process's padded batch is its shard of one global batch.

The stand-in "classifier" is right where the image's mean pixel is its label's gray
(tests/test_imagenet_data.py, up to JPEG rounding): on every real image, paired with its
label. It sees the images as HostEval's step does, normalised on the device
(``transforms.normalize_batch``). Usage:

  python tests/imagenet_eval_worker.py DATA_DIR OUT.json
      [--coordinator HOST:PORT --num_processes P --process_id I]
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import worker_cli


def main():
    args = worker_cli.parse("data_dir", "out")

    import jax
    import jax.numpy as jnp
    import ml_collections
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    worker_cli.join_runtime(args)
    from figkd_jax import data
    from figkd_jax.data import transforms
    from figkd_jax.trainer.feeds import to_global
    from tests.test_imagenet_data import _gray

    info = data.get_info("imagenet2012")
    grays = jnp.asarray([_gray(label) for label in range(info.num_classes)], jnp.float32)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = NamedSharding(mesh, P("data"))

    @jax.jit
    def counts(batch):
        batch = transforms.normalize_batch(batch, info)
        pixels = batch["image"] * jnp.asarray(info.std) + jnp.asarray(info.mean)
        level = pixels.mean(axis=(1, 2, 3)) * 255
        right = jnp.abs(level - grays[batch["label"]]) < 3
        mask = batch["mask"]
        return {
            "count": mask.sum(),
            "correct": (mask & right).sum(),
            "label_sum": jnp.where(mask, batch["label"], 0).sum(),
        }

    config = ml_collections.ConfigDict({"name": "imagenet2012", "data_dir": args.data_dir})
    totals = {"count": 0, "correct": 0, "label_sum": 0, "batches": 0}
    for local in data.eval_stream(
        config,
        global_batch_size=4,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    ):
        sums = jax.device_get(counts(to_global(local, sharded)))
        for key, value in sums.items():
            totals[key] += int(value)
        totals["batches"] += 1
    if jax.process_index() == 0:
        with open(args.out, "w") as f:
            json.dump(totals, f)


if __name__ == "__main__":
    main()
