"""The loss kernels added to the loss family (bce_with_logits, l1, huber, kl_div,
cross_entropy's ignore_index, count_correct's) and their Loss classes: against PyTorch (when
importable), against central finite differences in float64 on both kernel sets, C against
NumPy, and the classes' configs and target checks."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import ConfigError, DataError, KernelError, ShapeError, Tensor
from qorus_core.kernels import get_kernels
from qorus_core.train.losses import (
    LOSSES,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
)

T = Tensor.of
IGN = -100


def _k(kernels):
    return get_kernels(kernels)


def _zeros(a: np.ndarray) -> Tensor:
    return T(np.zeros(a.shape, np.float32))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _logprobs(rng, shape) -> np.ndarray:
    x = rng.standard_normal(shape)
    return (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)


def _probs(rng, shape, zeros: bool = False) -> np.ndarray:
    p = np.exp(_logprobs(rng, shape).astype(np.float64))
    if zeros:                                   # some exact zeros: 0 log 0 = 0
        p[rng.random(shape) < 0.3] = 0.0
    return p.astype(np.float32)


# ----------------------------------------------------------------------------- against torch
BCE_CASES = [((13, 7), True), ((13, 7), False), ((5, 3, 11), True), ((17,), False), ((1, 1), True)]


@pytest.mark.parametrize("shape,with_pw", BCE_CASES)
def test_bce_with_logits_matches_torch(kernels, shape, with_pw):
    torch = pytest.importorskip("torch")
    rng = _rng(1)
    x = (rng.standard_normal(shape) * 12).astype(np.float32)      # large |x|: stability
    t = rng.random(shape).astype(np.float32)                      # soft targets
    t[rng.random(shape) < 0.3] = 1.0
    pw = rng.uniform(0.0, 4.0, shape[-1]).astype(np.float32) if with_pw else None
    d = _zeros(x)
    v = _k(kernels).bce_with_logits(T(x), T(t), d, None if pw is None else T(pw))
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=None if pw is None else torch.tensor(pw))(
        xt, torch.tensor(t))
    ref.backward()
    assert isinstance(v, float)
    assert v == pytest.approx(ref.item(), rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(d.a, xt.grad.numpy(), rtol=1e-5, atol=1e-8)
    assert _k(kernels).bce_with_logits(T(x), T(t), None, None if pw is None else T(pw)) == v


def test_bce_with_logits_extreme_logits_are_finite(kernels):
    x = np.array([[-200.0, -50.0, 0.0, 50.0, 200.0]], np.float32)
    t = np.array([[0.0, 1.0, 0.5, 0.0, 1.0]], np.float32)
    d = _zeros(x)
    v = _k(kernels).bce_with_logits(T(x), T(t), d, T(np.full(5, 2.0, np.float32)))
    assert np.isfinite(v) and np.all(np.isfinite(d.a))
    # exact: (50 + 2 * 50 + 2 * log 2 * 0.5 ... ) computed in float64
    x64, t64, w = x.astype(np.float64), t.astype(np.float64), 1 + (2.0 - 1) * t.astype(np.float64)
    want = np.mean((1 - t64) * x64 + w * (np.log1p(np.exp(-np.abs(x64))) + np.maximum(-x64, 0)))
    assert v == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("shape", [(13, 7), (3, 5, 9), (23,)])
def test_l1_matches_torch(kernels, shape):
    torch = pytest.importorskip("torch")
    rng = _rng(2)
    y = rng.standard_normal(shape).astype(np.float32)
    t = rng.standard_normal(shape).astype(np.float32)
    t.reshape(-1)[::4] = y.reshape(-1)[::4]                        # ties: gradient 0
    d = _zeros(y)
    v = _k(kernels).l1(T(y), T(t), d)
    yt = torch.tensor(y, requires_grad=True)
    ref = torch.nn.L1Loss()(yt, torch.tensor(t))
    ref.backward()
    assert v == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(d.a, yt.grad.numpy(), rtol=1e-6, atol=0)
    assert np.all(d.a.reshape(-1)[::4] == 0)


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("shape", [(11, 6), (2, 3, 7)])
def test_huber_matches_torch(kernels, shape, delta):
    torch = pytest.importorskip("torch")
    rng = _rng(3)
    y = (rng.standard_normal(shape) * 2).astype(np.float32)
    t = rng.standard_normal(shape).astype(np.float32)
    d = _zeros(y)
    v = _k(kernels).huber(T(y), T(t), d, delta)
    yt = torch.tensor(y, requires_grad=True)
    ref = torch.nn.HuberLoss(delta=delta)(yt, torch.tensor(t))
    ref.backward()
    assert v == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(d.a, yt.grad.numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("shape", [(6, 11), (4, 3, 5), (9,)])
def test_kl_div_matches_torch(kernels, shape, log_target):
    torch = pytest.importorskip("torch")
    rng = _rng(4)
    x = _logprobs(rng, shape)
    t = _probs(rng, shape, zeros=not log_target)
    if log_target:
        t = np.log(t)
    d = _zeros(x)
    v = _k(kernels).kl_div(T(x), T(t), d, log_target)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.KLDivLoss(reduction="batchmean", log_target=log_target)(xt, torch.tensor(t))
    ref.backward()
    assert v == pytest.approx(ref.item(), rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(d.a, xt.grad.numpy(), rtol=1e-6, atol=1e-9)


def test_kl_div_of_a_distribution_with_itself_may_round_below_zero(kernels):
    """KL(p || p) = 0 up to rounding, which may be negative: a value, not an error."""
    rng = _rng(5)
    x = _logprobs(rng, (64, 33))
    v = _k(kernels).kl_div(T(x), T(np.exp(x.astype(np.float64)).astype(np.float32)), None)
    assert abs(v) < 1e-5
    assert _k(kernels).kl_div(T(x), T(x), None, True) == 0.0
    # targets outside [0, 1]: BCE is negative, returned as it is
    assert _k(kernels).bce_with_logits(T(np.full(4, 10, np.float32)),
                                       T(np.full(4, 2, np.float32)), None) < 0


CE_CASES = [((13, 7), IGN, 0.0), ((13, 7), IGN, 0.2), ((13, 7), 2, 0.0), ((13, 7), 2, 0.1),
            ((3, 5, 9), IGN, 0.3), ((40, 130), IGN, 0.0)]


def _ce_targets(rng, shape, ignore_index):
    t = rng.integers(0, shape[-1], shape[:-1]).astype(np.int32)
    t.reshape(-1)[rng.random(t.size) < 0.3] = ignore_index
    t.reshape(-1)[0] = ignore_index
    return t


@pytest.mark.parametrize("shape,ignore_index,smoothing", CE_CASES)
def test_cross_entropy_ignore_index_matches_torch(kernels, shape, ignore_index, smoothing):
    torch = pytest.importorskip("torch")
    rng = _rng(6)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = _ce_targets(rng, shape, ignore_index)
    d = _zeros(x)
    v = _k(kernels).cross_entropy(T(x), T(t), d, smoothing, ignore_index)
    xt = torch.tensor(x.reshape(-1, shape[-1]), requires_grad=True)
    ref = torch.nn.functional.cross_entropy(xt, torch.tensor(t.reshape(-1), dtype=torch.long),
                                            ignore_index=ignore_index, label_smoothing=smoothing)
    ref.backward()
    assert v == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(d.a.reshape(-1, shape[-1]), xt.grad.numpy(), rtol=1e-5, atol=1e-8)
    assert np.all(d.a.reshape(-1, shape[-1])[t.reshape(-1) == ignore_index] == 0)
    # the class: the same value, and its config
    loss = CrossEntropyLoss(label_smoothing=smoothing, ignore_index=ignore_index)
    assert loss(T(x), T(t), None, _k(kernels)) == pytest.approx(v, rel=1e-6)


def test_cross_entropy_every_row_ignored_is_zero(kernels):
    """PyTorch returns NaN (0 / 0); the kernel 0.0 with a zero gradient, so a batch of
    padding only does not stop training."""
    x = np.random.default_rng(7).standard_normal((4, 5)).astype(np.float32)
    t = np.full(4, IGN, np.int32)
    d = T(np.ones_like(x))
    assert _k(kernels).cross_entropy(T(x), T(t), d, 0.1) == 0.0
    assert np.all(d.a == 0)
    torch = pytest.importorskip("torch")
    assert np.isnan(torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t).long()).item())


def test_cross_entropy_targets_other_than_ignore_index_must_be_classes(kernels):
    k = _k(kernels)
    x = T(np.zeros((4, 3), np.float32))
    for t, ign in [([0, IGN, 3, 1], IGN), ([0, -1, 2, 1], IGN), ([0, IGN, 2, 1], -1),
                   ([0, 1, 2, 5], 2)]:
        with pytest.raises(KernelError, match=r"cross_entropy: target class out of range \[0, 3\)"):
            k.cross_entropy(x, T(np.array(t, np.int32)), None, 0.0, ign)
    assert k.cross_entropy(x, T(np.array([0, -7, 2, 1], np.int32)), None, 0.0, -7) == \
        pytest.approx(np.log(3), rel=1e-6)
    with pytest.raises(KernelError, match="cross_entropy: ignore_index must be an integer"):
        k.cross_entropy(x, T(np.zeros(4, np.int32)), None, 0.0, 1.5)


def test_dlogits_may_alias_logits_with_ignored_rows(kernels):
    rng = _rng(8)
    x = rng.standard_normal((9, 6)).astype(np.float32)
    t = _ce_targets(rng, (9, 6), IGN)
    d = _zeros(x)
    k = _k(kernels)
    v = k.cross_entropy(T(x), T(t), d, 0.1)
    a = T(x.copy())
    assert k.cross_entropy(a, T(t), a, 0.1) == pytest.approx(v, rel=1e-12)
    np.testing.assert_array_equal(a.a, d.a)


def test_count_correct_skips_ignored_rows(kernels):
    k = _k(kernels)
    x = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 1, 2]]              # argmax 0 1 2 3 1 2
    t = np.array([0, 1, 2, 0, IGN, 2], np.int32)
    assert k.count_correct(T(x), T(t)) == 4
    assert k.count_correct(T(x), T(t), 2) == 2                        # class 2 ignored
    assert k.count_correct(T(x), T(t), IGN) == 4
    with pytest.raises(KernelError, match="count_correct: ignore_index must be an integer"):
        k.count_correct(T(x), T(t), 0.5)


# ----------------------------------------------------------------------------- finite differences
def _fd_grad(f, x: np.ndarray, h: float) -> np.ndarray:
    """Central differences of ``f`` (a float of a float32 array) in float64, each step the
    exact difference of the float32 points it evaluates."""
    g = np.zeros(x.shape, np.float64)
    flat = x.reshape(-1)
    for i in range(flat.size):
        xp, xm = flat.copy(), flat.copy()
        xp[i] = np.float32(flat[i] + h)
        xm[i] = np.float32(flat[i] - h)
        g.reshape(-1)[i] = (f(xp.reshape(x.shape)) - f(xm.reshape(x.shape))) / \
            (float(xp[i]) - float(xm[i]))
    return g


def _check_grad(f, x, grad, h=1e-3, rtol=1e-4, atol=1e-7):
    np.testing.assert_allclose(grad, _fd_grad(f, x, h), rtol=rtol, atol=atol)


def _grad_cases(k):
    """(name, f(x) -> loss, x, kernel's gradient at x, h, rtol, atol), inputs kept away from
    the kinks (L1 at 0, Huber at +-delta) by more than the step."""
    rng = _rng(9)
    out = []

    def with_grad(call, x):
        d = _zeros(x)
        call(x, d)
        return d.a.astype(np.float64)

    # BCE with pos_weight, odd shape
    x = (rng.standard_normal((5, 7)) * 3).astype(np.float32)
    t = rng.random((5, 7)).astype(np.float32)
    pw = T(rng.uniform(0.2, 3.0, 7).astype(np.float32))
    call = lambda x, d=None: k.bce_with_logits(T(x), T(t), d, pw)  # noqa: E731
    out.append(("bce", call, x, with_grad(call, x), 1e-3, 1e-5, 1e-9))
    # L1 and Huber on a grid of 1/256 (y - t, y +- h exact in float32: their float32
    # difference, as torch's, adds no rounding to the finite differences)
    grid = lambda lo, hi, shape: (rng.integers(lo, hi, shape) / 256).astype(np.float32)  # noqa: E731
    sign = lambda shape: np.where(rng.random(shape) < 0.5, -1, 1)  # noqa: E731
    y = grid(-512, 512, (3, 11))
    tl = (y + sign(y.shape) * grid(2, 256, y.shape)).astype(np.float32)
    call = lambda x, d=None, tl=tl: k.l1(T(x), T(tl), d)  # noqa: E731
    out.append(("l1", call, y, with_grad(call, y), 2.0**-10, 1e-6, 1e-12))
    delta = 0.75                                   # 192 / 256
    e = rng.integers(2, 512, (4, 9))
    e[np.abs(e - 192) < 2] += 4
    th = grid(-512, 512, (4, 9))
    yh = (th + sign(e.shape) * e / 256).astype(np.float32)
    call = lambda x, d=None: k.huber(T(x), T(th), d, delta)  # noqa: E731
    out.append(("huber", call, yh, with_grad(call, yh), 2.0**-10, 1e-6, 1e-12))
    # KL, both target forms
    xk = _logprobs(rng, (3, 2, 5))
    for log_target in (False, True):
        tk = _probs(rng, (3, 2, 5), zeros=not log_target)
        if log_target:
            tk = np.log(tk)
        call = lambda x, d=None, tk=tk, lt=log_target: k.kl_div(T(x), T(tk), d, lt)  # noqa: E731
        out.append((f"kl log_target={log_target}", call, xk, with_grad(call, xk), 1e-3, 1e-5, 1e-9))
    # cross-entropy (float32 inside: a larger step, looser bounds) with ignored rows
    xc = rng.standard_normal((7, 5)).astype(np.float32)
    tc = np.array([1, IGN, 4, 0, IGN, 2, 2], np.int32)
    for eps in (0.0, 0.25):
        call = lambda x, d=None, eps=eps: k.cross_entropy(T(x), T(tc), d, eps)  # noqa: E731
        out.append((f"ce eps={eps}", call, xc, with_grad(call, xc), 1e-2, 3e-3, 3e-5))
    return out


def _grad_ids():
    return [c[0] for c in _grad_cases(get_kernels("numpy"))]


@pytest.mark.parametrize("case", range(len(_grad_ids())), ids=_grad_ids())
def test_gradients_match_finite_differences(kernels, case):
    name, f, x, grad, h, rtol, atol = _grad_cases(_k(kernels))[case]
    _check_grad(f, x, grad, h, rtol, atol)


@pytest.mark.parametrize("case", range(len(_grad_ids())), ids=_grad_ids())
def test_a_wrong_gradient_fails_the_finite_differences(case):
    """The check has teeth: 2% off on one element, or a gradient over the wrong count."""
    name, f, x, grad, h, rtol, atol = _grad_cases(get_kernels("numpy"))[case]
    i = int(np.argmax(np.abs(grad)))
    bad = grad.copy()
    bad.reshape(-1)[i] *= 1.02
    with pytest.raises(AssertionError):
        _check_grad(f, x, bad, h, rtol, atol)
    with pytest.raises(AssertionError):
        _check_grad(f, x, grad * (1 - 1 / 7), h, rtol, atol)


# ----------------------------------------------------------------------------- C against NumPy
def test_c_and_numpy_agree_on_odd_shapes(ck, nk):
    rng = _rng(10)
    for shape in [(1, 1), (3, 17), (2, 5, 33), (4097,), (3, 4099)]:   # across a 4096 block
        a = (rng.standard_normal(shape) * 4).astype(np.float32)
        b = rng.random(shape).astype(np.float32)
        pw = T(rng.uniform(0, 2, shape[-1]).astype(np.float32))
        calls = [lambda k, d, a, b, pw: k.bce_with_logits(T(a), T(b), d, pw),
                 lambda k, d, a, b, pw: k.bce_with_logits(T(a), T(b), d),
                 lambda k, d, a, b, pw: k.l1(T(a), T(b), d),
                 lambda k, d, a, b, pw: k.huber(T(a), T(b), d, 0.8),
                 lambda k, d, a, b, pw: k.kl_div(T(-np.abs(a)), T(b), d),
                 lambda k, d, a, b, pw: k.kl_div(T(-np.abs(a)), T(-b), d, True)]
        for i, call in enumerate(calls):
            dc, dn = _zeros(a), _zeros(a)
            vc, vn = call(ck, dc, a, b, pw), call(nk, dn, a, b, pw)
            assert vc == pytest.approx(vn, rel=1e-9, abs=1e-12), (shape, i)
            np.testing.assert_allclose(dc.a, dn.a, rtol=1e-6, atol=1e-12, err_msg=f"{shape} {i}")
        tg = _ce_targets(rng, shape, IGN) if len(shape) > 1 else None
        if tg is not None:
            dc, dn = _zeros(a), _zeros(a)
            vc = ck.cross_entropy(T(a), T(tg), dc, 0.1)
            vn = nk.cross_entropy(T(a), T(tg), dn, 0.1)
            assert vc == pytest.approx(vn, rel=1e-5)
            np.testing.assert_allclose(dc.a, dn.a, rtol=1e-5, atol=1e-8)


def test_bad_arguments_are_refused_alike(ck, nk):
    x = T(np.zeros((4, 3), np.float32))
    cases = [
        (lambda k: k.bce_with_logits(x, T(np.zeros(11, np.float32)), None), "must have the same size"),
        (lambda k: k.bce_with_logits(x, x, None, T(np.ones(4, np.float32))),
         "pos_weight needs one weight for each of the 3 columns"),
        (lambda k: k.l1(x, T(np.zeros(13, np.float32)), None), "must have the same size"),
        (lambda k: k.huber(x, x, None, 0.0), "delta=0.0 must be > 0"),
        (lambda k: k.huber(x, x, None, float("nan")), "delta=nan must be > 0"),
        (lambda k: k.kl_div(x, T(np.zeros((3, 4), np.float32)), None), "must have the same shape"),
        (lambda k: k.kl_div(x, x, T(np.zeros(5, np.float32))), "must have the same size"),
    ]
    for call, match in cases:
        msgs = []
        for k in (ck, nk):
            with pytest.raises(KernelError, match=match) as exc:
                call(k)
            msgs.append(str(exc.value))
        assert msgs[0] == msgs[1]


# ----------------------------------------------------------------------------- the classes
def test_loss_classes_match_torch(kernels):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = _rng(11)
    y = (rng.standard_normal((9, 4)) * 2).astype(np.float32)
    prob = rng.random((9, 4)).astype(np.float32)
    lp = _logprobs(rng, (9, 4))
    pw = [0.5, 1.0, 2.0, 3.0]
    cases = [
        (BCEWithLogitsLoss(pos_weight=pw), y, prob,
         lambda a, b: F.binary_cross_entropy_with_logits(a, b, pos_weight=torch.tensor(pw))),
        (BCEWithLogitsLoss(), y, prob, F.binary_cross_entropy_with_logits),
        (L1Loss(), y, prob, F.l1_loss),
        (HuberLoss(delta=0.4), y, prob, lambda a, b: F.huber_loss(a, b, delta=0.4)),
        (KLDivLoss(), lp, prob, lambda a, b: F.kl_div(a, b, reduction="batchmean")),
        (KLDivLoss(log_target=True), lp, _logprobs(rng, (9, 4)),
         lambda a, b: F.kl_div(a, b, reduction="batchmean", log_target=True)),
    ]
    for loss, out, target, ref_fn in cases:
        tgt = loss.check_targets(target, out.shape[1:])
        d = _zeros(out)
        v = loss(T(out), T(tgt), d, _k(kernels))
        ot = torch.tensor(out, requires_grad=True)
        ref = ref_fn(ot, torch.tensor(target))
        ref.backward()
        assert v == pytest.approx(ref.item(), rel=1e-5), loss
        np.testing.assert_allclose(d.a, ot.grad.numpy(), rtol=1e-5, atol=1e-8, err_msg=repr(loss))


def test_losses_are_registered_under_core():
    from qorus_core.registry import get_registry

    r = get_registry()
    for name, cls in LOSSES.items():
        assert r.get("loss", name) is cls
        assert r.get("loss", f"core.{name}") is cls
    assert {"BCEWithLogits", "L1", "Huber", "KLDiv", "CrossEntropy", "MSE"} <= set(LOSSES)
    assert BCEWithLogitsLoss().type_name == "core.BCEWithLogits"


@pytest.mark.parametrize("loss", [
    BCEWithLogitsLoss(), BCEWithLogitsLoss(pos_weight=[1.0, 2.5, 0.0]), L1Loss(), HuberLoss(),
    HuberLoss(delta=0.25), KLDivLoss(), KLDivLoss(log_target=True), CrossEntropyLoss(),
    CrossEntropyLoss(label_smoothing=0.1, ignore_index=3)], ids=repr)
def test_config_round_trip(loss):
    import json

    config = loss.get_config()
    assert json.loads(json.dumps(config)) == config            # JSON-able as it is
    again = type(loss).from_config(config)
    assert type(again) is type(loss) and again.get_config() == config and repr(again) == repr(loss)


def test_config_of_cross_entropy_keeps_its_old_form():
    assert CrossEntropyLoss(label_smoothing=0.05).get_config() == {"label_smoothing": 0.05}
    assert CrossEntropyLoss(ignore_index=0).get_config() == {"label_smoothing": 0.0,
                                                             "ignore_index": 0}
    assert CrossEntropyLoss.from_config({"label_smoothing": 0.1}).ignore_index == -100


@pytest.mark.parametrize("make,match", [
    (lambda: HuberLoss(delta=0), "Huber: delta"),
    (lambda: HuberLoss(delta=-1.0), "Huber: delta"),
    (lambda: HuberLoss(delta="1"), "Huber: delta"),
    (lambda: HuberLoss(delta=float("nan")), "Huber: delta"),
    (lambda: KLDivLoss(log_target=1), "KLDiv: log_target"),
    (lambda: BCEWithLogitsLoss(pos_weight=2.0), "BCEWithLogits: pos_weight"),
    (lambda: BCEWithLogitsLoss(pos_weight=[]), "BCEWithLogits: pos_weight"),
    (lambda: BCEWithLogitsLoss(pos_weight=[1.0, -1.0]), r"BCEWithLogits: pos_weight\[1\]"),
    (lambda: BCEWithLogitsLoss(pos_weight=[1.0, "2"]), r"BCEWithLogits: pos_weight\[1\]"),
    (lambda: BCEWithLogitsLoss(pos_weight=[float("inf")]), r"BCEWithLogits: pos_weight\[0\]"),
    (lambda: CrossEntropyLoss(ignore_index=1.0), "CrossEntropy: ignore_index"),
    (lambda: CrossEntropyLoss(ignore_index=True), "CrossEntropy: ignore_index"),
    (lambda: CrossEntropyLoss(ignore_index=2**31), "CrossEntropy: ignore_index"),
    (lambda: HuberLoss.from_config({"delta": 1.0, "beta": 2}), "loss core.Huber: .*'?beta"),
    (lambda: L1Loss.from_config({"reduction": "sum"}), "loss core.L1: .*'?reduction"),
])
def test_bad_config_is_refused(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_targets_are_checked():
    bce = BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 3.0])
    assert bce.check_targets(np.zeros((5, 3)), (3,)).dtype == np.float32
    with pytest.raises(ShapeError, match=r"BCEWithLogits: targets must have shape \(N, 3\)"):
        bce.check_targets(np.zeros((5, 4)), (3,))
    with pytest.raises(ShapeError, match="BCEWithLogits: pos_weight has 3 weights"):
        bce.target_spec((4,))
    with pytest.raises(DataError, match=r"BCEWithLogits: targets must be probabilities in \[0, 1\], "
                                        r"got row 1, position 2: 1.5"):
        bce.check_targets(np.array([[0, 1, 0.5], [0, 0, 1.5]]), (3,))
    with pytest.raises(DataError, match="BCEWithLogits: targets must be probabilities"):
        BCEWithLogitsLoss().check_targets(np.array([[np.nan]]), (1,))
    with pytest.raises(ShapeError, match="L1: targets must have shape"):
        L1Loss().check_targets(np.zeros((5,)), (2,))
    with pytest.raises(ShapeError, match="Huber: targets dtype <U1 is not numeric"):
        HuberLoss().check_targets(np.array([["a", "b"]]), (2,))
    with pytest.raises(DataError, match=r"KLDiv: targets must be probabilities \(finite, >= 0\)"):
        KLDivLoss().check_targets(np.array([[0.5, -0.1]]), (2,))
    with pytest.raises(DataError, match="KLDiv: targets must be finite log-probabilities"):
        KLDivLoss(log_target=True).check_targets(np.array([[0.0, -np.inf]]), (2,))
    assert KLDivLoss(log_target=True).check_targets(np.array([[-0.5, -3.0]]), (2,)).shape == (1, 2)

    ce = CrossEntropyLoss()
    with pytest.raises(DataError, match=r"CrossEntropy: targets hold class indices in \[0, 3\], the "
                                        r"model has 3 classes"):
        ce.check_targets(np.array([0, 3, 1]), (3,))
    np.testing.assert_array_equal(ce.check_targets(np.array([0, -100, 2]), (3,)), [0, -100, 2])
    with pytest.raises(DataError, match=r"\(or ignore_index -100\); first out of range: row 1: -1"):
        ce.check_targets(np.array([0, -1, -100]), (3,))
    ce5 = CrossEntropyLoss(ignore_index=5)
    np.testing.assert_array_equal(ce5.check_targets(np.array([[0, 5], [2, 1]]), (2, 3)),
                                  [[0, 5], [2, 1]])
    with pytest.raises(DataError, match="first out of range: row 1, position 0: -100"):
        ce5.check_targets(np.array([[0, 5], [-100, 1]]), (2, 3))


def test_cross_entropy_accuracy_skips_ignored_rows(kernels):
    k = _k(kernels)
    x = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]               # argmax 0 1 2 0 1 2
    t = np.array([0, 1, 0, IGN, IGN, 2], np.int32)                    # 3 of the 4 kept right
    loss = CrossEntropyLoss()
    (acc,) = loss.metric_sums(T(x), T(t), k)
    assert acc / 6 == pytest.approx(3 / 4)                            # the Trainer divides by 6
    assert loss.metric_sums(T(x), T(np.full(6, IGN, np.int32)), k) == (0.0,)
    assert loss.metric_sums(T(x), T(np.array([0, 1, 2, 0, 1, 0], np.int32)), k) == (5,)
    seq = CrossEntropyLoss(ignore_index=2)                            # (2 samples, 3 positions)
    (acc,) = seq.metric_sums(T(x.reshape(2, 3, 3)), T(np.array([[0, 1, 2], [1, 1, 2]], np.int32)), k)
    assert acc / 2 == pytest.approx(3 / 4)


def test_a_trainer_trains_with_each_new_loss(kernels):
    from qorus_core import Model, Sequential
    from qorus_core.train.optimizers import Adam
    from qorus_core.train.trainer import Trainer
    from qorus_layers_mlp import Linear

    rng = _rng(12)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    w = rng.standard_normal((5, 3))
    logits = x @ w
    targets = {
        "bce": (BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 0.5]), (logits > 0).astype(np.float32)),
        "l1": (L1Loss(), logits.astype(np.float32)),
        "huber": (HuberLoss(delta=0.5), logits.astype(np.float32)),
        "kl": (KLDivLoss(), np.exp(logits) / np.exp(logits).sum(1, keepdims=True)),
        "ce": (CrossEntropyLoss(ignore_index=1), np.argmax(logits, 1).astype(np.int32)),
    }
    for name, (loss, y) in targets.items():
        model = Model(Sequential([Linear(None, 3)]), (5,), seed=2, kernels=kernels)
        tr = Trainer(model, loss, Adam(lr=0.05), batch_size=16, epochs=6, progress=False)
        hist = tr.fit(x, y)
        assert hist[-1]["loss"] < hist[0]["loss"], (name, hist)


def test_c_losses_do_not_depend_on_the_thread_count(threads):
    ck = threads
    rng = _rng(13)
    a = (rng.standard_normal((70, 4099)) * 3).astype(np.float32)     # many 4096 blocks
    b = rng.random(a.shape).astype(np.float32)
    pw = T(rng.uniform(0, 2, a.shape[-1]).astype(np.float32))
    tg = _ce_targets(rng, a.shape, IGN)
    calls = [lambda d: ck.bce_with_logits(T(a), T(b), d, pw), lambda d: ck.l1(T(a), T(b), d),
             lambda d: ck.huber(T(a), T(b), d, 0.5), lambda d: ck.kl_div(T(-np.abs(a)), T(b), d),
             lambda d: ck.cross_entropy(T(a), T(tg), d, 0.1)]
    for call in calls:
        got = []
        for n in (1, 4):
            ck.set_threads(n)
            d = _zeros(a)
            got.append((call(d), d.a))
        assert got[0][0] == got[1][0]
        np.testing.assert_array_equal(got[0][1], got[1][1])
