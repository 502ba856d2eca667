"""``compile``, ``fit``, ``evaluate``, ``predict`` and the ``*_on_batch`` methods.

Data is validated once on the host, then moved to the model's device once; each
batch is sliced (or gathered through a shuffled index) on the device. Loss and
metrics accumulate on the device: the loop itself reads nothing back, the
progress bar does, at most every 0.1 s, and so does the epoch end.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np

from gpunet import callbacks as cbks
from gpunet import functional as F
from gpunet import losses as losses_mod
from gpunet import metrics as metrics_mod
from gpunet import optimizers as optimizers_mod
from gpunet import random as grandom
from gpunet.autograd import Tensor
from gpunet.engine import sequence
from gpunet.engine import step as engine_step
from gpunet.errors import (
    InputValidationError,
    InvalidParameterError,
    NonFiniteError,
    NotCompiledError,
)
from gpunet.layers import base
from gpunet.mixed_precision import loss_input
from gpunet.models import multi_io, trainable
from gpunet.models.feeding import Batch, int_param
from gpunet.models.feeds import ArrayFeed, Epochs, StreamFeed, is_stream
from gpunet.models.inference import InferenceMixin
from gpunet.progbar import ProgbarLogger
from gpunet.strategy import InterruptGuard, LocalStrategy

__all__ = ["LocalStrategy", "TrainingMixin"]


class TrainingMixin(InferenceMixin):
    """The Keras training API, mixed into ``Model``."""

    optimizer: Any = None
    compiled_loss: Any = None
    compiled_metrics: list[Any]
    stop_training: bool = False
    history: Any = None
    strategy: Any = LocalStrategy()
    _resume_epoch: int | None = None  # set by a restoring callback in on_train_begin
    _penalties = True  # any regularized weight? (refreshed by fit/train_on_batch)
    _step_plan: Any = None  # the graph-free engine.step.Step when the model allows one
    _plan_key: Any = None  # what _step_plan was made for
    _frozen = False  # no trainable weights: a step reports the loss and changes nothing
    use_fastpath = True  # set False to always train through the autograd graph

    if TYPE_CHECKING:  # provided by Layer, which Model mixes in after this class
        ops: Any
        dtype: str
        training: bool
        _n_outputs: int
        trainable_weights: list[Any]

        @property
        def weights(self) -> list[Any]: ...

        def __call__(self, *args: Any, training: bool | None = None, **kwargs: Any) -> Any: ...
        def collect_losses(self) -> list[Tensor]: ...
        def train(self, mode: bool = True) -> Any: ...
        def _ensure_built(self, X: np.ndarray) -> None: ...
        def build_from_input_shape(self) -> None: ...

    def _take_resume_epoch(self) -> int | None:
        epoch, self._resume_epoch = self._resume_epoch, None
        return epoch

    # -- compile -----------------------------------------------------------------------
    def compile(
        self,
        optimizer: Any = "rmsprop",
        loss: Any = None,
        metrics: Any = None,
        loss_weights: Any = None,
        strategy: Any = None,
        auto_scale_loss: bool = True,
        **kwargs: Any,
    ) -> None:
        """Choose the optimizer, loss and metrics (``compile(optimizer="adam",
        loss="binary_crossentropy", metrics=["accuracy"])``); ``strategy`` spreads
        ``fit`` over processes (see ``gpunet.distributed``).

        For a functional model of several outputs (as Keras 3): ``loss`` is one loss
        for every output, a list (output order) or a dict by output name;
        ``loss_weights`` a list or dict (the loss is ``sum_i w_i * loss_i``);
        ``metrics`` a list of one entry per output or a dict by output name, logged
        as ``<output>_<metric>`` beside each ``<output>_loss`` (see ``gpunet.models.multi_io``).

        Under the ``"mixed_float16"`` policy the optimizer is wrapped in a
        ``LossScaleOptimizer`` unless ``auto_scale_loss=False`` (as Keras).
        """
        if loss is None:
            raise InvalidParameterError("compile needs a loss, e.g. loss='mse'")
        if kwargs:
            raise InvalidParameterError(f"compile got unknown arguments: {sorted(kwargs)}")
        self.optimizer = optimizers_mod.get(optimizer)
        policy = getattr(self, "dtype_policy", None)  # Keras: float16 gets loss scaling
        if auto_scale_loss and policy is not None and policy.name == "mixed_float16":
            if not isinstance(self.optimizer, optimizers_mod.LossScaleOptimizer):
                self.optimizer = optimizers_mod.LossScaleOptimizer(self.optimizer)
        self._plan_key = None
        if multi_io.several(self, "outputs"):  # a loss, and metrics, per output
            multi = self.compiled_loss = multi_io.MultiLoss(self, loss, loss_weights, metrics)
            self._metric_specs, self.compiled_metrics = multi.metric_specs, multi.all_metrics
        else:
            self.compiled_loss = losses_mod.get(multi_io.one_output(self, loss, "loss"))
            self._metric_specs = list(multi_io.one_output(self, metrics, "metrics") or [])
            self.compiled_metrics = [
                metrics_mod.get(m, self.compiled_loss) for m in self._metric_specs
            ]
        self._loss_tracker = metrics_mod.Mean(name="loss")
        self.strategy = strategy if strategy is not None else LocalStrategy()
        self.build_from_input_shape()  # Keras: a model with input_shape is built by now

    def _require_compiled(self, what: str) -> None:
        if self.compiled_loss is None:
            raise NotCompiledError(
                f"model must be compiled before {what}: call model.compile(optimizer=..., loss=...)"
            )

    # -- one step ------------------------------------------------------------------------
    def _scale(self, b: Batch) -> Any:
        """Per-sample loss weights: 1/global batch size, times the sample weights."""
        return 1.0 / b.denom if b.sw is None else b.sw * (1.0 / b.denom)

    def _loss(self, b: Batch, y_pred: Tensor) -> Tensor:
        loss = self.compiled_loss
        if isinstance(loss, multi_io.MultiLoss):
            return loss(self, b, y_pred)
        return multi_io.loss_value(loss, b, b.y, y_pred, self._scale(b), self.ops, b.sw)

    def _track(self, b: Batch, y_pred: Tensor, loss: Tensor) -> None:
        value = loss.detach()
        if b.n != b.denom:  # a shard's loss is its share of the global batch mean
            value = value * (b.denom / max(b.n, 1))
        self._loss_tracker.update_state(value, weight=float(b.n))
        if isinstance(self.compiled_loss, multi_io.MultiLoss):
            return self.compiled_loss.track(b, y_pred, self.ops)
        Y, P, W = b.y, y_pred.detach(), b.sw
        if sequence.is_sequence(P, Y):  # a row per step, weighed by the mask alone (Keras
            # 3 updates its compiled metrics without the sample weights)
            W = sequence.sample_rows(self.ops, P.shape, None, y_pred._keras_mask, False, P.dtype)
            Y, P = sequence.rows(self.ops, Y), sequence.rows(self.ops, P)
        for m in self.compiled_metrics:
            m.update_state(Tensor(Y, self.ops), P, W)

    def _train_step(self, b: Batch, on_nan: str = "ignore", where: Any = "") -> bool:
        """One forward, backward and update; False when ``on_nan="stop"`` stopped it."""
        plan = self._step_plan
        if plan is not None:  # same arithmetic, no graph
            self.optimizer.zero_grad()
            value, P = plan(b.x, b.y, self._scale(b), True, self._loss_scale())
            loss = Tensor(value, self.ops)
            y_pred = Tensor(P, self.ops) if P is not None else loss
            y_pred._keras_mask = plan.mask
            return self._finish_step(b, y_pred, loss, loss, on_nan, where, backward=False)
        y_pred = loss_input(multi_io.forward(self, b.x, training=True))
        loss = self._loss(b, y_pred)
        total = loss
        if self._penalties:
            share = 1.0 / self.strategy.size  # each process adds its share; allreduce sums
            for extra in self.collect_losses():
                total = F.add(total, extra if share == 1.0 else extra * share)
        # the tracked loss includes the penalties, as Keras reports it
        return self._finish_step(b, y_pred, total, total, on_nan, where, backward=True)

    def _finish_step(self, b: Batch, y_pred: Tensor, loss: Tensor, total: Tensor, on_nan: str,
                     where: Any, backward: bool) -> bool:  # fmt: skip
        if on_nan != "ignore" and not self._loss_finite(total):
            self._track(b, y_pred, loss)
            if on_nan == "stop":
                self.stop_training = True
                return False
            if isinstance(where, tuple):
                where = f"epoch {where[0] + 1}, batch {where[1] + 1}"
            raise NonFiniteError(
                f"loss became {self.ops.to_host(total.data)} at {where}; "
                f"{self._first_nonfinite_layer(b)}; the last finite weights are kept "
                "(pass on_nan='stop' to end training quietly, 'ignore' to go on)"
            )
        if self._frozen:  # Keras 3: nothing to update, the loss is still reported
            self._track(b, y_pred, loss)
            return True
        if backward:
            self.optimizer.zero_grad()
            factor = self._loss_scale()
            if factor is not None:
                total = total * (factor if isinstance(factor, float) else Tensor(factor, self.ops))
            total.backward()
        self.strategy.reduce_gradients(self.optimizer)
        # where reads are not free the finiteness flag was not read: it guards the update
        guarded = on_nan != "ignore" and not self.ops.reads_are_free
        self.optimizer.step(when=self._nonfinite_flag if guarded else None)
        self._track(b, y_pred, loss)
        return True

    def _loss_scale(self) -> Any:
        """The loss scale of a ``LossScaleOptimizer`` (None without one)."""
        opt = self.optimizer
        if not isinstance(opt, optimizers_mod.LossScaleOptimizer):
            return None
        if not opt._state:
            opt.build(self.trainable_weights)
        return opt.grad_factor()

    def _batch_at(self, X: Any, Y: Any, W: Any, batch_size: int, order: Any, i: int) -> Batch:
        """Batch ``i`` of an epoch again, to name the layer that went non-finite."""
        return next(itertools.islice(self._batches(X, Y, W, batch_size, order), i, None))

    def _check_penalties(self) -> None:
        """Once per fit (and per train_on_batch while nothing changed): whether any
        weight carries a regularizer (a step without one skips walking the layers for
        penalty terms), and the graph-free step."""
        key = (base.structure_version[0], id(self.compiled_loss), self.use_fastpath,
               bool(base.call_hooks), id(self.ops))  # fmt: skip
        if key == self._plan_key:
            return
        self._penalties = any(p.regularizer is not None for p in self.weights)
        self._step_plan = engine_step.plan(self) if self.use_fastpath else None
        self._frozen = trainable.frozen(self)
        self._plan_key = key

    def _finite(self, loss: Tensor) -> bool:
        # one host read per batch: free for NumPy arrays, a sync on a device
        return bool(loss.ops.to_host(loss.ops.all_finite(loss.data)))

    def _first_nonfinite_layer(self, b: Batch) -> str:
        return multi_io.first_nonfinite_layer(self, b.x)

    def _reset_metrics(self) -> None:
        self._loss_tracker.reset_state()
        for m in self.compiled_metrics:
            m.reset_state()

    def _read_metrics(self, prefix: str = "") -> dict[str, float]:
        return self.strategy.read_metrics(self, prefix)  # type: ignore[no-any-return]

    def _read_local_metrics(self, prefix: str = "") -> dict[str, float]:
        logs = {prefix + "loss": self._loss_tracker.result()}
        names = getattr(self.compiled_loss, "log_names", None)
        for name, m in zip(names or [m.name for m in self.compiled_metrics],
                           self.compiled_metrics, strict=True):  # fmt: skip
            logs[prefix + name] = m.result()
        return logs

    def _build_optimizer(self) -> None:
        if not self.optimizer.built and (weights := self.trainable_weights):
            self.optimizer.build(weights)

    # -- fit -----------------------------------------------------------------------------
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: Any = "auto",
        callbacks: list[Any] | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        class_weight: Any = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
        validation_shuffle: bool = False,
        on_nan: str = "raise",
    ) -> cbks.History:
        """Train for ``epochs`` epochs; returns a ``History``.

        ``x`` is an array (with targets ``y``; for a functional model of several
        inputs or outputs, lists of arrays in the model's order or dicts by name,
        ``sample_weight`` one array or one per output), or a stream of ``(x, y)`` or
        ``(x, y, sample_weight)`` batches: a Python generator, a ``PyDataset``, a
        ``DataLoader`` or any re-iterable of batches, read one batch at a time.
        ``steps_per_epoch`` ends each epoch after that many batches, the next
        epoch going on where it stopped (as Keras does); ``validation_steps`` does
        the same for ``validation_data``, checked every ``validation_freq`` epochs.

        ``validation_split`` holds out the last fraction of the data, as Keras does;
        ``validation_shuffle=True`` shuffles (with the seeded ``shuffle`` stream)
        before splitting, for data sorted by label.

        ``on_nan``: what a NaN or infinite loss does, checked before the update so
        the weights stay the last finite ones: ``"raise"`` (default) raises
        ``NonFiniteError`` naming the epoch, the batch and the first layer whose
        output went non-finite; ``"stop"`` ends training like ``TerminateOnNaN``;
        ``"ignore"`` trains on.

        A ``KeyboardInterrupt`` propagates with the model at a step boundary and
        ``model.history`` holding the finished epochs.
        """
        if on_nan not in ("raise", "stop", "ignore"):
            raise InvalidParameterError(
                f"on_nan must be 'raise', 'stop' or 'ignore', got {on_nan!r}"
            )
        self._require_compiled("fit")
        batch_size = int_param("batch_size", 32 if batch_size is None else batch_size, 1)
        epochs = int_param("epochs", epochs, 0)
        initial_epoch = int_param("initial_epoch", initial_epoch, 0)
        validation_freq = int_param("validation_freq", validation_freq, 1)
        pairs = (("steps_per_epoch", steps_per_epoch), ("validation_steps", validation_steps))
        steps = [None if s is None else int_param(n, s, 1) for n, s in pairs]
        verbose = 1 if verbose == "auto" else verbose
        if verbose not in (0, 1, 2):
            raise InvalidParameterError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
        if not 0.0 <= validation_split < 1.0:
            raise InvalidParameterError(
                f"validation_split must be in [0, 1), got {validation_split!r}"
            )
        if is_stream(x):
            if y is not None or sample_weight is not None or validation_split:
                raise InvalidParameterError(
                    f"fit: with x a generator, PyDataset or DataLoader ({type(x).__name__}) "
                    "the batches hold y and sample_weight, and validation_split cannot hold "
                    "data out: pass x only, and validation_data for validation"
                )
            train: Any = StreamFeed(self, x, "fit", class_weight, shuffle)
            held_out = None
            train.build()
        else:
            X, Y, W = self._prepare(x, y, sample_weight, class_weight)
            X, Y, W, held_out = self._split(X, Y, W, validation_split, validation_shuffle)
            train = ArrayFeed(self, X, Y, W, batch_size, shuffle)
        val: Any = None
        if validation_data is not None:
            vbatch = validation_batch_size or batch_size
            if is_stream(validation_data):
                val = self._feed(validation_data, None, None, vbatch, "evaluate")
            else:
                val = ArrayFeed(self, *self._validation(validation_data), vbatch)
        elif held_out is not None:
            vX, vY, vW = held_out
            val = ArrayFeed(self, vX, vY, vW, validation_batch_size or batch_size)
        with self.ops.oom_guard(batch_size):  # a clear error, the failed step freed
            return self._fit_loop(
                Epochs(train, steps[0]),
                None if val is None else Epochs(val, steps[1]),
                epochs,
                verbose,
                callbacks,
                initial_epoch,
                validation_freq,
                on_nan,
            )

    def _validation(self, data: Any) -> tuple[Any, Any, Any]:
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise InvalidParameterError(
                "validation_data must be (x_val, y_val), (x_val, y_val, val_sample_weight) "
                f"or a generator, PyDataset or DataLoader, got {type(data).__name__}"
            )
        vx, vy, *vw = data
        return self._prepare(vx, vy, vw[0] if vw else None)

    def _split(self, X: Any, Y: Any, W: Any, fraction: float, shuffle: bool) -> Any:
        """The training rows and the held-out ``(X, Y, W)`` of ``validation_split``."""
        if not fraction:
            return X, Y, W, None
        each, n = multi_io.each, multi_io.rows(X)
        if shuffle:
            perm = grandom.generator("shuffle").permutation(n)
            X, Y, W = (None if A is None else each(A, lambda a: a[perm]) for A in (X, Y, W))
        cut = int(n * (1.0 - fraction))
        if cut == 0 or cut == n:
            raise InputValidationError(
                f"validation_split={fraction} leaves no training or no validation "
                f"samples out of {n}"
            )
        held = tuple(None if A is None else each(A, lambda a: a[cut:]) for A in (X, Y, W))
        return (*(None if A is None else each(A, lambda a: a[:cut]) for A in (X, Y, W)), held)

    def _fit_loop(self, train: Epochs, val: Epochs | None, epochs: int, verbose: int,
                  callbacks: Any, initial_epoch: int, validation_freq: int,
                  on_nan: str = "raise") -> cbks.History:  # fmt: skip
        self._build_optimizer()
        self.strategy.setup(self)  # first: it may move the model to this process's GPU
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise InvalidParameterError(f"callbacks must be a list of Callback, got {callbacks!r}")
        self.history = cbks.History()
        cb_list = [*(callbacks or []), self.history]
        if verbose and self.strategy.is_chief:
            cb_list.append(ProgbarLogger(verbose))
        params = {"verbose": verbose, "epochs": epochs, "steps": train.length}
        cbs = cbks.CallbackList(cb_list, self, params)
        self.stop_training = False
        self._nonfinite_flag = self._finite_steps = None
        was_training = self.training
        self._resume_epoch = None
        cbs.hook("on_train_begin")
        resume = self._take_resume_epoch()
        if resume is not None:  # a callback restored a backup
            initial_epoch = resume
        # overflow is detected (on_nan) rather than warned about per ufunc
        errstate = np.errstate(over="ignore", invalid="ignore", divide="ignore")
        guard = InterruptGuard()
        self._check_penalties()
        batch_hooks = cbs.overrides("on_train_batch_begin", "on_train_batch_end")
        # a batch can be made again (to name a non-finite layer) when epochs are whole passes
        batch_at = train.feed.batch_at if train.steps is None else None
        logs: dict[str, Any] = {}
        try:
            errstate.__enter__()
            guard.__enter__()
            for epoch in range(initial_epoch, epochs):
                cbs.hook("on_epoch_begin", epoch)
                self._reset_metrics()
                done = 0
                for step, b in enumerate(train.epoch()):
                    if batch_hooks:
                        cbs.hook("on_train_batch_begin", step)
                    self._train_step(b, on_nan, (epoch, step))
                    done += 1
                    if batch_hooks:
                        cbs.hook(
                            "on_train_batch_end", step, cbks.LazyLogs(self._read_local_metrics)
                        )
                    if guard.pending:  # Ctrl-C, held until this step was complete
                        raise KeyboardInterrupt
                    if self.stop_training:
                        break
                if not done:  # a spent generator: no epoch to report
                    break
                self._check_epoch_finite(epoch, on_nan, batch_at)
                logs = self._read_metrics()
                if val is not None and (epoch + 1) % validation_freq == 0:
                    logs.update(self._evaluate_batches(val.epoch(), cbs, prefix="val_"))
                cbs.hook("on_epoch_end", epoch, logs)
                if self.stop_training or train.ran_out:
                    break
        finally:
            guard.__exit__(None, None, None)
            errstate.__exit__(None, None, None)
            self.train(was_training)
        cbs.hook("on_train_end", logs)
        return self.history

    def train_on_batch(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: Any = None,
        return_dict: bool = False,
    ) -> Any:
        """One optimizer step on one batch; returns the loss (and metrics) of it."""
        self._require_compiled("train_on_batch")
        X, Y, W = self._prepare(x, y, sample_weight, class_weight)
        ops = self.ops
        self._build_optimizer()
        self._reset_metrics()
        if (
            isinstance(X, np.ndarray)
            and isinstance(Y, np.ndarray)
            and (W is None or isinstance(W, np.ndarray))
        ):  # one input and one output: this rank's rows of the one global batch
            Wd = None if W is None else ops.asarray(W, dtype=self.output_dtype)
            n = len(X)
            start, stop = self.strategy.local_rows(0, n)
            Xd, Yd = ops.asarray(X[start:stop]), ops.asarray(Y[start:stop])
            b = Batch(Xd, Yd, None if Wd is None else Wd[start:stop], stop - start, n)
        else:
            Wd = None if W is None else multi_io.each(W, self._weights_on(ops))
            X, Y = multi_io.each(X, ops.asarray), multi_io.each(Y, ops.asarray)
            b = next(self._batches(X, Y, Wd, multi_io.rows(X)))
        self._check_penalties()
        if isinstance(self.optimizer, optimizers_mod.LossScaleOptimizer):
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow skips the step
                self._train_step(b)
        else:
            self._train_step(b)
        return self._result(return_dict)
