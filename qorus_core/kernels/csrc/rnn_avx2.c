/* rnn_avx2.c - the recurrent cell row bodies of rnn.c compiled with -mavx2 -mfma (8-wide
 * vectors of the exp/tanh polynomials). FP contraction stays off, so the results are
 * bit-identical to the portable build; called only when cpu.c reports AVX2 + FMA. */
#define QR_RNN_SFX avx2
#include "rnn.c"
