/* exporter/tokenizer_json.c - reads a Hugging Face tokenizer.json holding a
 * SentencePiece-style BPE (Llama 2, TinyLlama, Mistral as transformers saves
 * them) into struct vocab.
 *
 * Accepted: model.type "BPE" (usually with byte_fallback); spaces turned into
 * U+2581 by a Replace normalizer or a Metaspace pre-tokenizer; an optional
 * dummy prefix (Prepend normalizer, or Metaspace prepend_scheme
 * "first"/"always", or the older add_prefix_space). Refused, by name:
 * byte-level BPE (ByteLevel pre-tokenizer or decoder, e.g. Llama 3; not
 * supported yet), other model types (Unigram, WordPiece, WordLevel), and
 * any normalizer or pre-tokenizer step hearth's SentencePiece tokenizer does
 * not implement.
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

#include "json.h"
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
static int check_model(const struct json *root, const char *path, const struct json **model,
                       int *byte_fallback, char *err)
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
    if (is_byte_level(json_get(root, "pre_tokenizer"), "pretokenizers") ||
        is_byte_level(json_get(root, "decoder"), "decoders"))
        return fail(err, "%s: byte-level BPE (ByteLevel pre-tokenizer or decoder, as in "
                    "Llama 3) is not supported yet; only SentencePiece-style BPE is", path);
    char ctx[HEARTH_ERR_BYTES / 2];
    snprintf(ctx, sizeof ctx, "%s: model", path);
    int ignore_merges = 0;
    double dropout = 0;
    *byte_fallback = 0;
    if (json_get_bool(m, ctx, "byte_fallback", JSON_OPTIONAL, byte_fallback, err) < 0 ||
        json_get_bool(m, ctx, "ignore_merges", JSON_OPTIONAL, &ignore_merges, err) < 0 ||
        json_get_num(m, ctx, "dropout", JSON_OPTIONAL, &dropout, err) < 0)
        return -1;
    if (ignore_merges)
        return fail(err, "%s: ignore_merges is not supported for SentencePiece-style BPE", ctx);
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
 * byte and unknown pieces are set. */
static int finish_pieces(struct vocab *v, const struct json *model, int byte_fallback,
                         const char *path, char *err)
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
    if (rc < 0)
        return -1;
    return set_unknown(v, model, path, err);
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

static int set_scores(struct vocab *v, const struct json *model, const char *path, char *err)
{
    const struct json *vocab = json_get(model, "vocab"), *merges;
    if (json_get_typed(model, path, "merges", JSON_REQUIRED, JSON_ARRAY, &merges, err) < 0)
        return -1;
    if (merges->n > TJ_MAX_MERGES)
        return fail(err, "%s: %zu merges is more than the %u supported", path, merges->n,
                    TJ_MAX_MERGES);
    const float unset = 1.0f; /* above every assigned score */
    for (uint32_t id = 0; id < v->hdr.n_tokens; id++)
        v->scores[id] = unset;
    char *joined = malloc((size_t)v->hdr.max_piece_bytes * 2 + 1);
    if (!joined)
        return fail(err, "%s: out of memory", path);
    int rc = 0;
    for (size_t r = 0; r < merges->n && rc == 0; r++) {
        const char *part[2] = {NULL, NULL};
        size_t len[2] = {0, 0};
        uint64_t id[3];
        if (merge_parts(json_at(merges, r), r, path, part, len, err) < 0) {
            rc = -1;
            break;
        }
        for (int k = 0; k < 2 && rc == 0; k++)
            if (!json_uint64(json_get_n(vocab, part[k], len[k]), &id[k]))
                rc = fail(err, "%s: model.merges[%zu]: \"%.*s\" is not in model.vocab", path, r,
                          (int)(len[k] > 64 ? 64 : len[k]), part[k]);
        if (rc < 0)
            break;
        /* Both parts are pieces, so the pair fits in twice the longest piece. */
        memcpy(joined, part[0], len[0]);
        memcpy(joined + len[0], part[1], len[1]);
        if (!json_uint64(json_get_n(vocab, joined, len[0] + len[1]), &id[2])) {
            rc = fail(err, "%s: model.merges[%zu]: the merged piece \"%.*s\" is not in "
                      "model.vocab", path, r, (int)(len[0] + len[1] > 64 ? 64 : len[0] + len[1]),
                      joined);
        } else if (v->scores[id[2]] == unset) {
            v->scores[id[2]] = -(float)r;
        }
    }
    free(joined);
    float floor_score = -1.0f - (float)merges->n;
    for (uint32_t id = 0; rc == 0 && id < v->hdr.n_tokens; id++)
        if (v->scores[id] == unset)
            v->scores[id] = floor_score;
    return rc;
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
    int byte_fallback;
    struct spaces sp = {0};
    if (check_model(root, path, &model, &byte_fallback, err) < 0 ||
        read_normalizer(root, path, &sp, err) < 0 || read_pre_tokenizer(root, path, &sp, err) < 0)
        return -1;
    if (!sp.replaced)
        return fail(err, "%s: neither a Metaspace pre-tokenizer nor a Replace(' ', U+2581) "
                    "normalizer: not a SentencePiece-style BPE tokenizer", path);
    uint32_t n = 0;
    if (json_get_typed(model, path, "vocab", JSON_REQUIRED, JSON_OBJECT, &vocab, err) < 0 ||
        json_get_typed(root, path, "added_tokens", JSON_OPTIONAL, JSON_ARRAY, &added, err) < 0 ||
        count_tokens(vocab, added, path, &n, err) < 0)
        return -1;
    v->pieces = calloc(n, sizeof *v->pieces);
    v->piece_bytes = calloc(n, sizeof *v->piece_bytes);
    v->scores = calloc(n, sizeof *v->scores);
    v->kinds = calloc(n, sizeof *v->kinds);
    v->hdr.n_tokens = n;
    if (!v->pieces || !v->piece_bytes || !v->scores || !v->kinds)
        return fail(err, "%s: out of memory for %u tokens", path, n);
    if (fill_vocab_pieces(v, vocab, path, err) < 0 || fill_added_tokens(v, added, path, err) < 0 ||
        finish_pieces(v, model, byte_fallback, path, err) < 0 ||
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
