"""``LayerBuilder`` refuses declaration names that would shadow a context field or another
declaration: two buffers must never silently become one ``ctx`` attribute."""

from __future__ import annotations

import pytest

from qorus_core import ConfigError, Layer, LayerBuilder, Model, Spec
from qorus_core.graph import RESERVED_CTX_NAMES
from qorus_core.init import zeros


class Declares(Layer):
    """Declares what it is told to, then acts as the identity."""

    def __init__(self, decls: list) -> None:
        self.decls = decls

    def build(self, x: Spec, b: LayerBuilder) -> Spec:
        for kind, name in self.decls:
            if kind == "param":
                b.param(name, (2,), zeros())
            elif kind == "state":
                b.state(name, (2,))
            else:
                getattr(b, kind)(name, (2,))
        return x

    def forward(self, x, ctx):
        ctx.k.copy(x, ctx.y)
        return ctx.y


def _build(*decls):
    return Model(Declares(list(decls)), (2,))


@pytest.mark.parametrize("name", sorted(RESERVED_CTX_NAMES))
@pytest.mark.parametrize("kind", ["param", "saved", "scratch", "state"])
def test_reserved_context_names_refused(kind, name):
    with pytest.raises(ConfigError, match=f"ctx.{name}"):
        _build((kind, name))


@pytest.mark.parametrize("decls", [
    [("param", "w"), ("saved", "dw")],          # a buffer named like the gradient of w
    [("scratch", "dw"), ("param", "w")],        # the other order
    [("saved", "mean"), ("scratch", "mean")],   # two buffers, one name
    [("param", "w"), ("param", "w")],
    [("state", "h"), ("saved", "h")],
    [("param", "x")],                           # its gradient would be ctx.dx
])
def test_colliding_declarations_refused(decls):
    with pytest.raises(ConfigError, match="collides"):
        _build(*decls)


@pytest.mark.parametrize("name", ["", "1w", "w.b", "_private", 3])
def test_non_identifier_names_refused(name):
    with pytest.raises(ConfigError, match="identifier"):
        _build(("saved", name))


def test_distinct_names_build():
    m = _build(("param", "w"), ("saved", "mean"), ("scratch", "tmp"), ("state", "h"))
    assert set(m.parameters()) == {"w"}
