/* gemm.c - the f32 GEMM driver: packed panels, cache blocking, threads, and the portable path.
 *
 *   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
 *
 * Loop nest (BLIS order), per thread over its own block of C:
 *   jc: N in steps of nc  ->  pc: K in kb equal steps (<= kc)  ->  pack B block [kc, nc]
 *     ic: M in steps of mc  ->  pack A block [mc, kc]
 *       jr: nr columns (B micro-panel stays in L1)  ->  ir: mr rows  ->  micro-kernel
 * Threads split C along N (each packs its own B columns and all of A) or along M, on
 * micro-tile boundaries. Each C element is summed in the same order whatever the split, so
 * results do not depend on the thread count.
 */
#include <string.h>

#include "gemm_internal.h"
#include "qorus.h"
#include "qr_math.h"

/* ------------------------------------------------------------------ portable kernel */
#define P_MR 6
#define P_NR 8

static void ukr_portable(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                         float alpha, float beta) {
    float acc[P_MR][P_NR];
    for (int i = 0; i < P_MR; i++)
        for (int j = 0; j < P_NR; j++) acc[i][j] = 0.0f;
    for (int64_t p = 0; p < kc; p++) {
        const float *a = ap + p * P_MR, *b = bp + p * P_NR;
        for (int i = 0; i < P_MR; i++) {
            float ai = a[i];
            for (int j = 0; j < P_NR; j++) acc[i][j] += ai * b[j];
        }
    }
    for (int i = 0; i < P_MR; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f) {
            for (int j = 0; j < P_NR; j++) ci[j] = alpha * acc[i][j];
        } else {
            for (int j = 0; j < P_NR; j++) {
                float t = alpha * acc[i][j];
                ci[j] = beta * ci[j] + t;
            }
        }
    }
}

/* Generic packers for any (mr, nr); the AVX2 file has faster ones for 6 x 16. */
static void pack_a_generic(int mr, int trans, const float *A, int64_t lda, int64_t i0,
                           int64_t mc, int64_t p0, int64_t kc, float *ap) {
    for (int64_t ib = 0; ib < mc; ib += mr) {
        int64_t rows = mc - ib < mr ? mc - ib : mr;
        for (int64_t p = 0; p < kc; p++) {
            float *d = ap + p * mr;
            for (int64_t i = 0; i < rows; i++)
                d[i] = trans ? A[(p0 + p) * lda + i0 + ib + i] : A[(i0 + ib + i) * lda + p0 + p];
            for (int64_t i = rows; i < mr; i++) d[i] = 0.0f;
        }
        ap += kc * mr;
    }
}

static void pack_b_generic(int nr, int trans, const float *B, int64_t ldb, int64_t p0,
                           int64_t kc, int64_t j0, int64_t nc, float *bp) {
    for (int64_t jb = 0; jb < nc; jb += nr) {
        int64_t cols = nc - jb < nr ? nc - jb : nr;
        for (int64_t p = 0; p < kc; p++) {
            float *d = bp + p * nr;
            for (int64_t j = 0; j < cols; j++)
                d[j] = trans ? B[(j0 + jb + j) * ldb + p0 + p] : B[(p0 + p) * ldb + j0 + jb + j];
            for (int64_t j = cols; j < nr; j++) d[j] = 0.0f;
        }
        bp += kc * nr;
    }
}

static void pack_a_portable(int trans, const float *A, int64_t lda, int64_t i0, int64_t mc,
                            int64_t p0, int64_t kc, float *ap) {
    pack_a_generic(P_MR, trans, A, lda, i0, mc, p0, kc, ap);
}
static void pack_b_portable(int trans, const float *B, int64_t ldb, int64_t p0, int64_t kc,
                            int64_t j0, int64_t nc, float *bp) {
    pack_b_generic(P_NR, trans, B, ldb, p0, kc, j0, nc, bp);
}

/* Skinny product with B^T, portable: a 16-lane dot product per element. */
static void skinny_portable(int M, int64_t K, const float *A, const float *B, int64_t ldb,
                            float *C, int64_t ldc, int64_t j0, int64_t j1, float alpha,
                            float beta) {
    for (int64_t j = j0; j < j1; j++)
        for (int i = 0; i < M; i++) {
            const float *a = A + i * K, *b = B + j * ldb;
            float acc[16] = {0};
            int64_t p = 0;
            for (; p + 16 <= K; p += 16)
                for (int q = 0; q < 16; q++) acc[q] += a[p + q] * b[p + q];
            float s = 0.0f;
            for (int q = 0; q < 16; q++) s += acc[q];
            for (; p < K; p++) s += a[p] * b[p];
            float t = alpha * s, *c = C + i * ldc + j;
            *c = beta == 0.0f ? t : beta * *c + t;
        }
}

/* Skinny product with B[K,N] (both paths): stream the rows of B once, accumulating
 * acc[i, :] += A[i, p] * B[p, j0:j1] in blocks of columns that stay in L1/L2; each element
 * sums p in order. Memory-bound, so plain vectorized C is enough. */
#define SKINNY_COLS 2048
static int skinny_rows(int M, int64_t K, const float *A, const float *B, int64_t ldb, float *C,
                       int64_t ldc, int64_t j0, int64_t j1, float alpha, float beta) {
    float *acc = qr_scratch(3, (size_t)QR_SKINNY_M * SKINNY_COLS * sizeof(float));
    if (!acc) return QR_ENOMEM;
    for (int64_t jb = j0; jb < j1; jb += SKINNY_COLS) {
        int64_t w = j1 - jb < SKINNY_COLS ? j1 - jb : SKINNY_COLS;
        memset(acc, 0, (size_t)(M * w) * sizeof(float));
        int64_t p = 0;
        for (; p + 4 <= K; p += 4) {   /* four rows of B per pass, still added in order of p */
            const float *restrict b0 = B + p * ldb + jb, *restrict b1 = b0 + ldb;
            const float *restrict b2 = b1 + ldb, *restrict b3 = b2 + ldb;
            for (int i = 0; i < M; i++) {
                const float *a = A + i * K + p;
                const float a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
                float *restrict r = acc + i * w;
                for (int64_t q = 0; q < w; q++)
                    r[q] = (((r[q] + a0 * b0[q]) + a1 * b1[q]) + a2 * b2[q]) + a3 * b3[q];
            }
        }
        for (; p < K; p++) {
            const float *restrict b = B + p * ldb + jb;
            for (int i = 0; i < M; i++) {
                const float a = A[i * K + p];
                float *restrict r = acc + i * w;
                for (int64_t q = 0; q < w; q++) r[q] = r[q] + a * b[q];
            }
        }
        for (int i = 0; i < M; i++)
            for (int64_t q = 0; q < w; q++) {
                float t = alpha * acc[i * w + q], *c = C + i * ldc + jb + q;
                *c = beta == 0.0f ? t : beta * *c + t;
            }
    }
    return QR_OK;
}

static const qr_gemm_kernel portable_kernel = {
    P_MR, P_NR, 256, 120, 2048, ukr_portable, pack_a_portable, pack_b_portable,
    skinny_portable, 0};

/* ------------------------------------------------------------------ driver */
typedef struct {
    const qr_gemm_kernel *kr;
    int ta, tb, split_n;
    int64_t M, N, K, lda, ldb, kc, kb;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int64_t unit, tiles;     /* split dimension in micro-tiles */
    volatile int err;
} gemm_ctx;

/* the micro-kernel of the SIMD tier in effect */
static const qr_gemm_kernel *tier_kernel(void) {
#ifdef QR_HAVE_AVX2_BUILD
    const int tier = qr_simd_path();
#ifdef QR_HAVE_AVX512_BUILD
    if (tier >= QR_SIMD_AVX512) return qr__gemm_avx512_kernel();
#endif
    if (tier >= QR_SIMD_AVX2) return qr__gemm_avx2_kernel();
#endif
    return &portable_kernel;
}

/* c[mv, nv] (row stride ldc) = alpha * Ap_panel @ Bp_panel + beta * c for one micro-tile,
 * the edge ones (mv < mr or nv < nr) through ukr_rows, ukr_edge or the tmp tile [mr, nr] */
static void run_tile(const qr_gemm_kernel *kr, int64_t kc, const float *apan, const float *bpan,
                     float *c, int64_t ldc, int64_t mv, int64_t nv, float alpha, float beta,
                     float *tmp) {
    const int mr = kr->mr, nr = kr->nr;
    if (mv == mr && nv == nr) {
        kr->ukr(kc, apan, bpan, c, ldc, alpha, beta);
        return;
    }
    if (kr->ukr_rows && nv == nr) {     /* edge rows, full width */
        kr->ukr_rows((int)mv, kc, apan, bpan, c, ldc, alpha, beta);
        return;
    }
    if (kr->ukr_edge) {                 /* edge columns */
        kr->ukr_edge((int)mv, (int)nv, kc, apan, bpan, c, ldc, alpha, beta);
        return;
    }
    if (kr->ukr_rows) kr->ukr_rows((int)mv, kc, apan, bpan, tmp, nr, alpha, 0.0f);
    else kr->ukr(kc, apan, bpan, tmp, nr, alpha, 0.0f);
    for (int64_t i = 0; i < mv; i++)
        for (int64_t j = 0; j < nv; j++) {
            float t = tmp[i * nr + j];
            c[i * ldc + j] = beta == 0.0f ? t : beta * c[i * ldc + j] + t;
        }
}

/* One thread's block C[m0:m1, n0:n1]. */
static void gemm_block(gemm_ctx *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const qr_gemm_kernel *kr = g->kr;
    const int mr = kr->mr, nr = kr->nr;
    const int64_t N = g->N, kc_max = g->kc;
    int64_t mc_max = kr->mc, nc_max = kr->nc;
    if (m1 - m0 < mc_max) mc_max = m1 - m0;
    if (n1 - n0 < nc_max) nc_max = n1 - n0;
    int64_t mcp = (mc_max + mr - 1) / mr * mr, ncp = (nc_max + nr - 1) / nr * nr;
    float *ap = qr_scratch(0, (size_t)(mcp * kc_max + QR_GEMM_SLACK) * sizeof(float));
    float *bp = qr_scratch(1, (size_t)(ncp * kc_max + QR_GEMM_SLACK) * sizeof(float));
    if (!ap || !bp) { g->err = QR_ENOMEM; return; }
    float tmp[QR_GEMM_MAX_TILE] __attribute__((aligned(64)));   /* an edge tile, mr x nr */

    for (int64_t jc = n0; jc < n1; jc += nc_max) {
        int64_t nc = n1 - jc < nc_max ? n1 - jc : nc_max;
        for (int64_t b = 0; b < g->kb; b++) {
            int64_t pc = b * g->kc, kc = g->K - pc < g->kc ? g->K - pc : g->kc;
            float beta = b == 0 ? g->beta : 1.0f;
            kr->pack_b(g->tb, g->B, g->ldb, pc, kc, jc, nc, bp);
            for (int64_t ic = m0; ic < m1; ic += mc_max) {
                int64_t mc = m1 - ic < mc_max ? m1 - ic : mc_max;
                kr->pack_a(g->ta, g->A, g->lda, ic, mc, pc, kc, ap);
                for (int64_t jr = 0; jr < nc; jr += nr) {
                    int64_t nv = nc - jr < nr ? nc - jr : nr;
                    const float *bpan = bp + (jr / nr) * kc * nr;
                    for (int64_t ir = 0; ir < mc; ir += mr) {
                        int64_t mv = mc - ir < mr ? mc - ir : mr;
                        const float *apan = ap + (ir / mr) * kc * mr;
                        run_tile(kr, kc, apan, bpan, g->C + (ic + ir) * N + jc + jr, N, mv,
                                 nv, g->alpha, beta, tmp);
                    }
                }
            }
        }
    }
}

static void gemm_task(void *ctx, int task, int ntasks) {
    gemm_ctx *g = ctx;
    int64_t t0 = g->tiles * task / ntasks, t1 = g->tiles * (task + 1) / ntasks;
    int64_t lo = t0 * g->unit, hi = t1 * g->unit;
    int64_t dim = g->split_n ? g->N : g->M;
    if (hi > dim) hi = dim;
    if (lo >= hi) return;
    if (g->split_n) gemm_block(g, 0, g->M, lo, hi);
    else gemm_block(g, lo, hi, 0, g->N);
}

/* Skinny path: threads split N in chunks of 64 columns. */
static void skinny_task(void *ctx, int task, int ntasks) {
    gemm_ctx *g = ctx;
    int64_t chunks = (g->N + 63) / 64;
    int64_t j0 = chunks * task / ntasks * 64, j1 = chunks * (task + 1) / ntasks * 64;
    if (j1 > g->N) j1 = g->N;
    if (j0 >= j1) return;
    if (g->tb)
        g->kr->skinny((int)g->M, g->K, g->A, g->B, g->ldb, g->C, g->N, j0, j1, g->alpha,
                      g->beta);
    else if (skinny_rows((int)g->M, g->K, g->A, g->B, g->ldb, g->C, g->N, j0, j1, g->alpha,
                         g->beta))
        g->err = QR_ENOMEM;
}

static void scale_c(float *C, int64_t n, float beta) {
    if (beta == 0.0f) memset(C, 0, (size_t)n * sizeof(float));
    else if (beta != 1.0f)
        for (int64_t i = 0; i < n; i++) C[i] *= beta;
}

int qr_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, const float *B, float beta, float *C) {
    if (M < 0 || N < 0 || K < 0) return QR_EARG;
    if (M == 0 || N == 0) return QR_OK;
    if (!C) return QR_EARG;
    if (K == 0) { scale_c(C, M * N, beta); return QR_OK; }
    if (!A || !B) return QR_EARG;

    gemm_ctx g;
    memset(&g, 0, sizeof(g));
    g.kr = tier_kernel();
    g.ta = trans_a; g.tb = trans_b;
    g.M = M; g.N = N; g.K = K;
    g.lda = trans_a ? M : K;
    g.ldb = trans_b ? K : N;
    g.alpha = alpha; g.beta = beta;
    g.A = A; g.B = B; g.C = C;
    if (M <= QR_SKINNY_M) {        /* GEMV-like: read B once, in place, no packing */
        if (trans_a) {              /* op(A) rows made contiguous: M * K floats */
            float *a = qr_scratch(2, (size_t)(M * K) * sizeof(float));
            if (!a) return QR_ENOMEM;
            for (int64_t i = 0; i < M; i++)
                for (int64_t p = 0; p < K; p++) a[i * K + p] = A[p * M + i];
            g.A = a;
        }
        int nt = qr_tasks_for((size_t)M * (size_t)N * (size_t)K, (size_t)1 << 17);
        int64_t chunks = (N + 63) / 64;
        qr_parallel(skinny_task, &g, nt < chunks ? nt : (int)chunks);
        return g.err;
    }
    g.kb = (K + g.kr->kc - 1) / g.kr->kc;            /* K in kb equal blocks */
    g.kc = (K + g.kb - 1) / g.kb;

    /* Threads: ~2^17 multiply-adds make a task worth waking a worker for. */
    int64_t tn = (N + g.kr->nr - 1) / g.kr->nr, tm = (M + g.kr->mr - 1) / g.kr->mr;
    int nt = qr_tasks_for((size_t)M * (size_t)N * (size_t)K, (size_t)1 << 17);
    /* split N when A is the smaller operand (each thread re-packs A) and N has tiles */
    g.split_n = (tn >= nt && (M <= N || tm < nt)) || tm < 2;
    g.unit = g.split_n ? g.kr->nr : g.kr->mr;
    g.tiles = g.split_n ? tn : tm;
    if (nt > g.tiles) nt = (int)g.tiles;
    qr_parallel(gemm_task, &g, nt);
    return g.err;
}

/* ------------------------------------------------------------------ GEMM over generated rows */
/* C[M,N] = A[M,K] @ W^T where W [N,K] is produced a panel of rows at a time by a callback (a
 * quantized weight's dequantizer: matmul_qf). A is packed once, shared by every task, instead
 * of once per panel; each task dequantizes its panels of PANEL_COLS rows into its own buffer,
 * packs them as B and runs the micro-kernels straight into C. Same loop order per C element
 * as gemm_block (K blocks in order), so results do not depend on the thread count. */
typedef struct {
    const qr_gemm_kernel *kr;
    int64_t M, N, K, kc, kb, mc, mblocks, mcp, panel;
    const float *A;
    float *ap;                 /* A packed: block (b, i) at (b * mblocks + i) * mcp * kc */
    qr_rows_gen_fn rows;
    const void *rctx;
    float *C;
    int err;
} rowgemm_ctx;

static void rowgemm_pack_a(void *p, int64_t lo, int64_t hi) {
    rowgemm_ctx *g = p;
    for (int64_t t = lo; t < hi; t++) {
        int64_t b = t / g->mblocks, i = t % g->mblocks;
        int64_t pc = b * g->kc, kc = g->K - pc < g->kc ? g->K - pc : g->kc;
        int64_t ic = i * g->mc, mc = g->M - ic < g->mc ? g->M - ic : g->mc;
        g->kr->pack_a(0, g->A, g->K, ic, mc, pc, kc, g->ap + t * g->mcp * g->kc);
    }
}

static void rowgemm_task(void *p, int task, int ntasks) {
    rowgemm_ctx *g = p;
    const qr_gemm_kernel *kr = g->kr;
    const int mr = kr->mr, nr = kr->nr;
    const int64_t N = g->N, panels = (N + g->panel - 1) / g->panel;
    int64_t p0 = panels * task / ntasks, p1 = panels * (task + 1) / ntasks;
    if (p0 >= p1) return;
    float *bp = qr_scratch(0, (size_t)(g->panel * g->kc + QR_GEMM_SLACK) * sizeof(float));
    float *w = qr_scratch(1, (size_t)(g->panel * g->K) * sizeof(float));
    if (!bp || !w) { __atomic_store_n(&g->err, QR_ENOMEM, __ATOMIC_RELAXED); return; }
    float tmp[QR_GEMM_MAX_TILE] __attribute__((aligned(64)));   /* an edge tile, mr x nr */
    for (int64_t pi = p0; pi < p1; pi++) {
        int64_t n0 = pi * g->panel, nc = N - n0 < g->panel ? N - n0 : g->panel;
        g->rows(g->rctx, n0, nc, w);                              /* w [nc, K] */
        for (int64_t b = 0; b < g->kb; b++) {
            int64_t pc = b * g->kc, kc = g->K - pc < g->kc ? g->K - pc : g->kc;
            float beta = b == 0 ? 0.0f : 1.0f;
            kr->pack_b(1, w, g->K, pc, kc, 0, nc, bp);
            for (int64_t i = 0; i < g->mblocks; i++) {
                int64_t ic = i * g->mc, mc = g->M - ic < g->mc ? g->M - ic : g->mc;
                const float *ap = g->ap + (b * g->mblocks + i) * g->mcp * g->kc;
                for (int64_t jr = 0; jr < nc; jr += nr) {
                    int64_t nv = nc - jr < nr ? nc - jr : nr;
                    const float *bpan = bp + (jr / nr) * kc * nr;
                    for (int64_t ir = 0; ir < mc; ir += mr) {
                        int64_t mv = mc - ir < mr ? mc - ir : mr;
                        const float *apan = ap + (ir / mr) * kc * mr;
                        run_tile(kr, kc, apan, bpan, g->C + (ic + ir) * N + n0 + jr, N, mv,
                                 nv, 1.0f, beta, tmp);
                    }
                }
            }
        }
    }
}

int qr__gemm_rows_f32(int64_t M, int64_t N, int64_t K, const float *A, qr_rows_gen_fn rows,
                      const void *rctx, float *C) {
    rowgemm_ctx g;
    memset(&g, 0, sizeof(g));
    g.kr = tier_kernel();
    const int mr = g.kr->mr, nr = g.kr->nr;
    g.M = M; g.N = N; g.K = K; g.A = A; g.rows = rows; g.rctx = rctx; g.C = C;
    g.kb = (K + g.kr->kc - 1) / g.kr->kc;
    g.kc = (K + g.kb - 1) / g.kb;
    g.mc = g.kr->mc < M ? g.kr->mc : M;
    g.mblocks = (M + g.mc - 1) / g.mc;
    g.mcp = (g.mc + mr - 1) / mr * mr;
    g.panel = (128 + nr - 1) / nr * nr;            /* weight rows dequantized at a time */
    g.ap = qr_scratch(2, (size_t)(g.kb * g.mblocks * g.mcp * g.kc + QR_GEMM_SLACK) * sizeof(float));
    if (!g.ap) return QR_ENOMEM;
    qr_par_items(rowgemm_pack_a, &g, g.kb * g.mblocks, M * K);
    int nt = qr_tasks_for((size_t)M * (size_t)N * (size_t)K, (size_t)1 << 20);
    int64_t panels = (N + g.panel - 1) / g.panel;
    if (nt > panels) nt = (int)panels;
    qr_parallel(rowgemm_task, &g, nt);
    return g.err;
}
