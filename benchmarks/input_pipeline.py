"""Images per second of each dataset's train and eval pipeline on this machine's CPUs.

Synthetic splits of the real shapes stand in for the prepared records, so nothing needs to
be downloaded: uint8 arrays for the fixed-resolution datasets (cifar100 at its real size,
tiny_imagenet at 50,000 of its 100,000 images to spare memory; digits is the real embedded
data) and, for the fine-grained datasets, smooth synthetic JPEGs (quality 90) of a typical
source size of each (``SOURCE_SIZES``), as many as the real splits hold.

Each fine-grained dataset is run both ways, side by side: decoding the JPEGs every epoch
(``dataset.decode_once=False``) and decoding them once into host memory (the default,
``figkd_jax.data.decoded``). "first epoch" is the stream's start-up (for the cache, decoding
the whole split) plus one epoch at the measured rate, and its CPU time; "eval first" is a
whole first pass including its start-up; "cache" is the host memory the decoded splits
take. "CPU ms/img" is the process's CPU time per image in the steady state, all threads
together: since both paths spread their work over tf.data's (and PIL's) threads, a host
with c free cores runs a path at up to c * 1000 / (CPU ms/img) images/s, whatever this
machine's load. A second table
measures how far the cached crops are from the reference's (crops of the original JPEG)
on two photographs, per canvas size.

ImageNet (``imagenet2012``) is streamed from its records (``figkd_jax.data.imagenet``), so its
row times the real path: synthetic JPEGs of ImageNet's size distribution (``IMAGENET_SIZES``,
quality 90) written as the two ILSVRC2012 archives, prepared by TFDS into a temporary data dir
(not timed), then read, decoded-and-cropped and batched into the uint8 batches the host hands
to the device (normalisation is the step's, on the device: not in this row). It prints the CPU
cores that the measured CPU ms per image need for a given image rate (``--imagenet_rates``).
Its "+ strong view" row is the train stream of MLKD, which also crops each image's strong view
(the RandAugment of that view runs on the accelerator, not here). Example:

    python benchmarks/input_pipeline.py --datasets cifar100 stanford_dogs --steps 50
"""

import argparse
import contextlib
import io
import os
import tarfile
import tempfile
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ml_collections
import numpy as np
import PIL.Image
import tensorflow as tf

from figkd_jax import data
from figkd_jax.data import augment, decoded, pipeline, sources

_MAX_FIXED_EXAMPLES = 50_000
_DISTINCT_JPEGS = 64

SOURCE_SIZES = {  # (width, height) of a typical source image
    # Most CUB images are 500 pixels on their longer side.
    "caltech_birds2011": (500, 375),
    # ImageNet photographs: TFDS stores the 20,580 images in 745 MiB, about 37 kB each.
    "stanford_dogs": (500, 375),
    # Larger photographs: the 15,620 images take about 2.4 GB, about 150 kB each.
    "mit67": (640, 480),
    # Assumed, not measured from the archive.
    "stanford40": (400, 300),
}
# ImageNet photographs average about 400x350 (the figure): widths and heights drawn
# uniformly from these ranges.
IMAGENET_SIZES = ((300, 500), (260, 440))
# Host image rates to size: a v4-32 slice's need per host (docs/pod.md) and the goal.
IMAGENET_RATES = (25_000, 60_000)
_FIDELITY_CACHE_SIZES = (224, 256, 320, 448)
_FIDELITY_SOURCE = (500, 375)


def _smooth_jpeg(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    """A JPEG with the size and entropy of a photo rather than of white noise."""
    width, height = size
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
        jpegs = [_smooth_jpeg(rng, SOURCE_SIZES[info.name]) for _ in range(_DISTINCT_JPEGS)]
        images = np.array([jpegs[i % len(jpegs)] for i in range(num_examples)], dtype=object)
    return sources.Split(images, labels)


def _tar_member(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(payload)
    archive.addfile(member, io.BytesIO(payload))


def write_imagenet_archives(manual_dir: str, train: dict[str, list[bytes]], val: list[bytes]):
    """The two archives of an ILSVRC2012 download, as TFDS's imagenet2012 reads them.

    ``ILSVRC2012_img_train.tar``: one ``<synset>.tar`` per class of ``train`` holding
    ``<synset>_<i>.JPEG``; ``ILSVRC2012_img_val.tar``: ``ILSVRC2012_val_<8 digits>.JPEG``, whose
    labels TFDS takes from its own validation_labels.txt (the k-th file, the k-th label).
    """
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"), "w") as archive:
        for synset, jpegs in train.items():
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as class_tar:
                for i, jpeg in enumerate(jpegs):
                    _tar_member(class_tar, f"{synset}_{i}.JPEG", jpeg)
            _tar_member(archive, f"{synset}.tar", inner.getvalue())
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"), "w") as archive:
        for i, jpeg in enumerate(val, start=1):
            _tar_member(archive, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg)


def imagenet_synsets() -> list[str]:
    """The 1,000 synsets in TFDS's label order."""
    import tensorflow_datasets as tfds

    return tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()


def benchmark_imagenet(batch_size: int, steps: int, num_train: int, num_eval: int) -> dict:
    """Train and eval images/s and CPU ms per image of the streamed ImageNet pipeline."""
    from figkd_jax.data import prepare

    rng = np.random.default_rng(0)
    (w_low, w_high), (h_low, h_high) = IMAGENET_SIZES
    jpegs = [
        _smooth_jpeg(rng, (int(rng.integers(w_low, w_high)), int(rng.integers(h_low, h_high))))
        for _ in range(_DISTINCT_JPEGS)
    ]
    synsets = imagenet_synsets()[:8]
    train = {s: [] for s in synsets}
    for i in range(num_train):
        train[synsets[i % len(synsets)]].append(jpegs[i % len(jpegs)])
    val = [jpegs[i % len(jpegs)] for i in range(num_eval)]
    with tempfile.TemporaryDirectory() as root:
        manual = os.path.join(root, "manual")
        os.mkdir(manual)
        write_imagenet_archives(manual, train, val)
        config = data.default_data_config("imagenet2012")
        config.data_dir, config.manual_dir = os.path.join(root, "data"), manual
        prepare.prepare(config, num_shards=4)
        stream = data.train_stream(config, global_batch_size=batch_size, seed=0)
        train_rate, train_cpu = images_per_second(stream, batch_size, steps, warmup=3)
        # MLKD's: the host's share of its strong view (a second crop; RandAugment is on device).
        stream = data.train_stream(config, global_batch_size=batch_size, seed=0, strong_view=True)
        strong_rate, strong_cpu = images_per_second(stream, batch_size, steps, warmup=3)
        del stream
        evaluation = data.eval_stream(config, global_batch_size=batch_size)
        eval_steps = min(steps, len(evaluation) - 2)
        eval_rate, eval_cpu = images_per_second(iter(evaluation), batch_size, eval_steps, 1)
    source = (
        f"{(w_low + w_high) // 2}x{(h_low + h_high) // 2} "
        f"({sum(map(len, jpegs)) // len(jpegs) // 1000} kB)"
    )
    return {
        "source": source,
        "train": train_rate,
        "train_cpu": train_cpu,
        "strong_view": strong_rate,
        "strong_view_cpu": strong_cpu,
        "eval": eval_rate,
        "eval_cpu": eval_cpu,
    }


def images_per_second(batches, batch_size: int, steps: int, warmup: int) -> tuple[float, float]:
    """Throughput of ``steps`` batches after ``warmup`` batches (graph tracing, prefetch fill),
    and the CPU milliseconds per image of the whole process (all threads): unlike the
    throughput, the CPU time hardly depends on what else the machine runs."""
    for _ in range(warmup):
        next(batches)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(batches)
    images = steps * batch_size
    cpu_ms = (time.process_time() - start_cpu) * 1e3 / images
    return images / (time.perf_counter() - start), cpu_ms


@contextlib.contextmanager
def stand_in_splits(info: data.DatasetInfo, num_train: int, num_eval: int):
    """Serve synthetic train and eval splits wherever the pipeline loads one."""
    splits = {
        info.train_split: synthetic_split(info, num_train),
        info.eval_split: synthetic_split(info, num_eval),
    }
    with mock.patch.object(pipeline, "load_split", lambda config, split: splits[split]):
        yield
    decoded.decoded_train_split.cache_clear()  # free the memory for the next dataset
    decoded.decoded_eval_images.cache_clear()


def benchmark(name: str, batch_size: int, steps: int) -> tuple[float, float, float, float]:
    """(train img/s, train CPU ms/img, eval img/s, eval CPU ms/img) of fixed-resolution
    dataset ``name``."""
    info = data.get_info(name)
    config = ml_collections.ConfigDict({"name": name})
    if name == "digits":
        stand_in = contextlib.nullcontext()
    else:
        split = synthetic_split(info, min(info.num_train, _MAX_FIXED_EXAMPLES))
        stand_in = mock.patch.object(pipeline, "load_split", lambda *_: split)
    with stand_in:
        train = data.train_stream(config, global_batch_size=batch_size, seed=0)
        train_rate, train_cpu = images_per_second(train, batch_size, steps, warmup=5)
        evaluation = data.eval_stream(config, global_batch_size=batch_size)
        eval_steps = min(steps, len(evaluation) - 2)  # full batches after the warm-up one
        eval_rate, eval_cpu = images_per_second(iter(evaluation), batch_size, eval_steps, warmup=1)
    return train_rate, train_cpu, eval_rate, eval_cpu


def benchmark_fine_grained(
    name: str, decode_once: bool, batch_size: int, steps: int, num_train: int, num_eval: int
) -> dict[str, float]:
    """Start-up, first epoch, throughputs and cache size of one path of dataset ``name``."""
    info = data.get_info(name)
    config = ml_collections.ConfigDict({"name": name, "decode_once": decode_once})
    cache_size = sources.resolve(config).cache_size
    with stand_in_splits(info, num_train, num_eval):
        start, start_cpu = time.perf_counter(), time.process_time()
        train = data.train_stream(config, global_batch_size=batch_size, seed=0)
        next(train)
        startup, startup_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        train_rate, train_cpu = images_per_second(train, batch_size, steps, warmup=4)
        del train
        start = time.perf_counter()
        evaluation = data.eval_stream(config, global_batch_size=batch_size)
        for _ in evaluation:
            pass
        eval_first = time.perf_counter() - start
        eval_steps = min(steps, len(evaluation) - 2)
        eval_rate, eval_cpu = images_per_second(iter(evaluation), batch_size, eval_steps, warmup=1)
    cache = (
        decoded.train_cache_bytes(info.num_train, cache_size)
        + decoded.eval_cache_bytes(info.num_eval, info.augment)
        if decode_once
        else 0
    )
    return {
        "first_epoch": startup * info.num_train / num_train + info.num_train / train_rate,
        "first_epoch_cpu": (startup_cpu / num_train + train_cpu / 1e3) * info.num_train,
        "train": train_rate,
        "train_cpu": train_cpu,
        "eval_first": eval_first * info.num_eval / num_eval,
        "eval": eval_rate,
        "eval_cpu": eval_cpu,
        "cache_gib": cache / 2**30,
    }


def _photographs() -> list[tf.Tensor]:
    """sklearn's two sample photographs (427x640) resized to a CUB-like 500x375, uint8."""
    from sklearn.datasets import load_sample_image

    width, height = _FIDELITY_SOURCE
    return [
        tf.cast(
            tf.round(tf.image.resize(load_sample_image(f), [height, width], antialias=True)),
            tf.uint8,
        )
        for f in ("china.jpg", "flower.jpg")
    ]


def jpeg_reencoding_difference() -> float:
    """Mean absolute difference (grey levels) a JPEG quality-90 re-encoding makes: a yardstick."""
    differences = [
        tf.reduce_mean(
            tf.abs(
                tf.cast(tf.io.decode_jpeg(tf.io.encode_jpeg(p, quality=90)), tf.float32)
                - tf.cast(p, tf.float32)
            )
        )
        for p in _photographs()
    ]
    return float(np.mean(differences))


def crop_fidelity(cache_sizes, num_crops: int) -> dict[int, float]:
    """Mean absolute difference (grey levels) of cached crops to the reference's, per size."""
    spec = data.get_info("caltech_birds2011").augment
    photos = _photographs()
    draws = np.random.default_rng(0).random((num_crops, augment.RESIZED_CROP_FLIP_DRAWS))
    draws[:, -1] = 1.0  # no flip: the reference below does not flip
    errors = {}
    for cache_size in cache_sizes:
        differences = []
        for photo in photos:
            canvas = decoded.to_canvas(tf.io.encode_png(photo).numpy(), cache_size)[0]
            size = tf.shape(photo)[:2]
            for row in tf.constant(draws, tf.float32):
                box = augment.sample_resized_crop(row, size[0], size[1], spec.scale, spec.ratio)
                reference = augment.resized_crop(photo, *box, spec.crop_size)
                rows, cols = decoded.sample_grid(row, size, spec, cache_size)
                crop = decoded.bilinear_crops(
                    canvas[None], [0], rows[None], cols[None], 1.0, 0.0, tf.float32
                )[0]
                differences.append(float(tf.reduce_mean(tf.abs(crop - reference))))
        errors[cache_size] = float(np.mean(differences))
    return errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=data.names(), choices=data.names())
    parser.add_argument("--steps", type=int, default=50, help="timed batches per pipeline")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 64 synthetic images per fine-grained split, 2 steps of 8, 4 crops "
        "of a 320 canvas",
    )
    parser.add_argument(
        "--imagenet_rates",
        type=int,
        nargs="+",
        default=IMAGENET_RATES,
        help="host image rates (img/s) for which to print the cores the measured cost needs",
    )
    args = parser.parse_args(argv)
    steps, batch_size = (2, 8) if args.quick else (args.steps, args.batch_size)
    print(f"CPU cores: {os.cpu_count()}, batch size {batch_size}, {steps} steps")
    fixed = [n for n in args.datasets if data.get_info(n).fixed_resolution]
    if fixed:
        print(
            "| dataset | image shape | train img/s | train CPU ms/img | eval img/s "
            "| eval CPU ms/img |"
        )
        print("|---|---|---|---|---|---|")
        for name in fixed:
            train_rate, train_cpu, eval_rate, eval_cpu = benchmark(name, batch_size, steps)
            shape = "x".join(map(str, data.get_info(name).image_shape))
            print(
                f"| {name} | {shape} | {train_rate:,.0f} | {train_cpu:.3f} | {eval_rate:,.0f} "
                f"| {eval_cpu:.3f} |",
                flush=True,
            )
    fine = [
        n
        for n in args.datasets
        if not data.get_info(n).fixed_resolution and not data.get_info(n).streamed
    ]
    if fine:
        print(
            "\n| dataset | source | path | cache GiB | first epoch s (CPU s) | train img/s "
            "| train CPU ms/img | eval first s | eval img/s | eval CPU ms/img |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
    for name in fine:
        info = data.get_info(name)
        num_train = 64 if args.quick else info.num_train
        num_eval = 64 if args.quick else info.num_eval
        source = "x".join(map(str, SOURCE_SIZES[name]))
        results = {}
        for decode_once, path in ((False, "every epoch"), (True, "decoded once")):
            r = benchmark_fine_grained(name, decode_once, batch_size, steps, num_train, num_eval)
            results[path] = r
            print(
                f"| {name} | {source} | {path} | {r['cache_gib']:.2f} | {r['first_epoch']:,.0f} "
                f"({r['first_epoch_cpu']:,.0f}) | {r['train']:,.0f} | {r['train_cpu']:.2f} "
                f"| {r['eval_first']:,.0f} "
                f"| {r['eval']:,.0f} | {r['eval_cpu']:.2f} |",
                flush=True,
            )
        old, new = results["every epoch"], results["decoded once"]
        print(
            f"| {name} | | ratio | | {old['first_epoch'] / new['first_epoch']:.1f}x "
            f"({old['first_epoch_cpu'] / new['first_epoch_cpu']:.1f}x) "
            f"| {new['train'] / old['train']:.1f}x "
            f"| {old['train_cpu'] / new['train_cpu']:.1f}x less | "
            f"| {new['eval'] / old['eval']:.1f}x | {old['eval_cpu'] / new['eval_cpu']:.1f}x less |",
            flush=True,
        )
    if fine:
        num_crops = 4 if args.quick else 150
        errors = crop_fidelity((320,) if args.quick else _FIDELITY_CACHE_SIZES, num_crops)
        width, height = _FIDELITY_SOURCE
        print(
            f"\nCached crops against the reference's (two {width}x{height} photographs, "
            f"{num_crops} crops each): mean absolute difference in grey levels of 255"
        )
        print("| canvas | MB per image | difference |")
        print("|---|---|---|")
        for cache_size, error in errors.items():
            megabytes = decoded.train_cache_bytes(1, cache_size) / 1e6
            print(f"| {cache_size} | {megabytes:.2f} | {error:.2f} |")
        print(f"| (JPEG quality-90 re-encoding) | | {jpeg_reencoding_difference():.2f} |")
    if "imagenet2012" in args.datasets:
        num_train = 8 * batch_size if args.quick else 2048
        num_eval = 4 * batch_size if args.quick else 512
        r = benchmark_imagenet(batch_size, steps, num_train, num_eval)
        print(
            "\n| dataset | source (mean) | train img/s | train CPU ms/img | eval img/s "
            "| eval CPU ms/img |"
        )
        print("|---|---|---|---|---|---|")
        print(
            f"| imagenet2012 | {r['source']} | {r['train']:,.0f} | {r['train_cpu']:.2f} "
            f"| {r['eval']:,.0f} | {r['eval_cpu']:.2f} |"
        )
        print(
            f"| imagenet2012 + strong view (MLKD) | {r['source']} | {r['strong_view']:,.0f} "
            f"| {r['strong_view_cpu']:.2f} | | |"
        )
        print("\n| host img/s | cores for train | cores for eval |")
        print("|---|---|---|")
        for rate in args.imagenet_rates:
            print(
                f"| {rate:,} | {rate * r['train_cpu'] / 1e3:,.0f} "
                f"| {rate * r['eval_cpu'] / 1e3:,.0f} |"
            )


if __name__ == "__main__":
    main()
