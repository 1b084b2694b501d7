/* exporter/vocab.c - SentencePiece vocabularies for export: reads a
 * SentencePiece tokenizer.model (protobuf ModelProto) or a llama2.c
 * tokenizer.bin into struct vocab, and serializes a vocab as the tokenizer
 * section of format.h. It does not tokenize (tokenizer.c does) and does not
 * read tokenizer.json (byte-level BPE has its own reader).
 *
 * Both readers produce the same vocab for the same vocabulary: pieces exactly
 * as SentencePiece stores them (U+2581 for space, "<0xNN>" byte pieces),
 * scores, piece kinds, flags, unk/bos/eos ids. Every count, length and id
 * read from a file is checked against the file before use. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../tokenizer.h"
#include "protobuf.h"
#include "source.h"

/* Far above any real vocabulary (Llama 3: 128256); bounds allocations made
 * from counts read out of a file. */
#define VOCAB_MAX_TOKENS (1u << 24)
/* SentencePiece refuses pieces of kMaxPieceSize = 8000 bytes or more
 * (sentencepiece src/model_interface.cc, InitializePieces). */
#define SPM_MAX_PIECE_BYTES 8000u
/* A tokenizer file larger than this is not a tokenizer file. */
#define VOCAB_MAX_FILE_BYTES (256ull << 20)

static const char SPACE_MARK[3] = {'\xe2', '\x96', '\x81'}; /* U+2581, SentencePiece's space */

/* sentencepiece_model.proto (google/sentencepiece src/sentencepiece_model.proto):
 *   ModelProto { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
 *                NormalizerSpec normalizer_spec = 3; SelfTestData self_test_data = 4;
 *                NormalizerSpec denormalizer_spec = 5; }
 *   SentencePiece { string piece = 1; float score = 2; Type type = 3 [default NORMAL]; }
 *   TrainerSpec { ModelType model_type = 3 [default UNIGRAM] (UNIGRAM 1, BPE 2, WORD 3, CHAR 4);
 *                 bool treat_whitespace_as_suffix = 24; bool byte_fallback = 35;
 *                 int32 unk_id = 40 [0]; bos_id = 41 [1]; eos_id = 42 [2]; pad_id = 43 [-1]; }
 *   NormalizerSpec { string name = 1; bytes precompiled_charsmap = 2;
 *                    bool add_dummy_prefix = 3 [true]; bool remove_extra_whitespaces = 4 [true];
 *                    bool escape_whitespaces = 5 [true]; } */
enum {
    MODEL_PIECES = 1,
    MODEL_TRAINER_SPEC = 2,
    MODEL_NORMALIZER_SPEC = 3,
    MODEL_DENORMALIZER_SPEC = 5,
    PIECE_PIECE = 1,
    PIECE_SCORE = 2,
    PIECE_TYPE = 3,
    TRAINER_MODEL_TYPE = 3,
    TRAINER_WHITESPACE_AS_SUFFIX = 24,
    TRAINER_BYTE_FALLBACK = 35,
    TRAINER_UNK_ID = 40,
    TRAINER_BOS_ID = 41,
    TRAINER_EOS_ID = 42,
    TRAINER_PAD_ID = 43,
    NORM_NAME = 1,
    NORM_CHARSMAP = 2,
    NORM_ADD_DUMMY_PREFIX = 3,
    NORM_REMOVE_EXTRA_WHITESPACES = 4,
    NORM_ESCAPE_WHITESPACES = 5,
    SPM_MODEL_UNIGRAM = 1,
    SPM_MODEL_BPE = 2,
};

/* The ModelProto settings that change how text is tokenized. Defaults are
 * the proto defaults, which apply when a field (or the whole spec) is absent. */
struct spm_settings {
    int64_t model_type;
    int whitespace_as_suffix, byte_fallback;
    int64_t unk_id, bos_id, eos_id, pad_id;
    const uint8_t *norm_name;
    size_t norm_name_len;
    size_t charsmap_len, denorm_charsmap_len;
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
};

void vocab_free(struct vocab *v)
{
    if (!v)
        return;
    if (v->pieces) {
        for (uint32_t i = 0; i < v->hdr.n_tokens; i++)
            free(v->pieces[i]);
    }
    free(v->pieces);
    free(v->piece_bytes);
    free(v->scores);
    free(v->kinds);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

/* Reads a whole (small) file into a malloc'd buffer. */
static int read_file(const char *path, uint8_t **out, size_t *n_bytes, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fail(err, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > VOCAB_MAX_FILE_BYTES) {
        fclose(f);
        return fail(err, "%s: %" PRIu64 " bytes is too large for a tokenizer file (limit %llu)",
                    path, (uint64_t)st.st_size, VOCAB_MAX_FILE_BYTES);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return fail(err, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int read_error = ferror(f);
    fclose(f);
    if (got != n || read_error) {
        free(buf);
        return fail(err, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    *out = buf;
    *n_bytes = n;
    return 0;
}

/* Length of the well-formed UTF-8 character at s (Unicode 15, table 3-7:
 * no overlongs, no surrogates, nothing above U+10FFFF), or 0 if ill-formed. */
static size_t utf8_char_len(const uint8_t *s, size_t n)
{
    uint8_t b = s[0];
    if (b < 0x80)
        return 1;
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (b >= 0xc2 && b <= 0xdf)
        len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        len = 3;
        if (b == 0xe0)
            lo = 0xa0;
        if (b == 0xed)
            hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4;
        if (b == 0xf0)
            lo = 0x90;
        if (b == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Offset of the first ill-formed byte in s, or n if s is valid UTF-8. */
static size_t utf8_invalid_at(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_char_len(s + i, n - i);
        if (!len)
            return i;
        i += len;
    }
    return n;
}

int vocab_alloc(struct vocab *v, uint32_t n_tokens, const char *path, char *err)
{
    memset(v, 0, sizeof *v);
    v->pieces = calloc(n_tokens, sizeof *v->pieces);
    v->piece_bytes = calloc(n_tokens, sizeof *v->piece_bytes);
    v->scores = calloc(n_tokens, sizeof *v->scores);
    v->kinds = calloc(n_tokens, sizeof *v->kinds);
    v->hdr.n_tokens = n_tokens;
    if (!v->pieces || !v->piece_bytes || !v->scores || !v->kinds) {
        vocab_free(v);
        return fail(err, "%s: out of memory for %u tokens", path, n_tokens);
    }
    return 0;
}

static int set_piece(struct vocab *v, uint32_t id, const void *bytes, size_t n, const char *path,
                     char *err)
{
    v->pieces[id] = malloc(n ? n : 1);
    if (!v->pieces[id])
        return fail(err, "%s: out of memory for piece %u", path, id);
    memcpy(v->pieces[id], bytes, n);
    v->piece_bytes[id] = (uint32_t)n;
    if (n > v->hdr.max_piece_bytes)
        v->hdr.max_piece_bytes = (uint32_t)n;
    return 0;
}

/* ---- SentencePiece tokenizer.model ---- */

static int read_bool(const struct pb_reader *r, const struct pb_field *f, const char *what,
                     int *out, char *err)
{
    if (pb_expect_wire(r, f, PB_VARINT, what, err) < 0)
        return -1;
    *out = f->value != 0;
    return 0;
}

/* proto int32 and enums travel as varints, negatives sign-extended to 64 bits. */
static int read_int32(const struct pb_reader *r, const struct pb_field *f, const char *what,
                      int64_t *out, char *err)
{
    if (pb_expect_wire(r, f, PB_VARINT, what, err) < 0)
        return -1;
    int64_t v = (int64_t)f->value;
    if (v < INT32_MIN || v > INT32_MAX)
        return fail(err, "%s: %s at offset %" PRIu64 " is out of int32 range", r->path, what,
                    f->offset);
    *out = v;
    return 0;
}

static int parse_trainer_spec(struct pb_reader *r, struct spm_settings *s, char *err)
{
    struct pb_field f;
    int rc;
    while ((rc = pb_next(r, &f, err)) == 1) {
        switch (f.number) {
        case TRAINER_MODEL_TYPE:
            rc = read_int32(r, &f, "TrainerSpec.model_type", &s->model_type, err);
            break;
        case TRAINER_WHITESPACE_AS_SUFFIX:
            rc = read_bool(r, &f, "TrainerSpec.treat_whitespace_as_suffix",
                           &s->whitespace_as_suffix, err);
            break;
        case TRAINER_BYTE_FALLBACK:
            rc = read_bool(r, &f, "TrainerSpec.byte_fallback", &s->byte_fallback, err);
            break;
        case TRAINER_UNK_ID:
            rc = read_int32(r, &f, "TrainerSpec.unk_id", &s->unk_id, err);
            break;
        case TRAINER_BOS_ID:
            rc = read_int32(r, &f, "TrainerSpec.bos_id", &s->bos_id, err);
            break;
        case TRAINER_EOS_ID:
            rc = read_int32(r, &f, "TrainerSpec.eos_id", &s->eos_id, err);
            break;
        case TRAINER_PAD_ID:
            rc = read_int32(r, &f, "TrainerSpec.pad_id", &s->pad_id, err);
            break;
        default:
            rc = 0; /* training-only settings */
        }
        if (rc < 0)
            return -1;
    }
    return rc;
}

static int parse_normalizer_spec(struct pb_reader *r, struct spm_settings *s, char *err)
{
    struct pb_field f;
    int rc;
    while ((rc = pb_next(r, &f, err)) == 1) {
        switch (f.number) {
        case NORM_NAME:
            rc = pb_expect_wire(r, &f, PB_LEN, "NormalizerSpec.name", err);
            s->norm_name = f.data;
            s->norm_name_len = f.len;
            break;
        case NORM_CHARSMAP:
            rc = pb_expect_wire(r, &f, PB_LEN, "NormalizerSpec.precompiled_charsmap", err);
            s->charsmap_len = f.len;
            break;
        case NORM_ADD_DUMMY_PREFIX:
            rc = read_bool(r, &f, "NormalizerSpec.add_dummy_prefix", &s->add_dummy_prefix, err);
            break;
        case NORM_REMOVE_EXTRA_WHITESPACES:
            rc = read_bool(r, &f, "NormalizerSpec.remove_extra_whitespaces",
                           &s->remove_extra_whitespaces, err);
            break;
        case NORM_ESCAPE_WHITESPACES:
            rc = read_bool(r, &f, "NormalizerSpec.escape_whitespaces", &s->escape_whitespaces,
                           err);
            break;
        default:
            rc = 0;
        }
        if (rc < 0)
            return -1;
    }
    return rc;
}

/* The denormalizer only matters when it rewrites text, i.e. has a charsmap. */
static int parse_denormalizer_spec(struct pb_reader *r, struct spm_settings *s, char *err)
{
    struct pb_field f;
    int rc;
    while ((rc = pb_next(r, &f, err)) == 1) {
        if (f.number != NORM_CHARSMAP)
            continue;
        if (pb_expect_wire(r, &f, PB_LEN, "denormalizer_spec.precompiled_charsmap", err) < 0)
            return -1;
        s->denorm_charsmap_len = f.len;
    }
    return rc;
}

/* Pass 1 over ModelProto: counts the pieces and reads the specs. */
static int scan_model(struct pb_reader *model, struct spm_settings *s, uint64_t *n_pieces,
                      char *err)
{
    struct pb_field f;
    struct pb_reader sub;
    int rc;
    *n_pieces = 0;
    while ((rc = pb_next(model, &f, err)) == 1) {
        switch (f.number) {
        case MODEL_PIECES:
            if (pb_expect_wire(model, &f, PB_LEN, "ModelProto.pieces", err) < 0)
                return -1;
            (*n_pieces)++;
            break;
        case MODEL_TRAINER_SPEC:
            if (pb_expect_wire(model, &f, PB_LEN, "ModelProto.trainer_spec", err) < 0)
                return -1;
            pb_reader_sub(&sub, model, &f);
            if (parse_trainer_spec(&sub, s, err) < 0)
                return -1;
            break;
        case MODEL_NORMALIZER_SPEC:
            if (pb_expect_wire(model, &f, PB_LEN, "ModelProto.normalizer_spec", err) < 0)
                return -1;
            pb_reader_sub(&sub, model, &f);
            if (parse_normalizer_spec(&sub, s, err) < 0)
                return -1;
            break;
        case MODEL_DENORMALIZER_SPEC:
            if (pb_expect_wire(model, &f, PB_LEN, "ModelProto.denormalizer_spec", err) < 0)
                return -1;
            pb_reader_sub(&sub, model, &f);
            if (parse_denormalizer_spec(&sub, s, err) < 0)
                return -1;
            break;
        default:
            break; /* self_test_data and unknown fields */
        }
    }
    return rc;
}

/* Refuses the settings whose behaviour hearth does not implement. The
 * normalizer rewrites text only through precompiled_charsmap (sentencepiece
 * src/normalizer.cc, Normalizer::Init/NormalizePrefix; the name is only the
 * rule's label), so an empty charsmap is the identity whatever the name. */
static int check_settings(const struct spm_settings *s, const char *path, char *err)
{
    if (s->model_type != SPM_MODEL_BPE)
        return fail(err,
                    "%s: TrainerSpec.model_type is %" PRId64 " (%s); hearth implements only "
                    "SentencePiece BPE (model_type 2)",
                    path, s->model_type,
                    s->model_type == SPM_MODEL_UNIGRAM ? "UNIGRAM" : "not BPE");
    if (s->whitespace_as_suffix)
        return fail(err, "%s: TrainerSpec.treat_whitespace_as_suffix is set; not supported", path);
    if (s->charsmap_len)
        return fail(err,
                    "%s: the normalizer \"%.*s\" rewrites text with a %zu-byte precompiled "
                    "character map; hearth supports only the identity normalizer",
                    path, (int)(s->norm_name_len > 64 ? 64 : s->norm_name_len),
                    s->norm_name ? (const char *)s->norm_name : "", s->charsmap_len);
    if (s->denorm_charsmap_len)
        return fail(err, "%s: denormalizer_spec has a character map; not supported", path);
    if (!s->escape_whitespaces)
        return fail(err, "%s: NormalizerSpec.escape_whitespaces is false; not supported", path);
    /* remove_extra_whitespaces (collapse runs of ' ', drop leading/trailing
     * ones) is accepted but NOT applied: the tokenizer section has no flag
     * for it. tok512.model leaves it at its proto default (true) while
     * llama2.c, the reference for that vocabulary, never removes spaces;
     * Llama 2 sets it false. */
    return 0;
}

/* Reads one SentencePiece message into token id. */
static int parse_piece(struct pb_reader *r, struct vocab *v, uint32_t id, uint64_t msg_offset,
                       char *err)
{
    struct pb_field f;
    const uint8_t *piece = NULL;
    size_t piece_len = 0;
    uint64_t piece_offset = msg_offset;
    float score = 0.0f;
    int64_t type = HEARTH_TOKEN_NORMAL;
    int rc;
    while ((rc = pb_next(r, &f, err)) == 1) {
        if (f.number == PIECE_PIECE) {
            if (pb_expect_wire(r, &f, PB_LEN, "SentencePiece.piece", err) < 0)
                return -1;
            piece = f.data;
            piece_len = f.len;
            piece_offset = f.offset;
        } else if (f.number == PIECE_SCORE) {
            if (pb_expect_wire(r, &f, PB_FIXED32, "SentencePiece.score", err) < 0)
                return -1;
            uint32_t bits = (uint32_t)f.value;
            memcpy(&score, &bits, sizeof score);
        } else if (f.number == PIECE_TYPE) {
            if (read_int32(r, &f, "SentencePiece.type", &type, err) < 0)
                return -1;
        }
    }
    if (rc < 0)
        return -1;
    if (!piece || piece_len == 0)
        return fail(err, "%s: piece %u (offset %" PRIu64 ") is empty", r->path, id, msg_offset);
    if (piece_len >= SPM_MAX_PIECE_BYTES)
        return fail(err, "%s: piece %u (offset %" PRIu64 ") is %zu bytes long (limit %u)",
                    r->path, id, piece_offset, piece_len, SPM_MAX_PIECE_BYTES - 1);
    if (memchr(piece, 0, piece_len))
        return fail(err, "%s: piece %u (offset %" PRIu64 ") contains a NUL byte", r->path, id,
                    piece_offset);
    size_t bad = utf8_invalid_at(piece, piece_len);
    if (bad < piece_len)
        return fail(err, "%s: piece %u (offset %" PRIu64 ") is not valid UTF-8 at byte %zu",
                    r->path, id, piece_offset, bad);
    if (type < HEARTH_TOKEN_NORMAL || type > HEARTH_TOKEN_BYTE)
        return fail(err, "%s: piece %u (offset %" PRIu64 ") has unknown type %" PRId64, r->path,
                    id, msg_offset, type);
    if (isnan(score))
        return fail(err, "%s: piece %u (offset %" PRIu64 ") has a NaN score", r->path, id,
                    msg_offset);
    v->scores[id] = score;
    v->kinds[id] = (uint8_t)type;
    return set_piece(v, id, piece, piece_len, r->path, err);
}

/* Pass 2: reads every piece in order. */
static int read_pieces(struct pb_reader *model, struct vocab *v, char *err)
{
    struct pb_field f;
    struct pb_reader sub;
    uint32_t id = 0;
    int rc;
    model->pos = 0;
    while ((rc = pb_next(model, &f, err)) == 1) {
        if (f.number != MODEL_PIECES)
            continue;
        pb_reader_sub(&sub, model, &f);
        if (parse_piece(&sub, v, id, f.offset, err) < 0)
            return -1;
        id++;
    }
    return rc;
}

/* SentencePiece keeps NORMAL, USER_DEFINED and UNUSED pieces in one map and
 * CONTROL, UNKNOWN and BYTE pieces in another, and refuses a piece defined
 * twice within a map (model_interface.cc, InitializePieces). */
static int is_reserved_kind(uint8_t kind)
{
    return kind == HEARTH_TOKEN_CONTROL || kind == HEARTH_TOKEN_UNKNOWN ||
           kind == HEARTH_TOKEN_BYTE;
}

struct piece_ref {
    const char *bytes;
    uint32_t n, id;
    int reserved;
};

static int compare_piece_ref(const void *a, const void *b)
{
    const struct piece_ref *x = a, *y = b;
    if (x->reserved != y->reserved)
        return x->reserved - y->reserved;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->bytes, y->bytes, n);
    if (c)
        return c;
    if (x->n != y->n)
        return x->n < y->n ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int check_duplicates(const struct vocab *v, const char *path, char *err)
{
    uint32_t n = v->hdr.n_tokens;
    struct piece_ref *refs = malloc((size_t)n * sizeof *refs);
    if (!refs)
        return fail(err, "%s: out of memory checking pieces", path);
    for (uint32_t i = 0; i < n; i++)
        refs[i] = (struct piece_ref){v->pieces[i], v->piece_bytes[i], i,
                                     is_reserved_kind(v->kinds[i])};
    qsort(refs, n, sizeof *refs, compare_piece_ref);
    int rc = 0;
    for (uint32_t i = 1; i < n && rc == 0; i++) {
        const struct piece_ref *a = &refs[i - 1], *b = &refs[i];
        if (a->reserved == b->reserved && a->n == b->n && memcmp(a->bytes, b->bytes, a->n) == 0)
            rc = fail(err, "%s: pieces %u and %u are the same string \"%.*s\"", path, a->id,
                      b->id, (int)(a->n > 64 ? 64 : a->n), a->bytes);
    }
    free(refs);
    return rc;
}

/* Checks the UNKNOWN and BYTE pieces as SentencePiece does and sets unk_id
 * and the flags. */
static int check_special_pieces(struct vocab *v, int byte_fallback, const char *path, char *err)
{
    uint32_t unk = UINT32_MAX;
    uint32_t n_bytes = 0;
    for (uint32_t i = 0; i < v->hdr.n_tokens; i++) {
        if (v->kinds[i] == HEARTH_TOKEN_UNKNOWN) {
            if (unk != UINT32_MAX)
                return fail(err, "%s: pieces %u and %u are both of type UNKNOWN", path, unk, i);
            unk = i;
        }
        if (v->kinds[i] == HEARTH_TOKEN_BYTE) {
            if (!byte_fallback)
                return fail(err, "%s: piece %u is a BYTE piece but byte_fallback is off", path, i);
            if (tokenizer_byte_piece_value(v->pieces[i], v->piece_bytes[i]) < 0)
                return fail(err, "%s: BYTE piece %u is not spelled <0xHH>", path, i);
            n_bytes++; /* duplicates were refused, so 256 means all bytes */
        }
    }
    if (unk == UINT32_MAX)
        return fail(err, "%s: no piece of type UNKNOWN (SentencePiece requires one)", path);
    if (byte_fallback && n_bytes != 256)
        return fail(err, "%s: byte_fallback is on but there are %u BYTE pieces, not 256", path,
                    n_bytes);
    v->hdr.unk_id = unk;
    return 0;
}

/* A trainer-spec special id: negative means none; otherwise it must name a piece. */
static int special_id(int64_t id, uint32_t n_tokens, const char *what, const char *path,
                      uint32_t *out, char *err)
{
    if (id < 0) {
        *out = UINT32_MAX;
        return 0;
    }
    if ((uint64_t)id >= n_tokens)
        return fail(err, "%s: TrainerSpec.%s %" PRId64 " is not below the %u pieces", path, what,
                    id, n_tokens);
    *out = (uint32_t)id;
    return 0;
}

int vocab_read_spm_model(const char *path, struct vocab *v, char *err)
{
    memset(v, 0, sizeof *v);
    uint8_t *file;
    size_t n;
    if (read_file(path, &file, &n, err) < 0)
        return -1;
    struct spm_settings s = {
        .model_type = SPM_MODEL_UNIGRAM, .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1,
        .add_dummy_prefix = 1, .remove_extra_whitespaces = 1, .escape_whitespaces = 1,
    };
    struct pb_reader model;
    pb_reader_init(&model, file, n, 0, path);
    uint64_t n_pieces;
    int rc = scan_model(&model, &s, &n_pieces, err);
    if (rc == 0 && n_pieces == 0)
        rc = fail(err, "%s: no pieces (ModelProto field 1); not a SentencePiece model", path);
    if (rc == 0 && check_settings(&s, path, err) < 0)
        rc = -1;
    if (rc == 0 && n_pieces > VOCAB_MAX_TOKENS)
        rc = fail(err, "%s: %" PRIu64 " pieces is more than the limit %u", path, n_pieces,
                  VOCAB_MAX_TOKENS);
    if (rc == 0)
        rc = vocab_alloc(v, (uint32_t)n_pieces, path, err);
    if (rc == 0)
        rc = read_pieces(&model, v, err);
    if (rc == 0)
        rc = check_duplicates(v, path, err);
    if (rc == 0)
        rc = check_special_pieces(v, s.byte_fallback, path, err);
    if (rc == 0)
        rc = special_id(s.bos_id, v->hdr.n_tokens, "bos_id", path, &v->bos_id, err);
    if (rc == 0)
        rc = special_id(s.eos_id, v->hdr.n_tokens, "eos_id", path, &v->eos_id, err);
    free(file);
    if (rc < 0) {
        vocab_free(v);
        return -1;
    }
    v->hdr.type = HEARTH_TOKENIZER_SPM;
    v->hdr.flags = (s.add_dummy_prefix ? HEARTH_TOK_ADD_DUMMY_PREFIX : 0) |
                   (s.byte_fallback ? HEARTH_TOK_BYTE_FALLBACK : 0);
    return 0;
}

/* ---- llama2.c tokenizer.bin ----
 * Layout (llama2.c tokenizer.py export / run.c build_tokenizer): u32
 * max_token_length, then per token f32 score, u32 byte length, the bytes.
 * tokenizer.py writes each SentencePiece piece with U+2581 replaced by ' ',
 * and BOS/EOS as "\n<s>\n" / "\n</s>\n". */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Walks every token record to the end of the file, checking each length,
 * and counts them. The file stores no count of its own: llama2.c takes it
 * from the checkpoint's vocab_size, which the caller passes as want (0: any). */
static int scan_llama2c(const uint8_t *file, size_t n, uint32_t want, const char *path,
                        uint32_t *n_tokens, char *err)
{
    if (n < 4)
        return fail(err, "%s: %zu bytes is too short for max_token_length", path, n);
    uint32_t max_len = le32(file);
    size_t pos = 4;
    uint32_t count = 0;
    while (pos < n) {
        if (count >= VOCAB_MAX_TOKENS)
            return fail(err, "%s: more than %u tokens", path, VOCAB_MAX_TOKENS);
        if (n - pos < 8)
            return fail(err, "%s: token %u at offset %zu: truncated score/length", path, count,
                        pos);
        uint32_t len = le32(file + pos + 4);
        if (len > max_len)
            return fail(err, "%s: token %u at offset %zu: length %u exceeds max_token_length %u",
                        path, count, pos, len, max_len);
        if (len > n - pos - 8)
            return fail(err, "%s: token %u at offset %zu: length %u runs past the end (%zu bytes)",
                        path, count, pos, len, n);
        pos += 8 + (size_t)len;
        count++;
    }
    if (want && count != want)
        return fail(err, "%s: holds %u tokens, but the model's vocab_size is %u", path, count,
                    want);
    if (count < 3)
        return fail(err, "%s: %u tokens; llama2.c needs at least <unk>, <s>, </s>", path, count);
    *n_tokens = count;
    return 0;
}

/* The SentencePiece form of one tokenizer.bin record (see the header comment
 * of vocab_read_llama2c). */
static int convert_llama2c_piece(struct vocab *v, uint32_t id, const uint8_t *bytes, size_t n,
                                 uint64_t offset, const char *path, char *err)
{
    if (id == 0) {
        if (n != 5 || memcmp(bytes, "<unk>", 5) != 0)
            return fail(err, "%s: token 0 at offset %" PRIu64 " is not \"<unk>\"", path, offset);
        v->kinds[id] = HEARTH_TOKEN_UNKNOWN;
        return set_piece(v, id, bytes, n, path, err);
    }
    if (id == 1 || id == 2) {
        const char *want = id == 1 ? "\n<s>\n" : "\n</s>\n";
        if (n != strlen(want) || memcmp(bytes, want, n) != 0)
            return fail(err, "%s: token %u at offset %" PRIu64 " is not %s as llama2.c writes it",
                        path, id, offset, id == 1 ? "BOS \"\\n<s>\\n\"" : "EOS \"\\n</s>\\n\"");
        v->kinds[id] = HEARTH_TOKEN_CONTROL;
        return set_piece(v, id, want + 1, n - 2, path, err);
    }
    if (n == 0)
        return fail(err, "%s: token %u at offset %" PRIu64 " is empty", path, id, offset);
    size_t bad = utf8_invalid_at(bytes, n);
    if (bad < n)
        return fail(err, "%s: token %u at offset %" PRIu64 " is not valid UTF-8 at byte %zu",
                    path, id, offset, bad);
    if (memchr(bytes, 0, n))
        return fail(err, "%s: token %u at offset %" PRIu64 " contains a NUL byte", path, id,
                    offset);
    if (tokenizer_byte_piece_value((const char *)bytes, n) >= 0) {
        v->kinds[id] = HEARTH_TOKEN_BYTE;
        return set_piece(v, id, bytes, n, path, err);
    }
    v->kinds[id] = HEARTH_TOKEN_NORMAL;
    size_t n_spaces = 0;
    for (size_t i = 0; i < n; i++)
        n_spaces += bytes[i] == ' ';
    char *out = malloc(n + 2 * n_spaces);
    if (!out)
        return fail(err, "%s: out of memory", path);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (bytes[i] == ' ') {
            memcpy(out + k, SPACE_MARK, sizeof SPACE_MARK);
            k += sizeof SPACE_MARK;
        } else
            out[k++] = (char)bytes[i];
    }
    int rc = set_piece(v, id, out, k, path, err);
    free(out);
    return rc;
}

/* Maps tokenizer.bin back to SentencePiece form: id 0 "<unk>" UNKNOWN, ids 1
 * and 2 "<s>" / "</s>" CONTROL, "<0xHH>" BYTE, all else NORMAL with ' ' ->
 * U+2581. llama2.c's encode adds a dummy prefix and falls back to bytes
 * (run.c encode), so both flags are set - byte fallback only when all 256
 * byte pieces exist, as SentencePiece itself requires. */
int vocab_read_llama2c(const char *path, uint32_t n_tokens, struct vocab *v, char *err)
{
    memset(v, 0, sizeof *v);
    uint8_t *file;
    size_t n;
    if (read_file(path, &file, &n, err) < 0)
        return -1;
    uint32_t count = 0;
    int rc = scan_llama2c(file, n, n_tokens, path, &count, err);
    if (rc == 0)
        rc = vocab_alloc(v, count, path, err);
    size_t pos = 4;
    for (uint32_t id = 0; rc == 0 && id < count; id++) {
        uint32_t bits = le32(file + pos), len = le32(file + pos + 4);
        float score;
        memcpy(&score, &bits, sizeof score);
        if (isnan(score))
            rc = fail(err, "%s: token %u at offset %zu has a NaN score", path, id, pos);
        v->scores[id] = score;
        if (rc == 0)
            rc = convert_llama2c_piece(v, id, file + pos + 8, len, pos, path, err);
        pos += 8 + (size_t)len;
    }
    if (rc == 0)
        rc = check_duplicates(v, path, err);
    free(file);
    if (rc < 0) {
        vocab_free(v);
        return -1;
    }
    uint32_t n_byte_pieces = 0;
    for (uint32_t i = 0; i < count; i++)
        n_byte_pieces += v->kinds[i] == HEARTH_TOKEN_BYTE;
    v->hdr.type = HEARTH_TOKENIZER_SPM;
    v->hdr.flags = HEARTH_TOK_ADD_DUMMY_PREFIX | (n_byte_pieces == 256 ? HEARTH_TOK_BYTE_FALLBACK : 0);
    v->hdr.unk_id = 0;
    v->bos_id = 1;
    v->eos_id = 2;
    return 0;
}

/* ---- serialization ---- */

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Layout: format.h, "Tokenizer section". max_piece_bytes is recomputed from
 * the pieces so the section is self-consistent whatever the reader set. */
int vocab_serialize(const struct vocab *v, uint8_t **out, uint64_t *n_bytes, char *err)
{
    uint32_t n = v->hdr.n_tokens, n_merges = v->hdr.n_merges;
    if (n == 0 || n > VOCAB_MAX_TOKENS || !v->pieces || !v->piece_bytes || !v->scores ||
        !v->kinds)
        return fail(err, "vocab_serialize: vocabulary of %u tokens is empty or incomplete", n);
    if (n_merges && !v->merges)
        return fail(err, "vocab_serialize: %u merges but no merge table", n_merges);
    uint64_t total_piece_bytes = 0;
    uint32_t max_piece = 0;
    for (uint32_t i = 0; i < n; i++) {
        total_piece_bytes += v->piece_bytes[i];
        if (v->piece_bytes[i] > max_piece)
            max_piece = v->piece_bytes[i];
    }
    if (total_piece_bytes > UINT32_MAX)
        return fail(err, "vocab_serialize: %" PRIu64 " bytes of pieces do not fit u32 offsets",
                    total_piece_bytes);
    size_t off_scores = sizeof(struct hearth_tokenizer_header);
    size_t off_kinds = off_scores + 4 * (size_t)n;
    size_t off_offsets = pad4(off_kinds + n);
    size_t off_merges = off_offsets + 4 * ((size_t)n + 1);
    size_t off_pieces = off_merges + 8 * (size_t)n_merges;
    size_t total = off_pieces + (size_t)total_piece_bytes;
    uint8_t *buf = calloc(1, total);
    if (!buf)
        return fail(err, "vocab_serialize: out of memory for %zu bytes", total);
    struct hearth_tokenizer_header h = v->hdr;
    h.max_piece_bytes = max_piece;
    h.reserved = 0;
    const uint32_t fields[8] = {h.type, h.n_tokens, h.n_merges, h.flags,
                                h.pre_tokenizer, h.unk_id, h.max_piece_bytes, h.reserved};
    for (int i = 0; i < 8; i++)
        put32(buf + 4 * i, fields[i]);
    uint32_t piece_offset = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v->scores[i], sizeof bits);
        put32(buf + off_scores + 4 * (size_t)i, bits);
        buf[off_kinds + i] = v->kinds[i];
        put32(buf + off_offsets + 4 * (size_t)i, piece_offset);
        if (v->piece_bytes[i])
            memcpy(buf + off_pieces + piece_offset, v->pieces[i], v->piece_bytes[i]);
        piece_offset += v->piece_bytes[i];
    }
    put32(buf + off_offsets + 4 * (size_t)n, piece_offset);
    for (uint32_t m = 0; m < n_merges; m++) {
        put32(buf + off_merges + 8 * (size_t)m, v->merges[m][0]);
        put32(buf + off_merges + 8 * (size_t)m + 4, v->merges[m][1]);
    }
    *out = buf;
    *n_bytes = total;
    return 0;
}
