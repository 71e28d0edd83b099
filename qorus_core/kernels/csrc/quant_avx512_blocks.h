/* quant_avx512_blocks.h - private: the AVX-512 loads of quantized blocks and the lane fold that
 * quant_avx512.c, quant_kq_avx512.c and decode_rows_avx512.c share. Include it after the file's
 * `target("avx512vnni")` pragma (and after quant_x86.h), so these helpers compile for, and
 * inline into, that file's AVX-512 kernels only. */
#ifndef QORUS_QUANT_AVX512_BLOCKS_H
#define QORUS_QUANT_AVX512_BLOCKS_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* 16 lanes -> 8: lane i + lane i + 8 */
static inline __attribute__((always_inline)) __m256 qr__fold512(__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* the first 4 bytes of 4 blocks bs apart, as 4 dwords (fp16 d, then m or 2 quant bytes) */
static inline __attribute__((always_inline)) __m128i qr__gather4(const uint8_t *p, size_t bs) {
    __m128i a = _mm_unpacklo_epi32(_mm_loadu_si32(p), _mm_loadu_si32(p + bs));
    __m128i b = _mm_unpacklo_epi32(_mm_loadu_si32(p + 2 * bs), _mm_loadu_si32(p + 3 * bs));
    return _mm_unpacklo_epi64(a, b);
}

/* 16 bytes at p, p + bs, p + 2 bs, p + 3 bs into the 4 128-bit lanes */
static inline __attribute__((always_inline)) __m512i qr__load4x16(const uint8_t *p, size_t bs) {
    __m256i a = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p)),
        _mm_loadu_si128((const __m128i *)(p + bs)), 1);
    __m256i b = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + 2 * bs))),
        _mm_loadu_si128((const __m128i *)(p + 3 * bs)), 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

/* 32 bytes at p and at p + bs into the two 256-bit halves */
static inline __attribute__((always_inline)) __m512i qr__load2x32(const uint8_t *p, size_t bs) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)),
                              _mm256_loadu_si256((const __m256i *)(p + bs)), 1);
}

#endif
