/* cpu.c - run-time CPU feature detection and the choice of SIMD tier per kernel family.
 *
 * __builtin_cpu_supports reads CPUID and (for AVX and later) checks that the OS saves the YMM
 * state (XGETBV), so an AVX2 kernel is only ever called where it can run. AVX-512 is read here
 * from CPUID leaf 7 and accepted only where XGETBV shows the OS saving the SSE, YMM, opmask
 * and both ZMM state components (XCR0 bits 1, 2, 5, 6, 7): a CPU can have AVX-512 that the
 * OS (or a hypervisor) leaves disabled. The AVX2 objects are compiled in only when the build
 * could use -mavx2 -mfma (QR_HAVE_AVX2_BUILD), the AVX-512 ones with -mavx512f/bw/vl/dq
 * (QR_HAVE_AVX512_BUILD).
 */
#include <stdatomic.h>
#include <stdlib.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#define QR_X86 1
#endif

#include "qorus.h"
#include "quant_internal.h"   /* QR_HAVE_QUANT_AVX512 */

int qr__simd_env(void);               /* threads.c */
int qr__simd_override(void);
void qr__set_simd_override(int v);

#ifdef QR_X86
/* AVX-512 F/BW/VL/DQ/VNNI/BF16 from CPUID, if the OS enabled the opmask and ZMM state. */
static unsigned detect_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;   /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 0xE6u) != 0xE6u) return 0;   /* SSE, YMM, opmask, ZMM_Hi256, Hi16_ZMM */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    unsigned f = 0;
    const unsigned max_sub = a;
    if (b & (1u << 16)) f |= QR_CPU_AVX512F;
    if (b & (1u << 17)) f |= QR_CPU_AVX512DQ;
    if (b & (1u << 30)) f |= QR_CPU_AVX512BW;
    if (b & (1u << 31)) f |= QR_CPU_AVX512VL;
    if (c & (1u << 11)) f |= QR_CPU_AVX512VNNI;
    if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)))
        f |= QR_CPU_AVX512BF16;
    if (!(f & QR_CPU_AVX512F)) f = 0;   /* the others extend F */
    return f;
}
#endif

/* Detected once (CPUID may trap to the hypervisor: microseconds), then constant. */
static unsigned detect(void) {
    unsigned f = 1u << 31;   /* "detected" marker */
#ifdef QR_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= QR_CPU_SSE4_2;
    if (__builtin_cpu_supports("avx")) f |= QR_CPU_AVX;
    if (__builtin_cpu_supports("avx2")) f |= QR_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= QR_CPU_FMA;
    if (__builtin_cpu_supports("f16c")) f |= QR_CPU_F16C;
    if (f & QR_CPU_AVX) f |= detect_avx512();   /* no YMM state: no ZMM state either */
#endif
    const char *mask = getenv("QORUS_CPU_MASK");   /* testing only: pose as a lesser CPU */
    if (mask && *mask) {
        char *end;
        unsigned long m = strtoul(mask, &end, 0);
        if (*end == '\0') f &= ~((unsigned)m & ~(1u << 31));
    }
    return f;
}

/* A cache of detect(), not configuration state: CPUID and QORUS_CPU_MASK are fixed for the
 * process, so two first callers that race both detect and store the same value. */
static _Atomic unsigned features;

unsigned qr_cpu_features(void) {
    unsigned f = features;
    if (!f) features = f = detect();
    return f & ~(1u << 31);
}

int qr_simd_compiled(void) {
#if defined(QR_HAVE_AVX512_BUILD)
    return QR_SIMD_AVX512;
#elif defined(QR_HAVE_AVX2_BUILD)
    return QR_SIMD_AVX2;
#else
    return QR_SIMD_PORTABLE;
#endif
}

#define AVX2_NEEDS (QR_CPU_AVX2 | QR_CPU_FMA)
#define AVX512_NEEDS (AVX2_NEEDS | QR_CPU_F16C | QR_CPU_AVX512F | QR_CPU_AVX512BW | \
                      QR_CPU_AVX512VL | QR_CPU_AVX512DQ)

unsigned qr_simd_missing(int tier) {
    const unsigned f = qr_cpu_features();
    switch (tier) {
    case QR_SIMD_PORTABLE: return 0;
    case QR_SIMD_AVX2: return AVX2_NEEDS & ~f;
    case QR_SIMD_AVX512: return AVX512_NEEDS & ~f;
    default: return ~0u;
    }
}

static int usable(int tier) {
    return tier >= QR_SIMD_PORTABLE && tier <= qr_simd_compiled() && qr_simd_missing(tier) == 0;
}

/* the widest usable tier not wider than `cap` */
static int widest_upto(int cap) {
    for (int t = cap; t > QR_SIMD_PORTABLE; t--)
        if (usable(t)) return t;
    return QR_SIMD_PORTABLE;
}

int qr_simd_path(void) {
    const int o = qr__simd_override();
    return widest_upto(o >= QR_SIMD_PORTABLE && o <= QR_SIMD_AVX512 ? o : QR_SIMD_AVX512);
}

int qr_set_simd_path(int path) {
    if (path == QR_SIMD_AUTO) {
        qr__set_simd_override(QR_SIMD_AUTO);
    } else if (path >= QR_SIMD_PORTABLE && path <= QR_SIMD_AVX512) {
        if (!usable(path)) return QR_EUNSUPPORTED;
        qr__set_simd_override(path);
    } else {
        return QR_EARG;
    }
    return qr_simd_path();
}

int qr_simd_env_status(void) {
    const int e = qr__simd_env();
    if (e == -3) return QR_EARG;
    if (e >= QR_SIMD_PORTABLE && !usable(e)) return QR_EUNSUPPORTED;
    return QR_OK;
}

/* The widest tier each family has kernels for (see the *_avx2.c / *_avx512.c files), the
 * CPU features its SIMD kernels need beyond the tier's own (else it runs portable), and those
 * its AVX-512 kernels need beyond the AVX-512 tier's (else it runs AVX2: wide_needs). */
#ifdef QR_HAVE_QUANT_AVX512
#define QR_QUANT_WIDEST QR_SIMD_AVX512
#else
#define QR_QUANT_WIDEST QR_SIMD_AVX2
#endif
static const struct { const char *name; int widest; unsigned needs, wide_needs; } families[] = {
    {"vec", QR_SIMD_AVX512, 0},            /* act_avx512.c / act_avx2.c: vec_impl.h */
    {"elementwise", QR_SIMD_AVX512, 0},    /* elementwise_avx512.c / _avx2.c: elementwise_impl.h */
    {"gemm", QR_SIMD_AVX512, 0},           /* gemm_avx512.c / gemm_avx2.c */
    {"fused", QR_SIMD_AVX512, 0},          /* fused_avx512.c / fused_avx2.c: fused_impl.h */
    /* quant_avx512.c (with VNNI, else AVX2) / quant_avx2.c: quant_formats.c's qr__quant_tier() */
    {"quant", QR_QUANT_WIDEST, QR_CPU_F16C, QR_CPU_AVX512VNNI},
    {"rnn", QR_SIMD_AVX512, 0},            /* rnn_avx512.c / rnn_avx2.c */
    {"conv", QR_SIMD_PORTABLE, 0},         /* conv.c (its GEMMs: the gemm family) */
    {"strided", QR_SIMD_PORTABLE, 0},      /* strided.c (bmm's GEMMs: the gemm family) */
    {"peak", QR_SIMD_AVX512, 0},           /* peak_avx512.c / peak_avx2.c */
};
#define QR_NFAMILIES ((int)(sizeof(families) / sizeof(families[0])))

const char *qr_simd_family_name(int family) {
    return family >= 0 && family < QR_NFAMILIES ? families[family].name : NULL;
}

int qr_simd_family_path(int family) {
    if (family < 0 || family >= QR_NFAMILIES) return QR_EARG;
    const int p = qr_simd_path(), w = families[family].widest;
    const unsigned needs = families[family].needs, wide = families[family].wide_needs;
    const unsigned f = qr_cpu_features();
    if ((f & needs) != needs) return QR_SIMD_PORTABLE;
    const int t = p < w ? p : w;
    return t == QR_SIMD_AVX512 && (f & wide) != wide ? QR_SIMD_AVX2 : t;
}

/* the same string as qorus_core/kernels/decl LIB_VERSION */
const char *qr_version(void) { return "qorus-kernels 0.7"; }
