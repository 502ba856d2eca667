"""Every kernel instantiation compiles with NVRTC for sm_80 and sm_90, on the CPU.

NVRTC comes from pip (nvidia-cuda-nvrtc-cu12, with cuda_fp16.h from
nvidia-cuda-runtime-cu12) and needs no driver or GPU. ``-arch=sm_XX`` makes NVRTC
run ptxas too, so the cubins are real and register spills are visible.
"""

from __future__ import annotations

import re

import pytest

from gpunet.backend import _compat, _kernels

pytestmark = pytest.mark.skipif(
    _compat.cupy_or_none() is None, reason="needs CuPy (pip install cupy-cuda12x)"
)
ARCHS = ("80", "90")


@pytest.fixture(scope="module", params=[(f, a) for f in _kernels.INSTANTIATIONS for a in ARCHS],
                ids=lambda p: f"{p[0]}-sm_{p[1]}")  # fmt: skip
def compiled(request) -> _kernels.CompileResult:
    file, arch = request.param
    return _kernels.compile_offline(file, arch, extra=("--ptxas-options=-v",))


def test_every_instantiation_compiles_to_a_cubin(compiled):
    names = _kernels.INSTANTIATIONS[compiled.file]
    assert list(compiled.lowered) == list(names)
    for expr, symbol in compiled.lowered.items():
        kernel = expr.partition("<")[0]
        assert symbol.startswith("_Z") and kernel in symbol, (expr, symbol)
    assert len(set(compiled.lowered.values())) == len(names)  # no two share a symbol
    assert compiled.cubin_bytes > 1000


def test_ptxas_reports_no_register_spills(compiled):
    # one "Used N registers" line per kernel; a spill would cost local-memory
    # traffic on every element of these memory-bound loops
    used = [int(n) for n in re.findall(r"Used (\d+) registers", compiled.log)]
    assert len(used) == len(_kernels.INSTANTIATIONS[compiled.file])
    assert max(used) <= 128
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", compiled.log)
    assert spills and all(s == ("0", "0") for s in spills)


def test_a_broken_instantiation_fails_with_the_nvrtc_log(monkeypatch):
    bad = (*_kernels.INSTANTIATIONS["optimizers.cu"], "gpunet_adam<gpunet::NoSuchType>")
    monkeypatch.setitem(_kernels.INSTANTIATIONS, "optimizers.cu", bad)
    with pytest.raises(_kernels.KernelCompileError, match="NoSuchType"):
        _kernels.compile_offline("optimizers.cu", "80")


def test_options_match_what_cupy_compiles_raw_modules_with():
    opts = _kernels.nvrtc_options("90")
    assert "-arch=sm_90" in opts and "-ftz=true" in opts and "--std=c++17" in opts
    assert any(o.startswith("-I") and o.endswith("include") for o in opts)  # cuda_fp16.h
