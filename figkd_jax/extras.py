"""One-line errors for the parts of figkd_jax that need an optional extra.

The library (``wavelets``, ``losses``, ``diagnostics``) and the dataset registry need only jax
and numpy. Each subpackage above them checks its own extra when it is imported: ``io``,
``models``, ``trainer`` and ``tools`` need the ``train`` extra, the TensorFlow modules of
``data`` (and the event writer) also TensorFlow, which that extra includes, and the report and
its plots the ``report`` extra. Without them, the import fails with a ``MissingExtraError``
whose one line names the extra to install, rather than with the first missing module deep
inside. Nothing here touches the import system: ``import figkd_jax`` changes no global state.
"""

from __future__ import annotations

import importlib.util

TRAIN_PACKAGES = ("flax", "optax", "orbax.checkpoint", "ml_collections", "absl", "etils")
TENSORFLOW_PACKAGES = ("tensorflow", "tensorflow_datasets")
REPORT_PACKAGES = ("matplotlib",)


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


_found: set[str] = set()


def require(extra: str, *packages: str) -> None:
    """Raises MissingExtraError naming `extra` unless every one of `packages` is importable."""
    for package in packages:
        if package in _found:
            continue
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):  # a missing parent package, or a broken one
            found = False
        if not found:
            raise MissingExtraError(
                f"{package.split('.')[0]} is not installed: this part of figkd_jax needs the "
                f'"{extra}" extra: pip install "figkd_jax[{extra}]"'
            )
        _found.add(package)


def require_train() -> None:
    """The check of the subpackages that need the trainer's packages (not TensorFlow)."""
    require("train", *TRAIN_PACKAGES)


def require_tensorflow() -> None:
    """The check of the modules that read or write through TensorFlow or TFDS."""
    require("train", *TRAIN_PACKAGES, *TENSORFLOW_PACKAGES)


def require_report() -> None:
    """The check of the report and its plots."""
    require("report", *REPORT_PACKAGES)
