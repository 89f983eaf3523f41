"""Crashes and kills never cost data: damaged cache entries are retrained, killed runs leave nothing that
looks complete, ``--overwrite`` interrupted between its renames gets the old results back, SIGTERM
cleans up. The full SIGKILL matrix is ``benchmarks/fault_injection.py`` (its subset here is slow)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from filterprune import outputs
from filterprune.baseline import baseline_key, cache_dir, train_baseline
from filterprune.data import load_dataset
from filterprune.errors import UsageError
from filterprune.models.refs import spec_for
from filterprune.train import NonFiniteLoss, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (32, 3, 8, 8), np.uint8),
        y_train=np.arange(32) % 4,
        x_test=rng.integers(0, 256, (16, 3, 8, 8), np.uint8),
        y_test=np.arange(16) % 4,
    )
    return load_dataset(f"npz:{path}")


@pytest.mark.parametrize("damage", ["truncate", "swap", "drop-json-digest-and-truncate"])
def test_a_damaged_cached_baseline_is_never_reused(tiny, damage, tmp_path, monkeypatch):
    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path / "cache"))
    spec, cfg = spec_for("mlp", tiny), TrainConfig(epochs=1, batch_size=16)
    good, _ = train_baseline(spec, tiny, cfg, torch.device("cpu"))
    entry = cache_dir() / "baselines" / baseline_key(spec, tiny, cfg)
    weights = entry / "model.safetensors"
    blob = weights.read_bytes()
    if damage == "swap":
        weights.write_bytes(blob[:-8] + bytes(8))
    else:
        weights.write_bytes(blob[: len(blob) // 2])
    if damage.startswith("drop"):  # an entry written before digests existed
        doc = json.loads((entry / "model.json").read_text())
        del doc["weights_sha256"]
        (entry / "model.json").write_text(json.dumps(doc))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, _ = train_baseline(spec, tiny, cfg, torch.device("cpu"))
    assert any("is damaged" in str(w.message) for w in caught)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(good.eval()(x), again.eval()(x))  # retrained, deterministically, to the same weights
    assert weights.read_bytes() == blob  # and the entry is whole again
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]


def test_a_killed_cache_write_leaves_no_entry(tiny, tmp_path, monkeypatch):
    """Killed while the entry is staged: only a hidden folder of a dead process, swept by the next write."""
    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path / "cache"))
    spec, cfg = spec_for("mlp", tiny), TrainConfig(epochs=1, batch_size=16)
    entry = cache_dir() / "baselines" / baseline_key(spec, tiny, cfg)
    stale = entry.with_name(f".{entry.name}.partial-{_dead_pid()}")
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    train_baseline(spec, tiny, cfg, torch.device("cpu"))
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name]
    assert sorted(p.name for p in entry.iterdir()) == ["model.json", "model.safetensors"]


def test_nan_loss_stops_and_restores_the_last_good_epoch(tiny):
    """32 images at batch 16 = 2 batches an epoch: forward call 5 is epoch 3's first batch."""

    def run(poison: bool):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        calls, seen = [0], {}

        def hook(module, args, output):
            calls[0] += 1
            if calls[0] == 5:  # the weights have not moved since epoch 2 ended
                seen.update({k: v.clone() for k, v in module.state_dict().items()})
                return output * float("nan") if poison else output
            return output

        model.register_forward_hook(hook)
        try:
            train(model, tiny, TrainConfig(epochs=3, batch_size=16, augment=False), torch.device("cpu"))
        except NonFiniteLoss as e:
            return model, seen, e
        return model, seen, None

    model, after_epoch2, err = run(poison=True)
    assert err is not None and err.good_epoch == 2
    assert "loss became nan in epoch 3; stopped and kept the weights of epoch 2" in str(err)
    assert all(torch.equal(v, after_epoch2[k]) for k, v in model.state_dict().items())
    undisturbed, seen, err = run(poison=False)
    assert err is None and all(
        torch.equal(v, seen[k]) for k, v in after_epoch2.items()
    )  # same path up to there
    assert not torch.equal(undisturbed[1].weight, model[1].weight)  # and epoch 3 did train when not poisoned


def test_interrupted_overwrite_gets_the_old_results_back(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.json").write_text("old")
    aside = out.with_name(f".run.replaced-{_dead_pid()}")
    os.replace(out, aside)  # a run was killed between its two renames
    outputs.check_target(out, overwrite=True)
    assert (out / "report.json").read_text() == "old" and not aside.exists()


def test_publish_never_replaces_results_that_appeared_meanwhile(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("another run")
    staging = outputs.staging_path(out)
    staging.mkdir()
    (staging / "report.json").write_text("{}")
    with pytest.warns(UserWarning, match="already holds other results"):
        final = outputs.publish(staging, out)
    assert final.name == "run-2" and (out / "keep.txt").read_text() == "another run"


def test_output_below_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="not a writable folder"):
        outputs.check_target(tmp_path / "f" / "run", overwrite=False)


def test_sigterm_during_training_cleans_up(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FILTERPRUNE_CACHE": str(tmp_path / "cache")}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "filterprune",
            "compress",
            "resnet20",
            "--criterion",
            "l1",
            "--sparsity",
            "0.4",
            "--dataset",
            "synthetic",
            "--epochs",
            "20",
            "--out",
            "run",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in p.stderr:
        if "baseline: training" in line:
            time.sleep(0.5)
            p.send_signal(signal.SIGTERM)
            break
    rest = p.stderr.read()
    assert p.wait(60) == 128 + signal.SIGTERM
    assert rest.strip().splitlines()[-1] == "filterprune: terminated" and "Traceback" not in rest
    assert sorted(os.listdir(tmp_path)) == ["cache"] or not (tmp_path / "run").exists()
    assert not list((tmp_path / "cache").rglob("*.partial-*"))


def test_closed_stdout_pipe_is_not_a_traceback():
    p = subprocess.run(
        f"{sys.executable} -m filterprune list models | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.stdout.strip() and p.stderr == ""


@pytest.mark.slow
def test_sigkill_matrix_subset(tmp_path):
    """A subset of the matrix (the full one: `python benchmarks/fault_injection.py`, see BENCHMARKS.md)."""
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fault_injection.py"),
            "--points",
            "baseline-cache-torn,prune,publish",
            "--random",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    summary = json.loads((tmp_path / "results.json").read_text())
    assert p.returncode == 0 and summary["survived"] == summary["injected"] == 4, p.stdout + p.stderr
    assert summary["tracebacks_seen"] == 0


# ---------------------------------------------------------------------------- a DataLoader worker killed
def _kill_own_worker(self, i):
    """An image read that SIGKILLs the DataLoader worker process reading it (the main process reads on)."""
    if torch.utils.data.get_worker_info() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return _read(self, i)


_read = None


def test_a_loader_worker_killed_mid_epoch_is_one_line_exit_1_and_nothing_written(
    tmp_path, monkeypatch, capfd
):
    """FILTERPRUNE_WORKERS > 0 on an image folder: a worker killed while training (torch notices it in
    its SIGCHLD handler, wherever the main process is) ends the command in one line, exit 1, with no
    output folder, staging folder or cache entry left."""
    global _read
    from PIL import Image

    from filterprune.cli import main
    from filterprune.data import stream

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / "photos" / split / c).mkdir(parents=True)
            for i in range(6):
                img = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
                img.save(tmp_path / "photos" / split / c / f"{i}.png")
    _read = stream._Files.__getitem__
    monkeypatch.setattr(stream._Files, "__getitem__", _kill_own_worker)  # fork: the workers have it too
    monkeypatch.setenv("FILTERPRUNE_WORKERS", "2")
    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["compress", "resnet20", "--criterion", "l1", "--sparsity", "0.4", "--image-size", "16"]
    argv += ["--dataset", f"imagefolder:{tmp_path / 'photos'}", "--epochs", "1", "--out", "run"]
    assert main(argv) == 1
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if not ln.startswith("[filterprune] ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(
        r"filterprune: error: a data-loading worker process \(pid [\d, ]+\) (was killed by (signal: Killed|"
        r"SIGKILL)|exited unexpectedly), so the run stopped \(out of memory\? FILTERPRUNE_WORKERS=0 .*\)",
        lines[0],
    ), lines[0]
    assert sorted(os.listdir(tmp_path)) == ["cache", "photos"] or not (tmp_path / "run").exists()
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name or p.name.endswith(".tmp")]


class _Killing(torch.utils.data.Dataset):
    """64 small images; read in a worker process, the last batch's images kill that worker."""

    def __len__(self):
        return 64

    def __getitem__(self, i):
        if i >= 56 and torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return torch.rand(3, 8, 8), i % 2


def test_a_python_loader_whose_worker_dies_is_a_run_error(tmp_path):
    """The user's own DataLoader: the same death is a RunError from compress(), and nothing of the
    loader is left to raise later."""
    import filterprune
    from filterprune.errors import RunError

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )
    loader = torch.utils.data.DataLoader(_Killing(), batch_size=8, num_workers=1)
    with pytest.raises(RunError, match=r"a data-loading worker process \(pid \d+\) (was killed|exited)"):
        filterprune.compress(
            model=net,
            train=loader,
            test=loader,
            criterion="l1",
            sparsity=0.4,
            bench=False,
            out=str(tmp_path / "run"),
        )
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".*partial*"))
    # its iterator was let go: a later child's exit (SIGCHLD) does not raise torch's error again
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    time.sleep(0.2)
