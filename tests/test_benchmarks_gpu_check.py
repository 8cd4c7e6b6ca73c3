"""The GPU check: its queue, its table, and its quickest path without TensorFlow."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_check
from tests.without_tensorflow import hide_tensorflow, run_script


@pytest.fixture(scope="module")
def without_tf(tmp_path_factory):
    return hide_tensorflow(tmp_path_factory.mktemp("without_tf"))


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
    result = run_script("benchmarks/gpu_check.py", "--help", hidden=without_tf)
    assert result.returncode == 0, result.stderr
    assert "--budget_s" in result.stdout and "--quick" in result.stdout


@pytest.mark.slow
def test_gpu_check_quick_runs_without_tensorflow(tmp_path, without_tf):
    result = run_script(
        "benchmarks/gpu_check.py", "--quick", "--out", str(tmp_path), hidden=without_tf
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
