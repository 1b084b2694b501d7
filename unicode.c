/* unicode.c - code point -> character class, by binary search in the run
 * table of unicode_tables.h (generated; see tools/gen_unicode.c). Nothing
 * else: UTF-8 decoding and the regex logic live in tokenizer.c. */
#include "unicode.h"

#include "unicode_tables.h"

_Static_assert(UNICODE_N_RUNS > 0 && UNICODE_SPACE < 8, "run entries hold the class in 3 bits");

enum unicode_class unicode_class_of(uint32_t cp)
{
    if (cp < 128)
        return (enum unicode_class)unicode_ascii[cp];
    if (cp > 0x10ffffu)
        return UNICODE_OTHER;
    /* the last run starting at or below cp; unicode_runs[0] starts at 0 */
    uint32_t lo = 0, hi = UNICODE_N_RUNS;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (unicode_runs[mid] >> 3 <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return (enum unicode_class)(unicode_runs[lo] & 7u);
}

const char *unicode_version(void)
{
    return UNICODE_VERSION;
}
