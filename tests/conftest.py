"""Shared fixtures: both kernel sets, when the C library is available."""

from __future__ import annotations

import pytest

from qorus_core.kernels import c_status

KERNEL_SETS = ["numpy"] + (["c"] if c_status()[0] else [])


@pytest.fixture(params=KERNEL_SETS)
def kernels(request) -> str:
    """Each test using this runs once per available kernel set."""
    return request.param


def pytest_report_header(config) -> str:
    ok, why = c_status()
    return f"qorus C kernels: {'available at ' + why if ok else 'UNAVAILABLE (' + why + ')'}"
