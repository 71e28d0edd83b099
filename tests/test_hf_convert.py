"""`qorus convert HF_DIR OUT.gguf` and `qorus generate/chat HF_DIR`.

Random-weight ``transformers`` decoders (llama, mistral, qwen2, gpt2, made here from config
objects) are saved with a tokenizer trained here with the ``tokenizers`` library: a
byte-level BPE (GPT-2's and Qwen2's pre-tokenizers) or a Llama-2-style SentencePiece BPE
with byte fallback. Converted at f32 and q8_0, each file is read by ``gguf.GGUFReader``
(names, types, shapes, keys) and by our loader, whose logits equal transformers' (f32;
q8_0 against transformers running the weights gguf-py dequantizes) and whose tokenizer
gives Hugging Face's ids. The directories also run as they are through ``load_llm`` and
the CLI: greedy generation and a chat turn equal transformers' token for token.
"""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from smollm2 import SMOL, needs_smollm2

from qorus_core.cli import main
from qorus_core.errors import CheckpointError, ConfigError
from qorus_core.io.convert import convert
from qorus_layers_llm import models
from qorus_layers_llm.chat import Conversation, chat_text, encode_chat_text
from qorus_layers_llm.generate import Generator, generate
from qorus_layers_llm.hf_tokenizer import load_tokenizer

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
tk = pytest.importorskip("tokenizers")
gguf = pytest.importorskip("gguf")

SIZES = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
ZEPHYR = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
          "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world, hello there! it's 2024.",
          "numbers 1 22 333 4444 and 3.14159", "def f(x):\n    return x * 2  # double\n",
          "the cat sat on the mat; the dog ate the log", "café naïve résumé déjà vu"] * 30
TEXTS = ["Hello world", "the quick brown fox jumps over the lazy dog", "  leading and trailing  ",
         "multiple   spaces\tand\ttabs\n\nnew lines\r\n", "numbers 1 22 333 4444 55555 3.14",
         "punctuation!?... --- (a) [b] {c} <x>", "it's don't we'll they're I'M YOU'RE",
         "café naïve résumé", "中文字符 日本語 한국어", "emoji 🦙🚀 ✅ done", "", " ", "x", "\n"]
SPECIAL_TEXTS = ["<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
                 "a<|endoftext|>b", "<|im_end|><|im_end|>"]
_QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
             r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


# -- tokenizers ----------------------------------------------------------------------------
def byte_bpe(pre: str = "gpt2"):
    """A byte-level BPE trained on CORPUS: GPT-2's pre-tokenizer, or Qwen2's split regex."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    t = tk.Tokenizer(models.BPE())
    if pre == "qwen2":
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(tk.Regex(_QWEN2_RE), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=360, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return t


def sentencepiece_bpe():
    """A Llama-2-style tokenizer.json: <unk> <s> </s>, the 256 <0xXX> byte tokens, pieces
    trained on CORPUS, every split of a piece into two pieces as a merge ranked by the piece
    (as transformers converts a SentencePiece model), Prepend("▁") + Replace(" ", "▁"), byte
    fallback, and "<s> $A" as the post-processor."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    t = tk.Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    pieces = sorted(t.get_vocab().items(), key=lambda kv: kv[1])
    names = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [p for p, _ in pieces]
    vocab = {p: i for i, p in enumerate(names)}
    merges = [(p[:j], p[j:]) for p in names[259:] for j in range(1, len(p))
              if p[:j] in vocab and p[j:] in vocab]
    s = tk.Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>",
                                fuse_unk=True))
    s.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    s.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                   decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    s.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                     special_tokens=[("<s>", 1)])
    s.add_special_tokens([tk.AddedToken(n, special=True, normalized=False) for n in names[:3]])
    return s


KINDS = {  # kind: (config class, model class, tokenizer, extra config, chat template)
    "llama": ("LlamaConfig", "LlamaForCausalLM", "spm", {}, ZEPHYR),
    "mistral": ("MistralConfig", "MistralForCausalLM", "gpt2", {"sliding_window": 32}, CHATML),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "qwen2", {"tie_word_embeddings": True}, CHATML),
}


def save_tokenizer(d, tok, chat_template: str, spm: bool) -> tf.PreTrainedTokenizerFast:
    roles = (dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>") if spm
             else dict(bos_token="<|endoftext|>", eos_token="<|im_end|>"))
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, **roles)
    fast.chat_template = chat_template
    fast.save_pretrained(d)
    return fast


def make_dir(d, kind: str, pad: int = 0):
    """A random ``kind`` model and its tokenizer saved in ``d``; the model's vocabulary is
    the tokenizer's plus ``pad`` ids. Returns (model, tokenizer) of transformers."""
    cfg_name, cls_name, tok_kind, extra, template = KINDS[kind]
    tok = sentencepiece_bpe() if tok_kind == "spm" else byte_bpe(tok_kind)
    fast = save_tokenizer(d, tok, template, tok_kind == "spm")
    ids = dict(bos_token_id=1, eos_token_id=2) if tok_kind == "spm" else dict(
        bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    cfg = getattr(tf, cfg_name)(vocab_size=tok.get_vocab_size() + pad, **SIZES, **ids, **extra)
    m = getattr(tf, cls_name)(cfg).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.uniform_(-0.5, 0.5)
    m.save_pretrained(d)
    return m, fast


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """kind -> (directory, transformers model, transformers tokenizer), made once."""
    out = {}
    for kind, pad in (("llama", 0), ("mistral", 0), ("qwen2", 5)):
        d = tmp_path_factory.mktemp(kind)
        out[kind] = (d, *make_dir(d, kind, pad))
    return out


def logits(model, ids: np.ndarray) -> np.ndarray:
    plan = model.plan(len(ids), shape=(ids.shape[1],))
    plan.x.a[...] = ids
    plan.forward()
    return plan.y.a.copy()


def hf_logits(m, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return m(torch.from_numpy(ids).long()).logits.numpy()


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# -- the GGUF's layout, read back with gguf-py ----------------------------------------------
def hf_names(kind: str, layers: int) -> dict[str, str]:
    """GGUF tensor name -> the HF one (llama.cpp's names, written out here independently)."""
    out = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
    block = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight":
             "post_attention_layernorm.weight", "attn_output.weight": "self_attn.o_proj.weight",
             **{f"attn_{p}.{w}": f"self_attn.{p}_proj.{w}" for p in "qkv" for w in ("weight", "bias")},
             **{f"ffn_{p}.weight": f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")}}
    for i in range(layers):
        out.update({f"blk.{i}.{g}": f"model.layers.{i}.{h}" for g, h in block.items()})
    return out


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row permutation undone (adjacent pairs back to half-split)."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_from_gguf(path, kind: str, like):
    """A transformers model of ``like``'s config holding the GGUF's weights, dequantized by
    gguf-py (q/k rows of a llama file permuted back)."""
    reader = gguf.GGUFReader(str(path))
    names, cfg = hf_names(kind, like.config.num_hidden_layers), like.config
    heads = {"attn_q": cfg.num_attention_heads, "attn_k": cfg.num_key_value_heads}
    state = {}
    for t in reader.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
        part = t.name.split(".")[-2]
        if kind != "qwen2" and part in heads:
            a = unpermute(a, heads[part])
        state[names[t.name]] = torch.from_numpy(np.array(a, np.float32))
    m = type(like)(cfg).eval()
    missing = m.load_state_dict(state, strict=False).missing_keys
    assert set(missing) <= {"lm_head.weight"} and (not missing or cfg.tie_word_embeddings)
    if cfg.tie_word_embeddings:
        m.tie_weights()
    return m, reader


def field(reader, key):
    """A metadata value as gguf-py reads it."""
    return reader.fields[key].contents()


# -- convert -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_f32_gguf_gives_transformers_logits(hf_dirs, kind, tmp_path, kernels):
    d, m, _ = hf_dirs[kind]
    out = tmp_path / "m.gguf"
    counts = convert(d, out, "f32")
    assert counts["quantized"] == 0
    llm = models.load_llm(out, context=32, kernels=kernels)
    ids = np.random.default_rng(1).integers(0, m.config.vocab_size, (2, 12)).astype(np.int32)
    got, want = logits(llm.model, ids), hf_logits(m, ids)
    print(f"{kind} f32 GGUF vs transformers: max rel diff {rel(got, want):.2e}")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_q8_0_gguf_layout_and_logits(hf_dirs, kind, tmp_path):
    d, m, _ = hf_dirs[kind]
    out = tmp_path / "m.gguf"
    assert main(["convert", str(d), str(out), "--type", "q8_0"]) == 0
    ref, reader = hf_from_gguf(out, kind, m)
    arch = "qwen2" if kind == "qwen2" else "llama"
    assert field(reader, "general.architecture") == arch
    assert field(reader, f"{arch}.block_count") == 2
    assert field(reader, f"{arch}.attention.head_count_kv") == 2
    assert field(reader, "general.file_type") == 7
    assert (f"{arch}.vocab_size" in reader.fields) == (arch == "llama")
    if kind == "mistral":                               # the window bounds the context
        assert field(reader, "llama.context_length") == 32
    tensors = {t.name: t for t in reader.tensors}
    want = ["token_embd.weight"] + [f"blk.{i}.{n}" for i in range(2) for n in (
        "attn_norm.weight", "attn_q.weight", *(["attn_q.bias"] if kind == "qwen2" else []),
        "attn_k.weight", *(["attn_k.bias"] if kind == "qwen2" else []), "attn_v.weight",
        *(["attn_v.bias"] if kind == "qwen2" else []), "attn_output.weight", "ffn_norm.weight",
        "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")] + ["output_norm.weight"]
    if kind != "qwen2":                                 # qwen2 is tied: no output tensor
        want.append("output.weight")
    assert sorted(tensors) == sorted(want)
    Q8, F32 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F32
    for name, t in tensors.items():
        assert t.tensor_type == (Q8 if name.endswith("weight") and "norm" not in name else F32), name
    V, D = m.config.vocab_size, 64
    assert tensors["token_embd.weight"].shape.tolist() == [D, V]           # ggml's ne order
    assert tensors["blk.0.attn_k.weight"].shape.tolist() == [D, 32]
    assert tensors["blk.1.ffn_down.weight"].shape.tolist() == [96, D]
    ids = np.random.default_rng(2).integers(0, V, (2, 12)).astype(np.int32)
    want_logits = hf_logits(ref, ids)
    exact = models.load_llm(out, context=32, dequantize=True)
    print(f"{kind} q8_0 GGUF (dequantized) vs transformers on the dequantized weights: "
          f"{rel(logits(exact.model, ids), want_logits):.2e}")
    np.testing.assert_allclose(logits(exact.model, ids), want_logits, rtol=1e-4, atol=1e-5)
    quant = models.load_llm(out, context=32).model     # the weights used as Q8_0
    from test_quant_prompt_int8 import float_prompts

    with float_prompts(quant.kernels):                  # several rows: dequantized panels
        prompt_f32 = logits(quant, ids)
    prompt = logits(quant, ids)                         # by default 8-bit activations
    gen = Generator(quant)
    gen.feed(ids[0, :-1].tolist())
    step = gen.step(int(ids[0, -1]))                    # one row: 8-bit activations too
    print(f"{kind} q8_0 GGUF as Q8_0 vs the same: prompt {rel(prompt, want_logits):.2e} "
          f"(float32 activations: {rel(prompt_f32, want_logits):.2e}), decode step "
          f"{rel(step, want_logits[0, -1]):.2e}")
    np.testing.assert_allclose(prompt_f32, want_logits, rtol=1e-4, atol=1e-5)
    assert rel(prompt, want_logits) < 2e-2 and rel(step, want_logits[0, -1]) < 2e-2
    assert rel(want_logits, hf_logits(m, ids)) < 5e-2          # q8_0 noise on the original


@pytest.mark.parametrize("kind", list(KINDS))
def test_tokenizer_and_chat_template_carried(hf_dirs, kind, tmp_path):
    d, _, fast = hf_dirs[kind]
    out = tmp_path / "m.gguf"
    convert(d, out, "q8_0")
    tok = models.load_llm(out, context=16).tokenizer
    hf = load_tokenizer(d)
    # special tokens inside the text only with the byte-level BPEs: after one, our
    # SentencePiece tokenizer puts no "▁" before the next piece (HF and llama.cpp do)
    texts = TEXTS + ([] if kind == "llama" else SPECIAL_TEXTS)
    for text in texts:
        assert tok.encode(text) == hf.encode(text), repr(text)
        assert tok.encode(text) == fast(text)["input_ids"], repr(text)
    reader = gguf.GGUFReader(str(out))
    assert field(reader, "tokenizer.chat_template") == KINDS[kind][4]
    assert field(reader, "tokenizer.ggml.model") == ("llama" if kind == "llama" else "gpt2")
    assert field(reader, "tokenizer.ggml.pre") == {"llama": "default", "mistral": "gpt-2",
                                                   "qwen2": "qwen2"}[kind]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there!"}]
    assert chat_text(tok, msgs) == fast.apply_chat_template(msgs, tokenize=False,
                                                            add_generation_prompt=True)
    if kind == "qwen2":                                 # 5 ids past the tokenizer's
        assert tok.tokens[-5:] == [f"[PAD{i}]" for i in range(tok.vocab_size - 5, tok.vocab_size)]
        assert list(tok.types[-5:]) == [5] * 5


def test_gpt2_layout(tmp_path):
    """GPT-2 as llama.cpp writes it: Conv1D weights transposed, attn_qkv fused, position_embd
    f32, output a copy of token_embd; a NumPy forward pass over the file's tensors and our
    GGUF loader (f32 and q8_0) give transformers' logits."""
    fast = save_tokenizer(tmp_path, byte_bpe(), CHATML, spm=False)
    V = len(fast)
    torch.manual_seed(0)
    m = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4,
                                         n_positions=64, bos_token_id=0, eos_token_id=2)).eval()
    m.save_pretrained(tmp_path)
    out = tmp_path / "g.gguf"
    convert(tmp_path, out, "f32")
    reader = gguf.GGUFReader(str(out))
    t = {x.name: np.asarray(x.data) for x in reader.tensors}
    assert field(reader, "general.architecture") == "gpt2"
    assert field(reader, "gpt2.feed_forward_length") == 256
    assert t["blk.0.attn_qkv.weight"].shape == (192, 64)
    np.testing.assert_array_equal(t["output.weight"], t["token_embd.weight"])
    ids = np.array([[5, 17, 42, 8, 99, 3]])
    np.testing.assert_allclose(gpt2_numpy(t, ids[0], 2, 4, 1e-5), hf_logits(m, ids)[0],
                               rtol=1e-4, atol=1e-4)
    convert(tmp_path, tmp_path / "q.gguf", "q8_0")
    types = {x.name: x.tensor_type for x in gguf.GGUFReader(str(tmp_path / "q.gguf")).tensors}
    assert types["position_embd.weight"] == gguf.GGMLQuantizationType.F32
    assert types["blk.0.attn_qkv.weight"] == gguf.GGMLQuantizationType.Q8_0
    want = hf_logits(m, ids)[0]
    for path, dequantize in ((out, False), (tmp_path / "q.gguf", True)):
        llm = models.load_llm(str(path), dequantize=dequantize)
        assert llm.model.net.type_name == "llm.GPT" and llm.context == 64
        gen = Generator(llm.model)
        for i, tok in enumerate(ids[0]):               # every position, through the KV cache
            got = gen.feed([int(tok)])
            assert rel(got, want[i]) < (1e-4 if not dequantize else 2e-2), (path.name, i, rel(got, want[i]))


def gpt2_numpy(t: dict, ids: np.ndarray, layers: int, heads: int, eps: float) -> np.ndarray:
    """GPT-2's logits from GGUF tensors (NumPy shapes), for the layout check."""
    def norm(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * t[p + ".weight"] + t[p + ".bias"]

    def lin(x, p):
        return x @ t[p + ".weight"].T + t[p + ".bias"]

    T = len(ids)
    x = t["token_embd.weight"][ids] + t["position_embd.weight"][:T]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(layers):
        b = f"blk.{i}."
        q, k, v = np.split(lin(norm(x, b + "attn_norm"), b + "attn_qkv"), 3, -1)
        q, k, v = (a.reshape(T, heads, -1).transpose(1, 0, 2) for a in (q, k, v))
        s = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1]) + mask
        p = np.exp(s - s.max(-1, keepdims=True))
        a = (p / p.sum(-1, keepdims=True)) @ v
        x = x + lin(a.transpose(1, 0, 2).reshape(T, -1), b + "attn_output")
        h = lin(norm(x, b + "ffn_norm"), b + "ffn_up")
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
        x = x + lin(h, b + "ffn_down")
    return norm(x, "output_norm") @ t["output.weight"].T


def test_bad_directories_name_the_file_and_field(hf_dirs, tmp_path, capsys):
    d, m, _ = hf_dirs["mistral"]
    out = tmp_path / "x.gguf"
    with pytest.raises(ConfigError, match="no installed plugin converts"):
        convert(tmp_path, out, "q8_0")                  # no config.json: nobody's directory
    bad = tmp_path / "bad"

    def variant(cfg: dict | None = None, drop: str | None = None, tokenizer: dict | None = None):
        import shutil

        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(d, bad)
        if cfg is not None:
            c = json.loads((bad / "config.json").read_text())
            (bad / "config.json").write_text(json.dumps({**c, **cfg}))
        if drop:
            (bad / drop).unlink()
        if tokenizer is not None:
            j = json.loads((bad / "tokenizer.json").read_text())
            (bad / "tokenizer.json").write_text(json.dumps({**j, **tokenizer}))
        return bad

    cases = [
        (dict(cfg={"model_type": "bert"}), CheckpointError, r"config.json: field 'model_type' is 'bert'"),
        (dict(cfg={"model_type": "phi3"}), CheckpointError, r"config.json: field 'model_type' is 'phi3'"),
        (dict(cfg={"attention_bias": True}), CheckpointError, r"config.json: field 'attention_bias'"),
        (dict(cfg={"head_dim": 8}), CheckpointError, r"config.json: field 'head_dim' is 8"),
        (dict(cfg={"vocab_size": 100}), ConfigError, r"config.json field 'vocab_size' is 100"),
        (dict(drop="tokenizer.json"), CheckpointError, r"tokenizer.json: not found"),
        (dict(drop="model.safetensors"), CheckpointError, r"no model.safetensors"),
        (dict(tokenizer={"pre_tokenizer": {"type": "Whitespace"}}), ConfigError,
         r"tokenizer.json: field 'pre_tokenizer' has no ByteLevel step"),
        (dict(tokenizer={"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "x"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}}), ConfigError,
         r"tokenizer.json: field 'pre_tokenizer' \(Split \+ ByteLevel\) is not one"),
        (dict(tokenizer={"normalizer": {"type": "Lowercase"}}), ConfigError,
         r"tokenizer.json: field 'normalizer' has a Lowercase step"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            convert(variant(**kwargs), out, "q8_0")
    assert not out.exists()
    assert main(["convert", str(variant(cfg={"model_type": "bert"})), str(out), "--type", "f32"]) == 2
    assert "field 'model_type' is 'bert'" in capsys.readouterr().err


def test_a_tensor_that_maps_to_nothing_is_refused(tmp_path):
    from qorus_core.io.safetensors import load_file, save_file

    make_dir(tmp_path, "mistral")
    st = tmp_path / "model.safetensors"
    tensors = dict(load_file(st))
    extra = {**tensors, "model.layers.0.self_attn.q_norm.weight": np.ones(16, np.float32)}
    save_file(extra, st)
    with pytest.raises(CheckpointError, match=r"tensors \['layers.0.self_attn.q_norm.weight'\]"):
        convert(tmp_path, tmp_path / "x.gguf", "f32")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, st)
    with pytest.raises(CheckpointError, match="tensor 'layers.1.mlp.up_proj.weight' is missing"):
        convert(tmp_path, tmp_path / "x.gguf", "f32")


# -- generate and chat on the directory ------------------------------------------------------
def streamed(tok, ids: list[int]) -> str:
    """What the CLI prints for ``ids``: each token's bytes as they come, special tokens left
    out, a cut or invalid UTF-8 sequence as U+FFFD (Hugging Face's decode of such random
    bytes can count the replacement characters differently)."""
    return b"".join(tok.token_bytes(i) for i in ids if i not in tok.special_ids).decode(
        "utf-8", "replace")


def hf_chat_ids(fast, msgs) -> list[int]:
    """transformers' ids of the chat prompt (its template, add_special_tokens=False)."""
    return fast.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                    return_dict=True)["input_ids"]


def hf_greedy(m, ids: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = m.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                         attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         pad_token_id=m.config.eos_token_id)
    return out[0, len(ids):].tolist()


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_cli_generate_on_a_directory_is_transformers_greedy(hf_dirs, kind, capsys):
    d, m, fast = hf_dirs[kind]
    msgs = [{"role": "user", "content": "the capital?"}]
    want_ids = hf_chat_ids(fast, msgs)
    want = hf_greedy(m, want_ids, 12)
    print(f"{kind}: prompt {len(want_ids)} tokens, transformers' greedy {want}")
    assert len(want_ids) + len(want) <= 64
    llm = models.load_llm(d, context=64)
    tok = llm.tokenizer
    ids = encode_chat_text(tok, chat_text(tok, msgs))
    assert ids == want_ids
    assert generate(llm.model, ids, 12, temperature=0.0, stop_ids=tok.stop_ids) == want
    capsys.readouterr()
    assert main(["generate", str(d), "--prompt", msgs[0]["content"], "--chat", "--greedy",
                 "--max-tokens", "12", "--ctx", "64", "--stats"]) == 0
    out, err = capsys.readouterr()
    assert out == streamed(tok, want) + "\n"
    assert "loaded" in err and "tok/s" in err


def test_cli_chat_on_a_directory(hf_dirs, monkeypatch, capsys):
    d, m, fast = hf_dirs["llama"]
    msgs = [{"role": "system", "content": "Brief."}, {"role": "user", "content": "hello"}]
    want_ids = hf_chat_ids(fast, msgs)
    want = hf_greedy(m, want_ids, 8)
    conv = Conversation(models.load_llm(d, context=64), system="Brief.")
    answer = conv.reply("hello", 8, temperature=0)
    assert answer == fast.decode(want, skip_special_tokens=True)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/exit\n"))
    assert main(["chat", str(d), "--system", "Brief.", "--greedy", "--max-tokens", "8",
                 "--ctx", "64"]) == 0
    assert capsys.readouterr().out == streamed(conv.llm.tokenizer, want) + "\n"


def test_load_llm_directory_errors(hf_dirs, tmp_path):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(hf_dirs["qwen2"][0], d)
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 100000]}))
    with pytest.raises(ConfigError, match=r"generation_config.json: field 'eos_token_id'"):
        models.load_llm(d)
    (d / "generation_config.json").unlink()
    (d / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="no tokenizer"):
        models.load_llm(d)


# -- against llama.cpp's own output ------------------------------------------------------------
@needs_smollm2
def test_smollm2_converts_back_to_llama_cpps_file(tmp_path):
    """SmolLM2's GGUF (written by llama.cpp's convert_hf_to_gguf.py, then llama-quantize) as
    the Hugging Face directory it came from (q/k rows permuted back, tokenizer.json rebuilt
    from its vocabulary, SmolLM's pre-tokenizer), converted back at q4_1: every metadata key
    llama.cpp wrote has our value and type, the tensors come in its order, and each Q4_1 and
    F32 tensor is llama.cpp's byte for byte (its token_embd is Q8_0: llama-quantize's rule)."""
    from qorus_core import to_float32
    from qorus_core.io.gguf import GGUFFile
    from qorus_core.io.safetensors import save_file
    from qorus_core.kernels import get_kernels

    f = GGUFFile(SMOL)
    md, k = f.metadata, get_kernels("numpy")
    names = hf_names("llama", 30)
    heads = {"attn_q": 9, "attn_k": 3}
    state = {}
    for g in f.tensors:
        w = f.tensor(g)
        a = np.array(w, np.float32) if isinstance(w, np.ndarray) else to_float32(w, k)
        part = g.split(".")[-2]
        state[names[g]] = unpermute(a, heads[part]) if part in heads else a
    save_file(state, tmp_path / "model.safetensors", {"format": "pt"})
    del state
    toks, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    from tokenizers import decoders, pre_tokenizers
    from tokenizers import models as tkm

    t = tk.Tokenizer(tkm.BPE(vocab={s: i for i, s in enumerate(toks)},
                             merges=[tuple(m.split(" ")) for m in md["tokenizer.ggml.merges"]]))
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False)])
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens([tk.AddedToken(s, special=True, normalized=False)
                          for s, ty in zip(toks, types) if ty == 3])
    t.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|im_end|>", "add_prefix_space": False,
        "chat_template": md["tokenizer.chat_template"]}))
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "max_position_embeddings": 8192, "rope_theta": 100000.0, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}))
    out = tmp_path / "smol.gguf"
    convert(tmp_path, out, "q4_1")
    o = GGUFFile(out)
    for key, v in md.items():
        if key.startswith("general.") and key != "general.architecture":
            continue                                   # the model card's name, license, ...
        mine = o.metadata.get(key)
        assert type(mine) is type(v), key
        assert np.array_equal(np.asarray(mine), np.asarray(v)), key
    assert list(o.tensors) == list(f.tensors)
    differ = [n for n in f.tensors if not np.array_equal(o.raw(n), f.raw(n))]
    assert differ == ["token_embd.weight"] and f.tensors[differ[0]].type_name == "Q8_0"
