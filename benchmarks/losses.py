"""Times jitted forward + backward of the distillation losses and prints a table.

For each (batch, classes) size and each loss, measures ``jax.value_and_grad`` with respect to
the student logits of the mean per-example loss, jitted, after warm-up; reports the median time
of many calls in microseconds and the ratio to ``kd_loss`` at the same size. The losses are
called round-robin and the ratio is the median over rounds of each round's ratio, so that load
from other processes, which drifts over seconds, cancels out of it.

The rows ``haar bands L=k`` time FiGKD's own extra work alone: the student's high band
forward and backward and the teacher's forward (weighted by a fixed random array), what
``figkd_loss`` adds to ``kd_loss`` unless XLA fuses it into the softmaxes.

    python benchmarks/losses.py
    python benchmarks/losses.py --sizes 64x100 1024x1000 --repeats 500
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

from figkd_jax import dkd_loss, figkd_loss, haar_highpass, kd_loss

DEFAULT_SIZES = ("64x100", "256x200", "1024x1000")


def _losses(weights: jax.Array) -> dict[str, Callable[..., jax.Array]]:
    losses = {
        "kd_loss": lambda s, t, y: kd_loss(s, t),
        "dkd_loss": lambda s, t, y: dkd_loss(s, t, y),
    }
    for level in (1, 2, 3):
        losses[f"figkd_loss L={level}"] = lambda s, t, y, level=level: figkd_loss(s, t, level=level)
    for level in (1, 2, 3):
        losses[f"haar bands L={level}"] = lambda s, t, y, level=level: jnp.sum(
            (haar_highpass(s, level) + haar_highpass(t, level)) * weights, axis=-1
        )
    return losses


def _timings(
    steps: dict[str, Callable], args: tuple, warmup: int, repeats: int, reference: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Median microseconds per call of each step, and the median over rounds of its time
    divided by that of `reference` in the same round."""
    for step in steps.values():
        for _ in range(warmup):
            jax.block_until_ready(step(*args))
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(step(*args))
            times[name].append(time.perf_counter() - start)
    micros = {name: statistics.median(ts) * 1e6 for name, ts in times.items()}
    ratios = {
        name: statistics.median(a / b for a, b in zip(ts, times[reference], strict=True))
        for name, ts in times.items()
    }
    return micros, ratios


def _parse_size(text: str) -> tuple[int, int]:
    try:
        batch, classes = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 64x100, got {text!r}") from None
    if batch < 1 or classes < 8:
        raise argparse.ArgumentTypeError(f"need batch >= 1 and classes >= 8, got {text!r}")
    return batch, classes


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/losses.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes", nargs="+", type=_parse_size, default=[_parse_size(s) for s in DEFAULT_SIZES]
    )
    parser.add_argument("--repeats", type=int, default=300, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="one small size, few calls: checks that it runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats, args.warmup = [(8, 16)], 3, 1

    device = jax.devices()[0]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} on {device.platform} ({device.device_kind})"
    )
    print(
        f"median of {args.repeats} interleaved calls after {args.warmup} warm-up calls, float32; "
        "ratio: median over rounds\n"
    )
    header = f"{'batch x classes':>16} | {'loss':<16} | {'us / call':>10} | {'vs kd_loss':>10}"
    print(header)
    print("-" * len(header))
    key = jax.random.key(args.seed)
    for batch, classes in args.sizes:
        k_s, k_t, k_y, k_w, key = jax.random.split(key, 5)
        student = jax.random.normal(k_s, (batch, classes)) * 3.0
        teacher = jax.random.normal(k_t, (batch, classes)) * 3.0
        labels = jax.random.randint(k_y, (batch,), 0, classes)
        weights = jax.random.normal(k_w, (batch, classes))
        steps = {
            name: jax.jit(jax.value_and_grad(lambda s, t, y, loss=loss: jnp.mean(loss(s, t, y))))
            for name, loss in _losses(weights).items()
        }
        micros, ratios = _timings(
            steps, (student, teacher, labels), args.warmup, args.repeats, "kd_loss"
        )
        for name, value in micros.items():
            print(
                f"{f'{batch} x {classes}':>16} | {name:<16} | {value:>10.1f} | "
                f"{ratios[name]:>9.2f}x"
            )


if __name__ == "__main__":
    main()
