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


def in_class_order(objective: Objective, class_permutation) -> Objective:
    """`objective` on the classes renumbered by `class_permutation` ([C] ints, a permutation).

    Position ``i`` of both logit vectors holds class ``class_permutation[i]`` and every label
    is renumbered alike, so a term that does not depend on the numbering of the classes (CE,
    KD, DKD) keeps its value (up to float rounding), while FiGKD's Haar transform pairs
    neighbours of the new order: its term is ``figkd_loss(..., class_permutation=...)``.
    """
    permutation = jnp.asarray(class_permutation)
    position = jnp.argsort(permutation)  # position[c]: where class c now sits

    def objective_in_order(student, teacher, labels, *, epoch, where=None):
        reorder = lambda z: None if z is None else jnp.take(z, permutation, axis=-1)
        return objective(
            reorder(student), reorder(teacher), position[labels], epoch=epoch, where=where
        )

    return objective_in_order


def build(method_config, class_permutation=None) -> Objective:
    """The objective of `method_config` (the `config.method` block), on the classes in the
    order `class_permutation` (see `in_class_order`; None: index order)."""
    objective = get(method_config.name).make(method_config)
    if class_permutation is None:
        return objective
    return in_class_order(objective, class_permutation)
