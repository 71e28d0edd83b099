/* groupnorm.c - GroupNorm over x [B, C, HW] (PyTorch's nn.GroupNorm), with its backward.
 *
 * The C channels form G groups of Cg = C / G; the block of image b, group g is the Cg * HW
 * contiguous values x[b, g Cg .. (g+1) Cg, :]. The forward runs the B * G blocks in parallel:
 * mean and a two-pass (biased) variance in double, saved as mean, rstd [B, G]; y = x a + s
 * per channel, a = rstd gamma[c], s = beta[c] - mean a. The backward first sums dy and
 * dy (x - mean) per (b, c) over HW (blocks in parallel, into a [B, C, 2] buffer), writes dx
 * from them, then sums dgamma, dbeta per channel over b in order (channels in parallel): no
 * result depends on the thread count.
 */
#include <math.h>
#include <stdlib.h>

#include "qr_math.h"
#include "qorus.h"

typedef struct {
    const float *x, *gamma, *beta, *dy, *cmean, *crstd;
    float *y, *mean, *rstd, *dx, *dgamma, *dbeta;
    double *part;                     /* [B, C, 2]: sum dy, sum dy (x - mean) over HW */
    int64_t B, C, HW, G, Cg;
    float eps;
} gn_ctx;

/* sum of (x - mu)^2 over n values: 16 float lanes, added in double */
static double sq_dev(const float *x, int64_t n, float mu) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) {
            const float d = x[i + k] - mu;
            acc[k] += d * d;
        }
    for (int k = 0; i < n; i++, k++) {
        const float d = x[i] - mu;
        acc[k] += d * d;
    }
    double t = 0.0;
    for (int k = 0; k < 16; k++) t += acc[k];
    return t;
}

static void gn_fwd_blocks(void *p, int64_t lo, int64_t hi) {
    const gn_ctx *c = p;
    const int64_t HW = c->HW, n = c->Cg * HW;
    for (int64_t blk = lo; blk < hi; blk++) {          /* blk = b * G + g */
        const int64_t c0 = (blk % c->G) * c->Cg;
        const float *x = c->x + blk * n;
        float *y = c->y + blk * n;
        double s = 0.0;
        for (int64_t ch = 0; ch < c->Cg; ch++) s += qr_sum_f(x + ch * HW, HW);
        const float mu = (float)(s / (double)n);
        double ss = 0.0;
        for (int64_t ch = 0; ch < c->Cg; ch++) ss += sq_dev(x + ch * HW, HW, mu);
        const float r = (float)(1.0 / sqrt(ss / (double)n + (double)c->eps));
        c->mean[blk] = mu;
        c->rstd[blk] = r;
        for (int64_t ch = 0; ch < c->Cg; ch++) {
            const float a = r * (c->gamma ? c->gamma[c0 + ch] : 1.0f);
            const float sft = (c->beta ? c->beta[c0 + ch] : 0.0f) - mu * a;
            const float *xr = x + ch * HW;
            float *yr = y + ch * HW;
            for (int64_t i = 0; i < HW; i++) yr[i] = xr[i] * a + sft;
        }
    }
}

int qr_groupnorm_f32(const float *x, const float *gamma, const float *beta, float *y,
                     float *mean, float *rstd, int64_t B, int64_t C, int64_t HW, int64_t G,
                     float eps) {
    if (B < 0 || C < 1 || HW < 1 || G < 1 || C % G || !(eps > 0.0f)) return QR_EARG;
    if (B == 0) return QR_OK;
    if (!x || !y || !mean || !rstd) return QR_EARG;
    gn_ctx c = {.x = x, .gamma = gamma, .beta = beta, .y = y, .mean = mean, .rstd = rstd,
                .B = B, .C = C, .HW = HW, .G = G, .Cg = C / G, .eps = eps};
    qr_par_items(gn_fwd_blocks, &c, B * G, B * C * HW * 3);
    return QR_OK;
}

/* per (b, c) of each block: part = (sum dy, sum dy (x - mean)); then dx of the block */
static void gn_bwd_blocks(void *p, int64_t lo, int64_t hi) {
    const gn_ctx *c = p;
    const int64_t HW = c->HW, Cg = c->Cg, n = Cg * HW;
    for (int64_t blk = lo; blk < hi; blk++) {
        const int64_t c0 = (blk % c->G) * Cg;
        const float *x = c->x + blk * n, *dy = c->dy + blk * n;
        const float mu = c->cmean[blk], r = c->crstd[blk];
        double *part = c->part + blk * Cg * 2;
        double sg = 0.0, sgx = 0.0;                    /* sum g dy, sum g dy (x - mean) */
        for (int64_t ch = 0; ch < Cg; ch++) {
            const float *xr = x + ch * HW, *dyr = dy + ch * HW;
            float a1[16] = {0}, a2[16] = {0};
            int64_t i = 0;
            for (; i + 16 <= HW; i += 16)
                for (int k = 0; k < 16; k++) {
                    a1[k] += dyr[i + k];
                    a2[k] += dyr[i + k] * (xr[i + k] - mu);
                }
            for (int k = 0; i < HW; i++, k++) {
                a1[k] += dyr[i];
                a2[k] += dyr[i] * (xr[i] - mu);
            }
            double t1 = 0.0, t2 = 0.0;
            for (int k = 0; k < 16; k++) { t1 += a1[k]; t2 += a2[k]; }
            part[2 * ch] = t1;
            part[2 * ch + 1] = t2;
            const double g = c->gamma ? (double)c->gamma[c0 + ch] : 1.0;
            sg += g * t1;
            sgx += g * t2;
        }
        if (!c->dx) continue;
        /* dx = r (g dy - sg / n - (x - mu) r^2 sgx / n) = k1 dy + k2 (x - mu) + k3 */
        const float k2 = (float)(-(double)r * r * r * sgx / (double)n);
        const float k3 = (float)(-(double)r * sg / (double)n);
        float *dx = c->dx + blk * n;
        for (int64_t ch = 0; ch < Cg; ch++) {
            const float k1 = r * (c->gamma ? c->gamma[c0 + ch] : 1.0f);
            const float *xr = x + ch * HW, *dyr = dy + ch * HW;
            float *dxr = dx + ch * HW;
            for (int64_t i = 0; i < HW; i++) dxr[i] = k1 * dyr[i] + k2 * (xr[i] - mu) + k3;
        }
    }
}

/* dgamma[c] += sum over b of rstd (sum dy (x - mean)), dbeta[c] += sum over b of sum dy */
static void gn_bwd_channels(void *p, int64_t lo, int64_t hi) {
    const gn_ctx *c = p;
    for (int64_t ch = lo; ch < hi; ch++) {
        const int64_t g = ch / c->Cg;
        double sw = 0.0, sb = 0.0;
        for (int64_t b = 0; b < c->B; b++) {
            const double *part = c->part + (b * c->C + ch) * 2;
            sw += (double)c->crstd[b * c->G + g] * part[1];
            sb += part[0];
        }
        if (c->dgamma) c->dgamma[ch] += (float)sw;
        if (c->dbeta) c->dbeta[ch] += (float)sb;
    }
}

int qr_groupnorm_bwd_f32(const float *x, const float *gamma, const float *mean,
                         const float *rstd, const float *dy, float *dx, float *dgamma,
                         float *dbeta, int64_t B, int64_t C, int64_t HW, int64_t G) {
    if (B < 0 || C < 1 || HW < 1 || G < 1 || C % G) return QR_EARG;
    if (B == 0) return QR_OK;
    if (!x || !mean || !rstd || !dy) return QR_EARG;
    if (!dx && !dgamma && !dbeta) return QR_OK;
    gn_ctx c = {.x = x, .gamma = gamma, .cmean = mean, .crstd = rstd, .dy = dy, .dx = dx,
                .dgamma = dgamma, .dbeta = dbeta, .B = B, .C = C, .HW = HW, .G = G,
                .Cg = C / G};
    c.part = malloc((size_t)(B * C * 2) * sizeof(double));
    if (!c.part) return QR_ENOMEM;
    qr_par_items(gn_bwd_blocks, &c, B * G, B * C * HW * (dx ? 4 : 2));
    if (dgamma || dbeta) qr_par_items(gn_bwd_channels, &c, C, B * C * 2);
    free(c.part);
    return QR_OK;
}
