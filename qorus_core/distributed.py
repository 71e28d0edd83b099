"""The ranks of a data-parallel job and the few collectives its training needs.

``world()`` is the job this process belongs to: under ``mpirun`` with more than one rank,
MPI's ``COMM_WORLD`` through mpi4py (the optional extra ``qorus-core[mpi]``, built against the
system's MPI, e.g. Debian's ``libopenmpi-dev``); otherwise one process, whose collectives do
nothing and need no MPI at all. The Trainer and a synchronised BatchNorm use only this
interface, so a test (or another transport) can pass its own ``Communicator``.

Collectives work in place on contiguous NumPy buffers: nothing is allocated per call. Every
collective first meets the other ranks at a non-blocking barrier polled against a deadline
(``timeout`` seconds, default ``QORUS_MPI_TIMEOUT`` or 600): a rank whose peer died or stalls
raises ``DistributedError`` naming the collective and the ranks, instead of waiting forever.
Once all have arrived, MPI's blocking collective runs (Open MPI's tuned all-reduce took 2.5x
less time than its non-blocking one on 2 MB here). ``run_or_abort`` turns an exception on
one rank into ``MPI_Abort``, which ends every rank of the job; the others say so on stderr
as they go. A communicator is used by
one thread at a time (the Trainer's): it is not thread-safe.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from .errors import ConfigError, QorusError

#: environment variables by which MPI launchers tell a process its job's size
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
DEFAULT_TIMEOUT = 600.0
T = TypeVar("T")


class DistributedError(QorusError):
    """A collective failed or timed out, or a data-parallel job cannot start (names the rank)."""


class Communicator:
    """One process alone (rank 0 of 1): every collective leaves its buffer as it is."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """True on the rank that prints, writes checkpoints and metrics (rank 0)."""
        return self.rank == 0

    def allreduce_sum(self, buf: np.ndarray, what: str = "all-reduce") -> None:
        """Replace ``buf`` on every rank by the sum over ranks of everyone's ``buf``."""

    def broadcast(self, buf: np.ndarray, root: int = 0, what: str = "broadcast") -> None:
        """Copy ``root``'s ``buf`` into every rank's."""

    def allgather(self, value: T, what: str = "all-gather") -> list[T]:
        """Every rank's ``value`` (a small picklable object), in rank order."""
        return [value]

    def barrier(self, what: str = "barrier") -> None:
        """Return once every rank has reached it."""

    def abort(self, code: int = 1) -> None:
        """End the whole job now (this process alone here)."""
        raise SystemExit(code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MPICommunicator(Communicator):
    """The ranks of an MPI communicator (``COMM_WORLD`` by default) through mpi4py.

    Each collective starts with ``_arrive``: an ``Ibarrier`` polled against the deadline, so
    a missing peer becomes a ``DistributedError`` after ``timeout`` seconds; then the
    blocking collective, which every rank has reached."""

    def __init__(self, comm: Any = None, timeout: float | None = None) -> None:
        mpi = import_mpi()
        self.MPI = mpi
        self.comm = comm if comm is not None else mpi.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = _timeout(timeout)

    def _arrive(self, what: str) -> None:
        """Return once every rank has reached this collective, or raise after the timeout."""
        req = self.comm.Ibarrier()
        if req.Test():
            return
        start = time.monotonic()
        spins = 0
        while not req.Test():
            spins += 1
            if spins % 256 == 0:
                waited = time.monotonic() - start
                if waited > self.timeout:
                    raise DistributedError(
                        f"rank {self.rank} of {self.size}: {what} did not complete within "
                        f"{self.timeout:g} s: another rank has died, stalled or left the "
                        "job (QORUS_MPI_TIMEOUT sets the limit)")
                if waited > 0.05:               # a long wait: give the core to the peers
                    time.sleep(0.001)

    def allreduce_sum(self, buf: np.ndarray, what: str = "all-reduce") -> None:
        """Sum ``buf`` over the ranks, in place (MPI_Allreduce, MPI_SUM)."""
        buf = _contiguous(buf, what)
        self._arrive(what)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, self.MPI.SUM)

    def broadcast(self, buf: np.ndarray, root: int = 0, what: str = "broadcast") -> None:
        """Copy ``root``'s ``buf`` into every rank's (MPI_Bcast)."""
        buf = _contiguous(buf, what)
        self._arrive(what)
        self.comm.Bcast(buf, root=root)

    def allgather(self, value: T, what: str = "all-gather") -> list[T]:
        """Every rank's ``value``, pickled (mpi4py's lowercase allgather: small objects)."""
        self._arrive(what)
        return self.comm.allgather(value)

    def barrier(self, what: str = "barrier") -> None:
        """Return once every rank has reached it (or raise after the timeout)."""
        self._arrive(what)

    def abort(self, code: int = 1) -> None:
        """MPI_Abort: the launcher ends every rank of the job."""
        sys.stderr.flush()
        self.comm.Abort(code)


def import_mpi() -> Any:
    """mpi4py's ``MPI`` module, or DistributedError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            f"this process runs under an MPI launcher with {launcher_size()} ranks, but mpi4py "
            f"cannot be imported ({exc}); install it with `pip install qorus-core[mpi]` (it "
            "builds against the system's MPI: on Debian `apt-get install openmpi-bin "
            "libopenmpi-dev`)") from None
    return MPI


def launcher_size() -> int:
    """The job size an MPI launcher announced in the environment (1: none)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


_WORLD: Communicator | None = None


def world(timeout: float | None = None) -> Communicator:
    """This process's job: an ``MPICommunicator`` over ``COMM_WORLD`` when launched with more
    than one rank, else a single-process ``Communicator``; one per process (the first call
    decides, ``timeout`` included)."""
    global _WORLD
    if _WORLD is None:
        if launcher_size() > 1:
            comm = MPICommunicator(timeout=timeout)
            if comm.size > 1:
                _abort_notice(comm)
            _WORLD = comm if comm.size > 1 else Communicator()
        else:
            _WORLD = Communicator()
    return _WORLD


def run_or_abort(comm: Communicator, fn: Callable[[], T]) -> T:
    """``fn()``; on a job of several ranks an exception ends the whole job (``MPI_Abort``)
    after this rank prints it, so no peer waits for a rank that has gone."""
    if comm.size == 1:
        return fn()
    try:
        return fn()
    except BaseException as exc:  # noqa: BLE001 - any failure must end every rank
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        sys.stderr.write(f"qorus: rank {comm.rank} of {comm.size} failed: {what}; ending the "
                         "job on every rank\n")
        if not isinstance(exc, (QorusError, KeyboardInterrupt, SystemExit)):
            import traceback

            traceback.print_exc(file=sys.stderr)
        comm.abort(1)
        raise


def _abort_notice(comm: Communicator) -> None:
    """When the launcher ends this rank because another failed (SIGTERM), say so on stderr."""
    def on_term(signum: int, frame: Any) -> None:
        sys.stderr.write(f"qorus: rank {comm.rank} of {comm.size}: the job was ended because "
                         "another rank failed (its error is printed above)\n")
        sys.stderr.flush()
        os._exit(1)

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:              # not the main thread: the launcher's kill still ends it
        pass


def shard(start: int, rows: int, comm: Communicator) -> tuple[int, int]:
    """This rank's rows ``[lo, hi)`` of the batch ``[start, start + rows)``: contiguous,
    disjoint, in rank order, sizes differing by at most one (empty when ``rows < size``)."""
    r, n = comm.rank, comm.size
    return start + rows * r // n, start + rows * (r + 1) // n


def _timeout(value: float | None) -> float:
    if value is None:
        env = os.environ.get("QORUS_MPI_TIMEOUT", "")
        try:
            value = float(env) if env else DEFAULT_TIMEOUT
        except ValueError:
            raise ConfigError(f"QORUS_MPI_TIMEOUT must be seconds, got {env!r}") from None
    if not value > 0:
        raise ConfigError(f"MPI collective timeout must be > 0 seconds, got {value!r}")
    return float(value)


def _contiguous(buf: np.ndarray, what: str) -> np.ndarray:
    if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous and buf.flags.writeable):
        raise DistributedError(f"{what}: the buffer must be a writable C-contiguous ndarray")
    return buf
