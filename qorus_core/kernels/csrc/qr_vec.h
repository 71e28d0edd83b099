/* qr_vec.h - private: the elementwise, row (softmax, LayerNorm, RMSNorm, cross-entropy) and
 * optimizer kernels compiled three times from vec_impl.h: portable (act.c), AVX2 (act_avx2.c,
 * -mavx2 -mfma) and AVX-512 (act_avx512.c), FP contraction off in all three, so they give
 * bit-identical results. qr_simd_pick3() chooses at run time. */
#ifndef QORUS_VEC_H
#define QORUS_VEC_H

#include "qr_math.h"
#include "qorus.h"

#define QR_SQRT_2_OVER_PI 0.7978845608028654f
#define QR_2_SQRT_2_OVER_PI 1.5957691216057308f
#define QR_NEG_2_SQRT_2_OVER_PI (-QR_2_SQRT_2_OVER_PI)
#define QR_INV_SQRT2 0.7071067811865476f
#define QR_INV_SQRT_2PI 0.3989422804014327f

/* GELU and its derivative, exact (erf) and tanh forms, in numpy.py's float32 operation order;
 * the 8-lane twins below do the same operations in the same order (bit-identical lanes). */
static inline float qr_gelu_f(float x) {
    float t = qr_erff(x * QR_INV_SQRT2);
    t = (t + 1.0f) * 0.5f;
    return x * t;
}

static inline float qr_gelu_grad_f(float x) {   /* Phi(x) + x phi(x) */
    float cdf = qr_erff(x * QR_INV_SQRT2);
    cdf = (cdf + 1.0f) * 0.5f;
    float pdf = qr_expf((x * x) * -0.5f) * QR_INV_SQRT_2PI;
    return cdf + pdf * x;
}

/* tanh form as x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): 0.5 (1 + tanh u) =
 * 1 / (1 + exp(-2u)), one exp and a division (no tanh polynomial, no branch blends), and no
 * cancellation for x < 0. exp(-2u) = inf (x -> -inf) gives s = 0: -inf * 0 = NaN, as torch. */
static inline float qr_gelu_tanh_f(float x) {
    float t = x * x;
    t = t * 0.044715f + 1.0f;
    float e = qr_expf(t * x * QR_NEG_2_SQRT_2_OVER_PI);          /* exp(-2u) */
    float s = 1.0f / (e + 1.0f);
    return x * s;
}

/* d/dx x s(2u) = s + x s (1 - s) 2u' */
static inline float qr_gelu_tanh_grad_f(float x) {
    float q = (x * x) * 0.044715f;                              /* 0.044715 x^2 */
    float e = qr_expf((q + 1.0f) * x * QR_NEG_2_SQRT_2_OVER_PI);
    float s = 1.0f / (e + 1.0f);
    float du = (q * 3.0f + 1.0f) * QR_2_SQRT_2_OVER_PI;         /* d(2u)/dx */
    return s + s * (1.0f - s) * du * x;
}

#ifdef __AVX2__
#define QR_MUL8 _mm256_mul_ps
#define QR_ADD8 _mm256_add_ps
static inline __m256 qr_gelu8(__m256 x) {
    __m256 t = qr_erf8(QR_MUL8(x, QR_SET8(QR_INV_SQRT2)));
    t = QR_MUL8(QR_ADD8(t, QR_SET8(1.0f)), QR_SET8(0.5f));
    return QR_MUL8(x, t);
}

static inline __m256 qr_gelu_grad8(__m256 x) {
    __m256 cdf = qr_erf8(QR_MUL8(x, QR_SET8(QR_INV_SQRT2)));
    cdf = QR_MUL8(QR_ADD8(cdf, QR_SET8(1.0f)), QR_SET8(0.5f));
    __m256 pdf = QR_MUL8(qr_exp8(QR_MUL8(QR_MUL8(x, x), QR_SET8(-0.5f))), QR_SET8(QR_INV_SQRT_2PI));
    return QR_ADD8(cdf, QR_MUL8(pdf, x));
}

static inline __m256 qr_gelu_tanh8(__m256 x) {
    __m256 t = QR_MUL8(x, x);
    t = QR_ADD8(QR_MUL8(t, QR_SET8(0.044715f)), QR_SET8(1.0f));
    __m256 e = qr_exp8(QR_MUL8(QR_MUL8(t, x), QR_SET8(QR_NEG_2_SQRT_2_OVER_PI)));
    __m256 s = _mm256_div_ps(QR_SET8(1.0f), QR_ADD8(e, QR_SET8(1.0f)));
    return QR_MUL8(x, s);
}

static inline __m256 qr_gelu_tanh_grad8(__m256 x) {
    const __m256 one = QR_SET8(1.0f);
    __m256 q = QR_MUL8(QR_MUL8(x, x), QR_SET8(0.044715f));
    __m256 e = qr_exp8(QR_MUL8(QR_MUL8(QR_ADD8(q, one), x), QR_SET8(QR_NEG_2_SQRT_2_OVER_PI)));
    __m256 s = _mm256_div_ps(one, QR_ADD8(e, one));
    __m256 du = QR_MUL8(QR_ADD8(QR_MUL8(q, QR_SET8(3.0f)), one), QR_SET8(QR_2_SQRT_2_OVER_PI));
    return QR_ADD8(s, QR_MUL8(QR_MUL8(QR_MUL8(s, _mm256_sub_ps(one, s)), du), x));
}
#endif

#ifdef __AVX512F__   /* the same operations on 16 lanes (bit-identical lanes) */
#define QR_MUL16 _mm512_mul_ps
#define QR_ADD16 _mm512_add_ps
QR_AI16 __m512 qr_gelu16(__m512 x) {
    __m512 t = qr_erf16(QR_MUL16(x, QR_SET16(QR_INV_SQRT2)));
    t = QR_MUL16(QR_ADD16(t, QR_SET16(1.0f)), QR_SET16(0.5f));
    return QR_MUL16(x, t);
}

QR_AI16 __m512 qr_gelu_grad16(__m512 x) {
    __m512 cdf = qr_erf16(QR_MUL16(x, QR_SET16(QR_INV_SQRT2)));
    cdf = QR_MUL16(QR_ADD16(cdf, QR_SET16(1.0f)), QR_SET16(0.5f));
    __m512 pdf = QR_MUL16(qr_exp16(QR_MUL16(QR_MUL16(x, x), QR_SET16(-0.5f))),
                          QR_SET16(QR_INV_SQRT_2PI));
    return QR_ADD16(cdf, QR_MUL16(pdf, x));
}

QR_AI16 __m512 qr_gelu_tanh16(__m512 x) {
    __m512 t = QR_MUL16(x, x);
    t = QR_ADD16(QR_MUL16(t, QR_SET16(0.044715f)), QR_SET16(1.0f));
    __m512 e = qr_exp16(QR_MUL16(QR_MUL16(t, x), QR_SET16(QR_NEG_2_SQRT_2_OVER_PI)));
    __m512 s = _mm512_div_ps(QR_SET16(1.0f), QR_ADD16(e, QR_SET16(1.0f)));
    return QR_MUL16(x, s);
}

QR_AI16 __m512 qr_gelu_tanh_grad16(__m512 x) {
    const __m512 one = QR_SET16(1.0f);
    __m512 q = QR_MUL16(QR_MUL16(x, x), QR_SET16(0.044715f));
    __m512 e = qr_exp16(QR_MUL16(QR_MUL16(QR_ADD16(q, one), x),
                                 QR_SET16(QR_NEG_2_SQRT_2_OVER_PI)));
    __m512 s = _mm512_div_ps(one, QR_ADD16(e, one));
    __m512 du = QR_MUL16(QR_ADD16(QR_MUL16(q, QR_SET16(3.0f)), one), QR_SET16(QR_2_SQRT_2_OVER_PI));
    return QR_ADD16(s, QR_MUL16(QR_MUL16(QR_MUL16(s, _mm512_sub_ps(one, s)), du), x));
}
#endif

enum {
    OP_FILL, OP_COPY, OP_ADD, OP_MUL, OP_SCALE, OP_AXPY, OP_RELU, OP_RELU_BWD, OP_GELU,
    OP_GELU_TANH, OP_GELU_BWD, OP_GELU_TANH_BWD, OP_SIGMOID, OP_SIGMOID_BWD, OP_SILU,
    OP_SILU_BWD, OP_TANH, OP_TANH_BWD
};

typedef struct {
    int op;
    const float *a, *b;   /* inputs (x or y, dy) */
    float *o;             /* output */
    float s;              /* scalar */
} ew_ctx;

/* softmax rows: x[R,N] -> y (forward); y, dy -> dx (backward, x holds y) */
typedef struct { const float *x, *dy; float *y, *dx; int64_t n; } sm_ctx;

/* LayerNorm / RMSNorm rows (norm.c) and their parameter-gradient column chunks */
typedef struct {
    const float *x, *g, *b, *dy, *mean, *rstd;
    float *y, *dx, *m, *r, *dg, *db;
    int64_t rows, n;
    float eps;
} rw_ctx;
#define QR_LN_CHUNK 256   /* columns per task of the parameter gradients */

typedef struct {
    const float *x;
    const int32_t *t;
    float *d;           /* dlogits or NULL */
    double *row;        /* per-row loss terms: [3 * r] = lse, picked, sum of shifted */
    int64_t C;
    float inv_n, eps_c, one_m_eps;
    int smooth;
} ce_ctx;

typedef struct {
    float *p, *buf;
    const float *g;
    float lr, mom, one_m_damp, wd;
    int nesterov, first, use_wd, use_mom;
} sgd_ctx;

typedef struct {
    float *p, *m, *v;
    const float *g;
    float decay, wd, one_m_b1, b2, one_m_b2, sqrt_bc2, eps, step_size;
    int decoupled, use_wd;
} adam_ctx;

#define QR_VEC_DECL(sfx)                                                   \
    void qr__ew_range_##sfx(void *ctx, int64_t lo, int64_t hi);            \
    void qr__softmax_rows_##sfx(void *ctx, int64_t lo, int64_t hi);        \
    void qr__softmax_bwd_rows_##sfx(void *ctx, int64_t lo, int64_t hi);    \
    void qr__layernorm_rows_##sfx(void *ctx, int64_t lo, int64_t hi);      \
    void qr__layernorm_bwd_rows_##sfx(void *ctx, int64_t lo, int64_t hi);  \
    void qr__layernorm_param_chunks_##sfx(void *ctx, int64_t lo, int64_t hi); \
    void qr__rmsnorm_rows_##sfx(void *ctx, int64_t lo, int64_t hi);        \
    void qr__rmsnorm_bwd_rows_##sfx(void *ctx, int64_t lo, int64_t hi);    \
    void qr__rmsnorm_param_chunks_##sfx(void *ctx, int64_t lo, int64_t hi); \
    void qr__ce_rows_##sfx(void *ctx, int64_t lo, int64_t hi);             \
    void qr__sgd_range_##sfx(void *ctx, int64_t lo, int64_t hi);           \
    void qr__adam_range_##sfx(void *ctx, int64_t lo, int64_t hi);
QR_VEC_DECL(portable)
QR_VEC_DECL(avx2)
QR_VEC_DECL(avx512)

#endif
