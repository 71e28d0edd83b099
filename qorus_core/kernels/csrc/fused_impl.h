/* fused_impl.h - private: bodies of the fused kernels declared in fused_internal.h. Included
 * once per tier: by fused.c (QR_FUSED_SFX portable), fused_avx2.c (avx2) and fused_avx512.c
 * (avx512). No include guard. Loops are written so the compiler vectorizes them; every
 * reduction runs in a fixed order, so a result depends on neither the thread count nor the
 * build. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fused_internal.h"

#define QF(name) QR_SFX_NAME(name, QR_FUSED_SFX)

/* Row maximum that vectorizes (16 lanes, then in order). A NaN is not propagated here: the
 * callers then compute exp(x - max), which is NaN for a NaN x, and the row sum carries it to
 * every output of the row, as numpy's max would. */
static inline float QF(rmax)(const float *x, int64_t n) {
    float m[16];
    for (int k = 0; k < 16; k++) m[k] = -INFINITY;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) m[k] = x[i + k] > m[k] ? x[i + k] : m[k];
    for (int k = 0; i < n; i++, k++) m[k] = x[i] > m[k] ? x[i] : m[k];
    float r = m[0];
    for (int k = 1; k < 16; k++) r = m[k] > r ? m[k] : r;
    return r;
}

/* ------------------------------------------------------------------ rope */
void QF(rope_rows)(void *p, int64_t lo, int64_t hi) {
    const rope_ctx *c = p;
    const int64_t H = c->H, D = c->D, half = D / 2;
    for (int64_t r = lo; r < hi; r++) {
        const float *co = c->cs + (r % c->T) * D, *si = co + half;
        for (int64_t h = 0; h < H; h++) {
            const float *x = c->x + (r * H + h) * D;
            float *y = c->y + (r * H + h) * D;
            if (c->half_split) {
                for (int64_t i = 0; i < half; i++) {
                    float x0 = x[i], x1 = x[i + half];
                    float a = x0 * co[i], b = x1 * si[i], e = x0 * si[i], f = x1 * co[i];
                    y[i] = a - b;
                    y[i + half] = e + f;
                }
            } else {
                for (int64_t i = 0; i < half; i++) {
                    float x0 = x[2 * i], x1 = x[2 * i + 1];
                    float a = x0 * co[i], b = x1 * si[i], e = x0 * si[i], f = x1 * co[i];
                    y[2 * i] = a - b;
                    y[2 * i + 1] = e + f;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ swiglu */
/* y = silu(g) * u, silu(g) = g / (exp(-g) + 1) (decl/fused.py's order) */
void QF(swiglu_range)(void *p, int64_t lo, int64_t hi) {
    const fz_ctx *c = p;
    const float *g = c->a, *u = c->b;
    float *y = c->o;
    for (int64_t i0 = lo; i0 < hi; i0 += QR_EXP_TILE) {
        const int64_t n = hi - i0 < QR_EXP_TILE ? hi - i0 : QR_EXP_TILE;
        float e[QR_EXP_TILE];
        qr_exp_neg(g + i0, e, n);
        for (int64_t j = 0, i = i0; j < n; j++, i++) {
            float d = e[j] + 1.0f;
            float s = g[i] / d;
            y[i] = s * u[i];
        }
    }
}

/* dgate = (dy * u) * sg * (1 + g (1 - sg)), dup = dy * silu(g); sg = 1 / (exp(-g) + 1) */
void QF(swiglu_bwd_range)(void *p, int64_t lo, int64_t hi) {
    const fz_ctx *c = p;
    const float *g = c->a, *u = c->b, *dy = c->dy;
    float *dg = c->o, *du = c->o2;
    for (int64_t i0 = lo; i0 < hi; i0 += QR_EXP_TILE) {
        const int64_t n = hi - i0 < QR_EXP_TILE ? hi - i0 : QR_EXP_TILE;
        float e[QR_EXP_TILE];
        qr_exp_neg(g + i0, e, n);
        for (int64_t j = 0, i = i0; j < n; j++, i++) {
            float gi = g[i], ui = u[i], di = dy[i];
            float d = e[j] + 1.0f;
            float sg = 1.0f / d, s = gi / d;
            float t = (1.0f - sg) * gi + 1.0f;
            t = t * sg;
            float a = di * ui;
            dg[i] = a * t;
            du[i] = di * s;
        }
    }
}

/* ------------------------------------------------------------------ broadcast add / mul */
void QF(add_bcast_rows)(void *p, int64_t lo, int64_t hi) {
    const fz_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->a + r * n;
        float *y = c->o + r * n;
        for (int64_t j = 0; j < n; j++) y[j] = x[j] + c->b[j];
    }
}

/* y = x * w; with dy set (backward): dx = dy * w (a = dy) */
void QF(mul_bcast_rows)(void *p, int64_t lo, int64_t hi) {
    const fz_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->a + r * n;
        float *y = c->o + r * n;
        for (int64_t j = 0; j < n; j++) y[j] = x[j] * c->b[j];
    }
}

/* One pass over dy per block of rows: the block's column sums of dy (add) or dy * x (mul)
 * into part[block], and dx = dy (add) or dy * w (mul). dx may alias dy. */
void QF(bcast_bwd_blocks)(void *p, int64_t lo, int64_t hi) {
    const bb_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t blk = lo; blk < hi; blk++) {
        const int64_t r0 = blk * QR_BB_ROWS;
        const int64_t r1 = r0 + QR_BB_ROWS < c->rows ? r0 + QR_BB_ROWS : c->rows;
        float *acc = c->part + blk * n;
        for (int64_t j = 0; j < n; j++) acc[j] = 0.0f;
        for (int64_t r = r0; r < r1; r++) {
            const float *dy = c->dy + r * n;
            float *dx = c->dx ? c->dx + r * n : 0;
            if (c->x) {
                const float *x = c->x + r * n;
                if (dx)
                    for (int64_t j = 0; j < n; j++) {
                        const float t = dy[j];
                        acc[j] += t * x[j];
                        dx[j] = t * c->w[j];
                    }
                else
                    for (int64_t j = 0; j < n; j++) acc[j] += dy[j] * x[j];
            } else {
                if (dx)
                    for (int64_t j = 0; j < n; j++) {
                        const float t = dy[j];
                        acc[j] += t;
                        dx[j] = t;
                    }
                else
                    for (int64_t j = 0; j < n; j++) acc[j] += dy[j];
            }
        }
    }
}

/* ------------------------------------------------------------------ masked softmax */
static inline int64_t QF(valid_len)(const smm_ctx *c, int64_t r) {
    if (!c->causal) return c->Tk;
    int64_t L = r % c->Tq + (c->Tk - c->Tq) + 1;
    return L < c->Tk ? L : c->Tk;
}

void QF(smm_rows)(void *p, int64_t lo, int64_t hi) {
    const smm_ctx *c = p;
    const int64_t n = c->Tk;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n;
        float *y = c->y + r * n;
        const int64_t L = QF(valid_len)(c, r);
        for (int64_t j = 0; j < L; j++) y[j] = x[j] * c->scale;
        float mx = QF(rmax)(y, L);
        qr_exp_shift(y, mx, y, L);
        float s = qr_sum_f(y, L);
        for (int64_t j = 0; j < L; j++) y[j] = y[j] / s;
        for (int64_t j = L; j < n; j++) y[j] = 0.0f;
    }
}

/* dx = ((dy - sum(dy * y)) * y) * scale; masked entries (y = 0) get 0 */
void QF(smm_bwd_rows)(void *p, int64_t lo, int64_t hi) {
    const smm_ctx *c = p;
    const int64_t n = c->Tk;
    for (int64_t r = lo; r < hi; r++) {
        const float *y = c->x + r * n, *dy = c->dy + r * n;
        float *dx = c->dx + r * n;
        const int64_t L = QF(valid_len)(c, r);
        float s = qr_dot_f(dy, y, L);
        for (int64_t j = 0; j < L; j++) {
            float t = (dy[j] - s) * y[j];
            dx[j] = t * c->scale;
        }
        for (int64_t j = L; j < n; j++) dx[j] = 0.0f;
    }
}

/* ------------------------------------------------------------------ attention */
static inline int64_t QF(att_len)(const att_ctx *c, int64_t i) {
    if (!c->causal) return c->Tk;
    int64_t L = i + (c->Tk - c->Tq) + 1;
    return L < c->Tk ? L : c->Tk;
}

static inline int QF(any_nan)(const float *x, int64_t n) {
    int nan = 0;
    for (int64_t i = 0; i < n; i++) nan |= x[i] != x[i];
    return nan;
}

/* The masks on the first nv scores of query row i, keys [j0, j0 + nv), of (b, h): the bias
 * added, then a key the padding mask leaves out set to -inf (a -inf bias does the same). */
static inline void QF(att_mask_row)(const att_ctx *c, int64_t b, int64_t h, int64_t i,
                                    int64_t j0, float *row, int64_t nv) {
    if (c->bias) {
        const float *br = c->bias + b * c->bsb + h * c->bsh + i * c->Tk + j0;
        for (int64_t j = 0; j < nv; j++) row[j] = row[j] + br[j];
    }
    if (c->kpm) {
        const int32_t *km = c->kpm + b * c->Tk + j0;
        for (int64_t j = 0; j < nv; j++) row[j] = km[j] ? -INFINITY : row[j];
    }
}

/* Attention dropout of probabilities [j0, j0 + nv) of row i of (b, h): each scaled by 1/(1-p)
 * or zeroed by the lowbias32 hash of its counter ((b H + h) Tq + i) Tk + j, the stream of the
 * dropout_mask kernel, so the NumPy twin draws the same mask. */
static inline void QF(att_drop_row)(const att_ctx *c, int64_t b, int64_t h, int64_t i,
                                    int64_t j0, float *row, int64_t nv) {
    const uint32_t base = (uint32_t)((((b * c->H + h) * c->Tq + i) * c->Tk) + j0);
    for (int64_t j = 0; j < nv; j++) {
        uint32_t x = (base + (uint32_t)j) * 0x9E3779B1u + c->drop_seed;
        x ^= x >> 16;
        x *= 0x7FEB352Du;
        x ^= x >> 15;
        x *= 0x846CA68Bu;
        x ^= x >> 16;
        row[j] = (x >> 8) >= c->drop_thr ? row[j] * c->drop_scale : 0.0f;
    }
}

/* rows [T, D] of head hh (of nh) of batch b in src [B, T, nh, D] <-> contiguous dst [T, D] */
static void QF(att_pack)(const float *src, float *dst, int64_t b, int64_t hh, int64_t nh,
                         int64_t T, int64_t D) {
    for (int64_t t = 0; t < T; t++)
        memcpy(dst + t * D, src + ((b * T + t) * nh + hh) * D, (size_t)D * sizeof(float));
}

static void QF(att_unpack)(const float *src, float *dst, int64_t b, int64_t hh, int64_t nh,
                           int64_t T, int64_t D) {
    for (int64_t t = 0; t < T; t++)
        memcpy(dst + ((b * T + t) * nh + hh) * D, src + t * D, (size_t)D * sizeof(float));
}

#define QR_ATT_BQ 64   /* query rows per tile */

#include "att_short.h"   /* the direct path of short sequences (QR_ATT_SHORT keys) */

/* Items: (b, h). FlashAttention tiles: for a tile of QR_ATT_BQ query rows, the key tiles of
 * QR_ATT_BK are visited in order; S = scale Q K^T and O += P V are GEMMs on packed tiles
 * (qr_gemm_f32, serial inside a task); an online softmax keeps the running max m, sum l and
 * unnormalized O per row; lse = m + log(l). Only a QR_ATT_BQ x QR_ATT_BK score tile exists. */
void QF(att_fwd_items)(void *p, int64_t lo, int64_t hi) {
    att_ctx *c = p;
    if (c->Tk <= QR_ATT_SHORT) {
        QF(att_fwd_short_items)(c, lo, hi);
        return;
    }
    const int64_t D = c->D, Tq = c->Tq, Tk = c->Tk, H = c->H, Hkv = c->Hkv, G = H / Hkv;
    const size_t n = (size_t)((Tq + 2 * Tk + QR_ATT_BQ) * D + QR_ATT_BQ * QR_ATT_BK +
                              2 * QR_ATT_BQ);
    float *buf = malloc(n * sizeof(float));   /* not qr_scratch: the GEMM uses those slots */
    if (!buf) { atomic_store(&c->err, 1); return; }
    float *qp = buf, *kp = qp + Tq * D, *vp = kp + Tk * D, *O = vp + Tk * D;
    float *S = O + QR_ATT_BQ * D, *m = S + QR_ATT_BQ * QR_ATT_BK, *l = m + QR_ATT_BQ;
    int64_t last = -1;
    for (int64_t it = lo; it < hi; it++) {
        const int64_t b = it / H, h = it % H, hk = h / G;
        if (b * Hkv + hk != last) {
            QF(att_pack)(c->k, kp, b, hk, Hkv, Tk, D);
            QF(att_pack)(c->v, vp, b, hk, Hkv, Tk, D);
            last = b * Hkv + hk;
        }
        QF(att_pack)(c->q, qp, b, h, H, Tq, D);
        for (int64_t i0 = 0; i0 < Tq; i0 += QR_ATT_BQ) {
            const int64_t mq = Tq - i0 < QR_ATT_BQ ? Tq - i0 : QR_ATT_BQ;
            const int64_t Lmax = QF(att_len)(c, i0 + mq - 1);
            for (int64_t r = 0; r < mq; r++) { m[r] = -INFINITY; l[r] = 0.0f; }
            memset(O, 0, (size_t)(mq * D) * sizeof(float));
            for (int64_t j0 = 0; j0 < Lmax; j0 += QR_ATT_BK) {
                const int64_t nk = Lmax - j0 < QR_ATT_BK ? Lmax - j0 : QR_ATT_BK;
                if (qr_gemm_f32(0, 1, mq, nk, D, c->scale, qp + i0 * D, kp + j0 * D, 0.0f, S)) {
                    atomic_store(&c->err, 1);
                    break;
                }
                for (int64_t r = 0; r < mq; r++) {
                    float *row = S + r * nk;
                    int64_t nv = QF(att_len)(c, i0 + r) - j0;
                    nv = nv < 0 ? 0 : (nv > nk ? nk : nv);
                    for (int64_t j = nv; j < nk; j++) row[j] = 0.0f;
                    if (nv == 0) continue;
                    if (c->bias || c->kpm) QF(att_mask_row)(c, b, h, i0 + r, j0, row, nv);
                    const float bm = QF(rmax)(row, nv);
                    const float mn = bm > m[r] ? bm : m[r];
                    if (mn == -INFINITY && !QF(any_nan)(row, nv)) {   /* all keys so far masked */
                        for (int64_t j = 0; j < nv; j++) row[j] = 0.0f;
                        continue;
                    }
                    qr_exp_shift(row, mn, row, nv);
                    const float ps = qr_sum_f(row, nv);
                    if (c->drop) QF(att_drop_row)(c, b, h, i0 + r, j0, row, nv);
                    if (mn != m[r]) {
                        const float alpha = m[r] == -INFINITY ? 0.0f : qr_expf(m[r] - mn);
                        l[r] = l[r] * alpha;
                        float *o = O + r * D;
                        for (int64_t d = 0; d < D; d++) o[d] = o[d] * alpha;
                    }
                    l[r] = l[r] + ps;
                    m[r] = mn;
                }
                if (qr_gemm_f32(0, 0, mq, D, nk, 1.0f, S, vp + j0 * D, 1.0f, O)) {
                    atomic_store(&c->err, 1);
                    break;
                }
            }
            for (int64_t r = 0; r < mq; r++) {
                const int64_t i = i0 + r;
                float *out = c->o + ((b * Tq + i) * H + h) * D;
                const float *o = O + r * D;
                if (l[r] == 0.0f) {   /* every key masked: 0 (PyTorch's SDPA), lse -inf */
                    for (int64_t d = 0; d < D; d++) out[d] = 0.0f;
                    c->l[(b * H + h) * Tq + i] = -INFINITY;
                    continue;
                }
                for (int64_t d = 0; d < D; d++) out[d] = o[d] / l[r];
                c->l[(b * H + h) * Tq + i] = m[r] + logf(l[r]);
            }
        }
    }
    free(buf);
}

/* Items: (b, kv head). The same tiles, scores recomputed from the saved lse:
 * P = exp(S - lse), dS = P (dO V^T - rowsum(dO * O)) scale; dV += P^T dO, dK += dS^T Q,
 * dQ += dS K as GEMMs on packed tiles. dk/dv of the kv head are summed over its query heads
 * in order, so no two tasks write the same rows and the result is thread-count independent. */
void QF(att_bwd_items)(void *p, int64_t lo, int64_t hi) {
    att_ctx *c = p;
    if (c->Tk <= QR_ATT_SHORT) {
        QF(att_bwd_short_items)(c, lo, hi);
        return;
    }
    const int64_t D = c->D, Tq = c->Tq, Tk = c->Tk, H = c->H, Hkv = c->Hkv, G = H / Hkv;
    const size_t n = (size_t)((3 * Tq + 4 * Tk) * D + 2 * QR_ATT_BQ * QR_ATT_BK + Tq);
    float *buf = malloc(n * sizeof(float));   /* not qr_scratch: the GEMM uses those slots */
    if (!buf) { atomic_store(&c->err, 1); return; }
    float *qp = buf, *gp = qp + Tq * D, *dqp = gp + Tq * D, *kp = dqp + Tq * D;
    float *vp = kp + Tk * D, *dkp = vp + Tk * D, *dvp = dkp + Tk * D;
    float *S = dvp + Tk * D, *dP = S + QR_ATT_BQ * QR_ATT_BK, *Di = dP + QR_ATT_BQ * QR_ATT_BK;
    const float scale = c->scale;
    int rc = 0;
    for (int64_t it = lo; it < hi && !rc; it++) {
        const int64_t b = it / Hkv, hk = it % Hkv;
        QF(att_pack)(c->k, kp, b, hk, Hkv, Tk, D);
        QF(att_pack)(c->v, vp, b, hk, Hkv, Tk, D);
        memset(dkp, 0, (size_t)(2 * Tk * D) * sizeof(float));   /* dkp, dvp */
        for (int64_t h = hk * G; h < (hk + 1) * G && !rc; h++) {
            QF(att_pack)(c->q, qp, b, h, H, Tq, D);
            QF(att_pack)(c->dout, gp, b, h, H, Tq, D);
            memset(dqp, 0, (size_t)(Tq * D) * sizeof(float));
            for (int64_t i = 0; i < Tq; i++)
                Di[i] = qr_dot_f(gp + i * D, c->out + ((b * Tq + i) * H + h) * D, D);
            const float *lse = c->lse + (b * H + h) * Tq;
            for (int64_t i0 = 0; i0 < Tq && !rc; i0 += QR_ATT_BQ) {
                const int64_t mq = Tq - i0 < QR_ATT_BQ ? Tq - i0 : QR_ATT_BQ;
                const int64_t Lmax = QF(att_len)(c, i0 + mq - 1);
                for (int64_t j0 = 0; j0 < Lmax && !rc; j0 += QR_ATT_BK) {
                    const int64_t nk = Lmax - j0 < QR_ATT_BK ? Lmax - j0 : QR_ATT_BK;
                    rc |= qr_gemm_f32(0, 1, mq, nk, D, scale, qp + i0 * D, kp + j0 * D, 0.0f, S);
                    rc |= qr_gemm_f32(0, 1, mq, nk, D, 1.0f, gp + i0 * D, vp + j0 * D, 0.0f, dP);
                    for (int64_t r = 0; r < mq; r++) {
                        float *sr = S + r * nk, *dr = dP + r * nk;
                        int64_t nv = QF(att_len)(c, i0 + r) - j0;
                        nv = nv < 0 ? 0 : (nv > nk ? nk : nv);
                        const float ls = lse[i0 + r], di = Di[i0 + r];
                        if (ls == -INFINITY) nv = 0;   /* a fully masked row: no gradient */
                        if (c->bias || c->kpm) QF(att_mask_row)(c, b, h, i0 + r, j0, sr, nv);
                        if (c->drop) QF(att_drop_row)(c, b, h, i0 + r, j0, dr, nv);
                        for (int64_t j = 0; j < nv; j++) {
                            const float pj = qr_expf(sr[j] - ls);
                            sr[j] = pj;
                            dr[j] = pj * (dr[j] - di) * scale;
                        }
                        if (c->drop) QF(att_drop_row)(c, b, h, i0 + r, j0, sr, nv);
                        for (int64_t j = nv; j < nk; j++) { sr[j] = 0.0f; dr[j] = 0.0f; }
                    }
                    rc |= qr_gemm_f32(1, 0, nk, D, mq, 1.0f, S, gp + i0 * D, 1.0f, dvp + j0 * D);
                    rc |= qr_gemm_f32(1, 0, nk, D, mq, 1.0f, dP, qp + i0 * D, 1.0f, dkp + j0 * D);
                    rc |= qr_gemm_f32(0, 0, mq, D, nk, 1.0f, dP, kp + j0 * D, 1.0f, dqp + i0 * D);
                }
            }
            QF(att_unpack)(dqp, c->dq, b, h, H, Tq, D);
        }
        QF(att_unpack)(dkp, c->dk, b, hk, Hkv, Tk, D);
        QF(att_unpack)(dvp, c->dv, b, hk, Hkv, Tk, D);
    }
    if (rc) atomic_store(&c->err, 1);
    free(buf);
}

/* ------------------------------------------------------------------ decode */
/* Query heads of a kv head go in groups of up to 3 (4 as 2 + 2): a group's FMAs share each
 * K / V load, which (the caller's rows are seldom 32-byte aligned) is what limits the rate. */
static inline int64_t QF(dec_group)(int64_t rest) { return rest == 4 ? 2 : (rest < 3 ? rest : 3); }

#ifdef __AVX2__
#define QR_AI static inline __attribute__((always_inline))

/* lanes [0, r) set (0 <= r <= 8): masked loads / stores of a D tail */
QR_AI __m256i QF(dec_mask)(int64_t r) {
    static const int32_t t[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(t + 8 - r));
}

/* the lane sums of a[0..3] (each ((x0+x1)+(x2+x3)) + ((x4+x5)+(x6+x7))), in order */
QR_AI __m128 QF(hsum4)(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

/* NH heads x NK keys (NH * NK <= 12 accumulators): s[h * ls + i] = scale * (q_h . k_i) for
 * q_h = q + h * D, k_i = k + i * ldk; the D tail through masked loads. NK is 4 or 8. */
QR_AI void QF(dec_s_block)(const float *q, const float *k, int64_t ldk, float *s, int64_t ls,
                           int64_t D, __m256i tail, __m256 sc, const int NH, const int NK) {
    __m256 a[3][8];
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < NK; i++) a[h][i] = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) {
        __m256 qv[3];
        for (int h = 0; h < NH; h++) qv[h] = _mm256_loadu_ps(q + h * D + d);
        for (int i = 0; i < NK; i++) {
            const __m256 kv = _mm256_loadu_ps(k + i * ldk + d);
            for (int h = 0; h < NH; h++) a[h][i] = _mm256_fmadd_ps(qv[h], kv, a[h][i]);
        }
    }
    if (d < D) {
        __m256 qv[3];
        for (int h = 0; h < NH; h++) qv[h] = _mm256_maskload_ps(q + h * D + d, tail);
        for (int i = 0; i < NK; i++) {
            const __m256 kv = _mm256_maskload_ps(k + i * ldk + d, tail);
            for (int h = 0; h < NH; h++) a[h][i] = _mm256_fmadd_ps(qv[h], kv, a[h][i]);
        }
    }
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < NK; i += 4)
            _mm_storeu_ps(s + h * ls + i, _mm_mul_ps(QF(hsum4)(a[h][i], a[h][i + 1], a[h][i + 2],
                                                                a[h][i + 3]),
                                                     _mm256_castps256_ps128(sc)));
}

/* o_h[d0, d0 + 8 DV) += sum_j p_h[j] v_j[d0, ...) for NH heads (2 NH DV <= 12 accumulators:
 * even and odd keys apart, added at the end), keys j in [j0, j1). */
QR_AI void QF(dec_pv_block)(const float *p, int64_t lp, const float *v, int64_t ldv, float *o,
                            int64_t D, int64_t j0, int64_t j1, const int NH, const int DV) {
    __m256 a[2][3][4];
    for (int h = 0; h < NH; h++)
        for (int e = 0; e < DV; e++) {
            a[0][h][e] = _mm256_loadu_ps(o + h * D + 8 * e);
            a[1][h][e] = _mm256_setzero_ps();
        }
    int64_t j = j0;
    for (; j + 2 <= j1; j += 2)
        for (int t = 0; t < 2; t++) {
            __m256 vv[4];
            for (int e = 0; e < DV; e++) vv[e] = _mm256_loadu_ps(v + (j + t) * ldv + 8 * e);
            for (int h = 0; h < NH; h++) {
                const __m256 w = _mm256_broadcast_ss(p + h * lp + j + t);
                for (int e = 0; e < DV; e++) a[t][h][e] = _mm256_fmadd_ps(w, vv[e], a[t][h][e]);
            }
        }
    for (; j < j1; j++)
        for (int h = 0; h < NH; h++) {
            const __m256 w = _mm256_broadcast_ss(p + h * lp + j);
            for (int e = 0; e < DV; e++)
                a[0][h][e] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + j * ldv + 8 * e), a[0][h][e]);
        }
    for (int h = 0; h < NH; h++)
        for (int e = 0; e < DV; e++)
            _mm256_storeu_ps(o + h * D + 8 * e, _mm256_add_ps(a[0][h][e], a[1][h][e]));
}

/* one head, 8 outputs (the last masked) from d: 4 keys at a time */
QR_AI void QF(dec_pv_vec)(const float *pg, const float *v, int64_t ldv, float *og, int64_t n8,
                          int64_t j0, int64_t j1) {
    const __m256i m = QF(dec_mask)(n8);
    __m256 a[4] = {_mm256_maskload_ps(og, m), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4)
        for (int i = 0; i < 4; i++)
            a[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(pg + j + i),
                                   _mm256_maskload_ps(v + (j + i) * ldv, m), a[i]);
    for (; j < j1; j++)
        a[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(pg + j), _mm256_maskload_ps(v + j * ldv, m),
                               a[0]);
    _mm256_maskstore_ps(og, m, _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
}

/* The cache rows of keys [j, j + 8) (those below len), each D floats ld apart, on their way to
 * L1: a decode step finds the KV cache evicted by the weight stream, and its rows are
 * strided (one kv head of each position), which the hardware prefetcher follows poorly. */
QR_AI void QF(dec_prefetch)(const float *x, int64_t ld, int64_t j, int64_t len, int64_t D) {
    const int64_t j1 = j + 8 < len ? j + 8 : len;
    for (; j < j1; j++)
        for (int64_t d = 0; d < D; d += 16)
            _mm_prefetch((const char *)(x + j * ld + d), _MM_HINT_T0);
}
#endif

/* s[g * ls + j] = scale * (q_g . k_j) for the G query heads q [G, D] and keys k_j = k + j * ldk,
 * j < len. Blocks of 8 keys; each K row is loaded once per head group, from L1 after the first. */
static void QF(dec_scores)(const float *q, const float *k, const float *v, int64_t ldk,
                           float *s, int64_t ls, int64_t G, int64_t len, int64_t D, float scale) {
    int64_t j = 0;
#ifdef __AVX2__
    const __m256i tail = QF(dec_mask)(D % 8);
    const __m256 sc = _mm256_set1_ps(scale);
    for (int64_t a = 0; a < QR_DEC_PF_KEYS; a += 8) QF(dec_prefetch)(k, ldk, a, len, D);
    for (; j + 8 <= len; j += 8) {
        QF(dec_prefetch)(k, ldk, j + QR_DEC_PF_KEYS, len, D);   /* K rows ahead */
        QF(dec_prefetch)(v, ldk, j, len, D);                    /* V rows for dec_pv */
        for (int64_t g = 0, nh; g < G; g += nh) {
            const float *qg = q + g * D, *kj = k + j * ldk;
            float *sg = s + g * ls + j;
            nh = QF(dec_group)(G - g);
            if (nh == 1) {
                QF(dec_s_block)(qg, kj, ldk, sg, ls, D, tail, sc, 1, 8);
            } else if (nh == 2) {
                QF(dec_s_block)(qg, kj, ldk, sg, ls, D, tail, sc, 2, 4);
                QF(dec_s_block)(qg, kj + 4 * ldk, ldk, sg + 4, ls, D, tail, sc, 2, 4);
            } else {
                QF(dec_s_block)(qg, kj, ldk, sg, ls, D, tail, sc, 3, 4);
                QF(dec_s_block)(qg, kj + 4 * ldk, ldk, sg + 4, ls, D, tail, sc, 3, 4);
            }
        }
    }
    for (; j < len; j++)   /* the last < 8 keys: one at a time, the same sums per lane */
        for (int64_t g = 0; g < G; g++) {
            const float *qg = q + g * D, *kj = k + j * ldk;
            __m256 a = _mm256_setzero_ps();
            int64_t d = 0;
            for (; d + 8 <= D; d += 8)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), _mm256_loadu_ps(kj + d), a);
            if (d < D)
                a = _mm256_fmadd_ps(_mm256_maskload_ps(qg + d, tail),
                                    _mm256_maskload_ps(kj + d, tail), a);
            const __m256 z = _mm256_setzero_ps();
            s[g * ls + j] = _mm_cvtss_f32(QF(hsum4)(a, z, z, z)) * scale;
        }
#else
    for (; j < len; j++)
        for (int64_t g = 0; g < G; g++) s[g * ls + j] = qr_dot_f(q + g * D, k + j * ldk, D) * scale;
#endif
}

/* o[g, :] += sum_j p[g * lp + j] * v_j for keys j < len (v_j = v + j * ldv), in key blocks of
 * QR_DEC_VKEYS that stay in L1 while the G heads use them; o [G, D] holds the running sums. */
static void QF(dec_pv)(const float *p, int64_t lp, const float *v, int64_t ldv, float *o,
                       int64_t G, int64_t len, int64_t D) {
    for (int64_t j0 = 0; j0 < len; j0 += QR_DEC_VKEYS) {
        const int64_t j1 = len - j0 < QR_DEC_VKEYS ? len : j0 + QR_DEC_VKEYS;
        for (int64_t g = 0, nh; g < G; g += nh) {
            const float *pg = p + g * lp;
            float *og = o + g * D;
            nh = QF(dec_group)(G - g);
#ifdef __AVX2__   /* head groups over 16 (one head: 32) outputs, then 8 at a time per head */
            const int64_t w = nh == 1 ? 32 : 16;
            int64_t d = 0;
            for (; d + w <= D; d += w) {
                if (nh == 1) QF(dec_pv_block)(pg, lp, v + d, ldv, og + d, D, j0, j1, 1, 4);
                else if (nh == 2) QF(dec_pv_block)(pg, lp, v + d, ldv, og + d, D, j0, j1, 2, 2);
                else QF(dec_pv_block)(pg, lp, v + d, ldv, og + d, D, j0, j1, 3, 2);
            }
            for (; d < D; d += 8)
                for (int64_t h = 0; h < nh; h++)
                    QF(dec_pv_vec)(pg + h * lp, v + d, ldv, og + h * D + d,
                                   D - d < 8 ? D - d : 8, j0, j1);
#else
            for (int64_t h = 0; h < nh; h++)
                for (int64_t j = j0; j < j1; j++) {
                    const float wj = pg[h * lp + j], *vr = v + j * ldv;
                    float *oh = og + h * D;
                    for (int64_t d = 0; d < D; d++) oh[d] += wj * vr[d];
                }
#endif
        }
    }
}

/* Units: (b, kv head, key chunk) of one decode step. The G query heads of the kv head share
 * each K and V row; an exact two-pass softmax over the chunk's keys. One chunk (no split):
 * out = o / sum directly; else the partial (max, sum, o) per head for att_dec_merge. */
void QF(att_dec_items)(void *p, int64_t lo, int64_t hi) {
    att_ctx *c = p;
    const int64_t D = c->D, n = c->Tk, H = c->H, Hkv = c->Hkv, G = H / Hkv, mc = c->max_ctx;
    const int64_t L = c->chunk, nc = (n + L - 1) / L, ld = Hkv * D;
    float *s = qr_scratch(0, (size_t)(G * (L + D + 2)) * sizeof(float));
    if (!s) { atomic_store(&c->err, 1); return; }
    float *o = s + G * L, *ml = o + G * D;   /* o [G, D]; ml: (max, sum) per head */
    for (int64_t u = lo; u < hi; u++) {
        const int64_t bk = u / nc, b = bk / Hkv, hk = bk % Hkv, j0 = u % nc * L;
        const int64_t len = n - j0 < L ? n - j0 : L;
        const float *kc = c->k + ((b * mc + j0) * Hkv + hk) * D;
        const float *vc = c->v + ((b * mc + j0) * Hkv + hk) * D;
        QF(dec_scores)(c->q + (b * H + hk * G) * D, kc, vc, ld, s, L, G, len, D, c->scale);
        for (int64_t g = 0; g < G; g++) {
            float *sg = s + g * L;
            const float mx = QF(rmax)(sg, len);
            qr_exp_shift(sg, mx, sg, len);
            ml[2 * g] = mx;
            ml[2 * g + 1] = qr_sum_f(sg, len);
        }
        memset(o, 0, (size_t)(G * D) * sizeof(float));
        QF(dec_pv)(s, L, vc, ld, o, G, len, D);
        for (int64_t g = 0; g < G; g++) {
            const float *og = o + g * D;
            if (nc == 1) {
                float *out = c->o + (b * H + hk * G + g) * D;
                for (int64_t d = 0; d < D; d++) out[d] = og[d] / ml[2 * g + 1];
            } else {
                float *pt = c->part + (u * G + g) * (D + 2);
                pt[0] = ml[2 * g];
                pt[1] = ml[2 * g + 1];
                memcpy(pt + 2, og, (size_t)D * sizeof(float));
            }
        }
    }
}

/* Items: (b, kv head). The chunks' partials of each of its G heads merged in chunk order:
 * M = max m_c, out = sum_c exp(m_c - M) o_c / sum_c exp(m_c - M) l_c. */
void QF(att_dec_merge)(void *p, int64_t lo, int64_t hi) {
    att_ctx *c = p;
    const int64_t D = c->D, H = c->H, Hkv = c->Hkv, G = H / Hkv, L = c->chunk;
    const int64_t nc = (c->Tk + L - 1) / L, st = G * (D + 2);
    for (int64_t bk = lo; bk < hi; bk++) {
        const int64_t b = bk / Hkv, hk = bk % Hkv;
        for (int64_t g = 0; g < G; g++) {
            const float *p0 = c->part + bk * nc * st + g * (D + 2);
            float *out = c->o + (b * H + hk * G + g) * D;
            float M = p0[0], l = 0.0f;
            for (int64_t k = 1; k < nc; k++) M = p0[k * st] > M ? p0[k * st] : M;
            for (int64_t d = 0; d < D; d++) out[d] = 0.0f;
            for (int64_t k = 0; k < nc; k++) {
                const float *pk = p0 + k * st, w = qr_expf(pk[0] - M);
                l = l + pk[1] * w;
                for (int64_t d = 0; d < D; d++) out[d] = out[d] + w * pk[2 + d];
            }
            for (int64_t d = 0; d < D; d++) out[d] = out[d] / l;
        }
    }
}
