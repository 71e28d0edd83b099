"""qwen2 and phi3 GGUFs through ``load_llm``: random-weight ``transformers`` models made here
from config objects (seeded; non-zero biases, norm gains and large enough weights for the
logits to spread), written with llama.cpp's tensor names and metadata keys
(convert_hf_to_gguf.py: qwen2's q/k/v biases, phi3's fused ``attn_qkv`` and gate-then-up
``ffn_up``, q/k rows unpermuted for NEOX RoPE) as F32 and as Q8_0 (our kernels' quantizer).
The logits of every position and of the last one (through the KV cache) match transformers'
within 1e-4 relative, and greedy generation matches ``generate`` token for token; for Q8_0
against transformers holding the dequantized weights. Bad files fail naming file and key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_llama import FF, HKV, LAYERS, D, H, tokenizer_metadata

from qorus_core import QWeight, Tensor, to_float32
from qorus_core.errors import ConfigError, GGUFError
from qorus_core.io.gguf import write_gguf
from qorus_core.kernels import get_kernels
from qorus_layers_llm.generate import Generator, generate
from qorus_layers_llm.gpt import GPT
from qorus_layers_llm.models import load_llm

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

CTX = 64
DH = D // H
# arch -> (config class, model class, config extras, tokenizer model (tiny_llama), metadata)
KINDS = {
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"rope_theta": 1e6, "rms_norm_eps": 1e-6},
              "gpt2", {}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM",
             {"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "sliding_window": None,
              "pad_token_id": 0},
             "llama", {"rope.dimension_count": np.uint32(DH),
                       "rope.scaling.original_context_length": np.uint32(CTX),
                       "attention.sliding_window": np.uint32(0)}),   # None is written as 0
}
# Hugging Face name in layer i (after "model.layers.{i}.") -> llama.cpp's (after "blk.{i}.")
_COMMON = {"input_layernorm.weight": "attn_norm.weight",
           "post_attention_layernorm.weight": "ffn_norm.weight",
           "self_attn.o_proj.weight": "attn_output.weight", "mlp.down_proj.weight": "ffn_down.weight"}
NAMES = {
    "qwen2": {**_COMMON, **{f"self_attn.{n}_proj.{w}": f"attn_{n}.{w}" for n in "qkv"
                            for w in ("weight", "bias")},
              "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight"},
    "phi3": {**_COMMON, "self_attn.qkv_proj.weight": "attn_qkv.weight",
             "mlp.gate_up_proj.weight": "ffn_up.weight"},
}
_TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight"}
PROMPT = "the man and the ant"


def hf_model(arch: str, tied: bool, seed: int = 0):
    """A random ``transformers`` model of ``arch``: weights N(0, 0.2) (embeddings N(0, 1)),
    norm gains 1 + N(0, 0.1), biases U(-0.5, 0.5)."""
    cfg_name, cls_name, extra, tok_model, _ = KINDS[arch]
    vocab = len(tokenizer_metadata(tok_model)["tokenizer.ggml.tokens"])
    cfg = getattr(tf, cfg_name)(vocab_size=vocab, hidden_size=D, intermediate_size=FF,
                                num_hidden_layers=LAYERS, num_attention_heads=H,
                                num_key_value_heads=HKV, max_position_embeddings=CTX,
                                tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2, **extra)
    m = getattr(tf, cls_name)(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(torch.rand(p.shape, generator=g) - 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed" in name else 0.2))
    return m


def gguf_tensors(arch: str, m) -> dict[str, np.ndarray]:
    """The model's tensors under llama.cpp's names, as float32 arrays."""
    params = {n: p.detach().numpy().astype(np.float32) for n, p in m.named_parameters()}
    t = {theirs: params[ours] for ours, theirs in _TOP.items() if ours in params}
    for i in range(LAYERS):
        for ours, theirs in NAMES[arch].items():
            t[f"blk.{i}.{theirs}"] = params[f"model.layers.{i}.{ours}"]
    return t


def gguf_metadata(arch: str, m) -> dict:
    """llama.cpp's metadata keys for ``m`` (convert_hf_to_gguf.py), with the tokenizer's."""
    c, a = m.config, arch + "."
    meta = {"general.architecture": arch, "general.name": f"tiny-{arch}",
            a + "block_count": np.uint32(LAYERS), a + "context_length": np.uint32(CTX),
            a + "embedding_length": np.uint32(D), a + "feed_forward_length": np.uint32(FF),
            a + "attention.head_count": np.uint32(H), a + "attention.head_count_kv": np.uint32(HKV),
            a + "rope.freq_base": np.float32(c.rope_parameters["rope_theta"]),
            a + "attention.layer_norm_rms_epsilon": np.float32(c.rms_norm_eps)}
    meta.update({a + k: v for k, v in KINDS[arch][4].items()})
    return {**meta, **tokenizer_metadata(KINDS[arch][3])}


def quantize(a: np.ndarray, qtype: str) -> QWeight:
    out = QWeight.empty(qtype, a.shape[0], a.shape[1])
    get_kernels().quantize(Tensor(np.ascontiguousarray(a)), out, qtype)
    return out


def write(path: Path, arch: str, m, qtype: str = "f32", meta: dict | None = None,
          tensors: dict | None = None, drop: str | None = None) -> tuple[Path, dict]:
    """Write ``m`` as a GGUF (2-D weights in ``qtype``; ``meta``/``tensors`` added or replaced,
    ``drop`` left out); returns the path and the tensors written."""
    t: dict = gguf_tensors(arch, m)
    if qtype != "f32":
        t = {k: quantize(v, qtype) if v.ndim == 2 else v for k, v in t.items()}
    t.update(tensors or {})
    t.pop(drop, None)
    write_gguf(path, {**gguf_metadata(arch, m), **(meta or {})}, t)
    return path, t


def dequantized_model(arch: str, m, written: dict):
    """A copy of ``m`` holding the written weights, dequantized to float32."""
    ref = hf_model(arch, m.config.tie_word_embeddings)
    params = dict(ref.named_parameters())
    back = {v: k for k, v in _TOP.items()}
    for i in range(LAYERS):
        back.update({f"blk.{i}.{theirs}": f"model.layers.{i}.{ours}"
                     for ours, theirs in NAMES[arch].items()})
    with torch.no_grad():
        for name, w in written.items():
            a = to_float32(w, get_kernels()) if isinstance(w, QWeight) else w
            params[back[name]].copy_(torch.from_numpy(np.asarray(a, np.float32)))
    return ref


def hf_logits(m, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return m(torch.from_numpy(ids).long()).logits.numpy()


def all_logits(llm, ids: np.ndarray) -> np.ndarray:
    """Logits of every position of each row of ``ids`` (one pass, the prompt plan)."""
    plan = llm.model.plan(len(ids), shape=(ids.shape[1],))
    plan.x.a[...] = ids
    plan.forward()
    return plan.y.a.copy()


def rel(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference relative to the largest logit."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def check_logits(llm, m, seed: int = 1, tol: float = 1e-4) -> None:
    """All positions of two sequences (one pass) and the last position of a prompt fed
    through the KV cache in chunks (16 + 4 + 2, then a continuation), against ``m``."""
    vocab = llm.hparams.vocab_size
    ids = np.random.default_rng(seed).integers(0, vocab, (2, 22)).astype(np.int32)
    want = hf_logits(m, ids)
    assert rel(all_logits(llm, ids), want) < tol
    gen = Generator(llm.model, max_chunk=16)
    gen.feed(ids[0, :-3])
    assert rel(gen.feed(ids[0, -3:]), want[0, -1]) < tol


def hf_generate(m, prompt: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = m.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False,
                         pad_token_id=0)
    return out[0, len(prompt):].tolist()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(arch, tied, qtype) -> (transformers model, GGUF path, tensors written), made once."""
    cache: dict = {}

    def get(arch: str, tied: bool = False, qtype: str = "f32"):
        key = (arch, tied, qtype)
        if key not in cache:
            m = hf_model(arch, tied)
            path = tmp_path_factory.mktemp(arch) / f"{arch}-{'tied' if tied else 'untied'}-{qtype}.gguf"
            cache[key] = (m, *write(path, arch, m, qtype))
        return cache[key]

    return get


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("arch", list(KINDS))
def test_f32_logits_match_transformers(made, arch, tied):
    m, path, _ = made(arch, tied)
    llm = load_llm(path, context=CTX)
    hp = llm.hparams
    assert (hp.arch, hp.tied, hp.n_kv_heads, llm.context) == (arch, tied, HKV, CTX)
    assert isinstance(llm.model.net, GPT) and llm.model.net.tie_embeddings == tied
    check_logits(llm, m)


@pytest.mark.parametrize("arch", list(KINDS))
def test_greedy_generation_matches_transformers(made, arch):
    m, path, _ = made(arch)
    llm = load_llm(path, context=CTX)
    prompt = llm.tokenizer.encode(PROMPT)
    assert llm.tokenizer.decode(prompt, skip_special=True) == PROMPT
    got = generate(llm.model, prompt, 24, temperature=0.0, stop_ids=llm.tokenizer.stop_ids)
    assert got == hf_generate(m, prompt, 24)


def test_fused_phi3_weights_are_views_of_the_map(made):
    """q, k, v and gate, up are row ranges of the mapped tensors (F32 and Q8_0), not copies."""
    for qtype in ("f32", "q8_0"):
        _, path, _ = made("phi3", qtype=qtype)
        llm = load_llm(path, context=CTX)
        store, f = llm.model.store, llm.gguf
        for ours, theirs, start in (("attn.wq", "attn_qkv", 0), ("attn.wk", "attn_qkv", D),
                                    ("attn.wv", "attn_qkv", D + HKV * DH),
                                    ("ffn.w_gate", "ffn_up", 0), ("ffn.w_up", "ffn_up", FF)):
            w, whole = store.weight(f"blocks.1.{ours}"), f.raw(f"blk.1.{theirs}.weight")
            assert isinstance(w, QWeight) == (qtype == "q8_0")
            a = w.a if isinstance(w, QWeight) else w.a.view(np.uint8).reshape(-1)
            row = whole.nbytes // f.tensors[f"blk.1.{theirs}.weight"].shape[0]
            assert np.shares_memory(a, whole)
            assert a.ctypes.data == whole.ctypes.data + start * row
        assert llm.model.memory_report()["params"] <= 64


@pytest.mark.parametrize("arch", list(KINDS))
def test_q8_0_matches_transformers_with_the_dequantized_weights(made, arch):
    """dequantize=True: float32 products, 1e-4 like F32 (greedy generation too). The quantized
    path: a prompt (several rows) with float32 activations dequantizes weight panels into a
    float32 GEMM, so it holds 1e-4 as well; by default a prompt's Q8_0 products and a decode
    step (one row) round their activations to 8 bits a block of 32 (ggml's Q8_0 dot
    product), which moved these logits by up to 2.6e-2 of the largest over random prompts
    (decode), as much as on the tiny llama (2.5e-2): 5e-2 bounds both, as in
    test_llm_generate; a misplaced weight moves them by O(1)."""
    from test_quant_prompt_int8 import float_prompts

    m, path, written = made(arch, qtype="q8_0")
    ref = dequantized_model(arch, m, written)
    check_logits(load_llm(path, context=CTX, dequantize=True), ref)
    llm = load_llm(path, context=CTX)
    assert isinstance(llm.model.store.weight("blocks.0.attn.wk"), QWeight)
    with float_prompts(llm.model.kernels):
        check_logits(llm, ref)
    check_logits(llm, ref, tol=5e-2)                     # the 8-bit prompt path
    ids = llm.tokenizer.encode(PROMPT)
    gen = Generator(llm.model)
    gen.feed(ids[:-1])
    assert rel(gen.step(ids[-1]), hf_logits(ref, np.array([ids]))[0, -1]) < 5e-2
    dq = load_llm(path, context=CTX, dequantize=True)
    assert generate(dq.model, ids, 16, temperature=0.0) == hf_generate(ref, ids, 16)


# -- bad files ------------------------------------------------------------------------------------
def _refused(path: Path, error: type, match: str, **kw) -> None:
    with pytest.raises(error, match=match) as e:
        load_llm(path, **kw)
    assert str(e.value).startswith(str(path)), str(e.value)


def test_phi3_rope_scaling_is_refused(tmp_path):
    m = hf_model("phi3", False)
    factors = {"rope_factors_long.weight": np.full(DH // 2, 2.0, np.float32),
               "rope_factors_short.weight": np.ones(DH // 2, np.float32)}
    p, _ = write(tmp_path / "longrope.gguf", "phi3", m, tensors=factors,
                 meta={"phi3.rope.scaling.attn_factor": np.float32(1.19)})
    _refused(p, ConfigError, "tensor 'rope_factors_long.weight': scaled RoPE")
    p, _ = write(tmp_path / "attn.gguf", "phi3", m, meta={"phi3.rope.scaling.attn_factor": np.float32(1.19)})
    _refused(p, ConfigError, "metadata phi3.rope.scaling.attn_factor 1.19")
    p, _ = write(tmp_path / "yarn.gguf", "qwen2", hf_model("qwen2", False),
                 meta={"qwen2.rope.scaling.type": "yarn", "qwen2.rope.scaling.factor": np.float32(4)})
    _refused(p, ConfigError, "metadata qwen2.rope.scaling.type 'yarn'")
    p, _ = write(tmp_path / "partial.gguf", "phi3", m, meta={"phi3.rope.dimension_count": np.uint32(12)})
    _refused(p, ConfigError, "partial RoPE")


def test_wrong_fused_shapes_and_missing_biases_name_the_tensor(tmp_path):
    m = hf_model("phi3", False)
    qkv = np.zeros((3 * D, D), np.float32)            # as if head_count_kv were head_count
    p, _ = write(tmp_path / "qkv.gguf", "phi3", m, tensors={"blk.1.attn_qkv.weight": qkv})
    _refused(p, GGUFError, r"tensor 'blk.1.attn_qkv.weight' has shape \(192, 64\), the metadata "
                           r"implies \(128, 64\)")
    up = np.zeros((FF, D), np.float32)                # up without the gate
    p, _ = write(tmp_path / "up.gguf", "phi3", m, tensors={"blk.0.ffn_up.weight": up})
    _refused(p, GGUFError, r"'blk.0.ffn_up.weight' has shape \(96, 64\), the metadata implies \(192, 64\)")
    p, _ = write(tmp_path / "split.gguf", "phi3", m, drop="blk.0.attn_qkv.weight")
    _refused(p, GGUFError, "tensor 'blk.0.attn_qkv.weight' is missing")
    q = hf_model("qwen2", False)
    p, _ = write(tmp_path / "nobias.gguf", "qwen2", q, drop="blk.1.attn_k.bias")
    _refused(p, GGUFError, r"'blk.1.attn_k.bias' is missing \(metadata qwen2.block_count promises 2")
    bad = np.zeros(HKV * DH, np.float32)
    bad[3] = np.inf
    p, _ = write(tmp_path / "inf.gguf", "qwen2", q, tensors={"blk.0.attn_v.bias": bad})
    _refused(p, GGUFError, r"'blk.0.attn_v.bias' holds a non-finite value \(inf at index 3\)")


def test_phi3_sliding_window_bounds_the_context(tmp_path):
    m = hf_model("phi3", False)
    p, _ = write(tmp_path / "swa.gguf", "phi3", m, meta={"phi3.attention.sliding_window": np.uint32(16)})
    _refused(p, ConfigError, "metadata phi3.attention.sliding_window 16 is shorter than the "
                             "context 32", context=32)
    assert load_llm(p).context == 16                   # the default stops at the window
    assert load_llm(p, context=16).hparams.sliding_window == 16
