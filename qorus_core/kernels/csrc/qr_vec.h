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

/* GELU and its derivative, exact (erf) and tanh forms, in decl/act.py's float32 operation order;
 * the lane twins below do the same operations in the same order (bit-identical lanes). */
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

/* The vector twins of qr_erff, qr_tanhf and the four functions above (qr_erf8, qr_gelu8, ...,
 * qr_gelu_tanh_grad16): written once in qr_lanes.h, built here for each width the file's
 * flags allow. QR_L_SEL(m, a, b) is m ? b : a, QR_L_NEG_IF(m, v) is m ? -v : v; a mask QR_L_M
 * is a vector of all-ones / zero lanes (AVX2) or a k register (AVX-512). */
#ifdef __AVX2__
#define QR_L(name) name##8
#define QR_L_FN static inline
#define QR_L_V __m256
#define QR_L_M __m256
#define QR_L_SET _mm256_set1_ps
#define QR_L_MUL _mm256_mul_ps
#define QR_L_ADD _mm256_add_ps
#define QR_L_SUB _mm256_sub_ps
#define QR_L_DIV _mm256_div_ps
#define QR_L_MIN _mm256_min_ps
#define QR_L_ABS(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x)
#define QR_L_LT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define QR_L_GE(a, b) _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define QR_L_SEL(m, a, b) _mm256_blendv_ps(a, b, m)
#define QR_L_NEG_IF(m, v) _mm256_xor_ps(v, _mm256_and_ps(_mm256_set1_ps(-0.0f), m))
#define QR_L_EXP qr_exp8
#define QR_L_EXP_IN_RANGE qr_exp8
#include "qr_lanes.h"
#endif

#ifdef __AVX512F__
#define QR_L(name) name##16
#define QR_L_FN QR_AI16
#define QR_L_V __m512
#define QR_L_M __mmask16
#define QR_L_SET _mm512_set1_ps
#define QR_L_MUL _mm512_mul_ps
#define QR_L_ADD _mm512_add_ps
#define QR_L_SUB _mm512_sub_ps
#define QR_L_DIV _mm512_div_ps
#define QR_L_MIN _mm512_min_ps
#define QR_L_ABS(x) _mm512_andnot_ps(_mm512_set1_ps(-0.0f), x)
#define QR_L_LT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define QR_L_GE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define QR_L_SEL(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define QR_L_NEG_IF(m, v) _mm512_mask_xor_ps(v, m, v, _mm512_set1_ps(-0.0f))
#define QR_L_EXP qr_exp16
#define QR_L_EXP_IN_RANGE qr__exp16_core   /* no clamps: see qr_lanes.h, qr_erf */
#include "qr_lanes.h"
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
