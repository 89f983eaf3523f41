"""Peak memory of `compress` on a large image folder: it must stream, not decode the folder into memory.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/folder_memory.py [--images 20000] [--root /tmp/fp-folder]

Writes N JPEGs of 256x256 (smooth gradients with noise, 10 classes; 90% train / 10% test) under --root
(outside the repository; reused when already there), then runs

    filterprune compress tv:resnet18 --criterion l1 --sparsity 0.4 --dataset imagefolder:ROOT
        --epochs 0 --finetune-epochs 0 --no-bench --workers 2

in a child process and records its peak RSS (the kernel's ru_maxrss of the child) and the peaks of the
whole process tree (the compress process plus its DataLoader workers, sampled every 0.2 s): the sum of
RSS (counts pages the forked workers share with their parent once per process) and the sum of PSS (each
shared page split among its sharers: the memory the tree really holds). Decoded at
256x256x3 bytes, the folder would be N x 192 KiB (3.9 GB for 20,000). Not a timing benchmark.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "folder_memory"


def make_folder(root: Path, n: int, side: int = 256, classes: int = 10) -> None:
    import numpy as np
    from PIL import Image

    marker = root / f".complete-{n}"
    if marker.exists():
        return
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for i in range(n):
        split = "test" if i % 10 == 0 else "train"
        c = (i // 10) % classes  # every class in both splits
        folder = root / split / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack([xx * (c + 1) % 1, yy, (xx + yy) / 2], -1) * 200
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=85)
    marker.touch()


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(sum of RSS, sum of PSS) over the process and its children: RSS counts the pages forked workers
    share with their parent once per process; PSS splits each shared page among its sharers."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    rss = pss = 0
    for q in procs:
        try:
            info = q.memory_full_info()
            rss, pss = rss + info.rss, pss + info.pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss / 2**20, pss / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--root", default="/tmp/fp-folder-memory")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    root = Path(a.root)
    t = time.perf_counter()
    make_folder(root, a.images)
    made_s = time.perf_counter() - t
    out = root.parent / (root.name + "-out")
    cmd = [
        sys.executable,
        "-m",
        "filterprune",
        "compress",
        "tv:resnet18",
        "--criterion",
        "l1",
        "--sparsity",
        "0.4",
        "--dataset",
        f"imagefolder:{root}",
        "--epochs",
        "0",
        "--finetune-epochs",
        "0",
        "--no-bench",
        "--workers",
        str(a.workers),
        "--out",
        str(out),
        "--overwrite",
    ]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    peak_rss_sum = peak_pss_sum = 0.0
    while p.poll() is None:
        rss, pss = tree_memory_mb(p.pid)
        peak_rss_sum, peak_pss_sum = max(peak_rss_sum, rss), max(peak_pss_sum, pss)
        time.sleep(0.2)
    err = p.stderr.read()
    wall = time.perf_counter() - t
    child_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    from filterprune.benchmarking.machine import describe

    du = sum(f.stat().st_size for f in root.rglob("*.jpg"))
    result = {
        "images": a.images,
        "side": 256,
        "decoded_gb": round(a.images * 256 * 256 * 3 / 1e9, 2),
        "jpeg_bytes_gb": round(du / 1e9, 3),
        "exit": p.returncode,
        "wall_s": round(wall, 1),
        "folder_made_s": round(made_s, 1),
        "peak_rss_mb_compress_process": round(child_peak_mb, 1),
        "peak_rss_mb_tree_sum": round(peak_rss_sum, 1),
        "peak_pss_mb_tree_sum": round(peak_pss_sum, 1),
        "workers": a.workers,
        "command": " ".join(cmd[1:]),
        "stderr_tail": err.strip().splitlines()[-4:],
        "machine": describe(),
    }
    HERE.mkdir(exist_ok=True)
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0 if p.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
