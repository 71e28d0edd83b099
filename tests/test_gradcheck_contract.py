"""``check_gradients`` holds both backward rules: a layer *writes* dx and *adds* into its
parameter gradients. Each broken layer below computes the right numbers but breaks one rule;
the checker must fail it (and pass the correct layer they all derive from)."""

from __future__ import annotations

import pytest

from qorus_core.testing import check_gradients
from qorus_layers_mlp import Linear


class OverwritesWeightGrad(Linear):
    """dW = dy^T x instead of dW += dy^T x."""

    def backward(self, dy, ctx):
        k = ctx.k
        k.gemm(dy, ctx.x, ctx.dweight, trans_a=True, beta=0.0)
        if self.bias:
            k.col_sum(dy, ctx.dbias, beta=1.0)
        if ctx.dx is not None:
            k.gemm(dy, ctx.weight, ctx.dx)
        return ctx.dx


class OverwritesBiasGrad(Linear):
    """db = sum dy instead of db += sum dy."""

    def backward(self, dy, ctx):
        k = ctx.k
        k.gemm(dy, ctx.x, ctx.dweight, trans_a=True, beta=1.0)
        k.col_sum(dy, ctx.dbias, beta=0.0)
        if ctx.dx is not None:
            k.gemm(dy, ctx.weight, ctx.dx)
        return ctx.dx


class AddsIntoDx(Linear):
    """dx += dy W instead of dx = dy W: right only while the planner's slot happens to be 0."""

    def backward(self, dy, ctx):
        k = ctx.k
        k.gemm(dy, ctx.x, ctx.dweight, trans_a=True, beta=1.0)
        if self.bias:
            k.col_sum(dy, ctx.dbias, beta=1.0)
        if ctx.dx is not None:
            k.gemm(dy, ctx.weight, ctx.dx, beta=1.0)
        return ctx.dx


class NeverWritesDx(Linear):
    """Leaves dx as it found it (as if the input needed no gradient)."""

    def backward(self, dy, ctx):
        k = ctx.k
        k.gemm(dy, ctx.x, ctx.dweight, trans_a=True, beta=1.0)
        if self.bias:
            k.col_sum(dy, ctx.dbias, beta=1.0)
        return ctx.dx


@pytest.mark.parametrize("kernels", ["numpy", "c"])
def test_correct_linear_passes(kernels):
    from qorus_core.testing import c_available

    if kernels == "c" and not c_available():
        pytest.skip("C kernels unavailable")
    check_gradients(Linear(6, 4), input_shape=(6,), batch=4, kernels=kernels)


@pytest.mark.parametrize("broken", [OverwritesWeightGrad, OverwritesBiasGrad, AddsIntoDx,
                                    NeverWritesDx])
def test_broken_backward_rule_fails(broken):
    with pytest.raises(AssertionError, match="backward must write dx and add into parameter"):
        check_gradients(broken(6, 4), input_shape=(6,), batch=4, samples=40)
