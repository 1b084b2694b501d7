/* model.h - a loaded hearth model and its forward pass.
 *
 * model_open maps the file read-only and validates every field before use
 * (format.h, docs/FORMAT.md); weights are used in place, never converted.
 * The forward pass is the Llama architecture: RMSNorm, rotary embeddings on
 * adjacent pairs, grouped-query attention over a KV cache, SwiGLU FFN and a
 * tied or untied classifier. All scratch memory lives in struct state and is
 * allocated by state_init; model_forward allocates nothing. Matrix products
 * and attention run on a thread pool with a fixed partition, so results are
 * bit-identical for any thread count. */
#ifndef HEARTH_MODEL_H
#define HEARTH_MODEL_H

#include <stdint.h>
#include "format.h"
#include "kernels/kernels.h"
#include "threads.h"
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

/* Fills what follows from the config and tensors: the classifier of a tied
 * model, and rope_inv_freq (which the caller allocated, head_dim / 2
 * floats). model_open calls it; a model built in memory (bench) does too. */
void model_setup_derived(struct model *m);

/* Recomputes the checksum over the whole file (run --verify). */
int model_verify_checksum(const struct model *m, char *err);

/* Activations and the KV cache for one sequence of up to max_seq positions,
 * and the kernels and threads that run it. */
struct state {
    uint32_t max_seq;
    const struct kernels *kern;
    struct thread_pool *pool; /* NULL: run on the calling thread */
    struct q8_act act;     /* the current matmul input, quantized */
    float *x, *xb, *xb2;   /* dim (xb: max(dim, q_dim)) */
    float *hb, *hb2;       /* hidden_dim */
    float *q;              /* n_heads * head_dim */
    float *att;            /* n_heads * max_seq */
    float *rope_cos, *rope_sin; /* head_dim / 2, for the current position */
    float *logits;         /* vocab_size */
    float *key_cache;      /* [n_layers][max_seq][kv_dim] */
    float *value_cache;    /* [n_layers][max_seq][kv_dim] */
};

/* kern NULL picks the best kernels for this CPU; pool NULL runs on one thread. */
int state_init(struct state *s, const struct model *m, uint32_t max_seq,
               const struct kernels *kern, struct thread_pool *pool, char *err);
void state_free(struct state *s);

/* out = W x with the state's kernels and threads, as the forward pass does
 * it (x is quantized first for Q8_0/Q4_0 weights). For benchmarks. */
void model_matmul(struct state *s, float *out, const float *x, const struct tensor *w);

/* Runs one token at position pos (< s->max_seq, and every earlier position
 * already run) and returns the logits (vocab_size floats inside s). */
float *model_forward(const struct model *m, struct state *s, int32_t token, uint32_t pos);

#endif
