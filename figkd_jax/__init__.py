"""figkd_jax: frequency-aware knowledge distillation in JAX/Flax."""

__version__ = "0.1.0"
