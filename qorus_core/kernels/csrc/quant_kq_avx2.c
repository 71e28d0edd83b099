/* quant_kq_avx2.c - the AVX2/FMA/F16C kernels of quant_kformats.c's K-quants (Q2_K .. Q6_K)
 * here, of its 32-value formats (Q5_0, Q5_1, IQ4_NL) and BF16 in quant_kq32_avx2.c: the table
 * quant.c and quant_formats.c consult on this tier (quant_internal.h qr_kq_kernels). A format
 * without an entry runs its portable kernels.
 *
 * Per format: qdot (up to QR_QMAX_ROWS q8 rows in the natural layout: prompts through
 * matmul_q), rows1 (decode: one q8 row against a range of weight rows, the hot path) and
 * dequant_row (bit-identical to quant_kformats.c's block dequantizers: matmul_qf's panels,
 * embedding rows); BF16: fdot, rows1 (float activations) and dequant_row.
 *
 * Arithmetic. Integer block dot products are exact: maddubs (u8 x s8 -> s16 pair sums) only
 * where a pair cannot saturate (bounds at each kernel), madd to int32 with the sub-block scales
 * as int16, then float32 (|int| < 2^24, so the conversions are exact). Formats with an offset
 * (Q5_0's 16, Q3_K's 4, Q6_K's 32) use the unsigned quant and subtract the offset through the
 * activation sums (the q8 row's s, or per-16 sums made once a call); formats with signed values
 * use the sign trick: |w| . sign(x, w) (Q3_K, Q6_K and IQ4_NL in qdot) or, IQ4_NL decoding,
 * |x| . sign(v, x) with |x| made once a call.
 *
 * Decode (rows1) is a weight stream: each call first lays out its activation row for the format
 * (below: "paired" / "quad" q, the float scale vectors, per-16 sums), once for the whole row
 * range, so that a register of weight bytes serves 2 or 4 blocks and one convert + FMA scales
 * them all; then rows go one after another (one forward stream, prefetched QR_PF_AHEAD bytes
 * ahead), eight rows' lanes summed at once (hsum8x).
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "quant_internal.h"
#include "quant_x86.h"
#include "qorus.h"

#ifdef QR_HAVE_AVX2_BUILD

#include "quant_kq_avx2.h"

/* int16 lanes for pshufb: lane 0 / lane 1 each a repeated 16-bit index pair (lo | hi << 8);
 * an index byte of 0x80 reads zero, so (j | 0x8000) zero-extends byte j */
static inline __m256i ctrl2(int lo0, int lo1) {
    return _mm256_set_m128i(_mm_set1_epi16((short)lo1), _mm_set1_epi16((short)lo0));
}
#define ZX(j) (0x8000 | (j))                        /* byte j, zero-extended to int16 */
#define I16(n) ((2 * (n) + 1) << 8 | (2 * (n)))     /* int16 lane n of the source */

static void act_quad(const uint8_t *q, int64_t nb, uint8_t *xq4) {
    for (int64_t b = 0; b + 4 <= nb; b += 4) {   /* a 4 x 4 transpose of 8-byte pieces */
        __m256i r0 = ld256(q + 32 * b), r1 = ld256(q + 32 * b + 32);
        __m256i r2 = ld256(q + 32 * b + 64), r3 = ld256(q + 32 * b + 96);
        __m256i t0 = _mm256_unpacklo_epi64(r0, r1), t1 = _mm256_unpackhi_epi64(r0, r1);
        __m256i t2 = _mm256_unpacklo_epi64(r2, r3), t3 = _mm256_unpackhi_epi64(r2, r3);
        uint8_t *o = xq4 + 32 * b;
        _mm256_storeu_si256((__m256i *)o, _mm256_permute2x128_si256(t0, t2, 0x20));
        _mm256_storeu_si256((__m256i *)(o + 32), _mm256_permute2x128_si256(t1, t3, 0x20));
        _mm256_storeu_si256((__m256i *)(o + 64), _mm256_permute2x128_si256(t0, t2, 0x31));
        _mm256_storeu_si256((__m256i *)(o + 96), _mm256_permute2x128_si256(t1, t3, 0x31));
    }
}

static void act_xp(const float *d, int64_t nb, float *X) {
    for (int64_t b = 0; b + 2 <= nb; b += 2, X += 8) {
        _mm_storeu_ps(X, _mm_set1_ps(d[b]));
        _mm_storeu_ps(X + 4, _mm_set1_ps(d[b + 1]));
    }
}

static void act_xq(const float *d, int64_t nb, float *X) {
    for (int64_t b = 0; b + 4 <= nb; b += 4, X += 8) {
        __m128 dq = _mm_loadu_ps(d + b);
        _mm_storeu_ps(X, _mm_unpacklo_ps(dq, dq));
        _mm_storeu_ps(X + 4, _mm_unpackhi_ps(dq, dq));
    }
}

/* the 16 per-16 sums of 8 blocks of q (256 values), int16 in order */
static inline __m256i sums16(const uint8_t *q) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i m[8];
    for (int b = 0; b < 8; b++)   /* lanes 0-3: sub-block 2b, 4-7: 2b + 1 (partial sums) */
        m[b] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, ld256(q + 32 * b)), ones16);
    __m256i g0 = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
    __m256i g1 = _mm256_hadd_epi32(_mm256_hadd_epi32(m[4], m[5]), _mm256_hadd_epi32(m[6], m[7]));
    /* g0: [s0 s2 s4 s6 | s1 s3 s5 s7], g1: the same for s8 .. s15 */
    __m256i p = _mm256_packs_epi32(g0, g1);   /* [s0 s2 .. s14 | s1 s3 .. s15] (|s| <= 2032) */
    __m128i e = _mm256_castsi256_si128(p), o = _mm256_extracti128_si256(p, 1);
    return _mm256_set_m128i(_mm_unpackhi_epi16(e, o), _mm_unpacklo_epi16(e, o));
}

static void act_s16(const uint8_t *q, int64_t nb, int16_t *S) {
    for (int64_t b = 0; b + 8 <= nb; b += 8, S += 16)
        _mm256_storeu_si256((__m256i *)S, sums16(q + 32 * b));
}

/* ================================================================== K-quants: shared pieces */
#define K_SB 256   /* values a super-block */

/* [sc0..sc7 | m0..m7] (bytes) of a Q4_K / Q5_K super-block; s: its sc[12], 16 bytes readable */
static inline __m128i k4_scales(const uint8_t *s) {
    const __m128i v = ld128(s);
    const __m128i t1 = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i t2 = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    __m128i lo = _mm_and_si128(t1, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
    __m128i hn = _mm_and_si128(_mm_srli_epi16(t1, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(t2, 2), _mm_setr_epi8(0, 0, 0, 0, 48, 48, 48, 48, 0, 0, 0, 0, 48, 48, 48, 48));
    return _mm_or_si128(_mm_or_si128(lo, hn), hi);
}

/* the 16 6-bit scales of a Q3_K super-block minus 32 (int8, in order); s: its sc[12] */
static inline __m128i k3_scales(const uint8_t *s) {
    const uint32_t a0 = qr__ld32(s), a1 = qr__ld32(s + 4), t = qr__ld32(s + 8);
    const uint32_t k1 = 0x03030303u, k2 = 0x0f0f0f0fu;
    const uint32_t r0 = (a0 & k2) | ((t & k1) << 4);
    const uint32_t r1 = (a1 & k2) | (((t >> 2) & k1) << 4);
    const uint32_t r2 = ((a0 >> 4) & k2) | (((t >> 4) & k1) << 4);
    const uint32_t r3 = ((a1 >> 4) & k2) | (((t >> 6) & k1) << 4);
    const __m128i v = _mm_set_epi64x((long long)((uint64_t)r3 << 32 | r2), (long long)((uint64_t)r1 << 32 | r0));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

/* fp16 pair (d, dmin) at p as [d dmin d dmin ...] */
static inline __m256 k_dm(const uint8_t *p) { return _mm256_cvtph_ps(_mm_set1_epi32((int)qr__ld32(p))); }

/* ================================================================== Q4_K, Q5_K
 * 144 / 176 bytes: d dmin sc[12] (Q5_K: qh[32]) qs[128]; qs[32 p + l] holds element l of
 * blocks 2p (low nibble) and 2p + 1 (high); Q5_K's fifth bit of element l of block j is bit j
 * of qh[l]. value = (d sc_j) q - dmin m_j: dot = D sum_j d_x sc_j (q . x) - dmin sum_j m_j s_x.
 * maddubs pairs: Q4 2 * 15 * 127 = 3810, Q5 2 * 31 * 127 = 7874 (two added: 15748); times a
 * 6-bit scale, pairs summed: <= 1984248. */

/* decode: pair p of a super-block against the paired q8 halves, as 8 int32 lanes (float):
 * block 2p in the low lane, 2p + 1 in the high; V: the scale bytes in both lanes */
QR_ALWAYS_INLINE __m256 k45_pair(int q5, const uint8_t *sb, int p, __m256i V, __m256i xa, __m256i xb) {
    const __m256i m4 = _mm256_set1_epi8(15), sh = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    const uint8_t *qs = sb + (q5 ? 48 : 16) + 32 * p;
    __m256i a = _mm256_and_si256(_mm256_srlv_epi32(bc128(qs), sh), m4);        /* elements 0..15 */
    __m256i b = _mm256_and_si256(_mm256_srlv_epi32(bc128(qs + 16), sh), m4);   /* 16..31 */
    if (q5) {   /* bit 2p (low lane) / 2p + 1 (high lane) of qh[l] to bit 4 */
        const __m256i m16 = _mm256_set1_epi8(16);
        __m256i h0 = bc128(sb + 16), h1 = bc128(sb + 32);
        if (p < 2) {
            const __m256i c = _mm256_setr_epi32(4 - 2 * p, 4 - 2 * p, 4 - 2 * p, 4 - 2 * p,
                                                3 - 2 * p, 3 - 2 * p, 3 - 2 * p, 3 - 2 * p);
            h0 = _mm256_sllv_epi32(h0, c);
            h1 = _mm256_sllv_epi32(h1, c);
        } else {
            const __m256i c = _mm256_setr_epi32(2 * p - 4, 2 * p - 4, 2 * p - 4, 2 * p - 4,
                                                2 * p - 3, 2 * p - 3, 2 * p - 3, 2 * p - 3);
            h0 = _mm256_srlv_epi32(h0, c);
            h1 = _mm256_srlv_epi32(h1, c);
        }
        a = _mm256_or_si256(a, _mm256_and_si256(h0, m16));
        b = _mm256_or_si256(b, _mm256_and_si256(h1, m16));
    }
    __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(a, xa), _mm256_maddubs_epi16(b, xb));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(s, _mm256_shuffle_epi8(V, ctrl2(ZX(2 * p), ZX(2 * p + 1)))));
}

/* one decode row; xp: paired q, XP: per-pair [d x4 | d x4], sx: the q8 row's s */
QR_ALWAYS_INLINE __m256 row_k45(int q5, int64_t nsb, const uint8_t *p, const uint8_t *xp,
                                const float *XP, const float *sx) {
    const size_t bs = q5 ? 176 : 144;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, p += bs, xp += K_SB, XP += 32, sx += 8) {
        _mm_prefetch((const char *)(p + QR_PF_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 128), _MM_HINT_T0);
        const __m256 dm = k_dm(p);
        const __m128i scm = k4_scales(p + 4);
        const __m256i V = _mm256_broadcastsi128_si256(scm);
        const __m256 mins = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(scm, 8))),
                                          _mm256_loadu_ps(sx));
        __m256 a0 = _mm256_mul_ps(k45_pair(q5, p, 0, V, ld256(xp), ld256(xp + 32)), _mm256_loadu_ps(XP));
        __m256 a1 = _mm256_mul_ps(k45_pair(q5, p, 1, V, ld256(xp + 64), ld256(xp + 96)), _mm256_loadu_ps(XP + 8));
        a0 = _mm256_fmadd_ps(k45_pair(q5, p, 2, V, ld256(xp + 128), ld256(xp + 160)), _mm256_loadu_ps(XP + 16), a0);
        a1 = _mm256_fmadd_ps(k45_pair(q5, p, 3, V, ld256(xp + 192), ld256(xp + 224)), _mm256_loadu_ps(XP + 24), a1);
        acc = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_permute_ps(dm, 0x00), acc);
        acc = _mm256_fnmadd_ps(mins, _mm256_permute_ps(dm, 0x55), acc);
    }
    return acc;
}

QR_ALWAYS_INLINE void rows_k45(int q5, int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                               const uint8_t *xq, float *y) {
    kq_buf buf;   /* paired q 32, XP 16 bytes a block */
    uint8_t *xp = kq_buf_get(&buf, nb, 48);
    if (!xp) {
        const qr_qdot_fn f = q5 ? qr__qdot_q5_k : qr__qdot_q4_k;
        for (int64_t r = 0; r < nrows; r++) f(nb, w + r * wrow, xq, 0, 1, y + r);
        return;
    }
    float *XP = (float *)(xp + 32 * nb);
    const float *d = (const float *)(xq + nb * QR_QK);
    act_paired(xq, nb, xp);
    act_xp(d, nb, XP);
    KQ_ROWS8(row_k45(q5, nb / 8, row, xp, XP, d + nb));
    free(buf.heap);
}

/* qdot: natural layout; block j of a super-block: nibbles of qs[32 (j / 2) ..] */
QR_ALWAYS_INLINE void qdot_k45(int MX, int q5, int64_t nb, const uint8_t *w, const uint8_t *xq,
                               size_t xs, float *out) {
    const size_t bs = q5 ? 176 : 144;
    const __m256i m4 = _mm256_set1_epi8(15), m16 = _mm256_set1_epi8(16);
    __m256 acc[QR_QMAX_ROWS];
    const float *d[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        acc[j] = _mm256_setzero_ps();
        d[j] = (const float *)(xq + j * xs + nb * QR_QK);
    }
    for (int64_t i = 0; i < nb / 8; i++) {
        const uint8_t *p = w + i * bs, *qs = p + (q5 ? 48 : 16);
        _mm_prefetch((const char *)(p + 2 * bs), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + 2 * bs + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + 2 * bs + 128), _MM_HINT_T0);
        const __m256 dm = k_dm(p);
        const __m128i scm = k4_scales(p + 4);
        const __m256i V = _mm256_broadcastsi128_si256(scm);
        const __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(scm, 8)));
        const __m256i qh = q5 ? ld256(p + 16) : _mm256_setzero_si256();
        __m256 at[QR_QMAX_ROWS];
        for (int j = 0; j < MX; j++) at[j] = _mm256_setzero_ps();
        for (int b = 0; b < 8; b++) {
            __m256i raw = ld256(qs + 32 * (b / 2));
            __m256i wv = _mm256_and_si256(b & 1 ? _mm256_srli_epi16(raw, 4) : raw, m4);
            if (q5) {
                __m256i h = b < 4 ? _mm256_slli_epi16(qh, 4 - b) : _mm256_srli_epi16(qh, b - 4);
                wv = _mm256_or_si256(wv, _mm256_and_si256(h, m16));
            }
            const __m256i sc = _mm256_shuffle_epi8(V, _mm256_set1_epi16((short)ZX(b)));
            for (int j = 0; j < MX; j++) {
                __m256i qx = ld256(xq + j * xs + (8 * i + b) * QR_QK);
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(wv, qx), sc));
                at[j] = _mm256_fmadd_ps(f, _mm256_set1_ps(d[j][8 * i + b]), at[j]);
            }
        }
        for (int j = 0; j < MX; j++) {
            acc[j] = _mm256_fmadd_ps(at[j], _mm256_permute_ps(dm, 0x00), acc[j]);
            acc[j] = _mm256_fnmadd_ps(_mm256_mul_ps(mf, _mm256_loadu_ps(d[j] + nb + 8 * i)),
                                      _mm256_permute_ps(dm, 0x55), acc[j]);
        }
    }
    for (int j = 0; j < MX; j++) out[j] = qr__hsum256(acc[j]);
}

#define QDOT_K45(MX, q5) qdot_k45(MX, q5, nb, w, xq, xs, out)
static void qdot_q4_k(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) {
    QDOT_SWITCH(QDOT_K45, 0)
}
static void qdot_q5_k(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) {
    QDOT_SWITCH(QDOT_K45, 1)
}
static void rows1_q4_k(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows, const uint8_t *xq, float *y) {
    rows_k45(0, nb, w, wrow, nrows, xq, y);
}
static void rows1_q5_k(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows, const uint8_t *xq, float *y) {
    rows_k45(1, nb, w, wrow, nrows, xq, y);
}

/* y = (d sc_j) q - dmin m_j: d sc_j and dmin m_j exact (11 x 6 bits), and so is their product
 * with q (< 2^5): one FMA rounds as the portable multiply-then-subtract. */
QR_ALWAYS_INLINE void dequant_k45(int q5, const uint8_t *p, float *y, int64_t k) {
    const size_t bs = q5 ? 176 : 144;
    for (int64_t i = 0; i < k / K_SB; i++, p += bs, y += K_SB) {
        const __m128i scm = k4_scales(p + 4);
        const __m256 dl = _mm256_mul_ps(_mm256_set1_ps(qr__h2f(p)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(scm)));
        const __m256 ml = _mm256_mul_ps(_mm256_set1_ps(qr__h2f(p + 2)),
                                        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(scm, 8))));
        float dls[8], mls[8];
        _mm256_storeu_ps(dls, dl);
        _mm256_storeu_ps(mls, ml);
        const uint8_t *qs = p + (q5 ? 48 : 16);
        for (int pp = 0; pp < 4; pp++) {
            const __m256 d0 = _mm256_set1_ps(dls[2 * pp]), m0 = _mm256_set1_ps(mls[2 * pp]);
            const __m256 d1 = _mm256_set1_ps(dls[2 * pp + 1]), m1 = _mm256_set1_ps(mls[2 * pp + 1]);
            for (int g = 0; g < 4; g++) {
                __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 32 * pp + 8 * g)));
                __m256i lo = _mm256_and_si256(v, _mm256_set1_epi32(15)), hi = _mm256_srli_epi32(v, 4);
                if (q5) {
                    __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 16 + 8 * g)));
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi32(_mm256_srli_epi32(h, 2 * pp), 4),
                                                              _mm256_set1_epi32(16)));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi32(_mm256_srli_epi32(h, 2 * pp + 1), 4),
                                                              _mm256_set1_epi32(16)));
                }
                _mm256_storeu_ps(y + 64 * pp + 8 * g, _mm256_fmsub_ps(d0, _mm256_cvtepi32_ps(lo), m0));
                _mm256_storeu_ps(y + 64 * pp + 32 + 8 * g, _mm256_fmsub_ps(d1, _mm256_cvtepi32_ps(hi), m1));
            }
        }
    }
}
static void dequant_q4_k(const uint8_t *row, float *y, int64_t k) { dequant_k45(0, row, y, k); }
static void dequant_q5_k(const uint8_t *row, float *y, int64_t k) { dequant_k45(1, row, y, k); }

/* ================================================================== Q6_K
 * 210 bytes: ql[128] qh[64] sc[16] (int8) d. Half i (128 values, blocks 4i + t): ql[64 i + l]
 * low nibble = element l of block 4i (l < 32) / 4i + 1 (l >= 32), high nibble blocks 4i + 2,
 * 4i + 3; qh[32 i + l] bits 2t, 2t + 1 = the top bits of element l of block 4i + t.
 * q (0..63) unsigned, value = (d sc_j)(q - 32): the 32 through per-16 sums (decode) or the
 * sign trick (qdot). maddubs pairs: 2 * 63 * 127 = 16002 (q), 2 * 32 * 127 (|q - 32|); times an
 * int8 scale, pairs summed: <= 4096512. */

/* the 4 blocks of half i as quants 0..63 (q[t]: block 4i + t, natural order) */
QR_ALWAYS_INLINE void q6k_half(const uint8_t *p, int i, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    const __m256i l0 = ld256(p + 64 * i), l1 = ld256(p + 64 * i + 32), h = ld256(p + 128 + 32 * i);
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
}

/* the int16 scale vector of block 4i + t from Vi = [sc 8i .. 8i+7 | the same] (int16):
 * sub-block 8i + 2t in the low lane, 8i + 2t + 1 in the high */
static inline __m256i sc_pair16(__m256i Vi, int t) { return _mm256_shuffle_epi8(Vi, ctrl2(I16(2 * t), I16(2 * t + 1))); }

QR_ALWAYS_INLINE __m256 row_q6k(int64_t nsb, const uint8_t *p, const uint8_t *xq, const float *d,
                                const int16_t *S, const float *d32) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, p += 210, xq += K_SB, d += 8, S += 16, d32 += 8) {
        _mm_prefetch((const char *)(p + QR_PF_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 128), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 192), _MM_HINT_T0);
        const __m256i sc16 = _mm256_cvtepi8_epi16(ld128(p + 192));
        /* sum_j sc_j s16_j per block (<= 520192), times 32 d_x below */
        const __m256i corr = _mm256_madd_epi16(ld256(S), sc16);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        const __m256i Vh[2] = {_mm256_permute4x64_epi64(sc16, 0x44), _mm256_permute4x64_epi64(sc16, 0xee)};
        for (int h = 0; h < 2; h++) {
            const __m256i Vi = Vh[h];
            __m256i q[4];
            q6k_half(p, h, q);
            for (int t = 0; t < 4; t++) {
                const int b = 4 * h + t;
                __m256i m = _mm256_madd_epi16(_mm256_maddubs_epi16(q[t], ld256(xq + 32 * b)), sc_pair16(Vi, t));
                if (t & 1) a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(d[b]), a1);
                else a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(d[b]), a0);
            }
        }
        a0 = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(corr), _mm256_loadu_ps(d32), _mm256_add_ps(a0, a1));
        acc = _mm256_fmadd_ps(a0, _mm256_set1_ps(qr__h2f(p + 208)), acc);
    }
    return acc;
}

static void rows1_q6_k(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows, const uint8_t *xq, float *y) {
    kq_buf buf;   /* S16 4, 32 d 4 bytes a block */
    uint8_t *a = kq_buf_get(&buf, nb, 8);
    if (!a) {
        for (int64_t r = 0; r < nrows; r++) qr__qdot_q6_k(nb, w + r * wrow, xq, 0, 1, y + r);
        return;
    }
    int16_t *S = (int16_t *)a;
    float *d32 = (float *)(a + 4 * nb);
    const float *d = (const float *)(xq + nb * QR_QK);
    act_s16(xq, nb, S);
    for (int64_t b = 0; b < nb; b++) d32[b] = 32.0f * d[b];   /* exact */
    KQ_ROWS8(row_q6k(nb / 8, row, xq, d, S, d32));
    free(buf.heap);
}

QR_ALWAYS_INLINE void qdot_q6k_n(int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                                 float *out) {
    __m256 acc[QR_QMAX_ROWS];
    const float *d[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        acc[j] = _mm256_setzero_ps();
        d[j] = (const float *)(xq + j * xs + nb * QR_QK);
    }
    const __m256i m32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb / 8; i++) {
        const uint8_t *p = w + i * 210;
        _mm_prefetch((const char *)(p + 2 * 210), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + 2 * 210 + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + 2 * 210 + 128), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + 2 * 210 + 192), _MM_HINT_T0);
        const __m256i sc16 = _mm256_cvtepi8_epi16(ld128(p + 192));
        __m256 at[QR_QMAX_ROWS];
        for (int j = 0; j < MX; j++) at[j] = _mm256_setzero_ps();
        const __m256i Vh[2] = {_mm256_permute4x64_epi64(sc16, 0x44), _mm256_permute4x64_epi64(sc16, 0xee)};
        for (int h = 0; h < 2; h++) {
            const __m256i Vi = Vh[h];
            __m256i q[4];
            q6k_half(p, h, q);
            for (int t = 0; t < 4; t++) {
                const int b = 8 * (int)i + 4 * h + t;
                const __m256i wv = _mm256_sub_epi8(q[t], m32), aw = _mm256_abs_epi8(wv);
                const __m256i sc = sc_pair16(Vi, t);
                for (int j = 0; j < MX; j++) {
                    __m256i qx = _mm256_sign_epi8(ld256(xq + j * xs + b * QR_QK), wv);
                    __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(aw, qx), sc));
                    at[j] = _mm256_fmadd_ps(f, _mm256_set1_ps(d[j][b]), at[j]);
                }
            }
        }
        const __m256 D = _mm256_set1_ps(qr__h2f(p + 208));
        for (int j = 0; j < MX; j++) acc[j] = _mm256_fmadd_ps(at[j], D, acc[j]);
    }
    for (int j = 0; j < MX; j++) out[j] = qr__hsum256(acc[j]);
}
#define QDOT_Q6K(MX, unused) qdot_q6k_n(MX, nb, w, xq, xs, out)
static void qdot_q6_k(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) {
    QDOT_SWITCH(QDOT_Q6K, 0)
}

/* y = (d sc_j) (q - 32): d sc_j exact, then one rounding, as the portable */
static void dequant_q6_k(const uint8_t *p, float *y, int64_t k) {
    for (int64_t i = 0; i < k / K_SB; i++, p += 210, y += K_SB) {
        const __m256 D = _mm256_set1_ps(qr__h2f(p + 208));
        const __m128i sc = ld128(p + 192);
        float dl[16];
        _mm256_storeu_ps(dl, _mm256_mul_ps(D, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
        _mm256_storeu_ps(dl + 8, _mm256_mul_ps(D, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6k_half(p, h, q);
            for (int t = 0; t < 4; t++) {
                const __m256i v = _mm256_sub_epi8(q[t], _mm256_set1_epi8(32));
                const int j = 8 * h + 2 * t;
                float *yo = y + 128 * h + 32 * t;
                const __m256 s0 = _mm256_set1_ps(dl[j]), s1 = _mm256_set1_ps(dl[j + 1]);
                __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
                _mm256_storeu_ps(yo, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(yo + 8, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo)))));
                _mm256_storeu_ps(yo + 16, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                _mm256_storeu_ps(yo + 24, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi)))));
            }
        }
    }
}

/* ================================================================== Q2_K, Q3_K
 * Q2_K 84 bytes: sc[16] qs[64] d dmin; Q3_K 110 bytes: hm[32] qs[64] sc[12] d. qs[32 i + l]
 * bits 2t, 2t + 1 = element l of block 4i + t; Q3_K's third bit: bit j of hm[l] for block j
 * (set: q as is, clear: q - 4; used unsigned 0..7 with the 4 through per-16 sums, or signed in
 * qdot). Scales per 16 values: Q2_K 4-bit sc & 15 (min dmin (sc >> 4)), Q3_K 6-bit - 32.
 * Decode in the quad layout: 8 bytes of qs broadcast to the four quarters and shifted by 2t
 * there give element 8g .. 8g + 7 of the 4 blocks of a half, so one register, convert and FMA
 * serve 4 blocks; the registers of a sub-block half (g = 0, 1 / 2, 3) share a scale vector,
 * their maddubs added before madd. maddubs pairs: Q2 2 * 3 * 127 = 762, Q3 2 * 7 * 127 = 1778
 * (two added: 3556); times a scale (<= 15 / 32), pairs summed, two added: <= 455168. */

/* quad quants of half i, g: Q2 (field t of int64 quarter t) */
QR_ALWAYS_INLINE __m256i k23_quad(int q3, const uint8_t *sb, int i, int g, const uint8_t *hm2) {
    const uint8_t *qs = sb + (q3 ? 32 : 16) + 32 * i + 8 * g;
    __m256i q = _mm256_and_si256(_mm256_srlv_epi32(bc64(qs), _mm256_setr_epi32(0, 0, 2, 2, 4, 4, 6, 6)),
                                 _mm256_set1_epi8(3));
    if (q3) {   /* bit 4i + t of hm[8g + ..] to bit 2 (half 0 from hm2 = hm << 2) */
        __m256i h;
        if (i == 0) h = _mm256_srlv_epi32(bc64(hm2 + 8 * g), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
        else h = _mm256_srlv_epi32(bc64(sb + 8 * g), _mm256_setr_epi32(2, 2, 3, 3, 4, 4, 5, 5));
        q = _mm256_or_si256(q, _mm256_and_si256(h, _mm256_set1_epi8(4)));
    }
    return q;
}

/* one half (blocks 4i .. 4i + 3) against the quad q8 (xq4: its 128 bytes) as 8 int32 lanes
 * (float), block 4i + t in lanes 2t, 2t + 1; sc0 / sc1 the scale vectors of the first / second
 * 16 values of each block */
QR_ALWAYS_INLINE __m256 k23_half(int q3, const uint8_t *sb, int i, const uint8_t *xq4, __m256i sc0,
                                 __m256i sc1, const uint8_t *hm2) {
    __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(k23_quad(q3, sb, i, 0, hm2), ld256(xq4)),
                                  _mm256_maddubs_epi16(k23_quad(q3, sb, i, 1, hm2), ld256(xq4 + 32)));
    __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(k23_quad(q3, sb, i, 2, hm2), ld256(xq4 + 64)),
                                  _mm256_maddubs_epi16(k23_quad(q3, sb, i, 3, hm2), ld256(xq4 + 96)));
    return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(p0, sc0), _mm256_madd_epi16(p1, sc1)));
}

/* quad scale vector: quarter t gets sub-block j0 + 2t (4 int16 each); Q2: zero-extended bytes
 * of V (16 scale bytes a lane); Q3: int16 lanes of Vi (8 scales a lane: j0 relative to it) */
static inline __m256i q2_quad_sc(__m256i V, int j0) {
    return _mm256_shuffle_epi8(V, _mm256_setr_epi16(ZX(j0), ZX(j0), ZX(j0), ZX(j0), ZX(j0 + 2), ZX(j0 + 2),
                                                    ZX(j0 + 2), ZX(j0 + 2), ZX(j0 + 4), ZX(j0 + 4), ZX(j0 + 4),
                                                    ZX(j0 + 4), ZX(j0 + 6), ZX(j0 + 6), ZX(j0 + 6), ZX(j0 + 6)));
}
static inline __m256i q3_quad_sc(__m256i Vi, int j0) {
    return _mm256_shuffle_epi8(Vi, _mm256_setr_epi16(I16(j0), I16(j0), I16(j0), I16(j0), I16(j0 + 2), I16(j0 + 2),
                                                     I16(j0 + 2), I16(j0 + 2), I16(j0 + 4), I16(j0 + 4), I16(j0 + 4),
                                                     I16(j0 + 4), I16(j0 + 6), I16(j0 + 6), I16(j0 + 6), I16(j0 + 6)));
}

/* one decode row; xq4: quad q, XQ: per-quad [d0 d0 d1 d1 | d2 d2 d3 d3], d: the q8 row's d,
 * S: per-16 sums */
QR_ALWAYS_INLINE __m256 row_q2k(int64_t nsb, const uint8_t *p, const uint8_t *xq4, const float *XQ,
                                const float *d, const int16_t *S) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, p += 84, xq4 += K_SB, XQ += 16, d += 8, S += 16) {
        _mm_prefetch((const char *)(p + QR_PF_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 64), _MM_HINT_T0);
        const __m256 dm = k_dm(p + 80);
        const __m128i sc = ld128(p);
        const __m256i V = _mm256_broadcastsi128_si256(_mm_and_si128(sc, _mm_set1_epi8(15)));
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(15)));
        /* dmin sum_j m_j s16_j d_x per block */
        const __m256 mins = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(ld256(S), mn)), _mm256_loadu_ps(d));
        __m256 a = _mm256_mul_ps(k23_half(0, p, 0, xq4, q2_quad_sc(V, 0), q2_quad_sc(V, 1), NULL), _mm256_loadu_ps(XQ));
        a = _mm256_fmadd_ps(k23_half(0, p, 1, xq4 + 128, q2_quad_sc(V, 8), q2_quad_sc(V, 9), NULL),
                            _mm256_loadu_ps(XQ + 8), a);
        acc = _mm256_fmadd_ps(a, _mm256_permute_ps(dm, 0x00), acc);
        acc = _mm256_fnmadd_ps(mins, _mm256_permute_ps(dm, 0x55), acc);
    }
    return acc;
}

QR_ALWAYS_INLINE __m256 row_q3k(int64_t nsb, const uint8_t *p, const uint8_t *xq4, const float *XQ,
                                const float *d, const int16_t *S) {
    __m256 acc = _mm256_setzero_ps();
    _Alignas(32) uint8_t hm2[32];
    for (int64_t i = 0; i < nsb; i++, p += 110, xq4 += K_SB, XQ += 16, d += 8, S += 16) {
        _mm_prefetch((const char *)(p + QR_PF_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + QR_PF_AHEAD + 64), _MM_HINT_T0);
        _mm256_store_si256((__m256i *)hm2, _mm256_slli_epi64(ld256(p), 2));
        const __m256i sc16 = _mm256_cvtepi8_epi16(k3_scales(p + 96));
        const __m256i V0 = _mm256_permute4x64_epi64(sc16, 0x44), V1 = _mm256_permute4x64_epi64(sc16, 0xee);
        /* 4 sum_j (sc_j - 32) s16_j per block (S holds 4 s16; <= 520192) */
        const __m256i corr = _mm256_madd_epi16(ld256(S), sc16);
        __m256 a = _mm256_mul_ps(k23_half(1, p, 0, xq4, q3_quad_sc(V0, 0), q3_quad_sc(V0, 1), hm2), _mm256_loadu_ps(XQ));
        a = _mm256_fmadd_ps(k23_half(1, p, 1, xq4 + 128, q3_quad_sc(V1, 0), q3_quad_sc(V1, 1), hm2),
                            _mm256_loadu_ps(XQ + 8), a);
        a = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(corr), _mm256_loadu_ps(d), a);
        acc = _mm256_fmadd_ps(a, _mm256_set1_ps(qr__h2f(p + 108)), acc);
    }
    return acc;
}

QR_ALWAYS_INLINE void rows_k23(int q3, int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                               const uint8_t *xq, float *y) {
    kq_buf buf;   /* quad q 32, XQ 8, S16 4 bytes a block */
    uint8_t *xq4 = kq_buf_get(&buf, nb, 44);
    if (!xq4) {
        const qr_qdot_fn f = q3 ? qr__qdot_q3_k : qr__qdot_q2_k;
        for (int64_t r = 0; r < nrows; r++) f(nb, w + r * wrow, xq, 0, 1, y + r);
        return;
    }
    float *XQ = (float *)(xq4 + 32 * nb);
    int16_t *S = (int16_t *)(XQ + 2 * nb);
    const float *d = (const float *)(xq + nb * QR_QK);
    act_quad(xq, nb, xq4);
    act_xq(d, nb, XQ);
    act_s16(xq, nb, S);
    if (q3)   /* 4 s16 (|.| <= 8128): Q3_K's offset of 4 */
        for (int64_t b = 0; b < nb / 8; b++)
            _mm256_storeu_si256((__m256i *)(S + 16 * b), _mm256_slli_epi16(ld256(S + 16 * b), 2));
    if (q3) KQ_ROWS8(row_q3k(nb / 8, row, xq4, XQ, d, S));
    else KQ_ROWS8(row_q2k(nb / 8, row, xq4, XQ, d, S));
    free(buf.heap);
}
static void rows1_q2_k(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows, const uint8_t *xq, float *y) {
    rows_k23(0, nb, w, wrow, nrows, xq, y);
}
static void rows1_q3_k(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows, const uint8_t *xq, float *y) {
    rows_k23(1, nb, w, wrow, nrows, xq, y);
}

/* natural block 4i + t of a Q2_K / Q3_K super-block: Q2 quants 0..3, Q3 values -4..3 */
QR_ALWAYS_INLINE __m256i k23_natural(int q3, const uint8_t *sb, int i, int t, __m256i hm) {
    const __m256i raw = ld256(sb + (q3 ? 32 : 16) + 32 * i);
    __m256i q = _mm256_and_si256(t ? _mm256_srli_epi16(raw, 2 * t) : raw, _mm256_set1_epi8(3));
    if (!q3) return q;
    const int j = 4 * i + t;   /* bit j of hm[l] to bit 2 */
    __m256i h = j < 2 ? _mm256_slli_epi16(hm, 2 - j) : j > 2 ? _mm256_srli_epi16(hm, j - 2) : hm;
    q = _mm256_or_si256(q, _mm256_and_si256(h, _mm256_set1_epi8(4)));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(4));
}

/* Q2_K qdot: main sum_j sc_j (q . x) (scale D) and mins sum_j m_j (1 . x) (scale dmin), both
 * per block, combined in float as D T - dmin N before the block's activation scale */
QR_ALWAYS_INLINE void qdot_q2k_n(int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                                 float *out) {
    __m256 acc[QR_QMAX_ROWS];
    const float *d[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        acc[j] = _mm256_setzero_ps();
        d[j] = (const float *)(xq + j * xs + nb * QR_QK);
    }
    const __m256i ones8 = _mm256_set1_epi8(1);
    for (int64_t s = 0; s < nb / 8; s++) {
        const uint8_t *p = w + s * 84;
        _mm_prefetch((const char *)(p + 4 * 84), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + 4 * 84 + 64), _MM_HINT_T0);
        const __m256 dm = k_dm(p + 80), D = _mm256_permute_ps(dm, 0x00), Dm = _mm256_permute_ps(dm, 0x55);
        const __m128i sc = ld128(p);
        const __m256i V = _mm256_broadcastsi128_si256(_mm_and_si128(sc, _mm_set1_epi8(15)));
        const __m256i VM = _mm256_broadcastsi128_si256(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(15)));
        for (int b = 0; b < 8; b++) {
            const __m256i wv = k23_natural(0, p, b / 4, b % 4, _mm256_setzero_si256());
            const __m256i ctl = ctrl2(ZX(2 * b), ZX(2 * b + 1));
            const __m256i scv = _mm256_shuffle_epi8(V, ctl), mnv = _mm256_shuffle_epi8(VM, ctl);
            for (int j = 0; j < MX; j++) {
                const __m256i qx = ld256(xq + j * xs + (8 * s + b) * QR_QK);
                __m256 t = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(wv, qx), scv));
                __m256 n = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ones8, qx), mnv));
                __m256 v = _mm256_fmsub_ps(t, D, _mm256_mul_ps(n, Dm));
                acc[j] = _mm256_fmadd_ps(v, _mm256_set1_ps(d[j][8 * s + b]), acc[j]);
            }
        }
    }
    for (int j = 0; j < MX; j++) out[j] = qr__hsum256(acc[j]);
}

/* Q3_K qdot: the sign trick on values -4..3 */
QR_ALWAYS_INLINE void qdot_q3k_n(int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                                 float *out) {
    __m256 acc[QR_QMAX_ROWS];
    const float *d[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        acc[j] = _mm256_setzero_ps();
        d[j] = (const float *)(xq + j * xs + nb * QR_QK);
    }
    for (int64_t s = 0; s < nb / 8; s++) {
        const uint8_t *p = w + s * 110;
        _mm_prefetch((const char *)(p + 4 * 110), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + 4 * 110 + 64), _MM_HINT_T0);
        const __m256i sc16 = _mm256_cvtepi8_epi16(k3_scales(p + 96));
        const __m256i hm = ld256(p);
        __m256 at[QR_QMAX_ROWS];
        for (int j = 0; j < MX; j++) at[j] = _mm256_setzero_ps();
        const __m256i Vh[2] = {_mm256_permute4x64_epi64(sc16, 0x44), _mm256_permute4x64_epi64(sc16, 0xee)};
        for (int b = 0; b < 8; b++) {
            const __m256i Vi = Vh[b / 4];
            const __m256i wv = k23_natural(1, p, b / 4, b % 4, hm), aw = _mm256_abs_epi8(wv);
            const __m256i scv = sc_pair16(Vi, b % 4);
            for (int j = 0; j < MX; j++) {
                const __m256i qx = _mm256_sign_epi8(ld256(xq + j * xs + (8 * s + b) * QR_QK), wv);
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(aw, qx), scv));
                at[j] = _mm256_fmadd_ps(f, _mm256_set1_ps(d[j][8 * s + b]), at[j]);
            }
        }
        const __m256 D = _mm256_set1_ps(qr__h2f(p + 108));
        for (int j = 0; j < MX; j++) acc[j] = _mm256_fmadd_ps(at[j], D, acc[j]);
    }
    for (int j = 0; j < MX; j++) out[j] = qr__hsum256(acc[j]);
}
#define QDOT_Q2K(MX, unused) qdot_q2k_n(MX, nb, w, xq, xs, out)
#define QDOT_Q3K(MX, unused) qdot_q3k_n(MX, nb, w, xq, xs, out)
static void qdot_q2_k(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) {
    QDOT_SWITCH(QDOT_Q2K, 0)
}
static void qdot_q3_k(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, float *out) {
    QDOT_SWITCH(QDOT_Q3K, 0)
}

/* Q2_K: y = (d (sc & 15)) q - dmin (sc >> 4), the product exact (one FMA); Q3_K: y = (d (sc - 32))
 * q, both factors exact, two multiplies in the portable order (signed zeros alike) */
static void dequant_q2_k(const uint8_t *p, float *y, int64_t k) {
    for (int64_t s = 0; s < k / K_SB; s++, p += 84, y += K_SB) {
        const __m256 D = _mm256_set1_ps(qr__h2f(p + 80)), Dm = _mm256_set1_ps(qr__h2f(p + 82));
        const __m128i sc = ld128(p), lo = _mm_and_si128(sc, _mm_set1_epi8(15));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(15));
        float dl[16], ml[16];
        _mm256_storeu_ps(dl, _mm256_mul_ps(D, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo))));
        _mm256_storeu_ps(dl + 8, _mm256_mul_ps(D, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)))));
        _mm256_storeu_ps(ml, _mm256_mul_ps(Dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi))));
        _mm256_storeu_ps(ml + 8, _mm256_mul_ps(Dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)))));
        for (int i = 0; i < 2; i++)
            for (int g = 0; g < 4; g++) {
                const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 16 + 32 * i + 8 * g)));
                for (int t = 0; t < 4; t++) {
                    const int j = 8 * i + 2 * t + g / 2;
                    __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 2 * t), _mm256_set1_epi32(3)));
                    _mm256_storeu_ps(y + 128 * i + 32 * t + 8 * g,
                                     _mm256_fmsub_ps(_mm256_set1_ps(dl[j]), q, _mm256_set1_ps(ml[j])));
                }
            }
    }
}

static void dequant_q3_k(const uint8_t *p, float *y, int64_t k) {
    for (int64_t s = 0; s < k / K_SB; s++, p += 110, y += K_SB) {
        const __m256 D = _mm256_set1_ps(qr__h2f(p + 108));
        const __m128i sc = k3_scales(p + 96);
        float dl[16];
        _mm256_storeu_ps(dl, _mm256_mul_ps(D, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
        _mm256_storeu_ps(dl + 8, _mm256_mul_ps(D, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
        for (int i = 0; i < 2; i++)
            for (int g = 0; g < 4; g++) {
                const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 32 + 32 * i + 8 * g)));
                const __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8 * g)));
                for (int t = 0; t < 4; t++) {
                    const int j = 8 * i + 2 * t + g / 2;
                    __m256i q = _mm256_and_si256(_mm256_srli_epi32(v, 2 * t), _mm256_set1_epi32(3));
                    __m256i hb = _mm256_and_si256(_mm256_srli_epi32(h, 4 * i + t), _mm256_set1_epi32(1));
                    q = _mm256_sub_epi32(q, _mm256_slli_epi32(_mm256_xor_si256(hb, _mm256_set1_epi32(1)), 2));
                    _mm256_storeu_ps(y + 128 * i + 32 * t + 8 * g,
                                     _mm256_mul_ps(_mm256_set1_ps(dl[j]), _mm256_cvtepi32_ps(q)));
                }
            }
    }
}

/* ------------------------------------------------------------------ the table */
qr_kq_kernels qr__kq_avx2(int qtype) {
    qr_kq_kernels k = {0};
    switch (qtype) {
    case QR_QTYPE_Q2_K: k.qdot = qdot_q2_k; k.rows1 = rows1_q2_k; k.dequant_row = dequant_q2_k; break;
    case QR_QTYPE_Q3_K: k.qdot = qdot_q3_k; k.rows1 = rows1_q3_k; k.dequant_row = dequant_q3_k; break;
    case QR_QTYPE_Q4_K: k.qdot = qdot_q4_k; k.rows1 = rows1_q4_k; k.dequant_row = dequant_q4_k; break;
    case QR_QTYPE_Q5_K: k.qdot = qdot_q5_k; k.rows1 = rows1_q5_k; k.dequant_row = dequant_q5_k; break;
    case QR_QTYPE_Q6_K: k.qdot = qdot_q6_k; k.rows1 = rows1_q6_k; k.dequant_row = dequant_q6_k; break;
    default: return qr__kq32_avx2(qtype);   /* Q5_0, Q5_1, IQ4_NL, BF16 (or none) */
    }
    return k;
}

#endif
