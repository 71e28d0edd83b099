"""llm.CausalSelfAttention refuses bad constructor arguments with a ConfigError naming itself
and the field, and never coerces (``max_len=2.5`` is not 2, ``bias="false"`` is not True)
(issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import ConfigError
from qorus_core.layer import layer_from_dict, layer_to_dict
from qorus_layers_llm import CausalSelfAttention

NAN, INF = float("nan"), float("inf")
OWNER = "llm.CausalSelfAttention"


@pytest.mark.parametrize("kwargs, field", [
    ({"d_model": 8.0}, "d_model"),
    ({"d_model": True}, "d_model"),
    ({"d_model": 0}, "d_model"),
    ({"n_heads": "2"}, "n_heads"),
    ({"n_heads": -2}, "n_heads"),
    ({"n_kv_heads": 1.0}, "n_kv_heads"),
    ({"n_kv_heads": 0}, "n_kv_heads"),
    ({"rope_theta": 0}, "rope_theta"),
    ({"rope_theta": -1.0}, "rope_theta"),
    ({"rope_theta": NAN}, "rope_theta"),
    ({"rope_theta": INF}, "rope_theta"),
    ({"rope_theta": "1e4"}, "rope_theta"),
    ({"rope_theta": True}, "rope_theta"),
    ({"rope_half_split": 1}, "rope_half_split"),
    ({"bias": "false"}, "bias"),
    ({"bias": 0}, "bias"),
    ({"max_len": 2.5}, "max_len"),
    ({"max_len": 0}, "max_len"),
    ({"max_len": True}, "max_len"),
    ({"rope": None}, "rope"),
    ({"rope": "yes"}, "rope"),
])
def test_refuses_bad_arguments(kwargs, field):
    args = {"d_model": 8, "n_heads": 2, **kwargs}
    with pytest.raises(ConfigError, match=rf"^{OWNER}: {field} must be "):
        CausalSelfAttention(**args)


@pytest.mark.parametrize("kwargs, message", [
    ({"d_model": 8, "n_heads": 3}, "d_model=8 must split into 3 heads"),
    ({"d_model": 12, "n_heads": 4}, "d_model=12 must split into 4 heads of an even size"),
    ({"d_model": 8, "n_heads": 2, "n_kv_heads": 3}, "n_heads=2 must be a multiple of n_kv_heads=3"),
])
def test_refuses_inconsistent_sizes(kwargs, message):
    with pytest.raises(ConfigError, match=rf"^{OWNER}: {message}"):
        CausalSelfAttention(**kwargs)


def test_accepts_numpy_scalars_as_plain_values():
    """GGUF metadata arrives as NumPy scalars: taken as plain Python values, so the config
    stays JSON-able and round-trips."""
    a = CausalSelfAttention(np.uint32(8), np.int64(2), np.uint32(1), rope_theta=np.float32(1e4),
                            rope_half_split=np.bool_(True), bias=False, max_len=np.int32(16))
    cfg = a.get_config()
    assert cfg == {"d_model": 8, "n_heads": 2, "n_kv_heads": 1, "rope_theta": 10000.0,
                   "rope_half_split": True, "bias": False, "max_len": 16, "rope": True}
    assert all(type(v) in (int, float, bool) for v in cfg.values())
    assert layer_to_dict(layer_from_dict(layer_to_dict(a))) == layer_to_dict(a)
    assert CausalSelfAttention(8, 2).n_kv_heads is None and CausalSelfAttention(8, 2).max_len is None
