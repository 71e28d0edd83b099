"""rnn.RNN / rnn.LSTM / rnn.GRU: gradients, C-vs-NumPy parity, PyTorch parity (outputs, final
states, gradients; 2 layers, given initial state), state buffers, config round trip, errors,
discovery through the entry point and no allocation after the first training step."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qorus_core import Model, Sequential, layer_from_dict, layer_to_dict
from qorus_core.errors import ConfigError, QorusError
from qorus_core.kernels import c_status
from qorus_core.testing import check_gradients, check_kernel_parity, trace_allocations
from qorus_layers_rnn import GRU, LSTM, RNN

KERNELS = ["numpy"] + (["c"] if c_status()[0] else [])
CLASSES = [RNN, LSTM, GRU]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_gradients_match_finite_differences(cls, return_sequences):
    layer = cls(3, 4, num_layers=2, return_sequences=return_sequences)
    result = check_gradients(layer, input_shape=(5, 3), batch=2, samples=8)
    assert result.checked > 0 and "input" in result.errors and "1.weight_hh_l1" not in result.errors
    assert {"weight_ih_l0", "weight_hh_l1", "bias_hh_l1"} <= set(result.errors)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_c_and_numpy_kernels_agree(cls):
    check_kernel_parity(cls(5, 7, num_layers=2), input_shape=(6, 5), batch=3)
    check_kernel_parity(cls(5, 17, bias=False, return_sequences=False), input_shape=(4, 5), batch=2)


def _torch_case(cls, kernels: str, seed: int = 0):
    """The same 2-layer network in PyTorch and Qorus, fed the same input and initial state."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    B, T, I, H, L = 3, 7, 5, 6, 2
    ref = getattr(torch.nn, cls.__name__)(I, H, num_layers=L, batch_first=True)
    model = Model(cls(I, H, num_layers=L), (T, I), kernels=kernels)
    model.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = torch.randn(B, T, I, requires_grad=True)
    h0, c0 = torch.randn(L, B, H), torch.randn(L, B, H)
    plan = model.plan(B, train=True, input_grad=True)
    bufs = model.buffers()
    bufs["h0"][...] = h0.numpy()
    if cls is LSTM:
        bufs["c0"][...] = c0.numpy()
        out, (h_n, c_n) = ref(x, (h0, c0))
    else:
        out, h_n = ref(x, h0)
        c_n = None
    plan.x.a[...] = x.detach().numpy()
    y = plan.forward().a.copy()
    r = torch.randn_like(out)
    (out * r).sum().backward()
    model.zero_grad()
    plan.dy.a[...] = r.numpy()
    plan.backward()
    return torch, ref, model, plan, bufs, (x, out, h_n, c_n, y)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_matches_pytorch(cls, kernels):
    torch, ref, model, plan, bufs, (x, out, h_n, c_n, y) = _torch_case(cls, kernels)
    tol = {"rtol": 1e-4, "atol": 1e-5}
    assert list(model.parameters()) == list(ref.state_dict())    # names and order
    np.testing.assert_allclose(y, out.detach().numpy(), **tol)
    np.testing.assert_allclose(bufs["h_n"], h_n.detach().numpy(), **tol)
    if c_n is not None:
        np.testing.assert_allclose(bufs["c_n"], c_n.detach().numpy(), **tol)
    np.testing.assert_allclose(plan.dx.a, x.grad.numpy(), **tol)
    grads = model.gradients()
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), err_msg=name, **tol)


@pytest.mark.skipif("c" not in KERNELS, reason="C kernels unavailable")
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_results_do_not_depend_on_the_thread_count(cls):
    from qorus_core.kernels import get_kernels

    ck = get_kernels("c")
    before = ck.threads
    x = np.random.default_rng(4).standard_normal((48, 5, 16)).astype(np.float32)
    results = []
    try:
        for n in (1, 2, 3):
            ck.set_threads(n)
            model = Model(cls(16, 96, num_layers=2), (5, 16), seed=1, kernels=ck)
            plan = model.plan(48, train=True, input_grad=True)
            plan.x.a[...] = x
            y = plan.forward().a.copy()
            model.zero_grad()
            plan.dy.a[...] = 0.5
            plan.backward()
            results.append((y, plan.dx.a.copy(), model.grads.a.copy()))
    finally:
        ck.set_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_last_output_only_is_the_last_timestep(cls):
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    full = Model(cls(3, 4, num_layers=2), (6, 3), seed=5)
    last = Model(cls(3, 4, num_layers=2, return_sequences=False), (6, 3), seed=5)
    assert last.output_shape == (4,)
    np.testing.assert_array_equal(last.predict(x), full.predict(x)[:, -1])


@pytest.mark.parametrize("cls", [LSTM, GRU], ids=lambda c: c.__name__)
def test_stateful_continues_where_the_last_call_ended(cls):
    x = np.random.default_rng(1).standard_normal((2, 8, 3)).astype(np.float32)
    whole = Model(cls(3, 4), (8, 3), seed=2).predict(x)
    halves = Model(cls(3, 4, stateful=True), (4, 3), seed=2)
    first, second = halves.predict(x[:, :4]), halves.predict(x[:, 4:])
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-6)
    bufs = halves.buffers()
    np.testing.assert_array_equal(bufs["h0"], bufs["h_n"])
    np.testing.assert_allclose(bufs["h_n"][0], whole[:, -1], rtol=1e-5, atol=1e-6)
    bufs["h0"][...] = 0                               # reset: starts from zero again
    if cls is LSTM:
        bufs["c0"][...] = 0
    np.testing.assert_allclose(halves.predict(x[:, :4]), first, rtol=1e-6)


def test_state_buffers_are_named_by_path_and_not_persistent():
    model = Model(Sequential([LSTM(3, 4, num_layers=2)]), (5, 3))
    model.predict(np.zeros((2, 5, 3), np.float32))
    bufs = model.buffers()
    assert {k: v.shape for k, v in bufs.items()} == {n: (2, 2, 4) for n in
                                                     ("0.h0", "0.h_n", "0.c0", "0.c_n")}
    assert not any(k in model.state_dict() for k in bufs)     # carried state is not saved


@pytest.mark.parametrize("layer", [RNN(3, 4), LSTM(2, 5, num_layers=3, bias=False),
                                   GRU(4, 2, return_sequences=False, stateful=True)],
                         ids=["rnn", "lstm", "gru"])
def test_config_round_trip(layer):
    d = json.loads(json.dumps(layer_to_dict(layer)))
    again = layer_from_dict(d)
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    shape = (3, layer.input_size)
    x = np.random.default_rng(0).standard_normal((2,) + shape).astype(np.float32)
    np.testing.assert_array_equal(Model(layer, shape, seed=3).predict(x),
                                  Model(again, shape, seed=3).predict(x))


def test_bad_configs_and_inputs_are_errors():
    for bad in ({"input_size": 0, "hidden_size": 4}, {"input_size": 3, "hidden_size": -1},
                {"input_size": 3, "hidden_size": 4, "num_layers": 0},
                {"input_size": 3.5, "hidden_size": 4}):
        with pytest.raises(ConfigError, match="LSTM"):
            LSTM(**bad)
    with pytest.raises(QorusError, match=r"rnn\.GRU.*input_size 4.*got 3"):
        Model(Sequential([GRU(4, 8)]), (10, 3))
    with pytest.raises(QorusError, match=r"rnn\.LSTM.*\[batch, time, 4\]"):
        Model(Sequential([LSTM(4, 8)]), (10,))
    with pytest.raises(QorusError, match="expected shape"):
        Model(RNN(4, 8), (10, 4)).predict(np.zeros((2, 9, 4), np.float32))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_training_step_allocates_no_arrays(cls, kernels):
    from qorus_core.train import AdamW

    model = Model(cls(4, 8, num_layers=2), (6, 4), kernels=kernels)
    opt = AdamW(lr=1e-3).bind(model)          # before the plans: binding drops them
    train, infer = model.plan(5, train=True, input_grad=True), model.plan(5, train=False)
    train.x.a[...] = 0.3

    def step():
        model.zero_grad()
        train.forward()
        train.dy.a[...] = 1.0
        train.backward()
        opt.step()
        model.run.step += 1
        infer.forward()

    step()
    trace = trace_allocations(step, repeat=3)
    assert trace.array_bytes == 0, trace.where


def test_a_few_training_steps_lower_the_loss():
    from qorus_core.train import AdamW, CrossEntropyLoss, Trainer

    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 6, 3)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int32)        # needs the whole sequence
    net = Sequential([LSTM(3, 12, return_sequences=False),
                      layer_from_dict({"type": "mlp.Linear", "out_features": 2})])
    trainer = Trainer(Model(net, (6, 3), seed=0), CrossEntropyLoss(), AdamW(lr=2e-2),
                      batch_size=32, epochs=6, progress=False)
    history = trainer.fit(x, y)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]


def test_installed_entry_point_is_discovered(monkeypatch, capsys):
    from importlib import metadata

    from qorus_core import cli
    from qorus_core.registry import Registry, reset_registry

    try:
        dist = metadata.distribution("qorus-layers-rnn")
    except metadata.PackageNotFoundError:
        pytest.skip("qorus-layers-rnn is not installed (pip install -e plugins/rnn)")
    assert {ep.name: ep.value for ep in dist.entry_points if ep.group == "qorus"} == {
        "rnn": "qorus_layers_rnn.plugin"}
    monkeypatch.delenv("QORUS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    reset_registry(Registry(autoload=True))
    try:
        assert cli.main(["layers", "--json"]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    finally:
        reset_registry(None)
    for cls in CLASSES:
        row = rows[f"rnn.{cls.__name__}"]
        assert row["plugin"] == "rnn" and row["distribution"] == "qorus-layers-rnn"


def test_char_lstm_example_smoke(tmp_path, capsys):
    """examples/char_lstm.py end to end on a tiny corpus: training lowers the loss, the
    stateful T=1 copy samples the requested number of bytes."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "examples" / "char_lstm.py"
    if not path.is_file():
        pytest.skip("examples/char_lstm.py is not in this checkout")
    spec = importlib.util.spec_from_file_location("char_lstm_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"the cat sat on the mat. the dog sat on the log.\n" * 40)
    out = mod.main(["--data", str(corpus), "--seq", "12", "--stride", "4", "--embed", "8",
                    "--hidden", "24", "--layers", "1", "--epochs", "3", "--batch", "16",
                    "--lr", "0.01", "--sample-len", "25"])
    assert len(out["sample"]) == 25
    assert out["history"][-1]["loss"] < out["history"][0]["loss"]
    assert out["val_loss"] < out["unigram_baseline"]
    assert "validation loss" in capsys.readouterr().out
