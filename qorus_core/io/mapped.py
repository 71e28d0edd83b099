"""A model file mapped read-only, with a cheap check that it has not changed since it was opened.

``MappedFile(path, error)`` refuses anything that is not a regular file before reading it (a
FIFO would block ``open`` forever, a device could be endless): the path is stat'ed, opened
with ``O_NONBLOCK`` (so a FIFO swapped in meanwhile cannot block either) and the descriptor
stat'ed again. It records the inode's size and modification time and keeps the descriptor, so
``check_unchanged()`` is one ``fstat`` (about a microsecond, no allocation) that raises
``error`` naming the file if the mapped inode was truncated or rewritten.

What mmap leaves inherent, and why it matters: a page of the map that lies beyond the end of
a file which shrank after the map was made faults with SIGBUS when read, and Python cannot
turn that into an exception (a Python-level signal handler runs only after the faulting C
instruction returns, which it never does; ``faulthandler`` can only print where it died).
So:

- ``cp new.gguf model.gguf`` (and most editors or downloaders writing in place) truncates
  and rewrites the *same inode*: the mapped bytes change under the model (wrong results) or
  vanish (SIGBUS). The readers call ``check_unchanged()`` before every bulk access (each
  ``tensor``/``raw``/``get``), and a model built over a mapped file should call it before each
  forward pass that touches the weights; it then raises instead of crashing.
- A truncation that lands *between* that check and the read of a page still kills the
  process with SIGBUS: the check narrows the window to one call, it cannot close it. Only
  reading the weights into private memory would (``load_llama(..., dequantize=True)`` copies
  them).
- ``mv new.gguf model.gguf`` (``os.replace``, and Qorus's own atomic writers) gives the path
  a *new inode*; the old one lives on while it is mapped, so the running model keeps its
  weights intact and valid; ``check_unchanged`` does not flag it (nothing the map sees
  changed). Replace model files in use with ``mv``, never ``cp``.
"""

from __future__ import annotations

import mmap
import os
import stat
import weakref
from pathlib import Path

from ..errors import QorusError

__all__ = ["MappedFile", "check_regular", "read_regular"]

_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: Path, error: type[QorusError]) -> os.stat_result:
    """``os.stat(path)``, refusing a missing path or anything but a regular file (a FIFO
    would block a read forever, a device could be endless): ``error`` names the path and
    what is there."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise error(f"{path}: cannot open: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is {_kind(st.st_mode)}, not a regular file")
    return st


def _open_regular(path: Path, error: type[QorusError]) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file ``path`` and its ``fstat``: stat'ed, opened with
    ``O_NONBLOCK`` (a FIFO swapped in after the stat cannot block either) and stat'ed again."""
    check_regular(path, error)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise error(f"{path}: cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):   # swapped between the stat and the open
            raise error(f"{path}: is {_kind(st.st_mode)}, not a regular file")
    except OSError as exc:
        os.close(fd)
        raise error(f"{path}: cannot stat: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str | os.PathLike, error: type[QorusError],
                 max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (a config, a checkpoint's JSON), refused with
    ``error`` naming it when it is anything else, or larger than ``max_bytes``."""
    path = Path(path)
    fd, st = _open_regular(path, error)
    with open(fd, "rb") as f:   # closes fd
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"{path}: {st.st_size:,} bytes, over the {max_bytes:,} such a file "
                        "may have")
        try:
            return f.read()
        except OSError as exc:
            raise error(f"{path}: cannot read: {exc.strerror or exc}") from None


class MappedFile:
    """A regular file opened without blocking and mapped read-only (``mm`` is None when it is
    empty). ``size`` is its size when opened; ``check_unchanged()`` raises ``error`` if the
    inode was truncated or rewritten since. ``close()`` drops the map and the descriptor."""

    def __init__(self, path: str | os.PathLike, error: type[QorusError]) -> None:
        self.path = Path(path)
        self.error = error
        fd, st = _open_regular(self.path, error)
        self._close_fd = weakref.finalize(self, os.close, fd)
        self.fd = fd
        self.size = st.st_size
        self._signature = (st.st_size, st.st_mtime_ns)
        try:
            self.mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if st.st_size else None
        except (OSError, ValueError) as exc:   # ValueError: emptied since the fstat
            self.mm = None
            self.close()
            raise error(f"{self.path}: cannot map: {getattr(exc, 'strerror', None) or exc}") from None

    def check_unchanged(self) -> None:
        """Raise ``error`` if the mapped file was truncated or rewritten since it was opened
        (one ``fstat``; see the module docstring for what stays inherent to mmap)."""
        if self.fd is None:
            raise self.error(f"{self.path}: the file is closed")
        try:
            st = os.fstat(self.fd)
        except OSError as exc:
            raise self.error(f"{self.path}: cannot stat the open file: {exc.strerror or exc}") from None
        if (st.st_size, st.st_mtime_ns) != self._signature:
            size = self._signature[0]
            change = (f"it shrank from {size} to {st.st_size} bytes" if st.st_size < size else
                      f"it grew from {size} to {st.st_size} bytes" if st.st_size > size else
                      "it was rewritten (its modification time changed)")
            raise self.error(f"{self.path}: the file changed while in use: {change}. A copy over "
                             "a mapped file (cp) changes the weights under the model; reload it, "
                             "and replace files in use with mv, which leaves the old one intact")

    def close(self) -> None:
        """Drop the map (views still held elsewhere keep their pages) and the descriptor."""
        mm, self.mm = getattr(self, "mm", None), None
        if mm is not None:
            try:
                mm.close()
            except BufferError:   # views exported to the caller still alive: they keep it
                pass
        self.fd = None
        self._close_fd()
