/* exporter/hf.c - reads a Hugging Face Llama-family model folder: config.json
 * (plus generation_config.json when present), the safetensors weights (one
 * model.safetensors, or shards listed by model.safetensors.index.json),
 * the tokenizer (tokenizer.model, else tokenizer.json) and, when present,
 * tokenizer_config.json / chat_template.jinja (chat template, whether
 * prompts start with BOS, the eos token), into struct source.
 *
 * It describes tensors (file, offset, type, shape, the rotary row order to
 * undo) and never reads or converts weight data; the writer streams it.
 * Accepted: LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM (see
 * HF_ARCHS for how they differ); anything else is refused by name.
 *
 * Config field names and defaults: transformers LlamaConfig
 * (models/llama/configuration_llama.py: num_key_value_heads defaults to
 * num_attention_heads, rope_theta to 10000, tie_word_embeddings, attention_bias
 * and mlp_bias to false, hidden_act to "silu"); rope_scaling "llama3":
 * transformers modeling_rope_utils.py, _compute_llama3_parameters (FACTS.md).
 * Tensor names: transformers LlamaModel / LlamaForCausalLM state dict; the
 * hearth names follow GGUF (llama.cpp gguf-py constants.py, MODEL_TENSOR). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../chat.h"
#include "../json.h"
#include "safetensors.h"
#include "source.h"

/* Upper limits on config values. Far above real models (Llama 3.1 405B:
 * dim 16384, hidden 53248, 126 layers, 128 heads; vocabularies up to a few
 * hundred thousand); they keep every size product far from overflow. */
#define HF_MAX_DIM (1 << 16)
#define HF_MAX_HIDDEN (1 << 20)
#define HF_MAX_LAYERS 1024
#define HF_MAX_HEADS 1024
#define HF_MAX_VOCAB (1 << 22)
#define HF_MAX_CONTEXT (1 << 26)
#define HF_MAX_JSON_BYTES (64u << 20) /* config.json, index, generation_config */

/* ---- small helpers ------------------------------------------------------- */

static int join_path(char *out, const char *dir, const char *name, char *err)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_MAX)
        return fail(err, "%s/%s: path too long", dir, name);
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int read_json_file(const char *path, struct json_doc **doc, char *err)
{
    return json_parse_file(path, HF_MAX_JSON_BYTES, JSON_DEFAULT_MAX_DEPTH, doc, err);
}

/* ---- config.json --------------------------------------------------------- */

/* What config.json says beyond struct hearth_header. */
struct hf_extra {
    int tied;
    int attention_bias;
    int has_bos;
    uint32_t bos_id;
    uint32_t n_eos;                       /* eos ids from config.json, first = eos */
    uint32_t eos[HEARTH_MAX_STOP_IDS];
};

/* The architectures hearth exports and how each differs from Llama. All
 * three share LlamaForCausalLM's tensor names and rotate-half q/k order
 * (transformers modeling_mistral.py and modeling_qwen2.py apply the same
 * rotate_half as modeling_llama.py), so the same unpermutation applies.
 * Mistral: MistralConfig sliding_window, default 4096 when absent, null
 * meaning none (configuration_mistral.py). Qwen2: Qwen2Attention always
 * builds q/k/v with bias=True and o_proj without; Qwen2Config's
 * sliding_window counts only when use_sliding_window is true, and then only
 * from layer max_window_layers on, which one header window cannot express. */
enum window_rule { W_LLAMA, W_MISTRAL, W_QWEN2 };

struct hf_arch {
    const char *architecture, *model_type;
    uint8_t window;      /* enum window_rule */
    uint8_t always_bias; /* q/k/v biases present whatever attention_bias says */
};

static const struct hf_arch HF_ARCHS[] = {
    {"LlamaForCausalLM", "llama", W_LLAMA, 0},
    {"MistralForCausalLM", "mistral", W_MISTRAL, 0},
    {"Qwen2ForCausalLM", "qwen2", W_QWEN2, 1},
};
#define HF_N_ARCHS (sizeof HF_ARCHS / sizeof HF_ARCHS[0])
#define HF_SUPPORTED "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"

static int find_architecture(const struct json *root, const char *what,
                             const struct hf_arch **out, char *err)
{
    const struct json *arch, *type;
    if (json_get_typed(root, what, "architectures", JSON_REQUIRED, JSON_ARRAY, &arch, err) < 0)
        return -1;
    *out = NULL;
    for (size_t i = 0; i < arch->n && !*out; i++)
        for (size_t k = 0; k < HF_N_ARCHS && !*out; k++)
            if (json_is_string(json_at(arch, i), HF_ARCHS[k].architecture))
                *out = &HF_ARCHS[k];
    if (!*out) {
        const struct json *first = json_at(arch, 0);
        int str = first && first->type == JSON_STRING;
        return fail(err, "%s: architectures [%s%.64s%s] is not supported; hearth exports: "
                    HF_SUPPORTED, what, str ? "\"" : "", str ? first->u.str : "",
                    str ? "\"" : "");
    }
    if (json_get_typed(root, what, "model_type", JSON_REQUIRED, JSON_STRING, &type, err) < 0)
        return -1;
    if (!json_is_string(type, (*out)->model_type))
        return fail(err, "%s: model_type \"%.64s\" does not match architectures \"%s\" "
                    "(expected \"%s\"); hearth exports: " HF_SUPPORTED, what, type->u.str,
                    (*out)->architecture, (*out)->model_type);
    return 0;
}

/* Reads a required positive integer field no larger than max. */
static int get_dim(const struct json *root, const char *what, const char *key, int64_t max,
                   uint32_t *out, char *err)
{
    int64_t v;
    if (json_get_int(root, what, key, JSON_REQUIRED, 1, max, &v, err) < 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int read_shape(const struct json *root, const char *what, struct hearth_header *c,
                      char *err)
{
    if (get_dim(root, what, "hidden_size", HF_MAX_DIM, &c->dim, err) < 0 ||
        get_dim(root, what, "intermediate_size", HF_MAX_HIDDEN, &c->hidden_dim, err) < 0 ||
        get_dim(root, what, "num_hidden_layers", HF_MAX_LAYERS, &c->n_layers, err) < 0 ||
        get_dim(root, what, "num_attention_heads", HF_MAX_HEADS, &c->n_heads, err) < 0 ||
        get_dim(root, what, "vocab_size", HF_MAX_VOCAB, &c->vocab_size, err) < 0 ||
        get_dim(root, what, "max_position_embeddings", HF_MAX_CONTEXT, &c->max_seq_len, err) < 0)
        return -1;
    int64_t kv = c->n_heads, head_dim;
    if (json_get_int(root, what, "num_key_value_heads", JSON_OPTIONAL, 1, HF_MAX_HEADS, &kv,
                     err) < 0)
        return -1;
    c->n_kv_heads = (uint32_t)kv;
    if (c->dim % c->n_heads)
        return fail(err, "%s: num_attention_heads %u does not divide hidden_size %u", what,
                    c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads)
        return fail(err, "%s: num_key_value_heads %u does not divide num_attention_heads %u",
                    what, c->n_kv_heads, c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    if (c->head_dim % 2)
        return fail(err, "%s: head dimension hidden_size / num_attention_heads = %u is odd; "
                    "rotary embeddings need it even", what, c->head_dim);
    int r = json_get_int(root, what, "head_dim", JSON_OPTIONAL, 1, HF_MAX_DIM, &head_dim, err);
    if (r < 0)
        return -1;
    if (r == 1 && (uint64_t)head_dim != c->head_dim)
        return fail(err, "%s: head_dim %" PRId64 " differs from hidden_size / "
                    "num_attention_heads = %u; hearth supports only head_dim = hidden / heads",
                    what, head_dim, c->head_dim);
    return 0;
}

/* A finite number in (lo, hi], as a float that is still in range. */
static int get_positive(const struct json *obj, const char *what, const char *key, int req,
                        double hi, float *out, char *err)
{
    double d;
    int r = json_get_num(obj, what, key, req, &d, err);
    if (r <= 0)
        return r;
    if (!(d > 0 && d <= hi) || !((float)d > 0))
        return fail(err, "%s: \"%s\" = %g must be a positive number no larger than %g", what,
                    key, d, hi);
    *out = (float)d;
    return 1;
}

static int read_rope_scaling(const struct json *root, const char *what, struct hearth_header *c,
                             char *err)
{
    const struct json *rs, *type = NULL;
    int r = json_get_typed(root, what, "rope_scaling", JSON_OPTIONAL, JSON_OBJECT, &rs, err);
    if (r <= 0)
        return r;
    char ctx[PATH_MAX + 32];
    snprintf(ctx, sizeof ctx, "%s: rope_scaling", what);
    /* transformers reads "rope_type", falling back to the older "type". */
    if (json_get_typed(rs, ctx, "rope_type", JSON_OPTIONAL, JSON_STRING, &type, err) < 0 ||
        (!type && json_get_typed(rs, ctx, "type", JSON_OPTIONAL, JSON_STRING, &type, err) < 0))
        return -1;
    if (!type)
        return fail(err, "%s has neither \"rope_type\" nor \"type\"", ctx);
    /* "default" is transformers' name for unscaled rotary embeddings. */
    if (json_is_string(type, "default"))
        return 0;
    if (!json_is_string(type, "llama3"))
        return fail(err, "%s type \"%.64s\" is not supported; supported: llama3 (or null)", ctx,
                    type->u.str);
    int64_t orig;
    if (get_positive(rs, ctx, "factor", JSON_REQUIRED, 1e6, &c->rope_factor, err) < 0 ||
        get_positive(rs, ctx, "low_freq_factor", JSON_REQUIRED, 1e6, &c->rope_low_freq_factor,
                     err) < 0 ||
        get_positive(rs, ctx, "high_freq_factor", JSON_REQUIRED, 1e6, &c->rope_high_freq_factor,
                     err) < 0 ||
        json_get_int(rs, ctx, "original_max_position_embeddings", JSON_REQUIRED, 1,
                     HF_MAX_CONTEXT, &orig, err) < 0)
        return -1;
    /* The smoothing formula divides by high - low (FACTS.md, llama3 scaling). */
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
        return fail(err, "%s: high_freq_factor %g must be larger than low_freq_factor %g", ctx,
                    c->rope_high_freq_factor, c->rope_low_freq_factor);
    c->rope_scaling = HEARTH_ROPE_SCALING_LLAMA3;
    c->rope_orig_max_seq_len = (uint32_t)orig;
    return 0;
}

/* eos_token_id: an id or a list of ids (null or absent: none). */
static int read_eos_ids(const struct json *obj, const char *what, uint32_t vocab,
                        uint32_t *ids, uint32_t *n_ids, char *err)
{
    const struct json *v = json_get(obj, "eos_token_id");
    if (!v || v->type == JSON_NULL)
        return 0;
    int64_t id;
    if (json_int64(v, &id)) {
        v = NULL; /* a single id: handled below as a list of one */
    } else if (v->type != JSON_ARRAY) {
        return fail(err, "%s: \"eos_token_id\" must be an integer or a list of integers, found "
                    "%s (byte %zu)", what, json_type_name(v->type), v->offset);
    }
    size_t n = v ? v->n : 1;
    for (size_t i = 0; i < n; i++) {
        if (v && !json_int64(json_at(v, i), &id))
            return fail(err, "%s: \"eos_token_id\"[%zu] is not an integer", what, i);
        if (id < 0 || id >= vocab)
            return fail(err, "%s: \"eos_token_id\" %" PRId64 " is not below vocab_size %u",
                        what, id, vocab);
        int seen = 0;
        for (uint32_t k = 0; k < *n_ids; k++)
            seen |= ids[k] == (uint32_t)id;
        if (seen)
            continue;
        if (*n_ids == HEARTH_MAX_STOP_IDS)
            return fail(err, "%s: more than %u distinct \"eos_token_id\" values", what,
                        HEARTH_MAX_STOP_IDS);
        ids[(*n_ids)++] = (uint32_t)id;
    }
    return 0;
}

/* The attention window, by the architecture's rule (see HF_ARCHS). */
static int read_window(const struct json *root, const char *what, const struct hf_arch *a,
                       struct hearth_header *c, char *err)
{
    int64_t window = 0;
    if (a->window == W_QWEN2) {
        int use = 0;
        if (json_get_bool(root, what, "use_sliding_window", JSON_OPTIONAL, &use, err) < 0)
            return -1;
        if (use)
            return fail(err, "%s: use_sliding_window true is not supported (Qwen2 then limits "
                        "attention only from layer max_window_layers on; hearth has one window "
                        "for all layers)", what);
        c->sliding_window = 0;
        return 0;
    }
    /* MistralConfig's default applies only when the key is absent; null is
     * no window. */
    if (a->window == W_MISTRAL && !json_get(root, "sliding_window"))
        window = 4096;
    if (json_get_int(root, what, "sliding_window", JSON_OPTIONAL, 0, UINT32_MAX, &window, err) < 0)
        return -1;
    c->sliding_window = (uint32_t)window;
    return 0;
}

static int read_flags(const struct json *root, const char *what, struct hearth_header *c,
                      struct hf_extra *x, char *err)
{
    const struct json *act;
    int mlp_bias = 0;
    if (json_get_bool(root, what, "tie_word_embeddings", JSON_OPTIONAL, &x->tied, err) < 0 ||
        json_get_bool(root, what, "attention_bias", JSON_OPTIONAL, &x->attention_bias, err) < 0 ||
        json_get_bool(root, what, "mlp_bias", JSON_OPTIONAL, &mlp_bias, err) < 0)
        return -1;
    if (mlp_bias)
        return fail(err, "%s: mlp_bias true is not supported (hearth's FFN has no biases)", what);
    int r = json_get_typed(root, what, "hidden_act", JSON_OPTIONAL, JSON_STRING, &act, err);
    if (r < 0)
        return -1;
    if (r == 1 && !json_is_string(act, "silu"))
        return fail(err, "%s: hidden_act \"%.64s\" is not supported; supported: silu", what,
                    act->u.str);
    int64_t bos;
    r = json_get_int(root, what, "bos_token_id", JSON_OPTIONAL, 0, (int64_t)c->vocab_size - 1,
                     &bos, err);
    if (r < 0)
        return -1;
    x->has_bos = r;
    x->bos_id = r ? (uint32_t)bos : 0;
    c->flags = x->tied ? HEARTH_FLAG_TIED_EMBEDDINGS : 0;
    return read_eos_ids(root, what, c->vocab_size, x->eos, &x->n_eos, err);
}

static int parse_config(const struct json *root, const char *what, struct hearth_header *c,
                        struct hf_extra *x, char *err)
{
    if (root->type != JSON_OBJECT)
        return fail(err, "%s: must be a JSON object, found %s", what,
                    json_type_name(root->type));
    const struct hf_arch *a;
    if (find_architecture(root, what, &a, err) < 0 || read_shape(root, what, c, err) < 0)
        return -1;
    c->rope_theta = 10000.0f;
    if (get_positive(root, what, "rms_norm_eps", JSON_REQUIRED, 0.5, &c->norm_eps, err) < 0 ||
        get_positive(root, what, "rope_theta", JSON_OPTIONAL, 1e12, &c->rope_theta, err) < 0 ||
        read_rope_scaling(root, what, c, err) < 0 || read_flags(root, what, c, x, err) < 0 ||
        read_window(root, what, a, c, err) < 0)
        return -1;
    x->attention_bias |= a->always_bias;
    return 0;
}

static int read_config(const char *dir, struct hearth_header *c, struct hf_extra *x, char *err)
{
    char path[PATH_MAX];
    struct json_doc *doc;
    if (join_path(path, dir, "config.json", err) < 0 || read_json_file(path, &doc, err) < 0)
        return -1;
    int rc = parse_config(json_root(doc), path, c, x, err);
    json_free(doc);
    if (rc < 0 || join_path(path, dir, "generation_config.json", err) < 0)
        return -1;
    /* generation_config.json may list more ids that end generation (Llama 3
     * instruct models list <|eot_id|> there). */
    if (!file_exists(path))
        return 0;
    if (read_json_file(path, &doc, err) < 0)
        return -1;
    const struct json *root = json_root(doc);
    if (root->type != JSON_OBJECT)
        rc = fail(err, "%s: must be a JSON object, found %s", path, json_type_name(root->type));
    else
        rc = read_eos_ids(root, path, c->vocab_size, x->eos, &x->n_eos, err);
    json_free(doc);
    return rc;
}

/* ---- tensor names -------------------------------------------------------- */

/* Per-layer tensors in output order (the order of src->tensors). */
enum layer_kind {
    L_ATTN_NORM, L_Q, L_K, L_V, L_Q_BIAS, L_K_BIAS, L_V_BIAS, L_O,
    L_FFN_NORM, L_GATE, L_UP, L_DOWN, L_N_KINDS
};
enum global_kind { G_EMBD, G_OUT_NORM, G_OUT, G_N_KINDS };

/* Expected shape, in terms of the config. */

struct tensor_rule {
    const char *hf;    /* name (global) or suffix after "model.layers.N." */
    const char *hearth; /* name (global) or suffix after "blk.N." */
    uint8_t rows, cols; /* enum dim_ref; rows D_ONE means a 1-D tensor of cols */
    uint8_t permute;    /* 1: q heads, 2: kv heads */
};

static const struct tensor_rule layer_rules[L_N_KINDS] = {
    [L_ATTN_NORM] = {"input_layernorm.weight", "attn_norm.weight", D_ONE, D_DIM, 0},
    [L_Q] = {"self_attn.q_proj.weight", "attn_q.weight", D_Q, D_DIM, 1},
    [L_K] = {"self_attn.k_proj.weight", "attn_k.weight", D_KV, D_DIM, 2},
    [L_V] = {"self_attn.v_proj.weight", "attn_v.weight", D_KV, D_DIM, 0},
    [L_Q_BIAS] = {"self_attn.q_proj.bias", "attn_q.bias", D_ONE, D_Q, 1},
    [L_K_BIAS] = {"self_attn.k_proj.bias", "attn_k.bias", D_ONE, D_KV, 2},
    [L_V_BIAS] = {"self_attn.v_proj.bias", "attn_v.bias", D_ONE, D_KV, 0},
    [L_O] = {"self_attn.o_proj.weight", "attn_output.weight", D_DIM, D_Q, 0},
    [L_FFN_NORM] = {"post_attention_layernorm.weight", "ffn_norm.weight", D_ONE, D_DIM, 0},
    [L_GATE] = {"mlp.gate_proj.weight", "ffn_gate.weight", D_HIDDEN, D_DIM, 0},
    [L_UP] = {"mlp.up_proj.weight", "ffn_up.weight", D_HIDDEN, D_DIM, 0},
    [L_DOWN] = {"mlp.down_proj.weight", "ffn_down.weight", D_DIM, D_HIDDEN, 0},
};

static const struct tensor_rule global_rules[G_N_KINDS] = {
    [G_EMBD] = {"model.embed_tokens.weight", "token_embd.weight", D_VOCAB, D_DIM, 0},
    [G_OUT_NORM] = {"model.norm.weight", "output_norm.weight", D_ONE, D_DIM, 0},
    [G_OUT] = {"lm_head.weight", "output.weight", D_VOCAB, D_DIM, 0},
};

/* One found tensor: where it is and which rule it matched. */
struct slot {
    const struct st_tensor *t; /* NULL: not (yet) found */
    uint32_t shard;
};

struct tensor_map {
    const char *dir;
    const struct hearth_header *cfg;
    int tied, attention_bias;
    struct slot global[G_N_KINDS];
    struct slot *layers; /* [n_layers][L_N_KINDS] */
    const char *const *shard_names;
};

static int place(struct tensor_map *m, struct slot *s, const struct st_tensor *t, uint32_t shard,
                 char *err)
{
    if (s->t)
        return fail(err, "%s: tensor \"%s\" appears twice (in %s and %s)", m->dir, t->name,
                    m->shard_names[s->shard], m->shard_names[shard]);
    s->t = t;
    s->shard = shard;
    return 0;
}

/* Files one safetensors tensor under its slot; unknown names are an error. */
static int map_tensor(struct tensor_map *m, const struct st_tensor *t, uint32_t shard, char *err)
{
    for (int g = 0; g < G_N_KINDS; g++) {
        if (strcmp(t->name, global_rules[g].hf))
            continue;
        if (g == G_OUT && m->tied)
            return 0; /* tied: the classifier is the embedding; a stored copy is ignored */
        return place(m, &m->global[g], t, shard, err);
    }
    uint64_t layer;
    const char *suffix = layer_suffix(t->name, "model.layers.", &layer);
    if (suffix) {
        /* Older transformers saved the rotary inverse frequencies as a buffer;
         * hearth computes them from rope_theta. */
        if (!strcmp(suffix, "self_attn.rotary_emb.inv_freq"))
            return 0;
        if (!strcmp(suffix, "self_attn.o_proj.bias"))
            return fail(err, "%s: tensor \"%s\": a bias on the attention output projection is "
                        "not supported (hearth supports q/k/v biases only)",
                        m->shard_names[shard], t->name);
        for (int k = 0; k < L_N_KINDS; k++) {
            if (strcmp(suffix, layer_rules[k].hf))
                continue;
            if (layer >= m->cfg->n_layers)
                return fail(err, "%s: tensor \"%s\" is for layer %" PRIu64 " but config.json "
                            "num_hidden_layers is %u", m->shard_names[shard], t->name, layer,
                            m->cfg->n_layers);
            return place(m, &m->layers[layer * L_N_KINDS + (uint64_t)k], t, shard, err);
        }
    }
    return fail(err, "%s: unexpected tensor \"%s\" (not part of a Llama, Mistral or "
                "Qwen2 checkpoint as hearth knows it)", m->shard_names[shard], t->name);
}

/* Checks dtype and shape of a found tensor against its rule. */
static int check_slot(const struct tensor_map *m, const struct slot *s,
                      const struct tensor_rule *r, char *err)
{
    const struct st_tensor *t = s->t;
    const char *file = m->shard_names[s->shard];
    if (st_dtype_to_hearth(t->dtype) == UINT32_MAX)
        return fail(err, "%s: tensor \"%s\" has dtype %s; hearth exports F32, F16 or BF16 "
                    "tensors only", file, t->name, st_dtype_name(t->dtype));
    uint64_t rows = dim_value(m->cfg, r->rows), cols = dim_value(m->cfg, r->cols);
    int ok = r->rows == D_ONE ? t->n_dims == 1 && t->shape[0] == cols
                              : t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols;
    if (ok)
        return 0;
    char got[96] = "[", want[48];
    for (uint32_t d = 0; d < t->n_dims && d < 4; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%" PRIu64, d ? ", " : "",
                 t->shape[d]);
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s]", t->n_dims > 4 ? ", ..." : "");
    if (r->rows == D_ONE)
        snprintf(want, sizeof want, "[%" PRIu64 "]", cols);
    else
        snprintf(want, sizeof want, "[%" PRIu64 ", %" PRIu64 "]", rows, cols);
    return fail(err, "%s: tensor \"%s\" has shape %s but config.json implies %s", file, t->name,
                got, want);
}

static int has_any_bias(const struct tensor_map *m)
{
    for (uint32_t l = 0; l < m->cfg->n_layers; l++)
        for (int k = L_Q_BIAS; k <= L_V_BIAS; k++)
            if (m->layers[l * L_N_KINDS + (uint32_t)k].t)
                return 1;
    return 0;
}

static int is_bias(int kind)
{
    return kind == L_Q_BIAS || kind == L_K_BIAS || kind == L_V_BIAS;
}

/* Appends the src_tensor for a checked slot. */
static void emit(struct source *src, const struct slot *s, const struct tensor_rule *r,
                 const char *name, const int *shard_fds)
{
    const struct hearth_header *c = &src->cfg;
    struct src_tensor *o = &src->tensors[src->n_tensors++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->fd = shard_fds[s->shard];
    o->offset = s->t->offset;
    o->type = st_dtype_to_hearth(s->t->dtype);
    o->rows = r->rows == D_ONE ? 1 : s->t->shape[0];
    o->cols = r->rows == D_ONE ? s->t->shape[0] : s->t->shape[1];
    /* FACTS.md: q rows are in rotate-half order per query head, k rows per
     * kv head (not per query head: llama2.c issue #403). */
    o->unpermute_heads = r->permute == 1 ? c->n_heads : r->permute == 2 ? c->n_kv_heads : 0;
}

/* Checks that every required tensor is present with the right shape, then
 * fills src->tensors in hearth order. */
static int build_tensor_list(struct tensor_map *m, struct source *src, const int *shard_fds,
                             char *err)
{
    struct hearth_header *c = &src->cfg;
    int bias = m->attention_bias || has_any_bias(m);
    if (bias)
        c->flags |= HEARTH_FLAG_QKV_BIAS;
    uint64_t n = 2 + (uint64_t)c->n_layers * (bias ? 12 : 9) + !m->tied;
    src->tensors = calloc(n, sizeof *src->tensors);
    if (!src->tensors)
        return fail(err, "%s: out of memory for %" PRIu64 " tensors", m->dir, n);
    char name[HEARTH_NAME_BYTES];
    for (int g = 0; g < G_N_KINDS; g++) {
        if (g == G_OUT && m->tied)
            continue;
        if (!m->global[g].t)
            return fail(err, "%s: tensor \"%s\" is missing from the safetensors files%s",
                        m->dir, global_rules[g].hf, g == G_OUT ? " (config.json says the embeddings "
                        "are not tied)" : "");
        if (check_slot(m, &m->global[g], &global_rules[g], err) < 0)
            return -1;
    }
    emit(src, &m->global[G_EMBD], &global_rules[G_EMBD], "token_embd.weight", shard_fds);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < L_N_KINDS; k++) {
            const struct slot *s = &m->layers[l * L_N_KINDS + (uint32_t)k];
            if (is_bias(k) && !bias)
                continue;
            if (!s->t)
                return fail(err, "%s: tensor \"model.layers.%u.%s\" is missing from the "
                            "safetensors files%s", m->dir, l, layer_rules[k].hf,
                            is_bias(k) ? " (the architecture or attention_bias requires q/k/v "
                            "biases, or other q/k/v biases are present)" : "");
            if (check_slot(m, s, &layer_rules[k], err) < 0)
                return -1;
            snprintf(name, sizeof name, "blk.%u.%s", l, layer_rules[k].hearth);
            emit(src, s, &layer_rules[k], name, shard_fds);
        }
    }
    emit(src, &m->global[G_OUT_NORM], &global_rules[G_OUT_NORM], "output_norm.weight",
         shard_fds);
    if (!m->tied)
        emit(src, &m->global[G_OUT], &global_rules[G_OUT], "output.weight", shard_fds);
    return 0;
}

/* ---- shards -------------------------------------------------------------- */

struct shards {
    uint32_t n;
    char *names[SOURCE_MAX_FILES];  /* plain file names */
    char *paths[SOURCE_MAX_FILES];
    struct st_file files[SOURCE_MAX_FILES];
};

static void shards_free(struct shards *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        st_close(&s->files[i]);
        free(s->names[i]);
        free(s->paths[i]);
    }
    s->n = 0;
}

/* A shard name must be a plain file name inside the model folder. */
static int check_shard_name(const struct json *v, const char *what, const char *tensor,
                            char *err)
{
    if (v->type != JSON_STRING)
        return fail(err, "%s: weight_map[\"%.100s\"] must be a file name string, found %s",
                    what, tensor, json_type_name(v->type));
    if (v->n == 0 || v->n > 255 || memchr(v->u.str, '/', v->n) || memchr(v->u.str, 0, v->n) ||
        !strcmp(v->u.str, ".") || !strcmp(v->u.str, ".."))
        return fail(err, "%s: weight_map[\"%.100s\"] = \"%.100s\" is not a plain file name in "
                    "the model folder", what, tensor, v->u.str);
    return 0;
}

/* Returns the index of shard `name`, opening it on first use. */
static int shard_index(struct shards *s, const char *dir, const char *name, uint32_t *out,
                       char *err)
{
    for (uint32_t i = 0; i < s->n; i++) {
        if (!strcmp(s->names[i], name)) {
            *out = i;
            return 0;
        }
    }
    if (s->n == SOURCE_MAX_FILES)
        return fail(err, "%s: more than %d safetensors shards", dir, SOURCE_MAX_FILES);
    char path[PATH_MAX];
    if (join_path(path, dir, name, err) < 0)
        return -1;
    uint32_t i = s->n;
    s->names[i] = strdup(name);
    s->paths[i] = strdup(path);
    if (!s->names[i] || !s->paths[i]) {
        free(s->names[i]);
        free(s->paths[i]);
        return fail(err, "out of memory");
    }
    if (st_open(&s->files[i], path, err) < 0) {
        free(s->names[i]);
        free(s->paths[i]);
        return -1;
    }
    s->n++;
    *out = i;
    return 0;
}

/* Opens every shard named by the index and checks that each listed tensor
 * is in the shard the index names. */
static int open_indexed_shards(struct shards *s, const char *dir, const char *index_path,
                               char *err)
{
    struct json_doc *doc;
    if (read_json_file(index_path, &doc, err) < 0)
        return -1;
    const struct json *map;
    int rc = json_get_typed(json_root(doc), index_path, "weight_map", JSON_REQUIRED,
                            JSON_OBJECT, &map, err);
    for (size_t i = 0; rc >= 0 && i < json_len(map); i++) {
        const struct json_member *m = json_member_at(map, i);
        uint32_t k;
        if (check_shard_name(&m->value, index_path, m->key, err) < 0 ||
            shard_index(s, dir, m->value.u.str, &k, err) < 0) {
            rc = -1;
        } else if (!st_find(&s->files[k], m->key)) {
            rc = fail(err, "%s: weight_map says tensor \"%.100s\" is in %s, which has no such "
                      "tensor", index_path, m->key, s->names[k]);
        }
    }
    if (rc >= 0 && s->n == 0)
        rc = fail(err, "%s: weight_map is empty", index_path);
    json_free(doc);
    return rc < 0 ? -1 : 0;
}

static int open_shards(struct shards *s, const char *dir, char *err)
{
    char single[PATH_MAX], index[PATH_MAX];
    if (join_path(single, dir, "model.safetensors", err) < 0 ||
        join_path(index, dir, "model.safetensors.index.json", err) < 0)
        return -1;
    /* transformers also looks for the single file first. */
    if (file_exists(single)) {
        uint32_t k;
        return shard_index(s, dir, "model.safetensors", &k, err);
    }
    if (file_exists(index))
        return open_indexed_shards(s, dir, index, err);
    return fail(err, "%s: no model.safetensors or model.safetensors.index.json (hearth reads "
                "safetensors weights only)", dir);
}

static int read_tensors(const char *dir, struct source *src, const struct hf_extra *x,
                        char *err)
{
    struct shards s = {0};
    struct tensor_map m = {.dir = dir, .cfg = &src->cfg, .tied = x->tied,
                           .attention_bias = x->attention_bias,
                           .shard_names = (const char *const *)s.paths};
    int rc = open_shards(&s, dir, err);
    if (rc == 0) {
        m.layers = calloc((size_t)src->cfg.n_layers * L_N_KINDS, sizeof *m.layers);
        if (!m.layers)
            rc = fail(err, "out of memory");
    }
    for (uint32_t i = 0; rc == 0 && i < s.n; i++)
        for (uint32_t t = 0; rc == 0 && t < s.files[i].n_tensors; t++)
            rc = map_tensor(&m, &s.files[i].tensors[t], i, err);
    int fds[SOURCE_MAX_FILES];
    for (uint32_t i = 0; rc == 0 && i < s.n; i++) {
        fds[i] = st_take_fd(&s.files[i]);
        src->fds[src->n_fds++] = fds[i];
        src->input_bytes += s.files[i].file_bytes;
    }
    if (rc == 0)
        rc = build_tensor_list(&m, src, fds, err);
    free(m.layers);
    shards_free(&s);
    return rc;
}

/* ---- tokenizer and special ids ------------------------------------------- */

static int read_vocab(const char *dir, struct vocab *v, char *err)
{
    char path[PATH_MAX];
    if (join_path(path, dir, "tokenizer.model", err) < 0)
        return -1;
    if (file_exists(path))
        return vocab_read_spm_model(path, v, err);
    if (join_path(path, dir, "tokenizer.json", err) < 0)
        return -1;
    if (file_exists(path))
        return vocab_read_tokenizer_json(path, v, err);
    return fail(err, "%s: no tokenizer.model or tokenizer.json", dir);
}

/* Some checkpoints pad vocab_size beyond the tokenizer (to a multiple of
 * 64 or more for faster matrix kernels); the extra embedding rows belong to
 * no text. Decision: keep those rows (the model may still score them) and
 * name the extra ids "<unused_N>" with kind UNUSED and the lowest score, so
 * the vocabulary covers every row as format.h requires (vocab_size ==
 * n_tokens) and no merge ever prefers them. A tokenizer with more tokens
 * than the model has rows is refused: those ids would have no embedding. */
static int pad_vocab(struct vocab *v, uint32_t vocab_size, const char *dir, char *err)
{
    uint32_t n = v->hdr.n_tokens;
    if (n > vocab_size)
        return fail(err, "%s: the tokenizer has %u tokens but config.json vocab_size is %u",
                    dir, n, vocab_size);
    if (n == vocab_size)
        return 0;
    char **pieces = realloc(v->pieces, vocab_size * sizeof *pieces);
    if (pieces)
        v->pieces = pieces;
    uint32_t *bytes = realloc(v->piece_bytes, vocab_size * sizeof *bytes);
    if (bytes)
        v->piece_bytes = bytes;
    float *scores = realloc(v->scores, vocab_size * sizeof *scores);
    if (scores)
        v->scores = scores;
    uint8_t *kinds = realloc(v->kinds, vocab_size);
    if (kinds)
        v->kinds = kinds;
    if (!pieces || !bytes || !scores || !kinds)
        return fail(err, "out of memory padding the vocabulary");
    for (uint32_t id = n; id < vocab_size; id++) {
        char name[32];
        int len = snprintf(name, sizeof name, "<unused_%u>", id);
        v->pieces[id] = malloc((size_t)len + 1);
        if (!v->pieces[id])
            return fail(err, "out of memory padding the vocabulary");
        memcpy(v->pieces[id], name, (size_t)len + 1);
        v->piece_bytes[id] = (uint32_t)len;
        v->scores[id] = -1e30f;
        v->kinds[id] = HEARTH_TOKEN_UNUSED;
        v->hdr.n_tokens = id + 1; /* vocab_free frees exactly the pieces set so far */
        if ((uint32_t)len > v->hdr.max_piece_bytes)
            v->hdr.max_piece_bytes = (uint32_t)len;
    }
    return 0;
}

/* bos/eos from config.json win over the tokenizer's; stop ids are eos
 * first, then the other config / generation_config eos ids. */
static int set_special_ids(struct source *src, const struct hf_extra *x, const char *dir,
                           char *err)
{
    struct hearth_header *c = &src->cfg;
    struct vocab *v = &src->vocab;
    uint32_t bos = x->has_bos ? x->bos_id : v->bos_id;
    if (bos == UINT32_MAX)
        return fail(err, "%s: neither config.json bos_token_id nor the tokenizer names a BOS "
                    "token", dir);
    c->n_stop_ids = x->n_eos;
    memcpy(c->stop_ids, x->eos, sizeof x->eos);
    if (x->n_eos == 0) {
        if (v->eos_id == UINT32_MAX)
            return fail(err, "%s: neither config.json eos_token_id nor the tokenizer names an "
                        "EOS token", dir);
        c->stop_ids[c->n_stop_ids++] = v->eos_id;
    }
    c->bos_id = v->bos_id = bos;
    c->eos_id = v->eos_id = c->stop_ids[0];
    return 0;
}

/* ---- tokenizer_config.json: chat template, BOS, end of turn -------------- */

#define HF_MAX_TEMPLATE_BYTES (1u << 20) /* chat_template.jinja; real ones are a few KB */
#define HF_MAX_TOKENIZER_JSON_BYTES (256ull << 20) /* as tokenizer_json.c */

static int add_stop_id(struct hearth_header *c, uint32_t id, const char *what, char *err)
{
    for (uint32_t k = 0; k < c->n_stop_ids; k++)
        if (c->stop_ids[k] == id)
            return 0;
    if (c->n_stop_ids == HEARTH_MAX_STOP_IDS)
        return fail(err, "%s: more than %u distinct ids end generation", what,
                    HEARTH_MAX_STOP_IDS);
    c->stop_ids[c->n_stop_ids++] = id;
    return 0;
}

/* The id of the special (control or user-defined) token spelled s, or
 * UINT32_MAX. Normal byte-level pieces are raw bytes and may spell the same
 * text (a "</s>" merged from "</" and "s>"), so they never count. */
static uint32_t find_special(const struct vocab *v, const char *s, size_t n)
{
    for (uint32_t id = 0; id < v->hdr.n_tokens; id++)
        if ((v->kinds[id] == HEARTH_TOKEN_CONTROL || v->kinds[id] == HEARTH_TOKEN_USER_DEFINED) &&
            v->piece_bytes[id] == n && !memcmp(v->pieces[id], s, n))
            return id;
    return UINT32_MAX;
}

/* Reads the regular file path (at most max bytes) into a malloc'd buffer. */
static int read_small_file(const char *path, uint64_t max, char **out, size_t *n, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(max + 1);
    size_t got = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || got > max) {
        free(buf);
        return fail(err, "%s: %s", path, !buf ? "out of memory" : bad ? "read failed" :
                    "longer than the 1 MiB hearth accepts for a chat template");
    }
    *out = buf;
    *n = got;
    return 0;
}

/* tokenizer_config.json "chat_template": a string, or (transformers'
 * named templates) a list of {"name", "template"} objects of which
 * apply_chat_template uses the one named "default". Returns 1 with *out the
 * template string, or NULL when a list has no "default"; 0 when absent. */
static int config_template(const struct json *root, const char *what, const struct json **out,
                           char *err)
{
    const struct json *v = json_get(root, "chat_template");
    *out = NULL;
    if (!v || v->type == JSON_NULL)
        return 0;
    if (v->type == JSON_STRING) {
        *out = v;
        return 1;
    }
    if (v->type != JSON_ARRAY)
        return fail(err, "%s: \"chat_template\" must be a string or a list of {\"name\", "
                    "\"template\"} objects, found %s (byte %zu)", what, json_type_name(v->type),
                    v->offset);
    for (size_t i = 0; i < v->n; i++) {
        const struct json *item = json_at(v, i), *name, *tmpl;
        char ctx[PATH_MAX + 48];
        snprintf(ctx, sizeof ctx, "%s: chat_template[%zu]", what, i);
        if (item->type != JSON_OBJECT)
            return fail(err, "%s must be an object, found %s (byte %zu)", ctx,
                        json_type_name(item->type), item->offset);
        if (json_get_typed(item, ctx, "name", JSON_REQUIRED, JSON_STRING, &name, err) < 0 ||
            json_get_typed(item, ctx, "template", JSON_REQUIRED, JSON_STRING, &tmpl, err) < 0)
            return -1;
        if (json_is_string(name, "default"))
            *out = tmpl;
    }
    return 1;
}

/* cfg.chat_template from chat_template.jinja (where transformers saves the
 * template nowadays: docs "Writing a chat template"; it wins over the
 * config's copy) or tokenizer_config.json: the recognised family,
 * CHAT_TEMPLATE_UNRECOGNISED, or HEARTH_CHAT_NONE when the folder has none. */
static int set_chat_template(const char *dir, const struct json *config, const char *config_path,
                             struct hearth_header *c, char *err)
{
    char path[PATH_MAX];
    if (join_path(path, dir, "chat_template.jinja", err) < 0)
        return -1;
    c->chat_template = HEARTH_CHAT_NONE;
    if (file_exists(path)) {
        char *text = NULL;
        size_t n = 0;
        if (read_small_file(path, HF_MAX_TEMPLATE_BYTES, &text, &n, err) < 0)
            return -1;
        int id = chat_template_detect(text, n);
        free(text);
        c->chat_template = id ? (uint32_t)id : CHAT_TEMPLATE_UNRECOGNISED;
        return 0;
    }
    const struct json *t;
    int r = config ? config_template(config, config_path, &t, err) : 0;
    if (r <= 0)
        return r;
    int id = t ? chat_template_detect(t->u.str, t->n) : HEARTH_CHAT_NONE;
    c->chat_template = id ? (uint32_t)id : CHAT_TEMPLATE_UNRECOGNISED;
    return 0;
}

/* Whether tokenizer.json's post_processor puts the BOS token first: a
 * TemplateProcessing (alone or in a Sequence) whose "single" template
 * starts with the special token spelled bos (tokenizers' processors: the
 * {"SpecialToken": {"id": NAME}} and {"Sequence": {"id": "A"}} items). */
static int post_processor_adds_bos(const struct json *pp, const char *bos, size_t n)
{
    if (!pp || pp->type != JSON_OBJECT)
        return 0;
    if (json_is_string(json_get(pp, "type"), "Sequence")) {
        const struct json *list = json_get(pp, "processors");
        for (size_t i = 0; i < json_len(list); i++)
            if (post_processor_adds_bos(json_at(list, i), bos, n))
                return 1;
        return 0;
    }
    if (!json_is_string(json_get(pp, "type"), "TemplateProcessing"))
        return 0;
    const struct json *first = json_at(json_get(pp, "single"), 0);
    const struct json *id = json_get(json_get(first, "SpecialToken"), "id");
    return id && id->type == JSON_STRING && id->n == n && !memcmp(id->u.str, bos, n);
}

/* Whether a text prompt starts with BOS, as transformers' tokenizer does it:
 * tokenizer_config.json "add_bos_token" when present; else SentencePiece
 * tokenizers add it (LlamaTokenizer's add_bos_token defaults to true), and
 * byte-level ones add it when tokenizer.json's post-processor does. Qwen2's
 * (a ByteLevel post-processor, bos_token null) does not. The first
 * Meta-Llama-3 tokenizer.json has a ByteLevel post-processor only, and Meta
 * later added the TemplateProcessing that puts <|begin_of_text|> first: a
 * Llama 3 pre-tokenizer gets BOS either way, as llama.cpp gives it (its
 * llama-bpe default, src/llama-vocab.cpp). */
static int read_add_bos(const char *dir, const struct json *config, const char *config_path,
                        const struct source *src, int *add_bos, char *err)
{
    *add_bos = 1;
    int r = config ? json_get_bool(config, config_path, "add_bos_token", JSON_OPTIONAL, add_bos,
                                   err) : 0;
    if (r != 0 || src->vocab.hdr.type != HEARTH_TOKENIZER_BYTE_BPE)
        return r < 0 ? -1 : 0;
    char path[PATH_MAX];
    struct json_doc *doc;
    if (join_path(path, dir, "tokenizer.json", err) < 0 ||
        json_parse_file(path, HF_MAX_TOKENIZER_JSON_BYTES, JSON_DEFAULT_MAX_DEPTH, &doc, err) < 0)
        return -1;
    const struct vocab *v = &src->vocab;
    *add_bos = post_processor_adds_bos(json_get(json_root(doc), "post_processor"),
                                       v->pieces[src->cfg.bos_id], v->piece_bytes[src->cfg.bos_id]) ||
               v->hdr.pre_tokenizer == HEARTH_PRE_LLAMA3;
    json_free(doc);
    return 0;
}

/* tokenizer_config.json "eos_token" (a string, or an AddedToken object with
 * "content") names the token transformers' generate stops at by default;
 * llama.cpp's converter takes the GGUF eos from it too. Llama 3 instruct
 * configs name <|eot_id|> there while config.json may name only
 * <|end_of_text|>. A name that is no special token of the vocabulary adds
 * nothing. */
static int add_config_eos(const struct json *config, const char *config_path, struct source *src,
                          char *err)
{
    const struct json *e = config ? json_get(config, "eos_token") : NULL;
    char ctx[PATH_MAX + 16];
    snprintf(ctx, sizeof ctx, "%s: eos_token", config_path);
    if (e && e->type == JSON_OBJECT &&
        json_get_typed(e, ctx, "content", JSON_REQUIRED, JSON_STRING, &e, err) < 0)
        return -1;
    if (!e || e->type == JSON_NULL)
        return 0;
    if (e->type != JSON_STRING)
        return fail(err, "%s: \"eos_token\" must be a string or an object with \"content\", found "
                    "%s (byte %zu)", config_path, json_type_name(e->type), e->offset);
    uint32_t id = find_special(&src->vocab, e->u.str, e->n);
    return id == UINT32_MAX ? 0 : add_stop_id(&src->cfg, id, config_path, err);
}

/* The token that closes an assistant turn in the recognised template
 * (<|eot_id|>, <|im_end|>) ends generation too. */
static int add_end_of_turn(struct source *src, const char *dir, char *err)
{
    const char *eot = chat_template_end_of_turn(src->cfg.chat_template);
    uint32_t id = eot ? find_special(&src->vocab, eot, strlen(eot)) : UINT32_MAX;
    return id == UINT32_MAX ? 0 : add_stop_id(&src->cfg, id, dir, err);
}

/* What tokenizer_config.json (optional) and chat_template.jinja add to the
 * source; runs once the vocabulary and the bos/eos ids are known. */
static int read_chat_metadata(const char *dir, struct source *src, char *err)
{
    char path[PATH_MAX];
    struct json_doc *doc = NULL;
    const struct json *config = NULL;
    if (join_path(path, dir, "tokenizer_config.json", err) < 0)
        return -1;
    if (file_exists(path)) {
        if (read_json_file(path, &doc, err) < 0)
            return -1;
        config = json_root(doc);
        if (config->type != JSON_OBJECT) {
            fail(err, "%s: must be a JSON object, found %s", path, json_type_name(config->type));
            json_free(doc);
            return -1;
        }
    }
    int add_bos;
    int rc = set_chat_template(dir, config, path, &src->cfg, err);
    if (rc == 0)
        rc = read_add_bos(dir, config, path, src, &add_bos, err);
    if (rc == 0 && !add_bos)
        src->vocab.hdr.flags |= HEARTH_TOK_NO_BOS;
    if (rc == 0)
        rc = add_config_eos(config, path, src, err);
    if (rc == 0)
        rc = add_end_of_turn(src, dir, err);
    json_free(doc);
    return rc;
}

int hf_read(const char *dir, struct source *src, char *err)
{
    memset(src, 0, sizeof *src);
    struct hf_extra x = {0};
    if (read_config(dir, &src->cfg, &x, err) < 0 || read_tensors(dir, src, &x, err) < 0 ||
        read_vocab(dir, &src->vocab, err) < 0 ||
        pad_vocab(&src->vocab, src->cfg.vocab_size, dir, err) < 0 ||
        set_special_ids(src, &x, dir, err) < 0 || read_chat_metadata(dir, src, err) < 0) {
        source_free(src);
        return -1;
    }
    return 0;
}
