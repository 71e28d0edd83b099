/* quant_avx2.c - the AVX2/FMA/F16C kernels of quant.c: integer block dot products of
 * quantized weights with q8 activation rows (maddubs/madd, the sign trick for signed pairs),
 * the F16 dot product, the q8 activation quantizer (bit-identical to the portable one) and
 * F16 conversion. Called only when cpu.c reports AVX2 + FMA and F16C is present. */
#include <immintrin.h>
#include <string.h>

#include "quant_internal.h"
#include "quant_x86.h"

/* two floats (any alignment) into lanes 0, 1; lanes 2, 3 zero */
static inline __m128 load2f(const float *p) {
    return _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)p));
}

/* 8 int32 partial sums of signed a . signed b (32 int8 each; |a| <= 128, |b| <= 127) */
static inline __m256 dot_ss(__m256i a, __m256i b) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
/* unsigned a (0..15) . signed b */
static inline __m256 dot_us(__m256i a, __m256i b) {
    __m256i p = _mm256_maddubs_epi16(a, b);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
/* 16 bytes of nibbles -> 32 bytes 0..15: low nibbles in the low lane (elements 0..15) */
static inline __m256i unpack_nibbles(const uint8_t *p) {
    __m128i raw = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

#define QR_ALWAYS_INLINE static inline __attribute__((always_inline))

/* How far ahead in a decode weight stream to prefetch: about 2 KB (DRAM latency at one
 * thread's streaming rate); nearer left cold q8_0 and q4 weights at 14-15 GB/s a thread,
 * this reaches a plain read's 16. */
#define QR_PF_AHEAD 2048

/* Q8_0 (34-byte blocks: fp16 d, 32 int8): one weight row against MX q8 rows. */
#define QR_Q8_0_BYTES 34
QR_ALWAYS_INLINE void qdot8_n(int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                              float *out) {
    __m256 acc[QR_QMAX_ROWS];
    const float *d[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        acc[j] = _mm256_setzero_ps();
        d[j] = (const float *)(xq + j * xs + nb * QR_QK);
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * QR_Q8_0_BYTES;
        _mm_prefetch((const char *)(wb + 8 * QR_Q8_0_BYTES), _MM_HINT_T0);
        const float dw = qr__h2f(wb);
        const __m256i qw = _mm256_loadu_si256((const __m256i *)(wb + 2));
        for (int j = 0; j < MX; j++) {
            __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + j * xs + b * QR_QK));
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * d[j][b]), dot_ss(qw, qx), acc[j]);
        }
    }
    for (int j = 0; j < MX; j++) out[j] = qr__hsum256(acc[j]);
}

/* Decode (one activation row) is the memory-bound case: four blocks a step, four
 * accumulators, so the FMA latency never limits the weight stream; returns 8 lanes whose sum
 * is the row's dot (summed eight rows at a time by qrows8). */
QR_ALWAYS_INLINE __m256 qdot8_1v(int64_t nb, const uint8_t *w, const uint8_t *xq) {
    const size_t bs = QR_Q8_0_BYTES;
    const float *d = (const float *)(xq + nb * QR_QK);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const char *ahead = (const char *)(w + b * bs + QR_PF_AHEAD);   /* 4 blocks: 136 B */
        _mm_prefetch(ahead, _MM_HINT_T0);
        _mm_prefetch(ahead + 64, _MM_HINT_T0);
        _mm_prefetch(ahead + 128, _MM_HINT_T0);
        for (int u = 0; u < 4; u++) {
            const uint8_t *wb = w + (b + u) * bs;
            __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + (b + u) * QR_QK));
            __m256 p = dot_ss(_mm256_loadu_si256((const __m256i *)(wb + 2)), qx);
            acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(qr__h2f(wb) * d[b + u]), p, acc[u]);
        }
    }
    for (; b < nb; b++) {
        const uint8_t *wb = w + b * bs;
        __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + b * QR_QK));
        __m256 p = dot_ss(_mm256_loadu_si256((const __m256i *)(wb + 2)), qx);
        acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(qr__h2f(wb) * d[b]), p, acc[0]);
    }
    return _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
}

/* blocks b and b + 1 of a Q4 row (w0: block b) against MX q8 rows in the paired layout */
QR_ALWAYS_INLINE void q4_pair(int fmt, int MX, const uint8_t *w0, const uint8_t *xq, size_t xs,
                              int64_t b, const float *const *d, const float *const *sx,
                              __m256 acc[][2], int u, __m128 *corr) {
    const size_t bs = fmt == 1 ? 18 : 20, off = fmt == 1 ? 2 : 4;
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const __m256i bcast2 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const uint8_t *w1 = w0 + bs;
    _mm_prefetch((const char *)(w0 + 12 * bs), _MM_HINT_T0);
    __m256i raw = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(w0 + off))),
        _mm_loadu_si128((const __m128i *)(w1 + off)), 1);
    __m256i lo = _mm256_and_si256(raw, m4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    __m128 dw2, cw2;   /* [d0, d1, ...] and the correction factor [c0, c1, ...] */
    if (fmt == 1) {
        uint16_t h0, h1;
        memcpy(&h0, w0, 2);
        memcpy(&h1, w1, 2);
        dw2 = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
        cw2 = dw2;
    } else {
        uint32_t a0, a1;
        memcpy(&a0, w0, 4);
        memcpy(&a1, w1, 4);
        __m128 dm = _mm_cvtph_ps(_mm_cvtsi64_si128((long long)((uint64_t)a0 | (uint64_t)a1 << 32)));
        dw2 = _mm_shuffle_ps(dm, dm, _MM_SHUFFLE(3, 1, 2, 0));   /* d0 d1 m0 m1 */
        cw2 = _mm_movehl_ps(dw2, dw2);                          /* m0 m1 */
    }
    for (int j = 0; j < MX; j++) {
        const uint8_t *q = xq + j * xs + b * QR_QK;
        __m256i pa = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q));
        __m256i pb = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q + 32)));
        __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_add_epi16(pa, pb), ones));
        __m128 sc = _mm_mul_ps(dw2, load2f(d[j] + b));
        __m256 scv = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(sc), bcast2);
        acc[j][u] = _mm256_fmadd_ps(scv, p, acc[j][u]);
        corr[j] = _mm_fmadd_ps(cw2, load2f(sx[j] + b),
                               corr[j]);
    }
}

/* Q4_0 / Q4_1 (FMT 1 / 2) against MX q8 rows in the paired layout (see quant_internal.h):
 * two weight blocks a step, their nibble bytes in one 256-bit register (block b in the low
 * lane, b + 1 in the high lane), so each unpack, maddubs, madd, convert and FMA serves two
 * blocks. Nibbles are used unsigned (0..15); Q4_0's -8 is applied through the activation
 * sums: sum d_w d_x (q - 8) . x = sum d_w d_x q . x - 8 sum d_w s_x. */
QR_ALWAYS_INLINE void qdot_q4(int fmt, int MX, int64_t nb, const uint8_t *w, const uint8_t *xq,
                              size_t xs, float *out) {
    const size_t bs = fmt == 1 ? 18 : 20, off = fmt == 1 ? 2 : 4;
    __m256 acc[QR_QMAX_ROWS][2];
    __m128 corr[QR_QMAX_ROWS];
    const float *d[QR_QMAX_ROWS], *sx[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        acc[j][0] = acc[j][1] = _mm256_setzero_ps();
        corr[j] = _mm_setzero_ps();
        d[j] = (const float *)(xq + j * xs + nb * QR_QK);
        sx[j] = d[j] + nb;
    }
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {   /* two pairs, one accumulator set each (registers) */
        q4_pair(fmt, MX, w + b * bs, xq, xs, b, d, sx, acc, 0, corr);
        q4_pair(fmt, MX, w + (b + 2) * bs, xq, xs, b + 2, d, sx, acc, 1, corr);
    }
    if (b + 2 <= nb) {
        q4_pair(fmt, MX, w + b * bs, xq, xs, b, d, sx, acc, 0, corr);
        b += 2;
    }
    float cs[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        __m128 c = corr[j];
        cs[j] = _mm_cvtss_f32(c) + _mm_cvtss_f32(_mm_shuffle_ps(c, c, 1));
    }
    if (b < nb) {   /* an odd last block, natural order */
        const uint8_t *wb = w + b * bs;
        __m256i qw = unpack_nibbles(wb + off);
        float dw = qr__h2f(wb), cw = fmt == 1 ? dw : qr__h2f(wb + 2);
        for (int j = 0; j < MX; j++) {
            __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + j * xs + b * QR_QK));
            acc[j][0] = _mm256_fmadd_ps(_mm256_set1_ps(dw * d[j][b]), dot_us(qw, qx), acc[j][0]);
            cs[j] += cw * sx[j][b];
        }
    }
    for (int j = 0; j < MX; j++)
        out[j] = qr__hsum256(_mm256_add_ps(acc[j][0], acc[j][1])) + (fmt == 1 ? -8.0f : 1.0f) * cs[j];
}

#define QDOT4(name, fmt)                                                                    \
    void name(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) { \
        switch (mx) {                                                                       \
        case 1: qdot_q4(fmt, 1, nb, w, xq, xs, out); break;                                 \
        case 2: qdot_q4(fmt, 2, nb, w, xq, xs, out); break;                                 \
        case 3: qdot_q4(fmt, 3, nb, w, xq, xs, out); break;                                 \
        default: qdot_q4(fmt, 4, nb, w, xq, xs, out); break;                                \
        }                                                                                   \
    }
QDOT4(qr__qdot_q4_0_avx2, 1)
QDOT4(qr__qdot_q4_1_avx2, 2)

void qr__qdot_q8_0_avx2(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx,
                        float *out) {
    switch (mx) {
    case 1: out[0] = qr__hsum256(qdot8_1v(nb, w, xq)); break;
    case 2: qdot8_n(2, nb, w, xq, xs, out); break;
    case 3: qdot8_n(3, nb, w, xq, xs, out); break;
    default: qdot8_n(4, nb, w, xq, xs, out); break;
    }
}


QR_ALWAYS_INLINE void fdot_n(int MX, int64_t k, const uint16_t *w, const float *x, int64_t ldx,
                             float *out) {
    enum { NA = 4 };   /* accumulators a row: 4 independent FMA chains (MX = 1), else 2 */
    const int na = MX == 1 ? 4 : 2;
    __m256 acc[QR_QMAX_ROWS][NA];
    for (int j = 0; j < MX; j++)
        for (int a = 0; a < na; a++) acc[j][a] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 * na <= k; i += 8 * na) {
        _mm_prefetch((const char *)(w + i + 256), _MM_HINT_T0);
        for (int a = 0; a < na; a++) {
            __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8 * a)));
            for (int j = 0; j < MX; j++)
                acc[j][a] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * ldx + i + 8 * a),
                                            acc[j][a]);
        }
    }
    for (; i + 8 <= k; i += 8) {
        __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i)));
        for (int j = 0; j < MX; j++)
            acc[j][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * ldx + i), acc[j][0]);
    }
    for (int j = 0; j < MX; j++) {
        __m256 t = acc[j][0];
        for (int a = 1; a < na; a++) t = _mm256_add_ps(t, acc[j][a]);
        float s = qr__hsum256(t);
        for (int64_t r = i; r < k; r++) s += _cvtsh_ss(w[r]) * x[j * ldx + r];
        out[j] = s;
    }
}

void qr__fdot_f16_avx2(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx,
                       float *out) {
    switch (mx) {
    case 1: fdot_n(1, k, w, x, ldx, out); break;
    case 2: fdot_n(2, k, w, x, ldx, out); break;
    case 3: fdot_n(3, k, w, x, ldx, out); break;
    default: fdot_n(4, k, w, x, ldx, out); break;
    }
}

/* Decode rows of a Q4 weight (FMT 1: Q4_0, 2: Q4_1) against one q8 row in the paired layout.
 * The rows go one after another, so the weight is one forward stream, prefetched
 * QR_PF_AHEAD bytes on: DRAM and the hardware prefetcher keep up with one stream, not with
 * several interleaved rows (four rows at a time streamed a 1536-wide weight at 9-12 GB/s a
 * thread where a plain read makes 16). Per block quad:
 *   f    = [d0 c0 d2 c2 | d1 c1 d3 c3]   (c = m for Q4_1, d for Q4_0: the nibble-offset term)
 *   X    = [x0 s0 x2 s2 | x1 s1 x3 s3]   (activation scale and scaled sum of each block)
 *   prod = f * X; the even lanes scale the integer dot products (an in-lane broadcast, as each
 *   half holds the block whose nibbles its lane carries), the odd lanes sum into the offset
 *   term (Q4_0's -8 applied at the end).
 * A row ends as 8 lanes; eight rows' lanes are summed at once (hsum8x: six hadds), since a
 * 576-wide row's own horizontal sums and tail cost a fifth of its work (decode step -8%). */
QR_ALWAYS_INLINE __m128i q4_scales2(int fmt, const uint8_t *p0, const uint8_t *p1) {
    if (fmt == 2) return _mm_unpacklo_epi32(_mm_loadu_si32(p0), _mm_loadu_si32(p1));
    __m128i d = _mm_unpacklo_epi16(_mm_loadu_si16(p0), _mm_loadu_si16(p1));   /* d0 d1 */
    return _mm_unpacklo_epi16(d, d);                                          /* d0 d0 d1 d1 */
}

/* int32 lanes of a block pair's nibbles (block b low, b + 1 high) . its q8 halves */
QR_ALWAYS_INLINE __m256 q4_pair_dot(const uint8_t *nib0, size_t bs, __m256i qlo, __m256i qhi) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i raw = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)nib0)),
        _mm_loadu_si128((const __m128i *)(nib0 + bs)), 1);
    __m256i pa = _mm256_maddubs_epi16(_mm256_and_si256(raw, m4), qlo);
    __m256i pb = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), qhi);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_add_epi16(pa, pb), _mm256_set1_epi16(1)));
}

/* One row; returns 8 lanes whose sum is the row's output (summed 8 rows at a time, below). */
QR_ALWAYS_INLINE __m256 qrow_q4(int fmt, int64_t nb, const uint8_t *p, const uint8_t *xq) {
    const size_t bs = fmt == 1 ? 18 : 20, off = fmt == 1 ? 2 : 4;
    const float *dx = (const float *)(xq + nb * QR_QK), *sx = dx + nb, *X = sx + nb;
    const __m256i *q = (const __m256i *)xq;
    const __m128i d_twice = _mm_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), corr = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4, p += 4 * bs, q += 4) {
        _mm_prefetch((const char *)(p + QR_PF_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 64), _MM_HINT_T0);
        /* each block's first 4 bytes: (d, m) for Q4_1; d and 2 nibble bytes for Q4_0 */
        __m128i f02 = _mm_unpacklo_epi32(_mm_loadu_si32(p), _mm_loadu_si32(p + 2 * bs));
        __m128i f13 = _mm_unpacklo_epi32(_mm_loadu_si32(p + bs), _mm_loadu_si32(p + 3 * bs));
        __m128i f = _mm_unpacklo_epi64(f02, f13);
        if (fmt == 1) f = _mm_shuffle_epi8(f, d_twice);   /* Q4_0: [d0 d0 d2 d2 ...] */
        __m256 prod = _mm256_mul_ps(_mm256_cvtph_ps(f), _mm256_loadu_ps(X + 2 * b));
        corr = _mm256_add_ps(corr, prod);
        acc0 = _mm256_fmadd_ps(_mm256_permute_ps(prod, 0x00),
                               q4_pair_dot(p + off, bs, _mm256_loadu_si256(q),
                                           _mm256_loadu_si256(q + 1)), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_permute_ps(prod, 0xaa),
                               q4_pair_dot(p + 2 * bs + off, bs, _mm256_loadu_si256(q + 2),
                                           _mm256_loadu_si256(q + 3)), acc1);
    }
    if (b + 2 <= nb) {   /* a last pair: f = [d0 c0 d1 c1], X = [x0 s0 x1 s1] */
        __m128 pr = _mm_mul_ps(_mm_cvtph_ps(q4_scales2(fmt, p, p + bs)),
                               _mm_unpacklo_ps(load2f(dx + b), load2f(sx + b)));
        __m256 sc = _mm256_set_m128(_mm_permute_ps(pr, 0xaa), _mm_permute_ps(pr, 0x00));
        acc0 = _mm256_fmadd_ps(sc, q4_pair_dot(p + off, bs, _mm256_loadu_si256(q),
                                               _mm256_loadu_si256(q + 1)), acc0);
        corr = _mm256_add_ps(corr, _mm256_zextps128_ps256(pr));
        b += 2;
        p += 2 * bs;
    }
    /* the offset term: the odd lanes of corr (c * s), times 1 (Q4_1) or -8 (Q4_0) */
    const __m256 odd = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
    const __m256 sign = _mm256_set1_ps(fmt == 1 ? -8.0f : 1.0f);
    __m256 v = _mm256_fmadd_ps(_mm256_and_ps(corr, odd), sign, _mm256_add_ps(acc0, acc1));
    if (b < nb) {   /* an odd last block, natural order */
        __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + b * QR_QK));
        v = _mm256_fmadd_ps(_mm256_set1_ps(qr__h2f(p) * dx[b]), dot_us(unpack_nibbles(p + off), qx), v);
        const float cs = (fmt == 1 ? qr__h2f(p) : qr__h2f(p + 2)) * sx[b];
        v = _mm256_fmadd_ps(_mm256_setr_ps(cs, 0, 0, 0, 0, 0, 0, 0), sign, v);
    }
    return v;
}

/* Decode rows of a Q8_0 (FMT 0) or Q4 weight against one q8 row: each row as 8 lanes
 * (qdot8_1v, qrow_q4), eight rows' lanes summed at once by hsum8x. */
QR_ALWAYS_INLINE void qrows8(int fmt, int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                             const uint8_t *xq, float *y) {
    qr__prefetch_head(w, (size_t)nrows * wrow);
    for (int64_t r = 0; r < nrows; r += 8) {
        const int n = nrows - r < 8 ? (int)(nrows - r) : 8;
        __m256 v[8];
        for (int i = 0; i < 8; i++) {
            const uint8_t *row = w + (r + i) * wrow;
            v[i] = i >= n ? _mm256_setzero_ps()
                 : fmt == 0 ? qdot8_1v(nb, row, xq) : qrow_q4(fmt, nb, row, xq);
        }
        float out[8];
        _mm256_storeu_ps(out, qr__hsum8x(v));
        memcpy(y + r, out, (size_t)n * sizeof(float));
    }
}

void qr__qrows_q8_0_avx2(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                         const uint8_t *xq, float *y) {
    qrows8(0, nb, w, wrow, nrows, xq, y);
}
void qr__qrows_q4_0_avx2(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                         const uint8_t *xq, float *y) {
    qrows8(1, nb, w, wrow, nrows, xq, y);
}
void qr__qrows_q4_1_avx2(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                         const uint8_t *xq, float *y) {
    qrows8(2, nb, w, wrow, nrows, xq, y);
}

void qr__qrows_f16_avx2(int64_t k, const uint8_t *w, size_t wrow, int64_t nrows,
                        const uint8_t *x, float *y) {
    for (int64_t r = 0; r < nrows; r++)
        fdot_n(1, k, (const uint16_t *)(w + r * wrow), (const float *)x, 0, y + r);
}

/* Same operations as quantize_q8_row in quant.c: amax, d = amax / 127, id = 1 / d,
 * q = |v| truncated + (frac >= 0.5), signed; s = d * sum(q). */
void qr__quantize_q8_row_avx2(const float *x, int64_t k, uint8_t *row, int paired) {
    int64_t nb = k / QR_QK;
    float *d = (float *)(row + nb * QR_QK), *s = d + nb;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * QR_QK;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], absmask));
        }
        __m256 fin = _mm256_cmp_ps(_mm256_sub_ps(v[0], v[0]), _mm256_setzero_ps(), _CMP_EQ_OQ);
        for (int i = 1; i < 4; i++)
            fin = _mm256_and_ps(fin, _mm256_cmp_ps(_mm256_sub_ps(v[i], v[i]), _mm256_setzero_ps(),
                                                   _CMP_EQ_OQ));
        if (_mm256_movemask_ps(fin) != 0xff) {   /* NaN / inf, as the portable version */
            uint8_t *q0 = row + b * QR_QK;
            if (paired && (b | 1) < nb) {
                uint8_t *base = row + (b & ~(int64_t)1) * QR_QK + (b & 1) * 16;
                memset(base, 0, 16);
                memset(base + 32, 0, 16);
            } else {
                memset(q0, 0, QR_QK);
            }
            d[b] = s[b] = __builtin_nanf("");
            continue;
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i qi[4];
        __m256i sum = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            __m256 t = _mm256_mul_ps(v[i], vid);
            __m256 a = _mm256_and_ps(t, absmask);
            __m256 tr = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 r = _mm256_add_ps(tr, _mm256_and_ps(_mm256_cmp_ps(_mm256_sub_ps(a, tr), half,
                                                                     _CMP_GE_OQ), one));
            r = _mm256_or_ps(r, _mm256_andnot_ps(absmask, t));   /* the sign of v */
            qi[i] = _mm256_cvttps_epi32(r);
            sum = _mm256_add_epi32(sum, qi[i]);
        }
        /* pack 32 int32 -> 32 int8 in order */
        __m256i p01 = _mm256_packs_epi32(qi[0], qi[1]), p23 = _mm256_packs_epi32(qi[2], qi[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        if (paired && (b | 1) < nb) {   /* pair base, then half j of block b at 32j + 16(b&1) */
            uint8_t *base = row + (b & ~(int64_t)1) * QR_QK + (b & 1) * 16;
            _mm_storeu_si128((__m128i *)base, _mm256_castsi256_si128(p));
            _mm_storeu_si128((__m128i *)(base + 32), _mm256_extracti128_si256(p, 1));
        } else {
            _mm256_storeu_si256((__m256i *)(row + b * QR_QK), p);
        }
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        d[b] = db;
        s[b] = db * (float)_mm_cvtsi128_si32(s4);
    }
    if (paired) {   /* X: each whole quad's scales as [d0 s0 d2 s2 | d1 s1 d3 s3] */
        float *X = s + nb;
        for (int64_t b = 0; b + 4 <= nb; b += 4, X += 8) {
            __m128 dq = _mm_loadu_ps(d + b), sq = _mm_loadu_ps(s + b);
            /* t0 = [d0 s0 d1 s1], t1 = [d2 s2 d3 s3] */
            __m128 t0 = _mm_unpacklo_ps(dq, sq), t1 = _mm_unpackhi_ps(dq, sq);
            _mm_storeu_ps(X, _mm_movelh_ps(t0, t1));
            _mm_storeu_ps(X + 4, _mm_movehl_ps(t1, t0));
        }
    }
}

void qr__f16_to_f32_avx2(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = _cvtsh_ss(x[i]);
}

void qr__f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}
