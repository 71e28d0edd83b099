/* pool_adaptive.c - adaptive average and max pooling of NCHW planes (PyTorch's
 * nn.AdaptiveAvgPool2d / nn.AdaptiveMaxPool2d), with the average's backward.
 *
 * Output row o of Ho pools input rows [floor(o H / Ho), ceil((o + 1) H / Ho)), likewise the
 * columns. Max: the first maximum of its window in PyTorch's order (h, then w), a NaN wins
 * (the last NaN); argmax = h W + w in the plane, whose backward is qr_maxpool2d_bwd_f32.
 * Average: the window's sum in that order, divided by its size. Planes run in parallel.
 */
#include <math.h>
#include <string.h>

#include "qr_math.h"
#include "qorus.h"

typedef struct {
    const float *x, *dy;
    float *y, *dx;
    int32_t *am;
    int64_t H, W, Ho, Wo;
} ap_ctx;

static inline int64_t win_lo(int64_t o, int64_t out, int64_t n) { return o * n / out; }
static inline int64_t win_hi(int64_t o, int64_t out, int64_t n) {
    return ((o + 1) * n + out - 1) / out;
}

static void avg_planes(void *p, int64_t lo, int64_t hi) {
    const ap_ctx *c = p;
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *x = c->x + pl * H * W;
        float *y = c->y + pl * Ho * Wo;
        for (int64_t oh = 0; oh < Ho; oh++) {
            const int64_t h0 = win_lo(oh, Ho, H), h1 = win_hi(oh, Ho, H);
            for (int64_t ow = 0; ow < Wo; ow++) {
                const int64_t w0 = win_lo(ow, Wo, W), w1 = win_hi(ow, Wo, W);
                float s = 0.0f;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) s += x[h * W + w];
                y[oh * Wo + ow] = s / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

static void avg_bwd_planes(void *p, int64_t lo, int64_t hi) {
    const ap_ctx *c = p;
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t pl = lo; pl < hi; pl++) {
        float *dx = c->dx + pl * H * W;
        const float *dy = c->dy + pl * Ho * Wo;
        memset(dx, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t oh = 0; oh < Ho; oh++) {
            const int64_t h0 = win_lo(oh, Ho, H), h1 = win_hi(oh, Ho, H);
            for (int64_t ow = 0; ow < Wo; ow++) {
                const int64_t w0 = win_lo(ow, Wo, W), w1 = win_hi(ow, Wo, W);
                const float g = dy[oh * Wo + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) dx[h * W + w] += g;
            }
        }
    }
}

static void max_planes(void *p, int64_t lo, int64_t hi) {
    const ap_ctx *c = p;
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *x = c->x + pl * H * W;
        float *y = c->y + pl * Ho * Wo;
        int32_t *am = c->am + pl * Ho * Wo;
        for (int64_t oh = 0; oh < Ho; oh++) {
            const int64_t h0 = win_lo(oh, Ho, H), h1 = win_hi(oh, Ho, H);
            for (int64_t ow = 0; ow < Wo; ow++) {
                const int64_t w0 = win_lo(ow, Wo, W), w1 = win_hi(ow, Wo, W);
                float m = -INFINITY;
                int64_t i = h0 * W + w0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) {
                        const float v = x[h * W + w];
                        if (v > m || v != v) { m = v; i = h * W + w; }
                    }
                y[oh * Wo + ow] = m;
                am[oh * Wo + ow] = (int32_t)i;
            }
        }
    }
}

static int ap_check(int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
    return B < 0 || C < 0 || H < 1 || W < 1 || Ho < 1 || Wo < 1 || H * W > INT32_MAX
               ? QR_EARG : QR_OK;
}

int qr_adaptive_avgpool2d_f32(const float *x, float *y, int64_t B, int64_t C, int64_t H,
                              int64_t W, int64_t Ho, int64_t Wo) {
    if (ap_check(B, C, H, W, Ho, Wo)) return QR_EARG;
    if (B * C == 0) return QR_OK;
    if (!x || !y) return QR_EARG;
    ap_ctx c = {.x = x, .y = y, .H = H, .W = W, .Ho = Ho, .Wo = Wo};
    qr_par_items(avg_planes, &c, B * C, B * C * (H * W + Ho * Wo));
    return QR_OK;
}

int qr_adaptive_avgpool2d_bwd_f32(const float *dy, float *dx, int64_t B, int64_t C, int64_t H,
                                  int64_t W, int64_t Ho, int64_t Wo) {
    if (ap_check(B, C, H, W, Ho, Wo)) return QR_EARG;
    if (B * C == 0) return QR_OK;
    if (!dy || !dx) return QR_EARG;
    ap_ctx c = {.dy = dy, .dx = dx, .H = H, .W = W, .Ho = Ho, .Wo = Wo};
    qr_par_items(avg_bwd_planes, &c, B * C, B * C * (2 * H * W + Ho * Wo));
    return QR_OK;
}

int qr_adaptive_maxpool2d_f32(const float *x, float *y, int32_t *argmax, int64_t B, int64_t C,
                              int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
    if (ap_check(B, C, H, W, Ho, Wo)) return QR_EARG;
    if (B * C == 0) return QR_OK;
    if (!x || !y || !argmax) return QR_EARG;
    ap_ctx c = {.x = x, .y = y, .am = argmax, .H = H, .W = W, .Ho = Ho, .Wo = Wo};
    qr_par_items(max_planes, &c, B * C, B * C * (H * W + Ho * Wo));
    return QR_OK;
}
