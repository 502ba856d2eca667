// Tiled attention (FlashAttention's algorithm): the Tq x Tk scores are never held.
// A block owns kRows query rows (forward, dQ) or key rows (dK, dV) of one (batch,
// head), one thread per row, and loops over tiles of kTile rows of the other side,
// loaded cooperatively into shared memory. The forward keeps an online softmax (a
// running max m and sum l; the accumulator is rescaled only when m grows) and writes
// O and each row's log-sum-exp; the backward recomputes the weights from it, as two
// kernels without atomics: dQ (and Dsum = rowsum(dO * O)) per query block, then dK,
// dV per key block. Float math for __half and __nv_bfloat16 storage.
//
// The semantics are those of the streaming kernels of attention.cu and of the NumPy
// reference: a masked score is FILL (its weight then 0), so a row with every key
// masked gives zeros; NaN in a row makes the row NaN. Masks are read through element
// strides (sb, sh, sq, sk), 0 along broadcast axes; causal != 0 keeps key j <= q.
// Keys past every causal limit of a query block are not loaded: their FILL terms of
// the softmax sum are added at the end ((Tk - kend) * exp(FILL - m)).
//
// D bounds both head sizes dk, dv <= D. A thread's own rows (q, dO; k, v) sit in
// shared memory and one accumulator row in registers (dV's is shared too); the NVRTC
// test holds every kernel to <= 128 registers without spills (__launch_bounds__).
// That holds at D = 32 for __half, __nv_bfloat16 and float only: ptxas (CUDA 12,
// sm_80) spills 160 to 1240 bytes in the backward at D = 64 and for double at 32,
// so only those are instantiated. Q, K, V, O, dO are
// (B*H, T, d) C-contiguous. Tile sizes keep static shared memory under 48 KB for
// double; they are not tuned (no GPU has measured these kernels).
#include "attention.cuh"

namespace gpunet {

// Shapes of a block for storage type T (math type M = Math<T>::type) and bound D.
template <typename T, int D>
struct FlashShape {
    typedef typename Math<T>::type M;
    static constexpr int kRows = 8192 / (D * int(sizeof(M)));  // threads = rows per block
    static constexpr int kTile = 4096 / (D * int(sizeof(M)));  // rows per streamed tile
    // __launch_bounds__' blocks per SM that caps ptxas at 128 registers a thread
    // (65536 / (128 * kRows)); without it, ptxas takes up to 255 to schedule loads early
    static constexpr int kMinBlocks = 512 / kRows;
};

// Rows [r0, r0 + R) of X (n rows of d) into s (pitch P >= d), zeros past the ends.
template <int R, int P, typename M, typename T>
__device__ inline void flash_load(M (*s)[P], const T* X, long long r0, long long n,
                                  long long d) {
    for (int e = threadIdx.x; e < R * P; e += blockDim.x) {
        int j = e / P, c = e % P;
        long long r = r0 + j;
        s[j][c] = (r < n && c < d) ? M(X[r * d + c]) : M(0);
    }
}

// The mask row of query i of head bh (null without a mask).
__device__ inline const bool* flash_mask_row(const bool* keep, long long bh, long long i,
                                             long long H, long long sb, long long sh,
                                             long long sq) {
    return keep ? keep + (bh / H) * sb + (bh % H) * sh + i * sq : nullptr;
}

}  // namespace gpunet

#define GPUNET_FLASH_BOUNDS gpunet::FlashShape<T, D>::kRows, gpunet::FlashShape<T, D>::kMinBlocks

// O (B*H, Tq, dv) and lse (B*H, Tq), in float (double for double), from
// Q (B*H, Tq, dk), K (B*H, Tk, dk), V (B*H, Tk, dv).
template <typename T, int D>
__global__ __launch_bounds__(GPUNET_FLASH_BOUNDS) void gpunet_flash_fwd(T* O, typename gpunet::Math<T>::type* lse, const T* Q,
                                 const T* K, const T* V, const bool* keep, long long BH,
                                 long long Tq, long long Tk, long long H, long long dk,
                                 long long dv, long long sb, long long sh, long long sq,
                                 long long sk, long long causal, double scale) {
    typedef typename gpunet::Math<T>::type M;
    typedef gpunet::FlashShape<T, D> S;
    GPUNET_SHARED(M, sK, [S::kTile][D]);
    GPUNET_SHARED(M, sV, [S::kTile][D]);
    GPUNET_SHARED(M, sQo, [S::kRows][D + 1]);  // the block's own rows (pitch D + 1: no
    const M fill = M(-1e9);                     // bank conflicts when thread t reads row t)
    long long tiles = (Tq + S::kRows - 1) / S::kRows;
    for (long long w = blockIdx.x; w < BH * tiles; w += gridDim.x) {  // uniform per block
        long long bh = w / tiles, q0 = (w % tiles) * S::kRows, i = q0 + threadIdx.x;
        bool live = i < Tq;
        long long r = bh * Tq + i;
        const bool* kr = gpunet::flash_mask_row(keep, bh, i, H, sb, sh, sq);
        long long last = causal ? i : Tk - 1;
        __syncthreads();  // the previous rows are no longer read
        gpunet::flash_load<S::kRows>(sQo, Q + bh * Tq * dk, q0, Tq, dk);
        // read after the tile loop's barrier
        const M* q = sQo[threadIdx.x];
        M acc[D];
        GPUNET_UNROLL
        for (int c = 0; c < D; ++c) acc[c] = M(0);
        M m = fill, l = M(0);
        long long kend = causal && q0 + S::kRows < Tk ? q0 + S::kRows : Tk;
        for (long long k0 = 0; k0 < kend; k0 += S::kTile) {
            __syncthreads();  // every thread is done with the previous tile
            gpunet::flash_load<S::kTile>(sK, K + bh * Tk * dk, k0, Tk, dk);
            gpunet::flash_load<S::kTile>(sV, V + bh * Tk * dv, k0, Tk, dv);
            __syncthreads();
            int n = kend - k0 < S::kTile ? int(kend - k0) : S::kTile;
            for (int j = 0; live && j < n; ++j) {
                bool kept = gpunet::attn_kept(kr, sk, k0 + j, last);
                M z = fill;
                if (kept) {
                    M s = M(0);
                    GPUNET_UNROLL
                    for (int c = 0; c < D; ++c) s += q[c] * sK[j][c];
                    z = M(scale) * s;
                }
                if (z > m) {  // a new max: rescale what was summed so far
                    M corr = gpunet::exp_(m - z);
                    l *= corr;
                    GPUNET_UNROLL
                    for (int c = 0; c < D; ++c) acc[c] *= corr;
                    m = z;
                }
                M p = gpunet::exp_(z - m);
                l += p;
                if (kept) {
                    GPUNET_UNROLL
                    for (int c = 0; c < D; ++c) acc[c] += p * sV[j][c];
                }
            }
        }
        if (live) {
            l += M(Tk - kend) * gpunet::exp_(fill - m);  // the keys not loaded
            GPUNET_UNROLL
            for (int c = 0; c < D; ++c)
                if (c < dv) O[r * dv + c] = T(acc[c] / l);
            lse[r] = m + gpunet::log_(l);
        }
    }
}

// dQ (B*H, Tq, dk) and Dsum (B*H, Tq) = rowsum(dO * O) (lse's type), which _bwd_dkv reads.
template <typename T, int D>
__global__ __launch_bounds__(GPUNET_FLASH_BOUNDS) void gpunet_flash_bwd_dq(T* dQ, typename gpunet::Math<T>::type* Dsum, const T* dO,
                                    const T* O, const T* Q, const T* K, const T* V,
                                    const typename gpunet::Math<T>::type* lse,
                                    const bool* keep, long long BH, long long Tq, long long Tk,
                                    long long H, long long dk, long long dv, long long sb,
                                    long long sh, long long sq, long long sk, long long causal,
                                    double scale) {
    typedef typename gpunet::Math<T>::type M;
    typedef gpunet::FlashShape<T, D> S;
    GPUNET_SHARED(M, sK, [S::kTile][D]);
    GPUNET_SHARED(M, sV, [S::kTile][D]);
    GPUNET_SHARED(M, sQo, [S::kRows][D + 1]);
    GPUNET_SHARED(M, sGo, [S::kRows][D + 1]);
    long long tiles = (Tq + S::kRows - 1) / S::kRows;
    for (long long w = blockIdx.x; w < BH * tiles; w += gridDim.x) {
        long long bh = w / tiles, q0 = (w % tiles) * S::kRows, i = q0 + threadIdx.x;
        bool live = i < Tq;
        long long r = bh * Tq + i;
        const bool* kr = gpunet::flash_mask_row(keep, bh, i, H, sb, sh, sq);
        long long last = causal ? i : Tk - 1;
        __syncthreads();
        gpunet::flash_load<S::kRows>(sQo, Q + bh * Tq * dk, q0, Tq, dk);
        gpunet::flash_load<S::kRows>(sGo, dO + bh * Tq * dv, q0, Tq, dv);
        const M* q = sQo[threadIdx.x];
        const M* g = sGo[threadIdx.x];
        M acc[D], Dr = M(0);
        GPUNET_UNROLL
        for (int c = 0; c < D; ++c) {
            if (live && c < dv) Dr += M(dO[r * dv + c]) * M(O[r * dv + c]);
            acc[c] = M(0);
        }
        M L = live ? lse[r] : M(0);
        long long kend = causal && q0 + S::kRows < Tk ? q0 + S::kRows : Tk;
        for (long long k0 = 0; k0 < kend; k0 += S::kTile) {
            __syncthreads();
            gpunet::flash_load<S::kTile>(sK, K + bh * Tk * dk, k0, Tk, dk);
            gpunet::flash_load<S::kTile>(sV, V + bh * Tk * dv, k0, Tk, dv);
            __syncthreads();
            int n = kend - k0 < S::kTile ? int(kend - k0) : S::kTile;
            for (int j = 0; live && j < n; ++j) {
                if (!gpunet::attn_kept(kr, sk, k0 + j, last)) continue;
                M s = M(0), dp = M(0);
                GPUNET_UNROLL
                for (int c = 0; c < D; ++c) {
                    s += q[c] * sK[j][c];
                    dp += g[c] * sV[j][c];
                }
                M p = gpunet::exp_(M(scale) * s - L);
                M ds = M(scale) * p * (dp - Dr);
                GPUNET_UNROLL
                for (int c = 0; c < D; ++c) acc[c] += ds * sK[j][c];
            }
        }
        if (live) {
            GPUNET_UNROLL
            for (int c = 0; c < D; ++c)
                if (c < dk) dQ[r * dk + c] = T(acc[c]);
            Dsum[r] = Dr;
        }
    }
}

// dK (B*H, Tk, dk), dV (B*H, Tk, dv): a block of key rows, summing over query tiles.
template <typename T, int D>
__global__ __launch_bounds__(GPUNET_FLASH_BOUNDS) void gpunet_flash_bwd_dkv(T* dK, T* dV, const T* dO, const T* Q, const T* K,
                                     const T* V, const typename gpunet::Math<T>::type* lse,
                                     const typename gpunet::Math<T>::type* Dsum,
                                     const bool* keep, long long BH, long long Tq,
                                     long long Tk, long long H, long long dk, long long dv,
                                     long long sb, long long sh, long long sq, long long sk,
                                     long long causal, double scale) {
    typedef typename gpunet::Math<T>::type M;
    typedef gpunet::FlashShape<T, D> S;
    // the block's own key rows (pitch D + 1: thread t reads row t without bank conflicts)
    GPUNET_SHARED(M, sKo, [S::kRows][D + 1]);
    GPUNET_SHARED(M, sVo, [S::kRows][D + 1]);
    GPUNET_SHARED(M, sGV, [S::kRows][D + 1]);  // dV of row t, thread t's alone
    GPUNET_SHARED(M, sQ, [S::kTile][D]);
    GPUNET_SHARED(M, sG, [S::kTile][D]);
    GPUNET_SHARED(M, sL, [S::kTile]);
    GPUNET_SHARED(M, sD, [S::kTile]);
    long long tiles = (Tk + S::kRows - 1) / S::kRows;
    for (long long w = blockIdx.x; w < BH * tiles; w += gridDim.x) {
        long long bh = w / tiles, k0 = (w % tiles) * S::kRows, j = k0 + threadIdx.x;
        bool live = j < Tk;
        long long kr = bh * Tk + j;
        __syncthreads();  // the previous block of keys is no longer read
        gpunet::flash_load<S::kRows>(sKo, K + bh * Tk * dk, k0, Tk, dk);
        gpunet::flash_load<S::kRows>(sVo, V + bh * Tk * dv, k0, Tk, dv);
        M gk[D];
        M* gv = sGV[threadIdx.x];
        GPUNET_UNROLL
        for (int c = 0; c < D; ++c) gk[c] = gv[c] = M(0);
        const M* k = sKo[threadIdx.x];
        const M* v = sVo[threadIdx.x];
        for (long long i0 = causal ? k0 : 0; i0 < Tq; i0 += S::kTile) {
            __syncthreads();
            gpunet::flash_load<S::kTile>(sQ, Q + bh * Tq * dk, i0, Tq, dk);
            gpunet::flash_load<S::kTile>(sG, dO + bh * Tq * dv, i0, Tq, dv);
            for (int e = threadIdx.x; e < S::kTile; e += blockDim.x) {
                long long r = bh * Tq + i0 + e;
                sL[e] = i0 + e < Tq ? lse[r] : M(0);
                sD[e] = i0 + e < Tq ? Dsum[r] : M(0);
            }
            __syncthreads();
            int n = Tq - i0 < S::kTile ? int(Tq - i0) : S::kTile;
            for (int e = 0; live && e < n; ++e) {
                long long i = i0 + e;
                const bool* mr = gpunet::flash_mask_row(keep, bh, i, H, sb, sh, sq);
                if ((causal && j > i) || (mr && !mr[j * sk])) continue;
                M s = M(0), dp = M(0);
                GPUNET_UNROLL
                for (int c = 0; c < D; ++c) {
                    s += sQ[e][c] * k[c];
                    dp += sG[e][c] * v[c];
                }
                M p = gpunet::exp_(M(scale) * s - sL[e]);
                M ds = M(scale) * p * (dp - sD[e]);
                GPUNET_UNROLL
                for (int c = 0; c < D; ++c) {
                    gv[c] += p * sG[e][c];
                    gk[c] += ds * sQ[e][c];
                }
            }
        }
        if (live) {
            GPUNET_UNROLL
            for (int c = 0; c < D; ++c) {
                if (c < dk) dK[kr * dk + c] = T(gk[c]);
                if (c < dv) dV[kr * dv + c] = T(gv[c]);
            }
        }
    }
}
