"""GPT: token embedding (+ learned positions), transformer blocks, final norm, LM head."""

from __future__ import annotations

from qorus_core import Composite, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import normal
from qorus_core.layer import Layer, layer_from_dict

from .block import FFNS, NORMS, TransformerBlock
from .embedding import Embedding
from .head import LMHead
from .positional import PositionalEmbedding
from .rmsnorm import RMSNorm

POSITIONAL = ("learned", "rope")


class _TokenEmbedding(Embedding):
    """Embedding initialised N(0, std) (GPT-2 uses 0.02): with a tied head, N(0, 1) rows
    would start the logits at a scale of sqrt(d_model)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, std: float) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.std = float(std)

    def build(self, x: Spec, b) -> Spec:
        if x.dtype != "i32":
            raise ShapeError(f"expects int32 token ids, got {x.dtype}")
        b.param("weight", (self.num_embeddings, self.embedding_dim), normal(self.std))
        return Spec(x.shape + (self.embedding_dim,))


class GPT(Composite):
    """A decoder-only language model on int32 token ids [B, T] -> logits [B, T, vocab_size].

    ``positional="learned"`` is GPT-2 (learned ``pos.weight``, attention without RoPE);
    ``"rope"`` rotates queries and keys instead (llama). Params: ``embed.weight`` (V, d),
    ``pos.weight`` (max_len, d), ``blocks.<i>.<...>``, ``norm.*``, ``head.weight`` (V, d),
    which ``tie_embeddings`` makes the same memory as ``embed.weight`` (gradients summed).
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, max_len: int,
                 d_ff: int | None = None, n_kv_heads: int | None = None,
                 positional: str = "learned", norm: str = "layernorm", ffn: str = "gelu",
                 tie_embeddings: bool = True, rope_theta: float = 10000.0, eps: float = 1e-5,
                 bias: bool = True, init_std: float = 0.02) -> None:
        for name, v in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("max_len", max_len)):
            if int(v) <= 0:
                raise ConfigError(f"GPT: {name} must be positive, got {v!r}")
        if positional not in POSITIONAL:
            raise ConfigError(f"GPT: positional must be one of {POSITIONAL}, got {positional!r}")
        if norm not in NORMS or ffn not in FFNS:
            raise ConfigError(f"GPT: norm must be one of {NORMS} and ffn one of {FFNS}, "
                              f"got {norm!r}, {ffn!r}")
        self.vocab_size = int(vocab_size)
        self.d_model = int(d_model)
        self.n_layers = int(n_layers)
        self.n_heads = int(n_heads)
        self.max_len = int(max_len)
        self.d_ff = None if d_ff is None else int(d_ff)
        self.n_kv_heads = None if n_kv_heads is None else int(n_kv_heads)
        self.positional = positional
        self.norm = norm
        self.ffn = ffn
        self.tie_embeddings = bool(tie_embeddings)
        self.rope_theta = float(rope_theta)
        self.eps = float(eps)
        self.bias = bool(bias)
        self.init_std = float(init_std)
        self.block()             # bad block settings fail here, when the model is made

    def block(self) -> TransformerBlock:
        return TransformerBlock(self.d_model, self.n_heads, self.n_kv_heads, self.d_ff, self.norm,
                                self.ffn, rope=self.positional == "rope", rope_theta=self.rope_theta,
                                max_len=self.max_len, eps=self.eps, bias=self.bias)

    def _final_norm(self) -> Layer:
        if self.norm == "rmsnorm":
            return RMSNorm(self.d_model, self.eps)
        return layer_from_dict({"type": "mlp.LayerNorm", "normalized_shape": self.d_model,
                                "eps": self.eps})

    def build(self, x, b):
        if len(x.shape) != 2 or x.dtype != "i32":
            raise ShapeError(f"GPT expects int32 token ids [B, T], got {x.shape} {x.dtype}")
        if x.shape[1] > self.max_len:
            raise ShapeError(f"GPT: sequence length {x.shape[1]} exceeds max_len {self.max_len}")
        h = b.call(_TokenEmbedding(self.vocab_size, self.d_model, self.init_std), x, "embed")
        if self.positional == "learned":
            h = b.call(PositionalEmbedding(self.max_len, self.d_model, self.init_std), h, "pos")
        block = self.block()
        for i in range(self.n_layers):
            h = b.call(block, h, f"blocks.{i}")
        h = b.call(self._final_norm(), h, "norm")
        y = b.call(LMHead(self.d_model, self.vocab_size, bias=False), h, "head")
        if self.tie_embeddings:
            b.tie("head.weight", "embed.weight")
        return y
