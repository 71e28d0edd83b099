"""The kernel table: every kernel declared once, in one module per family.

Importing this package imports each family module, whose ``@kernel`` declarations fill
``TABLE`` (see spec.py for what a declaration holds). Both kernel sets' methods are generated
from it (gen.py), the C symbols bound and checked from it (bind.py), and the tests, the
``qorus kernels`` listing and ``CKernels.native`` derived from it.
"""

from __future__ import annotations

# each family module declares its kernels on import (TABLE lists them in this order)
from . import (  # noqa: F401
    act,
    act_piecewise,
    act_smooth,
    attention,
    conv,
    conv_transpose,
    decode_rows,
    dense,
    elementwise,
    fused,
    glu,
    groupnorm,
    loss,
    norm,
    optim,
    pool_adaptive,
    quant,
    rnn,
    sequence,
    strided,
    strided_index,
    upsample,
)
from .spec import DECLARED, Kernel

__all__ = ["TABLE", "LIB_VERSION", "Kernel", "get", "families"]

#: what ``qr_version()`` of the C library must return: a library built from other sources
#: (older, or newer) is refused at load. Bump it with csrc/cpu.c's qr_version.
LIB_VERSION = "qorus-kernels 0.7"

TABLE: tuple[Kernel, ...] = tuple(DECLARED.values())


def get(name: str) -> Kernel:
    """The declaration of kernel ``name`` (KeyError if none)."""
    return DECLARED[name]


def families() -> dict[str, list[Kernel]]:
    """{family: its kernels}, in declaration order."""
    out: dict[str, list[Kernel]] = {}
    for k in TABLE:
        out.setdefault(k.family, []).append(k)
    return out
