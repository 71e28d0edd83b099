"""GemmaBlock: Gemma 3's decoder block, sandwich-normed:
h = x + post_attn_norm(attn(norm1(x))), then h + post_ffn_norm(ffn(norm2(h)))."""

from __future__ import annotations

from qorus_core import Composite, Layer
from qorus_core.errors import ShapeError
from qorus_core.validate import maybe, positive_int, real

from .geglu import GeGLUFeedForward
from .gemma_attention import GemmaAttention
from .rmsnorm import RMSNorm


class GemmaBlock(Composite):
    """RMSNorms with multiplied gains (GGUF's, already 1 + w), ``llm.GemmaAttention``
    (global, or over the last ``window`` positions), GeGLU MLP. Params: ``norm1.weight``,
    ``attn.*``, ``post_attn_norm.weight``, ``norm2.weight``, ``ffn.w_gate`` / ``w_up`` /
    ``w_down``, ``post_ffn_norm.weight``."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None,
                 head_dim: int | None = None, d_ff: int | None = None,
                 rope_theta: float = 10000.0, window: int | None = None, eps: float = 1e-6,
                 attn_scale: float | None = None, max_len: int | None = None) -> None:
        name = "llm.GemmaBlock"
        self.d_model = positive_int(d_model, "d_model", name)
        self.n_heads = positive_int(n_heads, "n_heads", name)
        self.n_kv_heads = maybe(positive_int, n_kv_heads, "n_kv_heads", name)
        self.head_dim = maybe(positive_int, head_dim, "head_dim", name)
        self.d_ff = maybe(positive_int, d_ff, "d_ff", name)
        self.rope_theta = real(rope_theta, "rope_theta", name, lo=0.0, lo_open=True)
        self.window = maybe(positive_int, window, "window", name)
        self.eps = real(eps, "eps", name, lo=0.0)
        self.attn_scale = maybe(real, attn_scale, "attn_scale", name, lo=0.0, lo_open=True)
        self.max_len = maybe(positive_int, max_len, "max_len", name)
        self.children()          # bad sizes fail here, when the block is made

    def children(self) -> dict[str, Layer]:
        """The child layers by name, made afresh (each block owns its weights)."""
        d = self.d_model

        def norm() -> RMSNorm:
            return RMSNorm(d, self.eps)

        attn = GemmaAttention(d, self.n_heads, self.n_kv_heads, self.head_dim, self.rope_theta,
                              self.window, self.eps, self.attn_scale, self.max_len)
        return {"norm1": norm(), "attn": attn, "post_attn_norm": norm(), "norm2": norm(),
                "ffn": GeGLUFeedForward(d, self.d_ff or 4 * d), "post_ffn_norm": norm()}

    def build(self, x, b):
        """Gemma's sandwich norms: ``h = x + post_attn_norm(attn(norm1(x)))``, then ``h +
        post_ffn_norm(ffn(norm2(h)))``."""
        if len(x.shape) != 3 or x.shape[2] != self.d_model:
            raise ShapeError(f"{b.path or 'GemmaBlock'}: expects [B, T, {self.d_model}], "
                             f"got {x.shape}")
        c = self.children()
        a = b.call(c["attn"], b.call(c["norm1"], x, "norm1"), "attn")
        h = b.add(x, b.call(c["post_attn_norm"], a, "post_attn_norm"))
        f = b.call(c["ffn"], b.call(c["norm2"], h, "norm2"), "ffn")
        return b.add(h, b.call(c["post_ffn_norm"], f, "post_ffn_norm"))
