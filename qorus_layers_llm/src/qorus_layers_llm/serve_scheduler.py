"""The scheduler of ``qorus serve``: ``parallel`` slots over one loaded model, each a
``Generator`` with a KV cache and position of its own, one worker thread driving them all.

Requests wait in a bounded queue (full: ``OverloadedError``, HTTP 503) and take a free slot
between steps (continuous batching). Each turn of the loop first runs one prompt chunk of
each prefilling slot (round robin; the chunks ``Generator.feed`` would run, so a prompt
gives the same logits fed whole or chunk by chunk) while the turn's chunks cost at most
``PREFILL_TURN`` full chunks (a chunk of n positions counting n + max_chunk / 4: a short
chunk costs about a quarter of a full one; at least one chunk a turn), then one decode step
of every slot that is generating. So prompts delay the running streams by at most about
``PREFILL_TURN`` full chunks a step, never by a long prompt's whole length, and prompts
that arrive together advance chunk for chunk and start decoding in the same step or the
next (a 37-token chat is 32 + 2 + 3), not one a turn with the first ones decoding alone in
small steps meanwhile. With two or more slots generating, the step is
``batch_decode.BatchDecoder``'s (every one of them in one pass over the weights, each row
computed as its slot's own step would) where the model allows it (``unbatched_why`` says
why not), else each slot's own step in turn. A batched step draws every row's token first
(``Completion.sample``), then does the rows' text work (``Completion.emit``).

A request reports through its ``sink``: ("text", str) for each piece of text, then ("done",
Completion), ("error", exception) or ("cancelled", Completion or None). The events of a
phase of a turn (its prompt chunks, its decode step) are delivered together at the end of
that phase: through ``job.channel.post(items)`` where the job has a channel (``serve_app``'s
hands a whole step's events, every request's, to the event loop in one wake-up), else by
calling the sink on the worker thread. ``cancel`` (a client that went away) frees its slot
before the next step. ``close`` refuses new requests, lets the running ones finish
(bounded), then stops the worker.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from .completion import Completion
from .generate import MAX_CHUNK, Generator, prompt_chunks
from .request_body import Request
from .request_error import OverloadedError

Sink = Callable[[str, Any], None]
#: the prompt work of one turn, in full chunks (see ``Scheduler._prefill``)
PREFILL_TURN = 4
Event = tuple[Sink, str, Any]           # (the job's sink, kind, value)


class Channel(Protocol):
    """Where the events of several jobs go together: ``post`` gets each phase's events (in
    order) in one call on the worker thread, and calls each ``sink(kind, value)`` in turn,
    wherever it likes (an event loop's thread)."""

    def post(self, items: list[Event]) -> None:
        """Deliver ``items`` (one phase's events, in order): each ``sink(kind, value)``."""


class Job:
    """One request in the scheduler; ``channel``: where its events go (None: its sink is
    called on the worker thread)."""

    def __init__(self, req: Request, seed: int, sink: Sink, channel: Channel | None = None) -> None:
        self.req, self.seed, self.sink, self.channel = req, seed, sink, channel
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
        self._outbox: list[tuple[Job, str, Any]] = []   # this phase's events, not yet delivered
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
                self._flush()                   # first tokens, before the step
                self._decode()
            except Exception as exc:  # noqa: BLE001 - a bug here must not stop the server
                for slot in self.slots:
                    if slot.job is not None:
                        self._fail(slot, exc)
            finally:
                self._flush()
            with self._cv:
                self._cv.notify_all()           # close() waits on the slots emptying

    def _admit(self) -> None:
        for slot in self.slots:
            if slot.job is None:
                while self._queue and slot.job is None:
                    job = self._queue.popleft()
                    if job.cancelled:
                        self._end(job, "cancelled")
                        continue
                    try:
                        self._start(slot, job)
                    except Exception as exc:  # noqa: BLE001 - the request fails, not the worker
                        slot.job = job
                        self._fail(slot, exc)

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
        """One prompt chunk of each prefilling slot, round robin, while the turn's chunks
        cost at most ``PREFILL_TURN`` full chunks (a chunk of n positions costing
        n + max_chunk // 4), at least one (see the module docs)."""
        n, least = len(self.slots), self.max_chunk // 4
        budget, first, start = PREFILL_TURN * self.max_chunk, True, self._rr
        for k in range(n):
            slot = self.slots[(start + k) % n]
            if slot.job is None or not slot.pieces:
                continue
            cost = len(slot.pieces[0]) + least
            if not first and cost > budget:
                break
            first, budget = False, budget - cost
            self._rr = (slot.index + 1) % n
            try:
                logits = slot.gen.feed(slot.pieces.popleft())
                if not slot.pieces:
                    slot.job.completion.sample(logits)
                    self._emit(slot)
            except Exception as exc:  # noqa: BLE001 - the request fails, the server goes on
                self._fail(slot, exc)

    def _decode(self) -> None:
        rows = [s for s in self.slots if s.decoding]
        if not rows:
            return
        self.stats["steps"] += 1
        if self.batch is None or len(rows) == 1:
            for s in rows:
                try:
                    s.job.completion.sample(s.gen.step(s.job.completion.next_token))
                    self._emit(s)
                except Exception as exc:  # noqa: BLE001
                    self._fail(s, exc)
            return
        self.stats["batched_rows"] += len(rows)
        try:
            logits = self.batch.step([s.index for s in rows],
                                     [s.job.completion.next_token for s in rows])
        except Exception as exc:  # noqa: BLE001
            for s in rows:
                self._fail(s, exc)
            return
        drawn = []
        for i, s in enumerate(rows):                 # every row's draw, then the text work
            try:
                s.job.completion.sample(logits[i])
                drawn.append(s)
            except Exception as exc:  # noqa: BLE001
                self._fail(s, exc)
        for s in drawn:
            try:
                self._emit(s)
            except Exception as exc:  # noqa: BLE001
                self._fail(s, exc)

    def _emit(self, slot: Slot) -> None:
        """The text of the token ``slot``'s completion drew; frees the slot when it ends."""
        job = slot.job
        text = job.completion.emit()
        if text:
            self._outbox.append((job, "text", text))
        if job.completion.done:
            self._free(slot, "served")

    def _flush(self) -> None:
        """Deliver the events of this phase: each channel's in one ``post``, in order."""
        if not self._outbox:
            return
        box, self._outbox = self._outbox, []
        posts: dict[int, tuple[Channel, list[Event]]] = {}
        for job, kind, value in box:
            if job.channel is None:
                try:
                    job.sink(kind, value)
                except Exception:  # noqa: BLE001, S110 - a sink that fails cannot be told;
                    pass           # the other jobs still get their events
            else:
                posts.setdefault(id(job.channel), (job.channel, []))[1].append(
                    (job.sink, kind, value))
        for channel, items in posts.values():
            try:
                channel.post(items)
            except Exception:  # noqa: BLE001, S110 - as a sink's: the worker goes on
                pass

    def _fail(self, slot: Slot, exc: BaseException) -> None:
        job = slot.job
        slot.job, slot.pieces = None, deque()
        self.stats["failed"] += 1
        self._outbox.append((job, "error", exc))

    def _free(self, slot: Slot, outcome: str) -> None:
        job = slot.job
        slot.job, slot.pieces = None, deque()
        self._end(job, outcome)

    def _end(self, job: Job, outcome: str) -> None:
        self.stats[outcome] += 1
        self._outbox.append((job, "cancelled" if outcome == "cancelled" else "done",
                             job.completion))
