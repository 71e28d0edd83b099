/* quant_kq32_avx2.c - the AVX2/FMA/F16C kernels of quant_kformats.c's 32-value block formats
 * Q5_0, Q5_1 and IQ4_NL, and of BF16: qdot, rows1 and dequant_row as quant_kq_avx2.c describes
 * them (the arithmetic and the decode layouts are the same), entered through qr__kq32_avx2,
 * which quant_kq_avx2.c's table consults. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "quant_internal.h"
#include "quant_x86.h"
#include "qorus.h"

#ifdef QR_HAVE_AVX2_BUILD

#include "quant_kq_avx2.h"

static void act_xq4(const float *d, const float *s, int64_t nb, float *X) {
    for (int64_t b = 0; b + 4 <= nb; b += 4, X += 8) {
        __m128 dq = _mm_loadu_ps(d + b), sq = _mm_loadu_ps(s + b);
        __m128 t0 = _mm_unpacklo_ps(dq, sq), t1 = _mm_unpackhi_ps(dq, sq);
        _mm_storeu_ps(X, _mm_movelh_ps(t0, t1));
        _mm_storeu_ps(X + 4, _mm_movehl_ps(t1, t0));
    }
}

/* ================================================================== Q5_0, Q5_1, IQ4_NL
 * 32-value blocks (FMT 0: Q5_0 22 bytes d qh qs; 1: Q5_1 24 bytes d m qh qs; 2: IQ4_NL 18
 * bytes d qs). Q5 quants are used unsigned (0..31): Q5_0's -16 through the activation sums
 * (sum d_w d_x (q - 16) . x = sum d_w d_x q . x - 16 sum d_w s_x), Q5_1's m likewise (+ m s_x).
 * maddubs pairs: Q5 2 * 31 * 127 = 7874 (two added: 15748); IQ4_NL |KV| <= 127: 32258 (not
 * added: each madds on its own). */
#define P32_BS(fmt) ((size_t)((fmt) == 0 ? 22 : (fmt) == 1 ? 24 : 18))
#define P32_QS(fmt) ((size_t)((fmt) == 0 ? 6 : (fmt) == 1 ? 8 : 2))
#define P32_QH(fmt) ((size_t)((fmt) == 0 ? 2 : 4))

static inline __m256i kv_table(void) {
    return _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                            -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
}
static inline __m256i kv_abs_table(void) {
    return _mm256_setr_epi8(127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113,
                            127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113);
}

/* The fifth bits of a Q5 register as 0 / 16 a byte. qq: each lane's block qh as dwords
 * [qh, qh << 4, qh, qh << 4]; byte e of a lane tests qh bit 8m + k (its element; m = e / 8
 * + 2 * hi, k = e % 8) at bit k of dword 0's byte m (k >= 4) or bit k + 4 of dword 1's (k < 4):
 * every tested bit sits in 16..128, and min(., 16) makes it 16. */
QR_ALWAYS_INLINE __m256i q5_hbits(__m256i qq, int hi) {
    const __m256i idx = hi ? _mm256_setr_epi8(6, 6, 6, 6, 2, 2, 2, 2, 7, 7, 7, 7, 3, 3, 3, 3,
                                              6, 6, 6, 6, 2, 2, 2, 2, 7, 7, 7, 7, 3, 3, 3, 3)
                           : _mm256_setr_epi8(4, 4, 4, 4, 0, 0, 0, 0, 5, 5, 5, 5, 1, 1, 1, 1,
                                              4, 4, 4, 4, 0, 0, 0, 0, 5, 5, 5, 5, 1, 1, 1, 1);
    const __m256i sel = _mm256_setr_epi8(16, 32, 64, -128, 16, 32, 64, -128, 16, 32, 64, -128,
                                         16, 32, 64, -128, 16, 32, 64, -128, 16, 32, 64, -128,
                                         16, 32, 64, -128, 16, 32, 64, -128);
    return _mm256_min_epu8(_mm256_and_si256(_mm256_shuffle_epi8(qq, idx), sel),
                           _mm256_set1_epi8(16));
}
static inline __m256i q5_qq(__m256i qh2) {   /* dwords [qh, qh << 4, qh, qh << 4] a lane */
    return _mm256_sllv_epi32(qh2, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
}

/* One block in natural order: Q5 quants (0..31) or, for IQ4_NL, its values (KV, signed). */
QR_ALWAYS_INLINE __m256i p32_natural(int fmt, const uint8_t *wb) {
    __m128i raw = ld128(wb + P32_QS(fmt));
    __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
                                 _mm256_set1_epi8(15));
    if (fmt == 2) return _mm256_shuffle_epi8(kv_table(), v);
    /* lane 0 elements 0..15 (qh bytes 0, 1), lane 1 16..31 (bytes 2, 3) */
    const __m256i qq = q5_qq(bc32(wb + P32_QH(fmt)));
    const __m256i idx = _mm256_setr_epi8(4, 4, 4, 4, 0, 0, 0, 0, 5, 5, 5, 5, 1, 1, 1, 1,
                                         6, 6, 6, 6, 2, 2, 2, 2, 7, 7, 7, 7, 3, 3, 3, 3);
    const __m256i sel = _mm256_setr_epi8(16, 32, 64, -128, 16, 32, 64, -128, 16, 32, 64, -128,
                                         16, 32, 64, -128, 16, 32, 64, -128, 16, 32, 64, -128,
                                         16, 32, 64, -128, 16, 32, 64, -128);
    __m256i h = _mm256_min_epu8(_mm256_and_si256(_mm256_shuffle_epi8(qq, idx), sel),
                                _mm256_set1_epi8(16));
    return _mm256_or_si256(v, h);
}

/* 8 int32 lanes (as float) of a natural block . q8 block x */
QR_ALWAYS_INLINE __m256 p32_dot_natural(int fmt, __m256i wv, __m256i x) {
    if (fmt == 2)
        return sum16to32f(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(x, wv)));
    return sum16to32f(_mm256_maddubs_epi16(wv, x));
}

/* Blocks b, b + 1 (w0: block b) against the paired q8 halves xa (elements 0..15 of each) and
 * xb (16..31): one register of nibble bytes, block b in the low lane, b + 1 in the high (a blend
 * of two loads: port 5 is the scarce one). ax, made once a call: IQ4_NL's |x| (64 bytes a
 * pair: |x| . sign(v, x), v = KV[nibble], so each register costs a lookup and a sign); Q5_0's
 * 16 (x[2i] + x[2i + 1]) of each pair's two halves (32 bytes, int16: the 16 subtracted exactly,
 * before the float scale, as the portable kernel does). */
QR_ALWAYS_INLINE __m256 p32_pair(int fmt, const uint8_t *w0, __m256i xa, __m256i xb, const uint8_t *ax) {
    const size_t bs = P32_BS(fmt), qo = P32_QS(fmt);
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i raw = _mm256_blend_epi32(_mm256_castsi128_si256(ld128(w0 + qo)), ld256(w0 + bs + qo - 16), 0xf0);
    __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    if (fmt == 2) {
        const __m256i kv = kv_table();
        __m256i plo = _mm256_maddubs_epi16(ld256(ax), _mm256_sign_epi8(_mm256_shuffle_epi8(kv, lo), xa));
        __m256i phi = _mm256_maddubs_epi16(ld256(ax + 32), _mm256_sign_epi8(_mm256_shuffle_epi8(kv, hi), xb));
        const __m256i ones = _mm256_set1_epi16(1);
        return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(plo, ones),
                                                   _mm256_madd_epi16(phi, ones)));
    }
    const size_t ho = P32_QH(fmt);
    __m256i qq = q5_qq(_mm256_blend_epi32(bc32(w0 + ho), bc32(w0 + bs + ho), 0xf0));
    lo = _mm256_or_si256(lo, q5_hbits(qq, 0));
    hi = _mm256_or_si256(hi, q5_hbits(qq, 1));
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xa), _mm256_maddubs_epi16(hi, xb));
    if (fmt == 0) p = _mm256_sub_epi16(p, ld256(ax));   /* (q - 16) . x, |.| <= 23876 */
    return sum16to32f(p);
}

/* the scale words of blocks p0, p1: Q5_1 [d0 m0 d1 m1], else [d0 d0 d1 d1] */
QR_ALWAYS_INLINE __m128i p32_scales2(int fmt, const uint8_t *p0, const uint8_t *p1) {
    if (fmt == 1) return _mm_unpacklo_epi32(_mm_loadu_si32(p0), _mm_loadu_si32(p1));
    __m128i d = _mm_unpacklo_epi16(_mm_loadu_si16(p0), _mm_loadu_si16(p1));
    return _mm_unpacklo_epi16(d, d);
}

/* One decode row (as quant_avx2.c's qrow_q4): per block quad f = [d0 m0 d2 m2 | d1 m1 d3 m3]
 * (Q5_1; the others leave the odd lanes unused) times XQ4 = [x0 s0 x2 s2 | x1 s1 x3 s3]: the
 * even lanes scale the pair dot products (in-lane broadcast), the odd ones sum Q5_1's m s_x. */
QR_ALWAYS_INLINE __m256 row_p32(int fmt, int64_t nb, const uint8_t *p, const uint8_t *xq,
                                const uint8_t *xp, const float *X, const uint8_t *ax) {
    const size_t bs = P32_BS(fmt);
    const float *dx = (const float *)(xq + nb * QR_QK), *sx = dx + nb;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), corr = _mm256_setzero_ps();
    int64_t b = 0;
    const size_t axq = fmt == 2 ? 128 : 64;   /* ax bytes a quad */
    for (; b + 4 <= nb; b += 4, p += 4 * bs, xp += 128, ax += axq, X += 8) {
        _mm_prefetch((const char *)(p + QR_PF_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 64), _MM_HINT_T0);
        /* each block's first 4 bytes as dwords [b0 b2 b1 b3] */
        __m128i f02 = _mm_unpacklo_epi32(_mm_loadu_si32(p), _mm_loadu_si32(p + 2 * bs));
        __m128i f13 = _mm_unpacklo_epi32(_mm_loadu_si32(p + bs), _mm_loadu_si32(p + 3 * bs));
        __m128i f = _mm_unpacklo_epi64(f02, f13);
        __m256 prod = _mm256_mul_ps(_mm256_cvtph_ps(f), _mm256_loadu_ps(X));
        if (fmt == 1) corr = _mm256_add_ps(corr, prod);
        acc0 = _mm256_fmadd_ps(_mm256_permute_ps(prod, 0x00),
                               p32_pair(fmt, p, ld256(xp), ld256(xp + 32), ax), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_permute_ps(prod, 0xaa),
                               p32_pair(fmt, p + 2 * bs, ld256(xp + 64), ld256(xp + 96), ax + axq / 2), acc1);
    }
    if (b + 2 <= nb) {   /* a last pair: f = [d0 c0 d1 c1], X = [x0 s0 x1 s1] */
        __m128 pr = _mm_mul_ps(_mm_cvtph_ps(p32_scales2(fmt, p, p + bs)),
                               _mm_unpacklo_ps(load2f(dx + b), load2f(sx + b)));
        __m256 sc = _mm256_set_m128(_mm_permute_ps(pr, 0xaa), _mm_permute_ps(pr, 0x00));
        acc0 = _mm256_fmadd_ps(sc, p32_pair(fmt, p, ld256(xp), ld256(xp + 32), ax), acc0);
        if (fmt == 1) corr = _mm256_add_ps(corr, _mm256_zextps128_ps256(pr));
        b += 2;
        p += 2 * bs;
    }
    __m256 v = _mm256_add_ps(acc0, acc1);
    if (fmt == 1) {   /* Q5_1's m s_x: the odd lanes of corr */
        const __m256 odd = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
        v = _mm256_add_ps(_mm256_and_ps(corr, odd), v);
    }
    if (b < nb) {   /* an odd last block, natural order */
        __m256i qx = ld256(xq + b * QR_QK);
        v = _mm256_fmadd_ps(_mm256_set1_ps(qr__h2f(p) * dx[b]), p32_dot_natural(fmt, p32_natural(fmt, p), qx), v);
        if (fmt != 2) {
            const float cs = (fmt == 0 ? -16.0f * qr__h2f(p) : qr__h2f(p + 2)) * sx[b];
            v = _mm256_add_ps(v, _mm256_setr_ps(cs, 0, 0, 0, 0, 0, 0, 0));
        }
    }
    return v;
}

QR_ALWAYS_INLINE void rows_p32(int fmt, int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                               const uint8_t *xq, float *y) {
    kq_buf buf;   /* paired q 32, ax (IQ4_NL 32, Q5_0 16), XQ4 8 bytes a block */
    uint8_t *xp = kq_buf_get(&buf, nb, fmt == 2 ? 72 : fmt == 0 ? 56 : 40);
    if (!xp) {   /* no activation buffer: the portable kernel a row at a time */
        const qr_qdot_fn f = fmt == 0 ? qr__qdot_q5_0 : fmt == 1 ? qr__qdot_q5_1 : qr__qdot_iq4_nl;
        for (int64_t r = 0; r < nrows; r++) f(nb, w + r * wrow, xq, 0, 1, y + r);
        return;
    }
    uint8_t *ax = xp + 32 * nb;
    float *X = (float *)(ax + (fmt == 2 ? 32 * nb : fmt == 0 ? 16 * nb : 0));
    const float *d = (const float *)(xq + nb * QR_QK);
    act_paired(xq, nb, xp);
    for (int64_t i = 0; i < nb / 2; i++) {
        const __m256i xa = ld256(xp + 64 * i), xb = ld256(xp + 64 * i + 32);
        if (fmt == 2) {   /* |q| */
            _mm256_storeu_si256((__m256i *)(ax + 64 * i), _mm256_abs_epi8(xa));
            _mm256_storeu_si256((__m256i *)(ax + 64 * i + 32), _mm256_abs_epi8(xb));
        } else if (fmt == 0) {   /* 16 (pair sums of both halves) */
            const __m256i ones = _mm256_set1_epi8(1);
            __m256i t = _mm256_add_epi16(_mm256_maddubs_epi16(ones, xa), _mm256_maddubs_epi16(ones, xb));
            _mm256_storeu_si256((__m256i *)(ax + 32 * i), _mm256_slli_epi16(t, 4));
        }
    }
    act_xq4(d, d + nb, nb, X);
    KQ_ROWS8(row_p32(fmt, nb, row, xq, xp, X, ax));
    free(buf.heap);
}

/* qdot: natural layout, each block unpacked once for the MX rows; Q5_0 on its signed values
 * q - 16 (the sign trick: exact, as the portable kernel), Q5_1's m s_x added to the block's 8
 * lanes as m s_x / 8 each (exact) */
QR_ALWAYS_INLINE void qdot_p32(int MX, int fmt, int64_t nb, const uint8_t *w, const uint8_t *xq,
                               size_t xs, float *out) {
    const size_t bs = P32_BS(fmt);
    __m256 acc[QR_QMAX_ROWS];
    const float *d[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        acc[j] = _mm256_setzero_ps();
        d[j] = (const float *)(xq + j * xs + nb * QR_QK);
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * bs;
        _mm_prefetch((const char *)(wb + 8 * bs), _MM_HINT_T0);
        __m256i wv = p32_natural(fmt, wb);
        if (fmt == 0) wv = _mm256_sub_epi8(wv, _mm256_set1_epi8(16));   /* -16..15 */
        const __m256i aw = _mm256_abs_epi8(wv);
        const float dw = qr__h2f(wb);
        const __m256 cw = _mm256_set1_ps(fmt == 1 ? 0.125f * qr__h2f(wb + 2) : 0.0f);
        for (int j = 0; j < MX; j++) {
            __m256i qx = ld256(xq + j * xs + b * QR_QK);
            __m256 p = fmt == 1 ? sum16to32f(_mm256_maddubs_epi16(wv, qx))
                                : sum16to32f(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(qx, wv)));
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * d[j][b]), p, acc[j]);
            if (fmt == 1) acc[j] = _mm256_fmadd_ps(cw, _mm256_set1_ps(d[j][nb + b]), acc[j]);
        }
    }
    for (int j = 0; j < MX; j++) out[j] = qr__hsum256(acc[j]);
}

#define QDOT_P32(MX, fmt) qdot_p32(MX, fmt, nb, w, xq, xs, out)
static void qdot_q5_0(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) {
    QDOT_SWITCH(QDOT_P32, 0)
}
static void qdot_q5_1(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) {
    QDOT_SWITCH(QDOT_P32, 1)
}
static void qdot_iq4_nl(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) {
    QDOT_SWITCH(QDOT_P32, 2)
}
static void rows1_q5_0(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows, const uint8_t *xq, float *y) {
    rows_p32(0, nb, w, wrow, nrows, xq, y);
}
static void rows1_q5_1(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows, const uint8_t *xq, float *y) {
    rows_p32(1, nb, w, wrow, nrows, xq, y);
}
static void rows1_iq4_nl(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows, const uint8_t *xq, float *y) {
    rows_p32(2, nb, w, wrow, nrows, xq, y);
}

/* ------------------------------------------------------------------ dequantization helpers */
/* y[0..32) = scale * (float)(signed bytes of v) */
static inline void store32_i8(__m256i v, __m256 scale, float *y) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo)))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi)))));
}
/* y[0..32) = d * (float)q + m for unsigned bytes q (Q5_1: d * q exact, so one FMA rounds as
 * the portable multiply-then-add) */
static inline void store32_u8_fma(__m256i v, __m256 d, __m256 m, float *y) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(y, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), m));
    _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(lo, lo))), m));
    _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), m));
    _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(hi, hi))), m));
}

/* Q5_0: d * (float)(q - 16); Q5_1: d * q + m; IQ4_NL: d * KV (one rounding each) */
QR_ALWAYS_INLINE void dequant_p32(int fmt, const uint8_t *row, float *y, int64_t k) {
    const size_t bs = P32_BS(fmt);
    for (int64_t b = 0; b < k / QR_QK; b++, row += bs, y += QR_QK) {
        __m256i v = p32_natural(fmt, row);
        __m256 d = _mm256_set1_ps(qr__h2f(row));
        if (fmt == 1) store32_u8_fma(v, d, _mm256_set1_ps(qr__h2f(row + 2)), y);
        else store32_i8(fmt == 0 ? _mm256_sub_epi8(v, _mm256_set1_epi8(16)) : v, d, y);
    }
}
static void dequant_q5_0(const uint8_t *row, float *y, int64_t k) { dequant_p32(0, row, y, k); }
static void dequant_q5_1(const uint8_t *row, float *y, int64_t k) { dequant_p32(1, row, y, k); }
static void dequant_iq4_nl(const uint8_t *row, float *y, int64_t k) { dequant_p32(2, row, y, k); }

/* ================================================================== BF16 */
static inline __m256 bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(ld128(p)), 16));
}
static inline float bf16f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

QR_ALWAYS_INLINE void fdot_bf_n(int MX, int64_t k, const uint16_t *w, const float *x, int64_t ldx,
                                float *out) {
    enum { NA = 4 };
    const int na = MX == 1 ? 4 : 2;
    __m256 acc[QR_QMAX_ROWS][NA];
    for (int j = 0; j < MX; j++)
        for (int a = 0; a < na; a++) acc[j][a] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 * na <= k; i += 8 * na) {
        _mm_prefetch((const char *)(w + i + 512), _MM_HINT_T0);
        for (int a = 0; a < na; a++) {
            __m256 wv = bf16x8(w + i + 8 * a);
            for (int j = 0; j < MX; j++)
                acc[j][a] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * ldx + i + 8 * a), acc[j][a]);
        }
    }
    for (; i + 8 <= k; i += 8) {
        __m256 wv = bf16x8(w + i);
        for (int j = 0; j < MX; j++)
            acc[j][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * ldx + i), acc[j][0]);
    }
    for (int j = 0; j < MX; j++) {
        __m256 t = acc[j][0];
        for (int a = 1; a < na; a++) t = _mm256_add_ps(t, acc[j][a]);
        float s = qr__hsum256(t);
        for (int64_t r = i; r < k; r++) s += bf16f(w[r]) * x[j * ldx + r];
        out[j] = s;
    }
}
#define FDOT_BF(MX, unused) fdot_bf_n(MX, k, w, x, ldx, out)
static void fdot_bf16(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx, float *out) {
    QDOT_SWITCH(FDOT_BF, 0)
}
static void rows1_bf16(int64_t k, const uint8_t *w, size_t wrow, int64_t nrows, const uint8_t *x, float *y) {
    qr__prefetch_head(w, (size_t)nrows * wrow);
    for (int64_t r = 0; r < nrows; r++)
        fdot_bf_n(1, k, (const uint16_t *)(w + r * wrow), (const float *)x, 0, y + r);
}
static void dequant_bf16(const uint8_t *row, float *y, int64_t k) {
    const uint16_t *x = (const uint16_t *)row;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) _mm256_storeu_ps(y + i, bf16x8(x + i));
    for (; i < k; i++) y[i] = bf16f(x[i]);
}

/* ------------------------------------------------------------------ the table's part */
qr_kq_kernels qr__kq32_avx2(int qtype) {
    qr_kq_kernels k = {0};
    switch (qtype) {
    case QR_QTYPE_Q5_0: k.qdot = qdot_q5_0; k.rows1 = rows1_q5_0; k.dequant_row = dequant_q5_0; break;
    case QR_QTYPE_Q5_1: k.qdot = qdot_q5_1; k.rows1 = rows1_q5_1; k.dequant_row = dequant_q5_1; break;
    case QR_QTYPE_IQ4_NL: k.qdot = qdot_iq4_nl; k.rows1 = rows1_iq4_nl; k.dequant_row = dequant_iq4_nl; break;
    case QR_QTYPE_BF16: k.fdot = fdot_bf16; k.rows1 = rows1_bf16; k.dequant_row = dequant_bf16; break;
    default: break;
    }
    return k;
}

#endif
