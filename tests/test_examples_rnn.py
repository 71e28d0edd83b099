"""The recurrent examples: each network against the same network in PyTorch (same weights,
loss, gradients and parameters after 3 AdamW steps, rtol 1e-4), and each script end to end
on a small stand-in for its data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch_parity import example, train_parity

torch = pytest.importorskip("torch")
nn = torch.nn


# ----------------------------------------------------------------------------- BiLSTM tagger
class TorchTagger(nn.Module):
    """examples/bilstm_tagger.py's network in PyTorch, under the same parameter names: the
    padded batch packed by its lengths."""

    def __init__(self, vocab: int, d: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.lstm = nn.LSTM(d, hidden, layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, ids, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.emb(ids), lengths.long(),
                                                   batch_first=True, enforce_sorted=False)
        h, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                                total_length=ids.shape[1])
        return self.head(h)


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_bilstm_tagger_trains_like_torch(ks):
    tagger = example("bilstm_tagger")
    V, T, d, H, L = 30, 9, 8, 12, 2
    model = tagger.build(T, d, H, L, dropout=0.0, vocab=V, kernels=ks)
    ref = TorchTagger(V, d, H, L)
    rng = np.random.default_rng(0)
    lengths = np.array([9, 4, 1, 7], np.int32)        # one full, one of a single step
    ids = rng.integers(1, V, (4, T)).astype(np.int32)
    ids[np.arange(T) >= lengths[:, None]] = 0
    worst = train_parity(model, ref, {"ids": ids, "lengths": lengths},
                         lambda t: ref(t["ids"].long(), t["lengths"]))
    assert worst["param"] < 1e-4


def test_tagger_data():
    tagger = example("bilstm_tagger")
    assert tagger.pieces(b"Ab  cd\n\tEfg hijklmn o", 6) == [b"Ab cd", b"Efg", b"hijklm", b"n o"]
    x, y = tagger.make_data([b"Hi, Bo", b"x"], 8)
    assert x["lengths"].tolist() == [6, 1]
    assert x["ids"][0].tolist() == [c + 1 for c in b"hi, bo"] + [0, 0]
    assert y.tolist() == [[1, 0, 0, 0, 1, 0, -100, -100], [0] + [-100] * 7]


def write_cased_corpus(directory: Path, files: tuple[str, ...], n: int = 300,
                       seed: int = 0) -> None:
    """A stand-in corpus in the fortunes layout whose case follows rules: each sentence's
    first word and the names are capitalised."""
    rng = np.random.default_rng(seed)
    words = "the a of cat dog sat ran on to big red fox".split()
    names = ["Alice", "Bob", "Paris", "Rex"]
    for f in files:
        items = []
        for _ in range(n):
            sentences = []
            for _ in range(int(rng.integers(1, 4))):
                ws = [str(rng.choice(names)) if rng.random() < 0.2 else str(rng.choice(words))
                      for _ in range(int(rng.integers(3, 8)))]
                sentences.append(" ".join([ws[0][0].upper() + ws[0][1:], *ws[1:]]) + ".")
            items.append(" ".join(sentences))
        (directory / f).write_text("\n%\n".join(items) + "\n%\n")


def test_bilstm_tagger_example_learns(tmp_path, monkeypatch):
    write_cased_corpus(tmp_path, ("one", "two"))
    monkeypatch.setenv("FORTUNES_DIR", str(tmp_path))
    result = example("bilstm_tagger").main(["--epochs", "8", "--files", "one", "two",
                                           "--max-len", "48", "--hidden", "32", "--dim",
                                           "16", "--layers", "1"])
    assert result["letter_baseline"] < 0.9, result
    assert result["letter_accuracy"] > 0.97, result


# ----------------------------------------------------------------------------- GRU seq2seq
class TorchSeq2Seq(nn.Module):
    """examples/gru_seq2seq.py's network in PyTorch, under the same parameter names."""

    def __init__(self, d: int, hidden: int, vocab: int) -> None:
        super().__init__()
        self.src_tok, self.tgt_tok = nn.Embedding(vocab, d), nn.Embedding(vocab, d)
        self.encoder = nn.GRU(d, hidden, batch_first=True)
        self.decoder = nn.GRU(d, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, src, tgt):
        _, h = self.encoder(self.src_tok(src))               # h_n [1, B, H] is the decoder's h_0
        return self.head(self.decoder(self.tgt_tok(tgt), h)[0])


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_gru_seq2seq_trains_like_torch(ks):
    s2s = example("gru_seq2seq")
    L, d, H = 6, 8, 16
    model = s2s.build(L, d, H, kernels=ks)
    ref = TorchSeq2Seq(d, H, s2s.VOCAB)
    x, _ = s2s.make_task(4, L, seed=0)
    worst = train_parity(model, ref, x, lambda t: ref(t["src"].long(), t["tgt_in"].long()))
    assert worst["param"] < 1e-4


def test_step_decoder_matches_the_trained_graph():
    """The one-step inference halves give the full model's logits on the tokens they chose."""
    s2s = example("gru_seq2seq")
    L, d, H = 5, 8, 16
    model = s2s.build(L, d, H, seed=3)
    encoder, step = s2s.build_inference(L, d, H)
    s2s.load_halves(model, encoder, step)
    x, _ = s2s.make_task(7, L, seed=2)
    decoded = s2s.greedy_decode(encoder, step, x["src"])
    tgt_in = np.concatenate([np.full((7, 1), s2s.BOS, np.int32), decoded[:, :-1]], axis=1)
    logits = model.predict({"src": x["src"], "tgt_in": tgt_in})
    np.testing.assert_array_equal(logits.argmax(-1), decoded)


def test_gru_seq2seq_example_learns():
    result = example("gru_seq2seq").main(["--epochs", "6", "--train", "4000", "--length", "5",
                                         "--hidden", "64"])
    assert result["digits"] > 0.9, result
