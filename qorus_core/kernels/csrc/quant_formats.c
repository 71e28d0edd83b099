/* quant_formats.c - the weight formats' table (quant_internal.h), the ggml block formats Q8_0,
 * Q4_0, Q4_1 and F16 (bit for bit; the others are quant_kformats.c's), the row size of each,
 * the row-wise quantize / dequantize of whole tensors, the rows of an embedding table, and the
 * SIMD tier the quant family runs (quant.c holds the products).
 *
 * Blocks of 32 values (ggml):
 *   Q8_0: fp16 d | int8 q[32]                 x = d * q
 *   Q4_0: fp16 d | uint8 qs[16]               x = d * (q - 8)
 *   Q4_1: fp16 d | fp16 m | uint8 qs[16]      x = d * q + m
 *   Q4 nibbles: element j in the low nibble of qs[j], element j + 16 in its high nibble.
 * The quantizers follow ggml's reference ones (quantize_row_*_ref, and the gguf package's
 * NumPy port) operation by operation, so the bytes are identical. Dequantization is
 * bit-identical on every tier (the AVX-512 one included).
 */
#include <stdlib.h>
#include <string.h>

#include "qr_math.h"
#include "quant_internal.h"
#include "qorus.h"

/* The tier the quant kernels run (cpu.c's family table says the same): AVX-512 needs the
 * AVX-512 tier in effect and AVX512VNNI; AVX2 (and AVX-512) need F16C; else portable. */
int qr__quant_tier(void) {
    const int p = qr_simd_path();
    const unsigned f = qr_cpu_features();
    if (!(f & QR_CPU_F16C)) return QR_SIMD_PORTABLE;
#ifdef QR_HAVE_QUANT_AVX512
    if (p >= QR_SIMD_AVX512 && (f & QR_CPU_AVX512VNNI)) return QR_SIMD_AVX512;
#endif
#ifdef QR_HAVE_AVX2_BUILD
    if (p >= QR_SIMD_AVX2) return QR_SIMD_AVX2;
#endif
    (void)p;
    return QR_SIMD_PORTABLE;
}

#ifdef QR_HAVE_AVX2_BUILD   /* the F16 conversions */
static int use_avx2(void) { return qr__quant_tier() >= QR_SIMD_AVX2; }
#endif

/* ------------------------------------------------------------------ formats */
static inline void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* a Q4 value from f = x * id + 0.5 (+ 8): truncated, 16.x and NaN give 15 */
static inline int nibble_q4(float f) { return f >= 0.0f && f < 16.0f ? (int)f : 15; }

/* one block each; x[32] -> bytes (ggml quantize_row_*_ref) */
static void quant_block_q8_0(const float *x, uint8_t *out) {
    float amax = 0.0f;
    for (int j = 0; j < QR_QK; j++) {
        float a = x[j] < 0.0f ? -x[j] : x[j];
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(out, qr__f32_to_f16(d));
    for (int j = 0; j < QR_QK; j++) {
        out[2 + j] = (uint8_t)(int8_t)qr__round_q8(x[j] * id);   /* NaN / inf weights: 0 */
    }
}

static void quant_block_q4_0(const float *x, uint8_t *out) {
    float max = x[0], amax = max < 0.0f ? -max : max;
    for (int j = 1; j < QR_QK; j++) {   /* the first element of largest magnitude, signed */
        float a = x[j] < 0.0f ? -x[j] : x[j];
        if (a > amax) { amax = a; max = x[j]; }
    }
    float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(out, qr__f32_to_f16(d));
    for (int j = 0; j < QR_QK / 2; j++) {
        int q0 = nibble_q4(x[j] * id + 8.5f), q1 = nibble_q4(x[j + 16] * id + 8.5f);
        out[2 + j] = (uint8_t)(q0 | q1 << 4);
    }
}

static void quant_block_q4_1(const float *x, uint8_t *out) {
    float min = x[0], max = x[0];
    for (int j = 1; j < QR_QK; j++) {
        min = x[j] < min ? x[j] : min;
        max = x[j] > max ? x[j] : max;
    }
    float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(out, qr__f32_to_f16(d));
    put16(out + 2, qr__f32_to_f16(min));
    for (int j = 0; j < QR_QK / 2; j++) {
        int q0 = nibble_q4((x[j] - min) * id + 0.5f), q1 = nibble_q4((x[j + 16] - min) * id + 0.5f);
        out[4 + j] = (uint8_t)(q0 | q1 << 4);
    }
}

static void dequant_block_q8_0(const uint8_t *b, float *y) {
    float d = qr__get16f(b);
    for (int j = 0; j < QR_QK; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}
static void dequant_block_q4_0(const uint8_t *b, float *y) {
    float d = qr__get16f(b);
    for (int j = 0; j < QR_QK / 2; j++) {
        y[j] = d * (float)((b[2 + j] & 15) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}
static void dequant_block_q4_1(const uint8_t *b, float *y) {
    float d = qr__get16f(b), m = qr__get16f(b + 2);
    for (int j = 0; j < QR_QK / 2; j++) {
        y[j] = d * (float)(b[4 + j] & 15) + m;
        y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
    }
}

/* ------------------------------------------------------------------ the table */
static const qr_qformat FORMATS[] = {
    {QR_QTYPE_F16, 1, 2, NULL, NULL, NULL},
    {QR_QTYPE_BF16, 1, 2, NULL, NULL, NULL},
    {QR_QTYPE_Q4_0, 32, 18, dequant_block_q4_0, quant_block_q4_0, qr__qdot_q4_0},
    {QR_QTYPE_Q4_1, 32, 20, dequant_block_q4_1, quant_block_q4_1, qr__qdot_q4_1},
    {QR_QTYPE_Q5_0, 32, 22, qr__dequant_block_q5_0, qr__quant_block_q5_0, qr__qdot_q5_0},
    {QR_QTYPE_Q5_1, 32, 24, qr__dequant_block_q5_1, qr__quant_block_q5_1, qr__qdot_q5_1},
    {QR_QTYPE_Q8_0, 32, 34, dequant_block_q8_0, quant_block_q8_0, qr__qdot_q8_0},
    {QR_QTYPE_Q2_K, 256, 84, qr__dequant_block_q2_k, NULL, qr__qdot_q2_k},
    {QR_QTYPE_Q3_K, 256, 110, qr__dequant_block_q3_k, NULL, qr__qdot_q3_k},
    {QR_QTYPE_Q4_K, 256, 144, qr__dequant_block_q4_k, NULL, qr__qdot_q4_k},
    {QR_QTYPE_Q5_K, 256, 176, qr__dequant_block_q5_k, NULL, qr__qdot_q5_k},
    {QR_QTYPE_Q6_K, 256, 210, qr__dequant_block_q6_k, NULL, qr__qdot_q6_k},
    {QR_QTYPE_IQ4_NL, 32, 18, qr__dequant_block_iq4_nl, NULL, qr__qdot_iq4_nl},
};

const qr_qformat *qr__qformat(int qtype) {
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (FORMATS[i].qtype == qtype) return &FORMATS[i];
    return NULL;
}

int64_t qr_quant_row_bytes(int qtype, int64_t k) {
    const qr_qformat *f = qr__qformat(qtype);
    if (!f || k < 0 || k % f->block_values) return QR_EARG;
    return k / f->block_values * f->block_bytes;
}

/* ------------------------------------------------------------------ row-wise drivers */
typedef struct {
    int qtype, dir;   /* dir 0: quantize, 1: dequantize */
    const void *src;
    void *dst;
    int64_t k;
    size_t rb;        /* bytes per quantized row */
} qrows_ctx;

static void qrows(void *p, int64_t lo, int64_t hi) {
    const qrows_ctx *c = p;
    const qr_qformat *f = qr__qformat(c->qtype);
    const int64_t k = c->k, nb = k / f->block_values;
#ifdef QR_HAVE_QUANT_AVX512   /* bit-identical dequantization (matmul_qf's panels, lookups) */
    const int x512 = c->dir == 1 && (c->qtype == QR_QTYPE_Q8_0 || c->qtype == QR_QTYPE_Q4_0 ||
                                     c->qtype == QR_QTYPE_Q4_1) &&
                     qr__quant_tier() == QR_SIMD_AVX512;
#endif
    qr_dequant_row_fn kq_dequant = NULL;   /* quant_kformats.c's formats on a SIMD tier */
    if (c->dir == 1) {
        const int tier = qr__quant_tier();
        (void)tier;
#ifdef QR_HAVE_QUANT_AVX512
        if (tier == QR_SIMD_AVX512) kq_dequant = qr__kq_avx512(c->qtype).dequant_row;
#endif
#ifdef QR_HAVE_AVX2_BUILD
        if (tier == QR_SIMD_AVX2) kq_dequant = qr__kq_avx2(c->qtype).dequant_row;
#endif
    }
    for (int64_t r = lo; r < hi; r++) {
        if (c->qtype == QR_QTYPE_F16 || c->qtype == QR_QTYPE_BF16) {
            const int bf = c->qtype == QR_QTYPE_BF16;
            if (c->dir == 0) {
                const float *x = (const float *)c->src + r * k;
                uint16_t *y = (uint16_t *)c->dst + r * k;
                if (bf) { qr__f32_to_bf16(x, y, k); continue; }
#ifdef QR_HAVE_AVX2_BUILD
                if (use_avx2()) { qr__f32_to_f16_avx2(x, y, k); continue; }
#endif
                for (int64_t j = 0; j < k; j++) y[j] = qr__f32_to_f16(x[j]);
            } else {
                const uint16_t *x = (const uint16_t *)c->src + r * k;
                float *y = (float *)c->dst + r * k;
                if (bf && kq_dequant) { kq_dequant((const uint8_t *)x, y, k); continue; }
                if (bf) { qr__bf16_to_f32(x, y, k); continue; }
#ifdef QR_HAVE_AVX2_BUILD
                if (use_avx2()) { qr__f16_to_f32_avx2(x, y, k); continue; }
#endif
                for (int64_t j = 0; j < k; j++) y[j] = qr__f16_to_f32(x[j]);
            }
            continue;
        }
#ifdef QR_HAVE_QUANT_AVX512
        if (x512) {
            qr__dequantize_row_avx512(c->qtype, (const uint8_t *)c->src + r * c->rb,
                                      (float *)c->dst + r * k, k / QR_QK);
            continue;
        }
#endif
        if (kq_dequant) {
            kq_dequant((const uint8_t *)c->src + r * c->rb, (float *)c->dst + r * k, k);
            continue;
        }
        for (int64_t b = 0; b < nb; b++) {
            if (c->dir == 0)
                f->quant((const float *)c->src + r * k + b * f->block_values,
                         (uint8_t *)c->dst + r * c->rb + b * f->block_bytes);
            else
                f->dequant((const uint8_t *)c->src + r * c->rb + b * f->block_bytes,
                           (float *)c->dst + r * k + b * f->block_values);
        }
    }
}

static int rows_op(int qtype, int dir, const void *src, void *dst, int64_t rows, int64_t k) {
    int64_t rb = qr_quant_row_bytes(qtype, k);
    if (rb < 0 || rows < 0) return QR_EARG;
    const qr_qformat *f = qr__qformat(qtype);
    if (dir == 0 && f->block_values > 1 && !f->quant) return QR_EARG;   /* no quantizer */
    if (rows == 0 || k == 0) return QR_OK;
    if (!src || !dst) return QR_EARG;
    qrows_ctx c = {qtype, dir, src, dst, k, (size_t)rb};
    qr_par_items(qrows, &c, rows, rows * k * (dir == 0 ? 8 : 1));
    return QR_OK;
}

void qr__dequantize_rows(int qtype, const uint8_t *w, size_t rb, float *y, int64_t rows,
                         int64_t k) {
    qrows_ctx d = {qtype, 1, w, y, k, rb};
    qrows(&d, 0, rows);
}

/* ------------------------------------------------------------------ embedding rows */
typedef struct {
    int qtype;
    const uint8_t *w;     /* the table [vocab, K] */
    const int32_t *ids;   /* [n] */
    float *y;             /* [n, K] */
    int64_t K;
    size_t rb;            /* bytes a table row */
} gr_ctx;

static void get_rows(void *p, int64_t lo, int64_t hi) {
    const gr_ctx *c = p;
    for (int64_t i = lo; i < hi; i++) {
        qrows_ctx d = {c->qtype, 1, c->w + (size_t)c->ids[i] * c->rb, c->y + i * c->K, c->K, c->rb};
        qrows(&d, 0, 1);
    }
}

static int get_rows_op(int qtype, const void *w, const int32_t *ids, float *y, int64_t n,
                       int64_t vocab, int64_t K) {
    int64_t rb = qr_quant_row_bytes(qtype, K);
    if (rb < 0 || n < 0 || vocab < 0) return QR_EARG;
    if (n == 0 || K == 0) return QR_OK;
    if (!w || !ids || !y) return QR_EARG;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) return QR_ETARGET;   /* as qr_embedding_f32 */
    gr_ctx c = {qtype, w, ids, y, K, (size_t)rb};
    qr_par_items(get_rows, &c, n, n * K);
    return QR_OK;
}

/* ------------------------------------------------------------------ public entry points */
/* qr_quantize_<fmt>, qr_dequantize_<fmt>, qr_get_rows_<fmt> (declared in qorus.h) */
#define QR_DEQUANT_API(fmt, qtype)                                                        \
    int qr_dequantize_##fmt(const void *w, float *y, int64_t rows, int64_t k) {           \
        return rows_op(qtype, 1, w, y, rows, k);                                           \
    }                                                                                      \
    int qr_get_rows_##fmt(const void *w, const int32_t *ids, float *y, int64_t n,          \
                          int64_t vocab, int64_t K) {                                      \
        return get_rows_op(qtype, w, ids, y, n, vocab, K);                                 \
    }
#define QR_FORMAT_API(fmt, qtype)                                                         \
    QR_DEQUANT_API(fmt, qtype)                                                             \
    int qr_quantize_##fmt(const float *x, void *out, int64_t rows, int64_t k) {           \
        return rows_op(qtype, 0, x, out, rows, k);                                         \
    }
QR_FORMAT_API(q8_0, QR_QTYPE_Q8_0)
QR_FORMAT_API(q4_0, QR_QTYPE_Q4_0)
QR_FORMAT_API(q4_1, QR_QTYPE_Q4_1)
QR_FORMAT_API(q5_0, QR_QTYPE_Q5_0)
QR_FORMAT_API(q5_1, QR_QTYPE_Q5_1)
QR_FORMAT_API(f16, QR_QTYPE_F16)
QR_FORMAT_API(bf16, QR_QTYPE_BF16)
QR_DEQUANT_API(q2_k, QR_QTYPE_Q2_K)
QR_DEQUANT_API(q3_k, QR_QTYPE_Q3_K)
QR_DEQUANT_API(q4_k, QR_QTYPE_Q4_K)
QR_DEQUANT_API(q5_k, QR_QTYPE_Q5_K)
QR_DEQUANT_API(q6_k, QR_QTYPE_Q6_K)
QR_DEQUANT_API(iq4_nl, QR_QTYPE_IQ4_NL)
