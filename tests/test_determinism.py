"""Same seed, same result: the pruned channels, the weights and the CPU accuracy repeat exactly, even
when the baseline is trained afresh (separate caches). Across processes, and for a conv/BN/residual net,
the fault-injection matrix checks the same (every rerun's weights equal the uninterrupted run's)."""
import hashlib
import json

from filterprune.cli import main


def _run(tmp_path, monkeypatch, data_root, name, seed):
    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path / f"cache-{name}"))  # train the baseline every time
    out = tmp_path / name
    assert main(["compress", "mlp", "--criterion", "random", "--sparsity", "0.5", "--dataset", "mnist",
                 "--data-root", str(data_root), "--epochs", "2", "--finetune-epochs", "1", "--no-export",
                 "--no-bench", "--seed", str(seed), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    return {"history": json.loads((out / "pruned.json").read_text())["history"], "layers": report["layers"],
            "dense": report["dense"]["accuracy"], "pruned": report["pruned"]["accuracy"],
            "weights": hashlib.sha256((out / "pruned.safetensors").read_bytes()).hexdigest()}


def test_same_seed_same_channels_weights_and_accuracy(tmp_path, monkeypatch, shared_data):
    a = _run(tmp_path, monkeypatch, shared_data, "a", seed=3)
    b = _run(tmp_path, monkeypatch, shared_data, "b", seed=3)
    assert a == b
    assert a["dense"] > 0.5  # real MNIST, really trained (chance is 0.1)
    c = _run(tmp_path, monkeypatch, shared_data, "c", seed=4)
    assert c["history"] != a["history"] and c["weights"] != a["weights"]  # the seed is what decides
