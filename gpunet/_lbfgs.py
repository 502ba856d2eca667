"""``torch.optim.LBFGS`` as ``gn.optim.LBFGS``: the limited-memory BFGS step that
PyTorch's time-sequence-prediction example trains with, called as
``optimizer.step(closure)`` (the closure clears the gradients, computes the loss
and its backward, and returns the loss).

It follows PyTorch's algorithm and its defaults (``lr=1``, ``max_iter=20``,
``max_eval = max_iter * 5 / 4``, ``tolerance_grad=1e-7``,
``tolerance_change=1e-9``, ``history_size=100``): each step runs up to ``max_iter``
iterations of the two-loop recursion over the last ``history_size`` curvature
pairs, with a fixed step length (the first one scaled by the gradient's L1 norm),
and keeps its state between steps. The strong-Wolfe line search is not there;
``line_search_fn="strong_wolfe"`` raises.

Example:
    >>> import gpunet as gn
    >>> w = gn.nn.Parameter(gn.tensor([3.0, -2.0]))
    >>> opt = gn.optim.LBFGS([w])
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = ((w - 1.0) ** 2).sum()
    ...     loss.backward()
    ...     return loss
    >>> _ = opt.step(closure)
    >>> [round(v, 4) for v in w.numpy().tolist()]
    [1.0, 1.0]
"""

from __future__ import annotations

from typing import Any

from gpunet.errors import InvalidParameterError
from gpunet.optim import Optimizer


class LBFGS(Optimizer):
    """``torch.optim.LBFGS(params, lr=1, max_iter=20, max_eval=None,
    tolerance_grad=1e-7, tolerance_change=1e-9, history_size=100,
    line_search_fn=None)``; one parameter group, as PyTorch's."""

    has_step = False

    def __init__(
        self, params: Any, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
        tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:  # fmt: skip
        if line_search_fn is not None:
            raise InvalidParameterError(
                f"LBFGS line_search_fn={line_search_fn!r}: only the fixed step (None) is here"
            )
        defaults = {"lr": lr, "max_iter": int(max_iter),
                    "max_eval": int(max_eval if max_eval is not None else max_iter * 5 // 4),
                    "tolerance_grad": tolerance_grad, "tolerance_change": tolerance_change,
                    "history_size": int(history_size), "line_search_fn": None}  # fmt: skip
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise InvalidParameterError(
                "LBFGS doesn't support per-parameter options (parameter groups)"
            )
        self._state: dict[str, Any] = {"func_evals": 0, "n_iter": 0}

    def _slots(self, group: dict[str, Any]) -> dict[str, float]:
        return {}

    def _flat_grad(self) -> Any:
        xp = self._ops.xp
        parts = [xp.reshape(p._grad, (-1,)) if p._grad is not None
                 else xp.zeros(p.data.size, dtype=p.data.dtype) for p in self._params]  # fmt: skip
        return xp.concat(parts)

    def _add(self, t: float, d: Any) -> None:
        """``params += t * d`` (each parameter its slice of the flat direction)."""
        xp, at = self._ops.xp, 0
        for p in self._params:
            n = p.data.size
            self._ops.assign(p.data, p.data + t * xp.reshape(d[at : at + n], p.data.shape))
            at += n

    @property
    def _params(self) -> list[Any]:
        return list(self.param_groups[0]["params"])

    @property
    def _ops(self) -> Any:
        return self._params[0].ops

    def step(self, closure: Any = None, *, when: Any = None) -> Any:  # type: ignore[override]
        """One LBFGS step of up to ``max_iter`` iterations; returns the first loss."""
        if closure is None:
            raise RuntimeError("LBFGS needs a closure: optimizer.step(closure)")
        if when is not None:
            raise InvalidParameterError("LBFGS takes no device flag (when=)")
        from gpunet.optimizers._base import _run_closure

        group, st, xp = self.param_groups[0], self._state, self._ops.xp
        lr, max_iter, max_eval = float(group["lr"]), group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        for g in self.groups:
            if g.moved():
                self._repack(lambda g: g.params[0].ops, which=g)
        orig_loss = _run_closure(closure)
        loss = float(orig_loss.item())
        evals = 1
        st["func_evals"] += 1
        flat = self._flat_grad()
        if float(xp.max(xp.abs(flat))) <= tol_grad:
            return orig_loss
        d: Any = st.get("d")
        t: Any = st.get("t")
        dirs: Any = st.get("old_dirs")
        stps: Any = st.get("old_stps")
        ro: Any = st.get("ro")
        H: Any = st.get("H_diag")
        prev_flat: Any = st.get("prev_flat_grad")
        prev_loss: Any = st.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            st["n_iter"] += 1
            if st["n_iter"] == 1:
                d, dirs, stps, ro, H = -flat, [], [], [], 1.0
            else:
                y, s = flat - prev_flat, d * t
                ys = float(xp.sum(y * s))
                if ys > 1e-10:  # a curvature pair worth keeping
                    if len(dirs) == group["history_size"]:
                        dirs.pop(0), stps.pop(0), ro.pop(0)
                    dirs.append(y), stps.append(s), ro.append(1.0 / ys)
                    H = ys / float(xp.sum(y * y))
                q, al = -flat, [0.0] * len(dirs)
                for i in range(len(dirs) - 1, -1, -1):
                    al[i] = float(xp.sum(stps[i] * q)) * ro[i]
                    q = q - al[i] * dirs[i]
                d = q * H
                for i in range(len(dirs)):
                    be = float(xp.sum(dirs[i] * d)) * ro[i]
                    d = d + (al[i] - be) * stps[i]
            prev_flat, prev_loss = xp.asarray(flat, copy=True), loss
            if st["n_iter"] == 1:
                t = min(1.0, 1.0 / float(xp.sum(xp.abs(flat)))) * lr
            else:
                t = lr
            if float(xp.sum(flat * d)) > -tol_change:  # not a descent direction
                break
            self._add(t, d)
            step_evals = 0
            if n_iter != max_iter:
                loss = float(_run_closure(closure).item())
                flat = self._flat_grad()
                step_evals = 1
            evals += step_evals
            st["func_evals"] += step_evals
            if n_iter == max_iter or evals >= max_eval:
                break
            if float(xp.max(xp.abs(flat))) <= tol_grad:
                break
            if float(xp.max(xp.abs(d * t))) <= tol_change or abs(loss - prev_loss) < tol_change:
                break
        st.update(d=d, t=t, old_dirs=dirs, old_stps=stps, ro=ro, H_diag=H,
                  prev_flat_grad=prev_flat, prev_loss=prev_loss)  # fmt: skip
        return orig_loss
