"""gpunet itself, measured through its public entry points so the numbers stay
valid while the internals change:

* ``gpunet`` - the headline figure: ``model.fit(X, y, batch_size=B, epochs=1,
  shuffle=False, verbose=0)`` over ``n`` batches, wall time / ``n``. Everything a
  user pays per step is in it (fit loop, callbacks, NaN check), plus one fit
  call's setup per block, which is small against 50-1000 steps.
* ``gpunet_shuffled`` - the same with ``shuffle=True`` (adds the batch gather).
* ``gpunet_train_on_batch`` - ``model.train_on_batch(xb, yb)`` per batch: the
  public per-batch API, including its per-call input validation.
* ``gpunet_inner`` - the inner step ``model._train_step(batch)`` on batches from
  ``model._batches`` (semi-private): the step without the fit loop around it.
  If those internals change shape, the row is reported as unavailable with the
  reason instead of breaking the run.
* ``gpunet_predict`` - ``model.predict(X, batch_size=B)``.

All start from ``Data.weights`` (``model.set_weights``), the peers' weights.
"""

from __future__ import annotations

from typing import Any

from _workloads import Data, Workload

from gpunet.cli.quickbench import build_model


def _model(w: Workload, data: Data, device: str) -> Any:
    model = build_model(w, device)
    model.set_weights([a for pair in data.weights for a in pair])  # Keras layout
    return model


class GpunetFit:
    def __init__(self, w: Workload, data: Data, device: str = "cpu", shuffle: bool = False) -> None:
        self.w, self.X, self.y, self.shuffle = w, data.X, data.y, shuffle
        self.model = _model(w, data, device)

    def sync(self) -> None:
        self.model.ops.synchronize()

    def run(self, n: int) -> None:
        m = n * self.w.batch
        self.model.fit(
            self.X[:m],
            self.y[:m],
            batch_size=self.w.batch,
            epochs=1,
            shuffle=self.shuffle,
            verbose=0,
        )

    def first_loss(self) -> float:
        B = self.w.batch
        return float(self.model.evaluate(self.X[:B], self.y[:B], batch_size=B, verbose=0))


class GpunetTrainOnBatch(GpunetFit):
    def __init__(self, w: Workload, data: Data, device: str = "cpu") -> None:
        super().__init__(w, data, device)
        self.pos = 0

    def run(self, n: int) -> None:
        B = self.w.batch
        for _ in range(n):
            s = (self.pos % self.w.steps) * B
            self.pos += 1
            self.model.train_on_batch(self.X[s : s + B], self.y[s : s + B])


class GpunetInner(GpunetFit):
    def __init__(self, w: Workload, data: Data, device: str = "cpu") -> None:
        super().__init__(w, data, device)
        model, B = self.model, w.batch
        model.fit(self.X[:B], self.y[:B], batch_size=B, epochs=1, verbose=0)  # builds Adam
        X, Y, _ = model._prepare(self.X, self.y)
        ops = model.ops
        self.batches = list(model._batches(ops.asarray(X), ops.asarray(Y), None, B))
        model.train()  # fit restores the previous mode; the step expects training mode
        self.pos = 0

    def run(self, n: int) -> None:
        step = self.model._train_step
        for _ in range(n):
            step(self.batches[self.pos % len(self.batches)])
            self.pos += 1


class GpunetPredict(GpunetFit):
    def run(self, n: int) -> None:
        B = self.w.batch
        self.model.predict(self.X[: n * B], batch_size=B)
