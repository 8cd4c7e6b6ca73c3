"""figkd_jax: frequency-aware knowledge distillation in JAX/Flax.

The package's top level is the library (the Haar transform and the losses; jax and numpy
only). The trainer's modules need the ``train`` extra; importing one without it fails with
one line naming the extra (``figkd_jax.extras``).
"""

from figkd_jax import extras
from figkd_jax.losses import (
    BANDS,
    DOMAINS,
    dkd_loss,
    dkd_terms,
    figkd_loss,
    kd_loss,
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

extras.install()

__version__ = "0.1.0"

__all__ = [
    "BANDS",
    "DOMAINS",
    "MODES",
    "__version__",
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
    "standardize_logits",
]
