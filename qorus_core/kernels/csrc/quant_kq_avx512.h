/* quant_kq_avx512.h - private: the format facts the AVX-512 kernels of quant_kformats.c's
 * formats share (quant_kq_avx512.c, the products; quant_kq_dequant_avx512.c, dequantization and
 * BF16): the format index, block sizes and the K-quant scale decoders. Include it after the
 * file's target("avx512vnni") pragma. */
#ifndef QORUS_QUANT_KQ_AVX512_H
#define QORUS_QUANT_KQ_AVX512_H

#include <immintrin.h>
#include <stdint.h>

enum { KQ_Q5_0, KQ_Q5_1, KQ_IQ4NL, KQ_Q2K, KQ_Q3K, KQ_Q4K, KQ_Q5K, KQ_Q6K };

/* bytes a 32-value block */
static inline __attribute__((always_inline)) int kq_bs(int F) { return F == KQ_Q5_0 ? 22 : F == KQ_Q5_1 ? 24 : 18; }

/* bytes a super-block of 256 values */
static inline __attribute__((always_inline)) int kq_sbs(int F) {
    return F == KQ_Q2K ? 84 : F == KQ_Q3K ? 110 : F == KQ_Q4K ? 144 : F == KQ_Q5K ? 176 : 210;
}

/* Q4_K / Q5_K scales: the 8 6-bit scales and mins of sc[12] as bytes [sc0..7 | m0..7]
 * (scale_min_k4; v: 16 bytes from sc) */
static inline __attribute__((always_inline)) __m128i kq_scales_k4(__m128i v) {
    const __m128i m6 = _mm_set1_epi8(63), m4 = _mm_set1_epi8(15), m2 = _mm_set1_epi8(3);
    __m128i lo = _mm_and_si128(v, m6);                                     /* [sc0-3 m0-3 ..] */
    __m128i u2 = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2));
    u2 = _mm_and_si128(_mm_srlv_epi32(u2, _mm_setr_epi32(0, 4, 0, 0)), m4);  /* [u2&f, u2>>4&f] */
    __m128i t = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(v, 6), m2), 4);
    __m128i hi = _mm_or_si128(u2, t);                                      /* [sc4-7, m4-7] */
    return _mm_unpacklo_epi32(lo, hi);                                     /* sc0-3 sc4-7 m.. */
}

/* Q3_K scales: the 16 6-bit scales (scale_q3k, unbiased: 0..63) as bytes; v: 16 bytes from
 * sc - 2 (the block's bytes 94 .. 109: a whole-block load) */
static inline __attribute__((always_inline)) __m128i kq_scales_q3k(__m128i v) {
    const __m128i a01 = _mm_shuffle_epi8(v, _mm_setr_epi8(2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6,
                                                          7, 8, 9));   /* [a0 a1 a0 a1] */
    const __m128i a2 = _mm_shuffle_epi8(v, _mm_setr_epi8(10, 11, 12, 13, 10, 11, 12, 13, 10, 11,
                                                         12, 13, 10, 11, 12, 13));
    __m128i lo = _mm_and_si128(_mm_srlv_epi32(a01, _mm_setr_epi32(0, 0, 4, 4)), _mm_set1_epi8(15));
    __m128i hi = _mm_and_si128(_mm_srlv_epi32(a2, _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    return _mm_or_si128(lo, _mm_slli_epi32(hi, 4));
}

/* the dequantizers and BF16 kernels of this tier (quant_kq_dequant_avx512.c): dequant_row for
 * every format, and BF16's fdot and rows1 */
qr_kq_kernels qr__kq_dequant_avx512(int qtype);

#endif
