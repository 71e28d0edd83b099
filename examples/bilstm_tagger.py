"""A bidirectional LSTM tagger that restores the capitalisation of lower-cased fortunes.

    python examples/bilstm_tagger.py [--epochs 6] [--hidden 64] [--layers 2] [--kernels c|numpy]

Each fortune (whitespace collapsed) is cut at spaces into pieces of at most ``max_len`` bytes;
the model reads a piece lower-cased (byte ids, ``llm.Embedding``) and tells for every position
whether the byte was upper-case: a 2-layer ``rnn.LSTM(bidirectional=True)`` (dropout between
the layers) over the padded batch with each piece's ``lengths`` (the reverse direction starts at
the piece's last byte, as PyTorch's ``pack_padded_sequence``), then a linear layer of 2 logits
per position; cross-entropy ignores the padding. Needs ``apt-get install fortunes`` (or
``FORTUNES_DIR``). Prints the test per-character accuracy (and over letters only) beside the
all-lower-case baseline, and a restored piece.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fortunes_data import VOCAB, encode, fortunes_dir, read_fortunes  # noqa: E402

from qorus_core import Input, Model  # noqa: E402
from qorus_core.io.datasets import split  # noqa: E402
from qorus_core.train import AdamW, CrossEntropyLoss, Trainer  # noqa: E402
from qorus_layers_llm import Embedding  # noqa: E402
from qorus_layers_mlp import Dropout, Linear  # noqa: E402
from qorus_layers_rnn import LSTM  # noqa: E402

FILES = ("wisdom", "platitudes", "love", "fortunes", "people")
IGNORE = -100                 # the target at padding


def build(max_len: int = 128, d: int = 32, hidden: int = 64, layers: int = 2,
          dropout: float = 0.1, vocab: int = VOCAB, seed: int = 0,
          kernels: str | None = None) -> Model:
    """Inputs ``ids`` (int32 [max_len], lower-cased byte + 1, 0 at padding) and ``lengths``
    (int32); output logits [max_len, 2] (1: upper-case). Names: emb.weight, lstm.* (PyTorch's
    ``nn.LSTM(bidirectional=True)``), head.{weight,bias}."""
    ids = Input((max_len,), name="ids", dtype="i32")
    lengths = Input((), name="lengths", dtype="i32")
    h = Embedding(vocab, d)(ids, name="emb")
    h = LSTM(d, hidden, num_layers=layers, bidirectional=True, dropout=dropout)(
        h, lengths=lengths, name="lstm")
    logits = Linear(2 * hidden, 2)(Dropout(dropout)(h), name="head")
    return Model(inputs=[ids, lengths], outputs=logits, seed=seed, kernels=kernels)


def pieces(text: bytes, max_len: int) -> list[bytes]:
    """``text`` with whitespace collapsed, cut at spaces into pieces of at most ``max_len``
    bytes (a longer word is cut where it must)."""
    out, cur = [], b""
    for word in text.split():
        while len(word) > max_len:
            if cur:
                out.append(cur)
                cur = b""
            out.append(word[:max_len])
            word = word[max_len:]
        if cur and len(cur) + 1 + len(word) > max_len:
            out.append(cur)
            cur = b""
        cur = word if not cur else cur + b" " + word
    return out + [cur] if cur else out


def make_data(texts: list[bytes], max_len: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(inputs, targets): lower-cased ids and lengths; per position 1 where the byte is an
    upper-case letter, 0 where not, ``IGNORE`` at padding."""
    ids, pad = encode([t.lower() for t in texts], max_len)
    raw, _ = encode(texts, max_len)
    upper = (raw >= ord("A") + 1) & (raw <= ord("Z") + 1)
    y = np.where(pad, IGNORE, upper).astype(np.int32)
    return {"ids": ids, "lengths": (~pad).sum(1).astype(np.int32)}, y


def load(files: tuple[str, ...], max_len: int, limit: int | None, seed: int = 0
         ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The pieces of the fortunes in ``files`` (at most ``limit``, a seeded sample), shuffled."""
    d = fortunes_dir()
    texts = [p for f in files for t in read_fortunes(d / f) for p in pieces(t, max_len)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))[:limit]
    return make_data([texts[i] for i in order], max_len)


def scores(logits: np.ndarray, x: dict[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
    """Per-character accuracy of the predicted case, and over letters only, each beside the
    all-lower-case baseline."""
    valid = y != IGNORE
    letter = valid & np.isin(x["ids"] - 1, np.arange(ord("a"), ord("z") + 1))
    right = logits.argmax(-1) == y
    return {"accuracy": float(right[valid].mean()), "baseline": float((y[valid] == 0).mean()),
            "letter_accuracy": float(right[letter].mean()),
            "letter_baseline": float((y[letter] == 0).mean())}


def restore(ids: np.ndarray, n: int, upper: np.ndarray) -> str:
    """Piece ``ids[:n]`` with upper-case letters where ``upper``."""
    text = bytes((ids[:n] - 1).astype(np.uint8)).decode("latin-1")
    return "".join(c.upper() if u else c for c, u in zip(text, upper))


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--files", nargs="+", default=list(FILES), help="fortunes files read")
    ap.add_argument("--max-len", type=int, default=128, help="bytes per piece")
    ap.add_argument("--limit", type=int, default=None, help="pieces used (default: all)")
    ap.add_argument("--dim", type=int, default=32, help="byte embedding size")
    ap.add_argument("--hidden", type=int, default=64, help="LSTM state size per direction")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--kernels", default=None)
    args = ap.parse_args(argv)
    x, y = load(tuple(args.files), args.max_len, args.limit)
    (xt, yt), (xv, yv), (xs, ys) = split(x, y, validation=0.1, test=0.2, seed=0)
    model = build(args.max_len, args.dim, args.hidden, args.layers, kernels=args.kernels)
    print(f"{len(yt)} training / {len(ys)} test pieces of <= {args.max_len} bytes; "
          f"{model.num_parameters:,} parameters")
    trainer = Trainer(model, CrossEntropyLoss(ignore_index=IGNORE),
                      AdamW(lr=5e-3, weight_decay=0.01), batch_size=32, epochs=args.epochs,
                      clip_norm=1.0)
    trainer.fit(xt, yt, val=(xv, yv))
    logits = model.predict(xs)
    result = scores(logits, xs, ys)
    print(f"test per-character accuracy {result['accuracy']:.4f} (all lower case "
          f"{result['baseline']:.4f}); letters only {result['letter_accuracy']:.4f} "
          f"(all lower case {result['letter_baseline']:.4f})")
    ids, n = xs["ids"][0], int(xs["lengths"][0])
    print(f"e.g.  model: {restore(ids, n, logits[0].argmax(-1) == 1)}\n      truth: "
          f"{restore(ids, n, ys[0] == 1)}")
    return result


if __name__ == "__main__":
    main()
