// Row routines of attention: the masked, scaled softmax of one score row and its
// backward, in the math type M (float for __half storage). Semantics of the NumPy
// reference (gpunet/backend/_attention_ops.py): a masked score is replaced by FILL
// and its weight then set to 0, so a row with every key masked has all-zero
// weights; NaN in a row makes the row's kept weights NaN.
#pragma once
#include "gpunet_hd.cuh"

namespace gpunet {

// Key j of a row is kept when the mask byte (stride sk, none when keep is null)
// says so and j <= last (the causal limit; Tk - 1 when not causal).
GPUNET_HD bool attn_kept(const bool* keep, long long sk, long long j, long long last) {
    return j <= last && (keep == nullptr || keep[j * sk]);
}

// P[j] = kept ? softmax_j(kept ? scale * S : FILL) : 0 over Tk keys; returns the
// row's log-sum-exp (what a backward that recomputes P needs).
template <typename M, typename T>
GPUNET_HD M attn_softmax_row(T* P, const T* S, const bool* keep, long long sk, long long Tk,
                             long long last, M scale) {
    const M fill = M(-1e9);  // a masked score: Keras' large negative number
    M m = fill;
    bool nan = false;
    for (long long j = 0; j < Tk; ++j) {
        M z = attn_kept(keep, sk, j, last) ? scale * M(S[j]) : fill;
        nan = nan || is_nan(z);
        if (j == 0 || z > m) m = z;
    }
    if (nan) m = M(0) / M(0);  // NaN anywhere: the kept weights are NaN (as xp.max)
    // one exp per score: P holds exp(z - m) (<= 1, so half storage keeps it) until
    // the sum is known; masked keys still count towards it, as in the reference
    M s = M(0);
    for (long long j = 0; j < Tk; ++j) {
        bool kept = attn_kept(keep, sk, j, last);
        M e = exp_((kept ? scale * M(S[j]) : fill) - m);
        s += e;
        P[j] = T(kept ? e : M(0));
    }
    const M inv = M(1) / s;
    for (long long j = 0; j < Tk; ++j) P[j] = T(M(P[j]) * inv);
    return m + log_(s);
}

// dS[j] = scale * P[j] * (dP[j] - sum_k P[k] dP[k]); masked keys have P = 0, so
// they get no gradient without reading the mask.
template <typename M, typename T>
GPUNET_HD void attn_softmax_bwd_row(T* dS, const T* dP, const T* P, long long Tk, M scale) {
    M d = M(0);
    for (long long j = 0; j < Tk; ++j) d += M(P[j]) * M(dP[j]);
    for (long long j = 0; j < Tk; ++j) dS[j] = T(scale * M(P[j]) * (M(dP[j]) - d));
}

// sum_c a[c] * b[c] in M.
template <typename M, typename T>
GPUNET_HD M attn_dot(const T* a, const T* b, long long n) {
    M s = M(0);
    for (long long c = 0; c < n; ++c) s += M(a[c]) * M(b[c]);
    return s;
}

}  // namespace gpunet
