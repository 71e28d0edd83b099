/* fused.c - fused kernels with their backward: RoPE (adjacent pairs / half-split), SwiGLU,
 * broadcast add / mul over the last dimension, masked (causal) scaled softmax, and a tiled
 * causal attention with GQA (forward saving the log-sum-exp, backward recomputing the scores
 * tile by tile, KV-cache decode). The hot loops are in fused_impl.h (portable, AVX2, AVX-512).
 * Results do not depend on the thread count: rows / heads are independent, the broadcast
 * parameter gradients add fixed row blocks' partial sums in block order, attention's dk/dv
 * sum the query heads of a kv head in order inside one task, and decode cuts the keys into
 * chunks by the sizes alone and merges their partials in chunk order. */
#include <math.h>
#include <string.h>

#define QR_FUSED_SFX portable
#include "fused_impl.h"

/* ------------------------------------------------------------------ rope */
/* what a cos/sin table in scratch slot 4 was made for */
typedef struct { int64_t pos, T, D; float theta; int inverse, valid; } rope_header;

static int rope(const float *x, float *y, int64_t B, int64_t T, int64_t H, int64_t D,
                int64_t pos_offset, float theta, int half_split, int inverse) {
    if (B < 0 || T < 0 || H < 0 || D < 0 || (D & 1) || pos_offset < 0 || !(theta > 0.0f))
        return QR_EARG;
    if (B * T * H * D == 0) return QR_OK;
    if (!x || !y) return QR_EARG;
    const int64_t half = D / 2;
    /* the table: the caller's scratch slot 4 after a header naming its arguments, so the
     * q and k rotations of every layer of a decode step (one position) compute it once */
    rope_header key;
    memset(&key, 0, sizeof key);   /* padding too: the header is compared bytewise */
    key.pos = pos_offset, key.T = T, key.D = D, key.theta = theta, key.inverse = inverse;
    key.valid = 1;
    uint8_t *buf = qr_scratch(4, 64 + (size_t)(T * D) * sizeof(float));
    if (!buf) return QR_ENOMEM;
    float *cs = (float *)(buf + 64);
    if (memcmp(buf, &key, sizeof key) != 0) {
        for (int64_t i = 0; i < half; i++) {   /* freq_i = theta^(-2i/D), angles in double */
            const double freq = pow((double)theta, -(double)(2 * i) / (double)D);
            for (int64_t t = 0; t < T; t++) {
                const double a = (double)(pos_offset + t) * freq;
                cs[t * D + i] = (float)cos(a);
                cs[t * D + half + i] = inverse ? -(float)sin(a) : (float)sin(a);
            }
        }
        memcpy(buf, &key, sizeof key);
    }
    rope_ctx c = {.x = x, .y = y, .cs = cs, .T = T, .H = H, .D = D, .half_split = half_split};
    qr_par_items(qr_simd_pick3(rope_rows), &c, B * T, B * T * H * D);
    return QR_OK;
}

int qr_rope_f32(const float *x, float *y, int64_t B, int64_t T, int64_t H, int64_t D,
                int64_t pos_offset, float theta, int half_split) {
    return rope(x, y, B, T, H, D, pos_offset, theta, half_split, 0);
}

int qr_rope_bwd_f32(const float *dy, float *dx, int64_t B, int64_t T, int64_t H, int64_t D,
                    int64_t pos_offset, float theta, int half_split) {
    return rope(dy, dx, B, T, H, D, pos_offset, theta, half_split, 1);
}

/* ------------------------------------------------------------------ swiglu */
int qr_swiglu_f32(const float *gate, const float *up, float *y, int64_t n) {
    if (n < 0) return QR_EARG;
    if (n == 0) return QR_OK;
    if (!gate || !up || !y) return QR_EARG;
    fz_ctx c = {.a = gate, .b = up, .o = y, .n = n};
    qr_par_range(qr_simd_pick3(swiglu_range), &c, n, QR_PAR_GRAIN / 4);
    return QR_OK;
}

int qr_swiglu_bwd_f32(const float *gate, const float *up, const float *dy, float *dgate,
                      float *dup, int64_t n) {
    if (n < 0) return QR_EARG;
    if (n == 0) return QR_OK;
    if (!gate || !up || !dy || !dgate || !dup) return QR_EARG;
    fz_ctx c = {.a = gate, .b = up, .dy = dy, .o = dgate, .o2 = dup, .n = n};
    qr_par_range(qr_simd_pick3(swiglu_bwd_range), &c, n, QR_PAR_GRAIN / 4);
    return QR_OK;
}

/* ------------------------------------------------------------------ broadcast add / mul */
/* Parameter gradient out[N] += column sums of dy (or dy * x), fused with dx: blocks of
 * QR_BB_ROWS rows in parallel, their partial sums then added in block order, so the result
 * depends only on the shape, never on the thread count. */
static int bcast_bwd(const float *x, const float *w, const float *dy, float *dx, float *out,
                     int64_t rows, int64_t n) {
    const int64_t nb = (rows + QR_BB_ROWS - 1) / QR_BB_ROWS;
    float *part = qr_scratch(3, (size_t)(nb * n) * sizeof(float));   /* caller's, reused */
    if (!part) return QR_ENOMEM;
    bb_ctx c = {.x = x, .w = w, .dy = dy, .dx = dx, .part = part, .rows = rows, .n = n};
    qr_par_items(qr_simd_pick3(bcast_bwd_blocks), &c, nb, rows * n);
    for (int64_t b = 1; b < nb; b++) {
        const float *pb = part + b * n;
        for (int64_t j = 0; j < n; j++) part[j] = part[j] + pb[j];
    }
    for (int64_t j = 0; j < n; j++) out[j] = out[j] + part[j];
    return QR_OK;
}

/* y[r, :] = x[r, :] op w (rows_fn: add_bcast_rows or mul_bcast_rows) */
static int bcast_fwd(qr_range_fn rows_fn, const float *x, const float *w, float *y, int64_t rows,
                     int64_t n) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !w || !y) return QR_EARG;
    fz_ctx c = {.a = x, .b = w, .o = y, .rows = rows, .n = n};
    qr_par_items(rows_fn, &c, rows, rows * n);
    return QR_OK;
}

int qr_add_bcast_f32(const float *x, const float *b, float *y, int64_t rows, int64_t n) {
    return bcast_fwd(qr_simd_pick3(add_bcast_rows), x, b, y, rows, n);
}

int qr_add_bcast_bwd_f32(const float *dy, float *dx, float *db, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!dy || !db) return QR_EARG;
    return bcast_bwd(0, 0, dy, dx == dy ? 0 : dx, db, rows, n);
}

int qr_mul_bcast_f32(const float *x, const float *w, float *y, int64_t rows, int64_t n) {
    return bcast_fwd(qr_simd_pick3(mul_bcast_rows), x, w, y, rows, n);
}

int qr_mul_bcast_bwd_f32(const float *x, const float *w, const float *dy, float *dx, float *dw,
                         int64_t rows, int64_t n) {
    if (rows < 0 || n < 0) return QR_EARG;
    if (rows * n == 0) return QR_OK;
    if (!x || !w || !dy || !dw) return QR_EARG;
    return bcast_bwd(x, w, dy, dx, dw, rows, n);
}

/* ------------------------------------------------------------------ masked softmax */
static int smm_args(int64_t G, int64_t Tq, int64_t Tk, int causal) {
    if (G < 0 || Tq < 0 || Tk < 0) return QR_EARG;
    if (causal && Tk < Tq) return QR_EARG;
    return QR_OK;
}

int qr_softmax_masked_f32(const float *x, float *y, int64_t G, int64_t Tq, int64_t Tk,
                          float scale, int causal) {
    if (smm_args(G, Tq, Tk, causal)) return QR_EARG;
    if (G * Tq * Tk == 0) return QR_OK;
    if (!x || !y) return QR_EARG;
    smm_ctx c = {.x = x, .y = y, .Tq = Tq, .Tk = Tk, .scale = scale, .causal = causal};
    qr_par_items(qr_simd_pick3(smm_rows), &c, G * Tq, G * Tq * Tk);
    return QR_OK;
}

int qr_softmax_masked_bwd_f32(const float *y, const float *dy, float *dx, int64_t G, int64_t Tq,
                              int64_t Tk, float scale, int causal) {
    if (smm_args(G, Tq, Tk, causal)) return QR_EARG;
    if (G * Tq * Tk == 0) return QR_OK;
    if (!y || !dy || !dx) return QR_EARG;
    smm_ctx c = {.x = y, .dy = dy, .dx = dx, .Tq = Tq, .Tk = Tk, .scale = scale,
                 .causal = causal};
    qr_par_items(qr_simd_pick3(smm_bwd_rows), &c, G * Tq, G * Tq * Tk);
    return QR_OK;
}

/* ------------------------------------------------------------------ attention */
static int att_args(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t D,
                    int causal) {
    if (B < 0 || Tq < 0 || Tk < 0 || H <= 0 || Hkv <= 0 || D < 0 || H % Hkv) return QR_EARG;
    if (causal && Tk < Tq) return QR_EARG;
    if (B > 0 && Tq > 0 && (Tk == 0 || D == 0)) return QR_EARG;   /* no key / no dim */
    return QR_OK;
}

int qr_attention_f32(const float *q, const float *k, const float *v, float *out, float *lse,
                     int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t D,
                     float scale, int causal) {
    if (att_args(B, Tq, Tk, H, Hkv, D, causal)) return QR_EARG;
    if (B * Tq == 0) return QR_OK;
    if (!q || !k || !v || !out || !lse) return QR_EARG;
    att_ctx c = {.q = q, .k = k, .v = v, .o = out, .l = lse, .B = B, .Tq = Tq, .Tk = Tk,
                 .H = H, .Hkv = Hkv, .D = D, .scale = scale, .causal = causal};
    atomic_init(&c.err, 0);
    qr_par_items(qr_simd_pick3(att_fwd_items), &c, B * H, B * H * Tq * (Tk + 8) * (D + 8));
    return atomic_load(&c.err) ? QR_ENOMEM : QR_OK;
}

int qr_attention_bwd_f32(const float *q, const float *k, const float *v, const float *out,
                         const float *lse, const float *dout, float *dq, float *dk, float *dv,
                         int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t D,
                         float scale, int causal) {
    if (att_args(B, Tq, Tk, H, Hkv, D, causal)) return QR_EARG;
    if (B * Tk * D == 0) return QR_OK;
    if (!q || !k || !v || !out || !lse || !dout || !dq || !dk || !dv) return QR_EARG;
    att_ctx c = {.q = q, .k = k, .v = v, .out = out, .lse = lse, .dout = dout, .dq = dq,
                 .dk = dk, .dv = dv, .B = B, .Tq = Tq, .Tk = Tk, .H = H, .Hkv = Hkv, .D = D,
                 .scale = scale, .causal = causal};
    atomic_init(&c.err, 0);
    qr_par_items(qr_simd_pick3(att_bwd_items), &c, B * Hkv, B * H * Tq * (Tk + 8) * (D + 8));
    return atomic_load(&c.err) ? QR_ENOMEM : QR_OK;
}

int qr_attention_masked_f32(const float *q, const float *k, const float *v, const int32_t *kpm,
                            const float *bias, int64_t bias_sb, int64_t bias_sh, float *out,
                            float *lse, int64_t B, int64_t Tq, int64_t Tk, int64_t H,
                            int64_t Hkv, int64_t D, float scale, int causal, float drop_scale,
                            uint32_t drop_threshold, uint32_t drop_seed) {
    if (att_args(B, Tq, Tk, H, Hkv, D, causal) || bias_sb < 0 || bias_sh < 0) return QR_EARG;
    if (B * Tq == 0) return QR_OK;
    if (!q || !k || !v || !out || !lse) return QR_EARG;
    att_ctx c = {.q = q, .k = k, .v = v, .kpm = kpm, .bias = bias, .bsb = bias_sb,
                 .bsh = bias_sh, .o = out, .l = lse, .B = B, .Tq = Tq, .Tk = Tk, .H = H,
                 .Hkv = Hkv, .D = D, .scale = scale, .causal = causal,
                 .drop = drop_threshold > 0, .drop_scale = drop_scale,
                 .drop_thr = drop_threshold, .drop_seed = drop_seed};
    atomic_init(&c.err, 0);
    qr_par_items(qr_simd_pick3(att_fwd_items), &c, B * H, B * H * Tq * (Tk + 8) * (D + 8));
    return atomic_load(&c.err) ? QR_ENOMEM : QR_OK;
}

int qr_attention_masked_bwd_f32(const float *q, const float *k, const float *v,
                                const int32_t *kpm, const float *bias, int64_t bias_sb,
                                int64_t bias_sh, const float *out, const float *lse,
                                const float *dout, float *dq, float *dk, float *dv, int64_t B,
                                int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t D,
                                float scale, int causal, float drop_scale,
                                uint32_t drop_threshold, uint32_t drop_seed) {
    if (att_args(B, Tq, Tk, H, Hkv, D, causal) || bias_sb < 0 || bias_sh < 0) return QR_EARG;
    if (B * Tk * D == 0) return QR_OK;
    if (!q || !k || !v || !out || !lse || !dout || !dq || !dk || !dv) return QR_EARG;
    att_ctx c = {.q = q, .k = k, .v = v, .kpm = kpm, .bias = bias, .bsb = bias_sb,
                 .bsh = bias_sh, .out = out, .lse = lse, .dout = dout, .dq = dq, .dk = dk,
                 .dv = dv, .B = B, .Tq = Tq, .Tk = Tk, .H = H, .Hkv = Hkv, .D = D,
                 .scale = scale, .causal = causal, .drop = drop_threshold > 0,
                 .drop_scale = drop_scale, .drop_thr = drop_threshold, .drop_seed = drop_seed};
    atomic_init(&c.err, 0);
    qr_par_items(qr_simd_pick3(att_bwd_items), &c, B * Hkv, B * H * Tq * (Tk + 8) * (D + 8));
    return atomic_load(&c.err) ? QR_ENOMEM : QR_OK;
}

/* Keys per chunk of a decode step: all n_ctx when B * Hkv units suffice, else cut (into
 * multiples of 8 keys, >= QR_DEC_MIN_KEYS) towards QR_DEC_UNITS units. Sizes only. */
int64_t qr__dec_chunk(int64_t B, int64_t Hkv, int64_t n) {
    const int64_t bk = B * Hkv;
    if (bk >= QR_DEC_UNITS) return n;
    int64_t nc = (QR_DEC_UNITS + bk - 1) / bk, most = n / QR_DEC_MIN_KEYS;
    nc = nc < most ? nc : most;
    if (nc <= 1) return n;
    const int64_t len = ((n + nc - 1) / nc + 7) / 8 * 8;
    return len < n ? len : n;
}

int qr_attention_decode_f32(const float *q, const float *k_cache, const float *v_cache,
                            float *out, int64_t B, int64_t H, int64_t Hkv, int64_t D,
                            int64_t max_ctx, int64_t n_ctx, float scale) {
    if (B < 0 || H <= 0 || Hkv <= 0 || D < 0 || H % Hkv || n_ctx < 1 || n_ctx > max_ctx)
        return QR_EARG;
    if (B * D == 0) return QR_OK;
    if (!q || !k_cache || !v_cache || !out) return QR_EARG;
    const int64_t chunk = qr__dec_chunk(B, Hkv, n_ctx), nc = (n_ctx + chunk - 1) / chunk;
    const int64_t units = B * Hkv * nc;
    att_ctx c = {.q = q, .k = k_cache, .v = v_cache, .o = out, .B = B, .Tq = 1, .Tk = n_ctx,
                 .H = H, .Hkv = Hkv, .D = D, .max_ctx = max_ctx, .chunk = chunk,
                 .scale = scale};
    atomic_init(&c.err, 0);
    if (nc > 1) {   /* the caller's scratch (slot 0 is each task's): partials of every unit */
        c.part = qr_scratch(3, (size_t)(units * (H / Hkv) * (D + 2)) * sizeof(float));
        if (!c.part) return QR_ENOMEM;
    }
    qr_par_items_grain(qr_simd_pick3(att_dec_items), &c, units, B * H * n_ctx * D,
                       QR_DEC_GRAIN);
    if (atomic_load(&c.err)) return QR_ENOMEM;
    if (nc > 1) qr_par_items(qr_simd_pick3(att_dec_merge), &c, B * Hkv, B * H * nc * D);
    return QR_OK;
}

/* ------------------------------------------------------------------ masked mean */
typedef struct { const float *x, *dy; const int32_t *pad; float *y, *dx; int64_t T, d; } mm_ctx;

static int64_t mm_count(const int32_t *pad, int64_t T) {
    int64_t n = 0;
    for (int64_t t = 0; t < T; t++) n += !pad || !pad[t];
    return n;
}

static void mm_rows(void *p, int64_t lo, int64_t hi) {   /* items: b */
    const mm_ctx *c = p;
    const int64_t T = c->T, d = c->d;
    for (int64_t b = lo; b < hi; b++) {
        const int32_t *pad = c->pad ? c->pad + b * T : NULL;
        float *restrict y = c->y + b * d;
        for (int64_t j = 0; j < d; j++) y[j] = 0.0f;
        for (int64_t t = 0; t < T; t++) {
            if (pad && pad[t]) continue;
            const float *restrict x = c->x + (b * T + t) * d;
            for (int64_t j = 0; j < d; j++) y[j] = y[j] + x[j];
        }
        const int64_t n = mm_count(pad, T);
        if (n)
            for (int64_t j = 0; j < d; j++) y[j] = y[j] / (float)n;
    }
}

static void mm_bwd_rows(void *p, int64_t lo, int64_t hi) {
    const mm_ctx *c = p;
    const int64_t T = c->T, d = c->d;
    for (int64_t b = lo; b < hi; b++) {
        const int32_t *pad = c->pad ? c->pad + b * T : NULL;
        const int64_t n = mm_count(pad, T);
        const float *restrict g = c->dy + b * d;
        for (int64_t t = 0; t < T; t++) {
            float *restrict dx = c->dx + (b * T + t) * d;
            if (!n || (pad && pad[t]))
                for (int64_t j = 0; j < d; j++) dx[j] = 0.0f;
            else
                for (int64_t j = 0; j < d; j++) dx[j] = g[j] / (float)n;
        }
    }
}

int qr_masked_mean_f32(const float *x, const int32_t *pad, float *y, int64_t B, int64_t T,
                       int64_t d) {
    if (B < 0 || T < 0 || d < 0) return QR_EARG;
    if (B * d == 0) return QR_OK;
    if (!x || !y) return QR_EARG;
    mm_ctx c = {.x = x, .pad = pad, .y = y, .T = T, .d = d};
    qr_par_items(mm_rows, &c, B, B * T * d);
    return QR_OK;
}

int qr_masked_mean_bwd_f32(const float *dy, const int32_t *pad, float *dx, int64_t B, int64_t T,
                           int64_t d) {
    if (B < 0 || T < 0 || d < 0) return QR_EARG;
    if (B * T * d == 0) return QR_OK;
    if (!dy || !dx) return QR_EARG;
    mm_ctx c = {.dy = dy, .pad = pad, .dx = dx, .T = T, .d = d};
    qr_par_items(mm_bwd_rows, &c, B, B * T * d);
    return QR_OK;
}
