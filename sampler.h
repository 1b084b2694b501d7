/* sampler.h - picks the next token from a logit vector: greedy at
 * temperature 0, otherwise temperature + top-p (nucleus) sampling with a
 * seeded RNG, so the same seed gives the same tokens. Scratch memory is
 * allocated once in sampler_init; sampling allocates nothing. */
#ifndef HEARTH_SAMPLER_H
#define HEARTH_SAMPLER_H

#include <stdint.h>

struct prob_index {
    float prob;
    int32_t id;
};

struct sampler {
    uint32_t vocab_size;
    float temperature;          /* 0 = greedy (argmax, lowest id on ties) */
    float top_p;                /* (0, 1]; 1 = off */
    uint64_t rng_state;
    struct prob_index *scratch; /* vocab_size entries */
};

/* Returns -1 with err naming the option if a value is out of range
 * (temperature < 0 or not finite, top_p outside (0, 1]). */
int sampler_init(struct sampler *s, uint32_t vocab_size, float temperature,
                 float top_p, uint64_t seed, char *err);
void sampler_free(struct sampler *s);

/* Samples one id. May overwrite logits (softmax in place). */
int32_t sampler_sample(struct sampler *s, float *logits);

/* Index of the largest value; the lowest index wins ties. */
int32_t argmax(const float *x, uint32_t n);

#endif
