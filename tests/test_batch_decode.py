"""Batched decoding (``batch_decode``): several sequences of one model in one decode step.
The rows kernels give each row bit for bit what the one-row kernels give it (C and NumPy);
slots decoded together, joining and leaving, get the logits and the greedy tokens each gets
decoded alone, on quantized and float32 weights; a warmed-up batched step (replayed from C)
allocates nothing; models the step cannot batch are named and left to step in turn."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_llama import write_tiny_llama

from qorus_core import Model, QWeight, Tensor
from qorus_core.errors import KernelError, ShapeError
from qorus_core.kernels import get_kernels
from qorus_core.kernels.numpy_qformats import FORMATS, random_blocks
from qorus_core.testing import trace_allocations
from qorus_layers_llm.batch_decode import BatchDecoder
from qorus_layers_llm.generate import Generator
from qorus_layers_llm.gpt import GPT
from qorus_layers_llm.llama import load_llama

PROMPTS = ["the tin man", "an ant", "the man and the ant in the", "a", "he he he", "tin"]
STEPS = 24


@pytest.fixture(scope="module", params=["q8_0", "q4_1", "f32"])
def tiny(request, tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("bd") / f"tiny_{request.param}.gguf",
                            request.param)


def _ks(kernels):
    return get_kernels(kernels)


def _weight(qtype: str, n: int, k: int, rng) -> QWeight:
    if not FORMATS[qtype].quantizable:                 # the K-quants: random valid blocks
        return QWeight(random_blocks(qtype, n, k, rng), qtype, n, k)
    w = QWeight.empty(qtype, n, k)
    get_kernels("numpy").quantize(Tensor(rng.standard_normal((n, k)).astype(np.float32)), w,
                                  qtype)
    return w


def test_matmul_rows_is_each_row_alone(kernels):
    k, rng = _ks(kernels), np.random.default_rng(0)
    for qtype in ("q8_0", "q4_0", "q4_1", "f16", "q4_k", "q6_k"):
        K = 256 if qtype.endswith("_k") else 96
        w = _weight(qtype, 300, K, rng)
        for M in (2, 5, 8):
            x = Tensor(rng.standard_normal((M, K)).astype(np.float32))
            y = Tensor(np.empty((M, 300), np.float32))
            k.matmul_rows(x, w, y)
            for m in range(M):
                one = Tensor(np.empty((1, 300), np.float32))
                k.matmul_q(Tensor(x.a[m:m + 1].copy()), w, one)
                assert np.array_equal(one.a[0], y.a[m]), (qtype, M, m)


@pytest.mark.parametrize("tier", ["portable", "avx2", "avx512"])
def test_matmul_rows_is_each_row_alone_on_every_tier(threads, tier):
    """Rows share a dot kernel's calls only where its rows get the one-row arithmetic (the
    AVX-512 Q4 and Q8_0 kernels); on every tier each row is the decode kernel's, bit for bit,
    and for any thread count."""
    from test_simd_tiers import need

    need(threads, tier)
    threads.set_simd_path(tier)
    rng = np.random.default_rng(2)
    for qtype in ("q8_0", "q4_0", "q4_1", "f16", "q5_0"):
        w = _weight(qtype, 520, 128, rng)
        x = Tensor(rng.standard_normal((11, 128)).astype(np.float32))
        for n in (1, 2):
            threads.set_threads(n)
            for M in (2, 3, 8, 11):
                y = Tensor(np.empty((M, 520), np.float32))
                threads.matmul_rows(Tensor(x.a[:M].copy()), w, y)
                for m in range(M):
                    one = Tensor(np.empty((1, 520), np.float32))
                    threads.matmul_q(Tensor(x.a[m:m + 1].copy()), w, one)
                    assert np.array_equal(one.a[0], y.a[m]), (tier, qtype, n, M, m)


def _one_row(k, x: np.ndarray, w: QWeight) -> np.ndarray:
    """Each row of x through the one-row decode product (``matmul_q`` with M = 1)."""
    out = np.empty((x.shape[0], w.n), np.float32)
    for m in range(x.shape[0]):
        one = Tensor(np.empty((1, w.n), np.float32))
        k.matmul_q(Tensor(x[m:m + 1].copy()), w, one)
        out[m] = one.a[0]
    return out


def _rows_input(M: int, K: int, rng) -> np.ndarray:
    """Rows of mixed scales, with zero, NaN and inf blocks (a NaN / inf block's row is NaN)."""
    x = (rng.standard_normal((M, K)) * rng.choice([1e-3, 1.0, 50.0], (M, 1))).astype(np.float32)
    x[0, :32] = 0.0                                    # a block whose scale is 0
    if M > 2:
        x[2, 5] = np.nan
    if M > 3 and K > 32:
        x[3, 40] = -np.inf
    return x


@pytest.mark.parametrize("tier", ["portable", "avx2", "avx512"])
def test_linears_rows_is_each_row_alone_on_every_tier(threads, tier):
    """The batched step's products (q/k/v in one call, any row count, each weight's rows in
    groups of eight, every block tail of a row: whole quads, a pair, an odd block) give each
    row the one-row decode product's bits, on each tier and for 1 and 2 threads."""
    from test_simd_tiers import need

    need(threads, tier)
    threads.set_simd_path(tier)
    rng = np.random.default_rng(3)
    for qtype in ("q4_1", "q4_0", "q8_0"):
        for K in (32, 64, 96, 160, 576):
            ws = [_weight(qtype, n, K, rng) for n in (37, 8, 19)]
            x = _rows_input(70, K, rng)
            want = [_one_row(threads, x, w) for w in ws]
            for n in (1, 2):
                threads.set_threads(n)
                for M in (1, 2, 4, 5, 8, 9, 17, 70):
                    ys = [Tensor(np.full((M, w.n), 7.0, np.float32)) for w in ws]
                    threads.linears_rows(Tensor(x[:M].copy()), ws, ys)
                    for i, y in enumerate(ys):
                        np.testing.assert_array_equal(y.a, want[i][:M],
                                                      err_msg=f"{tier} {qtype} K={K} n={n} "
                                                              f"M={M} weight {i}")
                        assert np.array_equal(np.isnan(y.a), np.isnan(want[i][:M]))
    for qtype in ("q6_k", "q4_k", "q5_0", "iq4_nl", "f16"):   # the other formats' paths
        ws = [_weight(qtype, n, 256, rng) for n in (13, 6)]
        x = _rows_input(9, 256, rng)
        for n in (1, 2):
            threads.set_threads(n)
            ys = [Tensor(np.empty((9, w.n), np.float32)) for w in ws]
            threads.linears_rows(Tensor(x.copy()), ws, ys)
            for w, y in zip(ws, ys):
                np.testing.assert_array_equal(y.a, _one_row(threads, x, w),
                                              err_msg=f"{tier} {qtype} n={n}")


def test_linears_rows_mixed_formats_and_errors(kernels):
    """Weights of several formats in one call (each run of one format its own C call), a
    float32 x only, and the check's errors before anything is written."""
    k, rng = _ks(kernels), np.random.default_rng(4)
    ws = [_weight("q8_0", 11, 256, rng), _weight("q6_k", 5, 256, rng), _weight("q6_k", 3, 256, rng),
          _weight("q4_1", 9, 256, rng), _weight("q4_1", 2, 256, rng), _weight("q4_1", 4, 256, rng),
          _weight("q4_1", 6, 256, rng)]
    x = rng.standard_normal((6, 256)).astype(np.float32)
    ys = [Tensor(np.empty((6, w.n), np.float32)) for w in ws]
    k.linears_rows(Tensor(x), ws, ys)
    for w, y in zip(ws, ys):
        assert np.array_equal(y.a, _one_row(k, x, w)), w
    bad = [Tensor(np.zeros((6, 11), np.float32)), Tensor(np.zeros((6, 4), np.float32))]
    with pytest.raises(KernelError, match=r"linears_rows: x \(6, 256\) @ W\^T"):
        k.linears_rows(Tensor(x), ws[:2], bad)
    assert not bad[0].a.any()
    with pytest.raises(KernelError, match=r"ws\[1\] must be a QWeight"):
        k.linears_rows(Tensor(x), [ws[0], Tensor(np.zeros((5, 256), np.float32))], ys[:2])


def test_rope_and_attention_rows_are_each_row_alone(kernels):
    k, rng = _ks(kernels), np.random.default_rng(1)
    H, Hkv, D, S, L = 4, 2, 16, 5, 1100
    pos = np.array([0, 63, 64, 65, 700, 1099], np.int32)       # one chunk and several
    slot = np.array([4, 0, 2, 1, 3, 0], np.int32)
    B = len(pos)
    x = rng.standard_normal((B, 1, H, D)).astype(np.float32)
    y = Tensor(x.copy())
    k.rope_rows(y, y, Tensor(pos), 10000.0, True)
    kc = Tensor(rng.standard_normal((S, L, Hkv, D)).astype(np.float32))
    vc = Tensor(rng.standard_normal((S, L, Hkv, D)).astype(np.float32))
    q = Tensor(rng.standard_normal((B, H, D)).astype(np.float32))
    out = Tensor(np.empty((B, H, D), np.float32))
    k.attention_decode_rows(q, kc, vc, out, Tensor(slot), Tensor(pos), None, H, Hkv)
    for b in range(B):
        one = Tensor(x[b:b + 1].copy())
        k.rope(one, one, int(pos[b]), 10000.0, True)
        assert np.array_equal(one.a, y.a[b:b + 1]), b
        o = Tensor(np.empty((1, H, D), np.float32))
        s = int(slot[b])
        k.attention_decode(Tensor(q.a[b:b + 1].copy()), Tensor(kc.a[s:s + 1].copy()),
                           Tensor(vc.a[s:s + 1].copy()), o, int(pos[b]) + 1, None, H, Hkv)
        assert np.array_equal(o.a[0], out.a[b]), b


def test_rows_out_of_range_are_refused_before_any_write(kernels):
    k = _ks(kernels)
    cache = Tensor(np.zeros((2, 4, 8), np.float32))
    src = Tensor(np.ones((2, 1, 8), np.float32))
    with pytest.raises(KernelError, match=r"pos\[1\]=4 with 1 position"):
        k.kv_store_rows(src, cache, Tensor(np.array([0, 1], np.int32)),
                        Tensor(np.array([3, 4], np.int32)))
    assert not cache.a.any()
    with pytest.raises(KernelError, match="at most 64"):
        k.rope_rows(Tensor(np.zeros((65, 1, 1, 2), np.float32)),
                    Tensor(np.zeros((65, 1, 1, 2), np.float32)),
                    Tensor(np.zeros(65, np.int32)), 10000.0, False)


def _alone(model, ids):
    """Greedy tokens and every logits row of ``ids`` decoded by a Generator of its own."""
    g = Generator(model)
    logits, toks, rows = g.feed(ids), [], []
    for _ in range(STEPS):
        toks.append(int(np.argmax(logits)))
        rows.append(logits.copy())
        logits = g.step(toks[-1])
    return toks, np.array(rows)


def test_slots_decoded_together_get_what_each_gets_alone(tiny, kernels):
    llm = load_llama(tiny, kernels=kernels)
    tok = llm.tokenizer
    prompts = [tok.encode(p) for p in PROMPTS]
    want = [_alone(llm.model, ids) for ids in prompts]
    dec = BatchDecoder(llm.model, len(prompts))
    assert dec.why_not is None
    logits: dict[int, np.ndarray] = {}
    toks: dict[int, list[int]] = {i: [] for i in range(len(prompts))}
    rows: dict[int, list[np.ndarray]] = {i: [] for i in range(len(prompts))}
    late = 4                                           # slot 4 joins at step 5 (continuous)
    for i, ids in enumerate(prompts):
        if i != late:
            logits[i] = dec.generators[i].feed(ids).copy()
    for step in range(STEPS + 5):
        if step == 5:
            logits[late] = dec.generators[late].feed(prompts[late]).copy()
        live = [i for i in logits if len(toks[i]) < STEPS and not (i == 3 and step >= 9)]
        if not live:
            break
        for i in live:
            toks[i].append(int(np.argmax(logits[i])))
            rows[i].append(logits[i])
        out = dec.step(live, [toks[i][-1] for i in live])    # slot 3 leaves after 9 steps
        for j, i in enumerate(live):
            logits[i] = out[j].copy()
    for i, (wt, wr) in enumerate(want):
        n = len(toks[i])
        assert toks[i] == wt[:n] and n == (9 if i == 3 else STEPS), i
        assert np.array_equal(np.array(rows[i]), wr[:n]), f"slot {i}: logits differ"


def test_a_batched_step_allocates_nothing(tmp_path):
    llm = load_llama(write_tiny_llama(tmp_path / "t.gguf", "q8_0"), kernels="c")
    dec = BatchDecoder(llm.model, 4)
    ids = llm.tokenizer.encode("the tin man")
    for g in dec.generators:
        g.feed(ids)
    state = {"t": [5, 6, 7, 8]}

    def step():
        out = dec.step([0, 1, 2, 3], state["t"])
        state["t"] = [int(np.argmax(out[i])) for i in range(4)]

    for _ in range(4):                                 # plan made, three steps recorded
        step()
    assert dec._plans[4].replay is not None, dec._plans[4].replay_error
    trace = trace_allocations(step, repeat=20)
    assert trace.array_bytes == 0, trace.where
    assert trace.peak_bytes < 16_000, trace


def test_bad_steps_are_refused(tmp_path):
    llm = load_llama(write_tiny_llama(tmp_path / "t.gguf", "q8_0"), context=8)
    dec = BatchDecoder(llm.model, 2)
    for g in dec.generators:
        g.feed([5, 6, 7])
    with pytest.raises(ShapeError, match="distinct slots"):
        dec.step([1, 1], [3, 4])
    with pytest.raises(ShapeError, match="outside the vocabulary"):
        dec.step([0, 1], [3, 10**6])
    for _ in range(5):
        dec.step([0, 1], [3, 4])
    with pytest.raises(ShapeError, match="context of 8 positions is full"):
        dec.step([0, 1], [3, 4])


def test_learned_positions_are_not_batched():
    net = GPT(300, 32, 1, 2, max_len=16, positional="learned")
    model = Model(net, (16,), input_dtype="i32", seed=0)
    dec = BatchDecoder(model, 2)
    assert "learned positions" in dec.why_not
    with pytest.raises(Exception, match="cannot be decoded together"):
        dec.step([0, 1], [1, 2])
    a, b = dec.generators                              # the slots still decode, in turn
    np.testing.assert_array_equal(a.feed([1, 2, 3]), b.feed([1, 2, 3]))
