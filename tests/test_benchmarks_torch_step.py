"""The PyTorch twin of the train step (benchmarks/torch_step.py): the same models, batches and
losses as the JAX step, and its quickest path without TensorFlow."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from figkd_jax import losses as jax_losses
from figkd_jax import models, wavelets
from figkd_jax.data import device_input
from figkd_jax.data.registry import get_info
from tests.without_tensorflow import hide_tensorflow, run_script

torch = pytest.importorskip("torch")
from benchmarks import torch_step  # noqa: E402
from benchmarks.torch_models import TORCH_MODELS  # noqa: E402


@pytest.fixture(scope="module")
def without_tf(tmp_path_factory):
    return hide_tensorflow(tmp_path_factory.mktemp("without_tf"))


@pytest.mark.parametrize("name", ["resnet8x4", "resnet32x4", "wrn_16_2", "wrn_40_2"])
def test_torch_models_have_the_flax_models_parameter_counts(name):
    model = models.create(name, num_classes=100)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    ours = models.count_params(shapes["params"])
    theirs = sum(p.numel() for p in TORCH_MODELS[name](100).parameters())
    assert ours == theirs


@pytest.mark.parametrize("level", [1, 2])
def test_torch_losses_equal_the_jax_losses(level):
    rng = np.random.default_rng(0)
    student, teacher = (rng.normal(0, 3, (8, 100)).astype(np.float32) for _ in range(2))
    high = torch_step.haar_high_band(torch.from_numpy(teacher), level).numpy()
    # Means of 2**level float32 numbers of magnitude ~10: rounding ~1e-6.
    np.testing.assert_allclose(high, wavelets.haar_highpass(teacher, level), rtol=0, atol=1e-5)
    ours = torch_step.kd_term(
        torch_step.haar_high_band(torch.from_numpy(student), level),
        torch_step.haar_high_band(torch.from_numpy(teacher), level),
        4.0,
    ).numpy()
    theirs = jax_losses.figkd_loss(student, teacher, temperature=4.0, level=level)
    # A float32 KL of values ~0.1-1 times T^2 = 16: a few ulps of 16.
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 2\\*\\*level"):
        torch_step.haar_high_band(torch.zeros(2, 10), 2)


def test_torch_batches_equal_the_on_device_jax_batches():
    info = get_info("cifar100")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, *info.image_shape), dtype=np.uint8)
    labels = rng.integers(0, info.num_classes, 40).astype(np.int32)
    index = rng.permutation(40)[:16].astype(np.int32)
    draws = rng.random((16, 3), dtype=np.float32)
    draws[:3] = [[0.0, 0.0, 0.0], [np.nextafter(np.float32(1), 0)] * 3, [0.5, 0.5, 0.5]]
    expected = device_input.batch_at(
        {"image": images, "label": labels}, {"index": index[None], "draws": draws[None]}, 0,
        info=info,
    )  # fmt: skip
    std, mean = np.asarray(info.std, np.float32), np.asarray(info.mean, np.float32)
    x, y = torch_step.augment(
        *map(torch.from_numpy, (images, labels, index, draws)),
        pad=info.augment.pad, flip=info.augment.flip,
        scale=torch.from_numpy(1 / (255 * std)), shift=torch.from_numpy(-mean / std),
    )  # fmt: skip
    assert x.shape == (16, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(y.numpy(), expected["label"])
    # Both compute x * (1 / (255 std)) + (-mean / std) in float32, one multiply-add apart.
    np.testing.assert_allclose(
        x.permute(0, 2, 3, 1).numpy(), expected["image"], rtol=1e-6, atol=1e-6
    )


@pytest.mark.slow
def test_torch_step_help_and_quick(without_tf):
    result = run_script("benchmarks/torch_step.py", "--help", hidden=without_tf)
    assert result.returncode == 0 and "--steps_per_sync" in result.stdout, result.stderr
    result = run_script(
        "benchmarks/torch_step.py", "--quick", "--dtype", "bfloat16", hidden=without_tf
    )
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[-1]
    assert row.startswith("| cpu | torch eager | resnet8 → resnet8 | figkd | 32 | bfloat16 |")
