/* quant_kq_avx512.c - the AVX-512 BW/VL + VNNI kernels of quant_kformats.c's formats (Q5_0, Q5_1,
 * IQ4_NL, Q2_K .. Q6_K, BF16): the table quant.c and quant_formats.c consult on this tier
 * (quant_internal.h qr_kq_kernels). A format without an entry runs its portable kernels. */
#include "quant_internal.h"

#ifdef QR_HAVE_QUANT_AVX512

qr_kq_kernels qr__kq_avx512(int qtype) {
    qr_kq_kernels k = {0};
    (void)qtype;
    return k;
}

#endif
