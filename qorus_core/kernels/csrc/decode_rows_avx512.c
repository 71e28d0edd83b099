/* decode_rows_avx512.c - the AVX-512 (BW/VL + VNNI) products of a batched decode step
 * (decode_rows.c's qr_linears_rows_f32): a Q8_0 / Q4_0 / Q4_1 weight against M activation
 * rows, each weight row unpacked once for all of them.
 *
 * Each row gets, lane for lane, the arithmetic of quant_avx512.c's decode kernels (qrows_x:
 * q8x / q4x of one row, eight weight rows' lanes summed by qr__hsum8x): its q8 row is the
 * same (qr__quantize_q8_row_avx512, layout 0 for Q8_0, 1 for Q4), each int32 lane the same
 * exact vpdpbusd sum, each lane's scale the same product d_w * d_x, each lane the same chain
 * of FMAs (one accumulator a row for Q4, two for Q8_0, blocks in order, the same tails), the
 * same fold of 16 lanes into 8 and the same horizontal sum; so y[j] is bit for bit what
 * qr_matmul_<fmt>_f32 gives row j alone. What differs is only where the values sit and what
 * the rows share:
 *   - a weight row's loads, nibble unpacking and fp16 scales serve up to QR_MX rows;
 *   - Q4_1's m * s term: quant_avx512.c keeps it in the odd lanes of an 8-lane accumulator
 *     per row (the even lanes only ever hold +0 and are masked off); here the four odd lanes
 *     of four rows share one 16-lane accumulator (lane 4j + k: row j, block 4t + k of each
 *     quad), the same FMA chain per lane, moved into the odd lanes (even ones +0) at the end;
 *   - a Q4_1 quad's nibbles and scales come from two loads and a permute (its 80 bytes hold
 *     every block's fields at dword offsets), not from eight loads and inserts;
 *   - a Q4 row's last 1 or 2 blocks (a half quad: lanes 0-7, the others left as the
 *     one-row kernel's zeros leave them, an accumulator never being -0) take one vector
 *     for two rows, and two rows share the fold of 16 lanes into 8 and the horizontal sums
 *     (16-lane versions of the same additions).
 * The acts buffer: M q8 rows (qr_x_stride apart), then for Q4_1 S4: per group of four rows
 * and quad t, the 16 floats s[j0 + j][4t + k] at 4j + k (zeros past the rows and blocks),
 * then for a half quad TP: per pair of rows the half quad's q (lows, highs), E and C of both.
 *
 * VNNI is enabled for this file alone, as for quant_avx512.c; decode_rows.c calls it only
 * where qr__quant_tier() is the AVX-512 tier (which requires AVX512VNNI). */
#include <immintrin.h>
#include <string.h>

#include "decode_rows_internal.h"
#include "qorus.h"
#include "quant_internal.h"
#include "quant_x86.h"

#ifdef QR_HAVE_QUANT_AVX512

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif

#define QR_AI static inline __attribute__((always_inline))
#include "quant_avx512_blocks.h"   /* after the target pragma: see there */
/* The weight stream's prefetch: into L2, 4 KiB ahead (a thread streams M times slower than
 * the one-row kernels, whose 2 KiB into L1 measured 6% slower steps at M = 4); a range's
 * first QR_PF_HEAD_BYTES into L1 at once (qr__prefetch_head) */
#define QR_PF_AHEAD 4096
#define QR_PF_HINT _MM_HINT_T1
#define QR_MX 8                /* activation rows a weight row serves at once */

/* ------------------------------------------------------------------ acts */
static int fmt_of(int qtype) {
    return qtype == QR_QTYPE_Q8_0 ? 0 : qtype == QR_QTYPE_Q4_0 ? 1 : 2;
}

static size_t s4_bytes(int fmt, int64_t M, int64_t nb) {   /* Q4_1's S4 */
    return fmt == 2 ? (size_t)((M + 3) / 4) * qr_x_nb4(nb) * 4 * sizeof(float) : 0;
}

/* a Q4 row's last 1 or 2 blocks (nb % 4) are a half quad, done for two rows in one vector */
static int half_tail(int fmt, int64_t nb) { return fmt != 0 && (nb % 4 == 1 || nb % 4 == 2); }

#define QR_TP_BYTES 256   /* a row pair's half quad: q low halves, q high halves, E, C */

size_t qr__mrows_acts_bytes_avx512(int qtype, int64_t M, int64_t K) {
    const int fmt = fmt_of(qtype);
    const int64_t nb = K / QR_QK;
    size_t n = (size_t)M * qr_x_stride(nb) + s4_bytes(fmt, M, nb);
    if (half_tail(fmt, nb)) n += (size_t)((M + 1) / 2) * QR_TP_BYTES;
    return n;
}

/* M q8 rows (layout 0 for Q8_0, 1 for Q4), then S4 (Q4_1), then the row pairs' half quads
 * (TP: for rows 2p, 2p + 1, each row's 8 lanes of q (lows, then highs), E and C of its last
 * quad side by side; zeros for a missing second row) */
void qr__mrows_acts_avx512(int qtype, const float *x, int64_t M, int64_t K, uint8_t *acts) {
    const int fmt = fmt_of(qtype);
    const int64_t nb = K / QR_QK;
    const size_t xs = qr_x_stride(nb);
    for (int64_t j = 0; j < M; j++)
        qr__quantize_q8_row_avx512(x + j * K, K, acts + (size_t)j * xs, fmt != 0);
    const int64_t nq = (int64_t)qr_x_nb4(nb) / 4;
    if (fmt == 2) {
        float *S4 = (float *)(acts + (size_t)M * xs);
        memset(S4, 0, s4_bytes(fmt, M, nb));
        for (int64_t j = 0; j < M; j++) {
            const float *s = (const float *)(acts + (size_t)j * xs + qr_x_off_d(nb)) + nb;
            for (int64_t b = 0; b < nb; b++)
                S4[((j / 4) * nq + b / 4) * 16 + (j % 4) * 4 + b % 4] = s[b];
        }
    }
    if (!half_tail(fmt, nb)) return;
    uint8_t *tp = acts + (size_t)M * xs + s4_bytes(fmt, M, nb);
    const int64_t t = nb / 4;   /* the last (half) quad */
    memset(tp, 0, (size_t)((M + 1) / 2) * QR_TP_BYTES);
    for (int64_t j = 0; j < M; j++) {
        const uint8_t *row = acts + (size_t)j * xs;
        uint8_t *d = tp + (size_t)(j / 2) * QR_TP_BYTES + (size_t)(j % 2) * 32;
        memcpy(d, row + 128 * t, 32);
        memcpy(d + 64, row + 128 * t + 64, 32);
        memcpy(d + 128, row + qr_x_off_e(nb) + 64 * t, 32);
        memcpy(d + 192, row + qr_x_off_c(nb) + 64 * t, 32);
    }
}

/* ------------------------------------------------------------------ pairs of rows */
/* [a's 8 lanes | b's 8 lanes]: two rows' lanes of 8 weight rows each, summed 8 at a time */
QR_AI __m512 pair_fold(__m512 a, __m512 b) {   /* fold512 of a and of b, side by side */
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
}

QR_AI __m512 hadd512(__m512 a, __m512 b) {   /* _mm256_hadd_ps in each 256-bit half */
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xdd));
}

/* qr__hsum8x of the two rows of v[8] ([row 2p | row 2p + 1] of 8 weight rows): the same
 * sums in the same order, two rows at a time */
QR_AI __m512 hsum8x_pair(const __m512 v[8]) {
    const __m512 u0 = hadd512(hadd512(v[0], v[1]), hadd512(v[2], v[3]));
    const __m512 u1 = hadd512(hadd512(v[4], v[5]), hadd512(v[6], v[7]));
    const __m512i ia = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i ib = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    return _mm512_add_ps(_mm512_permutex2var_ps(u0, ia, u1), _mm512_permutex2var_ps(u0, ib, u1));
}

/* ------------------------------------------------------------------ Q8_0 (layout 0) */
/* One Q8_0 weight row against MX q8 rows: res2[p], rows 2p and 2p + 1's 8 lanes side by side,
 * each summing to its row's dot as quant_avx512.c's q8x gives it for that row alone (the
 * same qr__q8_blocks_x, then an odd last block). */
QR_AI void q8_mrow(int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                   __m512 *res2) {
    __m512 acc[QR_MX + 1][2];
    const int64_t b = qr__q8_blocks_x(MX, nb, w, xq, xs, QR_PF_AHEAD, QR_PF_HINT, acc);
    if (MX % 2) acc[MX][0] = acc[MX][1] = _mm512_setzero_ps();   /* a last row's partner */
    for (int p = 0; 2 * p < MX; p++)
        res2[p] = pair_fold(_mm512_add_ps(acc[2 * p][0], acc[2 * p][1]),
                            _mm512_add_ps(acc[2 * p + 1][0], acc[2 * p + 1][1]));
    if (b < nb) {   /* one last block: 8 lanes a row */
        const float dw = qr__h2f(w + b * QR_Q8_0_BS);
        for (int j = 0; j < MX; j++) {
            const uint8_t *r = xq + j * xs;
            const float *d = (const float *)(r + qr_x_off_d(nb));
            const __m256i s = qr__q8_last_block_x(nb, b, w, r);
            const int half = j % 2;
            __m256 h = half ? _mm512_extractf32x8_ps(res2[j / 2], 1)
                            : _mm512_castps512_ps256(res2[j / 2]);
            h = _mm256_fmadd_ps(_mm256_set1_ps(dw * d[b]), _mm256_cvtepi32_ps(s), h);
            res2[j / 2] = half ? _mm512_insertf32x8(res2[j / 2], h, 1)
                               : _mm512_insertf32x8(res2[j / 2], h, 0);
        }
    }
}

/* ------------------------------------------------------------------ Q4_0 / Q4_1 (layout 1) */
/* One quad of blocks (t) of a Q4 weight row (FMT 1: Q4_0, 2: Q4_1) against MX q8 rows:
 * f = the blocks' first dwords as floats [d0 c0 d1 c1 d2 c2 d3 c3], raw their 64 nibble
 * bytes (block k in 128-bit lane k); acc[j] row j's 16 lanes (quant_avx512.c's q4_quad),
 * corr[g] (Q4_1) the m * s lanes of rows 4g .. 4g + 3, S4 their s values for this quad. */
QR_AI void q4_quad(int FMT, int MX, int64_t t, __m256 f, __m512i raw, const uint8_t *xq,
                   size_t xs, size_t oc, size_t oe, const float *S4, size_t s4g, __m512 *acc,
                   __m512 *corr) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i di = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6);
    const __m512 fz = _mm512_castps256_ps512(f);
    const __m512 dw = _mm512_permutexvar_ps(di, fz);
    const __m512i lo = _mm512_and_si512(raw, m4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
    for (int j = 0; j < MX; j++) {
        const uint8_t *r = xq + j * xs;
        const __m512i *q = (const __m512i *)(r + 128 * t);
        __m512i s = FMT == 1 ? _mm512_loadu_si512((const int32_t *)(r + oc) + 16 * t)
                             : _mm512_setzero_si512();
        s = _mm512_dpbusd_epi32(s, lo, _mm512_loadu_si512(q));
        s = _mm512_dpbusd_epi32(s, hi, _mm512_loadu_si512(q + 1));
        __m512 sc = _mm512_mul_ps(dw, _mm512_loadu_ps((const float *)(r + oe) + 16 * t));
        acc[j] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(s), acc[j]);
    }
    if (FMT == 2) {   /* m_k of every block, for each group of four rows' lanes 4j + k */
        const __m512i mi = _mm512_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7, 1, 3, 5, 7, 1, 3, 5, 7);
        const __m512 mw = _mm512_permutexvar_ps(mi, fz);
        for (int g = 0; 4 * g < MX; g++)
            corr[g] = _mm512_fmadd_ps(mw, _mm512_loadu_ps(S4 + g * s4g + 16 * t), corr[g]);
    }
}

/* One Q4 weight row against MX q8 rows: res2[p], rows 2p and 2p + 1's 8 lanes side by side,
 * each as quant_avx512.c's q4x gives it for that row alone. A last half quad (1 or 2
 * blocks: lanes 0-7 of a row, the others left as they are, as the one-row kernel's zeros
 * leave them) is done for two rows at once from TP. */
QR_AI void q4_mrow(int FMT, int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                   const float *S4, const uint8_t *TP, __m512 *res2) {
    const size_t bs = FMT == 1 ? 18 : 20, off = FMT == 1 ? 2 : 4;
    const size_t oc = qr_x_off_c(nb), oe = qr_x_off_e(nb), s4g = qr_x_nb4(nb) * 4;
    const int64_t nq = nb / 4, nr = nb % 4;
    /* Q4_1: a quad's 80 bytes as dwords: block k's (d, m) is dword 5k, its nibbles 5k+1.. */
    const __m512i fi = _mm512_setr_epi32(0, 5, 10, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i ni = _mm512_setr_epi32(1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19);
    __m512 acc[QR_MX + 1], corr[QR_MX / 4];
    for (int j = 0; j < MX; j++) acc[j] = _mm512_setzero_ps();
    if (MX % 2) acc[MX] = _mm512_setzero_ps();   /* a last row's partner */
    for (int g = 0; 4 * g < MX; g++) corr[g] = _mm512_setzero_ps();
    for (int64_t t = 0; t < nq; t++) {
        const uint8_t *p = w + 4 * t * bs;
        _mm_prefetch((const char *)(p + QR_PF_AHEAD), QR_PF_HINT);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 64), QR_PF_HINT);
        __m256 f;
        __m512i raw;
        if (FMT == 2) {
            const __m512i a = _mm512_loadu_si512(p);
            const __m512i b = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + 64)));
            f = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(fi, a)));
            raw = _mm512_permutex2var_epi32(a, ni, b);
        } else {
            f = _mm256_cvtph_ps(qr__gather4(p, bs));
            raw = qr__load4x16(p + off, bs);
        }
        q4_quad(FMT, MX, t, f, raw, xq, xs, oc, oe, S4, s4g, acc, corr);
    }
    int paired = 0;   /* res2 made (by the half quad) */
    if (nr) {   /* the last nr blocks: a quad with zeros for the rest */
        __m128i g;
        __m512i raw;
        qr__q4_tail_quad(w + 4 * nq * bs, bs, off, nr, &g, &raw);
        const __m256 f = _mm256_cvtph_ps(g);
        if (nr > 2) {
            q4_quad(FMT, MX, nq, f, raw, xq, xs, oc, oe, S4, s4g, acc, corr);
        } else {   /* lanes 0-7 of rows 2p and 2p + 1 in one vector, both rows' weights alike */
            const __m512i m4 = _mm512_set1_epi8(15);
            const __m512i di = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2);
            const __m512 dw2 = _mm512_permutexvar_ps(di, _mm512_castps256_ps512(f));
            const __m512i raw2 = _mm512_shuffle_i64x2(raw, raw, 0x44);
            const __m512i lo2 = _mm512_and_si512(raw2, m4);
            const __m512i hi2 = _mm512_and_si512(_mm512_srli_epi16(raw2, 4), m4);
            for (int p2 = 0; 2 * p2 < MX; p2++) {
                const uint8_t *tp = TP + (size_t)p2 * QR_TP_BYTES;
                __m512i s = FMT == 1 ? _mm512_loadu_si512(tp + 192) : _mm512_setzero_si512();
                s = _mm512_dpbusd_epi32(s, lo2, _mm512_loadu_si512(tp));
                s = _mm512_dpbusd_epi32(s, hi2, _mm512_loadu_si512(tp + 64));
                const __m512 sc = _mm512_mul_ps(dw2, _mm512_loadu_ps((const float *)(tp + 128)));
                const __m512 a = acc[2 * p2], b = acc[2 * p2 + 1];
                __m512 lo = _mm512_shuffle_f32x4(a, b, 0x44);   /* the lanes the blocks feed */
                lo = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(s), lo);
                res2[p2] = _mm512_add_ps(lo, _mm512_shuffle_f32x4(a, b, 0xee));
            }
            if (FMT == 2) {   /* as q4_quad's, for the half quad */
                const __m512i mi = _mm512_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7, 1, 3, 5, 7, 1, 3,
                                                     5, 7);
                const __m512 mw = _mm512_permutexvar_ps(mi, _mm512_castps256_ps512(f));
                for (int g4 = 0; 4 * g4 < MX; g4++)
                    corr[g4] = _mm512_fmadd_ps(mw, _mm512_loadu_ps(S4 + g4 * s4g + 16 * nq),
                                               corr[g4]);
            }
            paired = 1;
        }
    }
    if (!paired)
        for (int p2 = 0; 2 * p2 < MX; p2++) res2[p2] = pair_fold(acc[2 * p2], acc[2 * p2 + 1]);
    if (FMT == 2) {   /* the m * s lanes 4j + k of rows 2p, 2p + 1 into their odd lanes 2k + 1 */
        const __m512i oi[2] = {
            _mm512_setr_epi32(0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7),
            _mm512_setr_epi32(0, 8, 0, 9, 0, 10, 0, 11, 0, 12, 0, 13, 0, 14, 0, 15)};
        for (int p2 = 0; 2 * p2 < MX; p2++)
            res2[p2] = _mm512_add_ps(res2[p2], _mm512_maskz_permutexvar_ps(
                (__mmask16)0xaaaa, oi[p2 % 2], corr[p2 / 2]));
    }
}

/* ------------------------------------------------------------------ the row loops */
QR_AI void mrow(int fmt, int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                const float *S4, const uint8_t *TP, __m512 *res2) {
    if (fmt == 0) q8_mrow(MX, nb, w, xq, xs, res2);
    else if (fmt == 1) q4_mrow(1, MX, nb, w, xq, xs, NULL, TP, res2);
    else q4_mrow(2, MX, nb, w, xq, xs, S4, TP, res2);
}

QR_AI void mrow_n(int fmt, int mx, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                  const float *S4, const uint8_t *TP, __m512 *res2) {
    switch (mx) {
    case 1: mrow(fmt, 1, nb, w, xq, xs, S4, TP, res2); break;
    case 2: mrow(fmt, 2, nb, w, xq, xs, S4, TP, res2); break;
    case 3: mrow(fmt, 3, nb, w, xq, xs, S4, TP, res2); break;
    case 4: mrow(fmt, 4, nb, w, xq, xs, S4, TP, res2); break;
    case 5: mrow(fmt, 5, nb, w, xq, xs, S4, TP, res2); break;
    case 6: mrow(fmt, 6, nb, w, xq, xs, S4, TP, res2); break;
    case 7: mrow(fmt, 7, nb, w, xq, xs, S4, TP, res2); break;
    default: mrow(fmt, 8, nb, w, xq, xs, S4, TP, res2); break;
    }
}

/* Weight rows in groups of eight (one forward stream, as the decode kernels read it), each
 * against up to QR_MX activation rows at a time; each activation row's lanes of the eight
 * weight rows then summed as qrows_x sums them (hsum8x, two rows at a time). */
QR_AI void mrows(int fmt, int64_t nb, const uint8_t *w, size_t wrow, int64_t n,
                 const uint8_t *acts, int64_t M, float *y, int64_t ldy) {
    const size_t xs = qr_x_stride(nb);
    const float *S4 = fmt == 2 ? (const float *)(acts + (size_t)M * xs) : NULL;
    const uint8_t *TP = acts + (size_t)M * xs + s4_bytes(fmt, M, nb);
    qr__prefetch_head(w, (size_t)n * wrow);
    __m512 v[QR_MX / 2][8];
    for (int64_t r = 0; r < n; r += 8) {
        const int nr = n - r < 8 ? (int)(n - r) : 8;
        for (int64_t j0 = 0; j0 < M; j0 += QR_MX) {
            const int mx = M - j0 < QR_MX ? (int)(M - j0) : QR_MX, np = (mx + 1) / 2;
            const uint8_t *x0 = acts + (size_t)j0 * xs;
            const float *s0 = S4 ? S4 + (size_t)(j0 / 4) * qr_x_nb4(nb) * 4 : NULL;
            const uint8_t *t0 = TP + (size_t)(j0 / 2) * QR_TP_BYTES;
            for (int i = 0; i < 8; i++) {
                __m512 res2[QR_MX / 2];
                if (i < nr) mrow_n(fmt, mx, nb, w + (r + i) * wrow, x0, xs, s0, t0, res2);
                for (int p = 0; p < np; p++) v[p][i] = i < nr ? res2[p] : _mm512_setzero_ps();
            }
            for (int p = 0; p < np; p++) {
                float out[16];
                _mm512_storeu_ps(out, hsum8x_pair(v[p]));
                memcpy(y + (j0 + 2 * p) * ldy + r, out, (size_t)nr * sizeof(float));
                if (2 * p + 1 < mx)
                    memcpy(y + (j0 + 2 * p + 1) * ldy + r, out + 8, (size_t)nr * sizeof(float));
            }
        }
    }
}

void qr__mrows_avx512(int qtype, int64_t nb, const uint8_t *w, size_t wrow, int64_t n,
                      const uint8_t *acts, int64_t M, float *y, int64_t ldy) {
    switch (fmt_of(qtype)) {
    case 0: mrows(0, nb, w, wrow, n, acts, M, y, ldy); break;
    case 1: mrows(1, nb, w, wrow, n, acts, M, y, ldy); break;
    default: mrows(2, nb, w, wrow, n, acts, M, y, ldy); break;
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int qr_decode_rows_avx512_unused;   /* no VNNI in this compiler: AVX2 runs instead */
#endif
