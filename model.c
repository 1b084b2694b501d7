/* model.c - load and validate a hearth model file, and run the forward pass.
 *
 * Loading is mmap plus validation: every offset, size, count and id in the
 * file is checked against the file size and the config before it is used,
 * and a bad file gets one message naming the field. Nothing is converted.
 * The forward pass is written to be read in one sitting; it follows llama2.c
 * run.c (github.com/karpathy/llama2.c) in operation order so its logits can
 * be compared with that reference. Matrix products go to the kernels
 * (kernels/kernels.h) on the thread pool; the small vector operations (norms,
 * rope, residuals) run on the calling thread. */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "quant.h"

/* Bounds that no real Llama-family model comes near; they keep every size
 * computation far from 64-bit overflow. */
#define MAX_DIM (1u << 16)
#define MAX_HIDDEN (1u << 20)
#define MAX_LAYERS 1024u
#define MAX_HEADS 1024u
#define MAX_HEAD_DIM 1024u
#define MAX_VOCAB (1u << 22)
#define MAX_SEQ (1u << 24)

/* ---------------------------------------------------------------- loading */

static int check_config(const struct hearth_header *h, const char *path, char *err)
{
    struct { const char *name; uint32_t value, max; } dims[] = {
        {"dim", h->dim, MAX_DIM},           {"hidden_dim", h->hidden_dim, MAX_HIDDEN},
        {"n_layers", h->n_layers, MAX_LAYERS}, {"n_heads", h->n_heads, MAX_HEADS},
        {"n_kv_heads", h->n_kv_heads, MAX_HEADS}, {"head_dim", h->head_dim, MAX_HEAD_DIM},
        {"vocab_size", h->vocab_size, MAX_VOCAB}, {"max_seq_len", h->max_seq_len, MAX_SEQ},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].value == 0 || dims[i].value > dims[i].max)
            return fail(err, "%s: header field %s = %u is outside 1..%u", path,
                        dims[i].name, dims[i].value, dims[i].max);
    if (h->n_heads % h->n_kv_heads)
        return fail(err, "%s: header: n_heads %u is not a multiple of n_kv_heads %u", path,
                    h->n_heads, h->n_kv_heads);
    if (h->head_dim % 2)
        return fail(err, "%s: header: head_dim %u is odd (rotary pairs need it even)", path,
                    h->head_dim);
    if (!(isfinite(h->rope_theta) && h->rope_theta > 1.0f))
        return fail(err, "%s: header field rope_theta = %g is not > 1", path, h->rope_theta);
    if (!(isfinite(h->norm_eps) && h->norm_eps > 0.0f && h->norm_eps < 1.0f))
        return fail(err, "%s: header field norm_eps = %g is not in (0, 1)", path, h->norm_eps);
    if (h->rope_scaling > HEARTH_ROPE_SCALING_LLAMA3)
        return fail(err, "%s: header field rope_scaling = %u is unknown", path, h->rope_scaling);
    if (h->rope_scaling == HEARTH_ROPE_SCALING_LLAMA3 &&
        !(h->rope_factor >= 1.0f && h->rope_low_freq_factor > 0.0f &&
          h->rope_high_freq_factor > h->rope_low_freq_factor && h->rope_orig_max_seq_len > 0))
        return fail(err, "%s: header: llama3 rope scaling parameters are inconsistent", path);
    if (h->flags & ~(HEARTH_FLAG_TIED_EMBEDDINGS | HEARTH_FLAG_QKV_BIAS))
        return fail(err, "%s: header field flags = 0x%x has unknown bits", path, h->flags);
    if (h->bos_id >= h->vocab_size || h->eos_id >= h->vocab_size)
        return fail(err, "%s: header: bos_id %u or eos_id %u is not below vocab_size %u", path,
                    h->bos_id, h->eos_id, h->vocab_size);
    if (h->chat_template >= HEARTH_CHAT_COUNT)
        return fail(err, "%s: header field chat_template = %u is unknown", path, h->chat_template);
    if (h->n_stop_ids > HEARTH_MAX_STOP_IDS)
        return fail(err, "%s: header field n_stop_ids = %u exceeds %u", path, h->n_stop_ids,
                    HEARTH_MAX_STOP_IDS);
    for (uint32_t i = 0; i < h->n_stop_ids; i++)
        if (h->stop_ids[i] >= h->vocab_size)
            return fail(err, "%s: header: stop_ids[%u] = %u is not below vocab_size %u", path, i,
                        h->stop_ids[i], h->vocab_size);
    return 0;
}

/* True when [offset, offset + n_bytes) lies inside [lo, hi), without overflow. */
static int range_inside(uint64_t offset, uint64_t n_bytes, uint64_t lo, uint64_t hi)
{
    return offset >= lo && offset <= hi && n_bytes <= hi - offset;
}

static int check_sections(const struct hearth_header *h, const char *path, char *err)
{
    uint64_t body_end = h->file_bytes - HEARTH_CHECKSUM_BYTES;
    if (h->tokenizer_offset % 8 ||
        !range_inside(h->tokenizer_offset, h->tokenizer_bytes, HEARTH_HEADER_BYTES, body_end))
        return fail(err, "%s: header: tokenizer section (offset %llu, %llu bytes) is misaligned "
                    "or outside the file (%llu bytes)", path,
                    (unsigned long long)h->tokenizer_offset,
                    (unsigned long long)h->tokenizer_bytes, (unsigned long long)h->file_bytes);
    uint64_t max_tensors = 16ull * h->n_layers + 8;
    if (h->n_tensors == 0 || h->n_tensors > max_tensors)
        return fail(err, "%s: header field n_tensors = %u is outside 1..%llu", path, h->n_tensors,
                    (unsigned long long)max_tensors);
    uint64_t dir_bytes = (uint64_t)h->n_tensors * sizeof(struct hearth_tensor_entry);
    if (h->tensors_offset % 8 ||
        !range_inside(h->tensors_offset, dir_bytes, HEARTH_HEADER_BYTES, body_end))
        return fail(err, "%s: header: tensor directory (offset %llu, %u entries) is misaligned "
                    "or outside the file", path, (unsigned long long)h->tensors_offset,
                    h->n_tensors);
    return 0;
}

/* Where a tensor name points in struct model, and the shape it must have. */
struct tensor_slot {
    struct tensor *t;
    uint64_t rows, cols;
    int is_vector;        /* norms and biases: always F32 */
};

static int find_slot(struct model *m, const char *name, struct tensor_slot *slot)
{
    const struct hearth_header *h = &m->cfg;
    uint64_t q_dim = (uint64_t)h->n_heads * h->head_dim;
    uint64_t kv_dim = (uint64_t)h->n_kv_heads * h->head_dim;
    int has_bias = (h->flags & HEARTH_FLAG_QKV_BIAS) != 0;
    memset(slot, 0, sizeof *slot);
    if (!strcmp(name, "token_embd.weight")) {
        *slot = (struct tensor_slot){&m->token_embd, h->vocab_size, h->dim, 0};
    } else if (!strcmp(name, "output_norm.weight")) {
        *slot = (struct tensor_slot){&m->output_norm, 1, h->dim, 1};
    } else if (!strcmp(name, "output.weight")) {
        if (h->flags & HEARTH_FLAG_TIED_EMBEDDINGS)
            return -1;
        *slot = (struct tensor_slot){&m->output, h->vocab_size, h->dim, 0};
    } else {
        unsigned layer;
        int used = 0;
        char rest[HEARTH_NAME_BYTES];
        if (sscanf(name, "blk.%u.%55s%n", &layer, rest, &used) != 2 || name[used] != 0 ||
            layer >= h->n_layers)
            return -1;
        struct layer *L = &m->layers[layer];
        const struct { const char *name; struct tensor *t; uint64_t rows, cols; int vec, bias; } map[] = {
            {"attn_norm.weight", &L->attn_norm, 1, h->dim, 1, 0},
            {"attn_q.weight", &L->attn_q, q_dim, h->dim, 0, 0},
            {"attn_k.weight", &L->attn_k, kv_dim, h->dim, 0, 0},
            {"attn_v.weight", &L->attn_v, kv_dim, h->dim, 0, 0},
            {"attn_q.bias", &L->attn_q_bias, 1, q_dim, 1, 1},
            {"attn_k.bias", &L->attn_k_bias, 1, kv_dim, 1, 1},
            {"attn_v.bias", &L->attn_v_bias, 1, kv_dim, 1, 1},
            {"attn_output.weight", &L->attn_output, h->dim, q_dim, 0, 0},
            {"ffn_norm.weight", &L->ffn_norm, 1, h->dim, 1, 0},
            {"ffn_gate.weight", &L->ffn_gate, h->hidden_dim, h->dim, 0, 0},
            {"ffn_up.weight", &L->ffn_up, h->hidden_dim, h->dim, 0, 0},
            {"ffn_down.weight", &L->ffn_down, h->dim, h->hidden_dim, 0, 0},
        };
        size_t i;
        for (i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!strcmp(rest, map[i].name))
                break;
        if (i == sizeof map / sizeof map[0] || (map[i].bias && !has_bias))
            return -1;
        *slot = (struct tensor_slot){map[i].t, map[i].rows, map[i].cols, map[i].vec};
    }
    return 0;
}

/* Types the kernels run. */
static int type_runnable(uint32_t type)
{
    return type == HEARTH_F32 || type == HEARTH_Q8_0 || type == HEARTH_Q4_0;
}

static int load_tensor(struct model *m, const struct hearth_tensor_entry *e, uint32_t index,
                       char *err)
{
    const char *path = m->path;
    uint64_t entry_offset = m->cfg.tensors_offset + (uint64_t)index * sizeof *e;
    if (memchr(e->name, 0, sizeof e->name) == NULL)
        return fail(err, "%s: tensor directory entry %u (offset %llu): name is not NUL-terminated",
                    path, index, (unsigned long long)entry_offset);
    struct tensor_slot slot;
    if (find_slot(m, e->name, &slot) < 0)
        return fail(err, "%s: tensor directory entry %u: unexpected tensor '%s' for this config",
                    path, index, e->name);
    if (slot.t->data)
        return fail(err, "%s: tensor directory entry %u: tensor '%s' appears twice", path, index,
                    e->name);
    if (e->rows != slot.rows || e->cols != slot.cols)
        return fail(err, "%s: tensor '%s': shape %llux%llu, expected %llux%llu from the config",
                    path, e->name, (unsigned long long)e->rows, (unsigned long long)e->cols,
                    (unsigned long long)slot.rows, (unsigned long long)slot.cols);
    uint64_t expect = hearth_tensor_bytes(e->type, e->rows, e->cols);
    if (expect == 0)
        return fail(err, "%s: tensor '%s': type %u is unknown or illegal for shape %llux%llu",
                    path, e->name, e->type, (unsigned long long)e->rows,
                    (unsigned long long)e->cols);
    if (e->n_bytes != expect)
        return fail(err, "%s: tensor '%s': size %llu bytes disagrees with its shape and type "
                    "(%llu bytes)", path, e->name, (unsigned long long)e->n_bytes,
                    (unsigned long long)expect);
    if (e->offset % HEARTH_TENSOR_ALIGN ||
        !range_inside(e->offset, e->n_bytes, m->cfg.data_offset,
                      m->map_bytes - HEARTH_CHECKSUM_BYTES))
        return fail(err, "%s: tensor '%s': offset %llu (+%llu bytes) is not 64-byte aligned or "
                    "lies outside the data section [%llu, %llu)", path, e->name,
                    (unsigned long long)e->offset, (unsigned long long)e->n_bytes,
                    (unsigned long long)m->cfg.data_offset,
                    (unsigned long long)(m->map_bytes - HEARTH_CHECKSUM_BYTES));
    if (slot.is_vector ? e->type != HEARTH_F32 : !type_runnable(e->type))
        return fail(err, "%s: tensor '%s': type %s cannot be run by this build", path, e->name,
                    hearth_type_name(e->type));
    *slot.t = (struct tensor){e->type, e->rows, e->cols, m->map + e->offset};
    return 0;
}

static int check_all_present(struct model *m, char *err)
{
    const char *missing = NULL;
    if (!m->token_embd.data)
        missing = "token_embd.weight";
    else if (!m->output_norm.data)
        missing = "output_norm.weight";
    else if (!(m->cfg.flags & HEARTH_FLAG_TIED_EMBEDDINGS) && !m->output.data)
        missing = "output.weight";
    if (missing)
        return fail(err, "%s: tensor '%s' is missing", m->path, missing);
    int has_bias = (m->cfg.flags & HEARTH_FLAG_QKV_BIAS) != 0;
    for (uint32_t l = 0; l < m->cfg.n_layers; l++) {
        const struct layer *L = &m->layers[l];
        const struct tensor *need[] = {&L->attn_norm, &L->attn_q, &L->attn_k, &L->attn_v,
                                       &L->attn_output, &L->ffn_norm, &L->ffn_gate, &L->ffn_up,
                                       &L->ffn_down, &L->attn_q_bias, &L->attn_k_bias,
                                       &L->attn_v_bias};
        size_t n_need = has_bias ? 12 : 9;
        for (size_t i = 0; i < n_need; i++)
            if (!need[i]->data)
                return fail(err, "%s: layer %u is missing tensor %zu of its set "
                            "(norms, q, k, v, output, ffn, biases)", m->path, l, i);
    }
    return 0;
}

/* Rotation frequency of each adjacent pair: theta^(-2i/head_dim) as llama2.c
 * computes it, then Llama 3.1 rope scaling (transformers modeling_rope_utils.py
 * _compute_llama3_parameters; formula in FACTS.md). */
static void compute_rope_inv_freq(const struct hearth_header *h, float *inv_freq)
{
    for (uint32_t i = 0; i < h->head_dim / 2; i++) {
        float freq = 1.0f / powf(h->rope_theta, (float)(2 * i) / (float)h->head_dim);
        if (h->rope_scaling == HEARTH_ROPE_SCALING_LLAMA3) {
            float wavelen = 2.0f * (float)M_PI / freq;
            float low_wl = (float)h->rope_orig_max_seq_len / h->rope_low_freq_factor;
            float high_wl = (float)h->rope_orig_max_seq_len / h->rope_high_freq_factor;
            if (wavelen > low_wl) {
                freq /= h->rope_factor;
            } else if (wavelen >= high_wl) {
                float smooth = ((float)h->rope_orig_max_seq_len / wavelen - h->rope_low_freq_factor) /
                               (h->rope_high_freq_factor - h->rope_low_freq_factor);
                freq = (1.0f - smooth) * freq / h->rope_factor + smooth * freq;
            }
        }
        inv_freq[i] = freq;
    }
}

void model_setup_derived(struct model *m)
{
    if (m->cfg.flags & HEARTH_FLAG_TIED_EMBEDDINGS)
        m->output = m->token_embd;
    compute_rope_inv_freq(&m->cfg, m->rope_inv_freq);
}

static int map_file(struct model *m, const char *path, char *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return fail(err, "%s: cannot open model file: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size < HEARTH_HEADER_BYTES + HEARTH_CHECKSUM_BYTES) {
        close(fd);
        return fail(err, "%s: file is %lld bytes, too short for a hearth model (header alone is "
                    "%u)", path, (long long)st.st_size, HEARTH_HEADER_BYTES);
    }
    /* MAP_POPULATE maps every page now, so the first token does not pay a
     * page fault per 4 KiB of weights. */
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return fail(err, "%s: mmap failed: %s", path, strerror(errno));
    m->map = map;
    m->map_bytes = (uint64_t)st.st_size;
    return 0;
}

static int check_header(struct model *m, char *err)
{
    const char *path = m->path;
    memcpy(&m->cfg, m->map, sizeof m->cfg);
    if (memcmp(m->cfg.magic, HEARTH_MAGIC, 4))
        return fail(err, "%s: not a hearth model file (bad magic; export it with ./export)", path);
    if (m->cfg.version != HEARTH_VERSION)
        return fail(err, "%s: format version %u, this build reads version %u (re-export the model)",
                    path, m->cfg.version, HEARTH_VERSION);
    if (m->cfg.file_bytes != m->map_bytes)
        return fail(err, "%s: file is %llu bytes but its header says %llu (truncated or damaged)",
                    path, (unsigned long long)m->map_bytes, (unsigned long long)m->cfg.file_bytes);
    if (check_config(&m->cfg, path, err) < 0 || check_sections(&m->cfg, path, err) < 0)
        return -1;
    uint64_t dir_end = m->cfg.tensors_offset +
                       (uint64_t)m->cfg.n_tensors * sizeof(struct hearth_tensor_entry);
    if (m->cfg.data_offset % HEARTH_TENSOR_ALIGN || m->cfg.data_offset < dir_end ||
        m->cfg.data_offset > m->map_bytes - HEARTH_CHECKSUM_BYTES)
        return fail(err, "%s: header field data_offset = %llu is misaligned or outside the file",
                    path, (unsigned long long)m->cfg.data_offset);
    return 0;
}

static int load_tokenizer(struct model *m, char *err)
{
    char tok_err[HEARTH_ERR_BYTES];
    if (tokenizer_init(&m->tok, m->map + m->cfg.tokenizer_offset, m->cfg.tokenizer_bytes,
                       m->cfg.bos_id, m->cfg.eos_id, tok_err) < 0)
        return fail(err, "%s: tokenizer section (offset %llu): %s", m->path,
                    (unsigned long long)m->cfg.tokenizer_offset, tok_err);
    uint32_t n_tokens = m->tok.hdr.n_tokens;
    if (n_tokens != m->cfg.vocab_size) {
        tokenizer_free(&m->tok);
        return fail(err, "%s: tokenizer has %u tokens but the header says vocab_size %u", m->path,
                    n_tokens, m->cfg.vocab_size);
    }
    return 0;
}

int model_open(struct model *m, const char *path, char *err)
{
    memset(m, 0, sizeof *m);
    m->path = path;
    if (map_file(m, path, err) < 0)
        return -1;
    if (check_header(m, err) < 0)
        goto fail_unmap;
    m->layers = calloc(m->cfg.n_layers, sizeof *m->layers);
    m->rope_inv_freq = malloc(m->cfg.head_dim / 2 * sizeof(float));
    if (!m->layers || !m->rope_inv_freq) {
        fail(err, "%s: out of memory", path);
        goto fail_free;
    }
    for (uint32_t i = 0; i < m->cfg.n_tensors; i++) {
        struct hearth_tensor_entry e;
        memcpy(&e, m->map + m->cfg.tensors_offset + (uint64_t)i * sizeof e, sizeof e);
        if (load_tensor(m, &e, i, err) < 0)
            goto fail_free;
    }
    if (check_all_present(m, err) < 0 || load_tokenizer(m, err) < 0)
        goto fail_free;
    model_setup_derived(m);
    return 0;
fail_free:
    free(m->layers);
    free(m->rope_inv_freq);
fail_unmap:
    munmap((void *)m->map, m->map_bytes);
    memset(m, 0, sizeof *m);
    return -1;
}

void model_close(struct model *m)
{
    if (!m->map)
        return;
    tokenizer_free(&m->tok);
    free(m->layers);
    free(m->rope_inv_freq);
    munmap((void *)m->map, m->map_bytes);
    memset(m, 0, sizeof *m);
}

int model_verify_checksum(const struct model *m, char *err)
{
    uint64_t body = m->map_bytes - HEARTH_CHECKSUM_BYTES, stored;
    memcpy(&stored, m->map + body, sizeof stored);
    uint64_t computed = hearth_fnv1a(HEARTH_FNV_OFFSET, m->map, body);
    if (computed != stored)
        return fail(err, "%s: checksum mismatch: stored %016llx, computed %016llx (file damaged)",
                    m->path, (unsigned long long)stored, (unsigned long long)computed);
    return 0;
}

/* ------------------------------------------------------------------ state */

static uint32_t kv_elem_bytes(uint32_t kv_type)
{
    return kv_type == HEARTH_F16 ? 2u : 4u;
}

static uint64_t kv_positions(uint32_t max_seq)
{
    return ((uint64_t)max_seq + KV_BLOCK - 1) / KV_BLOCK * KV_BLOCK;
}

uint64_t state_kv_bytes(const struct model *m, uint32_t max_seq, uint32_t kv_type)
{
    const struct hearth_header *h = &m->cfg;
    return 2ull * h->n_layers * h->n_kv_heads * kv_positions(max_seq) * h->head_dim *
           kv_elem_bytes(kv_type);
}

/* Sizes of the activation buffers, in floats (act_q: int8 values). */
struct state_sizes {
    uint64_t dim, wide, hidden, q_dim, kv_dim, rope, act_q;
};

static struct state_sizes state_sizes_of(const struct hearth_header *h, uint64_t batch)
{
    struct state_sizes z;
    z.q_dim = (uint64_t)h->n_heads * h->head_dim;
    z.kv_dim = (uint64_t)h->n_kv_heads * h->head_dim;
    z.dim = batch * h->dim;
    z.wide = batch * (z.q_dim > h->dim ? z.q_dim : h->dim);
    z.hidden = batch * h->hidden_dim;
    z.rope = batch * (h->head_dim / 2);
    uint64_t widest = z.wide > z.hidden ? z.wide : z.hidden; /* any batch of matmul inputs */
    z.act_q = (widest + QK - 1) / QK * QK;
    z.q_dim *= batch;
    z.kv_dim *= batch;
    return z;
}

static uint32_t batch_of(const struct state_options *o)
{
    uint32_t b = o->max_batch ? o->max_batch : STATE_DEFAULT_BATCH;
    return b < o->max_seq ? b : o->max_seq;
}

static int threads_of(const struct state_options *o)
{
    return o->pool ? pool_size(o->pool) : 1;
}

uint64_t state_bytes(const struct model *m, const struct state_options *o)
{
    struct state_sizes z = state_sizes_of(&m->cfg, batch_of(o));
    uint64_t floats = 2 * z.dim + z.wide + 2 * z.hidden + z.q_dim + 2 * z.kv_dim + 2 * z.rope +
                      m->cfg.vocab_size +
                      (uint64_t)threads_of(o) * (m->cfg.n_heads / m->cfg.n_kv_heads) * o->max_seq +
                      z.act_q / QK * 3;
    return state_kv_bytes(m, o->max_seq, o->kv_type) + floats * sizeof(float) + z.act_q;
}

/* The attention kernels that go with a matrix kernel table. */
static const struct attn_kernels *attn_for(const struct kernels *k)
{
    return strcmp(k->name, "scalar") == 0 ? &attn_kernels_scalar : &attn_kernels_avx2;
}

int state_open(struct state *s, const struct model *m, const struct state_options *o, char *err)
{
    const struct hearth_header *h = &m->cfg;
    memset(s, 0, sizeof *s);
    if (o->max_seq == 0 || o->max_seq > h->max_seq_len)
        return fail(err, "context of %u positions is outside 1..%u", o->max_seq, h->max_seq_len);
    if (o->kv_type != HEARTH_F16 && o->kv_type != HEARTH_F32)
        return fail(err, "KV cache type %u is neither f16 nor f32", o->kv_type);
    s->kern = o->kern ? o->kern : kernels_select(NULL, err);
    if (!s->kern)
        return -1;
    s->attn = attn_for(s->kern);
    s->pool = o->pool;
    s->n_threads = threads_of(o);
    s->max_seq = o->max_seq;
    s->max_batch = batch_of(o);
    s->kv_type = o->kv_type;
    s->kv_head_elems = kv_positions(o->max_seq) * h->head_dim;
    struct state_sizes z = state_sizes_of(h, s->max_batch);
    uint64_t kv_bytes = state_kv_bytes(m, o->max_seq, o->kv_type) / 2;
    s->x = calloc(z.dim, sizeof(float));
    s->xb = calloc(z.wide, sizeof(float));
    s->xb2 = calloc(z.dim, sizeof(float));
    s->hb = calloc(z.hidden, sizeof(float));
    s->hb2 = calloc(z.hidden, sizeof(float));
    s->q = calloc(z.q_dim, sizeof(float));
    s->k = calloc(z.kv_dim, sizeof(float));
    s->v = calloc(z.kv_dim, sizeof(float));
    s->att = calloc((uint64_t)s->n_threads * (h->n_heads / h->n_kv_heads) * o->max_seq,
                    sizeof(float));
    s->rope_cos = calloc(z.rope, sizeof(float));
    s->rope_sin = calloc(z.rope, sizeof(float));
    s->logits = calloc(h->vocab_size, sizeof(float));
    s->key_cache = calloc(kv_bytes, 1);
    s->value_cache = calloc(kv_bytes, 1);
    s->act.q = aligned_alloc(64, (z.act_q + 63) / 64 * 64);
    s->act.d = calloc(z.act_q / QK, sizeof(float));
    s->act.sum = calloc(z.act_q / QK, sizeof(int32_t));
    s->act.q4_start = calloc(z.act_q / QK, sizeof(int32_t));
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->k || !s->v || !s->att ||
        !s->rope_cos || !s->rope_sin || !s->logits || !s->key_cache || !s->value_cache ||
        !s->act.q || !s->act.d || !s->act.sum || !s->act.q4_start) {
        state_free(s);
        return fail(err, "out of memory for a %u-position context (KV cache %llu MiB)", o->max_seq,
                    (unsigned long long)(2 * kv_bytes >> 20));
    }
    return 0;
}

int state_init(struct state *s, const struct model *m, uint32_t max_seq,
               const struct kernels *kern, struct thread_pool *pool, char *err)
{
    struct state_options o = {max_seq, 0, HEARTH_F32, kern, pool};
    return state_open(s, m, &o, err);
}

void state_free(struct state *s)
{
    float *all[] = {s->x, s->xb, s->xb2, s->hb, s->hb2, s->q, s->k, s->v, s->att,
                    s->rope_cos, s->rope_sin, s->logits};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(s->key_cache);
    free(s->value_cache);
    free(s->act.q);
    free(s->act.d);
    free(s->act.sum);
    free(s->act.q4_start);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------- forward pass */

/* out = weight * x / sqrt(mean(x^2) + eps), as llama2.c rmsnorm. */
static void rmsnorm(float *out, const float *x, const float *weight, uint32_t n, float eps)
{
    float ss = 0.0f;
    for (uint32_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (uint32_t i = 0; i < n; i++)
        out[i] = weight[i] * (ss * x[i]);
}

/* Matrix products that share one input run in one pool_run: one barrier
 * for q, k and v together, one for gate and up. The input is n_tok tokens
 * of cols values, and job i's output is n_tok rows of its matrix's rows.
 * Each thread takes a fixed, contiguous share of every matrix's 16-row
 * groups, and each output is computed whole by one thread in an order
 * fixed by the kernels, so the result depends neither on the thread count
 * nor on n_tok. */
struct matmul_job {
    float *out;
    const struct tensor *w;
};

struct matmul_batch {
    const struct kernels *kern;
    const float *x;           /* the input, for F32 weights */
    const struct q8_act *act; /* the same input quantized, for Q8_0/Q4_0 */
    uint32_t n_tok;
    const struct matmul_job *jobs;
    int n_jobs;
    int swiglu; /* jobs are gate and up: then out_0 = silu(out_0) * out_1 */
};

/* silu(gate) * up over rows [r0, r1) of every token, as llama2.c's FFN.
 * Fused into the gate/up matmul: the thread that computed those rows
 * applies it, so no thread waits while one runs it over the whole batch. */
static void swiglu_rows(float *gate, const float *up, uint64_t rows, uint32_t n_tok, uint64_t r0,
                        uint64_t r1)
{
    for (uint32_t t = 0; t < n_tok; t++)
        for (uint64_t i = t * rows + r0; i < t * rows + r1; i++) {
            float g = gate[i];
            gate[i] = g * (1.0f / (1.0f + expf(-g))) * up[i];
        }
}

static void matmul_rows(const struct matmul_batch *b, const struct matmul_job *j, uint64_t r0,
                        uint64_t r1)
{
    const struct kernels *k = b->kern;
    const struct tensor *w = j->w;
    if (b->n_tok == 1) {
        if (w->type == HEARTH_F32)
            k->matvec_f32(j->out, w->data, b->x, w->cols, r0, r1);
        else if (w->type == HEARTH_Q8_0)
            k->matvec_q8_0(j->out, w->data, b->act, w->cols, r0, r1);
        else
            k->matvec_q4_0(j->out, w->data, b->act, w->cols, r0, r1);
    } else if (w->type == HEARTH_F32) {
        k->gemm_f32(j->out, w->rows, w->data, b->x, b->n_tok, w->cols, r0, r1);
    } else if (w->type == HEARTH_Q8_0) {
        k->gemm_q8_0(j->out, w->rows, w->data, b->act, b->n_tok, w->cols, r0, r1);
    } else {
        k->gemm_q4_0(j->out, w->rows, w->data, b->act, b->n_tok, w->cols, r0, r1);
    }
}

static void matmul_worker(void *ctx, int thread, int n_threads)
{
    const struct matmul_batch *b = ctx;
    for (int i = 0; i < b->n_jobs; i++) {
        const struct matmul_job *j = &b->jobs[i];
        unsigned long long g0, g1, rows = j->w->rows;
        pool_split((rows + ROW_GROUP - 1) / ROW_GROUP, thread, n_threads, &g0, &g1);
        uint64_t r0 = g0 * ROW_GROUP, r1 = g1 * ROW_GROUP < rows ? g1 * ROW_GROUP : rows;
        if (r0 < r1)
            matmul_rows(b, j, r0, r1);
        if (b->swiglu && i == 1 && r0 < r1) /* gate and up share rows and partition */
            swiglu_rows(b->jobs[0].out, j->out, rows, b->n_tok, r0, r1);
    }
}

/* out_i = W_i x for each job and each of the n_tok tokens of x; all W_i
 * have x's row length as their cols. When any W_i is Q8_0/Q4_0, s->act
 * must already hold x quantized (the per-token steps below do it). */
static void matmul(struct state *s, const float *x, uint32_t n_tok, const struct matmul_job *jobs,
                   int n_jobs, int swiglu)
{
    struct matmul_batch b = {s->kern, x, &s->act, n_tok, jobs, n_jobs, swiglu};
    pool_run(s->pool, matmul_worker, &b);
}

static int quantized(const struct tensor *w)
{
    return w->type != HEARTH_F32;
}

void model_matmul(struct state *s, float *out, const float *x, uint32_t n_tok,
                  const struct tensor *w)
{
    struct matmul_job job = {out, w};
    if (quantized(w))
        s->kern->quantize_act(x, (uint64_t)n_tok * w->cols, &s->act);
    matmul(s, x, n_tok, &job, 1, 0);
}

/* Row `token` of the embedding table as floats. */
static void embed(const struct tensor *e, int32_t token, float *out)
{
    if (e->type == HEARTH_F32)
        memcpy(out, (const float *)e->data + (uint64_t)token * e->cols, e->cols * sizeof(float));
    else
        unpack_row(e->type, e->data, e->cols, (uint64_t)token, out);
}

/* Adds the bias vector (if the model has one) to row t of x. */
static void add_bias(float *x, const struct tensor *bias, uint32_t t)
{
    if (!bias->data)
        return;
    const float *b = bias->data;
    for (uint64_t i = 0; i < bias->cols; i++)
        x[t * bias->cols + i] += b[i];
}

/* Rotates adjacent pairs (2i, 2i+1) of every head in vec by the angles of
 * its position (FACTS.md: the interleaved order export produces). */
static void rope_rotate(float *vec, uint32_t n_heads, uint32_t head_dim, const float *cos_t,
                        const float *sin_t)
{
    for (uint32_t h = 0; h < n_heads; h++) {
        float *v = vec + (uint64_t)h * head_dim;
        for (uint32_t i = 0; i < head_dim / 2; i++) {
            float v0 = v[2 * i], v1 = v[2 * i + 1];
            v[2 * i] = v0 * cos_t[i] - v1 * sin_t[i];
            v[2 * i + 1] = v0 * sin_t[i] + v1 * cos_t[i];
        }
    }
}

/* The cache of (layer, kv head), keys or values, as the attention kernels
 * read it. */
static void *kv_head(const struct state *s, void *cache, uint32_t n_kv_heads, uint32_t layer,
                     uint32_t kv_head_index)
{
    uint64_t head = (uint64_t)layer * n_kv_heads + kv_head_index;
    return (uint8_t *)cache + head * s->kv_head_elems * kv_elem_bytes(s->kv_type);
}

static void kv_put(void *base, uint32_t kv_type, uint64_t index, float value)
{
    if (kv_type == HEARTH_F16)
        ((uint16_t *)base)[index] = f32_to_fp16(value);
    else
        ((float *)base)[index] = value;
}

/* Stores token t's key and value of this layer (s->k, s->v row t) at
 * position pos, in the layout of kernels/attention.h. */
static void kv_store(struct state *s, const struct hearth_header *h, uint32_t layer, uint32_t pos,
                     uint32_t t)
{
    uint32_t hd = h->head_dim, kv_dim = h->n_kv_heads * hd;
    uint64_t block = (uint64_t)(pos / KV_BLOCK) * hd * KV_BLOCK + pos % KV_BLOCK;
    for (uint32_t g = 0; g < h->n_kv_heads; g++) {
        void *keys = kv_head(s, s->key_cache, h->n_kv_heads, layer, g);
        void *values = kv_head(s, s->value_cache, h->n_kv_heads, layer, g);
        const float *k = s->k + (uint64_t)t * kv_dim + (uint64_t)g * hd;
        const float *v = s->v + (uint64_t)t * kv_dim + (uint64_t)g * hd;
        for (uint32_t i = 0; i < hd; i++) {
            kv_put(keys, s->kv_type, block + (uint64_t)i * KV_BLOCK, k[i]);
            kv_put(values, s->kv_type, (uint64_t)pos * hd + i, v[i]);
        }
    }
}

/* Causal attention of every query head of n_tok tokens (the first at
 * position pos) over this layer's cache; the n_heads / n_kv_heads query
 * heads that share a kv head go through the kernels together, and a token
 * sees the positions up to its own (the last sliding_window of them when
 * the model has a window). Work items are (kv head, token) pairs, kv-head-
 * major, split into fixed contiguous shares: every kv head costs the same,
 * so the shares are even. */
struct attention_job {
    const struct hearth_header *h;
    struct state *s;
    uint32_t layer, pos, n_tok;
};

static void attention_one(const struct attention_job *job, uint32_t kvh, uint32_t t, float *att)
{
    const struct hearth_header *h = job->h;
    struct state *s = job->s;
    uint32_t hd = h->head_dim, group = h->n_heads / h->n_kv_heads, pos = job->pos + t;
    uint32_t first = (h->sliding_window && pos >= h->sliding_window) ? pos - h->sliding_window + 1 : 0;
    uint32_t n = pos + 1 - first;
    uint64_t heads = (uint64_t)t * h->n_heads * hd + (uint64_t)kvh * group * hd;
    const uint8_t *values = kv_head(s, s->value_cache, h->n_kv_heads, job->layer, kvh);
    s->attn->scores(att, s->max_seq, s->q + heads, group,
                    kv_head(s, s->key_cache, h->n_kv_heads, job->layer, kvh), s->kv_type, first,
                    pos + 1, hd, 1.0f / sqrtf((float)hd));
    for (uint32_t g = 0; g < group; g++)
        s->attn->softmax(att + (uint64_t)g * s->max_seq, n);
    s->attn->values(s->xb + heads, att, s->max_seq, group,
                    values + (uint64_t)first * hd * kv_elem_bytes(s->kv_type), s->kv_type, n, hd);
}

static void attention_worker(void *ctx, int thread, int n_threads)
{
    const struct attention_job *job = ctx;
    const struct hearth_header *h = job->h;
    float *att = job->s->att +
                 (uint64_t)thread * (h->n_heads / h->n_kv_heads) * job->s->max_seq;
    unsigned long long i0, i1;
    pool_split((unsigned long long)h->n_kv_heads * job->n_tok, thread, n_threads, &i0, &i1);
    for (unsigned long long i = i0; i < i1; i++)
        attention_one(job, (uint32_t)(i / job->n_tok), (uint32_t)(i % job->n_tok), att);
}

/* The rotation angles of positions pos .. pos + n_tok - 1. */
static void rope_angles(const struct model *m, struct state *s, uint32_t pos, uint32_t n_tok)
{
    uint32_t half = m->cfg.head_dim / 2;
    for (uint32_t t = 0; t < n_tok; t++)
        for (uint32_t i = 0; i < half; i++) {
            float angle = (float)(pos + t) * m->rope_inv_freq[i];
            s->rope_cos[(uint64_t)t * half + i] = cosf(angle);
            s->rope_sin[(uint64_t)t * half + i] = sinf(angle);
        }
}

/* x[i] += y[i] for n values. */
static void add_rows(float *x, const float *y, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* The work between the matrix products (residual adds, norms, biases,
 * RoPE, KV stores, activation quantization) is independent per token. For
 * a batch it runs on the pool, each thread a fixed contiguous share of the
 * tokens, so no thread spins while the caller does it alone; a token's
 * arithmetic is the same whichever thread runs it, so results do not depend
 * on the split. A single token (decode) runs on the calling thread: its
 * share is too small to pay for waking the pool. */
enum token_step {
    STEP_NORM_ATTN, /* x += xb (the previous layer's FFN output) unless layer 0; xb = norm(x) */
    STEP_QKV,       /* biases, RoPE of q and k, k and v into the cache */
    STEP_NORM_FFN,  /* x += xb2 (the attention output); xb = norm(x) */
    STEP_RESIDUAL,  /* x += xb (the last layer's FFN output, after all layers) */
    STEP_NONE,      /* only the quantization */
};

struct token_job {
    const struct model *m;
    struct state *s;
    uint32_t layer, pos, n_tok;
    enum token_step step;
    const float *quantize; /* NULL, or rows of quantize_cols to quantize into s->act */
    uint64_t quantize_cols;
};

/* Biases, RoPE of q and k, then k and v into the cache, for token t. */
static void qkv_finish(const struct token_job *j, const struct layer *L, uint32_t t)
{
    const struct hearth_header *h = &j->m->cfg;
    struct state *s = j->s;
    uint32_t hd = h->head_dim, half = hd / 2;
    uint64_t q_dim = (uint64_t)h->n_heads * hd, kv_dim = (uint64_t)h->n_kv_heads * hd;
    add_bias(s->q, &L->attn_q_bias, t);
    add_bias(s->k, &L->attn_k_bias, t);
    add_bias(s->v, &L->attn_v_bias, t);
    const float *c = s->rope_cos + (uint64_t)t * half, *sn = s->rope_sin + (uint64_t)t * half;
    rope_rotate(s->q + t * q_dim, h->n_heads, hd, c, sn);
    rope_rotate(s->k + t * kv_dim, h->n_kv_heads, hd, c, sn);
    kv_store(s, h, j->layer, j->pos + t, t);
}

static void token_step_one(const struct token_job *j, uint32_t t)
{
    const struct hearth_header *h = &j->m->cfg;
    struct state *s = j->s;
    uint32_t dim = h->dim;
    float *x = s->x + (uint64_t)t * dim, *xb = s->xb + (uint64_t)t * dim;
    switch (j->step) {
    case STEP_NORM_ATTN:
        if (j->layer > 0)
            add_rows(x, xb, dim);
        rmsnorm(xb, x, j->m->layers[j->layer].attn_norm.data, dim, h->norm_eps);
        break;
    case STEP_QKV:
        qkv_finish(j, &j->m->layers[j->layer], t);
        break;
    case STEP_NORM_FFN:
        add_rows(x, s->xb2 + (uint64_t)t * dim, dim);
        rmsnorm(xb, x, j->m->layers[j->layer].ffn_norm.data, dim, h->norm_eps);
        break;
    case STEP_RESIDUAL:
        add_rows(x, xb, dim);
        break;
    case STEP_NONE:
        break;
    }
}

static void token_worker(void *ctx, int thread, int n_threads)
{
    const struct token_job *j = ctx;
    unsigned long long t0, t1;
    pool_split(j->n_tok, thread, n_threads, &t0, &t1);
    for (uint32_t t = (uint32_t)t0; t < t1; t++)
        token_step_one(j, t);
    if (j->quantize && t1 > t0) {
        uint64_t cols = j->quantize_cols;
        struct q8_act a = q8_act_from(&j->s->act, t0, cols);
        j->s->kern->quantize_act(j->quantize + t0 * cols, (t1 - t0) * cols, &a);
    }
}

/* Runs one step over the n_tok tokens; quantizes rows of cols values at
 * quantize (one matmul input) afterwards when that is not NULL. */
static void tokens_run(const struct model *m, struct state *s, uint32_t layer, uint32_t pos,
                       uint32_t n_tok, enum token_step step, const float *quantize, uint64_t cols)
{
    struct token_job j = {m, s, layer, pos, n_tok, step, quantize, cols};
    if (n_tok == 1)
        token_worker(&j, 0, 1);
    else
        pool_run(s->pool, token_worker, &j);
}

/* One layer over the n_tok tokens in s->x (positions pos ..). On return
 * the layer's FFN output is in s->xb, not yet added to s->x: the next
 * step that reads s->x (the next layer's STEP_NORM_ATTN, or
 * STEP_RESIDUAL) adds it. */
static void layer_forward(const struct model *m, struct state *s, uint32_t l, uint32_t pos,
                          uint32_t n_tok)
{
    const struct hearth_header *h = &m->cfg;
    const struct layer *L = &m->layers[l];
    uint32_t dim = h->dim, q_dim = h->n_heads * h->head_dim;
    int q8 = quantized(&L->attn_q) || quantized(&L->attn_k) || quantized(&L->attn_v);
    tokens_run(m, s, l, pos, n_tok, STEP_NORM_ATTN, q8 ? s->xb : NULL, dim);
    struct matmul_job qkv[3] = {{s->q, &L->attn_q}, {s->k, &L->attn_k}, {s->v, &L->attn_v}};
    matmul(s, s->xb, n_tok, qkv, 3, 0);
    tokens_run(m, s, l, pos, n_tok, STEP_QKV, NULL, 0);
    struct attention_job att = {h, s, l, pos, n_tok};
    pool_run(s->pool, attention_worker, &att);
    if (quantized(&L->attn_output))
        tokens_run(m, s, l, pos, n_tok, STEP_NONE, s->xb, q_dim);
    struct matmul_job out = {s->xb2, &L->attn_output};
    matmul(s, s->xb, n_tok, &out, 1, 0);
    q8 = quantized(&L->ffn_gate) || quantized(&L->ffn_up);
    tokens_run(m, s, l, pos, n_tok, STEP_NORM_FFN, q8 ? s->xb : NULL, dim);
    struct matmul_job gate_up[2] = {{s->hb, &L->ffn_gate}, {s->hb2, &L->ffn_up}};
    matmul(s, s->xb, n_tok, gate_up, 2, 1);
    if (quantized(&L->ffn_down))
        tokens_run(m, s, l, pos, n_tok, STEP_NONE, s->hb, h->hidden_dim);
    struct matmul_job down = {s->xb, &L->ffn_down};
    matmul(s, s->hb, n_tok, &down, 1, 0);
}

float *model_prefill(const struct model *m, struct state *s, const int32_t *tokens, uint32_t n,
                     uint32_t pos)
{
    const struct hearth_header *h = &m->cfg;
    uint32_t dim = h->dim, n_tok = 0;
    for (uint32_t done = 0; done < n; done += n_tok, pos += n_tok) {
        n_tok = n - done < s->max_batch ? n - done : s->max_batch;
        for (uint32_t t = 0; t < n_tok; t++)
            embed(&m->token_embd, tokens[done + t], s->x + (uint64_t)t * dim);
        rope_angles(m, s, pos, n_tok);
        for (uint32_t l = 0; l < h->n_layers; l++)
            layer_forward(m, s, l, pos, n_tok);
        tokens_run(m, s, h->n_layers, pos, n_tok, STEP_RESIDUAL, NULL, 0);
    }
    float *last = s->x + (uint64_t)(n_tok - 1) * dim;
    rmsnorm(last, last, m->output_norm.data, dim, h->norm_eps);
    model_matmul(s, s->logits, last, 1, &m->output);
    return s->logits;
}

float *model_forward(const struct model *m, struct state *s, int32_t token, uint32_t pos)
{
    return model_prefill(m, s, &token, 1, pos);
}
