"""Shared test set-up: quiet TensorFlow, keep it off any accelerator, and share
XLA compilations between tests and their subprocesses (many tests compile the
same small programs), and the Cloud Storage emulator of the gs:// tests."""

import os
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "figkd_jax_test_xla_cache")
)


@pytest.fixture(scope="session")
def gcs():
    """A Cloud Storage emulator on 127.0.0.1 (tests/gcs_emulator.py), with every client of
    this process and of its subprocesses pointed at it, and the local "gs:" guard installed."""
    from tests import gcs_emulator

    emulator = gcs_emulator.Emulator()
    emulator.start()
    gcs_emulator.install_guard()
    yield emulator
    emulator.stop()
