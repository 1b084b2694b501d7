/* tests/synth.c - the synthetic checkpoint writer of synth.h.
 *
 * Layouts written here are the ones the exporter reads: llama2.c's legacy
 * checkpoint (llama2.c run.c, memory_map_weights) and a Hugging Face folder
 * (transformers LlamaForCausalLM names, which MistralForCausalLM and
 * Qwen2ForCausalLM share; safetensors as in FACTS.md, header
 * padded with spaces to a multiple of 8 as huggingface/safetensors does).
 * It has its own BF16 rounding so tests of quant.c do not depend on it.
 * Not here: any reading or checking; tests do that through the exporter. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "synth.h"
#include "test.h"

/* Round to nearest even to the upper 16 bits (BF16 is the top half of an
 * IEEE binary32). Weights here are finite, so NaN needs no case. */
static uint16_t synth_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

static float synth_round_bf16(float f)
{
    uint32_t bits = (uint32_t)synth_to_bf16(f) << 16;
    float r;
    memcpy(&r, &bits, sizeof r);
    return r;
}

struct filler {
    uint64_t state;
    int round_bf16;
};

static float *fill(struct filler *g, size_t n, int is_norm)
{
    float *a = malloc(n * sizeof *a);
    if (!a)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        float x = 0.1f * test_rand_normal(&g->state);
        if (is_norm)
            x += 1.0f;
        a[i] = g->round_bf16 ? synth_round_bf16(x) : x;
    }
    return a;
}

struct synth_model *synth_create(const struct synth_config *cfg, int round_bf16)
{
    struct synth_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    /* xorshift state must not be 0; mix the seed so nearby seeds differ. */
    struct filler g = {cfg->seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull, round_bf16};
    if (!g.state)
        g.state = 1;
    size_t L = (size_t)cfg->n_layers, dim = (size_t)cfg->dim, hidden = (size_t)cfg->hidden_dim;
    size_t kv_dim = dim / (size_t)cfg->n_heads * (size_t)cfg->n_kv_heads;
    size_t vocab = (size_t)cfg->vocab_size;
    /* llama2.c file order, so the random stream maps to the file in order. */
    m->token_embd = fill(&g, vocab * dim, 0);
    m->attn_norm = fill(&g, L * dim, 1);
    m->wq = fill(&g, L * dim * dim, 0);
    m->wk = fill(&g, L * kv_dim * dim, 0);
    m->wv = fill(&g, L * kv_dim * dim, 0);
    m->wo = fill(&g, L * dim * dim, 0);
    m->ffn_norm = fill(&g, L * dim, 1);
    m->w_gate = fill(&g, L * hidden * dim, 0);
    m->w_down = fill(&g, L * dim * hidden, 0);
    m->w_up = fill(&g, L * hidden * dim, 0);
    m->output_norm = fill(&g, dim, 1);
    m->wcls = cfg->tied ? NULL : fill(&g, vocab * dim, 0);
    if (!m->token_embd || !m->attn_norm || !m->wq || !m->wk || !m->wv || !m->wo ||
        !m->ffn_norm || !m->w_gate || !m->w_down || !m->w_up || !m->output_norm ||
        (!cfg->tied && !m->wcls)) {
        synth_free(m);
        return NULL;
    }
    return m;
}

void synth_free(struct synth_model *m)
{
    if (!m)
        return;
    float *arrays[] = {m->token_embd, m->attn_norm, m->wq, m->wk, m->wv, m->wo, m->ffn_norm,
                       m->w_gate, m->w_down, m->w_up, m->output_norm, m->wcls,
                       m->bq, m->bk, m->bv};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(arrays[i]);
    free(m);
}

int synth_set_variant(struct synth_model *m, const struct synth_variant *v)
{
    const struct synth_config *c = &m->cfg;
    m->var = *v;
    if (!v->qkv_bias || m->bq)
        return 0;
    size_t L = (size_t)c->n_layers, dim = (size_t)c->dim;
    size_t kv_dim = dim / (size_t)c->n_heads * (size_t)c->n_kv_heads;
    struct filler g = {(c->seed + 1) * 0xbf58476d1ce4e5b9ull + 0x94d049bb133111ebull, 0};
    if (!g.state)
        g.state = 1;
    m->bq = fill(&g, L * dim, 0);
    m->bk = fill(&g, L * kv_dim, 0);
    m->bv = fill(&g, L * kv_dim, 0);
    return m->bq && m->bk && m->bv ? 0 : -1;
}

/* ---- llama2.c ------------------------------------------------------------ */

int synth_write_llama2c(const struct synth_model *m, const char *path)
{
    const struct synth_config *c = &m->cfg;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    c->tied ? c->vocab_size : -c->vocab_size, c->seq_len};
    size_t L = (size_t)c->n_layers, dim = (size_t)c->dim, hidden = (size_t)c->hidden_dim;
    size_t kv_dim = dim / (size_t)c->n_heads * (size_t)c->n_kv_heads;
    size_t vocab = (size_t)c->vocab_size, half = dim / (size_t)c->n_heads / 2;
    int ok = fwrite(h, sizeof h, 1, f) == 1;
    const struct { const float *a; size_t n; } parts[] = {
        {m->token_embd, vocab * dim}, {m->attn_norm, L * dim}, {m->wq, L * dim * dim},
        {m->wk, L * kv_dim * dim}, {m->wv, L * kv_dim * dim}, {m->wo, L * dim * dim},
        {m->ffn_norm, L * dim}, {m->w_gate, L * hidden * dim}, {m->w_down, L * dim * hidden},
        {m->w_up, L * hidden * dim}, {m->output_norm, dim},
    };
    for (size_t i = 0; ok && i < sizeof parts / sizeof parts[0]; i++)
        ok = fwrite(parts[i].a, sizeof(float), parts[i].n, f) == parts[i].n;
    /* freq_cis_real and freq_cis_imag, [seq_len][head_size / 2] each, unused */
    float zero = 0.0f;
    for (size_t i = 0; ok && i < 2 * (size_t)c->seq_len * half; i++)
        ok = fwrite(&zero, sizeof zero, 1, f) == 1;
    if (ok && !c->tied)
        ok = fwrite(m->wcls, sizeof(float), vocab * dim, f) == vocab * dim;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* ---- Hugging Face folder ------------------------------------------------- */

struct hf_tensor {
    char name[96];
    const float *data;
    size_t rows, cols;   /* rows 0: a 1-D tensor of cols */
    size_t heads;        /* > 0: write rows in HF rotate-half order per head */
    int vector;          /* 1-D tensor of rows elements (cols 1): a bias, permuted by heads */
};

/* Our row stored at HF row r: per head, HF row j < half holds our row 2j,
 * HF row half + j holds our row 2j + 1 (the inverse of the exporter's unpermute). */
static size_t our_row(const struct hf_tensor *t, size_t r)
{
    if (!t->heads)
        return r;
    size_t hd = t->rows / t->heads, half = hd / 2, i = r % hd;
    return r - i + 2 * (i % half) + i / half;
}

/* The q/k/v biases of layer l (q/k in rotate-half order like their rows). */
static size_t bias_tensors(const struct synth_model *m, size_t l, struct hf_tensor *out)
{
    const struct synth_config *c = &m->cfg;
    size_t dim = (size_t)c->dim, kv_dim = dim / (size_t)c->n_heads * (size_t)c->n_kv_heads;
    const struct {
        const char *suffix;
        const float *base;
        size_t n, heads;
    } b[] = {
        {"self_attn.q_proj.bias", m->bq + l * dim, dim, (size_t)c->n_heads},
        {"self_attn.k_proj.bias", m->bk + l * kv_dim, kv_dim, (size_t)c->n_kv_heads},
        {"self_attn.v_proj.bias", m->bv + l * kv_dim, kv_dim, 0},
    };
    for (size_t k = 0; k < 3; k++) {
        struct hf_tensor *t = &out[k];
        snprintf(t->name, sizeof t->name, "model.layers.%zu.%s", l, b[k].suffix);
        t->data = b[k].base;
        t->rows = b[k].n;
        t->cols = 1;
        t->heads = b[k].heads;
        t->vector = 1;
    }
    return 3;
}

static size_t hf_tensor_list(const struct synth_model *m, struct hf_tensor *out)
{
    const struct synth_config *c = &m->cfg;
    size_t dim = (size_t)c->dim, hidden = (size_t)c->hidden_dim;
    size_t kv_dim = dim / (size_t)c->n_heads * (size_t)c->n_kv_heads, n = 0;
    out[n++] = (struct hf_tensor){"model.embed_tokens.weight", m->token_embd,
                                  (size_t)c->vocab_size, dim, 0, 0};
    for (size_t l = 0; l < (size_t)c->n_layers; l++) {
        const struct {
            const char *suffix;
            const float *base;
            size_t rows, cols, heads;
        } per_layer[] = {
            {"input_layernorm.weight", m->attn_norm + l * dim, 0, dim, 0},
            {"self_attn.q_proj.weight", m->wq + l * dim * dim, dim, dim, (size_t)c->n_heads},
            {"self_attn.k_proj.weight", m->wk + l * kv_dim * dim, kv_dim, dim,
             (size_t)c->n_kv_heads},
            {"self_attn.v_proj.weight", m->wv + l * kv_dim * dim, kv_dim, dim, 0},
            {"self_attn.o_proj.weight", m->wo + l * dim * dim, dim, dim, 0},
            {"post_attention_layernorm.weight", m->ffn_norm + l * dim, 0, dim, 0},
            {"mlp.gate_proj.weight", m->w_gate + l * hidden * dim, hidden, dim, 0},
            {"mlp.up_proj.weight", m->w_up + l * hidden * dim, hidden, dim, 0},
            {"mlp.down_proj.weight", m->w_down + l * dim * hidden, dim, hidden, 0},
        };
        for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++) {
            struct hf_tensor *t = &out[n++];
            snprintf(t->name, sizeof t->name, "model.layers.%zu.%s", l, per_layer[k].suffix);
            t->data = per_layer[k].base;
            t->rows = per_layer[k].rows;
            t->cols = per_layer[k].cols;
            t->heads = per_layer[k].heads;
        }
        if (m->bq)
            n += bias_tensors(m, l, out + n);
    }
    out[n++] = (struct hf_tensor){"model.norm.weight", m->output_norm, 0, dim, 0, 0};
    if (!c->tied)
        out[n++] = (struct hf_tensor){"lm_head.weight", m->wcls, (size_t)c->vocab_size, dim, 0,
                                      0};
    return n;
}

static size_t elems(const struct hf_tensor *t)
{
    return (t->rows ? t->rows : 1) * t->cols;
}

/* Writes tensors [first, last) as one safetensors file. */
static int write_safetensors(const char *path, const struct hf_tensor *ts, size_t first,
                             size_t last, int bf16)
{
    size_t esize = bf16 ? 2 : 4, offset = 0, hdr_len = 0;
    char *hdr = NULL;
    FILE *h = open_memstream(&hdr, &hdr_len);
    if (!h)
        return -1;
    fprintf(h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = first; i < last; i++) {
        const struct hf_tensor *t = &ts[i];
        size_t n = elems(t) * esize;
        fprintf(h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":", t->name, bf16 ? "BF16" : "F32");
        if (t->vector)
            fprintf(h, "[%zu]", t->rows);
        else if (t->rows)
            fprintf(h, "[%zu,%zu]", t->rows, t->cols);
        else
            fprintf(h, "[%zu]", t->cols);
        fprintf(h, ",\"data_offsets\":[%zu,%zu]}", offset, offset + n);
        offset += n;
    }
    fprintf(h, "}");
    while (ftell(h) % 8)
        fputc(' ', h);
    if (fclose(h) != 0) {
        free(hdr);
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(hdr);
        return -1;
    }
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (unsigned char)((uint64_t)hdr_len >> (8 * i));
    int ok = fwrite(len_le, 8, 1, f) == 1 && fwrite(hdr, 1, hdr_len, f) == hdr_len;
    free(hdr);
    for (size_t i = first; ok && i < last; i++) {
        const struct hf_tensor *t = &ts[i];
        size_t rows = t->rows ? t->rows : 1;
        for (size_t r = 0; ok && r < rows; r++) {
            const float *row = t->data + our_row(t, r) * t->cols;
            for (size_t j = 0; ok && j < t->cols; j++) {
                if (bf16) {
                    uint16_t b = synth_to_bf16(row[j]);
                    unsigned char le[2] = {(unsigned char)b, (unsigned char)(b >> 8)};
                    ok = fwrite(le, 2, 1, f) == 1;
                } else {
                    ok = fwrite(&row[j], 4, 1, f) == 1; /* test hosts are little-endian */
                }
            }
        }
    }
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* The keys that differ between the architectures, as their configs write
 * them (transformers LlamaConfig, MistralConfig, Qwen2Config). */
static void write_variant_keys(FILE *f, const struct synth_variant *c, int n_layers)
{
    const char *arch = c->architecture ? c->architecture : "LlamaForCausalLM";
    int qwen2 = !strcmp(arch, "Qwen2ForCausalLM");
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", arch,
            qwen2 ? "qwen2" : !strcmp(arch, "MistralForCausalLM") ? "mistral" : "llama");
    if (c->rope_factor > 0)
        fprintf(f, "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": %.9g, "
                "\"low_freq_factor\": %.9g, \"high_freq_factor\": %.9g, "
                "\"original_max_position_embeddings\": %d},\n", (double)c->rope_factor,
                (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor,
                c->rope_orig_max_seq_len);
    else
        fprintf(f, "  \"rope_scaling\": null,\n");
    if (c->sliding_window > 0)
        fprintf(f, "  \"sliding_window\": %d,\n", c->sliding_window);
    else
        fprintf(f, "  \"sliding_window\": null,\n");
    /* Qwen2Config has no attention_bias: its attention always has biases. */
    if (qwen2)
        fprintf(f, "  \"use_sliding_window\": false,\n  \"max_window_layers\": %d,\n",
                n_layers);
    else
        fprintf(f, "  \"attention_bias\": %s,\n", c->qkv_bias ? "true" : "false");
}

static int write_config(const struct synth_model *m, const char *dir, const char *dtype)
{
    const struct synth_config *c = &m->cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    write_variant_keys(f, &m->var, c->n_layers);
    /* %.9g prints a float so that it reads back as the same float. */
    fprintf(f,
            "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
            "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
            "  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n"
            "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %.9g,\n"
            "  \"rope_theta\": %.9g,\n"
            "  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"silu\",\n"
            "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
            "  \"torch_dtype\": \"%s\"\n}\n",
            c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
            c->seq_len, (double)c->norm_eps, (double)c->rope_theta, c->tied ? "true" : "false",
            strcmp(dtype, "BF16") ? "float32" : "bfloat16");
    return fclose(f) == 0 ? 0 : -1;
}

static int write_index(const char *dir, const struct hf_tensor *ts, size_t n, size_t split,
                       size_t esize)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += elems(&ts[i]) * esize;
    fprintf(f, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {", total);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n    \"%s\": \"model-0000%d-of-00002.safetensors\"", i ? "," : "",
                ts[i].name, i < split ? 1 : 2);
    fprintf(f, "\n  }\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

static int copy_file(const char *from, const char *to)
{
    size_t n;
    char *data = test_read_file(from, &n);
    if (!data)
        return -1;
    int rc = test_write_file(to, data, n);
    free(data);
    return rc;
}

int synth_write_hf(const struct synth_model *m, const char *dir, const char *dtype, int n_shards,
                   const char *tokenizer_model_path)
{
    int bf16 = !strcmp(dtype, "BF16");
    if ((!bf16 && strcmp(dtype, "F32")) || (n_shards != 1 && n_shards != 2))
        return -1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    size_t max = 3 + 12 * (size_t)m->cfg.n_layers;
    struct hf_tensor *ts = calloc(max, sizeof *ts);
    if (!ts)
        return -1;
    size_t n = hf_tensor_list(m, ts), split = n_shards == 2 ? n / 2 : n;
    char path[4096];
    int rc = write_config(m, dir, dtype);
    if (rc == 0 && n_shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = write_safetensors(path, ts, 0, n, bf16);
    } else if (rc == 0) {
        snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
        rc = write_safetensors(path, ts, 0, split, bf16);
        snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
        if (rc == 0)
            rc = write_safetensors(path, ts, split, n, bf16);
        if (rc == 0)
            rc = write_index(dir, ts, n, split, bf16 ? 2 : 4);
    }
    if (rc == 0 && tokenizer_model_path) {
        snprintf(path, sizeof path, "%s/tokenizer.model", dir);
        rc = copy_file(tokenizer_model_path, path);
    }
    free(ts);
    return rc;
}
