"""Same seed, same result: the pruned channels, the weights and the CPU accuracy repeat exactly, even
when the baseline is trained afresh (separate caches). Across processes, and for a conv/BN/residual net,
the fault-injection matrix checks the same (every rerun's weights equal the uninterrupted run's)."""

import hashlib
import json

import numpy as np

from filterprune.cli import main


def _run(tmp_path, monkeypatch, data, name, seed):
    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path / f"cache-{name}"))  # train the baseline every time
    out = tmp_path / name
    assert (
        main(
            [
                "compress",
                "mlp",
                "--criterion",
                "random",
                "--sparsity",
                "0.5",
                "--dataset",
                f"npz:{data}",
                "--epochs",
                "2",
                "--finetune-epochs",
                "1",
                "--optimizer",
                "adam",
                "--no-export",
                "--no-bench",
                "--seed",
                str(seed),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    return {
        "history": json.loads((out / "pruned.json").read_text())["history"],
        "layers": report["layers"],
        "dense": report["dense"]["accuracy"],
        "pruned": report["pruned"]["accuracy"],
        "weights": hashlib.sha256((out / "pruned.safetensors").read_bytes()).hexdigest(),
    }


def test_same_seed_same_channels_weights_and_accuracy(tmp_path, monkeypatch, shared_data):
    with np.load(shared_data / "mnist_test.npz") as f:  # 800 / 300 real MNIST digits
        x, y = f["x"], f["y"]
    np.savez(tmp_path / "mnist.npz", x_train=x[:800], y_train=y[:800], x_test=x[800:1100], y_test=y[800:1100])
    a = _run(tmp_path, monkeypatch, tmp_path / "mnist.npz", "a", seed=3)
    b = _run(tmp_path, monkeypatch, tmp_path / "mnist.npz", "b", seed=3)
    assert a == b
    assert a["dense"] > 0.15  # really trained on real digits (chance is 0.1)
    assert any(r["channels_after"] < r["channels_before"] for r in a["layers"])
