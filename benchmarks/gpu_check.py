"""The GPU check in one call: versions, on-device input tests, JAX and PyTorch steps, one table.

Run by ``benchmarks/gpu_check.sh`` (which installs the carried wheels first); no network, no
TensorFlow, no pip. In order:

1. The versions of Python, JAX, jaxlib, flax, optax, orbax-checkpoint, numpy, ml-collections and
   torch, and the devices, before anything else can fail.
2. ``tests/test_device_input.py`` (its tests that need no TensorFlow) on the accelerator.
3. The on-device batches of the accelerator against the CPU's (``batches_match_cpu``), then JAX
   train steps (``benchmarks/train_step.py``): FiGKD and KD, ResNet32x4 -> ResNet8x4 and
   WRN-40-2 -> WRN-16-2, batch 64 and 512, float32 and bfloat16, 1 and 50 steps per call.
4. The FiGKD step in PyTorch (``benchmarks/torch_step.py``), eager and ``torch.compile``, same
   pairs, batches and dtypes.
5. One Markdown table of every setting timed (compile s, ms/step, img/s, TFLOP/s, % of peak,
   minutes per 240-epoch CIFAR-100 run), the first-step loss of bfloat16 against float32 (JAX and
   PyTorch), and the PyTorch/JAX step-time ratio of each PyTorch setting.

Budget guard: the settings run in priority order (the protocol's batch 64 and the larger pair
first, FiGKD before KD), each framework in its own process (no shared GPU memory, no shared
CUDA context); a setting starts only when the longest setting of its kind so far (or a prior
guess) still fits before its phase's deadline, and every setting left out is listed. JAX may
use the time until ``--budget_s`` less ``--torch_reserve_s``, PyTorch the rest.

Outputs under ``--out`` (default ``$OUT`` when set): ``gpu_check_table.md`` (rewritten after
every setting, so a killed run still leaves its rows) and ``gpu_check_rows.jsonl``; the shell
wrapper adds the raw log. Exit status 0 when every check passed, 1 when one failed.

    python benchmarks/gpu_check.py              # the GPU check (about 8 minutes)
    python benchmarks/gpu_check.py --quick      # resnet8 -> resnet8 at batch 8 on any machine
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TABLE_FILE = "gpu_check_table.md"
ROWS_FILE = "gpu_check_rows.jsonl"
PAIRS = (("resnet32x4", "resnet8x4"), ("wrn_40_2", "wrn_16_2"))
# Seconds a setting of each kind is assumed to take until one has been timed (GPU compiles of
# the larger pair; the guard then uses the longest seen).
FIRST_GUESS_S = {"jax": 45.0, "torch eager": 20.0, "torch compile": 90.0}
HEADER = (
    "| framework | teacher → student | method | batch | dtype | steps/call | compile s "
    "| ms/step | img/s | TFLOP/s | % peak | min/{epochs} ep |"
)


@dataclasses.dataclass(frozen=True)
class Job:
    """One setting to time. ``framework`` is "jax", "torch eager" or "torch compile"; ``steps``
    is the steps per dispatch for JAX and the steps between synchronisations for PyTorch."""

    framework: str
    teacher: str
    student: str
    method: str
    batch_size: int
    dtype: str
    steps: int

    def describe(self) -> str:
        return (
            f"{self.framework} {self.teacher} → {self.student} {self.method} batch "
            f"{self.batch_size} {self.dtype} steps/call {self.steps}"
        )


def jobs(quick: bool, framework: str) -> list[Job]:
    """The settings of ``framework`` ("jax" or "torch") in priority order."""
    if quick:  # each code path once, small: XLA's CPU compiles take ~20 s per setting here
        job = lambda fw, dtype, steps: Job(fw, "resnet8", "resnet8", "figkd", 8, dtype, steps)
        if framework == "jax":
            return [job("jax", "float32", 1), job("jax", "bfloat16", 1), job("jax", "float32", 2)]
        # torch.compile takes minutes on a CPU: the quick check leaves it out.
        return [job("torch eager", d, 1) for d in ("float32", "bfloat16")]
    queue, leftovers = [], []
    for batch in (64, 512):
        for teacher, student in PAIRS:
            job = lambda fw, method, dtype, steps, t=teacher, s=student, b=batch: Job(
                fw, t, s, method, b, dtype, steps
            )
            if framework == "jax":
                queue += [
                    job("jax", "figkd", "float32", 1),
                    job("jax", "figkd", "bfloat16", 1),
                    job("jax", "figkd", "float32", 50),
                    job("jax", "figkd", "bfloat16", 50),
                    # K steps take their FLOPs from the 1-step program: one compile less.
                    job("jax", "kd", "float32", 1),
                    job("jax", "kd", "float32", 50),
                ]
                leftovers += [job("jax", "kd", "bfloat16", 1), job("jax", "kd", "bfloat16", 50)]
            else:
                queue += [job("torch eager", "figkd", d, 10) for d in ("float32", "bfloat16")]
                queue += [job("torch compile", "figkd", d, 10) for d in ("bfloat16", "float32")]
    return queue + leftovers


# --------------------------------------------------------------------------
# Phase 1: versions


def versions() -> list[str]:
    """One line per package (imported, no device initialised) and the Python version."""
    lines = [f"python {sys.version.split()[0]} ({sys.executable})"]
    for label, module in (
        ("jax", "jax"),
        ("jaxlib", "jaxlib"),
        ("flax", "flax"),
        ("optax", "optax"),
        ("orbax-checkpoint", "orbax.checkpoint"),
        ("numpy", "numpy"),
        ("ml-collections", "ml_collections"),
        ("torch", "torch"),
        ("tensorflow", "tensorflow"),
    ):
        try:
            found = importlib.import_module(module)
        except ImportError as e:
            lines.append(f"{label}: not importable ({e})")
            continue
        version = getattr(found, "__version__", None)
        if version is None and module == "orbax.checkpoint":
            from importlib.metadata import version as dist_version

            version = dist_version("orbax-checkpoint")
        lines.append(f"{label} {version} ({os.path.dirname(found.__file__)})")
    return lines


# --------------------------------------------------------------------------
# Phases 3 and 4: one framework's settings, in a process of its own


def _jax_worker(queued: list[Job], deadline: float, dataset: str, timed_steps: int, emit):
    import jax

    from benchmarks import train_step

    print(f"jax devices: {jax.devices()}", flush=True)
    try:
        ok, message = batches_match_cpu(dataset)
    except Exception as e:  # reported in the table; the timings still run
        traceback.print_exc()
        ok, message = False, f"{type(e).__name__}: {e}".splitlines()[0]
    emit({"check": "on-device batches", "ok": ok, "message": message})
    flops_cache = {}

    def run(job: Job) -> dict:
        setting = train_step.Setting(
            dataset=dataset,
            student=job.student,
            teacher=job.teacher,
            method=job.method,
            batch_size=job.batch_size,
            dtype=job.dtype,
            devices=1,
            steps_per_dispatch=job.steps,
        )
        calls = max(3, -(-timed_steps // job.steps))
        result = train_step.benchmark(setting, timed_calls=calls, flops_cache=flops_cache)
        return {
            "device": result.device_kind,
            "compile_s": result.compile_seconds,
            "step_s": result.step_seconds,
            "flops": result.flops_per_step,
            "first_loss": result.first_loss,
        }

    return _run_queue(queued, deadline, run, emit)


def _torch_worker(queued: list[Job], deadline: float, dataset: str, timed_steps: int, emit):
    from benchmarks import torch_step

    device = torch_step.default_device()
    print(f"torch device: {device}", flush=True)

    def run(job: Job) -> dict:
        setting = torch_step.TorchSetting(
            dataset=dataset,
            teacher=job.teacher,
            student=job.student,
            method=job.method,
            batch_size=job.batch_size,
            dtype=job.dtype,
            mode=job.framework.split()[1],
        )
        try:
            result = torch_step.benchmark(
                setting, device, timed_steps=timed_steps, steps_per_sync=job.steps
            )
        finally:
            torch_step.release(device)
        return {
            "device": result.device_name,
            "compile_s": result.first_call_seconds,
            "step_s": result.step_seconds,
            "flops": None,
            "first_loss": result.first_loss,
        }

    return _run_queue(queued, deadline, run, emit)


def batches_match_cpu(dataset: str, num_examples: int = 256, batch: int = 64):
    """(ok, message): the on-device batches (``device_input.batch_at``) of the default device
    equal the CPU's for the same arrays and plan, in float32 and bfloat16.

    The CPU's are the host stream's batches (``tests/test_device_input.py``: it runs the same
    ``transforms`` on the CPU), so this carries that check to a machine without TensorFlow.
    Tolerance: one float32 rounding of the normalising multiply-add (fused or not), then one
    bfloat16 rounding step.
    """
    import jax
    import numpy as np

    from figkd_jax.data import device_input
    from figkd_jax.data.registry import get_info

    info = get_info(dataset)
    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.integers(0, 256, (num_examples, *info.image_shape), dtype=np.uint8),
        "label": rng.integers(0, info.num_classes, num_examples).astype(np.int32),
    }
    steps = num_examples // batch
    plan = {
        "index": rng.permutation(num_examples).astype(np.int32).reshape(steps, batch),
        "draws": rng.random((steps, batch, 3), dtype=np.float32),
    }
    cpu, default = jax.devices("cpu")[0], jax.devices()[0]
    worst = {}
    for dtype, tolerance in (("float32", 1e-6), ("bfloat16", 2**-7)):
        build = jax.jit(
            lambda arrays, plan, step, dtype=dtype: device_input.batch_at(
                arrays, plan, step, info=info, dtype=dtype
            )
        )
        for step in range(steps):
            ours, theirs = (
                jax.device_get(build(*jax.device_put((arrays, plan), d), step))
                for d in (default, cpu)
            )
            if not np.array_equal(ours["label"], theirs["label"]):
                return False, f"labels of step {step} differ between {default} and {cpu}"
            image = lambda b: np.asarray(b["image"], np.float32)
            difference = np.abs(image(ours) - image(theirs))
            bound = tolerance * (1 + np.abs(image(theirs)))
            if (difference > bound).any():
                return False, (
                    f"{dtype} images of step {step} differ between {default} and {cpu} by up to "
                    f"{difference.max():.3g}"
                )
            worst[dtype] = max(worst.get(dtype, 0.0), float(difference.max()))
    summary = ", ".join(f"{dtype} up to {value:.3g} apart" for dtype, value in worst.items())
    return True, f"{default.platform} batches equal {cpu.platform}'s ({summary})"


def _run_queue(queued: list[Job], deadline: float, run, emit) -> int:
    """Runs each job that is expected to end before ``deadline``; emits a record per job."""
    longest: dict[str, float] = {}
    status = 0
    for job in queued:
        expected = longest.get(job.framework, FIRST_GUESS_S[job.framework])
        if time.time() + expected > deadline:
            emit({"job": dataclasses.asdict(job), "skipped": f"budget (expected {expected:.0f} s)"})
            continue
        start = time.time()
        try:
            record = run(job)
        except Exception as e:  # one failed setting must not cost the others
            traceback.print_exc()
            record, status = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}, 1
        took = time.time() - start
        longest[job.framework] = max(longest.get(job.framework, 0.0), took)
        emit({"job": dataclasses.asdict(job), "seconds": took, **record})
    return status


# --------------------------------------------------------------------------
# Phase 5: the table


def _pair(job: dict) -> str:
    return f"{job['teacher']} → {job['student']}"


def table(records: list[dict], *, epochs: int, num_train: int) -> list[str]:
    """Markdown lines: the table, then the bfloat16 and PyTorch/JAX comparisons and the
    settings skipped or failed."""
    from benchmarks.train_step import peak_tflops

    timed = [r for r in records if "step_s" in r]
    devices = sorted({r["device"] for r in timed})
    # A step's arithmetic does not depend on the framework: PyTorch rows use XLA's FLOPs of
    # the same pair, method and batch.
    flops = {
        (_pair(r["job"]), r["job"]["method"], r["job"]["batch_size"]): r["flops"]
        for r in timed
        if r["flops"]
    }
    lines = [f"device: {', '.join(devices) or 'none timed'}", "", HEADER.format(epochs=epochs)]
    lines.append("|" + "---|" * (HEADER.count("|") - 1))
    for r in timed:
        job = r["job"]
        images_per_second = job["batch_size"] / r["step_s"]
        step_flops = flops.get((_pair(job), job["method"], job["batch_size"]))
        tflops = step_flops / r["step_s"] / 1e12 if step_flops else None
        peak = peak_tflops(r["device"], job["dtype"])
        lines.append(
            f"| {job['framework']} | {_pair(job)} | {job['method']} | {job['batch_size']} "
            f"| {job['dtype']} | {job['steps']} | {r['compile_s']:.1f} "
            f"| {1e3 * r['step_s']:.2f} | {images_per_second:,.0f} "
            f"| {f'{tflops:.3g}' if tflops else 'n/a'} "
            f"| {f'{100 * tflops / peak:.1f}' if tflops and peak else 'n/a'} "
            f"| {epochs * num_train / images_per_second / 60:,.1f} |"
        )
    lines += ["", *comparisons(timed)]
    for r in records:
        if "check" in r:
            lines.append(f"{'OK' if r['ok'] else 'FAIL'} {r['check']}: {r['message']}")
        elif "skipped" in r:
            lines.append(f"skipped ({r['skipped']}): {Job(**r['job']).describe()}")
        elif "error" in r:
            lines.append(f"FAILED: {Job(**r['job']).describe()}: {r['error']}")
    return lines


def comparisons(timed: list[dict]) -> list[str]:
    """bfloat16 vs float32 first-step losses ("OK"/"FAIL" lines, ``train_step``'s tolerance)
    and PyTorch/JAX ratios."""
    from benchmarks.train_step import BF16_LOSS_TOLERANCE

    key = lambda job, **change: json.dumps({**job, **change}, sort_keys=True)
    by_job = {key(r["job"]): r for r in timed}
    lines = []
    for r in timed:
        job = r["job"]
        full = by_job.get(key(job, dtype="float32"))
        if job["dtype"] != "bfloat16" or full is None:
            continue
        difference = abs(r["first_loss"] - full["first_loss"]) / abs(full["first_loss"])
        verdict = "OK" if difference < BF16_LOSS_TOLERANCE else "FAIL"
        lines.append(
            f"{verdict} bf16 vs float32: {Job(**job).describe()}: first-step loss float32 "
            f"{full['first_loss']:.5f}, bfloat16 {r['first_loss']:.5f}, relative {difference:.2e}"
        )
    for r in timed:
        job = r["job"]
        if not job["framework"].startswith("torch"):
            continue
        for steps in sorted({j["job"]["steps"] for j in timed if j["job"]["framework"] == "jax"}):
            theirs = by_job.get(key(job, framework="jax", steps=steps))
            if theirs:
                lines.append(
                    f"ratio {job['framework']} / jax ({steps} steps/call): "
                    f"{_pair(job)} {job['method']} batch {job['batch_size']} {job['dtype']}: "
                    f"{r['step_s'] / theirs['step_s']:.2f}x the JAX step time"
                )
    return lines


def _write_table(out: str | None, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if out:
        with open(os.path.join(out, TABLE_FILE), "w") as f:
            f.write(text)


# --------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="resnet8 -> resnet8, batch 8")
    parser.add_argument(
        "--budget_s", type=float, default=450, help="seconds for the whole check (default 450)"
    )
    parser.add_argument(
        "--torch_reserve_s",
        type=float,
        default=150,
        help="seconds of the budget kept for PyTorch (JAX stops starting settings before)",
    )
    parser.add_argument(
        "--timed_steps", type=int, default=None, help="timed steps per setting (100; quick: 10)"
    )
    parser.add_argument("--out", default=os.environ.get("OUT") or None, help="output folder")
    parser.add_argument("--epochs", type=int, default=240, help="full-protocol estimate")
    # Internal: run one framework's queue in this process (the check starts it).
    parser.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timed_steps is None:
        args.timed_steps = 10 if args.quick else 100
    if args.timed_steps < 1:
        parser.error("--timed_steps must be >= 1")
    return args


def worker(args) -> int:
    """One framework's settings; one JSON record per line on stdout, prefixed by "ROW "."""
    emit = lambda record: print("ROW " + json.dumps(record), flush=True)
    run = _jax_worker if args.worker == "jax" else _torch_worker
    return run(jobs(args.quick, args.worker), args.deadline, "cifar100", args.timed_steps, emit)


def _phase(args, framework: str, deadline: float, records: list[dict], redraw) -> int:
    command = [sys.executable, os.path.abspath(__file__), "--worker", framework]
    command += ["--deadline", str(deadline), "--timed_steps", str(args.timed_steps)]
    command += ["--quick"] if args.quick else []
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
    )
    for line in process.stdout:
        if line.startswith("ROW "):
            records.append(json.loads(line[4:]))
            redraw()
        print(line, end="", flush=True)
    return process.wait()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    start = time.time()
    print("== versions", flush=True)
    for line in versions():
        print(line, flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    failed = []

    print("== on-device input tests (those that need no TensorFlow)", flush=True)
    tests = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    # tests/conftest.py hides GPUs from JAX unless CUDA_VISIBLE_DEVICES is set.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    if subprocess.call([*tests, "tests/test_device_input.py"], cwd=ROOT, env=env):
        failed.append("tests/test_device_input.py")

    from figkd_jax.data.registry import get_info

    num_train = get_info("cifar100").num_train
    records: list[dict] = []

    def redraw() -> None:
        lines = table(records, epochs=args.epochs, num_train=num_train)
        if args.out:
            with open(os.path.join(args.out, TABLE_FILE), "w") as f:
                f.write("\n".join(lines) + "\n")

    end = start + args.budget_s
    print("== JAX train steps", flush=True)
    if _phase(args, "jax", end - args.torch_reserve_s, records, redraw):
        failed.append("JAX settings")
    print("== PyTorch train steps", flush=True)
    if importlib.util.find_spec("torch") is None:
        print("PyTorch rows left out: torch is not installed", flush=True)
    elif _phase(args, "torch", end, records, redraw):
        failed.append("PyTorch settings")

    print(f"== table ({time.time() - start:.0f} s after the start)", flush=True)
    lines = table(records, epochs=args.epochs, num_train=num_train)
    _write_table(args.out, lines)
    if args.out:
        with open(os.path.join(args.out, ROWS_FILE), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    failed += [line for line in lines if line.startswith("FAIL ")]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
