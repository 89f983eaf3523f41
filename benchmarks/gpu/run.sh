#!/usr/bin/env bash
# One command for a lent GPU machine: writes the GPU section of benchmarks/BENCHMARKS.md (~8 minutes on one
# H200). The image has torch, torchvision, onnx and onnxruntime; the rest is installed without dependencies
# from wheels carried in benchmarks/gpu/wheels/ (made here by `bash benchmarks/gpu/fetch_wheels.sh`; git
# ignores them). From the session: run(command="bash benchmarks/gpu/run.sh", carry=["benchmarks/gpu/wheels"],
# timeout_s=560), then commit benchmarks/BENCHMARKS.md and benchmarks/gpu/results/ from the files it returns.
#   bash benchmarks/gpu/run.sh --dry-run  # anywhere: the same code on the CPU with tiny settings
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ -d benchmarks/gpu/wheels ] && ! $PY -c "import torch_pruning, thop, tqdm, safetensors" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --find-links benchmarks/gpu/wheels \
    torch-pruning thop tqdm safetensors psutil pyyaml
fi
out=${OUT:-benchmarks/gpu/results}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
PYTHONPATH=$PWD timeout 500 $PY benchmarks/gpu/gpu_bench.py --out "$out" "$@"
if [ -n "${OUT:-}" ] && [ -f benchmarks/BENCHMARKS.md ]; then cp benchmarks/BENCHMARKS.md "$OUT/"; fi
