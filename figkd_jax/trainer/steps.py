"""Pure training and evaluation steps: `TrainState`, the optimiser and its schedule,
`train_step`, `eval_step`, and the factories that bind them to a run.

JAX, flax and optax only (no TensorFlow): the GPU benchmark and library users import this
module without the input pipelines.

One jitted `train_step` runs data-parallel over every device of every process: the batch is
sharded on a one-axis `Mesh` (`DATA_AXIS`), the student's state and the frozen teacher's
variables are replicated, and BatchNorm statistics, losses and gradients are reductions over
the global batch, so N devices compute what one device computes on the same global batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from figkd_jax import diagnostics, losses
from figkd_jax.data import device_input
from figkd_jax.trainer import methods

DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs, besides the config and the data position.

    `step` also fixes the data position and the learning rate: batch k of the run is a pure
    function of (seed, k), and the rate applied at step k is ``schedule(k)``, so no data-loader,
    RNG or schedule state needs saving.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    # Consecutive steps whose loss or gradients were not finite (not applied).
    nonfinite_steps: jax.Array

    @property
    def variables(self):
        return {"params": self.params, "batch_stats": self.batch_stats}


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
    """Base rate times `lr_decay_rate` for each of `lr_decay_epochs` already passed.

    The reference decays at the start of epoch ``e + 1`` (counted from 1) for
    each ``e`` in ``lr_decay_epochs``; per step that is step ``e * steps_per_epoch``.
    """
    schedule = optax.piecewise_constant_schedule(
        config.optim.learning_rate,
        {
            int(e) * steps_per_epoch: config.optim.lr_decay_rate
            for e in config.optim.lr_decay_epochs
        },
    )
    # Without decays optax returns the bare Python float; the steps log an array per step.
    return lambda step: jnp.asarray(schedule(step), jnp.float32)


def _scale_by_schedule_at(schedule: optax.Schedule) -> optax.GradientTransformationExtraArgs:
    """Scales updates by ``-schedule(step)``, `step` passed to `update` by the caller.

    optax's own schedules count the updates they applied; a skipped (non-finite) step is not
    applied, so that count would lag the run's step and shift every decay boundary. Taking
    the step from the train state keeps the applied rate a function of the step alone.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, step, **extra_args):
        del params, extra_args
        step_size = -schedule(step)
        return jax.tree.map(lambda g: jnp.asarray(step_size, g.dtype) * g, updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def make_optimizer(config, schedule: optax.Schedule) -> optax.GradientTransformationExtraArgs:
    """PyTorch SGD: g + wd * p, then momentum (buffer starts at the first gradient), then
    ``-schedule(step)``; `update` takes the step as ``tx.update(g, s, p, step=step)``."""
    return optax.chain(
        optax.add_decayed_weights(config.optim.weight_decay),
        optax.trace(decay=config.optim.momentum),
        _scale_by_schedule_at(schedule),
    )


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    teacher_variables: Any,
    *,
    student: nn.Module,
    teacher: nn.Module | None,
    objective: methods.Objective,
    tx: optax.GradientTransformationExtraArgs,
    schedule: optax.Schedule,
    steps_per_epoch: int,
    band_diagnostics: Callable[..., dict[str, jax.Array]] | None = None,
    strong_view: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on a global batch; a non-finite step is counted, not applied.

    The teacher runs in eval mode (its BatchNorm uses its running statistics). With a
    teacher, `band_diagnostics(student_logits, teacher_logits)` (if given) adds the Haar band
    energies and per-band KLs to the metrics.
    With `strong_view` (MLKD), `strong_view(batch["strong_image"],
    batch["strong_draws"])` makes the second view of the batch; the student
    sees both views in train mode one after the other (its batch statistics
    updated twice, as two PyTorch forward passes do), the teacher both in
    eval mode, and the objective gets their logits.
    """
    images, labels = batch["image"], batch["label"]
    epoch = state.step // steps_per_epoch + 1
    teacher_logits = None
    if teacher is not None:
        teacher_logits = jax.lax.stop_gradient(
            teacher.apply(teacher_variables, images, train=False)
        )
    if strong_view is not None:
        strong_images = strong_view(batch["strong_image"], batch["strong_draws"])
        teacher_strong = jax.lax.stop_gradient(
            teacher.apply(teacher_variables, strong_images, train=False)
        )

    def loss_fn(params):
        logits, updates = student.apply(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        views = {}
        if strong_view is not None:
            views["student_strong"], updates = student.apply(
                {"params": params, "batch_stats": updates["batch_stats"]},
                strong_images,
                train=True,
                mutable=["batch_stats"],
            )
            views["teacher_strong"] = teacher_strong
        per_example = objective(logits, teacher_logits, labels, epoch=epoch, **views)
        terms = {k: v.mean() for k, v in per_example.items()}
        return sum(terms.values()), (terms, logits, updates["batch_stats"])

    (loss, (terms, logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params, step=state.step)
    params = optax.apply_updates(state.params, updates)

    finite = jnp.isfinite(loss) & jnp.all(
        jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = TrainState(
        step=state.step + 1,
        params=keep(params, state.params),
        batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state),
        nonfinite_steps=jnp.where(finite, 0, state.nonfinite_steps + 1),
    )
    metrics = {
        "loss": loss,
        **{f"loss_{k}": v for k, v in terms.items()},
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
        "learning_rate": schedule(state.step),
        "nonfinite": 1 - finite.astype(jnp.int32),
    }
    if teacher is not None:
        metrics["agreement"] = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(teacher_logits, -1))
        if band_diagnostics is not None:
            bands = band_diagnostics(jax.lax.stop_gradient(logits), teacher_logits)
            metrics.update({f"bands/{k}": v for k, v in bands.items()})
    return new_state, metrics


def eval_step(
    variables: Any,
    batch: dict[str, jax.Array],
    teacher_variables: Any,
    *,
    model: nn.Module,
    teacher: nn.Module | None,
) -> dict[str, jax.Array]:
    """Sums over the unmasked examples of a padded eval batch."""
    mask = batch["mask"]
    labels = batch["label"]
    logits = model.apply(variables, batch["image"], train=False)
    topk = jnp.argsort(logits, axis=-1)[:, ::-1][:, : min(5, logits.shape[-1])]
    hits = topk == labels[:, None]
    sums = {
        "count": jnp.sum(mask),
        "top1": jnp.sum(mask & hits[:, 0]),
        "top5": jnp.sum(mask & jnp.any(hits, axis=-1)),
    }
    if teacher is not None:
        teacher_logits = teacher.apply(teacher_variables, batch["image"], train=False)
        sums["agreement"] = jnp.sum(
            mask & (jnp.argmax(logits, -1) == jnp.argmax(teacher_logits, -1))
        )
        sums["teacher_kl"] = jnp.sum(
            losses.kd_loss(logits, teacher_logits, temperature=1.0, where=mask)
        )
    return sums


def band_diagnostics_for(config, class_permutation=None) -> Callable[..., dict[str, jax.Array]]:
    """Band diagnostics at the run's FiGKD level, mode and class order (`class_permutation`,
    the loss's; None: index order), or at level 1 in index order for other methods."""
    figkd = config.method.name == "figkd"
    return functools.partial(
        diagnostics.band_diagnostics,
        level=config.method.figkd.level if figkd else 1,
        mode=config.method.figkd.mode if figkd else "symmetric",
        temperature=config.method.temperature,
        class_permutation=class_permutation if figkd else None,
    )


def make_train_step(run, teacher: nn.Module | None):
    """`train_step` with the run's (a `run_setup.Run`) models, objective, optimiser and
    schedule bound: (state, batch, teacher_variables) -> (state, metrics)."""
    return functools.partial(
        train_step,
        student=run.student,
        teacher=teacher,
        objective=run.objective,
        tx=run.tx,
        schedule=run.schedule,
        steps_per_epoch=run.steps_per_epoch,
        band_diagnostics=band_diagnostics_for(run.config, run.class_permutation),
        strong_view=strong_view_function(run),
    )


def strong_view_function(run):
    """`device_input.finish_strong_view` with the run's dataset and dtype bound, for a method
    that trains on a strong view (MLKD); None otherwise."""
    if not methods.get(run.config.method.name).needs_strong_view:
        return None
    return functools.partial(device_input.finish_strong_view, info=run.info, dtype=run.config.dtype)


def device_steps(run, one_step):
    """(state, arrays, plan, teacher_variables, num_steps) -> (state, metrics [num_steps]):
    `num_steps` (static) applications of `one_step` in one lax.scan, each on the batch
    that device_input.batch_at builds on device for the state's step."""

    def steps(state, arrays, plan, teacher_variables, num_steps):
        batch_at = functools.partial(
            device_input.batch_at,
            arrays,
            plan,
            info=run.info,
            dtype=run.config.dtype,
            sharding=run.batch_sharded,
        )
        step_fn = lambda s, b: one_step(s, b, teacher_variables)
        if num_steps == 1:
            # No loop: XLA:CPU lays out convolutions inside a scan body poorly.
            state, metrics = step_fn(state, batch_at(state.step))
            return state, jax.tree.map(lambda x: x[None], metrics)
        return device_input.scan_train_steps(step_fn, state, batch_at, num_steps)

    return steps
