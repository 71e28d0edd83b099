"""`qorus convert`: GGUF or safetensors in, GGUF of another type out, metadata kept,
quantization bit-exact with the gguf package, readable by our loader and by gguf-py."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_llama import write_tiny_llama

from qorus_core.cli import main
from qorus_core.errors import ConfigError
from qorus_core.io.convert import convert
from qorus_core.io.gguf import GGUFFile
from qorus_core.io.safetensors import save_file
from qorus_core.kernels.numpy_quant import QWeight
from qorus_layers_llm.generate import Generator
from qorus_layers_llm.llama import load_llama


@pytest.mark.parametrize("qtype", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "f16", "bf16", "f32"])
def test_convert_gguf(tmp_path, qtype, capsys):
    src = write_tiny_llama(tmp_path / "src.gguf", "f32")
    dst = tmp_path / f"out_{qtype}.gguf"
    assert main(["convert", str(src), str(dst), "--type", qtype]) == 0
    assert f"as {qtype}" in capsys.readouterr().out
    a, b = GGUFFile(src), GGUFFile(dst)
    assert b.metadata["general.file_type"] == {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7,
                                               "q5_0": 8, "q5_1": 9, "bf16": 32}[qtype]
    assert b.metadata["tokenizer.ggml.tokens"] == a.metadata["tokenizer.ggml.tokens"]
    assert b.metadata["llama.attention.head_count_kv"] == a.metadata["llama.attention.head_count_kv"]
    w = b.tensor("blk.0.attn_q.weight")
    assert isinstance(w, QWeight) == (qtype not in ("f32", "f16", "bf16"))
    assert b.tensor("blk.0.attn_norm.weight").dtype == np.float32       # vectors stay f32
    llm = load_llama(dst)
    logits = Generator(llm.model).feed(llm.tokenizer.encode("the ant"))
    ref = Generator(load_llama(src).model).feed(llm.tokenizer.encode("the ant"))
    if qtype in ("f32", "f16", "bf16"):
        err = np.abs(logits - ref).max() / np.abs(ref).max()
        assert err <= {"f32": 1e-6, "f16": 1e-2, "bf16": 5e-2}[qtype], err
    else:                            # 4/8-bit noise on a random model: the same function still
        assert np.corrcoef(logits, ref)[0, 1] > 0.9


@pytest.mark.parametrize("qtype", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "f16", "bf16"])
def test_convert_is_bit_exact_with_gguf_py(tmp_path, qtype):
    gguf = pytest.importorskip("gguf")
    src = write_tiny_llama(tmp_path / "src.gguf", "f32")
    dst = tmp_path / "out.gguf"
    convert(src, dst, qtype)
    reader = gguf.GGUFReader(str(dst))
    mine = {t.name: t for t in reader.tensors}
    x = GGUFFile(src).tensor("blk.1.ffn_down.weight")
    gtype = getattr(gguf.GGMLQuantizationType, qtype.upper())
    expected = gguf.quantize(np.asarray(x), gtype)
    got = mine["blk.1.ffn_down.weight"]
    assert got.tensor_type == gtype
    assert np.asarray(got.data).tobytes() == np.asarray(expected).tobytes()


def test_convert_safetensors_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    st = tmp_path / "w.safetensors"
    save_file({"fc.weight": rng.standard_normal((8, 64)).astype(np.float32),
               "fc.bias": np.zeros(8, np.float32)}, st, {"format": "pt"})
    out = tmp_path / "w.gguf"
    counts = convert(st, out, "q8_0")
    assert counts == {"quantized": 1, "float32": 1}
    g = GGUFFile(out)
    assert g.metadata["safetensors.format"] == "pt"
    assert isinstance(g.tensor("fc.weight"), QWeight) and g.tensor("fc.bias").shape == (8,)
    with pytest.raises(ConfigError, match="expected one of"):
        convert(st, tmp_path / "x.gguf", "q5_k")
    with pytest.raises(ConfigError, match="overwrite itself"):
        convert(out, out, "q8_0")
