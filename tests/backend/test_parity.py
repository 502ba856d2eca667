"""One parity suite over every backend: each case of ``parity_cases`` on each backend
and dtype, against the reference ``Ops`` run in float64 on the same (rounded) inputs.

Backends: the reference ``Ops`` itself in float32; ``NumpyOps`` over the host build
of ``kernels/`` and over NumPy alone (``host=None``); ``FusedOps`` (the CUDA
backend's overrides) with its launches run by the host build of the CUDA kernels;
the strict simulated device ``"sim"``; and ``"cuda"`` where a GPU is present.

Besides the values (NaN and inf where the reference has them, finite values within
a tolerance relative to ``|reference| + median |reference|``), every run checks the
output dtype and shape, that inputs not declared ``mutates`` are left unchanged, and
that in-place results land in their buffers. The last tests hold the registry to
the code: every override of ``Ops`` and every host kernel must be run by some case.
"""

from __future__ import annotations

import contextlib
import functools
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from parity_cases import CASES, LARGE, PARALLEL_MIN, PARALLEL_MIN_OPTIMIZER, Case

from gpunet.backend import _compat, _host, _kernels, get_ops
from gpunet.backend.cupy_ops import CupyOps, FusedOps
from gpunet.backend.numpy_ops import NumpyOps
from gpunet.backend.ops import Ops
from gpunet.backend.strict_ops import StrictOps

# |got - ref| <= TOL * (|ref| + median |ref|): ~170 float32 ulp, ~50k float64 ulp
# (the float64 erf of the reference and the kernels' erfc differ by a few 1e-16)
TOL = {"float32": 2e-5, "float64": 1e-11}
# ... and up to SPREAD times what rounding the inputs to the dtype moves the reference
# (the output's conditioning: 1 - Y near Y = 1, a sum that cancels)
SPREAD = 8.0
REF = Ops()


def _numpy_fallback() -> NumpyOps:
    ops = NumpyOps()
    ops.host = None  # what a machine without a compiler (or GPUNET_HOST_KERNELS=0) runs
    return ops


def _host_build() -> NumpyOps:
    ops = NumpyOps()
    if ops.host is None:
        pytest.skip(f"no host build of kernels/: {_host.status()[1]}")
    return ops


def _fused(request: pytest.FixtureRequest) -> FusedOps:
    request.getfixturevalue("host")  # launches go to the host build of kernels/*.cu
    return FusedOps()


def _sim() -> Ops:
    pytest.importorskip("array_api_strict")
    return get_ops("sim")


HAS_GPU = _compat.gpu_count()[0] > 0
GPU_MARKS = [
    pytest.mark.gpu,
    pytest.mark.skipif(not HAS_GPU, reason=f"needs a CUDA GPU: {_compat.gpu_count()[1]}"),
]
# name -> (dtypes, marks, factory, class whose overrides it tests). The reference and
# "sim" (no float64 on that device) run float32 only: the reference in float64 is the
# yardstick itself. The host backends run a case only where their class overrides one
# of its ops (elsewhere they run the reference's code: the "ref" column already has
# it); the devices run every case.
BACKENDS: dict[str, tuple[tuple[str, ...], list[Any], Callable[..., Any], type | None]] = {
    "ref": (("float32",), [], lambda request: REF, None),
    "numpy+host": (("float32", "float64"), [], lambda request: _host_build(), NumpyOps),
    "numpy": (("float32", "float64"), [], lambda request: _numpy_fallback(), NumpyOps),
    "fused": (("float32", "float64"), [], _fused, FusedOps),
    "sim": (("float32",), [], lambda request: _sim(), None),
    "cuda": (("float32", "float64"), GPU_MARKS, lambda request: get_ops("cuda"), None),
}


def _overrides(cls: type) -> set[str]:
    """The public methods of ``Ops`` that ``cls`` redefines, itself or through a mixin
    of its own (``NumpyOps``' ``HostAttentionOps``; CupyOps wraps every inherited
    method to run on its own GPU: those wrappers are not overrides)."""
    own = getattr(cls, "_own_methods", None)
    reference = set(Ops.__mro__)
    return {
        name
        for klass in cls.__mro__
        if klass not in reference
        for name, value in vars(klass).items()
        if callable(value)
        and not name.startswith("_")
        and hasattr(Ops, name)
        and not (getattr(value, "_device_wrapper", False) and own is not None and name not in own)
    }


# "large" runs where a pool of threads does the work (elsewhere it is "above" again),
# in float32: the pool's splitting is the same for every dtype, and each kernel's
# float64 instantiation runs at "above"
LARGE_ON = ("numpy+host", "cuda")


def _params() -> list[Any]:
    params = []
    for case in CASES:
        for size in case.sizes:
            for dtype in case.dtypes:
                for backend, (dtypes, marks, _, cls) in BACKENDS.items():
                    if backend == "cuda" and not HAS_GPU:
                        continue
                    if cls is not None and not _overrides(cls) & set(case.ops):
                        continue
                    large_ok = size != "large" or (backend in LARGE_ON and dtype == "float32")
                    if dtype in dtypes and large_ok:
                        name = f"{case.name}-{size}-{dtype}-{backend}"
                        params.append(
                            pytest.param(case, size, dtype, backend, marks=marks, id=name)
                        )
    if not HAS_GPU:  # one visible skip for the whole cuda column, not thousands
        params.append(pytest.param(None, None, None, "cuda", marks=GPU_MARKS, id="cuda"))
    return params


PARAMS = _params()


BY_NAME = {case.name: case for case in CASES}


def reference(case: Case, size: str, dtype: str) -> tuple[dict[str, Any], list[Any], list[Any]]:
    return _reference(case.name, size, dtype)


@functools.lru_cache(maxsize=4)
def _reference(name: str, size: str, dtype: str) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """The case's inputs at ``size``, the float64 reference outputs on those inputs
    rounded to ``dtype``, and the outputs' sensitivity to that rounding (built once
    for all the backends of a (case, size, dtype))."""
    case = BY_NAME[name]
    rng = np.random.default_rng(zlib.crc32(f"{case.name}/{size}".encode()))
    inputs = case.build(size, rng)
    expected = run(REF, case, inputs, dtype, reference=True)
    nudged = run(REF, case, _nudge(inputs, dtype, rng), dtype, reference=True)
    return inputs, expected, [_spread(a, b) for a, b in zip(expected, nudged, strict=True)]


def _nudge(inputs: dict[str, Any], dtype: str, rng: np.random.Generator) -> dict[str, Any]:
    """The float inputs moved by a few ulp of ``dtype`` (relatively, so signs, zeros
    and non-finite values stay; 0 and +-1 stay exact, so no clip edge is crossed)."""
    eps = float(np.finfo(dtype).eps)
    out = {}
    for k, v in inputs.items():
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            x = v.astype(dtype).astype("float64")
            exact = (x == 0) | (np.abs(x) == 1) | ~np.isfinite(x)
            v = np.where(exact, x, x * (1 + rng.uniform(-4 * eps, 4 * eps, x.shape)))
        out[k] = v
    return out


def _spread(a: Any, b: Any) -> Any:
    """How far an output moved under the nudge: the error a stable float32
    implementation may have on that element (its conditioning)."""
    if a is None or a.dtype.kind != "f":
        return None
    with np.errstate(invalid="ignore"):  # inf - inf
        d = np.abs(a - b)
    return np.where(np.isfinite(a) & ~np.isfinite(d), np.inf, d)


def to_backend(ops: Any, value: Any, dtype: str, reference: bool) -> Any:
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind == "f":
        x = value.astype(dtype)  # a copy: in-place ops never touch the case's inputs
        return x.astype("float64") if reference else ops.asarray(x)
    return ops.asarray(value.copy())


def run(ops: Any, case: Case, inputs: dict[str, Any], dtype: str, *, reference: bool = False
        ) -> list[Any]:  # fmt: skip
    arrays = {k: to_backend(ops, v, dtype, reference) for k, v in inputs.items()}
    before = {
        k: np.array(ops.to_numpy(v)) for k, v in arrays.items()
        if isinstance(inputs[k], np.ndarray) and k not in case.mutates
    }  # fmt: skip
    with np.errstate(all="ignore"):  # the edge values divide by zero on purpose
        out = case.call(ops, arrays)
    for k, old in before.items():
        now = ops.to_numpy(arrays[k])
        assert np.array_equal(now, old, equal_nan=old.dtype.kind == "f"), (
            f"{case.name}: input {k!r} was modified"
        )
    return [None if o is None else np.asarray(ops.to_numpy(o)) for o in out]


def check(what: str, got: Any, want: Any, spread: Any, dtype: str, tol: float) -> None:
    if want is None:
        assert got is None, f"{what}: expected None, got an array"
        return
    assert got is not None, f"{what}: expected an array, got None"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {dtype}"
    g = got.astype("float64")
    for name, mask in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        bad = np.flatnonzero(mask(g) != mask(want))
        assert bad.size == 0, (
            f"{what}: {name} differs at {bad.size} places, first at flat index {bad[0]}: "
            f"got {g.flat[bad[0]]!r}, expected {want.flat[bad[0]]!r}"
        )
    finite = np.isfinite(want)
    if not finite.any():
        return
    w, g, cond = want[finite], g[finite], spread[finite]
    floor = max(float(np.median(np.abs(w))), float(np.finfo(dtype).tiny))
    # relative to |w| + median |w|, plus what the rounding of the inputs alone moves
    err = np.abs(g - w) / (np.abs(w) + floor + SPREAD * cond / tol)
    i = int(np.argmax(err))
    assert err[i] <= tol, (
        f"{what}: error {err[i]:.3g} > {tol:g} at finite element {i} of {w.size}: "
        f"got {g[i]!r}, expected {w[i]!r} (moved {cond[i]:.3g} by rounding the inputs)"
    )


@contextlib.contextmanager
def host_threads(n: int) -> Iterator[None]:
    """The host pool at ``n`` threads inside the block (the machine may have one CPU)."""
    kernels = _host.load()
    if kernels is None:
        yield
        return
    old = kernels.threads
    kernels.set_threads(n)
    try:
        assert kernels.threads == n
        yield
    finally:
        kernels.set_threads(old)


@pytest.mark.parametrize("case,size,dtype,backend", PARAMS)
def test_backend_matches_the_float64_reference(request, case, size, dtype, backend):
    ops = BACKENDS[backend][2](request)
    inputs, expected, spread = reference(case, size, dtype)
    if size == "large":  # the threaded path of the pool, with 2 threads
        biggest = max(v.size for v in inputs.values() if isinstance(v, np.ndarray))
        assert biggest >= min(PARALLEL_MIN, PARALLEL_MIN_OPTIMIZER) and biggest >= 1 << 20
        with host_threads(2):
            got = run(ops, case, inputs, dtype)
    else:
        got = run(ops, case, inputs, dtype)
    assert len(got) == len(expected)
    for i, (g, w, c) in enumerate(zip(got, expected, spread, strict=True)):
        what = f"{case.name} [{size}, {dtype}, {backend}] output {i}"
        check(what, g, w, c, dtype, (case.tol or TOL)[dtype])


# -- the registry covers the code -----------------------------------------------------------
# Overrides that move data rather than compute (every case runs the transfers), or draw
# random numbers from a device's own generator (not comparable across backends)
PLUMBING = {
    "asarray": "transfer: every case runs it",
    "to_numpy": "transfer: every case runs it",
    "dtype": "dtype lookup",
    "synchronize": "waits for the device",
    "random_uniform": "draws from the device's own generator",
    "fits_in_memory": "memory policy",
    "upload_rows": "transfer of batches (tested in test_device_backends)",
    "free_memory": "memory policy",
    "is_out_of_memory": "error classification (tested in test_device_backends)",
    "recurrent_loops": "hands a cell the host's whole time loops (test_recurrent_host_loops)",
    "step_loop_scope": "the BLAS thread limit around a recurrence (speed only)",
}
COVERED = {name for case in CASES for name in case.ops}


@pytest.mark.parametrize("cls", [NumpyOps, FusedOps, CupyOps, StrictOps], ids=lambda c: c.__name__)
def test_every_fast_path_is_registered(cls):
    missing = _overrides(cls) - set(PLUMBING) - COVERED
    assert not missing, f"{cls.__name__} overrides {sorted(missing)}: add parity cases"
    assert all(hasattr(Ops, name) for name in set(PLUMBING) | COVERED)


def _spy(cls: type, calls: set[str]) -> type:
    """A subclass of ``cls`` recording which of its overrides are called."""

    def wrap(name: str, fn: Any) -> Any:
        def spy(self: Any, *args: Any, **kw: Any) -> Any:
            calls.add(name)
            return fn(self, *args, **kw)

        return spy

    spies = {n: wrap(n, getattr(cls, n)) for n in _overrides(cls)}
    return type(f"Spy{cls.__name__}", (cls,), spies)


class _CountingKernels:
    """The host build, recording each ``gpunet_<kernel>_<f32|f64>`` called."""

    def __init__(self, kernels: Any, calls: set[str]) -> None:
        self._kernels, self._calls = kernels, calls

    def __getattr__(self, name: str) -> Any:
        table = getattr(self._kernels, name)
        if name not in _host.SIGNATURES:
            return table
        return {s: self._wrap(f"{name}_{s}", fn) for s, fn in table.items()}

    def _wrap(self, name: str, fn: Any) -> Any:
        def call(*args: Any) -> Any:
            self._calls.add(name)
            return fn(*args)

        return call


def _run_everything(ops: Any) -> None:
    for case in CASES:
        for dtype in ("float32", "float64"):
            if "above" in case.sizes:
                inputs = case.build("above", np.random.default_rng(0))
                run(ops, case, inputs, dtype)


def test_every_numpy_override_and_host_kernel_runs_in_the_suite():
    if _host.load() is None:
        pytest.skip(f"no host build of kernels/: {_host.status()[1]}")
    calls: set[str] = set()
    ops = _spy(NumpyOps, calls)()
    kernel_calls: set[str] = set()
    ops.host = _CountingKernels(ops.host, kernel_calls)
    _run_everything(ops)
    assert _overrides(NumpyOps) - set(PLUMBING) <= calls, "an override no case reaches"
    kernels = {f"{n}_{s}" for n in _host.SIGNATURES for s in ("f32", "f64")}
    assert kernels <= kernel_calls, f"host kernels no case runs: {sorted(kernels - kernel_calls)}"


def test_every_fused_override_and_cuda_kernel_runs_in_the_suite(host):
    calls: set[str] = set()
    _run_everything(_spy(FusedOps, calls)())
    assert _overrides(FusedOps) - set(PLUMBING) <= calls, "an override no case reaches"
    launched = {name for name, _, _ in host.launches}
    # float16 and bfloat16 are the host-kernel tests' (test_host_kernels.py,
    # test_amp_kernels.py); this suite runs 32 and 64 bits
    wanted = {n for names in _kernels.INSTANTIATIONS.values() for n in names
              if "__half" not in n and "__nv_bfloat16" not in n}  # fmt: skip
    assert wanted <= launched, f"CUDA kernels no case launches: {sorted(wanted - launched)}"


def test_large_sizes_pass_every_parallel_threshold():
    assert LARGE >= max(PARALLEL_MIN, PARALLEL_MIN_OPTIMIZER, 1 << 20)
    assert sum("large" in c.sizes for c in CASES) >= 5


def test_small_sigmoid_cross_entropy_gradient_at_an_infinite_logit():
    # NumpyOps' few-ufunc path took sigmoid(+inf) as exp(inf - softplus(inf)) = NaN,
    # where the reference and the kernels give 1
    Z, T = np.array([[np.inf, -np.inf, 0.0]]), np.full((1, 3), 0.3)
    with np.errstate(all="ignore"):
        _, dZ = _numpy_fallback().sigmoid_cross_entropy(Z, T, scale=1.0)
    np.testing.assert_allclose(dZ, [[0.7 / 3, -0.3 / 3, 0.2 / 3]])
