#!/usr/bin/env bash
# Rehearses the GPU check here, as the lent GPU machine will run it, on the CPU.
#
#   bash scripts/rehearse_gpu_check.sh   # ~1 min of CPU; 4.5-9 min on 2 busy shared cores
#
# The environment mirrors the lent machine (the device tool's KINDS.md) as far as this machine
# allows: a virtual environment .venv-rehearsal of Python 3.12 with jax and jaxlib 0.11.2 (the
# machine's; CPU here), the newest flax, optax and orbax-checkpoint, and numpy, scipy,
# scikit-learn, pytest, PyYAML, absl-py and etils; no TensorFlow, no ml-collections, no torch
# (no CPU wheel of it for Python 3.12 is offered here: the PyTorch rows are left out, and
# tests/test_benchmarks_*.py run them in the project's environment). It is made once,
# from PyPI. Then `QUICK=1 benchmarks/gpu_check.sh` runs in it with no network at all (a new
# network namespace, `unshare --net`, when this user may make one), pip pointed at nothing
# (PIP_NO_INDEX=1, no config file, no find-links), and the wheels of .whl/
# (scripts/fetch_device_wheels.sh, fetched first if missing) installed exactly as there.
#
# Environment: REHEARSAL_VENV (default .venv-rehearsal), PYTHON312 (an interpreter to make it),
# REHEARSAL_BUDGET_S (the check's budget here, default 1500).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${REHEARSAL_VENV:-.venv-rehearsal}
if [ ! -x "$venv/bin/python" ]; then
  python312=${PYTHON312:-}
  for candidate in python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3.12"; do
    if [ -z "$python312" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      python312=$candidate
    fi
  done
  [ -n "$python312" ] || { echo "rehearsal: no Python 3.12 found; set PYTHON312"; exit 2; }
  "$python312" -m venv "$venv"
  "$venv/bin/pip" install -q jax==0.11.2 jaxlib==0.11.2 flax optax orbax-checkpoint numpy scipy \
    scikit-learn pytest pyyaml absl-py etils
fi
compgen -G ".whl/*.whl" >/dev/null || bash scripts/fetch_device_wheels.sh

# What the lent machine lacks must be missing here too, or the rehearsal proves nothing.
"$venv/bin/python" - <<'PY'
import importlib.util
present = [m for m in ("tensorflow", "tensorflow_datasets", "ml_collections") if importlib.util.find_spec(m)]
assert not present, f"the rehearsal environment must not have {present}"
PY

out=$(mktemp -d /tmp/figkd_rehearsal.XXXXXX)
offline=()
unshare --net true 2>/dev/null && offline=(unshare --net)
echo "rehearsal: $venv, no index, ${offline[*]:-network namespace not available}, OUT=$out"
start=$SECONDS
status=0
# A CPU compiles for tens of seconds per setting (minutes on a busy shared machine): a budget
# of its own, so that the guard leaves out nothing here (REHEARSAL_BUDGET_S).
env PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= \
  PYTHON="$venv/bin/python" QUICK=1 OUT="$out" BUDGET_S="${REHEARSAL_BUDGET_S:-1500}" \
  "${offline[@]}" bash benchmarks/gpu_check.sh ||
  status=$?
echo "rehearsal: exit status $status in $((SECONDS - start)) s; files: $(ls "$out")"
exit "$status"
