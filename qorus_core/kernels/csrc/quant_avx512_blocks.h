/* quant_avx512_blocks.h - private: the AVX-512 loads of quantized blocks, the lane fold and the
 * Q8_0 block loop that the AVX-512 quant files (quant_avx512.c, quant_kq_avx512.c,
 * quant_kq_dequant_avx512.c, decode_rows_avx512.c) share. Include it after the file's
 * `target("avx512vnni")` pragma (and after quant_x86.h), so these helpers compile for, and
 * inline into, that file's AVX-512 kernels only. */
#ifndef QORUS_QUANT_AVX512_BLOCKS_H
#define QORUS_QUANT_AVX512_BLOCKS_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "quant_internal.h"

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

/* The last nr (1 .. 3) blocks of a Q4 row at p (bs bytes apart, nibbles at off) as a quad with
 * zeros for the missing blocks: *g their first dwords (fp16 d, then m or junk), *raw their 16
 * nibble bytes in 128-bit lanes 0 .. nr - 1 (the missing blocks' bytes are never read) */
static inline __attribute__((always_inline)) void qr__q4_tail_quad(
    const uint8_t *p, size_t bs, size_t off, int64_t nr, __m128i *g, __m512i *raw) {
    __m128i d = _mm_loadu_si32(p);
    __m512i q = _mm512_maskz_mov_epi32(
        0x000f, _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + off))));
    if (nr > 1) {
        d = _mm_insert_epi32(d, (int)qr__ld32(p + bs), 1);
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(p + bs + off)), 1);
    }
    if (nr > 2) {
        d = _mm_insert_epi32(d, (int)qr__ld32(p + 2 * bs), 2);
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(p + 2 * bs + off)), 2);
    }
    *g = d;
    *raw = q;
}

/* The Q8_0 (34-byte blocks: fp16 d, 32 int8) weight row against MX q8 rows in layout 0
 * (quant_internal.h's "x" layout, xs bytes apart), all but an odd last block: four blocks a
 * step (two zmm of two blocks each), then a pair, into two accumulators a row, acc[j][0]
 * (blocks 4s, 4s + 1 and the pair) and acc[j][1] (blocks 4s + 2, 4s + 3). Each row's lanes are
 * the same whatever MX and the rows beside it, which makes quant_avx512.c's decode and
 * decode_rows_avx512.c's batched rows the same bits. The weight stream is prefetched
 * pf_ahead bytes on, with hint pf_hint (_MM_HINT_T0 or _MM_HINT_T1; constants once inlined).
 * Returns the blocks done: nb, or nb - 1 where one is left for the caller's 8-lane tail. */
#define QR_Q8_0_BS 34
static inline __attribute__((always_inline)) int64_t qr__q8_blocks_x(
    int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, size_t pf_ahead,
    int pf_hint, __m512 (*acc)[2]) {
    const size_t oc = qr_x_off_c(nb), oe = qr_x_off_e(nb);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i i23 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
    for (int j = 0; j < MX; j++) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *p = w + b * QR_Q8_0_BS;
        const char *ahead = (const char *)(p + pf_ahead);   /* 4 blocks: 136 B */
        for (int l = 0; l < 3; l++) {
            if (pf_hint == _MM_HINT_T1) _mm_prefetch(ahead + 64 * l, _MM_HINT_T1);
            else _mm_prefetch(ahead + 64 * l, _MM_HINT_T0);
        }
        __m512 f = _mm512_castps256_ps512(_mm256_cvtph_ps(qr__gather4(p, QR_Q8_0_BS)));
        __m512 dw01 = _mm512_permutexvar_ps(i01, f), dw23 = _mm512_permutexvar_ps(i23, f);
        __m512i w01 = _mm512_xor_si512(qr__load2x32(p + 2, QR_Q8_0_BS), flip);
        __m512i w23 = _mm512_xor_si512(qr__load2x32(p + 2 + 2 * QR_Q8_0_BS, QR_Q8_0_BS), flip);
        for (int j = 0; j < MX; j++) {
            const uint8_t *r = xq + j * xs;
            const __m512i *q = (const __m512i *)(r + b * 32);
            const __m512i *c = (const __m512i *)((const int32_t *)(r + oc) + 8 * b);
            const float *e = (const float *)(r + oe) + 8 * b;
            __m512i s01 = _mm512_dpbusd_epi32(_mm512_loadu_si512(c), w01, _mm512_loadu_si512(q));
            __m512i s23 = _mm512_dpbusd_epi32(_mm512_loadu_si512(c + 1), w23,
                                              _mm512_loadu_si512(q + 1));
            acc[j][0] = _mm512_fmadd_ps(_mm512_mul_ps(dw01, _mm512_loadu_ps(e)),
                                        _mm512_cvtepi32_ps(s01), acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(_mm512_mul_ps(dw23, _mm512_loadu_ps(e + 16)),
                                        _mm512_cvtepi32_ps(s23), acc[j][1]);
        }
    }
    if (b + 2 <= nb) {
        const uint8_t *p = w + b * QR_Q8_0_BS;
        __m128i h = _mm_unpacklo_epi32(_mm_loadu_si32(p), _mm_loadu_si32(p + QR_Q8_0_BS));
        __m512 dw01 = _mm512_permutexvar_ps(i01, _mm512_castps128_ps512(_mm_cvtph_ps(h)));
        __m512i w01 = _mm512_xor_si512(qr__load2x32(p + 2, QR_Q8_0_BS), flip);
        for (int j = 0; j < MX; j++) {
            const uint8_t *r = xq + j * xs;
            const __m512i *c = (const __m512i *)((const int32_t *)(r + oc) + 8 * b);
            __m512i s01 = _mm512_dpbusd_epi32(_mm512_loadu_si512(c), w01,
                                              _mm512_loadu_si512(r + b * 32));
            acc[j][0] = _mm512_fmadd_ps(
                _mm512_mul_ps(dw01, _mm512_loadu_ps((const float *)(r + oe) + 8 * b)),
                _mm512_cvtepi32_ps(s01), acc[j][0]);
        }
        b += 2;
    }
    return b;
}

/* Row j's 8 lanes of the odd last block b of a Q8_0 row (quant_internal.h's layout 0): the
 * int32 lane sums, to be scaled by qr__h2f(w + b * 34) * d_x[b] and added */
static inline __attribute__((always_inline)) __m256i qr__q8_last_block_x(
    int64_t nb, int64_t b, const uint8_t *w, const uint8_t *r) {
    const __m256i wv = _mm256_xor_si256(
        _mm256_loadu_si256((const __m256i *)(w + b * QR_Q8_0_BS + 2)), _mm256_set1_epi8((char)0x80));
    const __m256i c = _mm256_loadu_si256((const __m256i *)((const int32_t *)(r + qr_x_off_c(nb)) + 8 * b));
    return _mm256_dpbusd_epi32(c, wv, _mm256_loadu_si256((const __m256i *)(r + b * 32)));
}

#endif
