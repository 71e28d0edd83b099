"""Hugging Face encoder checkpoints (random weights made here with ``transformers`` from config
objects, offline, saved with save_pretrained) against ``transformers`` with the same weights:
last hidden states and pooled embeddings within 1e-4 relative, BERT, RoBERTa, DistilBERT (and
MiniLM-class models, which are BERTs), F16 / BF16 and sharded files, the sentence-transformers
layout, ``qorus embed``, and the errors naming the file and field."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from qorus_core.errors import CheckpointError
from qorus_layers_llm.hf_checkpoint import load_tensors, read_json
from qorus_layers_llm.hf_encoder import build_encoder, encoder_spec, qorus_state

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
SIZES = dict(vocab_size=99, max_position_embeddings=64)
TOL = dict(rtol=1e-4, atol=1e-5)


def make(kind: str, tmp_path, dtype=None, **save):
    """(HF model, its directory) of a small random ``kind`` encoder."""
    torch.manual_seed(0)
    if kind == "distilbert":
        cfg = tf.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, **SIZES)
        m = tf.DistilBertModel(cfg)
    elif kind == "roberta":
        cfg = tf.RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=37, vocab_size=99, max_position_embeddings=66)
        m = tf.RobertaModel(cfg, add_pooling_layer=False)
    else:
        cfg = tf.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37, type_vocab_size=2, **SIZES)
        m = tf.BertModel(cfg)
    if dtype is not None:
        m = m.to(dtype)
    m.eval().save_pretrained(tmp_path, **save)
    return m.float(), tmp_path


def batch(B=3, T=10, seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 99, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int64)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    types = (np.arange(T) >= 5).astype(np.int32)[None].repeat(B, 0)
    return ids, mask, types


def qorus_forward(d, ids, mask, types, kernels, pooling="mean"):
    spec = encoder_spec(read_json(d / "config.json"), d / "config.json")
    model = build_encoder(spec, pooling=pooling, kernels=kernels)
    model.load_state_dict(qorus_state(spec, load_tensors(d), d))
    x = {"ids": ids, "pad": mask == 0}
    if spec.type_vocab:
        x["types"] = types
    T = ids.shape[1]
    plan = model.plan(len(ids), shape={k: (T,) for k in x})
    for k, v in x.items():
        plan.inputs[k].a[...] = v
    plan.forward()
    return plan.outputs["hidden"].a.copy(), plan.outputs["pooled"].a.copy()


def reference(m, ids, mask, types, kind):
    kw = {} if kind != "bert" else {"token_type_ids": torch.from_numpy(types).long()}
    with torch.no_grad():
        h = m(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask),
              **kw).last_hidden_state.numpy()
    keep = mask[..., None].astype(np.float32)
    return h, (h * keep).sum(1) / keep.sum(1)


@pytest.mark.parametrize("ks", ["c", "numpy"])
@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_hidden_states_and_mean_pooling_match_transformers(tmp_path, kind, ks):
    m, d = make(kind, tmp_path)
    ids, mask, types = batch()
    if kind != "bert":                             # RoBERTa's inputs take type 0 only
        types = np.zeros_like(types)
    h, pooled = qorus_forward(d, ids, mask, types, ks)
    want_h, want_pooled = reference(m, ids, mask, types, kind)
    keep = mask.astype(bool)                       # padded positions differ by design
    np.testing.assert_allclose(h[keep], want_h[keep], **TOL)
    np.testing.assert_allclose(pooled, want_pooled, **TOL)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_checkpoints_load_widened(tmp_path, dtype):
    m, d = make("bert", tmp_path, dtype=getattr(torch, dtype))
    raw = (d / "model.safetensors").read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {
        {"float16": "F16", "bfloat16": "BF16"}[dtype]}
    ids, mask, types = batch()
    h, _ = qorus_forward(d, ids, mask, types, "c")
    want, _ = reference(m, ids, mask, types, "bert")   # the same rounded weights, in float32
    keep = mask.astype(bool)
    np.testing.assert_allclose(h[keep], want[keep], **TOL)


def test_sharded_checkpoint(tmp_path):
    m, d = make("bert", tmp_path, max_shard_size="20KB")
    assert (d / "model.safetensors.index.json").exists()
    ids, mask, types = batch()
    h, pooled = qorus_forward(d, ids, mask, types, "c")
    np.testing.assert_allclose(pooled, reference(m, ids, mask, types, "bert")[1], **TOL)


def test_cls_pooling(tmp_path):
    m, d = make("bert", tmp_path)
    ids, mask, types = batch()
    _, pooled = qorus_forward(d, ids, mask, types, "c", pooling="cls")
    np.testing.assert_allclose(pooled, reference(m, ids, mask, types, "bert")[0][:, 0], **TOL)


def test_errors_name_the_file_and_field(tmp_path):
    _, d = make("bert", tmp_path)
    cfg = read_json(d / "config.json")
    with pytest.raises(CheckpointError, match="config.json: field 'model_type' is 'gpt2'"):
        encoder_spec({**cfg, "model_type": "gpt2"}, d / "config.json")
    with pytest.raises(CheckpointError, match="field 'hidden_size' is missing"):
        encoder_spec({k: v for k, v in cfg.items() if k != "hidden_size"}, d / "config.json")
    with pytest.raises(CheckpointError, match="activation 'swish' is not supported"):
        encoder_spec({**cfg, "hidden_act": "swish"}, d / "config.json")
    spec = encoder_spec(cfg, d / "config.json")
    tensors = dict(load_tensors(d))
    del tensors["encoder.layer.1.output.dense.weight"]
    with pytest.raises(CheckpointError, match="encoder.layer.1.output.dense.weight' is missing"):
        qorus_state(spec, tensors, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="unpickling can run code"):
        load_tensors(d)
    with pytest.raises(CheckpointError, match="not a model directory"):
        load_tensors(d / "nothing")


# ----------------------------------------------------------------------------- sentence embeddings
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,!?")
         + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + ["the", "cat", "sat", "on", "mat"])
TEXTS = ["The cat sat on the mat.", "a dog!", "Qorus embeds sentences, quickly?", ""]


def sentence_model(tmp_path, normalize=True, pooling="mean"):
    """A sentence-transformers directory: a random BERT, its vocab.txt, modules.json with
    Pooling (and Normalize)."""
    torch.manual_seed(3)
    cfg = tf.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
    m = tf.BertModel(cfg, add_pooling_layer=False).eval()
    m.save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True,
                                                                "model_max_length": 64}))
    mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        mods.append({"idx": 2, "name": "2", "path": "2_Normalize",
                     "type": "sentence_transformers.models.Normalize"})
    (tmp_path / "modules.json").write_text(json.dumps(mods))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": pooling == "mean",
         "pooling_mode_cls_token": pooling == "cls", "pooling_mode_max_tokens": False}))
    return m


def st_reference(m, d, texts, normalize=True):
    """sentence-transformers' computation, tokenized by the ``tokenizers`` library's BERT
    WordPiece of the same vocab."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.BertWordPieceTokenizer(str(d / "vocab.txt"), lowercase=True)
    tok.enable_padding(pad_id=0)
    encs = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encs])
    mask = torch.tensor([e.attention_mask for e in encs])
    with torch.no_grad():
        h = m(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask[..., None].float()
    e = ((h * keep).sum(1) / keep.sum(1).clamp(min=1e-9)).numpy()
    return e / np.linalg.norm(e, axis=1, keepdims=True) if normalize else e


@pytest.mark.parametrize("normalize", [True, False])
def test_load_encoder_embeds_like_sentence_transformers(tmp_path, normalize):
    from qorus_layers_llm import load_encoder

    m = sentence_model(tmp_path, normalize)
    enc = load_encoder(tmp_path)
    got = enc.encode(TEXTS, batch_size=3)               # two batches of different lengths
    np.testing.assert_allclose(got, st_reference(m, tmp_path, TEXTS, normalize), **TOL)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_unsupported_pooling_is_refused(tmp_path):
    from qorus_layers_llm import load_encoder

    sentence_model(tmp_path)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_max_tokens": True}))
    with pytest.raises(CheckpointError, match="1_Pooling/config.json: pooling .*max_tokens"):
        load_encoder(tmp_path)


def test_qorus_embed_cli(tmp_path):
    m = sentence_model(tmp_path)
    out = subprocess.run([sys.executable, "-m", "qorus_core.cli", "embed", str(tmp_path),
                          "--text", TEXTS[0], "--text", TEXTS[1], "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = np.array(json.loads(out.stdout)["embeddings"], np.float32)
    np.testing.assert_allclose(got, st_reference(m, tmp_path, TEXTS[:2]), rtol=1e-4, atol=1e-5)
    plain = subprocess.run([sys.executable, "-m", "qorus_core.cli", "embed", str(tmp_path),
                            "--text", TEXTS[0]], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and len(plain.stdout.split()) == 32, plain.stderr


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_a_qorus_encoder_saves_back_for_transformers(tmp_path, kind):
    """Weights changed in Qorus, saved as an HF directory: transformers loads it and gives
    Qorus's hidden states."""
    from qorus_layers_llm.hf_export import save_encoder

    _, d = make(kind, tmp_path / "src")
    spec = encoder_spec(read_json(d / "config.json"), d / "config.json")
    model = build_encoder(spec)
    model.load_state_dict(qorus_state(spec, load_tensors(d), d))
    rng = np.random.default_rng(5)
    model.load_state_dict({k: (v + rng.normal(0, 0.02, v.shape)).astype(np.float32)
                           for k, v in model.parameters().items()})
    out = save_encoder(model.parameters(), spec, tmp_path / "out")
    m = tf.AutoModel.from_pretrained(out).eval()
    ids, mask, types = batch()
    types = types if kind == "bert" else np.zeros_like(types)
    h, _ = qorus_forward(out, ids, mask, types, "c")
    want, _ = reference(m, ids, mask, types, kind)
    keep = mask.astype(bool)
    np.testing.assert_allclose(h[keep], want[keep], **TOL)


def test_concurrent_encodes_take_turns(tmp_path):
    """One Encoder shared by threads: each call gets its own texts' embeddings."""
    from concurrent.futures import ThreadPoolExecutor

    from qorus_layers_llm import load_encoder

    sentence_model(tmp_path)
    enc = load_encoder(tmp_path)
    alone = [enc.encode([t]) for t in TEXTS]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda t: enc.encode([t]), TEXTS * 4))
    for i, g in enumerate(got):
        np.testing.assert_array_equal(g, alone[i % len(TEXTS)])


def test_module_paths_stay_inside_the_directory(tmp_path):
    from qorus_layers_llm import load_encoder

    sentence_model(tmp_path / "m")
    mods = json.loads((tmp_path / "m" / "modules.json").read_text())
    mods[1]["path"] = "../elsewhere"
    (tmp_path / "m" / "modules.json").write_text(json.dumps(mods))
    with pytest.raises(CheckpointError, match="outside the model directory"):
        load_encoder(tmp_path / "m")


def test_a_tokenizer_config_without_model_max_length_encodes(tmp_path):
    """tokenizer_config.json need not give model_max_length: texts are cut to the model's
    positions instead (a long text encodes, as one within the limit does)."""
    from qorus_layers_llm import load_encoder

    sentence_model(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    enc = load_encoder(tmp_path)
    assert enc.max_tokens == 64
    e = enc.encode(["the cat " * 100, "a dog!"])
    assert e.shape == (2, 32) and np.isfinite(e).all()
