"""Speed of the distillation train step: compile time, step time, images/s, TFLOP/s, % of peak.

The step is the trainer's own: ``run_setup.build_run`` on the benchmark config of the pair
(``configs/benchmarks.py``), ``run_setup.initial_state``, and ``steps.make_train_step`` in
``steps.device_steps``, jitted with the run's shardings and a donated state. The input
is the on-device path (``device_input.batch_at``) over a synthetic split of the dataset's real
shapes (random uint8 pixels, at most 50,000 images, a random order and random augmentation
draws), so every step gathers, crops, flips and normalises its own batch on device; nothing
here needs TensorFlow. The teacher's variables are a random initialisation (its
speed does not depend on its weights). ``--steps_per_dispatch K`` runs K steps in one
``lax.scan`` per call. FLOPs come from XLA's cost analysis of one step (per device); the peak
is that of the device kind for the chosen dtype ("n/a" when unknown, e.g. CPU). The last
column estimates the training time of the full protocol (``--epochs`` epochs of the
dataset's train split, evaluation excluded) at the measured images/s. One Markdown table row
per configuration, ready to paste:

    python benchmarks/train_step.py --teacher resnet32x4 wrn_40_2 --student resnet8x4 wrn_16_2 \
        --batch_size 64 512 --dtype float32 bfloat16 --steps_per_dispatch 1 50 --check_bf16
    python benchmarks/train_step.py --quick       # small CPU check, under a minute

``--check_bf16`` compares the loss of the first step in bfloat16 with float32 (same initial
state, teacher and examples) and exits with status 1 when they differ by more than 2%.

Several devices: ``--devices N`` uses the first N (on CPU, simulate them with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``); the batch is split over them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax
import numpy as np
from jax.sharding import Mesh

from configs import benchmarks
from figkd_jax import models
from figkd_jax.data import device_input, randaugment
from figkd_jax.data.registry import get_info
from figkd_jax.trainer import methods, protocol, run_setup, steps

_MAX_SYNTHETIC_EXAMPLES = 50_000
BF16_LOSS_TOLERANCE = 2e-2

# Dense peak TFLOP/s per device: (device_kind substring, bfloat16, float32). The float32
# column is the unit XLA uses for float32 convolutions and matmuls at JAX's default
# precision: TF32 tensor cores on NVIDIA GPUs, single-pass bfloat16 on TPUs. First match wins.
PEAK_TFLOPS = (
    ("h100 pcie", 756.0, 378.0),
    ("h100", 989.0, 494.5),
    ("h200", 989.0, 494.5),
    ("a100", 312.0, 156.0),
    ("tpu v4", 275.0, 275.0),
    ("tpu v5 lite", 197.0, 197.0),
    ("tpu v5e", 197.0, 197.0),
    ("tpu v5", 459.0, 459.0),
    ("tpu v6", 918.0, 918.0),
)

HEADER = (
    "| device | n | teacher → student | method | batch | dtype | steps/call | compile s "
    "| step ms | img/s | TFLOP/s | % peak | min/{epochs} ep |"
)


def peak_tflops(device_kind: str, dtype: str) -> float | None:
    """Dense peak of one device of ``device_kind`` for ``dtype``; None when unknown."""
    kind = device_kind.lower()
    for name, bf16, fp32 in PEAK_TFLOPS:
        if name in kind:
            return bf16 if dtype == "bfloat16" else fp32
    return None


@dataclasses.dataclass(frozen=True)
class Setting:
    dataset: str
    student: str
    teacher: str | None
    method: str
    batch_size: int
    dtype: str
    devices: int
    steps_per_dispatch: int


@dataclasses.dataclass(frozen=True)
class Result:
    setting: Setting
    device_kind: str
    compile_seconds: float
    step_seconds: float
    flops_per_step: float | None
    first_loss: float  # loss of the first step (from the initial state)

    @property
    def images_per_second(self) -> float:
        return self.setting.batch_size / self.step_seconds

    @property
    def tflops(self) -> float | None:
        if not self.flops_per_step:
            return None
        return self.flops_per_step / self.step_seconds / 1e12

    def row(self, epochs: int, num_train: int) -> str:
        s = self.setting
        pair = f"{s.teacher} → {s.student}" if s.teacher else s.student
        peak = peak_tflops(self.device_kind, s.dtype)
        tflops = self.tflops
        fraction = f"{100 * tflops / peak:.1f}" if tflops and peak else "n/a"
        minutes = epochs * num_train / self.images_per_second / 60
        return (
            f"| {self.device_kind} | {s.devices} | {pair} | {s.method} | {s.batch_size} "
            f"| {s.dtype} | {s.steps_per_dispatch} | {self.compile_seconds:.1f} "
            f"| {1e3 * self.step_seconds:.2f} | {self.images_per_second:,.0f} "
            f"| {f'{tflops:.3g}' if tflops else 'n/a'} | {fraction} | {minutes:,.1f} |"
        )


def make_config(setting: Setting):
    """The benchmark config of the setting (any teacher/student pair is allowed)."""
    config = benchmarks.benchmark_config(setting.dataset, f"student={setting.student}")
    config.batch_size = setting.batch_size
    config.dtype = setting.dtype
    config.method.name = setting.method
    if methods.get(setting.method).needs_teacher:
        if not setting.teacher:
            raise ValueError(f"--method {setting.method} distils from a teacher: pass --teacher")
        config.teacher.model = setting.teacher
        config.teacher.checkpoint = "(random initialisation)"
        pair = protocol.find(setting.dataset, setting.teacher, setting.student)
        config.method.dkd.beta = 8.0 if pair is None else pair.dkd_beta
    return config


def build_run(setting: Setting) -> run_setup.Run:
    """``run_setup.build_run`` of the setting's config, on a mesh of its first ``devices``
    devices."""
    if not 1 <= setting.devices <= jax.device_count():
        raise ValueError(
            f"--devices must be in [1, {jax.device_count()}] (the visible devices), "
            f"got {setting.devices}"
        )
    if setting.batch_size % setting.devices:
        raise ValueError(
            f"--batch_size {setting.batch_size} must be a multiple of --devices {setting.devices}"
        )
    run = run_setup.build_run(make_config(setting))
    mesh = Mesh(np.asarray(jax.devices()[: setting.devices]), run.mesh.axis_names)
    return dataclasses.replace(run, mesh=mesh)


def random_teacher(run: run_setup.Run, seed: int = 1):
    """(model, variables) of a randomly initialised teacher, replicated; (None, None) for ce."""
    config = run.config
    if not methods.get(config.method.name).needs_teacher:
        return None, None
    model = models.create(
        config.teacher.model,
        num_classes=run.info.num_classes,
        dtype=models.compute_dtype(config.dtype),
    )
    images = np.zeros((1, *run.info.image_shape), np.float32)
    init = lambda: model.init(jax.random.key(seed, impl="rbg"), images, train=False)
    return model, jax.jit(init, out_shardings=run.replicated)()


def synthetic_input(run: run_setup.Run) -> tuple[dict, dict]:
    """(arrays, plan) for ``device_input.batch_at``: random images, labels, order and draws of
    the dataset's shapes, replicated (one epoch's plan; steps past it wrap around)."""
    info, batch = run.info, run.config.batch_size
    num_examples = min(info.num_train, _MAX_SYNTHETIC_EXAMPLES)
    num_steps = num_examples // batch
    rng = np.random.default_rng(0)
    host_arrays = {
        "image": rng.integers(0, 256, (num_examples, *info.image_shape), dtype=np.uint8),
        "label": rng.integers(0, info.num_classes, num_examples).astype(np.int32),
    }
    host_plan = device_input.plan_from_draws(
        info,
        rng.permutation(num_examples)[: num_steps * batch].astype(np.int32).reshape(num_steps, -1),
        # 3 draws per example: as many as pad-crop-flip reads, more than rotate-flip's 2.
        rng.random((num_steps, batch, 3), dtype=np.float32),
    )
    if methods.get(run.config.method.name).needs_strong_view:
        strong = rng.random((num_steps, batch, randaugment.STRONG_VIEW_DRAWS), dtype=np.float32)
        host_plan["strong_draws"] = strong
    put = lambda tree: jax.device_put(tree, run.replicated)
    return put(host_arrays), put(host_plan)


def train_function(run: run_setup.Run, teacher_model, steps_per_dispatch: int):
    """jit(state, arrays, plan, teacher_variables) -> (state, metrics [steps_per_dispatch]):
    exactly the trainer's on-device call (steps.device_steps)."""
    device_steps = steps.device_steps(run, steps.make_train_step(run, teacher_model))
    return jax.jit(
        functools.partial(device_steps, num_steps=steps_per_dispatch),
        in_shardings=(run.replicated,) * 4,
        out_shardings=(run.replicated, run.replicated),
        donate_argnums=(0,),
    )


def _flops(compiled) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def benchmark(
    setting: Setting, *, timed_calls: int, flops_cache: dict | None = None, warmup_calls: int = 2
) -> Result:
    """Compiles and times the setting; the step time is the median over ``timed_calls`` calls.

    ``flops_cache`` maps a setting with one step per call to its FLOPs per step: XLA's cost
    analysis counts a loop body once whatever its trip count, so a K-step setting takes its
    FLOPs from the one-step program (compiled here unless the cache has it).
    """
    flops_cache = {} if flops_cache is None else flops_cache
    run = build_run(setting)
    teacher_model, teacher_variables = random_teacher(run)
    arrays, plan = synthetic_input(run)
    state = jax.jit(lambda: run_setup.initial_state(run), out_shardings=run.replicated)()
    args = (arrays, plan, teacher_variables)
    compile_program = lambda num_steps: (
        train_function(run, teacher_model, num_steps).lower(state, *args).compile()
    )

    start = time.perf_counter()
    compiled = compile_program(setting.steps_per_dispatch)
    compile_seconds = time.perf_counter() - start
    one_step = dataclasses.replace(setting, steps_per_dispatch=1)
    if setting.steps_per_dispatch == 1:
        flops_cache[one_step] = _flops(compiled)
    elif one_step not in flops_cache:
        flops_cache[one_step] = _flops(compile_program(1))

    first_loss = None
    for _ in range(warmup_calls):
        state, metrics = compiled(state, *args)
        if first_loss is None:
            first_loss = float(np.ravel(metrics["loss"])[0])
    jax.block_until_ready((state, metrics))
    seconds = []
    for _ in range(timed_calls):
        start = time.perf_counter()
        state, metrics = compiled(state, *args)
        jax.block_until_ready((state, metrics))
        seconds.append((time.perf_counter() - start) / setting.steps_per_dispatch)
    if not np.isfinite(np.asarray(metrics["loss"])).all():
        raise FloatingPointError(f"non-finite loss in {setting}")
    return Result(
        setting=setting,
        device_kind=jax.devices()[0].device_kind,
        compile_seconds=compile_seconds,
        step_seconds=statistics.median(seconds),
        flops_per_step=flops_cache[one_step],
        first_loss=first_loss,
    )


def settings(args) -> list[Setting]:
    """Every combination of the list-valued arguments, pair by pair."""
    return [
        Setting(
            dataset=args.dataset,
            student=student,
            teacher=teacher if args.method != "ce" else None,
            method=args.method,
            batch_size=batch_size,
            dtype=dtype,
            devices=args.devices or jax.device_count(),
            steps_per_dispatch=per_dispatch,
        )
        for (teacher, student), batch_size, dtype, per_dispatch in itertools.product(
            zip(args.teacher, args.student, strict=True),
            args.batch_size,
            args.dtype,
            args.steps_per_dispatch,
        )
    ]


def bf16_report(results: list[Result]) -> list[tuple[str, float]]:
    """(description, relative difference) of the first-step loss, bfloat16 vs float32, for each
    setting measured in both dtypes."""
    by_setting = {r.setting: r for r in results}
    report = []
    for setting, half in by_setting.items():
        full = by_setting.get(dataclasses.replace(setting, dtype="float32"))
        if setting.dtype != "bfloat16" or full is None:
            continue
        difference = abs(half.first_loss - full.first_loss) / abs(full.first_loss)
        pair = f"{setting.teacher} → {setting.student}" if setting.teacher else setting.student
        description = (
            f"{pair} {setting.method} batch {setting.batch_size} "
            f"(steps/call {setting.steps_per_dispatch}): first-step loss float32 "
            f"{full.first_loss:.5f}, bfloat16 {half.first_loss:.5f}"
        )
        report.append((description, difference))
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", default="cifar100", choices=["digits", "cifar100", "tiny_imagenet"]
    )
    parser.add_argument("--teacher", nargs="+", default=["resnet32x4"], choices=models.names())
    parser.add_argument(
        "--student",
        nargs="+",
        default=["resnet8x4"],
        choices=models.names(),
        help="one student per --teacher (pairs are zipped)",
    )
    parser.add_argument("--method", default="figkd", choices=methods.names())
    parser.add_argument("--batch_size", type=int, nargs="+", default=[64])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--devices", type=int, default=None, help="first N devices (default all)")
    parser.add_argument("--steps_per_dispatch", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--timed_steps",
        type=int,
        default=60,
        help="train steps timed per setting (at least 3 calls)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=240,
        help="full-protocol estimate: minutes of training (no eval) for this many epochs of "
        "the dataset's train split at the measured images/s",
    )
    parser.add_argument(
        "--deadline_s",
        type=float,
        default=None,
        help="start no new setting after this many seconds (the rest are listed as skipped)",
    )
    parser.add_argument(
        "--check_bf16",
        action="store_true",
        # argparse formats help with %: a percent sign is written %%.
        help=f"exit 1 unless the first-step losses of bfloat16 and float32 settings agree "
        f"within {100 * BF16_LOSS_TOLERANCE:g}%%",
    )
    parser.add_argument("--no_header", action="store_true", help="rows only (appending runs)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CPU check in under a minute: resnet8 -> resnet8 figkd on digits, batch 64, "
        "3 timed steps",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset, args.teacher, args.student = "digits", ["resnet8"], ["resnet8"]
        args.method, args.batch_size, args.timed_steps = "figkd", [64], 3
    if len(args.teacher) != len(args.student):
        parser.error("give one --teacher per --student (the pairs are zipped)")
    for name in ("batch_size", "steps_per_dispatch"):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name} values must be >= 1")
    if args.timed_steps < 1:
        parser.error("--timed_steps must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    num_train = get_info(args.dataset).num_train
    if not args.no_header:
        print(f"{args.dataset}, {args.timed_steps} timed steps per setting, jax {jax.__version__}")
        print(HEADER.format(epochs=args.epochs))
        print("|" + "---|" * (HEADER.count("|") - 1))
    flops_cache, results, skipped = {}, [], []
    for setting in settings(args):
        if args.deadline_s is not None and time.perf_counter() - start > args.deadline_s:
            skipped.append(setting)
            continue
        calls = max(3, -(-args.timed_steps // setting.steps_per_dispatch))
        result = benchmark(setting, timed_calls=calls, flops_cache=flops_cache)
        results.append(result)
        print(result.row(args.epochs, num_train), flush=True)
    for setting in skipped:
        print(f"skipped (--deadline_s {args.deadline_s}): {setting}")
    if not args.check_bf16:
        return 0
    report = bf16_report(results)
    if not report:
        print("--check_bf16: no setting was measured in both float32 and bfloat16")
        return 1
    status = 0
    for description, difference in report:
        ok = difference < BF16_LOSS_TOLERANCE
        status |= not ok
        print(f"{'OK' if ok else 'FAIL'} bf16 vs float32: {description}: relative {difference:.2e}")
    return status


if __name__ == "__main__":
    sys.exit(main())
