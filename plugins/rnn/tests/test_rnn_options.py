"""The issue-15 options of rnn.RNN / rnn.LSTM / rnn.GRU without PyTorch: finite-difference
gradients (x, h0, c0, parameters; lengths; dropout), what padding may not change, config
round trips, errors, and no allocation after the first training step."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qorus_core import Input, Model, layer_from_dict, layer_to_dict
from qorus_core.errors import ConfigError, QorusError, ShapeError
from qorus_core.kernels import c_status
from qorus_core.testing import check_gradients, trace_allocations
from qorus_layers_rnn import GRU, LSTM, RNN

KERNELS = ["numpy"] + (["c"] if c_status()[0] else [])
CLASSES = [RNN, LSTM, GRU]


def _shapes(cls, T: int, n_in: int, H: int, states: int, lengths: bool):
    """check_gradients' input shapes and dtypes in the order of ``cls.inputs``."""
    shapes, dtypes = [(T, n_in)], ["f32"]
    for _ in range(1 + (cls is LSTM)):
        shapes.append((states, H))
        dtypes.append("f32")
    if lengths:
        shapes.append(())
        dtypes.append("i32")
    return shapes, dtypes


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_gradients_bidirectional_states_and_lengths(cls):
    T, H = 4, 3
    layer = cls(3, H, num_layers=2, bidirectional=True, return_state=True)
    shapes, dtypes = _shapes(cls, T, 3, H, 4, lengths=True)
    result = check_gradients(layer, shapes, batch=3, input_dtype=dtypes, samples=6,
                             input_range=(1, T + 1))
    at = cls.__name__.lower()                 # the functional model names the layer so
    expected = {"input x", "input h0", f"{at}.weight_hh_l1_reverse", f"{at}.bias_ih_l0_reverse"}
    assert expected | ({"input c0"} if cls is LSTM else set()) <= set(result.errors)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_gradients_with_dropout_lengths_and_the_last_state(cls):
    """Three stacked layers, dropout between them, y = the top layer's last valid state."""
    T = 5
    layer = cls(2, 3, num_layers=3, dropout=0.4, return_sequences=False)
    shapes, dtypes = _shapes(cls, T, 2, 3, 3, lengths=True)
    result = check_gradients(layer, shapes, batch=4, input_dtype=dtypes, samples=6,
                             input_range=(1, T + 1))
    at = cls.__name__.lower()
    assert {"input x", "input h0", f"{at}.weight_ih_l2", f"{at}.weight_hh_l0"} <= set(result.errors)


def test_gradients_of_a_bidirectional_last_state_with_dropout():
    result = check_gradients(GRU(3, 2, num_layers=2, bidirectional=True, dropout=0.5,
                                 return_sequences=False), input_shape=(4, 3), batch=3, samples=6)
    assert {"input", "weight_ih_l1_reverse"} <= set(result.errors)


def _lengths_model(cls, kernels, T=6, n_in=3, H=4, **kw):
    x, lengths = Input((T, n_in), name="x", grad=True), Input((), name="lengths", dtype="i32")
    outs = cls(n_in, H, num_layers=2, return_state=True, **kw)(x, lengths=lengths, name="rnn")
    return Model(inputs=[x, lengths], outputs=dict(zip(("y", "h_n", "c_n"), outs)), seed=1,
                 kernels=kernels)


def _pass(model: Model, plan, x: np.ndarray, lengths) -> dict[str, np.ndarray]:
    """Outputs, dx and the parameter gradients of one training pass (output gradients 1)."""
    plan.inputs["x"].a[...], plan.inputs["lengths"].a[...] = x, lengths
    plan.forward()
    model.zero_grad()
    for g in plan.doutputs.values():
        g.a[...] = 1.0
    plan.backward()
    return {**{k: v.a.copy() for k, v in plan.outputs.items()},
            "dx": plan.dinputs["x"].a.copy(), "grads": model.grads.a.copy()}


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_padding_changes_nothing_and_gets_no_gradient(cls, kernels):
    model = _lengths_model(cls, kernels, bidirectional=True)
    rng = np.random.default_rng(0)
    lengths = np.array([6, 2, 4], np.int32)
    x = rng.standard_normal((3, 6, 3)).astype(np.float32)
    noisy = x.copy()
    for b, n in enumerate(lengths):
        noisy[b, n:] = rng.standard_normal(noisy[b, n:].shape) * 100
    plan = model.plan(3, train=True)
    results = [_pass(model, plan, inp, lengths) for inp in (x, noisy)]
    for k in results[0]:
        np.testing.assert_allclose(results[1][k], results[0][k], rtol=1e-6, atol=1e-6, err_msg=k)
    for b, n in enumerate(lengths):
        assert not results[0]["y"][b, n:].any() and not results[0]["dx"][b, n:].any()


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_plan_reused_with_other_lengths_gives_what_a_fresh_one_gives(cls, kernels):
    """Each batch brings its own lengths: nothing of the previous pass may leak (the steps
    past every length are skipped, their gate gradients must still be zero)."""
    x = np.random.default_rng(2).standard_normal((3, 6, 3)).astype(np.float32)
    short = [4, 2, 3]
    reused = _lengths_model(cls, kernels, bidirectional=True)
    plan = reused.plan(3, train=True)
    for lengths in ([6, 6, 6], [6, 1, 5]):
        _pass(reused, plan, x, lengths)
    got = _pass(reused, plan, x, short)
    fresh = _lengths_model(cls, kernels, bidirectional=True)
    want = _pass(fresh, fresh.plan(3, train=True), x, short)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_one_sequence_of_a_batch_is_that_sequence_alone(cls):
    """Row b with length n gives what the same layer gives on its first n steps alone."""
    model = _lengths_model(cls, "numpy", bidirectional=True)
    x = np.random.default_rng(1).standard_normal((2, 6, 3)).astype(np.float32)
    out = model.predict({"x": x, "lengths": np.array([6, 3], np.int32)})
    short = Model(cls(3, 4, num_layers=2, bidirectional=True), (3, 3), seed=1, kernels="numpy")
    short.load_state_dict({k.removeprefix("rnn."): v for k, v in model.state_dict().items()})
    np.testing.assert_allclose(out["y"][1, :3], short.predict(x[1:, :3])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["h_n"][1], short.buffers()["h_n"][:, 0], rtol=1e-5, atol=1e-6)


def test_lengths_may_be_a_column():
    """lengths [B, 1] (e.g. Input((1,), dtype="i32")) means what lengths [B] means."""
    x = np.random.default_rng(3).standard_normal((3, 6, 3)).astype(np.float32)
    lengths = np.array([2, 6, 4], np.int32)
    flat = _lengths_model(GRU, "numpy").predict({"x": x, "lengths": lengths})
    node, col = Input((6, 3), name="x"), Input((1,), name="lengths", dtype="i32")
    outs = GRU(3, 4, num_layers=2, return_state=True)(node, lengths=col, name="rnn")
    model = Model(inputs=[node, col], outputs=dict(zip(("y", "h_n"), outs)), seed=1,
                  kernels="numpy")
    column = model.predict({"x": x, "lengths": lengths[:, None]})
    for k in flat:
        np.testing.assert_array_equal(column[k], flat[k])


@pytest.mark.parametrize("kernels", KERNELS)
def test_bad_lengths_are_an_error_naming_the_layer(kernels):
    model = _lengths_model(LSTM, kernels)
    x = np.zeros((3, 6, 3), np.float32)
    plans = [model.plan(3, train=True)]
    plans.append(model.plan(3))               # after the training plan: that one stays fresh
    for bad in ([6, 0, 2], [7, 1, 1], [-1, 3, 3]):
        for plan in plans:
            plan.inputs["lengths"].a[...] = bad
            with pytest.raises(ShapeError, match=r"layer rnn \(rnn\.LSTM\): lengths must be in "
                                                 r"\[1, 6\].*from -?\d+ to \d+"):
                plan.forward()
    good = model.predict({"x": x, "lengths": np.array([6, 1, 2], np.int32)})
    assert not good["y"][1, 1:].any() and good["y"][1, 0].any()


def test_bad_options_and_inputs_are_errors():
    for kw, match in (({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"),
                      ({"bidirectional": 1}, "bidirectional"), ({"return_state": "no"},
                                                                 "return_state"),
                      ({"dropout_seed": 1.5}, "dropout_seed"),
                      ({"stateful": True, "bidirectional": True}, "stateful and bidirectional")):
        with pytest.raises(ConfigError, match=rf"rnn\.GRU: {match}"):
            GRU(3, 4, **kw)
    x = Input((5, 3), name="x")
    with pytest.raises(QorusError, match=r"rnn\.LSTM.*h0 must be float32 \[batch, num_layers \* "
                                         r"num_directions, hidden_size\] = \[1, 4, 4\]"):
        LSTM(3, 4, num_layers=2, bidirectional=True)(x, h0=Input((2, 4)))
    with pytest.raises(QorusError, match=r"rnn\.RNN.*lengths must be int32"):
        RNN(3, 4)(x, lengths=Input(()))
    with pytest.raises(ConfigError, match=r"stateful carries its state"):
        GRU(3, 4, stateful=True)(x, h0=Input((1, 4)))


@pytest.mark.parametrize("layer", [
    LSTM(3, 4, num_layers=2, bidirectional=True, dropout=0.25, dropout_seed=7, return_state=True),
    GRU(3, 2, bidirectional=True, return_sequences=False),
    RNN(3, 5, num_layers=3, dropout=0.5)], ids=["lstm", "gru", "rnn"])
def test_config_round_trip_of_the_new_options(layer):
    d = json.loads(json.dumps(layer_to_dict(layer)))
    again = layer_from_dict(d)
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    assert {"bidirectional", "dropout", "dropout_seed", "return_state"} <= set(d["config"])
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    for a, b in zip(_predict(layer, x), _predict(again, x)):
        np.testing.assert_array_equal(a, b)


def _predict(layer, x: np.ndarray) -> list[np.ndarray]:
    """Every output of a model of ``layer`` alone (seeded) on ``x``."""
    node = Input(x.shape[1:], name="x")
    out = layer(node)
    return Model(inputs=node, outputs=list(out) if isinstance(out, tuple) else [out],
                 seed=2).predict(x)

@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_training_step_with_every_option_allocates_no_arrays(cls, kernels):
    from qorus_core.train import AdamW

    T, H = 6, 4
    ins = [Input((T, 3), name="x", grad=True), Input((4, H), name="h0", grad=True)]
    if cls is LSTM:
        ins.append(Input((4, H), name="c0", grad=True))
    ins.append(Input((), name="lengths", dtype="i32"))
    layer = cls(3, H, num_layers=2, bidirectional=True, dropout=0.3, return_state=True)
    model = Model(inputs=ins, outputs=list(layer(*ins)), kernels=kernels)
    opt = AdamW(lr=1e-3).bind(model)          # before the plans: binding drops them
    train, infer = model.plan(5, train=True), model.plan(5, train=False)
    for plan in (train, infer):
        plan.inputs["x"].a[...] = 0.3
        plan.inputs["lengths"].a[...] = [6, 1, 3, 5, 2]

    def step():
        model.zero_grad()
        train.forward()
        for g in train.doutputs.values():
            g.a[...] = 1.0
        train.backward()
        opt.step()
        model.run.step += 1
        infer.forward()

    step()
    trace = trace_allocations(step, repeat=3)
    assert trace.array_bytes == 0, trace.where
