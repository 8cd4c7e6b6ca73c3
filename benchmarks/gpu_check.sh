#!/usr/bin/env bash
# Accelerator checks and timings of the train step and the on-device input, in about 5 minutes.
#
#   bash benchmarks/gpu_check.sh 2>&1 | tee gpu_check.log    # on a GPU machine
#   QUICK=1 bash benchmarks/gpu_check.sh                      # tiny models, any machine (CPU)
#
# Environment:
#   PYTHON     the interpreter (default python3); it needs pip only when something is missing.
#   WHEEL_DIR  a folder of wheels to install from, offline (pip --no-index --find-links). Make it
#              where the internet is reachable, for the target's Python version and platform:
#                pip download -d wheels -r requirements.txt -r requirements-test.txt \
#                    "jax[cuda12]==$(sed -n 's/^jax==//p' requirements.txt)"
#   JAX_CUDA   what to install when jax sees no GPU (default: jax[cuda12] at the pinned version).
#   BUDGET_S   seconds for the whole script (default 290): no timing starts after the budget
#              less ~45 s; the settings left out are listed.
#   QUICK=1    resnet8 -> resnet8 on digits, wherever jax runs (no GPU needed or installed).
#
# Steps:
#   1. Install what is missing: the pinned requirements except jax and jaxlib (a machine's own
#      CUDA-enabled jax is kept), and a CUDA jax when jax sees no GPU.
#   2. tests/test_device_input.py on the accelerator: on-device batches equal the TF pipeline's
#      (digits and mock CIFAR arrays, float32 and bfloat16), crop offsets uniform on
#      [0, 2*pad] (chi-square) and fair flips, each example at most once per epoch, scanned
#      train steps equal to single steps.
#   3. benchmarks/train_step.py: ResNet32x4 -> ResNet8x4 and WRN-40-2 -> WRN-16-2 FiGKD steps at
#      batch 64 and 512, float32 and bfloat16, 1 and 50 steps per call, one Markdown table; and
#      the bfloat16 check: first-step loss within 2% of float32's.
# Exit status: 0 when every step passed, 1 when a check failed, 2 when the set-up failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-290}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3

pip_install() {
  if [ -n "${WHEEL_DIR:-}" ]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEEL_DIR" "$@"
  else
    "$PY" -m pip install -q "$@"
  fi
}

has_gpu() { "$PY" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; }

if [ -n "${QUICK:-}" ]; then
  bench_args=(--dataset digits --teacher resnet8 --student resnet8 --batch_size 64
    --dtype float32 bfloat16 --steps_per_dispatch 1 4 --timed_steps 8)
else
  # tests/conftest.py hides GPUs from JAX when CUDA_VISIBLE_DEVICES is unset.
  export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
  bench_args=(--dataset cifar100 --teacher resnet32x4 wrn_40_2 --student resnet8x4 wrn_16_2
    --batch_size 64 512 --dtype float32 bfloat16 --steps_per_dispatch 1 50 --timed_steps 100)
fi

echo "== 1. set-up"
if ! "$PY" -c 'import jax' 2>/dev/null; then
  jax_pin=$(sed -n 's/^jax==//p' requirements.txt)
  if [ -n "${QUICK:-}" ]; then pip_install "jax==$jax_pin"; else pip_install "jax[cuda12]==$jax_pin"; fi
fi
needed="flax, optax, orbax.checkpoint, ml_collections, tensorflow, tensorflow_datasets"
needed+=", importlib_resources, sklearn, PIL, pywt, pytest"
if ! "$PY" -c "import $needed" 2>/dev/null; then
  echo "installing the pinned requirements (jax and jaxlib kept as they are)"
  requirements=$(mktemp)
  grep -hvE '^[[:space:]]*(#|$|jax==|jaxlib==)' requirements.txt requirements-test.txt >"$requirements"
  pip_install -r "$requirements" || { echo "set-up failed: pip could not install $requirements"; exit 2; }
fi
if [ -z "${QUICK:-}" ] && ! has_gpu; then
  jax_pin=$(sed -n 's/^jax==//p' requirements.txt)
  echo "jax sees no GPU: installing ${JAX_CUDA:-jax[cuda12]==$jax_pin}"
  pip_install "${JAX_CUDA:-jax[cuda12]==$jax_pin}" || { echo "set-up failed: no CUDA jax"; exit 2; }
  has_gpu || { echo "set-up failed: jax still sees no GPU (driver? CUDA_VISIBLE_DEVICES?)"; exit 2; }
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L
"$PY" -c 'import jax, sys; print("python", sys.version.split()[0], "jax", jax.__version__, jax.devices())' ||
  { echo "set-up failed: jax does not run"; exit 2; }

failed=()
echo "== 2. on-device input and scans: tests/test_device_input.py"
"$PY" -m pytest -q -p no:cacheprovider tests/test_device_input.py || failed+=("tests")

echo "== 3. train step timings and the bfloat16 check"
deadline=$((BUDGET_S - SECONDS - 45))
"$PY" benchmarks/train_step.py "${bench_args[@]}" --deadline_s "$((deadline > 0 ? deadline : 0))" \
  --check_bf16 || failed+=("benchmark")

echo "== done in ${SECONDS} s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all checks passed"
