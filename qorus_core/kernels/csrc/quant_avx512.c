/* quant_avx512.c - the AVX-512 (BW/VL + VNNI) kernels of quant.c: integer block dot products of
 * quantized weights with q8 activation rows in the "x" layouts (quant_internal.h) by vpdpbusd,
 * the F16 dot product, the q8 activation quantizer (q, d, s bit-identical to the portable
 * one) and the Q8_0 / Q4 dequantizer (bit-identical: matmul_qf's panels). VNNI is enabled for this file alone (the *_avx512.c flags leave it out, so no other
 * kernel can emit it); quant.c calls these only where cpu.c reports the AVX-512 tier and the
 * CPU has AVX512VNNI (cpu.c's family table says the same).
 *
 * vpdpbusd multiplies unsigned by signed bytes and adds each 4 products to an int32 lane with no
 * intermediate saturation, so the lanes are exact:
 *   Q8_0: the weight enters as w ^ 0x80 = w + 128 (unsigned); the lane starts at C = -128 * (its
 *         4 activations' sum), so it ends as the signed dot product (per lane, as the AVX2
 *         sign trick gives).
 *   Q4:   nibbles are unsigned already; Q4_0's -8 enters as the start C = -8 * the lane's
 *         activation sum (an exact integer: the AVX2 code applies it in float instead);
 *         Q4_1's m term is m * s per block, in float, as the portable code does.
 * Each lane is then converted and multiplied by d_w * d_x of its block (E holds d_x once per
 * lane, d_w is expanded once per weight quad and shared by every activation row), and summed in
 * float32: within the products' tolerance of the portable path, as the AVX2 path is. */
#include <immintrin.h>
#include <string.h>

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

/* How far ahead in a decode weight stream to prefetch (as quant_avx2.c: about 2 KB, DRAM
 * latency at one thread's streaming rate) */
#define QR_PF_AHEAD 2048

/* ------------------------------------------------------------------ Q8_0 (layout 0) */
/* One Q8_0 weight row against MX q8 rows (layout 0, xs bytes apart): res[j] holds 8 lanes
 * whose sum is row j's dot (qr__q8_blocks_x, then an odd last block). DEC: the decode stream
 * (prefetched QR_PF_AHEAD bytes on; a prompt's tile, 8 blocks on). */
QR_AI void q8x(int MX, int DEC, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
               __m256 *res) {
    __m512 acc[QR_QMAX_ROWS_X][2];
    const int64_t b = qr__q8_blocks_x(MX, nb, w, xq, xs, DEC ? QR_PF_AHEAD : 8 * QR_Q8_0_BS,
                                      _MM_HINT_T0, acc);
    for (int j = 0; j < MX; j++) res[j] = qr__fold512(_mm512_add_ps(acc[j][0], acc[j][1]));
    if (b < nb) {   /* one last block: 8 lanes */
        const float dw = qr__h2f(w + b * QR_Q8_0_BS);
        for (int j = 0; j < MX; j++) {
            const uint8_t *r = xq + j * xs;
            const float *d = (const float *)(r + qr_x_off_d(nb));
            res[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * d[b]),
                                     _mm256_cvtepi32_ps(qr__q8_last_block_x(nb, b, w, r)), res[j]);
        }
    }
}

/* ------------------------------------------------------------------ Q4_0 / Q4_1 (layout 1) */
/* One Q4 weight row (FMT 1: Q4_0, 2: Q4_1) against MX q8 rows in layout 1: a quad of blocks a
 * step, its 64 nibble bytes in one zmm (block 4t + k in 128-bit lane k), so one unpack, two
 * vpdpbusd, one convert and one FMA serve four blocks of a row. Per quad:
 *   f  = [d0 c0 d1 c1 d2 c2 d3 c3]   (the blocks' first dwords: c = m for Q4_1, junk for Q4_0)
 *   dw = [d0 x4 | d1 x4 | d2 x4 | d3 x4], shared by the rows; scale = dw * E (row's d_x);
 *   Q4_1: corr += f * X, X = [0 s0 0 s1 0 s2 0 s3]: its odd lanes sum m * s.
 * A last 1-3 blocks make a quad whose missing blocks are zeros on both sides (the weight's are
 * never read). res[j]: 8 lanes summing to row j's dot. */
QR_AI void q4_quad(int FMT, int MX, int64_t t, __m256 f, __m512i raw, const uint8_t *xq,
                   size_t xs, size_t oc, size_t oe, size_t ox, __m512 *acc, __m256 *corr) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6);
    __m512 dw = _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(f));
    __m512i lo = _mm512_and_si512(raw, m4);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
    for (int j = 0; j < MX; j++) {
        const uint8_t *r = xq + j * xs;
        const __m512i *q = (const __m512i *)(r + 128 * t);
        __m512i s = FMT == 1
            ? _mm512_loadu_si512((const int32_t *)(r + oc) + 16 * t) : _mm512_setzero_si512();
        s = _mm512_dpbusd_epi32(s, lo, _mm512_loadu_si512(q));
        s = _mm512_dpbusd_epi32(s, hi, _mm512_loadu_si512(q + 1));
        __m512 sc = _mm512_mul_ps(dw, _mm512_loadu_ps((const float *)(r + oe) + 16 * t));
        acc[j] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(s), acc[j]);
        if (FMT == 2)
            corr[j] = _mm256_fmadd_ps(f, _mm256_loadu_ps((const float *)(r + ox) + 8 * t),
                                      corr[j]);
    }
}

QR_AI void q4_prefetch(int DEC, const uint8_t *p, size_t bs) {
    if (DEC) {
        _mm_prefetch((const char *)(p + QR_PF_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 64), _MM_HINT_T0);
    } else {
        _mm_prefetch((const char *)(p + 12 * bs), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + 12 * bs + 64), _MM_HINT_T0);
    }
}

QR_AI void q4x(int FMT, int MX, int DEC, int64_t nb, const uint8_t *w, const uint8_t *xq,
               size_t xs, __m256 *res) {
    const size_t bs = FMT == 1 ? 18 : 20, off = FMT == 1 ? 2 : 4;
    const size_t oc = qr_x_off_c(nb), oe = qr_x_off_e(nb), ox = qr_x_off_x(nb);
    const int64_t nq = nb / 4, nr = nb % 4;
    __m512 acc[QR_QMAX_ROWS_X];
    __m256 corr[QR_QMAX_ROWS_X];
    for (int j = 0; j < MX; j++) {
        acc[j] = _mm512_setzero_ps();
        corr[j] = _mm256_setzero_ps();
    }
    for (int64_t t = 0; t < nq; t++) {
        const uint8_t *p = w + 4 * t * bs;
        q4_prefetch(DEC, p, bs);
        q4_quad(FMT, MX, t, _mm256_cvtph_ps(qr__gather4(p, bs)), qr__load4x16(p + off, bs), xq, xs, oc,
                oe, ox, acc, corr);
    }
    if (nr) {   /* the last nr blocks: a quad with zeros for the rest */
        __m128i g;
        __m512i raw;
        qr__q4_tail_quad(w + 4 * nq * bs, bs, off, nr, &g, &raw);
        q4_quad(FMT, MX, nq, _mm256_cvtph_ps(g), raw, xq, xs, oc, oe, ox, acc, corr);
    }
    const __m256 odd = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
    for (int j = 0; j < MX; j++) {
        res[j] = qr__fold512(acc[j]);
        if (FMT == 2)
            res[j] = _mm256_add_ps(res[j], _mm256_and_ps(corr[j], odd));
    }
}

/* ------------------------------------------------------------------ entry points */
/* the prompt kernels: one weight row against mx (1 .. QR_QMAX_ROWS_X) q8 rows */
_Static_assert(QR_QMAX_ROWS_X == 8, "qdot_x sums its rows' lanes 8 at a time (hsum8x)");
QR_AI void qdot_x(int fmt, int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                  float *out) {
    __m256 res[8];
    if (fmt == 0) q8x(MX, 0, nb, w, xq, xs, res);
    else if (fmt == 1) q4x(1, MX, 0, nb, w, xq, xs, res);
    else q4x(2, MX, 0, nb, w, xq, xs, res);
    for (int j = MX; j < 8; j++) res[j] = _mm256_setzero_ps();
    float o[8];   /* hsum8x: a row's sum does not depend on MX or its place */
    _mm256_storeu_ps(o, qr__hsum8x(res));
    for (int j = 0; j < MX; j++) out[j] = o[j];
}

#define QDOTX(name, fmt)                                                                    \
    void name(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) { \
        switch (mx) {                                                                       \
        case 1: qdot_x(fmt, 1, nb, w, xq, xs, out); break;                                  \
        case 2: qdot_x(fmt, 2, nb, w, xq, xs, out); break;                                  \
        case 3: qdot_x(fmt, 3, nb, w, xq, xs, out); break;                                  \
        case 4: qdot_x(fmt, 4, nb, w, xq, xs, out); break;                                  \
        case 5: qdot_x(fmt, 5, nb, w, xq, xs, out); break;                                  \
        case 6: qdot_x(fmt, 6, nb, w, xq, xs, out); break;                                  \
        case 7: qdot_x(fmt, 7, nb, w, xq, xs, out); break;                                  \
        default: qdot_x(fmt, 8, nb, w, xq, xs, out); break;                                 \
        }                                                                                   \
    }
QDOTX(qr__qdot_q8_0_avx512, 0)
QDOTX(qr__qdot_q4_0_avx512, 1)
QDOTX(qr__qdot_q4_1_avx512, 2)

/* Decode rows against one q8 row: one forward weight stream, prefetched QR_PF_AHEAD bytes on;
 * each row as 8 lanes, eight rows' lanes summed at once (hsum8x), as quant_avx2.c does. */
QR_AI void qrows_x(int fmt, int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                   const uint8_t *xq, float *y) {
    qr__prefetch_head(w, (size_t)nrows * wrow);
    for (int64_t r = 0; r < nrows; r += 8) {
        const int n = nrows - r < 8 ? (int)(nrows - r) : 8;
        __m256 v[8];
        for (int i = 0; i < 8; i++) {
            const uint8_t *row = w + (r + i) * wrow;
            if (i >= n) v[i] = _mm256_setzero_ps();
            else if (fmt == 0) q8x(1, 1, nb, row, xq, 0, &v[i]);
            else if (fmt == 1) q4x(1, 1, 1, nb, row, xq, 0, &v[i]);
            else q4x(2, 1, 1, nb, row, xq, 0, &v[i]);
        }
        float out[8];
        _mm256_storeu_ps(out, qr__hsum8x(v));
        memcpy(y + r, out, (size_t)n * sizeof(float));
    }
}

void qr__qrows_q8_0_avx512(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                           const uint8_t *xq, float *y) {
    qrows_x(0, nb, w, wrow, nrows, xq, y);
}
void qr__qrows_q4_0_avx512(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                           const uint8_t *xq, float *y) {
    qrows_x(1, nb, w, wrow, nrows, xq, y);
}
void qr__qrows_q4_1_avx512(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                           const uint8_t *xq, float *y) {
    qrows_x(2, nb, w, wrow, nrows, xq, y);
}

/* ------------------------------------------------------------------ F16 */
/* F16 weights against MX float rows: 16 a step, 4 accumulators (MX = 1) or 2 a row; the last
 * 1-15 values through masked loads (zeros past k). */
QR_AI void fdot_x(int MX, int64_t k, const uint16_t *w, const float *x, int64_t ldx,
                  float *out) {
    enum { NA = 4 };
    const int na = MX == 1 ? 4 : 2;
    __m512 acc[QR_QMAX_ROWS_X][NA];
    for (int j = 0; j < MX; j++)
        for (int a = 0; a < na; a++) acc[j][a] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 * na <= k; i += 16 * na) {
        _mm_prefetch((const char *)(w + i + 512), _MM_HINT_T0);   /* 1 KiB ahead */
        if (na == 4) _mm_prefetch((const char *)(w + i + 544), _MM_HINT_T0);
        for (int a = 0; a < na; a++) {
            __m512 wv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + 16 * a)));
            for (int j = 0; j < MX; j++)
                acc[j][a] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + j * ldx + i + 16 * a),
                                            acc[j][a]);
        }
    }
    for (; i + 16 <= k; i += 16) {
        __m512 wv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i)));
        for (int j = 0; j < MX; j++)
            acc[j][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + j * ldx + i), acc[j][0]);
    }
    if (i < k) {
        const __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        __m512 wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + i));
        for (int j = 0; j < MX; j++)
            acc[j][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + j * ldx + i), acc[j][0]);
    }
    for (int j = 0; j < MX; j++) {
        __m512 t = acc[j][0];
        for (int a = 1; a < na; a++) t = _mm512_add_ps(t, acc[j][a]);
        out[j] = qr__hsum256(qr__fold512(t));
    }
}

void qr__fdot_f16_avx512(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx,
                         float *out) {
    switch (mx) {
    case 1: fdot_x(1, k, w, x, ldx, out); break;
    case 2: fdot_x(2, k, w, x, ldx, out); break;
    case 3: fdot_x(3, k, w, x, ldx, out); break;
    case 4: fdot_x(4, k, w, x, ldx, out); break;
    case 5: fdot_x(5, k, w, x, ldx, out); break;
    case 6: fdot_x(6, k, w, x, ldx, out); break;
    case 7: fdot_x(7, k, w, x, ldx, out); break;
    default: fdot_x(8, k, w, x, ldx, out); break;
    }
}

void qr__qrows_f16_avx512(int64_t k, const uint8_t *w, size_t wrow, int64_t nrows,
                          const uint8_t *x, float *y) {
    for (int64_t r = 0; r < nrows; r++)
        fdot_x(1, k, (const uint16_t *)(w + r * wrow), (const float *)x, 0, y + r);
}

/* ------------------------------------------------------------------ q8 activation rows */
/* Same operations as quantize_q8_row in quant.c: amax, d = amax / 127, id = 1 / d,
 * q = |v| truncated + (frac >= 0.5), signed; s = d * sum(q); a block with a NaN or inf: q = 0,
 * d = s = NaN. Then layout 0's or 1's order and C, E, X (quant_internal.h). */
void qr__quantize_q8_row_avx512(const float *x, int64_t k, uint8_t *row, int layout) {
    const int64_t nb = k / QR_QK, nq = layout ? (nb + 3) / 4 : 0;   /* whole or last quads */
    float *d = (float *)(row + qr_x_off_d(nb)), *s = d + nb;
    int32_t *C = (int32_t *)(row + qr_x_off_c(nb));
    float *E = (float *)(row + qr_x_off_e(nb)), *X = (float *)(row + qr_x_off_x(nb));
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m256i ones8 = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * QR_QK;
        __m512 v[2] = {_mm512_loadu_ps(xb), _mm512_loadu_ps(xb + 16)};
        __mmask16 fin = _mm512_cmp_ps_mask(_mm512_sub_ps(v[0], v[0]), _mm512_setzero_ps(),
                                           _CMP_EQ_OQ) &
                        _mm512_cmp_ps_mask(_mm512_sub_ps(v[1], v[1]), _mm512_setzero_ps(),
                                           _CMP_EQ_OQ);
        __m512i qi[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        float db = __builtin_nanf("");
        if (fin == 0xffff) {
            __m512 m = _mm512_max_ps(
                _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v[0]), absmask)),
                _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v[1]), absmask)));
            float amax = _mm512_reduce_max_ps(m);   /* finite, >= +0: any order is exact */
            db = amax / 127.0f;
            float id = db != 0.0f ? 1.0f / db : 0.0f;
            const __m512 vid = _mm512_set1_ps(id);
            for (int i = 0; i < 2; i++) {
                __m512 t = _mm512_mul_ps(v[i], vid);
                __m512i tb = _mm512_castps_si512(t);
                __m512 a = _mm512_castsi512_ps(_mm512_and_si512(tb, absmask));
                __m512 tr = _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(a, tr), half, _CMP_GE_OQ);
                __m512 r = _mm512_mask_add_ps(tr, up, tr, one);
                r = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r),
                                                        _mm512_andnot_si512(absmask, tb)));
                qi[i] = _mm512_cvttps_epi32(r);
            }
        }
        const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qi[0], qi[1]));
        d[b] = db;
        s[b] = db * (float)sum;
        __m128i lo = _mm512_cvtepi32_epi8(qi[0]), hi = _mm512_cvtepi32_epi8(qi[1]);
        __m256i sum4 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones8,
                                           _mm256_set_m128i(hi, lo));   /* 8 sums of 4 q */
        if (layout == 0) {
            _mm_storeu_si128((__m128i *)(row + 32 * b), lo);
            _mm_storeu_si128((__m128i *)(row + 32 * b + 16), hi);
            _mm256_storeu_si256((__m256i *)(C + 8 * b), _mm256_slli_epi32(
                _mm256_sub_epi32(_mm256_setzero_si256(), sum4), 7));   /* -128 * sums */
            _mm256_storeu_ps(E + 8 * b, _mm256_set1_ps(db));
        } else {
            const int64_t t = b / 4, kk = b % 4;
            _mm_storeu_si128((__m128i *)(row + 128 * t + 16 * kk), lo);
            _mm_storeu_si128((__m128i *)(row + 128 * t + 64 + 16 * kk), hi);
            __m128i g = _mm_add_epi32(_mm256_castsi256_si128(sum4),
                                      _mm256_extracti128_si256(sum4, 1));
            _mm_storeu_si128((__m128i *)(C + 16 * t + 4 * kk),
                             _mm_slli_epi32(_mm_sub_epi32(_mm_setzero_si128(), g), 3));
            _mm_storeu_ps(E + 16 * t + 4 * kk, _mm_set1_ps(db));
            X[8 * t + 2 * kk] = 0.0f;
            X[8 * t + 2 * kk + 1] = s[b];
        }
    }
    for (int64_t b = nb; b < 4 * nq; b++) {   /* a last quad's missing blocks: zeros */
        const int64_t t = b / 4, kk = b % 4;
        memset(row + 128 * t + 16 * kk, 0, 16);
        memset(row + 128 * t + 64 + 16 * kk, 0, 16);
        memset(C + 16 * t + 4 * kk, 0, 16);
        memset(E + 16 * t + 4 * kk, 0, 16);
        X[8 * t + 2 * kk] = X[8 * t + 2 * kk + 1] = 0.0f;
    }
}

/* ------------------------------------------------------------------ dequantization */
/* The portable formulas lane for lane: Q8_0 q * d, Q4_0 d * (q - 8), Q4_1 d * q + m (a multiply
 * then an add, never fused): the same bits. */
void qr__dequantize_row_avx512(int qtype, const uint8_t *w, float *y, int64_t nb) {
    const size_t bs = qtype == QR_QTYPE_Q8_0 ? 34 : qtype == QR_QTYPE_Q4_0 ? 18 : 20;
    const __m128i m4 = _mm_set1_epi8(15);
    for (int64_t b = 0; b < nb; b++, w += bs, y += QR_QK) {
        const __m512 d = _mm512_set1_ps(qr__h2f(w));
        __m512i q0, q1;
        if (qtype == QR_QTYPE_Q8_0) {
            q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(w + 2)));
            q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(w + 18)));
        } else {
            __m128i raw = _mm_loadu_si128((const __m128i *)(w + (qtype == QR_QTYPE_Q4_0 ? 2 : 4)));
            q0 = _mm512_cvtepu8_epi32(_mm_and_si128(raw, m4));
            q1 = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
            if (qtype == QR_QTYPE_Q4_0) {
                q0 = _mm512_sub_epi32(q0, _mm512_set1_epi32(8));
                q1 = _mm512_sub_epi32(q1, _mm512_set1_epi32(8));
            }
        }
        __m512 y0 = _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d);
        __m512 y1 = _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d);
        if (qtype == QR_QTYPE_Q4_1) {
            const __m512 m = _mm512_set1_ps(qr__h2f(w + 2));
            y0 = _mm512_add_ps(y0, m);
            y1 = _mm512_add_ps(y1, m);
        }
        _mm512_storeu_ps(y, y0);
        _mm512_storeu_ps(y + 16, y1);
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int qr_quant_avx512_unused;   /* no VNNI in this compiler: quant runs AVX2 */
#endif
