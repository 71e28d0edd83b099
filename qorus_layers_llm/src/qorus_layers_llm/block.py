"""TransformerBlock: a pre-norm decoder block, x + attn(norm1(x)), then + ffn(norm2(.))."""

from __future__ import annotations

from qorus_core import Composite, Layer, layer_from_dict
from qorus_core.errors import ShapeError
from qorus_core.validate import boolean, choice, maybe, positive_int, real

from .attention import CausalSelfAttention
from .feedforward import FeedForward
from .rmsnorm import RMSNorm
from .swiglu import SwiGLUFeedForward

NORMS = ("layernorm", "rmsnorm")
FFNS = ("gelu", "gelu_tanh", "relu", "swiglu")


class TransformerBlock(Composite):
    """GPT-2 (layernorm + GELU MLP) or llama (rmsnorm + SwiGLU) style block; causal GQA
    attention with RoPE when ``rope``; ``bias`` gives attention and the GELU/ReLU MLP biases
    (GPT-2 has them, llama has none); ``rope_half_split`` rotates the pairs (i, i + D/2)
    (NEOX / Hugging Face order) instead of adjacent ones. Params: ``norm1.*``, ``attn.wq`` ..., ``norm2.*``,
    ``ffn.*`` (``ffn.fc.weight`` ... for gelu, ``ffn.w_gate`` ... for swiglu)."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None,
                 d_ff: int | None = None, norm: str = "layernorm", ffn: str = "gelu",
                 rope: bool = False, rope_theta: float = 10000.0, max_len: int | None = None,
                 eps: float = 1e-5, bias: bool = True, rope_half_split: bool = False) -> None:
        name = "llm.TransformerBlock"
        self.d_model = positive_int(d_model, "d_model", name)
        self.n_heads = positive_int(n_heads, "n_heads", name)
        self.n_kv_heads = maybe(positive_int, n_kv_heads, "n_kv_heads", name)
        self.d_ff = maybe(positive_int, d_ff, "d_ff", name)
        self.norm = choice(norm, "norm", name, NORMS)
        self.ffn = choice(ffn, "ffn", name, FFNS)
        self.rope = boolean(rope, "rope", name)
        self.rope_theta = real(rope_theta, "rope_theta", name, lo=0.0, lo_open=True)
        self.max_len = maybe(positive_int, max_len, "max_len", name)
        self.eps = real(eps, "eps", name, lo=0.0)
        self.bias = boolean(bias, "bias", name)
        self.rope_half_split = boolean(rope_half_split, "rope_half_split", name)
        self.children()          # bad sizes fail here, when the block is made

    def children(self) -> dict[str, Layer]:
        """The child layers by name: norm1, attn, norm2, ffn."""
        attn = CausalSelfAttention(self.d_model, self.n_heads, self.n_kv_heads,
                                   rope_theta=self.rope_theta, bias=self.bias,
                                   max_len=self.max_len, rope=self.rope,
                                   rope_half_split=self.rope_half_split)
        if self.ffn == "swiglu":
            hidden = self.d_ff or _swiglu_hidden(self.d_model)
            ffn: Layer = SwiGLUFeedForward(self.d_model, hidden)
        else:
            ffn = FeedForward(self.d_model, self.d_ff, self.ffn, self.bias)
        return {"norm1": norm_layer(self.norm, self.d_model, self.eps), "attn": attn,
                "norm2": norm_layer(self.norm, self.d_model, self.eps), "ffn": ffn}

    def build(self, x, b):
        """Pre-norm: ``h = x + attn(norm1(x))``, then ``h + ffn(norm2(h))``."""
        if len(x.shape) != 3 or x.shape[2] != self.d_model:
            raise ShapeError(f"{b.path or 'TransformerBlock'}: expects [B, T, {self.d_model}], "
                             f"got {x.shape}")
        c = self.children()
        h = b.add(x, b.call(c["attn"], b.call(c["norm1"], x, "norm1"), "attn"))
        return b.add(h, b.call(c["ffn"], b.call(c["norm2"], h, "norm2"), "ffn"))


def norm_layer(norm: str, d_model: int, eps: float) -> Layer:
    """The ``norm`` (one of NORMS) over the last ``d_model`` features: the blocks' and the
    GPT's final norm."""
    if norm == "rmsnorm":
        return RMSNorm(d_model, eps)
    return layer_from_dict({"type": "mlp.LayerNorm", "normalized_shape": d_model, "eps": eps})


def _swiglu_hidden(d: int) -> int:
    """llama's default: 2/3 of 4d, rounded up to a multiple of 32."""
    h = int(2 * 4 * d / 3)
    return (h + 31) // 32 * 32
