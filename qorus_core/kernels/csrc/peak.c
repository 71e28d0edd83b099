/* peak.c - a probe of the machine's floating-point peak: qr_fma_peak_f32 runs independent
 * multiply-add chains on every pool thread, so a caller can time it and report GFLOP/s (the
 * figure GEMM efficiency is judged against). The widest tier in effect runs it: AVX-512
 * (peak_avx512.c, 16 lanes), AVX2 + FMA (peak_avx2.c, 8 lanes), else plain C (mul + add on 8
 * lanes, counted as 2 flops like an FMA). */
#include "qorus.h"

#define QR_PEAK_ACC 12
#define QR_PEAK_FLOPS_PER_LANE (QR_PEAK_ACC * 2)   /* per iteration */

#ifdef QR_HAVE_AVX2_BUILD
float qr__fma_peak_avx2(int64_t iters);
#endif
#ifdef QR_HAVE_AVX512_BUILD
float qr__fma_peak_avx512(int64_t iters);
#endif

static float peak_portable(int64_t iters) {
    float acc[QR_PEAK_ACC][8];
    const float a = 0.999999f, b = 1e-7f;
    for (int j = 0; j < QR_PEAK_ACC; j++)
        for (int l = 0; l < 8; l++) acc[j][l] = (float)(j + l);
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < QR_PEAK_ACC; j++)
            for (int l = 0; l < 8; l++) acc[j][l] = acc[j][l] * a + b;
    float t = 0.0f;
    for (int j = 0; j < QR_PEAK_ACC; j++)
        for (int l = 0; l < 8; l++) t += acc[j][l];
    return t;
}

typedef struct {
    int64_t iters;
    int tier;
    volatile float sink[64];
} peak_ctx;

static void peak_task(void *vctx, int task, int ntasks) {
    (void)ntasks;
    peak_ctx *c = (peak_ctx *)vctx;
    float r;
#ifdef QR_HAVE_AVX512_BUILD
    if (c->tier >= QR_SIMD_AVX512) r = qr__fma_peak_avx512(c->iters);
    else
#endif
#ifdef QR_HAVE_AVX2_BUILD
    if (c->tier >= QR_SIMD_AVX2) r = qr__fma_peak_avx2(c->iters);
    else
#endif
        r = peak_portable(c->iters);
    c->sink[task & 63] = r;   /* keeps the chains live */
}

double qr_fma_peak_f32(int64_t iters) {
    if (iters < 0) return QR_EARG;
    peak_ctx c = {.iters = iters, .tier = qr_simd_path()};
    const int lanes = c.tier >= QR_SIMD_AVX512 ? 16 : 8;
    int nt = qr_get_threads();
    qr_parallel(peak_task, &c, nt);
    return (double)iters * QR_PEAK_FLOPS_PER_LANE * lanes * nt;
}
