"""Each implementation in its own process, driven over a pipe.

Why: PyTorch and scikit-learn each bring an OpenMP runtime, and they share
whichever ``libgomp.so.1`` a process loads first; gpunet's CPU kernels did too,
before they got a thread pool of their own. Measured on the 2-core bench machine
then: with torch imported first, gpunet's A step went from ~4.5 ms to 42-125 ms
(its OpenMP regions ran on torch's libgomp while OpenBLAS's threads needed the
cores); with gpunet first, torch's A step went from 5.5 to 8-9 ms. A single
process favours whichever library loads first, and the BLAS and OpenMP pools of
one library still slow another's. One process per implementation gives each library the runtime it
has in a user's program, while the coordinator still interleaves the blocks in
rotating order (``_runner.interleave``), so drift is shared as before. The
pipe costs ~0.1 ms per block, outside the timed region.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _serve(conn: Any, key: str, name: str, opts: dict[str, Any], gpu: bool) -> None:
    sys.path.insert(0, str(HERE))
    try:
        import _machine
        import _runner
        import run

        if "torch" in name:  # the same threads as NumPy's BLAS, as in one process
            import _peers

            threads = getattr(run.workload(key), "threads", None) or opts.get("torch_threads")
            _peers.torch_threads(threads or _machine.numpy_blas_threads())
        w = run.workload(key)
        factory = run.factories(key, w, run.make_data(key, w), argparse.Namespace(**opts), gpu)
        factory = factory[name]
        impl = factory()
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ok", {"dtype": getattr(impl, "dtype", None)}))
    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "quit":
                return
            if cmd == "block":
                conn.send(("ok", _runner.run_block(impl, *args)))
            elif cmd == "run":
                impl.run(*args)
                impl.sync()
                conn.send(("ok", None))
            elif cmd == "first_loss":
                conn.send(("ok", impl.first_loss()))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


@contextlib.contextmanager
def _thread_env(key: str) -> Iterator[None]:
    """The environment a worker starts with: a workload pinned to ``threads`` (the
    LeNet step's L1) gets that many BLAS, OpenMP and gpunet host-pool threads, set
    before the child imports any of them."""
    import _attention
    import _lenet

    w = _lenet.LENET.get(key) or _attention.ATTENTION.get(key)
    if w is None or w.threads is None:
        yield
        return
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GPUNET_NUM_THREADS")
    old = {k: os.environ.get(k) for k in names}
    os.environ.update({k: str(w.threads) for k in names})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Remote:
    """An implementation running in a spawned process; ``run``/``block`` block
    until the worker is done (``run`` includes the device sync)."""

    def __init__(self, key: str, name: str, opts: argparse.Namespace, gpu: bool) -> None:
        ctx = mp.get_context("spawn")  # no forked BLAS/OpenMP state
        self.conn, child = ctx.Pipe()
        fields = ("torch", "sklearn", "quick", "sklearn_c", "torch_threads")
        sent = {k: getattr(opts, k, None) for k in fields}
        sent["impls"] = None
        self.proc = ctx.Process(target=_serve, args=(child, key, name, sent, gpu), daemon=True)
        with _thread_env(key):
            self.proc.start()
        self.name, self.ready = name, False

    def wait_ready(self) -> None:
        """Block until the worker has built its implementation (or raise why not)."""
        status, info = self.conn.recv()
        if status != "ok":
            self.close()
            raise RuntimeError(info)
        self.dtype, self.ready = info.get("dtype"), True

    def _call(self, *msg: Any) -> Any:
        self.conn.send(msg)
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"in the {self.name} worker: {value}")
        return value

    def block(self, steps: int, warmup: int, sleep: float) -> tuple[float, float, float | None]:
        return tuple(self._call("block", steps, warmup, sleep))  # type: ignore[return-value]

    def run(self, n: int) -> None:
        self._call("run", n)

    def sync(self) -> None:
        pass  # ``run`` in the worker already synchronised

    def first_loss(self) -> float:
        return float(self._call("first_loss"))

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(("quit",))
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.kill()
