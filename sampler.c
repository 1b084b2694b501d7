/* sampler.c - the sampling chain of sampler.h: penalties over a ring of
 * recent tokens, top-k, top-p, min-p, temperature and a draw with a seeded
 * xorshift64* RNG, so the same seed and logits give the same tokens (the RNG
 * and the order of every sum are fixed; only expf/logf come from libm).
 *
 * Speed: nothing here sorts. Top-k keeps a k-entry heap while scanning the
 * logits once; top-p over the whole vocabulary first drops the tokens that
 * cannot be in the nucleus (llama2.c's cut-off), then finds the nucleus by a
 * quickselect on mass; min-p is a threshold. Everything lives in memory
 * allocated by sampler_init. It does not do mirostat, typical-p, XTC, DRY or
 * grammars. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

static uint64_t seed_state(uint64_t seed)
{
    uint64_t s = splitmix64(seed);
    return s ? s : 0x9e3779b97f4a7c15ull; /* the one seed splitmix64 maps to 0 */
}

struct sampler_params sampler_default_params(void)
{
    /* llama.cpp common/common.h, struct common_params_sampling: temp 0.80,
     * top_k 40, top_p 0.95, min_p 0.05, penalty_last_n 64, penalty_repeat
     * 1.00, penalty_freq 0.00, penalty_present 0.00. */
    return (struct sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .penalty_last_n = 64,
        .seed = 0,
    };
}

/* The range checks are written so that NaN fails every one of them. */
int sampler_check_params(const struct sampler_params *p, char *err)
{
    if (!(p->temperature >= 0 && isfinite(p->temperature)))
        return fail(err, "sampler: temperature (--temp) must be a finite number >= 0 (got %g)",
                    (double)p->temperature);
    if (p->top_k < 0)
        return fail(err, "sampler: top_k (--top-k) must be >= 0 (got %d)", (int)p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return fail(err, "sampler: top_p (--top-p) must be in (0, 1] (got %g)", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return fail(err, "sampler: min_p (--min-p) must be in [0, 1] (got %g)", (double)p->min_p);
    if (!(p->repeat_penalty > 0 && isfinite(p->repeat_penalty)))
        return fail(err, "sampler: repeat_penalty (--repeat-penalty) must be a finite number > 0 "
                    "(got %g)", (double)p->repeat_penalty);
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
        return fail(err, "sampler: frequency_penalty (--frequency-penalty) must be in [-2, 2] "
                    "(got %g)", (double)p->frequency_penalty);
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
        return fail(err, "sampler: presence_penalty (--presence-penalty) must be in [-2, 2] "
                    "(got %g)", (double)p->presence_penalty);
    if (p->penalty_last_n < -1)
        return fail(err, "sampler: penalty_last_n (--repeat-last-n) must be >= -1 "
                    "(-1 = the whole context, 0 = off; got %d)", (int)p->penalty_last_n);
    return 0;
}

int sampler_init(struct sampler *s, uint32_t vocab_size, uint32_t max_history,
                 const struct sampler_params *p, char *err)
{
    memset(s, 0, sizeof *s);
    if (vocab_size == 0 || vocab_size > INT32_MAX)
        return fail(err, "sampler: vocab_size must be in 1..%d (got %u)", INT32_MAX,
                    (unsigned)vocab_size);
    /* <= INT32_MAX keeps history_next + history_cap below 2^32 (recent()) */
    if (max_history == 0 || max_history > INT32_MAX)
        return fail(err, "sampler: max_history must be in 1..%d (got %u)", INT32_MAX,
                    (unsigned)max_history);
    if (sampler_check_params(p, err) < 0)
        return -1;
    s->cand = malloc((size_t)vocab_size * sizeof *s->cand);
    s->counts = calloc(vocab_size, sizeof *s->counts);
    s->history = malloc((size_t)max_history * sizeof *s->history);
    if (!s->cand || !s->counts || !s->history) {
        sampler_free(s);
        return fail(err, "sampler: out of memory for a vocabulary of %u and a history of %u",
                    (unsigned)vocab_size, (unsigned)max_history);
    }
    s->vocab_size = vocab_size;
    s->history_cap = max_history;
    s->params = *p;
    s->rng_state = seed_state(p->seed);
    return 0;
}

void sampler_free(struct sampler *s)
{
    free(s->cand);
    free(s->counts);
    free(s->history);
    memset(s, 0, sizeof *s);
}

int sampler_set_params(struct sampler *s, const struct sampler_params *p, char *err)
{
    if (sampler_check_params(p, err) < 0)
        return -1;
    s->params = *p;
    s->rng_state = seed_state(p->seed);
    return 0;
}

void sampler_accept(struct sampler *s, int32_t token)
{
    if (token < 0 || (uint32_t)token >= s->vocab_size)
        return;
    s->history[s->history_next] = token;
    if (++s->history_next == s->history_cap)
        s->history_next = 0;
    if (s->history_len < s->history_cap)
        s->history_len++;
}

void sampler_reset(struct sampler *s)
{
    s->history_len = 0;
    s->history_next = 0;
}

/* ---- penalties ---- */

/* The k-th most recent accepted token (k = 0 is the newest; k < history_len). */
static int32_t recent(const struct sampler *s, uint32_t k)
{
    uint32_t i = s->history_next + s->history_cap - 1 - k;
    return s->history[i >= s->history_cap ? i - s->history_cap : i];
}

/* How many of the most recent tokens the penalties look at. */
static uint32_t penalty_window(const struct sampler *s)
{
    const struct sampler_params *p = &s->params;
    if (p->penalty_last_n == 0 ||
        (p->repeat_penalty == 1 && p->frequency_penalty == 0 && p->presence_penalty == 0))
        return 0;
    uint32_t w = s->history_cap;
    if (p->penalty_last_n > 0 && (uint32_t)p->penalty_last_n < w)
        w = (uint32_t)p->penalty_last_n;
    return w < s->history_len ? w : s->history_len;
}

/* Counts the window into counts[] (O(W), not O(vocab)), then visits it again:
 * the first visit of each distinct token applies its penalty and sets its
 * count back to 0, so counts[] is all zero again on return. */
void sampler_apply_penalties(struct sampler *s, float *logits)
{
    uint32_t w = penalty_window(s);
    const struct sampler_params *p = &s->params;
    for (uint32_t k = 0; k < w; k++)
        s->counts[recent(s, k)]++;
    for (uint32_t k = 0; k < w; k++) {
        int32_t t = recent(s, k);
        uint32_t c = s->counts[t];
        if (c == 0)
            continue;
        s->counts[t] = 0;
        float x = logits[t];
        x = x > 0 ? x / p->repeat_penalty : x * p->repeat_penalty;
        logits[t] = x - ((float)c * p->frequency_penalty + p->presence_penalty);
    }
}

/* ---- argmax and the unfiltered draw ---- */

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

/* Draws from softmax(x / t) over the whole vocabulary, writing the weights
 * w[i] = exp((x[i] - max) / t) over x. Dividing (x - max) rather than x by t
 * gives the same distribution but cannot overflow even for tiny t: every
 * exponent is <= 0 and the largest weight is 1, so the sum is in [1, n].
 * The draw walks the weights in the order they were summed, so the running
 * total ends exactly at the sum; the last token with non-zero weight catches
 * a draw that rounding pushed to the very end. */
static int32_t draw_all(float *x, uint32_t n, float max, float t, float u)
{
    float sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        x[i] = expf((x[i] - max) / t);
        sum += x[i];
    }
    float r = u * sum, cdf = 0;
    uint32_t last = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (x[i] <= 0)
            continue;
        cdf += x[i];
        last = i;
        if (r < cdf)
            return (int32_t)i;
    }
    return (int32_t)last;
}

/* The same over the candidates c[0..m) (m >= 1, the max among them). */
static int32_t draw_candidates(struct sampler_candidate *c, uint32_t m, float max, float t,
                               float u)
{
    float sum = 0;
    for (uint32_t i = 0; i < m; i++) {
        c[i].weight = expf((c[i].logit - max) / t);
        sum += c[i].weight;
    }
    float r = u * sum, cdf = 0;
    uint32_t last = 0;
    for (uint32_t i = 0; i < m; i++) {
        if (c[i].weight <= 0)
            continue;
        cdf += c[i].weight;
        last = i;
        if (r < cdf)
            return c[i].id;
    }
    return c[last].id;
}

/* ---- the candidate order ---- */

/* The rank order of every filter: the higher logit first, the lower id first
 * among equal logits. A total order with no two candidates equal (NaN is
 * handled before), so which tokens a filter keeps never depends on the
 * order the candidates happen to be in. */
static int ranks_before(const struct sampler_candidate *a, const struct sampler_candidate *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static void swap(struct sampler_candidate *a, struct sampler_candidate *b)
{
    struct sampler_candidate t = *a;
    *a = *b;
    *b = t;
}

/* ---- top-k ---- */

/* Restores the heap property below i in h[0..n): every parent ranks after
 * its children, so the root is the worst-ranked entry. */
static void sift_down_worst(struct sampler_candidate *h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t top = i, l = 2 * i + 1, r = 2 * i + 2;
        if (l < n && ranks_before(&h[top], &h[l]))
            top = l;
        if (r < n && ranks_before(&h[top], &h[r]))
            top = r;
        if (top == i)
            return;
        swap(&h[i], &h[top]);
        i = top;
    }
}

/* The k best-ranked tokens (0 < k < n) into c[0..k), in heap order: a heap
 * with the worst of the k at the root; a later token enters only if it
 * ranks before the root. Its id is higher than every id in the heap, so it
 * does exactly when its logit is strictly greater. One pass over the
 * logits, plus O(log k) per token that enters (few, for any but a rising
 * sequence). */
static uint32_t select_top_k(const float *logits, uint32_t n, uint32_t k,
                             struct sampler_candidate *c)
{
    for (uint32_t i = 0; i < k; i++)
        c[i] = (struct sampler_candidate){logits[i], 0, (int32_t)i};
    for (uint32_t i = k / 2; i-- > 0;)
        sift_down_worst(c, k, i);
    for (uint32_t i = k; i < n; i++) {
        if (logits[i] > c[0].logit) {
            c[0] = (struct sampler_candidate){logits[i], 0, (int32_t)i};
            sift_down_worst(c, k, 0);
        }
    }
    return k;
}

/* ---- top-p ---- */

/* Sets each weight to exp(logit - max) (temperature 1) and returns the sum,
 * accumulated in array order. */
static float weigh(struct sampler_candidate *c, uint32_t m, float max)
{
    float sum = 0;
    for (uint32_t i = 0; i < m; i++) {
        c[i].weight = expf(c[i].logit - max);
        sum += c[i].weight;
    }
    return sum;
}

/* Log-domain slack for the cut-off test below: a token whose weight is at
 * least the cut-off passes the cheap test even after expf/logf rounding
 * (a few ulp, ~1e-7 here); the exact weight test decides. */
#define CUTOFF_SLACK 1e-3f

/* For top-p over the whole vocabulary: the tokens that can be in the
 * nucleus, with their temperature-1 weights, into c; returns how many and
 * sets *sum to the weight of all n tokens.
 *
 * Why the cut-off is safe (the trick from llama2.c run.c, sample_topp): let
 * cut = (1 - top_p) / (n - 1) of the total mass. If at most n - 1 tokens are
 * below it, together they hold less than (n - 1) cut = 1 - top_p, so the
 * tokens at or above it hold more than top_p; they also come first in rank
 * order, so the nucleus lies entirely among them. If all n tokens are below
 * it (possible when top_p < 1/n, e.g. a flat distribution), the argument
 * fails (llama2.c then reads before its array); we take every token with
 * non-zero weight instead. */
static uint32_t nucleus_candidates(const float *logits, uint32_t n, float max, float top_p,
                                   struct sampler_candidate *c, float *sum)
{
    float total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += expf(logits[i] - max);
    *sum = total;
    float cut = (1.0f - top_p) / (float)(n - 1) * total;
    float log_cut = logf(cut) - CUTOFF_SLACK;
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        float d = logits[i] - max;
        if (d < log_cut)
            continue;
        float w = expf(d);
        if (w >= cut)
            c[m++] = (struct sampler_candidate){logits[i], w, (int32_t)i};
    }
    if (m > 0)
        return m;
    for (uint32_t i = 0; i < n; i++) {
        float w = expf(logits[i] - max);
        if (w > 0)
            c[m++] = (struct sampler_candidate){logits[i], w, (int32_t)i};
    }
    return m;
}

/* Of candidates a, b, c (indices), the one ranked in the middle. */
static uint32_t median3(const struct sampler_candidate *v, uint32_t a, uint32_t b, uint32_t c)
{
    if (ranks_before(&v[b], &v[a])) {
        uint32_t t = a;
        a = b;
        b = t;
    } /* now a ranks before b */
    if (ranks_before(&v[c], &v[a]))
        return a;
    return ranks_before(&v[c], &v[b]) ? c : b;
}

/* Partitions c[lo..hi) around the candidate at index p: those ranking before
 * it first, then it, then the rest. Returns its new index; *mass gets the
 * weight of the first part. */
static uint32_t partition(struct sampler_candidate *c, uint32_t lo, uint32_t hi, uint32_t p,
                          float *mass)
{
    swap(&c[p], &c[hi - 1]);
    const struct sampler_candidate *pivot = &c[hi - 1];
    uint32_t store = lo;
    float sum = 0;
    for (uint32_t i = lo; i < hi - 1; i++) {
        if (ranks_before(&c[i], pivot)) {
            swap(&c[i], &c[store]);
            sum += c[store].weight;
            store++;
        }
    }
    swap(&c[store], &c[hi - 1]);
    *mass = sum;
    return store;
}

/* Top-p over c[0..m), whose weights (with those of the tokens the cut-off
 * dropped) sum to sum: moves the nucleus, the smallest best-first set whose
 * mass reaches top_p * sum, to c[0..L) (in no particular order) and returns
 * L >= 1. A quickselect on mass rather than a sort: each round splits the
 * undecided range around a pivot and keeps only the side where the nucleus
 * ends, so it costs O(m) on average. Invariant: c[0..lo) is in the nucleus,
 * c[hi..m) is not, and need > 0 is the mass still missing. If float
 * rounding keeps the mass just short of the target, all m are kept. */
static uint32_t top_p_filter(struct sampler_candidate *c, uint32_t m, float sum, float top_p)
{
    float need = top_p * sum;
    uint32_t lo = 0, hi = m;
    while (hi - lo > 1) {
        float upper;
        uint32_t q = partition(c, lo, hi, median3(c, lo, lo + (hi - lo) / 2, hi - 1), &upper);
        if (upper >= need) {
            hi = q; /* q > lo: upper > 0 */
        } else if (upper + c[q].weight >= need) {
            return q + 1;
        } else {
            need -= upper + c[q].weight;
            lo = q + 1;
        }
    }
    return hi;
}

/* ---- min-p ---- */

/* Keeps the candidates with logit >= max + log(min_p) at the front of
 * c[0..m), in their order; returns how many. The max itself always stays
 * (log(min_p) <= 0). */
static uint32_t min_p_filter(struct sampler_candidate *c, uint32_t m, float max, float min_p)
{
    if (min_p <= 0)
        return m;
    float lo = logf(min_p);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < m; i++)
        if (c[i].logit - max >= lo)
            c[kept++] = c[i];
    return kept;
}

/* Min-p alone over the whole vocabulary: the survivors go straight into c. */
static uint32_t gather_min_p(const float *logits, uint32_t n, float max, float min_p,
                             struct sampler_candidate *c)
{
    float lo = logf(min_p);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++)
        if (logits[i] - max >= lo)
            c[m++] = (struct sampler_candidate){logits[i], 0, (int32_t)i};
    return m;
}

/* Whether x holds a NaN, and if not the index of its largest value (the
 * lowest on ties), in one branch-light pass; with a NaN the index is
 * meaningless (use argmax). */
static int32_t scan(const float *x, uint32_t n, int *nan_seen)
{
    uint32_t best = 0;
    float max = x[0];
    int seen = 0;
    for (uint32_t i = 0; i < n; i++) {
        float v = x[i];
        seen |= v != v;
        if (v > max) {
            max = v;
            best = i;
        }
    }
    *nan_seen = seen;
    return (int32_t)best;
}

int32_t sampler_sample(struct sampler *s, float *logits)
{
    const struct sampler_params *p = &s->params;
    uint32_t n = s->vocab_size;
    sampler_apply_penalties(s, logits);
    if (p->temperature == 0 || n == 1)
        return argmax(logits, n);
    /* A +inf logit is certain; if the best is -inf, all are. NaN logits (a
     * broken model) leave no distribution to draw from; the sampler has no
     * error channel, so it falls back on the argmax of the numbers. */
    int nan_seen;
    int32_t best = scan(logits, n, &nan_seen);
    if (nan_seen)
        return argmax(logits, n);
    if (isinf(logits[best]))
        return best;
    float max = logits[best];
    float u = next_uniform(&s->rng_state);
    uint32_t k = p->top_k > 0 && (uint32_t)p->top_k < n ? (uint32_t)p->top_k : n;
    if (k == n && p->top_p >= 1 && p->min_p <= 0)
        return draw_all(logits, n, max, p->temperature, u);

    struct sampler_candidate *c = s->cand;
    uint32_t m;
    if (k < n) {
        m = select_top_k(logits, n, k, c);
        if (p->top_p < 1)
            m = top_p_filter(c, m, weigh(c, m, max), p->top_p);
    } else if (p->top_p < 1) {
        float sum;
        m = nucleus_candidates(logits, n, max, p->top_p, c, &sum);
        m = top_p_filter(c, m, sum, p->top_p);
    } else {
        m = gather_min_p(logits, n, max, p->min_p, c);
    }
    m = min_p_filter(c, m, max, p->min_p);
    return draw_candidates(c, m, max, p->temperature, u);
}
