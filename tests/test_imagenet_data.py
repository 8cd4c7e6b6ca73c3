"""ImageNet (TFDS imagenet2012) from a tiny manual download in the original archive layout,
read back through the streamed pipeline: labels, per-process file sharding, determinism,
resume, MLKD's strong view, and evaluation over 1 and 2 processes.

Every image of label L is a solid gray of ``_gray(L)``, so each example's label can be checked
against its pixels after building, sharding, cropping and flipping.
"""

import io
import json
import math
import os
import pathlib
import socket
import subprocess
import sys

import ml_collections
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from benchmarks.input_pipeline import imagenet_synsets, write_imagenet_archives
from figkd_jax import data
from figkd_jax.data import imagenet, prepare, randaugment

REPO = pathlib.Path(__file__).resolve().parent.parent

tfds.disable_progress_bar()

# The first three synsets of TFDS's labels.txt (labels 0, 1, 2); the first validation images
# take the labels of its validation_labels.txt.
TRAIN_SYNSETS = tuple(imagenet_synsets()[:3])
TRAIN_PER_CLASS = 8  # 24 train images
NUM_VAL = 7
NUM_SHARDS = 4  # record files per split: two for each of two processes


def _gray(label: int) -> int:
    return 20 + (label * 37) % 220


def _jpeg(value: int, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", size, (value,) * 3).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _sizes(i: int) -> tuple[int, int]:
    """(width, height) of varied shapes, landscape and portrait."""
    return (40 + 7 * (i % 5), 30 + 11 * (i % 3))


def _val_labels() -> list[int]:
    label_names = imagenet_synsets()
    validation = (
        tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt").read_text().split()
    )
    return [label_names.index(s) for s in validation[:NUM_VAL]]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> ml_collections.ConfigDict:
    root = tmp_path_factory.mktemp("imagenet")
    manual = root / "manual"
    manual.mkdir()
    train = {
        synset: [_jpeg(_gray(label), _sizes(i)) for i in range(TRAIN_PER_CLASS)]
        for label, synset in enumerate(TRAIN_SYNSETS)
    }
    val = [_jpeg(_gray(label), _sizes(i)) for i, label in enumerate(_val_labels(), start=1)]
    write_imagenet_archives(str(manual), train, val)
    config = data.default_data_config("imagenet2012")
    config.data_dir, config.manual_dir = str(root / "data"), str(manual)
    prepare.prepare(config, num_shards=NUM_SHARDS)
    return config


@pytest.fixture(scope="module")
def textured(tmp_path_factory) -> ml_collections.ConfigDict:
    """A train split of 4 noise images (class 0) and the smallest validation split."""
    root = tmp_path_factory.mktemp("imagenet_textured")
    manual = root / "manual"
    manual.mkdir()
    rng = np.random.default_rng(0)

    def noise(size):
        pixels = rng.integers(64, 192, size=(size[1], size[0], 3), dtype=np.uint8)
        buffer = io.BytesIO()
        PIL.Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()

    train = {TRAIN_SYNSETS[0]: [noise(_sizes(i)) for i in range(4)]}
    write_imagenet_archives(str(manual), train, [noise(_sizes(0))])
    config = data.default_data_config("imagenet2012")
    config.data_dir, config.manual_dir = str(root / "data"), str(manual)
    prepare.prepare(config, num_shards=1)
    return config


def _gray_levels(images: np.ndarray) -> np.ndarray:
    """Mean pixel of each uint8 image [B, H, W, C] (the streams leave normalisation to the
    step)."""
    assert images.dtype == np.uint8
    return images.astype(np.float64).mean(axis=(1, 2, 3))


def _train_batches(
    config,
    steps,
    *,
    start_step=0,
    process_index=0,
    process_count=1,
    seed=3,
    batch=4,
    strong_view=False,
):
    stream = data.train_stream(
        config,
        global_batch_size=batch,
        seed=seed,
        start_step=start_step,
        process_index=process_index,
        process_count=process_count,
        strong_view=strong_view,
    )
    return stream, [next(stream) for _ in range(steps)]


def test_prepared_sizes_and_the_not_prepared_message(prepared, tmp_path):
    info = data.prepared_info(prepared)
    assert (info.num_train, info.num_eval) == (3 * TRAIN_PER_CLASS, NUM_VAL)
    assert info.image_shape == (224, 224, 3) and info.num_classes == 1000
    empty = ml_collections.ConfigDict(
        {"name": "imagenet2012", "data_dir": str(tmp_path), "manual_dir": str(tmp_path)}
    )
    with pytest.raises(data.DatasetNotPreparedError, match=r"ILSVRC2012_img_train\.tar"):
        data.check_prepared(empty)


def test_train_batches_carry_their_labels_and_cover_an_epoch(prepared):
    stream, batches = _train_batches(prepared, 6)  # 24 // 4 = 6 steps: one epoch
    assert stream.steps_per_epoch == 6
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert images.shape == (24, 224, 224, 3) and images.dtype == np.uint8
    # A solid image stays solid through any crop, resize and flip (JPEG rounding aside).
    np.testing.assert_allclose(_gray_levels(images), [_gray(x) for x in labels], atol=3)
    assert sorted(labels.tolist()) == sorted(list(range(3)) * TRAIN_PER_CLASS)
    # Shuffled: not the three classes in blocks.
    assert len(set(labels[:8].tolist())) > 1


def test_same_seed_same_stream_other_seed_other_order(prepared):
    _, first = _train_batches(prepared, 8)
    _, again = _train_batches(prepared, 8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    _, other = _train_batches(prepared, 8, seed=4)
    assert any(
        not np.array_equal(a["image"], b["image"]) for a, b in zip(first, other, strict=True)
    )
    # A new epoch, new crops (and a new order).
    assert not np.array_equal(first[0]["image"], first[6]["image"])


def test_resumed_stream_equals_the_tail_of_an_uninterrupted_one(prepared):
    _, whole = _train_batches(prepared, 9)
    for start in (4, 6, 7):  # mid-epoch, at an epoch boundary, in the second epoch
        _, resumed = _train_batches(prepared, 9 - start, start_step=start)
        for a, b in zip(whole[start:], resumed, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["label"], b["label"])


def test_strong_view_leaves_the_weak_view_and_carries_its_labels(prepared):
    _, weak = _train_batches(prepared, 7)
    _, both = _train_batches(prepared, 7, strong_view=True)
    for a, b in zip(weak, both, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])  # a stream of its own
        np.testing.assert_array_equal(a["label"], b["label"])
        assert b["strong_image"].shape == (4, 224, 224, 3) and b["strong_image"].dtype == np.uint8
        assert b["strong_draws"].shape == (4, randaugment.STRONG_VIEW_DRAWS)
        assert b["strong_draws"].dtype == np.float32
        assert ((b["strong_draws"] >= 0) & (b["strong_draws"] < 1)).all()
        # The same example: a solid image's crop keeps its gray (JPEG rounding aside).
        levels = b["strong_image"].astype(np.float32).mean(axis=(1, 2, 3))
        np.testing.assert_allclose(levels, [_gray(x) for x in b["label"]], atol=3)
    draws = np.concatenate([b["strong_draws"] for b in both])
    assert len(np.unique(draws[:, 3])) == len(draws)  # every example its own RandAugment


def test_strong_view_is_deterministic_and_resumes_exactly(prepared):
    _, whole = _train_batches(prepared, 9, strong_view=True)
    _, again = _train_batches(prepared, 9, strong_view=True)
    _, other = _train_batches(prepared, 9, strong_view=True, seed=4)
    for a, b in zip(whole, again, strict=True):
        for key in ("strong_image", "strong_draws"):
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(whole[0]["strong_draws"], other[0]["strong_draws"])
    for start in (4, 7):  # mid-epoch, in the second epoch
        _, resumed = _train_batches(prepared, 9 - start, start_step=start, strong_view=True)
        for a, b in zip(whole[start:], resumed, strict=True):
            for key in ("image", "label", "strong_image", "strong_draws"):
                np.testing.assert_array_equal(a[key], b[key])


def test_strong_view_is_another_crop_of_the_same_image(textured):
    """On noise images (a solid gray hides the crop): the strong view's crop and flip are not
    the weak view's; each is the same image's pixels (its gray-level statistics)."""
    _, batches = _train_batches(textured, 2, strong_view=True, batch=2)
    for batch in batches:
        weak = batch["image"].astype(np.float32)
        strong = batch["strong_image"].astype(np.float32)
        for w, s in zip(weak, strong, strict=True):
            assert np.abs(w - s).mean() > 5  # another window, resampled differently
            assert abs(w.mean() - s.mean()) < 12  # of one image: noise around one mean


def test_each_process_reads_only_its_own_files(prepared, monkeypatch):
    opened = []
    original = imagenet._Files.select

    def recording(self, indices):
        selected = original(self, indices)
        opened.append(selected.paths)
        return selected

    monkeypatch.setattr(imagenet._Files, "select", recording)
    per_process = []
    for process_index in range(2):
        _, batches = _train_batches(prepared, 6, process_index=process_index, process_count=2)
        per_process.append(np.concatenate([b["label"] for b in batches]))
        assert batches[0]["image"].shape == (2, 224, 224, 3)
    assert len(opened) == 2 and not set(opened[0]) & set(opened[1])
    assert sorted(opened[0] + opened[1]) == sorted(
        str(f.filename)
        for f in tfds.builder("imagenet2012", data_dir=prepared.data_dir)
        .info.splits["train"]
        .file_instructions
    )
    # The two processes' epochs together hold every train image's label once.
    both = np.concatenate([per_process[0][:12], per_process[1][:12]])
    assert sorted(both.tolist()) == sorted(list(range(3)) * TRAIN_PER_CLASS)


def test_too_few_files_for_the_processes_is_an_actionable_error(prepared):
    with pytest.raises(ValueError, match="--num_shards"):
        _train_batches(prepared, 1, process_count=2 * NUM_SHARDS, batch=2 * NUM_SHARDS)


@pytest.mark.parametrize("process_count", [1, 2])
def test_evaluation_counts_every_image_once(prepared, process_count):
    expected = _val_labels()
    images, labels, masks = [], [], []
    lengths = set()
    for process_index in range(process_count):
        stream = data.eval_stream(
            prepared,
            global_batch_size=4,
            process_index=process_index,
            process_count=process_count,
        )
        assert stream.num_examples == NUM_VAL
        batches = list(stream)
        lengths.add((len(stream), len(batches)))
        for batch in batches:
            assert batch["image"].shape == (4 // process_count, 224, 224, 3)
            images.append(batch["image"])
            labels.append(batch["label"])
            masks.append(batch["mask"])
    # The same number of batches on every process (the eval step is one program).
    assert len(lengths) == 1 and len({n for pair in lengths for n in pair}) == 1
    mask = np.concatenate(masks)
    label = np.concatenate(labels)
    image = np.concatenate(images)
    assert mask.sum() == NUM_VAL
    assert sorted(label[mask].tolist()) == sorted(expected)
    np.testing.assert_allclose(_gray_levels(image[mask]), [_gray(x) for x in label[mask]], atol=3)
    assert not image[~mask].any() and not label[~mask].any()


@pytest.mark.slow
def test_input_benchmark_prints_the_imagenet_row():
    script = [sys.executable, str(REPO / "benchmarks" / "input_pipeline.py")]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    quick = subprocess.run(
        [*script, "--quick", "--datasets", "imagenet2012"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert quick.returncode == 0, quick.stderr[-2000:]
    row = next(line for line in quick.stdout.splitlines() if line.startswith("| imagenet2012"))
    train_cpu_ms = float(row.split("|")[4])
    assert math.isfinite(train_cpu_ms) and train_cpu_ms > 0
    assert "| 25,000 |" in quick.stdout  # the cores that rate needs


@pytest.mark.slow
def test_evaluation_in_two_processes_counts_every_image_once(prepared, tmp_path):
    """Two processes of a distributed runtime on localhost, each reading its share, against
    one process: the same counts, every validation image once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = [sys.executable, str(REPO / "tests" / "imagenet_eval_worker.py"), prepared.data_dir]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [
        subprocess.Popen(
            [
                *worker,
                str(tmp_path / "two.json"),
                f"--coordinator=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            env=env,
        )
        for i in range(2)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    subprocess.run([*worker, str(tmp_path / "one.json")], env=env, check=True, timeout=600)
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    expected = {"count": NUM_VAL, "correct": NUM_VAL, "label_sum": sum(_val_labels())}
    assert {k: one[k] for k in expected} == expected
    assert {k: two[k] for k in expected} == expected
    # One process: ceil(7 / 4) = 2 batches of 4; two: ceil(4 / 2) = 2 batches of 2 each.
    assert one["batches"] == two["batches"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dkd", "mlkd"])
def test_the_imagenet_config_trains_and_evaluates_on_the_tiny_archive(prepared, tmp_path, method):
    """configs/imagenet.py as launched, with a converted torchvision teacher: one epoch
    (3 steps of 8) and its evaluation over every validation image; mlkd also through its
    strong view (host crop, RandAugment on device)."""
    pytest.importorskip("torch")
    from configs import imagenet as imagenet_config
    from figkd_jax.tools import convert_torch
    from figkd_jax.trainer import train
    from tests.torch_references import torchvision_references

    torchvision_references(str(tmp_path), "resnet34")
    pth = str(tmp_path / "resnet34.pth")
    convert_torch.main([pth, "--model", "resnet34_imagenet", "--out", str(tmp_path / "teacher")])
    config = imagenet_config.get_config(f"teacher=resnet34,student=resnet18,method={method}")
    config.dataset.data_dir = prepared.data_dir
    config.teacher.checkpoint = str(tmp_path / "teacher")
    config.batch_size, config.eval_batch_size, config.num_epochs = 8, 8, 1
    config.optim.lr_decay_epochs = ()
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert (results["dataset"], results["model"]) == ("imagenet2012", "resnet18_imagenet")
    assert results["epochs_done"] == 1 and 0 <= results["last_top1"] <= 1
    assert results["teacher_eval"] is not None  # the teacher evaluated over the split too


# The cheaper resizes (plain bilinear for an enlarged window, only the crop's pixels of the
# eval resize) compute TensorFlow's antialiased triangle weights from sample positions
# rounded differently in float32: a position up to 520 moves by a few ulps (2^-14 each), a
# weight by as much, an output pixel (a sum of at most 2 / scale weights times pixels <= 255,
# weights summing to 1) by at most about 8 * 2^-14 * 255 = 0.12 grey levels; measured on noise
# images (the worst case: neighbours 255 apart), below 0.01.
RESIZE_POSITION_ROUNDING = 0.12
# Rounding to uint8 (as PIL's resize does) moves a pixel by at most half a grey level.
UINT8_ROUNDING = 0.5


def _noise_jpeg(height: int, width: int, seed: int) -> tuple[bytes, np.ndarray]:
    """A quality-95 JPEG of uniform noise and its pixels as TensorFlow decodes them."""
    import tensorflow as tf

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    encoded = buffer.getvalue()
    return encoded, tf.io.decode_jpeg(encoded, channels=3).numpy()


def test_train_view_is_the_antialiased_float_crop_rounded_to_uint8():
    """resized_crop_view against the crop it replaces (decode the window, antialiased resize
    in float32, flip), for windows that shrink, that are enlarged, and that do both."""
    import tensorflow as tf

    from figkd_jax.data import augment

    spec = data.get_info("imagenet2012").augment
    sizes = [(300, 420), (375, 500), (180, 150), (500, 210)]
    enlarged = shrunk = 0
    for seed, (height, width) in enumerate(sizes):
        encoded, _ = _noise_jpeg(height, width, seed)
        draws = tf.random.stateless_uniform(
            [12, augment.RESIZED_CROP_FLIP_DRAWS], [seed, 0], alg="philox"
        )
        for row in draws:
            top, left, crop_h, crop_w = augment.sample_resized_crop(
                row, height, width, spec.scale, spec.ratio
            )
            window = tf.image.decode_and_crop_jpeg(
                encoded, tf.stack([top, left, crop_h, crop_w]), channels=3
            )
            expected = augment.resized_crop(window, 0, 0, crop_h, crop_w, spec.crop_size)
            if row[-1] < 0.5:
                expected = expected[:, ::-1]
            got = imagenet.resized_crop_view(tf.constant(encoded), row, spec)
            assert got.dtype == tf.uint8 and got.shape == (224, 224, 3)
            np.testing.assert_allclose(
                got.numpy(), expected, rtol=0, atol=UINT8_ROUNDING + RESIZE_POSITION_ROUNDING
            )
            small = int(crop_h) <= 224 and int(crop_w) <= 224
            enlarged, shrunk = enlarged + small, shrunk + (not small)
    assert enlarged >= 5 and shrunk >= 5  # both resize paths checked


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (333, 500), (257, 256), (700, 230)])
def test_eval_view_is_torchvisions_resize_and_center_crop(size):
    """center_crop_view (only the crop's pixels of the resize) against the whole resize then
    the crop (augment.resize_center_crop, pinned to torchvision's geometry in
    tests/test_data_decoded.py), on non-square noise, where a box one pixel off changes most
    pixels."""
    import tensorflow as tf

    from figkd_jax.data import augment

    spec = data.get_info("imagenet2012").augment
    width, height = size
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), np.uint8)
    expected = augment.resize_center_crop(tf.constant(pixels), spec.eval_resize, spec.crop_size)
    got = imagenet.center_crop_view(tf.constant(pixels), spec)
    assert got.dtype == tf.uint8 and got.shape == (224, 224, 3)
    np.testing.assert_allclose(
        got.numpy(), expected, rtol=0, atol=UINT8_ROUNDING + RESIZE_POSITION_ROUNDING
    )


def test_the_step_normalises_uint8_batches_as_the_host_did(prepared):
    """transforms.normalize_batch (in the step, on the device) of an eval batch: the
    normalised uint8 pixels (the other pipelines' lookup table), padding 0."""
    import jax

    from figkd_jax.data import augment, transforms

    info = data.get_info("imagenet2012")
    batch = list(data.eval_stream(prepared, global_batch_size=4))[-1]  # 7 images: 1 padding
    assert batch["image"].dtype == np.uint8 and not batch["mask"].all()
    for dtype in ("float32", "bfloat16"):
        normalised = jax.jit(transforms.normalize_batch, static_argnums=(1, 2))(batch, info, dtype)
        image = np.asarray(normalised["image"])
        assert image.dtype == transforms.compute_dtype(dtype)
        host = augment.normalize(batch["image"], info.mean, info.std).numpy()
        mask = batch["mask"]
        # The table's values are x * scale + shift rounded after each operation, as
        # TensorFlow's host normalisation computes them; bfloat16 keeps 8 bits of them.
        tolerance = 0 if dtype == "float32" else 2.0**-8 * np.abs(host).max()
        np.testing.assert_allclose(
            image[mask].astype(np.float32), host[mask], rtol=0, atol=tolerance
        )
        assert not image[~mask].any()
