"""The README's five-minute tour, run as written: its model file, its commands, on an image folder made
from the real CIFAR-10 subset (the layout the tour shows), in a fresh folder."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def tour_commands() -> list[str]:
    """The bash blocks after each ``<!-- tour -->`` marker, continuation lines joined."""
    blocks = re.findall(r"<!-- tour -->\n```bash\n(.*?)```", README, re.S)
    return [b.replace("\\\n", " ").strip() for b in blocks]


def tour_model() -> str:
    (code,) = re.findall(r"```python\n(# nets/tiny\.py\n.*?)```", README, re.S)
    return code


def photos(root: Path, data: Path, per_class: int = 60, test_per_class: int = 15) -> None:
    d = np.load(data / "cifar10_mini.npz")
    names = [str(n) for n in d["label_names"]]
    for split, x, y, n in (
        ("train", d["x_train"], d["y_train"], per_class),
        ("test", d["x_test"], d["y_test"], test_per_class),
    ):
        for c, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            for i, j in enumerate(np.flatnonzero(y == c)[:n]):
                Image.fromarray(x[j].transpose(1, 2, 0)).save(
                    root / split / name / f"{i:03d}.jpg", quality=95
                )


def test_the_readme_tour_runs_as_written(tmp_path, shared_data):
    commands = tour_commands()
    assert len(commands) == 3 and commands[0].startswith("filterprune compress nets/tiny.py:build")
    photos(tmp_path / "photos", shared_data)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "tiny.py").write_text(tour_model())
    (tmp_path / "export").symlink_to(ROOT / "export")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
    }
    for cmd in commands:
        cmd = re.sub(r"^filterprune ", f"{sys.executable} -m filterprune ", cmd)
        cmd = re.sub(r"^python ", f"{sys.executable} ", cmd)
        p = subprocess.run(
            ["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-3000:]}"
    r = __import__("json").loads((tmp_path / "runs" / "tiny-2x" / "report.json").read_text())
    assert r["latency_target"]["measured_speedup"] >= 2 * 0.95  # the tour's promise, measured
    assert r["dataset"]["name"].startswith("imagefolder:") and r["dataset"]["test"] == 150
    assert (tmp_path / "runs" / "tiny" / "model.onnx").is_file() and "cat" in p.stdout
