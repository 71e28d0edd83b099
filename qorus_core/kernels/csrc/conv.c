/* conv.c - 2-D convolution, pooling and BatchNorm2d over NCHW tensors, with their backward.
 *
 * Conv2d is im2col + GEMM per image: the image's patch matrix col [C/G * R * S, Ho * Wo] is
 * built in a per-task buffer and y[b, group] = W_group @ col (qr_gemm_f32, which runs
 * serially inside a parallel task). Images run in parallel; a batch of one runs its GEMMs
 * multithreaded instead. The backward rebuilds col per image (cheaper than keeping it):
 * dW_chunk += dy_b @ col^T, dcol = W^T @ dy_b scattered back by col2im into dx[b]. dW and db
 * sum images in at most 16 fixed chunks whose partial sums are added in chunk order, so no
 * result depends on the thread count. 1x1 convolutions with stride 1 and no padding use x
 * (and dx) directly as col (dcol).
 * Pooling and BatchNorm run over planes / channels in parallel, each reduced in a fixed order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qr_math.h"
#include "qorus.h"

#define QR_CONV_CHUNKS 16   /* most image chunks of the weight-gradient reduction */
#define QR_CONV_PART_FLOATS ((int64_t)1 << 22)   /* cap of their partial sums (16 MiB) */

typedef struct {
    const float *x, *w, *bias, *dy;
    float *y, *dx, *dw, *db, *part;   /* part: chunk partials [chunks][K*CgRS + K] */
    int64_t B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw_, G;
    int64_t Ho, Wo, Cg, Kg, CRS;      /* CRS = Cg * R * S: rows of one group's col */
    int64_t chunks;
    int direct;                      /* 1x1, stride 1, no padding: col is x itself */
    volatile int err;
} conv_ctx;

/* Valid output columns [*ow0, *ow1) of window column offset `off`: ow * sw + off in [0, W). */
static void col_range(int64_t off, int64_t sw, int64_t W, int64_t Wo, int64_t *ow0, int64_t *ow1) {
    int64_t a = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int64_t b = W - off <= 0 ? 0 : (W - off + sw - 1) / sw;
    if (b > Wo) b = Wo;
    *ow0 = a < b ? a : b;
    *ow1 = b;
}

/* col [Cg*R*S, Ho*Wo] of image plane block xb [Cg, H, W] (zero where the patch is padding) */
static void im2col(const conv_ctx *c, const float *xb, float *col) {
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t ch = 0; ch < c->Cg; ch++)
        for (int64_t r = 0; r < c->R; r++)
            for (int64_t s = 0; s < c->S; s++) {
                float *row = col + ((ch * c->R + r) * c->S + s) * Ho * Wo;
                const float *plane = xb + ch * H * W;
                const int64_t off_w = s * c->dw_ - c->pw;
                int64_t ow0, ow1;
                col_range(off_w, c->sw, W, Wo, &ow0, &ow1);
                for (int64_t oh = 0; oh < Ho; oh++) {
                    float *out = row + oh * Wo;
                    const int64_t ih = oh * c->sh - c->ph + r * c->dh;
                    if (ih < 0 || ih >= H) { memset(out, 0, (size_t)Wo * sizeof(float)); continue; }
                    const float *in = plane + ih * W;   /* column ow reads in[ow sw + off_w] */
                    for (int64_t ow = 0; ow < ow0; ow++) out[ow] = 0.0f;
                    if (c->sw == 1)
                        memcpy(out + ow0, in + ow0 + off_w, (size_t)(ow1 - ow0) * sizeof(float));
                    else
                        for (int64_t ow = ow0; ow < ow1; ow++) out[ow] = in[ow * c->sw + off_w];
                    for (int64_t ow = ow1; ow < Wo; ow++) out[ow] = 0.0f;
                }
            }
}

/* dxb [Cg, H, W] += col2im(dcol): each patch entry added back where im2col read it */
static void col2im(const conv_ctx *c, const float *dcol, float *dxb) {
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t ch = 0; ch < c->Cg; ch++)
        for (int64_t r = 0; r < c->R; r++)
            for (int64_t s = 0; s < c->S; s++) {
                const float *row = dcol + ((ch * c->R + r) * c->S + s) * Ho * Wo;
                float *plane = dxb + ch * H * W;
                const int64_t off_w = s * c->dw_ - c->pw;
                int64_t ow0, ow1;
                col_range(off_w, c->sw, W, Wo, &ow0, &ow1);
                for (int64_t oh = 0; oh < Ho; oh++) {
                    const int64_t ih = oh * c->sh - c->ph + r * c->dh;
                    if (ih < 0 || ih >= H) continue;
                    const float *in = row + oh * Wo;
                    float *out = plane + ih * W;
                    for (int64_t ow = ow0; ow < ow1; ow++) out[ow * c->sw + off_w] += in[ow];
                }
            }
}

static int check_geometry(int64_t B, int64_t C, int64_t H, int64_t W, int64_t R, int64_t S,
                          int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                          int64_t *Ho, int64_t *Wo) {
    if (B < 0 || C < 0 || H < 1 || W < 1 || R < 1 || S < 1 || sh < 1 || sw < 1 || ph < 0 ||
        pw < 0 || dh < 1 || dw < 1)
        return QR_EARG;
    const int64_t eh = H + 2 * ph - dh * (R - 1) - 1, ew = W + 2 * pw - dw * (S - 1) - 1;
    if (eh < 0 || ew < 0) return QR_EARG;
    *Ho = eh / sh + 1;
    *Wo = ew / sw + 1;
    return QR_OK;
}

static int conv_setup(conv_ctx *c, int64_t B, int64_t C, int64_t H, int64_t W, int64_t K,
                      int64_t R, int64_t S, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                      int64_t dh, int64_t dw, int64_t G) {
    memset(c, 0, sizeof(*c));
    if (G < 1 || K < 1 || C < 1 || C % G || K % G) return QR_EARG;
    int rc = check_geometry(B, C, H, W, R, S, sh, sw, ph, pw, dh, dw, &c->Ho, &c->Wo);
    if (rc) return rc;
    c->B = B; c->C = C; c->H = H; c->W = W; c->K = K; c->R = R; c->S = S;
    c->sh = sh; c->sw = sw; c->ph = ph; c->pw = pw; c->dh = dh; c->dw_ = dw; c->G = G;
    c->Cg = C / G; c->Kg = K / G; c->CRS = c->Cg * R * S;
    c->direct = R == 1 && S == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
    return QR_OK;
}

/* ------------------------------------------------------------------ conv forward */
static void conv_fwd_images(void *p, int64_t lo, int64_t hi) {
    conv_ctx *c = p;
    const int64_t HWo = c->Ho * c->Wo, HW = c->H * c->W;
    float *col = NULL;     /* not qr_scratch: the GEMM uses every scratch slot */
    if (!c->direct) {
        col = malloc((size_t)(c->CRS * HWo) * sizeof(float));
        if (!col) { c->err = QR_ENOMEM; return; }
    }
    for (int64_t b = lo; b < hi; b++)
        for (int64_t g = 0; g < c->G; g++) {
            const float *xb = c->x + (b * c->C + g * c->Cg) * HW;
            float *yb = c->y + (b * c->K + g * c->Kg) * HWo;
            if (!c->direct) im2col(c, xb, col);
            int rc = qr_gemm_f32(0, 0, c->Kg, HWo, c->CRS, 1.0f, c->w + g * c->Kg * c->CRS,
                                 c->direct ? xb : col, 0.0f, yb);
            if (rc) { c->err = rc; free(col); return; }
            if (c->bias)
                for (int64_t k = 0; k < c->Kg; k++) {
                    const float bk = c->bias[g * c->Kg + k];
                    float *yr = yb + k * HWo;
                    for (int64_t i = 0; i < HWo; i++) yr[i] += bk;
                }
        }
    free(col);
}

int qr_conv2d_f32(const float *x, const float *w, const float *bias, float *y, int64_t B,
                  int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S, int64_t sh,
                  int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
    conv_ctx c;
    int rc = conv_setup(&c, B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G);
    if (rc) return rc;
    if (B == 0) return QR_OK;
    if (!x || !w || !y) return QR_EARG;
    c.x = x; c.w = w; c.bias = bias; c.y = y;
    const int64_t work = B * K * c.CRS * c.Ho * c.Wo;
    qr_par_items(conv_fwd_images, &c, B, work);
    return c.err;
}

/* ------------------------------------------------------------------ conv backward */
static void conv_bwd_chunk(void *p, int task, int ntasks) {
    conv_ctx *c = p;
    (void)ntasks;
    const int64_t HWo = c->Ho * c->Wo, HW = c->H * c->W;
    const int64_t lo = c->B * task / c->chunks, hi = c->B * (task + 1) / c->chunks;
    const int64_t nw = c->K * c->CRS;
    /* part: NULL when neither dw nor db is wanted (the transposed convolution's forward) */
    float *pdw = c->part ? c->part + (int64_t)task * (nw + c->K) : NULL;
    float *pdb = pdw ? pdw + nw : NULL;
    float *col = NULL, *dcol = NULL;
    if (!c->direct) {
        col = malloc((size_t)(2 * c->CRS * HWo) * sizeof(float));   /* GEMM owns qr_scratch */
        if (!col) { c->err = QR_ENOMEM; return; }
        dcol = col + c->CRS * HWo;
    }
    if (pdb)
        for (int64_t k = 0; k < c->K; k++) pdb[k] = 0.0f;
    for (int64_t b = lo; b < hi; b++) {
        if (c->dx && !c->direct)
            memset(c->dx + b * c->C * HW, 0, (size_t)(c->C * HW) * sizeof(float));
        for (int64_t g = 0; g < c->G; g++) {
            const float *dyb = c->dy + (b * c->K + g * c->Kg) * HWo;
            const float *wg = c->w + g * c->Kg * c->CRS;
            if (c->dw) {
                const float *xb = c->x + (b * c->C + g * c->Cg) * HW;
                if (!c->direct) im2col(c, xb, col);
                /* pdw_g [Kg, CRS] (+)= dy_b [Kg, HWo] @ col^T (col stored [CRS, HWo]) */
                int rc = qr_gemm_f32(0, 1, c->Kg, c->CRS, HWo, 1.0f, dyb, c->direct ? xb : col,
                                     b == lo ? 0.0f : 1.0f, pdw + g * c->Kg * c->CRS);
                if (rc) { c->err = rc; free(col); return; }
            }
            if (c->dx) {
                float *dxb = c->dx + (b * c->C + g * c->Cg) * HW;
                /* dcol [CRS, HWo] = W_g^T (W_g stored [Kg, CRS]) @ dy_b */
                int rc = qr_gemm_f32(1, 0, c->CRS, HWo, c->Kg, 1.0f, wg, dyb, 0.0f,
                                     c->direct ? dxb : dcol);
                if (rc) { c->err = rc; free(col); return; }
                if (!c->direct) col2im(c, dcol, dxb);
            }
        }
        if (c->db)
            for (int64_t k = 0; k < c->K; k++)
                pdb[k] += qr_sum_f(c->dy + (b * c->K + k) * HWo, HWo);
    }
    free(col);
}

/* The backward over a set-up ctx: images in chunks fixed by the shape, dx written per image,
 * dw (and db) partial sums per chunk added in chunk order (no partials when neither is wanted:
 * only dx, the transposed convolution's forward). */
static int conv_bwd_run(conv_ctx *c) {
    const int64_t nw = c->K * c->CRS, K = c->K;
    /* chunks depend on the shape only; big weights get fewer (one: GEMMs multithreaded) */
    int64_t cap = QR_CONV_PART_FLOATS / (nw + K);
    c->chunks = c->B < QR_CONV_CHUNKS ? c->B : QR_CONV_CHUNKS;
    if ((c->dw || c->db) && c->chunks > cap) c->chunks = cap < 1 ? 1 : cap;
    c->part = NULL;
    if (c->dw || c->db) {
        c->part = malloc((size_t)(c->chunks * (nw + K)) * sizeof(float));
        if (!c->part) return QR_ENOMEM;
    }
    const int64_t work = c->B * K * c->CRS * c->Ho * c->Wo;
    int nt = qr_tasks_for((size_t)work, (size_t)QR_PAR_GRAIN);
    if (nt <= 1 || c->chunks == 1)
        for (int t = 0; t < c->chunks; t++) conv_bwd_chunk(c, t, (int)c->chunks);
    else
        qr_parallel(conv_bwd_chunk, c, (int)c->chunks);
    if (!c->err && c->part) {
        for (int64_t t = 0; t < c->chunks; t++) {   /* chunk order: thread-count independent */
            const float *pw_ = c->part + t * (nw + K);
            if (c->dw)
                for (int64_t i = 0; i < nw; i++) c->dw[i] += pw_[i];
            if (c->db)
                for (int64_t k = 0; k < K; k++) c->db[k] += pw_[nw + k];
        }
    }
    free(c->part);
    return c->err;
}

int qr_conv2d_bwd_f32(const float *x, const float *w, const float *dy, float *dx, float *dwt,
                      float *db, int64_t B, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R,
                      int64_t S, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                      int64_t dw, int64_t G) {
    conv_ctx c;
    int rc = conv_setup(&c, B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G);
    if (rc) return rc;
    if (B == 0) return QR_OK;
    if (!x || !w || !dy || !dwt) return QR_EARG;
    c.x = x; c.w = w; c.dy = dy; c.dx = dx; c.dw = dwt; c.db = db;
    return conv_bwd_run(&c);
}

/* ------------------------------------------------------------------ transposed conv */
/* A transposed convolution is the input gradient of the convolution from its output y
 * [B,Cout,Ho,Wo] to its input x [B,Cin,H,W]: that convolution's C = Cout, K = Cin, its
 * weight w [Cin, Cout/G, R, S] (PyTorch's ConvTranspose layout). Its geometry must map y's
 * Ho x Wo back onto H x W (output_padding < stride). */
static int convt_setup(conv_ctx *c, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                       int64_t Ho, int64_t Wo, int64_t R, int64_t S, int64_t sh, int64_t sw,
                       int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
    int rc = conv_setup(c, B, Cout, Ho, Wo, Cin, R, S, sh, sw, ph, pw, dh, dw, G);
    if (rc) return rc;
    return c->Ho == H && c->Wo == W ? QR_OK : QR_EARG;
}

typedef struct { const float *bias, *dy; float *y, *db; int64_t B, K, HW; } chan_ctx;

/* y [B,K,HW] += bias[K], over planes */
static void add_bias_planes(void *p, int64_t lo, int64_t hi) {
    const chan_ctx *c = p;
    for (int64_t pl = lo; pl < hi; pl++) {
        const float bk = c->bias[pl % c->K];
        float *yr = c->y + pl * c->HW;
        for (int64_t i = 0; i < c->HW; i++) yr[i] += bk;
    }
}

/* db[k] += sum over (B, HW) of dy [B,K,HW], images in order, over channels */
static void sum_channels(void *p, int64_t lo, int64_t hi) {
    const chan_ctx *c = p;
    for (int64_t k = lo; k < hi; k++) {
        float s = 0.0f;
        for (int64_t b = 0; b < c->B; b++) s += qr_sum_f(c->dy + (b * c->K + k) * c->HW, c->HW);
        c->db[k] += s;
    }
}

int qr_conv_transpose2d_f32(const float *x, const float *w, const float *bias, float *y,
                            int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                            int64_t Ho, int64_t Wo, int64_t R, int64_t S, int64_t sh, int64_t sw,
                            int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
    conv_ctx c;
    int rc = convt_setup(&c, B, Cin, H, W, Cout, Ho, Wo, R, S, sh, sw, ph, pw, dh, dw, G);
    if (rc) return rc;
    if (B == 0) return QR_OK;
    if (!x || !w || !y) return QR_EARG;
    c.w = w; c.dy = x; c.dx = y;          /* y = col2im(W^T x_b) per image: conv's dx path */
    rc = conv_bwd_run(&c);
    if (rc || !bias) return rc;
    chan_ctx bc = {.bias = bias, .y = y, .B = B, .K = Cout, .HW = Ho * Wo};
    qr_par_items(add_bias_planes, &bc, B * Cout, B * Cout * Ho * Wo);
    return QR_OK;
}

int qr_conv_transpose2d_bwd_f32(const float *x, const float *w, const float *dy, float *dx,
                                float *dwt, float *db, int64_t B, int64_t Cin, int64_t H,
                                int64_t W, int64_t Cout, int64_t Ho, int64_t Wo, int64_t R,
                                int64_t S, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                int64_t dh, int64_t dw, int64_t G) {
    conv_ctx c;
    int rc = convt_setup(&c, B, Cin, H, W, Cout, Ho, Wo, R, S, sh, sw, ph, pw, dh, dw, G);
    if (rc) return rc;
    if (B == 0) return QR_OK;
    if (!x || !w || !dy || !dwt) return QR_EARG;
    if (dx) {                             /* dx = conv2d(dy, w): the convolution's forward */
        rc = qr_conv2d_f32(dy, w, NULL, dx, B, Cout, Ho, Wo, Cin, R, S, sh, sw, ph, pw, dh, dw, G);
        if (rc) return rc;
    }
    c.x = dy; c.dy = x; c.w = w; c.dw = dwt;   /* dw += x_b @ col(dy_b)^T: conv's dw path */
    rc = conv_bwd_run(&c);
    if (rc || !db) return rc;
    chan_ctx sc = {.dy = dy, .db = db, .B = B, .K = Cout, .HW = Ho * Wo};
    qr_par_items(sum_channels, &sc, Cout, B * Cout * Ho * Wo);
    return QR_OK;
}

/* ------------------------------------------------------------------ pooling */
typedef struct {
    const float *x, *dy;
    float *y, *dx;
    int32_t *am;
    const int32_t *cam;
    int64_t H, W, R, S, sh, sw, ph, pw, dh, dw, Ho, Wo;
    int include_pad;                 /* avgpool: padding counts in the divisor */
} pool_ctx;

/* the update rule of one window position: a larger value or a NaN (PyTorch's) */
#define POOL_TAKE(v, m) (((v) > (m)) | ((v) != (v)))

/* The common 2x2 window, stride 2, no padding: one output row reads two input rows, each
 * output its four positions in PyTorch's order (h then w) with the same branch-free update as
 * the general loop below, written so the compiler vectorizes it (same values, same indices). */
static void maxpool2x2_plane(const float *x, float *y, int32_t *am, int64_t W, int64_t Ho,
                             int64_t Wo) {
    for (int64_t oh = 0; oh < Ho; oh++) {
        const float *restrict r0 = x + 2 * oh * W, *restrict r1 = r0 + W;
        float *restrict yr = y + oh * Wo;
        int32_t *restrict ar = am + oh * Wo;
        const int32_t base = (int32_t)(2 * oh * W), w = (int32_t)W;
        for (int64_t ow = 0; ow < Wo; ow++) {
            const float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            const int32_t i0 = base + 2 * (int32_t)ow;
            float m = -INFINITY;
            int32_t i = i0;
            int t = POOL_TAKE(a, m); m = t ? a : m;
            t = POOL_TAKE(b, m); m = t ? b : m; i = t ? i0 + 1 : i;
            t = POOL_TAKE(c, m); m = t ? c : m; i = t ? i0 + w : i;
            t = POOL_TAKE(d, m); m = t ? d : m; i = t ? i0 + w + 1 : i;
            yr[ow] = m;
            ar[ow] = i;
        }
    }
}

/* One output row at a time, window offsets outside, output columns inside (branch-free
 * updates): each output still visits its window in PyTorch's order, h then w. */
/* the first of the positions o st - pd + r dl (r >= 0) at or past 0 */
static inline int64_t first_in(int64_t o, int64_t st, int64_t pd, int64_t dl) {
    const int64_t a = o * st - pd;
    return a >= 0 ? a : a + (-a + dl - 1) / dl * dl;
}

static void maxpool_planes(void *p, int64_t lo, int64_t hi) {
    const pool_ctx *c = p;
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo, sw = c->sw;
    if (c->R == 2 && c->S == 2 && c->sh == 2 && sw == 2 && c->ph == 0 && c->pw == 0 &&
        c->dh == 1 && c->dw == 1 && 2 * Ho <= H && 2 * Wo <= W) {   /* no window clipped */
        for (int64_t pl = lo; pl < hi; pl++)
            maxpool2x2_plane(c->x + pl * H * W, c->y + pl * Ho * Wo, c->am + pl * Ho * Wo, W,
                             Ho, Wo);
        return;
    }
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *x = c->x + pl * H * W;
        for (int64_t oh = 0; oh < Ho; oh++) {
            float *yr = c->y + (pl * Ho + oh) * Wo;
            int32_t *ar = c->am + (pl * Ho + oh) * Wo;
            const int64_t h0 = first_in(oh, c->sh, c->ph, c->dh);
            for (int64_t ow = 0; ow < Wo; ow++) {   /* PyTorch: the first position, -inf max */
                yr[ow] = -INFINITY;
                ar[ow] = (int32_t)(h0 * W + first_in(ow, sw, c->pw, c->dw));
            }
            for (int64_t r = 0; r < c->R; r++) {
                const int64_t h = oh * c->sh - c->ph + r * c->dh;
                if (h < 0 || h >= H) continue;
                for (int64_t s = 0; s < c->S; s++) {
                    const int64_t off = s * c->dw - c->pw;
                    int64_t ow0, ow1;
                    col_range(off, sw, W, Wo, &ow0, &ow1);
                    const float *xr = x + h * W;
                    const int32_t base = (int32_t)(h * W + off);
                    for (int64_t ow = ow0; ow < ow1; ow++) {
                        const float v = xr[ow * sw + off], m = yr[ow];
                        const int upd = POOL_TAKE(v, m);
                        yr[ow] = upd ? v : m;
                        ar[ow] = upd ? base + (int32_t)(ow * sw) : ar[ow];
                    }
                }
            }
        }
    }
}

/* PyTorch's pooling output length along one axis (n, kernel k, stride st, padding pd,
 * dilation dl; ceil: its ceil_mode, the last window starting inside the input or the left
 * padding) into *out; QR_EARG when nothing fits or a window holds padding only. */
static int pool_axis(int64_t n, int64_t k, int64_t st, int64_t pd, int64_t dl, int ceil,
                     int64_t *out) {
    if (n < 1 || k < 1 || st < 1 || pd < 0 || dl < 1 || pd > k / 2) return QR_EARG;
    const int64_t e = n + 2 * pd - dl * (k - 1) - 1 + (ceil ? st - 1 : 0);
    int64_t o = (e >= 0 ? e / st : -((-e + st - 1) / st)) + 1;   /* floor division */
    if (ceil && o > 0 && (o - 1) * st >= n + pd) o--;
    if (o < 1) return QR_EARG;
    for (int64_t i = 0; i < o && i * st < pd; i++) {             /* windows starting in padding */
        const int64_t a = i * st - pd, r0 = (-a + dl - 1) / dl;
        if (r0 >= k || a + r0 * dl >= n) return QR_EARG;
    }
    *out = o;
    return QR_OK;
}

static int check_pool(pool_ctx *c, int64_t B, int64_t C, int ceil) {
    if (B < 0 || C < 0) return QR_EARG;
    int rc = pool_axis(c->H, c->R, c->sh, c->ph, c->dh, ceil, &c->Ho);
    return rc ? rc : pool_axis(c->W, c->S, c->sw, c->pw, c->dw, ceil, &c->Wo);
}

int qr_maxpool2d_f32(const float *x, float *y, int32_t *argmax, int64_t B, int64_t C, int64_t H,
                     int64_t W, int64_t R, int64_t S, int64_t sh, int64_t sw, int64_t ph,
                     int64_t pw, int64_t dh, int64_t dw, int ceil_mode) {
    pool_ctx c = {.x = x, .y = y, .am = argmax, .H = H, .W = W, .R = R, .S = S, .sh = sh,
                  .sw = sw, .ph = ph, .pw = pw, .dh = dh, .dw = dw};
    int rc = check_pool(&c, B, C, ceil_mode);
    if (rc) return rc;
    if (H * W > INT32_MAX) return QR_EARG;
    if (B * C == 0) return QR_OK;
    if (!x || !y || !argmax) return QR_EARG;
    qr_par_items(maxpool_planes, &c, B * C, B * C * c.Ho * c.Wo * R * S);
    return QR_OK;
}

static void maxpool_bwd_planes(void *p, int64_t lo, int64_t hi) {
    const pool_ctx *c = p;
    const int64_t HW = c->H * c->W, HWo = c->Ho * c->Wo;
    for (int64_t pl = lo; pl < hi; pl++) {
        float *dx = c->dx + pl * HW;
        const float *dy = c->dy + pl * HWo;
        const int32_t *am = c->cam + pl * HWo;
        memset(dx, 0, (size_t)HW * sizeof(float));
        for (int64_t i = 0; i < HWo; i++) dx[am[i]] += dy[i];
    }
}

typedef struct { const int32_t *am; int64_t HW; volatile int bad; } am_check;

int qr_maxpool2d_bwd_f32(const float *dy, const int32_t *argmax, float *dx, int64_t B, int64_t C,
                         int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
    if (B < 0 || C < 0 || H < 1 || W < 1 || Ho < 1 || Wo < 1) return QR_EARG;
    if (B * C == 0) return QR_OK;
    if (!dy || !argmax || !dx) return QR_EARG;
    const int64_t n = B * C * Ho * Wo, HW = H * W;
    for (int64_t i = 0; i < n; i++)        /* a corrupt index must not write out of bounds */
        if (argmax[i] < 0 || argmax[i] >= HW) return QR_ETARGET;
    pool_ctx c = {.dy = dy, .dx = dx, .cam = argmax, .H = H, .W = W, .Ho = Ho, .Wo = Wo};
    qr_par_items(maxpool_bwd_planes, &c, B * C, B * C * (HW + Ho * Wo));
    return QR_OK;
}

/* the window [*lo, *hi) of output o clipped to the input, and its divisor: the window
 * clipped to the padded input (count_include_pad) or the input positions it holds */
static inline int64_t avg_win(const pool_ctx *c, int64_t oh, int64_t ow, int64_t *h0,
                              int64_t *h1, int64_t *w0, int64_t *w1) {
    const int64_t a = oh * c->sh - c->ph, b = ow * c->sw - c->pw;
    const int64_t ae = a + c->R < c->H + c->ph ? a + c->R : c->H + c->ph;
    const int64_t be = b + c->S < c->W + c->pw ? b + c->S : c->W + c->pw;
    *h0 = a < 0 ? 0 : a;
    *h1 = ae > c->H ? c->H : ae;
    *w0 = b < 0 ? 0 : b;
    *w1 = be > c->W ? c->W : be;
    return c->include_pad ? (ae - a) * (be - b) : (*h1 - *h0) * (*w1 - *w0);
}

static void avgpool_planes(void *p, int64_t lo, int64_t hi) {
    const pool_ctx *c = p;
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *x = c->x + pl * H * W;
        float *y = c->y + pl * Ho * Wo;
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t h0, h1, w0, w1;
                const float inv = 1.0f / (float)avg_win(c, oh, ow, &h0, &h1, &w0, &w1);
                float s = 0.0f;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) s += x[h * W + w];
                y[oh * Wo + ow] = s * inv;
            }
    }
}

static void avgpool_bwd_planes(void *p, int64_t lo, int64_t hi) {
    const pool_ctx *c = p;
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t pl = lo; pl < hi; pl++) {
        float *dx = c->dx + pl * H * W;
        const float *dy = c->dy + pl * Ho * Wo;
        memset(dx, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t h0, h1, w0, w1;
                const float inv = 1.0f / (float)avg_win(c, oh, ow, &h0, &h1, &w0, &w1);
                const float g = dy[oh * Wo + ow] * inv;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) dx[h * W + w] += g;
            }
    }
}

int qr_avgpool2d_f32(const float *x, float *y, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t R, int64_t S, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                     int ceil_mode, int count_include_pad) {
    pool_ctx c = {.x = x, .y = y, .H = H, .W = W, .R = R, .S = S, .sh = sh, .sw = sw, .ph = ph,
                  .pw = pw, .dh = 1, .dw = 1, .include_pad = count_include_pad};
    int rc = check_pool(&c, B, C, ceil_mode);
    if (rc) return rc;
    if (B * C == 0) return QR_OK;
    if (!x || !y) return QR_EARG;
    qr_par_items(avgpool_planes, &c, B * C, B * C * c.Ho * c.Wo * R * S);
    return QR_OK;
}

int qr_avgpool2d_bwd_f32(const float *dy, float *dx, int64_t B, int64_t C, int64_t H, int64_t W,
                         int64_t R, int64_t S, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                         int ceil_mode, int count_include_pad) {
    pool_ctx c = {.dy = dy, .dx = dx, .H = H, .W = W, .R = R, .S = S, .sh = sh, .sw = sw,
                  .ph = ph, .pw = pw, .dh = 1, .dw = 1, .include_pad = count_include_pad};
    int rc = check_pool(&c, B, C, ceil_mode);
    if (rc) return rc;
    if (B * C == 0) return QR_OK;
    if (!dy || !dx) return QR_EARG;
    qr_par_items(avgpool_bwd_planes, &c, B * C, B * C * (H * W + c.Ho * c.Wo * R * S));
    return QR_OK;
}

/* ------------------------------------------------------------------ batchnorm */
typedef struct {
    const float *x, *gamma, *beta, *dy, *cmean, *crstd;
    float *y, *mean, *rstd, *rm, *rv, *dx, *dgamma, *dbeta;
    int64_t B, C, HW;
    float eps, momentum;
    int train;
} bn_ctx;

static void bn_fwd_channels(void *p, int64_t lo, int64_t hi) {
    const bn_ctx *c = p;
    const int64_t HW = c->HW, CHW = c->C * HW;
    const double n = (double)(c->B * HW);
    for (int64_t ch = lo; ch < hi; ch++) {
        float m, r;
        if (c->train) {
            double s = 0.0, ss = 0.0;
            for (int64_t b = 0; b < c->B; b++) s += qr_sum_f(c->x + b * CHW + ch * HW, HW);
            const double mu = s / n;
            const float muf = (float)mu;
            for (int64_t b = 0; b < c->B; b++) {        /* two-pass variance */
                const float *xr = c->x + b * CHW + ch * HW;
                float acc[16] = {0};
                int64_t i = 0;
                for (; i + 16 <= HW; i += 16)
                    for (int k = 0; k < 16; k++) {
                        const float d = xr[i + k] - muf;
                        acc[k] += d * d;
                    }
                for (int k = 0; i < HW; i++, k++) {
                    const float d = xr[i] - muf;
                    acc[k] += d * d;
                }
                double t = 0.0;
                for (int k = 0; k < 16; k++) t += acc[k];
                ss += t;
            }
            const double var = ss / n;
            m = muf;
            r = (float)(1.0 / sqrt(var + (double)c->eps));
            if (c->rm) c->rm[ch] = (1.0f - c->momentum) * c->rm[ch] + c->momentum * muf;
            if (c->rv)
                c->rv[ch] = (1.0f - c->momentum) * c->rv[ch] +
                            c->momentum * (float)(n > 1.0 ? var * n / (n - 1.0) : var);
        } else {
            m = c->rm[ch];
            r = (float)(1.0 / sqrt((double)c->rv[ch] + (double)c->eps));
        }
        c->mean[ch] = m;
        c->rstd[ch] = r;
        const float a = r * (c->gamma ? c->gamma[ch] : 1.0f);
        const float sft = (c->beta ? c->beta[ch] : 0.0f) - m * a;
        for (int64_t b = 0; b < c->B; b++) {
            const float *xr = c->x + b * CHW + ch * HW;
            float *yr = c->y + b * CHW + ch * HW;
            for (int64_t i = 0; i < HW; i++) yr[i] = xr[i] * a + sft;
        }
    }
}

int qr_batchnorm2d_f32(const float *x, const float *gamma, const float *beta, float *y,
                       float *mean, float *rstd, float *running_mean, float *running_var,
                       int64_t B, int64_t C, int64_t HW, float eps, float momentum, int train) {
    if (B < 0 || C < 0 || HW < 1 || !(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
        return QR_EARG;
    if (C == 0) return QR_OK;
    if (!mean || !rstd || (!train && (!running_mean || !running_var))) return QR_EARG;
    if (B == 0) return train ? QR_EARG : QR_OK;
    if (!x || !y || (!running_mean) != (!running_var)) return QR_EARG;
    bn_ctx c = {.x = x, .gamma = gamma, .beta = beta, .y = y, .mean = mean, .rstd = rstd,
                .rm = running_mean, .rv = running_var, .B = B, .C = C, .HW = HW, .eps = eps,
                .momentum = momentum, .train = train};
    qr_par_items(bn_fwd_channels, &c, C, B * C * HW * (train ? 3 : 1));
    return QR_OK;
}

static void bn_bwd_channels(void *p, int64_t lo, int64_t hi) {
    const bn_ctx *c = p;
    const int64_t HW = c->HW, CHW = c->C * HW;
    const double n = (double)(c->B * HW);
    for (int64_t ch = lo; ch < hi; ch++) {
        const float m = c->cmean[ch], r = c->crstd[ch];
        double sdy = 0.0, sdx = 0.0;     /* sum dy, sum dy * (x - mean) */
        for (int64_t b = 0; b < c->B; b++) {
            const float *xr = c->x + b * CHW + ch * HW, *dyr = c->dy + b * CHW + ch * HW;
            float a1[16] = {0}, a2[16] = {0};
            int64_t i = 0;
            for (; i + 16 <= HW; i += 16)
                for (int k = 0; k < 16; k++) {
                    a1[k] += dyr[i + k];
                    a2[k] += dyr[i + k] * (xr[i + k] - m);
                }
            for (int k = 0; i < HW; i++, k++) {
                a1[k] += dyr[i];
                a2[k] += dyr[i] * (xr[i] - m);
            }
            double t1 = 0.0, t2 = 0.0;
            for (int k = 0; k < 16; k++) { t1 += a1[k]; t2 += a2[k]; }
            sdy += t1;
            sdx += t2;
        }
        const double sxh = sdx * r;           /* sum dy * xhat */
        if (c->dgamma) c->dgamma[ch] += (float)sxh;
        if (c->dbeta) c->dbeta[ch] += (float)sdy;
        if (!c->dx) continue;
        const float g = c->gamma ? c->gamma[ch] : 1.0f;
        /* dx = g r (dy - sdy/n - (x - m) r^2 sdx/n) = k1 dy + k2 (x - m) + k3 */
        const float k1 = g * r;
        const float k2 = (float)(-(double)g * r * r * r * sdx / n);
        const float k3 = (float)(-(double)g * r * sdy / n);
        for (int64_t b = 0; b < c->B; b++) {
            const float *xr = c->x + b * CHW + ch * HW, *dyr = c->dy + b * CHW + ch * HW;
            float *dxr = c->dx + b * CHW + ch * HW;
            for (int64_t i = 0; i < HW; i++) dxr[i] = k1 * dyr[i] + k2 * (xr[i] - m) + k3;
        }
    }
}

int qr_batchnorm2d_bwd_f32(const float *x, const float *gamma, const float *mean,
                           const float *rstd, const float *dy, float *dx, float *dgamma,
                           float *dbeta, int64_t B, int64_t C, int64_t HW) {
    if (B < 0 || C < 0 || HW < 1) return QR_EARG;
    if (B * C == 0) return QR_OK;
    if (!x || !mean || !rstd || !dy) return QR_EARG;
    bn_ctx c = {.x = x, .gamma = gamma, .cmean = mean, .crstd = rstd, .dy = dy, .dx = dx,
                .dgamma = dgamma, .dbeta = dbeta, .B = B, .C = C, .HW = HW};
    qr_par_items(bn_bwd_channels, &c, C, B * C * HW * 2);
    return QR_OK;
}
