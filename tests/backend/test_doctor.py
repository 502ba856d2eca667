"""``gpunet doctor`` on a machine without a GPU: clear, useful, and exit code 0."""

from __future__ import annotations

import pytest

from gpunet import cli
from gpunet.backend import _compat, _kernels
from gpunet.cli import doctor

needs_cupy = pytest.mark.skipif(_compat.cupy_or_none() is None, reason="needs CuPy")


def test_fused_ops_table_follows_the_instantiation_lists():
    table = dict(doctor.fused_ops_table())
    assert table["dense + relu"] == "float16 float32 float64 bfloat16"
    assert table["dense + elu"] == ""  # no kernel: generic CuPy
    assert all(table[k] for k in ("softmax + sparse xent", "Adam / AdamW update", "SGD update"))


@needs_cupy
def test_doctor_without_a_gpu_reports_why_and_compiles_every_kernel(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "ARCHS", ("90",))  # one arch keeps the test short
    assert cli.main(["doctor", "--precompile"]) == 0
    out = capsys.readouterr().out
    n, why = _compat.gpu_count()
    if n == 0:
        assert why in out and "cuda" in out
        assert "precompile                 skipped: loading kernels needs a GPU" in out
        assert "no GPU; the CPU path needs no check here" in out
    for file, names in _kernels.INSTANTIATIONS.items():
        assert f"{file} sm_90" in out and f"{len(names)}/{len(names)} instantiations OK" in out
    for name in ("NumPy", "CuPy", "CUDA runtime", "CUDA driver", "NVRTC"):
        assert f"\n  {name} " in out
    assert out.rstrip().endswith("result: OK")


@needs_cupy
def test_doctor_fails_when_a_kernel_does_not_compile(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "ARCHS", ("80",))
    bad = (*_kernels.INSTANTIATIONS["optimizers.cu"], "gpunet_sgd<gpunet::Missing>")
    monkeypatch.setitem(_kernels.INSTANTIATIONS, "optimizers.cu", bad)
    assert doctor.run(precompile=False) == 1
    out = capsys.readouterr().out
    assert "optimizers.cu sm_80" in out and "FAILED" in out and "Missing" in out
    assert "PROBLEMS FOUND" in out
