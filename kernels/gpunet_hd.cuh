// Portability layer: lets every kernels/*.cuh and *.cu file compile both under
// NVRTC (CuPy RawModule, device code) and under g++ (host builds in the tests).
//
//   GPUNET_HD        __host__ __device__ inline on the GPU, plain inline on the host
//   __half           CUDA's half on the GPU; _Float16 (IEEE binary16) under g++
//   __nv_bfloat16    CUDA's bfloat16 on the GPU; a storage struct under g++
//   gpunet::Math<T>  the type arithmetic happens in: float for __half storage
//                    (Chainer's split: half storage, float math), else T itself;
//                    bfloat16 the same
//   GPUNET_GRID_STRIDE the loop header of every kernel
//   GPUNET_SHARED    a __shared__ array, GPUNET_SHARED(float, s, [64][33]); on the
//                    host a static array (the test shim poisons it per block)
//   GPUNET_UNROLL    #pragma unroll under NVRTC, nothing under g++ (-Wunknown-pragmas);
//                    GPUNET_UNROLL_BY(n) is #pragma unroll n
//   __launch_bounds__ defined away under g++
//   gpunet::exp_ ... float/double overloads of the libm functions, because NVRTC
//                    has no <cmath> and C's expf/exp do not overload on their own
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define GPUNET_HD __host__ __device__ __forceinline__
#define GPUNET_SHARED(type, name, dims) __shared__ type name dims
#define GPUNET_UNROLL _Pragma("unroll")
#define GPUNET_UNROLL_STR(x) #x
#define GPUNET_UNROLL_BY(n) _Pragma(GPUNET_UNROLL_STR(unroll n))
#else
#include <math.h>
#include <string.h>
#define GPUNET_HD inline
#define __host__
#define __device__
#define __forceinline__ inline
#define GPUNET_UNROLL
#define GPUNET_UNROLL_BY(n)
#define __launch_bounds__(...)
#ifndef GPUNET_SHARED  // the test shim defines one that poisons per block
#define GPUNET_SHARED(type, name, dims) static type name dims
#endif
typedef _Float16 __half;
// g++ before 13 has no bfloat16 type: a storage-only stand-in with CUDA's
// conversions (float -> bfloat16 rounds to nearest even, NaN stays NaN), so the
// host build runs the same kernel text as NVRTC does
struct __nv_bfloat16 {
    unsigned short bits;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) {
        unsigned int u;
        memcpy(&u, &f, 4);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
            bits = (unsigned short)((u >> 16) | 0x40u);
        } else {
            bits = (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
        }
    }
    __nv_bfloat16(double d) : __nv_bfloat16(float(d)) {}
    __nv_bfloat16(int i) : __nv_bfloat16(float(i)) {}  // T(0) in the kernels, as CUDA's
    operator float() const {
        unsigned int u = (unsigned int)bits << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
};
#endif

// The grid-stride loop every kernel uses: thread t of block k starts at
// k * blockDim + t and strides by the whole grid, so any grid covers any n.
#define GPUNET_GRID_STRIDE(i, n)                                                  \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

namespace gpunet {

template <typename T>
struct Math {
    typedef T type;
};
template <>
struct Math<__half> {
    typedef float type;
};
template <>
struct Math<__nv_bfloat16> {
    typedef float type;
};

GPUNET_HD float exp_(float x) { return expf(x); }
GPUNET_HD double exp_(double x) { return exp(x); }
GPUNET_HD float log_(float x) { return logf(x); }
GPUNET_HD double log_(double x) { return log(x); }
GPUNET_HD float log1p_(float x) { return log1pf(x); }
GPUNET_HD double log1p_(double x) { return log1p(x); }
GPUNET_HD float tanh_(float x) { return tanhf(x); }
GPUNET_HD double tanh_(double x) { return tanh(x); }
GPUNET_HD float erfc_(float x) { return erfcf(x); }
GPUNET_HD double erfc_(double x) { return erfc(x); }
GPUNET_HD float sqrt_(float x) { return sqrtf(x); }
GPUNET_HD double sqrt_(double x) { return sqrt(x); }
GPUNET_HD float abs_(float x) { return fabsf(x); }
GPUNET_HD double abs_(double x) { return fabs(x); }

// x != x is the portable NaN test: isnan is a macro on the host and a builtin
// under NVRTC, and neither overloads cleanly on both.
template <typename M>
GPUNET_HD bool is_nan(M x) { return x != x; }

// True for finite x: NaN fails the comparison, +-inf fails it too.
template <typename M>
GPUNET_HD bool is_finite(M x) { return x - x == M(0); }

}  // namespace gpunet
