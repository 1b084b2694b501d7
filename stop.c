/* stop.c - the stop-string matcher of stop.h: one Knuth-Morris-Pratt
 * automaton per string, advanced byte by byte, so each input byte costs
 * O(number of strings) amortized, whatever the strings' overlaps ("aab" in
 * "aaab"). The held-back tail is exactly the longest automaton state: the
 * longest suffix of the text that is still a prefix of some string.
 *
 * It does not decode tokens or validate the text it is fed (only the stop
 * strings), and it allocates nothing. */
#include <string.h>

#include "err.h"
#include "stop.h"
#include "unicode.h"

/* Offset of the first byte of s[0..n) that is not part of a well-formed
 * UTF-8 character, or n if all are. */
static size_t utf8_bad_at(const unsigned char *s, size_t n)
{
    size_t i = 0, len;
    uint32_t cp;
    while (i < n && (len = unicode_utf8_next(s + i, n - i, &cp)) > 0)
        i += len;
    return i;
}

void stop_init(struct stop_matcher *m)
{
    m->n_strings = 0;
    stop_reset(m);
}

void stop_reset(struct stop_matcher *m)
{
    m->matched = -1;
    m->n_held = 0;
    memset(m->state, 0, sizeof m->state);
}

/* The KMP failure function of s[0..n): b[j] = length of the longest proper
 * prefix of s[0..j] that is also its suffix. */
static void build_border(const char *s, uint16_t n, uint16_t *b)
{
    b[0] = 0;
    uint16_t q = 0;
    for (uint16_t j = 1; j < n; j++) {
        while (q > 0 && s[j] != s[q])
            q = b[q - 1];
        if (s[j] == s[q])
            q++;
        b[j] = q;
    }
}

int stop_add(struct stop_matcher *m, const char *s, size_t n, char *err)
{
    if (m->n_strings >= STOP_MAX_STRINGS)
        return fail(err, "stop: at most %d --stop strings", STOP_MAX_STRINGS);
    if (n == 0)
        return fail(err, "stop: a --stop string must not be empty");
    if (n > STOP_MAX_BYTES)
        return fail(err, "stop: a --stop string may have at most %d bytes (got %zu)",
                    STOP_MAX_BYTES, n);
    size_t bad = utf8_bad_at((const unsigned char *)s, n);
    if (bad < n)
        return fail(err, "stop: --stop string %u is not well-formed UTF-8 (byte %zu)",
                    (unsigned)m->n_strings + 1, bad);
    uint32_t i = m->n_strings++;
    memcpy(m->text[i], s, n);
    m->len[i] = (uint16_t)n;
    m->state[i] = 0;
    build_border(m->text[i], m->len[i], m->border[i]);
    return 0;
}

/* Advances string i's automaton by byte c; returns the new state, which is
 * len[i] on a complete match. */
static uint16_t advance(const struct stop_matcher *m, uint32_t i, char c)
{
    const char *s = m->text[i];
    uint16_t q = m->state[i];
    while (q > 0 && s[q] != c)
        q = m->border[i][q - 1];
    return s[q] == c ? (uint16_t)(q + 1) : 0;
}

/* Writes bytes [0, cut) of held ++ in to out. */
static size_t emit(const struct stop_matcher *m, const char *in, size_t cut, char *out)
{
    size_t from_held = cut < m->n_held ? cut : m->n_held;
    memcpy(out, m->held, from_held);
    memcpy(out + from_held, in, cut - from_held);
    return cut;
}

/* Offsets below are into held ++ in, the text not yet passed on. A state
 * counts bytes of that text (invariant: every state <= n_held before a
 * call, and a byte adds at most 1), so matches and held tails lie inside it
 * and nothing already printed is ever taken back. */
size_t stop_feed(struct stop_matcher *m, const char *in, size_t n, char *out)
{
    if (m->matched >= 0)
        return 0;
    for (size_t j = 0; j < n; j++) {
        int match = -1;
        for (uint32_t i = 0; i < m->n_strings; i++) {
            m->state[i] = advance(m, i, in[j]);
            if (m->state[i] == m->len[i] && (match < 0 || m->len[i] > m->len[match]))
                match = (int)i;
        }
        if (match >= 0) {
            size_t cut = m->n_held + j + 1 - m->len[match];
            size_t k = emit(m, in, cut, out);
            m->matched = match;
            m->n_held = 0;
            return k;
        }
    }
    size_t total = m->n_held + n, hold = 0;
    for (uint32_t i = 0; i < m->n_strings; i++)
        if (m->state[i] > hold)
            hold = m->state[i];
    size_t cut = total - hold, k = emit(m, in, cut, out);
    if (cut < m->n_held) { /* part of the old tail stays held */
        memmove(m->held, m->held + cut, m->n_held - cut);
        memcpy(m->held + (m->n_held - cut), in, n);
    } else {
        memcpy(m->held, in + (cut - m->n_held), hold);
    }
    m->n_held = (uint32_t)hold;
    return k;
}

int stop_matched(const struct stop_matcher *m)
{
    return m->matched;
}

size_t stop_flush(struct stop_matcher *m, char *out)
{
    size_t k = m->n_held; /* 0 after a match: the match drops the hold */
    memcpy(out, m->held, k);
    m->n_held = 0;
    memset(m->state, 0, sizeof m->state);
    return k;
}
