/* gemm_avx512.c - AVX-512 GEMM kernels: a 12x32 register-blocked micro-kernel (24 of the 32
 * ZMM registers hold the C tile; each k step is 2 B loads and 12 broadcast FMAs), its edge-row
 * variants, packers and the skinny (M <= 4) dot products. Compiled with -mavx512f/bw/vl/dq
 * -mfma; called only when cpu.c reports the AVX-512 tier. The driver is gemm.c's, the 8x8
 * transpose, B^T panel packer and skinny column loop gemm_x86.h's. Per element of C the
 * products are summed in order of k with FMA, like the AVX2 kernel. */
#include <string.h>

#include "gemm_x86.h"

#define MR 12
#define NR 32

/* c[R,32] = alpha * sum_p ap[p][0:R] (outer) bp[p][0:32] + beta * c for the first R <= MR
 * rows of a packed A panel (stride MR per k). Per element: t = alpha * acc; c = beta * c + t
 * (the driver's rounding contract). R is a constant in every call: the loops unroll and the
 * 2R accumulators stay in registers. */
QR_AI void ukr_rx32(const int R, int64_t kc, const float *ap, const float *bp, float *c,
                    int64_t ldc, float alpha, float beta) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) {   /* C's rows are fetched while the products are summed */
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
#define QR_STEP(k)                                                          \
    do {                                                                    \
        const __m512 b0 = _mm512_load_ps(bp + (k) * NR);                    \
        const __m512 b1 = _mm512_load_ps(bp + (k) * NR + 16);               \
        _Pragma("GCC unroll 12") for (int i = 0; i < R; i++) {              \
            const __m512 a = _mm512_set1_ps(ap[(k) * MR + i]);              \
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);                          \
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);                          \
        }                                                                   \
    } while (0)
    int64_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        _mm_prefetch((const char *)(bp + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(bp + 8 * NR + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(bp + 9 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(bp + 9 * NR + 16), _MM_HINT_T0);
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
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) {
        float *cr = c + i * ldc;
        __m512 t0 = _mm512_mul_ps(va, c0[i]), t1 = _mm512_mul_ps(va, c1[i]);
        if (beta != 0.0f) {
            t0 = _mm512_add_ps(_mm512_mul_ps(vb, _mm512_loadu_ps(cr)), t0);
            t1 = _mm512_add_ps(_mm512_mul_ps(vb, _mm512_loadu_ps(cr + 16)), t1);
        }
        _mm512_storeu_ps(cr, t0);
        _mm512_storeu_ps(cr + 16, t1);
    }
}

static void ukr_12x32(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                      float alpha, float beta) {
    ukr_rx32(MR, kc, ap, bp, c, ldc, alpha, beta);
}

/* Edge rows (M % 12): only the rows that exist are computed. */
static void ukr_rows(int rows, int64_t kc, const float *ap, const float *bp, float *c,
                     int64_t ldc, float alpha, float beta) {
    switch (rows) {
    case 1: ukr_rx32(1, kc, ap, bp, c, ldc, alpha, beta); break;
    case 2: ukr_rx32(2, kc, ap, bp, c, ldc, alpha, beta); break;
    case 3: ukr_rx32(3, kc, ap, bp, c, ldc, alpha, beta); break;
    case 4: ukr_rx32(4, kc, ap, bp, c, ldc, alpha, beta); break;
    case 5: ukr_rx32(5, kc, ap, bp, c, ldc, alpha, beta); break;
    case 6: ukr_rx32(6, kc, ap, bp, c, ldc, alpha, beta); break;
    case 7: ukr_rx32(7, kc, ap, bp, c, ldc, alpha, beta); break;
    case 8: ukr_rx32(8, kc, ap, bp, c, ldc, alpha, beta); break;
    case 9: ukr_rx32(9, kc, ap, bp, c, ldc, alpha, beta); break;
    case 10: ukr_rx32(10, kc, ap, bp, c, ldc, alpha, beta); break;
    case 11: ukr_rx32(11, kc, ap, bp, c, ldc, alpha, beta); break;
    default: ukr_12x32(kc, ap, bp, c, ldc, alpha, beta); break;
    }
}

/* Ap panels of 12 rows. Not transposed (A[M,K]): rows 0-7 and 8-11 (+4 zero rows), 8 k at a
 * time, by 8x8 transposes; per k one 8-wide and one 4-wide store. Transposed (A[K,M]): each k
 * is 12 contiguous floats (one masked load and store). Missing rows are packed as zeros. */
static void pack_a_12(int trans, const float *A, int64_t lda, int64_t i0, int64_t mc,
                      int64_t p0, int64_t kc, float *ap) {
    for (int64_t ib = 0; ib < mc; ib += MR, ap += kc * MR) {
        const int64_t rows = mc - ib < MR ? mc - ib : MR;
        if (trans) {
            const float *s = A + p0 * lda + i0 + ib;
            const __mmask16 m = (__mmask16)((1u << rows) - 1);
            for (int64_t p = 0; p < kc; p++, s += lda)
                _mm512_mask_storeu_ps(ap + p * MR, 0x0FFF, _mm512_maskz_loadu_ps(m, s));
            continue;
        }
        const float *s[MR];
        for (int64_t i = 0; i < MR; i++) s[i] = A + (i0 + ib + (i < rows ? i : 0)) * lda + p0;
        int64_t p = 0;
        for (; p + 8 <= kc; p += 8) {
            __m256 r[8], q[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < rows ? _mm256_loadu_ps(s[i] + p) : _mm256_setzero_ps();
            for (int i = 0; i < 8; i++)
                q[i] = i < 4 && 8 + i < rows ? _mm256_loadu_ps(s[8 + i] + p) : _mm256_setzero_ps();
            qr__transpose8(r);
            qr__transpose8(q);
            for (int k = 0; k < 8; k++) {
                _mm256_storeu_ps(ap + (p + k) * MR, r[k]);
                _mm_storeu_ps(ap + (p + k) * MR + 8, _mm256_castps256_ps128(q[k]));
            }
        }
        for (; p < kc; p++)
            for (int64_t i = 0; i < MR; i++) ap[p * MR + i] = i < rows ? s[i][p] : 0.0f;
    }
}

/* Bp panels of 32 columns. Not transposed (B[K,N]): two 16-wide copies per k (masked at the
 * edge). Transposed (B[N,K]): 32 rows of B, 8 k at a time, by four 8x8 transposes. */
static void pack_b_32(int trans, const float *B, int64_t ldb, int64_t p0, int64_t kc,
                      int64_t j0, int64_t nc, float *bp) {
    for (int64_t jb = 0; jb < nc; jb += NR, bp += kc * NR) {
        const int64_t cols = nc - jb < NR ? nc - jb : NR;
        if (!trans) {
            const float *s = B + p0 * ldb + j0 + jb;
            if (cols == NR) {
                for (int64_t p = 0; p < kc; p++, s += ldb) {
                    _mm512_store_ps(bp + p * NR, _mm512_loadu_ps(s));
                    _mm512_store_ps(bp + p * NR + 16, _mm512_loadu_ps(s + 16));
                }
            } else {
                const __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
                const __mmask16 m1 = (__mmask16)(cols <= 16 ? 0 : (1u << (cols - 16)) - 1);
                for (int64_t p = 0; p < kc; p++, s += ldb) {
                    _mm512_store_ps(bp + p * NR, _mm512_maskz_loadu_ps(m0, s));
                    _mm512_store_ps(bp + p * NR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
                }
            }
            continue;
        }
        qr__pack_bt_panel(NR, B, ldb, p0, kc, j0 + jb, cols, bp);
    }
}

/* ------------------------------------------------------------------ skinny (M <= 4) */
/* C[i, j:j+JB] for i < M from dot products of A rows with B rows j..j+JB-1 (B^T case), 16
 * lanes, the K tail on masked lanes. */
QR_AI void skinny_t_tile(const int M, const int JB, int64_t K, const float *A, const float *B,
                         int64_t ldb, float *C, int64_t ldc, int64_t j, float alpha,
                         float beta) {
    __m512 acc[QR_SKINNY_M][8];
    for (int i = 0; i < M; i++)
        for (int b = 0; b < JB; b++) acc[i][b] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 16 <= K; p += 16) {
        __m512 a[QR_SKINNY_M];
        for (int i = 0; i < M; i++) a[i] = _mm512_loadu_ps(A + i * K + p);
        for (int b = 0; b < JB; b++) {
            const __m512 bv = _mm512_loadu_ps(B + (j + b) * ldb + p);
            for (int i = 0; i < M; i++) acc[i][b] = _mm512_fmadd_ps(a[i], bv, acc[i][b]);
        }
    }
    if (p < K) {
        const __mmask16 m = (__mmask16)((1u << (K - p)) - 1);
        __m512 a[QR_SKINNY_M];
        for (int i = 0; i < M; i++) a[i] = _mm512_maskz_loadu_ps(m, A + i * K + p);
        for (int b = 0; b < JB; b++) {
            const __m512 bv = _mm512_maskz_loadu_ps(m, B + (j + b) * ldb + p);
            for (int i = 0; i < M; i++) acc[i][b] = _mm512_fmadd_ps(a[i], bv, acc[i][b]);
        }
    }
    for (int i = 0; i < M; i++)
        for (int b = 0; b < JB; b++) {
            const float t = alpha * _mm512_reduce_add_ps(acc[i][b]);
            float *c = C + i * ldc + j + b;
            *c = beta == 0.0f ? t : beta * *c + t;
        }
}

#define SKINNY_T(m, jb) skinny_t_tile(m, jb, K, A, B, ldb, C, ldc, j, alpha, beta)

/* Skinny with B^T (B stored [N,K]): 8 accumulators (M x JB = 1x8, 2x4, 3x2, 4x2). The B[K,N]
 * case is memory-bound row streaming, done by the portable code. */
static void skinny_avx512(int M, int64_t K, const float *A, const float *B, int64_t ldb,
                          float *C, int64_t ldc, int64_t j0, int64_t j1, float alpha,
                          float beta) {
    QR_SKINNY_COLUMNS(SKINNY_T);
}
#undef SKINNY_T

/* kc 512: each C tile is loaded and stored K / 512 times (C streams from memory for large
 * squares, so fewer passes matter more than keeping the 64 KB B micro-panel in L1: it is read
 * from L2 with the prefetches above); mc 96 keeps the packed A block (196 KB) in L2, nc 1024
 * the packed B block (2 MB) in L3. Measured on Zen 5 (1 thread, CPU time) against kc 192-384,
 * mc 48-240 and nc 512-4096: 2048^2 at 84% of the 16-lane FMA peak against 77-82%. */
static const qr_gemm_kernel avx512_kernel = {MR, NR, 512, 96, 1024, ukr_12x32, pack_a_12,
                                             pack_b_32, skinny_avx512, ukr_rows};

const qr_gemm_kernel *qr__gemm_avx512_kernel(void) { return &avx512_kernel; }
