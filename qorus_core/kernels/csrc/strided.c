/* strided.c - the data-moving kernels behind graph ops (qorus_core/kernels/decl/strided.py):
 * broadcasting binary ops and where with their backward (each gradient summed to its input's
 * shape), sum_to, the strided copy (transpose / concat / slice / expand, accumulate for their
 * backward), max and gather along an axis with their backward, and the batched GEMM.
 *
 * Geometry: the Python check merges a call's dimensions (size-1 ones dropped, adjacent ones
 * contiguous for every operand merged) into SD = 6 dims d0..d5, outermost first, padded in
 * front with 1s, and gives every operand its element strides s0..s5 over them (0: broadcast
 * along that dim), all packed in one int64 array `geom`: d0..d5, then each operand's
 * strides s0..s5 in the order of the signature (the check caches it per geometry: a call
 * passes one pointer, not 12 to 24 scalars). The output of a broadcasting op (the input x of
 * sum_to, dy of a backward) is contiguous over d0..d5: element (i0..i5) is at
 * sum i_k prod_{j>k} d_j.
 *
 * Portable C (no SIMD twins): the innermost loops are plain, contiguous where the strides
 * allow, for the compiler to vectorize. Elementwise results (forward, copies, a backward
 * without a reduction) are split over threads and never depend on the split; reductions
 * (sum_to, a reduced gradient) run on the calling thread, summed in double in the order of
 * the elements. */
#include <string.h>

#include "qorus.h"
#include "qr_math.h"

#define SD 6
#define SD_OPS 3

typedef struct {
    int64_t d[SD];
    int64_t s[SD_OPS][SD];
    int nops;
} sd_geom;

/* g from the packed geom (d0..d5, then nops operands' strides); 0 when geom is NULL */
static int geom_load(sd_geom *g, const int64_t *geom, int nops) {
    if (!geom) return 0;
    memcpy(g->d, geom, sizeof g->d);
    for (int o = 0; o < nops; o++) memcpy(g->s[o], geom + SD * (1 + o), sizeof g->s[o]);
    g->nops = nops;
    return 1;
}

/* dims >= 0, strides >= 0; the element count in *total */
static int geom_ok(const sd_geom *g, int64_t *total) {
    int64_t t = 1;
    for (int k = 0; k < SD; k++) {
        if (g->d[k] < 0) return 0;
        t *= g->d[k];
        for (int o = 0; o < g->nops; o++)
            if (g->s[o][k] < 0) return 0;
    }
    *total = t;
    return 1;
}

/* elements of operand o (its dims: those with a nonzero stride), and whether it is reduced
 * (broadcast along a dim of size > 1, or of size 0) */
static int64_t op_size(const sd_geom *g, int o, int *reduced) {
    int64_t n = 1;
    *reduced = 0;
    for (int k = 0; k < SD; k++) {
        if (g->s[o][k]) n *= g->d[k];
        else if (g->d[k] != 1) *reduced = 1;
    }
    return n;
}

/* row(ctx, off, flat, len): a run of len elements along d5 starting at flat index `flat`,
 * off[o] operand o's element offset there (its inner stride: s[o][5]) */
typedef void (*sd_row_fn)(void *ctx, const int64_t *off, int64_t flat, int64_t len);

/* Visit flat indices [lo, hi) of g (total > 0) in rows along d5. */
static void sd_walk(const sd_geom *g, int64_t lo, int64_t hi, sd_row_fn row, void *ctx) {
    const int64_t inner = g->d[SD - 1];
    if (lo >= hi) return;
    int64_t idx[SD], r = lo / inner;
    idx[SD - 1] = lo % inner;
    for (int k = SD - 2; k >= 0; k--) {
        idx[k] = r % g->d[k];
        r /= g->d[k];
    }
    int64_t flat = lo, off[SD_OPS] = {0, 0, 0};
    for (;;) {
        for (int o = 0; o < g->nops; o++) {
            int64_t v = 0;
            for (int k = 0; k < SD; k++) v += idx[k] * g->s[o][k];
            off[o] = v;
        }
        int64_t len = inner - idx[SD - 1];
        if (len > hi - flat) len = hi - flat;
        row(ctx, off, flat, len);
        flat += len;
        if (flat >= hi) return;
        idx[SD - 1] = 0;
        for (int k = SD - 2; k >= 0; k--) {
            if (++idx[k] < g->d[k]) break;
            idx[k] = 0;
        }
    }
}

typedef struct { const sd_geom *g; sd_row_fn row; void *ctx; } sd_job;

static void sd_range(void *p, int64_t lo, int64_t hi) {
    const sd_job *j = p;
    sd_walk(j->g, lo, hi, j->row, j->ctx);
}

/* every element once, in threads (the rows must write disjoint elements) */
static void sd_run(const sd_geom *g, int64_t total, sd_row_fn row, void *ctx) {
    sd_job j = {g, row, ctx};
    qr_par_range(sd_range, &j, total, QR_PAR_GRAIN);
}

#define NEED(p) if (!(p)) return QR_EARG

/* ------------------------------------------------------------------ bcast_binary */
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAX, OP_MIN };

typedef struct {
    int op;
    const float *a, *b;
    float *o;
    int64_t sa, sb;   /* inner strides */
} bin_ctx;

/* o[i] = EXPR(x = a[i sa], y = b[i sb]), contiguous / scalar operands as their own loops */
#define BIN_LOOP(EXPR)                                                                   \
    do {                                                                                 \
        if (sa == 1 && sb == 1)                                                          \
            for (int64_t i = 0; i < n; i++) { const float x = pa[i], y = pb[i]; po[i] = (EXPR); } \
        else if (sa == 1 && sb == 0) {                                                   \
            const float y = pb[0];                                                       \
            for (int64_t i = 0; i < n; i++) { const float x = pa[i]; po[i] = (EXPR); }   \
        } else if (sa == 0 && sb == 1) {                                                 \
            const float x = pa[0];                                                       \
            for (int64_t i = 0; i < n; i++) { const float y = pb[i]; po[i] = (EXPR); }   \
        } else                                                                           \
            for (int64_t i = 0; i < n; i++) {                                            \
                const float x = pa[i * sa], y = pb[i * sb];                              \
                po[i] = (EXPR);                                                          \
            }                                                                            \
    } while (0)

static void bin_row(void *p, const int64_t *off, int64_t flat, int64_t n) {
    const bin_ctx *c = p;
    const float *pa = c->a + off[0], *pb = c->b + off[1];
    float *po = c->o + flat;
    const int64_t sa = c->sa, sb = c->sb;
    switch (c->op) {
    case OP_ADD: BIN_LOOP(x + y); break;
    case OP_SUB: BIN_LOOP(x - y); break;
    case OP_MUL: BIN_LOOP(x * y); break;
    case OP_DIV: BIN_LOOP(x / y); break;
    case OP_MAX: BIN_LOOP((x > y || x != x) ? x : y); break;   /* NumPy's: NaN wins, tie b */
    case OP_MIN: BIN_LOOP((x < y || x != x) ? x : y); break;
    default: break;
    }
}

int qr_bcast_binary_f32(const float *a, const float *b, float *out, int op,
                        const int64_t *geom) {
    sd_geom g;
    int64_t total;
    if (op < OP_ADD || op > OP_MIN || !geom_load(&g, geom, 2) || !geom_ok(&g, &total))
        return QR_EARG;
    if (total == 0) return QR_OK;
    NEED(a); NEED(b); NEED(out);
    bin_ctx c = {op, a, b, out, g.s[0][SD - 1], g.s[1][SD - 1]};
    sd_run(&g, total, bin_row, &c);
    return QR_OK;
}

/* ------------------------------------------------------------------ gradients, reduced */
#define CHUNK 256

/* A gradient chunk g[n] to its output: written at out[o + i s] (out full: no reduction), or
 * added to the double accumulator acc (a reduced output; s == 0: the chunk sums to one). */
static void emit(float *out, double *acc, int64_t o, int64_t s, const float *g, int64_t n) {
    if (acc) {
        if (s == 0) {
            double t = 0.0;
            for (int64_t i = 0; i < n; i++) t += g[i];
            acc[o] += t;
        } else if (s == 1) {
            for (int64_t i = 0; i < n; i++) acc[o + i] += g[i];
        } else {
            for (int64_t i = 0; i < n; i++) acc[o + i * s] += g[i];
        }
    } else if (out) {
        if (s == 1) memcpy(out + o, g, (size_t)n * sizeof(float));
        else for (int64_t i = 0; i < n; i++) out[o + i * s] = g[i];
    }
}

/* An output of a backward: its accumulator (zeroed, scratch `slot`) when reduced, or none
 * (written in place). NULL out: not wanted. */
typedef struct { float *out; double *acc; int64_t size; } grad_out;

static int grad_init(grad_out *r, float *out, const sd_geom *g, int o, int slot) {
    int reduced;
    r->out = out;
    r->acc = 0;
    r->size = op_size(g, o, &reduced);
    if (!out || !reduced) return QR_OK;
    r->acc = qr_scratch(slot, (size_t)(r->size > 0 ? r->size : 1) * sizeof(double));
    if (!r->acc) return QR_ENOMEM;
    memset(r->acc, 0, (size_t)r->size * sizeof(double));
    return QR_OK;
}

static void grad_finish(const grad_out *r) {
    if (r->acc)
        for (int64_t i = 0; i < r->size; i++) r->out[i] = (float)r->acc[i];
}

typedef struct {
    int op;
    const float *a, *b, *dy;
    grad_out ga, gb;
    int64_t sa, sb;
} bwd_ctx;

static void bwd_row(void *p, const int64_t *off, int64_t flat, int64_t len) {
    const bwd_ctx *c = p;
    const int64_t sa = c->sa, sb = c->sb;
    float ta[CHUNK], tb[CHUNK];
    for (int64_t c0 = 0; c0 < len; c0 += CHUNK) {
        const int64_t n = len - c0 < CHUNK ? len - c0 : CHUNK;
        const int64_t oa = off[0] + c0 * sa, ob = off[1] + c0 * sb;
        const float *g = c->dy + flat + c0;
        const float *pa = c->a ? c->a + oa : 0, *pb = c->b ? c->b + ob : 0;
        switch (c->op) {
        case OP_ADD:
            for (int64_t i = 0; i < n; i++) ta[i] = tb[i] = g[i];
            break;
        case OP_SUB:
            for (int64_t i = 0; i < n; i++) { ta[i] = g[i]; tb[i] = -g[i]; }
            break;
        case OP_MUL:
            for (int64_t i = 0; i < n; i++) {
                const float x = pa[i * sa], y = pb[i * sb];
                ta[i] = g[i] * y;
                tb[i] = g[i] * x;
            }
            break;
        case OP_DIV:   /* as qr_div_bwd_f32: t = dy / b; da = t, db = -((t * a) / b) */
            for (int64_t i = 0; i < n; i++) {
                const float x = pa[i * sa], y = pb[i * sb], t = g[i] / y;
                ta[i] = t;
                tb[i] = -((t * x) / y);
            }
            break;
        case OP_MAX:
        case OP_MIN:   /* the winner takes dy, a tie splits it (PyTorch's) */
            for (int64_t i = 0; i < n; i++) {
                const float x = pa[i * sa], y = pb[i * sb];
                const int wins = c->op == OP_MAX ? x > y : x < y;
                const int loses = c->op == OP_MAX ? y > x : y < x;
                const float half = x == y ? 0.5f : 0.0f;
                ta[i] = g[i] * (half + (wins ? 1.0f : 0.0f));
                tb[i] = g[i] * (half + (loses ? 1.0f : 0.0f));
            }
            break;
        default: return;
        }
        /* both chunks computed before either is written (an output may be dy, a or b) */
        emit(c->ga.out, c->ga.acc, oa, sa, ta, n);
        emit(c->gb.out, c->gb.acc, ob, sb, tb, n);
    }
}

int qr_bcast_binary_bwd_f32(const float *a, const float *b, const float *dy, float *da,
                            float *db, int op, const int64_t *geom) {
    sd_geom g;
    int64_t total;
    if (op < OP_ADD || op > OP_MIN || !geom_load(&g, geom, 2) || !geom_ok(&g, &total))
        return QR_EARG;
    if (!da && !db) return QR_OK;
    if (total > 0) {
        NEED(dy);
        if (op >= OP_MUL) { NEED(a); NEED(b); }
    }
    bwd_ctx c = {op, op >= OP_MUL ? a : 0, op >= OP_MUL ? b : 0, dy, {0}, {0},
                 g.s[0][SD - 1], g.s[1][SD - 1]};
    int rc = grad_init(&c.ga, da, &g, 0, 0);
    if (!rc) rc = grad_init(&c.gb, db, &g, 1, 1);
    if (rc) return rc;
    if (total > 0) {
        if (c.ga.acc || c.gb.acc) sd_walk(&g, 0, total, bwd_row, &c);
        else sd_run(&g, total, bwd_row, &c);
    }
    grad_finish(&c.ga);
    grad_finish(&c.gb);
    return QR_OK;
}

/* ------------------------------------------------------------------ sum_to */
typedef struct { const float *x; double *acc; int64_t so; } sum_ctx;

static void sum_row(void *p, const int64_t *off, int64_t flat, int64_t n) {
    const sum_ctx *c = p;
    const float *x = c->x + flat;
    double *acc = c->acc + off[0];
    if (c->so == 0) {
        double t = 0.0;
        for (int64_t i = 0; i < n; i++) t += x[i];
        acc[0] += t;
    } else if (c->so == 1) {
        for (int64_t i = 0; i < n; i++) acc[i] += x[i];
    } else {
        for (int64_t i = 0; i < n; i++) acc[i * c->so] += x[i];
    }
}

int qr_sum_to_f32(const float *x, float *out, const int64_t *geom, float alpha, float beta) {
    sd_geom g;
    int64_t total;
    int reduced;
    if (!geom_load(&g, geom, 1) || !geom_ok(&g, &total)) return QR_EARG;
    const int64_t n = op_size(&g, 0, &reduced);
    if (n == 0) return QR_OK;
    NEED(out);
    if (total > 0) NEED(x);
    double *acc = qr_scratch(0, (size_t)n * sizeof(double));
    if (!acc) return QR_ENOMEM;
    memset(acc, 0, (size_t)n * sizeof(double));
    sum_ctx c = {x, acc, g.s[0][SD - 1]};
    if (total > 0) sd_walk(&g, 0, total, sum_row, &c);
    for (int64_t i = 0; i < n; i++) {
        const float t = alpha * (float)acc[i];
        out[i] = beta == 0.0f ? t : beta * out[i] + t;
    }
    return QR_OK;
}

/* ------------------------------------------------------------------ strided_copy */
typedef struct { const char *src; char *dst; int64_t ss, ds; int acc; } copy_ctx;

static void copy_row(void *p, const int64_t *off, int64_t flat, int64_t n) {
    (void)flat;
    const copy_ctx *c = p;
    const int64_t ss = c->ss, ds = c->ds;
    if (c->acc) {
        const float *s = (const float *)c->src + off[0];
        float *d = (float *)c->dst + off[1];
        if (ss == 1 && ds == 1) for (int64_t i = 0; i < n; i++) d[i] += s[i];
        else for (int64_t i = 0; i < n; i++) d[i * ds] += s[i * ss];
        return;
    }
    const uint32_t *s = (const uint32_t *)c->src + off[0];   /* 4-byte elements, as bits */
    uint32_t *d = (uint32_t *)c->dst + off[1];
    if (ss == 1 && ds == 1) memcpy(d, s, (size_t)n * 4);
    else if (ss == 0) { const uint32_t v = s[0]; for (int64_t i = 0; i < n; i++) d[i * ds] = v; }
    else for (int64_t i = 0; i < n; i++) d[i * ds] = s[i * ss];
}

int qr_strided_copy_f32(const void *src, void *dst, const int64_t *geom, int accumulate) {
    sd_geom g;
    int64_t total;
    if (!geom_load(&g, geom, 2) || !geom_ok(&g, &total)) return QR_EARG;
    if (total == 0) return QR_OK;
    NEED(src); NEED(dst);
    copy_ctx c = {src, dst, g.s[0][SD - 1], g.s[1][SD - 1], accumulate != 0};
    sd_run(&g, total, copy_row, &c);
    return QR_OK;
}

/* ------------------------------------------------------------------ max / gather */
typedef struct {
    const float *x, *dy;
    const int32_t *idx;
    float *out;
    int32_t *iout;
    int64_t n, m, inner;
} axis_ctx;

/* 1 when every idx[0..count) is in [0, n) */
static int idx_ok(const int32_t *idx, int64_t count, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < count; i++) bad |= idx[i] < 0 || idx[i] >= n;
    return !bad;
}

static void max_items(void *p, int64_t lo, int64_t hi) {
    const axis_ctx *c = p;
    const int64_t n = c->n, inner = c->inner;
    for (int64_t o = lo; o < hi; o++) {
        const float *x = c->x + o * n * inner;
        float *best = c->out + o * inner;
        int32_t *at = c->iout + o * inner;
        if (inner == 1) {
            float b = x[0];
            int32_t w = 0;
            for (int64_t j = 1; j < n && b == b; j++) {
                const float v = x[j];
                if (v > b || v != v) { b = v; w = (int32_t)j; }
            }
            best[0] = b;
            at[0] = w;
            continue;
        }
        for (int64_t i = 0; i < inner; i++) { best[i] = x[i]; at[i] = 0; }
        for (int64_t j = 1; j < n; j++) {
            const float *r = x + j * inner;
            for (int64_t i = 0; i < inner; i++) {
                const float v = r[i], b = best[i];
                const int take = v > b || (v != v && b == b);   /* the first NaN wins */
                best[i] = take ? v : b;
                at[i] = take ? (int32_t)j : at[i];
            }
        }
    }
}

int qr_max_axis_f32(const float *x, float *out, int32_t *idx, int64_t outer, int64_t n,
                    int64_t inner) {
    if (outer < 0 || n < 0 || inner < 0) return QR_EARG;
    if (outer == 0 || inner == 0) return QR_OK;
    if (n == 0) return QR_EARG;
    NEED(x); NEED(out); NEED(idx);
    axis_ctx c = {x, 0, 0, out, idx, n, 0, inner};
    qr_par_items(max_items, &c, outer, outer * n * inner);
    return QR_OK;
}

static void max_bwd_items(void *p, int64_t lo, int64_t hi) {
    const axis_ctx *c = p;
    const int64_t n = c->n, inner = c->inner;
    for (int64_t o = lo; o < hi; o++) {
        float *dx = c->out + o * n * inner;
        const float *dy = c->dy + o * inner;
        const int32_t *at = c->idx + o * inner;
        memset(dx, 0, (size_t)(n * inner) * sizeof(float));
        for (int64_t i = 0; i < inner; i++) dx[at[i] * inner + i] = dy[i];
    }
}

int qr_max_axis_bwd_f32(const float *dy, const int32_t *idx, float *dx, int64_t outer,
                        int64_t n, int64_t inner) {
    if (outer < 0 || n < 0 || inner < 0) return QR_EARG;
    if (outer == 0 || inner == 0) return QR_OK;
    NEED(idx);
    if (!idx_ok(idx, outer * inner, n)) return QR_ETARGET;
    NEED(dy); NEED(dx);
    axis_ctx c = {0, dy, idx, dx, 0, n, 0, inner};
    qr_par_items(max_bwd_items, &c, outer, outer * n * inner);
    return QR_OK;
}

static void gather_items(void *p, int64_t lo, int64_t hi) {
    const axis_ctx *c = p;
    const int64_t n = c->n, m = c->m, inner = c->inner;
    for (int64_t o = lo; o < hi; o++) {
        const float *x = c->x + o * n * inner;
        const int32_t *at = c->idx + o * m * inner;
        float *y = c->out + o * m * inner;
        for (int64_t j = 0; j < m; j++)
            for (int64_t i = 0; i < inner; i++)
                y[j * inner + i] = x[(int64_t)at[j * inner + i] * inner + i];
    }
}

int qr_gather_axis_f32(const float *x, const int32_t *idx, float *out, int64_t outer,
                       int64_t n, int64_t m, int64_t inner) {
    if (outer < 0 || n < 0 || m < 0 || inner < 0) return QR_EARG;
    const int64_t count = outer * m * inner;
    if (count == 0) return QR_OK;
    NEED(idx);
    if (!idx_ok(idx, count, n)) return QR_ETARGET;
    NEED(x); NEED(out);
    axis_ctx c = {x, 0, idx, out, 0, n, m, inner};
    qr_par_items(gather_items, &c, outer, count);
    return QR_OK;
}

static void gather_bwd_items(void *p, int64_t lo, int64_t hi) {
    const axis_ctx *c = p;
    const int64_t n = c->n, m = c->m, inner = c->inner;
    for (int64_t o = lo; o < hi; o++) {
        float *dx = c->out + o * n * inner;
        const int32_t *at = c->idx + o * m * inner;
        const float *dy = c->dy + o * m * inner;
        memset(dx, 0, (size_t)(n * inner) * sizeof(float));
        for (int64_t j = 0; j < m; j++)          /* in order: repeated indices add up */
            for (int64_t i = 0; i < inner; i++)
                dx[(int64_t)at[j * inner + i] * inner + i] += dy[j * inner + i];
    }
}

int qr_gather_axis_bwd_f32(const float *dy, const int32_t *idx, float *dx, int64_t outer,
                           int64_t n, int64_t m, int64_t inner) {
    if (outer < 0 || n < 0 || m < 0 || inner < 0) return QR_EARG;
    const int64_t count = outer * m * inner;
    if (count > 0) {
        NEED(idx);
        if (!idx_ok(idx, count, n)) return QR_ETARGET;
        NEED(dy);
    }
    if (outer * n * inner == 0) return QR_OK;
    NEED(dx);
    axis_ctx c = {0, dy, idx, dx, 0, n, m, inner};
    qr_par_items(gather_bwd_items, &c, outer, outer * n * inner + count);
    return QR_OK;
}

/* ------------------------------------------------------------------ where */
typedef struct {
    const void *cond;
    int ci;           /* cond is int32 */
    const float *a, *b;
    float *o;
    grad_out ga, gb;  /* the backward's outputs */
    const float *dy;
    int64_t sc, sa, sb;
} where_ctx;

/* m[i] = cond[i sc] != 0 (a NaN counts as nonzero) */
static void where_mask(const where_ctx *c, int64_t oc, int64_t n, float *m) {
    const int64_t sc = c->sc;
    if (c->ci) {
        const int32_t *k = (const int32_t *)c->cond + oc;
        for (int64_t i = 0; i < n; i++) m[i] = k[i * sc] != 0 ? 1.0f : 0.0f;
    } else {
        const float *k = (const float *)c->cond + oc;
        for (int64_t i = 0; i < n; i++) m[i] = k[i * sc] != 0.0f ? 1.0f : 0.0f;
    }
}

static void where_row(void *p, const int64_t *off, int64_t flat, int64_t len) {
    const where_ctx *c = p;
    const int64_t sa = c->sa, sb = c->sb;
    float m[CHUNK];
    for (int64_t c0 = 0; c0 < len; c0 += CHUNK) {
        const int64_t n = len - c0 < CHUNK ? len - c0 : CHUNK;
        where_mask(c, off[0] + c0 * c->sc, n, m);
        const float *a = c->a + off[1] + c0 * sa, *b = c->b + off[2] + c0 * sb;
        float *o = c->o + flat + c0;
        if (sa == 1 && sb == 1)
            for (int64_t i = 0; i < n; i++) o[i] = m[i] != 0.0f ? a[i] : b[i];
        else
            for (int64_t i = 0; i < n; i++) o[i] = m[i] != 0.0f ? a[i * sa] : b[i * sb];
    }
}

int qr_bcast_where_f32(const void *cond, const float *a, const float *b, float *out,
                       int cond_i32, const int64_t *geom) {
    sd_geom g;
    int64_t total;
    if (!geom_load(&g, geom, 3) || !geom_ok(&g, &total)) return QR_EARG;
    if (total == 0) return QR_OK;
    NEED(cond); NEED(a); NEED(b); NEED(out);
    where_ctx c = {cond, cond_i32 != 0, a, b, out, {0}, {0}, 0,
                   g.s[0][SD - 1], g.s[1][SD - 1], g.s[2][SD - 1]};
    sd_run(&g, total, where_row, &c);
    return QR_OK;
}

static void where_bwd_row(void *p, const int64_t *off, int64_t flat, int64_t len) {
    const where_ctx *c = p;
    const int64_t sa = c->sa, sb = c->sb;
    float m[CHUNK], ta[CHUNK], tb[CHUNK];
    for (int64_t c0 = 0; c0 < len; c0 += CHUNK) {
        const int64_t n = len - c0 < CHUNK ? len - c0 : CHUNK;
        const float *g = c->dy + flat + c0;
        where_mask(c, off[0] + c0 * c->sc, n, m);
        for (int64_t i = 0; i < n; i++) {     /* dy * mask: a NaN dy stays NaN in both */
            ta[i] = g[i] * m[i];
            tb[i] = g[i] * (1.0f - m[i]);
        }
        emit(c->ga.out, c->ga.acc, off[1] + c0 * sa, sa, ta, n);
        emit(c->gb.out, c->gb.acc, off[2] + c0 * sb, sb, tb, n);
    }
}

int qr_bcast_where_bwd_f32(const void *cond, const float *dy, float *da, float *db,
                           int cond_i32, const int64_t *geom) {
    sd_geom g;
    int64_t total;
    if (!geom_load(&g, geom, 3) || !geom_ok(&g, &total)) return QR_EARG;
    if (!da && !db) return QR_OK;
    if (total > 0) { NEED(cond); NEED(dy); }
    where_ctx c = {cond, cond_i32 != 0, 0, 0, 0, {0}, {0}, dy,
                   g.s[0][SD - 1], g.s[1][SD - 1], g.s[2][SD - 1]};
    int rc = grad_init(&c.ga, da, &g, 1, 0);
    if (!rc) rc = grad_init(&c.gb, db, &g, 2, 1);
    if (rc) return rc;
    if (total > 0) {
        if (c.ga.acc || c.gb.acc) sd_walk(&g, 0, total, where_bwd_row, &c);
        else sd_run(&g, total, where_bwd_row, &c);
    }
    grad_finish(&c.ga);
    grad_finish(&c.gb);
    return QR_OK;
}

/* ------------------------------------------------------------------ bmm */
typedef struct {
    int ta, tb;
    int64_t batch, m, n, k;
    float alpha, beta;
    const float *a, *b;
    float *c;
    volatile int err;
} bmm_ctx;

static void bmm_items(void *p, int64_t lo, int64_t hi) {
    bmm_ctx *g = p;
    for (int64_t i = lo; i < hi; i++) {
        const int rc = qr_gemm_f32(g->ta, g->tb, g->m, g->n, g->k, g->alpha,
                                   g->a + i * g->m * g->k, g->b + i * g->k * g->n, g->beta,
                                   g->c + i * g->m * g->n);
        if (rc) g->err = rc;
    }
}

int qr_bmm_f32(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K,
               float alpha, const float *A, const float *B, float beta, float *C) {
    if (batch < 0 || M < 0 || N < 0 || K < 0) return QR_EARG;
    if (batch == 0 || M == 0 || N == 0) return QR_OK;
    NEED(C);
    if (K > 0) { NEED(A); NEED(B); }
    bmm_ctx g = {trans_a, trans_b, batch, M, N, K, alpha, beta, A, B, C, 0};
    /* Products small enough that qr_gemm_f32 would not split them: one thread a range of
     * the batch (each GEMM then serial on its thread; a GEMM's result does not depend on
     * its threads). Larger ones: in order, each GEMM threaded. */
    const size_t work = (size_t)M * (size_t)N * (size_t)(K > 0 ? K : 1);
    if (batch > 1 && work < ((size_t)1 << 18))
        qr_par_items_grain(bmm_items, &g, batch, (int64_t)(work * (size_t)batch),
                           (int64_t)1 << 17);
    else
        bmm_items(&g, 0, batch);
    return g.err;
}
