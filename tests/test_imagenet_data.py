"""ImageNet (TFDS imagenet2012) from a tiny manual download in the original archive layout,
read back through the streamed pipeline: labels, per-process file sharding, determinism,
resume, and evaluation over 1 and 2 processes.

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
from figkd_jax.data import imagenet, prepare

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


def _gray_levels(images: np.ndarray) -> np.ndarray:
    info = data.get_info("imagenet2012")
    pixels = images.astype(np.float32) * np.array(info.std) + np.array(info.mean)
    return pixels.mean(axis=(1, 2, 3)) * 255


def _train_batches(
    config, steps, *, start_step=0, process_index=0, process_count=1, seed=3, batch=4
):
    stream = data.train_stream(
        config,
        global_batch_size=batch,
        seed=seed,
        start_step=start_step,
        process_index=process_index,
        process_count=process_count,
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
    assert images.shape == (24, 224, 224, 3) and images.dtype == np.float32
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
def test_the_imagenet_config_trains_and_evaluates_on_the_tiny_archive(prepared, tmp_path):
    """configs/imagenet.py as launched, with a converted torchvision teacher: one epoch
    (3 steps of 8) and its evaluation over every validation image."""
    pytest.importorskip("torch")
    from configs import imagenet as imagenet_config
    from figkd_jax.tools import convert_torch
    from figkd_jax.trainer import train
    from tests.torch_references import torchvision_references

    torchvision_references(str(tmp_path), "resnet34")
    pth = str(tmp_path / "resnet34.pth")
    convert_torch.main([pth, "--model", "resnet34_imagenet", "--out", str(tmp_path / "teacher")])
    config = imagenet_config.get_config("teacher=resnet34,student=resnet18,method=dkd")
    config.dataset.data_dir = prepared.data_dir
    config.teacher.checkpoint = str(tmp_path / "teacher")
    config.batch_size, config.eval_batch_size, config.num_epochs = 8, 8, 1
    config.optim.lr_decay_epochs = ()
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert (results["dataset"], results["model"]) == ("imagenet2012", "resnet18_imagenet")
    assert results["epochs_done"] == 1 and 0 <= results["last_top1"] <= 1
    assert results["teacher_eval"] is not None  # the teacher evaluated over the split too
