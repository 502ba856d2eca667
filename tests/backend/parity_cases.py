"""The registry of the backend parity suite (``test_parity.py``): one ``Case`` per op
configuration, each able to build its inputs at every size the suite runs.

A case names the ``Ops`` methods it exercises, builds float64 (and integer) inputs
for a size tag, and calls the op through any backend, returning the outputs to
compare. The suite runs every case on every backend and dtype against the
reference ``Ops`` in float64. A new op, or a new fast path, joins by adding a case
here: ``test_every_fast_path_is_registered`` fails until it does.

Size tags (each case picks its shapes from the thresholds that decide the path):

* ``"0"``, ``"1"``, ``"odd"``: empty, single element, a small odd shape;
* ``"above"``: just above the host-kernel threshold of the op (``HOST_MIN``,
  ``LOSS_HOST_MIN``) and above the lowered grid of the fused-kernel tests, so the
  host build runs and the CUDA kernels take several turns of their grid-stride loop;
* ``"large"``: just above the host pool's parallel threshold (``kParallelMin`` of
  ``kernels/host.cpp``, at least 2**20 elements), run with 2 threads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpunet.backend import _host
from gpunet.backend._activation_ops import ACTIVATIONS, NEEDS_X
from gpunet.backend.numpy_ops import HOST_MIN, LOSS_HOST_MIN

Inputs = dict[str, Any]


def _host_constant(name: str) -> int:
    """A ``static const long long NAME = 1 << K;`` of kernels/host.cpp, so the sizes
    follow the thresholds when someone changes them."""
    text = (_host.KERNEL_DIR / _host.SOURCE).read_text()
    match = re.search(rf"{name}\s*=\s*1\s*<<\s*(\d+)\s*;", text)
    assert match, f"{name} not found in kernels/host.cpp"
    return 1 << int(match.group(1))


PARALLEL_MIN = _host_constant("kParallelMin")
PARALLEL_MIN_OPTIMIZER = _host_constant("kParallelMinOptimizer")
LARGE = max(PARALLEL_MIN, PARALLEL_MIN_OPTIMIZER, 1 << 20)
# the fused-kernel fixture lowers MAX_BLOCKS to 3: 3 blocks of 256 (elementwise) or
# 128 (one thread per row) threads; "above" goes past both
FUSED_THREADS, FUSED_ROWS = 3 * 256, 3 * 128
SMALL = ("0", "1", "odd", "above")
ALL = (*SMALL, "large")
EDGE = [0.0, -0.0, 1e-8, -1e-8, 0.5, -1.0, 3.0, -20.0, 20.0, 1e4, -1e4, np.inf, -np.inf, np.nan]


@dataclass(frozen=True)
class Case:
    name: str
    ops: tuple[str, ...]  # the Ops methods the call runs (the completeness test reads it)
    build: Callable[[str, np.random.Generator], Inputs]  # size tag -> float64/int inputs
    call: Callable[[Any, Inputs], tuple[Any, ...]]  # (backend, its inputs) -> outputs
    sizes: tuple[str, ...] = SMALL
    mutates: tuple[str, ...] = ()  # inputs updated in place; the others must not change
    tol: dict[str, float] | None = None  # in place of the suite's TOL, where a case needs it


# NumPy sums a non-contiguous axis (batch norm's, softmax over axis 0) one row after
# another, not pairwise: in float32 the error grows with the batch, in the reference
# itself: 3e-3 at 4k rows on a constant feature, 7e-3 where softmax's backward cancels
# (Y ~ 1). No backend has a fast path for these ops: the cases hold the devices to
# the reference, and the float64 runs keep the tight tolerance.
ROWWISE_SUM_TOL = {"float32": 2e-2, "float64": 1e-11}


def _edge(X: np.ndarray, values: list[float] = EDGE) -> np.ndarray:
    flat = X.reshape(-1)
    n = min(len(values), flat.size)
    flat[:n] = values[:n]
    return X


def elementwise_shape(size: str) -> tuple[int, int]:
    above = max(HOST_MIN, FUSED_THREADS) // 4 + 1
    return {"0": (0, 3), "1": (1, 1), "odd": (7, 3), "above": (above, 4)}[size]


def dense_shape(size: str) -> tuple[int, int, int]:
    """(batch, inputs, outputs): "above" passes HOST_MIN output elements, "large"
    the pool's threshold."""
    O = 64
    return {
        "0": (0, 4, 3),
        "1": (1, 1, 1),
        "odd": (7, 5, 3),
        "above": (HOST_MIN // O + 1, 5, O),
        "large": (PARALLEL_MIN // O + 1, 3, O),
    }[size]


def loss_shape(size: str, C: int) -> tuple[int, int]:
    if size in ("0", "1", "odd"):
        return {"0": (0, C), "1": (1, 1), "odd": (7, C)}[size]
    if size == "above":
        return max(LOSS_HOST_MIN // C + 1, FUSED_ROWS + 1), C
    return PARALLEL_MIN // C + 1, C


def flat_size(size: str) -> int:
    return {"0": 0, "1": 1, "odd": 7, "above": FUSED_THREADS + 263, "large": LARGE + 3}[size]


# -- activations ------------------------------------------------------------------------
ACTIVATION_SPECS: list[tuple[str, dict[str, Any]]] = [
    *((name, {}) for name in ACTIVATIONS),
    ("leaky_relu", {"alpha": 0.3}),
    ("elu", {"alpha": 0.7}),
    ("gelu", {"approximate": True}),
    ("softmax", {"axis": 0}),
    ("log_softmax", {"axis": 0}),
]


def _spec_id(name: str, kw: dict[str, Any]) -> str:
    return name + "".join(f",{k}={v}" for k, v in kw.items())


def _activation_case(name: str, kw: dict[str, Any]) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        shape = elementwise_shape(size)
        X = _edge(rng.standard_normal(shape) * 3)
        return {"X": X, "dY": rng.standard_normal(shape)}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        Y = ops.activation(name, a["X"], **kw)
        # the Y-only backwards are given X=None, as a fused layer that dropped X does
        X = a["X"] if name in NEEDS_X else None
        return Y, ops.backprop_activation(name, a["dY"], X, Y, **kw)

    method = "swish" if name == "silu" else name
    tol = ROWWISE_SUM_TOL if kw.get("axis") == 0 else None
    return Case(f"act:{_spec_id(name, kw)}", (method, "backprop_" + method), build, call, tol=tol)


# -- dense ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DenseFlags:
    bias: bool = True
    need_dX: bool = True
    need_db: bool = True
    sinks: bool = True  # dW_out / db_out gradient buffers given

    def tag(self) -> str:
        off = [k for k, v in vars(self).items() if not v]
        return "" if not off else ",no_" + "+".join(off)


def _dense_case(name: str, kw: dict[str, Any], flags: DenseFlags, sizes: tuple[str, ...]) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, K, O = dense_shape(size)
        X, W = rng.standard_normal((B, K)), rng.standard_normal((K, O)) / np.sqrt(K)
        b = rng.standard_normal(O)
        if B >= 3 and O >= 2:
            X[0] = 0.0  # Z[0] = b: with b[0] = 0 (or no bias) the relu kink, exactly
            b[0] = 0.0
            X[1] = 30.0 * np.sign(X[1])  # saturates sigmoid / tanh, large logits
        a: Inputs = {"X": X, "W": W, "dY": rng.standard_normal((B, O))}
        if flags.bias:
            a["b"] = b
        if flags.sinks:  # NaN-filled, so a sink left unwritten cannot pass
            a["dW_out"], a["db_out"] = np.full((K, O), np.nan), np.full(O, np.nan)
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        Y, Z = ops.dense(a["X"], a["W"], a.get("b"), name, **kw)
        dW_out, db_out = a.get("dW_out"), a.get("db_out")
        dX, dW, db = ops.backprop_dense(
            a["dY"], a["X"], a["W"], Z, Y, name, need_dX=flags.need_dX,
            need_db=flags.need_db, dW_out=dW_out, db_out=db_out, **kw,
        )  # fmt: skip
        assert dW_out is None or dW is dW_out, "dW was not written into dW_out"
        assert db_out is None or db is None or db is db_out, "db was not written into db_out"
        assert (dX is None) != flags.need_dX and (db is None) != flags.need_db
        return Y, Z, dX, dW, db

    return Case(
        f"dense:{_spec_id(name, kw)}{flags.tag()}",
        ("dense", "backprop_dense"),
        build,
        call,
        sizes=sizes,
        mutates=("dW_out", "db_out"),
    )


def _dense_cases() -> list[Case]:
    cases = []
    for name, kw in ACTIVATION_SPECS:
        if name in ("softmax", "log_softmax") and kw:
            continue  # a layer's activation runs over the features only
        large = ALL if name == "relu" else SMALL
        cases.append(_dense_case(name, kw, DenseFlags(), large))
    # each flag off on its own, and all off, for the activations with their own code
    # paths (the small relu/linear path, a Y-only host kernel, an X-keeping one)
    variants = [
        DenseFlags(bias=False),
        DenseFlags(need_dX=False),
        DenseFlags(need_db=False),
        DenseFlags(sinks=False),
        DenseFlags(False, False, False, False),
    ]
    for name in ("linear", "relu", "sigmoid", "swish"):
        for flags in variants:
            cases.append(_dense_case(name, {}, flags, SMALL))
    return cases


# -- linear algebra and plumbing ----------------------------------------------------------
def _gemm_case(trans1: bool, trans2: bool, batched: bool) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        M, K, N = dense_shape(size)
        lead = (2,) if batched else ()
        A = rng.standard_normal((*lead, *((K, M) if trans1 else (M, K))))
        B = rng.standard_normal((*lead, *((N, K) if trans2 else (K, N))))
        return {"A": A, "B": B}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        return (ops.gemm(a["A"], a["B"], trans1=trans1, trans2=trans2),)

    tag = f"trans1={trans1},trans2={trans2}{',batched' if batched else ''}"
    return Case(f"gemm:{tag}", ("gemm",), build, call)


def _sum_to_shape_case(lead: tuple[int, ...], target: Callable[[int], tuple[int, ...]]) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, O = elementwise_shape(size)
        return {"dY": rng.standard_normal((*lead, B, O))}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        dY = a["dY"]
        return (ops.sum_to_shape(dY, target(dY.shape[-1])),)

    shape = target(5)
    return Case(f"sum_to_shape:{len(lead) + 2}d->{shape}", ("sum_to_shape",), build, call)


def _plumbing_cases() -> list[Case]:
    def iadd(ops: Any, a: Inputs) -> tuple[Any, ...]:
        ops.iadd(a["D"], a["S"])
        return (a["D"],)

    def assign(ops: Any, a: Inputs) -> tuple[Any, ...]:
        ops.assign(a["D"], a["S"])
        return (a["D"],)

    def assign_scalar(ops: Any, a: Inputs) -> tuple[Any, ...]:
        ops.assign(a["D"], 0.25)
        return (a["D"],)

    def two(size: str, rng: np.random.Generator) -> Inputs:
        shape = elementwise_shape(size)
        return {"D": rng.standard_normal(shape), "S": _edge(rng.standard_normal(shape))}

    def finite(values: list[float]) -> Callable[[str, np.random.Generator], Inputs]:
        def build(size: str, rng: np.random.Generator) -> Inputs:
            X = rng.standard_normal(elementwise_shape(size))
            return {"X": _edge(X, values), "x0": np.asarray(values[0] if values else 1.0)}

        return build

    def all_finite(ops: Any, a: Inputs) -> tuple[Any, ...]:
        return ops.all_finite(a["X"]), np.asarray(ops.is_finite_scalar(a["x0"]))

    return [
        Case("iadd", ("iadd",), two, iadd, mutates=("D",)),
        Case("assign", ("assign",), two, assign, mutates=("D",)),
        Case("assign:scalar", ("assign",), two, assign_scalar, mutates=("D",)),
        *(
            Case(f"all_finite:{tag}", ("all_finite", "is_finite_scalar"), finite(v), all_finite)
            for tag, v in [
                ("finite", []),
                ("nan", [np.nan]),
                ("inf", [np.inf]),
                ("-inf", [-np.inf]),
            ]
        ),
    ]


# -- losses -----------------------------------------------------------------------------
def _logits(B: int, C: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    Z, labels = rng.standard_normal((B, C)) * 3, rng.integers(0, C, B)
    if B >= 6 and C >= 2:
        Z[0] = np.where(np.arange(C) % 2, 1e4, -1e4)  # +-1e4 logits
        Z[1], Z[2] = 1e4, -1e4  # flat rows at +-1e4
        Z[3, 0] = -np.inf
        Z[4, 1] = np.nan
        labels[:4] = [0, C - 1, C - 1, 0]  # labels at both ends
    return Z, labels


def _scale(B: int, weighted: bool, rng: np.random.Generator) -> Any:
    return rng.random(B) / max(B, 1) if weighted else 1.0 / max(B, 1)


def _softmax_case(target: str, weighted: bool, smoothing: float, sizes: tuple[str, ...]) -> Case:
    sparse = target.startswith("int")
    op = "sparse_softmax_cross_entropy" if sparse else "softmax_cross_entropy"

    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, C = loss_shape(size, 3 if size == "above" else 10)
        Z, labels = _logits(B, C, rng)
        if sparse:
            T: np.ndarray = labels.astype(target)
        elif target == "onehot":
            T = np.eye(C)[labels]
        else:  # soft targets, one all-zero row
            T = rng.random((B, C))
            T /= T.sum(-1, keepdims=True)
            T[B // 2 :][:1] = 0.0
        return {"Z": Z, "T": T, "scale": _scale(B, weighted, rng)}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        return getattr(ops, op)(a["Z"], a["T"], scale=a["scale"], label_smoothing=smoothing)

    tag = f"{target},{'weighted' if weighted else 'mean'},ls={smoothing}"
    return Case(f"{op}:{tag}", (op,), build, call, sizes=sizes)


def _sigmoid_case(weighted: bool, smoothing: float, sizes: tuple[str, ...]) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, K = loss_shape(size, 4)
        Z = _edge(rng.standard_normal((B, K)) * 3)
        T = rng.choice([0.0, 1.0, 0.3], size=(B, K))
        return {"Z": Z, "T": T, "scale": _scale(B, weighted, rng)}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        return ops.sigmoid_cross_entropy(a["Z"], a["T"], scale=a["scale"],
                                         label_smoothing=smoothing)  # fmt: skip

    tag = f"{'weighted' if weighted else 'mean'},ls={smoothing}"
    return Case(f"sigmoid_cross_entropy:{tag}", ("sigmoid_cross_entropy",), build, call, sizes)


def _regression_case(op: str, kw: dict[str, Any], positive: bool, probs: bool) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, K = loss_shape(size, 4)
        if probs:  # probabilities, with the clip edges 0, eps and 1 hit exactly
            P = rng.random((B, K))
            _edge(P, [0.0, 1.0, 2.0**-20, 1.0 - 2.0**-20, 0.5])
            T = rng.choice([0.0, 1.0, 0.3], size=(B, K))
        else:
            P = rng.random((B, K)) * 3 if positive else rng.standard_normal((B, K)) * 2
            T = rng.random((B, K)) * 3 if positive else rng.standard_normal((B, K)) * 2
            if P.size >= 3:  # error exactly 0 and exactly at huber's delta
                T.reshape(-1)[:2] = P.reshape(-1)[:2] - np.array([0.0, 1.0])
        return {"P": P, "T": T, "scale": _scale(B, size == "odd", rng)}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        return getattr(ops, op)(a["P"], a["T"], scale=a["scale"], **kw)

    return Case(f"{op}:{_spec_id('', kw)[1:]}", (op,), build, call)


def _loss_cases() -> list[Case]:
    cases = []
    for target in ("onehot", "soft", "int64", "int32"):
        for weighted in (False, True):
            for smoothing in (0.0, 0.1):
                large = (target, weighted, smoothing) == ("int64", False, 0.1)
                cases.append(_softmax_case(target, weighted, smoothing, ALL if large else SMALL))
    for weighted in (False, True):
        for smoothing in (0.0, 0.2):
            large = (weighted, smoothing) == (True, 0.0)
            cases.append(_sigmoid_case(weighted, smoothing, ALL if large else SMALL))
    # eps and 1 - eps exact in float32: a clipped value is then the same in both dtypes
    eps = {"epsilon": 2.0**-20}
    return [
        *cases,
        _regression_case("binary_cross_entropy", eps, True, True),
        _regression_case("binary_cross_entropy", {**eps, "label_smoothing": 0.1}, True, True),
        _regression_case("categorical_cross_entropy", eps, True, False),
        _regression_case("categorical_cross_entropy", {**eps, "label_smoothing": 0.1}, True, False),
        _regression_case("mean_squared_error", {}, False, False),
        _regression_case("mean_absolute_error", {}, False, False),
        _regression_case("huber", {"delta": 1.0}, False, False),
        _regression_case("poisson", eps, True, False),
    ]


# -- normalization ------------------------------------------------------------------------
def _norm_case(op: str, lead: int) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, F = elementwise_shape(size)
        X = rng.standard_normal((*(2,) * lead, B, F)) * 2 + 1
        if B >= 3 and F >= 2:
            X[..., 0] = 3.3  # a constant feature: variance 0 in batch norm
            X[..., 1, :] = -0.7  # a constant row: variance 0 in layer norm
        a: Inputs = {"X": X, "gamma": rng.standard_normal(F), "beta": rng.standard_normal(F),
                     "dY": rng.standard_normal(X.shape)}  # fmt: skip
        if op == "batchnorm_inference":
            a["mean"], a["var"] = rng.standard_normal(F), rng.random(F) + 0.1
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        args = (a["X"], a["gamma"], a["beta"])
        if op == "batchnorm_inference":
            args = (*args, a["mean"], a["var"])
        out = getattr(ops, op)(*args, epsilon=1e-3)
        grads = getattr(ops, "backprop_" + op)(a["dY"], out[1], out[2], a["gamma"])
        return (*out, *grads)

    sizes = SMALL if op != "batchnorm" else SMALL[1:]  # no mean over an empty batch
    tol = ROWWISE_SUM_TOL if op.startswith("batchnorm") else None
    return Case(f"{op}:{lead + 2}d", (op, "backprop_" + op), build, call, sizes, tol=tol)


# -- optimizers -----------------------------------------------------------------------------
def _write_back(ops: Any, dst: tuple[Any, ...], src: tuple[Any, ...], ok: Any) -> tuple[Any, ...]:
    """What ``Optimizer._write`` does: an op that returned new arrays did not apply
    the ``ok`` guard, so the caller keeps the old values where it is false."""
    for d, s in zip(dst, src, strict=True):
        if s is not d and d is not None:
            ops.assign(d, s if ok is None else ops.xp.where(ok, s, d))
    return dst


def _optimizer_state(size: str, rng: np.random.Generator, *names: str) -> Inputs:
    n = flat_size(size)
    a = {k: rng.standard_normal(n) for k in ("P", "G", *names)}
    _edge(a["G"], [np.nan, np.inf, -np.inf, 0.0, 1e4])  # non-finite steps, kept where ok
    return a


def _adam_case(decay: float, ok: bool | None) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        a = _optimizer_state(size, rng, "M", "V")
        a["V"] = np.abs(a["V"])
        if ok is not None:
            a["ok"] = np.asarray(ok)
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        P, M, V, flag = a["P"], a["M"], a["V"], a.get("ok")
        out = ops.adam(P, a["G"], M, V, lr_t=0.01, beta1=0.9, beta2=0.999, eps=1e-7,
                       decay=decay, ok=flag)  # fmt: skip
        return _write_back(ops, (P, M, V), out, flag)

    sizes = ALL if (decay, ok) == (0.01, None) else SMALL
    return Case(f"adam:decay={decay},ok={ok}", ("adam",), build, call, sizes, ("P", "M", "V"))


def _sgd_case(momentum: float, nesterov: bool, vel: bool, ok: bool | None) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        a = _optimizer_state(size, rng, *(("Vel",) if vel else ()))
        if ok is not None:
            a["ok"] = np.asarray(ok)
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        P, Vel, flag = a["P"], a.get("Vel"), a.get("ok")
        out = ops.sgd(P, a["G"], Vel, lr=0.05, momentum=momentum, nesterov=nesterov,
                      decay=0.001, ok=flag)  # fmt: skip
        return _write_back(ops, (P, Vel), out, flag)

    tag = f"momentum={momentum},nesterov={nesterov},vel={vel},ok={ok}"
    sizes = ALL if (momentum, nesterov, ok) == (0.9, True, None) else SMALL
    return Case(f"sgd:{tag}", ("sgd",), build, call, sizes, ("P", "Vel"))


def _rmsprop_case(centered: bool, momentum: float) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        a = _optimizer_state(size, rng, "A", "Mom", "Mg")
        a["A"] = a["Mg"] ** 2 + rng.random(a["A"].shape)  # A >= Mg^2, as its running means
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        P, A = a["P"], a["A"]
        Mom, Mg = (a["Mom"] if momentum else None), (a["Mg"] if centered else None)
        out = ops.rmsprop(P, a["G"], A, Mom, Mg, lr=0.01, rho=0.9, eps=1e-7,
                          momentum=momentum, decay=0.001)  # fmt: skip
        return _write_back(ops, (P, A, Mom, Mg), out, None)

    tag = f"centered={centered},momentum={momentum}"
    return Case(f"rmsprop:{tag}", ("rmsprop",), build, call, mutates=("P", "A", "Mom", "Mg"))


def _adagrad_case(decay: float) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        a = _optimizer_state(size, rng, "A")
        a["A"] = np.abs(a["A"])
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        P, A = a["P"], a["A"]
        out = ops.adagrad(P, a["G"], A, lr=0.01, eps=1e-7, decay=decay)
        return _write_back(ops, (P, A), out, None)

    return Case(f"adagrad:decay={decay}", ("adagrad",), build, call, mutates=("P", "A"))


def _optimizer_cases() -> list[Case]:
    return [
        *(_adam_case(decay, ok) for decay in (0.0, 0.01) for ok in (None, True, False)),
        *(
            _sgd_case(m, nest, vel, ok)
            for m, nest, vel in [
                (0.0, False, False),
                (0.0, False, True),
                (0.9, False, True),
                (0.9, True, True),
            ]
            for ok in (None, True, False)
        ),
        *(_rmsprop_case(c, m) for c in (False, True) for m in (0.0, 0.9)),
        _adagrad_case(0.0),
        _adagrad_case(0.01),
    ]


def _unscale_case(finite: bool) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        G = rng.standard_normal(flat_size(size)) * 2.0**12
        if not finite:
            _edge(G, [np.nan, np.inf, -np.inf, 0.0, 1e4])
        return {"G": G, "scale": np.asarray(2.0**12 * 3.0)}  # not a power of two: inv rounds

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        # the state is float32 and int32 whatever the gradients' dtype, as the optimizer keeps it
        scale = ops.xp.astype(a["scale"], ops.dtype("float32"))
        found = ops.zeros((), "int32")
        ops.unscale_check(a["G"], scale, found)
        return a["G"], found

    return Case(f"unscale_check:finite={finite}", ("unscale_check",), build, call,
                mutates=("G",))  # fmt: skip


def _update_scale_case(found: int, counter: int) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        return {"scale": np.asarray(3.0 * 2.0**10)}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        scale = ops.xp.astype(a["scale"], ops.dtype("float32"))
        state = [ops.full((), v, "int32") for v in (counter, found)]
        ok = ops.full((), not found, "bool")
        ops.update_scale(scale, *state, ok, growth=2.0, backoff=0.25, interval=3)
        return (scale, *state, ok)

    return Case(f"update_scale:found={found},counter={counter}", ("update_scale",), build,
                call, ("above",))  # fmt: skip


def _loss_scale_cases() -> list[Case]:
    return [_unscale_case(True), _unscale_case(False),
            *(_update_scale_case(f, c) for f in (0, 1) for c in (0, 1, 2))]  # fmt: skip


def all_cases() -> list[Case]:
    cases = [
        *(_activation_case(name, kw) for name, kw in ACTIVATION_SPECS),
        *_dense_cases(),
        *(_gemm_case(t1, t2, False) for t1 in (False, True) for t2 in (False, True)),
        _gemm_case(True, False, True),
        _sum_to_shape_case((), lambda O: (O,)),
        _sum_to_shape_case((), lambda O: (1, O)),
        _sum_to_shape_case((2,), lambda O: (O,)),
        _sum_to_shape_case((2,), lambda O: (2, 1, O)),
        *_plumbing_cases(),
        *_loss_cases(),
        *(
            _norm_case(op, lead)
            for op in ("batchnorm", "batchnorm_inference", "layernorm")
            for lead in (0, 1)
        ),
        *_optimizer_cases(),
        *_loss_scale_cases(),
    ]
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "two parity cases share a name"
    return cases


CASES = all_cases()
