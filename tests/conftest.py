"""Shared fixtures: both kernel sets, when the C library is available."""

from __future__ import annotations

import os

import pytest

from qorus_core.kernels import NumpyKernels, c_status, get_kernels

KERNEL_SETS = ["numpy"] + (["c"] if c_status()[0] else [])


def pytest_configure(config) -> None:
    """The oracle gate (tests/oracle_gate.py): `tox -e parity` runs only the oracle tests."""
    import oracle_gate

    oracle_gate.register(config)


@pytest.fixture(scope="session", autouse=True)
def int8_prompt_path():
    """The suite runs the opt-in 8-bit prompt products (``QORUS_INT8_PROMPTS=1``: the class
    default and, for the commands tests start, the environment); the tests of the default
    float32 path against float references use ``float_prompts`` (test_quant_prompt_int8)."""
    from qorus_core.kernels.numpy_quant import INT8_PROMPT, WeightDispatch

    saved, env = WeightDispatch._int8_prompt, os.environ.get("QORUS_INT8_PROMPTS")
    WeightDispatch._int8_prompt = INT8_PROMPT
    os.environ["QORUS_INT8_PROMPTS"] = "1"
    yield
    WeightDispatch._int8_prompt = saved
    if env is None:
        os.environ.pop("QORUS_INT8_PROMPTS", None)
    else:
        os.environ["QORUS_INT8_PROMPTS"] = env


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
