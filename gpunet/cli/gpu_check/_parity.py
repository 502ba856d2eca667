"""Stage 3: whole fits on the CPU and on the GPU from the same seed, compared.

Every shipped layer, loss and optimizer appears in at least one case (and every
dense activation), in float32 and float16. float32 is compared with the CPU
directly. In float16 two devices that sum in different orders drift apart
step by step, so each is compared with a float64 CPU run instead, and the GPU
passes when its error is no more than twice the CPU's own float16 error (plus a
little). Without a GPU the same fits run on the simulated device ``sim`` (the
reference ops on a device that is not the host; float32 only, it has no
float16) against the CPU, whose dense and loss ops run the host build of the
kernels.

Example:
    >>> from gpunet.cli.gpu_check._parity import CASES
    >>> len(CASES) >= 7
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gpunet.cli.gpu_check._child import Context

F32_LOSS_RTOL = 1e-4  # float32, TF32 off, 12 steps
F32_WEIGHT_TOL = 1e-3  # |dw| / max(1, |w|)
F16_SLACK = 2e-3


def _layers() -> Any:
    import gpunet as gn

    return gn.layers


def _seq(*layers: Any) -> Callable[[str], Any]:
    def build(device: str) -> Any:
        import gpunet as gn

        return gn.Sequential([f() for f in layers], device=device)

    return build


def _merge(device: str) -> Any:
    import gpunet as gn

    L = gn.layers

    class Merge(gn.Model):
        def __init__(self) -> None:
            super().__init__(device=device)
            self.a = L.Dense(12, activation="selu")
            self.b = L.Dense(12, activation="silu")
            self.add, self.cat = L.Add(), L.Concatenate()
            self.out = L.Dense(3, activation="softmax")

        def call(self, x: Any, training: bool = False) -> Any:
            return self.out(self.cat([self.add([self.a(x), self.b(x)]), x]))

    return Merge()


def _d(units: int, act: str = "linear", **kw: Any) -> Callable[[], Any]:
    return lambda: _layers().Dense(units, activation=act, **kw)


# name: (build(device), loss, optimizer spec, targets kind, input shape)
Case = tuple[Callable[[str], Any], str, tuple[str, dict[str, Any]], str, tuple[int, ...]]
CASES: dict[str, Case] = {
    "dense relu/tanh, sparse CE, Adam": (
        _seq(_d(16, "relu", input_shape=(8,)), _d(16, "tanh"), _d(3, "softmax")),
        "sparse_categorical_crossentropy", ("Adam", {}), "labels", (8,)),
    "BatchNorm, Activation, CE, SGD nesterov": (
        _seq(_d(16, input_shape=(8,)), lambda: _layers().BatchNormalization(),
             lambda: _layers().Activation("relu"), _d(3, "softmax")),
        "categorical_crossentropy", ("SGD", {"momentum": 0.9, "nesterov": True}), "onehot", (8,)),
    "LayerNorm, gelu, BCE, AdamW": (
        _seq(_d(16, "gelu", input_shape=(8,)), lambda: _layers().LayerNormalization(),
             _d(1, "sigmoid")),
        "binary_crossentropy", ("AdamW", {}), "binary", (8,)),
    "Flatten, swish, Dropout, MSE, RMSprop": (
        _seq(lambda: _layers().Flatten(input_shape=(4, 2)), _d(16, "swish"),
             lambda: _layers().Dropout(0.0), _d(2)),
        "mse", ("RMSprop", {"momentum": 0.9}), "values", (4, 2)),
    "elu/softplus, MAE, Adagrad": (
        _seq(_d(16, "elu", input_shape=(8,)), _d(8, "softplus"), _d(2)),
        "mae", ("Adagrad", {"learning_rate": 0.05}), "values", (8,)),
    "leaky_relu/sigmoid, Huber, SGD": (
        _seq(_d(16, "leaky_relu", input_shape=(8,)), _d(8, "sigmoid"), _d(2)),
        "huber", ("SGD", {"learning_rate": 0.05}), "values", (8,)),
    "relu, Poisson, Adam": (
        _seq(_d(16, "relu", input_shape=(8,)), _d(2, "softplus")),
        "poisson", ("Adam", {}), "counts", (8,)),
    "subclassed Add/Concatenate, selu/silu": (
        _merge, "sparse_categorical_crossentropy", ("Adam", {}), "labels", (8,)),
}  # fmt: skip


def _data(kind: str, shape: tuple[int, ...], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((128, *shape))
    s = X.reshape(128, -1)[:, :2].sum(1)
    labels = (s > 0).astype("int64") + (s > 1)
    y = {
        "labels": labels,
        "onehot": np.eye(3)[labels],
        "binary": (s > 0).astype("float64")[:, None],
        "values": np.stack([np.sin(s), s * 0.5], 1),
        "counts": rng.poisson(np.exp(np.clip(np.stack([s, -s], 1) * 0.5, -2, 2))).astype("float64"),
    }[kind]
    return X.astype(dtype), (y if kind == "labels" else y.astype(dtype))


def fit(name: str, device: str, dtype: str, epochs: int = 3) -> tuple[np.ndarray, list[Any]]:
    """Per-epoch losses and final weights of case ``name`` on ``device``."""
    import gpunet as gn

    build, loss, (opt, kw), kind, shape = CASES[name]
    gn.config.set_floatx(dtype)
    try:
        gn.utils.set_random_seed(0)
        model = build(device)
        model.compile(optimizer=getattr(gn.optimizers, opt)(**kw), loss=loss)
        X, y = _data(kind, shape, dtype)
        hist = model.fit(X, y, epochs=epochs, batch_size=32, shuffle=False, verbose=0)
        weights = [np.asarray(w, "float64") for w in model.get_weights()]
        return np.asarray(hist.history["loss"], "float64"), weights
    finally:
        gn.config.set_floatx("float32")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def _wdiff(a: list[Any], b: list[Any]) -> float:
    return max(float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(y)))) for x, y in
               zip(a, b, strict=True))  # fmt: skip


def run(ctx: Context) -> None:
    target = "cuda" if ctx.n_gpu else "sim"
    if target == "sim":
        try:
            import array_api_strict  # noqa: F401
        except ImportError:
            target = ""
    for name in CASES:
        for dtype in ("float32", "float16"):
            label = f"{name} [{dtype}]"
            if not target:
                ctx.check(label, "not run", f"{ctx.no_gpu()}; the simulated device needs "
                          "array-api-strict (pip install array-api-strict)")  # fmt: skip
                continue
            if dtype == "float16" and target == "sim":
                ctx.check(label, "not run", f"{ctx.no_gpu()}; the simulated device has no float16")
                continue
            try:
                _compare(ctx, label, name, target, dtype)
            except Exception as exc:
                ctx.check(label, "failed", f"{type(exc).__name__}: {str(exc)[:300]}")


def _compare(ctx: Context, label: str, name: str, target: str, dtype: str) -> None:
    start = time.perf_counter()
    l_dev, w_dev = fit(name, target, dtype)
    l_cpu, w_cpu = fit(name, "cpu", dtype)
    took = time.perf_counter() - start
    if dtype == "float32":
        lr, wd = _rel(l_dev, l_cpu), _wdiff(w_dev, w_cpu)
        good = lr <= F32_LOSS_RTOL and wd <= F32_WEIGHT_TOL
        ctx.check(label, "ok" if good else "failed",
                  f"{target} vs cpu: loss rel diff {lr:.1e} (limit {F32_LOSS_RTOL:g}), weights "
                  f"{wd:.1e} (limit {F32_WEIGHT_TOL:g}); {took:.1f} s",
                  loss_rel=lr, weight_diff=wd)  # fmt: skip
        return
    l64, w64 = fit(name, "cpu", "float64")
    e_dev, e_cpu = _rel(l_dev, l64), _rel(l_cpu, l64)
    limit = 2 * e_cpu + F16_SLACK
    ctx.check(label, "ok" if e_dev <= limit else "failed",
              f"loss rel error vs float64: {target} {e_dev:.1e}, cpu {e_cpu:.1e} (limit "
              f"{limit:.1e}); weights vs float64: {target} {_wdiff(w_dev, w64):.1e}, cpu "
              f"{_wdiff(w_cpu, w64):.1e}", loss_rel=e_dev, cpu_loss_rel=e_cpu)  # fmt: skip
