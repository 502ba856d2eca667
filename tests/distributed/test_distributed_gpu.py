"""Data parallel on GPUs (gpu-marked: run wherever CuPy sees a GPU, skipped elsewhere).

One rank per GPU; with one GPU the NCCL communicator has one rank, which still
runs the real path: the unique id, the communicator, ``allReduce`` on device
pointers. The staged path may share one GPU between two ranks.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpunet.backend import _compat

GPUS, WHY = _compat.gpu_count()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(GPUS == 0, reason=f"needs CuPy + a GPU: {WHY}")]
TOL = {"float64": 1e-10, "float32": 1e-5}  # GPU and CPU matmuls sum in different orders


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mpi_launch):
    out = tmp_path_factory.mktemp("cpu")
    job = mpi_launch(None, "equivalence.py", str(out), "--single", timeout=300)
    assert job.rc == 0, job.output
    return dict(np.load(out / "rank0.npz"))


@pytest.mark.parametrize(("gpu_reduce", "ranks"), [("nccl", None), ("host", 2)])
def test_gpu_ranks_train_like_one_cpu_process(reference, tmp_path, mpi_launch, gpu_reduce, ranks):
    n = ranks or GPUS
    job = mpi_launch(n, "equivalence.py", str(tmp_path), "--device", "cuda", "--gpu-reduce",
                     gpu_reduce, timeout=600)  # fmt: skip
    assert job.rc == 0, job.output
    runs = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(n)]
    for dtype in ("float64", "float32"):
        keys = [k for k in reference if k.startswith(("fit_" + dtype, "loop_" + dtype))]
        keys = [k for k in keys if "_step" in k]
        worst = max(float(np.max(np.abs(runs[0][k] - reference[k]))) for k in keys)
        assert worst <= TOL[dtype], f"{gpu_reduce}, {n} ranks, {dtype}: max |dw| = {worst:.3g}"
    for run in runs[1:]:
        for k in run:
            np.testing.assert_array_equal(run[k], runs[0][k], err_msg=k)
