/* qorus.h - the one public header of libqorus, the Qorus SIMD kernel library (C11).
 *
 * Conventions
 *   - Buffers are contiguous float32 (int32 where stated); a matrix [R,C] is row-major.
 *   - Kernels return 0 (QR_OK) or a negative QR_E* code (the Python side raises KernelError).
 *     Kernels returning a value (loss, sum) return a negative number on error, where the
 *     value itself is never negative; NaN passes through.
 *   - Elementwise kernels accept out == an input (in place); no other aliasing.
 *   - Results are reproducible for a given thread count: work is split deterministically and
 *     every reduction runs in a fixed order. GEMM, elementwise and the loss/sumsq/col_sum
 *     results do not depend on the thread count at all.
 *   - NaN propagates through elementwise math as in NumPy (relu(NaN) = NaN; relu_bwd masks a
 *     NaN input to 0 * dy).
 */
#ifndef QORUS_H
#define QORUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define QR_API __attribute__((visibility("default")))
#else
#define QR_API
#endif

#define QR_OK 0
#define QR_EARG (-1)    /* an argument is invalid (size, null, out of range) */
#define QR_ETARGET (-2) /* a class index / token id is outside its range */
#define QR_ENOMEM (-3)  /* scratch memory could not be allocated */

/* ------------------------------------------------------------------ threads (threads.c) */
/* One persistent pool; QORUS_NUM_THREADS sets its size at first use (default: usable cores). */
QR_API int qr_get_threads(void);
QR_API int qr_set_threads(int n); /* n <= 0: the default; returns the count now in effect */
/* Run fn(ctx, i, ntasks) for i in [0, ntasks): task 0 on the caller, the rest on workers.
 * A nested call, or a call while another thread owns the pool, runs all tasks serially on
 * the caller (same partition, same result). */
typedef void (*qr_task_fn)(void *ctx, int task, int ntasks);
QR_API void qr_parallel(qr_task_fn fn, void *ctx, int ntasks);
/* Tasks for `work` units when `grain` units make a task worth it: 1 .. threads. */
QR_API int qr_tasks_for(size_t work, size_t grain);
/* Per-thread scratch buffer `slot` (0..3): 64-byte aligned, >= bytes, kept between calls. */
QR_API void *qr_scratch(int slot, size_t bytes);

/* ------------------------------------------------------------------ cpu (cpu.c) */
#define QR_CPU_SSE4_2 (1u << 0)
#define QR_CPU_AVX (1u << 1)
#define QR_CPU_AVX2 (1u << 2)
#define QR_CPU_FMA (1u << 3)
#define QR_CPU_F16C (1u << 4)
#define QR_CPU_AVX512F (1u << 5)
#define QR_SIMD_PORTABLE 0
#define QR_SIMD_AVX2 1
QR_API unsigned qr_cpu_features(void); /* QR_CPU_* bits, detected at run time */
QR_API int qr_simd_path(void);         /* QR_SIMD_AVX2 (avx2 + fma, compiled in) or portable */
/* 0: force the portable path; other: AVX2 where available. Returns the path in effect.
 * QORUS_SIMD=portable forces the portable path from the start. */
QR_API int qr_set_simd_path(int path);
QR_API int qr_simd_compiled(void);     /* 1 if the AVX2 objects were compiled in */
QR_API const char *qr_version(void);

/* ------------------------------------------------------------------ gemm (gemm.c) */
/* C[M,N] = alpha * op(A) @ op(B) + beta * C
 *   op(A) = A[M,K] (lda = K), or A^T with A stored [K,M] (lda = M) when trans_a;
 *   op(B) = B[K,N] (ldb = N), or B^T with B stored [N,K] (ldb = K) when trans_b.
 * beta == 0 never reads C. C must not overlap A or B. */
QR_API int qr_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, const float *B, float beta, float *C);

/* ------------------------------------------------------------------ act (act.c) */
/* y[R,N] += bias[N] */
QR_API int qr_bias_add_f32(float *y, const float *bias, int64_t rows, int64_t n);
/* out[N] = sum_r x[R,N] + beta * out[N] (rows summed in order) */
QR_API int qr_col_sum_f32(const float *x, float *out, int64_t rows, int64_t n, float beta);
QR_API int qr_fill_f32(float *x, int64_t n, float value);          /* x[n] = value */
QR_API int qr_copy_f32(const float *src, float *dst, int64_t n);   /* n 4-byte elements */
QR_API int qr_add_f32(const float *a, const float *b, float *out, int64_t n);
QR_API int qr_mul_f32(const float *a, const float *b, float *out, int64_t n);
QR_API int qr_scale_f32(float *x, int64_t n, float alpha);         /* x *= alpha */
QR_API int qr_axpy_f32(float alpha, const float *x, float *y, int64_t n); /* y += alpha x */
/* sum x[n]^2: 4096-element blocks in float lanes, block sums added in double, in order */
QR_API double qr_sumsq_f32(const float *x, int64_t n);
/* activations over n elements: y = f(x); backward dx = dy * f'(.) from x (or from y for
 * sigmoid and tanh); gelu: approximate = 0 exact (erf), 1 tanh form */
QR_API int qr_relu_f32(const float *x, float *y, int64_t n);
QR_API int qr_relu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n);
QR_API int qr_gelu_f32(const float *x, float *y, int64_t n, int approximate);
QR_API int qr_gelu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n,
                           int approximate);
QR_API int qr_sigmoid_f32(const float *x, float *y, int64_t n);
QR_API int qr_sigmoid_bwd_f32(const float *y, const float *dy, float *dx, int64_t n);
QR_API int qr_silu_f32(const float *x, float *y, int64_t n);
QR_API int qr_silu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n);
QR_API int qr_tanh_f32(const float *x, float *y, int64_t n);
QR_API int qr_tanh_bwd_f32(const float *y, const float *dy, float *dx, int64_t n);
/* y[n,D] = weight[ids[i], :], ids[n] int32 in [0, V) (else QR_ETARGET), weight[V,D] */
QR_API int qr_embedding_f32(const int32_t *ids, const float *weight, float *y, int64_t n,
                            int64_t V, int64_t D);
/* dweight[ids[i], :] += dy[i, :] in order of i (repeated ids accumulate) */
QR_API int qr_embedding_bwd_f32(const int32_t *ids, const float *dy, float *dweight, int64_t n,
                                int64_t V, int64_t D);

/* ------------------------------------------------------------------ norm (norm.c) */
/* y[R,N] = softmax of each row of x[R,N]; backward dx = y * (dy - sum(dy * y)) per row */
QR_API int qr_softmax_f32(const float *x, float *y, int64_t rows, int64_t n);
QR_API int qr_softmax_bwd_f32(const float *y, const float *dy, float *dx, int64_t rows,
                              int64_t n);
/* y[R,N] = (x - mean) * rstd * gamma[N] + beta[N]; writes mean[R], rstd[R] */
QR_API int qr_layernorm_f32(const float *x, const float *gamma, const float *beta, float *y,
                            float *mean, float *rstd, int64_t rows, int64_t n, float eps);
/* dx[R,N] written (may be NULL: no input gradient); dgamma[N], dbeta[N] accumulated (+=) */
QR_API int qr_layernorm_bwd_f32(const float *x, const float *gamma, const float *mean,
                                const float *rstd, const float *dy, float *dx, float *dgamma,
                                float *dbeta, int64_t rows, int64_t n);
/* y[R,N] = x * rstd * weight[N], rstd[R] = 1 / sqrt(mean(x^2) + eps) saved */
QR_API int qr_rmsnorm_f32(const float *x, const float *weight, float *y, float *rstd,
                          int64_t rows, int64_t n, float eps);
/* dx[R,N] written unless NULL; dweight[N] accumulated (+=) */
QR_API int qr_rmsnorm_bwd_f32(const float *x, const float *weight, const float *rstd,
                              const float *dy, float *dx, float *dweight, int64_t rows,
                              int64_t n);

/* ------------------------------------------------------------------ loss (loss.c) */
/* Mean cross-entropy of logits[N,C] against targets[N] (int32), label smoothing eps in [0,1];
 * dlogits[N,C] (NULL: not written; may alias logits) = (softmax - smoothed one-hot) / N.
 * Returns the loss (>= 0, or NaN), or QR_ETARGET / QR_EARG / QR_ENOMEM. */
QR_API double qr_cross_entropy_f32(const float *logits, const int32_t *targets, float *dlogits,
                                   int64_t N, int64_t C, double eps);
/* mean of (pred - target)^2 over n; dpred[n] (may be NULL) = 2 (pred - target) / n */
QR_API double qr_mse_f32(const float *pred, const float *target, float *dpred, int64_t n);
/* rows of logits[N,C] whose first argmax equals targets[r] (NaN counts as the maximum) */
QR_API int64_t qr_count_correct_f32(const float *logits, const int32_t *targets, int64_t N,
                                    int64_t C);
/* mask[i] = scale if (lowbias32(i * 0x9E3779B1 + seed) >> 8) >= threshold, else 0 */
QR_API int qr_dropout_mask_f32(float *mask, int64_t n, uint32_t threshold, float scale,
                               uint32_t seed);

/* ------------------------------------------------------------------ optim (optim.c) */
/* torch.optim.SGD over flat p, g, buf[n] (buf: the momentum buffer, unused if momentum 0) */
QR_API int qr_sgd_step_f32(float *p, const float *g, float *buf, int64_t n, double lr,
                           double momentum, double dampening, double weight_decay, int nesterov,
                           int first);
/* torch.optim.Adam (decoupled 0) / AdamW (decoupled 1) over flat p, g, m, v[n]; step >= 1 */
QR_API int qr_adam_step_f32(float *p, const float *g, float *m, float *v, int64_t n, double lr,
                            double beta1, double beta2, double eps, double weight_decay,
                            int64_t step, int decoupled);

#ifdef __cplusplus
}
#endif
#endif /* QORUS_H */
