/* exporter/llama2c.c - reads a llama2.c legacy (version 0) checkpoint.
 *
 * Layout (llama2.c run.c, read_checkpoint / memory_map_weights): 7 int32
 * (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
 * negative vocab_size means a separate classifier is stored at the end),
 * then fp32 arrays: token_embedding[vocab][dim], rms_att[L][dim],
 * wq[L][dim][dim], wk[L][kv_dim][dim], wv[L][kv_dim][dim], wo[L][dim][dim],
 * rms_ffn[L][dim], w1[L][hidden][dim], w2[L][dim][hidden], w3[L][hidden][dim],
 * rms_final[dim], freq_cis_real and freq_cis_imag [seq_len][head_size/2]
 * (unused), then wcls[vocab][dim] when unshared. Rotary pairs are adjacent,
 * as hearth stores them, so nothing is permuted. The llama2.c versioned
 * formats (magic "ak42") are not read here. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "source.h"

#define LLAMA2C_HEADER_BYTES 28u

struct llama2c_cursor {
    struct source *src;
    int fd;
    uint64_t offset; /* next array's byte offset */
};

/* Adds n_layers consecutive rows x cols slices named blk.N.<suffix>. */
static void add_layer_arrays(struct llama2c_cursor *c, uint32_t n_layers, const char *suffix,
                             uint64_t rows, uint64_t cols)
{
    for (uint32_t l = 0; l < n_layers; l++) {
        struct src_tensor *t = &c->src->tensors[c->src->n_tensors++];
        *t = (struct src_tensor){.fd = c->fd, .offset = c->offset, .type = HEARTH_F32,
                                 .rows = rows, .cols = cols};
        snprintf(t->name, sizeof t->name, "blk.%u.%s", l, suffix);
        c->offset += rows * cols * sizeof(float);
    }
}

static void add_array(struct llama2c_cursor *c, const char *name, uint64_t rows, uint64_t cols)
{
    struct src_tensor *t = &c->src->tensors[c->src->n_tensors++];
    *t = (struct src_tensor){.fd = c->fd, .offset = c->offset, .type = HEARTH_F32,
                             .rows = rows, .cols = cols};
    snprintf(t->name, sizeof t->name, "%s", name);
    c->offset += rows * cols * sizeof(float);
}

static int read_header(int fd, const char *path, int32_t h[7], char *err)
{
    ssize_t got = pread(fd, h, LLAMA2C_HEADER_BYTES, 0);
    if (got != (ssize_t)LLAMA2C_HEADER_BYTES)
        return fail(err, "%s: too short for a llama2.c checkpoint header (28 bytes)", path);
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                   "n_kv_heads", "vocab_size", "seq_len"};
    /* Generous bounds: they only keep size arithmetic far from overflow. */
    static const int32_t max[7] = {1 << 16, 1 << 20, 1024, 1024, 1024, 1 << 22, 1 << 24};
    for (int i = 0; i < 7; i++) {
        int32_t v = i == 5 && h[i] < 0 ? -h[i] : h[i];
        if (v <= 0 || v > max[i])
            return fail(err, "%s: llama2.c header field %s = %d is outside 1..%d "
                        "(not a llama2.c checkpoint?)", path, names[i], h[i], max[i]);
    }
    if (h[0] % h[3] || h[3] % h[4] || (h[0] / h[3]) % 2)
        return fail(err, "%s: llama2.c header: dim %d, n_heads %d, n_kv_heads %d do not divide "
                    "into even heads", path, h[0], h[3], h[4]);
    return 0;
}

static void fill_config(struct hearth_header *cfg, const int32_t h[7])
{
    memset(cfg, 0, sizeof *cfg);
    cfg->dim = (uint32_t)h[0];
    cfg->hidden_dim = (uint32_t)h[1];
    cfg->n_layers = (uint32_t)h[2];
    cfg->n_heads = (uint32_t)h[3];
    cfg->n_kv_heads = (uint32_t)h[4];
    cfg->head_dim = cfg->dim / cfg->n_heads;
    cfg->vocab_size = (uint32_t)(h[5] < 0 ? -h[5] : h[5]);
    cfg->max_seq_len = (uint32_t)h[6];
    cfg->rope_theta = 10000.0f; /* llama2.c run.c rope: powf(10000.0f, ...) */
    cfg->norm_eps = 1e-5f;      /* llama2.c run.c rmsnorm */
    cfg->flags = h[5] > 0 ? HEARTH_FLAG_TIED_EMBEDDINGS : 0;
    /* llama2.c's tokenizer: BOS 1, EOS 2. run.c ends generation on BOS,
     * which separates stories in its training data, so both stop. */
    cfg->bos_id = 1;
    cfg->eos_id = 2;
    cfg->n_stop_ids = 2;
    cfg->stop_ids[0] = 2;
    cfg->stop_ids[1] = 1;
    /* Prompts start with BOS (run.c generate: encode(..., bos 1, eos 0)),
     * so the vocabulary read with --tokenizer keeps HEARTH_TOK_NO_BOS clear;
     * these are base models: chat_template stays HEARTH_CHAT_NONE. */
}

int llama2c_read(const char *path, struct source *src, char *err)
{
    memset(src, 0, sizeof *src);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return fail(err, "%s: cannot open: %s", path, strerror(errno));
    src->fds[src->n_fds++] = fd;
    int32_t h[7];
    if (read_header(fd, path, h, err) < 0)
        goto fail;
    fill_config(&src->cfg, h);
    const struct hearth_header *cfg = &src->cfg;
    uint32_t L = cfg->n_layers;
    uint64_t dim = cfg->dim, hidden = cfg->hidden_dim, vocab = cfg->vocab_size;
    uint64_t kv_dim = (uint64_t)cfg->n_kv_heads * cfg->head_dim;
    src->tensors = calloc(9ull * L + 3, sizeof *src->tensors);
    if (!src->tensors) {
        fail(err, "%s: out of memory", path);
        goto fail;
    }
    struct llama2c_cursor c = {src, fd, LLAMA2C_HEADER_BYTES};
    add_array(&c, "token_embd.weight", vocab, dim);
    add_layer_arrays(&c, L, "attn_norm.weight", 1, dim);
    add_layer_arrays(&c, L, "attn_q.weight", dim, dim);
    add_layer_arrays(&c, L, "attn_k.weight", kv_dim, dim);
    add_layer_arrays(&c, L, "attn_v.weight", kv_dim, dim);
    add_layer_arrays(&c, L, "attn_output.weight", dim, dim);
    add_layer_arrays(&c, L, "ffn_norm.weight", 1, dim);
    add_layer_arrays(&c, L, "ffn_gate.weight", hidden, dim);
    add_layer_arrays(&c, L, "ffn_down.weight", dim, hidden);
    add_layer_arrays(&c, L, "ffn_up.weight", hidden, dim);
    add_array(&c, "output_norm.weight", 1, dim);
    c.offset += 2ull * cfg->max_seq_len * (cfg->head_dim / 2) * sizeof(float); /* freq_cis */
    if (!(cfg->flags & HEARTH_FLAG_TIED_EMBEDDINGS))
        add_array(&c, "output.weight", vocab, dim);
    struct stat st;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != c.offset) {
        fail(err, "%s: llama2.c checkpoint is %lld bytes, its header implies %llu (%s)", path,
             (long long)st.st_size, (unsigned long long)c.offset,
             (uint64_t)st.st_size < c.offset ? "truncated" : "trailing data or wrong format");
        goto fail;
    }
    src->input_bytes = c.offset;
    return 0;
fail:
    source_free(src);
    return -1;
}
