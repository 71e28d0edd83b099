/* norm.c - row-wise kernels: softmax, LayerNorm and RMSNorm (+ backward), on matrices [R, N]
 * with rows independent. Rows are split over threads; the LayerNorm / RMSNorm parameter
 * gradients are summed over rows in order, split over columns, so no result depends on the
 * thread count. Formulas follow decl/norm.py's float32 operation order. The row bodies live in
 * vec_impl.h (portable / AVX2 / AVX-512 twins, bit-identical), picked at run time. */

#include "qr_vec.h"

/* ------------------------------------------------------------------ softmax */
int qr_softmax_f32(const float *x, float *y, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0 || (rows * n > 0 && (!x || !y))) return QR_EARG;
    if (n == 0) return QR_OK;
    sm_ctx c = {.x = x, .y = y, .n = n};
    qr_par_items(qr_simd_pick3(softmax_rows), &c, rows, rows * n);
    return QR_OK;
}

int qr_softmax_bwd_f32(const float *y, const float *dy, float *dx, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0 || (rows * n > 0 && (!y || !dy || !dx))) return QR_EARG;
    if (n == 0) return QR_OK;
    sm_ctx c = {.x = y, .dy = dy, .dx = dx, .n = n};
    qr_par_items(qr_simd_pick3(softmax_bwd_rows), &c, rows, rows * n);
    return QR_OK;
}

/* ------------------------------------------------------------------ layernorm */
/* y[R,N] = (x - mean) * rstd * gamma + beta; mean[R], rstd[R] saved; gamma / beta NULL: 1 / 0
 * (PyTorch's elementwise_affine=False, bias=False) */
int qr_layernorm_f32(const float *x, const float *gamma, const float *beta, float *y,
                     float *mean, float *rstd, int64_t rows, int64_t n, float eps) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !y || !mean || !rstd) return QR_EARG;
    rw_ctx c = {.x = x, .g = gamma, .b = beta, .y = y, .m = mean, .r = rstd, .rows = rows,
                .n = n, .eps = eps};
    qr_par_items(qr_simd_pick3(layernorm_rows), &c, rows, rows * n);
    return QR_OK;
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma, xhat = (x - mean) rstd;
 * dgamma[j] += sum_r dy * xhat, dbeta[j] += sum_r dy: rows in order, chunks of columns.
 * gamma NULL: 1; dgamma / dbeta NULL: not accumulated (no such parameter). */
int qr_layernorm_bwd_f32(const float *x, const float *gamma, const float *mean,
                         const float *rstd, const float *dy, float *dx, float *dgamma,
                         float *dbeta, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !mean || !rstd || !dy) return QR_EARG;
    rw_ctx c = {.x = x, .g = gamma, .mean = mean, .rstd = rstd, .dy = dy, .dx = dx,
                .dg = dgamma, .db = dbeta, .rows = rows, .n = n};
    /* parameter grads first: dx may alias dy; dx NULL: the input needs no gradient */
    if (dgamma || dbeta)
        qr_par_items(qr_simd_pick3(layernorm_param_chunks), &c,
                     (n + QR_LN_CHUNK - 1) / QR_LN_CHUNK, rows * n);
    if (dx) qr_par_items(qr_simd_pick3(layernorm_bwd_rows), &c, rows, rows * n);
    return QR_OK;
}

/* ------------------------------------------------------------------ rmsnorm */
/* y[R,N] = x * rstd * w[N], rstd = 1 / sqrt(mean(x^2) + eps) saved in rstd[R]. */
int qr_rmsnorm_f32(const float *x, const float *weight, float *y, float *rstd, int64_t rows,
                   int64_t n, float eps) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !weight || !y || !rstd) return QR_EARG;
    rw_ctx c = {.x = x, .g = weight, .y = y, .r = rstd, .rows = rows, .n = n, .eps = eps};
    qr_par_items(qr_simd_pick3(rmsnorm_rows), &c, rows, rows * n);
    return QR_OK;
}

/* dx = rstd * (g - xhat * mean(g * xhat)), g = dy * w, xhat = x * rstd (dx may be NULL);
 * dweight[j] += sum_r dy * xhat: rows in order, chunks of columns. */
int qr_rmsnorm_bwd_f32(const float *x, const float *weight, const float *rstd, const float *dy,
                       float *dx, float *dweight, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !weight || !rstd || !dy || !dweight) return QR_EARG;
    rw_ctx c = {.x = x, .g = weight, .rstd = rstd, .dy = dy, .dx = dx, .dg = dweight,
                .rows = rows, .n = n};
    qr_par_items(qr_simd_pick3(rmsnorm_param_chunks), &c, (n + QR_LN_CHUNK - 1) / QR_LN_CHUNK,
                 rows * n);
    if (dx) qr_par_items(qr_simd_pick3(rmsnorm_bwd_rows), &c, rows, rows * n);
    return QR_OK;
}
