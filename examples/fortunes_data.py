"""The fortunes of Debian's ``fortunes`` package (``apt-get install fortunes``) as a text
classification task: which file a fortune comes from, as byte ids.

Each fortune (the text between ``%`` lines) becomes up to ``max_len`` bytes, id = byte + 1
(0 is padding); ``pad`` is True at the padding. ``FORTUNES_DIR`` (default
/usr/share/games/fortunes) points elsewhere, e.g. at a directory a test writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DEFAULT_DIR = "/usr/share/games/fortunes"
DEFAULT_FILES = ("computers", "definitions", "songs-poems", "zippy")
VOCAB = 257          # 256 byte values + padding


def fortunes_dir() -> Path:
    d = Path(os.environ.get("FORTUNES_DIR", DEFAULT_DIR))
    if not d.is_dir():
        raise SystemExit(f"no fortunes at {d}: apt-get install fortunes (or set FORTUNES_DIR)")
    return d


def read_fortunes(path: Path) -> list[bytes]:
    """The fortunes of one file: texts between lines holding only ``%``, whitespace-trimmed."""
    parts = path.read_bytes().split(b"\n%\n")
    return [p.strip() for p in parts if p.strip()]


def encode(texts: list[bytes], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """ids int32 [N, max_len] (byte + 1, 0 after the end) and pad bool [N, max_len]."""
    ids = np.zeros((len(texts), max_len), np.int32)
    for i, t in enumerate(texts):
        b = np.frombuffer(t[:max_len], np.uint8)
        ids[i, :b.size] = b.astype(np.int32) + 1
    return ids, ids == 0


def load_fortunes(files: tuple[str, ...] = DEFAULT_FILES, max_len: int = 128,
                  per_class: int | None = None, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(ids, pad, labels int32, class names): the fortunes of ``files`` (at most ``per_class``
    of each, a seeded sample), shuffled."""
    d, rng = fortunes_dir(), np.random.default_rng(seed)
    texts, labels = [], []
    for c, name in enumerate(files):
        got = read_fortunes(d / name)
        if per_class is not None and len(got) > per_class:
            got = [got[i] for i in sorted(rng.choice(len(got), per_class, replace=False))]
        texts += got
        labels += [c] * len(got)
    order = rng.permutation(len(texts))
    ids, pad = encode([texts[i] for i in order], max_len)
    return ids, pad, np.asarray(labels, np.int32)[order], list(files)


def write_tiny_corpus(directory: Path, files: tuple[str, ...] = DEFAULT_FILES, n: int = 40,
                      seed: int = 0) -> None:
    """A small stand-in corpus with the fortunes layout, one telltale vocabulary per file (for
    tests on machines without the package)."""
    rng = np.random.default_rng(seed)
    words = {f: [f"{f[:3]}{i}" for i in range(6)] + ["the", "a", "of"] for f in files}
    for f in files:
        items = [" ".join(rng.choice(words[f], int(rng.integers(3, 12)))) for _ in range(n)]
        (directory / f).write_text("\n%\n".join(items) + "\n%\n")
