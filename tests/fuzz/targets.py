"""The loaders a case goes through, as a user would call them, each followed by a use of what
loaded (a few generated tokens, a forward pass, a resumed epoch), so a file that loads but
cannot run is found too. ``Invariant`` marks a result that is wrong although nothing raised.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from . import oracles
from .seeds import checkpoint_data, checkpoint_model, checkpoint_trainer

PROMPT = "the tin man 🙂 <|im_start|>an ant\n"


class Invariant(AssertionError):
    """A load succeeded but its result is inconsistent (a silent wrong result); ``key``
    names the check (findings group by it)."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = re.sub(r"-?\d+", "N", key or message.split(":")[0])[:80]


class Stage:
    """The step a case is at, for the report (``stage.name``)."""

    def __init__(self) -> None:
        self.name = "start"

    def __call__(self, name: str) -> None:
        self.name = name


def _touch(a: Any) -> None:
    """Read every byte of an array or QWeight (faults on a bad mapping show here)."""
    raw = a.a if hasattr(a, "qtype") else a
    raw = np.asarray(raw)
    if raw.size:
        np.bitwise_xor.reduce(raw.reshape(-1).view(np.uint8))


def _check(problems: list[str]) -> None:
    if problems:
        raise Invariant("; ".join(problems[:4]), re.split(r":| = ", problems[0])[0][:80])


def _forward(model: Any, stage: Stage, what: str) -> None:
    """One inference pass on two rows of the model's own input buffer (no array of ours)."""
    stage(f"{what}: plan")
    plan = model.plan(2)
    plan.x.a[...] = 0 if plan.x.a.dtype.kind in "iu" else 0.5
    stage(f"{what}: forward")
    plan.forward()


def gguf(path: Path, stage: Stage) -> None:
    from qorus_core.errors import QorusError
    from qorus_core.io.gguf import GGUFFile
    from qorus_layers_llm.chat import chat_text, encode_chat_text
    from qorus_layers_llm.generate import generate
    from qorus_layers_llm.llama import load_llama

    stage("GGUFFile")
    with GGUFFile(path) as f:
        repr(f)
        for name, info in f.tensors.items():
            stage(f"GGUFFile.tensor({name!r})")
            try:
                t = f.tensor(name)
            except QorusError:
                continue
            _touch(t)
            if f.raw(name).nbytes != info.nbytes:
                raise Invariant(f"raw({name!r}) has {f.raw(name).nbytes} bytes, the info says {info.nbytes}")
    stage("load_llama")
    llm = load_llama(path)
    try:
        _check(oracles.check_llama(llm))
        tok, vocab = llm.tokenizer, llm.tokenizer.vocab_size
        stage("tokenizer.encode")
        ids = tok.encode(PROMPT)
        if any(not 0 <= i < vocab for i in ids):
            raise Invariant(f"encode gave ids outside [0, {vocab}): {ids}")
        stage("tokenizer.decode")
        tok.decode(ids)
        for kw in ({"temperature": 0.0}, {"temperature": 0.8, "top_k": 5, "top_p": 0.9, "seed": 1}):
            stage(f"generate({kw})")
            out = generate(llm.model, ids or [0], 3, **kw)
            if any(not 0 <= i < vocab for i in out):
                raise Invariant(f"generate gave ids outside [0, {vocab}): {out}")
            tok.decode(out)
        if tok.chat_template is not None:
            stage("chat template")
            text = chat_text(tok, [{"role": "system", "content": "be brief"},
                                   {"role": "user", "content": "hi"}])
            encode_chat_text(tok, text)
    finally:
        llm.gguf.close()


def safetensors(path: Path, stage: Stage) -> None:
    from qorus_core.io.safetensors import SafeTensorsFile, load_file, read_metadata

    stage("SafeTensorsFile")
    f = SafeTensorsFile(path)
    _refused_duplicates(path)
    for name in f.keys():
        stage(f"get({name!r})")
        code, shape, begin, end = f.entries[name]
        a = f.get(name, bf16_as_f32=False)
        _touch(a)
        if tuple(a.shape) != tuple(shape) or a.nbytes != end - begin:
            raise Invariant(f"{name}: header says {code}{list(shape)} at [{begin}, {end}), "
                            f"got {a.dtype}{list(a.shape)} ({a.nbytes} bytes)")
        f.get(name)
        f.dtype(name)
    stage("load_file")
    tensors = load_file(path)
    stage("read_metadata")
    read_metadata(path)
    if path.name == "mlp.safetensors":
        stage("Model.load_state_dict")
        model = checkpoint_model()
        model.load_state_dict(tensors, source=str(path))
        _forward(model, stage, "model")


def _refused_duplicates(path: Path) -> None:
    """A safetensors header with a repeated key loaded: one value silently won."""
    import struct

    raw = path.read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 0)
    dups = oracles.duplicate_keys(raw[8:8 + n])
    if dups:
        raise Invariant(f"{path.name}: header with duplicate keys {dups[:3]} accepted",
                        "safetensors header: duplicate keys")


def checkpoint(path: Path, stage: Stage) -> None:
    import json

    from qorus_core.train.checkpoint import load_checkpoint

    stage("load_checkpoint")
    ck = load_checkpoint(path)
    for name in ("config.json", "trainer.json"):
        dups = oracles.duplicate_keys((path / name).read_bytes())
        if dups:
            raise Invariant(f"{name} with duplicate keys {dups[:3]} accepted", f"{name}: duplicate keys")
    for name in ("model.safetensors", "optimizer.safetensors"):
        _refused_duplicates(path / name)
    _forward(ck.model, stage, "loaded model")
    stage("Trainer.resume")
    _, tr = checkpoint_trainer(epochs=2)
    tr.resume(path)
    state = json.loads((path / "trainer.json").read_bytes())
    _check(oracles.check_checkpoint(ck.config, state, ck.model, tr))
    stage("Trainer.fit")
    x, y = checkpoint_data()
    tr.fit(x, y)
    if tr.epoch < 2:
        raise Invariant(f"resumed and trained to epoch 2, the trainer says {tr.epoch}")


def toml(path: Path, stage: Stage) -> None:
    from qorus_core.train.config import build, load_config, train_finished

    stage("load_config")
    cfg = load_config(path)
    stage("build")
    model, trainer = build(cfg, progress=False)
    _check(oracles.check_toml(cfg, model, trainer))
    _forward(model, stage, "model")
    if model.num_parameters > 1 << 20 or int(np.prod(model.input_shape)) > 1 << 16:
        return                                 # valid but big: training it would only be slow
    stage("Trainer.fit")
    spec = trainer.loss.target_spec(model.output_shape)
    ids = model.input_dtype != "f32"          # token ids: 0 is in every vocabulary
    x = np.full((4,) + model.input_shape, 0 if ids else 0.5, np.int32 if ids else np.float32)
    y = np.zeros((4,) + tuple(spec.shape), np.int32 if spec.dtype != "f32" else np.float32)
    trainer.epochs = 1                      # the config's epochs were checked by build
    trainer.fit(x, y)
    stage("train_finished hooks")
    train_finished(model, cfg, path.parent, lambda line: None)


TARGETS = {"gguf": gguf, "safetensors": safetensors, "checkpoint": checkpoint, "toml": toml}


#: what each canary case does (the harness's self-test: every outcome must be attributed)
CANARY = ("ok", "qorus", "error", "crash", "hang", "memory", "exit")


def canary(path: Path, stage: Stage) -> None:
    """Behave as ``CANARY[int(file contents)]``: the runner must report exactly that."""
    import ctypes
    import os
    import time

    from qorus_core.errors import ConfigError

    what = CANARY[int(path.read_text())]
    stage(f"canary {what}")
    if what == "qorus":
        raise ConfigError("canary: a refused input")
    if what == "error":
        raise ValueError("canary: an escaped exception")
    if what == "crash":
        ctypes.string_at(0)                           # SIGSEGV
    if what == "hang":
        time.sleep(3600)
    if what == "memory":
        np.ones(1 << 34, np.uint8)                    # 16 GiB: above the worker's RLIMIT_AS
    if what == "exit":
        os._exit(3)


TARGETS["canary"] = canary
