"""Images per second of each dataset's train and eval pipeline on this machine's CPUs.

Synthetic splits of the real shapes stand in for the prepared records, so nothing needs to
be downloaded: uint8 arrays for the fixed-resolution datasets (cifar100 at its real size,
tiny_imagenet at 50,000 of its 100,000 images to spare memory; digits is the real embedded
data) and, for the fine-grained datasets, smooth synthetic JPEGs of a typical source size
(500x375, quality 90), decoded on the fly as the real ones are. Example:

    python benchmarks/input_pipeline.py --datasets cifar100 stanford_dogs --steps 50
"""

import argparse
import contextlib
import io
import os
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ml_collections
import numpy as np
import PIL.Image

from figkd_jax import data
from figkd_jax.data import pipeline, sources

_MAX_FIXED_EXAMPLES = 50_000
_JPEG_SIZE = (500, 375)  # width, height
_DISTINCT_JPEGS = 64


def _smooth_jpeg(rng: np.random.Generator) -> bytes:
    """A JPEG with the size and entropy of a photo rather than of white noise."""
    width, height = _JPEG_SIZE
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    phases = rng.uniform(0, 2 * np.pi, 3)
    frequency = rng.uniform(2, 12)
    channels = [np.sin(frequency * (x + y * (c + 1)) + phases[c]) for c in range(3)]
    image = (np.stack(channels, -1) * 100 + 128 + rng.normal(0, 12, (height, width, 3))).clip(
        0, 255
    )
    buffer = io.BytesIO()
    PIL.Image.fromarray(image.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def synthetic_split(info: data.DatasetInfo, num_examples: int) -> sources.Split:
    """A stand-in split of ``info``'s shapes with ``num_examples`` examples."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, info.num_classes, num_examples).astype(np.int32)
    if info.fixed_resolution:
        images = rng.integers(0, 256, (num_examples, *info.image_shape), dtype=np.uint8)
    else:
        jpegs = [_smooth_jpeg(rng) for _ in range(_DISTINCT_JPEGS)]
        images = np.array([jpegs[i % len(jpegs)] for i in range(num_examples)], dtype=object)
    return sources.Split(images, labels)


def images_per_second(batches, batch_size: int, steps: int, warmup: int) -> float:
    """Throughput of ``steps`` batches after ``warmup`` batches (graph tracing, prefetch fill)."""
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return steps * batch_size / (time.perf_counter() - start)


def benchmark(name: str, batch_size: int, steps: int) -> tuple[float, float]:
    """(train, eval) images per second of dataset ``name``."""
    info = data.get_info(name)
    config = ml_collections.ConfigDict({"name": name})
    if name == "digits":
        stand_in = contextlib.nullcontext()
    else:
        limit = _MAX_FIXED_EXAMPLES if info.fixed_resolution else info.num_train
        split = synthetic_split(info, min(info.num_train, limit))
        stand_in = mock.patch.object(pipeline, "load_split", lambda *_: split)
    with stand_in:
        train = data.train_stream(config, global_batch_size=batch_size, seed=0)
        train_rate = images_per_second(train, batch_size, steps, warmup=5)
        evaluation = data.eval_stream(config, global_batch_size=batch_size)
        eval_steps = min(steps, len(evaluation) - 2)  # full batches after the warm-up one
        eval_rate = images_per_second(iter(evaluation), batch_size, eval_steps, warmup=1)
    return train_rate, eval_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=data.names(), choices=data.names())
    parser.add_argument("--steps", type=int, default=50, help="timed batches per pipeline")
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}, batch size {args.batch_size}, {args.steps} steps")
    print("| dataset | image shape | train img/s | eval img/s |")
    print("|---|---|---|---|")
    for name in args.datasets:
        train_rate, eval_rate = benchmark(name, args.batch_size, args.steps)
        shape = "x".join(map(str, data.get_info(name).image_shape))
        print(f"| {name} | {shape} | {train_rate:,.0f} | {eval_rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
