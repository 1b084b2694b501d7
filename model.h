/* model.h - a loaded hearth model and its forward pass.
 *
 * model_open maps the file read-only and validates every field before use
 * (format.h, docs/FORMAT.md); weights are used in place, never converted.
 * The forward pass is the Llama architecture: RMSNorm, rotary embeddings on
 * adjacent pairs, grouped-query attention over a KV cache, SwiGLU FFN and a
 * tied or untied classifier. All scratch memory lives in struct state and is
 * allocated by state_init; model_forward allocates nothing. */
#ifndef HEARTH_MODEL_H
#define HEARTH_MODEL_H

#include <stdint.h>
#include "format.h"
#include "tokenizer.h"

struct tensor {
    uint32_t type;        /* enum hearth_type */
    uint64_t rows, cols;
    const void *data;     /* inside the mmap, 64-byte aligned */
};

struct layer {
    struct tensor attn_norm, attn_q, attn_k, attn_v, attn_output;
    struct tensor attn_q_bias, attn_k_bias, attn_v_bias; /* data NULL without HEARTH_FLAG_QKV_BIAS */
    struct tensor ffn_norm, ffn_gate, ffn_up, ffn_down;
};

struct model {
    struct hearth_header cfg;
    const uint8_t *map;
    uint64_t map_bytes;
    const char *path;
    struct tokenizer tok;
    struct tensor token_embd, output_norm, output; /* output aliases token_embd when tied */
    struct layer *layers;
    float *rope_inv_freq; /* head_dim / 2 rotation frequencies, rope scaling applied */
};

/* Opens and validates a model file. On failure err names the field and
 * offset at fault and nothing is left allocated. */
int model_open(struct model *m, const char *path, char *err);
void model_close(struct model *m);

/* Recomputes the checksum over the whole file (run --verify). */
int model_verify_checksum(const struct model *m, char *err);

/* Activations and the KV cache for one sequence of up to max_seq positions. */
struct state {
    uint32_t max_seq;
    float *x, *xb, *xb2;   /* dim (xb: max(dim, q_dim)) */
    float *hb, *hb2;       /* hidden_dim */
    float *q;              /* n_heads * head_dim */
    float *att;            /* n_heads * max_seq */
    float *rope_cos, *rope_sin; /* head_dim / 2, for the current position */
    float *logits;         /* vocab_size */
    float *key_cache;      /* [n_layers][max_seq][kv_dim] */
    float *value_cache;    /* [n_layers][max_seq][kv_dim] */
};

int state_init(struct state *s, const struct model *m, uint32_t max_seq, char *err);
void state_free(struct state *s);

/* Runs one token at position pos (< s->max_seq, and every earlier position
 * already run) and returns the logits (vocab_size floats inside s). */
float *model_forward(const struct model *m, struct state *s, int32_t token, uint32_t pos);

#endif
