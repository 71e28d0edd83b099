/* rnn_avx512.c - the recurrent cell row bodies of rnn.c compiled with -mavx512f/bw/vl/dq
 * (16-wide vectors of the exp/tanh polynomials). FP contraction stays off, so the results are
 * bit-identical to the portable and AVX2 builds; called only when cpu.c reports the tier. */
#define QR_RNN_SFX avx512
#include "rnn.c"
