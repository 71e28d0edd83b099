/* optim.c - SGD and Adam/AdamW steps over flat float32 buffers, exactly as numpy.py computes
 * them: the same float32 operations in the same order, constants rounded from double the
 * same way, so the C and NumPy results are bit-identical and track torch.optim to ~1e-6.
 * Elementwise, so splitting over threads changes nothing. */
#include <math.h>

#include "qr_math.h"
#include "qorus.h"

/* ------------------------------------------------------------------ sgd */
typedef struct {
    float *p, *buf, *m, *v;
    const float *g;
    float lr, mom, one_m_damp, wd;
    int nesterov, first, use_wd, use_mom;
} sgd_ctx;

static void sgd_range(void *ctx, int64_t lo, int64_t hi) {
    const sgd_ctx *c = ctx;
    float *p = c->p, *buf = c->buf;
    const float *g = c->g;
    for (int64_t i = lo; i < hi; i++) {
        float d = g[i];
        if (c->use_wd) d = d + p[i] * c->wd;
        if (c->use_mom) {
            float b;
            if (c->first) b = d;
            else { float t = d * c->one_m_damp; b = buf[i] * c->mom; b = b + t; }
            buf[i] = b;
            if (c->nesterov) d = d + b * c->mom;
            else d = b;
        }
        p[i] = p[i] - d * c->lr;
    }
}

int qr_sgd_step_f32(float *p, const float *g, float *buf, int64_t n, double lr, double momentum,
                    double dampening, double weight_decay, int nesterov, int first) {
    if (n < 0 || (n > 0 && (!p || !g || (momentum != 0.0 && !buf)))) return QR_EARG;
    sgd_ctx c = {.p = p, .buf = buf, .g = g, .lr = (float)lr, .mom = (float)momentum,
                 .one_m_damp = (float)(1.0 - dampening), .wd = (float)weight_decay,
                 .nesterov = nesterov, .first = first, .use_wd = weight_decay != 0.0,
                 .use_mom = momentum != 0.0};
    qr_par_range(sgd_range, &c, n, QR_PAR_GRAIN);
    return QR_OK;
}

/* ------------------------------------------------------------------ adam / adamw */
typedef struct {
    float *p, *m, *v;
    const float *g;
    float decay, wd, one_m_b1, b2, one_m_b2, sqrt_bc2, eps, step_size;
    int decoupled, use_wd;
} adam_ctx;

static void adam_range(void *ctx, int64_t lo, int64_t hi) {
    const adam_ctx *c = ctx;
    float *p = c->p, *m = c->m, *v = c->v;
    const float *g = c->g;
    for (int64_t i = lo; i < hi; i++) {
        float pi = p[i], gg = g[i];
        if (c->decoupled) {
            if (c->use_wd) pi = pi * c->decay;            /* p *= 1 - lr * wd */
        } else if (c->use_wd) {
            gg = gg + pi * c->wd;                         /* g + wd * p */
        }
        float mi = m[i], vi = v[i], t;
        t = (gg - mi) * c->one_m_b1;                      /* m.lerp_(g, 1 - b1) */
        mi = mi + t;
        vi = vi * c->b2;                                  /* v = b2 v + (1 - b2) g^2 */
        t = gg * gg * c->one_m_b2;
        vi = vi + t;
        t = __builtin_sqrtf(vi) / c->sqrt_bc2 + c->eps;   /* denom */
        t = mi / t * c->step_size;
        p[i] = pi - t;
        m[i] = mi;
        v[i] = vi;
    }
}

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
    qr_par_range(adam_range, &c, n, QR_PAR_GRAIN);
    return QR_OK;
}
