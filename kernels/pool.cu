// Max and average pooling of channels-last images, forward and backward. Grid-stride
// loops, one thread per output element (forward) or per input element (backward),
// conventions of fused.cu: outputs first, then inputs, then sizes; scalars as long
// long whatever T is; math in gpunet::Math<T>::type (float for __half).
//
//      X_bhwc (B, H, W, C) ──KH x KW windows, strides SH, SW──> Y_bhwc (B, OH, OW, C)
//
// PT and PL are the padding rows above and columns left of the input; padding
// below and right is implied by OH and OW (and a negative one, the rows "valid"
// leaves unread, too). The backward kernels gather: each input element sums the
// outputs whose windows hold it (pool_cover), so no two threads write one address
// and no atomics are needed at any stride; the sum runs in output order, so the
// result is the same bits on every launch.
//
// The instantiations CuPy compiles are listed in INSTANTIATIONS of
// gpunet/backend/_kernels.py.
#include "pool.cuh"

// Y = max over each window; A = the window index k = i * KW + j of the max (pool.cuh)
template <typename T>
__global__ void gpunet_max_pool2d(T* Y_bhwc, int* A_bhwc, const T* X_bhwc, long long B,
                                  long long H, long long W, long long C, long long OH,
                                  long long OW, long long KH, long long KW, long long SH,
                                  long long SW, long long PT, long long PL) {
    typedef typename gpunet::Math<T>::type M;
    const long long n = B * OH * OW * C;
    GPUNET_GRID_STRIDE(i, n) {
        const long long c = i % C, ow = (i / C) % OW, oh = (i / (C * OW)) % OH;
        const long long b = i / (C * OW * OH);
        const long long h0 = gpunet::pool_start(oh, SH, PT), w0 = gpunet::pool_start(ow, SW, PL);
        M m = gpunet::neg_inf<M>();
        int arg = 0;
        for (long long di = 0; di < KH; ++di) {
            const long long h = h0 + di;
            if (h < 0 || h >= H) continue;  // padding: -inf, never taken
            for (long long dj = 0; dj < KW; ++dj) {
                const long long w = w0 + dj;
                if (w < 0 || w >= W) continue;
                const M v = M(X_bhwc[((b * H + h) * W + w) * C + c]);
                if (gpunet::max_takes(v, m)) {
                    m = v;
                    arg = int(di * KW + dj);
                }
            }
        }
        Y_bhwc[i] = T(m);
        A_bhwc[i] = arg;
    }
}

// dX = the sum of dY over the windows whose argmax A is this element (gather form)
template <typename T>
__global__ void gpunet_backprop_max_pool2d(T* dX_bhwc, const T* dY_bhwc, const int* A_bhwc,
                                           long long B, long long H, long long W, long long C,
                                           long long OH, long long OW, long long KH,
                                           long long KW, long long SH, long long SW,
                                           long long PT, long long PL) {
    typedef typename gpunet::Math<T>::type M;
    const long long n = B * H * W * C;
    GPUNET_GRID_STRIDE(i, n) {
        const long long c = i % C, w = (i / C) % W, h = (i / (C * W)) % H;
        const long long b = i / (C * W * H);
        long long oh0, oh1, ow0, ow1;
        gpunet::pool_cover(h, KH, SH, PT, OH, oh0, oh1);
        gpunet::pool_cover(w, KW, SW, PL, OW, ow0, ow1);
        M acc = M(0);
        for (long long oh = oh0; oh < oh1; ++oh) {
            const long long di = h - gpunet::pool_start(oh, SH, PT);
            for (long long ow = ow0; ow < ow1; ++ow) {
                const long long o = ((b * OH + oh) * OW + ow) * C + c;
                const long long k = di * KW + (w - gpunet::pool_start(ow, SW, PL));
                if (A_bhwc[o] == k) acc += M(dY_bhwc[o]);
            }
        }
        dX_bhwc[i] = T(acc);
    }
}

// Y = the mean of each window over its cells inside the input, or over all
// KH * KW when include_pad (padding counts as zeros: PyTorch's count_include_pad)
template <typename T>
__global__ void gpunet_avg_pool2d(T* Y_bhwc, const T* X_bhwc, long long B, long long H,
                                  long long W, long long C, long long OH, long long OW,
                                  long long KH, long long KW, long long SH, long long SW,
                                  long long PT, long long PL, int include_pad) {
    typedef typename gpunet::Math<T>::type M;
    const long long n = B * OH * OW * C;
    GPUNET_GRID_STRIDE(i, n) {
        const long long c = i % C, ow = (i / C) % OW, oh = (i / (C * OW)) % OH;
        const long long b = i / (C * OW * OH);
        long long h0, h1, w0, w1;
        gpunet::pool_inside(oh, KH, SH, PT, H, h0, h1);
        gpunet::pool_inside(ow, KW, SW, PL, W, w0, w1);
        M acc = M(0);
        for (long long h = h0; h < h1; ++h)
            for (long long w = w0; w < w1; ++w) acc += M(X_bhwc[((b * H + h) * W + w) * C + c]);
        const long long cnt = gpunet::pool_count(oh, ow, H, W, KH, KW, SH, SW, PT, PL, include_pad);
        Y_bhwc[i] = T(acc / M(cnt));
    }
}

// dX = the sum of dY / count over the windows holding this element (gather form)
template <typename T>
__global__ void gpunet_backprop_avg_pool2d(T* dX_bhwc, const T* dY_bhwc, long long B,
                                           long long H, long long W, long long C, long long OH,
                                           long long OW, long long KH, long long KW,
                                           long long SH, long long SW, long long PT,
                                           long long PL, int include_pad) {
    typedef typename gpunet::Math<T>::type M;
    const long long n = B * H * W * C;
    GPUNET_GRID_STRIDE(i, n) {
        const long long c = i % C, w = (i / C) % W, h = (i / (C * W)) % H;
        const long long b = i / (C * W * H);
        long long oh0, oh1, ow0, ow1;
        gpunet::pool_cover(h, KH, SH, PT, OH, oh0, oh1);
        gpunet::pool_cover(w, KW, SW, PL, OW, ow0, ow1);
        M acc = M(0);
        for (long long oh = oh0; oh < oh1; ++oh)
            for (long long ow = ow0; ow < ow1; ++ow) {
                const long long cnt =
                    gpunet::pool_count(oh, ow, H, W, KH, KW, SH, SW, PT, PL, include_pad);
                acc += M(dY_bhwc[((b * OH + oh) * OW + ow) * C + c]) / M(cnt);
            }
        dX_bhwc[i] = T(acc);
    }
}
