/* norm.c - row-wise kernels: softmax (+ backward) and LayerNorm (+ backward), on matrices
 * [R, N] with rows independent. Rows are split over threads; the LayerNorm parameter
 * gradients are summed over rows in order, split over columns, so no result depends on the
 * thread count. Formulas follow numpy.py's float32 operation order. */
#include <string.h>

#include "qr_vec.h"

typedef struct {
    const float *x, *g, *b, *dy, *mean, *rstd;
    float *y, *dx, *m, *r, *dg, *db;
    int64_t rows, n;
    float eps;
} rw_ctx;

/* ------------------------------------------------------------------ softmax */
/* rows in vec_impl.h (portable / AVX2) */
int qr_softmax_f32(const float *x, float *y, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0 || (rows * n > 0 && (!x || !y))) return QR_EARG;
    if (n == 0) return QR_OK;
    sm_ctx c = {.x = x, .y = y, .n = n};
    qr_par_items(qr_simd_pick(softmax_rows), &c, rows, rows * n);
    return QR_OK;
}

int qr_softmax_bwd_f32(const float *y, const float *dy, float *dx, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0 || (rows * n > 0 && (!y || !dy || !dx))) return QR_EARG;
    if (n == 0) return QR_OK;
    sm_ctx c = {.x = y, .dy = dy, .dx = dx, .n = n};
    qr_par_items(qr_simd_pick(softmax_bwd_rows), &c, rows, rows * n);
    return QR_OK;
}

/* ------------------------------------------------------------------ layernorm */
static void layernorm_rows(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    const float fn = (float)n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n;
        float *y = c->y + r * n;
        float mu = qr_sum_f(x, n) / fn;
        for (int64_t j = 0; j < n; j++) y[j] = x[j] - mu;
        float var = qr_dot_f(y, y, n) / fn;
        float rs = 1.0f / __builtin_sqrtf(var + c->eps);
        for (int64_t j = 0; j < n; j++) y[j] = y[j] * rs * c->g[j] + c->b[j];
        c->m[r] = mu;
        c->r[r] = rs;
    }
}

int qr_layernorm_f32(const float *x, const float *gamma, const float *beta, float *y,
                     float *mean, float *rstd, int64_t rows, int64_t n, float eps) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !gamma || !beta || !y || !mean || !rstd) return QR_EARG;
    rw_ctx c = {.x = x, .g = gamma, .b = beta, .y = y, .m = mean, .r = rstd, .rows = rows,
                .n = n, .eps = eps};
    qr_par_items(layernorm_rows, &c, rows, rows * n);
    return QR_OK;
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma, xhat = (x - mean) rstd */
static void layernorm_bwd_rows(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    const float fn = (float)n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n, *dy = c->dy + r * n;
        float *dx = c->dx + r * n;
        const float mu = c->mean[r], rs = c->rstd[r];
        float acc1[16] = {0}, acc2[16] = {0};       /* sum g, sum g * xhat (fixed lanes) */
        int64_t j = 0;
        for (; j + 16 <= n; j += 16)
            for (int k = 0; k < 16; k++) {
                float xh = (x[j + k] - mu) * rs, g = dy[j + k] * c->g[j + k];
                acc1[k] += g;
                acc2[k] += g * xh;
            }
        for (int k = 0; j < n; j++, k++) {
            float xh = (x[j] - mu) * rs, g = dy[j] * c->g[j];
            acc1[k] += g;
            acc2[k] += g * xh;
        }
        float s1 = 0.0f, s2 = 0.0f;
        for (int k = 0; k < 16; k++) { s1 += acc1[k]; s2 += acc2[k]; }
        const float m1 = s1 / fn, m2 = s2 / fn;
        for (j = 0; j < n; j++) {
            float xh = (x[j] - mu) * rs, g = dy[j] * c->g[j];
            dx[j] = ((g - m1) - xh * m2) * rs;
        }
    }
}

/* dgamma[j] += sum_r dy * xhat, dbeta[j] += sum_r dy: rows in order, chunks of columns. */
#define LN_CHUNK 256
static void layernorm_param_chunks(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    float ag[LN_CHUNK], ab[LN_CHUNK];
    for (int64_t ch = lo; ch < hi; ch++) {
        int64_t j0 = ch * LN_CHUNK, w = n - j0 < LN_CHUNK ? n - j0 : LN_CHUNK;
        memset(ag, 0, sizeof(ag));
        memset(ab, 0, sizeof(ab));
        for (int64_t r = 0; r < c->rows; r++) {
            const float *x = c->x + r * n + j0, *dy = c->dy + r * n + j0;
            const float mu = c->mean[r], rs = c->rstd[r];
            for (int64_t j = 0; j < w; j++) {
                ag[j] += dy[j] * ((x[j] - mu) * rs);
                ab[j] += dy[j];
            }
        }
        for (int64_t j = 0; j < w; j++) {
            c->dg[j0 + j] = c->dg[j0 + j] + ag[j];
            c->db[j0 + j] = c->db[j0 + j] + ab[j];
        }
    }
}

int qr_layernorm_bwd_f32(const float *x, const float *gamma, const float *mean,
                         const float *rstd, const float *dy, float *dx, float *dgamma,
                         float *dbeta, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !gamma || !mean || !rstd || !dy || !dgamma || !dbeta) return QR_EARG;
    rw_ctx c = {.x = x, .g = gamma, .mean = mean, .rstd = rstd, .dy = dy, .dx = dx,
                .dg = dgamma, .db = dbeta, .rows = rows, .n = n};
    /* parameter grads first: dx may alias dy; dx NULL: the input needs no gradient */
    qr_par_items(layernorm_param_chunks, &c, (n + LN_CHUNK - 1) / LN_CHUNK, rows * n);
    if (dx) qr_par_items(layernorm_bwd_rows, &c, rows, rows * n);
    return QR_OK;
}

/* ------------------------------------------------------------------ rmsnorm */
/* y[R,N] = x * rstd * w[N], rstd = 1 / sqrt(mean(x^2) + eps) saved in rstd[R]. */
static void rmsnorm_rows(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n;
        float *y = c->y + r * n;
        float ms = qr_dot_f(x, x, n) / (float)n;
        float rs = 1.0f / __builtin_sqrtf(ms + c->eps);
        for (int64_t j = 0; j < n; j++) y[j] = x[j] * rs * c->g[j];
        c->r[r] = rs;
    }
}

int qr_rmsnorm_f32(const float *x, const float *weight, float *y, float *rstd, int64_t rows,
                   int64_t n, float eps) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !weight || !y || !rstd) return QR_EARG;
    rw_ctx c = {.x = x, .g = weight, .y = y, .r = rstd, .rows = rows, .n = n, .eps = eps};
    qr_par_items(rmsnorm_rows, &c, rows, rows * n);
    return QR_OK;
}

/* dx = rstd * (g - xhat * mean(g * xhat)), g = dy * w, xhat = x * rstd (dx may be NULL). */
static void rmsnorm_bwd_rows(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n, *dy = c->dy + r * n;
        float *dx = c->dx + r * n;
        const float rs = c->rstd[r];
        float acc[16] = {0};
        int64_t j = 0;
        for (; j + 16 <= n; j += 16)
            for (int k = 0; k < 16; k++) acc[k] += (dy[j + k] * c->g[j + k]) * (x[j + k] * rs);
        for (int k = 0; j < n; j++, k++) acc[k] += (dy[j] * c->g[j]) * (x[j] * rs);
        float s = 0.0f;
        for (int k = 0; k < 16; k++) s += acc[k];
        const float m = s / (float)n;
        for (j = 0; j < n; j++) {
            float xh = x[j] * rs, g = dy[j] * c->g[j];
            dx[j] = (g - xh * m) * rs;
        }
    }
}

/* dweight[j] += sum_r dy * xhat: rows in order, chunks of columns. */
static void rmsnorm_param_chunks(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    float ag[LN_CHUNK];
    for (int64_t ch = lo; ch < hi; ch++) {
        int64_t j0 = ch * LN_CHUNK, w = n - j0 < LN_CHUNK ? n - j0 : LN_CHUNK;
        memset(ag, 0, sizeof(ag));
        for (int64_t r = 0; r < c->rows; r++) {
            const float *x = c->x + r * n + j0, *dy = c->dy + r * n + j0;
            const float rs = c->rstd[r];
            for (int64_t j = 0; j < w; j++) ag[j] += dy[j] * (x[j] * rs);
        }
        for (int64_t j = 0; j < w; j++) c->dg[j0 + j] = c->dg[j0 + j] + ag[j];
    }
}

int qr_rmsnorm_bwd_f32(const float *x, const float *weight, const float *rstd, const float *dy,
                       float *dx, float *dweight, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !weight || !rstd || !dy || !dweight) return QR_EARG;
    rw_ctx c = {.x = x, .g = weight, .rstd = rstd, .dy = dy, .dx = dx, .dg = dweight,
                .rows = rows, .n = n};
    qr_par_items(rmsnorm_param_chunks, &c, (n + LN_CHUNK - 1) / LN_CHUNK, rows * n);
    if (dx) qr_par_items(rmsnorm_bwd_rows, &c, rows, rows * n);
    return QR_OK;
}
