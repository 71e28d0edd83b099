/* quant_kq_dequant_avx512.c - the AVX-512 dequantizers of quant_kformats.c's formats (Q5_0,
 * Q5_1, IQ4_NL, Q2_K .. Q6_K: matmul_qf's panels, embedding rows) and the BF16 kernels (fdot,
 * rows1, the conversion), the part of quant_kq_avx512.c's table it fills. Dequantization is the
 * portable formulas lane for lane in the same float operation order (exact integers converted;
 * a multiply, then an add or a subtract, never fused): the same bits as quant_kformats.c.
 * Compiled with VNNI enabled as quant_kq_avx512.c is (its callers check the CPU the same way). */
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
#include "quant_kq_avx512.h"

/* ------------------------------------------------------------------ dequantization */
/* y[k] = a row of 32-value blocks: the block dequantizers' expressions per lane
 *   Q5_0 d * (float)(q - 16), Q5_1 d * (float)q + m, IQ4_NL d * (float)KV[nib] */
QR_AI void kq_dequant32(int F, const uint8_t *w, float *y, int64_t k) {
    const size_t bs = kq_bs(F);
    const __m128i m4 = _mm_set1_epi8(15);
    const __m128i kv = _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53,
                                     69, 89, 113);
    for (int64_t b = 0; b < k / QR_QK; b++, w += bs, y += QR_QK) {
        const __m512 d = _mm512_set1_ps(qr__h2f(w));
        const size_t oq = F == KQ_Q5_0 ? 6 : F == KQ_Q5_1 ? 8 : 2;
        const __m128i raw = _mm_loadu_si128((const __m128i *)(w + oq));
        const __m128i lo = _mm_and_si128(raw, m4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
        __m512i q0, q1;
        if (F == KQ_IQ4NL) {
            q0 = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(kv, lo));
            q1 = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(kv, hi));
        } else {
            const uint32_t h = qr__ld32(w + (F == KQ_Q5_0 ? 2 : 4));
            const __m512i b16 = _mm512_set1_epi32(16);
            q0 = _mm512_cvtepu8_epi32(lo);
            q1 = _mm512_cvtepu8_epi32(hi);
            q0 = _mm512_mask_or_epi32(q0, (__mmask16)h, q0, b16);
            q1 = _mm512_mask_or_epi32(q1, (__mmask16)(h >> 16), q1, b16);
            if (F == KQ_Q5_0) {
                q0 = _mm512_sub_epi32(q0, b16);
                q1 = _mm512_sub_epi32(q1, b16);
            }
        }
        __m512 y0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(q0));
        __m512 y1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(q1));
        if (F == KQ_Q5_1) {
            const __m512 m = _mm512_set1_ps(qr__h2f(w + 2));
            y0 = _mm512_add_ps(y0, m);
            y1 = _mm512_add_ps(y1, m);
        }
        _mm512_storeu_ps(y, y0);
        _mm512_storeu_ps(y + 16, y1);
    }
}

/* the super-block formats: per sub-block j, dl = d * (float)sc_j (and ml = dmin * (float)m_j)
 * in vectors, stored and broadcast back (a load each); y = dl * (float)q (- ml) per lane */
QR_AI void kq_dequant256(int F, const uint8_t *w, float *y, int64_t k) {
    const size_t bs = kq_sbs(F);
    _Alignas(64) float dl[16], ml[16];
    for (int64_t u = 0; u < k / 256; u++, w += bs, y += 256) {
        if (F == KQ_Q2K) {
            const __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)w));
            _mm512_store_ps(dl, _mm512_mul_ps(_mm512_set1_ps(qr__h2f(w + 80)),
                                              _mm512_cvtepi32_ps(_mm512_and_si512(s, _mm512_set1_epi32(15)))));
            _mm512_store_ps(ml, _mm512_mul_ps(_mm512_set1_ps(qr__h2f(w + 82)),
                                              _mm512_cvtepi32_ps(_mm512_srli_epi32(s, 4))));
            for (int i = 0; i < 2; i++)
                for (int h = 0; h < 2; h++) {   /* qs[32i + 16h ..][16] >> 2s: sub-block 8i + 2s + h */
                    const __m512i r = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 16 + 32 * i + 16 * h)));
                    for (int s = 0; s < 4; s++) {
                        const int j = 8 * i + 2 * s + h;
                        const __m512i q = _mm512_and_si512(_mm512_srli_epi32(r, 2 * s), _mm512_set1_epi32(3));
                        _mm512_storeu_ps(y + 16 * j, _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(dl[j]), _mm512_cvtepi32_ps(q)),
                                                                   _mm512_set1_ps(ml[j])));
                    }
                }
        } else if (F == KQ_Q3K) {
            const __m512i s6 = _mm512_cvtepu8_epi32(kq_scales_q3k(_mm_loadu_si128((const __m128i *)(w + 94))));
            _mm512_store_ps(dl, _mm512_mul_ps(_mm512_set1_ps(qr__h2f(w + 108)),
                                              _mm512_cvtepi32_ps(_mm512_sub_epi32(s6, _mm512_set1_epi32(32)))));
            for (int h = 0; h < 2; h++) {
                const __m512i hm = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 16 * h)));
                for (int i = 0; i < 2; i++) {
                    const __m512i r = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 32 + 32 * i + 16 * h)));
                    for (int s = 0; s < 4; s++) {   /* e = 128i + 32s + 16h + l: sub-block 8i + 2s + h */
                        const int j = 8 * i + 2 * s + h;
                        __m512i q = _mm512_and_si512(_mm512_srli_epi32(r, 2 * s), _mm512_set1_epi32(3));
                        const __mmask16 clear = _mm512_testn_epi32_mask(hm, _mm512_set1_epi32(1 << (4 * i + s)));
                        q = _mm512_mask_sub_epi32(q, clear, q, _mm512_set1_epi32(4));
                        _mm512_storeu_ps(y + 16 * j, _mm512_mul_ps(_mm512_set1_ps(dl[j]), _mm512_cvtepi32_ps(q)));
                    }
                }
            }
        } else if (F == KQ_Q6K) {
            const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(w + 192)));
            _mm512_store_ps(dl, _mm512_mul_ps(_mm512_set1_ps(qr__h2f(w + 208)), _mm512_cvtepi32_ps(sc)));
            for (int i = 0; i < 2; i++)
                for (int g = 0; g < 2; g++) {   /* l = 16g + .. < 32 of the 32-byte qh row */
                    const __m512i hr = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 128 + 32 * i + 16 * g)));
                    for (int lh = 0; lh < 2; lh++) {   /* ql byte l' = 16g + 32lh (< 64) */
                        const __m512i lr = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 64 * i + 16 * g + 32 * lh)));
                        for (int h = 0; h < 2; h++) {
                            /* e = 128i + 64h + 32lh + 16g + l: s = 2h + lh */
                            const int s = 2 * h + lh, j = 8 * i + 2 * s + g;
                            const __m512i lo = h ? _mm512_srli_epi32(lr, 4) : _mm512_and_si512(lr, _mm512_set1_epi32(15));
                            const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(hr, 2 * s), _mm512_set1_epi32(3));
                            const __m512i q = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)),
                                                               _mm512_set1_epi32(32));
                            _mm512_storeu_ps(y + 16 * j, _mm512_mul_ps(_mm512_set1_ps(dl[j]), _mm512_cvtepi32_ps(q)));
                        }
                    }
                }
        } else {   /* Q4_K, Q5_K: sub-blocks of 32 */
            const __m512i scm = _mm512_cvtepu8_epi32(kq_scales_k4(_mm_loadu_si128((const __m128i *)(w + 4))));
            const __m512 dd = _mm512_permutexvar_ps(
                _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadu_si32(w))));
            _mm512_store_ps(dl, _mm512_mul_ps(dd, _mm512_cvtepi32_ps(scm)));   /* dl[0..7] | ml */
            const uint8_t *qs = w + (F == KQ_Q4K ? 16 : 48);
            for (int i = 0; i < 4; i++)
                for (int g = 0; g < 2; g++) {   /* qs[32i + 16g ..][16]: e = 64i + 32h + 16g + l */
                    const __m512i r = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qs + 32 * i + 16 * g)));
                    __m512i qh = _mm512_setzero_si512();
                    if (F == KQ_Q5K) qh = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 16 + 16 * g)));
                    for (int h = 0; h < 2; h++) {
                        const int j = 2 * i + h;
                        __m512i q = h ? _mm512_srli_epi32(r, 4) : _mm512_and_si512(r, _mm512_set1_epi32(15));
                        if (F == KQ_Q5K)
                            q = _mm512_mask_or_epi32(q, _mm512_test_epi32_mask(qh, _mm512_set1_epi32(1 << j)), q,
                                                     _mm512_set1_epi32(16));
                        _mm512_storeu_ps(y + 64 * i + 32 * h + 16 * g,
                                         _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(dl[j]), _mm512_cvtepi32_ps(q)),
                                                       _mm512_set1_ps(dl[8 + j])));
                    }
                }
        }
    }
}

#define KQ_DEQUANT(name, F)                                                                 \
    static void qr__dequant_##name##_kq512(const uint8_t *w, float *y, int64_t k) {           \
        if ((F) <= KQ_IQ4NL) kq_dequant32(F, w, y, k);                                      \
        else kq_dequant256(F, w, y, k);                                                     \
    }
KQ_DEQUANT(q5_0, KQ_Q5_0)
KQ_DEQUANT(q5_1, KQ_Q5_1)
KQ_DEQUANT(iq4_nl, KQ_IQ4NL)
KQ_DEQUANT(q2_k, KQ_Q2K)
KQ_DEQUANT(q3_k, KQ_Q3K)
KQ_DEQUANT(q4_k, KQ_Q4K)
KQ_DEQUANT(q5_k, KQ_Q5K)
KQ_DEQUANT(q6_k, KQ_Q6K)

/* ------------------------------------------------------------------ BF16 */
/* 16 bf16 at w as floats (the top halves of float32s) */
QR_AI __m512 bf16x16(const uint16_t *w) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w)), 16));
}

/* BF16 weights against MX float rows: 16 a step, 4 accumulators (MX = 1) or 2 a row; the last
 * 1-15 values through masked loads (quant_avx512.c's F16 kernel with the bf16 conversion) */
QR_AI void bf_fdot(int MX, int64_t k, const uint16_t *w, const float *x, int64_t ldx,
                   float *out) {
    enum { NA = 4 };
    const int na = MX == 1 ? 4 : 2;
    __m512 acc[QR_QMAX_ROWS][NA];
    for (int j = 0; j < MX; j++)
        for (int a = 0; a < na; a++) acc[j][a] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 * na <= k; i += 16 * na) {
        _mm_prefetch((const char *)(w + i + 512), _MM_HINT_T0);   /* 1 KiB ahead */
        if (na == 4) _mm_prefetch((const char *)(w + i + 544), _MM_HINT_T0);
        for (int a = 0; a < na; a++) {
            const __m512 wv = bf16x16(w + i + 16 * a);
            for (int j = 0; j < MX; j++)
                acc[j][a] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + j * ldx + i + 16 * a), acc[j][a]);
        }
    }
    for (; i + 16 <= k; i += 16) {
        const __m512 wv = bf16x16(w + i);
        for (int j = 0; j < MX; j++)
            acc[j][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + j * ldx + i), acc[j][0]);
    }
    if (i < k) {
        const __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        const __m512 wv = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, w + i)), 16));
        for (int j = 0; j < MX; j++)
            acc[j][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + j * ldx + i), acc[j][0]);
    }
    for (int j = 0; j < MX; j++) {
        __m512 t = acc[j][0];
        for (int a = 1; a < na; a++) t = _mm512_add_ps(t, acc[j][a]);
        out[j] = qr__hsum256(qr__fold512(t));
    }
}

static void qr__fdot_bf16_kq512(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx,
                                float *out) {
    switch (mx) {
    case 1: bf_fdot(1, k, w, x, ldx, out); break;
    case 2: bf_fdot(2, k, w, x, ldx, out); break;
    case 3: bf_fdot(3, k, w, x, ldx, out); break;
    default: bf_fdot(4, k, w, x, ldx, out); break;
    }
}

static void qr__qrows_bf16_kq512(int64_t k, const uint8_t *w, size_t wrow, int64_t nrows,
                                 const uint8_t *x, float *y) {   /* x: float32 [k] */
    qr__prefetch_head(w, (size_t)nrows * wrow);
    for (int64_t r = 0; r < nrows; r++)
        bf_fdot(1, k, (const uint16_t *)(w + r * wrow), (const float *)x, 0, y + r);
}

static void qr__dequant_bf16_kq512(const uint8_t *w, float *y, int64_t k) {
    const uint16_t *h = (const uint16_t *)w;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) _mm512_storeu_ps(y + i, bf16x16(h + i));
    if (i < k) {
        const __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(
                                            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, h + i)), 16)));
    }
}

/* ------------------------------------------------------------------ the table's part */
qr_kq_kernels qr__kq_dequant_avx512(int qtype) {
    qr_kq_kernels k = {0};
    switch (qtype) {
    case QR_QTYPE_Q5_0: k.dequant_row = qr__dequant_q5_0_kq512; break;
    case QR_QTYPE_Q5_1: k.dequant_row = qr__dequant_q5_1_kq512; break;
    case QR_QTYPE_IQ4_NL: k.dequant_row = qr__dequant_iq4_nl_kq512; break;
    case QR_QTYPE_Q2_K: k.dequant_row = qr__dequant_q2_k_kq512; break;
    case QR_QTYPE_Q3_K: k.dequant_row = qr__dequant_q3_k_kq512; break;
    case QR_QTYPE_Q4_K: k.dequant_row = qr__dequant_q4_k_kq512; break;
    case QR_QTYPE_Q5_K: k.dequant_row = qr__dequant_q5_k_kq512; break;
    case QR_QTYPE_Q6_K: k.dequant_row = qr__dequant_q6_k_kq512; break;
    case QR_QTYPE_BF16:
        k.fdot = qr__fdot_bf16_kq512;
        k.rows1 = qr__qrows_bf16_kq512;
        k.dequant_row = qr__dequant_bf16_kq512;
        break;
    default: break;
    }
    return k;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int qr_quant_kq_dequant_avx512_unused;   /* no VNNI in this compiler */
#endif
