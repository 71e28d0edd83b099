"""A Hugging Face decoder directory ready to generate and chat: ``load_hf_llm(dir)``, what
``models.load_llm`` returns for a directory (``qorus generate HF_DIR``, ``qorus chat HF_DIR``).

The network is ``load_decoder``'s (the safetensors' matrices used where they lie: F32 as
mapped views, F16 / BF16 as 16-bit weights; GPT-2's copied), the tokenizer
``load_tokenizer``'s (``tokenizer.json`` through the ``tokenizers`` library, so the ids are
Hugging Face's), wrapped in ``HFChatTokenizer``: the interface ``chat.py``, ``cli.py`` and
``generate`` use from the GGUF ``Tokenizer`` (``encode(text, add_bos=)``, ``decode``,
``token_bytes`` for streaming, ``bos_id``/``eos_id``, ``stop_ids``, ``special_ids``,
``chat_template``). The chat template is the directory's (``tokenizer_config.json``'s
``chat_template``, else ``chat_template.jinja``), rendered by ``chat.render_chat`` in its
sandbox. Generation stops at the tokenizer's EOS and at every ``eos_token_id`` of
``config.json`` and ``generation_config.json``, as ``transformers``' ``generate`` does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core import Model
from qorus_core.errors import CheckpointError, ConfigError, DataError

from .hf_checkpoint import model_dir, read_json
from .hf_decoder import DecoderSpec, load_decoder
from .hf_gguf_vocab import BYTE_TOKEN, SPACE, default_chat_template
from .hf_tokenizer import HFTokenizer, load_tokenizer
from .tokenizer import bytes_to_unicode


class HFChatTokenizer:
    """A directory's ``HFTokenizer`` as the model's tokenizer: ``vocab_size`` is the model's
    (ids the tokenizer lacks, a padded embedding's, decode to nothing), ``tokens[i]`` each
    id's string. Safe to share between threads, as ``HFTokenizer`` is."""

    def __init__(self, hf: HFTokenizer, vocab_size: int, chat_template: str | None,
                 stop_ids: Iterable[int]) -> None:
        self.hf = hf
        self.tokens = [""] * vocab_size
        for t, i in hf.tok.get_vocab(with_added_tokens=True).items():
            if i < vocab_size:
                self.tokens[i] = t
        self.bos_id = hf.special_tokens.get("bos")
        self.eos_id = hf.special_tokens.get("eos")
        self.chat_template = chat_template
        self.special_ids = hf.special_ids
        self.stop_ids = frozenset(i for i in (self.eos_id, *stop_ids) if i is not None)
        self._n_tok = hf.vocab_size
        self._bytes = _token_bytes_fn(hf)

    @property
    def vocab_size(self) -> int:
        """The number of tokens, added ones included."""
        return len(self.tokens)

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Ids of ``text``; ``add_bos`` None or True: with the special tokens the tokenizer's
        post-processor adds (its BOS), False: none (a template that wrote BOS itself)."""
        return self.hf.encode(text, add_special_tokens=add_bos is not False)

    def decode(self, ids: Iterable[int] | np.ndarray, skip_special: bool = False) -> str:
        """Text of ``ids`` by the tokenizer's decoder; ids past the tokenizer's vocabulary but
        inside the model's have none."""
        ids = [int(i) for i in ids]
        self._check(ids)
        return self.hf.decode([i for i in ids if i < self._n_tok], skip_special)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes token ``token_id`` adds to the text (for streaming: a byte-level token can
        hold part of a UTF-8 character)."""
        self._check([token_id])
        if token_id >= self._n_tok:
            return b""
        return self._bytes(int(token_id))

    def _check(self, ids: list[int]) -> None:
        for i in ids:
            if not 0 <= i < len(self.tokens):
                raise DataError(f"{self.hf.source}: token id {i} outside [0, {len(self.tokens)})")


def _token_bytes_fn(hf: HFTokenizer) -> Callable[[int], bytes]:
    """``id -> bytes`` for the tokenizer's decoder: byte-level (GPT-2's printable characters
    back to bytes), SentencePiece-style (``▁`` a space, ``<0xXX>`` a byte), else the decoded
    text of the token alone. Added tokens are their content."""
    tok = hf.tok
    added = {i: t.content for i, t in tok.get_added_tokens_decoder().items()}
    kind = _decoder_kind(tok)
    char_byte = {c: b for b, c in bytes_to_unicode().items()}

    def token_bytes(i: int) -> bytes:
        if i in added:
            return added[i].encode("utf-8")
        t = tok.id_to_token(i)
        if kind == "byte_level":
            return bytes(char_byte.get(c, ord(c) & 0xFF) for c in t)
        if kind == "sentencepiece":
            if BYTE_TOKEN.fullmatch(t):
                return bytes([int(t[3:5], 16)])
            return t.replace(SPACE, " ").encode("utf-8")
        return tok.decode([i], skip_special_tokens=False).encode("utf-8")

    return token_bytes


def _decoder_kind(tok: Any) -> str:
    """"byte_level", "sentencepiece" or "other", from the tokenizer's decoder."""
    if tok.decoder is None:
        return "other"
    state = json.loads(tok.decoder.__getstate__())
    steps = state.get("decoders", [state]) if state.get("type") == "Sequence" else [state]
    kinds = {s.get("type") for s in steps}
    if "ByteLevel" in kinds:
        return "byte_level"
    if kinds & {"ByteFallback", "Metaspace"}:
        return "sentencepiece"
    return "other"


@dataclass
class LoadedHFLLM:
    """A Hugging Face decoder ready to run: what ``generate``, ``Generator``, ``Conversation``
    and the CLI use of a ``LoadedLLM`` (model, tokenizer, context, load_ms, weight_bytes,
    info), with the directory's ``spec`` and ``path``."""

    model: Model
    tokenizer: HFChatTokenizer
    spec: DecoderSpec
    path: Path
    context: int
    load_ms: float
    weight_bytes: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def load_hf_llm(path: str | os.PathLike, context: int | None = None, kernels: Any = None,
                dequantize: bool = False) -> LoadedHFLLM:
    """The decoder in the Hugging Face directory ``path`` with its tokenizer and chat
    template; ``context`` KV-cache positions (default the model's, at most 2048). The
    matrices are used where they lie in the mapped safetensors (F16 / BF16 as 16-bit
    weights); ``dequantize``: float32 copies instead."""
    t0 = time.perf_counter()
    d = model_dir(path)
    tok = load_tokenizer(d)
    if not isinstance(tok, HFTokenizer):
        raise CheckpointError(f"{d / 'tokenizer.json'}: not found; a decoder needs its "
                              "tokenizer.json (vocab.txt is a BERT WordPiece vocabulary)")
    model, spec = load_decoder(d, context, kernels, in_place=not dequantize)
    if tok.vocab_size > spec.vocab:
        raise CheckpointError(f"{tok.source}: {tok.vocab_size} tokens, more than the model's "
                              f"{spec.vocab} ({d / 'config.json'} field 'vocab_size')")
    chat = HFChatTokenizer(tok, spec.vocab, default_chat_template(d), eos_ids(d, spec.vocab))
    info = {"name": d.resolve().name, "model_type": spec.model_type}
    return LoadedHFLLM(model, chat, spec, d, model.input_shape[0],
                       (time.perf_counter() - t0) * 1e3, _weight_bytes(model), info)


def _weight_bytes(model) -> int:
    """Bytes of the model's weights as they are used (16-bit matrices at 2 bytes a value)."""
    from qorus_core import QWeight

    ext = model.store.external
    if not ext:
        return model.num_parameters * 4
    return sum(int(w.nbytes) if isinstance(w, QWeight) else int(w.a.nbytes) for w in ext.values())


def eos_ids(d: Path, vocab: int) -> list[int]:
    """The ``eos_token_id`` (an id or a list) of ``config.json`` and ``generation_config.json``."""
    out: list[int] = []
    for name in ("config.json", "generation_config.json"):
        path = d / name
        if not path.is_file():
            continue
        v = read_json(path).get("eos_token_id")
        for i in (v if isinstance(v, list) else [] if v is None else [v]):
            if not (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab):
                raise ConfigError(f"{path}: field 'eos_token_id' must be token ids in [0, "
                                  f"{vocab}), got {v!r:.60}")
            out.append(i)
    return out

