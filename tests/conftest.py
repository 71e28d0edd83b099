"""Shared fixtures: both kernel sets, when the C library is available."""

from __future__ import annotations

import pytest

from qorus_core.kernels import NumpyKernels, c_status, get_kernels

KERNEL_SETS = ["numpy"] + (["c"] if c_status()[0] else [])


@pytest.fixture(params=KERNEL_SETS)
def kernels(request) -> str:
    """Each test using this runs once per available kernel set."""
    return request.param


@pytest.fixture(scope="session")
def ck():
    """The C kernel set; tests using it skip, with the reason, where the library is absent."""
    ok, why = c_status()
    if not ok:
        pytest.skip(f"C kernel library unavailable: {why}")
    return get_kernels("c")


@pytest.fixture(scope="session")
def nk():
    """The NumPy reference kernel set."""
    return NumpyKernels()


@pytest.fixture
def threads(ck):
    """The C set; the thread count and SIMD path a test changes are restored after it."""
    n = ck.threads
    yield ck
    ck.set_threads(n)
    ck.set_simd_path("auto")


def pytest_report_header(config) -> str:
    ok, why = c_status()
    return f"qorus C kernels: {'available at ' + why if ok else 'UNAVAILABLE (' + why + ')'}"
