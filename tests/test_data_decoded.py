"""Fine-grained splits decoded once (figkd_jax.data.decoded) against the decode-every-epoch path
and torchvision's RandomResizedCrop."""

import io
import itertools
import math
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from figkd_jax import data
from figkd_jax.data import augment, decoded, pipeline, sources
from tests.test_data_augment import torchvision_resized_crop_params

INFO = data.get_info("caltech_birds2011")
SPEC = INFO.augment
OUT = SPEC.crop_size
REPO = Path(__file__).resolve().parents[1]


def _expected_grid(draws, height, width, cache_size):
    """The documented sampling grid, in NumPy: torchvision's box, PIL's half-pixel centres
    clamped to the crop's edge pixels, scaled onto the canvas about pixel edges."""
    top, left, crop_h, crop_w = torchvision_resized_crop_params(
        draws, height, width, SPEC.scale, SPEC.ratio
    )
    centres = np.arange(OUT) + 0.5

    def axis(start, length, side):
        original = np.clip(start + centres * length / OUT - 0.5, start, start + length - 1)
        return np.clip((original + 0.5) * cache_size / side - 0.5, 0, cache_size - 1)

    rows, cols = axis(top, crop_h, height), axis(left, crop_w, width)
    return rows, cols[::-1] if draws[-1] < 0.5 else cols


@pytest.mark.parametrize("height, width", [(375, 500), (500, 333), (200, 640), (48, 40)])
def test_sampling_grid_is_torchvisions_crop_on_many_draws(height, width):
    cache_size = 320
    grid = tf.function(lambda d: decoded.sample_grid(d, [height, width], SPEC, cache_size))
    draws = np.random.default_rng(height + width).random((500, augment.RESIZED_CROP_FLIP_DRAWS))
    draws = draws.astype(np.float32)  # the pipeline's draws are float32
    flips = 0
    for row in draws:
        rows, cols = grid(tf.constant(row))
        expected_rows, expected_cols = _expected_grid(row.astype(np.float64), height, width, 320)
        # float64 arithmetic, one rounding to float32: half an ulp of coordinates below 512.
        np.testing.assert_allclose(rows.numpy(), expected_rows, rtol=0, atol=3e-5)
        np.testing.assert_allclose(cols.numpy(), expected_cols, rtol=0, atol=3e-5)
        flips += row[-1] < 0.5
    assert 200 < flips < 300  # flips with probability 1/2 (500 draws: 4.5 sigma)


def _random_image(height, width, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, 256, (height, width, 3)), tf.uint8)


def _crop(canvas, row, size, cache_size):
    rows, cols = decoded.sample_grid(tf.constant(row, tf.float32), size, SPEC, cache_size)
    return decoded.bilinear_crops(
        canvas[None], tf.constant([0]), rows[None], cols[None], 1.0, 0.0, tf.float32
    )[0]


def test_upsampling_crops_of_a_full_resolution_canvas_are_the_reference_pixels():
    # A square image at its own size is its canvas; every crop is smaller than the output, where
    # antialiased bilinear resizing is plain bilinear: the two paths compute the same weights.
    image = _random_image(48, 48)
    canvas, size = decoded.to_canvas(tf.io.encode_png(image).numpy(), 48)
    np.testing.assert_array_equal(canvas, image.numpy())
    assert size == (48, 48)
    draws = np.random.default_rng(1).random((12, augment.RESIZED_CROP_FLIP_DRAWS))
    for row in draws.astype(np.float32):
        box = augment.sample_resized_crop(tf.constant(row), 48, 48, SPEC.scale, SPEC.ratio)
        reference = augment.resized_crop(image, *box, OUT).numpy()
        reference = reference[:, ::-1] if row[-1] < 0.5 else reference
        # Two float32 evaluations of the same convex weights on values <= 255: a few ulps.
        np.testing.assert_allclose(_crop(canvas, row, size, 48), reference, rtol=0, atol=2e-3)


def test_crops_of_a_photograph_from_the_canvas_are_close_to_the_reference():
    from sklearn.datasets import load_sample_image

    photo = tf.image.resize(load_sample_image("china.jpg"), [375, 500], antialias=True)
    photo = tf.cast(tf.round(photo), tf.uint8)
    canvas, size = decoded.to_canvas(tf.io.encode_png(photo).numpy(), 320)
    draws = np.random.default_rng(2).random((16, augment.RESIZED_CROP_FLIP_DRAWS))
    draws[:, -1] = 1.0  # no flip
    differences = []
    for row in draws.astype(np.float32):
        box = augment.sample_resized_crop(tf.constant(row), 375, 500, SPEC.scale, SPEC.ratio)
        reference = augment.resized_crop(photo, *box, OUT)
        differences.append(np.abs(_crop(canvas, row, size, 320) - reference).mean())
    # Lost resolution and aliasing only: 1.6-1.9 grey levels measured (the benchmark's table),
    # less than a JPEG quality-90 re-encoding; a box one canvas pixel off already adds ~2.
    assert np.mean(differences) < 3.0


def _png(image: tf.Tensor) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image.numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def square_split(monkeypatch):
    """Ten 32x32 images served as both splits of caltech_birds2011 (no TFDS records).

    PNG, whose decoding is exact: PIL (the decoded-once path, as torchvision) and TensorFlow
    (the decode-every-epoch path) decode JPEG chroma differently.
    """
    images = np.array([_png(_random_image(32, 32, seed)) for seed in range(10)], dtype=object)
    split = sources.Split(images, np.arange(10, dtype=np.int32) % 3)
    monkeypatch.setattr(pipeline, "load_split", lambda *_: split)
    yield split
    decoded.decoded_train_split.cache_clear()
    decoded.decoded_eval_images.cache_clear()


def _config(**fields):
    return ml_collections.ConfigDict({"name": "caltech_birds2011", **fields})


def _take(stream, count):
    return list(itertools.islice(stream, count))


def test_decoded_stream_is_the_decode_every_epoch_stream(square_split):
    # At cache_size = image size the canvas is the decoded image, and every crop upsamples:
    # the same examples, boxes, flips and normalisation as the reference path, up to rounding.
    steps = 2 * (10 // 4) + 1  # into the third epoch
    once = _take(data.train_stream(_config(cache_size=32), global_batch_size=4, seed=7), steps)
    every = _take(data.train_stream(_config(decode_once=False), global_batch_size=4, seed=7), steps)
    for a, b in zip(once, every, strict=True):
        np.testing.assert_array_equal(a["label"], b["label"])
        # 2e-3 grey levels (see the full-resolution test) over std 0.225 * 255.
        np.testing.assert_allclose(a["image"], b["image"], rtol=0, atol=5e-5)


def test_decoded_stream_is_deterministic_and_resumes_exactly(square_split):
    first = _take(data.train_stream(_config(), global_batch_size=4, seed=3), 6)
    again = _take(data.train_stream(_config(), global_batch_size=4, seed=3), 6)
    resumed = _take(data.train_stream(_config(), global_batch_size=4, seed=3, start_step=3), 3)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(first[3:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert first[0]["image"].shape == (4, OUT, OUT, 3) and first[0]["image"].dtype == np.float32
    half = next(data.train_stream(_config(), global_batch_size=4, seed=3, dtype="bfloat16"))
    # bfloat16 keeps 8 significant bits: rounding error <= 2**-8 of |values| <= 2.7.
    np.testing.assert_allclose(
        half["image"].astype(np.float32), first[0]["image"], rtol=0, atol=2.7 * 2**-8
    )


def test_decoded_eval_is_the_decode_every_epoch_eval_up_to_pils_rounding(square_split):
    once = list(data.eval_stream(_config(), global_batch_size=4))
    every = list(data.eval_stream(_config(decode_once=False), global_batch_size=4))
    assert len(once) == len(every) == 3
    for a, b in zip(once, every, strict=True):
        np.testing.assert_array_equal(a["mask"], b["mask"])
        np.testing.assert_array_equal(a["label"], b["label"])
        # PIL resizes in two passes, rounding to uint8 after each (<= 0.5 grey levels, carried
        # through the second pass's convex weights, plus <= 0.5): 1 grey level / (255 * std).
        np.testing.assert_allclose(a["image"], b["image"], rtol=0, atol=1 / (255 * 0.224) + 1e-5)
    assert not once[-1]["image"][2:].any()  # padding is blank


def test_memory_budget():
    info = data.get_info("stanford_dogs")
    assert decoded.train_cache_bytes(12_000, 320) == 12_000 * (320 * 320 * 3 + 8)
    assert decoded.eval_cache_bytes(8_580, info.augment) == 8_580 * 224 * 224 * 3
    decoded.check_fits(info, 320, available=16 * 2**30)
    with pytest.raises(ValueError) as raised:
        decoded.check_fits(info, 320, available=8 * 2**30)
    assert str(raised.value) == (
        "the decoded stanford_dogs splits need 4.6 GiB of host memory, with room for the rest "
        "twice that, but 8.0 GiB are available: set dataset.cache_size below 320 or "
        "dataset.decode_once=False"
    )
    assert decoded.available_host_bytes() > 0


def test_check_host_memory_before_training(monkeypatch):
    monkeypatch.setattr(decoded, "available_host_bytes", lambda: 4 * 2**30)
    digits = ml_collections.ConfigDict({"name": "digits"})
    data.check_host_memory(digits, data.get_info("digits"))  # nothing decoded
    data.check_host_memory(_config(decode_once=False), INFO)  # nothing decoded
    with pytest.raises(ValueError, match=r"the decoded caltech_birds2011 splits need 2\.5 GiB"):
        data.check_host_memory(_config(), INFO)
    data.check_host_memory(_config(cache_size=64), INFO)  # 0.9 GiB, mostly the eval crops


def test_trainer_refuses_a_cache_that_cannot_fit_before_touching_the_workdir(monkeypatch, tmp_path):
    from figkd_jax.trainer import run_setup, train
    from tests.train_worker import digits_config

    config = digits_config()
    config.dataset.update(name="caltech_birds2011", cache_size=100_000)  # 167 TiB
    monkeypatch.setattr(sources, "check_prepared", lambda _: None)
    monkeypatch.setattr(sources, "prepared_info", lambda _: INFO)
    with pytest.raises(run_setup.ConfigError, match=r"config\.dataset: the decoded caltech_"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"decode_once": "yes"}, "data_config.decode_once must be True or False, got 'yes'"),
        ({"cache_size": 0}, "data_config.cache_size must be an int >= 1, got 0"),
        ({"cache_size": 2.5}, "data_config.cache_size must be an int >= 1, got 2.5"),
    ],
)
def test_bad_fields(fields, message):
    with pytest.raises(ValueError, match=message):
        sources.resolve(_config(**fields))


@pytest.mark.slow
def test_benchmark_help_and_quick_run():
    script = [sys.executable, str(REPO / "benchmarks" / "input_pipeline.py")]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    shown = subprocess.run([*script, "--help"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and "--quick" in shown.stdout
    quick = subprocess.run(
        [*script, "--quick", "--datasets", "digits", "stanford40"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert quick.returncode == 0, quick.stderr[-2000:]
    digits_row = next(r for r in quick.stdout.splitlines() if r.startswith("| digits | 8x8x1 |"))
    assert all(float(v.replace(",", "")) > 0 for v in digits_row.split("|")[3:-1])
    assert "| stanford40 | 400x300 | decoded once |" in quick.stdout
    assert "| stanford40 | | ratio |" in quick.stdout
    assert math.isfinite(float(quick.stdout.strip().splitlines()[-1].split("|")[-2]))


# torchvision's Resize(256) + CenterCrop(224) of PIL images, by hand from its definition
# (torchvision/transforms/functional.py: `_compute_resized_output_size`, `center_crop`): the
# shorter side becomes 256, the longer int(256 * long / short), both 341 for 4:3; PIL's
# bilinear resize; the crop starts at int(round((side - 224) / 2)), and round(58.5) is 58.
# (width, height) -> (resized width, resized height, crop left, crop top).
TORCHVISION_EVAL_GEOMETRY = {
    (500, 375): (341, 256, 58, 16),
    (640, 480): (341, 256, 58, 16),
    (375, 500): (256, 341, 16, 58),
    (333, 500): (256, 384, 16, 80),
}


@pytest.mark.parametrize("size", sorted(TORCHVISION_EVAL_GEOMETRY))
def test_eval_crops_of_non_square_images_are_torchvisions_pixel_for_pixel(size):
    assert (SPEC.eval_resize, SPEC.crop_size) == (256, 224)
    width, height = size
    # Noise: a crop one pixel off, or a resize one pixel larger, changes most pixels.
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), np.uint8)
    image = PIL.Image.fromarray(pixels)
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")  # lossless: both sides see these pixels
    resized_w, resized_h, left, top = TORCHVISION_EVAL_GEOMETRY[size]
    reference = np.asarray(
        image.resize((resized_w, resized_h), PIL.Image.Resampling.BILINEAR).crop(
            (left, top, left + OUT, top + OUT)
        )
    )
    np.testing.assert_array_equal(decoded.eval_crop(encoded.getvalue(), SPEC), reference)
    # The decode-every-epoch path (TensorFlow's antialiased bilinear resize, in float): the
    # same box, up to PIL's rounding to uint8 after each of its two passes (<= 1 grey level).
    every_epoch = augment.resize_center_crop(tf.constant(pixels), SPEC.eval_resize, OUT)
    np.testing.assert_allclose(every_epoch, reference, rtol=0, atol=1 + 1e-3)
