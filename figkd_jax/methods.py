"""Training objectives: a registry from method name to named, weighted loss terms.

Every objective maps a batch of logits to a dict ``{term name: per-example
weighted value}`` of shape ``[batch]``; the trainer sums the terms into the
loss, averages over the unmasked examples, and logs each term on its own.
Defaults of every weight live in ``configs/default.py`` (``config.method``);
this module only reads them.

Example:

  >>> import jax.numpy as jnp, ml_collections
  >>> from configs import default
  >>> config = default.get_config().method
  >>> config.name = "figkd"
  >>> objective = build(config)
  >>> logits = jnp.zeros((2, 10))
  >>> sorted(objective(logits, logits, jnp.array([1, 2]), epoch=1))
  ['ce', 'figkd']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from figkd_jax import losses

# (student_logits [B, C], teacher_logits [B, C] or None, labels [B], *, epoch,
# where) -> {term: [B]}. `epoch` counts from 1 and may be fractional or traced.
Objective = Callable[..., dict[str, jax.Array]]


def cross_entropy(logits: jax.Array, labels: jax.Array, where: jax.Array | None = None):
    """Per-example softmax cross-entropy in float32; masked examples give 0."""
    logits = logits.astype(jnp.float32)
    if where is not None:
        logits = jnp.where(where[..., None], logits, 0.0)
    value = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return value if where is None else jnp.where(where, value, 0.0)


def _ce(config) -> Objective:
    def objective(student, teacher, labels, *, epoch, where=None):
        del teacher, epoch
        return {"ce": config.ce.ce_weight * cross_entropy(student, labels, where)}

    return objective


def _distillation(term: str, distill: Callable[..., jax.Array]) -> Callable[..., Objective]:
    """An objective builder: ``ce_weight`` x cross-entropy plus the ``term`` of
    ``distill(config, student, teacher, labels, epoch, where)``, which sees the
    (optionally standardized) logits and returns its weighted per-example values."""

    def make(config) -> Objective:
        def objective(student, teacher, labels, *, epoch, where=None):
            s, t = _distillation_inputs(config, student, teacher)
            return {
                "ce": config[term].ce_weight * cross_entropy(student, labels, where),
                term: distill(config, s, t, labels, epoch, where),
            }

        return objective

    return make


def _kd_term(config, s, t, labels, epoch, where):
    del labels, epoch
    return config.kd.kd_weight * losses.kd_loss(s, t, temperature=config.temperature, where=where)


def _dkd_term(config, s, t, labels, epoch, where):
    warmup = jnp.minimum(epoch / config.dkd.warmup_epochs, 1.0)
    return warmup * losses.dkd_loss(
        s,
        t,
        labels,
        temperature=config.temperature,
        alpha=config.dkd.alpha,
        beta=config.dkd.beta,
        where=where,
    )


def _figkd_term(config, s, t, labels, epoch, where):
    del labels, epoch
    return config.figkd.figkd_weight * losses.figkd_loss(
        s,
        t,
        temperature=config.temperature,
        level=config.figkd.level,
        band=config.figkd.band,
        domain=config.figkd.domain,
        mode=config.figkd.mode,
        where=where,
    )


def _distillation_inputs(config, student, teacher):
    """The logits the distillation term sees: z-scored when `standardize` is on."""
    if config.standardize:
        return losses.standardize_logits(student), losses.standardize_logits(teacher)
    return student, teacher


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered objective: whether it needs a teacher, and its builder."""

    needs_teacher: bool
    make: Callable[..., Objective]


METHODS: Mapping[str, Method] = {
    "ce": Method(needs_teacher=False, make=_ce),
    "kd": Method(needs_teacher=True, make=_distillation("kd", _kd_term)),
    "dkd": Method(needs_teacher=True, make=_distillation("dkd", _dkd_term)),
    "figkd": Method(needs_teacher=True, make=_distillation("figkd", _figkd_term)),
}


def names() -> list[str]:
    return sorted(METHODS)


def get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"config.method.name={name!r} is unknown; valid methods: {names()}")
    return METHODS[name]


def build(method_config) -> Objective:
    """The objective of `method_config` (the `config.method` block)."""
    return get(method_config.name).make(method_config)
