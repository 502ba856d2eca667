"""``nap_openblas_workers``: OpenBLAS's thread server restarted with workers that sleep
as soon as they are idle, in a fresh interpreter each (the restart happens once per
process, when the host kernels load). Products must give the same bits before and
after, at the thread count set before."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, json, os, threading
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
from gpunet.backend import _blas_threads as bt

a = np.random.default_rng(0).standard_normal((400, 400))
threadpool_limits(2, user_api="blas")  # two workers even on a one-CPU machine
before = a @ a
libs = [ctypes.CDLL(p) for p in bt._openblas_paths()]
for lib in libs:
    lib.openblas_thread_timeout.restype = ctypes.c_int
if {extra_thread}:
    threading.Thread(target=threading.Event().wait, daemon=True).start()
tasks = set(os.listdir("/proc/self/task"))  # the OpenBLAS worker is one of them
restarted = bt.nap_openblas_workers()
after = a @ a
print(json.dumps({{
    "paths": len(libs),
    "restarted": restarted,
    "timeouts": [lib.openblas_thread_timeout() for lib in libs],
    "same": bool((before == after).all()),
    "new_workers": bool(set(os.listdir("/proc/self/task")) - tasks),
    "threads": sorted({{i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}}),
}}))
"""


def _run(extra_thread: bool = False, **env: str) -> dict:
    pytest.importorskip("threadpoolctl")
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(extra_thread=extra_thread)],
        capture_output=True, text=True, timeout=120, env={**environ, **env}, check=True,
    )  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if not got["paths"]:
        pytest.skip("NumPy is not linked to OpenBLAS here")
    return got


def test_openblas_workers_are_restarted_to_sleep_when_idle_with_the_same_results():
    got = _run()
    assert got["restarted"] == got["paths"] >= 1
    assert got["timeouts"] == [4] * got["paths"]  # OpenBLAS's least: 2**4 cycles
    assert got["same"] and got["new_workers"]  # the server was started again
    assert got["threads"] == [2]  # the limit set before the restart holds after it


@pytest.mark.parametrize(
    "env", [{"GPUNET_OPENBLAS_NAP": "0"}, {"OPENBLAS_THREAD_TIMEOUT": "20"}], ids=["off", "user"]
)
def test_openblas_is_left_alone_when_switched_off_or_set_by_the_user(env):
    got = _run(**env)
    assert got["restarted"] == 0 and not got["new_workers"]
    assert got["timeouts"] != [4] * got["paths"] and got["same"]


def test_no_restart_while_another_python_thread_could_be_in_a_product():
    got = _run(extra_thread=True)
    assert got["restarted"] == 0 and got["timeouts"] != [4] * got["paths"] and got["same"]
