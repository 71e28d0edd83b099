"""Chat templates come from model files: a hostile one is stopped by a bound on its steps,
time, value sizes and output (ConfigError naming the limit), never hangs or allocates what
it asks for; real templates render exactly as Jinja's plain sandbox renders them."""

from __future__ import annotations

import dataclasses
import time

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from smollm2 import SMOL, needs_smollm2

from qorus_core.errors import ConfigError
from qorus_layers_llm.chat import CHATML, render_chat
from qorus_layers_llm.template_sandbox import DEFAULT_LIMITS, TemplateLimits, size_of

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "  Hello!  "}, {"role": "user", "content": "Bye"}]
TURNS = MSGS[1:]                                  # user/assistant alternating, no system

SMOLLM2 = (  # the template in SmolLM2-135M-Instruct's GGUF (real newlines in its strings)
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}")
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role "
         "not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == "
         "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must "
         "alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == "
         "'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
         "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
         "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}"
         "{{'<start_of_turn>model\\n'}}{% endif %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content']"
          " | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content "
          "%}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
           "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
           "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
           "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
           "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only "
           "user and assistant roles are supported!') }}{% endif %}{% endfor %}")
# Llama-3.1 style: whitespace control, a namespace, slices, a filter chain, tojson, ~, macros
RICH = """{{- bos_token }}
{%- macro header(role) -%}<|start_header_id|>{{ role }}<|end_header_id|>{{ "\\n\\n" }}{%- endmacro %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{%- set ns = namespace(turns=0, roles=[]) %}
{{- header("system") }}
{{- "Cutting Knowledge Date: " ~ "December 2023" ~ "\\n" }}
{{- system_message }}{{ "<|eot_id|>" }}
{%- for message in messages %}
    {%- set ns.turns = ns.turns + 1 %}
    {%- set ns.roles = ns.roles + [message.role] %}
    {{- header(message['role']) ~ message['content'] | trim ~ '<|eot_id|>' }}
    {%- if loop.last %}{{ {"turns": ns.turns, "last": loop.index}|tojson }}{% endif %}
{%- endfor %}
{{- ns.roles|unique|sort|join(",") }}{{ "%d messages, %s" % (messages|length, "ok") }}
{%- for a, b in [("x", 1), ("y", 2)] %}{{ "{}={}".format(a, b) }}{% endfor %}
{%- if add_generation_prompt %}{{ header("assistant") }}{% endif %}"""

REAL = {"chatml": (CHATML, MSGS), "smollm2": (SMOLLM2, MSGS), "gemma": (GEMMA, TURNS),
        "llama3": (LLAMA3, MSGS), "mistral": (MISTRAL, TURNS), "rich": (RICH, MSGS)}


def _plain(template, messages, bos="<s>", eos="</s>", add_generation_prompt=True):
    """What Jinja's own sandbox (unbounded) renders, as chat.py configured it before."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise ConfigError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, bos_token=bos, eos_token=eos,
                                            add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("gen", [True, False])
def test_real_templates_render_exactly_as_the_plain_sandbox(name, gen):
    template, messages = REAL[name]
    want = _plain(template, messages, add_generation_prompt=gen)
    assert render_chat(messages, template, "<s>", "</s>", gen) == want
    assert "Hi there" in want


def test_a_long_conversation_renders_within_the_limits():
    long = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i} " + "w" * 2000}
            for i in range(400)]                 # 800 KB of messages
    for template in (SMOLLM2, LLAMA3, GEMMA, RICH):
        assert render_chat(long, template, "<s>", "</s>") == _plain(template, long)


@needs_smollm2
def test_smollm2_gguf_template():
    from qorus_core.io.gguf import GGUFFile
    from qorus_layers_llm.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(GGUFFile(SMOL))
    assert tok.chat_template == SMOLLM2
    assert render_chat(MSGS, tok.chat_template) == _plain(SMOLLM2, MSGS, "", "")


SMALL = TemplateLimits(max_seconds=30.0, max_steps=20_000, max_chars=10_000)


@pytest.mark.parametrize("template,limit", [
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
     "max_steps"),
    ("{% for c in 'x' * 5000 %}{% for d in 'x' * 5000 %}{% endfor %}{% endfor %}", "max_steps"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(30) }}",
     "max_steps"),
    ("{% for x in range(2) recursive %}{% if loop.depth < 40 %}{{ loop(range(2)) }}{% endif %}"
     "{% endfor %}", "max_steps"),
    ("{{ 'x' * 10**10 }}", "max_chars"),
    ("{{ 'x' * 10000000000 }}", "max_chars"),
    ("{{ [0] * 10**9 }}", "max_chars"),
    ("{{ 'x'|center(10**10) }}", "max_chars"),
    ("{{ 'x'.ljust(10**10) }}", "max_chars"),
    ("{{ ('x'|safe).rjust(10**10) }}", "max_chars"),
    ("{{ 'x'.zfill(10**10) }}", "max_chars"),
    ("{{ ('\\t' * 100).expandtabs(10**9) }}", "max_chars"),
    ("{{ ('x' * 5000).replace('', 'y' * 5000) }}", "max_chars"),
    ("{{ ('x' * 5000)|replace('x', 'y' * 5000) }}", "max_chars"),
    ("{{ ('y' * 5000).join(['a'] * 5000) }}", "max_chars"),
    ("{{ ('x' * 5000).translate({120: 'y' * 5000}) }}", "max_chars"),
    ("{{ '%10000000000d' % 1 }}", "max_chars"),
    ("{{ '%10000000000d'|format(1) }}", "max_chars"),
    ("{{ '{:>10000000000}'.format(1) }}", "max_chars"),
    ("{{ 'a\\nb'|indent(10**10) }}", "max_chars"),
    ("{{ range(3)|batch(10**10, 0)|list }}", "max_chars"),
    ("{{ range(3)|slice(10**10)|list }}", "max_chars"),
    ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}", "max_chars"),
    ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
     "{% endfor %}", "max_chars"),
    ("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}"
     "{% endfor %}{{ ns.l }}", "max_chars"),
    ("{{ {}.fromkeys(range(5000), 'x' * 5000) }}", "max_chars"),
    ("{% for i in range(9999) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}", "max_chars"),
    ("{% set x %}{% for i in range(9999) %}xxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endset %}",
     "max_chars"),
    ("{{ range(5000)|map('string')|map('center', 5000)|join }}", "max_total_factor"),
    ("{% set s = 'x' * 5000 %}{% for i in range(9999) %}{% set t = s[1:] %}{% endfor %}",
     "max_total_factor"),
    ("{{ 10 ** (10 ** 10) }}", "max_int_bits"),
    ("{% set ns = namespace(n=10) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}"
     "{% endfor %}", "max_int_bits"),
    ("{% for i in range(10**6) %}{% endfor %}", "MAX_RANGE"),
])
def test_hostile_templates_stop_at_a_named_limit(template, limit):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=limit):
        render_chat(TURNS, template, limits=SMALL)
    assert time.perf_counter() - t0 < 5


def test_the_default_limits_stop_the_reported_attacks_quickly():
    """The issue's two: a nested range(99999) loop, 'x' * 10**10 (10 GB). The default
    limits but the clock's (0.5 s alone against 2 s: a loaded machine must not make the time
    limit the one that trips; test_the_time_limit holds that one)."""
    limits = dataclasses.replace(DEFAULT_LIMITS, max_seconds=60.0)
    for template, limit in [
            ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
             "max_steps"), ("{{ 'x' * 10**10 }}", "max_chars")]:
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match=limit):
            render_chat(TURNS, template, limits=limits)
        assert time.perf_counter() - t0 < 10


def test_the_time_limit():
    limits = dataclasses.replace(DEFAULT_LIMITS, max_seconds=0.0)
    with pytest.raises(ConfigError, match=r"ran longer than 0 s \(TemplateLimits.max_seconds\)"):
        render_chat(TURNS, "{% for i in range(100000) %}{% endfor %}", limits=limits)
    assert render_chat(TURNS, CHATML, limits=limits)        # a few steps: under the clock check


def test_the_size_limit_grows_with_the_messages():
    """4x the messages on top of max_chars: a long message never trips a real template."""
    big = [{"role": "user", "content": "m" * 50_000}]
    assert len(render_chat(big, SMOLLM2, limits=SMALL)) > 50_000
    with pytest.raises(ConfigError, match="max_chars"):
        render_chat(big, "{{ messages[0].content * 5 }}", limits=SMALL)


def test_filters_no_chat_template_needs_are_gone():
    with pytest.raises(ConfigError, match="lipsum"):
        render_chat(TURNS, "{{ lipsum(10**8) }}")
    with pytest.raises(ConfigError, match="urlize"):
        render_chat(TURNS, "{{ 'http://x.y'|urlize(target='x' * 10**6) }}")


def test_the_sandbox_still_refuses_escapes_and_long_templates():
    with pytest.raises(ConfigError, match="unsafe"):
        render_chat(TURNS, "{{ ''.__class__.__mro__ }}")
    with pytest.raises(ConfigError, match="max_template_chars"):
        render_chat(TURNS, "x" * (DEFAULT_LIMITS.max_template_chars + 1))
    with pytest.raises(ConfigError, match="nested too deeply"):
        render_chat(TURNS, "{{ " + "(" * 50_000 + "1" + ")" * 50_000 + " }}")


def test_size_of_counts_shared_references_and_stops_early():
    a = ["x" * 10]
    for _ in range(60):
        a = [a, a]                              # 2**60 leaves, built in 60 steps
    assert size_of(a, 1000) > 1000
    assert size_of({"k": ["ab", "cd"]}, 10**6) < 30
