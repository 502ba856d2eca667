"""The adding problem: read a sequence of T random values, two of them marked, and
output the sum of the marked two. The answer depends on steps up to T apart, which a
SimpleRNN's vanishing gradient makes hard and an LSTM's cell state makes easy.
Guessing the mean scores a mean squared error of 1/6 = 0.167.

The task is Hochreiter & Schmidhuber's (1997) in the form most papers since use
(Le et al. 2015, Arjovsky et al. 2016): values uniform in [0, 1), one marker in each
half of the sequence (see ``_series.adding_problem``). An LSTM sits on the 0.167
plateau for several hundred steps, then drops to near zero within ~200 steps.

    python examples/adding_problem.py                  # T = 100, LSTM and SimpleRNN
    python examples/adding_problem.py --length 30 --units 32 --samples 8000 --epochs 4

(the second is the test's short run: LSTM 0.0044, SimpleRNN 0.1744, a few seconds).
Measured with the defaults on 2 cores shared with other work (load 8 to 12):

    $ python examples/adding_problem.py
    T = 100, 5 epochs of 20000 (1565 steps of 64); validation MSE (mean guess: 0.167):
            lstm: 0.0002  (107 s)
      simple_rnn: 0.1760  (38 s)

and with ``--seed 1``: lstm 0.0009, simple_rnn 0.1840. Evaluated every 100 steps (on
the seed-0 data, unshuffled), the LSTM left the plateau between steps 700 and 800;
PyTorch's ``nn.LSTM`` with the same data, model, Adam(1e-2), batch size and
forget-gate bias of 1 (clipping the global norm to 1) left it between steps 800 and
900 and reached 0.0004 by step 1600. At Adam(2e-3) the drop comes later (T = 50:
after ~1200 steps, in gpunet and PyTorch alike; T = 100: ~2100 steps).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _series

import gpunet as gn

BASELINE = 1 / 6  # the variance of the sum of two uniform values: MSE of always saying 1.0
CELLS = {"lstm": gn.layers.LSTM, "simple_rnn": gn.layers.SimpleRNN}


def train(cell: str, length: int, units: int, epochs: int, n: int, lr: float, seed: int) -> float:
    """Validation mean squared error of ``cell`` ("lstm" or "simple_rnn") after training."""
    gn.utils.set_random_seed(seed)
    X, y = _series.adding_problem(n, length, seed=seed)
    Xv, yv = _series.adding_problem(1000, length, seed=seed + 1)
    model = gn.Sequential([gn.Input((length, 2)), CELLS[cell](units), gn.layers.Dense(1)])
    # clipping keeps the large first steps off the plateau's cliffs; a rate of 1e-2
    # leaves the plateau about twice as soon as 2e-3 at T = 100
    model.compile(optimizer=gn.optimizers.Adam(lr, clipnorm=1.0), loss="mse")
    model.fit(X, y, epochs=epochs, batch_size=64, verbose=0)
    return float(model.evaluate(Xv, yv, verbose=0))


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    a = p.parse_args(argv)
    steps = a.epochs * -(-a.samples // 64)
    print(f"T = {a.length}, {a.epochs} epochs of {a.samples} ({steps} steps of 64); "
          f"validation MSE (mean guess: {BASELINE:.3f}):", flush=True)  # fmt: skip
    scores = {}
    for c in a.cells:
        t0 = time.perf_counter()
        scores[c] = train(c, a.length, a.units, a.epochs, a.samples, a.lr, a.seed)
        print(f"  {c:>10}: {scores[c]:.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return scores


if __name__ == "__main__":
    main()
