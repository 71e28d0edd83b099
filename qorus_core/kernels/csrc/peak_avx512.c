/* peak_avx512.c - the FMA peak probe (peak.c) with 16-wide AVX-512 FMA: 12 independent
 * accumulators, enough to cover the FMA latency x 2 FMA pipes of current x86 cores. Compiled
 * with -mavx512f; called only when cpu.c reports the AVX-512 tier. On a core that splits a
 * 512-bit FMA in two 256-bit halves (Zen 4) it measures the same peak as the AVX2 probe; on
 * one with 512-bit FMA pipes (Zen 5, Intel server cores) twice as much. */
#include <immintrin.h>

#include "qorus.h"

#define QR_PEAK_ACC 12

/* iters rounds of QR_PEAK_ACC 16-wide FMAs; returns a value that depends on every lane. */
float qr__fma_peak_avx512(int64_t iters) {
    __m512 acc[QR_PEAK_ACC];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int j = 0; j < QR_PEAK_ACC; j++) acc[j] = _mm512_set1_ps((float)j);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < QR_PEAK_ACC; j++) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
    }
    __m512 s = acc[0];
    for (int j = 1; j < QR_PEAK_ACC; j++) s = _mm512_add_ps(s, acc[j]);
    return _mm512_reduce_add_ps(s);
}
