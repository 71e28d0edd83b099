"""A llama GGUF whose weights mix every weight format the kernels compute with (as a Q4_K_M
mixes Q4_K, Q6_K, Q5_0 and Q8_0), written by the test: its logits match an independent PyTorch
forward over the ``gguf`` package's dequantized tensors, on both kernel sets, on the float32
path and on the 8-bit-activation paths (decode steps: ggml's arithmetic; prompts: 8-bit
activations for the INT8_PROMPT formats); it decodes with the step captured."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_llama import tokenizer_metadata, vocabulary

from qorus_core.io.gguf import write_gguf
from qorus_core.kernels import get_kernels
from qorus_core.kernels.numpy_qformats import FORMATS, random_blocks
from qorus_core.kernels.numpy_quant import INT8_PROMPT, QWeight
from qorus_core.tensor import Tensor
from qorus_layers_llm.generate import Generator
from qorus_layers_llm.models import load_llm

pytest.importorskip("torch")
pytest.importorskip("gguf")

D, H, HKV, FF, LAYERS = 256, 4, 2, 512, 2
# one format a matrix, every format used (the K-quants need rows of 256 values, which all are)
MIX = ["q4_k", "q6_k", "q5_0", "q8_0", "q2_k", "q3_k", "q5_k", "q5_1", "iq4_nl", "bf16", "q4_0",
       "q4_1", "f16"]
MATS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


def _weight(qtype: str, n: int, k: int, rng: np.random.Generator, scale: float) -> QWeight:
    if FORMATS[qtype].quantizable:
        w = QWeight.empty(qtype, n, k)
        a = (rng.standard_normal((n, k)) * scale).astype(np.float32)
        get_kernels("numpy").quantize(Tensor(a), w, qtype)
        return w
    return QWeight(random_blocks(qtype, n, k, rng), qtype, n, k)


def write_mixed_llama(path, seed: int = 0):
    rng = np.random.default_rng(seed)
    V = len(vocabulary()[0])
    shapes = {"attn_q": (D, D), "attn_k": (HKV * D // H, D), "attn_v": (HKV * D // H, D),
              "attn_output": (D, D), "ffn_gate": (FF, D), "ffn_up": (FF, D), "ffn_down": (D, FF)}
    t: dict = {"token_embd.weight": _weight("q6_k", V, D, rng, 1.0),
               "output.weight": _weight("q8_0", V, D, rng, 0.2),
               "output_norm.weight": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)}
    used = iter(MIX * 2)
    for i in range(LAYERS):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        t[p + "ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        for m in MATS:
            t[p + m + ".weight"] = _weight(next(used), *shapes[m], rng, 0.06)
    meta = {"general.architecture": "llama", "general.name": "mixed-llama",
            "llama.block_count": np.uint32(LAYERS), "llama.context_length": np.uint32(128),
            "llama.embedding_length": np.uint32(D), "llama.feed_forward_length": np.uint32(FF),
            "llama.attention.head_count": np.uint32(H),
            "llama.attention.head_count_kv": np.uint32(HKV),
            "llama.rope.freq_base": np.float32(10000.0),
            "llama.attention.layer_norm_rms_epsilon": np.float32(1e-5),
            "llama.vocab_size": np.uint32(V), **tokenizer_metadata("gpt2")}
    write_gguf(path, meta, t)
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return str(write_mixed_llama(tmp_path_factory.mktemp("mixed") / "mixed.gguf"))


IDS = [5, 77, 12, 190, 3, 44, 101, 250, 9, 31, 64, 17]


def test_every_format_is_in_the_file(mixed):
    import gguf

    types = {t.tensor_type.name.lower() for t in gguf.GGUFReader(mixed).tensors}
    assert set(MIX) <= types


@pytest.mark.parametrize("kernels", ["c", "numpy"])
def test_float32_path_matches_the_pytorch_reference(mixed, kernels):
    from llama_reference import llama_logits

    llm = load_llm(mixed, context=64, kernels=kernels, dequantize=True)
    gen = Generator(llm.model)
    ref = llama_logits(mixed, IDS)
    for t, tok in enumerate(IDS):                 # every position, through the KV cache
        ours = gen.feed([tok])
        assert np.abs(ours - ref[t]).max() / np.abs(ref[t]).max() < 1e-4, t


@pytest.mark.parametrize("kernels", ["c", "numpy"])
def test_quantized_path_matches_the_reference(mixed, kernels):
    """Prompts round the activations of the Q8_0, Q4_0, Q4_1 and Q6_K products (the integer
    GEMM's formats, INT8_PROMPT) to 8-bit blocks of 32 and multiply the others' in float32:
    within 1e-4 of the reference doing the same. Decode steps round activations to 8-bit
    blocks of 32 for every quantized weight as ggml does (scales in float32): within 1e-5 of
    the reference doing the same at most positions. An activation
    landing on a rounding boundary may round the other way under another summation order
    (another SIMD tier) and move that position, and the ones after it, by up to a few 1e-2:
    so half the positions must match to 1e-5 and all to 5e-2; a wrong product is off at
    every position."""
    from llama_reference import llama_logits

    llm = load_llm(mixed, context=64, kernels=kernels)
    ref = llama_logits(mixed, IDS, ggml_activations="f32",
                       q8_types={t.upper() for t in INT8_PROMPT})
    prompt = Generator(llm.model).feed(IDS)
    assert np.abs(prompt - ref[-1]).max() / np.abs(ref[-1]).max() < 1e-4
    ref8 = llama_logits(mixed, IDS, ggml_activations="f32")
    gen, errs = Generator(llm.model), []
    for t, tok in enumerate(IDS):
        step = gen.step(tok) if t else gen.feed([tok])
        errs.append(float(np.abs(step - ref8[t]).max() / np.abs(ref8[t]).max()))
    assert max(errs) < 5e-2 and sum(e < 1e-5 for e in errs) >= len(errs) // 2, errs


def test_decoding_is_captured_and_the_same_bits(mixed):
    llm = load_llm(mixed, context=64, kernels="c")
    a, b = Generator(llm.model), Generator(llm.model, replay=False)
    a.feed(IDS[:4])
    b.feed(IDS[:4])
    for t in IDS[4:]:
        np.testing.assert_array_equal(a.step(t), b.step(t))
    assert a.replay is not None, a.replay_error


def test_a_quantized_norm_vector_is_refused_naming_its_type(tmp_path):
    """A norm gain stored in a block format (a 1-D Q8_0 tensor, which the model cannot use
    for a vector) is a GGUFError naming the file, the tensor and its type."""
    import gguf

    from qorus_core.errors import GGUFError
    from qorus_core.io.gguf import GGUFFile
    from qorus_layers_llm.llama import _external

    path = tmp_path / "v.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    q = gguf.quants.quantize(np.ones((1, 64), np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_norm.weight", q.reshape(-1), raw_shape=(q.size,),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = GGUFFile(path)
    with pytest.raises(GGUFError, match=r"v\.gguf: tensor 'blk\.0\.attn_norm\.weight' is Q8_0, a "
                                        r"type this model cannot use for a 1-D tensor"):
        _external(f, "blk.0.attn_norm.weight", (64,))
