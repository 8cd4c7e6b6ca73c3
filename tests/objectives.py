"""Objectives of the method registry built from the default config, for the method tests."""

import jax

from configs import default
from figkd_jax.trainer import methods


def build_objective(name, **fields):
    """`methods.build` of method `name`; ``block__field=value`` overrides a field of a block."""
    config = default.get_config().method
    config.name = name
    for key, value in fields.items():
        block, _, field = key.rpartition("__")
        (config[block] if block else config)[field] = value
    return methods.build(config)


def random_logits(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape) * 3
