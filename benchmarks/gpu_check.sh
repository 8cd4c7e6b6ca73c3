#!/usr/bin/env bash
# The GPU check on a lent GPU machine as it is: no network, no TensorFlow, no pip index.
#
#   bash scripts/fetch_device_wheels.sh            # once, here: the missing wheels into .whl/
#   bash benchmarks/gpu_check.sh                   # there (device call carrying .whl)
#   QUICK=1 bash benchmarks/gpu_check.sh           # resnet8 -> resnet8 on any machine (CPU)
#
# Installs the wheels of $WHEEL_DIR (default .whl; ml-collections, which the machine lacks)
# with `pip install --no-index --no-deps --target` into a scratch folder put on PYTHONPATH,
# then runs benchmarks/gpu_check.py: versions first, the on-device input tests that need no
# TensorFlow, JAX and PyTorch train-step timings under a budget guard, one table (see its
# docstring). With $OUT set, the table, the rows and this raw log are written there.
#
# Environment:
#   PYTHON      the interpreter (default python3: on the lent machine the one with torch, jax).
#   WHEEL_DIR   folder of wheels to install (default .whl; none: nothing installed).
#   BUDGET_S    seconds for the timings and tests (default 450: the call ends within 8 minutes).
#   QUICK=1     small models, a few settings, any machine.
#   OUT         folder for gpu_check_table.md, gpu_check_rows.jsonl and gpu_check.log.
# Exit status: 0 when every check passed, 1 when one failed, 2 when the set-up failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
wheel_dir=${WHEEL_DIR:-.whl}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
# One chip; tests/conftest.py hides GPUs from JAX when this is unset.
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if compgen -G "$wheel_dir/*.whl" >/dev/null; then
  site=$(mktemp -d /tmp/figkd_device_site.XXXXXX)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheel_dir"/*.whl ||
    { echo "set-up failed: pip could not install $wheel_dir/*.whl into $site"; exit 2; }
  export PYTHONPATH="$site:$PYTHONPATH"
  echo "installed into $site: $(cd "$wheel_dir" && echo *.whl)"
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L

args=(--budget_s "${BUDGET_S:-450}")
[ -n "${QUICK:-}" ] && args+=(--quick)
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  "$PY" benchmarks/gpu_check.py "${args[@]}" --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
  exit "${PIPESTATUS[0]}"
fi
exec "$PY" benchmarks/gpu_check.py "${args[@]}" "$@"
