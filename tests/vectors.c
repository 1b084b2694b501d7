/* tests/vectors.c - reading the reference-vector files the tokenizer tests
 * use and checking a tokenizer against them (interface in vectors.h). The
 * expected ids and texts come from the files (produced by SentencePiece,
 * Hugging Face tokenizers and llama.cpp, tests/data/README.md), never from
 * the code under test. Not here: the tests themselves (test_tokenizer.c,
 * test_bpe.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "vectors.h"

/* ---- the fixture ---- */

int tok_fixture_init(struct tok_fixture *fx, const struct vocab *v, uint32_t bos_id,
                     uint32_t eos_id)
{
    char err[HEARTH_ERR_BYTES] = "";
    uint8_t *section;
    memset(fx, 0, sizeof *fx);
    if (vocab_serialize(v, &section, &fx->n_bytes, err) < 0) {
        CHECK(0, "vocab_serialize: %s", err);
        return -1;
    }
    fx->buf = malloc(fx->n_bytes + 4);
    memcpy(fx->buf + 4, section, fx->n_bytes);
    free(section);
    if (tokenizer_init(&fx->t, fx->buf + 4, fx->n_bytes, bos_id, eos_id, err) < 0) {
        CHECK(0, "tokenizer_init: %s", err);
        free(fx->buf);
        fx->buf = NULL;
        return -1;
    }
    fx->ok = 1;
    return 0;
}

void tok_fixture_close(struct tok_fixture *fx)
{
    if (fx->ok)
        tokenizer_free(&fx->t);
    free(fx->buf);
    memset(fx, 0, sizeof *fx);
}

/* ---- parsing the files ---- */

static void put_utf8(char *out, size_t *k, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*k)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*k)++] = (char)(0xc0 | cp >> 6);
        out[(*k)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out[(*k)++] = (char)(0xe0 | cp >> 12);
        out[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*k)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*k)++] = (char)(0xf0 | cp >> 18);
        out[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*k)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The 4 hex digits s[0..4) into *v; -1 if one is not a hex digit. */
static int hex4(const char *s, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(s[i]);
        if (d < 0)
            return -1;
        *v = *v * 16 + (uint32_t)d;
    }
    return 0;
}

long vectors_unquote(const char *s, size_t n, char *out)
{
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        return -1;
    size_t k = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        if (s[i] != '\\') {
            out[k++] = s[i];
            continue;
        }
        if (++i + 1 >= n)
            return -1;
        /* JSON's one-character escapes (RFC 8259 section 7) */
        const char *from = "\"\\/nrtbf", *to = "\"\\/\n\r\t\b\f", *e = strchr(from, s[i]);
        if (e && *e) {
            out[k++] = to[e - from];
            continue;
        }
        uint32_t cp, lo;
        if (s[i] != 'u' || i + 5 > n - 1 || hex4(s + i + 1, &cp) < 0)
            return -1;
        i += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && i + 7 <= n - 1 && s[i + 1] == '\\' &&
            s[i + 2] == 'u' && hex4(s + i + 3, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
        } else if (cp >= 0xd800 && cp < 0xe000) {
            return -1; /* a lone surrogate stands for no character */
        }
        put_utf8(out, &k, cp);
    }
    return (long)k;
}

long vectors_parse_ids(const char *s, size_t n, int32_t *ids, size_t max)
{
    size_t count = 0, i = 0;
    while (i < n) {
        if (s[i] == ' ') {
            i++;
            continue;
        }
        int64_t v = 0;
        size_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (s[i++] - '0');
            if (v > INT32_MAX)
                return -1;
        }
        if (i == start || count >= max)
            return -1;
        ids[count++] = (int32_t)v;
    }
    return (long)count;
}

void vectors_format_ids(char *out, size_t cap, const int32_t *ids, long n)
{
    size_t k = 0;
    out[0] = 0;
    for (long i = 0; i < n && k + 16 < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, " %d", ids[i]);
}

/* ---- encoding and decoding ---- */

int vectors_encode(const struct tokenizer *t, int special, const char *text, size_t n,
                   int32_t *ids, char *err)
{
    size_t max = tokenizer_max_ids(n);
    return special ? tokenizer_encode_special(t, text, n, 0, ids, max, err)
                   : tokenizer_encode(t, text, n, 0, ids, max, err);
}

char *vectors_decode(const struct tokenizer *t, const int32_t *ids, long n, int show_special,
                     size_t *len)
{
    size_t piece_cap = t->hdr.max_piece_bytes + 8;
    size_t cap = 3 * ((size_t)n * piece_cap + 8), k = 0;
    char *out = malloc(cap + 1), *piece = malloc(piece_cap);
    struct utf8_stream s = {{0}, 0};
    int32_t prev = (int32_t)t->bos_id;
    for (long i = 0; i < n; i++) {
        uint32_t m32 = 0;
        size_t m;
        if (show_special && ids[i] >= 0 && t->kinds[ids[i]] == HEARTH_TOKEN_CONTROL) {
            const char *p = tokenizer_piece(t, (uint32_t)ids[i], &m32);
            m = m32 < piece_cap ? m32 : piece_cap;
            memcpy(piece, p, m);
        } else {
            m = tokenizer_decode(t, prev, ids[i], piece, piece_cap);
        }
        k += utf8_stream_push(&s, piece, m, out + k);
        prev = ids[i];
    }
    k += utf8_stream_flush(&s, out + k);
    out[k] = 0;
    *len = k;
    free(piece);
    return out;
}

/* Encodes text[0..n) and CHECKs the ids against want[0..want_n); where
 * names the vector in the message. */
static void check_encoding(const struct tokenizer *t, int special, const char *text, size_t n,
                           const int32_t *want, long want_n, const char *where)
{
    int32_t *ids = malloc(tokenizer_max_ids(n) * sizeof *ids);
    char err[HEARTH_ERR_BYTES] = "", got_s[8192], want_s[8192];
    int got = vectors_encode(t, special, text, n, ids, err);
    vectors_format_ids(got_s, sizeof got_s, ids, got);
    vectors_format_ids(want_s, sizeof want_s, want, want_n);
    CHECK(want_n >= 0 && got == want_n &&
              !memcmp(ids, want, (size_t)(want_n > 0 ? want_n : 0) * sizeof *ids),
          "%s \"%.*s\": got [%s], want [%s] %s", where, (int)n, text, got_s, want_s, err);
    free(ids);
}

/* CHECKs that want[0..want_n) decodes to text[0..n). */
static void check_decoding(const struct tokenizer *t, int show_special, const int32_t *want,
                           long want_n, const char *text, size_t n, const char *where)
{
    size_t dec_n;
    char *dec = vectors_decode(t, want, want_n, show_special, &dec_n);
    CHECK(dec_n == n && !memcmp(dec, text, n), "%s: decode gave \"%s\", want \"%.*s\"", where,
          dec, (int)n, text);
    free(dec);
}

/* ---- the two file formats ---- */

int vectors_check_tsv(const struct tokenizer *t, const char *path, int special)
{
    size_t n;
    char *file = test_read_file(path, &n);
    CHECK(file, "cannot read %s", path);
    int lines = 0;
    for (char *line = file; file && line < file + n;) {
        char *end = memchr(line, '\n', (size_t)(file + n - line));
        if (!end)
            end = file + n;
        *end = 0;
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        if (line[0] != '#' && line[0] != 0) {
            CHECK(tab1 && tab2, "%s line %d: not 3 fields", path, lines + 1);
            if (!tab1 || !tab2)
                break;
            size_t in_len = (size_t)(tab1 - line), want_len = strlen(tab2 + 1);
            char *text = malloc(in_len + 1), *want_text = malloc(want_len + 1);
            int32_t want[4096];
            long text_n = vectors_unquote(line, in_len, text);
            long want_text_n = vectors_unquote(tab2 + 1, want_len, want_text);
            long want_n = vectors_parse_ids(tab1 + 1, (size_t)(tab2 - tab1 - 1), want, 4096);
            CHECK(text_n >= 0 && want_text_n >= 0 && want_n >= 0, "%s: cannot parse %s", path,
                  line);
            if (text_n >= 0 && want_text_n >= 0 && want_n >= 0) {
                char where[256];
                snprintf(where, sizeof where, "%s line %d", path, lines + 1);
                check_encoding(t, special, text, (size_t)text_n, want, want_n, where);
                check_decoding(t, special, want, want_n, want_text, (size_t)want_text_n, where);
            }
            free(text);
            free(want_text);
            lines++;
        }
        line = end + 1;
    }
    free(file);
    return lines;
}

int vectors_check_llamacpp(const struct tokenizer *t, const char *inp_path, const char *out_path,
                           int special, int check_decode)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t n_inp, n_out;
    char *inp = test_read_file(inp_path, &n_inp), *out = test_read_file(out_path, &n_out);
    CHECK(inp && out, "cannot read %s / %s", inp_path, out_path);
    int cases = 0;
    for (char *p = inp, *q = out; inp && out && p < inp + n_inp; cases++) {
        char *s_end = strstr(p, sep), *q_end = strchr(q, '\n');
        CHECK(s_end && q_end, "%s vector %d: no separator or expected line", inp_path, cases);
        if (!s_end || !q_end)
            break;
        size_t len = (size_t)(s_end - p);
        int32_t want[1024];
        long want_n = vectors_parse_ids(q, (size_t)(q_end - q), want, 1024);
        char where[256];
        snprintf(where, sizeof where, "%s vector %d", out_path, cases);
        check_encoding(t, special, p, len, want, want_n, where);
        if (check_decode && want_n >= 0)
            check_decoding(t, special, want, want_n, p, len, where);
        p = s_end + strlen(sep);
        q = q_end + 1;
    }
    free(inp);
    free(out);
    return cases;
}
