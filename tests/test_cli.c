/* tests/test_cli.c - ./run from the shell: the llama2.c reference output,
 * tokenization, logits, seeds, and one clear error for each kind of bad
 * input. Runs the binaries `make` built in the repository root. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "test.h"

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
    {NULL, NULL},
};
