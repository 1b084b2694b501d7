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
#include "kernels/attention.h"
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

/* How a state is set up. */
struct state_options {
    uint32_t max_seq;    /* context positions, 1 .. the model's max_seq_len */
    uint32_t max_batch;  /* prompt tokens per forward step; 0 = STATE_DEFAULT_BATCH */
    uint32_t kv_type;    /* HEARTH_F16 or HEARTH_F32 */
    const struct kernels *kern; /* NULL: the best for this CPU */
    struct thread_pool *pool;   /* NULL: run on the calling thread */
};

/* The prefill batch when none is asked for: large enough that each weight
 * block loaded serves many tokens, small enough that the activations of a
 * batch stay in the caches (docs/KERNELS.md has the measurement). */
#define STATE_DEFAULT_BATCH 64u

/* Activations and the KV cache for one sequence of up to max_seq positions,
 * and the kernels and threads that run it. Activation buffers hold
 * max_batch tokens, token after token. */
struct state {
    uint32_t max_seq, max_batch, kv_type;
    const struct kernels *kern;
    const struct attn_kernels *attn;
    struct thread_pool *pool;
    int n_threads;
    struct q8_act act;     /* the current matmul input, quantized */
    float *x, *xb, *xb2;   /* [max_batch][dim] (xb: [max_batch][max(dim, q_dim)]) */
    float *hb, *hb2;       /* [max_batch][hidden_dim] */
    float *q;              /* [max_batch][q_dim] */
    float *k, *v;          /* [max_batch][kv_dim], before they go into the cache */
    float *att;            /* [n_threads][n_heads / n_kv_heads][max_seq]: score rows */
    float *rope_cos, *rope_sin; /* [max_batch][head_dim / 2] */
    float *logits;         /* vocab_size, of the last token run */
    /* [n_layers][n_kv_heads] heads of max_seq (rounded up to KV_BLOCK)
     * positions of kv_type, laid out as kernels/attention.h says. */
    void *key_cache, *value_cache;
    uint64_t kv_head_elems; /* elements in one (layer, kv head) of either cache */
};

/* The bytes state_open allocates for these options (KV cache and
 * activations), for --info and the context budget. */
uint64_t state_bytes(const struct model *m, const struct state_options *o);
uint64_t state_kv_bytes(const struct model *m, uint32_t max_seq, uint32_t kv_type);

int state_open(struct state *s, const struct model *m, const struct state_options *o,
               char *err);
/* state_open with an F32 KV cache and the default batch (tests, bench). */
int state_init(struct state *s, const struct model *m, uint32_t max_seq,
               const struct kernels *kern, struct thread_pool *pool, char *err);
void state_free(struct state *s);

/* out = W x for n_tok tokens (x: n_tok rows of w->cols, out: n_tok rows of
 * w->rows; n_tok <= max_batch) with the state's kernels and threads, as the
 * forward pass does it (x is quantized first for Q8_0/Q4_0 weights). For
 * benchmarks. */
void model_matmul(struct state *s, float *out, const float *x, uint32_t n_tok,
                  const struct tensor *w);

/* Runs n tokens at positions pos .. pos + n - 1 (pos + n <= s->max_seq,
 * every earlier position already run), max_batch at a time, and returns the
 * logits of the last one (vocab_size floats inside s). The logits are the
 * same bits as running the tokens one by one: every kernel computes each
 * output in an order that does not depend on the batch. */
float *model_prefill(const struct model *m, struct state *s, const int32_t *tokens, uint32_t n,
                     uint32_t pos);

/* model_prefill of one token. */
float *model_forward(const struct model *m, struct state *s, int32_t token, uint32_t pos);

#endif
