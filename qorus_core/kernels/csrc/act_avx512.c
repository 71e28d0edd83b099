/* act_avx512.c - the elementwise, softmax, LayerNorm / RMSNorm, cross-entropy row and
 * optimizer kernels of vec_impl.h compiled with -mavx512f/bw/vl/dq (16-wide vectors, the
 * 16-lane exp of qr_math.h and erf / tanh / GELU of qr_lanes.h). FP contraction stays off, so
 * the results are bit-identical to the portable and AVX2 builds, except the exact GELU and its
 * backward: the FMA erf of qr_math.h (qr_gelu_fma16), bit-identical to the AVX2 build's, within
 * decl/act.py's bound of the portable one; called only when cpu.c reports the tier. */
/* The 16-lane exp/erf chains are latency-bound: the loops run four vectors at a time, and
 * GCC's pre-allocation scheduler (off by default on x86) interleaves their instructions
 * (exact GELU 2048x256: 345 -> 220 us on one Zen 5 core; re-measured with GCC 12 against a
 * build without the pragma, 2^19 floats, 1 thread: GELU 0.66x the time, its backward 0.7x,
 * tanh-GELU 0.8x, sigmoid 0.77x, tanh 0.86x, softmax 0.88x). */
#pragma GCC optimize("schedule-insns", "sched-pressure")
#define QR_VEC_SFX avx512
#include "vec_impl.h"
