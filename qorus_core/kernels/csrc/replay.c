/* replay.c - a recorded sequence of kernel calls run in one C call (a captured plan).
 *
 * A compiled inference plan calls the same kernels on the same planned memory every time;
 * only a few integers move with the sequence position of a decode step (the KV-cache row
 * written, the RoPE position, the number of cached keys). qorus_core/replay.py records the C
 * calls of two consecutive steps, derives each integer argument as base + per_pos * pos, checks
 * the result against a normal step, and then runs each later step as one qr_replay_run call:
 * no Python between the kernels. The calls are made here by name, each with its own prototype,
 * so the compiler checks every argument. Only the kernels listed below can be replayed. */
#include <string.h>

#include "qorus.h"

enum {
    OP_MATMUL_Q3, OP_MATMUL_Q8_0, OP_MATMUL_Q4_0, OP_MATMUL_Q4_1, OP_MATMUL_F16,
    OP_GET_ROWS_Q8_0, OP_GET_ROWS_Q4_0, OP_GET_ROWS_Q4_1, OP_GET_ROWS_F16,
    OP_GEMM, OP_EMBEDDING, OP_RMSNORM, OP_LAYERNORM, OP_ROPE, OP_ATTENTION_DECODE,
    OP_SWIGLU, OP_GELU, OP_SILU, OP_RELU, OP_ADD, OP_MUL, OP_COPY, OP_BIAS_ADD, OP_ADD_BCAST,
    /* the other weight formats: matmul, then get_rows, in quant_kformats.c's order */
    OP_MATMUL_Q5_0, OP_MATMUL_Q5_1, OP_MATMUL_Q2_K, OP_MATMUL_Q3_K, OP_MATMUL_Q4_K, OP_MATMUL_Q5_K, OP_MATMUL_Q6_K, OP_MATMUL_IQ4_NL, OP_MATMUL_BF16,
    OP_GET_ROWS_Q5_0, OP_GET_ROWS_Q5_1, OP_GET_ROWS_Q2_K, OP_GET_ROWS_Q3_K, OP_GET_ROWS_Q4_K, OP_GET_ROWS_Q5_K, OP_GET_ROWS_Q6_K, OP_GET_ROWS_IQ4_NL, OP_GET_ROWS_BF16,
    /* a batched decode step (decode_rows.c) */
    OP_LINEARS_ROWS, OP_ROPE_ROWS, OP_KV_STORE_ROWS, OP_ATTENTION_DECODE_ROWS,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "qr_matmul_q3_f32", "qr_matmul_q8_0_f32", "qr_matmul_q4_0_f32", "qr_matmul_q4_1_f32",
    "qr_matmul_f16_f32", "qr_get_rows_q8_0", "qr_get_rows_q4_0", "qr_get_rows_q4_1",
    "qr_get_rows_f16", "qr_gemm_f32", "qr_embedding_f32", "qr_rmsnorm_f32", "qr_layernorm_f32",
    "qr_rope_f32", "qr_attention_decode_f32", "qr_swiglu_f32", "qr_gelu_f32", "qr_silu_f32",
    "qr_relu_f32", "qr_add_f32", "qr_mul_f32", "qr_copy_f32", "qr_bias_add_f32",
    "qr_add_bcast_f32",
    "qr_matmul_q5_0_f32", "qr_matmul_q5_1_f32", "qr_matmul_q2_k_f32", "qr_matmul_q3_k_f32", "qr_matmul_q4_k_f32", "qr_matmul_q5_k_f32", "qr_matmul_q6_k_f32", "qr_matmul_iq4_nl_f32", "qr_matmul_bf16_f32",
    "qr_get_rows_q5_0", "qr_get_rows_q5_1", "qr_get_rows_q2_k", "qr_get_rows_q3_k", "qr_get_rows_q4_k", "qr_get_rows_q5_k", "qr_get_rows_q6_k", "qr_get_rows_iq4_nl", "qr_get_rows_bf16",
    "qr_linears_rows_f32", "qr_rope_rows_f32", "qr_kv_store_rows_f32",
    "qr_attention_decode_rows_f32",
};

/* the op table, for the Python side's check against the kernel table's replayable symbols */
int qr_replay_op_count(void) { return OP_COUNT; }
const char *qr_replay_op_name(int op) { return op >= 0 && op < OP_COUNT ? op_names[op] : NULL; }

int qr_replay_op(const char *name) {
    if (!name) return QR_EARG;
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(name, op_names[i]) == 0) return i;
    return QR_EARG;
}

#define P(i) ((void *)(intptr_t)a[i])
#define L(i) (a[i])
#define I(i) ((int)a[i])
#define F(i) ((float)c->f[i])

/* one call; a[] holds its integer and pointer arguments in order, c->f its float ones */
static int run_one(const qr_call *c, const int64_t *a) {
    switch (c->op) {
    case OP_MATMUL_Q3:
        return qr_matmul_q3_f32(P(0), L(1), I(2), P(3), P(4), L(5), I(6), P(7), P(8), L(9),
                                I(10), P(11), P(12), L(13));
    case OP_MATMUL_Q8_0: return qr_matmul_q8_0_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_Q4_0: return qr_matmul_q4_0_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_Q4_1: return qr_matmul_q4_1_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_F16: return qr_matmul_f16_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q8_0: return qr_get_rows_q8_0(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q4_0: return qr_get_rows_q4_0(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q4_1: return qr_get_rows_q4_1(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_F16: return qr_get_rows_f16(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_Q5_0: return qr_matmul_q5_0_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q5_0: return qr_get_rows_q5_0(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_Q5_1: return qr_matmul_q5_1_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q5_1: return qr_get_rows_q5_1(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_Q2_K: return qr_matmul_q2_k_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q2_K: return qr_get_rows_q2_k(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_Q3_K: return qr_matmul_q3_k_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q3_K: return qr_get_rows_q3_k(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_Q4_K: return qr_matmul_q4_k_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q4_K: return qr_get_rows_q4_k(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_Q5_K: return qr_matmul_q5_k_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q5_K: return qr_get_rows_q5_k(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_Q6_K: return qr_matmul_q6_k_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_Q6_K: return qr_get_rows_q6_k(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_IQ4_NL: return qr_matmul_iq4_nl_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_IQ4_NL: return qr_get_rows_iq4_nl(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_MATMUL_BF16: return qr_matmul_bf16_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GET_ROWS_BF16: return qr_get_rows_bf16(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_GEMM:
        return qr_gemm_f32(I(0), I(1), L(2), L(3), L(4), F(0), P(5), P(6), F(1), P(7));
    case OP_EMBEDDING: return qr_embedding_f32(P(0), P(1), P(2), L(3), L(4), L(5));
    case OP_RMSNORM: return qr_rmsnorm_f32(P(0), P(1), P(2), P(3), L(4), L(5), F(0));
    case OP_LAYERNORM:
        return qr_layernorm_f32(P(0), P(1), P(2), P(3), P(4), P(5), L(6), L(7), F(0));
    case OP_ROPE: return qr_rope_f32(P(0), P(1), L(2), L(3), L(4), L(5), L(6), F(0), I(7));
    case OP_ATTENTION_DECODE:
        return qr_attention_decode_f32(P(0), P(1), P(2), P(3), L(4), L(5), L(6), L(7), L(8),
                                       L(9), F(0));
    case OP_SWIGLU: return qr_swiglu_f32(P(0), P(1), P(2), L(3));
    case OP_GELU: return qr_gelu_f32(P(0), P(1), L(2), I(3));
    case OP_SILU: return qr_silu_f32(P(0), P(1), L(2));
    case OP_RELU: return qr_relu_f32(P(0), P(1), L(2));
    case OP_ADD: return qr_add_f32(P(0), P(1), P(2), L(3));
    case OP_MUL: return qr_mul_f32(P(0), P(1), P(2), L(3));
    case OP_COPY: return qr_copy_f32(P(0), P(1), L(2));
    case OP_BIAS_ADD: return qr_bias_add_f32(P(0), P(1), L(2), L(3));
    case OP_ADD_BCAST: return qr_add_bcast_f32(P(0), P(1), P(2), L(3), L(4));
    case OP_LINEARS_ROWS:
        return qr_linears_rows_f32(P(0), L(1), L(2), I(3), P(4), P(5), L(6), P(7), P(8), L(9),
                                   P(10), P(11), L(12));
    case OP_ROPE_ROWS:
        return qr_rope_rows_f32(P(0), P(1), P(2), L(3), L(4), L(5), L(6), F(0), I(7));
    case OP_KV_STORE_ROWS:
        return qr_kv_store_rows_f32(P(0), P(1), P(2), P(3), L(4), L(5), L(6), L(7), L(8));
    case OP_ATTENTION_DECODE_ROWS:
        return qr_attention_decode_rows_f32(P(0), P(1), P(2), P(3), P(4), P(5), L(6), L(7),
                                            L(8), L(9), L(10), L(11), F(0));
    default: return QR_EARG;
    }
}

int qr_replay_run(const qr_call *calls, int64_t n, int64_t pos) {
    if (n < 0 || (n > 0 && !calls)) return QR_EARG;
    for (int64_t i = 0; i < n; i++) {
        const qr_call *c = &calls[i];
        if (c->op < 0 || c->op >= OP_COUNT || c->nargs < 0 || c->nargs > QR_CALL_ARGS)
            return QR_EARG;
        int64_t a[QR_CALL_ARGS];
        for (int j = 0; j < c->nargs; j++) a[j] = c->base[j] + c->per_pos[j] * pos;
        int rc = run_one(c, a);
        if (rc != QR_OK) return rc;
    }
    return QR_OK;
}
