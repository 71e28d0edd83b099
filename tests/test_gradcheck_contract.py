"""``check_gradients`` holds both backward rules: a layer *writes* dx and *adds* into its
parameter gradients. Each broken variant below computes the right numbers but breaks one rule;
the checker must fail it (and pass the correct Linear, and the variant with no rule broken)."""

from __future__ import annotations

import pytest

from qorus_core.testing import check_gradients
from qorus_layers_mlp import Linear

ADD, WRITE, SKIP = 1.0, 0.0, None   # a backward output's beta: += , = , or left unwritten
RULES = {"dweight": ADD, "dbias": ADD, "dx": WRITE}
BROKEN = {
    "overwrites-dW": {"dweight": WRITE},     # dW = dy^T x instead of dW += dy^T x
    "overwrites-db": {"dbias": WRITE},       # db = sum dy instead of db += sum dy
    "adds-into-dx": {"dx": ADD},             # right only while the planner's slot happens to be 0
    "never-writes-dx": {"dx": SKIP},         # as if the input needed no gradient
}


class RuleLinear(Linear):
    """Linear's backward with the beta of each output taken from ``betas`` (RULES: correct)."""

    betas = RULES

    def backward(self, dy, ctx):
        k, betas = ctx.k, self.betas
        k.gemm(dy, ctx.x, ctx.dweight, trans_a=True, beta=betas["dweight"])
        if self.bias:
            k.col_sum(dy, ctx.dbias, beta=betas["dbias"])
        if ctx.dx is not None and betas["dx"] is not SKIP:
            k.gemm(dy, ctx.weight, ctx.dx, beta=betas["dx"])
        return ctx.dx


def rule_linear(**broken) -> RuleLinear:
    layer = RuleLinear(6, 4)
    layer.betas = {**RULES, **broken}
    return layer


@pytest.mark.parametrize("make", [lambda: Linear(6, 4), rule_linear], ids=["Linear", "RuleLinear"])
def test_correct_linear_passes(kernels, make):
    check_gradients(make(), input_shape=(6,), batch=4, kernels=kernels)


@pytest.mark.parametrize("broken", BROKEN.values(), ids=BROKEN.keys())
def test_broken_backward_rule_fails(broken):
    with pytest.raises(AssertionError, match="backward must write dx and add into parameter"):
        check_gradients(rule_linear(**broken), input_shape=(6,), batch=4, samples=40)
