/* cpu.c - run-time CPU feature detection and the choice of SIMD path.
 *
 * __builtin_cpu_supports reads CPUID and (for AVX and later) checks that the OS saves the YMM
 * state (XGETBV), so an AVX2 kernel is only ever called where it can run. The AVX2 objects are
 * compiled in only when the build could use -mavx2 -mfma (QR_HAVE_AVX2_BUILD).
 */
#include <stdatomic.h>

#include "qorus.h"

int qr__simd_override(void);          /* threads.c */
void qr__set_simd_override(int v);

/* Detected once (CPUID may trap to the hypervisor: microseconds), then constant. */
static unsigned detect(void) {
    unsigned f = 1u << 31;   /* "detected" marker */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= QR_CPU_SSE4_2;
    if (__builtin_cpu_supports("avx")) f |= QR_CPU_AVX;
    if (__builtin_cpu_supports("avx2")) f |= QR_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= QR_CPU_FMA;
    if (__builtin_cpu_supports("f16c")) f |= QR_CPU_F16C;
    if (__builtin_cpu_supports("avx512f")) f |= QR_CPU_AVX512F;
#endif
    return f;
}

static _Atomic unsigned features;   /* immutable once set; not configuration state */

unsigned qr_cpu_features(void) {
    unsigned f = features;
    if (!f) features = f = detect();
    return f & ~(1u << 31);
}

int qr_simd_compiled(void) {
#ifdef QR_HAVE_AVX2_BUILD
    return 1;
#else
    return 0;
#endif
}

static int avx2_usable(void) {
    unsigned f = qr_cpu_features();
    return qr_simd_compiled() && (f & QR_CPU_AVX2) && (f & QR_CPU_FMA);
}

int qr_simd_path(void) {
    int o = qr__simd_override();
    if (o == 0) return QR_SIMD_PORTABLE;
    return avx2_usable() ? QR_SIMD_AVX2 : QR_SIMD_PORTABLE;
}

int qr_set_simd_path(int path) {
    qr__set_simd_override(path == 0 ? 0 : -1);
    return qr_simd_path();
}

const char *qr_version(void) { return "qorus-kernels 0.1"; }
