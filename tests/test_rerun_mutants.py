"""scripts/rerun_mutants.py: its help, and one line with exit status 2 before a mutmut run."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "rerun_mutants.py"


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_help_and_the_error_without_a_mutmut_run(tmp_path):
    assert _run("--help", cwd=tmp_path).returncode == 0
    proc = _run("--timeouts", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: no mutants/mutmut-stats.json: run `mutmut run` first"
