"""Faults end every rank, never hang (anchors D3, D5, D6; §7 item 30).

Each job runs under a wall-clock bound of 60 s: a job that outlives it is
killed and the test fails, so "no deadlock" is checked, not hoped for.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from gpunet.distributed import _mpi

BOUND = 60.0  # seconds from launch to every rank gone
WATCHDOG = {"FAULT_TIMEOUT": "10"}  # seconds a rank waits in a collective, once training runs


@pytest.mark.parametrize(
    ("mode", "sent", "expected"),
    [("mismatch-shape", "float32[3, 5]", "float32[3, 4]"),
     ("mismatch-dtype", "float64[3, 4]", "float32[3, 4]")],
)  # fmt: skip
def test_mismatched_models_raise_on_every_rank(mpi_launch, tmp_path, mode, sent, expected):
    job = mpi_launch(2, "faults.py", mode, str(tmp_path), timeout=BOUND)
    assert job.rc == 3, job.output  # both ranks caught the error and exited with 3
    message = (f"DistributedError: processes disagree on the model: rank 1 sent {sent} for "
               f"weight 0, rank 0 expected {expected}")  # fmt: skip
    for rank in (0, 1):
        assert f"rank {rank}: {message}" in job.output, job.output


def test_exception_on_one_rank_ends_every_rank(mpi_launch, tmp_path):
    job = mpi_launch(2, "faults.py", "raise", str(tmp_path), timeout=BOUND)
    assert job.rc != 0, job.output
    assert "ValueError: injected failure on rank 0 at step 3" in job.output
    assert "rank 0 failed (ValueError); aborting every rank" in job.output
    assert "done" not in job.output


def unread(fd: int) -> int:
    """Bytes written to the pipe ``fd`` that its reader has not taken yet."""
    import fcntl
    import termios

    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_the_abort_waits_until_the_launcher_has_read_the_traceback(monkeypatch):
    """The launcher reads each rank's stderr from a pipe and tears the job down on
    the abort; on a loaded machine it may find both at once and handle the abort
    first. The traceback must have left the pipe before ``MPI_Abort`` is called."""
    r, w = os.pipe()
    seen: dict[str, int] = {}

    class Comm:  # the two calls the hook makes
        def Get_rank(self) -> int:
            return 0

        def Abort(self, code: int) -> None:
            seen.update(code=code, unread=unread(w))

    chunks: list[bytes] = []

    def launcher() -> None:  # slow to get the CPU
        time.sleep(0.3)
        while data := os.read(r, 1 << 16):
            chunks.append(data)

    reader = threading.Thread(target=launcher, daemon=True)
    reader.start()
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    monkeypatch.setattr(_mpi, "_abort_comm", None)
    # Python's stderr on a pipe, as a rank has it (pytest's capture would hide it)
    monkeypatch.setattr(sys, "stderr", open(w, "w", buffering=1, closefd=False))
    stderr = os.dup(2)
    try:
        os.dup2(w, 2)
        _mpi.install_abort_hook(Comm())
        try:
            raise ValueError("injected failure")
        except ValueError as exc:
            sys.excepthook(ValueError, exc, exc.__traceback__)
    finally:
        os.dup2(stderr, 2)
        os.close(stderr)
        os.close(w)
    reader.join(10)
    os.close(r)
    out = b"".join(chunks).decode()
    assert seen == {"code": 1, "unread": 0}, out
    assert out.startswith("Traceback (most recent call last):"), out
    last = "gpunet.distributed: rank 0 failed (ValueError); aborting every rank\n"
    assert out.endswith("ValueError: injected failure\n" + last), out


def test_hung_rank_ends_the_job_by_the_watchdog(mpi_launch, tmp_path):
    """Rank 1 stops answering: rank 0 gives up after the timeout and aborts."""
    job = mpi_launch(2, "faults.py", "hang", str(tmp_path), timeout=BOUND, env=WATCHDOG)
    assert job.rc != 0, job.output
    assert ("rank 0: no answer from the other ranks for 10 s during the gradient allreduce"
            in job.output), job.output  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("flags", [(), ("-disable-auto-cleanup",)], ids=["launcher", "watchdog"])
def test_killed_rank_ends_job_and_resume_equals_uninterrupted(mpi_launch, tmp_path, flags):
    """SIGKILL on rank 1 in epoch 3 ends every rank: the launcher tears the job
    down, or, with ``-disable-auto-cleanup`` (a launcher that may leave the
    survivor waiting), the survivor's watchdog or MPI error does. A relaunch
    resumes from the epoch-2 backup and ends with the weights of a run that was
    never interrupted."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir()
    resumed.mkdir()
    killed = mpi_launch(
        2, "faults.py", "kill", str(resumed), timeout=BOUND, env=WATCHDOG, flags=flags
    )
    assert killed.rc != 0, killed.output
    assert (resumed / "latest.gpunet").exists()
    assert not list(resumed.glob("weights*.npz"))  # no rank finished
    again = mpi_launch(2, "faults.py", "train", str(resumed), timeout=BOUND)
    assert again.rc == 0, again.output
    whole = mpi_launch(2, "faults.py", "train", str(straight), timeout=BOUND)
    assert whole.rc == 0, whole.output
    for rank in (0, 1):
        a, b = np.load(straight / f"weights{rank}.npz"), np.load(resumed / f"weights{rank}.npz")
        np.testing.assert_array_equal(a["epochs"], [0, 1, 2, 3])
        np.testing.assert_array_equal(b["epochs"], [2, 3])  # really resumed
        for key in (k for k in a.files if k.startswith("w")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
