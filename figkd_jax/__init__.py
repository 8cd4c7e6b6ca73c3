"""figkd_jax: frequency-aware knowledge distillation in JAX/Flax."""

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
