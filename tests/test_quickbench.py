"""``gpunet bench`` (gpunet.cli.quickbench): the structure of what it prints, in a tiny
mode. Timings are printed, never asserted."""

from __future__ import annotations

import pytest

from gpunet import cli
from gpunet.backend import _compat
from gpunet.cli import quickbench


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_quickbench_prints_a_table_row_per_workload_and_batch(capsys):
    rc = quickbench.run(quick=True, keys=("A", "B"), batch_sizes=(8, 16), samples=32, repeats=1)
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| workload | batch |"))
    assert "cpu ms/step" in header and "cpu samples/s" in header
    rows = [line for line in lines if line.startswith(("| A ", "| B "))]
    assert len(rows) == 4
    for row in rows:
        cells = _cells(row)
        assert len(cells) == len(_cells(header))
        assert cells[1] in ("8", "16")
        assert float(cells[2]) > 0  # ms/step, parsed, not judged
    assert any(line.startswith("A: ") and "wins at batch" in line for line in lines)
    if not _compat.gpu_count()[0]:
        assert "No GPU found" in out


def test_table_and_verdicts_name_the_faster_device():
    rows = [
        {"workload": "A", "name": "mnist-mlp", "batch": 32, "steps": 2,
         "ms_per_step": {"cpu": 2.0, "cuda": 4.0}, "winner": "cpu"},
        {"workload": "A", "name": "mnist-mlp", "batch": 1024, "steps": 2,
         "ms_per_step": {"cpu": 8.0, "cuda": 2.0}, "winner": "cuda"},
        {"workload": "B", "name": "small", "batch": 32, "steps": 2, "error": "ValueError: x"},
    ]  # fmt: skip
    table = quickbench.format_table(rows, ["cpu", "cuda"])
    assert "| cuda (4.00x) |" in table[3]
    assert "failed: ValueError: x" in table[4]
    assert quickbench.verdicts(rows) == [
        "A: cpu wins at batch 32; cuda wins at batch 1024",
        "B: no timing (failed)",
    ]


def test_workloads_match_issue_4():
    A, B, C = (quickbench.WORKLOADS[k] for k in "ABC")
    assert (A.sizes, A.batch, A.loss) == ((784, 512, 512, 10), 256, "ce")
    assert (B.sizes, B.batch, B.loss) == ((10, 64, 32, 1), 32, "bce")
    assert (C.sizes, C.batch, C.loss) == ((4096, 4096, 4096, 10), 1024, "ce")
    assert A.n_params == 669_706
    assert A.gemm_flops() == pytest.approx(0.8216e9, rel=1e-3)


def test_cli_bench_calls_quickbench(monkeypatch):
    seen = []
    monkeypatch.setattr(quickbench, "run", lambda quick: seen.append(quick) or 0)
    assert cli.main(["bench"]) == 0
    assert cli.main(["bench", "--full"]) == 0
    assert seen == [True, False]
