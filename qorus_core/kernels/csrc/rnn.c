/* rnn.c - fused recurrent cell kernels (tanh RNN, LSTM, GRU in PyTorch's gate layout) with their
 * backward, and the [A,B,C] -> [B,A,C] transpose between batch-first and time-major layouts.
 *
 * A layer computes x W_ih^T + b_ih for every timestep in one GEMM and h_{t-1} W_hh^T per step
 * with the ordinary GEMM; one cell call then adds b_hh, applies the gate nonlinearities and
 * updates the state of a whole batch for one step. Every formula follows its NumPy twin's
 * (decl/rnn.py) float32 operation order (FP contraction off). Batch rows are independent, so
 * results never depend on the thread count.
 *
 * The row bodies below are compiled twice: here (portable, QR_RNN_SFX unset) and by
 * rnn_avx2.c and rnn_avx512.c, which define QR_RNN_SFX avx2 / avx512 and include this file with
 * their tier's flags; the public entry points (compiled here only) pick a twin at run time with
 * qr_simd_pick3. */
#include <string.h>

#include "qr_math.h"

#ifndef QR_RNN_SFX
#define QR_RNN_SFX portable
#define QR_RNN_PUBLIC
#endif

#define RN(name) QR_SFX_NAME(name, QR_RNN_SFX)

#ifndef QORUS_RNN_CTX
#define QORUS_RNN_CTX
/* One cell call: per-row operands (row stride G*H for the gate-wide ones, H for the others).
 * Unused pointers are NULL; bias NULL means no b_hh, dy NULL a zero output gradient. */
typedef struct {
    const float *xg, *hg, *bias, *prev, *cur, *hn, *dy;
    float *gates, *o1, *o2, *io;
    int64_t H;
} rn_ctx;

#define RN_DECL(sfx)                                                   \
    void qr__rnn_rows_##sfx(void *ctx, int64_t lo, int64_t hi);        \
    void qr__rnn_bwd_rows_##sfx(void *ctx, int64_t lo, int64_t hi);    \
    void qr__lstm_rows_##sfx(void *ctx, int64_t lo, int64_t hi);       \
    void qr__lstm_bwd_rows_##sfx(void *ctx, int64_t lo, int64_t hi);   \
    void qr__gru_rows_##sfx(void *ctx, int64_t lo, int64_t hi);        \
    void qr__gru_bwd_rows_##sfx(void *ctx, int64_t lo, int64_t hi);
RN_DECL(portable)
RN_DECL(avx2)
RN_DECL(avx512)
#endif

static inline float RN(sig)(float x) { return 1.0f / (1.0f + qr_expf(-x)); }

/* ------------------------------------------------------------------ tanh RNN */
/* h = tanh(xg + hg + b): xg, hg, h [B,H]; c->o1 = h */
void RN(rnn_rows)(void *p, int64_t lo, int64_t hi) {
    const rn_ctx *c = p;
    const int64_t H = c->H;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->xg + r * H, *hh = c->hg + r * H;
        float *h = c->o1 + r * H;
        if (c->bias)
            for (int64_t k = 0; k < H; k++) h[k] = qr_tanhf((x[k] + hh[k]) + c->bias[k]);
        else
            for (int64_t k = 0; k < H; k++) h[k] = qr_tanhf(x[k] + hh[k]);
    }
}

/* dg = (dh + dy) * (1 - h^2): cur = h, io = dh (read), o1 = dg (may alias dh) */
void RN(rnn_bwd_rows)(void *p, int64_t lo, int64_t hi) {
    const rn_ctx *c = p;
    const int64_t H = c->H;
    for (int64_t r = lo; r < hi; r++) {
        const float *h = c->cur + r * H, *dh = c->io + r * H;
        const float *dy = c->dy ? c->dy + r * H : NULL;
        float *dg = c->o1 + r * H;
        for (int64_t k = 0; k < H; k++) {
            float t = dy ? dh[k] + dy[k] : dh[k];
            dg[k] = t * (1.0f - h[k] * h[k]);
        }
    }
}

/* LSTM and GRU rows work in blocks of RN_QB columns staged in local arrays: every loop then
 * has one store stream and no possible overlap, so the compiler vectorizes the exp/tanh
 * polynomials (a row's gate slices at k, H+k, 2H+k, 3H+k defeat its alias analysis). Each
 * block body is inlined twice, with m = RN_QB (constant: copies become vector moves) and
 * with the tail's m. */
#define RN_QB 16

/* the row driver RN(<name>_rows) over RN(<name>_block): full blocks, then the tail */
#define RN_ROWS(name)                                                               \
    void RN(name##_rows)(void *p, int64_t lo, int64_t hi) {                         \
        const rn_ctx *c = p;                                                        \
        const int64_t H = c->H;                                                     \
        for (int64_t r = lo; r < hi; r++)                                           \
            for (int64_t k0 = 0; k0 < H; k0 += RN_QB) {                             \
                if (H - k0 >= RN_QB) RN(name##_block)(c, r, k0, RN_QB);             \
                else RN(name##_block)(c, r, k0, H - k0);                            \
            }                                                                       \
    }

static inline __attribute__((always_inline)) void RN(cpy)(float *restrict d,
                                                          const float *restrict s, int64_t m) {
    for (int64_t j = 0; j < m; j++) d[j] = s[j];
}

/* ------------------------------------------------------------------ LSTM */
/* pre-activations of gate q (0..G-1) for columns [k0, k0+m) of one row into dst */
static inline __attribute__((always_inline)) void RN(pre)(
        float *restrict dst, const float *x, const float *hh, const float *b, int64_t off,
        int64_t m) {
    for (int64_t j = 0; j < m; j++) dst[j] = x[off + j] + hh[off + j];
    if (b)
        for (int64_t j = 0; j < m; j++) dst[j] = dst[j] + b[off + j];
}

static inline __attribute__((always_inline)) void RN(lstm_blk)(
        float *restrict pi, float *restrict pf, float *restrict pg, float *restrict po,
        const float *restrict cp, float *restrict cc, float *restrict hh, int64_t m) {
    for (int64_t j = 0; j < m; j++) {
        float i = RN(sig)(pi[j]), f = RN(sig)(pf[j]), g = qr_tanhf(pg[j]), o = RN(sig)(po[j]);
        float c = f * cp[j] + i * g;
        cc[j] = c;
        hh[j] = o * qr_tanhf(c);
        pi[j] = i;
        pf[j] = f;
        pg[j] = g;
        po[j] = o;
    }
}

/* gates (i,f,g,o) [B,4H] (may alias xg), prev = c_prev, o1 = c, o2 = h */
static inline __attribute__((always_inline)) void RN(lstm_block)(
        const rn_ctx *c, int64_t r, int64_t k0, int64_t m) {
    const int64_t H = c->H, G = 4 * H;
    float q[4][RN_QB], cp[RN_QB], cc[RN_QB], hh[RN_QB];
    const float *x = c->xg + r * G, *h_ = c->hg + r * G;
    float *g = c->gates + r * G, *cn = c->o1 + r * H, *h = c->o2 + r * H;
    for (int gi = 0; gi < 4; gi++) RN(pre)(q[gi], x, h_, c->bias, gi * H + k0, m);
    RN(cpy)(cp, c->prev + r * H + k0, m);
    RN(lstm_blk)(q[0], q[1], q[2], q[3], cp, cc, hh, m);
    for (int gi = 0; gi < 4; gi++) RN(cpy)(g + gi * H + k0, q[gi], m);
    RN(cpy)(cn + k0, cc, m);
    RN(cpy)(h + k0, hh, m);
}

RN_ROWS(lstm)

static inline __attribute__((always_inline)) void RN(lstm_bwd_blk)(
        float *restrict gi, float *restrict gf, float *restrict gg, float *restrict go,
        const float *restrict cp, const float *restrict cc, const float *restrict t,
        float *restrict dc, int64_t m) {
    for (int64_t j = 0; j < m; j++) {
        float i = gi[j], f = gf[j], g = gg[j], o = go[j];
        float tc = qr_tanhf(cc[j]);
        go[j] = ((t[j] * tc) * o) * (1.0f - o);
        float dct = dc[j] + ((1.0f - tc * tc) * o) * t[j];
        gi[j] = ((dct * g) * i) * (1.0f - i);
        gf[j] = ((dct * cp[j]) * f) * (1.0f - f);
        gg[j] = (dct * i) * (1.0f - g * g);
        dc[j] = dct * f;
    }
}

/* the total gradient of h for columns [k0, k0+m): dh + dy (dy may be NULL) */
static inline __attribute__((always_inline)) void RN(dh_total)(
        float *restrict t, const float *dh, const float *dy, int64_t m) {
    if (dy)
        for (int64_t j = 0; j < m; j++) t[j] = dh[j] + dy[j];
    else
        RN(cpy)(t, dh, m);
}

/* gates [B,4H], prev = c_prev, cur = c, io = dc (in: dL/dc_t recurrent, out: dL/dc_{t-1}),
 * o2 = dh (read), dy (or NULL), o1 = dgates [B,4H] */
static inline __attribute__((always_inline)) void RN(lstm_bwd_block)(
        const rn_ctx *c, int64_t r, int64_t k0, int64_t m) {
    const int64_t H = c->H, G = 4 * H;
    float q[4][RN_QB], cp[RN_QB], cc[RN_QB], t[RN_QB], dc[RN_QB];
    const float *g = c->gates + r * G;
    float *d = c->o1 + r * G;
    const int64_t o = r * H + k0;
    for (int gi = 0; gi < 4; gi++) RN(cpy)(q[gi], g + gi * H + k0, m);
    RN(cpy)(cp, c->prev + o, m);
    RN(cpy)(cc, c->cur + o, m);
    RN(cpy)(dc, c->io + o, m);
    RN(dh_total)(t, c->o2 + o, c->dy ? c->dy + o : NULL, m);
    RN(lstm_bwd_blk)(q[0], q[1], q[2], q[3], cp, cc, t, dc, m);
    for (int gi = 0; gi < 4; gi++) RN(cpy)(d + gi * H + k0, q[gi], m);
    RN(cpy)(c->io + o, dc, m);
}

RN_ROWS(lstm_bwd)

/* ------------------------------------------------------------------ GRU */
static inline __attribute__((always_inline)) void RN(gru_blk)(
        float *restrict pr, float *restrict pz, float *restrict hn, const float *restrict xn,
        const float *restrict hp, float *restrict n_, float *restrict hh, int64_t m) {
    for (int64_t j = 0; j < m; j++) {
        float r = RN(sig)(pr[j]), z = RN(sig)(pz[j]);
        float n = qr_tanhf(r * hn[j] + xn[j]);
        hh[j] = n + z * (hp[j] - n);
        pr[j] = r;
        pz[j] = z;
        n_[j] = n;
    }
}

/* gates (r,z,n) [B,3H] (may alias xg), prev = h_prev, o1 = hn, o2 = h */
static inline __attribute__((always_inline)) void RN(gru_block)(
        const rn_ctx *c, int64_t r, int64_t k0, int64_t m) {
    const int64_t H = c->H, G = 3 * H;
    float q[2][RN_QB], hn[RN_QB], xn[RN_QB], hp[RN_QB], n[RN_QB], hh[RN_QB];
    const float *x = c->xg + r * G, *h_ = c->hg + r * G;
    float *g = c->gates + r * G;
    const int64_t o = r * H + k0;
    RN(pre)(q[0], x, h_, c->bias, k0, m);
    RN(pre)(q[1], x, h_, c->bias, H + k0, m);
    RN(cpy)(hn, h_ + 2 * H + k0, m);
    if (c->bias)
        for (int64_t j = 0; j < m; j++) hn[j] = hn[j] + c->bias[2 * H + k0 + j];
    RN(cpy)(xn, x + 2 * H + k0, m);
    RN(cpy)(hp, c->prev + o, m);
    RN(gru_blk)(q[0], q[1], hn, xn, hp, n, hh, m);
    RN(cpy)(g + k0, q[0], m);
    RN(cpy)(g + H + k0, q[1], m);
    RN(cpy)(g + 2 * H + k0, n, m);
    RN(cpy)(c->o1 + o, hn, m);
    RN(cpy)(c->o2 + o, hh, m);
}

RN_ROWS(gru)

static inline __attribute__((always_inline)) void RN(gru_bwd_blk)(
        float *restrict gr, float *restrict gz, float *restrict gn, float *restrict hn_dhn,
        const float *restrict hp, float *restrict t, int64_t m) {
    for (int64_t j = 0; j < m; j++) {
        float r = gr[j], z = gz[j], n = gn[j];
        float dn = (t[j] * (1.0f - z)) * (1.0f - n * n);
        gr[j] = (dn * hn_dhn[j]) * ((1.0f - r) * r);
        gz[j] = ((hp[j] - n) * t[j]) * ((1.0f - z) * z);
        gn[j] = dn;
        hn_dhn[j] = dn * r;
        t[j] = t[j] * z;
    }
}

/* gates [B,3H], hn, prev = h_prev, io = dh (in: dL/dh_t recurrent, out: z * (dh + dy)), dy
 * (or NULL), o1 = dxg [B,3H], o2 = dhg [B,3H] */
static inline __attribute__((always_inline)) void RN(gru_bwd_block)(
        const rn_ctx *c, int64_t r, int64_t k0, int64_t m) {
    const int64_t H = c->H, G = 3 * H;
    float q[3][RN_QB], hn[RN_QB], hp[RN_QB], t[RN_QB];
    const float *g = c->gates + r * G;
    float *dx = c->o1 + r * G, *dhg = c->o2 + r * G;
    const int64_t o = r * H + k0;
    for (int gi = 0; gi < 3; gi++) RN(cpy)(q[gi], g + gi * H + k0, m);
    RN(cpy)(hn, c->hn + o, m);
    RN(cpy)(hp, c->prev + o, m);
    RN(dh_total)(t, c->io + o, c->dy ? c->dy + o : NULL, m);
    RN(gru_bwd_blk)(q[0], q[1], q[2], hn, hp, t, m);
    for (int gi = 0; gi < 3; gi++) RN(cpy)(dx + gi * H + k0, q[gi], m);
    RN(cpy)(dhg + k0, q[0], m);
    RN(cpy)(dhg + H + k0, q[1], m);
    RN(cpy)(dhg + 2 * H + k0, hn, m);
    RN(cpy)(c->io + o, t, m);
}

RN_ROWS(gru_bwd)

/* ================================================================== public entry points */
#ifdef QR_RNN_PUBLIC

/* threads pay off only for large batches: the work counts transcendental-heavy elements x4 */
static int run_rows(qr_range_fn fn, rn_ctx *c, int64_t B, int64_t G) {
    qr_par_items(fn, c, B, B * G * c->H * 4);
    return QR_OK;
}

static int bad_dims(int64_t B, int64_t H) { return B < 0 || H < 0; }

typedef struct { const float *x; float *y; int64_t A, B, C; } tr_ctx;

static void tr_rows(void *p, int64_t lo, int64_t hi) {   /* items: output rows b*A + a */
    const tr_ctx *c = p;
    for (int64_t j = lo; j < hi; j++) {
        int64_t b = j / c->A, a = j % c->A;
        memcpy(c->y + j * c->C, c->x + (a * c->B + b) * c->C, (size_t)c->C * sizeof(float));
    }
}

int qr_seq_transpose_f32(const float *x, float *y, int64_t A, int64_t B, int64_t C) {
    if (A < 0 || B < 0 || C < 0) return QR_EARG;
    if (A * B * C == 0) return QR_OK;
    if (!x || !y) return QR_EARG;
    tr_ctx c = {x, y, A, B, C};
    qr_par_items(tr_rows, &c, A * B, A * B * C);
    return QR_OK;
}

int qr_rnn_cell_f32(const float *xg, const float *hg, const float *b_hh, float *h, int64_t B,
                    int64_t H) {
    if (bad_dims(B, H)) return QR_EARG;
    if (B * H == 0) return QR_OK;
    if (!xg || !hg || !h) return QR_EARG;
    rn_ctx c = {.xg = xg, .hg = hg, .bias = b_hh, .o1 = h, .H = H};
    return run_rows(qr_simd_pick3(rnn_rows), &c, B, 1);
}

int qr_rnn_cell_bwd_f32(const float *h, const float *dh, const float *dy, float *dg, int64_t B,
                        int64_t H) {
    if (bad_dims(B, H)) return QR_EARG;
    if (B * H == 0) return QR_OK;
    if (!h || !dh || !dg) return QR_EARG;
    rn_ctx c = {.cur = h, .io = (float *)dh, .dy = dy, .o1 = dg, .H = H};
    return run_rows(qr_simd_pick3(rnn_bwd_rows), &c, B, 1);
}

int qr_lstm_cell_f32(const float *xg, const float *hg, const float *b_hh, const float *c_prev,
                     float *gates, float *c, float *h, int64_t B, int64_t H) {
    if (bad_dims(B, H)) return QR_EARG;
    if (B * H == 0) return QR_OK;
    if (!xg || !hg || !c_prev || !gates || !c || !h) return QR_EARG;
    rn_ctx x = {.xg = xg, .hg = hg, .bias = b_hh, .prev = c_prev, .gates = gates, .o1 = c,
                .o2 = h, .H = H};
    return run_rows(qr_simd_pick3(lstm_rows), &x, B, 4);
}

int qr_lstm_cell_bwd_f32(const float *gates, const float *c_prev, const float *c,
                         const float *dh, const float *dy, float *dc, float *dgates, int64_t B,
                         int64_t H) {
    if (bad_dims(B, H)) return QR_EARG;
    if (B * H == 0) return QR_OK;
    if (!gates || !c_prev || !c || !dh || !dc || !dgates) return QR_EARG;
    rn_ctx x = {.gates = (float *)gates, .prev = c_prev, .cur = c, .o2 = (float *)dh, .dy = dy,
                .io = dc, .o1 = dgates, .H = H};
    return run_rows(qr_simd_pick3(lstm_bwd_rows), &x, B, 4);
}

int qr_gru_cell_f32(const float *xg, const float *hg, const float *b_hh, const float *h_prev,
                    float *gates, float *hn, float *h, int64_t B, int64_t H) {
    if (bad_dims(B, H)) return QR_EARG;
    if (B * H == 0) return QR_OK;
    if (!xg || !hg || !h_prev || !gates || !hn || !h) return QR_EARG;
    rn_ctx x = {.xg = xg, .hg = hg, .bias = b_hh, .prev = h_prev, .gates = gates, .o1 = hn,
                .o2 = h, .H = H};
    return run_rows(qr_simd_pick3(gru_rows), &x, B, 3);
}

int qr_gru_cell_bwd_f32(const float *gates, const float *hn, const float *h_prev,
                        const float *dy, float *dh, float *dxg, float *dhg, int64_t B,
                        int64_t H) {
    if (bad_dims(B, H)) return QR_EARG;
    if (B * H == 0) return QR_OK;
    if (!gates || !hn || !h_prev || !dh || !dxg || !dhg) return QR_EARG;
    rn_ctx x = {.gates = (float *)gates, .hn = hn, .prev = h_prev, .dy = dy, .io = dh,
                .o1 = dxg, .o2 = dhg, .H = H};
    return run_rows(qr_simd_pick3(gru_bwd_rows), &x, B, 3);
}

#endif /* QR_RNN_PUBLIC */
