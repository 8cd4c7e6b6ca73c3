"""One-line errors for modules that need an optional extra of the package.

The library (``wavelets``, ``losses``) needs only jax and numpy; the trainer, the input
pipelines, the report and the PyTorch conversion need the extras named in pyproject.toml.
"""

from __future__ import annotations

import importlib.util

# Importable module -> the extra that installs it.
EXTRA_OF = {
    "flax": "train",
    "optax": "train",
    "orbax.checkpoint": "train",
    "ml_collections": "train",
    "absl": "train",
    "etils": "train",
    "tensorflow": "train",
    "tensorflow_datasets": "train",
    "sklearn": "train",
    "matplotlib": "report",
    "tensorboard": "report",
    "torch": "torch",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(*modules: str) -> None:
    """Raises MissingExtraError naming the extra if any of `modules` is not importable."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a missing parent package
            found = False
        if not found:
            extra = EXTRA_OF.get(module, "train")
            raise MissingExtraError(
                f"{module} is not installed: this part of figkd_jax needs its "
                f'"{extra}" extra: pip install "figkd_jax[{extra}]"'
            )
