/* decode_rows_internal.h - private interface between decode_rows.c (the products of a batched
 * decode step, qr_linears_rows_f32) and its SIMD tiers, decode_rows_avx2.c and
 * decode_rows_avx512.c. Not part of the public API.
 *
 * A tier takes M activation rows x [M, K] of a step as its "acts" buffer (the rows quantized
 * to q8 blocks exactly as its one-row decode kernel quantizes one, in the layout its kernels
 * read, with whatever they precompute from them), then computes y[j * ldy + r] = dot(weight
 * row r, q8 row j) for weight rows r < n (wrow bytes apart, nb blocks of 32 each) and every
 * activation row j < M: each bit for bit what the tier's one-row decode kernel
 * (quant_<tier>.c's qr__qrows_<fmt>_<tier>) gives row j alone, every weight row read once for
 * all M rows. Formats: QR_QTYPE_Q8_0, QR_QTYPE_Q4_0, QR_QTYPE_Q4_1 (qr__mrows_format). */
#ifndef QORUS_DECODE_ROWS_INTERNAL_H
#define QORUS_DECODE_ROWS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define QR_MROWS_MAX 64   /* rows of one step (decode_rows.c's QR_ROWS_MAX) */

/* bytes of the acts buffer for M rows of K values (K a multiple of 32) */
size_t qr__mrows_acts_bytes_avx512(int qtype, int64_t M, int64_t K);
size_t qr__mrows_acts_bytes_avx2(int qtype, int64_t M, int64_t K);
/* x [M, K] -> acts (64-byte aligned, qr__mrows_acts_bytes_<tier> bytes), serially */
void qr__mrows_acts_avx512(int qtype, const float *x, int64_t M, int64_t K, uint8_t *acts);
void qr__mrows_acts_avx2(int qtype, const float *x, int64_t M, int64_t K, uint8_t *acts);
/* y[j * ldy + r] for r < n, j < M (see above) */
void qr__mrows_avx512(int qtype, int64_t nb, const uint8_t *w, size_t wrow, int64_t n,
                      const uint8_t *acts, int64_t M, float *y, int64_t ldy);
void qr__mrows_avx2(int qtype, int64_t nb, const uint8_t *w, size_t wrow, int64_t n,
                    const uint8_t *acts, int64_t M, float *y, int64_t ldy);

#endif
