"""In-process checks of gpunet.distributed's parts (no MPI job needed)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import gpunet as gn
from gpunet.distributed import _reducers, _strategy
from gpunet.errors import DistributedError, InvalidParameterError


class FakeComm:
    """Two ranks: this one, and ``other`` whose description or sums we choose."""

    rank, size, timeout = 0, 2, 1.0

    def __init__(self, other: object = None) -> None:
        self.other = other

    def allgather_json(self, obj, what):
        return [obj, self.other if self.other is not None else obj]

    def allreduce_(self, buf, what):
        buf *= 2  # the other rank holds the same sums


def _strategy_at(rank: int, size: int) -> _strategy.MPIStrategy:
    s = _strategy.MPIStrategy.__new__(_strategy.MPIStrategy)
    s.rank, s.size = rank, size
    return s


def _model(units: int = 4, dtype: str = "float32", lr: float = 0.01, depth: int = 2):
    layers = [gn.layers.Dense(units, activation="relu", input_shape=(3,), dtype=dtype),
              gn.layers.Dense(1, dtype=dtype)][:depth]  # fmt: skip
    model = gn.Sequential(layers)
    model.compile(optimizer=gn.optimizers.Adam(learning_rate=lr), loss="mse", metrics=["mae"])
    model._build_optimizer()
    return model


def test_import_gpunet_loads_no_mpi():
    code = ("import sys, gpunet; gpunet.distributed.MPIStrategy; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("n", [0, 1, 7, 64, 65, 1000])
@pytest.mark.parametrize(("itemsize", "limit"), [(4, 4), (8, 64), (4, 100), (8, 1)])
def test_buckets_cover_the_buffer_in_bounded_spans(n, itemsize, limit):
    spans = list(_reducers.buckets(n, itemsize, limit))
    assert [i for a, b in spans for i in range(a, b)] == list(range(n))
    assert all(0 < (b - a) * itemsize <= max(limit, itemsize) for a, b in spans)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_local_rows_use_every_row_once_in_near_equal_shards(size):
    for start, stop in [(0, 0), (0, 1), (0, 10), (5, 18), (64, 75), (0, 203)]:
        parts = [_strategy_at(r, size).local_rows(start, stop) for r in range(size)]
        rows = [i for a, b in parts for i in range(a, b)]
        assert rows == list(range(start, stop))  # each row exactly once, in order
        lengths = [b - a for a, b in parts]
        assert max(lengths) - min(lengths) <= 1


def test_agreement_ignores_layer_names():
    a, b = _model(), _model()
    assert a.layers[0].name != b.layers[0].name
    other = _strategy.describe(b.optimizer, b)
    _strategy.check_agreement(FakeComm(other), _strategy.describe(a.optimizer, a))


@pytest.mark.parametrize(
    ("other", "message"),
    [(lambda: _model(units=5), "rank 1 sent float32[3, 5] for weight 0, rank 0 expected "
                               "float32[3, 4]"),
     (lambda: _model(dtype="float64"), "rank 1 sent float64[3, 4] for weight 0, rank 0 expected "
                                       "float32[3, 4]"),
     (lambda: _model(lr=0.5), "rank 1 has optimizer ['Adam', {"),
     (lambda: _model(depth=1), "rank 1 has 2 weights, rank 0 has 4")],
)  # fmt: skip
def test_disagreement_names_the_rank_and_the_difference(other, message):
    ours, theirs = _model(), other()
    with pytest.raises(DistributedError, match="processes disagree on the model") as info:
        _strategy.check_agreement(FakeComm(_strategy.describe(theirs.optimizer, theirs)),
                                  _strategy.describe(ours.optimizer, ours))  # fmt: skip
    assert message in str(info.value)


def test_metrics_are_reduced_from_the_sums_of_every_rank():
    model = _model()
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.standard_normal(20)
    model.fit(X, y, epochs=1, verbose=0, batch_size=8)
    local = model._read_local_metrics("val_")
    s = _strategy_at(0, 2)
    s.comm = FakeComm()
    assert s.read_metrics(model, "val_") == pytest.approx(local, rel=1e-12)
    assert model._read_local_metrics("val_") == local  # the local sums are left alone
    model._reset_metrics()  # no rank saw a batch: zeros, as in one process
    assert s.read_metrics(model, "") == {"loss": 0.0, "mae": 0.0}


def test_a_parameter_without_gradient_joins_the_allreduce_as_zero():
    model = _model()
    group = model.optimizer.groups[0]
    group.G[...] = 7.0
    for p in model.trainable_weights:
        p.zero_grad()
    model.trainable_weights[0].grad = np.ones((3, 4), dtype="float32")
    _strategy._gradients_into_buffer(group)
    assert group.all_grads_in_place()
    a, b = group.spans[0]
    assert np.all(group.G[a:b] == 1.0) and np.all(group.G[b:] == 0.0)


def test_bad_arguments_fail_before_mpi_starts():
    with pytest.raises(InvalidParameterError, match="gpu_reduce must be one of nccl, mpi, host"):
        gn.distributed.MPIStrategy(gpu_reduce="gloo")
    with pytest.raises(InvalidParameterError, match="needs a built optimizer"):
        gn.distributed.DistributedOptimizer(gn.optimizers.SGD())


def _nccl_available() -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(importlib.import_module("cupy.cuda.nccl").available)
        except ImportError:
            return False


@pytest.mark.skipif(_nccl_available(), reason="NCCL is installed here: see the unique-id test")
def test_missing_nccl_is_a_clear_error():
    with pytest.raises(DistributedError, match=r"(needs CuPy|pip install 'nvidia-nccl-cu12)"):
        _strategy.nccl_modules()


@pytest.mark.skipif(
    not _nccl_available(),
    reason="libnccl is not installed (pip install "
    "'nvidia-nccl-cu12>=2.18', 490 MB); cupy.cuda.nccl has no unique id to make",
)
def test_nccl_imports_and_makes_a_unique_id():  # fmt: skip
    nccl, _ = _strategy.nccl_modules()
    uid = nccl.get_unique_id()
    assert len(uid) == 128 and nccl.get_version() > 0
    assert all(hasattr(nccl, code) for code in _reducers.NCCL_DTYPES.values())
