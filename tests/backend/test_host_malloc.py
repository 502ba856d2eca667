"""The host build's malloc thresholds (``_host._keep_heap``): buffers of a conv step's
size are reused from the heap instead of faulted in fresh on every allocation."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from gpunet.backend import _host

_FAULTS = """
import resource, numpy as np
from gpunet.backend import _host
_host._keep_heap()
bufs = [np.ones(18 << 18, np.float32) for _ in range(3)]  # warm: the heap grows once
del bufs
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # a step's 18 MiB columns, their gradient and an output, then free
    bufs = [np.empty(18 << 18, np.float32) for _ in range(3)]
    for a in bufs:
        a.fill(1.0)
    del bufs, a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(**env: str) -> int:
    full = {**os.environ, "GPUNET_MALLOPT": "1", **env}
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        full.pop(var, None)
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=full, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc's mallopt is Linux only")
def test_big_buffers_are_reused_not_faulted_in() -> None:
    pages = (18 << 20) // 4096
    kept, default = _faults(), _faults(GPUNET_MALLOPT="0")
    assert default > 4 * pages, default  # glibc's default: fresh pages again and again
    assert kept < pages, kept  # reused: not one buffer's worth of faults in 60


def test_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUNET_MALLOPT", "0")
    assert _host._keep_heap() is False
