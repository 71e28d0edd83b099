"""Hugging Face decoders (Llama, Mistral, Qwen2, GPT-2; random weights made here with
``transformers`` from config objects, saved with save_pretrained) as an llm.GPT: logits within
1e-4 relative of ``transformers`` with the same weights, greedy generation token for token,
tied embeddings, and the errors naming the file and field."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import CheckpointError
from qorus_layers_llm.generate import generate
from qorus_layers_llm.hf_checkpoint import read_json
from qorus_layers_llm.hf_decoder import decoder_spec, load_decoder

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
SIZES = dict(vocab_size=101, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
KINDS = {"llama": ("LlamaConfig", "LlamaForCausalLM", {}),
         "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
         "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None})}


def make(kind, tmp_path, **extra):
    cfg_name, cls_name, more = KINDS[kind]
    torch.manual_seed(0)
    m = getattr(tf, cls_name)(getattr(tf, cfg_name)(**SIZES, **more, **extra)).eval()
    with torch.no_grad():                      # non-zero biases (Qwen2's q/k/v) are checked
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.uniform_(-0.5, 0.5)
    m.save_pretrained(tmp_path)
    return m


def logits(model, ids):
    plan = model.plan(len(ids), shape=(ids.shape[1],))
    plan.x.a[...] = ids
    plan.forward()
    return plan.y.a.copy()


@pytest.mark.parametrize("ks", ["c", "numpy"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_logits_match_transformers(tmp_path, kind, ks):
    m = make(kind, tmp_path)
    model, spec = load_decoder(tmp_path, context=32, kernels=ks)
    assert spec.qkv_bias == (kind == "qwen2")
    ids = np.random.default_rng(1).integers(0, 101, (2, 12)).astype(np.int32)
    with torch.no_grad():
        want = m(torch.from_numpy(ids).long()).logits.numpy()
    np.testing.assert_allclose(logits(model, ids), want, rtol=1e-4, atol=1e-5)


def test_tied_embeddings(tmp_path):
    m = make("llama", tmp_path, tie_word_embeddings=True)
    model, spec = load_decoder(tmp_path, context=16)
    assert spec.tied and "head.weight" not in model.parameters()
    ids = np.arange(8, dtype=np.int32)[None]
    with torch.no_grad():
        want = m(torch.from_numpy(ids).long()).logits.numpy()
    np.testing.assert_allclose(logits(model, ids), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_greedy_generation_matches_transformers(tmp_path, kind):
    m = make(kind, tmp_path)
    model, _ = load_decoder(tmp_path, context=40)
    prompt = [5, 17, 42, 8, 99, 3]
    got = generate(model, prompt, 12, temperature=0.0)
    with torch.no_grad():
        want = m.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                          pad_token_id=0)[0, len(prompt):].tolist()
    assert got == want


def test_errors_name_the_file_and_field(tmp_path):
    make("llama", tmp_path)
    path = tmp_path / "config.json"
    cfg = read_json(path)
    with pytest.raises(CheckpointError, match="config.json: field 'model_type' is 'bert'"):
        decoder_spec({**cfg, "model_type": "bert"}, path)
    with pytest.raises(CheckpointError, match="config.json: field 'n_embd' is missing"):
        decoder_spec({**cfg, "model_type": "gpt2"}, path)
    with pytest.raises(CheckpointError, match="field 'hidden_act' is 'gelu'"):
        decoder_spec({**cfg, "hidden_act": "gelu"}, path)
    with pytest.raises(CheckpointError, match="rope_scaling"):
        decoder_spec({**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, path)
    with pytest.raises(CheckpointError, match="do not fit hidden_size"):
        decoder_spec({**cfg, "num_key_value_heads": 3}, path)


def test_mistral_sliding_window_is_not_attended_past(tmp_path):
    make("mistral", tmp_path)
    import json

    cfg = read_json(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "sliding_window": 16}))
    with pytest.raises(CheckpointError, match="sliding_window 16 is shorter than the context 32"):
        load_decoder(tmp_path, context=32)
    load_decoder(tmp_path, context=16)


def make_gpt2(tmp_path):
    torch.manual_seed(0)
    cfg = tf.GPT2Config(vocab_size=101, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    m = tf.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.uniform_(-0.3, 0.3)
    m.save_pretrained(tmp_path)
    return m


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_gpt2_logits_and_greedy_generation_match_transformers(tmp_path, ks):
    m = make_gpt2(tmp_path)
    model, spec = load_decoder(tmp_path, context=40, kernels=ks)
    assert spec.model_type == "gpt2" and spec.tied
    ids = np.random.default_rng(2).integers(0, 101, (2, 12)).astype(np.int32)
    with torch.no_grad():
        want = m(torch.from_numpy(ids).long()).logits.numpy()
    np.testing.assert_allclose(logits(model, ids), want, rtol=1e-4, atol=1e-5)
    prompt = [5, 17, 42, 8]
    with torch.no_grad():
        ref = m.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                         pad_token_id=0)[0, len(prompt):].tolist()
    assert generate(model, prompt, 10, temperature=0.0) == ref
    with pytest.raises(CheckpointError, match="context 80 exceeds GPT-2's 64 positions"):
        load_decoder(tmp_path, context=80)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_a_qorus_decoder_saves_back_for_transformers(tmp_path, kind):
    """Weights changed in Qorus, saved as an HF directory: transformers loads it and gives
    Qorus's logits."""
    from qorus_layers_llm.hf_export import save_decoder

    make_gpt2(tmp_path / "src") if kind == "gpt2" else make(kind, tmp_path / "src")
    model, spec = load_decoder(tmp_path / "src", context=32)
    rng = np.random.default_rng(4)
    state = {k: (v + rng.normal(0, 0.02, v.shape)).astype(np.float32)
             for k, v in model.parameters().items()}
    if spec.qkv_bias and kind != "gpt2":
        state.update({k: np.zeros_like(v) for k, v in state.items() if k.endswith("attn.bo")})
    model.load_state_dict(state)
    save_decoder(model.parameters(), spec, tmp_path / "out")
    m = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = rng.integers(0, 101, (2, 9)).astype(np.int32)
    with torch.no_grad():
        want = m(torch.from_numpy(ids).long()).logits.numpy()
    np.testing.assert_allclose(logits(model, ids), want, rtol=1e-4, atol=1e-5)


def test_bad_context_is_a_config_error(tmp_path):
    from qorus_core.errors import ConfigError

    make("llama", tmp_path)
    for bad in ("32", 0, 2.5):
        with pytest.raises(ConfigError, match="context"):
            load_decoder(tmp_path, context=bad)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_generation_uses_the_safetensors_in_place(tmp_path, dtype):
    """load_llm on a directory maps the safetensors and computes with the matrices where they
    lie (F32 views, F16 / BF16 as 16-bit weights; q/k rows as trained, NEOX RoPE): the
    logits are transformers' on the same weights, and nothing is copied to float32."""
    from qorus_core import QWeight
    from qorus_layers_llm.generate import Generator
    from qorus_layers_llm.hf_decoder import load_decoder

    torch.manual_seed(0)
    cfg = tf.Qwen2Config(vocab_size=64, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=False)
    m = tf.Qwen2ForCausalLM(cfg).eval().to(getattr(torch, dtype))
    m.save_pretrained(tmp_path)
    model, _ = load_decoder(tmp_path, context=32, in_place=True)
    wq = model.store.external["blocks.0.attn.wq"]
    if dtype == "float32":
        assert not wq.a.flags.writeable                  # a view of the map
    else:
        assert isinstance(wq, QWeight) and wq.qtype == {"float16": "f16", "bfloat16": "bf16"}[dtype]
    ids = [3, 17, 42, 8, 11, 5]
    with torch.no_grad():
        want = m.float()(torch.tensor([ids])).logits[0].numpy()
    gen = Generator(model)
    for i, t in enumerate(ids):
        got = gen.feed([t])
        assert np.abs(got - want[i]).max() / np.abs(want[i]).max() < 1e-4, (dtype, i)
