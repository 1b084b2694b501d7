/* tests/test_nfc.c - Unicode Normalization Form C (unicode.h) and the
 * byte-level BPE tokenizer that uses it.
 *
 * Covered: the whole of Unicode's NormalizationTest.txt for NFC (its part 1
 * invariants on every line: c2 == NFC(c1) == NFC(c2) == NFC(c3) and c4 ==
 * NFC(c4) == NFC(c5); its part 2: every other code point is its own NFC),
 * NFC_Quick_Check against the same lines, the size bounds (3 times the
 * input, exact output caps, work too small), ill-formed UTF-8 passed through,
 * long hostile runs of combining marks, idempotence on random mixes; the
 * export reading "normalizer": NFC (alone, in a Sequence) into
 * HEARTH_TOK_NFC and refusing the rest by name; a tokenizer with NFC
 * encoding "e" U+0301 as it encodes U+00E9 (and without NFC, not),
 * special tokens matched before normalization, bad bytes and hostile text
 * through the tokenizer; the flag refused for SentencePiece; and a Hugging
 * Face folder with that tokenizer.json through ./export into a model file
 * whose tokenizer normalizes.
 * Expected outputs come from the Unicode data file or were worked out by
 * hand from the rules quoted in unicode.c, never from the code under test.
 * Not here: other normalization forms (hearth has none), the character
 * class table (test_bpe.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../exporter/source.h"
#include "../model.h"
#include "../tokenizer.h"
#include "../unicode.h"
#include "synth.h"
#include "test.h"
#include "vectors.h"

#define NORM_TEST_GZ "tests/data/unicode/NormalizationTest.txt.gz"
#define NORM_TEST_LINES 19074 /* data lines of NormalizationTest-15.0.0.txt */
#define TOK512 "tests/data/tok512.model"

/* ---- helpers ---- */

static size_t put_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* NFC of in[0..n) into a malloc'd buffer of exactly 3 n bytes (so ASan
 * sees any write past the stated bound) with exactly the work the API
 * asks for. Returns the length, or SIZE_MAX after a failed CHECK. */
static size_t nfc_alloc(const char *in, size_t n, char **out)
{
    size_t cap = UNICODE_NFC_MAX_EXPANSION * n, work_len = unicode_nfc_work_len(n);
    *out = malloc(cap ? cap : 1);
    uint32_t *work = malloc(work_len * sizeof *work);
    if (!*out || !work)
        exit(2);
    size_t k = unicode_nfc(in, n, *out, cap, work, work_len);
    free(work);
    CHECK(k != SIZE_MAX && k <= cap, "NFC of %zu bytes failed or overflowed (%zu)", n, k);
    return k;
}

static int nfc_equals(const char *in, size_t n, const char *want, size_t want_n)
{
    char *out;
    size_t k = nfc_alloc(in, n, &out);
    int ok = k == want_n && !memcmp(out, want, k);
    free(out);
    return ok;
}

/* ---- NormalizationTest.txt ---- */

/* Column text "XXXX YYYY ..." (up to ';') as UTF-8 into out (cap bytes).
 * Returns the length, or -1. */
static long parse_column(const char *s, const char *end, char *out, size_t cap, uint32_t *single)
{
    size_t k = 0, count = 0;
    while (s < end) {
        if (*s == ' ') {
            s++;
            continue;
        }
        char *stop;
        unsigned long cp = strtoul(s, &stop, 16);
        if (stop == s || cp > 0x10ffff || k + 4 > cap)
            return -1;
        k += put_utf8((uint32_t)cp, out + k);
        *single = (uint32_t)cp;
        count++;
        s = stop;
    }
    if (count != 1)
        *single = UINT32_MAX;
    return count ? (long)k : -1;
}

struct norm_counts {
    long lines, passed, qc_ok;
};

/* One data line: the NFC invariants and the quick check's consistency
 * with them (an NFC string is never NO; a string that NFC changes is
 * never YES). */
static void check_norm_line(const char *line, long no, int part, uint8_t *in_part1,
                            struct norm_counts *c)
{
    char col[5][256];
    long len[5];
    const char *s = line;
    uint32_t single = UINT32_MAX;
    for (int i = 0; i < 5; i++) {
        const char *semi = strchr(s, ';');
        uint32_t one = UINT32_MAX;
        len[i] = semi ? parse_column(s, semi, col[i], sizeof col[i], &one) : -1;
        if (len[i] < 0) {
            CHECK(0, "NormalizationTest line %ld: column %d unreadable", no, i + 1);
            return;
        }
        if (i == 0)
            single = one;
        s = semi + 1;
    }
    c->lines++;
    if (part == 1 && single != UINT32_MAX)
        in_part1[single] = 1;
    static const int from[5] = {0, 1, 2, 3, 4}, to[5] = {1, 1, 1, 3, 3};
    int ok = 1;
    for (int i = 0; i < 5; i++)
        ok &= nfc_equals(col[from[i]], (size_t)len[from[i]], col[to[i]], (size_t)len[to[i]]);
    c->passed += ok;
    CHECK(ok || c->lines - c->passed > 5, "NormalizationTest line %ld: an NFC invariant fails",
          no);
    int qc_ok = 1;
    for (int i = 0; i < 5; i++) {
        enum unicode_nfc_check q = unicode_nfc_quick_check(col[i], (size_t)len[i]);
        int is_nfc = len[i] == len[to[i]] && !memcmp(col[i], col[to[i]], (size_t)len[i]);
        qc_ok &= is_nfc ? q != UNICODE_NFC_NO : q != UNICODE_NFC_YES;
    }
    c->qc_ok += qc_ok;
    CHECK(qc_ok || c->lines - c->qc_ok > 5, "NormalizationTest line %ld: the quick check "
          "contradicts NFC", no);
}

static char *read_norm_test(size_t *n)
{
    char *path = test_path("NormalizationTest.txt"), *cmd = NULL;
    if (asprintf(&cmd, "gzip -dc '%s' > '%s'", NORM_TEST_GZ, path) < 0)
        exit(2);
    int rc = test_run(cmd, NULL, NULL);
    CHECK(rc == 0, "%s failed", cmd);
    char *text = rc == 0 ? test_read_file(path, n) : NULL;
    CHECK(text != NULL, "cannot read %s", path);
    free(cmd);
    free(path);
    return text;
}

static void test_nfc_conformance(void)
{
    size_t n;
    char *text = read_norm_test(&n);
    if (!text)
        return;
    uint8_t *in_part1 = calloc(0x110000, 1);
    struct norm_counts c = {0, 0, 0};
    int part = -1;
    long no = 0;
    for (char *line = text; line < text + n;) {
        char *nl = memchr(line, '\n', (size_t)(text + n - line));
        if (nl)
            *nl = 0;
        no++;
        if (!strncmp(line, "@Part", 5))
            part = atoi(line + 5);
        else if (line[0] != '#' && line[0] != 0)
            check_norm_line(line, no, part, in_part1, &c);
        line = nl ? nl + 1 : text + n;
    }
    CHECK(c.lines == NORM_TEST_LINES && c.passed == c.lines,
          "NormalizationTest: %ld of %ld lines pass every NFC invariant (file has %d)", c.passed,
          c.lines, NORM_TEST_LINES);
    CHECK(c.qc_ok == c.lines, "NormalizationTest: quick check consistent on %ld of %ld lines",
          c.qc_ok, c.lines);
    /* part 2 of the conformance: every code point not in part 1 is its own
     * NFC (surrogates are not text); and no character grows past 3 times
     * its bytes, with an output buffer of exactly that */
    long own = 0, others = 0, too_long = 0;
    uint32_t work[16];
    CHECK(unicode_nfc_work_len(4) <= 16, "work for 4 bytes: %zu", unicode_nfc_work_len(4));
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        char in[4], out[12];
        size_t len = put_utf8(cp, in);
        size_t k = unicode_nfc(in, len, out, UNICODE_NFC_MAX_EXPANSION * len, work,
                               unicode_nfc_work_len(len));
        too_long += k == SIZE_MAX;
        if (in_part1[cp])
            continue;
        others++;
        own += k == len && !memcmp(in, out, len);
    }
    CHECK(own == others && others > 1000000, "part 2: %ld of %ld code points are their own NFC",
          own, others);
    CHECK(too_long == 0, "%ld code points did not fit 3 times their bytes", too_long);
    free(in_part1);
    free(text);
}

/* ---- bounds ---- */

static void test_nfc_bounds(void)
{
    /* U+1D160 MUSICAL SYMBOL EIGHTH NOTE is a composition exclusion: its NFC
     * is U+1D158 U+1D165 U+1D16E, 12 bytes from 4, the 3X of UAX #15 */
    static const char note[] = "\xf0\x9d\x85\xa0",
                      want[] = "\xf0\x9d\x85\x98\xf0\x9d\x85\xa5\xf0\x9d\x85\xae";
    uint32_t work[32];
    size_t work_len = unicode_nfc_work_len(4);
    CHECK(work_len <= 32, "work_len(4) = %zu", work_len);
    char *exact = malloc(12), *short_by_one = malloc(11);
    size_t k = unicode_nfc(note, 4, exact, 12, work, work_len);
    CHECK(k == 12 && !memcmp(exact, want, 12), "U+1D160: %zu bytes", k);
    k = unicode_nfc(note, 4, short_by_one, 11, work, work_len);
    CHECK(k == SIZE_MAX, "U+1D160 into 11 bytes: %zu, not SIZE_MAX", k);
    k = unicode_nfc(note, 4, exact, 12, work, work_len - 1);
    CHECK(k == SIZE_MAX, "work one entry short: %zu, not SIZE_MAX", k);
    /* U+0390 (2 bytes) -> U+03B9 U+0308 U+0301 (6 bytes), 3 code points */
    CHECK(nfc_equals("\xce\x90", 2, "\xce\x90", 2), "U+0390 is a primary composite, kept");
    CHECK(nfc_equals("\xcd\x84", 2, "\xcc\x88\xcc\x81", 4), "U+0344 -> U+0308 U+0301");
    /* text that passes the quick check needs no work and no more than n */
    k = unicode_nfc("caf\xc3\xa9", 5, exact, 5, NULL, 0);
    CHECK(k == 5 && !memcmp(exact, "caf\xc3\xa9", 5), "NFC text copied: %zu", k);
    CHECK(unicode_nfc("", 0, exact, 0, NULL, 0) == 0, "empty text");
    CHECK(unicode_nfc_work_len(SIZE_MAX) == SIZE_MAX && unicode_nfc_work_len(SIZE_MAX / 3) ==
          SIZE_MAX, "work_len overflow is SIZE_MAX");
    free(exact);
    free(short_by_one);
}

/* Hand-worked cases: composition, reordering, blocking, Hangul. */
static void test_nfc_cases(void)
{
    static const struct {
        const char *in, *want, *what;
    } cases[] = {
        {"e\xcc\x81", "\xc3\xa9", "e U+0301 -> U+00E9"},
        {"\xc3\xa9", "\xc3\xa9", "U+00E9 stays"},
        /* q + dot below (220) + dot above (230): no composite of q */
        {"q\xcc\x87\xcc\xa3", "q\xcc\xa3\xcc\x87", "marks reordered by ccc"},
        /* D + dot above + dot below: D with dot below (U+1E0C), then dot above */
        {"D\xcc\x87\xcc\xa3", "\xe1\xb8\x8c\xcc\x87", "D U+0307 U+0323 -> U+1E0C U+0307"},
        /* a + grave (230) + acute (230): the acute is blocked by the grave */
        {"a\xcc\x80\xcc\x81", "\xc3\xa0\xcc\x81", "second mark of the same class blocked"},
        /* '>' + U+0338 composes into U+226F NOT GREATER-THAN */
        {">\xcc\xb8", "\xe2\x89\xaf", "> U+0338 -> U+226F"},
        /* Hangul: L V -> LV, LV T -> LVT, L V T -> LVT; U+AC00 + U+11A7 stays (not a T) */
        {"\xe1\x84\x80\xe1\x85\xa1", "\xea\xb0\x80", "U+1100 U+1161 -> U+AC00"},
        {"\xea\xb0\x80\xe1\x86\xa8", "\xea\xb0\x81", "U+AC00 U+11A8 -> U+AC01"},
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81", "U+1100 U+1161 U+11A8 -> U+AC01"},
        {"\xea\xb0\x80\xe1\x86\xa7", "\xea\xb0\x80\xe1\x86\xa7", "U+11A7 is no final consonant"},
        {"\xea\xb0\x81\xe1\x86\xa8", "\xea\xb0\x81\xe1\x86\xa8", "LVT takes no second T"},
        /* U+212B ANGSTROM SIGN is a singleton -> U+00C5 */
        {"\xe2\x84\xab", "\xc3\x85", "U+212B -> U+00C5"},
        /* a leading mark has no starter to join */
        {"\xcc\x81" "e", "\xcc\x81" "e", "leading U+0301 stays"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out;
        size_t k = nfc_alloc(cases[i].in, strlen(cases[i].in), &out);
        CHECK(k == strlen(cases[i].want) && !memcmp(out, cases[i].want, k), "%s", cases[i].what);
        free(out);
    }
}

/* Ill-formed UTF-8: every byte that starts no character comes out as it
 * went in and composes with nothing. */
static void test_nfc_ill_formed(void)
{
    static const struct {
        const char *in;
        size_t n;
        const char *want;
        size_t want_n;
        const char *what;
    } cases[] = {
        {"a\xff\x80" "e\xcc\x81\xed\xa0\x80", 10, "a\xff\x80\xc3\xa9\xed\xa0\x80", 9,
         "bad bytes around e U+0301"},
        {"e\xff\xcc\x81", 4, "e\xff\xcc\x81", 4, "a bad byte between e and U+0301"},
        {"e\xcc", 2, "e\xcc", 2, "a mark cut short at the end"},
        {"\xc0\xaf\xcc\x81", 4, "\xc0\xaf\xcc\x81", 4, "overlong then a mark"},
        {"a\xcc\x81\xf5\xcc\xa3", 6, "\xc3\xa1\xf5\xcc\xa3", 5, "F5 splits two marks' runs"},
        {"\xf4\x90\x80\x80\xcc\x81", 6, "\xf4\x90\x80\x80\xcc\x81", 6, "above U+10FFFF"},
        {"\0e\xcc\x81", 4, "\0\xc3\xa9", 3, "NUL is a character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(nfc_equals(cases[i].in, cases[i].n, cases[i].want, cases[i].want_n), "%s",
              cases[i].what);
    /* every 3-byte string of bytes from a small hostile alphabet: no
     * crash, never longer than 3 times, a fixed point */
    static const unsigned char alphabet[] = {0x00, 'e', 0x80, 0xbf, 0xc0, 0xcc, 0x81, 0xe1,
                                             0x84, 0xed, 0xa0, 0xf0, 0x9d, 0xf4, 0x8f, 0xff};
    long fixed = 0, total = 0;
    for (size_t a = 0; a < 16; a++)
        for (size_t b = 0; b < 16; b++)
            for (size_t c = 0; c < 16; c++) {
                char in[3] = {(char)alphabet[a], (char)alphabet[b], (char)alphabet[c]}, *once;
                size_t k = nfc_alloc(in, 3, &once);
                total++;
                fixed += k != SIZE_MAX && nfc_equals(once, k, once, k);
                free(once);
            }
    CHECK(fixed == total, "NFC is a fixed point on %ld of %ld byte strings", fixed, total);
}

/* Long runs of combining marks: linear work, exact buffers, the right
 * order. 'a', then N times (U+0301 acute, ccc 230; U+0316 grave below, ccc
 * 220): ordering puts every U+0316 first; the first U+0301 then follows a
 * ccc 220 mark, so it is not blocked and 'a' + U+0301 becomes U+00E1. */
static void test_nfc_hostile_marks(void)
{
    enum { N = 100000 };
    size_t n = 1 + 4 * (size_t)N;
    char *in = malloc(n), *want = malloc(n);
    in[0] = 'a';
    for (size_t i = 0; i < N; i++)
        memcpy(in + 1 + 4 * i, "\xcc\x81\xcc\x96", 4);
    size_t w = 0;
    memcpy(want, "\xc3\xa1", 2);
    w = 2;
    for (size_t i = 0; i < N; i++, w += 2)
        memcpy(want + w, "\xcc\x96", 2);
    for (size_t i = 1; i < N; i++, w += 2)
        memcpy(want + w, "\xcc\x81", 2);
    CHECK(nfc_equals(in, n, want, w), "a + %d x (U+0301 U+0316)", N);
    /* no starter at all: only reordered */
    w = 0;
    for (size_t i = 0; i < N; i++, w += 2)
        memcpy(want + w, "\xcc\x96", 2);
    for (size_t i = 0; i < N; i++, w += 2)
        memcpy(want + w, "\xcc\x81", 2);
    CHECK(nfc_equals(in + 1, n - 1, want, w), "%d x (U+0301 U+0316) without a starter", N);
    CHECK(unicode_nfc_quick_check(in, n) == UNICODE_NFC_NO, "out-of-order marks fail the quick "
          "check");
    free(in);
    free(want);
}

/* Random mixes of starters, marks of several classes, Hangul jamo and
 * syllables, exclusions and bad bytes: NFC is idempotent, passes its own
 * quick check and stays within 3 times the input. */
static void test_nfc_random_mixes(void)
{
    static const uint32_t pool[] = {
        'a', 'e', 'D', 'q', '>', 0x300, 0x301, 0x307, 0x316, 0x31b, 0x323, 0x338, 0x345,
        0x344, 0x390, 0x1e0a, 0x1e0c, 0x212b, 0x1100, 0x1161, 0x11a8, 0x11a7, 0xac00, 0xac01,
        0x0f71, 0x0f72, 0x0f73, 0x1d160, 0x1d165, 0x0b47, 0x0b3e, 0x0b56, 0x3099, 0x304b,
        0xfffd, 0x110000, /* a bad byte (0x110000: written as FF) */
    };
    uint64_t rng = 12345;
    long good = 0;
    for (int t = 0; t < 3000; t++) {
        char in[64 * 4];
        size_t n = 0, len = 1 + test_rand_u64(&rng) % 40;
        for (size_t i = 0; i < len; i++) {
            uint32_t cp = pool[test_rand_u64(&rng) % (sizeof pool / sizeof pool[0])];
            if (cp == 0x110000)
                in[n++] = '\xff';
            else
                n += put_utf8(cp, in + n);
        }
        char *once;
        size_t k = nfc_alloc(in, n, &once);
        int ok = k != SIZE_MAX && k <= 3 * n && nfc_equals(once, k, once, k) &&
                 unicode_nfc_quick_check(once, k) != UNICODE_NFC_NO;
        good += ok;
        free(once);
    }
    CHECK(good == 3000, "%ld of 3000 random mixes idempotent and within bounds", good);
}

/* ---- tokenizer.json with NFC, and the tokenizer ---- */

/* A byte-level tokenizer.json: the 256 alphabet characters (id = byte),
 * "é" (256), "ca" (257), "caf" (258), "café" (259) with the merges that
 * build them, added tokens 260 "<|x|>" (special) and 261 "<|y|>"; the
 * Qwen2 pre-tokenizer and the given normalizer and added-token options. */
static const char QWEN2_PRE[] =
    "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
    "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
    "\"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}]}";

static const char ADDED_PLAIN[] =
    "[{\"id\": 260, \"content\": \"<|x|>\", \"special\": true, \"normalized\": false}, "
    "{\"id\": 261, \"content\": \"<|y|>\", \"special\": false, \"normalized\": false}]";

static char *write_nfc_json(const char *name, const char *normalizer, const char *added)
{
    size_t cap = 1 << 16, k = 0;
    char *text = malloc(cap);
    k += (size_t)snprintf(text + k, cap - k, "{\"version\": \"1.0\", \"added_tokens\": %s, "
                          "\"normalizer\": %s, \"pre_tokenizer\": %s, \"decoder\": {\"type\": "
                          "\"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {",
                          added, normalizer, QWEN2_PRE);
    for (int b = 0; b < 256; b++) {
        char c[3] = {0};
        tokenizer_gpt2_char((uint8_t)b, c);
        k += (size_t)snprintf(text + k, cap - k, "%s\"%s%s\": %d", b ? ", " : "",
                              c[0] == '"' || c[0] == '\\' ? "\\" : "", c, b);
    }
    /* U+00E9 is C3 A9: alphabet characters U+00C3 and U+00A9 */
    k += (size_t)snprintf(text + k, cap - k, ", \"\xc3\x83\xc2\xa9\": 256, \"ca\": 257, "
                          "\"caf\": 258, \"caf\xc3\x83\xc2\xa9\": 259}, \"merges\": [\"c a\", "
                          "\"ca f\", \"\xc3\x83 \xc2\xa9\", \"caf \xc3\x83\xc2\xa9\"]}}");
    char *path = test_path(name);
    test_write_file(path, text, k);
    free(text);
    return path;
}

/* Reads the file into *v; 0, or -1 with err set. */
static int read_nfc_json(const char *normalizer, const char *added, struct vocab *v, char *err)
{
    char *path = write_nfc_json("nfc.tokenizer.json", normalizer, added);
    err[0] = 0;
    int rc = vocab_read_tokenizer_json(path, v, err);
    free(path);
    return rc;
}

static void test_nfc_tokenizer_json(void)
{
    static const struct {
        const char *normalizer;
        int nfc;
    } accepted[] = {
        {"{\"type\": \"NFC\"}", 1},
        {"{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}", 1},
        {"{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
         "{\"type\": \"NFC\"}]}", 1},
        {"{\"type\": \"Sequence\", \"normalizers\": []}", 0},
        {"null", 0},
    };
    char err[HEARTH_ERR_BYTES];
    struct vocab v;
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        int rc = read_nfc_json(accepted[i].normalizer, ADDED_PLAIN, &v, err);
        CHECK(rc == 0 && !!(v.hdr.flags & HEARTH_TOK_NFC) == accepted[i].nfc,
              "normalizer %s: rc %d flags 0x%x %s", accepted[i].normalizer, rc,
              rc == 0 ? v.hdr.flags : 0, err);
        if (rc == 0)
            vocab_free(&v);
    }
    static const struct {
        const char *normalizer, *added, *needle;
    } refused[] = {
        {"{\"type\": \"NFKC\"}", NULL, "NFKC"},
        {"{\"type\": \"NFD\"}", NULL, "NFD"},
        {"{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": "
         "\"Lowercase\"}]}", NULL, "Lowercase"},
        {"{\"type\": \"Sequence\"}", NULL, "Sequence"},
        {"{\"type\": \"NFC\"}", "[{\"id\": 260, \"content\": \"<|x|>\", \"special\": true, "
         "\"normalized\": true}]", "normalized"},
        /* tokenizers' AddedToken::from: a non-special token is normalized */
        {"{\"type\": \"NFC\"}", "[{\"id\": 260, \"content\": \"<|x|>\", \"special\": false}]",
         "added_tokens[0]"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *added = refused[i].added ? refused[i].added : ADDED_PLAIN;
        int rc = read_nfc_json(refused[i].normalizer, added, &v, err);
        CHECK(rc == -1 && strstr(err, refused[i].needle) && strstr(err, "nfc.tokenizer.json"),
              "refused %zu: rc %d, \"%s\" should name %s and the file", i, rc, err,
              refused[i].needle);
        if (rc == 0)
            vocab_free(&v);
    }
}

/* Tokenizers over the small tokenizer.json with and without NFC. */
struct nfc_pair {
    struct tok_fixture with, without;
    int ok;
};

static void nfc_pair_open(struct nfc_pair *p)
{
    struct vocab v;
    char err[HEARTH_ERR_BYTES];
    memset(p, 0, sizeof *p);
    int rc = read_nfc_json("{\"type\": \"NFC\"}", ADDED_PLAIN, &v, err);
    CHECK(rc == 0, "NFC tokenizer.json: %s", err);
    if (rc < 0)
        return;
    int a = tok_fixture_init(&p->with, &v, UINT32_MAX, UINT32_MAX);
    vocab_free(&v);
    rc = read_nfc_json("null", ADDED_PLAIN, &v, err);
    CHECK(rc == 0, "tokenizer.json without normalizer: %s", err);
    if (rc < 0) {
        tok_fixture_close(&p->with);
        return;
    }
    int b = tok_fixture_init(&p->without, &v, UINT32_MAX, UINT32_MAX);
    vocab_free(&v);
    p->ok = a == 0 && b == 0;
    CHECK(!p->ok || (p->with.t.hdr.flags & HEARTH_TOK_NFC), "the section lost the NFC flag");
}

static void nfc_pair_close(struct nfc_pair *p)
{
    tok_fixture_close(&p->with);
    tok_fixture_close(&p->without);
}

/* ids of text (special tokens parsed if special) into ids[max]; -1 on error */
static int encode(const struct tokenizer *t, int special, const char *text, size_t n,
                  int32_t *ids, size_t max)
{
    char err[HEARTH_ERR_BYTES] = "";
    int k = special ? tokenizer_encode_special(t, text, n, 0, ids, max, err)
                    : tokenizer_encode(t, text, n, 0, ids, max, err);
    CHECK(k >= 0, "encode of %zu bytes: %s", n, err);
    return k;
}

static int ids_are(const int32_t *ids, int n, const int32_t *want, int want_n)
{
    return n == want_n && !memcmp(ids, want, (size_t)n * sizeof *ids);
}

static void test_nfc_tokenizer(void)
{
    struct nfc_pair p;
    nfc_pair_open(&p);
    if (!p.ok)
        return;
    int32_t ids[64];
    /* "café" precomposed: c a f C3 A9 merges up to "café" (259) */
    static const char precomposed[] = "caf\xc3\xa9", decomposed[] = "cafe\xcc\x81";
    int n = encode(&p.with.t, 0, precomposed, 5, ids, 64);
    CHECK(ids_are(ids, n, (const int32_t[]){259}, 1), "NFC: café precomposed -> 259 (%d ids)", n);
    n = encode(&p.with.t, 0, decomposed, 6, ids, 64);
    CHECK(ids_are(ids, n, (const int32_t[]){259}, 1), "NFC: cafe U+0301 -> 259 (%d ids)", n);
    /* without NFC: "cafe" is a letter run (ca f merged, e alone), U+0301 a
     * piece of its own (a mark is not \p{L}): CC 81 */
    n = encode(&p.without.t, 0, decomposed, 6, ids, 64);
    CHECK(ids_are(ids, n, (const int32_t[]){258, 'e', 0xcc, 0x81}, 4),
          "no normalizer: cafe U+0301 -> 258 e CC 81 (%d ids)", n);
    /* special tokens are matched before normalization: '>' U+0338 would
     * compose into U+226F and hide the token's last character */
    n = encode(&p.with.t, 1, "<|x|>\xcc\xb8", 7, ids, 64);
    CHECK(ids_are(ids, n, (const int32_t[]){260, 0xcc, 0xb8}, 3),
          "<|x|> U+0338 -> 260 CC B8 (%d ids)", n);
    n = encode(&p.with.t, 0, "<|y|>e\xcc\x81", 8, ids, 64);
    CHECK(ids_are(ids, n, (const int32_t[]){261, 256}, 2), "<|y|> e U+0301 -> 261 256 (%d ids)",
          n);
    /* a bad byte is U+FFFD, which blocks composition: e, then U+FFFD U+0301
     * as one piece of "other" characters, bytes EF BF BD CC 81 */
    n = encode(&p.with.t, 0, "e\xff\xcc\x81", 4, ids, 64);
    CHECK(ids_are(ids, n, (const int32_t[]){'e', 0xef, 0xbf, 0xbd, 0xcc, 0x81}, 6),
          "e FF U+0301 -> e EF BF BD CC 81 (%d ids)", n);
    nfc_pair_close(&p);
}

/* Hostile text through the tokenizer: ids within tokenizer_max_ids, the
 * same ids as the hand-normalized text gets without NFC. */
static void test_nfc_tokenizer_hostile(void)
{
    struct nfc_pair p;
    nfc_pair_open(&p);
    if (!p.ok)
        return;
    enum { N = 20000 };
    size_t n = 1 + 4 * (size_t)N + 5, w = 0;
    char *in = malloc(n), *want = malloc(n);
    in[0] = 'a';
    for (size_t i = 0; i < N; i++)
        memcpy(in + 1 + 4 * i, "\xcc\x81\xcc\x96", 4);
    memcpy(in + 1 + 4 * (size_t)N, "caf\xc3\xa9", 5);
    memcpy(want, "\xc3\xa1", 2);
    w = 2;
    for (size_t i = 0; i < N; i++, w += 2)
        memcpy(want + w, "\xcc\x96", 2);
    for (size_t i = 1; i < N; i++, w += 2)
        memcpy(want + w, "\xcc\x81", 2);
    memcpy(want + w, "caf\xc3\xa9", 5);
    w += 5;
    size_t max = tokenizer_max_ids(n);
    int32_t *a = malloc(max * sizeof *a), *b = malloc(tokenizer_max_ids(w) * sizeof *b);
    int na = encode(&p.with.t, 0, in, n, a, max);
    int nb = encode(&p.without.t, 0, want, w, b, tokenizer_max_ids(w));
    CHECK(na > 0 && ids_are(a, na, b, nb), "hostile marks: %d ids with NFC, %d for the "
          "normalized text without", na, nb);
    free(in);
    free(want);
    free(a);
    free(b);
    nfc_pair_close(&p);
}

/* HEARTH_TOK_NFC belongs to byte-level BPE: a SentencePiece section with it
 * is refused. */
static void test_nfc_flag_spm(void)
{
    struct vocab v;
    char err[HEARTH_ERR_BYTES] = "";
    if (vocab_read_spm_model(TOK512, &v, err) < 0) {
        CHECK(0, "%s: %s", TOK512, err);
        return;
    }
    v.hdr.flags |= HEARTH_TOK_NFC;
    uint8_t *sec;
    uint64_t n;
    if (vocab_serialize(&v, &sec, &n, err) == 0) {
        struct tokenizer t;
        int rc = tokenizer_init(&t, sec, n, 1, 2, err);
        CHECK(rc == -1 && strstr(err, "NFC"), "NFC on SentencePiece: rc %d %s", rc, err);
        if (rc == 0)
            tokenizer_free(&t);
        free(sec);
    } else {
        CHECK(strstr(err, "NFC") != NULL, "vocab_serialize refused with: %s", err);
    }
    vocab_free(&v);
}

/* A tiny random model with the NFC tokenizer.json as a Hugging Face folder,
 * through ./export: the model file's tokenizer has the flag and uses it. */
static void test_nfc_export(void)
{
    struct synth_config cfg = {.dim = 64, .hidden_dim = 96, .n_layers = 1, .n_heads = 4,
                               .n_kv_heads = 2, .vocab_size = 262, .seq_len = 32, .tied = 1,
                               .rope_theta = 10000.0f, .norm_eps = 1e-5f, .seed = 77};
    struct synth_model *sm = synth_create(&cfg, 0);
    char *dir = test_path("nfc-hf"), *out = test_path("nfc.hearth"), *json = NULL, *cmd = NULL;
    char *errout = NULL, err[HEARTH_ERR_BYTES] = "";
    int ok = sm && synth_write_hf(sm, dir, "F32", 1, NULL) == 0;
    CHECK(ok, "writing the folder failed");
    char *src = write_nfc_json("nfc-src.tokenizer.json", "{\"type\": \"NFC\"}", ADDED_PLAIN);
    if (asprintf(&json, "%s/tokenizer.json", dir) < 0 ||
        asprintf(&cmd, "cp '%s' '%s' && ./export '%s' --type f32 -q -o '%s'", src, json, dir,
                 out) < 0)
        exit(2);
    int rc = ok ? test_run(cmd, NULL, &errout) : -1;
    CHECK(rc == 0, "%s: %s", cmd, errout ? errout : "");
    struct model m;
    if (rc == 0 && model_open(&m, out, err) == 0) {
        int32_t ids[16];
        int n = encode(&m.tok, 0, "cafe\xcc\x81", 6, ids, 16);
        CHECK((m.tok.hdr.flags & HEARTH_TOK_NFC) && ids_are(ids, n, (const int32_t[]){259}, 1),
              "exported model: flags 0x%x, cafe U+0301 -> %d ids", m.tok.hdr.flags, n);
        model_close(&m);
    } else if (rc == 0) {
        CHECK(0, "model_open %s: %s", out, err);
    }
    synth_free(sm);
    free(dir);
    free(out);
    free(json);
    free(cmd);
    free(src);
    free(errout);
}

const struct test_case nfc_tests[] = {
    {"nfc_conformance_NormalizationTest", test_nfc_conformance},
    {"nfc_bounds", test_nfc_bounds},
    {"nfc_cases", test_nfc_cases},
    {"nfc_ill_formed_utf8", test_nfc_ill_formed},
    {"nfc_hostile_marks", test_nfc_hostile_marks},
    {"nfc_random_mixes", test_nfc_random_mixes},
    {"nfc_tokenizer_json", test_nfc_tokenizer_json},
    {"nfc_tokenizer", test_nfc_tokenizer},
    {"nfc_tokenizer_hostile", test_nfc_tokenizer_hostile},
    {"nfc_flag_spm", test_nfc_flag_spm},
    {"nfc_export_end_to_end", test_nfc_export},
    {NULL, NULL},
};
