/* decode_rows.c - a decode step over several sequences at once (a server's slots), each row
 * with its own position and its own KV-cache slot: RoPE at per-row positions, the new keys
 * and values stored at each row's position of its slot, and decode attention over each
 * row's own length. Every row gets exactly what the one-row kernels give it alone (the same
 * cos/sin table entries, the same key chunks and merge order as a one-row qr_attention_decode
 * of that length), so a sequence decodes the same batched or not; the rows share one parallel
 * region. pos and slot are int32 [B]; a position or slot out of range is QR_ETARGET, checked
 * for every row before anything is written. The products (qr_linears_rows_f32, at the end)
 * give each row what the one-row decode product gives it, reading each weight once. */
#include <math.h>
#include <string.h>

#include "decode_rows_internal.h"
#include "fused_internal.h"
#include "quant_internal.h"

#define QR_ROWS_MAX 64   /* rows of one step */

/* ------------------------------------------------------------------ rope */
/* scratch slot 4 is RoPE's table (fused.c); this header's first field is -1, which a
 * position never is, so the two never take each other's table */
typedef struct { int64_t magic, B, T, D; float theta; int valid; } rows_header;

int qr_rope_rows_f32(const float *x, float *y, const int32_t *pos, int64_t B, int64_t T,
                     int64_t H, int64_t D, float theta, int half_split) {
    if (B < 0 || B > QR_ROWS_MAX || T < 0 || H < 0 || D < 0 || (D & 1) || !(theta > 0.0f))
        return QR_EARG;
    if (B * T * H * D == 0) return QR_OK;
    if (!x || !y || !pos) return QR_EARG;
    for (int64_t b = 0; b < B; b++)
        if (pos[b] < 0) return QR_ETARGET;
    const int64_t half = D / 2, rows = B * T;
    rows_header key;
    memset(&key, 0, sizeof key);   /* padding too: compared bytewise */
    key.magic = -1, key.B = B, key.T = T, key.D = D, key.theta = theta, key.valid = 1;
    const size_t head = 64 + (((size_t)B * sizeof(int32_t) + 63) & ~(size_t)63);
    uint8_t *buf = qr_scratch(4, head + (size_t)(rows * D) * sizeof(float));
    if (!buf) return QR_ENOMEM;
    float *cs = (float *)(buf + head);
    if (memcmp(buf, &key, sizeof key) != 0 || memcmp(buf + 64, pos, (size_t)B * sizeof(int32_t))) {
        for (int64_t i = 0; i < half; i++) {   /* as fused.c's rope, position by position */
            const double freq = pow((double)theta, -(double)(2 * i) / (double)D);
            for (int64_t r = 0; r < rows; r++) {
                const double a = (double)((int64_t)pos[r / T] + r % T) * freq;
                cs[r * D + i] = (float)cos(a);
                cs[r * D + half + i] = (float)sin(a);
            }
        }
        memcpy(buf, &key, sizeof key);
        memcpy(buf + 64, pos, (size_t)B * sizeof(int32_t));
    }
    rope_ctx c = {.x = x, .y = y, .cs = cs, .T = rows, .H = H, .D = D, .half_split = half_split};
    qr_par_items(qr_simd_pick3(rope_rows), &c, rows, rows * H * D);
    return QR_OK;
}

/* ------------------------------------------------------------------ kv store */
static int rows_in_range(const int32_t *slot, const int32_t *pos, int64_t B, int64_t T,
                         int64_t S, int64_t L) {
    for (int64_t b = 0; b < B; b++)
        if (slot[b] < 0 || slot[b] >= S || pos[b] < 0 || pos[b] + T > L) return 0;
    return 1;
}

int qr_kv_store_rows_f32(const float *src, float *cache, const int32_t *slot, const int32_t *pos,
                         int64_t B, int64_t T, int64_t W, int64_t S, int64_t L) {
    if (B < 0 || T < 0 || W < 0 || S < 0 || L < 0) return QR_EARG;
    if (B * T * W == 0) return QR_OK;
    if (!src || !cache || !slot || !pos) return QR_EARG;
    if (!rows_in_range(slot, pos, B, T, S, L)) return QR_ETARGET;
    for (int64_t b = 0; b < B; b++)
        memcpy(cache + ((int64_t)slot[b] * L + pos[b]) * W, src + b * T * W,
               (size_t)(T * W) * sizeof(float));
    return QR_OK;
}

/* ------------------------------------------------------------------ decode attention */
typedef struct {
    att_ctx *row;             /* one one-row context per row */
    const int64_t *first;     /* first unit of each row in the joint range; first[B] all */
    int64_t B, Hkv;
} adr_ctx;

static void adr_items(void *p, int64_t lo, int64_t hi) {   /* units of every row */
    const adr_ctx *c = p;
    int64_t b = 0;
    for (int64_t u = lo; u < hi;) {
        while (c->first[b + 1] <= u) b++;
        const int64_t end = hi < c->first[b + 1] ? hi : c->first[b + 1];
        qr_simd_pick3(att_dec_items)(&c->row[b], u - c->first[b], end - c->first[b]);
        u = end;
    }
}

static void adr_merge(void *p, int64_t lo, int64_t hi) {   /* items: (row, kv head) */
    const adr_ctx *c = p;
    for (int64_t it = lo; it < hi; it++) {
        att_ctx *r = &c->row[it / c->Hkv];
        if (r->chunk < r->Tk)                  /* cut into chunks: partials to merge */
            qr_simd_pick3(att_dec_merge)(r, it % c->Hkv, it % c->Hkv + 1);
    }
}

int qr_attention_decode_rows_f32(const float *q, const float *k_cache, const float *v_cache,
                                 float *out, const int32_t *slot, const int32_t *pos, int64_t B,
                                 int64_t H, int64_t Hkv, int64_t D, int64_t S, int64_t L,
                                 float scale) {
    if (B < 0 || B > QR_ROWS_MAX || H <= 0 || Hkv <= 0 || D < 0 || H % Hkv || S < 0 || L < 0)
        return QR_EARG;
    if (B * D == 0) return QR_OK;
    if (!q || !k_cache || !v_cache || !out || !slot || !pos) return QR_EARG;
    if (!rows_in_range(slot, pos, B, 1, S, L)) return QR_ETARGET;
    att_ctx row[QR_ROWS_MAX];
    int64_t first[QR_ROWS_MAX + 1], part_at[QR_ROWS_MAX];
    int64_t work = 0, parts = 0, mwork = 0;
    const int64_t G = H / Hkv;
    first[0] = 0;
    for (int64_t b = 0; b < B; b++) {   /* row b: what a one-row step of its length does */
        const int64_t n = (int64_t)pos[b] + 1, chunk = qr__dec_chunk(1, Hkv, n);
        const int64_t nc = (n + chunk - 1) / chunk, at = (int64_t)slot[b] * L * Hkv * D;
        memset(&row[b], 0, sizeof row[b]);
        row[b].q = q + b * H * D;
        row[b].k = k_cache + at;
        row[b].v = v_cache + at;
        row[b].o = out + b * H * D;
        row[b].B = 1, row[b].Tq = 1, row[b].Tk = n, row[b].H = H, row[b].Hkv = Hkv;
        row[b].D = D, row[b].max_ctx = L, row[b].chunk = chunk, row[b].scale = scale;
        atomic_init(&row[b].err, 0);
        first[b + 1] = first[b] + Hkv * nc;
        part_at[b] = parts;
        if (nc > 1) parts += Hkv * nc * G * (D + 2), mwork += H * nc * D;
        work += H * n * D;
    }
    if (parts) {   /* the caller's scratch (slot 0 is each task's): every row's partials */
        float *part = qr_scratch(3, (size_t)parts * sizeof(float));
        if (!part) return QR_ENOMEM;
        for (int64_t b = 0; b < B; b++) row[b].part = part + part_at[b];
    }
    adr_ctx c = {row, first, B, Hkv};
    qr_par_items_grain(adr_items, &c, first[B], work, QR_DEC_GRAIN);
    for (int64_t b = 0; b < B; b++)
        if (atomic_load(&row[b].err)) return QR_ENOMEM;
    if (parts) qr_par_items(adr_merge, &c, B * Hkv, mwork);
    return QR_OK;
}

/* ------------------------------------------------------------------ products */
/* y_i[M, n_i] = x[M, K] W_i^T for up to three weights of one format sharing the rows x (q/k/v,
 * gate/up), each row exactly as qr_matmul_<fmt>_f32 computes it with M = 1 (the decode step of
 * that sequence alone: its q8 row, its sums in their order), with x quantized once and one
 * parallel region over the rows of all the weights. Q8_0 / Q4_0 / Q4_1 on the AVX-512 and
 * AVX2 tiers take the tier's mrows kernels (decode_rows_avx512.c / _avx2.c: each weight row
 * unpacked once for every activation row), every quantized format on the portable tier the
 * format's dot kernel over all the rows at once (the decode kernel, row by row within);
 * anything else (F16, BF16, the K-quants on a SIMD tier) quant.c's qr_matmul_rows_f32, weight
 * by weight. Each output depends on its row alone: the same for any thread count. */
#define QR_LR_MAX 3
#define QR_PORTABLE_ROWS 4   /* rows a portable dot kernel call takes (quant.c's QR_QMAX_ROWS) */

static size_t portable_stride(int64_t nb) { return ((size_t)nb * 48 + 63) & ~(size_t)63; }

/* the mrows path a format takes on a tier: the tier, or -1 (quant.c's decode rows) */
static int lr_path(int qtype, int tier) {
    const int fast = qtype == QR_QTYPE_Q8_0 || qtype == QR_QTYPE_Q4_0 || qtype == QR_QTYPE_Q4_1;
    (void)fast;   /* a build without SIMD tiers */
#ifdef QR_HAVE_QUANT_AVX512
    if (tier == QR_SIMD_AVX512) return fast ? tier : -1;
#endif
#ifdef QR_HAVE_AVX2_BUILD
    if (tier == QR_SIMD_AVX2) return fast ? tier : -1;
#endif
    if (tier != QR_SIMD_PORTABLE || qtype == QR_QTYPE_F16 || qtype == QR_QTYPE_BF16) return -1;
    return qr__qformat(qtype) && qr__qformat(qtype)->qdot ? QR_SIMD_PORTABLE : -1;
}

typedef struct {
    int n, path, qtype;
    int64_t M, nb;
    size_t wrow, xs;                 /* xs: the portable rows' stride */
    const uint8_t *acts;
    int64_t first[QR_LR_MAX + 1];    /* first row of weight i in the joint range */
    const uint8_t *w[QR_LR_MAX];
    float *y[QR_LR_MAX];
    qr_qdot_fn qdot;                 /* the portable path's */
} lr_ctx;

/* rows [lo, hi) of weight i against every activation row */
static void lr_rows(const lr_ctx *c, int i, int64_t lo, int64_t hi) {
    const uint8_t *w = c->w[i] + lo * c->wrow;
    const int64_t ldy = c->first[i + 1] - c->first[i];
    float *y = c->y[i] + lo;
#ifdef QR_HAVE_QUANT_AVX512
    if (c->path == QR_SIMD_AVX512) {
        qr__mrows_avx512(c->qtype, c->nb, w, c->wrow, hi - lo, c->acts, c->M, y, ldy);
        return;
    }
#endif
#ifdef QR_HAVE_AVX2_BUILD
    if (c->path == QR_SIMD_AVX2) {
        qr__mrows_avx2(c->qtype, c->nb, w, c->wrow, hi - lo, c->acts, c->M, y, ldy);
        return;
    }
#endif
    float out[QR_PORTABLE_ROWS];
    for (int64_t r = 0; r < hi - lo; r++)
        for (int64_t m = 0; m < c->M; m += QR_PORTABLE_ROWS) {
            const int mx = c->M - m < QR_PORTABLE_ROWS ? (int)(c->M - m) : QR_PORTABLE_ROWS;
            c->qdot(c->nb, w + r * c->wrow, c->acts + (size_t)m * c->xs, c->xs, mx, out);
            for (int j = 0; j < mx; j++) y[(m + j) * ldy + r] = out[j];
        }
}

static void lr_task(void *p, int task, int ntasks) {
    const lr_ctx *c = p;
    const int64_t R = c->first[c->n], g0 = R * task / ntasks, g1 = R * (task + 1) / ntasks;
    for (int i = 0; i < c->n; i++) {
        const int64_t lo = (g0 > c->first[i] ? g0 : c->first[i]) - c->first[i];
        const int64_t hi = (g1 < c->first[i + 1] ? g1 : c->first[i + 1]) - c->first[i];
        if (lo < hi) lr_rows(c, i, lo, hi);
    }
}

int qr_linears_rows_f32(const float *x, int64_t M, int64_t K, int qtype, const void *w0,
                        float *y0, int64_t n0, const void *w1, float *y1, int64_t n1,
                        const void *w2, float *y2, int64_t n2) {
    const void *ws[QR_LR_MAX] = {w0, w1, w2};
    float *ys[QR_LR_MAX] = {y0, y1, y2};
    const int64_t Ns[QR_LR_MAX] = {n0, n1, n2};
    const int64_t rb = qr_quant_row_bytes(qtype, K);
    const int n = !w0 ? 0 : !w1 ? 1 : !w2 ? 2 : 3;
    if (rb < 0 || M < 0 || K < 0) return QR_EARG;
    lr_ctx c = {.n = n, .qtype = qtype, .M = M, .nb = K / QR_QK, .wrow = (size_t)rb};
    for (int i = 0; i < n; i++) {
        if (Ns[i] < 0) return QR_EARG;
        if (M > 0 && Ns[i] > 0 && (!ys[i] || (K > 0 && !x))) return QR_EARG;
        c.first[i + 1] = c.first[i] + Ns[i];
        c.w[i] = ws[i];
        c.y[i] = ys[i];
    }
    if (M == 0 || c.first[n] == 0) return QR_OK;
    if (K == 0) {
        for (int i = 0; i < n; i++)
            if (Ns[i]) qr_fill_f32(ys[i], M * Ns[i], 0.0f);
        return QR_OK;
    }
    c.path = lr_path(qtype, qr__quant_tier());
    if (c.path < 0) {   /* quant.c's decode rows, weight by weight */
        for (int i = 0; i < n; i++) {
            const int rc = Ns[i] ? qr_matmul_rows_f32(x, qtype, ws[i], ys[i], M, Ns[i], K) : QR_OK;
            if (rc != QR_OK) return rc;
        }
        return QR_OK;
    }
    uint8_t *acts = NULL;   /* the rows quantized once, in the layout the path reads */
#ifdef QR_HAVE_QUANT_AVX512
    if (c.path == QR_SIMD_AVX512) {
        if (!(acts = qr_scratch(2, qr__mrows_acts_bytes_avx512(qtype, M, K)))) return QR_ENOMEM;
        qr__mrows_acts_avx512(qtype, x, M, K, acts);
    }
#endif
#ifdef QR_HAVE_AVX2_BUILD
    if (c.path == QR_SIMD_AVX2) {
        if (!(acts = qr_scratch(2, qr__mrows_acts_bytes_avx2(qtype, M, K)))) return QR_ENOMEM;
        qr__mrows_acts_avx2(qtype, x, M, K, acts);
    }
#endif
    if (c.path == QR_SIMD_PORTABLE) {
        c.xs = portable_stride(c.nb);
        c.qdot = qr__qformat(qtype)->qdot;
        if (!(acts = qr_scratch(2, (size_t)M * c.xs))) return QR_ENOMEM;
        for (int64_t m = 0; m < M; m++)   /* the portable tier's decode rows: q | d | s */
            qr__quantize_q8_natural(x + m * K, K, acts + (size_t)m * c.xs, QR_SIMD_PORTABLE);
    }
    c.acts = acts;
    /* as the decode products split: down to 16 KiB of weights a task, 2 tasks a thread
     * claimed dynamically (an output depends on its row alone, not on the split) */
    int nt = qr_tasks_for((size_t)c.first[n] * c.wrow, (size_t)1 << 14);
    if (nt > 1) nt *= 2;
    if (nt > c.first[n]) nt = (int)c.first[n];
    qr_parallel(lr_task, &c, nt);
    return QR_OK;
}
