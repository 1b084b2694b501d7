/* tests/test_stop.c - tests for stop.c: stop strings inside one token,
 * across tokens, at the very start, split inside a multi-byte UTF-8
 * character (directly, and behind utf8_stream as run.c feeds it),
 * overlapping prefixes, several strings, flush, reset, the limits on the
 * strings, and a randomized comparison with a plain search over the whole
 * text for every way of cutting it into tokens.
 *
 * The expected outputs come from the definition in stop.h (the match that
 * completes first, the longest of those), computed here by brute force. It
 * does not test run.c's use of the matcher. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../err.h"
#include "../stop.h"
#include "../tokenizer.h"
#include "test.h"

/* Everything printed so far, as run.c would print it. */
struct printed {
    char text[4096];
    size_t n;
};

/* Feeds one chunk through an out buffer of exactly STOP_OUT_BYTES(n) bytes
 * on the heap (so AddressSanitizer sees any overflow); returns the count. */
static size_t feed(struct stop_matcher *m, const char *in, size_t n, struct printed *pr)
{
    char *out = malloc(STOP_OUT_BYTES(n));
    size_t k = stop_feed(m, in, n, out);
    if (k <= sizeof pr->text - pr->n) {
        memcpy(pr->text + pr->n, out, k);
        pr->n += k;
    }
    free(out);
    return k;
}

static void flush(struct stop_matcher *m, struct printed *pr)
{
    char out[STOP_MAX_BYTES];
    size_t k = stop_flush(m, out);
    if (k <= sizeof pr->text - pr->n) {
        memcpy(pr->text + pr->n, out, k);
        pr->n += k;
    }
}

static void add(struct stop_matcher *m, const char *s)
{
    char err[HEARTH_ERR_BYTES];
    CHECK(stop_add(m, s, strlen(s), err) == 0, "stop_add '%s': %s", s, err);
}

static int printed_is(const struct printed *pr, const char *want)
{
    return pr->n == strlen(want) && !memcmp(pr->text, want, pr->n);
}

/* Feeds the NULL-terminated tokens, then flushes unless a string matched;
 * checks the printed text and the match index. */
static void check_tokens(const char *what, const char *const *stops, const char *const *tokens,
                         const char *want, int want_match)
{
    struct stop_matcher m;
    stop_init(&m);
    for (size_t i = 0; stops[i]; i++)
        add(&m, stops[i]);
    struct printed pr = {.n = 0};
    for (size_t i = 0; tokens[i] && stop_matched(&m) < 0; i++)
        feed(&m, tokens[i], strlen(tokens[i]), &pr);
    flush(&m, &pr);
    CHECK(printed_is(&pr, want), "%s: printed '%.*s', want '%s'", what, (int)pr.n, pr.text, want);
    CHECK(stop_matched(&m) == want_match, "%s: matched %d, want %d", what, stop_matched(&m),
          want_match);
}

static void test_basic(void)
{
    check_tokens("inside one token", (const char *[]){"END", NULL},
                 (const char *[]){"abcENDxyz", "more", NULL}, "abc", 0);
    check_tokens("across tokens", (const char *[]){"END", NULL},
                 (const char *[]){"ab", "cE", "N", "Dxyz", NULL}, "abc", 0);
    check_tokens("at the very start", (const char *[]){"Hello", NULL},
                 (const char *[]){"Hel", "lo world", NULL}, "", 0);
    check_tokens("whole first token", (const char *[]){"<|end|>", NULL},
                 (const char *[]){"<|end|>", NULL}, "", 0);
    check_tokens("no match: held tail flushed", (const char *[]){"END", NULL},
                 (const char *[]){"abc", "EN", NULL}, "abcEN", -1);
    check_tokens("near miss released", (const char *[]){"END", NULL},
                 (const char *[]){"aEN", "d!", NULL}, "aENd!", -1);
    check_tokens("no stop strings", (const char *[]){NULL},
                 (const char *[]){"any", "thing", NULL}, "anything", -1);
    check_tokens("empty tokens", (const char *[]){"xy", NULL},
                 (const char *[]){"", "ax", "", "", "yb", NULL}, "a", 0);
    check_tokens("overlap aab in aaab", (const char *[]){"aab", NULL},
                 (const char *[]){"a", "a", "a", "b", "c", NULL}, "a", 0);
    check_tokens("overlap abab in abaabab", (const char *[]){"abab", NULL},
                 (const char *[]){"aba", "aba", "b", NULL}, "aba", 0);
    check_tokens("overlap, one token", (const char *[]){"aab", NULL},
                 (const char *[]){"xaaaab", NULL}, "xaa", 0);
    /* several strings: the first to complete wins, the longest on a tie */
    check_tokens("first completed wins", (const char *[]){"abcdef", "cd", NULL},
                 (const char *[]){"abcdef", NULL}, "ab", 1);
    check_tokens("longest of those ending together", (const char *[]){"d", "bcd", NULL},
                 (const char *[]){"abcd", NULL}, "a", 1);
    check_tokens("second string matches", (const char *[]){"STOP", "\n\n", NULL},
                 (const char *[]){"line\n", "\nnext", NULL}, "line", 1);
    check_tokens("duplicate strings", (const char *[]){"zz", "zz", NULL},
                 (const char *[]){"azzb", NULL}, "a", 0);

    /* what is printed at each step: only a possible prefix is held */
    struct stop_matcher m;
    stop_init(&m);
    add(&m, "END");
    struct printed pr = {.n = 0};
    CHECK(feed(&m, "ab", 2, &pr) == 2, "'ab' should print at once");
    CHECK(feed(&m, "cE", 2, &pr) == 1, "'cE' should print 'c' and hold 'E'");
    CHECK(feed(&m, "N", 1, &pr) == 0, "'N' should be held");
    CHECK(feed(&m, "Dxyz", 4, &pr) == 0 && stop_matched(&m) == 0, "'D' should match");
    CHECK(feed(&m, "later", 5, &pr) == 0, "text after a match must be dropped");
    flush(&m, &pr);
    CHECK(printed_is(&pr, "abc"), "printed '%.*s'", (int)pr.n, pr.text);
    CHECK(stop_matched(&m) == 0, "flush after a match forgot it");
    /* reset starts a new text with the same strings */
    stop_reset(&m);
    pr.n = 0;
    CHECK(stop_matched(&m) == -1, "reset kept the match");
    feed(&m, "xEND", 4, &pr);
    CHECK(printed_is(&pr, "x") && stop_matched(&m) == 0, "after reset printed '%.*s'",
          (int)pr.n, pr.text);
    /* flush empties the hold */
    stop_reset(&m);
    pr.n = 0;
    feed(&m, "aEN", 3, &pr);
    flush(&m, &pr);
    feed(&m, "D", 1, &pr);
    flush(&m, &pr);
    CHECK(printed_is(&pr, "aEND") && stop_matched(&m) == -1,
          "a flushed 'EN' must not match with a later 'D': '%.*s'", (int)pr.n, pr.text);
}

/* The held tail is at most STOP_MAX_BYTES - 1: a 256-byte stop string fed a
 * byte at a time, a near miss released at once into an exactly-sized out,
 * then the real match. */
static void test_long_strings(void)
{
    char s[STOP_MAX_BYTES + 1];
    for (int i = 0; i < STOP_MAX_BYTES; i++)
        s[i] = (char)('a' + i % 7);
    s[STOP_MAX_BYTES] = 0;
    struct stop_matcher m;
    stop_init(&m);
    add(&m, s);
    struct printed pr = {.n = 0};
    feed(&m, "pre ", 4, &pr);
    for (int i = 0; i < STOP_MAX_BYTES - 1; i++)
        feed(&m, &s[i], 1, &pr);
    CHECK(pr.n == 4, "held %d bytes back, printed %zu", STOP_MAX_BYTES - 1, pr.n);
    size_t k = feed(&m, "!!", 2, &pr); /* the last byte differs: all released */
    CHECK(k == STOP_MAX_BYTES - 1 + 2, "near miss released %zu bytes", k);
    feed(&m, s, STOP_MAX_BYTES, &pr);
    feed(&m, "tail", 4, &pr);
    CHECK(stop_matched(&m) == 0, "the 256-byte string did not match");
    CHECK(pr.n == 4 + STOP_MAX_BYTES - 1 + 2, "printed %zu bytes", pr.n);
}

/* ---- UTF-8 ---- */

/* Whether s[0..n) is whole, well-formed UTF-8 characters (a simple check
 * for the tests: lead byte, length, continuation bytes). */
static int whole_chars(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = u[i] < 0x80 ? 1 : u[i] >= 0xf0 ? 4 : u[i] >= 0xe0 ? 3 : u[i] >= 0xc2 ? 2 : 0;
        if (len == 0 || i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++)
            if ((u[i + k] & 0xc0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

static void test_utf8_direct(void)
{
    /* a stop string holding "é" (C3 A9), the character split between tokens */
    check_tokens("split inside a character", (const char *[]){"\xc3\xa9!", NULL},
                 (const char *[]){"caf", "\xc3", "\xa9!", "more", NULL}, "caf", 0);
    check_tokens("other character, same lead byte", (const char *[]){"\xc3\xa9", NULL},
                 (const char *[]){"x\xc3", "\xa8y", NULL}, "x\xc3\xa8y", -1);
    check_tokens("4-byte character", (const char *[]){"\xf0\x9f\x98\x80", NULL},
                 (const char *[]){"hi \xf0\x9f", "\x98", "\x80 there", NULL}, "hi ", 0);
}

/* As run.c feeds it: each token's bytes go through utf8_stream first, so
 * the matcher sees whole characters, and everything it prints is whole
 * characters too. Tokens here split "á" (C3 A1) and "€" (E2 82 AC). */
static void pipeline(const char *what, const char *stop, const char *const *tokens,
                     const char *want, int want_match)
{
    struct stop_matcher m;
    stop_init(&m);
    add(&m, stop);
    struct utf8_stream u = {0};
    struct printed pr = {.n = 0};
    int all_whole = 1;
    char chars[3 * (16 + 4)];
    for (size_t i = 0; tokens[i] && stop_matched(&m) < 0; i++) {
        size_t n = strlen(tokens[i]);
        if (n > 16)
            n = 16;
        size_t c = utf8_stream_push(&u, tokens[i], n, chars);
        size_t before = pr.n;
        feed(&m, chars, c, &pr);
        all_whole &= whole_chars(pr.text + before, pr.n - before);
    }
    if (stop_matched(&m) < 0) {
        size_t c = utf8_stream_flush(&u, chars);
        feed(&m, chars, c, &pr);
        size_t before = pr.n;
        flush(&m, &pr);
        all_whole &= whole_chars(pr.text + before, pr.n - before);
    }
    CHECK(printed_is(&pr, want), "%s: printed '%.*s', want '%s'", what, (int)pr.n, pr.text,
          want);
    CHECK(stop_matched(&m) == want_match, "%s: matched %d", what, stop_matched(&m));
    CHECK(all_whole, "%s: a printed chunk cut a UTF-8 character", what);
}

static void test_utf8_pipeline(void)
{
    pipeline("stop after a split character", "\xc3\xa1 m",
             (const char *[]){"Ol", "\xc3", "\xa1", " m", "undo", NULL}, "Ol", 0);
    pipeline("stop string starts with the split character", "\xe2\x82\xac" "5",
             (const char *[]){"price ", "\xe2\x82", "\xac", "5!", NULL}, "price ", 0);
    pipeline("no match, every chunk whole", "\xe2\x82\xac" "5",
             (const char *[]){"\xe2", "\x82\xac", "4 \xc3", "\xa1", NULL},
             "\xe2\x82\xac" "4 \xc3\xa1", -1);
}

/* ---- limits ---- */

static void test_limits(void)
{
    struct stop_matcher m;
    char err[HEARTH_ERR_BYTES];
    stop_init(&m);
    CHECK(stop_add(&m, "", 0, err) == -1 && strstr(err, "--stop") && strstr(err, "empty"),
          "empty string: '%s'", err);
    char big[STOP_MAX_BYTES + 1];
    memset(big, 'x', sizeof big);
    CHECK(stop_add(&m, big, sizeof big, err) == -1 && strstr(err, "--stop") &&
              strstr(err, "257") && strstr(err, "256"),
          "257 bytes: '%s'", err);
    CHECK(stop_add(&m, big, STOP_MAX_BYTES, err) == 0, "256 bytes rejected: %s", err);
    static const char *const bad[] = {"\xc3",         "a\x80",        "\xc0\xaf",
                                      "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff",
                                      "\xe0\x9f\xbf", "ok\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(stop_add(&m, bad[i], strlen(bad[i]), err) == -1 && strstr(err, "UTF-8"),
              "ill-formed string %zu accepted or wrong message: '%s'", i, err);
    }
    CHECK(m.n_strings == 1, "rejected strings were added: %u", (unsigned)m.n_strings);
    for (int i = 1; i < STOP_MAX_STRINGS; i++) {
        char s[16];
        snprintf(s, sizeof s, "<%d>", i);
        CHECK(stop_add(&m, s, strlen(s), err) == 0, "string %d rejected: %s", i + 1, err);
    }
    CHECK(stop_add(&m, "one more", 8, err) == -1 && strstr(err, "16") && strstr(err, "--stop"),
          "17th string: '%s'", err);
    /* all 16 are live */
    struct printed pr = {.n = 0};
    feed(&m, "abc <15> d", 10, &pr);
    CHECK(stop_matched(&m) == 15 && printed_is(&pr, "abc "), "16th string: matched %d, '%.*s'",
          stop_matched(&m), (int)pr.n, pr.text);
}

/* ---- random texts against brute force ---- */

/* The definition: the smallest end offset at which some string completes,
 * the longest string among those; returns the printed length. */
static size_t brute_force(const char *text, size_t n, char stops[][8], int n_stops, int *match)
{
    *match = -1;
    for (size_t end = 1; end <= n; end++) {
        for (int i = 0; i < n_stops; i++) {
            size_t len = strlen(stops[i]);
            if (len <= end && !memcmp(text + end - len, stops[i], len) &&
                (*match < 0 || len > strlen(stops[*match])))
                *match = i;
        }
        if (*match >= 0)
            return end - strlen(stops[*match]);
    }
    return n;
}

/* The longest suffix of text[0..n) that is a proper prefix of a string:
 * what may be held back after n bytes without a match. */
static size_t brute_hold(const char *text, size_t n, char stops[][8], int n_stops)
{
    size_t best = 0;
    for (int i = 0; i < n_stops; i++) {
        size_t len = strlen(stops[i]);
        for (size_t h = 1; h < len && h <= n; h++)
            if (!memcmp(text + n - h, stops[i], h) && h > best)
                best = h;
    }
    return best;
}

static void test_random(void)
{
    uint64_t rng = 12345;
    int failures = 0;
    for (int trial = 0; trial < 3000 && failures < 5; trial++) {
        char text[64], stops[4][8];
        size_t n = test_rand_u64(&rng) % 48;
        const char *alpha = trial % 2 ? "ab" : "abc";
        size_t na = strlen(alpha);
        for (size_t i = 0; i < n; i++)
            text[i] = alpha[test_rand_u64(&rng) % na];
        int n_stops = 1 + (int)(test_rand_u64(&rng) % 3);
        struct stop_matcher m;
        stop_init(&m);
        for (int i = 0; i < n_stops; i++) {
            size_t len = 1 + test_rand_u64(&rng) % 6;
            for (size_t k = 0; k < len; k++)
                stops[i][k] = alpha[test_rand_u64(&rng) % na];
            stops[i][len] = 0;
            add(&m, stops[i]);
        }
        int want_match;
        size_t want = brute_force(text, n, stops, n_stops, &want_match);
        struct printed pr = {.n = 0};
        size_t fed = 0;
        int eager = 1;
        while (fed < n && stop_matched(&m) < 0) {
            size_t chunk = test_rand_u64(&rng) % 6;
            if (chunk > n - fed)
                chunk = n - fed;
            feed(&m, text + fed, chunk, &pr);
            fed += chunk;
            if (stop_matched(&m) < 0)
                eager &= pr.n == fed - brute_hold(text, fed, stops, n_stops);
        }
        flush(&m, &pr);
        int ok = pr.n == want && !memcmp(pr.text, text, want) &&
                 stop_matched(&m) == want_match && eager;
        if (!ok) {
            failures++;
            CHECK(0, "trial %d: text '%.*s', %d strings ('%s' ...): printed '%.*s' (match %d), "
                  "want '%.*s' (match %d); eager %d", trial, (int)n, text, n_stops, stops[0],
                  (int)pr.n, pr.text, stop_matched(&m), (int)want, text, want_match, eager);
        }
    }
}

const struct test_case stop_tests[] = {
    {"stop_basic", test_basic},
    {"stop_long_strings", test_long_strings},
    {"stop_utf8_direct", test_utf8_direct},
    {"stop_utf8_pipeline", test_utf8_pipeline},
    {"stop_limits", test_limits},
    {"stop_random", test_random},
    {NULL, NULL},
};
