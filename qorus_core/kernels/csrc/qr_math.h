/* qr_math.h - private inline helpers for the elementwise and row-wise kernels: float32 math
 * written so the compiler vectorizes it (no libm calls, no errno), fixed-order reductions,
 * and a parallel-for over element ranges. Not part of the public API. */
#ifndef QORUS_MATH_H
#define QORUS_MATH_H

#include <stdint.h>
#include <string.h>

#include "qorus.h"

/* The variant of a kernel family for this CPU (and QORUS_SIMD): every family with an AVX2
 * twin (act/vec, fused, rnn) builds qr__<name>_avx2 and qr__<name>_portable and picks with
 * qr_simd_pick (AVX2 also where the tier in effect is AVX-512: the family has no wider twin);
 * a family with an AVX-512 twin too (qr__<name>_avx512) picks with qr_simd_pick3. */
/* qr__<name>_<sfx>: the name of one twin, for the bodies compiled once per variant
 * (vec_impl.h, fused_impl.h, rnn.c); sfx is a macro (portable / avx2 / avx512), expanded first. */
#define QR__SFX_NAME2(name, sfx) qr__##name##_##sfx
#define QR_SFX_NAME(name, sfx) QR__SFX_NAME2(name, sfx)

#ifdef QR_HAVE_AVX2_BUILD
#define qr_simd_pick(name) \
    (qr_simd_path() >= QR_SIMD_AVX2 ? qr__##name##_avx2 : qr__##name##_portable)
#else
#define qr_simd_pick(name) (qr__##name##_portable)
#endif
#ifdef QR_HAVE_AVX512_BUILD
#define qr_simd_pick3(name) \
    (qr_simd_path() >= QR_SIMD_AVX512 ? qr__##name##_avx512 : qr_simd_pick(name))
#else
#define qr_simd_pick3(name) qr_simd_pick(name)
#endif

#define QR_PAR_GRAIN ((int64_t)1 << 16)   /* elements per task before threads pay off */

static inline float qr_bits_to_f(int32_t i) { float f; memcpy(&f, &i, 4); return f; }

/* exp(x) in float32, ~1 ulp (Cephes polynomial, Cody-Waite reduction). Overflows to +inf
 * above ~88.72, goes through the subnormals to 0 below ~-103.9; NaN propagates. */
static inline float qr_expf(float x) {
    float xc = x > 89.0f ? 89.0f : x;
    xc = xc < -104.0f ? -104.0f : xc;
    xc = xc == xc ? xc : 0.0f;                                  /* NaN: fixed up at the end */
    float fx = xc * 1.44269504088896341f;
    fx = (fx + 12582912.0f) - 12582912.0f;                      /* round to nearest */
    float r = xc - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    /* Estrin's scheme: the degree-5 polynomial as three pairs in r and two steps in r^2, a
     * chain half as long as Horner's (the 8-lane twin is latency-bound: -17% time) */
    const float r2 = r * r;
    float y = (1.9875691500e-4f * r + 1.3981999507e-3f) * r2
              + (8.3334519073e-3f * r + 4.1665795894e-2f);
    y = y * r2 + (1.6666665459e-1f * r + 5.0000001201e-1f);
    y = y * r2 + r + 1.0f;
    int32_t n = (int32_t)fx, n1 = n / 2, n2 = n - n1;             /* 2^n in two exact steps */
    y = y * qr_bits_to_f((n1 + 127) << 23);
    y = y * qr_bits_to_f((n2 + 127) << 23);
    return x == x ? y : x;
}

#ifdef __AVX2__
#include <immintrin.h>

/* qr_expf on 8 lanes: the same value at every step, in the same order (no FMA), so every
 * lane is bit-identical to the scalar qr_expf and the AVX2 kernels agree with the portable
 * ones (the rounding instruction and the NaN handling differ, not the results). */
static inline __m256 qr_exp8(__m256 x) {
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    /* NaN lanes clamp to 89 here (not 0 as in qr_expf) and are replaced by x at the end */
    const __m256 xc = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(89.0f)),
                                    _mm256_set1_ps(-104.0f));
    /* rounding to nearest even: the same value as qr_expf's add/subtract of 1.5 * 2^23 */
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(xc, _mm256_mul_ps(fx, _mm256_set1_ps(0.693359375f)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(fx, _mm256_set1_ps(-2.12194440e-4f)));
    const __m256 r2 = _mm256_mul_ps(r, r);
#define QR_EXP_PAIR(c0, c1) _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(c0), r), _mm256_set1_ps(c1))
    __m256 y = _mm256_add_ps(_mm256_mul_ps(QR_EXP_PAIR(1.9875691500e-4f, 1.3981999507e-3f), r2),
                             QR_EXP_PAIR(8.3334519073e-3f, 4.1665795894e-2f));
    y = _mm256_add_ps(_mm256_mul_ps(y, r2), QR_EXP_PAIR(1.6666665459e-1f, 5.0000001201e-1f));
#undef QR_EXP_PAIR
    y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(y, r2), r), _mm256_set1_ps(1.0f));
    const __m256i n = _mm256_cvttps_epi32(fx);                          /* fx is integral */
    const __m256i n1 = _mm256_srai_epi32(_mm256_add_epi32(n, _mm256_srli_epi32(n, 31)), 1);
    const __m256i n2 = _mm256_sub_epi32(n, n1), bias = _mm256_set1_epi32(127);  /* n / 2 in C */
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23)));
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23)));
    return _mm256_blendv_ps(y, x, nan);
}
#endif

#ifdef __AVX512F__
/* 16-lane exp (AVX-512 F/DQ builds): the same values at every step in the same order as the
 * scalar qr_expf, so every lane is bit-identical to it (and to qr_exp8). */
#define QR_SET16 _mm512_set1_ps
#define QR_AI16 static inline __attribute__((always_inline))

/* qr_expf's polynomial and 2^n scaling for xc already clamped to [-104, 89] and not NaN.
 * vscalefps multiplies by 2^fx with one rounding: qr_expf's first half-step is exact (|n/2|
 * <= 75 keeps y * 2^(n/2) normal), so one rounding of y * 2^n is the same value. */
QR_AI16 __m512 qr__exp16_core(__m512 xc) {
    const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(xc, QR_SET16(1.44269504088896341f)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_sub_ps(xc, _mm512_mul_ps(fx, QR_SET16(0.693359375f)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(fx, QR_SET16(-2.12194440e-4f)));
    const __m512 r2 = _mm512_mul_ps(r, r);
#define QR_EXP_PAIR16(c0, c1) _mm512_add_ps(_mm512_mul_ps(QR_SET16(c0), r), QR_SET16(c1))
    __m512 y = _mm512_add_ps(_mm512_mul_ps(QR_EXP_PAIR16(1.9875691500e-4f, 1.3981999507e-3f), r2),
                             QR_EXP_PAIR16(8.3334519073e-3f, 4.1665795894e-2f));
    y = _mm512_add_ps(_mm512_mul_ps(y, r2), QR_EXP_PAIR16(1.6666665459e-1f, 5.0000001201e-1f));
#undef QR_EXP_PAIR16
    y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(y, r2), r), QR_SET16(1.0f));
    return _mm512_scalef_ps(y, fx);
}

/* qr_expf on 16 lanes (NaN lanes clamp to 89 in the min/max and are replaced by x). */
QR_AI16 __m512 qr_exp16(__m512 x) {
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __m512 xc = _mm512_max_ps(_mm512_min_ps(x, QR_SET16(89.0f)), QR_SET16(-104.0f));
    return _mm512_mask_mov_ps(qr__exp16_core(xc), nan, x);
}
#endif

/* ------------------------------------------------------------------ erf / GELU, FMA tiers */
/* The exact GELU of the AVX2 and AVX-512 tiers (vec_impl.h's OP_GELU / OP_GELU_BWD): FMA,
 * one piecewise polynomial for erf chosen per lane by a table permute (no branch, no blend
 * of two formulas), no exp in the forward. The portable tier keeps qr_erff / qr_gelu_f (no
 * FMA), so these are not bit-identical to it; the 8- and 16-lane twins do the same IEEE
 * operations in the same order on the same table, so they are bit-identical to each other.
 *
 * erf(u): a = min(|u|, 3.9375), j = (int)(2a) in 0..7 (eight intervals of width 1/2), then
 *   j = 0:  erf = t + t q(t),       t = a                  (relative accuracy near 0)
 *   j > 0:  erf = c0_j + t q_j(t),  t = a - center_j       (exact: Sterbenz)
 * with q_j of degree 6 (Horner, FMA), the sign of u put back; center_j is a float near the
 * middle of interval j whose erf is a float to within 1e-4 ulp (so c0_j is not rounded), and
 * the coefficients are minimax fits rounded to float one at a time (each refitted after the
 * rounding of the one before). erf rounds to 1 from |u| = 3.9192 on; from the clamp on the
 * result is exactly +-1. Maximum error 0.845 ulp (|err| <= 4.3e-8), measured exhaustively on
 * every float (both widths, identical results); NaN propagates, erf(+-0) = +-0, erf(+-inf)
 * = +-1. On every float too: qr_exp_neg_fma within 1.02 ulp of exp; qr_gelu_fma within
 * 1.67 ulp of x Phi(x) for x >= 0, 1 ulp + 3.0e-8 |x| for x < 0 (1 + erf cancels); its
 * gradient within 1.78 ulp for x >= 0, 6.5e-8 for x < 0. tests/test_gelu_accuracy.py holds
 * each tier to decl/act.py's GELU_BOUND (its harness, QORUS_GELU_EXHAUSTIVE=1, reruns the
 * erf on every float). */
#if defined(__AVX2__) && defined(__FMA__)
#define QR_ERFT_AMAX 3.9375f
#define QR_ERFT_DEG 6   /* degree of q_j */
/* rows: center_j, q6 .. q0, c0_j (0 for interval 0) */
static const float qr_erft_tab[QR_ERFT_DEG + 3][8] = {
    {0.0f, 7.458527684e-1f, 1.246640086f, 1.760827661f, 2.235442400f, 2.758657217f,
     3.240475893f, 3.832506895f},
    {-1.797810011e-2f, 1.789525896e-2f, 3.726469120e-3f, -5.940185860e-3f, -7.089445135e-4f,
     6.365089794e-4f, 1.726855844e-4f, 2.009640775e-5f},
    {-8.002399467e-3f, -2.711285092e-2f, 2.053474821e-2f, 8.596404456e-3f, -2.711033449e-3f,
     -1.628925093e-3f, -2.848514996e-4f, -8.400187653e-6f},
    {1.158750057e-1f, -5.255006999e-2f, -4.759915918e-2f, 7.192426827e-3f, 1.089849230e-2f,
     2.670593793e-3f, 3.296875220e-4f, 1.111175061e-5f},
    {-5.635937559e-4f, 1.517734230e-1f, -5.338572431e-3f, -4.773120582e-2f, -1.987243257e-2f,
     -3.140303772e-3f, -3.015330294e-4f, -7.988923244e-6f},
    {-3.760775924e-1f, 2.427971177e-2f, 1.676129103e-1f, 8.808187395e-2f, 2.285881899e-2f,
     2.649615286e-3f, 2.070017654e-4f, 4.453726433e-6f},
    {-1.571183930e-6f, -4.825159013e-1f, -2.973407805e-1f, -8.946138620e-2f, -1.704354398e-2f,
     -1.542021753e-3f, -1.006211096e-4f, -1.806932573e-6f},
    {1.283791810e-1f, 6.469320059e-1f, 2.385135293e-1f, 5.080645904e-2f, 7.624254562e-3f,
     5.589740467e-4f, 3.105040378e-5f, 4.715314219e-7f},
    {0.0f, 7.084809542e-1f, 9.221020937e-1f, 9.872323871e-1f, 9.984298348e-1f, 9.999043345e-1f,
     9.999954104e-1f, 9.999999404e-1f}};
#define QR_ERFT_C0 (QR_ERFT_DEG + 2)
/* exp(z) for z <= 0 (FMA; ~1 ulp, Cephes's polynomial): z below -88 (and results below
 * 2^-126.5) give 0; NaN propagates. 2^n comes from the bits of z log2e + 1.5 * 2^23 + 127. */
#define QR_EXPN_MAGIC 12583039.0f   /* 1.5 * 2^23 + 127 */

static inline __attribute__((always_inline)) __m256 qr_erf_tab8(__m256 u) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    /* min(AMAX, |u|): a NaN |u| stays NaN (vminps returns its second operand) */
    const __m256 a = _mm256_min_ps(_mm256_set1_ps(QR_ERFT_AMAX), _mm256_andnot_ps(sign, u));
    const __m256i j = _mm256_cvttps_epi32(_mm256_mul_ps(a, _mm256_set1_ps(2.0f)));  /* NaN: 0 */
#define QR_ERFT8(row) _mm256_permutevar8x32_ps(_mm256_loadu_ps(qr_erft_tab[row]), j)
    const __m256 t = _mm256_sub_ps(a, QR_ERFT8(0));
    __m256 h = QR_ERFT8(1);
    for (int k = 2; k <= QR_ERFT_DEG + 1; k++) h = _mm256_fmadd_ps(h, t, QR_ERFT8(k));
    /* t (interval 0: t = a in [0, 1/2]) or c0_j (>= 0.708 > |t| <= 0.26): max(t, c0_j) */
    const __m256 base = _mm256_max_ps(t, QR_ERFT8(QR_ERFT_C0));
#undef QR_ERFT8
    const __m256 p = _mm256_fmadd_ps(h, t, base);                   /* in [0, 1] */
    return _mm256_or_ps(p, _mm256_and_ps(u, sign));
}

static inline __attribute__((always_inline)) __m256 qr_exp_neg_fma8(__m256 z) {
    z = _mm256_max_ps(_mm256_set1_ps(-88.0f), z);                   /* NaN stays */
    const __m256 kf = _mm256_fmadd_ps(z, _mm256_set1_ps(1.44269504088896341f),
                                      _mm256_set1_ps(QR_EXPN_MAGIC));
    const __m256 n = _mm256_sub_ps(kf, _mm256_set1_ps(QR_EXPN_MAGIC));   /* round(z log2e) */
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), z);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    /* 2^n, n in [-127, 0]: (n + 127) << 23 (n = -127: +0) */
    const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(kf), 23));
    return _mm256_mul_ps(y, scale);
}

/* gelu(x) = x (1/2 + erf(x / sqrt 2) / 2) */
static inline __attribute__((always_inline)) __m256 qr_gelu_fma8(__m256 x) {
    const __m256 e = qr_erf_tab8(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    return _mm256_mul_ps(x, _mm256_fmadd_ps(e, _mm256_set1_ps(0.5f), _mm256_set1_ps(0.5f)));
}

/* d gelu / dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi) */
static inline __attribute__((always_inline)) __m256 qr_gelu_grad_fma8(__m256 x) {
    const __m256 e = qr_erf_tab8(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    const __m256 cdf = _mm256_fmadd_ps(e, _mm256_set1_ps(0.5f), _mm256_set1_ps(0.5f));
    const __m256 g = qr_exp_neg_fma8(_mm256_mul_ps(_mm256_mul_ps(x, x), _mm256_set1_ps(-0.5f)));
    return _mm256_fmadd_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.39894228040143268f)), g, cdf);
}
#endif

#if defined(__AVX512F__) && defined(__FMA__)
/* the 16-lane twins: the same operations (the table's 8 entries in the low half of the
 * permute's source; the index is 0..7, or 0 for NaN, so the high half is never read) */
QR_AI16 __m512 qr_erf_tab16(__m512 u) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 a = _mm512_min_ps(_mm512_set1_ps(QR_ERFT_AMAX), _mm512_andnot_ps(sign, u));
    const __m512i j = _mm512_cvttps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(2.0f)));
#define QR_ERFT16(row) \
    _mm512_permutexvar_ps(j, _mm512_castps256_ps512(_mm256_loadu_ps(qr_erft_tab[row])))
    const __m512 t = _mm512_sub_ps(a, QR_ERFT16(0));
    __m512 h = QR_ERFT16(1);
    for (int k = 2; k <= QR_ERFT_DEG + 1; k++) h = _mm512_fmadd_ps(h, t, QR_ERFT16(k));
    const __m512 base = _mm512_max_ps(t, QR_ERFT16(QR_ERFT_C0));
#undef QR_ERFT16
    const __m512 p = _mm512_fmadd_ps(h, t, base);
    return _mm512_or_ps(p, _mm512_and_ps(u, sign));
}

QR_AI16 __m512 qr_exp_neg_fma16(__m512 z) {
    z = _mm512_max_ps(_mm512_set1_ps(-88.0f), z);
    const __m512 kf = _mm512_fmadd_ps(z, _mm512_set1_ps(1.44269504088896341f),
                                      _mm512_set1_ps(QR_EXPN_MAGIC));
    const __m512 n = _mm512_sub_ps(kf, _mm512_set1_ps(QR_EXPN_MAGIC));
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), z);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_add_ps(_mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    const __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(kf), 23));
    return _mm512_mul_ps(y, scale);
}

QR_AI16 __m512 qr_gelu_fma16(__m512 x) {
    const __m512 e = qr_erf_tab16(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)));
    return _mm512_mul_ps(x, _mm512_fmadd_ps(e, _mm512_set1_ps(0.5f), _mm512_set1_ps(0.5f)));
}

QR_AI16 __m512 qr_gelu_grad_fma16(__m512 x) {
    const __m512 e = qr_erf_tab16(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)));
    const __m512 cdf = _mm512_fmadd_ps(e, _mm512_set1_ps(0.5f), _mm512_set1_ps(0.5f));
    const __m512 g = qr_exp_neg_fma16(_mm512_mul_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(-0.5f)));
    return _mm512_fmadd_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.39894228040143268f)), g, cdf);
}
#endif

/* y[j] = qr_expf(x[j] - shift) (a softmax row); y may alias x. GCC does not vectorize the
 * scalar loop, so AVX2 builds run qr_exp8 (same bits, about 5x faster), AVX-512 ones qr_exp16. */
static inline void qr_exp_shift(const float *x, float shift, float *y, int64_t n) {
    int64_t j = 0;
#if defined(__AVX512F__)
    const __m512 s16 = _mm512_set1_ps(shift);
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(y + j, qr_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), s16)));
    if (j < n) {   /* the tail on masked lanes (the others load 0 and are not stored) */
        const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        const __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), s16);
        _mm512_mask_storeu_ps(y + j, m, qr_exp16(v));
        return;
    }
#elif defined(__AVX2__)
    const __m256 s = _mm256_set1_ps(shift);
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(y + j, qr_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), s)));
#endif
    for (; j < n; j++) y[j] = qr_expf(x[j] - shift);
}

/* y[j] = qr_expf(-x[j]) (sigmoid, SiLU); y may alias x. AVX2 / AVX-512 builds: qr_exp8 /
 * qr_exp16, same bits. */
static inline void qr_exp_neg(const float *x, float *y, int64_t n) {
    int64_t j = 0;
#if defined(__AVX512F__)
    const __m512 sign16 = _mm512_set1_ps(-0.0f);
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(y + j, qr_exp16(_mm512_xor_ps(_mm512_loadu_ps(x + j), sign16)));
    if (j < n) {
        const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        const __m512 v = _mm512_xor_ps(_mm512_maskz_loadu_ps(m, x + j), sign16);
        _mm512_mask_storeu_ps(y + j, m, qr_exp16(v));
        return;
    }
#elif defined(__AVX2__)
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(y + j, qr_exp8(_mm256_xor_ps(_mm256_loadu_ps(x + j), sign)));
#endif
    for (; j < n; j++) y[j] = qr_expf(-x[j]);
}

/* Elementwise loops that need exp(-x) run in tiles: exp(-x) of a tile into a stack buffer
 * (vectorized above), then the rest of the formula, which the compiler vectorizes. */
#define QR_EXP_TILE 256

/* tanh(x) in float32 (Cephes): odd polynomial for |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1).
 * qr_tanh8 / qr_tanh16 (qr_lanes.h) are the same operations on 8 / 16 lanes. */
#define QR_TANH_P4 -5.70498872745e-3f
#define QR_TANH_P3 2.06390887954e-2f
#define QR_TANH_P2 -5.37397155531e-2f
#define QR_TANH_P1 1.33314422036e-1f
#define QR_TANH_P0 -3.33332819422e-1f

static inline float qr_tanhf(float x) {
    float ax = x < 0.0f ? -x : x;
    float s = x * x;
    float p = QR_TANH_P4;
    p = p * s + QR_TANH_P3;
    p = p * s + QR_TANH_P2;   /* + of a negative constant: the same value as - of its size */
    p = p * s + QR_TANH_P1;
    p = p * s + QR_TANH_P0;
    float small = p * s * x + x;
    float big = 1.0f - 2.0f / (qr_expf(ax + ax) + 1.0f);
    big = x < 0.0f ? -big : big;
    return ax < 0.625f ? small : big;                           /* NaN takes `big`: NaN */
}

/* erf(x) in float32, max 1.35 ulp (measured against double erf on 2.5M points in [-5, 5] and
 * tiny |x|). Two minimax polynomials fitted for this no-FMA Horner form: |x| < 0.921875:
 * erf = x + x q(x^2); above: erf = 1 - exp(p(t)), p ~ log erfc(t), t = min(|x|, 3.92) (erf
 * rounds to 1 beyond). NaN takes the first branch and propagates; erf(+-inf) = +-1. numpy.py's
 * _erf is the same formula; qr_erf8 / qr_erf16 (qr_lanes.h) the same operations on lanes. The
 * exact GELU of the AVX2 / AVX-512 tiers runs qr_erf_tab8 / 16 (above) instead. */
#define QR_ERF_T 0.921875f
#define QR_ERF_TMAX 3.92f
#define QR_ERF_Q0 0.12837915122509003f
#define QR_ERF_Q1 -0.3761250674724579f
#define QR_ERF_Q2 0.11281928420066833f
#define QR_ERF_Q3 -0.02677025832235813f
#define QR_ERF_Q4 0.0049980334006249905f
#define QR_ERF_Q5 -0.0006013533566147089f
#define QR_ERF_P0 -0.0002099139674101025f
#define QR_ERF_P1 -1.1276154518127441f
#define QR_ERF_P2 -0.6372857689857483f
#define QR_ERF_P3 -0.10383890569210052f
#define QR_ERF_P4 0.022181401029229164f
#define QR_ERF_P5 -0.003031601198017597f
#define QR_ERF_P6 0.00019473457359708846f

static inline float qr_erff(float x) {
    float s = x * x, t = x < 0.0f ? -x : x;
    float q = QR_ERF_Q5;
    q = q * s + QR_ERF_Q4;
    q = q * s + QR_ERF_Q3;
    q = q * s + QR_ERF_Q2;
    q = q * s + QR_ERF_Q1;
    q = q * s + QR_ERF_Q0;
    float small = q * x + x;
    float tc = t < QR_ERF_TMAX ? t : QR_ERF_TMAX;
    float p = QR_ERF_P6;
    p = p * tc + QR_ERF_P5;
    p = p * tc + QR_ERF_P4;
    p = p * tc + QR_ERF_P3;
    p = p * tc + QR_ERF_P2;
    p = p * tc + QR_ERF_P1;
    p = p * tc + QR_ERF_P0;
    float big = 1.0f - qr_expf(p);
    big = x < 0.0f ? -big : big;
    return t >= QR_ERF_T ? big : small;                         /* NaN: small, NaN */
}


/* Fixed-order sums: 16 float lanes (vectorized), lanes added in order. */
static inline float qr_sum_f(const float *x, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += x[i + k];
    for (int k = 0; i < n; i++, k++) acc[k] += x[i];
    float s = 0.0f;
    for (int k = 0; k < 16; k++) s += acc[k];
    return s;
}

static inline float qr_dot_f(const float *x, const float *y, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += x[i + k] * y[i + k];
    for (int k = 0; i < n; i++, k++) acc[k] += x[i] * y[i];
    float s = 0.0f;
    for (int k = 0; k < 16; k++) s += acc[k];
    return s;
}

/* Row maximum that propagates NaN like numpy.max. 16 lanes of `v > m ? v : m` (vmaxps) and
 * a NaN flag per lane, both vectorizable; a NaN anywhere returns NaN. */
static inline float qr_max_f(const float *x, int64_t n) {
    float m[16];
    int nan[16];
    int64_t i = 0;
    for (int k = 0; k < 16; k++) { m[k] = x[0]; nan[k] = 0; }
#if defined(__AVX512F__)   /* vmaxps(v, m) is exactly `v > m ? v : m`: the same lanes */
    __m512 m16 = _mm512_set1_ps(x[0]);
    __mmask16 bad16 = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        m16 = _mm512_max_ps(v, m16);
        bad16 |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    _mm512_storeu_ps(m, m16);
    nan[0] = bad16 != 0;
#elif defined(__AVX2__)   /* the same, on two 8-lane halves */
    __m256 m0 = _mm256_set1_ps(x[0]), m1 = m0, bad = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        m0 = _mm256_max_ps(v0, m0);
        m1 = _mm256_max_ps(v1, m1);
        bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(v0, v0, _CMP_UNORD_Q),
                                             _mm256_cmp_ps(v1, v1, _CMP_UNORD_Q)));
    }
    _mm256_storeu_ps(m, m0);
    _mm256_storeu_ps(m + 8, m1);
    nan[0] = _mm256_movemask_ps(bad) != 0;
#else
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) {
            float v = x[i + k];
            m[k] = v > m[k] ? v : m[k];
            nan[k] |= v != v;
        }
#endif
    float r = m[0];
    int any = nan[0];
    for (int k = 1; k < 16; k++) { r = m[k] > r ? m[k] : r; any |= nan[k]; }
    for (; i < n; i++) {
        float v = x[i];
        r = v > r ? v : r;
        any |= v != v;
    }
    return any ? __builtin_nanf("") : r;
}

/* Parallel for over [0, n) in contiguous chunks (multiples of 16 elements): body(ctx, lo, hi).
 * Chunks depend only on n and the task count; elementwise results do not depend on either. */
typedef void (*qr_range_fn)(void *ctx, int64_t lo, int64_t hi);
typedef struct { qr_range_fn fn; void *ctx; int64_t n; } qr_range_job;

static inline void qr__range_task(void *p, int task, int ntasks) {
    qr_range_job *j = p;
    int64_t blocks = (j->n + 15) / 16;
    int64_t lo = blocks * task / ntasks * 16, hi = blocks * (task + 1) / ntasks * 16;
    if (hi > j->n) hi = j->n;
    if (lo < hi) j->fn(j->ctx, lo, hi);
}

static inline void qr_par_range(qr_range_fn fn, void *ctx, int64_t n, int64_t grain) {
    if (n <= 0) return;
    int nt = n < 2 * grain ? 1 : qr_tasks_for((size_t)n, (size_t)grain);
    if (nt <= 1) { fn(ctx, 0, n); return; }
    qr_range_job j = {fn, ctx, n};
    qr_parallel(qr__range_task, &j, nt);
}

/* Parallel for over `count` items (rows, blocks, column chunks) split evenly; `work` (total
 * elements touched) decides whether threads pay off. body(ctx, lo, hi) gets item indices. */
static inline void qr__items_task(void *p, int task, int ntasks) {
    qr_range_job *j = p;
    int64_t lo = j->n * task / ntasks, hi = j->n * (task + 1) / ntasks;
    if (lo < hi) j->fn(j->ctx, lo, hi);
}

/* ... with `grain` units of work a task (qr_par_items: QR_PAR_GRAIN) */
static inline void qr_par_items_grain(qr_range_fn fn, void *ctx, int64_t count, int64_t work,
                                      int64_t grain) {
    if (count <= 0) return;
    int nt = work < 2 * grain ? 1 : qr_tasks_for((size_t)work, (size_t)grain);
    if (nt > count) nt = (int)count;
    if (nt <= 1) { fn(ctx, 0, count); return; }
    qr_range_job j = {fn, ctx, count};
    qr_parallel(qr__items_task, &j, nt);
}

static inline void qr_par_items(qr_range_fn fn, void *ctx, int64_t count, int64_t work) {
    qr_par_items_grain(fn, ctx, count, work, QR_PAR_GRAIN);
}

#endif
