/* tests/test_hf.c - safetensors headers (exporter/safetensors.c), the Hugging
 * Face folder reader (exporter/hf.c) on synthetic checkpoints, and the
 * tokenizer.json reader (exporter/tokenizer_json.c).
 *
 * Folders come from tests/synth.c (real weights) or from write_zero_st below
 * (any tensor set, zero data) so that every refusal can be provoked; every
 * refusal must name the field, tensor or file at fault. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "synth.h"
#include "../exporter/safetensors.h"
#include "../exporter/source.h"
#include "../chat.h"
#include "../tokenizer.h"

/* ---- helpers ------------------------------------------------------------- */

static char *tmp_dir(const char *name)
{
    char *dir = test_path(name);
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir) >= 0 && system(cmd) != 0)
        CHECK(0, "could not create %s", dir);
    free(cmd);
    return dir;
}

static char *join(const char *dir, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        exit(2);
    return p;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *p = join(dir, name);
    CHECK(test_write_file(p, text, strlen(text)) == 0, "cannot write %s", p);
    free(p);
}

static void remove_file(const char *dir, const char *name)
{
    char *p = join(dir, name);
    unlink(p);
    free(p);
}

static uint64_t file_size(const char *dir, const char *name)
{
    char *p = join(dir, name);
    struct stat st;
    uint64_t n = stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
    free(p);
    return n;
}

/* Replaces the first occurrence of `from` in a file by `to` (same length). */
static void patch_file(const char *dir, const char *name, const char *from, const char *to)
{
    char *p = join(dir, name);
    size_t n;
    char *data = test_read_file(p, &n);
    char *hit = data ? memmem(data, n, from, strlen(from)) : NULL;
    CHECK(hit && strlen(from) == strlen(to), "cannot patch \"%s\" in %s", from, p);
    if (hit) {
        memcpy(hit, to, strlen(to));
        test_write_file(p, data, n);
    }
    free(data);
    free(p);
}

static const struct synth_config base_cfg = {
    .dim = 64, .hidden_dim = 96, .n_layers = 2, .n_heads = 8, .n_kv_heads = 4,
    .vocab_size = 512, .seq_len = 128, .tied = 0, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
    .seed = 7,
};

#define TOK512 "tests/data/tok512.model"

/* Expects hf_read(dir) to fail with a message holding both needles. */
static void expect_refusal(const char *dir, const char *needle1, const char *needle2,
                           const char *what)
{
    struct source src;
    char err[HEARTH_ERR_BYTES] = "";
    int rc = hf_read(dir, &src, err);
    CHECK(rc < 0, "%s: accepted", what);
    if (rc == 0) {
        source_free(&src);
        return;
    }
    CHECK(strstr(err, needle1) && (!needle2 || strstr(err, needle2)),
          "%s: message \"%s\" should mention \"%s\"%s%s%s", what, err, needle1,
          needle2 ? " and \"" : "", needle2 ? needle2 : "", needle2 ? "\"" : "");
    CHECK(src.n_fds == 0 && !src.tensors, "%s: source not released after failure", what);
}

/* ---- config.json written key by key -------------------------------------- */

static const char *const base_config[][2] = {
    {"architectures", "[\"LlamaForCausalLM\"]"}, {"model_type", "\"llama\""},
    {"hidden_size", "64"}, {"intermediate_size", "96"}, {"num_hidden_layers", "2"},
    {"num_attention_heads", "8"}, {"num_key_value_heads", "4"}, {"vocab_size", "512"},
    {"max_position_embeddings", "128"}, {"rms_norm_eps", "1e-05"}, {"rope_theta", "10000.0"},
    {"tie_word_embeddings", "false"}, {"hidden_act", "\"silu\""}, {"bos_token_id", "1"},
    {"eos_token_id", "2"},
};
#define N_BASE_CONFIG (sizeof base_config / sizeof base_config[0])

/* Writes dir/config.json: base_config with `key` set to `value` (NULL
 * value deletes it; an unknown key is added). */
static void write_config(const char *dir, const char *key, const char *value)
{
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text, "{");
    int first = 1, found = 0;
    for (size_t i = 0; i < N_BASE_CONFIG; i++) {
        const char *v = base_config[i][1];
        if (key && !strcmp(key, base_config[i][0])) {
            found = 1;
            v = value;
        }
        if (!v)
            continue;
        n += (size_t)snprintf(text + n, sizeof text - n, "%s\n  \"%s\": %s", first ? "" : ",",
                              base_config[i][0], v);
        first = 0;
    }
    if (key && !found && value)
        n += (size_t)snprintf(text + n, sizeof text - n, ",\n  \"%s\": %s", key, value);
    snprintf(text + n, sizeof text - n, "\n}\n");
    write_text(dir, "config.json", text);
}

/* ---- safetensors files with any tensor set and zero data ----------------- */

struct zt {
    char name[96];
    const char *dtype; /* NULL: F32 */
    int n_dims;
    uint64_t shape[2];
};

static uint32_t zt_elem(const char *dtype)
{
    if (!dtype || !strcmp(dtype, "F32"))
        return 4;
    return !strcmp(dtype, "I8") ? 1 : 2;
}

static void write_zero_st(const char *dir, const char *name, const struct zt *ts, size_t n)
{
    char *hdr = NULL;
    size_t hdr_len = 0;
    FILE *h = open_memstream(&hdr, &hdr_len);
    uint64_t off = 0;
    fprintf(h, "{");
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = zt_elem(ts[i].dtype);
        for (int d = 0; d < ts[i].n_dims; d++)
            bytes *= ts[i].shape[d];
        fprintf(h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", ts[i].name,
                ts[i].dtype ? ts[i].dtype : "F32");
        for (int d = 0; d < ts[i].n_dims; d++)
            fprintf(h, "%s%llu", d ? "," : "", (unsigned long long)ts[i].shape[d]);
        fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                (unsigned long long)(off + bytes));
        off += bytes;
    }
    fprintf(h, "}");
    fclose(h);
    char *path = join(dir, name);
    FILE *f = fopen(path, "wb");
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)hdr_len >> (8 * i));
    fwrite(len, 8, 1, f);
    fwrite(hdr, 1, hdr_len, f);
    char zero[4096] = {0};
    for (uint64_t done = 0; done < off; done += sizeof zero)
        fwrite(zero, 1, off - done < sizeof zero ? off - done : sizeof zero, f);
    fclose(f);
    free(hdr);
    free(path);
}

/* The tensors of base_cfg (tied: no lm_head) in a zt list; returns count. */
static size_t base_tensors(struct zt *ts, int tied)
{
    size_t n = 0;
    ts[n++] = (struct zt){"model.embed_tokens.weight", NULL, 2, {512, 64}};
    for (int l = 0; l < 2; l++) {
        static const struct { const char *s; int nd; uint64_t r, c; } per[] = {
            {"input_layernorm.weight", 1, 64, 0}, {"self_attn.q_proj.weight", 2, 64, 64},
            {"self_attn.k_proj.weight", 2, 32, 64}, {"self_attn.v_proj.weight", 2, 32, 64},
            {"self_attn.o_proj.weight", 2, 64, 64}, {"post_attention_layernorm.weight", 1, 64, 0},
            {"mlp.gate_proj.weight", 2, 96, 64}, {"mlp.up_proj.weight", 2, 96, 64},
            {"mlp.down_proj.weight", 2, 64, 96},
        };
        for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
            struct zt *t = &ts[n++];
            *t = (struct zt){"", NULL, per[k].nd, {per[k].r, per[k].c}};
            snprintf(t->name, sizeof t->name, "model.layers.%d.%s", l, per[k].s);
        }
    }
    ts[n++] = (struct zt){"model.norm.weight", NULL, 1, {64, 0}};
    if (!tied)
        ts[n++] = (struct zt){"lm_head.weight", NULL, 2, {512, 64}};
    return n;
}

static struct zt *find_zt(struct zt *ts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ts[i].name, name))
            return &ts[i];
    return NULL;
}

/* A folder with base config, tok512 and the given tensors in model.safetensors. */
static char *zero_folder(const char *name, const struct zt *ts, size_t n, const char *key,
                         const char *value)
{
    char *dir = tmp_dir(name);
    write_config(dir, key, value);
    write_zero_st(dir, "model.safetensors", ts, n);
    char *tok = join(dir, "tokenizer.model");
    size_t len;
    char *data = test_read_file(TOK512, &len);
    CHECK(data && test_write_file(tok, data, len) == 0, "cannot copy %s", TOK512);
    free(data);
    free(tok);
    return dir;
}

/* ---- safetensors --------------------------------------------------------- */

/* Writes u64 n_header (as given, may lie), the header text, then n_data bytes. */
static char *write_raw_st(const char *name, uint64_t n_header, const char *header, size_t n_data)
{
    char *path = test_path(name);
    size_t hl = strlen(header), total = 8 + hl + n_data;
    unsigned char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(n_header >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < n_data; i++)
        buf[8 + hl + i] = (unsigned char)i;
    test_write_file(path, buf, total);
    free(buf);
    return path;
}

static void test_safetensors_valid(void)
{
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                      "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]},"
                      "\"e\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[40,40]}}";
    char *path = write_raw_st("ok.safetensors", strlen(hdr), hdr, 40);
    struct st_file f;
    char err[HEARTH_ERR_BYTES];
    CHECK(st_open(&f, path, err) == 0, "valid file refused: %s", err);
    if (f.header) {
        CHECK(f.n_tensors == 4, "%u tensors", f.n_tensors);
        const struct st_tensor *b = st_find(&f, "b"), *s = st_find(&f, "s"), *e = st_find(&f, "e");
        CHECK(b && b->dtype == ST_BF16 && b->n_dims == 1 && b->shape[0] == 4 &&
              b->offset == 8 + strlen(hdr) + 24 && b->n_bytes == 8,
              "tensor b described wrongly (offset %llu)", b ? (unsigned long long)b->offset : 0);
        CHECK(s && s->n_dims == 0 && s->n_elems == 1 && s->n_bytes == 8, "scalar tensor");
        CHECK(e && e->n_elems == 0 && e->n_bytes == 0, "empty tensor");
        CHECK(!st_find(&f, "c") && !st_find(&f, "__metadata__"), "absent names found");
        CHECK(st_dtype_to_hearth(ST_BF16) == HEARTH_BF16 &&
              st_dtype_to_hearth(ST_F32) == HEARTH_F32 &&
              st_dtype_to_hearth(ST_F16) == HEARTH_F16 &&
              st_dtype_to_hearth(ST_I64) == UINT32_MAX, "dtype mapping");
        /* the described bytes are where the header says */
        unsigned char got[8];
        CHECK(pread(f.fd, got, 8, (off_t)b->offset) == 8 && got[0] == 24 && got[7] == 31,
              "data of b read from the wrong place");
        int fd = st_take_fd(&f);
        st_close(&f);
        CHECK(pread(fd, got, 1, 0) == 1, "st_close closed a taken descriptor");
        close(fd);
    }
    free(path);
}

struct st_bad {
    const char *header;
    long n_header; /* -1: the header's length */
    size_t n_data;
    const char *needle1, *needle2;
};

static void test_safetensors_invalid(void)
{
    static const struct st_bad cases[] = {
        {"{}", 1000, 0, "runs past the end", NULL},
        {"{}", 200000000, 0, "exceeds", "limit"},
        {"{\"a\":", -1, 0, "bad", "at byte 5"},
        {"[1, 2]", -1, 0, "must be a JSON object", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 4,
         "\"a\"", "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,4]}}", -1, 16,
         "\"a\"", "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8,
         "\"a\"", "needs 3 x 4"},
        {"{\"a\":{\"dtype\":\"F7\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8,
         "unknown dtype \"F7\"", "\"a\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]}}", -1, 8,
         "shape[0]", "\"a\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", -1, 8,
         "shape[0]", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}", -1, 8, "overflows", "\"a\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", -1, 8,
         "data_offsets", NULL},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "\"dtype\" is missing", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12,
         "overlap", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8,
         "duplicate", NULL},
        {"{\"__metadata__\":{\"k\":1}}", -1, 0, "__metadata__", NULL},
        {"{\"a\":3}", -1, 0, "\"a\"", "object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct st_bad *c = &cases[i];
        uint64_t n = c->n_header < 0 ? strlen(c->header) : (uint64_t)c->n_header;
        char *path = write_raw_st("bad.safetensors", n, c->header, c->n_data);
        struct st_file f;
        char err[HEARTH_ERR_BYTES] = "";
        int rc = st_open(&f, path, err);
        CHECK(rc < 0, "case %zu (%s) accepted", i, c->header);
        if (rc == 0)
            st_close(&f);
        CHECK(strstr(err, path) && strstr(err, c->needle1) && (!c->needle2 ||
                                                               strstr(err, c->needle2)),
              "case %zu: message \"%s\" should name the file, \"%s\" and \"%s\"", i, err,
              c->needle1, c->needle2 ? c->needle2 : "");
        free(path);
    }
    char *path = test_path("short.safetensors");
    test_write_file(path, "\x02\0\0", 3);
    struct st_file f;
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(st_open(&f, path, err) < 0 && strstr(err, "too short"), "3-byte file: %s", err);
    free(path);
}

/* ---- hf_read on synthetic checkpoints ------------------------------------ */

static float bf16_bits_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Reads tensor t (F32 or BF16) and compares it with `want`, given in
 * hearth's order (adjacent rotary pairs). Output row 2j + p of a head comes
 * from source row p * head_dim/2 + j (FACTS.md, the inverse HF permutation). */
static void check_tensor_data(const struct src_tensor *t, const float *want)
{
    uint64_t n = t->rows * t->cols, elem = t->type == HEARTH_BF16 ? 2 : 4;
    unsigned char *raw = malloc(n * elem);
    CHECK(pread(t->fd, raw, n * elem, (off_t)t->offset) == (ssize_t)(n * elem),
          "%s: cannot read %llu bytes", t->name, (unsigned long long)(n * elem));
    uint64_t vec = t->rows == 1, len = vec ? t->cols : t->rows, inner = vec ? 1 : t->cols;
    int bad = 0;
    for (uint64_t r = 0; r < len; r++) {
        uint64_t src = r;
        if (t->unpermute_heads) {
            uint64_t hd = len / t->unpermute_heads, i = r % hd;
            src = r - i + (i % 2) * (hd / 2) + i / 2;
        }
        for (uint64_t c = 0; c < inner; c++) {
            uint64_t at = src * inner + c;
            float got;
            if (elem == 2)
                got = bf16_bits_to_f32((uint16_t)(raw[2 * at] | raw[2 * at + 1] << 8));
            else
                memcpy(&got, raw + 4 * at, 4);
            bad += got != want[r * inner + c];
        }
    }
    CHECK(bad == 0, "%s: %d of %llu values differ from the synthetic weights", t->name, bad,
          (unsigned long long)n);
    free(raw);
}

static const struct src_tensor *find_tensor(const struct source *src, const char *name)
{
    for (uint32_t i = 0; i < src->n_tensors; i++)
        if (!strcmp(src->tensors[i].name, name))
            return &src->tensors[i];
    return NULL;
}

/* Checks names, order, shapes and unpermute_heads against base_cfg. */
static void check_tensor_list(const struct source *src, const struct synth_config *c)
{
    static const char *const per[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                      "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
    uint64_t dim = (uint64_t)c->dim, kv = dim / (uint64_t)c->n_heads * (uint64_t)c->n_kv_heads;
    uint64_t hid = (uint64_t)c->hidden_dim;
    const uint64_t shape[9][2] = {{1, dim}, {dim, dim}, {kv, dim}, {kv, dim}, {dim, dim},
                                  {1, dim}, {hid, dim}, {hid, dim}, {dim, hid}};
    const uint32_t heads[9] = {0, (uint32_t)c->n_heads, (uint32_t)c->n_kv_heads, 0, 0, 0, 0, 0, 0};
    uint32_t want_n = 2 + 9 * (uint32_t)c->n_layers + !c->tied;
    CHECK(src->n_tensors == want_n, "%u tensors, expected %u", src->n_tensors, want_n);
    if (src->n_tensors != want_n)
        return;
    const struct src_tensor *t = src->tensors;
    CHECK(!strcmp(t[0].name, "token_embd.weight") && t[0].rows == (uint64_t)c->vocab_size &&
          t[0].cols == dim && !t[0].unpermute_heads, "token_embd: %s [%llu, %llu]", t[0].name,
          (unsigned long long)t[0].rows, (unsigned long long)t[0].cols);
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < 9; k++) {
            const struct src_tensor *x = &t[1 + 9 * l + k];
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, per[k]);
            CHECK(!strcmp(x->name, name) && x->rows == shape[k][0] && x->cols == shape[k][1] &&
                  x->unpermute_heads == heads[k],
                  "tensor %d: %s [%llu, %llu] heads %u, expected %s [%llu, %llu] heads %u",
                  1 + 9 * l + k, x->name, (unsigned long long)x->rows,
                  (unsigned long long)x->cols, x->unpermute_heads, name,
                  (unsigned long long)shape[k][0], (unsigned long long)shape[k][1], heads[k]);
        }
    }
    const struct src_tensor *on = &t[1 + 9 * c->n_layers];
    CHECK(!strcmp(on->name, "output_norm.weight") && on->rows == 1 && on->cols == dim,
          "output_norm: %s", on->name);
    if (!c->tied)
        CHECK(!strcmp(on[1].name, "output.weight") && on[1].rows == (uint64_t)c->vocab_size,
              "output: %s", on[1].name);
}

static void check_synth_read(const char *dtype, int n_shards, int tied)
{
    struct synth_config cfg = base_cfg;
    cfg.tied = tied;
    int bf16 = !strcmp(dtype, "BF16");
    struct synth_model *m = synth_create(&cfg, bf16);
    char name[64];
    snprintf(name, sizeof name, "hf_%s_%d_%d", dtype, n_shards, tied);
    char *dir = tmp_dir(name);
    CHECK(m && synth_write_hf(m, dir, dtype, n_shards, TOK512) == 0, "synth_write_hf %s", name);
    struct source src;
    char err[HEARTH_ERR_BYTES] = "";
    int rc = hf_read(dir, &src, err);
    CHECK(rc == 0, "%s: hf_read: %s", name, err);
    if (rc == 0) {
        const struct hearth_header *h = &src.cfg;
        CHECK(h->dim == 64 && h->hidden_dim == 96 && h->n_layers == 2 && h->n_heads == 8 &&
              h->n_kv_heads == 4 && h->head_dim == 8 && h->vocab_size == 512 &&
              h->max_seq_len == 128, "%s: shape fields", name);
        CHECK(h->rope_theta == 10000.0f && h->rope_scaling == HEARTH_ROPE_SCALING_NONE &&
              h->norm_eps == 1e-5f && h->sliding_window == 0 && h->chat_template == 0,
              "%s: rope/norm fields (theta %g eps %g)", name, h->rope_theta, h->norm_eps);
        CHECK(h->flags == (tied ? HEARTH_FLAG_TIED_EMBEDDINGS : 0u), "%s: flags %#x", name,
              h->flags);
        CHECK(h->bos_id == 1 && h->eos_id == 2 && h->n_stop_ids == 1 && h->stop_ids[0] == 2,
              "%s: special ids bos %u eos %u (%u stop ids)", name, h->bos_id, h->eos_id,
              h->n_stop_ids);
        CHECK(src.vocab.hdr.n_tokens == 512 && src.vocab.hdr.type == HEARTH_TOKENIZER_SPM &&
              src.vocab.bos_id == 1 && src.vocab.eos_id == 2, "%s: vocabulary", name);
        CHECK(src.n_fds == n_shards, "%s: %d descriptors for %d shards", name, src.n_fds,
              n_shards);
        uint64_t bytes = n_shards == 1 ? file_size(dir, "model.safetensors")
                                       : file_size(dir, "model-00001-of-00002.safetensors") +
                                         file_size(dir, "model-00002-of-00002.safetensors");
        CHECK(src.input_bytes == bytes, "%s: input_bytes %llu, files hold %llu", name,
              (unsigned long long)src.input_bytes, (unsigned long long)bytes);
        check_tensor_list(&src, &cfg);
        uint32_t want_type = bf16 ? HEARTH_BF16 : HEARTH_F32;
        int wrong_type = 0;
        for (uint32_t i = 0; i < src.n_tensors; i++)
            wrong_type += src.tensors[i].type != want_type;
        CHECK(wrong_type == 0, "%s: %d tensors not of type %s", name, wrong_type, dtype);
        size_t q = 64 * 64, k = 32 * 64;
        const struct { const char *name; const float *want; } data[] = {
            {"token_embd.weight", m->token_embd},
            {"blk.1.attn_q.weight", m->wq + q},
            {"blk.1.attn_k.weight", m->wk + k},
            {"blk.0.attn_k.weight", m->wk},
            {"blk.0.attn_v.weight", m->wv},
            {"blk.1.ffn_norm.weight", m->ffn_norm + 64},
            {"blk.1.ffn_down.weight", m->w_down + 64 * 96},
            {"blk.0.ffn_up.weight", m->w_up},
            {"output_norm.weight", m->output_norm},
            {"output.weight", tied ? NULL : m->wcls},
        };
        for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) {
            const struct src_tensor *t = find_tensor(&src, data[i].name);
            CHECK(!t == !data[i].want, "%s: tensor %s %s", name, data[i].name,
                  t ? "unexpected" : "missing");
            if (t && data[i].want)
                check_tensor_data(t, data[i].want);
        }
        source_free(&src);
    }
    synth_free(m);
    free(dir);
}

static void test_hf_read_synth(void)
{
    check_synth_read("F32", 1, 0);
    check_synth_read("F32", 2, 0);
    check_synth_read("BF16", 1, 0);
    check_synth_read("BF16", 2, 0);
    check_synth_read("F32", 1, 1);
    check_synth_read("BF16", 2, 1);
}

/* The synthetic llama2.c checkpoint holds the same numbers as the HF one. */
static void test_synth_llama2c(void)
{
    struct synth_config cfg = base_cfg;
    struct synth_model *m = synth_create(&cfg, 0);
    char *path = test_path("synth.bin");
    CHECK(m && synth_write_llama2c(m, path) == 0, "synth_write_llama2c");
    size_t n;
    char *data = test_read_file(path, &n);
    size_t floats = 512 * 64 + 2 * 64 + 2 * 64 * 64 + 2 * 2 * 32 * 64 + 2 * 64 * 64 + 2 * 64 +
                    3 * 2 * 96 * 64 + 64 + 2 * 128 * 4 + 512 * 64;
    CHECK(data && n == 28 + 4 * floats, "llama2.c file is %zu bytes, expected %zu", n,
          28 + 4 * floats);
    if (data && n == 28 + 4 * floats) {
        int32_t h[7];
        memcpy(h, data, sizeof h);
        CHECK(h[0] == 64 && h[1] == 96 && h[2] == 2 && h[3] == 8 && h[4] == 4 && h[5] == -512 &&
              h[6] == 128, "llama2.c header (vocab %d: negative means untied)", h[5]);
        float first, wq0, cls_last;
        memcpy(&first, data + 28, 4);
        memcpy(&wq0, data + 28 + 4 * (512 * 64 + 2 * 64), 4);
        memcpy(&cls_last, data + n - 4, 4);
        CHECK(first == m->token_embd[0] && wq0 == m->wq[0] &&
              cls_last == m->wcls[512 * 64 - 1], "llama2.c arrays out of place");
    }
    free(data);
    struct synth_model *again = synth_create(&cfg, 0);
    CHECK(again && !memcmp(again->w_down, m->w_down, 2 * 64 * 96 * sizeof(float)),
          "same seed, different weights");
    cfg.seed = 8;
    struct synth_model *other = synth_create(&cfg, 0);
    CHECK(other && memcmp(other->w_down, m->w_down, 2 * 64 * 96 * sizeof(float)),
          "different seeds, same weights");
    int norms_ok = 1;
    for (int i = 0; i < 128; i++)
        norms_ok &= m->attn_norm[i] > 0.4f && m->attn_norm[i] < 1.6f;
    CHECK(norms_ok, "norm weights are not near 1");
    synth_free(m);
    synth_free(again);
    synth_free(other);
    free(path);
}

/* ---- config.json refusals and variants ----------------------------------- */

/* A synthetic folder of base_cfg (one F32 shard, tok512). */
static char *synth_folder(const char *name, const struct synth_config *cfg, int n_shards)
{
    struct synth_model *m = synth_create(cfg, 0);
    char *dir = tmp_dir(name);
    CHECK(m && synth_write_hf(m, dir, "F32", n_shards, TOK512) == 0, "synth folder %s", name);
    synth_free(m);
    return dir;
}

static void test_hf_config_refusals(void)
{
    char *dir = synth_folder("cfg_bad", &base_cfg, 1);
    static const struct {
        const char *key, *value, *needle1, *needle2;
    } cases[] = {
        {"hidden_size", NULL, "\"hidden_size\" is missing", NULL},
        {"hidden_size", "\"64\"", "\"hidden_size\"", "a string"},
        {"hidden_size", "1000000000", "\"hidden_size\"", "outside"},
        {"num_attention_heads", "7", "num_attention_heads 7", "hidden_size"},
        {"num_key_value_heads", "3", "num_key_value_heads 3", NULL},
        {"architectures", "[\"GemmaForCausalLM\"]", "GemmaForCausalLM", "Qwen2ForCausalLM"},
        {"architectures", "\"LlamaForCausalLM\"", "\"architectures\"", "an array"},
        {"model_type", "\"mistral\"", "model_type", "mistral"},
        {"rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}", "rope_scaling", "linear"},
        {"rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_scaling", "yarn"},
        {"rope_scaling", "{\"rope_type\": \"llama3\", \"low_freq_factor\": 1.0, "
         "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}",
         "rope_scaling", "\"factor\" is missing"},
        {"rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4.0, "
         "\"high_freq_factor\": 1.0, \"original_max_position_embeddings\": 64}",
         "high_freq_factor", "low_freq_factor"},
        {"head_dim", "16", "head_dim 16", NULL},
        {"hidden_act", "\"gelu\"", "hidden_act", "gelu"},
        {"rms_norm_eps", "-1e-5", "rms_norm_eps", NULL},
        {"rms_norm_eps", NULL, "\"rms_norm_eps\" is missing", NULL},
        {"rope_theta", "0", "rope_theta", NULL},
        {"vocab_size", "0", "\"vocab_size\"", NULL},
        {"max_position_embeddings", "-4", "max_position_embeddings", NULL},
        {"eos_token_id", "600", "eos_token_id", "vocab_size"},
        {"eos_token_id", "[2, 3, 4, 5, 6, 7, 8, 9, 10]", "eos_token_id", "more than 8"},
        {"eos_token_id", "\"2\"", "eos_token_id", NULL},
        {"bos_token_id", "512", "bos_token_id", NULL},
        {"mlp_bias", "true", "mlp_bias", NULL},
        {"sliding_window", "-1", "sliding_window", NULL},
        {"tie_word_embeddings", "1", "tie_word_embeddings", NULL},
        {"intermediate_size", "100", "mlp.gate_proj.weight", "shape [96, 64]"},
        {"num_hidden_layers", "3", "model.layers.2.", "missing"},
        {"num_hidden_layers", "1", "model.layers.1.", "num_hidden_layers is 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_config(dir, cases[i].key, cases[i].value);
        char what[160];
        snprintf(what, sizeof what, "config %s = %s", cases[i].key,
                 cases[i].value ? cases[i].value : "(deleted)");
        expect_refusal(dir, cases[i].needle1, cases[i].needle2, what);
    }
    write_text(dir, "config.json", "{\"hidden_size\": 64,, }");
    expect_refusal(dir, "config.json", "at byte 19", "invalid JSON in config.json");
    write_text(dir, "config.json", "[]");
    expect_refusal(dir, "config.json", "JSON object", "config.json not an object");
    write_config(dir, NULL, NULL);
    write_text(dir, "generation_config.json", "{\"eos_token_id\": [2, 9999]}");
    expect_refusal(dir, "generation_config.json", "9999", "bad generation_config eos");
    write_text(dir, "generation_config.json", "{\"eos_token_id\": ");
    expect_refusal(dir, "generation_config.json", "byte", "invalid generation_config.json");
    remove_file(dir, "generation_config.json");
    remove_file(dir, "config.json");
    expect_refusal(dir, "config.json", "cannot open", "missing config.json");
    free(dir);
}

static void test_hf_config_variants(void)
{
    char *dir = synth_folder("cfg_ok", &base_cfg, 1);
    struct source src;
    char err[HEARTH_ERR_BYTES] = "";
    write_config(dir, "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0, "
                 "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                 "\"original_max_position_embeddings\": 64}");
    CHECK(hf_read(dir, &src, err) == 0, "llama3 rope scaling: %s", err);
    if (!err[0]) {
        const struct hearth_header *h = &src.cfg;
        CHECK(h->rope_scaling == HEARTH_ROPE_SCALING_LLAMA3 && h->rope_factor == 8.0f &&
              h->rope_low_freq_factor == 1.0f && h->rope_high_freq_factor == 4.0f &&
              h->rope_orig_max_seq_len == 64, "llama3 rope fields");
        source_free(&src);
    }
    /* the older key "type" works too; "default" means unscaled */
    write_config(dir, "rope_scaling", "{\"type\": \"default\"}");
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0 && src.cfg.rope_scaling == HEARTH_ROPE_SCALING_NONE,
          "rope_scaling default: %s", err);
    if (!err[0])
        source_free(&src);
    /* eos lists and generation_config.json add stop ids; eos = the first */
    write_config(dir, "eos_token_id", "[5, 2, 5]");
    write_text(dir, "generation_config.json", "{\"bos_token_id\": 1, \"eos_token_id\": [2, 7]}");
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0, "eos list: %s", err);
    if (!err[0]) {
        const struct hearth_header *h = &src.cfg;
        CHECK(h->eos_id == 5 && h->n_stop_ids == 3 && h->stop_ids[0] == 5 &&
              h->stop_ids[1] == 2 && h->stop_ids[2] == 7 && src.vocab.eos_id == 5,
              "stop ids: eos %u, %u ids (%u %u %u)", h->eos_id, h->n_stop_ids, h->stop_ids[0],
              h->stop_ids[1], h->stop_ids[2]);
        source_free(&src);
    }
    remove_file(dir, "generation_config.json");
    /* without ids in config.json the tokenizer's (tok512: bos 1, eos 2) are used */
    write_config(dir, "bos_token_id", "null");
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0 && src.cfg.bos_id == 1, "bos from tokenizer: %s", err);
    if (!err[0])
        source_free(&src);
    write_config(dir, "eos_token_id", NULL);
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0 && src.cfg.eos_id == 2 && src.cfg.n_stop_ids == 1,
          "eos from tokenizer: %s", err);
    if (!err[0])
        source_free(&src);
    /* tied with a stored lm_head: the copy is ignored */
    write_config(dir, "tie_word_embeddings", "true");
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0, "tied with lm_head present: %s", err);
    if (!err[0]) {
        CHECK(src.n_tensors == 20 && !find_tensor(&src, "output.weight") &&
              (src.cfg.flags & HEARTH_FLAG_TIED_EMBEDDINGS), "lm_head ignored when tied");
        source_free(&src);
    }
    write_config(dir, "sliding_window", "4096");
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0 && src.cfg.sliding_window == 4096, "sliding_window: %s",
          err);
    if (!err[0])
        source_free(&src);
    free(dir);

    /* num_key_value_heads defaults to num_attention_heads */
    struct synth_config mha = base_cfg;
    mha.n_kv_heads = 8;
    dir = synth_folder("cfg_mha", &mha, 1);
    write_config(dir, "num_key_value_heads", NULL);
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0 && src.cfg.n_kv_heads == 8, "kv heads default: %s", err);
    if (!err[0]) {
        const struct src_tensor *k = find_tensor(&src, "blk.0.attn_k.weight");
        CHECK(k && k->unpermute_heads == 8 && k->rows == 64, "attn_k with kv = heads");
        source_free(&src);
    }
    free(dir);
}

/* vocab_size above the tokenizer pads; below it refuses. */
static void test_hf_vocab_size(void)
{
    struct synth_config cfg = base_cfg;
    cfg.vocab_size = 520;
    char *dir = synth_folder("vocab520", &cfg, 1);
    struct source src;
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(hf_read(dir, &src, err) == 0, "vocab_size 520 with 512 pieces: %s", err);
    if (!err[0]) {
        const struct vocab *v = &src.vocab;
        CHECK(v->hdr.n_tokens == 520 && src.cfg.vocab_size == 520, "padded to %u",
              v->hdr.n_tokens);
        CHECK(v->hdr.n_tokens == 520 && v->kinds[515] == HEARTH_TOKEN_UNUSED &&
              v->piece_bytes[515] == 12 && !memcmp(v->pieces[515], "<unused_515>", 12) &&
              v->kinds[511] != HEARTH_TOKEN_UNUSED, "padding pieces");
        source_free(&src);
    }
    free(dir);
    cfg.vocab_size = 500;
    dir = synth_folder("vocab500", &cfg, 1);
    expect_refusal(dir, "512 tokens", "vocab_size is 500", "tokenizer larger than vocab_size");
    free(dir);
}

/* ---- shards and tensors -------------------------------------------------- */

static void test_hf_shard_refusals(void)
{
    char *dir = synth_folder("shards", &base_cfg, 2);
    const char *index = "model.safetensors.index.json";
    char *idx_path = join(dir, index);
    size_t n;
    char *good_index = test_read_file(idx_path, &n);
    CHECK(good_index != NULL, "index missing");

    patch_file(dir, index, "\"model.norm.weight\": \"model-00002-of-00002",
               "\"model.norm.weight\": \"model-00001-of-00002");
    expect_refusal(dir, "model.norm.weight", "no such tensor", "index names the wrong shard");
    test_write_file(idx_path, good_index, n);

    patch_file(dir, index, "\"model-00002-of-00002.safetensors\"",
               "\"../00002-of-00002.safetensors\"   ");
    expect_refusal(dir, "plain file name", "../00002", "shard outside the folder");
    test_write_file(idx_path, good_index, n);

    write_text(dir, index, "{\"weight_map\": {\"model.norm.weight\": 3}}");
    expect_refusal(dir, "weight_map", "file name", "shard name not a string");
    write_text(dir, index, "{\"metadata\": {}}");
    expect_refusal(dir, "\"weight_map\" is missing", NULL, "index without weight_map");
    write_text(dir, index, "{\"weight_map\": {}");
    expect_refusal(dir, index, "byte", "index not JSON");
    test_write_file(idx_path, good_index, n);

    /* a shard cut short: its tensors run past the end of the file */
    char *shard2 = join(dir, "model-00002-of-00002.safetensors");
    size_t n2;
    char *data2 = test_read_file(shard2, &n2);
    test_write_file(shard2, data2, n2 * 2 / 3);
    expect_refusal(dir, "model-00002-of-00002.safetensors", "outside", "truncated shard");
    unlink(shard2);
    expect_refusal(dir, "model-00002-of-00002.safetensors", "cannot open", "missing shard");
    test_write_file(shard2, data2, n2);
    free(data2);
    free(shard2);

    remove_file(dir, index);
    expect_refusal(dir, "no model.safetensors", NULL, "no weights at all");
    test_write_file(idx_path, good_index, n);
    remove_file(dir, "tokenizer.model");
    expect_refusal(dir, "no tokenizer.model or tokenizer.json", NULL, "no tokenizer");
    free(good_index);
    free(idx_path);
    free(dir);
}

static void test_hf_tensor_sets(void)
{
    struct zt ts[40];
    size_t n = base_tensors(ts, 0);
    char *dir = zero_folder("zt_base", ts, n, NULL, NULL);
    struct source src;
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(hf_read(dir, &src, err) == 0, "zero-data base folder: %s", err);
    if (!err[0]) {
        check_tensor_list(&src, &base_cfg);
        source_free(&src);
    }
    free(dir);

    /* q/k/v biases: flag, order, 1-D shape, unpermute for q and k */
    struct zt tb[48];
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        tb[nb++] = ts[i];
        int l;
        if (strstr(ts[i].name, "v_proj.weight") && sscanf(ts[i].name, "model.layers.%d.", &l) == 1) {
            static const char *const qkv[] = {"q", "k", "v"};
            for (int k = 0; k < 3; k++) {
                tb[nb] = (struct zt){"", NULL, 1, {k ? 32u : 64u, 0}};
                snprintf(tb[nb].name, sizeof tb[nb].name,
                         "model.layers.%d.self_attn.%s_proj.bias", l, qkv[k]);
                nb++;
            }
        }
    }
    dir = zero_folder("zt_bias", tb, nb, NULL, NULL);
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0, "biases: %s", err);
    if (!err[0]) {
        CHECK(src.cfg.flags & HEARTH_FLAG_QKV_BIAS, "QKV_BIAS flag not set");
        CHECK(src.n_tensors == 27, "%u tensors with biases", src.n_tensors);
        static const char *const order[] = {"blk.1.attn_norm.weight", "blk.1.attn_q.weight",
                                            "blk.1.attn_k.weight", "blk.1.attn_v.weight",
                                            "blk.1.attn_q.bias", "blk.1.attn_k.bias",
                                            "blk.1.attn_v.bias", "blk.1.attn_output.weight"};
        for (int i = 0; i < 8 && src.n_tensors == 27; i++)
            CHECK(!strcmp(src.tensors[13 + i].name, order[i]), "tensor %d is %s, expected %s",
                  13 + i, src.tensors[13 + i].name, order[i]);
        const struct src_tensor *qb = find_tensor(&src, "blk.0.attn_q.bias"),
                                *kb = find_tensor(&src, "blk.0.attn_k.bias"),
                                *vb = find_tensor(&src, "blk.0.attn_v.bias");
        CHECK(qb && qb->rows == 1 && qb->cols == 64 && qb->unpermute_heads == 8, "q bias");
        CHECK(kb && kb->rows == 1 && kb->cols == 32 && kb->unpermute_heads == 4, "k bias");
        CHECK(vb && vb->rows == 1 && vb->cols == 32 && vb->unpermute_heads == 0, "v bias");
        source_free(&src);
    }
    free(dir);

    /* one bias missing */
    struct zt tm[48];
    size_t nm = 0;
    for (size_t i = 0; i < nb; i++)
        if (strcmp(tb[i].name, "model.layers.1.self_attn.v_proj.bias"))
            tm[nm++] = tb[i];
    dir = zero_folder("zt_bias_missing", tm, nm, NULL, NULL);
    expect_refusal(dir, "model.layers.1.self_attn.v_proj.bias", "missing", "missing v bias");
    free(dir);
    /* attention_bias true with no biases at all */
    dir = zero_folder("zt_attn_bias", ts, n, "attention_bias", "true");
    expect_refusal(dir, "model.layers.0.self_attn.q_proj.bias", "missing", "attention_bias");
    free(dir);

    /* o_proj bias, wrong dtype, 2-D norm, inv_freq buffers */
    struct zt tx[41];
    memcpy(tx, ts, n * sizeof *ts);
    tx[n] = (struct zt){"model.layers.1.self_attn.o_proj.bias", NULL, 1, {64, 0}};
    dir = zero_folder("zt_obias", tx, n + 1, NULL, NULL);
    expect_refusal(dir, "o_proj.bias", "not supported", "o_proj bias");
    free(dir);

    memcpy(tx, ts, n * sizeof *ts);
    find_zt(tx, n, "model.layers.0.mlp.up_proj.weight")->dtype = "I8";
    dir = zero_folder("zt_i8", tx, n, NULL, NULL);
    expect_refusal(dir, "model.layers.0.mlp.up_proj.weight", "I8", "I8 tensor");
    free(dir);

    memcpy(tx, ts, n * sizeof *ts);
    *find_zt(tx, n, "model.norm.weight") = (struct zt){"model.norm.weight", NULL, 2, {1, 64}};
    dir = zero_folder("zt_norm2d", tx, n, NULL, NULL);
    expect_refusal(dir, "model.norm.weight", "shape [1, 64] but config.json implies [64]",
                   "2-D norm");
    free(dir);

    memcpy(tx, ts, n * sizeof *ts);
    tx[n] = (struct zt){"model.layers.0.self_attn.rotary_emb.inv_freq", NULL, 1, {4, 0}};
    dir = zero_folder("zt_invfreq", tx, n + 1, NULL, NULL);
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0 && src.n_tensors == 21, "inv_freq ignored: %s", err);
    if (!err[0])
        source_free(&src);
    free(dir);

    /* untied without lm_head */
    dir = zero_folder("zt_nohead", ts, n - 1, NULL, NULL);
    expect_refusal(dir, "lm_head.weight", "missing", "untied without lm_head");
    free(dir);

    /* unknown names and layers beyond num_hidden_layers */
    memcpy(tx, ts, n * sizeof *ts);
    snprintf(find_zt(tx, n, "model.layers.0.mlp.up_proj.weight")->name, sizeof tx[0].name,
             "model.layers.0.mlp.up_proj.weighX");
    dir = zero_folder("zt_unknown", tx, n, NULL, NULL);
    expect_refusal(dir, "unexpected tensor", "up_proj.weighX", "unknown tensor name");
    free(dir);
    memcpy(tx, ts, n * sizeof *ts);
    snprintf(find_zt(tx, n, "model.layers.1.mlp.up_proj.weight")->name, sizeof tx[0].name,
             "model.layers.7.mlp.up_proj.weight");
    dir = zero_folder("zt_layer7", tx, n, NULL, NULL);
    expect_refusal(dir, "layer 7", "num_hidden_layers is 2", "layer out of range");
    free(dir);

    /* a tensor in two shards */
    dir = zero_folder("zt_twice", ts, n, NULL, NULL);
    remove_file(dir, "model.safetensors");
    write_zero_st(dir, "a.safetensors", ts, 10);
    write_zero_st(dir, "b.safetensors", ts + 9, n - 9);
    char idx[8192];
    size_t len = (size_t)snprintf(idx, sizeof idx, "{\"weight_map\": {");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(idx + len, sizeof idx - len, "%s\"%s\": \"%s\"", i ? ", " : "",
                                ts[i].name, i < 10 ? "a.safetensors" : "b.safetensors");
    snprintf(idx + len, sizeof idx - len, "}}");
    write_text(dir, "model.safetensors.index.json", idx);
    expect_refusal(dir, ts[9].name, "appears twice", "tensor in two shards");
    free(dir);
}

/* ---- tokenizer.json ------------------------------------------------------ */

static void put_json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

struct merge_rec {
    uint32_t l, r, id;
    float score;
};

static int merge_order(const void *a, const void *b)
{
    const struct merge_rec *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->l != y->l)
        return x->l < y->l ? -1 : 1;
    return x->r < y->r ? -1 : x->r > y->r;
}

static int find_piece(const struct vocab *v, const char *s, size_t n)
{
    for (uint32_t i = 0; i < v->hdr.n_tokens; i++)
        if (v->piece_bytes[i] == n && !memcmp(v->pieces[i], s, n))
            return (int)i;
    return -1;
}

/* The merges transformers' SentencePieceExtractor derives from a
 * SentencePiece vocabulary: every split of every piece (at character
 * boundaries) into two pieces, best merged-piece score first. */
static size_t spm_merges(const struct vocab *v, struct merge_rec **out)
{
    size_t n = 0, cap = 1024;
    struct merge_rec *m = malloc(cap * sizeof *m);
    for (uint32_t id = 0; id < v->hdr.n_tokens; id++) {
        const char *p = v->pieces[id];
        for (uint32_t k = 1; k < v->piece_bytes[id]; k++) {
            if (((unsigned char)p[k] & 0xc0) == 0x80)
                continue;
            int l = find_piece(v, p, k), r = find_piece(v, p + k, v->piece_bytes[id] - k);
            if (l < 0 || r < 0)
                continue;
            if (n == cap)
                m = realloc(m, (cap *= 2) * sizeof *m);
            m[n++] = (struct merge_rec){(uint32_t)l, (uint32_t)r, id, v->scores[id]};
        }
    }
    qsort(m, n, sizeof *m, merge_order);
    *out = m;
    return n;
}

enum tj_style { TJ_LEGACY, TJ_METASPACE_FIRST, TJ_METASPACE_NEVER };

/* Writes a tokenizer.json for a SentencePiece vocabulary in the shape
 * transformers' LlamaConverter saves (legacy: Prepend + Replace normalizer;
 * otherwise a Metaspace pre-tokenizer). Merges as "a b" strings, or as
 * pairs when `pairs`. Returns the number of merges. */
static size_t write_tokenizer_json(const struct vocab *v, const char *path, enum tj_style style,
                                   int pairs)
{
    struct merge_rec *m;
    size_t n_merges = spm_merges(v, &m);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,\n"
               "\"added_tokens\": [");
    int first = 1;
    for (uint32_t i = 0; i < v->hdr.n_tokens; i++) {
        if (v->kinds[i] != HEARTH_TOKEN_CONTROL && v->kinds[i] != HEARTH_TOKEN_UNKNOWN)
            continue;
        fprintf(f, "%s{\"id\": %u, \"content\": ", first ? "" : ", ", i);
        put_json_str(f, v->pieces[i], v->piece_bytes[i]);
        fprintf(f, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": false, \"special\": true}");
        first = 0;
    }
    fprintf(f, "],\n");
    if (style == TJ_LEGACY)
        fprintf(f, "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
                   "{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}, "
                   "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
                   "\"content\": \"\xe2\x96\x81\"}]},\n\"pre_tokenizer\": null,\n");
    else
        fprintf(f, "\"normalizer\": null,\n\"pre_tokenizer\": {\"type\": \"Metaspace\", "
                   "\"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"%s\", "
                   "\"split\": false},\n", style == TJ_METASPACE_FIRST ? "first" : "never");
    fprintf(f, "\"post_processor\": null,\n\"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
               "{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xe2\x96\x81\"}, "
               "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, "
               "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},\n"
               "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"<unk>\", "
               "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
               "\"fuse_unk\": true, \"byte_fallback\": true,\n\"vocab\": {");
    for (uint32_t i = 0; i < v->hdr.n_tokens; i++) {
        fprintf(f, "%s\n", i ? "," : "");
        put_json_str(f, v->pieces[i], v->piece_bytes[i]);
        fprintf(f, ": %u", i);
    }
    fprintf(f, "},\n\"merges\": [");
    for (size_t i = 0; i < n_merges; i++) {
        const struct merge_rec *r = &m[i];
        fprintf(f, "%s\n", i ? "," : "");
        if (pairs) {
            fputc('[', f);
            put_json_str(f, v->pieces[r->l], v->piece_bytes[r->l]);
            fputc(',', f);
            put_json_str(f, v->pieces[r->r], v->piece_bytes[r->r]);
            fputc(']', f);
        } else {
            char buf[512];
            size_t nl = v->piece_bytes[r->l], nr = v->piece_bytes[r->r];
            memcpy(buf, v->pieces[r->l], nl);
            buf[nl] = ' ';
            memcpy(buf + nl + 1, v->pieces[r->r], nr);
            put_json_str(f, buf, nl + 1 + nr);
        }
    }
    fprintf(f, "]}}\n");
    fclose(f);
    free(m);
    return n_merges;
}

/* Same pieces, kinds, ids and flags; scores order merged pieces as the
 * SentencePiece scores do. */
static void compare_with_spm(const struct vocab *spm, const struct vocab *js, size_t n_merges,
                             uint32_t want_flags, const char *what)
{
    CHECK(js->hdr.n_tokens == spm->hdr.n_tokens && js->hdr.type == HEARTH_TOKENIZER_SPM &&
          js->hdr.flags == want_flags && js->hdr.unk_id == spm->hdr.unk_id &&
          js->bos_id == spm->bos_id && js->eos_id == spm->eos_id && js->hdr.n_merges == 0,
          "%s: header (%u tokens, flags %#x, unk %u, bos %u, eos %u)", what, js->hdr.n_tokens,
          js->hdr.flags, js->hdr.unk_id, js->bos_id, js->eos_id);
    if (js->hdr.n_tokens != spm->hdr.n_tokens)
        return;
    uint32_t n = js->hdr.n_tokens;
    int piece_diff = 0, kind_diff = 0, order_diff = 0, floor_diff = 0, produced = 0;
    char *is_merged = calloc(n, 1);
    struct merge_rec *m;
    size_t nm = spm_merges(spm, &m);
    for (size_t i = 0; i < nm; i++)
        is_merged[m[i].id] = 1;
    free(m);
    CHECK(nm == n_merges, "%s: merge count", what);
    for (uint32_t i = 0; i < n; i++) {
        piece_diff += js->piece_bytes[i] != spm->piece_bytes[i] ||
                      memcmp(js->pieces[i], spm->pieces[i], spm->piece_bytes[i]);
        kind_diff += js->kinds[i] != spm->kinds[i];
        produced += is_merged[i];
        if (!is_merged[i]) {
            floor_diff += js->scores[i] != -1.0f - (float)n_merges;
            continue;
        }
        for (uint32_t j = 0; j < n; j++) {
            if (!is_merged[j] || spm->scores[i] == spm->scores[j])
                continue;
            order_diff += (spm->scores[i] > spm->scores[j]) != (js->scores[i] > js->scores[j]);
        }
    }
    CHECK(piece_diff == 0 && kind_diff == 0, "%s: %d pieces and %d kinds differ", what,
          piece_diff, kind_diff);
    CHECK(produced > 100, "%s: only %d merged pieces: the test says little", what, produced);
    CHECK(order_diff == 0, "%s: %d pairs of merged pieces ordered unlike SentencePiece", what,
          order_diff);
    CHECK(floor_diff == 0, "%s: %d unmerged pieces not at the floor score", what, floor_diff);
    free(is_merged);
}

static void test_tokenizer_json_tok512(void)
{
    struct vocab spm, js;
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(vocab_read_spm_model(TOK512, &spm, err) == 0, "tok512.model: %s", err);
    if (err[0])
        return;
    char *path = test_path("tok512.tokenizer.json");
    static const struct { enum tj_style style; int pairs; const char *name; } styles[] = {
        {TJ_LEGACY, 0, "legacy normalizer, string merges"},
        {TJ_METASPACE_FIRST, 1, "Metaspace first, pair merges"},
        {TJ_METASPACE_NEVER, 0, "Metaspace never"},
    };
    for (size_t s = 0; s < 3; s++) {
        size_t n_merges = write_tokenizer_json(&spm, path, styles[s].style, styles[s].pairs);
        err[0] = 0;
        CHECK(vocab_read_tokenizer_json(path, &js, err) == 0, "%s: %s", styles[s].name, err);
        if (err[0])
            continue;
        uint32_t flags = HEARTH_TOK_BYTE_FALLBACK |
                         (styles[s].style == TJ_METASPACE_NEVER ? 0 : HEARTH_TOK_ADD_DUMMY_PREFIX);
        compare_with_spm(&spm, &js, n_merges, flags, styles[s].name);
        vocab_free(&js);
    }
    CHECK(spm.hdr.flags == (HEARTH_TOK_BYTE_FALLBACK | HEARTH_TOK_ADD_DUMMY_PREFIX),
          "tok512.model flags %#x", spm.hdr.flags);

    /* hf_read falls back to tokenizer.json when there is no tokenizer.model */
    char *dir = synth_folder("hf_tokjson", &base_cfg, 1);
    remove_file(dir, "tokenizer.model");
    char *tj = join(dir, "tokenizer.json");
    write_tokenizer_json(&spm, tj, TJ_LEGACY, 0);
    struct source src;
    err[0] = 0;
    CHECK(hf_read(dir, &src, err) == 0, "hf_read with tokenizer.json: %s", err);
    if (!err[0]) {
        CHECK(src.vocab.hdr.n_tokens == 512 && src.vocab.kinds[300] == spm.kinds[300] &&
              !memcmp(src.vocab.pieces[300], spm.pieces[300], spm.piece_bytes[300]),
              "vocabulary from tokenizer.json");
        source_free(&src);
    }
    /* a byte-level tokenizer.json is refused through hf_read too */
    write_text(dir, "tokenizer.json",
               "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
               "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}}");
    expect_refusal(dir, "byte-level", "tokenizer.json", "byte-level tokenizer in a folder");
    free(tj);
    free(dir);
    vocab_free(&spm);
    free(path);
}

/* A small vocabulary written by hand: merge scores, kinds, added tokens. */
#define SMALL_VOCAB "{\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"\xe2\x96\x81\": 3, \"a\": 4, " \
                    "\"b\": 5, \"ab\": 6, \"\xe2\x96\x81" "a\": 7, \"\xe2\x96\x81" "ab\": 8, " \
                    "\"c\": 9}"
#define SMALL_MERGES "[\"a b\", [\"\xe2\x96\x81\", \"a\"], \"\xe2\x96\x81" "a b\", " \
                     "\"\xe2\x96\x81 ab\"]"
#define SMALL_ADDED "[{\"id\": 0, \"content\": \"<unk>\", \"special\": true}, " \
                    "{\"id\": 1, \"content\": \"<s>\", \"special\": true}, " \
                    "{\"id\": 2, \"content\": \"</s>\", \"special\": true}, " \
                    "{\"id\": 10, \"content\": \"<extra>\", \"special\": false}]"
#define LEGACY_NORMALIZER "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", " \
                          "\"prepend\": \"\xe2\x96\x81\"}, {\"type\": \"Replace\", " \
                          "\"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}]}"

static char *small_tokenizer(const char *model_extra, const char *vocab, const char *merges,
                             const char *added, const char *normalizer, const char *pre)
{
    char *path = test_path("small.tokenizer.json");
    char *text = NULL;
    if (asprintf(&text, "{\"added_tokens\": %s, \"normalizer\": %s, \"pre_tokenizer\": %s, "
                 "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", %s \"vocab\": %s, "
                 "\"merges\": %s}}", added, normalizer, pre, model_extra, vocab, merges) < 0)
        exit(2);
    test_write_file(path, text, strlen(text));
    free(text);
    return path;
}

static void test_tokenizer_json_small(void)
{
    char *path = small_tokenizer("\"byte_fallback\": false,", SMALL_VOCAB, SMALL_MERGES,
                                 SMALL_ADDED, LEGACY_NORMALIZER, "null");
    struct vocab v;
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(vocab_read_tokenizer_json(path, &v, err) == 0, "small tokenizer.json: %s", err);
    if (!err[0]) {
        CHECK(v.hdr.n_tokens == 11 && v.hdr.flags == HEARTH_TOK_ADD_DUMMY_PREFIX &&
              v.hdr.unk_id == 0 && v.bos_id == 1 && v.eos_id == 2,
              "header: %u tokens flags %#x unk %u bos %u eos %u", v.hdr.n_tokens, v.hdr.flags,
              v.hdr.unk_id, v.bos_id, v.eos_id);
        CHECK(v.hdr.n_tokens == 11 && v.scores[6] == 0.0f && v.scores[7] == -1.0f &&
              v.scores[8] == -2.0f, "merge scores ab %g, _a %g, _ab %g (first merge wins)",
              v.scores[6], v.scores[7], v.scores[8]);
        int floor_ok = 1;
        for (int i = 0; i < 11; i++)
            if (i < 6 || i > 8)
                floor_ok &= v.scores[i] == -5.0f;
        CHECK(floor_ok, "unmerged pieces score -(n_merges + 1)");
        CHECK(v.kinds[0] == HEARTH_TOKEN_UNKNOWN && v.kinds[1] == HEARTH_TOKEN_CONTROL &&
              v.kinds[2] == HEARTH_TOKEN_CONTROL && v.kinds[4] == HEARTH_TOKEN_NORMAL &&
              v.kinds[10] == HEARTH_TOKEN_USER_DEFINED, "kinds");
        CHECK(v.piece_bytes[10] == 7 && !memcmp(v.pieces[10], "<extra>", 7) &&
              v.piece_bytes[8] == 5 && !memcmp(v.pieces[8], "\xe2\x96\x81" "ab", 5),
              "pieces");
        vocab_free(&v);
    }
    free(path);

    static const struct {
        const char *extra, *vocab, *merges, *added, *normalizer, *pre, *needle1, *needle2;
    } bad[] = {
        {"", SMALL_VOCAB, SMALL_MERGES, "[]", "null", "null", "Metaspace", "SentencePiece"},
        {"", SMALL_VOCAB, SMALL_MERGES, "[]", "{\"type\": \"NFKC\"}", "null", "NFKC", NULL},
        {"", SMALL_VOCAB, SMALL_MERGES, "[]", LEGACY_NORMALIZER, "{\"type\": \"Whitespace\"}",
         "Whitespace", NULL},
        {"", SMALL_VOCAB, SMALL_MERGES, "[]", LEGACY_NORMALIZER,
         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
         "{\"Regex\": \"x\"}}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false}]}",
         "byte-level", "not supported yet"},
        {"", SMALL_VOCAB, "[\"a z\"]", "[]", LEGACY_NORMALIZER, "null", "merges[0]", "\"z\""},
        {"", SMALL_VOCAB, "[\"a b\", \"b a\"]", "[]", LEGACY_NORMALIZER, "null", "merges[1]",
         "merged piece \"ba\""},
        {"", SMALL_VOCAB, "[\"a b c\"]", "[]", LEGACY_NORMALIZER, "null", "merges[0]",
         "one space"},
        {"", SMALL_VOCAB, "[[\"a\"]]", "[]", LEGACY_NORMALIZER, "null", "merges[0]", NULL},
        {"", SMALL_VOCAB, "[{\"a\": 1, \"b\": 2}]", "[]", LEGACY_NORMALIZER, "null", "merges[0]",
         NULL},
        {"", "{\"<unk>\": 0, \"c\": 2}", "[]", "[]", LEGACY_NORMALIZER, "null",
         "no piece has id 1", NULL},
        {"", "{\"<unk>\": 0, \"c\": 0}", "[]", "[]", LEGACY_NORMALIZER, "null", "id 0", NULL},
        {"", "{\"<unk>\": 0, \"c\": -1}", "[]", "[]", LEGACY_NORMALIZER, "null", "\"c\"", NULL},
        {"", SMALL_VOCAB, SMALL_MERGES, "[{\"id\": 4, \"content\": \"zz\"}]", LEGACY_NORMALIZER,
         "null", "id 4", "zz"},
        {"", SMALL_VOCAB, SMALL_MERGES, "[{\"id\": 10, \"content\": \"a\"}]", LEGACY_NORMALIZER,
         "null", "same piece", NULL},
        {"", SMALL_VOCAB, SMALL_MERGES, "[{\"id\": 10}]", LEGACY_NORMALIZER, "null",
         "added_tokens[0]", "content"},
        {"\"byte_fallback\": true,", SMALL_VOCAB, SMALL_MERGES, "[]", LEGACY_NORMALIZER, "null",
         "byte_fallback", "not 256"},
        {"\"ignore_merges\": true,", SMALL_VOCAB, SMALL_MERGES, "[]", LEGACY_NORMALIZER, "null",
         "ignore_merges", NULL},
        {"\"dropout\": 0.1,", SMALL_VOCAB, SMALL_MERGES, "[]", LEGACY_NORMALIZER, "null",
         "dropout", NULL},
        {"\"continuing_subword_prefix\": \"##\",", SMALL_VOCAB, SMALL_MERGES, "[]",
         LEGACY_NORMALIZER, "null", "continuing_subword_prefix", NULL},
        {"\"unk_token\": \"<nope>\",", SMALL_VOCAB, SMALL_MERGES, "[]", LEGACY_NORMALIZER, "null",
         "unk_token", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = small_tokenizer(bad[i].extra, bad[i].vocab, bad[i].merges, bad[i].added,
                               bad[i].normalizer, bad[i].pre);
        err[0] = 0;
        int rc = vocab_read_tokenizer_json(path, &v, err);
        CHECK(rc < 0, "bad tokenizer %zu accepted", i);
        if (rc == 0)
            vocab_free(&v);
        CHECK(strstr(err, path) && strstr(err, bad[i].needle1) &&
              (!bad[i].needle2 || strstr(err, bad[i].needle2)),
              "bad tokenizer %zu: message \"%s\" should mention \"%s\" and \"%s\"", i, err,
              bad[i].needle1, bad[i].needle2 ? bad[i].needle2 : "");
        CHECK(!v.pieces && !v.scores && v.hdr.n_tokens == 0, "bad tokenizer %zu: vocab not freed",
              i);
        free(path);
    }

    static const struct { const char *text, *needle; } whole[] = {
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}", "Unigram"},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", "WordPiece"},
        {"{\"model\": {\"vocab\": {\"a\": 0}}}", "model type"},
        {"{\"normalizer\": null}", "\"model\" is missing"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
         "\"decoder\": {\"type\": \"ByteLevel\"}}", "byte-level"},
        {"{\"model\": {\"type\": \"BPE\"", "at byte"},
    };
    path = test_path("whole.tokenizer.json");
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        test_write_file(path, whole[i].text, strlen(whole[i].text));
        err[0] = 0;
        int rc = vocab_read_tokenizer_json(path, &v, err);
        CHECK(rc < 0, "tokenizer %zu accepted", i);
        if (rc == 0)
            vocab_free(&v);
        CHECK(strstr(err, whole[i].needle) && strstr(err, path),
              "tokenizer %zu: message \"%s\" should mention \"%s\"", i, err, whole[i].needle);
    }
    free(path);
}

/* ---- tokenizer_config.json: chat template, BOS, stop ids ----------------- */

/* tests/data/chat/templates/NAME.jinja as a JSON string literal; malloc'd. */
static char *template_json(const char *name)
{
    char path[256], *out = NULL;
    snprintf(path, sizeof path, "tests/data/chat/templates/%s.jinja", name);
    size_t n = 0, len = 0;
    char *t = test_read_file(path, &n);
    CHECK(t != NULL, "cannot read %s", path);
    FILE *f = open_memstream(&out, &len);
    put_json_str(f, t ? t : "", t ? n : 0);
    fclose(f);
    free(t);
    return out;
}

/* Replaces the first `from` in dir/name by `to` (any length). */
static void replace_in_file(const char *dir, const char *name, const char *from, const char *to)
{
    char *p = join(dir, name), *out = NULL;
    size_t n, len = 0;
    char *data = test_read_file(p, &n);
    char *hit = data ? strstr(data, from) : NULL;
    CHECK(hit != NULL, "no \"%s\" in %s", from, p);
    if (hit) {
        FILE *f = open_memstream(&out, &len);
        fprintf(f, "%.*s%s%s", (int)(hit - data), data, to, hit + strlen(from));
        fclose(f);
        test_write_file(p, out, len);
    }
    free(out);
    free(data);
    free(p);
}

/* hf_read(dir); on success the header and the tokenizer flags. */
static int read_meta(const char *dir, struct hearth_header *c, uint32_t *flags, char *err)
{
    struct source src;
    if (hf_read(dir, &src, err) < 0)
        return -1;
    *c = src.cfg;
    *flags = src.vocab.hdr.flags;
    source_free(&src);
    return 0;
}

static void expect_meta(const char *dir, const char *config, uint32_t want_template,
                        int want_no_bos, const uint32_t *stops, uint32_t n_stops, const char *what)
{
    if (config)
        write_text(dir, "tokenizer_config.json", config);
    else
        remove_file(dir, "tokenizer_config.json");
    struct hearth_header c;
    uint32_t flags = 0;
    char err[HEARTH_ERR_BYTES] = "";
    int rc = read_meta(dir, &c, &flags, err);
    CHECK(rc == 0, "%s: %s", what, err);
    if (rc < 0)
        return;
    CHECK(c.chat_template == want_template, "%s: chat template %u, expected %u", what,
          c.chat_template, want_template);
    CHECK(!!(flags & HEARTH_TOK_NO_BOS) == want_no_bos, "%s: tokenizer flags %#x", what, flags);
    int same = c.n_stop_ids == n_stops;
    for (uint32_t i = 0; same && i < n_stops; i++)
        same = c.stop_ids[i] == stops[i];
    CHECK(same, "%s: %u stop ids (%u %u %u), expected %u", what, c.n_stop_ids, c.stop_ids[0],
          c.stop_ids[1], c.stop_ids[2], n_stops);
}

/* A SentencePiece folder (tok512: <unk> 0, <s> 1, </s> 2; config eos 2). */
static void test_hf_chat_metadata(void)
{
    char *dir = synth_folder("chatmeta", &base_cfg, 1);
    char *llama2 = template_json("llama2"), *zephyr = template_json("zephyr");
    char *chatml = template_json("chatml"), text[16384];
    static const uint32_t eos[] = {2}, eos_bos[] = {2, 1};
    expect_meta(dir, NULL, HEARTH_CHAT_NONE, 0, eos, 1, "no tokenizer_config.json");
    expect_meta(dir, "{}", HEARTH_CHAT_NONE, 0, eos, 1, "empty tokenizer_config.json");
    expect_meta(dir, "{\"chat_template\": null}", HEARTH_CHAT_NONE, 0, eos, 1, "null template");
    snprintf(text, sizeof text, "{\"chat_template\": %s, \"eos_token\": \"</s>\"}", llama2);
    expect_meta(dir, text, HEARTH_CHAT_LLAMA2, 0, eos, 1, "llama2 template");
    snprintf(text, sizeof text, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": "
             "\"{{ tools }}\"}, {\"name\": \"default\", \"template\": %s}]}", zephyr);
    expect_meta(dir, text, HEARTH_CHAT_ZEPHYR, 0, eos, 1, "named templates");
    expect_meta(dir, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}",
                CHAT_TEMPLATE_UNRECOGNISED, 0, eos, 1, "named templates without default");
    expect_meta(dir, "{\"chat_template\": \"{{ messages }}\"}", CHAT_TEMPLATE_UNRECOGNISED, 0,
                eos, 1, "unknown template");
    /* chat_template.jinja wins over the config's copy */
    char *raw = test_read_file("tests/data/chat/templates/chatml.jinja", NULL);
    write_text(dir, "chat_template.jinja", raw ? raw : "");
    free(raw);
    snprintf(text, sizeof text, "{\"chat_template\": %s}", llama2);
    expect_meta(dir, text, HEARTH_CHAT_CHATML, 0, eos, 1, "chat_template.jinja");
    remove_file(dir, "chat_template.jinja");
    /* add_bos_token; SentencePiece adds BOS by default */
    expect_meta(dir, "{\"add_bos_token\": false}", HEARTH_CHAT_NONE, 1, eos, 1, "add_bos false");
    expect_meta(dir, "{\"add_bos_token\": true}", HEARTH_CHAT_NONE, 0, eos, 1, "add_bos true");
    /* eos_token as a string or an AddedToken object adds a stop id */
    expect_meta(dir, "{\"eos_token\": \"<s>\"}", HEARTH_CHAT_NONE, 0, eos_bos, 2, "eos_token");
    expect_meta(dir, "{\"eos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\", "
                "\"lstrip\": false}}", HEARTH_CHAT_NONE, 0, eos_bos, 2, "eos_token object");
    expect_meta(dir, "{\"eos_token\": \"<nope>\"}", HEARTH_CHAT_NONE, 0, eos, 1,
                "eos_token not in the vocabulary");

    static const struct {
        const char *config, *needle1, *needle2;
    } bad[] = {
        {"{\"chat_template\": 5}", "\"chat_template\" must be", "a number"},
        {"{\"chat_template\": [\"x\"]}", "chat_template[0]", "object"},
        {"{\"chat_template\": [{\"name\": \"default\"}]}", "chat_template[0]", "\"template\""},
        {"{\"add_bos_token\": \"yes\"}", "add_bos_token", NULL},
        {"{\"eos_token\": 5}", "eos_token", "a number"},
        {"{\"eos_token\": {\"lstrip\": false}}", "eos_token", "content"},
        {"[]", "tokenizer_config.json", "JSON object"},
        {"{\"chat_template\": ", "tokenizer_config.json", "byte"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(dir, "tokenizer_config.json", bad[i].config);
        expect_refusal(dir, bad[i].needle1, bad[i].needle2, bad[i].config);
    }
    free(llama2);
    free(zephyr);
    free(chatml);
    free(dir);
}

/* A byte-level tokenizer.json in dir: the 256 GPT-2 alphabet characters as
 * ids 0..255, special tokens <|begin_of_text|> 256, <|end_of_text|> 257,
 * <|eot_id|> 258, and the given post_processor. */
static void write_byte_level_tokenizer(const char *dir, const char *post_processor)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    static const char *const special[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"};
    fprintf(f, "{\"added_tokens\": [");
    for (int i = 0; i < 3; i++)
        fprintf(f, "%s{\"id\": %d, \"content\": \"%s\", \"special\": true}", i ? ", " : "",
                256 + i, special[i]);
    fprintf(f, "], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
            "\"add_prefix_space\": false, \"use_regex\": true}, \"post_processor\": %s, "
            "\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {",
            post_processor);
    for (int b = 0; b < 256; b++) {
        char c[3] = {0};
        tokenizer_gpt2_char((uint8_t)b, c);
        fprintf(f, "%s", b ? ", " : "");
        put_json_str(f, c, strlen(c));
        fprintf(f, ": %d", b);
    }
    fprintf(f, "}, \"merges\": []}}");
    fclose(f);
    write_text(dir, "tokenizer.json", text);
    free(text);
}

#define TP_BOS "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": " \
    "\"<|begin_of_text|>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}"
#define TP_EOS "{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": {\"id\": \"A\", " \
    "\"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"<|end_of_text|>\", \"type_id\": 0}}]}"
#define PP_BYTE_LEVEL "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}"

/* Byte-level folders: BOS as tokenizer.json's post-processor says (or
 * add_bos_token); Llama 3's tokenizer_config.json gives the llama3 template,
 * whose <|eot_id|> then ends generation. */
static void test_hf_byte_level_metadata(void)
{
    char *dir = synth_folder("bytelevel", &base_cfg, 1);
    remove_file(dir, "tokenizer.model");
    write_config(dir, "bos_token_id", "256");
    replace_in_file(dir, "config.json", "\"eos_token_id\": 2", "\"eos_token_id\": 257");
    static const uint32_t eos[] = {257}, eos_eot[] = {257, 258};
    static const struct {
        const char *pp, *config;
        int no_bos;
    } cases[] = {
        {TP_BOS, NULL, 0},
        {"{\"type\": \"Sequence\", \"processors\": [" PP_BYTE_LEVEL ", " TP_BOS "]}", NULL, 0},
        {PP_BYTE_LEVEL, NULL, 1},
        {"null", NULL, 1},
        {TP_EOS, NULL, 1},
        {PP_BYTE_LEVEL, "{\"add_bos_token\": true}", 0},
        {TP_BOS, "{\"add_bos_token\": false}", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_byte_level_tokenizer(dir, cases[i].pp);
        char what[64];
        snprintf(what, sizeof what, "byte-level case %zu", i);
        expect_meta(dir, cases[i].config, HEARTH_CHAT_NONE, cases[i].no_bos, eos, 1, what);
    }
    /* Meta's Llama 3 tokenizer_config.json: its chat template and eos_token */
    write_byte_level_tokenizer(dir, PP_BYTE_LEVEL);
    char *config = test_read_file("tests/data/llama3/tokenizer_config.json", NULL);
    CHECK(config != NULL, "cannot read tests/data/llama3/tokenizer_config.json");
    expect_meta(dir, config ? config : "{}", HEARTH_CHAT_LLAMA3, 1, eos_eot, 2,
                "Llama 3 tokenizer_config.json");
    write_text(dir, "generation_config.json", "{\"eos_token_id\": [257, 258]}");
    expect_meta(dir, config ? config : "{}", HEARTH_CHAT_LLAMA3, 1, eos_eot, 2,
                "Llama 3 with generation_config.json");
    free(config);
    free(dir);
}

const struct test_case hf_tests[] = {
    {"safetensors_valid", test_safetensors_valid},
    {"safetensors_invalid", test_safetensors_invalid},
    {"hf_read_synth", test_hf_read_synth},
    {"synth_llama2c", test_synth_llama2c},
    {"hf_config_refusals", test_hf_config_refusals},
    {"hf_config_variants", test_hf_config_variants},
    {"hf_vocab_size", test_hf_vocab_size},
    {"hf_shard_refusals", test_hf_shard_refusals},
    {"hf_tensor_sets", test_hf_tensor_sets},
    {"tokenizer_json_tok512", test_tokenizer_json_tok512},
    {"tokenizer_json_small", test_tokenizer_json_small},
    {"hf_chat_metadata", test_hf_chat_metadata},
    {"hf_byte_level_metadata", test_hf_byte_level_metadata},
    {NULL, NULL},
};
