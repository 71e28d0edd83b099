/* The template plugin's C kernels: PReLU forward and backward, each one pass over the rows.
 *
 * A plugin's library is its own (built by its own `pip install`, setup.py), loaded by
 * qorus_core through ctypes with argument types derived from the declarations in
 * src/qorus_layers_template/kernels.py; symbols take the plugin's prefix (`tpl_`, never core's
 * `qr_`). The declarations' checks run before any call, so the shapes here are trusted.
 * Returns 0 (a nonzero value would be reported as the kernel's error).
 */
#include <stdint.h>

#define TPL_API __attribute__((visibility("default")))

/* y[r, j] = x[r, j] if x[r, j] > 0, else w[j] * x[r, j].
 * x, y: [rows, d] (y may alias x); w: [d] */
TPL_API int tpl_prelu_f32(const float *x, const float *w, float *y, int64_t rows, int64_t d) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        for (int64_t j = 0; j < d; j++) {
            float v = xr[j];
            yr[j] = v > 0.0f ? v : w[j] * v;
        }
    }
    return 0;
}

/* dx[r, j] = dy[r, j] if x[r, j] > 0, else w[j] * dy[r, j]   (written; NULL: not wanted)
 * dw[j]   += sum_r dy[r, j] * x[r, j] over the x[r, j] <= 0   (added into; NULL: not wanted)
 * x, dy, dx: [rows, d] (dx may alias dy); w, dw: [d]. Summed row by row in order, as the
 * NumPy twin does, so both agree to rounding. */
TPL_API int tpl_prelu_bwd_f32(const float *x, const float *w, const float *dy, float *dx,
                              float *dw, int64_t rows, int64_t d) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d, *gr = dy + r * d;
        if (dw) {
            for (int64_t j = 0; j < d; j++)
                if (!(xr[j] > 0.0f)) dw[j] += gr[j] * xr[j];
        }
        if (dx) {
            float *dr = dx + r * d;
            for (int64_t j = 0; j < d; j++)
                dr[j] = xr[j] > 0.0f ? gr[j] : w[j] * gr[j];
        }
    }
    return 0;
}
