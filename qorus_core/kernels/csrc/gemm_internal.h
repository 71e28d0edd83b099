/* gemm_internal.h - private interface between the GEMM driver (gemm.c) and its SIMD kernels
 * (gemm_avx2.c, gemm_avx512.c). Not installed, not part of the public API. */
#ifndef QORUS_GEMM_INTERNAL_H
#define QORUS_GEMM_INTERNAL_H

#include <stdint.h>

/* Packed layouts (mr, nr: the micro-tile):
 *   Ap: ceil(mc/mr) panels, each kc x mr: Ap[panel][p][i] = op(A)[i0 + panel*mr + i, p0 + p]
 *   Bp: ceil(nc/nr) panels, each kc x nr: Bp[panel][p][j] = op(B)[p0 + p, j0 + panel*nr + j]
 * rows/columns past the edge are packed as zeros. */
typedef struct qr_gemm_kernel {
    int mr, nr;           /* micro-tile */
    int kc, mc, nc;       /* cache blocks: kc x nr B panel in L1, mc x kc A block in L2 */
    /* c[mr, nr] (row stride ldc) = alpha * Ap_panel @ Bp_panel + beta * c;
     * beta == 0 never reads c; rounding: t = alpha*acc; c = beta*c + t (no fused add). */
    void (*ukr)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                float alpha, float beta);
    /* op(A) block [i0, i0+mc) x [p0, p0+kc) into Ap; A stored [M,K] (lda) or [K,M] if trans */
    void (*pack_a)(int trans, const float *A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                   int64_t kc, float *ap);
    /* op(B) block [p0, p0+kc) x [j0, j0+nc) into Bp; B stored [K,N] (ldb) or [N,K] if trans */
    void (*pack_b)(int trans, const float *B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                   int64_t nc, float *bp);
    /* skinny (M <= 4) with B^T, B stored [N,K]: C[M, j0:j1] (row stride ldc) =
     * alpha * A[M,K] @ B[j0:j1, :]^T + beta * C, A rows contiguous (lda = K), B read in place
     * once (token-by-token GEMV). */
    void (*skinny)(int M, int64_t K, const float *A, const float *B, int64_t ldb, float *C,
                   int64_t ldc, int64_t j0, int64_t j1, float alpha, float beta);
    /* optional: the micro-kernel for the first `rows` < mr rows only (same rounding as ukr) */
    void (*ukr_rows)(int rows, int64_t kc, const float *ap, const float *bp, float *c,
                     int64_t ldc, float alpha, float beta);
    /* optional: c[rows, cols] for rows <= mr, cols < nr (the right edge of C), written in
     * place (same rounding as ukr); without it the driver goes through an mr x nr tile */
    void (*ukr_edge)(int rows, int cols, int64_t kc, const float *ap, const float *bp,
                     float *c, int64_t ldc, float alpha, float beta);
} qr_gemm_kernel;

#define QR_SKINNY_M 4

#define QR_GEMM_SLACK 64   /* floats of slack after a packed buffer (overlapping stores) */

#define QR_GEMM_MAX_TILE 512   /* mr * nr of every kernel is at most this */

const qr_gemm_kernel *qr__gemm_avx2_kernel(void);     /* gemm_avx2.c */
const qr_gemm_kernel *qr__gemm_avx512_kernel(void);   /* gemm_avx512.c */

/* rows(ctx, n0, n, w): w [n, K] = rows n0 .. n0 + n - 1 of a generated matrix W [N, K] */
typedef void (*qr_rows_gen_fn)(const void *ctx, int64_t n0, int64_t n, float *w);
/* C[M,N] = A[M,K] @ W^T, W's rows generated 128 at a time (gemm.c; matmul_qf's prompts):
 * QR_OK or QR_ENOMEM. M, N, K > 0, A and C not NULL. Uses the caller's scratch slot 2 and
 * the tasks' slots 0 and 1. */
int qr__gemm_rows_f32(int64_t M, int64_t N, int64_t K, const float *A, qr_rows_gen_fn rows,
                      const void *rctx, float *C);

#endif
