/* act.c - elementwise kernels: activations and their backward, bias_add, col_sum, fill, copy,
 * add, mul, scale, axpy, sumsq, embedding. Every formula follows its NumPy twin's float32
 * operation order (decl/act.py, decl/elementwise.py), but for the exact GELU of the AVX2 /
 * AVX-512 builds (an FMA erf, within decl/act.py's bound); loops are plain so the compiler
 * vectorizes them, and large arrays are split over threads (elementwise results never depend
 * on the split). The elementwise bodies live in
 * vec_impl.h, built here (portable), in act_avx2.c (AVX2) and act_avx512.c, picked at run time. */
#include <string.h>

#include "qr_vec.h"

#define QR_VEC_SFX portable
#include "vec_impl.h"

static int ew(int op, const float *a, const float *b, float *o, float s, int64_t n) {
    if (n < 0) return QR_EARG;
    if (n == 0) return QR_OK;
    if (!o) return QR_EARG;
    ew_ctx c = {op, a, b, o, s};
    qr_par_range(qr_simd_pick3(ew_range), &c, n, QR_PAR_GRAIN);
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
/* the broadcast add of fused.c, in place */
int qr_bias_add_f32(float *y, const float *bias, int64_t rows, int64_t n) {
    return qr_add_bcast_f32(y, bias, y, rows, n);
}

/* ------------------------------------------------------------------ col_sum out[N] = sum_r x */
typedef struct { const float *x; float *out; int64_t rows, n; float beta; } rc_ctx;

#define COL_CHUNK 256
static void col_sum_chunks(void *p, int64_t lo, int64_t hi) {   /* lo, hi: column chunks */
    const rc_ctx *c = p;
    float acc[COL_CHUNK];
    for (int64_t ch = lo; ch < hi; ch++) {
        int64_t j0 = ch * COL_CHUNK, w = c->n - j0 < COL_CHUNK ? c->n - j0 : COL_CHUNK;
        memcpy(acc, c->x + j0, (size_t)w * sizeof(float));
        for (int64_t r = 1; r < c->rows; r++) {       /* rows in order, like numpy */
            const float *x = c->x + r * c->n + j0;
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
    rc_ctx c = {x, out, rows, n, beta};
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

/* ------------------------------------------------------------------ embedding */
/* y[i, :] = weight[ids[i], :]: ids[n] int32, weight[V, D], y[n, D]. */
typedef struct { const int32_t *ids; const float *w; float *y; int64_t D; } emb_ctx;

static void embedding_rows(void *p, int64_t lo, int64_t hi) {
    const emb_ctx *c = p;
    for (int64_t i = lo; i < hi; i++)
        memcpy(c->y + i * c->D, c->w + (int64_t)c->ids[i] * c->D, (size_t)c->D * sizeof(float));
}

static int ids_ok(const int32_t *ids, int64_t n, int64_t V) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) return 0;
    return 1;
}

int qr_embedding_f32(const int32_t *ids, const float *weight, float *y, int64_t n, int64_t V,
                     int64_t D) {
    if (n < 0 || V < 0 || D < 0) return QR_EARG;
    if (n * D == 0) return QR_OK;
    if (!ids || !weight || !y) return QR_EARG;
    if (!ids_ok(ids, n, V)) return QR_ETARGET;
    emb_ctx c = {ids, weight, y, D};
    qr_par_items(embedding_rows, &c, n, n * D);
    return QR_OK;
}

/* dweight[ids[i], :] += dy[i, :] in order of i (repeats accumulate, like numpy.add.at); split
 * over column chunks so the order never depends on the thread count. */
typedef struct { const int32_t *ids; const float *dy; float *dw; int64_t n, D; } embb_ctx;

static void embedding_bwd_cols(void *p, int64_t lo, int64_t hi) {   /* column chunks of 256 */
    const embb_ctx *c = p;
    int64_t j0 = lo * COL_CHUNK, j1 = hi * COL_CHUNK < c->D ? hi * COL_CHUNK : c->D;
    for (int64_t i = 0; i < c->n; i++) {
        float *d = c->dw + (int64_t)c->ids[i] * c->D;
        const float *s = c->dy + i * c->D;
        for (int64_t j = j0; j < j1; j++) d[j] = d[j] + s[j];
    }
}

int qr_embedding_bwd_f32(const int32_t *ids, const float *dy, float *dweight, int64_t n,
                         int64_t V, int64_t D) {
    if (n < 0 || V < 0 || D < 0) return QR_EARG;
    if (n * D == 0) return QR_OK;
    if (!ids || !dy || !dweight) return QR_EARG;
    if (!ids_ok(ids, n, V)) return QR_ETARGET;
    embb_ctx c = {ids, dy, dweight, n, D};
    qr_par_items(embedding_bwd_cols, &c, (D + COL_CHUNK - 1) / COL_CHUNK, n * D);
    return QR_OK;
}
