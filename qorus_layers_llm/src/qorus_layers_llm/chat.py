"""Chat prompts: the model's own template (GGUF ``tokenizer.chat_template``, Jinja) rendered
the way Hugging Face renders it, ChatML when the file has none. Templates come from model
files, so they run sandboxed and bounded (``template_sandbox``)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from qorus_core.errors import ConfigError

if TYPE_CHECKING:
    from .template_sandbox import TemplateLimits

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")


@lru_cache(maxsize=32)   # one per model file's template; a compiled template renders in any thread
def _compile(template: str):
    try:
        from jinja2.exceptions import TemplateError

        from .template_sandbox import BoundedSandbox
    except ImportError:  # pragma: no cover - jinja2 is a dependency of this package
        raise ConfigError("chat templates need jinja2 (pip install jinja2)") from None

    def raise_exception(message: str) -> None:
        raise ConfigError(f"chat template: {message}")

    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.compile_template(template)
    except ConfigError:
        raise
    except TemplateError as exc:
        raise ConfigError(f"chat template does not parse: {exc}") from None
    except RecursionError:
        raise ConfigError("chat template does not parse: nested too deeply") from None


def render_chat(messages: list[dict[str, str]], template: str | None, bos_token: str = "",
                eos_token: str = "", add_generation_prompt: bool = True,
                limits: TemplateLimits | None = None) -> str:
    """The prompt text for ``messages`` ([{"role": ..., "content": ...}, ...]). The template
    (from a model file: untrusted) runs in a Jinja sandbox bounded in time, steps and size
    (``limits``, default ``DEFAULT_LIMITS``; see ``template_sandbox``): past a limit,
    ConfigError naming it."""
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise ConfigError(f"chat message {i} must have string 'role' and 'content', got {m!r}")
    if template is not None and not isinstance(template, str):
        raise ConfigError(f"chat template must be a string, got {type(template).__name__}")
    tmpl = _compile(template or CHATML)
    from .template_sandbox import DEFAULT_LIMITS, budget

    kwargs: dict[str, Any] = dict(messages=messages, add_generation_prompt=add_generation_prompt,
                                  bos_token=bos_token, eos_token=eos_token)
    size = len(bos_token) + len(eos_token) + sum(len(m["role"]) + len(m["content"])
                                                 for m in messages)
    try:
        with budget(limits or DEFAULT_LIMITS, size) as b:
            parts, total = [], 0
            for chunk in tmpl.generate(**kwargs):       # streamed: the output cap holds early
                total += len(chunk)
                if total > b.size_cap:
                    raise ConfigError(f"chat template: its output passed {b.size_cap:,} "
                                      "characters (TemplateLimits.max_chars plus 4x the messages)")
                parts.append(chunk)
                b.tick()
            return "".join(parts)
    except ConfigError:
        raise
    except Exception as exc:  # a template's own runtime error (undefined names, types)
        raise ConfigError(f"chat template failed: {type(exc).__name__}: {exc}") from None


def chat_text(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """``messages`` rendered with the tokenizer's own template, BOS/EOS token strings filled in."""
    tok = tokenizer
    return render_chat(messages, tok.chat_template,
                       "" if tok.bos_id is None else tok.tokens[tok.bos_id],
                       "" if tok.eos_id is None else tok.tokens[tok.eos_id], add_generation_prompt)


def encode_chat_text(tokenizer, text: str) -> list[int]:
    """Token ids of a rendered chat: BOS is added as the tokenizer says, unless the template
    already wrote it (no double BOS)."""
    bos = None if tokenizer.bos_id is None else tokenizer.tokens[tokenizer.bos_id]
    wrote_bos = bos is not None and text.startswith(bos)
    return tokenizer.encode(text, add_bos=False if wrote_bos else None)


class Conversation:
    """A chat with a loaded model: the messages so far, each turn appended to its own KV cache
    (its Generator's sequence: any number of conversations share one loaded model).
    When the rendered conversation extends the text already in the cache, only the new text
    is tokenized and fed (as llama.cpp's chat does); otherwise the cache starts over.

    A conversation is single-user: its messages and its generator's cache are its own state,
    so one thread at a time calls ``reply``. Conversations on one model need no lock."""

    def __init__(self, llm, system: str | None = None) -> None:
        from .generate import Generator

        self.llm = llm
        self.messages: list[dict[str, str]] = []
        if system is not None:
            self.messages.append({"role": "system", "content": system})
        self.gen = Generator(llm.model)
        self._text = ""                    # the text whose tokens are in the KV cache
        self.last_fed = 0                  # tokens fed for the last turn's prompt

    def _prompt(self) -> tuple[str, list[int]]:
        """The rendered conversation and the tokens to feed for it."""
        tok = self.llm.tokenizer
        text = chat_text(tok, self.messages)
        if self._text and text.startswith(self._text):
            return text, tok.encode(text[len(self._text):], add_bos=False)
        self.gen.reset()
        return text, encode_chat_text(tok, text)

    def reply(self, user: str, max_new_tokens: int = 256, on_text=None, **sampling) -> str:
        """Append the user's message, generate the assistant's answer, return its text."""
        from .generate import generate

        tok = self.llm.tokenizer
        self.messages.append({"role": "user", "content": user})
        text, new = self._prompt()
        self.last_fed = len(new)
        stream = TextStream(tok, on_text)
        out = generate(self.llm.model, new, max_new_tokens, stop_ids=tok.stop_ids,
                       on_token=stream.push, generator=self.gen, **sampling)
        stream.flush()
        self._text = text + tok.decode(out[:-1])   # the last sampled token was never fed
        answer = tok.decode(out, skip_special=True)
        self.messages.append({"role": "assistant", "content": answer})
        return answer


class TextStream:
    """Turns token ids into text as they come, holding back a cut UTF-8 character; special
    tokens (end of turn) are not printed."""

    def __init__(self, tokenizer, on_text=None) -> None:
        import codecs

        self.tok = tokenizer
        self.on_text = on_text
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> None:
        """Decode one more token and pass the complete characters it finishes to ``on_text`` (special
        tokens are not shown)."""
        if self.on_text is None or token in self.tok.special_ids:
            return
        text = self._dec.decode(self.tok.token_bytes(token))
        if text:
            self.on_text(text)

    def flush(self) -> None:
        """Pass on what is left of a character cut short (at the end of a reply)."""
        if self.on_text is not None:
            text = self._dec.decode(b"", final=True)
            if text:
                self.on_text(text)
