/* fused_internal.h - private: contexts and twin declarations of the fused kernels (fused.c).
 * The bodies live in fused_impl.h, compiled three times: portable (fused.c), AVX2
 * (fused_avx2.c) and AVX-512 (fused_avx512.c), the SIMD ones with FMA contraction on: the
 * builds agree to float tolerance, not bit for bit; qr_simd_pick3() (qr_math.h) chooses at
 * run time, as for act.c. */
#ifndef QORUS_FUSED_INTERNAL_H
#define QORUS_FUSED_INTERNAL_H

#include <stdatomic.h>

#include "qr_math.h"
#include "qorus.h"

#define QR_ATT_BK 64   /* keys per tile of the attention kernels */

/* rope: rows of x [B*T, H*D]; cs: per t, D/2 cos then D/2 sin */
typedef struct {
    const float *x; float *y; const float *cs;
    int64_t T, H, D;
    int half_split;
} rope_ctx;

/* swiglu / broadcast ops */
typedef struct {
    const float *a, *b, *dy;   /* gate|x, up|bias|w, dy */
    float *o, *o2;             /* y|dgate|dx, dup|dw|db */
    int64_t rows, n;
} fz_ctx;

/* broadcast backward over blocks of QR_BB_ROWS rows: partial column sums part[block][n] */
#define QR_BB_ROWS 64
typedef struct {
    const float *x, *w, *dy;   /* x, w: NULL for add_bcast */
    float *dx, *part;          /* dx: NULL (or == dy for add) to skip */
    int64_t rows, n;
} bb_ctx;

/* masked softmax over rows of [G, Tq, Tk] */
typedef struct {
    const float *x, *dy; float *y, *dx;
    int64_t Tq, Tk;
    float scale;
    int causal;
} smm_ctx;

/* Decode (flash-decoding): the n_ctx keys of each (b, kv head) are cut into chunks of at
 * least QR_DEC_MIN_KEYS keys until there are QR_DEC_UNITS work units; a chunk's partial
 * (max, sum, unnormalised out) per query head is merged afterwards in chunk order. The cut
 * depends on the sizes only, so the result does not depend on the thread count. */
#define QR_DEC_UNITS 32
#define QR_DEC_MIN_KEYS 64
#define QR_DEC_VKEYS 64                 /* keys per V block (kept in L1 for the G heads) */
#define QR_DEC_PF_KEYS 16               /* how far ahead dec_scores prefetches K rows */
#define QR_DEC_GRAIN ((int64_t)1 << 14)  /* B*H*n_ctx*D per task (~1.5 us): threads pay off */

/* attention: q [B,Tq,H,D], k/v [B,Tk,Hkv,D], out/dout/dq like q, dk/dv like k, lse [B,H,Tq];
 * masks (or NULL): kpm [B,Tk] (nonzero: key left out), bias [Tq,Tk] blocks at
 * bias + b * bsb + h * bsh (added to the scaled scores); dropout of the probabilities;
 * decode: part [units, G, 2 + D] (max, sum, out) when chunk < Tk */
typedef struct {
    const float *q, *k, *v, *out, *lse, *dout, *bias;
    const int32_t *kpm;
    float *o, *l, *dq, *dk, *dv, *part;
    int64_t B, Tq, Tk, H, Hkv, D, max_ctx, chunk, bsb, bsh;
    float scale;
    int causal;
    /* attention dropout (masked attention only): a probability's kept value (1 / (1 - p)),
     * its 24-bit threshold and seed; drop 0: none */
    int drop;
    float drop_scale;
    uint32_t drop_thr, drop_seed;
    atomic_int err;
} att_ctx;

/* keys per chunk of a decode step of B rows over n keys (fused.c; decode_rows.c cuts each
 * row as a one-row step would) */
int64_t qr__dec_chunk(int64_t B, int64_t Hkv, int64_t n);

#define QR_FUSED_DECL(sfx)                                                 \
    void qr__rope_rows_##sfx(void *ctx, int64_t lo, int64_t hi);           \
    void qr__swiglu_range_##sfx(void *ctx, int64_t lo, int64_t hi);        \
    void qr__swiglu_bwd_range_##sfx(void *ctx, int64_t lo, int64_t hi);    \
    void qr__add_bcast_rows_##sfx(void *ctx, int64_t lo, int64_t hi);      \
    void qr__mul_bcast_rows_##sfx(void *ctx, int64_t lo, int64_t hi);      \
    void qr__bcast_bwd_blocks_##sfx(void *ctx, int64_t lo, int64_t hi);    \
    void qr__smm_rows_##sfx(void *ctx, int64_t lo, int64_t hi);            \
    void qr__smm_bwd_rows_##sfx(void *ctx, int64_t lo, int64_t hi);        \
    void qr__att_fwd_items_##sfx(void *ctx, int64_t lo, int64_t hi);       \
    void qr__att_bwd_items_##sfx(void *ctx, int64_t lo, int64_t hi);       \
    void qr__att_dec_items_##sfx(void *ctx, int64_t lo, int64_t hi);      \
    void qr__att_dec_merge_##sfx(void *ctx, int64_t lo, int64_t hi);
QR_FUSED_DECL(portable)
QR_FUSED_DECL(avx2)
QR_FUSED_DECL(avx512)

#endif
