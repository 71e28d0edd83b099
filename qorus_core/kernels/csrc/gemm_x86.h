/* gemm_x86.h - private: what the AVX2 and AVX-512 GEMM kernels (gemm_avx2.c, gemm_avx512.c)
 * share: the 8x8 transpose, the 6-row A packer, the packer of a B^T panel, and the skinny
 * (M <= 4) column driver. Each tier file includes it and compiles it with its own -m flags.
 * The micro-kernels, the B packers and the skinny tiles stay per tier: their register
 * blocking and masks differ. */
#ifndef QORUS_GEMM_X86_H
#define QORUS_GEMM_X86_H

#include <immintrin.h>

#include "gemm_internal.h"

#define QR_AI static inline __attribute__((always_inline))

/* 8x8 transpose of r[0..7] in place. */
QR_AI void qr__transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

#define QR_GEMM_MAX_NR 64   /* the widest Bp panel (AVX-512: 64 columns) */

/* Ap panels of 6 rows. Not transposed (A[M,K]): gather 6 rows, 8 k at a time, by 8x8
 * transposes (rows 6, 7 zero) and overlapping 8-wide stores (the slack absorbs the last).
 * Transposed (A[K,M]): each k is 6 contiguous floats. Both tiers use 6-row panels. */
QR_AI void qr__pack_a6(int trans, const float *A, int64_t lda, int64_t i0, int64_t mc,
                       int64_t p0, int64_t kc, float *ap) {
    enum { MR = 6 };
    for (int64_t ib = 0; ib < mc; ib += MR, ap += kc * MR) {
        int64_t rows = mc - ib < MR ? mc - ib : MR;
        if (trans) {
            const float *s = A + p0 * lda + i0 + ib;
            if (rows == MR) {
                for (int64_t p = 0; p < kc; p++, s += lda) {
                    _mm_storeu_ps(ap + p * MR, _mm_loadu_ps(s));
                    _mm_storel_pi((__m64 *)(ap + p * MR + 4), _mm_loadl_pi(_mm_setzero_ps(),
                                                                           (const __m64 *)(s + 4)));
                }
            } else {
                for (int64_t p = 0; p < kc; p++, s += lda) {
                    for (int64_t i = 0; i < rows; i++) ap[p * MR + i] = s[i];
                    for (int64_t i = rows; i < MR; i++) ap[p * MR + i] = 0.0f;
                }
            }
            continue;
        }
        const float *s[MR];
        for (int64_t i = 0; i < MR; i++) s[i] = A + (i0 + ib + (i < rows ? i : 0)) * lda + p0;
        int64_t p = 0;
        for (; p + 8 <= kc; p += 8) {
            __m256 r[8];
            for (int i = 0; i < MR; i++)
                r[i] = i < rows ? _mm256_loadu_ps(s[i] + p) : _mm256_setzero_ps();
            r[6] = r[7] = _mm256_setzero_ps();
            qr__transpose8(r);
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(ap + (p + q) * MR, r[q]);
        }
        for (; p < kc; p++)
            for (int64_t i = 0; i < MR; i++) ap[p * MR + i] = i < rows ? s[i][p] : 0.0f;
    }
}

/* One Bp panel of nr (a multiple of 8, a constant in every call) columns from B stored [N,K]
 * (the transposed case): rows s of B are columns j0..j0+cols of op(B), read 8 k at a time and
 * turned by nr / 8 8x8 transposes; the k tail element by element, missing columns as zeros. */
QR_AI void qr__pack_bt_panel(const int nr, const float *B, int64_t ldb, int64_t p0, int64_t kc,
                             int64_t j0, int64_t cols, float *bp) {
    const float *s[QR_GEMM_MAX_NR];
    for (int64_t j = 0; j < nr; j++) s[j] = B + (j0 + (j < cols ? j : 0)) * ldb + p0;
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        for (int h = 0; h < nr / 8; h++) {
            __m256 r[8];
            for (int j = 0; j < 8; j++)
                r[j] = h * 8 + j < cols ? _mm256_loadu_ps(s[h * 8 + j] + p) : _mm256_setzero_ps();
            qr__transpose8(r);
            for (int q = 0; q < 8; q++) _mm256_store_ps(bp + (p + q) * nr + h * 8, r[q]);
        }
    }
    for (; p < kc; p++)
        for (int64_t j = 0; j < nr; j++) bp[p * nr + j] = j < cols ? s[j][p] : 0.0f;
}

/* The skinny driver's column loop, inside a function with the gemm_internal.h skinny
 * signature (M, j0, j1 in scope): columns j0..j1 in tiles of 8 accumulators (M x JB = 1x8,
 * 2x4, 3x2, 4x2), then one column at a time. TILE(m, jb) computes C[0:m, j:j+jb] for
 * constant m and jb (the tier's skinny tile, with `j` the loop's column). */
#define QR_SKINNY_COLUMNS(TILE)                                                           \
    do {                                                                                  \
        int64_t j = j0;                                                                   \
        const int jb = M == 1 ? 8 : M == 2 ? 4 : 2;                                       \
        for (; j + jb <= j1; j += jb) {                                                   \
            if (M == 1) TILE(1, 8);                                                       \
            else if (M == 2) TILE(2, 4);                                                  \
            else if (M == 3) TILE(3, 2);                                                  \
            else TILE(4, 2);                                                              \
        }                                                                                 \
        for (; j < j1; j++) {                                                             \
            if (M == 1) TILE(1, 1);                                                       \
            else if (M == 2) TILE(2, 1);                                                  \
            else if (M == 3) TILE(3, 1);                                                  \
            else TILE(4, 1);                                                              \
        }                                                                                 \
    } while (0)

#endif
