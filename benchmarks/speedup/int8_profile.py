"""Where does a CIFAR ResNet's INT8 time go on onnxruntime? Op-type shares from onnxruntime's profiler, dense
vs pruned to its layer floors (l1, layerwise 0.9, floor 10%), fp32 and INT8 (filterprune's quantizer), batch 32,
2 threads.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/speedup/int8_profile.py [resnet56]   # alone, quiet
"""

import collections
import copy
import json
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch

from filterprune.criteria import PruneContext, make_criterion
from filterprune.exporting import quantize
from filterprune.exporting.convert import export_onnx
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune

TMP = tempfile.mkdtemp(prefix="int8-profile-")
torch.manual_seed(0)
model = sys.argv[1] if len(sys.argv) > 1 else "resnet56"
dense = build_model(ModelSpec(model, 10, 3, 32)).eval()
pr = copy.deepcopy(dense)
prune(
    pr,
    make_criterion("l1"),
    PlanConfig(0.9, scope="layerwise", layer_floor=0.1),
    PruneContext(torch.randn(1, 3, 32, 32)),
    10,
)
calib = torch.randn(16, 3, 32, 32).numpy()
x = np.random.randn(32, 3, 32, 32).astype(np.float32)
for name, net in (("dense", dense), ("floor", pr)):
    p = export_onnx(net, f"{TMP}/{name}.onnx", (3, 32, 32))
    q = quantize.quantize(onnx.load(str(p)), calib, {"images": 16})
    open(f"{TMP}/{name}.int8.onnx", "wb").write(q.SerializeToString())
    for prec, f in (("fp32", str(p)), ("int8", f"{TMP}/{name}.int8.onnx")):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.enable_profiling = True
        so.profile_file_prefix = f"{TMP}/prof-{name}-{prec}"
        so.optimized_model_filepath = f"{TMP}/opt-{name}-{prec}.onnx"
        s = ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])
        inp = s.get_inputs()[0].name
        for _ in range(5):
            s.run(None, {inp: x})
        t = time.perf_counter()
        for _ in range(20):
            s.run(None, {inp: x})
        ms = (time.perf_counter() - t) / 20 * 1e3
        prof = s.end_profiling()
        ev = json.load(open(prof))
        by = collections.Counter()
        n = collections.Counter()
        for e in ev:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                by[e["args"]["op_name"]] += e["dur"]
                n[e["args"]["op_name"]] += 1
        tot = sum(by.values())
        print(
            f"{name} {prec}: {ms:.2f} ms/run; kernel share:",
            ", ".join(f"{k} {v / tot * 100:.0f}% (n={n[k] // 25})" for k, v in by.most_common(8)),
        )
