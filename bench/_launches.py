"""Kernel launches and passes over activation memory per training step of the
GPU path, fused versus unfused, counted on a machine without a GPU.

What is counted, and how (this is an instrumented run, not a static table):

* One real training step (the second batch of ``model.fit``, so buffers exist)
  runs on the CPU with NumPy arrays of a counting subclass (``Counted``), on a
  backend object whose ``xp`` hands out such arrays.
* **unfused** = the reference ``Ops``: exactly the code ``CupyOps`` runs for an op
  it has no kernel for, i.e. "plain CuPy". Each ufunc call, reduction, matmul,
  copy-making array function, fancy-index gather, item assignment, ``astype``
  and ``zeros``/``full`` is counted as one launch: on CuPy each of these is one
  elementwise/reduction kernel or one cuBLAS call. Views (reshape, transpose,
  basic slicing) and ``empty`` launch nothing.
* **fused** = ``gpunet.backend.cupy_ops.FusedOps``, the kernel-routing half of
  ``CupyOps`` (it knows no CuPy): its launches into our kernels go through
  ``_kernels.runner()``, which here is a counting runner whose kernels do
  nothing (outputs stay zero: counts do not depend on values). Everything it
  still leaves to the reference (GEMMs, reductions, glue) is counted as above.
* **hand-written plain CuPy** = ``bench/_workloads.HandStep`` with the counting
  ``xp``: the ``cupy_plain`` row of the timings.
* A *pass* is one kernel operand that is an activation-sized array (first axis
  = the batch: inputs, layer outputs, their gradients, labels, per-row losses);
  an array read and written counts twice. GEMM passes are listed apart, being
  the same in both columns. Arrays sized like parameters are counted as
  "parameter passes". Host syncs: ``ops.to_numpy``/``to_host`` calls plus any
  implicit ``float()``/``bool()`` of a device array inside the step.
* To tell activations from parameters by shape, the step runs at a probe batch
  size that is no layer width; bytes are scaled back to the workload's batch.
  Counts do not depend on the batch size.

Approximations: a CuPy reduction over several axes, ``mean`` (counted as sum +
divide) or a cuBLAS call that launches two kernels are counted as NumPy sees them.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _workloads as wl

from gpunet.cli.quickbench import build_model


class _Recorder:
    def __init__(self) -> None:
        self.on, self.batch = False, 0
        self.stack: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.host_reads = 0


REC = _Recorder()


def _plain(x: Any) -> Any:
    if isinstance(x, Counted):
        return x.view(np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _wrap(x: Any) -> Any:
    if isinstance(x, np.ndarray) and not isinstance(x, Counted):
        return x.view(Counted)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    return x


def _arrays(*xs: Any) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for x in xs:
        if isinstance(x, np.ndarray) and x.ndim > 0:
            out.append(x)
        elif isinstance(x, (list, tuple)):
            out += _arrays(*x)
    return out


def record(kind: str, name: str, operands: list[np.ndarray]) -> None:
    if not REC.on:
        return
    act = [a for a in operands if a.shape[0] == REC.batch]
    par = [a for a in operands if a.shape[0] != REC.batch and a.size > 1]
    REC.events.append(
        {
            "kind": kind,
            "name": name,
            "op": REC.stack[0] if REC.stack else None,
            "act": len(act),
            "act_bytes": sum(a.nbytes for a in act),
            "par": len(par),
            "par_bytes": sum(a.nbytes for a in par),
        }
    )


class Counted(np.ndarray):
    """An ndarray that records every launch-equivalent operation made on it."""

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kw: Any) -> Any:
        out = kw.get("out")
        result = getattr(ufunc, method)(*_plain(inputs), **_plain(kw))
        kind = (
            "gemm" if ufunc is np.matmul else "elementwise" if method == "__call__" else "reduction"
        )
        record(kind, f"{ufunc.__name__}.{method}", _arrays(inputs, out if out else result))
        return _wrap(result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        result = func(*_plain(args), **_plain(kwargs))
        ins = _arrays(args, kwargs.get("out"))
        is_view = (
            isinstance(result, np.ndarray)
            and "out" not in kwargs
            and any(np.may_share_memory(result, a) for a in ins)
        )
        if isinstance(result, (np.ndarray, tuple)) and not is_view and _arrays(result):
            record("elementwise", func.__name__, ins + _arrays(result))
        return _wrap(result)

    def __getitem__(self, key: Any) -> Any:
        result = super().__getitem__(key)
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, (np.ndarray, list)) for k in keys):  # advanced: a gather
            # reads as many elements as it writes: two passes of the result's size
            record("gather", "getitem", _arrays(result, result, list(keys)))
        return result

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(_plain(key), _plain(value))
        target = super().__getitem__(key)
        record("copy", "setitem", _arrays(value, target))

    def astype(self, *args: Any, **kw: Any) -> Any:
        result = super().astype(*args, **kw)
        if result is not self:
            record("elementwise", "astype", _arrays(self, result))
        return result

    def copy(self, *args: Any, **kw: Any) -> Any:
        result = super().copy(*args, **kw)
        record("copy", "copy", _arrays(self, result))
        return result

    def _host_read(self) -> None:
        if REC.on:
            REC.host_reads += 1

    def __float__(self) -> float:
        self._host_read()
        return float(self.view(np.ndarray))

    def __bool__(self) -> bool:
        self._host_read()
        return bool(self.view(np.ndarray))

    def item(self, *args: Any) -> Any:
        self._host_read()
        return self.view(np.ndarray).item(*args)


class CountingXP:
    """``numpy`` as a backend namespace whose creation functions return ``Counted``
    arrays and count fills (``empty`` allocates zeros: the no-op kernels of the
    fused run must not leave garbage that the NaN check would trip on)."""

    FILLS = ("zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "arange")
    EMPTY: ClassVar[dict[str, Any]] = {"empty": np.zeros, "empty_like": np.zeros_like}

    def __getattr__(self, name: str) -> Any:
        fn = getattr(np, name)
        if name in self.EMPTY:
            return lambda *a, **k: _wrap(self.EMPTY[name](*_plain(a), **_plain(k)))
        if name in self.FILLS or name in ("asarray", "array"):

            def make(*a: Any, **k: Any) -> Any:
                result = fn(*_plain(a), **_plain(k))
                if name in self.FILLS:
                    record("fill", name, _arrays(result))
                return _wrap(result)

            return make
        return fn


class CountingRunner:
    """A ``_kernels`` runner that records each launch (its array arguments are
    the kernel's operands) and runs nothing."""

    xp = CountingXP()

    def launch(self, file: str, name: str, grid: int, block: int, args: tuple[Any, ...]) -> None:
        record("kernel", name.split("<")[0], _arrays(*args))


def _instrument(ops: Any) -> Any:
    """Attribute launches to the outermost backend op called (``dense``,
    ``adam``, ...); launches outside any op are autograd/fit glue."""
    for name, _ in inspect.getmembers(type(ops), inspect.isfunction):
        if name.startswith("_"):
            continue
        fn = getattr(ops, name)

        def wrapped(*a: Any, _fn: Any = fn, _name: str = name, **k: Any) -> Any:
            REC.stack.append(_name)
            try:
                return _fn(*a, **k)
            finally:
                REC.stack.pop()

        setattr(ops, name, wrapped)
    ops.xp = CountingXP()
    return ops


def probe_batch(w: wl.Workload) -> int:
    """A batch size that is no layer width, so shape tells activations apart."""
    b = min(w.batch, 64)
    while b in w.sizes or b == 1:
        b += 1
    return b


def trace_gpunet(w: wl.Workload, ops: Any) -> dict[str, Any]:
    """Record the second training step of ``fit`` on ``ops``."""
    import gpunet as gn

    class Window(gn.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if batch == 1:
                REC.events, REC.host_reads, REC.on = [], 0, True
                self.syncs = ops.host_syncs

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 1:
                REC.on = False
                self.syncs = ops.host_syncs - self.syncs

    data = wl.make_data(replace(w, steps=3, batch=REC.batch))
    model = build_model(w, _instrument(ops))
    window = Window()
    with np.errstate(all="ignore"):
        model.fit(
            data.X,
            data.y,
            batch_size=REC.batch,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[window],
        )
    return {"events": REC.events, "host_syncs": window.syncs + REC.host_reads}


def trace_hand(w: wl.Workload) -> dict[str, Any]:
    step = wl.HandStep(
        replace(w, batch=REC.batch, steps=2),
        wl.make_data(replace(w, steps=2, batch=REC.batch)),
        CountingXP(),
    )
    step.run(1)
    REC.events, REC.host_reads, REC.on = [], 0, True
    with np.errstate(all="ignore"):
        step.run(1)
    REC.on = False
    return {"events": REC.events, "host_syncs": REC.host_reads}


def totals(trace: dict[str, Any], scale: float) -> dict[str, Any]:
    ev = trace["events"]
    gemm = [e for e in ev if e["kind"] == "gemm"]
    other = [e for e in ev if e["kind"] != "gemm"]
    return {
        "launches": len(ev),
        "gemm_launches": len(gemm),
        "our_kernels": sum(e["kind"] == "kernel" for e in ev),
        "act_passes": sum(e["act"] for e in other),
        "act_mib": scale * sum(e["act_bytes"] for e in other) / 2**20,
        "gemm_act_passes": sum(e["act"] for e in gemm),
        "param_passes": sum(e["par"] for e in other),
        "param_mib": sum(e["par_bytes"] for e in other) / 2**20,
        "host_syncs": trace["host_syncs"],
    }


def per_op(trace: dict[str, Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for e in trace["events"]:
        row = out.setdefault(e["op"] or "(glue)", {"launches": 0, "act_passes": 0})
        row["launches"] += 1
        row["act_passes"] += e["act"] if e["kind"] != "gemm" else 0
    return out


def count(key: str) -> dict[str, Any]:
    from gpunet.backend.ops import Ops

    w = wl.WORKLOADS[key]
    REC.batch = probe_batch(w)
    scale = w.batch / REC.batch
    res: dict[str, Any] = {"batch": w.batch, "probe_batch": REC.batch}
    traces = {"unfused": trace_gpunet(w, Ops())}
    try:
        from gpunet.backend import _kernels
        from gpunet.backend.cupy_ops import FusedOps
    except Exception as exc:  # the CUDA backend is optional and may be mid-change
        res["fused_error"] = f"gpunet.backend.cupy_ops.FusedOps unavailable: {exc}"
    else:
        with _kernels.use_runner(CountingRunner()):
            traces["fused"] = trace_gpunet(w, FusedOps())
    traces["hand_plain_cupy"] = trace_hand(w)
    for name, tr in traces.items():
        res[name] = totals(tr, scale)
        res[name]["per_op"] = per_op(tr)
    return res


def count_all(keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"method": "instrumented run on the CPU (see bench/_launches.py)"}
    for key in keys:
        with contextlib.suppress(KeyError):
            out[key] = count(key)
    return out


def markdown(res: dict[str, Any]) -> list[str]:
    cols = ("unfused", "fused", "hand_plain_cupy")
    head = (
        "Counted by running one `fit` step on the CPU with counting arrays: unfused = "
        "reference `Ops` (what `CupyOps` runs without kernels), fused = `FusedOps` "
        "with launches intercepted at the `_kernels` runner, hand = the hand-written "
        "plain-CuPy step. Passes = activation-sized kernel operands (GEMMs apart)."
    )
    lines = [head, ""]
    rows = (
        ("launches", "kernel launches"),
        ("our_kernels", "  of which our kernels"),
        ("gemm_launches", "  of which GEMMs"),
        ("act_passes", "activation passes (non-GEMM)"),
        ("act_mib", "activation MiB moved (non-GEMM)"),
        ("gemm_act_passes", "GEMM activation operands"),
        ("param_passes", "parameter-sized passes"),
        ("param_mib", "parameter MiB moved"),
        ("host_syncs", "host syncs"),
    )
    for key, r in res.items():
        if key == "method":
            continue
        present = [c for c in cols if c in r]
        lines += [
            f"**{key}** (batch {r['batch']}; counted at {r['probe_batch']}, MiB scaled)",
            "",
            "| per training step | " + " | ".join(present) + " |",
            "|---|" + "---:|" * len(present),
        ]
        for field, label in rows:
            vals = [r[c][field] for c in present]
            cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in vals]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if "fused_error" in r:
            lines.append(f"\nfused: {r['fused_error']}")
        ops = sorted({o for c in ("unfused", "fused") if c in r for o in r[c]["per_op"]})
        lines += ["", "| op (launches / act passes) | unfused | fused |", "|---|---:|---:|"]
        for o in ops:
            cells = [
                f"{r[c]['per_op'][o]['launches']} / {r[c]['per_op'][o]['act_passes']}"
                if c in r and o in r[c]["per_op"]
                else "-"
                for c in ("unfused", "fused")
            ]
            lines.append(f"| {o} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


if __name__ == "__main__":
    keys = sys.argv[1].split(",") if len(sys.argv) > 1 else ["A", "B"]
    print("\n".join(markdown(count_all(keys))))
