"""``gpunet_adam`` given a device count of skipped steps (``AdamStep``) forms the bias
corrections of step ``t - skipped`` itself, as the host does in double: the host build
of the kernel against the reference given the host's constants."""

from __future__ import annotations

import numpy as np
import pytest

from gpunet.backend._optim_ops import AdamStep, adam_constants
from gpunet.backend.cupy_ops import FusedOps
from gpunet.backend.ops import Ops


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale_eps", [False, True])  # Keras' eps, PyTorch's
def test_the_kernel_takes_the_step_number_from_the_device(host, dtype, scale_eps):
    rng = np.random.default_rng(3)
    P, G, M, V = (rng.standard_normal(1000).astype(dtype) for _ in range(4))
    V = np.abs(V)
    lr, t, skipped, b1, b2, eps = 0.01, 7, 3, 0.9, 0.999, 1e-3
    lr_t, eps_t = adam_constants(lr, t - skipped, b1, b2, eps, scale_eps)
    want = Ops().adam(P, G, M, V, lr_t=lr_t, beta1=b1, beta2=b2, eps=eps_t)
    got = [a.copy() for a in (P, G, M, V)]
    step = AdamStep(lr, t, np.asarray(skipped, "int32"), scale_eps)
    FusedOps().adam(got[0], got[1], got[2], got[3], lr_t=123.0, beta1=b1, beta2=b2, eps=eps,
                    step=step)  # fmt: skip
    for a, b in zip((got[0], got[2], got[3]), want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == "float32" else 1e-14)


def test_the_reference_forms_the_same_constants_on_the_device():
    ops = Ops()
    for t, skipped in ((1, 0), (5, 2), (2000, 7)):
        step = AdamStep(0.1, t, np.asarray(skipped, "int32"), True)
        lr_t, eps_t = ops.device_adam_constants(step, 0.9, 0.999, 1e-8)
        assert (float(lr_t), float(eps_t)) == adam_constants(0.1, t - skipped, 0.9, 0.999,
                                                             1e-8, True)  # fmt: skip
