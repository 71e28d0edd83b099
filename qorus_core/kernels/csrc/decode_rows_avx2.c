/* decode_rows_avx2.c - the AVX2 (+ FMA, F16C) products of a batched decode step
 * (decode_rows.c's qr_linears_rows_f32): a Q8_0 / Q4_0 / Q4_1 weight against M activation
 * rows, each weight row's blocks loaded and unpacked once for all of them.
 *
 * Each row gets, lane for lane, the arithmetic of quant_avx2.c's decode kernels (qrows8:
 * qdot8_1v for Q8_0, qrow_q4 for Q4, eight weight rows' lanes summed by qr__hsum8x): its q8
 * row is the same (qr__quantize_q8_row_avx2: natural for Q8_0, paired for Q4), and every lane
 * the same integer sums, the same scale products and the same sums and FMAs in the same order
 * (four accumulators for Q8_0, acc0 / acc1 / corr for Q4, the same pair and odd-block tails),
 * so y[j] is bit for bit what qr_matmul_<fmt>_f32 gives row j alone. The acts buffer: M q8
 * rows, qr__mrows_stride_avx2 bytes apart. decode_rows.c calls it only where
 * qr__quant_tier() is the AVX2 tier (AVX2 + FMA + F16C). */
#include <immintrin.h>
#include <string.h>

#include "decode_rows_internal.h"
#include "qorus.h"
#include "quant_internal.h"
#include "quant_x86.h"

#define QR_AI static inline __attribute__((always_inline))
#define QR_PF_AHEAD 2048   /* the decode kernels' prefetch distance in the weight stream */
#define QR_MX 2            /* activation rows a weight row serves at once (16 ymm registers) */

static size_t row_stride(int64_t nb) {   /* q | d | s | X (paired layout), as quant.c's */
    return ((size_t)nb * 48 + 63) & ~(size_t)63;
}

size_t qr__mrows_acts_bytes_avx2(int qtype, int64_t M, int64_t K) {
    (void)qtype;
    return (size_t)M * row_stride(K / QR_QK);
}

void qr__mrows_acts_avx2(int qtype, const float *x, int64_t M, int64_t K, uint8_t *acts) {
    const size_t xs = row_stride(K / QR_QK);
    for (int64_t j = 0; j < M; j++)
        qr__quantize_q8_row_avx2(x + j * K, K, acts + (size_t)j * xs, qtype != QR_QTYPE_Q8_0);
}

static inline __m128 load2f(const float *p) {   /* two floats into lanes 0, 1 */
    return _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)p));
}

/* ------------------------------------------------------------------ Q8_0 (natural layout) */
#define QR_Q8_BS 34

/* 8 int32 partial sums of |w| . (x signed like w), as floats: quant_avx2.c's dot_ss(w, x) */
QR_AI __m256 dot_ss(__m256i aw, __m256i w, __m256i x) {
    __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* One Q8_0 weight row against MX q8 rows: res[j] as qdot8_1v gives row j (four blocks a
 * step into four accumulators, the last blocks into the first, then summed in pairs). */
QR_AI void q8_mrow(int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                   __m256 *res) {
    __m256 acc[QR_MX][4];
    const float *d[QR_MX];
    for (int j = 0; j < MX; j++) {
        for (int u = 0; u < 4; u++) acc[j][u] = _mm256_setzero_ps();
        d[j] = (const float *)(xq + j * xs + nb * QR_QK);
    }
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const char *ahead = (const char *)(w + b * QR_Q8_BS + QR_PF_AHEAD);   /* 136 B */
        _mm_prefetch(ahead, _MM_HINT_T0);
        _mm_prefetch(ahead + 64, _MM_HINT_T0);
        _mm_prefetch(ahead + 128, _MM_HINT_T0);
        for (int u = 0; u < 4; u++) {
            const uint8_t *wb = w + (b + u) * QR_Q8_BS;
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(wb + 2));
            const __m256i aw = _mm256_sign_epi8(wv, wv);
            const float dw = qr__h2f(wb);
            for (int j = 0; j < MX; j++) {
                __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + j * xs + (b + u) * QR_QK));
                acc[j][u] = _mm256_fmadd_ps(_mm256_set1_ps(dw * d[j][b + u]),
                                            dot_ss(aw, wv, qx), acc[j][u]);
            }
        }
    }
    for (; b < nb; b++) {
        const uint8_t *wb = w + b * QR_Q8_BS;
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(wb + 2));
        const __m256i aw = _mm256_sign_epi8(wv, wv);
        const float dw = qr__h2f(wb);
        for (int j = 0; j < MX; j++) {
            __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + j * xs + b * QR_QK));
            acc[j][0] = _mm256_fmadd_ps(_mm256_set1_ps(dw * d[j][b]), dot_ss(aw, wv, qx),
                                        acc[j][0]);
        }
    }
    for (int j = 0; j < MX; j++)
        res[j] = _mm256_add_ps(_mm256_add_ps(acc[j][0], acc[j][1]),
                               _mm256_add_ps(acc[j][2], acc[j][3]));
}

/* ------------------------------------------------------------------ Q4_0 / Q4_1 (paired) */
/* a block pair's nibbles (block b low lane, b + 1 high), unpacked once for every row */
typedef struct { __m256i lo, hi; } nib2;

QR_AI nib2 load_pair(const uint8_t *nib0, size_t bs) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i raw = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)nib0)),
        _mm_loadu_si128((const __m128i *)(nib0 + bs)), 1);
    nib2 n = {_mm256_and_si256(raw, m4), _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4)};
    return n;
}

/* quant_avx2.c's q4_pair_dot: int32 lanes of the pair's nibbles . its q8 halves, as floats */
QR_AI __m256 pair_dot(nib2 n, __m256i qlo, __m256i qhi) {
    __m256i pa = _mm256_maddubs_epi16(n.lo, qlo);
    __m256i pb = _mm256_maddubs_epi16(n.hi, qhi);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_add_epi16(pa, pb), _mm256_set1_epi16(1)));
}

QR_AI __m128i q4_scales2(int fmt, const uint8_t *p0, const uint8_t *p1) {
    if (fmt == 2) return _mm_unpacklo_epi32(_mm_loadu_si32(p0), _mm_loadu_si32(p1));
    __m128i d = _mm_unpacklo_epi16(_mm_loadu_si16(p0), _mm_loadu_si16(p1));   /* d0 d1 */
    return _mm_unpacklo_epi16(d, d);                                          /* d0 d0 d1 d1 */
}

/* One Q4 weight row (FMT 1: Q4_0, 2: Q4_1) against MX q8 rows (paired layout): res[j] as
 * quant_avx2.c's qrow_q4 gives row j alone. */
QR_AI void q4_mrow(int FMT, int MX, int64_t nb, const uint8_t *p, const uint8_t *xq, size_t xs,
                   __m256 *res) {
    const size_t bs = FMT == 1 ? 18 : 20, off = FMT == 1 ? 2 : 4;
    const __m128i d_twice = _mm_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
    __m256 acc0[QR_MX], acc1[QR_MX], corr[QR_MX];
    for (int j = 0; j < MX; j++) acc0[j] = acc1[j] = corr[j] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4, p += 4 * bs) {
        _mm_prefetch((const char *)(p + QR_PF_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 64), _MM_HINT_T0);
        __m128i f02 = _mm_unpacklo_epi32(_mm_loadu_si32(p), _mm_loadu_si32(p + 2 * bs));
        __m128i f13 = _mm_unpacklo_epi32(_mm_loadu_si32(p + bs), _mm_loadu_si32(p + 3 * bs));
        __m128i fi = _mm_unpacklo_epi64(f02, f13);
        if (FMT == 1) fi = _mm_shuffle_epi8(fi, d_twice);   /* Q4_0: [d0 d0 d2 d2 ...] */
        const __m256 f = _mm256_cvtph_ps(fi);
        const nib2 n01 = load_pair(p + off, bs), n23 = load_pair(p + 2 * bs + off, bs);
        for (int j = 0; j < MX; j++) {
            const uint8_t *r = xq + j * xs;
            const float *X = (const float *)(r + nb * QR_QK) + 2 * nb;
            const __m256i *q = (const __m256i *)(r + b * QR_QK);
            __m256 prod = _mm256_mul_ps(f, _mm256_loadu_ps(X + 2 * b));
            corr[j] = _mm256_add_ps(corr[j], prod);
            acc0[j] = _mm256_fmadd_ps(_mm256_permute_ps(prod, 0x00),
                                      pair_dot(n01, _mm256_loadu_si256(q),
                                               _mm256_loadu_si256(q + 1)), acc0[j]);
            acc1[j] = _mm256_fmadd_ps(_mm256_permute_ps(prod, 0xaa),
                                      pair_dot(n23, _mm256_loadu_si256(q + 2),
                                               _mm256_loadu_si256(q + 3)), acc1[j]);
        }
    }
    if (b + 2 <= nb) {   /* a last pair: f = [d0 c0 d1 c1], X = [x0 s0 x1 s1] */
        const __m128 f2 = _mm_cvtph_ps(q4_scales2(FMT, p, p + bs));
        const nib2 n01 = load_pair(p + off, bs);
        for (int j = 0; j < MX; j++) {
            const uint8_t *r = xq + j * xs;
            const float *dx = (const float *)(r + nb * QR_QK), *sx = dx + nb;
            const __m256i *q = (const __m256i *)(r + b * QR_QK);
            __m128 pr = _mm_mul_ps(f2, _mm_unpacklo_ps(load2f(dx + b), load2f(sx + b)));
            __m256 sc = _mm256_set_m128(_mm_permute_ps(pr, 0xaa), _mm_permute_ps(pr, 0x00));
            acc0[j] = _mm256_fmadd_ps(sc, pair_dot(n01, _mm256_loadu_si256(q),
                                                   _mm256_loadu_si256(q + 1)), acc0[j]);
            corr[j] = _mm256_add_ps(corr[j], _mm256_zextps128_ps256(pr));
        }
        b += 2;
        p += 2 * bs;
    }
    /* the offset term: the odd lanes of corr (c * s), times 1 (Q4_1) or -8 (Q4_0) */
    const __m256 odd = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
    const __m256 sign = _mm256_set1_ps(FMT == 1 ? -8.0f : 1.0f);
    for (int j = 0; j < MX; j++)
        res[j] = _mm256_fmadd_ps(_mm256_and_ps(corr[j], odd), sign,
                                 _mm256_add_ps(acc0[j], acc1[j]));
    if (b < nb) {   /* an odd last block, natural order */
        const __m256i m4 = _mm256_set1_epi8(15);
        __m128i raw = _mm_loadu_si128((const __m128i *)(p + off));
        const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
        const float dw = qr__h2f(p), cw = FMT == 1 ? dw : qr__h2f(p + 2);
        for (int j = 0; j < MX; j++) {
            const uint8_t *r = xq + j * xs;
            const float *dx = (const float *)(r + nb * QR_QK), *sx = dx + nb;
            __m256i qx = _mm256_loadu_si256((const __m256i *)(r + b * QR_QK));
            __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(nib, qx),
                                                              _mm256_set1_epi16(1)));
            res[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[b]), dot, res[j]);
            res[j] = _mm256_fmadd_ps(_mm256_setr_ps(cw * sx[b], 0, 0, 0, 0, 0, 0, 0), sign,
                                     res[j]);
        }
    }
}

/* ------------------------------------------------------------------ the row loops */
QR_AI void mrow_n(int fmt, int mx, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                  __m256 *res) {
    if (mx == 1) {
        if (fmt == 0) q8_mrow(1, nb, w, xq, xs, res);
        else if (fmt == 1) q4_mrow(1, 1, nb, w, xq, xs, res);
        else q4_mrow(2, 1, nb, w, xq, xs, res);
    } else {
        if (fmt == 0) q8_mrow(2, nb, w, xq, xs, res);
        else if (fmt == 1) q4_mrow(1, 2, nb, w, xq, xs, res);
        else q4_mrow(2, 2, nb, w, xq, xs, res);
    }
}

/* Weight rows in groups of eight, each against QR_MX activation rows at a time; each
 * activation row's lanes of the eight weight rows then summed by hsum8x, as qrows8 does. */
QR_AI void mrows(int fmt, int64_t nb, const uint8_t *w, size_t wrow, int64_t n,
                 const uint8_t *acts, int64_t M, float *y, int64_t ldy) {
    const size_t xs = row_stride(nb);
    qr__prefetch_head(w, (size_t)n * wrow);
    __m256 v[QR_MX][8];
    for (int64_t r = 0; r < n; r += 8) {
        const int nr = n - r < 8 ? (int)(n - r) : 8;
        for (int64_t j0 = 0; j0 < M; j0 += QR_MX) {
            const int mx = M - j0 < QR_MX ? (int)(M - j0) : QR_MX;
            const uint8_t *x0 = acts + (size_t)j0 * xs;
            for (int i = 0; i < 8; i++) {
                __m256 res[QR_MX];
                if (i < nr) mrow_n(fmt, mx, nb, w + (r + i) * wrow, x0, xs, res);
                for (int j = 0; j < mx; j++) v[j][i] = i < nr ? res[j] : _mm256_setzero_ps();
            }
            for (int j = 0; j < mx; j++) {
                float out[8];
                _mm256_storeu_ps(out, qr__hsum8x(v[j]));
                memcpy(y + (j0 + j) * ldy + r, out, (size_t)nr * sizeof(float));
            }
        }
    }
}

void qr__mrows_avx2(int qtype, int64_t nb, const uint8_t *w, size_t wrow, int64_t n,
                    const uint8_t *acts, int64_t M, float *y, int64_t ldy) {
    if (qtype == QR_QTYPE_Q8_0) mrows(0, nb, w, wrow, n, acts, M, y, ldy);
    else if (qtype == QR_QTYPE_Q4_0) mrows(1, nb, w, wrow, n, acts, M, y, ldy);
    else mrows(2, nb, w, wrow, n, acts, M, y, ldy);
}
