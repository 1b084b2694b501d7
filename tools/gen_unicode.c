/* tools/gen_unicode.c - writes unicode_tables.h, the code point class table
 * that unicode.c searches, from two files of the Unicode Character Database.
 *
 * What it does: reads UnicodeData.txt (General_Category of every assigned code
 * point) and PropList.txt (the White_Space property), gives every code point
 * 0..U+10FFFF one class - letter (L: Lu Ll Lt Lm Lo), number (N: Nd Nl No),
 * mark (M: Mn Mc Me), white space (White_Space) or other (everything else,
 * unassigned code points included) - and prints the table of runs: one entry
 * per code point where the class changes.
 * What it does not do: run at build time. It is run by hand when the Unicode
 * version changes, and its output is committed, so the build needs no UCD.
 *
 * Run from the repository root (Debian package unicode-data provides the files):
 *   cc -O2 -std=c11 -Wall -Wextra -o /tmp/gen_unicode tools/gen_unicode.c
 *   /tmp/gen_unicode /usr/share/unicode/UnicodeData.txt /usr/share/unicode/PropList.txt \
 *       > unicode_tables.h
 *
 * File formats (Unicode Standard Annex #44, "Unicode Character Database"):
 * UnicodeData.txt has one line per code point, 15 fields separated by ';':
 * field 0 the code point in hex, field 1 the name, field 2 the
 * General_Category. Large ranges are given as two lines whose names end in
 * ", First>" and ", Last>" (UAX #44 section 4.2.3); every code point between
 * them has the category of the pair. PropList.txt lines are
 * "XXXX[..YYYY] ; Property # comment". A tool, so errors print and exit. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CODE_POINTS 0x110000u

/* Must match enum unicode_class in unicode.h. */
enum { OTHER = 0, LETTER = 1, NUMBER = 2, MARK = 3, SPACE = 4 };
static const char *const CLASS_NAMES[] = {"other", "letter", "number", "mark", "space"};

static uint8_t cls[N_CODE_POINTS];

static void die(const char *what, const char *path, unsigned long line)
{
    fprintf(stderr, "gen_unicode: %s: line %lu: %s\n", path, line, what);
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
        uint32_t cp;
        if (parse_cp(&p, &cp) < 0 || *p != ';' || !name || !gc || !isupper((unsigned char)gc[0]))
            die("not a UnicodeData.txt line", path, no);
        if (no > 1 && cp <= last_cp)
            die("code points out of order", path, no);
        last_cp = cp;
        size_t name_len = (size_t)(gc - 1 - name);
        int is_first = name_len > 8 && !strncmp(name + name_len - 8, ", First>", 8);
        int is_last = name_len > 7 && !strncmp(name + name_len - 7, ", Last>", 7);
        if (in_range != is_last)
            die(is_last ? "a \", Last>\" line without \", First>\"" : "\", First>\" not followed by \", Last>\"",
                path, no);
        if (is_first) {
            first = cp;
            in_range = 1;
            continue;
        }
        uint32_t from = is_last ? first : cp;
        for (uint32_t c = from; c <= cp; c++)
            cls[c] = (uint8_t)class_of_category(gc);
        in_range = 0;
    }
    if (in_range)
        die("file ends inside a First/Last range", path, no);
    if (no < 30000)
        die("too few lines for UnicodeData.txt", path, no);
    fclose(f);
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
        if (no == 1 && sscanf(line, "# PropList-%31[0-9.]", version) == 1) {
            size_t k = strlen(version);
            if (k > 0 && version[k - 1] == '.')
                version[k - 1] = 0; /* "15.0.0.txt" scanned as "15.0.0." */
            continue;
        }
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

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s UnicodeData.txt PropList.txt > unicode_tables.h\n", argv[0]);
        return 2;
    }
    char version[32];
    read_unicode_data(argv[1]);
    read_white_space(argv[2], version);

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
