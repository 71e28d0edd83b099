"""A GRU encoder-decoder (seq2seq) that learns to reverse digit sequences, decoded greedily
step by step from the encoder's final state.

    python examples/gru_seq2seq.py [--epochs 12] [--task reverse|sort] [--kernels c|numpy]

A generated task (no data to install): the source is ``length`` random digits, the target the
same digits reversed (or sorted). The encoder ``rnn.GRU(return_state=True)`` reads the source;
its final state ``h_n`` [B, 1, H] is the decoder GRU's ``h0``, the only way the source reaches
the decoder. Training uses teacher forcing (the decoder reads BOS + the target shifted by one).
Decoding runs the encoder once, then a one-step decoder model (same weights) that takes a token
and the state and returns the logits and the next state, feeding its own argmax back. Prints
the share of test sequences decoded exactly and of digits in place.
"""

from __future__ import annotations

import argparse

import numpy as np

from qorus_core import Input, Model
from qorus_core.train import AdamW, CrossEntropyLoss, Trainer
from qorus_layers_llm import Embedding
from qorus_layers_mlp import Linear
from qorus_layers_rnn import GRU

BOS, DIGITS = 10, 10          # tokens 0..9 are digits, 10 starts the decoder's input
VOCAB = DIGITS + 1


def _encode(src, d: int, hidden: int):
    """The encoder's final state [B, 1, hidden] (names src_tok, encoder)."""
    _, h = GRU(d, hidden, return_state=True)(Embedding(VOCAB, d)(src, name="src_tok"),
                                             name="encoder")
    return h


def _decode(tgt, h, d: int, hidden: int, return_state: bool = False):
    """Logits of each decoder step from state ``h`` (names tgt_tok, decoder, head), and with
    ``return_state`` the decoder's final state."""
    out = GRU(d, hidden, return_state=return_state)(Embedding(VOCAB, d)(tgt, name="tgt_tok"),
                                                    h0=h, name="decoder")
    y, h_n = out if return_state else (out, None)
    logits = Linear(hidden, VOCAB)(y, name="head")
    return (logits, h_n) if return_state else logits


def build(length: int = 10, d: int = 32, hidden: int = 128, seed: int = 0,
          kernels: str | None = None) -> Model:
    """Inputs ``src`` and ``tgt_in`` int32 [length]; output logits [length, VOCAB]. Names:
    src_tok.weight, encoder.* and decoder.* (PyTorch's ``nn.GRU``), tgt_tok.weight, head.*."""
    src = Input((length,), name="src", dtype="i32")
    tgt = Input((length,), name="tgt_in", dtype="i32")
    logits = _decode(tgt, _encode(src, d, hidden), d, hidden)
    return Model(inputs=[src, tgt], outputs=logits, seed=seed, kernels=kernels)


def build_inference(length: int, d: int, hidden: int, kernels: str | None = None
                    ) -> tuple[Model, Model]:
    """(encoder: ``src`` -> state, step: ``tok`` [1] and ``h`` [1, hidden] -> {"logits",
    "h"}): the trained model's two halves for decoding one token at a time."""
    src = Input((length,), name="src", dtype="i32")
    encoder = Model(inputs=src, outputs=_encode(src, d, hidden), kernels=kernels)
    tok, h = Input((1,), name="tok", dtype="i32"), Input((1, hidden), name="h")
    logits, h_n = _decode(tok, h, d, hidden, return_state=True)
    step = Model(inputs=[tok, h], outputs={"logits": logits, "h": h_n}, kernels=kernels)
    return encoder, step


def load_halves(model: Model, encoder: Model, step: Model) -> None:
    """Copy the trained weights into the two inference models, by name."""
    state = model.state_dict()
    for half in (encoder, step):
        half.load_state_dict({k: state[k] for k in half.state_dict()})


def make_task(n: int, length: int, seed: int, task: str = "reverse"
              ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(inputs, targets): random digit sequences, reversed or sorted."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, DIGITS, (n, length)).astype(np.int32)
    tgt = np.ascontiguousarray(src[:, ::-1] if task == "reverse" else np.sort(src, axis=1))
    tgt_in = np.concatenate([np.full((n, 1), BOS, np.int32), tgt[:, :-1]], axis=1)
    return {"src": src, "tgt_in": tgt_in}, tgt


def greedy_decode(encoder: Model, step: Model, src: np.ndarray) -> np.ndarray:
    """Each token the argmax of one decoder step fed the token before it and the state."""
    n, length = src.shape
    h = encoder.predict(src, batch_size=n)
    tok = np.full((n, 1), BOS, np.int32)
    out = np.zeros((n, length), np.int32)
    for t in range(length):
        res = step.predict({"tok": tok, "h": h}, batch_size=n)
        out[:, t] = tok[:, 0] = res["logits"][:, 0].argmax(-1)
        h = res["h"]
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--length", type=int, default=10)
    ap.add_argument("--dim", type=int, default=32, help="token embedding size")
    ap.add_argument("--hidden", type=int, default=128, help="GRU state size")
    ap.add_argument("--task", choices=("reverse", "sort"), default="reverse")
    ap.add_argument("--kernels", default=None)
    args = ap.parse_args(argv)
    x, y = make_task(args.train, args.length, seed=0, task=args.task)
    xs, ys = make_task(500, args.length, seed=1, task=args.task)
    model = build(args.length, args.dim, args.hidden, kernels=args.kernels)
    trainer = Trainer(model, CrossEntropyLoss(), AdamW(lr=3e-3, weight_decay=0.01),
                      batch_size=64, epochs=args.epochs, clip_norm=1.0)
    trainer.fit(x, y)
    encoder, step = build_inference(args.length, args.dim, args.hidden, kernels=args.kernels)
    load_halves(model, encoder, step)
    decoded = greedy_decode(encoder, step, xs["src"])
    result = {"exact": float((decoded == ys).all(axis=1).mean()),
              "digits": float((decoded == ys).mean())}
    done = "reversed" if args.task == "reverse" else "sorted"
    print(f"greedy decoding of 500 test sequences: {result['exact']:.3f} {done} exactly, "
          f"{result['digits']:.3f} of the digits in place")
    print(f"e.g. {''.join(map(str, xs['src'][0]))} -> {''.join(map(str, decoded[0]))}")
    return result


if __name__ == "__main__":
    main()
