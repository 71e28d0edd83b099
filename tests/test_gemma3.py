"""Gemma 3 GGUF models: a tiny random-weight gemma3 file written here, laid out as llama.cpp's
converter does (norm gains + 1, q/k rows unpermuted), against Hugging Face transformers'
Gemma3ForCausalLM with the same weights (logits within 1e-4 on both kernel sets, decoding
through the KV cache, a sliding window shorter than the prompt, greedy generation token for
token); the decode step's replay and allocations, the chat template, metadata errors, the
layers' gradients and configs. At the end, the real Gemma 3 270M Q4_K_M (tests/gemma3_file.py)."""

from __future__ import annotations

import numpy as np
import pytest
from gemma3_file import gemma3_path, needs_gemma3

from qorus_core import Model, layer_from_dict, layer_to_dict
from qorus_core.cli import main
from qorus_core.errors import ConfigError, GGUFError
from qorus_core.io.gguf import GGUFFile, write_gguf
from qorus_core.kernels import get_kernels
from qorus_core.kernels.numpy_quant import QWeight
from qorus_core.tensor import Tensor
from qorus_core.testing import check_gradients, trace_allocations
from qorus_layers_llm import GeGLUFeedForward, Gemma3, GemmaAttention, ScaledEmbedding
from qorus_layers_llm.chat import Conversation, chat_text, encode_chat_text, render_chat
from qorus_layers_llm.gemma3 import GEMMA_TEMPLATE, Gemma3HParams, load_gemma3
from qorus_layers_llm.generate import Generator, generate
from qorus_layers_llm.models import load_llm
from qorus_layers_llm.sampler import Sampler

D_MODEL, HEADS, KV_HEADS, HEAD_DIM, FF, LAYERS, WINDOW = 64, 4, 2, 32, 96, 7, 8
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
PIECES = ["\u2581", *"abcdefghijklmnopqrstuvwxyz?", "\u2581the", "\u2581a", "th", "he",
          "in", "an", "user", "model", "\u2581is", "\u2581of"]
USER_DEFINED = ["\n", "\n\n"]           # Gemma's newline runs: user-defined tokens
# HF name (model.layers.N.<name>) -> llama.cpp's GGUF name (blk.N.<name>)
BLOCK = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
         "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
         "self_attn.o_proj.weight": "attn_output.weight",
         "self_attn.q_norm.weight": "attn_q_norm.weight",
         "self_attn.k_norm.weight": "attn_k_norm.weight",
         "post_attention_layernorm.weight": "post_attention_norm.weight",
         "pre_feedforward_layernorm.weight": "ffn_norm.weight",
         "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
         "mlp.down_proj.weight": "ffn_down.weight",
         "post_feedforward_layernorm.weight": "post_ffw_norm.weight"}


def vocabulary() -> tuple[list[str], np.ndarray, np.ndarray]:
    """A SentencePiece vocabulary: Gemma's first specials, the byte tokens, a few pieces."""
    tokens = SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + USER_DEFINED + PIECES
    types = np.array([3] * len(SPECIALS) + [6] * 256 + [4] * len(USER_DEFINED)
                     + [1] * len(PIECES), np.int32)
    scores = np.array([0.0] * (len(SPECIALS) + 256 + len(USER_DEFINED))
                      + [-float(i) for i in range(len(PIECES))], np.float32)
    return tokens, types, scores


VOCAB = len(vocabulary()[0])


def hf_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights under Hugging Face's names; norm gains are HF's w (the scale is 1 + w)."""
    rng = np.random.default_rng(seed)
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    shapes = {"self_attn.q_proj.weight": (q, D_MODEL), "self_attn.k_proj.weight": (kv, D_MODEL),
              "self_attn.v_proj.weight": (kv, D_MODEL), "self_attn.o_proj.weight": (D_MODEL, q),
              "self_attn.q_norm.weight": (HEAD_DIM,), "self_attn.k_norm.weight": (HEAD_DIM,),
              "mlp.gate_proj.weight": (FF, D_MODEL), "mlp.up_proj.weight": (FF, D_MODEL),
              "mlp.down_proj.weight": (D_MODEL, FF)}
    w = {"model.embed_tokens.weight": rng.normal(0, 0.15, (VOCAB, D_MODEL)),
         "model.norm.weight": rng.normal(0, 0.3, D_MODEL)}
    for i in range(LAYERS):
        for name in BLOCK:
            shape = shapes.get(name, (D_MODEL,))
            w[f"model.layers.{i}.{name}"] = rng.normal(0, 0.3 if len(shape) == 1 else 0.15, shape)
    return {k: v.astype(np.float32) for k, v in w.items()}


def _q8(a: np.ndarray) -> QWeight:
    out = QWeight.empty("q8_0", a.shape[0], a.shape[1])
    get_kernels("numpy").quantize(Tensor(np.ascontiguousarray(a)), out, "q8_0")
    return out


def metadata(window: int | None = WINDOW) -> dict:
    tokens, types, scores = vocabulary()
    k = "gemma3."
    meta = {"general.architecture": "gemma3", "general.name": "tiny-gemma3",
            k + "context_length": np.uint32(128), k + "embedding_length": np.uint32(D_MODEL),
            k + "block_count": np.uint32(LAYERS), k + "feed_forward_length": np.uint32(FF),
            k + "attention.head_count": np.uint32(HEADS),
            k + "attention.head_count_kv": np.uint32(KV_HEADS),
            k + "attention.key_length": np.uint32(HEAD_DIM),
            k + "attention.value_length": np.uint32(HEAD_DIM),
            k + "attention.layer_norm_rms_epsilon": np.float32(1e-6),
            k + "rope.freq_base": np.float32(1e6),
            "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.bos_token_id": np.uint32(2), "tokenizer.ggml.eos_token_id": np.uint32(1),
            "tokenizer.ggml.unknown_token_id": np.uint32(3),
            "tokenizer.ggml.padding_token_id": np.uint32(0),
            "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_space_prefix": False}
    if window is not None:
        meta[k + "attention.sliding_window"] = np.uint32(window)
    return meta


def write_tiny_gemma3(path, weights: dict[str, np.ndarray], qtype: str = "f32",
                      meta: dict | None = None, drop: str | None = None):
    """The weights as llama.cpp's converter writes them: norm gains + 1, q/k unpermuted,
    the 2-D ones in ``qtype`` ('f32' or 'q8_0'); ``drop`` leaves one tensor out."""
    def conv(name: str, a: np.ndarray):
        if name.endswith("norm.weight"):
            return a + np.float32(1)
        return _q8(a) if qtype == "q8_0" and a.ndim == 2 else a

    t = {"token_embd.weight": conv("", weights["model.embed_tokens.weight"]),
         "output_norm.weight": conv("norm.weight", weights["model.norm.weight"])}
    for i in range(LAYERS):
        for hf, gg in BLOCK.items():
            t[f"blk.{i}.{gg}"] = conv(hf, weights[f"model.layers.{i}.{hf}"])
    if drop:
        del t[drop]
    write_gguf(path, metadata() if meta is None else meta, t)
    return path


@pytest.fixture(scope="module")
def weights():
    return hf_weights()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, weights):
    return write_tiny_gemma3(tmp_path_factory.mktemp("gemma3") / "tiny.gguf", weights)


@pytest.fixture(scope="module")
def hf(weights):
    """transformers' Gemma3ForCausalLM holding ``weights`` (eager attention)."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    cfg = tf.Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=D_MODEL, intermediate_size=FF, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM,
        max_position_embeddings=128, sliding_window=WINDOW, query_pre_attn_scalar=HEAD_DIM,
        rms_norm_eps=1e-6, tie_word_embeddings=True, attn_implementation="eager")
    assert cfg.layer_types[5] == "full_attention" and cfg.layer_types.count("full_attention") == 1
    m = tf.Gemma3ForCausalLM(cfg).eval()
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if "embed_scale" not in k], missing
    return m


def hf_logits(m, ids: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return m(torch.from_numpy(np.atleast_2d(ids)).long()).logits.numpy()


def prompt_logits(llm, ids: list[int]) -> np.ndarray:
    """Logits of every position from one fresh pass of len(ids) positions."""
    gen = Generator(llm.model, max_chunk=len(ids))
    gen.seq.run.last_position_only = False            # a generator computes the last alone
    plan = gen.seq.plan(1, shape=(len(ids),))
    gen.feed(ids)
    return plan.y.a[0].copy()


IDS = np.random.default_rng(1).integers(0, VOCAB, 20).astype(np.int32)   # > WINDOW tokens


# ------------------------------------------------------------------------- against transformers
@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_logits_match_transformers(tiny, hf, ks):
    """Every position of a 20-token prompt (window 8), and a batch of two prompts."""
    llm = load_gemma3(tiny, kernels=ks)
    assert llm.model.net.type_name == "llm.Gemma3" and llm.hparams.window == WINDOW
    want = hf_logits(hf, IDS)[0]
    np.testing.assert_allclose(prompt_logits(llm, IDS.tolist()), want, rtol=1e-4, atol=1e-5)
    batch = np.random.default_rng(2).integers(0, VOCAB, (2, 12)).astype(np.int32)
    plan = llm.model.plan(2, shape=(12,))
    plan.x.a[...] = batch
    plan.forward()
    np.testing.assert_allclose(plan.y.a, hf_logits(hf, batch), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_cached_decoding_and_chunked_prompts_match(tiny, hf, ks):
    """Token by token through the KV cache, past the window, and prompts in chunks of 4 (so
    chunks continue a cached prompt, before, across and after the window filling)."""
    llm = load_gemma3(tiny, kernels=ks)
    want = hf_logits(hf, IDS)[0]
    gen = Generator(llm.model)
    steps = [gen.feed(IDS[:3].tolist()).copy()] + [gen.step(int(t)).copy() for t in IDS[3:]]
    np.testing.assert_allclose(np.array(steps), want[2:], rtol=1e-4, atol=1e-5)
    for n in (5, 9, 20):
        chunks = Generator(llm.model, max_chunk=4)
        np.testing.assert_allclose(chunks.feed(IDS[:n].tolist()), want[n - 1], rtol=1e-4,
                                   atol=1e-5)


def test_greedy_generation_matches_transformers(tiny, hf):
    import torch

    llm = load_gemma3(tiny)
    prompt = IDS[:6].tolist()
    got = generate(llm.model, prompt, 16, temperature=0.0)     # positions 6..21: past the window
    with torch.no_grad():
        want = hf.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                           pad_token_id=0, eos_token_id=None)[0, len(prompt):].tolist()
    assert got == want


def test_window_matters(tmp_path, weights):
    """The same weights with a window wider than the prompt give the same logits up to the
    window, others past it (so the tests above would notice a window that was ignored);
    with none, every layer is global (RoPE base 1e6 everywhere)."""
    wide = load_gemma3(write_tiny_gemma3(tmp_path / "wide.gguf", weights, meta=metadata(128)))
    llm = load_gemma3(write_tiny_gemma3(tmp_path / "w.gguf", weights))
    glob = load_gemma3(write_tiny_gemma3(tmp_path / "g.gguf", weights, meta=metadata(None)))
    assert glob.hparams.window is None and not any(glob.model.net.is_local(i) for i in range(LAYERS))
    a, b = prompt_logits(llm, IDS.tolist()), prompt_logits(wide, IDS.tolist())
    np.testing.assert_allclose(a[:WINDOW], b[:WINDOW], rtol=1e-5, atol=1e-5)
    assert np.abs(a[-1] - b[-1]).max() > 1e-2


def test_window_spanning_the_context_never_binds(tiny, hf):
    """A context no longer than the window: local layers keep their RoPE base and take the
    plain cache (the window cannot bind), with the same logits."""
    llm = load_gemma3(tiny, context=WINDOW)
    assert all(llm.model.net.layer_window(i) is None for i in range(LAYERS))
    assert llm.hparams.kv_cache_bytes(WINDOW) == 2 * LAYERS * WINDOW * KV_HEADS * HEAD_DIM * 4
    gen = Generator(llm.model)
    np.testing.assert_allclose(gen.feed(IDS[:WINDOW].tolist()), hf_logits(hf, IDS[:WINDOW])[0, -1],
                               rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- decode step, replay
def test_replay_captured_before_the_window_holds_past_it(tiny):
    """The step captured at positions 4..6 (< window) replays positions up to 39 with the
    plain forward's logits, bit for bit; and a reset sequence replays from the start."""
    llm = load_gemma3(tiny, kernels="c")
    plain, fast = Generator(llm.model, replay=False), Generator(llm.model)
    ids = np.random.default_rng(3).integers(0, VOCAB, 40).tolist()
    for gen in (plain, fast):
        gen.feed(ids[:4])
    for i, t in enumerate(ids[4:]):
        a, b = plain.step(t), fast.step(t)
        np.testing.assert_array_equal(a, b)
        if i == 2:                            # the third recorded step derives it
            assert fast.replay is not None and fast.pos < WINDOW, fast.replay_error
    for gen in (plain, fast):
        gen.reset()
        gen.feed(ids[:2])
    for t in ids[2:14]:
        np.testing.assert_array_equal(plain.step(t), fast.step(t))


@pytest.mark.parametrize("replay", [False, True])
def test_decode_step_allocates_no_array(tmp_path, weights, replay):
    """Neither the plan's decode step nor its replay makes an array, across the window."""
    llm = load_gemma3(write_tiny_gemma3(tmp_path / "q8.gguf", weights, "q8_0"), kernels="c")
    gen = Generator(llm.model, replay=replay)
    sampler = Sampler(gen.vocab_size, temperature=0.8, top_k=20, top_p=0.9, seed=1)
    state = {"logits": gen.feed(IDS[:3].tolist())}

    def decode_step():
        state["logits"] = gen.step(sampler.sample(state["logits"]))

    for _ in range(4):                        # compiles the plan; three steps are recorded
        decode_step()
    assert (gen.replay is not None) == replay, gen.replay_error
    trace = trace_allocations(decode_step, repeat=20)   # positions 7..26
    assert trace.array_bytes == 0, trace.where
    assert trace.peak_bytes < 16_000, trace


def test_quantized_file_stays_close(tmp_path, weights, tiny):
    """Q8_0 weights: within a few percent of the float32 file's logits (decode's 8-bit
    activations included)."""
    q8 = load_gemma3(write_tiny_gemma3(tmp_path / "q8.gguf", weights, "q8_0"))
    assert isinstance(q8.model.store.weight("blocks.0.attn.wq"), QWeight)
    want = prompt_logits(load_gemma3(tiny), IDS.tolist())
    assert np.abs(prompt_logits(q8, IDS.tolist()) - want).max() < 0.05 * np.abs(want).max()
    gen = Generator(q8.model)
    gen.feed(IDS[:-1].tolist())
    assert np.abs(gen.step(int(IDS[-1])) - want[-1]).max() < 0.05 * np.abs(want).max()


# ------------------------------------------------------------------------- chat, CLI
def test_chat_template_and_stop(tiny):
    llm = load_llm(tiny)
    tok = llm.tokenizer
    assert tok.chat_template == GEMMA_TEMPLATE and tok.vocab["<end_of_turn>"] in tok.stop_ids
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    assert chat_text(tok, msgs) == ("<bos><start_of_turn>user\nWhat is the capital of France?"
                                    "<end_of_turn>\n<start_of_turn>model\n")
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " hi "},
             {"role": "assistant", "content": "ok"}, {"role": "user", "content": "again"}]
    assert render_chat(turns, GEMMA_TEMPLATE, "<bos>") == (
        "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\nok"
        "<end_of_turn>\n<start_of_turn>user\nagain<end_of_turn>\n<start_of_turn>model\n")
    with pytest.raises(ConfigError, match="alternate"):
        render_chat(turns[2:], GEMMA_TEMPLATE)
    ids = encode_chat_text(tok, chat_text(tok, msgs))
    assert ids[:2] == [2, 4] and ids.count(2) == 1     # one <bos>, then <start_of_turn>
    nl, nl2 = tok.vocab["\n"], tok.vocab["\n\n"]
    assert tok.encode("a\n\nb", add_bos=False) == [tok.vocab["a"], nl2, tok.vocab["b"]]
    assert tok.decode([tok.vocab["a"], nl, 5, nl2], skip_special=True) == "a\n\n\n"
    assert nl not in tok.special_ids and 5 in tok.special_ids   # text, <end_of_turn> not
    conv = Conversation(llm)
    conv.reply("the", 3, temperature=0)
    conv.reply("a", 3, temperature=0)
    assert len(conv.messages) == 4 and conv.gen.pos > conv.last_fed


def test_cli_chat_generate(tiny, capsys):
    assert main(["generate", str(tiny), "--prompt", "the", "--chat", "--greedy",
                 "--max-tokens", "3", "--stats"]) == 0
    assert "tok/s" in capsys.readouterr().err


# ------------------------------------------------------------------------- bad files
K = "gemma3."
BAD = [
    (lambda m: m.update({K + "attention.head_count_kv": np.uint32(3)}), GGUFError,
     "gemma3.attention.head_count_kv: 3 KV heads do not divide"),
    (lambda m: m.update({K + "attention.key_length": "256"}), GGUFError,
     "gemma3.attention.key_length: the string '256', expected an integer"),
    (lambda m: m.update({K + "attention.value_length": np.uint32(16)}), GGUFError,
     "gemma3.attention.value_length: 16 differs"),
    (lambda m: m.pop(K + "block_count"), GGUFError, "gemma3.block_count is missing"),
    (lambda m: m.update({K + "block_count": np.uint32(2**32 - 1)}), GGUFError,
     r"'blk.7.attn_norm.weight' is missing \(metadata gemma3.block_count promises"),
    (lambda m: m.update({K + "attention.layer_norm_rms_epsilon": np.float32(np.nan)}), GGUFError,
     "layer_norm_rms_epsilon: nan is not a finite number"),
    (lambda m: m.update({K + "attention.sliding_window": np.float32(8)}), GGUFError,
     "gemma3.attention.sliding_window: float32 8.0, expected an integer"),
    (lambda m: m.update({K + "feed_forward_length": np.uint32(95)}), GGUFError,
     "'blk.0.ffn_gate.weight' has shape"),
    (lambda m: m.update({K + "final_logit_softcapping": np.float32(30)}), ConfigError,
     "gemma3.final_logit_softcapping 30.0: logit soft-capping is not supported"),
    (lambda m: m.update({K + "rope.scaling.type": "linear", K + "rope.scaling.factor":
                         np.float32(8)}), ConfigError, "scaled RoPE is not supported"),
    (lambda m: m.update({K + "rope.dimension_count": np.uint32(16)}), ConfigError,
     "partial RoPE"),
]


@pytest.mark.parametrize("edit, error, match", BAD)
def test_bad_metadata_names_the_key(tmp_path, weights, edit, error, match):
    meta = metadata()
    edit(meta)
    path = write_tiny_gemma3(tmp_path / "bad.gguf", weights, meta=meta)
    with pytest.raises(error, match=match) as info:
        load_gemma3(path)
    assert str(path) in str(info.value)


def test_bad_tensors_and_context(tmp_path, weights):
    with pytest.raises(GGUFError, match="'blk.3.attn_k_norm.weight' is missing"):
        load_gemma3(write_tiny_gemma3(tmp_path / "a.gguf", weights, drop="blk.3.attn_k_norm.weight"))
    w = dict(weights)
    w["model.layers.2.self_attn.q_norm.weight"] = np.full(HEAD_DIM, np.inf, np.float32)
    with pytest.raises(GGUFError, match="'blk.2.attn_q_norm.weight' holds a non-finite value"):
        load_gemma3(write_tiny_gemma3(tmp_path / "b.gguf", w))
    with pytest.raises(ConfigError, match="context must be positive"):
        load_gemma3(write_tiny_gemma3(tmp_path / "c.gguf", weights), context=0)
    with pytest.raises(ConfigError, match="KV caches"):
        load_gemma3(tmp_path / "c.gguf", context=2**40)


# ------------------------------------------------------------------------- the layers
def test_layer_configs_round_trip():
    net = Gemma3(VOCAB, D_MODEL, LAYERS, HEADS, 32, n_kv_heads=KV_HEADS, head_dim=HEAD_DIM,
                 d_ff=FF, window=WINDOW)
    again = layer_from_dict(layer_to_dict(net))
    assert layer_to_dict(again) == layer_to_dict(net)
    assert [net.is_local(i) for i in range(LAYERS)] == [True] * 5 + [False, True]
    with pytest.raises(ConfigError, match="head dimension 7 must be even"):
        GemmaAttention(16, 2, head_dim=7)
    with pytest.raises(ConfigError, match="multiple of n_kv_heads=3"):
        GemmaAttention(16, 4, 3)


GRADS = [
    pytest.param(lambda: GemmaAttention(16, 4, 2, head_dim=6, window=3), (7, 16), "f32",
                 id="attention-window"),
    pytest.param(lambda: GemmaAttention(16, 2, 1, head_dim=8, scale=0.3), (5, 16), "f32",
                 id="attention-global"),
    pytest.param(lambda: GeGLUFeedForward(12, 20), (4, 12), "f32", id="geglu"),
    pytest.param(lambda: ScaledEmbedding(9, 6, 2.5), (5,), "i32", id="scaled-embedding"),
]


@pytest.mark.parametrize("make, shape, dtype", GRADS)
def test_gradients(make, shape, dtype, kernels):
    assert check_gradients(make(), shape, input_dtype=dtype, kernels=kernels,
                           input_range=(0, 9) if dtype == "i32" else None).checked > 0


def test_train_window_is_a_band(kernels):
    """Without a cache (training plans) the window is the same band: one pass of a sliding
    GemmaAttention equals the cached prompt path of the same layer."""
    layer = GemmaAttention(16, 2, 1, head_dim=8, window=3)
    plain = Model(layer, (9, 16), kernels=kernels, seed=3)
    cached = Model(GemmaAttention(16, 2, 1, head_dim=8, window=3, max_len=9), (9, 16),
                   kernels=kernels, seed=3)
    x = np.random.default_rng(4).standard_normal((1, 9, 16)).astype(np.float32)
    np.testing.assert_allclose(plain.predict(x), cached.predict(x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def real():
    return gemma3_path()


@needs_gemma3
def test_real_model_answers(real):
    """Greedy answers: the pretrained 270M (the file is the base model, no instruction tuning)
    completes a question-and-answer prompt; through the chat template it runs to its turn's
    end or the token budget, the chat prompt's logits being checked against PyTorch below."""
    llm = load_llm(real)
    assert llm.hparams.window == 512 and llm.hparams.head_dim == 256
    tok = llm.tokenizer
    out = generate(llm.model, tok.encode("Q: What is the capital of France?\nA:"), 12,
                   temperature=0, stop_ids=tok.stop_ids)
    answer = tok.decode(out, skip_special=True)
    chat = Conversation(llm).reply("What is the capital of France?", 24, temperature=0)
    print(f"\nGemma 3 270M: Q/A {answer!r}; chat {chat!r}")
    assert "Paris" in answer


@pytest.fixture(scope="module")
def reference(real):
    """transformers' Gemma3ForCausalLM built from the file's metadata, holding gguf.quants'
    dequantization of its tensors (norms minus llama.cpp's 1): an independent reference."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    gguf = pytest.importorskip("gguf")
    with GGUFFile(real) as f:
        hp = Gemma3HParams.from_gguf(f)
    cfg = tf.Gemma3TextConfig(
        vocab_size=hp.vocab_size, hidden_size=hp.d_model, intermediate_size=hp.d_ff,
        num_hidden_layers=hp.n_layers, num_attention_heads=hp.n_heads,
        num_key_value_heads=hp.n_kv_heads, head_dim=hp.head_dim, max_position_embeddings=1024,
        sliding_window=hp.window, query_pre_attn_scalar=hp.head_dim, rms_norm_eps=hp.eps,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": hp.rope_theta},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
        tie_word_embeddings=True, attn_implementation="eager")
    m = tf.Gemma3ForCausalLM(cfg).eval()
    to_hf = {gg: hf for hf, gg in BLOCK.items()}
    state = {}
    for t in gguf.GGUFReader(real).tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).reshape([int(d) for d in t.shape[::-1]])
        if t.name.endswith("norm.weight"):
            a = a - 1.0
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        else:
            _, i, rest = t.name.split(".", 2)
            name = f"model.layers.{i}.{to_hf[rest]}"
        state[name] = torch.from_numpy(np.ascontiguousarray(a, np.float32))
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if "embed_scale" not in k], missing
    return m


@needs_gemma3
def test_real_logits_match_a_pytorch_reference(real, reference):
    """Last-position logits of the chat prompt: our float32 (dequantized) path within 1e-3 of
    the reference, and the quantized one's prompt path with float32 activations; its prompt
    path by default (8-bit activations for its Q8_0 / Q6_K tensors, INT8_PROMPT) and its
    decode step (8-bit activations) within 5e-2; the distances are printed."""
    from test_quant_prompt_int8 import float_prompts

    f32 = load_gemma3(real, context=64, dequantize=True)
    tok = f32.tokenizer
    ids = encode_chat_text(tok, chat_text(tok, [{"role": "user",
                                                "content": "What is the capital of France?"}]))
    want = hf_logits(reference, np.array(ids))[0, -1]
    scale = np.abs(want).max()
    got = Generator(f32.model).feed(ids)
    rel = np.abs(got - want).max() / scale
    q = load_gemma3(real, context=64)
    rel_prompt = np.abs(Generator(q.model).feed(ids) - want).max() / scale
    with float_prompts(q.model.kernels):
        rel_prompt_f32 = np.abs(Generator(q.model).feed(ids) - want).max() / scale
    gen = Generator(q.model)
    gen.feed(ids[:-1])
    step = gen.step(ids[-1])                  # one row: ggml's 8-bit activations
    rel_step = np.abs(step - want).max() / scale
    print(f"\nGemma 3 270M last-position logits vs PyTorch (max |diff| / max |logit|): float32 "
          f"weights {rel:.2e}; quantized weights: prompt path {rel_prompt:.2e} (float32 "
          f"activations: {rel_prompt_f32:.2e}), decode step {rel_step:.2e}")
    assert rel < 1e-3 and rel_prompt_f32 < 1e-3
    assert rel_prompt < 0.05 and rel_step < 0.05
    assert int(np.argmax(got)) == int(np.argmax(want))


@needs_gemma3
def test_real_sliding_window_matches_the_reference(real, reference):
    """600 positions, past the 512-position window: the prompt (chunks of 128) and a decode
    step at the last position, float32 weights, against the reference."""
    f32 = load_gemma3(real, context=640, dequantize=True)
    ids = f32.tokenizer.encode("Once upon a time, in a land far away, " * 60)[:600]
    want = hf_logits(reference, np.array(ids))[0, -1]
    scale = np.abs(want).max()
    prompt = Generator(f32.model).feed(ids)
    gen = Generator(f32.model)
    gen.feed(ids[:-1])
    step = gen.step(ids[-1])
    rel = (np.abs(prompt - want).max() / scale, np.abs(step - want).max() / scale)
    print(f"\nGemma 3 270M at position 599 vs PyTorch: prompt {rel[0]:.2e}, decode {rel[1]:.2e}")
    assert max(rel) < 1e-3


@needs_gemma3
@pytest.mark.parametrize("replay", [False, True])
def test_real_decode_step_allocates_nothing(real, replay):
    """Q5_0/Q4_K/Q6_K/Q8_0 weights used in place; the decode step (and its replay) makes no
    array, past the 512-position window too (a context of 640)."""
    llm = load_gemma3(real, kernels="c", context=640)
    assert llm.model.memory_report()["params"] <= 64 and llm.weight_bytes > 200e6
    gen = Generator(llm.model, replay=replay)
    sampler = Sampler(gen.vocab_size, temperature=0.7, top_k=40, top_p=0.95, seed=0)
    state = {"logits": gen.feed(llm.tokenizer.encode("Once upon a time " * 125))}  # 502

    def step():
        state["logits"] = gen.step(sampler.sample(state["logits"]))

    for _ in range(4):                            # the plan, then three recorded steps
        step()
    assert (gen.replay is not None) == replay, gen.replay_error
    trace = trace_allocations(step, repeat=20)   # positions 506..525
    assert trace.array_bytes == 0, trace.where
    assert trace.peak_bytes < 32_000, trace      # nothing vocabulary-sized (1 MB)


@needs_gemma3
def test_real_replayed_decoding_is_the_plan_bit_for_bit(real):
    llm = load_gemma3(real, kernels="c", context=256)
    ids = llm.tokenizer.encode("Q: What is the capital of France?\nA:")
    runs = []
    for replay in (False, True):
        gen = Generator(llm.model, replay=replay)
        logits, steps = gen.feed(ids), []
        for _ in range(12):
            logits = gen.step(int(logits.argmax()))
            steps.append(logits.copy())
        assert (gen.replay is not None) == replay, gen.replay_error
        runs.append(np.array(steps))
    np.testing.assert_array_equal(runs[0], runs[1])
