/* quant_internal.h - private interface between quant.c (formats, drivers, portable path) and
 * quant_avx2.c (AVX2/FMA/F16C dot products and F16 conversion). Not part of the public API.
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

#endif
