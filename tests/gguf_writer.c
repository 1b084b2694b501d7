/* tests/gguf_writer.c - writes GGUF files for tests; trusts its inputs.
 * The layout is llama.cpp's (ggml/include/gguf.h), described in
 * gguf_writer.h. Nothing is validated, so that tests can write the hostile
 * files a reader must refuse; not library code (aborts when out of memory). */
#include "gguf_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant.h"
#include "test.h"

/* ---- a byte buffer -------------------------------------------------------- */

void gg_put(struct gg_buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

void gg_put_le(struct gg_buf *b, uint64_t v, unsigned n_bytes)
{
    uint8_t x[8];
    for (unsigned i = 0; i < n_bytes; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    gg_put(b, x, n_bytes);
}

void gg_put_u32(struct gg_buf *b, uint32_t v) { gg_put_le(b, v, 4); }
void gg_put_u64(struct gg_buf *b, uint64_t v) { gg_put_le(b, v, 8); }

void gg_put_f32(struct gg_buf *b, float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    gg_put_u32(b, bits);
}

void gg_put_strn(struct gg_buf *b, const char *s, size_t n)
{
    gg_put_u64(b, n);
    gg_put(b, s, n);
}

void gg_put_str(struct gg_buf *b, const char *s) { gg_put_strn(b, s, strlen(s)); }

void gg_patch_le(struct gg_buf *b, size_t at, uint64_t v, unsigned n_bytes)
{
    for (unsigned i = 0; i < n_bytes; i++)
        b->p[at + i] = (uint8_t)(v >> (8 * i));
}

int gg_write_buf(const char *path, const struct gg_buf *b)
{
    return test_write_file(path, b->p, b->n);
}

/* ---- a GGUF builder ------------------------------------------------------- */

void gg_init(struct gg *g)
{
    memset(g, 0, sizeof *g);
    g->version = 3;
    g->alignment = 32; /* GGUF_DEFAULT_ALIGNMENT (ggml gguf.h) */
}

void gg_free(struct gg *g)
{
    free(g->kv.p);
    for (int i = 0; i < g->n_t; i++)
        free(g->t[i].data);
    memset(g, 0, sizeof *g);
}

static int gg_skipped(const struct gg *g, const char *name)
{
    for (int i = 0; i < GG_MAX_SKIP; i++)
        if (g->skip[i] && !strcmp(g->skip[i], name))
            return 1;
    return 0;
}

static int kv_head(struct gg *g, const char *key, uint32_t type)
{
    if (gg_skipped(g, key))
        return 0;
    gg_put_str(&g->kv, key);
    gg_put_u32(&g->kv, type);
    g->n_kv++;
    return 1;
}

void kv_u32(struct gg *g, const char *key, uint32_t v)
{
    if (kv_head(g, key, V_U32))
        gg_put_u32(&g->kv, v);
}

void kv_f32(struct gg *g, const char *key, float v)
{
    if (kv_head(g, key, V_F32))
        gg_put_f32(&g->kv, v);
}

void kv_bool(struct gg *g, const char *key, int v)
{
    if (kv_head(g, key, V_BOOL))
        gg_put_le(&g->kv, (uint64_t)!!v, 1);
}

void kv_str(struct gg *g, const char *key, const char *v)
{
    if (kv_head(g, key, V_STR))
        gg_put_str(&g->kv, v);
}

void kv_strs(struct gg *g, const char *key, char *const *s, const uint32_t *lens, uint32_t n)
{
    if (!kv_head(g, key, V_ARR))
        return;
    gg_put_u32(&g->kv, V_STR);
    gg_put_u64(&g->kv, n);
    for (uint32_t i = 0; i < n; i++)
        gg_put_strn(&g->kv, s[i], lens ? lens[i] : strlen(s[i]));
}

void kv_arr32(struct gg *g, const char *key, uint32_t elem_type, const void *v, uint32_t n)
{
    if (!kv_head(g, key, V_ARR))
        return;
    gg_put_u32(&g->kv, elem_type);
    gg_put_u64(&g->kv, n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, (const uint8_t *)v + 4 * (size_t)i, 4);
        gg_put_u32(&g->kv, x);
    }
}

void gg_tensor(struct gg *g, const char *name, uint32_t type, uint64_t rows, uint64_t cols,
               const void *data, size_t n_bytes)
{
    if (gg_skipped(g, name))
        return;
    if (g->n_t == GG_MAX_TENSORS) {
        g->dropped++;
        return;
    }
    struct gg_tensor *t = &g->t[g->n_t++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->n_dims = rows == 1 ? 1 : 2;
    t->ne[0] = cols;
    t->ne[1] = rows;
    t->ne[2] = t->ne[3] = 1;
    t->data = malloc(n_bytes ? n_bytes : 1);
    if (!t->data)
        abort();
    memcpy(t->data, data, n_bytes);
    t->n_bytes = n_bytes;
}

static uint64_t align_to(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

void gg_bytes(const struct gg *g, struct gg_buf *out, struct gg_marks *mk)
{
    struct gg_marks local;
    mk = mk ? mk : &local;
    memset(out, 0, sizeof *out);
    gg_put(out, "GGUF", 4);
    gg_put_u32(out, g->version);
    mk->n_tensors_at = out->n;
    gg_put_u64(out, (uint64_t)g->n_t);
    mk->n_kv_at = out->n;
    gg_put_u64(out, g->n_kv);
    mk->kv_at = out->n;
    gg_put(out, g->kv.p, g->kv.n);
    mk->infos_at = out->n;
    uint64_t cursor = 0;
    for (int i = 0; i < g->n_t; i++) {
        const struct gg_tensor *t = &g->t[i];
        mk->info_at[i] = out->n;
        gg_put_str(out, t->name);
        gg_put_u32(out, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            gg_put_u64(out, t->ne[d]);
        mk->type_at[i] = out->n;
        gg_put_u32(out, t->type);
        mk->offset_at[i] = out->n;
        mk->offset[i] = align_to(cursor, g->alignment);
        gg_put_u64(out, mk->offset[i]);
        cursor = mk->offset[i] + t->n_bytes;
    }
    static const uint8_t zeros[256]; /* alignments up to 256 */
    mk->data_at = align_to(out->n, g->alignment);
    gg_put(out, zeros, mk->data_at - out->n);
    for (int i = 0; i < g->n_t; i++) {
        gg_put(out, zeros, mk->data_at + mk->offset[i] - out->n);
        gg_put(out, g->t[i].data, g->t[i].n_bytes);
    }
}

int gg_write(const struct gg *g, const char *path)
{
    if (g->dropped)
        return -1;
    struct gg_buf b;
    gg_bytes(g, &b, NULL);
    int rc = gg_write_buf(path, &b);
    free(b.p);
    return rc;
}

/* ---- weights as GGUF bytes ------------------------------------------------ */

/* One block of 32 weights: Q8_0 is an fp16 scale d = amax / 127 and 32
 * int8 q (weight d * q); Q4_0 an fp16 scale d = max / -8 and 16 bytes of
 * nibbles, weight k in the low nibble of byte k, weight k + 16 in the high
 * one (weight d * (nibble - 8)) (ggml-quants.c block_q8_0 / block_q4_0). */
static void quantize_block(uint32_t type, const float *x, uint8_t *out)
{
    float amax = 0, max = 0;
    for (int k = 0; k < 32; k++) {
        if (fabsf(x[k]) > amax) {
            amax = fabsf(x[k]);
            max = x[k];
        }
    }
    if (type == G_Q8_0) {
        float d = amax / 127;
        uint16_t h = f32_to_fp16(d);
        out[0] = (uint8_t)h;
        out[1] = (uint8_t)(h >> 8);
        for (int k = 0; k < 32; k++)
            out[2 + k] = (uint8_t)(int8_t)(d ? lrintf(x[k] / d) : 0);
        return;
    }
    float d = max / -8;
    uint16_t h = f32_to_fp16(d);
    out[0] = (uint8_t)h;
    out[1] = (uint8_t)(h >> 8);
    for (int k = 0; k < 16; k++) {
        long lo = d ? lrintf(x[k] / d) + 8 : 8, hi = d ? lrintf(x[k + 16] / d) + 8 : 8;
        lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
        hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
        out[2 + k] = (uint8_t)(lo | hi << 4);
    }
}

static size_t row_bytes(uint32_t type, uint64_t cols)
{
    switch (type) {
    case G_F32:
        return 4 * cols;
    case G_F16:
    case G_BF16:
        return 2 * cols;
    case G_Q8_0:
        return cols / 32 * 34;
    default:
        return cols / 32 * 18;
    }
}

uint8_t *to_gguf(const float *w, uint64_t rows, uint64_t cols, uint32_t type, size_t *n)
{
    size_t rb = row_bytes(type, cols), total = rows * rb;
    uint8_t *out = malloc(total ? total : 1);
    if (!out)
        abort();
    for (uint64_t r = 0; r < rows; r++) {
        const float *x = w + r * cols;
        uint8_t *o = out + r * rb;
        for (uint64_t c = 0; type == G_F32 && c < cols; c++)
            memcpy(o + 4 * c, &x[c], 4);
        for (uint64_t c = 0; (type == G_F16 || type == G_BF16) && c < cols; c++) {
            uint16_t h = type == G_F16 ? f32_to_fp16(x[c]) : f32_to_bf16(x[c]);
            o[2 * c] = (uint8_t)h;
            o[2 * c + 1] = (uint8_t)(h >> 8);
        }
        for (uint64_t b = 0; (type == G_Q8_0 || type == G_Q4_0) && b < cols / 32; b++)
            quantize_block(type, x + 32 * b, o + b * (type == G_Q8_0 ? 34 : 18));
    }
    *n = total;
    return out;
}

/* ---- a model as GGUF ------------------------------------------------------ */

void gg_meta(struct gg *g, const char *arch, const struct synth_config *c)
{
    char k[96];
    kv_str(g, "general.architecture", arch);
#define ARCH_U32(suffix, v) (snprintf(k, sizeof k, "%s." suffix, arch), kv_u32(g, k, (uint32_t)(v)))
    ARCH_U32("context_length", c->seq_len);
    ARCH_U32("embedding_length", c->dim);
    ARCH_U32("block_count", c->n_layers);
    ARCH_U32("feed_forward_length", c->hidden_dim);
    ARCH_U32("attention.head_count", c->n_heads);
    ARCH_U32("attention.head_count_kv", c->n_kv_heads);
    ARCH_U32("rope.dimension_count", c->dim / c->n_heads);
#undef ARCH_U32
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    kv_f32(g, k, c->rope_theta);
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    kv_f32(g, k, c->norm_eps);
}

float *rotate_half(const float *w, uint64_t rows, uint64_t cols, uint64_t head_dim)
{
    float *out = malloc(rows * cols * sizeof *out);
    if (!out)
        abort();
    uint64_t half = head_dim / 2;
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t head = r / head_dim, i = r % head_dim;
        uint64_t from = head * head_dim + 2 * (i % half) + i / half;
        memcpy(out + r * cols, w + from * cols, cols * sizeof *out);
    }
    return out;
}

void gg_matrix(struct gg *g, const char *name, const float *w, uint64_t rows, uint64_t cols,
               uint32_t type, uint64_t permute_head_dim)
{
    float *perm = permute_head_dim ? rotate_half(w, rows, cols, permute_head_dim) : NULL;
    size_t n;
    uint8_t *data = to_gguf(perm ? perm : w, rows, cols, rows == 1 ? G_F32 : type, &n);
    gg_tensor(g, name, rows == 1 ? G_F32 : type, rows, cols, data, n);
    free(data);
    free(perm);
}

/* A bias vector; with permute_hd, in rotate-half order like q/k rows (a
 * vector's elements are rows of one). */
static void gg_bias(struct gg *g, const char *name, const float *b, uint64_t n,
                    uint64_t permute_hd)
{
    float *p = permute_hd ? rotate_half(b, n, 1, permute_hd) : NULL;
    gg_matrix(g, name, p ? p : b, 1, n, G_F32, 0);
    free(p);
}

static void gg_biases(struct gg *g, const struct gg_opts *o, const struct synth_config *c,
                      int l, uint64_t hd, int rot)
{
    uint64_t q_dim = (uint64_t)c->dim, kv_dim = hd * (uint64_t)c->n_kv_heads;
    char name[64];
    snprintf(name, sizeof name, "blk.%d.attn_q.bias", l);
    gg_bias(g, name, o->bq + (uint64_t)l * q_dim, q_dim, rot ? hd : 0);
    snprintf(name, sizeof name, "blk.%d.attn_k.bias", l);
    gg_bias(g, name, o->bk + (uint64_t)l * kv_dim, kv_dim, rot ? hd : 0);
    snprintf(name, sizeof name, "blk.%d.attn_v.bias", l);
    gg_bias(g, name, o->bv + (uint64_t)l * kv_dim, kv_dim, 0);
}

void gg_model(struct gg *g, const struct synth_model *sm, const struct gg_opts *o)
{
    const struct synth_config *c = &sm->cfg;
    const char *arch = o->arch ? o->arch : "llama";
    int rot = !strcmp(arch, "qwen2");
    uint64_t dim = (uint64_t)c->dim, hidden = (uint64_t)c->hidden_dim;
    uint64_t hd = dim / (uint64_t)c->n_heads, kv_dim = hd * (uint64_t)c->n_kv_heads;
    uint64_t vocab = (uint64_t)c->vocab_size;
    int turn = 0;
#define NEXT_TYPE (o->types[turn++ % 2])
    gg_meta(g, arch, c);
    gg_matrix(g, "token_embd.weight", sm->token_embd, vocab, dim, NEXT_TYPE, 0);
    for (int l = 0; l < c->n_layers; l++) {
        char name[64];
#define LAYER(suffix, w, rows, cols, perm)                                          \
    (snprintf(name, sizeof name, "blk.%d." suffix, l),                              \
     gg_matrix(g, name, (w), (rows), (cols), (rows) == 1 ? G_F32 : NEXT_TYPE, (perm)))
        LAYER("attn_norm.weight", sm->attn_norm + l * dim, 1, dim, 0);
        LAYER("attn_q.weight", sm->wq + l * dim * dim, dim, dim, rot ? hd : 0);
        LAYER("attn_k.weight", sm->wk + l * kv_dim * dim, kv_dim, dim, rot ? hd : 0);
        LAYER("attn_v.weight", sm->wv + l * kv_dim * dim, kv_dim, dim, 0);
        if (o->bq)
            gg_biases(g, o, c, l, hd, rot);
        LAYER("attn_output.weight", sm->wo + l * dim * dim, dim, dim, 0);
        LAYER("ffn_norm.weight", sm->ffn_norm + l * dim, 1, dim, 0);
        LAYER("ffn_gate.weight", sm->w_gate + l * hidden * dim, hidden, dim, 0);
        LAYER("ffn_up.weight", sm->w_up + l * hidden * dim, hidden, dim, 0);
        LAYER("ffn_down.weight", sm->w_down + l * dim * hidden, dim, hidden, 0);
#undef LAYER
    }
    gg_matrix(g, "output_norm.weight", sm->output_norm, 1, dim, G_F32, 0);
    if (sm->wcls)
        gg_matrix(g, "output.weight", sm->wcls, vocab, dim, NEXT_TYPE, 0);
#undef NEXT_TYPE
}

void gg_vocab_spm(struct gg *g, const struct vocab *v)
{
    uint32_t n = v->hdr.n_tokens;
    int32_t *types = malloc(n * sizeof *types + 1);
    if (!types)
        abort();
    for (uint32_t i = 0; i < n; i++)
        types[i] = v->kinds[i];
    kv_str(g, "tokenizer.ggml.model", "llama");
    kv_strs(g, "tokenizer.ggml.tokens", v->pieces, v->piece_bytes, n);
    kv_arr32(g, "tokenizer.ggml.scores", V_F32, v->scores, n);
    kv_arr32(g, "tokenizer.ggml.token_type", V_I32, types, n);
    kv_u32(g, "tokenizer.ggml.bos_token_id", v->bos_id);
    kv_u32(g, "tokenizer.ggml.eos_token_id", v->eos_id);
    kv_u32(g, "tokenizer.ggml.unknown_token_id", v->hdr.unk_id);
    free(types);
}
