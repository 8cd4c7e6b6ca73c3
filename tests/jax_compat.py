"""What the library tests need from JAX, on every JAX version the library supports.

The library (wavelets, losses) supports jax >= 0.4.38 (pyproject.toml; .ci/run tests that
version too); the tests keep to APIs present across that range.
"""

import jax

# `jax.enable_x64` (a context manager taking a bool) since jax 0.7;
# `jax.experimental.enable_x64` before.
enable_x64 = getattr(jax, "enable_x64", None)
if enable_x64 is None:
    from jax.experimental import enable_x64
