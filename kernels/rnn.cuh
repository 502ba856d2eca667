// Recurrent cells, one element (row b, unit j) of one time step: the gate
// activations and the state update after the matrix products, and their backward,
// which keeps only the pre-activations and recomputes the activations (Chainer's
// fused LSTM). rnn.cu runs them as grid-stride kernels, host.cpp over row ranges.
//
// Layouts, all row-major: Z (B, G*U) pre-activations in Keras' gate order
// (LSTM i f c o, GRU z r h); states (B, U); m (B,) the step's mask (1 real, 0 pad),
// null without one: a padded step keeps the previous state. The activations are
// Keras' defaults, tanh and the sigmoid gates; gpunet/backend/_rnn_ops.py is the
// reference, for any activation.
#pragma once
#include "activations.cuh"

namespace gpunet {

template <typename M>
GPUNET_HD M keep_(M m, M fresh, M old) { return old + m * (fresh - old); }

// The element functions take the pointers of their row (z: row b of Z, h: row b of
// the state, ...) and the unit j, so a host loop over j runs at unit stride; mb is the
// row's mask value, read only when masked.

// The four gate activations of one LSTM element (i, f, g = the candidate, o)
template <typename M>
struct LstmGates {
    M i, f, g, o;
};

template <typename T, typename M>
GPUNET_HD LstmGates<M> lstm_gates(long long j, long long U, const T* z) {
    return {sigmoid(M(z[j])), sigmoid(M(z[U + j])), tanh_(M(z[2 * U + j])),
            sigmoid(M(z[3 * U + j]))};
}

// h, c of one LSTM element from its gates; h_prev is read only under a mask
template <typename T, typename M>
GPUNET_HD void lstm_state_at(long long j, T* h, T* c, LstmGates<M> a, const T* c_prev,
                             const T* h_prev, bool masked, M mb) {
    M cp = M(c_prev[j]);
    M cn = a.f * cp + a.i * a.g;
    M hn = a.o * tanh_(cn);
    if (masked) {
        cn = keep_(mb, cn, cp);
        hn = keep_(mb, hn, M(h_prev[j]));
    }
    c[j] = T(cn);
    h[j] = T(hn);
}

// h, c of one LSTM element; h_prev is read only under a mask
template <typename T, typename M>
GPUNET_HD void lstm_step_at(long long j, long long U, T* h, T* c, const T* z, const T* c_prev,
                            const T* h_prev, bool masked, M mb) {
    lstm_state_at<T, M>(j, h, c, lstm_gates<T, M>(j, U, z), c_prev, h_prev, masked, mb);
}

// dZ (B, 4U) and dc_prev of one LSTM element from dh, dc (null: zero) and its gates;
// carry_h (written under a mask) is the part of dh that passes a padded step
template <typename T, typename M>
GPUNET_HD void lstm_backward_gates_at(long long j, long long U, T* dz, T* dc_prev, T* carry_h,
                                      const T* dh, const T* dc, LstmGates<M> a,
                                      const T* c_prev, bool masked, M mb) {
    M i = a.i, f = a.f, g = a.g, o = a.o;
    M cp = M(c_prev[j]);
    M tc = tanh_(f * cp + i * g);
    M dhn = M(dh[j]), dcn = dc ? M(dc[j]) : M(0), carry_c = M(0);
    if (masked) {
        carry_h[j] = T(dhn * (M(1) - mb));
        carry_c = dcn * (M(1) - mb);
        dhn *= mb;
        dcn *= mb;
    }
    M dcs = dhn * o * (M(1) - tc * tc) + dcn;
    dz[j] = T(dcs * g * (i * (M(1) - i)));
    dz[U + j] = T(dcs * cp * (f * (M(1) - f)));
    dz[2 * U + j] = T(dcs * i * (M(1) - g * g));
    dz[3 * U + j] = T(dhn * tc * (o * (M(1) - o)));
    dc_prev[j] = T(dcs * f + carry_c);
}

// the same from the pre-activations z (recomputing the gates: Chainer's fused LSTM)
template <typename T, typename M>
GPUNET_HD void lstm_backward_at(long long j, long long U, T* dz, T* dc_prev, T* carry_h,
                                const T* dh, const T* dc, const T* z, const T* c_prev,
                                bool masked, M mb) {
    lstm_backward_gates_at<T, M>(j, U, dz, dc_prev, carry_h, dh, dc, lstm_gates<T, M>(j, U, z),
                                 c_prev, masked, mb);
}

// h of one GRU element. Zh (B, 3U), the recurrent product plus its bias, is given
// with reset_after (Keras' default, PyTorch's form); null: Zx holds everything.
template <typename T, typename M>
GPUNET_HD void gru_step_at(long long j, long long U, T* h, const T* x, const T* zh,
                           const T* h_prev, bool masked, M mb) {
    M z, n;
    if (zh) {
        z = sigmoid(M(x[j]) + M(zh[j]));
        M r = sigmoid(M(x[U + j]) + M(zh[U + j]));
        n = tanh_(M(x[2 * U + j]) + r * M(zh[2 * U + j]));
    } else {
        z = sigmoid(M(x[j]));
        n = tanh_(M(x[2 * U + j]));
    }
    M hp = M(h_prev[j]);
    M hn = z * hp + (M(1) - z) * n;
    h[j] = T(masked ? keep_(mb, hn, hp) : hn);
}

// dZx, dZh (with Zh) and dh_prev (through the update gate and past a padding) of one
// GRU element; without Zh the reset gate's column of dZx is 0: the caller's
template <typename T, typename M>
GPUNET_HD void gru_backward_at(long long j, long long U, T* dx, T* dzh, T* dh_prev,
                               const T* dh, const T* x, const T* zh, const T* h_prev,
                               bool masked, M mb) {
    M z, r = M(0), n, zh_n = M(0);
    if (zh) {
        z = sigmoid(M(x[j]) + M(zh[j]));
        r = sigmoid(M(x[U + j]) + M(zh[U + j]));
        zh_n = M(zh[2 * U + j]);
        n = tanh_(M(x[2 * U + j]) + r * zh_n);
    } else {
        z = sigmoid(M(x[j]));
        n = tanh_(M(x[2 * U + j]));
    }
    M hp = M(h_prev[j]), dhn = M(dh[j]), carry = M(0);
    if (masked) {
        carry = dhn * (M(1) - mb);
        dhn *= mb;
    }
    M dpz = dhn * (hp - n) * (z * (M(1) - z));
    M dpn = dhn * (M(1) - z) * (M(1) - n * n);
    dh_prev[j] = T(dhn * z + carry);
    dx[j] = T(dpz);
    dx[2 * U + j] = T(dpn);
    if (zh) {
        M dpr = dpn * zh_n * (r * (M(1) - r));
        dx[U + j] = T(dpr);
        dzh[j] = T(dpz);
        dzh[U + j] = T(dpr);
        dzh[2 * U + j] = T(dpn * r);
    } else {
        dx[U + j] = T(0);
    }
}

}  // namespace gpunet
