// Host (CPU) build of the fused kernels: the same device functions as the CUDA
// kernels (activations.cuh, losses.cuh, optimizers.cuh), run over row or element
// ranges by a small thread pool. gpunet/backend/_host.py compiles this file with
// the system C++ compiler on first use and calls it through ctypes; without a
// compiler NumPy does the same work.
//
// Layouts: every matrix is C-contiguous, rows = samples.
//   bias_act    Y[B,O] <- act(Y + b[O])           (Y holds X @ W on entry)
//               Zk[B,O] <- Y + b                  (only when the backward needs x)
//   act_bwd     dZ[B,O] <- act'(.) * dY           (dZ may be dY itself)
//               db[O]   <- sum_b dZ[b, :]          (optional)
//   *_xent      L[B], dZ[B,C] from logits Z[B,C]; scale is per row (sc) or one value
//   adam, sgd   in place over flat parameter/gradient/state buffers
//   *_pool2d    NHWC images X[B,H,W,C] -> Y[B,OH,OW,C] (geometry of pool.cuh)
//   im2col      cols[N,Ho,Wo,kh,kw,C] <- X[N,H,W,C] (conv.cuh; 0 in the padding)
//   col2im      dX[N,H,W,C] <- sum of the dcols entries that read each element
//   lstm_*, gru_*  one time step of a recurrent cell (rnn.cuh), rows = samples
//
// Why a pool of our own rather than OpenMP: an OpenMP runtime is per process, so
// our loops ran on whichever one was loaded first (PyTorch brings its own, with
// spinning idle workers) and fought the BLAS threads between every kernel: a step
// was up to 10x slower. Idle workers here spin briefly (300 us by default), then sleep
// on a condition variable; while OpenBLAS is held at one thread the products split
// over this pool (pool_gemm) and the kernels share one second thread.
#include "activations.cuh"
#include "conv.cuh"
#include "attention.cuh"
#include "losses.cuh"
#include "optimizers.cuh"
#include "pool.cuh"
#include "rnn.cuh"

#include <unistd.h>

#ifdef GPUNET_LIBMVEC
// glibc's libmvec has SIMD versions of these (<= 4 ulp); declaring them lets the
// compiler call them from `omp simd` loops (math.h only does under -ffast-math)
extern "C" {
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float tanhf(float);
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
double tanh(double);
}
#endif

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

// Work below these sizes runs on the calling thread: waking a sleeping worker costs
// tens of microseconds, more than a memory-bound pass over a few MB gains from it.
// The optimizer updates (sqrt and divide per element) pay off sooner.
static const long long kParallelMin = 1 << 20;
static const long long kParallelMinOptimizer = 1 << 19;
static const long long kSerial = 1LL << 62;  // a min_work no job reaches: the caller's thread

namespace {

// Runs job(t, nt) for t in [0, nt) and returns when all are done: on the workers
// (the caller is thread 0), or, while another thread's job holds them, every t in
// turn on the calling thread. Python threads call in at once (ctypes releases the
// GIL): waiting for the pool would gain nothing, the cores are busy with the other
// job, and each t computes the same chunk either way, so the results are the same
// bits. Workers start on first use; between jobs they spin for up to spin_us() (set from
// GPUNET_POOL_SPIN_US by gpunet/backend/_host.py), then sleep.
class Pool {
  public:
    using Job = std::function<void(int, int)>;

    explicit Pool(int n) : n_(n < 1 ? 1 : n), owner_(getpid()) {}

    int size() const { return n_.load(std::memory_order_relaxed); }
    pid_t owner() const { return owner_; }

    void resize(int n) {
        std::lock_guard<std::mutex> busy(busy_);  // after the running job, if any
        stop();
        n_ = n < 1 ? 1 : n;
    }

    // nt: the split the caller sized its buffers for (size() when it asked)
    void run(int nt, const Job& job) {
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (nt <= 1 || !busy.owns_lock() || nt != n_) {
            for (int t = 0; t < nt; ++t) job(t, nt);
            return;
        }
        if ((int)workers_.size() != nt - 1) start();
        {
            std::lock_guard<std::mutex> lock(m_);
            job_ = &job;
            nt_ = nt;
            pending_ = nt - 1;
            left_.store(nt - 1, std::memory_order_relaxed);
            ++generation_;
        }
        gen_.store(generation_, std::memory_order_release);
        wake_.notify_all();
        job(0, nt);
        spin_until([this] { return left_.load(std::memory_order_acquire) == 0; });
        std::unique_lock<std::mutex> lock(m_);
        done_.wait(lock, [this] { return pending_ == 0; });
        job_ = nullptr;
    }

    static void set_spin(long long us) { spin_us().store(us, std::memory_order_relaxed); }

  private:
    // start and stop run with busy_ held
    void start() {
        stop();
        std::lock_guard<std::mutex> lock(m_);
        quit_ = false;
        quit_a_.store(false);
        for (int t = 1; t < n_; ++t)
            workers_.emplace_back([this, t, g = generation_] { loop(t, g); });
    }

    void stop() {
        {
            std::lock_guard<std::mutex> lock(m_);
            quit_ = true;
            quit_a_.store(true);
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
        workers_.clear();
    }

    // Spins up to spin_us() for ready() before the caller blocks on a condition: a
    // sleeping thread takes tens of microseconds to wake on a virtual CPU.
    template <typename F>
    static void spin_until(F ready) {
        const long long us = spin_us().load(std::memory_order_relaxed);
        if (us <= 0 || ready()) return;
        const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
        for (int i = 0; !ready(); ++i) {
            if ((i & 255) == 255) {
                if (std::chrono::steady_clock::now() > end) return;
                std::this_thread::yield();
            }
        }
    }

    static std::atomic<long long>& spin_us() {
        static std::atomic<long long> us{0};
        return us;
    }

    void loop(int t, long long seen) {
        for (;;) {
            const Job* job;
            int nt;
            spin_until([&] { return gen_.load(std::memory_order_acquire) != seen || quit_a_.load(); });
            {
                std::unique_lock<std::mutex> lock(m_);
                wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
                if (quit_) return;
                seen = generation_;
                job = job_;
                nt = nt_;
            }
            (*job)(t, nt);
            left_.fetch_sub(1, std::memory_order_release);
            std::lock_guard<std::mutex> lock(m_);
            if (--pending_ == 0) done_.notify_one();
        }
    }

    std::atomic<int> n_;
    pid_t owner_;
    std::mutex busy_;  // held by the thread whose job the workers run
    std::vector<std::thread> workers_;
    std::mutex m_;  // guards what the workers read: job_, nt_, generation_, pending_, quit_
    std::condition_variable wake_, done_;
    const Job* job_ = nullptr;
    int nt_ = 1;
    long long generation_ = 0;
    int pending_ = 0;
    bool quit_ = false;
    std::atomic<long long> gen_{0};  // generation_, read without the lock by spinners
    std::atomic<int> left_{0};       // workers still on the job
    std::atomic<bool> quit_a_{false};
};

// One pool per process. A forked child inherits the pool's memory but not its
// threads: it gets a fresh pool, and the parent's copy is left alone (never freed,
// since destroying it would join threads that do not exist here). Threads of the
// child may ask at once: one fresh pool wins, the others' are freed unused.
Pool& pool() {
    static std::atomic<Pool*> current{new Pool(1)};
    Pool* p = current.load(std::memory_order_acquire);
    if (p->owner() == getpid()) return *p;
    Pool* fresh = new Pool(p->size());
    if (current.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;  // never started: no threads to join
    return *p;     // the winner's
}

// f(begin, end) over [0, n) in contiguous chunks, one per thread: static, so every
// run splits the same way and the results are bit-for-bit repeatable
template <typename F>
void parallel_for(long long n, long long work, F f, long long min_work = kParallelMin) {
    Pool& p = pool();
    const int threads = p.size();
    if (work < min_work || threads == 1) return f(0, n);
    p.run(threads, [&](int t, int nt) {
        const long long chunk = (n + nt - 1) / nt;
        const long long a = t * chunk, b = a + chunk < n ? a + chunk : n;
        if (a < b) f(a, b);
    });
}

}  // namespace

enum Act { LINEAR = 0, RELU, LEAKY_RELU, SIGMOID, TANH, GELU, GELU_TANH, SWISH };

// rows [r0, r1) of Y (., O): y <- act(y + b), zk <- y + b (b, zk: nullptr when none)
template <typename T, typename A>
static void bias_act_rows(T* Y, T* Zk, const T* b, long long r0, long long r1, long long O,
                          T alpha) {
    for (long long r = r0; r < r1; ++r) {
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
static void bias_act_impl(T* Y, T* Zk, const T* b, long long B, long long O, T alpha) {
    parallel_for(B, B * O, [&](long long r0, long long r1) {
        bias_act_rows<T, A>(Y, Zk, b, r0, r1, O, alpha);
    });
}

// f(A{}) for the activation functor A of code act; -1 for a code this build lacks
template <typename F>
static int with_act(int act, F f) {
    using namespace gpunet;
    switch (act) {
        case LINEAR: f(Linear{}); return 0;
        case RELU: f(Relu{}); return 0;
        case LEAKY_RELU: f(LeakyRelu{}); return 0;
        case SIGMOID: f(Sigmoid{}); return 0;
        case TANH: f(Tanh{}); return 0;
        case GELU: f(Gelu{}); return 0;
        case GELU_TANH: f(GeluTanh{}); return 0;
        case SWISH: f(Swish{}); return 0;
    }
    return -1;
}

// rows(r0, r1, acc) over [0, R), one contiguous chunk per pool thread, each adding into
// its own zeroed partial sums acc[width] (nullptr when sum is); the partials are then
// combined in chunk order into sum: the same bits on every run at a thread count.
template <typename T, typename F>
static void rows_summed(long long R, long long work, T* sum, long long width, F rows) {
    Pool& p = pool();
    const int nt = work >= kParallelMin ? p.size() : 1;
    std::vector<T> partial(sum ? (size_t)nt * width : 0, T(0));
    auto acc = [&](int t) { return sum ? partial.data() + (size_t)t * width : nullptr; };
    if (nt == 1) {
        rows(0, R, acc(0));
    } else {
        p.run(nt, [&](int t, int n) {
            const long long chunk = (R + n - 1) / n;
            const long long a = t * chunk, b = a + chunk < R ? a + chunk : R;
            if (a < b) rows(a, b, acc(t));
        });
    }
    if (sum) {
        for (long long j = 0; j < width; ++j) sum[j] = T(0);
        for (int t = 0; t < nt; ++t)
            for (long long j = 0; j < width; ++j) sum[j] += partial[(size_t)t * width + j];
    }
}

template <typename T, typename A>
static void act_bwd_impl(T* dZ, const T* dY, const T* Z, const T* Y, T* db, long long B,
                         long long O, T alpha) {
    rows_summed<T>(B, B * O, db, O, [&](long long r0, long long r1, T* acc) {
        for (long long r = r0; r < r1; ++r) {
            const long long base = r * O;
#pragma omp simd
            for (long long o = 0; o < O; ++o) {
                T g = A::template bwd<T>(dY[base + o], Z ? Z[base + o] : T(0), Y[base + o], alpha);
                dZ[base + o] = g;
                if (acc) acc[o] += g;
            }
        }
    });
}

template <typename T>
static int bias_act(T* Y, T* Zk, const T* b, long long B, long long O, int act, T alpha) {
    return with_act(act, [&](auto a) { bias_act_impl<T, decltype(a)>(Y, Zk, b, B, O, alpha); });
}

template <typename T>
static int act_bwd(T* dZ, const T* dY, const T* Z, const T* Y, T* db, long long B, long long O,
                   int act, T alpha) {
    return with_act(act, [&](auto a) {
        act_bwd_impl<T, decltype(a)>(dZ, dY, Z, Y, db, B, O, alpha);
    });
}

template <typename T, typename I>
static void softmax_xent(T* L, T* dZ, const T* Z, const I* labels, const T* targets,
                         long long B, long long C, T ls, const T* sc, T scale) {
    parallel_for(B, B * C, [&](long long r0, long long r1) {
        for (long long r = r0; r < r1; ++r) {
            const T s = sc ? sc[r] : scale;
            if (labels) {
                L[r] = gpunet::softmax_xent_row<T, T>(dZ + r * C, Z + r * C, C,
                                                      gpunet::LabelTarget<I>{labels[r]}, ls, s);
            } else {
                L[r] = gpunet::softmax_xent_row<T, T>(
                    dZ + r * C, Z + r * C, C, gpunet::DenseTarget<T>{targets + r * C}, ls, s);
            }
        }
    });
}

template <typename T>
static void sigmoid_bce(T* L, T* dZ, const T* Z, const T* targets, long long B, long long K,
                        T ls, const T* sc, T scale) {
    parallel_for(B, B * K, [&](long long r0, long long r1) {
        for (long long r = r0; r < r1; ++r) {
            const T s = (sc ? sc[r] : scale) / T(K > 0 ? K : 1);
            L[r] = gpunet::sigmoid_bce_row<T, T>(dZ + r * K, Z + r * K, targets + r * K, K, ls, s);
        }
    });
}

// sum((P - Y)^2) of n elements into *total and G = scale * (P - Y), in one pass (the
// loss of nn.functional.mse_loss and its gradient: an encoder step's three passes and
// two 1 MB temporaries were 0.4 ms). Chunks of 4096 summed in T (lanes of 256 each),
// the chunks in double, combined in chunk order: the same bits on every run.
template <typename T>
static T sq_err_chunk(T* __restrict G, const T* __restrict P, const T* __restrict Y, long long n,
                      T scale) {
    T s = T(0);
#pragma omp simd reduction(+ : s)
    for (long long i = 0; i < n; ++i) {
        const T d = P[i] - Y[i];
        s += d * d;
        G[i] = scale * d;
    }
    return s;
}

template <typename T>
static void sq_err(T* G, double* total, const T* P, const T* Y, long long n, T scale) {
    const long long chunk = 4096, R = (n + chunk - 1) / chunk;
    rows_summed<double>(R, n, total, 1, [=](long long r0, long long r1, double* acc) {
        for (long long r = r0; r < r1; ++r) {
            const long long a = r * chunk, m = a + chunk < n ? chunk : n - a;
            acc[0] += double(sq_err_chunk<T>(G + a, P + a, Y + a, m, scale));
        }
    });
}

// The host's attention rows: attention.cuh's row routines with their loops split so
// that GCC vectorizes them (exp through libmvec): the row routine's per-key mask and
// causal tests kept it scalar, 7 ns a score, most of a T = 2048 attention step. Keys
// past `last` (the causal limit) are masked without a test; semantics as the NumPy
// reference: a masked score is FILL and counts towards the sum, its weight is 0,
// and NaN anywhere makes the row's kept weights NaN.

// exp of the softmax rows' (non-positive) exponents in float: Cody-Waite reduction by
// ln 2 and a degree-6 polynomial, inlined into the vectorized loops (<= 2.4e-7 relative
// error against exp in double; results under exp(-87.3) are 0, not subnormal). libmvec's
// expf, a call per vector, took 438 us of an encoder block's 8192 x 64 softmax and this
// 275. NaN stays NaN. Doubles keep the library's exp.
#if defined(__has_builtin)  // nested: an #if with an undefined function-like name fails
#if __has_builtin(__builtin_bit_cast)
#define GPUNET_BIT_CAST 1
#endif
#endif
static inline float row_exp(float x) {
#ifdef GPUNET_BIT_CAST
    const float c = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
    const float t = __builtin_fmaf(c, 1.44269504088896341f, 12582912.0f);  // 1.5 * 2**23
    const float n = t - 12582912.0f;                                       // round(c / ln 2)
    float r = __builtin_fmaf(n, -0.693359375f, c);
    r = __builtin_fmaf(n, 2.12194440e-4f, r);  // c - n ln 2, in two parts
    float p = 1.3981999507e-3f;
    p = __builtin_fmaf(p, r, 8.3334519073e-3f);
    p = __builtin_fmaf(p, r, 4.1665795894e-2f);
    p = __builtin_fmaf(p, r, 1.6666665459e-1f);
    p = __builtin_fmaf(p, r, 5.0000001201e-1f);
    p = __builtin_fmaf(p, r * r, r) + 1.0f;
    // 2**n; unsigned, so a NaN's bits (whose result p makes NaN anyway) shift defined
    const unsigned e = (__builtin_bit_cast(unsigned, t) - 0x4B400000u + 127u) << 23;
    return x < -87.3f ? 0.0f : p * __builtin_bit_cast(float, e);
#else
    return gpunet::exp_(x);
#endif
}
static inline double row_exp(double x) { return gpunet::exp_(x); }

// The row's mask as 0/1 values of T in a per-thread buffer: read as bools through its
// strides it kept the loops below scalar (a padding-masked encoder softmax: 3.4 ms
// against 2.9 with the buffer, 0.5 unmasked).
template <typename T>
static const T* row_keep(const bool* keep, long long sk, long long n) {
    if (keep == nullptr) return nullptr;
    thread_local std::vector<T> buf;
    if ((long long)buf.size() < n) buf.resize(n);
    T* b = buf.data();
    for (long long j = 0; j < n; ++j) b[j] = keep[j * sk] ? T(1) : T(0);
    return b;
}

template <typename T, bool kLse = true>  // kLse: return the row's log-sum-exp (else 0)
static T attn_row_fwd(T* P, const T* S, const bool* keep, long long sk, long long n,
                      long long last, T scale) {
    if (n <= 0) return gpunet::attn_softmax_row<T>(P, S, keep, sk, n, last, scale);
    const T fill = T(-1e9);
    const long long k = last + 1 < n ? last + 1 : n;  // keys [k, n) are masked
    const T* __restrict kb = keep ? row_keep<T>(keep, sk, k) : nullptr;
    // NaN anywhere among the kept scores makes the sum NaN below (checked there)
    T m = k < n ? fill : -INFINITY;
    if (keep == nullptr) {
#pragma omp simd reduction(max : m)
        for (long long j = 0; j < k; ++j) {
            const T z = scale * S[j];
            m = m > z ? m : z;
        }
    } else {
#pragma omp simd reduction(max : m)
        for (long long j = 0; j < k; ++j) {
            const T sj = scale * S[j];  // read unconditionally: a select, not a masked load
            const T z = kb[j] != T(0) ? sj : fill;
            m = m > z ? m : z;
        }
    }
    T s = T(0);
    if (keep == nullptr) {
#pragma omp simd reduction(+ : s)
        for (long long j = 0; j < k; ++j) {
            const T e = row_exp(scale * S[j] - m);
            s += e;
            P[j] = e;
        }
    } else {
#pragma omp simd reduction(+ : s)
        for (long long j = 0; j < k; ++j) {
            const bool kp = kb[j] != T(0);
            const T sj = scale * S[j];
            const T e = row_exp((kp ? sj : fill) - m);
            s += e;
            P[j] = kp ? e : T(0);
        }
    }
    if (k < n) s += T(n - k) * row_exp(fill - m);
    const bool bad = s != s;
    const T inv = T(1) / s;
#pragma omp simd
    for (long long j = 0; j < k; ++j) P[j] *= inv;
    if (keep != nullptr && bad) {  // 0 * NaN: masked weights stay 0, as the reference
        for (long long j = 0; j < k; ++j)
            if (kb[j] == T(0)) P[j] = T(0);
    }
    for (long long j = k; j < n; ++j) P[j] = T(0);
    return kLse ? m + gpunet::log_(s) : T(0);
}

// P = exp(scale * S - lse) on kept keys (0 elsewhere) and dS = scale * P * (dP - D).
template <typename T>
static void attn_row_bwd(T* P, T* dS, const T* S, const T* dP, T lse, T D, const bool* keep,
                         long long sk, long long n, long long last, T scale) {
    const long long k = last + 1 < n ? last + 1 : n;
    const T* __restrict kb = keep ? row_keep<T>(keep, sk, k) : nullptr;
    if (keep == nullptr) {
#pragma omp simd
        for (long long j = 0; j < k; ++j) {
            const T p = row_exp(scale * S[j] - lse);
            P[j] = p;
            dS[j] = scale * p * (dP[j] - D);
        }
    } else {
#pragma omp simd
        for (long long j = 0; j < k; ++j) {
            const T e = row_exp(scale * S[j] - lse);
            const T p = kb[j] != T(0) ? e : T(0);
            P[j] = p;
            dS[j] = scale * p * (dP[j] - D);
        }
    }
    for (long long j = k; j < n; ++j) P[j] = dS[j] = T(0);
}

// The masked, scaled softmax of attention score rows (B, H, Tq, Tk), the mask read
// through element strides (0 where it broadcasts), as kernels/attention.cu.
template <typename T>
static void attn_softmax(T* P, const T* S, const bool* keep, long long rows, long long Tq,
                         long long Tk, long long H, long long sb, long long sh, long long sq,
                         long long sk, int causal, T scale) {
    parallel_for(rows, rows * Tk, [&](long long r0, long long r1) {
        for (long long r = r0; r < r1; ++r) {
            const long long q = keep || causal ? r % Tq : 0;  // divisions only where needed
            const bool* kr = nullptr;
            if (keep) kr = keep + r / (Tq * H) * sb + (r / Tq) % H * sh + q * sq;
            attn_row_fwd<T, false>(P + r * Tk, S + r * Tk, kr, sk, Tk, causal ? q : Tk - 1,
                                   scale);
        }
    });
}

// dS = scale * P * (dP - sum(P * dP)) of one row of n keys (ds may be dp itself).
template <typename T>
static void attn_row_dscores(T* ds, const T* dp, const T* p, long long n, T scale) {
    T d = T(0);
#pragma omp simd reduction(+ : d)
    for (long long j = 0; j < n; ++j) d += p[j] * dp[j];
#pragma omp simd
    for (long long j = 0; j < n; ++j) ds[j] = scale * p[j] * (dp[j] - d);
}

template <typename T>
static void attn_softmax_bwd(T* dS, const T* dP, const T* P, long long rows, long long Tk,
                             T scale) {
    parallel_for(rows, rows * Tk, [&](long long r0, long long r1) {
        for (long long r = r0; r < r1; ++r)
            attn_row_dscores<T>(dS + r * Tk, dP + r * Tk, P + r * Tk, Tk, scale);
    });
}

// -- self-attention head by head over NumPy's own BLAS ----------------------------------
// gpunet/backend/_blas_threads.py finds the cblas_?gemm of the BLAS NumPy links and
// hands it over once (gpunet_set_blas; `wide`: 64-bit integers). One head's products
// (64 x 64 x 32 in the encoder block) and its softmax rows then run back to back while
// the head's scores are in L1/L2, without a Python call, a transposed copy of K or V
// over all heads, or a thread hand-over per group of heads: the pool splits the heads.
enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
static std::atomic<void*> g_sgemm{nullptr}, g_dgemm{nullptr};
static std::atomic<int> g_blas_wide{1};

template <typename I, typename T>
using gemm_fn = void (*)(int, int, int, I, I, I, T, const T*, I, const T*, I, T, T*, I);

// C (M, N) = op(A) @ op(B), row-major (op: transposed when ta / tb)
template <typename T>
static void blas_gemm(bool ta, long long M, long long N, long long K, const T* A, long long lda,
                      const T* B, long long ldb, T* C, long long ldc, bool tb = false) {
    void* f = (sizeof(T) == 4 ? g_sgemm : g_dgemm).load(std::memory_order_acquire);
    const int a = ta ? kTrans : kNoTrans, b = tb ? kTrans : kNoTrans;
    if (g_blas_wide.load(std::memory_order_relaxed))
        ((gemm_fn<long long, T>)f)(kRowMajor, a, b, M, N, K, T(1), A, lda, B, ldb, T(0), C, ldc);
    else
        ((gemm_fn<int, T>)f)(kRowMajor, a, b, int(M), int(N), int(K), T(1), A, int(lda), B,
                             int(ldb), T(0), C, int(ldc));
}

// dst (c, r) = src (r, c) read with row stride ld: K^T or V^T of one head, in L1
template <typename T>
static void head_transposed(T* dst, const T* src, long long r, long long c, long long ld) {
    for (long long i = 0; i < r; ++i)
        for (long long j = 0; j < c; ++j) dst[j * r + i] = src[i * ld + j];
}

// A per-thread scratch buffer of at least n elements.
template <typename T>
static T* scratch(int which, long long n) {
    thread_local std::vector<T> bufs[2];
    if ((long long)bufs[which].size() < n) bufs[which].resize(n);
    return bufs[which].data();
}

// Hints to load r rows of c elements (row stride ld) into L2 (L1 holds this head's work),
// for writing when Write: the next head's operands are fetched while this head computes.
// In a training step they come from memory, at row strides the hardware prefetcher did
// not follow; each head stalled on them (cache flushed: 2.6 -> 2.3 ms forward, 3.6 ->
// 2.9 ms backward for the encoder block's 128 heads of 64 x 32 at one thread).
// Both always inlined: GCC 12 took a function holding only prefetches for one without
// effects (ipa-pure-const) and deleted its calls.
template <int Write = 0, typename T>
__attribute__((always_inline)) inline void prefetch_rows(const T* p, long long r, long long c, long long ld) {
    for (long long i = 0; i < r; ++i)
        for (long long j = 0; j < c; j += 64 / (long long)sizeof(T))
            __builtin_prefetch(p + i * ld + j, Write, 2);
}

// head bh's q, k and v rows (of H heads of dh in rows of ld) in Y5 (B, L, 3, H, dh)
template <int Write = 0, typename T>
__attribute__((always_inline)) inline void prefetch_qkv(const T* Y5, long long bh, long long L, long long H, long long dh) {
    const long long ld = 3 * H * dh;
    const T* q = Y5 + (bh / H) * L * ld + (bh % H) * dh;
    for (int j = 0; j < 3; ++j) prefetch_rows<Write>(q + j * H * dh, L, dh, ld);
}

// Y5 (B, L, 3, H, dh) holds q, k, v of every head; out (B, L, H, dh); P (B, H, L, L).
// Rows of P are the masked, scaled softmax of q k^T (mask through element strides, as
// attn_softmax); `split`: the heads shared between the pool's threads.
template <typename T>
static void self_attn_fwd(T* out, T* P, const T* Y5, const bool* keep, long long B, long long L,
                          long long H, long long dh, long long sb, long long sh, long long sq,
                          long long sk, int causal, T scale, int split) {
    const long long ld = 3 * H * dh, ldo = H * dh;
    parallel_for(B * H, B * H * L * L, [=](long long h0, long long h1) {
        T* kt = scratch<T>(0, dh * L);
        for (long long bh = h0; bh < h1; ++bh) {
            const long long b = bh / H, h = bh % H;
            const T* q = Y5 + b * L * ld + h * dh;
            T* p = P + bh * L * L;
            if (bh + 1 < h1) {
                const long long n = bh + 1;
                prefetch_qkv(Y5, n, L, H, dh);
                prefetch_rows<1>(P + n * L * L, 1, L * L, 0);
                prefetch_rows<1>(out + (n / H) * L * ldo + (n % H) * dh, L, dh, ldo);
            }
            head_transposed<T>(kt, q + H * dh, L, dh, ld);
            blas_gemm<T>(false, L, L, dh, q, ld, kt, L, p, L);
            for (long long i = 0; i < L; ++i) {
                const bool* kr = keep ? keep + b * sb + h * sh + i * sq : nullptr;
                attn_row_fwd<T, false>(p + i * L, p + i * L, kr, sk, L, causal ? i : L - 1, scale);
            }
            blas_gemm<T>(false, L, dh, L, p, L, q + 2 * H * dh, ld, out + b * L * ldo + h * dh, ldo);
        }
    }, split ? 0 : kSerial);
}

// dY5 (B, L, 3, H, dh): dq, dk, dv of every head from dO (B, L, H, dh) and the weights P.
template <typename T>
static void self_attn_bwd(T* dY5, const T* dO, const T* P, const T* Y5, long long B, long long L,
                          long long H, long long dh, T scale, int split) {
    const long long ld = 3 * H * dh, ldo = H * dh;
    parallel_for(B * H, B * H * L * L, [=](long long h0, long long h1) {
        T* vt = scratch<T>(0, dh * L);
        T* dS = scratch<T>(1, L * L);
        for (long long bh = h0; bh < h1; ++bh) {
            const long long b = bh / H, h = bh % H;
            const T *q = Y5 + b * L * ld + h * dh, *k = q + H * dh, *p = P + bh * L * L;
            const T* g = dO + b * L * ldo + h * dh;
            T* dq = dY5 + b * L * ld + h * dh;
            if (bh + 1 < h1) {
                const long long n = bh + 1;
                prefetch_qkv(Y5, n, L, H, dh);
                prefetch_qkv<1>(dY5, n, L, H, dh);
                prefetch_rows(dO + (n / H) * L * ldo + (n % H) * dh, L, dh, ldo);
                prefetch_rows(P + n * L * L, 1, L * L, 0);
            }
            head_transposed<T>(vt, k + H * dh, L, dh, ld);
            blas_gemm<T>(false, L, L, dh, g, ldo, vt, L, dS, L);  // dP
            for (long long i = 0; i < L; ++i)
                attn_row_dscores<T>(dS + i * L, dS + i * L, p + i * L, L, scale);
            blas_gemm<T>(true, L, dh, L, p, L, g, ldo, dq + 2 * H * dh, ld);  // dV = P^T dO
            blas_gemm<T>(false, L, dh, L, dS, L, k, ld, dq, ld);              // dQ = dS K
            blas_gemm<T>(true, L, dh, L, dS, L, q, ld, dq + H * dh, ld);      // dK = dS^T Q
        }
    }, split ? 0 : kSerial);
}

// C (M, N) = op(A) @ op(B) with its rows split between the pool's threads, each a BLAS
// call on one thread (the caller holds OpenBLAS at one thread).
template <typename T>
static void pool_gemm(T* C, const T* A, const T* B, long long M, long long N, long long K,
                      int ta, int tb, long long lda, long long ldb) {
    parallel_for(M, M * N * K, [=](long long r0, long long r1) {
        blas_gemm<T>(ta, r1 - r0, N, K, ta ? A + r0 : A + r0 * lda, lda, B, ldb, C + r0 * N, N,
                     tb);
    }, 0);
}

extern "C" void gpunet_host_set_spin(long long us) { Pool::set_spin(us); }

extern "C" void gpunet_set_blas(void* sgemm, void* dgemm, int wide) {
    g_blas_wide.store(wide, std::memory_order_relaxed);
    g_sgemm.store(sgemm, std::memory_order_release);
    g_dgemm.store(dgemm, std::memory_order_release);
}

// Blocks of query rows for long sequences (gpunet/backend/_attention_ops.py): score
// rows r = (b, h, i) of S (rows, n) hold queries q0 + i; keep is the whole mask.
struct AttnBlock {
    const bool* keep;
    long long nr, n, H, sb, sh, sq, sk, q0;
    int causal;
    const bool* row(long long r) const {
        const long long bh = r / nr, q = q0 + r % nr;
        return keep ? keep + (bh / H) * sb + (bh % H) * sh + q * sq : nullptr;
    }
    long long last(long long r) const { return causal ? q0 + r % nr : n - 1; }
};

// P and lse of each block row (the forward).
template <typename T>
static void attn_block_fwd(T* P, T* lse, const T* S, long long rows, AttnBlock a, T scale,
                           int serial) {
    parallel_for(rows, rows * a.n, [&](long long r0, long long r1) {
        for (long long r = r0; r < r1; ++r)
            lse[r] = attn_row_fwd<T>(P + r * a.n, S + r * a.n, a.row(r), a.sk, a.n, a.last(r),
                                     scale);
    }, serial ? kSerial : kParallelMin);
}

// P recomputed from lse, and dS = scale * P * (dP - Dsum), in one pass (the backward).
template <typename T>
static void attn_block_bwd(T* P, T* dS, const T* S, const T* dP, const T* lse, const T* Dsum,
                           long long rows, AttnBlock a, T scale, int serial) {
    parallel_for(rows, rows * a.n, [&](long long r0, long long r1) {
        for (long long r = r0; r < r1; ++r) {
            const long long o = r * a.n;
            attn_row_bwd<T>(P + o, dS + o, S + o, dP + o, lse[r], Dsum[r], a.row(r), a.sk, a.n,
                            a.last(r), scale);
        }
    }, serial ? kSerial : kParallelMin);
}

// Layer norm over rows of C (gpunet/backend/_norm_ops.py): Y = Xhat * g + b, with
// Xhat and each row's inverse standard deviation kept for the backward; rows [r0, r1).
// With R (a post-norm block's residual), of the rows of X + R: the sum goes to Xhat's
// row first and is normalized there, never stored as an array of its own.
template <typename T>
static void layernorm_row(T* y, T* h, T* inv, const T* x, const T* res, const T* g, const T* b,
                          long long C, T eps) {
    if (res) {
#pragma omp simd
        for (long long j = 0; j < C; ++j) h[j] = x[j] + res[j];
        x = h;
    }
    T s = T(0), v = T(0);
#pragma omp simd reduction(+ : s)
    for (long long j = 0; j < C; ++j) s += x[j];
    const T mean = s / T(C);
#pragma omp simd reduction(+ : v)
    for (long long j = 0; j < C; ++j) v += (x[j] - mean) * (x[j] - mean);
    const T is = T(1) / gpunet::sqrt_(v / T(C) + eps);
#pragma omp simd
    for (long long j = 0; j < C; ++j) {
        const T xh = (x[j] - mean) * is;
        h[j] = xh;
        y[j] = xh * g[j] + b[j];
    }
    *inv = is;
}

// Four rows at once: their sums are four independent chains, where one row's adds
// waited on each other (2048 rows of 128: 98 us a row at a time, 78 four at a time).
template <typename T>
static void layernorm_4rows(T* Y, T* Xhat, T* inv, const T* X, const T* R, const T* g,
                            const T* b, long long C, T eps) {
    const T* x[4];
    for (int k = 0; k < 4; ++k) {
        x[k] = X + k * C;
        if (R) {
            T* h = Xhat + k * C;
            const T* res = R + k * C;
#pragma omp simd
            for (long long j = 0; j < C; ++j) h[j] = x[k][j] + res[j];
            x[k] = h;
        }
    }
    const T *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    T s0 = T(0), s1 = T(0), s2 = T(0), s3 = T(0);
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (long long j = 0; j < C; ++j) s0 += x0[j], s1 += x1[j], s2 += x2[j], s3 += x3[j];
    const T m0 = s0 / T(C), m1 = s1 / T(C), m2 = s2 / T(C), m3 = s3 / T(C);
    T v0 = T(0), v1 = T(0), v2 = T(0), v3 = T(0);
#pragma omp simd reduction(+ : v0, v1, v2, v3)
    for (long long j = 0; j < C; ++j) {
        v0 += (x0[j] - m0) * (x0[j] - m0), v1 += (x1[j] - m1) * (x1[j] - m1);
        v2 += (x2[j] - m2) * (x2[j] - m2), v3 += (x3[j] - m3) * (x3[j] - m3);
    }
    const T mean[4] = {m0, m1, m2, m3}, var[4] = {v0, v1, v2, v3};
    for (int k = 0; k < 4; ++k) {
        const T is = T(1) / gpunet::sqrt_(var[k] / T(C) + eps), mu = mean[k];
        const T* xr = x[k];
        T *y = Y + k * C, *h = Xhat + k * C;
#pragma omp simd
        for (long long j = 0; j < C; ++j) {
            const T xh = (xr[j] - mu) * is;
            h[j] = xh;
            y[j] = xh * g[j] + b[j];
        }
        inv[k] = is;
    }
}

template <typename T>
static void layernorm_rows(T* Y, T* Xhat, T* inv, const T* X, const T* R, const T* g,
                           const T* b, long long r0, long long r1, long long C, T eps) {
    long long r = r0;
    for (; r + 4 <= r1; r += 4)
        layernorm_4rows<T>(Y + r * C, Xhat + r * C, inv + r, X + r * C, R ? R + r * C : nullptr,
                           g, b, C, eps);
    for (; r < r1; ++r)
        layernorm_row<T>(Y + r * C, Xhat + r * C, inv + r, X + r * C, R ? R + r * C : nullptr,
                         g, b, C, eps);
}

template <typename T>
static void layernorm(T* Y, T* Xhat, T* inv, const T* X, const T* R, const T* g, const T* b,
                      long long R_, long long C, T eps) {
    parallel_for(R_, R_ * C, [=](long long r0, long long r1) {
        layernorm_rows<T>(Y, Xhat, inv, X, R, g, b, r0, r1, C, eps);
    });
}

// dX = inv * (dXhat - mean(dXhat) - Xhat * mean(dXhat * Xhat)), dXhat = dY * g, of rows
// [r0, r1); with acc, also adds the affine's gradients sum(dY * Xhat) and sum(dY) into
// acc[0, C) and acc[C, 2C). A function of its own: inside the pool's lambda, whose
// captures it read by reference, GCC turned the row sums into gathers (2x the time).
// (Four rows at once, as the forward, measured no faster here.)
template <typename T>
static void layernorm_bwd_rows(T* dX, T* acc, const T* dY, const T* Xhat, const T* inv,
                               const T* g, long long r0, long long r1, long long C) {
    for (long long r = r0; r < r1; ++r) {
        const T *dy = dY + r * C, *h = Xhat + r * C;
        T* dx = dX + r * C;
        T m1 = T(0), m2 = T(0);
#pragma omp simd reduction(+ : m1, m2)
        for (long long j = 0; j < C; ++j) {
            const T d = dy[j] * g[j];
            m1 += d;
            m2 += d * h[j];
        }
        m1 /= T(C);
        m2 /= T(C);
        const T is = inv[r];
#pragma omp simd
        for (long long j = 0; j < C; ++j) dx[j] = is * (dy[j] * g[j] - m1 - h[j] * m2);
        if (acc) {
#pragma omp simd
            for (long long j = 0; j < C; ++j) {
                acc[j] += dy[j] * h[j];
                acc[C + j] += dy[j];
            }
        }
    }
}

// Layer norm's backward; with dg and db given, their per-chunk partial sums are combined
// in chunk order (deterministic, as act_bwd's bias sum).
template <typename T>
static void layernorm_bwd(T* dX, T* dg, T* db, const T* dY, const T* Xhat, const T* inv,
                          const T* g, long long R, long long C) {
    const bool affine = dg && db;
    std::vector<T> sums(affine ? (size_t)2 * C : 0);  // sum(dY * Xhat), then sum(dY)
    rows_summed<T>(R, R * C, affine ? sums.data() : nullptr, 2 * C,
                   [=](long long r0, long long r1, T* acc) {
                       layernorm_bwd_rows<T>(dX, acc, dY, Xhat, inv, g, r0, r1, C);
                   });
    for (long long j = 0; affine && j < C; ++j) dg[j] = sums[j], db[j] = sums[C + j];
}

// Optimizers, in place over flat buffers. 1 - beta arrives computed in double and
// rounded once, as the NumPy reference does.
template <typename T>
static void adam(T* P, const T* G, T* M, T* V, long long n, T lr_t, T b1, T omb1, T b2, T omb2,
                 T eps, T keep) {
    parallel_for(n, n, [&](long long a, long long b) {
#pragma omp simd
        for (long long i = a; i < b; ++i) {
            T p = P[i], m = M[i], v = V[i];
            gpunet::adam_step<T>(p, m, v, G[i], lr_t, b1, omb1, b2, omb2, eps, keep);
            P[i] = p, M[i] = m, V[i] = v;
        }
    }, kParallelMinOptimizer);
}

template <typename T>
static void sgd(T* P, const T* G, T* Vel, long long n, T lr, T mu, T ga, T gs, int nesterov,
                T keep) {
    const bool nest = nesterov != 0;
    parallel_for(n, n, [&](long long a, long long b) {
        if (Vel) {
#pragma omp simd
            for (long long i = a; i < b; ++i) {
                T p = P[i], v = Vel[i];
                gpunet::sgd_momentum_step<T>(p, v, G[i], ga, gs, mu, nest, keep);
                P[i] = p, Vel[i] = v;
            }
        } else {
#pragma omp simd
            for (long long i = a; i < b; ++i) P[i] = gpunet::sgd_step<T>(P[i], G[i], lr, keep);
        }
    }, kParallelMinOptimizer);
}

// Recurrent cells, one time step, over row ranges (the element math is rnn.cuh's);
// f(b, j, masked, mb) with the row's mask hoisted out of the unit-stride loop over j
template <typename T, typename F>
static void cell_rows(long long B, long long U, long long work, const T* m, const F f) {
    parallel_for(B, work, [&](long long r0, long long r1) {
        for (long long b = r0; b < r1; ++b) {
            const bool masked = m != nullptr;
            const T mb = masked ? m[b] : T(1);
#pragma omp simd
            for (long long j = 0; j < U; ++j) f(b, j, masked, mb);
        }
    });
}

template <typename T>
static T* row(T* A, long long b, long long w) { return A ? A + b * w : A; }

template <typename T>
static void lstm_step(T* h, T* c, const T* Z, const T* cp, const T* hp, const T* m, long long B,
                      long long U) {
    cell_rows<T>(B, U, B * U * 4, m, [=](long long b, long long j, bool masked, T mb) {
        gpunet::lstm_step_at<T, T>(j, U, h + b * U, c + b * U, Z + b * 4 * U, cp + b * U,
                                   row(hp, b, U), masked, mb);
    });
}

// The whole-sequence loop's LSTM step: lstm_step with the recurrent product R added
// into Z first, leaving the gates' activations in Z in place of the pre-activations,
// so that its backward, lstm_backward_act, reads them instead of recomputing 3
// sigmoids and a tanh per element
template <typename T>
static void lstm_step_keep(T* h, T* c, T* Z, const T* R, const T* cp, const T* hp, const T* m,
                           long long B, long long U) {
    cell_rows<T>(B, U, B * U * 4, m, [=](long long b, long long j, bool masked, T mb) {
        T* z = Z + b * 4 * U;
        const T* r = R + b * 4 * U;
        for (int g = 0; g < 4; ++g) z[g * U + j] += r[g * U + j];
        const gpunet::LstmGates<T> a = gpunet::lstm_gates<T, T>(j, U, z);
        z[j] = a.i;
        z[U + j] = a.f;
        z[2 * U + j] = a.g;
        z[3 * U + j] = a.o;
        gpunet::lstm_state_at<T, T>(j, h + b * U, c + b * U, a, cp + b * U, row(hp, b, U),
                                    masked, mb);
    });
}

// lstm_backward from the gates lstm_step_keep left in A (dZ may be A: in place)
template <typename T>
static void lstm_backward_act(T* dZ, T* dcp, T* carry, const T* dh, const T* dc, const T* A,
                              const T* cp, const T* m, long long B, long long U) {
    cell_rows<T>(B, U, B * U * 4, m, [=](long long b, long long j, bool masked, T mb) {
        const T* a = A + b * 4 * U;
        const gpunet::LstmGates<T> g{a[j], a[U + j], a[2 * U + j], a[3 * U + j]};
        gpunet::lstm_backward_gates_at<T, T>(j, U, dZ + b * 4 * U, dcp + b * U,
                                             row(carry, b, U), dh + b * U, row(dc, b, U), g,
                                             cp + b * U, masked, mb);
    });
}

template <typename T>
static void lstm_backward(T* dZ, T* dcp, T* carry, const T* dh, const T* dc, const T* Z,
                          const T* cp, const T* m, long long B, long long U) {
    cell_rows<T>(B, U, B * U * 4, m, [=](long long b, long long j, bool masked, T mb) {
        gpunet::lstm_backward_at<T, T>(j, U, dZ + b * 4 * U, dcp + b * U, row(carry, b, U),
                                       dh + b * U, row(dc, b, U), Z + b * 4 * U, cp + b * U,
                                       masked, mb);
    });
}

template <typename T>
static void gru_step(T* h, const T* Zx, const T* Zh, const T* hp, const T* m, long long B,
                     long long U) {
    cell_rows<T>(B, U, B * U * 3, m, [=](long long b, long long j, bool masked, T mb) {
        gpunet::gru_step_at<T, T>(j, U, h + b * U, Zx + b * 3 * U, row(Zh, b, 3 * U),
                                  hp + b * U, masked, mb);
    });
}

// Zh's null test is hoisted out of the unit loop: inside it, GCC 12 left the loop
// scalar (its conditional loads), 6x slower than the LSTM's
template <typename T>
static void gru_backward(T* dZx, T* dZh, T* dhp, const T* dh, const T* Zx, const T* Zh,
                         const T* hp, const T* m, long long B, long long U) {
    if (Zh == nullptr) {
        cell_rows<T>(B, U, B * U * 3, m, [=](long long b, long long j, bool masked, T mb) {
            gpunet::gru_backward_at<T, T>(j, U, dZx + b * 3 * U, (T*)nullptr, dhp + b * U,
                                          dh + b * U, Zx + b * 3 * U, (const T*)nullptr,
                                          hp + b * U, masked, mb);
        });
        return;
    }
    cell_rows<T>(B, U, B * U * 3, m, [=](long long b, long long j, bool masked, T mb) {
        T* dzh = dZh + b * 3 * U;
        const T* zh = Zh + b * 3 * U;
        if (dzh == nullptr || zh == nullptr) __builtin_unreachable();
        gpunet::gru_backward_at<T, T>(j, U, dZx + b * 3 * U, dzh, dhp + b * U, dh + b * U,
                                      Zx + b * 3 * U, zh, hp + b * U, masked, mb);
    });
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
    extern "C" void gpunet_sq_err_##S(T* G, double* total, const T* P, const T* Y, long long n,  \
                                      double scale) {                                            \
        sq_err<T>(G, total, P, Y, n, T(scale));                                                  \
    }                                                                                            \
    extern "C" void gpunet_adam_##S(T* P, const T* G, T* M, T* V, long long n, double lr_t,      \
                                    double b1, double b2, double eps, double keep) {             \
        adam<T>(P, G, M, V, n, T(lr_t), T(b1), T(1.0 - b1), T(b2), T(1.0 - b2), T(eps), T(keep)); \
    }                                                                                            \
    extern "C" void gpunet_sgd_##S(T* P, const T* G, T* Vel, long long n, double lr, double mu,  \
                                   double a, double s, int nesterov, double keep) {              \
        sgd<T>(P, G, Vel, n, T(lr), T(mu), T(a), T(s), nesterov, T(keep));                       \
    }                                                                                            \
    extern "C" void gpunet_lstm_step_##S(T* h, T* c, const T* Z, const T* cp, const T* hp,      \
                                         const T* m, long long B, long long U) {                 \
        lstm_step<T>(h, c, Z, cp, hp, m, B, U);                                                  \
    }                                                                                            \
    extern "C" void gpunet_lstm_backward_##S(T* dZ, T* dcp, T* carry, const T* dh, const T* dc, \
                                             const T* Z, const T* cp, const T* m, long long B,   \
                                             long long U) {                                      \
        lstm_backward<T>(dZ, dcp, carry, dh, dc, Z, cp, m, B, U);                                \
    }                                                                                            \
    extern "C" void gpunet_lstm_step_keep_##S(T* h, T* c, T* Z, const T* R, const T* cp,        \
                                              const T* hp, const T* m, long long B,              \
                                              long long U) {                                     \
        lstm_step_keep<T>(h, c, Z, R, cp, hp, m, B, U);                                          \
    }                                                                                            \
    extern "C" void gpunet_lstm_backward_act_##S(T* dZ, T* dcp, T* carry, const T* dh,          \
                                                 const T* dc, const T* A, const T* cp,           \
                                                 const T* m, long long B, long long U) {         \
        lstm_backward_act<T>(dZ, dcp, carry, dh, dc, A, cp, m, B, U);                            \
    }                                                                                            \
    extern "C" void gpunet_gru_step_##S(T* h, const T* Zx, const T* Zh, const T* hp,            \
                                        const T* m, long long B, long long U) {                  \
        gru_step<T>(h, Zx, Zh, hp, m, B, U);                                                     \
    }                                                                                            \
    extern "C" void gpunet_gru_backward_##S(T* dZx, T* dZh, T* dhp, const T* dh, const T* Zx,   \
                                            const T* Zh, const T* hp, const T* m, long long B,   \
                                            long long U) {                                       \
        gru_backward<T>(dZx, dZh, dhp, dh, Zx, Zh, hp, m, B, U);                                 \
    }                                                                                            \
    extern "C" void gpunet_attn_softmax_##S(T* P, const T* S, const bool* keep, long long rows,  \
                                            long long Tq, long long Tk, long long H,             \
                                            long long sb, long long sh, long long sq,            \
                                            long long sk, int causal, double scale) {            \
        attn_softmax<T>(P, S, keep, rows, Tq, Tk, H, sb, sh, sq, sk, causal, T(scale));          \
    }                                                                                            \
    extern "C" void gpunet_attn_softmax_bwd_##S(T* dS, const T* dP, const T* P, long long rows,  \
                                                long long Tk, double scale) {                    \
        attn_softmax_bwd<T>(dS, dP, P, rows, Tk, T(scale));                                      \
    }                                                                                            \
    extern "C" void gpunet_pool_gemm_##S(T* C, const T* A, const T* B, long long M, long long N,  \
                                         long long K, int ta, int tb, long long lda,             \
                                         long long ldb) {                                        \
        pool_gemm<T>(C, A, B, M, N, K, ta, tb, lda, ldb);                                        \
    }                                                                                            \
    extern "C" void gpunet_self_attn_fwd_##S(T* out, T* P, const T* Y5, const bool* keep,        \
                                             long long B, long long L, long long H, long long dh, \
                                             long long sb, long long sh, long long sq,           \
                                             long long sk, int causal, double scale, int split) { \
        self_attn_fwd<T>(out, P, Y5, keep, B, L, H, dh, sb, sh, sq, sk, causal, T(scale), split); \
    }                                                                                            \
    extern "C" void gpunet_self_attn_bwd_##S(T* dY5, const T* dO, const T* P, const T* Y5,       \
                                             long long B, long long L, long long H, long long dh, \
                                             double scale, int split) {                          \
        self_attn_bwd<T>(dY5, dO, P, Y5, B, L, H, dh, T(scale), split);                          \
    }                                                                                            \
    extern "C" void gpunet_layernorm_##S(T* Y, T* Xhat, T* inv, const T* X, const T* res,       \
                                         const T* g, const T* b, long long R, long long C,       \
                                         double eps) {                                           \
        layernorm<T>(Y, Xhat, inv, X, res, g, b, R, C, T(eps));                                  \
    }                                                                                            \
    extern "C" void gpunet_layernorm_bwd_##S(T* dX, T* dg, T* db, const T* dY, const T* Xhat,    \
                                             const T* inv, const T* g, long long R,              \
                                             long long C) {                                      \
        layernorm_bwd<T>(dX, dg, db, dY, Xhat, inv, g, R, C);                                    \
    }                                                                                            \
    extern "C" void gpunet_attn_block_fwd_##S(T* P, T* lse, const T* S, const bool* keep,        \
                                              long long rows, long long nr, long long n,         \
                                              long long H, long long sb, long long sh,           \
                                              long long sq, long long sk, long long q0,          \
                                              int causal, double scale, int serial) {            \
        attn_block_fwd<T>(P, lse, S, rows, AttnBlock{keep, nr, n, H, sb, sh, sq, sk, q0, causal}, \
                          T(scale), serial);                                                     \
    }                                                                                            \
    extern "C" void gpunet_attn_block_bwd_##S(T* P, T* dS, const T* S, const T* dP,              \
                                              const T* lse, const T* Dsum, const bool* keep,     \
                                              long long rows, long long nr, long long n,         \
                                              long long H, long long sb, long long sh,           \
                                              long long sq, long long sk, long long q0,          \
                                              int causal, double scale, int serial) {            \
        attn_block_bwd<T>(P, dS, S, dP, lse, Dsum, rows,                                         \
                          AttnBlock{keep, nr, n, H, sb, sh, sq, sk, q0, causal}, T(scale),       \
                          serial);                                                               \
    }

GPUNET_HOST_API(float, f32)
GPUNET_HOST_API(double, f64)

// -- pooling, NHWC (pool.cuh: geometry, window index k, NaN rule) -------------------------
// The forward loops run over output rows (b, oh), the backward ones over input rows
// (b, h): each row gathers from the windows that cover it, so threads write disjoint
// rows at any stride. Within a row the loops go tap by tap (di, dj), each over every
// output column it reaches and the C contiguous channels, accumulating into the row
// itself (a few KB, in L1): looping the taps inside each output pixel instead ran
// short C-long loops whose overhead made it ~2x slower at C = 32.
// output rows r0..r1. A function of its own, sizes by value and pointers restrict:
// inside parallel_for's lambda the sizes were reloaded through its captures (1.1 ms
// vs 0.85 ms for LeNet's first pool)
template <typename T>
static void max_pool2d_rows(T* __restrict Y, int* __restrict A, const T* __restrict X,
                            long long r0, long long r1, long long H, long long W, long long C,
                            long long OH, long long OW, long long KH, long long KW, long long SH,
                            long long SW, long long PT, long long PL) {
    const T ninf = gpunet::neg_inf<T>();
    for (long long r = r0; r < r1; ++r) {
        const long long b = r / OH, h0 = gpunet::pool_start(r % OH, SH, PT);
        T* y = Y + r * OW * C;
        int* a = A + r * OW * C;
        for (long long i = 0; i < OW * C; ++i) y[i] = ninf, a[i] = 0;
        for (long long di = 0; di < KH; ++di) {
            const long long h = h0 + di;
            if (h < 0 || h >= H) continue;  // padding: -inf, never taken
            for (long long dj = 0; dj < KW; ++dj) {
                const int k = int(di * KW + dj);
                long long lo, hi;
                gpunet::pool_tap_outputs(dj, SW, PL, W, OW, lo, hi);
                for (long long ow = lo; ow < hi; ++ow) {
                    const T* x = X + ((b * H + h) * W + ow * SW - PL + dj) * C;
                    T* yo = y + ow * C;
                    int* ao = a + ow * C;
#pragma omp simd
                    for (long long c = 0; c < C; ++c) {
                        const T v = x[c];
                        const bool take = gpunet::max_takes(v, yo[c]);
                        yo[c] = take ? v : yo[c];
                        ao[c] = take ? k : ao[c];
                    }
                }
            }
        }
    }
}

template <typename T>
static void max_pool2d(T* Y, int* A, const T* X, long long B, long long H, long long W,
                       long long C, long long OH, long long OW, long long KH, long long KW,
                       long long SH, long long SW, long long PT, long long PL) {
    parallel_for(B * OH, B * H * W * C, [&](long long r0, long long r1) {
        max_pool2d_rows<T>(Y, A, X, r0, r1, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL);
    });
}

// the input rows r0..r1 of dX: for each window (oh, ow) and tap k over the row,
// g(dX row + w*C, output element offset of (oh, ow), k, oh, ow) adds into dX
template <typename T, typename G>
static void pool2d_bwd_rows(T* dX, long long r0, long long r1, long long H, long long W,
                            long long C, long long OH, long long OW, long long KH, long long KW,
                            long long SH, long long SW, long long PT, long long PL, G g) {
    for (long long r = r0; r < r1; ++r) {
        const long long b = r / H, h = r % H;
        T* dx = dX + r * W * C;
        for (long long i = 0; i < W * C; ++i) dx[i] = T(0);
        long long oh0, oh1;
        gpunet::pool_cover(h, KH, SH, PT, OH, oh0, oh1);
        for (long long oh = oh0; oh < oh1; ++oh) {
            const long long di = h - gpunet::pool_start(oh, SH, PT);
            for (long long dj = 0; dj < KW; ++dj) {
                const int k = int(di * KW + dj);
                long long lo, hi;
                gpunet::pool_tap_outputs(dj, SW, PL, W, OW, lo, hi);
                for (long long ow = lo; ow < hi; ++ow)
                    g(dx + (ow * SW - PL + dj) * C, ((b * OH + oh) * OW + ow) * C, k, oh, ow);
            }
        }
    }
}

template <typename T>
static void backprop_max_pool2d(T* dX, const T* dY, const int* A, long long B, long long H,
                                long long W, long long C, long long OH, long long OW,
                                long long KH, long long KW, long long SH, long long SW,
                                long long PT, long long PL) {
    parallel_for(B * H, B * H * W * C, [&](long long r0, long long r1) {
        pool2d_bwd_rows<T>(dX, r0, r1, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL,
                           [&](T* dx, long long o, int k, long long, long long) {
                               const T* dy = dY + o;
                               const int* a = A + o;
#pragma omp simd
                               for (long long c = 0; c < C; ++c)  // a select: NaN stays put
                                   dx[c] += a[c] == k ? dy[c] : T(0);
                           });
    });
}

template <typename T>
static void avg_pool2d(T* Y, const T* X, long long B, long long H, long long W, long long C,
                       long long OH, long long OW, long long KH, long long KW, long long SH,
                       long long SW, long long PT, long long PL, int include_pad) {
    parallel_for(B * OH, B * H * W * C, [&](long long r0, long long r1) {
        for (long long r = r0; r < r1; ++r) {
            const long long b = r / OH, oh = r % OH, h0 = gpunet::pool_start(oh, SH, PT);
            T* y = Y + r * OW * C;
            for (long long i = 0; i < OW * C; ++i) y[i] = T(0);
            for (long long di = 0; di < KH; ++di) {
                const long long h = h0 + di;
                if (h < 0 || h >= H) continue;  // padding: zeros
                for (long long dj = 0; dj < KW; ++dj) {
                    long long lo, hi;
                    gpunet::pool_tap_outputs(dj, SW, PL, W, OW, lo, hi);
                    for (long long ow = lo; ow < hi; ++ow) {
                        const T* x = X + ((b * H + h) * W + ow * SW - PL + dj) * C;
                        T* yo = y + ow * C;
#pragma omp simd
                        for (long long c = 0; c < C; ++c) yo[c] += x[c];
                    }
                }
            }
            for (long long ow = 0; ow < OW; ++ow) {
                const T n = T(gpunet::pool_count(oh, ow, H, W, KH, KW, SH, SW, PT, PL,
                                                 include_pad));
                T* yo = y + ow * C;
#pragma omp simd
                for (long long c = 0; c < C; ++c) yo[c] /= n;
            }
        }
    });
}

template <typename T>
static void backprop_avg_pool2d(T* dX, const T* dY, long long B, long long H, long long W,
                                long long C, long long OH, long long OW, long long KH,
                                long long KW, long long SH, long long SW, long long PT,
                                long long PL, int include_pad) {
    parallel_for(B * H, B * H * W * C, [&](long long r0, long long r1) {
        pool2d_bwd_rows<T>(dX, r0, r1, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL,
                           [&](T* dx, long long o, int, long long oh, long long ow) {
                               const T n = T(gpunet::pool_count(oh, ow, H, W, KH, KW, SH, SW,
                                                                PT, PL, include_pad));
                               const T* dy = dY + o;
#pragma omp simd
                               for (long long c = 0; c < C; ++c) dx[c] += dy[c] / n;
                           });
    });
}

#define GPUNET_POOL_GEOMETRY                                                                     \
    long long B, long long H, long long W, long long C, long long OH, long long OW, long long KH, \
        long long KW, long long SH, long long SW, long long PT, long long PL
#define GPUNET_POOL_ARGS B, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL
#define GPUNET_HOST_POOL_API(T, S)                                                               \
    extern "C" void gpunet_max_pool2d_##S(T* Y, int* A, const T* X, GPUNET_POOL_GEOMETRY) {      \
        max_pool2d<T>(Y, A, X, GPUNET_POOL_ARGS);                                                \
    }                                                                                            \
    extern "C" void gpunet_backprop_max_pool2d_##S(T* dX, const T* dY, const int* A,             \
                                                   GPUNET_POOL_GEOMETRY) {                       \
        backprop_max_pool2d<T>(dX, dY, A, GPUNET_POOL_ARGS);                                     \
    }                                                                                            \
    extern "C" void gpunet_avg_pool2d_##S(T* Y, const T* X, GPUNET_POOL_GEOMETRY, int incl) {    \
        avg_pool2d<T>(Y, X, GPUNET_POOL_ARGS, incl);                                             \
    }                                                                                            \
    extern "C" void gpunet_backprop_avg_pool2d_##S(T* dX, const T* dY, GPUNET_POOL_GEOMETRY,     \
                                                   int incl) {                                   \
        backprop_avg_pool2d<T>(dX, dY, GPUNET_POOL_ARGS, incl);                                  \
    }

GPUNET_HOST_POOL_API(float, f32)
GPUNET_HOST_POOL_API(double, f64)

extern "C" int gpunet_host_threads(void) { return pool().size(); }
extern "C" void gpunet_host_set_threads(int n) { pool().resize(n); }

// -- convolution: im2col / col2im over NHWC (index math of conv.cuh) ------------------
// The pool splits rows of pixels (n, h); channels are contiguous in both arrays, so
// the inner loops are plain copies and adds that vectorize, and with dilation 1 the
// kw taps of one pixel are one contiguous run of kw*C inputs. col2im gathers per
// input pixel, with the output index of each (h, tap) and (w, tap) looked up in
// tables (no division per element): threads never share an output element and the
// sums run in the reference's order, taps (i, j).
template <typename T>
static void im2col(T* cols, const T* X, const gpunet::ConvGeo& g) {
    const long long C = g.C, KC = g.kh * g.kw * C, rows = g.N * g.Ho;
    parallel_for(rows, rows * g.Wo * KC, [&](long long r0, long long r1) {
        for (long long r = r0; r < r1; ++r) {
            const long long n = r / g.Ho, ho = r % g.Ho;
            for (long long wo = 0; wo < g.Wo; ++wo) {
                T* out = cols + (r * g.Wo + wo) * KC;
                const long long w0 = wo * g.sw - g.pl;
                const bool run = g.dw == 1 && w0 >= 0 && w0 + g.kw <= g.W;
                for (long long i = 0; i < g.kh; ++i, out += g.kw * C) {
                    const long long p0 = gpunet::conv_src_pixel(g, n, ho, wo, i, 0);
                    if (run && p0 >= 0) {  // the whole row of taps inside the input
                        const T* src = X + p0 * C;
#pragma omp simd
                        for (long long c = 0; c < g.kw * C; ++c) out[c] = src[c];
                        continue;
                    }
                    for (long long j = 0; j < g.kw; ++j) {
                        const long long p = gpunet::conv_src_pixel(g, n, ho, wo, i, j);
                        T* o = out + j * C;
                        if (p < 0) {
                            for (long long c = 0; c < C; ++c) o[c] = T(0);
                        } else {
                            const T* src = X + p * C;
#pragma omp simd
                            for (long long c = 0; c < C; ++c) o[c] = src[c];
                        }
                    }
                }
            }
        }
    });
}

template <typename T>
static void col2im(T* dX, const T* dcols, const gpunet::ConvGeo& g) {
    const long long C = g.C, K = g.kh * g.kw, rows = g.N * g.H;
    std::vector<long long> ho_of((size_t)(g.H * g.kh)), wo_of((size_t)(g.W * g.kw));
    for (long long h = 0; h < g.H; ++h)
        for (long long i = 0; i < g.kh; ++i)
            ho_of[h * g.kh + i] = gpunet::conv_out_index(h, g.pt, i, g.dh, g.sh, g.Ho);
    for (long long w = 0; w < g.W; ++w)
        for (long long j = 0; j < g.kw; ++j)
            wo_of[w * g.kw + j] = gpunet::conv_out_index(w, g.pl, j, g.dw, g.sw, g.Wo);
    parallel_for(rows, rows * g.W * K * C, [&](long long r0, long long r1) {
        for (long long r = r0; r < r1; ++r) {
            const long long n = r / g.H, h = r % g.H;
            T* out = dX + r * g.W * C;  // the row of W pixels, C channels each
            for (long long e = 0; e < g.W * C; ++e) out[e] = T(0);
            for (long long i = 0; i < g.kh; ++i) {
                const long long ho = ho_of[h * g.kh + i];
                if (ho < 0) continue;
                // the column rows of output row ho: Wo pixels of K taps of C channels
                const T* block = dcols + (n * g.Ho + ho) * g.Wo * K * C;
                for (long long j = 0; j < g.kw; ++j) {
                    for (long long w = 0; w < g.W; ++w) {
                        const long long wo = wo_of[w * g.kw + j];
                        if (wo < 0) continue;
                        const T* src = block + (wo * K + i * g.kw + j) * C;
                        T* o = out + w * C;
#pragma omp simd
                        for (long long c = 0; c < C; ++c) o[c] += src[c];
                    }
                }
            }
        }
    });
}

#define GPUNET_HOST_CONV_API(T, S)                                                            \
    extern "C" void gpunet_im2col_##S(T* cols, const T* X, long long N, long long H,          \
                                      long long W, long long C, long long Ho, long long Wo,   \
                                      long long kh, long long kw, long long sh, long long sw, \
                                      long long pt, long long pl, long long dh, long long dw) { \
        im2col<T>(cols, X, {N, H, W, C, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw});             \
    }                                                                                         \
    extern "C" void gpunet_col2im_##S(T* dX, const T* dcols, long long N, long long H,        \
                                      long long W, long long C, long long Ho, long long Wo,   \
                                      long long kh, long long kw, long long sh, long long sw, \
                                      long long pt, long long pl, long long dh, long long dw) { \
        col2im<T>(dX, dcols, {N, H, W, C, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw});           \
    }

GPUNET_HOST_CONV_API(float, f32)
GPUNET_HOST_CONV_API(double, f64)
