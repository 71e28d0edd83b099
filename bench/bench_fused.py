"""Fused kernels: the Qorus C kernels against their NumPy twins (and PyTorch when installed).

    python bench/bench_fused.py                     # median of 7 timed runs per kernel
    python bench/bench_fused.py --runs 11 --threads 1 --json

Sizes are those of a small LLM training step: activations 16 x 128 x 256 (batch x sequence x
model width), attention B=16, T=128, H=4, D=64 (causal; MHA and GQA with 2 kv heads), a GELU
(erf and tanh, forward and backward) on the activations, and two decode steps: 2048 cached
positions with 32 heads, 8 kv heads, D=128, and SmolLM2-135M's (9 heads, 3 kv heads, D=64, 128
cached positions). Each run times a block of calls (~20 ms) and reports the time per call; the
C/NumPy column is the speedup. The copy row is the memory floor of the broadcast rows: it reads and
writes the same bytes as add_bcast and mul_bcast, so on one thread, where those are bound by
cache bandwidth, their time is compared with it rather than with a 2x of NumPy.
QORUS_NUM_THREADS, OPENBLAS_NUM_THREADS and torch.set_num_threads are set to --threads.
``--simd avx2`` also times the C kernels with that SIMD tier forced (a column per tier, after
the default tier's), so two tiers compare in one session.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from harness import thread_env


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="0: the default (usable cores)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--only", default="", help="comma-separated kernel name prefixes")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--simd", nargs="*", default=[],
                    help="SIMD tiers to time the C kernels under as well, e.g. avx2")
    ap.add_argument("--json", action="store_true")
    return ap.parse_args()


def cases(np, Tensor, torch):
    """(name, size, {impl: callable}) for every kernel; impl in qorus / numpy / torch."""
    rng = np.random.default_rng(0)

    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def t(a):
        return Tensor(np.array(a, np.float32, copy=True))

    out = []
    B, S, H, D = 16, 128, 4, 64
    x = r(B, S, H, D)
    for hs in (False, True):
        for kern in ("rope", "rope_bwd"):
            X, Y = t(x), t(x)
            fns = {k: (lambda ks, X=X, Y=Y, kern=kern, hs=hs: getattr(ks, kern)(X, Y, 3, 10000.0, hs))
                   for k in ("qorus", "numpy")}
            if torch is not None:
                xt = torch.from_numpy(x)
                inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
                ang = torch.outer(torch.arange(3, 3 + S, dtype=torch.float32), inv)
                if hs:
                    c = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
                    s = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]

                    def tr(xt=xt, c=c, s=s):
                        return xt * c + torch.cat([-xt[..., D // 2:], xt[..., :D // 2]], -1) * s
                else:
                    fc = torch.polar(torch.ones_like(ang), ang)[None, :, None, :]

                    def tr(xt=xt, fc=fc):
                        xc = torch.view_as_complex(xt.reshape(B, S, H, D // 2, 2))
                        return torch.view_as_real(xc * fc).reshape(B, S, H, D)
                fns["torch"] = tr
            out.append((f"{kern} {'half' if hs else 'pairs'}", f"{B}x{S}x{H}x{D}", fns))

    R, N = 16 * 128, 256
    g, u, d2 = r(R, N, scale=2.0), r(R, N), r(R, N)
    G, U, DY, DG, DU, Y2 = t(g), t(u), t(d2), t(g), t(u), t(g)
    b, W, DB = t(r(N)), t(r(N)), t(r(N))
    tg, tu, td = (torch.from_numpy(a) for a in (g, u, d2)) if torch is not None else (0, 0, 0)
    rows = [
        ("swiglu", lambda ks: ks.swiglu(G, U, Y2),
         lambda: torch.nn.functional.silu(tg) * tu),
        ("swiglu_bwd", lambda ks: ks.swiglu_bwd(G, U, DY, DG, DU),
         lambda: (td * tu * torch.sigmoid(tg) * (1 + tg * (1 - torch.sigmoid(tg))),
                  td * torch.nn.functional.silu(tg))),
        # the floor of the broadcast rows: copy moves the same bytes as add_bcast / mul_bcast
        ("copy", lambda ks: ks.copy(G, Y2), lambda: tg.clone()),
        ("add_bcast", lambda ks: ks.add_bcast(G, b, Y2), lambda: tg + tu[0]),
        ("add_bcast_bwd", lambda ks: ks.add_bcast_bwd(DY, DG, DB), lambda: td.sum(0)),
        ("mul_bcast", lambda ks: ks.mul_bcast(G, W, Y2), lambda: tg * tu[0]),
        ("mul_bcast_bwd", lambda ks: ks.mul_bcast_bwd(G, W, DY, DG, DB),
         lambda: ((td * tg).sum(0), td * tu[0])),
    ]
    for ap, tag in ((False, "none"), (True, "tanh")):   # GELU exact (erf) and tanh forms
        rows += [(f"gelu {tag}", lambda ks, ap=ap: ks.gelu(G, Y2, ap),
                  lambda tag=tag: torch.nn.functional.gelu(tg, approximate=tag)),
                 (f"gelu_bwd {tag}", lambda ks, ap=ap: ks.gelu_bwd(G, DY, DG, ap),
                  lambda tag=tag: torch.ops.aten.gelu_backward(td, tg, approximate=tag))]
    for name, f, ft in rows:
        fns = {"qorus": f, "numpy": f}
        if torch is not None:
            fns["torch"] = ft
        out.append((name, f"{R}x{N}", fns))

    Gs, Ts = 16 * 4, 128
    sx, sdy = r(Gs, Ts, Ts, scale=3.0), r(Gs, Ts, Ts)
    SX, SY, SDY, SDX = t(sx), t(sx), t(sdy), t(sx)
    fns = {k: (lambda ks: ks.softmax_masked(SX, SY, 0.125, True)) for k in ("qorus", "numpy")}
    if torch is not None:
        mask = torch.ones(Ts, Ts, dtype=torch.bool).triu(1)
        tsx = torch.from_numpy(sx)
        fns["torch"] = lambda: torch.softmax((tsx * 0.125).masked_fill(mask, float("-inf")), -1)
    out.append(("softmax_masked causal", f"{Gs}x{Ts}x{Ts}", fns))
    fns = {k: (lambda ks: ks.softmax_masked_bwd(SY, SDY, SDX, 0.125, True))
           for k in ("qorus", "numpy")}
    if torch is not None:
        tsy, tsdy = torch.from_numpy(sx), torch.from_numpy(sdy)
        fns["torch"] = lambda: torch.ops.aten._softmax_backward_data(tsdy, tsy, -1, tsy.dtype)
    out.append(("softmax_masked_bwd", f"{Gs}x{Ts}x{Ts}", fns))

    for hkv in (4, 2):
        q, k, v, do = r(B, S, H, D), r(B, S, hkv, D), r(B, S, hkv, D), r(B, S, H, D)
        Q, K, V, O, L, DO = t(q), t(k), t(v), t(q), t(np.zeros((B, H, S))), t(do)
        DQ, DK, DV = t(q), t(k), t(k)
        fw = {c: (lambda ks, Q=Q, K=K, V=V, O=O, L=L, hkv=hkv:
                  ks.attention(Q, K, V, O, L, None, H, hkv, True)) for c in ("qorus", "numpy")}
        bw = {c: (lambda ks, Q=Q, K=K, V=V, O=O, L=L, DO=DO, DQ=DQ, DK=DK, DV=DV, hkv=hkv:
                  ks.attention_bwd(Q, K, V, O, L, DO, DQ, DK, DV, None, H, hkv, True))
              for c in ("qorus", "numpy")}
        if torch is not None:
            F = torch.nn.functional
            qt = torch.from_numpy(q).transpose(1, 2).requires_grad_(True)
            kt = torch.from_numpy(k).transpose(1, 2).requires_grad_(True)
            vt = torch.from_numpy(v).transpose(1, 2).requires_grad_(True)
            rep = H // hkv

            def tf(qt=qt, kt=kt, vt=vt, rep=rep, F=F):
                with torch.no_grad():
                    return F.scaled_dot_product_attention(
                        qt, kt.repeat_interleave(rep, 1), vt.repeat_interleave(rep, 1),
                        is_causal=True)
            ot = F.scaled_dot_product_attention(qt, kt.repeat_interleave(rep, 1),
                                                vt.repeat_interleave(rep, 1), is_causal=True)
            dot = torch.from_numpy(do).transpose(1, 2)
            fw["torch"] = tf
            bw["torch"] = lambda ot=ot, dot=dot, qt=qt, kt=kt, vt=vt: torch.autograd.grad(
                ot, (qt, kt, vt), dot, retain_graph=True)
        tag = f"B{B} T{S} H{H} Hkv{hkv} D{D}"
        out.append(("attention", tag, fw))
        out.append(("attention_bwd", tag, bw))

    # a 7B-class decode step, and SmolLM2-135M's (9 heads, 3 kv heads, D=64, ~128 positions)
    for Bd, Hd, Hkd, Dd, mc, n in ((1, 32, 8, 128, 2048, 2048), (1, 9, 3, 64, 256, 128)):
        q = r(Bd, Hd, Dd)
        kc, vc = r(Bd, mc, Hkd, Dd), r(Bd, mc, Hkd, Dd)
        QD, KC, VC, OD = t(q), t(kc), t(vc), t(q)
        fns = {c: (lambda ks, QD=QD, KC=KC, VC=VC, OD=OD, n=n, Hd=Hd, Hkd=Hkd:
                   ks.attention_decode(QD, KC, VC, OD, n, None, Hd, Hkd)) for c in ("qorus", "numpy")}
        if torch is not None:
            tq = torch.from_numpy(q).reshape(Bd, Hd, 1, Dd)
            tk = torch.from_numpy(kc[:, :n]).transpose(1, 2)
            tv = torch.from_numpy(vc[:, :n]).transpose(1, 2)
            fns["torch"] = lambda tq=tq, tk=tk, tv=tv: torch.nn.functional.scaled_dot_product_attention(
                tq, tk, tv, enable_gqa=True)
        out.append(("attention_decode", f"H{Hd} Hkv{Hkd} D{Dd} ctx{n}", fns))
    return out


def main() -> None:
    a = _args()
    if a.threads > 0:
        os.environ.update(thread_env(a.threads))
    import numpy as np

    try:
        import qorus_core  # noqa: F401
    except ImportError:   # a source checkout without installing
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from qorus_core.kernels import NumpyKernels, c_status, get_kernels
    from qorus_core.kernels.bench import time_per_call
    from qorus_core.tensor import Tensor

    ok, why = c_status()
    if not ok:
        raise SystemExit(f"C kernels unavailable: {why}")
    ck, nk = get_kernels("c"), NumpyKernels()
    torch = None
    if not a.no_torch:
        try:
            import torch
            if a.threads > 0:
                torch.set_num_threads(a.threads)
        except ImportError:
            torch = None
    only = [p for p in a.only.split(",") if p]
    todo = [c for c in cases(np, Tensor, torch)
            if not only or any(c[0].startswith(p) for p in only)]
    # one library after the other, a pause between: NumPy's BLAS workers spin on after a
    # matmul, and the next C kernel timed beside them would get half its threads
    rows = [{"kernel": name, "size": size} for name, size, _ in todo]
    with np.errstate(all="ignore"):
        for row, (_, _, fns) in zip(rows, todo):
            row["qorus_ms"] = time_per_call(lambda f=fns["qorus"]: f(ck), a.runs) * 1e3
        for tier in a.simd:   # the same kernels with a SIMD tier forced
            ck.set_simd_path(tier)
            for row, (_, _, fns) in zip(rows, todo):
                row[f"qorus_{tier}_ms"] = time_per_call(lambda f=fns["qorus"]: f(ck), a.runs) * 1e3
            ck.set_simd_path("auto")
        time.sleep(0.5)
        for row, (_, _, fns) in zip(rows, todo):
            row["numpy_ms"] = time_per_call(lambda f=fns["numpy"]: f(nk), a.runs) * 1e3
            row["speedup_vs_numpy"] = row["numpy_ms"] / row["qorus_ms"]
    time.sleep(0.5)   # torch last: its OpenMP workers and the Qorus pool never overlap
    for row, (_, _, fns) in zip(rows, todo):
        if "torch" in fns:
            row["torch_ms"] = time_per_call(fns["torch"], a.runs) * 1e3
    if not a.json:
        print(f"threads: qorus {ck.threads}, simd {ck.simd_path}, numpy BLAS "
              f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, torch "
              f"{torch.get_num_threads() if torch is not None else '-'}; median of "
              f"{a.runs} runs, ms per call")
        print(f"{'kernel':24s} {'size':24s} {'C':>8s} "
              + "".join(f"{'C ' + t:>10s} " for t in a.simd)
              + f"{'NumPy':>8s} {'torch':>8s} {'C/NumPy':>8s} {'torch/C':>8s}"
              + "".join(f" {t + '/C':>10s}" for t in a.simd))
        for row in rows:
            tt = f"{row['torch_ms']:8.3f}" if "torch_ms" in row else f"{'-':>8}"
            vt = (f"{row['torch_ms'] / row['qorus_ms']:7.2f}x" if "torch_ms" in row
                  else f"{'-':>8}")
            print(f"{row['kernel']:24s} {row['size']:24s} {row['qorus_ms']:8.3f} "
                  + "".join(f"{row[f'qorus_{t}_ms']:10.3f} " for t in a.simd)
                  + f"{row['numpy_ms']:8.3f} {tt} {row['speedup_vs_numpy']:7.2f}x {vt}"
                  + "".join(f" {row[f'qorus_{t}_ms'] / row['qorus_ms']:9.2f}x" for t in a.simd))
    if a.json:
        print(json.dumps({"threads": ck.threads, "simd": ck.simd_path, "runs": a.runs,
                          "torch": getattr(torch, "__version__", None), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
