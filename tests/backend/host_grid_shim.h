// Runs CUDA kernels on the host (g++), for the tests only.
//
// __global__ is defined away, threadIdx/blockIdx/blockDim/gridDim become
// thread-local globals, and gpunet_host_run loops over every (block, thread) of
// the launch in turn, unpacking a cuLaunchKernel-style void** argument array.
// Covers indexing, tails, grid striding and templates.
//
// Block-cooperative kernels (__shared__, __syncthreads) go through
// gpunet_host_run_block instead: blocks one after another, the threads of a block
// as one std::thread each, of which exactly one runs at a time. A thread runs until
// it reaches __syncthreads (or returns), then hands on to the next thread in index
// order that has not reached the barrier; when all have, the barrier opens and
// thread 0 runs again. __shared__ is `static`: one object per kernel instantiation,
// seen by every thread of the running block, as shared memory is. Declared through
// GPUNET_SHARED(type, name, [dims]) (kernels/gpunet_hd.cuh) it also starts every block
// as all-ones bytes (NaN for floats), so a read of a slot no thread of this block
// wrote shows up as NaN, not as what the previous block left there.
//
// That schedule is the most unfair one a GPU could pick (each thread as far ahead of
// the others as the barriers allow) and it is deterministic, so a missing barrier
// between a shared-memory write and another thread's read of it gives wrong data on
// every run rather than sometimes. What it cannot catch: races between threads of
// one warp that the GPU's lockstep would hide or expose, stale shared data that a
// previous block left behind in a plain __shared__ array (one declared with
// GPUNET_SHARED is poisoned per block), and warp intrinsics (__shfl_*), which are not
// emulated: a kernel using them does not compile here.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

struct gpunet_dim3 {
    unsigned x, y, z;
};
static thread_local gpunet_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __shared__ static

// The launch-wide serial number of the running block (from 1), for GPUNET_SHARED:
// the first thread of a block to reach the declaration poisons the array; thread 0
// runs first, so that is before any thread of the block wrote to it.
static std::atomic<unsigned long long> gpunet_host_blocks{0};
static thread_local unsigned long long gpunet_host_block_serial = 0;
#define GPUNET_SHARED(type, name, dims)                      \
    static type name dims;                                   \
    static unsigned long long name##_block = 0;              \
    if (name##_block != gpunet_host_block_serial) {          \
        std::memset(static_cast<void*>(name), 0xFF, sizeof(name)); \
        name##_block = gpunet_host_block_serial;             \
    }

// One block's threads in turn: `turn` names the one that may run. One condition
// variable per thread, so a hand-on wakes only the thread whose turn it is.
struct gpunet_host_block {
    std::mutex mu;
    std::vector<std::condition_variable> cv;
    std::vector<char> waiting;  // at the barrier
    std::vector<char> done;     // returned from the kernel
    unsigned turn = 0;

    explicit gpunet_host_block(unsigned n) : cv(n), waiting(n, 0), done(n, 0) {}

    // Hands the turn from thread t to the next runnable one (cyclic); opens the
    // barrier when every live thread waits at it. Called with mu held.
    void pass_on(unsigned t) {
        unsigned n = unsigned(waiting.size());
        for (unsigned k = 1; k <= n; ++k) {
            unsigned u = (t + k) % n;
            if (!waiting[u] && !done[u]) {
                turn = u;
                cv[u].notify_one();
                return;
            }
        }
        bool any = false;
        for (unsigned u = 0; u < n; ++u) {
            any = any || waiting[u];
            waiting[u] = 0;
        }
        for (unsigned u = 0; u < n && any; ++u) {
            if (!done[u]) {
                turn = u;
                cv[u].notify_one();
                return;
            }
        }
    }
    void wait_turn(std::unique_lock<std::mutex>& lk, unsigned t) {
        cv[t].wait(lk, [&] { return turn == t && !waiting[t]; });
    }
};
static thread_local gpunet_host_block* gpunet_host_current = nullptr;

static inline void __syncthreads() {
    gpunet_host_block& b = *gpunet_host_current;
    unsigned t = threadIdx.x;
    std::unique_lock<std::mutex> lk(b.mu);
    b.waiting[t] = 1;
    b.pass_on(t);
    b.wait_turn(lk, t);
}

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

template <class... A>
static void gpunet_host_run_block(void (*k)(A...), unsigned grid, unsigned block, void** args) {
    for (unsigned b = 0; b < grid; ++b) {
        gpunet_host_block blk(block);
        unsigned long long serial = ++gpunet_host_blocks;
        std::vector<std::thread> threads;
        threads.reserve(block);
        for (unsigned t = 0; t < block; ++t) {
            threads.emplace_back([&, t] {
                gridDim = {grid, 1, 1};
                blockDim = {block, 1, 1};
                blockIdx = {b, 0, 0};
                threadIdx = {t, 0, 0};
                gpunet_host_current = &blk;
                gpunet_host_block_serial = serial;
                {
                    std::unique_lock<std::mutex> lk(blk.mu);
                    blk.wait_turn(lk, t);
                }
                gpunet_host_invoke(k, args, std::index_sequence_for<A...>{});
                std::unique_lock<std::mutex> lk(blk.mu);
                blk.done[t] = 1;
                blk.pass_on(t);
            });
        }
        for (std::thread& th : threads) th.join();
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
