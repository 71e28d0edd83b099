"""Byte-level BPE (GPT-2, SmolLM, llama 3): bytes mapped to printable characters, words
from the pre-tokenizer's regexes, merges applied by rank."""

from __future__ import annotations

from qorus_core.errors import ConfigError, DataError

from .pretokenize import compile_patterns, pretokenize
from .tokenizer import CONTROL, USER_DEFINED, Tokenizer, bytes_to_unicode, merge_by_rank


class ByteBPETokenizer(Tokenizer):
    """GGUF ``tokenizer.ggml.model == "gpt2"``."""

    def __init__(self, merges: list[str], pre: str = "default", **common) -> None:
        super().__init__(**common)
        self.ranks: dict[tuple[str, str], int] = {}
        for r, m in enumerate(merges):
            a, sep, b = m.partition(" ")
            if not sep:
                raise ConfigError(f"BPE merge #{r} {m!r} is not two symbols separated by a space")
            self.ranks[(a, b)] = r
        self.pre = pre
        self.patterns = compile_patterns(pre)
        self.byte_char = bytes_to_unicode()
        self.char_byte = {c: b for b, c in self.byte_char.items()}
        self._cache: dict[str, list[int]] = {}

    def _encode_text(self, text: str, first: bool) -> list[int]:
        ids: list[int] = []
        for word in pretokenize(text, self.patterns):
            got = self._cache.get(word)
            if got is None:
                got = self._cache[word] = self._encode_word(word)
            ids.extend(got)
        return ids

    def _encode_word(self, word: str) -> list[int]:
        symbols = [self.byte_char[b] for b in word.encode("utf-8")]
        out = []
        for s in merge_by_rank(symbols, self.ranks):
            i = self.vocab.get(s)
            if i is None:      # a merge the vocabulary lacks: fall back to its characters
                for c in s:
                    if c not in self.vocab:   # never drop text silently
                        raise DataError(f"tokenizer: the vocabulary has no token for byte "
                                        f"0x{self.char_byte[c]:02X} of {word!r}")
                    out.append(self.vocab[c])
            else:
                out.append(i)
        return out

    def token_bytes(self, token_id: int) -> bytes:
        text = self.tokens[token_id]
        if self.types[token_id] in (CONTROL, USER_DEFINED):
            return text.encode("utf-8")
        return bytes(self.char_byte[c] if c in self.char_byte else ord(c) & 0xFF for c in text)
