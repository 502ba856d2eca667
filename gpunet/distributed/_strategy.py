"""``MPIStrategy``: data-parallel ``fit`` over MPI processes (and their GPUs)."""

from __future__ import annotations

import hashlib
import importlib
import json
import warnings
from typing import Any

import numpy as np

from gpunet import random as grandom
from gpunet.backend import _compat, get_ops
from gpunet.distributed import _reducers
from gpunet.distributed._mpi import Comm, install_abort_hook, mpi, resolve_timeout
from gpunet.errors import DistributedError, InvalidParameterError
from gpunet.strategy import LocalStrategy

GPU_REDUCE = ("nccl", "mpi", "host")


class MPIStrategy(LocalStrategy):
    """Train on every MPI process at once: ``compile(..., strategy=MPIStrategy())``.

    Launch the same script on every process (``mpiexec -n 4 python train.py`` or
    ``srun``). Each process passes the same data to ``fit``; ``batch_size`` is the
    global batch, of which each process takes its rows. Gradients are summed
    with one allreduce per step over the optimizer's flat buffer, so the weights
    after each step equal those of one process training on the whole batch.

    Args:
        comm: An ``mpi4py`` communicator (default ``MPI.COMM_WORLD``).
        gpu_reduce: How gradients on GPUs are summed: ``"nccl"`` (default),
            ``"mpi"`` (a CUDA-aware MPI takes device memory as it is) or
            ``"host"`` (through host memory, one bucket at a time; any MPI).
        bucket_mb: Largest message of the allreduce, in MiB: bounds MPI's scratch
            memory and the host staging copy.
        timeout: Seconds a process waits in one collective for the others before
            it ends the whole job (default ``$GPUNET_DISTRIBUTED_TIMEOUT`` or 600).
        abort_on_error: An uncaught exception on any process calls ``MPI_Abort``,
            so every process ends instead of waiting for it.

    Raises:
        DistributedError: mpi4py is missing; later, processes that disagree on
            the model, or a process that stopped answering.
    """

    def __init__(self, *, comm: Any = None, gpu_reduce: str = "nccl", bucket_mb: float = 16.0,
                 timeout: float | None = None, abort_on_error: bool = True) -> None:  # fmt: skip
        if gpu_reduce not in GPU_REDUCE:
            raise InvalidParameterError(
                f"gpu_reduce must be one of {', '.join(GPU_REDUCE)}, got {gpu_reduce!r}"
            )
        if not bucket_mb > 0:
            raise InvalidParameterError(f"bucket_mb must be > 0, got {bucket_mb!r}")
        MPI = mpi()
        raw = MPI.COMM_WORLD if comm is None else comm
        self.comm = Comm(raw, timeout, abort=abort_on_error)
        self.rank, self.size = self.comm.rank, self.comm.size
        node = raw.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = int(node.Get_rank()), int(node.Get_size())
        node.Free()
        if abort_on_error:
            install_abort_hook(raw)
        self.gpu_reduce = gpu_reduce
        self.bucket_bytes = max(1, int(bucket_mb * 2**20))
        self._reducers: dict[str, Any] = {}
        self.sync_random()

    def __repr__(self) -> str:
        return f"<MPIStrategy rank={self.rank} size={self.size} gpu_reduce={self.gpu_reduce!r}>"

    @property
    def timeout(self) -> float:
        """Seconds a process waits in one collective before it ends the job."""
        return self.comm.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self.comm.timeout = resolve_timeout(seconds)

    @property
    def device(self) -> str:
        """This process's device: the GPU of its local rank, or ``"cpu"``."""
        n, _ = _compat.gpu_count()
        return f"cuda:{self.local_rank % n}" if n else "cpu"

    # -- the hooks fit calls -------------------------------------------------------------
    def setup(self, model: Any) -> None:
        """Pin the GPU, check that every process built the same model, then give
        every process rank 0's weights, optimizer state and random streams."""
        if hasattr(model.optimizer, "_strategy"):
            raise InvalidParameterError(
                "compile with the plain optimizer: strategy= already reduces the gradients "
                "(DistributedOptimizer is for hand-written loops)"
            )
        if str(model.device).startswith("cuda") and model.device != self.device:
            model.to(self.device)  # each process drives the GPU of its local rank
        check_agreement(self.comm, describe(model.optimizer, model))
        broadcast_state(self.comm, model.weights, model.optimizer)
        self.sync_random()

    def local_rows(self, start: int, stop: int) -> tuple[int, int]:
        """An even split of ``[start, stop)``: sizes differ by at most one row."""
        n = stop - start
        return start + n * self.rank // self.size, start + n * (self.rank + 1) // self.size

    def reduce_gradients(self, optimizer: Any, *, average: bool = False) -> None:
        """Sum (or ``average``) every gradient over the processes, in place."""
        for g in optimizer.groups:
            if not g.all_grads_in_place():
                _gradients_into_buffer(g)
            self.reducer(g.ops).allreduce(g.ops, g.G, "the gradient allreduce")
            if average:
                g.ops.assign(g.G, g.G * (1.0 / self.size))

    def read_metrics(self, model: Any, prefix: str) -> dict[str, float]:
        """Logs from the metric sums of every process (one small allreduce)."""
        metrics = [model._loss_tracker, *model.compiled_metrics]
        parts = []
        for m in metrics:
            parts.append(np.array([1.0 if m.state else 0.0]))
            for k in m.state_names:
                v = m.state.get(k)
                host = np.zeros(m.shape(k)) if v is None else m._ops.to_numpy(v)
                parts.append(np.asarray(host, np.float64).reshape(-1))
        flat = np.concatenate(parts)
        self.comm.allreduce_(flat, "the metrics allreduce")
        saved = [(m.state, m._ops) for m in metrics]
        cpu, off = get_ops("cpu"), 0
        try:
            for m in metrics:
                seen, off = flat[off] > 0, off + 1
                m.state, m._ops = ({}, None) if not seen else ({}, cpu)
                for k in m.state_names:
                    size = int(np.prod(m.shape(k)))
                    if seen:
                        m.state[k] = flat[off : off + size].reshape(m.shape(k))
                    off += size
            return model._read_local_metrics(prefix)  # type: ignore[no-any-return]
        finally:
            for m, (state, ops) in zip(metrics, saved, strict=True):
                m.state, m._ops = state, ops

    # -- helpers users may call ----------------------------------------------------------
    def sync_random(self) -> None:
        """Give every process rank 0's random streams (same shuffles, same draws)."""
        # NOTE: dropout draws are then the same on every process, for different rows;
        # that keeps a resumed run identical to an uninterrupted one.
        grandom.set_state(self.comm.bcast_json(grandom.get_state(), "the random streams"))

    def allreduce(self, X: Any) -> np.ndarray:
        """The sum of ``X`` (array-like) over every process, as a float64 array."""
        out = np.array(X, dtype=np.float64, copy=True, order="C")
        self.comm.allreduce_(out.reshape(-1), "a user allreduce")
        return out

    def reducer(self, ops: Any) -> Any:
        """The gradient reducer for ``ops``'s device (made once, collectively)."""
        key = str(ops.device)
        if key not in self._reducers:
            self._reducers[key] = self._make_reducer(key)
        return self._reducers[key]

    def _make_reducer(self, device: str) -> Any:
        if device == "cpu":
            return _reducers.HostReducer(self.comm, self.bucket_bytes)
        if not device.startswith("cuda") or self.gpu_reduce == "host":
            return _reducers.StagedReducer(self.comm, self.bucket_bytes)
        if self.gpu_reduce == "mpi":
            return _reducers.CudaAwareReducer(self.comm, self.bucket_bytes)
        nccl, cuda = nccl_modules()
        return _reducers.NcclReducer(self.comm, int(device.split(":")[1]), nccl, cuda)


def nccl_modules() -> tuple[Any, Any]:
    """``(cupy.cuda.nccl, cupy.cuda)``, or DistributedError saying what to install."""
    cupy = _compat.cupy_or_none()
    if cupy is None:
        raise DistributedError(f"gpu_reduce='nccl' needs CuPy: {_compat.INSTALL_HINT}")
    with warnings.catch_warnings():  # CuPy warns at import when libnccl is missing
        warnings.simplefilter("ignore")
        nccl = importlib.import_module("cupy.cuda.nccl")
    if not getattr(nccl, "available", False):
        raise DistributedError(
            "gpu_reduce='nccl' needs the NCCL library: pip install 'nvidia-nccl-cu12>=2.18' "
            "(or pass gpu_reduce='host' or, with a CUDA-aware MPI, 'mpi')"
        )
    return nccl, cupy.cuda


def _gradients_into_buffer(g: Any) -> None:
    # NOTE: a parameter without a gradient counts as a zero gradient, so that every
    # process reduces the same buffer and takes the same step.
    for p, (a, b) in zip(g.params, g.spans, strict=True):
        if p._grad is not p._gbuf:
            grad = p._grad
            g.ops.assign(g.G[a:b], 0.0 if grad is None else g.ops.xp.reshape(grad, (-1,)))
            p._grad = p._gbuf


# -- agreement and broadcast ------------------------------------------------------------
def _without_names(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {k: _without_names(v) for k, v in cfg.items() if k != "name"}
    if isinstance(cfg, (list, tuple)):
        return [_without_names(v) for v in cfg]
    return cfg


def describe(optimizer: Any, model: Any = None) -> dict[str, Any]:
    """What every process must agree on: weight shapes and dtypes, the optimizer,
    and (for a model) its configuration without layer names."""
    params = model.weights if model is not None else optimizer.params
    desc: dict[str, Any] = {
        "weights": [[_reducers.dtype_name(p), list(p.shape)] for p in params],
        "trainable": [bool(p.requires_grad) for p in params],
        "buffers": [[_reducers.dtype_name(g.P), int(g.P.size)] for g in optimizer.groups],
        "optimizer": [type(optimizer).__name__, optimizer.get_config()],
    }
    if model is not None:
        try:
            cfg = json.dumps(_without_names(model.get_config()), sort_keys=True, default=str)
        except Exception:  # a subclassed model's own get_config may need arguments
            cfg = type(model).__name__
        desc["model"] = hashlib.sha256(cfg.encode()).hexdigest()[:16]
        desc["loss"] = getattr(model.compiled_loss, "name", type(model.compiled_loss).__name__)
    return json.loads(json.dumps(desc, default=str))  # what allgather gives back


def _weight(entry: list[Any]) -> str:
    return f"{entry[0]}{entry[1]}"


def check_agreement(comm: Comm, desc: dict[str, Any]) -> None:
    """Raise the same ``DistributedError`` on every process when any two disagree
    (checked before the first allreduce, which would otherwise mix or hang)."""
    every = comm.allgather_json(desc, "the model agreement check")
    ref = every[0]
    for rank, other in enumerate(every[1:], start=1):
        if other == ref:
            continue
        w0, w1 = ref["weights"], other["weights"]
        if len(w0) != len(w1):
            why = f"rank {rank} has {len(w1)} weights, rank 0 has {len(w0)}"
        elif w0 != w1:
            i = next(i for i, (a, b) in enumerate(zip(w0, w1, strict=True)) if a != b)
            why = (f"rank {rank} sent {_weight(w1[i])} for weight {i}, rank 0 expected "
                   f"{_weight(w0[i])}")  # fmt: skip
        else:
            key = next(k for k in ref if ref[k] != other.get(k))
            why = f"rank {rank} has {key} {other.get(key)!r}, rank 0 has {ref[key]!r}"
        raise DistributedError(f"processes disagree on the model: {why}")


BUCKET = _reducers.DEFAULT_BUCKET_BYTES


def broadcast_state(comm: Comm, weights: list[Any], optimizer: Any = None) -> None:
    """Overwrite every process's weights (and optimizer state) with rank 0's."""
    flat: list[tuple[Any, Any]] = []  # 1-D buffers, sent bucket by bucket
    covered: set[int] = set()
    for g in optimizer.groups if optimizer is not None else []:
        flat += [(g.ops, g.P), *((g.ops, v) for v in g.slots.values())]
        covered.update(id(p) for p in g.params)
    for ops, buf in flat:
        for a, b in _reducers.buckets(int(buf.shape[0]), _reducers.itemsize(buf), BUCKET):
            host = np.array(ops.to_numpy(buf[a:b]), copy=True, order="C")
            comm.bcast_(host, "the weight broadcast")
            if comm.rank:
                ops.assign(buf[a:b], ops.asarray(host))
    for p in weights:  # weights outside the optimizer: batch-norm statistics, frozen layers
        if id(p) not in covered:
            host = np.array(p.numpy(), copy=True, order="C")
            comm.bcast_(host, "the weight broadcast")
            if comm.rank:
                p.assign(host)
    if optimizer is not None:
        optimizer.iterations = int(comm.bcast_json(int(optimizer.iterations), "the step count"))
