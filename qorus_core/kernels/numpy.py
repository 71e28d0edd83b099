"""The kernels in NumPy: the fallback when the C library is absent, and the reference it is
tested against.

Every kernel is declared in the table (``decl/``, one module per family), with its NumPy
implementation; this module makes the kernel set of them. A kernel takes planned ``Tensor``
views and writes into them (``out=`` everywhere), through ``Tensor.w``, which a read-only
tensor does not have (``KernelError``, as on the C set). Where NumPy cannot avoid a temporary,
a scratch array is taken from a per-shape cache filled on the first call, so after a warm-up
step no kernel allocates; the cache is per thread (``_cache``), so one set serves plans on
several threads at once. Shapes are in the docstrings; a tensor of rank > 2 is seen as a
matrix ``(rows, cols)`` with ``cols`` its last dimension.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from ..tensor import Tensor
from .decl import gen as _gen  # the kernel table: every kernel, its NumPy implementation
from .extensions import KernelNamespaces  # k.<namespace>: the kernels plugins add
from .numpy_quant import WeightDispatch  # linear / embedding_rows: a Tensor or a QWeight

# erf: threshold, clamp and the two minimax polynomials (constant term first), as in qr_math.h
_ERF_T, _ERF_TMAX = np.float32(0.921875), np.float32(3.92)
_ERF_Q = [np.float32(c) for c in (0.12837915122509003, -0.3761250674724579, 0.11281928420066833,
                                  -0.02677025832235813, 0.0049980334006249905,
                                  -0.0006013533566147089)]
_ERF_P = [np.float32(c) for c in (-0.0002099139674101025, -1.1276154518127441, -0.6372857689857483,
                                  -0.10383890569210052, 0.022181401029229164, -0.003031601198017597,
                                  0.00019473457359708846)]


class NumpyKernels(KernelNamespaces, WeightDispatch):
    """Reference implementation of every Qorus kernel: the methods are the table's (decl/),
    each its declared check then its NumPy implementation; this class holds what they share
    (the per-thread cache, erf, the matrix views). Typed for editors: ``KernelSet``."""

    name = "numpy"

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def _cache(self) -> dict[tuple, object]:
        """This thread's scratch arrays (``scratch``) and kept objects (``_kept``): all a
        kernel keeps between calls is in it, so plans run from several threads on one kernel
        set never share one."""
        try:
            return self._local.cache
        except AttributeError:
            cache = self._local.cache = {}
            return cache

    def scratch(self, key: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """This thread's scratch array ``key`` of ``shape`` and ``dtype`` (made on first use;
        its contents are the caller's until its next call): the temporaries of NumPy code,
        so a warmed-up step allocates nothing (a plugin kernel's NumPy implementation takes
        its own, keys prefixed with its namespace). ``dtype`` is a NumPy type such as
        ``np.float32``, keyed as given: no ``np.dtype`` built per call."""
        k = (key, shape, dtype)
        cache = self._cache
        arr = cache.get(k)
        if arr is None:
            arr = cache[k] = np.empty(shape, dtype=dtype)
        return arr

    scratch.__doc__ = WeightDispatch.scratch.__doc__   # the same words, as kernel_set.py shows


    def _kept(self, key: tuple, make: Callable[[], object]):
        """This thread's object ``key``: what ``make()`` returns, made on first use and kept
        (constants such as index maps and masks; the Tensor of a scratch array)."""
        cache = self._cache
        v = cache.get(key)
        if v is None:
            v = cache[key] = make()
        return v

    def _erf(self, x: np.ndarray, out: np.ndarray) -> None:
        """out = erf(x) in float32 (NumPy has none), max 1.35 ulp: |x| < 0.921875:
        x + x q(x^2); above: 1 - exp(p(t)), t = min(|x|, 3.92), sign of x; both minimax
        polynomials (qr_math.h's qr_erff, the same float32 operations). out may alias x."""
        s = self.scratch("erf_s", x.shape)
        t = self.scratch("erf_t", x.shape)
        p = self.scratch("erf_p", x.shape)
        big = self.scratch("erf_big", x.shape, np.bool_)
        np.abs(x, out=t)
        np.greater_equal(t, _ERF_T, out=big)
        np.minimum(t, _ERF_TMAX, out=t)
        p[...] = _ERF_P[-1]
        for c in _ERF_P[-2::-1]:                   # Horner, no FMA (as the C kernel)
            np.multiply(p, t, out=p)
            np.add(p, c, out=p)
        np.exp(p, out=p)
        np.subtract(np.float32(1.0), p, out=p)
        np.copysign(p, x, out=p)                   # erf(t) >= 0.8 here: the sign of x
        np.multiply(x, x, out=s)
        np.multiply(s, _ERF_Q[-1], out=t)
        for c in _ERF_Q[-2:0:-1]:
            np.add(t, c, out=t)
            np.multiply(t, s, out=t)
        np.add(t, _ERF_Q[0], out=t)
        np.multiply(t, x, out=t)
        np.add(t, x, out=t)                        # small branch (NaN propagates here)
        np.copyto(out, t)
        np.copyto(out, p, where=big)

    @staticmethod
    def _m(t: Tensor) -> np.ndarray:
        return t.a.reshape(t.rows, t.cols)

    @staticmethod
    def _mw(t: Tensor) -> np.ndarray:
        """``_m`` of an output (KernelError when ``t`` is read-only)."""
        return t.w.reshape(t.rows, t.cols)

    # ----------------------------------------------------------------- helpers of the kernels
    def _row_index(self, targets: Tensor, n: int, c: int) -> np.ndarray:
        """Flat indices r * c + targets[r] into an (n, c) matrix, in a cached array."""
        fidx = self.scratch("ce_fidx", (n,), np.intp)
        base = self._kept(("ce_base", n, c), lambda: np.arange(n, dtype=np.intp) * c)
        np.add(base, targets.a.reshape(-1), out=fidx)
        return fidx


_gen.install(NumpyKernels, "numpy")   # every declared kernel: check, then its implementation
