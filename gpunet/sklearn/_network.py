"""The network behind the estimators: a gpunet ``Sequential`` of ``Dense`` layers whose
weights live in one flat parameter vector, with the loss scikit-learn's MLPs minimise.

The flat vector holds every kernel, then every bias (scikit-learn's packing order), so
the L2 penalty touches one contiguous prefix and L-BFGS sees one vector. The output
layer is linear: the output activation and its loss run as one fused op on the logits
(softmax + log-loss, sigmoid + binary log-loss), never as a probability through ``log``.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np

from gpunet import losses
from gpunet.engine import step as engine_step
from gpunet.layers import Dense
from gpunet.models import Sequential
from gpunet.optimizers import _FlatGroup

# scikit-learn's activation names -> gpunet's
HIDDEN = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
# output activation -> (activation of the last Dense, the gpunet loss it is trained with)
OUTPUT: dict[str, tuple[str | None, Any]] = {
    "softmax": ("softmax", losses.CategoricalCrossentropy),
    "logistic": ("sigmoid", losses.BinaryCrossentropy),
    "identity": (None, losses.MeanSquaredError),
    "exp": ("exponential", lambda: losses.Poisson()),
}


class Network:
    """Dense layers ``layer_units[0] -> ... -> layer_units[-1]`` on ``ops``'s device.

    Args:
        layer_units: Widths of the input, the hidden layers and the output.
        activation: Hidden activation in scikit-learn's words (``"relu"``, ...).
        out_activation: ``"softmax"``, ``"logistic"``, ``"identity"`` or ``"exp"``.
        ops: The backend of the device.
        dtype: Float dtype of the weights and of every computation.
    """

    def __init__(
        self, layer_units: list[int], activation: str, out_activation: str, ops: Any, dtype: Any
    ) -> None:
        self.ops, self.dtype = ops, np.dtype(dtype)
        self.act, self.out_activation = HIDDEN[activation], out_activation
        last = len(layer_units) - 2
        layers = [
            Dense(
                n_out,
                activation=OUTPUT[out_activation][0] if i == last else self.act,
                input_dim=n_in,
                kernel_initializer="zeros",
                dtype=self.dtype.name,
            )
            for i, (n_in, n_out) in enumerate(pairwise(layer_units))
        ]
        self.model = Sequential(layers, device=ops)
        # the loss whose backend op matches scikit-learn's up to the scale passed in
        self.model.compile(optimizer="sgd", loss=OUTPUT[out_activation][1]())
        # the model's graph-free step (softmax/sigmoid fold into the loss on the logits;
        # the exp output takes the Poisson loss with no clipping: its gradient through
        # exp is exp(z) - y exactly)
        step = engine_step.plan(self.model)
        if step is None or step.head is None:
            raise AssertionError("the estimators' network runs on the graph-free step")
        if out_activation == "exp":
            step.head = ("poisson", {"epsilon": 0.0}, None)
        self.step = step
        self.kernels = [layer.kernel for layer in layers]
        self.biases = [layer.bias for layer in layers]
        self.n_coef = sum(math.prod(W.shape) for W in self.kernels)
        self.group: Any = None
        self.key: Any = None  # what the estimator built it for

    @property
    def params(self) -> list[Any]:
        """Kernels first, then biases: the order of the flat vector."""
        return self.kernels + self.biases

    def bind(self, optimizer: Any = None) -> None:
        """Pack the weights into one flat buffer: the optimizer's, or a bare one."""
        if optimizer is not None:
            optimizer.build(self.params)
            self.group = optimizer.groups[0]
        else:
            self.group = _FlatGroup(self.ops, self.params, {})

    # -- weights as host arrays ---------------------------------------------------------
    def set_weights(self, coefs: list[np.ndarray], intercepts: list[np.ndarray]) -> None:
        flat = np.concatenate([np.ravel(a) for a in [*coefs, *intercepts]])
        self.ops.assign(self.group.P, self.ops.asarray(flat, dtype=self.dtype))

    def get_flat(self) -> np.ndarray:
        """The flat parameter vector on the host (one device-to-host copy)."""
        return np.array(self.ops.to_numpy(self.group.P))

    def unpack(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Split a host flat vector into ``coefs`` and ``intercepts`` lists."""
        coefs, intercepts, off = [], [], 0
        for W in self.kernels:
            n = math.prod(W.shape)
            coefs.append(flat[off : off + n].reshape(W.shape))
            off += n
        for b in self.biases:
            intercepts.append(flat[off : off + b.shape[0]].copy())
            off += b.shape[0]
        return [c.copy() for c in coefs], intercepts

    # -- the objective ------------------------------------------------------------------
    def loss_grad(self, X: Any, T: Any, scale: Any, l2: Any, const: Any = None) -> Any:
        """Loss of one batch (scikit-learn's definition) as a 0-d device array; the
        gradient lands in the flat ``G``.

        Args:
            X, T: Inputs and targets on the device.
            scale: Per-sample weight of the data term, a float (``1/n``) or a device
                array (``sample_weight / sum(sample_weight)``).
            l2: ``alpha / sum of weights`` (the L2 coefficient of scikit-learn's
                penalty), or None when ``alpha == 0``.
            const: Per-sample constant of the Poisson deviance (``y log y - y``).
        """
        ops, xp = self.ops, self.ops.xp
        for p in self.params:
            p.zero_grad()
        K, out = self.kernels[-1].shape[1], self.out_activation
        # scales make each backend loss scikit-learn's: sum over outputs of the mean
        # over samples (logistic), half the squared error with gradient z - y (identity)
        factor = {"softmax": 1.0, "logistic": K, "identity": 0.5 * K, "exp": K}[out]
        loss, _ = self.step(X, T, scale * factor, True)
        if const is not None:  # y log y - y: the rest of the Poisson deviance
            loss = loss + xp.sum(const * scale)
        if out == "identity":
            loss = loss / K  # reported as the mean over outputs, as scikit-learn does
        if l2 is not None:
            Pk = self.group.P[: self.n_coef]
            ops.iadd(self.group.G[: self.n_coef], l2 * Pk)
            loss = loss + (0.5 * l2) * dot(xp, Pk, Pk)
        return loss

    def forward(self, X: Any) -> Any:
        """Output activations for device inputs ``X`` with the current weights."""
        return self.step.predict(X)


def dot(xp: Any, a: Any, b: Any) -> Any:
    """``sum(a * b)`` of two vectors as a 0-d array; ``vecdot`` where the namespace has it
    (NumPy's is one BLAS call, ten times faster than multiply-then-sum at 10^5)."""
    vecdot = getattr(xp, "vecdot", None)
    return vecdot(a, b) if vecdot is not None else xp.sum(a * b)
