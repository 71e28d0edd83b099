/* quant_kformats.c - the ggml formats beyond Q8_0 / Q4_0 / Q4_1 / F16, bit for bit with ggml's
 * and the gguf package's dequantizers: Q5_0, Q5_1, IQ4_NL (32 values a block), the K-quants
 * Q2_K .. Q6_K (super-blocks of 256) and BF16; the quantizers of Q5_0, Q5_1 and BF16 (ggml's
 * reference ones); and their portable dot products with q8 activation rows (quant_internal.h).
 *
 * Layouts (offsets in bytes; "e" an element of the block; fp16 fields little-endian):
 *   Q5_0   d@0 qh@2 (uint32) qs[16]@6        q = nib(e) | bit e of qh << 4; x = d * (q - 16)
 *   Q5_1   d@0 m@2 qh@4 qs[16]@8             x = d * q + m
 *   IQ4_NL d@0 qs[16]@2                      x = d * KV[nib(e)]
 *          nib(e): low nibble of qs[e] for e < 16, high nibble of qs[e - 16] after
 *   Q2_K   sc[16]@0 qs[64]@16 d@80 dmin@82   e = 128 i + 32 s + l: q = qs[32 i + l] >> 2s & 3,
 *          sub-block j = e / 16: x = (d * (sc[j] & 15)) * q - dmin * (sc[j] >> 4)
 *   Q3_K   hm[32]@0 qs[64]@32 sc[12]@96 d@108   q = (qs[32 i + l] >> 2s & 3) - 4 unless bit
 *          e / 32 of hm[e % 32] is set; 6-bit scales j < 16: low 4 bits from sc[j] (j < 8) or
 *          sc[j - 8] >> 4, high 2 from sc[8 + j % 4] >> 2 (j / 4); x = (d * (scale - 32)) * q
 *   Q4_K   d@0 dmin@2 sc[12]@4 qs[128]@16    e = 64 i + 32 h + l: q = qs[32 i + l] >> 4h & 15;
 *          6-bit scale / min of sub-block j = e / 32 (scale_min_k4); x = (d * sc) * q - dmin * m
 *   Q5_K   d@0 dmin@2 sc[12]@4 qh[32]@16 qs[128]@48   q as Q4_K | bit e / 32 of qh[e % 32] << 4
 *   Q6_K   ql[128]@0 qh[64]@128 sc[16]@192 (int8) d@208   e = 128 i + 64 h + l (l < 64): low
 *          4 bits ql[64 i + l] >> 4h; e = 128 i + 32 s + l (l < 32): high 2 bits
 *          qh[32 i + l] >> 2s; x = (d * sc[e / 16]) * (q - 32)
 *   BF16   the top 16 bits of a float32
 * The float expressions are ggml's operation order, so the results are the same bits.
 */
#include <string.h>

#include "qr_math.h"
#include "quant_internal.h"
#include "qorus.h"

static const int8_t KV_IQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

static inline uint32_t get32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* the 6-bit scale and min of sub-block j (< 8) of a Q4_K / Q5_K super-block (s: sc[12]) */
static inline void scale_min_k4(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* the 6-bit scale of sub-block j (< 16) of a Q3_K super-block, minus 32 (s: sc[12]) */
static inline int scale_q3k(const uint8_t *s, int j) {
    int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* ------------------------------------------------------------------ stored integers */
/* q of element e of a block: the integer its value is built from (offsets applied for the
 * formats whose value is d * (q - offset)) */
static inline int q5_of(const uint8_t *qh, const uint8_t *qs, int e) {
    int nib = e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
    return nib | (int)((get32(qh) >> e) & 1u) << 4;
}
static inline int q2k_of(const uint8_t *b, int e) {
    int i = e / 128, s = e % 128 / 32, l = e % 32;
    return (b[16 + 32 * i + l] >> (2 * s)) & 3;
}
static inline int q3k_of(const uint8_t *b, int e) {
    int i = e / 128, s = e % 128 / 32, l = e % 32;
    int q = (b[32 + 32 * i + l] >> (2 * s)) & 3;
    return (b[l] >> (e / 32)) & 1 ? q : q - 4;
}
static inline int q4k_of(const uint8_t *qs, int e) {
    int i = e / 64, h = e % 64 / 32, l = e % 32;
    return (qs[32 * i + l] >> (4 * h)) & 15;
}
static inline int q5k_of(const uint8_t *b, int e) {
    return q4k_of(b + 48, e) | ((b[16 + e % 32] >> (e / 32)) & 1) << 4;
}
static inline int q6k_of(const uint8_t *b, int e) {
    int i = e / 128, h = e % 128 / 64, l = e % 64, s = e % 128 / 32, l2 = e % 32;
    int lo = (b[64 * i + l] >> (4 * h)) & 15, hi = (b[128 + 32 * i + l2] >> (2 * s)) & 3;
    return (lo | hi << 4) - 32;
}

/* ------------------------------------------------------------------ dequantization */
void qr__dequant_block_q5_0(const uint8_t *b, float *y) {
    float d = qr__get16f(b);
    for (int e = 0; e < 32; e++) y[e] = d * (float)(q5_of(b + 2, b + 6, e) - 16);
}
void qr__dequant_block_q5_1(const uint8_t *b, float *y) {
    float d = qr__get16f(b), m = qr__get16f(b + 2);
    for (int e = 0; e < 32; e++) y[e] = d * (float)q5_of(b + 4, b + 8, e) + m;
}
void qr__dequant_block_iq4_nl(const uint8_t *b, float *y) {
    float d = qr__get16f(b);
    for (int e = 0; e < 16; e++) {
        y[e] = d * (float)KV_IQ4NL[b[2 + e] & 15];
        y[e + 16] = d * (float)KV_IQ4NL[b[2 + e] >> 4];
    }
}
void qr__dequant_block_q2_k(const uint8_t *b, float *y) {
    float d = qr__get16f(b + 80), dmin = qr__get16f(b + 82);
    for (int j = 0; j < 16; j++) {
        float dl = d * (float)(b[j] & 15), ml = dmin * (float)(b[j] >> 4);
        for (int e = 16 * j; e < 16 * j + 16; e++) y[e] = dl * (float)q2k_of(b, e) - ml;
    }
}
void qr__dequant_block_q3_k(const uint8_t *b, float *y) {
    float d = qr__get16f(b + 108);
    for (int j = 0; j < 16; j++) {
        float dl = d * (float)scale_q3k(b + 96, j);
        for (int e = 16 * j; e < 16 * j + 16; e++) y[e] = dl * (float)q3k_of(b, e);
    }
}
void qr__dequant_block_q4_k(const uint8_t *b, float *y) {
    float d = qr__get16f(b), dmin = qr__get16f(b + 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(b + 4, j, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        for (int e = 32 * j; e < 32 * j + 32; e++) y[e] = dl * (float)q4k_of(b + 16, e) - ml;
    }
}
void qr__dequant_block_q5_k(const uint8_t *b, float *y) {
    float d = qr__get16f(b), dmin = qr__get16f(b + 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(b + 4, j, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        for (int e = 32 * j; e < 32 * j + 32; e++) y[e] = dl * (float)q5k_of(b, e) - ml;
    }
}
void qr__dequant_block_q6_k(const uint8_t *b, float *y) {
    float d = qr__get16f(b + 208);
    for (int j = 0; j < 16; j++) {
        float dl = d * (float)(int8_t)b[192 + j];
        for (int e = 16 * j; e < 16 * j + 16; e++) y[e] = dl * (float)q6k_of(b, e);
    }
}

void qr__bf16_to_f32(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(y + i, &u, 4);
    }
}

void qr__f32_to_bf16(const float *x, uint16_t *y, int64_t n) {   /* ggml_compute_fp32_to_bf16 */
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) u = (u & 0xffff0000u) | (64u << 16);   /* quiet NaN */
        y[i] = (uint16_t)(((uint64_t)u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
    }
}

/* ------------------------------------------------------------------ quantizers (ggml's ref) */
static inline void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* a level from f = x * id + offset: truncated, clamped to top (NaN and overflow: top) */
static inline int level(float f, int top) { return f >= 0.0f && f < (float)top ? (int)f : top; }

static void pack_q5(const int *q, uint8_t *qh, uint8_t *qs) {
    uint32_t h = 0;
    for (int e = 0; e < 16; e++) {
        qs[e] = (uint8_t)((q[e] & 15) | (q[e + 16] & 15) << 4);
        h |= (uint32_t)(q[e] >> 4) << e | (uint32_t)(q[e + 16] >> 4) << (e + 16);
    }
    memcpy(qh, &h, 4);
}

void qr__quant_block_q5_0(const float *x, uint8_t *out) {
    float max = x[0], amax = max < 0.0f ? -max : max;
    for (int j = 1; j < 32; j++) {   /* the first element of largest magnitude, signed */
        float a = x[j] < 0.0f ? -x[j] : x[j];
        if (a > amax) { amax = a; max = x[j]; }
    }
    float d = max / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int q[32];
    for (int j = 0; j < 32; j++) q[j] = level(x[j] * id + 16.5f, 31);
    put16(out, qr__f32_to_f16(d));
    pack_q5(q, out + 2, out + 6);
}

void qr__quant_block_q5_1(const float *x, uint8_t *out) {
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; j++) {
        min = x[j] < min ? x[j] : min;
        max = x[j] > max ? x[j] : max;
    }
    float d = (max - min) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int q[32];
    for (int j = 0; j < 32; j++) q[j] = level((x[j] - min) * id + 0.5f, 31);
    put16(out, qr__f32_to_f16(d));
    put16(out + 2, qr__f32_to_f16(min));
    pack_q5(q, out + 4, out + 8);
}

/* ------------------------------------------------------------------ portable dot products */
/* Block b (32 values) of a weight row in the products' form value = D * qs - mn[half]:
 * qs exact integers (sub-block scales folded in), one D, the offsets of its two halves. */
typedef struct {
    int32_t qs[32];
    float D, mn[2];
    int has_mn;
} blk32;

static inline void unpack32(int qtype, const uint8_t *row, int64_t b, blk32 *o) {
    o->has_mn = 0;
    o->mn[0] = o->mn[1] = 0.0f;
    if (qtype == QR_QTYPE_Q5_0 || qtype == QR_QTYPE_Q5_1 || qtype == QR_QTYPE_IQ4_NL) {
        const uint8_t *w = row + b * (qtype == QR_QTYPE_Q5_0 ? 22 : qtype == QR_QTYPE_Q5_1 ? 24 : 18);
        o->D = qr__get16f(w);
        for (int e = 0; e < 32; e++) {
            o->qs[e] = qtype == QR_QTYPE_Q5_0 ? q5_of(w + 2, w + 6, e) - 16
                     : qtype == QR_QTYPE_Q5_1 ? q5_of(w + 4, w + 8, e)
                     : KV_IQ4NL[e < 16 ? w[2 + e] & 15 : w[2 + e - 16] >> 4];
        }
        if (qtype == QR_QTYPE_Q5_1) {
            o->has_mn = 1;
            o->mn[0] = o->mn[1] = -qr__get16f(w + 2);
        }
        return;
    }
    const int bb = qtype == QR_QTYPE_Q2_K ? 84 : qtype == QR_QTYPE_Q3_K ? 110
                 : qtype == QR_QTYPE_Q4_K ? 144 : qtype == QR_QTYPE_Q5_K ? 176 : 210;
    const uint8_t *w = row + b / 8 * bb;
    const int e0 = (int)(b % 8) * 32;
    switch (qtype) {
    case QR_QTYPE_Q2_K: {
        float dmin = qr__get16f(w + 82);
        o->D = qr__get16f(w + 80);
        o->has_mn = 1;
        for (int h = 0; h < 2; h++) {
            int j = e0 / 16 + h;
            o->mn[h] = dmin * (float)(w[j] >> 4);
            for (int e = 0; e < 16; e++) o->qs[16 * h + e] = (w[j] & 15) * q2k_of(w, e0 + 16 * h + e);
        }
        break;
    }
    case QR_QTYPE_Q3_K:
        o->D = qr__get16f(w + 108);
        for (int e = 0; e < 32; e++)
            o->qs[e] = scale_q3k(w + 96, (e0 + e) / 16) * q3k_of(w, e0 + e);
        break;
    case QR_QTYPE_Q4_K:
    case QR_QTYPE_Q5_K: {
        int sc, m;
        scale_min_k4(w + 4, e0 / 32, &sc, &m);
        o->D = qr__get16f(w);
        o->has_mn = 1;
        o->mn[0] = o->mn[1] = qr__get16f(w + 2) * (float)m;
        for (int e = 0; e < 32; e++)
            o->qs[e] = sc * (qtype == QR_QTYPE_Q4_K ? q4k_of(w + 16, e0 + e) : q5k_of(w, e0 + e));
        break;
    }
    default:   /* Q6_K */
        o->D = qr__get16f(w + 208);
        for (int e = 0; e < 32; e++) o->qs[e] = (int8_t)w[192 + (e0 + e) / 16] * q6k_of(w, e0 + e);
    }
}

/* out[j] = dot(weight row w of nb blocks, q8 row j) for j < mx (natural q8 layout) */
static inline void qdot_generic(int qtype, int64_t nb, const uint8_t *w, const uint8_t *xq,
                                size_t xs, int mx, float *out) {
    for (int j = 0; j < mx; j++) {
        const int8_t *q = (const int8_t *)(xq + j * xs);
        const float *d = (const float *)(xq + j * xs + nb * QR_QK);
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            blk32 u;
            unpack32(qtype, w, b, &u);
            const int8_t *qb = q + b * QR_QK;
            int32_t s = 0, s0 = 0, s1 = 0;
            for (int e = 0; e < 32; e++) s += u.qs[e] * qb[e];
            if (u.has_mn)
                for (int e = 0; e < 16; e++) { s0 += qb[e]; s1 += qb[e + 16]; }
            acc += u.D * d[b] * (float)s - d[b] * (u.mn[0] * (float)s0 + u.mn[1] * (float)s1);
        }
        out[j] = acc;
    }
}

#define QR_PORTABLE_QDOT(fmt, qtype)                                                      \
    void qr__qdot_##fmt(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xs, int mx, \
                        float *out) {                                                      \
        qdot_generic(qtype, nb, w, xq, xs, mx, out);                                       \
    }
QR_PORTABLE_QDOT(q5_0, QR_QTYPE_Q5_0)
QR_PORTABLE_QDOT(q5_1, QR_QTYPE_Q5_1)
QR_PORTABLE_QDOT(iq4_nl, QR_QTYPE_IQ4_NL)
QR_PORTABLE_QDOT(q2_k, QR_QTYPE_Q2_K)
QR_PORTABLE_QDOT(q3_k, QR_QTYPE_Q3_K)
QR_PORTABLE_QDOT(q4_k, QR_QTYPE_Q4_K)
QR_PORTABLE_QDOT(q5_k, QR_QTYPE_Q5_K)
QR_PORTABLE_QDOT(q6_k, QR_QTYPE_Q6_K)

/* out[j] = sum_k bf16 w[k] * x[j * ldx + k], j < mx */
void qr__fdot_bf16(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx, float *out) {
    for (int j = 0; j < mx; j++) {
        const float *xr = x + j * ldx;
        float acc[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= k; i += 8)
            for (int l = 0; l < 8; l++) {
                uint32_t u = (uint32_t)w[i + l] << 16;
                float f;
                memcpy(&f, &u, 4);
                acc[l] += f * xr[i + l];
            }
        for (int l = 0; i < k; i++, l++) {
            uint32_t u = (uint32_t)w[i] << 16;
            float f;
            memcpy(&f, &u, 4);
            acc[l] += f * xr[i];
        }
        float s = 0.0f;
        for (int l = 0; l < 8; l++) s += acc[l];
        out[j] = s;
    }
}
