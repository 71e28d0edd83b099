"""The kernel table as a typed interface: ``kernels/kernel_set.py``, rendered from it.

Both kernel sets get their methods at import (gen.py), which editors and type checkers
cannot see. ``render()`` writes every kernel's signature and docstring, as declared, into a
``typing.Protocol`` (``KernelSet``, what ``get_kernels`` returns) that both sets name as a
base for type checkers only. The file is committed and a test holds it equal to ``render()``;
after changing a declaration, rewrite it with ``python -m qorus_core.kernels.decl.typed``.
"""

from __future__ import annotations

import inspect
import os
import textwrap
from collections.abc import Callable

from ..numpy_quant import WeightDispatch
from . import TABLE

__all__ = ["PATH", "render"]

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernel_set.py")

_HEAD = '''"""``KernelSet``: the methods both kernel sets have, typed (generated: do not edit).

Rendered from the kernel table by ``python -m qorus_core.kernels.decl.typed`` (decl/typed.py);
tests/test_kernel_table.py checks it is current. The sets make these methods at import
(decl/gen.py), so this is what editors and type checkers see of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..tensor import Tensor
from .numpy_quant import QWeight

__all__ = ["KernelSet"]

Pair = tuple[int, int]


class KernelSet(Protocol):
    """What ``get_kernels`` returns (``NumpyKernels`` or ``CKernels``): every kernel of the
    table, the weight dispatchers and the NumPy code's scratch arrays."""

    name: str
'''


def _method(name: str, fn: Callable, doc: str) -> str:
    notes, sig = fn.__annotations__, inspect.signature(fn)
    params = []
    for p in sig.parameters.values():
        text = p.name + (f": {notes[p.name]}" if p.name in notes else "")
        if p.default is inspect.Parameter.empty:
            pass
        elif isinstance(p.default, type):          # a NumPy scalar type: np.float32
            text += f" = np.{p.default.__name__}"
        else:
            text += f" = {p.default!r}"
        params.append(text)
    head = f"    def {name}({', '.join(params)}) -> {notes.get('return', 'None')}:"
    if len(head) > 100:                  # one line of parameters after another
        lines = [""]
        for text in params:
            if lines[-1] and len(lines[-1]) + len(text) > 88:
                lines.append("")
            lines[-1] += text + ", "
        head = f"    def {name}(\n" + "".join(f"        {line.rstrip()}\n" for line in lines) + \
            f"    ) -> {notes.get('return', 'None')}:"
    body = textwrap.indent(f'"""{doc}\n"""' if "\n" in doc else f'"""{doc}"""', " " * 8)
    return f"{head}\n{body}\n"


def render() -> str:
    """The source of ``kernel_set.py``."""
    methods = [_method(k.name, k.numpy, k.doc) for k in TABLE]
    for n in ("linear", "prompt_linear", "embedding_rows", "scratch"):
        fn = getattr(WeightDispatch, n)
        methods.append(_method(n, fn, inspect.cleandoc(fn.__doc__)))
    return _HEAD + "".join(f"\n{m}" for m in methods)


if __name__ == "__main__":
    with open(PATH, "w", encoding="utf-8") as fh:
        fh.write(render())
    print(f"wrote {PATH}")
