/* qr_vec.h - private: the elementwise, row and optimizer kernels compiled twice from
 * vec_impl.h: portable (act.c) and AVX2 (act_avx2.c, -mavx2 -mfma, no FP contraction, so
 * both give bit-identical results). qr_simd_pick() chooses at run time. */
#ifndef QORUS_VEC_H
#define QORUS_VEC_H

#include "qr_math.h"
#include "qorus.h"

#define QR_SQRT_2_OVER_PI 0.7978845608028654f
#define QR_INV_SQRT2 0.7071067811865476f
#define QR_INV_SQRT_2PI 0.3989422804014327f

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
    void qr__ce_rows_##sfx(void *ctx, int64_t lo, int64_t hi);             \
    void qr__sgd_range_##sfx(void *ctx, int64_t lo, int64_t hi);           \
    void qr__adam_range_##sfx(void *ctx, int64_t lo, int64_t hi);
QR_VEC_DECL(portable)
QR_VEC_DECL(avx2)

#endif
