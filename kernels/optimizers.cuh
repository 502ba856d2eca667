// One element of the fused optimizer updates in optimizers.cu, in the math type M.
// Formulas follow gpunet/backend/_optim_ops.py. keep = 1 - decay is decoupled weight
// decay (AdamW, Keras' weight_decay), applied before the step; keep == 1 is exact.
#pragma once
#include "gpunet_hd.cuh"

namespace gpunet {

// Adam (https://arxiv.org/abs/1412.6980): lr_t carries both bias corrections.
template <typename M>
GPUNET_HD void adam_step(M& p, M& m, M& v, M g, M lr_t, M b1, M one_minus_b1, M b2,
                         M one_minus_b2, M eps, M keep) {
    m = b1 * m + one_minus_b1 * g;
    v = b2 * v + one_minus_b2 * (g * g);
    p = p * keep;
    p = p - lr_t * m / (sqrt_(v) + eps);
}

// SGD with momentum in the one form both libraries fit: v <- mu v + a g; p += s v
// (Nesterov: p += s (mu v + a g)). Keras: a = -lr, s = 1; PyTorch: a = 1 - dampening,
// s = -lr (see _sgd_coefficients in gpunet/backend/_optim_ops.py).
template <typename M>
GPUNET_HD void sgd_momentum_step(M& p, M& vel, M g, M a, M s, M mu, bool nesterov, M keep) {
    p = p * keep;
    vel = mu * vel + a * g;
    p = p + s * (nesterov ? mu * vel + a * g : vel);
}

template <typename M>
GPUNET_HD M sgd_step(M p, M g, M lr, M keep) { return p * keep - lr * g; }

}  // namespace gpunet
