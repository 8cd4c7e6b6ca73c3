"""figkd_jax: frequency-aware knowledge distillation in JAX/Flax.

The package's top level is the library (the Haar transform and the losses; jax and numpy
only). Above it, in subpackages: ``data`` (input pipelines), ``models``, ``io`` (storage),
``trainer`` and ``tools``; each checks its own extra when imported and fails with one line
naming it (``figkd_jax.extras``).
"""

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
