import ipaddress
import os
import re
import socket
import tempfile
from pathlib import Path

import pytest

# onnxruntime's native telemetry reads this when it is imported (filterprune sets it too, on its import)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    # baselines trained by tests go to a throwaway cache, never the user's
    os.environ["FILTERPRUNE_CACHE"] = tempfile.mkdtemp(prefix="filterprune-test-cache-")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "cifar10_mini.npz").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


def pasted_detection_set(tmp_path_factory, layout: str) -> Path:
    """A tiny pasted-CIFAR detection set (8 train / 4 test canvases) in ``layout`` (coco or yolo), for a
    module-scoped fixture; skips without the real data."""
    from filterprune.data.pasted import make_detection_set  # reason: only the detection tests need it

    source = SHARED_DATA / "cifar10_mini.npz"
    if not source.is_file():
        pytest.skip(f"real data not found at {source}")
    return make_detection_set(
        tmp_path_factory.mktemp("d") / layout, layout, train=8, test=4, seed=1, source=source
    )


def assert_compress_refused(argv: list, dataset: str, tmp_path: Path, capfd, pattern: str) -> None:
    """``filterprune compress`` with ``argv`` (``dataset`` and criterion l1 where absent) exits 2 with one
    error line matching ``pattern``, no traceback, and writes nothing."""
    from filterprune.cli import main  # reason: the CLI's import stays out of every other test's startup

    argv = ["compress", *argv]
    argv += [] if "--dataset" in argv else ["--dataset", dataset]
    argv += [] if "--criterion" in argv else ["--criterion", "l1"]
    out = tmp_path / "o"
    assert main([*argv, "--sparsity", "0.3", "--epochs", "0", "--out", str(out)]) == 2
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("filterprune: error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert re.search(pattern, lines[0]) and not out.exists()


# --------------------------------------------------------------------------------------- network guard
# Nothing filterprune does may touch the network: a connection beyond loopback raises at once and fails
# the test that made it, even when the code under test swallows the error. Loopback and AF_UNIX stay open
# (DDP rendezvous, local worker processes), and so does a UDP connect, which sends nothing (Ray finds the
# host's own address with one). Subprocesses are watched by tests/test_offline.py instead.
class NetworkBlocked(RuntimeError):
    pass


_ATTEMPTS: list[str] = []


def _is_local(family, address, kind=socket.SOCK_STREAM) -> bool:
    if (
        family not in (socket.AF_INET, socket.AF_INET6)
        or not isinstance(address, tuple)
        or kind == socket.SOCK_DGRAM
    ):
        return True  # AF_UNIX paths, netlink: not the network
    host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
    host = host.split("%")[0]  # an IPv6 scope
    if host in ("", "localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # another host name: would be resolved and reached
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback or ip.is_unspecified


def _refuse(address) -> NetworkBlocked:
    _ATTEMPTS.append(repr(address))
    return NetworkBlocked(f"a test tried to reach the network ({address!r}); tests must stay offline")


@pytest.fixture(autouse=True, scope="session")
def _network_guard():
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    create_connection = socket.create_connection

    def guarded_connect(self, address):
        if not _is_local(self.family, address, self.type):
            raise _refuse(address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        if not _is_local(self.family, address, self.type):
            raise _refuse(address)
        return connect_ex(self, address)

    def guarded_create_connection(address, *args, **kwargs):
        if not _is_local(socket.AF_INET, address):
            raise _refuse(address)
        return create_connection(address, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", guarded_connect)
    mp.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    mp.setattr(socket, "create_connection", guarded_create_connection)
    yield _ATTEMPTS
    mp.undo()


@pytest.fixture(autouse=True)
def network_guard(_network_guard):
    """The attempts refused during this test; any left at its end fail it."""
    _network_guard.clear()
    yield _network_guard
    if _network_guard:
        made = list(_network_guard)
        _network_guard.clear()
        pytest.fail(
            f"the test tried to reach the network {len(made)} time(s), e.g. {made[0]}; "
            "tests must stay offline",
            pytrace=False,
        )
