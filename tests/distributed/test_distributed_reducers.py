"""Every gradient reducer sums the same way: host MPI, staged through the host,
CUDA-aware MPI, the NCCL path (with a stand-in for the library, see the script)
and the strict simulated device. Tiny buckets make each one split the buffer."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def job(tmp_path_factory, mpi_launch):
    out = tmp_path_factory.mktemp("reducers")
    ran = mpi_launch(2, "reducers.py", str(out), timeout=120)
    assert ran.rc == 0, ran.output
    single = mpi_launch(None, "reducers.py", str(out), "--single", timeout=120)
    assert single.rc == 0, single.output
    runs = [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]
    logs = [json.loads((out / f"log{r}.json").read_text()) for r in range(2)]
    return runs, logs, dict(np.load(out / "single.npz"))


@pytest.mark.parametrize("kind", ["staged", "cuda-aware", "nccl"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reducer_gives_the_weights_of_the_plain_allreduce(job, kind, dtype):
    runs, _, _ = job
    keys = [k for k in runs[0] if k.startswith(f"host_{dtype}_")]
    assert keys
    for run in runs:
        for k in keys:
            np.testing.assert_array_equal(run[k.replace("host", kind, 1)], run[k], err_msg=k)


def test_buckets_split_the_buffer_and_nccl_takes_it_whole(job):
    _, logs, _ = job
    calls, steps = logs[0]["calls"], 2 * 3  # 2 epochs of 3 batches
    assert calls["host_float64"] == calls["staged_float64"] == calls["cuda-aware_float64"]
    assert calls["host_float64"] == steps * -(-258 * 8 // 256)  # 258 weights, 256-byte buckets
    assert calls["host_float32"] == steps * -(-258 * 4 // 256)
    assert calls["nccl_float64"] == calls["nccl_float32"] == steps


def test_nccl_path_makes_one_communicator_from_rank_0s_id(job):
    _, logs, _ = job
    for log in logs:  # the script asserts the id and the rank inside the stand-in
        assert log["nccl"].count("communicator") == 2  # one per training (float64, float32)
        assert log["nccl"].count("allReduce 258") == 12
        assert log["polls"] > 12  # the stream was waited on, not assumed done


def test_simulated_device_trains_like_one_process(job):
    runs, _, single = job
    for k in single:
        assert float(np.max(np.abs(runs[0][k] - single[k]))) <= 1e-6, k
        np.testing.assert_array_equal(runs[1][k], runs[0][k])
