/* act.c - elementwise kernels: activations and their backward, bias_add, col_sum, fill, copy,
 * add, mul, scale, axpy, sumsq. Every formula follows numpy.py's float32 operation order;
 * loops are plain so the compiler vectorizes them, and large arrays are split over threads
 * (elementwise results never depend on the split). */
#include <string.h>

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

static void ew_range(void *p, int64_t lo, int64_t hi) {
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
    case OP_GELU:
        for (int64_t i = lo; i < hi; i++) {
            float x = a[i], t = qr_erff(x * QR_INV_SQRT2);
            t = (t + 1.0f) * 0.5f;
            o[i] = x * t;
        }
        break;
    case OP_GELU_TANH:
        for (int64_t i = lo; i < hi; i++) {
            float x = a[i], t = x * x;
            t = t * 0.044715f + 1.0f;
            t = qr_tanhf(t * x * QR_SQRT_2_OVER_PI);
            t = (t + 1.0f) * 0.5f;
            o[i] = x * t;
        }
        break;
    case OP_GELU_BWD:   /* Phi(x) + x phi(x) */
        for (int64_t i = lo; i < hi; i++) {
            float x = a[i], cdf = qr_erff(x * QR_INV_SQRT2);
            cdf = (cdf + 1.0f) * 0.5f;
            float pdf = qr_expf((x * x) * -0.5f) * QR_INV_SQRT_2PI;
            cdf = cdf + pdf * x;
            o[i] = b[i] * cdf;
        }
        break;
    case OP_GELU_TANH_BWD:
        for (int64_t i = lo; i < hi; i++) {
            float x = a[i], u = x * x;
            float q = u * 0.044715f;                                /* 0.044715 x^2 */
            float th = qr_tanhf((q + 1.0f) * x * QR_SQRT_2_OVER_PI);
            float dinner = (q * 3.0f + 1.0f) * QR_SQRT_2_OVER_PI;
            float w = (1.0f - th * th) * dinner * x;
            float g = ((th + 1.0f) + w) * 0.5f;
            o[i] = b[i] * g;
        }
        break;
    case OP_SIGMOID:
        for (int64_t i = lo; i < hi; i++) o[i] = 1.0f / (qr_expf(-a[i]) + 1.0f);
        break;
    case OP_SIGMOID_BWD:
        for (int64_t i = lo; i < hi; i++) { float y = a[i]; o[i] = b[i] * ((1.0f - y) * y); }
        break;
    case OP_SILU:
        for (int64_t i = lo; i < hi; i++) o[i] = a[i] / (qr_expf(-a[i]) + 1.0f);
        break;
    case OP_SILU_BWD:
        for (int64_t i = lo; i < hi; i++) {
            float x = a[i], sg = 1.0f / (qr_expf(-x) + 1.0f);
            float t = (1.0f - sg) * x + 1.0f;
            o[i] = b[i] * (t * sg);
        }
        break;
    case OP_TANH: for (int64_t i = lo; i < hi; i++) o[i] = qr_tanhf(a[i]); break;
    case OP_TANH_BWD:
        for (int64_t i = lo; i < hi; i++) { float y = a[i]; o[i] = b[i] * (1.0f - y * y); }
        break;
    default: break;
    }
}

static int ew(int op, const float *a, const float *b, float *o, float s, int64_t n) {
    if (n < 0) return QR_EARG;
    if (n == 0) return QR_OK;
    if (!o) return QR_EARG;
    ew_ctx c = {op, a, b, o, s};
    qr_par_range(ew_range, &c, n, QR_PAR_GRAIN);
    return QR_OK;
}

int qr_fill_f32(float *x, int64_t n, float value) { return ew(OP_FILL, 0, 0, x, value, n); }
int qr_copy_f32(const float *src, float *dst, int64_t n) {
    if (n > 0 && !src) return QR_EARG;
    return ew(OP_COPY, src, 0, dst, 0.0f, n);
}
int qr_add_f32(const float *a, const float *b, float *out, int64_t n) {
    return ew(OP_ADD, a, b, out, 0.0f, n);
}
int qr_mul_f32(const float *a, const float *b, float *out, int64_t n) {
    return ew(OP_MUL, a, b, out, 0.0f, n);
}
int qr_scale_f32(float *x, int64_t n, float alpha) { return ew(OP_SCALE, 0, 0, x, alpha, n); }
int qr_axpy_f32(float alpha, const float *x, float *y, int64_t n) {
    return ew(OP_AXPY, x, 0, y, alpha, n);
}
int qr_relu_f32(const float *x, float *y, int64_t n) { return ew(OP_RELU, x, 0, y, 0, n); }
int qr_relu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n) {
    return ew(OP_RELU_BWD, x, dy, dx, 0, n);
}
int qr_gelu_f32(const float *x, float *y, int64_t n, int approximate) {
    return ew(approximate ? OP_GELU_TANH : OP_GELU, x, 0, y, 0, n);
}
int qr_gelu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n, int approximate) {
    return ew(approximate ? OP_GELU_TANH_BWD : OP_GELU_BWD, x, dy, dx, 0, n);
}
int qr_sigmoid_f32(const float *x, float *y, int64_t n) { return ew(OP_SIGMOID, x, 0, y, 0, n); }
int qr_sigmoid_bwd_f32(const float *y, const float *dy, float *dx, int64_t n) {
    return ew(OP_SIGMOID_BWD, y, dy, dx, 0, n);
}
int qr_silu_f32(const float *x, float *y, int64_t n) { return ew(OP_SILU, x, 0, y, 0, n); }
int qr_silu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n) {
    return ew(OP_SILU_BWD, x, dy, dx, 0, n);
}
int qr_tanh_f32(const float *x, float *y, int64_t n) { return ew(OP_TANH, x, 0, y, 0, n); }
int qr_tanh_bwd_f32(const float *y, const float *dy, float *dx, int64_t n) {
    return ew(OP_TANH_BWD, y, dy, dx, 0, n);
}

/* ------------------------------------------------------------------ bias_add y[R,N] += b[N] */
typedef struct { float *y; const float *b; float *out; int64_t rows, n; float beta; } rc_ctx;

static void bias_rows(void *p, int64_t lo, int64_t hi) {   /* lo, hi: rows */
    const rc_ctx *c = p;
    for (int64_t r = lo; r < hi; r++) {
        float *y = c->y + r * c->n;
        for (int64_t j = 0; j < c->n; j++) y[j] = y[j] + c->b[j];
    }
}

int qr_bias_add_f32(float *y, const float *bias, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0 || (rows * n > 0 && (!y || !bias))) return QR_EARG;
    rc_ctx c = {y, bias, 0, rows, n, 0.0f};
    if (rows * n > 0) qr_par_items(bias_rows, &c, rows, rows * n);
    return QR_OK;
}

/* ------------------------------------------------------------------ col_sum out[N] = sum_r x */
#define COL_CHUNK 256
static void col_sum_chunks(void *p, int64_t lo, int64_t hi) {   /* lo, hi: column chunks */
    const rc_ctx *c = p;
    float acc[COL_CHUNK];
    for (int64_t ch = lo; ch < hi; ch++) {
        int64_t j0 = ch * COL_CHUNK, w = c->n - j0 < COL_CHUNK ? c->n - j0 : COL_CHUNK;
        memcpy(acc, c->y + j0, (size_t)w * sizeof(float));
        for (int64_t r = 1; r < c->rows; r++) {       /* rows in order, like numpy */
            const float *x = c->y + r * c->n + j0;
            for (int64_t j = 0; j < w; j++) acc[j] += x[j];
        }
        float *o = c->out + j0;
        if (c->beta == 0.0f) memcpy(o, acc, (size_t)w * sizeof(float));
        else if (c->beta == 1.0f) for (int64_t j = 0; j < w; j++) o[j] = o[j] + acc[j];
        else for (int64_t j = 0; j < w; j++) { float t = o[j] * c->beta; o[j] = t + acc[j]; }
    }
}

int qr_col_sum_f32(const float *x, float *out, int64_t rows, int64_t n, float beta) {
    if (rows < 0 || n < 0 || (n > 0 && !out) || (rows * n > 0 && !x)) return QR_EARG;
    if (n == 0) return QR_OK;
    if (rows == 0) return qr_scale_f32(out, n, beta);   /* beta * out + 0 */
    rc_ctx c = {(float *)x, 0, out, rows, n, beta};
    qr_par_items(col_sum_chunks, &c, (n + COL_CHUNK - 1) / COL_CHUNK, rows * n);
    return QR_OK;
}

/* ------------------------------------------------------------------ sumsq */
/* Blocks of 4096 elements summed in float lanes, block sums added in double in order: the
 * result depends only on n, not on the thread count. */
#define SQ_BLOCK 4096
typedef struct { const float *x; int64_t n; double *part; } sq_ctx;

static void sumsq_blocks(void *p, int64_t lo, int64_t hi) {   /* lo, hi: block indices */
    sq_ctx *c = p;
    for (int64_t b = lo; b < hi; b++) {
        int64_t i0 = b * SQ_BLOCK, m = c->n - i0 < SQ_BLOCK ? c->n - i0 : SQ_BLOCK;
        c->part[b] = (double)qr_dot_f(c->x + i0, c->x + i0, m);
    }
}

double qr_sumsq_f32(const float *x, int64_t n) {
    if (n <= 0) return 0.0;
    if (!x) return -1.0;
    int64_t nb = (n + SQ_BLOCK - 1) / SQ_BLOCK;
    double local[64];
    double *part = nb <= 64 ? local : qr_scratch(2, (size_t)nb * sizeof(double));
    if (!part) return -1.0;
    sq_ctx c = {x, n, part};
    qr_par_items(sumsq_blocks, &c, nb, n);
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    return s;
}
