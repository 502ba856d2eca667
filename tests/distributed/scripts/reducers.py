"""Every gradient reducer gives the same weights (run under mpiexec -n 2).

``host`` is the plain in-place MPI allreduce; ``staged`` goes through host
copies (the path of any non-NumPy device); ``cuda-aware`` hands buffers to MPI
as they are; ``nccl`` is the real ``NcclReducer`` driving a stand-in for
``cupy.cuda.nccl`` whose ``allReduce`` sums the memory behind the pointers it is
given over MPI. ``sim`` trains on the strict simulated device (a device that is
not the host: any hidden host read or host/device mix raises), whose gradients
take the staged path. Without a GPU this checks the NCCL path's own logic: the unique
id made on rank 0 only and broadcast, one communicator per rank, the dtype codes,
pointers and element counts, and the wait on the stream. Buckets are tiny so
that every reducer splits the buffer.

Usage: mpiexec -n 2 python reducers.py OUT_DIR   |   python reducers.py OUT_DIR --single
(``--single``: the ``sim`` training in one process, the reference of the ``sim`` run)
"""

from __future__ import annotations

import ctypes
import json
import sys

import numpy as np
from mpi4py import MPI

import gpunet as gn
from gpunet.distributed import _reducers

CTYPES = {7: ctypes.c_float, 8: ctypes.c_double}
LOG: list[str] = []


class FakeNccl:
    NCCL_SUM, NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 0, 6, 7, 8
    UID = tuple(range(-64, 64))

    @staticmethod
    def get_unique_id() -> tuple[int, ...]:
        assert MPI.COMM_WORLD.Get_rank() == 0, "only rank 0 makes the unique id"
        return FakeNccl.UID

    class NcclCommunicator:
        def __init__(self, ndev: int, uid: tuple[int, ...], rank: int) -> None:
            assert uid == FakeNccl.UID and ndev == MPI.COMM_WORLD.Get_size()
            assert rank == MPI.COMM_WORLD.Get_rank() and FakeCuda.current == 0
            LOG.append("communicator")

        def allReduce(self, send: int, recv: int, count: int, dtype: int, op: int,
                      stream: int) -> None:  # fmt: skip
            assert send == recv and op == FakeNccl.NCCL_SUM and stream == 1234
            buf = np.ctypeslib.as_array((CTYPES[dtype] * count).from_address(recv))
            MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, buf)
            LOG.append(f"allReduce {count}")

        def check_async_error(self) -> None: ...

        def abort(self) -> None: ...


class FakeCuda:
    current = -1

    class Device:
        def __init__(self, index: int) -> None:
            self.index = index

        def __enter__(self) -> None:
            FakeCuda.current = self.index

        def __exit__(self, *exc: object) -> None:
            FakeCuda.current = -1

    class Stream:
        ptr, polls = 1234, 0

        @property
        def done(self) -> bool:  # not done at the first look: the wait loop runs
            FakeCuda.Stream.polls += 1
            return FakeCuda.Stream.polls % 2 == 0

    @staticmethod
    def get_current_stream() -> Stream:
        return FakeCuda.Stream()


def train(strategy: object, reducer: object, dtype: str, device: str = "cpu") -> list[np.ndarray]:
    if reducer is not None:
        strategy._reducers["cpu"] = reducer  # type: ignore[attr-defined]
    gn.utils.set_random_seed(0)
    gn.config.set_floatx(dtype)
    model = gn.Sequential([gn.layers.Dense(32, activation="relu", input_shape=(5,)),
                           gn.layers.Dense(2)], device=device)  # fmt: skip
    model.compile(optimizer="adam", loss="mse", strategy=strategy)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((90, 5))
    model.fit(X, np.stack([X.sum(1), X[:, 0]], 1), batch_size=30, epochs=2, verbose=0)
    return model.get_weights()


def main() -> None:
    if "--single" in sys.argv:
        weights = train(None, None, "float32", device="sim")
        np.savez(
            f"{sys.argv[1]}/single.npz", **{f"sim_float32_{i}": w for i, w in enumerate(weights)}
        )
        return
    strategy = gn.distributed.MPIStrategy(timeout=60)
    comm, small = strategy.comm, 256  # bytes a bucket: several buckets per step
    kinds = {
        "host": lambda: _reducers.HostReducer(comm, small),
        "staged": lambda: _reducers.StagedReducer(comm, small),
        "cuda-aware": lambda: _reducers.CudaAwareReducer(comm, small),
        "nccl": lambda: _reducers.NcclReducer(comm, 0, FakeNccl, FakeCuda),
    }
    out: dict[str, np.ndarray] = {}
    calls: dict[str, int] = {}
    for dtype in ("float64", "float32"):
        for kind, make in kinds.items():
            reducer = make()
            for i, w in enumerate(train(strategy, reducer, dtype)):
                out[f"{kind}_{dtype}_{i}"] = w
            calls[f"{kind}_{dtype}"] = reducer.calls
    for i, w in enumerate(train(strategy, None, "float32", device="sim")):
        out[f"sim_float32_{i}"] = w
    calls["sim"] = strategy.reducer(gn.get_ops("sim")).calls
    np.savez(f"{sys.argv[1]}/rank{strategy.rank}.npz", **out)
    with open(f"{sys.argv[1]}/log{strategy.rank}.json", "w") as f:
        json.dump({"calls": calls, "nccl": LOG, "polls": FakeCuda.Stream.polls}, f)


if __name__ == "__main__":
    main()
