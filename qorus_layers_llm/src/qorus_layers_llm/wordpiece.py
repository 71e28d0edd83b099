"""BERT's WordPiece tokenizer from a Hugging Face checkpoint's ``vocab.txt`` (and
``tokenizer_config.json``), with no third-party dependency: the same ids as the ``tokenizers``
library's ``BertWordPieceTokenizer`` (tests/test_wordpiece.py compares them).

Special tokens written in the text (``[MASK]``) are found first, in the raw text (longest
match), as ``tokenizers`` does; the rest goes through ``BasicTokenizer`` and then greedy
longest-match-first WordPiece, with ``##`` on pieces inside a word and ``[UNK]`` for a word
longer than ``max_input_chars_per_word`` or one that no pieces spell.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from qorus_core.errors import CheckpointError, ConfigError, DataError

from .bert_basic import BasicTokenizer
from .tokenizer import check_text
from .tokenizer_files import ConfigFields, check_max_length, check_texts, pad_batch

#: the word cache (as in bpe.py): at most this many words, each at most this long
CACHE_WORDS = 1 << 16
CACHE_WORD_CHARS = 64

_DEFAULT_TOKENS = {"unk": "[UNK]", "sep": "[SEP]", "pad": "[PAD]", "cls": "[CLS]",
                   "mask": "[MASK]"}


def read_vocab(path: str | os.PathLike) -> list[str]:
    """The tokens of ``vocab.txt``, one a line, the id being the line number. Lines are split
    on ``\\n`` only and trailing whitespace dropped, as ``tokenizers`` reads them."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable UTF-8 vocabulary ({exc})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens = [t.rstrip() for t in lines]
    if not tokens:
        raise ConfigError(f"{path}: the vocabulary is empty")
    return tokens


def cleanup(token: str) -> str:
    """``tokenizers``' WordPiece decoder cleanup (applied to each token, as it does)."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                 (" n't", "n't"), (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"),
                 (" 've", "'ve"), (" 're", "'re")):
        token = token.replace(a, b)
    return token


class WordPieceTokenizer:
    """BERT's tokenizer. ``tokens``: the vocabulary, id = position. ``special``: role
    (``unk``, ``sep``, ``cls``, ``pad``, ``mask``) -> token; ``unk``, ``cls`` and ``sep``
    must be in the vocabulary, the others are dropped when they are not. Safe to share between
    threads (the word cache is bounded; each dict operation is atomic)."""

    def __init__(self, tokens: Sequence[str], *, lowercase: bool = True,
                 strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
                 special: dict[str, str | None] | None = None,
                 extra_special: Iterable[str] = (), model_max_length: int | None = None,
                 max_input_chars_per_word: int = 100, prefix: str = "##",
                 cleanup: bool = True, source: str = "vocab") -> None:
        self.tokens = list(tokens)
        self.vocab = {t: i for i, t in enumerate(self.tokens)}   # a repeated line: the last id
        self.basic = BasicTokenizer(lowercase, strip_accents, tokenize_chinese_chars)
        self.max_input_chars_per_word, self.prefix = int(max_input_chars_per_word), prefix
        self.cleanup, self.model_max_length, self.source = bool(cleanup), model_max_length, source
        roles = {**_DEFAULT_TOKENS, **(special or {})}
        for role in ("unk", "cls", "sep"):
            if roles.get(role) not in self.vocab:
                raise ConfigError(f"{source}: the {role} token {roles.get(role)!r} is not in "
                                  f"the vocabulary (set {role}_token in tokenizer_config.json)")
        self.special_tokens = {r: self.vocab[t] for r, t in roles.items() if t in self.vocab}
        specials = {t for t in roles.values() if t in self.vocab}
        for t in extra_special:
            if t not in self.vocab:
                raise ConfigError(f"{source}: special token {t!r} is not in the vocabulary")
            specials.add(t)
        self.special_ids = frozenset(self.vocab[t] for t in specials)
        by_length = sorted(specials, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, by_length)))
        self._longest = max(map(len, self.tokens))
        self._cache: dict[str, list[int]] = {}

    # ----------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        """The number of tokens."""
        return len(self.tokens)

    @property
    def pad_id(self) -> int | None:
        """The ``[PAD]`` id, or None."""
        return self.special_tokens.get("pad")

    @property
    def unk_id(self) -> int:
        """The ``[UNK]`` id."""
        return self.special_tokens["unk"]

    @property
    def cls_id(self) -> int:
        """The ``[CLS]`` id."""
        return self.special_tokens["cls"]

    @property
    def sep_id(self) -> int:
        """The ``[SEP]`` id."""
        return self.special_tokens["sep"]

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or None."""
        return self.vocab.get(token)

    def id_to_token(self, token_id: int) -> str:
        """The token of id ``token_id`` (DataError for an id out of range)."""
        self._check_ids([token_id])
        return self.tokens[int(token_id)]

    # ----------------------------------------------------------------- encoding
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``text``; ``add_special_tokens``: ``[CLS] ... [SEP]``."""
        ids = self._content(text)
        return [self.cls_id, *ids, self.sep_id] if add_special_tokens else ids

    def encode_pair(self, a: str, b: str,
                    add_special_tokens: bool = True) -> tuple[list[int], list[int]]:
        """Ids and token type ids of ``[CLS] a [SEP] b [SEP]`` (types 0 for a, 1 for b)."""
        x, y = self._content(a, "a"), self._content(b, "b")
        if add_special_tokens:
            x, y = [self.cls_id, *x, self.sep_id], [*y, self.sep_id]
        return x + y, [0] * len(x) + [1] * len(y)

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None,
                     padding: bool | str = True,
                     add_special_tokens: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int32 [N, T], attention_mask bool [N, T])`` of ``texts``, each cut to
        ``max_length`` (default ``model_max_length``; None: no cut) keeping ``[SEP]`` last,
        padded as ``tokenizer_files.pad_batch`` says."""
        check_texts(texts)
        n_special = 2 if add_special_tokens else 0
        limit = self.model_max_length if max_length is None else max_length
        if limit is not None:
            limit = check_max_length(limit, n_special, "encode_batch")
        seqs = []
        for i, text in enumerate(texts):
            ids = self._content(text, f"texts[{i}]")
            if limit is not None:
                ids = ids[:limit - n_special]
            seqs.append([self.cls_id, *ids, self.sep_id] if add_special_tokens else ids)
        return pad_batch(seqs, self.pad_id, padding, limit, "encode_batch")

    def _content(self, text: str, what: str = "text") -> list[int]:
        check_text(text, what)
        ids: list[int] = []
        pos = 0
        for m in self._special_re.finditer(text):
            ids.extend(self._encode_plain(text[pos:m.start()]))
            ids.append(self.vocab[m.group()])
            pos = m.end()
        ids.extend(self._encode_plain(text[pos:]))
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        ids: list[int] = []
        cache = self._cache
        for word in self.basic(text) if text else ():
            got = cache.get(word)
            if got is None:
                got = self.wordpiece(word)
                if len(word) <= CACHE_WORD_CHARS:
                    if len(cache) >= CACHE_WORDS:
                        cache.clear()
                    cache[word] = got
            ids.extend(got)
        return ids

    def wordpiece(self, word: str) -> list[int]:
        """Greedy longest-match-first pieces of one word (``##`` on all but the first);
        ``[UNK]`` alone for a word too long or one the pieces cannot spell."""
        n, vocab = len(word), self.vocab
        if n > self.max_input_chars_per_word:
            return [self.unk_id]
        out, start = [], 0
        while start < n:
            end = min(n, start + self._longest)
            while start < end:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                got = vocab.get(piece)
                if got is not None:
                    break
                end -= 1
            else:
                return [self.unk_id]
            out.append(got)
            start = end
        return out

    # ----------------------------------------------------------------- decoding
    def decode(self, ids: Iterable[int] | np.ndarray, skip_special: bool = False) -> str:
        """Text of ``ids``: pieces after the first joined by a space, ``##`` ones glued to the
        one before, then the WordPiece decoder's cleanup (`` .`` -> ``.``) when ``cleanup``."""
        ids = [int(i) for i in ids]
        self._check_ids(ids)
        out = []
        for i in ids:
            if skip_special and i in self.special_ids:
                continue
            t = self.tokens[i]
            if out:
                t = t[len(self.prefix):] if t.startswith(self.prefix) else " " + t
            out.append(cleanup(t) if self.cleanup else t)
        return "".join(out)

    def _check_ids(self, ids: Iterable[int]) -> None:
        for i in ids:
            if not 0 <= int(i) < len(self.tokens):
                raise DataError(f"{self.source}: token id {i} outside [0, {len(self.tokens)})")

    # ----------------------------------------------------------------- loading
    @staticmethod
    def from_files(vocab_txt: str | os.PathLike,
                   tokenizer_config_json: str | os.PathLike | None = None) -> WordPieceTokenizer:
        """The tokenizer of ``vocab.txt`` and, when given, ``tokenizer_config.json``
        (``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars``, ``model_max_length``,
        the ``*_token`` fields, ``additional_special_tokens``, ``added_tokens_decoder``,
        ``clean_up_tokenization_spaces``). Missing file: CheckpointError; a bad field:
        ConfigError naming the file and the field."""
        tokens = read_vocab(vocab_txt)
        cfg = ConfigFields.load(tokenizer_config_json)
        special = {r: cfg.token(f"{r}_token", t) for r, t in _DEFAULT_TOKENS.items()}
        extra = cfg.tokens("additional_special_tokens")
        vocab = {t: i for i, t in enumerate(tokens)}
        for i, (content, is_special) in cfg.added_tokens().items():
            if vocab.get(content) != i:
                raise cfg.error(f"added_tokens_decoder[{str(i)!r}]",
                                f"names {content!r} with id {i}, but {vocab_txt} gives it "
                                f"{vocab.get(content, 'no id')} (tokens added past vocab.txt "
                                "need tokenizer.json)")
            if is_special:
                extra.append(content)
        try:
            return WordPieceTokenizer(
                tokens, lowercase=cfg.flag("do_lower_case", True),
                strip_accents=cfg.flag("strip_accents", None),
                tokenize_chinese_chars=cfg.flag("tokenize_chinese_chars", True),
                special=special, extra_special=extra, model_max_length=cfg.max_length(),
                cleanup=cfg.flag("clean_up_tokenization_spaces", True), source=str(vocab_txt))
        except ConfigError as exc:
            if tokenizer_config_json is None:
                raise
            raise ConfigError(f"{exc} (with {tokenizer_config_json})") from None
