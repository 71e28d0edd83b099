/* quant_prompt.c - the prompt product with 8-bit activations: y [M, N] = x [M, K] @ W^T for a
 * quantized weight W [N, K] (a GGUF tensor's rows) and several activation rows, as an integer
 * GEMM (qr_matmul_qp_<fmt>_f32); up to three weights sharing x (a prompt's q/k/v or gate/up
 * projections) in one call (qr_linears_qp_f32).
 *
 * Each row of x is quantized once to quant.c's q8 blocks (the bits the decode path gives it);
 * every output is then exactly what the portable one-row kernel (the format's qdot) gives for
 * that row: exact integer block sums, then block after block in float32 (quant_prompt.h), so
 * the result is the same on every SIMD tier and for every thread count, and equals the
 * portable tier's decode product row by row (the SIMD decode kernels sum the same integers in
 * another order: within their products' tolerance).
 *
 * Q8_0, Q4_0, Q4_1 and Q6_K have SIMD tiles (AVX-512 VNNI: 16 activation rows x up to 8 weight
 * rows a call, vpdpbusd; AVX2: 8 x 8, vpmaddubsw): the activation rows are laid out once per
 * call in panels of R rows (quant_prompt.h), each weight tile of 8 rows is unpacked once into
 * signed bytes and its scales (quant_prompt_avx2.c, for both tiers), and every activation
 * panel passes over it while it stays in L1; tasks take contiguous ranges of weight tiles
 * (of all the call's weights as one list). The other block formats, and the portable tier,
 * run the one-row kernel itself, row by row. */
#include <string.h>

#include "qr_math.h"
#include "quant_internal.h"
#include "quant_prompt.h"
#include "qorus.h"

#define QP_MAXW 3   /* weights of one call */

/* QP_* of a format with SIMD tiles, -1 for the others */
static int qp_format(int qtype) {
    switch (qtype) {
    case QR_QTYPE_Q8_0: return QP_Q8_0;
    case QR_QTYPE_Q4_0: return QP_Q4_0;
    case QR_QTYPE_Q4_1: return QP_Q4_1;
    case QR_QTYPE_Q6_K: return QP_Q6_K;
    default: return -1;
    }
}

typedef struct {
    const uint8_t *w;
    size_t rb;                    /* bytes a weight row */
    int64_t N;
    float *y;                     /* [M, N] */
    int fmt;                      /* QP_*, -1: the one-row kernel */
    qr_qdot_fn qdot;              /* the format's portable one-row kernel */
} qp_weight;

typedef struct {
    int nw, R;                    /* weights; R: rows a panel (a preparation item) */
    qp_weight wt[QP_MAXW];
    int64_t first[QP_MAXW + 1];   /* first tile of weight i in the joint list (tiled ones) */
    int cur;                      /* the weight a row_task serves */
    const float *x;
    int64_t M, K, nb;
    uint8_t *xq;                  /* q8 rows (natural layout: q | d | s), xs bytes apart */
    size_t xs;
    uint8_t *ap;                  /* activation panels (NULL: none), aps bytes apart */
    size_t aps;
    int64_t npanels;
    int tier;
    qp_tile_fn tile;              /* NULL: no SIMD tiles on this tier */
    int failed;                   /* a task could not get its tile buffer */
} qp_ctx;

/* ------------------------------------------------------------------ activations */
/* panel pi: rows pi R .. pi R + R - 1 side by side (quant_prompt.h); rows past M hold
 * q = 0 (bytes 128) and d = s = 0 */
static void pack_panel(const qp_ctx *c, int64_t pi) {
    const int R = c->R;
    const size_t bs = QP_APANEL_BLOCK(R);
    uint8_t *out = c->ap + (size_t)pi * c->aps;
    for (int r = 0; r < R; r++) {
        const int64_t m = pi * R + r;
        const uint8_t *row = m < c->M ? c->xq + (size_t)m * c->xs : NULL;
        const float *d = row ? (const float *)(row + c->nb * QR_QK) : NULL;
        for (int64_t b = 0; b < c->nb; b++) {
            uint8_t *ob = out + (size_t)b * bs;
            float *od = (float *)(ob + (size_t)32 * R), *os = od + R;
            for (int g = 0; g < 8; g++) {
                uint32_t v = 0;
                if (row) memcpy(&v, row + b * QR_QK + 4 * g, 4);
                v ^= 0x80808080u;   /* q + 128, each byte */
                memcpy(ob + ((size_t)g * R + r) * 4, &v, 4);
            }
            od[r] = row ? d[b] : 0.0f;
            os[r] = row ? d[c->nb + b] : 0.0f;
        }
    }
}

/* groups [lo, hi) of R rows: each row quantized (the q8 rows), then the group's panel where
 * a weight takes the tiles */
static void prepare_rows(void *p, int64_t lo, int64_t hi) {
    const qp_ctx *c = p;
    for (int64_t gi = lo; gi < hi; gi++) {
        const int64_t r1 = (gi + 1) * c->R < c->M ? (gi + 1) * c->R : c->M;
        for (int64_t r = gi * c->R; r < r1; r++)
            qr__quantize_q8_natural(c->x + r * c->K, c->K, c->xq + r * c->xs, c->tier);
        if (c->ap) pack_panel(c, gi);
    }
}

/* ------------------------------------------------------------------ the SIMD tiles */
#ifdef QR_HAVE_AVX2_BUILD
/* joint tile t: its weight and first row */
static inline const qp_weight *tile_of(const qp_ctx *c, int64_t t, int64_t *n0) {
    int i = 0;
    while (t >= c->first[i + 1]) i++;
    *n0 = (t - c->first[i]) * QP_NW;
    return &c->wt[i];
}

static void tile_task(void *p, int task, int ntasks) {
    qp_ctx *c = p;
    const int64_t all = c->first[c->nw];
    const int64_t t0 = all * task / ntasks, t1 = all * (task + 1) / ntasks;
    if (t0 >= t1) return;
    /* slot 0: this thread's tile (the caller holds slots 2 and 3: the q8 rows, the panels) */
    uint8_t *wt = qr_scratch(0, (size_t)c->nb * QP_WBLOCK);
    if (!wt) {
        __atomic_store_n(&c->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        int64_t n0, m0;
        const qp_weight *W = tile_of(c, t, &n0);
        const int nw = W->N - n0 < QP_NW ? (int)(W->N - n0) : QP_NW;
        qr__qp_build_tile_avx2(W->fmt, W->w + (size_t)n0 * W->rb, W->rb, nw, c->nb, wt);
        /* the next tile's weight bytes, requested a slice before each panel: they arrive
         * while the panels run instead of stalling its unpacking */
        int64_t ahead = 0, nn = 0;
        const qp_weight *V = t + 1 < t1 ? tile_of(c, t + 1, &nn) : NULL;
        if (V) ahead = (int64_t)((size_t)(V->N - nn < QP_NW ? V->N - nn : QP_NW) * V->rb);
        const uint8_t *next = V ? V->w + (size_t)nn * V->rb : NULL;
        const int64_t slice = (ahead / c->npanels + 63) & ~(int64_t)63;
        for (int64_t pi = 0; pi < c->npanels; pi++) {
            for (int64_t o = pi * slice; o < (pi + 1) * slice && o < ahead; o += 64)
                __builtin_prefetch(next + o, 0, 2);
            m0 = pi * c->R;
            const int rows = c->M - m0 < c->R ? (int)(c->M - m0) : c->R;
            c->tile(W->fmt, c->nb, c->ap + (size_t)pi * c->aps, wt, nw, rows,
                    W->y + m0 * W->N + n0, W->N);
        }
    }
}

/* the rows prepared (c->xq, c->ap): one parallel region over the tiles of the weights with
 * SIMD tiles */
static int run_tiles(qp_ctx *c) {
    size_t work = 0;
    c->first[0] = 0;
    for (int i = 0; i < c->nw; i++) {
        const int tiled = c->wt[i].fmt >= 0;
        c->first[i + 1] = c->first[i] + (tiled ? (c->wt[i].N + QP_NW - 1) / QP_NW : 0);
        if (tiled) work += (size_t)c->M * (size_t)c->wt[i].N * (size_t)c->K;
    }
    int nt = qr_tasks_for(work, (size_t)1 << 21);
    if (nt > 1) nt *= 4;   /* claimed dynamically: a preempted thread delays one slice */
    if (nt > c->first[c->nw]) nt = (int)c->first[c->nw];
    qr_parallel(tile_task, c, nt);
    return c->failed ? QR_ENOMEM : QR_OK;
}
#endif

/* ------------------------------------------------------------------ the one-row kernel */
/* the one-row kernel for each (row, weight row) of weight c->cur: weight rows in tiles that
 * stay in L2 */
#define QP_ROWS_TILE_BYTES (96 * 1024)
static void row_task(void *p, int task, int ntasks) {
    const qp_ctx *c = p;
    const qp_weight *W = &c->wt[c->cur];
    const int64_t n0 = W->N * task / ntasks, n1 = W->N * (task + 1) / ntasks;
    int64_t tile = (int64_t)(QP_ROWS_TILE_BYTES / W->rb);
    if (tile < 1) tile = 1;
    float out[QR_QMAX_ROWS];
    for (int64_t t0 = n0; t0 < n1; t0 += tile) {
        const int64_t t1 = t0 + tile < n1 ? t0 + tile : n1;
        for (int64_t m = 0; m < c->M; m += QR_QMAX_ROWS) {
            const int mx = c->M - m < QR_QMAX_ROWS ? (int)(c->M - m) : QR_QMAX_ROWS;
            for (int64_t n = t0; n < t1; n++) {   /* each row's sums are its own (qdot) */
                W->qdot(c->nb, W->w + (size_t)n * W->rb, c->xq + (size_t)m * c->xs, c->xs, mx,
                        out);
                for (int j = 0; j < mx; j++) W->y[(m + j) * W->N + n] = out[j];
            }
        }
    }
}

/* ------------------------------------------------------------------ the products */
/* y_i [M, N_i] = x [M, K] @ W_i^T for the n weights (each a block format), x quantized once */
static int products(const float *x, int64_t M, int64_t K, int n, const int *qtypes,
                    const void *const *ws, float *const *ys, const int64_t *Ns) {
    if (n < 1 || n > QP_MAXW || M < 0 || K < 0) return QR_EARG;
    qp_ctx c = {.nw = n, .x = x, .M = M, .K = K, .nb = K / QR_QK, .tier = qr__quant_tier()};
    int64_t total = 0;
    int tiled = 0;
    for (int i = 0; i < n; i++) {
        const qr_qformat *f = qr__qformat(qtypes[i]);
        const int64_t rb = qr_quant_row_bytes(qtypes[i], K);
        if (!f || !f->qdot || rb < 0 || Ns[i] < 0) return QR_EARG;   /* block formats only */
        if (M > 0 && Ns[i] > 0 && (!ys[i] || (K > 0 && (!x || !ws[i])))) return QR_EARG;
        c.wt[i] = (qp_weight){ws[i], (size_t)rb, Ns[i], ys[i], qp_format(qtypes[i]), f->qdot};
        total += Ns[i];
    }
    if (M == 0 || total == 0) return QR_OK;
    if (K == 0) {
        for (int i = 0; i < n; i++)
            if (Ns[i]) qr_fill_f32(ys[i], M * Ns[i], 0.0f);
        return QR_OK;
    }
#ifdef QR_HAVE_QUANT_AVX512
    if (c.tier == QR_SIMD_AVX512) {
        c.tile = qr__qp_tile_avx512;
        c.R = 16;
    }
#endif
#ifdef QR_HAVE_AVX2_BUILD
    if (c.tier == QR_SIMD_AVX2) {
        c.tile = qr__qp_tile_avx2;
        c.R = 8;
    }
#endif
    if (!c.tile) c.R = 16;   /* rows a preparation item (no panels) */
    for (int i = 0; i < n; i++) {
        if (!c.tile || c.wt[i].N == 0) c.wt[i].fmt = -1;
        tiled |= c.wt[i].fmt >= 0;
    }
    c.xs = qr_a64((size_t)c.nb * (QR_QK + 8));
    c.xq = qr_scratch(2, (size_t)M * c.xs);
    if (!c.xq) return QR_ENOMEM;
    c.npanels = (M + c.R - 1) / c.R;
    if (tiled) {
        c.aps = (size_t)c.nb * QP_APANEL_BLOCK(c.R);
        c.ap = qr_scratch(3, (size_t)c.npanels * c.aps);
        if (!c.ap) return QR_ENOMEM;
    }
    /* a row's quantization is about 4 K operations, its panel's part 2 K: worth a thread
     * from 16 K values a task */
    qr_par_items_grain(prepare_rows, &c, c.npanels, M * K, (int64_t)1 << 14);
#ifdef QR_HAVE_AVX2_BUILD
    if (tiled) {
        const int rc = run_tiles(&c);
        if (rc) return rc;
    }
#endif
    for (c.cur = 0; c.cur < n; c.cur++) {
        const qp_weight *W = &c.wt[c.cur];
        if (W->fmt >= 0 || W->N == 0) continue;
        int nt = qr_tasks_for((size_t)M * (size_t)W->N * (size_t)K, (size_t)1 << 20);
        if (nt > 1) nt *= 4;   /* claimed dynamically, as the tiles' tasks */
        if (nt > W->N) nt = (int)W->N;
        qr_parallel(row_task, &c, nt);
    }
    return QR_OK;
}

/* qr_matmul_qp_<fmt>_f32 (qorus.h) */
#define QP_API(fmt, qtype)                                                                 \
    int qr_matmul_qp_##fmt##_f32(const float *x, const void *w, float *y, int64_t M,        \
                                 int64_t N, int64_t K) {                                    \
        const int t = qtype;                                                               \
        return products(x, M, K, 1, &t, &w, &y, &N);                                       \
    }
QP_API(q8_0, QR_QTYPE_Q8_0)
QP_API(q4_0, QR_QTYPE_Q4_0)
QP_API(q4_1, QR_QTYPE_Q4_1)
QP_API(q5_0, QR_QTYPE_Q5_0)
QP_API(q5_1, QR_QTYPE_Q5_1)
QP_API(iq4_nl, QR_QTYPE_IQ4_NL)
QP_API(q2_k, QR_QTYPE_Q2_K)
QP_API(q3_k, QR_QTYPE_Q3_K)
QP_API(q4_k, QR_QTYPE_Q4_K)
QP_API(q5_k, QR_QTYPE_Q5_K)
QP_API(q6_k, QR_QTYPE_Q6_K)

/* the public multi-weight prompt product (qorus.h); a NULL w ends the list */
int qr_linears_qp_f32(const float *x, int64_t M, int64_t K, int t0, const void *w0, float *y0,
                      int64_t n0, int t1, const void *w1, float *y1, int64_t n1, int t2,
                      const void *w2, float *y2, int64_t n2) {
    const int qtypes[QP_MAXW] = {t0, t1, t2};
    const void *ws[QP_MAXW] = {w0, w1, w2};
    float *ys[QP_MAXW] = {y0, y1, y2};
    const int64_t Ns[QP_MAXW] = {n0, n1, n2};
    const int n = !w0 ? 0 : !w1 ? 1 : !w2 ? 2 : 3;
    return products(x, M, K, n, qtypes, ws, ys, Ns);
}
