"""Shared test set-up: quiet TensorFlow, keep it off any accelerator, and share
XLA compilations between tests and their subprocesses (many tests compile the
same small programs)."""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "figkd_jax_test_xla_cache")
)
