"""``evaluate``, ``predict`` and ``test_on_batch``/``predict_on_batch``, with
Keras's ``on_test_*`` and ``on_predict_*`` callback hooks; mixed into ``Model``
through ``TrainingMixin``. ``fit``'s validation runs through ``_evaluate_batches``,
so a callback sees the same test hooks there as in ``evaluate``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from gpunet import callbacks as cbks
from gpunet.autograd import Tensor, no_grad
from gpunet.engine import step as engine_step
from gpunet.errors import InputValidationError, InvalidParameterError
from gpunet.mixed_precision import loss_input
from gpunet.models import multi_io
from gpunet.models.feeding import Batch, DataMixin, int_param
from gpunet.models.feeds import ArrayFeed, Epochs, StreamFeed, is_stream


def _steps(steps: Any) -> int | None:
    return None if steps is None else int_param("steps", steps, 1)


def _callback_list(model: Any, callbacks: Any, verbose: int, steps: int | None) -> Any:
    if callbacks is None:
        return None
    if not isinstance(callbacks, (list, tuple)):
        raise InvalidParameterError(f"callbacks must be a list of Callback, got {callbacks!r}")
    params = {"verbose": verbose, "epochs": 1, "steps": steps}
    return cbks.CallbackList(list(callbacks), model, params)


def _joined(ops: Any, outs: list[Any]) -> np.ndarray:
    return ops.to_numpy(outs[0] if len(outs) == 1 else ops.xp.concat(outs, axis=0))  # type: ignore[no-any-return]


def _outputs(ops: Any, out: Any) -> cbks.LazyLogs:
    """``{"outputs": batch outputs}`` (NumPy), read from the device only if asked."""
    return cbks.LazyLogs(lambda: {"outputs": multi_io.each(out, ops.to_numpy)})


class InferenceMixin(DataMixin):
    """The Keras inference API."""

    if TYPE_CHECKING:
        use_fastpath: bool

        def __call__(self, *args: Any, training: bool | None = None, **kwargs: Any) -> Any: ...
        def _require_compiled(self, what: str) -> None: ...
        def _reset_metrics(self) -> None: ...
        def _track(self, b: Batch, y_pred: Tensor, loss: Tensor) -> None: ...
        def _loss(self, b: Batch, y_pred: Tensor) -> Tensor: ...
        def _read_metrics(self, prefix: str = "") -> dict[str, float]: ...
        def _read_local_metrics(self, prefix: str = "") -> dict[str, float]: ...

    def _evaluate_batches(self, batches: Iterable[Batch], cbs: Any = None,
                          prefix: str = "") -> dict[str, float]:  # fmt: skip
        """Loss and metrics over ``batches``, calling the ``on_test_*`` hooks of ``cbs``."""
        hooks = cbs is not None and cbs.overrides("on_test_batch_begin", "on_test_batch_end")
        if cbs is not None:
            cbs.hook("on_test_begin")
        self._reset_metrics()
        with no_grad():
            for step, b in enumerate(batches):
                if hooks:
                    cbs.hook("on_test_batch_begin", step)
                y_pred = loss_input(multi_io.forward(self, b.x, training=False))
                self._track(b, y_pred, self._loss(b, y_pred))
                if hooks:
                    cbs.hook("on_test_batch_end", step, cbks.LazyLogs(self._read_local_metrics))
        logs = self._read_metrics()
        if cbs is not None:
            cbs.hook("on_test_end", dict(logs))
        return {prefix + k: v for k, v in logs.items()}

    def _evaluate_arrays(self, X: np.ndarray, Y: np.ndarray, W: Any, batch_size: int,
                         prefix: str = "") -> dict[str, float]:  # fmt: skip
        feed = ArrayFeed(self, X, Y, W, batch_size)
        return self._evaluate_batches(feed.one_pass(), None, prefix)

    def _feed(self, x: Any, y: Any, sample_weight: Any, batch_size: int, mode: str) -> Any:
        if is_stream(x):
            if y is not None or sample_weight is not None:
                raise InvalidParameterError(
                    f"{mode}: y and sample_weight come from the batches when x is a "
                    f"generator, PyDataset or DataLoader ({type(x).__name__}); pass x only"
                )
            feed = StreamFeed(self, x, mode)
            feed.build()
            return feed
        if mode == "predict":
            return ArrayFeed(self, self._inputs(x), None, None, batch_size, shard=False)
        return ArrayFeed(self, *self._prepare(x, y, sample_weight), batch_size)

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = "auto", sample_weight: Any = None, steps: int | None = None,
                 callbacks: list[Any] | None = None, return_dict: bool = False) -> Any:  # fmt: skip
        """Loss (and metrics) on ``x, y``: a float, a list ``[loss, *metrics]`` or a dict.

        ``x`` may also be a generator, ``PyDataset`` or ``DataLoader`` of
        ``(x, y[, sample_weight])`` batches; ``steps`` stops after that many batches.
        """
        self._require_compiled("evaluate")
        batch_size = int_param("batch_size", 32 if batch_size is None else batch_size, 1)
        epochs = Epochs(self._feed(x, y, sample_weight, batch_size, "evaluate"), _steps(steps))
        cbs = _callback_list(self, callbacks, 0 if verbose == "auto" else verbose, epochs.length)
        with self.ops.oom_guard(batch_size):
            logs = self._evaluate_batches(epochs.epoch(), cbs)
        if verbose and self.strategy.is_chief:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = 0,
                steps: int | None = None, callbacks: Any = None) -> Any:  # fmt: skip
        """Outputs for ``x`` in inference mode, batched, as a NumPy array (a list of
        them, one per output, for a model of several outputs).

        ``x`` may also be a generator, ``PyDataset`` or ``DataLoader`` of batches
        (``x``, or tuples whose first item is ``x``).
        """
        batch_size = int_param("batch_size", 32 if batch_size is None else batch_size, 1)
        epochs = Epochs(self._feed(x, None, None, batch_size, "predict"), _steps(steps))
        cbs = _callback_list(self, callbacks, 0 if verbose == "auto" else verbose, epochs.length)
        hooks = cbs is not None and cbs.overrides("on_predict_batch_begin", "on_predict_batch_end")
        ops = self.ops
        outs = []
        fast = engine_step.plan(self, training=False) if self.use_fastpath else None
        if cbs is not None:
            cbs.hook("on_predict_begin")
        with no_grad(), ops.oom_guard(batch_size):
            for step, b in enumerate(epochs.epoch()):
                if hooks:
                    cbs.hook("on_predict_batch_begin", step)
                if fast is not None:  # the same ops as model(x), without a graph
                    outs.append(fast.predict(b.x))
                else:
                    outs.append(multi_io.arrays_of(multi_io.forward(self, b.x, training=False)))
                if hooks:
                    cbs.hook("on_predict_batch_end", step, _outputs(ops, outs[-1]))
        if cbs is not None:
            cbs.hook("on_predict_end")
        if not outs:
            raise InputValidationError("predict: the data source yielded no batch")
        if isinstance(outs[0], list):  # one array per output, in the outputs' structure
            joined = [_joined(ops, [o[i] for o in outs]) for i in range(len(outs[0]))]
            return multi_io.structured(self, joined)
        return _joined(ops, outs)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                      return_dict: bool = False) -> Any:  # fmt: skip
        self._require_compiled("test_on_batch")
        X, Y, W = self._prepare(x, y, sample_weight)
        self._evaluate_arrays(X, Y, W, multi_io.rows(X))
        return self._result(return_dict)

    def predict_on_batch(self, x: Any) -> Any:
        X = self._inputs(x)
        return self.predict(X, batch_size=multi_io.rows(X))

    def _result(self, return_dict: bool) -> Any:
        logs = self._read_metrics()
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values
