"""A Jinja sandbox bounded in time and size, for chat templates read from model files.

Jinja's ``ImmutableSandboxedEnvironment`` stops a template from reaching Python internals,
but not from hanging (nested ``range(99999)`` loops) or exhausting memory (``'x' * 10**10``).
This one also bounds, per render:

- steps: every loop iteration and every call (macros and recursive loops included) counts
  one; past ``max_steps`` the render stops, as it does once it ran ``max_seconds``;
- size: every value the template builds (an operator's result, a literal list or dict, a
  call's or filter's result, a join, a slice, a padding or format width) and its total output
  must stay within ``max_chars`` plus 4x the size of the messages; sizes are checked
  *before* allocating where they can be (``'x' * 10**10`` is refused, never attempted), and
  containers count as their printed size, so shared references cannot build an
  exponentially large value;
- volume: all the values built in one render together (strings by length, containers by
  their number of items) stay within ``max_total_factor`` times that size, so a generator
  pipeline or a loop cannot pile up many values each within the limit;
- integers: ``*`` and ``**`` may not make an integer wider than ``max_int_bits``.

It works by rewriting the parsed template (each ``for`` iterates through a counting filter,
each output expression and ``~`` goes through a size check, literal containers are checked)
and by overriding the sandbox's operator, call, attribute and filter hooks. Each refusal is a
``ConfigError`` naming the limit. ``urlize`` and ``lipsum``, which no chat template needs and
which multiply their arguments' sizes, are not available.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, pass_context
from jinja2.visitor import NodeTransformer

from qorus_core.errors import ConfigError


@dataclass(frozen=True)
class TemplateLimits:
    """What one render of a chat template may use (see the module doc)."""

    max_seconds: float = 2.0
    max_steps: int = 1_000_000
    max_chars: int = 1 << 20          # plus 4x the messages' own size
    max_int_bits: int = 1 << 16
    max_total_factor: int = 32        # all values built, in units of the size limit
    max_template_chars: int = 1 << 20  # the template's source text


DEFAULT_LIMITS = TemplateLimits()
_CHECK_CLOCK_EVERY = 64               # steps between two reads of the clock


class _Budget:
    """The running totals of one render."""

    __slots__ = ("limits", "size_cap", "out_left", "built_left", "steps", "deadline")

    def __init__(self, limits: TemplateLimits, input_chars: int) -> None:
        self.limits = limits
        self.size_cap = limits.max_chars + 4 * input_chars
        self.out_left = self.size_cap
        self.built_left = self.size_cap * limits.max_total_factor
        self.steps = 0
        self.deadline = time.monotonic() + limits.max_seconds

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise ConfigError(f"chat template: more than {self.limits.max_steps:,} loop iterations "
                              "and calls (TemplateLimits.max_steps); refusing to run it further")
        if self.steps % _CHECK_CLOCK_EVERY == 0 and time.monotonic() > self.deadline:
            raise ConfigError(f"chat template: ran longer than {self.limits.max_seconds:g} s "
                              "(TemplateLimits.max_seconds); refusing to run it further")


_BUDGET: ContextVar[_Budget | None] = ContextVar("qorus_template_budget", default=None)


def _tick() -> None:
    b = _BUDGET.get()
    if b is not None:
        b.tick()


def _cap() -> int:
    b = _BUDGET.get()
    return DEFAULT_LIMITS.max_chars if b is None else b.size_cap


def _int_bits() -> int:
    b = _BUDGET.get()
    return (DEFAULT_LIMITS if b is None else b.limits).max_int_bits


def _too_big(what: str, n: int, cap: int) -> ConfigError:
    return ConfigError(f"chat template: {what} would be {n:,} characters or items, over the limit "
                       f"of {cap:,} (TemplateLimits.max_chars plus 4x the messages)")


def size_of(obj: Any, cap: int) -> int:
    """About how many characters ``str(obj)`` has, counting shared references each time they
    print; stops counting once past ``cap`` (so it costs at most about ``cap`` steps)."""
    total, stack = 0, [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, str):
            total += len(o)
        elif isinstance(o, (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)):
            total += 2 + 2 * len(o)
            if total <= cap:
                stack.extend(o)
        elif isinstance(o, dict):
            total += 2 + 4 * len(o)
            if total <= cap:
                stack.extend(o.keys())
                stack.extend(o.values())
        elif isinstance(o, Namespace):
            attrs = object.__getattribute__(o, "_Namespace__attrs")
            total += 16 + 4 * len(attrs)
            if total <= cap:
                stack.extend(attrs.keys())
                stack.extend(attrs.values())
        elif isinstance(o, int):
            total += 1 + o.bit_length() // 3
        elif isinstance(o, bytes):
            total += 3 + 4 * len(o)
        else:
            total += 16                      # a float, None, Undefined, a macro, a generator
        if total > cap:
            return total
    return total


def _built(n: int) -> None:
    """Count ``n`` more characters or items built by this render."""
    b = _BUDGET.get()
    if b is not None:
        b.built_left -= n
        if b.built_left < 0:
            total = b.size_cap * b.limits.max_total_factor
            raise ConfigError(f"chat template: built more than {total:,} characters and items "
                              "in all (TemplateLimits.max_total_factor times the size limit)")


def _shallow(value: Any) -> int:
    """What building ``value`` allocated itself (its parts were counted when they were built)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return len(value)
    return 0


def _check(value: Any, what: str) -> Any:
    """``value`` (just built) within the size limit, counted in the render's volume."""
    cap = _cap()
    n = size_of(value, cap)
    if n > cap:
        raise _too_big(what, n, cap)
    _built(_shallow(value))
    return value


# --- operators -----------------------------------------------------------------------------
_SEQ = (str, list, tuple)


def _check_binop(op: str, a: Any, b: Any) -> None:
    cap = _cap()
    if op == "*":
        seq, n = (a, b) if isinstance(a, _SEQ) else (b, a)
        if isinstance(seq, _SEQ) and isinstance(n, int):
            total = size_of(seq, cap) * max(n, 0)
            if total > cap:
                raise _too_big(f"{type(seq).__name__} * {n}", total, cap)
            _built(_shallow(seq) * max(n, 0))
        elif isinstance(a, int) and isinstance(b, int):
            _check_bits(a.bit_length() + b.bit_length(), "an integer product")
    elif op == "**":
        if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
            _check_bits(abs(a).bit_length() * b, f"{a} ** {b}")
    elif op == "+":
        if isinstance(a, _SEQ) and isinstance(b, _SEQ):
            total = size_of(a, cap) + size_of(b, cap)
            if total > cap:
                raise _too_big("a concatenation", total, cap)
            _built(_shallow(a) + _shallow(b))
    elif op == "%" and isinstance(a, str):
        _check_percent(a, b)


def _check_bits(bits: int, what: str) -> None:
    limit = _int_bits()
    if bits > limit:
        raise ConfigError(f"chat template: {what} would have about {bits:,} bits, over the limit "
                          f"of {limit:,} (TemplateLimits.max_int_bits)")


_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _check_percent(fmt: str, args: Any) -> None:
    """``fmt % args`` (the ``%`` operator, the ``format`` filter): widths and precisions must be
    literal and small, and the result within the size limit."""
    fields, widths = 0, []
    for m in _PERCENT.finditer(fmt):
        if m.group(3) == "%":
            continue
        fields += 1
        for g in (m.group(1), m.group(2)):
            if g == "*":
                raise ConfigError("chat template: a '*' width or precision in a % format is "
                                  "not allowed (the size must be visible)")
            if g:
                widths.append(int(g))
    values = list(args.values()) if isinstance(args, dict) else (
        list(args) if isinstance(args, tuple) else [args])
    _check_formatted("a % format", fmt, fields, widths, values)


def _check_str_format(fmt: str, args: tuple, kwargs: dict) -> None:
    """``fmt.format(...)``: as ``_check_percent``, for ``{}`` fields."""
    fields, widths = 0, []
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise ConfigError("chat template: a nested field in a format spec is not allowed "
                              "(the size must be visible)")
        widths += map(int, re.findall(r"\d+", spec or ""))
    values = [*args, *kwargs.values()]
    if len(args) == 1 and isinstance(args[0], dict) and not kwargs:   # format_map
        values += list(args[0].values())
    _check_formatted("a str.format", fmt, fields, widths, values)


def _check_formatted(what: str, fmt: str, fields: int, widths: list[int], values: list) -> None:
    """A format's result, at most ``fmt`` plus its widths plus each field as big as the
    biggest value, within the size limit (and counted in the render's volume)."""
    cap = _cap()
    for width in widths:
        if width > cap:
            raise _too_big(f"{what} width of {width}", width, cap)
    biggest = max((size_of(v, cap) for v in values), default=0)
    total = len(fmt) + sum(widths) + fields * biggest
    if total > cap:
        raise _too_big(f"{what}'s result", total, cap)
    _built(total)


# --- str methods ---------------------------------------------------------------------------
def _check_str_method(name: str, s: str, args: tuple, kwargs: dict) -> None:
    """Pre-check the ``str`` methods whose result can be much larger than their inputs."""
    cap = _cap()
    total = len(s)
    if name in ("ljust", "rjust", "center", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int):
            total = max(total, width)
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tab, int):
            total = len(s) + s.count("\t") * max(tab, 0)
    elif name == "replace" and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
        old, new = args[0], args[1]
        hits = len(s) + 1 if old == "" else s.count(old)
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        total = len(s) + hits * max(len(new) - len(old), 0)
    elif name == "join" and args:
        items = args[0]
        n = len(items) if hasattr(items, "__len__") else 0
        total = size_of(items, cap) + max(n - 1, 0) * len(s)
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        total = len(s) * max(longest, 1)
    if total > cap:
        raise _too_big(f"str.{name}(...)", total, cap)
    _built(total)


_STR_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join",
                          "translate"})


# --- filters -------------------------------------------------------------------------------
def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _pre_center(value: Any, *args: Any, **kwargs: Any) -> None:
    width = _arg(args, kwargs, 0, "width", 80)
    if isinstance(width, int) and width > _cap():
        raise _too_big(f"center({width})", width, _cap())


def _pre_indent(s: Any, *args: Any, **kwargs: Any) -> None:
    width = _arg(args, kwargs, 0, "width", 4)
    w = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    text = s if isinstance(s, str) else ""
    total = len(text) + (text.count("\n") + 1) * max(w, 0)
    if total > _cap():
        raise _too_big(f"indent({w})", total, _cap())


def _pre_format(value: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str):
        _check_percent(value, kwargs or args)


def _pre_replace(s: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(s, str):
        old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
        count = _arg(args, kwargs, 2, "count", None)
        if isinstance(old, str) and isinstance(new, str):
            _check_str_method("replace", s, (old, new, -1 if count is None else count), {})


def _pre_join(value: Any, *args: Any, **kwargs: Any) -> None:
    d = _arg(args, kwargs, 0, "d", "")
    cap = _cap()
    n = len(value) if hasattr(value, "__len__") else 0
    total = size_of(value, cap) + max(n - 1, 0) * (len(d) if isinstance(d, str) else 16)
    if total > cap:
        raise _too_big("a join", total, cap)


def _pre_count(key: str, i: int, default: Any) -> Any:
    def pre(value: Any, *args: Any, **kwargs: Any) -> None:
        n = _arg(args, kwargs, i, key, default)
        if isinstance(n, int) and n > _cap():
            raise _too_big(f"{key}={n}", n, _cap())
    return pre


def _pre_sum(iterable: Any, *args: Any, **kwargs: Any) -> None:
    start = _arg(args, kwargs, 1, "start", 0)
    if not isinstance(start, (int, float)):        # concatenating sequences: size it first
        cap = _cap()
        total = size_of(start, cap) + size_of(iterable, cap)
        if total > cap:
            raise _too_big("a sum of sequences", total, cap)


def _pre_tojson(value: Any, *args: Any, **kwargs: Any) -> None:
    indent = _arg(args, kwargs, 0, "indent", None)
    w = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    if w > 64:
        raise ConfigError(f"chat template: tojson indent {w} is over 64")


def _pre_wordwrap(s: Any, *args: Any, **kwargs: Any) -> None:
    wrap = _arg(args, kwargs, 2, "wrapstring", None)
    if isinstance(s, str) and isinstance(wrap, str):
        total = len(s) + (len(s) + 1) * len(wrap)
        if total > _cap():
            raise _too_big("wordwrap's result", total, _cap())


_PRECHECKS = {
    "center": _pre_center, "indent": _pre_indent, "format": _pre_format,
    "replace": _pre_replace, "join": _pre_join, "sum": _pre_sum, "tojson": _pre_tojson,
    "wordwrap": _pre_wordwrap,
    "batch": _pre_count("linecount", 0, 1), "slice": _pre_count("slices", 0, 1),
    "truncate": _pre_count("length", 0, 255),
}
_REMOVED_FILTERS = ("urlize",)


def _bounded_filter(name: str, f: Any) -> Any:
    """``f`` with its size pre-check (if any), a step, and its result checked."""
    pre = _PRECHECKS.get(name)
    skip = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0

    @wraps(f)   # keeps jinja_pass_arg (context / eval-context / environment first)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        if pre is not None and len(args) > skip:
            pre(*args[skip:], **kwargs)
        return _check(f(*args, **kwargs), f"the result of the {name} filter")

    return bounded


@pass_context   # not folded at compile time: it must count at run time
def _iter_filter(context: Any, iterable: Any) -> Any:
    for item in iterable:
        _tick()
        yield item


@pass_context
def _out_filter(context: Any, value: Any) -> Any:
    b = _BUDGET.get()
    if b is not None:
        n = size_of(value, b.out_left)
        if n > b.out_left:
            raise ConfigError(f"chat template: its output passed {b.size_cap:,} characters "
                              "(TemplateLimits.max_chars plus 4x the messages)")
        b.out_left -= n
    return value


def _concat_filter(values: list) -> str:
    cap = _cap()
    total = 0
    for v in values:
        total += size_of(v, cap)
        if total > cap:
            raise _too_big("a ~ concatenation", total, cap)
    _built(total)
    return "".join(str(v) for v in values)


def _value_filter(value: Any) -> Any:
    return _check(value, "a literal list, tuple or dict, or a slice")


class _Instrument(NodeTransformer):
    """Routes loops, output, ``~`` and literal containers through the checks above."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = _filter(node.iter, "_qorus_iter")
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        node = self.generic_visit(node)
        node.nodes = [_filter(n, "_qorus_out") for n in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return _filter(nodes.List(node.nodes, lineno=node.lineno), "_qorus_concat")

    def _literal(self, node: nodes.Node) -> nodes.Node:
        node = self.generic_visit(node)
        return _filter(node, "_qorus_value")

    visit_List = visit_Dict = _literal

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        node = self.generic_visit(node)    # a slice (compiled as plain Python) copies
        if isinstance(node.arg, nodes.Slice) and node.ctx == "load":
            return _filter(node, "_qorus_value")
        return node

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        return self._literal(node) if node.ctx == "load" else self.generic_visit(node)


def _filter(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` plus the bounds in the module doc. Compile with
    ``compile_template``; render inside ``budget(...)``."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in _REMOVED_FILTERS:
            self.filters.pop(name, None)
        self.globals.pop("lipsum", None)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters.update(_qorus_iter=_iter_filter, _qorus_out=_out_filter,
                            _qorus_concat=_concat_filter, _qorus_value=_value_filter)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """A binary operator, refused when its result would pass the size limits (a string repeated a
        billion times)."""
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """A call from the template, counted against the step limit; its result checked against the size
        limits."""
        _tick()
        owner = getattr(__obj, "__self__", None)     # str methods, Markup's wrappers too
        if isinstance(owner, str) and getattr(__obj, "__name__", None) in _STR_METHODS:
            _check_str_method(__obj.__name__, owner, args, kwargs)
        out = super().call(__context, __obj, *args, **kwargs)
        if isinstance(out, (str, bytes, list, tuple, dict, set, frozenset, Namespace)):
            _check(out, "a call's result")
        return out

    def wrap_str_format(self, value: Any) -> Any:
        """``str.format`` from a template, bounded like every other call."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt = value.__self__

        @wraps(wrapper)
        def bounded(*args: Any, **kwargs: Any) -> str:
            _check_str_format(fmt, args, kwargs)
            return wrapper(*args, **kwargs)

        return bounded

    def compile_template(self, source: str) -> Any:
        """Parse ``source``, instrument it, compile it (a Jinja ``Template``)."""
        limit = DEFAULT_LIMITS.max_template_chars
        if len(source) > limit:
            raise ConfigError(f"chat template: {len(source):,} characters, over the limit of "
                              f"{limit:,} (TemplateLimits.max_template_chars)")
        ast = _Instrument().visit(self.parse(source))
        ast.set_environment(self)
        return self.from_string(ast)


@contextmanager
def budget(limits: TemplateLimits, input_chars: int) -> Iterator[_Budget]:
    """``with budget(limits, input_chars) as b:`` bounds the renders in the block (in this
    thread or task only: the budget is a context variable)."""
    b = _Budget(limits, input_chars)
    token = _BUDGET.set(b)
    try:
        yield b
    finally:
        _BUDGET.reset(token)
