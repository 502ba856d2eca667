"""Module fixtures shared by the tests that compare MPI jobs with one process."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def reference_and_ranks(script: str, ranks: list[int]) -> tuple[Any, Any]:
    """Module fixtures ``reference`` (``script --single``: rank 0's arrays) and
    ``ranks`` (``script`` on each of ``ranks``: ``(n, [arrays of each rank])``)."""

    @pytest.fixture(scope="module")
    def reference(tmp_path_factory: Any, mpi_launch: Any) -> dict[str, Any]:
        out = tmp_path_factory.mktemp("single")
        job = mpi_launch(None, script, str(out), "--single", timeout=120)
        assert job.rc == 0, job.output
        return dict(np.load(out / "rank0.npz"))

    @pytest.fixture(scope="module", params=ranks)
    def ranks_fixture(request: Any, tmp_path_factory: Any, mpi_launch: Any) -> Any:
        n = request.param
        out = tmp_path_factory.mktemp(f"ranks{n}")
        job = mpi_launch(n, script, str(out), timeout=180)
        assert job.rc == 0, job.output
        return n, [dict(np.load(out / f"rank{r}.npz")) for r in range(n)]

    return reference, ranks_fixture
