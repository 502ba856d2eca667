"""``strategy=``: one estimator fit spread over the processes of an ``MPIStrategy``.

Every process passes the same ``X, y`` (as scikit-learn users do) and runs the same
fit: the same random draws, batches and stopping decisions. Only the arithmetic over
the rows is split. Each process computes the loss and gradient of its rows of every
batch (L-BFGS: of its rows of the data), scaled by the whole batch's size or weight
sum, which it can compute because it holds all the data; the gradients and the losses
are then summed over the processes. Every process ends with the same fitted
attributes, equal to one process's fit up to rounding.

The solvers in ``_solvers`` call the hooks here only when ``shards`` returned an
object, so a fit without a strategy runs exactly the code it ran before.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from gpunet.backend import get_ops
from gpunet.errors import DistributedError

# parameters each process may set for itself: the strategy and where to print or
# compute are per process, and every process takes rank 0's random stream
PER_PROCESS = ("strategy", "verbose", "device", "random_state")
BUCKET = 16 * 2**20  # bytes per broadcast message, as the model broadcast


class Shards:
    """The processes of one fit: an ``MPIStrategy`` of more than one process."""

    def __init__(self, strategy: Any) -> None:
        self.strategy, self.comm = strategy, strategy.comm
        self.rank, self.size = int(strategy.rank), int(strategy.size)

    @property
    def chief(self) -> bool:
        """The process that prints when ``verbose``."""
        return self.rank == 0

    # -- before the first step --------------------------------------------------------
    def sync_random(self, rs: np.random.RandomState) -> None:
        """Give ``rs`` rank 0's state: with ``random_state=None`` (NumPy's global stream)
        or a ``RandomState`` object, processes would otherwise draw their own initial
        weights, shuffles and validation split."""
        kind, keys, pos, has_gauss, cached = rs.get_state(legacy=True)
        mine = [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]
        kind, keys, pos, has_gauss, cached = self.comm.bcast_json(mine, "the random state")
        if self.rank:
            rs.set_state((kind, np.array(keys, np.uint32), pos, has_gauss, cached))

    def start(self, est: Any, net: Any, X: Any, Y: Any, sw: Any) -> None:
        """Check that every process fits the same thing, then give every process rank
        0's weights and optimizer state.

        Raises:
            DistributedError: on every process, when any two differ in the estimator's
                parameters, the data's shape or values, or the network; checked before
                the first allreduce, which would otherwise mix or hang.
        """
        desc = describe(est, net, X, Y, sw)
        every = self.comm.allgather_json(desc, "the fit agreement check")
        for rank, other in enumerate(every[1:], start=1):
            if other != every[0]:
                raise DistributedError(
                    f"processes disagree on the fit: {_why(every[0], other, rank)}"
                )
        self._broadcast(net, est.__dict__.get("_optimizer") if est.solver != "lbfgs" else None)

    def _broadcast(self, net: Any, opt: Any) -> None:
        ops, group = net.ops, net.group
        for buf in [group.P, *group.slots.values()]:
            n, step = int(buf.shape[0]), max(1, BUCKET // net.dtype.itemsize)
            for a in range(0, n, step):
                b = min(a + step, n)
                host = np.array(ops.to_numpy(buf[a:b]), copy=True, order="C")
                self.comm.bcast_(host, "the weight broadcast")
                if self.rank:
                    ops.assign(buf[a:b], ops.asarray(host))
        if opt is not None:
            mine = [int(opt.iterations), float(opt.learning_rate)]
            opt.iterations, opt.learning_rate = self.comm.bcast_json(mine, "the optimizer step")

    # -- during the fit ----------------------------------------------------------------
    def rows(self, start: int, stop: int) -> tuple[int, int]:
        """This process's rows ``[a, b)`` of global rows ``[start, stop)``."""
        a, b = self.strategy.local_rows(start, stop)
        return int(a), int(b)

    def reduce_gradients(self, optimizer: Any) -> None:
        """Sum the optimizer's flat gradient over the processes, in place."""
        self.strategy.reduce_gradients(optimizer)

    def sum(self, value: Any) -> float:
        """The sum of a host scalar over the processes."""
        return float(self.strategy.allreduce(np.float64(value)))

    def sum_loss_grad(self, net: Any, loss: Any) -> Any:
        """L-BFGS's objective: the loss (a 0-d device array) and the flat gradient
        ``G``, each summed over the processes; returns the summed loss."""
        ops = net.ops
        # NOTE: the reducer the strategy uses for an optimizer's buffer (NCCL, MPI or
        # host staging by device); L-BFGS has a bare buffer and no optimizer
        self.strategy.reducer(ops).allreduce(ops, net.group.G, "the gradient allreduce")
        total = self.sum(ops.to_numpy(loss))
        return ops.asarray(np.asarray(total, dtype=net.dtype))


def shards(strategy: Any) -> Shards | None:
    """None for one process: no strategy, a ``LocalStrategy``, or one MPI process."""
    if strategy is None or int(strategy.size) == 1:
        return None
    return Shards(strategy)


def own_ops(strategy: Any, ops: Any) -> Any:
    """With GPUs, each process computes on the GPU of its local rank
    (``strategy.device``), as ``compile(..., strategy=)`` does."""
    if strategy is not None and int(strategy.size) > 1 and str(ops.device).startswith("cuda"):
        return get_ops(strategy.device)
    return ops


def describe(est: Any, net: Any, X: Any, Y: Any, sw: Any) -> dict[str, Any]:
    """What every process must agree on, as JSON values."""
    params = est.get_params(deep=False)
    classes = getattr(est, "classes_", None)
    return {
        "estimator": type(est).__name__,
        "parameters": {k: repr(v) for k, v in sorted(params.items()) if k not in PER_PROCESS},
        "X": [list(X.shape), str(np.dtype(X.dtype))],
        "weights": [net.dtype.name, int(net.group.P.shape[0])],
        "classes": None if classes is None else repr(np.asarray(classes).tolist()),
        "data": digest(X, Y, sw),
    }


def digest(*arrays: Any) -> str:
    """A hash of the arrays' dtypes, shapes and bytes (one pass over the data)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if a is None:
            h.update(b"None;")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def _why(ref: dict[str, Any], other: dict[str, Any], rank: int) -> str:
    key = next(k for k in ref if ref[k] != other.get(k))
    mine: Any = ref[key]
    theirs: Any = other.get(key)
    if key == "parameters":
        name = next(k for k in mine if mine[k] != theirs.get(k))
        return f"rank {rank} has {name}={theirs.get(name)}, rank 0 has {name}={mine[name]}"
    if key == "X":
        return (f"rank {rank} passed X of shape {tuple(theirs[0])} {theirs[1]}, rank 0 "
                f"{tuple(mine[0])} {mine[1]}; every process must pass the same data")  # fmt: skip
    if key == "data":
        return (f"rank {rank} passed other values of X, y or sample_weight than rank 0; "
                "every process must pass the same data")  # fmt: skip
    return f"rank {rank} has {key} {theirs!r}, rank 0 has {mine!r}"
