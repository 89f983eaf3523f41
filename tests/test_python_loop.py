"""The README's own-loop example, run as written: torchvision's ResNet-18 pruned 30% with
``filterprune.prune``, finetuned by a plain loop on real CIFAR-10 photos, exported with
``filterprune.export`` (the file ``export/run_onnx.py`` runs from its metadata alone) and timed with
``filterprune.bench``."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def loop_code() -> str:
    (code,) = re.findall(r"<!-- python loop -->\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return code


@pytest.mark.slow
def test_the_readme_loop_runs_as_written(tmp_path, shared_data, monkeypatch):
    code = loop_code()
    assert "filterprune.prune(model, example" in code and "optimizer.step()" in code
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(
        compile(code.replace("cifar10_mini.npz", str(shared_data / "cifar10_mini.npz")), "README.md", "exec"),
        scope,
    )
    assert 1.5 < scope["result"].theoretical_speedup < 2.5 and scope["result"].removed
    rows = {r["variant"]: r for r in scope["rows"]}
    assert set(rows) == {"dense", "pruned"} and all(r["p50_ms"] > 0 for r in rows.values())
    assert rows["pruned"]["macs"] < rows["dense"]["macs"]
    p = subprocess.run(
        [sys.executable, str(ROOT / "export" / "run_onnx.py"), "resnet18-pruned.onnx", "--iters", "2"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0 and "input Nx3x32x32" in p.stdout, p.stderr[-500:]
