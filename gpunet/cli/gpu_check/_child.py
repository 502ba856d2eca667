"""One stage of ``gpunet doctor --full`` in its own process (started by ``run``).

Usage: ``python -m gpunet.cli.gpu_check._child STAGE RESULT_JSON OUT_DIR SECONDS``.
The stage records its checks through a :class:`Context`, which rewrites
``RESULT_JSON`` after each one: killed at any point, the stage still leaves
what it found.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> ctx = Context("parity", d / "r.json", d, seconds=60, echo=False)
    >>> ctx.check("fit", "ok", "same loss")["status"], (d / "r.json").exists()
    ('ok', True)
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from gpunet.cli.gpu_check._report import write_atomic

STATUSES = ("ok", "failed", "not run")


class Context:
    """What a stage needs: the time left, the GPU count, and ``check`` to record."""

    def __init__(self, stage: str, result: Path, out: Path, seconds: float,
                 echo: bool = True) -> None:  # fmt: skip
        from gpunet.backend import _compat

        self.stage, self.result, self.out, self.echo = stage, result, out, echo
        self.deadline = time.monotonic() + seconds
        self.n_gpu, self.why = _compat.gpu_count()
        self.checks: list[dict[str, Any]] = []
        self.data: dict[str, Any] = {}

    def left(self) -> float:
        """Seconds until this stage is killed."""
        return self.deadline - time.monotonic()

    def no_gpu(self) -> str:
        return f"no GPU ({self.why})"

    def check(self, name: str, status: str, detail: str = "", **data: Any) -> dict[str, Any]:
        """Record one check (``ok``, ``failed`` or ``not run``), print it, save the file."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        entry = {"name": name, "status": status, "detail": detail, **data}
        self.checks.append(entry)
        if self.echo:
            print(f"  {name:<34} {status}{': ' + detail if detail else ''}", flush=True)
        self.save()
        return entry

    def save(self) -> None:
        text = json.dumps({"checks": self.checks, "data": self.data}, default=str)
        write_atomic(self.result, text)


def main(argv: list[str]) -> int:
    stage, result, out, seconds = argv[0], Path(argv[1]), Path(argv[2]), float(argv[3])
    ctx = Context(stage, result, out, seconds)
    ctx.save()
    try:
        importlib.import_module(f"gpunet.cli.gpu_check._{stage}").run(ctx)
    except Exception as exc:  # a crashed stage is a failed check, not a lost report
        tail = traceback.format_exc().strip().splitlines()[-6:]
        ctx.check("stage crashed", "failed", f"{type(exc).__name__}: {exc}", traceback=tail)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
