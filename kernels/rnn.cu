// Fused recurrent cells: one launch per time step does a cell's whole elementwise
// work (gates, state update; or its backward), over n = B*U elements, element i
// being row i / U, unit i % U. The math is kernels/rnn.cuh, shared with the host
// build. Grid-stride loops only; conventions of fused.cu (outputs first, nullable
// pointers, sizes as long long).
//
// The instantiations are listed once, in INSTANTIATIONS of
// gpunet/backend/_kernels.py; a test checks that list against this file.
#include "rnn.cuh"

// row b of an array of rows of width w (null stays null)
template <typename T>
__device__ T* gpunet_row(T* A, long long b, long long w) { return A ? A + b * w : A; }

template <typename T>
__global__ void gpunet_lstm_step(T* h_bu, T* c_bu, const T* Z_b4u, const T* c_prev_bu,
                                 const T* h_prev_bu, const T* m_b, long long B, long long U) {
    typedef typename gpunet::Math<T>::type M;
    GPUNET_GRID_STRIDE(i, B * U) {
        const long long b = i / U, j = i % U, r = b * U;
        gpunet::lstm_step_at(j, U, h_bu + r, c_bu + r, Z_b4u + 4 * r, c_prev_bu + r,
                             gpunet_row(h_prev_bu, b, U), m_b != 0, m_b ? M(m_b[b]) : M(1));
    }
}

template <typename T>
__global__ void gpunet_lstm_backward(T* dZ_b4u, T* dc_prev_bu, T* carry_bu, const T* dh_bu,
                                     const T* dc_bu, const T* Z_b4u, const T* c_prev_bu,
                                     const T* m_b, long long B, long long U) {
    typedef typename gpunet::Math<T>::type M;
    GPUNET_GRID_STRIDE(i, B * U) {
        const long long b = i / U, j = i % U, r = b * U;
        gpunet::lstm_backward_at(j, U, dZ_b4u + 4 * r, dc_prev_bu + r, gpunet_row(carry_bu, b, U),
                                 dh_bu + r, gpunet_row(dc_bu, b, U), Z_b4u + 4 * r,
                                 c_prev_bu + r, m_b != 0, m_b ? M(m_b[b]) : M(1));
    }
}

template <typename T>
__global__ void gpunet_gru_step(T* h_bu, const T* Zx_b3u, const T* Zh_b3u, const T* h_prev_bu,
                                const T* m_b, long long B, long long U) {
    typedef typename gpunet::Math<T>::type M;
    GPUNET_GRID_STRIDE(i, B * U) {
        const long long b = i / U, j = i % U, r = b * U;
        gpunet::gru_step_at(j, U, h_bu + r, Zx_b3u + 3 * r, gpunet_row(Zh_b3u, b, 3 * U),
                            h_prev_bu + r, m_b != 0, m_b ? M(m_b[b]) : M(1));
    }
}

template <typename T>
__global__ void gpunet_gru_backward(T* dZx_b3u, T* dZh_b3u, T* dh_prev_bu, const T* dh_bu,
                                    const T* Zx_b3u, const T* Zh_b3u, const T* h_prev_bu,
                                    const T* m_b, long long B, long long U) {
    typedef typename gpunet::Math<T>::type M;
    GPUNET_GRID_STRIDE(i, B * U) {
        const long long b = i / U, j = i % U, r = b * U;
        gpunet::gru_backward_at(j, U, dZx_b3u + 3 * r, gpunet_row(dZh_b3u, b, 3 * U),
                                dh_prev_bu + r, dh_bu + r, Zx_b3u + 3 * r,
                                gpunet_row(Zh_b3u, b, 3 * U), h_prev_bu + r, m_b != 0,
                                m_b ? M(m_b[b]) : M(1));
    }
}
