import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # reference_layouts and other test helpers

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow and GPU tests")


def pytest_sessionstart(session):
    """The machine on the log's first line, also under -q: a native crash on CI (stop 29: a segfault in a CPU
    backward pass that never happened on the development machine) cannot be read without the processor and
    torch's kernel choice."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    session.config.get_terminal_writer().line(
        f"cpu: {model}; {os.cpu_count()} cores; torch {torch.__version__}, "
        f"{torch.backends.cpu.get_cpu_capability()} kernels, {torch.get_num_threads()} threads")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow/GPU test: run with --runslow")
    for item in items:
        if "slow" in item.keywords or "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference (paper examples, published directions, a face video); skip when absent."""
    path = Path(os.environ.get("MICROMOTION_REFERENCE", REFERENCE))
    if not path.is_dir():
        pytest.skip(f"reference data folder {path} is absent")
    return path


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (tiny networks: on a shared 2-core machine thread hand-offs cost more
    than the arithmetic); a module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
