"""Attention with masks (csrc/fused.c, the "fused" family): the tiled attention of fused.py
with a key padding mask and an additive bias, for encoders, cross-attention and padded
batches.

Shapes (float32 unless said): q, out [B, Tq, H, D]; k, v [B, Tk, Hkv, D]; lse [B, H, Tq];
``kpm`` int32 [B, Tk], nonzero where the key is padding (PyTorch's ``key_padding_mask``, a
bool input of the graph); ``bias`` added to the scaled scores, one of [Tq, Tk], [B, Tq, Tk]
(one per example, a model input's shape), [B * H, Tq, Tk] (``nn.MultiheadAttention``'s 3-D
mask) or [B | 1, H | 1, Tq, Tk]. Scores are
``scale * q k^T + bias``, then keys left out by ``causal`` or ``kpm`` get -inf. A query row
whose every key is masked gets out 0 and lse -inf (PyTorch's SDPA), and no gradient.
``dropout_p`` > 0 (training) drops each probability with that chance (the kept ones scaled by
1 / (1 - p)) by the counter-based stream of ``dropout_mask`` over the counter
((b H + h) Tq + i) Tk + j and ``seed``; the backward, given the same two, drops the same.
"""

from __future__ import annotations

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .elementwise import check_dropout
from .fused import FAMILY, _heads, _mask, _scale, check_attention
from .spec import kernel


def bias_strides(kernel: str, bias: Tensor | None, B: int, Tq: int, Tk: int,
                 H: int) -> tuple[int, int, tuple[int, int, int, int]]:
    """(per-batch stride, per-head stride, broadcast shape) of an attention bias, or
    KernelError naming its shape."""
    if bias is None:
        return 0, 0, (1, 1, Tq, Tk)
    s, blk = tuple(int(d) for d in bias.shape), Tq * Tk
    if s == (Tq, Tk):
        return 0, 0, (1, 1, Tq, Tk)
    if len(s) == 3 and s == (B * H, Tq, Tk):
        return H * blk, blk, (B, H, Tq, Tk)
    if len(s) == 3 and s == (B, Tq, Tk):
        return blk, 0, (B, 1, Tq, Tk)
    if len(s) == 4 and s[2:] == (Tq, Tk) and s[0] in (1, B) and s[1] in (1, H):
        return (s[1] * blk if s[0] > 1 else 0), (blk if s[1] > 1 else 0), s
    raise KernelError(f"{kernel}: bias {bias.shape} must be [{Tq}, {Tk}], [{B} or {B * H}, {Tq}, "
                      f"{Tk}] or [{B} or 1, {H} or 1, {Tq}, {Tk}]")


def check_masks(kernel: str, q: Tensor, kpm: Tensor | None, bias: Tensor | None,
                dims: tuple) -> tuple[int, int, tuple]:
    """kpm int32 [B, Tk], bias f32 of a shape ``bias_strides`` takes: its strides."""
    B, Tq, Tk, H = dims[0], dims[1], dims[2], dims[3]
    if kpm is not None and (kpm.dtype != "i32" or kpm.size != B * Tk):
        raise KernelError(f"{kernel}: kpm {kpm.shape} ({kpm.dtype}) must be int32 [{B}, {Tk}]")
    return bias_strides(kernel, bias, B, Tq, Tk, H)


class _NoTensor:
    size = 0


_NO_TENSOR = _NoTensor()


def _dropout(kernel: str, p: float, seed: int) -> tuple[float, int, int]:
    """(kept value, 24-bit threshold (0: no dropout), seed32), as dropout_mask draws them."""
    _, threshold, keep, seed32 = check_dropout(kernel, _NO_TENSOR, p, seed)
    return keep, threshold, seed32


def check_masked_call(kernel: str, q: Tensor, k: Tensor, v: Tensor, kpm, bias, out: Tensor,
                      lse: Tensor, scale, n_heads, n_kv_heads, causal, dropout_p,
                      seed) -> tuple:
    """(B, Tq, Tk, H, Hkv, D, scale in effect, bias strides, dropout) of a forward call."""
    dims = check_attention(kernel, q, k, v, out, lse, n_heads, n_kv_heads, causal)
    sb, sh, _ = check_masks(kernel, q, kpm, bias, dims)
    return (*dims, _scale(scale, dims[5]), sb, sh, *_dropout(kernel, dropout_p, seed))


def check_masked_bwd(kernel: str, q: Tensor, k: Tensor, v: Tensor, kpm, bias, out: Tensor,
                     lse: Tensor, dout: Tensor, dq: Tensor, dk: Tensor, dv: Tensor, scale,
                     n_heads, n_kv_heads, causal, dropout_p, seed) -> tuple:
    """The dimensions, scale, mask strides and dropout arguments of a masked attention backward, or
    KernelError."""
    dims = check_attention(kernel, q, k, v, out, lse, n_heads, n_kv_heads, causal,
                           (dout, dq, dk, dv))
    sb, sh, _ = check_masks(kernel, q, kpm, bias, dims)
    return (*dims, _scale(scale, dims[5]), sb, sh, *_dropout(kernel, dropout_p, seed))


def drop_mask(B: int, H: int, Tq: int, Tk: int, p: float, seed: int) -> np.ndarray | None:
    """The kept-value-or-0 factors [B, H, Tq, Tk] of attention dropout (None: p = 0)."""
    keep, threshold, seed32 = _dropout("attention_masked", p, seed)
    if not threshold:
        return None
    with np.errstate(over="ignore"):
        h = np.arange(B * H * Tq * Tk, dtype=np.uint64).astype(np.uint32)
        h = h * np.uint32(0x9E3779B1) + np.uint32(seed32)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x7FEB352D)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x846CA68B)
        h ^= h >> np.uint32(16)
    kept = (h >> np.uint32(8)) >= np.uint32(threshold)
    return np.where(kept, np.float32(keep), np.float32(0.0)).reshape(B, H, Tq, Tk)


def _masked_scores(q, k, kpm, bias, dims, sc, causal) -> np.ndarray:
    """[B, H, Tq, Tk] scores with the masks applied (-inf where a key is left out)."""
    B, Tq, Tk, H, Hkv, D = dims
    S = np.matmul(_heads(q, B, Tq, H, D),
                  _heads(k, B, Tk, Hkv, D, H // Hkv).transpose(0, 1, 3, 2)) * np.float32(sc)
    if bias is not None:
        S = S + bias.a.reshape(bias_strides("", bias, B, Tq, Tk, H)[2])
    if causal:
        S[:, :, _mask(Tq, Tk)] = -np.inf
    if kpm is not None:
        S = np.where(kpm.a.reshape(B, 1, 1, Tk) != 0, np.float32(-np.inf), S)
    return S


_KPM = lambda shape: lambda rng: (rng.random(shape) < 0.3).astype(np.int32)  # noqa: E731
_ATT = dict(q=(2, 3, 4, 8), k=(2, 5, 2, 8), v=(2, 5, 2, 8), out=(2, 3, 4, 8), lse=(2, 4, 3),
            n_heads=4, n_kv_heads=2, causal=False)
_EXAMPLES = [{**_ATT, "kpm": _KPM((2, 5)), "bias": (3, 5)},
             {**_ATT, "kpm": _KPM((2, 5)), "bias": None, "dropout_p": 0.4, "seed": 7},
             {**_ATT, "kpm": None, "bias": (2, 4, 3, 5), "scale": 0.3},
             {**_ATT, "kpm": _KPM((2, 5)), "bias": (8, 3, 5), "causal": True},
             {**_ATT, "kpm": None, "bias": (1, 4, 3, 5)},
             {**_ATT, "kpm": _KPM((2, 5)), "bias": None},
             {**_ATT, "kpm": None, "bias": (2, 3, 5)}]
_BAD = [("kpm .* must be int32", dict(kpm=((2, 4), 0, 2))),
        ("bias .* must be", dict(kpm=None, bias=(3, 4)))]
_C = ("q, k, v, kpm, bias, sb, sh, {}B, Tq, Tk, H, Hkv, D, sc:f32, causal:bool, dkeep:f32, "
      "dthr:u32, dseed:u32")


@kernel(FAMILY, "q k v kpm:i32? bias? out:out lse:out", check=check_masked_call,
        dims="B Tq Tk H Hkv D sc sb sh dkeep dthr dseed", tol=(1e-4, 2e-5),
        c="qr_attention_masked_f32(" + _C.format("out, lse, ") + ")",
        examples=_EXAMPLES,
        bad=[(m, {**_EXAMPLES[0], **d}) for m, d in _BAD])
def attention_masked(self, q: Tensor, k: Tensor, v: Tensor, kpm: Tensor | None,
                     bias: Tensor | None, out: Tensor, lse: Tensor, scale: float | None = None,
                     n_heads: int = 1, n_kv_heads: int = 1, causal: bool = False,
                     dropout_p: float = 0.0, seed: int = 0) -> None:
    """out = dropout(softmax(scale q k^T + bias, keys masked by causal and kpm)) v per head
    (GQA); lse [B, H, Tq] saved. scale None: 1 / sqrt(D)."""
    dims = check_attention("attention_masked", q, k, v, out, lse, n_heads, n_kv_heads, causal)
    check_masks("attention_masked", q, kpm, bias, dims)
    B, Tq, Tk, H, Hkv, D = dims
    Out, Lse = out.w.reshape(B, Tq, H, D), lse.w.reshape(B, H, Tq)
    if B * Tq == 0:
        return
    S = _masked_scores(q, k, kpm, bias, dims, _scale(scale, D), causal)
    m = S.max(axis=-1, keepdims=True)
    dead = m == -np.inf                                   # rows with every key masked
    P = np.exp(S - np.where(dead, np.float32(0.0), m))
    ls = P.sum(axis=-1, keepdims=True)
    M = drop_mask(B, H, Tq, Tk, dropout_p, seed)
    Pd = P if M is None else P * M
    O = np.matmul(Pd, _heads(v, B, Tk, Hkv, D, H // Hkv)) / np.where(dead, np.float32(1.0), ls)
    Out[:] = O.transpose(0, 2, 1, 3)
    with np.errstate(divide="ignore"):
        Lse[:] = np.where(dead, np.float32(-np.inf), m + np.log(ls))[..., 0]


_ATTB = [{**e, "lse": ((2, 4, 3), 1.0, 2.0), "dout": (2, 3, 4, 8), "dq": (2, 3, 4, 8),
          "dk": (2, 5, 2, 8), "dv": (2, 5, 2, 8)} for e in _EXAMPLES]


@kernel(FAMILY, "q k v kpm:i32? bias? out lse dout dq:out dk:out dv:out",
        check=check_masked_bwd, dims="B Tq Tk H Hkv D sc sb sh dkeep dthr dseed",
        tol=(1e-4, 5e-5),
        c="qr_attention_masked_bwd_f32(" + _C.format("out, lse, dout, dq, dk, dv, ") + ")",
        examples=_ATTB, bad=[(m, {**_ATTB[0], **d}) for m, d in _BAD])
def attention_masked_bwd(self, q: Tensor, k: Tensor, v: Tensor, kpm: Tensor | None,
                         bias: Tensor | None, out: Tensor, lse: Tensor, dout: Tensor,
                         dq: Tensor, dk: Tensor, dv: Tensor, scale: float | None = None,
                         n_heads: int = 1, n_kv_heads: int = 1, causal: bool = False,
                         dropout_p: float = 0.0, seed: int = 0) -> None:
    """dq, dk, dv (written) of attention_masked, from the saved lse; dk/dv summed over the
    query heads of each kv head. The bias gets no gradient."""
    dims = check_attention("attention_masked_bwd", q, k, v, out, lse, n_heads, n_kv_heads,
                           causal, (dout, dq, dk, dv))
    check_masks("attention_masked_bwd", q, kpm, bias, dims)
    B, Tq, Tk, H, Hkv, D = dims
    DQ, DK, DV = dq.w, dk.w, dv.w          # each refused if read-only, before any write
    DQ[...] = 0.0
    DK[...] = 0.0
    DV[...] = 0.0
    if B * Tq == 0:
        return
    sc, G = np.float32(_scale(scale, D)), H // Hkv
    S = _masked_scores(q, k, kpm, bias, dims, sc, causal)
    ls = lse.a.reshape(B, H, Tq, 1)
    P = np.exp(S - np.where(ls == -np.inf, np.float32(np.inf), ls))   # dead rows: 0
    dO, O = _heads(dout, B, Tq, H, D), _heads(out, B, Tq, H, D)
    dP = np.matmul(dO, _heads(v, B, Tk, Hkv, D, G).transpose(0, 1, 3, 2))
    M = drop_mask(B, H, Tq, Tk, dropout_p, seed)
    if M is not None:                       # O = (P * M) V: dP and dV go through the mask
        dP = dP * M
    dS = P * (dP - (dO * O).sum(axis=-1, keepdims=True)) * sc
    if M is not None:
        P = P * M
    DQ.reshape(B, Tq, H, D)[:] = np.matmul(dS, _heads(k, B, Tk, Hkv, D, G)).transpose(0, 2, 1, 3)
    dK = np.matmul(dS.transpose(0, 1, 3, 2), _heads(q, B, Tq, H, D)).reshape(B, Hkv, G, Tk, D)
    dV = np.matmul(P.transpose(0, 1, 3, 2), dO).reshape(B, Hkv, G, Tk, D)
    DK.reshape(B, Tk, Hkv, D)[:] = dK.sum(axis=2).transpose(0, 2, 1, 3)
    DV.reshape(B, Tk, Hkv, D)[:] = dV.sum(axis=2).transpose(0, 2, 1, 3)
