"""The Python API refuses bad arguments with a ConfigError naming the owner and the field, and
never coerces (``Linear(8, 2.5)`` is not ``Linear(8, 2)``); labels that a cast would wrap are
refused; the sampler is greedy at tiny temperatures and refuses non-finite logits (issue 12)."""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest

from qorus_core import Model, Sequential
from qorus_core.errors import ConfigError, DataError, NumericsError, ShapeError
from qorus_core.io.datasets import load_csv, load_npz
from qorus_core.layer import layer_from_dict, layer_to_dict
from qorus_core.testing import trace_allocations
from qorus_core.train.losses import CrossEntropyLoss, MSELoss
from qorus_core.train.optimizers import SGD, Adam, AdamW
from qorus_core.train.schedules import Constant, Cosine, make_schedule
from qorus_core.train.trainer import Trainer
from qorus_core.validate import boolean, choice, integer, maybe, positive_int, probability, real
from qorus_layers_cnn import AvgPool2d, BatchNorm2d, Conv2d, MaxPool2d
from qorus_layers_llm import (
    GPT,
    Embedding,
    FeedForward,
    LMHead,
    PositionalEmbedding,
    RMSNorm,
    RotaryEmbedding,
    SwiGLUFeedForward,
    TransformerBlock,
)
from qorus_layers_llm.sample import sample_options
from qorus_layers_llm.sampler import GREEDY_BELOW, Sampler
from qorus_layers_mlp import Dropout, Flatten, LayerNorm, Linear
from qorus_layers_rnn import GRU, LSTM, RNN

NAN, INF = float("nan"), float("inf")


# ----------------------------------------------------------------- the helpers themselves
@pytest.mark.parametrize("value", [2.5, 2.0, True, np.bool_(True), "3", None, [3], 0, -1])
def test_positive_int_refuses(value):
    with pytest.raises(ConfigError, match=r"^x\.Y: f must be a positive int, got "):
        positive_int(value, "f", "x.Y")


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_positive_int_accepts_numpy_ints_as_python_ints(value):
    got = positive_int(value, "f", "o")
    assert got == 3 and type(got) is int


@pytest.mark.parametrize("value", [NAN, INF, -INF, "0.5", True, None, 10 ** 400, -0.1, 1.5])
def test_real_refuses(value):
    with pytest.raises(ConfigError, match=r"^o: f must be a finite number in \[0, 1\], got "):
        real(value, "f", "o", lo=0.0, hi=1.0)


def test_real_bounds_and_types():
    assert type(real(np.float32(0.5), "f", "o")) is float and real(1, "f", "o") == 1.0
    assert real(INF, "f", "o", finite=False) == INF
    with pytest.raises(ConfigError, match=r"must be a finite number > 0, got 0"):
        real(0, "f", "o", lo=0.0, lo_open=True)
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        probability(0.0, "f", "o", lo_open=True)
    assert probability(1, "f", "o", lo_open=True) == 1.0
    assert integer(-5, "f", "o") == -5
    with pytest.raises(ConfigError, match=r"an int in \[0, 3\]"):
        integer(4, "f", "o", lo=0, hi=3)
    assert boolean(np.bool_(False), "f", "o") is False
    for bad in (0, 1, "false", None):
        with pytest.raises(ConfigError, match="must be true or false"):
            boolean(bad, "f", "o")
    assert choice("a", "f", "o", ("a", "b")) == "a"
    with pytest.raises(ConfigError, match="one of 'a', 'b'"):
        choice(["a"], "f", "o", ("a", "b"))
    assert maybe(positive_int, None, "f", "o") is None


# ----------------------------------------------------------------- layer constructors
BAD_LAYERS = [
    (lambda: Linear(8, 2.5), "mlp.Linear: out_features must be a positive int, got 2.5"),
    (lambda: Linear(8, True), "mlp.Linear: out_features must be a positive int, got True"),
    (lambda: Linear(8, "4"), "mlp.Linear: out_features"),
    (lambda: Linear(8, 0), "mlp.Linear: out_features"),
    (lambda: Linear(8.0, 4), "mlp.Linear: in_features"),
    (lambda: Linear(8, 4, bias="no"), "mlp.Linear: bias must be true or false"),
    (lambda: Dropout(NAN), "mlp.Dropout: p"),
    (lambda: Dropout(1.0), "mlp.Dropout: p"),
    (lambda: Dropout("0.5"), "mlp.Dropout: p"),
    (lambda: Dropout(0.1, seed=1.5), "mlp.Dropout: seed"),
    (lambda: Flatten(1.0), "mlp.Flatten: start_dim"),
    (lambda: Flatten(0), "mlp.Flatten: start_dim"),
    (lambda: LayerNorm(4.5), "mlp.LayerNorm: normalized_shape"),
    (lambda: LayerNorm(4, eps=NAN), "mlp.LayerNorm: eps"),
    (lambda: LayerNorm(4, eps=-1e-5), "mlp.LayerNorm: eps"),
    (lambda: Conv2d(3, 2.5, 3), "cnn.Conv2d: out_channels"),
    (lambda: Conv2d(3.0, 4, 3), "cnn.Conv2d: in_channels"),
    (lambda: Conv2d(3, 4, 3.0), "cnn.Conv2d: kernel_size"),
    (lambda: Conv2d(3, 4, (3, "3")), "cnn.Conv2d: kernel_size"),
    (lambda: Conv2d(3, 4, "33"), "cnn.Conv2d: kernel_size"),
    (lambda: Conv2d(3, 4, 3, stride=True), "cnn.Conv2d: stride"),
    (lambda: Conv2d(3, 4, 3, groups=1.0), "cnn.Conv2d: groups"),
    (lambda: Conv2d(3, 4, 3, bias=1), "cnn.Conv2d: bias"),
    (lambda: BatchNorm2d(4.0), "cnn.BatchNorm2d: num_features"),
    (lambda: BatchNorm2d(4, eps=NAN), "cnn.BatchNorm2d: eps"),
    (lambda: BatchNorm2d(4, eps=0), "cnn.BatchNorm2d: eps"),
    (lambda: BatchNorm2d(4, momentum="0.1"), "cnn.BatchNorm2d: momentum"),
    (lambda: BatchNorm2d(4, momentum=None), "cnn.BatchNorm2d: momentum"),
    (lambda: MaxPool2d(2.0), "cnn.MaxPool2d: kernel_size"),
    (lambda: AvgPool2d(2, padding=0.5), "cnn.AvgPool2d: padding"),
    (lambda: RNN(4, 8.0), "rnn.RNN: hidden_size"),
    (lambda: LSTM(True, 8), "rnn.LSTM: input_size"),
    (lambda: GRU(4, 8, num_layers=2.0), "rnn.GRU: num_layers"),
    (lambda: GRU(4, 8, bias=0), "rnn.GRU: bias"),
    (lambda: LSTM(4, 8, stateful="yes"), "rnn.LSTM: stateful"),
    (lambda: Embedding(10.5, 4), "llm.Embedding: num_embeddings"),
    (lambda: Embedding(10, "4"), "llm.Embedding: embedding_dim"),
    (lambda: LMHead(8, 2.5), "llm.LMHead: vocab_size"),
    (lambda: LMHead(8, 16, bias="false"), "llm.LMHead: bias"),
    (lambda: FeedForward(8, d_ff=3.5), "llm.FeedForward: d_ff"),
    (lambda: FeedForward(8, activation=1), "llm.FeedForward: activation"),
    (lambda: SwiGLUFeedForward(8, 0), "llm.SwiGLUFeedForward: hidden"),
    (lambda: RMSNorm(8, eps=NAN), "llm.RMSNorm: eps"),
    (lambda: RMSNorm(8.0), "llm.RMSNorm: dim"),
    (lambda: PositionalEmbedding(16, 8, init_std=NAN), "llm.PositionalEmbedding: init_std"),
    (lambda: PositionalEmbedding(16.0, 8), "llm.PositionalEmbedding: max_len"),
    (lambda: RotaryEmbedding(2.0), "llm.RotaryEmbedding: n_heads"),
    (lambda: RotaryEmbedding(2, head_dim=3), "llm.RotaryEmbedding: head_dim"),
    (lambda: RotaryEmbedding(2, theta=0), "llm.RotaryEmbedding: theta"),
    (lambda: RotaryEmbedding(2, theta=NAN), "llm.RotaryEmbedding: theta"),
    (lambda: TransformerBlock(8.0, 2), "llm.TransformerBlock: d_model"),
    (lambda: TransformerBlock(8, 2, eps=NAN), "llm.TransformerBlock: eps"),
    (lambda: TransformerBlock(8, 2, norm=1), "llm.TransformerBlock: norm"),
    (lambda: TransformerBlock(8, 2, rope="yes"), "llm.TransformerBlock: rope"),
    (lambda: TransformerBlock(8, 2, rope_theta=-1.0), "llm.TransformerBlock: rope_theta"),
    (lambda: GPT(256.0, 8, 1, 2, 16), "llm.GPT: vocab_size"),
    (lambda: GPT(256, 8, True, 2, 16), "llm.GPT: n_layers"),
    (lambda: GPT(256, 8, 1, 2, 16, tie_embeddings="yes"), "llm.GPT: tie_embeddings"),
    (lambda: GPT(256, 8, 1, 2, 16, init_std=NAN), "llm.GPT: init_std"),
    (lambda: GPT(256, 8, 1, 2, 16, positional="alibi"), "llm.GPT: positional"),
]


@pytest.mark.parametrize("make,message", BAD_LAYERS, ids=[m for _, m in BAD_LAYERS])
def test_layer_constructors_refuse(make, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        make()


def test_bad_layer_in_a_config_names_the_field():
    with pytest.raises(ConfigError, match=r"mlp\.Linear: out_features must be a positive int, got 2\.5"):
        layer_from_dict({"type": "mlp.Linear", "out_features": 2.5})
    with pytest.raises(ConfigError, match=r"mlp\.Linear: out_features .* got True"):
        layer_from_dict({"type": "mlp.Linear", "out_features": True})


GOOD_LAYERS = [
    lambda: Linear(np.int64(8), np.int32(4), bias=np.bool_(False)),
    lambda: Dropout(np.float32(0.25), seed=np.int64(3)),
    lambda: LayerNorm(np.int64(4), eps=1),
    lambda: Flatten(np.int16(2)),
    lambda: Conv2d(np.int64(3), np.int64(4), (np.int64(3), 2), stride=np.int32(1), groups=1),
    lambda: BatchNorm2d(np.int64(4), momentum=np.float64(0.2)),
    lambda: MaxPool2d([2, np.int64(2)]),
    lambda: LSTM(np.int64(4), np.int64(8), num_layers=np.int8(2)),
    lambda: Embedding(np.int64(10), 4),
    lambda: LMHead(np.int64(8), np.int64(16)),
    lambda: FeedForward(8, d_ff=np.int64(16)),
    lambda: SwiGLUFeedForward(np.int64(8), 16),
    lambda: RMSNorm(8, eps=np.float32(1e-6)),
    lambda: PositionalEmbedding(16, 8, init_std=0),
    lambda: RotaryEmbedding(np.int64(2), head_dim=4, theta=500000),
    lambda: TransformerBlock(np.int64(8), np.int64(2), n_kv_heads=1, ffn="swiglu", norm="rmsnorm"),
    lambda: GPT(np.int64(64), 8, 1, 2, np.int64(16), eps=np.float32(1e-5)),
]


@pytest.mark.parametrize("make", GOOD_LAYERS)
def test_good_values_incl_numpy_ints_round_trip(make):
    layer = make()
    spec = json.loads(json.dumps(layer_to_dict(layer)))      # JSON-able: plain Python values
    again = layer_from_dict(spec)
    assert again.get_config() == layer.get_config()
    assert type(again) is type(layer)


def test_numpy_sized_layers_train_and_predict():
    x = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
    y = (np.arange(16) % 3).astype(np.int64)               # int64 labels that fit: fine
    model = Model(Sequential([Linear(np.int64(6), np.int64(5)), Linear(None, np.int32(3))]), (6,))
    trainer = Trainer(model, CrossEntropyLoss(), SGD(lr=np.float32(0.1)), batch_size=np.int64(8),
                      epochs=np.int64(2), seed=np.int64(1), progress=False)
    hist = trainer.fit(x, y)
    assert len(hist) == 2 and math.isfinite(hist[-1]["loss"])
    assert trainer.predict(x).shape == (16, 3)


# ----------------------------------------------------------------- trainer, optimizers, ...
def _model():
    return Model(Linear(4, 3), (4,))


BAD_TRAINER = [
    ({"batch_size": "x"}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
    ({"batch_size": True}, "batch_size"), ({"batch_size": 0}, "batch_size"),
    ({"epochs": -1}, "epochs"), ({"epochs": 1.5}, "epochs"), ({"epochs": "3"}, "epochs"),
    ({"clip_norm": NAN}, "clip_norm"), ({"clip_norm": 0}, "clip_norm"), ({"clip_norm": "1"}, "clip_norm"),
    ({"seed": "x"}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": True}, "seed"), ({"seed": -1}, "seed"),
    ({"shuffle": "yes"}, "shuffle"), ({"shuffle": 1}, "shuffle"),
    ({"checkpoint_every": 0}, "checkpoint_every"), ({"checkpoint_every": 1.5}, "checkpoint_every"),
    ({"eval_batch_size": 0}, "eval_batch_size"), ({"eval_batch_size": 2.5}, "eval_batch_size"),
    ({"progress": "x"}, "progress"), ({"checkpoint_dir": 5}, "checkpoint_dir"),
]


@pytest.mark.parametrize("kwargs,field", BAD_TRAINER, ids=[str(k) for k, _ in BAD_TRAINER])
def test_trainer_refuses(kwargs, field):
    m = _model()
    with pytest.raises(ConfigError, match=rf"^Trainer: {field} must be"):
        Trainer(m, CrossEntropyLoss(), SGD(lr=0.1), **kwargs)


def test_trainer_refuses_wrong_objects_and_until_epoch():
    m = _model()
    with pytest.raises(ConfigError, match="Trainer: loss must be a qorus loss"):
        Trainer(m, "mse", SGD(lr=0.1))
    with pytest.raises(ConfigError, match="Trainer: optimizer must be a qorus optimizer"):
        Trainer(m, MSELoss(), None)
    with pytest.raises(ConfigError, match="Trainer: schedule must be a qorus schedule"):
        Trainer(m, MSELoss(), SGD(lr=0.1), schedule=0.1)
    t = Trainer(m, MSELoss(), SGD(lr=0.1), progress=False)
    with pytest.raises(ConfigError, match="until_epoch"):
        t.fit(np.zeros((4, 4), np.float32), np.zeros((4, 3), np.float32), until_epoch=1.5)


BAD_OPTIMIZERS = [
    (lambda: AdamW(betas="ab"), "AdamW: betas"), (lambda: AdamW(betas=(0.9,)), "AdamW: betas"),
    (lambda: AdamW(betas=(0.9, 1.0)), "AdamW: betas[1]"), (lambda: Adam(betas=(NAN, 0.9)), "Adam: betas[0]"),
    (lambda: AdamW(betas=("a", "b")), "AdamW: betas[0]"), (lambda: AdamW(betas=0.9), "AdamW: betas"),
    (lambda: AdamW(eps=NAN), "AdamW: eps"), (lambda: AdamW(eps=-1e-8), "AdamW: eps"),
    (lambda: AdamW(lr=-1e-3), "AdamW: lr"), (lambda: AdamW(lr=NAN), "AdamW: lr"),
    (lambda: Adam(lr="0.1"), "Adam: lr"), (lambda: AdamW(lr=INF), "AdamW: lr"),
    (lambda: AdamW(weight_decay=-0.1), "AdamW: weight_decay"),
    (lambda: AdamW(weight_decay=NAN), "AdamW: weight_decay"),
    (lambda: SGD(lr=0.1, momentum=-0.1), "SGD: momentum"),
    (lambda: SGD(lr=0.1, momentum=NAN), "SGD: momentum"),
    (lambda: SGD(lr=0.1, momentum="0.9"), "SGD: momentum"), (lambda: SGD(lr=True), "SGD: lr"),
    (lambda: SGD(lr=0.1, dampening=2.0), "SGD: dampening"),
    (lambda: SGD(lr=0.1, weight_decay=NAN), "SGD: weight_decay"),
    (lambda: SGD(lr=0.1, momentum=0.9, nesterov="yes"), "SGD: nesterov"),
]


@pytest.mark.parametrize("make,message", BAD_OPTIMIZERS, ids=[m for _, m in BAD_OPTIMIZERS])
def test_optimizers_refuse(make, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        make()


def test_optimizers_accept_numpy_and_round_trip():
    opt = AdamW(lr=np.float32(1e-3), betas=[np.float64(0.9), 0.99], eps=1, weight_decay=0)
    cfg = json.loads(json.dumps(opt.get_config()))
    assert AdamW.from_config(cfg).get_config() == cfg
    assert SGD(lr=1, momentum=np.float32(0.5)).get_config()["momentum"] == 0.5


BAD_SCHEDULES = [
    (lambda: Cosine(lr=NAN), "schedule cosine: lr"), (lambda: Constant(lr="1"), "schedule constant: lr"),
    (lambda: Cosine(warmup_steps=1.5), "schedule cosine: warmup_steps"),
    (lambda: Cosine(warmup_steps=-1), "schedule cosine: warmup_steps"),
    (lambda: Cosine(total_steps=0), "schedule cosine: total_steps"),
    (lambda: Cosine(total_steps=2.5), "schedule cosine: total_steps"),
    (lambda: Cosine(min_lr=-1.0), "schedule cosine: min_lr"),
    (lambda: CrossEntropyLoss(label_smoothing=NAN), "CrossEntropy: label_smoothing"),
    (lambda: CrossEntropyLoss(label_smoothing=1.5), "CrossEntropy: label_smoothing"),
    (lambda: CrossEntropyLoss(label_smoothing="0.1"), "CrossEntropy: label_smoothing"),
]


@pytest.mark.parametrize("make,message", BAD_SCHEDULES, ids=[m for _, m in BAD_SCHEDULES])
def test_schedules_and_losses_refuse(make, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        make()


def test_make_schedule_names_the_field():
    with pytest.raises(ConfigError, match="warmup_steps must be an int >= 0, got '5'"):
        make_schedule({"type": "cosine", "warmup_steps": "5"})
    assert make_schedule({"type": "cosine", "warmup_steps": np.int64(5)}).warmup_steps == 5


# ----------------------------------------------------------------- labels
@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_labels_that_a_cast_would_wrap_are_refused_in_training(dtype):
    x = np.zeros((4, 4), np.float32)
    y = np.array([0, 1, 2 ** 32 + 1, 2], dtype)        # int32 cast: 2**32 + 1 -> 1
    t = Trainer(_model(), CrossEntropyLoss(), SGD(lr=0.1), progress=False)
    with pytest.raises(DataError, match=r"fit int32, got row 2: 4294967297"):
        t.fit(x, y)
    with pytest.raises(DataError, match="row 2"):
        t.evaluate(x, y)


def test_float_class_labels_are_refused_naming_the_row():
    x = np.zeros((4, 4), np.float32)
    t = Trainer(_model(), CrossEntropyLoss(), SGD(lr=0.1), progress=False)
    with pytest.raises(ShapeError, match=r"integer class indices.*row 3: 1\.7"):
        t.fit(x, np.array([0.0, 1.0, 2.0, 1.7]))
    with pytest.raises(ShapeError, match=r"row 1: inf"):
        t.fit(x, np.array([0.0, INF, 2.0, 1.0]))
    with pytest.raises(DataError, match=r"row 0: 4294967297"):      # whole, but beyond int32
        t.fit(x, np.array([2.0 ** 32 + 1, 1.0, 2.0, 1.0]))
    with pytest.raises(DataError, match=r"3 classes.*row 1: 3"):
        t.fit(x, np.array([0, 3, 2, 1]))
    hist = t.fit(x, np.array([0.0, 1.0, 2.0, 1.0]))               # whole floats: classes
    assert math.isfinite(hist[-1]["loss"])


def test_npz_labels_beyond_int32_are_refused(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((3, 2)), y=np.array([1, 2 ** 32 + 7, 0], np.int64))
    with pytest.raises(DataError, match=r"d\.npz: y: row 1: label 4294967303 does not fit int32"):
        load_npz(p)
    np.savez(p, x=np.zeros((3, 2)), y=np.array([1, 2, 0], np.int64))
    _, y = load_npz(p)
    assert y.dtype == np.int32 and y.tolist() == [1, 2, 0]
    np.savez(p, x=np.zeros((3, 2)), y=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match="non-numeric"):
        load_npz(p)


def test_csv_whole_labels_beyond_int32_stay_targets_and_cannot_be_classes(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("1,2,0\n3,4,4294967297\n5,6,1\n")
    x, y = load_csv(p)
    assert y.dtype == np.float32                    # not wrapped to 1 as int32
    t = Trainer(Model(Linear(2, 3), (2,)), CrossEntropyLoss(), SGD(lr=0.1), progress=False)
    with pytest.raises(DataError, match="row 1"):
        t.fit(x, y)


# ----------------------------------------------------------------- sampling
BAD_SAMPLER = [
    ({"temperature": -1.0}, "temperature"), ({"temperature": NAN}, "temperature"),
    ({"temperature": "hot"}, "temperature"), ({"temperature": True}, "temperature"),
    ({"temperature": INF}, "temperature"),
    ({"top_k": 0}, "top_k"), ({"top_k": 2.5}, "top_k"), ({"top_k": True}, "top_k"), ({"top_k": "3"}, "top_k"),
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"top_p": NAN}, "top_p"),
    ({"top_p": "0.9"}, "top_p"),
    ({"seed": "x"}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": True}, "seed"), ({"seed": -1}, "seed"),
]


@pytest.mark.parametrize("kwargs,field", BAD_SAMPLER, ids=[str(k) for k, _ in BAD_SAMPLER])
def test_sampler_refuses(kwargs, field):
    with pytest.raises(ConfigError, match=rf"^sampler: {field} must be"):
        Sampler(5, **kwargs)
    with pytest.raises(ConfigError, match=rf"^\[sample\]: {field} must be"):
        sample_options(kwargs)


def test_sample_options_refuse_tokens_and_vocab():
    for bad in (True, 2.5, 0, "5"):
        with pytest.raises(ConfigError, match=r"\[sample\]: tokens must be a positive int"):
            sample_options({"tokens": bad})
    with pytest.raises(ConfigError, match="sampler: vocab_size"):
        Sampler(5.0)
    o = sample_options({"temperature": 1, "top_k": np.int64(3), "seed": np.int64(2)})
    assert o["temperature"] == 1.0 and type(o["top_k"]) is int and type(o["seed"]) is int


LOGITS = np.array([1.0, 3.0, 2.0, -1.0, 0.5], np.float32)


@pytest.mark.parametrize("t", [1e-40, 1e-45, 2.9e-39, 3e-39, 1e-38, 1e-30])
def test_tiny_temperatures_are_greedy_not_nan(t):
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no overflow warning either
        got = {Sampler(5, temperature=t, seed=s).sample(LOGITS) for s in range(10)}
        wide = np.array([-3e38, 3e38, 1.0, 0.0, -3.4e38], np.float32)   # (l - max) overflows
        got_wide = {Sampler(5, temperature=t, seed=s).sample(wide) for s in range(10)}
    assert got == {1} and got_wide == {1}
    assert Sampler(5, temperature=t).greedy == (t < GREEDY_BELOW)


def test_greedy_threshold_is_float32_overflow_of_one_over_t():
    assert math.isfinite(np.float32(1.0 / GREEDY_BELOW))
    with np.errstate(over="ignore"):
        assert math.isinf(np.float32(1.0 / (GREEDY_BELOW * 0.99)))


@pytest.mark.parametrize("temperature", [0.0, 1e-40, 0.7])
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_non_finite_logits_raise_numerics_error(temperature, bad):
    s = Sampler(5, temperature=temperature, top_k=3, top_p=0.9)
    s.sample(LOGITS)
    logits = LOGITS.copy()
    logits[2] = bad
    with pytest.raises(NumericsError, match=rf"generated token 1: logits\[2\] \(token id 2\) is {bad}"):
        s.sample(logits)


def test_sampler_still_allocation_free():
    for kw in ({"temperature": 0.8, "top_k": 3, "top_p": 0.9}, {"temperature": 1e-40}, {}):
        s = Sampler(5, seed=1, **kw)
        s.sample(LOGITS)
        assert trace_allocations(lambda s=s: s.sample(LOGITS), repeat=20).array_bytes == 0


def test_sampler_distribution_unchanged():
    """exp((l - max) / T) is the same softmax as before: frequencies match it."""
    s = Sampler(5, temperature=0.5, seed=0)
    counts = np.bincount([s.sample(LOGITS) for _ in range(4000)], minlength=5) / 4000
    p = np.exp(LOGITS.astype(np.float64) / 0.5)
    assert np.abs(counts - p / p.sum()).max() < 0.03
