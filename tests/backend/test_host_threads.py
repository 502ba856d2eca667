"""The host kernels called from several Python threads at once (ctypes releases
the GIL): a web server answering ``predict``, GridSearchCV with a threading
backend, a loader thread beside training.

Every call is large enough (2**21 elements) to take the pool's parallel path.
Each thread's results must be the bits a lone call gives; a deadlock fails the
test by its join timeout instead of hanging the run.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from typing import Any

import numpy as np
import pytest

from gpunet.backend import _host, get_ops

THREADS, ROUNDS = 4, 20
B, O = 2**15, 2**6  # B * O = 2**21 elements per call
LEAKY = _host.ACT_CODES["leaky_relu"]
OUT = ["Y", "Z", "dZ", "db", "P", "M", "V"]
JOIN_TIMEOUT = 30.0  # seconds for one round of every thread; a round takes milliseconds


@pytest.fixture(scope="module")
def ops() -> Any:
    ops = get_ops("cpu")
    if ops.host is None:
        pytest.skip(f"no host kernels: {_host.status()[1]}")
    before = ops.host.threads
    ops.host.set_threads(4)  # the parallel path, even where the CPU has one core
    yield ops
    ops.host.set_threads(before)


def inputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = {k: rng.standard_normal(B * O).astype(np.float32) for k in ("Z0", "dY", "P0", "G")}
    d["b"] = rng.standard_normal(O).astype(np.float32)
    for k in OUT:  # the outputs, allocated once: page faults of fresh arrays would serialize
        d[k] = np.empty(O if k == "db" else B * O, np.float32)
    return d


def work(ops: Any, d: dict[str, np.ndarray]) -> list[np.ndarray]:
    """bias_act, act_bwd with the bias sum, two adam steps: NumpyOps' host kernels.

    The kernels are called as ``dense`` and ``backprop_dense`` call them, without
    those ops' matrix products, whose BLAS thread pool is not under test.
    """
    host, ptr = ops.host, (lambda a: a.ctypes.data)
    Y, Z, dZ, db, P, M, V = (d[k] for k in OUT)
    np.copyto(Y, d["Z0"])
    host.bias_act["f32"](ptr(Y), ptr(Z), ptr(d["b"]), B, O, LEAKY, 0.1)
    host.act_bwd["f32"](ptr(dZ), ptr(d["dY"]), ptr(Z), ptr(Y), ptr(db), B, O, LEAKY, 0.1)
    np.copyto(P, d["P0"])
    M.fill(0.0)
    V.fill(0.0)
    for _ in range(2):
        ops.adam(P, d["G"], M, V, lr_t=1e-3, beta1=0.9, beta2=0.999, eps=1e-7)
    return [d[k] for k in OUT]  # overwritten by the next call


@pytest.mark.slow
def test_threads_calling_at_once_get_the_results_of_lone_calls(ops):
    data = [inputs(seed) for seed in range(THREADS)]
    expected = [[a.copy() for a in work(ops, d)] for d in data]  # one call at a time
    start = threading.Barrier(THREADS)
    for rnd in range(ROUNDS):
        got: list[Any] = [None] * THREADS
        errors: list[BaseException] = []

        def run(i: int, got: list[Any] = got, errors: list[BaseException] = errors) -> None:
            try:
                start.wait(JOIN_TIMEOUT)  # every thread enters the kernels together
                got[i] = work(ops, data[i])
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(THREADS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        hung = sum(t.is_alive() for t in threads)
        assert not hung, f"round {rnd}: {hung} of {THREADS} threads still in the kernels (deadlock)"
        assert not errors, errors
        for i in range(THREADS):
            for name, a, e in zip(OUT, got[i], expected[i], strict=True):
                assert np.array_equal(a, e), f"round {rnd}, thread {i}: {name} differs"


def test_resizing_the_pool_while_threads_compute_keeps_the_results(ops):
    """``set_num_threads`` from one thread while another is inside the kernels."""
    d = inputs(7)
    expected = [a.copy() for a in work(ops, d)]
    got: list[Any] = []
    stop = threading.Event()

    def compute() -> None:
        while not stop.is_set():
            got.append([a.copy() for a in work(ops, d)])

    thread = threading.Thread(target=compute, daemon=True)
    thread.start()
    try:
        sizes = itertools.cycle([1, 3, 2, 4])
        while len(got) < 5 and thread.is_alive():
            ops.host.set_threads(next(sizes))
    finally:
        stop.set()
        thread.join(JOIN_TIMEOUT)
        ops.host.set_threads(4)
    assert not thread.is_alive(), "the computing thread hung while the pool was resized"
    assert len(got) >= 5, "the computing thread stopped"
    for out in got:
        for name, a, e in zip(OUT, out, expected, strict=True):
            if name == "db":  # summed in one partial sum per pool thread
                np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-2, err_msg=name)
            else:
                assert np.array_equal(a, e), name


TSAN_DRIVER = r"""
#include <thread>
#include <vector>
extern "C" void gpunet_adam_f32(float*, const float*, float*, float*, long long, double, double,
                                double, double, double);
extern "C" int gpunet_act_bwd_f32(float*, const float*, const float*, const float*, float*,
                                  long long, long long, int, double);
extern "C" void gpunet_host_set_threads(int);
int main() {
    gpunet_host_set_threads(4);
    const long long n = 1 << 20, O = 64, B = n / O;
    std::vector<std::thread> ts;
    for (int k = 0; k < 3; ++k)
        ts.emplace_back([=] {
            std::vector<float> P(n, 1.f), G(n, .5f), M(n), V(n), dZ(n), db(O);
            for (int r = 0; r < 3; ++r) {
                float *p = P.data(), *g = G.data();
                gpunet_adam_f32(p, g, M.data(), V.data(), n, 1e-3, .9, .999, 1e-7, 1.);
                gpunet_act_bwd_f32(dZ.data(), g, nullptr, p, db.data(), B, O, 1, 0.);
            }
        });
    ts.emplace_back([] { for (int r = 0; r < 8; ++r) gpunet_host_set_threads(1 + r % 4); });
    for (auto& t : ts) t.join();
}
"""


@pytest.mark.slow
def test_the_pool_is_free_of_data_races_under_the_thread_sanitizer(tmp_path):
    """Three threads in the kernels and one resizing the pool, under TSan: the
    unlocked pool this replaced raced on its job slot here (and then hung)."""
    cxx = _host._compiler()
    if cxx is None:
        pytest.skip("needs a C++ compiler")
    (tmp_path / "driver.cpp").write_text(TSAN_DRIVER)
    exe = tmp_path / "driver"
    src = [str(_host.KERNEL_DIR / _host.SOURCE), str(tmp_path / "driver.cpp")]
    flags = ["-O1", "-g", "-std=c++17", "-fsanitize=thread", "-fopenmp-simd", "-pthread"]
    build = subprocess.run([cxx, *flags, "-I", str(_host.KERNEL_DIR), *src, "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    if build.returncode:
        pytest.skip(f"no thread sanitizer here: {build.stderr[-300:]}")
    env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1 exitcode=66"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "ThreadSanitizer" not in run.stderr, run.stderr[-4000:]
