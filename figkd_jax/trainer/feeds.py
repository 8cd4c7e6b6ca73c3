"""Feeding the steps: train input and evaluation, on the host or on the device.

`HostInput` and `HostEval` run one step per batch of the TensorFlow pipeline
(`figkd_jax.data`); `DeviceInput` and `DeviceEval` upload the split once and build every batch
inside the jitted call (`figkd_jax.data.device_input`), several steps per dispatch. Both pairs see
the same batches for the same seed and step, so a run can switch between them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from figkd_jax import data
from figkd_jax.data import device_input, transforms
from figkd_jax.trainer import methods
from figkd_jax.trainer.run_setup import Run
from figkd_jax.trainer.steps import DATA_AXIS, device_steps, eval_step


def to_global(local_batch: dict[str, np.ndarray], sharding) -> dict[str, jax.Array]:
    """A global batch from this process's shard of it."""
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }


class HostInput:
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
            strong_view=methods.get(config.method.name).needs_strong_view,
        )
        info, dtype = run.info, config.dtype
        # A stream may yield uint8 images (ImageNet's): normalised here, on the device.
        self._step = jax.jit(
            lambda state, batch, teacher_vars: one_step(
                state, transforms.normalize_batch(batch, info, dtype), teacher_vars
            ),
            in_shardings=(run.replicated, run.batch_sharded, run.replicated),
            out_shardings=(run.replicated, run.replicated),
            donate_argnums=(0,),
        )

    def __call__(self, state, step: int, limit: int):
        """(state, metrics, number of steps run) after one step."""
        del step, limit
        batch = to_global(next(self._stream), self._batch_sharding)
        state, metrics = self._step(state, batch, self._teacher_vars)
        return state, metrics, 1


class DeviceInput:
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
            strong_view=methods.get(config.method.name).needs_strong_view,
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
        """(state, metrics [num_steps], num_steps) after the steps up to `limit`."""
        epoch, position = divmod(step, self._steps_per_epoch)
        if epoch != self._plan_epoch:
            self._plan, self._plan_epoch = self._dataset.plan(epoch), epoch
        num_steps = min(self._block, self._steps_per_epoch - position, limit - step)
        state, metrics = self._steps(
            state, self._dataset.arrays, self._plan, self._teacher_vars, num_steps
        )
        return state, metrics, num_steps


class HostEval:
    """Sums of eval_step over the eval split, one dispatch per batch of the TF pipeline."""

    def __init__(self, run: Run):
        self._run = run
        info, dtype = run.info, run.config.dtype
        self._step = jax.jit(
            lambda v, b, t, model, teacher: eval_step(
                v, transforms.normalize_batch(b, info, dtype), t, model=model, teacher=teacher
            ),
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
            batch = to_global(local, self._run.batch_sharded)
            sums = self._step(variables, batch, teacher_vars, model, teacher)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        return totals


class DeviceEval:
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
                image = transforms.normalize(batch["image"], info.mean, info.std, config.dtype)
                batch = {**batch, "image": image}
                return carry, eval_step(
                    variables, batch, teacher_vars, model=model, teacher=teacher
                )

            _, per_batch = jax.lax.scan(body, None, batches)
            return jax.tree.map(lambda x: jnp.sum(x, axis=0), per_batch)

        self._sums = jax.jit(sums, static_argnums=(3, 4), out_shardings=run.replicated)

    def __call__(self, variables, teacher_vars, model, teacher) -> dict[str, jax.Array]:
        return self._sums(variables, self._batches, teacher_vars, model, teacher)


def eval_means(totals: dict[str, jax.Array]) -> dict[str, float]:
    """Per-example means from eval sums (their "count" entry is the number of examples)."""
    totals = jax.device_get(totals)
    count = float(totals.pop("count"))
    return {k: float(v) / count for k, v in totals.items()}


def split_logits(
    model, variables, data_config, split: str, *, batch_size: int, run: Run | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Logits float32 [N, C] and labels [N] of `model` on every example of `split`, in order.

    Evaluation preprocessing (no augmentation). With `run`, the batches are sharded over its
    mesh (every process reads its share) and every process gets all the logits; without, one
    process on the default device.
    """
    config = ml_collections.ConfigDict(data_config.to_dict())
    config.eval_split = split
    process_index, process_count = (jax.process_index(), jax.process_count()) if run else (0, 1)
    info = data.get_info(config.name)
    apply = lambda v, images: model.apply(
        v, transforms.normalized_images(images, info), train=False
    ).astype(jnp.float32)
    if run is not None:
        apply = jax.jit(
            apply,
            in_shardings=(run.replicated, run.batch_sharded),
            out_shardings=run.replicated,
        )
        gather = jax.jit(lambda x: x, out_shardings=run.replicated)
    else:
        apply, gather = jax.jit(apply), lambda x: x
    logits, labels = [], []
    for local in data.eval_stream(
        config,
        global_batch_size=batch_size,
        process_index=process_index,
        process_count=process_count,
    ):
        if run is not None:
            batch = to_global(local, run.batch_sharded)
        else:
            batch = {k: jnp.asarray(v) for k, v in local.items()}
        mask = np.asarray(gather(batch["mask"]))
        logits.append(np.asarray(apply(variables, batch["image"]))[mask])
        labels.append(np.asarray(gather(batch["label"]))[mask])
    return np.concatenate(logits), np.concatenate(labels)
