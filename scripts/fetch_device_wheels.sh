#!/usr/bin/env bash
# Downloads the wheels the GPU check needs that the lent GPU machine lacks, into .whl/.
#
#   bash scripts/fetch_device_wheels.sh        # here, where PyPI is reachable
#
# The lent machine (the device tool's KINDS.md) has Python 3.12, jax with the CUDA plugin,
# flax, optax, orbax-checkpoint, absl-py, pyyaml, numpy, scipy, pytest and torch, and reaches
# no package registry. Of what benchmarks/gpu_check.sh imports it lacks only ml-collections
# (configs/ and the run set-up use it; its own needs, absl-py and PyYAML, are there). So this
# fetches exactly that, at the version pinned in requirements.txt, for CPython 3.12 on
# manylinux x86-64; benchmarks/gpu_check.sh installs .whl/*.whl with
# `pip install --no-index --no-deps --target`. .whl/ is ignored by git: name it in the
# device call's `carry`.
#
# Environment: WHEEL_DIR (default .whl), PYTHON (the pip that downloads; default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
wheel_dir=${WHEEL_DIR:-.whl}
py=${PYTHON:-python3}
# Pure-Python or binary, one version each: two versions of a package stop the install there.
packages=(ml-collections)

pinned() {
  local version
  version=$(sed -n "s/^$1==//p" requirements.txt)
  if [ -z "$version" ]; then
    echo "fetch_device_wheels: $1 has no pin in requirements.txt" >&2
    exit 2
  fi
  echo "$1==$version"
}

rm -rf "$wheel_dir"
mkdir -p "$wheel_dir"
for package in "${packages[@]}"; do
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$wheel_dir" "$(pinned "$package")"
done
ls -l "$wheel_dir"
du -sh "$wheel_dir"
