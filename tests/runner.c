/* tests/runner.c - runs every test suite (optionally only tests whose name
 * contains argv[1]) and ends with the line "N passed, N failed". Exit status
 * is non-zero when any test failed. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "test.h"

/* Suites are weak so that a partial build (one suite plus the code it tests)
 * links; the full build defines them all and the runner skips none. */
#pragma weak quant_tests
#pragma weak tokenizer_tests
#pragma weak json_tests
#pragma weak hf_tests
#pragma weak model_tests
#pragma weak export_tests
#pragma weak cli_tests
#pragma weak sampler_tests
#pragma weak kernels_tests
#pragma weak bpe_tests
#pragma weak gguf_tests
#pragma weak families_tests
#pragma weak gemm_tests
#pragma weak nfc_tests
#pragma weak chat_tests
#pragma weak stop_tests
#pragma weak prefill_tests
static const struct test_case *const suites[] = {
    quant_tests, tokenizer_tests, json_tests, hf_tests,
    sampler_tests, kernels_tests, model_tests, export_tests, cli_tests,
    bpe_tests,
    gguf_tests, families_tests, gemm_tests, nfc_tests, chat_tests, stop_tests, prefill_tests,
};

static int checks_failed_in_test;
static const char *current_test;

void test_check(int ok, const char *file, int line, const char *fmt, ...)
{
    if (ok)
        return;
    checks_failed_in_test++;
    if (checks_failed_in_test > 20)
        return; /* one broken loop should not flood the log */
    va_list ap;
    va_start(ap, fmt);
    printf("  FAIL %s (%s:%d): ", current_test, file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static char tmpdir[256];

const char *test_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/hearth-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return tmpdir;
}

char *test_path(const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", test_tmpdir(), name) < 0)
        exit(2);
    return p;
}

char *test_read_file(const char *path, size_t *n_bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = 0;
    if (n_bytes)
        *n_bytes = n;
    return buf;
}

int test_write_file(const char *path, const void *data, size_t n_bytes)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t put = fwrite(data, 1, n_bytes, f);
    return (fclose(f) == 0 && put == n_bytes) ? 0 : -1;
}

int test_run(const char *cmd, char **out, char **errout)
{
    char *out_path = test_path("cmd.stdout"), *err_path = test_path("cmd.stderr");
    char *full = NULL;
    if (asprintf(&full, "(%s) </dev/null >'%s' 2>'%s'", cmd, out_path, err_path) < 0)
        exit(2);
    int status = system(full);
    free(full);
    if (out)
        *out = test_read_file(out_path, NULL);
    if (errout)
        *errout = test_read_file(err_path, NULL);
    free(out_path);
    free(err_path);
    if (status == -1)
        return -1;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    /* system() runs sh -c; a child killed by a signal shows as 128+sig */
    return WEXITSTATUS(status);
}

uint64_t test_rand_u64(uint64_t *state)
{
    /* xorshift64* (Vigna, "An experimental exploration of Marsaglia's
     * xorshift generators, scrambled", 2016) */
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float test_rand_uniform(uint64_t *state)
{
    return (float)(test_rand_u64(state) >> 40) / 16777216.0f;
}

float test_rand_normal(uint64_t *state)
{
    /* Box-Muller */
    float u1 = test_rand_uniform(state), u2 = test_rand_uniform(state);
    if (u1 < 1e-7f)
        u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

static void remove_tmpdir(void)
{
    if (!tmpdir[0])
        return;
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s'", tmpdir) >= 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    free(cmd);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        for (const struct test_case *t = suites[s]; t && t->name; t++) {
            if (filter && !strstr(t->name, filter))
                continue;
            current_test = t->name;
            checks_failed_in_test = 0;
            t->fn();
            if (checks_failed_in_test) {
                failed++;
                printf("FAIL %s (%d failed checks)\n", t->name, checks_failed_in_test);
            } else {
                passed++;
                printf("ok   %s\n", t->name);
            }
        }
    }
    if (failed == 0)
        remove_tmpdir();
    else
        printf("temporary files kept in %s\n", tmpdir[0] ? tmpdir : "(none)");
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
