"""GPT: token embedding (+ learned positions), transformer blocks, final norm, LM head."""

from __future__ import annotations

from qorus_core import Composite, Spec
from qorus_core.errors import ShapeError
from qorus_core.init import normal
from qorus_core.validate import boolean, choice, maybe, positive_int, real

from .block import FFNS, NORMS, TransformerBlock, norm_layer
from .embedding import Embedding
from .head import LMHead
from .positional import PositionalEmbedding

POSITIONAL = ("learned", "rope")


class _TokenEmbedding(Embedding):
    """Embedding initialised N(0, std) (GPT-2 uses 0.02): with a tied head, N(0, 1) rows
    would start the logits at a scale of sqrt(d_model)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, std: float) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.std = real(std, "init_std", "llm.GPT", lo=0.0)

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
    ``rope_half_split`` rotates each head's pairs (i, i + D/2) (GGUF's NEOX models: qwen2,
    phi3; Hugging Face's ``rotate_half``) instead of adjacent pairs (GGUF llama).
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, max_len: int,
                 d_ff: int | None = None, n_kv_heads: int | None = None,
                 positional: str = "learned", norm: str = "layernorm", ffn: str = "gelu",
                 tie_embeddings: bool = True, rope_theta: float = 10000.0, eps: float = 1e-5,
                 bias: bool = True, init_std: float = 0.02, rope_half_split: bool = False) -> None:
        name = "llm.GPT"
        self.vocab_size = positive_int(vocab_size, "vocab_size", name)
        self.d_model = positive_int(d_model, "d_model", name)
        self.n_layers = positive_int(n_layers, "n_layers", name)
        self.n_heads = positive_int(n_heads, "n_heads", name)
        self.max_len = positive_int(max_len, "max_len", name)
        self.d_ff = maybe(positive_int, d_ff, "d_ff", name)
        self.n_kv_heads = maybe(positive_int, n_kv_heads, "n_kv_heads", name)
        self.positional = choice(positional, "positional", name, POSITIONAL)
        self.norm = choice(norm, "norm", name, NORMS)
        self.ffn = choice(ffn, "ffn", name, FFNS)
        self.tie_embeddings = boolean(tie_embeddings, "tie_embeddings", name)
        self.rope_theta = real(rope_theta, "rope_theta", name, lo=0.0, lo_open=True)
        self.eps = real(eps, "eps", name, lo=0.0)
        self.bias = boolean(bias, "bias", name)
        self.init_std = real(init_std, "init_std", name, lo=0.0)
        self.rope_half_split = boolean(rope_half_split, "rope_half_split", name)
        self.block()             # bad block settings fail here, when the model is made

    def block(self) -> TransformerBlock:
        """One transformer block of this model's settings (every block alike)."""
        return TransformerBlock(self.d_model, self.n_heads, self.n_kv_heads, self.d_ff, self.norm,
                                self.ffn, rope=self.positional == "rope", rope_theta=self.rope_theta,
                                max_len=self.max_len, eps=self.eps, bias=self.bias,
                                rope_half_split=self.rope_half_split)

    def build(self, x, b):
        """Token embeddings (and learned positions), ``n_layers`` blocks, the final norm and the head
        (tied to the embeddings when asked) over int32 ids ``[B, T]``: logits ``[B, T, vocab_size]``."""
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
        h = b.call(norm_layer(self.norm, self.d_model, self.eps), h, "norm")
        y = b.call(LMHead(self.d_model, self.vocab_size, bias=False), h, "head")
        if self.tie_embeddings:
            b.tie("head.weight", "embed.weight")
        return y
