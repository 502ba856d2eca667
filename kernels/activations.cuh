// Activation functors for the fused kernels in fused.cu.
//
// Each functor has, in the math type M (float for half storage):
//   fwd(x, alpha)         -> y = act(x)
//   bwd(dy, x, y, alpha)  -> dx = dy * act'(x)
//   kNeedsX               -> true when bwd reads the input x; otherwise it reads
//                            only the output y (cheaper: the forward need not keep x)
// alpha is the slope of leaky_relu and ignored by the others. Every formula is
// the one of gpunet/backend/_activation_ops.py, which defines "correct".
#pragma once
#include "gpunet_hd.cuh"

namespace gpunet {

// x * cdf(x) and its derivative tend to 0 at x = -inf, where the formulas give
// -inf * 0 = NaN: the x*cdf activations return the limit there, as the reference.
template <typename M>
GPUNET_HD bool is_neg_inf(M x) { return x < M(0) && !is_finite(x); }

// Stable logistic: exp(-|x|) never overflows, so sigmoid(-1e4) is 0, not NaN.
template <typename M>
GPUNET_HD M sigmoid(M x) {
    M e = exp_(-abs_(x));
    return (x >= M(0) ? M(1) : e) / (M(1) + e);
}

struct Linear {
    static constexpr bool kNeedsX = false;
    template <typename M>
    GPUNET_HD static M fwd(M x, M) { return x; }
    template <typename M>
    GPUNET_HD static M bwd(M dy, M, M, M) { return dy; }
};

struct Relu {
    static constexpr bool kNeedsX = false;
    // NaN propagates, as numpy.maximum(x, 0) does.
    template <typename M>
    GPUNET_HD static M fwd(M x, M) { return (x > M(0) || is_nan(x)) ? x : M(0); }
    // Gradient 0 at the kink (y == 0); dy * 0 keeps a NaN/inf dy visible, as dY * (Y > 0).
    template <typename M>
    GPUNET_HD static M bwd(M dy, M, M y, M) { return dy * M(y > M(0) ? 1 : 0); }
};

struct LeakyRelu {
    static constexpr bool kNeedsX = false;
    template <typename M>
    GPUNET_HD static M fwd(M x, M alpha) { return x > M(0) ? x : x * alpha; }
    // sign(y) == sign(x) for alpha > 0, so y suffices.
    template <typename M>
    GPUNET_HD static M bwd(M dy, M, M y, M alpha) { return y > M(0) ? dy : dy * alpha; }
};

struct Sigmoid {
    static constexpr bool kNeedsX = false;
    template <typename M>
    GPUNET_HD static M fwd(M x, M) { return sigmoid(x); }
    template <typename M>
    GPUNET_HD static M bwd(M dy, M, M y, M) { return dy * (y * (M(1) - y)); }
};

struct Tanh {
    static constexpr bool kNeedsX = false;
    template <typename M>
    GPUNET_HD static M fwd(M x, M) { return tanh_(x); }
    template <typename M>
    GPUNET_HD static M bwd(M dy, M, M y, M) { return dy * (M(1) - y * y); }
};

// Exact GELU: x * Phi(x), with the normal CDF as erfc(-x / sqrt 2) / 2, which keeps
// full relative precision for negative x where 1 + erf(x / sqrt 2) cancels.
struct Gelu {
    static constexpr bool kNeedsX = true;
    template <typename M>
    GPUNET_HD static M cdf(M x) { return M(0.5) * erfc_(x * M(-0.70710678118654752440)); }
    template <typename M>
    GPUNET_HD static M fwd(M x, M) { return is_neg_inf(x) ? M(0) : x * cdf(x); }
    template <typename M>
    GPUNET_HD static M bwd(M dy, M x, M, M) {
        if (is_neg_inf(x)) return dy * M(0);
        M pdf = M(0.39894228040143267794) * exp_(M(-0.5) * x * x);
        return dy * (cdf(x) + x * pdf);
    }
};

// GELU, tanh approximation (Hendrycks & Gimpel, https://arxiv.org/abs/1606.08415):
// 0.5 x (1 + tanh(u)) = x * sigmoid(2u) with u = c (x + 0.044715 x^3). The sigmoid
// form avoids the cancellation of 1 + tanh(u) for negative u; likewise
// 0.5 (1 - tanh(u)^2) = 2 s (1 - s) with s = sigmoid(2u).
struct GeluTanh {
    static constexpr bool kNeedsX = true;
    template <typename M>
    GPUNET_HD static M two_u(M x) {
        return M(2 * 0.79788456080286535588) * (x + M(0.044715) * x * x * x);
    }
    template <typename M>
    GPUNET_HD static M fwd(M x, M) { return is_neg_inf(x) ? M(0) : x * sigmoid(two_u(x)); }
    template <typename M>
    GPUNET_HD static M bwd(M dy, M x, M, M) {
        if (is_neg_inf(x)) return dy * M(0);
        M s = sigmoid(two_u(x));
        M du = M(0.79788456080286535588) * (M(1) + M(3 * 0.044715) * x * x);
        return dy * (s + M(2) * x * s * (M(1) - s) * du);
    }
};

// swish / silu: x * sigmoid(x); its backward recomputes sigmoid(x) from x.
struct Swish {
    static constexpr bool kNeedsX = true;
    template <typename M>
    GPUNET_HD static M fwd(M x, M) { return is_neg_inf(x) ? M(0) : x * sigmoid(x); }
    template <typename M>
    GPUNET_HD static M bwd(M dy, M x, M, M) {
        if (is_neg_inf(x)) return dy * M(0);
        M s = sigmoid(x);
        return dy * (s * (M(1) + x * (M(1) - s)));
    }
};

}  // namespace gpunet
