"""On-device input: the same batches as the TF pipeline, its distributions, and multi-step scans.

The tests that compare with TensorFlow are skipped where it is missing (the lent GPU machine,
whose check runs the others: ``benchmarks/gpu_check.py``); their plans are then made with NumPy.
"""

import dataclasses
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.stats
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from figkd_jax.data import device_input, digits, transforms
from figkd_jax.data.registry import get_info
from figkd_jax.models.layers import BatchNorm
from figkd_jax.trainer import run_setup, steps
from tests.tolerances import assert_close_after_steps
from tests.train_worker import digits_config

try:
    import tensorflow as tf

    from figkd_jax import data
    from figkd_jax.data import pipeline, sources
except ImportError:
    tf = None
needs_tf = pytest.mark.skipif(tf is None, reason="compares with TensorFlow, not installed")

DIGITS = ml_collections.ConfigDict({"name": "digits"})
MESH = Mesh(np.asarray(jax.devices()), ("data",))
REPLICATED = NamedSharding(MESH, P())
BATCH_SHARDED = NamedSharding(MESH, P("data"))


def _batch_fn(info, dtype="float32"):
    return jax.jit(
        lambda arrays, plan, step: device_input.batch_at(
            arrays, plan, step, info=info, dtype=dtype, sharding=BATCH_SHARDED
        )
    )


def _device_batches(dataset, steps, dtype="float32"):
    batch_at = _batch_fn(dataset.info, dtype)
    plans = {}
    batches = []
    for step in range(steps):
        epoch = step // dataset.steps_per_epoch
        plans.setdefault(epoch, dataset.plan(epoch))
        batches.append(jax.device_get(batch_at(dataset.arrays, plans[epoch], step)))
    return batches


def _random_plan(num_examples, global_batch_size, seed=0):
    """A plan of ``epoch_plan``'s form (a random order cut into batches, random draws), made
    with NumPy for the tests that do not check the plan itself."""
    rng = np.random.default_rng(seed)
    num_steps = num_examples // global_batch_size
    order = rng.permutation(num_examples)[: num_steps * global_batch_size].astype(np.int32)
    return {
        "index": order.reshape(num_steps, global_batch_size),
        "draws": rng.random((num_steps, global_batch_size, 3), dtype=np.float32),
    }


def _assert_same_as_host_stream(device_batches, host_batches):
    # Exact: the same integer transforms and the same normalisation table on both paths.
    for ours, theirs in zip(device_batches, host_batches, strict=True):
        np.testing.assert_array_equal(ours["label"], theirs["label"])
        np.testing.assert_array_equal(ours["image"], theirs["image"])


@needs_tf
def test_digits_batches_equal_the_tf_stream_across_epochs():
    dataset = device_input.DeviceDataset.create(
        DIGITS, seed=3, global_batch_size=200, sharding=REPLICATED
    )
    assert dataset.steps_per_epoch == 7 and dataset.num_examples == 1400
    steps = dataset.steps_per_epoch + 2
    tf_batches = itertools.islice(data.train_stream(DIGITS, global_batch_size=200, seed=3), steps)
    ours = _device_batches(dataset, steps)
    assert ours[0]["image"].shape == (200, 8, 8, 1) and ours[0]["image"].dtype == np.float32
    assert ours[0]["label"].dtype == np.int32
    _assert_same_as_host_stream(ours, list(tf_batches))


def _mock_cifar(num_examples):
    info = get_info("cifar100")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (num_examples, *info.image_shape), dtype=np.uint8)
    labels = rng.integers(0, info.num_classes, num_examples).astype(np.int32)
    return info, images, labels


@needs_tf
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_mock_cifar_batches_equal_the_tf_stream(monkeypatch, dtype):
    info, images, labels = _mock_cifar(100)  # 3 steps of 32, 4 examples dropped per epoch
    monkeypatch.setattr(pipeline, "load_split", lambda *_: sources.Split(images, labels))
    stream = data.train_stream(
        ml_collections.ConfigDict({"name": "cifar100"}), global_batch_size=32, seed=7, dtype=dtype
    )
    dataset = device_input.DeviceDataset.from_arrays(
        images, labels, info, seed=7, global_batch_size=32, sharding=REPLICATED
    )
    ours = _device_batches(dataset, 5, dtype)
    assert ours[0]["image"].dtype == (jnp.bfloat16 if dtype == "bfloat16" else np.float32)
    _assert_same_as_host_stream(ours, list(itertools.islice(stream, 5)))


@needs_tf
def test_mock_tiny_imagenet_batches_equal_the_tf_stream(monkeypatch):
    info = get_info("tiny_imagenet")
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (40, *info.image_shape), dtype=np.uint8)
    labels = rng.integers(0, info.num_classes, 40).astype(np.int32)
    monkeypatch.setattr(pipeline, "load_split", lambda *_: sources.Split(images, labels))
    config = ml_collections.ConfigDict({"name": "tiny_imagenet"})
    stream = data.train_stream(config, global_batch_size=16, seed=5)
    dataset = device_input.DeviceDataset.from_arrays(
        images, labels, info, seed=5, global_batch_size=16, sharding=REPLICATED
    )
    ours = _device_batches(dataset, 3)  # two steps per epoch: into the second epoch
    _assert_same_as_host_stream(ours, list(itertools.islice(stream, 3)))


@needs_tf
def test_offsets_are_uniform_and_independent_and_flips_fair():
    pad, num_examples = 4, 50_000
    plan = device_input.epoch_plan(0, 2, num_examples, 50)
    draws = plan["draws"].reshape(-1, transforms.PAD_CROP_FLIP_DRAWS)
    rows, cols, flips = jax.jit(transforms.sample_pad_crop_flip, static_argnums=(1, 2))(
        draws, pad, True
    )
    side = 2 * pad + 1
    assert int(rows.min()) == int(cols.min()) == 0 and int(rows.max()) == int(cols.max()) == 2 * pad
    joint = np.bincount(np.asarray(rows * side + cols), minlength=side**2)
    statistic = scipy.stats.chisquare(joint).statistic
    assert statistic < scipy.stats.chi2.ppf(1 - 1e-6, side**2 - 1)
    flip_rate = float(np.mean(flips))
    assert abs(flip_rate - 0.5) < 5 * np.sqrt(0.25 / num_examples)


@needs_tf
def test_an_epoch_uses_each_example_at_most_once_and_drops_the_remainder():
    num_examples, batch = 1003, 100
    first, second = (device_input.epoch_plan(5, e, num_examples, batch) for e in (0, 1))
    for plan in (first, second):
        assert plan["index"].shape == (10, 100) and plan["draws"].shape == (10, 100, 3)
        flat = plan["index"].ravel()
        assert len(set(flat)) == 1000 and flat.min() >= 0 and flat.max() < num_examples
    assert not np.array_equal(first["index"], second["index"])
    dropped = lambda plan: set(range(num_examples)) - set(plan["index"].ravel())
    assert len(dropped(first)) == 3 and dropped(first) != dropped(second)
    # The documented rule: the epoch's TF order, cut into batches.
    order = pipeline.epoch_order(5, tf.constant(1, tf.int64), num_examples).numpy()
    np.testing.assert_array_equal(second["index"].ravel(), order[:1000])


@needs_tf
def test_same_seed_same_plans_other_seed_other_plans():
    plan = lambda seed: device_input.epoch_plan(seed, 3, 500, 50)
    for key in ("index", "draws"):
        np.testing.assert_array_equal(plan(1)[key], plan(1)[key])
        assert not np.array_equal(plan(1)[key], plan(2)[key])


def test_batches_inside_a_scan_equal_batches_outside():
    info, images, labels = _mock_cifar(64)
    dataset = device_input.DeviceDataset.from_arrays(
        images, labels, info, seed=0, global_batch_size=16, sharding=REPLICATED
    )
    plan = jax.device_put(_random_plan(64, 16), REPLICATED)
    outside = _batch_fn(info)

    @dataclasses.dataclass
    class Counter:
        step: jax.Array

    jax.tree_util.register_dataclass(Counter, data_fields=["step"], meta_fields=[])

    def scan(arrays, plan, start):
        batch_fn = lambda step: device_input.batch_at(arrays, plan, step, info=info)
        step_fn = lambda state, batch: (Counter(state.step + 1), batch)
        return device_input.scan_train_steps(step_fn, Counter(start), batch_fn, 6)

    # Steps 5..10 (4 steps per epoch) wrap around the plan; the batch of a step
    # depends on nothing but (plan, step), not on the steps run before it.
    counter, batches = jax.jit(scan)(dataset.arrays, plan, jnp.int32(5))
    assert int(counter.step) == 11
    for i, step in enumerate(range(5, 11)):
        expected = outside(dataset.arrays, plan, step)
        np.testing.assert_array_equal(batches["image"][i], expected["image"])
        np.testing.assert_array_equal(batches["label"][i], expected["label"])
    np.testing.assert_array_equal(batches["image"][0], batches["image"][4])


def test_bad_arguments_are_rejected():
    info, images, labels = _mock_cifar(10)
    create = lambda **kw: device_input.DeviceDataset.from_arrays(
        **{
            "images": images,
            "labels": labels,
            "info": info,
            "seed": 0,
            "global_batch_size": 5,
            "sharding": REPLICATED,
        }
        | kw
    )
    with pytest.raises(ValueError, match=r"images must be uint8 \[N, 32, 32, 3\]"):
        create(images=images.astype(np.float32))
    with pytest.raises(ValueError, match=r"labels must have shape \[10\]"):
        create(labels=labels[:3])
    with pytest.raises(ValueError, match=r"global_batch_size must be in \[1, 10\]"):
        create(global_batch_size=11)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        create(seed=-1)
    with pytest.raises(ValueError, match="needs a fixed-resolution dataset"):
        create(info=get_info("stanford_dogs"))
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        device_input.scan_train_steps(None, None, None, 0)


class _TinyNet(nn.Module):
    """Conv + BatchNorm + linear head: the smallest student with batch statistics."""

    num_classes: int

    @nn.compact
    def __call__(self, x, *, train):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.relu(BatchNorm()(x, train=train))
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


@jax.default_matmul_precision("float32")  # no TF32 on GPUs: programs may pick other kernels
def test_scanned_train_steps_equal_single_jitted_steps():
    config = digits_config(batch_size=16)
    config.method.name = "figkd"
    config.teacher.model = "resnet8"  # validated, then replaced by a tiny net
    config.teacher.checkpoint = "unused"
    run = run_setup.build_run(config)
    run = dataclasses.replace(run, student=_TinyNet(num_classes=10))
    teacher = _TinyNet(num_classes=10)
    teacher_variables = teacher.init(jax.random.key(1), jnp.zeros((1, 8, 8, 1)), train=False)
    dataset = device_input.DeviceDataset.from_arrays(
        *digits.load_split("train"),
        get_info("digits"),
        seed=0,
        global_batch_size=16,
        sharding=REPLICATED,
    )
    plan = jax.device_put(_random_plan(dataset.num_examples, 16), REPLICATED)
    step_fn = lambda state, batch: steps.make_train_step(run, teacher)(
        state, batch, teacher_variables
    )
    batch_fn = lambda step: device_input.batch_at(dataset.arrays, plan, step, info=dataset.info)
    num_steps = 4

    single = jax.jit(lambda state: step_fn(state, batch_fn(state.step)))
    state = run_setup.initial_state(run)
    single_metrics = []
    for _ in range(num_steps):
        state, metrics = single(state)
        single_metrics.append(metrics["loss"])

    scanned = jax.jit(lambda state: device_input.scan_train_steps(step_fn, state, batch_fn, 4))
    scanned_state, scanned_metrics = scanned(run_setup.initial_state(run))

    assert int(scanned_state.step) == int(state.step) == num_steps
    assert scanned_metrics["loss"].shape == (num_steps,)
    # Not bitwise: XLA fuses the loop body differently, which reorders float32 reductions.
    assert_close_after_steps(scanned_metrics["loss"], single_metrics, "loss")
    for a, b in zip(jax.tree.leaves(scanned_state), jax.tree.leaves(state), strict=True):
        assert_close_after_steps(a, b)
    assert single_metrics[-1] < single_metrics[0]  # the steps do train
