/* vec_impl.h - private: bodies of the kernels declared in qr_vec.h. Included once by act.c
 * (QR_VEC_SFX portable), once by act_avx2.c (avx2) and once by act_avx512.c (avx512). No
 * include guard. The 8- and 16-lane loops compute what the scalar loops do, lane by lane. */
#include <math.h>
#include <string.h>

#include "qr_vec.h"

#define QR_VEC_NAME(name) QR_SFX_NAME(name, QR_VEC_SFX)

/* o[i] = scalar for i in [lo, hi); AVX2 builds run vec (x8 = a[i..i+8)) on 8 lanes first: GCC
 * does not vectorize the exp/erf formulas, the 8-lane twins give the same bits. AVX-512 builds
 * run vec16 (x16 = a[i..i+16), QR_LD16(b) = b[i..i+16)), the tail on masked lanes. */
#if defined(__AVX512F__)
#define QR_LD16(p) _mm512_maskz_loadu_ps(m16, (p) + i)
#define QR_UNROLL16 4
#define QR_GELU_BLOCK16(k, vec16)                                               \
    __m512 r##k;                                                           \
    {                                                                      \
        const int64_t i = i4 + 16 * (k);                                   \
        const __m512 x16 = QR_LD16(a);                                     \
        r##k = vec16;                                                      \
    }
#define QR_GELU_LOOP16(vec16)                                              \
    do {                                                                   \
        int64_t i = lo;                                                    \
        for (int64_t i4 = lo; i4 + QR_UNROLL16 * 16 <= hi; i4 += QR_UNROLL16 * 16) { \
            const __mmask16 m16 = (__mmask16)0xFFFF;                       \
            QR_GELU_BLOCK16(0, vec16)                                         \
            QR_GELU_BLOCK16(1, vec16)                                         \
            QR_GELU_BLOCK16(2, vec16)                                         \
            QR_GELU_BLOCK16(3, vec16)                                         \
            _mm512_storeu_ps(o + i4, r0);                                  \
            _mm512_storeu_ps(o + i4 + 16, r1);                             \
            _mm512_storeu_ps(o + i4 + 32, r2);                             \
            _mm512_storeu_ps(o + i4 + 48, r3);                             \
            i = i4 + QR_UNROLL16 * 16;                                     \
        }                                                                  \
        for (; i + 16 <= hi; i += 16) {                                    \
            const __mmask16 m16 = (__mmask16)0xFFFF;                       \
            const __m512 x16 = QR_LD16(a);                                 \
            _mm512_storeu_ps(o + i, vec16);                                \
        }                                                                  \
        if (i < hi) {                                                      \
            const __mmask16 m16 = (__mmask16)((1u << (hi - i)) - 1);       \
            const __m512 x16 = QR_LD16(a);                                 \
            _mm512_mask_storeu_ps(o + i, m16, vec16);                      \
        }                                                                  \
    } while (0)
#define QR_GELU_LOOP(vec, vec16, scalar) QR_GELU_LOOP16(vec16)
#elif defined(__AVX2__)
#define QR_GELU_LOOP(vec, vec16, scalar)                                   \
    do {                                                                   \
        int64_t i = lo;                                                    \
        for (; i + 8 <= hi; i += 8) {                                      \
            const __m256 x8 = _mm256_loadu_ps(a + i);                      \
            _mm256_storeu_ps(o + i, vec);                                  \
        }                                                                  \
        for (; i < hi; i++) o[i] = scalar;                                 \
    } while (0)
#else
#define QR_GELU_LOOP(vec, vec16, scalar) \
    do { for (int64_t i = lo; i < hi; i++) o[i] = scalar; } while (0)
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
/* o[i] = vec8 for i in [lo, hi), x8 = a[i..i+8), QR_LD8(b) = b[i..i+8): the tail on masked
 * lanes too (the others load 0 and are not stored), so every element takes the 8-lane formula
 * (the exact GELU's FMA twins are not bit-identical to the scalar one). */
static inline __attribute__((always_inline)) __m256 qr__ld8(const float *p, __m256i m, int full) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}
#define QR_LD8(p) qr__ld8((p) + i, m8, full8)
#define QR_FMA_LOOP8(vec8)                                                 \
    do {                                                                   \
        int64_t i2 = lo;                                                   \
        for (; i2 + 16 <= hi; i2 += 16) {   /* two vectors at a time */    \
            const __m256i m8 = _mm256_setzero_si256();                     \
            const int full8 = 1;                                           \
            __m256 r0, r1;                                                 \
            { const int64_t i = i2; const __m256 x8 = QR_LD8(a); r0 = vec8; }     \
            { const int64_t i = i2 + 8; const __m256 x8 = QR_LD8(a); r1 = vec8; } \
            _mm256_storeu_ps(o + i2, r0);                                  \
            _mm256_storeu_ps(o + i2 + 8, r1);                              \
        }                                                                  \
        for (int64_t i = i2; i < hi; i += 8) {                             \
            const __m256i m8 = _mm256_cmpgt_epi32(                         \
                _mm256_set1_epi32((int)(hi - i < 8 ? hi - i : 8)),         \
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));                \
            const int full8 = 0;                                           \
            const __m256 x8 = QR_LD8(a);                                   \
            _mm256_maskstore_ps(o + i, m8, vec8);                          \
        }                                                                  \
    } while (0)
#endif

#if defined(__AVX512F__)
/* SiLU backward on 16 lanes, OP_SILU_BWD's scalar formula: dy * (((1 - sg) x + 1) sg) */
QR_AI16 __m512 qr__silu_bwd16(__m512 x, __m512 dy) {
    const __m512 one = QR_SET16(1.0f);
    const __m512 e = qr_exp16(_mm512_xor_ps(x, QR_SET16(-0.0f)));
    const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(e, one));
    const __m512 t = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(one, sg), x), one);
    return _mm512_mul_ps(dy, _mm512_mul_ps(t, sg));
}
#endif

void QR_VEC_NAME(ew_range)(void *p, int64_t lo, int64_t hi) {
    const ew_ctx *c = p;
    const float *a = c->a, *b = c->b;
    float *o = c->o;
    const float s = c->s;
    switch (c->op) {
    case OP_FILL: for (int64_t i = lo; i < hi; i++) o[i] = s; break;
    case OP_COPY: memcpy(o + lo, a + lo, (size_t)(hi - lo) * sizeof(float)); break;
    case OP_ADD: for (int64_t i = lo; i < hi; i++) o[i] = a[i] + b[i]; break;
    case OP_MUL: for (int64_t i = lo; i < hi; i++) o[i] = a[i] * b[i]; break;
    case OP_SCALE: for (int64_t i = lo; i < hi; i++) o[i] = o[i] * s; break;
    case OP_AXPY: for (int64_t i = lo; i < hi; i++) { float t = a[i] * s; o[i] = o[i] + t; } break;
    case OP_RELU: for (int64_t i = lo; i < hi; i++) o[i] = a[i] < 0.0f ? 0.0f : a[i]; break;
    case OP_RELU_BWD:   /* dx = dy * (x > 0): NaN x gives 0 * dy */
        for (int64_t i = lo; i < hi; i++) o[i] = b[i] * (a[i] > 0.0f ? 1.0f : 0.0f);
        break;
    /* exact GELU: the SIMD tiers run the FMA erf of qr_math.h (qr_gelu_fma8 / 16, within
     * decl/act.py's bound of the portable formula, bit-identical to each other) */
#if defined(__AVX512F__)
    case OP_GELU: QR_GELU_LOOP16(qr_gelu_fma16(x16)); break;
    case OP_GELU_BWD:   /* dx = dy * (Phi(x) + x phi(x)) */
        QR_GELU_LOOP16(_mm512_mul_ps(QR_LD16(b), qr_gelu_grad_fma16(x16)));
        break;
#elif defined(__AVX2__)
    case OP_GELU: QR_FMA_LOOP8(qr_gelu_fma8(x8)); break;
    case OP_GELU_BWD: QR_FMA_LOOP8(_mm256_mul_ps(QR_LD8(b), qr_gelu_grad_fma8(x8))); break;
#else
    case OP_GELU: for (int64_t i = lo; i < hi; i++) o[i] = qr_gelu_f(a[i]); break;
    case OP_GELU_BWD:   /* dx = dy * (Phi(x) + x phi(x)) */
        for (int64_t i = lo; i < hi; i++) o[i] = b[i] * qr_gelu_grad_f(a[i]);
        break;
#endif
    case OP_GELU_TANH:
        QR_GELU_LOOP(qr_gelu_tanh8(x8), qr_gelu_tanh16(x16), qr_gelu_tanh_f(a[i]));
        break;
    case OP_GELU_TANH_BWD:
        QR_GELU_LOOP(_mm256_mul_ps(_mm256_loadu_ps(b + i), qr_gelu_tanh_grad8(x8)),
                     _mm512_mul_ps(QR_LD16(b), qr_gelu_tanh_grad16(x16)),
                     b[i] * qr_gelu_tanh_grad_f(a[i]));
        break;
#if defined(__AVX512F__)   /* exp(-x) and the rest of the formula on the same 16 lanes */
    case OP_SIGMOID:
        QR_GELU_LOOP16(_mm512_div_ps(QR_SET16(1.0f),
                                     _mm512_add_ps(qr_exp16(_mm512_xor_ps(x16, QR_SET16(-0.0f))),
                                                   QR_SET16(1.0f))));
        break;
    case OP_SILU:
        QR_GELU_LOOP16(_mm512_div_ps(x16,
                                     _mm512_add_ps(qr_exp16(_mm512_xor_ps(x16, QR_SET16(-0.0f))),
                                                   QR_SET16(1.0f))));
        break;
    case OP_SILU_BWD:
        QR_GELU_LOOP16(qr__silu_bwd16(x16, QR_LD16(b)));
        break;
    case OP_TANH: QR_GELU_LOOP16(qr_tanh16(x16)); break;
#else
    case OP_SIGMOID:
        for (int64_t i0 = lo; i0 < hi; i0 += QR_EXP_TILE) {
            const int64_t n = hi - i0 < QR_EXP_TILE ? hi - i0 : QR_EXP_TILE;
            float e[QR_EXP_TILE];
            qr_exp_neg(a + i0, e, n);
            for (int64_t j = 0; j < n; j++) o[i0 + j] = 1.0f / (e[j] + 1.0f);
        }
        break;
    case OP_SILU:
        for (int64_t i0 = lo; i0 < hi; i0 += QR_EXP_TILE) {
            const int64_t n = hi - i0 < QR_EXP_TILE ? hi - i0 : QR_EXP_TILE;
            float e[QR_EXP_TILE];
            qr_exp_neg(a + i0, e, n);
            for (int64_t j = 0; j < n; j++) o[i0 + j] = a[i0 + j] / (e[j] + 1.0f);
        }
        break;
    case OP_SILU_BWD:
        for (int64_t i0 = lo; i0 < hi; i0 += QR_EXP_TILE) {
            const int64_t n = hi - i0 < QR_EXP_TILE ? hi - i0 : QR_EXP_TILE;
            float e[QR_EXP_TILE];
            qr_exp_neg(a + i0, e, n);
            for (int64_t j = 0; j < n; j++) {
                float x = a[i0 + j], sg = 1.0f / (e[j] + 1.0f);
                float t = (1.0f - sg) * x + 1.0f;
                o[i0 + j] = b[i0 + j] * (t * sg);
            }
        }
        break;
    case OP_TANH: for (int64_t i = lo; i < hi; i++) o[i] = qr_tanhf(a[i]); break;
#endif
    case OP_SIGMOID_BWD:
        for (int64_t i = lo; i < hi; i++) { float y = a[i]; o[i] = b[i] * ((1.0f - y) * y); }
        break;
    case OP_TANH_BWD:
        for (int64_t i = lo; i < hi; i++) { float y = a[i]; o[i] = b[i] * (1.0f - y * y); }
        break;
    default: break;
    }
}

/* ------------------------------------------------------------------ softmax rows */
#if defined(__AVX512F__)
/* sum of y's 16 lanes in order from 0 (qr_sum_f's last step) */
QR_AI16 float qr__lanes_sum16(__m512 acc) {
    float l[16];
    _mm512_storeu_ps(l, acc);
    float s = 0.0f;
    for (int k = 0; k < 16; k++) s += l[k];
    return s;
}

/* y[j] = qr_expf(x[j] - mx) for j < n, returning qr_sum_f(y, n): one pass, the sum kept in
 * qr_sum_f's 16 lanes (a vector of them) and the tail added to lanes 0.. as it does. */
QR_AI16 float qr__exp_shift_sum16(const float *x, float mx, float *y, int64_t n) {
    const __m512 s16 = _mm512_set1_ps(mx);
    __m512 acc = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {   /* four exp chains at a time, added in order */
        const __m512 e0 = qr_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), s16));
        const __m512 e1 = qr_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), s16));
        const __m512 e2 = qr_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j + 32), s16));
        const __m512 e3 = qr_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j + 48), s16));
        _mm512_storeu_ps(y + j, e0);
        _mm512_storeu_ps(y + j + 16, e1);
        _mm512_storeu_ps(y + j + 32, e2);
        _mm512_storeu_ps(y + j + 48, e3);
        acc = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc, e0), e1), e2), e3);
    }
    for (; j + 16 <= n; j += 16) {
        const __m512 e = qr_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), s16));
        _mm512_storeu_ps(y + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (j < n) {
        const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        const __m512 e = qr_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), s16));
        _mm512_mask_storeu_ps(y + j, m, e);
        acc = _mm512_mask_add_ps(acc, m, acc, e);
    }
    return qr__lanes_sum16(acc);
}
#endif

void QR_VEC_NAME(softmax_rows)(void *p, int64_t lo, int64_t hi) {
    const sm_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n;
        float *y = c->y + r * n;
        float mx = qr_max_f(x, n);
#if defined(__AVX512F__)
        const float s = qr__exp_shift_sum16(x, mx, y, n);
#else
        qr_exp_shift(x, mx, y, n);
        float s = qr_sum_f(y, n);
#endif
        for (int64_t j = 0; j < n; j++) y[j] = y[j] / s;
    }
}

/* dx = y * (dy - sum(dy * y)) per row. dx may alias dy. */
void QR_VEC_NAME(softmax_bwd_rows)(void *p, int64_t lo, int64_t hi) {
    const sm_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *y = c->x + r * n, *dy = c->dy + r * n;
        float *dx = c->dx + r * n;
        float s = qr_dot_f(dy, y, n);
        for (int64_t j = 0; j < n; j++) dx[j] = (dy[j] - s) * y[j];
    }
}

/* ------------------------------------------------------------------ cross-entropy rows */
void QR_VEC_NAME(ce_rows)(void *p, int64_t lo, int64_t hi) {
    const ce_ctx *c = p;
    const int64_t C = c->C;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * C;
        const float mx = qr_max_f(x, C);
        const int32_t t = c->t[r];
        double *o = c->row + 3 * r;
        o[1] = (double)(x[t] - mx);                 /* shifted logit of the target */
        o[2] = 0.0;
        if (c->smooth) {                            /* sum of shifted logits */
            float acc[16] = {0};
            int64_t j = 0;
            for (; j + 16 <= C; j += 16)
                for (int k = 0; k < 16; k++) acc[k] += x[j + k] - mx;
            for (int k = 0; j < C; j++, k++) acc[k] += x[j] - mx;
            double sh = 0.0;
            for (int k = 0; k < 16; k++) sh += acc[k];
            o[2] = sh;
        }
        float *e = c->d ? c->d + r * C : 0;         /* may alias x: x is not read after this */
        float s;
        if (e) {
#if defined(__AVX512F__)
            s = qr__exp_shift_sum16(x, mx, e, C);
#else
            qr_exp_shift(x, mx, e, C);
            s = qr_sum_f(e, C);
#endif
        } else {
#if defined(__AVX512F__)   /* the same 16 lanes as a vector, the tail into lanes 0.. */
            const __m512 s16 = _mm512_set1_ps(mx);
            __m512 acc = _mm512_setzero_ps();
            int64_t j = 0;
            for (; j + 16 <= C; j += 16)
                acc = _mm512_add_ps(acc, qr_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), s16)));
            if (j < C) {
                const __mmask16 m = (__mmask16)((1u << (C - j)) - 1);
                const __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), s16);
                acc = _mm512_mask_add_ps(acc, m, acc, qr_exp16(v));
            }
            s = qr__lanes_sum16(acc);
#else
            float acc[16] = {0};
            int64_t j = 0;
            for (; j + 16 <= C; j += 16)
                for (int k = 0; k < 16; k++) acc[k] += qr_expf(x[j + k] - mx);
            for (int k = 0; j < C; j++, k++) acc[k] += qr_expf(x[j] - mx);
            s = 0.0f;
            for (int k = 0; k < 16; k++) s += acc[k];
#endif
        }
        o[0] = (double)logf(s);                     /* log-sum-exp of the shifted logits */
        if (e) {   /* (softmax - eps/C - (1-eps) onehot) / N, in decl/loss.py's order */
            for (int64_t j = 0; j < C; j++) e[j] = e[j] / s;
            if (c->smooth)
                for (int64_t j = 0; j < C; j++) e[j] = e[j] - c->eps_c;
            e[t] = e[t] - c->one_m_eps;
            for (int64_t j = 0; j < C; j++) e[j] = e[j] * c->inv_n;
        }
    }
}

/* ------------------------------------------------------------------ layernorm / rmsnorm rows */
/* norm.c's entry points pick these; the row sums run in qr_sum_f / qr_dot_f's fixed lanes. */
void QR_VEC_NAME(layernorm_rows)(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    const float fn = (float)n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n;
        float *y = c->y + r * n;
        float mu = qr_sum_f(x, n) / fn;
        for (int64_t j = 0; j < n; j++) y[j] = x[j] - mu;
        float var = qr_dot_f(y, y, n) / fn;
        float rs = 1.0f / __builtin_sqrtf(var + c->eps);
        const float *g = c->g, *b = c->b;           /* NULL: 1 / 0 (no affine) */
        for (int64_t j = 0; j < n; j++) {
            float v = y[j] * rs;
            if (g) v = v * g[j];
            if (b) v = v + b[j];
            y[j] = v;
        }
        c->m[r] = mu;
        c->r[r] = rs;
    }
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma (dy: gamma NULL),
 * xhat = (x - mean) rstd */
#define QR_LN_G(j) (gam ? dy[j] * gam[j] : dy[j])
void QR_VEC_NAME(layernorm_bwd_rows)(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    const float fn = (float)n;
    const float *gam = c->g;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n, *dy = c->dy + r * n;
        float *dx = c->dx + r * n;
        const float mu = c->mean[r], rs = c->rstd[r];
        float acc1[16] = {0}, acc2[16] = {0};       /* sum g, sum g * xhat (fixed lanes) */
        int64_t j = 0;
        for (; j + 16 <= n; j += 16)
            for (int k = 0; k < 16; k++) {
                float xh = (x[j + k] - mu) * rs, g = QR_LN_G(j + k);
                acc1[k] += g;
                acc2[k] += g * xh;
            }
        for (int k = 0; j < n; j++, k++) {
            float xh = (x[j] - mu) * rs, g = QR_LN_G(j);
            acc1[k] += g;
            acc2[k] += g * xh;
        }
        float s1 = 0.0f, s2 = 0.0f;
        for (int k = 0; k < 16; k++) { s1 += acc1[k]; s2 += acc2[k]; }
        const float m1 = s1 / fn, m2 = s2 / fn;
        for (j = 0; j < n; j++) {
            float xh = (x[j] - mu) * rs, g = QR_LN_G(j);
            dx[j] = ((g - m1) - xh * m2) * rs;
        }
    }
}
#undef QR_LN_G

/* dgamma[j] += sum_r dy * xhat, dbeta[j] += sum_r dy: rows in order, chunks of columns
 * (either may be NULL: not accumulated). */
void QR_VEC_NAME(layernorm_param_chunks)(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    float ag[QR_LN_CHUNK], ab[QR_LN_CHUNK];
    for (int64_t ch = lo; ch < hi; ch++) {
        int64_t j0 = ch * QR_LN_CHUNK, w = n - j0 < QR_LN_CHUNK ? n - j0 : QR_LN_CHUNK;
        memset(ag, 0, sizeof(ag));
        memset(ab, 0, sizeof(ab));
        for (int64_t r = 0; r < c->rows; r++) {
            const float *x = c->x + r * n + j0, *dy = c->dy + r * n + j0;
            const float mu = c->mean[r], rs = c->rstd[r];
            for (int64_t j = 0; j < w; j++) {
                ag[j] += dy[j] * ((x[j] - mu) * rs);
                ab[j] += dy[j];
            }
        }
        if (c->dg)
            for (int64_t j = 0; j < w; j++) c->dg[j0 + j] = c->dg[j0 + j] + ag[j];
        if (c->db)
            for (int64_t j = 0; j < w; j++) c->db[j0 + j] = c->db[j0 + j] + ab[j];
    }
}

/* y[R,N] = x * rstd * w[N], rstd = 1 / sqrt(mean(x^2) + eps) saved in rstd[R]. */
void QR_VEC_NAME(rmsnorm_rows)(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n;
        float *y = c->y + r * n;
        float ms = qr_dot_f(x, x, n) / (float)n;
        float rs = 1.0f / __builtin_sqrtf(ms + c->eps);
        for (int64_t j = 0; j < n; j++) y[j] = x[j] * rs * c->g[j];
        c->r[r] = rs;
    }
}

/* dx = rstd * (g - xhat * mean(g * xhat)), g = dy * w, xhat = x * rstd (dx may be NULL). */
void QR_VEC_NAME(rmsnorm_bwd_rows)(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * n, *dy = c->dy + r * n;
        float *dx = c->dx + r * n;
        const float rs = c->rstd[r];
        float acc[16] = {0};
        int64_t j = 0;
        for (; j + 16 <= n; j += 16)
            for (int k = 0; k < 16; k++) acc[k] += (dy[j + k] * c->g[j + k]) * (x[j + k] * rs);
        for (int k = 0; j < n; j++, k++) acc[k] += (dy[j] * c->g[j]) * (x[j] * rs);
        float s = 0.0f;
        for (int k = 0; k < 16; k++) s += acc[k];
        const float m = s / (float)n;
        for (j = 0; j < n; j++) {
            float xh = x[j] * rs, g = dy[j] * c->g[j];
            dx[j] = (g - xh * m) * rs;
        }
    }
}

/* dweight[j] += sum_r dy * xhat: rows in order, chunks of columns. */
void QR_VEC_NAME(rmsnorm_param_chunks)(void *p, int64_t lo, int64_t hi) {
    const rw_ctx *c = p;
    const int64_t n = c->n;
    float ag[QR_LN_CHUNK];
    for (int64_t ch = lo; ch < hi; ch++) {
        int64_t j0 = ch * QR_LN_CHUNK, w = n - j0 < QR_LN_CHUNK ? n - j0 : QR_LN_CHUNK;
        memset(ag, 0, sizeof(ag));
        for (int64_t r = 0; r < c->rows; r++) {
            const float *x = c->x + r * n + j0, *dy = c->dy + r * n + j0;
            const float rs = c->rstd[r];
            for (int64_t j = 0; j < w; j++) ag[j] += dy[j] * (x[j] * rs);
        }
        for (int64_t j = 0; j < w; j++) c->dg[j0 + j] = c->dg[j0 + j] + ag[j];
    }
}

/* ------------------------------------------------------------------ optimizer steps */
void QR_VEC_NAME(sgd_range)(void *ctx, int64_t lo, int64_t hi) {
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

void QR_VEC_NAME(adam_range)(void *ctx, int64_t lo, int64_t hi) {
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

/* ------------------------------------------------------------------ leaky_relu .. glu */
#include "act_ext_impl.h"
