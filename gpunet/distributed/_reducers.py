"""Gradient reducers: sum one flat buffer over every rank, in place.

One reducer per kind of memory:

* ``HostReducer``: NumPy buffers, MPI allreduce in place, bucket by bucket.
* ``StagedReducer``: device buffers through host memory (any MPI, any device).
* ``CudaAwareReducer``: CuPy buffers handed to a CUDA-aware MPI as they are.
* ``NcclReducer``: CuPy buffers reduced by NCCL between GPUs.

Buckets bound the extra memory: MPI's allreduce algorithms allocate scratch
space the size of the message, and staging copies one bucket at a time, so a
large model never needs a second full copy of its gradients.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunet.distributed._mpi import Comm, Poller
from gpunet.errors import DistributedError

DEFAULT_BUCKET_BYTES = 16 * 2**20


def dtype_name(arr: Any) -> str:
    """``"float32"`` for a NumPy, CuPy or array-API array of that dtype."""
    return str(arr.dtype).rsplit(".", 1)[-1]


def itemsize(arr: Any) -> int:
    return int(np.dtype(dtype_name(arr)).itemsize)


def buckets(n: int, itemsize: int, bucket_bytes: int) -> Iterator[tuple[int, int]]:
    """``[a, b)`` element spans of at most ``bucket_bytes`` covering ``range(n)``."""
    step = max(1, bucket_bytes // itemsize)
    for a in range(0, n, step):
        yield a, min(a + step, n)


class HostReducer:
    """NumPy buffers: in-place MPI allreduce per bucket."""

    def __init__(self, comm: Comm, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.comm, self.bucket_bytes = comm, int(bucket_bytes)
        self.calls = 0  # collectives issued, for tests and the benchmark

    def allreduce(self, ops: Any, buf: Any, what: str) -> None:
        """Sum 1-D ``buf`` over every rank, in place."""
        for a, b in buckets(int(buf.size), itemsize(buf), self.bucket_bytes):
            self._reduce(ops, buf[a:b], what)
            self.calls += 1

    def _reduce(self, ops: Any, view: Any, what: str) -> None:
        self.comm.allreduce_(view, what)


class StagedReducer(HostReducer):
    """Device buffers copied to the host one bucket at a time: works with any MPI
    and any device (the strict simulated one included)."""

    def _reduce(self, ops: Any, view: Any, what: str) -> None:
        host = np.array(ops.to_numpy(view), copy=True, order="C")
        self.comm.allreduce_(host, what)
        ops.assign(view, ops.asarray(host))


class CudaAwareReducer(HostReducer):
    """CuPy buffers given to MPI as they are (``__cuda_array_interface__``); needs an
    MPI built with CUDA support."""

    def allreduce(self, ops: Any, buf: Any, what: str) -> None:
        # MPI reads device memory outside CuPy's stream: the backward must be done
        ops.synchronize()
        super().allreduce(ops, buf, what)


NCCL_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


def device_pointer(buf: Any) -> int:
    """Address of ``buf``'s first element (CuPy: device memory; NumPy: host)."""
    ptr = getattr(buf.data, "ptr", None)
    return int(ptr) if ptr is not None else int(buf.ctypes.data)


class NcclReducer:
    """CuPy buffers summed by NCCL, in place, on the current stream.

    The communicator's unique id is made on rank 0 and broadcast over MPI. The
    wait polls the stream with the same deadline as the MPI collectives, then
    aborts the NCCL communicator: an aborted collective returns without raising
    and leaves partial sums, so the job must end (and resume from a checkpoint).
    """

    def __init__(self, comm: Comm, device_index: int, nccl: Any, cuda: Any) -> None:
        self.comm, self.nccl, self.cuda, self.device_index = comm, nccl, cuda, device_index
        uid = nccl.get_unique_id() if comm.rank == 0 else None
        uid = comm.bcast_json(None if uid is None else list(uid), "the NCCL unique id")
        with cuda.Device(device_index):
            self.nccl_comm = nccl.NcclCommunicator(comm.size, tuple(uid), comm.rank)
        self.calls = 0

    def allreduce(self, ops: Any, buf: Any, what: str) -> None:
        """Sum 1-D ``buf`` over every rank's GPU, in place (one NCCL call: NCCL
        needs no scratch copy)."""
        code = NCCL_DTYPES.get(dtype_name(buf))
        if code is None:
            raise DistributedError(f"NCCL cannot reduce {buf.dtype} gradients")
        with self.cuda.Device(self.device_index):  # NCCL needs a stream of its device
            stream = self.cuda.get_current_stream()
            ptr = device_pointer(buf)
            self.nccl_comm.allReduce(ptr, ptr, int(buf.size), getattr(self.nccl, code),
                                     self.nccl.NCCL_SUM, stream.ptr)  # fmt: skip
            self.calls += 1
            self._wait(stream, what)

    def _wait(self, stream: Any, what: str) -> None:
        poll = Poller(self.comm.timeout)
        while not stream.done:
            self.nccl_comm.check_async_error()  # raises NcclError on a peer failure
            if poll.expired():
                self.nccl_comm.abort()
                self.comm.fail(
                    f"rank {self.comm.rank}: NCCL {what} did not finish in "
                    f"{self.comm.timeout:g} s; a rank died or hangs"
                )
