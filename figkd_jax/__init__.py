"""figkd_jax: frequency-aware knowledge distillation in JAX/Flax.

The package's top level is the library (the Haar transform and the losses; jax and numpy
only). Above it, in subpackages: ``data`` (input pipelines), ``models``, ``io`` (storage),
``trainer`` and ``tools``; each checks its own extra when imported and fails with one line
naming it (``figkd_jax.extras``).
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors see; at run time, `__getattr__` below
    from figkd_jax.losses import (
        BANDS,
        DOMAINS,
        MLKD_TEMPERATURES,
        dist_loss,
        dist_terms,
        dkd_loss,
        dkd_terms,
        figkd_loss,
        kd_loss,
        mlkd_batch_loss,
        mlkd_class_loss,
        mlkd_confidence_fractions,
        mlkd_terms,
        standardize_logits,
    )
    from figkd_jax.wavelets import (
        MODES,
        haar_dwt,
        haar_highpass,
        haar_idwt,
        haar_lowpass,
        haar_max_level,
        haar_wavedec,
        haar_waverec,
    )

__version__ = "0.1.0"

__all__ = [
    "BANDS",
    "DOMAINS",
    "MLKD_TEMPERATURES",
    "MODES",
    "__version__",
    "dist_loss",
    "dist_terms",
    "dkd_loss",
    "dkd_terms",
    "figkd_loss",
    "haar_dwt",
    "haar_highpass",
    "haar_idwt",
    "haar_lowpass",
    "haar_max_level",
    "haar_wavedec",
    "haar_waverec",
    "kd_loss",
    "mlkd_batch_loss",
    "mlkd_class_loss",
    "mlkd_confidence_fractions",
    "mlkd_terms",
    "standardize_logits",
]

# The library's names are imported on first use (PEP 562), so that the subpackages can be
# imported without jax: the launcher checks a config before jax starts.
_WAVELET_NAMES = {"MODES"} | {name for name in __all__ if name.startswith("haar_")}


def __getattr__(name: str) -> object:
    if name in __all__ and name != "__version__":
        module = "wavelets" if name in _WAVELET_NAMES else "losses"
        value = getattr(importlib.import_module(f"figkd_jax.{module}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'figkd_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
