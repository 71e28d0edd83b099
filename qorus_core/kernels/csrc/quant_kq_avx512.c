/* quant_kq_avx512.c - the AVX-512 BW/VL + VNNI kernels of quant_kformats.c's formats (Q5_0, Q5_1,
 * IQ4_NL, Q2_K .. Q6_K, BF16): the table quant.c and quant_formats.c consult on this tier
 * (quant_internal.h qr_kq_kernels). A format without an entry runs its portable kernels.
 *
 * Products (qdot: up to QR_QMAX_ROWS q8 rows; rows1: decode, one q8 row against a range of
 * weight rows), q8 rows in the natural layout: int8 q[32 nb] | float d[nb] | float s[nb].
 * One zmm holds 64 consecutive values of a weight row, as unsigned integers w_u (vpdpbusd's
 * unsigned operand), against the 64 activation bytes at the same place (signed): vpdpbusd
 * gives 16 exact int32 lanes, lane l = the sum of 4 products (values 4l .. 4l + 3). Formats
 * whose quants are signed store w = w_u - OFF (Q5_0 16, IQ4_NL 128 (the table plus 128),
 * Q3_K 4, Q6_K 32): the lane starts at C = -OFF * (its 4 activations' sum), so it ends as the
 * exact signed dot product. Bounds: |lane| <= 4 * 255 * 127 + 128 * 4 * 127 < 2^20.
 * Each lane lies in one sub-block (16 or 32 values) and one activation block (32), so its
 * scale is one float: (D_w * sc_sub) * d_x (in float32; products' tolerance, as the portable
 * code), expanded to the lanes by one vpermps a zmm; converted, scaled and summed in float32.
 * The min terms (Q5_1 m, Q2_K / Q4_K / Q5_K dmin * m) are float products with the activation
 * sums: s (blocks of 32) or d * the sum of 16 (Q2_K).
 * rows1 computes C (and Q2_K's sums of 16) once a call, for the whole row range (stack, or
 * heap past QR_KQ_STACK_NB blocks); qdot computes them on the fly (it runs once per weight
 * row). The result of a row depends on its bytes and the activations alone (not on the range
 * it lies in, nor on the rows beside it): identical for any thread count.
 *
 * Dequantization: the portable formulas lane for lane, in the same float operation order
 * (products of exact integers converted; a multiply then an add or subtract, never fused): the
 * same bits. BF16: the float dot product (fdot, 16 lanes, 4 accumulators) and the conversion. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "qorus.h"
#include "quant_internal.h"

#ifdef QR_HAVE_QUANT_AVX512

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif

#define QR_AI static inline __attribute__((always_inline))

/* how far ahead in a decode weight stream to prefetch (quant_avx512.c's) */
#define QR_PF_AHEAD 2048
/* rows1's prepared activation data lives on the stack up to this many blocks (K = 16384:
 * 16 KiB of C, 4 KiB of sums), on the heap past it */
#define QR_KQ_STACK_NB 512

enum { KQ_Q5_0, KQ_Q5_1, KQ_IQ4NL, KQ_Q2K, KQ_Q3K, KQ_Q4K, KQ_Q5K, KQ_Q6K };

/* ------------------------------------------------------------------ helpers */
static inline float h2f(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return _cvtsh_ss(v);
}

static inline uint32_t ld32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* [sum v[0], ..., sum v[7]]: each row's lanes summed in the same pattern wherever it sits */
static inline __m256 hsum8x(const __m256 v[8]) {
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

static inline __m256 fold512(__m512 v) {   /* 16 lanes -> 8 */
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* A decode range's first QR_PF_AHEAD bytes, requested at once (see quant_avx2.c). */
static inline void prefetch_head(const uint8_t *w, size_t bytes) {
    if (bytes > QR_PF_AHEAD) bytes = QR_PF_AHEAD;
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)(w + o), _MM_HINT_T0);
}

/* the lines of one weight unit of n bytes at p, QR_PF_AHEAD on (DEC: the decode stream) or
 * two units on (a prompt's tile, in L2) */
QR_AI void kq_prefetch(int DEC, const uint8_t *p, size_t n) {
    const uint8_t *a = p + (DEC ? QR_PF_AHEAD : 2 * n);
    for (size_t o = 0; o < n; o += 64) _mm_prefetch((const char *)(a + o), _MM_HINT_T0);
}

/* the first 4 bytes of 4 blocks bs apart, as 4 dwords (fp16 d, then m or 2 quant bytes) */
QR_AI __m128i gather4(const uint8_t *p, size_t bs) {
    __m128i a = _mm_unpacklo_epi32(_mm_loadu_si32(p), _mm_loadu_si32(p + bs));
    __m128i b = _mm_unpacklo_epi32(_mm_loadu_si32(p + 2 * bs), _mm_loadu_si32(p + 3 * bs));
    return _mm_unpacklo_epi64(a, b);
}

/* 32 bytes at p in both 256-bit halves */
QR_AI __m512i bcast32(const uint8_t *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* lane-expansion indices: zmm t of 4 sub-blocks of 16 (lane l <- 4t + l / 4), of 2 of 32
 * (lane l <- 2t + l / 8) */
QR_AI __m512i idx16(int t) {
    return _mm512_add_epi32(_mm512_set1_epi32(4 * t),
                            _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
}
QR_AI __m512i idx32(int t) {
    return _mm512_add_epi32(_mm512_set1_epi32(2 * t),
                            _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
}

/* ------------------------------------------------------------------ activation rows */
typedef struct {
    const int8_t *q;     /* int8 [32 nb] */
    const float *d, *s;  /* [nb] each */
    const int32_t *c;    /* rows1's prepared lane starts -OFF * (4 q's sum) [8 nb], or NULL */
    const float *s16;    /* rows1's prepared (Q2_K) d * (16 q's sum) [2 nb], or NULL */
} kq_x;

QR_AI kq_x kq_row(const uint8_t *xq, int64_t nb) {
    kq_x x;
    x.q = (const int8_t *)xq;
    x.d = (const float *)(xq + nb * QR_QK);
    x.s = x.d + nb;
    x.c = NULL;
    x.s16 = NULL;
    return x;
}

/* the exact lanes of weights wv (unsigned, value wv - OFF) with 64 activations xv; c: the
 * prepared starts (PREP), else computed here */
QR_AI __m512i kq_dp(int OFF, int PREP, const int32_t *c, __m512i wv, __m512i xv) {
    if (!OFF) return _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv);
    if (PREP) return _mm512_dpbusd_epi32(_mm512_load_si512(c), wv, xv);
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv);
    return _mm512_sub_epi32(s, _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                   _mm512_set1_epi8((char)OFF), xv));
}

/* rows1's per-call data (kq_x.c, .s16): c[8b + g] = -off * (q[32b + 4g] + .. + q[32b + 4g + 3]),
 * s16[2b + h] = d[b] * (the sum of q[32b + 16h ..][16]) (S16: Q2_K), b < nb */
static void kq_prepare(int off, int S16, int64_t nb, const kq_x *x, int32_t *c, float *s16) {
    const __m512i voff = _mm512_set1_epi8((char)off), ones = _mm512_set1_epi8(1);
    const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512i xv = _mm512_loadu_si512(x->q + 32 * b);
        if (off) {
            __m512i l = _mm512_dpbusd_epi32(_mm512_setzero_si512(), voff, xv);
            _mm512_store_si512(c + 8 * b, _mm512_sub_epi32(_mm512_setzero_si512(), l));
        }
        if (S16) {
            __m512i l = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, xv);
            l = _mm512_add_epi32(l, _mm512_shuffle_epi32(l, _MM_PERM_BADC));
            l = _mm512_add_epi32(l, _mm512_shuffle_epi32(l, _MM_PERM_CDAB));   /* 4 sums of 16 */
            __m128 sums = _mm_cvtepi32_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(pick, l)));
            __m128 dd = _mm_setr_ps(x->d[b], x->d[b], x->d[b + 1], x->d[b + 1]);
            _mm_storeu_ps(s16 + 2 * b, _mm_mul_ps(dd, sums));
        }
    }
    if (b < nb && off) {   /* an odd last block (32-value formats) */
        __m256i l = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)off),
                                        _mm256_loadu_si256((const __m256i *)(x->q + 32 * b)));
        _mm256_store_si256((__m256i *)(c + 8 * b), _mm256_sub_epi32(_mm256_setzero_si256(), l));
    }
}

/* ------------------------------------------------------------------ 32-value blocks */
/* Q5_0 (22 B: d qh[4] qs[16]), Q5_1 (24 B: d m qh[4] qs[16]), IQ4_NL (18 B: d qs[16]). A quad
 * of blocks b .. b + 3 a step, as two zmm: blocks b, b + 1 in 128-bit lanes
 * [lo nibbles of b | hi of b | lo of b + 1 | hi of b + 1] (values 32b .. 32b + 63 in order),
 * then b + 2, b + 3. Q5's fifth bit: qh of the two blocks as one 64-bit mask, +16 where set.
 * IQ4_NL: the nibble indexes the table plus 128 (vpshufb, lane-local). Per row: the lane
 * scale (d_w * d_x of its block), Q5_1's m * s. NV < 4: the last 1-3 blocks of a row, the
 * missing ones read as zeros on both sides. */
QR_AI int kq_bs(int F) { return F == KQ_Q5_0 ? 22 : F == KQ_Q5_1 ? 24 : 18; }

/* 16 quant bytes of blocks at p (n of 2 present) as [qs0 | qs0 | qs1 | qs1] */
QR_AI __m512i kq_pair_qs(const uint8_t *p, size_t bs, int n) {
    if (n <= 0) return _mm512_setzero_si512();
    __m256i a = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    if (n == 1) return _mm512_zextsi256_si512(a);
    return _mm512_inserti64x4(_mm512_castsi256_si512(a),
                              _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + bs))),
                              1);
}

/* the unsigned weight bytes of a pair (n blocks present) at p */
QR_AI __m512i kq_pair_w(int F, const uint8_t *p, int n) {
    const size_t bs = kq_bs(F), oq = F == KQ_Q5_0 ? 6 : F == KQ_Q5_1 ? 8 : 2;
    __m512i v = kq_pair_qs(p + oq, bs, n);
    v = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xff00ff00u, v, 4), _mm512_set1_epi8(15));
    if (F == KQ_IQ4NL) {
        const __m512i tbl = _mm512_broadcast_i32x4(_mm_setr_epi8(
            (char)1, (char)24, (char)45, (char)63, (char)79, (char)93, (char)106, (char)118,
            (char)129, (char)141, (char)153, (char)166, (char)181, (char)197, (char)217, (char)241));
        return _mm512_shuffle_epi8(tbl, v);
    }
    const size_t oh = F == KQ_Q5_0 ? 2 : 4;
    uint64_t h = n > 0 ? ld32(p + oh) : 0;
    if (n > 1) h |= (uint64_t)ld32(p + bs + oh) << 32;
    return _mm512_mask_add_epi8(v, _cvtu64_mask64(h), v, _mm512_set1_epi8(16));
}

QR_AI void kq_quad(int F, int MX, int PREP, int NV, const uint8_t *p, int64_t b, const kq_x *x,
                   __m512 (*acc)[2], __m128 *accm) {
    const size_t bs = kq_bs(F);
    const int OFF = F == KQ_Q5_0 ? 16 : F == KQ_IQ4NL ? 128 : 0;
    __m128i g;
    if (NV == 4) {
        g = gather4(p, bs);
    } else {
        g = _mm_loadu_si32(p);
        if (NV > 1) g = _mm_insert_epi32(g, (int)ld32(p + bs), 1);
        if (NV > 2) g = _mm_insert_epi32(g, (int)ld32(p + 2 * bs), 2);
    }
    const __m256 f = _mm256_cvtph_ps(g);   /* [d0 x0 d1 x1 d2 x2 d3 x3], x: m (Q5_1) */
    const __m128 dw = _mm256_castps256_ps128(
        _mm256_permutexvar_ps(_mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0), f));
    __m128 mw = _mm_setzero_ps();
    if (F == KQ_Q5_1)
        mw = _mm256_castps256_ps128(
            _mm256_permutexvar_ps(_mm256_setr_epi32(1, 3, 5, 7, 0, 0, 0, 0), f));
    const __m512i w0 = kq_pair_w(F, p, NV < 2 ? NV : 2);
    const __m512i w1 = kq_pair_w(F, p + 2 * bs, NV - 2);
    const __mmask16 kd = (__mmask16)((1u << NV) - 1);
    const __mmask64 kx0 = NV >= 2 ? ~0ull : 0xffffffffull;
    const __mmask64 kx1 = NV >= 4 ? ~0ull : NV == 3 ? 0xffffffffull : 0;
    const __mmask16 kc0 = NV >= 2 ? 0xffff : 0x00ff, kc1 = NV >= 4 ? 0xffff : NV == 3 ? 0x00ff : 0;
    for (int j = 0; j < MX; j++) {
        const int8_t *q = x[j].q + 32 * b;
        const __m128 d4 = NV == 4 ? _mm_loadu_ps(x[j].d + b) : _mm_maskz_loadu_ps(kd, x[j].d + b);
        const __m512 sc = _mm512_castps128_ps512(_mm_mul_ps(dw, d4));
        __m512i x0, x1, s0, s1;
        if (NV == 4) {
            x0 = _mm512_loadu_si512(q);
            x1 = _mm512_loadu_si512(q + 64);
        } else {
            x0 = _mm512_maskz_loadu_epi8(kx0, q);
            x1 = _mm512_maskz_loadu_epi8(kx1, q + 64);
        }
        if (PREP && OFF && NV < 4) {
            const int32_t *c = x[j].c + 8 * b;
            s0 = _mm512_dpbusd_epi32(_mm512_maskz_loadu_epi32(kc0, c), w0, x0);
            s1 = _mm512_dpbusd_epi32(_mm512_maskz_loadu_epi32(kc1, c + 16), w1, x1);
        } else {
            s0 = kq_dp(OFF, PREP, PREP ? x[j].c + 8 * b : NULL, w0, x0);
            s1 = kq_dp(OFF, PREP, PREP ? x[j].c + 8 * b + 16 : NULL, w1, x1);
        }
        acc[j][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_permutexvar_ps(idx32(0), sc),
                                    acc[j][0]);
        acc[j][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_permutexvar_ps(idx32(1), sc),
                                    acc[j][1]);
        if (F == KQ_Q5_1) {
            const __m128 s4 = NV == 4 ? _mm_loadu_ps(x[j].s + b) : _mm_maskz_loadu_ps(kd, x[j].s + b);
            accm[j] = _mm_fmadd_ps(mw, s4, accm[j]);
        }
    }
}

/* one weight row of nb 32-value blocks against MX rows: res[j] 8 lanes summing to row j's dot */
QR_AI void kq_dot32(int F, int MX, int PREP, int DEC, int64_t nb, const uint8_t *w, const kq_x *x,
                    __m256 *res) {
    const size_t bs = kq_bs(F);
    __m512 acc[QR_QMAX_ROWS][2];
    __m128 accm[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        acc[j][0] = acc[j][1] = _mm512_setzero_ps();
        accm[j] = _mm_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *p = w + b * bs;
        kq_prefetch(DEC, p, 4 * bs);
        kq_quad(F, MX, PREP, 4, p, b, x, acc, accm);
    }
    switch (nb - b) {
    case 3: kq_quad(F, MX, PREP, 3, w + b * bs, b, x, acc, accm); break;
    case 2: kq_quad(F, MX, PREP, 2, w + b * bs, b, x, acc, accm); break;
    case 1: kq_quad(F, MX, PREP, 1, w + b * bs, b, x, acc, accm); break;
    default: break;
    }
    for (int j = 0; j < MX; j++) {
        res[j] = fold512(_mm512_add_ps(acc[j][0], acc[j][1]));
        if (F == KQ_Q5_1) res[j] = _mm256_add_ps(res[j], _mm256_zextps128_ps256(accm[j]));
    }
}

/* ------------------------------------------------------------------ super-blocks of 256 */
/* Zmm t (t < 4) of a super-block: its values 64t .. 64t + 63, unsigned (see each format);
 * ws: the sub-block scales D * sc (16 floats: Q2_K, Q3_K, Q6_K; 8: Q4_K, Q5_K), wm: the
 * mins dmin * m (Q2_K 16, Q4_K / Q5_K 8). */
QR_AI int kq_sbs(int F) {
    return F == KQ_Q2K ? 84 : F == KQ_Q3K ? 110 : F == KQ_Q4K ? 144 : F == KQ_Q5K ? 176 : 210;
}

/* Q4_K / Q5_K scales: the 8 6-bit scales and mins of sc[12] as bytes [sc0..7 | m0..7]
 * (scale_min_k4; v: 16 bytes from sc) */
QR_AI __m128i kq_scales_k4(__m128i v) {
    const __m128i m6 = _mm_set1_epi8(63), m4 = _mm_set1_epi8(15), m2 = _mm_set1_epi8(3);
    __m128i lo = _mm_and_si128(v, m6);                                     /* [sc0-3 m0-3 ..] */
    __m128i u2 = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2));
    u2 = _mm_and_si128(_mm_srlv_epi32(u2, _mm_setr_epi32(0, 4, 0, 0)), m4);  /* [u2&f, u2>>4&f] */
    __m128i t = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(v, 6), m2), 4);
    __m128i hi = _mm_or_si128(u2, t);                                      /* [sc4-7, m4-7] */
    return _mm_unpacklo_epi32(lo, hi);                                     /* sc0-3 sc4-7 m.. */
}

/* Q3_K scales: the 16 6-bit scales (scale_q3k, unbiased: 0..63) as bytes; v: 16 bytes from
 * sc - 2 (the block's bytes 94 .. 109: a whole-block load) */
QR_AI __m128i kq_scales_q3k(__m128i v) {
    const __m128i a01 = _mm_shuffle_epi8(v, _mm_setr_epi8(2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6,
                                                          7, 8, 9));   /* [a0 a1 a0 a1] */
    const __m128i a2 = _mm_shuffle_epi8(v, _mm_setr_epi8(10, 11, 12, 13, 10, 11, 12, 13, 10, 11,
                                                         12, 13, 10, 11, 12, 13));
    __m128i lo = _mm_and_si128(_mm_srlv_epi32(a01, _mm_setr_epi32(0, 0, 4, 4)), _mm_set1_epi8(15));
    __m128i hi = _mm_and_si128(_mm_srlv_epi32(a2, _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    return _mm_or_si128(lo, _mm_slli_epi32(hi, 4));
}

/* one super-block at sb: wv[4], ws16 / ws8, wm16 / wm8 */
QR_AI void kq_sb_decode(int F, const uint8_t *sb, __m512i wv[4], __m512 *ws16, __m256 *ws8,
                        __m512 *wm16, __m256 *wm8) {
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
    if (F == KQ_Q4K || F == KQ_Q5K) {
        const uint8_t *qs = sb + (F == KQ_Q4K ? 16 : 48);
        for (int t = 0; t < 4; t++) {   /* qs[32t ..][32]: low nibbles, then high ones */
            __m512i v = bcast32(qs + 32 * t);
            wv[t] = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xffff0000u, v, 4), m4);
        }
        if (F == KQ_Q5K) {   /* bit 2t (first half), 2t + 1 (second) of qh[l]: +16 */
            const __m512i qh = bcast32(sb + 16);
            for (int t = 0; t < 4; t++) {
                const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * t))),
                                                       _mm256_set1_epi8((char)(2 << (2 * t))), 1);
                wv[t] = _mm512_mask_add_epi8(wv[t], _mm512_test_epi8_mask(qh, bit), wv[t],
                                             _mm512_set1_epi8(16));
            }
        }
        const __m512i scm = _mm512_cvtepu8_epi32(kq_scales_k4(_mm_loadu_si128((const __m128i *)(sb + 4))));
        const __m512 dd = _mm512_permutexvar_ps(
            _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
            _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadu_si32(sb))));   /* [D x8 | dmin x8] */
        const __m512 f = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(scm));
        *ws8 = _mm512_castps512_ps256(f);
        *wm8 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1));
    } else if (F == KQ_Q6K) {
        for (int i = 0; i < 2; i++) {   /* ql[64i ..][64] (>> 4 for t odd), qh[32i ..][32] */
            const __m512i l = _mm512_loadu_si512(sb + 64 * i);
            const __m512i h = bcast32(sb + 128 + 32 * i);
            const __m512i m30 = _mm512_set1_epi8(0x30);
            /* high 2 bits to bits 4-5: s = 0, 1 (<< 4, << 2), s = 2, 3 (>> 0, >> 2) */
            const __m512i h0 = _mm512_and_si512(
                _mm512_sllv_epi16(h, _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1)),
                m30);
            const __m512i h1 = _mm512_and_si512(_mm512_mask_srli_epi16(h, 0xffff0000u, h, 2), m30);
            wv[2 * i] = _mm512_ternarylogic_epi32(l, h0, m4, 0xec);   /* (l & 15) | h0 */
            wv[2 * i + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), h1, m4, 0xec);
        }
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(sb + 192))));
        *ws16 = _mm512_mul_ps(_mm512_set1_ps(h2f(sb + 208)), sc);
    } else {   /* Q2_K, Q3_K: 2-bit quants qs[32i + l] >> 2s (values 128i + 32s + l) */
        const uint8_t *qs = sb + (F == KQ_Q2K ? 16 : 32);
        for (int i = 0; i < 2; i++) {
            const __m512i v = bcast32(qs + 32 * i);
            const __m512i base = _mm512_mask_srli_epi16(v, 0xffff0000u, v, 2);   /* s = 0 | 1 */
            wv[2 * i] = _mm512_and_si512(base, m2);
            wv[2 * i + 1] = _mm512_and_si512(_mm512_srli_epi16(base, 4), m2);   /* s = 2 | 3 */
        }
        if (F == KQ_Q3K) {   /* bit 2t | 2t + 1 of hm[l] set: + 4 (value q_u - 4) */
            const __m512i hm = bcast32(sb);
            for (int t = 0; t < 4; t++) {
                const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * t))),
                                                       _mm256_set1_epi8((char)(2 << (2 * t))), 1);
                wv[t] = _mm512_mask_add_epi8(wv[t], _mm512_test_epi8_mask(hm, bit), wv[t],
                                             _mm512_set1_epi8(4));
            }
            const __m512i s6 = _mm512_cvtepu8_epi32(kq_scales_q3k(_mm_loadu_si128((const __m128i *)(sb + 94))));
            *ws16 = _mm512_mul_ps(_mm512_set1_ps(h2f(sb + 108)),
                                  _mm512_cvtepi32_ps(_mm512_sub_epi32(s6, _mm512_set1_epi32(32))));
        } else {
            const __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)sb));
            *ws16 = _mm512_mul_ps(_mm512_set1_ps(h2f(sb + 80)),
                                  _mm512_cvtepi32_ps(_mm512_and_si512(s, _mm512_set1_epi32(15))));
            *wm16 = _mm512_mul_ps(_mm512_set1_ps(h2f(sb + 82)),
                                  _mm512_cvtepi32_ps(_mm512_srli_epi32(s, 4)));
        }
    }
}

/* super-block u (at sb) against MX rows: acc[j][t & 1] += lanes * scale; the min terms into
 * accm16 (Q2_K) / accm8 (Q4_K, Q5_K), subtracted at the end */
QR_AI void kq_sb(int F, int MX, int PREP, const uint8_t *sb, int64_t u, const kq_x *x,
                 __m512 (*acc)[2], __m512 *accm16, __m256 *accm8) {
    const int SUB16 = F == KQ_Q2K || F == KQ_Q3K || F == KQ_Q6K;
    const int OFF = F == KQ_Q6K ? 32 : F == KQ_Q3K ? 4 : 0;
    __m512i wv[4];
    __m512 ws16 = _mm512_setzero_ps(), wm16 = _mm512_setzero_ps();
    __m256 ws8 = _mm256_setzero_ps(), wm8 = _mm256_setzero_ps();
    kq_sb_decode(F, sb, wv, &ws16, &ws8, &wm16, &wm8);
    const __m512i pair = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    for (int j = 0; j < MX; j++) {
        const int8_t *q = x[j].q + 256 * u;
        const __m256 d8 = _mm256_loadu_ps(x[j].d + 8 * u);
        __m512 dexp = _mm512_setzero_ps(), sc;
        if (SUB16) {   /* sub-block j' of 16 lies in activation block j' / 2 */
            dexp = _mm512_permutexvar_ps(pair, _mm512_castps256_ps512(d8));
            sc = _mm512_mul_ps(ws16, dexp);
        } else {
            sc = _mm512_castps256_ps512(_mm256_mul_ps(ws8, d8));
        }
        for (int t = 0; t < 4; t++) {
            const __m512i xv = _mm512_loadu_si512(q + 64 * t);
            const __m512i s = kq_dp(OFF, PREP, PREP ? x[j].c + 64 * u + 16 * t : NULL, wv[t], xv);
            const __m512 st = _mm512_permutexvar_ps(SUB16 ? idx16(t) : idx32(t), sc);
            acc[j][t & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), st, acc[j][t & 1]);
            if (F == KQ_Q2K && !PREP) {   /* min: each lane's 4 activations' sum, scaled */
                const __m512i l = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                      _mm512_set1_epi8(1), xv);
                accm16[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(l),
                                            _mm512_permutexvar_ps(idx16(t), _mm512_mul_ps(wm16, dexp)),
                                            accm16[j]);
            }
        }
        if (F == KQ_Q2K && PREP)
            accm16[j] = _mm512_fmadd_ps(wm16, _mm512_loadu_ps(x[j].s16 + 16 * u), accm16[j]);
        if (F == KQ_Q4K || F == KQ_Q5K)
            accm8[j] = _mm256_fmadd_ps(wm8, _mm256_loadu_ps(x[j].s + 8 * u), accm8[j]);
    }
}

/* one weight row of nb / 8 super-blocks against MX rows: res[j] 8 lanes summing to the dot */
QR_AI void kq_dot256(int F, int MX, int PREP, int DEC, int64_t nb, const uint8_t *w,
                     const kq_x *x, __m256 *res) {
    const size_t bs = kq_sbs(F);
    __m512 acc[QR_QMAX_ROWS][2], accm16[QR_QMAX_ROWS];
    __m256 accm8[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) {
        acc[j][0] = acc[j][1] = accm16[j] = _mm512_setzero_ps();
        accm8[j] = _mm256_setzero_ps();
    }
    for (int64_t u = 0; u < nb / 8; u++) {
        const uint8_t *p = w + u * bs;
        kq_prefetch(DEC, p, bs);
        kq_sb(F, MX, PREP, p, u, x, acc, accm16, accm8);
    }
    for (int j = 0; j < MX; j++) {
        res[j] = fold512(_mm512_add_ps(acc[j][0], acc[j][1]));
        if (F == KQ_Q2K) res[j] = _mm256_sub_ps(res[j], fold512(accm16[j]));
        if (F == KQ_Q4K || F == KQ_Q5K) res[j] = _mm256_sub_ps(res[j], accm8[j]);
    }
}

QR_AI void kq_dot(int F, int MX, int PREP, int DEC, int64_t nb, const uint8_t *w, const kq_x *x,
                  __m256 *res) {
    if (F <= KQ_IQ4NL) kq_dot32(F, MX, PREP, DEC, nb, w, x, res);
    else kq_dot256(F, MX, PREP, DEC, nb, w, x, res);
}

/* ------------------------------------------------------------------ entry points */
/* prompts: one weight row against mx (1 .. QR_QMAX_ROWS) q8 rows, xs bytes apart */
QR_AI void kq_qdot(int F, int MX, int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs,
                   float *out) {
    kq_x x[QR_QMAX_ROWS];
    __m256 res[QR_QMAX_ROWS];
    for (int j = 0; j < MX; j++) x[j] = kq_row(xq + j * xs, nb);
    kq_dot(F, MX, 0, 0, nb, w, x, res);
    for (int j = 0; j < MX; j++) out[j] = hsum256(res[j]);
}

/* decode rows: 8 at a time, each as 8 lanes, their sums at once (hsum8x) */
QR_AI void kq_rows_loop(int F, int PREP, int64_t nb, const uint8_t *w, size_t wrow,
                        int64_t nrows, const kq_x *x, float *y) {
    for (int64_t r = 0; r < nrows; r += 8) {
        const int n = nrows - r < 8 ? (int)(nrows - r) : 8;
        __m256 v[8];
        for (int i = 0; i < 8; i++) {
            if (i < n) kq_dot(F, 1, PREP, 1, nb, w + (r + i) * wrow, x, &v[i]);
            else v[i] = _mm256_setzero_ps();
        }
        float out[8];
        _mm256_storeu_ps(out, hsum8x(v));
        memcpy(y + r, out, (size_t)n * sizeof(float));
    }
}

QR_AI void kq_rows1(int F, int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                    const uint8_t *xq, float *y) {
    const int OFF = F == KQ_Q5_0 ? 16 : F == KQ_IQ4NL ? 128 : F == KQ_Q3K ? 4 : F == KQ_Q6K ? 32 : 0;
    const int S16 = F == KQ_Q2K;
    prefetch_head(w, (size_t)nrows * wrow);
    kq_x x = kq_row(xq, nb);
    if (!OFF && !S16) {
        kq_rows_loop(F, 0, nb, w, wrow, nrows, &x, y);
        return;
    }
    /* the per-call data: C [8 nb] int32 (OFF), s16 [2 nb] float (Q2_K), 64-aligned */
    _Alignas(64) uint8_t stack[QR_KQ_STACK_NB * 32 + QR_KQ_STACK_NB * 8];
    const size_t cbytes = OFF ? qr_a64((size_t)nb * 32) : 0, sbytes = S16 ? (size_t)nb * 8 : 0;
    uint8_t *buf = stack, *heap = NULL;
    if (cbytes + sbytes > sizeof stack) {
        heap = aligned_alloc(64, qr_a64(cbytes + sbytes));
        if (!heap) {   /* no memory: on the fly, as qdot */
            kq_rows_loop(F, 0, nb, w, wrow, nrows, &x, y);
            return;
        }
        buf = heap;
    }
    int32_t *c = (int32_t *)buf;
    float *s16 = (float *)(buf + cbytes);
    kq_prepare(OFF, S16, nb, &x, c, s16);
    x.c = c;
    x.s16 = s16;
    kq_rows_loop(F, 1, nb, w, wrow, nrows, &x, y);
    free(heap);
}

#define KQ_ENTRY(name, F)                                                                   \
    static void qr__qdot_##name##_kq512(int64_t nb, const uint8_t *w, const uint8_t *xq,      \
                                        size_t xs, int mx, float *out) {                      \
        switch (mx) {                                                                       \
        case 1: kq_qdot(F, 1, nb, w, xq, xs, out); break;                                   \
        case 2: kq_qdot(F, 2, nb, w, xq, xs, out); break;                                   \
        case 3: kq_qdot(F, 3, nb, w, xq, xs, out); break;                                   \
        default: kq_qdot(F, 4, nb, w, xq, xs, out); break;                                  \
        }                                                                                   \
    }                                                                                       \
    static void qr__qrows_##name##_kq512(int64_t nb, const uint8_t *w, size_t wrow,           \
                                         int64_t nrows, const uint8_t *xq, float *y) {        \
        kq_rows1(F, nb, w, wrow, nrows, xq, y);                                             \
    }
_Static_assert(QR_QMAX_ROWS == 4, "the qdot entries serve 1 .. 4 rows");
KQ_ENTRY(q5_0, KQ_Q5_0)
KQ_ENTRY(q5_1, KQ_Q5_1)
KQ_ENTRY(iq4_nl, KQ_IQ4NL)
KQ_ENTRY(q2_k, KQ_Q2K)
KQ_ENTRY(q3_k, KQ_Q3K)
KQ_ENTRY(q4_k, KQ_Q4K)
KQ_ENTRY(q5_k, KQ_Q5K)
KQ_ENTRY(q6_k, KQ_Q6K)

/* ------------------------------------------------------------------ dequantization */
/* y[k] = a row of 32-value blocks: the block dequantizers' expressions per lane
 *   Q5_0 d * (float)(q - 16), Q5_1 d * (float)q + m, IQ4_NL d * (float)KV[nib] */
QR_AI void kq_dequant32(int F, const uint8_t *w, float *y, int64_t k) {
    const size_t bs = kq_bs(F);
    const __m128i m4 = _mm_set1_epi8(15);
    const __m128i kv = _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53,
                                     69, 89, 113);
    for (int64_t b = 0; b < k / QR_QK; b++, w += bs, y += QR_QK) {
        const __m512 d = _mm512_set1_ps(h2f(w));
        const size_t oq = F == KQ_Q5_0 ? 6 : F == KQ_Q5_1 ? 8 : 2;
        const __m128i raw = _mm_loadu_si128((const __m128i *)(w + oq));
        const __m128i lo = _mm_and_si128(raw, m4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
        __m512i q0, q1;
        if (F == KQ_IQ4NL) {
            q0 = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(kv, lo));
            q1 = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(kv, hi));
        } else {
            const uint32_t h = ld32(w + (F == KQ_Q5_0 ? 2 : 4));
            const __m512i b16 = _mm512_set1_epi32(16);
            q0 = _mm512_cvtepu8_epi32(lo);
            q1 = _mm512_cvtepu8_epi32(hi);
            q0 = _mm512_mask_or_epi32(q0, (__mmask16)h, q0, b16);
            q1 = _mm512_mask_or_epi32(q1, (__mmask16)(h >> 16), q1, b16);
            if (F == KQ_Q5_0) {
                q0 = _mm512_sub_epi32(q0, b16);
                q1 = _mm512_sub_epi32(q1, b16);
            }
        }
        __m512 y0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(q0));
        __m512 y1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(q1));
        if (F == KQ_Q5_1) {
            const __m512 m = _mm512_set1_ps(h2f(w + 2));
            y0 = _mm512_add_ps(y0, m);
            y1 = _mm512_add_ps(y1, m);
        }
        _mm512_storeu_ps(y, y0);
        _mm512_storeu_ps(y + 16, y1);
    }
}

/* the super-block formats: per sub-block j, dl = d * (float)sc_j (and ml = dmin * (float)m_j)
 * in vectors, stored and broadcast back (a load each); y = dl * (float)q (- ml) per lane */
QR_AI void kq_dequant256(int F, const uint8_t *w, float *y, int64_t k) {
    const size_t bs = kq_sbs(F);
    _Alignas(64) float dl[16], ml[16];
    for (int64_t u = 0; u < k / 256; u++, w += bs, y += 256) {
        if (F == KQ_Q2K) {
            const __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)w));
            _mm512_store_ps(dl, _mm512_mul_ps(_mm512_set1_ps(h2f(w + 80)),
                                              _mm512_cvtepi32_ps(_mm512_and_si512(s, _mm512_set1_epi32(15)))));
            _mm512_store_ps(ml, _mm512_mul_ps(_mm512_set1_ps(h2f(w + 82)),
                                              _mm512_cvtepi32_ps(_mm512_srli_epi32(s, 4))));
            for (int i = 0; i < 2; i++)
                for (int h = 0; h < 2; h++) {   /* qs[32i + 16h ..][16] >> 2s: sub-block 8i + 2s + h */
                    const __m512i r = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 16 + 32 * i + 16 * h)));
                    for (int s = 0; s < 4; s++) {
                        const int j = 8 * i + 2 * s + h;
                        const __m512i q = _mm512_and_si512(_mm512_srli_epi32(r, 2 * s), _mm512_set1_epi32(3));
                        _mm512_storeu_ps(y + 16 * j, _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(dl[j]), _mm512_cvtepi32_ps(q)),
                                                                   _mm512_set1_ps(ml[j])));
                    }
                }
        } else if (F == KQ_Q3K) {
            const __m512i s6 = _mm512_cvtepu8_epi32(kq_scales_q3k(_mm_loadu_si128((const __m128i *)(w + 94))));
            _mm512_store_ps(dl, _mm512_mul_ps(_mm512_set1_ps(h2f(w + 108)),
                                              _mm512_cvtepi32_ps(_mm512_sub_epi32(s6, _mm512_set1_epi32(32)))));
            for (int h = 0; h < 2; h++) {
                const __m512i hm = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 16 * h)));
                for (int i = 0; i < 2; i++) {
                    const __m512i r = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 32 + 32 * i + 16 * h)));
                    for (int s = 0; s < 4; s++) {   /* e = 128i + 32s + 16h + l: sub-block 8i + 2s + h */
                        const int j = 8 * i + 2 * s + h;
                        __m512i q = _mm512_and_si512(_mm512_srli_epi32(r, 2 * s), _mm512_set1_epi32(3));
                        const __mmask16 clear = _mm512_testn_epi32_mask(hm, _mm512_set1_epi32(1 << (4 * i + s)));
                        q = _mm512_mask_sub_epi32(q, clear, q, _mm512_set1_epi32(4));
                        _mm512_storeu_ps(y + 16 * j, _mm512_mul_ps(_mm512_set1_ps(dl[j]), _mm512_cvtepi32_ps(q)));
                    }
                }
            }
        } else if (F == KQ_Q6K) {
            const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(w + 192)));
            _mm512_store_ps(dl, _mm512_mul_ps(_mm512_set1_ps(h2f(w + 208)), _mm512_cvtepi32_ps(sc)));
            for (int i = 0; i < 2; i++)
                for (int g = 0; g < 2; g++) {   /* l = 16g + .. < 32 of the 32-byte qh row */
                    const __m512i hr = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 128 + 32 * i + 16 * g)));
                    for (int lh = 0; lh < 2; lh++) {   /* ql byte l' = 16g + 32lh (< 64) */
                        const __m512i lr = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 64 * i + 16 * g + 32 * lh)));
                        for (int h = 0; h < 2; h++) {
                            /* e = 128i + 64h + 32lh + 16g + l: s = 2h + lh */
                            const int s = 2 * h + lh, j = 8 * i + 2 * s + g;
                            const __m512i lo = h ? _mm512_srli_epi32(lr, 4) : _mm512_and_si512(lr, _mm512_set1_epi32(15));
                            const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(hr, 2 * s), _mm512_set1_epi32(3));
                            const __m512i q = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)),
                                                               _mm512_set1_epi32(32));
                            _mm512_storeu_ps(y + 16 * j, _mm512_mul_ps(_mm512_set1_ps(dl[j]), _mm512_cvtepi32_ps(q)));
                        }
                    }
                }
        } else {   /* Q4_K, Q5_K: sub-blocks of 32 */
            const __m512i scm = _mm512_cvtepu8_epi32(kq_scales_k4(_mm_loadu_si128((const __m128i *)(w + 4))));
            const __m512 dd = _mm512_permutexvar_ps(
                _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadu_si32(w))));
            _mm512_store_ps(dl, _mm512_mul_ps(dd, _mm512_cvtepi32_ps(scm)));   /* dl[0..7] | ml */
            const uint8_t *qs = w + (F == KQ_Q4K ? 16 : 48);
            for (int i = 0; i < 4; i++)
                for (int g = 0; g < 2; g++) {   /* qs[32i + 16g ..][16]: e = 64i + 32h + 16g + l */
                    const __m512i r = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qs + 32 * i + 16 * g)));
                    __m512i qh = _mm512_setzero_si512();
                    if (F == KQ_Q5K) qh = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 16 + 16 * g)));
                    for (int h = 0; h < 2; h++) {
                        const int j = 2 * i + h;
                        __m512i q = h ? _mm512_srli_epi32(r, 4) : _mm512_and_si512(r, _mm512_set1_epi32(15));
                        if (F == KQ_Q5K)
                            q = _mm512_mask_or_epi32(q, _mm512_test_epi32_mask(qh, _mm512_set1_epi32(1 << j)), q,
                                                     _mm512_set1_epi32(16));
                        _mm512_storeu_ps(y + 64 * i + 32 * h + 16 * g,
                                         _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(dl[j]), _mm512_cvtepi32_ps(q)),
                                                       _mm512_set1_ps(dl[8 + j])));
                    }
                }
        }
    }
}

#define KQ_DEQUANT(name, F)                                                                 \
    static void qr__dequant_##name##_kq512(const uint8_t *w, float *y, int64_t k) {           \
        if ((F) <= KQ_IQ4NL) kq_dequant32(F, w, y, k);                                      \
        else kq_dequant256(F, w, y, k);                                                     \
    }
KQ_DEQUANT(q5_0, KQ_Q5_0)
KQ_DEQUANT(q5_1, KQ_Q5_1)
KQ_DEQUANT(iq4_nl, KQ_IQ4NL)
KQ_DEQUANT(q2_k, KQ_Q2K)
KQ_DEQUANT(q3_k, KQ_Q3K)
KQ_DEQUANT(q4_k, KQ_Q4K)
KQ_DEQUANT(q5_k, KQ_Q5K)
KQ_DEQUANT(q6_k, KQ_Q6K)

/* ------------------------------------------------------------------ BF16 */
/* 16 bf16 at w as floats (the top halves of float32s) */
QR_AI __m512 bf16x16(const uint16_t *w) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w)), 16));
}

/* BF16 weights against MX float rows: 16 a step, 4 accumulators (MX = 1) or 2 a row; the last
 * 1-15 values through masked loads (quant_avx512.c's F16 kernel with the bf16 conversion) */
QR_AI void bf_fdot(int MX, int64_t k, const uint16_t *w, const float *x, int64_t ldx,
                   float *out) {
    enum { NA = 4 };
    const int na = MX == 1 ? 4 : 2;
    __m512 acc[QR_QMAX_ROWS][NA];
    for (int j = 0; j < MX; j++)
        for (int a = 0; a < na; a++) acc[j][a] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 * na <= k; i += 16 * na) {
        _mm_prefetch((const char *)(w + i + 512), _MM_HINT_T0);   /* 1 KiB ahead */
        if (na == 4) _mm_prefetch((const char *)(w + i + 544), _MM_HINT_T0);
        for (int a = 0; a < na; a++) {
            const __m512 wv = bf16x16(w + i + 16 * a);
            for (int j = 0; j < MX; j++)
                acc[j][a] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + j * ldx + i + 16 * a), acc[j][a]);
        }
    }
    for (; i + 16 <= k; i += 16) {
        const __m512 wv = bf16x16(w + i);
        for (int j = 0; j < MX; j++)
            acc[j][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + j * ldx + i), acc[j][0]);
    }
    if (i < k) {
        const __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        const __m512 wv = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, w + i)), 16));
        for (int j = 0; j < MX; j++)
            acc[j][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + j * ldx + i), acc[j][0]);
    }
    for (int j = 0; j < MX; j++) {
        __m512 t = acc[j][0];
        for (int a = 1; a < na; a++) t = _mm512_add_ps(t, acc[j][a]);
        out[j] = hsum256(fold512(t));
    }
}

static void qr__fdot_bf16_kq512(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx,
                                float *out) {
    switch (mx) {
    case 1: bf_fdot(1, k, w, x, ldx, out); break;
    case 2: bf_fdot(2, k, w, x, ldx, out); break;
    case 3: bf_fdot(3, k, w, x, ldx, out); break;
    default: bf_fdot(4, k, w, x, ldx, out); break;
    }
}

static void qr__qrows_bf16_kq512(int64_t k, const uint8_t *w, size_t wrow, int64_t nrows,
                                 const uint8_t *x, float *y) {   /* x: float32 [k] */
    prefetch_head(w, (size_t)nrows * wrow);
    for (int64_t r = 0; r < nrows; r++)
        bf_fdot(1, k, (const uint16_t *)(w + r * wrow), (const float *)x, 0, y + r);
}

static void qr__dequant_bf16_kq512(const uint8_t *w, float *y, int64_t k) {
    const uint16_t *h = (const uint16_t *)w;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) _mm512_storeu_ps(y + i, bf16x16(h + i));
    if (i < k) {
        const __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(
                                            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, h + i)), 16)));
    }
}

/* ------------------------------------------------------------------ the table */
qr_kq_kernels qr__kq_avx512(int qtype) {
    qr_kq_kernels k = {0};
#define KQ_SET(name)                                                                        \
    k.qdot = qr__qdot_##name##_kq512;                                                       \
    k.rows1 = qr__qrows_##name##_kq512;                                                     \
    k.dequant_row = qr__dequant_##name##_kq512;                                             \
    break;
    switch (qtype) {
    case QR_QTYPE_Q5_0: KQ_SET(q5_0)
    case QR_QTYPE_Q5_1: KQ_SET(q5_1)
    case QR_QTYPE_IQ4_NL: KQ_SET(iq4_nl)
    case QR_QTYPE_Q2_K: KQ_SET(q2_k)
    case QR_QTYPE_Q3_K: KQ_SET(q3_k)
    case QR_QTYPE_Q4_K: KQ_SET(q4_k)
    case QR_QTYPE_Q5_K: KQ_SET(q5_k)
    case QR_QTYPE_Q6_K: KQ_SET(q6_k)
    case QR_QTYPE_BF16:
        k.fdot = qr__fdot_bf16_kq512;
        k.rows1 = qr__qrows_bf16_kq512;
        k.dequant_row = qr__dequant_bf16_kq512;
        break;
    default: break;
    }
#undef KQ_SET
    return k;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int qr_quant_kq_avx512_unused;   /* no VNNI in this compiler: these formats run AVX2 */
#endif
