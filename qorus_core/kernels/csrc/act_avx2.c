/* act_avx2.c - the elementwise, softmax, cross-entropy row and optimizer kernels of
 * vec_impl.h compiled with -mavx2 -mfma (8-wide vectors). FP contraction stays off, so the
 * results are bit-identical to the portable build, except the exact GELU and its backward,
 * which run the FMA erf of qr_math.h (within decl/act.py's bound; bit-identical to the
 * AVX-512 build's); called only when cpu.c reports AVX2+FMA. */
/* GCC's pre-allocation scheduler interleaves the two FMA GELU chains of a step (as in
 * act_avx512.c): exact GELU 2^19 floats, 1 thread, 0.92x the time, its backward 0.88x */
#pragma GCC optimize("schedule-insns", "sched-pressure")
#define QR_VEC_SFX avx2
#include "vec_impl.h"
