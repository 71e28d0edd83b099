"""The attention examples: each network against the same network in PyTorch (same weights,
loss, gradients and parameters after 3 AdamW steps, rtol 1e-4), and each script end to end
on a small stand-in for its data."""

from __future__ import annotations

import numpy as np
import pytest
from torch_parity import example, nonzero_biases, train_parity

torch = pytest.importorskip("torch")
nn = torch.nn


# ----------------------------------------------------------------------------- BERT
class TorchBert(nn.Module):
    """examples/bert_fortunes.py's network in PyTorch, under the same parameter names."""

    def __init__(self, vocab, max_len, d, heads, layers, ffn, classes):
        super().__init__()
        self.tok, self.typ, self.pos = nn.Embedding(vocab, d), nn.Embedding(2, d), nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        layer = nn.TransformerEncoderLayer(d, heads, ffn, 0.0, "gelu", batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, ids, types, pad):
        h = self.tok(ids) + self.typ(types) + self.pos.weight[:ids.shape[1]]
        h = self.enc(self.norm(h), src_key_padding_mask=pad)
        keep = (~pad).float()[..., None]
        return self.head((h * keep).sum(1) / keep.sum(1).clamp(min=1))


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_bert_trains_like_torch(ks):
    bert = example("bert_fortunes")
    V, T, d, H, L, F, C = 40, 12, 16, 4, 2, 32, 3
    model = bert.build(T, d, H, L, F, C, dropout=0.0, vocab=V, kernels=ks)
    ref = nonzero_biases(TorchBert(V, T, d, H, L, F, C))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, (4, T)).astype(np.int32)
    pad = np.zeros((4, T), bool)
    for b, n in enumerate((0, 3, 5, 11)):          # 0 .. 11 padded positions
        pad[b, T - n:] = True
    ids[pad] = 0
    x = {"ids": ids, "types": (np.arange(T) >= 4).astype(np.int32)[None].repeat(4, 0),
         "pad": pad}
    worst = train_parity(model, ref, x, lambda t: ref(t["ids"].long(), t["types"].long(),
                                                      t["pad"]))
    assert worst["param"] < 1e-4


def test_bert_example_learns(tmp_path, monkeypatch):
    data = example("fortunes_data")
    data.write_tiny_corpus(tmp_path)
    monkeypatch.setenv("FORTUNES_DIR", str(tmp_path))
    test = example("bert_fortunes").main(["--epochs", "4"])
    assert test["accuracy"] > 0.6, test


# ----------------------------------------------------------------------------- ViT
class TorchViT(nn.Module):
    """examples/vit_fashion.py's network in PyTorch, under the same parameter names."""

    def __init__(self, image, patch, d, heads, layers, ffn, classes):
        super().__init__()
        n = (image // patch) ** 2
        self.patch = nn.Conv2d(1, d, patch, stride=patch)
        self.cls = nn.Module()
        self.cls.weight = nn.Parameter(torch.randn(1, d) * 0.02)
        self.pos = nn.Embedding(n + 1, d)
        layer = nn.TransformerEncoderLayer(d, heads, ffn, 0.0, "gelu", batch_first=True,
                                           norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d),
                                         enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        p = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.weight.expand(x.shape[0], 1, -1), p], 1) + self.pos.weight
        return self.head(self.enc(h)[:, 0])


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_vit_trains_like_torch(ks):
    vit = example("vit_fashion")
    model = vit.build(12, 4, 16, 4, 2, 32, 5, dropout=0.0, kernels=ks)
    ref = nonzero_biases(TorchViT(12, 4, 16, 4, 2, 32, 5))
    x = {"image": np.random.default_rng(0).random((3, 1, 12, 12)).astype(np.float32)}
    worst = train_parity(model, ref, x, lambda t: ref(t["image"]))
    assert worst["param"] < 1e-4


def test_vit_example_learns(tmp_path):
    from qorus_core.io.idx import write_idx

    rng = np.random.default_rng(0)           # two classes: a bright top half or bottom half
    for part, n in (("train", 1500), ("t10k", 200)):
        y = rng.integers(0, 2, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
        x[y == 0, :14] += 150
        x[y == 1, 14:] += 150
        write_idx(tmp_path / f"{part}-images-idx3-ubyte", x)
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte", y)
    test = example("vit_fashion").main(["--epochs", "3", "--data", str(tmp_path)])
    assert test["accuracy"] > 0.9, test


# ----------------------------------------------------------------------------- seq2seq
class TorchSorter(nn.Module):
    """examples/transformer_sort.py's network in PyTorch, under the same parameter names."""

    def __init__(self, length, d, heads, layers, ffn, vocab):
        super().__init__()
        self.src_tok, self.tgt_tok = nn.Embedding(vocab, d), nn.Embedding(vocab, d)
        self.src_pos, self.tgt_pos = nn.Embedding(length, d), nn.Embedding(length, d)
        self.tr = nn.Transformer(d, heads, layers, layers, ffn, 0.0, batch_first=True)
        self.head = nn.Linear(d, vocab)
        self.causal = nn.Transformer.generate_square_subsequent_mask(length)

    def forward(self, src, tgt):
        s = self.src_tok(src) + self.src_pos.weight
        t = self.tgt_tok(tgt) + self.tgt_pos.weight
        return self.head(self.tr(s, t, tgt_mask=self.causal, tgt_is_causal=True))


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_encoder_decoder_trains_like_torch(ks):
    sorter = example("transformer_sort")
    L, d, H, N, F = 6, 16, 4, 2, 32
    model = sorter.build(L, d, H, N, F, kernels=ks)
    ref = nonzero_biases(TorchSorter(L, d, H, N, F, sorter.VOCAB))
    x, _ = sorter.make_task(3, L, seed=0)
    worst = train_parity(model, ref, x, lambda t: ref(t["src"].long(), t["tgt_in"].long()))
    assert worst["param"] < 1e-4


def test_greedy_decoding_sorts():
    result = example("transformer_sort").main(["--epochs", "5", "--train", "3000",
                                              "--length", "6"])
    assert result["digits"] > 0.9, result
