"""Runs a repository script in a fresh process that cannot import TensorFlow, as on the lent GPU
machine (which has neither TensorFlow nor TFDS): the benchmark tests' helper."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def hide_tensorflow(folder: pathlib.Path) -> str:
    """Writes into ``folder`` a tensorflow and a tensorflow_datasets whose import fails; returns
    the folder, to put first on PYTHONPATH (then every process the script starts has it too)."""
    for name in ("tensorflow", "tensorflow_datasets"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(
            f'raise ModuleNotFoundError("No module named {name!r} (hidden by the test)")\n'
        )
    return str(folder)


def run_script(*args: str, hidden: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python *args`` from the repository root, on the CPU, with ``hidden`` first on the path."""
    env = {**os.environ, "PYTHONPATH": f"{hidden}:{ROOT}", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
