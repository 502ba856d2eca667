"""The recurrence on arrays, shared by the Keras layers (``SimpleRNN``, ``LSTM``,
``GRU``) and the PyTorch modules (``gn.nn.LSTM`` ...), which re-lay their weights
into the Keras layout and call the same :func:`run`.

Work per sequence: one GEMM projects the inputs of all time steps; each step does one
recurrent GEMM (two for ``GRU(reset_after=False)``, whose reset gate sits between
them) and one cell op (``ops.lstm_step`` ...: the gates and the state update, where a
fused kernel can take over). Backward runs the steps in reverse with one recurrent
GEMM each; the weight gradients are single GEMMs over the stored histories (for
SimpleRNN and LSTM one: ``[x, 1, h]^T @ dZ`` gives ``dW``, ``db`` and ``dU``). Arrays
are time-major inside, so each step's slice is contiguous.

Stored for backprop, for an LSTM: the step inputs, the pre-activations (4·T·B·u; the
host loop keeps the gates' activations there instead; overwritten in place by their
gradients), the states h and c (2·(T+1)·B·u).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from gpunet.errors import InvalidParameterError

Array = Any
GATES = {"simple": 1, "lstm": 4, "gru": 3}


@dataclasses.dataclass(frozen=True)
class Cell:
    """What a recurrence computes (the weights come with each :func:`run`)."""

    kind: str  # "simple" | "lstm" | "gru"
    units: int
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    reset_after: bool = True  # GRU only
    go_backwards: bool = False  # read the sequence last step first (outputs stay reversed)
    return_sequences: bool = False
    zero_output: bool = False  # a padded step outputs zeros (else the last real output)

    @property
    def n_states(self) -> int:
        return 2 if self.kind == "lstm" else 1


Backward = Callable[[Any, list[Any], bool], tuple[Any, Any, Any, Any, list[Any]]]


def run(
    ops: Any,
    cell: Cell,
    X: Array,
    W: Array,
    U: Array,
    b: Array | None,
    states0: list[Array | None] | None = None,
    mask: Array | None = None,
    dp: Array | None = None,
    rdp: Array | None = None,
) -> tuple[Array, list[Array], Backward]:
    """Run ``cell`` over ``X`` (batch, time, features) with Keras-layout weights.

    ``mask`` is (batch, time) bool; ``dp``/``rdp`` are inverted-dropout masks of the
    inputs (batch, features) and of the state fed to the recurrent product (batch,
    units), the same for every step; or one mask per gate side by side (batch,
    gates·features) and (batch, gates·units), as Keras 3's LSTM and GRU cells draw
    them when ``recurrent_dropout`` is set. Returns ``(Y, final states, backprop)`` where
    ``backprop(dY, dstates, need_dX) -> (dX, dW, dU, db, dstates0)``.

    Raises:
        InvalidParameterError: for a sequence of length 0.
    """
    # the whole recurrence on one BLAS thread (host only, see _blas_threads): its
    # per-step products are too small to share, and letting the large ones between
    # them use a second thread measured 2-4x slower on a shared 2-core machine
    with ops.step_loop_scope():
        Y, states, back = _run(ops, cell, X, W, U, b, states0, mask, dp, rdp)

    def backprop(dY: Array, dstates: list[Array | None], need_dX: bool) -> Any:
        with ops.step_loop_scope():
            return back(dY, dstates, need_dX)

    return Y, states, backprop


def _run(ops: Any, cell: Cell, X: Array, W: Array, U: Array, b: Array | None,
         states0: list[Array | None] | None, mask: Array | None, dp: Array | None,
         rdp: Array | None) -> tuple[Array, list[Array], Backward]:  # fmt: skip
    xp, n, kind = ops.xp, cell.units, cell.kind
    B, T, F = X.shape
    if T == 0:
        raise InvalidParameterError(f"a recurrent layer needs at least 1 time step, got {X.shape}")
    dt = X.dtype
    Xt = xp.permute_dims(X, (1, 0, 2))
    if cell.go_backwards:
        Xt = xp.flip(Xt, axis=0)
    gated = dp is not None and dp.shape[-1] != F  # one input mask per gate (Keras)
    if dp is not None and not gated:
        Xt = Xt * dp
    split_bias = kind == "gru" and cell.reset_after and b is not None
    b_in, b_rec = (b[0, ...], b[1, ...]) if split_bias else (b, None)  # type: ignore[index]
    per_gate = rdp is not None and rdp.shape[-1] != n  # one recurrent mask per gate (Keras)
    # the bias rides in the input GEMM as a row of W against a column of ones (no pass
    # over Zx to add it); the ones column makes the bias gradient part of the weight
    # gradient's GEMM too. Mixed dtypes (a float32 bias for float16 steps) add it apart,
    # and Keras' per-gate input masks take gate-by-gate products.
    k = int(not gated and b_in is not None and b_in.dtype == W.dtype == dt)  # the ones column
    X2 = ops.empty((T, B, F + 1), dt) if k else Xt
    if k:
        X2[..., :F] = Xt
        X2[..., F] = 1
    X2 = xp.reshape(X2, (T * B, F + k))
    XG = [xp.reshape(Xt * dp[:, g * F : (g + 1) * F], (T * B, F))  # type: ignore[index]
          for g in range(GATES[kind])] if gated else []  # fmt: skip
    if gated:
        Zx = xp.concat([ops.gemm(XG[g], W[:, g * n : (g + 1) * n]) for g in range(len(XG))],
                       axis=1)  # fmt: skip
    else:
        Zx = ops.gemm(X2, xp.concat([W, b_in[None, :]]) if k else W)  # type: ignore[index]
    if b_in is not None and not k:
        Zx = Zx + b_in
    Zx = xp.reshape(Zx, (T, B, GATES[kind] * n))  # becomes the pre-activation history
    M: Any = None
    if mask is not None:
        M = xp.astype(xp.permute_dims(mask, (1, 0)), dt)[:, :, None]
        if cell.go_backwards:
            M = xp.flip(M, axis=0)
    # every step writes its row of the histories: only the first states need a value
    H = ops.empty((T + 1, B, n), dt)
    C: Any = ops.empty((T + 1, B, n), dt) if kind == "lstm" else None
    s0 = [*(states0 or []), None, None]
    H[0, ...] = 0 if s0[0] is None else s0[0]
    if C is not None:
        C[0, ...] = 0 if s0[1] is None else s0[1]
    gru_after = kind == "gru" and cell.reset_after
    ZH: Any = ops.empty((T, B, 3 * n), dt) if gru_after else None
    RH: Any = ops.empty((T, B, n), dt) if kind == "gru" and not cell.reset_after else None
    FAC: Any = ops.empty((T, B, 1), dt) if M is not None else None
    loops = None if per_gate else ops.recurrent_loops(cell, Zx, U, H, rdp)
    Mc = None if loops is None or M is None else xp.ascontiguousarray(M[:, :, 0])
    if loops is not None and kind == "lstm":
        loops.lstm_forward(Zx, U, H, C, Mc, rdp)
    elif loops is not None:
        loops.gru_forward(Zx, ZH, U, b_rec, H, Mc, rdp)
    else:
        _forward_steps(ops, cell, Zx, U, b_rec, H, C, ZH, RH, M, rdp)
    seen = None
    for t in range(T if FAC is not None else 0):  # outputs after the first real step
        m = M[t, ...]  # carry the last real one
        seen = m if seen is None or cell.zero_output else xp.maximum(seen, m)
        FAC[t, ...] = seen
    O = H[1:, ...] if FAC is None else H[1:, ...] * FAC
    Y = xp.permute_dims(O, (1, 0, 2)) if cell.return_sequences else O[T - 1, ...]
    states = [H[T, ...]] if C is None else [H[T, ...], C[T, ...]]
    used = [False]

    def backprop(dY: Array, dstates: list[Array | None], need_dX: bool) -> Any:
        if used[0]:  # the pre-activations were overwritten by their gradients
            raise RuntimeError("a recurrence's backprop runs once per forward pass")
        used[0] = True
        dO = None
        if dY is not None and cell.return_sequences:
            dO = xp.permute_dims(dY, (1, 0, 2))
            if FAC is not None:
                dO = dO * FAC
        dlast = None if dY is None or cell.return_sequences else dY
        if dlast is not None and FAC is not None:
            dlast = dlast * FAC[T - 1, ...]
        ds = list(dstates) + [None] * (cell.n_states - len(dstates))
        Ut = xp.matrix_transpose(U)
        if loops is None:
            dh, dc = _backward_steps(ops, cell, Zx, Ut, H, C, ZH, M, rdp, ds, dO, dlast)
        else:  # fresh buffers: the loops update them in place
            dh = xp.zeros((B, n), dt) if ds[0] is None else xp.array(ds[0], dtype=dt)
            if dlast is not None:
                dh += dlast
            Ut = xp.ascontiguousarray(Ut)
            if kind == "lstm":
                dc = xp.zeros((B, n), dt) if ds[1] is None else xp.array(ds[1], dtype=dt)
                loops.lstm_backward_loop(Zx, Ut, C, Mc, rdp, dh, dc, dO)
            else:
                dc = None
                loops.gru_backward_loop(Zx, ZH, Ut, H, Mc, rdp, dh, dO)
        dZ = xp.reshape(Zx, (T * B, GATES[kind] * n))
        Hs = H[:T, ...]
        if kind in ("simple", "lstm") and not gated and not per_gate:
            # [dW; db; dU] in one GEMM over [X, 1, h]
            HP2 = xp.reshape(Hs if rdp is None else Hs * rdp, (T * B, n))
            XH = ops.empty((T * B, F + k + n), dt)
            XH[:, : F + k], XH[:, F + k :] = X2, HP2
            dWU = ops.gemm(XH, dZ, trans1=True)
            dW, dU = dWU[:F, ...], dWU[F + k :, ...]
            db = None if b is None else dWU[F, ...] if k else xp.sum(dZ, axis=0)
        elif gated:
            dW = xp.concat([ops.gemm(XG[g], dZ[:, g * n : (g + 1) * n], trans1=True)
                            for g in range(len(XG))], axis=1)  # fmt: skip
            db = None if b is None else xp.sum(dZ, axis=0)
        else:
            dWb = ops.gemm(X2, dZ, trans1=True)
            dW = dWb[:F, ...]
            db = None if b is None else dWb[F, ...] if k else xp.sum(dZ, axis=0)
        if gru_after:
            dZh = xp.reshape(ZH, (T * B, 3 * n))
            dU = _rec_grad(ops, Hs, dZh, rdp, n)
            db = None if b is None else xp.stack([db, xp.sum(dZh, axis=0)])
        elif kind == "gru":
            RH2 = xp.reshape(RH, (T * B, n))
            dU = xp.concat(
                [_rec_grad(ops, Hs, dZ[:, : 2 * n], _gates(rdp, n, 0, 2), n),
                 ops.gemm(RH2, dZ[:, 2 * n :], trans1=True)], axis=1,
            )  # fmt: skip
        elif gated or per_gate:  # SimpleRNN and LSTM under per-gate masks
            dU = _rec_grad(ops, Hs, dZ, rdp, n)
        dX = None
        if need_dX and gated:
            assert dp is not None
            dXt = ops.zeros((T, B, F), dt)
            for g in range(len(XG)):
                dXg = ops.gemm(dZ[:, g * n : (g + 1) * n], W[:, g * n : (g + 1) * n], trans2=True)
                dXt = dXt + xp.reshape(dXg, (T, B, F)) * dp[:, g * F : (g + 1) * F]
        elif need_dX:
            dXt = xp.reshape(ops.gemm(dZ, W, trans2=True), (T, B, F))
            if dp is not None:
                dXt = dXt * dp
        if need_dX:
            if cell.go_backwards:
                dXt = xp.flip(dXt, axis=0)
            dX = xp.permute_dims(dXt, (1, 0, 2))
        d0 = [dh] if kind != "lstm" else [dh, ops.zeros((B, n), dt) if dc is None else dc]
        return dX, dW, dU, db, d0

    return Y, states, backprop


def _gates(rdp: Array | None, n: int, first: int, stop: int) -> Array | None:
    """The recurrent masks of gates ``first..stop-1``: all of one shared mask."""
    return rdp if rdp is None or rdp.shape[-1] == n else rdp[:, first * n : stop * n]


def _rec(ops: Any, h: Array, U: Array, rdp: Array | None, n: int) -> Array:
    """``h @ U`` with recurrent dropout: one mask (batch, n) for every gate, or one per
    gate (batch, gates·n), each gate's block of ``U`` then reading its own."""
    if rdp is None or rdp.shape[-1] == n:
        return ops.matmul(h if rdp is None else h * rdp, U)
    return ops.xp.concat([ops.matmul(h * rdp[:, g * n : (g + 1) * n], U[:, g * n : (g + 1) * n])
                      for g in range(U.shape[1] // n)], axis=1)  # fmt: skip


def _rec_back(ops: Any, dz: Array, Ut: Array, rdp: Array | None, n: int) -> Array:
    """The gradient of ``h`` through :func:`_rec` (``Ut`` is ``U`` transposed)."""
    if rdp is None or rdp.shape[-1] == n:
        dh = ops.matmul(dz, Ut)
        return dh if rdp is None else dh * rdp
    dh = None
    for g in range(Ut.shape[0] // n):
        part = ops.matmul(dz[:, g * n : (g + 1) * n], Ut[g * n : (g + 1) * n, :])
        part = part * rdp[:, g * n : (g + 1) * n]
        dh = part if dh is None else dh + part
    return dh


def _rec_grad(ops: Any, Hs: Array, dZ: Array, rdp: Array | None, n: int) -> Array:
    """``dU`` of :func:`_rec` over the whole history ``Hs`` (time, batch, n)."""
    xp, TB = ops.xp, Hs.shape[0] * Hs.shape[1]
    if rdp is None or rdp.shape[-1] == n:
        HP = xp.reshape(Hs if rdp is None else Hs * rdp, (TB, n))
        return ops.gemm(HP, dZ, trans1=True)
    return xp.concat([ops.gemm(xp.reshape(Hs * rdp[:, g * n : (g + 1) * n], (TB, n)),
                               dZ[:, g * n : (g + 1) * n], trans1=True)
                      for g in range(dZ.shape[1] // n)], axis=1)  # fmt: skip


def _forward_steps(ops: Any, cell: Cell, Zx: Array, U: Array, b_rec: Array | None, H: Array,
                   C: Array, ZH: Array, RH: Array, M: Array | None,
                   rdp: Array | None) -> None:  # fmt: skip
    """The forward time loop on any backend (``ops.recurrent_loops`` has the fast ones)."""
    n, kind = cell.units, cell.kind
    act, rec = cell.activation, cell.recurrent_activation
    for t in range(Zx.shape[0]):
        m = None if M is None else M[t, ...]
        if kind == "simple":
            Zx[t, ...] += _rec(ops, H[t, ...], U, rdp, n)
            H[t + 1, ...] = ops.rnn_step(Zx[t, ...], H[t, ...], m, act)
        elif kind == "lstm":
            Zx[t, ...] += _rec(ops, H[t, ...], U, rdp, n)
            H[t + 1, ...], C[t + 1, ...] = ops.lstm_step(
                Zx[t, ...], C[t, ...], H[t, ...], m, act, rec
            )
        elif ZH is not None:  # GRU, reset_after
            zh = _rec(ops, H[t, ...], U, rdp, n)
            ZH[t, ...] = zh if b_rec is None else zh + b_rec
            H[t + 1, ...] = ops.gru_step(Zx[t, ...], ZH[t, ...], H[t, ...], m, act, rec)
        else:  # GRU, reset gate before the candidate's product
            rz, rh = _gates(rdp, n, 0, 2), _gates(rdp, n, 2, 3)
            Zx[t, :, : 2 * n] = Zx[t, :, : 2 * n] + _rec(ops, H[t, ...], U[:, : 2 * n], rz, n)
            hp = H[t, ...] if rh is None else H[t, ...] * rh
            RH[t, ...] = ops.activation(rec, Zx[t, :, n : 2 * n]) * hp
            Zx[t, :, 2 * n :] = Zx[t, :, 2 * n :] + ops.matmul(RH[t, ...], U[:, 2 * n :])
            H[t + 1, ...] = ops.gru_step(Zx[t, ...], None, H[t, ...], m, act, rec)


def _backward_steps(ops: Any, cell: Cell, Zx: Array, Ut: Array, H: Array, C: Array,
                    ZH: Array, M: Array | None, rdp: Array | None, ds: list[Array | None],
                    dO: Array | None, dlast: Array | None) -> tuple[Any, Any]:  # fmt: skip
    """The backward time loop on any backend: ``(dh, dc)`` of the first states."""
    n, kind = cell.units, cell.kind
    act, rec = cell.activation, cell.recurrent_activation
    T, B = Zx.shape[:2]
    gru_after = ZH is not None
    dh = ops.zeros((B, n), Zx.dtype) if ds[0] is None else ds[0]
    dc = ds[1] if kind == "lstm" else None
    for t in range(T - 1, -1, -1):
        m = None if M is None else M[t, ...]
        if dO is not None:
            dh = dh + dO[t, ...]
        elif t == T - 1 and dlast is not None:
            dh = dh + dlast
        if kind == "simple":
            dz, carry = ops.backprop_rnn_step(dh, Zx[t, ...], m, act)
            dhp, dh_keep = _rec_back(ops, dz, Ut, rdp, n), carry
        elif kind == "lstm":
            dz, carry, dc = ops.backprop_lstm_step(dh, dc, Zx[t, ...], C[t, ...], m, act, rec)
            dhp, dh_keep = _rec_back(ops, dz, Ut, rdp, n), carry
        elif gru_after:
            dz, dzh, dh_keep = ops.backprop_gru_step(
                dh, Zx[t, ...], ZH[t, ...], H[t, ...], m, act, rec
            )
            ZH[t, ...] = dzh
            dhp = _rec_back(ops, dzh, Ut, rdp, n)
        else:
            dz, _, dh_keep = ops.backprop_gru_step(dh, Zx[t, ...], None, H[t, ...], m, act, rec)
            pre_r = Zx[t, :, n : 2 * n]
            r = ops.activation(rec, pre_r)
            rz, rh = _gates(rdp, n, 0, 2), _gates(rdp, n, 2, 3)
            hp = H[t, ...] if rh is None else H[t, ...] * rh
            drh = ops.matmul(dz[:, 2 * n :], Ut[2 * n :, :])
            dz[:, n : 2 * n] = ops.backprop_activation(rec, drh * hp, pre_r, r)
            dhp = (drh * r if rh is None else drh * r * rh) + _rec_back(
                ops, dz[:, : 2 * n], Ut[: 2 * n, :], rz, n
            )
        Zx[t, ...] = dz  # the history turns into the gradient history, step by step
        dh = dhp if dh_keep is None else dhp + dh_keep
    return dh, dc
