"""Every benchmark script answers --help and runs its quickest path, so none can rot."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if "__main__" in p.read_text())
# The quickest path of each script run here, and the scripts whose quick path (slower, or
# needing TensorFlow hidden) a dedicated test runs.
QUICK_HERE = {
    "losses.py": ["--quick"],
    "train_step.py": ["--quick"],
}
QUICK_ELSEWHERE = {
    "gpu_check.py": "test_benchmarks_gpu_check.py",
    "input_pipeline.py": "test_data_decoded.py",
    "torch_step.py": "test_benchmarks_torch_step.py",
}


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_script_has_a_tested_quick_path():
    assert sorted({*QUICK_HERE, *QUICK_ELSEWHERE}) == SCRIPTS
    for script, test_file in QUICK_ELSEWHERE.items():
        text = (ROOT / "tests" / test_file).read_text()
        assert script in text and "--quick" in text, (script, test_file)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    done = _run(script, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(QUICK_HERE))
def test_quick_path_prints_a_table(script):
    done = _run(script, *QUICK_HERE[script])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "|" in done.stdout  # a table row
