#!/usr/bin/env bash
# A fresh Cloud TPU VM or GPU machine: a Python 3.11 environment in .venv with the pinned
# requirements, jax for the machine's accelerator, and figkd_jax (editable, with the report).
#
#   bash scripts/setup_cloud.sh tpu       # Cloud TPU VM (tpu-ubuntu2204-base: Python 3.10)
#   bash scripts/setup_cloud.sh cuda12    # NVIDIA GPUs (CUDA 12 wheels; needs the driver only)
#   bash scripts/setup_cloud.sh cpu
#   bash scripts/setup_cloud.sh --requirements tpu   # print the requirement lines, install nothing
#
# The pins of requirements.txt need Python 3.11 to 3.13 (jax 0.10.2 and numpy 2.4 have no
# Python 3.10 release; tensorflow-cpu 2.21 no 3.14 wheel), while the images' system Python is
# 3.10 (Ubuntu 22.04): uv (from PyPI, or its standalone installer where pip is missing)
# downloads a managed CPython 3.11 into its cache and makes the environment; nothing of the
# system's Python changes. Needs the internet (a TPU VM has it). Rerunning it is harmless.
# tests/test_install_lines.py resolves the lines this prints against PyPI for Python 3.11 and
# 3.13 on manylinux x86-64, so a pin that drops one of them fails CI.
#
# Environment: PYTHON_VERSION (default 3.11; 3.11 to 3.13), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

# The line that installs jax for the accelerator, on top of requirements.txt (none for cpu).
jax_line() {
  local jax_version
  jax_version=$(sed -n 's/^jax==//p' requirements.txt)
  case $1 in
    tpu | cuda12) echo "jax[$1]==$jax_version" ;;
    cpu) ;;
    *)
      echo "setup_cloud: the accelerator is tpu, cuda12 or cpu, not '$1'" >&2
      exit 2
      ;;
  esac
}

requirements() {
  local jax
  jax=$(jax_line "$1")
  echo "-r requirements.txt"
  if [ -n "$jax" ]; then echo "$jax"; fi
}

if [ "${1:-}" = "--requirements" ]; then
  requirements "${2:-}"
  exit 0
fi
if [ $# -ne 1 ]; then
  echo "usage: bash scripts/setup_cloud.sh tpu|cuda12|cpu" >&2
  exit 2
fi
jax=$(jax_line "$1")
venv=${VENV:-.venv}
python_version=${PYTHON_VERSION:-3.11}

if ! command -v uv > /dev/null; then
  export PATH="$HOME/.local/bin:$PATH"
fi
if ! command -v uv > /dev/null; then
  python3 -m pip install --user --quiet uv 2> /dev/null \
    || curl -LsSf https://astral.sh/uv/install.sh | sh
fi
uv venv --allow-existing --python "$python_version" "$venv"
uv pip install --python "$venv/bin/python" -r requirements.txt ${jax:+"$jax"}
uv pip install --python "$venv/bin/python" -e '.[report]'
"$venv/bin/python" -c "import jax; print('jax', jax.__version__, 'on', jax.devices())"
