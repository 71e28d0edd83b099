"""The methods of both kernel sets, generated from the declarations (spec.py).

Each method is Python source built from its declaration and compiled once, at import, so a
call runs exactly what a hand-written method would, and no more:

NumPy set::

    def relu(self, x, y):
        try:
            if not (x.size == y.size):      # a Rule, inlined (a check function: one call)
                _check('relu', x, y)        # ... which raises the declared KernelError
            return _impl(self, x, y)        # the declaration's NumPy implementation
        except _ARG_ERRORS as exc:          # an argument of the wrong kind: KernelError
            _diagnose(exc, x, y)            # naming it (args.py); else the error stands
            raise

C set::

    def relu(self, x, y):
        try:
            if x.dtype != "f32" or y.dtype != "f32":   # the declared dtypes, and c_when
                return self.fallback.relu(x, y)
            n = y.size
            if not (x.size == y.size):
                _check('relu', x, y)
            rc = self._qr_relu_f32(x.p, y.wp, n)       # bound at load, typed from the table
            if rc:
                raise _error('relu', rc, x, y)
        except _ARG_ERRORS as exc:
            _diagnose(exc, x, y)
            raise

(a ``try`` costs nothing until something raises). The source is registered with
``linecache``, so a traceback shows the generated line. The bound C functions are attributes
of the kernel-set instance (``_<symbol>``, or the dict ``_v_<kernel>`` of a kernel with
variants), which is what ``replay.record`` wraps.
"""

from __future__ import annotations

import linecache
from collections.abc import Callable

from .args import ARG_ERRORS, diagnosis
from .spec import DECLARED, Inline, Kernel, Rule, c_error, sizes_error

__all__ = ["check_function", "numpy_method", "c_method", "install", "source"]

_CHECKS: dict[Kernel, Callable] = {}
_SOURCES: dict[tuple[str, str], str] = {}


def _compile(src: str, name: str, filename: str, env: dict) -> Callable:
    code = compile(src, filename, "exec")
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    exec(code, env)
    return env[name]


def _check_lines(k: Kernel, dims: bool) -> list[str]:
    """The statements that check the arguments, binding the dims if ``dims`` (or if an
    inlined condition reads them)."""
    args = ", ".join(k.params)
    if isinstance(k.check, Rule):
        cond, exprs, _ = k.check.parts(k)
        bind = dims or k.check.cond_reads_dims
        return [f"{d} = {e}" for d, e in zip(k.dims, exprs) if bind] + \
            [f"if not ({cond}):", f"    _check({k.full_name!r}, {args})"]
    call = f"_check({k.full_name!r}, {args})"
    return [f"{', '.join(k.dims)} = {call}" if k.dims and dims else call]


def check_function(k: Kernel) -> Callable:
    """The check of ``k`` as a function ``(kernel, *params) -> dims``: the declared one, or
    the one compiled from its Rule."""
    fn = _CHECKS.get(k)
    if fn is not None:
        return fn
    if not isinstance(k.check, Rule):
        fn = k.check
    else:
        cond, dims, raise_src = k.check.parts(k)
        ret = ", ".join(k.dims) if k.dims else "None"
        body = [f"{d} = {e}" for d, e in zip(k.dims, dims)]
        body += [f"if not ({cond}):", f"    {raise_src}", f"return {ret}"]
        src = f"def check_{k.attr}(kernel, {', '.join(k.params)}):\n" + \
            "".join(f"    {line}\n" for line in body)
        fn = _compile(src, f"check_{k.attr}", f"<check of kernel {k.full_name}>",
                      {"__name__": "qorus_core.kernels.decl.checks", "_sizes": sizes_error,
                       "_full": k.check.check if isinstance(k.check, Inline) else None})
    _CHECKS[k] = fn
    return fn


def _finish(fn: Callable, k: Kernel, owner: str) -> Callable:
    fn.__defaults__ = k.numpy.__defaults__
    fn.__kwdefaults__ = k.numpy.__kwdefaults__
    fn.__annotations__ = dict(k.numpy.__annotations__)
    fn.__doc__ = k.doc
    fn.__qualname__ = f"{owner}.{k.full_name}"
    return fn


def _method(k: Kernel, which: str, body: list[str], env: dict) -> Callable:
    """Compile ``body`` as the method ``k.name`` of the ``which`` set, inside the ``try``
    whose ``except`` names an argument of the wrong kind (see the module docs)."""
    args = ", ".join(k.params)
    lines = ["try:", *(f"    {s}" for s in body), "except _ARG_ERRORS as exc:",
             f"    _diagnose(exc, {args})", "    raise"]
    src = f"def {k.name}(self, {args}):\n" + "".join(f"    {s}\n" for s in lines)
    _SOURCES[(which, k.full_name)] = src
    owner = {"numpy": "NumpyKernels", "c": "CKernels"}[which]
    env = {"__name__": f"qorus_core.kernels.{which}", "_ARG_ERRORS": ARG_ERRORS,
           "_diagnose": diagnosis(k), "_kernel_name": k.full_name, **env}
    fn = _compile(src, k.name, f"<kernel {k.full_name} ({owner})>", env)
    return _finish(fn, k, owner)


def numpy_method(k: Kernel) -> Callable:
    """The NumPy set's method: the check, then the implementation. A float parameter that is
    None is refused first (NumPy would take it as NaN; ctypes refuses it on the C set)."""
    floats = [p for p in k.scalars if k.numpy.__annotations__.get(p) == "float"]
    body = [f"if {' or '.join(f'{p} is None' for p in floats)}:",
            "    raise TypeError('None for a float')"] if floats else []
    body += _check_lines(k, dims=False) + [f"return _impl(self, {', '.join(k.params)})"]
    return _method(k, "numpy", body, {"_check": check_function(k), "_impl": k.numpy})


def _c_arg(k: Kernel, expr: str, ctype: str) -> str:
    if expr in {o.name for o in k.operands}:
        o = k.operand(expr)
        ptr = f"{o.name}.wp" if o.written else f"{o.name}.p"
        return f"(None if {o.name} is None else {ptr})" if o.optional else ptr
    if ctype == "bool":
        return f"(1 if {expr} else 0)"
    return expr if expr.isidentifier() else f"({expr})"


def c_method(k: Kernel, native: bool = True) -> Callable:
    """The C set's method: dtypes (else the NumPy fallback), the check, the C call and its
    return code. ``native=False`` (a plugin whose library is not built): the NumPy set's."""
    if k.c_impl is not None:                     # hand-written: called inside the try
        return _method(k, "c", [f"return _impl(self, {', '.join(k.params)})"],
                       {"_impl": k.c_impl})
    args = ", ".join(k.params)
    if not k.c or not native:                    # declared without C: NumPy serves it
        return _method(k, "c", [f"return self.fallback.{k.full_name}({args})"], {})
    declines = []
    for o in k.operands:
        if o.tensor and o.dtype != "any":
            t = f'{o.name}.dtype != "{o.dtype}"'
            declines.append(f"({o.name} is not None and {t})" if o.optional else t)
    if k.c_when:
        declines.append(f"not ({k.c_when})")
    body = []
    if declines:
        body += [f"if {' or '.join(declines)}:",
                 f"    return self.fallback.{k.full_name}({args})"]
    body += _check_lines(k, dims=True)
    sym = next(iter(k.c.values()))               # every variant takes the same arguments
    cargs = ", ".join(_c_arg(k, a.expr, a.ctype) for a in sym.args)
    fn = f"self._v_{k.attr}[{k.variant}]" if k.variant else f"self._{sym.symbol}"
    if sym.restype == "status":
        body += [f"rc = {fn}({cargs})", "if rc:", f"    raise _error({k.full_name!r}, rc, {args})"]
    else:
        body += [f"v = {fn}({cargs})", "if v < 0:",
                 f"    raise _error({k.full_name!r}, int(v), {args})", "return v"]
    return _method(k, "c", body, {"_check": check_function(k), "_error": k.on_error or c_error})


def source(which: str, name: str) -> str | None:
    """The generated source of a method ("numpy" or "c"), for reading and tests."""
    return _SOURCES.get((which, name))


def install(cls: type, which: str) -> None:
    """Set the generated method of every declared kernel on ``cls``."""
    make = numpy_method if which == "numpy" else c_method
    for k in DECLARED.values():
        setattr(cls, k.name, make(k))
