"""The CUDA kernels of ``kernels/``: sources, instantiation lists, launchers.

Each ``.cu`` file is one ``cupy.RawModule`` whose template instantiations are
listed once, in :data:`INSTANTIATIONS`; NVRTC compiles a module lazily at its
first launch and CuPy keeps the result in its on-disk cache. Launchers check
dtype, shape and contiguity, allocate the outputs and launch; they hold no
per-dtype code: the instantiation is picked by name, ``f"{kernel}<{CTYPE[dtype]}>"``.

Launches go through a *runner* (``xp`` to allocate with, ``launch`` to run), so
the same launchers drive the GPU through CuPy, or, in the tests, the very same
kernels compiled for the host by g++ over NumPy arrays.

Example:
    >>> from gpunet.backend import _kernels
    >>> _kernels.INSTANTIATIONS["optimizers.cu"][:2]
    ('gpunet_adam<__half>', 'gpunet_adam<float>')
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy

from gpunet.backend import _compat
from gpunet.backend._optim_ops import _sgd_coefficients

# a wheel ships the sources as gpunet/kernels/, a checkout has <repo>/kernels/
_HERE = Path(__file__).resolve()
_CANDIDATES = (_HERE.parents[1] / "kernels", _HERE.parents[2] / "kernels")
KERNEL_DIR = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[-1])

CTYPE = {"float16": "__half", "float32": "float", "float64": "double", "bfloat16": "__nv_bfloat16"}
LABEL_CTYPE = {"int32": "int", "int64": "long long"}
# (activation, approximate) -> functor of kernels/activations.cuh
FUNCTOR = {
    "linear": "Linear", "relu": "Relu", "leaky_relu": "LeakyRelu", "sigmoid": "Sigmoid",
    "tanh": "Tanh", "gelu": "Gelu", "gelu_tanh": "GeluTanh", "swish": "Swish",
}  # fmt: skip
NEEDS_X = frozenset({"Gelu", "GeluTanh", "Swish"})  # their backward reads the input
_T = tuple(CTYPE.values())
_ACTS = tuple(FUNCTOR.values())

INSTANTIATIONS: dict[str, tuple[str, ...]] = {
    "fused.cu": (
        *(f"gpunet_bias_act<{t}, gpunet::{a}>" for t in _T for a in _ACTS),
        *(f"gpunet_backprop_act<{t}, gpunet::{a}>" for t in _T for a in _ACTS if a != "Linear"),
        *(f"gpunet_softmax_xent<{t}>" for t in _T),
        *(f"gpunet_sparse_softmax_xent<{t}, {i}>" for t in _T for i in LABEL_CTYPE.values()),
        *(f"gpunet_sigmoid_bce<{t}>" for t in _T),
    ),
    "optimizers.cu": (
        *(f"gpunet_adam<{t}>" for t in _T),
        *(f"gpunet_sgd<{t}>" for t in _T),
    ),
    "pool.cu": tuple(  # launched by gpunet/backend/_pool_kernels.py
        f"gpunet_{k}<{t}>"
        for k in ("max_pool2d", "backprop_max_pool2d", "avg_pool2d", "backprop_avg_pool2d")
        for t in _T
    ),
    "conv.cu": (
        *(f"gpunet_im2col<{t}>" for t in _T),
        *(f"gpunet_col2im<{t}>" for t in _T),
    ),
    "rnn.cu": tuple(
        f"gpunet_{k}<{t}>"
        for k in ("lstm_step", "lstm_backward", "gru_step", "gru_backward")
        for t in _T
    ),
    "attention.cu": (
        *(f"gpunet_attn_softmax<{t}>" for t in _T),
        *(f"gpunet_attn_softmax_bwd<{t}>" for t in _T),
        *(f"gpunet_attn_{k}<{t}>" for k in ("fwd", "bwd_dq", "bwd_dkv") for t in _T[:2]),
    ),
    "amp.cu": (*(f"gpunet_unscale<{t}>" for t in _T), "gpunet_update_scale<float>"),
    "flash.cu": tuple(  # launched by gpunet/backend/_flash_kernels.py; head sizes <= D
        f"gpunet_flash_{k}<{t}, {d}>"
        for k in ("fwd", "bwd_dq", "bwd_dkv")
        for t in _T
        for d in (32, 64)
    ),
}
OPTIONS: tuple[str, ...] = ()  # on top of CuPy's own (-std=c++17, -ftz=true, includes)
BLOCK = 256  # threads per block of the elementwise kernels
ROW_BLOCK = 128  # threads per block of the one-thread-per-row loss kernels
MAX_BLOCKS = 4096  # grid-stride loops cover the rest; the tests lower it to force striding
_NULL = numpy.uint64(0)  # an absent optional pointer: 8 zero bytes, i.e. nullptr
_i64, _f64 = numpy.int64, numpy.float64

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def source(name: str) -> str:
    """``kernels/<name>`` with its local ``#include "..."`` files inlined once each.

    One self-contained text keys CuPy's disk cache on every header it uses, and
    ``#line`` marks keep compiler messages pointing at the real file and line.
    """
    out: list[str] = []
    _expand(name, out, set())
    return "".join(out)


def _expand(name: str, out: list[str], seen: set[str]) -> None:
    if name in seen:
        return
    seen.add(name)
    out.append(f'#line 1 "{name}"\n')
    for no, line in enumerate((KERNEL_DIR / name).read_text().splitlines(True), 1):
        match = _INCLUDE.match(line)
        if match:
            _expand(match.group(1), out, seen)
            out.append(f'#line {no + 1} "{name}"\n')
        else:
            out.append("\n" if line.strip() == "#pragma once" else line)


# -- runners ---------------------------------------------------------------------------
class Runner(Protocol):
    """Where launches go: ``xp`` allocates the outputs, ``launch`` runs a kernel."""

    xp: Any

    def launch(self, file: str, name: str, grid: int, block: int, args: tuple[Any, ...]) -> None:
        """Run instantiation ``name`` of ``file`` on ``grid`` blocks of ``block`` threads."""


class CupyRunner:
    """Launches on the current CUDA device through cached ``cupy.RawModule`` objects."""

    def __init__(self) -> None:
        cupy = _compat.cupy_or_none()
        if cupy is None:
            raise RuntimeError(f"the CUDA kernels need CuPy: {_compat.INSTALL_HINT}")
        self.xp = cupy

    def launch(self, file: str, name: str, grid: int, block: int, args: tuple[Any, ...]) -> None:
        _function(self.xp.cuda.runtime.getDevice(), file, name)((grid,), (block,), args)


@cache
def module(file: str) -> Any:
    """The ``cupy.RawModule`` of ``file`` (created once; NVRTC runs at first use)."""
    cupy = _compat.cupy_or_none()
    assert cupy is not None, _compat.INSTALL_HINT
    return cupy.RawModule(code=source(file), options=OPTIONS,
                          name_expressions=INSTANTIATIONS[file])  # fmt: skip


@cache
def _function(device: int, file: str, name: str) -> Any:
    # RawModule loads one cubin per device; the handle is cached per device too
    if name not in INSTANTIATIONS[file]:
        raise KeyError(f"{name} is not in INSTANTIATIONS[{file!r}]")
    return module(file).get_function(name)


_runner: list[Runner] = []


def runner() -> Runner:
    """The active runner (CuPy's unless a test installed another)."""
    if not _runner:
        _runner.append(CupyRunner())
    return _runner[-1]


@contextlib.contextmanager
def use_runner(r: Runner) -> Iterator[Runner]:
    """Send launches to ``r`` inside the block (the host-built kernels in the tests)."""
    _runner.append(r)
    try:
        yield r
    finally:
        _runner.remove(r)


def _launch(file: str, name: str, n: int, block: int, args: tuple[Any, ...]) -> None:
    if n > 0:  # an empty grid is an error on the device; there is nothing to do
        grid = min(-(-n // block), MAX_BLOCKS)
        runner().launch(file, name, grid, block, args)


# -- checks ----------------------------------------------------------------------------
def fast_dtype(*arrays: Any) -> str | None:
    """The common dtype name of ``arrays`` (None ignored) if the kernels take it and
    every array is C-contiguous; else None, and the caller takes the generic path."""
    names = {a.dtype.name for a in arrays if a is not None}
    if len(names) != 1 or not all(a is None or a.flags.c_contiguous for a in arrays):
        return None
    name = names.pop()
    return name if name in CTYPE else None


def fused_activation(name: str, kw: dict[str, Any]) -> tuple[str, float] | None:
    """``(functor, alpha)`` of an activation the kernels fuse, else None."""
    kw = dict(kw)
    alpha = float(kw.pop("alpha", 0.2)) if name == "leaky_relu" else 0.0
    if name == "gelu" and kw.pop("approximate", False):
        name = "gelu_tanh"
    if name == "silu":
        name = "swish"
    functor = FUNCTOR.get(name)
    return None if functor is None or kw else (functor, alpha)


def _check(what: str, X: Any, dtype: str, shape: tuple[int, ...] | None = None) -> None:
    # launchers are only reached through a fast-path check; this guards the kernel
    # against an out-of-bounds read if a caller gets that wrong
    if X.dtype.name != dtype or not X.flags.c_contiguous:
        raise ValueError(f"{what}: needs a C-contiguous {dtype} array, got {X.dtype.name}")
    if shape is not None and tuple(X.shape) != shape:
        raise ValueError(f"{what}: expected shape {shape}, got {tuple(X.shape)}")


def _scale_arg(scale: Any, B: int, dtype: str) -> tuple[Any, Any]:
    if isinstance(scale, (int, float)):
        return _NULL, _f64(scale)
    _check("scale", scale, dtype, (B,))
    return scale, _f64(1.0)


# -- launchers -------------------------------------------------------------------------
def bias_act(Z: Any, b: Any, functor: str, alpha: float, *, keep_z: bool) -> tuple[Any, Any]:
    """``Y = act(Z + b)`` in one pass over ``Z``, a fresh GEMM output it may overwrite.

    Returns ``(Y, Zb)``: ``Zb = Z + b`` (written into ``Z``) when ``keep_z``, for the
    activations whose backward reads their input; else None, and ``Y`` takes
    ``Z``'s memory, so the layer allocates nothing beyond its GEMM output.
    """
    dtype = Z.dtype.name
    _check("Z", Z, dtype)
    O = int(Z.shape[-1]) if Z.ndim else 1
    if b is not None:
        _check("b", b, dtype, (O,))
    if functor == "Linear" and b is None:
        return Z, (Z if keep_z else None)
    Y = runner().xp.empty_like(Z) if keep_z else Z
    _bias_act(Y, Z if keep_z else _NULL, Z, b, functor, alpha)
    return Y, (Z if keep_z else None)


def activation(X: Any, functor: str, alpha: float) -> Any:
    """``act(X)`` into a new array (``X`` is left as it is)."""
    _check("X", X, X.dtype.name)
    Y = runner().xp.empty_like(X)
    _bias_act(Y, _NULL, X, None, functor, alpha)
    return Y


def _bias_act(Y: Any, Zs: Any, Z: Any, b: Any, functor: str, alpha: float) -> None:
    O = int(Z.shape[-1]) if Z.ndim else 1
    name = f"gpunet_bias_act<{CTYPE[Z.dtype.name]}, gpunet::{functor}>"
    _launch("fused.cu", name, Z.size, BLOCK,
            (Y, Zs, Z, _NULL if b is None else b, _i64(Z.size), _i64(O), _f64(alpha)))  # fmt: skip


def backprop_act(dY: Any, X: Any, Y: Any, functor: str, alpha: float) -> Any:
    """``dX = dY * act'(...)`` in one pass, reading ``X`` or ``Y`` as the functor needs."""
    dtype = dY.dtype.name
    _check("dY", dY, dtype)
    saved = X if functor in NEEDS_X else Y
    _check("X" if functor in NEEDS_X else "Y", saved, dtype, tuple(dY.shape))
    dX = runner().xp.empty_like(dY)
    args = (dX, dY, saved if functor in NEEDS_X else _NULL,
            _NULL if functor in NEEDS_X else saved, _i64(dY.size), _f64(alpha))  # fmt: skip
    _launch("fused.cu", f"gpunet_backprop_act<{CTYPE[dtype]}, gpunet::{functor}>",
            dY.size, BLOCK, args)  # fmt: skip
    return dX


def _rows(Z: Any) -> tuple[str, int, int]:
    dtype = Z.dtype.name
    _check("Z", Z, dtype)
    if Z.ndim != 2:
        raise ValueError(f"Z: expected (batch, classes) logits, got shape {tuple(Z.shape)}")
    return dtype, int(Z.shape[0]), int(Z.shape[1])


def softmax_xent(Z: Any, T: Any, scale: Any, smoothing: float) -> tuple[Any, Any]:
    """Per-row loss ``L`` (B,) and ``dZ = (softmax(Z) - T_smoothed) * scale``, one launch."""
    dtype, B, C = _rows(Z)
    _check("T", T, dtype, (B, C))
    s_arr, s = _scale_arg(scale, B, dtype)
    xp = runner().xp
    L, dZ = xp.empty((B,), dtype=Z.dtype), xp.empty_like(Z)
    _launch("fused.cu", f"gpunet_softmax_xent<{CTYPE[dtype]}>", B, ROW_BLOCK,
            (L, dZ, Z, T, s_arr, _i64(B), _i64(C), s, _f64(smoothing)))  # fmt: skip
    return L, dZ


def sparse_softmax_xent(Z: Any, labels: Any, scale: Any, smoothing: float) -> tuple[Any, Any]:
    """As :func:`softmax_xent` with integer ``labels`` (B,) of int32 or int64."""
    dtype, B, C = _rows(Z)
    _check("labels", labels, labels.dtype.name, (B,))
    s_arr, s = _scale_arg(scale, B, dtype)
    xp = runner().xp
    L, dZ = xp.empty((B,), dtype=Z.dtype), xp.empty_like(Z)
    name = f"gpunet_sparse_softmax_xent<{CTYPE[dtype]}, {LABEL_CTYPE[labels.dtype.name]}>"
    _launch("fused.cu", name, B, ROW_BLOCK,
            (L, dZ, Z, labels, s_arr, _i64(B), _i64(C), s, _f64(smoothing)))  # fmt: skip
    return L, dZ


def sigmoid_bce(Z: Any, T: Any, scale: Any, smoothing: float) -> tuple[Any, Any]:
    """Per-row mean binary cross-entropy of ``sigmoid(Z)`` and its gradient, one launch."""
    dtype, B, K = _rows(Z)
    _check("T", T, dtype, (B, K))
    s_arr, s = _scale_arg(scale, B, dtype)
    xp = runner().xp
    L, dZ = xp.empty((B,), dtype=Z.dtype), xp.empty_like(Z)
    _launch("fused.cu", f"gpunet_sigmoid_bce<{CTYPE[dtype]}>", B, ROW_BLOCK,
            (L, dZ, Z, T, s_arr, _i64(B), _i64(K), s, _f64(smoothing)))  # fmt: skip
    return L, dZ


def adam(P: Any, G: Any, M: Any, V: Any, *, lr_t: float, beta1: float, beta2: float,
         eps: float, decay: float, ok: Any = None, step: Any = None) -> None:  # fmt: skip
    """One Adam/AdamW step updating ``P``, ``M`` and ``V`` in place; a false
    device flag ``ok`` skips it without a host read. ``step`` (``AdamStep``): the
    kernel forms the bias corrections of step ``t - skipped`` itself."""
    dtype = P.dtype.name
    for what, X in (("P", P), ("G", G), ("M", M), ("V", V)):
        _check(what, X, dtype, tuple(P.shape))
    if step is not None:
        _check("skipped", step.skipped, "int32", ())
    dev = (_NULL, _f64(0.0), _i64(0), numpy.int32(0)) if step is None else (
        step.skipped, _f64(step.lr), _i64(step.t), numpy.int32(step.scale_eps))  # fmt: skip
    _launch("optimizers.cu", f"gpunet_adam<{CTYPE[dtype]}>", P.size, BLOCK,
            (P, M, V, G, _i64(P.size), _f64(lr_t), _f64(beta1), _f64(beta2), _f64(eps),
             _f64(decay), _NULL if ok is None else ok, *dev))  # fmt: skip


def sgd(P: Any, G: Any, Vel: Any, *, lr: float, momentum: float, nesterov: bool,
        decay: float, dampening: float = 0.0, lr_in_buffer: bool = True,
        ok: Any = None) -> None:  # fmt: skip
    """One SGD step updating ``P`` (and the velocity ``Vel`` when given) in place;
    ``dampening``/``lr_in_buffer`` pick the buffer's form as ``OptimizerOps.sgd``."""
    a, s = _sgd_coefficients(lr, dampening, lr_in_buffer)
    dtype = P.dtype.name
    for what, X in (("P", P), ("G", G), ("Vel", Vel)):
        if X is not None:
            _check(what, X, dtype, tuple(P.shape))
    _launch("optimizers.cu", f"gpunet_sgd<{CTYPE[dtype]}>", P.size, BLOCK,
            (P, _NULL if Vel is None else Vel, G, _i64(P.size), _f64(lr), _f64(momentum),
             _f64(a), _f64(s), _f64(decay), numpy.int32(nesterov),
             _NULL if ok is None else ok))  # fmt: skip


# -- convolution: im2col / col2im (kernels/conv.cu) ---------------------------------------
def _conv_geo(shape: tuple[int, ...], k: tuple[int, int], geo: Any) -> tuple[Any, ...]:
    """conv.cuh's ConvGeo from an input shape (N, H, W, C) and ``_conv_ops``' geometry."""
    (sh, sw), ((t, _), (le, _)), (dh, dw), _, Ho, Wo = geo
    return tuple(_i64(v) for v in (*shape, Ho, Wo, *k, sh, sw, t, le, dh, dw))


def im2col(X: Any, k: tuple[int, int], geo: Any) -> Any:
    """Columns (N, Ho, Wo, kh*kw, C) of the NHWC input ``X``, zeros in the padding."""
    dtype = X.dtype.name
    _check("X", X, dtype)
    n, _, _, C = X.shape
    Ho, Wo = geo[4], geo[5]
    cols = runner().xp.empty((n, Ho, Wo, k[0] * k[1], C), dtype=X.dtype)
    _launch("conv.cu", f"gpunet_im2col<{CTYPE[dtype]}>", cols.size, BLOCK,
            (cols, X, *_conv_geo(tuple(X.shape), k, geo)))  # fmt: skip
    return cols


def col2im(dcols: Any, shape: tuple[int, ...], k: tuple[int, int], geo: Any) -> Any:
    """The input gradient (``shape``, NHWC) of columns ``dcols`` (N, Ho, Wo, kh*kw, C):
    each element sums the entries that read it (a gather: no atomics)."""
    dtype = dcols.dtype.name
    n, _, _, C = shape
    _check("dcols", dcols, dtype, (n, geo[4], geo[5], k[0] * k[1], C))
    dX = runner().xp.empty(shape, dtype=dcols.dtype)
    _launch("conv.cu", f"gpunet_col2im<{CTYPE[dtype]}>", dX.size, BLOCK,
            (dX, dcols, *_conv_geo(tuple(shape), k, geo)))  # fmt: skip
    return dX


# -- compiling without a device ------------------------------------------------------------
class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel source; the message carries its log."""


@dataclass(frozen=True)
class CompileResult:
    file: str
    arch: str
    lowered: dict[str, str]  # name expression -> mangled symbol in the cubin
    cubin_bytes: int
    log: str


def nvrtc_options(arch: str) -> tuple[str, ...]:
    """The options CuPy's RawModule compiles with, for ``sm_<arch>`` (no device query)."""
    cupy = _compat.cupy_or_none()
    assert cupy is not None, _compat.INSTALL_HINT
    base = tuple(cupy._core.core.assemble_cupy_compiler_options(OPTIONS))
    return (*base, "-ftz=true", "--device-as-default-execution-space", f"-arch=sm_{arch}")


def compile_offline(file: str, arch: str, extra: tuple[str, ...] = ()) -> CompileResult:
    """Compile every instantiation of ``file`` to a ``sm_<arch>`` cubin with NVRTC.

    Needs CuPy and the NVRTC library but no GPU or driver; ``sm_XX`` (not
    ``compute_XX``) also runs ptxas, so register and shared-memory limits are checked;
    ``extra`` adds options (``--ptxas-options=-v`` puts register use in the log).

    Raises:
        KernelCompileError: with NVRTC's log, when a source or instantiation fails.
    """
    names, text = INSTANTIATIONS[file], source(file)
    key = (file, arch, extra, names, text)
    if key not in _COMPILED:  # the same program compiles to the same cubin: once a process
        _COMPILED[key] = _compile(file, arch, extra, names, text)
    return _COMPILED[key]


_COMPILED: dict[tuple[Any, ...], CompileResult] = {}


def _compile(
    file: str, arch: str, extra: tuple[str, ...], names: tuple[str, ...], text: str
) -> CompileResult:
    cupy = _compat.cupy_or_none()
    assert cupy is not None, _compat.INSTALL_HINT
    nvrtc = cupy.cuda.nvrtc
    prog = nvrtc.createProgram(text, file, [], [])
    try:
        for ne in names:
            nvrtc.addNameExpression(prog, ne)
        try:
            nvrtc.compileProgram(prog, [*nvrtc_options(arch), *extra])
        except nvrtc.NVRTCError as exc:
            raise KernelCompileError(
                f"{file} sm_{arch}: {exc}\n{nvrtc.getProgramLog(prog)}"
            ) from None
        lowered = {ne: nvrtc.getLoweredName(prog, ne) for ne in names}
        cubin = nvrtc.getCUBIN(prog)
        return CompileResult(file, arch, lowered, len(cubin), nvrtc.getProgramLog(prog))
    finally:
        nvrtc.destroyProgram(prog)


def precompile() -> int:
    """Compile and load every module on the current GPU (fills CuPy's disk cache);
    returns the number of instantiations."""
    for file in INSTANTIATIONS:
        module(file).compile()
    return sum(len(names) for names in INSTANTIATIONS.values())
