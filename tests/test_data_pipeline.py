"""Train/eval stream rules on the embedded digits: determinism, resumption, sharding, coverage."""

import hashlib
import itertools

import ml_collections
import ml_dtypes
import numpy as np
import pytest

from figkd_jax import data
from figkd_jax.data import pipeline

DIGITS = ml_collections.ConfigDict({"name": "digits"})
STEPS_PER_EPOCH = 1400 // 200  # digits train split, global batch 200


def _take(stream, count):
    return list(itertools.islice(stream, count))


def _assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def _normalized_digits(split):
    images, labels = data.load_arrays(DIGITS, split)
    info = data.get_info("digits")
    return (images / 255.0 - np.array(info.mean)) / np.array(info.std), labels


def test_registry():
    assert data.names() == [
        "digits",
        "cifar100",
        "tiny_imagenet",
        "imagenet2012",
        "caltech_birds2011",
        "stanford_dogs",
        "mit67",
        "stanford40",
    ]
    for name in data.names():  # the pipeline picks its path from either
        info = data.get_info(name)
        fixed_size_augment = isinstance(info.augment, (data.PadCropFlip, data.RotateFlip))
        assert info.fixed_resolution == fixed_size_augment
    assert data.get_info("cifar100").augment == data.PadCropFlip(pad=4, flip=True)
    # mdistiller's TinyImageNet: RandomRotation(20) + flip, its own statistics.
    tiny = data.get_info("tiny_imagenet")
    assert tiny.augment == data.RotateFlip(degrees=20.0, flip=True)
    assert (tiny.mean, tiny.std) == ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))
    assert data.get_info("stanford_dogs").image_shape == (224, 224, 3)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; choose one of digits, "):
        data.get_info("imagenet")


def test_steps_per_epoch():
    assert data.steps_per_epoch(50_000, 64) == 781
    assert data.steps_per_epoch(1400, 1400) == 1
    for bad in (0, 1401):
        with pytest.raises(ValueError, match=r"global_batch_size must be in \[1, 1400\]"):
            data.steps_per_epoch(1400, bad)


def test_digits_split_is_fixed_and_statistics_match_the_registry():
    images, labels = data.load_arrays(DIGITS, "train")
    test_images, test_labels = data.load_arrays(DIGITS, "test")
    assert images.shape == (1400, 8, 8, 1) and images.dtype == np.uint8
    assert test_images.shape == (397, 8, 8, 1) and test_labels.dtype == np.int32
    assert sorted(set(images.ravel())) == [round(v * 255 / 16) for v in range(17)]
    digest = hashlib.sha256(test_images.tobytes() + test_labels.tobytes()).hexdigest()
    assert digest[:16] == "15167e489b4b6b56"  # the test split must never change
    info = data.get_info("digits")
    assert abs(images.mean() / 255 - info.mean[0]) < 1e-4
    assert abs(images.std() / 255 - info.std[0]) < 1e-4
    assert np.bincount(labels).min() >= 135


def test_train_batches_shapes_dtypes_and_values():
    batch = next(data.train_stream(DIGITS, global_batch_size=200, seed=0))
    assert batch["image"].shape == (200, 8, 8, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (200,) and batch["label"].dtype == np.int32
    low, high = _normalized_digits("train")[0].min(), _normalized_digits("train")[0].max()
    assert low - 1e-5 <= batch["image"].min() and batch["image"].max() <= high + 1e-5
    half = next(data.train_stream(DIGITS, global_batch_size=200, seed=0, dtype="bfloat16"))
    assert half["image"].dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(half["image"].astype(np.float32), batch["image"], atol=0.02)


def test_same_seed_same_stream_and_the_epoch_is_the_documented_order():
    first = _take(data.train_stream(DIGITS, global_batch_size=200, seed=3), STEPS_PER_EPOCH + 2)
    second = _take(data.train_stream(DIGITS, global_batch_size=200, seed=3), STEPS_PER_EPOCH + 2)
    _assert_same_batches(first, second)
    _, labels = data.load_arrays(DIGITS, "train")
    order = pipeline.epoch_order(3, np.int64(0), 1400).numpy()
    assert sorted(order) == list(range(1400))
    epoch_labels = np.concatenate([b["label"] for b in first[:STEPS_PER_EPOCH]])
    np.testing.assert_array_equal(epoch_labels, labels[order[: STEPS_PER_EPOCH * 200]])


def test_different_seeds_differ():
    first = next(data.train_stream(DIGITS, global_batch_size=200, seed=0))
    second = next(data.train_stream(DIGITS, global_batch_size=200, seed=1))
    assert not np.array_equal(first["label"], second["label"])


@pytest.mark.parametrize("start_step", [3, STEPS_PER_EPOCH - 1, STEPS_PER_EPOCH + 2])
def test_resumed_stream_is_the_tail_of_the_uninterrupted_one(start_step):
    total = STEPS_PER_EPOCH + 4
    full = _take(data.train_stream(DIGITS, global_batch_size=200, seed=5), total)
    resumed = data.train_stream(DIGITS, global_batch_size=200, seed=5, start_step=start_step)
    _assert_same_batches(full[start_step:], _take(resumed, total - start_step))


def test_augmentation_depends_on_the_example_not_on_the_batching():
    # Epoch 0 has the same order whatever the batch size, so two batches of 100 are one of 200.
    big = next(data.train_stream(DIGITS, global_batch_size=200, seed=9))
    small = _take(data.train_stream(DIGITS, global_batch_size=100, seed=9), 2)
    np.testing.assert_array_equal(big["image"], np.concatenate([b["image"] for b in small]))
    np.testing.assert_array_equal(big["label"], np.concatenate([b["label"] for b in small]))


def test_process_shards_concatenate_to_the_global_batch():
    steps = STEPS_PER_EPOCH + 1
    whole = _take(data.train_stream(DIGITS, global_batch_size=200, seed=2, start_step=4), steps)
    shards = [
        _take(
            data.train_stream(
                DIGITS,
                global_batch_size=200,
                seed=2,
                start_step=4,
                process_index=p,
                process_count=2,
            ),
            steps,
        )
        for p in range(2)
    ]
    assert shards[0][0]["image"].shape == (100, 8, 8, 1)
    joined = [
        {key: np.concatenate([a[key], b[key]]) for key in a} for a, b in zip(*shards, strict=True)
    ]
    _assert_same_batches(whole, joined)


@pytest.mark.parametrize("global_batch_size, num_batches", [(100, 4), (397, 1), (512, 1)])
def test_eval_covers_every_example_once(global_batch_size, num_batches):
    stream = data.eval_stream(DIGITS, global_batch_size=global_batch_size)
    for _ in range(2):  # re-iterable
        batches = list(stream)
        assert len(batches) == len(stream) == num_batches
        for batch in batches:
            assert batch["image"].shape == (global_batch_size, 8, 8, 1)
        mask = np.concatenate([b["mask"] for b in batches])
        np.testing.assert_array_equal(mask, np.arange(num_batches * global_batch_size) < 397)
        images = np.concatenate([b["image"] for b in batches])
        labels = np.concatenate([b["label"] for b in batches])
        expected_images, expected_labels = _normalized_digits("test")
        np.testing.assert_allclose(images[:397], expected_images, atol=1e-5)
        np.testing.assert_array_equal(labels[:397], expected_labels)
        assert not images[397:].any() and not labels[397:].any()


def test_eval_process_shards_concatenate_to_the_global_batch():
    whole = list(data.eval_stream(DIGITS, global_batch_size=100))
    shards = [
        list(data.eval_stream(DIGITS, global_batch_size=100, process_index=p, process_count=4))
        for p in range(4)
    ]
    for step, batch in enumerate(whole):
        for key in ("image", "label", "mask"):
            np.testing.assert_array_equal(
                batch[key], np.concatenate([shard[step][key] for shard in shards])
            )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"num_devices": 8, "global_batch_size": 100},
            "global batch size 100 is not divisible by the 8 devices; use a multiple of 8",
        ),
        ({"process_count": 3}, "global batch size 200 is not divisible by the 3 processes"),
        ({"process_index": 2, "process_count": 2}, r"process_index must be in \[0, 1\], got 2"),
        ({"dtype": "float16"}, "dtype must be one of float32, bfloat16, got 'float16'"),
        ({"seed": -1}, r"seed must be an int in \[0, 2\*\*63 - 1\], got -1"),
        ({"start_step": -1}, "start_step must be >= 0, got -1"),
        ({"global_batch_size": 2000}, r"global_batch_size must be in \[1, 1400\]"),
    ],
)
def test_train_stream_rejects_bad_arguments(kwargs, message):
    arguments = {"global_batch_size": 200, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        data.train_stream(DIGITS, **arguments)


def test_config_errors_and_defaults():
    with pytest.raises(ValueError, match=r"data_config\.name is required"):
        data.check_prepared(ml_collections.ConfigDict({"data_dir": None}))
    with pytest.raises(ValueError, match="digits split must be one of"):
        data.load_arrays(ml_collections.ConfigDict({"name": "digits"}), "validation")
    with pytest.raises(ValueError, match="load_arrays needs a fixed-resolution dataset"):
        data.load_arrays(ml_collections.ConfigDict({"name": "mit67"}), "train")
    config = data.default_data_config("digits")
    assert config.to_dict() == {
        "name": "digits",
        "data_dir": None,
        "manual_dir": None,
        "train_split": None,
        "eval_split": None,
        "decode_once": None,
        "cache_size": None,
    }
    data.check_prepared(config)
    assert data.prepared_info(config) == data.get_info("digits")


def test_not_prepared_errors_name_the_command_files_and_directories(tmp_path):
    cifar = ml_collections.ConfigDict({"name": "cifar100", "data_dir": str(tmp_path)})
    with pytest.raises(data.DatasetNotPreparedError) as raised:
        data.check_prepared(cifar)
    assert str(raised.value) == (
        f"cifar100 is not prepared in {tmp_path}: run `python -m figkd_jax.data.prepare "
        f"--dataset=cifar100 --data_dir={tmp_path}` where the internet is reachable, or copy "
        f"a prepared cifar100/3.0.2 folder there"
    )
    manual = tmp_path / "manual"
    mit67 = ml_collections.ConfigDict(
        {"name": "mit67", "data_dir": str(tmp_path), "manual_dir": str(manual)}
    )
    with pytest.raises(FileNotFoundError, match=r"download indoorCVPR_09\.tar, TrainImages\.txt, "):
        data.check_prepared(mit67)
    manual.mkdir()
    for name in ("indoorCVPR_09.tar", "TrainImages.txt"):
        (manual / name).write_text("")
    with pytest.raises(data.DatasetNotPreparedError) as raised:
        data.train_stream(mit67, global_batch_size=2, seed=0)
    assert (
        f"download TestImages.txt from https://web.mit.edu/torralba/www/indoor.html into {manual}"
        in str(raised.value)
    )
    (manual / "TestImages.txt").write_text("")
    with pytest.raises(data.DatasetNotPreparedError, match=f"files found in {manual}"):
        data.check_prepared(mit67)


def test_a_digits_slice_is_that_range_of_the_split():
    from figkd_jax.data import digits

    images, labels = digits.load_split("train")
    sliced_images, sliced_labels = digits.load_split("train[:320]")
    np.testing.assert_array_equal(sliced_images, images[:320])
    np.testing.assert_array_equal(sliced_labels, labels[:320])
    assert np.bincount(sliced_labels).tolist() == [34, 32, 33, 34, 29, 33, 30, 32, 32, 31]
    np.testing.assert_array_equal(
        digits.load_split("test[390:]")[1], digits.load_split("test")[1][390:]
    )
    with pytest.raises(ValueError, match="digits split must be one of"):
        digits.load_split("validation[:10]")
    with pytest.raises(ValueError, match="is empty"):
        digits.load_split("train[5:5]")
