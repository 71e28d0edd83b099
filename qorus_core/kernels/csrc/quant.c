/* quant.c - the products y[M,N] = x[M,K] @ W^T of a quantized weight W [N,K] (row-major, the
 * layout of a GGUF tensor; the formats are quant_formats.c's) with float32 activations.
 *
 * Products: each activation row is quantized to 8-bit blocks (quant_internal.h), each block
 * pair gives an exact integer dot product, scaled by d_w * d_x and summed in float32 (plus
 * m_w * s_x for Q4_1), as ggml does. F16 weights are converted and multiplied with the float
 * activations directly. Work is split over N (weight rows) in contiguous ranges; a prompt
 * (M > 1) walks the weight in tiles that stay in L2 while every activation row passes over
 * them, 4 rows at a time (8 on the AVX-512 path). The AVX2 path needs AVX2 + FMA + F16C at run
 * time, the AVX-512 one the AVX-512 tier and AVX512VNNI (qr__quant_tier); the portable path is
 * plain C. Results depend on the SIMD path (summation order), not on the thread count.
 */
#include <stdlib.h>
#include <string.h>

#include "gemm_internal.h"
#include "qr_math.h"
#include "quant_internal.h"
#include "qorus.h"


/* ------------------------------------------------------------------ activations -> q8 rows */
/* bytes a q8 row takes: 32 q + d + s + the paired layout's X (2 floats) a block, 64-aligned;
 * the AVX-512 "x" layouts: qr_x_stride */
static size_t q8_stride(int64_t k, int tier) {   /* the largest a tier's layouts take */
#ifdef QR_HAVE_QUANT_AVX512
    if (tier == QR_SIMD_AVX512) return qr_x_stride(k / QR_QK);
#endif
    (void)tier;
    return ((size_t)(k / QR_QK) * 48 + 63) & ~(size_t)63;
}

/* the q8 layout a weight format takes on a tier: 0 natural (AVX-512: layout 0), 1 paired
 * (AVX2) or quad (AVX-512 layout 1) for the Q4 formats on a SIMD tier; 2 natural on every
 * tier (the formats of quant_kformats.c: q | d | s, whatever the tier) */
#define QL_NATURAL 2
#define QL_COUNT 3
static int q8_layout(int qtype, int tier) {
    if (qtype != QR_QTYPE_Q8_0 && qtype != QR_QTYPE_Q4_0 && qtype != QR_QTYPE_Q4_1)
        return QL_NATURAL;
    return tier >= QR_SIMD_AVX2 && qtype != QR_QTYPE_Q8_0;
}

static void quantize_q8_row(const float *x, int64_t k, uint8_t *row) {
    int64_t nb = k / QR_QK;
    int8_t *q = (int8_t *)row;
    float *d = (float *)(row + nb * QR_QK), *s = d + nb;
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * QR_QK;
        float amax = 0.0f;
        int finite = 1;
        for (int j = 0; j < QR_QK; j++) {
            float a = xb[j] < 0.0f ? -xb[j] : xb[j];
            amax = a > amax ? a : amax;
            finite &= xb[j] - xb[j] == 0.0f;
        }
        if (!finite) {   /* NaN / inf: the block's scale is NaN, so are the outputs */
            memset(q + b * QR_QK, 0, QR_QK);
            d[b] = s[b] = __builtin_nanf("");
            continue;
        }
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < QR_QK; j++) {
            int32_t qi = qr__round_q8(xb[j] * id);
            q[b * QR_QK + j] = (int8_t)qi;
            sum += qi;
        }
        d[b] = db;
        s[b] = db * (float)sum;
    }
}

void qr__quantize_q8_natural(const float *x, int64_t k, uint8_t *row, int tier) {
#ifdef QR_HAVE_AVX2_BUILD
    if (tier >= QR_SIMD_AVX2) {   /* bit-identical to the portable one */
        qr__quantize_q8_row_avx2(x, k, row, 0);
        return;
    }
#endif
    (void)tier;
    quantize_q8_row(x, k, row);
}

typedef struct { const float *x; uint8_t *xq; int64_t k; size_t stride; int tier, layout; } q8_ctx;

static void q8_rows(void *p, int64_t lo, int64_t hi) {
    const q8_ctx *c = p;
    for (int64_t r = lo; r < hi; r++) {
        if (c->layout == QL_NATURAL) {
#ifdef QR_HAVE_AVX2_BUILD
            if (c->tier >= QR_SIMD_AVX2) {   /* bit-identical to the portable one */
                qr__quantize_q8_row_avx2(c->x + r * c->k, c->k, c->xq + r * c->stride, 0);
                continue;
            }
#endif
            quantize_q8_row(c->x + r * c->k, c->k, c->xq + r * c->stride);
            continue;
        }
#ifdef QR_HAVE_QUANT_AVX512
        if (c->tier == QR_SIMD_AVX512) {
            qr__quantize_q8_row_avx512(c->x + r * c->k, c->k, c->xq + r * c->stride, c->layout);
            continue;
        }
#endif
#ifdef QR_HAVE_AVX2_BUILD
        if (c->tier == QR_SIMD_AVX2) {
            qr__quantize_q8_row_avx2(c->x + r * c->k, c->k, c->xq + r * c->stride, c->layout);
            continue;
        }
#endif
        quantize_q8_row(c->x + r * c->k, c->k, c->xq + r * c->stride);
    }
}

/* ------------------------------------------------------------------ portable dot products */
void qr__qdot_q8_0(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx,
                      float *out) {
    for (int j = 0; j < mx; j++) {
        const int8_t *q = (const int8_t *)(xq + j * xs);
        const float *d = (const float *)(xq + j * xs + nb * QR_QK);
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *wb = w + b * 34;
            int32_t s = 0;
            for (int i = 0; i < QR_QK; i++) s += (int8_t)wb[2 + i] * q[b * QR_QK + i];
            acc += qr__get16f(wb) * d[b] * (float)s;
        }
        out[j] = acc;
    }
}

void qr__qdot_q4_0(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx,
                      float *out) {
    for (int j = 0; j < mx; j++) {
        const int8_t *q = (const int8_t *)(xq + j * xs);
        const float *d = (const float *)(xq + j * xs + nb * QR_QK);
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *wb = w + b * 18;
            const int8_t *qb = q + b * QR_QK;
            int32_t s = 0;
            for (int i = 0; i < 16; i++)
                s += ((wb[2 + i] & 15) - 8) * qb[i] + ((wb[2 + i] >> 4) - 8) * qb[i + 16];
            acc += qr__get16f(wb) * d[b] * (float)s;
        }
        out[j] = acc;
    }
}

void qr__qdot_q4_1(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx,
                      float *out) {
    for (int j = 0; j < mx; j++) {
        const int8_t *q = (const int8_t *)(xq + j * xs);
        const float *d = (const float *)(xq + j * xs + nb * QR_QK), *sx = d + nb;
        float acc = 0.0f, accm = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *wb = w + b * 20;
            const int8_t *qb = q + b * QR_QK;
            int32_t s = 0;
            for (int i = 0; i < 16; i++)
                s += (wb[4 + i] & 15) * qb[i] + (wb[4 + i] >> 4) * qb[i + 16];
            acc += qr__get16f(wb) * d[b] * (float)s;
            accm += qr__get16f(wb + 2) * sx[b];
        }
        out[j] = acc + accm;
    }
}

static void fdot_f16(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx,
                     float *out) {
    for (int j = 0; j < mx; j++) {
        const float *xr = x + j * ldx;
        float acc[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= k; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += qr__f16_to_f32(w[i + l]) * xr[i + l];
        for (int l = 0; i < k; i++, l++) acc[l] += qr__f16_to_f32(w[i]) * xr[i];
        float s = 0.0f;
        for (int l = 0; l < 8; l++) s += acc[l];
        out[j] = s;
    }
}

/* ------------------------------------------------------------------ products */
#define QR_TILE_BYTES (96 * 1024)   /* weight tile kept in L2 while activation rows pass */

typedef struct {
    const uint8_t *w;
    size_t wrow;        /* bytes per weight row */
    int64_t M, N, K, nb;
    int rows;           /* activation rows a dot kernel call serves (<= QR_QMAX_ROWS_X) */
    const uint8_t *xq;  /* q8 rows (quantized types) */
    size_t xs;
    const float *x;     /* float rows (F16) */
    float *y;
    qr_qdot_fn qdot;
    qr_fdot_fn fdot;
} mm_ctx;

/* Several activation rows (a prompt through matmul_q): the task's weight rows in tiles that
 * stay in L2 while every activation row passes over them, c->rows rows at a time. */
static void mm_task(void *p, int task, int ntasks) {
    const mm_ctx *c = p;
    int64_t n0 = c->N * task / ntasks, n1 = c->N * (task + 1) / ntasks;
    int64_t tile = c->M <= c->rows ? n1 - n0 : (int64_t)(QR_TILE_BYTES / c->wrow);
    if (tile < 1) tile = 1;
    float out[QR_QMAX_ROWS_X];
    for (int64_t t0 = n0; t0 < n1; t0 += tile) {
        int64_t t1 = t0 + tile < n1 ? t0 + tile : n1;
        for (int64_t m = 0; m < c->M; m += c->rows) {
            int mx = c->M - m < c->rows ? (int)(c->M - m) : c->rows;
            float *y = c->y + m * c->N;
            for (int64_t n = t0; n < t1; n++) {
                const uint8_t *wr = c->w + n * c->wrow;
                if (c->qdot) c->qdot(c->nb, wr, c->xq + m * c->xs, c->xs, mx, out);
                else c->fdot(c->K, (const uint16_t *)wr, c->x + m * c->K, c->K, mx, out);
                for (int j = 0; j < mx; j++) y[j * c->N + n] = out[j];
            }
        }
    }
}

/* the dot kernels of a format on this SIMD tier (rows1 NULL on the portable path) */
static void dot_fns(int qtype, int tier, qr_qdot_fn *qdot, qr_fdot_fn *fdot, qr_qrows_fn *rows1) {
    *qdot = NULL;
    *fdot = NULL;
    *rows1 = NULL;
    if (qtype == QR_QTYPE_F16) *fdot = fdot_f16;
    else if (qtype == QR_QTYPE_BF16) *fdot = qr__fdot_bf16;
    else *qdot = qr__qformat(qtype)->qdot;
    if (qtype != QR_QTYPE_F16 && qtype != QR_QTYPE_Q8_0 && qtype != QR_QTYPE_Q4_0 &&
        qtype != QR_QTYPE_Q4_1) {   /* quant_kformats.c's: the tier's kernels where it has them */
        qr_kq_kernels kq = {0};
#ifdef QR_HAVE_QUANT_AVX512
        if (tier == QR_SIMD_AVX512) kq = qr__kq_avx512(qtype);
#endif
#ifdef QR_HAVE_AVX2_BUILD
        if (tier == QR_SIMD_AVX2) kq = qr__kq_avx2(qtype);
#endif
        if (kq.qdot) *qdot = kq.qdot;
        if (kq.fdot) *fdot = kq.fdot;
        *rows1 = kq.rows1;
        return;
    }
#ifdef QR_HAVE_QUANT_AVX512
    if (tier == QR_SIMD_AVX512) {
        if (qtype == QR_QTYPE_F16) {
            *fdot = qr__fdot_f16_avx512;
            *rows1 = qr__qrows_f16_avx512;
        } else {
            *qdot = qtype == QR_QTYPE_Q8_0 ? qr__qdot_q8_0_avx512
                  : qtype == QR_QTYPE_Q4_0 ? qr__qdot_q4_0_avx512 : qr__qdot_q4_1_avx512;
            *rows1 = qtype == QR_QTYPE_Q8_0 ? qr__qrows_q8_0_avx512
                   : qtype == QR_QTYPE_Q4_0 ? qr__qrows_q4_0_avx512 : qr__qrows_q4_1_avx512;
        }
        return;
    }
#endif
#ifdef QR_HAVE_AVX2_BUILD
    if (tier != QR_SIMD_AVX2) return;
    if (qtype == QR_QTYPE_F16) {
        *fdot = qr__fdot_f16_avx2;
        *rows1 = qr__qrows_f16_avx2;
    } else {
        *qdot = qtype == QR_QTYPE_Q8_0 ? qr__qdot_q8_0_avx2
              : qtype == QR_QTYPE_Q4_0 ? qr__qdot_q4_0_avx2 : qr__qdot_q4_1_avx2;
        *rows1 = qtype == QR_QTYPE_Q8_0 ? qr__qrows_q8_0_avx2
               : qtype == QR_QTYPE_Q4_0 ? qr__qrows_q4_0_avx2 : qr__qrows_q4_1_avx2;
    }
#else
    (void)tier;
#endif
}

static int is_float_format(int qtype) { return qtype == QR_QTYPE_F16 || qtype == QR_QTYPE_BF16; }

/* ------------------------------------------------------------------ decode products */
/* y_i [N_i] = W_i [N_i, K] x for up to QR_MV_MAX weights sharing one activation row x [K]
 * (q/k/v, gate/up): x is quantized once per q8 layout the formats need, and one parallel
 * region walks the rows of all the weights as one range, so the small attention matrices
 * share the threads' time instead of each paying a hand-off. */
#define QR_MV_MAX 3

typedef struct {
    int n;
    int64_t K, nb;
    int64_t first[QR_MV_MAX + 1];   /* first row of weight i in the joint range */
    const uint8_t *w[QR_MV_MAX];
    size_t wrow[QR_MV_MAX];
    float *y[QR_MV_MAX];
    const uint8_t *xq[QR_MV_MAX];   /* the q8 row in this format's layout (or the float row) */
    qr_qdot_fn qdot[QR_MV_MAX];
    qr_fdot_fn fdot[QR_MV_MAX];
    qr_qrows_fn rows1[QR_MV_MAX];
} mv_ctx;

static void mv_task(void *p, int task, int ntasks) {
    const mv_ctx *c = p;
    int64_t R = c->first[c->n], g0 = R * task / ntasks, g1 = R * (task + 1) / ntasks;
    for (int i = 0; i < c->n; i++) {
        int64_t lo = (g0 > c->first[i] ? g0 : c->first[i]) - c->first[i];
        int64_t hi = (g1 < c->first[i + 1] ? g1 : c->first[i + 1]) - c->first[i];
        if (lo >= hi) continue;
        const uint8_t *w = c->w[i] + lo * c->wrow[i];
        float *y = c->y[i] + lo;
        if (c->rows1[i]) {
            c->rows1[i](c->qdot[i] ? c->nb : c->K, w, c->wrow[i], hi - lo, c->xq[i], y);
        } else {
            for (int64_t r = 0; r < hi - lo; r++) {
                if (c->qdot[i]) c->qdot[i](c->nb, w + r * c->wrow[i], c->xq[i], 0, 1, y + r);
                else c->fdot[i](c->K, (const uint16_t *)(w + r * c->wrow[i]),
                                (const float *)c->xq[i], c->K, 1, y + r);
            }
        }
    }
}

static int matvec(const float *x, int64_t K, int n, const int *qtypes, const void *const *ws,
                  float *const *ys, const int64_t *Ns) {
    if (n < 1 || n > QR_MV_MAX || K < 0) return QR_EARG;
    mv_ctx c = {.n = n, .K = K, .nb = K / QR_QK};
    int tier = qr__quant_tier(), layouts = 0;   /* bit l: a q8 row in layout l wanted */
    size_t work = 0;
    for (int i = 0; i < n; i++) {
        int64_t rb = qr_quant_row_bytes(qtypes[i], K);
        if (rb < 0 || Ns[i] < 0) return QR_EARG;
        if (Ns[i] > 0 && (!ys[i] || (K > 0 && (!x || !ws[i])))) return QR_EARG;
        c.first[i + 1] = c.first[i] + Ns[i];
        c.w[i] = ws[i];
        c.wrow[i] = (size_t)rb;
        c.y[i] = ys[i];
        dot_fns(qtypes[i], tier, &c.qdot[i], &c.fdot[i], &c.rows1[i]);
        if (!is_float_format(qtypes[i])) layouts |= 1 << q8_layout(qtypes[i], tier);
        work += (size_t)Ns[i] * (size_t)rb;
    }
    if (c.first[n] == 0) return QR_OK;
    if (K == 0) {
        for (int i = 0; i < n; i++)
            if (Ns[i]) qr_fill_f32(ys[i], Ns[i], 0.0f);
        return QR_OK;
    }
    size_t xs = q8_stride(K, tier);
    uint8_t *xq = layouts ? qr_scratch(2, QL_COUNT * xs) : NULL;
    if (layouts && !xq) return QR_ENOMEM;
    for (int l = 0; l < QL_COUNT; l++) {
        if (!(layouts >> l & 1)) continue;
        q8_ctx qc = {x, xq + l * xs, K, xs, tier, l};
        q8_rows(&qc, 0, 1);
    }
    for (int i = 0; i < n; i++)
        c.xq[i] = is_float_format(qtypes[i]) ? (const uint8_t *)x
                : xq + (size_t)q8_layout(qtypes[i], tier) * xs;
    /* bandwidth-bound: worth splitting down to 16 KiB of weights a task (a spinning worker
     * starts in about a microsecond); 2 tasks a thread, claimed dynamically, so a thread the
     * OS preempts delays only its current slice (each output depends on its row alone), and
     * few task starts break the weight stream (4 a thread measured 1-3% slower decoding) */
    int nt = qr_tasks_for(work, (size_t)1 << 14);
    if (nt > 1) nt *= 2;
    if (nt > c.first[n]) nt = (int)c.first[n];
    qr_parallel(mv_task, &c, nt);
    return QR_OK;
}

/* The checks the products share: QR_EARG; 1 when y is already done (empty, or K = 0: zeros);
 * else 0, with *rb the bytes of a weight row. */
static int mm_prologue(int qtype, const float *x, const void *w, float *y, int64_t M, int64_t N,
                       int64_t K, int64_t *rb) {
    *rb = qr_quant_row_bytes(qtype, K);
    if (*rb < 0 || M < 0 || N < 0) return QR_EARG;
    if (M == 0 || N == 0) return 1;
    if (!y || (K > 0 && (!x || !w))) return QR_EARG;
    if (K == 0) {
        qr_fill_f32(y, M * N, 0.0f);
        return 1;
    }
    return 0;
}

static int matmul(int qtype, const float *x, const void *w, float *y, int64_t M, int64_t N,
                  int64_t K) {
    int64_t rb;
    const int rc = mm_prologue(qtype, x, w, y, M, N, K, &rb);
    if (rc) return rc < 0 ? rc : QR_OK;
    if (M == 1) return matvec(x, K, 1, &qtype, &w, &y, &N);
    int tier = qr__quant_tier();
    qr_qrows_fn unused;
    /* 8 rows a call on AVX-512 (F16: 4, its float rows would leave L1) */
    const int rows = tier == QR_SIMD_AVX512 && q8_layout(qtype, tier) != QL_NATURAL &&
                     !is_float_format(qtype) ? QR_QMAX_ROWS_X : QR_QMAX_ROWS;
    mm_ctx c = {w, (size_t)rb, M, N, K, K / QR_QK, rows, NULL, 0, x, y, NULL, NULL};
    dot_fns(qtype, tier, &c.qdot, &c.fdot, &unused);
    if (!is_float_format(qtype)) {
        c.xs = q8_stride(K, tier);
        uint8_t *xq = qr_scratch(2, (size_t)M * c.xs);
        if (!xq) return QR_ENOMEM;
        q8_ctx qc = {x, xq, K, c.xs, tier, q8_layout(qtype, tier)};
        qr_par_items(q8_rows, &qc, M, M * K * 4);
        c.xq = xq;
    }
    /* weight bytes touched (once per group of activation rows) decide the split */
    int64_t groups = (M + c.rows - 1) / c.rows;
    int nt = qr_tasks_for((size_t)N * (size_t)rb * (size_t)groups, (size_t)1 << 16);
    if (nt > 1) nt *= 4;   /* claimed dynamically, as in matvec */
    if (nt > N) nt = (int)N;
    qr_parallel(mm_task, &c, nt);
    return QR_OK;
}

/* the public multi-weight decode product (see qorus.h); a NULL w ends the list */
int qr_matmul_q3_f32(const float *x, int64_t K, int t0, const void *w0, float *y0, int64_t n0,
                     int t1, const void *w1, float *y1, int64_t n1, int t2, const void *w2,
                     float *y2, int64_t n2) {
    int qtypes[QR_MV_MAX] = {t0, t1, t2};
    const void *ws[QR_MV_MAX] = {w0, w1, w2};
    float *ys[QR_MV_MAX] = {y0, y1, y2};
    int64_t Ns[QR_MV_MAX] = {n0, n1, n2};
    int n = !w0 ? 0 : !w1 ? 1 : !w2 ? 2 : 3;
    return matvec(x, K, n, qtypes, ws, ys, Ns);
}

/* ------------------------------------------------------------------ float-activation products */
#define QF_PANEL 64   /* weight rows dequantized at a time: 64 x K floats stay in L2 */

typedef struct {
    int qtype;
    const float *x;
    const uint8_t *w;
    float *y;
    int64_t M, N, K;
    size_t rb;
    int64_t panels;
    int failed;       /* set when a task cannot get its buffers */
} qf_ctx;

/* Panels [lo, hi) of one task: dequantize each (qrows, serial), multiply by the GEMM (a
 * nested qr_gemm_f32 runs serially on this thread), copy the columns into y. */
static void qf_task(void *p, int task, int ntasks) {
    qf_ctx *c = p;
    int64_t lo = c->panels * task / ntasks, hi = c->panels * (task + 1) / ntasks;
    if (lo >= hi) return;
    float *panel = malloc((size_t)QF_PANEL * (size_t)c->K * sizeof(float));
    float *yp = malloc((size_t)c->M * QF_PANEL * sizeof(float));
    if (!panel || !yp) {
        __atomic_store_n(&c->failed, 1, __ATOMIC_RELAXED);
    } else {
        for (int64_t pi = lo; pi < hi; pi++) {
            int64_t n0 = pi * QF_PANEL, n = c->N - n0 < QF_PANEL ? c->N - n0 : QF_PANEL;
            qr__dequantize_rows(c->qtype, c->w + n0 * c->rb, c->rb, panel, n, c->K);
            qr_gemm_f32(0, 1, c->M, n, c->K, 1.0f, c->x, panel, 0.0f, yp);   /* yp = x panel^T */
            for (int64_t m = 0; m < c->M; m++)
                memcpy(c->y + m * c->N + n0, yp + m * n, (size_t)n * sizeof(float));
        }
    }
    free(panel);
    free(yp);
}

typedef struct { int qtype; const uint8_t *w; size_t rb; int64_t K; } qf_rows_ctx;

static void qf_rows(const void *p, int64_t n0, int64_t n, float *out) {
    const qf_rows_ctx *c = p;
    qr__dequantize_rows(c->qtype, c->w + n0 * c->rb, c->rb, out, n, c->K);
}

static int matmul_qf(int qtype, const float *x, const void *w, float *y, int64_t M, int64_t N,
                     int64_t K) {
    int64_t rb;
    const int rc = mm_prologue(qtype, x, w, y, M, N, K, &rb);
    if (rc) return rc < 0 ? rc : QR_OK;
    if (M > QR_SKINNY_M) {   /* x packed once, the weight dequantized into the GEMM's panels */
        qf_rows_ctx rc2 = {qtype, w, (size_t)rb, K};
        return qr__gemm_rows_f32(M, N, K, x, qf_rows, &rc2, y);
    }
    qf_ctx c = {qtype, x, w, y, M, N, K, (size_t)rb, (N + QF_PANEL - 1) / QF_PANEL, 0};
    int nt = qr_tasks_for((size_t)M * (size_t)N * (size_t)K, (size_t)1 << 20);
    if (nt > c.panels) nt = (int)c.panels;
    qr_parallel(qf_task, &c, nt);
    return c.failed ? QR_ENOMEM : QR_OK;
}

/* ------------------------------------------------------------------ public entry points */
/* qr_matmul_<fmt>_f32, qr_matmul_qf_<fmt>_f32 (declared in qorus.h) */
#define QR_PRODUCT_API(fmt, qtype)                                                        \
    int qr_matmul_##fmt##_f32(const float *x, const void *w, float *y, int64_t M, int64_t N, \
                              int64_t K) {                                                 \
        return matmul(qtype, x, w, y, M, N, K);                                            \
    }                                                                                      \
    int qr_matmul_qf_##fmt##_f32(const float *x, const void *w, float *y, int64_t M,       \
                                 int64_t N, int64_t K) {                                   \
        return matmul_qf(qtype, x, w, y, M, N, K);                                         \
    }
QR_PRODUCT_API(q8_0, QR_QTYPE_Q8_0)
QR_PRODUCT_API(q4_0, QR_QTYPE_Q4_0)
QR_PRODUCT_API(q4_1, QR_QTYPE_Q4_1)
QR_PRODUCT_API(f16, QR_QTYPE_F16)
QR_PRODUCT_API(bf16, QR_QTYPE_BF16)
QR_PRODUCT_API(q5_0, QR_QTYPE_Q5_0)
QR_PRODUCT_API(q5_1, QR_QTYPE_Q5_1)
QR_PRODUCT_API(q2_k, QR_QTYPE_Q2_K)
QR_PRODUCT_API(q3_k, QR_QTYPE_Q3_K)
QR_PRODUCT_API(q4_k, QR_QTYPE_Q4_K)
QR_PRODUCT_API(q5_k, QR_QTYPE_Q5_K)
QR_PRODUCT_API(q6_k, QR_QTYPE_Q6_K)
QR_PRODUCT_API(iq4_nl, QR_QTYPE_IQ4_NL)

/* ------------------------------------------------------------------ decode rows */
/* y[m] = W x[m] for M decode rows at once (a batched decode step over several sequences),
 * each row exactly as qr_matmul_<fmt>_f32 computes it with M = 1 (the same q8 row, the same
 * sums in the same order), the weight walked in tiles that stay in L2 while every row passes
 * over them, so it is read from memory once for all M rows. Where a format's dot kernel
 * gives each of several rows what the decode kernel gives it alone, rows share its calls
 * (and its weight unpacking): the AVX-512 Q4_0 / Q4_1 / Q8_0 kernels, up to 8 rows (q4x,
 * q8x: every row's arithmetic is the one-row code's); elsewhere the decode kernel itself,
 * row after row. */
#define QR_ROWS_AHEAD 2048   /* bytes of weight prefetched ahead (the decode kernels' distance) */

static int exact_rows(int qtype, int tier) {
#ifdef QR_HAVE_QUANT_AVX512
    if (tier == QR_SIMD_AVX512) {
        if (qtype == QR_QTYPE_Q4_0 || qtype == QR_QTYPE_Q4_1 || qtype == QR_QTYPE_Q8_0)
            return QR_QMAX_ROWS_X;
    }
#endif
    (void)qtype;
    (void)tier;
    return 1;
}

typedef struct {
    const uint8_t *w;
    size_t wrow, xs;
    int64_t M, N, K, nb, tile, pf_rows;
    int rows;           /* rows a qdot call takes (1: the decode kernel, row by row) */
    const uint8_t *xq;  /* q8 rows (quantized formats) */
    const float *x;     /* float rows (F16, BF16) */
    float *y;
    qr_qdot_fn qdot;
    qr_fdot_fn fdot;
    qr_qrows_fn rows1;
} mr_ctx;

static void mr_row(const mr_ctx *c, const uint8_t *w, int64_t n, int64_t m, float *y) {
    const uint8_t *xr = c->qdot ? c->xq + m * c->xs : (const uint8_t *)(c->x + m * c->K);
    if (c->rows1) {                              /* as mv_task does for its one row */
        c->rows1(c->qdot ? c->nb : c->K, w, c->wrow, n, xr, y);
        return;
    }
    for (int64_t r = 0; r < n; r++) {
        if (c->qdot) c->qdot(c->nb, w + r * c->wrow, xr, 0, 1, y + r);
        else c->fdot(c->K, (const uint16_t *)(w + r * c->wrow), (const float *)xr, c->K, 1,
                     y + r);
    }
}

static void mr_task(void *p, int task, int ntasks) {
    const mr_ctx *c = p;
    int64_t n0 = c->N * task / ntasks, n1 = c->N * (task + 1) / ntasks;
    float out[QR_QMAX_ROWS_X];
    for (int64_t t0 = n0; t0 < n1; t0 += c->tile) {
        const int64_t t1 = t0 + c->tile < n1 ? t0 + c->tile : n1;
        const uint8_t *w = c->w + t0 * c->wrow;
        for (int64_t m = 0; m < c->M; m += c->rows) {
            if (c->rows == 1) {
                mr_row(c, w, t1 - t0, m, c->y + m * c->N + t0);
                continue;
            }
            const int mx = c->M - m < c->rows ? (int)(c->M - m) : c->rows;
            for (int64_t n = t0; n < t1; n++) {
                /* the decode kernels' stream prefetch: weight rows QR_ROWS_AHEAD bytes on
                 * (the prompt dot kernels look only a few blocks ahead) */
                if (m == 0 && n + c->pf_rows < n1)
                    for (size_t b = 0; b < c->wrow; b += 64)
                        __builtin_prefetch(c->w + (n + c->pf_rows) * c->wrow + b, 0, 3);
                c->qdot(c->nb, c->w + n * c->wrow, c->xq + m * c->xs, c->xs, mx, out);
                for (int j = 0; j < mx; j++) c->y[(m + j) * c->N + n] = out[j];
            }
        }
    }
}

int qr_matmul_rows_f32(const float *x, int qtype, const void *w, float *y, int64_t M, int64_t N,
                       int64_t K) {
    int64_t rb;
    const int rc = mm_prologue(qtype, x, w, y, M, N, K, &rb);
    if (rc) return rc < 0 ? rc : QR_OK;
    if (M == 1) return matvec(x, K, 1, &qtype, &w, &y, &N);
    const int tier = qr__quant_tier();
    mr_ctx c = {.w = w, .wrow = (size_t)rb, .M = M, .N = N, .K = K, .nb = K / QR_QK, .x = x,
                .y = y, .rows = exact_rows(qtype, tier)};
    dot_fns(qtype, tier, &c.qdot, &c.fdot, &c.rows1);
    if (!is_float_format(qtype)) {
        c.xs = q8_stride(K, tier);
        uint8_t *xq = qr_scratch(2, (size_t)M * c.xs);
        if (!xq) return QR_ENOMEM;
        q8_ctx qc = {x, xq, K, c.xs, tier, q8_layout(qtype, tier)};
        qr_par_items(q8_rows, &qc, M, M * K * 4);
        c.xq = xq;
    }
    if (!c.qdot) c.rows = 1;
    c.pf_rows = (int64_t)((QR_ROWS_AHEAD + (size_t)rb - 1) / (size_t)rb);
    c.tile = (int64_t)(QR_TILE_BYTES / (size_t)rb);
    if (c.tile < 1) c.tile = 1;
    int nt = qr_tasks_for((size_t)N * (size_t)rb, (size_t)1 << 14);
    if (nt > 1) nt *= 2;   /* claimed dynamically, as in matvec */
    if (nt > N) nt = (int)N;
    qr_parallel(mr_task, &c, nt);
    return QR_OK;
}
