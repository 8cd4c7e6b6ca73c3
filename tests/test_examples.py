"""The examples run: each answers --help, and its quick path prints its table using nothing
but jax, numpy, optax and the library (no trainer, no Flax, no TensorFlow)."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "distill_mlp.py"
# Runs the example as __main__, then fails if it pulled in anything beyond the library.
RUN_AND_CHECK_IMPORTS = """
import runpy, sys
sys.argv = [{path!r}, *{args!r}]
runpy.run_path({path!r}, run_name="__main__")
beyond = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("flax", "tensorflow", "orbax", "ml_collections", "torch")
    or name.startswith(("figkd_jax.trainer", "figkd_jax.data", "figkd_jax.models"))
)
assert not beyond, beyond
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    code = RUN_AND_CHECK_IMPORTS.format(path=str(EXAMPLE), args=list(args))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_help():
    done = _run("--help")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("usage:")


def test_quick_path_prints_the_accuracies_with_the_library_alone():
    done = _run("--quick")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| student")]
    assert len(rows) == 2, done.stdout
    for row in rows:
        accuracy = float(row.strip("| ").split("|")[-1])
        assert 0.0 <= accuracy <= 100.0
