"""The host shim's block-cooperative path (``__shared__``, ``__syncthreads``).

A block reduction through shared memory must give the exact sum over several
blocks and block sizes; the same kernel with its barrier left out must give a wrong
answer, on every run: the shim runs one thread of a block at a time, each as far as
the barriers allow, and poisons shared arrays per block, so a missing barrier is
caught by design, not by luck (what it cannot catch: host_grid_shim.h).
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hostbuild import build, translation_unit

REDUCE = """
template <int N>
__global__ void block_sum(float* out, const float* x, long long n) {
    GPUNET_SHARED(float, s, [N]);
    unsigned t = threadIdx.x;
    long long i = (long long)blockIdx.x * N + t;
    s[t] = i < n ? x[i] : 0.0f;
    SYNC_LOAD
    for (unsigned w = N / 2; w > 0; w /= 2) {
        if (t < w) s[t] += s[t + w];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}
"""
NAMES = ("block_sum<8>", "block_sum<64>")


def _lib(sync_load: str):
    text = REDUCE.replace("SYNC_LOAD", sync_load)
    lib = ctypes.CDLL(str(build("block_sum.cu", text=translation_unit(text, NAMES))))
    lib.gpunet_host_call.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.POINTER(ctypes.c_void_p)]  # fmt: skip
    return lib


def _block_sums(lib, which: int, block: int, x: np.ndarray) -> np.ndarray:
    grid = -(-x.size // block)
    out = np.full(grid, np.nan, dtype="float32")
    holders = [np.array([out.ctypes.data], np.uintp), np.array([x.ctypes.data], np.uintp),
               np.array(x.size, np.int64)]  # fmt: skip
    argv = (ctypes.c_void_p * 3)(*[h.ctypes.data for h in holders])
    assert lib.gpunet_host_call(which, grid, block, argv) == 0
    return out


@pytest.mark.parametrize(("which", "block"), [(0, 8), (1, 64)])
def test_a_shared_memory_reduction_with_barriers_is_exact(host_runner, which, block):
    x = np.arange(1, 3 * block - 2, dtype="float32")  # 3 blocks, the last one partial
    got = _block_sums(_lib("__syncthreads();"), which, block, x)
    want = np.add.reduceat(x, np.arange(0, x.size, block))
    np.testing.assert_array_equal(got, want)


def test_a_missing_barrier_gives_a_wrong_sum_on_every_run(host_runner):
    x = np.ones(64 * 3, dtype="float32")
    lib = _lib("")  # no barrier between the loads and the first reads of s
    for _ in range(3):
        got = _block_sums(lib, 1, 64, x)
        # thread 0 adds slots the others had not filled: poisoned (NaN) in every block
        assert np.all(np.isnan(got)), got
