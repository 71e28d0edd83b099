/* quant_prompt.h - private interface between quant_prompt.c (the prompt product's driver: the
 * activations' 8-bit rows and panels, the weight tiles, the threads) and its SIMD tiles
 * (quant_prompt_avx512.c: VNNI vpdpbusd; quant_prompt_avx2.c: vpmaddubsw). Not public API.
 *
 * The product y [M, N] = x [M, K] @ W^T with x quantized to 8-bit blocks of 32 (quant.c's q8
 * rows, quant_internal.h: q, d = amax / 127, s = d * sum q) computes, for every output
 * (m, n), exactly what the portable one-row kernel (the format's qdot, qr_qformat) gives for
 * row m alone: per block b an exact integer sum s_b of the 32 products (a K-quant's sub-block
 * scales folded in), then in float32, block after block,
 *     acc = acc + (D_b * d_b) * s_b                       (Q8_0, Q4_0, Q6_K)
 *     acc = acc + (D_b * d_b) * s_b, accm = accm + m_b * s_x_b, y = acc + accm   (Q4_1)
 * each operation rounded (no FMA but where it is exact), so every tier gives the same bits.
 *
 * Activation panels (R rows: 16 on AVX-512, 8 on AVX2): the rows of a panel side by side in
 * the lanes of a vector. Block b of a panel is QP_APANEL_BLOCK(R) bytes:
 *   u8  a[8][R][4]   group g, row r: bytes 4g .. 4g + 3 of row r's block, as q + 128 (unsigned)
 *   f32 d[R]         the rows' block scales (0 for a row past M)
 *   f32 s[R]         the rows' d * sum q (Q4_1's m term)
 * Weight tiles (up to QP_NW rows of the weight, one lane each): block b is QP_WBLOCK bytes:
 *   i8  w[QP_NW][32] the block's integers q - offset (Q8_0: q; Q4_0: q - 8; Q4_1: q; Q6_K:
 *                    q - 32), signed, in the value order
 *   i32 c0[QP_NW]    -128 * the sum of w[0:16] (Q6_K) or of w[0:32] (the others): with the
 *   i32 c1[QP_NW]    -128 * sum w[16:32] (Q6_K)        activations' +128 the integer sums
 *   f32 D[QP_NW]     the block's scale (fp16 d; Q6_K: the super-block's d)   come out exact
 *   f32 a0[QP_NW]    Q4_1: m; Q6_K: the scale of the first 16 values (int8, exact in float)
 *   f32 a1[QP_NW]    Q6_K: the scale of the last 16
 * Rows of a tile past N are zeros (their outputs are not stored). */
#ifndef QORUS_QUANT_PROMPT_H
#define QORUS_QUANT_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#define QP_NW 8                 /* weight rows a tile holds (a kernel call serves 1 .. QP_NW) */
#define QP_APANEL_BLOCK(R) ((size_t)(R) * 40)   /* 32 R bytes + d[R] + s[R] */
#define QP_WBLOCK ((size_t)QP_NW * 52)          /* 32 bytes + c0, c1, D, a0, a1 a row */

/* the formats with SIMD tiles (the others take the portable one-row kernel) */
enum { QP_Q8_0, QP_Q4_0, QP_Q4_1, QP_Q6_K };

/* offsets inside a weight tile's block */
#define QP_W_C0 ((size_t)QP_NW * 32)
#define QP_W_C1 (QP_W_C0 + (size_t)QP_NW * 4)
#define QP_W_D (QP_W_C1 + (size_t)QP_NW * 4)
#define QP_W_A0 (QP_W_D + (size_t)QP_NW * 4)
#define QP_W_A1 (QP_W_A0 + (size_t)QP_NW * 4)

/* y[r * ldy + j] (r < rows, j < nw) = the outputs of panel rows r and tile rows j, over nb
 * blocks: a: the panel's first block, w: the tile's. */
typedef void (*qp_tile_fn)(int fmt, int64_t nb, const uint8_t *a, const uint8_t *w, int nw,
                           int rows, float *y, int64_t ldy);
/* the tile of weight rows w .. w + (nw - 1) rb (nw <= QP_NW; the rest zeros) into t, nb
 * blocks (QR_HAVE_AVX2_BUILD; both SIMD tiers take it) */
void qr__qp_build_tile_avx2(int fmt, const uint8_t *w, size_t rb, int nw, int64_t nb,
                            uint8_t *t);
void qr__qp_tile_avx512(int fmt, int64_t nb, const uint8_t *a, const uint8_t *w, int nw,
                        int rows, float *y, int64_t ldy);   /* R = 16; QR_HAVE_QUANT_AVX512 */
void qr__qp_tile_avx2(int fmt, int64_t nb, const uint8_t *a, const uint8_t *w, int nw,
                      int rows, float *y, int64_t ldy);     /* R = 8; QR_HAVE_AVX2_BUILD */

#endif
