"""Stage 2: ``pytest -m gpu`` over the checkout's tests, every failure listed.

A subprocess with a time limit a little under the stage's, so what it finished is
read back from its verbose log even when it is cut short. Modules that need what
the machine lacks (array-api-strict, mpi4py, torch) skip themselves visibly.
Without a GPU the tests are still collected and run, and skip: that proves they
import on this machine, and the check says ``not run: no GPU``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from gpunet.cli.gpu_check import CHECKOUT, ROOT
from gpunet.cli.gpu_check._child import Context

# "tests/x.py::test_y[p] PASSED   [ 12%]" (pytest -v, classic console output)
_LINE = re.compile(
    r"^(\S+::[^\n\[]+(?:\[[^\n]*\])?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", re.M
)
_SKIP = re.compile(r"^SKIPPED \[(\d+)\] [^:]+:\d+: (.*)$", re.M)


def run(ctx: Context) -> None:
    tests = ROOT / "tests"
    if not CHECKOUT or not (tests / "gpu" / "test_gpu_parity.py").is_file():
        ctx.check(
            "pytest -m gpu",
            "not run",
            f"no test suite at {tests} (an installed wheel "
            "ships none): run from a checkout, PYTHONPATH=. python -m gpunet doctor --full",
        )
        return  # fmt: skip
    log = ctx.out / "doctor-gpu-tests.log"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-rfEs", "--tb=short",
           "-p", "no:cacheprovider", "-o", "console_output_style=classic",
           "-o", "addopts=--strict-markers --import-mode=importlib", str(tests)]  # fmt: skip
    limit = max(1.0, ctx.left() - 1.5)  # leave time to read the log back
    timed_out = False
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                timeout=limit).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            timed_out, rc = True, -1
    text = log.read_text(errors="replace")
    outcomes, skips = parse_log(text)
    counts = Counter(outcomes.values())
    failed = sorted(k for k, v in outcomes.items() if v in ("FAILED", "ERROR", "XPASS"))
    ctx.data.update(counts=dict(counts), failed=failed, skip_reasons=dict(skips.most_common(8)),
                    log=str(log))  # fmt: skip
    summary = ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) or "no tests ran"
    for name in failed:
        ctx.check(name, "failed", _failure_line(text, name))
    if timed_out:
        ctx.check("pytest -m gpu", "failed" if failed else "not run",
                  f"cut short after {limit:.0f} s: {summary}; log {log}")  # fmt: skip
    elif rc not in (0, 5) or failed:
        ctx.check("pytest -m gpu", "failed", f"exit {rc}: {summary}; log {log}")
    elif not ctx.n_gpu:
        ctx.check("pytest -m gpu", "not run", f"{ctx.no_gpu()}: {summary}; log {log}")
    else:
        skipped = counts.get("SKIPPED", 0)
        why = "; ".join(f"{n} x {w}" for w, n in skips.most_common(4))
        ctx.check("pytest -m gpu", "ok", summary + (f" (skipped: {why})" if skipped else ""))


def parse_log(text: str) -> tuple[dict[str, str], Counter[str]]:
    """``({test id: outcome}, Counter(skip reason -> count))`` of a ``pytest -v -rs`` log.

    Example:
        >>> log = "tests/a.py::t[x y-cuda] SKIPPED\\nSKIPPED [2] tests/a.py:9: needs a GPU"
        >>> parse_log(log)
        ({'tests/a.py::t[x y-cuda]': 'SKIPPED'}, Counter({'needs a GPU': 2}))
    """
    skips: Counter[str] = Counter()
    for n, why in _SKIP.findall(text):
        skips[why.strip()] += int(n)
    return dict(_LINE.findall(text)), skips


def _failure_line(text: str, name: str) -> str:
    """The ``E ...`` line of the short summary for ``name``, else the test id."""
    short = name.split("::", 1)[-1]
    for line in text.splitlines():
        if line.startswith(("FAILED", "ERROR")) and short in line:
            return line[:400]
    return Path(name).name
