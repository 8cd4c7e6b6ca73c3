"""Reruns mutmut mutants one at a time, each in a fresh Python process, and prints a table.

mutmut runs each mutant in a forked process; a fork of a process that has started JAX's or
TensorFlow's threads can hang, and mutmut then reports a timeout (⏰) for a mutant that
would have survived or been killed. This reruns such mutants without fork: for each name,
the tests that mutmut recorded as calling the mutated function (``mutants/mutmut-stats.json``)
under ``MUTANT_UNDER_TEST=<name>``, stopping at the first failure.

Usage (after ``mutmut run``, from the repository root):

  .venv/bin/python scripts/rerun_mutants.py NAME [NAME ...]
  .venv/bin/python scripts/rerun_mutants.py --timeouts   # every mutant mutmut timed out
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

MUTANTS = pathlib.Path("mutants")
TIMED_OUT = -24  # SIGXCPU: mutmut's CPU-time limit


def timed_out_mutants() -> list[str]:
    names = []
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        names += [name for name, code in codes.items() if code == TIMED_OUT]
    return names


def rerun(name: str, stats: dict) -> str:
    function = name.split("__mutmut_")[0]
    tests = sorted(
        stats["tests_by_mangled_function_name"].get(function, []),
        key=lambda test: stats["duration_by_test"].get(test, 0.0),
    )
    if not tests:
        return "no tests"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=MUTANTS,
        env={**os.environ, "MUTANT_UNDER_TEST": name},
        capture_output=True,
        text=True,
    )
    return {0: "survived", 1: "killed"}.get(
        proc.returncode, f"error (pytest exit {proc.returncode})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutant names, as `mutmut results` prints them")
    parser.add_argument("--timeouts", action="store_true", help="every mutant mutmut timed out")
    args = parser.parse_args()
    stats_file = MUTANTS / "mutmut-stats.json"
    if not stats_file.exists():
        print(f"error: no {stats_file}: run `mutmut run` first", file=sys.stderr)
        return 2
    names = args.names + (timed_out_mutants() if args.timeouts else [])
    if not names:
        print("error: name mutants, or pass --timeouts", file=sys.stderr)
        return 2
    stats = json.loads(stats_file.read_text())
    print("| mutant | result |\n|---|---|")
    for name in names:
        print(f"| {name} | {rerun(name, stats)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
