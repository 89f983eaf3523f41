"""Nothing filterprune does opens a network connection: pretrained tv:/timm: weights come from the local
caches only, and a missing file is one line, at once, with no request made.

In this process conftest's guard fails any test that connects beyond loopback; a fresh process is watched
through a proxy: every HTTP client it could use is pointed at a local socket that counts connections.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from filterprune.errors import UsageError
from filterprune.models import ModelSpec, initial_model

ROOT = Path(__file__).resolve().parents[1]
HUB_ENV = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "XDG_CACHE_HOME",
    "TORCH_HOME",
    "NO_PROXY",
    "no_proxy",
    "ORT_DISABLE_TELEMETRY",  # filterprune sets it itself
    "CI",  # OpenVINO's telemetry is off in CI: the test must not lean on that
)


class _Proxy:
    """A local listening socket standing in for a proxy: it records each connection and closes it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self):
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self.done.set()
        self.thread.join()
        self.sock.close()


def _watched_env(home: Path, proxy: _Proxy) -> dict[str, str]:
    """A fresh process's environment: an empty home, no hub or telemetry settings of ours, and every HTTP
    client pointed at ``proxy``."""
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in HUB_ENV}
    env.update(
        {
            "HOME": str(home),
            "TORCH_HOME": str(home / "torch"),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[var] = env[var.lower()] = proxy.url
    return env


@pytest.mark.parametrize("model", ["timm:resnet18", "tv:resnet18"])
def test_pretrained_weights_not_cached_make_no_request_and_fail_in_one_line(model, tmp_path):
    if model.startswith("timm:"):
        pytest.importorskip("timm", reason="timm is not installed (pip install 'filterprune[timm]')")
    proxy = _Proxy()
    home = tmp_path / "home"
    env = _watched_env(home, proxy)
    t = time.monotonic()
    try:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "filterprune",
                "compress",
                model,
                "--weights",
                "DEFAULT",
                "--criterion",
                "l1",
                "--sparsity",
                "0.4",
                "--dataset",
                "synthetic",
                "--epochs",
                "0",
                "--finetune-epochs",
                "0",
                "--no-bench",
                "--out",
                str(tmp_path / "out"),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
    finally:
        seconds = time.monotonic() - t
        proxy.close()
    lines = [line for line in p.stderr.splitlines() if not line.startswith("[filterprune] ")]  # progress
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-3000:]
    assert proxy.connections == 0, f"{proxy.connections} connection(s) to the proxy"
    assert str(home) in lines[0] and "--checkpoint" in lines[0]  # where it looked, and what to do instead
    # the hub's retries took ~54 s; an interpreter importing torch and timm takes 5-9 s on a quiet 2-core box
    # and over 20 s beside four test runs, so the bound is loose: the proxy's count is the strict check
    assert seconds < 45 and not (tmp_path / "out").exists()


_FULL_RUN = """
import importlib.util, sys
from filterprune.cli import main
out = sys.argv[1]
common = ["--batch-sizes", "1", "--iters", "2", "--warmup", "0"]
assert main(["compress", "resnet20", "--criterion", "l1", "--sparsity", "0.4", "--dataset", "synthetic",
             "--epochs", "0", "--finetune-epochs", "0", "--bench-batch-sizes", "1", "--bench-iters", "2",
             "--out", out]) == 0
runtimes = "onnxruntime,openvino" if importlib.util.find_spec("openvino") else "onnxruntime"
assert main(["bench", out, "--runtime", runtimes, *common]) == 0
"""


def test_a_whole_run_reaches_no_network_and_leaves_no_telemetry_behind(tmp_path):
    """onnxruntime reports to Microsoft from native code (Python's socket guard never sees it) and
    `import openvino` to Google Analytics, unless told not to; a run that exports, checks parity and times
    on both must make no connection at all, and leave no telemetry id in the home folder."""
    proxy = _Proxy()
    home = tmp_path / "home"
    env = _watched_env(home, proxy)
    try:
        p = subprocess.run(
            [sys.executable, "-c", _FULL_RUN, str(tmp_path / "run")],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
        time.sleep(1)  # a telemetry thread still sending at the exit
    finally:
        proxy.close()
    assert p.returncode == 0, p.stderr[-3000:]
    assert proxy.connections == 0, f"{proxy.connections} connection(s) to the proxy"
    left = sorted(str(f.relative_to(home)) for f in home.rglob("*") if f.is_file())
    assert not [f for f in left if "Microsoft" in f or f.startswith("intel")], left


# ----------------------------------------------------------------------------------------------- timm
@pytest.fixture
def timm_cache(tmp_path, monkeypatch):
    """Empty hub and torch caches in the environment, as a fresh process would see them."""
    pytest.importorskip("timm", reason="timm is not installed (pip install 'filterprune[timm]')")
    for var in HUB_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # read at its import: a host that imported it has this one
        monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def _hf_snapshot(cache: Path, repo: str, filename: str, state: dict) -> Path:
    """A file laid out as huggingface_hub's cache holds it: refs/main names the snapshot."""
    from safetensors.torch import save_file

    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    path = folder / "snapshots" / ("0" * 40) / filename
    path.parent.mkdir(parents=True)
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("where", ["hf-safetensors", "hf-bin", "torch-hub"])
def test_timm_weights_load_from_the_local_caches(timm_cache, where, monkeypatch):
    import timm

    torch.manual_seed(7)
    source = timm.create_model("resnet18", num_classes=1000)
    state = source.state_dict()
    if where == "torch-hub":
        url = timm.get_pretrained_cfg("resnet18").url
        path = timm_cache / "torch" / "hub" / "checkpoints" / Path(url).name
        path.parent.mkdir(parents=True)
        torch.save(state, path)
    else:
        name = "model.safetensors" if where == "hf-safetensors" else "pytorch_model.bin"
        _hf_snapshot(timm_cache / "hf", "timm/resnet18.a1_in1k", name, state)
    from timm.models import _hub

    monkeypatch.setattr(_hub, "hf_hub_download", _no_download)  # timm's hub path never runs
    model, info = initial_model(ModelSpec("timm:resnet18", 1000, 3, 64, weights="DEFAULT"))
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(model.fc.weight, source.fc.weight) and info["weights"] == "DEFAULT"
    ten, _ = initial_model(ModelSpec("timm:resnet18", 10, 3, 64, weights="DEFAULT"))  # head left fresh
    assert ten.fc.out_features == 10 and torch.equal(ten.conv1.weight, source.conv1.weight)


def _no_download(*a, **k):
    raise AssertionError("timm's hub download ran")


@pytest.mark.parametrize(
    "state_of, said",
    [
        ("resnet34", r"\(96 unexpected \(e\.g\. layer1\.2\.conv1\.weight, "),  # another architecture
        ("nan", r"1 tensor\(s\) hold NaN or inf \(e\.g\. conv1\.weight\)"),
    ],
)
def test_timm_weights_of_another_architecture_or_nan_are_refused_naming_them(timm_cache, state_of, said):
    """The file in the cache is resnet34's, or resnet18's holding a NaN: refused in one line that names
    the keys (how many, the first few) or the tensor."""
    import timm

    from filterprune.errors import RunError

    state = timm.create_model("resnet34" if state_of == "resnet34" else "resnet18").state_dict()
    if state_of == "nan":
        state["conv1.weight"][0, 0, 0, 0] = float("nan")
    url = timm.get_pretrained_cfg("resnet18").url
    path = timm_cache / "torch" / "hub" / "checkpoints" / Path(url).name
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    with pytest.raises((UsageError, RunError), match=said) as e:
        initial_model(ModelSpec("timm:resnet18", 10, 3, 64, weights="DEFAULT"))
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_timm_weights_not_cached_name_every_place_looked(timm_cache):
    with pytest.raises(UsageError) as e:
        initial_model(ModelSpec("timm:resnet18", 10, 3, 64, weights="DEFAULT"))
    msg = str(e.value)
    assert "\n" not in msg and "--checkpoint" in msg
    assert str(timm_cache / "hf" / "models--timm--resnet18.a1_in1k") in msg
    assert str(timm_cache / "torch" / "hub" / "checkpoints" / "resnet18_a1_0-d63eafa0.pth") in msg


def test_a_host_that_imported_the_hub_is_offline_while_timm_runs_and_as_before_after(timm_cache):
    """Python API users may have imported huggingface_hub already (it read HF_HUB_OFFLINE then): its
    constant is forced on while filterprune uses timm, and given back afterwards."""
    import huggingface_hub.constants as hub

    from filterprune.models import timm_models

    before, seen = hub.HF_HUB_OFFLINE, []
    with timm_models.hub_offline():
        seen.append((hub.HF_HUB_OFFLINE, hub.is_offline_mode(), os.environ.get("HF_HUB_OFFLINE")))
    assert seen == [(True, True, "1")]  # is_offline_mode() reads the constant: every hub request refused
    assert hub.HF_HUB_OFFLINE is before and "HF_HUB_OFFLINE" not in os.environ


# ------------------------------------------------------------------------------------- the guard itself
def test_the_guard_fails_a_connection_beyond_loopback_and_lets_loopback_through(network_guard):
    s = socket.socket()
    try:
        with pytest.raises(RuntimeError, match="network"):
            s.connect(("203.0.113.9", 80))  # TEST-NET-3: nothing is sent, the guard refuses first
        with pytest.raises(RuntimeError, match="network"):
            socket.create_connection(("198.51.100.7", 443), timeout=0.1)
        with pytest.raises(RuntimeError, match="network"):
            s.connect_ex(("192.0.2.1", 80))
    finally:
        s.close()
    assert len(network_guard) == 3
    network_guard.clear()  # seen and expected: this test passes
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
        a, b = socket.socketpair(socket.AF_UNIX)
        a.close(), b.close()
    finally:
        server.close()
    assert network_guard == []


def test_a_missing_benchmark_dataset_is_one_line_and_never_downloaded(tmp_path, monkeypatch):
    """cifar10 absent under --data-root: no download is tried (the guard would fail the test), one line
    says what to put where, and no folder is left behind."""
    import filterprune.data.torchvision_sets as tvs
    from filterprune.data import load_dataset
    from filterprune.errors import UsageError

    root = tmp_path / "nothing-here"
    with pytest.raises(UsageError, match=r"cifar10 not found under .* \(nothing is downloaded\): put "):
        load_dataset("cifar10", str(root))
    assert not root.exists()
    assert "download=True" not in open(tvs.__file__).read()
