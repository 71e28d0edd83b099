/* optim.c - SGD and Adam/AdamW steps over flat float32 buffers, exactly as decl/optim.py
 * computes them: the same float32 operations in the same order, constants rounded from double
 * the same way, so the C and NumPy results are bit-identical and track torch.optim to ~1e-6.
 * Elementwise, so splitting over threads (or the SIMD path) changes nothing. */
#include <math.h>

#include "qr_vec.h"

/* ------------------------------------------------------------------ sgd */
/* step body in vec_impl.h (portable / AVX2 / AVX-512) */
int qr_sgd_step_f32(float *p, const float *g, float *buf, int64_t n, double lr, double momentum,
                    double dampening, double weight_decay, int nesterov, int first) {
    if (n < 0 || (n > 0 && (!p || !g || (momentum != 0.0 && !buf)))) return QR_EARG;
    sgd_ctx c = {.p = p, .buf = buf, .g = g, .lr = (float)lr, .mom = (float)momentum,
                 .one_m_damp = (float)(1.0 - dampening), .wd = (float)weight_decay,
                 .nesterov = nesterov, .first = first, .use_wd = weight_decay != 0.0,
                 .use_mom = momentum != 0.0};
    qr_par_range(qr_simd_pick3(sgd_range), &c, n, QR_PAR_GRAIN);
    return QR_OK;
}

/* ------------------------------------------------------------------ adam / adamw */
/* step body in vec_impl.h (portable / AVX2 / AVX-512) */
int qr_adam_step_f32(float *p, const float *g, float *m, float *v, int64_t n, double lr,
                     double beta1, double beta2, double eps, double weight_decay, int64_t step,
                     int decoupled) {
    if (n < 0 || step < 1 || (n > 0 && (!p || !g || !m || !v))) return QR_EARG;
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);
    adam_ctx c = {.p = p, .m = m, .v = v, .g = g, .decay = (float)(1.0 - lr * weight_decay),
                  .wd = (float)weight_decay, .one_m_b1 = (float)(1.0 - beta1),
                  .b2 = (float)beta2, .one_m_b2 = (float)(1.0 - beta2),
                  .sqrt_bc2 = (float)sqrt(bc2), .eps = (float)eps,
                  .step_size = (float)(lr / bc1), .decoupled = decoupled,
                  .use_wd = weight_decay != 0.0};
    qr_par_range(qr_simd_pick3(adam_range), &c, n, QR_PAR_GRAIN);
    return QR_OK;
}
