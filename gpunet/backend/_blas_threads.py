"""One BLAS thread for loops of small matrix products (the recurrent layers' steps).

A (64, 128) @ (128, 512) product takes tens of microseconds: a second BLAS thread
saves little when it is idle and costs milliseconds when the CPU is shared, since the
library hands every product to its threads and waits for them (an LSTM step was 15x
slower at 2 threads on a loaded machine). The limit goes through ``threadpoolctl``
(the optional extra ``gpunet[speed]``); without it ``one_blas_thread()`` does
nothing and the products run as the BLAS library is set.

The limit is process-wide (the BLAS library has one setting): while one thread holds
it, products elsewhere in the process also run on one BLAS thread. That affects
speed only, never results. Nested and concurrent holders share one limit: the first
to enter sets it, the last to leave restores the setting found then.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {"holders": 0, "saved": [], "controller": None}


def _controller() -> Any:
    """The cached ``ThreadpoolController`` (inspecting the loaded libraries takes ~ms),
    or False without threadpoolctl."""
    ctl = _state["controller"]
    if ctl is None:
        try:
            from threadpoolctl import ThreadpoolController

            ctl = ThreadpoolController()
        except Exception:  # not installed, or an unusual BLAS it cannot inspect
            ctl = False
        _state["controller"] = ctl
    return ctl


def _take_control() -> None:
    """threadpoolctl >= 3.8 lets only one Python thread (the first to set a limit)
    change a pthreads OpenBLAS, ignoring the others; ``_lock`` already keeps our
    holders from fighting, so whichever thread enters takes the control over."""
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block's BLAS calls on one thread (see the module docstring).

    Example:
        >>> import numpy as np
        >>> with one_blas_thread():
        ...     y = np.ones((2, 3)) @ np.ones((3, 2))
        >>> float(y[0, 0])
        3.0
    """
    with _lock:
        if _state["holders"] == 0:
            ctl = _controller()
            _state["saved"] = _set_one(ctl.lib_controllers) if ctl else []
        _state["holders"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["holders"] -= 1
            if _state["holders"] == 0:
                for lib, n in _state["saved"]:
                    _take_control()
                    lib.set_num_threads(n)
                _state["saved"] = []


def _set_one(libs: list[Any]) -> list[tuple[Any, int]]:
    """Put the BLAS libraries on one thread; ``(library, setting)`` of those changed.
    Calling the libraries' own get/set functions costs microseconds, where a
    ``ThreadpoolController.limit`` took ~0.1 ms (a recurrent layer's training step
    enters twice); one already on one thread is left alone."""
    saved = []
    for lib in libs:
        if lib.user_api == "blas" and (n := lib.num_threads) != 1:
            _take_control()
            lib.set_num_threads(1)
            saved.append((lib, n))
    return saved


def available() -> bool:
    """Whether :func:`one_blas_thread` can limit the BLAS threads (threadpoolctl is
    installed and sees the library).

    Example:
        >>> isinstance(available(), bool)
        True
    """
    with _lock:
        ctl = _controller()
    return bool(ctl) and bool(ctl.select(user_api="blas").lib_controllers)


# OpenBLAS's idle workers spin for 2**28 cycles (~0.1 s) after each product before they
# sleep, so between products they hold the cores the host kernels' pool, the attention
# split's threads and NumPy's own loops then run on: at 2 threads a Transformer block's
# step took 22.5 ms against 20.0 with workers that sleep at once (bench/run.py -w E,
# paired in one process), and its element-wise passes up to 3x longer. Waking a
# sleeping worker costs microseconds per product, a small part of any product worth
# sharing between threads.
NAP_EXPONENT = 4  # the least OpenBLAS takes: sleep after 2**4 cycles of idling


def nap_openblas_workers() -> int:
    """Restart the OpenBLAS thread servers loaded in this process with idle workers
    that sleep at once (``OPENBLAS_THREAD_TIMEOUT``, read by OpenBLAS only when its
    server starts); returns how many were restarted. Done only on Linux, with one
    Python thread alive (no product can be running), and not where the user set
    ``OPENBLAS_THREAD_TIMEOUT`` or ``GPUNET_OPENBLAS_NAP=0``. The thread counts stay."""
    if os.environ.get("GPUNET_OPENBLAS_NAP", "1") == "0" or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return 0
    if threading.active_count() != 1:
        return 0
    done = 0
    for path in _openblas_paths():
        try:
            lib = ctypes.CDLL(path)
            read_env, shutdown = lib.openblas_read_env, lib.blas_thread_shutdown_
        except (OSError, AttributeError):
            continue
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(NAP_EXPONENT)
        try:
            read_env()  # OpenBLAS keeps what it read; the server reads it on restart
        finally:
            del os.environ["OPENBLAS_THREAD_TIMEOUT"]
        shutdown()  # joined now; the next product starts the server again
        done += 1
    return done


def _openblas_paths() -> list[str]:
    """The OpenBLAS libraries mapped into this process (Linux), each once."""
    try:
        with open("/proc/self/maps") as maps:
            found = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in found if p.startswith("/") and ".so" in p)


# (prefix, suffix) of OpenBLAS's symbols, NumPy's own builds first (NumPy >= 2, 1.x)
_AFFIXES = (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", ""))


def cblas_gemm() -> tuple[int, int, bool] | None:
    """``(sgemm, dgemm, wide)``: the addresses of the ``cblas_?gemm`` of the OpenBLAS
    NumPy uses (its own copy first), and whether they take 64-bit integers (as its
    build says: USE64BITINT); None where none is found or ``GPUNET_HOST_BLAS=0``. The
    host kernels call it for products they interleave with their own passes."""
    if os.environ.get("GPUNET_HOST_BLAS", "1") == "0":
        return None
    for path in sorted(_openblas_paths(), key=lambda p: "numpy" not in p):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre, suf in _AFFIXES:
            names = (
                f"{pre}cblas_sgemm{suf}",
                f"{pre}cblas_dgemm{suf}",
                f"{pre}openblas_get_config{suf}",
            )
            fs, fd, config = (getattr(lib, n, None) for n in names)
            if fs is None or fd is None or config is None:
                continue
            config.restype = ctypes.c_char_p
            wide = b"USE64BITINT" in (config() or b"")
            addr = [ctypes.cast(f, ctypes.c_void_p).value for f in (fs, fd)]
            return int(addr[0] or 0), int(addr[1] or 0), wide
    return None
