"""Helpers of the distributed tests: launch real MPI jobs, ``mpiexec -n N python
scripts/<script>``.

Every launch has a wall-clock bound; on expiry the whole process group (mpiexec
and its ranks) is killed and the test fails, so a hang can never stall CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def mpiexec() -> str:
    """The mpiexec next to this Python (pip's mpich), else the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpi4py is installed but no mpiexec was found: pip install mpich")
    return found


@dataclass
class Job:
    rc: int
    output: str
    seconds: float


def launch(n: int | None, script: str, *args: str, timeout: float = 120.0,
           env: dict[str, str] | None = None, flags: tuple[str, ...] = ()) -> Job:  # fmt: skip
    """Run ``script`` on ``n`` ranks (``None``: one plain process, no mpiexec)."""
    cmd = [sys.executable, str(SCRIPTS / script), *args]
    if n is not None:
        cmd = [mpiexec(), *flags, "-n", str(n), *cmd]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=full_env, cwd=ROOT, start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not end within {timeout:g} s (a hang):\n{out}")
    return Job(proc.returncode, out, time.monotonic() - start)


@pytest.fixture(scope="session")
def mpi_launch():
    """``launch`` (see above) as a fixture, for the tests of this folder."""
    pytest.importorskip("mpi4py", reason="the distributed tests need the 'mpi' extra")
    return launch
