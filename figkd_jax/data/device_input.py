"""On-device training input for the datasets that fit in accelerator memory.

The uint8 train split of a fixed-resolution dataset (digits, cifar100, tiny_imagenet) is
uploaded once, replicated on every device (CIFAR-100: 150 MB, TinyImageNet: 1.2 GB per
device). Gathering, padding, cropping (or rotating), flipping and normalising a batch then run
inside the jitted train step, so no image crosses the host-device link during training.

The randomness is the TF pipeline's own (``figkd_jax.data.pipeline``): once per epoch the host
computes the epoch's *plan*, the example order ``epoch_order(seed, epoch)`` and the rows of
``epoch_draws(seed, epoch)`` of those examples, a few hundred kilobytes, and uploads it (for a
rotating dataset also the rotations' fixed-point coefficients, which need float64 to equal
PIL's: ``figkd_jax.data.rotation``). The pixels are then those of ``figkd_jax.data.transforms``,
the one implementation that the host stream also runs, so a batch of this path is the host
stream's batch of the same step (same examples, same crops and flips, same normalisation): a
run can switch between the two paths, resume across them, and keep its results. Replicating
the split rather than sharding it keeps every gather local: each device gathers and augments
only its own shard of the global batch.

Typical use, inside a trainer::

    dataset = DeviceDataset.create(config.dataset, seed=config.seed,
                                   global_batch_size=config.batch_size,
                                   sharding=replicated)
    plan = dataset.plan(epoch)                      # at each epoch start, on the host
    batch = batch_at(dataset.arrays, plan, step, info=dataset.info,
                     dtype="float32", sharding=batch_sharded)   # inside jit / lax.scan

``scan_train_steps`` runs several train steps in one jitted call, each on its own batch.

TensorFlow is imported only where plans are made and splits loaded, so that ``batch_at`` and
``scan_train_steps`` also run on a machine without it (e.g. a GPU benchmark on synthetic data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Sharding

from figkd_jax.data import randaugment, rotation, transforms
from figkd_jax.data.registry import DatasetInfo, RotateFlip, get_info, steps_per_epoch

# --------------------------------------------------------------------------
# Epoch plans and batches


def epoch_plan(
    seed: int,
    epoch: int,
    num_examples: int,
    global_batch_size: int,
    info: DatasetInfo | None = None,
    strong_view: bool = False,
) -> dict[str, np.ndarray]:
    """The TF pipeline's order and draws of epoch ``epoch``, cut into global batches.

    Returns ``plan_from_draws`` of {"index": int32 [S, B], "draws": float32 [S, B, K]} with
    S = num_examples // B steps per epoch: row s holds the example indices of step s of the
    epoch and their augmentation draws (``pipeline.epoch_order`` and ``pipeline.epoch_draws``;
    the remainder of the order is dropped, as in ``pipeline.train_stream``). K is
    ``pipeline.draws_per_example(info)``; ``info`` None stands for a pad-crop-flip dataset (K=3).
    With ``strong_view`` the plan also holds "strong_draws", float32 [S, B,
    randaugment.STRONG_VIEW_DRAWS] (``pipeline.strong_view_draws``, MLKD's strong view).
    """
    import tensorflow as tf

    from figkd_jax.data import pipeline

    steps = steps_per_epoch(num_examples, global_batch_size)
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    num_draws = transforms.PAD_CROP_FLIP_DRAWS if info is None else pipeline.draws_per_example(info)
    epoch_tensor = tf.constant(epoch, tf.int64)
    order = pipeline.epoch_order(seed, epoch_tensor, num_examples)[: steps * global_batch_size]
    draws = pipeline.epoch_draws(seed, epoch_tensor, num_examples, num_draws)
    index = order.numpy().astype(np.int32).reshape(steps, global_batch_size)
    draws = tf.gather(draws, order).numpy().reshape(steps, global_batch_size, -1)
    plan = plan_from_draws(info, index, draws)
    if strong_view:
        strong = pipeline.strong_view_draws(seed, epoch_tensor, num_examples)
        plan["strong_draws"] = (
            tf.gather(strong, order).numpy().reshape(steps, global_batch_size, -1)
        )
    return plan


def plan_from_draws(
    info: DatasetInfo | None, index: np.ndarray, draws: np.ndarray
) -> dict[str, np.ndarray]:
    """A plan {"index": int32 [S, B], "draws": float32 [S, B, K]} from its order and draws.

    For a rotating dataset (``RotateFlip``) the plan also holds "affine": int32 [S, B, 6], the
    fixed-point coefficients of each example's rotation (``rotation.affine_from_draws`` of draw
    column 0), computed here on the host in float64 as PIL does. NumPy only, so a benchmark can
    build a synthetic plan without TensorFlow.
    """
    plan = {"index": np.asarray(index, np.int32), "draws": np.asarray(draws, np.float32)}
    if info is not None and isinstance(info.augment, RotateFlip):
        height, width, _ = info.image_shape
        plan["affine"] = rotation.affine_from_draws(
            plan["draws"][..., 0], info.augment.degrees, height, width
        )
    return plan


def batch_at(
    arrays: dict[str, jax.Array],
    plan: dict[str, jax.Array],
    step: jax.Array | int,
    *,
    info: DatasetInfo,
    dtype: str = "float32",
    sharding: Sharding | None = None,
) -> dict[str, jax.Array]:
    """Global batch of train step ``step``, built on device; pure, for jit and lax.scan.

    Args:
      arrays: {"image": uint8 [N, H, W, C], "label": int32 [N]} (``DeviceDataset.arrays``).
      plan: the plan of epoch ``step // S`` (``epoch_plan``, S = its number of rows; with
        "affine" for a rotating dataset); the caller keeps them consistent, since a traced step
        cannot be checked.
      step: global step (int or int32 scalar, may be traced).
      info: the dataset's description (augmentation, mean, std).
      dtype: "float32" or "bfloat16", the image dtype.
      sharding: where the batch should live (the batch-sharded ``NamedSharding`` of the
        train step); each device then gathers and augments only its own examples.

    Returns:
      {"image": dtype [B, H, W, C] normalised, "label": int32 [B]}, equal to step ``step``
      of ``pipeline.train_stream`` with the same seed and global batch size; with a plan
      that has "strong_draws", also that stream's "strong_image" and "strong_draws" of
      ``strong_view=True``.
    """
    steps_per_epoch = plan["index"].shape[0]
    position = jnp.asarray(step) % steps_per_epoch
    constrain = (
        (lambda x: jax.lax.with_sharding_constraint(x, sharding))
        if sharding is not None
        else (lambda x: x)
    )
    row = {
        k: constrain(jax.lax.dynamic_index_in_dim(v, position, keepdims=False))
        for k, v in plan.items()
    }
    batch = transforms.train_batch(
        arrays["image"][row["index"]],
        arrays["label"][row["index"]],
        row["draws"],
        affine=row.get("affine"),
        strong_draws=row.get("strong_draws"),
        info=info,
        dtype=dtype,
    )
    return jax.tree.map(constrain, batch)


def finish_strong_view(
    strong_image: jax.Array, strong_draws: jax.Array, *, info: DatasetInfo, dtype: str = "float32"
) -> jax.Array:
    """MLKD's strong view from a batch's "strong_image" (uint8 [B, H, W, C], already padded,
    cropped and flipped) and "strong_draws": RandAugment + Cutout (``figkd_jax.data.randaugment``)
    then normalisation, in ``dtype``. Runs on the accelerator for both input paths."""
    params = randaugment.sample_rand_augment(strong_draws)
    augmented = randaugment.rand_augment(strong_image, params)
    return transforms.normalize(augmented, info.mean, info.std, dtype)


def _put(array: np.ndarray, sharding: Sharding) -> jax.Array:
    """A global array from the same host array in every process (multi-process safe)."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


@dataclasses.dataclass(frozen=True)
class DeviceDataset:
    """A train split held on device, with the seed and batch size that fix its plans.

    Attributes:
      arrays: {"image": uint8 [N, H, W, C], "label": int32 [N]} with ``sharding``.
      info: the dataset's description.
      seed: seed of the order and augmentation (the run's ``config.seed``).
      global_batch_size: examples per step over all devices and processes.
      sharding: where ``arrays`` and the plans live (fully replicated).
      strong_view: whether plans carry the draws of MLKD's strong view.
    """

    arrays: dict[str, jax.Array]
    info: DatasetInfo
    seed: int
    global_batch_size: int
    sharding: Sharding
    strong_view: bool = False

    @classmethod
    def create(
        cls,
        data_config,
        *,
        seed: int,
        global_batch_size: int,
        sharding: Sharding,
        strong_view: bool = False,
    ) -> DeviceDataset:
        """Loads the configured train split (``data.load_arrays``) and uploads it."""
        from figkd_jax.data import sources

        config = sources.resolve(data_config)
        info = get_info(config.name)
        transforms.fixed_resolution_spec(info)
        images, labels = sources.load_arrays(config, config.train_split)
        return cls.from_arrays(
            images,
            labels,
            info,
            seed=seed,
            global_batch_size=global_batch_size,
            sharding=sharding,
            strong_view=strong_view,
        )

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        labels: np.ndarray,
        info: DatasetInfo,
        *,
        seed: int,
        global_batch_size: int,
        sharding: Sharding,
        strong_view: bool = False,
    ) -> DeviceDataset:
        """A split given as host arrays: images uint8 [N, *info.image_shape], labels int32 [N]."""
        transforms.fixed_resolution_spec(info)
        if images.dtype != np.uint8 or images.shape[1:] != tuple(info.image_shape):
            raise ValueError(
                f"images must be uint8 [N, {', '.join(map(str, info.image_shape))}], "
                f"got {images.dtype} {list(images.shape)}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"labels must have shape [{images.shape[0]}] (one per image), "
                f"got {list(labels.shape)}"
            )
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        steps_per_epoch(len(labels), global_batch_size)  # validates the batch size
        arrays = {
            "image": _put(np.ascontiguousarray(images), sharding),
            "label": _put(np.asarray(labels, np.int32), sharding),
        }
        return cls(arrays, info, int(seed), global_batch_size, sharding, strong_view)

    @property
    def num_examples(self) -> int:
        return self.arrays["label"].shape[0]

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.num_examples, self.global_batch_size)

    def plan(self, epoch: int) -> dict[str, jax.Array]:
        """``epoch_plan`` of epoch ``epoch`` (counted from 0), uploaded with ``self.sharding``."""
        host = epoch_plan(
            self.seed,
            epoch,
            self.num_examples,
            self.global_batch_size,
            self.info,
            self.strong_view,
        )
        return {k: _put(v, self.sharding) for k, v in host.items()}


def padded_eval_batches(
    images: np.ndarray, labels: np.ndarray, global_batch_size: int
) -> dict[str, np.ndarray]:
    """An eval split as whole global batches: {"image": uint8 [K, B, H, W, C], "label": int32
    [K, B], "mask": bool [K, B]}, K = ceil(N / B); the padding is zeros with mask False."""
    num_examples = len(labels)
    num_batches = -(-num_examples // global_batch_size)
    padding = num_batches * global_batch_size - num_examples

    def pad(x, value=0):
        x = np.concatenate([x, np.full((padding, *x.shape[1:]), value, x.dtype)])
        return x.reshape(num_batches, global_batch_size, *x.shape[1:])

    return {
        "image": pad(np.asarray(images, np.uint8)),
        "label": pad(np.asarray(labels, np.int32)),
        "mask": pad(np.ones(num_examples, bool), False),
    }


# --------------------------------------------------------------------------
# Several train steps per dispatch


def scan_train_steps(
    step_fn: Callable[[Any, Any], tuple[Any, Any]],
    state: Any,
    batch_fn: Callable[[jax.Array], Any],
    num_steps: int,
) -> tuple[Any, Any]:
    """``num_steps`` train steps in one ``lax.scan``: the body of a multi-step jitted call.

    ``step_fn(state, batch) -> (state, metrics)`` is one train step; ``batch_fn(step)`` builds
    the batch of global step ``state.step`` (e.g. ``batch_at``). Returns the final state and
    the metrics of every step, stacked: each leaf gets a leading axis of ``num_steps``.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise ValueError(f"num_steps must be a Python int >= 1 (static), got {num_steps!r}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")

    def body(state, _):
        return step_fn(state, batch_fn(state.step))

    return jax.lax.scan(body, state, length=int(num_steps))
