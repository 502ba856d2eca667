"""Data-parallel training over MPI processes, on CPUs or GPUs (``pip install 'gpunet[mpi]'``).

Launch the same script on every process, as HPC jobs are launched::

    mpiexec -n 4 python train.py        # or: srun -n 4 python train.py

Keras style: one changed line, ``strategy=`` in ``compile``. Every process passes
the same data; ``batch_size`` is the global batch, split across the processes;
only rank 0 prints progress and writes checkpoints::

    import gpunet as gn

    strategy = gn.distributed.MPIStrategy()          # reads rank and size from MPI
    model = gn.Sequential([gn.layers.Dense(64, activation="relu", input_shape=(20,)),
                           gn.layers.Dense(1, activation="sigmoid")], device="cpu")
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"],
                  strategy=strategy)                 # <- the one-line change
    model.fit(X, y, batch_size=256, epochs=10,
              callbacks=[gn.callbacks.BackupAndRestore("backup/")])

With ``device="cuda"`` each process takes the GPU of its local rank and the
gradients are summed by NCCL (``gpu_reduce="nccl"``, the default), by a
CUDA-aware MPI (``"mpi"``) or through host memory (``"host"``).

PyTorch style: wrap the optimizer; each process trains on its rows::

    strategy = gn.distributed.init()
    net = Net()
    net(X[:1])                                       # build the layers
    opt = gn.distributed.DistributedOptimizer(optim.Adam(net.parameters(), lr=1e-3))
    X_local, y_local = gn.distributed.shard(X, y)
    for epoch in range(10):
        loss = loss_fn(net(X_local), y_local)
        opt.zero_grad()
        loss.backward()
        opt.step()                                   # averages the gradients, then steps

scikit-learn style: the estimators take the strategy as a parameter; every process
passes the same data and ends with the same fitted attributes::

    from gpunet.sklearn import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(100,), random_state=0,
                        strategy=gn.distributed.MPIStrategy())
    clf.fit(X, y)                                    # each batch split across processes

An uncaught exception on any process ends every process (``MPI_Abort``); a
process that dies or hangs ends the job after ``timeout`` seconds at the
latest. Processes that built different models raise ``DistributedError`` on
every process before the first step. MPI and NCCL have no authentication:
run them on trusted networks only.
"""

from __future__ import annotations

from gpunet.distributed._optimizer import (
    DistributedOptimizer,
    broadcast_parameters,
    init,
    shard,
)
from gpunet.distributed._strategy import MPIStrategy
from gpunet.errors import DistributedError

__all__ = [
    "DistributedError",
    "DistributedOptimizer",
    "MPIStrategy",
    "broadcast_parameters",
    "init",
    "shard",
]
