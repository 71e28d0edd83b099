/* quant_kq_avx512.c - the AVX-512 BW/VL + VNNI kernels of quant_kformats.c's formats (Q5_0, Q5_1,
 * IQ4_NL, Q2_K .. Q6_K, BF16): the table quant.c and quant_formats.c consult on this tier
 * (quant_internal.h qr_kq_kernels). A format without an entry runs its portable kernels.
 *
 * Products with q8 activation rows (natural layout: int8 q[32 nb] | float d[nb] | float s[nb]):
 * weights unpacked to unsigned bytes w_u (vpdpbusd's unsigned operand) against the signed
 * activation bytes; vpdpbusd gives exact int32 lanes of 4 products each. Formats whose quants
 * are signed enter as w_u = w + OFF (Q5_0 16, IQ4_NL 128 (its table plus 128), Q3_K 4, Q6_K
 * 32) and the lane starts at C = -OFF * (its 4 activations' sum), so it ends as the exact
 * signed dot product (|lane| <= 4 * 255 * 127 + 4 * 128 * 127 < 2^20). Every lane lies in one
 * sub-block and one activation block, so it is scaled by one float, (D_w * sc) * d_x (or by
 * the integer scale first: Q2_K, Q3_K below), converted and summed in float32, as the
 * portable code does: within the products' tolerance of it. The min terms (Q5_1 m, Q2_K /
 * Q4_K / Q5_K dmin * m) are float products with the activation sums: s (blocks of 32) or
 * d * the sum of 16 (Q2_K).
 *   qdot (prompts through matmul_q, 1 .. 4 rows a call, once per weight row) reads the natural
 *     rows as they are: 64 consecutive values a zmm, C and the sums of 16 computed on the fly,
 *     the lane scales expanded by one vpermps a zmm.
 *   rows1 (decode: one activation row against a range of weight rows) first rewrites that row
 *     once for the whole range (see "decode: prepared rows": stack, or heap past
 *     QR_KQ_STACK_BYTES) into the order the weights' bytes come in and the per-lane data its
 *     kernel wants (C, lane scales, sums), then streams the weight rows through it, 8 rows'
 *     sums at a time, prefetching QR_PF_AHEAD bytes on. Q6_K keeps the natural row with C.
 * The result of a row depends on its bytes and the activations alone (not on the range it
 * lies in, nor on the rows beside it): identical for any thread count.
 *
 * Dequantization and the BF16 kernels are quant_kq_dequant_avx512.c's (this table takes them
 * from there). VNNI is enabled for these two files alone, as in quant_avx512.c (quant.c calls
 * them only where the CPU has AVX512VNNI); nothing here needs more than AVX-512 F/BW/VL/DQ +
 * VNNI (no VBMI). */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "qorus.h"
#include "quant_internal.h"
#include "quant_x86.h"

#ifdef QR_HAVE_QUANT_AVX512

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif

#define QR_AI static inline __attribute__((always_inline))
#include "quant_avx512_blocks.h"   /* after the target pragma: see there */
#include "quant_kq_avx512.h"

/* how far ahead in a decode weight stream to prefetch (quant_avx512.c's) */
#define QR_PF_AHEAD 2048
/* rows1's prepared activation row lives on the stack up to this size (K of about 14000 for
 * the 32-value formats, 12000 for Q3_K, 32000 for Q4_K), on the heap past it */
#define QR_KQ_STACK_BYTES 32768

/* the lines of one weight unit of n bytes at p, QR_PF_AHEAD on (DEC: the decode stream) or
 * two units on (a prompt's tile, in L2) */
QR_AI void kq_prefetch(int DEC, const uint8_t *p, size_t n) {
    const uint8_t *a = p + (DEC ? QR_PF_AHEAD : 2 * n);
    for (size_t o = 0; o < n; o += 64) _mm_prefetch((const char *)(a + o), _MM_HINT_T0);
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
    const int32_t *c;    /* Q6_K rows1's prepared lane starts -32 * (4 q's sum) [8 nb], or NULL */
} kq_x;

QR_AI kq_x kq_row(const uint8_t *xq, int64_t nb) {
    kq_x x;
    x.q = (const int8_t *)xq;
    x.d = (const float *)(xq + nb * QR_QK);
    x.s = x.d + nb;
    x.c = NULL;
    return x;
}

/* the exact lanes of weights wv (unsigned, value wv - OFF) with 64 activations xv; c: the
 * prepared starts (PREP: Q6_K's rows1), else computed here (0 - OFF * the lane sums) */
QR_AI __m512i kq_dp(int OFF, int PREP, const int32_t *c, __m512i wv, __m512i xv) {
    if (!OFF) return _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv);
    if (PREP) return _mm512_dpbusd_epi32(_mm512_load_si512(c), wv, xv);
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv);
    return _mm512_sub_epi32(s, _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                   _mm512_set1_epi8((char)OFF), xv));
}

/* Q6_K rows1's lane starts: c[8b + g] = -off * (q[32b + 4g] + .. + q[32b + 4g + 3]), b < nb
 * (even: whole super-blocks) */
static void kq_prepare_c(int off, int64_t nb, const kq_x *x, int32_t *c) {
    const __m512i voff = _mm512_set1_epi8((char)off);
    for (int64_t b = 0; b + 2 <= nb; b += 2) {
        __m512i l = _mm512_dpbusd_epi32(_mm512_setzero_si512(), voff, _mm512_loadu_si512(x->q + 32 * b));
        _mm512_store_si512(c + 8 * b, _mm512_sub_epi32(_mm512_setzero_si512(), l));
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
/* 16 quant bytes of blocks at p (n of 2 present) as [qs0 | qs0 | qs1 | qs1] */
QR_AI __m512i kq_pair_qs(const uint8_t *p, size_t bs, int n) {
    if (n <= 0) return _mm512_setzero_si512();
    __m256i a = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    if (n == 1) return _mm512_inserti64x4(_mm512_setzero_si512(), a, 0);
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
    uint64_t h = n > 0 ? qr__ld32(p + oh) : 0;
    if (n > 1) h |= (uint64_t)qr__ld32(p + bs + oh) << 32;
    return _mm512_mask_add_epi8(v, _cvtu64_mask64(h), v, _mm512_set1_epi8(16));
}

QR_AI void kq_quad(int F, int MX, int NV, const uint8_t *p, int64_t b, const kq_x *x,
                   __m512 (*acc)[2], __m128 *accm) {
    const size_t bs = kq_bs(F);
    const int OFF = F == KQ_Q5_0 ? 16 : F == KQ_IQ4NL ? 128 : 0;
    __m128i g;
    if (NV == 4) {
        g = qr__gather4(p, bs);
    } else {
        g = _mm_loadu_si32(p);
        if (NV > 1) g = _mm_insert_epi32(g, (int)qr__ld32(p + bs), 1);
        if (NV > 2) g = _mm_insert_epi32(g, (int)qr__ld32(p + 2 * bs), 2);
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
        s0 = kq_dp(OFF, 0, NULL, w0, x0);
        s1 = kq_dp(OFF, 0, NULL, w1, x1);
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
QR_AI void kq_dot32(int F, int MX, int DEC, int64_t nb, const uint8_t *w, const kq_x *x,
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
        kq_quad(F, MX, 4, p, b, x, acc, accm);
    }
    switch (nb - b) {
    case 3: kq_quad(F, MX, 3, w + b * bs, b, x, acc, accm); break;
    case 2: kq_quad(F, MX, 2, w + b * bs, b, x, acc, accm); break;
    case 1: kq_quad(F, MX, 1, w + b * bs, b, x, acc, accm); break;
    default: break;
    }
    for (int j = 0; j < MX; j++) {
        res[j] = qr__fold512(_mm512_add_ps(acc[j][0], acc[j][1]));
        if (F == KQ_Q5_1) res[j] = _mm256_add_ps(res[j], _mm256_insertf128_ps(_mm256_setzero_ps(), accm[j], 0));
    }
}

/* ------------------------------------------------------------------ super-blocks of 256 */
/* Zmm t (t < 4) of a super-block: its values 64t .. 64t + 63, unsigned (see each format);
 * ws: the sub-block scales D * sc (16 floats: Q2_K, Q3_K, Q6_K; 8: Q4_K, Q5_K), wm: the
 * mins dmin * m (Q2_K 16, Q4_K / Q5_K 8). */
/* kq_scales_k4 for two super-blocks at once (one in each 128-bit lane) */
QR_AI __m256i kq_scales_k4x2(__m256i v) {
    const __m256i m6 = _mm256_set1_epi8(63), m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    __m256i lo = _mm256_and_si256(v, m6);
    __m256i u2 = _mm256_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2));
    u2 = _mm256_and_si256(_mm256_srlv_epi32(u2, _mm256_setr_epi32(0, 4, 0, 0, 0, 4, 0, 0)), m4);
    __m256i t = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(v, 6), m2), 4);
    return _mm256_unpacklo_epi32(lo, _mm256_or_si256(u2, t));
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
        *ws16 = _mm512_mul_ps(_mm512_set1_ps(qr__h2f(sb + 208)), sc);
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
            *ws16 = _mm512_mul_ps(_mm512_set1_ps(qr__h2f(sb + 108)),
                                  _mm512_cvtepi32_ps(_mm512_sub_epi32(s6, _mm512_set1_epi32(32))));
        } else {
            const __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)sb));
            *ws16 = _mm512_mul_ps(_mm512_set1_ps(qr__h2f(sb + 80)),
                                  _mm512_cvtepi32_ps(_mm512_and_si512(s, _mm512_set1_epi32(15))));
            *wm16 = _mm512_mul_ps(_mm512_set1_ps(qr__h2f(sb + 82)),
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
        const __m512 mn = _mm512_mul_ps(wm16, dexp);   /* Q2_K: dmin * m * d per sub-block */
        for (int t = 0; t < 4; t++) {
            const __m512i xv = _mm512_loadu_si512(q + 64 * t);
            const __m512i s = kq_dp(OFF, PREP, PREP ? x[j].c + 64 * u + 16 * t : NULL, wv[t], xv);
            const __m512 st = _mm512_permutexvar_ps(SUB16 ? idx16(t) : idx32(t), sc);
            acc[j][t & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), st, acc[j][t & 1]);
            if (F == KQ_Q2K) {   /* min: each lane's 4 activations' sum, scaled */
                const __m512i l = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                      _mm512_set1_epi8(1), xv);
                accm16[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(l), _mm512_permutexvar_ps(idx16(t), mn),
                                            accm16[j]);
            }
        }
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
        res[j] = qr__fold512(_mm512_add_ps(acc[j][0], acc[j][1]));
        if (F == KQ_Q2K) res[j] = _mm256_sub_ps(res[j], qr__fold512(accm16[j]));
        if (F == KQ_Q4K || F == KQ_Q5K) res[j] = _mm256_sub_ps(res[j], accm8[j]);
    }
}

QR_AI void kq_dot(int F, int MX, int PREP, int DEC, int64_t nb, const uint8_t *w, const kq_x *x,
                  __m256 *res) {
    if (F <= KQ_IQ4NL) kq_dot32(F, MX, DEC, nb, w, x, res);
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
    for (int j = 0; j < MX; j++) out[j] = qr__hsum256(res[j]);
}

/* ------------------------------------------------------------------ decode: prepared rows */
/* rows1 serves a whole row range with one activation row, so it first rewrites that row once
 * into the order and the per-lane data its format's kernel wants (kq_xp), then streams the
 * weight rows through it:
 *   quad (Q5_0, Q5_1, IQ4_NL): quant_internal.h's layout 1 from the natural row: quad t
 *     (blocks 4t .. 4t + 3) at xl + 128t as 4t[0:16] | .. | 4t+3[0:16] | 4t[16:32] | .. ; lane
 *     4k + g covers q[4g ..][4] and q[16 + 4g ..][4] of block 4t + k, so one weight quad's low
 *     and high nibbles (block 4t + k in 128-bit lane k) accumulate into the same lanes:
 *     c[16t + 4k + g] = -OFF * (their 8 q's sum), e[16t + 4k + g] = d[4t + k],
 *     x2[8t + 2k] = 0, x2[8t + 2k + 1] = s[4t + k] (Q5_1's m * s); a last 1-3 blocks' quad:
 *     zeros for the missing blocks.
 *   planes (Q2_K, Q3_K): super-block u at xl + 256u as 4 zmm, plane p (p < 4) byte
 *     32i + l = q of value 128i + 32p + l (i < 2, l < 32): the values whose 2-bit quants sit
 *     in bits 2p, 2p + 1 of qs[32i + l], so one 64-byte load of qs serves the 4 planes;
 *     e: per super-block 32 floats, the activation scale of each int32 lane after the
 *     pack / madd of kq_planes_sb (below), times 1/4 for the odd planes (their quants enter
 *     as 4q); c (Q3_K): -OFF_p * (each lane's 4 q's sum); s16 (Q2_K): d * each 16's sum.
 *   nibbles (Q4_K, Q5_K): super-block u at xl + 256u as 4 zmm, zmm 2m + h (m, h < 2) =
 *     q of values 128m + 32h + [0, 32) | 128m + 64 + 32h + [0, 32): the low (h = 0) or high
 *     nibbles of one 64-byte load of qs[64m ..], so no shuffle builds the weights. */
typedef struct {
    const int8_t *xl;     /* the rewritten q bytes */
    const int32_t *c;     /* lane starts (offset formats) */
    const float *e;       /* lane scales */
    const float *x2;      /* Q5_1: [0 s0 0 s1 0 s2 0 s3] a quad; Q2_K: s16 [16 a super-block] */
} kq_xp;

/* bytes each prepared row takes (64-aligned parts) */
static size_t kq_prep_bytes(int F, int64_t nb) {
    if (F <= KQ_IQ4NL) {
        const size_t nq = ((size_t)nb + 3) / 4;
        return nq * (128 + 64 + 64 + (F == KQ_Q5_1 ? 32 : 0)) + 256;
    }
    if (F == KQ_Q4K || F == KQ_Q5K) return (size_t)nb * 32 + 256;
    return (size_t)nb / 8 * (256 + 128 + (F == KQ_Q3K ? 256 : 64)) + 256;
}

static void kq_prep_quad(int F, int64_t nb, const kq_x *x, uint8_t *buf, kq_xp *o) {
    const int OFF = F == KQ_Q5_0 ? 16 : F == KQ_IQ4NL ? 128 : 0;
    const size_t nq = ((size_t)nb + 3) / 4;
    int8_t *xl = (int8_t *)buf;
    int32_t *c = (int32_t *)(buf + nq * 128);
    float *e = (float *)(buf + nq * 192), *x2 = (float *)(buf + nq * 256);
    const __m128i voff = _mm_set1_epi8((char)OFF);
    for (size_t b = 0; b < 4 * nq; b++) {
        const size_t t = b / 4, k = b % 4;
        __m128i lo = _mm_setzero_si128(), hi = lo;
        float d = 0.0f, sb = 0.0f;
        if ((int64_t)b < nb) {
            lo = _mm_loadu_si128((const __m128i *)(x->q + 32 * b));
            hi = _mm_loadu_si128((const __m128i *)(x->q + 32 * b + 16));
            d = x->d[b];
            sb = x->s[b];
        }
        _mm_storeu_si128((__m128i *)(xl + 128 * t + 16 * k), lo);
        _mm_storeu_si128((__m128i *)(xl + 128 * t + 64 + 16 * k), hi);
        if (OFF) {
            __m128i l = _mm_dpbusd_epi32(_mm_dpbusd_epi32(_mm_setzero_si128(), voff, lo), voff, hi);
            _mm_storeu_si128((__m128i *)(c + 16 * t + 4 * k), _mm_sub_epi32(_mm_setzero_si128(), l));
        }
        _mm_storeu_ps(e + 16 * t + 4 * k, _mm_set1_ps(d));
        if (F == KQ_Q5_1) {
            x2[8 * t + 2 * k] = 0.0f;
            x2[8 * t + 2 * k + 1] = sb;
        }
    }
    o->xl = xl;
    o->c = c;
    o->e = e;
    o->x2 = x2;
}

static void kq_prep_planes(int F, int64_t nb, const kq_x *x, uint8_t *buf, kq_xp *o) {
    const size_t nsb = (size_t)nb / 8;
    int8_t *xl = (int8_t *)buf;
    float *e = (float *)(buf + nsb * 256);
    int32_t *c = (int32_t *)(buf + nsb * 384);
    float *s16 = (float *)(buf + nsb * 384);
    /* lane 4k + v of M01 (planes 0, 1) / M23 (2, 3): plane 2h + v / 2 of 128-bit lane k, value
     * group i = k / 2: activation block 4i + plane */
    const __m512i i01 = _mm512_setr_epi32(0, 0, 1, 1, 0, 0, 1, 1, 4, 4, 5, 5, 4, 4, 5, 5);
    const __m512i i23 = _mm512_add_epi32(i01, _mm512_set1_epi32(2));
    const __m512 odd = _mm512_setr_ps(1, 1, 0.25f, 0.25f, 1, 1, 0.25f, 0.25f, 1, 1, 0.25f, 0.25f,
                                      1, 1, 0.25f, 0.25f);
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    for (size_t u = 0; u < nsb; u++) {
        const int8_t *q = x->q + 256 * u;
        for (int p = 0; p < 4; p++) {
            __m512i v = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(q + 32 * p))),
                _mm256_loadu_si256((const __m256i *)(q + 128 + 32 * p)), 1);
            _mm512_store_si512(xl + 256 * u + 64 * p, v);
            if (F == KQ_Q3K) {   /* offsets 4 (even planes), 16 (odd: 4q + 16 bit - 16) */
                __m512i l = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                _mm512_set1_epi8((char)(p & 1 ? 16 : 4)), v);
                _mm512_store_si512(c + 64 * u + 16 * p, _mm512_sub_epi32(_mm512_setzero_si512(), l));
            }
        }
        const __m512 d8 = _mm512_castps256_ps512(_mm256_loadu_ps(x->d + 8 * u));
        _mm512_store_ps(e + 32 * u, _mm512_mul_ps(_mm512_permutexvar_ps(i01, d8), odd));
        _mm512_store_ps(e + 32 * u + 16, _mm512_mul_ps(_mm512_permutexvar_ps(i23, d8), odd));
        if (F == KQ_Q2K)   /* natural order: s16[16u + j] = d[8u + j / 2] * (sum of q[256u + 16j ..][16]) */
            for (int t = 0; t < 4; t++) {
                __m512i l = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones,
                                                _mm512_loadu_si512(q + 64 * t));
                l = _mm512_add_epi32(l, _mm512_shuffle_epi32(l, _MM_PERM_BADC));
                l = _mm512_add_epi32(l, _mm512_shuffle_epi32(l, _MM_PERM_CDAB));
                __m128 sums = _mm_cvtepi32_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(pick, l)));
                const float *d = x->d + 8 * u + 2 * t;
                _mm_storeu_ps(s16 + 16 * u + 4 * t, _mm_mul_ps(_mm_setr_ps(d[0], d[0], d[1], d[1]), sums));
            }
    }
    o->xl = xl;
    o->c = c;
    o->e = e;
    o->x2 = s16;
}

static void kq_prep_nib(int64_t nb, const kq_x *x, uint8_t *buf, kq_xp *o) {
    int8_t *xl = (int8_t *)buf;
    for (int64_t u = 0; u < nb / 8; u++)
        for (int m = 0; m < 2; m++)
            for (int h = 0; h < 2; h++) {
                const int8_t *q = x->q + 256 * u + 128 * m + 32 * h;
                _mm512_store_si512(xl + 256 * u + 64 * (2 * m + h), _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q)),
                    _mm256_loadu_si256((const __m256i *)(q + 64)), 1));
            }
    o->xl = xl;
    o->c = NULL;
    o->e = NULL;
    o->x2 = NULL;
}

/* one quad of a 32-value format (NV blocks present) against the quad layout: acc += the
 * lanes * d_w * d_x, corr (Q5_1) += f * x2 (its odd lanes: m * s) */
QR_AI void kq_quadx(int F, int NV, const uint8_t *p, const kq_xp *x, int64_t t, __m512 *acc,
                    __m256 *corr) {
    const size_t bs = kq_bs(F), oq = F == KQ_Q5_0 ? 6 : F == KQ_Q5_1 ? 8 : 2;
    const size_t oh = F == KQ_Q5_0 ? 2 : 4;
    const int OFF = F == KQ_Q5_0 ? 16 : F == KQ_IQ4NL ? 128 : 0;
    __m128i g;
    __m512i raw;
    if (NV == 4) {
        g = qr__gather4(p, bs);
        __m256i a = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + oq))),
            _mm_loadu_si128((const __m128i *)(p + bs + oq)), 1);
        __m256i b = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + 2 * bs + oq))),
            _mm_loadu_si128((const __m128i *)(p + 3 * bs + oq)), 1);
        raw = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    } else {
        g = _mm_loadu_si32(p);
        raw = _mm512_maskz_mov_epi32(0x000f, _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + oq))));
        if (NV > 1) {
            g = _mm_insert_epi32(g, (int)qr__ld32(p + bs), 1);
            raw = _mm512_inserti32x4(raw, _mm_loadu_si128((const __m128i *)(p + bs + oq)), 1);
        }
        if (NV > 2) {
            g = _mm_insert_epi32(g, (int)qr__ld32(p + 2 * bs), 2);
            raw = _mm512_inserti32x4(raw, _mm_loadu_si128((const __m128i *)(p + 2 * bs + oq)), 2);
        }
    }
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512i lo = _mm512_and_si512(raw, m4), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
    if (F == KQ_IQ4NL) {
        const __m512i tbl = _mm512_broadcast_i32x4(_mm_setr_epi8(
            (char)1, (char)24, (char)45, (char)63, (char)79, (char)93, (char)106, (char)118,
            (char)129, (char)141, (char)153, (char)166, (char)181, (char)197, (char)217, (char)241));
        lo = _mm512_shuffle_epi8(tbl, lo);
        hi = _mm512_shuffle_epi8(tbl, hi);
    } else {   /* the fifth bits: 16 of each block's qh (low: elements 0-15, high: 16-31) */
        uint64_t mlo = 0, mhi = 0;
        for (int k = NV - 1; k >= 0; k--) {   /* 16-bit loads: the pieces need no masking */
            uint16_t h0, h1;
            memcpy(&h0, p + k * bs + oh, 2);
            memcpy(&h1, p + k * bs + oh + 2, 2);
            mlo = mlo << 16 | h0;
            mhi = mhi << 16 | h1;
        }
        const __m512i b16 = _mm512_set1_epi8(16);
        lo = _mm512_mask_add_epi8(lo, _cvtu64_mask64(mlo), lo, b16);
        hi = _mm512_mask_add_epi8(hi, _cvtu64_mask64(mhi), hi, b16);
    }
    const __m512i *q = (const __m512i *)(x->xl + 128 * t);
    __m512i s = OFF ? _mm512_load_si512(x->c + 16 * t) : _mm512_setzero_si512();
    s = _mm512_dpbusd_epi32(s, lo, _mm512_load_si512(q));
    s = _mm512_dpbusd_epi32(s, hi, _mm512_load_si512(q + 1));
    const __m256 f = _mm256_cvtph_ps(g);   /* [d0 x0 d1 x1 d2 x2 d3 x3] (x: m for Q5_1) */
    const __m512 dw = _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6), _mm512_castps256_ps512(f));
    *acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_load_ps(x->e + 16 * t)), _mm512_cvtepi32_ps(s), *acc);
    if (F == KQ_Q5_1) *corr = _mm256_fmadd_ps(f, _mm256_load_ps(x->x2 + 8 * t), *corr);
}

QR_AI __m256 kq_rowx_quad(int F, int64_t nb, const uint8_t *w, const kq_xp *x) {
    const size_t bs = kq_bs(F);
    const int64_t nq = nb / 4;
    __m512 acc = _mm512_setzero_ps();
    __m256 corr = _mm256_setzero_ps();
    for (int64_t t = 0; t < nq; t++) {
        const uint8_t *p = w + 4 * t * bs;
        kq_prefetch(1, p, 4 * bs);
        kq_quadx(F, 4, p, x, t, &acc, &corr);
    }
    switch (nb % 4) {
    case 3: kq_quadx(F, 3, w + 4 * nq * bs, x, nq, &acc, &corr); break;
    case 2: kq_quadx(F, 2, w + 4 * nq * bs, x, nq, &acc, &corr); break;
    case 1: kq_quadx(F, 1, w + 4 * nq * bs, x, nq, &acc, &corr); break;
    default: break;
    }
    __m256 r = qr__fold512(acc);
    if (F == KQ_Q5_1)
        r = _mm256_add_ps(r, _mm256_and_ps(corr, _mm256_castsi256_ps(
                                                     _mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1))));
    return r;
}

/* The int16 scale vectors of kq_planes_sb: word 8k + m of S01 (S23) holds the scale of
 * sub-block 8(k / 2) + 2(m / 4) + k % 2 (+ 4): plane m / 4 (+ 2) of 128-bit lane k. Q2_K: the
 * low nibbles of sc[16] by vpshufb; Q3_K: the 6-bit scales - 32 of two super-blocks at once
 * (sb0, sb1: S[0], S[1] for sb0, S[2], S[3] for sb1) by vpermw. */
QR_AI void kq_q2k_scales(const uint8_t *sb, __m512i *S01, __m512i *S23) {
    const __m512i T = _mm512_and_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)sb)),
                                       _mm512_set1_epi8(15));
#define W2(j) (char)(j), (char)0x80, (char)(j), (char)0x80, (char)(j), (char)0x80, (char)(j), (char)0x80
    const __m512i J01 = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_setr_epi8(W2(0), W2(2), W2(1), W2(3))),
        _mm256_setr_epi8(W2(8), W2(10), W2(9), W2(11)), 1);
    const __m512i J23 = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_setr_epi8(W2(4), W2(6), W2(5), W2(7))),
        _mm256_setr_epi8(W2(12), W2(14), W2(13), W2(15)), 1);
#undef W2
    *S01 = _mm512_shuffle_epi8(T, J01);
    *S23 = _mm512_shuffle_epi8(T, J23);
}

QR_AI void kq_q3k_scales2(const uint8_t *sb0, const uint8_t *sb1, __m512i S[4]) {
    /* bytes 94 .. 109 of each block (sc[12] at 96), so no load leaves a block */
    const __m256i v = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(sb0 + 94))),
        _mm_loadu_si128((const __m128i *)(sb1 + 94)), 1);
    const __m256i a01 = _mm256_shuffle_epi8(v, _mm256_setr_epi8(
        2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9));
    const __m256i a2 = _mm256_shuffle_epi8(v, _mm256_setr_epi8(
        10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12,
        13, 10, 11, 12, 13, 10, 11, 12, 13));
    const __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(a01, _mm256_setr_epi32(0, 0, 4, 4, 0, 0, 4, 4)),
                                        _mm256_set1_epi8(15));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(a2, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)),
                                        _mm256_set1_epi8(3));
    /* the 32 scales (0 .. 63) - 32, as int16 */
    const __m512i s16 = _mm512_cvtepi8_epi16(_mm256_sub_epi8(
        _mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi8(32)));
#define W4(j) (short)(j), (short)(j), (short)(j), (short)(j)
    const __m512i J01 = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_setr_epi16(W4(0), W4(2), W4(1), W4(3))),
        _mm256_setr_epi16(W4(8), W4(10), W4(9), W4(11)), 1);
    const __m512i J23 = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_setr_epi16(W4(4), W4(6), W4(5), W4(7))),
        _mm256_setr_epi16(W4(12), W4(14), W4(13), W4(15)), 1);
#undef W4
    const __m512i n16 = _mm512_set1_epi16(16);
    S[0] = _mm512_permutexvar_epi16(J01, s16);
    S[1] = _mm512_permutexvar_epi16(J23, s16);
    S[2] = _mm512_permutexvar_epi16(_mm512_add_epi16(J01, n16), s16);
    S[3] = _mm512_permutexvar_epi16(_mm512_add_epi16(J23, n16), s16);
}

/* One Q2_K / Q3_K super-block against the planes: the 4 planes' weights w_p (Q2_K: q of
 * planes 0, 2 and 4q of planes 1, 3, by one mask each; Q3_K: + 4 / 16 where the high bit is
 * set, offset 4 / 16 in c), 4 vpdpbusd into int32 lanes L_p (|L| <= 4 * 127 * 28 < 2^15),
 * packed to int16 by plane pairs (vpackssdw: 128-bit lane k holds L_a's lanes 4k .. 4k + 3,
 * then L_b's), multiplied by the sub-block scales as int16 and summed in pairs (vpmaddwd: the
 * scale vectors are the 16 scales picked by vpshufb / vpermw), converted, scaled by e (the
 * activation scale of each lane) and summed; then * D (and - dmin * sum_j m_j * s16_j). */
QR_AI void kq_planes_sb(int F, const uint8_t *sb, const kq_xp *x, int64_t u, __m512i S01,
                        __m512i S23, __m512 *tot, __m512 *tmin) {
    const __m512i QS = _mm512_loadu_si512(sb + (F == KQ_Q2K ? 16 : 32));
    const __m512i c3 = _mm512_set1_epi8(3), c12 = _mm512_set1_epi8(12);
    const __m512i Q4 = _mm512_srli_epi16(QS, 4);
    __m512i wv[4] = {_mm512_and_si512(QS, c3), _mm512_and_si512(QS, c12), _mm512_and_si512(Q4, c3),
                     _mm512_and_si512(Q4, c12)};
    const __m512i *xs = (const __m512i *)(x->xl + 256 * u);
    __m512i L[4];
    if (F == KQ_Q3K) {
        /* bit 4i + p of hm[l] for byte 32i + l of plane p: h = hm | hm >> 4 (halves), its bit
         * p moved to bit 2 (even planes: + 4) or 4 (odd: + 16, their quants being 4q) */
        const __m512i hm = bcast32(sb);
        const __m512i h = _mm512_mask_srli_epi16(hm, 0xffff0000u, hm, 4);
        const __m512i hp[4] = {_mm512_slli_epi16(h, 2), _mm512_slli_epi16(h, 3), h,
                               _mm512_add_epi8(h, h)};
        for (int p = 0; p < 4; p++) {
            wv[p] = _mm512_ternarylogic_epi32(wv[p], hp[p], _mm512_set1_epi8((char)(p & 1 ? 16 : 4)),
                                              0xf8);   /* w | (h & bit) */
            L[p] = _mm512_dpbusd_epi32(_mm512_load_si512(x->c + 64 * u + 16 * p), wv[p],
                                       _mm512_load_si512(xs + p));
        }
    } else {
        for (int p = 0; p < 4; p++)
            L[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[p], _mm512_load_si512(xs + p));
    }
    const __m512i P01 = _mm512_packs_epi32(L[0], L[1]), P23 = _mm512_packs_epi32(L[2], L[3]);
    const __m512i M01 = _mm512_madd_epi16(P01, S01), M23 = _mm512_madd_epi16(P23, S23);
    __m512 a = _mm512_mul_ps(_mm512_cvtepi32_ps(M01), _mm512_load_ps(x->e + 32 * u));
    a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(M23), _mm512_load_ps(x->e + 32 * u + 16), a);
    /* D (and dmin) converted once and broadcast from memory: load-port broadcasts, no shuffle.
     * The block's last 4 bytes: Q2_K [D dmin] (80), Q3_K [sc[10..11] D] (106) */
    _Alignas(16) float dd[4];
    _mm_store_ps(dd, _mm_cvtph_ps(_mm_loadu_si32(sb + (F == KQ_Q2K ? 80 : 106))));
    __asm__("" : "+m"(dd));
    *tot = _mm512_fmadd_ps(_mm512_set1_ps(dd[F == KQ_Q2K ? 0 : 1]), a, *tot);
    if (F == KQ_Q2K) {
        const __m512 m = _mm512_cvtepi32_ps(_mm512_srli_epi32(
            _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)sb)), 4));
        *tmin = _mm512_fmadd_ps(_mm512_set1_ps(dd[1]), _mm512_mul_ps(m, _mm512_loadu_ps(x->x2 + 16 * u)),
                                *tmin);
    }
}

QR_AI __m256 kq_rowx_planes(int F, int64_t nb, const uint8_t *w, const kq_xp *x) {
    const size_t bs = kq_sbs(F);
    __m512 tot = _mm512_setzero_ps(), tmin = _mm512_setzero_ps();
    const int64_t nsb = nb / 8;
    if (F == KQ_Q2K) {
        for (int64_t u = 0; u < nsb; u++) {
            const uint8_t *p = w + u * bs;
            __m512i S01, S23;
            kq_prefetch(1, p, bs);
            kq_q2k_scales(p, &S01, &S23);
            kq_planes_sb(F, p, x, u, S01, S23, &tot, &tmin);
        }
    } else {   /* super-blocks in pairs (their scales decoded together), then an odd last one */
        int64_t u = 0;
        for (; u + 2 <= nsb; u += 2) {
            const uint8_t *p = w + u * bs;
            __m512i S[4];
            kq_prefetch(1, p, 2 * bs);
            kq_q3k_scales2(p, p + bs, S);
            kq_planes_sb(F, p, x, u, S[0], S[1], &tot, &tmin);
            kq_planes_sb(F, p + bs, x, u + 1, S[2], S[3], &tot, &tmin);
        }
        if (u < nsb) {
            const uint8_t *p = w + u * bs;
            __m512i S[4];
            kq_q3k_scales2(p, p, S);
            kq_planes_sb(F, p, x, u, S[0], S[1], &tot, &tmin);
        }
    }
    return qr__fold512(F == KQ_Q2K ? _mm512_sub_ps(tot, tmin) : tot);
}

/* Q4_K / Q5_K super-blocks against the nibble layout, two at a time (their 6-bit scales
 * decoded in one ymm): zmm 2m + h holds blocks 4m + h (lanes 0-7) and 4m + 2 + h (8-15);
 * f = [D sc_0..7 | dmin m_0..7]; lane scales perm(D sc * d); acc16's high lanes gather
 * dmin m * s, subtracted at the end. Q5_K's fifth bit: bit (block) of qh[l], moved to bit 4
 * by a per-half shift and merged by vpternlog. */
QR_AI void kq_nib_sb(int F, const uint8_t *sb, __m128i scm, __m128 dd, const kq_xp *xp,
                     const kq_x *x, int64_t u, __m512 acc[2], __m512 *acc16) {
    const uint8_t *qs = sb + (F == KQ_Q4K ? 16 : 48);
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i Q0 = _mm512_loadu_si512(qs), Q1 = _mm512_loadu_si512(qs + 64);
    __m512i wv[4] = {_mm512_and_si512(Q0, m4), _mm512_and_si512(_mm512_srli_epi16(Q0, 4), m4),
                     _mm512_and_si512(Q1, m4), _mm512_and_si512(_mm512_srli_epi16(Q1, 4), m4)};
    if (F == KQ_Q5K) {   /* bit 4m + h (first half), 4m + 2 + h (second) of qh[l] -> bit 4 */
        const __m512i qh = bcast32(sb + 16), b16 = _mm512_set1_epi8(16);
        const __m512i hv[4] = {
            _mm512_sllv_epi16(qh, _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1)),
            _mm512_sllv_epi16(qh, _mm512_inserti64x4(_mm512_set1_epi16(3), _mm256_set1_epi16(1), 1)),
            _mm512_srlv_epi16(qh, _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1)),
            _mm512_srlv_epi16(qh, _mm512_inserti64x4(_mm512_set1_epi16(1), _mm256_set1_epi16(3), 1))};
        for (int t = 0; t < 4; t++) wv[t] = _mm512_ternarylogic_epi32(wv[t], hv[t], b16, 0xf8);
    }
    /* [D x8 | dmin x8] * [sc | m] */
    const __m512 f = _mm512_mul_ps(
        _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                              _mm512_castps128_ps512(dd)),
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(scm)));
    const __m512 sc = _mm512_maskz_mul_ps(0x00ff, f, _mm512_castps256_ps512(_mm256_loadu_ps(x->d + 8 * u)));
    const __m512i *xs = (const __m512i *)(xp->xl + 256 * u);
    for (int t = 0; t < 4; t++) {
        const int b0 = 4 * (t / 2) + t % 2;   /* the blocks of zmm t: b0, b0 + 2 */
        const __m512i idx = _mm512_setr_epi32(b0, b0, b0, b0, b0, b0, b0, b0, b0 + 2, b0 + 2, b0 + 2,
                                              b0 + 2, b0 + 2, b0 + 2, b0 + 2, b0 + 2);
        const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[t], _mm512_load_si512(xs + t));
        acc[t & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_permutexvar_ps(idx, sc), acc[t & 1]);
    }
    /* lanes 8-15: dmin m_j * s[8u + j] (s - 8 lies in d: the same row) */
    *acc16 = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(0xff00, x->s + 8 * u - 8), *acc16);
}

QR_AI __m256 kq_rowx_nib(int F, int64_t nb, const uint8_t *w, const kq_xp *xp, const kq_x *x) {
    const size_t bs = kq_sbs(F);
    const int64_t nsb = nb / 8;
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}, acc16 = _mm512_setzero_ps();
    int64_t u = 0;
    for (; u + 2 <= nsb; u += 2) {
        const uint8_t *p = w + u * bs;
        kq_prefetch(1, p, 2 * bs);
        const __m256i scm = kq_scales_k4x2(_mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + 4))),
            _mm_loadu_si128((const __m128i *)(p + bs + 4)), 1));
        const __m128 dd = _mm_cvtph_ps(_mm_unpacklo_epi32(_mm_loadu_si32(p), _mm_loadu_si32(p + bs)));
        kq_nib_sb(F, p, _mm256_castsi256_si128(scm), dd, xp, x, u, acc, &acc16);
        kq_nib_sb(F, p + bs, _mm256_extracti128_si256(scm, 1), _mm_movehl_ps(dd, dd), xp, x, u + 1,
                  acc, &acc16);
    }
    if (u < nsb) {
        const uint8_t *p = w + u * bs;
        kq_nib_sb(F, p, kq_scales_k4(_mm_loadu_si128((const __m128i *)(p + 4))),
                  _mm_cvtph_ps(_mm_loadu_si32(p)), xp, x, u, acc, &acc16);
    }
    return _mm256_sub_ps(qr__fold512(_mm512_add_ps(acc[0], acc[1])),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc16), 1)));
}

/* decode rows: 8 at a time, each as 8 lanes, their sums at once (hsum8x) */
QR_AI void kq_rows_loop(int F, int PREP, int64_t nb, const uint8_t *w, size_t wrow,
                        int64_t nrows, const kq_x *x, const kq_xp *xp, float *y) {
    for (int64_t r = 0; r < nrows; r += 8) {
        const int n = nrows - r < 8 ? (int)(nrows - r) : 8;
        __m256 v[8];
        for (int i = 0; i < 8; i++) {
            const uint8_t *row = w + (r + i) * wrow;
            if (i >= n) v[i] = _mm256_setzero_ps();
            else if (PREP == 2 && F <= KQ_IQ4NL) v[i] = kq_rowx_quad(F, nb, row, xp);
            else if (PREP == 2 && (F == KQ_Q4K || F == KQ_Q5K)) v[i] = kq_rowx_nib(F, nb, row, xp, x);
            else if (PREP == 2) v[i] = kq_rowx_planes(F, nb, row, xp);
            else kq_dot(F, 1, PREP, 1, nb, row, x, &v[i]);
        }
        float out[8];
        _mm256_storeu_ps(out, qr__hsum8x(v));
        memcpy(y + r, out, (size_t)n * sizeof(float));
    }
}

QR_AI void kq_rows1(int F, int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                    const uint8_t *xq, float *y, qr_qdot_fn qdot) {
    /* PREP 2: a rewritten row (kq_xp); 1: the natural row with lane starts (Q6_K) */
    const int PREP = F == KQ_Q6K ? 1 : 2;
    qr__prefetch_head(w, (size_t)nrows * wrow);
    kq_x x = kq_row(xq, nb);
    kq_xp xp = {0};
    _Alignas(64) uint8_t stack[QR_KQ_STACK_BYTES];
    const size_t need = PREP == 2 ? kq_prep_bytes(F, nb) : qr_a64((size_t)nb * 32);
    uint8_t *buf = stack, *heap = NULL;
    if (need > sizeof stack) {
        heap = aligned_alloc(64, qr_a64(need));
        if (!heap) {   /* no memory for the prepared row: the prompt kernel, row by row */
            for (int64_t r = 0; r < nrows; r++) qdot(nb, w + r * wrow, xq, 0, 1, y + r);
            return;
        }
        buf = heap;
    }
    if (PREP == 1) {
        int32_t *c = (int32_t *)buf;
        kq_prepare_c(32, nb, &x, c);
        x.c = c;
        kq_rows_loop(F, 1, nb, w, wrow, nrows, &x, &xp, y);
    } else {
        if (F <= KQ_IQ4NL) kq_prep_quad(F, nb, &x, buf, &xp);
        else if (F == KQ_Q4K || F == KQ_Q5K) kq_prep_nib(nb, &x, buf, &xp);
        else kq_prep_planes(F, nb, &x, buf, &xp);
        kq_rows_loop(F, 2, nb, w, wrow, nrows, &x, &xp, y);
    }
    free(heap);
}

#define KQ_ENTRY(name, F)                                                                   \
    static __attribute__((noinline)) void qr__qdot_##name##_kq512(                           \
        int64_t nb, const uint8_t *w, const uint8_t *xq,                                    \
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
        kq_rows1(F, nb, w, wrow, nrows, xq, y, qr__qdot_##name##_kq512);                    \
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

/* ------------------------------------------------------------------ the table */
qr_kq_kernels qr__kq_avx512(int qtype) {
    qr_kq_kernels k = qr__kq_dequant_avx512(qtype);   /* dequant_row; BF16's fdot, rows1 */
#define KQ_SET(name)                                                                        \
    k.qdot = qr__qdot_##name##_kq512;                                                       \
    k.rows1 = qr__qrows_##name##_kq512;                                                     \
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
