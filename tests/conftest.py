"""Shared test set-up: quiet TensorFlow, keep it off any accelerator, and share
XLA compilations between tests and their subprocesses (many tests compile the
same small programs); float64 JAX for the reference tests, and the Cloud Storage emulator
of the gs:// tests. Shared helpers that are not fixtures live in tests/helpers.py."""

import os
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "figkd_jax_test_xla_cache")
)


@pytest.fixture
def x64():
    """JAX in float64 for the test's duration (comparisons with float64 references)."""
    from tests.jax_compat import enable_x64

    with enable_x64(True):
        yield


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
