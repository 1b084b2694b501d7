/* unicode.h - the Unicode facts the tokenizers need, from tables generated
 * from the Unicode Character Database by tools/gen_unicode.c:
 *  - the character classes of the byte-level BPE pre-tokenizers (\p{L},
 *    \p{N}, \p{M} and \s of their regexes; unicode_tables.h);
 *  - Normalization Form C, which some tokenizer.json files ask for
 *    (Qwen2: "normalizer": {"type": "NFC"}; unicode_nfc_tables.h).
 * No NFD/NFKC/NFKD, case mapping or other properties. */
#ifndef HEARTH_UNICODE_H
#define HEARTH_UNICODE_H

#include <stddef.h>
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

/* The Unicode version all the tables were generated from, e.g. "15.0.0". */
const char *unicode_version(void);

/* ---- Normalization Form C (Unicode Standard Annex #15) ----
 *
 * UTF-8 in, UTF-8 out. A byte that starts no well-formed UTF-8 character
 * (Unicode 15.0 table 3-7: stray continuation bytes, overlongs, surrogates,
 * code points above U+10FFFF, a sequence cut short) is passed through
 * unchanged, one byte at a time, and acts as a starter that composes with
 * nothing: the text around it is normalized as if it were a character of
 * combining class 0 without a decomposition.
 *
 * Size bounds (the generator checks the facts behind them for every code
 * point): the NFC of n bytes is at most UNICODE_NFC_MAX_EXPANSION * n bytes
 * (UAX #15's table of maximum expansion factors gives 3X for NFC in UTF-8;
 * U+0390 and U+1D160 reach it), and decomposing n bytes gives at most
 * n + n / 2 code points. */
#define UNICODE_NFC_MAX_EXPANSION 3u

/* NFC_Quick_Check of a whole text (UAX #15 section 9, "Detecting
 * Normalization Forms"). */
enum unicode_nfc_check {
    UNICODE_NFC_YES = 0,   /* the text is in NFC */
    UNICODE_NFC_MAYBE = 1, /* it may be; only normalizing tells */
    UNICODE_NFC_NO = 2,    /* it is not */
};
enum unicode_nfc_check unicode_nfc_quick_check(const char *in, size_t n);

/* The well-formed UTF-8 character at s[0..n) (n >= 1; Unicode 15.0 table
 * 3-7): its length, with its code point in *cp, or 0 if s[0] starts none
 * (a stray continuation byte, C0/C1, F5..FF, an overlong form, a surrogate,
 * above U+10FFFF, or cut short by n). */
size_t unicode_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);

/* uint32_t entries of work that unicode_nfc needs for n bytes of input:
 * 2 * (n + n / 2 + 1), or SIZE_MAX if that overflows. */
size_t unicode_nfc_work_len(size_t n);

/* Writes the NFC of in[0..n) to out (cap bytes) and returns its length.
 * cap >= UNICODE_NFC_MAX_EXPANSION * n always suffices. work (work_len
 * entries) is scratch memory; it is used, and must hold
 * unicode_nfc_work_len(n) entries, only when the text fails the quick check
 * (so NFC text needs neither work nor more than n bytes of out). Returns
 * SIZE_MAX, with out's contents unspecified, if cap or work_len is too
 * small; never writes past cap or work_len. Allocates nothing; time is
 * linear in n (a table search per character) however many combining marks
 * the text stacks. */
size_t unicode_nfc(const char *in, size_t n, char *out, size_t cap, uint32_t *work,
                   size_t work_len);

#endif
