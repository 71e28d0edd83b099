"""``LLM``: llama-cpp-python's ``Llama`` interface over Qorus models, returning OpenAI-shaped
dicts::

    llm = LLM("SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=2048, seed=0)
    out = llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], max_tokens=32)
    out["choices"][0]["message"]["content"], out["usage"]["completion_tokens"]
    for chunk in llm.create_chat_completion(messages=..., stream=True): ...

``path`` is anything ``models.load_llm`` opens (a GGUF of a supported architecture, a Hugging
Face decoder directory), or a Hugging Face encoder directory (BERT-class: ``hf_encoder``),
which serves ``embed`` / ``create_embedding`` only. The sampling keywords and their defaults
are llama-cpp-python's (``sampling_params``); ``seed`` None draws one from the LLM's own
generator (seeded by ``LLM(seed=)``), so a run is reproducible.

One ``LLM`` decodes one request at a time on its own ``Generator`` (its KV cache): calls from
several threads take turns (a lock), and a streaming call holds it until its iterator is
exhausted or closed. For concurrent requests on one loaded model use ``qorus serve`` (slots
of their own), or one ``Generator`` per thread (``generate``, ``Conversation``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core.errors import ConfigError
from qorus_core.validate import nonneg_int

from .completion import Completion
from .openai_format import Shape, embeddings, stream
from .request_body import Request, parse_request
from .request_error import RequestError

ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert")


def is_encoder_dir(path: str | os.PathLike) -> bool:
    """A Hugging Face directory whose config.json names an encoder model type."""
    cfg = Path(path) / "config.json"
    if not (Path(path).is_dir() and cfg.is_file()):
        return False
    from .hf_checkpoint import read_json

    return read_json(cfg).get("model_type") in ENCODER_TYPES


def decode(gen, req: Request, tokenizer, seed: int) -> Iterator[tuple[str, Completion]]:
    """Run ``req`` on ``gen`` (reset first): (new text, the request's Completion) per token."""
    gen.reset()
    c = Completion(tokenizer, req.params, req.ids, gen.vocab_size, gen.context, seed)
    logits = gen.feed(req.ids)
    while True:
        text = c.advance(logits)
        yield text, c
        if c.done:
            return
        logits = gen.step(c.next_token)


class LLM:
    """A loaded model answering OpenAI-style requests (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, n_ctx: int | None = None, seed: int = 0,
                 kernels: Any = None, model_name: str | None = None) -> None:
        self.path = str(path)
        self.model_name = model_name or Path(path).name
        self.seed = nonneg_int(seed, "seed", "LLM")
        self._rng = np.random.default_rng(self.seed)
        self._lock = threading.Lock()
        self.encoder = self.llm = self._gen = None
        if is_encoder_dir(path):
            from .hf_encoder import load_encoder

            self.encoder = load_encoder(path, kernels=kernels)
            self.n_ctx = self.encoder.spec.max_positions
        else:
            from .models import load_llm

            self.llm = load_llm(path, context=n_ctx, kernels=kernels)
            self.n_ctx = self.llm.context

    # ----------------------------------------------------------------- helpers
    @property
    def tokenizer(self):
        """The decoder's tokenizer (RequestError for an encoder-only model)."""
        return self._decoder().tokenizer

    @property
    def vocab_size(self) -> int:
        """The number of logits a decode step gives."""
        return int(self._decoder().model.output_shape[-1])

    def _decoder(self):
        if self.llm is None:
            raise RequestError(f"{self.model_name} is an encoder: it serves embeddings only",
                               "model", "model_not_supported")
        return self.llm

    def request_seed(self, params_seed: int | None) -> int:
        """The request's seed, or one drawn from the LLM's generator."""
        return params_seed if params_seed is not None else int(self._rng.integers(2**63))

    def parse(self, kind: str, body: dict[str, Any]) -> Request:
        """``body`` (OpenAI's fields) as a checked ``Request`` for this model."""
        llm = self._decoder()
        return parse_request(kind, body, llm.tokenizer, self.vocab_size, self.n_ctx)

    def _run(self, req: Request) -> dict[str, Any] | Iterator[dict[str, Any]]:
        shape = Shape(req.kind, self.model_name)
        seed = self.request_seed(req.params.seed)
        if req.stream:
            return self._stream(shape, req, seed)
        with self._lock:
            events = decode(self._generator(), req, self.tokenizer, seed)
            c = _last(events)[1]
        return shape.response("".join(c.text), c.finish_reason, c.usage())

    def _stream(self, shape: Shape, req: Request, seed: int) -> Iterator[dict[str, Any]]:
        with self._lock:
            yield from stream(shape, decode(self._generator(), req, self.tokenizer, seed),
                              req.include_usage)

    def _generator(self):
        if self._gen is None:
            from .generate import Generator

            self._gen = Generator(self._decoder().model)
        return self._gen

    # ----------------------------------------------------------------- the API
    def create_completion(self, prompt: str | list[int], max_tokens: int | None = 16,
                          temperature: float = 0.8, top_p: float = 0.95, top_k: int = 40,
                          min_p: float = 0.05, stop: str | list[str] | None = None,
                          seed: int | None = None, presence_penalty: float = 0.0,
                          frequency_penalty: float = 0.0, repeat_penalty: float = 1.0,
                          logit_bias: dict[int, float] | None = None, stream: bool = False,
                          stream_options: dict[str, Any] | None = None):
        """Continue ``prompt``: an OpenAI ``text_completion`` dict, or (``stream``) an
        iterator of its chunks. ``max_tokens`` None: until the context is full."""
        body = dict(prompt=prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                    top_k=top_k, min_p=min_p, stop=stop, seed=seed,
                    presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                    repeat_penalty=repeat_penalty, logit_bias=logit_bias, stream=stream,
                    stream_options=stream_options)
        req = self.parse("text", body)
        if max_tokens is None:       # parse reads None as "the default" (16)
            req = Request(req.kind, req.ids, _unbounded(req.params), req.stream, req.include_usage)
        return self._run(req)

    def create_chat_completion(self, messages: list[dict[str, Any]], max_tokens: int | None = None,
                               temperature: float = 0.2, top_p: float = 0.95, top_k: int = 40,
                               min_p: float = 0.05, stop: str | list[str] | None = None,
                               seed: int | None = None, presence_penalty: float = 0.0,
                               frequency_penalty: float = 0.0, repeat_penalty: float = 1.0,
                               logit_bias: dict[int, float] | None = None, stream: bool = False,
                               stream_options: dict[str, Any] | None = None):
        """Answer ``messages`` through the model's chat template: an OpenAI
        ``chat.completion`` dict, or (``stream``) an iterator of ``chat.completion.chunk``s.
        ``max_tokens`` None: until the end of the turn or of the context."""
        body = dict(messages=messages, max_tokens=max_tokens, temperature=temperature,
                    top_p=top_p, top_k=top_k, min_p=min_p, stop=stop, seed=seed,
                    presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                    repeat_penalty=repeat_penalty, logit_bias=logit_bias, stream=stream,
                    stream_options=stream_options)
        return self._run(self.parse("chat", body))

    def embed(self, texts: str | list[str]) -> list[list[float]]:
        """Sentence embeddings of ``texts`` (an encoder model's pooling and normalisation)."""
        return [list(map(float, row)) for row in self.encode_texts(texts)[0]]

    def create_embedding(self, input: str | list[str]) -> dict[str, Any]:
        """OpenAI's embeddings response for ``input`` (a string or a list of them)."""
        vectors, n_tokens = self.encode_texts(input)
        return embeddings(vectors, self.model_name, n_tokens)

    def encode_texts(self, texts: Any) -> tuple[np.ndarray, int]:
        """Embeddings of ``texts`` (an encoder model) and the number of tokens they took."""
        if self.encoder is None:
            raise RequestError(f"{self.model_name} is a decoder: embeddings need an encoder "
                               "model directory (BERT, RoBERTa, DistilBERT)", "model",
                               "model_not_supported")
        items = [texts] if isinstance(texts, str) else texts
        if not (isinstance(items, list) and items and all(isinstance(t, str) for t in items)):
            raise RequestError("input must be a string or a non-empty list of strings", "input")
        from .tokenizer import check_text

        try:
            for i, t in enumerate(items):
                check_text(t, f"input[{i}]")
        except ConfigError as exc:
            raise RequestError(str(exc), "input") from None
        enc = self.encoder
        with self._lock:
            vectors = enc.encode(items)
            _, mask = enc.tokenizer.encode_batch(items, max_length=enc.max_tokens)
        return vectors, int(np.asarray(mask).sum())


def _last(events: Iterator[tuple[str, Completion]]) -> tuple[str, Completion]:
    """Run ``events`` to the end; the last one."""
    last = None
    for last in events:  # noqa: B007 - the loop runs the decoding
        pass
    return last


def _unbounded(params):
    from dataclasses import replace

    return replace(params, max_tokens=None)
