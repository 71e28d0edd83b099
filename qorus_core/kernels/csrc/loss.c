/* loss.c - cross-entropy (label smoothing, ignore_index), MSE, L1, Huber, BCE with logits,
 * KL divergence, accuracy count and dropout masks.
 * Loss values are accumulated in double per row (or per fixed block) and the partial sums are
 * added in order, so the loss does not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "qr_vec.h"

/* ------------------------------------------------------------------ cross-entropy */
/* rows in vec_impl.h (portable / AVX2 / AVX-512) */
double qr_cross_entropy_f32(const float *logits, const int32_t *targets, float *dlogits,
                            int64_t N, int64_t C, double eps, int64_t ignore_index) {
    if (N <= 0 || C <= 0 || !logits || !targets || !(eps >= 0.0 && eps <= 1.0))
        return (double)QR_EARG;
    int64_t kept = 0;
    for (int64_t r = 0; r < N; r++) {
        if (targets[r] == ignore_index) continue;
        if (targets[r] < 0 || targets[r] >= C) return (double)QR_ETARGET;
        kept++;
    }
    if (kept == 0) {            /* every row ignored: 0 and a zero gradient (PyTorch: NaN) */
        if (dlogits) memset(dlogits, 0, (size_t)(N * C) * sizeof(float));
        return 0.0;
    }
    /* per-row terms, then (rows ignored) the targets with those rows' set to class 0 */
    size_t terms = (size_t)N * 3 * sizeof(double);
    double *row = qr_scratch(2, terms + (kept < N ? (size_t)N * sizeof(int32_t) : 0));
    if (!row) return (double)QR_ENOMEM;
    const int32_t *t = targets;
    if (kept < N) {
        int32_t *tt = (int32_t *)((char *)row + terms);
        for (int64_t r = 0; r < N; r++) tt[r] = targets[r] == ignore_index ? 0 : targets[r];
        t = tt;
    }
    ce_ctx c = {logits, t, dlogits, row, C, (float)(1.0 / (double)kept),
                (float)(eps / (double)C), (float)(1.0 - eps), eps != 0.0};
    qr_par_items(qr_simd_pick3(ce_rows), &c, N, N * C);
    double lse = 0.0, picked = 0.0, sh = 0.0;
    for (int64_t r = 0; r < N; r++) {
        if (kept < N && targets[r] == ignore_index) {   /* out of the loss, zero gradient */
            if (dlogits) memset(dlogits + r * C, 0, (size_t)C * sizeof(float));
            continue;
        }
        lse += row[3 * r];
        picked += row[3 * r + 1];
        sh += row[3 * r + 2];
    }
    double loss = (1.0 - eps) * (lse - picked);
    if (eps != 0.0) loss += eps * ((double)C * lse - sh) / (double)C;
    return loss / (double)kept;
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

/* ------------------------------------------------------------------ l1, huber, bce, kl_div */
/* Elementwise losses over fixed blocks of LOSS_BLOCK elements: each block's sum in double, the
 * block sums added in order (independent of the thread count). Terms are computed in double
 * (the NumPy twin, decl/loss.py, does the same in float64). */
#define LOSS_BLOCK 4096
enum { LOSS_L1, LOSS_HUBER, LOSS_BCE, LOSS_KL, LOSS_KL_LOG };
typedef struct {
    int kind;
    const float *x, *t, *pw;   /* input, target, pos_weight (BCE, per column, or NULL) */
    float *d;                  /* gradient or NULL */
    double *part;
    int64_t n, C;
    double scale, delta;       /* 1 / divisor; Huber's delta */
    float fscale, fdelta;
} el_ctx;

static void loss_blocks(void *p, int64_t lo, int64_t hi) {
    const el_ctx *c = p;
    for (int64_t b = lo; b < hi; b++) {
        const int64_t i0 = b * LOSS_BLOCK, i1 = c->n - i0 < LOSS_BLOCK ? c->n : i0 + LOSS_BLOCK;
        const float *x = c->x, *t = c->t;
        float *d = c->d;
        double s = 0.0;
        switch (c->kind) {
        case LOSS_L1:        /* |y - t|; sign(y - t) / n, sign(0) = 0, NaN stays NaN */
            for (int64_t i = i0; i < i1; i++) {
                const float e = x[i] - t[i];
                s += (double)fabsf(e);
                if (d) d[i] = e > 0.0f ? c->fscale : e < 0.0f ? -c->fscale : e * c->fscale;
            }
            break;
        case LOSS_HUBER:     /* 0.5 z^2 if z < delta else delta (z - delta / 2); clip(e) / n */
            for (int64_t i = i0; i < i1; i++) {
                const float e = x[i] - t[i];
                const double z = fabs((double)e);
                s += z < c->delta ? 0.5 * z * z : c->delta * (z - 0.5 * c->delta);
                if (d) {
                    const float g = e < -c->fdelta ? -c->fdelta : e > c->fdelta ? c->fdelta : e;
                    d[i] = g * c->fscale;
                }
            }
            break;
        case LOSS_BCE: {     /* (1 - t) x + w (log1p(exp(-|x|)) + max(-x, 0)), w = 1 + (pw - 1) t */
            int64_t j = i0 % c->C;
            for (int64_t i = i0; i < i1; i++) {
                const double xv = x[i], tv = t[i];
                const double e = exp(-fabs(xv));
                const double sp = log1p(e) + (xv < 0.0 ? -xv : 0.0);     /* softplus(-x) */
                const double w = c->pw ? 1.0 + ((double)c->pw[j] - 1.0) * tv : 1.0;
                s += (1.0 - tv) * xv + w * sp;
                if (d) {     /* (1 - t) - w sigmoid(-x), over n */
                    const double sg = xv >= 0.0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
                    d[i] = (float)(((1.0 - tv) - w * sg) * c->scale);
                }
                if (++j == c->C) j = 0;
            }
            break;
        }
        case LOSS_KL:        /* xlogy(t, t) - t x (0 log 0 = 0); -t / batch */
            for (int64_t i = i0; i < i1; i++) {
                const double xv = x[i], tv = t[i];
                s += (tv == 0.0 ? 0.0 : tv * log(tv)) - tv * xv;
                if (d) d[i] = t[i] * c->fscale;                      /* fscale = -1 / batch */
            }
            break;
        case LOSS_KL_LOG:    /* exp(t) (t - x); -exp(t) / batch */
            for (int64_t i = i0; i < i1; i++) {
                const double xv = x[i], tv = t[i];
                const double et = exp(tv);
                s += et * (tv - xv);
                if (d) d[i] = (float)(et * c->scale);                /* scale = -1 / batch */
            }
            break;
        }
        c->part[b] = s;
    }
}

/* the sum of the blocks' sums; 0 or QR_ENOMEM */
static int loss_run(el_ctx *c, int64_t work_per_elem, double *sum) {
    const int64_t nb = (c->n + LOSS_BLOCK - 1) / LOSS_BLOCK;
    double local[64];
    c->part = nb <= 64 ? local : qr_scratch(2, (size_t)nb * sizeof(double));
    if (!c->part) return QR_ENOMEM;
    qr_par_items(loss_blocks, c, nb, c->n * work_per_elem);
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += c->part[b];
    *sum = s;
    return QR_OK;
}

double qr_l1_f32(const float *y, const float *target, float *dy, int64_t n) {
    if (n <= 0 || !y || !target) return (double)QR_EARG;
    el_ctx c = {LOSS_L1, y, target, NULL, dy, NULL, n, 1, 1.0 / (double)n, 0.0,
                (float)(1.0 / (double)n), 0.0f};
    double s;
    int rc = loss_run(&c, 1, &s);
    return rc ? (double)rc : s / (double)n;
}

double qr_huber_f32(const float *y, const float *target, float *dy, int64_t n, double delta) {
    if (n <= 0 || !y || !target || !(delta > 0.0)) return (double)QR_EARG;
    el_ctx c = {LOSS_HUBER, y, target, NULL, dy, NULL, n, 1, 1.0 / (double)n, delta,
                (float)(1.0 / (double)n), (float)delta};
    double s;
    int rc = loss_run(&c, 1, &s);
    return rc ? (double)rc : s / (double)n;
}

int qr_bce_with_logits_f32(const float *logits, const float *targets, float *dlogits,
                           const float *pos_weight, int64_t n, int64_t C, double *loss) {
    if (n <= 0 || C <= 0 || n % C || !logits || !targets || !loss) return QR_EARG;
    el_ctx c = {LOSS_BCE, logits, targets, pos_weight, dlogits, NULL, n, C, 1.0 / (double)n,
                0.0, 0.0f, 0.0f};
    double s;
    int rc = loss_run(&c, 8, &s);
    if (!rc) *loss = s / (double)n;
    return rc;
}

int qr_kl_div_f32(const float *input, const float *target, float *dy, int64_t n, int64_t batch,
                  int log_target, double *loss) {
    if (n <= 0 || batch <= 0 || !input || !target || !loss) return QR_EARG;
    el_ctx c = {log_target ? LOSS_KL_LOG : LOSS_KL, input, target, NULL, dy, NULL, n, 1,
                -1.0 / (double)batch, 0.0, (float)(-1.0 / (double)batch), 0.0f};
    double s;
    int rc = loss_run(&c, 8, &s);
    if (!rc) *loss = s / (double)batch;
    return rc;
}

/* ------------------------------------------------------------------ count_correct */
int64_t qr_count_correct_f32(const float *logits, const int32_t *targets, int64_t N, int64_t C,
                             int64_t ignore_index) {
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
        hits += best == targets[r] && targets[r] != ignore_index;
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
