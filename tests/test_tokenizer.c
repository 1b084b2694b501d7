/* tests/test_tokenizer.c - tests of the vocabulary readers (exporter/vocab.c)
 * and the tokenizer (tokenizer.c): SentencePiece reference vectors for
 * Llama 2 (tests/data/ref/tokenizer_llama2.tsv and llama.cpp's llama-spm
 * vectors), agreement of tokenizer.model and tokenizer.bin, UTF-8 streaming,
 * hostile sections and files, and a long input. Byte-level BPE encoding is
 * tested in test_bpe.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../exporter/protobuf.h"
#include "../exporter/source.h"
#include "../tokenizer.h"
#include "test.h"
#include "vectors.h"

#define LLAMA2_MODEL "tests/data/llama2/tokenizer.model"
#define LLAMA2_BIN "tests/data/llama2/tokenizer.bin"
#define TOK512_MODEL "tests/data/tok512.model"
#define TOK512_BIN "models/tok512.bin"
#define REF_TSV "tests/data/ref/tokenizer_llama2.tsv"
#define SPM_INP "tests/data/llamacpp-vocab/ggml-vocab-llama-spm.gguf.inp"
#define SPM_OUT "tests/data/llamacpp-vocab/ggml-vocab-llama-spm.gguf.out"

/* ---- fixtures ---- */

static int read_vocab(const char *path, struct vocab *v)
{
    char err[HEARTH_ERR_BYTES] = "";
    size_t n = strlen(path);
    int rc = n > 6 && strcmp(path + n - 6, ".model") == 0 ? vocab_read_spm_model(path, v, err)
                                                          : vocab_read_llama2c(path, 0, v, err);
    CHECK(rc == 0, "reading %s: %s", path, err);
    return rc;
}

static int fixture_open(struct tok_fixture *fx, const char *path)
{
    struct vocab v;
    memset(fx, 0, sizeof *fx);
    if (read_vocab(path, &v) < 0)
        return -1;
    int rc = tok_fixture_init(fx, &v, v.bos_id, v.eos_id);
    vocab_free(&v);
    return rc;
}

/* ---- reference vectors ---- */

/* Checks every data line of the Llama 2 reference TSV with one tokenizer. */
static void check_ref_tsv(const char *vocab_path)
{
    struct tok_fixture fx;
    if (fixture_open(&fx, vocab_path) < 0)
        return;
    int lines = vectors_check_tsv(&fx.t, REF_TSV, 0);
    CHECK(lines >= 32, "only %d reference lines in %s", lines, REF_TSV);
    tok_fixture_close(&fx);
}

static void test_llama2_reference_model(void)
{
    check_ref_tsv(LLAMA2_MODEL);
}

static void test_llama2_reference_bin(void)
{
    check_ref_tsv(LLAMA2_BIN);
}

/* llama.cpp's llama-spm vectors, plain text (no special-token parsing).
 * Not decoded back: SentencePiece drops the dummy-prefix space, so the
 * decode of a text's ids need not be that text. */
static void check_llamacpp_vectors(const char *vocab_path)
{
    struct tok_fixture fx;
    if (fixture_open(&fx, vocab_path) < 0)
        return;
    int cases = vectors_check_llamacpp(&fx.t, SPM_INP, SPM_OUT, 0, 0);
    CHECK(cases == 46, "%d llama-spm vectors, expected 46", cases);
    tok_fixture_close(&fx);
}

static void test_llamacpp_spm_model(void)
{
    check_llamacpp_vectors(LLAMA2_MODEL);
}

static void test_llamacpp_spm_bin(void)
{
    check_llamacpp_vectors(LLAMA2_BIN);
}

/* ---- the two vocabulary formats agree ---- */

static void check_same_section(const char *model_path, const char *bin_path)
{
    struct vocab a, b;
    if (read_vocab(model_path, &a) < 0)
        return;
    if (read_vocab(bin_path, &b) < 0) {
        vocab_free(&a);
        return;
    }
    char err[HEARTH_ERR_BYTES] = "";
    uint8_t *sa = NULL, *sb = NULL;
    uint64_t na = 0, nb = 0;
    CHECK(vocab_serialize(&a, &sa, &na, err) == 0, "serialize %s: %s", model_path, err);
    CHECK(vocab_serialize(&b, &sb, &nb, err) == 0, "serialize %s: %s", bin_path, err);
    CHECK(sa && sb && na == nb && memcmp(sa, sb, na) == 0,
          "%s and %s serialize differently (%llu vs %llu bytes)", model_path, bin_path,
          (unsigned long long)na, (unsigned long long)nb);
    for (uint32_t i = 0; i < a.hdr.n_tokens && i < b.hdr.n_tokens; i++) {
        int same = a.piece_bytes[i] == b.piece_bytes[i] &&
                   memcmp(a.pieces[i], b.pieces[i], a.piece_bytes[i]) == 0 &&
                   a.kinds[i] == b.kinds[i] && memcmp(&a.scores[i], &b.scores[i], 4) == 0;
        CHECK(same, "token %u differs: \"%.*s\" kind %u vs \"%.*s\" kind %u", i,
              (int)a.piece_bytes[i], a.pieces[i], a.kinds[i], (int)b.piece_bytes[i],
              b.pieces[i], b.kinds[i]);
    }
    CHECK(a.bos_id == b.bos_id && a.eos_id == b.eos_id, "bos/eos %u/%u vs %u/%u", a.bos_id,
          a.eos_id, b.bos_id, b.eos_id);
    CHECK(a.hdr.type == HEARTH_TOKENIZER_SPM && a.hdr.unk_id == 0 && a.bos_id == 1 &&
              a.eos_id == 2 &&
              a.hdr.flags == (HEARTH_TOK_ADD_DUMMY_PREFIX | HEARTH_TOK_BYTE_FALLBACK),
          "%s: type %u unk %u bos %u eos %u flags 0x%x", model_path, a.hdr.type, a.hdr.unk_id,
          a.bos_id, a.eos_id, a.hdr.flags);
    free(sa);
    free(sb);
    vocab_free(&a);
    vocab_free(&b);
}

static void test_model_and_bin_agree(void)
{
    check_same_section(LLAMA2_MODEL, LLAMA2_BIN);
    check_same_section(TOK512_MODEL, TOK512_BIN);
}

/* Known pieces of the Llama 2 vocabulary, as the reference ids show them. */
static void test_llama2_vocab_contents(void)
{
    struct vocab v;
    if (read_vocab(LLAMA2_MODEL, &v) < 0)
        return;
    CHECK(v.hdr.n_tokens == 32000, "n_tokens %u", v.hdr.n_tokens);
    CHECK(v.piece_bytes[29871] == 3 && memcmp(v.pieces[29871], "\xe2\x96\x81", 3) == 0,
          "piece 29871 is not U+2581");
    CHECK(v.piece_bytes[3] == 6 && memcmp(v.pieces[3], "<0x00>", 6) == 0 &&
              v.kinds[3] == HEARTH_TOKEN_BYTE && v.kinds[258] == HEARTH_TOKEN_BYTE,
          "byte pieces are not at 3..258");
    CHECK(v.kinds[0] == HEARTH_TOKEN_UNKNOWN && v.kinds[1] == HEARTH_TOKEN_CONTROL &&
              v.kinds[2] == HEARTH_TOKEN_CONTROL,
          "kinds of 0..2: %u %u %u", v.kinds[0], v.kinds[1], v.kinds[2]);
    uint32_t longest = 0;
    for (uint32_t i = 0; i < v.hdr.n_tokens; i++)
        if (v.piece_bytes[i] > longest)
            longest = v.piece_bytes[i];
    CHECK(v.hdr.max_piece_bytes == longest, "max_piece_bytes %u, longest %u",
          v.hdr.max_piece_bytes, longest);
    vocab_free(&v);
}

/* ---- encode and decode rules ---- */

static void test_encode_edges(void)
{
    struct tok_fixture fx;
    if (fixture_open(&fx, LLAMA2_MODEL) < 0)
        return;
    char err[HEARTH_ERR_BYTES] = "";
    int32_t ids[64], ids2[64];
    CHECK(tokenizer_encode(&fx.t, "", 0, 0, ids, 4, err) == 0, "empty text gave ids: %s", err);
    int n = tokenizer_encode(&fx.t, NULL, 0, 1, ids, 4, err);
    CHECK(n == 1 && ids[0] == 1, "empty text with BOS: n=%d id=%d", n, ids[0]);
    n = tokenizer_encode(&fx.t, "Hello world", 11, 1, ids, 64, err);
    CHECK(n == 3 && ids[0] == 1 && ids[1] == 15043 && ids[2] == 3186, "BOS + Hello world: n=%d",
          n);
    err[0] = 0;
    CHECK(tokenizer_encode(&fx.t, "Hello world", 11, 1, ids, 2, err) == -1 && err[0],
          "max_ids too small was not refused");
    /* a bad byte is U+FFFD, one per byte (sentencepiece normalizer.cc) */
    n = vectors_encode(&fx.t, 0, "a\xff" "b", 3, ids, err);
    int n2 = vectors_encode(&fx.t, 0, "a\xef\xbf\xbd" "b", 5, ids2, err);
    CHECK(n > 0 && n == n2 && memcmp(ids, ids2, (size_t)n * sizeof *ids) == 0,
          "invalid byte does not encode as U+FFFD (%d vs %d ids)", n, n2);
    n = vectors_encode(&fx.t, 0, "\xe4\xb8", 2, ids, err); /* truncated 3-byte character */
    n2 = vectors_encode(&fx.t, 0, "\xef\xbf\xbd\xef\xbf\xbd", 6, ids2, err);
    CHECK(n > 0 && n == n2 && memcmp(ids, ids2, (size_t)n * sizeof *ids) == 0,
          "truncated character is not two U+FFFD");
    n = vectors_encode(&fx.t, 0, "\xc0\xaf", 2, ids, err); /* overlong '/' */
    CHECK(n == n2 && memcmp(ids, ids2, (size_t)n * sizeof *ids) == 0,
          "overlong sequence is not two U+FFFD");
    /* bad bytes may merge ("\xef\xbf\xbd" pieces exist), but stay in bounds */
    char bad[16];
    memset(bad, 0xff, sizeof bad);
    err[0] = 0;
    n = tokenizer_encode(&fx.t, bad, sizeof bad, 1, ids, tokenizer_max_ids(sizeof bad), err);
    CHECK(n > 1 && (size_t)n <= tokenizer_max_ids(sizeof bad), "16 bad bytes gave %d ids: %s",
          n, err);
    /* a literal U+2581 is a space */
    n = vectors_encode(&fx.t, 0, "a b", 3, ids, err);
    n2 = vectors_encode(&fx.t, 0, "a\xe2\x96\x81" "b", 5, ids2, err);
    CHECK(n > 0 && n == n2 && memcmp(ids, ids2, (size_t)n * sizeof *ids) == 0,
          "literal U+2581 differs from a space");
    /* NUL is a character like any other: byte fallback */
    n = vectors_encode(&fx.t, 0, "\0", 1, ids, err);
    CHECK(n == 2 && ids[0] == 29871 && ids[1] == 3, "NUL gave %d ids", n);
    tok_fixture_close(&fx);
}

static void test_decode_rules(void)
{
    struct tok_fixture fx;
    if (fixture_open(&fx, LLAMA2_MODEL) < 0)
        return;
    char out[64];
    const struct tokenizer *t = &fx.t;
    CHECK(tokenizer_decode(t, 0, 1, out, sizeof out) == 0, "BOS decodes to text");
    CHECK(tokenizer_decode(t, 5, 2, out, sizeof out) == 0, "EOS decodes to text");
    size_t n = tokenizer_decode(t, 1, 15043, out, sizeof out);
    CHECK(n == 5 && memcmp(out, "Hello", 5) == 0, "after BOS, 15043 gave %.*s", (int)n, out);
    n = tokenizer_decode(t, 15043, 3186, out, sizeof out);
    CHECK(n == 6 && memcmp(out, " world", 6) == 0, "3186 gave %.*s", (int)n, out);
    n = tokenizer_decode(t, 1, 3186, out, sizeof out);
    CHECK(n == 5 && memcmp(out, "world", 5) == 0, "after BOS, 3186 gave %.*s", (int)n, out);
    n = tokenizer_decode(t, 100, 3 + 'A', out, sizeof out);
    CHECK(n == 1 && out[0] == 'A', "<0x41> gave %zu bytes", n);
    n = tokenizer_decode(t, 1, 3 + ' ', out, sizeof out); /* a byte space is not stripped */
    CHECK(n == 1 && out[0] == ' ', "<0x20> after BOS gave %zu bytes", n);
    n = tokenizer_decode(t, 1, 0, out, sizeof out);
    CHECK(n == 5 && memcmp(out, " \xe2\x81\x87 ", 5) == 0, "<unk> gave %.*s", (int)n, out);
    CHECK(tokenizer_decode(t, 1, -1, out, sizeof out) == 0 &&
              tokenizer_decode(t, 1, 32000, out, sizeof out) == 0,
          "out-of-range ids decode to text");
    n = tokenizer_decode(t, 15043, 3186, out, 3);
    CHECK(n == 3, "decode ignored cap (%zu)", n);
    uint32_t len;
    const char *p = tokenizer_piece(t, 29871, &len);
    CHECK(p && len == 3 && memcmp(p, "\xe2\x96\x81", 3) == 0, "tokenizer_piece(29871)");
    CHECK(tokenizer_piece(t, 32000, &len) == NULL && len == 0, "tokenizer_piece out of range");
    tok_fixture_close(&fx);
}

/* 200 KB of mixed text: must finish (the merge loop is O(n log n)) and
 * decode back to the input. */
static void test_long_text(void)
{
    struct tok_fixture fx;
    if (fixture_open(&fx, LLAMA2_MODEL) < 0)
        return;
    static const char *words[] = {"the ", "quick ", "brown ", "fox\n", "caf\xc3\xa9 ",
                                  "\xe4\xb8\xad\xe6\x96\x87 ", "12345 ", "\xf0\x9f\x98\x80", "  ",
                                  "\t", "internationalization "};
    size_t cap = 200 * 1024, n = 0;
    char *text = malloc(cap + 64);
    uint64_t rng = 42;
    while (n < cap) {
        const char *w = words[test_rand_u64(&rng) % (sizeof words / sizeof words[0])];
        memcpy(text + n, w, strlen(w));
        n += strlen(w);
    }
    int32_t *ids = malloc(tokenizer_max_ids(n) * sizeof *ids);
    char err[HEARTH_ERR_BYTES] = "";
    int count = vectors_encode(&fx.t, 0, text, n, ids, err);
    CHECK(count > (int)(n / 8) && count < (int)n, "200 KB gave %d ids: %s", count, err);
    if (count > 0) {
        size_t dec_n;
        char *dec = vectors_decode(&fx.t, ids, count, 0, &dec_n);
        CHECK(dec_n == n && memcmp(dec, text, n) == 0, "200 KB does not round-trip (%zu vs %zu)",
              dec_n, n);
        free(dec);
    }
    /* the same character 200K times: one long chain of equal-score merges */
    memset(text, 'x', cap);
    count = vectors_encode(&fx.t, 0, text, cap, ids, err);
    CHECK(count > 0 && count < (int)cap / 3, "200K x gave %d ids: %s", count, err);
    memset(text, ' ', cap);
    count = vectors_encode(&fx.t, 0, text, cap, ids, err);
    CHECK(count > 0 && count < (int)cap / 3, "200K spaces gave %d ids: %s", count, err);
    free(ids);
    free(text);
    tok_fixture_close(&fx);
}

/* ---- synthetic vocabularies: rules the Llama 2 vocabulary does not exercise ---- */

struct piece_spec {
    const char *piece;
    float score;
    uint8_t kind;
};

static void vocab_from_specs(struct vocab *v, const struct piece_spec *specs, uint32_t n,
                             uint32_t flags)
{
    memset(v, 0, sizeof *v);
    v->hdr.type = HEARTH_TOKENIZER_SPM;
    v->hdr.n_tokens = n;
    v->hdr.flags = flags;
    v->hdr.unk_id = 0;
    v->bos_id = 1;
    v->eos_id = 2;
    v->pieces = calloc(n, sizeof *v->pieces);
    v->piece_bytes = calloc(n, sizeof *v->piece_bytes);
    v->scores = calloc(n, sizeof *v->scores);
    v->kinds = calloc(n, sizeof *v->kinds);
    for (uint32_t i = 0; i < n; i++) {
        v->pieces[i] = strdup(specs[i].piece);
        v->piece_bytes[i] = (uint32_t)strlen(specs[i].piece);
        v->scores[i] = specs[i].score;
        v->kinds[i] = specs[i].kind;
        if (v->piece_bytes[i] > v->hdr.max_piece_bytes)
            v->hdr.max_piece_bytes = v->piece_bytes[i];
    }
}

#define NORMAL HEARTH_TOKEN_NORMAL
#define U2581 "\xe2\x96\x81"

static const struct piece_spec toy[] = {
    {"<unk>", 0, HEARTH_TOKEN_UNKNOWN}, /* 0 */
    {"<s>", 0, HEARTH_TOKEN_CONTROL},   /* 1 */
    {"</s>", 0, HEARTH_TOKEN_CONTROL},  /* 2 */
    {U2581, -1, NORMAL},                /* 3 */
    {"x", -1, NORMAL},                  /* 4 */
    {"y", -1, NORMAL},                  /* 5 */
    {"z", -1, NORMAL},                  /* 6 */
    {"xy", 10, HEARTH_TOKEN_UNUSED},    /* 7: merges first, then is split back */
    {U2581 "x", 1, NORMAL},             /* 8 */
    {"xyz", 8, NORMAL},                 /* 9: built on the UNUSED xy */
    {"<u>", 0, HEARTH_TOKEN_USER_DEFINED}, /* 10 */
    {"<", -1, NORMAL},                  /* 11 */
    {"u", -1, NORMAL},                  /* 12 */
    {">", -1, NORMAL},                  /* 13 */
    {"x<", 20, NORMAL},                 /* 14: would win if <u> were not frozen */
    {"ab", 3, NORMAL},                  /* 15: "ab" also appears as a CONTROL piece */
    {"ab", 0, HEARTH_TOKEN_CONTROL},    /* 16 */
    {"a", -1, NORMAL},                  /* 17 */
    {"b", -1, NORMAL},                  /* 18 */
    {"q", -1, NORMAL},                  /* 19 */
    {"qq", 2, NORMAL},                  /* 20: ties broken leftmost */
};

static void check_encoding(const struct tokenizer *t, const char *text, const int32_t *want,
                           int want_n)
{
    int32_t ids[64];
    char err[HEARTH_ERR_BYTES] = "", got_s[512], want_s[512];
    int n = tokenizer_encode(t, text, strlen(text), 0, ids, 64, err);
    vectors_format_ids(got_s, sizeof got_s, ids, n);
    vectors_format_ids(want_s, sizeof want_s, want, want_n);
    CHECK(n == want_n && memcmp(ids, want, (size_t)want_n * sizeof *ids) == 0,
          "\"%s\": got [%s], want [%s] %s", text, got_s, want_s, err);
}

static void test_synthetic_rules(void)
{
    struct vocab v;
    struct tok_fixture fx;
    vocab_from_specs(&v, toy, sizeof toy / sizeof toy[0], HEARTH_TOK_ADD_DUMMY_PREFIX);
    int rc = tok_fixture_init(&fx, &v, v.bos_id, v.eos_id);
    vocab_free(&v);
    if (rc < 0)
        return;
    /* xy (score 10) beats _x (1); xy is UNUSED, so it is split back */
    check_encoding(&fx.t, "xy", (const int32_t[]){3, 4, 5}, 3);
    /* xyz is NORMAL: kept whole although built from the UNUSED xy */
    check_encoding(&fx.t, "xyz", (const int32_t[]){3, 9}, 2);
    /* <u> is one frozen symbol: x< never forms */
    check_encoding(&fx.t, "x<u>", (const int32_t[]){8, 10}, 2);
    /* a merged "ab" maps to the CONTROL "ab" (reserved pieces looked up first) */
    check_encoding(&fx.t, "ab", (const int32_t[]){3, 16}, 2);
    /* no byte fallback: a run of unknown characters is one <unk> */
    check_encoding(&fx.t, "x\xc3\xa9\xc3\xa9" "x", (const int32_t[]){8, 0, 4}, 3);
    /* equal scores: the leftmost pair merges first */
    check_encoding(&fx.t, "qqq", (const int32_t[]){3, 20, 19}, 3);
    tok_fixture_close(&fx);

    vocab_from_specs(&v, toy, sizeof toy / sizeof toy[0], 0); /* no dummy prefix */
    rc = tok_fixture_init(&fx, &v, v.bos_id, v.eos_id);
    vocab_free(&v);
    if (rc < 0)
        return;
    check_encoding(&fx.t, "xy", (const int32_t[]){4, 5}, 2);
    char out[16];
    size_t n = tokenizer_decode(&fx.t, 1, 8, out, sizeof out);
    CHECK(n == 2 && memcmp(out, " x", 2) == 0, "without dummy prefix the space must stay");
    tok_fixture_close(&fx);
}

/* Only <unk>, <s>, </s> and the 256 byte pieces: every byte falls back, which
 * reaches the worst case of tokenizer_max_ids exactly. */
static void test_byte_only_vocab(void)
{
    struct piece_spec specs[259] = {
        {"<unk>", 0, HEARTH_TOKEN_UNKNOWN}, {"<s>", 0, HEARTH_TOKEN_CONTROL},
        {"</s>", 0, HEARTH_TOKEN_CONTROL}};
    char names[256][8];
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        specs[3 + b] = (struct piece_spec){names[b], 0, HEARTH_TOKEN_BYTE};
    }
    struct vocab v;
    struct tok_fixture fx;
    vocab_from_specs(&v, specs, 259, HEARTH_TOK_ADD_DUMMY_PREFIX | HEARTH_TOK_BYTE_FALLBACK);
    int rc = tok_fixture_init(&fx, &v, v.bos_id, v.eos_id);
    vocab_free(&v);
    if (rc < 0)
        return;
    check_encoding(&fx.t, "a b",
                   (const int32_t[]){3 + 0xe2, 3 + 0x96, 3 + 0x81, 3 + 'a', 3 + 0xe2, 3 + 0x96,
                                     3 + 0x81, 3 + 'b'},
                   8);
    char bad[16];
    memset(bad, 0xff, sizeof bad);
    size_t bound = tokenizer_max_ids(sizeof bad);
    int32_t ids[64];
    char err[HEARTH_ERR_BYTES] = "";
    int n = tokenizer_encode(&fx.t, bad, sizeof bad, 1, ids, bound, err);
    CHECK(n >= 0 && (size_t)n == bound, "16 bad bytes + BOS gave %d ids, bound %zu: %s", n, bound,
          err);
    CHECK(n == (int)bound && ids[0] == 1 && ids[4] == 3 + 0xef && ids[5] == 3 + 0xbf &&
              ids[6] == 3 + 0xbd,
          "a bad byte is not U+FFFD as bytes");
    err[0] = 0;
    CHECK(tokenizer_encode(&fx.t, bad, sizeof bad, 1, ids, bound - 1, err) == -1 && err[0],
          "one id short of the bound was not refused");
    tok_fixture_close(&fx);
}

/* ---- utf8_stream ---- */

static size_t stream_all(const char *const *chunks, const size_t *lens, int n, char *out)
{
    struct utf8_stream s = {{0}, 0};
    size_t k = 0;
    for (int i = 0; i < n; i++)
        k += utf8_stream_push(&s, chunks[i], lens[i], out + k);
    return k + utf8_stream_flush(&s, out + k);
}

static void test_utf8_stream(void)
{
    char out[256];
    struct utf8_stream s = {{0}, 0};
    /* "é" split in two, "😀" split in four */
    size_t k = utf8_stream_push(&s, "a\xc3", 2, out);
    CHECK(k == 1 && out[0] == 'a', "held-back lead byte leaked (%zu bytes)", k);
    k = utf8_stream_push(&s, "\xa9", 1, out);
    CHECK(k == 2 && memcmp(out, "\xc3\xa9", 2) == 0, "é not completed (%zu)", k);
    const char emoji[] = "\xf0\x9f\x98\x80";
    for (int i = 0; i < 3; i++)
        CHECK(utf8_stream_push(&s, emoji + i, 1, out) == 0, "emoji byte %d emitted early", i);
    k = utf8_stream_push(&s, emoji + 3, 1, out);
    CHECK(k == 4 && memcmp(out, emoji, 4) == 0, "emoji not completed (%zu)", k);
    CHECK(utf8_stream_flush(&s, out) == 0, "flush after complete text emitted bytes");

    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"\xff", 1, "\xef\xbf\xbd"},                              /* never valid */
        {"\x80x", 2, "\xef\xbf\xbdx"},                            /* lone continuation */
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},              /* overlong */
        {"\xe0\x80\xaf", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* overlong 3-byte */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"\xf4\x90\x80\x80", 4,
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},       /* above U+10FFFF */
        {"\xe4\xb8x", 3, "\xef\xbf\xbdx"},                        /* cut short by ASCII */
        {"ok\xe4\xb8", 4, "ok\xef\xbf\xbd"},                       /* incomplete at flush */
        {"\xf0\x9f\x98\xe4\xb8\xad", 6, "\xef\xbf\xbd\xe4\xb8\xad"}, /* cut short by a character */
        {"\xef\xbf\xbd", 3, "\xef\xbf\xbd"},                      /* a real U+FFFD */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *chunks[1] = {cases[i].in};
        size_t lens[1] = {cases[i].n};
        k = stream_all(chunks, lens, 1, out);
        CHECK(k == strlen(cases[i].want) && memcmp(out, cases[i].want, k) == 0,
              "case %zu: got %zu bytes, want %zu", i, k, strlen(cases[i].want));
        /* the same bytes pushed one at a time give the same output */
        char out1[256];
        struct utf8_stream s1 = {{0}, 0};
        size_t k1 = 0;
        for (size_t j = 0; j < cases[i].n; j++)
            k1 += utf8_stream_push(&s1, cases[i].in + j, 1, out1 + k1);
        k1 += utf8_stream_flush(&s1, out1 + k1);
        CHECK(k1 == k && memcmp(out1, out, k) == 0, "case %zu differs byte by byte", i);
    }
    /* output stays within 3 * (n + 4) for n pushed bytes */
    struct utf8_stream s2 = {{0}, 0};
    char big[3 * (8 + 4)];
    size_t k2 = utf8_stream_push(&s2, "\xf0\x9f\x98", 3, big);
    k2 = utf8_stream_push(&s2, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, big);
    CHECK(k2 == 3 * 9, "3 held bytes + 8 bad bytes gave %zu bytes, want 27", k2);
    /* flush writes at most one U+FFFD */
    struct utf8_stream s3 = {{0}, 0};
    CHECK(utf8_stream_push(&s3, "\xf0\x9f\x98", 3, big) == 0 && utf8_stream_flush(&s3, big) == 3 &&
              s3.n_pending == 0,
          "flush of 3 pending bytes");
    /* an uninitialized count does not make it write out of bounds */
    struct utf8_stream s4 = {{0}, 1000};
    CHECK(utf8_stream_push(&s4, "ab", 2, big) == 2 && memcmp(big, "ab", 2) == 0,
          "stream with a garbage count");
}

/* ---- hostile sections ---- */

static int init_fails(const void *section, uint64_t n, const char *expect)
{
    struct tokenizer t;
    char err[HEARTH_ERR_BYTES] = "";
    int rc = tokenizer_init(&t, section, n, 1, 2, err);
    if (rc == 0)
        tokenizer_free(&t);
    return rc == -1 && err[0] && (!expect || strstr(err, expect));
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void test_init_rejects_hostile(void)
{
    struct vocab v;
    if (read_vocab(TOK512_MODEL, &v) < 0)
        return;
    char err[HEARTH_ERR_BYTES] = "";
    uint8_t *sec;
    uint64_t n;
    if (vocab_serialize(&v, &sec, &n, err) < 0) {
        CHECK(0, "serialize: %s", err);
        vocab_free(&v);
        return;
    }
    uint32_t nt = v.hdr.n_tokens;
    uint64_t off_offsets = (32 + 5 * (uint64_t)nt + 3) & ~3ull;
    uint8_t *buf = malloc(n + 16), *s = buf + 8;
    /* control: the untouched section is accepted, also 4 bytes off 8 */
    memcpy(s, sec, n);
    CHECK(!init_fails(s, n, NULL), "the valid section was refused");
    memcpy(buf + 4, sec, n);
    CHECK(!init_fails(buf + 4, n, NULL), "a 4-aligned section was refused");
    memcpy(buf + 2, sec, n);
    CHECK(init_fails(buf + 2, n, "aligned"), "a 2-aligned section was accepted");

    /* truncated at many lengths (< 8 bytes of slack are allowed only at the end) */
    for (uint64_t len = 0; len + 8 <= n; len += (len < 64 ? 1 : 37)) {
        memcpy(s, sec, n);
        CHECK(init_fails(s, len, NULL), "section truncated to %llu bytes was accepted",
              (unsigned long long)len);
    }
    CHECK(init_fails(NULL, n, NULL), "NULL section accepted");

#define MUTATE(code, expect, what)                                         \
    do {                                                                   \
        memcpy(s, sec, n);                                                 \
        code;                                                              \
        CHECK(init_fails(s, n, expect), "accepted: %s", what);             \
    } while (0)
    MUTATE(put32(s + 0, 7), "type", "unknown type");
    MUTATE(put32(s + 4, 0), "n_tokens", "n_tokens 0");
    MUTATE(put32(s + 4, 0xfffffff0u), "need", "n_tokens huge");
    MUTATE(put32(s + 4, nt + 1), NULL, "n_tokens one too many");
    MUTATE(put32(s + 8, 3), NULL, "merges in a SentencePiece section");
    MUTATE(put32(s + 12, 0x80), "flags", "unknown flag");
    MUTATE(put32(s + 20, nt), "unk_id", "unk_id out of range");
    MUTATE(put32(s + 20, 5), "UNKNOWN", "unk_id not an UNKNOWN piece");
    MUTATE(put32(s + 24, v.hdr.max_piece_bytes - 1), "max_piece_bytes", "max_piece_bytes short");
    MUTATE(put32(s + 28, 1), "reserved", "reserved field set");
    MUTATE(s[32 + 4 * nt + 10] = 9, "kind", "kind 9");
    MUTATE(s[32 + 4 * nt + 10] = 0, "kind", "kind 0");
    MUTATE(put32(s + 32 + 4 * 20, 0x7fc00000u), "NaN", "NaN score");
    MUTATE(put32(s + off_offsets, 1), "piece_offsets[0]", "offset[0] != 0");
    MUTATE(put32(s + off_offsets + 4 * 300, get32(s + off_offsets + 4 * 299) - 1), "below",
           "decreasing offsets");
    MUTATE(put32(s + off_offsets + 4 * (uint64_t)nt, 0x7fffffffu), NULL, "last offset past the end");
    MUTATE(put32(s + off_offsets + 4 * 200, 0xfffffff0u), NULL, "offset past the end");
#undef MUTATE
    /* a BYTE piece misspelled ("<0x41>" -> "<0x4g>") */
    memcpy(s, sec, n);
    uint64_t pieces_at = off_offsets + 4 * ((uint64_t)nt + 1);
    s[pieces_at + get32(s + off_offsets + 4 * (3 + 0x41)) + 4] = 'g';
    CHECK(init_fails(s, n, "<0xHH>"), "misspelled byte piece accepted");
    /* trailing garbage beyond alignment padding */
    memcpy(s, sec, n);
    CHECK(init_fails(s, n + 8, "unexplained"), "8 trailing bytes accepted");
    CHECK(!init_fails(s, n + 4, NULL), "4 bytes of padding refused");
    /* bos/eos beyond n_tokens */
    struct tokenizer t;
    CHECK(tokenizer_init(&t, s, n, nt, 2, err) == -1, "bos_id out of range accepted");
    CHECK(tokenizer_init(&t, s, n, 1, nt + 5, err) == -1, "eos_id out of range accepted");
    free(buf);
    free(sec);
    vocab_free(&v);
}

/* A byte-level BPE section: merges are range-checked, encode is refused. */
static void test_byte_bpe_section(void)
{
    static const struct piece_spec bpe[] = {
        {"a", 0, NORMAL}, {"b", 0, NORMAL}, {"ab", 0, NORMAL}, {"<|end|>", 0, HEARTH_TOKEN_CONTROL},
    };
    struct vocab v;
    vocab_from_specs(&v, bpe, 4, 0);
    v.hdr.type = HEARTH_TOKENIZER_BYTE_BPE;
    v.hdr.unk_id = UINT32_MAX;
    v.hdr.n_merges = 1;
    v.merges = malloc(sizeof *v.merges);
    v.merges[0][0] = 0;
    v.merges[0][1] = 1;
    char err[HEARTH_ERR_BYTES] = "";
    uint8_t *sec;
    uint64_t n;
    if (vocab_serialize(&v, &sec, &n, err) < 0) {
        CHECK(0, "serialize: %s", err);
        vocab_free(&v);
        return;
    }
    struct tokenizer t;
    CHECK(tokenizer_init(&t, sec, n, UINT32_MAX, 3, err) == 0, "valid BPE section refused: %s",
          err);
    int32_t ids[8];
    err[0] = 0;
    CHECK(tokenizer_encode(&t, "ab", 2, 0, ids, 8, err) == 1 && ids[0] == 2,
          "byte-level BPE encode of \"ab\": %s", err);
    char out[16];
    CHECK(tokenizer_decode(&t, 0, 2, out, sizeof out) == 2 && memcmp(out, "ab", 2) == 0,
          "byte-level piece decode");
    tokenizer_free(&t);
    uint64_t merges_at = (32 + 5 * 4 + 3) / 4 * 4 + 4 * 5;
    put32(sec + merges_at + 4, 4);
    CHECK(init_fails(sec, n, "merge"), "merge id 4 of 4 tokens accepted");
    put32(sec + merges_at + 4, 1);
    put32(sec + merges_at, 0xffffffffu);
    CHECK(init_fails(sec, n, "merge"), "merge id UINT32_MAX accepted");
    free(sec);
    vocab_free(&v);
}

/* ---- hostile tokenizer.model and tokenizer.bin files ---- */

/* The end offsets of the top-level ModelProto fields from trainer_spec on
 * (which comes after the pieces): a file cut exactly at one of them is a
 * valid, shorter message, so the reader may accept it. */
static size_t field_ends(const uint8_t *data, size_t n, size_t *ends, size_t max,
                         size_t *trainer_end)
{
    struct pb_reader r;
    struct pb_field f;
    char err[HEARTH_ERR_BYTES];
    size_t count = 0;
    *trainer_end = n + 1;
    pb_reader_init(&r, data, n, 0, "model");
    while (pb_next(&r, &f, err) == 1) {
        if (f.number == 2)
            *trainer_end = r.pos;
        if (r.pos >= *trainer_end && count < max)
            ends[count++] = r.pos;
    }
    return count;
}

static int read_model_bytes(const uint8_t *data, size_t n, const char *name, struct vocab *v,
                            char *err)
{
    char *path = test_path(name);
    test_write_file(path, data, n);
    int rc = vocab_read_spm_model(path, v, err);
    free(path);
    return rc;
}

/* A vocab the reader accepted must serialize and load. */
static void check_accepted_vocab(struct vocab *v, const char *what)
{
    char err[HEARTH_ERR_BYTES] = "";
    uint8_t *sec;
    uint64_t n;
    struct tokenizer t;
    int ok = vocab_serialize(v, &sec, &n, err) == 0;
    if (ok) {
        ok = tokenizer_init(&t, sec, n, v->bos_id, v->eos_id, err) == 0;
        if (ok)
            tokenizer_free(&t);
        free(sec);
    }
    CHECK(ok, "%s: accepted by the reader but not loadable: %s", what, err);
    vocab_free(v);
}

static void check_model_mutations(const char *path, size_t truncation_step, int n_flips)
{
    size_t n;
    uint8_t *orig = (uint8_t *)test_read_file(path, &n);
    CHECK(orig, "cannot read %s", path);
    if (!orig)
        return;
    uint8_t *data = malloc(n);
    size_t ends[64], trainer_end, n_ends;
    n_ends = field_ends(orig, n, ends, 64, &trainer_end);
    char err[HEARTH_ERR_BYTES];
    struct vocab v;
    for (size_t len = 0; len < n; len += (len < 300 ? 1 : truncation_step)) {
        int boundary = 0;
        for (size_t i = 0; i < 64 && i < n_ends; i++)
            boundary |= ends[i] == len && len >= trainer_end;
        err[0] = 0;
        int rc = read_model_bytes(orig, len, "cut.model", &v, err);
        if (rc == 0) {
            CHECK(boundary, "%s cut to %zu bytes was accepted", path, len);
            check_accepted_vocab(&v, "cut model");
        } else {
            CHECK(err[0], "%s cut to %zu: no message", path, len);
        }
    }
    uint64_t rng = 7;
    for (int i = 0; i < n_flips; i++) {
        memcpy(data, orig, n);
        int k = 1 + (int)(test_rand_u64(&rng) % 4);
        for (int j = 0; j < k; j++)
            data[test_rand_u64(&rng) % n] ^= (uint8_t)(1 + test_rand_u64(&rng) % 255);
        err[0] = 0;
        if (read_model_bytes(data, n, "flip.model", &v, err) == 0)
            check_accepted_vocab(&v, "flipped model");
        else
            CHECK(err[0], "flipped model refused without a message");
    }
    free(data);
    free(orig);
}

static void test_spm_model_hostile(void)
{
    check_model_mutations(TOK512_MODEL, 3, 1500);
    check_model_mutations(LLAMA2_MODEL, 9973, 40);
}

/* Minimal protobuf writer for crafted models. */
struct pbw {
    uint8_t buf[4096];
    size_t n;
};

static void pbw_bytes(struct pbw *w, const void *p, size_t n)
{
    memcpy(w->buf + w->n, p, n);
    w->n += n;
}

static void pbw_varint(struct pbw *w, uint64_t v)
{
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            b |= 0x80;
        w->buf[w->n++] = b;
    } while (v);
}

static void pbw_len(struct pbw *w, uint32_t field, const void *p, size_t n)
{
    pbw_varint(w, (uint64_t)field << 3 | 2);
    pbw_varint(w, n);
    pbw_bytes(w, p, n);
}

static void pbw_int(struct pbw *w, uint32_t field, int64_t v)
{
    pbw_varint(w, (uint64_t)field << 3);
    pbw_varint(w, (uint64_t)v);
}

static void pbw_piece(struct pbw *w, const char *piece, float score, int type)
{
    struct pbw p = {.n = 0};
    pbw_len(&p, 1, piece, strlen(piece));
    pbw_varint(&p, 2 << 3 | 5);
    pbw_bytes(&p, &score, 4);
    if (type)
        pbw_int(&p, 3, type);
    pbw_len(w, 1, p.buf, p.n);
}

/* A tiny model: <unk>, <s>, </s>, "a", "b", "ab" (+ extra piece), BPE,
 * identity normalizer with remove_extra_whitespaces off. */
struct crafted {
    int model_type;
    int64_t bos_id;
    const char *extra_piece;
    int extra_type;
    const char *charsmap;
    int unk_type;
};

static void craft_model(struct pbw *w, const struct crafted *c)
{
    w->n = 0;
    pbw_piece(w, "<unk>", 0, c->unk_type ? c->unk_type : 2);
    pbw_piece(w, "<s>", 0, 3);
    pbw_piece(w, "</s>", 0, 3);
    pbw_piece(w, "a", -1, 1);
    pbw_piece(w, "b", -2, 0);
    pbw_piece(w, "ab", -0.5f, 1);
    if (c->extra_piece)
        pbw_piece(w, c->extra_piece, -3, c->extra_type);
    struct pbw t = {.n = 0};
    pbw_int(&t, 3, c->model_type);
    pbw_int(&t, 41, c->bos_id);
    pbw_int(&t, 99, 12345); /* unknown field: skipped */
    pbw_len(w, 2, t.buf, t.n);
    struct pbw nz = {.n = 0};
    pbw_len(&nz, 1, "identity", 8);
    if (c->charsmap)
        pbw_len(&nz, 2, c->charsmap, strlen(c->charsmap));
    pbw_int(&nz, 4, 0);
    pbw_len(w, 3, nz.buf, nz.n);
}

static int crafted_fails(const struct crafted *c, const char *expect)
{
    struct pbw w;
    struct vocab v;
    char err[HEARTH_ERR_BYTES] = "";
    craft_model(&w, c);
    int rc = read_model_bytes(w.buf, w.n, "crafted.model", &v, err);
    if (rc == 0)
        vocab_free(&v);
    CHECK(rc == -1 ? strstr(err, expect) != NULL : 1, "expected \"%s\" in: %s", expect, err);
    return rc == -1;
}

static void test_spm_model_crafted(void)
{
    const struct crafted good = {.model_type = 2, .bos_id = 1};
    struct pbw w;
    struct vocab v;
    char err[HEARTH_ERR_BYTES] = "";
    craft_model(&w, &good);
    CHECK(read_model_bytes(w.buf, w.n, "good.model", &v, err) == 0, "crafted model refused: %s",
          err);
    if (v.pieces) {
        CHECK(v.hdr.n_tokens == 6 && v.kinds[4] == HEARTH_TOKEN_NORMAL && v.scores[5] == -0.5f &&
                  v.hdr.flags == HEARTH_TOK_ADD_DUMMY_PREFIX && v.hdr.unk_id == 0 &&
                  v.bos_id == 1 && v.eos_id == 2 && v.hdr.max_piece_bytes == 5,
              "crafted model read wrong");
        vocab_free(&v);
    }
    struct crafted c = good;
    c.bos_id = -1;
    craft_model(&w, &c);
    CHECK(read_model_bytes(w.buf, w.n, "nobos.model", &v, err) == 0 && v.bos_id == UINT32_MAX,
          "bos_id -1 not read as none: %s", err);
    vocab_free(&v);

    c = good;
    c.model_type = 1;
    CHECK(crafted_fails(&c, "BPE"), "UNIGRAM accepted");
    c = good;
    c.charsmap = "xyz";
    CHECK(crafted_fails(&c, "identity"), "character map accepted");
    c = good;
    c.extra_piece = "\xc3\x28";
    CHECK(crafted_fails(&c, "UTF-8"), "invalid UTF-8 piece accepted");
    c = good;
    c.extra_piece = "ab";
    CHECK(crafted_fails(&c, "same string"), "duplicate piece accepted");
    c = good;
    c.extra_piece = "<0x41>";
    c.extra_type = 6;
    CHECK(crafted_fails(&c, "byte_fallback"), "BYTE piece without byte_fallback accepted");
    c = good;
    c.extra_type = 9;
    c.extra_piece = "c";
    CHECK(crafted_fails(&c, "type"), "piece type 9 accepted");
    c = good;
    c.unk_type = 1;
    CHECK(crafted_fails(&c, "UNKNOWN"), "model without an UNKNOWN piece accepted");
    c = good;
    c.bos_id = 6;
    CHECK(crafted_fails(&c, "bos_id"), "bos_id past the pieces accepted");

    /* wire-level damage */
    static const struct {
        const char *bytes;
        size_t n;
        const char *expect;
    } raw[] = {
        {"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, "10 bytes"}, /* 11-byte varint */
        {"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11, "overflows"},
        {"\x0a\x7f" "a", 3, "length 127"},
        {"\x0a", 1, "truncated"},
        {"\x0b\x00", 2, "wire type 3"},
        {"\x00\x00", 2, "field number 0"},
        {"\x0d\x00\x00", 3, "fixed32"},
        {"\x12\x00", 2, "no pieces"}, /* only an empty trainer_spec */
        {"", 0, "no pieces"},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        err[0] = 0;
        int rc = read_model_bytes((const uint8_t *)raw[i].bytes, raw[i].n, "raw.model", &v, err);
        CHECK(rc == -1 && strstr(err, raw[i].expect), "raw case %zu: rc %d, err: %s", i, rc, err);
        if (rc == 0)
            vocab_free(&v);
    }
    err[0] = 0;
    CHECK(vocab_read_spm_model("tests/data/no-such.model", &v, err) == -1 && err[0],
          "missing file accepted");
}

static void test_llama2c_bin_hostile(void)
{
    size_t n;
    uint8_t *orig = (uint8_t *)test_read_file(TOK512_BIN, &n);
    CHECK(orig, "cannot read %s", TOK512_BIN);
    if (!orig)
        return;
    char *path = test_path("cut.bin");
    char err[HEARTH_ERR_BYTES];
    struct vocab v;
    for (size_t len = 0; len < n; len += 7) {
        test_write_file(path, orig, len);
        err[0] = 0;
        int rc = vocab_read_llama2c(path, 512, &v, err);
        CHECK(rc == -1 && err[0], "tok512.bin cut to %zu bytes accepted", len);
        if (rc == 0)
            vocab_free(&v);
    }
    test_write_file(path, orig, n);
    CHECK(vocab_read_llama2c(path, 511, &v, err) == -1 && strstr(err, "holds 512 tokens"),
          "512 tokens read as 511: %s", err);
    CHECK(vocab_read_llama2c(path, 4000000000u, &v, err) == -1, "absurd n_tokens accepted");
    CHECK(vocab_read_llama2c(path, 512, &v, err) == 0, "tok512.bin refused: %s", err);
    vocab_free(&v);
    uint8_t *data = malloc(n);
    memcpy(data, orig, n);
    put32(data + 4 + 4, 0x7fffffffu); /* length of token 0 */
    test_write_file(path, data, n);
    CHECK(vocab_read_llama2c(path, 0, &v, err) == -1 && strstr(err, "max_token_length"),
          "huge token length accepted: %s", err);
    memcpy(data, orig, n);
    put32(data, 1000000); /* max_token_length larger: lengths still checked against the file */
    put32(data + 4 + 4, 1000000);
    test_write_file(path, data, n);
    CHECK(vocab_read_llama2c(path, 0, &v, err) == -1 && strstr(err, "past the end"),
          "token past the end accepted: %s", err);
    memcpy(data, orig, n);
    data[4 + 8 + 5 + 8 + 1] = 'x'; /* BOS "\n<s>\n" -> "\nxs>\n" */
    test_write_file(path, data, n);
    CHECK(vocab_read_llama2c(path, 0, &v, err) == -1 && strstr(err, "BOS"), "bad BOS accepted: %s",
          err);
    free(data);
    free(path);
    free(orig);
}

const struct test_case tokenizer_tests[] = {
    {"tokenizer_llama2_reference_model", test_llama2_reference_model},
    {"tokenizer_llama2_reference_bin", test_llama2_reference_bin},
    {"tokenizer_llamacpp_spm_model", test_llamacpp_spm_model},
    {"tokenizer_llamacpp_spm_bin", test_llamacpp_spm_bin},
    {"tokenizer_model_and_bin_agree", test_model_and_bin_agree},
    {"tokenizer_llama2_vocab_contents", test_llama2_vocab_contents},
    {"tokenizer_encode_edges", test_encode_edges},
    {"tokenizer_decode_rules", test_decode_rules},
    {"tokenizer_long_text", test_long_text},
    {"tokenizer_synthetic_rules", test_synthetic_rules},
    {"tokenizer_byte_only_vocab", test_byte_only_vocab},
    {"tokenizer_utf8_stream", test_utf8_stream},
    {"tokenizer_init_rejects_hostile", test_init_rejects_hostile},
    {"tokenizer_byte_bpe_section", test_byte_bpe_section},
    {"tokenizer_spm_model_hostile", test_spm_model_hostile},
    {"tokenizer_spm_model_crafted", test_spm_model_crafted},
    {"tokenizer_llama2c_bin_hostile", test_llama2c_bin_hostile},
    {NULL, NULL},
};
