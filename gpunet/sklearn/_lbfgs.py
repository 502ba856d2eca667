"""L-BFGS over flat parameter vectors in any array namespace (``solver="lbfgs"``).

The iterate, the gradients, the last ``m`` curvature pairs and the two-loop recursion
all stay on the device. Only the scalars the line search branches on come to the host:
one transfer per function evaluation (loss, slope along the search direction and the
largest gradient entry together) and one per iteration (the initial slope).

Stopping follows SciPy's L-BFGS-B, which scikit-learn's MLPs call: ``max_iter``
iterations, more than ``max_fun`` evaluations (checked after each iteration), the
largest gradient entry ``<= gtol``, or a relative decrease of the loss ``<= ftol``.

References: Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithm 7.4 (two-loop
recursion), Algorithms 3.5 and 3.6 (line search and zoom for the strong Wolfe
conditions); Byrd, Lu, Nocedal & Zhu (1995), https://doi.org/10.1137/0916069.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpunet.sklearn._network import dot

FTOL = 2.220446049250313e-09  # SciPy's default: factr=1e7 times float64 machine epsilon
C1, C2 = 1e-3, 0.9  # sufficient decrease and curvature constants of L-BFGS-B's dcsrch
MAX_LS = 20  # evaluations per line search, as L-BFGS-B's maxls
XTOL = 0.1  # relative width of the bracket at which the search settles, as dcsrch
MEMORY = 10  # curvature pairs kept, as L-BFGS-B's maxcor


@dataclass
class Result:
    """Outcome of :func:`minimize`; ``status`` 0 converged, 1 hit a limit, 2 failed."""

    x: Any
    fun: float
    nit: int
    nfev: int
    status: int
    message: str


class _Probe:
    """Evaluations of ``f`` along ``x + a d`` with one host read per call."""

    def __init__(self, fun_grad: Callable[[Any], tuple[Any, Any]], ops: Any) -> None:
        self.fun_grad, self.ops, self.nfev = fun_grad, ops, 0

    def __call__(self, x: Any, d: Any | None) -> tuple[Any, float, float, float]:
        xp = self.ops.xp
        f, g = self.fun_grad(x)
        self.nfev += 1
        slope = dot(xp, g, d) if d is not None else f
        host = self.ops.to_numpy(xp.stack([f, slope, xp.max(xp.abs(g))]))
        return g, float(host[0]), float(host[1]), float(host[2])


def _direction(ops: Any, g: Any, pairs: list[tuple[Any, Any, Any]]) -> Any:
    """``-H g`` by the two-loop recursion (Nocedal & Wright, Algorithm 7.4)."""
    xp = ops.xp
    q = -g
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * dot(xp, s, q)
        q = q - a * y
        alphas.append(a)
    if pairs:
        s, y, _ = pairs[-1]
        q = q * (dot(xp, s, y) / dot(xp, y, y))  # H0 = gamma I, gamma = s'y / y'y
    for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
        b = rho * dot(xp, y, q)
        q = q + (a - b) * s
    return q


def _interpolate(
    a_lo: float, f_lo: float, s_lo: float, a_hi: float, f_hi: float, s_hi: float
) -> float:
    """Minimiser of the cubic through both ends, kept inside the middle 80%."""
    lo, hi = min(a_lo, a_hi), max(a_lo, a_hi)
    d1 = s_lo + s_hi - 3.0 * (f_lo - f_hi) / (a_lo - a_hi)
    rad = d1 * d1 - s_lo * s_hi
    a = math.nan
    if rad >= 0.0 and math.isfinite(rad):
        d2 = math.copysign(math.sqrt(rad), a_hi - a_lo)
        denom = s_hi - s_lo + 2.0 * d2
        if denom != 0.0:
            a = a_hi - (a_hi - a_lo) * (s_hi + d2 - d1) / denom
    margin = 0.1 * (hi - lo)
    if not (lo + margin <= a <= hi - margin):  # also catches NaN
        a = 0.5 * (lo + hi)
    return a


class _Point:
    """One trial of the line search: step ``a``, loss, slope, and what the step needs."""

    __slots__ = ("a", "f", "g", "gmax", "s", "x")

    def __init__(self, a: float, f: float, s: float, x: Any = None, g: Any = None,
                 gmax: float = math.inf) -> None:  # fmt: skip
        self.a, self.f, self.s, self.x, self.g, self.gmax = a, f, s, x, g, gmax


def _line_search(probe: _Probe, x: Any, d: Any, f0: float, s0: float,
                 a1: float) -> _Point | None:  # fmt: skip
    """A step satisfying the strong Wolfe conditions, else the best step with sufficient
    decrease once the bracket is narrower than ``XTOL`` of its length (a kink of ReLU
    makes the slope jump there), else None after ``MAX_LS`` evaluations."""

    def trial(a: float) -> _Point:
        xa = x + a * d
        g, f, s, gmax = probe(xa, d)
        return _Point(a, f if math.isfinite(f) else math.inf, s, xa, g, gmax)

    def decreases(p: _Point, ref: float) -> bool:
        return p.f <= f0 + C1 * p.a * s0 and p.f < ref

    prev, a = _Point(0.0, f0, s0), a1
    for tries in range(1, MAX_LS + 1):
        p = trial(a)
        if not decreases(p, prev.f if tries > 1 else math.inf):
            lo, hi = prev, p
            break
        if abs(p.s) <= -C2 * s0:
            return p
        if p.s >= 0:
            lo, hi = p, prev
            break
        prev, a = p, min(4.0 * a, 1e10)
    else:
        return None
    while tries < MAX_LS:  # zoom: lo keeps sufficient decrease, hi bounds the step
        if lo.a > 0 and abs(hi.a - lo.a) <= XTOL * max(lo.a, hi.a):
            return lo
        if math.isfinite(hi.f) and math.isfinite(hi.s):
            a = _interpolate(lo.a, lo.f, lo.s, hi.a, hi.f, hi.s)
        else:
            a = 0.5 * (lo.a + hi.a)
        p = trial(a)
        tries += 1
        if not decreases(p, lo.f):
            hi = p
            continue
        if abs(p.s) <= -C2 * s0:
            return p
        if p.s * (hi.a - lo.a) >= 0:
            hi = lo
        lo = p
    return lo if lo.a > 0 else None


def minimize(
    fun_grad: Callable[[Any], tuple[Any, Any]],
    x0: Any,
    ops: Any,
    *,
    max_iter: int,
    max_fun: int,
    gtol: float,
    ftol: float = FTOL,
    callback: Callable[[int, float, float], None] | None = None,
) -> Result:
    """Minimise ``f`` from ``x0`` by L-BFGS with a strong-Wolfe line search.

    Args:
        fun_grad: ``x -> (f, g)``, the loss as a 0-d device array and its gradient.
        x0: Starting point, a 1-d device array (not modified).
        ops: Backend of the device the vectors live on.
        max_iter, max_fun: Iteration and function-evaluation limits.
        gtol: Stop when every gradient entry is at most this in magnitude.
        ftol: Stop when the loss decreases by at most this, relative to its size.
        callback: Called as ``callback(iteration, f, max |g|)`` after each iteration.

    Example:
        >>> import numpy as np
        >>> from gpunet.backend import get_ops
        >>> ops = get_ops("cpu")
        >>> res = minimize(lambda x: (np.sum((x - 3.0) ** 2), 2 * (x - 3.0)),
        ...                np.zeros(4), ops, max_iter=50, max_fun=100, gtol=1e-8)
        >>> np.round(res.x, 6).tolist(), res.status
        ([3.0, 3.0, 3.0, 3.0], 0)
    """
    xp = ops.xp
    probe = _Probe(fun_grad, ops)
    x = x0
    g, f, _, gmax = probe(x, None)
    if gmax <= gtol:
        return Result(x, f, 0, probe.nfev, 0, "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL")
    pairs: list[tuple[Any, Any, Any]] = []
    nit = 0
    while True:
        d = _direction(ops, g, pairs)
        s0 = float(ops.to_numpy(dot(xp, g, d)))
        if not s0 < 0.0:  # not a descent direction (rounding): restart from -g
            pairs.clear()
            d = -g
            s0 = -float(ops.to_numpy(dot(xp, g, g)))
        a1 = 1.0
        if not pairs:  # first step (and restarts) of length 1 along d, as L-BFGS-B
            a1 = min(1.0 / math.sqrt(-s0), 1e10) if s0 < 0 else 1.0
        found = _line_search(probe, x, d, f, s0, a1)
        if found is None:
            if pairs:  # forget the curvature and retry along the steepest descent
                pairs.clear()
                continue
            status, msg = 2, "ABNORMAL_TERMINATION_IN_LNSRCH"
            break
        sy = found.a * (found.s - s0)  # s'y for s = a d, y = g_new - g: host scalars
        if sy > 0.0:
            pairs.append((found.a * d, found.g - g, 1.0 / sy))
            del pairs[:-MEMORY]
        f_old, x, g, f, gmax = f, found.x, found.g, found.f, found.gmax
        nit += 1
        if callback is not None:
            callback(nit, f, gmax)
        if nit >= max_iter:
            status, msg = 1, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
            break
        if probe.nfev > max_fun:
            status, msg = 1, "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"
            break
        if gmax <= gtol:
            status, msg = 0, "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"
            break
        if f_old - f <= ftol * max(abs(f_old), abs(f), 1.0):
            status, msg = 0, "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"
            break
    return Result(x, f, nit, probe.nfev, status, msg)
