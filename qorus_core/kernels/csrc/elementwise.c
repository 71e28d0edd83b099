/* elementwise.c - the primitive elementwise kernels: sub, div, maximum, minimum, where, exp,
 * log, sqrt, abs, neg and their backward, over n float32 elements (the bodies: elementwise_impl.h,
 * built here and in the AVX2 / AVX-512 twins; the tier in effect picks one). The Python side
 * checks the sizes; these check what they can (n >= 0, non-NULL buffers) and split large
 * arrays over threads (results never depend on the split). */
#define QR_PRIM_SFX portable
#include "elementwise_impl.h"

static int prim(int op, const float *a, const float *b, const float *c, float *o, float *o2,
                int64_t n) {
    if (n < 0) return QR_EARG;
    if (n == 0) return QR_OK;
    qr_prim_ctx ctx = {op, a, b, c, o, o2};
    qr_par_range(qr_simd_pick3(prim_range), &ctx, n, QR_PAR_GRAIN);
    return QR_OK;
}

#define NEED(p) if (!(p)) return QR_EARG

#define BINARY(name, op)                                                         \
    int qr_##name##_f32(const float *a, const float *b, float *out, int64_t n) { \
        if (n > 0) { NEED(a); NEED(b); NEED(out); }                              \
        return prim(op, a, b, 0, out, 0, n);                                     \
    }
BINARY(sub, EW_SUB)
BINARY(div, EW_DIV)
BINARY(maximum, EW_MAX)
BINARY(minimum, EW_MIN)

int qr_where_f32(const float *cond, const float *a, const float *b, float *out, int64_t n) {
    if (n > 0) { NEED(cond); NEED(a); NEED(b); NEED(out); }
    return prim(EW_WHERE, cond, a, b, out, 0, n);
}

#define UNARY(name, op)                                                  \
    int qr_##name##_f32(const float *x, float *y, int64_t n) {           \
        if (n > 0) { NEED(x); NEED(y); }                                 \
        return prim(op, x, 0, 0, y, 0, n);                               \
    }
UNARY(exp, EW_EXP)
UNARY(log, EW_LOG)
UNARY(sqrt, EW_SQRT)
UNARY(abs, EW_ABS)
UNARY(neg, EW_NEG)

#define UNARY_BWD(name, op)                                                          \
    int qr_##name##_bwd_f32(const float *v, const float *dy, float *dx, int64_t n) { \
        if (n > 0) { NEED(v); NEED(dy); NEED(dx); }                                  \
        return prim(op, v, dy, 0, dx, 0, n);                                         \
    }
UNARY_BWD(exp, EW_EXP_BWD)
UNARY_BWD(log, EW_LOG_BWD)
UNARY_BWD(sqrt, EW_SQRT_BWD)
UNARY_BWD(abs, EW_ABS_BWD)

int qr_neg_bwd_f32(const float *dy, float *dx, int64_t n) {
    if (n > 0) { NEED(dy); NEED(dx); }
    return prim(EW_NEG_BWD, dy, 0, 0, dx, 0, n);
}
int qr_sub_bwd_f32(const float *dy, float *da, float *db, int64_t n) {
    if (n > 0) NEED(dy);
    return prim(EW_SUB_BWD, dy, 0, 0, da, db, n);
}

/* a, b, dy -> da, db (either may be NULL) */
#define BINARY_BWD(name, op)                                                                 \
    int qr_##name##_bwd_f32(const float *a, const float *b, const float *dy, float *da,      \
                            float *db, int64_t n) {                                          \
        if (n > 0) { NEED(a); NEED(b); NEED(dy); }                                           \
        return prim(op, a, b, dy, da, db, n);                                                \
    }
BINARY_BWD(div, EW_DIV_BWD)
BINARY_BWD(maximum, EW_MAX_BWD)
BINARY_BWD(minimum, EW_MIN_BWD)

int qr_where_bwd_f32(const float *cond, const float *dy, float *da, float *db, int64_t n) {
    if (n > 0) { NEED(cond); NEED(dy); }
    return prim(EW_WHERE_BWD, cond, dy, 0, da, db, n);
}
