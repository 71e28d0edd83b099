"""Pre-tokenizers of byte-level BPE vocabularies: the regexes that cut text into words.

The GPT-2 family's patterns use ``\\p{L}`` (letters) and ``\\p{N}`` (numbers), which Python's
``re`` lacks; the two classes are built once from ``str.isalpha`` / Unicode categories, so the
split is exact for the interpreter's Unicode version without a third-party regex engine.
Each pre-tokenizer is a list of patterns applied in turn (as llama.cpp does): every pattern
splits each piece further, and text between matches stays a piece of its own.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

from qorus_core.errors import ConfigError

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\pL+| ?\pN+| ?[^\s\pL\pN]+|\s+(?!\S)|\s+"
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\pL\pN]?\pL+|\pN{1,3}| ?[^\s\pL\pN]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = _LLAMA3.replace(r"\pN{1,3}", r"\pN")     # Qwen2: digits one by one

# tokenizer.ggml.pre (GGUF metadata) -> patterns, as in llama.cpp's llama-vocab.cpp
PATTERNS: dict[str, list[str]] = {
    "default": [_GPT2],
    "gpt2": [_GPT2],
    "gpt-2": [_GPT2],
    "smollm": [r"\pN", _GPT2],          # digits one by one, then GPT-2's split
    "starcoder": [r"\pN", _GPT2],
    "refact": [r"\pN", _GPT2],
    "llama3": [_LLAMA3],
    "llama-bpe": [_LLAMA3],
    "qwen2": [_QWEN2],
}


def _ranges(pred) -> str:
    """A character-class body for every code point where ``pred`` holds."""
    out, start, prev = [], None, None
    for c in range(sys.maxunicode + 1):
        if 0xD800 <= c <= 0xDFFF or not pred(chr(c)):
            continue
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            out.append((start, prev))
            start = prev = c
    if start is not None:
        out.append((start, prev))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                   for a, b in out)


@cache
def _classes() -> tuple[str, str]:
    letters = _ranges(str.isalpha)
    numbers = _ranges(lambda ch: ch.isdecimal() or (ch.isnumeric()
                                                    and unicodedata.category(ch)[0] == "N"))
    return letters, numbers


@cache
def compile_patterns(name: str) -> tuple[re.Pattern, ...]:
    """The compiled patterns of pre-tokenizer ``name`` (GGUF ``tokenizer.ggml.pre``)."""
    if name not in PATTERNS:
        raise ConfigError(f"pre-tokenizer {name!r} is not supported; known: {', '.join(sorted(PATTERNS))}")
    letters, numbers = _classes()
    out = []
    for p in PATTERNS[name]:
        p = p.replace(r"[^\s\pL\pN]", f"[^\\s{letters}{numbers}]")
        p = p.replace(r"[^\r\n\pL\pN]", f"[^\\r\\n{letters}{numbers}]")
        p = p.replace(r"\pL", f"[{letters}]").replace(r"\pN", f"[{numbers}]")
        out.append(re.compile(p))
    return tuple(out)


def pretokenize(text: str, patterns: tuple[re.Pattern, ...]) -> list[str]:
    """Cut ``text`` into pieces: each pattern splits every piece, gaps are pieces too."""
    pieces = [text]
    for pat in patterns:
        nxt: list[str] = []
        for piece in pieces:
            pos = 0
            for m in pat.finditer(piece):
                if m.start() > pos:
                    nxt.append(piece[pos:m.start()])
                if m.end() > m.start():
                    nxt.append(m.group())
                pos = m.end()
            if pos < len(piece):
                nxt.append(piece[pos:])
        pieces = nxt
    return pieces
