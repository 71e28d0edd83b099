/* vec_impl.h - private: bodies of the kernels declared in qr_vec.h. Included once by act.c
 * (QR_VEC_SFX portable) and once by act_avx2.c (QR_VEC_SFX avx2). No include guard. */
#include <math.h>
#include <string.h>

#include "qr_vec.h"

#define QR_VEC_NAME(name) QR_SFX_NAME(name, QR_VEC_SFX)

/* o[i] = scalar for i in [lo, hi); AVX2 builds run vec (x8 = a[i..i+8)) on 8 lanes first: GCC
 * does not vectorize the exp/erf formulas, the 8-lane twins give the same bits. */
#ifdef __AVX2__
#define QR_GELU_LOOP(vec, scalar)                                          \
    do {                                                                   \
        int64_t i = lo;                                                    \
        for (; i + 8 <= hi; i += 8) {                                      \
            const __m256 x8 = _mm256_loadu_ps(a + i);                      \
            _mm256_storeu_ps(o + i, vec);                                  \
        }                                                                  \
        for (; i < hi; i++) o[i] = scalar;                                 \
    } while (0)
#else
#define QR_GELU_LOOP(vec, scalar) \
    do { for (int64_t i = lo; i < hi; i++) o[i] = scalar; } while (0)
#endif

void QR_VEC_NAME(ew_range)(void *p, int64_t lo, int64_t hi) {
    const ew_ctx *c = p;
    const float *a = c->a, *b = c->b;
    float *o = c->o;
    const float s = c->s;
    switch (c->op) {
    case OP_FILL: for (int64_t i = lo; i < hi; i++) o[i] = s; break;
    case OP_COPY: memcpy(o + lo, a + lo, (size_t)(hi - lo) * sizeof(float)); break;
    case OP_ADD: for (int64_t i = lo; i < hi; i++) o[i] = a[i] + b[i]; break;
    case OP_MUL: for (int64_t i = lo; i < hi; i++) o[i] = a[i] * b[i]; break;
    case OP_SCALE: for (int64_t i = lo; i < hi; i++) o[i] = o[i] * s; break;
    case OP_AXPY: for (int64_t i = lo; i < hi; i++) { float t = a[i] * s; o[i] = o[i] + t; } break;
    case OP_RELU: for (int64_t i = lo; i < hi; i++) o[i] = a[i] < 0.0f ? 0.0f : a[i]; break;
    case OP_RELU_BWD:   /* dx = dy * (x > 0): NaN x gives 0 * dy */
        for (int64_t i = lo; i < hi; i++) o[i] = b[i] * (a[i] > 0.0f ? 1.0f : 0.0f);
        break;
    case OP_GELU: QR_GELU_LOOP(qr_gelu8(x8), qr_gelu_f(a[i])); break;
    case OP_GELU_TANH: QR_GELU_LOOP(qr_gelu_tanh8(x8), qr_gelu_tanh_f(a[i])); break;
    case OP_GELU_BWD:   /* dx = dy * (Phi(x) + x phi(x)) */
        QR_GELU_LOOP(_mm256_mul_ps(_mm256_loadu_ps(b + i), qr_gelu_grad8(x8)),
                     b[i] * qr_gelu_grad_f(a[i]));
        break;
    case OP_GELU_TANH_BWD:
        QR_GELU_LOOP(_mm256_mul_ps(_mm256_loadu_ps(b + i), qr_gelu_tanh_grad8(x8)),
                     b[i] * qr_gelu_tanh_grad_f(a[i]));
        break;
    case OP_SIGMOID:
        for (int64_t i0 = lo; i0 < hi; i0 += QR_EXP_TILE) {
            const int64_t n = hi - i0 < QR_EXP_TILE ? hi - i0 : QR_EXP_TILE;
            float e[QR_EXP_TILE];
            qr_exp_neg(a + i0, e, n);
            for (int64_t j = 0; j < n; j++) o[i0 + j] = 1.0f / (e[j] + 1.0f);
        }
        break;
    case OP_SIGMOID_BWD:
        for (int64_t i = lo; i < hi; i++) { float y = a[i]; o[i] = b[i] * ((1.0f - y) * y); }
        break;
    case OP_SILU:
        for (int64_t i0 = lo; i0 < hi; i0 += QR_EXP_TILE) {
            const int64_t n = hi - i0 < QR_EXP_TILE ? hi - i0 : QR_EXP_TILE;
            float e[QR_EXP_TILE];
            qr_exp_neg(a + i0, e, n);
            for (int64_t j = 0; j < n; j++) o[i0 + j] = a[i0 + j] / (e[j] + 1.0f);
        }
        break;
    case OP_SILU_BWD:
        for (int64_t i0 = lo; i0 < hi; i0 += QR_EXP_TILE) {
            const int64_t n = hi - i0 < QR_EXP_TILE ? hi - i0 : QR_EXP_TILE;
            float e[QR_EXP_TILE];
            qr_exp_neg(a + i0, e, n);
            for (int64_t j = 0; j < n; j++) {
                float x = a[i0 + j], sg = 1.0f / (e[j] + 1.0f);
                float t = (1.0f - sg) * x + 1.0f;
                o[i0 + j] = b[i0 + j] * (t * sg);
            }
        }
        break;
    case OP_TANH: for (int64_t i = lo; i < hi; i++) o[i] = qr_tanhf(a[i]); break;
    case OP_TANH_BWD:
        for (int64_t i = lo; i < hi; i++) { float y = a[i]; o[i] = b[i] * (1.0f - y * y); }
        break;
    default: break;
    }
}

/* ------------------------------------------------------------------ softmax rows */
void QR_VEC_NAME(softmax_rows)(void *p, int64_t lo, int64_t hi) {
    const sm_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n;
        float *y = c->y + r * n;
        float mx = qr_max_f(x, n);
        qr_exp_shift(x, mx, y, n);
        float s = qr_sum_f(y, n);
        for (int64_t j = 0; j < n; j++) y[j] = y[j] / s;
    }
}

/* dx = y * (dy - sum(dy * y)) per row. dx may alias dy. */
void QR_VEC_NAME(softmax_bwd_rows)(void *p, int64_t lo, int64_t hi) {
    const sm_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *y = c->x + r * n, *dy = c->dy + r * n;
        float *dx = c->dx + r * n;
        float s = qr_dot_f(dy, y, n);
        for (int64_t j = 0; j < n; j++) dx[j] = (dy[j] - s) * y[j];
    }
}

/* ------------------------------------------------------------------ cross-entropy rows */
void QR_VEC_NAME(ce_rows)(void *p, int64_t lo, int64_t hi) {
    const ce_ctx *c = p;
    const int64_t C = c->C;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * C;
        const float mx = qr_max_f(x, C);
        const int32_t t = c->t[r];
        double *o = c->row + 3 * r;
        o[1] = (double)(x[t] - mx);                 /* shifted logit of the target */
        o[2] = 0.0;
        if (c->smooth) {                            /* sum of shifted logits */
            float acc[16] = {0};
            int64_t j = 0;
            for (; j + 16 <= C; j += 16)
                for (int k = 0; k < 16; k++) acc[k] += x[j + k] - mx;
            for (int k = 0; j < C; j++, k++) acc[k] += x[j] - mx;
            double sh = 0.0;
            for (int k = 0; k < 16; k++) sh += acc[k];
            o[2] = sh;
        }
        float *e = c->d ? c->d + r * C : 0;         /* may alias x: x is not read after this */
        float s;
        if (e) {
            qr_exp_shift(x, mx, e, C);
            s = qr_sum_f(e, C);
        } else {
            float acc[16] = {0};
            int64_t j = 0;
            for (; j + 16 <= C; j += 16)
                for (int k = 0; k < 16; k++) acc[k] += qr_expf(x[j + k] - mx);
            for (int k = 0; j < C; j++, k++) acc[k] += qr_expf(x[j] - mx);
            s = 0.0f;
            for (int k = 0; k < 16; k++) s += acc[k];
        }
        o[0] = (double)logf(s);                     /* log-sum-exp of the shifted logits */
        if (e) {   /* (softmax - eps/C - (1-eps) onehot) / N, in numpy.py's order */
            for (int64_t j = 0; j < C; j++) e[j] = e[j] / s;
            if (c->smooth)
                for (int64_t j = 0; j < C; j++) e[j] = e[j] - c->eps_c;
            e[t] = e[t] - c->one_m_eps;
            for (int64_t j = 0; j < C; j++) e[j] = e[j] * c->inv_n;
        }
    }
}

/* ------------------------------------------------------------------ optimizer steps */
void QR_VEC_NAME(sgd_range)(void *ctx, int64_t lo, int64_t hi) {
    const sgd_ctx *c = ctx;
    float *p = c->p, *buf = c->buf;
    const float *g = c->g;
    for (int64_t i = lo; i < hi; i++) {
        float d = g[i];
        if (c->use_wd) d = d + p[i] * c->wd;
        if (c->use_mom) {
            float b;
            if (c->first) b = d;
            else { float t = d * c->one_m_damp; b = buf[i] * c->mom; b = b + t; }
            buf[i] = b;
            if (c->nesterov) d = d + b * c->mom;
            else d = b;
        }
        p[i] = p[i] - d * c->lr;
    }
}

void QR_VEC_NAME(adam_range)(void *ctx, int64_t lo, int64_t hi) {
    const adam_ctx *c = ctx;
    float *p = c->p, *m = c->m, *v = c->v;
    const float *g = c->g;
    for (int64_t i = lo; i < hi; i++) {
        float pi = p[i], gg = g[i];
        if (c->decoupled) {
            if (c->use_wd) pi = pi * c->decay;            /* p *= 1 - lr * wd */
        } else if (c->use_wd) {
            gg = gg + pi * c->wd;                         /* g + wd * p */
        }
        float mi = m[i], vi = v[i], t;
        t = (gg - mi) * c->one_m_b1;                      /* m.lerp_(g, 1 - b1) */
        mi = mi + t;
        vi = vi * c->b2;                                  /* v = b2 v + (1 - b2) g^2 */
        t = gg * gg * c->one_m_b2;
        vi = vi + t;
        t = __builtin_sqrtf(vi) / c->sqrt_bc2 + c->eps;   /* denom */
        t = mi / t * c->step_size;
        p[i] = pi - t;
        m[i] = mi;
        v[i] = vi;
    }
}
