/* quant_x86.h - private: the small helpers the AVX2 and AVX-512 quantized-product kernels
 * (quant_*_avx2.c, quant_*_avx512.c, decode_rows_*.c) share. Each tier file includes it and
 * compiles it with its own -m flags (AVX2, FMA and F16C at least); the AVX-512 block loads are
 * in quant_avx512_blocks.h. */
#ifndef QORUS_QUANT_X86_H
#define QORUS_QUANT_X86_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* A decode range's first bytes requested at once: each kernel's in-loop prefetch covers the
 * rest, and each task's weight stream would otherwise start one DRAM latency at a time. */
#define QR_PF_HEAD_BYTES 2048

/* 4 bytes of a block (a scale pair, packed high bits), unaligned */
static inline uint32_t qr__ld32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* the first QR_PF_HEAD_BYTES of the `bytes` at w, into L1 */
static inline void qr__prefetch_head(const uint8_t *w, size_t bytes) {
    if (bytes > QR_PF_HEAD_BYTES) bytes = QR_PF_HEAD_BYTES;
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)(w + o), _MM_HINT_T0);
}

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
