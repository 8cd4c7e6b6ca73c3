"""figkd_jax: frequency-aware knowledge distillation in JAX/Flax.

The package's top level is the library (the Haar transform and the losses; jax and numpy
only). Above it, in subpackages: ``data`` (input pipelines), ``models``, ``io`` (storage),
``trainer`` and ``tools``; each checks its own extra when imported and fails with one line
naming it (``figkd_jax.extras``).
"""

import importlib

# The library's names are imported on first use (PEP 562), so that the subpackages can be
# imported without jax: the launcher checks a config before jax starts.
_LIBRARY = {
    "losses": (
        "BANDS",
        "DOMAINS",
        "MLKD_TEMPERATURES",
        "dist_loss",
        "dist_terms",
        "dkd_loss",
        "dkd_terms",
        "figkd_loss",
        "kd_loss",
        "mlkd_batch_loss",
        "mlkd_class_loss",
        "mlkd_confidence_fractions",
        "mlkd_terms",
        "standardize_logits",
    ),
    "wavelets": (
        "MODES",
        "haar_dwt",
        "haar_highpass",
        "haar_idwt",
        "haar_lowpass",
        "haar_max_level",
        "haar_wavedec",
        "haar_waverec",
    ),
}
_MODULE_OF = {name: module for module, names in _LIBRARY.items() for name in names}

__version__ = "0.1.0"

__all__ = sorted(["__version__", *_MODULE_OF])


def __getattr__(name: str):
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"figkd_jax.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'figkd_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
