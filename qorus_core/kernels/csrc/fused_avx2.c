/* fused_avx2.c - the fused kernels of fused_impl.h compiled with -mavx2 -mfma (8-wide
 * vectors) and, unlike act_avx2.c, FMA contraction on (the pragma below): faster exp and
 * dot products, results within float tolerance of the portable build. Still bit-identical
 * for any thread count. Called only when cpu.c reports AVX2 + FMA. */
#pragma GCC optimize("fp-contract=fast")
#define QR_FUSED_SFX avx2
#include "fused_impl.h"
