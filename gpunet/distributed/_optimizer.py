"""The hand-written loop: ``DistributedOptimizer``, ``broadcast_parameters``, ``shard``."""

from __future__ import annotations

from typing import Any

from gpunet.distributed._reducers import dtype_name
from gpunet.distributed._strategy import MPIStrategy, broadcast_state, check_agreement, describe
from gpunet.errors import InvalidParameterError

_default: MPIStrategy | None = None


def init(**kwargs: Any) -> MPIStrategy:
    """The process's default ``MPIStrategy`` (made on the first call; ``kwargs`` as
    for ``MPIStrategy``, honoured on that first call only)."""
    global _default
    if _default is None:
        _default = MPIStrategy(**kwargs)
    return _default


class _DistributedStep:
    """Mixed in before an optimizer's own class: sum gradients, then step."""

    _strategy: MPIStrategy
    _average: bool

    def step(self, closure: Any = None, **kwargs: Any) -> Any:
        from gpunet.optimizers._base import _run_closure

        loss = _run_closure(closure)  # its gradients, then reduced over the processes
        self._strategy.reduce_gradients(self, average=self._average)
        super().step(**kwargs)  # type: ignore[misc]
        return loss


_CLASSES: dict[type, type] = {}


def DistributedOptimizer(optimizer: Any, strategy: MPIStrategy | None = None, *,
                         average: bool = True, broadcast: bool = True) -> Any:  # fmt: skip
    """Make ``optimizer.step()`` reduce the gradients over every process first.

    The optimizer is changed in place and returned (still an instance of its
    class, so everything else about it stays). Wrapping is collective: every
    process checks that all built the same parameters and, with ``broadcast``,
    takes rank 0's parameters and optimizer state, so the replicas start equal.

    Args:
        optimizer: A built optimizer (``gn.optim.Adam(net.parameters())``).
        strategy: Default: ``gn.distributed.init()``.
        average: Divide the summed gradients by the number of processes: right
            when each process's loss is the mean over its own rows, as in most
            loops. Pass ``False`` when the loss is already divided by the global
            batch size.
        broadcast: Copy rank 0's parameters and optimizer state to every process.

    Raises:
        DistributedError: the processes built different parameters.
    """
    if not getattr(optimizer, "built", False):
        raise InvalidParameterError(
            "DistributedOptimizer needs a built optimizer: pass the parameters, e.g. "
            "gn.optim.Adam(net.parameters()) or gn.optimizers.Adam(params=model.weights)"
        )
    strategy = strategy if strategy is not None else init()
    cls = type(optimizer)
    if not isinstance(optimizer, _DistributedStep):
        if cls not in _CLASSES:
            _CLASSES[cls] = type(f"Distributed{cls.__name__}", (_DistributedStep, cls), {})
        optimizer.__class__ = _CLASSES[cls]
    optimizer._strategy, optimizer._average = strategy, bool(average)
    check_agreement(strategy.comm, describe(optimizer))
    if broadcast:
        broadcast_state(strategy.comm, optimizer.params, optimizer)
    return optimizer


def broadcast_parameters(model: Any, strategy: MPIStrategy | None = None) -> None:
    """Give every process rank 0's weights (``model`` or a list of parameters)."""
    strategy = strategy if strategy is not None else init()
    weights = list(model.weights if hasattr(model, "weights") else model)
    check_agreement(strategy.comm, {"weights": [[dtype_name(p), list(p.shape)] for p in weights]})
    broadcast_state(strategy.comm, weights)


def shard(*arrays: Any, strategy: MPIStrategy | None = None) -> Any:
    """This process's rows of each array (an even split; sizes differ by at most 1).

    Example (every process holds all of ``X, y``; it trains on its part):
        X_local, y_local = gn.distributed.shard(X, y)
    """
    strategy = strategy if strategy is not None else init()
    out = []
    for a in arrays:
        start, stop = strategy.local_rows(0, len(a))
        out.append(a[start:stop])
    return out[0] if len(out) == 1 else tuple(out)
