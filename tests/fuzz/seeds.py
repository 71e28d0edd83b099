"""The seed files every mutation starts from, written deterministically (same bytes on every
run, so a case's ``(format, seed, index)`` names the same file).

    gguf/llama_bpe_f32.gguf     tests/tiny_llama.py's model (byte-level BPE, F32, tied)
    gguf/llama_bpe_q8.gguf      the same in Q8_0 with an output.weight
    gguf/llama_spm_q4q8.gguf    a SentencePiece-vocabulary llama, Q4_0 and Q8_0 weights, F16
                                norms, a chat template
    safetensors/by_hand.safetensors   every dtype, a 0-d and a 0-size tensor, __metadata__
    safetensors/mlp.safetensors       the checkpoint's weights (also loaded into the MLP)
    checkpoint/mlp/             a checkpoint of a tiny MLP with AdamW state and Trainer state
    toml/*.toml                 configs shaped like examples/*.toml (MLP, CNN, byte GPT)
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
FORMATS = ("gguf", "safetensors", "checkpoint", "toml")
_DONE = ".complete"


def _tiny_llama():
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import tiny_llama

    return tiny_llama


SPM_PIECES = ["\u2581", "\u2581t", "he", "\u2581the", "\u2581a", "an", "\u2581an", "in", "\u2581man",
              "t", "h", "e", "a", "n", "i", "m", "\u2581tin", "\u2581m"]


def write_spm_llama(path: Path) -> Path:
    """A llama GGUF with a SentencePiece vocabulary (byte tokens ``<0xXX>``) and mixed
    Q4_0/Q8_0 weights."""
    from qorus_core.io.gguf import write_gguf

    d, h, hkv, ff, layers = 32, 2, 1, 64, 2
    rng = np.random.default_rng(1)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES
    types = np.array([2, 3, 3] + [6] * 256 + [1] * len(SPM_PIECES), np.int32)
    scores = np.array([0.0] * 259 + [-float(i) for i in range(len(SPM_PIECES))], np.float32)
    v = len(tokens)

    def w(n: int, k: int, qtype: str):   # quantized as tests/tiny_llama.py's are
        return _tiny_llama()._q((rng.standard_normal((n, k)) * 0.2).astype(np.float32), qtype)

    t: dict[str, Any] = {"token_embd.weight": w(v, d, "q8_0"), "output.weight": w(v, d, "q4_0"),
                         "output_norm.weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)}
    dh = d // h
    for i in range(layers):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float16)
        t[p + "ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        t[p + "attn_q.weight"] = w(h * dh, d, "q4_0")
        t[p + "attn_k.weight"] = w(hkv * dh, d, "q8_0")
        t[p + "attn_v.weight"] = w(hkv * dh, d, "q4_0")
        t[p + "attn_output.weight"] = w(d, h * dh, "q8_0")
        t[p + "ffn_gate.weight"] = w(ff, d, "q4_0")
        t[p + "ffn_up.weight"] = w(ff, d, "q8_0")
        t[p + "ffn_down.weight"] = w(d, ff, "q4_0")
    a = "llama"
    meta = {
        "general.architecture": a, "general.name": "tiny-spm", "general.file_type": np.uint32(2),
        f"{a}.block_count": np.uint32(layers), f"{a}.context_length": np.uint32(128),
        f"{a}.embedding_length": np.uint32(d), f"{a}.feed_forward_length": np.uint32(ff),
        f"{a}.attention.head_count": np.uint32(h), f"{a}.attention.head_count_kv": np.uint32(hkv),
        f"{a}.rope.freq_base": np.float32(10000.0), f"{a}.rope.dimension_count": np.uint32(dh),
        f"{a}.attention.layer_norm_rms_epsilon": np.float32(1e-6),
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": np.uint32(1), "tokenizer.ggml.eos_token_id": np.uint32(2),
        "tokenizer.ggml.unknown_token_id": np.uint32(0), "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": True,
        "tokenizer.chat_template": ("{{ bos_token }}{% for m in messages %}[{{ m.role }}] "
                                    "{{ m.content }}{{ eos_token }}{% endfor %}"
                                    "{% if add_generation_prompt %}[assistant]{% endif %}"),
    }
    write_gguf(path, meta, t)
    return path


def write_safetensors_by_hand(path: Path) -> Path:
    """Every safetensors dtype, a 0-d and a 0-size tensor, metadata: written without the
    library's writer, as the format spec says."""
    rng = np.random.default_rng(2)
    arrays = [("w.f32", "F32", rng.standard_normal((3, 4)).astype("<f4")),
              ("f64", "F64", np.array([1.5, -2.25], "<f8")),
              ("i.i64", "I64", np.array([-(2**40), 7], "<i8")),
              ("h.f16", "F16", rng.standard_normal((2, 3)).astype("<f2")),
              ("b.bf16", "BF16", (rng.standard_normal(5).astype("<f4").view("<u4") >> 16).astype("<u2")),
              ("u16", "U16", np.arange(4, dtype="<u2").reshape(2, 2)),
              ("i8", "I8", np.array([-128, 0, 1, 127], "i1")),
              ("u.u8", "U8", np.arange(7, dtype="u1")),
              ("flag", "BOOL", np.array([True, False, True])),
              ("s.scalar", "F32", np.array(3.5, "<f4")),
              ("z.empty", "F32", np.zeros((0, 4), "<f4"))]
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "source": "qorus fuzz seed"}}
    pos, blobs = 0, []
    for name, code, a in arrays:
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [pos, pos + a.nbytes]}
        blobs.append(a.tobytes())
        pos += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


# -- the checkpoint's model and trainer (the targets rebuild them to resume) -------------------
def checkpoint_model(kernels: Any = None):
    from qorus_core import Model, Sequential
    from qorus_layers_mlp import Dropout, LayerNorm, Linear, ReLU

    return Model(Sequential([Linear(None, 8), LayerNorm(), ReLU(), Dropout(0.1), Linear(None, 3)]),
                 (6,), seed=4, kernels=kernels)


def checkpoint_trainer(kernels: Any = None, epochs: int = 1):
    from qorus_core.train.losses import CrossEntropyLoss
    from qorus_core.train.optimizers import AdamW
    from qorus_core.train.schedules import Cosine
    from qorus_core.train.trainer import Trainer

    model = checkpoint_model(kernels)
    tr = Trainer(model, CrossEntropyLoss(0.05), AdamW(lr=3e-3), Cosine(warmup_steps=2, min_lr=1e-4),
                 batch_size=4, epochs=epochs, clip_norm=0.5, seed=9, progress=False)
    return model, tr


def checkpoint_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8).astype(np.int32)


def write_checkpoint(directory: Path) -> Path:
    """A checkpoint after "one epoch" with fixed, machine-independent contents: initial
    weights, deterministic AdamW moments, a shuffled RNG state and a fixed history."""
    from qorus_core.train.checkpoint import save_checkpoint

    model, tr = checkpoint_trainer("numpy")
    tr.schedule.setup(tr.optimizer.lr, 4)
    for i, slot in enumerate(model.store.slots):
        ramp = np.linspace(0.0, 1e-3, slot.a.size, dtype=np.float32)
        slot.a[...] = ramp + 1e-4 if i else -ramp          # exp_avg_sq (slot 1) stays positive
    tr.optimizer.load_state_dict({"steps": 2})
    model.run.step = 2
    rng = np.random.default_rng(9)
    rng.shuffle(np.arange(8))
    state = {"epoch": 1, "global_step": 2, "rng": rng.bit_generator.state,
             "history": [{"epoch": 1, "loss": 1.25, "accuracy": 0.5, "lr": 0.003,
                          "samples_per_s": 1000.0, "seconds": 0.008}]}
    save_checkpoint(directory, model, tr.optimizer, state, tr.get_config())
    return directory


TOML_SEEDS = {
    "digits_mlp.toml": '''\
# examples/digits_mlp.toml's shape, small
[model]
input_shape = [16]
seed = 0
layers = [
  {type = "mlp.Linear", out_features = 12},
  {type = "mlp.ReLU"},
  {type = "mlp.Dropout", p = 0.2},
  {type = "mlp.Linear", out_features = 10},
]

[data]
source = "sklearn:digits"
validation = 0.1
test = 0.2
scale = 0.0625
seed = 0

[loss]
type = "CrossEntropy"
label_smoothing = 0.1

[optimizer]
type = "AdamW"
lr = 0.003
weight_decay = 0.05

[schedule]
type = "cosine"
warmup_steps = 50

[train]
epochs = 100
batch_size = 64
clip_norm = 1.0
seed = 0
''',
    "fashion_cnn.toml": '''\
# examples/fashion_cnn.toml's shape, small
[model]
input_shape = [1, 8, 8]
seed = 0
layers = [
  {type = "cnn.Conv2d", out_channels = 4, kernel_size = 3, padding = 1, bias = false},
  {type = "cnn.BatchNorm2d"},
  {type = "mlp.ReLU"},
  {type = "cnn.MaxPool2d", kernel_size = 2},
  {type = "cnn.Flatten"},
  {type = "mlp.Linear", out_features = 16},
  {type = "mlp.ReLU"},
  {type = "mlp.Dropout", p = 0.25},
  {type = "mlp.Linear", out_features = 10},
]

[data]
source = "fashion-mnist"
test_source = "fashion-mnist-test"
validation = 0.05
scale = 0.00392156862745098
seed = 0

[loss]
type = "CrossEntropy"

[optimizer]
type = "AdamW"
lr = 0.002
weight_decay = 0.01

[schedule]
type = "cosine"
warmup_steps = 100

[train]
epochs = 4
batch_size = 128
seed = 0
''',
    "gpt_bytes.toml": '''\
# examples/gpt_bytes.toml's shape, small
[model]
input_shape = [16]
input_dtype = "i32"
seed = 0

[[model.layers]]
type = "llm.GPT"
vocab_size = 256
d_model = 16
n_layers = 1
n_heads = 2
max_len = 16
positional = "learned"
norm = "layernorm"
ffn = "gelu"
tie_embeddings = true

[data]
source = "text:/usr/share/games/fortunes/fortunes"
validation = 0.1
stride = 16
seed = 0

[loss]
type = "CrossEntropy"

[optimizer]
type = "AdamW"
lr = 0.001
betas = [0.9, 0.95]
weight_decay = 0.1

[schedule]
type = "cosine"
warmup_steps = 50

[train]
epochs = 6
batch_size = 16
clip_norm = 1.0
seed = 0

[sample]
prompt = "The "
tokens = 8
temperature = 0.8
top_k = 40
seed = 0
''',
}


def build_seeds(root: Path) -> Path:
    """Write every seed under ``root`` (once: a marker file says it is complete)."""
    root = Path(root)
    if (root / _DONE).exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    for fmt in FORMATS:
        (root / fmt).mkdir(parents=True)
    tl = _tiny_llama()
    tl.write_tiny_llama(root / "gguf" / "llama_bpe_f32.gguf", "f32")
    tl.write_tiny_llama(root / "gguf" / "llama_bpe_q8.gguf", "q8_0", tied=False)
    write_spm_llama(root / "gguf" / "llama_spm_q4q8.gguf")
    write_safetensors_by_hand(root / "safetensors" / "by_hand.safetensors")
    ck = write_checkpoint(root / "checkpoint" / "mlp")
    shutil.copyfile(ck / "model.safetensors", root / "safetensors" / "mlp.safetensors")
    for name, text in TOML_SEEDS.items():
        (root / "toml" / name).write_text(text, "utf-8")
    (root / _DONE).write_text("")
    return root


def seed_names(root: Path, fmt: str) -> list[str]:
    """The seeds of ``fmt``, sorted (the order cases index into)."""
    return sorted(p.name for p in (Path(root) / fmt).iterdir() if not p.name.startswith("."))
