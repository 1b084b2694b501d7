/* tests/test_sampler.c - tests for sampler.c: option validation, greedy
 * argmax, seeding, empirical frequencies against softmax probabilities, and
 * the top-p nucleus (including the flat-distribution corner where the
 * candidate cutoff excludes every token).
 *
 * Expected probabilities are computed here in double from the definitions
 * (softmax of logits / temperature; nucleus = smallest best-first prefix whose
 * mass reaches top_p). It does not test that sampler_sample never allocates. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../err.h"
#include "../sampler.h"
#include "test.h"

/* Draws one token from a copy of logits (sampler_sample overwrites them). */
static int32_t draw(struct sampler *s, const float *logits, float *work)
{
    memcpy(work, logits, s->vocab_size * sizeof *work);
    return sampler_sample(s, work);
}

static void softmax_double(const float *logits, int n, double t, double *p)
{
    double max = logits[0], sum = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > max)
            max = logits[i];
    for (int i = 0; i < n; i++)
        sum += p[i] = exp((logits[i] - max) / t);
    for (int i = 0; i < n; i++)
        p[i] /= sum;
}

struct ranked {
    double p;
    int id;
};

static int by_prob_desc(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

/* Marks the nucleus: the smallest best-first prefix whose mass reaches
 * top_p - slack. With slack > 0 the set may include tokens a float
 * computation could add at the boundary; returns the nucleus mass. */
static double nucleus(const double *p, int n, double top_p, double slack, int *in)
{
    struct ranked *r = malloc((size_t)n * sizeof *r);
    for (int i = 0; i < n; i++)
        r[i] = (struct ranked){p[i], i};
    qsort(r, (size_t)n, sizeof *r, by_prob_desc);
    double mass = 0;
    memset(in, 0, (size_t)n * sizeof *in);
    for (int i = 0; i < n && mass < top_p + slack; i++) {
        in[r[i].id] = 1;
        mass += r[i].p;
    }
    free(r);
    return mass;
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

static void test_invalid_options(void)
{
    static const struct {
        uint32_t vocab;
        float temperature, top_p;
        const char *option;
    } bad[] = {
        {10, -1.0f, 1.0f, "temperature"},   {10, -1e-30f, 1.0f, "temperature"},
        {10, NAN, 1.0f, "temperature"},     {10, INFINITY, 1.0f, "temperature"},
        {10, -INFINITY, 0.5f, "temperature"}, {10, 1.0f, 0.0f, "top_p"},
        {10, 1.0f, -0.5f, "top_p"},         {10, 1.0f, 1.0001f, "top_p"},
        {10, 1.0f, NAN, "top_p"},           {10, 1.0f, INFINITY, "top_p"},
        {0, 1.0f, 1.0f, "vocab_size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sampler s;
        char err[HEARTH_ERR_BYTES] = "";
        int rc = sampler_init(&s, bad[i].vocab, bad[i].temperature, bad[i].top_p, 1, err);
        CHECK(rc == -1, "vocab %u temperature %g top_p %g accepted", bad[i].vocab,
              (double)bad[i].temperature, (double)bad[i].top_p);
        CHECK(strstr(err, bad[i].option) != NULL, "error '%s' does not name %s", err,
              bad[i].option);
        sampler_free(&s); /* safe after a failed init */
    }
    char err[HEARTH_ERR_BYTES] = "";
    struct sampler s;
    sampler_init(&s, 10, -1.0f, 1.0f, 1, err);
    CHECK(strstr(err, "temperature must be >= 0 (got -1)") != NULL, "message: '%s'", err);
    sampler_free(&s);
    /* the edges of the legal ranges */
    CHECK(sampler_init(&s, 10, 0.0f, 1.0f, 1, err) == 0, "temperature 0, top_p 1: %s", err);
    sampler_free(&s);
    CHECK(sampler_init(&s, 1, 1e-30f, 1e-7f, 1, err) == 0, "tiny temperature/top_p: %s", err);
    sampler_free(&s);
}

static void test_argmax(void)
{
    const float x[] = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
    CHECK(argmax(x, 5) == 1, "argmax %d, want 1 (lowest index on ties)", argmax(x, 5));
    CHECK(argmax(x, 1) == 0, "argmax of one value");
    const float neg[] = {-INFINITY, -5.0f, -5.0f};
    CHECK(argmax(neg, 3) == 1, "argmax %d, want 1", argmax(neg, 3));
    const float with_nan[] = {NAN, 2.0f, 7.0f, NAN};
    CHECK(argmax(with_nan, 4) == 2, "argmax with NaNs %d, want 2", argmax(with_nan, 4));

    /* temperature 0 is greedy whatever top_p says, and takes the lowest id */
    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    CHECK(sampler_init(&s, 5, 0.0f, 0.5f, 42, err) == 0, "init: %s", err);
    float work[5];
    for (int i = 0; i < 10; i++) {
        int32_t t = draw(&s, x, work);
        CHECK(t == 1, "greedy drew %d, want 1", t);
    }
    sampler_free(&s);

    /* a vanishing temperature behaves like greedy, without NaN from overflow */
    uint64_t rng = 9;
    enum { N = 1000 };
    static float logits[N], big[N];
    for (int i = 0; i < N; i++)
        logits[i] = test_rand_normal(&rng) * 5.0f;
    int32_t best = argmax(logits, N);
    CHECK(sampler_init(&s, N, 1e-30f, 1.0f, 42, err) == 0, "init: %s", err);
    for (int i = 0; i < 20; i++) {
        int32_t t = draw(&s, logits, big);
        CHECK(t == best, "temperature 1e-30 drew %d, argmax is %d", t, best);
    }
    sampler_free(&s);
}

static void test_seeds(void)
{
    enum { V = 16, DRAWS = 1000 };
    float logits[V], work[V];
    for (int i = 0; i < V; i++)
        logits[i] = 0.1f * (float)(i % 5);
    int32_t seq[4][DRAWS];
    const uint64_t seeds[4] = {7, 7, 8, 0};
    for (int k = 0; k < 4; k++) {
        struct sampler s;
        char err[HEARTH_ERR_BYTES];
        CHECK(sampler_init(&s, V, 1.0f, 1.0f, seeds[k], err) == 0, "init: %s", err);
        for (int i = 0; i < DRAWS; i++)
            seq[k][i] = draw(&s, logits, work);
        sampler_free(&s);
    }
    CHECK(memcmp(seq[0], seq[1], sizeof seq[0]) == 0, "seed 7 twice gave different tokens");
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

/* Draws n_draws tokens and compares the counts with the probabilities p
 * (tokens with p == 0 must never appear). */
static void check_frequencies(const char *what, struct sampler *s, const float *logits,
                              const double *p, long n_draws)
{
    int n = (int)s->vocab_size;
    long *counts = calloc((size_t)n, sizeof *counts);
    float *work = malloc((size_t)n * sizeof *work);
    long outside = 0;
    for (long d = 0; d < n_draws; d++) {
        int32_t t = draw(s, logits, work);
        if (t < 0 || t >= n || p[t] <= 0)
            outside++;
        else
            counts[t]++;
    }
    CHECK(outside == 0, "%s: %ld draws outside the allowed tokens", what, outside);
    int df;
    double stat = chi2(counts, p, n, n_draws, &df);
    CHECK(df > 0 && stat < chi2_bound(df), "%s: chi-square %.1f with %d df, bound %.1f", what,
          stat, df, chi2_bound(df));
    free(counts);
    free(work);
}

/* 8 tokens, 200000 draws. The smallest probability is ~0.0105 (T = 0.8), so
 * every expected count is >= 2000. A 3% error in the largest probability
 * (~0.45 at T = 0.8) adds ~80 to the statistic, twice the bound; running
 * this with the temperature scaled by 1.03 in sampler.c fails it. */
static void test_frequencies_match_softmax(void)
{
    enum { V = 8 };
    const float logits[V] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f, 1.5f, 0.2f};
    double p[V];
    const float temps[] = {0.8f, 1.0f, 2.5f};
    for (size_t k = 0; k < sizeof temps / sizeof temps[0]; k++) {
        struct sampler s;
        char err[HEARTH_ERR_BYTES];
        CHECK(sampler_init(&s, V, temps[k], 1.0f, 1000 + k, err) == 0, "init: %s", err);
        softmax_double(logits, V, temps[k], p);
        char what[64];
        snprintf(what, sizeof what, "softmax at temperature %g", (double)temps[k]);
        check_frequencies(what, &s, logits, p, 200000);
        sampler_free(&s);
    }
}

/* Top-p 0.9 over the same 8 tokens: the draws follow the nucleus
 * probabilities renormalised, and tokens outside never appear. */
static void test_top_p_frequencies(void)
{
    enum { V = 8 };
    const float logits[V] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f, 1.5f, 0.2f};
    double p[V];
    int in[V];
    const float top_ps[] = {0.9f, 0.7f};
    for (size_t k = 0; k < sizeof top_ps / sizeof top_ps[0]; k++) {
        softmax_double(logits, V, 1.0, p);
        double mass = nucleus(p, V, top_ps[k], 0, in);
        int in_count = 0;
        for (int i = 0; i < V; i++) {
            p[i] = in[i] ? p[i] / mass : 0;
            in_count += in[i];
        }
        CHECK(in_count > 1 && in_count < V, "test setup: nucleus of %d tokens", in_count);
        struct sampler s;
        char err[HEARTH_ERR_BYTES];
        CHECK(sampler_init(&s, V, 1.0f, top_ps[k], 99 + k, err) == 0, "init: %s", err);
        char what[64];
        snprintf(what, sizeof what, "top_p %g", (double)top_ps[k]);
        check_frequencies(what, &s, logits, p, 200000);
        sampler_free(&s);
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
        CHECK(sampler_init(&s, (uint32_t)n, 1.0f, cases[k].top_p, 5 + k, err) == 0, "init: %s",
              err);
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
    logits[613] = 1e-4f;
    CHECK(sampler_init(&s, V, 1.0f, 1e-4f, 3, err) == 0, "init: %s", err);
    for (int d = 0; d < 200; d++) {
        int32_t t = draw(&s, logits, work);
        CHECK(t == 613, "top_p 1e-4 over a near-flat distribution drew %d, want 613", t);
    }
    sampler_free(&s);
    logits[613] = 0;

    CHECK(sampler_init(&s, V, 1.0f, 0.0105f, 4, err) == 0, "init: %s", err);
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

    CHECK(sampler_init(&s, 4, 1.0f, 0.5f, 5, err) == 0, "init: %s", err);
    int seen4[4] = {0};
    for (int d = 0; d < 400; d++) {
        int32_t t = draw(&s, logits, work);
        CHECK(t == 0 || t == 1, "top_p 0.5 over 4 equal tokens drew %d", t);
        if (t >= 0 && t < 4)
            seen4[t] = 1;
    }
    CHECK(seen4[0] && seen4[1], "top_p 0.5 over 4 equal tokens: ids 0 and 1 should both appear");
    sampler_free(&s);
}

/* A Llama-sized vocabulary of random logits: every draw lies in the nucleus
 * computed in double (with 1e-4 slack at the boundary for float rounding),
 * and the most likely token does turn up. */
static void test_top_p_large_vocab(void)
{
    enum { V = 32000, DRAWS = 3000 };
    float *logits = malloc(V * sizeof *logits), *work = malloc(V * sizeof *work);
    double *p = malloc(V * sizeof *p);
    int *in = malloc(V * sizeof *in);
    uint64_t rng = 2024;
    for (int i = 0; i < V; i++)
        logits[i] = test_rand_normal(&rng) * 3.0f;
    softmax_double(logits, V, 0.9, p);
    nucleus(p, V, 0.9, 1e-4, in);
    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    CHECK(sampler_init(&s, V, 0.9f, 0.9f, 11, err) == 0, "init: %s", err);
    int32_t best = argmax(logits, V);
    int best_seen = 0, outside = 0;
    for (int d = 0; d < DRAWS; d++) {
        int32_t t = draw(&s, logits, work);
        if (t < 0 || t >= V || !in[t])
            outside++;
        best_seen += t == best;
    }
    CHECK(outside == 0, "%d of %d draws outside the top_p 0.9 nucleus", outside, DRAWS);
    CHECK(best_seen > 0, "the most likely token (p = %.4f) never drawn", p[best]);
    sampler_free(&s);
    free(logits);
    free(work);
    free(p);
    free(in);
}

static void test_degenerate_logits(void)
{
    struct sampler s;
    char err[HEARTH_ERR_BYTES];
    float work[4];
    CHECK(sampler_init(&s, 4, 1.0f, 0.9f, 1, err) == 0, "init: %s", err);
    const float with_inf[4] = {1.0f, INFINITY, 2.0f, INFINITY};
    CHECK(draw(&s, with_inf, work) == 1, "+inf logit not chosen");
    const float with_nan[4] = {NAN, 1.0f, 5.0f, NAN};
    CHECK(draw(&s, with_nan, work) == 2, "NaN logits: want the argmax of the numbers, 2");
    const float all_neg_inf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int32_t t = draw(&s, all_neg_inf, work);
    CHECK(t >= 0 && t < 4, "all -inf drew %d", t);
    const float dominant[4] = {0.0f, 200.0f, 0.0f, -50.0f};
    for (int i = 0; i < 100; i++)
        CHECK(draw(&s, dominant, work) == 1, "a logit 200 above the rest lost");
    sampler_free(&s);

    CHECK(sampler_init(&s, 1, 1.0f, 0.5f, 1, err) == 0, "init: %s", err);
    const float one[1] = {-3.0f};
    CHECK(draw(&s, one, work) == 0, "one-token vocabulary");
    sampler_free(&s);
}

const struct test_case sampler_tests[] = {
    {"sampler_invalid_options", test_invalid_options},
    {"sampler_argmax", test_argmax},
    {"sampler_seeds", test_seeds},
    {"sampler_frequencies_match_softmax", test_frequencies_match_softmax},
    {"sampler_top_p_frequencies", test_top_p_frequencies},
    {"sampler_top_p_known", test_top_p_known},
    {"sampler_top_p_flat", test_top_p_flat},
    {"sampler_top_p_large_vocab", test_top_p_large_vocab},
    {"sampler_degenerate_logits", test_degenerate_logits},
    {NULL, NULL},
};
