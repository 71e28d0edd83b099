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
#define QR_EUNSUPPORTED (-4) /* a SIMD tier this CPU or this build lacks */

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
/* Per-thread scratch buffer `slot` (0..4): 64-byte aligned, >= bytes, kept between calls,
 * zero-filled when (re)allocated. qr_gemm_f32 uses 0..3 (0, 1: packed panels; 2, 3: the
 * skinny path), so a kernel that calls the GEMM must not hold one of those across that call.
 * Slot 4 is RoPE's cos/sin table, kept with a header naming what it holds. */
QR_API void *qr_scratch(int slot, size_t bytes);

/* ------------------------------------------------------------------ cpu (cpu.c) */
/* QR_CPU_* bits of qr_cpu_features(). AVX, AVX2, FMA, F16C are set only where the OS saves the
 * YMM state, the AVX512* bits only where it saves the opmask and ZMM state (XCR0 bits 5-7). */
#define QR_CPU_SSE4_2 (1u << 0)
#define QR_CPU_AVX (1u << 1)
#define QR_CPU_AVX2 (1u << 2)
#define QR_CPU_FMA (1u << 3)
#define QR_CPU_F16C (1u << 4)
#define QR_CPU_AVX512F (1u << 5)
#define QR_CPU_AVX512BW (1u << 6)
#define QR_CPU_AVX512VL (1u << 7)
#define QR_CPU_AVX512DQ (1u << 8)
#define QR_CPU_AVX512VNNI (1u << 9)
#define QR_CPU_AVX512BF16 (1u << 10)
/* SIMD tiers, narrowest first. A tier runs where the CPU has its features and the build
 * compiled its objects: avx2 needs AVX2 + FMA; avx512 needs AVX-512 F/BW/VL/DQ + AVX2 + FMA
 * + F16C. Each kernel family runs the widest tier it has that is not wider than the one in
 * effect (a family without an AVX-512 kernel keeps running AVX2 on an AVX-512 host). */
#define QR_SIMD_AUTO (-1)
#define QR_SIMD_PORTABLE 0
#define QR_SIMD_AVX2 1
#define QR_SIMD_AVX512 2
/* QR_CPU_* bits detected at run time. QORUS_CPU_MASK (testing only: an integer, 0x.. hex)
 * clears the bits it names, read once with the first detection: a test can pose as a CPU
 * without AVX-512 and check that asking for it is refused. */
QR_API unsigned qr_cpu_features(void);
/* The tier in effect: QORUS_SIMD=auto|avx512|avx2|portable at first use (auto: the widest
 * usable), or what qr_set_simd_path chose; never wider than the CPU and the build allow. */
QR_API int qr_simd_path(void);
/* QR_SIMD_AUTO or a tier: returns the tier now in effect, QR_EUNSUPPORTED (nothing changed)
 * for a tier the CPU or the build lacks, QR_EARG for another value. */
QR_API int qr_set_simd_path(int path);
QR_API int qr_simd_compiled(void);     /* the widest tier compiled in (0: portable only) */
/* QR_CPU_* bits `tier` needs that this CPU lacks (0: the CPU has them all); ~0u for a
 * value that is no tier */
QR_API unsigned qr_simd_missing(int tier);
/* 0 if QORUS_SIMD is unset or names a usable tier; QR_EARG if it names none, QR_EUNSUPPORTED
 * if it names a tier the CPU or build lacks (the library then runs the widest usable tier
 * below it; the Python binding refuses to load) */
QR_API int qr_simd_env_status(void);
/* Kernel families, 0 .. n-1: qr_simd_family_name(f) ("vec", "elementwise", "gemm", "fused",
 * "quant", "rnn", "conv", "strided", "peak"; NULL past the last) and the tier family f runs now (QR_EARG
 * past the last). "vec" is act.c, norm.c, loss.c and optim.c; "elementwise" the primitives of
 * elementwise.c; "conv" is the im2col / pooling / batchnorm code (its GEMMs run the "gemm"
 * tier). */
QR_API const char *qr_simd_family_name(int family);
QR_API int qr_simd_family_path(int family);
QR_API const char *qr_version(void);
/* FMA peak probe (peak.c): every pool thread runs `iters` rounds of 12 independent multiply-add
 * chains as wide as the "peak" family's tier (AVX-512: 16 lanes, AVX2: 8, plain C: 8). Returns
 * the flops done (iters * 12 * lanes * 2 * threads; time the call for GFLOP/s), or QR_EARG for
 * iters < 0. */
QR_API double qr_fma_peak_f32(int64_t iters);

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
/* PyTorch's leaky_relu, elu, softplus (y = x where beta x > threshold), mish and hardswish;
 * each backward dx = dy * f'(x) from x (a NaN x passes dy in elu_bwd and hardswish_bwd, as
 * PyTorch's do) */
QR_API int qr_leaky_relu_f32(const float *x, float *y, int64_t n, float negative_slope);
QR_API int qr_leaky_relu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n,
                                 float negative_slope);
QR_API int qr_elu_f32(const float *x, float *y, int64_t n, float alpha);
QR_API int qr_elu_bwd_f32(const float *x, const float *dy, float *dx, int64_t n, float alpha);
QR_API int qr_softplus_f32(const float *x, float *y, int64_t n, float beta, float threshold);
QR_API int qr_softplus_bwd_f32(const float *x, const float *dy, float *dx, int64_t n,
                               float beta, float threshold);
QR_API int qr_mish_f32(const float *x, float *y, int64_t n);
QR_API int qr_mish_bwd_f32(const float *x, const float *dy, float *dx, int64_t n);
QR_API int qr_hardswish_f32(const float *x, float *y, int64_t n);
QR_API int qr_hardswish_bwd_f32(const float *x, const float *dy, float *dx, int64_t n);
/* GLU of rows x[R, 2m] = [a | b]: y[R, m] = a * sigmoid(b); backward from x and dy[R, m]:
 * dx[R, 2m] = [s dy | (1 - s) s a dy], s = sigmoid(b) (a split along an inner dimension is
 * this with m = half of it times the dimensions after it) */
QR_API int qr_glu_f32(const float *x, float *y, int64_t rows, int64_t m);
QR_API int qr_glu_bwd_f32(const float *x, const float *dy, float *dx, int64_t rows, int64_t m);
/* y[n,D] = weight[ids[i], :], ids[n] int32 in [0, V) (else QR_ETARGET), weight[V,D] */
QR_API int qr_embedding_f32(const int32_t *ids, const float *weight, float *y, int64_t n,
                            int64_t V, int64_t D);
/* dweight[ids[i], :] += dy[i, :] in order of i (repeated ids accumulate) */
QR_API int qr_embedding_bwd_f32(const int32_t *ids, const float *dy, float *dweight, int64_t n,
                                int64_t V, int64_t D);

/* ------------------------------------------------------------------ primitives (elementwise.c) */
/* Elementwise over n floats; out may be an input (the same buffer). maximum / minimum as
 * NumPy's (NaN wins, a tie gives b); where: out = cond != 0 ? a : b (a NaN cond is nonzero);
 * exp ~1 ulp, log ~1 ulp (log 0 = -inf, log of a negative = NaN), sqrt exact. */
QR_API int qr_sub_f32(const float *a, const float *b, float *out, int64_t n);
QR_API int qr_div_f32(const float *a, const float *b, float *out, int64_t n);
QR_API int qr_maximum_f32(const float *a, const float *b, float *out, int64_t n);
QR_API int qr_minimum_f32(const float *a, const float *b, float *out, int64_t n);
QR_API int qr_where_f32(const float *cond, const float *a, const float *b, float *out,
                        int64_t n);
QR_API int qr_exp_f32(const float *x, float *y, int64_t n);
QR_API int qr_log_f32(const float *x, float *y, int64_t n);
QR_API int qr_sqrt_f32(const float *x, float *y, int64_t n);
QR_API int qr_abs_f32(const float *x, float *y, int64_t n);
QR_API int qr_neg_f32(const float *x, float *y, int64_t n);
/* Backward, written (not accumulated); an output of two may be NULL (not wanted), and an
 * output may be dy. sub: da = dy, db = -dy; div: da = dy / b, db = -(dy / b * a) / b;
 * maximum / minimum: the winner takes dy, a tie gives dy / 2 to each; where: da = dy where
 * cond != 0, db = dy elsewhere; exp: dx = dy * y; log: dy / x; sqrt: dy / (2 y);
 * abs: dy * sign(x) (sign(0) = 0); neg: -dy. */
QR_API int qr_sub_bwd_f32(const float *dy, float *da, float *db, int64_t n);
QR_API int qr_div_bwd_f32(const float *a, const float *b, const float *dy, float *da,
                          float *db, int64_t n);
QR_API int qr_maximum_bwd_f32(const float *a, const float *b, const float *dy, float *da,
                              float *db, int64_t n);
QR_API int qr_minimum_bwd_f32(const float *a, const float *b, const float *dy, float *da,
                              float *db, int64_t n);
QR_API int qr_where_bwd_f32(const float *cond, const float *dy, float *da, float *db,
                            int64_t n);
QR_API int qr_exp_bwd_f32(const float *y, const float *dy, float *dx, int64_t n);
QR_API int qr_log_bwd_f32(const float *x, const float *dy, float *dx, int64_t n);
QR_API int qr_sqrt_bwd_f32(const float *y, const float *dy, float *dx, int64_t n);
QR_API int qr_abs_bwd_f32(const float *x, const float *dy, float *dx, int64_t n);
QR_API int qr_neg_bwd_f32(const float *dy, float *dx, int64_t n);

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
 * rows whose target is ignore_index count in neither the loss nor the mean (other targets must
 * be in [0,C)); dlogits[N,C] (NULL: not written; may alias logits) = (softmax - smoothed
 * one-hot) / kept rows, 0 on ignored rows. Every row ignored: 0, dlogits all 0 (PyTorch: NaN).
 * Returns the loss (>= 0, or NaN), or QR_ETARGET / QR_EARG / QR_ENOMEM. */
QR_API double qr_cross_entropy_f32(const float *logits, const int32_t *targets, float *dlogits,
                                   int64_t N, int64_t C, double eps, int64_t ignore_index);
/* mean of (pred - target)^2 over n; dpred[n] (may be NULL) = 2 (pred - target) / n */
QR_API double qr_mse_f32(const float *pred, const float *target, float *dpred, int64_t n);
/* mean of |y - target| over n; dy[n] (may be NULL) = sign(y - target) / n, sign(0) = 0 */
QR_API double qr_l1_f32(const float *y, const float *target, float *dy, int64_t n);
/* torch.nn.HuberLoss(delta > 0) mean over n; dy[n] (may be NULL) = clip(y - t, +-delta) / n */
QR_API double qr_huber_f32(const float *y, const float *target, float *dy, int64_t n,
                           double delta);
/* torch.nn.BCEWithLogitsLoss mean over n = rows * C of logits against float targets[n],
 * pos_weight[C] (NULL: none) broadcast over rows; dlogits[n] (may be NULL). The loss (which
 * may be negative for targets outside [0,1]) is written to *loss; returns 0 or QR_EARG /
 * QR_ENOMEM. */
QR_API int qr_bce_with_logits_f32(const float *logits, const float *targets, float *dlogits,
                                  const float *pos_weight, int64_t n, int64_t C, double *loss);
/* torch.nn.KLDivLoss(reduction='batchmean'): sum over n of target (log target - input), or
 * exp(target) (target - input) with log_target, 0 log 0 = 0, divided by batch (the input's
 * first dimension); dy[n] (may be NULL) = -target / batch (-exp(target) / batch). The loss
 * (any sign) is written to *loss; returns 0 or QR_EARG / QR_ENOMEM. */
QR_API int qr_kl_div_f32(const float *input, const float *target, float *dy, int64_t n,
                         int64_t batch, int log_target, double *loss);
/* rows of logits[N,C] whose first argmax equals targets[r] (NaN counts as the maximum),
 * rows whose target is ignore_index not counted */
QR_API int64_t qr_count_correct_f32(const float *logits, const int32_t *targets, int64_t N,
                                    int64_t C, int64_t ignore_index);
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

/* ------------------------------------------------------------------ quant (quant.c) */
/* Quantized weights in the ggml block formats, bit for bit with ggml and the gguf package:
 *   Q8_0 (34 bytes / 32 values): fp16 d, int8 q[32]; x = d * q
 *   Q4_0 (18 bytes): fp16 d, 16 bytes of nibbles (element j low nibble of byte j, element
 *                    j + 16 its high nibble); x = d * (q - 8)
 *   Q4_1 (20 bytes): fp16 d, fp16 m, nibbles as Q4_0; x = d * q + m
 *   Q5_0 (22 bytes): fp16 d, uint32 qh (bit j: element j's fifth bit), nibbles; x = d * (q - 16)
 *   Q5_1 (24 bytes): fp16 d, fp16 m, qh, nibbles; x = d * q + m
 *   IQ4_NL (18 bytes): fp16 d, nibbles; x = d * kvalues[q] (16 non-linear int8 levels)
 *   Q2_K .. Q6_K (84, 110, 144, 176, 210 bytes / 256 values): super-blocks with sub-block
 *                    scales (quant_kformats.c documents each layout)
 *   F16, BF16 (2 bytes a value): IEEE half (round to nearest even), bfloat16 (ggml's rounding)
 * A quantized matrix [rows, k] is rows of k values, each row its blocks in order (the layout
 * of a GGUF tensor); k must be a whole number of blocks (32 values, 256 for the K-quants).
 * qtype numbers are ggml's. Quantizers exist for the formats the gguf package writes (Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16). */
#define QR_QTYPE_F16 1
#define QR_QTYPE_Q4_0 2
#define QR_QTYPE_Q4_1 3
#define QR_QTYPE_Q5_0 6
#define QR_QTYPE_Q5_1 7
#define QR_QTYPE_Q8_0 8
#define QR_QTYPE_Q2_K 10
#define QR_QTYPE_Q3_K 11
#define QR_QTYPE_Q4_K 12
#define QR_QTYPE_Q5_K 13
#define QR_QTYPE_Q6_K 14
#define QR_QTYPE_IQ4_NL 20
#define QR_QTYPE_BF16 30
/* bytes of one row of k values in qtype, or QR_EARG (unknown type, k not whole blocks) */
QR_API int64_t qr_quant_row_bytes(int qtype, int64_t k);
/* out[rows, row_bytes] = quantize(x[rows, k]) as ggml's reference quantizers */
QR_API int qr_quantize_q8_0(const float *x, void *out, int64_t rows, int64_t k);
QR_API int qr_quantize_q4_0(const float *x, void *out, int64_t rows, int64_t k);
QR_API int qr_quantize_q4_1(const float *x, void *out, int64_t rows, int64_t k);
QR_API int qr_quantize_f16(const float *x, void *out, int64_t rows, int64_t k);
QR_API int qr_quantize_q5_0(const float *x, void *out, int64_t rows, int64_t k);
QR_API int qr_quantize_q5_1(const float *x, void *out, int64_t rows, int64_t k);
QR_API int qr_quantize_bf16(const float *x, void *out, int64_t rows, int64_t k);
/* y[rows, k] = dequantize(w) */
QR_API int qr_dequantize_q8_0(const void *w, float *y, int64_t rows, int64_t k);
QR_API int qr_dequantize_q4_0(const void *w, float *y, int64_t rows, int64_t k);
QR_API int qr_dequantize_q4_1(const void *w, float *y, int64_t rows, int64_t k);
QR_API int qr_dequantize_f16(const void *w, float *y, int64_t rows, int64_t k);
/* the other formats' dequantize / get_rows / matmul / matmul_qf, same contracts as above */
#define QR_QUANT_FORMAT_DECL(fmt)                                                           \
    QR_API int qr_dequantize_##fmt(const void *w, float *y, int64_t rows, int64_t k);       \
    QR_API int qr_get_rows_##fmt(const void *w, const int32_t *ids, float *y, int64_t n,    \
                                 int64_t vocab, int64_t K);                                 \
    QR_API int qr_matmul_##fmt##_f32(const float *x, const void *w, float *y, int64_t M,    \
                                     int64_t N, int64_t K);                                 \
    QR_API int qr_matmul_qf_##fmt##_f32(const float *x, const void *w, float *y, int64_t M, \
                                        int64_t N, int64_t K);
QR_QUANT_FORMAT_DECL(q5_0)
QR_QUANT_FORMAT_DECL(q5_1)
QR_QUANT_FORMAT_DECL(q2_k)
QR_QUANT_FORMAT_DECL(q3_k)
QR_QUANT_FORMAT_DECL(q4_k)
QR_QUANT_FORMAT_DECL(q5_k)
QR_QUANT_FORMAT_DECL(q6_k)
QR_QUANT_FORMAT_DECL(iq4_nl)
QR_QUANT_FORMAT_DECL(bf16)
/* y[M,N] = x[M,K] @ W^T, W [N,K] in the format (row-major, N rows of row_bytes(K)).
 * The block formats quantize each row of x to 8-bit blocks of 32 (d = amax / 127, q rounded
 * half away from zero; Q4_1 also uses s = d * sum q) and sum exact integer block products
 * scaled by d_w * d_x (+ m_w * s_x) in float32, as ggml does; F16 multiplies in float32.
 * Multithreaded over N; the result depends on the SIMD path, not on the thread count. */
QR_API int qr_matmul_q8_0_f32(const float *x, const void *w, float *y, int64_t M, int64_t N,
                              int64_t K);
QR_API int qr_matmul_q4_0_f32(const float *x, const void *w, float *y, int64_t M, int64_t N,
                              int64_t K);
QR_API int qr_matmul_q4_1_f32(const float *x, const void *w, float *y, int64_t M, int64_t N,
                              int64_t K);
QR_API int qr_matmul_f16_f32(const float *x, const void *w, float *y, int64_t M, int64_t N,
                             int64_t K);
/* Decode products sharing one activation row x[K] (an LLM's q/k/v or gate/up projections):
 * y_i[n_i] = W_i[n_i,K] x for the weights listed (qtype t_i, a NULL w ends the list, up to
 * three), as qr_matmul_<fmt>_f32 with M = 1 gives each (same arithmetic, same results), with x
 * quantized once and one parallel region over the rows of all of them. */
QR_API int qr_matmul_q3_f32(const float *x, int64_t K, int t0, const void *w0, float *y0,
                            int64_t n0, int t1, const void *w1, float *y1, int64_t n1, int t2,
                            const void *w2, float *y2, int64_t n2);
/* M decode rows at once (a batched decode step): y[m] = W x[m], each row exactly as
 * qr_matmul_<fmt>_f32 computes it with M = 1, the weight (qtype: QR_QTYPE_*) read from
 * memory once for all the rows (tiles kept in L2 while every row passes over them). */
QR_API int qr_matmul_rows_f32(const float *x, int qtype, const void *w, float *y, int64_t M,
                              int64_t N, int64_t K);
/* y[M,N] = x[M,K] @ dequantize(W[N,K])^T with float32 activations (prompts: llama.cpp's BLAS
 * path): panels of 64 weight rows dequantized into a per-task buffer, multiplied by
 * qr_gemm_f32 (serial inside the task), tasks over the panels. */
QR_API int qr_matmul_qf_q8_0_f32(const float *x, const void *w, float *y, int64_t M, int64_t N,
                                 int64_t K);
QR_API int qr_matmul_qf_q4_0_f32(const float *x, const void *w, float *y, int64_t M, int64_t N,
                                 int64_t K);
QR_API int qr_matmul_qf_q4_1_f32(const float *x, const void *w, float *y, int64_t M, int64_t N,
                                 int64_t K);
QR_API int qr_matmul_qf_f16_f32(const float *x, const void *w, float *y, int64_t M, int64_t N,
                                int64_t K);
/* y[M,N] = x[M,K] @ W^T with 8-bit activations for several rows (a prompt; quant_prompt.c):
 * each row of x quantized once as qr_matmul_<fmt>_f32 does, every output exactly what the
 * portable one-row kernel gives for its row (exact integer block sums, summed block after
 * block in float32), on every SIMD tier and thread count. Q8_0, Q4_0, Q4_1 and Q6_K run an
 * integer GEMM (AVX-512 VNNI, AVX2); the other block formats the one-row kernel, row by row.
 * The block formats only (F16, BF16: not declared). */
#define QR_PROMPT_Q_DECL(fmt)                                                               \
    QR_API int qr_matmul_qp_##fmt##_f32(const float *x, const void *w, float *y, int64_t M, \
                                        int64_t N, int64_t K);
QR_PROMPT_Q_DECL(q8_0)
QR_PROMPT_Q_DECL(q4_0)
QR_PROMPT_Q_DECL(q4_1)
QR_PROMPT_Q_DECL(q5_0)
QR_PROMPT_Q_DECL(q5_1)
QR_PROMPT_Q_DECL(iq4_nl)
QR_PROMPT_Q_DECL(q2_k)
QR_PROMPT_Q_DECL(q3_k)
QR_PROMPT_Q_DECL(q4_k)
QR_PROMPT_Q_DECL(q5_k)
QR_PROMPT_Q_DECL(q6_k)
/* qr_matmul_qp_<fmt>_f32 for up to three weights sharing x [M, K] (a prompt's q/k/v or
 * gate/up projections): y_i [M, n_i] = x @ W_i^T, W_i in block format t_i (a NULL w ends the
 * list), x quantized once and one parallel region over the weights' tiles; each y_i the bits
 * qr_matmul_qp_<fmt>_f32 gives it alone. */
QR_API int qr_linears_qp_f32(const float *x, int64_t M, int64_t K, int t0, const void *w0,
                             float *y0, int64_t n0, int t1, const void *w1, float *y1,
                             int64_t n1, int t2, const void *w2, float *y2, int64_t n2);
/* y[n,K] = dequantize(W[ids[i], :]) (an embedding lookup in a quantized table W[vocab,K]);
 * QR_ETARGET for an id outside [0, vocab). */
QR_API int qr_get_rows_q8_0(const void *w, const int32_t *ids, float *y, int64_t n, int64_t vocab,
                            int64_t K);
QR_API int qr_get_rows_q4_0(const void *w, const int32_t *ids, float *y, int64_t n, int64_t vocab,
                            int64_t K);
QR_API int qr_get_rows_q4_1(const void *w, const int32_t *ids, float *y, int64_t n, int64_t vocab,
                            int64_t K);
QR_API int qr_get_rows_f16(const void *w, const int32_t *ids, float *y, int64_t n, int64_t vocab,
                           int64_t K);
/* ------------------------------------------------------------------ end quant */

/* ------------------------------------------------------------------ fused (fused.c) */
/* RoPE on x[B,T,H,D] (D even), position of row t = pos_offset + t, freq_i = theta^(-2i/D):
 * half_split 0 rotates adjacent pairs (2i, 2i+1) (GGUF llama), 1 pairs (i, i + D/2) (HF).
 * y may alias x. Backward: the inverse rotation of dy (dx may alias dy). */
QR_API int qr_rope_f32(const float *x, float *y, int64_t B, int64_t T, int64_t H, int64_t D,
                       int64_t pos_offset, float theta, int half_split);
QR_API int qr_rope_bwd_f32(const float *dy, float *dx, int64_t B, int64_t T, int64_t H,
                           int64_t D, int64_t pos_offset, float theta, int half_split);
/* y[n] = silu(gate) * up; backward writes dgate[n] and dup[n] */
QR_API int qr_swiglu_f32(const float *gate, const float *up, float *y, int64_t n);
QR_API int qr_swiglu_bwd_f32(const float *gate, const float *up, const float *dy, float *dgate,
                             float *dup, int64_t n);
/* y[R,N] = x + b[N]; backward: dx = dy (dx NULL or == dy: not written), db[N] += sum_r dy */
QR_API int qr_add_bcast_f32(const float *x, const float *b, float *y, int64_t rows, int64_t n);
QR_API int qr_add_bcast_bwd_f32(const float *dy, float *dx, float *db, int64_t rows, int64_t n);
/* y[R,N] = x * w[N]; backward: dx = dy * w (may be NULL, may alias dy), dw[N] += sum_r dy x */
QR_API int qr_mul_bcast_f32(const float *x, const float *w, float *y, int64_t rows, int64_t n);
QR_API int qr_mul_bcast_bwd_f32(const float *x, const float *w, const float *dy, float *dx,
                                float *dw, int64_t rows, int64_t n);
/* y[G,Tq,Tk] = softmax(scale * x) over the last dim; causal masks key j > i + (Tk - Tq)
 * (queries aligned to the last keys; Tk >= Tq), masked entries are 0.
 * Backward: dx = scale * y * (dy - sum(dy * y)) per row, 0 where masked. */
QR_API int qr_softmax_masked_f32(const float *x, float *y, int64_t G, int64_t Tq, int64_t Tk,
                                 float scale, int causal);
QR_API int qr_softmax_masked_bwd_f32(const float *y, const float *dy, float *dx, int64_t G,
                                     int64_t Tq, int64_t Tk, float scale, int causal);
/* Attention, tiled with an online softmax (no Tq x Tk matrix), GQA: query head h reads kv head
 * h / (H / Hkv). q, out [B,Tq,H,D]; k, v [B,Tk,Hkv,D]; lse [B,H,Tq] (log-sum-exp of the scaled
 * scores, saved for the backward); causal as in qr_softmax_masked_f32. Threads over (b, h).
 * Backward writes dq (like q), dk, dv (like k; summed over the query heads of each kv head;
 * threads over (b, kv head)). No output may alias an input. */
QR_API int qr_attention_f32(const float *q, const float *k, const float *v, float *out,
                            float *lse, int64_t B, int64_t Tq, int64_t Tk, int64_t H,
                            int64_t Hkv, int64_t D, float scale, int causal);
QR_API int qr_attention_bwd_f32(const float *q, const float *k, const float *v,
                                const float *out, const float *lse, const float *dout,
                                float *dq, float *dk, float *dv, int64_t B, int64_t Tq,
                                int64_t Tk, int64_t H, int64_t Hkv, int64_t D, float scale,
                                int causal);
/* Attention with masks, the same tiles (no Tq x Tk matrix): kpm [B,Tk] int32 (nonzero: the key
 * is padding, left out; PyTorch's key_padding_mask) and an additive bias, the [Tq,Tk] block of
 * (b, h) at bias + b * bias_sb + h * bias_sh (strides 0 broadcast: a [Tq,Tk] mask is 0, 0;
 * [B,H,Tq,Tk] is H*Tq*Tk, Tq*Tk), added to the scaled scores; either may be NULL. A query row
 * whose every key is masked gets out 0 and lse -inf (PyTorch's SDPA) and no gradient.
 * Dropout of the probabilities (training): drop_threshold > 0 keeps probability (b,h,i,j) when
 * the top 24 bits of lowbias32(counter * 0x9E3779B1 + drop_seed) >= drop_threshold, counter
 * ((b H + h) Tq + i) Tk + j (qr_dropout_mask_f32's stream), scaled by drop_scale; the
 * backward takes the same three values. */
QR_API int qr_attention_masked_f32(const float *q, const float *k, const float *v,
                                   const int32_t *kpm, const float *bias, int64_t bias_sb,
                                   int64_t bias_sh, float *out, float *lse, int64_t B,
                                   int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t D,
                                   float scale, int causal, float drop_scale,
                                   uint32_t drop_threshold, uint32_t drop_seed);
QR_API int qr_attention_masked_bwd_f32(const float *q, const float *k, const float *v,
                                       const int32_t *kpm, const float *bias, int64_t bias_sb,
                                       int64_t bias_sh, const float *out, const float *lse,
                                       const float *dout, float *dq, float *dk, float *dv,
                                       int64_t B, int64_t Tq, int64_t Tk, int64_t H,
                                       int64_t Hkv, int64_t D, float scale, int causal,
                                       float drop_scale, uint32_t drop_threshold,
                                       uint32_t drop_seed);
/* y[b,:] = mean of x[b,t,:] [B,T,d] over the t with pad[b,t] == 0 (pad [B,T] int32, NULL: every
 * t), 0 for a row of padding only (sentence-transformers' mean pooling); backward: dx[b,t,:] =
 * dy[b,:] / n_b where kept, else 0 (written, not added). */
QR_API int qr_masked_mean_f32(const float *x, const int32_t *pad, float *y, int64_t B, int64_t T,
                              int64_t d);
QR_API int qr_masked_mean_bwd_f32(const float *dy, const int32_t *pad, float *dx, int64_t B,
                                  int64_t T, int64_t d);
/* One decode step: q, out [B,H,D]; KV cache per layer k_cache, v_cache [B,max_ctx,Hkv,D]
 * (position-major: row j holds every kv head of position j); the new token attends to the
 * cached positions [0, n_ctx), its own k/v already written at n_ctx - 1. 1 <= n_ctx <= max_ctx */
QR_API int qr_attention_decode_f32(const float *q, const float *k_cache, const float *v_cache,
                                   float *out, int64_t B, int64_t H, int64_t Hkv, int64_t D,
                                   int64_t max_ctx, int64_t n_ctx, float scale);
/* A decode step of B sequences at once (decode_rows.c): row b has its own position pos[b]
 * and KV-cache slot slot[b] (int32 [B], B <= 64), and gets exactly what the one-row kernels
 * give it alone. RoPE of x[B,T,H,D] at positions pos[b] + t; the rows' keys or values
 * src[B,T,W] stored at cache[slot[b], pos[b] + t] of cache[S,L,W]; decode attention of
 * q[B,H,D] over cache slot slot[b], positions [0, pos[b]] (the new token's own k/v already
 * stored at pos[b]). A slot or position out of range: QR_ETARGET, before any write. */
QR_API int qr_rope_rows_f32(const float *x, float *y, const int32_t *pos, int64_t B, int64_t T,
                            int64_t H, int64_t D, float theta, int half_split);
QR_API int qr_kv_store_rows_f32(const float *src, float *cache, const int32_t *slot,
                                const int32_t *pos, int64_t B, int64_t T, int64_t W, int64_t S,
                                int64_t L);
QR_API int qr_attention_decode_rows_f32(const float *q, const float *k_cache,
                                        const float *v_cache, float *out, const int32_t *slot,
                                        const int32_t *pos, int64_t B, int64_t H, int64_t Hkv,
                                        int64_t D, int64_t S, int64_t L, float scale);
/* The products of a batched decode step: y_i[M, n_i] = x[M, K] W_i^T for the weights listed
 * (one format, qtype; a NULL w ends the list, up to three: q/k/v, gate/up), each row exactly
 * as qr_matmul_<fmt>_f32 computes it with M = 1, x quantized once, each weight read once for
 * all M rows, one parallel region over the rows of all of them. */
QR_API int qr_linears_rows_f32(const float *x, int64_t M, int64_t K, int qtype, const void *w0,
                               float *y0, int64_t n0, const void *w1, float *y1, int64_t n1,
                               const void *w2, float *y2, int64_t n2);
/* ------------------------------------------------------------------ end fused */

/* ------------------------------------------------------------------ replay (replay.c) */
/* A recorded kernel call: op from qr_replay_op(name of the qr_ function); its integer and
 * pointer arguments in order, each base[j] + per_pos[j] * pos; its float arguments in f. */
#define QR_CALL_ARGS 14
typedef struct {
    int32_t op, nargs;
    int64_t base[QR_CALL_ARGS], per_pos[QR_CALL_ARGS];
    double f[2];
} qr_call;
/* the op number of a replayable kernel (e.g. "qr_rmsnorm_f32"), or QR_EARG */
QR_API int qr_replay_op(const char *name);
/* the number of ops and the name of op i (NULL outside [0, count)): the Python tests check
 * them against the kernels the table (qorus_core/kernels/decl) marks replayable */
QR_API int qr_replay_op_count(void);
QR_API const char *qr_replay_op_name(int op);
/* run calls[0..n) in order at sequence position pos; stops at (and returns) the first error */
QR_API int qr_replay_run(const qr_call *calls, int64_t n, int64_t pos);

/* ------------------------------------------------------------------ conv (conv.c) */
/* NCHW, PyTorch semantics. Geometry: x [B,C,H,W]; kernel R x S; stride sh, sw >= 1; padding
 * ph, pw >= 0 (zeros); dilation dh, dw >= 1; Ho = (H + 2 ph - dh (R - 1) - 1) / sh + 1 (> 0),
 * Wo likewise. Images run in parallel; each image's GEMMs (qr_gemm_f32 over an im2col
 * buffer in per-thread scratch) run on its thread, so no result depends on the thread count.
 * Conv2d: w [K, C/G, R, S], bias [K] (NULL: none), y [B,K,Ho,Wo]; C, K multiples of G. */
QR_API int qr_conv2d_f32(const float *x, const float *w, const float *bias, float *y,
                         int64_t B, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R,
                         int64_t S, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                         int64_t dw, int64_t G);
/* dx [B,C,H,W] written (NULL: not wanted); dw [K,C/G,R,S] and db [K] (NULL: none) accumulated
 * (+=): images in at most 16 chunks fixed by the shape, partial sums added in chunk order. */
QR_API int qr_conv2d_bwd_f32(const float *x, const float *w, const float *dy, float *dx,
                             float *dwt, float *db, int64_t B, int64_t C, int64_t H, int64_t W,
                             int64_t K, int64_t R, int64_t S, int64_t sh, int64_t sw, int64_t ph,
                             int64_t pw, int64_t dh, int64_t dw, int64_t G);
/* Transposed convolution (PyTorch's ConvTranspose2d): the input gradient of the convolution
 * from y [B,Cout,Ho,Wo] to x [B,Cin,H,W], whose geometry must map Ho x Wo onto H x W (Ho =
 * (H - 1) sh - 2 ph + dh (R - 1) + 1 + output padding, that padding < sh); w [Cin,Cout/G,R,S],
 * bias [Cout] (NULL: none). y is written. Backward: dx [B,Cin,H,W] (NULL: not wanted) =
 * conv2d(dy, w), written; dw and db [Cout] (NULL: none) accumulated (+=), in a fixed order. */
QR_API int qr_conv_transpose2d_f32(const float *x, const float *w, const float *bias, float *y,
                                   int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                                   int64_t Ho, int64_t Wo, int64_t R, int64_t S, int64_t sh,
                                   int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                                   int64_t G);
QR_API int qr_conv_transpose2d_bwd_f32(const float *x, const float *w, const float *dy, float *dx,
                                       float *dwt, float *db, int64_t B, int64_t Cin, int64_t H,
                                       int64_t W, int64_t Cout, int64_t Ho, int64_t Wo, int64_t R,
                                       int64_t S, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                       int64_t dh, int64_t dw, int64_t G);
/* Max pooling over R x S windows (dilation dh, dw) of each of the B*C planes (padding never
 * wins; ph <= R/2, pw <= S/2; every window must hold an input position): y [B,C,Ho,Wo],
 * argmax [B,C,Ho,Wo] int32 = h * W + w within the plane (the first maximum; a NaN wins and
 * propagates, the last NaN in the window as PyTorch's). Ho, Wo by PyTorch's rule, the
 * ceiling with ceil_mode (the last window starting inside the input or the left padding).
 * Backward: dx [B,C,H,W] = 0, then dx[argmax] += dy (windows in order). */
QR_API int qr_maxpool2d_f32(const float *x, float *y, int32_t *argmax, int64_t B, int64_t C,
                            int64_t H, int64_t W, int64_t R, int64_t S, int64_t sh, int64_t sw,
                            int64_t ph, int64_t pw, int64_t dh, int64_t dw, int ceil_mode);
QR_API int qr_maxpool2d_bwd_f32(const float *dy, const int32_t *argmax, float *dx, int64_t B,
                                int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo);
/* Average pooling (ceil_mode as max pooling): y = window sum / divisor, PyTorch's: the window
 * clipped to the padded input (count_include_pad 1) or its input positions (0). Backward:
 * dx [B,C,H,W] = sum over the windows holding each input of dy / their divisor. */
QR_API int qr_avgpool2d_f32(const float *x, float *y, int64_t B, int64_t C, int64_t H, int64_t W,
                            int64_t R, int64_t S, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                            int ceil_mode, int count_include_pad);
QR_API int qr_avgpool2d_bwd_f32(const float *dy, float *dx, int64_t B, int64_t C, int64_t H,
                                int64_t W, int64_t R, int64_t S, int64_t sh, int64_t sw,
                                int64_t ph, int64_t pw, int ceil_mode, int count_include_pad);
/* Upsampling (upsample.c) of each plane x [B,C,H,W] to y [B,C,Ho,Wo], PyTorch's
 * F.interpolate: mode 0 nearest, 1 bilinear (align_corners 0/1: bilinear only); scale_h,
 * scale_w the scale factors given (0: none, the ratio is then H / Ho). Backward: dx
 * [B,C,H,W] written, each output's gradient added into its source positions in order. */
QR_API int qr_upsample2d_f32(const float *x, float *y, int64_t B, int64_t C, int64_t H,
                             int64_t W, int64_t Ho, int64_t Wo, int mode, int align_corners,
                             double scale_h, double scale_w);
QR_API int qr_upsample2d_bwd_f32(const float *dy, float *dx, int64_t B, int64_t C, int64_t H,
                                 int64_t W, int64_t Ho, int64_t Wo, int mode, int align_corners,
                                 double scale_h, double scale_w);
/* BatchNorm over x [B,C,HW] per channel c: train: mean[c], biased var over (B, HW) saved as
 * mean[C], rstd[C] = 1/sqrt(var + eps); running_mean/var [C] (NULL: not kept) updated
 * r = (1 - momentum) r + momentum * stat, the variance unbiased (n / (n - 1), n = B HW > 1).
 * Eval (train 0): normalise with the running statistics (mean/rstd written from them).
 * y = (x - mean) * rstd * gamma[c] + beta[c]. Channels run in parallel, each summed in order. */
QR_API int qr_batchnorm2d_f32(const float *x, const float *gamma, const float *beta, float *y,
                              float *mean, float *rstd, float *running_mean, float *running_var,
                              int64_t B, int64_t C, int64_t HW, float eps, float momentum,
                              int train);
/* Batch-statistics backward: dx (NULL: not wanted) = gamma rstd (dy - mean(dy)
 * - xhat mean(dy xhat)) per channel; dgamma[C] += sum dy xhat, dbeta[C] += sum dy. */
QR_API int qr_batchnorm2d_bwd_f32(const float *x, const float *gamma, const float *mean,
                                  const float *rstd, const float *dy, float *dx, float *dgamma,
                                  float *dbeta, int64_t B, int64_t C, int64_t HW);
/* Adaptive pooling (pool_adaptive.c) of x [B,C,H,W] to y [B,C,Ho,Wo] (PyTorch's
 * AdaptiveAvgPool2d / AdaptiveMaxPool2d): output row o pools rows [floor(o H / Ho),
 * ceil((o + 1) H / Ho)), likewise the columns. Average: the window's mean; its backward dx
 * [B,C,H,W] written. Max: argmax [B,C,Ho,Wo] int32 as qr_maxpool2d_f32's (its backward). */
QR_API int qr_adaptive_avgpool2d_f32(const float *x, float *y, int64_t B, int64_t C, int64_t H,
                                     int64_t W, int64_t Ho, int64_t Wo);
QR_API int qr_adaptive_avgpool2d_bwd_f32(const float *dy, float *dx, int64_t B, int64_t C,
                                         int64_t H, int64_t W, int64_t Ho, int64_t Wo);
QR_API int qr_adaptive_maxpool2d_f32(const float *x, float *y, int32_t *argmax, int64_t B,
                                     int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo);
/* GroupNorm (groupnorm.c) over x [B,C,HW], C = G groups of C/G channels: per (b, g) block
 * mean[B,G], rstd[B,G] = 1/sqrt(biased var + eps) saved; y = (x - mean) rstd gamma[c] +
 * beta[c] (NULL: 1 and 0). Blocks run in parallel, each summed in order. Backward: dx (NULL:
 * not wanted) = rstd (g dy - mean(g dy) - xhat mean(g dy xhat)) per block, g = gamma[c];
 * dgamma[C] += sum dy xhat, dbeta[C] += sum dy (NULL: none), summed over b in order. */
QR_API int qr_groupnorm_f32(const float *x, const float *gamma, const float *beta, float *y,
                            float *mean, float *rstd, int64_t B, int64_t C, int64_t HW,
                            int64_t G, float eps);
QR_API int qr_groupnorm_bwd_f32(const float *x, const float *gamma, const float *mean,
                                const float *rstd, const float *dy, float *dx, float *dgamma,
                                float *dbeta, int64_t B, int64_t C, int64_t HW, int64_t G);
/* ------------------------------------------------------------------ end conv */

/* ------------------------------------------------------------------ rnn (rnn.c) */
/* Recurrent cells, PyTorch's gate layouts. Per step, with xg = x_t W_ih^T + b_ih and
 * hg = h_{t-1} W_hh^T precomputed by GEMMs: xg, hg, gates, dgates, dxg, dhg [B, G*H]; b_hh
 * [G*H] or NULL (no bias); every state and state gradient [B, H]; dy NULL = zero.
 * rnn (G=1): h = tanh(xg + hg + b_hh); backward dg = (dh + dy) * (1 - h^2) (dg may alias dh).
 * lstm (G=4, i f g o): gates = activations (may alias xg), c = f c_prev + i g, h = o tanh(c);
 *   backward: dc in = dL/dc_t (recurrent part), out = dL/dc_{t-1}; dgates = pre-act grads.
 * gru (G=3, r z n): n = tanh(xg_n + r * hn), hn = hg_n + b_hn (saved), h = (1-z) n + z h_prev;
 *   backward: dxg, dhg (n part = r * dxg's) and dh in place: z * (dh + dy) (the direct part
 *   of dL/dh_{t-1}; the caller adds dhg W_hh).
 * seq_transpose: y[B,A,C] = x[A,B,C] transposed over the first two dims (no overlap). */
QR_API int qr_seq_transpose_f32(const float *x, float *y, int64_t A, int64_t B, int64_t C);
QR_API int qr_rnn_cell_f32(const float *xg, const float *hg, const float *b_hh, float *h,
                           int64_t B, int64_t H);
QR_API int qr_rnn_cell_bwd_f32(const float *h, const float *dh, const float *dy, float *dg,
                               int64_t B, int64_t H);
QR_API int qr_lstm_cell_f32(const float *xg, const float *hg, const float *b_hh,
                            const float *c_prev, float *gates, float *c, float *h, int64_t B,
                            int64_t H);
QR_API int qr_lstm_cell_bwd_f32(const float *gates, const float *c_prev, const float *c,
                                const float *dh, const float *dy, float *dc, float *dgates,
                                int64_t B, int64_t H);
QR_API int qr_gru_cell_f32(const float *xg, const float *hg, const float *b_hh,
                           const float *h_prev, float *gates, float *hn, float *h, int64_t B,
                           int64_t H);
QR_API int qr_gru_cell_bwd_f32(const float *gates, const float *hn, const float *h_prev,
                               const float *dy, float *dh, float *dxg, float *dhg, int64_t B,
                               int64_t H);
/* ------------------------------------------------------------------ end rnn */

/* ------------------------------------------------------------------ strided (strided.c) */
/* The data movement behind graph ops. Geometry of a broadcasting kernel: the Python check
 * merges the call's dims into d0..d5 (outermost first, padded in front with 1s); the output
 * (sum_to: x; a backward: dy) is contiguous over them, and each other operand comes with its
 * element strides over them, sa0..sa5 etc. (0: broadcast along that dim; contiguous
 * otherwise). The geometry comes as one int64 array `geom` (the check caches it per
 * geometry): d0..d5, then each operand's six strides in the order each kernel lists (geom
 * NULL: QR_EARG). An output may be an input only as the same buffer of the output's full
 * size. Elementwise results do not depend on the thread count; reductions (sum_to, a
 * gradient summed to a broadcast input) run on the calling thread, in double, in element
 * order.
 *
 * out[d] = a[sa] OP b[sb]: op 0 add, 1 sub, 2 mul, 3 div, 4 maximum, 5 minimum (NumPy's:
 * NaN wins, a tie gives b); geom: d0..d5, sa0..sa5, sb0..sb5 */
QR_API int qr_bcast_binary_f32(const float *a, const float *b, float *out, int op,
                               const int64_t *geom);
/* da (strides sa: a's shape), db (sb) overwritten with the gradients of out = a OP b from
 * dy[d] summed to their shapes; either may be NULL (not wanted); a and b read by mul, div,
 * maximum, minimum only. add: dy, dy; sub: dy, -dy; mul: dy b, dy a; div: t = dy / b, t,
 * -((t a) / b); maximum / minimum: the winner takes dy, a tie gives dy / 2 to each. */
QR_API int qr_bcast_binary_bwd_f32(const float *a, const float *b, const float *dy, float *da,
                                   float *db, int op, const int64_t *geom);
/* out = beta * out + alpha * x[d] summed over the dims out is broadcast on (geom: d0..d5,
 * out's strides so0..so5); beta == 0 never reads out */
QR_API int qr_sum_to_f32(const float *x, float *out, const int64_t *geom, float alpha,
                         float beta);
/* For every index i of d: dst[i . ds] = src[i . ss] (accumulate: += in float32), 4-byte
 * elements (float32 or int32 copied as bits); geom: d0..d5, ss0..ss5, ds0..ds5; strides >= 0
 * in elements, dst's reaching each element once; src and dst (already offset) must not
 * overlap. */
QR_API int qr_strided_copy_f32(const void *src, void *dst, const int64_t *geom, int accumulate);
/* x[outer, n, inner] -> out, idx[outer, inner]: the max over n and its first index (int32);
 * the first NaN wins (torch.max(dim)). n >= 1. Backward: dx[outer, n, inner] = 0 except
 * dx[o, idx[o, i], i] = dy[o, i]; an idx outside [0, n): QR_ETARGET, nothing written. */
QR_API int qr_max_axis_f32(const float *x, float *out, int32_t *idx, int64_t outer, int64_t n,
                           int64_t inner);
QR_API int qr_max_axis_bwd_f32(const float *dy, const int32_t *idx, float *dx, int64_t outer,
                               int64_t n, int64_t inner);
/* out[o, j, i] = x[o, idx[o, j, i], i]: x [outer, n, inner], idx int32 and out
 * [outer, m, inner] (torch.gather). Backward: dx[outer, n, inner] = 0, then
 * dx[o, idx[o, j, i], i] += dy[o, j, i] in order of j. An idx outside [0, n): QR_ETARGET,
 * nothing written. */
QR_API int qr_gather_axis_f32(const float *x, const int32_t *idx, float *out, int64_t outer,
                              int64_t n, int64_t m, int64_t inner);
QR_API int qr_gather_axis_bwd_f32(const float *dy, const int32_t *idx, float *dx,
                                  int64_t outer, int64_t n, int64_t m, int64_t inner);
/* out[d] = cond[sc] != 0 ? a[sa] : b[sb] (cond int32 when cond_i32, else float32: a NaN is
 * nonzero); geom: d0..d5, sc0..sc5, sa0..sa5, sb0..sb5. Backward: da (sa) = dy * mask, db
 * (sb) = dy * (1 - mask), each summed to its shape; either may be NULL. */
QR_API int qr_bcast_where_f32(const void *cond, const float *a, const float *b, float *out,
                              int cond_i32, const int64_t *geom);
QR_API int qr_bcast_where_bwd_f32(const void *cond, const float *dy, float *da, float *db,
                                  int cond_i32, const int64_t *geom);
/* C[i] = alpha * op(A[i]) @ op(B[i]) + beta * C[i] for i < batch, each as qr_gemm_f32:
 * A [batch, M, K] (or [batch, K, M] if trans_a), B [batch, K, N] (or [batch, N, K] if
 * trans_b), C [batch, M, N]; C must not overlap A or B. */
QR_API int qr_bmm_f32(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, const float *B, float beta, float *C);
/* ------------------------------------------------------------------ end strided */

#ifdef __cplusplus
}
#endif
#endif /* QORUS_H */
