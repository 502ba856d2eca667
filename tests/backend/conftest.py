"""Fixtures for the kernel tests: the host build of ``kernels/*.cu`` as a runner."""

from __future__ import annotations

import shutil

import pytest
from hostbuild import HostRunner, PoisonRunner

from gpunet.backend import _kernels

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ for host builds")


@pytest.fixture(scope="session")
def host_runner() -> HostRunner:
    """One host build per kernel source for the whole session."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++ (apt-get install g++) to build the kernels for the host")
    return PoisonRunner()


@pytest.fixture
def host(host_runner, monkeypatch):
    """gpunet's launchers send every launch to the host build inside the test.

    ``MAX_BLOCKS`` is lowered to 3 so grids of more than 3 * 256 elements take
    several turns of each grid-stride loop, as large arrays do on a GPU.
    """
    monkeypatch.setattr(_kernels, "MAX_BLOCKS", 3)
    host_runner.launches.clear()
    with _kernels.use_runner(host_runner):
        yield host_runner


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The largest host-run kernel error against the reference, per comparison."""
    from hostbuild import ERRORS

    if not ERRORS:
        return
    terminalreporter.write_line(
        f"host-run kernels vs the NumPy reference: {len(ERRORS)} comparisons; largest "
        "|error| / max(1, |reference|):"
    )
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        worst = sorted(((e, w) for (w, d), e in ERRORS.items() if d == dtype), reverse=True)
        if worst:
            top = ", ".join(f"{w} {e:.2g}" for e, w in worst[:3])
            terminalreporter.write_line(f"  {dtype}: {top}")
