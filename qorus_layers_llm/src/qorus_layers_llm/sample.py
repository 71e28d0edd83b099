"""Printing sampled text after training: what the plugin's ``qorus_train_finished`` does with
a config's ``[sample]`` table (byte-level models: token i is byte i)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qorus_core.errors import ConfigError
from qorus_core.validate import maybe, nonneg_int, positive_int, probability, real

#: [sample] keys and their defaults
SAMPLE_KEYS: dict[str, Any] = {"prompt": "\n", "tokens": 200, "temperature": 1.0, "top_k": None,
                               "top_p": None, "seed": 0}


def sample_options(table: dict[str, Any], where: str = "[sample]") -> dict[str, Any]:
    """The [sample] table with defaults filled in, checked (ConfigError names the key)."""
    bad = sorted(set(table) - set(SAMPLE_KEYS))
    if bad:
        raise ConfigError(f"{where} has unknown key(s) {bad}; known: {', '.join(SAMPLE_KEYS)}")
    o = {**SAMPLE_KEYS, **table}
    if not isinstance(o["prompt"], str):
        raise ConfigError(f"{where} prompt must be a string, got {o['prompt']!r}")
    o["tokens"] = positive_int(o["tokens"], "tokens", where)
    o["temperature"] = real(o["temperature"], "temperature", where, lo=0.0)
    o["top_k"] = maybe(positive_int, o["top_k"], "top_k", where)
    o["top_p"] = maybe(probability, o["top_p"], "top_p", where, lo_open=True)
    o["seed"] = nonneg_int(o["seed"], "seed", where)
    return o


def sample_text(model: Any, options: dict[str, Any]) -> str:
    """The prompt's continuation, decoded as UTF-8 bytes (invalid sequences replaced)."""
    from .generate import generate

    vocab = int(model.output_shape[-1])
    if vocab < 256:
        raise ConfigError(f"[sample] needs a byte-level model (vocab_size >= 256), this one has {vocab}")
    prompt = list(options["prompt"].encode("utf-8")) or [10]
    new = generate(model, prompt, options["tokens"], temperature=options["temperature"],
                   top_k=options["top_k"], top_p=options["top_p"], seed=options["seed"], stop_ids=())
    return bytes(t for t in new if 0 <= t < 256).decode("utf-8", errors="replace")


def print_sample(model: Any, config: dict[str, Any], echo: Callable[[str], Any]) -> None:
    """When ``config`` has a [sample] table, print the prompt and its sampled continuation."""
    table = config.get("sample")
    if table is None:
        return
    if not isinstance(table, dict):
        raise ConfigError("[sample] must be a table")
    o = sample_options(table)
    echo(f"--- sample: {o['tokens']} tokens, temperature {o['temperature']}, top_k {o['top_k']}, "
         f"top_p {o['top_p']}, seed {o['seed']} ---")
    echo(o["prompt"] + sample_text(model, o))
