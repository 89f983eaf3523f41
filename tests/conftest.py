import os
import tempfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    # baselines trained by tests go to a throwaway cache, never the user's
    os.environ["FILTERPRUNE_CACHE"] = tempfile.mkdtemp(prefix="filterprune-test-cache-")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "cifar10_mini.npz").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA
