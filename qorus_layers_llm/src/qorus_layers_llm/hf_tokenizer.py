"""A Hugging Face checkpoint's ``tokenizer.json`` through the ``tokenizers`` library (the
implementation transformers' fast tokenizers are), behind the interface of
``WordPieceTokenizer``; and ``load_tokenizer(model_dir)``, which picks one of the two.

``tokenizers`` is an optional extra (``pip install qorus-layers-llm[hf]``): it is imported only
when a ``tokenizer.json`` is read. The loaded tokenizer's own truncation and padding settings
are turned off (their length is kept as ``model_max_length``, their pad id as ``pad_id``):
``encode`` gives every id, ``encode_batch`` cuts and pads as asked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core.errors import CheckpointError, ConfigError, DataError

from .tokenizer import check_text
from .tokenizer_files import ROLES, ConfigFields, check_max_length, check_texts, pad_batch
from .wordpiece import WordPieceTokenizer

#: what a role's token is called when tokenizer_config.json does not say (BERT's, then
#: RoBERTa's and SentencePiece models' names)
GUESSES = {"unk": ("[UNK]", "<unk>"), "sep": ("[SEP]", "</s>"), "pad": ("[PAD]", "<pad>"),
           "cls": ("[CLS]", "<s>"), "mask": ("[MASK]", "<mask>"), "bos": ("<s>",),
           "eos": ("</s>",)}


def import_tokenizers(path: str | os.PathLike) -> Any:
    """The ``tokenizers`` module, or ConfigError naming ``path`` and how to install it."""
    try:
        import tokenizers
    except ImportError:
        raise ConfigError(f"{path}: reading a tokenizer.json needs the tokenizers library: "
                          "pip install qorus-layers-llm[hf]") from None
    return tokenizers


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with ``WordPieceTokenizer``'s methods. ``special_tokens``:
    role -> id, from ``tokenizer_config.json``'s ``*_token`` fields, else the usual names among
    the file's special tokens. Safe to share between threads (``tokenizers`` is)."""

    def __init__(self, tok: Any, source: str, special_tokens: dict[str, int],
                 model_max_length: int | None = None) -> None:
        self.tok, self.source = tok, source
        self.special_tokens = dict(special_tokens)
        self.model_max_length = model_max_length
        self.special_ids = frozenset(i for i, t in tok.get_added_tokens_decoder().items()
                                     if t.special)

    @property
    def vocab_size(self) -> int:
        """The number of tokens, added ones included."""
        return self.tok.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int | None:
        """The padding token's id, or None."""
        return self.special_tokens.get("pad")

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or None when the vocabulary lacks it."""
        return self.tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str:
        """The token of id ``token_id`` (ConfigError for an id out of range)."""
        self._check_ids([token_id])
        return self.tok.id_to_token(int(token_id))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``text``, with the post-processor's special tokens when asked."""
        check_text(text)
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_pair(self, a: str, b: str,
                    add_special_tokens: bool = True) -> tuple[list[int], list[int]]:
        """Ids and token type ids of the pair, as the file's post-processor joins them."""
        check_text(a, "a")
        check_text(b, "b")
        enc = self.tok.encode(a, b, add_special_tokens=add_special_tokens)
        return enc.ids, enc.type_ids

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None,
                     padding: bool | str = True,
                     add_special_tokens: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int32 [N, T], attention_mask bool [N, T])``: each text's ids cut to
        ``max_length`` (default ``model_max_length``) before the special tokens are added, so
        they stay (``[SEP]`` last), then padded as ``tokenizer_files.pad_batch`` says."""
        check_texts(texts)
        texts = list(texts)
        for i, t in enumerate(texts):
            check_text(t, f"texts[{i}]")
        n_special = self.tok.num_special_tokens_to_add(False) if add_special_tokens else 0
        limit = self.model_max_length if max_length is None else max_length
        if limit is not None:
            limit = check_max_length(limit, n_special, "encode_batch")
        seqs = []
        for enc in self.tok.encode_batch(texts, add_special_tokens=False):
            if limit is not None:
                enc.truncate(limit - n_special)
            if add_special_tokens:
                enc = self.tok.post_process(enc, add_special_tokens=True)
            seqs.append(enc.ids)
        return pad_batch(seqs, self.pad_id, padding, limit, "encode_batch")

    def decode(self, ids: Iterable[int] | np.ndarray, skip_special: bool = False) -> str:
        """Text of ``ids`` by the file's decoder; an id outside the vocabulary is a DataError
        (``tokenizers`` would drop it silently)."""
        ids = [int(i) for i in ids]
        self._check_ids(ids)
        return self.tok.decode(ids, skip_special_tokens=skip_special)

    def _check_ids(self, ids: Iterable[int]) -> None:
        n = self.vocab_size
        for i in ids:
            if not 0 <= int(i) < n or self.tok.id_to_token(int(i)) is None:
                raise DataError(f"{self.source}: token id {i} outside the vocabulary [0, {n})")

    @staticmethod
    def from_file(tokenizer_json: str | os.PathLike,
                  tokenizer_config_json: str | os.PathLike | None = None) -> HFTokenizer:
        """``tokenizer.json`` (and ``tokenizer_config.json``'s ``*_token`` and
        ``model_max_length`` fields when given). Missing file: CheckpointError; unreadable
        one or a bad field: ConfigError naming it."""
        path = Path(tokenizer_json)
        tokenizers = import_tokenizers(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: not found")
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the library raises a bare Exception
            raise ConfigError(f"{path}: not a tokenizer.json the tokenizers library can read "
                              f"({exc})") from None
        cfg = ConfigFields.load(tokenizer_config_json)
        length = cfg.max_length()
        if length is None and tok.truncation:
            length = tok.truncation.get("max_length")
        pad_from_file = tok.padding.get("pad_id") if tok.padding else None
        tok.no_truncation()
        tok.no_padding()
        specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
        roles: dict[str, int] = {}
        for role in ROLES:
            name = cfg.token(f"{role}_token", None)
            if name is None:
                name = next((g for g in GUESSES[role] if g in specials), None)
                if name is None:
                    continue
            got = tok.token_to_id(name)
            if got is None:
                raise cfg.error(f"{role}_token", f"names {name!r}, which {path} does not have")
            roles[role] = got
        if pad_from_file is not None and "pad" not in roles:
            roles["pad"] = pad_from_file
        return HFTokenizer(tok, str(path), roles, length)


def load_tokenizer(model_dir: str | os.PathLike) -> HFTokenizer | WordPieceTokenizer:
    """The tokenizer of a Hugging Face model directory: ``tokenizer.json`` through the
    ``tokenizers`` library; else (or when that library is not installed) ``vocab.txt`` with
    our WordPiece; ``tokenizer_config.json`` with either when present. Neither file: a
    CheckpointError naming the directory and the files looked for."""
    d = Path(model_dir)
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a model directory (expected tokenizer.json or "
                              "vocab.txt in it)")
    config = d / "tokenizer_config.json"
    config_path = config if config.is_file() else None
    tj, vocab = d / "tokenizer.json", d / "vocab.txt"
    if tj.is_file():
        try:
            return HFTokenizer.from_file(tj, config_path)
        except ConfigError:
            if not vocab.is_file() or _has_tokenizers():
                raise
    if vocab.is_file():
        return WordPieceTokenizer.from_files(vocab, config_path)
    raise CheckpointError(f"{d}: no tokenizer: looked for tokenizer.json (read with the "
                          "tokenizers library) and vocab.txt (BERT WordPiece)")


def _has_tokenizers() -> bool:
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True
