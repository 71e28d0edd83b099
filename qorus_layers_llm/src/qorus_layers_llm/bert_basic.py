"""BERT's basic tokenizer: text cleaning, CJK spacing, accent stripping, lower-casing, then
whitespace and punctuation splitting, step for step as Hugging Face ``tokenizers``'
``BertNormalizer`` and ``BertPreTokenizer`` do, so the words (and so the ids) are the same.

Each step is a ``str.translate`` over a per-character table filled on demand (bounded), so the
per-character work is done once per distinct character, not once per character of the text.
Character classes come from Python's ``unicodedata``; ``tokenizers`` has Unicode 8.0 tables,
so the two differ only on characters assigned since 2015 (e.g. U+2E52, punctuation here).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

#: CJK ideograph ranges that get spaces around them: Google BERT's list as ``tokenizers`` has
#: it (its Extension F start is 0x2B920; Google's and transformers' slow tokenizer: 0x2B820)
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))

#: Unicode's White_Space property (Rust's ``char::is_whitespace``, which ``tokenizers`` splits on)
WHITESPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                       + "".join(map(chr, range(0x2000, 0x200B))))
_WS_SPLIT = re.compile("[" + re.escape("".join(sorted(WHITESPACE))) + "]+")

#: a character table holds at most this many entries, then starts over (memory stays bounded
#: for a server fed arbitrary text)
TABLE_SIZE = 1 << 15


def is_cjk(c: str) -> bool:
    """Whether ``c`` is a CJK ideograph, which BERT splits into a word of its own."""
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_control(c: str) -> bool:
    """Dropped by cleaning: categories Cc, Cf, Co, Cs (not tab, newline, return; not Cn, which
    ``tokenizers`` keeps)."""
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs")


def is_punctuation(c: str) -> bool:
    """ASCII punctuation (33-47, 58-64, 91-96, 123-126, symbols such as ``$`` included) or a
    Unicode P* character."""
    cp = ord(c)
    return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
            or unicodedata.category(c).startswith("P"))


class _Table(dict):
    """A ``str.translate`` table computing each character's replacement on first sight."""

    def __init__(self, rule: Callable[[str], str | None]) -> None:
        super().__init__()
        self.rule = rule

    def __missing__(self, cp: int) -> str | None:
        if len(self) >= TABLE_SIZE:
            self.clear()
        out = self[cp] = self.rule(chr(cp))
        return out


class BasicTokenizer:
    """Text to BERT words. ``strip_accents=None`` follows ``lowercase``, as in Hugging Face."""

    def __init__(self, lowercase: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, clean_text: bool = True) -> None:
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.clean_text = bool(clean_text)
        self._clean = _Table(self._clean_rule)
        self._marks = _Table(lambda c: None if unicodedata.category(c) == "Mn" else c)
        self._lower = _Table(str.lower)      # per character, as Rust's char::to_lowercase
        self._punct = _Table(lambda c: f" {c} " if is_punctuation(c) else c)

    def _clean_rule(self, c: str) -> str | None:
        if self.clean_text:
            if c in "\x00\ufffd" or is_control(c):
                return None
            if c in WHITESPACE:
                return " "
        if self.tokenize_chinese_chars and is_cjk(c):
            return f" {c} "
        return c

    def normalize(self, text: str) -> str:
        """``BertNormalizer``: clean, space CJK, strip accents (NFD, drop Mn), lower-case."""
        if self.clean_text or self.tokenize_chinese_chars:
            text = text.translate(self._clean)
        if self.strip_accents:
            text = unicodedata.normalize("NFD", text).translate(self._marks)
        if self.lowercase:
            text = text.translate(self._lower)
        return text

    def split(self, text: str) -> list[str]:
        """``BertPreTokenizer``: split on whitespace, then each punctuation character alone."""
        return [w for w in _WS_SPLIT.split(text.translate(self._punct)) if w]

    def __call__(self, text: str) -> list[str]:
        """The words of ``text``: normalized, then split on whitespace and punctuation."""
        return self.split(self.normalize(text))
