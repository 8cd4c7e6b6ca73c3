"""Deterministic, index-based train and eval streams.

A split lives in host memory, so an epoch is just an order of indices and a table of random
draws, both pure functions of (seed, epoch):

- order of epoch e: ``stateless_shuffle(range(N), seed=fold_in([seed, 1], e))``;
- draws of epoch e: ``stateless_uniform([N, K], seed=fold_in([seed, 2], e))``, whose row i
  is all the randomness of example i's augmentation in epoch e

(TF stateless ops, Philox, int64 seeds). The augmentation of an example thus depends only on
(seed, epoch, example index), whatever the batch size, process count or start step. Step t
of the stream is batch t % S of epoch t // S, with S = N // global_batch_size steps per epoch:
the first S * global_batch_size indices of the epoch's order, cut into consecutive global
batches; the remainder (``N % global_batch_size`` examples) is dropped, and since the order
changes every epoch, different examples are dropped each epoch. The reference's loader keeps
that remainder as a last, smaller batch instead (see `registry.steps_per_epoch`).
Starting at step k therefore reads no skipped data, and a resumed stream equals the tail of
an uninterrupted one. Process p of P yields positions [p * B/P, (p+1) * B/P) of every global
batch B, so the global batch does not depend on the number of processes.

Fixed-resolution datasets: tf.data only gathers each batch's uint8 images, labels and draws
from the split; their augmentation and normalisation are ``figkd_jax.data.transforms``, jitted
on the host CPU (the functions the on-device path runs inside the step). The fine-grained
ones are decoded once into host memory (``figkd_jax.data.decoded``): each example's draws
give its crop's sampling grid, and a batch of crops is one compiled gather-and-interpolate;
with ``decode_once=False`` they are decoded, cropped and resized one example at a time, every
epoch. All tf.data maps run with ``deterministic=True``, followed by prefetching. Both
fine-grained paths use the same draws for the same crops and flips.

ImageNet (``imagenet2012``), too large for host memory, is streamed from its records instead,
each process reading its own files (``figkd_jax.data.imagenet``).
"""

from figkd_jax import extras

extras.require_tensorflow()

import contextlib
import functools
from collections.abc import Callable, Iterator

import jax
import ml_dtypes
import numpy as np
import tensorflow as tf

from figkd_jax.data import augment, decoded, randaugment, rotation, transforms
from figkd_jax.data.registry import DatasetInfo, PadCropFlip, RotateFlip, get_info, steps_per_epoch
from figkd_jax.data.sources import Split, load_split, resolve

_SHUFFLE_STREAM = 1
_AUGMENT_STREAM = 2
_STRONG_VIEW_STREAM = 3
_RNG_ALG = "philox"  # fixed, rather than TF's per-device "auto_select"
_INT64_MAX = np.iinfo(np.int64).max
_DTYPES = {"float32": (tf.float32, np.float32), "bfloat16": (tf.bfloat16, ml_dtypes.bfloat16)}

# A full TensorFlow must leave the accelerators to JAX. RuntimeError: TF was initialised
# before this import, so it is too late to decide.
with contextlib.suppress(RuntimeError):
    tf.config.set_visible_devices([], "GPU")


def _epoch_seed(seed: int, stream: int, epoch: tf.Tensor) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(
        tf.constant([seed, stream], tf.int64), epoch, alg=_RNG_ALG
    )


def epoch_order(seed: int, epoch: tf.Tensor, num_examples: int) -> tf.Tensor:
    """The permutation int64 [num_examples] of epoch ``epoch`` (an int64 scalar)."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int64),
        _epoch_seed(seed, _SHUFFLE_STREAM, epoch),
        alg=_RNG_ALG,
    )


def epoch_draws(seed: int, epoch: tf.Tensor, num_examples: int, num_draws: int) -> tf.Tensor:
    """Uniform [0, 1) float32 [num_examples, num_draws]; row i drives example i's augmentation."""
    return tf.random.stateless_uniform(
        [num_examples, num_draws], _epoch_seed(seed, _AUGMENT_STREAM, epoch), alg=_RNG_ALG
    )


def strong_view_draws(seed: int, epoch: tf.Tensor, num_examples: int) -> tf.Tensor:
    """Uniform [0, 1) float32 [num_examples, randaugment.STRONG_VIEW_DRAWS]: row i drives
    example i's strong view (MLKD) in epoch ``epoch``. A stream of its own, so the weak view
    of a batch is the same with or without a strong view."""
    return tf.random.stateless_uniform(
        [num_examples, randaugment.STRONG_VIEW_DRAWS],
        _epoch_seed(seed, _STRONG_VIEW_STREAM, epoch),
        alg=_RNG_ALG,
    )


def draws_per_example(info: DatasetInfo) -> int:
    """Columns of ``epoch_draws`` that the train augmentation of dataset ``info`` reads."""
    if isinstance(info.augment, PadCropFlip):
        return transforms.PAD_CROP_FLIP_DRAWS
    if isinstance(info.augment, RotateFlip):
        return rotation.ROTATE_FLIP_DRAWS
    return augment.RESIZED_CROP_FLIP_DRAWS


def _check_sharding(global_batch_size, process_index, process_count, num_devices=None) -> int:
    """Validate the batch layout and return the per-process batch size."""
    if process_count < 1:
        raise ValueError(f"process_count must be >= 1, got {process_count}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, {process_count - 1}], got {process_index}")
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    if global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the {process_count} "
            f"processes; use a multiple of {process_count}"
        )
    if num_devices is not None and global_batch_size % num_devices:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the {num_devices} "
            f"devices; use a multiple of {num_devices}"
        )
    return global_batch_size // process_count


def _output_dtype(dtype: str):
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype][0]


def _flip_if(image: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    return tf.where(flip, tf.reverse(image, axis=[1]), image)


class TrainStream(Iterator[dict]):
    """Infinite iterator of train batches {"image": [b, H, W, C], "label": int32 [b]}.

    Attributes:
      num_examples: size of the train split as loaded.
      steps_per_epoch: global batches per epoch.
    """

    def __init__(
        self,
        dataset: tf.data.Dataset,
        num_examples: int,
        steps: int,
        finish: Callable[[dict], dict] | None = None,
    ):
        """``finish`` turns each batch of ``dataset`` into a train batch (default: as is)."""
        self.num_examples = num_examples
        self.steps_per_epoch = steps
        self._iterator = dataset.as_numpy_iterator()
        self._finish = finish or (lambda batch: batch)

    def __next__(self) -> dict:
        return self._finish(next(self._iterator))


def train_stream(
    data_config,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_devices: int | None = None,
    dtype: str = "float32",
    strong_view: bool = False,
) -> TrainStream:
    """Augmented train batches of this process, from global step ``start_step`` on, forever.

    Yields {"image": [global_batch_size // process_count, H, W, C] float32 (ml_dtypes bfloat16
    when dtype="bfloat16"), normalised; "label": int32 [same]}; imagenet2012's images are uint8
    instead, which the step normalises (``transforms.normalize_batch``). See the module
    docstring for the order and the randomness; ``data_config`` is described in
    ``figkd_jax.data.sources``.

    With ``strong_view`` (MLKD; fixed-resolution datasets here, imagenet2012 in
    ``imagenet.train_stream``), batches also hold the start of each example's strong view:
    "strong_image", uint8 [b, H, W, C], the example padded, cropped and flipped by its own
    draws, and "strong_draws", float32 [b, randaugment.STRONG_VIEW_DRAWS]
    (``strong_view_draws``); the accelerator finishes the view
    (``device_input.finish_strong_view``).
    """
    local_batch = _check_sharding(global_batch_size, process_index, process_count, num_devices)
    out_dtype = _output_dtype(dtype)
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed <= _INT64_MAX:
        raise ValueError(f"seed must be an int in [0, 2**63 - 1], got {seed!r}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    config = resolve(data_config)
    info = get_info(config.name)
    if info.streamed:
        from figkd_jax.data import imagenet  # imports this module

        return imagenet.train_stream(
            config,
            global_batch_size=global_batch_size,
            seed=seed,
            start_step=start_step,
            process_index=process_index,
            process_count=process_count,
            num_devices=num_devices,
            dtype=dtype,
            strong_view=strong_view,
        )
    if strong_view and not isinstance(info.augment, PadCropFlip):
        raise ValueError(
            f"a strong view (method mlkd) needs a fixed-resolution pad-crop-flip dataset "
            f"(cifar100) or the streamed imagenet2012, not {info.name}"
        )
    split = load_split(config, config.train_split)
    num_examples = len(split.labels)
    steps = steps_per_epoch(num_examples, global_batch_size)
    start_epoch, start_offset = divmod(start_step, steps)
    first_position = process_index * local_batch
    seed = int(seed)
    num_draws = draws_per_example(info)

    def epoch_elements(epoch):
        order = epoch_order(seed, epoch, num_examples)[: steps * global_batch_size]
        batches = tf.reshape(order, [steps, global_batch_size])
        mine = batches[:, first_position : first_position + local_batch]
        first_step = tf.where(epoch == start_epoch, start_offset, 0)
        indices = tf.reshape(mine[first_step:], [-1])
        draws = tf.gather(epoch_draws(seed, epoch, num_examples, num_draws), indices)
        elements = {"index": indices, "draws": draws}
        if strong_view:
            elements["strong_draws"] = tf.gather(
                strong_view_draws(seed, epoch, num_examples), indices
            )
        return tf.data.Dataset.from_tensor_slices(elements)

    elements = tf.data.Dataset.counter(start_epoch, dtype=tf.int64).flat_map(epoch_elements)
    finish = None
    if info.fixed_resolution:
        batches = elements.batch(local_batch, drop_remainder=True).map(
            _gather_batch_fn(split, info),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        finish = functools.partial(_on_host_cpu, _augment_gathered, info=info, dtype=dtype)
    elif config.decode_once:
        batches = _decoded_crop_batches(elements, split, config, info, local_batch, out_dtype)
    else:
        batches = elements.map(
            _resized_crop_example_fn(split, info, out_dtype),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).batch(local_batch, drop_remainder=True)
    return TrainStream(batches.prefetch(tf.data.AUTOTUNE), num_examples, steps, finish)


def _gather_batch_fn(split: Split, info: DatasetInfo):
    """A batch of elements -> its uint8 images ("source"), labels and draws; for a rotating
    dataset also the rotations' fixed-point coefficients ("affine"), computed in float64 on
    the host as PIL does (``rotation``), in tf.data's threads."""
    images, labels = tf.constant(split.images), tf.constant(split.labels)
    spec, (height, width, _) = info.augment, info.image_shape

    def gather_batch(elements):
        out = {
            "source": tf.gather(images, elements["index"]),
            "label": tf.gather(labels, elements["index"]),
            "draws": elements["draws"],
        }
        if isinstance(spec, RotateFlip):
            out["affine"] = tf.numpy_function(
                lambda angle_draws: rotation.affine_from_draws(
                    angle_draws, spec.degrees, height, width
                ),
                [elements["draws"][:, 0]],
                tf.int32,
                stateful=False,
            )
            out["affine"].set_shape([elements["draws"].shape[0], 6])
        if "strong_draws" in elements:
            out["strong_draws"] = elements["strong_draws"]
        return out

    return gather_batch


def _on_host_cpu(fn, batch: dict, **static) -> dict:
    """``fn(batch, **static)`` jitted on the host CPU whatever the default backend: NumPy in,
    NumPy out."""
    cpu = jax.local_devices(backend="cpu")[0]
    return jax.device_get(fn(jax.device_put(batch, cpu), **static))


# Module-level jitted functions: every stream of a dataset and dtype shares one compilation.
@functools.partial(jax.jit, static_argnames=("info", "dtype"))
def _augment_gathered(gathered: dict, *, info: DatasetInfo, dtype: str) -> dict:
    """``transforms.train_batch`` of a batch from ``_gather_batch_fn``."""
    return transforms.train_batch(
        gathered["source"],
        gathered["label"],
        gathered["draws"],
        affine=gathered.get("affine"),
        strong_draws=gathered.get("strong_draws"),
        info=info,
        dtype=dtype,
    )


def _resized_crop_example_fn(split: Split, info: DatasetInfo, out_dtype):
    images, labels = tf.constant(split.images), tf.constant(split.labels)
    spec = info.augment

    def augment_example(element):
        image = augment.decode_image(tf.gather(images, element["index"]))
        shape = tf.shape(image)
        box = augment.sample_resized_crop(
            element["draws"], shape[0], shape[1], spec.scale, spec.ratio
        )
        image = augment.resized_crop(image, *box, spec.crop_size)
        image = _flip_if(image, tf.logical_and(element["draws"][-1] < 0.5, spec.flip))
        return {
            "image": tf.cast(augment.normalize(image, info.mean, info.std), out_dtype),
            "label": tf.gather(labels, element["index"]),
        }

    return augment_example


def _decoded_crop_batches(
    elements, loaded: Split, config, info: DatasetInfo, local_batch: int, out_dtype
):
    """Train batches cropped from the decoded split (``figkd_jax.data.decoded``).

    Per example, the draws give the crop's sampling grid on the canvas; per batch, one
    compiled call gathers, interpolates and normalises.
    """
    split = decoded.decoded_train_split(loaded, config.cache_size)
    spec = info.augment
    scale, shift = transforms.normalization(info.mean, info.std)

    def grid(element):
        size = tf.gather(split.sizes, element["index"])
        rows, cols = decoded.sample_grid(element["draws"], size, spec, config.cache_size)
        return {"index": tf.cast(element["index"], tf.int32), "rows": rows, "cols": cols}

    def crop_batch(grids):
        images = decoded.bilinear_crops(
            split.canvases, grids["index"], grids["rows"], grids["cols"], scale, shift, out_dtype
        )
        return {"image": images, "label": tf.gather(split.labels, grids["index"])}

    return (
        elements.map(grid, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(local_batch, drop_remainder=True)
        .map(crop_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    )


# A gathered eval batch with its uint8 images normalised and its padding's images 0.
_normalize_eval_batch = jax.jit(transforms.normalize_batch, static_argnames=("info", "dtype"))


class EvalStream:
    """Re-iterable eval batches: each pass yields every example of the split exactly once.

    Batches have the fixed shape [global_batch_size // process_count, ...] so a jitted eval
    step never recompiles: the last global batch is padded, and "mask" (bool) is False on
    padding, whose "image" is 0 and "label" 0. Examples come in split order; global batch j
    holds positions [j * B, (j + 1) * B), of which process p takes its slice as in training.

    Attributes:
      num_examples: size of the eval split.
    """

    def __init__(self, data_config, global_batch_size, process_index, process_count, dtype):
        self._local_batch = _check_sharding(global_batch_size, process_index, process_count)
        self._out_dtype = _output_dtype(dtype)
        config = resolve(data_config)
        self._info = get_info(config.name)
        split = load_split(config, config.eval_split)
        # Decoded once, the fine-grained images are uint8 crops, evaluated as fixed-size ones.
        self._decoded = not self._info.fixed_resolution and config.decode_once
        self._images = (
            decoded.decoded_eval_images(split, self._info.augment)
            if self._decoded
            else tf.constant(split.images)
        )
        self._labels = tf.constant(split.labels)
        self._dtype = dtype
        self.num_examples = len(split.labels)
        self._global_batch = global_batch_size
        self._first_position = process_index * self._local_batch

    def __len__(self) -> int:
        """Batches per pass."""
        return -(-self.num_examples // self._global_batch)

    def __iter__(self) -> Iterator[dict]:
        positions = tf.reshape(tf.range(len(self) * self._global_batch), [len(self), -1])
        positions = tf.reshape(
            positions[:, self._first_position : self._first_position + self._local_batch], [-1]
        )
        elements = tf.data.Dataset.from_tensor_slices(
            {
                "index": tf.minimum(positions, self.num_examples - 1),
                "mask": positions < self.num_examples,
            }
        )
        if self._decoded:
            batches = elements.batch(self._local_batch).map(
                self._decoded_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        elif self._info.fixed_resolution:
            batches = elements.batch(self._local_batch).map(
                self._gather_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
            gathered = batches.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
            return (
                _on_host_cpu(_normalize_eval_batch, batch, info=self._info, dtype=self._dtype)
                for batch in gathered
            )
        else:
            batches = elements.map(
                self._resize_crop_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            ).batch(self._local_batch)
        return batches.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()

    def _gather_batch(self, elements):
        mask = elements["mask"]
        return {
            "image": tf.gather(self._images, elements["index"]),
            "label": tf.where(mask, tf.gather(self._labels, elements["index"]), 0),
            "mask": mask,
        }

    def _decoded_batch(self, elements):
        info = self._info
        image = decoded.normalized_images(
            self._images,
            elements["index"],
            elements["mask"],
            *transforms.normalization(info.mean, info.std),
            self._out_dtype,
        )
        label = tf.where(elements["mask"], tf.gather(self._labels, elements["index"]), 0)
        return {"image": image, "label": label, "mask": elements["mask"]}

    def _resize_crop_example(self, element):
        spec = self._info.augment
        image = augment.decode_image(tf.gather(self._images, element["index"]))
        image = augment.resize_center_crop(image, spec.eval_resize, spec.crop_size)
        image.set_shape([spec.crop_size, spec.crop_size, 3])
        return self._finish(image, element["index"], element["mask"])

    def _finish(self, image, index, mask):
        """Normalise, then blank padding: image [(B,) H, W, C], index and mask [(B,)]."""
        image = augment.normalize(image, self._info.mean, self._info.std)
        valid = tf.reshape(mask, tf.concat([tf.shape(mask), [1, 1, 1]], axis=0))
        return {
            "image": tf.cast(tf.where(valid, image, 0.0), self._out_dtype),
            "label": tf.where(mask, tf.gather(self._labels, index), 0),
            "mask": mask,
        }


def eval_stream(
    data_config,
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    dtype: str = "float32",
) -> EvalStream:
    """This process's share of the eval split, padded to fixed batches; see ``EvalStream``
    (for a streamed dataset, ``figkd_jax.data.imagenet.EvalStream``, whose images are uint8:
    ``transforms.normalize_batch`` normalises them in the step)."""
    config = resolve(data_config)
    if get_info(config.name).streamed:
        from figkd_jax.data import imagenet  # imports this module

        return imagenet.EvalStream(config, global_batch_size, process_index, process_count, dtype)
    return EvalStream(data_config, global_batch_size, process_index, process_count, dtype)
