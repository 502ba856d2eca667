// Runs CUDA grid-stride kernels on the host (g++), for the tests only.
//
// __global__ is defined away, threadIdx/blockIdx/blockDim/gridDim become
// thread-local globals, and gpunet_host_run loops over every (block, thread) of
// the launch in turn, unpacking a cuLaunchKernel-style void** argument array.
// Covers indexing, tails, grid striding and templates; not __syncthreads, shared
// memory or warp intrinsics (the kernels use none of them).
#pragma once
#include <cstddef>
#include <type_traits>
#include <utility>

struct gpunet_dim3 {
    unsigned x, y, z;
};
static thread_local gpunet_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__

template <class... A, std::size_t... I>
static void gpunet_host_invoke(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <class... A>
static void gpunet_host_run(void (*k)(A...), unsigned grid, unsigned block, void** args) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned b = 0; b < grid; ++b) {
        for (unsigned t = 0; t < block; ++t) {
            blockIdx = {b, 0, 0};
            threadIdx = {t, 0, 0};
            gpunet_host_invoke(k, args, std::index_sequence_for<A...>{});
        }
    }
}

// The parameter list as "p8 f8 i8 ..." (pointer / float / signed / unsigned, bytes),
// so a test can hold every launcher's arguments to the kernel's real C types.
template <class A>
static void gpunet_host_code(char*& o) {
    *o++ = std::is_pointer<A>::value          ? 'p'
           : std::is_floating_point<A>::value ? 'f'
           : std::is_signed<A>::value         ? 'i'
                                              : 'u';
    *o++ = char('0' + sizeof(A));
    *o++ = ' ';
}

template <class... A>
static int gpunet_host_signature_of(void (*)(A...), char* out) {
    char* o = out;
    (gpunet_host_code<A>(o), ...);
    *o = 0;
    return int(sizeof...(A));
}
