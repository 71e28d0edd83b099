/* elementwise_impl.h - the bodies of the primitive elementwise kernels (elementwise.c),
 * included once per SIMD tier with QR_PRIM_SFX set (portable, avx2, avx512). Plain loops the
 * compiler vectorizes; FP contraction is off in every build, so all tiers give the same bits.
 * Every loop reads element i of its inputs before it writes element i of its outputs, so an
 * output may be one of the inputs (the same buffer). */
#include "elementwise_internal.h"

#ifndef QR_PRIM_SFX
#error "define QR_PRIM_SFX (portable, avx2, avx512) before including elementwise_impl.h"
#endif

/* log(x), ~1 ulp: x = 2^e m, m in [sqrt(1/2), sqrt(2)), log(m) by Cephes' polynomial in
 * m - 1; subnormals scaled by 2^23 first. log(0) = -inf, log(x < 0) = NaN, log(inf) = inf,
 * NaN propagates: branch-free, so the loop vectorizes. */
static inline float prim_logf(float x) {
    int32_t ix;
    memcpy(&ix, &x, 4);
    const int sub = ix < 0x00800000;                    /* subnormal, zero or negative */
    float xs = sub ? x * 8388608.0f : x;
    memcpy(&ix, &xs, 4);
    int32_t e = ((ix >> 23) & 0xff) - 126 - (sub ? 23 : 0);
    int32_t im = (ix & 0x007fffff) | 0x3f000000;        /* m in [0.5, 1) */
    float m;
    memcpy(&m, &im, 4);
    const int lt = m < 0.707106781186547524f;
    e -= lt;
    m = lt ? (m + m) - 1.0f : m - 1.0f;
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    const float fe = (float)e;
    y = y + fe * -2.12194440e-4f;
    y = y - 0.5f * z;
    float r = m + y;
    r = r + fe * 0.693359375f;
    r = x > 0.0f ? r : (x == 0.0f ? -__builtin_inff() : __builtin_nanf(""));
    r = x == __builtin_inff() ? x : r;
    return x == x ? r : x;
}

/* sign(x) as NumPy: 1, -1, 0 (for either zero), NaN for NaN */
static inline float prim_sign(float x) {
    return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : (x == x ? 0.0f : x));
}

void QR_SFX_NAME(prim_range, QR_PRIM_SFX)(void *ctx, int64_t lo, int64_t hi) {
    const qr_prim_ctx *c = ctx;
    const float *a = c->a, *b = c->b, *cc = c->c;
    float *o = c->o, *o2 = c->o2;
    switch (c->op) {
    case EW_SUB: for (int64_t i = lo; i < hi; i++) o[i] = a[i] - b[i]; break;
    case EW_DIV: for (int64_t i = lo; i < hi; i++) o[i] = a[i] / b[i]; break;
    case EW_MAX:   /* NumPy's maximum: NaN wins, a tie gives b */
        for (int64_t i = lo; i < hi; i++) {
            const float x = a[i], y = b[i];
            o[i] = (x > y || x != x) ? x : y;
        }
        break;
    case EW_MIN:
        for (int64_t i = lo; i < hi; i++) {
            const float x = a[i], y = b[i];
            o[i] = (x < y || x != x) ? x : y;
        }
        break;
    case EW_WHERE:   /* a = cond (nonzero, NaN included: take b = x), b = x, cc = y */
        for (int64_t i = lo; i < hi; i++) o[i] = a[i] != 0.0f ? b[i] : cc[i];
        break;
    case EW_EXP: for (int64_t i = lo; i < hi; i++) o[i] = qr_expf(a[i]); break;
    case EW_LOG: for (int64_t i = lo; i < hi; i++) o[i] = prim_logf(a[i]); break;
    case EW_SQRT: for (int64_t i = lo; i < hi; i++) o[i] = __builtin_sqrtf(a[i]); break;
    case EW_ABS: for (int64_t i = lo; i < hi; i++) o[i] = __builtin_fabsf(a[i]); break;
    case EW_NEG: for (int64_t i = lo; i < hi; i++) o[i] = -a[i]; break;
    case EW_SUB_BWD:   /* a = dy: o = dy, o2 = -dy */
        for (int64_t i = lo; i < hi; i++) {
            const float g = a[i];
            if (o) o[i] = g;
            if (o2) o2[i] = -g;
        }
        break;
    case EW_DIV_BWD:   /* a, b, cc = dy: o = dy / b, o2 = -(dy / b * a) / b */
        for (int64_t i = lo; i < hi; i++) {
            const float x = a[i], y = b[i], t = cc[i] / y;
            if (o) o[i] = t;
            if (o2) o2[i] = -((t * x) / y);
        }
        break;
    case EW_MAX_BWD:   /* a, b, cc = dy: the larger takes dy, a tie splits it evenly */
    case EW_MIN_BWD:
        for (int64_t i = lo; i < hi; i++) {
            const float x = a[i], y = b[i], g = cc[i];
            const int wins = c->op == EW_MAX_BWD ? x > y : x < y;
            const int loses = c->op == EW_MAX_BWD ? y > x : y < x;
            const float wa = wins ? 1.0f : (x == y ? 0.5f : 0.0f);
            const float wb = loses ? 1.0f : (x == y ? 0.5f : 0.0f);
            if (o) o[i] = g * wa;
            if (o2) o2[i] = g * wb;
        }
        break;
    case EW_WHERE_BWD:   /* a = cond, b = dy: o = dy where cond, o2 = dy elsewhere */
        for (int64_t i = lo; i < hi; i++) {
            const float m = a[i] != 0.0f ? 1.0f : 0.0f, g = b[i];
            if (o) o[i] = g * m;
            if (o2) o2[i] = g * (1.0f - m);
        }
        break;
    case EW_EXP_BWD: for (int64_t i = lo; i < hi; i++) o[i] = b[i] * a[i]; break;   /* dy y */
    case EW_LOG_BWD: for (int64_t i = lo; i < hi; i++) o[i] = b[i] / a[i]; break;   /* dy / x */
    case EW_SQRT_BWD:   /* dy / (2 y) */
        for (int64_t i = lo; i < hi; i++) o[i] = b[i] / (a[i] + a[i]);
        break;
    case EW_ABS_BWD: for (int64_t i = lo; i < hi; i++) o[i] = b[i] * prim_sign(a[i]); break;
    case EW_NEG_BWD: for (int64_t i = lo; i < hi; i++) o[i] = -a[i]; break;
    default: break;
    }
}
