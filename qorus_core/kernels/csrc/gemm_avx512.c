/* gemm_avx512.c - AVX-512 GEMM kernels: a 6x64 register-blocked micro-kernel (24 of the 32
 * ZMM registers hold the C tile; each k step is 4 B loads, 6 broadcasts and 24 FMAs), its
 * edge-row and edge-column variants, the B packer and the skinny (M <= 4) dot products. Compiled with
 * -mavx512f/bw/vl/dq -mfma; called only when cpu.c reports the AVX-512 tier. The driver is
 * gemm.c's; the 8x8 transpose, the 6-row A packer, the B^T panel packer and the skinny column
 * loop are gemm_x86.h's. Per element of C the products are summed in order of k with FMA,
 * like the AVX2 kernel. */
#include <string.h>

#include "gemm_x86.h"

#define MR 6
#define NR 64

/* c[R,64] = alpha * sum_p ap[p][0:R] (outer) bp[p][0:64] + beta * c for the first R < MR
 * rows of a packed A panel (stride MR per k): the edge rows. Per element: t = alpha * acc;
 * c = beta * c + t (the driver's rounding contract). R is a constant in every call: the loops
 * unroll and the 4R accumulators stay in registers. */
QR_AI void ukr_rx64(const int R, int64_t kc, const float *ap, const float *bp, float *c,
                    int64_t ldc, float alpha, float beta) {
    __m512 acc[MR][4];
#pragma GCC unroll 6
    for (int i = 0; i < R; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; p++, ap += MR, bp += NR) {
        const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        const __m512 b2 = _mm512_load_ps(bp + 32), b3 = _mm512_load_ps(bp + 48);
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            const __m512 a = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(a, b2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(a, b3, acc[i][3]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < R; i++)
        for (int j = 0; j < 4; j++) {
            float *cr = c + i * ldc + 16 * j;
            __m512 t = _mm512_mul_ps(va, acc[i][j]);
            if (beta != 0.0f) t = _mm512_add_ps(_mm512_mul_ps(vb, _mm512_loadu_ps(cr)), t);
            _mm512_storeu_ps(cr, t);
        }
}

/* The full 6x64 tile. The k loop is inline assembly so that the 24 accumulators stay in
 * zmm0-23 (row i in zmm4i .. zmm4i+3), one k step of B in zmm24-27 and the broadcasts rotate
 * through zmm28-31: GCC 12's register allocation of the intrinsics version shuffles and
 * spills registers in the loop. Per k step: 4 B loads, 6 broadcasts, 24 FMAs (each product
 * summed in order of k, as in ukr_rx64); then the tile goes from the registers to C with
 * the alpha/beta rounding of the other kernels. */
#define QR_B(s)                                                                  \
    "vmovaps " #s "*256(%[b]), %%zmm24\n\t"                                      \
    "vmovaps " #s "*256+64(%[b]), %%zmm25\n\t"                                   \
    "vmovaps " #s "*256+128(%[b]), %%zmm26\n\t"                                  \
    "vmovaps " #s "*256+192(%[b]), %%zmm27\n\t"
#define QR_R(s, i, c0, c1, c2, c3, t)                                            \
    "vbroadcastss " #s "*24+" #i "*4(%[a]), %%zmm" #t "\n\t"                     \
    "vfmadd231ps %%zmm24, %%zmm" #t ", %%zmm" #c0 "\n\t"                         \
    "vfmadd231ps %%zmm25, %%zmm" #t ", %%zmm" #c1 "\n\t"                         \
    "vfmadd231ps %%zmm26, %%zmm" #t ", %%zmm" #c2 "\n\t"                         \
    "vfmadd231ps %%zmm27, %%zmm" #t ", %%zmm" #c3 "\n\t"
#define QR_K(s)                                                                  \
    QR_B(s)                                                                      \
    QR_R(s, 0, 0, 1, 2, 3, 28) QR_R(s, 1, 4, 5, 6, 7, 29)                        \
    QR_R(s, 2, 8, 9, 10, 11, 30) QR_R(s, 3, 12, 13, 14, 15, 31)                  \
    QR_R(s, 4, 16, 17, 18, 19, 28) QR_R(s, 5, 20, 21, 22, 23, 29)
#define QR_Z4(p, q, r, s)                                                        \
    "vpxord %%zmm" #p ", %%zmm" #p ", %%zmm" #p "\n\t"                           \
    "vpxord %%zmm" #q ", %%zmm" #q ", %%zmm" #q "\n\t"                           \
    "vpxord %%zmm" #r ", %%zmm" #r ", %%zmm" #r "\n\t"                           \
    "vpxord %%zmm" #s ", %%zmm" #s ", %%zmm" #s "\n\t"
/* C row i (at %[c]; then %[c] += ldc): beta == 0: c = alpha * acc; alpha == beta == 1
 * (the K blocks after the first): c = c + acc (the same bits as 1 * c + 1 * acc); else
 * c = beta * c + alpha * acc, each product rounded (the driver's contract). */
#define QR_E0(p)                                                                 \
    "vmulps %%zmm" #p ", %%zmm24, %%zmm" #p "\n\t"
#define QR_ST(p, o) "vmovups %%zmm" #p ", " #o "(%[c])\n\t"
#define QR_ROW0(p, q, r, s)                                                      \
    QR_E0(p) QR_E0(q) QR_E0(r) QR_E0(s)                                          \
    QR_ST(p, 0) QR_ST(q, 64) QR_ST(r, 128) QR_ST(s, 192) "add %[ldc], %[c]\n\t"
#define QR_A1(p, o) "vaddps " #o "(%[c]), %%zmm" #p ", %%zmm" #p "\n\t"
#define QR_ROW1(p, q, r, s)                                                      \
    QR_A1(p, 0) QR_A1(q, 64) QR_A1(r, 128) QR_A1(s, 192)                         \
    QR_ST(p, 0) QR_ST(q, 64) QR_ST(r, 128) QR_ST(s, 192) "add %[ldc], %[c]\n\t"
#define QR_AB(p, o, t)                                                           \
    "vmulps " #o "(%[c]), %%zmm25, %%zmm" #t "\n\t"                              \
    "vaddps %%zmm" #t ", %%zmm" #p ", %%zmm" #p "\n\t"
#define QR_ROW2(p, q, r, s)                                                      \
    QR_E0(p) QR_E0(q) QR_E0(r) QR_E0(s)                                          \
    QR_AB(p, 0, 26) QR_AB(q, 64, 27) QR_AB(r, 128, 28) QR_AB(s, 192, 29)         \
    QR_ST(p, 0) QR_ST(q, 64) QR_ST(r, 128) QR_ST(s, 192) "add %[ldc], %[c]\n\t"
#define QR_ROWS(R)                                                               \
    R(0, 1, 2, 3) R(4, 5, 6, 7) R(8, 9, 10, 11) R(12, 13, 14, 15) R(16, 17, 18, 19) \
    R(20, 21, 22, 23)
#define QR_PFA "768"   /* bytes ahead in the packed A panel (8 k steps) */

static void ukr_6x64(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                     float alpha, float beta) {
    for (int i = 0; i < MR; i++)   /* C's rows are fetched while the products are summed */
        for (int j = 0; j < NR; j += 16)
            _mm_prefetch((const char *)(c + i * ldc + j), _MM_HINT_T0);
    int64_t k4 = kc / 4, k1 = kc % 4, ldcb = ldc * (int64_t)sizeof(float);
    const int mode = beta == 0.0f ? 0 : alpha == 1.0f && beta == 1.0f ? 1 : 2;
    __asm__ volatile(
        QR_Z4(0, 1, 2, 3) QR_Z4(4, 5, 6, 7) QR_Z4(8, 9, 10, 11) QR_Z4(12, 13, 14, 15)
        QR_Z4(16, 17, 18, 19) QR_Z4(20, 21, 22, 23)
        "test %[k4], %[k4]\n\t"
        "jz 2f\n\t"
        ".p2align 6\n"
        "1:\n\t"
        "prefetcht0 " QR_PFA "(%[a])\n\t"
        QR_K(0) QR_K(1)
        "prefetcht0 " QR_PFA "+64(%[a])\n\t"
        QR_K(2) QR_K(3)
        "add $96, %[a]\n\t"
        "add $1024, %[b]\n\t"
        "dec %[k4]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "test %[k1], %[k1]\n\t"
        "jz 4f\n"
        "3:\n\t"
        QR_K(0)
        "add $24, %[a]\n\t"
        "add $256, %[b]\n\t"
        "dec %[k1]\n\t"
        "jnz 3b\n"
        "4:\n\t"
        "cmp $1, %[mode]\n\t"
        "je 6f\n\t"
        "vbroadcastss %[alpha], %%zmm24\n\t"
        "vbroadcastss %[beta], %%zmm25\n\t"
        "ja 7f\n\t"
        QR_ROWS(QR_ROW0)
        "jmp 8f\n"
        "6:\n\t"
        QR_ROWS(QR_ROW1)
        "jmp 8f\n"
        "7:\n\t"
        QR_ROWS(QR_ROW2)
        "8:\n\t"
        : [a] "+r"(ap), [b] "+r"(bp), [k4] "+r"(k4), [k1] "+r"(k1), [c] "+r"(c)
        : [ldc] "r"(ldcb), [mode] "r"(mode), [alpha] "m"(alpha), [beta] "m"(beta)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",
          "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27",
          "xmm28", "xmm29", "xmm30", "xmm31", "cc", "memory");
}
#undef QR_B
#undef QR_R
#undef QR_K
#undef QR_Z4
#undef QR_E0
#undef QR_ST
#undef QR_ROW0
#undef QR_A1
#undef QR_ROW1
#undef QR_AB
#undef QR_ROW2
#undef QR_ROWS

/* Edge rows (M % 6): only the rows that exist are computed. */
static void ukr_rows(int rows, int64_t kc, const float *ap, const float *bp, float *c,
                     int64_t ldc, float alpha, float beta) {
    switch (rows) {
    case 1: ukr_rx64(1, kc, ap, bp, c, ldc, alpha, beta); break;
    case 2: ukr_rx64(2, kc, ap, bp, c, ldc, alpha, beta); break;
    case 3: ukr_rx64(3, kc, ap, bp, c, ldc, alpha, beta); break;
    case 4: ukr_rx64(4, kc, ap, bp, c, ldc, alpha, beta); break;
    case 5: ukr_rx64(5, kc, ap, bp, c, ldc, alpha, beta); break;
    default: ukr_6x64(kc, ap, bp, c, ldc, alpha, beta); break;
    }
}

/* c[R, cols] for cols < 64 (the right edge of C): only the V = ceil(cols / 16) vectors that
 * hold columns are computed, the last stored (and, beta != 0, loaded) under a mask. Same
 * products, order and rounding as ukr_rx64. */
QR_AI void ukr_rv(const int R, const int V, int cols, int64_t kc, const float *ap,
                  const float *bp, float *c, int64_t ldc, float alpha, float beta) {
    __m512 acc[MR][4];
#pragma GCC unroll 6
    for (int i = 0; i < R; i++)
        for (int j = 0; j < V; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; p++, ap += MR, bp += NR) {
        __m512 b[4];
        for (int j = 0; j < V; j++) b[j] = _mm512_load_ps(bp + 16 * j);
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            const __m512 a = _mm512_set1_ps(ap[i]);
            for (int j = 0; j < V; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
        }
    }
    const int w = cols - 16 * (V - 1);
    const __mmask16 last = (__mmask16)(w >= 16 ? 0xFFFF : (1u << w) - 1);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < R; i++)
        for (int j = 0; j < V; j++) {
            float *cr = c + i * ldc + 16 * j;
            const __mmask16 m = j == V - 1 ? last : 0xFFFF;
            __m512 t = _mm512_mul_ps(va, acc[i][j]);
            if (beta != 0.0f)
                t = _mm512_add_ps(_mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, cr)), t);
            _mm512_mask_storeu_ps(cr, m, t);
        }
}

#define QR_EDGE(r)                                                                        \
    case r:                                                                               \
        if (v == 1) ukr_rv(r, 1, cols, kc, ap, bp, c, ldc, alpha, beta);                  \
        else if (v == 2) ukr_rv(r, 2, cols, kc, ap, bp, c, ldc, alpha, beta);             \
        else if (v == 3) ukr_rv(r, 3, cols, kc, ap, bp, c, ldc, alpha, beta);             \
        else ukr_rv(r, 4, cols, kc, ap, bp, c, ldc, alpha, beta);                         \
        break;
/* Edge columns (N % 64, e.g. a 10-class head), any rows <= 6. */
static void ukr_edge(int rows, int cols, int64_t kc, const float *ap, const float *bp,
                     float *c, int64_t ldc, float alpha, float beta) {
    const int v = (cols + 15) / 16;
    switch (rows) {
    QR_EDGE(1) QR_EDGE(2) QR_EDGE(3) QR_EDGE(4) QR_EDGE(5)
    default: QR_EDGE(6)
    }
}
#undef QR_EDGE

/* Ap panels of 6 rows: gemm_x86.h's packer. */
static void pack_a_6(int trans, const float *A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                     int64_t kc, float *ap) {
    qr__pack_a6(trans, A, lda, i0, mc, p0, kc, ap);
}

/* Bp panels of 64 columns. Not transposed (B[K,N]): four 16-wide copies per k (masked at the
 * edge). Transposed (B[N,K]): 64 rows of B, 8 k at a time, by eight 8x8 transposes. */
static void pack_b_64(int trans, const float *B, int64_t ldb, int64_t p0, int64_t kc,
                      int64_t j0, int64_t nc, float *bp) {
    for (int64_t jb = 0; jb < nc; jb += NR, bp += kc * NR) {
        const int64_t cols = nc - jb < NR ? nc - jb : NR;
        if (trans) {
            qr__pack_bt_panel(NR, B, ldb, p0, kc, j0 + jb, cols, bp);
            continue;
        }
        const float *s = B + p0 * ldb + j0 + jb;
        if (cols == NR) {
            for (int64_t p = 0; p < kc; p++, s += ldb)
                for (int j = 0; j < NR; j += 16)
                    _mm512_store_ps(bp + p * NR + j, _mm512_loadu_ps(s + j));
            continue;
        }
        __mmask16 m[4];
        for (int j = 0; j < 4; j++) {
            const int64_t w = cols - 16 * j;
            m[j] = (__mmask16)(w >= 16 ? 0xFFFF : w <= 0 ? 0 : (1u << w) - 1);
        }
        for (int64_t p = 0; p < kc; p++, s += ldb)
            for (int j = 0; j < 4; j++)
                _mm512_store_ps(bp + p * NR + 16 * j, _mm512_maskz_loadu_ps(m[j], s + 16 * j));
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

/* kc 384, mc 96, nc 1024: the 96 KB B micro-panel is read from L2 for each tile (a kc small
 * enough for L1, 128, loses more to the K / kc passes over C than it gains), the packed A
 * block (147 KB) stays in L2, the B block (1.5 MB) in L2 / L3. Measured on a Xeon with
 * AVX-512 (48 KB L1d, 2 MB L2; 2 threads) against kc 128-1024, mc 48-384, nc 512-2048: 1024^2
 * and 2048^2 at 80% and 78% of the FMA peak probe against 70-79%; the 12x32 tile this kernel
 * replaced reached 75% and 71% (its k loop alone: 84% in L1 against 90% for 6x64, which
 * loads 10 instead of 14 values per 24 FMAs). */
static const qr_gemm_kernel avx512_kernel = {MR, NR, 384, 96, 1024, ukr_6x64, pack_a_6,
                                             pack_b_64, skinny_avx512, ukr_rows, ukr_edge};

const qr_gemm_kernel *qr__gemm_avx512_kernel(void) { return &avx512_kernel; }
