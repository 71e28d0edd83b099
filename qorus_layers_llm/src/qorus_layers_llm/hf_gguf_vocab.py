"""A Hugging Face tokenizer (``tokenizer.json``, ``tokenizer_config.json``, the chat template)
as GGUF ``tokenizer.*`` metadata, the way llama.cpp's ``convert_hf_to_gguf.py`` writes it, so
that our GGUF tokenizer and llama.cpp's rebuild it from the file alone.

- A byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM) is ``tokenizer.ggml.model = "gpt2"``: the
  tokens by id (an id the tokenizer lacks up to ``config.json``'s ``vocab_size`` is
  ``[PAD<id>]``, type UNUSED), their types (added special tokens, or ones that look special
  such as ``<|...|>``, CONTROL; other added tokens USER_DEFINED; the rest NORMAL), the merges
  in rank order, and ``tokenizer.ggml.pre``: the pre-tokenizer llama.cpp names, recognized
  from ``pre_tokenizer`` (llama.cpp hashes a tokenization instead; the structure names the
  same ones: ``gpt-2``, ``smollm``, ``llama-bpe``, ``qwen2``).
- A SentencePiece-style BPE with byte fallback (Llama 2, Mistral) is ``"llama"``: the pieces,
  BYTE-typed ``<0xXX>`` tokens, and scores that make the score-ordered merging of the
  SentencePiece tokenizer apply the merges in rank order (a token made by merge ``r`` scores
  ``-r``; other tokens score below every merge), with ``add_space_prefix`` from the
  normalizer's ``Prepend("▁")`` or the Metaspace pre-tokenizer. (llama.cpp's converter gives
  every piece -1000 here, which loses the merge order.)
- Special ids as llama.cpp's ``SpecialVocab`` finds them: ``tokenizer_config.json``'s
  ``<role>_token`` first, then ``config.json``'s ``<role>_token_id``; ``add_bos_token`` /
  ``add_eos_token`` from the post-processor's template, overridden by
  ``tokenizer_config.json`` (``add_bos_token`` always written: absent, a SentencePiece GGUF
  would add BOS where Hugging Face does not); for a llama GGUF, ``tokenizer_config.json``'s
  ``add_prefix_space`` as ``add_space_prefix`` (LlamaModel.set_vocab);
  ``tokenizer.chat_template`` from ``tokenizer_config.json``'s ``chat_template``, else
  ``chat_template.jinja``, else ``chat_template.json``.

SmolLM2's GGUF, written by llama.cpp, comes back key for key from the directory it was made
from (tests/test_hf_convert.py).

Every bad input is a QorusError naming the file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core.errors import CheckpointError, ConfigError

from .tokenizer import BYTE, CONTROL, NORMAL, UNUSED, USER_DEFINED
from .tokenizer_files import read_json

SPACE = "\u2581"
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
           r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
#: the Split regex before a ByteLevel(use_regex=False) -> llama.cpp's tokenizer.ggml.pre
SPLIT_PRE = {_LLAMA3: "llama-bpe", _QWEN2: "qwen2"}
#: special-token roles with a GGUF key (tokenizer.ggml.<key>), as gguf-py's SpecialVocab
ROLE_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
             "sep": "seperator_token_id", "pad": "padding_token_id", "mask": "mask_token_id"}


def looks_special(token: str) -> bool:
    """Added tokens llama.cpp types CONTROL although not marked special (convert_hf_to_gguf's
    ``does_token_look_special``)."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))


class TokenizerJSON:
    """The parts of a ``tokenizer.json`` the conversion reads, each checked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = read_json(path)
        self.model = self.obj("model")
        if self.model.get("type") != "BPE":
            raise self.error("model.type", f"is {self.model.get('type')!r}; only BPE tokenizers "
                             "convert (byte-level BPE as gpt2, SentencePiece-style BPE with "
                             "byte_fallback as llama)")
        vocab = self.model.get("vocab")
        if not isinstance(vocab, dict) or not all(_is_id(i) for i in vocab.values()):
            raise self.error("model.vocab", "must map token strings to ids")
        self.vocab: dict[str, int] = vocab
        self.added = self._added_tokens()

    def error(self, name: str, msg: str) -> ConfigError:
        """The error for field ``name`` of tokenizer.json (the file named)."""
        return ConfigError(f"{self.path}: field {name!r} {msg}")

    def obj(self, name: str, required: bool = True) -> dict[str, Any]:
        """Field ``name`` as an object; ``{}`` when absent and not ``required``."""
        v = self.data.get(name)
        if v is None and not required:
            return {}
        if not isinstance(v, dict):
            raise self.error(name, f"must be an object, got {v!r:.60}")
        return v

    def _added_tokens(self) -> dict[int, dict[str, Any]]:
        """``added_tokens``: id -> its entry (content, special, ...)."""
        v = self.data.get("added_tokens") or []
        if not isinstance(v, list):
            raise self.error("added_tokens", "must be a list")
        out = {}
        for i, t in enumerate(v):
            if not (isinstance(t, dict) and _is_id(t.get("id"))
                    and isinstance(t.get("content"), str) and t["content"]):
                raise self.error(f"added_tokens[{i}]", f"must have an int 'id' and a 'content' "
                                 f"string, got {t!r:.80}")
            out[t["id"]] = t
        return out

    def id_to_token(self, n_vocab: int, cfg_path: Path) -> dict[int, str]:
        """Every id's string (added tokens over the model's vocabulary), each below ``n_vocab``."""
        rev = {i: t for t, i in self.vocab.items()}
        rev.update({i: t["content"] for i, t in self.added.items()})
        top = max(rev, default=-1)
        if top >= n_vocab:
            raise ConfigError(f"{self.path}: token id {top} ({rev[top]!r}) is outside the model's "
                              f"vocabulary: {cfg_path} field 'vocab_size' is {n_vocab}")
        return rev

    def merges(self) -> list[tuple[str, str]]:
        """``model.merges`` in rank order, as pairs (both forms: "a b" and ["a", "b"])."""
        raw = self.model.get("merges") or []
        if not isinstance(raw, list):
            raise self.error("model.merges", "must be a list")
        out = []
        for r, m in enumerate(raw):
            if isinstance(m, str) and m.count(" ") == 1:
                a, b = m.split(" ")
            elif (isinstance(m, list) and len(m) == 2 and all(isinstance(s, str) and s for s in m)):
                a, b = m
            else:
                raise self.error(f"model.merges[{r}]", f"is not a pair of symbols: {m!r:.60}")
            out.append((a, b))
        return out

    def is_byte_level(self) -> bool:
        """Whether the pre-tokenizer maps bytes to GPT-2's printable characters."""
        pre = self.data.get("pre_tokenizer") or {}
        return any(p.get("type") == "ByteLevel" for p in _steps(pre, "pretokenizers"))


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _steps(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """A normalizer / pre-tokenizer / processor as its list of steps (a Sequence flattened)."""
    if not isinstance(obj, dict) or not obj:
        return []
    if obj.get("type") == "Sequence":
        return [s for s in obj.get(key) or [] if isinstance(s, dict)]
    return [obj]


def vocab_metadata(directory: Path, cfg: dict[str, Any], n_vocab: int,
                   llama_arch: bool = False) -> dict[str, Any]:
    """The ``tokenizer.*`` GGUF metadata of a Hugging Face model directory whose
    ``config.json`` is ``cfg`` and whose model has ``n_vocab`` logits (its ``vocab_size``).
    ``llama_arch``: a GGUF of architecture llama, which also takes ``tokenizer_config.json``'s
    ``add_prefix_space`` as ``add_space_prefix`` (llama.cpp's LlamaModel)."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; converting a model needs its tokenizer.json "
                              "(a SentencePiece tokenizer.model alone is not read)")
    tj = TokenizerJSON(path)
    cfg_path = directory / "config.json"
    tokens = tj.id_to_token(n_vocab, cfg_path)
    tcfg_path = directory / "tokenizer_config.json"
    tcfg = _tokenizer_config(directory)
    if tj.is_byte_level():
        meta = _gpt2_vocab(tj, tokens, n_vocab)
    elif tj.model.get("byte_fallback"):
        meta = _spm_vocab(tj, tokens, n_vocab)
    else:
        raise tj.error("pre_tokenizer", "has no ByteLevel step and model.byte_fallback is false: "
                       "neither a byte-level nor a SentencePiece-style BPE")
    meta.update(special_metadata(tj, cfg, tcfg, tcfg_path, n_vocab))
    meta.update(chat_template_metadata(directory))
    if llama_arch and isinstance(tcfg.get("add_prefix_space"), bool):
        meta["tokenizer.ggml.add_space_prefix"] = tcfg["add_prefix_space"]
    return meta


def _tokenizer_config(directory: Path) -> dict[str, Any]:
    """tokenizer_config.json's object; empty when the directory has none."""
    path = directory / "tokenizer_config.json"
    return read_json(path) if path.is_file() else {}


def _gpt2_vocab(tj: TokenizerJSON, rev: dict[int, str], n: int) -> dict[str, Any]:
    """tokenizer.ggml.model "gpt2": tokens, types, merges, pre (llama.cpp's get_vocab_base)."""
    _check_byte_level(tj)
    tokens, types = [], np.full(n, NORMAL, np.int32)
    for i in range(n):
        t = rev.get(i)
        if t is None:
            t, types[i] = f"[PAD{i}]", UNUSED
        elif i in tj.added:
            if tj.added[i].get("special") or looks_special(t):
                types[i] = CONTROL
            else:
                t, types[i] = t.replace(SPACE, " "), USER_DEFINED
        tokens.append(t)
    merges = [" ".join(s.replace(" ", "\u0120") for s in m) for m in tj.merges()]
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": _bpe_pre(tj),
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.merges": merges}


def _check_byte_level(tj: TokenizerJSON) -> None:
    """Options of a byte-level BPE that neither llama.cpp's gpt2 tokenizer nor ours applies."""
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if tj.model.get(key):
            raise tj.error(f"model.{key}", f"is {tj.model[key]!r}; a GGUF gpt2 tokenizer has none")
    for step in _steps(tj.obj("normalizer", required=False), "normalizers"):
        if step.get("type") != "NFC":
            raise tj.error("normalizer", f"has a {step.get('type')} step; a byte-level BPE "
                           "converts with none (or NFC)")


def _bpe_pre(tj: TokenizerJSON) -> str:
    """llama.cpp's name (tokenizer.ggml.pre) of the byte-level pre-tokenizer."""
    steps = _steps(tj.obj("pre_tokenizer"), "pretokenizers")
    kinds = [s.get("type") for s in steps]
    last = steps[-1] if steps else {}
    if last.get("add_prefix_space"):
        raise tj.error("pre_tokenizer", "adds a prefix space, which a GGUF gpt2 tokenizer cannot")
    if kinds == ["ByteLevel"] and last.get("use_regex", True):
        return "gpt-2"
    if (kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits")
            and last.get("use_regex", True)):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not last.get("use_regex", True):
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        if pattern in SPLIT_PRE:
            return SPLIT_PRE[pattern]
    raise tj.error("pre_tokenizer", f"({' + '.join(map(str, kinds))}) is not one of the "
                   "pre-tokenizers convert names: GPT-2's, SmolLM's (digits, then GPT-2's), "
                   "Llama 3's or Qwen2's split regex")


def _spm_vocab(tj: TokenizerJSON, rev: dict[int, str], n: int) -> dict[str, Any]:
    """tokenizer.ggml.model "llama": pieces, merge-rank scores, types, add_space_prefix."""
    rank: dict[str, int] = {}
    for r, (a, b) in enumerate(tj.merges()):
        rank.setdefault(a + b, r)
    low = -float(len(rank) + 1)
    tokens, scores = [], np.full(n, low, np.float32)
    types = np.full(n, NORMAL, np.int32)
    for i in range(n):
        t = rev.get(i)
        if t is None:
            t, types[i] = f"[PAD{i}]", UNUSED
        elif i in tj.added:
            types[i] = CONTROL if tj.added[i].get("special") else USER_DEFINED
        elif BYTE_TOKEN.fullmatch(t):
            types[i] = BYTE
        if t in rank and types[i] == NORMAL:
            scores[i] = -float(rank[t])
        tokens.append(t)
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.add_space_prefix": _spm_space_prefix(tj)}


def _spm_space_prefix(tj: TokenizerJSON) -> bool:
    """Whether the tokenizer puts "▁" before the text: the normalizer's Prepend("▁") (then
    Replace(" ", "▁")), or a Metaspace pre-tokenizer's prepend_scheme."""
    norm = [s.get("type") for s in _steps(tj.obj("normalizer", required=False), "normalizers")]
    pre = _steps(tj.obj("pre_tokenizer", required=False), "pretokenizers")
    if norm in (["Prepend", "Replace"], ["Replace"]) and not pre:
        return norm[0] == "Prepend"
    if not norm and len(pre) == 1 and pre[0].get("type") == "Metaspace":
        return pre[0].get("prepend_scheme", "always") != "never"
    raise tj.error("normalizer", f"({' + '.join(map(str, norm)) or 'none'}, pre_tokenizer "
                   f"{' + '.join(str(p.get('type')) for p in pre) or 'none'}) is not a "
                   "SentencePiece layout convert knows: Prepend('▁') + Replace(' ', '▁'), or "
                   "a Metaspace pre-tokenizer")


def special_metadata(tj: TokenizerJSON, cfg: dict[str, Any], tcfg: dict[str, Any],
                     tcfg_path: Path, n: int) -> dict[str, Any]:
    """The special token ids and the add_bos/add_eos flags (gguf-py's SpecialVocab):
    ``tokenizer_config.json`` (``tcfg``) names the tokens, ``config.json`` (``cfg``) fills
    in the ids it does not name."""
    names = {role: _token_name(tcfg, f"{role}_token", tcfg_path)
             for role in (*ROLE_KEYS, "cls")}
    names["bos"] = names["bos"] or names["cls"]
    names["eos"] = names["eos"] or names["sep"]
    by_content = {t: i for t, i in tj.vocab.items()}
    by_content.update({t["content"]: i for i, t in tj.added.items()})
    meta: dict[str, Any] = {}
    for role, key in ROLE_KEYS.items():
        tid = by_content.get(names[role]) if names[role] else None
        if tid is None:
            tid = cfg.get(f"{role}_token_id")
        if _is_id(tid) and tid < n:
            meta[f"tokenizer.ggml.{key}"] = np.uint32(tid)
    for role, flag in _add_flags(tj, names, tcfg, tcfg_path).items():
        meta[f"tokenizer.ggml.add_{role}_token"] = flag
    return meta


def _token_name(tcfg: dict[str, Any], field: str, path: Path) -> str | None:
    """A ``*_token`` field: a string or transformers' ``{"content": ...}`` form."""
    v = tcfg.get(field)
    if isinstance(v, dict):
        v = v.get("content")
    if v is not None and not isinstance(v, str):
        raise ConfigError(f"{path}: field {field!r} must be a token string, got {tcfg[field]!r:.60}")
    return v or None


def _add_flags(tj: TokenizerJSON, names: dict[str, str | None], tcfg: dict[str, Any],
               tcfg_path: Path) -> dict[str, bool]:
    """add_bos/add_eos: what the post-processor's single-sequence template adds, then the
    ``add_<role>_token`` fields of tokenizer_config.json. add_bos is always written (False
    when nothing adds BOS): a GGUF without it means True to a SentencePiece tokenizer."""
    flags: dict[str, bool] = {"bos": False}
    for proc in _steps(tj.obj("post_processor", required=False), "processors"):
        if proc.get("type") == "RobertaProcessing":
            flags.update(bos=True, eos=True)
        elif proc.get("type") == "TemplateProcessing":
            single = proc.get("single") or []
            specials = [(s.get("SpecialToken") or {}).get("id") if isinstance(s, dict) else None
                        for s in single]
            if len(single) > 1 and specials[0]:
                flags["bos"] = specials[0] in (names["bos"], names["cls"])
            if len(single) > 1 and specials[-1]:
                flags["eos"] = specials[-1] == names["eos"]
    for role in ("bos", "eos"):
        v = tcfg.get(f"add_{role}_token")
        if v is not None and not isinstance(v, bool):
            raise ConfigError(f"{tcfg_path}: field 'add_{role}_token' must be true or false, "
                              f"got {v!r:.40}")
        if v is not None:
            flags[role] = v
    return flags


def chat_templates(directory: Path) -> str | list[dict[str, str]] | None:
    """The model's chat template(s): ``tokenizer_config.json``'s ``chat_template`` (a string,
    or a list of ``{"name", "template"}``), else ``chat_template.jinja``, else
    ``chat_template.json``'s ``chat_template``; None when there is none."""
    tcfg_path = directory / "tokenizer_config.json"
    v = _tokenizer_config(directory).get("chat_template")
    where = f"{tcfg_path}: field 'chat_template'"
    if v is None:
        jinja, js = directory / "chat_template.jinja", directory / "chat_template.json"
        if jinja.is_file():
            try:
                return jinja.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{jinja}: not readable text ({exc})") from None
        if not js.is_file():
            return None
        v, where = read_json(js).get("chat_template"), f"{js}: field 'chat_template'"
    if isinstance(v, str):
        return v
    if isinstance(v, list) and all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                   and isinstance(c.get("template"), str) for c in v):
        return v
    raise ConfigError(f"{where} must be a string or a list of {{'name', 'template'}}, "
                      f"got {v!r:.60}")


def default_chat_template(directory: Path) -> str | None:
    """The template a chat uses: the only one, or the one named "default"."""
    v = chat_templates(directory)
    if isinstance(v, list):
        return next((c["template"] for c in v if c["name"] == "default"), None)
    return v


def chat_template_metadata(directory: Path) -> dict[str, str | list[str]]:
    """``tokenizer.chat_template`` (and ``tokenizer.chat_template.<name>`` with the list
    ``tokenizer.chat_templates`` for named ones), as gguf-py's add_chat_template."""
    v = chat_templates(directory)
    if v is None:
        return {}
    if isinstance(v, str):
        return {"tokenizer.chat_template": v}
    out: dict[str, str | list[str]] = {}
    names = []
    for c in v:
        name = re.sub(r"[^A-Za-z0-9]", "_", c["name"])
        if name and name != "default":
            names.append(name)
            out[f"tokenizer.chat_template.{name}"] = c["template"]
    if names:
        out["tokenizer.chat_templates"] = names
    default = next((c["template"] for c in v if c["name"] == "default"), None)
    if default is not None:
        out["tokenizer.chat_template"] = default
    return out
