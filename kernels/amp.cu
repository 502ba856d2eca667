// Dynamic loss scaling over the flat gradient buffer (mixed precision).
//
// gpunet_unscale: G *= inv_scale in place, and found = 1 where any input element
// was NaN or inf (PyTorch's _amp_foreach_non_finite_check_and_unscale_). Every
// writer of found writes the same value, so the race is benign; found is reset by
// gpunet_update_scale. The scale stays on the device: inv_scale is read from it.
// gpunet_update_scale: one thread; halves the scale and resets the counter after
// a non-finite gradient, else counts the clean step and grows the scale after
// `interval` of them (PyTorch's _amp_update_scale_, Keras' LossScaleOptimizer);
// ok = !found for the optimizer kernels' guard, so nothing is read by the host.
//
// The instantiations are listed once, in INSTANTIATIONS of
// gpunet/backend/_kernels.py; a test checks that list against this file.
#include "gpunet_hd.cuh"

template <typename T>
__global__ void gpunet_unscale(T* grad, long long n, const float* scale, int* found) {
    typedef typename gpunet::Math<T>::type M;
    // PyTorch's inv_scale: the reciprocal in double, rounded to float once
    const M inv = M(float(1.0 / double(*scale)));
    GPUNET_GRID_STRIDE(i, n) {
        const M g = M(grad[i]);
        if (!gpunet::is_finite(g)) *found = 1;
        grad[i] = T(g * inv);
    }
}

template <typename S>
__global__ void gpunet_update_scale(S* scale, int* counter, int* found, bool* ok,
                                    double growth, double backoff, int interval) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const bool bad = *found != 0;
    if (ok != 0) *ok = !bad;
    if (bad) {
        *scale = S(double(*scale) * backoff);
        *counter = 0;
    } else {
        const int clean = *counter + 1;
        if (clean == interval) {
            const S grown = S(double(*scale) * growth);
            if (gpunet::is_finite(grown)) *scale = grown;
            *counter = 0;
        } else {
            *counter = clean;
        }
    }
    *found = 0;
}
