// Fused elementwise work around the matrix products of a dense layer, and the
// fused losses. Every kernel is a grid-stride loop (no shared memory, no
// __syncthreads), so the tests also run each one on the host, compiled by g++.
//
// Conventions: outputs first, then const inputs, then scalars and sizes. Pointer
// names carry their shape (Y_bo: B rows of O outputs, row-major). An optional
// pointer may be null. Scalars arrive as double and long long whatever T is, so
// one launcher serves every dtype. T is the storage type; gpunet::Math<T>::type
// the math type (float for __half).
//
// The instantiations CuPy compiles are listed once, in INSTANTIATIONS of
// gpunet/backend/_kernels.py; a test checks that list against this file.
#include "losses.cuh"

// Y_bo = act(Z_bo + b_o) over n = B*O elements; element i takes bias b_o[i % O]:
//
//      Z_bo  [ z00 z01 z02 | z10 z11 z12 | ... ]   (O = 3)
//      b_o   [ b0  b1  b2  | b0  b1  b2  | ... ]   i % O picks the column
//
// Zs_bo, when not null, receives Z_bo + b_o (the input the gelu/swish backward
// reads). Y_bo and Zs_bo may alias Z_bo (the GEMM output is updated in place).
template <typename T, typename Act>
__global__ void gpunet_bias_act(T* Y_bo, T* Zs_bo, const T* Z_bo, const T* b_o, long long n,
                                long long O, double alpha) {
    typedef typename gpunet::Math<T>::type M;
    const M a = M(alpha);
    GPUNET_GRID_STRIDE(i, n) {
        M z = M(Z_bo[i]);
        if (b_o) z += M(b_o[i % O]);
        if (Zs_bo) Zs_bo[i] = T(z);
        Y_bo[i] = T(Act::fwd(z, a));
    }
}

// dX = dY * act'(X) over n elements, reading X (Act::kNeedsX) or else the output Y;
// the array it does not read may be null.
template <typename T, typename Act>
__global__ void gpunet_backprop_act(T* dX, const T* dY, const T* X, const T* Y, long long n,
                                    double alpha) {
    typedef typename gpunet::Math<T>::type M;
    const M a = M(alpha);
    GPUNET_GRID_STRIDE(i, n) {
        M x = Act::kNeedsX ? M(X[i]) : M(0);
        M y = Act::kNeedsX ? M(0) : M(Y[i]);
        dX[i] = T(Act::bwd(M(dY[i]), x, y, a));
    }
}

// Per-row scale: scale_b[b] when given (sample weight / batch size), else the
// scalar; divided by K when the loss is a mean over K outputs.
template <typename M, typename T>
__device__ M gpunet_row_scale(const T* scale_b, long long b, double scale, long long K) {
    return scale_b ? M(scale_b[b]) / M(K) : M(scale / double(K));
}

// Softmax cross-entropy against dense targets T_bc; one thread per row b:
//
//      Z_bc (B, C) ──row b──> L_b[b], dZ_bc[b, :]
template <typename T>
__global__ void gpunet_softmax_xent(T* L_b, T* dZ_bc, const T* Z_bc, const T* T_bc,
                                    const T* scale_b, long long B, long long C, double scale,
                                    double smoothing) {
    typedef typename gpunet::Math<T>::type M;
    GPUNET_GRID_STRIDE(b, B) {
        gpunet::DenseTarget<T> target = {T_bc + b * C};
        M s = gpunet_row_scale<M>(scale_b, b, scale, 1);
        L_b[b] = T(gpunet::softmax_xent_row<M>(dZ_bc + b * C, Z_bc + b * C, C, target,
                                               M(smoothing), s));
    }
}

// As gpunet_softmax_xent with integer labels y_b (B,) instead of one-hot rows.
template <typename T, typename I>
__global__ void gpunet_sparse_softmax_xent(T* L_b, T* dZ_bc, const T* Z_bc, const I* y_b,
                                           const T* scale_b, long long B, long long C,
                                           double scale, double smoothing) {
    typedef typename gpunet::Math<T>::type M;
    GPUNET_GRID_STRIDE(b, B) {
        gpunet::LabelTarget<I> target = {y_b[b]};
        M s = gpunet_row_scale<M>(scale_b, b, scale, 1);
        L_b[b] = T(gpunet::softmax_xent_row<M>(dZ_bc + b * C, Z_bc + b * C, C, target,
                                               M(smoothing), s));
    }
}

// Sigmoid + binary cross-entropy from logits Z_bk (B, K); one thread per row.
template <typename T>
__global__ void gpunet_sigmoid_bce(T* L_b, T* dZ_bk, const T* Z_bk, const T* T_bk,
                                   const T* scale_b, long long B, long long K, double scale,
                                   double smoothing) {
    typedef typename gpunet::Math<T>::type M;
    GPUNET_GRID_STRIDE(b, B) {
        M s = gpunet_row_scale<M>(scale_b, b, scale, K);
        L_b[b] = T(gpunet::sigmoid_bce_row<M>(dZ_bk + b * K, Z_bk + b * K, T_bk + b * K, K,
                                              M(smoothing), s));
    }
}
