"""Checks that a file which loaded gave what it said: "what you asked for is what you got".

A loader that coerces (``out_features = 2.5`` building 2 features, ``bias = 1`` becoming
True, a float epoch truncated, NaN accepted) raises nothing, so only a comparison of the
input with the built object's own config finds it. ``same`` is that comparison: equal values
of compatible types, where an int may widen to a float and a scalar may expand to a tuple
(``kernel_size = 3`` -> ``(3, 3)``, or ``[2, 2]`` be stored as 2), but a float never becomes
an int and a number never a bool. NaN is never equal to itself: a NaN that was accepted is reported.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

SKIP = ("type",)          # registered names resolve ("CrossEntropy" -> "core.CrossEntropy")


def plain(v: Any) -> Any:
    """NumPy scalars and arrays as Python values."""
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def same(given: Any, got: Any) -> bool:
    given, got = plain(given), plain(got)
    if isinstance(given, bool) or isinstance(got, bool):
        return type(given) is type(got) and given == got
    if isinstance(given, (int, float)) and isinstance(got, (int, float)):
        if isinstance(given, float) and isinstance(got, int):
            return False                          # truncated
        return float(given) == got if isinstance(got, float) else given == got
    if isinstance(given, (int, float)) and isinstance(got, (list, tuple)):
        return bool(got) and all(same(given, x) for x in got)
    if isinstance(given, (list, tuple)) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return bool(given) and all(same(x, got) for x in given)    # (2, 2) stored as 2
    if isinstance(given, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(given) == len(got) and all(same(a, b) for a, b in zip(given, got))
    return type(given) is type(got) and given == got


def echo(given: dict, got: dict, where: str, problems: list[str]) -> None:
    """Every key of ``given`` that ``got`` has, compared (dicts recursively)."""
    for k, v in given.items():
        if k in SKIP or not isinstance(got, dict) or k not in got:
            continue
        if isinstance(v, dict):
            echo(v, got[k], f"{where}.{k}", problems)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            w = got[k]
            if isinstance(w, (list, tuple)) and len(w) == len(v):
                for i, (a, b) in enumerate(zip(v, w)):
                    echo(a, b, f"{where}.{k}[{i}]", problems)
        elif not same(v, got[k]):
            problems.append(f"{where}.{k}: asked {v!r}, got {got[k]!r}")


def layer_configs(model: Any) -> list[dict]:
    """The top-level layers' configs of a Sequential model (as its checkpoint would store)."""
    from qorus_core.layer import layer_to_dict

    net = json.loads(json.dumps(layer_to_dict(model.net)))
    return [d.get("config", {}) for d in net.get("config", {}).get("layers", [])]


def check_toml(cfg: Any, model: Any, trainer: Any) -> list[str]:
    """The TOML config's values against the built model, loss, optimizer, schedule, trainer."""
    problems: list[str] = []
    m = cfg.model
    echo({k: m[k] for k in ("input_shape", "input_dtype", "seed") if k in m},
         {"input_shape": list(model.input_shape), "input_dtype": model.input_dtype, "seed": model.seed},
         "[model]", problems)
    layers = layer_configs(model)
    if isinstance(m.get("layers"), list) and len(layers) == len(m["layers"]):
        for i, (asked, built) in enumerate(zip(m["layers"], layers)):
            if isinstance(asked, dict):
                inner = asked.get("config") if isinstance(asked.get("config"), dict) else {}
                flat = {k: v for k, v in {**inner, **asked}.items() if k != "config"}
                echo(flat, built, f"[model] layers[{i}]", problems)
    got = trainer.get_config()
    echo(cfg.loss, got["loss"], "[loss]", problems)
    echo(cfg.optimizer, got["optimizer"], "[optimizer]", problems)
    if cfg.schedule and got["schedule"]:
        echo(cfg.schedule, got["schedule"], "[schedule]", problems)
    echo(cfg.train, got["trainer"], "[train]", problems)
    return problems


def check_checkpoint(config: dict, trainer_state: dict, model: Any, trainer: Any) -> list[str]:
    """config.json's model config against the rebuilt model; trainer.json's counters against
    the resumed Trainer."""
    problems: list[str] = []
    echo(config.get("model", {}), json.loads(json.dumps(model.get_config())), "config.json model", problems)
    echo({k: trainer_state[k] for k in ("epoch", "global_step") if k in trainer_state},
         {"epoch": trainer.epoch, "global_step": trainer.global_step}, "trainer.json", problems)
    if "run_step" in trainer_state:
        echo({"run_step": trainer_state["run_step"]}, {"run_step": trainer.model.run.step}, "trainer.json",
             problems)
    return problems


_HPARAMS = {"attention.head_count": "n_heads", "attention.head_count_kv": "n_kv_heads",
            "embedding_length": "d_model", "block_count": "n_layers", "feed_forward_length": "d_ff",
            "context_length": "context_length", "vocab_size": "vocab_size",
            "rope.freq_base": "rope_theta", "attention.layer_norm_rms_epsilon": "eps"}


def check_llama(llm: Any) -> list[str]:
    """The GGUF metadata against the hyperparameters and tokenizer ``load_llama`` built."""
    problems: list[str] = []
    md, hp, tok = llm.gguf.metadata, llm.hparams, llm.tokenizer
    arch = md.get("general.architecture")
    for key, attr in _HPARAMS.items():
        if f"{arch}.{key}" in md and not same(md[f"{arch}.{key}"], getattr(hp, attr)):
            problems.append(f"metadata {arch}.{key} = {md[f'{arch}.{key}']!r}, loaded {attr} = "
                            f"{getattr(hp, attr)!r}")
    for key, attr in (("bos", "bos_id"), ("eos", "eos_id")):
        k = f"tokenizer.ggml.{key}_token_id"
        if k in md and not same(md[k], getattr(tok, attr)):
            problems.append(f"metadata {k} = {md[k]!r}, the tokenizer's {attr} = {getattr(tok, attr)!r}")
    for attr in ("bos_id", "eos_id"):
        v = getattr(tok, attr)
        if v is not None and not 0 <= v < tok.vocab_size:
            problems.append(f"tokenizer {attr} {v} outside [0, {tok.vocab_size})")
    if tok.vocab_size != hp.vocab_size:
        problems.append(f"{tok.vocab_size} tokens, vocab_size {hp.vocab_size}")
    return problems


def duplicate_keys(text: bytes | str) -> list[str]:
    """Keys that occur twice in one object of a JSON document (empty when it does not parse)."""
    dups: list[str] = []

    def hook(pairs: list) -> dict:
        seen = set()
        for k, _ in pairs:
            if k in seen:
                dups.append(k)
            seen.add(k)
        return dict(pairs)

    try:
        json.loads(text, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return []
    return dups
