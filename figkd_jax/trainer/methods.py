"""Training objectives: a registry from method name to named, weighted loss terms.

Every objective maps a batch of logits to a dict ``{term name: per-example
weighted value}`` of shape ``[batch]``; the trainer sums the terms into the
loss, averages over the unmasked examples, and logs each term on its own.
A method with ``needs_strong_view`` (MLKD) also takes the logits of a second,
strongly augmented view of the same examples (``student_strong``,
``teacher_strong``).
Defaults of every weight live in ``configs/default.py`` (``config.method``);
this module only reads them.

With ``config.method.standardize`` ("+LS", Sun et al., CVPR 2024) the distillation term
sees standardized logits and follows the recipe of the authors' code
(sunshangquan/logit-standardization-KD, ``tools/train.py`` with ``--logit-stand
--base-temp 2 --kd-weight 9``; docs/protocol.md): KD at temperature ``kd.ls_temperature``
with weight ``kd.ls_kd_weight`` (2 and 9; CE weight unchanged, 0.1); DKD at temperature
``dkd.ls_temperature`` with alpha and beta multiplied by ``dkd.ls_weight_scale`` (2 and 9).
The temperature still divides the standardized logits and the term keeps its ``T**2``
factor, as in the authors' ``kd_loss`` and ``dkd_loss``. FiGKD+LS, this project's
definition (docs/method.md): the Haar bands of the standardized logits, temperature
``figkd.ls_temperature``, weight ``figkd_weight * figkd.ls_weight_scale`` (2 and 9).
MLKD+LS: the instance-level inputs standardized, temperature ``mlkd.ls_temperature`` in place
of the first of ``mlkd.temperatures`` and weight ``mlkd.ls_kd_weight`` on every level (2 and 9).

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
import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from figkd_jax import losses

# (student_logits [B, C], teacher_logits [B, C] or None, labels [B], *, epoch,
# where, and for a method with a strong view student_strong, teacher_strong
# [B, C]) -> {term: [B]}. `epoch` counts from 1 and may be fractional or traced.
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
    kd = config.kd
    if config.standardize:
        # The LS authors' recipe replaces the temperature and the KD weight.
        temperature, weight = kd.ls_temperature, kd.ls_kd_weight
    else:
        temperature, weight = config.temperature, kd.kd_weight
    return weight * losses.kd_loss(s, t, temperature=temperature, where=where)


def _dkd_term(config, s, t, labels, epoch, where):
    dkd = config.dkd
    # The LS authors' recipe: its own temperature, alpha and beta scaled alike.
    scale = dkd.ls_weight_scale if config.standardize else 1.0
    warmup = jnp.minimum(epoch / dkd.warmup_epochs, 1.0)
    return warmup * losses.dkd_loss(
        s,
        t,
        labels,
        temperature=dkd.ls_temperature if config.standardize else config.temperature,
        alpha=scale * dkd.alpha,
        beta=scale * dkd.beta,
        where=where,
    )


def _figkd_term(config, s, t, labels, epoch, where):
    del labels, epoch
    figkd = config.figkd
    # FiGKD+LS (this project's definition): as DKD+LS, a temperature and a weight scale.
    scale = figkd.ls_weight_scale if config.standardize else 1.0
    return (scale * figkd.figkd_weight) * losses.figkd_loss(
        s,
        t,
        temperature=figkd.ls_temperature if config.standardize else config.temperature,
        level=figkd.level,
        band=figkd.band,
        domain=figkd.domain,
        mode=figkd.mode,
        where=where,
    )


def _dist_term(config, s, t, labels, epoch, where):
    del labels, epoch
    return losses.dist_loss(
        s,
        t,
        temperature=config.temperature,
        beta=config.dist.beta,
        gamma=config.dist.gamma,
        where=where,
    )


def _mlkd(config) -> Objective:
    """MLKD as its authors' code trains it: cross-entropy on both views, and the
    instance-, class- and batch-level terms of `losses.mlkd_terms`, each times
    `kd_weight`. MLKD+LS as the logit-standardization authors run it (their
    ``mdistiller/distillers/MLKD.py`` and ``tools/train.py``): the instance-level inputs
    z-scored, ``ls_temperature`` in place of the first temperature of every level and
    ``ls_kd_weight`` in place of ``kd_weight`` on every level; CE unchanged."""

    def objective(student, teacher, labels, *, epoch, where=None, student_strong, teacher_strong):
        del epoch
        mlkd = config.mlkd
        temperatures, kd_weight = tuple(mlkd.temperatures), mlkd.kd_weight
        if config.standardize:
            temperatures, kd_weight = (mlkd.ls_temperature, *temperatures[1:]), mlkd.ls_kd_weight
        terms = losses.mlkd_terms(
            student,
            teacher,
            student_strong,
            teacher_strong,
            temperatures=temperatures,
            strong_temperatures=mlkd.strong_temperatures,
            standardize=config.standardize,
            where=where,
        )
        ce = cross_entropy(student, labels, where) + cross_entropy(student_strong, labels, where)
        return {
            "ce": mlkd.ce_weight * ce,
            **{f"mlkd_{level}": kd_weight * value for level, value in terms.items()},
        }

    return objective


def _distillation_inputs(config, student, teacher):
    """The logits the distillation term sees: standardized as the LS authors' code does when
    `standardize` is on (``(z - mean) / (1e-7 + std)``, Bessel-corrected std, per example)."""
    if config.standardize:
        standardize = functools.partial(losses.standardize_logits, eps=1e-7, ddof=1)
        return standardize(student), standardize(teacher)
    return student, teacher


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered objective: whether it needs a teacher and a second, strongly
    augmented view of each batch, and its builder."""

    needs_teacher: bool
    make: Callable[..., Objective]
    needs_strong_view: bool = False


METHODS: Mapping[str, Method] = {
    "ce": Method(needs_teacher=False, make=_ce),
    "kd": Method(needs_teacher=True, make=_distillation("kd", _kd_term)),
    "dkd": Method(needs_teacher=True, make=_distillation("dkd", _dkd_term)),
    "figkd": Method(needs_teacher=True, make=_distillation("figkd", _figkd_term)),
    "dist": Method(needs_teacher=True, make=_distillation("dist", _dist_term)),
    "mlkd": Method(needs_teacher=True, make=_mlkd, needs_strong_view=True),
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
