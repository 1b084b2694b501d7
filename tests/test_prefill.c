/* tests/test_prefill.c - batched prefill against token-by-token decode, and
 * the KV cache types.
 *
 * The claim under test (model.h, model_prefill): a prompt run in batches
 * gives the same logits, bit for bit, as the same prompt fed one token at a
 * time, for every weight type, KV cache type, kernel set, thread count and
 * batch size, including prompt lengths that are not a multiple of the batch,
 * with a sliding window, with q/k/v biases, and the greedy continuation is
 * the same. A small synthetic GQA model (random weights, exported by
 * ./export) keeps it fast.
 * The attention kernels are also checked against their scalar twins here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../err.h"
#include "../model.h"
#include "../quant.h"
#include "../sampler.h"
#include "../threads.h"
#include "synth.h"
#include "test.h"

/* A GQA model whose matrices all have cols a multiple of 32 (so Q8_0 and
 * Q4_0 apply everywhere) and whose head_dim (24) is not a multiple of 8 or
 * 16, so the attention kernels' tails run. */
static char *synth_export(const char *type)
{
    static char *paths[3];
    static const char *types[3] = {"f32", "q8_0", "q4_0"};
    int i = type[0] == 'f' ? 0 : type[1] == '8' ? 1 : 2;
    if (paths[i])
        return paths[i];
    char *ckpt = test_path("prefill_synth.bin");
    struct synth_config cfg = {.dim = 96, .hidden_dim = 160, .n_layers = 2, .n_heads = 4,
                               .n_kv_heads = 2, .vocab_size = 512, .seq_len = 320,
                               .rope_theta = 10000.0f, .norm_eps = 1e-5f, .seed = 77};
    struct synth_model *sm = synth_create(&cfg, 0);
    CHECK(sm && synth_write_llama2c(sm, ckpt) == 0, "cannot write %s", ckpt);
    synth_free(sm);
    char name[64], cmd[1024];
    snprintf(name, sizeof name, "prefill_%s.hearth", types[i]);
    paths[i] = test_path(name);
    snprintf(cmd, sizeof cmd, "./export %s --tokenizer models/tok512.bin --type %s -q -o %s", ckpt,
             types[i], paths[i]);
    CHECK(test_run(cmd, NULL, NULL) == 0, "%s failed", cmd);
    free(ckpt);
    return paths[i];
}

/* The same shape as a Qwen2 Hugging Face folder with random q/k/v biases
 * (synth_set_variant), exported as Q8_0: the biases are added per token
 * between the matrix products, on whichever thread holds the token. */
static char *synth_export_biased(void)
{
    static char *path;
    if (path)
        return path;
    char *dir = test_path("prefill_qwen2");
    struct synth_config cfg = {.dim = 96, .hidden_dim = 160, .n_layers = 2, .n_heads = 4,
                               .n_kv_heads = 2, .vocab_size = 512, .seq_len = 320, .tied = 1,
                               .rope_theta = 1000000.0f, .norm_eps = 1e-6f, .seed = 78};
    struct synth_variant qwen2 = {.architecture = "Qwen2ForCausalLM", .qkv_bias = 1};
    struct synth_model *sm = synth_create(&cfg, 0);
    CHECK(sm && synth_set_variant(sm, &qwen2) == 0 &&
              synth_write_hf(sm, dir, "F32", 1, "tests/data/tok512.model") == 0,
          "cannot write %s", dir);
    synth_free(sm);
    path = test_path("prefill_qwen2.hearth");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "./export %s --type q8_0 -q -o %s", dir, path);
    CHECK(test_run(cmd, NULL, NULL) == 0, "%s failed", cmd);
    free(dir);
    return path;
}

struct run_setup {
    const struct kernels *kern;
    int n_threads;
    uint32_t batch, kv_type, window;
};

/* Logits after prefilling tokens[0..n) in batches of setup->batch, then
 * n_greedy greedy steps; returns the final logits (malloc'd) and the greedy
 * tokens in greedy_out. */
static float *run_prompt(const char *path, const struct run_setup *r, const int32_t *tokens,
                         uint32_t n, int32_t *greedy_out, uint32_t n_greedy)
{
    struct model m;
    struct state s;
    char err[HEARTH_ERR_BYTES];
    if (model_open(&m, path, err) < 0) {
        CHECK(0, "open %s: %s", path, err);
        return NULL;
    }
    m.cfg.sliding_window = r->window;
    struct thread_pool *pool = pool_create(r->n_threads, err);
    struct state_options o = {n + n_greedy, r->batch, r->kv_type, r->kern, pool};
    float *out = malloc(m.cfg.vocab_size * sizeof(float));
    if (!pool || !out || state_open(&s, &m, &o, err) < 0) {
        CHECK(0, "state: %s", err);
        free(out);
        pool_destroy(pool);
        model_close(&m);
        return NULL;
    }
    float *logits = model_prefill(&m, &s, tokens, n, 0);
    for (uint32_t i = 0; i < n_greedy; i++) {
        greedy_out[i] = argmax(logits, m.cfg.vocab_size);
        logits = model_forward(&m, &s, greedy_out[i], n + i);
    }
    memcpy(out, logits, m.cfg.vocab_size * sizeof(float));
    state_free(&s);
    pool_destroy(pool);
    model_close(&m);
    return out;
}

static void random_tokens(int32_t *t, uint32_t n, uint32_t seed)
{
    for (uint32_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = (int32_t)(3 + (seed >> 8) % 500);
    }
}

/* Batched runs equal the batch-1 run bit for bit: logits after the prompt
 * and after each greedy step (the greedy tokens included). */
static void check_prefill_equals_decode(const char *type, const char *path, uint32_t kv_type,
                                        uint32_t window)
{
    static const uint32_t lengths[] = {1, 2, 17, 64, 65, 150, 300};
    static const uint32_t batches[] = {7, 64, 512};
    enum { GREEDY = 4 };
    int32_t tokens[300];
    random_tokens(tokens, 300, 5);
    const char *kernel_names[] = {"scalar", "avx2", "avx512"};
    for (size_t k = 0; k < 3; k++) {
        char err[HEARTH_ERR_BYTES];
        const struct kernels *kern = kernels_select(kernel_names[k], err);
        if (!kern)
            continue;
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            uint32_t n = lengths[li];
            if (k == 0 && n > 65)
                continue; /* the scalar kernels are slow; shorter prompts cover them */
            struct run_setup one = {kern, 1, 1, kv_type, window};
            int32_t g_ref[GREEDY], g[GREEDY];
            float *ref = run_prompt(path, &one, tokens, n, g_ref, GREEDY);
            for (size_t bi = 0; ref && bi < sizeof batches / sizeof batches[0]; bi++)
                for (int threads = 1; threads <= 3; threads += batches[bi] == 64 ? 1 : 2) {
                    struct run_setup r = {kern, threads, batches[bi], kv_type, window};
                    float *got = run_prompt(path, &r, tokens, n, g, GREEDY);
                    CHECK(got && memcmp(got, ref, 512 * sizeof(float)) == 0 &&
                              memcmp(g, g_ref, sizeof g) == 0,
                          "%s kv %s window %u %s: prompt %u, batch %u, %d threads: logits or "
                          "greedy tokens differ from token-by-token",
                          type, kv_type == HEARTH_F16 ? "f16" : "f32", window, kern->name, n,
                          batches[bi], threads);
                    free(got);
                }
            free(ref);
        }
    }
}

static void check_type(const char *type, uint32_t kv_type, uint32_t window)
{
    check_prefill_equals_decode(type, synth_export(type), kv_type, window);
}

static void test_prefill_f32(void) { check_type("f32", HEARTH_F32, 0); }
static void test_prefill_q8_0(void) { check_type("q8_0", HEARTH_F16, 0); }
static void test_prefill_q4_0(void) { check_type("q4_0", HEARTH_F16, 0); }
static void test_prefill_q4_0_kv_f32(void) { check_type("q4_0", HEARTH_F32, 0); }
static void test_prefill_window(void) { check_type("q8_0", HEARTH_F16, 40); }

static void test_prefill_biases(void)
{
    check_prefill_equals_decode("q8_0 qwen2", synth_export_biased(), HEARTH_F16, 0);
}

/* The F16 cache stays close to the F32 one: the keys and values are
 * rounded to 11 significant bits, nothing else changes. The bound is about
 * ten times the largest difference measured when this test was written. */
static void test_kv_f16_error(void)
{
    const char *path = synth_export("f32");
    int32_t tokens[300], g[1];
    random_tokens(tokens, 300, 9);
    struct run_setup r32 = {NULL, 2, 64, HEARTH_F32, 0}, r16 = {NULL, 2, 64, HEARTH_F16, 0};
    float *a = run_prompt(path, &r32, tokens, 300, g, 0);
    float *b = run_prompt(path, &r16, tokens, 300, g, 0);
    float max_diff = 0.0f, max_abs = 0.0f;
    for (int i = 0; a && b && i < 512; i++) {
        max_diff = fmaxf(max_diff, fabsf(a[i] - b[i]));
        max_abs = fmaxf(max_abs, fabsf(a[i]));
    }
    CHECK(a && b && max_diff > 0.0f && max_diff < 2e-3f * max_abs,
          "f16 KV cache: max |logit diff| %g against max |logit| %g", max_diff, max_abs);
    free(a);
    free(b);
}

/* state_open refuses what it cannot do, before allocating anything big. */
static void test_state_open_refusals(void)
{
    struct model m;
    struct state s;
    char err[HEARTH_ERR_BYTES];
    CHECK(model_open(&m, synth_export("f32"), err) == 0, "open: %s", err);
    struct state_options too_long = {m.cfg.max_seq_len + 1, 0, HEARTH_F16, NULL, NULL};
    CHECK(state_open(&s, &m, &too_long, err) < 0 && strstr(err, "context"),
          "a context over max_seq_len was accepted (%s)", err);
    struct state_options bad_kv = {16, 0, HEARTH_Q8_0, NULL, NULL};
    CHECK(state_open(&s, &m, &bad_kv, err) < 0 && strstr(err, "KV cache type"),
          "a Q8_0 KV cache was accepted (%s)", err);
    model_close(&m);
}

/* Random floats in [-2, 2) from a small LCG. */
static float rand_float(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(*s >> 40) / (float)(1 << 22) - 2.0f;
}

/* Every SIMD attention kernel equals its scalar twin bit for bit (contract
 * in kernels/attention.h), over random head sizes (tails below 8 and 16
 * included), query-group sizes across the per-pass limit, position ranges
 * that start and end inside key blocks, and both KV types. */
static void test_attention_kernels_match_scalar(void)
{
    const struct attn_kernels *simd[] = {&attn_kernels_avx2};
    char err[HEARTH_ERR_BYTES];
    if (!kernels_select("avx2", err))
        return; /* this CPU runs only the scalar kernels: nothing to compare */
    static const uint32_t dims[] = {2, 6, 8, 10, 24, 64, 72, 128};
    uint64_t rng = 3;
    enum { MAX_POS = 160, MAX_Q = 9, MAX_HD = 128 };
    uint16_t *k16 = malloc(MAX_POS * MAX_HD * 2), *v16 = malloc(MAX_POS * MAX_HD * 2);
    float *k32 = malloc(MAX_POS * MAX_HD * 4), *v32 = malloc(MAX_POS * MAX_HD * 4);
    float *q = malloc(MAX_Q * MAX_HD * 4), *a = malloc(MAX_Q * MAX_POS * 4);
    float *b = malloc(MAX_Q * MAX_POS * 4), *oa = malloc(MAX_Q * MAX_HD * 4);
    float *ob = malloc(MAX_Q * MAX_HD * 4);
    for (size_t i = 0; i < MAX_POS * MAX_HD; i++) {
        k32[i] = rand_float(&rng), v32[i] = rand_float(&rng);
        k16[i] = f32_to_fp16(k32[i]), v16[i] = f32_to_fp16(v32[i]);
    }
    for (size_t i = 0; i < MAX_Q * MAX_HD; i++)
        q[i] = rand_float(&rng);
    int bad = 0;
    for (size_t s = 0; s < sizeof simd / sizeof simd[0]; s++)
        for (int trial = 0; trial < 300 && !bad; trial++) {
            uint32_t hd = dims[trial % 8], n_q = 1 + (uint32_t)(rng >> 33) % MAX_Q;
            uint32_t p1 = 1 + (uint32_t)(rand_float(&rng) * 1000 + 3000) % MAX_POS;
            uint32_t p0 = (uint32_t)(rng >> 35) % p1, n = p1 - p0;
            int f16 = trial & 1;
            uint32_t type = f16 ? HEARTH_F16 : HEARTH_F32;
            const void *keys = f16 ? (const void *)k16 : (const void *)k32;
            const void *vals = f16 ? (const void *)(v16 + (size_t)p0 * hd)
                                   : (const void *)(v32 + (size_t)p0 * hd);
            attn_kernels_scalar.scores(a, MAX_POS, q, n_q, keys, type, p0, p1, hd, 0.125f);
            simd[s]->scores(b, MAX_POS, q, n_q, keys, type, p0, p1, hd, 0.125f);
            for (uint32_t h = 0; h < n_q; h++)
                bad |= memcmp(a + h * MAX_POS, b + h * MAX_POS, n * sizeof(float)) != 0;
            CHECK(!bad, "%s scores differ: head_dim %u, %u heads, positions %u..%u, %s",
                  simd[s]->name, hd, n_q, p0, p1, f16 ? "f16" : "f32");
            for (uint32_t h = 0; h < n_q; h++) {
                attn_kernels_scalar.softmax(a + h * MAX_POS, n);
                simd[s]->softmax(b + h * MAX_POS, n);
                bad |= memcmp(a + h * MAX_POS, b + h * MAX_POS, n * sizeof(float)) != 0;
            }
            CHECK(!bad, "%s softmax differs over %u values", simd[s]->name, n);
            attn_kernels_scalar.values(oa, a, MAX_POS, n_q, vals, type, n, hd);
            simd[s]->values(ob, a, MAX_POS, n_q, vals, type, n, hd);
            bad |= memcmp(oa, ob, (size_t)n_q * hd * sizeof(float)) != 0;
            CHECK(!bad, "%s values differ: head_dim %u, %u heads, %u rows, %s", simd[s]->name,
                  hd, n_q, n, f16 ? "f16" : "f32");
        }
    free(k16), free(v16), free(k32), free(v32), free(q), free(a), free(b), free(oa), free(ob);
}

/* exp_approx against libm's expf over the softmax's range: within 2 ulp,
 * and exactly 0 below -87. */
static void test_exp_approx(void)
{
    float worst = 0.0f;
    for (float x = -87.0f; x <= 0.0f; x += 0.000731f) {
        double want = exp((double)x);
        float got = exp_approx(x);
        float ulp = nextafterf((float)want, INFINITY) - (float)want;
        worst = fmaxf(worst, (float)(fabs(got - want) / ulp));
    }
    CHECK(worst <= 2.0f, "exp_approx is %g ulp from exp", worst);
    CHECK(exp_approx(-87.5f) == 0.0f && exp_approx(0.0f) == 1.0f, "exp_approx edges");
}

const struct test_case prefill_tests[] = {
    {"prefill_f32_equals_decode", test_prefill_f32},
    {"prefill_q8_0_kv_f16_equals_decode", test_prefill_q8_0},
    {"prefill_q4_0_kv_f16_equals_decode", test_prefill_q4_0},
    {"prefill_q4_0_kv_f32_equals_decode", test_prefill_q4_0_kv_f32},
    {"prefill_sliding_window_equals_decode", test_prefill_window},
    {"prefill_qkv_biases_equals_decode", test_prefill_biases},
    {"prefill_kv_f16_error_bounded", test_kv_f16_error},
    {"prefill_state_open_refusals", test_state_open_refusals},
    {"attention_kernels_match_scalar", test_attention_kernels_match_scalar},
    {"attention_exp_approx_within_2_ulp", test_exp_approx},
    {NULL, NULL},
};
