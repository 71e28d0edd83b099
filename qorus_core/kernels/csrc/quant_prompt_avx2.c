/* quant_prompt_avx2.c - the AVX2 tile of the prompt product (quant_prompt.c): 8 activation
 * rows (one ymm lane each) against up to 8 weight rows, 4 at a time (Q8_0: 3); and the weight
 * tiles' builder, which the AVX-512 tier takes too (quant_prompt.h's layout).
 *
 * vpmaddubsw multiplies the panel's unsigned bytes (q + 128) by weight row j's 4 broadcast
 * signed bytes and adds adjacent pairs into int16 with saturation, so the int16 partial sums
 * are kept below 2^15 by summing at most L groups of 4 before widening (vpmaddwd by 1):
 *   Q4_0 (|w| <= 8):  a pair <= 2 * 255 * 8 = 4080, L = 8 groups (32640);
 *   Q4_1 (w <= 15):   a pair <= 7650, L = 4 (30600);
 *   Q6_K (|w| <= 32): a pair <= 16320, L = 2 (32640);
 *   Q8_0 (|w| <= 128): the bytes split into nibbles, q + 128 = 16 h + l (h, l <= 15): pairs
 *                      <= 3840 each, L = 8 (30720), widened as 16 * h-sum + l-sum.
 * The widened sums start at the tile's c = -128 * sum w: exact integer block sums, then the
 * portable kernel's float32 operations in its order (quant_prompt.h), lane by lane. */
#include <immintrin.h>
#include <string.h>

#include "qorus.h"
#include "quant_internal.h"
#include "quant_prompt.h"
#include "quant_x86.h"

#ifdef QR_HAVE_AVX2_BUILD

#define QR_AI static inline __attribute__((always_inline))
#define QP_R 8
#define QP_NJ 4   /* weight rows a pass */

/* tile rows j0 .. j0 + NW - 1 (NW <= QP_NJ), FMT (QP_*) known at compile time */
QR_AI void tile8(int FMT, int NW, int64_t nb, const uint8_t *a, const uint8_t *w, int j0,
                 int rows, float *y, int64_t ldy) {
    const int L = FMT == QP_Q4_1 ? 4 : FMT == QP_Q6_K ? 2 : 8;
    const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[QP_NJ], accm[QP_NJ];
    for (int j = 0; j < NW; j++) acc[j] = accm[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, a += QP_APANEL_BLOCK(QP_R), w += QP_WBLOCK) {
        const int32_t *c0 = (const int32_t *)(w + QP_W_C0) + j0;
        const int32_t *c1 = (const int32_t *)(w + QP_W_C1) + j0;
        const float *D = (const float *)(w + QP_W_D) + j0, *a0 = (const float *)(w + QP_W_A0) + j0;
        const float *a1 = (const float *)(w + QP_W_A1) + j0;
        const uint8_t *wq = w + 32 * j0;
        __m256i s0[QP_NJ], s1[QP_NJ];
        for (int j = 0; j < NW; j++) {
            s0[j] = _mm256_set1_epi32(c0[j]);
            s1[j] = _mm256_set1_epi32(FMT == QP_Q6_K ? c1[j] : 0);
        }
        for (int g0 = 0; g0 < 8; g0 += L) {
            __m256i p[QP_NJ], ph[QP_NJ];
            for (int j = 0; j < NW; j++) p[j] = ph[j] = _mm256_setzero_si256();
            for (int g = g0; g < g0 + L; g++) {
                const __m256i A = _mm256_load_si256((const __m256i *)(a + 32 * g));
                const __m256i Ah = _mm256_and_si256(_mm256_srli_epi16(A, 4), m4);
                const __m256i Al = _mm256_and_si256(A, m4);
                for (int j = 0; j < NW; j++) {
                    const __m256i wb = _mm256_set1_epi32((int)qr__ld32(wq + 32 * j + 4 * g));
                    if (FMT == QP_Q8_0) {
                        ph[j] = _mm256_add_epi16(ph[j], _mm256_maddubs_epi16(Ah, wb));
                        p[j] = _mm256_add_epi16(p[j], _mm256_maddubs_epi16(Al, wb));
                    } else {
                        p[j] = _mm256_add_epi16(p[j], _mm256_maddubs_epi16(A, wb));
                    }
                }
            }
            for (int j = 0; j < NW; j++) {
                __m256i v = _mm256_madd_epi16(p[j], ones);
                if (FMT == QP_Q8_0) v = _mm256_add_epi32(v, _mm256_madd_epi16(ph[j], sixteen));
                if (FMT == QP_Q6_K && g0 >= 4) s1[j] = _mm256_add_epi32(s1[j], v);
                else s0[j] = _mm256_add_epi32(s0[j], v);
            }
        }
        const __m256 dx = _mm256_load_ps((const float *)(a + 32 * QP_R));
        for (int j = 0; j < NW; j++) {
            __m256 s;
            if (FMT == QP_Q6_K) {
                s = _mm256_mul_ps(_mm256_cvtepi32_ps(s0[j]), _mm256_set1_ps(a0[j]));
                s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1[j]), _mm256_set1_ps(a1[j]), s); /* exact */
            } else {
                s = _mm256_cvtepi32_ps(s0[j]);
            }
            const __m256 t = _mm256_mul_ps(_mm256_set1_ps(D[j]), dx);
            acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(t, s));
            if (FMT == QP_Q4_1) {
                const __m256 sx = _mm256_load_ps((const float *)(a + 32 * QP_R) + QP_R);
                accm[j] = _mm256_add_ps(accm[j], _mm256_mul_ps(_mm256_set1_ps(a0[j]), sx));
            }
        }
    }
    float out[QP_NJ][QP_R];
    for (int j = 0; j < NW; j++)
        _mm256_storeu_ps(out[j], FMT == QP_Q4_1 ? _mm256_add_ps(acc[j], accm[j]) : acc[j]);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < NW; j++) y[r * ldy + j0 + j] = out[j][r];
}

QR_AI void tile8_fmt(int FMT, int64_t nb, const uint8_t *a, const uint8_t *w, int nw, int rows,
                     float *y, int64_t ldy) {
    const int nj = FMT == QP_Q8_0 ? 3 : QP_NJ;   /* Q8_0: two int16 sums a row (16 ymm) */
    for (int j0 = 0; j0 < nw; j0 += nj) {
        switch (nw - j0 < nj ? nw - j0 : nj) {
        case 1: tile8(FMT, 1, nb, a, w, j0, rows, y, ldy); break;
        case 2: tile8(FMT, 2, nb, a, w, j0, rows, y, ldy); break;
        case 3: tile8(FMT, 3, nb, a, w, j0, rows, y, ldy); break;
        default: tile8(FMT, 4, nb, a, w, j0, rows, y, ldy); break;
        }
    }
}

/* ------------------------------------------------------------------ weight tiles */
/* block b of a Q6_K row as 32 bytes q - 32 (quant_kformats.c's layout: values 32 (b % 8) ..
 * of super-block b / 8 take their low 4 bits from ql >> 4h and their high 2 from qh >> 2s) */
static inline __m256i q6k_block(const uint8_t *sb, int bb) {
    const int i = bb / 4, s = bb % 4, h = s / 2;
    const __m256i ql = _mm256_loadu_si256((const __m256i *)(sb + 64 * i + 32 * (bb & 1)));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(sb + 128 + 32 * i));
    const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * h)),
                                        _mm256_set1_epi8(15));
    const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * s)),
                                        _mm256_set1_epi8(3));
    return _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
}

static inline uint16_t ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* Block by block, the tile's 8 rows side by side: each row's 32 signed bytes stored, their
 * 4-byte sums (vpmaddubsw by 1, vpmaddwd by 1) reduced by two rounds of vphaddd into the
 * half-block sums of 4 rows a 128-bit half; the fp16 scales of the 8 rows converted at once.
 * Rows past nw: zeros. */
QR_AI void build_tile(int FMT, const uint8_t *w, size_t rb, int nw, int64_t nb, uint8_t *t) {
    const size_t bs = FMT == QP_Q8_0 ? 34 : FMT == QP_Q4_0 ? 18 : FMT == QP_Q4_1 ? 20 : 210;
    const __m256i m4 = _mm256_set1_epi8(15), ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *tb = t + (size_t)b * QP_WBLOCK;
        /* Q6_K: block b is values 32 (b % 8) .. of super-block b / 8 */
        const size_t at = FMT == QP_Q6_K ? (size_t)(b / 8) * bs : (size_t)b * bs;
        const int bb = (int)(b % 8);
        __m256i sum4[QP_NW];
        uint16_t dh[QP_NW] = {0}, mh[QP_NW] = {0};
        int8_t sc0[QP_NW] = {0}, sc1[QP_NW] = {0};
        for (int j = 0; j < QP_NW; j++) {
            __m256i q = _mm256_setzero_si256();
            if (j < nw) {
                const uint8_t *blk = w + (size_t)j * rb + at;
                if (FMT == QP_Q8_0) {
                    dh[j] = ld16(blk);
                    q = _mm256_loadu_si256((const __m256i *)(blk + 2));
                } else if (FMT == QP_Q4_0 || FMT == QP_Q4_1) {
                    const __m128i raw =
                        _mm_loadu_si128((const __m128i *)(blk + (FMT == QP_Q4_1 ? 4 : 2)));
                    q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
                    dh[j] = ld16(blk);
                    if (FMT == QP_Q4_1) mh[j] = ld16(blk + 2);
                    else q = _mm256_sub_epi8(q, _mm256_set1_epi8(8));
                } else {
                    q = q6k_block(blk, bb);
                    dh[j] = ld16(blk + 208);
                    sc0[j] = (int8_t)blk[192 + 2 * bb];
                    sc1[j] = (int8_t)blk[192 + 2 * bb + 1];
                }
            }
            _mm256_storeu_si256((__m256i *)(tb + 32 * (size_t)j), q);
            sum4[j] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);   /* exact */
        }
        /* [r0 r1 r2 r3 | ...] half sums: low 128 bits the first halves, high the second */
        const __m256i h03 = _mm256_hadd_epi32(_mm256_hadd_epi32(sum4[0], sum4[1]),
                                              _mm256_hadd_epi32(sum4[2], sum4[3]));
        const __m256i h47 = _mm256_hadd_epi32(_mm256_hadd_epi32(sum4[4], sum4[5]),
                                              _mm256_hadd_epi32(sum4[6], sum4[7]));
        const __m256i s0 = _mm256_permute2x128_si256(h03, h47, 0x20);   /* values 0 .. 15 */
        const __m256i s1 = _mm256_permute2x128_si256(h03, h47, 0x31);   /* values 16 .. 31 */
        const __m256i c0 = FMT == QP_Q6_K ? s0 : _mm256_add_epi32(s0, s1);
        _mm256_storeu_si256((__m256i *)(tb + QP_W_C0), _mm256_slli_epi32(
            _mm256_sub_epi32(_mm256_setzero_si256(), c0), 7));   /* -128 * the sums */
        _mm256_storeu_si256((__m256i *)(tb + QP_W_C1), _mm256_slli_epi32(
            _mm256_sub_epi32(_mm256_setzero_si256(), s1), 7));
        _mm256_storeu_ps((float *)(tb + QP_W_D),
                         _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dh)));
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        if (FMT == QP_Q4_1) a0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)mh));
        if (FMT == QP_Q6_K) {
            a0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)sc0)));
            a1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)sc1)));
        }
        _mm256_storeu_ps((float *)(tb + QP_W_A0), a0);
        _mm256_storeu_ps((float *)(tb + QP_W_A1), a1);
    }
}

_Static_assert(QP_NW == 8, "build_tile reduces 8 rows' sums a block (two 4-row hadd trees)");

void qr__qp_build_tile_avx2(int fmt, const uint8_t *w, size_t rb, int nw, int64_t nb,
                            uint8_t *t) {
    switch (fmt) {
    case QP_Q8_0: build_tile(QP_Q8_0, w, rb, nw, nb, t); break;
    case QP_Q4_0: build_tile(QP_Q4_0, w, rb, nw, nb, t); break;
    case QP_Q4_1: build_tile(QP_Q4_1, w, rb, nw, nb, t); break;
    default: build_tile(QP_Q6_K, w, rb, nw, nb, t); break;
    }
}

/* ------------------------------------------------------------------ the tile */
void qr__qp_tile_avx2(int fmt, int64_t nb, const uint8_t *a, const uint8_t *w, int nw, int rows,
                      float *y, int64_t ldy) {
    switch (fmt) {
    case QP_Q8_0: tile8_fmt(QP_Q8_0, nb, a, w, nw, rows, y, ldy); break;
    case QP_Q4_0: tile8_fmt(QP_Q4_0, nb, a, w, nw, rows, y, ldy); break;
    case QP_Q4_1: tile8_fmt(QP_Q4_1, nb, a, w, nw, rows, y, ldy); break;
    default: tile8_fmt(QP_Q6_K, nb, a, w, nw, rows, y, ldy); break;
    }
}

#else
typedef int qr_quant_prompt_avx2_unused;   /* no AVX2 build: the portable path runs */
#endif
