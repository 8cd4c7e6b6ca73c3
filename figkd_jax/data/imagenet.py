"""ImageNet-1k (TFDS ``imagenet2012``) streamed from its records, one shard of files a process.

1.28 M JPEGs (140 GB) do not fit a host's memory, so unlike ``figkd_jax.data.pipeline`` the
train split is read from its TFRecord files every epoch. The stream keeps that module's
promises where a stream can:

- Sharding: process p of P reads only the train files ``p, p + P, p + 2P, ...`` of the
  prepared split (TFDS writes its records in a hash order, so every file holds every class).
- Order of epoch e: process p's files in a ``stateless_shuffle`` order of (seed, e, p),
  interleaved record by record, ``_CYCLE_FILES`` files at a time, then shuffled within
  consecutive windows of ``_SHUFFLE_WINDOW`` records by a ``stateless_shuffle`` of (seed, e, p,
  window): a pure function of (seed, epoch, process index, process count), no shuffle buffer
  state to save.
- An epoch has ``num_train // global_batch_size`` steps, as every dataset here (so the learning
  rate schedule does not depend on the process count); each process takes the first
  ``steps * global_batch_size / P`` records of its epoch order. A process whose files hold fewer
  (the files differ by a few records) continues from the start of the same order.
- Augmentation (``resized_crop_view``): torchvision's ``RandomResizedCrop(224)`` sampling
  (``augment.sample_resized_crop``) from the JPEG header's size, then only the crop window is
  decoded (``tf.image.decode_and_crop_jpeg``), resized (bilinear, antialiased where it
  shrinks), rounded to uint8 and flipped. The draws of the example at position i of process
  p's epoch e are ``stateless_uniform(fold_in(seed, 2, e, p, i))``.
- Both streams yield uint8 images, as torchvision's PIL crops are: normalisation (and the
  cast to the compute dtype) is the consumer's, inside its jitted step
  (``transforms.normalize_batch``), which moves a quarter of float32's bytes to the device and
  spends no host CPU on it.
- Strong view (MLKD, ``strong_view=True``): as the authors' ``get_imagenet_train_transform_strong``
  (Jin-Ying/Multi-Level-Logit-Distillation@77b91ec:mdistiller/dataset/imagenet.py), a second,
  independent RandomResizedCrop(224) + flip of the same JPEG (``resized_crop_view`` again, uint8,
  "strong_image"), and its RandAugment(2) + Cutout draws ("strong_draws", float32
  [randaugment.STRONG_VIEW_DRAWS]; columns 0-2, the CIFAR path's crop and flip, are unused
  here), which the accelerator applies (``device_input.finish_strong_view``) so that the host
  pays only the second crop's decode. Its draws are ``stateless_uniform(fold_in(seed, 3, e, p,
  i))``, a stream of their own: the weak view is the same with or without it.
- Resume: step k is batch ``k % S`` of epoch ``k // S``; a stream started at step k skips the
  records before it (read, not decoded), so it equals the tail of an uninterrupted stream.
  The batches depend on the process count: resume with the same number of processes.

Evaluation reads every validation image exactly once over all processes: process p takes the
p-th of P contiguous, near-equal ranges of the split (TFDS reads only the files of its range)
in fixed batches of ``global_batch_size / P``; every process yields the same number of batches,
the short ones padded, with "mask" False (image 0, label 0) on padding. Each image is decoded
whole and only its central 224x224 of the resize to shorter side 256 is computed
(``center_crop_view``), as torchvision's ``Resize(256)`` + ``CenterCrop(224)``.
"""

from figkd_jax import extras

extras.require_tensorflow()

import dataclasses
from collections.abc import Iterator

import tensorflow as tf
import tensorflow_datasets as tfds

from figkd_jax.data import augment, randaugment
from figkd_jax.data.pipeline import (
    _AUGMENT_STREAM,
    _RNG_ALG,
    _SHUFFLE_STREAM,
    _STRONG_VIEW_STREAM,
    TrainStream,
    _check_sharding,
    _flip_if,
    _output_dtype,
)
from figkd_jax.data.registry import DatasetInfo, ResizedCropFlip, get_info, steps_per_epoch
from figkd_jax.data.sources import DataConfig, check_prepared

# Files read at once, record by record: mixes the files of an epoch and keeps this many
# reads in flight (a remote data_dir needs them).
_CYCLE_FILES = 16
# Records shuffled together after interleaving; the files' hash order already mixes classes.
_SHUFFLE_WINDOW = 1024
# TFRecord read buffer per file (large sequential reads from gs://).
_READ_BUFFER_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class _Files:
    """The record files of a split: path, records to skip, records to take (TFDS's file
    instructions, so a sliced split such as ``train[:10%]`` reads only its part)."""

    paths: tuple[str, ...]
    skips: tuple[int, ...]
    takes: tuple[int, ...]

    def select(self, indices) -> "_Files":
        return _Files(*(tuple(field[i] for i in indices) for field in dataclasses.astuple(self)))

    def dataset(self, order: tf.Tensor, cycle_length: int) -> tf.data.Dataset:
        """Serialized records of the files in ``order``, interleaved one record at a time."""
        paths, skips, takes = (tf.constant(f) for f in dataclasses.astuple(self))

        def records(i):
            return (
                tf.data.TFRecordDataset(paths[i], buffer_size=_READ_BUFFER_BYTES)
                .skip(tf.cast(skips[i], tf.int64))
                .take(tf.cast(takes[i], tf.int64))
            )

        return tf.data.Dataset.from_tensor_slices(order).interleave(
            records,
            cycle_length=cycle_length,
            block_length=1,
            num_parallel_calls=cycle_length,
            deterministic=True,
        )


def _builder(config: DataConfig) -> tfds.core.DatasetBuilder:
    check_prepared(config)
    return tfds.builder(config.name, data_dir=config.data_dir)


def _split_files(builder: tfds.core.DatasetBuilder, split: str) -> _Files:
    instructions = builder.info.splits[split].file_instructions
    return _Files(
        tuple(str(f.filename) for f in instructions),
        tuple(int(f.skip) for f in instructions),
        tuple(int(f.take) for f in instructions),
    )


def _parser(builder: tfds.core.DatasetBuilder):
    """Serialized record -> {"image": JPEG bytes, "label": int32}."""
    features = builder.info.features

    def parse(serialized):
        example = features.deserialize_example(
            serialized, decoders={"image": tfds.decode.SkipDecoding()}
        )
        return {"image": example["image"], "label": tf.cast(example["label"], tf.int32)}

    return parse


def _fold(seed: tf.Tensor, *values) -> tf.Tensor:
    for value in values:
        seed = tf.random.experimental.stateless_fold_in(seed, value, alg=_RNG_ALG)
    return seed


def _shuffle_window(window: dict, seed: tf.Tensor) -> dict:
    size = tf.shape(window["image"], out_type=tf.int64)[0]
    order = tf.random.experimental.stateless_shuffle(tf.range(size), seed, alg=_RNG_ALG)
    return {key: tf.gather(value, order) for key, value in window.items()}


def train_stream(
    config: DataConfig,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int,
    process_index: int,
    process_count: int,
    num_devices: int | None,
    dtype: str,
    strong_view: bool = False,
) -> TrainStream:
    """This process's train batches from global step ``start_step`` on; see the module
    docstring. Yields {"image": uint8 [global_batch_size / P, 224, 224, 3], "label": int32};
    with ``strong_view`` also "strong_image" (uint8 [b, 224, 224, 3]) and "strong_draws"
    (float32 [b, randaugment.STRONG_VIEW_DRAWS]). ``dtype`` is only checked (the consumer
    normalises)."""
    local_batch = _check_sharding(global_batch_size, process_index, process_count, num_devices)
    _output_dtype(dtype)
    info = get_info(config.name)
    builder = _builder(config)
    all_files = _split_files(builder, config.train_split)
    if len(all_files.paths) < process_count:
        raise ValueError(
            f"{config.name} split {config.train_split!r} has {len(all_files.paths)} record "
            f"files, fewer than the {process_count} processes that each read their own: "
            f"prepare it again with more shards (figkd_jax.data.prepare --num_shards)"
        )
    files = all_files.select(range(process_index, len(all_files.paths), process_count))
    num_examples = builder.info.splits[config.train_split].num_examples
    steps = steps_per_epoch(num_examples, global_batch_size)
    epoch_length = steps * local_batch
    start_epoch, start_offset = divmod(start_step, steps)
    base_seed = tf.constant([seed, 0], tf.int64)
    parse = _parser(builder)
    crop = _crop_fn(info, strong_view)
    cycle_length = min(_CYCLE_FILES, len(files.paths))

    def epoch_examples(epoch):
        order_seed = _fold(base_seed, _SHUFFLE_STREAM, epoch, process_index)
        file_order = tf.random.experimental.stateless_shuffle(
            tf.range(len(files.paths), dtype=tf.int64), order_seed, alg=_RNG_ALG
        )
        windows = (
            files.dataset(file_order, cycle_length)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(_SHUFFLE_WINDOW)
            .enumerate()
            .map(
                lambda i, window: _shuffle_window(window, _fold(order_seed, i)),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            .unbatch()
        )
        draw_seed = _fold(base_seed, _AUGMENT_STREAM, epoch, process_index)
        strong_seed = _fold(base_seed, _STRONG_VIEW_STREAM, epoch, process_index)
        first = tf.where(epoch == start_epoch, start_offset * local_batch, 0)
        return (
            windows.repeat()
            .take(epoch_length)
            .enumerate()
            .skip(tf.cast(first, tf.int64))
            .map(lambda i, example: (example, _fold(draw_seed, i), _fold(strong_seed, i)))
        )

    batches = (
        tf.data.Dataset.counter(start_epoch, dtype=tf.int64)
        .flat_map(epoch_examples)
        .map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(local_batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    return TrainStream(batches, num_examples, steps)


def _crop_fn(info: DatasetInfo, strong_view: bool):
    num_draws = augment.RESIZED_CROP_FLIP_DRAWS

    def crop(example, draw_seed, strong_seed):
        draws = tf.random.stateless_uniform([num_draws], draw_seed, alg=_RNG_ALG)
        out = {
            "image": resized_crop_view(example["image"], draws, info.augment),
            "label": example["label"],
        }
        if strong_view:
            strong = tf.random.stateless_uniform(
                [num_draws + randaugment.STRONG_VIEW_DRAWS], strong_seed, alg=_RNG_ALG
            )
            # uint8 as torchvision's crop of a PIL image, which RandAugment then transforms.
            out["strong_image"] = resized_crop_view(
                example["image"], strong[:num_draws], info.augment
            )
            out["strong_draws"] = strong[num_draws:]
        return out

    return crop


def resized_crop_view(jpeg: tf.Tensor, draws: tf.Tensor, spec: ResizedCropFlip) -> tf.Tensor:
    """torchvision's ``RandomResizedCrop`` + ``RandomHorizontalFlip`` of one JPEG by ``draws``
    [augment.RESIZED_CROP_FLIP_DRAWS]: uint8 [crop_size, crop_size, 3].

    Only the crop window is decoded. The resize is TensorFlow's bilinear, antialiased
    (``augment.resized_crop``) where the window is larger than the output on either side; a
    window that is only enlarged takes the plain bilinear resize, which computes the same
    triangle weights (antialiasing widens them only when shrinking) at a fraction of the cost,
    up to float32 rounding of the sample positions (measured below 0.01 grey levels, bounded
    in tests/test_imagenet_data.py). The result is rounded to uint8, as PIL's resize is.
    """
    shape = tf.image.extract_jpeg_shape(jpeg)
    top, left, height, width = augment.sample_resized_crop(
        draws, shape[0], shape[1], spec.scale, spec.ratio
    )
    window = tf.image.decode_and_crop_jpeg(jpeg, tf.stack([top, left, height, width]), channels=3)
    size = spec.crop_size
    image = tf.cond(
        (height <= size) & (width <= size),
        lambda: tf.image.resize(window, [size, size], method="bilinear", antialias=False),
        lambda: augment.resized_crop(window, 0, 0, height, width, size),
    )
    image = _flip_if(_round_to_uint8(image), tf.logical_and(draws[-1] < 0.5, spec.flip))
    image.set_shape([size, size, 3])
    return image


def center_crop_view(image: tf.Tensor, spec: ResizedCropFlip) -> tf.Tensor:
    """torchvision's ``Resize(eval_resize)`` + ``CenterCrop(crop_size)`` of a uint8 image [H, W,
    3]: uint8 [crop_size, crop_size, 3].

    Only the crop's pixels of the resize are computed: TensorFlow's antialiased bilinear
    resize with the crop's offset as its translation, which is ``augment.resize_center_crop``
    up to float32 rounding of the sample positions (measured below 0.01 grey levels, bounded
    in tests/test_imagenet_data.py) at about two thirds of its cost; then rounded to uint8, as PIL's
    resize is.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    new_height, new_width, top, left = augment.center_crop_geometry(
        height, width, spec.eval_resize, spec.crop_size
    )
    new_size = tf.cast(tf.stack([new_height, new_width]), tf.float32)
    crop = tf.raw_ops.ScaleAndTranslate(
        images=image[None],
        size=[spec.crop_size, spec.crop_size],
        scale=new_size / tf.cast(tf.stack([height, width]), tf.float32),
        translation=-tf.cast(tf.stack([top, left]), tf.float32),
        kernel_type="triangle",
        antialias=True,
    )[0]
    crop = _round_to_uint8(crop)
    crop.set_shape([spec.crop_size, spec.crop_size, 3])
    return crop


def _round_to_uint8(image: tf.Tensor) -> tf.Tensor:
    return tf.saturate_cast(tf.round(image), tf.uint8)


class EvalStream:
    """Re-iterable eval batches of this process: its range of the split, padded (see the
    module docstring). ``num_examples``: the whole split; ``len()``: batches per pass, the
    same on every process."""

    def __init__(self, config: DataConfig, global_batch_size, process_index, process_count, dtype):
        """``dtype`` is only checked: the batches' images are uint8 (the consumer
        normalises)."""
        self._local_batch = _check_sharding(global_batch_size, process_index, process_count)
        _output_dtype(dtype)
        self._info = get_info(config.name)
        self._builder = _builder(config)
        self.num_examples = self._builder.info.splits[config.eval_split].num_examples
        self._range = tfds.even_splits(config.eval_split, n=process_count)[process_index]
        largest_share = -(-self.num_examples // process_count)
        self._batches = -(-largest_share // self._local_batch)

    def __len__(self) -> int:
        return self._batches

    def __iter__(self) -> Iterator[dict]:
        spec = self._info.augment

        def prepare(example):
            return {
                "image": center_crop_view(augment.decode_image(example["image"]), spec),
                "label": tf.cast(example["label"], tf.int32),
                "mask": tf.constant(True),
            }

        padding = {
            "image": tf.zeros([*self._info.image_shape], tf.uint8),
            "label": tf.constant(0, tf.int32),
            "mask": tf.constant(False),
        }
        examples = self._builder.as_dataset(
            split=self._range,
            decoders={"image": tfds.decode.SkipDecoding()},
            shuffle_files=False,
        )
        batches = (
            examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .concatenate(tf.data.Dataset.from_tensors(padding).repeat())
            .take(self._batches * self._local_batch)
            .batch(self._local_batch)
        )
        return batches.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
