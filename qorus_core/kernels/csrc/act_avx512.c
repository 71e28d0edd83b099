/* act_avx512.c - the elementwise, softmax, LayerNorm / RMSNorm, cross-entropy row and
 * optimizer kernels of vec_impl.h compiled with -mavx512f/bw/vl/dq (16-wide vectors, the
 * 16-lane exp/erf/tanh twins of qr_math.h). FP contraction stays off, so the results are
 * bit-identical to the portable and AVX2 builds; called only when cpu.c reports the tier. */
/* The 16-lane exp/erf chains are latency-bound: the loops run four vectors at a time, and
 * GCC's pre-allocation scheduler (off by default on x86) interleaves their instructions
 * (exact GELU 2048x256: 345 -> 220 us on one Zen 5 core). */
#pragma GCC optimize("schedule-insns", "sched-pressure")
#define QR_VEC_SFX avx512
#include "vec_impl.h"
