"""SentencePiece-style (llama) vocabulary: spaces as U+2581, adjacent pieces merged by score,
unknown characters spelled as byte tokens ``<0xXX>`` (llama.cpp's SPM tokenizer)."""

from __future__ import annotations

import heapq
import re
from typing import Any

import numpy as np

from qorus_core.errors import ConfigError, DataError

from .tokenizer import BYTE, CONTROL, Tokenizer

SPACE = "\u2581"
BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")   # exactly: a malformed one is refused


class SentencePieceTokenizer(Tokenizer):
    """GGUF ``tokenizer.ggml.model == "llama"``."""

    def __init__(self, scores: np.ndarray, add_space_prefix: bool = True, unk_id: int | None = None,
                 **common) -> None:
        super().__init__(**common)
        self.scores = _scores(scores, len(self.tokens))
        self.add_space_prefix = bool(add_space_prefix)
        self.unk_id = unk_id
        self.byte_ids: dict[int, int] = {}
        self._byte_of: dict[int, int] = {}           # token id -> the byte it stands for
        for i in np.flatnonzero(self.types == BYTE).tolist():
            m = BYTE_TOKEN.fullmatch(self.tokens[i])
            if m is None:
                raise ConfigError(f"SentencePiece tokenizer: token #{i} {self.tokens[i][:20]!r} is "
                                  "of type BYTE but is not spelled <0xHH> (two hex digits)")
            self.byte_ids[int(m.group(1), 16)] = i
            self._byte_of[i] = int(m.group(1), 16)

    def _encode_text(self, text: str) -> list[int]:
        if self.add_space_prefix:      # each fragment: the input's first or after a special
            text = " " + text
        text = text.replace(" ", SPACE)
        sym = list(text)                           # one symbol per character
        left = list(range(-1, len(sym) - 1))
        right = list(range(1, len(sym) + 1))
        heap: list[tuple[float, int, int, str]] = []

        def push(i: int) -> None:
            j = right[i]
            if i < 0 or j >= len(sym):
                return
            t = self.vocab.get(sym[i] + sym[j])
            if t is not None:
                heapq.heappush(heap, (-float(self.scores[t]), i, j, sym[i] + sym[j]))

        for i in range(len(sym) - 1):
            push(i)
        while heap:
            _, i, j, text_ij = heapq.heappop(heap)
            if not sym[i] or not sym[j] or right[i] != j or sym[i] + sym[j] != text_ij:
                continue                            # stale: one side merged meanwhile
            sym[i], sym[j] = text_ij, ""
            right[i] = right[j]
            if right[i] < len(sym):
                left[right[i]] = i
            push(left[i])
            push(i)
        ids: list[int] = []
        for s in sym:
            if not s:
                continue
            t = self.vocab.get(s)
            if t is not None:
                ids.append(t)
                continue
            for b in s.encode("utf-8"):             # byte fallback
                if b in self.byte_ids:
                    ids.append(self.byte_ids[b])
                elif self.unk_id is not None:
                    ids.append(self.unk_id)
                else:                               # never drop text silently (llama.cpp throws)
                    raise DataError(f"tokenizer: the vocabulary cannot spell {s!r} (no token, no "
                                    f"byte token <0x{b:02X}>, no unknown token)")
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of token ``token_id``: a byte token's byte, a piece's text with U+2581 as a
        space."""
        t = self.tokens[token_id]
        if self.types[token_id] == BYTE:
            return bytes([self._byte_of[token_id]])
        if self.types[token_id] == CONTROL:
            return t.encode("utf-8")
        return t.replace(SPACE, " ").encode("utf-8")

    def decode(self, ids, skip_special: bool = False) -> str:
        """The text of ``ids``, without the dummy space prefix the encoder added."""
        text = super().decode(ids, skip_special)
        return text[1:] if self.add_space_prefix and text.startswith(" ") else text  # dummy prefix


def _scores(scores: Any, n: int) -> np.ndarray:
    """``scores`` (GGUF ``tokenizer.ggml.scores``) as float32, one finite score per token
    (checked after the cast: a float64 score beyond float32 range is inf, refused too)."""
    key = "SentencePiece tokenizer: tokenizer.ggml.scores"
    s = np.asarray(scores)
    if s.ndim != 1 or s.dtype.kind not in "iuf":
        raise ConfigError(f"{key}: expected {n} numbers, got an array of {s.dtype} of shape "
                          f"{s.shape}")
    if s.size != n:
        raise ConfigError(f"{key}: {s.size} values for {n} tokens")
    with np.errstate(over="ignore"):
        s = s.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        i = int(bad[0])
        raise ConfigError(f"{key}: token #{i} has the non-finite value {s[i]}")
    return s
