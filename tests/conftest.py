"""Shared fixtures: devices, dtypes and tolerances.

``DEVICES`` always holds "cpu" and the strict simulated device "sim" (a device that
is not the host, refusing implicit host/device mixing); "cuda" is marked ``gpu``
and shows up as SKIPPED on machines without CuPy and a GPU, never hidden.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet.backend import _compat

HAS_GPU = _compat.gpu_count()[0] > 0
needs_gpu = pytest.mark.skipif(
    not HAS_GPU, reason=f"needs CuPy + a CUDA GPU: {_compat.gpu_count()[1]}"
)
GPU = pytest.param("cuda", marks=[pytest.mark.gpu, needs_gpu])
RTOL = {"float32": 1e-5, "float64": 1e-12}
ATOL = {"float32": 1e-6, "float64": 1e-12}


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts from the same seed and the default float dtype."""
    gn.utils.set_random_seed(1234)
    gn.config.set_floatx("float32")
    yield
    gn.config.set_floatx("float32")


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print how many ops/layers passed the float64 gradient check."""
    import sys

    cases = sys.modules.get("gradcheck_cases")  # imported by test_gradcheck when it ran
    if cases is not None and cases.CHECKED:
        terminalreporter.write_line(
            f"gradient check (float64 central differences): {len(cases.CHECKED)}/"
            f"{len(cases.all_cases())} ops, activations, losses and layers passed"
        )
