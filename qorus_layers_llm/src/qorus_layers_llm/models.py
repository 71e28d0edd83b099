"""``load_llm(path)``: any pretrained decoder Qorus runs, picked by what the path holds.

A GGUF file goes to the loader of its ``general.architecture`` (the table below: one line an
architecture, the module imported only when a file of that architecture is opened); the
result is a ``LoadedLLM`` (model, tokenizer, hyperparameters), which ``generate``,
``Generator`` and ``Conversation`` drive whatever the architecture. A directory is a Hugging
Face decoder: ``hf_llm.load_hf_llm`` gives a ``LoadedHFLLM`` with the same fields they use.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from qorus_core.errors import ConfigError, GGUFError
from qorus_core.io.gguf import GGUFFile

# general.architecture -> "module:function" of its loader (a path -> LoadedLLM callable taking
# context=, kernels=, dequantize=)
GGUF_ARCHITECTURES: dict[str, str] = {
    "llama": "llama:load_llama",
    "qwen2": "llama:load_llama",
    "phi3": "llama:load_llama",
    "gemma3": "gemma3:load_gemma3",
    "gpt2": "gpt2_gguf:load_gpt2",
}


def gguf_architecture(path: str | os.PathLike) -> str:
    """The ``general.architecture`` of a GGUF file (its header parsed, no tensor read)."""
    with GGUFFile(path) as f:
        arch = f.architecture
    if not isinstance(arch, str) or not arch:
        raise GGUFError(f"{path}: metadata general.architecture is missing")
    return arch


def load_llm(path: str | os.PathLike, context: int | None = None, kernels: Any = None,
             dequantize: bool = False):
    """The model at ``path`` ready to generate: a GGUF of any architecture in
    ``GGUF_ARCHITECTURES``, or a Hugging Face decoder directory (``hf_llm.load_hf_llm``:
    llama, mistral, qwen2, gpt2, with their tokenizer.json and chat template); ``context``
    KV-cache positions (default the model's, at most 2048), ``dequantize`` float32 weights
    (reference accuracy, more memory; a directory's are float32 already)."""
    if os.path.isdir(path):
        from .hf_llm import load_hf_llm

        return load_hf_llm(path, context=context, kernels=kernels, dequantize=dequantize)
    arch = gguf_architecture(path)
    target = GGUF_ARCHITECTURES.get(arch)
    if target is None:
        raise ConfigError(f"{path}: architecture {arch!r} is not supported (supported: "
                          f"{', '.join(sorted(GGUF_ARCHITECTURES))})")
    module, fn = target.split(":")
    loader = getattr(importlib.import_module(f".{module}", __package__), fn)
    return loader(path, context=context, kernels=kernels, dequantize=dequantize)
