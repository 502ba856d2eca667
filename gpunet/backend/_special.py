"""erf for any array namespace: the array API has none, and SciPy is not a dependency.

Two textbook expansions, both free of cancellation, accurate to a few ulp in float64:

* ``|x| < 2.5``: erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n (2x^2)^n x / (1*3*...*(2n+1)),
  a series of positive terms (Abramowitz & Stegun 7.1.6);
* ``|x| >= 2.5``: erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))),
  the Laplace continued fraction (A&S 7.1.14), evaluated bottom-up at a fixed depth.

It serves the reference ``Ops.gelu``; fused kernels use the hardware ``erf``.
"""

from __future__ import annotations

import math
from typing import Any

_SPLIT = 2.5
_SERIES_TERMS = 64  # the term ratio 2x^2/(2n+3) at x=2.5 falls below 1e-16 of the sum
_CF_DEPTH = 60  # the continued fraction has converged to 1 ulp for x >= 2.5 by then


def erf(xp: Any, x: Any) -> Any:
    """Elementwise error function of the float array ``x`` in namespace ``xp``."""
    a = xp.abs(x)
    small = xp.minimum(a, _SPLIT)
    big = xp.maximum(a, _SPLIT)
    # series on the clipped argument
    x2 = small * small
    term = small
    total = small
    for n in range(_SERIES_TERMS):
        term = term * (2.0 * x2) / (2 * n + 3)
        total = total + term
    erf_small = (2.0 / math.sqrt(math.pi)) * xp.exp(-x2) * total
    # continued fraction on the other clipped argument; inf stays finite here
    big = xp.where(xp.isfinite(big), big, _SPLIT)
    frac = big
    for k in range(_CF_DEPTH, 0, -1):
        frac = big + (k / 2.0) / frac
    erfc_big = xp.exp(-big * big) / (math.sqrt(math.pi) * frac)
    erf_big = xp.where(xp.isinf(a), 1.0, 1.0 - erfc_big)
    out = xp.where(a < _SPLIT, erf_small, erf_big)
    out = xp.where(x < 0, -out, out)
    return xp.where(xp.isnan(x), x, out)
