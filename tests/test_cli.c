/* tests/test_cli.c - ./run from the shell: the llama2.c reference output,
 * tokenization, logits, seeds, and one clear error for each kind of bad
 * input. Runs the binaries `make` built in the repository root. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "test.h"

/* clang says it runs under AddressSanitizer through __has_feature, gcc
 * through __SANITIZE_ADDRESS__. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Runs cmd; checks the exit status. Returns stdout (malloc'd) and, if
 * wanted, stderr. */
static char *run_expect(const char *cmd, int want_status, char **errout)
{
    char *out = NULL, *err = NULL;
    int status = test_run(cmd, &out, &err);
    CHECK(status == want_status, "`%s` exited %d, expected %d; stderr: %s", cmd, status,
          want_status, err ? err : "");
    if (errout)
        *errout = err;
    else
        free(err);
    return out;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* The unmodified llama2.c `run stories260K.bin -z tok512.bin -t 0 -n 200`
 * printed exactly this; ./run with no model uses the same model. */
static void test_default_model_matches_llama2c_stdout(void)
{
    char *want = test_read_file("tests/data/ref/stories260K_runc_t0_n200.txt", NULL);
    char *err = NULL;
    char *out = run_expect("./run -t 0 -n 200", 0, &err);
    CHECK(want && out && !strcmp(out, want), "stdout differs from llama2.c:\n%s", out ? out : "");
    CHECK(err && strstr(err, "tokens/s"), "no tokens/s line on stderr: %s", err ? err : "");
    free(want), free(out), free(err);
    out = run_expect("./run -i \"Once upon a time\" -t 0 -n 30", 0, NULL);
    CHECK(out && !strncmp(out, "Once upon a time,", 17), "prompt not echoed: %s", out ? out : "");
    free(out);
}

/* User text never becomes a special token unless --special asks for it. */
static void test_tokenize_special(void)
{
    char *plain = run_expect("./run --tokenize \"<s>Hi\"", 0, NULL);
    char *special = run_expect("./run --tokenize \"<s>Hi\" --special", 0, NULL);
    CHECK(plain && strncmp(plain, "1 ", 2) != 0, "<s> became BOS without --special: %s",
          plain ? plain : "");
    CHECK(special && strncmp(special, "1 ", 2) == 0, "--special did not parse <s>: %s",
          special ? special : "");
    free(plain), free(special);
}

static void test_tokenize(void)
{
    char *out = run_expect("./run models/stories260K.hearth --tokenize \"Once upon a time\"", 0, NULL);
    CHECK(out && !strcmp(out, "403 407 261 378\n"), "--tokenize printed '%s'", out ? out : "");
    free(out);
    out = run_expect("./run --tokenize \"\"", 0, NULL);
    CHECK(out && !strcmp(out, "\n"), "empty text should give no ids, got '%s'", out ? out : "");
    free(out);
}

/* --ids + --logits against the llama2.c logits at position 4 of the
 * reference sequence (1 403 407 261 378). */
static void test_ids_logits(void)
{
    char *ref = test_read_file("tests/data/ref/stories260K_logits.txt", NULL);
    char *out = run_expect("./run --ids \"1 403 407 261 378\" --logits --kv-type f32", 0, NULL);
    CHECK(count_lines(out) == 512, "expected 512 logit lines, got %d", count_lines(out));
    char *row = ref ? strstr(ref, "\n4 378 ") : NULL;
    CHECK(row != NULL, "reference row for pos 4 missing");
    if (row && out) {
        char *r = row + 7, *o = out;
        float worst = 0;
        for (int i = 0; i < 512; i++) {
            float want = strtof(r, &r), got = strtof(o, &o);
            worst = fmaxf(worst, fabsf(want - got));
        }
        CHECK(worst <= 1e-4f, "--logits differ from llama2.c by %g", worst);
    }
    free(ref), free(out);
}

static void test_seed_reproducible(void)
{
    char *a = run_expect("./run -t 1 -s 42 -n 60", 0, NULL);
    char *b = run_expect("./run -t 1 -s 42 -n 60", 0, NULL);
    char *c = run_expect("./run -t 1 -s 43 -n 60", 0, NULL);
    CHECK(a && b && !strcmp(a, b), "same seed, different text:\n%s\n%s", a, b);
    CHECK(a && c && strcmp(a, c), "seeds 42 and 43 gave the same text");
    free(a), free(b), free(c);
}

static void test_verify(void)
{
    char *out = run_expect("./run models/stories260K.hearth --verify", 0, NULL);
    CHECK(out && strstr(out, "checksum ok"), "--verify printed '%s'", out ? out : "");
    free(out);
}

/* Each bad input: a non-zero exit, and a stderr message containing `needle`. */
static void expect_error(const char *cmd, int status, const char *needle)
{
    char *err = NULL;
    char *out = run_expect(cmd, status, &err);
    CHECK(err && strstr(err, needle), "`%s`: stderr lacks '%s': %s", cmd, needle,
          err ? err : "");
    free(out), free(err);
}

static void test_bad_input(void)
{
    expect_error("./run no/such/model.hearth", 1, "no/such/model.hearth");
    expect_error("./run README.md", 1, "magic");
    expect_error("./run --bogus", 2, "unknown option");
    expect_error("./run -n", 2, "missing value");
    expect_error("./run -n abc", 1, "-n");
    expect_error("./run -t -1", 1, "temperature");
    expect_error("./run -p 1.5", 1, "top_p");
    expect_error("./run --ids \"1 99999\" --logits", 1, "99999");
    expect_error("./run --ids \"1 x\"", 1, "--ids");
    expect_error("./run -i hello --ids 1", 1, "exclusive");
    expect_error("./run --threads 0", 1, "--threads");
    expect_error("./run --threads 100000", 1, "--threads");
    expect_error("./run --kernels sse9", 1, "scalar");
    expect_error("./run bench --types q3_k", 2, "--types");
}

/* Forcing kernels this CPU cannot run is refused with a message, never a
 * SIGILL; kernels it can run are accepted. */
static void test_kernels_this_cpu_lacks(void)
{
    struct cpu_features f;
    cpu_detect(&f);
    int has_avx512 = f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
    int has_avx2 = f.avx2 && f.fma && f.f16c;
    const struct { const char *name; int has; } sets[] = {{"avx512", has_avx512}, {"avx2", has_avx2}};
    for (int i = 0; i < 2; i++) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "./run --kernels %s -t 0 -n 20", sets[i].name);
        if (sets[i].has) {
            char *out = run_expect(cmd, 0, NULL);
            free(out);
        } else {
            expect_error(cmd, 1, "lacks");
        }
    }
}

/* --info names the CPU features it saw and the kernels it chose; a forced
 * kernel set shows up there. */
static void test_info(void)
{
    char *out = run_expect("./run --info", 0, NULL);
    CHECK(out && strstr(out, "cpu features:") && strstr(out, "kernels:"), "--info printed: %s",
          out ? out : "");
    free(out);
    out = run_expect("./run --info --kernels scalar --threads 3", 0, NULL);
    CHECK(out && strstr(out, "kernels: scalar") && strstr(out, "threads: 3"),
          "--kernels/--threads not applied: %s", out ? out : "");
    free(out);
}

static void test_context_limits(void)
{
    /* stories260K has a 512-token context; 600 words need more tokens */
    size_t n = 600 * 6 + 1;
    char *cmd = malloc(n + 64), *p;
    p = cmd + sprintf(cmd, "./run -t 0 -i \"");
    for (int i = 0; i < 600; i++)
        p += sprintf(p, "tree ");
    sprintf(p, "\"");
    expect_error(cmd, 1, "longer than the context of 512 positions");
    free(cmd);
    char *err = NULL;
    char *out = run_expect("./run -t 0 -n 100000", 0, &err);
    CHECK(err && strstr(err, "clamped to 512"), "-n beyond context not reported: %s",
          err ? err : "");
    free(out), free(err);
}

/* --batch changes how the prompt is run, never the text: the same greedy
 * continuation for token-by-token, odd and default batches. */
static void test_batch_same_text(void)
{
    const char *base = "./run -t 0 -n 120 -i \"Once upon a time, there was a little girl named "
                       "Lily. She loved to play outside in the park with her friends.\"";
    char cmd[512];
    char *texts[3];
    const char *extra[3] = {"--batch 1", "--batch 7", ""};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "%s %s", base, extra[i]);
        texts[i] = run_expect(cmd, 0, NULL);
    }
    for (int i = 1; i < 3; i++)
        CHECK(texts[0] && texts[i] && !strcmp(texts[0], texts[i]),
              "'%s' and '--batch 1' gave different text:\n%s\n%s", extra[i],
              texts[i] ? texts[i] : "", texts[0] ? texts[0] : "");
    for (int i = 0; i < 3; i++)
        free(texts[i]);
}

/* --ctx, --batch, --kv-type and the sampling options: out-of-range values
 * get a message naming the option; --info reports the memory a context
 * takes. */
static void test_context_options(void)
{
    expect_error("./run --ctx 513", 1, "trained context of 512");
    expect_error("./run --ctx 0", 1, "--ctx");
    expect_error("./run --batch 0", 1, "--batch");
    expect_error("./run --kv-type q8_0", 1, "--kv-type");
    expect_error("./run --top-k -1", 1, "top_k");
    expect_error("./run --min-p 1.5", 1, "min_p");
    expect_error("./run --repeat-penalty 0", 1, "repeat");
    expect_error("./run --stop \"\"", 1, "--stop");
    expect_error("./run --ctx 64 -t 0 -i \"Once upon a time there was a girl who liked to play "
                 "in the garden with her dog and her cat and her friends and they all had fun in "
                 "the sun all day long until the night came and the stars\"",
                 1, "longer than the context of 64");
    char *out = run_expect("./run --info --ctx 256 --kv-type f32", 0, NULL);
    /* stories260K: 5 layers x 4 kv heads x 8 dims x 256 positions x 2 (K, V) x 4 bytes */
    CHECK(out && strstr(out, "context 256 positions") && strstr(out, "KV cache f32 0.3 MiB"),
          "--info memory line: %s", out ? out : "");
    free(out);
}

/* --stop ends the text before the stop string, which is never printed,
 * even when it spans tokens. */
static void test_stop_string(void)
{
    char *full = run_expect("./run -t 0 -n 60", 0, NULL);
    const char *at = full ? strstr(full, "She loved") : NULL;
    CHECK(at != NULL, "the greedy story lacks 'She loved': %s", full ? full : "");
    if (at) {
        char *out = run_expect("./run -t 0 -n 60 --stop \"She lov\"", 0, NULL);
        size_t keep = (size_t)(at - full);
        CHECK(out && strlen(out) == keep + 1 && !strncmp(out, full, keep) && out[keep] == '\n',
              "--stop: expected the text up to 'She lov' and a newline, got '%s'",
              out ? out : "");
        free(out);
    }
    free(full);
}

/* The "[prefill N tokens, M reused from the cache]" lines chat -v prints. */
static int prefill_counts(const char *err, unsigned *prefilled, unsigned *reused, int max)
{
    int n = 0;
    for (const char *p = err; n < max && (p = strstr(p, "[prefill ")); p++)
        if (sscanf(p, "[prefill %u tokens, %u reused", &prefilled[n], &reused[n]) == 2)
            n++;
    return n;
}

/* A two-turn chat through a pipe: the second turn reuses the whole first
 * exchange from the KV cache and prefills only what is new. */
static void test_chat_session_reuses_cache(void)
{
    char *err = NULL;
    char *out = run_expect("printf 'Hello there\\nTell me a story\\n' | ./run --chat --template "
                           "chatml -t 0 -n 30 -v --system 'You are a storyteller.'", 0, &err);
    unsigned prefilled[4], reused[4];
    int turns = err ? prefill_counts(err, prefilled, reused, 4) : 0;
    CHECK(turns == 2, "expected 2 turns on stderr, got %d: %s", turns, err ? err : "");
    if (turns == 2) {
        CHECK(reused[0] == 0 && prefilled[0] > 20, "first turn: %u prefilled, %u reused",
              prefilled[0], reused[0]);
        CHECK(reused[1] > prefilled[0] && prefilled[1] < reused[1],
              "second turn re-processed the conversation: %u prefilled, %u reused (first turn "
              "%u)", prefilled[1], reused[1], prefilled[0]);
    }
    CHECK(out && count_lines(out) >= 2, "two replies expected: %s", out ? out : "");
    free(out), free(err);
}

/* --chat -i: one reply, then exit; a model without a template and unknown
 * template names get clear messages. */
static void test_chat_one_shot_and_errors(void)
{
    char *out = run_expect("./run --chat --template zephyr -i 'Hi' -t 0 -n 10", 0, NULL);
    CHECK(out && strlen(out) > 1, "--chat -i printed nothing");
    free(out);
    expect_error("./run --chat -i Hi", 1, "--template");
    expect_error("./run --chat --template llama9 -i Hi", 1, "llama3_1");
    expect_error("./run --render tests/data/chat/INDEX.tsv", 1, "--template");
}

/* --render prints exactly the reference rendering of a conversation given
 * as a JSON file, with no model; a template error is one clear message. */
static void test_render(void)
{
    char *json = test_path("messages.json");
    FILE *f = fopen(json, "w");
    CHECK(f != NULL, "cannot write %s", json);
    if (!f)
        return;
    fputs("[{\"role\":\"system\",\"content\":\"You are a concise assistant. Answer in one "
          "sentence.\"},{\"role\":\"user\",\"content\":\"What is 2+2?\"},{\"role\":\"assistant\","
          "\"content\":\"2+2 equals 4.\"},{\"role\":\"user\",\"content\":\"And what is 3+3?\"}]",
          f);
    fclose(f);
    const char *families[] = {"llama2", "llama3", "zephyr", "chatml", "mistral_v02"};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char cmd[512], ref_path[128];
        snprintf(cmd, sizeof cmd, "./run --template %s --render %s", families[i], json);
        snprintf(ref_path, sizeof ref_path, "tests/data/chat/%s_c3.txt", families[i]);
        char *out = run_expect(cmd, 0, NULL), *ref = test_read_file(ref_path, NULL);
        CHECK(out && ref && !strcmp(out, ref), "--render %s differs from %s:\n%s", families[i],
              ref_path, out ? out : "");
        free(out), free(ref);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "./run --template mistral_legacy --render %s", json);
    expect_error(cmd, 1, "Conversation roles must alternate");
    free(json);
}

/* A model whose trained context is 16M positions (stories260K with its
 * header's max_seq_len patched: the loader checks it against its bound, the
 * weights do not depend on it): the default context is capped so the KV
 * cache takes at most a quarter of RAM, and a context whose KV cache cannot
 * be allocated is refused with one message before anything runs. */
static void test_context_memory_budget(void)
{
    size_t n;
    unsigned char *bytes = (unsigned char *)test_read_file("models/stories260K.hearth", &n);
    char *path = test_path("long_context.hearth");
    uint32_t max_seq = 1u << 24;
    FILE *f = bytes && n > 64 ? fopen(path, "wb") : NULL;
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        memcpy(bytes + 44, &max_seq, 4); /* struct hearth_header.max_seq_len */
        fwrite(bytes, 1, n, f);
        fclose(f);
        char cmd[512];
        snprintf(cmd, sizeof cmd, "./run %s --info", path);
        char *out = run_expect(cmd, 0, NULL);
        CHECK(out && strstr(out, "capped to 1/4 of RAM"), "--info: %s", out ? out : "");
        free(out);
        /* AddressSanitizer reserves terabytes of shadow memory at start, so
         * under `make sanitize` a capped address space stops it first. */
#if !defined(__SANITIZE_ADDRESS__) && !UNDER_ASAN
        snprintf(cmd, sizeof cmd, "ulimit -v 300000; ./run %s --ctx 16777216 --kv-type f32 -n 16777216",
                 path);
        expect_error(cmd, 1, "out of memory for a 16777216-position context");
#endif
    }
    free(bytes);
    free(path);
}

const struct test_case cli_tests[] = {
    {"cli: ./run -t 0 -n 200 prints llama2.c's text", test_default_model_matches_llama2c_stdout},
    {"cli: --tokenize prints ids", test_tokenize},
    {"cli: special-token text needs --special", test_tokenize_special},
    {"cli: --ids --logits equal llama2.c", test_ids_logits},
    {"cli: same seed, same text", test_seed_reproducible},
    {"cli: --verify", test_verify},
    {"cli: bad input gets one clear error", test_bad_input},
    {"cli: --info shows CPU features, kernels and threads", test_info},
    {"cli: --kernels this CPU lacks is refused, not SIGILL", test_kernels_this_cpu_lacks},
    {"cli: prompt longer than context, -n clamped", test_context_limits},
    {"cli: --batch never changes the text", test_batch_same_text},
    {"cli: --ctx, --batch, --kv-type and sampling values are checked", test_context_options},
    {"cli: --stop ends the text before the stop string", test_stop_string},
    {"cli: a piped two-turn chat reuses the cached first turn", test_chat_session_reuses_cache},
    {"cli: --chat -i answers once; template errors are clear", test_chat_one_shot_and_errors},
    {"cli: --render prints the reference renderings", test_render},
    {"cli: the default context fits a memory budget; no memory, one message", test_context_memory_budget},
    {NULL, NULL},
};
