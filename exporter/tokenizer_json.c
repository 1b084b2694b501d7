/* exporter/tokenizer_json.c - reads a Hugging Face tokenizer.json holding a
 * SentencePiece-style BPE (Llama 2, TinyLlama, Mistral as transformers saves
 * them) or a byte-level BPE (Llama 3, GPT-2, SmolLM2) into struct vocab.
 *
 * SentencePiece-style, accepted: model.type "BPE" (usually with
 * byte_fallback); spaces turned into U+2581 by a Replace normalizer or a
 * Metaspace pre-tokenizer; an optional dummy prefix (Prepend normalizer, or
 * Metaspace prepend_scheme "first"/"always", or the older add_prefix_space).
 * Byte-level (a ByteLevel pre-tokenizer or decoder), accepted: the
 * pre-tokenizer forms and regexes of enum hearth_pre_tokenizer, no
 * normalizer or NFC (Qwen2; alone or as a Sequence of NFC steps, which sets
 * HEARTH_TOK_NFC), a ByteLevel decoder, ignore_merges; pieces are decoded
 * from the GPT-2 byte alphabet to raw bytes, merges become id pairs.
 * Refused, by name: other model types (Unigram, WordPiece, WordLevel), any
 * normalizer or pre-tokenizer step or regex hearth does not implement (NFKC,
 * NFD, Lowercase, ...), added tokens with lstrip, rstrip or single_word in a
 * byte-level file, and with NFC added tokens that are "normalized" (matched
 * in the normalized text; hearth matches added tokens before normalizing).
 *
 * Scores. SentencePiece BPE merges the adjacent pair whose merged piece has
 * the highest score (FACTS.md). tokenizer.json has no scores, only merges in
 * priority order: transformers' SentencePieceExtractor (convert_slow_tokenizer.py)
 * lists every split of every piece and sorts the merges by the merged piece's
 * score, best first. So the merged piece of the merge at rank r gets score -r
 * (its first, best merge wins when several produce it), which reproduces the
 * order. Pieces that no merge produces (single characters, byte pieces,
 * special tokens) get -(n_merges + 1), below every merge: SentencePiece
 * starts from single characters and consults scores only to choose among
 * merges, so these scores never decide anything except that a piece no merge
 * can build never outranks one that a merge does build. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../json.h"
#include "../tokenizer.h"
#include "source.h"

#define TJ_MAX_FILE_BYTES (256ull << 20)
#define TJ_MAX_TOKENS (1u << 24)
/* Scores are floats: ranks stay exact below 2^24. */
#define TJ_MAX_MERGES (1u << 24)

static const char SPACE_MARK[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's space */

/* What the normalizer and pre-tokenizer say about spaces. */
struct spaces {
    int replaced;    /* ' ' becomes U+2581 */
    int dummy;       /* one U+2581 before the text */
};

static int type_is(const struct json *step, const char *type)
{
    return json_is_string(json_get(step, "type"), type);
}

static const char *type_of(const struct json *step)
{
    const struct json *t = json_get(step, "type");
    return t && t->type == JSON_STRING ? t->u.str : "(no type)";
}

/* Byte-level BPE announces itself with a ByteLevel pre-tokenizer or decoder,
 * alone or inside a Sequence. */
static int is_byte_level(const struct json *step, const char *list_key)
{
    if (type_is(step, "ByteLevel"))
        return 1;
    const struct json *list = json_get(step, list_key);
    for (size_t i = 0; i < json_len(list); i++)
        if (type_is(json_at(list, i), "ByteLevel"))
            return 1;
    return 0;
}

static int normalizer_step(const struct json *step, const char *path, struct spaces *sp,
                           char *err)
{
    if (type_is(step, "Prepend") && json_is_string(json_get(step, "prepend"), SPACE_MARK)) {
        sp->dummy = 1;
        return 0;
    }
    if (type_is(step, "Replace") &&
        json_is_string(json_get(json_get(step, "pattern"), "String"), " ") &&
        json_is_string(json_get(step, "content"), SPACE_MARK)) {
        sp->replaced = 1;
        return 0;
    }
    return fail(err, "%s: normalizer %.64s is not supported (hearth's SentencePiece tokenizer "
                "only prepends U+2581 and replaces ' ' with U+2581)", path, type_of(step));
}

static int read_normalizer(const struct json *root, const char *path, struct spaces *sp,
                           char *err)
{
    const struct json *n = json_get(root, "normalizer");
    if (!n || n->type == JSON_NULL)
        return 0;
    if (!type_is(n, "Sequence"))
        return normalizer_step(n, path, sp, err);
    const struct json *list = json_get(n, "normalizers");
    for (size_t i = 0; i < json_len(list); i++)
        if (normalizer_step(json_at(list, i), path, sp, err) < 0)
            return -1;
    return 0;
}

/* Metaspace (tokenizers pre_tokenizers/metaspace.rs): replacement, then
 * prepend_scheme "always" | "first" | "never"; files from before
 * prepend_scheme carry add_prefix_space instead. */
static int metaspace_step(const struct json *step, const char *path, struct spaces *sp,
                          char *err)
{
    const struct json *repl = json_get(step, "replacement");
    if (repl && !json_is_string(repl, SPACE_MARK))
        return fail(err, "%s: Metaspace replacement must be U+2581", path);
    sp->replaced = 1;
    const struct json *scheme = json_get(step, "prepend_scheme");
    if (scheme && scheme->type != JSON_NULL) {
        if (json_is_string(scheme, "first") || json_is_string(scheme, "always"))
            sp->dummy = 1;
        else if (!json_is_string(scheme, "never"))
            return fail(err, "%s: Metaspace prepend_scheme must be \"first\", \"always\" or "
                        "\"never\" (byte %zu)", path, scheme->offset);
        return 0;
    }
    int add = 1;
    if (json_get_bool(step, path, "add_prefix_space", JSON_OPTIONAL, &add, err) < 0)
        return -1;
    sp->dummy |= add;
    return 0;
}

static int read_pre_tokenizer(const struct json *root, const char *path, struct spaces *sp,
                              char *err)
{
    const struct json *pt = json_get(root, "pre_tokenizer");
    if (!pt || pt->type == JSON_NULL)
        return 0;
    const struct json *list = type_is(pt, "Sequence") ? json_get(pt, "pretokenizers") : NULL;
    size_t n = list ? json_len(list) : 1;
    for (size_t i = 0; i < n; i++) {
        const struct json *step = list ? json_at(list, i) : pt;
        if (!type_is(step, "Metaspace"))
            return fail(err, "%s: pre-tokenizer %.64s is not supported (hearth's SentencePiece "
                        "tokenizer only takes Metaspace)", path, type_of(step));
        if (metaspace_step(step, path, sp, err) < 0)
            return -1;
    }
    return 0;
}

/* Checks the model section and returns it (object "model", type BPE). */
static int check_model(const struct json *root, const char *path, int byte_level,
                       const struct json **model, int *byte_fallback, int *ignore_merges,
                       char *err)
{
    if (root->type != JSON_OBJECT)
        return fail(err, "%s: must be a JSON object, found %s", path, json_type_name(root->type));
    if (json_get_typed(root, path, "model", JSON_REQUIRED, JSON_OBJECT, model, err) < 0)
        return -1;
    const struct json *m = *model, *type = json_get(m, "type");
    /* Files from tokenizers before 0.11 may omit model.type; BPE is the
     * model with merges. */
    if (type ? !json_is_string(type, "BPE") : !json_get(m, "merges"))
        return fail(err, "%s: model type %.64s is not supported; hearth reads BPE "
                    "tokenizer.json files only", path, type_of(m));
    char ctx[HEARTH_ERR_BYTES / 2];
    snprintf(ctx, sizeof ctx, "%s: model", path);
    double dropout = 0;
    *byte_fallback = 0;
    *ignore_merges = 0;
    if (json_get_bool(m, ctx, "byte_fallback", JSON_OPTIONAL, byte_fallback, err) < 0 ||
        json_get_bool(m, ctx, "ignore_merges", JSON_OPTIONAL, ignore_merges, err) < 0 ||
        json_get_num(m, ctx, "dropout", JSON_OPTIONAL, &dropout, err) < 0)
        return -1;
    if (*ignore_merges && !byte_level)
        return fail(err, "%s: ignore_merges is not supported for SentencePiece-style BPE", ctx);
    if (*byte_fallback && byte_level)
        return fail(err, "%s: byte_fallback is not supported for byte-level BPE (every byte "
                    "already has a piece)", ctx);
    if (dropout != 0)
        return fail(err, "%s: dropout %g is not supported (it makes tokenization random)", ctx,
                    dropout);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const struct json *a = json_get(m, affixes[i]);
        if (a && a->type != JSON_NULL && !json_is_string(a, ""))
            return fail(err, "%s: %s is not supported", ctx, affixes[i]);
    }
    return 0;
}

/* ---- pieces -------------------------------------------------------------- */

static int set_piece(struct vocab *v, uint32_t id, const char *bytes, size_t n,
                     const char *path, char *err)
{
    if (n > UINT32_MAX)
        return fail(err, "%s: piece %u is too long", path, id);
    v->pieces[id] = malloc(n + 1);
    if (!v->pieces[id])
        return fail(err, "%s: out of memory", path);
    memcpy(v->pieces[id], bytes, n);
    v->pieces[id][n] = 0;
    v->piece_bytes[id] = (uint32_t)n;
    if (n > v->hdr.max_piece_bytes)
        v->hdr.max_piece_bytes = (uint32_t)n;
    return 0;
}

/* Largest id named by the vocab and added_tokens, + 1. */
static int count_tokens(const struct json *vocab, const struct json *added, const char *path,
                        uint32_t *n_tokens, char *err)
{
    uint64_t n = 0, id;
    for (size_t i = 0; i < vocab->n; i++) {
        const struct json_member *m = json_member_at(vocab, i);
        if (!json_uint64(&m->value, &id) || id >= TJ_MAX_TOKENS)
            return fail(err, "%s: model.vocab[\"%.64s\"] must be an id below %u (byte %zu)", path,
                        m->key, TJ_MAX_TOKENS, m->value.offset);
        n = id + 1 > n ? id + 1 : n;
    }
    for (size_t i = 0; i < json_len(added); i++) {
        const struct json *t = json_at(added, i);
        if (!json_uint64(json_get(t, "id"), &id) || id >= TJ_MAX_TOKENS)
            return fail(err, "%s: added_tokens[%zu].id must be an id below %u", path, i,
                        TJ_MAX_TOKENS);
        n = id + 1 > n ? id + 1 : n;
    }
    if (n == 0)
        return fail(err, "%s: model.vocab is empty", path);
    *n_tokens = (uint32_t)n;
    return 0;
}

static int fill_vocab_pieces(struct vocab *v, const struct json *vocab, const char *path,
                             char *err)
{
    for (size_t i = 0; i < vocab->n; i++) {
        const struct json_member *m = json_member_at(vocab, i);
        uint64_t id;
        json_uint64(&m->value, &id); /* checked by count_tokens */
        if (v->pieces[id])
            return fail(err, "%s: model.vocab gives id %" PRIu64 " to both \"%.64s\" and "
                        "\"%.64s\"", path, id, v->pieces[id], m->key);
        if (set_piece(v, (uint32_t)id, m->key, m->key_len, path, err) < 0)
            return -1;
        v->kinds[id] = HEARTH_TOKEN_NORMAL;
    }
    return 0;
}

/* added_tokens: special ones are CONTROL pieces, the others USER_DEFINED
 * (matched whole, like SentencePiece user-defined symbols). An added token
 * may repeat a vocab entry (Llama 2's <unk>, <s>, </s>) with the same id. */
static int fill_added_tokens(struct vocab *v, const struct json *added, const char *path,
                             char *err)
{
    for (size_t i = 0; i < json_len(added); i++) {
        const struct json *t = json_at(added, i), *content;
        char ctx[HEARTH_ERR_BYTES / 2];
        snprintf(ctx, sizeof ctx, "%s: added_tokens[%zu]", path, i);
        int special = 0;
        if (json_get_typed(t, ctx, "content", JSON_REQUIRED, JSON_STRING, &content, err) < 0 ||
            json_get_bool(t, ctx, "special", JSON_OPTIONAL, &special, err) < 0)
            return -1;
        uint64_t id;
        json_uint64(json_get(t, "id"), &id); /* checked by count_tokens */
        if (v->pieces[id]) {
            if (v->piece_bytes[id] != content->n || memcmp(v->pieces[id], content->u.str,
                                                           content->n))
                return fail(err, "%s: id %" PRIu64 " is \"%.64s\" here but \"%.64s\" elsewhere",
                            ctx, id, content->u.str, v->pieces[id]);
        } else if (set_piece(v, (uint32_t)id, content->u.str, content->n, path, err) < 0) {
            return -1;
        }
        v->kinds[id] = special ? HEARTH_TOKEN_CONTROL : HEARTH_TOKEN_USER_DEFINED;
    }
    return 0;
}

struct piece_ref {
    const char *bytes;
    uint32_t n, id;
};

static int compare_piece_ref(const void *a, const void *b)
{
    const struct piece_ref *x = a, *y = b;
    int c = memcmp(x->bytes, y->bytes, x->n < y->n ? x->n : y->n);
    if (c)
        return c;
    return x->n != y->n ? (x->n < y->n ? -1 : 1) : (x->id < y->id ? -1 : x->id > y->id);
}

/* The unknown piece: model.unk_token, else a piece "<unk>" (SentencePiece's
 * default unk_piece, sentencepiece_model.proto TrainerSpec). */
static int set_unknown(struct vocab *v, const struct json *model, const char *path, char *err)
{
    v->hdr.unk_id = UINT32_MAX;
    const struct json *unk = json_get(model, "unk_token"), *id = NULL;
    if (unk && unk->type != JSON_NULL) {
        if (unk->type == JSON_STRING)
            id = json_get_n(json_get(model, "vocab"), unk->u.str, unk->n);
        if (!id)
            return fail(err, "%s: model.unk_token is not a piece of model.vocab", path);
    } else {
        id = json_get(json_get(model, "vocab"), "<unk>");
    }
    uint64_t u;
    if (json_uint64(id, &u)) {
        v->hdr.unk_id = (uint32_t)u;
        v->kinds[u] = HEARTH_TOKEN_UNKNOWN;
    }
    return 0;
}

/* Every id has a piece, no two pieces are the same string; kinds of
 * byte pieces are set. */
static int finish_pieces(struct vocab *v, int byte_fallback, const char *path, char *err)
{
    uint32_t n = v->hdr.n_tokens, n_byte_pieces = 0;
    for (uint32_t id = 0; id < n; id++) {
        if (!v->pieces[id])
            return fail(err, "%s: no piece has id %u (ids must be 0 .. %u without gaps)", path,
                        id, n - 1);
        if (!v->piece_bytes[id])
            return fail(err, "%s: piece %u is the empty string", path, id);
        if (byte_fallback && v->kinds[id] == HEARTH_TOKEN_NORMAL &&
            tokenizer_byte_piece_value(v->pieces[id], v->piece_bytes[id]) >= 0) {
            v->kinds[id] = HEARTH_TOKEN_BYTE;
            n_byte_pieces++;
        }
    }
    /* tokenizers byte_fallback looks up all 256 <0xNN> pieces; as in
     * vocab_read_spm_model, a vocabulary with byte fallback must have them. */
    if (byte_fallback && n_byte_pieces != 256)
        return fail(err, "%s: byte_fallback is on but there are %u <0xNN> pieces, not 256", path,
                    n_byte_pieces);
    struct piece_ref *refs = malloc((size_t)n * sizeof *refs);
    if (!refs)
        return fail(err, "%s: out of memory", path);
    for (uint32_t i = 0; i < n; i++)
        refs[i] = (struct piece_ref){v->pieces[i], v->piece_bytes[i], i};
    qsort(refs, n, sizeof *refs, compare_piece_ref);
    int rc = 0;
    for (uint32_t i = 1; i < n && rc == 0; i++)
        if (refs[i].n == refs[i - 1].n && !memcmp(refs[i].bytes, refs[i - 1].bytes, refs[i].n))
            rc = fail(err, "%s: ids %u and %u are the same piece \"%.64s\"", path,
                      refs[i - 1].id, refs[i].id, refs[i].bytes);
    free(refs);
    return rc;
}

/* ---- merges -------------------------------------------------------------- */

/* Splits merge i into its two pieces: "a b" (one space) or ["a", "b"]. */
static int merge_parts(const struct json *m, size_t i, const char *path, const char *part[2],
                       size_t len[2], char *err)
{
    if (m->type == JSON_STRING) {
        const char *space = memchr(m->u.str, ' ', m->n);
        if (!space || memchr(space + 1, ' ', m->n - (size_t)(space - m->u.str) - 1))
            return fail(err, "%s: model.merges[%zu] \"%.64s\" is not two pieces separated by "
                        "one space", path, i, m->u.str);
        part[0] = m->u.str;
        len[0] = (size_t)(space - m->u.str);
        part[1] = space + 1;
        len[1] = m->n - len[0] - 1;
        return 0;
    }
    const struct json *a = json_at(m, 0), *b = json_at(m, 1);
    if (m->type != JSON_ARRAY || m->n != 2 || a->type != JSON_STRING || b->type != JSON_STRING)
        return fail(err, "%s: model.merges[%zu] must be \"a b\" or [\"a\", \"b\"] (byte %zu)",
                    path, i, m->offset);
    part[0] = a->u.str;
    len[0] = a->n;
    part[1] = b->u.str;
    len[1] = b->n;
    return 0;
}

/* model.merges: required, an array of at most TJ_MAX_MERGES. */
static int get_merges(const struct json *model, const char *path, const struct json **merges,
                      char *err)
{
    if (json_get_typed(model, path, "merges", JSON_REQUIRED, JSON_ARRAY, merges, err) < 0)
        return -1;
    if ((*merges)->n > TJ_MAX_MERGES)
        return fail(err, "%s: %zu merges is more than the %u supported", path, (*merges)->n,
                    TJ_MAX_MERGES);
    return 0;
}

/* Room for joining a merge's two parts, grown as needed. */
struct join_buf {
    char *bytes;
    size_t cap;
};

/* The ids of merge r's two parts and of their concatenation (id[0..2]).
 * As tokenizers BpeBuilder::build does, a merge whose parts or
 * concatenation are not in model.vocab is refused. */
static int merge_ids(const struct json *vocab, const struct json *merges, size_t r,
                     const char *path, struct join_buf *j, uint64_t id[3], char *err)
{
    const char *part[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    if (merge_parts(json_at(merges, r), r, path, part, len, err) < 0)
        return -1;
    for (int k = 0; k < 2; k++)
        if (!json_uint64(json_get_n(vocab, part[k], len[k]), &id[k]))
            return fail(err, "%s: model.merges[%zu]: \"%.*s\" is not in model.vocab", path, r,
                        (int)(len[k] > 64 ? 64 : len[k]), part[k]);
    /* both parts lie in a file of at most TJ_MAX_FILE_BYTES: 2 n + 1 cannot overflow */
    size_t n = len[0] + len[1];
    if (n >= j->cap) {
        char *bytes = realloc(j->bytes, 2 * n + 1);
        if (!bytes)
            return fail(err, "%s: out of memory", path);
        j->bytes = bytes;
        j->cap = 2 * n + 1;
    }
    memcpy(j->bytes, part[0], len[0]);
    memcpy(j->bytes + len[0], part[1], len[1]);
    if (!json_uint64(json_get_n(vocab, j->bytes, n), &id[2]))
        return fail(err, "%s: model.merges[%zu]: the merged piece \"%.*s\" is not in "
                    "model.vocab", path, r, (int)(n > 64 ? 64 : n), j->bytes);
    return 0;
}

static int set_scores(struct vocab *v, const struct json *model, const char *path, char *err)
{
    const struct json *vocab = json_get(model, "vocab"), *merges;
    if (get_merges(model, path, &merges, err) < 0)
        return -1;
    const float unset = 1.0f; /* above every assigned score */
    for (uint32_t id = 0; id < v->hdr.n_tokens; id++)
        v->scores[id] = unset;
    struct join_buf joined = {NULL, 0};
    int rc = 0;
    for (size_t r = 0; r < merges->n && rc == 0; r++) {
        uint64_t id[3];
        rc = merge_ids(vocab, merges, r, path, &joined, id, err);
        if (rc == 0 && v->scores[id[2]] == unset)
            v->scores[id[2]] = -(float)r;
    }
    free(joined.bytes);
    float floor_score = -1.0f - (float)merges->n;
    for (uint32_t id = 0; rc == 0 && id < v->hdr.n_tokens; id++)
        if (v->scores[id] == unset)
            v->scores[id] = floor_score;
    return rc;
}

/* ---- byte-level BPE ------------------------------------------------------ */

/* The Split regexes hearth implements, exactly as tokenizer.json spells
 * them (after JSON unescaping); tokenizer.c quotes their sources. */
static const struct {
    const char *regex;
    uint32_t pre;
    const char *name;
} KNOWN_REGEXES[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", HEARTH_PRE_LLAMA3, "Llama 3"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", HEARTH_PRE_QWEN2, "Qwen2"},
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
     HEARTH_PRE_GPT2, "GPT-2"},
};

/* ByteLevel pre-tokenizer (tokenizers pre_tokenizers/byte_level.rs):
 * add_prefix_space must be false (a space before the text, which none of
 * the supported models asks for, is refused); use_regex (default
 * true) runs the GPT-2 regex. */
static int byte_level_step(const struct json *step, const char *path, int *use_regex, char *err)
{
    int add_prefix_space = 0;
    *use_regex = 1;
    char ctx[HEARTH_ERR_BYTES / 2];
    snprintf(ctx, sizeof ctx, "%s: pre_tokenizer ByteLevel", path);
    if (json_get_bool(step, ctx, "add_prefix_space", JSON_OPTIONAL, &add_prefix_space, err) < 0 ||
        json_get_bool(step, ctx, "use_regex", JSON_OPTIONAL, use_regex, err) < 0)
        return -1;
    if (add_prefix_space)
        return fail(err, "%s: add_prefix_space true is not supported", ctx);
    return 0;
}

/* Split with a Regex pattern, behavior Isolated, not inverted: the pieces
 * are the matches (the regexes match everywhere, so nothing is between). */
static int split_step(const struct json *step, const char *path, uint32_t *pre, char *err)
{
    const struct json *regex = json_get(json_get(step, "pattern"), "Regex");
    const struct json *behavior = json_get(step, "behavior"), *invert = json_get(step, "invert");
    if (!regex || regex->type != JSON_STRING)
        return fail(err, "%s: byte-level BPE pre-tokenizer Split without a Regex pattern is not "
                    "supported", path);
    if ((behavior && !json_is_string(behavior, "Isolated")) ||
        (invert && invert->type != JSON_FALSE))
        return fail(err, "%s: byte-level BPE pre-tokenizer Split must have behavior \"Isolated\" "
                    "and invert false", path);
    for (size_t i = 0; i < sizeof KNOWN_REGEXES / sizeof KNOWN_REGEXES[0]; i++) {
        if (json_is_string(regex, KNOWN_REGEXES[i].regex)) {
            *pre = KNOWN_REGEXES[i].pre;
            return 0;
        }
    }
    return fail(err, "%s: byte-level BPE pre-tokenizer Split regex \"%.160s\" is not supported "
                "yet (hearth implements the Llama 3, Qwen2 and GPT-2 patterns)", path,
                regex->u.str);
}

/* The pre-tokenizer forms of the supported models:
 *   ByteLevel(use_regex)                       GPT-2 regex, or none
 *   Sequence[Split(regex), ByteLevel(no regex)] Llama 3, Qwen2 (or GPT-2)
 *   Sequence[Digits(individual), ByteLevel(use_regex)] SmolLM */
static int read_byte_level_pre(const struct json *root, const char *path, uint32_t *pre,
                               char *err)
{
    const struct json *pt = json_get(root, "pre_tokenizer");
    if (!pt || pt->type == JSON_NULL)
        return fail(err, "%s: byte-level BPE needs a ByteLevel pre-tokenizer (the decoder is "
                    "ByteLevel but there is no pre_tokenizer)", path);
    const struct json *list = type_is(pt, "Sequence") ? json_get(pt, "pretokenizers") : NULL;
    size_t n = list ? json_len(list) : 1;
    const struct json *first = list ? json_at(list, 0) : pt, *last = list ? json_at(list, n - 1) : pt;
    int use_regex;
    if (n == 0 || n > 2 || !type_is(last, "ByteLevel"))
        return fail(err, "%s: byte-level BPE pre-tokenizer %s%s%s is not supported (hearth "
                    "implements ByteLevel, Split + ByteLevel and Digits + ByteLevel)", path,
                    type_of(pt), list ? " of " : "", list ? (n ? type_of(first) : "nothing") : "");
    if (byte_level_step(last, path, &use_regex, err) < 0)
        return -1;
    if (n == 1) {
        *pre = use_regex ? HEARTH_PRE_GPT2 : HEARTH_PRE_NONE;
        return 0;
    }
    if (type_is(first, "Split")) {
        if (split_step(first, path, pre, err) < 0)
            return -1;
        if (use_regex)
            return fail(err, "%s: a Split pre-tokenizer followed by ByteLevel with use_regex "
                        "true (two regexes) is not supported", path);
        return 0;
    }
    int individual = 0;
    if (type_is(first, "Digits") &&
        json_get_bool(first, path, "individual_digits", JSON_OPTIONAL, &individual, err) < 0)
        return -1;
    if (!type_is(first, "Digits") || !individual || !use_regex)
        return fail(err, "%s: byte-level BPE pre-tokenizer %s before ByteLevel is not supported "
                    "(hearth implements Split(regex), and Digits with individual_digits before "
                    "a ByteLevel with use_regex)", path, type_of(first));
    *pre = HEARTH_PRE_SMOLLM;
    return 0;
}

/* No normalizer (Llama 3, GPT-2, SmolLM2), or NFC (Qwen2): alone, or a
 * Sequence of NFC steps (NFC applied twice is NFC once); *nfc says which. */
static int read_byte_level_normalizer(const struct json *root, const char *path, int *nfc,
                                      char *err)
{
    const struct json *n = json_get(root, "normalizer");
    *nfc = 0;
    if (!n || n->type == JSON_NULL)
        return 0;
    const struct json *list = type_is(n, "Sequence") ? json_get(n, "normalizers") : NULL;
    size_t count = list ? json_len(list) : 1;
    for (size_t i = 0; i < count; i++) {
        const struct json *step = list ? json_at(list, i) : n;
        if (!type_is(step, "NFC"))
            return fail(err, "%s: normalizer %.64s is not supported for byte-level BPE (hearth "
                        "implements NFC only)", path, type_of(step));
        *nfc = 1;
    }
    return 0;
}

static int check_byte_level_decoder(const struct json *root, const char *path, char *err)
{
    const struct json *d = json_get(root, "decoder");
    if (!d || d->type == JSON_NULL || type_is(d, "ByteLevel"))
        return 0;
    return fail(err, "%s: decoder %.64s is not supported for byte-level BPE (hearth decodes "
                "as ByteLevel does)", path, type_of(d));
}

/* model.vocab keys are spelled in the GPT-2 byte alphabet; the pieces are
 * the bytes they stand for. */
static int fill_byte_level_pieces(struct vocab *v, const struct json *vocab, const char *path,
                                  char *err)
{
    size_t cap = 0;
    char *buf = NULL;
    int rc = 0;
    for (size_t i = 0; i < vocab->n && rc == 0; i++) {
        const struct json_member *m = json_member_at(vocab, i);
        uint64_t id;
        size_t bad_at = 0;
        json_uint64(&m->value, &id); /* checked by count_tokens */
        if (m->key_len > cap) {
            cap = m->key_len;
            char *b = realloc(buf, cap);
            if (!b) {
                rc = fail(err, "%s: out of memory", path);
                break;
            }
            buf = b;
        }
        long n = tokenizer_gpt2_bytes(m->key, m->key_len, buf, &bad_at);
        if (n < 0)
            rc = fail(err, "%s: model.vocab[\"%.64s\"] (id %" PRIu64 "): byte %zu starts a "
                      "character outside the GPT-2 byte alphabet", path, m->key, id, bad_at);
        else if (v->pieces[id])
            rc = fail(err, "%s: model.vocab gives id %" PRIu64 " to two pieces, the second "
                      "\"%.64s\"", path, id, m->key);
        else
            rc = set_piece(v, (uint32_t)id, buf, (size_t)n, path, err);
        if (rc == 0)
            v->kinds[id] = HEARTH_TOKEN_NORMAL;
    }
    free(buf);
    return rc;
}

/* Added tokens with lstrip, rstrip or single_word change how their text
 * is matched (tokenizers added_vocabulary.rs find_matches); hearth matches
 * exact text only, so it refuses them. With a normalizer, tokenizers finds
 * a "normalized" added token in the normalized text and the others in the
 * text as given (AddedVocabulary::extract_and_normalize); hearth does the
 * latter for all, so with NFC it refuses normalized ones. A missing
 * "normalized" means what tokenizers' AddedToken::from gives: !special. */
static int check_added_flags(const struct json *added, int nfc, const char *path, char *err)
{
    static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
    for (size_t i = 0; i < json_len(added); i++) {
        const struct json *t = json_at(added, i);
        for (int f = 0; f < 3; f++) {
            const struct json *x = json_get(t, flags[f]);
            if (x && x->type == JSON_TRUE)
                return fail(err, "%s: added_tokens[%zu]: %s true is not supported", path, i,
                            flags[f]);
        }
        const struct json *normalized = json_get(t, "normalized");
        const struct json *special = json_get(t, "special");
        int is_normalized = normalized ? normalized->type == JSON_TRUE
                                       : !(special && special->type == JSON_TRUE);
        if (nfc && t && t->type == JSON_OBJECT && is_normalized)
            return fail(err, "%s: added_tokens[%zu]: a normalized added token (\"normalized\": "
                        "true, or absent on a non-special one) with the NFC normalizer is not "
                        "supported (hearth matches added tokens before normalizing)", path, i);
    }
    return 0;
}

struct merge_ref {
    uint32_t a, b, rank;
};

static int compare_merge_ref(const void *x, const void *y)
{
    const struct merge_ref *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    if (p->b != q->b)
        return p->b < q->b ? -1 : 1;
    return p->rank < q->rank ? -1 : p->rank > q->rank;
}

/* A pair listed twice means different things to tokenizers (last rank
 * wins) and llama.cpp (first wins): refused. */
static int check_duplicate_merges(const struct vocab *v, const char *path, char *err)
{
    uint32_t n = v->hdr.n_merges;
    struct merge_ref *r = malloc(((size_t)n + 1) * sizeof *r);
    if (!r)
        return fail(err, "%s: out of memory", path);
    for (uint32_t i = 0; i < n; i++)
        r[i] = (struct merge_ref){v->merges[i][0], v->merges[i][1], i};
    qsort(r, n, sizeof *r, compare_merge_ref);
    int rc = 0;
    for (uint32_t i = 1; i < n && rc == 0; i++)
        if (r[i].a == r[i - 1].a && r[i].b == r[i - 1].b)
            rc = fail(err, "%s: model.merges[%u] and model.merges[%u] are the same pair", path,
                      r[i - 1].rank, r[i].rank);
    free(r);
    return rc;
}

/* Merges name model.vocab keys (GPT-2 alphabet); each becomes a pair of
 * ids in rank order (merge_ids refuses what tokenizers refuses). */
static int read_byte_level_merges(struct vocab *v, const struct json *model, const char *path,
                                  char *err)
{
    const struct json *vocab = json_get(model, "vocab"), *merges;
    if (get_merges(model, path, &merges, err) < 0)
        return -1;
    v->merges = malloc((merges->n + 1) * sizeof *v->merges);
    struct join_buf joined = {NULL, 0};
    int rc = v->merges ? 0 : fail(err, "%s: out of memory for %zu merges", path, merges->n);
    for (size_t r = 0; r < merges->n && rc == 0; r++) {
        uint64_t id[3];
        rc = merge_ids(vocab, merges, r, path, &joined, id, err);
        if (rc == 0) {
            v->merges[r][0] = (uint32_t)id[0];
            v->merges[r][1] = (uint32_t)id[1];
        }
    }
    free(joined.bytes);
    v->hdr.n_merges = (uint32_t)merges->n;
    if (rc == 0)
        rc = check_duplicate_merges(v, path, err);
    return rc;
}

/* BPE starts from one piece per byte, so all 256 must be model pieces. */
static int check_byte_coverage(const struct vocab *v, const char *path, char *err)
{
    uint8_t have[256] = {0};
    for (uint32_t id = 0; id < v->hdr.n_tokens; id++)
        if (v->piece_bytes[id] == 1 && v->kinds[id] == HEARTH_TOKEN_NORMAL)
            have[(uint8_t)v->pieces[id][0]] = 1;
    for (int b = 0; b < 256; b++) {
        if (!have[b]) {
            char c[3] = {0};
            tokenizer_gpt2_char((uint8_t)b, c);
            return fail(err, "%s: the byte-level BPE vocabulary has no piece for byte 0x%02X "
                        "(\"%s\" in model.vocab)", path, b, c);
        }
    }
    return 0;
}

/* A byte-level BPE tokenizer.json (Llama 3, GPT-2, SmolLM2, Qwen2): pieces are
 * raw bytes, scores are 0, merges are id pairs, added tokens keep their
 * text as is (tokenizers AddedVocabulary stores content unencoded). BOS and
 * EOS are left to config.json: tokenizer.json does not name them. */
static int read_byte_level(const struct json *root, const struct json *model, int ignore_merges,
                           const char *path, struct vocab *v, char *err)
{
    const struct json *vocab, *added = NULL;
    uint32_t pre = 0, n = 0;
    int nfc = 0;
    if (read_byte_level_pre(root, path, &pre, err) < 0 ||
        read_byte_level_normalizer(root, path, &nfc, err) < 0 ||
        check_byte_level_decoder(root, path, err) < 0)
        return -1;
    if (json_get_typed(model, path, "vocab", JSON_REQUIRED, JSON_OBJECT, &vocab, err) < 0 ||
        json_get_typed(root, path, "added_tokens", JSON_OPTIONAL, JSON_ARRAY, &added, err) < 0 ||
        check_added_flags(added, nfc, path, err) < 0 ||
        count_tokens(vocab, added, path, &n, err) < 0)
        return -1;
    /* ids are 0 .. n - 1 without gaps, so a larger id than the entries can
     * fill is an error found before allocating for it */
    if (n > vocab->n + json_len(added))
        return fail(err, "%s: ids go up to %u but model.vocab and added_tokens have only %zu "
                    "entries, so some id has no piece", path, n - 1, vocab->n + json_len(added));
    if (vocab_alloc(v, n, path, err) < 0)
        return -1;
    if (fill_byte_level_pieces(v, vocab, path, err) < 0 ||
        fill_added_tokens(v, added, path, err) < 0 || finish_pieces(v, 0, path, err) < 0 ||
        check_byte_coverage(v, path, err) < 0 || read_byte_level_merges(v, model, path, err) < 0)
        return -1;
    v->hdr.type = HEARTH_TOKENIZER_BYTE_BPE;
    v->hdr.flags = (ignore_merges ? HEARTH_TOK_IGNORE_MERGES : 0) | (nfc ? HEARTH_TOK_NFC : 0);
    v->hdr.pre_tokenizer = pre;
    v->hdr.unk_id = UINT32_MAX;
    v->bos_id = UINT32_MAX;
    v->eos_id = UINT32_MAX;
    return 0;
}

/* ---- the reader ---------------------------------------------------------- */

/* SentencePiece's default names for the BOS and EOS pieces
 * (sentencepiece_model.proto, TrainerSpec bos_piece "<s>", eos_piece "</s>"). */
static uint32_t control_id(const struct vocab *v, const char *piece)
{
    size_t n = strlen(piece);
    for (uint32_t id = 0; id < v->hdr.n_tokens; id++)
        if (v->kinds[id] == HEARTH_TOKEN_CONTROL && v->piece_bytes[id] == n &&
            !memcmp(v->pieces[id], piece, n))
            return id;
    return UINT32_MAX;
}

static int read_vocab(const struct json *root, const char *path, struct vocab *v, char *err)
{
    const struct json *model, *vocab, *added = NULL;
    int byte_fallback, ignore_merges;
    struct spaces sp = {0};
    int byte_level = is_byte_level(json_get(root, "pre_tokenizer"), "pretokenizers") ||
                     is_byte_level(json_get(root, "decoder"), "decoders");
    if (check_model(root, path, byte_level, &model, &byte_fallback, &ignore_merges, err) < 0)
        return -1;
    if (byte_level)
        return read_byte_level(root, model, ignore_merges, path, v, err);
    if (read_normalizer(root, path, &sp, err) < 0 || read_pre_tokenizer(root, path, &sp, err) < 0)
        return -1;
    if (!sp.replaced)
        return fail(err, "%s: neither a Metaspace pre-tokenizer nor a Replace(' ', U+2581) "
                    "normalizer: not a SentencePiece-style BPE tokenizer", path);
    uint32_t n = 0;
    if (json_get_typed(model, path, "vocab", JSON_REQUIRED, JSON_OBJECT, &vocab, err) < 0 ||
        json_get_typed(root, path, "added_tokens", JSON_OPTIONAL, JSON_ARRAY, &added, err) < 0 ||
        count_tokens(vocab, added, path, &n, err) < 0)
        return -1;
    if (vocab_alloc(v, n, path, err) < 0)
        return -1;
    if (fill_vocab_pieces(v, vocab, path, err) < 0 || fill_added_tokens(v, added, path, err) < 0 ||
        finish_pieces(v, byte_fallback, path, err) < 0 || set_unknown(v, model, path, err) < 0 ||
        set_scores(v, model, path, err) < 0)
        return -1;
    v->hdr.type = HEARTH_TOKENIZER_SPM;
    v->hdr.flags = (sp.dummy ? HEARTH_TOK_ADD_DUMMY_PREFIX : 0) |
                   (byte_fallback ? HEARTH_TOK_BYTE_FALLBACK : 0);
    v->bos_id = control_id(v, "<s>");
    v->eos_id = control_id(v, "</s>");
    return 0;
}

int vocab_read_tokenizer_json(const char *path, struct vocab *v, char *err)
{
    memset(v, 0, sizeof *v);
    struct json_doc *doc;
    if (json_parse_file(path, TJ_MAX_FILE_BYTES, JSON_DEFAULT_MAX_DEPTH, &doc, err) < 0)
        return -1;
    int rc = read_vocab(json_root(doc), path, v, err);
    json_free(doc);
    if (rc < 0)
        vocab_free(v);
    return rc;
}
