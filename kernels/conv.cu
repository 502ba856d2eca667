// im2col and col2im of a 2-D convolution over channels-last arrays (index math in
// conv.cuh); the GEMMs between them run in cuBLAS, the bias and activation after
// the forward GEMM in gpunet_bias_act of fused.cu (the output (N*Ho*Wo, F) is
// dense-shaped). Grid-stride loops, one thread per output element, conventions of
// fused.cu: outputs first, then inputs, then sizes (all long long).
#include "conv.cuh"

#define GPUNET_CONV_GEO_PARAMS                                                          \
    long long N, long long H, long long W, long long C, long long Ho, long long Wo,    \
        long long kh, long long kw, long long sh, long long sw, long long pt, long long pl, \
        long long dh, long long dw
#define GPUNET_CONV_GEO {N, H, W, C, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw}

// cols (N, Ho, Wo, kh, kw, C) <- the input pixel each entry reads, 0 in the padding.
// Consecutive threads take consecutive channels: reads and writes coalesce.
template <typename T>
__global__ void gpunet_im2col(T* cols, const T* X, GPUNET_CONV_GEO_PARAMS) {
    const gpunet::ConvGeo g = GPUNET_CONV_GEO;
    GPUNET_GRID_STRIDE(e, N * Ho * Wo * kh * kw * C) {
        long long r = e / C;
        const long long c = e - r * C;
        const long long j = r % kw;
        r /= kw;
        const long long i = r % kh;
        r /= kh;
        const long long wo = r % Wo;
        r /= Wo;
        const long long p = gpunet::conv_src_pixel(g, r / Ho, r % Ho, wo, i, j);
        cols[e] = p < 0 ? T(0) : X[p * C + c];
    }
}

// dX (N, H, W, C) <- for each element, the sum of the entries of dcols (N, Ho, Wo,
// kh, kw, C) that read it, taps in order (i, j), as the reference adds them; the
// sum runs in the math type (float for half storage).
template <typename T>
__global__ void gpunet_col2im(T* dX, const T* dcols, GPUNET_CONV_GEO_PARAMS) {
    typedef typename gpunet::Math<T>::type M;
    const gpunet::ConvGeo g = GPUNET_CONV_GEO;
    GPUNET_GRID_STRIDE(e, N * H * W * C) {
        long long r = e / C;
        const long long c = e - r * C;
        const long long w = r % W;
        r /= W;
        const long long h = r % H, n = r / H;
        M acc = M(0);
        for (long long i = 0; i < kh; ++i) {
            for (long long j = 0; j < kw; ++j) {
                const long long row = gpunet::conv_dst_row(g, n, h, w, i, j);
                if (row >= 0) acc += M(dcols[((row * kh + i) * kw + j) * C + c]);
            }
        }
        dX[e] = T(acc);
    }
}
