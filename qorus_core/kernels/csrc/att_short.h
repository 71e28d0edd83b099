/* att_short.h - private, included by fused_impl.h (compiled once per SIMD tier, names QF()):
 * attention over short key sequences (Tk <= QR_ATT_SHORT) by direct register-blocked loops.
 * At such sizes the tiled path's per-tile GEMM calls pack more than they multiply (ViT's 17
 * tokens of 16 dims: 2x faster here); from two key tiles on (an encoder's 128 keys of 32
 * dims) the tiled path is the faster one (measured: 14 vs 33 ms a forward). Each (b, head) packs K transposed, kT [D, Tkp],
 * and V as rows vP [Tk, Dp], both zero padded to 16 lanes (Tkp, Dp), so every inner loop has
 * a fixed trip count of 16 that the compiler turns into vectors; query rows go in blocks of
 * QR_SB, whose accumulators stay in registers. The softmax of a row is exact (every key is in
 * reach: no online rescaling); masks, causal limits and dropout are the tiled path's. */

#define QR_ATT_SHORT 64   /* keys up to which the direct path runs (one key tile) */
#define QR_SB 4            /* query rows per block */
#define QR_SW 16           /* lanes of a column block */

static inline int64_t QF(sh_up)(int64_t n) { return (n + QR_SW - 1) / QR_SW * QR_SW; }

/* dst [D, Tp] = the head's rows of src [B, T, nh, D] transposed; columns T..Tp zero */
static void QF(sh_pack_t)(const float *src, float *dst, int64_t b, int64_t hh, int64_t nh,
                          int64_t T, int64_t D, int64_t Tp) {
    for (int64_t d = 0; d < D; d++)
        for (int64_t t = T; t < Tp; t++) dst[d * Tp + t] = 0.0f;
    for (int64_t t = 0; t < T; t++) {
        const float *row = src + ((b * T + t) * nh + hh) * D;
        for (int64_t d = 0; d < D; d++) dst[d * Tp + t] = row[d];
    }
}

/* dst [n, Dp] = n rows of D floats at src, src + ld, ...; columns D..Dp zero */
static void QF(sh_pack_rows)(const float *src, int64_t ld, int64_t n, float *dst, int64_t D,
                             int64_t Dp) {
    for (int64_t r = 0; r < n; r++) {
        memcpy(dst + r * Dp, src + r * ld, (size_t)D * sizeof(float));
        for (int64_t d = D; d < Dp; d++) dst[r * Dp + d] = 0.0f;
    }
}

/* The block's QR_SB (4) rows are written out one by one below (a0..a3): with a loop over
 * them, GCC vectorizes that short loop instead of the 16 lanes. */

/* S[r, 0..nj) = scale * x_r . kT[:, j] for the 4 rows x_r = x + r * Dp (rows past the
 * block's are zero); nj a multiple of QR_SW; S rows of stride ldS. */
static inline void QF(sh_scores)(const float *restrict x, int64_t Dp, const float *restrict kT,
                                 int64_t Tkp, int64_t nj, int64_t D, float scale,
                                 float *restrict S, int64_t ldS) {
    for (int64_t j0 = 0; j0 < nj; j0 += QR_SW) {
        float a0[QR_SW] = {0}, a1[QR_SW] = {0}, a2[QR_SW] = {0}, a3[QR_SW] = {0};
        for (int64_t d = 0; d < D; d++) {
            const float *restrict kr = kT + d * Tkp + j0;
            const float x0 = x[d], x1 = x[Dp + d], x2 = x[2 * Dp + d], x3 = x[3 * Dp + d];
            for (int jj = 0; jj < QR_SW; jj++) {
                a0[jj] = a0[jj] + x0 * kr[jj];
                a1[jj] = a1[jj] + x1 * kr[jj];
                a2[jj] = a2[jj] + x2 * kr[jj];
                a3[jj] = a3[jj] + x3 * kr[jj];
            }
        }
        float *restrict s0 = S + j0, *restrict s1 = s0 + ldS, *restrict s2 = s1 + ldS;
        float *restrict s3 = s2 + ldS;
        for (int jj = 0; jj < QR_SW; jj++) {
            s0[jj] = a0[jj] * scale;
            s1[jj] = a1[jj] * scale;
            s2[jj] = a2[jj] * scale;
            s3[jj] = a3[jj] * scale;
        }
    }
}

/* o_r[0..D) = f_r * sum_{j < nj} W[r, j] X[j, :] for the block's nr rows (o_r = o + r * ldo;
 * X rows of stride Dp; W has 4 rows of stride ldW, zero past nr; f NULL: 1). */
static inline void QF(sh_mix)(const float *restrict W, int64_t ldW, int nr,
                              const float *restrict X, int64_t Dp, int64_t nj, float *o,
                              int64_t ldo, int64_t D, const float *f) {
    const float *w0 = W, *w1 = W + ldW, *w2 = w1 + ldW, *w3 = w2 + ldW;
    for (int64_t d0 = 0; d0 < Dp; d0 += QR_SW) {
        float a0[QR_SW] = {0}, a1[QR_SW] = {0}, a2[QR_SW] = {0}, a3[QR_SW] = {0};
        for (int64_t j = 0; j < nj; j++) {
            const float *restrict xr = X + j * Dp + d0;
            const float v0 = w0[j], v1 = w1[j], v2 = w2[j], v3 = w3[j];
            for (int dd = 0; dd < QR_SW; dd++) {
                a0[dd] = a0[dd] + v0 * xr[dd];
                a1[dd] = a1[dd] + v1 * xr[dd];
                a2[dd] = a2[dd] + v2 * xr[dd];
                a3[dd] = a3[dd] + v3 * xr[dd];
            }
        }
        const float *acc[QR_SB] = {a0, a1, a2, a3};
        const int64_t w = D - d0 < QR_SW ? D - d0 : QR_SW;
        for (int r = 0; r < nr; r++) {
            const float fr = f ? f[r] : 1.0f;
            for (int64_t dd = 0; dd < w; dd++) o[r * ldo + d0 + dd] = acc[r][dd] * fr;
        }
    }
}

/* dK[j] += sum_r dS[r, j] q_r and dV[j] += sum_r P[r, j] g_r for j < nj (rows [nj, Dp) of
 * stride Dp; q, g the block's 4 padded rows, zero past its end; dS, P rows of stride ldS). */
static inline void QF(sh_outer)(const float *restrict dS, const float *restrict P, int64_t ldS,
                                const float *restrict q, const float *restrict g, int64_t nj,
                                int64_t Dp, float *restrict dk, float *restrict dv) {
    for (int64_t j = 0; j < nj; j++) {
        const float s0 = dS[j], s1 = dS[ldS + j], s2 = dS[2 * ldS + j], s3 = dS[3 * ldS + j];
        const float p0 = P[j], p1 = P[ldS + j], p2 = P[2 * ldS + j], p3 = P[3 * ldS + j];
        float *restrict kj = dk + j * Dp, *restrict vj = dv + j * Dp;
        for (int64_t d = 0; d < Dp; d++) {
            kj[d] = kj[d] + s0 * q[d] + s1 * q[Dp + d] + s2 * q[2 * Dp + d] + s3 * q[3 * Dp + d];
            vj[d] = vj[d] + p0 * g[d] + p1 * g[Dp + d] + p2 * g[2 * Dp + d] + p3 * g[3 * Dp + d];
        }
    }
}

/* Forward items (b, h): rows in blocks; the keys a block reads end where its last row's do. */
static void QF(att_fwd_short_items)(att_ctx *c, int64_t lo, int64_t hi) {
    const int64_t D = c->D, Tq = c->Tq, Tk = c->Tk, H = c->H, Hkv = c->Hkv, G = H / Hkv;
    const int64_t Tkp = QF(sh_up)(Tk), Dp = QF(sh_up)(D);
    const size_t n = (size_t)(D * Tkp + Tk * Dp + QR_SB * (Dp + Tkp + 1));
    float *buf = malloc(n * sizeof(float));
    if (!buf) { atomic_store(&c->err, 1); return; }
    float *kT = buf, *vP = kT + D * Tkp, *qb = vP + Tk * Dp, *S = qb + QR_SB * Dp;
    float *inv = S + QR_SB * Tkp;
    int64_t last = -1;
    for (int64_t it = lo; it < hi; it++) {
        const int64_t b = it / H, h = it % H, hk = h / G;
        if (b * Hkv + hk != last) {
            QF(sh_pack_t)(c->k, kT, b, hk, Hkv, Tk, D, Tkp);
            QF(sh_pack_rows)(c->v + (b * Tk * Hkv + hk) * D, Hkv * D, Tk, vP, D, Dp);
            last = b * Hkv + hk;
        }
        for (int64_t i0 = 0; i0 < Tq; i0 += QR_SB) {
            const int nr = (int)(Tq - i0 < QR_SB ? Tq - i0 : QR_SB);
            const int64_t jmax = QF(att_len)(c, i0 + nr - 1), nj = QF(sh_up)(jmax);
            memset(qb, 0, (size_t)(QR_SB * Dp) * sizeof(float));
            QF(sh_pack_rows)(c->q + ((b * Tq + i0) * H + h) * D, H * D, nr, qb, D, Dp);
            QF(sh_scores)(qb, Dp, kT, Tkp, nj, D, c->scale, S, Tkp);
            for (int r = 0; r < nr; r++) {
                const int64_t i = i0 + r, nv = QF(att_len)(c, i);
                float *row = S + r * Tkp;
                float *lse = c->l + (b * H + h) * Tq + i;
                for (int64_t j = nv; j < jmax; j++) row[j] = 0.0f;
                if (c->bias || c->kpm) QF(att_mask_row)(c, b, h, i, 0, row, nv);
                const float m = QF(rmax)(row, nv);
                if (m == -INFINITY && !QF(any_nan)(row, nv)) {   /* every key masked: 0 */
                    for (int64_t j = 0; j < nv; j++) row[j] = 0.0f;
                    inv[r] = 0.0f;
                    *lse = -INFINITY;
                    continue;
                }
                qr_exp_shift(row, m, row, nv);
                const float l = qr_sum_f(row, nv);
                if (c->drop) QF(att_drop_row)(c, b, h, i, 0, row, nv);
                inv[r] = 1.0f / l;
                *lse = m + logf(l);
            }
            QF(sh_mix)(S, Tkp, nr, vP, Dp, jmax, c->o + ((b * Tq + i0) * H + h) * D, H * D, D,
                       inv);
        }
    }
    free(buf);
}

/* Backward items (b, kv head): for each of its query heads and row blocks, P and dS from the
 * saved lse; dq written, dk / dv summed over the group's heads in order, then written. */
static void QF(att_bwd_short_items)(att_ctx *c, int64_t lo, int64_t hi) {
    const int64_t D = c->D, Tq = c->Tq, Tk = c->Tk, H = c->H, Hkv = c->Hkv, G = H / Hkv;
    const int64_t Tkp = QF(sh_up)(Tk), Dp = QF(sh_up)(D);
    const float scale = c->scale;
    const size_t n = (size_t)(2 * D * Tkp + 3 * Tk * Dp + QR_SB * (2 * Dp + 3 * Tkp));
    float *buf = malloc(n * sizeof(float));
    if (!buf) { atomic_store(&c->err, 1); return; }
    float *kT = buf, *vT = kT + D * Tkp, *kP = vT + D * Tkp, *dkp = kP + Tk * Dp;
    float *dvp = dkp + Tk * Dp, *qb = dvp + Tk * Dp, *gb = qb + QR_SB * Dp;
    float *P = gb + QR_SB * Dp, *dP = P + QR_SB * Tkp, *dS = dP + QR_SB * Tkp;
    for (int64_t it = lo; it < hi; it++) {
        const int64_t b = it / Hkv, hk = it % Hkv;
        QF(sh_pack_t)(c->k, kT, b, hk, Hkv, Tk, D, Tkp);
        QF(sh_pack_t)(c->v, vT, b, hk, Hkv, Tk, D, Tkp);
        QF(sh_pack_rows)(c->k + (b * Tk * Hkv + hk) * D, Hkv * D, Tk, kP, D, Dp);
        memset(dkp, 0, (size_t)(2 * Tk * Dp) * sizeof(float));   /* dkp, dvp */
        for (int64_t h = hk * G; h < (hk + 1) * G; h++)
            for (int64_t i0 = 0; i0 < Tq; i0 += QR_SB) {
                const int nr = (int)(Tq - i0 < QR_SB ? Tq - i0 : QR_SB);
                const int64_t jmax = QF(att_len)(c, i0 + nr - 1), nj = QF(sh_up)(jmax);
                const int64_t at = ((b * Tq + i0) * H + h) * D;
                memset(qb, 0, (size_t)(2 * QR_SB * Dp) * sizeof(float));   /* qb, gb */
                QF(sh_pack_rows)(c->q + at, H * D, nr, qb, D, Dp);
                QF(sh_pack_rows)(c->dout + at, H * D, nr, gb, D, Dp);
                QF(sh_scores)(qb, Dp, kT, Tkp, nj, D, scale, P, Tkp);     /* S */
                QF(sh_scores)(gb, Dp, vT, Tkp, nj, D, 1.0f, dP, Tkp);     /* dP = dO V^T */
                for (int r = 0; r < QR_SB; r++) {
                    float *pr = P + r * Tkp, *dpr = dP + r * Tkp, *dsr = dS + r * Tkp;
                    const int64_t i = i0 + r;
                    int64_t nv = r < nr ? QF(att_len)(c, i) : 0;
                    const float ls = r < nr ? c->lse[(b * H + h) * Tq + i] : 0.0f;
                    if (ls == -INFINITY) nv = 0;             /* a fully masked row */
                    if (nv && (c->bias || c->kpm)) QF(att_mask_row)(c, b, h, i, 0, pr, nv);
                    for (int64_t j = 0; j < nv; j++) pr[j] = qr_expf(pr[j] - ls);
                    if (nv && c->drop) QF(att_drop_row)(c, b, h, i, 0, dpr, nv);
                    const float di = nv ? qr_dot_f(c->dout + at + r * H * D,
                                                   c->out + at + r * H * D, D) : 0.0f;
                    for (int64_t j = 0; j < nv; j++) dsr[j] = pr[j] * (dpr[j] - di) * scale;
                    if (nv && c->drop) QF(att_drop_row)(c, b, h, i, 0, pr, nv);  /* dV: P M */
                    for (int64_t j = nv; j < jmax; j++) { pr[j] = 0.0f; dsr[j] = 0.0f; }
                }
                QF(sh_mix)(dS, Tkp, nr, kP, Dp, jmax, c->dq + at, H * D, D, NULL);  /* dS K */
                QF(sh_outer)(dS, P, Tkp, qb, gb, jmax, Dp, dkp, dvp);
            }
        for (int64_t t = 0; t < Tk; t++) {
            const int64_t o = ((b * Tk + t) * Hkv + hk) * D;
            memcpy(c->dk + o, dkp + t * Dp, (size_t)D * sizeof(float));
            memcpy(c->dv + o, dvp + t * Dp, (size_t)D * sizeof(float));
        }
    }
    free(buf);
}
