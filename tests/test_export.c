/* tests/test_export.c - ./export from the shell: determinism, the two
 * llama2.c tokenizer forms giving the same file, and clear refusals of bad
 * sources. Format-level checks of the readers are in test_hf.c and
 * test_tokenizer.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

static int files_equal(const char *a, const char *b)
{
    size_t na, nb;
    char *da = test_read_file(a, &na), *db = test_read_file(b, &nb);
    int eq = da && db && na == nb && !memcmp(da, db, na);
    free(da), free(db);
    return eq;
}

static int export_to(const char *args, const char *out_name, char **err)
{
    char *out = test_path(out_name), cmd[1024];
    snprintf(cmd, sizeof cmd, "./export %s -o %s", args, out);
    free(out);
    return test_run(cmd, NULL, err);
}

/* tok512.bin (llama2.c form) and tok512.model (SentencePiece protobuf) hold
 * the same vocabulary, so the exported files must be byte-identical; and
 * exporting twice gives the same bytes. */
static void test_export_deterministic_and_tokenizer_forms(void)
{
    char *err = NULL;
    int rc = export_to("models/stories260K.bin --tokenizer models/tok512.bin", "a.hearth", &err);
    CHECK(rc == 0, "export with tok512.bin failed: %s", err ? err : "");
    CHECK(err && strstr(err, "dim 64") && strstr(err, "wrote"), "export report missing: %s",
          err ? err : "");
    free(err);
    rc = export_to("models/stories260K.bin --tokenizer tests/data/tok512.model", "b.hearth", NULL);
    CHECK(rc == 0, "export with tok512.model failed");
    char *a = test_path("a.hearth"), *b = test_path("b.hearth");
    CHECK(files_equal(a, b), "tok512.bin and tok512.model exports differ");
    CHECK(files_equal(a, "models/stories260K.hearth"), "export is not deterministic");
    free(a), free(b);
}

static void expect_export_error(const char *args, int status, const char *needle)
{
    char *err = NULL, cmd[1024];
    char *out = test_path("rejected.hearth");
    unlink(out);
    snprintf(cmd, sizeof cmd, "./export %s -o %s", args, out);
    int rc = test_run(cmd, NULL, &err);
    CHECK(rc == status, "`%s` exited %d, expected %d: %s", cmd, rc, status, err ? err : "");
    CHECK(err && strstr(err, needle), "`%s`: stderr lacks '%s': %s", cmd, needle,
          err ? err : "");
    CHECK(access(out, F_OK) != 0, "`%s` left an output file behind", cmd);
    free(err), free(out);
}

static void test_export_rejects_bad_sources(void)
{
    size_t n;
    char *ckpt = test_read_file("models/stories260K.bin", &n);
    char *cut = test_path("cut.bin"), args[512];
    CHECK(ckpt && test_write_file(cut, ckpt, n - 1000) == 0, "write truncated checkpoint");
    snprintf(args, sizeof args, "%s --tokenizer models/tok512.bin", cut);
    expect_export_error(args, 1, "truncated");
    CHECK(ckpt && test_write_file(cut, ckpt, 20) == 0, "write a 20-byte header");
    expect_export_error(args, 1, "28 bytes");
    memset(ckpt, 0xff, 8);
    CHECK(test_write_file(cut, ckpt, n) == 0, "write bad header");
    expect_export_error(args, 1, "dim");
    free(ckpt), free(cut);
    expect_export_error("models/stories260K.bin", 2, "--tokenizer");
    expect_export_error("models/stories260K.bin --tokenizer tests/data/llama2/tokenizer.bin", 1,
                        "vocab_size is 512");
    expect_export_error("no/such/dir", 1, "no/such/dir");
    expect_export_error("models/stories260K.bin --tokenizer models/tok512.bin --type q3", 2,
                        "--type");
    char *dir = test_path("empty_hf"), cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && printf '{\"hidden_size\": ' > %s/config.json", dir, dir);
    CHECK(test_run(cmd, NULL, NULL) == 0, "make broken HF folder");
    expect_export_error(dir, 1, "config.json");
    free(dir);
}

static void test_export_usage(void)
{
    char *err = NULL;
    CHECK(test_run("./export", NULL, &err) == 2, "no arguments should exit 2");
    CHECK(err && strstr(err, "usage"), "no usage text: %s", err ? err : "");
    free(err);
    char *out = NULL;
    CHECK(test_run("./export --help", &out, NULL) == 0 && out && strstr(out, "--type"),
          "--help should print usage");
    free(out);
}

const struct test_case export_tests[] = {
    {"export: deterministic; tok512.bin and tok512.model give one file",
     test_export_deterministic_and_tokenizer_forms},
    {"export: bad sources get one clear error and no output", test_export_rejects_bad_sources},
    {"export: usage", test_export_usage},
    {NULL, NULL},
};
