/* act_ext.c - entry points of the activations of act_ext.h (leaky_relu, elu, softplus, mish,
 * hardswish, glu and their backward). They check what C can (sizes >= 0, non-NULL buffers),
 * then split the elements over threads (results never depend on the split) and run the twin of
 * the SIMD tier in effect (act_ext_impl.h, built into the vec family's act*.c). */
#include "act_ext.h"

static int ax(int op, const float *x, const float *dy, float *o, int64_t n, float s, float t) {
    if (n < 0) return QR_EARG;
    if (n == 0) return QR_OK;
    if (!x || !o) return QR_EARG;
    ax_ctx c = {op, x, dy, o, s, t};
    qr_par_range(qr_simd_pick3(act_ext_range), &c, n, QR_PAR_GRAIN);
    return QR_OK;
}

/* a backward: dy is read too */
static int ax_bwd(int op, const float *x, const float *dy, float *dx, int64_t n, float s,
                  float t) {
    if (n > 0 && !dy) return QR_EARG;
    return ax(op, x, dy, dx, n, s, t);
}

int qr_leaky_relu_f32(const float *x, float *y, int64_t n, float negative_slope) {
    return ax(AX_LEAKY_RELU, x, 0, y, n, negative_slope, 0.0f);
}
int qr_leaky_relu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n,
                          float negative_slope) {
    return ax_bwd(AX_LEAKY_RELU_BWD, x, dy, dx, n, negative_slope, 0.0f);
}
int qr_elu_f32(const float *x, float *y, int64_t n, float alpha) {
    return ax(AX_ELU, x, 0, y, n, alpha, 0.0f);
}
int qr_elu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n, float alpha) {
    return ax_bwd(AX_ELU_BWD, x, dy, dx, n, alpha, 0.0f);
}
int qr_softplus_f32(const float *x, float *y, int64_t n, float beta, float threshold) {
    return ax(AX_SOFTPLUS, x, 0, y, n, beta, threshold);
}
int qr_softplus_bwd_f32(const float *x, const float *dy, float *dx, int64_t n, float beta,
                        float threshold) {
    return ax_bwd(AX_SOFTPLUS_BWD, x, dy, dx, n, beta, threshold);
}
int qr_mish_f32(const float *x, float *y, int64_t n) { return ax(AX_MISH, x, 0, y, n, 0, 0); }
int qr_mish_bwd_f32(const float *x, const float *dy, float *dx, int64_t n) {
    return ax_bwd(AX_MISH_BWD, x, dy, dx, n, 0.0f, 0.0f);
}
int qr_hardswish_f32(const float *x, float *y, int64_t n) {
    return ax(AX_HARDSWISH, x, 0, y, n, 0.0f, 0.0f);
}
int qr_hardswish_bwd_f32(const float *x, const float *dy, float *dx, int64_t n) {
    return ax_bwd(AX_HARDSWISH_BWD, x, dy, dx, n, 0.0f, 0.0f);
}

/* ------------------------------------------------------------------ glu: rows of [a | b] */
static int glu(qr_range_fn fn, const float *x, const float *dy, float *y, float *dx,
               int64_t rows, int64_t m) {
    if (rows < 0 || m < 0) return QR_EARG;
    if (rows * m == 0) return QR_OK;
    glu_ctx c = {x, dy, y, dx, m};
    qr_par_range(fn, &c, rows * m, QR_PAR_GRAIN);
    return QR_OK;
}

int qr_glu_f32(const float *x, float *y, int64_t rows, int64_t m) {
    if (rows * m > 0 && (!x || !y)) return QR_EARG;
    return glu(qr_simd_pick3(glu_range), x, 0, y, 0, rows, m);
}

int qr_glu_bwd_f32(const float *x, const float *dy, float *dx, int64_t rows, int64_t m) {
    if (rows * m > 0 && (!x || !dy || !dx)) return QR_EARG;
    return glu(qr_simd_pick3(glu_bwd_range), x, dy, 0, dx, rows, m);
}
