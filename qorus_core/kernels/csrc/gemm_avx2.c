/* gemm_avx2.c - AVX2/FMA GEMM kernels: a 6x16 register-blocked micro-kernel and packers (the
 * pieces shared with the AVX-512 kernel, the 6-row A packer among them: gemm_x86.h). Compiled
 * with -mavx2 -mfma -mf16c; called only when cpu.c reports AVX2 and FMA. */
#include <string.h>

#include "gemm_x86.h"

#define MR 6
#define NR 16

/* c[R,16] = alpha * sum_p ap[p][0:R] (outer) bp[p][0:16] + beta * c, for the first R < 6
 * rows of a packed A panel (stride MR per k): the edge rows. Same per-element rounding as
 * ukr_6x16 (t = alpha * acc; c = beta * c + t). */
QR_AI void ukr_rx16(const int R, int64_t kc, const float *ap, const float *bp, float *c,
                    int64_t ldc, float alpha, float beta) {
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
        c0[i] = _mm256_setzero_ps();
        c1[i] = _mm256_setzero_ps();
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    }
#define QR_STEP(k)                                                          \
    do {                                                                    \
        __m256 b0 = _mm256_load_ps(bp + (k) * NR);                          \
        __m256 b1 = _mm256_load_ps(bp + (k) * NR + 8);                      \
        _Pragma("GCC unroll 6") for (int i = 0; i < R; i++) {               \
            __m256 a = _mm256_broadcast_ss(ap + (k) * MR + i);              \
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);                          \
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);                          \
        }                                                                   \
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
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
        float *cr = c + i * ldc;
        __m256 t0 = _mm256_mul_ps(va, c0[i]), t1 = _mm256_mul_ps(va, c1[i]);
        if (beta != 0.0f) {
            t0 = _mm256_add_ps(_mm256_mul_ps(vb, _mm256_loadu_ps(cr)), t0);
            t1 = _mm256_add_ps(_mm256_mul_ps(vb, _mm256_loadu_ps(cr + 8)), t1);
        }
        _mm256_storeu_ps(cr, t0);
        _mm256_storeu_ps(cr + 8, t1);
    }
}

/* The full tile, written out by hand: the compiler keeps all 12 accumulators in registers
 * (GCC 12 spills one in the k loop of ukr_rx16(6, ...)). */
static void ukr_6x16(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                     float alpha, float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int i = 0; i < MR; i++) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
#define QR_ROW(k, i, x0, x1)                                                \
    a = _mm256_broadcast_ss(ap + (k) * MR + (i));                           \
    x0 = _mm256_fmadd_ps(a, b0, x0);                                        \
    x1 = _mm256_fmadd_ps(a, b1, x1)
#define QR_STEP(k)                                                          \
    do {                                                                    \
        __m256 b0 = _mm256_load_ps(bp + (k) * NR);                          \
        __m256 b1 = _mm256_load_ps(bp + (k) * NR + 8);                      \
        __m256 a;                                                           \
        QR_ROW(k, 0, c00, c01); QR_ROW(k, 1, c10, c11);                     \
        QR_ROW(k, 2, c20, c21); QR_ROW(k, 3, c30, c31);                     \
        QR_ROW(k, 4, c40, c41); QR_ROW(k, 5, c50, c51);                     \
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
#undef QR_ROW
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

/* Edge rows (M % 6): only the rows that exist are computed. */
static void ukr_rows(int rows, int64_t kc, const float *ap, const float *bp, float *c,
                     int64_t ldc, float alpha, float beta) {
    switch (rows) {
    case 1: ukr_rx16(1, kc, ap, bp, c, ldc, alpha, beta); break;
    case 2: ukr_rx16(2, kc, ap, bp, c, ldc, alpha, beta); break;
    case 3: ukr_rx16(3, kc, ap, bp, c, ldc, alpha, beta); break;
    case 4: ukr_rx16(4, kc, ap, bp, c, ldc, alpha, beta); break;
    case 5: ukr_rx16(5, kc, ap, bp, c, ldc, alpha, beta); break;
    default: ukr_6x16(kc, ap, bp, c, ldc, alpha, beta); break;
    }
}

/* Ap panels of 6 rows: gemm_x86.h's packer. */
static void pack_a_6(int trans, const float *A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                     int64_t kc, float *ap) {
    qr__pack_a6(trans, A, lda, i0, mc, p0, kc, ap);
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
        qr__pack_bt_panel(NR, B, ldb, p0, kc, j0 + jb, cols, bp);
    }
}

/* ------------------------------------------------------------------ skinny (M <= 4) */
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* C[i, j:j+JB] for i < M from dot products of A rows with B rows j..j+JB-1 (B^T case). */
static inline void skinny_t_tile(const int M, const int JB, int64_t K, const float *A,
                                 const float *B, int64_t ldb, float *C, int64_t ldc, int64_t j,
                                 float alpha, float beta) {
    __m256 acc[QR_SKINNY_M][8];
    for (int i = 0; i < M; i++)
        for (int b = 0; b < JB; b++) acc[i][b] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 8 <= K; p += 8) {
        __m256 a[QR_SKINNY_M];
        for (int i = 0; i < M; i++) a[i] = _mm256_loadu_ps(A + i * K + p);
        for (int b = 0; b < JB; b++) {
            __m256 bv = _mm256_loadu_ps(B + (j + b) * ldb + p);
            for (int i = 0; i < M; i++) acc[i][b] = _mm256_fmadd_ps(a[i], bv, acc[i][b]);
        }
    }
    for (int i = 0; i < M; i++)
        for (int b = 0; b < JB; b++) {
            float s = hsum8(acc[i][b]);
            const float *ar = A + i * K, *br = B + (j + b) * ldb;
            for (int64_t q = p; q < K; q++) s += ar[q] * br[q];
            float t = alpha * s, *c = C + i * ldc + j + b;
            *c = beta == 0.0f ? t : beta * *c + t;
        }
}

#define SKINNY_T(m, jb) skinny_t_tile(m, jb, K, A, B, ldb, C, ldc, j, alpha, beta)

/* Skinny with B^T (B stored [N,K]): dot products, 8 accumulators (M x JB = 1x8, 2x4, 3x2,
 * 4x2). The B[K,N] case is memory-bound row streaming, done by the portable code. */
static void skinny_avx2(int M, int64_t K, const float *A, const float *B, int64_t ldb, float *C,
                        int64_t ldc, int64_t j0, int64_t j1, float alpha, float beta) {
    QR_SKINNY_COLUMNS(SKINNY_T);
}
#undef SKINNY_T

/* kc 512: each C tile is loaded and stored K / 512 times, half as often as with 256, which
 * is what large squares lose (2048^2 on 1 thread: 88 -> 93 GFLOP/s); mc 72 keeps the packed
 * A block (147 KB) in L2. Measured on Zen 3 against 256 x 144 and 384 x 96. */
static const qr_gemm_kernel avx2_kernel = {MR, NR, 512, 72, 4080, ukr_6x16, pack_a_6, pack_b_16,
                                           skinny_avx2, ukr_rows};

const qr_gemm_kernel *qr__gemm_avx2_kernel(void) { return &avx2_kernel; }
