/* qorus.h - the one public header of libqorus, the Qorus SIMD kernel library (C11).
 *
 * Conventions
 *   - Every buffer is contiguous float32 (or int32 where stated); a matrix [R,C] is row-major.
 *   - Kernels return 0 on success or a negative QR_E* code (the Python side raises KernelError);
 *     kernels returning a value (loss, sum) return a negative number for errors where the
 *     value itself is never negative, and say so.
 *   - Elementwise kernels accept out == an input (in place); other aliasing is not allowed.
 *   - Results are reproducible for a given thread count: work is split deterministically and
 *     every reduction runs in a fixed order. GEMM results do not depend on the thread count.
 *   - NaN propagates through elementwise math as in NumPy (relu(NaN) = NaN, relu_bwd masks it).
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
#define QR_ETARGET (-2) /* a class index is outside [0, C) */
#define QR_ENOMEM (-3)  /* scratch memory could not be allocated */

/* ------------------------------------------------------------------ threads (threads.c) */
/* One persistent pool; QORUS_NUM_THREADS sets its size at first use, default = usable cores. */
QR_API int qr_get_threads(void);
QR_API int qr_set_threads(int n);  /* n <= 0: default; returns the count now in effect */
/* Run fn(ctx, i, ntasks) for i in [0, ntasks): task 0 on the caller, the rest on workers.
 * A nested call, or a call while another thread owns the pool, runs all tasks serially in
 * the caller (same partition, so the same result). */
typedef void (*qr_task_fn)(void *ctx, int task, int ntasks);
QR_API void qr_parallel(qr_task_fn fn, void *ctx, int ntasks);
/* Tasks to use for `work` units when `grain` units make one task worth it (>= 1). */
QR_API int qr_tasks_for(size_t work, size_t grain);
/* Per-thread scratch buffer number `slot` (0..3), 64-byte aligned, at least `bytes` long;
 * kept between calls. NULL if allocation fails. */
QR_API void *qr_scratch(int slot, size_t bytes);

/* ------------------------------------------------------------------ cpu (cpu.c) */
#define QR_CPU_SSE4_2 (1u << 0)
#define QR_CPU_AVX (1u << 1)
#define QR_CPU_AVX2 (1u << 2)
#define QR_CPU_FMA (1u << 3)
#define QR_CPU_F16C (1u << 4)
#define QR_CPU_AVX512F (1u << 5)
QR_API unsigned qr_cpu_features(void);      /* bit set of QR_CPU_*, detected at run time */
#define QR_SIMD_PORTABLE 0
#define QR_SIMD_AVX2 1
QR_API int qr_simd_path(void);              /* the path in use: AVX2 (needs avx2+fma) or portable */
QR_API int qr_set_simd_path(int path);      /* force portable (0) or request AVX2 (1); -1: auto.
                                        Returns the path now in effect. QORUS_SIMD=portable
                                        forces the portable path from the start. */
QR_API int qr_simd_compiled(void);          /* 1 if the AVX2 objects were compiled in */
QR_API const char *qr_version(void);

/* ------------------------------------------------------------------ gemm (gemm.c) */
/* C[M,N] = alpha * op(A) @ op(B) + beta * C.
 *   op(A) is A[M,K] (lda = K), or A^T with A stored [K,M] (lda = M) when trans_a;
 *   op(B) is B[K,N] (ldb = N), or B^T with B stored [N,K] (ldb = K) when trans_b.
 * beta == 0 never reads C (NaN in C is overwritten). */
QR_API int qr_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, const float *B, float beta, float *C);

/* ------------------------------------------------------------------ act (act.c) */
QR_API int qr_bias_add_f32(float *y, const float *bias, int64_t rows, int64_t n);   /* y[R,N] += b[N] */
QR_API int qr_col_sum_f32(const float *x, float *out, int64_t rows, int64_t n, float beta);
                                                  /* out[N] = sum_r x[R,N] + beta * out[N] */
QR_API int qr_fill_f32(float *x, int64_t n, float value);
QR_API int qr_copy_f32(const float *src, float *dst, int64_t n);   /* any 4-byte dtype */
QR_API int qr_add_f32(const float *a, const float *b, float *out, int64_t n);
QR_API int qr_mul_f32(const float *a, const float *b, float *out, int64_t n);
QR_API int qr_scale_f32(float *x, int64_t n, float alpha);
QR_API int qr_axpy_f32(float alpha, const float *x, float *y, int64_t n);  /* y += alpha * x */
QR_API double qr_sumsq_f32(const float *x, int64_t n);   /* sum x^2 in double, fixed block order */
QR_API int qr_relu_f32(const float *x, float *y, int64_t n);
QR_API int qr_relu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n);
QR_API int qr_gelu_f32(const float *x, float *y, int64_t n, int approximate);
QR_API int qr_gelu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n, int approximate);
QR_API int qr_sigmoid_f32(const float *x, float *y, int64_t n);
QR_API int qr_sigmoid_bwd_f32(const float *y, const float *dy, float *dx, int64_t n);
QR_API int qr_silu_f32(const float *x, float *y, int64_t n);
QR_API int qr_silu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n);
QR_API int qr_tanh_f32(const float *x, float *y, int64_t n);
QR_API int qr_tanh_bwd_f32(const float *y, const float *dy, float *dx, int64_t n);

/* ------------------------------------------------------------------ norm (norm.c) */
QR_API int qr_softmax_f32(const float *x, float *y, int64_t rows, int64_t n);     /* [R,N] rows */
QR_API int qr_softmax_bwd_f32(const float *y, const float *dy, float *dx, int64_t rows, int64_t n);
/* y[R,N] = (x - mean) * rstd * gamma[N] + beta[N]; writes mean[R], rstd[R]. */
QR_API int qr_layernorm_f32(const float *x, const float *gamma, const float *beta, float *y,
                     float *mean, float *rstd, int64_t rows, int64_t n, float eps);
/* dx[R,N] written; dgamma[N], dbeta[N] accumulated (+=). */
QR_API int qr_layernorm_bwd_f32(const float *x, const float *gamma, const float *mean,
                         const float *rstd, const float *dy, float *dx, float *dgamma,
                         float *dbeta, int64_t rows, int64_t n);

/* ------------------------------------------------------------------ loss (loss.c) */
/* Mean cross-entropy of logits[N,C] vs targets[N] (int32) with label smoothing eps;
 * dlogits[N,C] (may be NULL) = (softmax - smoothed one-hot) / N.
 * Returns the loss (>= 0 or NaN), or QR_ETARGET / QR_EARG (negative) on error. */
QR_API double qr_cross_entropy_f32(const float *logits, const int32_t *targets, float *dlogits,
                            int64_t N, int64_t C, double eps);
/* Mean of (pred - target)^2 over n; dpred (may be NULL) = 2 (pred - target) / n. */
QR_API double qr_mse_f32(const float *pred, const float *target, float *dpred, int64_t n);
/* Rows of logits[N,C] whose first argmax equals targets[r] (NaN counts as the maximum). */
QR_API int64_t qr_count_correct_f32(const float *logits, const int32_t *targets, int64_t N, int64_t C);
/* mask[i] = scale if lowbias32(i * 0x9E3779B1 + seed) >> 8 >= threshold else 0. */
QR_API int qr_dropout_mask_f32(float *mask, int64_t n, uint32_t threshold, float scale, uint32_t seed);

/* ------------------------------------------------------------------ optim (optim.c) */
/* torch.optim.SGD over flat buffers p, g, buf [n] (buf: momentum buffer). */
QR_API int qr_sgd_step_f32(float *p, const float *g, float *buf, int64_t n, double lr, double momentum,
                    double dampening, double weight_decay, int nesterov, int first);
/* torch.optim.Adam (decoupled = 0) / AdamW (decoupled = 1) over flat buffers [n]; step >= 1. */
QR_API int qr_adam_step_f32(float *p, const float *g, float *m, float *v, int64_t n, double lr,
                     double beta1, double beta2, double eps, double weight_decay, int64_t step,
                     int decoupled);

#ifdef __cplusplus
}
#endif
#endif /* QORUS_H */
