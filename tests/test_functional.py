"""The functional API: several named inputs and outputs, shared layers, graph ops, training
with several losses (PyTorch parity after 3 AdamW steps), config round-trips, errors naming
the node, and allocation-free steps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qorus_core import Composite, ConfigError, Input, Layer, Model, ShapeError, ops
from qorus_core.testing import check_gradients, trace_allocations
from qorus_core.train.losses import CrossEntropyLoss, MSELoss
from qorus_core.train.optimizers import AdamW
from qorus_core.train.trainer import Trainer
from qorus_layers_mlp import GELU, Linear, ReLU, Sigmoid


def siamese(seed: int = 0, kernels: str = "numpy") -> Model:
    """The issue's example: one encoder shared by two inputs, a score head over
    [ha, hb, ha * hb] and a difference head."""
    a, b = Input((8,), name="a"), Input((8,), name="b")
    enc, act = Linear(8, 16), GELU()
    ha, hb = act(enc(a, name="enc"), name="act"), act(enc(b))
    score = Linear(48, 3)(ops.concat([ha, hb, ops.mul(ha, hb)], axis=-1), name="score_head")
    diff = Linear(16, 1)(ops.sub(ha, hb), name="diff_head")
    return Model(inputs=[a, b], outputs={"score": score, "diff": diff}, seed=seed, kernels=kernels)


def _data(n: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    xa, xb = (rng.standard_normal((n, 8)).astype(np.float32) for _ in range(2))
    ys = rng.integers(0, 3, n).astype(np.int32)
    yd = rng.standard_normal((n, 1)).astype(np.float32)
    return {"a": xa, "b": xb}, {"score": ys, "diff": yd}


def test_siamese_predicts_what_numpy_computes(kernels):
    m = siamese(kernels=kernels)
    assert m.input_names == ("a", "b") and m.output_names == ("diff", "score")  # by name
    assert sorted(m.parameters()) == ["diff_head.bias", "diff_head.weight", "enc.bias",
                                      "enc.weight", "score_head.bias", "score_head.weight"]
    x, _ = _data()
    out = m.predict(x, batch_size=7)
    w = {k: v.astype(np.float64) for k, v in m.parameters().items()}
    from math import erf, sqrt
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / sqrt(2))))
    ha, hb = (gelu(x[k] @ w["enc.weight"].T + w["enc.bias"]) for k in "ab")
    score = np.concatenate([ha, hb, ha * hb], -1) @ w["score_head.weight"].T + w["score_head.bias"]
    diff = (ha - hb) @ w["diff_head.weight"].T + w["diff_head.bias"]
    np.testing.assert_allclose(out["score"], score, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["diff"], diff, rtol=1e-4, atol=1e-5)
    assert m.predict([x["a"], x["b"]])["score"].shape == (24, 3)


def test_siamese_multitask_training_matches_pytorch(kernels):
    """Two losses with weights, a shared encoder, concat and mul: loss, gradients and
    parameters after each of 3 AdamW steps equal PyTorch's (rtol 1e-4)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    m = siamese(seed=3, kernels=kernels)
    x, y = _data()
    enc, score_head, diff_head = (torch.nn.Linear(8, 16), torch.nn.Linear(48, 3),
                                  torch.nn.Linear(16, 1))
    mods = {"enc": enc, "score_head": score_head, "diff_head": diff_head}
    with torch.no_grad():
        for name, mod in mods.items():
            mod.weight.copy_(torch.from_numpy(m.parameters()[f"{name}.weight"]))
            mod.bias.copy_(torch.from_numpy(m.parameters()[f"{name}.bias"]))
    params = [p for mod in mods.values() for p in mod.parameters()]
    ref_opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    tr = Trainer(m, {"score": CrossEntropyLoss(), "diff": MSELoss()}, AdamW(lr=1e-2, weight_decay=0.01),
                 batch_size=24, epochs=3, shuffle=False, progress=False,
                 loss_weights={"diff": 0.5})
    ta, tb = torch.from_numpy(x["a"]), torch.from_numpy(x["b"])
    for step in range(3):
        hist = tr.fit(x, y, until_epoch=step + 1)
        ref_opt.zero_grad()
        gelu = torch.nn.functional.gelu
        ha, hb = gelu(enc(ta)), gelu(enc(tb))
        ls = torch.nn.functional.cross_entropy(score_head(torch.cat([ha, hb, ha * hb], -1)),
                                               torch.from_numpy(y["score"]).long())
        ld = torch.nn.functional.mse_loss(diff_head(ha - hb), torch.from_numpy(y["diff"]))
        (ls + 0.5 * ld).backward()
        row = hist[-1]
        assert row["loss"] == pytest.approx(ls.item() + 0.5 * ld.item(), rel=1e-4)
        assert row["score_loss"] == pytest.approx(ls.item(), rel=1e-4)
        assert row["diff_loss"] == pytest.approx(ld.item(), rel=1e-4)
        grads = m.gradients()
        for name, mod in mods.items():
            for p in ("weight", "bias"):
                np.testing.assert_allclose(grads[f"{name}.{p}"], getattr(mod, p).grad.numpy(),
                                           rtol=1e-4, atol=1e-6, err_msg=f"grad {name}.{p} step {step}")
        ref_opt.step()
        for name, mod in mods.items():
            for p in ("weight", "bias"):
                np.testing.assert_allclose(m.parameters()[f"{name}.{p}"],
                                           getattr(mod, p).detach().numpy(), rtol=1e-4, atol=1e-6,
                                           err_msg=f"param {name}.{p} after step {step}")


def test_two_heads_on_one_input_and_an_untrained_output(kernels):
    """A trunk read by two heads; only one has a loss: the other gets no gradient, and
    training it alone gives the trunk the gradient of that head only."""
    x = Input((6,), name="x")
    h = ReLU()(Linear(6, 10)(x, name="trunk"))
    m = Model(inputs=x, outputs={"cls": Linear(10, 4)(h, name="cls"),
                                 "reg": Linear(10, 2)(h, name="reg")}, kernels=kernels)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((9, 6)).astype(np.float32)
    tr = Trainer(m, {"cls": CrossEntropyLoss()}, AdamW(lr=0.0), batch_size=9, progress=False)
    tr.fit(xs, {"cls": rng.integers(0, 4, 9)})
    assert not m.gradients()["reg.weight"].any()
    assert m.gradients()["trunk.weight"].any()


def _dense_block() -> Model:
    x = Input((5,), name="x")
    c = x
    for i in range(3):                       # DenseNet-style growth: concat every output
        h = ReLU()(Linear(None, 3)(c, name=f"grow{i}"))
        c = ops.concat([c, h], axis=-1)
    return Model(inputs=x, outputs=Linear(None, 2)(c, name="out"), seed=1)


def _gated_block() -> Model:
    x = Input((7,), name="x")
    return Model(inputs=x, outputs=ops.mul(x, Sigmoid()(Linear(7, 7)(x))), seed=2)


@pytest.mark.parametrize("make", [_dense_block, _gated_block], ids=["densenet", "gated"])
def test_dag_blocks_pass_the_gradient_check(make, kernels):
    net = make().net
    report = check_gradients(net, input_shape=net.input_specs()[0].shape, kernels=kernels)
    assert report.checked > 10


def test_config_json_and_checkpoint_round_trip(tmp_path):
    m = siamese(seed=5)
    x, y = _data()
    cfg = json.loads(json.dumps(m.get_config()))
    again = Model.from_config(cfg)
    again.load_state_dict(m.state_dict())
    for k in ("score", "diff"):
        # equal up to the summation order the GEMM picks for each arena's alignment
        np.testing.assert_allclose(again.predict(x)[k], m.predict(x)[k], rtol=1e-6, atol=1e-7)
    tr = Trainer(m, {"score": CrossEntropyLoss(), "diff": MSELoss()}, AdamW(lr=1e-2),
                 batch_size=8, epochs=2, progress=False, checkpoint_dir=tmp_path / "ck")
    tr.fit(x, y, until_epoch=1)
    m2 = siamese(seed=9)
    tr2 = Trainer(m2, {"score": CrossEntropyLoss(), "diff": MSELoss()}, AdamW(lr=1e-2),
                  batch_size=8, epochs=2, progress=False)
    tr2.resume(tmp_path / "ck")
    for k, v in m.parameters().items():
        np.testing.assert_array_equal(m2.parameters()[k], v)
    assert tr2.get_config()["loss"]["weights"] == {"score": 1.0, "diff": 1.0}


def test_layers_called_inside_a_composite_build():
    """``layer(x)`` on traced Values inside build is b.call under a generated name; the same
    object called twice shares its parameters."""
    class Twice(Composite):
        def build(self, x, b):
            lin = Linear(4, 4)
            return ops.add(lin(x), lin(ReLU()(x)))

    m = Model(Twice(), (4,))
    assert sorted(m.parameters()) == ["linear.bias", "linear.weight"]
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    w, bias = m.parameters()["linear.weight"], m.parameters()["linear.bias"]
    np.testing.assert_allclose(m.predict(x), x @ w.T + bias + np.maximum(x, 0) @ w.T + bias,
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- errors
def test_bad_inputs_name_the_input():
    m = siamese()
    x, _ = _data()
    with pytest.raises(ShapeError, match=r"missing \['b'\], unexpected \['c'\]"):
        m.predict({"a": x["a"], "c": x["b"]})
    with pytest.raises(ShapeError, match=r"input 'b': expected shape \(N, 8\), got \(24, 7\)"):
        m.predict({"a": x["a"], "b": x["b"][:, :7]})
    with pytest.raises(ShapeError, match="give a dict of arrays by name"):
        m.predict(x["a"])
    mask = Input((4,), name="mask", dtype="bool")
    v = Input((4,), name="v")
    mm = Model(inputs=[v, mask], outputs=ops.masked_fill(v, mask, 0.0))
    with pytest.raises(ShapeError, match=r"input 'mask': dtype float32 cannot feed a bool input"):
        mm.predict({"v": np.ones((2, 4), np.float32), "mask": np.ones((2, 4), np.float32)})
    out = mm.predict({"v": np.ones((2, 4), np.float32), "mask": np.eye(2, 4, dtype=bool)})
    np.testing.assert_array_equal(out, 1 - np.eye(2, 4))


def test_bad_graphs_name_the_node():
    a, b, c = Input((8,), name="a"), Input((8,), name="b"), Input((8,), name="c")
    with pytest.raises(ShapeError, match=r"mlp.Linear.*\(1, 8\)"):
        Linear(5, 3)(a)
    with pytest.raises(ShapeError, match="do not broadcast"):
        ops.add(a, Input((3,), name="d"))
    with pytest.raises(ConfigError, match="depends on Input 'c'"):
        Model(inputs=[a, b], outputs=ops.add(a, c))
    with pytest.raises(ConfigError, match="input 'b' is not used"):
        Model(inputs=[a, b], outputs=Linear(8, 2)(a))
    with pytest.raises(ConfigError, match="called on a traced Value outside its graph"):
        from qorus_core.graph import Graph
        from qorus_core.tensor import Spec
        Linear(8, 2)(Graph(False).new_value(Spec((1, 8))))
    with pytest.raises(ConfigError, match="call a layer on Input nodes"):
        Linear(8, 2)(np.zeros((1, 8), np.float32))
    with pytest.raises(ConfigError, match="no input named 'query'"):
        Linear(8, 2)(a, query=b)
    cfg = siamese().get_config()
    cfg["net"]["config"]["nodes"][2]["inputs"] = ["nowhere"]
    with pytest.raises(ConfigError, match="input 'nowhere' is not an input or an earlier node"):
        Model.from_config(cfg)


def test_a_multi_input_multi_output_step_allocates_no_arrays(kernels):
    m = siamese(kernels=kernels)
    x, y = _data(64)
    tr = Trainer(m, {"score": CrossEntropyLoss(), "diff": MSELoss()}, AdamW(lr=1e-3),
                 batch_size=16, epochs=3, progress=False, loss_weights={"diff": 2.0})
    tr.fit(x, y, val=(x, y), until_epoch=1)
    xs, ys = tr._prepare(x, y, "training")
    perm = np.arange(64)
    trace = trace_allocations(lambda: tr._epoch(xs, ys, perm), repeat=2)
    assert trace.array_bytes == 0, trace.where
    trace = trace_allocations(lambda: m.plan(16).forward(), repeat=3)
    assert trace.array_bytes == 0, trace.where


def test_summary_save_and_load(tmp_path):
    m = siamese(seed=4)
    lines = []
    text = m.summary(batch_size=4, print_fn=lines.append)
    assert lines == [text]
    assert "enc" in text and "mlp.Linear" in text and "(16,)" in text and "core.Concat" in text
    rows = {r[0]: r for r in __import__("qorus_core.summary", fromlist=["x"]).summary_rows(m)}
    assert rows["enc"][3] == 8 * 16 + 16 and rows["enc@1"][3] == 0      # shared: counted once
    assert f"parameters: {m.num_parameters:,}" in text
    m.save(tmp_path / "m")
    back = Model.load(tmp_path / "m")
    x, _ = _data()
    np.testing.assert_allclose(back.predict(x)["score"], m.predict(x)["score"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(back.parameters()["enc.weight"], m.parameters()["enc.weight"])


def test_a_bad_config_key_names_the_closest():
    from qorus_core import layer_from_dict
    with pytest.raises(ConfigError, match=r"unknown config key 'out_feature' \(valid keys: "
                                          r"in_features, out_features, bias\); did you mean 'out_features'"):
        layer_from_dict({"type": "mlp.Linear", "out_feature": 3})


class PairOps(Layer):
    """A layer of two inputs (the second optional) and two outputs: (x * g, x + g), g = 2
    when absent. Shows the contract: build gets a tuple of Specs (None where absent) and
    returns a tuple; forward and backward see ctx.xs / ctx.ys / ctx.dxs / ctx.dys."""

    inputs = ("x", "gate?")

    def build(self, x, b):
        a, g = x
        if g is not None and g.shape != a.shape:
            raise ShapeError(f"PairOps: gate {g.shape} must match x {a.shape}")
        if g is None:
            b.scratch("two", a.shape)
        return a, a

    def forward(self, x, ctx):
        k, g = ctx.k, ctx.xs[1]
        if g is None:
            k.fill(ctx.two, 2.0)
            g = ctx.two
        k.mul(x, g, ctx.ys[0])
        k.add(x, g, ctx.ys[1])
        return ctx.y

    def backward(self, dy, ctx):
        k, (d0, d1), (dx, dg) = ctx.k, ctx.dys, ctx.dxs
        g = ctx.xs[1]
        if g is None:
            k.fill(ctx.two, 2.0)
            g = ctx.two
        if dx is not None:                 # dx = d0 * g + d1
            k.mul(d0, g, dx)
            k.add(dx, d1, dx)
        if dg is not None:                 # dg = d0 * x + d1
            k.mul(d0, ctx.x, dg)
            k.add(dg, d1, dg)
        return dx


@pytest.mark.parametrize("use", ["both", "first", "no_gate"])
def test_a_layer_of_several_inputs_and_outputs(use, kernels):
    """Gradients of a two-in, two-out layer by finite differences: both outputs read, one
    left unread (its gradient is zero-filled), the optional input absent."""
    x, g = Input((5,), name="x", grad=True), Input((5,), name="g", grad=True)
    p, s = PairOps()(x) if use == "no_gate" else PairOps()(x, gate=g)
    out = Linear(5, 3)(p) if use == "first" else Linear(10, 3)(ops.concat([p, s], -1))
    inputs = [x] if use == "no_gate" else [x, g]
    m = Model(inputs=inputs, outputs=out, seed=1, kernels=kernels)
    rng = np.random.default_rng(0)
    feed = {n: rng.standard_normal((4, 5)).astype(np.float32) for n in m.input_names}
    r = rng.standard_normal((4, 3))
    plan = m.plan(4, train=True)
    for n, a in feed.items():
        plan.inputs[n].a[...] = a
    plan.forward()
    plan.dy.a[...] = r
    m.zero_grad()
    plan.backward()
    for n in m.input_names:
        got = plan.dinputs[n].a.copy()
        for i in range(0, 20, 3):
            fp = {k: v.copy() for k, v in feed.items()}
            fm = {k: v.copy() for k, v in feed.items()}
            fp[n].reshape(-1)[i] += 1e-2
            fm[n].reshape(-1)[i] -= 1e-2
            num = ((m.predict(fp) - m.predict(fm)).astype(np.float64) * r).sum() / 2e-2
            assert abs(num - got.reshape(-1)[i]) < 1e-2 * (1 + abs(num)), (n, i)


def test_inputs_get_a_gradient_only_when_asked():
    a, b = Input((4,), name="a", grad=True), Input((4,), name="b")
    m = Model(inputs=[a, b], outputs=ops.mul(a, b))
    p = m.plan(2, train=True)
    assert p.dinputs["a"] is not None and p.dinputs["b"] is None
    assert m.plan(2, train=True, input_grad=True).dinputs["b"] is not None
    with pytest.raises(ConfigError, match="only an f32 input can have a gradient"):
        Input((3,), name="bad", dtype="i32", grad=True)


def test_a_deep_dag_reuses_memory_and_nests_a_model(kernels):
    """A DenseNet-style stack of 6 blocks reuses activation memory across branches; a model
    called on nodes (nested) equals its own predictions."""
    inner = _dense_block()
    x = Input((5,), name="x")
    h = x
    for _ in range(6):
        h = ops.add(h, Linear(5, 5)(ReLU()(h)))
    m = Model(inputs=x, outputs=inner(h), kernels=kernels)
    mem = m.plan(32, train=True).memory()
    assert mem["activations"] < 0.6 * mem["activations_unplanned"], mem
    xs = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    w = m.parameters()
    hh = xs.astype(np.float64)
    for i in range(6):
        name = "linear" if i == 0 else f"linear_{i}"
        hh = hh + np.maximum(hh, 0) @ w[f"{name}.weight"].T + w[f"{name}.bias"]
    inner.load_state_dict({k.split(".", 1)[1]: v for k, v in w.items() if k.startswith("functional.")})
    np.testing.assert_allclose(m.predict(xs), inner.predict(hh.astype(np.float32)), rtol=1e-4,
                               atol=1e-5)


def test_digits_multitask_example(capsys):
    """examples/digits_multitask.py end to end, a few epochs: both heads learn."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "digits_multitask.py"
    spec = importlib.util.spec_from_file_location("digits_multitask", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    test = mod.main(["--epochs", "4"])
    assert test["digit_accuracy"] > 0.8 and test["high_accuracy"] > 0.8, test
    assert "test: digit accuracy" in capsys.readouterr().out


def test_an_output_other_layers_read_gets_both_gradients(kernels):
    """outputs {h, y(h)}: h's gradient is its loss's plus what flows back from y."""
    from qorus_layers_mlp import Tanh

    x = Input((4,), name="x", grad=True)
    h = Tanh()(Linear(4, 5)(x))
    m = Model(inputs=x, outputs={"h": h, "y": Linear(5, 3)(h)}, seed=0, kernels=kernels)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((2, 4)).astype(np.float32)
    r = {"h": rng.standard_normal((2, 5)), "y": rng.standard_normal((2, 3))}
    p = m.plan(2, train=True)
    p.inputs["x"].a[...] = xs
    p.forward()
    for k in r:
        p.doutputs[k].a[...] = r[k]
    m.zero_grad()
    p.backward()

    def total(xx):
        o = m.predict(xx)
        return sum((o[k].astype(np.float64) * r[k]).sum() for k in r)

    for i in range(xs.size):
        a, b = xs.copy(), xs.copy()
        a.reshape(-1)[i] += 1e-2
        b.reshape(-1)[i] -= 1e-2
        num = (total(a) - total(b)) / 2e-2
        assert abs(num - p.dinputs["x"].a.reshape(-1)[i]) < 1e-3 * (1 + abs(num))


def test_check_gradients_takes_layers_of_several_inputs_and_outputs():
    from qorus_core.ops import Concat, Gather, Split

    assert check_gradients(PairOps(), [(5,), (5,)]).checked >= 10
    assert check_gradients(Concat(-1), [(2, 3), (2, 4)]).errors.keys() == {"input xs0", "input xs1"}
    assert "input x" in check_gradients(Gather(1), [(5, 3), (7, 3)], input_dtype=["f32", "i32"],
                                        input_range=(0, 5)).errors
    assert check_gradients(Split(sizes=[2, 4], axis=1), (6, 2)).checked > 0

    class Wrong(PairOps):
        def backward(self, dy, ctx):
            super().backward(dy, ctx)
            ctx.k.scale(ctx.dxs[1], 1.1)       # 10% off in the gate's gradient
            return ctx.dx

    with pytest.raises(AssertionError, match="gradient of input gate"):
        check_gradients(Wrong(), [(5,), (5,)])


def test_input_gradients_of_separate_branches_do_not_share_memory(kernels):
    """Two inputs read by different layers: each gradient is its own (they were given one
    slot, and the later backward overwrote the earlier input's gradient)."""
    a, b = Input((3,), name="a", grad=True), Input((4,), name="b", grad=True)
    la, lb = Linear(3, 2), Linear(4, 2)
    m = Model(inputs=[a, b], outputs=[la(a, name="la"), lb(b, name="lb")], seed=0,
              kernels=kernels)
    p = m.plan(2, train=True, input_grad=True)
    assert p.dinputs["a"].p != p.dinputs["b"].p
    p.inputs["a"].a[...] = 1.0
    p.inputs["b"].a[...] = 1.0
    p.forward()
    for t in p.doutputs.values():
        t.a[...] = 1.0
    p.backward()
    w = m.parameters()
    np.testing.assert_allclose(p.dinputs["a"].a, np.tile(w["la.weight"].sum(0), (2, 1)), rtol=1e-6)
    np.testing.assert_allclose(p.dinputs["b"].a, np.tile(w["lb.weight"].sum(0), (2, 1)), rtol=1e-6)
