"""Training from a TOML file: registered layers, data, loss, optimizer, schedule, settings.

    [model]     input_shape, layers = [{type = "mlp.Linear", out_features = 128}, ...], seed;
                or a functional graph: inputs = [{name = "a", shape = [8]}, ...], nodes =
                [{name = "h", type = "mlp.Linear", out_features = 16, inputs = ["a"]},
                 {name = "h2", layer = "h", inputs = ["b"]}, ...] (``layer`` calls an earlier
                node's layer again, sharing its parameters), outputs = "h" or {score = "h"}
    [data]      source = "sklearn:digits" | "csv:PATH" | "npz:PATH" | "idx:IMAGES,LABELS"
                | "fashion-mnist[:DIR]" | "text:PATH", validation, test (a fraction) or
                test_source, scale; samples are reshaped to [model] input_shape when their
                sizes agree. "text:PATH" (a file, or all files of a directory) gives next-byte
                windows of seq_len (default: input_shape[0]) every stride bytes (default
                seq_len); its validation and test parts are the file's tail, in order
    [loss]      type = "CrossEntropy", plus its arguments; for several outputs one table
                per output: [loss.score] type = "CrossEntropy", weight = 1.0
    [[callbacks]] type = "EarlyStopping", patience = 3 (registered callbacks, in order)
    [optimizer] type = "AdamW", lr, plus its arguments
    [schedule]  type = "constant" | "linear_warmup" | "cosine", warmup_steps, min_lr (optional)
    [train]     epochs, batch_size, clip_norm, seed, shuffle, checkpoint_every
    [sample]    free-form, for plugins: after training, the ``qorus_train_finished`` hook gets
                the whole config (the llm plugin prints sampled text from this table)

A model of several inputs or outputs reads named arrays: [data] source = "npz:PATH" or
"npy:DIR" (a directory of .npy files, memory-mapped), with inputs = {a = "xa"} and
targets = {score = "labels"} mapping the model's names to array names (default: the same).
[train] metrics = ["accuracy", "f1"] (or a table of lists per output) adds metrics to the
validation and test reports.

Names of layers, losses and optimizers go through the registry (unknown names are errors
naming close matches); every other mistake is a ConfigError naming the file and the key.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, QorusError, prefixed
from ..io.datasets import KINDS, load_source, load_text, split, unigram_cross_entropy
from ..io.mapped import read_regular
from ..io.safetensors import write_atomic
from .schedules import Schedule, make_schedule

SECTIONS = {
    "model": {"input_shape", "layers", "seed", "input_dtype", "inputs", "nodes", "outputs"},
    "data": {"source", "validation", "test", "test_source", "scale", "seed", "label_column",
             "delimiter", "x_key", "y_key", "seq_len", "stride", "inputs", "targets"},
    "loss": None, "optimizer": None, "schedule": None,      # free-form: the class's arguments
    "train": {"epochs", "batch_size", "clip_norm", "seed", "shuffle", "checkpoint_every",
              "eval_batch_size", "metrics"},
    "callbacks": None,                                      # a list of tables
    "sample": None,                                         # read by plugins' hooks
}
REQUIRED = ("model", "data", "loss", "optimizer")
MAX_CONFIG_BYTES = 16 << 20               # a config is a few KB; refuse to parse a huge file


@dataclass
class TrainConfig:
    """A parsed, checked config: one dict per section (``schedule`` may be None)."""

    path: Path
    model: dict[str, Any]
    data: dict[str, Any]
    loss: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)        # every section, as parsed


def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError("reading TOML needs Python 3.11+ or `pip install tomli`") from None
    return tomllib


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read and check ``path``; ConfigError names the file and what is wrong (TOML: the line)."""
    path = Path(path)
    tomllib = _toml()
    data = read_regular(path, ConfigError, MAX_CONFIG_BYTES)   # refuses FIFOs, directories
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:   # TOMLDecodeError, and an integer of more than 4300 digits
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    for name in REQUIRED:
        if not isinstance(raw.get(name), dict):
            raise ConfigError(f"{path}: missing section [{name}]")
    for name, keys in SECTIONS.items():
        section = raw.get(name)
        if section is None:
            continue
        if name == "callbacks":
            if not isinstance(section, list) or not all(
                    isinstance(c, dict) and isinstance(c.get("type"), str) for c in section):
                raise ConfigError(f"{path}: [[callbacks]] must be tables with type = \"<name>\"")
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        bad = sorted(set(section) - keys) if keys is not None else []
        if bad:
            raise ConfigError(f"{path}: [{name}] has unknown key(s) {bad}; known: {', '.join(sorted(keys))}")
    if not isinstance(raw["optimizer"].get("type"), str):
        raise ConfigError(f"{path}: [optimizer] needs type = \"<registered name>\"")
    loss = raw["loss"]
    if not isinstance(loss.get("type"), str) and not (loss and all(
            isinstance(v, dict) and isinstance(v.get("type"), str) for v in loss.values())):
        raise ConfigError(f"{path}: [loss] needs type = \"<registered name>\", or one table per "
                          "output ([loss.NAME] type = ...)")
    m = raw["model"]
    if "nodes" in m:
        bad = sorted(set(m) & {"input_shape", "layers", "input_dtype"})
        if bad or not isinstance(m.get("inputs"), list) or "outputs" not in m:
            raise ConfigError(f"{path}: a functional [model] takes inputs, nodes, outputs (and "
                              f"seed){f'; not {bad}' if bad else ''}")
    else:
        if "inputs" in m or "outputs" in m:
            raise ConfigError(f"{path}: [model] inputs and outputs go with nodes (a functional "
                              "graph); a layer stack takes input_shape and layers")
        shape = m.get("input_shape")
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ConfigError(f"{path}: [model] input_shape must be a list of positive integers, "
                              f"got {shape!r}")
        if not isinstance(m.get("layers"), list) or not m["layers"]:
            raise ConfigError(f"{path}: [model] layers must be a non-empty list of {{type = ...}} tables")
    if not isinstance(raw["data"].get("source"), str):
        raise ConfigError(f"{path}: [data] needs source = \"sklearn:digits\" | \"csv:PATH\" | "
                          "\"npz:PATH\" | \"npy:DIR\" | \"idx:IMAGES_PATH,LABELS_PATH\" | "
                          "\"fashion-mnist[:DIR]\" | \"text:PATH\"")
    test_source = raw["data"].get("test_source")
    if test_source is not None and (not isinstance(test_source, str) or raw["data"].get("test")):
        raise ConfigError(f"{path}: [data] test_source must be a source string, and replaces "
                          "the test fraction (give one of them)")
    return TrainConfig(path, m, raw["data"], raw["loss"], raw["optimizer"], raw.get("schedule"),
                       raw.get("train", {}), raw)


def override_data(cfg: TrainConfig, data: str | os.PathLike) -> None:
    """``--data``: a source string (``"csv:PATH"``), or a bare path that keeps the configured
    source's kind (``text``, ``csv``, ``npz``); a relative path is taken from the current
    directory, not the config's."""
    text = str(data)
    kind, _, rest = text.partition(":")
    if kind in KINDS and rest:
        source = text
    else:
        configured = str(cfg.data.get("source", "")).partition(":")[0]
        if configured not in _PATH_KINDS:
            raise ConfigError(f"{cfg.path}: --data {text!r}: [data] source {cfg.data.get('source')!r} "
                              f"takes no path; give a source string such as 'text:{text}'")
        source = f"{configured}:{Path(text).expanduser().resolve()}"
    cfg.data = {**cfg.data, "source": source}
    cfg.raw = {**cfg.raw, "data": cfg.data}


_PATH_KINDS = ("csv", "npz", "npy", "text")


def _registered(kind: str, section: dict[str, Any], path: Path) -> Any:
    from ..registry import get_registry

    args = {k: v for k, v in section.items() if k != "type"}
    cls = get_registry().get(kind, section["type"])
    try:
        obj = cls.from_config(args) if hasattr(cls, "from_config") else cls(**args)
    except QorusError as exc:
        raise ConfigError(f"{path}: [{kind}]: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: [{kind}] {section['type']} {args}: {exc}") from None
    if kind == "optimizer" and not hasattr(obj, "bind"):
        raise ConfigError(f"{path}: [optimizer] {section['type']} is not a qorus Optimizer")
    return obj


def build(cfg: TrainConfig, kernels: str | None = None, epochs: int | None = None,
          progress: bool = True, checkpoint_dir: str | os.PathLike | None = None,
          allow_import: bool = False):
    """The Model and a ready Trainer for ``cfg`` (``epochs`` overrides [train] epochs).
    Layer types name registered layers; ``type = "module:Class"`` imports that module only
    with ``allow_import=True`` (``qorus train --trust-code``), as it runs the module's code."""
    from ..containers import Sequential
    from ..layer import allow_layer_imports
    from ..model import Model
    from .trainer import Trainer

    m = cfg.model
    try:
        with allow_layer_imports(allow_import):
            if "nodes" in m:
                model = Model(functional_from_table(m), seed=m.get("seed", 0), kernels=kernels)
            else:
                model = Model(Sequential(m["layers"]), m["input_shape"], m.get("input_dtype", "f32"),
                              seed=m.get("seed", 0), kernels=kernels)
    except QorusError as exc:
        raise prefixed(exc, f"{cfg.path}: [model]") from None
    weights = None
    if isinstance(cfg.loss.get("type"), str):
        loss: Any = _registered("loss", cfg.loss, cfg.path)
    else:
        loss = {o: _registered("loss", {k: v for k, v in t.items() if k != "weight"}, cfg.path)
                for o, t in cfg.loss.items()}
        weights = {o: t["weight"] for o, t in cfg.loss.items() if "weight" in t}
    optimizer = _registered("optimizer", cfg.optimizer, cfg.path)
    schedule: Schedule | None = make_schedule(cfg.schedule, f"{cfg.path}: [schedule]")
    t = dict(cfg.train)
    if epochs is not None:
        t["epochs"] = epochs
    try:
        trainer = Trainer(model, loss, optimizer, schedule, progress=progress,
                          checkpoint_dir=checkpoint_dir, loss_weights=weights,
                          callbacks=cfg.raw.get("callbacks"), **t)
    except QorusError as exc:
        raise ConfigError(f"{cfg.path}: [train]: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cfg.path}: [train] {t}: {exc}") from None
    return model, trainer


def functional_from_table(m: dict[str, Any]) -> Any:
    """The ``core.Functional`` of a TOML functional [model]: each node defines its layer
    inline (``type`` and its arguments) or calls an earlier node's layer again (``layer``)."""
    from ..functional import Functional

    layers: dict[str, Any] = {}
    nodes = []
    if not isinstance(m["nodes"], list) or not m["nodes"]:
        raise ConfigError("nodes must be a non-empty list of node tables")
    for i, n in enumerate(m["nodes"]):
        if not isinstance(n, dict) or not isinstance(n.get("name"), str):
            raise ConfigError(f"nodes[{i}] needs a name, got {n!r}")
        name = n["name"]
        if ("type" in n) == ("layer" in n):
            raise ConfigError(f"node {name!r}: give type = \"<layer>\" (a new layer) or layer = "
                              "\"<node>\" (call an earlier node's layer again), not both or neither")
        if "layer" in n:
            extra = sorted(set(n) - {"name", "layer", "inputs"})
            if extra:
                raise ConfigError(f"node {name!r} calls layer {n['layer']!r}: it takes no "
                                  f"arguments of its own, got {extra}")
            if n["layer"] not in layers:
                raise ConfigError(f"node {name!r}: layer {n['layer']!r} is not an earlier node's "
                                  f"layer (known: {sorted(layers)})")
            lname = n["layer"]
        else:
            lname = name
            layers[name] = {k: v for k, v in n.items() if k not in ("name", "inputs")}
        nodes.append({"name": name, "layer": lname, "inputs": n.get("inputs", [])})
    return Functional(m["inputs"], layers, nodes, m["outputs"])


def _fit_shape(x: np.ndarray, shape: Any) -> np.ndarray:
    """``x`` with samples reshaped (a view) to the model's input shape when the sizes agree:
    28x28 IDX images feed an MLP taking [784] or a CNN taking [1, 28, 28]."""
    shape = tuple(shape or ())
    if not shape or x.ndim < 1 or tuple(x.shape[1:]) == shape:
        return x
    if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        return x                           # the model reports the mismatch with both shapes
    return x.reshape((len(x),) + shape)


def load_data(cfg: TrainConfig):
    """``(train, validation, test)`` pairs from [data]; empty pairs for fractions of 0.
    With ``test_source`` the test pair is that data set (e.g. Fashion-MNIST's test files)."""
    d = dict(cfg.data)
    if str(d["source"]).startswith("text:"):
        return _load_text(cfg)
    if "nodes" in cfg.model:
        return _load_named(cfg)
    options = {k: d.pop(k) for k in ("label_column", "delimiter", "x_key", "y_key") if k in d}
    test_source = d.pop("test_source", None)
    try:
        scale = float(d.get("scale", 1.0))
        fractions = float(d.get("validation", 0.0)), float(d.get("test", 0.0)), int(d.get("seed", 0))
        x, y = load_source(d.pop("source"), base=cfg.path.parent, **options)
        test = None if test_source is None else load_source(test_source, base=cfg.path.parent,
                                                            **options)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, QorusError):
            raise
        raise ConfigError(f"{cfg.path}: [data] {cfg.data}: {exc}") from None
    shape = cfg.model.get("input_shape")
    x = _fit_shape(x, shape)
    if scale != 1.0:
        x = (x * np.float32(scale)).astype(np.float32)
    if test is None:
        return split(x, y, *fractions)
    xs, ys = _fit_shape(test[0], shape), test[1]
    if scale != 1.0:
        xs = (xs * np.float32(scale)).astype(np.float32)
    train, val, _ = split(x, y, fractions[0], 0.0, fractions[2])
    return train, val, (xs, ys)


def _load_named(cfg: TrainConfig):
    """Named arrays (npz or a directory of .npy files) for a functional model: one per
    input and one per output with a loss (``[data] inputs`` / ``targets`` map the names)."""
    from ..io.datasets import load_named

    d = cfg.data
    bad = sorted(set(d) - {"source", "validation", "test", "seed", "inputs", "targets"})
    kind, _, rest = str(d["source"]).partition(":")
    if bad or kind not in ("npz", "npy") or not rest:
        raise ConfigError(f"{cfg.path}: [data] a functional model reads named arrays: source = "
                          "\"npz:PATH\" or \"npy:DIR\", with inputs, targets, validation, test, "
                          f"seed{f'; not {bad}' if bad else ''}")
    names = [i.get("name") for i in cfg.model["inputs"] if isinstance(i, dict)]
    loss_outs = ([o for o in cfg.loss] if not isinstance(cfg.loss.get("type"), str) else
                 list(cfg.model["outputs"]) if isinstance(cfg.model["outputs"], dict) else ["y"])
    maps = {}
    for key, default in (("inputs", names), ("targets", loss_outs)):
        given = d.get(key, {})
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise ConfigError(f"{cfg.path}: [data] {key} must be a table of name = \"array\"")
        maps[key] = {n: given.get(n, n) for n in default}
    path = Path(rest).expanduser()
    path = path if path.is_absolute() else cfg.path.parent / path
    xs, ys = load_named(path, maps["inputs"], maps["targets"])
    if len(loss_outs) == 1 and not isinstance(cfg.model["outputs"], dict):
        ys = ys[loss_outs[0]]
    try:
        return split(xs, ys, float(d.get("validation", 0.0)), float(d.get("test", 0.0)),
                     int(d.get("seed", 0)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cfg.path}: [data] {d}: {exc}") from None


def _load_text(cfg: TrainConfig):
    """``text:PATH`` windows of the model's sequence length; held-out parts from the tail."""
    d = cfg.data
    bad = sorted(set(d) - {"source", "validation", "test", "seed", "seq_len", "stride"})
    if bad or d.get("test_source") is not None:
        raise ConfigError(f"{cfg.path}: [data] a text source takes validation, test, seed, "
                          f"seq_len and stride; got {bad or ['test_source']}")
    shape = cfg.model.get("input_shape") or [0]
    seq_len = d.get("seq_len", shape[0])
    if len(shape) != 1 or seq_len != shape[0]:
        raise ConfigError(f"{cfg.path}: a text source feeds [model] input_shape = [seq_len]; got "
                          f"input_shape {shape} and seq_len {seq_len}")
    rest = str(d["source"]).partition(":")[2]
    path = Path(rest).expanduser()
    path = path if path.is_absolute() else cfg.path.parent / path
    try:
        return load_text(path, int(seq_len), float(d.get("validation", 0.0)), float(d.get("test", 0.0)),
                         int(d.get("seed", 0)), d.get("stride"))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, QorusError):
            raise
        raise ConfigError(f"{cfg.path}: [data] {cfg.data}: {exc}") from None


def train_finished(model: Any, cfg: TrainConfig, out_dir: Path, echo: Callable[[str], Any],
                   report: Callable[[str], Any] | None = None) -> list[dict[str, str]]:
    """Call every plugin's ``qorus_train_finished`` hook (e.g. the llm plugin's sampler), one
    plugin at a time in load order (``Registry.call_plugin_hook``, unbounded: sampling text may
    take long, unlike registration hooks, so they run in this thread). A hook that fails (any
    exception, or ``sys.exit``) is reported through ``report`` (default: stderr) naming the
    plugin, and the other plugins' hooks still run: the model is trained and saved by then, so
    a plugin's failure must not lose it. Ctrl-C (KeyboardInterrupt) stops them. Returns the
    failures as ``[{"plugin": label, "error": reason}]``."""
    from ..registry import get_registry

    reg = get_registry()
    report = report or (lambda text: print(text, file=sys.stderr))
    kwargs = {"model": model, "config": cfg.raw, "out_dir": out_dir, "echo": echo}
    failures: list[dict[str, str]] = []
    for info in reg.plugins():
        if info.status != "ok":
            continue
        error = reg.call_plugin_hook(info.namespace, "qorus_train_finished", kwargs, bounded=False)
        if error is not None:
            failures.append({"plugin": info.label, "error": error})
            report(f"qorus: plugin {info.label} failed in its qorus_train_finished hook: {error} "
                   f"(training finished; {out_dir} holds the checkpoint and metrics)")
    return failures


def run_training(config_path: str | os.PathLike, out_dir: str | os.PathLike,
                 epochs: int | None = None, kernels: str | None = None, progress: bool = True,
                 resume: bool = False, data: str | os.PathLike | None = None,
                 echo: Callable[[str], Any] | None = None,
                 allow_import: bool = False) -> dict[str, Any]:
    """Train as ``config_path`` says; write ``OUT/checkpoint/`` and ``OUT/metrics.json``
    (final train/validation/test loss and metrics, epochs, seconds, parameter count; for a
    text source also ``unigram_baseline``: the validation cross-entropy of the training
    byte frequencies). ``data`` overrides [data] source (see ``override_data``); plugins'
    ``qorus_train_finished`` hooks run at the end, printing through ``echo``; a hook that
    fails is reported naming its plugin, listed under ``hook_errors`` in the returned dict
    (not in metrics.json), and does not undo the run. ``allow_import``: see ``build``.

    Under ``mpirun`` every rank calls it alike (data-parallel, see ``Trainer``); rank 0
    alone writes the checkpoint and metrics.json (with ``world_size``) and runs the hooks."""
    cfg = load_config(config_path)
    if data is not None:
        override_data(cfg, data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    model, trainer = build(cfg, kernels, epochs, progress, ckpt, allow_import)
    (xt, yt), (xv, yv), (xs, ys) = load_data(cfg)
    xt_n, xv_n, xs_n = (_count(a) for a in (xt, xv, xs))
    val = (xv, yv) if xv_n else None
    t0 = time.perf_counter()
    history = trainer.fit(xt, yt, val=val, resume_from=ckpt if resume and ckpt.exists() else None)
    seconds = time.perf_counter() - t0
    metrics = {
        "config": str(cfg.path), "epochs": trainer.epoch, "seconds": round(seconds, 3),
        "parameters": model.num_parameters, "kernels": model.kernels.name,
        "world_size": trainer.comm.size,
        "train": trainer.evaluate(xt, yt),
        "validation": trainer.evaluate(xv, yv) if xv_n else None,
        "test": trainer.evaluate(xs, ys) if xs_n else None,
        "samples": {"train": xt_n, "validation": xv_n, "test": xs_n},
        "history": history,
    }
    if str(cfg.data["source"]).startswith("text:") and xv_n:
        metrics["unigram_baseline"] = {"validation": unigram_cross_entropy(
            yt, yv, int(model.output_shape[-1]))}
    if not trainer.comm.is_main:
        return metrics
    write_atomic(out / "metrics.json", [json.dumps(metrics, indent=1).encode("utf-8")])
    failures = train_finished(model, cfg, out, echo or print)
    if failures:
        metrics["hook_errors"] = failures
    return metrics


def _count(x: Any) -> int:
    """Samples in an array or a dict of arrays."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
