"""``qorus serve``: the OpenAI-compatible server on 127.0.0.1 (an ephemeral port), talked to
with the real ``openai`` client and with plain HTTP (httpx): chat, streaming (chunks join to
the whole answer), completions, stop strings, seeds, usage, every error status, the API key,
cancellation when a client disconnects, concurrent requests each answered as if alone, and
SIGTERM draining a running stream (a subprocess). No test waits on a clock: queue states are
made with the scheduler paused, and waits poll for a state with a generous bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from tiny_llama import write_tiny_llama

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from qorus_layers_llm.api import LLM  # noqa: E402
from qorus_layers_llm.serve import bind, make_server  # noqa: E402

MSGS = [{"role": "user", "content": "the tin man and the ant"}]
NO_EOS = {"2": -100}                 # the tiny model's <|im_end|>: random weights keep talking
KEY = "sekrit"
WAIT = 60.0                          # the most a state poll waits (it returns on the state)


class Running:
    """A server in a thread of this process on 127.0.0.1:<ephemeral>."""

    def __init__(self, llm: LLM, **kw) -> None:
        self.server, self.front = make_server(llm, **kw)
        sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        until(lambda: self.server.started, "the server to start")
        self.scheduler = self.front.scheduler

    def client(self, key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=WAIT)

    def health(self) -> dict:
        return httpx.get(self.url + "/health").json()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)


def until(cond, what: str) -> None:
    end = time.monotonic() + WAIT
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("serve") / "tiny.gguf", "q8_0")


@pytest.fixture(scope="module")
def alone(tiny):
    """The Python API on its own: what each request gives served alone."""
    return LLM(tiny, n_ctx=512)


@pytest.fixture(scope="module", params=[True, False], ids=["batched", "in-turn"])
def srv(tiny, request):
    r = Running(LLM(tiny, n_ctx=512), parallel=3, batched=request.param)
    assert r.health()["batched"] is request.param
    yield r
    r.stop()


def sse(resp) -> list:
    """The JSON events of a server-sent-events response, [DONE] checked last."""
    lines = [ln for ln in resp.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(ln[len("data: "):]) for ln in lines[:-1]]


def test_chat_with_the_openai_client_equals_the_api(srv, alone):
    out = srv.client().chat.completions.create(model="tiny", messages=MSGS, max_tokens=12,
                                               temperature=0, logit_bias=NO_EOS)
    want = alone.create_chat_completion(MSGS, max_tokens=12, temperature=0, logit_bias=NO_EOS)
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.model == "tiny.gguf" and out.choices[0].finish_reason == "length"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == want["choices"][0]["message"]["content"]
    assert out.usage.model_dump() == {**want["usage"], "completion_tokens_details": None,
                                      "prompt_tokens_details": None}


def test_streamed_chunks_join_to_the_answer(srv):
    c = srv.client()
    kw = dict(model="tiny", messages=MSGS, max_tokens=20, temperature=0, logit_bias=NO_EOS)
    whole = c.chat.completions.create(**kw)
    chunks = list(c.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                            **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 20 and not chunks[-1].choices
    assert len({ch.id for ch in chunks}) == 1
    with httpx.stream("POST", srv.url + "/v1/chat/completions",
                      json={**kw, "stream": True}) as r:       # the same over plain HTTP
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse(r)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == text


def test_completions_stop_strings_and_seeds(srv, alone):
    c = srv.client()
    base = c.completions.create(model="tiny", prompt="the ant", max_tokens=16, temperature=0,
                                logit_bias=NO_EOS)
    text = base.choices[0].text
    assert base.object == "text_completion" and text == alone.create_completion(
        "the ant", max_tokens=16, temperature=0, logit_bias=NO_EOS)["choices"][0]["text"]
    stop = text[5:8]
    cut = c.completions.create(model="tiny", prompt="the ant", max_tokens=16, temperature=0,
                               logit_bias=NO_EOS, stop=[stop])
    assert cut.choices[0].text == text[:text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    kw = dict(model="tiny", prompt="the", max_tokens=24, temperature=1.0, top_p=1.0,
              logit_bias=NO_EOS, extra_body={"top_k": 0, "min_p": 0.0})
    a = c.completions.create(seed=11, **kw).choices[0].text
    assert c.completions.create(seed=11, **kw).choices[0].text == a
    assert c.completions.create(seed=12, **kw).choices[0].text != a
    streamed = c.completions.create(seed=11, stream=True, **kw)
    assert "".join(ch.choices[0].text for ch in streamed) == a


def test_models_and_health(srv):
    (m,) = srv.client().models.list().data
    assert m.id == "tiny.gguf" and m.object == "model"
    h = srv.health()
    assert h["status"] == "ok" and h["slots_idle"] + h["slots_processing"] == 3


@pytest.mark.parametrize("body,param", [
    ({"messages": MSGS, "temperature": -1}, "temperature"),
    ({"messages": MSGS, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": MSGS, "logit_bias": {"100000": 1}}, "logit_bias"),
    ({"messages": MSGS, "n": 3}, "n"),
    ({"messages": [{"role": "user"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": "hi"}, "messages"),
    ({"temperature": 0}, "messages"),
    ({"messages": [{"role": "user", "content": "x " * 600}]}, "messages")])
def test_bad_requests_are_400_naming_the_field(srv, body, param):
    r = httpx.post(srv.url + "/v1/chat/completions", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_http_error_statuses(srv):
    r = httpx.post(srv.url + "/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(srv.url + "/v1/nothing", json={})
    assert r.status_code == 404 and r.json()["error"]["message"] == "no endpoint POST /v1/nothing"
    r = httpx.get(srv.url + "/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()
    big = json.dumps({"messages": MSGS, "user": "x" * (1 << 20)})
    r = httpx.post(srv.url + "/v1/chat/completions", content=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    r = httpx.post(srv.url + "/v1/embeddings", json={"input": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_supported"
    with pytest.raises(openai.BadRequestError) as e:
        srv.client().chat.completions.create(model="tiny", messages=MSGS, temperature=5)
    assert e.value.body["param"] == "temperature"


def test_full_queue_is_503_with_retry_after(tiny):
    r = Running(LLM(tiny, n_ctx=512), parallel=1, max_queue=1, batched=False)
    try:
        r.scheduler.pause()
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, r.url + "/v1/completions", timeout=WAIT,
                                json={"prompt": "the", "max_tokens": 3})
            until(lambda: r.health()["queued"] == 1, "the first request to queue")
            second = httpx.post(r.url + "/v1/completions", json={"prompt": "a", "max_tokens": 3})
            assert second.status_code == 503 and int(second.headers["retry-after"]) >= 1
            assert second.json()["error"]["code"] == "overloaded"
            r.scheduler.resume()
            assert first.result().status_code == 200
    finally:
        r.scheduler.resume()
        r.stop()


def test_api_key(tiny):
    r = Running(LLM(tiny, n_ctx=512), api_key=KEY, batched=False)
    try:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
            got = httpx.post(r.url + "/v1/completions", json={"prompt": "a"}, headers=headers)
            assert got.status_code == 401 and got.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(r.url + "/v1/models").status_code == 401
        assert httpx.get(r.url + "/health").status_code == 200          # open for probes
        with pytest.raises(openai.AuthenticationError):
            r.client("wrong").models.list()
        out = r.client(KEY).completions.create(model="tiny", prompt="a", max_tokens=2)
        assert out.usage.completion_tokens <= 2
    finally:
        r.stop()


def test_a_client_that_disconnects_frees_its_slot(tiny):
    r = Running(LLM(tiny, n_ctx=4096), parallel=1, batched=False)
    try:
        body = {"prompt": "the", "max_tokens": 4000, "logit_bias": NO_EOS, "stream": True}
        with httpx.stream("POST", r.url + "/v1/completions", json=body) as resp:
            lines = resp.iter_lines()
            got = [ln for ln in (next(lines) for _ in range(6)) if ln]
            assert len(got) == 3                        # three tokens came: it is generating
            r.scheduler.pause()                         # it cannot finish meanwhile
        until(lambda: r.health()["cancel_requests"] == 1, "the disconnect to be seen")
        r.scheduler.resume()
        until(lambda: r.health()["cancelled"] == 1, "the slot to be freed")
        h = r.health()
        assert h["served"] == 0 and h["slots_idle"] == 1
        whole = httpx.post(r.url + "/v1/completions", json={"prompt": "x", "max_tokens": 3})
        assert whole.status_code == 200                 # the slot serves the next request
    finally:
        r.scheduler.resume()
        r.stop()


def test_concurrent_requests_are_answered_as_if_alone(srv, alone):
    prompts = [f"the {w} man" for w in ("tin", "ant", "an", "a", "he", "in")]

    def ask(p):
        return srv.client().completions.create(model="tiny", prompt=p, max_tokens=12,
                                               temperature=0, logit_bias=NO_EOS).choices[0].text

    before = srv.health()["batched_rows"]
    srv.scheduler.pause()                               # all six queue, then three start at once
    try:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(ask, p) for p in prompts]
            until(lambda: srv.health()["queued"] == 6, "the requests to queue")
            srv.scheduler.resume()
            got = [f.result() for f in futures]
    finally:
        srv.scheduler.resume()
    if srv.scheduler.batch is not None:                 # three slots decoded in one step
        assert srv.health()["batched_rows"] >= before + 3
    want = [alone.create_completion(p, max_tokens=12, temperature=0,
                                    logit_bias=NO_EOS)["choices"][0]["text"] for p in prompts]
    assert got == want


def test_embeddings_endpoint(tmp_path):
    from test_llm_api import _encoder_dir

    d = _encoder_dir(tmp_path)
    r = Running(LLM(d))
    try:
        out = r.client().embeddings.create(model="enc", input=["the cat", "a mat"])
        want = LLM(d).embed(["the cat", "a mat"])
        np.testing.assert_allclose([e.embedding for e in out.data], want, rtol=1e-6)
        assert out.usage.prompt_tokens == 8
        got = httpx.post(r.url + "/v1/chat/completions", json={"messages": MSGS})
        assert got.status_code == 400 and got.json()["error"]["code"] == "model_not_supported"
    finally:
        r.stop()


def test_sigterm_lets_the_running_stream_finish(tiny):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qorus_core.cli", "serve", str(tiny),
                             "--port", "0", "--ctx", "4096", "--drain", "60"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].split()[0]
        body = {"prompt": "the", "max_tokens": 1500, "logit_bias": NO_EOS, "stream": True,
                "stream_options": {"include_usage": True}}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=WAIT) as resp:
            lines = resp.iter_lines()
            assert next(lines).startswith("data: ")
            proc.send_signal(signal.SIGTERM)
            rest = [ln for ln in lines if ln]
        assert rest[-1] == "data: [DONE]"
        last, usage = (json.loads(ln[len("data: "):]) for ln in rest[-3:-1])
        assert last["choices"][0]["finish_reason"] == "length"
        assert usage["usage"]["completion_tokens"] == 1500      # it ran to the end
        assert proc.wait(WAIT) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


class Recorder:
    """A scheduler channel that keeps each post (one phase's events) and delivers them."""

    def __init__(self) -> None:
        self.posts: list[list[tuple[int, str]]] = []

    def post(self, items) -> None:
        self.posts.append([(sink.index, kind) for sink, kind, _ in items])
        for sink, kind, value in items:
            sink(kind, value)


class Collect:
    """One job's events: its text and how it ended."""

    def __init__(self, index: int) -> None:
        self.index, self.text, self.end = index, [], threading.Event()
        self.kinds: list[str] = []

    def __call__(self, kind: str, value) -> None:
        self.kinds.append(kind)
        if kind == "text":
            self.text.append(value)
        else:
            self.end.set()


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "in-turn"])
def test_a_steps_events_come_in_one_post_and_prompts_start_together(tiny, alone, batched):
    from qorus_layers_llm.generate import prompt_chunks
    from qorus_layers_llm.serve_scheduler import Job, Scheduler

    llm = LLM(tiny, n_ctx=512)
    body = {"max_tokens": 6, "temperature": 0, "logit_bias": NO_EOS}
    words = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"]
    by_len: dict[int, list[str]] = {}
    for w in words:                                   # four prompts of one length
        p = f"the tin man and the ant {w} ran"
        by_len.setdefault(len(llm.parse("text", {"prompt": p, **body}).ids), []).append(p)
    n, prompts = max(((n, ps) for n, ps in by_len.items()), key=lambda x: len(x[1]))
    prompts = prompts[:4]
    assert len(prompts) == 4 and len(prompt_chunks(n, 32)) >= 2, by_len
    sch = Scheduler(llm, parallel=4, max_chunk=32, batched=batched)   # two chunks or more each
    ch, sinks = Recorder(), [Collect(i) for i in range(4)]
    try:
        sch.pause()
        for p, sink in zip(prompts, sinks):
            sch.submit(Job(llm.parse("text", {"prompt": p, **body}), 0, sink, ch))
        sch.resume()
        for sink in sinks:
            assert sink.end.wait(WAIT)
    finally:
        sch.close()
    # every prompt's chunks ran in the same turns, so the four started in one turn and
    # ended in one step: at most one post a phase (the first tokens, then 5 decode steps),
    # each with at most one piece of text a job, and the four "done" in the last
    assert 2 <= len(ch.posts) <= 6, ch.posts
    assert all(len({i for i, k in post if k == "text"}) == len([k for _, k in post if k == "text"])
               for post in ch.posts)
    assert sorted(i for i, k in ch.posts[-1] if k == "done") == [0, 1, 2, 3], ch.posts
    for p, sink in zip(prompts, sinks):
        assert sink.kinds[-1] == "done"
        want = alone.create_completion(p, **body)["choices"][0]["text"]
        assert "".join(sink.text) == want


def test_a_request_that_fails_to_start_fails_alone(tiny, monkeypatch):
    """An error while a request takes its slot (before its first chunk) ends that request
    with ("error", exc); the worker thread lives on and serves the next one."""
    from qorus_layers_llm import serve_scheduler
    from qorus_layers_llm.serve_scheduler import Job, Scheduler

    llm = LLM(tiny, n_ctx=512)
    body = {"max_tokens": 3, "temperature": 0}
    real = serve_scheduler.Completion
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("no completion for you")
        return real(*args, **kwargs)

    monkeypatch.setattr(serve_scheduler, "Completion", flaky)
    sch = Scheduler(llm, parallel=1, max_chunk=32)
    first, second = Collect(0), Collect(1)
    errors = []
    try:
        sch.submit(Job(llm.parse("text", {"prompt": "the tin man", **body}), 0,
                       lambda k, v: (errors.append(v) if k == "error" else None, first(k, v))))
        assert first.end.wait(WAIT)
        sch.submit(Job(llm.parse("text", {"prompt": "the tin man", **body}), 0, second))
        assert second.end.wait(WAIT)
    finally:
        sch.close()
    assert first.kinds == ["error"] and str(errors[0]) == "no completion for you"
    assert second.kinds[-1] == "done" and sch.stats["failed"] == 1
