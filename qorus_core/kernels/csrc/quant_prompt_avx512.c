/* quant_prompt_avx512.c - the AVX-512 VNNI tile of the prompt product (quant_prompt.c): 16
 * activation rows (one zmm lane each) against up to 8 weight rows. VNNI is enabled for this
 * file alone, as in quant_avx512.c; it runs only where qr__quant_tier() reports the AVX-512
 * tier (AVX512VNNI present).
 *
 * Per block b: the panel's 8 groups of 4 bytes (q + 128, unsigned) are 8 zmm, loaded once
 * and shared by the tile's rows; weight row j's 4 signed bytes of group g are broadcast from
 * the tile (vpdpbusd's memory operand), so each vpdpbusd adds 4 products of 16 row pairs.
 * The lane starts at the tile's c = -128 * sum w, which takes the +128 back out: the lane ends
 * as the exact integer sum of the block (Q6_K: of each half). Then, lane by lane, the portable
 * kernel's float32 operations in its order (quant_prompt.h): t = D * d, acc = acc + t * s
 * (Q6_K: s = s0 * sc0 + s1 * sc1, exact: every term an integer below 2^24; Q4_1: accm = accm
 * + m * s_x, y = acc + accm). */
#include <immintrin.h>
#include <string.h>

#include "qorus.h"
#include "quant_internal.h"
#include "quant_prompt.h"
#include "quant_x86.h"

#ifdef QR_HAVE_QUANT_AVX512

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif

#define QR_AI static inline __attribute__((always_inline))
#define QP_R 16

/* FMT (QP_*) and NW (1 .. 8) known at compile time. Group by group, each row's integer sum
 * takes its next vpdpbusd: consecutive steps of one sum are NW instructions apart, so their
 * latency hides behind the other rows'. */
QR_AI void tile16(int FMT, int NW, int64_t nb, const uint8_t *a, const uint8_t *w, int rows,
                  float *y, int64_t ldy) {
    __m512 acc[QP_NW], accm[QP_NW];
    for (int j = 0; j < NW; j++) acc[j] = accm[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, a += QP_APANEL_BLOCK(QP_R), w += QP_WBLOCK) {
        const int32_t *c0 = (const int32_t *)(w + QP_W_C0), *c1 = (const int32_t *)(w + QP_W_C1);
        const float *D = (const float *)(w + QP_W_D), *a0 = (const float *)(w + QP_W_A0);
        const float *a1 = (const float *)(w + QP_W_A1);
        __m512i s0[QP_NW], s1[QP_NW];
        for (int j = 0; j < NW; j++) {
            s0[j] = _mm512_set1_epi32(c0[j]);
            if (FMT == QP_Q6_K) s1[j] = _mm512_set1_epi32(c1[j]);
        }
        for (int g = 0; g < 8; g++) {
            const __m512i A = _mm512_load_si512((const void *)(a + 64 * g));
            for (int j = 0; j < NW; j++) {
                const __m512i wb = _mm512_set1_epi32((int)qr__ld32(w + 32 * j + 4 * g));
                if (FMT == QP_Q6_K && g >= 4) s1[j] = _mm512_dpbusd_epi32(s1[j], A, wb);
                else s0[j] = _mm512_dpbusd_epi32(s0[j], A, wb);
            }
        }
        const __m512 dx = _mm512_load_ps((const float *)(a + 32 * QP_R));
        for (int j = 0; j < NW; j++) {
            __m512 s;
            if (FMT == QP_Q6_K) {
                s = _mm512_mul_ps(_mm512_cvtepi32_ps(s0[j]), _mm512_set1_ps(a0[j]));
                s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[j]), _mm512_set1_ps(a1[j]), s);  /* exact */
            } else {
                s = _mm512_cvtepi32_ps(s0[j]);
            }
            const __m512 t = _mm512_mul_ps(_mm512_set1_ps(D[j]), dx);
            acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(t, s));
            if (FMT == QP_Q4_1) {
                const __m512 sx = _mm512_load_ps((const float *)(a + 32 * QP_R) + QP_R);
                accm[j] = _mm512_add_ps(accm[j], _mm512_mul_ps(_mm512_set1_ps(a0[j]), sx));
            }
        }
    }
    float out[QP_NW][QP_R];
    for (int j = 0; j < NW; j++)
        _mm512_storeu_ps(out[j], FMT == QP_Q4_1 ? _mm512_add_ps(acc[j], accm[j]) : acc[j]);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < NW; j++) y[r * ldy + j] = out[j][r];
}

QR_AI void tile16_fmt(int FMT, int64_t nb, const uint8_t *a, const uint8_t *w, int nw, int rows,
                      float *y, int64_t ldy) {
    switch (nw) {
    case 1: tile16(FMT, 1, nb, a, w, rows, y, ldy); break;
    case 2: tile16(FMT, 2, nb, a, w, rows, y, ldy); break;
    case 3: tile16(FMT, 3, nb, a, w, rows, y, ldy); break;
    case 4: tile16(FMT, 4, nb, a, w, rows, y, ldy); break;
    case 5: tile16(FMT, 5, nb, a, w, rows, y, ldy); break;
    case 6: tile16(FMT, 6, nb, a, w, rows, y, ldy); break;
    case 7: tile16(FMT, 7, nb, a, w, rows, y, ldy); break;
    default: tile16(FMT, 8, nb, a, w, rows, y, ldy); break;
    }
}

_Static_assert(QP_NW == 8, "tile16_fmt serves 1 .. 8 weight rows");

void qr__qp_tile_avx512(int fmt, int64_t nb, const uint8_t *a, const uint8_t *w, int nw,
                        int rows, float *y, int64_t ldy) {
    switch (fmt) {
    case QP_Q8_0: tile16_fmt(QP_Q8_0, nb, a, w, nw, rows, y, ldy); break;
    case QP_Q4_0: tile16_fmt(QP_Q4_0, nb, a, w, nw, rows, y, ldy); break;
    case QP_Q4_1: tile16_fmt(QP_Q4_1, nb, a, w, nw, rows, y, ldy); break;
    default: tile16_fmt(QP_Q6_K, nb, a, w, nw, rows, y, ldy); break;
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int qr_quant_prompt_avx512_unused;   /* no VNNI in this compiler: the AVX2 tile runs */
#endif
