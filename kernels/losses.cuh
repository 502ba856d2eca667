// Row routines of the fused losses in fused.cu: one call handles one sample
// (one row of logits) and returns its loss while writing its gradient.
//
// Both follow gpunet/backend/_loss_ops.py, the definition of "correct":
//   softmax:  m = max_c z_c (0 when not finite),  S = sum_c exp(z_c - m)
//             t_c = (1 - ls) * target_c + ls / C,  sT = sum_c t_c
//             loss = sT * log(S) - sum_c t_c * (z_c - m)
//             dz_c = (exp(z_c - m) / S * sT - t_c) * scale
//   sigmoid:  t = (1 - ls) * target + ls / 2
//             loss = mean_k max(z, 0) - z t + log1p(exp(-|z|))
//             dz = (sigmoid(z) - t) * scale / K
// The loss never takes the log of a probability and never subtracts m + log S
// from z_label: both stay exact for logits of +-1e4 in float32.
#pragma once
#include "activations.cuh"

namespace gpunet {

// Targets of one row given as a dense (one-hot or soft) vector.
template <typename T>
struct DenseTarget {
    const T* t;
    template <typename M>
    GPUNET_HD M at(long long c) const { return M(t[c]); }
};

// Targets of one row given as an integer label. A label outside [0, C) gives an
// all-zero row, exactly as the reference one-hot does, and never reads outside.
template <typename I>
struct LabelTarget {
    I label;
    template <typename M>
    GPUNET_HD M at(long long c) const { return M(c == (long long)label ? 1 : 0); }
};

template <typename M, typename T, typename Target>
GPUNET_HD M softmax_xent_row(T* dz, const T* z, long long C, Target target, M ls, M scale) {
    M m = C > 0 ? M(z[0]) : M(0);
    for (long long c = 1; c < C; ++c) {
        M v = M(z[c]);
        if (v > m || is_nan(v)) m = v;  // NaN wins, as in numpy.max
    }
    if (!is_finite(m)) m = M(0);
    const M keep = M(1) - ls;
    const M spread = C > 0 ? ls / M(C) : M(0);
    M S = M(0), sT = M(0), tz = M(0);
    for (long long c = 0; c < C; ++c) {
        M zs = M(z[c]) - m;
        M t = target.template at<M>(c) * keep + spread;
        S += exp_(zs);
        sT += t;
        tz += t * zs;
    }
    for (long long c = 0; c < C; ++c) {
        M t = target.template at<M>(c) * keep + spread;
        dz[c] = T((exp_(M(z[c]) - m) / S * sT - t) * scale);
    }
    return sT * log_(S) - tz;
}

template <typename M, typename T>
GPUNET_HD M sigmoid_bce_row(T* dz, const T* z, const T* target, long long K, M ls, M scale) {
    const M keep = M(1) - ls;
    const M half_ls = M(0.5) * ls;
    M total = M(0);
    for (long long k = 0; k < K; ++k) {
        M x = M(z[k]);
        M t = M(target[k]) * keep + half_ls;
        M pos = (x > M(0) || is_nan(x)) ? x : M(0);
        total += pos - x * t + log1p_(exp_(-abs_(x)));
        dz[k] = T((sigmoid(x) - t) * scale);
    }
    return K > 0 ? total / M(K) : M(0);
}

}  // namespace gpunet
