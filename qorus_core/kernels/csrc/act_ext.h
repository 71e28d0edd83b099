/* act_ext.h - private: the activations of PyTorch's set beyond act.c's (leaky_relu, elu,
 * softplus, mish, hardswish, glu and their backward). Their bodies (act_ext_impl.h) are part of
 * the "vec" family: vec_impl.h includes them, so act.c, act_avx2.c and act_avx512.c build one
 * twin per tier; act_ext.c holds the entry points. Plain float32 formulas in the operation
 * order of their NumPy twins (decl/act_piecewise.py, act_smooth.py, glu.py), exp from
 * qr_exp_shift / qr_exp_neg (qr_expf's bits on every tier), no FMA: bit-identical on every
 * tier. */
#ifndef QORUS_ACT_EXT_H
#define QORUS_ACT_EXT_H

#include "qr_vec.h"

enum {
    AX_LEAKY_RELU, AX_LEAKY_RELU_BWD, AX_ELU, AX_ELU_BWD, AX_SOFTPLUS, AX_SOFTPLUS_BWD,
    AX_MISH, AX_MISH_BWD, AX_HARDSWISH, AX_HARDSWISH_BWD
};

/* elementwise over n: o[i] = f(x[i]) (forward) or dy[i] * f'(x[i]) (backward) */
typedef struct {
    int op;
    const float *x, *dy;   /* dy: NULL in a forward */
    float *o;
    float s, t;            /* negative_slope / alpha / beta; threshold (softplus) */
} ax_ctx;

/* GLU rows: x[R, 2m] = [a | b] per row, y[R, m] = a * sigmoid(b); backward from x and
 * dy[R, m]: dx[R, 2m] = [s dy | (1 - s) s a dy], s = sigmoid(b). Ranges index y / dy. */
typedef struct { const float *x, *dy; float *y, *dx; int64_t m; } glu_ctx;

/* expm1(x) for x <= 0 (ELU's negative branch), e = qr_expf(x): on (-ln 2, 0] x + x^2 p(x),
 * Taylor to x^10 (truncation < 1e-9 relative), below e - 1 (e < 1/2: |e - 1| > 1/2, no
 * cancellation). Within 1.32 ulp of expm1 on every float x <= 0 (measured exhaustively
 * against double expm1; tests/test_mlp_extras.py holds ELU within 2.5 ulp of float64 on a
 * dense grid, every tier); NaN propagates (the second branch, e = NaN). */
static inline float qr_expm1_neg_f(float x, float e) {
    float p = 2.7557319224e-7f;   /* 1 / 10! */
    p = p * x + 2.7557319224e-6f;
    p = p * x + 2.4801587302e-5f;
    p = p * x + 1.9841269841e-4f;
    p = p * x + 1.3888888889e-3f;
    p = p * x + 8.3333333333e-3f;
    p = p * x + 4.1666666667e-2f;
    p = p * x + 1.6666666667e-1f;
    p = p * x + 0.5f;
    const float small = (x * x) * p + x;
    return x > -0.69314718f ? small : e - 1.0f;
}

/* log(1 + w) for w in [0, 1] (softplus: w = exp(-|z|)) as 2 atanh(s), s = w / (2 + w) in
 * [0, 1/3]: 2s (1 + s^2/3 + ... + s^14/15), truncation < 2e-9 relative; within 1.97 ulp of
 * log1p on every float w in [0, 1] (measured exhaustively, the rounding of s dominating). */
static inline float qr_log1p01_f(float w) {
    const float s = w / (w + 2.0f), s2 = s * s;
    float p = 6.6666666667e-2f;   /* 1/15 */
    p = p * s2 + 7.6923076923e-2f;
    p = p * s2 + 9.0909090909e-2f;
    p = p * s2 + 1.1111111111e-1f;
    p = p * s2 + 1.4285714286e-1f;
    p = p * s2 + 2.0e-1f;
    p = p * s2 + 3.3333333333e-1f;
    const float t = s + s;
    return t + t * (s2 * p);
}

#define QR_ACT_EXT_DECL(sfx)                                               \
    void qr__act_ext_range_##sfx(void *ctx, int64_t lo, int64_t hi);       \
    void qr__glu_range_##sfx(void *ctx, int64_t lo, int64_t hi);           \
    void qr__glu_bwd_range_##sfx(void *ctx, int64_t lo, int64_t hi);
QR_ACT_EXT_DECL(portable)
QR_ACT_EXT_DECL(avx2)
QR_ACT_EXT_DECL(avx512)

#endif
