// Tiled attention (FlashAttention's algorithm): the Tq x Tk scores are never held.
// A block owns kRows query rows (forward, dQ) or key rows (dK, dV) of one (batch,
// head), one thread per row, and loops over tiles of kTile rows of the other side,
// loaded cooperatively into shared memory. A thread takes a tile at once: its kTile
// scores in registers, then one update of its accumulator row. The forward keeps an
// online softmax (a running max m and sum l; the accumulator rescaled once per tile,
// by exp(m_old - m_new)) and writes O and each row's log-sum-exp; the backward
// recomputes the weights from it, as two kernels without atomics: dQ (and
// Dsum = rowsum(dO * O)) per query block, then dK, dV per key block. Float math for
// __half and __nv_bfloat16 storage.
//
// The semantics are those of the streaming kernels of attention.cu and of the NumPy
// reference: a masked score is FILL (its weight then 0), so a row with every key
// masked gives zeros; NaN in a row makes the row NaN. Masks are read through element
// strides (sb, sh, sq, sk), 0 along broadcast axes; causal != 0 keeps key j <= q.
// Keys past every causal limit of a query block are not loaded: their FILL terms of
// the softmax sum are added at the end ((Tk - kend) * exp(FILL - m)).
//
// D (32 or 64) bounds both head sizes dk, dv <= D. A thread's own rows (q, dO; k, v)
// and its accumulator rows sit in shared memory (pitch D + 1: thread t reads row t
// without bank conflicts), so registers hold about 2 * kTile scores whatever D is;
// the NVRTC test holds every kernel to <= 128 registers without spills, with
// __launch_bounds__ capping ptxas there and the loops over the head unrolled only 4
// deep (not at all for double; fully unrolled, ptxas hoists every load and spills). Q, K, V, O, dO are
// (B*H, T, d) C-contiguous. Tile sizes keep static shared memory under 48 KB for
// double; they are not tuned (no GPU has measured these kernels).
#include "attention.cuh"

namespace gpunet {

// Shapes of a block for storage type T (math type M = Math<T>::type) and bound D.
template <typename T, int D>
struct FlashShape {
    typedef typename Math<T>::type M;
    static constexpr int kRows = 8192 / (D * int(sizeof(M)));  // threads = rows per block
    static constexpr int kTile = 2048 / (D * int(sizeof(M)));  // rows per streamed tile
    // __launch_bounds__' blocks per SM that caps ptxas at 128 registers a thread
    // (65536 / (128 * the block's threads, in whole warps)); without it ptxas takes up
    // to 255 to schedule loads early
    static constexpr int kMinBlocks = 512 / (kRows < 32 ? 32 : kRows);
    static constexpr int kUnroll = sizeof(M) == 8 ? 1 : 4;  // the loops over the head
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
__global__ __launch_bounds__(GPUNET_FLASH_BOUNDS) void gpunet_flash_fwd(
    T* O, typename gpunet::Math<T>::type* lse, const T* Q, const T* K, const T* V,
    const bool* keep, long long BH, long long Tq, long long Tk, long long H, long long dk,
    long long dv, long long sb, long long sh, long long sq, long long sk, long long causal,
    double scale) {
    typedef typename gpunet::Math<T>::type M;
    typedef gpunet::FlashShape<T, D> S;
    const int t = threadIdx.x % S::kRows;  // = threadIdx.x (the launch has kRows threads);
                                           // the bound tells g++ the row is in range
    GPUNET_SHARED(M, sK, [S::kTile][D]);
    GPUNET_SHARED(M, sV, [S::kTile][D]);
    GPUNET_SHARED(M, sQo, [S::kRows][D + 1]);  // the block's own query rows
    GPUNET_SHARED(M, sAcc, [S::kRows][D + 1]);  // and their output accumulators
    const M fill = M(-1e9), none = -gpunet::exp_(M(1e4));  // -inf: not a key at all
    long long tiles = (Tq + S::kRows - 1) / S::kRows;
    for (long long w = blockIdx.x; w < BH * tiles; w += gridDim.x) {  // uniform per block
        long long bh = w / tiles, q0 = (w % tiles) * S::kRows, i = q0 + t;
        bool live = i < Tq;
        long long r = bh * Tq + i;
        const bool* kr = gpunet::flash_mask_row(keep, bh, i, H, sb, sh, sq);
        long long last = causal ? i : Tk - 1;
        __syncthreads();  // the previous rows are no longer read
        gpunet::flash_load<S::kRows>(sQo, Q + bh * Tq * dk, q0, Tq, dk);
        M* q = sQo[t];  // read after the tile loop's barrier
        M* acc = sAcc[t];
        for (int c = 0; c < D; ++c) acc[c] = M(0);
        M m = fill, l = M(0);
        long long kend = causal && q0 + S::kRows < Tk ? q0 + S::kRows : Tk;
        for (long long k0 = 0; k0 < kend; k0 += S::kTile) {
            __syncthreads();  // every thread is done with the previous tile
            gpunet::flash_load<S::kTile>(sK, K + bh * Tk * dk, k0, Tk, dk);
            gpunet::flash_load<S::kTile>(sV, V + bh * Tk * dv, k0, Tk, dv);
            __syncthreads();
            if (!live) continue;
            long long n = kend - k0;
            M z[S::kTile];
            unsigned long long kept = 0;
            GPUNET_UNROLL
            for (int j = 0; j < S::kTile; ++j) {
                z[j] = M(0);
                if (j < n && gpunet::attn_kept(kr, sk, k0 + j, last)) kept |= 1ull << j;
            }
            GPUNET_UNROLL_BY(S::kUnroll)  // not fully: ptxas would hoist every load
            for (int c = 0; c < D; ++c) {
                M qc = q[c];
                GPUNET_UNROLL
                for (int j = 0; j < S::kTile; ++j) z[j] += qc * sK[j][c];
            }
            M mt = m;  // the tile's max, NaN skipped (it reaches l through exp)
            GPUNET_UNROLL
            for (int j = 0; j < S::kTile; ++j) {
                z[j] = (kept >> j) & 1 ? M(scale) * z[j] : j < n ? fill : none;
                if (z[j] > mt) mt = z[j];
            }
            M corr = gpunet::exp_(m - mt);  // rescale what was summed before this tile
            l *= corr;
            m = mt;
            GPUNET_UNROLL
            for (int j = 0; j < S::kTile; ++j) {
                M p = gpunet::exp_(z[j] - m);
                l += p;
                z[j] = (kept >> j) & 1 ? p : M(0);  // masked keys count in l only
            }
            GPUNET_UNROLL_BY(S::kUnroll)  // not fully: ptxas would hoist every load
            for (int c = 0; c < D; ++c) {
                M a = acc[c] * corr;
                GPUNET_UNROLL
                for (int j = 0; j < S::kTile; ++j) a += z[j] * sV[j][c];
                acc[c] = a;
            }
        }
        if (live) {
            l += M(Tk - kend) * gpunet::exp_(fill - m);  // the keys not loaded
            for (int c = 0; c < dv; ++c) O[r * dv + c] = T(acc[c] / l);
            lse[r] = m + gpunet::log_(l);
        }
    }
}

// dQ (B*H, Tq, dk) and Dsum (B*H, Tq) = rowsum(dO * O) (lse's type), which _bwd_dkv reads.
template <typename T, int D>
__global__ __launch_bounds__(GPUNET_FLASH_BOUNDS) void gpunet_flash_bwd_dq(
    T* dQ, typename gpunet::Math<T>::type* Dsum, const T* dO, const T* O, const T* Q,
    const T* K, const T* V, const typename gpunet::Math<T>::type* lse, const bool* keep,
    long long BH, long long Tq, long long Tk, long long H, long long dk, long long dv,
    long long sb, long long sh, long long sq, long long sk, long long causal, double scale) {
    typedef typename gpunet::Math<T>::type M;
    typedef gpunet::FlashShape<T, D> S;
    const int t = threadIdx.x % S::kRows;  // = threadIdx.x (the launch has kRows threads);
                                           // the bound tells g++ the row is in range
    GPUNET_SHARED(M, sK, [S::kTile][D]);
    GPUNET_SHARED(M, sV, [S::kTile][D]);
    GPUNET_SHARED(M, sQo, [S::kRows][D + 1]);
    GPUNET_SHARED(M, sGo, [S::kRows][D + 1]);
    GPUNET_SHARED(M, sAcc, [S::kRows][D + 1]);
    long long tiles = (Tq + S::kRows - 1) / S::kRows;
    for (long long w = blockIdx.x; w < BH * tiles; w += gridDim.x) {
        long long bh = w / tiles, q0 = (w % tiles) * S::kRows, i = q0 + t;
        bool live = i < Tq;
        long long r = bh * Tq + i;
        const bool* kr = gpunet::flash_mask_row(keep, bh, i, H, sb, sh, sq);
        long long last = causal ? i : Tk - 1;
        __syncthreads();
        gpunet::flash_load<S::kRows>(sQo, Q + bh * Tq * dk, q0, Tq, dk);
        gpunet::flash_load<S::kRows>(sGo, dO + bh * Tq * dv, q0, Tq, dv);
        M* q = sQo[t];
        M* g = sGo[t];
        M* acc = sAcc[t];
        M Dr = M(0);
        GPUNET_UNROLL_BY(S::kUnroll)  // not fully: ptxas would hoist every load
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
            if (!live) continue;
            long long n = kend - k0;
            M s[S::kTile], dp[S::kTile];
            GPUNET_UNROLL
            for (int j = 0; j < S::kTile; ++j) s[j] = dp[j] = M(0);
            GPUNET_UNROLL_BY(S::kUnroll)  // not fully: ptxas would hoist every load
            for (int c = 0; c < D; ++c) {
                M qc = q[c], gc = g[c];
                GPUNET_UNROLL
                for (int j = 0; j < S::kTile; ++j) {
                    s[j] += qc * sK[j][c];
                    dp[j] += gc * sV[j][c];
                }
            }
            GPUNET_UNROLL
            for (int j = 0; j < S::kTile; ++j) {  // s becomes dS
                bool kept = j < n && gpunet::attn_kept(kr, sk, k0 + j, last);
                M p = gpunet::exp_(M(scale) * s[j] - L);
                s[j] = kept ? M(scale) * p * (dp[j] - Dr) : M(0);
            }
            GPUNET_UNROLL_BY(S::kUnroll)  // not fully: ptxas would hoist every load
            for (int c = 0; c < D; ++c) {
                M a = acc[c];
                GPUNET_UNROLL
                for (int j = 0; j < S::kTile; ++j) a += s[j] * sK[j][c];
                acc[c] = a;
            }
        }
        if (live) {
            for (int c = 0; c < dk; ++c) dQ[r * dk + c] = T(acc[c]);
            Dsum[r] = Dr;
        }
    }
}

// dK (B*H, Tk, dk), dV (B*H, Tk, dv): a block of key rows, summing over query tiles.
template <typename T, int D>
__global__ __launch_bounds__(GPUNET_FLASH_BOUNDS) void gpunet_flash_bwd_dkv(
    T* dK, T* dV, const T* dO, const T* Q, const T* K, const T* V,
    const typename gpunet::Math<T>::type* lse, const typename gpunet::Math<T>::type* Dsum,
    const bool* keep, long long BH, long long Tq, long long Tk, long long H, long long dk,
    long long dv, long long sb, long long sh, long long sq, long long sk, long long causal,
    double scale) {
    typedef typename gpunet::Math<T>::type M;
    typedef gpunet::FlashShape<T, D> S;
    const int t = threadIdx.x % S::kRows;  // = threadIdx.x (the launch has kRows threads);
                                           // the bound tells g++ the row is in range
    GPUNET_SHARED(M, sKo, [S::kRows][D + 1]);  // the block's own key rows
    GPUNET_SHARED(M, sVo, [S::kRows][D + 1]);
    GPUNET_SHARED(M, sGK, [S::kRows][D + 1]);  // and their dK, dV accumulators
    GPUNET_SHARED(M, sGV, [S::kRows][D + 1]);
    GPUNET_SHARED(M, sQ, [S::kTile][D]);
    GPUNET_SHARED(M, sG, [S::kTile][D]);
    GPUNET_SHARED(M, sL, [S::kTile]);
    GPUNET_SHARED(M, sD, [S::kTile]);
    long long tiles = (Tk + S::kRows - 1) / S::kRows;
    for (long long w = blockIdx.x; w < BH * tiles; w += gridDim.x) {
        long long bh = w / tiles, k0 = (w % tiles) * S::kRows, j = k0 + t;
        bool live = j < Tk;
        long long kr = bh * Tk + j;
        __syncthreads();  // the previous block of keys is no longer read
        gpunet::flash_load<S::kRows>(sKo, K + bh * Tk * dk, k0, Tk, dk);
        gpunet::flash_load<S::kRows>(sVo, V + bh * Tk * dv, k0, Tk, dv);
        M* k = sKo[t];
        M* v = sVo[t];
        M* gk = sGK[t];
        M* gv = sGV[t];
        for (int c = 0; c < D; ++c) gk[c] = gv[c] = M(0);
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
            if (!live) continue;
            long long n = Tq - i0;
            M s[S::kTile], dp[S::kTile];
            GPUNET_UNROLL
            for (int e = 0; e < S::kTile; ++e) s[e] = dp[e] = M(0);
            GPUNET_UNROLL_BY(S::kUnroll)  // not fully: ptxas would hoist every load
            for (int c = 0; c < D; ++c) {
                M kc = k[c], vc = v[c];
                GPUNET_UNROLL
                for (int e = 0; e < S::kTile; ++e) {
                    s[e] += sQ[e][c] * kc;
                    dp[e] += sG[e][c] * vc;
                }
            }
            GPUNET_UNROLL
            for (int e = 0; e < S::kTile; ++e) {  // s becomes P, dp becomes dS
                long long i = i0 + e;
                const bool* mr = gpunet::flash_mask_row(keep, bh, i, H, sb, sh, sq);
                bool kept = e < n && !(causal && j > i) && !(mr && !mr[j * sk]);
                M p = kept ? gpunet::exp_(M(scale) * s[e] - sL[e]) : M(0);
                s[e] = p;
                dp[e] = M(scale) * p * (dp[e] - sD[e]);
            }
            GPUNET_UNROLL_BY(S::kUnroll)  // not fully: ptxas would hoist every load
            for (int c = 0; c < D; ++c) {
                M a = gv[c], b = gk[c];
                GPUNET_UNROLL
                for (int e = 0; e < S::kTile; ++e) {
                    a += s[e] * sG[e][c];
                    b += dp[e] * sQ[e][c];
                }
                gv[c] = a;
                gk[c] = b;
            }
        }
        if (live) {
            for (int c = 0; c < dk; ++c) dK[kr * dk + c] = T(gk[c]);
            for (int c = 0; c < dv; ++c) dV[kr * dv + c] = T(gv[c]);
        }
    }
}
