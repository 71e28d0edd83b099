/* fused_avx512.c - the fused kernels of fused_impl.h compiled with -mavx512f/bw/vl/dq: 16-wide
 * auto-vectorized loops and the 16-lane exp of qr_math.h (SwiGLU, masked softmax, attention's
 * online softmax), FMA contraction on as in fused_avx2.c (the hand-written decode loops are
 * its 8-wide ones). Results within float tolerance of the other builds, bit-identical for any
 * thread count. Called only when cpu.c reports the AVX-512 tier. */
#pragma GCC optimize("fp-contract=fast")
#define QR_FUSED_SFX avx512
#include "fused_impl.h"
