/* quant_x86.h - private: the small helpers the AVX2 and AVX-512 quant kernels (quant_avx2.c,
 * quant_avx512.c, quant_kq_avx2.c, quant_kq_avx512.c) share. Each tier file includes it and
 * compiles it with its own -m flags (AVX2, FMA and F16C at least). */
#ifndef QORUS_QUANT_X86_H
#define QORUS_QUANT_X86_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* an fp16 field of a block (F16C) */
static inline float qr__h2f(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return _cvtsh_ss(v);
}

/* the sum of v's 8 lanes */
static inline float qr__hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* [sum v[0], ..., sum v[7]]: each row's lanes summed in the same pattern wherever it sits */
static inline __m256 qr__hsum8x(const __m256 v[8]) {
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

#endif
