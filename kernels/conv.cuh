// Index math of a 2-D convolution over channels-last (NHWC) arrays, shared by the
// CUDA kernels of conv.cu and the host loops of host.cpp.
//
// The columns of im2col are laid out (N, Ho, Wo, kh, kw, C): row m = (n, ho, wo) is
// one output pixel, holding its kh*kw taps of C channels, so `cols (M, kh*kw*C) @
// W (kh*kw*C, F)` is the convolution (Keras' kernel layout, reshaped). Channel groups
// are column slices of the same layout: nothing here depends on them.
//
//      input pixel (h, w) = (ho*sh - pt + i*dh, wo*sw - pl + j*dw)   at tap (i, j)
//
// Both directions gather: im2col reads the input pixel of each column entry (zero
// in the padding), col2im sums, for each input pixel, the column entries that read
// it, so no two threads ever write one element (no atomics, repeatable sums).
#pragma once
#include "gpunet_hd.cuh"

namespace gpunet {

// Sizes of the input (N, H, W, C) and output (Ho, Wo), taps (kh, kw), strides,
// top/left pads and dilation; bottom/right pads follow from Ho and Wo.
struct ConvGeo {
    long long N, H, W, C, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw;
};

// The input pixel n*H*W + h*W + w that output pixel (n, ho, wo) reads at tap (i, j),
// or -1 where the tap falls in the padding.
GPUNET_HD long long conv_src_pixel(const ConvGeo& g, long long n, long long ho, long long wo,
                                   long long i, long long j) {
    const long long h = ho * g.sh - g.pt + i * g.dh, w = wo * g.sw - g.pl + j * g.dw;
    if (h < 0 || h >= g.H || w < 0 || w >= g.W) return -1;
    return (n * g.H + h) * g.W + w;
}

// Along one axis: the output index o in [0, n_out) whose tap `tap` reads input
// index x (o*s - pad + tap*dil == x), or -1 when there is none.
GPUNET_HD long long conv_out_index(long long x, long long pad, long long tap, long long dil,
                                   long long s, long long n_out) {
    const long long t = x + pad - tap * dil;
    if (t < 0 || t % s) return -1;
    const long long o = t / s;
    return o < n_out ? o : -1;
}

// The column row (output pixel n*Ho*Wo + ho*Wo + wo) whose tap (i, j) reads input
// pixel (n, h, w), or -1 when no output pixel reads it through that tap.
GPUNET_HD long long conv_dst_row(const ConvGeo& g, long long n, long long h, long long w,
                                 long long i, long long j) {
    const long long ho = conv_out_index(h, g.pt, i, g.dh, g.sh, g.Ho);
    const long long wo = conv_out_index(w, g.pl, j, g.dw, g.sw, g.Wo);
    return ho < 0 || wo < 0 ? -1 : (n * g.Ho + ho) * g.Wo + wo;
}

}  // namespace gpunet
