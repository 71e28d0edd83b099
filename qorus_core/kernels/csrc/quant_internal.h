/* quant_internal.h - private interface between quant_formats.c (formats, row drivers), quant.c
 * (the products: drivers and portable dot products), quant_avx2.c (AVX2/FMA/F16C dot products and F16 conversion) and quant_avx512.c (AVX-512
 * BW/VL + VNNI dot products). Not part of the public API.
 *
 * Activations are quantized per row into 8-bit blocks of 32 (the "q8" buffer):
 *   row r at base + r * stride: int8 q[nb * 32] | float d[nb] | float s[nb]
 *   d = amax / 127, q = roundf(x / d) (half away from zero, |q| <= 127), s = d * sum(q)
 * (ggml's Q8_0 / Q8_1 activation blocks, with the scales kept in float32). A block holding a
 * NaN or inf gets q = 0, d = s = NaN: every output it feeds is NaN.
 * Paired layout (the AVX2 Q4 kernels): blocks 2p and 2p + 1 occupy bytes [64p, 64p + 64) as
 * 2p[0:16] | 2p+1[0:16] | 2p[16:32] | 2p+1[16:32], matching a Q4 pair's nibbles loaded into
 * one register; an odd last block stays in natural order. Same values, other order. It is
 * followed by float X[2 * nb], each whole quad of blocks 4q..4q+3 as
 * [d0 s0 d2 s2 | d1 s1 d3 s3] (the decode kernel's scale vector: one load a quad, and each
 * 128-bit half holds the scales of the block pair that its nibble lane carries). */
#ifndef QORUS_QUANT_INTERNAL_H
#define QORUS_QUANT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define QR_QK 32   /* values per block */
#define QR_QMAX_ROWS 4   /* activation rows a dot kernel serves at once */

/* out[j] = sum over blocks of w_row (nb blocks, the weight format) . q8 row j, j < mx;
 * xq: the first q8 row, xstride: bytes between q8 rows. */
typedef void (*qr_qdot_fn)(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xstride,
                           int mx, float *out);
/* out[j] = sum_k f16 w[k] * x[j * ldx + k], j < mx */
typedef void (*qr_fdot_fn)(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx,
                           float *out);

void qr__qdot_q8_0_avx2(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xstride,
                        int mx, float *out);
void qr__qdot_q4_0_avx2(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xstride,
                        int mx, float *out);
void qr__qdot_q4_1_avx2(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xstride,
                        int mx, float *out);
/* decode (one activation row): y[r] = dot(weight row r, the row), r < nrows, rows wrow bytes
 * apart; one call for a whole range, so per-row costs stay out of the weight stream */
typedef void (*qr_qrows_fn)(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                            const uint8_t *xq, float *y);
void qr__qrows_q8_0_avx2(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                         const uint8_t *xq, float *y);
void qr__qrows_q4_0_avx2(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                         const uint8_t *xq, float *y);
void qr__qrows_q4_1_avx2(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                         const uint8_t *xq, float *y);
void qr__qrows_f16_avx2(int64_t k, const uint8_t *w, size_t wrow, int64_t nrows,
                        const uint8_t *x, float *y);   /* x: float32 */
void qr__fdot_f16_avx2(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx,
                       float *out);
/* one q8 row from x[k] (k a multiple of 32), bit-identical to the portable version */
void qr__quantize_q8_row_avx2(const float *x, int64_t k, uint8_t *row, int paired);
void qr__f16_to_f32_avx2(const uint16_t *x, float *y, int64_t n);
void qr__f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n);

/* ------------------------------------------------------------------ AVX-512 + VNNI tier
 * Compiled in where the AVX-512 objects are and the compiler knows VNNI (quant_avx512.c turns
 * it on for itself only: the other *_avx512.c files never emit it); run only where the CPU has
 * AVX512VNNI too (cpu.c's family table, quant_formats.c's qr__quant_tier()).
 *
 * Its q8 rows ("x" layouts) hold q (room for whole quads) | d | s, as above, and add, at
 * 64-byte aligned offsets (qr_x_off_*):
 *   C  int32 [8 nb]  vpdpbusd's starting sums, so that its unsigned x signed products give
 *                    exact signed dot products (per 4-byte lane);
 *   E  float [8 nb]  the activation scale d repeated once per int32 lane it scales;
 *   X  float [2 nb]  (Q4 only) each quad's [0 s0 0 s1 0 s2 0 s3] (Q4_1's m * s term).
 * Layout 0 (Q8_0 weights): q in natural order; block b's 8 lanes cover q[32b + 4g ..] (g < 8),
 *   C = -128 * their sums (the weights enter as w ^ 0x80 = w + 128), E[8b + g] = d[b].
 * Layout 1 (Q4 weights): each whole quad of blocks 4t .. 4t + 3 takes bytes [128t, 128t + 128)
 *   as 4t[0:16] | 4t+1[0:16] | 4t+2[0:16] | 4t+3[0:16] | 4t[16:32] | ... | 4t+3[16:32] (a
 *   quad's low nibbles, then its high ones, each block in its own 128-bit lane); lane 4k + g
 *   covers q[4g ..] and q[16 + 4g ..] of block 4t + k: C = -8 * their sum (Q4_0's offset, unused
 *   for Q4_1), E = d of the block; a last 1-3 blocks make a quad whose missing blocks are zeros
 *   (q, C, E, X). Same q values, other order. */
#define QR_QMAX_ROWS_X 8   /* activation rows an AVX-512 dot kernel serves at once */
#if defined(QR_HAVE_AVX512_BUILD) && \
    ((defined(__clang__) && __clang_major__ >= 6) || (!defined(__clang__) && __GNUC__ >= 8))
#define QR_HAVE_QUANT_AVX512 1
#endif
/* offsets in an x row of nb blocks: its regions are sized for whole quads (nq4 = nb rounded up
 * to a multiple of 4 blocks) */
static inline size_t qr_a64(size_t n) { return (n + 63) & ~(size_t)63; }
static inline size_t qr_x_nb4(int64_t nb) { return ((size_t)nb + 3) & ~(size_t)3; }
static inline size_t qr_x_off_d(int64_t nb) { return qr_x_nb4(nb) * 32; }
static inline size_t qr_x_off_c(int64_t nb) { return qr_a64(qr_x_off_d(nb) + (size_t)nb * 8); }
static inline size_t qr_x_off_e(int64_t nb) { return qr_x_off_c(nb) + qr_x_nb4(nb) * 32; }
static inline size_t qr_x_off_x(int64_t nb) { return qr_x_off_e(nb) + qr_x_nb4(nb) * 32; }
static inline size_t qr_x_stride(int64_t nb) { return qr_a64(qr_x_off_x(nb) + qr_x_nb4(nb) * 8); }

void qr__qdot_q8_0_avx512(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xstride,
                          int mx, float *out);
void qr__qdot_q4_0_avx512(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xstride,
                          int mx, float *out);
void qr__qdot_q4_1_avx512(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xstride,
                          int mx, float *out);
void qr__qrows_q8_0_avx512(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                           const uint8_t *xq, float *y);
void qr__qrows_q4_0_avx512(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                           const uint8_t *xq, float *y);
void qr__qrows_q4_1_avx512(int64_t nb, const uint8_t *w, size_t wrow, int64_t nrows,
                           const uint8_t *xq, float *y);
void qr__qrows_f16_avx512(int64_t k, const uint8_t *w, size_t wrow, int64_t nrows,
                          const uint8_t *x, float *y);   /* x: float32 */
void qr__fdot_f16_avx512(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx,
                         float *out);
/* one q8 row in layout 0 or 1 from x[k] (k a multiple of 32); q, d, s bit-identical to the
 * portable version */
void qr__quantize_q8_row_avx512(const float *x, int64_t k, uint8_t *row, int layout);
/* y[32 nb] = the nb blocks of a Q8_0 / Q4_0 / Q4_1 row (qtype), bit-identical to quant_formats.c's */
void qr__dequantize_row_avx512(int qtype, const uint8_t *w, float *y, int64_t nb);


/* ------------------------------------------------------------------ shared by the formats
 * (quant_formats.c) and the products (quant.c) */
/* one q8 row in the natural layout (q | d | s) from x[k] (k a multiple of 32), the same bits
 * on every tier (quant.c; the prompt product's activations, quant_prompt.c) */
void qr__quantize_q8_natural(const float *x, int64_t k, uint8_t *row, int tier);
/* the tier the quant kernels run (cpu.c's family table says the same) */
int qr__quant_tier(void);
/* rows [0, rows) of a quantized weight (qtype, rb bytes a row) dequantized into y [rows, k],
 * serially on this thread (bit-identical on every tier) */
void qr__dequantize_rows(int qtype, const uint8_t *w, size_t rb, float *y, int64_t rows,
                         int64_t k);

static inline float qr__f16_to_f32(uint16_t h) {   /* exact */
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, b;
    if (e == 0) {
        float v = (float)m * 5.9604644775390625e-8f;   /* m * 2^-24, exact */
        memcpy(&b, &v, 4);
        b |= sign;
    } else if (e == 31) {
        b = sign | 0x7f800000u | (m << 13);
    } else {
        b = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static inline uint16_t qr__f32_to_f16(float f) {   /* round to nearest even, as F16C / NumPy */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)   /* inf, NaN (quieted, payload truncated like F16C) */
        return (uint16_t)(sign | (ax == 0x7f800000u ? 0x7c00u : 0x7e00u | ((ax >> 13) & 0x3ffu)));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   /* rounds to inf */
    if (ax < 0x38800000u) {   /* fp16 subnormal or zero: round(|f| * 2^24), ties to even */
        float a;
        memcpy(&a, &ax, 4);
        volatile float t = a * 16777216.0f + 12582912.0f;   /* exact scale, then RNE */
        float r = t - 12582912.0f;
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t m = ax - 0x38000000u;               /* rebias the exponent 127 -> 15 */
    m = m + 0x0fffu + ((m >> 13) & 1u);          /* ties to even; a carry bumps the exponent */
    return (uint16_t)(sign | (m >> 13));
}

static inline float qr__get16f(const uint8_t *p) {   /* an fp16 field of a block */
    uint16_t v;
    memcpy(&v, p, 2);
    return qr__f16_to_f32(v);
}

/* round(v) half away from zero (the q8 quantizers: |v| <= 127.x); NaN / inf: 0, never UB */
static inline int32_t qr__round_q8(float v) {
    float a = v < 0.0f ? -v : v;
    a = a <= 127.5f ? a : 0.0f;
    float t = (float)(int32_t)a;
    float r = t + (a - t >= 0.5f ? 1.0f : 0.0f);
    return (int32_t)(v < 0.0f ? -r : r);
}

/* ------------------------------------------------------------------ the format table
 * One entry a weight format (quant_formats.c): its block, its exact block dequantizer, its
 * reference quantizer (NULL where there is none) and its portable dot product with a q8 row
 * in the natural layout (NULL for the float formats F16 / BF16, converted row by row). */
typedef struct {
    int qtype;
    int block_values, block_bytes;
    void (*dequant)(const uint8_t *block, float *y);
    void (*quant)(const float *x, uint8_t *block);
    qr_qdot_fn qdot;
} qr_qformat;
/* the entry of a ggml type number, NULL if unknown */
const qr_qformat *qr__qformat(int qtype);

/* quant_kformats.c: Q5_0, Q5_1, IQ4_NL, Q2_K .. Q6_K, BF16 */
void qr__dequant_block_q5_0(const uint8_t *b, float *y);
void qr__dequant_block_q5_1(const uint8_t *b, float *y);
void qr__dequant_block_iq4_nl(const uint8_t *b, float *y);
void qr__dequant_block_q2_k(const uint8_t *b, float *y);
void qr__dequant_block_q3_k(const uint8_t *b, float *y);
void qr__dequant_block_q4_k(const uint8_t *b, float *y);
void qr__dequant_block_q5_k(const uint8_t *b, float *y);
void qr__dequant_block_q6_k(const uint8_t *b, float *y);
void qr__quant_block_q5_0(const float *x, uint8_t *out);
void qr__quant_block_q5_1(const float *x, uint8_t *out);
void qr__bf16_to_f32(const uint16_t *x, float *y, int64_t n);
void qr__f32_to_bf16(const float *x, uint16_t *y, int64_t n);
#define QR_QDOT_DECL(fmt)                                                                  \
    void qr__qdot_##fmt(int64_t nb, const uint8_t *w, const uint8_t *xq, size_t xstride,    \
                        int mx, float *out);
QR_QDOT_DECL(q8_0)   /* quant.c's portable ones */
QR_QDOT_DECL(q4_0)
QR_QDOT_DECL(q4_1)
QR_QDOT_DECL(q5_0)
QR_QDOT_DECL(q5_1)
QR_QDOT_DECL(iq4_nl)
QR_QDOT_DECL(q2_k)
QR_QDOT_DECL(q3_k)
QR_QDOT_DECL(q4_k)
QR_QDOT_DECL(q5_k)
QR_QDOT_DECL(q6_k)
void qr__fdot_bf16(int64_t k, const uint16_t *w, const float *x, int64_t ldx, int mx, float *out);

/* The SIMD kernels of quant_kformats.c's formats on a tier (quant_kq*_avx2.c, quant_kq*_avx512.c),
 * each member NULL where the tier has none for the format (the portable one runs then):
 *   qdot, rows1   dot products with q8 rows in the natural layout (q | d | s, as the portable
 *                 ones read them), within the products' tolerance of the portable ones;
 *   dequant_row   y[k] = a row of k values, bit-identical to the block dequantizers. */
typedef void (*qr_dequant_row_fn)(const uint8_t *row, float *y, int64_t k);
typedef struct {
    qr_qdot_fn qdot;
    qr_qrows_fn rows1;
    qr_dequant_row_fn dequant_row;
    qr_fdot_fn fdot;   /* BF16 */
} qr_kq_kernels;
qr_kq_kernels qr__kq_avx2(int qtype);     /* defined where QR_HAVE_AVX2_BUILD */
qr_kq_kernels qr__kq32_avx2(int qtype);   /* its Q5_0, Q5_1, IQ4_NL and BF16 part */
qr_kq_kernels qr__kq_avx512(int qtype);   /* defined where QR_HAVE_QUANT_AVX512 */

#endif
