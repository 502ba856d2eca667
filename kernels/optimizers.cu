// Fused optimizer updates over flat parameter buffers: one pass reads the
// gradient and updates the parameter and its state in place (Thinc's adam
// kernel). P is the storage type; the math runs in gpunet::Math<P>::type, so
// half parameters update in float (Chainer's split). Grid-stride loops only.
//
// The instantiations are listed once, in INSTANTIATIONS of
// gpunet/backend/_kernels.py; a test checks that list against this file.
#include "optimizers.cuh"

// Adam / AdamW over n elements: param, m, v updated in place from grad.
// Constants are formed in double, then rounded once, as the NumPy reference does.
// ok (nullable): a device flag; when false the step leaves everything untouched, so a
// non-finite loss never reaches the weights although the host has not looked yet.
// skipped (nullable): the steps a false ok skipped so far, counted on the device. Then
// this is step t - *skipped (a skipped step does not count, as Keras and PyTorch never
// take it) and the bias corrections are formed here, in double as the host forms them:
// lr_t = lr sqrt(1 - b2^k) / (1 - b1^k), eps scaled by sqrt(1 - b2^k) if scale_eps.
template <typename P>
__global__ void gpunet_adam(P* param, P* m, P* v, const P* grad, long long n, double lr_t,
                            double beta1, double beta2, double eps, double decay,
                            const bool* ok, const int* skipped, double lr, long long t,
                            int scale_eps) {
    if (ok != 0 && !*ok) return;
    if (skipped != 0) {
        const double k = double(t - (long long)*skipped);
        const double root = sqrt(1.0 - pow(beta2, k));
        lr_t = lr * root / (1.0 - pow(beta1, k));
        if (scale_eps) eps *= root;
    }
    typedef typename gpunet::Math<P>::type M;
    const M lr_ = M(lr_t), b1 = M(beta1), c1 = M(1.0 - beta1), b2 = M(beta2),
            c2 = M(1.0 - beta2), e = M(eps), keep = M(1.0 - decay);
    GPUNET_GRID_STRIDE(i, n) {
        M p_ = M(param[i]), m_ = M(m[i]), v_ = M(v[i]);
        gpunet::adam_step(p_, m_, v_, M(grad[i]), lr_, b1, c1, b2, c2, e, keep);
        param[i] = P(p_);
        m[i] = P(m_);
        v[i] = P(v_);
    }
}

// SGD over n elements. vel == null (or momentum == 0): plain step, as the
// reference leaves the velocity untouched then. a, s: the buffer's form (Keras or
// PyTorch), as sgd_momentum_step takes them.
template <typename P>
__global__ void gpunet_sgd(P* param, P* vel, const P* grad, long long n, double lr,
                           double momentum, double a, double s, double decay, int nesterov,
                           const bool* ok) {
    if (ok != 0 && !*ok) return;
    typedef typename gpunet::Math<P>::type M;
    const M lr_ = M(lr), mu = M(momentum), a_ = M(a), s_ = M(s), keep = M(1.0 - decay);
    const bool plain = vel == 0 || momentum == 0.0;
    GPUNET_GRID_STRIDE(i, n) {
        if (plain) {
            param[i] = P(gpunet::sgd_step(M(param[i]), M(grad[i]), lr_, keep));
        } else {
            M p_ = M(param[i]), v_ = M(vel[i]);
            gpunet::sgd_momentum_step(p_, v_, M(grad[i]), a_, s_, mu, nesterov != 0, keep);
            param[i] = P(p_);
            vel[i] = P(v_);
        }
    }
}
