"""The KV cache of a sliding-window attention layer (Gemma 3's local layers): exact, and a
decode step whose kernel arguments are affine in the position, so it is captured for replay
like any other (``qorus_core.replay``).

The obvious decode, attending to cache rows [max(0, p - W + 1), p], is piecewise in p (its
first row and its count change rule at p = W - 1), which a captured step cannot follow; and
a view per position would make a Python object every step. So keys are never cut off by
where the attention starts: each cached key row carries, after its D values, one marker
column (0: live, -1e30: out of the window), and the query is padded likewise with a 1, so
``q' . k' = q . k`` for a live key and about -1e30 for a dead one, whose softmax weight is
exactly 0 (exp underflows; its value row is finite). A decode step at position p writes its
key (marker 0), marks the key at p - W dead (a row W before p: the first W rows of each
sequence's region are a landing place for the marks of p < W, never read) and attends to
rows [0, p]: every argument is base + per_pos * p, and the step views no new memory.
Decode therefore reads every cached row, as a global layer does, instead of the last W
only; the numbers are those of the window exactly.

A prompt chunk (not replayed) writes its keys with strided copies, attends to the rows
[max(0, pos - W + 1), pos + T) through a band bias (key j is in query i's window when
j >= i, counting the keys from pos - W + 1: one constant template per chunk length, its
last columns when the window is not yet full), then marks the keys that leave the window
of the next position.

Layout, per sequence b of the batch: rows [b R, b R + W) landing place, [b R + W, (b + 1) R)
the positions 0..max_len-1, R = W + max_len; a row is [Hkv, Dp], Dp = D + 1 rounded up to a
multiple of 16 (zeros beyond the marker). Values use the same layout (no marker).
"""

from __future__ import annotations

import numpy as np

from qorus_core.init import constant

DEAD = -1e30    # a dead key's marker: scale * (q . k + DEAD) is far below exp's underflow


def padded(head_dim: int) -> int:
    """Dp: the head dimension plus the marker column, rounded up to a multiple of 16."""
    return (head_dim + 1 + 15) // 16 * 16


def band_init(window: int):
    """Initializer of a [T, Tk] additive bias: -inf where key j is outside query i's window,
    the queries being the last T of the Tk key positions."""
    def init(rng, shape: tuple[int, ...]) -> np.ndarray:
        T, Tk = shape
        i = np.arange(T)[:, None] + (Tk - T)
        j = np.arange(Tk)[None, :]
        return np.where(i - j >= window, np.float32(-np.inf), np.float32(0.0))
    return init


def _query_init(head_dim: int):
    """Initializer of the padded queries [B, T, H, Dp]: 1 in the marker column, else 0 (the
    first D columns are written before each use)."""
    def init(rng, shape: tuple[int, ...]) -> np.ndarray:
        a = np.zeros(shape, np.float32)
        a[..., head_dim] = 1.0
        return a
    return init


def cache_rows(B: int, window: int, max_len: int) -> int:
    """Rows of the buffer: B regions of R = W + max_len, and W more past the last when B > 1
    (so the decode view, R rows a sequence from row W, fits)."""
    return B * (window + max_len) + (window if B > 1 else 0)


def declare(b, B: int, T: int, H: int, Hkv: int, D: int, window: int, max_len: int) -> None:
    """The cache and the buffers of one plan of B sequences and T positions."""
    Dp = padded(D)
    rows = cache_rows(B, window, max_len)
    b.state("k_cache", (rows, Hkv, Dp), persistent=False)   # zeros: pages touched as they fill
    b.state("v_cache", (rows, Hkv, Dp), persistent=False)
    b.state("q_pad", (B, T, H, Dp), _query_init(D), persistent=False)
    b.state("mark_dead", (1,), constant(DEAD), persistent=False)
    b.state("mark_live", (1,), constant(0.0), persistent=False)
    b.scratch("o_pad", (B, T, H, Dp))
    if T > 1:
        b.state("band", (T, window - 1 + T), band_init(window), persistent=False)
        b.scratch("bias", (T, window - 1 + T))


def attend(ctx, pos: int, H: int, Hkv: int, D: int, window: int, max_len: int,
           scale: float) -> None:
    """Cache this call's keys and values (``ctx.kr``, ``ctx.vv``, rotated) at ``pos`` and write
    ``ctx.att`` from ``ctx.qr``, each query attending to the last ``window`` positions."""
    B, T = ctx.qr.shape[0], ctx.qr.shape[1]
    if T == 1:
        _decode(ctx, pos, B, H, Hkv, D, window, max_len, scale)
    else:
        _prompt(ctx, pos, B, T, H, Hkv, D, window, max_len, scale)


def _decode(ctx, p: int, B: int, H: int, Hkv: int, D: int, W: int, max_len: int,
            scale: float) -> None:
    k, kc, vc = ctx.k, ctx.k_cache, ctx.v_cache
    Dp = kc.shape[-1]
    R, row = W + max_len, Hkv * Dp
    for b in range(B):
        at = (b * R + W + p) * row                          # position p's row
        gone = (b * R + p) * row                            # position p - W's row
        for h in range(Hkv):
            src = (b * Hkv + h) * D
            k.copy_into(ctx.view(ctx.kr, (D,), src), kc, at + h * Dp)
            k.copy_into(ctx.mark_live, kc, at + h * Dp + D)
            k.copy_into(ctx.view(ctx.vv, (D,), src), vc, at + h * Dp)
            k.copy_into(ctx.mark_dead, kc, gone + h * Dp + D)
        for h in range(H):
            i = b * H + h
            k.copy_into(ctx.view(ctx.qr, (D,), i * D), ctx.q_pad, i * Dp)
    seen = (B, R if B > 1 else max_len, Hkv, Dp)           # each sequence's positions
    k.attention_decode(ctx.q_pad, ctx.view(kc, seen, W * row), ctx.view(vc, seen, W * row),
                       ctx.o_pad, p + 1, scale, H, Hkv)
    for i in range(B * H):
        k.copy_into(ctx.view(ctx.o_pad, (D,), i * Dp), ctx.att, i * D)


def _prompt(ctx, pos: int, B: int, T: int, H: int, Hkv: int, D: int, W: int, max_len: int,
            scale: float) -> None:
    k, kc, vc = ctx.k, ctx.k_cache, ctx.v_cache
    Dp = kc.shape[-1]
    R, row = W + max_len, Hkv * Dp
    heads, per_seq = (B * T * H, D), (R * row, row, Dp)
    k.strided_copy(ctx.qr, ctx.q_pad, heads, 0, (D, 1), 0, (Dp, 1))
    src = (T * Hkv * D, Hkv * D, D, 1)
    k.strided_copy(ctx.kr, kc, (B, T, Hkv, D), 0, src, (W + pos) * row, per_seq + (1,))
    k.strided_copy(ctx.vv, vc, (B, T, Hkv, D), 0, src, (W + pos) * row, per_seq + (1,))
    k.strided_copy(ctx.mark_live, kc, (B, T, Hkv), 0, (0, 0, 0), (W + pos) * row + D, per_seq)
    first = max(0, pos - W + 1)                             # the oldest key any query sees
    Tk = pos + T - first
    bias = None                                             # every window holds every key
    if pos + T > W:
        bias = ctx.band
        if Tk < bias.shape[1]:                              # the window not full yet: the
            bias = ctx.view(ctx.bias, (T, Tk))              # template's last Tk columns
            k.strided_copy(ctx.band, bias, (T, Tk), ctx.band.shape[1] - Tk,
                           (ctx.band.shape[1], 1), 0, (Tk, 1))
    keys = (1, Tk, Hkv, Dp)
    for b in range(B):
        at = (b * R + W + first) * row
        q = ctx.view(ctx.q_pad, (1, T, H, Dp), b * T * H * Dp)
        out = ctx.view(ctx.o_pad, (1, T, H, Dp), b * T * H * Dp)
        k.attention_masked(q, ctx.view(kc, keys, at), ctx.view(vc, keys, at), None, bias, out,
                           ctx.view(ctx.lse, (1, H, T), b * H * T), scale, H, Hkv, True)
    k.strided_copy(ctx.o_pad, ctx.att, heads, 0, (Dp, 1), 0, (D, 1))
    # positions pos - W .. pos + T - 1 - W leave the window of every later query
    k.strided_copy(ctx.mark_dead, kc, (B, T, Hkv), 0, (0, 0, 0), pos * row + D, per_seq)
