#!/usr/bin/env bash
# Wheels that benchmarks/gpu/run.sh installs on a GPU machine with no network (for Python 3.10-3.13).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
$PY -m pip download -q --no-deps -d wheels torch-pruning==1.6.1 thop tqdm
for v in 3.10 3.11 3.12 3.13; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$v" -d wheels safetensors psutil pyyaml
done
ls wheels
