/* loss.c - cross-entropy (label smoothing), MSE, accuracy count and dropout masks.
 * Loss values are accumulated in double per row (or per fixed block) and the partial sums are
 * added in order, so the loss does not depend on the thread count. */
#include <math.h>

#include "qr_vec.h"

/* ------------------------------------------------------------------ cross-entropy */
/* rows in vec_impl.h (portable / AVX2 / AVX-512) */
double qr_cross_entropy_f32(const float *logits, const int32_t *targets, float *dlogits,
                            int64_t N, int64_t C, double eps) {
    if (N <= 0 || C <= 0 || !logits || !targets || !(eps >= 0.0 && eps <= 1.0))
        return (double)QR_EARG;
    for (int64_t r = 0; r < N; r++)
        if (targets[r] < 0 || targets[r] >= C) return (double)QR_ETARGET;
    double *row = qr_scratch(2, (size_t)N * 3 * sizeof(double));
    if (!row) return (double)QR_ENOMEM;
    ce_ctx c = {logits, targets, dlogits, row, C, (float)(1.0 / (double)N),
                (float)(eps / (double)C), (float)(1.0 - eps), eps != 0.0};
    qr_par_items(qr_simd_pick3(ce_rows), &c, N, N * C);
    double lse = 0.0, picked = 0.0, sh = 0.0;
    for (int64_t r = 0; r < N; r++) {
        lse += row[3 * r];
        picked += row[3 * r + 1];
        sh += row[3 * r + 2];
    }
    double loss = (1.0 - eps) * (lse - picked);
    if (eps != 0.0) loss += eps * ((double)C * lse - sh) / (double)C;
    return loss / (double)N;
}

/* ------------------------------------------------------------------ mse */
#define MSE_BLOCK 4096
typedef struct { const float *p, *t; float *d; double *part; int64_t n; float scale; } mse_ctx;

static void mse_blocks(void *p, int64_t lo, int64_t hi) {
    const mse_ctx *c = p;
    for (int64_t b = lo; b < hi; b++) {
        int64_t i0 = b * MSE_BLOCK, m = c->n - i0 < MSE_BLOCK ? c->n - i0 : MSE_BLOCK;
        const float *pr = c->p + i0, *tg = c->t + i0;
        float acc[16] = {0};
        int64_t i = 0;
        for (; i + 16 <= m; i += 16)
            for (int k = 0; k < 16; k++) { float d = pr[i + k] - tg[i + k]; acc[k] += d * d; }
        for (int k = 0; i < m; i++, k++) { float d = pr[i] - tg[i]; acc[k] += d * d; }
        double s = 0.0;
        for (int k = 0; k < 16; k++) s += acc[k];
        c->part[b] = s;
        if (c->d) {
            float *d = c->d + i0;
            for (i = 0; i < m; i++) d[i] = (pr[i] - tg[i]) * c->scale;
        }
    }
}

double qr_mse_f32(const float *pred, const float *target, float *dpred, int64_t n) {
    if (n <= 0 || !pred || !target) return (double)QR_EARG;
    int64_t nb = (n + MSE_BLOCK - 1) / MSE_BLOCK;
    double local[64];
    double *part = nb <= 64 ? local : qr_scratch(2, (size_t)nb * sizeof(double));
    if (!part) return (double)QR_ENOMEM;
    mse_ctx c = {pred, target, dpred, part, n, (float)(2.0 / (double)n)};
    qr_par_items(mse_blocks, &c, nb, n);
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    return s / (double)n;
}

/* ------------------------------------------------------------------ count_correct */
int64_t qr_count_correct_f32(const float *logits, const int32_t *targets, int64_t N, int64_t C) {
    if (N < 0 || C < 0 || (N > 0 && (C == 0 || !logits || !targets))) return QR_EARG;
    int64_t hits = 0;
    for (int64_t r = 0; r < N; r++) {
        const float *x = logits + r * C;
        int64_t best = 0;
        float m = x[0];
        if (m == m)
            for (int64_t j = 1; j < C; j++) {
                float v = x[j];
                if (v != v) { best = j; break; }   /* numpy.argmax: the first NaN wins */
                if (v > m) { m = v; best = j; }
            }
        hits += best == targets[r];
    }
    return hits;
}

/* ------------------------------------------------------------------ dropout_mask */
typedef struct { float *m; uint32_t thr, seed; float scale; } dm_ctx;

static void dropout_range(void *p, int64_t lo, int64_t hi) {
    const dm_ctx *c = p;
    for (int64_t i = lo; i < hi; i++) {
        uint32_t h = (uint32_t)i * 0x9E3779B1u + c->seed;   /* lowbias32 of the counter */
        h ^= h >> 16;
        h *= 0x7FEB352Du;
        h ^= h >> 15;
        h *= 0x846CA68Bu;
        h ^= h >> 16;
        c->m[i] = (h >> 8) >= c->thr ? c->scale : 0.0f;
    }
}

int qr_dropout_mask_f32(float *mask, int64_t n, uint32_t threshold, float scale, uint32_t seed) {
    if (n < 0 || (n > 0 && !mask)) return QR_EARG;
    dm_ctx c = {mask, threshold, seed, scale};
    qr_par_range(dropout_range, &c, n, QR_PAR_GRAIN);
    return QR_OK;
}
