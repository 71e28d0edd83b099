"""Byte-level BPE (GPT-2, SmolLM, llama 3): bytes mapped to printable characters, words
from the pre-tokenizer's regexes, merges applied by rank."""

from __future__ import annotations

from qorus_core.errors import ConfigError, DataError

from .pretokenize import compile_patterns, pretokenize
from .tokenizer import CONTROL, USER_DEFINED, Tokenizer, bytes_to_unicode, merge_by_rank

#: pre-tokenizers whose tokenizer.json sets ``ignore_merges`` (llama.cpp's LLAMA3 type): a word
#: that is a token of its own is that token, whatever the merges would build
IGNORE_MERGES = frozenset({"llama3", "llama-v3", "llama-bpe", "falcon3"})

#: the word cache: at most this many words (then it starts over), each at most this long, so
#: a tokenizer shared by every conversation of a server does not grow with what it was fed
CACHE_WORDS = 1 << 16
CACHE_WORD_CHARS = 64


class ByteBPETokenizer(Tokenizer):
    """GGUF ``tokenizer.ggml.model == "gpt2"``. Encoding remembers the ids of the words it has
    seen (bounded: ``CACHE_WORDS``); several threads may encode at once (each dict operation
    is atomic, and a word encoded twice gets the same ids). Llama 3's pre-tokenizers
    (``IGNORE_MERGES``) take a word that is in the vocabulary as its token before merging,
    as Hugging Face's ``ignore_merges`` and llama.cpp do."""

    def __init__(self, merges: list[str], pre: str = "default", **common) -> None:
        super().__init__(**common)
        self.ranks: dict[tuple[str, str], int] = {}
        for r, m in enumerate(merges):
            a, sep, b = m.partition(" ")
            if not sep:
                raise ConfigError(f"BPE merge #{r} {m!r} is not two symbols separated by a space")
            self.ranks[(a, b)] = r
        self.pre = pre
        self.ignore_merges = pre in IGNORE_MERGES
        self.patterns = compile_patterns(pre)
        self.byte_char = bytes_to_unicode()
        self.char_byte = {c: b for b, c in self.byte_char.items()}
        self._cache: dict[str, list[int]] = {}

    def _encode_text(self, text: str) -> list[int]:
        ids: list[int] = []
        cache = self._cache
        for word in pretokenize(text, self.patterns):
            got = cache.get(word)
            if got is None:
                got = self._encode_word(word)
                if len(word) <= CACHE_WORD_CHARS:
                    if len(cache) >= CACHE_WORDS:
                        cache.clear()
                    cache[word] = got
            ids.extend(got)
        return ids

    def _encode_word(self, word: str) -> list[int]:
        symbols = [self.byte_char[b] for b in word.encode("utf-8")]
        if self.ignore_merges:
            whole = self.vocab.get("".join(symbols))
            if whole is not None and self.types[whole] not in (CONTROL, USER_DEFINED):
                return [whole]
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
        """The bytes token ``token_id`` stands for (control and user-defined tokens: their text in
        UTF-8), for streaming text that may split a character."""
        text = self.tokens[token_id]
        if self.types[token_id] in (CONTROL, USER_DEFINED):
            return text.encode("utf-8")
        return bytes(self.char_byte[c] if c in self.char_byte else ord(c) & 0xFF for c in text)
