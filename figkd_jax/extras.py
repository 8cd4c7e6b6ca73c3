"""One-line errors for the parts of figkd_jax that need an optional extra.

The library (``wavelets``, ``losses``, ``diagnostics``, the dataset registry) needs only jax
and numpy. Everything else needs the ``train`` extra (the input pipelines and event files also
TensorFlow, which it includes), and the report's plots the ``report`` extra. Without them,
``import figkd_jax.train`` (or ``python -m figkd_jax.export``) fails with an ImportError whose
one line names the extra to install, rather than with the first missing module deep inside.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

# Modules that need nothing beyond jax and numpy.
LIBRARY_MODULES = frozenset(
    {
        "figkd_jax.extras",
        "figkd_jax.wavelets",
        "figkd_jax.losses",
        "figkd_jax.diagnostics",
        "figkd_jax.data",
        "figkd_jax.data.registry",
        "figkd_jax.data.rotation",
    }
)
TRAIN_PACKAGES = ("flax", "optax", "orbax.checkpoint", "ml_collections", "absl", "etils")
TENSORFLOW_PACKAGES = ("tensorflow", "tensorflow_datasets")
# Modules that need TensorFlow besides the rest of the train extra.
TENSORFLOW_MODULES = (
    "figkd_jax.events",
    "figkd_jax.data.augment",
    "figkd_jax.data.builders",
    "figkd_jax.data.pipeline",
    "figkd_jax.data.prepare",
    "figkd_jax.data.sources",
)
REPORT_PACKAGES = ("matplotlib",)
REPORT_MODULES = ("figkd_jax.plots", "figkd_jax.report")


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


def required_packages(module: str) -> list[tuple[str, tuple[str, ...]]]:
    """(extra, packages) pairs that `module` (a figkd_jax module name) needs."""
    if module in LIBRARY_MODULES or not module.startswith("figkd_jax."):
        return []
    needs = [("train", TRAIN_PACKAGES)]
    if module.startswith(TENSORFLOW_MODULES):
        needs.append(("train", TENSORFLOW_PACKAGES))
    if module.startswith(REPORT_MODULES):
        needs.append(("report", REPORT_PACKAGES))
    return needs


class _ExtrasFinder(importlib.abc.MetaPathFinder):
    """Checks a figkd_jax module's extras before the ordinary finders load it."""

    def find_spec(self, fullname, path, target=None):
        del path, target
        if fullname.startswith("figkd_jax."):
            for extra, packages in required_packages(fullname):
                require(extra, *packages)
        return None


def install() -> None:
    """Puts the check in front of every import of a figkd_jax module (once)."""
    if not any(isinstance(f, _ExtrasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ExtrasFinder())
