"""Tokenizers from GGUF metadata: byte-level BPE (GPT-2 style) and SentencePiece (llama).

``Tokenizer.from_gguf(gguf)`` reads ``tokenizer.ggml.*``: the token strings, their types,
BPE merges or SentencePiece scores, the pre-tokenizer, the special ids and the chat
template. Control and user-defined tokens written in the text (``<|im_start|>``) become their
ids when ``special=True``, as llama.cpp and Hugging Face do.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from qorus_core.errors import ConfigError, DataError

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 byte values to printable characters."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


class Tokenizer:
    """Shared by both models: special-token splitting, ids, decoding, the chat template."""

    def __init__(self, tokens: list[str], types: np.ndarray | None, bos_id: int | None,
                 eos_id: int | None, add_bos: bool, chat_template: str | None = None,
                 eot_ids: tuple[int, ...] = ()) -> None:
        self.tokens = list(tokens)
        self.types = (np.full(len(tokens), NORMAL, np.int32) if types is None
                      else np.asarray(types, np.int32))
        if len(self.types) != len(self.tokens):
            raise ConfigError(f"tokenizer: {len(self.tokens)} tokens but {len(self.types)} token types")
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, bool(add_bos)
        self.chat_template = chat_template
        specials = [i for i, t in enumerate(self.types) if t in (CONTROL, USER_DEFINED) and self.tokens[i]]
        self.special_ids = frozenset(specials)
        self.stop_ids = frozenset(i for i in (eos_id, *eot_ids) if i is not None)
        by_length = sorted((self.tokens[i] for i in specials), key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, by_length))) if by_length else None

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    # ----------------------------------------------------------------- encoding
    def encode(self, text: str, add_bos: bool | None = None, special: bool = True) -> list[int]:
        """Token ids of ``text``; ``special``: control tokens written in the text are parsed."""
        ids: list[int] = []
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids.append(self.bos_id)
        pos = 0
        if special and self._special_re is not None:
            for m in self._special_re.finditer(text):
                if m.start() > pos:
                    ids.extend(self._encode_text(text[pos:m.start()], first=pos == 0))
                ids.append(self.vocab[m.group()])
                pos = m.end()
        if pos < len(text):
            ids.extend(self._encode_text(text[pos:], first=pos == 0))
        return ids

    def _encode_text(self, text: str, first: bool) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    # ----------------------------------------------------------------- decoding
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes token ``token_id`` stands for (control tokens: their text)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def decode(self, ids: list[int] | np.ndarray, skip_special: bool = False) -> str:
        """Text of ``ids``; invalid UTF-8 (a cut multi-byte character) becomes U+FFFD."""
        out = bytearray()
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise DataError(f"decode: token id {i} outside [0, {len(self.tokens)})")
            if skip_special and i in self.special_ids:
                continue
            out += self.token_bytes(i)
        return out.decode("utf-8", errors="replace")

    def check_ids(self, ids: list[int]) -> None:
        for i in ids:
            if not 0 <= int(i) < len(self.tokens):
                raise DataError(f"token id {i} outside [0, {len(self.tokens)})")

    # ----------------------------------------------------------------- loading
    @staticmethod
    def from_gguf(gguf: Any) -> Tokenizer:
        """The tokenizer described by a ``GGUFFile``'s ``tokenizer.ggml.*`` metadata."""
        md = gguf.metadata
        model = md.get("tokenizer.ggml.model")
        if model is None or "tokenizer.ggml.tokens" not in md:
            raise ConfigError(f"{gguf.path}: no tokenizer in the metadata (tokenizer.ggml.model)")

        def opt(key: str) -> int | None:
            return int(md[key]) if key in md else None

        common = dict(tokens=list(md["tokenizer.ggml.tokens"]), types=md.get("tokenizer.ggml.token_type"),
                      bos_id=opt("tokenizer.ggml.bos_token_id"), eos_id=opt("tokenizer.ggml.eos_token_id"),
                      chat_template=md.get("tokenizer.chat_template"),
                      eot_ids=tuple(i for i in (opt("tokenizer.ggml.eot_token_id"),) if i is not None))
        if model == "gpt2":
            from .bpe import ByteBPETokenizer

            if "tokenizer.ggml.merges" not in md:
                raise ConfigError(f"{gguf.path}: a gpt2 tokenizer needs tokenizer.ggml.merges")
            return ByteBPETokenizer(merges=list(md["tokenizer.ggml.merges"]),
                                    pre=str(md.get("tokenizer.ggml.pre", "default")),
                                    add_bos=bool(md.get("tokenizer.ggml.add_bos_token", False)), **common)
        if model == "llama":
            from .spm import SentencePieceTokenizer

            scores = md.get("tokenizer.ggml.scores")
            if scores is None:
                raise ConfigError(f"{gguf.path}: a llama tokenizer needs tokenizer.ggml.scores")
            return SentencePieceTokenizer(
                scores=np.asarray(scores, np.float32),
                add_bos=bool(md.get("tokenizer.ggml.add_bos_token", True)),
                add_space_prefix=bool(md.get("tokenizer.ggml.add_space_prefix", True)),
                unk_id=opt("tokenizer.ggml.unknown_token_id"), **common)
        raise ConfigError(f"{gguf.path}: tokenizer model {model!r} is not supported (gpt2, llama)")


def merge_by_rank(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges to ``symbols``: repeatedly merge the adjacent pair of lowest rank."""
    while len(symbols) > 1:
        best, best_rank = None, None
        for i in range(len(symbols) - 1):
            r = ranks.get((symbols[i], symbols[i + 1]))
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best is None:
            break
        a, b = symbols[best], symbols[best + 1]
        merged, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and symbols[i] == a and symbols[i + 1] == b:
                merged.append(a + b)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols
