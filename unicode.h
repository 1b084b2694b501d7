/* unicode.h - the Unicode character classes the byte-level BPE
 * pre-tokenizers need (\p{L}, \p{N}, \p{M} and \s of their regexes), looked
 * up in a table generated from the Unicode Character Database
 * (unicode_tables.h, made by tools/gen_unicode.c). No normalization, case
 * mapping or other properties. */
#ifndef HEARTH_UNICODE_H
#define HEARTH_UNICODE_H

#include <stdint.h>

/* Every code point has exactly one class (the generator checks that no
 * White_Space code point is a letter, number or mark). */
enum unicode_class {
    UNICODE_OTHER = 0,  /* anything else, unassigned code points included */
    UNICODE_LETTER = 1, /* General_Category L: Lu Ll Lt Lm Lo */
    UNICODE_NUMBER = 2, /* General_Category N: Nd Nl No */
    UNICODE_MARK = 3,   /* General_Category M: Mn Mc Me */
    UNICODE_SPACE = 4,  /* the White_Space property (PropList.txt) */
};

/* The class of code point cp; UNICODE_OTHER above U+10FFFF. */
enum unicode_class unicode_class_of(uint32_t cp);

/* The Unicode version the table was generated from, e.g. "15.0.0". */
const char *unicode_version(void);

#endif
