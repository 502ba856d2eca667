"""The reports of ``gpunet doctor --full``: atomic writes, and the Markdown view.

Example:
    >>> from gpunet.cli.gpu_check._report import markdown
    >>> report = {"command": "gpunet doctor --full", "started": "now", "mode": "cpu",
    ...           "budget_s": 60, "no_gpu_reason": "no driver", "complete": True,
    ...           "stages": [{"name": "parity", "title": "fits", "status": "ok", "checks": [
    ...               {"name": "mlp float32", "status": "ok", "detail": "1e-7"}]}]}
    >>> markdown(report)[-1]
    '| mlp float32 | ok | 1e-7 |'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one,
    never half of one (a run killed mid-write still leaves valid JSON)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict[str, Any]) -> list[str]:
    """The report as Markdown: one table of checks per stage."""
    mode = report["mode"]
    lines = [
        f"# {report['command']}, {report['started']}",
        "",
        f"- mode: **{mode}**" + ("" if mode == "gpu" else f" (no GPU: {report['no_gpu_reason']})"),
        f"- budget: {report['budget_s']:g} s; elapsed: {report.get('elapsed_s', 0):.0f} s; "
        + ("complete" if report["complete"] else "**incomplete** (still running, or cut short)"),
        "- statuses: `ok`; `failed`; `not run` (the reason says why: no GPU, a missing "
        "package, one GPU only); `cut short` / `skipped` (the budget ran out)",
    ]
    for stage in report["stages"]:
        lines += ["", f"## {stage['name']}: {stage['title']} — {stage['status']}", ""]
        if stage.get("reason"):
            lines += [f"{stage['reason']}", ""]
        if "limit_s" in stage:
            lines += [f"{stage['seconds']:.1f} s (limit {stage.get('limit_s', 0):.0f} s)", ""]
        if stage["checks"]:
            lines += ["| check | status | detail |", "|---|---|---|"]
            lines += [f"| {_cell(c['name'])} | {c['status']} | {_cell(c.get('detail', ''))} |"
                      for c in stage["checks"]]  # fmt: skip
    return lines
