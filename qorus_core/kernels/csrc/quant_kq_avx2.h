/* quant_kq_avx2.h - private: what the AVX2 kernels of quant_kformats.c's formats share
 * (quant_kq_avx2.c: the K-quants; quant_kq32_avx2.c: Q5_0, Q5_1, IQ4_NL and BF16): loads and
 * broadcasts, the paired activation layout, the decode call's activation buffer, the eight-rows
 * decode loop and the mx switch. Included by those two files only, compiled with the AVX2 tier's
 * flags. */
#ifndef QORUS_QUANT_KQ_AVX2_H
#define QORUS_QUANT_KQ_AVX2_H

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "quant_x86.h"

#define QR_ALWAYS_INLINE static inline __attribute__((always_inline))
#define QR_PF_AHEAD 2048   /* decode prefetch distance (as quant_avx2.c) */

static inline uint64_t ld64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline __m256i ld256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m128i ld128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
/* 16 bytes into both lanes, 8 bytes into all four quarters, 4 bytes into all eight dwords */
static inline __m256i bc128(const uint8_t *p) { return _mm256_broadcastsi128_si256(ld128(p)); }
static inline __m256i bc64(const uint8_t *p) { return _mm256_set1_epi64x((long long)ld64(p)); }
static inline __m256i bc32(const uint8_t *p) { return _mm256_set1_epi32((int)qr__ld32(p)); }

static inline __m128 load2f(const float *p) {   /* two floats into lanes 0, 1; 2, 3 zero */
    return _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)p));
}

/* int32 lanes -> float, the sum of pairs of int16 lanes (madd with ones) */
static inline __m256 sum16to32f(__m256i p) {
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* ------------------------------------------------------------------ activation layouts
 * Made once a decode call from the natural q8 row (q | d | s):
 *   paired  blocks 2p, 2p + 1 at bytes [64p, 64p + 64): 2p[0:16] | 2p+1[0:16] | 2p[16:32] |
 *           2p+1[16:32] (quant_internal.h's paired layout; an odd last block is read from the
 *           natural row)
 *   quad    blocks 4t .. 4t + 3 at bytes [128t, 128t + 128): for g < 4, 32 bytes of
 *           4t[8g:8g+8] | 4t+1[8g:8g+8] | 4t+2[8g:8g+8] | 4t+3[8g:8g+8]
 *   XQ4     per whole quad of blocks: [d0 s0 d2 s2 | d1 s1 d3 s3] (quant_internal.h's X)
 *   XP      per block pair: [d0 x4 | d1 x4]
 *   XQ      per block quad: [d0 d0 d1 d1 | d2 d2 d3 d3]
 *   S16     per super-block (8 blocks): int16 sums of q over each 16 values, in order */
static inline void act_paired(const uint8_t *q, int64_t nb, uint8_t *xp) {
    for (int64_t b = 0; b + 2 <= nb; b += 2) {
        __m256i a = ld256(q + 32 * b), c = ld256(q + 32 * b + 32);
        _mm256_storeu_si256((__m256i *)(xp + 32 * b), _mm256_permute2x128_si256(a, c, 0x20));
        _mm256_storeu_si256((__m256i *)(xp + 32 * b + 32), _mm256_permute2x128_si256(a, c, 0x31));
    }
}

/* A decode call's activation buffer of bpb bytes a block (a format's layouts: 8 for Q6_K up to
 * 72 for IQ4_NL): 27 KB on the stack (IQ4_NL to K = 12288, Q4_K to 18432), else from the heap
 * (NULL when that fails: the caller takes the portable qdot a row at a time). */
#define QR_KQ_STACK_BYTES 27648
typedef struct {
    _Alignas(64) uint8_t stack[QR_KQ_STACK_BYTES];
    void *heap;
} kq_buf;

static inline uint8_t *kq_buf_get(kq_buf *b, int64_t nb, size_t bpb) {
    const size_t bytes = (size_t)nb * bpb;
    b->heap = NULL;
    if (bytes <= QR_KQ_STACK_BYTES) return b->stack;
    b->heap = malloc(bytes + 64);
    if (!b->heap) return NULL;
    return (uint8_t *)(((uintptr_t)b->heap + 63) & ~(uintptr_t)63);
}

/* Rows [0, nrows) of a decode range (w, wrow, nrows, y in scope), each row's 8 lanes from
 * ROWEXPR (an expression of `row`), eight rows summed at once. */
#define KQ_ROWS8(ROWEXPR)                                                                  \
    do {                                                                                   \
        qr__prefetch_head(w, (size_t)nrows * wrow);                                        \
        for (int64_t r = 0; r < nrows; r += 8) {                                           \
            const int n_ = nrows - r < 8 ? (int)(nrows - r) : 8;                           \
            __m256 v_[8];                                                                  \
            for (int i_ = 0; i_ < 8; i_++) {                                               \
                const uint8_t *row = w + (r + i_) * wrow;                                  \
                v_[i_] = i_ >= n_ ? _mm256_setzero_ps() : (ROWEXPR);                       \
            }                                                                              \
            float o_[8];                                                                   \
            _mm256_storeu_ps(o_, qr__hsum8x(v_));                                              \
            memcpy(y + r, o_, (size_t)n_ * sizeof(float));                                 \
        }                                                                                  \
    } while (0)

/* mx-specialized entry points of an always-inline body F(MX, ...) */
#define QDOT_SWITCH(F, ...)                                                                \
    switch (mx) {                                                                          \
    case 1: F(1, __VA_ARGS__); break;                                                      \
    case 2: F(2, __VA_ARGS__); break;                                                      \
    case 3: F(3, __VA_ARGS__); break;                                                      \
    default: F(4, __VA_ARGS__); break;                                                     \
    }

#endif
