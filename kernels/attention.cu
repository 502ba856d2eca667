// Attention kernels. Conventions of fused.cu: grid-stride loops, no shared memory and
// no __syncthreads (so the tests run each one on the host, compiled by g++); outputs
// first, then inputs, then sizes and scalars (as long long and double).
//
// Scores are rows of a (B, H, Tq, Tk) tensor, row r = (b, h, q) with
//      q = r % Tq,  h = (r / Tq) % H,  b = r / (Tq * H).
// A mask is read through element strides (sb, sh, sq, sk), 0 along the axes it
// broadcasts over, so a (B, 1, 1, Tk) padding mask is never expanded. causal != 0
// keeps key j <= q (top-left alignment).
//
// gpunet_attn_softmax / _bwd: the fused masked softmax between the batched GEMMs
// (cuBLAS), one thread per score row.
//
// gpunet_attn_fwd / _bwd_dq / _bwd_dkv: attention that never holds the Tq x Tk
// scores (FlashAttention's algorithm: an online softmax over the keys, the row's
// log-sum-exp kept for the backward, which recomputes the weights). One thread per
// query row (forward, dQ) or key row (dK, dV): no atomics, deterministic. Head
// sizes up to kAttnMaxD; Q, K, V (B, H, T, d) C-contiguous. Not tiled through
// shared memory.
#include "attention.cuh"

#define kAttnMaxD 32

// The mask row of score row r (null when there is no mask).
__device__ inline const bool* gpunet_attn_mask_row(const bool* keep, long long r, long long Tq,
                                                   long long H, long long sb, long long sh,
                                                   long long sq) {
    if (!keep) return nullptr;
    long long q = r % Tq, h = (r / Tq) % H, b = r / (Tq * H);
    return keep + b * sb + h * sh + q * sq;
}

template <typename T>
__global__ void gpunet_attn_softmax(T* P, const T* S, const bool* keep, long long rows,
                                    long long Tq, long long Tk, long long H, long long sb,
                                    long long sh, long long sq, long long sk, long long causal,
                                    double scale) {
    typedef typename gpunet::Math<T>::type M;
    GPUNET_GRID_STRIDE(r, rows) {
        const bool* kr = gpunet_attn_mask_row(keep, r, Tq, H, sb, sh, sq);
        long long last = causal ? r % Tq : Tk - 1;
        gpunet::attn_softmax_row<M>(P + r * Tk, S + r * Tk, kr, sk, Tk, last, M(scale));
    }
}

template <typename T>
__global__ void gpunet_attn_softmax_bwd(T* dS, const T* dP, const T* P, long long rows,
                                        long long Tk, double scale) {
    typedef typename gpunet::Math<T>::type M;
    GPUNET_GRID_STRIDE(r, rows) {
        gpunet::attn_softmax_bwd_row<M>(dS + r * Tk, dP + r * Tk, P + r * Tk, Tk, M(scale));
    }
}

// O (rows, dv) and lse (rows,) from Q (rows, dk), K (B*H, Tk, dk), V (B*H, Tk, dv).
template <typename T>
__global__ void gpunet_attn_fwd(T* O, float* lse, const T* Q, const T* K, const T* V,
                                const bool* keep, long long rows, long long Tq, long long Tk,
                                long long H, long long dk, long long dv, long long sb,
                                long long sh, long long sq, long long sk, long long causal,
                                double scale) {
    typedef float M;
    GPUNET_GRID_STRIDE(r, rows) {
        const bool* kr = gpunet_attn_mask_row(keep, r, Tq, H, sb, sh, sq);
        long long last = causal ? r % Tq : Tk - 1;
        const T* q = Q + r * dk;
        const T* Kh = K + (r / Tq) * Tk * dk;
        const T* Vh = V + (r / Tq) * Tk * dv;
        M acc[kAttnMaxD];
        for (long long c = 0; c < dv; ++c) acc[c] = M(0);
        M m = M(-1e9), l = M(0);  // running max (from FILL: a masked score) and sum
        for (long long j = 0; j < Tk; ++j) {
            bool kept = gpunet::attn_kept(kr, sk, j, last);
            M z = kept ? M(scale) * gpunet::attn_dot<M>(q, Kh + j * dk, dk) : M(-1e9);
            M m_new = z > m ? z : m;
            M corr = gpunet::exp_(m - m_new), p = gpunet::exp_(z - m_new);
            l = l * corr + p;
            for (long long c = 0; c < dv; ++c)
                acc[c] = acc[c] * corr + (kept ? p * M(Vh[j * dv + c]) : M(0));
            m = m_new;
        }
        for (long long c = 0; c < dv; ++c) O[r * dv + c] = T(acc[c] / l);
        lse[r] = m + gpunet::log_(l);
    }
}

// dQ (rows, dk) and Dsum (rows,) = rowsum(dO * O), which _bwd_dkv reads.
template <typename T>
__global__ void gpunet_attn_bwd_dq(T* dQ, float* Dsum, const T* dO, const T* O, const T* Q,
                                   const T* K, const T* V, const float* lse, const bool* keep,
                                   long long rows, long long Tq, long long Tk, long long H,
                                   long long dk, long long dv, long long sb, long long sh,
                                   long long sq, long long sk, long long causal, double scale) {
    typedef float M;
    GPUNET_GRID_STRIDE(r, rows) {
        const bool* kr = gpunet_attn_mask_row(keep, r, Tq, H, sb, sh, sq);
        long long last = causal ? r % Tq : Tk - 1;
        const T* q = Q + r * dk;
        const T* g = dO + r * dv;
        const T* Kh = K + (r / Tq) * Tk * dk;
        const T* Vh = V + (r / Tq) * Tk * dv;
        M D = gpunet::attn_dot<M>(g, O + r * dv, dv);
        M acc[kAttnMaxD];
        for (long long c = 0; c < dk; ++c) acc[c] = M(0);
        for (long long j = 0; j < Tk; ++j) {
            if (!gpunet::attn_kept(kr, sk, j, last)) continue;
            M p = gpunet::exp_(M(scale) * gpunet::attn_dot<M>(q, Kh + j * dk, dk) - lse[r]);
            M ds = M(scale) * p * (gpunet::attn_dot<M>(g, Vh + j * dv, dv) - D);
            for (long long c = 0; c < dk; ++c) acc[c] += ds * M(Kh[j * dk + c]);
        }
        for (long long c = 0; c < dk; ++c) dQ[r * dk + c] = T(acc[c]);
        Dsum[r] = D;
    }
}

// dK, dV (B*H*Tk, d): one thread per key row, summing over the queries.
template <typename T>
__global__ void gpunet_attn_bwd_dkv(T* dK, T* dV, const T* dO, const T* Q, const T* K,
                                    const T* V, const float* lse, const float* Dsum,
                                    const bool* keep, long long krows, long long Tq,
                                    long long Tk, long long H, long long dk, long long dv,
                                    long long sb, long long sh, long long sq, long long sk,
                                    long long causal, double scale) {
    typedef float M;
    GPUNET_GRID_STRIDE(kr, krows) {
        long long j = kr % Tk, bh = kr / Tk;
        const T* k = K + kr * dk;
        const T* v = V + kr * dv;
        M gk[kAttnMaxD], gv[kAttnMaxD];
        for (long long c = 0; c < dk; ++c) gk[c] = M(0);
        for (long long c = 0; c < dv; ++c) gv[c] = M(0);
        for (long long i = causal ? j : 0; i < Tq; ++i) {
            long long r = bh * Tq + i;
            const bool* mr = gpunet_attn_mask_row(keep, r, Tq, H, sb, sh, sq);
            if (mr && !mr[j * sk]) continue;
            const T* q = Q + r * dk;
            const T* g = dO + r * dv;
            M p = gpunet::exp_(M(scale) * gpunet::attn_dot<M>(q, k, dk) - lse[r]);
            M ds = M(scale) * p * (gpunet::attn_dot<M>(g, v, dv) - Dsum[r]);
            for (long long c = 0; c < dv; ++c) gv[c] += p * M(g[c]);
            for (long long c = 0; c < dk; ++c) gk[c] += ds * M(q[c]);
        }
        for (long long c = 0; c < dk; ++c) dK[kr * dk + c] = T(gk[c]);
        for (long long c = 0; c < dv; ++c) dV[kr * dv + c] = T(gv[c]);
    }
}
