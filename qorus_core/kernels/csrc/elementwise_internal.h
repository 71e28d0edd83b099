/* elementwise_internal.h - private to elementwise.c and its SIMD twins: the primitive
 * elementwise kernels (sub, div, maximum, minimum, where, exp, log, sqrt, abs, neg and their
 * backward), one range body per tier built from elementwise_impl.h. */
#ifndef QORUS_ELEMENTWISE_INTERNAL_H
#define QORUS_ELEMENTWISE_INTERNAL_H

#include "qr_math.h"

enum {
    EW_SUB, EW_DIV, EW_MAX, EW_MIN, EW_WHERE, EW_EXP, EW_LOG, EW_SQRT, EW_ABS, EW_NEG,
    EW_SUB_BWD, EW_DIV_BWD, EW_MAX_BWD, EW_MIN_BWD, EW_WHERE_BWD, EW_EXP_BWD, EW_LOG_BWD,
    EW_SQRT_BWD, EW_ABS_BWD, EW_NEG_BWD
};

/* up to three inputs (a, b, c) and two outputs (o, o2; a backward's o or o2 may be NULL) */
typedef struct {
    int op;
    const float *a, *b, *c;
    float *o, *o2;
} qr_prim_ctx;

void qr__prim_range_portable(void *ctx, int64_t lo, int64_t hi);
#ifdef QR_HAVE_AVX2_BUILD
void qr__prim_range_avx2(void *ctx, int64_t lo, int64_t hi);
#endif
#ifdef QR_HAVE_AVX512_BUILD
void qr__prim_range_avx512(void *ctx, int64_t lo, int64_t hi);
#endif

#endif
