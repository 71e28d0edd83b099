/* fused_impl.h - private: bodies of the fused kernels declared in fused_internal.h. Included
 * once by fused.c (QR_FUSED_SFX portable) and once by fused_avx2.c (QR_FUSED_SFX avx2). No
 * include guard. Loops are written so the compiler vectorizes them; every reduction runs in a
 * fixed order, so a result depends on neither the thread count nor the build. */
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
/* y = silu(g) * u, silu(g) = g / (exp(-g) + 1) (numpy_fused.py's order) */
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
                    for (int64_t j = 0; j < n; j++) { const float t = dy[j]; acc[j] += t; dx[j] = t; }
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

/* Items: (b, h). FlashAttention tiles: for a tile of QR_ATT_BQ query rows, the key tiles of
 * QR_ATT_BK are visited in order; S = scale Q K^T and O += P V are GEMMs on packed tiles
 * (qr_gemm_f32, serial inside a task); an online softmax keeps the running max m, sum l and
 * unnormalized O per row; lse = m + log(l). Only a QR_ATT_BQ x QR_ATT_BK score tile exists. */
void QF(att_fwd_items)(void *p, int64_t lo, int64_t hi) {
    att_ctx *c = p;
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
                    const float bm = QF(rmax)(row, nv);
                    const float mn = bm > m[r] ? bm : m[r];
                    qr_exp_shift(row, mn, row, nv);
                    const float ps = qr_sum_f(row, nv);
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
                        for (int64_t j = 0; j < nv; j++) {
                            const float pj = qr_expf(sr[j] - ls);
                            sr[j] = pj;
                            dr[j] = pj * (dr[j] - di) * scale;
                        }
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

/* Items: (b, h) of one decode step. Exact two-pass softmax over the n_ctx cached keys. */
void QF(att_dec_items)(void *p, int64_t lo, int64_t hi) {
    att_ctx *c = p;
    const int64_t D = c->D, n = c->Tk, H = c->H, Hkv = c->Hkv, G = H / Hkv, mc = c->max_ctx;
    float *s = qr_scratch(0, (size_t)n * sizeof(float));
    if (!s) { atomic_store(&c->err, 1); return; }
    for (int64_t it = lo; it < hi; it++) {
        const int64_t b = it / H, h = it % H, hk = h / G;
        const float *qh = c->q + it * D;
        const float *kc = c->k + (b * mc * Hkv + hk) * D, *vc = c->v + (b * mc * Hkv + hk) * D;
        for (int64_t j = 0; j < n; j++) s[j] = qr_dot_f(qh, kc + j * Hkv * D, D) * c->scale;
        const float mx = QF(rmax)(s, n);
        qr_exp_shift(s, mx, s, n);
        const float sum = qr_sum_f(s, n);
        float *out = c->o + it * D;
        for (int64_t d = 0; d < D; d++) out[d] = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            const float pj = s[j], *vr = vc + j * Hkv * D;
            for (int64_t d = 0; d < D; d++) out[d] += pj * vr[d];
        }
        for (int64_t d = 0; d < D; d++) out[d] = out[d] / sum;
    }
}
