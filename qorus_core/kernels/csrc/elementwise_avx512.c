/* elementwise_avx512.c - elementwise_impl.h compiled with the AVX-512 flags (16-wide); no FP
 * contraction, so the results are bit-identical to the portable build. */
#define QR_PRIM_SFX avx512
#include "elementwise_impl.h"
