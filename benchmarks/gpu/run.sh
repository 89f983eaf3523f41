#!/usr/bin/env bash
# Commands for a lent GPU machine: write the GPU section of benchmarks/BENCHMARKS.md, in two parts of one
# device call each (not yet timed on a GPU; estimated at ~8 minutes each on one H200): the PyTorch rows
# (--part torch), then the TensorRT FP16 and INT8 rows (--part tensorrt: onnxruntime's TensorRT execution
# provider, which needs an onnxruntime-gpu built with TensorRT in the image; without it every TensorRT row
# says so). The image has torch, torchvision, onnx and onnxruntime; the rest is installed without
# dependencies from wheels carried in benchmarks/gpu/wheels/ (made here by `bash benchmarks/gpu/fetch_wheels.sh`;
# git ignores them). From the session:
#   run(command="bash benchmarks/gpu/run.sh --part torch", carry=["benchmarks/gpu/wheels"], timeout_s=560)
#   copy the returned results-torch.json into benchmarks/gpu/results/ (the next call starts from it), then
#   run(command="bash benchmarks/gpu/run.sh --part tensorrt", carry=["benchmarks/gpu/wheels"], timeout_s=560)
# and commit benchmarks/BENCHMARKS.md and benchmarks/gpu/results/ from the files the second call returns
# (its section and results.json merge both parts).
#   bash benchmarks/gpu/run.sh --dry-run  # anywhere: both parts on the CPU with tiny settings
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ -d benchmarks/gpu/wheels ] && ! $PY -c "import torch_pruning, thop, tqdm, safetensors" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --find-links benchmarks/gpu/wheels \
    torch-pruning thop tqdm safetensors psutil pyyaml
fi
out=${OUT:-benchmarks/gpu/results}
if [ "$out" != benchmarks/gpu/results ] && ls benchmarks/gpu/results/results-*.json >/dev/null 2>&1; then
  cp benchmarks/gpu/results/results-*.json "$out/"  # the other part's rows, merged into the section
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
PYTHONPATH=$PWD timeout 500 $PY benchmarks/gpu/gpu_bench.py --out "$out" "$@"
if [ -n "${OUT:-}" ] && [ -f benchmarks/BENCHMARKS.md ]; then cp benchmarks/BENCHMARKS.md "$OUT/"; fi
