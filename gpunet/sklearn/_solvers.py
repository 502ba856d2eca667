"""The training loops: minibatch Adam/SGD epochs, and full-batch L-BFGS.

Data moves to the device once per ``fit``; each epoch's shuffled order moves as one
index array, and batches are gathered on the device. The epoch loss (and, with early
stopping, the validation score) accumulates on the device and is read with one host
transfer per epoch. Shuffling, the validation split and the stopping rules consume the
``random_state`` stream as scikit-learn's MLPs do, so the same seed sees the same batches.

With ``strategy=`` over several processes (``par``, see ``_parallel``) each process
computes its rows of every batch and the gradients and losses are summed before use.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.optimize import OptimizeResult
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import shuffle as sk_shuffle
from sklearn.utils.optimize import _check_optimize_result

from gpunet.sklearn import _lbfgs
from gpunet.sklearn._network import Network
from gpunet.sklearn._parallel import Shards


class _Data:
    """One split of ``(X, Y, sample_weight)`` on the device, plus Poisson constants."""

    def __init__(self, net: Network, X: Any, Y: Any, sw: Any) -> None:
        ops, dtype = net.ops, net.dtype
        self.n = int(X.shape[0])
        self.X = ops.asarray(X, dtype=dtype)
        self.Y = ops.asarray(Y, dtype=dtype)
        self.W = None if sw is None else ops.asarray(sw, dtype=dtype)
        self.C = None
        if net.out_activation == "exp":  # y log y - y: the part of the deviance without W
            Yh = np.asarray(Y, dtype=np.float64)
            logy = np.log(np.where(Yh > 0, Yh, 1.0))
            self.C = ops.asarray(np.sum(Yh * logy - Yh, axis=1), dtype=dtype)

    def batch(self, ops: Any, rows: Any) -> tuple[Any, Any, Any, Any]:
        """``X, Y, W, C`` of ``rows``: a slice, or an index array on the device."""
        if isinstance(rows, slice):
            pick = lambda A: None if A is None else A[rows]  # noqa: E731
        else:
            pick = lambda A: None if A is None else ops.take_rows(A, rows)  # noqa: E731
        return pick(self.X), pick(self.Y), pick(self.W), pick(self.C)


def _scales(est: Any, ops: Any, n: int, W: Any) -> tuple[Any, Any]:
    """Per-sample loss scale and L2 coefficient: ``w / sum(w)`` and ``alpha / sum(w)``."""
    if W is None:
        return 1.0 / n, (est.alpha / n if est.alpha else None)
    total = ops.xp.sum(W)
    return W / total, (est.alpha / total if est.alpha else None)


def _score(est: Any, net: Network, val: _Data) -> Any:
    """Accuracy (classifier) or R^2 (regressor) on the device, as a 0-d array."""
    ops, xp = net.ops, net.ops.xp
    P = net.forward(val.X)
    w = val.W if val.W is not None else xp.ones_like(val.Y[:, 0])
    if is_classifier(est):
        if net.out_activation == "softmax":
            hit = xp.argmax(P, axis=1) == xp.argmax(val.Y, axis=1)
        else:  # binary and multilabel: every output on the right side of 0.5
            hit = xp.all((P > 0.5) == (val.Y > 0.5), axis=1)
        return xp.sum(xp.astype(hit, P.dtype) * w) / xp.sum(w)
    wc = xp.reshape(w, (-1, 1))
    mean = xp.sum(wc * val.Y, axis=0) / xp.sum(w)
    num = xp.sum(wc * (val.Y - P) ** 2, axis=0)
    den = xp.sum(wc * (val.Y - mean) ** 2, axis=0)
    safe = xp.where(den != 0, den, xp.ones_like(den))
    # a constant target scores 1 when predicted exactly, else 0 (scikit-learn's r2_score)
    r2 = xp.where(den != 0, 1.0 - num / safe, xp.astype(num == 0, P.dtype))
    nan = xp.full_like(r2[0], float("nan"))
    return xp.where(ops.all_finite(P), xp.mean(r2), nan)


def _shard_loss_grad(par: Shards, est: Any, net: Network, data: _Data, order: Any, start: int,
                     stop: int) -> Any:  # fmt: skip
    """This process's part of the summed loss of global batch ``[start, stop)`` (its
    rows' losses scaled by the whole batch, so the parts add up), and the whole batch's
    gradient in ``G``."""
    ops = net.ops
    a, b = par.rows(start, stop)
    Xb, Yb, _, Cb = data.batch(ops, slice(a, b) if order is None else order[a:b])
    W = data.W
    if W is not None:  # every process holds all the weights: sum the whole batch's
        W = W[start:stop] if order is None else ops.take_rows(W, order[start:stop])
    scale, l2 = _scales(est, ops, stop - start, W)
    if W is not None:
        scale = scale[a - start : b - start]
    # the L2 term is added once, by rank 0, since the gradients are summed
    loss = net.loss_grad(Xb, Yb, scale, l2 if par.rank == 0 else None, Cb)
    par.reduce_gradients(est._optimizer)
    return loss * (stop - start)


def fit_stochastic(est: Any, net: Network, X: Any, Y: Any, sw: Any, incremental: bool,
                   par: Shards | None = None) -> None:  # fmt: skip
    """Epochs of minibatch Adam or SGD, with scikit-learn's stopping rules."""
    if est.early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    ops, xp = net.ops, net.ops.xp
    verbose = est.verbose and (par is None or par.chief)
    val = None
    if est.early_stopping:
        stratify = Y if is_classifier(est) and est.n_outputs_ == 1 else None
        parts = train_test_split(
            X,
            Y,
            *([] if sw is None else [sw]),
            stratify=stratify,
            random_state=est._random_state,
            test_size=est.validation_fraction,
        )
        X, X_val, Y, Y_val = parts[:4]
        sw, sw_val = (None, None) if sw is None else parts[4:6]
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the "
                "size of your dataset."
            )
        val = _Data(net, X_val, Y_val, sw_val)
    data = _Data(net, X, Y, sw)
    n = data.n
    if est.batch_size == "auto":
        batch_size = min(200, n)
    else:
        if est.batch_size > n:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be "
                "clipped",
                stacklevel=4,
            )
        batch_size = int(np.clip(est.batch_size, 1, n))
    opt, P = est._optimizer, net.group.P
    best = None
    if val is not None:
        best = ops.copy(P) if est._best_params is None else ops.asarray(est._best_params)
    sample_idx = np.arange(n, dtype=int)
    try:
        est.n_iter_ = 0
        for _ in range(est.max_iter):
            order = None
            if est.shuffle:
                sample_idx = sk_shuffle(sample_idx, random_state=est._random_state)
                order = ops.asarray(sample_idx)
            total = None
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                if par is None:
                    rows = slice(start, stop) if order is None else order[start:stop]
                    Xb, Yb, Wb, Cb = data.batch(ops, rows)
                    scale, l2 = _scales(est, ops, stop - start, Wb)
                    loss = net.loss_grad(Xb, Yb, scale, l2, Cb) * (stop - start)
                else:
                    loss = _shard_loss_grad(par, est, net, data, order, start, stop)
                opt.step()
                total = loss if total is None else total + loss
            # the one host read of the epoch: its loss, and the validation score
            assert total is not None  # n >= 1: at least one batch
            reads = [total / n] + ([] if val is None else [_score(est, net, val)])
            host = ops.to_numpy(xp.stack(reads))
            est.n_iter_ += 1
            est.loss_ = float(host[0]) if par is None else par.sum(host[0])
            est.t_ += n
            est.loss_curve_.append(est.loss_)
            if verbose:
                print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
            if val is not None:  # every process scores every validation row: same decisions
                best = _track_validation(est, ops, P, float(host[1]), best, verbose)
            else:
                _track_loss(est)
            if est.solver == "sgd" and est.learning_rate == "invscaling":
                opt.learning_rate = est.learning_rate_init / (est.t_ + 1) ** est.power_t
            if est._no_improvement_count > est.n_iter_no_change and _stop(est, opt, val, verbose):
                break
            if incremental:
                break
            if est.n_iter_ == est.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached and "
                    "the optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=4,
                )
    except KeyboardInterrupt:
        if par is not None:  # the other processes would wait in the next allreduce
            raise
        warnings.warn("Training interrupted by user.", stacklevel=4)
    if best is not None:  # early stopping keeps the weights of the best validation score
        ops.assign(P, best)
        est._best_params = ops.to_numpy(best).copy()


def _track_validation(est: Any, ops: Any, P: Any, score: float, best: Any, verbose: bool) -> Any:
    est.validation_scores_.append(score)
    if verbose:
        print(f"Validation score: {score:f}")
    if score < est.best_validation_score_ + est.tol:
        est._no_improvement_count += 1
    else:
        est._no_improvement_count = 0
    if score > est.best_validation_score_:
        est.best_validation_score_ = score
        best = ops.copy(P)
    return best


def _track_loss(est: Any) -> None:
    loss = est.loss_curve_[-1]
    if loss > est.best_loss_ - est.tol:
        est._no_improvement_count += 1
    else:
        est._no_improvement_count = 0
    if loss < est.best_loss_:
        est.best_loss_ = loss


def _stop(est: Any, opt: Any, val: Any, verbose: bool) -> bool:
    """After ``n_iter_no_change`` epochs without progress: stop, or (SGD with the
    adaptive schedule) divide the learning rate by 5 and go on."""
    what = "Validation score" if val is not None else "Training loss"
    msg = (
        f"{what} did not improve more than tol={est.tol:f} for "
        f"{int(est.n_iter_no_change)} consecutive epochs."
    )
    if est.solver == "sgd" and est.learning_rate == "adaptive":
        if opt.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        opt.learning_rate = opt.learning_rate / 5.0
        if verbose:
            print(msg + f" Setting learning rate to {opt.learning_rate:f}")
        est._no_improvement_count = 0
        return False
    if verbose:
        print(msg + " Stopping.")
    return True


def _shard_data(par: Shards, est: Any, net: Network, X: Any, Y: Any,
                sw: Any) -> tuple[_Data, Any, Any]:  # fmt: skip
    """This process's rows of the data on the device, their per-sample loss scale (over
    all the rows) and the L2 coefficient (rank 0 only: the gradients are summed)."""
    n = int(X.shape[0])
    a, b = par.rows(0, n)
    W = None if sw is None else net.ops.asarray(sw, dtype=net.dtype)
    scale, l2 = _scales(est, net.ops, n, W)
    if W is not None:
        scale = scale[a:b]
    data = _Data(net, X[a:b], Y[a:b], None if sw is None else sw[a:b])
    return data, scale, l2 if par.rank == 0 else None


def fit_lbfgs(est: Any, net: Network, X: Any, Y: Any, sw: Any, par: Shards | None = None) -> None:
    """Full-batch L-BFGS on the device over the flat parameter vector."""
    ops = net.ops
    if par is None:
        data = _Data(net, X, Y, sw)
        scale, l2 = _scales(est, ops, data.n, data.W)
    else:  # every process follows the same iterates: the objective is summed
        data, scale, l2 = _shard_data(par, est, net, X, Y, sw)
    P, G = net.group.P, net.group.G

    def fun_grad(x: Any) -> tuple[Any, Any]:
        ops.assign(P, x)
        loss = net.loss_grad(data.X, data.Y, scale, l2, data.C)
        if par is not None:
            loss = par.sum_loss_grad(net, loss)
        return loss, ops.copy(G)  # G is overwritten by the next evaluation

    def report(it: int, f: float, gmax: float) -> None:
        print(f"Iteration {it}, loss = {f:.8f}, max |gradient| = {gmax:.3e}")

    res = _lbfgs.minimize(
        fun_grad,
        ops.copy(P),
        ops,
        max_iter=est.max_iter,
        max_fun=est.max_fun,
        gtol=est.tol,
        callback=report if est.verbose and (par is None or par.chief) else None,
    )
    ops.assign(P, res.x)
    outcome = OptimizeResult(nit=res.nit, status=res.status, message=res.message)
    est.n_iter_ = _check_optimize_result("lbfgs", outcome, est.max_iter)
    est.loss_ = res.fun
