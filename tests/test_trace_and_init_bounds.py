"""Sizes from a config are refused before they can hang or crash (fuzz cases checkpoint:0:786,
toml:0:309, toml:0:11333): a graph is bounded while it is traced, initializers write their
values in place without a parameter-sized temporary, sizes are written exactly however big,
and the memory limit heeds an address-space cap."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from qorus_core import Composite, ConfigError, Layer, Model, Sequential, Spec
from qorus_core import graph as graph_mod
from qorus_core.arena import human_bytes
from qorus_core.init import CHUNK, constant, initialize, normal, ones, torch_linear, uniform, zeros
from qorus_layers_llm import GPT
from qorus_layers_mlp import Linear, ReLU


# ----------------------------------------------------------------- the graph is bounded
def test_a_huge_layer_count_is_refused_while_tracing(monkeypatch):
    monkeypatch.setattr(graph_mod, "MAX_OPS", 100)
    with pytest.raises(ConfigError, match=r"layer blocks\.\d+\..*more than 100 layer calls"):
        Model(GPT(256, 16, 2 ** 63, 2, 16), (16,), "i32")
    Model(Sequential([ReLU() for _ in range(100)]), (4,))            # at the bound: fine
    with pytest.raises(ConfigError, match=r"layer 100 \(mlp.ReLU\)"):
        Model(Sequential([ReLU() for _ in range(101)]), (4,))


def test_gpt_with_2_to_63_layers_is_refused():
    """The real bound, unpatched: the trace stops at MAX_OPS (about a second) instead of
    running forever."""
    with pytest.raises(ConfigError, match=f"more than {graph_mod.MAX_OPS:,} layer calls"):
        Model(GPT(256, 16, 2 ** 63, 2, 16), (16,), "i32")


class ManyParams(Layer):
    """Declares ``n`` one-float parameters (a layer looping over a layer count)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def build(self, x: Spec, b) -> Spec:
        for i in range(self.n):
            b.param(f"w{i}", (1,), zeros())
        return x

    def forward(self, x, ctx):
        ctx.k.copy(x, ctx.y)
        return ctx.y


def test_a_huge_declaration_count_is_refused(monkeypatch):
    monkeypatch.setattr(graph_mod, "MAX_DECLARATIONS", 50)
    Model(ManyParams(50), (2,))
    with pytest.raises(ConfigError, match="more than 50 parameters and buffers"):
        Model(ManyParams(2 ** 63), (2,))


def test_declaring_many_names_in_one_layer_is_linear():
    """Each declaration checks its name against the layer's others in O(1) (the old check
    rebuilt every name per declaration: 10,000 names took a minute)."""
    m = Model(ManyParams(10000), (2,))
    assert m.num_parameters == 10000


class DeclaringComposite(Composite):
    def build(self, x, b):
        b.param("w", (2,), zeros())
        return b.call(ReLU(), x, "act")


def test_a_composite_cannot_declare_a_parameter():
    """Its declaration would belong to no op: it used to vanish silently."""
    with pytest.raises(ConfigError, match="a Composite cannot declare parameter 'w'"):
        Model(DeclaringComposite(), (2,))


# ----------------------------------------------------------------- initializers
@pytest.mark.parametrize("shape", [(3,), (2, 5), (3, CHUNK // 2 + 7), (CHUNK + 1,)])
def test_initializers_fill_in_place_with_the_one_shot_values(shape):
    """Chunked or not, the values and the generator's state after are the old ones'."""
    old = {"uniform": lambda rng: rng.uniform(-0.3, 0.3, size=shape).astype(np.float32),
           "normal": lambda rng: (rng.standard_normal(size=shape) * 0.02 + 0.5).astype(np.float32),
           "zeros": lambda rng: np.zeros(shape, np.float32),
           "ones": lambda rng: np.ones(shape, np.float32),
           "constant": lambda rng: np.full(shape, 0.25, np.float32)}
    new = {"uniform": uniform(0.3), "normal": normal(0.02, 0.5), "zeros": zeros(),
           "ones": ones(), "constant": constant(0.25)}
    for name, make in old.items():
        r_old, r_new = np.random.default_rng(7), np.random.default_rng(7)
        want = make(r_old)
        out = np.full(shape, np.nan, np.float32)
        initialize(new[name], r_new, shape, out, name)
        np.testing.assert_array_equal(out, want, err_msg=name)
        assert r_old.random() == r_new.random(), name
        np.testing.assert_array_equal(new[name](np.random.default_rng(7), shape), want)


def test_a_big_parameter_is_initialised_without_a_temporary():
    """A 16 MiB weight: creating the model peaks at the arena, not the arena plus a float64
    draw and a float32 copy of it (three times more; out_channels = 10**6 ran out of memory
    there although its arena fit)."""
    tracemalloc.start()
    try:
        m = Model(Linear(2048, 2048, bias=False), (2048,))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arena = m.memory_report()["params"]
    assert arena >= 2048 * 2048 * 4 and peak < arena + (8 << 20), (peak, arena)
    w = m.parameters()["weight"]
    want = torch_linear(2048)(np.random.default_rng(0), (2048, 2048))
    np.testing.assert_array_equal(w, want)


class ForeignInit(Layer):
    """A parameter with a plain callable as its initializer."""

    def __init__(self, init) -> None:
        self.init = init

    def build(self, x: Spec, b) -> Spec:
        b.param("w", (4,), self.init)
        return x

    def forward(self, x, ctx):
        ctx.k.copy(x, ctx.y)
        return ctx.y


def test_a_foreign_initializer_is_checked():
    def out_of_memory(rng, shape):
        raise MemoryError

    with pytest.raises(ConfigError, match="initializer of w: out of memory"):
        Model(ForeignInit(out_of_memory), (4,))
    from qorus_core.errors import ShapeError
    with pytest.raises(ShapeError, match=r"initializer of w gave shape \(3,\), expected \(4,\)"):
        Model(ForeignInit(lambda rng, shape: np.zeros(3)), (4,))
    m = Model(ForeignInit(lambda rng, shape: np.arange(4.0)), (4,))
    np.testing.assert_array_equal(m.parameters()["w"], [0, 1, 2, 3])


# ----------------------------------------------------------------- sizes, exactly
def test_human_bytes_is_exact_for_any_int():
    assert human_bytes(0) == "0 B" and human_bytes(1023) == "1023 B"
    assert human_bytes(1024) == "1.0 KiB" and human_bytes(1280) == "1.2 KiB"   # half to even
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(3 << 50) == "3.0 PiB"
    assert human_bytes(10 ** 400).endswith(" PiB")                         # float overflows here
    assert human_bytes(10 ** 400)[:6] == str(10 ** 400 // 1024 ** 5)[:6]


def test_an_input_of_a_thousand_dimensions_is_refused_with_its_size():
    model = Model(Linear(None, 1), (2,) * 1001)
    with pytest.raises(ConfigError, match=r"arena 'plan\[1,infer\]': \d[\d,]* bytes \(\d+\.\d PiB\)"):
        model.plan(1)


def test_memory_limit_heeds_an_address_space_cap():
    code = ("import resource\n"
            "from qorus_core.arena import memory_limit\n"
            "with open('/proc/self/statm') as f:\n"
            "    used = int(f.read().split()[0]) * resource.getpagesize()\n"
            "resource.setrlimit(resource.RLIMIT_AS, (used + (512 << 20), resource.RLIM_INFINITY))\n"
            "limit, source = memory_limit()\n"
            "print(limit, source)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": ""}).stdout
    limit, source = out.split(" ", 1)
    assert int(limit) <= 512 << 20 and "RLIMIT_AS" in source, out
