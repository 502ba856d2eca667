"""The MPI side: one communicator, collectives that cannot wait forever, and an
abort that ends every rank when one of them fails.

Every collective here is nonblocking and polled with a deadline. A rank that
dies (SIGKILL, OOM killer) or hangs never answers; without a deadline the
others would wait in ``MPI_Allreduce`` for ever under launchers that do not
tear the job down themselves (``srun`` without ``--kill-on-bad-exit``).
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import sys
import time
import traceback
from types import ModuleType
from typing import Any

import numpy as np

from gpunet.errors import DistributedError

TIMEOUT_ENV = "GPUNET_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT = 600.0  # seconds a rank waits in one collective before it gives up


def mpi() -> ModuleType:
    """``mpi4py.MPI`` (imported on first use: ``import gpunet`` never loads MPI)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            "gpunet.distributed needs mpi4py and an MPI library: pip install 'gpunet[mpi]'"
        ) from exc
    return MPI


_abort_comm: Any = None
DRAIN_SECONDS = 5.0  # longest wait for the launcher to read our last words before the abort


def install_abort_hook(comm: Any) -> None:
    """Make an uncaught exception on any rank call ``MPI_Abort``.

    Python would otherwise exit into ``MPI_Finalize`` and wait there for ranks
    that are themselves waiting in a collective for it: a deadlock (mpi4py's
    docs warn of it). Abort ends every rank of the job with a non-zero status,
    after this rank's traceback is printed and read by the launcher.
    """
    global _abort_comm
    if _abort_comm is None:
        previous = sys.excepthook

        def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
            rank = _abort_comm.Get_rank()
            last = (
                f"gpunet.distributed: rank {rank} failed ({kind.__name__}); aborting every rank\n"
            )
            if previous is sys.__excepthook__:  # the traceback and the verdict in one write
                say("".join(traceback.format_exception(kind, value, tb)) + last)
            else:  # someone's own hook (IPython, a logger): theirs first
                previous(kind, value, tb)
                say(last)
            abort(_abort_comm)

        sys.excepthook = hook
    _abort_comm = comm


def say(text: str) -> None:
    """Write ``text`` to stderr now: one unbuffered write after whatever Python buffered."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed or replaced streams
            pass
    data = text.encode(errors="backslashreplace")
    try:
        while data:
            data = data[os.write(2, data) :]
    except OSError:  # no stderr at all: nothing to tell
        pass


def abort(comm: Any) -> None:
    """``MPI_Abort`` once the launcher has read what this rank wrote.

    The launcher forwards each rank's output through a pipe and tears the job
    down when it handles the abort; a launcher slow to run (a loaded machine)
    finds both waiting and may handle the abort first: the traceback, still in
    the pipe, would be lost, and the user left with a bare nonzero exit.
    """
    wait_for_readers((1, 2), DRAIN_SECONDS)
    time.sleep(0.05)  # and a moment to pass it on
    comm.Abort(1)


def wait_for_readers(fds: tuple[int, ...], seconds: float) -> None:
    """Until each pipe among ``fds`` is empty (its reader took it all) or ``seconds`` pass."""
    try:
        import fcntl
        import termios
    except ImportError:  # not POSIX
        return
    deadline = time.monotonic() + seconds
    for fd in fds:
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                continue  # a file or terminal takes the bytes at once
            while time.monotonic() < deadline:
                queued = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
                if int.from_bytes(queued, sys.byteorder) == 0:
                    break
                time.sleep(0.002)
        except OSError:
            continue


def resolve_timeout(timeout: float | None) -> float:
    if timeout is None:
        timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    if not timeout > 0:
        raise DistributedError(f"timeout must be > 0 seconds, got {timeout!r}")
    return float(timeout)


class Comm:
    """An mpi4py communicator whose collectives raise ``DistributedError`` (and
    abort the job) instead of hanging when another rank stops answering."""

    def __init__(self, comm: Any, timeout: float | None = None, *, abort: bool = True) -> None:
        self.MPI = mpi()
        self.comm = comm
        self.rank, self.size = int(comm.Get_rank()), int(comm.Get_size())
        self.timeout = resolve_timeout(timeout)
        self.abort = abort

    def wait(self, request: Any, what: str) -> None:
        """Poll ``request`` until it completes or the deadline passes."""
        if request.Test():
            return
        poll = Poller(self.timeout)
        while not request.Test():
            if poll.expired():
                self.fail(
                    f"rank {self.rank}: no answer from the other ranks for {self.timeout:g} s "
                    f"during {what}; a rank died, hangs, or trains on different data"
                )

    def fail(self, message: str) -> None:
        """Report ``message``, end every rank (when aborting), else raise."""
        say(f"gpunet.distributed: {message}\n")
        if self.abort:
            abort(self.comm)
        raise DistributedError(message)

    # -- array collectives (in place) ---------------------------------------------------
    def allreduce_(self, buf: np.ndarray, what: str) -> None:
        """Sum ``buf`` over every rank, in place."""
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), what)

    def bcast_(self, buf: Any, what: str) -> None:
        """Overwrite ``buf`` with rank 0's."""
        self.wait(self.comm.Ibcast(buf, root=0), what)

    # -- small JSON-able values (no pickle between ranks either) ------------------------
    def bcast_json(self, obj: Any, what: str) -> Any:
        """Rank 0's ``obj`` on every rank."""
        data = _encode(obj) if self.rank == 0 else np.empty(0, np.uint8)
        n = np.array([data.size], np.int64)
        self.bcast_(n, what)
        if self.rank:
            data = np.empty(int(n[0]), np.uint8)
        self.bcast_(data, what)
        return json.loads(data.tobytes())

    def allgather_json(self, obj: Any, what: str) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        data = _encode(obj)
        sizes = np.zeros(self.size, np.int64)
        sizes[self.rank] = data.size
        self.allreduce_(sizes, what)
        out = np.empty(int(sizes.sum()), np.uint8)
        counts = [int(s) for s in sizes]
        self.wait(self.comm.Iallgatherv(data, [out, counts]), what)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return [json.loads(out[a:b].tobytes()) for a, b in itertools.pairwise(bounds)]


_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


class Poller:
    """Pacing of a polled wait, with a deadline.

    MPI progresses a collective only inside MPI calls, so the first ``SPIN`` seconds
    poll back to back, yielding the core between polls (to ranks still computing
    when there are more ranks than cores); a 2.7 MB allreduce then costs what a
    blocking one does. After that the waiter sleeps, up to 1 ms at a time.
    """

    SPIN = 0.01

    def __init__(self, timeout: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + timeout
        self.pause = 0.0

    def expired(self) -> bool:
        """Wait a little; True once the deadline has passed."""
        now = time.monotonic()
        if now - self.start < self.SPIN:
            _yield()
        else:
            time.sleep(self.pause)
            self.pause = min(1e-3, self.pause + 2e-5)
        return now > self.deadline


def _encode(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode(), np.uint8).copy()
