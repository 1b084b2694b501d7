/* tools/gen_unicode.c - writes the two generated tables unicode.c searches,
 * from files of the Unicode Character Database (UCD):
 *   unicode_tables.h      the character class of every code point, from
 *                         UnicodeData.txt and PropList.txt;
 *   unicode_nfc_tables.h  what Normalization Form C needs (canonical
 *                         combining classes, NFC_Quick_Check, canonical
 *                         decompositions and the primary composites), from
 *                         UnicodeData.txt, CompositionExclusions.txt and
 *                         DerivedNormalizationProps.txt.
 *
 * Classes: every code point 0..U+10FFFF gets one class - letter (L: Lu Ll Lt
 * Lm Lo), number (N: Nd Nl No), mark (M: Mn Mc Me), white space
 * (White_Space) or other (everything else, unassigned code points included);
 * the table holds one entry per code point where the class changes.
 *
 * NFC (Unicode Standard Annex #15, "Unicode Normalization Forms"; Unicode
 * 15.0 chapter 3.11 "Normalization Forms" and 3.12 "Conjoining Jamo
 * Behavior"): the canonical decomposition mappings (UnicodeData.txt field 5
 * when it has no <tag>), the Canonical_Combining_Class (field 3), the
 * primary composites (characters with a two-character canonical mapping
 * that are not Full_Composition_Exclusion) and NFC_Quick_Check. Hangul
 * syllables are left to the algorithm of section 3.12 and are not listed.
 * The generator derives Full_Composition_Exclusion (CompositionExclusions.txt
 * + singletons + non-starter decompositions, UAX #44 table 9) and
 * NFC_Quick_Check (No: excluded; Maybe: second character of a primary
 * composite or a Hangul medial vowel or final consonant) itself, and stops
 * unless both equal DerivedNormalizationProps.txt. It also checks the facts
 * unicode.c relies on to size its buffers: a full decomposition takes at
 * most 3 times the UTF-8 bytes of its character and at most 3 code points
 * per 2 bytes, and a composite is never longer in UTF-8 than its two parts.
 *
 * What it does not do: run at build time. It is run by hand when the Unicode
 * version changes, and its output is committed, so the build needs no UCD.
 * All input files must carry the same version. Compatibility (<tag>)
 * mappings, NFD/NFKC/NFKD and case data are not read.
 *
 * Run from the repository root (Debian package unicode-data provides the files):
 *   cc -O2 -std=c11 -Wall -Wextra -o /tmp/gen_unicode tools/gen_unicode.c
 *   /tmp/gen_unicode /usr/share/unicode/UnicodeData.txt /usr/share/unicode/PropList.txt \
 *       > unicode_tables.h
 *   /tmp/gen_unicode --nfc /usr/share/unicode/UnicodeData.txt \
 *       /usr/share/unicode/CompositionExclusions.txt \
 *       /usr/share/unicode/DerivedNormalizationProps.txt > unicode_nfc_tables.h
 *
 * File formats (Unicode Standard Annex #44, "Unicode Character Database"):
 * UnicodeData.txt has one line per code point, 15 fields separated by ';':
 * field 0 the code point in hex, field 1 the name, field 2 the
 * General_Category, field 3 the Canonical_Combining_Class in decimal, field
 * 5 the decomposition mapping (hex code points separated by spaces, after a
 * "<tag>" for compatibility mappings). Large ranges are given as two lines
 * whose names end in ", First>" and ", Last>" (UAX #44 section 4.2.3); every
 * code point between them has the properties of the pair. PropList.txt and
 * DerivedNormalizationProps.txt lines are "XXXX[..YYYY] ; Property[; Value]
 * # comment"; CompositionExclusions.txt lines are "XXXX # comment". Each of
 * these three starts with "# Name-X.Y.Z.txt". A tool, so errors print and
 * exit. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CODE_POINTS 0x110000u

/* Must match enum unicode_class in unicode.h. */
enum { OTHER = 0, LETTER = 1, NUMBER = 2, MARK = 3, SPACE = 4 };
static const char *const CLASS_NAMES[] = {"other", "letter", "number", "mark", "space"};

/* NFC_Quick_Check values as unicode.c stores them. */
enum { QC_YES = 0, QC_MAYBE = 1, QC_NO = 2 };

/* Hangul syllables (Unicode 15.0 section 3.12, "Hangul Syllable
 * Decomposition"): S = SBase + (LIndex * VCount + VIndex) * TCount + TIndex. */
#define S_BASE 0xac00u
#define L_BASE 0x1100u
#define V_BASE 0x1161u
#define T_BASE 0x11a7u
#define L_COUNT 19u
#define V_COUNT 21u
#define T_COUNT 28u
#define S_COUNT (L_COUNT * V_COUNT * T_COUNT)

/* The longest full canonical decomposition unicode.c has room for. */
#define MAX_DECOMP 4u

static uint8_t cls[N_CODE_POINTS];
static uint8_t ccc[N_CODE_POINTS];
static uint8_t dm_len[N_CODE_POINTS];     /* canonical mapping length: 0, 1 or 2 */
static uint32_t dm[N_CODE_POINTS][2];     /* the canonical mapping */
static uint8_t excluded[N_CODE_POINTS];   /* listed in CompositionExclusions.txt */
static uint8_t fce_file[N_CODE_POINTS];   /* Full_Composition_Exclusion, as the file says */
static uint8_t qc_file[N_CODE_POINTS];    /* NFC_Quick_Check, as the file says */
static uint8_t qc[N_CODE_POINTS];         /* NFC_Quick_Check, as derived here */

static void die(const char *what, const char *path, unsigned long line)
{
    fprintf(stderr, "gen_unicode: %s: line %lu: %s\n", path, line, what);
    exit(1);
}

static void die_at(const char *what, uint32_t cp)
{
    fprintf(stderr, "gen_unicode: U+%04X: %s\n", cp, what);
    exit(1);
}

static int class_of_category(const char *gc)
{
    switch (gc[0]) {
    case 'L': return LETTER;
    case 'N': return NUMBER;
    case 'M': return MARK;
    default: return OTHER;
    }
}

/* Parses hex digits at *p into a code point below N_CODE_POINTS. */
static int parse_cp(const char **p, uint32_t *cp)
{
    char *end;
    unsigned long v = strtoul(*p, &end, 16);
    if (end == *p || v >= N_CODE_POINTS)
        return -1;
    *p = end;
    *cp = (uint32_t)v;
    return 0;
}

/* The n-th ';'-separated field of line (n >= 1), or NULL. */
static const char *field(const char *line, int n)
{
    for (int i = 0; i < n; i++) {
        line = strchr(line, ';');
        if (!line)
            return NULL;
        line++;
    }
    return line;
}

/* Field 5 of UnicodeData.txt at p: a canonical mapping (no "<tag>") of one
 * or two code points into dm[cp]; compatibility mappings are skipped. */
static void parse_mapping(const char *p, uint32_t cp, const char *path, unsigned long no)
{
    if (*p == '<')
        return;
    uint8_t n = 0;
    for (;;) {
        while (*p == ' ')
            p++;
        if (*p == ';')
            break;
        uint32_t to = 0;
        if (n == 2 || parse_cp(&p, &to) < 0 || to == 0)
            die("canonical mapping is not 1 or 2 code points above U+0000", path, no);
        dm[cp][n++] = to;
    }
    dm_len[cp] = n;
}

static void read_unicode_data(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open", path, 0);
    char line[1024];
    unsigned long no = 0;
    uint32_t first = 0;
    int in_range = 0;
    uint32_t last_cp = 0;
    while (fgets(line, sizeof line, f)) {
        no++;
        const char *p = line, *name = field(line, 1), *gc = field(line, 2);
        const char *cc = field(line, 3), *map = field(line, 5);
        uint32_t cp;
        char *end;
        if (parse_cp(&p, &cp) < 0 || *p != ';' || !name || !gc || !isupper((unsigned char)gc[0]) ||
            !map)
            die("not a UnicodeData.txt line", path, no);
        unsigned long combining = strtoul(cc, &end, 10);
        if (end == cc || *end != ';' || combining > 254)
            die("Canonical_Combining_Class is not a number 0..254", path, no);
        if (no > 1 && cp <= last_cp)
            die("code points out of order", path, no);
        last_cp = cp;
        size_t name_len = (size_t)(gc - 1 - name);
        int is_first = name_len > 8 && !strncmp(name + name_len - 8, ", First>", 8);
        int is_last = name_len > 7 && !strncmp(name + name_len - 7, ", Last>", 7);
        if (in_range != is_last)
            die(is_last ? "a \", Last>\" line without \", First>\""
                        : "\", First>\" not followed by \", Last>\"",
                path, no);
        parse_mapping(map, cp, path, no);
        if ((is_first || is_last) && (combining != 0 || dm_len[cp] != 0))
            die("a First/Last range with a combining class or a decomposition", path, no);
        if (is_first) {
            first = cp;
            in_range = 1;
            continue;
        }
        uint32_t from = is_last ? first : cp;
        for (uint32_t c = from; c <= cp; c++) {
            cls[c] = (uint8_t)class_of_category(gc);
            ccc[c] = (uint8_t)combining;
        }
        in_range = 0;
    }
    if (in_range)
        die("file ends inside a First/Last range", path, no);
    if (no < 30000)
        die("too few lines for UnicodeData.txt", path, no);
    fclose(f);
}

/* The version X.Y.Z from a first line "# <name>-X.Y.Z.txt"; 0 if absent. */
static int read_version(const char *line, const char *name, char version[32])
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "# %s-%%31[0-9.]", name);
    if (sscanf(line, prefix, version) != 1)
        return 0;
    size_t k = strlen(version);
    if (k > 0 && version[k - 1] == '.')
        version[k - 1] = 0; /* "15.0.0.txt" scanned as "15.0.0." */
    return version[0] != 0;
}

/* Marks White_Space code points; returns the Unicode version from the
 * "# PropList-X.Y.Z.txt" first line. */
static void read_white_space(const char *path, char version[32])
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open", path, 0);
    char line[1024];
    unsigned long no = 0, n_space = 0;
    version[0] = 0;
    while (fgets(line, sizeof line, f)) {
        no++;
        if (no == 1 && read_version(line, "PropList", version))
            continue;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        const char *p = line, *prop = field(line, 1);
        uint32_t lo, hi;
        if (parse_cp(&p, &lo) < 0 || !prop)
            die("not a PropList.txt line", path, no);
        hi = lo;
        if (p[0] == '.' && p[1] == '.') {
            p += 2;
            if (parse_cp(&p, &hi) < 0 || hi < lo)
                die("bad range", path, no);
        }
        while (*prop == ' ')
            prop++;
        if (strncmp(prop, "White_Space", 11) != 0 || isalnum((unsigned char)prop[11]) ||
            prop[11] == '_')
            continue;
        for (uint32_t c = lo; c <= hi; c++) {
            /* \s and \p{L}, \p{N} never overlap in the regexes' engines; a
             * future UCD where they do needs a new table design. */
            if (cls[c] != OTHER)
                die("a White_Space code point is also a letter, number or mark", path, no);
            cls[c] = SPACE;
            n_space++;
        }
    }
    if (n_space < 20 || !version[0])
        die("no White_Space entries or no version line", path, no);
    fclose(f);
}

/* The word at p (after spaces) equals w, ending at a space, ';', '#' or
 * the line end. */
static int word_is(const char *p, const char *w)
{
    while (*p == ' ')
        p++;
    size_t n = strlen(w);
    return !strncmp(p, w, n) && strchr(" ;#\r\n", p[n]) != NULL; /* also true at '\0' */
}

/* CompositionExclusions.txt: one code point per line. */
static void read_exclusions(const char *path, char version[32])
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open", path, 0);
    char line[1024];
    unsigned long no = 0, n = 0;
    version[0] = 0;
    while (fgets(line, sizeof line, f)) {
        no++;
        if (no == 1 && read_version(line, "CompositionExclusions", version))
            continue;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        const char *p = line;
        uint32_t cp;
        if (parse_cp(&p, &cp) < 0 || (*p != ' ' && *p != '#'))
            die("not a CompositionExclusions.txt line", path, no);
        excluded[cp] = 1;
        n++;
    }
    if (n < 50 || !version[0])
        die("too few exclusions or no version line", path, no);
    fclose(f);
}

/* DerivedNormalizationProps.txt: Full_Composition_Exclusion and NFC_QC. */
static void read_normalization_props(const char *path, char version[32])
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open", path, 0);
    char line[1024];
    unsigned long no = 0, n_fce = 0, n_qc = 0;
    version[0] = 0;
    while (fgets(line, sizeof line, f)) {
        no++;
        if (no == 1 && read_version(line, "DerivedNormalizationProps", version))
            continue;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        const char *p = line, *prop = field(line, 1), *value = field(line, 2);
        uint32_t lo, hi;
        if (parse_cp(&p, &lo) < 0 || !prop)
            die("not a DerivedNormalizationProps.txt line", path, no);
        hi = lo;
        if (p[0] == '.' && p[1] == '.') {
            p += 2;
            if (parse_cp(&p, &hi) < 0 || hi < lo)
                die("bad range", path, no);
        }
        uint8_t *dst = NULL, v = 1;
        if (word_is(prop, "Full_Composition_Exclusion")) {
            dst = fce_file;
            n_fce++;
        } else if (word_is(prop, "NFC_QC")) {
            if (!value || !(word_is(value, "N") || word_is(value, "M")))
                die("NFC_QC value is not N or M", path, no);
            dst = qc_file;
            v = word_is(value, "N") ? QC_NO : QC_MAYBE;
            n_qc++;
        }
        for (uint32_t c = lo; dst && c <= hi; c++)
            dst[c] = v;
    }
    if (n_fce < 20 || n_qc < 20 || !version[0])
        die("no Full_Composition_Exclusion or NFC_QC entries, or no version line", path, no);
    fclose(f);
}

static unsigned utf8_len(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/* The full canonical decomposition of cp (applied recursively, Hangul
 * syllables by the algorithm) into out (room for 16); returns its length. */
static unsigned full_decomposition(uint32_t cp, uint32_t *out, unsigned depth)
{
    if (depth > 8)
        die_at("canonical decomposition nests too deeply", cp);
    if (cp - S_BASE < S_COUNT) {
        uint32_t s = cp - S_BASE, t = s % T_COUNT;
        out[0] = L_BASE + s / (V_COUNT * T_COUNT);
        out[1] = V_BASE + s % (V_COUNT * T_COUNT) / T_COUNT;
        out[2] = T_BASE + t;
        return t ? 3 : 2;
    }
    if (dm_len[cp] == 0) {
        out[0] = cp;
        return 1;
    }
    unsigned n = full_decomposition(dm[cp][0], out, depth + 1);
    if (dm_len[cp] == 2)
        n += full_decomposition(dm[cp][1], out + n, depth + 1);
    if (n > 8)
        die_at("full decomposition longer than 8", cp);
    return n;
}

/* Primary composites: (first, second) -> composite, for the comparison. */
struct pair {
    uint32_t first, second, composite;
    uint32_t index; /* in the decomposition table */
};

static int compare_pair(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return x->second < y->second ? -1 : x->second > y->second;
}

static int is_surrogate(uint32_t c)
{
    return c >= 0xd800 && c <= 0xdfff;
}

/* Full_Composition_Exclusion and NFC_QC derived from the mappings, each
 * compared with the file; the buffer-size facts of the header comment. */
static void check_normalization(unsigned *max_len, uint32_t *widest)
{
    unsigned bytes_num = 1, bytes_den = 1;
    *max_len = 0;
    *widest = 0;
    for (uint32_t c = 0; c < N_CODE_POINTS; c++) {
        /* UAX #44 table 9: Composition_Exclusion + singletons + non-starter
         * decompositions (a character or the first character of its
         * mapping is not a starter) */
        int fce = excluded[c] || dm_len[c] == 1 ||
                  (dm_len[c] == 2 && (ccc[c] != 0 || ccc[dm[c][0]] != 0));
        if (fce != fce_file[c])
            die_at("derived Full_Composition_Exclusion differs from the file", c);
        qc[c] = fce ? QC_NO : QC_YES;
    }
    for (uint32_t c = 0; c < N_CODE_POINTS; c++) {
        if (dm_len[c] == 2 && qc[c] != QC_NO) {
            if (qc[dm[c][1]] == QC_NO)
                die_at("an excluded character is the second part of a primary composite", c);
            qc[dm[c][1]] = QC_MAYBE;
        }
        if (is_surrogate(c))
            continue;
        uint32_t d[16];
        unsigned n = full_decomposition(c, d, 0), bytes = 0;
        for (unsigned k = 0; k < n; k++)
            bytes += utf8_len(d[k]);
        if (n > MAX_DECOMP || bytes > 3 * utf8_len(c) || 2 * n > 3 * utf8_len(c))
            die_at("decomposition longer than unicode.c's bounds", c);
        if (n > *max_len)
            *max_len = n;
        if ((unsigned long)bytes * bytes_den > (unsigned long)bytes_num * utf8_len(c)) {
            bytes_num = bytes;
            bytes_den = utf8_len(c);
            *widest = c;
        }
    }
    for (uint32_t c = V_BASE; c < V_BASE + V_COUNT; c++)
        qc[c] = QC_MAYBE;
    for (uint32_t c = T_BASE + 1; c < T_BASE + T_COUNT; c++)
        qc[c] = QC_MAYBE;
    for (uint32_t c = 0; c < N_CODE_POINTS; c++)
        if (qc[c] != qc_file[c])
            die_at("derived NFC_Quick_Check differs from the file", c);
}

/* Sorted pairs of every primary composite, checked. Returns the count. */
static uint32_t primary_composites(struct pair *pairs, const uint32_t *decomp_index)
{
    uint32_t n = 0;
    for (uint32_t c = 0; c < N_CODE_POINTS; c++) {
        if (dm_len[c] != 2 || qc[c] == QC_NO)
            continue;
        if (ccc[c] != 0 || utf8_len(c) > utf8_len(dm[c][0]) + utf8_len(dm[c][1]))
            die_at("a primary composite that is a non-starter or longer than its parts", c);
        pairs[n++] = (struct pair){dm[c][0], dm[c][1], c, decomp_index[c]};
    }
    qsort(pairs, n, sizeof *pairs, compare_pair);
    for (uint32_t i = 1; i < n; i++)
        if (pairs[i].first == pairs[i - 1].first && pairs[i].second == pairs[i - 1].second)
            die_at("two primary composites of the same pair", pairs[i].composite);
    return n;
}

static unsigned version_code(const char *version)
{
    unsigned major, minor, update;
    if (sscanf(version, "%u.%u.%u", &major, &minor, &update) != 3 || minor > 99 || update > 99)
        die("version is not X.Y.Z", version, 0);
    return major * 10000 + minor * 100 + update;
}

static int write_classes(const char *unicode_data, const char *prop_list)
{
    char version[32];
    read_unicode_data(unicode_data);
    read_white_space(prop_list, version);

    unsigned long counts[5] = {0};
    uint32_t n_runs = 0;
    for (uint32_t c = 0; c < N_CODE_POINTS; c++) {
        counts[cls[c]]++;
        if (c == 0 || cls[c] != cls[c - 1])
            n_runs++;
    }
    printf("/* unicode_tables.h - GENERATED by tools/gen_unicode.c from the Unicode\n"
           " * Character Database %s (UnicodeData.txt, PropList.txt); do not edit.\n"
           " * Regenerate from the repository root:\n"
           " *   cc -O2 -std=c11 -Wall -Wextra -o /tmp/gen_unicode tools/gen_unicode.c\n"
           " *   /tmp/gen_unicode /usr/share/unicode/UnicodeData.txt "
           "/usr/share/unicode/PropList.txt \\\n"
           " *       > unicode_tables.h\n"
           " *\n"
           " * unicode_runs[i] = first code point of run i << 3 | its class (enum\n"
           " * unicode_class); run i lasts until the next run starts, the last one\n"
           " * until U+10FFFF. Sorted by code point; entry 0 starts at U+0000.\n"
           " * unicode_ascii[c] = the class of ASCII code point c.\n"
           " * Code points per class:",
           version);
    for (int k = 0; k < 5; k++)
        printf(" %s %lu%s", CLASS_NAMES[k], counts[k], k < 4 ? "," : ".\n */\n");
    printf("#include <stdint.h>\n\n");
    printf("#define UNICODE_VERSION \"%s\"\n", version);
    printf("#define UNICODE_VERSION_CODE %uu /* major * 10000 + minor * 100 + update */\n",
           version_code(version));
    printf("#define UNICODE_N_RUNS %uu\n", n_runs);
    printf("static const uint32_t unicode_runs[UNICODE_N_RUNS] = {\n");
    uint32_t k = 0;
    for (uint32_t c = 0; c < N_CODE_POINTS; c++) {
        if (c != 0 && cls[c] == cls[c - 1])
            continue;
        printf("%s0x%07x,", k % 8 == 0 ? "    " : " ", c << 3 | cls[c]);
        if (++k % 8 == 0 || k == n_runs)
            printf("\n");
    }
    printf("};\n");
    printf("/* The class of each ASCII code point (the same data, for speed). */\n");
    printf("static const uint8_t unicode_ascii[128] = {\n");
    for (uint32_t c = 0; c < 128; c++)
        printf("%s%u,%s", c % 16 == 0 ? "    " : " ", cls[c], c % 16 == 15 ? "\n" : "");
    printf("};\n");
    return 0;
}

/* value of the property run table at c: NFC_QC << 8 | ccc */
static uint32_t nfc_props(uint32_t c)
{
    return (uint32_t)qc[c] << 8 | ccc[c];
}

static void print_nfc_header(const char *version, uint32_t n_runs, uint32_t n_decomp,
                             uint32_t n_comp, unsigned max_len, uint32_t widest)
{
    uint32_t d[16];
    unsigned n = full_decomposition(widest, d, 0), bytes = 0;
    for (unsigned k = 0; k < n; k++)
        bytes += utf8_len(d[k]);
    size_t table_bytes = 4 * (size_t)n_runs + 8 * (size_t)n_decomp + 2 * (size_t)n_comp;
    printf("/* unicode_nfc_tables.h - GENERATED by tools/gen_unicode.c --nfc from the\n"
           " * Unicode Character Database %s (UnicodeData.txt, CompositionExclusions.txt,\n"
           " * DerivedNormalizationProps.txt); do not edit. Regenerate from the\n"
           " * repository root:\n"
           " *   cc -O2 -std=c11 -Wall -Wextra -o /tmp/gen_unicode tools/gen_unicode.c\n"
           " *   /tmp/gen_unicode --nfc /usr/share/unicode/UnicodeData.txt \\\n"
           " *       /usr/share/unicode/CompositionExclusions.txt \\\n"
           " *       /usr/share/unicode/DerivedNormalizationProps.txt > unicode_nfc_tables.h\n"
           " *\n"
           " * unicode_nfc_props[i] = first code point of run i << 10 | NFC_Quick_Check\n"
           " * (0 Yes, 1 Maybe, 2 No) << 8 | Canonical_Combining_Class; run i lasts\n"
           " * until the next run starts, the last one until U+10FFFF; entry 0 starts\n"
           " * at U+0000.\n"
           " * unicode_nfc_decomp[i] = code point << 42 | first << 21 | second: the\n"
           " * canonical decomposition mapping of the code point (second 0 for a\n"
           " * singleton), sorted by code point; Hangul syllables are not listed.\n"
           " * unicode_nfc_comp[i] = index in unicode_nfc_decomp of a primary composite,\n"
           " * sorted by (first, second).\n"
           " * Checked by the generator: derived Full_Composition_Exclusion and\n"
           " * NFC_Quick_Check equal the file's; full decompositions are at most %u\n"
           " * code points, at most 3 code points per 2 UTF-8 bytes of the character\n"
           " * and at most 3 times its UTF-8 bytes (the first to reach the largest\n"
           " * ratio: U+%04X, %u bytes from %u); no composite is longer in UTF-8 than\n"
           " * its two parts. Tables: %u runs, %u mappings, %u composites, %zu bytes.\n"
           " */\n",
           version, max_len, widest, bytes, utf8_len(widest), n_runs, n_decomp, n_comp,
           table_bytes);
}

static int write_nfc(const char *unicode_data, const char *exclusions, const char *props)
{
    char v_excl[32], v_props[32];
    read_unicode_data(unicode_data);
    read_exclusions(exclusions, v_excl);
    read_normalization_props(props, v_props);
    if (strcmp(v_excl, v_props) != 0)
        die("CompositionExclusions.txt and DerivedNormalizationProps.txt versions differ", props,
            1);
    unsigned max_len;
    uint32_t widest;
    check_normalization(&max_len, &widest);

    static uint32_t decomp_index[N_CODE_POINTS];
    static struct pair pairs[N_CODE_POINTS / 64];
    uint32_t n_runs = 0, n_decomp = 0, props_from = 0, decomp_from = 0;
    for (uint32_t c = 0; c < N_CODE_POINTS; c++) {
        if (c == 0 || nfc_props(c) != nfc_props(c - 1))
            n_runs++;
        if (!props_from && nfc_props(c) != 0)
            props_from = c;
        if (dm_len[c]) {
            decomp_from = decomp_from ? decomp_from : c;
            decomp_index[c] = n_decomp++;
        }
    }
    uint32_t n_comp = primary_composites(pairs, decomp_index);
    if (n_decomp > 0xffff)
        die("more than 65535 mappings do not fit unicode_nfc_comp's uint16_t", props, 0);
    print_nfc_header(v_props, n_runs, n_decomp, n_comp, max_len, widest);
    printf("#include <stdint.h>\n\n");
    printf("#define UNICODE_NFC_VERSION \"%s\"\n", v_props);
    printf("#define UNICODE_NFC_VERSION_CODE %uu\n", version_code(v_props));
    printf("#define UNICODE_NFC_MAX_DECOMP %uu /* code points of a full decomposition */\n",
           max_len);
    printf("#define UNICODE_NFC_PROPS_FROM 0x%xu /* below: ccc 0, NFC_QC Yes */\n", props_from);
    printf("#define UNICODE_NFC_DECOMP_FROM 0x%xu /* below: no mapping */\n", decomp_from);
    printf("#define UNICODE_NFC_N_PROPS %uu\n", n_runs);
    printf("#define UNICODE_NFC_N_DECOMP %uu\n", n_decomp);
    printf("#define UNICODE_NFC_N_COMP %uu\n", n_comp);
    printf("static const uint32_t unicode_nfc_props[UNICODE_NFC_N_PROPS] = {\n");
    uint32_t k = 0;
    for (uint32_t c = 0; c < N_CODE_POINTS; c++) {
        if (c != 0 && nfc_props(c) == nfc_props(c - 1))
            continue;
        printf("%s0x%08x,", k % 8 == 0 ? "    " : " ", c << 10 | nfc_props(c));
        if (++k % 8 == 0 || k == n_runs)
            printf("\n");
    }
    printf("};\nstatic const uint64_t unicode_nfc_decomp[UNICODE_NFC_N_DECOMP] = {\n");
    k = 0;
    for (uint32_t c = 0; c < N_CODE_POINTS; c++) {
        if (!dm_len[c])
            continue;
        uint64_t e = (uint64_t)c << 42 | (uint64_t)dm[c][0] << 21 | (dm_len[c] == 2 ? dm[c][1] : 0);
        printf("%s0x%016llxull,", k % 4 == 0 ? "    " : " ", (unsigned long long)e);
        if (++k % 4 == 0 || k == n_decomp)
            printf("\n");
    }
    printf("};\nstatic const uint16_t unicode_nfc_comp[UNICODE_NFC_N_COMP] = {\n");
    for (k = 0; k < n_comp; k++)
        printf("%s%u,%s", k % 12 == 0 ? "    " : " ", pairs[k].index,
               k % 12 == 11 || k + 1 == n_comp ? "\n" : "");
    printf("};\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3)
        return write_classes(argv[1], argv[2]);
    if (argc == 5 && !strcmp(argv[1], "--nfc"))
        return write_nfc(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: %s UnicodeData.txt PropList.txt > unicode_tables.h\n"
                    "       %s --nfc UnicodeData.txt CompositionExclusions.txt "
                    "DerivedNormalizationProps.txt > unicode_nfc_tables.h\n",
            argv[0], argv[0]);
    return 2;
}
