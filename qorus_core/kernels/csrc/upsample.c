/* upsample.c - nearest and bilinear upsampling of NCHW planes (PyTorch's nn.Upsample /
 * F.interpolate), with the backward.
 *
 * Each axis maps output index o to source indices i0, i1 with weights l0, l1, computed in
 * float exactly as PyTorch's CPU kernels: ratio = the given scale factor's inverse (or
 * in / out when none is given; (in - 1) / (out - 1) with align_corners), nearest i0 =
 * min(floor(o * ratio), in - 1); bilinear src = ratio * (o + 0.5) - 0.5 clamped at 0 (or
 * ratio * o with align_corners), i0 = min(floor(src), in - 1), i1 = i0 + (i0 < in - 1),
 * l1 = clamp(src - i0, 0, 1), l0 = 1 - l1; an axis whose size is unchanged is copied.
 * y = (x[i0,j0] l0w + x[i0,j1] l1w) l0h + (x[i1,j0] l0w + x[i1,j1] l1w) l1h, PyTorch's order.
 * Planes run in parallel; the backward adds each output's share into its plane in order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qr_math.h"
#include "qorus.h"

typedef struct {
    int64_t *i0, *i1;
    float *l0, *l1;
} axis_map;

typedef struct {
    const float *x, *dy;
    float *y, *dx;
    int64_t H, W, Ho, Wo;
    int mode;
    axis_map h, w;
} up_ctx;

static int map_axis(axis_map *m, int64_t in, int64_t out, int mode, int align, double scale) {
    m->i0 = malloc((size_t)out * 2 * sizeof(int64_t));
    m->l0 = malloc((size_t)out * 2 * sizeof(float));
    if (!m->i0 || !m->l0) return QR_ENOMEM;
    m->i1 = m->i0 + out;
    m->l1 = m->l0 + out;
    float ratio;
    if (mode == 1 && align)
        ratio = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    else
        ratio = scale > 0.0 ? (float)(1.0 / scale) : (float)in / (float)out;
    for (int64_t o = 0; o < out; o++) {
        int64_t i0;
        float l1 = 0.0f;
        if (in == out) {
            i0 = o;
        } else if (mode == 0) {
            i0 = (int64_t)floorf((float)o * ratio);
            if (i0 > in - 1) i0 = in - 1;
        } else {
            float src = align ? ratio * (float)o : ratio * ((float)o + 0.5f) - 0.5f;
            if (src < 0.0f) src = 0.0f;
            i0 = (int64_t)floorf(src);
            if (i0 > in - 1) i0 = in - 1;
            l1 = src - (float)i0;
            l1 = l1 < 0.0f ? 0.0f : l1 > 1.0f ? 1.0f : l1;
        }
        m->i0[o] = i0;
        m->i1[o] = mode == 1 && in != out && i0 < in - 1 ? i0 + 1 : i0;
        m->l1[o] = l1;
        m->l0[o] = 1.0f - l1;
    }
    return QR_OK;
}

static void up_planes(void *p, int64_t lo, int64_t hi) {
    const up_ctx *c = p;
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *x = c->x + pl * H * W;
        float *y = c->y + pl * Ho * Wo;
        for (int64_t oh = 0; oh < Ho; oh++) {
            const float *r0 = x + c->h.i0[oh] * W, *r1 = x + c->h.i1[oh] * W;
            float *yr = y + oh * Wo;
            if (c->mode == 0) {
                for (int64_t ow = 0; ow < Wo; ow++) yr[ow] = r0[c->w.i0[ow]];
                continue;
            }
            const float lh0 = c->h.l0[oh], lh1 = c->h.l1[oh];
            for (int64_t ow = 0; ow < Wo; ow++) {
                const int64_t j0 = c->w.i0[ow], j1 = c->w.i1[ow];
                const float lw0 = c->w.l0[ow], lw1 = c->w.l1[ow];
                float t0 = r0[j0] * lw0;
                t0 += r0[j1] * lw1;
                float t1 = r1[j0] * lw0;
                t1 += r1[j1] * lw1;
                float v = t0 * lh0;
                v += t1 * lh1;
                yr[ow] = v;
            }
        }
    }
}

static void up_bwd_planes(void *p, int64_t lo, int64_t hi) {
    const up_ctx *c = p;
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t pl = lo; pl < hi; pl++) {
        float *dx = c->dx + pl * H * W;
        const float *dy = c->dy + pl * Ho * Wo;
        memset(dx, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t oh = 0; oh < Ho; oh++) {
            float *r0 = dx + c->h.i0[oh] * W, *r1 = dx + c->h.i1[oh] * W;
            const float *g = dy + oh * Wo;
            if (c->mode == 0) {
                for (int64_t ow = 0; ow < Wo; ow++) r0[c->w.i0[ow]] += g[ow];
                continue;
            }
            const float lh0 = c->h.l0[oh], lh1 = c->h.l1[oh];
            for (int64_t ow = 0; ow < Wo; ow++) {
                const int64_t j0 = c->w.i0[ow], j1 = c->w.i1[ow];
                const float lw0 = c->w.l0[ow], lw1 = c->w.l1[ow], v = g[ow];
                r0[j0] += lh0 * lw0 * v;
                r0[j1] += lh0 * lw1 * v;
                r1[j0] += lh1 * lw0 * v;
                r1[j1] += lh1 * lw1 * v;
            }
        }
    }
}

static int up_run(up_ctx *c, int64_t B, int64_t C, int align, double scale_h, double scale_w,
                  int bwd) {
    if (B < 0 || C < 0 || c->H < 1 || c->W < 1 || c->Ho < 1 || c->Wo < 1 ||
        (c->mode != 0 && c->mode != 1) || !(scale_h >= 0.0) || !(scale_w >= 0.0))
        return QR_EARG;
    if (B * C == 0) return QR_OK;
    if (bwd ? (!c->dy || !c->dx) : (!c->x || !c->y)) return QR_EARG;
    int rc = map_axis(&c->h, c->H, c->Ho, c->mode, align, scale_h);
    if (!rc) rc = map_axis(&c->w, c->W, c->Wo, c->mode, align, scale_w);
    if (!rc)
        qr_par_items(bwd ? up_bwd_planes : up_planes, c, B * C,
                     B * C * (c->Ho * c->Wo * (c->mode ? 8 : 1) + (bwd ? c->H * c->W : 0)));
    free(c->h.i0); free(c->h.l0); free(c->w.i0); free(c->w.l0);
    return rc;
}

int qr_upsample2d_f32(const float *x, float *y, int64_t B, int64_t C, int64_t H, int64_t W,
                      int64_t Ho, int64_t Wo, int mode, int align_corners, double scale_h,
                      double scale_w) {
    up_ctx c = {.x = x, .y = y, .H = H, .W = W, .Ho = Ho, .Wo = Wo, .mode = mode};
    return up_run(&c, B, C, align_corners, scale_h, scale_w, 0);
}

int qr_upsample2d_bwd_f32(const float *dy, float *dx, int64_t B, int64_t C, int64_t H,
                          int64_t W, int64_t Ho, int64_t Wo, int mode, int align_corners,
                          double scale_h, double scale_w) {
    up_ctx c = {.dy = dy, .dx = dx, .H = H, .W = W, .Ho = Ho, .Wo = Wo, .mode = mode};
    return up_run(&c, B, C, align_corners, scale_h, scale_w, 1);
}
