"""What the Hugging Face tokenizers share: reading ``tokenizer_config.json`` fields (checked,
naming the file and field at fault) and padding a batch of id lists into arrays."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core.errors import CheckpointError, ConfigError

#: special-token roles, as ``tokenizer_config.json`` names them (``<role>_token``)
ROLES = ("unk", "sep", "pad", "cls", "mask", "bos", "eos")

#: transformers writes ``model_max_length: int(1e30)`` when a model has no limit
NO_LIMIT = 10**18

MISSING = object()


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``: CheckpointError if it is missing, ConfigError if it is not
    a JSON object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


class ConfigFields:
    """Typed access to a ``tokenizer_config.json`` (an empty one when there is none)."""

    def __init__(self, data: dict[str, Any], path: str | os.PathLike | None) -> None:
        self.data, self.path = data, path

    @staticmethod
    def load(path: str | os.PathLike | None) -> ConfigFields:
        """The fields of the JSON file at ``path`` (none when ``path`` is None)."""
        return ConfigFields(read_json(path) if path is not None else {}, path)

    def error(self, name: str, msg: str) -> ConfigError:
        """The error for field ``name`` (the file named)."""
        return ConfigError(f"{self.path}: field {name!r} {msg}")

    def flag(self, name: str, default: Any) -> Any:
        """A bool, or ``default`` when absent or null."""
        v = self.data.get(name)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.error(name, f"must be true or false, got {v!r}")
        return v

    def token(self, name: str, default: str | None) -> str | None:
        """A token string: a str or transformers' ``{"content": ...}`` AddedToken form."""
        if name not in self.data:
            return default
        v = self.data[name]
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None and not (isinstance(v, str) and v):
            raise self.error(name, f"must be a token string, got {self.data[name]!r}")
        return v

    def tokens(self, name: str) -> list[str]:
        """A list of token strings (``additional_special_tokens``, ``never_split``)."""
        v = self.data.get(name) or []
        if not isinstance(v, list):
            raise self.error(name, f"must be a list of token strings, got {v!r}")
        out = []
        for i, t in enumerate(v):
            t = t.get("content") if isinstance(t, dict) else t
            if not (isinstance(t, str) and t):
                raise self.error(f"{name}[{i}]", f"must be a token string, got {v[i]!r}")
            out.append(t)
        return out

    def max_length(self, name: str = "model_max_length") -> int | None:
        """A positive int; None when absent or transformers' "no limit" (1e30)."""
        v = self.data.get(name)
        if v is None:
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            raise self.error(name, f"must be a positive integer, got {v!r}")
        return None if v >= NO_LIMIT else v

    def added_tokens(self) -> dict[int, tuple[str, bool]]:
        """``added_tokens_decoder``: id -> (content, special)."""
        v = self.data.get("added_tokens_decoder") or {}
        if not isinstance(v, dict):
            raise self.error("added_tokens_decoder", f"must be an object, got {v!r}")
        out = {}
        for k, t in v.items():
            name = f"added_tokens_decoder[{k!r}]"
            if not (isinstance(k, str) and k.isdigit() and isinstance(t, dict)
                    and isinstance(t.get("content"), str) and t["content"]):
                raise self.error(name, f"must map a token id to {{'content': str, ...}}, got {t!r}")
            out[int(k)] = (t["content"], bool(t.get("special", False)))
        return out


def check_texts(texts: Any) -> None:
    """``encode_batch``'s ``texts``: a sequence of str, not one str (whose characters would
    each become a row)."""
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise ConfigError(f"encode_batch: texts must be a list of str, got {type(texts).__name__}")


def check_max_length(max_length: Any, n_special: int, where: str) -> int:
    """``max_length`` checked: an int with room for the ``n_special`` added tokens."""
    if not (isinstance(max_length, (int, np.integer)) and not isinstance(max_length, bool)
            and max_length >= max(n_special, 1)):
        raise ConfigError(f"{where}: max_length must be an integer >= {max(n_special, 1)} (the "
                          f"special tokens added), got {max_length!r}")
    return int(max_length)


def pad_batch(seqs: list[list[int]], pad_id: int | None, padding: bool | str,
              max_length: int | None, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``seqs`` as ``(ids int32 [N, T], attention_mask bool [N, T])``, padded on the right:
    ``padding`` True or "longest": T is the longest; "max_length": T is ``max_length``; False:
    every sequence must have the same length. The mask is True at real tokens (Hugging Face's
    ``attention_mask``; Qorus's ``key_padding_mask`` is ``~mask``)."""
    lengths = [len(s) for s in seqs]
    longest = max(lengths, default=0)
    if padding is True or padding == "longest":
        width = longest
    elif padding == "max_length":
        if max_length is None:
            raise ConfigError(f"{where}: padding='max_length' needs a max_length (the tokenizer "
                              "has no model_max_length)")
        width = max_length
    elif padding is False:
        if len(set(lengths)) > 1:
            raise ConfigError(f"{where}: padding=False but the sequences have lengths "
                              f"{min(lengths)}..{longest}: pass padding=True")
        width = longest
    else:
        raise ConfigError(f"{where}: padding must be True, False, 'longest' or 'max_length', "
                          f"got {padding!r}")
    if pad_id is None and any(n < width for n in lengths):
        raise ConfigError(f"{where}: the tokenizer has no pad token, so a batch cannot be padded")
    ids = np.full((len(seqs), width), 0 if pad_id is None else pad_id, np.int32)
    mask = np.zeros((len(seqs), width), bool)
    for row, s in enumerate(seqs):
        ids[row, :len(s)] = s
        mask[row, :len(s)] = True
    return ids, mask
