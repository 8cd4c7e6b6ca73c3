"""Where a split's examples come from: TFDS records or the embedded digits, held in host memory.

The data config is any attribute object (an ``ml_collections.ConfigDict`` in the launcher):

- ``name``: registry name (``names()``), required.
- ``data_dir``: TFDS data directory; None = TFDS default (``$TFDS_DATA_DIR`` or
  ``~/tensorflow_datasets``). On an object store (``gs://...``) each prepared dataset is read
  through a local mirror (`mirror_dir`), copied through ``figkd_jax.io.storage``.
- ``manual_dir``: where manually downloaded archives are; None = ``<data_dir>/downloads/manual``.
- ``train_split`` / ``eval_split``: TFDS split strings (``"train[:90%]"`` works); None = the
  dataset's defaults (``get_info(name).train_split`` / ``.eval_split``).
- ``decode_once`` (fine-grained datasets): decode every image once into host memory and crop
  from there (``figkd_jax.data.decoded``); False decodes the JPEGs every epoch, the exact
  torchvision pixels at about a fifth of the speed. None = True.
- ``cache_size``: side in pixels of the square canvas a train image is decoded into when
  ``decode_once``; None = 320 (0.31 MB per image).

Missing fields count as None, so ``ConfigDict(dict(name="cifar100"))`` is a valid config.
"""

from figkd_jax import extras

extras.require_tensorflow()

import dataclasses
import functools
import os

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from ml_collections import config_dict

import figkd_jax.data.builders  # noqa: F401  (registers our builders with TFDS)
from figkd_jax.data import digits
from figkd_jax.data.registry import SOURCES, DatasetInfo, get_info
from figkd_jax.io import storage

_LOAD_BATCH = 1024


class DatasetNotPreparedError(FileNotFoundError):
    """The dataset's records are not in the data dir; the message says how to make them."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The fields of a data config with its defaults filled in (hashable: a cache key)."""

    name: str
    data_dir: str | None
    manual_dir: str | None
    train_split: str
    eval_split: str
    decode_once: bool = True
    cache_size: int = 320


def default_data_config(name: str) -> ml_collections.ConfigDict:
    """A launcher config block for dataset ``name`` with every field at its default.

    The optional fields are string placeholders (None until set), so command-line overrides
    such as ``--config.data.data_dir=/data/tfds`` work.
    """
    get_info(name)
    optional = {
        "data_dir": str,
        "manual_dir": str,
        "train_split": str,
        "eval_split": str,
        "decode_once": bool,
        "cache_size": int,
    }
    return ml_collections.ConfigDict(
        {"name": name} | {field: config_dict.placeholder(kind) for field, kind in optional.items()}
    )


def resolve(data_config) -> DataConfig:
    """Read the fields of ``data_config`` and fill in defaults."""
    name = getattr(data_config, "name", None)
    if name is None:
        raise ValueError("data_config.name is required (one of digits, cifar100, ...)")
    info = get_info(name)
    data_dir = getattr(data_config, "data_dir", None)
    manual_dir = getattr(data_config, "manual_dir", None)
    decode_once = getattr(data_config, "decode_once", None)
    decode_once = DataConfig.decode_once if decode_once is None else decode_once
    if not isinstance(decode_once, (bool, np.bool_)):
        raise ValueError(f"data_config.decode_once must be True or False, got {decode_once!r}")
    cache_size = getattr(data_config, "cache_size", None)
    cache_size = DataConfig.cache_size if cache_size is None else cache_size
    if isinstance(cache_size, bool) or not isinstance(cache_size, (int, np.integer)):
        raise ValueError(f"data_config.cache_size must be an int >= 1, got {cache_size!r}")
    if cache_size < 1:
        raise ValueError(f"data_config.cache_size must be an int >= 1, got {cache_size}")
    return DataConfig(
        name=name,
        # Through `storage.path`: a URL with a typo (gs:/bucket) fails here, not as a local
        # directory named "gs:".
        data_dir=str(storage.path(data_dir)) if data_dir is not None else None,
        manual_dir=str(storage.path(manual_dir)) if manual_dir is not None else None,
        train_split=getattr(data_config, "train_split", None) or info.train_split,
        eval_split=getattr(data_config, "eval_split", None) or info.eval_split,
        decode_once=bool(decode_once),
        cache_size=int(cache_size),
    )


def mirror_dir(data_dir: str) -> str:
    """The local directory that mirrors the object-store data dir `data_dir`:
    ``$FIGKD_DATA_CACHE`` (default ``~/.cache/figkd_jax/tfds``) / scheme / bucket / path.

    TFDS reads and writes records through TensorFlow's own filesystem, which cannot be pointed
    at a storage emulator, so a suite could never run that path: the records go through
    `storage` instead (tests/test_gcs.py runs it), and TFDS reads a local copy.
    """
    root = os.environ.get("FIGKD_DATA_CACHE") or os.path.expanduser("~/.cache/figkd_jax/tfds")
    scheme, rest = str(data_dir).split("://", 1)
    return os.path.join(root, scheme, rest.strip("/"))


def dataset_folder(builder: tfds.core.DatasetBuilder) -> str:
    """The prepared dataset's folder relative to its data dir (``name/[config/]version``)."""
    return str(builder.data_dir)[len(str(builder.data_dir_root)) :].strip("/")


@functools.lru_cache(maxsize=4)
def _mirrored(name: str, data_dir: str, folder: str, local: str) -> tfds.core.DatasetBuilder:
    """A builder of `local`, the mirror of `data_dir`/`folder`, brought up to date first."""
    storage.copy_tree(f"{data_dir}/{folder}", f"{local}/{folder}", last=("dataset_info.json",))
    return tfds.builder(name, data_dir=local)


def _builder(config: DataConfig) -> tfds.core.DatasetBuilder:
    builder = tfds.builder(config.name, data_dir=config.data_dir)
    if config.data_dir is None or not storage.is_url(config.data_dir):
        return builder
    if not builder.is_prepared():  # the message names the bucket
        return builder
    folder = dataset_folder(builder)
    return _mirrored(config.name, config.data_dir, folder, mirror_dir(config.data_dir))


def _not_prepared_message(config: DataConfig, builder: tfds.core.DatasetBuilder) -> str:
    data_dir = builder.data_dir_root
    source = SOURCES[config.name]
    manual_dir = storage.path(config.manual_dir or storage.path(data_dir) / "downloads" / "manual")
    prepare = f"`python -m figkd_jax.data.prepare --dataset={config.name} --data_dir={data_dir}"
    if source.kind == "tfds":
        return (
            f"{config.name} is not prepared in {data_dir}: run {prepare}` where the internet is "
            f"reachable, or copy a prepared {config.name}/{builder.version} folder there"
        )
    prepare += f" --manual_dir={manual_dir}`"
    missing = [f for f in source.manual_files if not (manual_dir / f).exists()]
    if missing:
        return (
            f"{config.name} is not prepared in {data_dir}: download {', '.join(missing)} from "
            f"{source.homepage} into {manual_dir}, then run {prepare}"
        )
    return (
        f"{config.name} is not prepared in {data_dir} (files found in {manual_dir}): run {prepare}"
    )


def check_prepared(data_config) -> None:
    """Raise DatasetNotPreparedError unless the dataset can be read (no data is loaded)."""
    config = resolve(data_config)
    if SOURCES[config.name].kind == "embedded":
        return
    builder = _builder(config)
    if not builder.is_prepared():
        raise DatasetNotPreparedError(_not_prepared_message(config, builder))


def prepared_info(data_config) -> DatasetInfo:
    """``get_info(name)`` with the configured splits and their prepared sizes (cheap).

    Use its ``num_train`` for ``steps_per_epoch`` when the splits are not the defaults.
    """
    config = resolve(data_config)
    info = get_info(config.name)
    if SOURCES[config.name].kind == "embedded":
        sizes = [len(digits.load_split(s)[1]) for s in (config.train_split, config.eval_split)]
    else:
        check_prepared(data_config)
        splits = _builder(config).info.splits
        sizes = [splits[s].num_examples for s in (config.train_split, config.eval_split)]
    return dataclasses.replace(
        info,
        train_split=config.train_split,
        eval_split=config.eval_split,
        num_train=sizes[0],
        num_eval=sizes[1],
    )


@dataclasses.dataclass(frozen=True)
class Split:
    """One split in host memory.

    images: uint8 [N, H, W, C] for fixed-resolution datasets, else object [N] of encoded bytes.
    labels: int32 [N].
    """

    images: np.ndarray
    labels: np.ndarray


def _read_only(array: np.ndarray) -> np.ndarray:
    """Cached arrays are shared by every caller; none may change them."""
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=2)  # the train and the eval split of one run
def load_split(config: DataConfig, split: str) -> Split:
    """Read every example of ``split`` in its stored (deterministic) order."""
    if SOURCES[config.name].kind == "embedded":
        return Split(*map(_read_only, digits.load_split(split)))
    check_prepared(config)
    fixed = get_info(config.name).fixed_resolution
    decoders = tfds.decode.PartialDecoding(
        {"image": True, "label": True},
        decoders=None if fixed else {"image": tfds.decode.SkipDecoding()},
    )
    dataset = _builder(config).as_dataset(split=split, decoders=decoders, shuffle_files=False)
    images, labels = [], []
    for batch in tfds.as_numpy(dataset.batch(_LOAD_BATCH)):
        images.append(batch["image"])
        labels.append(batch["label"].astype(np.int32))
    if not labels:
        raise ValueError(f"{config.name} split {split!r} is empty")
    return Split(_read_only(np.concatenate(images)), _read_only(np.concatenate(labels)))


def load_arrays(data_config, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decoded split of a fixed-resolution dataset: images uint8 [N, H, W, C], labels int32 [N].

    For the datasets with ``get_info(name).fixed_resolution`` (digits, cifar100,
    tiny_imagenet); ``split`` is a TFDS split string (for digits "train" or "test").
    """
    config = resolve(data_config)
    if not get_info(config.name).fixed_resolution:
        raise ValueError(
            f"load_arrays needs a fixed-resolution dataset (digits, cifar100, tiny_imagenet), "
            f"not {config.name}: its images have different sizes"
        )
    loaded = load_split(config, split)
    return loaded.images, loaded.labels
