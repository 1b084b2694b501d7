/* tests/test_sampler.c - tests for sampler.c: parameter validation, greedy
 * argmax, seeding, the exact effect of each penalty and its sliding window,
 * and, by many draws from fixed seeds, that top-k, top-p, min-p and
 * temperature keep the right tokens and draw them with the right
 * frequencies, in llama.cpp's order.
 *
 * Expected probabilities come from reference_probs below: the chain of
 * sampler.h written out again in double by sorting the whole vocabulary
 * (softmax, best-first prefix sums), not by the heap code under test. It
 * does not test that sampling never allocates. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../err.h"
#include "../sampler.h"
#include "test.h"

/* Filters off: plain softmax at temperature t. */
static struct sampler_params plain(float t, uint64_t seed)
{
    struct sampler_params p = sampler_default_params();
    p.temperature = t;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

/* Draws one token from a copy of logits (sampler_sample overwrites them). */
static int32_t draw(struct sampler *s, const float *logits, float *work)
{
    memcpy(work, logits, s->vocab_size * sizeof *work);
    return sampler_sample(s, work);
}

struct ranked {
    double logit;
    int id;
};

static int by_logit_desc(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

/* The chain of sampler.h from its definition: p[i] gets the final
 * probability of token i (0 if a filter drops it); returns how many tokens
 * survive. *margin gets the smallest distance of a top-p or min-p decision
 * from its threshold (in mass for top-p, in log-probability for min-p), so a
 * test can make sure float rounding cannot flip a decision. No penalties. */
static int reference_probs(const float *logits, int n, const struct sampler_params *sp, double *p,
                           double *margin)
{
    struct ranked *r = malloc((size_t)n * sizeof *r);
    for (int i = 0; i < n; i++)
        r[i] = (struct ranked){logits[i], i};
    qsort(r, (size_t)n, sizeof *r, by_logit_desc);
    double max = r[0].logit;
    int keep = sp->top_k > 0 && sp->top_k < n ? sp->top_k : n;
    *margin = INFINITY;
    if (sp->top_p < 1) {
        double sum = 0, mass = 0;
        for (int i = 0; i < keep; i++)
            sum += exp(r[i].logit - max);
        int len = keep;
        for (int i = 0; i < keep; i++) {
            double before = mass;
            mass += exp(r[i].logit - max) / sum;
            if (mass >= sp->top_p) {
                len = i + 1;
                *margin = fmin(mass - sp->top_p, i > 0 ? sp->top_p - before : INFINITY);
                break;
            }
        }
        keep = len;
    }
    memset(p, 0, (size_t)n * sizeof *p);
    double sum = 0;
    int kept = 0;
    for (int i = 0; i < keep; i++) {
        double d = r[i].logit - max;
        if (sp->min_p > 0) {
            double lo = log((double)sp->min_p);
            if (i > 0 && d != 0) /* a tie with the max is exact in float too */
                *margin = fmin(*margin, fabs(d - lo));
            if (d < lo)
                continue;
        }
        p[r[i].id] = exp(d / sp->temperature);
        sum += p[r[i].id];
        kept++;
    }
    for (int i = 0; i < n; i++)
        p[i] /= sum;
    free(r);
    return kept;
}

/* Pearson's chi-square statistic has mean df and variance 2 df under the
 * null hypothesis. The bound is its 1 - 1e-6 quantile by the Wilson-Hilferty
 * approximation (chi2/df)^(1/3) ~ N(1 - 2/(9 df), 2/(9 df)), with z = 4.753
 * the one-sided normal 1e-6 point: 41.9 for df = 7 (the exact quantile is
 * 40.5); for df 1 and 2 it is looser (27.5 and 30.3 against 23.9 and 27.6).
 * A correct sampler fails it about once in a million seeds. A relative error
 * e in a probability p adds about n_draws * p * e^2 to the statistic. */
static double chi2_bound(int df)
{
    double v = 2.0 / (9.0 * df);
    double c = 1.0 - v + 4.753 * sqrt(v);
    return df * c * c * c;
}

/* Returns the chi-square statistic of counts against n_draws * p over the
 * tokens with p > 0; *df gets (number of such tokens) - 1. */
static double chi2(const long *counts, const double *p, int n, long n_draws, int *df)
{
    double stat = 0;
    *df = -1;
    for (int i = 0; i < n; i++) {
        if (p[i] <= 0)
            continue;
        double e = (double)n_draws * p[i];
        stat += (counts[i] - e) * (counts[i] - e) / e;
        (*df)++;
    }
    return stat;
}

/* Draws n_draws tokens and compares the counts with the probabilities p:
 * tokens with p == 0 must never appear; with a single allowed token there
 * is no statistic, only that check. */
static void check_frequencies(const char *what, struct sampler *s, const float *logits,
                              const double *p, long n_draws)
{
    int n = (int)s->vocab_size;
    long *counts = calloc((size_t)n, sizeof *counts);
    float *work = malloc((size_t)n * sizeof *work);
    long outside = 0;
    int32_t first_outside = -1;
    for (long d = 0; d < n_draws; d++) {
        int32_t t = draw(s, logits, work);
        if (t < 0 || t >= n || p[t] <= 0) {
            outside++;
            first_outside = first_outside < 0 ? t : first_outside;
        } else {
            counts[t]++;
        }
    }
    CHECK(outside == 0, "%s: %ld draws outside the allowed tokens (first: %d)", what, outside,
          (int)first_outside);
    int df;
    double stat = chi2(counts, p, n, n_draws, &df);
    if (df > 0)
        CHECK(stat < chi2_bound(df), "%s: chi-square %.1f with %d df, bound %.1f", what, stat,
              df, chi2_bound(df));
    free(counts);
    free(work);
}

/* Runs the chain with parameters sp over logits and checks the draws
 * against reference_probs; the logits must keep every top-p/min-p decision
 * at least 1e-4 from its threshold. Returns the number of allowed tokens. */
static int check_chain(const char *what, const float *logits, int n,
                       const struct sampler_params *sp, long n_draws)
{
    double *p = malloc((size_t)n * sizeof *p), margin;
    int kept = reference_probs(logits, n, sp, p, &margin);
    CHECK(margin > 1e-4, "%s: test setup: a decision %.2g from its threshold", what, margin);
    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    if (sampler_init(&s, (uint32_t)n, 64, sp, err) == 0) {
        check_frequencies(what, &s, logits, p, n_draws);
        sampler_free(&s);
    } else {
        CHECK(0, "%s: init: %s", what, err);
    }
    free(p);
    return kept;
}

/* ---- parameters ---- */

static void test_invalid_options(void)
{
    static const struct {
        int field;
        float value;
        const char *names; /* the field and its option, as the error gives them */
    } bad[] = {
        {0, -1.0f, "temperature (--temp)"},   {0, -1e-30f, "temperature (--temp)"},
        {0, NAN, "temperature (--temp)"},     {0, INFINITY, "temperature (--temp)"},
        {1, -1, "top_k (--top-k)"},           {2, 0.0f, "top_p (--top-p)"},
        {2, -0.5f, "top_p (--top-p)"},        {2, 1.0001f, "top_p (--top-p)"},
        {2, NAN, "top_p (--top-p)"},          {3, -0.01f, "min_p (--min-p)"},
        {3, 1.01f, "min_p (--min-p)"},        {3, NAN, "min_p (--min-p)"},
        {4, 0.0f, "repeat_penalty (--repeat-penalty)"},
        {4, -1.0f, "repeat_penalty (--repeat-penalty)"},
        {4, INFINITY, "repeat_penalty (--repeat-penalty)"},
        {4, NAN, "repeat_penalty (--repeat-penalty)"},
        {5, 2.01f, "frequency_penalty (--frequency-penalty)"},
        {5, -2.01f, "frequency_penalty (--frequency-penalty)"},
        {5, NAN, "frequency_penalty (--frequency-penalty)"},
        {6, 2.5f, "presence_penalty (--presence-penalty)"},
        {6, -INFINITY, "presence_penalty (--presence-penalty)"},
        {7, -2, "penalty_last_n (--repeat-last-n)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sampler_params p = sampler_default_params();
        switch (bad[i].field) {
        case 0: p.temperature = bad[i].value; break;
        case 1: p.top_k = (int32_t)bad[i].value; break;
        case 2: p.top_p = bad[i].value; break;
        case 3: p.min_p = bad[i].value; break;
        case 4: p.repeat_penalty = bad[i].value; break;
        case 5: p.frequency_penalty = bad[i].value; break;
        case 6: p.presence_penalty = bad[i].value; break;
        default: p.penalty_last_n = (int32_t)bad[i].value; break;
        }
        struct sampler s;
        char err[HEARTH_ERR_BYTES] = "";
        int rc = sampler_init(&s, 10, 64, &p, err);
        CHECK(rc == -1, "%s = %g accepted", bad[i].names, (double)bad[i].value);
        CHECK(strstr(err, bad[i].names) != NULL, "error '%s' does not name %s", err,
              bad[i].names);
        sampler_free(&s); /* safe after a failed init */
    }
    char err[HEARTH_ERR_BYTES] = "";
    struct sampler s;
    struct sampler_params p = sampler_default_params();
    p.temperature = -1;
    sampler_init(&s, 10, 64, &p, err);
    CHECK(strstr(err, "temperature (--temp) must be a finite number >= 0 (got -1)") != NULL,
          "message: '%s'", err);
    p = sampler_default_params();
    p.top_k = -3;
    sampler_check_params(&p, err);
    CHECK(strstr(err, "top_k (--top-k) must be >= 0 (got -3)") != NULL, "message: '%s'", err);
    p.top_k = 0;
    p.min_p = 2;
    sampler_check_params(&p, err);
    CHECK(strstr(err, "min_p (--min-p) must be in [0, 1] (got 2)") != NULL, "message: '%s'", err);

    p = sampler_default_params();
    CHECK(sampler_init(&s, 0, 64, &p, err) == -1 && strstr(err, "vocab_size"),
          "vocab 0: '%s'", err);
    CHECK(sampler_init(&s, 10, 0, &p, err) == -1 && strstr(err, "max_history"),
          "max_history 0: '%s'", err);

    /* the edges of the legal ranges */
    const struct sampler_params edges[] = {
        {0.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0, 0},
        {1e-30f, 1, 1e-7f, 1.0f, 1e-30f, -2.0f, 2.0f, -1, UINT64_MAX},
        {100.0f, INT32_MAX, 0.5f, 0.5f, 1e30f, 2.0f, -2.0f, INT32_MAX, 1},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        CHECK(sampler_init(&s, 1, 1, &edges[i], err) == 0, "edge case %zu rejected: %s", i, err);
        sampler_free(&s);
    }

    /* a rejected sampler_set_params leaves everything as it was */
    p = sampler_default_params();
    CHECK(sampler_init(&s, 10, 64, &p, err) == 0, "init: %s", err);
    struct sampler before = s;
    struct sampler_params q = p;
    q.top_p = 0;
    CHECK(sampler_set_params(&s, &q, err) == -1 && strstr(err, "--top-p"),
          "set_params accepted top_p 0: '%s'", err);
    CHECK(!memcmp(&before, &s, sizeof s), "a failed set_params changed the sampler");
    sampler_free(&s);
}

static void test_defaults(void)
{
    /* llama.cpp common/common.h, struct common_params_sampling */
    struct sampler_params p = sampler_default_params();
    CHECK(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f,
          "defaults: temp %g top_k %d top_p %g min_p %g", (double)p.temperature, (int)p.top_k,
          (double)p.top_p, (double)p.min_p);
    CHECK(p.repeat_penalty == 1.0f && p.frequency_penalty == 0 && p.presence_penalty == 0 &&
              p.penalty_last_n == 64,
          "defaults: repeat %g freq %g presence %g last_n %d", (double)p.repeat_penalty,
          (double)p.frequency_penalty, (double)p.presence_penalty, (int)p.penalty_last_n);
    char err[HEARTH_ERR_BYTES];
    CHECK(sampler_check_params(&p, err) == 0, "defaults rejected: %s", err);
}

/* ---- greedy and seeds ---- */

static void test_greedy(void)
{
    CHECK(argmax((const float[]){1.0f, 3.0f, 3.0f, -2.0f}, 4) == 1, "argmax tie: want 1");
    CHECK(argmax((const float[]){NAN, -5.0f, NAN}, 3) == 1, "argmax with NaN: want 1");

    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    struct sampler_params p = sampler_default_params();
    p.temperature = 0;
    p.seed = 42;
    const float x[5] = {0.5f, 2.0f, 2.0f, -1.0f, 2.0f};
    float work[5];
    CHECK(sampler_init(&s, 5, 16, &p, err) == 0, "init: %s", err);
    uint64_t rng = s.rng_state;
    for (int i = 0; i < 10; i++) {
        int32_t t = draw(&s, x, work);
        CHECK(t == 1, "greedy drew %d, want 1 (the lowest of the tied ids)", t);
    }
    CHECK(s.rng_state == rng, "greedy sampling used the RNG");
    /* greedy takes the argmax of the penalized logits: 1 and 2 repeated */
    struct sampler_params q = p;
    q.repeat_penalty = 2.0f;
    CHECK(sampler_set_params(&s, &q, err) == 0, "set_params: %s", err);
    sampler_accept(&s, 1);
    sampler_accept(&s, 2);
    int32_t t = draw(&s, x, work);
    CHECK(t == 4, "greedy with repeat penalty drew %d, want 4", t);
    CHECK(work[1] == 1.0f && work[2] == 1.0f && work[4] == 2.0f,
          "penalized logits %g %g %g, want 1 1 2", (double)work[1], (double)work[2],
          (double)work[4]);
    sampler_free(&s);

    /* a vanishing temperature behaves like greedy, without NaN from
     * overflow, with the filters off or on */
    uint64_t seed = 9;
    enum { N = 1000 };
    static float logits[N], big[N];
    for (int i = 0; i < N; i++)
        logits[i] = test_rand_normal(&seed) * 5.0f;
    int32_t best = argmax(logits, N);
    for (int filters = 0; filters < 2; filters++) {
        p = filters ? sampler_default_params() : plain(1.0f, 42);
        p.temperature = 1e-30f;
        CHECK(sampler_init(&s, N, 16, &p, err) == 0, "init: %s", err);
        for (int i = 0; i < 20; i++) {
            t = draw(&s, logits, big);
            CHECK(t == best, "temperature 1e-30 (filters %d) drew %d, argmax is %d", filters, t,
                  best);
        }
        sampler_free(&s);
    }
}

static void test_seeds(void)
{
    enum { V = 16, DRAWS = 1000 };
    float logits[V], work[V];
    for (int i = 0; i < V; i++)
        logits[i] = 0.1f * (float)(i % 5);
    int32_t seq[5][DRAWS];
    const uint64_t seeds[4] = {7, 7, 8, 0};
    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    for (int k = 0; k < 4; k++) {
        /* the chain with top-k 40 > V (off), min-p 0.05 keeping all */
        struct sampler_params p = sampler_default_params();
        p.temperature = 1.0f;
        p.top_p = 1.0f;
        p.seed = seeds[k];
        CHECK(sampler_init(&s, V, 64, &p, err) == 0, "init: %s", err);
        for (int i = 0; i < DRAWS; i++)
            seq[k][i] = draw(&s, logits, work);
        if (k == 0) { /* set_params with the same seed restarts the same stream */
            CHECK(sampler_set_params(&s, &p, err) == 0, "set_params: %s", err);
            for (int i = 0; i < DRAWS; i++)
                seq[4][i] = draw(&s, logits, work);
        }
        sampler_free(&s);
    }
    CHECK(memcmp(seq[0], seq[1], sizeof seq[0]) == 0, "seed 7 twice gave different tokens");
    CHECK(memcmp(seq[0], seq[4], sizeof seq[0]) == 0, "reseeding with 7 gave different tokens");
    int same78 = 0, same70 = 0;
    for (int i = 0; i < DRAWS; i++) {
        same78 += seq[0][i] == seq[2][i];
        same70 += seq[0][i] == seq[3][i];
    }
    /* independent streams agree on about 1/16 of the draws (~62 of 1000) */
    CHECK(same78 < 200, "seeds 7 and 8 agree on %d of %d draws", same78, DRAWS);
    CHECK(same70 < 200, "seeds 7 and 0 agree on %d of %d draws", same70, DRAWS);
    /* seed 0 must not stall the generator: every token shows up */
    int seen[V] = {0};
    for (int i = 0; i < DRAWS; i++)
        if (seq[3][i] >= 0 && seq[3][i] < V)
            seen[seq[3][i]] = 1;
    for (int i = 0; i < V; i++)
        CHECK(seen[i], "seed 0: token %d never drawn in %d draws", i, DRAWS);
}

/* ---- penalties ---- */

/* Logits of every sign, zero included (16 of them). */
static void penalty_logits(float *x, int n)
{
    static const float v[16] = {-2.0f, -0.75f, 0.5f,  1.75f, 0.0f,  -3.5f, 2.25f, -1.25f,
                                0.75f, -1.75f, 3.0f,  0.0f,  -0.5f, 1.25f, -2.5f, 4.0f};
    memcpy(x, v, (size_t)n * sizeof *x);
}

/* Applies the penalties of s to fresh logits and checks every token against
 * the definition, given count[t] = occurrences of t in the window. */
static void check_penalized(const char *what, struct sampler *s, const int *count)
{
    enum { V = 16 };
    float x[V], y[V];
    penalty_logits(x, V);
    memcpy(y, x, sizeof y);
    sampler_apply_penalties(s, y);
    const struct sampler_params *p = &s->params;
    for (int t = 0; t < V; t++) {
        if (count[t] == 0) {
            CHECK(!memcmp(&x[t], &y[t], sizeof x[t]), "%s: token %d outside the window "
                  "changed from %g to %g", what, t, (double)x[t], (double)y[t]);
            continue;
        }
        double want = x[t] > 0 ? (double)x[t] / p->repeat_penalty
                               : (double)x[t] * p->repeat_penalty;
        want -= count[t] * (double)p->frequency_penalty + (double)p->presence_penalty;
        CHECK(fabs(y[t] - want) <= 1e-6 * (1 + fabs(want)), "%s: token %d (logit %g, count %d) "
              "became %g, want %g", what, t, (double)x[t], count[t], (double)y[t], want);
    }
}

static void test_penalties(void)
{
    enum { V = 16 };
    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    struct sampler_params p = sampler_default_params();
    p.repeat_penalty = 1.5f;
    p.frequency_penalty = 0.25f;
    p.presence_penalty = 0.5f;
    p.penalty_last_n = 4;
    CHECK(sampler_init(&s, V, 8, &p, err) == 0, "init: %s", err);

    /* window of the last 4: 3 4 3 9 (5 slid out). Token 3 has logit 1.75
     * (> 0, divided), 4 has 0, 9 has -1.75 (< 0, multiplied). */
    const int32_t seq[] = {5, 3, 4, 3, 9};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++)
        sampler_accept(&s, seq[i]);
    int count[V] = {0};
    count[3] = 2, count[4] = 1, count[9] = 1;
    check_penalized("all three", &s, count);
    check_penalized("again (counts cleared after use)", &s, count);

    /* each penalty alone */
    const struct {
        float rep, freq, pres;
        const char *what;
    } alone[] = {{1.5f, 0, 0, "repetition only"},
                 {1.0f, 0.25f, 0, "frequency only"},
                 {1.0f, 0, 0.5f, "presence only"},
                 {0.5f, -0.3f, -0.7f, "penalties below 1 and negative"}};
    for (size_t i = 0; i < sizeof alone / sizeof alone[0]; i++) {
        struct sampler_params q = p;
        q.repeat_penalty = alone[i].rep;
        q.frequency_penalty = alone[i].freq;
        q.presence_penalty = alone[i].pres;
        CHECK(sampler_set_params(&s, &q, err) == 0, "set_params: %s", err);
        check_penalized(alone[i].what, &s, count);
    }
    /* the sign rule and the counts, spelled out once */
    struct sampler_params q = p;
    q.frequency_penalty = 0, q.presence_penalty = 0;
    sampler_set_params(&s, &q, err);
    float x[V], y[V];
    penalty_logits(x, V);
    memcpy(y, x, sizeof y);
    sampler_apply_penalties(&s, y);
    CHECK(y[3] == 1.75f / 1.5f && y[9] == -1.75f * 1.5f && y[4] == 0.0f,
          "repetition: +1.75 -> %g (want /1.5), -1.75 -> %g (want *1.5), 0 -> %g",
          (double)y[3], (double)y[9], (double)y[4]);
    q.repeat_penalty = 1, q.frequency_penalty = 0.25f;
    sampler_set_params(&s, &q, err);
    memcpy(y, x, sizeof y);
    sampler_apply_penalties(&s, y);
    CHECK(y[3] == x[3] - 0.5f && y[4] == -0.25f, "frequency: count 2 -> %g, 1 -> %g",
          (double)(y[3] - x[3]), (double)(y[4] - x[4]));
    q.frequency_penalty = 0, q.presence_penalty = 0.5f;
    sampler_set_params(&s, &q, err);
    memcpy(y, x, sizeof y);
    sampler_apply_penalties(&s, y);
    CHECK(y[3] == x[3] - 0.5f && y[4] == -0.5f, "presence: count 2 -> %g, 1 -> %g",
          (double)(y[3] - x[3]), (double)(y[4] - x[4]));
    CHECK(sampler_set_params(&s, &p, err) == 0, "set_params: %s", err);

    /* the window slides: after 11 12 13 14 none of 3 4 9 is penalized */
    for (int32_t t = 11; t <= 14; t++)
        sampler_accept(&s, t);
    int slid[V] = {0};
    slid[11] = slid[12] = slid[13] = slid[14] = 1;
    check_penalized("slid window", &s, slid);
    sampler_accept(&s, 13); /* 12 13 14 13: 11 slides out, 13 counts twice */
    slid[11] = 0, slid[13] = 2;
    check_penalized("slid by one", &s, slid);

    /* ids outside the vocabulary are ignored */
    sampler_accept(&s, -1);
    sampler_accept(&s, V);
    check_penalized("after out-of-range ids", &s, slid);

    /* -1 and values beyond max_history mean the whole ring (8 tokens) */
    sampler_reset(&s);
    for (int32_t t = 0; t < 10; t++)
        sampler_accept(&s, t); /* the ring keeps 2..9 */
    int ring[V] = {0};
    for (int t = 2; t < 10; t++)
        ring[t] = 1;
    const int32_t whole[] = {-1, 8, 1000};
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        struct sampler_params r = p;
        r.penalty_last_n = whole[i];
        sampler_set_params(&s, &r, err);
        char what[48];
        snprintf(what, sizeof what, "penalty_last_n %d", (int)whole[i]);
        check_penalized(what, &s, ring);
    }
    /* off: penalty_last_n 0, or neutral values */
    int none[V] = {0};
    struct sampler_params off = p;
    off.penalty_last_n = 0;
    sampler_set_params(&s, &off, err);
    check_penalized("penalty_last_n 0", &s, none);
    off = p;
    off.repeat_penalty = 1, off.frequency_penalty = 0, off.presence_penalty = 0;
    sampler_set_params(&s, &off, err);
    check_penalized("neutral penalties", &s, none);
    /* reset forgets the history */
    sampler_set_params(&s, &p, err);
    sampler_reset(&s);
    check_penalized("after reset", &s, none);
    sampler_accept(&s, 6);
    int six[V] = {0};
    six[6] = 1;
    check_penalized("one token after reset", &s, six);
    sampler_free(&s);
}

/* A strong penalty changes which tokens are drawn: with a flat distribution
 * and presence penalty 2 on tokens 0..3 of 8, they become e^-2 as likely. */
static void test_penalties_in_sampling(void)
{
    enum { V = 8 };
    float logits[V] = {0}, penalized[V];
    struct sampler_params p = plain(1.0f, 77);
    p.presence_penalty = 2.0f;
    p.penalty_last_n = 4;
    for (int i = 0; i < V; i++)
        penalized[i] = i < 4 ? -2.0f : 0.0f;
    double pr[V], margin;
    reference_probs(penalized, V, &p, pr, &margin);
    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    CHECK(sampler_init(&s, V, 16, &p, err) == 0, "init: %s", err);
    for (int32_t t = 0; t < 4; t++)
        sampler_accept(&s, t);
    check_frequencies("presence penalty 2 on tokens 0..3", &s, logits, pr, 100000);
    sampler_free(&s);
}

/* ---- the filters ---- */

static const float eight[8] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f, 1.5f, 0.2f};

/* 8 tokens, 200000 draws. The smallest probability is ~0.0105 (T = 0.8), so
 * every expected count is >= 2000. A 3% error in the largest probability
 * (~0.45 at T = 0.8) adds ~80 to the statistic, twice the bound; running
 * this with the temperature scaled by 1.03 in sampler.c fails it. */
static void test_frequencies_match_softmax(void)
{
    const float temps[] = {0.8f, 1.0f, 2.5f};
    for (size_t k = 0; k < sizeof temps / sizeof temps[0]; k++) {
        struct sampler_params p = plain(temps[k], 1000 + k);
        char what[64];
        snprintf(what, sizeof what, "softmax at temperature %g", (double)temps[k]);
        check_chain(what, eight, 8, &p, 200000);
    }
}

/* Top-k over 1000 random logits: every draw is among the k best (computed
 * here by sorting) with the renormalised softmax frequencies; k = 1 is the
 * argmax; k >= vocab is off; ties at the k-th place go to the lower id. */
static void test_top_k(void)
{
    enum { V = 1000 };
    static float logits[V];
    uint64_t rng = 31;
    for (int i = 0; i < V; i++)
        logits[i] = test_rand_normal(&rng) * 2.0f;
    const struct {
        int32_t k;
        float t;
    } cases[] = {{10, 1.0f}, {10, 0.7f}, {3, 1.5f}, {1, 1.0f}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sampler_params p = plain(cases[i].t, 50 + i);
        p.top_k = cases[i].k;
        char what[64];
        snprintf(what, sizeof what, "top_k %d at temperature %g", (int)cases[i].k,
                 (double)cases[i].t);
        int kept = check_chain(what, logits, V, &p, 20000);
        CHECK(kept == cases[i].k, "%s: test setup: reference keeps %d", what, kept);
    }
    struct sampler_params p = plain(1.0f, 5);
    p.top_k = 8;
    check_chain("top_k 8 over 8 tokens (off)", eight, 8, &p, 100000);
    p.top_k = 1000;
    check_chain("top_k 1000 over 8 tokens (off)", eight, 8, &p, 100000);

    /* ties: {1, 5, 3, 3, 3, 0} with k = 3 keeps ids 1, 2, 3 */
    const float tied[6] = {1.0f, 5.0f, 3.0f, 3.0f, 3.0f, 0.0f};
    p = plain(2.0f, 6);
    p.top_k = 3;
    int kept = check_chain("top_k 3 with ties at the cut", tied, 6, &p, 50000);
    CHECK(kept == 3, "ties: reference keeps %d", kept);
}

/* Top-p over 8 tokens: the draws follow the nucleus probabilities
 * renormalised and never leave the nucleus. The nucleus is taken at
 * temperature 1 whatever the temperature: at top_p 0.7 it is {3, 6, 0}
 * (0.36 + 0.22 < 0.7 <= 0.36 + 0.22 + 0.13), but at temperature 0.5 the
 * first two alone would hold 0.78, so a sampler that applied temperature
 * first would never draw token 0 (expected share ~9%). */
static void test_top_p_frequencies(void)
{
    const float top_ps[] = {0.9f, 0.7f, 0.7f};
    const float temps[] = {1.0f, 1.0f, 0.5f};
    for (size_t k = 0; k < sizeof top_ps / sizeof top_ps[0]; k++) {
        struct sampler_params p = plain(temps[k], 99 + k);
        p.top_p = top_ps[k];
        char what[64];
        snprintf(what, sizeof what, "top_p %g at temperature %g", (double)top_ps[k],
                 (double)temps[k]);
        int kept = check_chain(what, eight, 8, &p, 200000);
        CHECK(kept > 1 && kept < 8, "%s: test setup: nucleus of %d tokens", what, kept);
    }
}

/* Known distributions with their nuclei worked out by hand:
 * - top_p 0.5 over 0.05, 0.30, 0.10, 0.07, 0.25, 0.15, 0.08: best first
 *   0.30 (id 1) < 0.5 <= 0.30 + 0.25 (id 4), so the nucleus is {1, 4};
 * - top_p 0.8 over 0.72, 0.14, 0.14: 0.72 < 0.8 <= 0.86, so the nucleus is
 *   {0, 1} (equal weights: the lower id first). Token 1 sits just above the
 *   candidate cutoff (1 - 0.8) / 2 = 0.1, so a cutoff even 1.5 times too
 *   large would wrongly drop it.
 * Draws must stay in the nucleus with the renormalised frequencies. */
static void test_top_p_known(void)
{
    static const struct {
        int n;
        float top_p;
        double probs[7];
        int in[7];
    } cases[] = {
        {7, 0.5f, {0.05, 0.30, 0.10, 0.07, 0.25, 0.15, 0.08}, {0, 1, 0, 0, 1, 0, 0}},
        {3, 0.8f, {0.72, 0.14, 0.14}, {1, 1, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int n = cases[k].n;
        float logits[7];
        double p[7], mass = 0;
        for (int i = 0; i < n; i++) {
            logits[i] = (float)log(cases[k].probs[i]);
            mass += cases[k].in[i] ? cases[k].probs[i] : 0;
        }
        for (int i = 0; i < n; i++)
            p[i] = cases[k].in[i] ? cases[k].probs[i] / mass : 0;
        struct sampler s;
        char err[HEARTH_ERR_BYTES];
        struct sampler_params sp = plain(1.0f, 5 + k);
        sp.top_p = cases[k].top_p;
        CHECK(sampler_init(&s, (uint32_t)n, 8, &sp, err) == 0, "init: %s", err);
        char what[64];
        snprintf(what, sizeof what, "known distribution %zu, top_p %g", k,
                 (double)cases[k].top_p);
        check_frequencies(what, &s, logits, p, 50000);
        sampler_free(&s);
    }
}

/* Flat distributions. With top_p < 1/n every token can be below the
 * candidate cutoff (1 - top_p) / (n - 1) of the mass, the case where
 * llama2.c's trick finds no candidate: the nucleus is then the one best
 * token, here id 613, a hair above the rest. Over 1000 equal tokens with
 * top_p = 0.0105 the nucleus is the 11 lowest ids; over 4 equal tokens with
 * top_p = 0.5 the mass of ids 0 and 1 is exactly 0.5, which reaches top_p,
 * so id 2 is out. */
static void test_top_p_flat(void)
{
    enum { V = 1000 };
    static float logits[V], work[V];
    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    struct sampler_params p = plain(1.0f, 3);
    p.top_p = 1e-4f;
    logits[613] = 1e-4f;
    CHECK(sampler_init(&s, V, 8, &p, err) == 0, "init: %s", err);
    for (int d = 0; d < 200; d++) {
        int32_t t = draw(&s, logits, work);
        CHECK(t == 613, "top_p 1e-4 over a near-flat distribution drew %d, want 613", t);
    }
    sampler_free(&s);
    logits[613] = 0;

    p.top_p = 0.0105f;
    p.seed = 4;
    CHECK(sampler_init(&s, V, 8, &p, err) == 0, "init: %s", err);
    int seen[11] = {0};
    for (int d = 0; d < 2000; d++) {
        int32_t t = draw(&s, logits, work);
        CHECK(t >= 0 && t <= 10, "top_p 0.0105 over 1000 equal tokens drew %d", t);
        if (t >= 0 && t <= 10)
            seen[t] = 1;
    }
    for (int i = 0; i <= 10; i++)
        CHECK(seen[i], "nucleus token %d never drawn", i);
    sampler_free(&s);

    p.top_p = 0.5f;
    p.seed = 5;
    CHECK(sampler_init(&s, 4, 8, &p, err) == 0, "init: %s", err);
    int seen4[4] = {0};
    for (int d = 0; d < 400; d++) {
        int32_t t = draw(&s, logits, work);
        CHECK(t == 0 || t == 1, "top_p 0.5 over 4 equal tokens drew %d", t);
        if (t >= 0 && t < 4)
            seen4[t] = 1;
    }
    CHECK(seen4[0] && seen4[1], "top_p 0.5 over 4 equal tokens: ids 0 and 1 should both appear");
    sampler_free(&s);

    /* more masses that reach top_p exactly (all sums exact in float): the
     * nucleus is the first n * top_p ids, with or without top-k */
    static const struct {
        uint32_t n;
        float top_p;
        int32_t top_k;
    } exact[] = {{8, 0.5f, 0}, {16, 0.25f, 0}, {10, 0.5f, 0}, {64, 0.125f, 0},
                 {12, 0.5f, 0}, {32, 0.75f, 0}, {40, 0.5f, 20}, {40, 0.25f, 8}};
    for (size_t k = 0; k < sizeof exact / sizeof exact[0]; k++) {
        p.top_p = exact[k].top_p;
        p.top_k = exact[k].top_k;
        p.seed = 20 + k;
        float pool = exact[k].top_k ? (float)exact[k].top_k : (float)exact[k].n;
        int32_t in = (int32_t)(exact[k].top_p * pool);
        CHECK(sampler_init(&s, exact[k].n, 8, &p, err) == 0, "init: %s", err);
        int32_t worst = 0;
        for (int d = 0; d < 400; d++) {
            int32_t t = draw(&s, logits, work);
            worst = t > worst ? t : worst;
        }
        CHECK(worst == in - 1, "top_p %g top_k %d over %u equal tokens: highest id drawn %d, "
              "want %d", (double)exact[k].top_p, (int)exact[k].top_k, exact[k].n, (int)worst,
              (int)in - 1);
        sampler_free(&s);
    }
}

/* Min-p over 300 random logits: no draw has p < min_p * p_max (at
 * temperature 1), the frequencies are the renormalised softmax at the
 * sampling temperature; min_p 1 keeps exactly the tied maxima. */
static void test_min_p(void)
{
    enum { V = 300 };
    static float logits[V];
    uint64_t rng = 404;
    for (int i = 0; i < V; i++)
        logits[i] = test_rand_normal(&rng) * 2.0f;
    const struct {
        float min_p, t;
    } cases[] = {{0.1f, 1.0f}, {0.02f, 0.6f}, {0.3f, 2.0f}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sampler_params p = plain(cases[i].t, 70 + i);
        p.min_p = cases[i].min_p;
        char what[64];
        snprintf(what, sizeof what, "min_p %g at temperature %g", (double)cases[i].min_p,
                 (double)cases[i].t);
        int kept = check_chain(what, logits, V, &p, 40000);
        CHECK(kept > 1 && kept < V, "%s: test setup: %d tokens kept", what, kept);
    }
    const float tied[5] = {1.0f, 3.0f, 3.0f, 0.0f, 2.9f};
    struct sampler_params p = plain(1.0f, 8);
    p.min_p = 1.0f;
    int kept = check_chain("min_p 1 with a tied maximum", tied, 5, &p, 20000);
    CHECK(kept == 2, "min_p 1: reference keeps %d", kept);
}

/* The order of the chain (llama.cpp's: top-k, top-p, min-p, temperature),
 * each case built so that one other order gives a different answer:
 * a. top-p renormalises over what top-k left: probabilities 0.4, 0.3 and 30
 *    of 0.01; with top_k 2 the two hold 0.571 and 0.429, so top_p 0.55 keeps
 *    only the first (over the whole vocabulary it would keep both);
 * b. min-p after top-p: 0.5, 0.2 and 30 of 0.01 with top_p 0.65 keeps
 *    {0.5, 0.2}, min_p 0.3 then keeps both (min-p first would leave
 *    {0.5, 0.2} renormalised to 0.71, 0.29, and top-p only the first);
 * c. min-p before temperature: ratios 1 and 0.2 pass min_p 0.1; at
 *    temperature 0.5 the second would be 0.04 and fail;
 * d. top-p before temperature: 0.67, 0.33 with top_p 0.6 keeps the first; at
 *    temperature 2 they would be 0.59, 0.41 and both kept. */
static void test_chain_order(void)
{
    enum { V = 32 };
    float a[V], b[V], c[V], d[V];
    for (int i = 0; i < V; i++) {
        a[i] = b[i] = (float)log(0.01);
        c[i] = d[i] = -30.0f;
    }
    a[5] = (float)log(0.4), a[20] = (float)log(0.3);
    b[9] = (float)log(0.5), b[2] = (float)log(0.2);
    c[0] = 0.0f, c[1] = (float)log(0.2);
    d[3] = 0.0f, d[4] = (float)log(0.5);

    struct sampler_params p = plain(1.0f, 11);
    p.top_k = 2, p.top_p = 0.55f;
    CHECK(check_chain("a: top-k then top-p", a, V, &p, 20000) == 1, "a: want 1 token");
    p = plain(1.0f, 12);
    p.top_p = 0.65f, p.min_p = 0.3f;
    CHECK(check_chain("b: top-p then min-p", b, V, &p, 100000) == 2, "b: want 2 tokens");
    p = plain(0.5f, 13);
    p.min_p = 0.1f;
    CHECK(check_chain("c: min-p then temperature", c, V, &p, 100000) == 2, "c: want 2 tokens");
    p = plain(2.0f, 14);
    p.top_p = 0.6f;
    CHECK(check_chain("d: top-p then temperature", d, V, &p, 20000) == 1, "d: want 1 token");
}

/* A Llama 3-sized vocabulary shaped like a language model's output (20
 * likely tokens, e^-0.4 apart, over a tail of 128236 that holds ~0.5% of
 * the mass), with the default chain (top_k 40, top_p 0.95, min_p 0.05,
 * temperature 0.8) and with top-p alone, which goes through the cut-off and
 * the quickselect over the whole vocabulary: draws stay in the reference set
 * with its frequencies. */
static void test_large_vocab(void)
{
    enum { V = 128256 };
    float *logits = malloc(V * sizeof *logits);
    uint64_t rng = 2024;
    for (int i = 0; i < V; i++)
        logits[i] = test_rand_normal(&rng) * 2.0f;
    for (int j = 0; j < 20; j++)
        logits[(j * 6421 + 17) % V] = 18.0f - 0.4f * (float)j;
    struct sampler_params p = sampler_default_params();
    p.seed = 11;
    int kept = check_chain("default chain over 128256 tokens", logits, V, &p, 1000);
    CHECK(kept > 1 && kept <= 40, "default chain: test setup: %d kept", kept);
    p = plain(0.9f, 12);
    p.top_p = 0.9f;
    kept = check_chain("top_p 0.9 over 128256 tokens", logits, V, &p, 1000);
    CHECK(kept > 1, "top_p 0.9: test setup: %d kept", kept);
    free(logits);
}

static void test_degenerate_logits(void)
{
    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    float work[4];
    for (int filters = 0; filters < 2; filters++) {
        struct sampler_params p = filters ? sampler_default_params() : plain(1.0f, 1);
        p.top_p = filters ? 0.9f : 1.0f;
        CHECK(sampler_init(&s, 4, 8, &p, err) == 0, "init: %s", err);
        const float with_inf[4] = {1.0f, INFINITY, 2.0f, INFINITY};
        CHECK(draw(&s, with_inf, work) == 1, "+inf logit not chosen (filters %d)", filters);
        const float with_nan[4] = {NAN, 1.0f, 5.0f, NAN};
        CHECK(draw(&s, with_nan, work) == 2, "NaN logits: want the argmax of the numbers, 2");
        const float all_neg_inf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        int32_t t = draw(&s, all_neg_inf, work);
        CHECK(t >= 0 && t < 4, "all -inf drew %d", t);
        const float some_neg_inf[4] = {-INFINITY, 0.0f, -INFINITY, 0.0f};
        for (int i = 0; i < 100; i++) {
            t = draw(&s, some_neg_inf, work);
            CHECK(t == 1 || t == 3, "a -inf token was drawn: %d (filters %d)", t, filters);
        }
        const float dominant[4] = {0.0f, 200.0f, 0.0f, -50.0f};
        for (int i = 0; i < 100; i++)
            CHECK(draw(&s, dominant, work) == 1, "a logit 200 above the rest lost");
        sampler_free(&s);
    }

    struct sampler_params p = sampler_default_params();
    p.top_p = 0.5f;
    CHECK(sampler_init(&s, 1, 1, &p, err) == 0, "init: %s", err);
    const float one[1] = {-3.0f};
    CHECK(draw(&s, one, work) == 0, "one-token vocabulary");
    sampler_free(&s);
}

const struct test_case sampler_tests[] = {
    {"sampler_invalid_options", test_invalid_options},
    {"sampler_defaults", test_defaults},
    {"sampler_greedy", test_greedy},
    {"sampler_seeds", test_seeds},
    {"sampler_penalties", test_penalties},
    {"sampler_penalties_in_sampling", test_penalties_in_sampling},
    {"sampler_frequencies_match_softmax", test_frequencies_match_softmax},
    {"sampler_top_k", test_top_k},
    {"sampler_top_p_frequencies", test_top_p_frequencies},
    {"sampler_top_p_known", test_top_p_known},
    {"sampler_top_p_flat", test_top_p_flat},
    {"sampler_min_p", test_min_p},
    {"sampler_chain_order", test_chain_order},
    {"sampler_large_vocab", test_large_vocab},
    {"sampler_degenerate_logits", test_degenerate_logits},
    {NULL, NULL},
};
