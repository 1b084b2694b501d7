/* tests/synth.h - synthetic Llama checkpoints for tests: deterministic
 * random weights written as a llama2.c legacy checkpoint or as a Hugging
 * Face folder (config.json + safetensors), so tests can export both and
 * compare. Test helper only: it trusts its inputs and is not library code. */
#ifndef HEARTH_TESTS_SYNTH_H
#define HEARTH_TESTS_SYNTH_H

#include <stdint.h>

struct synth_config {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int tied;
    float rope_theta;
    float norm_eps;
    uint64_t seed;
};

/* What Hugging Face configs of other families add (all zero: the plain
 * LlamaForCausalLM of synth_config). architecture: NULL (Llama),
 * "MistralForCausalLM" or "Qwen2ForCausalLM"; model_type follows from it.
 * qkv_bias: random q/k/v biases (Qwen2 always has them, so set it for Qwen2).
 * rope_factor > 0: rope_scaling of type llama3 with the three other values.
 * sliding_window > 0 is written as is (null otherwise); for Qwen2 next to
 * "use_sliding_window": false, as Qwen2.5 configs have it. */
struct synth_variant {
    const char *architecture;
    int qkv_bias;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_max_seq_len;
    int sliding_window;
};

/* The weights, row-major [out][in], q/k rows in adjacent-pair rotary order
 * (hearth's and llama2.c's). Per-layer arrays are stacked: e.g. wq holds
 * n_layers blocks of [dim][dim]. wcls is NULL when tied. */
struct synth_model {
    struct synth_config cfg;
    float *token_embd;            /* [vocab][dim] */
    float *attn_norm;             /* [L][dim] */
    float *wq, *wk, *wv, *wo;     /* [L][dim][dim], [L][kv_dim][dim] x2, [L][dim][dim] */
    float *ffn_norm;              /* [L][dim] */
    float *w_gate, *w_down, *w_up; /* [L][hidden][dim], [L][dim][hidden], [L][hidden][dim] */
    float *output_norm;           /* [dim] */
    float *wcls;                  /* [vocab][dim] or NULL */
    float *bq, *bk, *bv;          /* [L][dim], [L][kv_dim] x2 (adjacent-pair order), or NULL */
    struct synth_variant var;     /* zero unless synth_set_variant was called */
};

/* Fills weights deterministically from cfg.seed: N(0, 0.1^2) for matrices, 1 + 0.1 N(0,1) for
 * norm weights. If round_bf16, every weight is first rounded to a BF16 value (so BF16 and F32
 * files hold the same numbers). Returns NULL if out of memory. */
struct synth_model *synth_create(const struct synth_config *cfg, int round_bf16);
void synth_free(struct synth_model *m);

/* Makes m a model of variant v for synth_write_hf; with v->qkv_bias, fills
 * bq/bk/bv with N(0, 0.1^2) from a stream of their own (seeded from
 * cfg.seed), so the other weights stay as synth_create made them. 0 or -1. */
int synth_set_variant(struct synth_model *m, const struct synth_variant *v);

/* llama2.c legacy checkpoint (7 int32 header, vocab negative when untied, fp32 arrays in
 * llama2.c order, freq_cis arrays as zeros), adjacent-pair rotary order (no permutation).
 * llama2.c has no biases, rope scaling or window: m->var is ignored. */
int synth_write_llama2c(const struct synth_model *m, const char *path);

/* HF folder: config.json (var.architecture, default LlamaForCausalLM; bos 1, eos 2),
 * safetensors with dtype "F32" or "BF16", q_proj/k_proj rows permuted the HF way: per head, HF
 * row j < head_dim/2 holds our row 2j and HF row head_dim/2 + j holds our row 2j+1 (k with
 * n_kv_heads; q/k biases the same way). n_shards 1 -> model.safetensors; 2 ->
 * model-00001-of-00002.safetensors + model-00002-of-00002.safetensors +
 * model.safetensors.index.json. Copies tokenizer_model_path (if not NULL) to dir/tokenizer.model.
 * dir is created if needed. Returns 0 or -1. */
int synth_write_hf(const struct synth_model *m, const char *dir, const char *dtype, int n_shards,
                   const char *tokenizer_model_path);

#endif
