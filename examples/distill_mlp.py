"""Distil a teacher MLP into a smaller student with FiGKD: plain JAX + optax + figkd_jax.

A standalone example of the loss library (no trainer, no Flax): a synthetic 16-class task
whose labels come from a fixed random network, a teacher trained on 2048 labelled examples,
and two smaller students that know only 256 of the labels: one trained with cross-entropy on
those alone, one also with ``figkd_loss`` towards the teacher's logits on all 2048 inputs
(the labels masked per example, the distillation term everywhere). It prints the test
accuracy of each.

    python examples/distill_mlp.py
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import figkd_jax as fk

NUM_CLASSES = 16
INPUT_DIM = 32
Params = list[dict[str, jax.Array]]


def make_data(key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
    """Inputs ~ N(0, I); the label is the argmax of a fixed random two-layer network."""
    x = jax.random.normal(key, (num, INPUT_DIM))
    oracle = init_mlp(jax.random.key(1234), [INPUT_DIM, 64, NUM_CLASSES])
    return x, jnp.argmax(mlp(oracle, x), axis=-1)


def init_mlp(key: jax.Array, sizes: list[int]) -> Params:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), "b": jnp.zeros(n)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(params: Params, x: jax.Array) -> jax.Array:
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def train(
    params: Params,
    x: jax.Array,
    y: jax.Array,
    labelled: jax.Array,
    steps: int,
    teacher_logits: jax.Array | None = None,
    kd_weight: float = 1.0,
) -> Params:
    """Full-batch Adam on the cross-entropy of the ``labelled`` examples, plus
    ``kd_weight * figkd_loss`` on every example given a teacher's logits."""
    optimizer = optax.adam(3e-3)
    num_labelled = jnp.sum(labelled)

    def loss_fn(params: Params) -> jax.Array:
        logits = mlp(params, x)
        # Per-example values, like optax's losses: the caller masks and reduces them.
        ce = optax.losses.softmax_cross_entropy_with_integer_labels(logits, y)
        loss = jnp.sum(jnp.where(labelled, ce, 0.0)) / num_labelled
        if teacher_logits is not None:
            distill = fk.figkd_loss(logits, teacher_logits, temperature=4.0, level=1)
            loss = loss + kd_weight * jnp.mean(distill)
        return loss

    @jax.jit
    def step(params: Params, state: optax.OptState) -> tuple[Params, optax.OptState]:
        grads = jax.grad(loss_fn)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = optimizer.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params


def accuracy(params: Params, x: jax.Array, y: jax.Array) -> float:
    return float(jnp.mean(jnp.argmax(mlp(params, x), axis=-1) == y)) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="Adam steps per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 steps: checks that it runs")
    args = parser.parse_args()
    steps = 20 if args.quick else args.steps
    start = time.perf_counter()

    k_train, k_test, k_teacher, k_student = jax.random.split(jax.random.key(args.seed), 4)
    x_train, y_train = make_data(k_train, 2048)
    x_test, y_test = make_data(k_test, 2048)
    all_labelled = jnp.ones(y_train.shape, bool)
    teacher_init = init_mlp(k_teacher, [INPUT_DIM, 128, NUM_CLASSES])
    teacher = train(teacher_init, x_train, y_train, all_labelled, steps)

    # The students know 256 labels; the teacher's logits are a constant for them.
    labelled = jnp.arange(len(y_train)) < 256
    teacher_logits = jax.lax.stop_gradient(mlp(teacher, x_train))
    student_init = init_mlp(k_student, [INPUT_DIM, 32, NUM_CLASSES])
    alone = train(student_init, x_train, y_train, labelled, steps)
    distilled = train(student_init, x_train, y_train, labelled, steps, teacher_logits)

    print("| model | labels seen | test accuracy (%) |")
    print("|---|---|---|")
    print(f"| teacher 32-128-16 | 2048 | {accuracy(teacher, x_test, y_test):.1f} |")
    print(f"| student 32-32-16, CE | 256 | {accuracy(alone, x_test, y_test):.1f} |")
    print(f"| student 32-32-16, CE + FiGKD | 256 | {accuracy(distilled, x_test, y_test):.1f} |")
    print(f"wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
