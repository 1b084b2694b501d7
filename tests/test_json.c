/* tests/test_json.c - the JSON parser (json.c): values, escapes,
 * numbers, lookups, and the refusal of every malformed input with a message
 * naming the byte offset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "../json.h"
#include "../err.h"

static struct json_doc *parse(const char *text, char *err)
{
    struct json_doc *doc = NULL;
    err[0] = 0;
    if (json_parse(text, strlen(text), JSON_DEFAULT_MAX_DEPTH, "t.json", &doc, err) < 0)
        return NULL;
    return doc;
}

static void test_json_values(void)
{
    char err[HEARTH_ERR_BYTES];
    const char *text = " {\"s\": \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"t\": true, \"f\": false, "
                       "\"n\": null, \"a\": [1, [], {}, \"x\"], \"o\": {\"k\": -2.5}} ";
    struct json_doc *doc = parse(text, err);
    CHECK(doc, "valid document refused: %s", err);
    if (!doc)
        return;
    const struct json *root = json_root(doc);
    CHECK(root->type == JSON_OBJECT && json_len(root) == 6, "root: type %d, %zu members",
          root->type, json_len(root));
    static const char *order[] = {"s", "t", "f", "n", "a", "o"};
    for (size_t i = 0; i < 6; i++) {
        const struct json_member *m = json_member_at(root, i);
        CHECK(m && !strcmp(m->key, order[i]), "member %zu is \"%s\", expected \"%s\"", i,
              m ? m->key : "(none)", order[i]);
    }
    const struct json *s = json_get(root, "s");
    CHECK(s && s->n == 12 && !memcmp(s->u.str, "a\"b\\c/d\b\f\n\r\t", 12) && s->u.str[12] == 0,
          "escapes decoded wrongly (%zu bytes)", s ? s->n : 0);
    CHECK(json_get(root, "t")->type == JSON_TRUE && json_get(root, "f")->type == JSON_FALSE &&
          json_get(root, "n")->type == JSON_NULL, "literals");
    const struct json *a = json_get(root, "a");
    CHECK(json_len(a) == 4 && json_at(a, 1)->type == JSON_ARRAY && json_len(json_at(a, 1)) == 0 &&
          json_at(a, 2)->type == JSON_OBJECT && json_is_string(json_at(a, 3), "x") &&
          !json_at(a, 4), "array contents");
    double d = 0;
    CHECK(json_get_num(json_get(root, "o"), "t.json", "k", JSON_REQUIRED, &d, err) == 1 &&
          d == -2.5, "nested number: %g (%s)", d, err);
    CHECK(!json_get(root, "missing") && !json_get(a, "s") && !json_at(root, 0),
          "lookups of absent keys / wrong types return NULL");
    CHECK(json_get(root, "o")->offset == (size_t)(strstr(text, "{\"k\"") - text),
          "offset of a nested object is %zu", json_get(root, "o")->offset);
    json_free(doc);
}

static void test_json_unicode(void)
{
    char err[HEARTH_ERR_BYTES];
    /* U+00E9, U+2581, U+1F600 as a surrogate pair, raw UTF-8 U+1F600, a NUL */
    struct json_doc *doc = parse("[\"\\u00e9\\u2581\\uD83D\\uDE00\xf0\x9f\x98\x80\\u0000z\"]", err);
    CHECK(doc, "unicode escapes refused: %s", err);
    if (!doc)
        return;
    const struct json *s = json_at(json_root(doc), 0);
    static const char want[] = "\xc3\xa9\xe2\x96\x81\xf0\x9f\x98\x80\xf0\x9f\x98\x80\0z";
    CHECK(s->n == sizeof want - 1 && !memcmp(s->u.str, want, sizeof want - 1),
          "decoded to %zu bytes, expected %zu", s->n, sizeof want - 1);
    json_free(doc);
    /* keys may hold NUL too; json_get_n finds them by length */
    doc = parse("{\"a\\u0000b\": 1, \"a\": 2}", err);
    CHECK(doc, "NUL in key refused: %s", err);
    if (doc) {
        int64_t v = 0;
        CHECK(json_int64(json_get_n(json_root(doc), "a\0b", 3), &v) && v == 1, "key with NUL");
        CHECK(json_int64(json_get(json_root(doc), "a"), &v) && v == 2, "key \"a\"");
        json_free(doc);
    }
}

static void test_json_numbers(void)
{
    char err[HEARTH_ERR_BYTES];
    struct json_doc *doc = parse("[0, -0, 42, -7, 18446744073709551615, -9223372036854775808, "
                                 "9223372036854775807, 9007199254740993, 1.5, 1e3, 2.0, -1E-2, "
                                 "1e-400, 18446744073709551616, 0.1]", err);
    CHECK(doc, "numbers refused: %s", err);
    if (!doc)
        return;
    const struct json *a = json_root(doc);
    int64_t i = 0;
    uint64_t u = 0;
    CHECK(json_int64(json_at(a, 0), &i) && i == 0 && json_uint64(json_at(a, 1), &u) && u == 0,
          "zero and minus zero are integers");
    CHECK(json_int64(json_at(a, 2), &i) && i == 42 && json_uint64(json_at(a, 2), &u) && u == 42,
          "42");
    CHECK(json_int64(json_at(a, 3), &i) && i == -7 && !json_uint64(json_at(a, 3), &u), "-7");
    CHECK(json_uint64(json_at(a, 4), &u) && u == UINT64_MAX && !json_int64(json_at(a, 4), &i),
          "UINT64_MAX is exact as uint64 only");
    CHECK(json_int64(json_at(a, 5), &i) && i == INT64_MIN, "INT64_MIN exact");
    CHECK(json_int64(json_at(a, 6), &i) && i == INT64_MAX, "INT64_MAX exact");
    CHECK(json_uint64(json_at(a, 7), &u) && u == 9007199254740993ull,
          "2^53 + 1 keeps its exact integer (double would round it): %llu",
          (unsigned long long)u);
    CHECK(!json_int64(json_at(a, 8), &i) && json_at(a, 8)->u.num.d == 1.5, "1.5 not an integer");
    CHECK(json_int64(json_at(a, 9), &i) && i == 1000, "1e3 is the integer 1000");
    CHECK(json_int64(json_at(a, 10), &i) && i == 2, "2.0 is the integer 2");
    CHECK(json_at(a, 11)->u.num.d == -0.01, "-1E-2 = %g", json_at(a, 11)->u.num.d);
    CHECK(json_at(a, 12)->u.num.d == 0.0, "1e-400 underflows to 0 (documented)");
    CHECK(!json_uint64(json_at(a, 13), &u) && json_at(a, 13)->u.num.d == 18446744073709551616.0,
          "2^64 is a double without an exact integer form");
    CHECK(json_at(a, 14)->u.num.d == 0.1, "0.1 correctly rounded");
    json_free(doc);
}

static void test_json_big_object(void)
{
    /* Objects above the linear-search size use a hash index. */
    size_t n = 20000, cap = n * 32 + 16, len = 0;
    char *text = malloc(cap);
    len += (size_t)snprintf(text + len, cap - len, "{");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s\"k%zu\":%zu", i ? "," : "", i, i * 3);
    len += (size_t)snprintf(text + len, cap - len, "}");
    char err[HEARTH_ERR_BYTES];
    struct json_doc *doc = NULL;
    CHECK(json_parse(text, len, 4, "big.json", &doc, err) == 0, "big object: %s", err);
    if (doc) {
        const struct json *root = json_root(doc);
        int bad = 0;
        for (size_t i = 0; i < n; i += 7) {
            char key[32];
            snprintf(key, sizeof key, "k%zu", i);
            int64_t v;
            if (!json_int64(json_get(root, key), &v) || v != (int64_t)(i * 3))
                bad++;
        }
        CHECK(bad == 0, "%d lookups in a %zu-member object failed", bad, n);
        CHECK(!json_get(root, "k20000") && !json_get(root, "k"), "absent keys found");
        CHECK(!strcmp(json_member_at(root, 12345)->key, "k12345"), "member order kept");
        json_free(doc);
    }
    /* a duplicate key in a hashed object */
    len -= 1;
    len += (size_t)snprintf(text + len, cap - len, ",\"k777\":1}");
    doc = NULL;
    CHECK(json_parse(text, len, 4, "big.json", &doc, err) < 0 && strstr(err, "duplicate") &&
          strstr(err, "k777"), "duplicate key in a large object: %s", doc ? "accepted" : err);
    json_free(doc);
    free(text);
}

struct bad_case {
    const char *text;
    size_t len; /* 0: strlen */
    const char *needle;   /* must appear in the message */
    long at;              /* expected "at byte N", or -1 to skip */
};

static void test_json_invalid(void)
{
    static const struct bad_case cases[] = {
        {"", 0, "end of input", 0},
        {"   ", 0, "end of input", 3},
        {"[1,]", 0, "expected a value", 3},
        {"{\"a\":1,}", 0, "string key", 7},
        {"[1 2]", 0, "expected ','", 3},
        {"{\"a\" 1}", 0, "':'", 5},
        {"{1:2}", 0, "string key", 1},
        {"[1]]", 0, "after the end", 3},
        {"[1] x", 0, "after the end", 4},
        {"\"\\x\"", 0, "invalid escape", 1},
        {"\"\\u12\"", 0, "four hex digits", 1},
        {"\"\\uZZZZ\"", 0, "four hex digits", 1},
        {"\"\\ud800\"", 0, "surrogate", 1},
        {"\"\\udc00\"", 0, "lone low surrogate", 1},
        {"\"\\ud800\\u0041\"", 0, "surrogate", 1},
        {"\"\\ud800\\udbff\"", 0, "surrogate", 1},
        {"\"a\nb\"", 0, "control character", 2},
        {"\"a\tb\"", 0, "control character", 2},
        {"\"a\0b\"", 5, "control character", 2},
        {"\"\xff\"", 0, "UTF-8", 1},
        {"\"\xc0\xaf\"", 0, "UTF-8", 1},
        {"\"\xed\xa0\x80\"", 0, "UTF-8", 1},
        {"\"\xf4\x90\x80\x80\"", 0, "UTF-8", 1},
        {"\"\xe2\x96\"", 0, "UTF-8", 1},
        {"\"abc", 0, "unterminated", 0},
        {"01", 0, "leading zero", 0},
        {"-", 0, "digit", 1},
        {"1.", 0, "digit after '.'", 2},
        {".5", 0, "expected a value", 0},
        {"+1", 0, "expected a value", 0},
        {"1e", 0, "exponent", 2},
        {"1e+", 0, "exponent", 3},
        {"NaN", 0, "expected a value", 0},
        {"Infinity", 0, "expected a value", 0},
        {"-Infinity", 0, "digit", 1},
        {"1e999999999999999999", 0, "too large", 0},
        {"[-1e400]", 0, "too large", 1},
        {"tru", 0, "expected a value", 0},
        {"nul", 0, "expected a value", 0},
        {"'a'", 0, "expected a value", 0},
        {"{\"a\":1,\"a\":2}", 0, "duplicate", 11},
        {"[1, /* c */ 2]", 0, "expected a value", 4},
        {"{\n\"a\": tru\n}", 0, "line 2, column 6", 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bad_case *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->text);
        char err[HEARTH_ERR_BYTES] = "";
        struct json_doc *doc = NULL;
        int rc = json_parse(c->text, len, JSON_DEFAULT_MAX_DEPTH, "bad.json", &doc, err);
        CHECK(rc < 0 && !doc, "case %zu (%s) accepted", i, c->text);
        CHECK(strstr(err, c->needle) && strstr(err, "bad.json"),
              "case %zu (%s): message \"%s\" lacks \"%s\"", i, c->text, err, c->needle);
        if (c->at >= 0) {
            char at[48];
            snprintf(at, sizeof at, "at byte %ld ", c->at);
            CHECK(strstr(err, at), "case %zu (%s): message \"%s\" should say \"%s\"", i, c->text,
                  err, at);
        }
        json_free(doc);
    }
}

static void test_json_truncation(void)
{
    /* Every proper prefix of a document must be refused with an offset. */
    const char *text = "{\"name\": \"x\\u00e9\\ud83d\\ude00y\", \"list\": [1, -2.5e3, true, "
                       "false, null, {\"k\": []}], \"n\": 0}";
    size_t n = strlen(text);
    int accepted = 0, no_offset = 0;
    for (size_t k = 0; k < n; k++) {
        char *copy = malloc(k + 1); /* exact-size copy: ASan catches reads past k */
        memcpy(copy, text, k);
        char err[HEARTH_ERR_BYTES] = "";
        struct json_doc *doc = NULL;
        if (json_parse(copy, k, 16, "trunc.json", &doc, err) == 0)
            accepted++;
        else if (!strstr(err, "at byte"))
            no_offset++;
        json_free(doc);
        free(copy);
    }
    CHECK(accepted == 0, "%d truncated prefixes accepted", accepted);
    CHECK(no_offset == 0, "%d truncation errors without a byte offset", no_offset);
    char err[HEARTH_ERR_BYTES];
    struct json_doc *doc = NULL;
    CHECK(json_parse(text, n, 16, "trunc.json", &doc, err) == 0, "whole document: %s", err);
    json_free(doc);
}

static void test_json_depth(void)
{
    size_t n = 100000;
    char *deep = malloc(2 * n);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    char err[HEARTH_ERR_BYTES] = "";
    struct json_doc *doc = NULL;
    CHECK(json_parse(deep, 2 * n, JSON_DEFAULT_MAX_DEPTH, "deep.json", &doc, err) < 0 &&
          strstr(err, "nesting deeper than 256") && strstr(err, "at byte 256 "),
          "100000 nested arrays: %s", doc ? "accepted" : err);
    json_free(doc);
    /* exactly at the limit is fine; one deeper is not */
    doc = NULL;
    CHECK(json_parse(deep + n - 10, 20, 10, "deep.json", &doc, err) == 0,
          "10 levels with limit 10: %s", err);
    json_free(doc);
    doc = NULL;
    CHECK(json_parse(deep + n - 11, 22, 10, "deep.json", &doc, err) < 0 && strstr(err, "nesting"),
          "11 levels with limit 10: %s", doc ? "accepted" : err);
    json_free(doc);
    free(deep);
}

static void test_json_getters(void)
{
    char err[HEARTH_ERR_BYTES];
    struct json_doc *doc = parse("{\"i\": 5, \"big\": 99, \"f\": 1.5, \"s\": \"str\", \"b\": true, "
                                 "\"z\": null, \"arr\": [1]}", err);
    CHECK(doc, "getter document: %s", err);
    if (!doc)
        return;
    const struct json *o = json_root(doc), *v = NULL;
    int64_t i = -1;
    double d = 0;
    int b = 0;
    CHECK(json_get_int(o, "cfg.json", "i", JSON_REQUIRED, 0, 10, &i, err) == 1 && i == 5,
          "int getter");
    CHECK(json_get_int(o, "cfg.json", "big", JSON_REQUIRED, 0, 10, &i, err) < 0 &&
          strstr(err, "\"big\"") && strstr(err, "99") && strstr(err, "cfg.json"),
          "range error names the key: %s", err);
    CHECK(json_get_int(o, "cfg.json", "f", JSON_REQUIRED, 0, 10, &i, err) < 0 &&
          strstr(err, "\"f\"") && strstr(err, "integer"), "non-integer: %s", err);
    CHECK(json_get_int(o, "cfg.json", "s", JSON_OPTIONAL, 0, 10, &i, err) < 0 &&
          strstr(err, "\"s\"") && strstr(err, "a string"), "string as int: %s", err);
    CHECK(json_get_int(o, "cfg.json", "nope", JSON_OPTIONAL, 0, 10, &i, err) == 0 && i == 5,
          "absent optional leaves the output alone");
    CHECK(json_get_int(o, "cfg.json", "nope", JSON_REQUIRED, 0, 10, &i, err) < 0 &&
          strstr(err, "\"nope\" is missing"), "absent required: %s", err);
    CHECK(json_get_int(o, "cfg.json", "z", JSON_OPTIONAL, 0, 10, &i, err) == 0,
          "null optional counts as absent");
    CHECK(json_get_int(o, "cfg.json", "z", JSON_REQUIRED, 0, 10, &i, err) < 0 &&
          strstr(err, "\"z\" is null"), "null required: %s", err);
    CHECK(json_get_num(o, "cfg.json", "f", JSON_REQUIRED, &d, err) == 1 && d == 1.5, "num");
    CHECK(json_get_num(o, "cfg.json", "b", JSON_REQUIRED, &d, err) < 0 && strstr(err, "\"b\""),
          "bool as number: %s", err);
    CHECK(json_get_bool(o, "cfg.json", "b", JSON_REQUIRED, &b, err) == 1 && b == 1, "bool");
    CHECK(json_get_bool(o, "cfg.json", "i", JSON_REQUIRED, &b, err) < 0 && strstr(err, "\"i\"") &&
          strstr(err, "true or false"), "int as bool: %s", err);
    CHECK(json_get_typed(o, "cfg.json", "arr", JSON_REQUIRED, JSON_ARRAY, &v, err) == 1 &&
          json_len(v) == 1, "array getter");
    CHECK(json_get_typed(o, "cfg.json", "s", JSON_REQUIRED, JSON_OBJECT, &v, err) < 0 &&
          strstr(err, "\"s\" must be an object, found a string"), "typed: %s", err);
    json_free(doc);
}

static void test_json_file(void)
{
    char err[HEARTH_ERR_BYTES];
    char *path = test_path("file.json");
    test_write_file(path, "{\"a\": [1, 2]}\n", 14);
    struct json_doc *doc = NULL;
    CHECK(json_parse_file(path, 1000, 8, &doc, err) == 0 && json_len(json_get(json_root(doc),
                                                                               "a")) == 2,
          "file: %s", err);
    json_free(doc);
    doc = NULL;
    CHECK(json_parse_file(path, 10, 8, &doc, err) < 0 && strstr(err, "too large"),
          "size limit: %s", err);
    json_free(doc);
    test_write_file(path, "{\"a\": [1, 2}\n", 13);
    doc = NULL;
    CHECK(json_parse_file(path, 1000, 8, &doc, err) < 0 && strstr(err, path) &&
          strstr(err, "at byte 11 "), "error names the file and offset: %s", err);
    json_free(doc);
    free(path);
}

const struct test_case json_tests[] = {
    {"json_values", test_json_values},
    {"json_unicode", test_json_unicode},
    {"json_numbers", test_json_numbers},
    {"json_big_object", test_json_big_object},
    {"json_invalid", test_json_invalid},
    {"json_truncation", test_json_truncation},
    {"json_depth", test_json_depth},
    {"json_getters", test_json_getters},
    {"json_file", test_json_file},
    {NULL, NULL},
};
