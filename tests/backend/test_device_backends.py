"""Device selection and the parts of the CUDA backend that run without a GPU:
"CuPy installed" versus "a GPU usable", and the pinned-memory batch stager."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

from gpunet.backend import _compat, cupy_ops, get_ops, parse_device
from gpunet.errors import DeviceError

NO_GPU = _compat.gpu_count()[0] == 0


@pytest.mark.skipif(not NO_GPU, reason="checks the messages of a machine without a GPU")
def test_cuda_without_a_gpu_says_why_and_auto_falls_back_to_the_cpu():
    assert parse_device("auto") == "cpu"
    with pytest.raises(DeviceError, match="not available") as info:
        get_ops("cuda")
    why = _compat.gpu_count()[1]
    assert why in str(info.value)
    if _compat.cupy_or_none() is None:
        assert "not installed" in why and "pip install" in why
    else:  # installed, but no driver or device: a different message
        assert "CuPy is installed but" in why


def test_sim_device_is_the_strict_backend():
    ops = get_ops("sim")
    assert ops.device == "sim" and type(ops).__name__ == "StrictOps"
    assert get_ops("sim") is ops  # created once


class _Mem(bytearray):
    def size(self) -> int:
        return len(self)


class _Event:
    created: ClassVar[list[_Event]] = []

    def __init__(self, **kw):
        self.waits = 0
        _Event.created.append(self)

    def record(self, stream):
        self.stream = stream

    def synchronize(self):
        self.waits += 1


class _DeviceArray:
    def __init__(self, shape, dtype):
        self.a = np.full(shape, np.nan, dtype)
        self.copied_from = None

    def set(self, host, stream=None):
        assert stream is not None  # asynchronous copy, ordered on the stream
        self.a[...] = host
        self.copied_from = host


def _fake_cupy(allocations):
    def alloc(n):
        allocations.append(n)
        return _Mem(n)

    cuda = SimpleNamespace(
        alloc_pinned_memory=alloc, Event=_Event, get_current_stream=lambda: "stream"
    )
    return SimpleNamespace(cuda=cuda, empty=_DeviceArray)


def test_pinned_stager_gathers_rows_and_reuses_a_buffer_only_after_its_copy():
    allocations: list[int] = []
    _Event.created.clear()
    stager = cupy_ops._PinnedStager(_fake_cupy(allocations))
    X = np.arange(50 * 3, dtype="float32").reshape(50, 3)
    order = np.random.default_rng(0).permutation(50)
    uploads = []
    for start in range(0, 50, 4):
        rows = order[start : start + 4] if start % 8 else slice(start, start + 4)
        out = stager.upload(X, rows)
        np.testing.assert_array_equal(out.a, X[rows])
        uploads.append(out)
    ring = cupy_ops._PinnedStager.RING
    assert len(allocations) == ring  # one pinned buffer per ring slot, then reused
    # 13 uploads: the first 8 found fresh slots; uploads 9..13 each waited for the
    # copy made from their slot 8 uploads before, and for nothing newer
    assert [e.waits for e in _Event.created] == [1] * 5 + [0] * 8
    assert uploads[8].copied_from.ctypes.data == uploads[0].copied_from.ctypes.data
    assert uploads[-1].a.shape == (2, 3)  # the short last batch


def test_device_oom_errors_are_recognised(monkeypatch):
    ops = cupy_ops.FusedOps()
    assert ops.is_out_of_memory(MemoryError("x"))
    assert not ops.is_out_of_memory(ValueError("x"))
    fake = object.__new__(cupy_ops.CupyOps)
    assert fake.is_out_of_memory(RuntimeError("cudaErrorMemoryAllocation: out of memory"))
    assert fake.is_out_of_memory(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED"))
