"""The scheduler of ``qorus serve``: ``parallel`` slots over one loaded model, each a
``Generator`` with a KV cache and position of its own, one worker thread driving them all.

Requests wait in a bounded queue (full: ``OverloadedError``, HTTP 503) and take a free slot
between steps (continuous batching). Each turn of the loop runs one prompt chunk of one
prefilling slot (round robin; the chunks ``Generator.feed`` would run, so a prompt gives the
same logits fed whole or chunk by chunk), then one decode step of every slot that is
generating, so a long prompt delays the others by one chunk a step, never by its whole
length. With two or more slots generating, that step is ``batch_decode.BatchDecoder``'s
(every one of them in one pass over the weights, each row computed as its slot's own step
would) where the model allows it (``unbatched_why`` says why not), else each slot's own
step in turn.

A request reports through its ``sink`` (called on the worker thread): ("text", str) for
each piece of text, then ("done", Completion), ("error", exception) or ("cancelled",
Completion or None). ``cancel`` (a client that went away) frees its slot before the next
step. ``close`` refuses new requests, lets the running ones finish (bounded), then stops
the worker.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .completion import Completion
from .generate import MAX_CHUNK, Generator, prompt_chunks
from .request_body import Request
from .request_error import OverloadedError

Sink = Callable[[str, Any], None]


class Job:
    """One request in the scheduler."""

    def __init__(self, req: Request, seed: int, sink: Sink) -> None:
        self.req, self.seed, self.sink = req, seed, sink
        self.cancelled = False
        self.completion: Completion | None = None
        self.submitted = time.monotonic()


class Slot:
    """A sequence of the model serving one job at a time."""

    def __init__(self, index: int, gen: Generator) -> None:
        self.index, self.gen = index, gen
        self.job: Job | None = None
        self.pieces: deque[list[int]] = deque()     # prompt chunks still to feed

    @property
    def decoding(self) -> bool:
        """The slot holds a request whose prompt is all fed: it takes a decode step."""
        return self.job is not None and not self.pieces


class Scheduler:
    """``parallel`` slots over ``llm`` (an ``api.LLM`` of a decoder); see the module docs."""

    def __init__(self, llm, parallel: int = 1, max_queue: int = 64, max_chunk: int = MAX_CHUNK,
                 batched: bool = True) -> None:
        self.llm = llm
        self.tok = llm.tokenizer
        self.max_queue, self.max_chunk = max_queue, max_chunk
        model = llm.llm.model
        self.batch = None
        self.unbatched_why = "one slot" if parallel == 1 else "batched=False"
        if batched and parallel > 1:
            from .batch_decode import BatchDecoder

            dec = BatchDecoder(model, parallel, max_chunk)
            gens = dec.generators
            self.batch = dec if dec.why_not is None else None
            self.unbatched_why = dec.why_not
        else:
            gens = [Generator(model, max_chunk) for _ in range(parallel)]
        self.slots = [Slot(i, g) for i, g in enumerate(gens)]
        self.context = self.slots[0].gen.context
        self.vocab_size = self.slots[0].gen.vocab_size
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closing = self._stop = False
        self._rr = 0
        self._paused = False                    # the worker waits between steps
        self.stats = {"served": 0, "cancelled": 0, "failed": 0, "steps": 0, "batched_rows": 0,
                      "cancel_requests": 0}
        self._thread = threading.Thread(target=self._run, name="qorus-serve", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- other threads
    def submit(self, job: Job) -> None:
        """Queue ``job``; OverloadedError when the queue is full or the server is closing."""
        with self._cv:
            if self._closing:
                raise OverloadedError("the server is shutting down", retry_after=5)
            if len(self._queue) >= self.max_queue:
                raise OverloadedError(f"{len(self._queue)} requests are waiting (--max-queue "
                                      f"{self.max_queue}); retry later")
            self._queue.append(job)
            self._cv.notify()

    def cancel(self, job: Job) -> None:
        """Stop ``job`` (its client went away): its slot is freed before the next step."""
        with self._cv:
            job.cancelled = True
            self.stats["cancel_requests"] += 1
            self._cv.notify()

    def pause(self) -> None:
        """Hold the worker between steps (requests still queue) until ``resume``: what an
        operator or a test uses to look at the queue in a known state."""
        with self._cv:
            self._paused = True

    def resume(self) -> None:
        """Let the worker step again after ``pause``."""
        with self._cv:
            self._paused = False
            self._cv.notify_all()

    def status(self) -> dict[str, Any]:
        """Slots idle and processing, requests queued, whether steps are batched (and why
        not) and the counters, for ``/health``."""
        with self._cv:
            busy = sum(s.job is not None for s in self.slots)
            return {"slots_idle": len(self.slots) - busy, "slots_processing": busy,
                    "queued": len(self._queue), "batched": self.batch is not None,
                    "unbatched_why": None if self.batch is not None else self.unbatched_why,
                    **self.stats}

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new requests, let queued and running ones finish for up to ``timeout``
        seconds, cancel what is left, stop the worker."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._closing, self._paused = True, False
            while self._busy() and time.monotonic() < deadline:
                self._cv.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            for job in [*self._queue, *(s.job for s in self.slots if s.job)]:
                job.cancelled = True
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=max(1.0, deadline - time.monotonic()))

    def _busy(self) -> bool:
        return bool(self._queue) or any(s.job is not None for s in self.slots)

    # ----------------------------------------------------------------- the worker
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and (self._paused or not self._busy()):
                    self._cv.wait()
                if self._stop and not self._busy():
                    return
                self._admit()
            try:
                self._reap()
                self._prefill()
                self._decode()
            except Exception as exc:  # noqa: BLE001 - a bug here must not stop the server
                for slot in self.slots:
                    if slot.job is not None:
                        self._fail(slot, exc)
            with self._cv:
                self._cv.notify_all()           # close() waits on the slots emptying

    def _admit(self) -> None:
        for slot in self.slots:
            if slot.job is None:
                while self._queue and slot.job is None:
                    job = self._queue.popleft()
                    if job.cancelled:
                        self._end(job, "cancelled")
                    else:
                        self._start(slot, job)

    def _start(self, slot: Slot, job: Job) -> None:
        req = job.req
        job.completion = Completion(self.tok, req.params, req.ids, self.vocab_size, self.context,
                                    job.seed)
        slot.job = job
        slot.gen.reset()
        slot.pieces = deque()
        start = 0
        for n in prompt_chunks(len(req.ids), self.max_chunk):
            slot.pieces.append(req.ids[start:start + n])
            start += n

    def _reap(self) -> None:
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                slot.job.completion.cancel()
                self._free(slot, "cancelled")

    def _prefill(self) -> None:
        n = len(self.slots)
        for k in range(n):
            slot = self.slots[(self._rr + k) % n]
            if slot.job is None or not slot.pieces:
                continue
            self._rr = (slot.index + 1) % n
            try:
                logits = slot.gen.feed(slot.pieces.popleft())
                if not slot.pieces:
                    self._advance(slot, logits)
            except Exception as exc:  # noqa: BLE001 - the request fails, the server goes on
                self._fail(slot, exc)
            return

    def _decode(self) -> None:
        rows = [s for s in self.slots if s.decoding]
        if not rows:
            return
        self.stats["steps"] += 1
        if self.batch is not None and len(rows) > 1:
            self.stats["batched_rows"] += len(rows)
            try:
                logits = self.batch.step([s.index for s in rows],
                                         [s.job.completion.next_token for s in rows])
            except Exception as exc:  # noqa: BLE001
                for s in rows:
                    self._fail(s, exc)
                return
            for i, s in enumerate(rows):
                self._guarded(s, lambda s=s, i=i: self._advance(s, logits[i]))
            return
        for s in rows:
            self._guarded(s, lambda s=s: self._advance(s, s.gen.step(s.job.completion.next_token)))

    def _guarded(self, slot: Slot, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            self._fail(slot, exc)

    def _advance(self, slot: Slot, logits) -> None:
        c = slot.job.completion
        text = c.advance(logits)
        if text:
            slot.job.sink("text", text)
        if c.done:
            self._free(slot, "served")

    def _fail(self, slot: Slot, exc: BaseException) -> None:
        job = slot.job
        slot.job, slot.pieces = None, deque()
        self.stats["failed"] += 1
        job.sink("error", exc)

    def _free(self, slot: Slot, outcome: str) -> None:
        job = slot.job
        slot.job, slot.pieces = None, deque()
        self._end(job, outcome)

    def _end(self, job: Job, outcome: str) -> None:
        self.stats[outcome] += 1
        job.sink("cancelled" if outcome == "cancelled" else "done", job.completion)
