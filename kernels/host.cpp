// Host (CPU) build of the fused kernels: the same device functions as the CUDA
// kernels (activations.cuh, losses.cuh, optimizers.cuh), run by OpenMP loops.
// gpunet/backend/_host.py compiles this file with the system C++ compiler on first
// use and calls it through ctypes; without a compiler NumPy does the same work.
//
// Layouts: every matrix is C-contiguous, rows = samples.
//   bias_act    Y[B,O] <- act(Y + b[O])           (Y holds X @ W on entry)
//               Zk[B,O] <- Y + b                  (only when the backward needs x)
//   act_bwd     dZ[B,O] <- act'(.) * dY           (dZ may be dY itself)
//               db[O]   <- sum_b dZ[b, :]          (optional)
//   *_xent      L[B], dZ[B,C] from logits Z[B,C]; scale is per row (sc) or one value
//   adam, sgd   in place over flat parameter/gradient/state buffers
#include "activations.cuh"
#include "losses.cuh"
#include "optimizers.cuh"

#include <omp.h>
#include <string.h>

// Work below this many elements runs on the calling thread: waking an OpenMP
// team costs microseconds, which tiny (tutorial-sized) networks cannot afford.
static const long long kParallelMin = 1 << 16;

enum Act { LINEAR = 0, RELU, LEAKY_RELU, SIGMOID, TANH, GELU, GELU_TANH, SWISH };

template <typename T, typename A>
static void bias_act_impl(T* Y, T* Zk, const T* b, long long B, long long O, T alpha) {
    const bool par = B * O >= kParallelMin;
#pragma omp parallel for schedule(static) if (par)
    for (long long r = 0; r < B; ++r) {
        T* y = Y + r * O;
        T* zk = Zk ? Zk + r * O : nullptr;
#pragma omp simd
        for (long long o = 0; o < O; ++o) {
            T z = b ? y[o] + b[o] : y[o];
            if (zk) zk[o] = z;
            y[o] = A::template fwd<T>(z, alpha);
        }
    }
}

template <typename T, typename A>
static void act_bwd_impl(T* dZ, const T* dY, const T* Z, const T* Y, T* db, long long B,
                         long long O, T alpha) {
    const bool par = B * O >= kParallelMin;
    const int nt = par ? omp_get_max_threads() : 1;
    // per-thread partial bias sums, combined in thread order: deterministic
    T* partial = db ? new T[(size_t)nt * O]() : nullptr;
#pragma omp parallel num_threads(nt) if (par)
    {
        const int t = omp_get_thread_num();
        T* acc = partial ? partial + (size_t)t * O : nullptr;
#pragma omp for schedule(static)
        for (long long r = 0; r < B; ++r) {
            const long long base = r * O;
#pragma omp simd
            for (long long o = 0; o < O; ++o) {
                T g = A::template bwd<T>(dY[base + o], Z ? Z[base + o] : T(0), Y[base + o], alpha);
                dZ[base + o] = g;
                if (acc) acc[o] += g;
            }
        }
    }
    if (db) {
        for (long long o = 0; o < O; ++o) db[o] = T(0);
        for (int t = 0; t < nt; ++t)
            for (long long o = 0; o < O; ++o) db[o] += partial[(size_t)t * O + o];
        delete[] partial;
    }
}

template <typename T>
static int bias_act(T* Y, T* Zk, const T* b, long long B, long long O, int act, T alpha) {
    using namespace gpunet;
    switch (act) {
        case LINEAR: bias_act_impl<T, Linear>(Y, Zk, b, B, O, alpha); return 0;
        case RELU: bias_act_impl<T, Relu>(Y, Zk, b, B, O, alpha); return 0;
        case LEAKY_RELU: bias_act_impl<T, LeakyRelu>(Y, Zk, b, B, O, alpha); return 0;
        case SIGMOID: bias_act_impl<T, Sigmoid>(Y, Zk, b, B, O, alpha); return 0;
        case TANH: bias_act_impl<T, Tanh>(Y, Zk, b, B, O, alpha); return 0;
        case GELU: bias_act_impl<T, Gelu>(Y, Zk, b, B, O, alpha); return 0;
        case GELU_TANH: bias_act_impl<T, GeluTanh>(Y, Zk, b, B, O, alpha); return 0;
        case SWISH: bias_act_impl<T, Swish>(Y, Zk, b, B, O, alpha); return 0;
    }
    return -1;
}

template <typename T>
static int act_bwd(T* dZ, const T* dY, const T* Z, const T* Y, T* db, long long B, long long O,
                   int act, T alpha) {
    using namespace gpunet;
    switch (act) {
        case LINEAR: act_bwd_impl<T, Linear>(dZ, dY, Z, Y, db, B, O, alpha); return 0;
        case RELU: act_bwd_impl<T, Relu>(dZ, dY, Z, Y, db, B, O, alpha); return 0;
        case LEAKY_RELU: act_bwd_impl<T, LeakyRelu>(dZ, dY, Z, Y, db, B, O, alpha); return 0;
        case SIGMOID: act_bwd_impl<T, Sigmoid>(dZ, dY, Z, Y, db, B, O, alpha); return 0;
        case TANH: act_bwd_impl<T, Tanh>(dZ, dY, Z, Y, db, B, O, alpha); return 0;
        case GELU: act_bwd_impl<T, Gelu>(dZ, dY, Z, Y, db, B, O, alpha); return 0;
        case GELU_TANH: act_bwd_impl<T, GeluTanh>(dZ, dY, Z, Y, db, B, O, alpha); return 0;
        case SWISH: act_bwd_impl<T, Swish>(dZ, dY, Z, Y, db, B, O, alpha); return 0;
    }
    return -1;
}

template <typename T, typename I>
static void softmax_xent(T* L, T* dZ, const T* Z, const I* labels, const T* targets,
                         long long B, long long C, T ls, const T* sc, T scale) {
    const bool par = B * C >= kParallelMin;
#pragma omp parallel for schedule(static) if (par)
    for (long long r = 0; r < B; ++r) {
        const T s = sc ? sc[r] : scale;
        if (labels) {
            L[r] = gpunet::softmax_xent_row<T, T>(dZ + r * C, Z + r * C, C,
                                                  gpunet::LabelTarget<I>{labels[r]}, ls, s);
        } else {
            L[r] = gpunet::softmax_xent_row<T, T>(dZ + r * C, Z + r * C, C,
                                                  gpunet::DenseTarget<T>{targets + r * C}, ls, s);
        }
    }
}

template <typename T>
static void sigmoid_bce(T* L, T* dZ, const T* Z, const T* targets, long long B, long long K,
                        T ls, const T* sc, T scale) {
    const bool par = B * K >= kParallelMin;
#pragma omp parallel for schedule(static) if (par)
    for (long long r = 0; r < B; ++r) {
        const T s = (sc ? sc[r] : scale) / T(K > 0 ? K : 1);
        L[r] = gpunet::sigmoid_bce_row<T, T>(dZ + r * K, Z + r * K, targets + r * K, K, ls, s);
    }
}

// Optimizers. The serial branch is explicit: an OpenMP `if` clause still pays for
// the team bookkeeping, several microseconds per call on small buffers.
// 1 - beta arrives computed in double and rounded once, as the NumPy reference does.
template <typename T>
static void adam(T* P, const T* G, T* M, T* V, long long n, T lr_t, T b1, T omb1, T b2, T omb2,
                 T eps, T keep) {
    if (n >= kParallelMin) {
#pragma omp parallel for simd schedule(static)
        for (long long i = 0; i < n; ++i) {
            T p = P[i], m = M[i], v = V[i];
            gpunet::adam_step<T>(p, m, v, G[i], lr_t, b1, omb1, b2, omb2, eps, keep);
            P[i] = p, M[i] = m, V[i] = v;
        }
    } else {
#pragma omp simd
        for (long long i = 0; i < n; ++i) {
            T p = P[i], m = M[i], v = V[i];
            gpunet::adam_step<T>(p, m, v, G[i], lr_t, b1, omb1, b2, omb2, eps, keep);
            P[i] = p, M[i] = m, V[i] = v;
        }
    }
}

template <typename T>
static void sgd_range(T* P, const T* G, T* Vel, long long a, long long b, T lr, T mu, bool nest,
                      T keep) {
    if (Vel) {
#pragma omp simd
        for (long long i = a; i < b; ++i) {
            T p = P[i], v = Vel[i];
            gpunet::sgd_momentum_step<T>(p, v, G[i], lr, mu, nest, keep);
            P[i] = p, Vel[i] = v;
        }
    } else {
#pragma omp simd
        for (long long i = a; i < b; ++i) P[i] = gpunet::sgd_step<T>(P[i], G[i], lr, keep);
    }
}

template <typename T>
static void sgd(T* P, const T* G, T* Vel, long long n, T lr, T mu, int nesterov, T keep) {
    if (n < kParallelMin) return sgd_range<T>(P, G, Vel, 0, n, lr, mu, nesterov != 0, keep);
#pragma omp parallel
    {
        const long long nt = omp_get_num_threads(), t = omp_get_thread_num();
        const long long chunk = (n + nt - 1) / nt;
        const long long a = t * chunk, b = a + chunk < n ? a + chunk : n;
        if (a < b) sgd_range<T>(P, G, Vel, a, b, lr, mu, nesterov != 0, keep);
    }
}

#define GPUNET_HOST_API(T, S)                                                                    \
    extern "C" int gpunet_bias_act_##S(T* Y, T* Zk, const T* b, long long B, long long O,        \
                                       int act, double alpha) {                                  \
        return bias_act<T>(Y, Zk, b, B, O, act, T(alpha));                                       \
    }                                                                                            \
    extern "C" int gpunet_act_bwd_##S(T* dZ, const T* dY, const T* Z, const T* Y, T* db,         \
                                      long long B, long long O, int act, double alpha) {         \
        return act_bwd<T>(dZ, dY, Z, Y, db, B, O, act, T(alpha));                                \
    }                                                                                            \
    extern "C" void gpunet_softmax_xent_##S(T* L, T* dZ, const T* Z, const long long* labels,    \
                                            const T* targets, long long B, long long C,          \
                                            double ls, const T* sc, double scale) {              \
        softmax_xent<T, long long>(L, dZ, Z, labels, targets, B, C, T(ls), sc, T(scale));        \
    }                                                                                            \
    extern "C" void gpunet_sigmoid_bce_##S(T* L, T* dZ, const T* Z, const T* targets,            \
                                           long long B, long long K, double ls, const T* sc,     \
                                           double scale) {                                       \
        sigmoid_bce<T>(L, dZ, Z, targets, B, K, T(ls), sc, T(scale));                            \
    }                                                                                            \
    extern "C" void gpunet_adam_##S(T* P, const T* G, T* M, T* V, long long n, double lr_t,      \
                                    double b1, double b2, double eps, double keep) {             \
        adam<T>(P, G, M, V, n, T(lr_t), T(b1), T(1.0 - b1), T(b2), T(1.0 - b2), T(eps), T(keep)); \
    }                                                                                            \
    extern "C" void gpunet_sgd_##S(T* P, const T* G, T* Vel, long long n, double lr, double mu,  \
                                   int nesterov, double keep) {                                  \
        sgd<T>(P, G, Vel, n, T(lr), T(mu), nesterov, T(keep));                                   \
    }

GPUNET_HOST_API(float, f32)
GPUNET_HOST_API(double, f64)

extern "C" int gpunet_host_threads(void) { return omp_get_max_threads(); }
