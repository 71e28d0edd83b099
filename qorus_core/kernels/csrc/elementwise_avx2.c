/* elementwise_avx2.c - elementwise_impl.h compiled with -mavx2 -mfma (8-wide); no FP
 * contraction, so the results are bit-identical to the portable build. */
#define QR_PRIM_SFX avx2
#include "elementwise_impl.h"
