/* tests/test_bpe.c - tests of byte-level BPE: the Llama 3 tokenizer.json
 * read through vocab_read_tokenizer_json + vocab_serialize + tokenizer_init
 * against the reference vectors (tests/data/llama3/: tokenizer_llama3.tsv,
 * tokenizer_llama3_parse_special.tsv and llama.cpp's llama-bpe vectors); the
 * pre-tokenizers on hand-derived splits of tricky text; merge order, ignore_merges
 * and special-token matching on small synthetic vocabularies; the GPT-2 byte
 * alphabet; the Unicode class table against UnicodeData properties; and
 * hostile tokenizer.json files and sections; GPT-2 vectors through the GGUF
 * reader. Expected pieces in the pre-tokenizer tables were worked out by hand
 * from the regexes quoted in tokenizer.c, not produced by the code under
 * test. Not here: SentencePiece encoding (test_tokenizer.c), the GGUF reader's
 * own checks (test_gguf.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../exporter/gguf.h"
#include "../exporter/source.h"
#include "../tokenizer.h"
#include "../unicode.h"
#include "test.h"
#include "vectors.h"

#define LLAMA3_JSON "tests/data/llama3/tokenizer.json"
#define LLAMA3_TSV "tests/data/llama3/tokenizer_llama3.tsv"
#define LLAMA3_SPECIAL_TSV "tests/data/llama3/tokenizer_llama3_parse_special.tsv"
#define LLAMA_BPE_INP "tests/data/llama3/ggml-vocab-llama-bpe.gguf.inp"
#define LLAMA_BPE_OUT "tests/data/llama3/ggml-vocab-llama-bpe.gguf.out"
#define LLAMA2_MODEL "tests/data/llama2/tokenizer.model"
#define GPT2_GGUF_GZ "tests/data/gguf/ggml-vocab-gpt-2.gguf.gz" /* test_gguf.c's copy */
#define GPT2_INP "tests/data/llamacpp-vocab/ggml-vocab-gpt-2.gguf.inp"
#define GPT2_OUT "tests/data/llamacpp-vocab/ggml-vocab-gpt-2.gguf.out"

/* The GGUF reader (exporter/gguf.c) is weak so that a build of this suite
 * without it still links; the GPT-2 test then fails, saying so. */
#pragma weak gguf_read_vocab

/* Llama 3 ids (FACTS.md; the tokenizer.json added_tokens). */
#define LLAMA3_BOS 128000u
#define LLAMA3_EOT 128009u

/* ---- fixtures ---- */

/* The Llama 3 tokenizer, loaded once for all tests and freed at exit. */
static struct tok_fixture llama3;
static int llama3_state; /* 0 not tried, 1 loaded, -1 failed */

static void free_llama3(void)
{
    tok_fixture_close(&llama3);
}

static const struct tokenizer *llama3_tokenizer(void)
{
    if (llama3_state == 0) {
        struct vocab v;
        char err[HEARTH_ERR_BYTES] = "";
        llama3_state = -1;
        if (vocab_read_tokenizer_json(LLAMA3_JSON, &v, err) < 0) {
            CHECK(0, "reading %s: %s", LLAMA3_JSON, err);
            return NULL;
        }
        if (tok_fixture_init(&llama3, &v, LLAMA3_BOS, 128001u) == 0) {
            llama3_state = 1;
            atexit(free_llama3);
        }
        vocab_free(&v);
    }
    CHECK(llama3_state == 1, "the Llama 3 tokenizer did not load");
    return llama3_state == 1 ? &llama3.t : NULL;
}

/* ---- reference vectors ---- */

static void test_llama3_reference(void)
{
    const struct tokenizer *t = llama3_tokenizer();
    if (!t)
        return;
    int lines = vectors_check_tsv(t, LLAMA3_TSV, 0);
    CHECK(lines == 32, "%d lines in %s, expected 32", lines, LLAMA3_TSV);
}

static void test_llama3_parse_special(void)
{
    const struct tokenizer *t = llama3_tokenizer();
    if (!t)
        return;
    int lines = vectors_check_tsv(t, LLAMA3_SPECIAL_TSV, 1);
    CHECK(lines == 3, "%d lines in %s, expected 3", lines, LLAMA3_SPECIAL_TSV);
}

/* llama.cpp's vectors are Hugging Face encode with add_special_tokens=False:
 * no BOS, special text parsed; each must also decode back to its text. */
static void check_llamacpp_vectors(const struct tokenizer *t, const char *inp_path,
                                   const char *out_path)
{
    int cases = vectors_check_llamacpp(t, inp_path, out_path, 1, 1);
    CHECK(cases == 46, "%d vectors in %s, expected 46", cases, inp_path);
}

static void test_llamacpp_bpe_vectors(void)
{
    const struct tokenizer *t = llama3_tokenizer();
    if (t)
        check_llamacpp_vectors(t, LLAMA_BPE_INP, LLAMA_BPE_OUT);
}

/* GPT-2 (50257 tokens, 50000 merges, pre "gpt-2") through the GGUF reader. */
static void test_llamacpp_gpt2_vectors(void)
{
    CHECK(gguf_read_vocab, "the GGUF reader (exporter/gguf.c) is not linked in");
    if (!gguf_read_vocab)
        return;
    char *gguf = test_path("bpe-gpt-2.gguf"), *cmd = NULL;
    if (asprintf(&cmd, "gzip -dc '%s' > '%s'", GPT2_GGUF_GZ, gguf) < 0)
        exit(2);
    int rc = test_run(cmd, NULL, NULL);
    free(cmd);
    CHECK(rc == 0, "gzip -dc %s failed", GPT2_GGUF_GZ);
    struct vocab v;
    char err[HEARTH_ERR_BYTES] = "";
    if (rc != 0 || gguf_read_vocab(gguf, &v, err) < 0) {
        CHECK(rc != 0, "%s: %s", gguf, err);
        free(gguf);
        return;
    }
    free(gguf);
    CHECK(v.hdr.type == HEARTH_TOKENIZER_BYTE_BPE && v.hdr.n_tokens == 50257 &&
              v.hdr.n_merges == 50000 && v.hdr.pre_tokenizer == HEARTH_PRE_GPT2,
          "GPT-2 vocabulary: type %u, %u tokens, %u merges, pre %u", v.hdr.type, v.hdr.n_tokens,
          v.hdr.n_merges, v.hdr.pre_tokenizer);
    struct tok_fixture fx;
    if (tok_fixture_init(&fx, &v, v.bos_id, v.eos_id) == 0) {
        check_llamacpp_vectors(&fx.t, GPT2_INP, GPT2_OUT);
        tok_fixture_close(&fx);
    }
    vocab_free(&v);
}

/* Facts of the file itself: counts, flags, and pieces spelled in the GPT-2
 * alphabet coming out as raw bytes ("Ġ" is the space, "Ċ" the newline). */
static void test_llama3_vocab_contents(void)
{
    const struct tokenizer *t = llama3_tokenizer();
    if (!t)
        return;
    CHECK(t->hdr.type == HEARTH_TOKENIZER_BYTE_BPE && t->hdr.n_tokens == 128256 &&
              t->hdr.n_merges == 280147 && t->hdr.flags == HEARTH_TOK_IGNORE_MERGES &&
              t->hdr.pre_tokenizer == HEARTH_PRE_LLAMA3 && t->hdr.unk_id == UINT32_MAX,
          "header: type %u, %u tokens, %u merges, flags %#x, pre %u, unk %u", t->hdr.type,
          t->hdr.n_tokens, t->hdr.n_merges, t->hdr.flags, t->hdr.pre_tokenizer, t->hdr.unk_id);
    static const struct {
        uint32_t id;
        const char *piece;
        uint8_t kind;
    } want[] = {
        {0, "!", HEARTH_TOKEN_NORMAL},
        {198, "\n", HEARTH_TOKEN_NORMAL},
        {220, " ", HEARTH_TOKEN_NORMAL},
        {9906, "Hello", HEARTH_TOKEN_NORMAL},
        {1917, " world", HEARTH_TOKEN_NORMAL},
        {128000, "<|begin_of_text|>", HEARTH_TOKEN_CONTROL},
        {128006, "<|start_header_id|>", HEARTH_TOKEN_CONTROL},
        {128009, "<|eot_id|>", HEARTH_TOKEN_CONTROL},
        {128255, "<|reserved_special_token_250|>", HEARTH_TOKEN_CONTROL},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint32_t n;
        const char *p = tokenizer_piece(t, want[i].id, &n);
        CHECK(p && n == strlen(want[i].piece) && !memcmp(p, want[i].piece, n) &&
                  t->kinds[want[i].id] == want[i].kind,
              "piece %u is \"%.*s\" kind %u, want \"%s\" kind %u", want[i].id, (int)n, p ? p : "",
              t->kinds[want[i].id], want[i].piece, want[i].kind);
    }
    /* decode: CONTROL pieces print nothing, a piece prints its raw bytes */
    char out[64];
    CHECK(tokenizer_decode(t, -1, LLAMA3_EOT, out, sizeof out) == 0, "<|eot_id|> decodes to text");
    CHECK(tokenizer_decode(t, LLAMA3_BOS, 1917, out, sizeof out) == 6 && !memcmp(out, " world", 6),
          "decode of \" world\" after BOS");
    /* BOS is added once, first */
    int32_t ids[16];
    char err[HEARTH_ERR_BYTES] = "";
    int n = tokenizer_encode(t, "Hello world", 11, 1, ids, 16, err);
    CHECK(n == 3 && ids[0] == (int32_t)LLAMA3_BOS && ids[1] == 9906 && ids[2] == 1917,
          "Hello world with BOS: %d ids %s", n, err);
    n = tokenizer_encode(t, "Hello world", 11, 0, ids, 1, err);
    CHECK(n == -1 && strstr(err, "max_ids"), "max_ids too small: %d %s", n, err);
}

/* Ill-formed UTF-8 is encoded as U+FFFD per bad byte (so it decodes to
 * U+FFFD, never to the raw byte). */
static void test_llama3_ill_formed_text(void)
{
    const struct tokenizer *t = llama3_tokenizer();
    if (!t)
        return;
    /* E4 B8 then 'c': E4 starts no complete character, B8 starts none */
    static const char bad[] = "a\xff" "b\xe4\xb8" "c",
                      good[] = "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c";
    int32_t a[64], b[64];
    char err[HEARTH_ERR_BYTES] = "";
    int na = vectors_encode(t, 0, bad, sizeof bad - 1, a, err);
    int nb = vectors_encode(t, 0, good, sizeof good - 1, b, err);
    CHECK(na > 0 && na == nb && !memcmp(a, b, (size_t)na * sizeof *a),
          "ill-formed text: %d ids vs %d for the U+FFFD spelling %s", na, nb, err);
}

/* A long text: every byte is covered, and decoding gives it back. */
static void test_llama3_long_text(void)
{
    const struct tokenizer *t = llama3_tokenizer();
    if (!t)
        return;
    static const char *const words[] = {"The ", "quick ", "brown ", "fox\n", "caf\xc3\xa9 ",
                                        "1234567 ", "\xe4\xb8\xad\xe6\x96\x87", "  \t", "don't ",
                                        "\xf0\x9f\x98\x80", "!!! ", "\r\n\r\n", "<|eot_id|>"};
    size_t cap = 1 << 18, n = 0;
    char *text = malloc(cap);
    uint64_t seed = 7;
    while (n + 16 < cap) {
        const char *w = words[test_rand_u64(&seed) % (sizeof words / sizeof words[0])];
        memcpy(text + n, w, strlen(w));
        n += strlen(w);
    }
    int32_t *ids = malloc(tokenizer_max_ids(n) * sizeof *ids);
    char err[HEARTH_ERR_BYTES] = "";
    int got = vectors_encode(t, 0, text, n, ids, err);
    CHECK(got > 0 && (size_t)got < n, "long text: %d ids for %zu bytes %s", got, n, err);
    int specials = 0;
    for (int i = 0; i < got; i++)
        specials += t->kinds[ids[i]] == HEARTH_TOKEN_CONTROL;
    CHECK(specials == 0, "plain encode produced %d special ids", specials);
    size_t dec_n;
    char *dec = vectors_decode(t, ids, got, 0, &dec_n);
    CHECK(dec_n == n && !memcmp(dec, text, n), "long text does not decode back");
    free(dec);
    free(ids);
    free(text);
}

/* ---- pre-tokenizers ---- */

struct split_case {
    uint32_t pre;
    const char *text;
    const char *pieces; /* expected pieces joined by '|' */
};

static const struct split_case SPLITS[] = {
    /* Llama 3: (?i) contractions, letters with one leading non-letter,
     * digits in threes, punctuation with trailing newlines, white space */
    {HEARTH_PRE_LLAMA3, "Don'T", "Don|'T"},
    {HEARTH_PRE_LLAMA3, "I'M HERE'S we'Ll", "I|'M| HERE|'S| we|'Ll"},
    {HEARTH_PRE_LLAMA3, "THEY'RE 'VE'D", "THEY|'RE| '|VE|'D"},
    {HEARTH_PRE_LLAMA3, "a'\xc5\xbf", "a|'\xc5\xbf"}, /* U+017F folds to s */
    {HEARTH_PRE_LLAMA3, "y'all", "y|'all"},
    {HEARTH_PRE_LLAMA3, "12345678", "123|456|78"},
    {HEARTH_PRE_LLAMA3, "abc123def", "abc|123|def"},
    {HEARTH_PRE_LLAMA3, "\xd9\xa1\xd9\xa2\xd9\xa3\xd9\xa4", "\xd9\xa1\xd9\xa2\xd9\xa3|\xd9\xa4"},
    {HEARTH_PRE_LLAMA3, "  hello", " | hello"},
    {HEARTH_PRE_LLAMA3, "hello  ", "hello|  "},
    {HEARTH_PRE_LLAMA3, "a\r\n\r\nb", "a|\r\n\r\n|b"},
    {HEARTH_PRE_LLAMA3, "a \r\n  b", "a| \r\n| | b"},
    {HEARTH_PRE_LLAMA3, "x \n \n  y", "x| \n \n| | y"},
    {HEARTH_PRE_LLAMA3, "Hello, world!!\n\nBye", "Hello|,| world|!!\n\n|Bye"},
    {HEARTH_PRE_LLAMA3, "\t\tx", "\t|\tx"},
    {HEARTH_PRE_LLAMA3, "(ok) ...", "(ok|)| ..."},
    {HEARTH_PRE_LLAMA3, "x\xc2\xa0y", "x|\xc2\xa0y"},                 /* NBSP + letter */
    {HEARTH_PRE_LLAMA3, "?\xe3\x80\x80x", "?|\xe3\x80\x80x"},         /* ideographic space */
    {HEARTH_PRE_LLAMA3, "e\xcc\x81x", "e|\xcc\x81x"},                 /* combining acute */
    {HEARTH_PRE_LLAMA3, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e abc",
     "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e| abc"},
    {HEARTH_PRE_LLAMA3, "\xce\x91\xce\xb2 \xd0\x96\xd1\x8f",
     "\xce\x91\xce\xb2| \xd0\x96\xd1\x8f"},
    {HEARTH_PRE_LLAMA3, "\xff\xfe", "\xff\xfe"},                      /* bytes of no character */
    {HEARTH_PRE_LLAMA3, "", ""},
    /* GPT-2: case-sensitive contractions, one optional space */
    {HEARTH_PRE_GPT2, "Don'T don't", "Don|'|T| don|'t"},
    {HEARTH_PRE_GPT2, "I'm 12345 x", "I|'m| 12345| x"},
    {HEARTH_PRE_GPT2, "a  b", "a| | b"},
    {HEARTH_PRE_GPT2, "a\n\nb", "a|\n|\n|b"},
    {HEARTH_PRE_GPT2, "!!! ?x", "!!!| ?|x"},
    {HEARTH_PRE_GPT2, "hi   ", "hi|   "},
    {HEARTH_PRE_GPT2, "\tx", "\t|x"},
    /* Qwen2: Llama 3 with single digits */
    {HEARTH_PRE_QWEN2, "12345", "1|2|3|4|5"},
    {HEARTH_PRE_QWEN2, "x2024y Z'S", "x|2|0|2|4|y| Z|'S"},
    /* SmolLM: every number character alone, GPT-2 on the stretches between */
    {HEARTH_PRE_SMOLLM, "Hey 123 friend!", "Hey| |1|2|3| friend|!"},
    {HEARTH_PRE_SMOLLM, "a1 b", "a|1| b"},
    {HEARTH_PRE_SMOLLM, "x \xc2\xbd", "x| |\xc2\xbd"},
    /* none: one piece */
    {HEARTH_PRE_NONE, "a b  c", "a b  c"},
};

static void test_pre_tokenizers(void)
{
    for (size_t c = 0; c < sizeof SPLITS / sizeof SPLITS[0]; c++) {
        const struct split_case *sc = &SPLITS[c];
        size_t n = strlen(sc->text), ends[64], k = 0;
        long got = tokenizer_pre_split(sc->pre, sc->text, n, ends);
        char joined[256] = "";
        for (long i = 0; got > 0 && i < got && k + 2 < sizeof joined; i++) {
            size_t start = i ? ends[i - 1] : 0, len = ends[i] - start;
            if (k + len + 2 >= sizeof joined)
                break;
            if (i)
                joined[k++] = '|';
            memcpy(joined + k, sc->text + start, len);
            k += len;
            joined[k] = 0;
        }
        CHECK(got >= 0 && !strcmp(joined, sc->pieces), "pre %u \"%s\": got \"%s\", want \"%s\"",
              sc->pre, sc->text, joined, sc->pieces);
    }
    size_t ends[4];
    CHECK(tokenizer_pre_split(99, "x", 1, ends) == -1, "unknown pre-tokenizer accepted");
}

/* Pieces always cover the text, in order, on random bytes and random text. */
static void test_pre_tokenizer_cover(void)
{
    static const char *const atoms[] = {"a", "Z", "7", " ", "  ", "\n", "\r", "\t", "'s", "'T",
                                        "!", "\xc3\xa9", "\xc2\xa0", "\xe3\x80\x80", "\xcc\x81",
                                        "\xd9\xa3", "\xf0\x9f\x98\x80", "\xff", "\xe4\xb8"};
    uint64_t seed = 42;
    char text[512];
    size_t ends[512];
    for (int round = 0; round < 400; round++) {
        size_t n = 0;
        while (n + 8 < sizeof text && test_rand_u64(&seed) % 64 != 0) {
            const char *a = atoms[test_rand_u64(&seed) % (sizeof atoms / sizeof atoms[0])];
            memcpy(text + n, a, strlen(a));
            n += strlen(a);
        }
        for (uint32_t pre = HEARTH_PRE_NONE; pre <= HEARTH_PRE_SMOLLM; pre++) {
            long got = tokenizer_pre_split(pre, text, n, ends);
            int ok = got >= 0 && (n == 0 ? got == 0 : got > 0 && ends[got - 1] == n);
            for (long i = 0; ok && i < got; i++)
                ok = ends[i] > (i ? ends[i - 1] : 0);
            CHECK(ok, "pre %u round %d: pieces do not cover %zu bytes", pre, round, n);
        }
    }
}

/* ---- synthetic byte-level vocabularies ---- */

/* 256 single-byte pieces (ids 0..255) plus extra pieces and merges. */
struct extra_piece {
    const char *piece;
    uint8_t kind;
};

static void synth_vocab(struct vocab *v, const struct extra_piece *extra, uint32_t n_extra,
                        const uint32_t (*merges)[2], uint32_t n_merges, uint32_t flags,
                        uint32_t pre)
{
    uint32_t n = 256 + n_extra;
    memset(v, 0, sizeof *v);
    v->hdr.type = HEARTH_TOKENIZER_BYTE_BPE;
    v->hdr.n_tokens = n;
    v->hdr.flags = flags;
    v->hdr.pre_tokenizer = pre;
    v->hdr.unk_id = UINT32_MAX;
    v->pieces = calloc(n, sizeof *v->pieces);
    v->piece_bytes = calloc(n, sizeof *v->piece_bytes);
    v->scores = calloc(n, sizeof *v->scores);
    v->kinds = calloc(n, 1);
    for (uint32_t i = 0; i < n; i++) {
        const char *p = i < 256 ? NULL : extra[i - 256].piece;
        size_t len = p ? strlen(p) : 1;
        v->pieces[i] = malloc(len + 1);
        if (p)
            memcpy(v->pieces[i], p, len + 1);
        else
            v->pieces[i][0] = (char)i;
        v->piece_bytes[i] = (uint32_t)len;
        v->kinds[i] = i < 256 ? HEARTH_TOKEN_NORMAL : extra[i - 256].kind;
        if (len > v->hdr.max_piece_bytes)
            v->hdr.max_piece_bytes = (uint32_t)len;
    }
    v->hdr.n_merges = n_merges;
    v->merges = malloc((n_merges + 1) * sizeof *v->merges);
    if (n_merges)
        memcpy(v->merges, merges, n_merges * sizeof *v->merges);
    v->bos_id = v->eos_id = UINT32_MAX;
}

static void check_ids(const struct tokenizer *t, int special, const char *text, const int32_t *want,
                      int n_want, const char *what)
{
    int32_t ids[256];
    char err[HEARTH_ERR_BYTES] = "", got_s[1024], want_s[1024];
    int got = vectors_encode(t, special, text, strlen(text), ids, err);
    vectors_format_ids(got_s, sizeof got_s, ids, got);
    vectors_format_ids(want_s, sizeof want_s, want, n_want);
    CHECK(got == n_want && !memcmp(ids, want, (size_t)n_want * sizeof *ids),
          "%s: \"%s\" gave [%s], want [%s] %s", what, text, got_s, want_s, err);
}

#define A 'a'
#define B 'b'
#define C 'c'
#define SP ' '

/* Lowest rank first, leftmost first on equal ranks, stale pairs ignored. */
static void test_merge_order(void)
{
    static const struct extra_piece extra[] = {
        {"bc", HEARTH_TOKEN_NORMAL},   /* 256 */
        {"ab", HEARTH_TOKEN_NORMAL},   /* 257 */
        {"aa", HEARTH_TOKEN_NORMAL},   /* 258 */
        {"aaaa", HEARTH_TOKEN_NORMAL}, /* 259 */
        {"abc", HEARTH_TOKEN_NORMAL},  /* 260: no merge builds it */
        {" a", HEARTH_TOKEN_NORMAL},   /* 261 */
    };
    static const uint32_t merges[][2] = {{B, C}, {A, B}, {A, A}, {258, 258}, {SP, A}};
    struct vocab v;
    struct tok_fixture fx;
    synth_vocab(&v, extra, 6, merges, 5, 0, HEARTH_PRE_GPT2);
    if (tok_fixture_init(&fx, &v, UINT32_MAX, UINT32_MAX) == 0) {
        check_ids(&fx.t, 0, "abc", (const int32_t[]){A, 256}, 2, "bc (rank 0) before ab (rank 1)");
        check_ids(&fx.t, 0, "aaa", (const int32_t[]){258, A}, 2, "leftmost aa first");
        check_ids(&fx.t, 0, "aaaa", (const int32_t[]){259}, 1, "aa aa -> aaaa");
        check_ids(&fx.t, 0, "aaaaa", (const int32_t[]){259, A}, 2, "aaaaa");
        check_ids(&fx.t, 0, "abc abc", (const int32_t[]){A, 256, 261, 256}, 4,
                  "the GPT-2 split keeps ' a' and 'bc' apart from 'abc'");
        check_ids(&fx.t, 0, "x\xc3\xa9", (const int32_t[]){'x', 0xc3, 0xa9}, 3, "bytes");
        tok_fixture_close(&fx);
    }
    vocab_free(&v);
    /* ignore_merges: a piece that is a whole vocabulary entry is one token */
    synth_vocab(&v, extra, 6, merges, 5, HEARTH_TOK_IGNORE_MERGES, HEARTH_PRE_GPT2);
    if (tok_fixture_init(&fx, &v, UINT32_MAX, UINT32_MAX) == 0) {
        check_ids(&fx.t, 0, "abc", (const int32_t[]){260}, 1, "ignore_merges: abc whole");
        check_ids(&fx.t, 0, "abca", (const int32_t[]){A, 256, A}, 3, "ignore_merges: abca merged");
        tok_fixture_close(&fx);
    }
    vocab_free(&v);
}

/* Special and user-defined pieces: CONTROL only when asked, USER_DEFINED
 * always, longest match, case-sensitive, pre-tokenizer stretches end at them. */
static void test_special_matching(void)
{
    static const struct extra_piece extra[] = {
        {"<|a|>", HEARTH_TOKEN_CONTROL},        /* 256 */
        {"<|a|><|b|>", HEARTH_TOKEN_CONTROL},   /* 257: longer, wins */
        {"@@", HEARTH_TOKEN_USER_DEFINED},      /* 258 */
        {" x", HEARTH_TOKEN_NORMAL},            /* 259 */
    };
    static const uint32_t merges[][2] = {{SP, 'x'}};
    struct vocab v;
    struct tok_fixture fx;
    synth_vocab(&v, extra, 4, merges, 1, 0, HEARTH_PRE_GPT2);
    if (tok_fixture_init(&fx, &v, UINT32_MAX, UINT32_MAX) == 0) {
        check_ids(&fx.t, 1, "<|a|>", (const int32_t[]){256}, 1, "special");
        check_ids(&fx.t, 1, "<|a|><|b|>x", (const int32_t[]){257, 'x'}, 2, "longest special");
        check_ids(&fx.t, 1, "<|a|><|a|>", (const int32_t[]){256, 256}, 2, "two specials");
        check_ids(&fx.t, 1, "<|A|>", (const int32_t[]){'<', '|', 'A', '|', '>'}, 5,
                  "case-sensitive");
        check_ids(&fx.t, 0, "<|a|>", (const int32_t[]){'<', '|', 'a', '|', '>'}, 5,
                  "plain encode leaves special text alone");
        check_ids(&fx.t, 0, "q@@ x", (const int32_t[]){'q', 258, 259}, 3,
                  "user-defined pieces match in plain text");
        /* " " before a special is a stretch of its own: \s+ to its end */
        check_ids(&fx.t, 1, " <|a|> x", (const int32_t[]){' ', 256, 259}, 3, "stretches");
        int32_t ids[8];
        char out[16];
        CHECK(tokenizer_decode(&fx.t, -1, 256, out, sizeof out) == 0 &&
                  tokenizer_decode(&fx.t, -1, 258, out, sizeof out) == 2 && !memcmp(out, "@@", 2),
              "decode: CONTROL prints nothing, USER_DEFINED its text");
        char err[HEARTH_ERR_BYTES] = "";
        CHECK(tokenizer_encode_special(&fx.t, "<|a|>", 5, 1, ids, 8, err) == -1 &&
                  strstr(err, "bos"), "BOS without bos_id: %s", err);
        tok_fixture_close(&fx);
    }
    vocab_free(&v);
}

/* A byte missing from the vocabulary is a clear encode error. */
static void test_missing_byte_piece(void)
{
    static const struct extra_piece extra[] = {{"q", HEARTH_TOKEN_CONTROL}};
    struct vocab v;
    struct tok_fixture fx;
    synth_vocab(&v, extra, 1, NULL, 0, 0, HEARTH_PRE_LLAMA3);
    v.kinds['q'] = HEARTH_TOKEN_USER_DEFINED; /* no model piece for 'q' is left */
    free(v.pieces['q']);
    v.pieces['q'] = malloc(3);
    memcpy(v.pieces['q'], "qq", 3);
    v.piece_bytes['q'] = 2;
    if (tok_fixture_init(&fx, &v, UINT32_MAX, UINT32_MAX) == 0) {
        int32_t ids[16];
        char err[HEARTH_ERR_BYTES] = "";
        CHECK(vectors_encode(&fx.t, 0, "aqa", 3, ids, err) == -1 && strstr(err, "0x71"),
              "missing byte: %s", err);
        tok_fixture_close(&fx);
    }
    vocab_free(&v);
}

/* SentencePiece with special parsing: each stretch between CONTROL pieces
 * is encoded as a whole text (dummy prefix included), as llama.cpp does. */
static void test_spm_special(void)
{
    struct vocab v;
    char err[HEARTH_ERR_BYTES] = "";
    struct tok_fixture fx;
    if (vocab_read_spm_model(LLAMA2_MODEL, &v, err) < 0) {
        CHECK(0, "%s: %s", LLAMA2_MODEL, err);
        return;
    }
    if (tok_fixture_init(&fx, &v, v.bos_id, v.eos_id) == 0) {
        /* Llama 2: <s> 1, </s> 2, "▁Hello" 15043 */
        check_ids(&fx.t, 1, "<s>Hello</s>", (const int32_t[]){1, 15043, 2}, 3, "SPM special");
        int32_t plain[64];
        int n = vectors_encode(&fx.t, 0, "<s>", 3, plain, err);
        CHECK(n > 1, "plain SPM encode of <s> gave %d ids", n);
        tok_fixture_close(&fx);
    }
    vocab_free(&v);
}

/* ---- the GPT-2 byte alphabet ---- */

static void test_gpt2_alphabet(void)
{
    /* bytes_to_unicode: printable bytes are themselves, the others count up
     * from U+0100 in byte order: 0x00 -> U+0100, ' ' -> U+0120 'Ġ',
     * '\n' -> U+010A 'Ċ', 0x7F -> U+0121, 0xA0 -> U+0142, 0xAD -> U+0143 */
    static const struct {
        uint8_t b;
        const char *utf8;
    } known[] = {{0x00, "\xc4\x80"}, {' ', "\xc4\xa0"}, {'\n', "\xc4\x8a"}, {0x7f, "\xc4\xa1"},
                 {0xa0, "\xc5\x82"}, {0xad, "\xc5\x83"}, {'A', "A"}, {0xff, "\xc3\xbf"},
                 {0xa1, "\xc2\xa1"}, {'!', "!"}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        char c[3] = {0};
        size_t n = tokenizer_gpt2_char(known[i].b, c);
        CHECK(n == strlen(known[i].utf8) && !memcmp(c, known[i].utf8, n), "byte 0x%02x", known[i].b);
    }
    /* all 256 round-trip, through one string */
    char all[512], back[512];
    size_t k = 0, bad = 0;
    for (int b = 0; b < 256; b++)
        k += tokenizer_gpt2_char((uint8_t)b, all + k);
    long n = tokenizer_gpt2_bytes(all, k, back, &bad);
    int ok = n == 256;
    for (int b = 0; ok && b < 256; b++)
        ok = (uint8_t)back[b] == b;
    CHECK(ok, "the 256 alphabet characters do not decode to bytes 0..255 (%ld)", n);
    /* outside the alphabet: U+0144, a space (byte 0x20 is spelled U+0120),
     * U+00AD, a cut-short character */
    static const char *const not_alphabet[] = {"ab\xc5\x84", "a b", "\xc2\xad", "x\xc4"};
    for (size_t i = 0; i < 4; i++) {
        bad = 99;
        CHECK(tokenizer_gpt2_bytes(not_alphabet[i], strlen(not_alphabet[i]), back, &bad) == -1 &&
                  bad == (i == 0 ? 2u : i == 1 ? 1u : i == 2 ? 0u : 1u),
              "\"%s\" accepted or wrong offset %zu", not_alphabet[i], bad);
    }
}

/* ---- the Unicode table ---- */

static void test_unicode_classes(void)
{
    static const struct {
        uint32_t cp;
        enum unicode_class cls;
    } known[] = {
        {'A', UNICODE_LETTER}, {'z', UNICODE_LETTER}, {0xaa, UNICODE_LETTER} /* Lo */,
        {0xb5, UNICODE_LETTER}, {0x1c5, UNICODE_LETTER} /* Lt */, {0x2b0, UNICODE_LETTER} /* Lm */,
        {0x5d0, UNICODE_LETTER}, {0x4e00, UNICODE_LETTER} /* CJK range First */,
        {0x9fff, UNICODE_LETTER} /* its Last (15.0) */, {0xac00, UNICODE_LETTER},
        {0xd7a3, UNICODE_LETTER}, {0xd7a4, UNICODE_OTHER} /* unassigned after Hangul */,
        {0x20000, UNICODE_LETTER}, {0x2a6df, UNICODE_LETTER}, {0x2a6e0, UNICODE_OTHER},
        {'0', UNICODE_NUMBER}, {'9', UNICODE_NUMBER}, {0xb2, UNICODE_NUMBER} /* No */,
        {0xbd, UNICODE_NUMBER}, {0x660, UNICODE_NUMBER} /* Nd */, {0x2160, UNICODE_NUMBER} /* Nl */,
        {0x3007, UNICODE_NUMBER}, {0x2460, UNICODE_NUMBER} /* circled 1 */,
        {0x301, UNICODE_MARK} /* Mn */, {0x903, UNICODE_MARK} /* Mc */, {0x20dd, UNICODE_MARK} /* Me */,
        {' ', UNICODE_SPACE}, {'\t', UNICODE_SPACE}, {'\n', UNICODE_SPACE}, {0x0b, UNICODE_SPACE},
        {0x0c, UNICODE_SPACE}, {'\r', UNICODE_SPACE}, {0x85, UNICODE_SPACE}, {0xa0, UNICODE_SPACE},
        {0x1680, UNICODE_SPACE}, {0x2000, UNICODE_SPACE}, {0x200a, UNICODE_SPACE},
        {0x2028, UNICODE_SPACE}, {0x2029, UNICODE_SPACE}, {0x202f, UNICODE_SPACE},
        {0x205f, UNICODE_SPACE}, {0x3000, UNICODE_SPACE},
        {0x200b, UNICODE_OTHER} /* zero width space is Cf, not White_Space */,
        {0x180e, UNICODE_OTHER} /* no longer Zs since Unicode 6.3 */, {0xfeff, UNICODE_OTHER},
        {0x1c, UNICODE_OTHER} /* a separator control, not White_Space */, {'!', UNICODE_OTHER},
        {'_', UNICODE_OTHER}, {0x1f600, UNICODE_OTHER}, {0xe000, UNICODE_OTHER},
        {0xd800, UNICODE_OTHER}, {0x10ffff, UNICODE_OTHER}, {0x110000, UNICODE_OTHER},
        {0xffffffff, UNICODE_OTHER},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        CHECK(unicode_class_of(known[i].cp) == known[i].cls, "U+%04X: class %d, want %d",
              known[i].cp, unicode_class_of(known[i].cp), known[i].cls);
    /* Totals from DerivedGeneralCategory-15.0.0.txt (L = Lu 1831 + Ll 2233 +
     * Lt 31 + Lm 397 + Lo 131612; N = Nd 680 + Nl 236 + No 915; M = Mn 1985
     * + Mc 452 + Me 13) and PropList-15.0.0.txt (25 White_Space). */
    unsigned long count[5] = {0};
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++)
        count[unicode_class_of(cp)]++;
    CHECK(count[UNICODE_LETTER] == 136104 && count[UNICODE_NUMBER] == 1831 &&
              count[UNICODE_MARK] == 2450 && count[UNICODE_SPACE] == 25,
          "class totals: L %lu N %lu M %lu space %lu", count[UNICODE_LETTER],
          count[UNICODE_NUMBER], count[UNICODE_MARK], count[UNICODE_SPACE]);
    CHECK(!strcmp(unicode_version(), "15.0.0"), "table version %s", unicode_version());
}

/* ---- hostile tokenizer.json ---- */

/* A small, valid byte-level tokenizer.json: the 256 alphabet characters
 * (id = byte), "ab" (256), "Ġa" (257), added tokens, and the given parts. */
struct tj_parts {
    const char *normalizer, *pre, *decoder, *merges, *added, *extra_vocab, *model_extra;
};

static const char LLAMA3_PRE[] =
    "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
    "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
    "\"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}";

static char *write_tj(const char *name, const struct tj_parts *p)
{
    size_t cap = 1 << 16, k = 0;
    char *text = malloc(cap);
    k += (size_t)snprintf(text + k, cap - k, "{\"added_tokens\": %s, \"normalizer\": %s, "
                          "\"pre_tokenizer\": %s, \"decoder\": %s, \"model\": {\"type\": \"BPE\", "
                          "%s \"vocab\": {", p->added, p->normalizer, p->pre, p->decoder,
                          p->model_extra);
    for (int b = 0; b < 256; b++) {
        char c[3] = {0};
        tokenizer_gpt2_char((uint8_t)b, c);
        k += (size_t)snprintf(text + k, cap - k, "%s\"%s%s\": %d", b ? ", " : "",
                              c[0] == '"' || c[0] == '\\' ? "\\" : "", c, b);
    }
    k += (size_t)snprintf(text + k, cap - k, ", \"ab\": 256, \"\xc4\xa0" "a\": 257%s}, "
                          "\"merges\": %s}}", p->extra_vocab, p->merges);
    char *path = test_path(name);
    test_write_file(path, text, k);
    free(text);
    return path;
}

static const struct tj_parts GOOD_TJ = {
    "null", LLAMA3_PRE, "{\"type\": \"ByteLevel\"}", "[\"a b\", [\"\xc4\xa0\", \"a\"]]",
    "[{\"id\": 258, \"content\": \"<|x|>\", \"special\": true}, "
    "{\"id\": 259, \"content\": \"plain\", \"special\": false}]",
    "", "\"ignore_merges\": true,"};

static void test_tokenizer_json_small(void)
{
    char *path = write_tj("good.tokenizer.json", &GOOD_TJ);
    struct vocab v;
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(vocab_read_tokenizer_json(path, &v, err) == 0, "small byte-level tokenizer.json: %s", err);
    if (!err[0]) {
        CHECK(v.hdr.type == HEARTH_TOKENIZER_BYTE_BPE && v.hdr.n_tokens == 260 &&
                  v.hdr.n_merges == 2 && v.hdr.flags == HEARTH_TOK_IGNORE_MERGES &&
                  v.hdr.pre_tokenizer == HEARTH_PRE_LLAMA3,
              "header: type %u, %u tokens, %u merges, flags %#x, pre %u", v.hdr.type,
              v.hdr.n_tokens, v.hdr.n_merges, v.hdr.flags, v.hdr.pre_tokenizer);
        CHECK(v.merges[0][0] == 'a' && v.merges[0][1] == 'b' && v.merges[1][0] == ' ' &&
                  v.merges[1][1] == 'a', "merges as id pairs");
        CHECK(v.piece_bytes[32] == 1 && v.pieces[32][0] == ' ' && v.piece_bytes[257] == 2 &&
                  !memcmp(v.pieces[257], " a", 2), "pieces as raw bytes");
        CHECK(v.kinds[258] == HEARTH_TOKEN_CONTROL && v.kinds[259] == HEARTH_TOKEN_USER_DEFINED &&
                  v.piece_bytes[259] == 5 && !memcmp(v.pieces[259], "plain", 5),
              "added tokens keep their text");
        struct tok_fixture fx;
        if (tok_fixture_init(&fx, &v, UINT32_MAX, UINT32_MAX) == 0) {
            check_ids(&fx.t, 1, "ab a<|x|>plain", (const int32_t[]){256, 257, 258, 259}, 4,
                      "small tokenizer");
            tok_fixture_close(&fx);
        }
        vocab_free(&v);
    }
    free(path);
    /* the other supported pre-tokenizer forms */
    static const struct {
        const char *pre;
        uint32_t want;
    } forms[] = {
        {"{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}", HEARTH_PRE_GPT2},
        {"{\"type\": \"ByteLevel\", \"add_prefix_space\": false}", HEARTH_PRE_GPT2},
        {"{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}", HEARTH_PRE_NONE},
        {"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": "
         "true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}]}",
         HEARTH_PRE_SMOLLM},
        {"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
         "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
         "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
         "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
         "\"add_prefix_space\": false, \"use_regex\": false}]}", HEARTH_PRE_QWEN2},
        {"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
         "\"'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)|"
         "\\\\s+\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
         "false, \"use_regex\": false}]}", HEARTH_PRE_GPT2},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct tj_parts p = GOOD_TJ;
        p.pre = forms[i].pre;
        path = write_tj("form.tokenizer.json", &p);
        err[0] = 0;
        int rc = vocab_read_tokenizer_json(path, &v, err);
        CHECK(rc == 0 && v.hdr.pre_tokenizer == forms[i].want, "form %zu: rc %d pre %u %s", i, rc,
              rc == 0 ? v.hdr.pre_tokenizer : 0, err);
        if (rc == 0)
            vocab_free(&v);
        free(path);
    }
}

static void test_tokenizer_json_hostile(void)
{
    static const struct {
        struct tj_parts parts; /* NULL fields: GOOD_TJ's */
        const char *needle1, *needle2;
    } bad[] = {
        {{.merges = "[\"a zz\"]"}, "merges[0]", "\"zz\" is not in model.vocab"},
        {{.merges = "[\"a b\", \"b a\"]"}, "merges[1]", "merged piece"},
        {{.merges = "[\"a b\", [\"\xc4\xa0\", \"a\"], [\"a\", \"b\"]]"}, "merges[0]", "same pair"},
        {{.merges = "[\"a b c\"]"}, "merges[0]", "one space"},
        {{.merges = "[17]"}, "merges[0]", NULL},
        {{.merges = "{}"}, "merges", NULL},
        {{.extra_vocab = ", \"\xe2\x82\xac\": 260"}, "GPT-2 byte alphabet", "id 260"},
        {{.extra_vocab = ", \"a b\": 260"}, "GPT-2 byte alphabet", NULL},
        {{.extra_vocab = ", \"zz\": 4294967295"}, "\"zz\"", "below"},
        {{.extra_vocab = ", \"zz\": 261"}, "ids go up to 261", NULL},
        {{.extra_vocab = ", \"zz\": 16777215"}, "ids go up to 16777215", "some id has no piece"},
        {{.extra_vocab = ", \"\xff\xfe\": 260"}, "UTF-8", NULL},
        {{.extra_vocab = ", \"zz\": 97"}, "id 97", NULL},
        {{.added = "[{\"id\": 99999999999, \"content\": \"x\"}]"}, "added_tokens[0].id", NULL},
        {{.added = "[{\"id\": 258, \"content\": \"<|x|>\", \"lstrip\": true}]"}, "lstrip", NULL},
        {{.added = "[{\"id\": 258, \"content\": \"ab\", \"special\": true}, "
                   "{\"id\": 259, \"content\": \"y\"}]"}, "same piece", NULL},
        {{.added = "[{\"id\": 97, \"content\": \"b\", \"special\": true}]"}, "id 97", NULL},
        {{.normalizer = "{\"type\": \"NFKC\"}"}, "normalizer NFKC", "not supported"},
        {{.normalizer = "{\"type\": \"Lowercase\"}"}, "Lowercase", NULL},
        {{.decoder = "{\"type\": \"Metaspace\"}"}, "decoder Metaspace", NULL},
        {{.pre = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}"}, "add_prefix_space",
         NULL},
        {{.pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                 "{\"Regex\": \"\\\\s+\"}}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
                 "false, \"use_regex\": false}]}"}, "regex \"\\s+\"", "not supported yet"},
        {{.pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                 "{\"String\": \" \"}}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
                 "false, \"use_regex\": false}]}"}, "Regex", NULL},
        {{.pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                 "{\"Regex\": \" \"}, \"behavior\": \"Removed\"}, {\"type\": \"ByteLevel\", "
                 "\"add_prefix_space\": false, \"use_regex\": false}]}"}, "Isolated", NULL},
        {{.pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                 "{\"Regex\": \"'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| "
                 "?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)|\\\\s+\"}}, "
                 "{\"type\": \"ByteLevel\", \"add_prefix_space\": false}]}"},
         "two regexes", NULL},
        {{.pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", "
                 "\"individual_digits\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
                 "false}]}"}, "Digits", NULL},
        {{.pre = "{\"type\": \"Sequence\", \"pretokenizers\": []}"}, "pre-tokenizer Sequence",
         NULL},
        {{.pre = "{\"type\": \"Whitespace\"}", .decoder = "{\"type\": \"ByteLevel\"}"},
         "pre-tokenizer Whitespace", NULL},
        {{.pre = "null"}, "needs a ByteLevel pre-tokenizer", NULL},
        {{.model_extra = "\"byte_fallback\": true,"}, "byte_fallback", NULL},
        {{.model_extra = "\"dropout\": 0.5,"}, "dropout", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct tj_parts p = GOOD_TJ;
        const struct tj_parts *b = &bad[i].parts;
        p.normalizer = b->normalizer ? b->normalizer : p.normalizer;
        p.pre = b->pre ? b->pre : p.pre;
        p.decoder = b->decoder ? b->decoder : p.decoder;
        p.merges = b->merges ? b->merges : p.merges;
        p.added = b->added ? b->added : p.added;
        p.extra_vocab = b->extra_vocab ? b->extra_vocab : p.extra_vocab;
        p.model_extra = b->model_extra ? b->model_extra : p.model_extra;
        char *path = write_tj("bad.tokenizer.json", &p);
        struct vocab v;
        char err[HEARTH_ERR_BYTES] = "";
        int rc = vocab_read_tokenizer_json(path, &v, err);
        CHECK(rc == -1, "bad tokenizer.json %zu accepted", i);
        if (rc == 0)
            vocab_free(&v);
        CHECK(strstr(err, path) && strstr(err, bad[i].needle1) &&
                  (!bad[i].needle2 || strstr(err, bad[i].needle2)),
              "bad tokenizer.json %zu: \"%s\" should name the file, \"%s\" and \"%s\"", i, err,
              bad[i].needle1, bad[i].needle2 ? bad[i].needle2 : "");
        CHECK(!v.pieces && !v.merges && v.hdr.n_tokens == 0, "bad %zu: vocab not released", i);
        free(path);
    }
    /* a byte missing from the vocabulary (the file is otherwise valid) */
    struct tj_parts p = GOOD_TJ;
    char *path = write_tj("nobyte.tokenizer.json", &p);
    /* id 0 spells bytes 01 01 ("āā") instead of byte 00 ("Ā") */
    static const char key0[] = "\"\xc4\x80\": 0", new0[] = "\"\xc4\x81\xc4\x81\": 0";
    size_t n;
    char *text = test_read_file(path, &n), *at = strstr(text, key0);
    size_t head = (size_t)(at - text), tail = n - head - (sizeof key0 - 1);
    char *edited = malloc(n + sizeof new0);
    memcpy(edited, text, head);
    memcpy(edited + head, new0, sizeof new0 - 1);
    memcpy(edited + head + sizeof new0 - 1, at + sizeof key0 - 1, tail);
    test_write_file(path, edited, head + sizeof new0 - 1 + tail);
    free(edited);
    struct vocab v;
    char err[HEARTH_ERR_BYTES] = "";
    int rc = vocab_read_tokenizer_json(path, &v, err);
    CHECK(rc == -1 && strstr(err, "no piece for byte 0x00"), "missing byte 0x00: %d %s", rc, err);
    if (rc == 0)
        vocab_free(&v);
    free(text);
    free(path);
}

/* The real file cut short anywhere is a JSON error naming the file. */
static void test_llama3_json_truncated(void)
{
    size_t n;
    char *text = test_read_file(LLAMA3_JSON, &n);
    CHECK(text && n > 9000000, "cannot read %s", LLAMA3_JSON);
    if (!text)
        return;
    char *path = test_path("cut.tokenizer.json");
    static const double cuts[] = {0.0, 0.00001, 0.2, 0.6, 0.99999};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        size_t len = (size_t)(cuts[i] * (double)n);
        test_write_file(path, text, len);
        struct vocab v;
        char err[HEARTH_ERR_BYTES] = "";
        int rc = vocab_read_tokenizer_json(path, &v, err);
        CHECK(rc == -1 && strstr(err, path), "cut at %zu bytes: rc %d \"%s\"", len, rc, err);
        if (rc == 0)
            vocab_free(&v);
    }
    free(path);
    free(text);
}

/* ---- hostile byte-level sections ---- */

static int init_fails(const uint8_t *sec, uint64_t n, const char *needle)
{
    struct tokenizer t;
    char err[HEARTH_ERR_BYTES] = "";
    int rc = tokenizer_init(&t, sec, n, UINT32_MAX, UINT32_MAX, err);
    if (rc == 0)
        tokenizer_free(&t);
    return rc == -1 && (!needle || strstr(err, needle));
}

static void test_section_hostile(void)
{
    static const struct extra_piece extra[] = {{"ab", HEARTH_TOKEN_NORMAL}};
    static const uint32_t merges[][2] = {{A, B}};
    struct vocab v;
    synth_vocab(&v, extra, 1, merges, 1, 0, HEARTH_PRE_LLAMA3);
    char err[HEARTH_ERR_BYTES] = "";
    uint8_t *sec;
    uint64_t n;
    if (vocab_serialize(&v, &sec, &n, err) < 0) {
        CHECK(0, "serialize: %s", err);
        vocab_free(&v);
        return;
    }
    uint32_t nt = v.hdr.n_tokens;
    uint64_t merges_at = ((32 + 5 * (uint64_t)nt + 3) & ~3ull) + 4 * ((uint64_t)nt + 1);
    uint8_t *s = malloc(n);
#define MUTATE(code, needle, what)                                  \
    do {                                                            \
        memcpy(s, sec, n);                                          \
        code;                                                       \
        CHECK(init_fails(s, n, needle), "accepted: %s", what);      \
    } while (0)
    memcpy(s, sec, n);
    CHECK(!init_fails(s, n, NULL), "the valid section was refused");
    uint32_t x;
    MUTATE((x = 5, memcpy(s + 16, &x, 4)), "pre_tokenizer", "pre_tokenizer 5");
    MUTATE((x = HEARTH_TOK_ADD_DUMMY_PREFIX, memcpy(s + 12, &x, 4)), "SentencePiece",
           "dummy prefix on byte-level");
    MUTATE((x = B, memcpy(s + merges_at, &x, 4)), "merged piece", "merge b+b (no piece bb)");
    MUTATE((x = nt, memcpy(s + merges_at + 4, &x, 4)), "merge", "merge id out of range");
#undef MUTATE
    free(s);
    free(sec);
    vocab_free(&v);
    /* the same pair twice */
    static const uint32_t twice[][2] = {{A, B}, {A, B}};
    synth_vocab(&v, extra, 1, twice, 2, 0, HEARTH_PRE_LLAMA3);
    if (vocab_serialize(&v, &sec, &n, err) == 0) {
        CHECK(init_fails(sec, n, "same pair"), "duplicate merge accepted");
        free(sec);
    }
    vocab_free(&v);
}

const struct test_case bpe_tests[] = {
    {"bpe_llama3_reference", test_llama3_reference},
    {"bpe_llama3_parse_special", test_llama3_parse_special},
    {"bpe_llamacpp_bpe_vectors", test_llamacpp_bpe_vectors},
    {"bpe_llamacpp_gpt2_vectors", test_llamacpp_gpt2_vectors},
    {"bpe_llama3_vocab_contents", test_llama3_vocab_contents},
    {"bpe_llama3_ill_formed_text", test_llama3_ill_formed_text},
    {"bpe_llama3_long_text", test_llama3_long_text},
    {"bpe_pre_tokenizers", test_pre_tokenizers},
    {"bpe_pre_tokenizer_cover", test_pre_tokenizer_cover},
    {"bpe_merge_order", test_merge_order},
    {"bpe_special_matching", test_special_matching},
    {"bpe_missing_byte_piece", test_missing_byte_piece},
    {"bpe_spm_special", test_spm_special},
    {"bpe_gpt2_alphabet", test_gpt2_alphabet},
    {"bpe_unicode_classes", test_unicode_classes},
    {"bpe_tokenizer_json_small", test_tokenizer_json_small},
    {"bpe_tokenizer_json_hostile", test_tokenizer_json_hostile},
    {"bpe_llama3_json_truncated", test_llama3_json_truncated},
    {"bpe_section_hostile", test_section_hostile},
    {NULL, NULL},
};
