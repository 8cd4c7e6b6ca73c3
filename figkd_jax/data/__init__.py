"""Deterministic input pipelines of the benchmark datasets (see ``pipeline`` for the rules).

Datasets: ``digits`` (embedded, no download), ``cifar100``, ``tiny_imagenet``,
``imagenet2012`` (streamed from its records: ``imagenet``), ``caltech_birds2011``,
``stanford_dogs``, ``mit67``, ``stanford40``. The data config fields
are documented in ``figkd_jax.data.sources``.

The registry (names, sizes, augmentation specs) needs only the standard library; the
pipelines and sources need TensorFlow and TFDS, and are imported on first use, so that code
that only asks the registry (the on-device path, a GPU benchmark) runs without TensorFlow.
"""

import importlib

from figkd_jax.data.registry import (
    DatasetInfo,
    PadCropFlip,
    ResizedCropFlip,
    RotateFlip,
    get_info,
    names,
    steps_per_epoch,
)

_LAZY = {
    "EvalStream": "pipeline",
    "TrainStream": "pipeline",
    "eval_stream": "pipeline",
    "train_stream": "pipeline",
    "check_host_memory": "decoded",
    "DatasetNotPreparedError": "sources",
    "check_prepared": "sources",
    "default_data_config": "sources",
    "load_arrays": "sources",
    "prepared_info": "sources",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"figkd_jax.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'figkd_jax.data' has no attribute {name!r}")


__all__ = [
    "DatasetInfo",
    "DatasetNotPreparedError",
    "EvalStream",
    "PadCropFlip",
    "ResizedCropFlip",
    "RotateFlip",
    "TrainStream",
    "check_host_memory",
    "check_prepared",
    "default_data_config",
    "eval_stream",
    "get_info",
    "load_arrays",
    "names",
    "prepared_info",
    "steps_per_epoch",
    "train_stream",
]
