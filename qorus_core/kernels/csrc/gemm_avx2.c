/* gemm_avx2.c - AVX2/FMA GEMM kernels: a 6x16 register-blocked micro-kernel and packers.
 * Compiled with -mavx2 -mfma -mf16c; called only when cpu.c reports AVX2 and FMA. */
#include <immintrin.h>
#include <string.h>

#include "gemm_internal.h"

#define MR 6
#define NR 16

/* c[6,16] = alpha * sum_p ap[p][0:6] (outer) bp[p][0:16] + beta * c.
 * 12 ymm accumulators, 2 for the B row, 1 broadcast: 15 of 16 registers. */
static void ukr_6x16(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                     float alpha, float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int i = 0; i < MR; i++) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
#define QR_STEP(k)                                                          \
    do {                                                                    \
        __m256 b0 = _mm256_load_ps(bp + (k) * NR);                          \
        __m256 b1 = _mm256_load_ps(bp + (k) * NR + 8);                      \
        __m256 a;                                                           \
        a = _mm256_broadcast_ss(ap + (k) * MR + 0);                         \
        c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01); \
        a = _mm256_broadcast_ss(ap + (k) * MR + 1);                         \
        c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11); \
        a = _mm256_broadcast_ss(ap + (k) * MR + 2);                         \
        c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21); \
        a = _mm256_broadcast_ss(ap + (k) * MR + 3);                         \
        c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31); \
        a = _mm256_broadcast_ss(ap + (k) * MR + 4);                         \
        c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41); \
        a = _mm256_broadcast_ss(ap + (k) * MR + 5);                         \
        c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51); \
    } while (0)
    int64_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        _mm_prefetch((const char *)(ap + 48), _MM_HINT_T0);
        _mm_prefetch((const char *)(bp + 128), _MM_HINT_T0);
        QR_STEP(0); QR_STEP(1); QR_STEP(2); QR_STEP(3);
        ap += 4 * MR;
        bp += 4 * NR;
    }
    for (; p < kc; p++) {
        QR_STEP(0);
        ap += MR;
        bp += NR;
    }
#undef QR_STEP
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#define QR_OUT(row, x0, x1)                                                         \
    do {                                                                            \
        float *cr = c + (row) * ldc;                                                \
        __m256 t0 = _mm256_mul_ps(va, x0), t1 = _mm256_mul_ps(va, x1);              \
        if (beta != 0.0f) {                                                         \
            t0 = _mm256_add_ps(_mm256_mul_ps(vb, _mm256_loadu_ps(cr)), t0);         \
            t1 = _mm256_add_ps(_mm256_mul_ps(vb, _mm256_loadu_ps(cr + 8)), t1);     \
        }                                                                           \
        _mm256_storeu_ps(cr, t0);                                                   \
        _mm256_storeu_ps(cr + 8, t1);                                               \
    } while (0)
    QR_OUT(0, c00, c01); QR_OUT(1, c10, c11); QR_OUT(2, c20, c21);
    QR_OUT(3, c30, c31); QR_OUT(4, c40, c41); QR_OUT(5, c50, c51);
#undef QR_OUT
}

/* 8x8 transpose of r[0..7] in place. */
static inline void transpose8(__m256 r[8]) {
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

/* Ap panels of 6 rows. Not transposed (A[M,K]): gather 6 rows, 8 k at a time, by 8x8
 * transposes (rows 6, 7 zero) and overlapping 8-wide stores (the slack absorbs the last).
 * Transposed (A[K,M]): each k is 6 contiguous floats. */
static void pack_a_6(int trans, const float *A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                     int64_t kc, float *ap) {
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
            transpose8(r);
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(ap + (p + q) * MR, r[q]);
        }
        for (; p < kc; p++)
            for (int64_t i = 0; i < MR; i++) ap[p * MR + i] = i < rows ? s[i][p] : 0.0f;
    }
}

/* Bp panels of 16 columns. Not transposed (B[K,N]): two 8-wide copies per k.
 * Transposed (B[N,K]): 16 rows of B, 8 k at a time, by two 8x8 transposes. */
static void pack_b_16(int trans, const float *B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                      int64_t nc, float *bp) {
    for (int64_t jb = 0; jb < nc; jb += NR, bp += kc * NR) {
        int64_t cols = nc - jb < NR ? nc - jb : NR;
        if (!trans) {
            const float *s = B + p0 * ldb + j0 + jb;
            if (cols == NR) {
                for (int64_t p = 0; p < kc; p++, s += ldb) {
                    _mm256_store_ps(bp + p * NR, _mm256_loadu_ps(s));
                    _mm256_store_ps(bp + p * NR + 8, _mm256_loadu_ps(s + 8));
                }
            } else {
                for (int64_t p = 0; p < kc; p++, s += ldb) {
                    for (int64_t j = 0; j < cols; j++) bp[p * NR + j] = s[j];
                    for (int64_t j = cols; j < NR; j++) bp[p * NR + j] = 0.0f;
                }
            }
            continue;
        }
        const float *s[NR];
        for (int64_t j = 0; j < NR; j++) s[j] = B + (j0 + jb + (j < cols ? j : 0)) * ldb + p0;
        int64_t p = 0;
        for (; p + 8 <= kc; p += 8) {
            for (int h = 0; h < 2; h++) {
                __m256 r[8];
                for (int j = 0; j < 8; j++)
                    r[j] = h * 8 + j < cols ? _mm256_loadu_ps(s[h * 8 + j] + p) : _mm256_setzero_ps();
                transpose8(r);
                for (int q = 0; q < 8; q++) _mm256_store_ps(bp + (p + q) * NR + h * 8, r[q]);
            }
        }
        for (; p < kc; p++)
            for (int64_t j = 0; j < NR; j++) bp[p * NR + j] = j < cols ? s[j][p] : 0.0f;
    }
}

static const qr_gemm_kernel avx2_kernel = {MR, NR, 256, 144, 4080, ukr_6x16, pack_a_6, pack_b_16};

const qr_gemm_kernel *qr__gemm_avx2_kernel(void) { return &avx2_kernel; }
