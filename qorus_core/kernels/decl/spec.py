"""The vocabulary of the kernel table: one ``Kernel`` declaration per kernel.

A declaration is the ``@kernel(...)`` decorator on the kernel's NumPy implementation (whose
docstring is the kernel's, for both sets). It says, once:

- ``family`` and ``operands``: the tensor arguments with their roles and dtypes, in a short
  spec (``"x ids:i32 y:out dx:out? dgamma:inout"``, see ``parse_operands``); every other
  parameter of the implementation is a scalar;
- ``check``: the one argument check, run by both kernel sets before any work, raising
  ``KernelError`` naming the kernel and the shapes; it returns the values the C call needs
  (``dims``). A ``Rule`` (``same_size``, ``same_rows``), a ``Fit`` (operands shaped by
  others) or an ``Inline`` (expressions) is a check simple enough to be inlined into the
  generated methods, so the cheapest kernels pay no extra call for it;
- ``c``: the C symbol and its arguments as a call (``"qr_relu_f32(x, y, n)"``, see
  ``parse_call``), or one per variant (``variant``: an expression picking the key, e.g. the
  weight's qtype); the ctypes argtypes are derived from it;
- what the tests derive from: ``examples`` (operand shapes and scalar values), ``tol``, extra
  ``bad`` argument cases; and ``replay`` (the C symbols ``csrc/replay.c`` can run).

``gen.py`` turns declarations into the methods of both kernel sets; ``c.py`` binds the symbols.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ...errors import KernelError

__all__ = ["Kernel", "Operand", "CArg", "CSym", "Rule", "Fit", "Inline", "kernel", "same_size",
           "same_rows", "parse_operands", "parse_call", "sizes_error", "c_error", "DECLARED", "EXACT",
           "FLOAT", "declare_kernel"]

ROLES = ("in", "out", "inout")
DTYPES = ("f32", "i32", "any", "qweight", "weight", "bytes")
#: C argument types of a call spec; ``bool`` is passed as a C int (1 or 0)
C_TYPES = ("ptr", "i64", "int", "u32", "uint", "f32", "f64", "bool")
RESTYPES = ("status", "f64", "i64")
EXACT = (0.0, 0.0)            # tol: bit-identical on both sets
FLOAT = (1e-5, 1e-6)          # tol: rtol, atol where an exp or a summation order differs
#: the SIMD family (csrc/cpu.c) a kernel family's C code belongs to, unless a kernel says
SIMD_OF = {"dense": "vec", "elementwise": "vec", "act": "vec", "norm": "vec", "loss": "vec",
           "optim": "vec", "fused": "fused", "conv": "conv", "rnn": "rnn", "quant": "quant",
           "strided": "strided"}   # bmm says "gemm"
_C_ERRORS = {-1: "invalid argument", -2: "index out of range", -3: "out of memory"}


# ----------------------------------------------------------------------------- operands
@dataclass(frozen=True)
class Operand:
    """A tensor argument: ``role`` in / out / inout (out and inout are written, through
    ``Tensor.w`` / ``.wp``), ``dtype`` the one its C symbol takes (``any``: f32 or i32;
    ``qweight``: a QWeight; ``weight``: a Tensor or a QWeight; ``bytes``: a uint8 buffer),
    ``optional`` (None allowed: NULL in C), ``seq`` (a list of them), ``free`` (its shape is
    not tied to the other operands', so the derived bad-argument tests leave it alone)."""

    name: str
    role: str = "in"
    dtype: str = "f32"
    optional: bool = False
    seq: bool = False
    free: bool = False

    @property
    def written(self) -> bool:
        """Whether the kernel writes the operand (role ``out`` or ``inout``)."""
        return self.role != "in"

    @property
    def tensor(self) -> bool:
        """A Tensor (not a QWeight, a buffer or a list): has .p, .dtype, .shape."""
        return self.dtype in ("f32", "i32", "any") and not self.seq


def parse_operands(spec: str) -> tuple[Operand, ...]:
    """``"name[:word]...[?][*]"`` separated by spaces; words: a role (in, out, inout), a
    dtype (f32, i32, any, qweight, weight, bytes) or ``free``; ``?`` optional, ``*`` a list.
    Defaults: in, f32."""
    out = []
    for tok in spec.split():
        opt, seq = tok.endswith("?"), False
        tok = tok.rstrip("?")
        if tok.endswith("*"):
            seq, tok = True, tok[:-1]
        name, *words = tok.split(":")
        kw: dict = {"optional": opt, "seq": seq}
        for w in words:
            if w in ROLES:
                kw["role"] = w
            elif w in DTYPES:
                kw["dtype"] = w
            elif w == "free":
                kw["free"] = True
            else:
                raise ValueError(f"operand {tok!r}: unknown word {w!r}")
        if not name.isidentifier():
            raise ValueError(f"operand {tok!r}: {name!r} is not a name")
        out.append(Operand(name, **kw))
    return tuple(out)


# ----------------------------------------------------------------------------- C calls
@dataclass(frozen=True)
class CArg:
    """One argument of a C call: ``expr`` (an operand, a scalar parameter, a value the check
    returns, or a Python expression over them) and its C type."""

    expr: str
    ctype: str


@dataclass(frozen=True)
class CSym:
    """A C symbol, its arguments and what it returns (``status``: 0 or a QR_E* code;
    ``f64`` / ``i64``: a value, negative for an error)."""

    symbol: str
    args: tuple[CArg, ...]
    restype: str = "status"

    @property
    def signature(self) -> tuple[str, tuple[str, ...]]:
        """(restype, argument C types): what ctypes is told, and what must agree where two
        declarations share a symbol."""
        return self.restype, tuple("int" if a.ctype == "bool" else a.ctype for a in self.args)


def _split_args(body: str) -> list[str]:
    """The arguments of a call spec: split at the commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in body:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + [cur.strip()] if cur.strip() else out


_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*(?:->\s*(\w+))?\s*$", re.S)


def parse_call(text: str, operands: Sequence[Operand], params: Sequence[str],
               dims: Sequence[str]) -> CSym:
    """``"qr_NAME(arg, arg:type, expr:type) -> restype"``: an operand is passed as its
    address (``ptr``), a dim (a value the check returns) as ``i64`` unless typed; a scalar
    parameter and an expression must say their type."""
    m = _CALL.match(text)
    if not m:
        raise ValueError(f"C call {text!r}: expected 'qr_name(arg, ...)'")
    symbol, body, restype = m.group(1), m.group(2), m.group(3) or "status"
    if restype not in RESTYPES:
        raise ValueError(f"C call {text!r}: restype {restype!r} is not one of {RESTYPES}")
    names = {o.name for o in operands}
    args = []
    for raw in _split_args(body):
        expr, _, ctype = raw.rpartition(":") if ":" in raw else (raw, "", "")
        expr = expr.strip() or raw
        if ctype and ctype not in C_TYPES:
            raise ValueError(f"C call {symbol}: argument {raw!r} has an unknown type")
        if not ctype:
            if expr in names:
                ctype = "ptr"
            elif expr in dims:
                ctype = "i64"
            else:
                raise ValueError(f"C call {symbol}: argument {raw!r} needs a type (it is not "
                                 "an operand or a dim)")
        elif expr in names and ctype != "ptr":
            raise ValueError(f"C call {symbol}: operand {expr} must be passed as a ptr")
        args.append(CArg(expr, ctype))
    return CSym(symbol, tuple(args), restype)


# ----------------------------------------------------------------------------- checks
def sizes_error(kernel: str, what: str, **tensors) -> KernelError:
    """KernelError naming the kernel and every operand's shape (None operands left out)."""
    shapes = ", ".join(f"{k} {t.shape}" for k, t in tensors.items() if t is not None)
    return KernelError(f"{kernel}: {shapes} {what}")


def c_error(kernel: str, rc: int, *args) -> KernelError:
    """The default error for a C kernel's nonzero return code (after the checks passed)."""
    return KernelError(f"{kernel}: C kernel returned {rc} ({_C_ERRORS.get(rc, 'error')})")


class Rule:
    """A check simple enough to inline: every Tensor operand compared with a reference one
    (``cond`` with ``{t}`` the operand, ``{ref}`` the reference), returning ``dims``
    computed from the reference. ``parts`` gives the source of the condition, of the
    returned values and of the raise."""

    #: whether the condition reads the dims (then they are bound before it, on every set)
    cond_reads_dims = False

    def __init__(self, cond: str, dims: dict[str, str], what: str) -> None:
        self.cond, self.dims, self.what = cond, dims, what

    def parts(self, k: Kernel) -> tuple[str, list[str], str]:
        """(condition, dims, raise statement): the source the generated method inlines for this
        check."""
        ts = [o for o in k.operands if o.tensor]
        ref = next((o for o in reversed(ts) if not o.optional), None)
        if ref is None:
            raise ValueError(f"{k.name}: rule {self.what!r} needs a required tensor operand")
        terms = [_guard(o, self.cond.format(t=o.name, ref=ref.name)) for o in ts if o is not ref]
        dims = [e.format(ref=ref.name) for e in self.dims.values()]
        return " and ".join(terms) or "True", dims, \
            f"raise _sizes(kernel, {self.what!r}, {_shapes(k)})"


class Fit(Rule):
    """A check of operands shaped by others, inlined like a Rule: ``dims`` {name: expression
    over the parameters}, computed first; then each operand named in ``fits`` ({"names":
    condition with ``{t}`` the operand, over the parameters and the dims}; an optional one
    may be None) must satisfy its condition, else ``sizes_error`` with ``what`` (formatted
    with the dims) and every operand's shape."""

    cond_reads_dims = True

    def __init__(self, dims: dict[str, str], fits: dict[str, str], what: str) -> None:
        self.dims, self.fits, self.what = dims, fits, what

    def parts(self, k: Kernel) -> tuple[str, list[str], str]:
        """(condition, dims, raise statement) of the fit check, inlined by the generated method."""
        terms = [_guard(k.operand(name), cond.format(t=name))
                 for names, cond in self.fits.items() for name in names.split()]
        what = f"{self.what!r}.format({', '.join(f'{d}={d}' for d in self.dims)})"
        return " and ".join(terms) or "True", list(self.dims.values()), \
            f"raise _sizes(kernel, {what}, {_shapes(k)})"


class Inline(Rule):
    """A check written as expressions, inlined like a Rule: ``dims`` {name: expression over
    the parameters}, computed first, then ``cond`` over the parameters and the dims; when it
    fails, ``check(kernel, *params)``, the same check as a function, raises the KernelError
    (its message, off the fast path)."""

    cond_reads_dims = True

    def __init__(self, dims: dict[str, str], cond: str, check: Callable) -> None:
        self.dims, self.cond, self.check = dims, cond, check

    def parts(self, k: Kernel) -> tuple[str, list[str], str]:
        """(condition, dims, raise statement): the inline condition, falling back to the full check to
        raise."""
        return self.cond, list(self.dims.values()), \
            (f"_full(kernel, {', '.join(k.params)}); raise AssertionError(f'{{kernel}}: its "
             f"inline check and {self.check.__name__} disagree')")


def _guard(o: Operand, cond: str) -> str:
    """``cond`` on operand ``o``, true where ``o`` is optional and None."""
    return f"({o.name} is None or {cond})" if o.optional else cond


def _shapes(k: Kernel) -> str:
    """The keyword arguments naming every tensor operand, for ``sizes_error``."""
    return ", ".join(f"{o.name}={o.name}" for o in k.operands if o.tensor)


same_size = Rule("{t}.size == {ref}.size", {"n": "{ref}.size"}, "must have the same size")
same_rows = Rule("{t}.size == {ref}.size and {t}.cols == {ref}.cols",
                 {"rows": "{ref}.rows", "n": "{ref}.cols"},
                 "must have the same rows and last dimension")


# ----------------------------------------------------------------------------- kernels
@dataclass(eq=False)
class Kernel:
    """One kernel: see the module docstring. Made by ``@kernel(...)``."""

    name: str
    family: str
    numpy: Callable
    operands: tuple[Operand, ...]
    check: Callable | Rule
    dims: tuple[str, ...] = ()
    c: dict = field(default_factory=dict)     # variant key (None: the only one) -> CSym
    variant: str | None = None
    c_when: str | None = None
    c_impl: Callable | None = None
    on_error: Callable | None = None
    replay: bool = False
    simd: str = "vec"
    examples: tuple[dict, ...] = ()
    tol: tuple[float, float] = FLOAT
    bad: tuple[tuple[str, dict], ...] = ()
    params: tuple[str, ...] = ()
    doc: str = ""
    #: the plugin namespace of a kernel a plugin registers (``qorus_register_kernels``): its
    #: methods are ``k.<namespace>.<name>`` on both sets; None for core's own
    namespace: str | None = None

    @property
    def full_name(self) -> str:
        """``name``, or ``namespace.name`` for a plugin's kernel: what errors and listings say."""
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    @property
    def attr(self) -> str:
        """An identifier unique across core and plugins (``tpl__prelu``), for generated names."""
        return f"{self.namespace}__{self.name}" if self.namespace else self.name

    @property
    def symbols(self) -> tuple[CSym, ...]:
        """The C symbols, one per variant."""
        return tuple(self.c.values())

    @property
    def scalars(self) -> tuple[str, ...]:
        """The parameters that are not tensor operands, in order."""
        names = {o.name for o in self.operands}
        return tuple(p for p in self.params if p not in names)

    def operand(self, name: str) -> Operand:
        """The operand named ``name`` (ValueError if none)."""
        for o in self.operands:
            if o.name == name:
                return o
        raise ValueError(f"{self.name}: no operand {name!r} in {[o.name for o in self.operands]}")

    def c_method(self, fn: Callable) -> Kernel:
        """Decorator: a hand-written C method for a kernel the generated one cannot express
        (it must call ``check`` itself; the derived tests hold it to the NumPy set's errors)."""
        if fn.__name__ != self.name:
            raise ValueError(f"{self.name}: its C method must be named {self.name}")
        self.c_impl = fn
        return self

    def __repr__(self) -> str:
        syms = ", ".join(s.symbol for s in self.symbols) or "-"
        return f"Kernel({self.full_name!r}, {self.family!r}, C: {syms})"


#: every declaration, in the order its family module made it (decl/__init__ imports them)
DECLARED: dict[str, Kernel] = {}


def kernel(family: str, operands: str, *, check: Callable | Rule, dims: str = "",
           c: str | Mapping[str, str] | None = None, variant: str | None = None,
           c_when: str | None = None, on_error: Callable | None = None, replay: bool = False,
           simd: str | None = None, examples: Sequence[dict] = (), tol=FLOAT,
           bad: Sequence[tuple[str, dict]] = (),
           register: bool = True) -> Callable[[Callable], Kernel]:
    """Declare the kernel whose NumPy implementation this decorates (see the module docs).
    Returns the ``Kernel`` (its name: the function's), added to ``DECLARED`` unless
    ``register`` is False (a plugin's kernels, registered through ``qorus_register_kernels``;
    tests)."""

    def wrap(fn: Callable) -> Kernel:
        name = fn.__name__
        sig = inspect.signature(fn)
        params = tuple(sig.parameters)[1:]          # after self
        ops = parse_operands(operands)
        unknown = [o.name for o in ops if o.name not in params]
        if unknown:
            raise ValueError(f"{name}: operands {unknown} are not parameters of {params}")
        if register and name in DECLARED:
            raise ValueError(f"kernel {name!r} is declared twice")
        if not (fn.__doc__ or "").strip():
            raise ValueError(f"kernel {name!r} has no docstring")
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"kernel {name!r}: a kernel's name is an identifier, not private")
        k = Kernel(name, family, fn, ops, check, tuple(dims.split()), variant=variant,
                   c_when=c_when, on_error=on_error, replay=replay,
                   simd=simd or SIMD_OF.get(family, "vec"), examples=tuple(examples),
                   tol=tol, bad=tuple(bad), params=params, doc=inspect.cleandoc(fn.__doc__))
        if isinstance(check, Rule):
            k.dims = tuple(check.dims)
            check.parts(k)                           # a check naming an unknown operand fails here
        if set(k.dims) & set(params):
            raise ValueError(f"{name}: dims {sorted(set(k.dims) & set(params))} are parameters")
        calls = {None: c} if isinstance(c, str) else dict(c or {})
        if len(calls) > 1 and variant is None:
            raise ValueError(f"{name}: several C symbols need a variant expression")
        k.c = {key: parse_call(text, ops, params, k.dims) for key, text in calls.items()}
        if register:
            DECLARED[name] = k
        return k

    return wrap


def declare_kernel(family: str, operands: str, **options) -> Callable[[Callable], Kernel]:
    """``@kernel(...)`` for a plugin's kernel: the same declaration, kept out of core's table;
    the plugin registers it in its ``qorus_register_kernels`` hook (kernels/extensions.py)."""
    return kernel(family, operands, register=False, **options)
