/* tests/test.h - the test harness shared by every tests/test_*.c file.
 *
 * A test is a void function; CHECK records a failure (file:line and a
 * message) without stopping the test. The runner (tests/runner.c) runs every
 * suite, prints one line per failed check, and ends with "N passed, N failed"
 * counting test functions. Tests run from the repository root, so data paths
 * are "tests/data/..." and the binaries are "./run" and "./export". */
#ifndef HEARTH_TEST_H
#define HEARTH_TEST_H

#include <stddef.h>
#include <stdint.h>

struct test_case {
    const char *name;
    void (*fn)(void);
};

/* Each tests/test_X.c defines one NULL-terminated suite array. */
extern const struct test_case quant_tests[];
extern const struct test_case tokenizer_tests[];
extern const struct test_case json_tests[];
extern const struct test_case hf_tests[];
extern const struct test_case model_tests[];
extern const struct test_case export_tests[];
extern const struct test_case cli_tests[];
extern const struct test_case sampler_tests[];
extern const struct test_case kernels_tests[];
extern const struct test_case bpe_tests[];
extern const struct test_case gguf_tests[];
extern const struct test_case families_tests[];
extern const struct test_case gemm_tests[];
extern const struct test_case nfc_tests[];
extern const struct test_case chat_tests[];
extern const struct test_case stop_tests[];
extern const struct test_case prefill_tests[];

void test_check(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define CHECK(cond, ...) test_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* A fresh directory for this run's temporary files (removed at exit unless
 * a test failed), and a path inside it. test_path returns a malloc'd string. */
const char *test_tmpdir(void);
char *test_path(const char *name);

/* Reads a whole file (malloc'd, NUL-terminated beyond n_bytes); NULL on error. */
char *test_read_file(const char *path, size_t *n_bytes);
int test_write_file(const char *path, const void *data, size_t n_bytes);

/* Runs a shell command; captures stdout and stderr (malloc'd, NUL-terminated,
 * may be NULL if not wanted) and returns the exit status, or 128+signal if it
 * was killed by a signal, or -1 if it could not run. */
int test_run(const char *cmd, char **out, char **errout);

/* Deterministic random numbers for tests (xorshift64*). */
uint64_t test_rand_u64(uint64_t *state);
float test_rand_uniform(uint64_t *state);        /* [0, 1) */
float test_rand_normal(uint64_t *state);         /* N(0, 1) */

#endif
