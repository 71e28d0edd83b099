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

from .gguf_metadata import MetadataReader

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
        self.types = _token_types(types, len(self.tokens))
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, bool(add_bos)
        self.chat_template = chat_template
        # control and user-defined tokens are parsed whole from the text (llama.cpp's
        # parse_special); only control tokens are kept out of decoded text and streams (a
        # user-defined token such as Gemma's "\n\n" is text)
        specials = [i for i, t in enumerate(self.types) if t in (CONTROL, USER_DEFINED) and self.tokens[i]]
        self.special_ids = frozenset(i for i in specials if self.types[i] == CONTROL)
        self.stop_ids = frozenset(i for i in (eos_id, *eot_ids) if i is not None)
        by_length = sorted((self.tokens[i] for i in specials), key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, by_length))) if by_length else None

    @property
    def vocab_size(self) -> int:
        """The number of tokens."""
        return len(self.tokens)

    # ----------------------------------------------------------------- encoding
    def encode(self, text: str, add_bos: bool | None = None, special: bool = True) -> list[int]:
        """Token ids of ``text``; ``special``: control tokens written in the text are parsed."""
        check_text(text)
        ids: list[int] = []
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids.append(self.bos_id)
        pos = 0
        # each text fragment is encoded alone: the input's first, and each after a special
        # token, takes SentencePiece's space prefix (llama.cpp; Hugging Face's legacy Llama)
        if special and self._special_re is not None:
            for m in self._special_re.finditer(text):
                if m.start() > pos:
                    ids.extend(self._encode_text(text[pos:m.start()]))
                ids.append(self.vocab[m.group()])
                pos = m.end()
        if pos < len(text):
            ids.extend(self._encode_text(text[pos:]))
        return ids

    def _encode_text(self, text: str) -> list[int]:  # pragma: no cover - abstract
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
        """DataError naming the first id outside the vocabulary."""
        for i in ids:
            if not 0 <= int(i) < len(self.tokens):
                raise DataError(f"token id {i} outside [0, {len(self.tokens)})")

    # ----------------------------------------------------------------- loading
    @staticmethod
    def from_gguf(gguf: Any) -> Tokenizer:
        """The tokenizer described by a ``GGUFFile``'s ``tokenizer.ggml.*`` metadata. Each key's
        type (and a token id's range) is checked here, by ``MetadataReader``; counts and values
        (token types, scores, merges, byte tokens) by the constructors, for any caller. Either
        way a ``ConfigError`` naming the file and the key."""
        try:
            return Tokenizer._from_gguf(gguf)
        except ConfigError as exc:
            msg = str(exc)
            if msg.startswith(f"{gguf.path}: "):
                raise
            raise ConfigError(f"{gguf.path}: {msg}") from None

    @staticmethod
    def _from_gguf(gguf: Any) -> Tokenizer:
        md = MetadataReader(gguf, ConfigError, ": the file has no tokenizer")
        model = md.string("tokenizer.ggml.model", required=True)
        tokens = md.strings("tokenizer.ggml.tokens")
        n = len(tokens)
        common = dict(tokens=tokens, types=md.numbers("tokenizer.ggml.token_type", n, "i"),
                      bos_id=md.token_id("tokenizer.ggml.bos_token_id", n),
                      eos_id=md.token_id("tokenizer.ggml.eos_token_id", n),
                      chat_template=md.string("tokenizer.chat_template"),
                      eot_ids=tuple(i for i in (md.token_id("tokenizer.ggml.eot_token_id", n),)
                                    if i is not None))
        if model == "gpt2":
            from .bpe import ByteBPETokenizer

            if "tokenizer.ggml.merges" not in md:
                raise ConfigError(f"{gguf.path}: a gpt2 tokenizer needs tokenizer.ggml.merges")
            return ByteBPETokenizer(merges=md.strings("tokenizer.ggml.merges", allow_empty=True),
                                    pre=md.string("tokenizer.ggml.pre", "default"),
                                    add_bos=md.flag("tokenizer.ggml.add_bos_token", False), **common)
        if model == "llama":
            from .spm import SentencePieceTokenizer

            if "tokenizer.ggml.scores" not in md:
                raise ConfigError(f"{gguf.path}: a llama tokenizer needs tokenizer.ggml.scores")
            return SentencePieceTokenizer(
                scores=md.numbers("tokenizer.ggml.scores", n, "iuf"),
                add_bos=md.flag("tokenizer.ggml.add_bos_token", True),
                add_space_prefix=md.flag("tokenizer.ggml.add_space_prefix", True),
                unk_id=md.token_id("tokenizer.ggml.unknown_token_id", n), **common)
        raise ConfigError(f"{gguf.path}: tokenizer model {model!r} is not supported (gpt2, llama)")


def _token_types(types: Any, n: int) -> np.ndarray:
    """``types`` (GGUF ``tokenizer.ggml.token_type``; None: all NORMAL) as int32, one per
    token, each one of llama.cpp's types (checked before the cast, which would wrap)."""
    if types is None:
        return np.full(n, NORMAL, np.int32)
    t, key = np.asarray(types), "tokenizer: tokenizer.ggml.token_type"
    if t.ndim != 1 or t.dtype.kind not in "iu":
        raise ConfigError(f"{key}: expected {n} integers, got an array of {t.dtype} of shape "
                          f"{t.shape}")
    if t.size != n:
        raise ConfigError(f"{key}: {t.size} values for {n} tokens")
    bad = np.flatnonzero((t < 0) | (t > BYTE))
    if bad.size:
        i = int(bad[0])
        raise ConfigError(f"{key}: token #{i} has type {int(t[i])}, not one of llama.cpp's "
                          f"0..{BYTE}")
    return t.astype(np.int32)


def check_text(text: Any, what: str = "text") -> str:
    """``text`` if it is a ``str`` that encodes to UTF-8; a lone surrogate (what Python makes
    of undecodable bytes, as in ``sys.argv``) raises ``ConfigError`` naming its position, as
    Hugging Face tokenizers refuse it too, rather than being replaced silently."""
    if not isinstance(text, str):
        raise ConfigError(f"{what}: expected a str, got {type(text).__name__}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            c = ord(text[exc.start])
            hint = (f" (byte 0x{c - 0xDC00:02X} that was not valid UTF-8)" if 0xDC80 <= c <= 0xDCFF
                    else "")
            raise ConfigError(f"{what}: character {exc.start} is a lone surrogate U+{c:04X}{hint}: "
                              "not text that can be tokenized") from None
    return text


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
