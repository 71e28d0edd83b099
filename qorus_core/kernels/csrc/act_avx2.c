/* act_avx2.c - the elementwise, softmax, cross-entropy row and optimizer kernels of
 * vec_impl.h compiled with -mavx2 -mfma (8-wide vectors). FP contraction stays off, so the
 * results are bit-identical to the portable build; called only when cpu.c reports AVX2+FMA. */
#define QR_VEC_SFX avx2
#include "vec_impl.h"
