"""``gpunet doctor --full``: budget enforcement, reports that survive a cut-short
run, and an honest CPU mode (every GPU check ``not run: no GPU (<why>)``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpunet import cli
from gpunet.backend import _kernels
from gpunet.cli import gpu_check
from gpunet.cli.gpu_check import _child, _devices, _environment, _parity
from gpunet.cli.gpu_check._report import markdown

ROOT = Path(gpu_check.__file__).resolve().parents[3]
RAN = ("ok", "partial", "failed", "not run", "cut short")
WHY = "no CUDA driver (a test's reason)"


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gpunet", "doctor", "--full", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.mark.slow
def test_a_tiny_budget_leaves_valid_reports_complete_up_to_where_it_ran_out(tmp_path):
    proc = _cli("--budget", "5", "--out", str(tmp_path))
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    (js,) = tmp_path.glob("doctor-full-*.json")
    (md,) = tmp_path.glob("doctor-full-*.md")
    report = json.loads(js.read_text())
    assert report["complete"] and report["budget_s"] == 5
    assert report["elapsed_s"] < 5 + 3  # the budget is enforced, with start-up slack
    stages = report["stages"]
    assert [s["name"] for s in stages] == [s.name for s in gpu_check.STAGES]
    states = [s["status"] for s in stages]
    first_skip = states.index("skipped")  # 5 stages of >= 2 s each cannot fit in 5 s
    assert all(s in RAN for s in states[:first_skip]), states
    assert all(s == "skipped" for s in states[first_skip:]), states
    for s in stages[first_skip:]:
        assert s["reason"].startswith("budget spent") and not s["checks"]
    env = stages[0]
    assert env["checks"][0]["name"] == "gpunet"  # what a killed stage had found is kept
    assert all(c["status"] in ("ok", "failed", "not run") for c in env["checks"])
    if env["status"] == "cut short":
        assert "ran out" in env["reason"]
    text = md.read_text()
    assert all(f"## {s['name']}: " in text for s in stages)
    assert "budget spent" in text and proc.stdout.count("\n== [") == len(stages)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


@pytest.fixture
def ctx(tmp_path):
    c = _child.Context("test", tmp_path / "r.json", tmp_path, seconds=60, echo=False)
    c.n_gpu, c.why = 0, WHY
    return c


def _by_name(ctx):
    return {c["name"]: c for c in ctx.checks}


@pytest.mark.slow
def test_without_a_gpu_the_environment_stage_compiles_and_says_what_needs_one(ctx, monkeypatch):
    pytest.importorskip("cupy")
    monkeypatch.setattr(_environment.doctor, "ARCHS", ("90",))
    monkeypatch.setattr(_kernels, "INSTANTIATIONS",
                        {"optimizers.cu": _kernels.INSTANTIATIONS["optimizers.cu"]})  # fmt: skip
    _environment.run(ctx)
    checks = _by_name(ctx)
    for name in ("GPUs", "cuBLAS", "precompile (load on the GPU)"):
        assert checks[name]["status"] == "not run"
        assert checks[name]["detail"] == f"no GPU ({WHY})"
    assert checks["NVRTC optimizers.cu sm_90"]["status"] == "ok"
    n = len(_kernels.INSTANTIATIONS["optimizers.cu"])  # 8 with bfloat16
    assert f"{n}/{n} instantiations OK" in checks["NVRTC optimizers.cu sm_90"]["detail"]
    assert json.loads(ctx.result.read_text())["checks"] == ctx.checks  # saved as it goes


def test_without_a_gpu_parity_runs_on_the_simulated_device(ctx, monkeypatch):
    pytest.importorskip("array_api_strict")
    name = "dense relu/tanh, sparse CE, Adam"
    monkeypatch.setattr(_parity, "CASES", {name: _parity.CASES[name]})
    _parity.run(ctx)
    checks = _by_name(ctx)
    f32, f16 = checks[f"{name} [float32]"], checks[f"{name} [float16]"]
    assert f32["status"] == "ok" and f32["detail"].startswith("sim vs cpu")
    assert f32["loss_rel"] <= _parity.F32_LOSS_RTOL
    assert f16["status"] == "not run" and f16["detail"].startswith(f"no GPU ({WHY})")


def test_parity_fails_when_the_devices_disagree(ctx, monkeypatch):
    pytest.importorskip("array_api_strict")
    name = "relu, Poisson, Adam"
    monkeypatch.setattr(_parity, "CASES", {name: _parity.CASES[name]})
    real = _parity.fit

    def skewed(case, device, dtype, epochs=3):
        losses, weights = real(case, device, dtype, epochs)
        return (losses * 1.01, weights) if device == "sim" else (losses, weights)

    monkeypatch.setattr(_parity, "fit", skewed)
    _parity.run(ctx)
    assert _by_name(ctx)[f"{name} [float32]"]["status"] == "failed"


def test_without_a_gpu_the_device_checks_are_not_run_with_the_reason(ctx, monkeypatch):
    jobs = []
    monkeypatch.setattr(_devices, "_mpi_job", lambda ctx, mpiexec, label, *a: jobs.append(label))
    monkeypatch.setattr(_devices, "_mpiexec", lambda: "/usr/bin/mpiexec")
    monkeypatch.setattr(_devices.importlib.util, "find_spec", lambda name: object())
    _devices.run(ctx)
    checks = _by_name(ctx)
    for name in ("out-of-memory raises and recovers", "cuda:1", "NCCL over 2 ranks"):
        assert checks[name]["status"] == "not run"
        assert checks[name]["detail"] == f"no GPU ({WHY})"
    assert jobs == ["MPI over 2 ranks (cpu, host reducer)"]  # the CPU still runs the ranks


def test_a_stage_that_crashes_is_a_failed_check_not_a_lost_report(tmp_path):
    result = tmp_path / "r.json"
    assert _child.main(["no_such_stage", str(result), str(tmp_path), "10"]) == 1
    (check,) = json.loads(result.read_text())["checks"]
    assert check["name"] == "stage crashed" and check["status"] == "failed"
    assert "no_such_stage" in check["detail"]


def test_statuses_budget_and_stage_names_are_checked():
    assert gpu_check.stage_status([]) == "not run"
    assert gpu_check.stage_status([{"status": "ok"}, {"status": "failed"}]) == "failed"
    with pytest.raises(ValueError, match="budget must be > 0"):
        gpu_check.run(budget=0)
    with pytest.raises(ValueError, match=r"unknown stage.*gpu_testz"):
        cli.main(["doctor", "--full", "--only", "gpu_testz"])
    with pytest.raises(ValueError, match="status must be one of"):
        _child.Context("x", Path(os.devnull), Path("."), 1, echo=False).check("c", "fine")


def test_the_markdown_report_says_what_was_not_run_and_why():
    report = {"command": "gpunet doctor --full", "started": "t", "mode": "cpu", "budget_s": 9,
              "no_gpu_reason": WHY, "complete": False, "stages": [
                  {"name": "devices", "title": "d", "status": "not run", "checks": [
                      {"name": "cuda:1", "status": "not run", "detail": f"no GPU ({WHY})"}]},
                  {"name": "bench", "title": "b", "status": "skipped", "checks": [],
                   "reason": "budget spent: 0.5 s of 9 s left"}]}  # fmt: skip
    text = "\n".join(markdown(report))
    assert f"| cuda:1 | not run | no GPU ({WHY}) |" in text
    assert "**incomplete**" in text and "budget spent: 0.5 s" in text
