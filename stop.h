/* stop.h - stop strings for streamed generation: fed the decoded text of
 * each generated token, the matcher passes on the bytes that are safe to
 * print, holds back a tail that could still become a stop string, and ends
 * the text at the first stop string: neither it nor anything after it is
 * ever passed on.
 *
 * Which match ends the text: the one that completes first (the smallest end
 * offset); among several completing at the same byte, the longest (the one
 * starting first). That rule makes the result independent of how the text
 * is cut into tokens: feeding "abcdef" at once or byte by byte gives the same
 * output for every set of stop strings.
 *
 * Feed it complete UTF-8 characters (after utf8_stream_push, tokenizer.h).
 * Stop strings must be well-formed UTF-8, so a match or a held-back tail
 * always starts on a character boundary and the output is never cut inside
 * a character. The struct is fixed-size; nothing is allocated. It does not
 * look at token ids (stop ids are the caller's) or decode tokens. */
#ifndef HEARTH_STOP_H
#define HEARTH_STOP_H

#include <stddef.h>
#include <stdint.h>

#define STOP_MAX_STRINGS 16
#define STOP_MAX_BYTES 256 /* the longest stop string */

struct stop_matcher {
    uint32_t n_strings;
    int32_t matched;                /* -1, or the index of the string that ended the text */
    uint32_t n_held;                /* bytes received, not yet passed on (< STOP_MAX_BYTES) */
    uint16_t len[STOP_MAX_STRINGS];
    /* Knuth-Morris-Pratt: state[i] is the length of the longest suffix of
     * the text so far that is a proper prefix of string i; border[i][j] the
     * longest proper border of its first j + 1 bytes. */
    uint16_t state[STOP_MAX_STRINGS];
    uint16_t border[STOP_MAX_STRINGS][STOP_MAX_BYTES];
    char text[STOP_MAX_STRINGS][STOP_MAX_BYTES];
    char held[STOP_MAX_BYTES];
};

/* A matcher with no stop strings (it passes everything on). */
void stop_init(struct stop_matcher *m);

/* Adds a stop string of n bytes (repeatable --stop). Returns -1 with err if
 * there are already STOP_MAX_STRINGS, if it is empty, longer than
 * STOP_MAX_BYTES, or not well-formed UTF-8. Add strings before the first
 * stop_feed (or after stop_reset). */
int stop_add(struct stop_matcher *m, const char *s, size_t n, char *err);

/* Starts a new text: forgets held bytes and a match; keeps the strings. */
void stop_reset(struct stop_matcher *m);

/* Room stop_feed needs in out for n input bytes. */
#define STOP_OUT_BYTES(n) ((n) + STOP_MAX_BYTES)

/* Takes the next n bytes of text and writes to out (room for
 * STOP_OUT_BYTES(n), not overlapping in) the bytes that can be printed now;
 * returns their count. After a match (stop_matched >= 0) the rest of the
 * text is dropped: this and every later call return 0 until stop_reset. */
size_t stop_feed(struct stop_matcher *m, const char *in, size_t n, char *out);

/* -1 while no stop string has matched, else the index of the one that did
 * (in stop_add order): generation should end. */
int stop_matched(const struct stop_matcher *m);

/* The text ended without a match (e.g. a stop id or the step limit): writes
 * the held-back bytes to out (room for STOP_MAX_BYTES) and returns their
 * count; 0 after a match. Nothing stays held; stop_matched keeps its answer
 * until stop_reset. */
size_t stop_flush(struct stop_matcher *m, char *out);

#endif
