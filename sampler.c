/* sampler.c - picks the next token from a vector of logits: argmax at
 * temperature 0, otherwise a draw from softmax(logits / temperature),
 * optionally restricted to the top-p nucleus, with a seeded xorshift64* RNG
 * so the same seed and logits give the same tokens (the RNG and the order of
 * every sum are fixed; only expf comes from the platform libm).
 *
 * It does not do top-k, min-p or repetition penalties, and it allocates only
 * in sampler_init: sampler_sample works in the scratch array made there. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "err.h"
#include "sampler.h"

/* splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
 * generators", OOPSLA 2014; constants from Vigna's splitmix64.c,
 * https://prng.di.unimi.it/splitmix64.c). Used once to turn any seed,
 * including 0, into a well-mixed xorshift state. */
static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift
 * generators, scrambled", ACM TOMS 42(4), 2016): shifts 12, 25, 27 and
 * multiplier 0x2545F4914F6CDD1D. The state must never be 0. */
static uint64_t next_u64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, 1): the top 24 bits (the best ones of xorshift64*) scaled
 * by 2^-24, exact in float. */
static float next_uniform(uint64_t *state)
{
    return (float)(next_u64(state) >> 40) * 0x1p-24f;
}

int sampler_init(struct sampler *s, uint32_t vocab_size, float temperature,
                 float top_p, uint64_t seed, char *err)
{
    s->vocab_size = 0;
    s->scratch = NULL;
    if (vocab_size == 0 || vocab_size > INT32_MAX)
        return fail(err, "sampler: vocab_size must be in 1..%d (got %u)",
                    INT32_MAX, (unsigned)vocab_size);
    if (!isfinite(temperature))
        return fail(err, "sampler: temperature must be finite (got %g)", (double)temperature);
    if (temperature < 0)
        return fail(err, "sampler: temperature must be >= 0 (got %g)", (double)temperature);
    if (!(top_p > 0 && top_p <= 1)) /* written so that NaN is rejected too */
        return fail(err, "sampler: top_p must be in (0, 1] (got %g)", (double)top_p);
    s->scratch = malloc((size_t)vocab_size * sizeof *s->scratch);
    if (!s->scratch)
        return fail(err, "sampler: out of memory for %u scratch entries", (unsigned)vocab_size);
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng_state = splitmix64(seed);
    if (s->rng_state == 0) /* the one seed splitmix64 maps to 0 */
        s->rng_state = 0x9e3779b97f4a7c15ull;
    return 0;
}

void sampler_free(struct sampler *s)
{
    free(s->scratch);
    s->scratch = NULL;
    s->vocab_size = 0;
}

/* Strict comparison, so the lowest index wins ties. A NaN never wins over a
 * number (all comparisons with NaN are false, so a NaN in x[0] would
 * otherwise stick); only an all-NaN x gives index 0. */
int32_t argmax(const float *x, uint32_t n)
{
    if (n == 0)
        return -1;
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i])))
            best = i;
    return (int32_t)best;
}

/* Replaces x[i] by w[i] = exp((x[i] - max) / t) and returns the sum of the
 * weights. This is softmax(x / t) before normalisation: dividing (x - max)
 * rather than x by t gives the same distribution but cannot overflow even
 * for tiny t, since every exponent is <= 0 and the largest weight is 1.
 * max must be the largest x[i] and finite. A NaN in x makes the sum NaN. */
static float softmax_weights(float *x, uint32_t n, float max, float t)
{
    float sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        x[i] = expf((x[i] - max) / t);
        sum += x[i];
    }
    return sum;
}

/* Draws an index with probability w[i] / sum, where sum was accumulated over
 * w in index order, as here, so the running total ends exactly at sum. The
 * last token with non-zero weight catches a draw that rounding pushed to the
 * very end. */
static int32_t sample_weights(const float *w, uint32_t n, float sum, float u)
{
    float r = u * sum, cdf = 0;
    uint32_t last = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (w[i] <= 0)
            continue;
        cdf += w[i];
        last = i;
        if (r < cdf)
            return (int32_t)i;
    }
    return (int32_t)last;
}

/* The nucleus order: higher weight first, the lower id first among equal
 * weights. A total order, so the nucleus does not depend on the sort. */
static int ranks_before(const struct prob_index *a, const struct prob_index *b)
{
    return a->prob > b->prob || (a->prob == b->prob && a->id < b->id);
}

/* Restores the heap property (parent ranks before children) below i in
 * h[0..n). The heap root is the best-ranked entry. */
static void sift_down(struct prob_index *h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t best = i, l = 2 * i + 1, r = 2 * i + 2;
        if (l < n && ranks_before(&h[l], &h[best]))
            best = l;
        if (r < n && ranks_before(&h[r], &h[best]))
            best = r;
        if (best == i)
            return;
        struct prob_index tmp = h[i];
        h[i] = h[best];
        h[best] = tmp;
        i = best;
    }
}

/* Copies the tokens that can be in the nucleus into scratch; returns how many.
 *
 * Why the cutoff is safe (the trick from llama2.c run.c, sample_topp): let
 * c = (1 - top_p) / (n - 1) of the total mass. If at most n - 1 tokens are
 * below c, together they hold less than (n - 1) c = 1 - top_p, so the tokens
 * at or above c hold more than top_p; they also come first in the sorted
 * order, so the nucleus lies entirely among them. If all n tokens are below
 * c (possible when top_p < 1/n, e.g. a flat distribution), the argument
 * fails (llama2.c then reads before its array); we take every token with
 * non-zero weight instead. Typically few tokens pass, so the heap below is
 * small. */
static uint32_t nucleus_candidates(const float *w, uint32_t n, float sum, float top_p,
                                   struct prob_index *out)
{
    float cutoff = (1.0f - top_p) / (float)(n - 1) * sum;
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++)
        if (w[i] >= cutoff)
            out[m++] = (struct prob_index){w[i], (int32_t)i};
    if (m > 0)
        return m;
    for (uint32_t i = 0; i < n; i++)
        if (w[i] > 0)
            out[m++] = (struct prob_index){w[i], (int32_t)i};
    return m;
}

/* Top-p sampling over weights w (sum > 0, n >= 2). The nucleus is the
 * smallest set of best-ranked tokens whose mass reaches top_p. Instead of
 * sorting all candidates, they form a max-heap (O(m)) and we pop only until
 * the mass is reached (O(k log m) for a nucleus of k). Heap sort leaves the
 * popped entries at the end of the array, best first from h[m - 1] down.
 * If float rounding keeps the running mass just short of top_p, the nucleus
 * is all candidates. */
static int32_t sample_top_p(const float *w, uint32_t n, float sum, float top_p,
                            struct prob_index *h, float u)
{
    uint32_t m = nucleus_candidates(w, n, sum, top_p, h);
    for (uint32_t i = m / 2; i-- > 0;)
        sift_down(h, m, i);
    float target = top_p * sum, mass = 0;
    uint32_t left = m; /* h[0..left) is still a heap; h[left..m) are popped */
    while (left > 0 && mass < target) {
        left--;
        struct prob_index top = h[0];
        h[0] = h[left];
        h[left] = top;
        sift_down(h, left, 0);
        mass += top.prob;
    }
    float r = u * mass, cdf = 0;
    for (uint32_t i = m; i-- > left;) {
        cdf += h[i].prob;
        if (r < cdf)
            return h[i].id;
    }
    return h[left].id; /* the last (smallest) nucleus token: r rounded up to mass */
}

int32_t sampler_sample(struct sampler *s, float *logits)
{
    uint32_t n = s->vocab_size;
    if (s->temperature == 0 || n == 1)
        return argmax(logits, n);
    /* A +inf logit is certain; if the best is -inf, all are. NaN logits (a
     * broken model) leave no distribution to draw from; the sampler has no
     * error channel, so it falls back on the argmax of the numbers, decided
     * before the weights overwrite them. */
    int32_t best = argmax(logits, n);
    if (isinf(logits[best]))
        return best;
    float sum = softmax_weights(logits, n, logits[best], s->temperature);
    if (!(sum >= 1) || !isfinite(sum)) /* the best token alone weighs 1 */
        return best;
    float u = next_uniform(&s->rng_state);
    if (s->top_p < 1)
        return sample_top_p(logits, n, sum, s->top_p, s->scratch, u);
    return sample_weights(logits, n, sum, u);
}
