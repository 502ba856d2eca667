"""``gpunet doctor --full``: every check of the GPU path in one command, within a budget.

Five stages run in order, each in its own process with a time limit, so a stage
that hangs (a stuck kernel, a deadlocked NCCL) costs its share of the budget and
no more: environment and kernel precompile; the ``gpu``-marked tests; CPU/GPU
parity of whole fits; the GPU benchmark rows, launch counts and the crossover
batch size; device out-of-memory, ``cuda:1`` and NCCL over two ranks.

A stage may run until only the reserves of the stages after it are left: each
later stage keeps half of its nominal share (its weight over all the weights,
times the budget), so a slow stage borrows from the later ones but a hung one
cannot starve them, and time a stage does not use goes to the next ones. A
stage that finds less than ``MIN_STAGE_S`` left is skipped and says so.

Without a GPU the stages run what the host can (the NVRTC compile, the host
build of the kernels, fits on the simulated device, the CPU benchmark rows) and
list every GPU check as ``not run: no GPU (<why>)``.

The JSON and Markdown reports are rewritten (temp file + ``os.replace``) after
every stage, and by the stage's process after every check, so a run that is cut
short still leaves valid reports of what it measured.

Example:
    >>> from gpunet.cli import gpu_check
    >>> [s.name for s in gpu_check.STAGES]
    ['environment', 'gpu_tests', 'parity', 'bench', 'devices']
    >>> gpu_check.stage_status([{"status": "ok"}, {"status": "not run"}])
    'partial'
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpunet.cli.gpu_check._report import markdown, write_atomic

ROOT = Path(__file__).resolve().parents[3]  # the checkout (or site-packages) above gpunet/
CHECKOUT = (ROOT / "pyproject.toml").is_file() and (ROOT / "kernels").is_dir()
DEFAULT_BUDGET_S = 480.0
MIN_STAGE_S = 2.0
OK, FAILED, NOT_RUN = "ok", "failed", "not run"


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    weight: float  # share of the budget, relative to the stages after it


STAGES = (
    Stage("environment", "environment and kernel precompile", 1.5),
    Stage("gpu_tests", "the gpu-marked tests (pytest -m gpu)", 3.0),
    Stage("parity", "CPU/GPU parity of whole fits", 1.5),
    Stage("bench", "benchmark rows, launch counts, crossover batch size", 3.0),
    Stage("devices", "device out-of-memory, cuda:1, NCCL over 2 ranks", 1.0),
)


def stage_status(checks: list[dict[str, Any]]) -> str:
    """``failed`` if any check failed, ``ok`` if all ran, ``not run`` if none did,
    else ``partial``."""
    states = {c["status"] for c in checks}
    if FAILED in states:
        return FAILED
    if not states or states == {NOT_RUN}:
        return NOT_RUN
    return OK if states == {OK} else "partial"


def stage_limit(stages: list[Stage], i: int, left: float, budget: float) -> float:
    """Seconds stage ``i`` may run: ``left`` less half the nominal shares of the
    stages after it, and never less than ``MIN_STAGE_S`` or its share of ``left``.

    Example:
        >>> st = [Stage("a", "", 1.0), Stage("b", "", 1.0)]
        >>> stage_limit(st, 0, 100.0, 100.0), stage_limit(st, 1, 30.0, 100.0)
        (75.0, 30.0)
    """
    total = sum(s.weight for s in stages)
    reserve = sum(0.5 * budget * s.weight / total for s in stages[i + 1 :])
    share = left * stages[i].weight / sum(s.weight for s in stages[i:])
    return min(left, max(left - reserve, share, MIN_STAGE_S))


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with a checkout's root first on ``PYTHONPATH`` (so children
    import this very gpunet; an installed one is found anyway)."""
    env = {**os.environ, **extra}
    if CHECKOUT:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    return env


def default_out() -> Path:
    """``bench/results/`` of a checkout, else ``./gpunet-doctor`` (an installed wheel)."""
    return ROOT / "bench" / "results" if CHECKOUT else Path("gpunet-doctor")


def run(
    out: Path | None = None,
    budget: float = DEFAULT_BUDGET_S,
    only: list[str] | None = None,
) -> int:
    """Run the stages, print as they go, write the reports; 0 unless a check failed."""
    from gpunet.backend import _compat

    if not budget > 0:
        raise ValueError(f"budget must be > 0 seconds, got {budget!r}")
    names = [s.name for s in STAGES]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; expected some of {names}")
    stages = [s for s in STAGES if only is None or s.name in only]
    out = Path(out or default_out())
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    paths = (out / f"doctor-full-{stamp}.json", out / f"doctor-full-{stamp}.md")
    n_gpu, why = _compat.gpu_count()
    report: dict[str, Any] = {
        "command": "gpunet doctor --full",
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "budget_s": budget,
        "mode": "gpu" if n_gpu else "cpu",
        "gpus": n_gpu,
        "no_gpu_reason": why,
        "python": platform.python_version(),
        "host": platform.node(),
        "complete": False,
        "stages": [
            {"name": s.name, "title": s.title, "status": "pending", "checks": []} for s in stages
        ],
    }
    mode = f"{n_gpu} GPU(s)" if n_gpu else f"CPU mode, no GPU: {why}"
    print(f"gpunet doctor --full: {len(stages)} stages, budget {budget:g} s; {mode}")
    print(f"reports: {paths[0]} and .md (rewritten after every stage)")
    _write(report, paths)
    start = time.monotonic()
    deadline = start + budget
    for i, stage in enumerate(stages):
        left = deadline - time.monotonic()
        print(f"\n== [{i + 1}/{len(stages)}] {stage.title}")
        if left < MIN_STAGE_S:
            entry = {"status": "skipped", "checks": [], "seconds": 0.0,
                     "reason": f"budget spent: {max(left, 0):.1f} s of {budget:g} s left, "
                               f"a stage needs at least {MIN_STAGE_S:g} s"}  # fmt: skip
            print(f"  skipped: {entry['reason']}")
        else:
            limit = stage_limit(stages, i, left, budget)
            entry = _run_stage(stage, limit, out, paths[0].with_suffix(f".{stage.name}.json"))
        report["stages"][i].update(entry)
        report["elapsed_s"] = round(time.monotonic() - start, 2)
        _write(report, paths)
    report["complete"] = True
    _write(report, paths)
    print("\nsummary")
    for s in report["stages"]:
        print(f"  {s['name']:<12} {s['status']}" + (f": {s['reason']}" if s.get("reason") else ""))
    print(f"wrote {paths[0]} and {paths[1].name} ({report['elapsed_s']:.0f} s)")
    return 1 if any(s["status"] == FAILED for s in report["stages"]) else 0


def _write(report: dict[str, Any], paths: tuple[Path, Path]) -> None:
    write_atomic(paths[0], json.dumps(report, indent=1, default=str))
    write_atomic(paths[1], "\n".join(markdown(report)) + "\n")


def _run_stage(stage: Stage, limit: float, out: Path, result: Path) -> dict[str, Any]:
    """The stage in a child process of its own session, killed (with everything it
    started) when ``limit`` seconds are up; its checks are read back from ``result``."""
    env = child_env()
    cmd = [sys.executable, "-m", "gpunet.cli.gpu_check._child", stage.name, str(result), str(out),
           f"{limit:.3f}"]  # fmt: skip
    start = time.monotonic()
    sys.stdout.flush()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT if CHECKOUT else None, start_new_session=True)
    cut = False
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        cut = True
    finally:  # on time-out or Ctrl-C, and whatever the stage left behind (its session only)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    took = time.monotonic() - start
    try:
        entry: dict[str, Any] = json.loads(result.read_text())
        result.unlink()
    except (OSError, ValueError):
        entry = {"checks": [], "data": {}}
    entry["seconds"] = round(took, 2)
    entry["limit_s"] = round(limit, 2)
    checks = entry.setdefault("checks", [])
    if cut:
        entry["status"] = "cut short"
        entry["reason"] = (f"its share of the budget ({limit:.1f} s) ran out after "
                           f"{len(checks)} check(s); the rest did not run")  # fmt: skip
    elif proc.returncode != 0 and not any(c["status"] == FAILED for c in checks):
        checks.append({"name": "stage process", "status": FAILED,
                       "detail": f"exited with code {proc.returncode}"})  # fmt: skip
        entry["status"] = FAILED
    else:
        entry["status"] = stage_status(checks)
    print(f"  -> {entry['status']} ({took:.1f} s of {limit:.1f} s)")
    return entry
