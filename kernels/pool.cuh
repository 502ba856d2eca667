// Pooling windows over channels-last (NHWC) images, shared by the CUDA kernels
// of pool.cu and the host loops of host.cpp.
//
// Geometry along one axis: output o reads the input cells o*S - P .. o*S - P + K - 1
// (S stride, K window, P cells of padding before the input); cells outside [0, N)
// are padding. The window's cells are numbered k = i * KW + j (row-major over the
// KH x KW window, padding included), and max pooling stores that k as its int32
// argmax: the layout the reference's argmax over ``_windows`` gives, so any
// backend's forward pairs with any backend's backward.
//
// Max pooling treats padding as -inf (it never wins unless the whole window is
// -inf, as in the reference, where padded cells are -inf entries) and propagates
// NaN: the first NaN of a window is its maximum and its argmax (numpy.argmax),
// otherwise the first largest value (PyTorch and Keras route a tie to one cell).
#pragma once
#include "gpunet_hd.cuh"

namespace gpunet {

// -inf without <cmath>'s INFINITY (NVRTC has no <cmath>): IEEE division by zero
template <typename M>
GPUNET_HD M neg_inf() {
    M zero = M(0);
    return M(-1) / zero;
}

// Does v replace m as a window's maximum? Larger, or the first NaN. Bitwise, not
// ||/&&: a branch-free select is what vectorizes (3x faster on the host).
template <typename M>
GPUNET_HD bool max_takes(M v, M m) {
    return (v > m) | (is_nan(v) & !is_nan(m));
}

// The first input cell of output o along an axis (negative: inside the padding).
GPUNET_HD long long pool_start(long long o, long long S, long long P) { return o * S - P; }

// The cells of output o's window inside [0, N): [lo, hi); returns hi - lo.
GPUNET_HD long long pool_inside(long long o, long long K, long long S, long long P, long long N,
                                long long& lo, long long& hi) {
    const long long a = pool_start(o, S, P);
    lo = a < 0 ? 0 : a;
    hi = a + K < N ? a + K : N;
    return hi > lo ? hi - lo : 0;
}

// The outputs [lo, hi) whose windows contain input cell h (h + P >= 0):
// o*S - P <= h <= o*S - P + K - 1, clipped to [0, O).
GPUNET_HD void pool_cover(long long h, long long K, long long S, long long P, long long O,
                          long long& lo, long long& hi) {
    const long long first = h + P - K + 1;  // o*S >= first
    lo = first <= 0 ? 0 : (first + S - 1) / S;
    hi = (h + P) / S + 1;
    if (hi > O) hi = O;
}

// The outputs [lo, hi) whose window tap d (0 <= d < K) lands inside [0, N):
// 0 <= o*S - P + d <= N - 1, clipped to [0, O).
GPUNET_HD void pool_tap_outputs(long long d, long long S, long long P, long long N, long long O,
                                long long& lo, long long& hi) {
    const long long first = P - d;  // o*S >= first
    lo = first <= 0 ? 0 : (first + S - 1) / S;
    const long long last = N - 1 + P - d;  // o*S <= last
    hi = last < 0 ? 0 : last / S + 1;
    if (hi > O) hi = O;
    if (hi < lo) hi = lo;
}

// The divisor of average pooling for output (oh, ow): the window's cells inside
// the input (Keras "same", count_include_pad=False) or all KH * KW of them.
GPUNET_HD long long pool_count(long long oh, long long ow, long long H, long long W, long long KH,
                               long long KW, long long SH, long long SW, long long PT,
                               long long PL, int include_pad) {
    if (include_pad) return KH * KW;
    long long lo, hi;
    const long long nh = pool_inside(oh, KH, SH, PT, H, lo, hi);
    const long long nw = pool_inside(ow, KW, SW, PL, W, lo, hi);
    return nh * nw;
}

}  // namespace gpunet
