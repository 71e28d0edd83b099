/* act_ext_impl.h - private: the bodies of act_ext.h's kernels, included by vec_impl.h, so once
 * per SIMD tier (QR_VEC_NAME names the twin). The exp-based formulas run in tiles: exp of a
 * tile into a stack buffer (qr_exp_shift / qr_exp_neg: the 8- / 16-lane qr_expf on AVX2 /
 * AVX-512, the same bits), then the rest of the formula, which the compiler vectorizes. Each
 * loop reads element i of its inputs before it writes element i of its output, so the output
 * may be an input (in place). No include guard. */
#include "act_ext.h"

/* e[j] = qr_expf(e[j]), in place */
static inline void ax__exp(float *e, int64_t n) { qr_exp_shift(e, 0.0f, e, n); }

/* x < 0 ? alpha expm1(x) : x (x = -0 gives -0, NaN gives NaN, as PyTorch) */
static inline void ax__elu(const float *x, float *o, int64_t n, float alpha) {
    float e[QR_EXP_TILE];
    for (int64_t j = 0; j < n; j++) e[j] = x[j] < 0.0f ? x[j] : 0.0f;   /* no overflow */
    ax__exp(e, n);
    for (int64_t j = 0; j < n; j++) {
        const float v = x[j];
        o[j] = v < 0.0f ? qr_expm1_neg_f(v, e[j]) * alpha : v;
    }
}

/* x <= 0 ? dy alpha exp(x) : dy (PyTorch's: a NaN x passes dy) */
static inline void ax__elu_bwd(const float *x, const float *dy, float *o, int64_t n,
                               float alpha) {
    float e[QR_EXP_TILE];
    for (int64_t j = 0; j < n; j++) e[j] = x[j] < 0.0f ? x[j] : 0.0f;
    ax__exp(e, n);
    for (int64_t j = 0; j < n; j++) o[j] = x[j] <= 0.0f ? dy[j] * alpha * e[j] : dy[j];
}

/* z = beta x; z > threshold ? x : (max(z, 0) + log1p(exp(-|z|))) / beta */
static inline void ax__softplus(const float *x, float *o, int64_t n, float beta, float thr) {
    float e[QR_EXP_TILE];
    for (int64_t j = 0; j < n; j++) {
        const float z = x[j] * beta;
        e[j] = z < 0.0f ? z : -z;                                        /* -|z| */
    }
    ax__exp(e, n);
    for (int64_t j = 0; j < n; j++) {
        const float v = x[j], z = v * beta;
        const float sp = (z > 0.0f ? z : 0.0f) + qr_log1p01_f(e[j]);
        o[j] = z > thr ? v : sp / beta;
    }
}

/* z = beta x; z > threshold ? dy : dy (e / (e + 1)), e = exp(z) */
static inline void ax__softplus_bwd(const float *x, const float *dy, float *o, int64_t n,
                                    float beta, float thr) {
    float e[QR_EXP_TILE];
    for (int64_t j = 0; j < n; j++) e[j] = x[j] * beta;
    ax__exp(e, n);
    for (int64_t j = 0; j < n; j++) {
        const float z = x[j] * beta, ez = e[j];
        o[j] = z > thr ? dy[j] : dy[j] * (ez / (ez + 1.0f));
    }
}

/* tanh(softplus(x)) = n / (n + 2), n = e (e + 2), e = exp(min(x, 20)) (from 20 on the ratio
 * is 1: y = x); y = x n / (n + 2). NaN propagates through the min. */
static inline void ax__mish(const float *x, float *o, int64_t n) {
    float e[QR_EXP_TILE];
    for (int64_t j = 0; j < n; j++) e[j] = x[j] > 20.0f ? 20.0f : x[j];
    ax__exp(e, n);
    for (int64_t j = 0; j < n; j++) {
        const float ee = e[j], nn = ee * (ee + 2.0f);
        o[j] = x[j] * (nn / (nn + 2.0f));
    }
}

/* d mish / dx = t + x sigmoid(x) (1 - t^2), t = n / d, d = n + 2: sigmoid (1 - t^2) =
 * 4 e (e + 1) / d^2 (no cancellation); x clamped at 20 there too (the term is ~0) */
static inline void ax__mish_bwd(const float *x, const float *dy, float *o, int64_t n) {
    float e[QR_EXP_TILE];
    for (int64_t j = 0; j < n; j++) e[j] = x[j] > 20.0f ? 20.0f : x[j];
    ax__exp(e, n);
    for (int64_t j = 0; j < n; j++) {
        const float xc = x[j] > 20.0f ? 20.0f : x[j], ee = e[j];
        const float nn = ee * (ee + 2.0f), d = nn + 2.0f;
        const float q = (ee * 4.0f) * (ee + 1.0f);
        const float g = nn / d + xc * (q / (d * d));
        o[j] = dy[j] * g;
    }
}

void QR_VEC_NAME(act_ext_range)(void *p, int64_t lo, int64_t hi) {
    const ax_ctx *c = p;
    const float *x = c->x, *dy = c->dy;
    float *o = c->o;
    const float s = c->s;
    switch (c->op) {
    case AX_LEAKY_RELU:   /* x > 0 ? x : x slope (NaN: NaN slope) */
        for (int64_t i = lo; i < hi; i++) o[i] = x[i] > 0.0f ? x[i] : x[i] * s;
        return;
    case AX_LEAKY_RELU_BWD:
        for (int64_t i = lo; i < hi; i++) o[i] = x[i] > 0.0f ? dy[i] : dy[i] * s;
        return;
    case AX_HARDSWISH:   /* x min(max(x + 3, 0), 6) / 6, NaN propagating (PyTorch's order) */
        for (int64_t i = lo; i < hi; i++) {
            float r = x[i] + 3.0f;
            r = r < 0.0f ? 0.0f : r;
            r = r > 6.0f ? 6.0f : r;
            o[i] = x[i] * r / 6.0f;
        }
        return;
    case AX_HARDSWISH_BWD:   /* 0 to -3, dy (x / 3 + 1/2) inside, dy from 3 (and for NaN) */
        for (int64_t i = lo; i < hi; i++) {
            const float v = x[i];
            const float g = v < 3.0f ? dy[i] * (v / 3.0f + 0.5f) : dy[i];
            o[i] = v <= -3.0f ? 0.0f : g;
        }
        return;
    default: break;
    }
    for (int64_t i = lo; i < hi; i += QR_EXP_TILE) {
        const int64_t n = hi - i < QR_EXP_TILE ? hi - i : QR_EXP_TILE;
        switch (c->op) {
        case AX_ELU: ax__elu(x + i, o + i, n, s); break;
        case AX_ELU_BWD: ax__elu_bwd(x + i, dy + i, o + i, n, s); break;
        case AX_SOFTPLUS: ax__softplus(x + i, o + i, n, s, c->t); break;
        case AX_SOFTPLUS_BWD: ax__softplus_bwd(x + i, dy + i, o + i, n, s, c->t); break;
        case AX_MISH: ax__mish(x + i, o + i, n); break;
        case AX_MISH_BWD: ax__mish_bwd(x + i, dy + i, o + i, n); break;
        default: return;
        }
    }
}

/* the segment of row r of y-index range [i, hi): y[r, j0 .. j0 + len) */
typedef struct { int64_t r, j0, len; } glu__seg;

static inline glu__seg glu__next(int64_t i, int64_t hi, int64_t m) {
    const int64_t r = i / m, j0 = i - r * m;
    return (glu__seg){r, j0, hi - i < m - j0 ? hi - i : m - j0};
}

/* y[i] = a * (1 / (exp(-b) + 1)) over y indices [lo, hi) */
void QR_VEC_NAME(glu_range)(void *p, int64_t lo, int64_t hi) {
    const glu_ctx *c = p;
    const int64_t m = c->m;
    for (int64_t i = lo; i < hi;) {
        const glu__seg g = glu__next(i, hi, m);
        const float *a = c->x + 2 * m * g.r + g.j0, *b = a + m;
        float *y = c->y + i;
        for (int64_t k = 0; k < g.len; k += QR_EXP_TILE) {
            const int64_t n = g.len - k < QR_EXP_TILE ? g.len - k : QR_EXP_TILE;
            float e[QR_EXP_TILE];
            qr_exp_neg(b + k, e, n);
            for (int64_t j = 0; j < n; j++) y[k + j] = a[k + j] * (1.0f / (e[j] + 1.0f));
        }
        i += g.len;
    }
}

/* da = s dy, db = (1 - s) s a dy (PyTorch's order), s = 1 / (exp(-b) + 1), over dy indices
 * [lo, hi) */
void QR_VEC_NAME(glu_bwd_range)(void *p, int64_t lo, int64_t hi) {
    const glu_ctx *c = p;
    const int64_t m = c->m;
    for (int64_t i = lo; i < hi;) {
        const glu__seg g = glu__next(i, hi, m);
        const float *a = c->x + 2 * m * g.r + g.j0, *b = a + m, *dy = c->dy + i;
        float *da = c->dx + 2 * m * g.r + g.j0, *db = da + m;
        for (int64_t k = 0; k < g.len; k += QR_EXP_TILE) {
            const int64_t n = g.len - k < QR_EXP_TILE ? g.len - k : QR_EXP_TILE;
            float e[QR_EXP_TILE];
            qr_exp_neg(b + k, e, n);
            for (int64_t j = 0; j < n; j++) {
                const float sg = 1.0f / (e[j] + 1.0f), g = dy[k + j], av = a[k + j];
                da[k + j] = sg * g;
                db[k + j] = (1.0f - sg) * sg * av * g;
            }
        }
        i += g.len;
    }
}
