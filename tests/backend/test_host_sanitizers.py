"""The host-run kernel comparisons again, built with AddressSanitizer and UBSan.

An out-of-bounds read or write, or undefined behaviour (signed overflow in the
index arithmetic, a bad shift), aborts the run with the kernel's file and line.
A negative control proves the sanitizer is live: a launch told one row too many
must be reported as a heap-buffer-overflow in the loss kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _runtime(name: str) -> str | None:
    try:
        out = subprocess.run(["g++", f"-print-file-name={name}"], capture_output=True, text=True)
    except OSError:
        return None
    path = out.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


ASAN, UBSAN = _runtime("libasan.so"), _runtime("libubsan.so")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (ASAN and UBSAN), reason="needs g++ with libasan and libubsan"),
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GPUNET_HOST_SANITIZE="1",
        LD_PRELOAD=f"{ASAN} {UBSAN}",
        PYTHONMALLOC="malloc",  # else small ctypes buffers come from pymalloc, unseen
        ASAN_OPTIONS="detect_leaks=0",
        UBSAN_OPTIONS="print_stacktrace=1",
    )
    return env


def test_host_kernel_comparisons_are_clean_under_the_sanitizers():
    # the small and odd sizes cover every instantiation; the multi-grid ones add time only
    small = "not 8193 and not 32771 and not 1029"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
           str(HERE / "test_host_kernels.py"), str(HERE / "test_conv_kernels.py"),
           "-k", small]  # fmt: skip
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "passed" in out.stdout and "Sanitizer" not in out.stderr


def test_the_sanitizer_catches_a_launch_past_the_end():
    code = (
        "import numpy as np, hostbuild\n"
        "from gpunet.backend import _kernels as K\n"
        "with K.use_runner(hostbuild.HostRunner()):\n"
        "    Z = np.zeros((37, 5), 'float32')\n"
        "    K._rows = lambda Z: ('float32', 38, 5)  # one row too many\n"
        "    K.sparse_softmax_xent(Z, np.zeros(38, 'int64'), 1.0, 0.0)\n"
    )
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert out.returncode != 0
    assert "heap-buffer-overflow" in out.stderr
    assert "softmax_xent_row" in out.stderr and "losses.cuh" in out.stderr


def test_pool_kernel_comparisons_are_clean_under_the_sanitizers():
    # the CUDA pool kernels at the small sizes (every dtype, geometry and padding form)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
           str(HERE / "test_pool_kernels.py"), "-k", "cuda and not 17 and not torch"]  # fmt: skip
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "passed" in out.stdout and "Sanitizer" not in out.stderr


def test_block_cooperative_kernels_are_clean_under_the_sanitizers():
    # the tiled attention kernels (shared memory, barriers: the shim's std::thread path)
    # in float64, every mask form and both head bounds, and the shim's own tests
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
           str(HERE / "test_flash_kernels.py"), str(HERE / "test_host_shim.py"),
           "-k", "float64 or finite or shim or barrier or reduction"]  # fmt: skip
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "passed" in out.stdout and "Sanitizer" not in out.stderr


def test_numpy_backends_host_build_is_clean_under_the_sanitizers(tmp_path):
    """host.cpp itself (NumpyOps' kernels: attention rows and heads over NumPy's cblas,
    layer norm with its residual, bias and activations), built with the sanitizers by a
    compiler wrapper into a cache of its own (it found a NaN's exponent bits shifted
    past int's range in the softmax's exp)."""
    cxx = tmp_path / "sanitized-g++"
    cxx.write_text('#!/bin/sh\nexec g++ -fsanitize=address,undefined '
                   '-fno-sanitize-recover=undefined -fno-omit-frame-pointer "$@"\n')  # fmt: skip
    cxx.chmod(0o755)
    env = _env()
    env.update(CXX=str(cxx), GPUNET_CACHE_DIR=str(tmp_path / "cache"))
    cases = "numpy+host and (attention or layernorm or bias_activation) and not large"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
           str(HERE / "test_attention_host.py"), str(HERE / "test_parity.py"),
           "-k", f"not parity or ({cases})"]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "passed" in out.stdout and "runtime error" not in out.stderr + out.stdout
    built = list((tmp_path / "cache").glob("host-*.so"))
    assert built, "the host kernels were not built with the wrapper"
    nm = subprocess.run(["nm", "-D", str(built[0])], capture_output=True, text=True)
    assert "__asan" in nm.stdout, "the build is not instrumented"
