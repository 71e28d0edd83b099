"""``qorus generate MODEL --prompt TEXT``, ``qorus chat MODEL`` (MODEL a GGUF file or a
Hugging Face decoder directory, through ``models.load_llm``), ``qorus embed MODEL_DIR
--text T`` and ``qorus serve MODEL`` (``serve.py``), added to the ``qorus`` command by the
plugin's ``qorus_register_commands`` hook."""

from __future__ import annotations

import argparse
import sys
import time


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a GGUF file or a Hugging Face decoder directory (llama, "
                   "mistral, qwen2, gpt2: config.json, model.safetensors, tokenizer.json)")
    p.add_argument("--ctx", type=int, help="context (KV-cache) length; default min(model's, 2048)")
    p.add_argument("--max-tokens", type=int, default=256, help="most tokens to generate (256)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default 0.8)")
    p.add_argument("--greedy", action="store_true", help="same as --temperature 0")
    p.add_argument("--top-k", type=int, default=40, help="sample from the k most likely (40; 0: all)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (0.95; 1: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kernels", choices=("auto", "c", "numpy"), help="kernel set")
    p.add_argument("--f32", action="store_true",
                   help="dequantize the weights to float32 at load (reference accuracy, more memory)")
    p.add_argument("--stats", action="store_true", help="print load time and tokens/s to stderr")


def _sampling(args: argparse.Namespace) -> dict:
    return dict(temperature=0.0 if args.greedy else args.temperature,
                top_k=args.top_k or None, top_p=args.top_p, seed=args.seed)


def _load(args: argparse.Namespace):
    from .models import load_llm

    llm = load_llm(args.model, context=args.ctx, kernels=args.kernels, dequantize=args.f32)
    if args.stats:
        print(f"loaded {llm.info['name'] or args.model} in {llm.load_ms:.0f} ms: "
              f"{llm.model.num_parameters / 1e6:.1f}M parameters, {llm.weight_bytes / 1e6:.1f} MB "
              f"of weights, context {llm.context}", file=sys.stderr)
    return llm


def _echo(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _setup_generate(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--chat", action="store_true",
                   help="wrap the prompt as a user message in the model's chat template")
    p.add_argument("--system", help="system message (with --chat)")


def _check_args(args: argparse.Namespace) -> None:
    """Text from argv that was not valid UTF-8 (Python keeps its bytes as lone surrogates)
    is refused before the model loads, naming the option and the position."""
    from .tokenizer import check_text

    for name in ("prompt", "system"):
        if getattr(args, name, None) is not None:
            check_text(getattr(args, name), f"--{name}")


def _run_generate(args: argparse.Namespace) -> int:
    from .chat import TextStream, chat_text, encode_chat_text
    from .generate import Generator, generate

    _check_args(args)
    llm = _load(args)
    tok = llm.tokenizer
    if args.chat:
        msgs = ([{"role": "system", "content": args.system}] if args.system else [])
        msgs.append({"role": "user", "content": args.prompt})
        ids = encode_chat_text(tok, chat_text(tok, msgs))
    else:
        _echo(args.prompt)
        ids = tok.encode(args.prompt)
    gen = Generator(llm.model)
    stream = TextStream(tok, _echo)
    times: list[float] = []

    def on_token(t: int) -> None:
        times.append(time.perf_counter())
        stream.push(t)

    t0 = time.perf_counter()
    out = generate(llm.model, ids, args.max_tokens, stop_ids=tok.stop_ids, on_token=on_token,
                   generator=gen, **_sampling(args))
    stream.flush()
    _echo("\n")
    if args.stats and times:
        prompt_s = times[0] - t0
        gen_s = times[-1] - times[0]
        print(f"prompt: {len(ids)} tokens in {prompt_s * 1e3:.0f} ms ({len(ids) / prompt_s:.1f} tok/s); "
              f"generation: {len(out) - 1} tokens at "
              f"{(len(out) - 1) / gen_s if gen_s > 0 else 0:.1f} tok/s", file=sys.stderr)
    return 0


def _setup_chat(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    p.add_argument("--system", help="system message")


def _run_chat(args: argparse.Namespace) -> int:
    from qorus_core.errors import ConfigError

    from .chat import Conversation
    from .tokenizer import check_text

    _check_args(args)
    llm = _load(args)
    conv = Conversation(llm, args.system)
    interactive = sys.stdin.isatty()
    n = 0
    while True:
        if interactive:
            _echo("> ")
        n += 1
        try:
            line = sys.stdin.readline()
        except UnicodeDecodeError as exc:
            raise ConfigError(f"stdin line {n}: not valid UTF-8 ({exc.reason})") from None
        check_text(line, f"stdin line {n}")   # surrogateescape'd stdin (a C/POSIX locale)
        if not line or line.strip() in ("/exit", "/quit"):
            return 0
        if not line.strip():
            continue
        conv.reply(line.rstrip("\n"), args.max_tokens, on_text=_echo, **_sampling(args))
        _echo("\n")


def _setup_embed(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a Hugging Face encoder directory (config.json, "
                   "model.safetensors, tokenizer files; sentence-transformers layout too)")
    p.add_argument("--text", action="append", required=True,
                   help="a text to embed (repeat for several)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--kernels", choices=("auto", "c", "numpy"), help="kernel set")
    p.add_argument("--json", action="store_true", help='print {"embeddings": [[...], ...]}')


def _run_embed(args: argparse.Namespace) -> int:
    import json

    from .hf_encoder import load_encoder
    from .tokenizer import check_text

    for i, t in enumerate(args.text):
        check_text(t, f"--text #{i + 1}")
    emb = load_encoder(args.model, kernels=args.kernels).encode(args.text, args.batch_size)
    if args.json:
        print(json.dumps({"embeddings": emb.tolist()}))
    else:
        for row in emb:
            print(" ".join(f"{v:.6g}" for v in row))
    return 0


def _setup_serve(p: argparse.ArgumentParser) -> None:
    from .serve import setup

    setup(p)


def _run_serve(args: argparse.Namespace) -> int:
    from .serve import run

    return run(args)


def register(add_command) -> None:
    """Add ``generate``, ``chat``, ``embed`` and ``serve`` to the ``qorus`` command (``add_command`` of
    ``qorus_register_commands``)."""
    add_command("generate", "continue a prompt with a language model (GGUF or Hugging Face)",
                _setup_generate, _run_generate)
    add_command("chat", "chat with a language model, GGUF or Hugging Face (its chat template, "
                "one line a turn)", _setup_chat, _run_chat)
    add_command("embed", "sentence embeddings from a Hugging Face encoder directory",
                _setup_embed, _run_embed)
    add_command("serve", "serve a model over an OpenAI-compatible HTTP API (chat, completions, "
                "embeddings; the [serve] extra)", _setup_serve, _run_serve)
