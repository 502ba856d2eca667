"""Models used from several threads at once: fits, predictions and hand-written
autograd loops finish and give the results they give one after the other.

Grad mode, the training flag of nested calls, NaN-probing hooks and seeded random
streams are per thread; the host kernels' thread pool serves one caller at a time.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from at_once import run_threads

import gpunet as gn

RNG = np.random.default_rng(5)
# big enough that the flat Adam update (about 1.3 M weights) runs on the host pool
X_BIG = RNG.normal(size=(96, 784)).astype("float32")
Y_BIG = RNG.integers(0, 10, size=96)
X_SMALL = RNG.normal(size=(64, 6)).astype("float32")


def _fit_big(seed: int) -> list[np.ndarray]:
    gn.utils.set_random_seed(seed)
    model = gn.Sequential(
        [
            gn.layers.Dense(1024, activation="relu", input_shape=(784,)),
            gn.layers.Dropout(0.2),
            gn.layers.Dense(512, activation="relu"),
            gn.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X_BIG, Y_BIG, epochs=1, batch_size=32, verbose=0)
    return [*model.get_weights(), model.predict(X_BIG[:8])]


def _torch_style_loop(seed: int) -> list[np.ndarray]:
    """Autograd on the graph: breaks if another thread's no_grad() leaks in."""
    gn.utils.set_random_seed(seed)
    net = gn.Sequential([gn.layers.Dense(8, activation="tanh"), gn.layers.Dense(1)])
    x, y = gn.tensor(X_SMALL), gn.tensor(X_SMALL[:, :1] * 2.0)
    net(x)  # build
    opt = gn.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return net.get_weights()


def _predict_loop(model: gn.Sequential, n: int) -> list[np.ndarray]:
    return [model.predict(X_SMALL, batch_size=16) for _ in range(n)]


@pytest.fixture(scope="module")
def served_model() -> gn.Sequential:
    gn.utils.set_random_seed(1)
    model = gn.Sequential([gn.layers.Dense(16, activation="relu", input_shape=(6,)),
                           gn.layers.Dense(3, activation="softmax")])  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _rounds(served_model: gn.Sequential, rounds: int) -> None:
    expected_big = [_fit_big(s) for s in (10, 11)]
    expected_loop = _torch_style_loop(12)
    expected_pred = served_model.predict(X_SMALL, batch_size=16)
    for _ in range(rounds):
        jobs = [
            (_fit_big, (10,)),
            (_fit_big, (11,)),
            (_torch_style_loop, (12,)),
            (_predict_loop, (served_model, 20)),
            (_predict_loop, (served_model, 20)),
        ]
        big0, big1, loop, preds0, preds1 = run_threads(jobs)
        for got, want in ((big0, expected_big[0]), (big1, expected_big[1]), (loop, expected_loop)):
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
        for p in preds0 + preds1:
            np.testing.assert_array_equal(p, expected_pred)
    # the main thread's own modes were never touched by the workers
    assert gn.is_grad_enabled()


def test_threads_fitting_and_predicting_match_sequential_runs(served_model):
    _rounds(served_model, 2)


@pytest.mark.slow
def test_threads_match_sequential_runs_twenty_rounds_in_a_row(served_model):
    _rounds(served_model, 20)


def test_grad_mode_and_training_flag_are_per_thread():
    seen: dict[str, object] = {}
    inside = threading.Event()
    release = threading.Event()

    def worker() -> None:
        with gn.no_grad():
            inside.set()
            release.wait(10)
            seen["worker"] = gn.is_grad_enabled()

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    assert inside.wait(10)
    seen["main"] = gn.is_grad_enabled()  # while the worker sits inside no_grad()
    x = gn.tensor(np.ones((2, 3)), requires_grad=True)
    (x * 2.0).sum().backward()
    release.set()
    t.join(10)
    assert seen == {"main": True, "worker": False}
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 2.0))


def test_a_seed_set_in_a_thread_gives_that_thread_its_own_streams():
    def draws(seed: int, n: int = 2) -> list[float]:
        gn.utils.set_random_seed(seed)
        return [gn.random.generator("init").random() for _ in range(n)]

    expected_main, expected_worker = draws(3), draws(4, 1)
    gn.utils.set_random_seed(3)
    got = [gn.random.generator("init").random()]
    out: list = []
    t = threading.Thread(target=lambda: out.extend(draws(4, 1)))
    t.start()
    t.join(10)
    got.append(gn.random.generator("init").random())  # the worker's seed left ours alone
    assert got == expected_main and out == expected_worker
