/* sampler.h - picks the next token from a logit vector: repetition,
 * frequency and presence penalties over a window of recent tokens, then
 * top-k, top-p, min-p and temperature, then a draw from a seeded RNG (greedy
 * argmax at temperature 0). The same seed, parameters, accepted tokens and
 * logits give the same tokens. Memory (candidates, penalty counts, the
 * history ring) is allocated once in sampler_init; sampling, accepting and
 * resetting allocate nothing.
 *
 * It does not decide when generation stops (stop ids, stop strings: stop.h)
 * and does not read the clock: the caller picks the seed. */
#ifndef HEARTH_SAMPLER_H
#define HEARTH_SAMPLER_H

#include <stdint.h>

/* The chain, in llama.cpp's default order (common/common.h,
 * common_params_sampling::samplers: penalties, DRY, top-n-sigma, top-k,
 * typical-p, top-p, min-p, XTC, temperature; the ones hearth lacks are off by
 * default there), each stage working on the candidates the previous one left:
 *
 *  1. penalties: for each distinct token t among the last W accepted tokens
 *     (W from penalty_last_n), seen c >= 1 times there:
 *       logit[t] = logit[t] > 0 ? logit[t] / repeat_penalty
 *                               : logit[t] * repeat_penalty     (CTRL,
 *         arXiv:1909.05858, with llama.cpp's fix for negative logits,
 *         src/llama-sampling.cpp llama_sampler_penalties_apply)
 *       logit[t] -= c * frequency_penalty + presence_penalty  (OpenAI API
 *         "parameter details": mu[j] -= c[j] * alpha_frequency
 *         + (c[j] > 0) * alpha_presence)
 *     Tokens outside the window are not touched.
 *  2. top-k: keeps the k highest logits (the lower id first among equal
 *     logits). top_k 0 = off; top_k >= vocab_size keeps all.
 *  3. top-p: softmax at temperature 1 over the tokens left, then keeps the
 *     smallest best-first set whose probability mass is >= top_p (at least
 *     one token). top_p 1 = off.
 *  4. min-p: keeps the tokens whose temperature-1 probability is at least
 *     min_p times that of the most likely token, i.e.
 *     logit >= max_logit + log(min_p) (as llama.cpp). min_p 0 = off. The
 *     most likely token always stays.
 *  5. temperature: draws from softmax(logit / temperature) over what is
 *     left. Temperature 0 = greedy: the argmax of the penalized logits (the
 *     lowest id on ties); stages 2-4 never drop the argmax, so they do not
 *     change it, and no random number is used.
 *
 * So top-p and min-p see the distribution before temperature, as llama.cpp
 * does (llama2.c instead applies top-p after temperature). */
struct sampler_params {
    float temperature;       /* >= 0, finite; 0 = greedy */
    int32_t top_k;           /* >= 0; 0 = off */
    float top_p;             /* (0, 1]; 1 = off */
    float min_p;             /* [0, 1]; 0 = off */
    float repeat_penalty;    /* > 0, finite; 1 = off */
    float frequency_penalty; /* [-2, 2] (OpenAI's range); 0 = off */
    float presence_penalty;  /* [-2, 2] (OpenAI's range); 0 = off */
    int32_t penalty_last_n;  /* >= -1: the window W is the last penalty_last_n
                                accepted tokens; 0 = no penalties; -1 = all
                                the history holds (max_history at init);
                                values above max_history mean max_history */
    uint64_t seed;           /* any value, 0 included */
};

/* llama.cpp's defaults (common/common.h, struct common_params_sampling):
 * temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1 (off),
 * frequency and presence penalties 0 (off), penalty_last_n 64; seed 0
 * (llama.cpp picks a random seed by default; the caller should too). */
struct sampler_params sampler_default_params(void);

/* One candidate token during sampling (scratch memory). */
struct sampler_candidate {
    float logit;
    float weight; /* an unnormalized probability, meaning depends on the stage */
    int32_t id;
};

struct sampler {
    uint32_t vocab_size;
    struct sampler_params params;
    uint64_t rng_state;
    struct sampler_candidate *cand; /* vocab_size entries */
    uint32_t *counts;               /* vocab_size entries, all 0 between calls */
    int32_t *history;               /* ring of the last history_cap accepted ids */
    uint32_t history_cap, history_len, history_next;
};

/* Checks every value of p; returns -1 with err naming the field and its
 * command-line option (e.g. "top_k (--top-k) must be >= 0 (got -1)"). */
int sampler_check_params(const struct sampler_params *p, char *err);

/* max_history: the most accepted tokens the penalty window can reach back
 * (pass the context length). Returns -1 with err on a bad parameter, a
 * vocab_size or max_history outside 1..INT32_MAX, or no memory. After a
 * failure sampler_free is safe and does nothing. */
int sampler_init(struct sampler *s, uint32_t vocab_size, uint32_t max_history,
                 const struct sampler_params *p, char *err);
void sampler_free(struct sampler *s);

/* Replaces the parameters (e.g. per server request) and restarts the RNG
 * from p->seed; keeps the history. On error nothing changes. */
int sampler_set_params(struct sampler *s, const struct sampler_params *p, char *err);

/* Records a token in the penalty history: call it for every prompt token
 * and every token generated (llama.cpp's main feeds the prompt too, "in order
 * to apply repetition penalties later"). Ids outside the vocabulary are
 * ignored. */
void sampler_accept(struct sampler *s, int32_t token);

/* Forgets the history (a new conversation); the RNG continues. */
void sampler_reset(struct sampler *s);

/* Stage 1 alone: applies the penalties to logits in place. */
void sampler_apply_penalties(struct sampler *s, float *logits);

/* Samples one id (the whole chain). It does not accept it: call
 * sampler_accept with the token actually used. Overwrites logits (penalties,
 * and possibly the softmax weights). A +inf logit is certain (the lowest
 * such id); logits with a NaN give the argmax of the numbers. */
int32_t sampler_sample(struct sampler *s, float *logits);

/* Index of the largest value; the lowest index wins ties; NaN never wins
 * over a number. */
int32_t argmax(const float *x, uint32_t n);

#endif
