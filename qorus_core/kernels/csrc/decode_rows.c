/* decode_rows.c - a decode step over several sequences at once (a server's slots), each row
 * with its own position and its own KV-cache slot: RoPE at per-row positions, the new keys
 * and values stored at each row's position of its slot, and decode attention over each
 * row's own length. Every row gets exactly what the one-row kernels give it alone (the same
 * cos/sin table entries, the same key chunks and merge order as a one-row qr_attention_decode
 * of that length), so a sequence decodes the same batched or not; the rows share one parallel
 * region. pos and slot are int32 [B]; a position or slot out of range is QR_ETARGET, checked
 * for every row before anything is written. */
#include <math.h>
#include <string.h>

#include "fused_internal.h"

#define QR_ROWS_MAX 64   /* rows of one step */

/* ------------------------------------------------------------------ rope */
/* scratch slot 4 is RoPE's table (fused.c); this header's first field is -1, which a
 * position never is, so the two never take each other's table */
typedef struct { int64_t magic, B, T, D; float theta; int valid; } rows_header;

int qr_rope_rows_f32(const float *x, float *y, const int32_t *pos, int64_t B, int64_t T,
                     int64_t H, int64_t D, float theta, int half_split) {
    if (B < 0 || B > QR_ROWS_MAX || T < 0 || H < 0 || D < 0 || (D & 1) || !(theta > 0.0f))
        return QR_EARG;
    if (B * T * H * D == 0) return QR_OK;
    if (!x || !y || !pos) return QR_EARG;
    for (int64_t b = 0; b < B; b++)
        if (pos[b] < 0) return QR_ETARGET;
    const int64_t half = D / 2, rows = B * T;
    rows_header key;
    memset(&key, 0, sizeof key);   /* padding too: compared bytewise */
    key.magic = -1, key.B = B, key.T = T, key.D = D, key.theta = theta, key.valid = 1;
    const size_t head = 64 + (((size_t)B * sizeof(int32_t) + 63) & ~(size_t)63);
    uint8_t *buf = qr_scratch(4, head + (size_t)(rows * D) * sizeof(float));
    if (!buf) return QR_ENOMEM;
    float *cs = (float *)(buf + head);
    if (memcmp(buf, &key, sizeof key) != 0 || memcmp(buf + 64, pos, (size_t)B * sizeof(int32_t))) {
        for (int64_t i = 0; i < half; i++) {   /* as fused.c's rope, position by position */
            const double freq = pow((double)theta, -(double)(2 * i) / (double)D);
            for (int64_t r = 0; r < rows; r++) {
                const double a = (double)((int64_t)pos[r / T] + r % T) * freq;
                cs[r * D + i] = (float)cos(a);
                cs[r * D + half + i] = (float)sin(a);
            }
        }
        memcpy(buf, &key, sizeof key);
        memcpy(buf + 64, pos, (size_t)B * sizeof(int32_t));
    }
    rope_ctx c = {.x = x, .y = y, .cs = cs, .T = rows, .H = H, .D = D, .half_split = half_split};
    qr_par_items(qr_simd_pick3(rope_rows), &c, rows, rows * H * D);
    return QR_OK;
}

/* ------------------------------------------------------------------ kv store */
static int rows_in_range(const int32_t *slot, const int32_t *pos, int64_t B, int64_t T,
                         int64_t S, int64_t L) {
    for (int64_t b = 0; b < B; b++)
        if (slot[b] < 0 || slot[b] >= S || pos[b] < 0 || pos[b] + T > L) return 0;
    return 1;
}

int qr_kv_store_rows_f32(const float *src, float *cache, const int32_t *slot, const int32_t *pos,
                         int64_t B, int64_t T, int64_t W, int64_t S, int64_t L) {
    if (B < 0 || T < 0 || W < 0 || S < 0 || L < 0) return QR_EARG;
    if (B * T * W == 0) return QR_OK;
    if (!src || !cache || !slot || !pos) return QR_EARG;
    if (!rows_in_range(slot, pos, B, T, S, L)) return QR_ETARGET;
    for (int64_t b = 0; b < B; b++)
        memcpy(cache + ((int64_t)slot[b] * L + pos[b]) * W, src + b * T * W,
               (size_t)(T * W) * sizeof(float));
    return QR_OK;
}

/* ------------------------------------------------------------------ decode attention */
typedef struct {
    att_ctx *row;             /* one one-row context per row */
    const int64_t *first;     /* first unit of each row in the joint range; first[B] all */
    int64_t B, Hkv;
} adr_ctx;

static void adr_items(void *p, int64_t lo, int64_t hi) {   /* units of every row */
    const adr_ctx *c = p;
    int64_t b = 0;
    for (int64_t u = lo; u < hi;) {
        while (c->first[b + 1] <= u) b++;
        const int64_t end = hi < c->first[b + 1] ? hi : c->first[b + 1];
        qr_simd_pick3(att_dec_items)(&c->row[b], u - c->first[b], end - c->first[b]);
        u = end;
    }
}

static void adr_merge(void *p, int64_t lo, int64_t hi) {   /* items: (row, kv head) */
    const adr_ctx *c = p;
    for (int64_t it = lo; it < hi; it++) {
        att_ctx *r = &c->row[it / c->Hkv];
        if (r->chunk < r->Tk)                  /* cut into chunks: partials to merge */
            qr_simd_pick3(att_dec_merge)(r, it % c->Hkv, it % c->Hkv + 1);
    }
}

int qr_attention_decode_rows_f32(const float *q, const float *k_cache, const float *v_cache,
                                 float *out, const int32_t *slot, const int32_t *pos, int64_t B,
                                 int64_t H, int64_t Hkv, int64_t D, int64_t S, int64_t L,
                                 float scale) {
    if (B < 0 || B > QR_ROWS_MAX || H <= 0 || Hkv <= 0 || D < 0 || H % Hkv || S < 0 || L < 0)
        return QR_EARG;
    if (B * D == 0) return QR_OK;
    if (!q || !k_cache || !v_cache || !out || !slot || !pos) return QR_EARG;
    if (!rows_in_range(slot, pos, B, 1, S, L)) return QR_ETARGET;
    att_ctx row[QR_ROWS_MAX];
    int64_t first[QR_ROWS_MAX + 1], part_at[QR_ROWS_MAX];
    int64_t work = 0, parts = 0, mwork = 0;
    const int64_t G = H / Hkv;
    first[0] = 0;
    for (int64_t b = 0; b < B; b++) {   /* row b: what a one-row step of its length does */
        const int64_t n = (int64_t)pos[b] + 1, chunk = qr__dec_chunk(1, Hkv, n);
        const int64_t nc = (n + chunk - 1) / chunk, at = (int64_t)slot[b] * L * Hkv * D;
        memset(&row[b], 0, sizeof row[b]);
        row[b].q = q + b * H * D;
        row[b].k = k_cache + at;
        row[b].v = v_cache + at;
        row[b].o = out + b * H * D;
        row[b].B = 1, row[b].Tq = 1, row[b].Tk = n, row[b].H = H, row[b].Hkv = Hkv;
        row[b].D = D, row[b].max_ctx = L, row[b].chunk = chunk, row[b].scale = scale;
        atomic_init(&row[b].err, 0);
        first[b + 1] = first[b] + Hkv * nc;
        part_at[b] = parts;
        if (nc > 1) parts += Hkv * nc * G * (D + 2), mwork += H * nc * D;
        work += H * n * D;
    }
    if (parts) {   /* the caller's scratch (slot 0 is each task's): every row's partials */
        float *part = qr_scratch(3, (size_t)parts * sizeof(float));
        if (!part) return QR_ENOMEM;
        for (int64_t b = 0; b < B; b++) row[b].part = part + part_at[b];
    }
    adr_ctx c = {row, first, B, Hkv};
    qr_par_items_grain(adr_items, &c, first[B], work, QR_DEC_GRAIN);
    for (int64_t b = 0; b < B; b++)
        if (atomic_load(&row[b].err)) return QR_ENOMEM;
    if (parts) qr_par_items(adr_merge, &c, B * Hkv, mwork);
    return QR_OK;
}
