"""Deterministic input pipelines of the benchmark datasets (see ``pipeline`` for the rules).

Datasets: ``digits`` (embedded, no download), ``cifar100``, ``tiny_imagenet``,
``caltech_birds2011``, ``stanford_dogs``, ``mit67``, ``stanford40``. The data config fields
are documented in ``figkd_jax.data.sources``.
"""

from figkd_jax.data.pipeline import (
    EvalStream,
    TrainStream,
    eval_stream,
    steps_per_epoch,
    train_stream,
)
from figkd_jax.data.registry import (
    DatasetInfo,
    PadCropFlip,
    ResizedCropFlip,
    RotateFlip,
    get_info,
    names,
)
from figkd_jax.data.sources import (
    DatasetNotPreparedError,
    check_prepared,
    default_data_config,
    load_arrays,
    prepared_info,
)

__all__ = [
    "DatasetInfo",
    "DatasetNotPreparedError",
    "EvalStream",
    "PadCropFlip",
    "ResizedCropFlip",
    "RotateFlip",
    "TrainStream",
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
