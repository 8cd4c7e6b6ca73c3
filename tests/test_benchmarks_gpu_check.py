"""The GPU check and its PyTorch twin of the train step: the same models, batches and losses as
the JAX step, the table, and the quickest path of each script (without TensorFlow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import gpu_check
from figkd_jax import device_input, losses, models, wavelets
from figkd_jax.data.registry import get_info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def without_tf(tmp_path_factory):
    """A PYTHONPATH entry whose tensorflow and tensorflow_datasets fail to import, in the
    scripts and every process they start, as on the lent GPU machine (which has neither)."""
    folder = tmp_path_factory.mktemp("without_tf")
    for name in ("tensorflow", "tensorflow_datasets"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(
            f'raise ModuleNotFoundError("No module named {name!r} (hidden by the test)")\n'
        )
    return str(folder)


def _run(*args, without_tf: str, timeout=600):
    env = {**os.environ, "PYTHONPATH": f"{without_tf}:{ROOT}", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_gpu_check_queue_puts_the_protocol_settings_first():
    queue = gpu_check.jobs(quick=False, framework="jax")
    assert len(queue) == len(set(queue)) == 32  # 2 methods x 2 pairs x 2 batches x 2 dtypes x 2 K
    assert queue[0] == gpu_check.Job("jax", "resnet32x4", "resnet8x4", "figkd", 64, "float32", 1)
    assert {job.batch_size for job in queue[:12]} == {64}
    torch_queue = gpu_check.jobs(quick=False, framework="torch")
    assert len(torch_queue) == 16 and torch_queue[0].framework == "torch eager"
    assert {j.method for j in torch_queue} == {"figkd"}


def _record(framework, dtype, steps, step_s, first_loss, flops=None, method="figkd"):
    job = gpu_check.Job(framework, "resnet32x4", "resnet8x4", method, 64, dtype, steps)
    return {
        "job": job.__dict__,
        "device": "NVIDIA H100 80GB HBM3",
        "compile_s": 12.0,
        "step_s": step_s,
        "flops": flops,
        "first_loss": first_loss,
    }


def test_gpu_check_table_rows_ratios_bf16_verdicts_and_skips():
    records = [
        _record("jax", "float32", 1, 0.010, 4.000, flops=2.0e11),
        _record("jax", "bfloat16", 1, 0.005, 4.004, flops=2.0e11),
        _record("torch eager", "float32", 10, 0.020, 4.6),
        _record("torch eager", "bfloat16", 10, 0.015, 5.0),  # 8.7% off float32: FAIL
        {"job": _record("jax", "float32", 50, 0, 0)["job"], "skipped": "budget (expected 40 s)"},
        {"check": "on-device batches", "ok": True, "message": "gpu batches equal cpu's"},
        {"job": _record("jax", "kd", 1, 0, 0)["job"], "error": "RuntimeError: boom"},
    ]
    lines = gpu_check.table(records, epochs=240, num_train=50_000)
    assert lines[0] == "device: NVIDIA H100 80GB HBM3"
    # 64 images in 10 ms: 6,400 img/s, 240 x 50,000 / 6,400 / 60 = 31.25 minutes; 20 TFLOP/s
    # of the H100's dense 494.5 TFLOP/s in TF32 = 4.0 %.
    assert "| jax | resnet32x4 → resnet8x4 | figkd | 64 | float32 | 1 | 12.0 | 10.00 | 6,400 " in (
        "\n".join(lines)
    )
    row = next(line for line in lines if line.startswith("| jax") and "float32 | 1 |" in line)
    assert row.endswith("| 20 | 4.0 | 31.2 |")
    torch_row = next(
        line for line in lines if line.startswith("| torch eager") and "float32" in line
    )
    # XLA's FLOPs of the same step (2e11) in 20 ms: 10 TFLOP/s, 2.0 % of the peak.
    assert torch_row.endswith("| 3,200 | 10 | 2.0 | 62.5 |")
    assert any(line.startswith("OK bf16 vs float32: jax") for line in lines)
    assert any(line.startswith("FAIL bf16 vs float32: torch eager") for line in lines)
    assert (
        "ratio torch eager / jax (1 steps/call): resnet32x4 → resnet8x4 figkd batch 64 "
        "float32: 2.00x the JAX step time" in lines
    )
    assert any(line.startswith("skipped (budget (expected 40 s)): jax") for line in lines)
    assert "OK on-device batches: gpu batches equal cpu's" in lines
    assert any(
        line.startswith("FAILED: jax") and line.endswith("RuntimeError: boom") for line in lines
    )


def test_gpu_check_help(without_tf):
    result = _run("benchmarks/gpu_check.py", "--help", without_tf=without_tf)
    assert result.returncode == 0, result.stderr
    assert "--budget_s" in result.stdout and "--quick" in result.stdout


# --------------------------------------------------------------------------
# The PyTorch step computes what the JAX step computes.

torch = pytest.importorskip("torch")
from benchmarks import torch_step  # noqa: E402
from benchmarks.torch_models import TORCH_MODELS  # noqa: E402


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
    theirs = losses.figkd_loss(student, teacher, temperature=4.0, level=level)
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


def test_torch_step_help_and_quick(without_tf):
    result = _run("benchmarks/torch_step.py", "--help", without_tf=without_tf)
    assert result.returncode == 0 and "--steps_per_sync" in result.stdout, result.stderr
    result = _run(
        "benchmarks/torch_step.py", "--quick", "--dtype", "bfloat16", without_tf=without_tf
    )
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[-1]
    assert row.startswith("| cpu | torch eager | resnet8 → resnet8 | figkd | 32 | bfloat16 |")


@pytest.mark.slow
def test_gpu_check_quick_runs_without_tensorflow(tmp_path, without_tf):
    result = _run(
        "benchmarks/gpu_check.py", "--quick", "--out", str(tmp_path), without_tf=without_tf
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.startswith("== versions\npython ")
    assert "tensorflow: not importable (No module named 'tensorflow' (hidden" in result.stdout
    table = (tmp_path / gpu_check.TABLE_FILE).read_text()
    assert table.count("| jax |") == 3 and table.count("| torch eager |") == 2
    assert "OK bf16 vs float32: jax" in table and "ratio torch eager / jax" in table
    rows = [json.loads(line) for line in (tmp_path / gpu_check.ROWS_FILE).read_text().splitlines()]
    assert rows[0] == {"check": "on-device batches", "ok": True, "message": rows[0]["message"]}
    assert len(rows) == 6 and all("step_s" in row for row in rows[1:])
