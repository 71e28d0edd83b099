"""Text generation with a KV cache: the prompt in chunks, then one token per step.

A ``Generator`` drives any ``Model`` that maps int32 token ids [1, T] to logits [1, T, V] and
whose ``llm.CausalSelfAttention`` layers keep a KV cache (``max_len`` set, as ``llm.GPT``
does). The prompt runs through plans of 128, 64, ..., 2 or 3 positions (at most nine plans,
whatever the prompt lengths of a chat; a prompt of two or more tokens never ends with a
one-token chunk, so its last logits come from the float32-activation prompt path of
quantized weights), then each new token through the one-position decode plan. The prompt
plans compute the LM head for each chunk's last position alone (``run.last_position_only``):
nothing reads the others.
After the first step a decode step allocates no array: the plans, their views and the
sampler's buffers are all made once.

On the C kernels the decode plan is captured (``qorus_core.replay``): its first three steps run
normally while their kernel calls are recorded, and every later step makes those calls from C
in one call, with no Python between the kernels (``replay=False`` turns this off; the
results are the same either way). ``replay_error`` says why a model could not be captured.

Each generator owns a ``Sequence`` of the model (``gen.seq``): its KV caches, its position,
its plans (their activation arenas) and its captured step are its own; the weights are the
model's, shared, never copied. So several generators (a ``Conversation`` each, a server's
slots) live on one loaded model, stepping in any order or each in its own thread, and each
gives exactly what it gives alone. One generator is driven by one thread at a time.

A model over mapped weights (``model.weight_files``, as ``load_llama`` gives) has each file
checked before every prefill chunk and decode step (one ``fstat``, about 1 us against a
decode step of milliseconds): a file truncated or rewritten in place meanwhile raises a
``GGUFError`` naming it instead of a SIGBUS or silently different weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from qorus_core import Replay, ReplayError
from qorus_core import record_plan as record
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.validate import nonneg_int, positive_int

from .attention import CausalSelfAttention
from .sampler import Sampler

MAX_CHUNK = 128   # prompt positions a plan takes: each weight read once for 128 rows


class Generator:
    """Incremental decoding over one sequence; ``pos`` tokens are in its KV cache."""

    def __init__(self, model, max_chunk: int = MAX_CHUNK, replay: bool = True,
                 seq=None) -> None:
        if model.input_dtype != "i32" or len(model.input_shape) != 1:
            raise ConfigError(f"generation needs a model on int32 token ids [B, T], this one takes "
                              f"{model.input_shape} {model.input_dtype}")
        if seq is not None and seq.model is not model:
            raise ConfigError("Generator: seq must be a sequence of the same model")
        self.model = model
        self.max_chunk = positive_int(max_chunk, "max_chunk", "Generator")
        # this generator's KV caches, position and plans (``seq``: one made for it, e.g. a
        # server slot's, whose caches are a row of the batched decoder's)
        self.seq = model.sequence() if seq is None else seq
        self.seq.run.last_position_only = True   # it reads each chunk's last logits alone
        self._version = self.seq.version      # the model's plans_version its plans were made at
        self._chunks: dict[int, tuple] = {}
        decode = self._chunk(1)
        layers = [op.layer for op in decode[0].ops if isinstance(op.layer, CausalSelfAttention)]
        if not layers or any(a.max_len is None for a in layers):
            raise ConfigError("generation needs llm.CausalSelfAttention layers with a KV cache "
                              "(max_len set, as llm.GPT sets it)")
        self.context = min(a.max_len for a in layers)
        self.vocab_size = int(model.output_shape[-1])
        self.pos = 0
        self.replay: Replay | None = None     # the captured decode step, once derived
        self.replay_error: str | None = None if replay else "replay=False"
        self._tapes: list[tuple[int, list]] = []   # decode steps recorded so far

    def _chunk(self, n: int) -> tuple:
        """(plan, its token input [1, n] view, its last-position logits [V] view), made once."""
        got = self._chunks.get(n)
        if got is None:
            plan = self.seq.plan(1, shape=(n,))
            got = self._chunks[n] = (plan, plan.x.a[0], plan.y.a.reshape(n, -1)[n - 1])
        return got

    def _refresh(self) -> None:
        """The model's plans went stale (its weights moved for training, or its kernels
        changed): recompile ours over the same KV caches and capture the step again."""
        self._chunks.clear()
        self.replay = None
        self._tapes.clear()
        self._chunk(1)
        self._version = self.seq.version

    def reset(self) -> None:
        """Forget the sequence (the cache is overwritten from position 0)."""
        self.pos = 0

    def feed(self, ids: Iterable[int]) -> np.ndarray:
        """Append ``ids`` to the sequence; returns the logits after the last one (a view, valid
        until the next call)."""
        ids = [self._check_token(i) for i in ids]
        if not ids:
            raise ShapeError("feed: no tokens")
        if self.pos + len(ids) > self.context:
            raise ShapeError(f"{len(ids)} tokens after {self.pos} exceed the model's context of "
                             f"{self.context} positions")
        if self._version != self.model.plans_version:
            self._refresh()
        run, start = self.seq.run, 0
        logits = None
        while start < len(ids):
            n = _chunk_size(len(ids) - start, self.max_chunk)
            plan, x, logits = self._chunk(n)
            x[...] = ids[start:start + n]
            run.pos = self.pos
            plan.forward()
            self.pos += n
            start += n
        return logits

    def step(self, token: int) -> np.ndarray:
        """Append one token (the decode step); returns the next logits (a view)."""
        if self.pos >= self.context:
            raise ShapeError(f"the context of {self.context} positions is full")
        self._check_token(token)   # a replayed step reaches C without the kernels' checks
        if self._version != self.model.plans_version:
            self._refresh()
        plan, x, logits = self._chunks[1]
        x[0] = token
        self.seq.run.pos = self.pos
        if self.replay is not None:
            self.model.check_weight_files()   # a replay bypasses plan.forward and its check
            self.replay.run(self.pos)
        elif self.replay_error is None:
            self._record(plan)
        else:
            plan.forward()
        self.pos += 1
        return logits

    def _check_token(self, token) -> int:
        """``token`` as an int: a token id is an int (or a NumPy integer) in [0, vocab_size);
        a float, a bool or a string is refused, never truncated."""
        if type(token) is not int and (isinstance(token, (bool, np.bool_))
                                       or not isinstance(token, np.integer)):
            raise ConfigError(f"token id {token!r} is a {type(token).__name__}, not an integer")
        if not 0 <= token < self.vocab_size:
            raise ShapeError(f"token id {token} outside the vocabulary [0, {self.vocab_size})")
        return int(token)

    def _record(self, plan) -> None:
        """One decode step, recorded; the third consecutive one derives the replay."""
        try:
            tape = record(plan)
        except ReplayError as exc:   # declined: the step runs (again, if it had begun) as usual
            self.replay_error = str(exc)
            plan.forward()
            return
        if self._tapes and self._tapes[-1][0] != self.pos - 1:
            self._tapes.clear()      # a prompt came between: positions must be consecutive
        self._tapes.append((self.pos, tape))
        if len(self._tapes) == 3:
            try:
                self.replay = Replay.derive(self.model.kernels, self._tapes, self.context)
            except ReplayError as exc:
                self.replay_error = str(exc)
            self._tapes.clear()


def prompt_chunks(n: int, max_chunk: int = MAX_CHUNK) -> list[int]:
    """The chunk sizes ``feed`` runs ``n`` tokens in: feeding each chunk in its own call (a
    server interleaving a prompt with other sequences' steps) gives what one call gives."""
    out = []
    while n > 0:
        out.append(_chunk_size(n, max_chunk))
        n -= out[-1]
    return out


def _chunk_size(left: int, max_chunk: int) -> int:
    """The largest power of two <= ``left`` that does not leave exactly one token (3 for 3)."""
    if left == 3:
        return 3
    n = max_chunk
    while n > 1 and (n > left or left - n == 1):
        n //= 2
    return n


def generate(model, prompt_ids: list[int], max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0,
             stop_ids: Iterable[int] = (), on_token: Callable[[int], object] | None = None,
             generator: Generator | None = None) -> list[int]:
    """Sample up to ``max_new_tokens`` tokens after ``prompt_ids`` (temperature 0: greedy);
    stops after a token in ``stop_ids`` (which is returned) or when the context is full.
    ``on_token`` is called with each new id as it comes (streaming)."""
    max_new_tokens = nonneg_int(max_new_tokens, "max_new_tokens", "generate")
    gen = generator or Generator(model)
    sampler = Sampler(gen.vocab_size, temperature, top_k, top_p, seed)
    stops = frozenset(int(s) for s in stop_ids)
    logits = gen.feed(prompt_ids)
    out: list[int] = []
    while len(out) < max_new_tokens:
        token = sampler.sample(logits)
        out.append(token)
        if on_token is not None:
            on_token(token)
        if token in stops or len(out) == max_new_tokens or gen.pos >= gen.context:
            break
        logits = gen.step(token)
    return out
