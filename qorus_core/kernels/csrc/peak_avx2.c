/* peak_avx2.c - the FMA peak probe (peak.c) with 8-wide AVX2 FMA: 12 independent accumulators,
 * enough to cover the FMA latency x 2 FMA pipes of current x86 cores. Compiled with -mavx2
 * -mfma; called only when cpu.c reports AVX2 + FMA. */
#include <immintrin.h>

#include "qorus.h"

#define QR_PEAK_ACC 12

/* iters rounds of QR_PEAK_ACC 8-wide FMAs; returns a value that depends on every lane. */
float qr__fma_peak_avx2(int64_t iters) {
    __m256 acc[QR_PEAK_ACC];
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int j = 0; j < QR_PEAK_ACC; j++) acc[j] = _mm256_set1_ps((float)j);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < QR_PEAK_ACC; j++) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
    }
    __m256 s = acc[0];
    for (int j = 1; j < QR_PEAK_ACC; j++) s = _mm256_add_ps(s, acc[j]);
    float out[8];
    _mm256_storeu_ps(out, s);
    float t = 0.0f;
    for (int j = 0; j < 8; j++) t += out[j];
    return t;
}
