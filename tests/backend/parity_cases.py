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
from gpunet.backend.ops import Ops

Inputs = dict[str, Any]
REF = Ops()  # the pooling cases size dY from the reference's output
_REF_CONV = Ops()  # output shapes of the conv cases, for their dY


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
    dtypes: tuple[str, ...] = ("float32", "float64")  # the dtypes the case is run in


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


def _bias_activation_case(name: str, kw: dict[str, Any], bias: bool, need_db: bool,
                          sizes: tuple[str, ...]) -> Case:  # fmt: skip
    """``bias_activation`` over a GEMM output it owns (in place) and its backward."""

    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, _, O = dense_shape(size)
        a: Inputs = {"Z": _edge(rng.standard_normal((B, O))), "dY": rng.standard_normal((B, O))}
        if bias:
            a["b"] = rng.standard_normal(O)
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        Y, Zb = ops.bias_activation(a["Z"], a.get("b"), name, **kw)
        assert (Zb is not None) == (name in NEEDS_X)
        dZ, db = ops.backprop_bias_activation(a["dY"], Zb, Y, name, need_db=need_db, **kw)
        assert (db is None) != need_db
        return Y, dZ, db

    tag = f"{_spec_id(name, kw)}{'' if bias else ',no_bias'}{'' if need_db else ',no_db'}"
    return Case(f"bias_activation:{tag}", ("bias_activation", "backprop_bias_activation"),
                build, call, sizes=sizes, mutates=("Z",))  # fmt: skip


def _bias_activation_cases() -> list[Case]:
    cases = [
        _bias_activation_case(name, kw, True, True, ALL if name in ("relu", "linear") else SMALL)
        for name, kw in ACTIVATION_SPECS
        if name not in ("softmax", "log_softmax")
    ]
    for name in ("linear", "relu", "gelu"):
        cases += [_bias_activation_case(name, {}, False, True, SMALL),
                  _bias_activation_case(name, {}, True, False, SMALL)]  # fmt: skip
    return cases


# -- linear algebra and plumbing ----------------------------------------------------------
def _gemm_case(
    trans1: bool, trans2: bool, batched: bool, out: bool = False, pool: bool = False
) -> Case:
    """``out``: into a given array (a weight's gradient slot), which is returned;
    ``pool``: split over the host pool (2 threads) from any size."""

    def build(size: str, rng: np.random.Generator) -> Inputs:
        M, K, N = dense_shape(size)
        lead = (2,) if batched else ()
        A = rng.standard_normal((*lead, *((K, M) if trans1 else (M, K))))
        B = rng.standard_normal((*lead, *((N, K) if trans2 else (K, N))))
        return {"A": A, "B": B, "out": np.full((*lead, M, N), 7.0)} if out else {"A": A, "B": B}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        host = getattr(ops, "host", None) if pool else None
        threads = host.threads if host is not None else 0
        if host is not None:
            host.set_threads(2)
            ops.pool_gemm_from = 1
        try:
            Y = ops.gemm(a["A"], a["B"], trans1=trans1, trans2=trans2, out=a.get("out"))
        finally:
            if host is not None:
                host.set_threads(threads)
                del ops.pool_gemm_from
        assert not out or Y is a["out"], "gemm(out=) returns out"
        return (Y,)

    tag = (f"trans1={trans1},trans2={trans2}{',batched' if batched else ''}"
           f"{',out' if out else ''}{',pool' if pool else ''}")  # fmt: skip
    return Case(f"gemm:{tag}", ("gemm",), build, call, mutates=("out",) if out else ())


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


def _squared_error_case() -> Case:
    """``mse_loss``'s whole-array op: sums over the chunks and threads of the kernel's
    split (the "large" size), an exact zero error, inf and NaN propagated."""

    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, K = loss_shape(size, 4)
        P, T = rng.standard_normal((B, K)) * 2, rng.standard_normal((B, K))
        if P.size >= 3:
            T.reshape(-1)[0] = P.reshape(-1)[0]
        if size == "odd":  # the other sizes keep the sum finite, to check its rounding
            P.reshape(-1)[1:3] = [np.inf, np.nan]
        return {"P": P, "T": T}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        return ops.squared_error(a["P"], a["T"], scale=0.37)

    return Case("squared_error", ("squared_error",), build, call, sizes=ALL)


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
        _squared_error_case(),
        _regression_case("mean_absolute_error", {}, False, False),
        _regression_case("huber", {"delta": 1.0}, False, False),
        _regression_case("poisson", eps, True, False),
    ]


# -- normalization ------------------------------------------------------------------------
def _norm_case(op: str, lead: int, residual: bool = False) -> Case:
    """``residual``: layer norm of ``X + R`` (a post-norm block's sum)."""

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
        if residual:
            a["R"] = rng.standard_normal(X.shape)
            if B >= 3 and F >= 2:
                a["R"][..., 1, :] = 0.0  # the constant row stays constant in X + R
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        args = (a["X"], a["gamma"], a["beta"])
        if op == "batchnorm_inference":
            args = (*args, a["mean"], a["var"])
        kw = {"residual": a["R"]} if residual else {}
        out = getattr(ops, op)(*args, epsilon=1e-3, **kw)
        grads = getattr(ops, "backprop_" + op)(a["dY"], out[1], out[2], a["gamma"])
        return (*out, *grads)

    sizes = SMALL if op != "batchnorm" else SMALL[1:]  # no mean over an empty batch
    tol = ROWWISE_SUM_TOL if op.startswith("batchnorm") else None
    name = f"{op}:{lead + 2}d{':residual' if residual else ''}"
    return Case(name, (op, "backprop_" + op), build, call, sizes, tol=tol)


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


# -- pooling ------------------------------------------------------------------------------
def pool_shape(size: str, pool: tuple[int, int], padding: str) -> tuple[int, int, int, int]:
    """NHWC inputs: "above" has more outputs than the lowered grid's threads, "large"
    more inputs than the host pool's parallel threshold."""
    one = (1, 1, 1, 1) if padding == "same" else (1, *pool, 1)
    return {"0": (0, 4, 5, 3), "1": one, "odd": (3, 7, 5, 3), "above": (5, 15, 13, 8),
            "large": (64, 32, 32, LARGE // (32 * 32 * 64) + 1)}[size]  # fmt: skip


def _pool_case(kind: str, pool: tuple[int, int], strides: tuple[int, int], padding: str,
               sizes: tuple[str, ...] = SMALL) -> Case:  # fmt: skip
    def build(size: str, rng: np.random.Generator) -> Inputs:
        X = np.round(rng.standard_normal(pool_shape(size, pool, padding)) * 2)  # many ties
        if X.shape[0] and X.shape[1] >= pool[0] and X.shape[2] >= pool[1] and X.size > 40:
            X[0, : pool[0], : pool[1], 0] = -np.inf  # a window of -inf only
            X[0, -1, -1, :3] = [np.nan, np.inf, -np.inf]
            X[-1, 1, 1, -1] = np.nan  # NaN among ties: the first NaN is the max
            X[-1, 2, :3, 0] = np.nan  # several in a window: the first is the argmax
        fwd = getattr(REF, f"{kind}_pool2d")
        with np.errstate(all="ignore"):
            Y = fwd(X, pool=pool, strides=strides, padding=padding)[0]
        dY = rng.standard_normal(Y.shape)
        if dY.size > 3:
            dY.reshape(-1)[1] = np.inf  # reaches the argmax only (max), every cell (avg)
        return {"X": X, "dY": dY}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        Y, saved = getattr(ops, f"{kind}_pool2d")(a["X"], pool=pool, strides=strides,
                                                  padding=padding)  # fmt: skip
        dX = getattr(ops, f"backprop_{kind}_pool2d")(a["dY"], saved)
        return (Y, saved[0], dX) if kind == "max" else (Y, dX)  # the int32 argmax, exactly

    op = f"{kind}_pool2d"
    tag = f"{pool[0]}x{pool[1]},s={strides[0]}x{strides[1]},{padding}"
    return Case(f"{op}:{tag}", (op, "backprop_" + op), build, call, sizes)


def _pool_cases() -> list[Case]:
    return [
        _pool_case("max", (2, 2), (2, 2), "valid", ALL),
        _pool_case("max", (3, 3), (2, 2), "same"),
        _pool_case("max", (3, 2), (1, 2), "valid"),  # overlapping windows
        _pool_case("max", (2, 3), (3, 1), "same"),
        _pool_case("max", (1, 1), (2, 2), "valid"),  # stride > pool: rows no window reads
        _pool_case("max", (1, 3), (1, 2), "same"),  # a 1-D pool (height 1)
        _pool_case("avg", (2, 2), (2, 2), "valid", ALL),
        _pool_case("avg", (3, 3), (2, 2), "same"),
        _pool_case("avg", (3, 2), (1, 2), "same"),
        _pool_case("avg", (2, 2), (3, 3), "valid"),
    ]


# -- convolution --------------------------------------------------------------------------
def conv_shape(size: str) -> tuple[int, int, int, int, int]:
    """(batch, height, width, channels, filters): "above" passes HOST_MIN output elements
    and the lowered grid, "large" the pool's threshold in im2col/col2im."""
    return {
        "0": (0, 5, 4, 2, 4),
        "1": (1, 3, 3, 2, 2),
        "odd": (3, 7, 5, 2, 4),
        "above": (6, 12, 12, 4, 16),
        "large": (32, 32, 33, 32, 16),  # 2**20 inputs: the suite's "large" rule
    }[size]


@dataclass(frozen=True)
class ConvGeo:
    kernel: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: Any = "valid"
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True
    need_dX: bool = True

    def tag(self) -> str:
        pad = self.padding if isinstance(self.padding, str) else "x".join(map(str, self.padding))
        k, s, d = ("x".join(map(str, v)) for v in (self.kernel, self.strides, self.dilation))
        off = "".join(f",no_{k}" for k in ("bias", "need_dX") if not getattr(self, k))
        return f"k={k},s={s},pad={pad},d={d},g={self.groups}{off}"


def _conv_case(geo: ConvGeo, act: str, act_kw: dict[str, Any], sizes: tuple[str, ...]) -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        N, H, Wd, C, F = conv_shape(size)
        C, F = C * geo.groups, F * geo.groups
        kh, kw = geo.kernel
        X = rng.standard_normal((N, H, Wd, C))
        W = rng.standard_normal((kh, kw, C // geo.groups, F)) / np.sqrt(kh * kw * C)
        a: Inputs = {"X": X, "W": W}
        if geo.bias:
            a["b"] = rng.standard_normal(F) * 0.5
        Y, _ = _REF_CONV.conv2d(X, W, None, **_conv_kw(geo, "linear", {}))
        a["dY"] = rng.standard_normal(Y.shape)
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        Y, saved = ops.conv2d(a["X"], a["W"], a.get("b"), **_conv_kw(geo, act, act_kw))
        dX, dW, db = ops.backprop_conv2d(a["dY"], saved, need_dX=geo.need_dX, need_db=geo.bias)
        assert (dX is None) != geo.need_dX and (db is None) != geo.bias
        return Y, dX, dW, db

    name = f"conv2d:{geo.tag()},{_spec_id(act, act_kw)}"
    return Case(name, ("conv2d", "backprop_conv2d"), build, call, sizes=sizes)


def _conv_kw(geo: ConvGeo, act: str, act_kw: dict[str, Any]) -> dict[str, Any]:
    return {"strides": geo.strides, "padding": geo.padding, "dilation": geo.dilation,
            "groups": geo.groups, "activation": act, "act_kw": act_kw}  # fmt: skip


def _conv1d_case() -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        N, H, Wd, C, F = conv_shape(size)
        X, W = rng.standard_normal((N, H * Wd, C)), rng.standard_normal((3, C, F)) / 3
        return {"X": X, "W": W, "b": rng.standard_normal(F), "dY": rng.standard_normal(
            (N, -(-H * Wd // 2), F))}  # fmt: skip

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        Y, saved = ops.conv1d(a["X"], a["W"], a["b"], strides=2, padding="same",
                              activation="tanh")  # fmt: skip
        return (Y, *ops.backprop_conv1d(a["dY"], saved))

    ops = ("conv1d", "backprop_conv1d", "conv2d", "backprop_conv2d")
    return Case("conv1d:k=3,s=2,pad=same,tanh", ops, build, call)


def _conv_transpose_case() -> Case:
    def build(size: str, rng: np.random.Generator) -> Inputs:
        N, H, Wd, C, F = conv_shape(size)
        H, Wd = (H + 1) // 2, (Wd + 1) // 2  # upsampled by the stride 2
        X, W = rng.standard_normal((N, H, Wd, C)), rng.standard_normal((3, 3, F, C)) / 3
        dY = rng.standard_normal((N, 2 * H, 2 * Wd, F))
        return {"X": X, "W": W, "b": rng.standard_normal(F), "dY": dY}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        out = tuple(a["dY"].shape[1:3])
        Y, saved = ops.conv2d_transpose(a["X"], a["W"], a["b"], out, (0, 0), strides=(2, 2))
        return (Y, *ops.backprop_conv2d_transpose(a["dY"], saved))

    # its backward runs backprop_conv2d (the weight gradient) and im2col/col2im
    ops = ("conv2d_transpose", "backprop_conv2d_transpose", "backprop_conv2d")
    return Case("conv2d_transpose:k=3x3,s=2x2", ops, build, call)


def _conv_cases() -> list[Case]:
    return [
        _conv_case(ConvGeo(), "relu", {}, ALL),  # LeNet's layers, at every size
        _conv_case(ConvGeo((3, 2), (2, 2), "same", groups=2), "gelu", {}, SMALL),
        _conv_case(ConvGeo(padding="same", dilation=(2, 2), bias=False), "linear", {}, SMALL),
        _conv_case(ConvGeo((1, 1)), "swish", {}, SMALL),  # a plain GEMM
        _conv_case(ConvGeo((1, 1), (2, 1), groups=2), "elu", {}, SMALL),  # no kernel for elu
        _conv_case(
            ConvGeo((3, 3), (3, 3), ((2, 1), (0, 2)), need_dX=False),
            "leaky_relu",
            {"alpha": 0.3},
            SMALL,
        ),
        _conv1d_case(),
        _conv_transpose_case(),
    ]


# -- embedding ------------------------------------------------------------------------------
def _embedding_case(into_out: bool, index: str) -> Case:
    """The segment sum of rows by id: ids with repeats, unused ids and the last id."""

    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, T = {"0": (0, 3), "1": (1, 1), "odd": (7, 3), "above": (FUSED_ROWS // 3 + 1, 6)}[size]
        V = 37
        ids = rng.integers(0, V - 5, size=(B, T)).astype(index)
        if ids.size:
            ids.flat[0] = V - 1
        return {"ids": ids, "dY": rng.standard_normal((B, T, 4)), "out": np.zeros((V, 4))}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        out = a["out"] if into_out else None
        dW = ops.embedding_backward(a["ids"], a["dY"], 37, out=out)
        assert out is None or dW is out, "dW was not written into out"
        return (dW,)

    name = f"embedding_backward:{index}{',out' if into_out else ''}"
    return Case(name, ("embedding_backward",), build, call, mutates=("out",))


# -- recurrent cells -------------------------------------------------------------------------
def _cell_shape(size: str) -> tuple[int, int]:
    """(batch, units): "above" passes the lowered grid of the fused-kernel tests."""
    return {"0": (0, 3), "1": (1, 1), "odd": (7, 3), "above": (FUSED_THREADS // 13 + 1, 13)}[size]


def _cell_case(cell: str, masked: bool, variant: bool) -> Case:
    """LSTM (``variant``: a carried dc) or GRU (``variant``: reset_after) steps."""
    G = 4 if cell == "lstm" else 3

    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, U = _cell_shape(size)
        a: Inputs = {name: rng.standard_normal((B, U)) for name in ("c", "h", "dh", "dc")}
        # saturated gates at +-1e4: exactly 0 or 1 in every dtype (stable sigmoid)
        a["Z"] = _edge(rng.standard_normal((B, G * U)), [0.0, 1e4, -1e4])
        a["Zh"] = rng.standard_normal((B, G * U))
        a["m"] = (rng.random((B, 1)) > 0.2).astype(np.float64)
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        m = a["m"] if masked else None
        if cell == "lstm":
            h, c = ops.lstm_step(a["Z"], a["c"], a["h"], m)
            grads = ops.backprop_lstm_step(a["dh"], a["dc"] if variant else None, a["Z"], a["c"], m)
            return (h, c, *grads)
        Zh = a["Zh"] if variant else None
        h = ops.gru_step(a["Z"], Zh, a["h"], m)
        return (h, *ops.backprop_gru_step(a["dh"], a["Z"], Zh, a["h"], m))

    flag = ("dc" if cell == "lstm" else "reset_after") if variant else "plain"
    ops = (f"{cell}_step", f"backprop_{cell}_step")
    return Case(f"{cell}_step:{flag}{',mask' if masked else ''}", ops, build, call)


def _loop_case(cell: str, masked: bool) -> Case:
    """A whole recurrence (``layers._recurrence.run``), forward and backward: the host
    backend's time loops (``ops.recurrent_loops``) against the reference's steps."""
    from gpunet.layers import _recurrence

    G, T = (4 if cell == "lstm" else 3), 3

    def build(size: str, rng: np.random.Generator) -> Inputs:
        B, U = _cell_shape(size)
        a: Inputs = {"X": rng.standard_normal((B, T, 2)), "dY": rng.standard_normal((B, T, U))}
        a["W"], a["U"] = rng.standard_normal((2, G * U)), rng.standard_normal((U, G * U)) * 0.5
        a["b"] = rng.standard_normal((2, G * U) if cell == "gru" else (G * U,))
        a["mask"] = rng.random((B, T)) > 0.3
        return a

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        c = _recurrence.Cell(cell, a["U"].shape[0], return_sequences=True)
        mask = a["mask"] if masked else None
        Y, states, back = _recurrence.run(ops, c, a["X"], a["W"], a["U"], a["b"], None, mask)
        dX, dW, dU, db, d0 = back(a["dY"], [], True)
        return (Y, *states, dX, dW, dU, db, *d0)

    return Case(f"{cell}_loop{',mask' if masked else ''}", (f"{cell}_step",), build, call)


# -- attention ------------------------------------------------------------------------
# the backward's row sums cancel (dS = P * (dP - sum(P * dP))), and the host and tiled
# kernels sum in another order than NumPy's pairwise sum: up to 3e-5 in float32
ATTENTION_TOL = {"float32": 6e-5, "float64": 1e-11}


def _attention_shape(size: str) -> tuple[int, int, int, int]:
    """(B, H, T, d): "above" passes HOST_MIN score elements and the lowered grid's rows."""
    return {"0": (0, 2, 3, 4), "1": (1, 1, 1, 1), "odd": (1, 3, 5, 7), "above": (2, 2, 97, 8)}[size]


def _attention_inputs(size: str, rng: np.random.Generator, mask: str, wide: bool = False) -> Inputs:
    B, H, T, d = _attention_shape(size)
    d = d * 5 if wide else d  # "tiled_wide": over the tiled kernels' first bound (32)
    a: Inputs = {k: rng.standard_normal((B, H, T, d)) for k in ("Q", "K", "V", "dO")}
    a["dP"] = rng.standard_normal((B, H, T, T))
    if mask == "padding":
        a["mask"] = rng.random((B, 1, 1, T)) > 0.3
    elif mask == "full":
        a["mask"] = rng.random((B, H, T, T)) > 0.3
        if T > 1:
            a["mask"][..., 0, :] = False  # a query row with every key masked
    return a


def _attention_case(path: str, mask: str, causal: bool) -> Case:
    """The masked softmax alone, or attention forward + backward on one of its paths:
    the whole scores, blocks of query rows, or the GPU's streaming kernels."""

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        m, kw = a.get("mask"), {"scale": 0.6, "causal": causal}
        if path == "softmax":
            S = a["dP"] * 2.0
            P = ops.attention_softmax(S, m, **kw)
            return P, ops.backprop_attention_softmax(a["dP"], P, m, **kw)
        knobs = ("attention_whole", "attention_chunk", "attention_stream_from",
                 "attention_flash_from")  # fmt: skip
        saved = {k: getattr(ops, k) for k in knobs if hasattr(ops, k)}
        try:
            if path == "blocked":
                ops.attention_whole, ops.attention_chunk = 0, 32
            if path == "streamed" and "attention_stream_from" in saved:
                ops.attention_stream_from = 1
            if path.startswith("tiled") and "attention_flash_from" in saved:
                ops.attention_flash_from = 1
            O, _, cache = ops.attention(a["Q"], a["K"], a["V"], m, **kw)
            return (O, *ops.backprop_attention(a["dO"], cache))
        finally:
            for k, v in saved.items():
                setattr(ops, k, v)

    ops_ = ("attention_softmax", "backprop_attention_softmax")
    if path != "softmax":
        ops_ = ("attention", "backprop_attention")
    if path == "blocked":
        ops_ = (*ops_, "attention_block", "backprop_attention_block")
    name = f"attention:{path}:{mask}{':causal' if causal else ''}"
    wide = path == "tiled_wide"
    return Case(name, ops_, lambda size, rng: _attention_inputs(size, rng, mask, wide), call,
                tol=ATTENTION_TOL)  # fmt: skip


def _self_attention_case(mask: str, causal: bool, split: bool) -> Case:
    """Attention over one fused projection's heads, forward and backward; ``split``:
    the groups of heads on the host's threads from any size."""

    def build(size: str, rng: np.random.Generator) -> Inputs:
        a = _attention_inputs(size, rng, mask)
        B, H, T, d = a["Q"].shape
        a["Y5"] = rng.standard_normal((B, T, 3, H, d))
        a["dO"] = rng.standard_normal((B, T, H, d))
        return {k: a[k] for k in ("Y5", "dO", "mask") if k in a}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        saved = getattr(ops, "attention_split_from", None)
        if split and saved is not None:
            ops.attention_split_from = 1
        try:
            O, P, cache = ops.self_attention(a["Y5"], a.get("mask"), scale=0.6, causal=causal,
                                             keep_probs=True)  # fmt: skip
            return O, P, ops.backprop_self_attention(a["dO"], cache)
        finally:
            if saved is not None:
                ops.attention_split_from = saved

    name = f"self_attention:{mask}{':causal' if causal else ''}{':split' if split else ''}"
    return Case(name, ("self_attention", "backprop_self_attention"), build, call,
                tol=ATTENTION_TOL)  # fmt: skip


def _attention_cases() -> list[Case]:
    return [
        *(_attention_case(path, mask, causal)
          for path in ("softmax", "whole", "blocked", "streamed", "tiled", "tiled_wide")
          for mask, causal in (("none", False), ("padding", True), ("full", False))),
        *(_self_attention_case(mask, causal, split)
          for mask, causal in (("none", False), ("padding", True), ("full", False))
          for split in (False, True)),
    ]  # fmt: skip


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
                call, ("above",), dtypes=("float32",))  # fmt: skip  # the scale is float32


def _loss_scale_cases() -> list[Case]:
    return [_unscale_case(True), _unscale_case(False),
            *(_update_scale_case(f, c) for f in (0, 1) for c in (0, 1, 2))]  # fmt: skip


# -- GEMMs: xp.matmul, and a mixed policy's low-precision GEMM --------------------------
def _matmul_case(compute: str | None) -> Case:
    shapes = {"0": ((0, 3), (3, 2)), "1": ((1, 1), (1, 1)), "odd": ((3, 5), (5, 7)),
              "above": ((17, 33), (33, 9))}  # fmt: skip

    def build(size: str, rng: np.random.Generator) -> Inputs:
        sa, sb = shapes[size]
        A, B = rng.standard_normal(sa) * 4, rng.standard_normal(sb)
        if size == "above":
            A[0, 3] = 1e5  # past float16's range: inf there, as the GPU's cast gives
        return {"A": A, "B": B}

    def call(ops: Any, a: Inputs) -> tuple[Any, ...]:
        if compute is None:
            return (ops.matmul(a["A"], a["B"]),)
        out = ops.lowp_matmul(a["A"], a["B"], compute)  # float32, holding compute values
        return (ops.xp.astype(out, a["A"].dtype),)

    # one rounding to half at the output; summation orders differ by a half ulp or so
    tol = None if compute is None else {"float32": 2e-3, "float64": 2e-3}
    name, op = (
        ("matmul", "matmul") if compute is None else (f"lowp_matmul:{compute}", "lowp_matmul")
    )
    return Case(name, (op,), build, call, tol=tol)


def all_cases() -> list[Case]:
    cases = [
        *(_activation_case(name, kw) for name, kw in ACTIVATION_SPECS),
        *_dense_cases(),
        *_bias_activation_cases(),
        *(_gemm_case(t1, t2, False) for t1 in (False, True) for t2 in (False, True)),
        _gemm_case(True, False, True),
        *(_gemm_case(t1, False, False, out=True) for t1 in (False, True)),
        *(
            _gemm_case(t1, t2, False, out=o, pool=True)
            for t1, t2, o in ((False, True, False), (True, False, True), (True, True, False))
        ),
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
        _norm_case("layernorm", 0, residual=True),
        *_optimizer_cases(),
        *_pool_cases(),
        *_conv_cases(),
        *(_embedding_case(o, index) for o in (False, True) for index in ("int64", "int32")),
        *(
            _cell_case(c, m, v)
            for c in ("lstm", "gru")
            for m in (False, True)
            for v in (False, True)
        ),
        *_attention_cases(),
        *_loss_scale_cases(),
        *(_loop_case(c, m) for c in ("lstm", "gru") for m in (False, True)),
        *(_matmul_case(c) for c in (None, "float16", "bfloat16")),
    ]
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "two parity cases share a name"
    return cases


CASES = all_cases()
