/* tokenizer.c - text <-> token ids over the tokenizer section of a hearth
 * model file (format.h), read in place.
 *
 * What it does: validates a section and indexes its pieces; encodes text the
 * way SentencePiece BPE does (Llama 2, Mistral, TinyLlama) and the way
 * byte-level BPE does (Llama 3, GPT-2, SmolLM, Qwen2: the model's regex
 * pre-tokenizer written out by hand, then rank-ordered merges); on request
 * turns the exact text of special tokens into their ids; decodes ids back
 * to bytes; reassembles streamed bytes into whole UTF-8 characters; puts
 * byte-level BPE text in Unicode NFC first when the section asks for it
 * (HEARTH_TOK_NFC, unicode.h).
 * What it does not do: other normalizers than SentencePiece's space
 * escaping and byte-level NFC (no NFKC, no remove_extra_whitespaces, no
 * character maps; the export refuses files that ask for them), added-token
 * options (lstrip, rstrip, single_word, normalized with NFC: refused by the
 * export), BPE dropout.
 *
 * Byte-level BPE behaviour is Hugging Face tokenizers' (the tokenizer.json
 * reference) and is described with the code below: special-token matching,
 * the GPT-2 byte alphabet, the pre-tokenizer regexes, the merge loop.
 *
 * SentencePiece behaviour reproduced here, from google/sentencepiece:
 *  - normalizer.cc Normalize/NormalizePrefix: empty text gives nothing; one
 *    U+2581 is prepended when add_dummy_prefix; every ' ' becomes U+2581; a
 *    byte that does not start a well-formed UTF-8 character becomes U+FFFD
 *    (EF BF BD), one per bad byte. A literal U+2581 in the input is then the
 *    same bytes as an escaped space, so it behaves as a space.
 *  - bpe_model.cc Model::SampleEncode (alpha 0): split into characters, except
 *    that the longest USER_DEFINED piece at a position is one frozen symbol;
 *    repeatedly merge the adjacent pair whose concatenation is a NORMAL,
 *    USER_DEFINED or UNUSED piece with the highest score, leftmost on ties,
 *    using a priority queue of candidate pairs (O(n log n)); a merged UNUSED
 *    piece is split back into the two symbols it was made from.
 *  - model_interface.cc PieceToId: CONTROL/UNKNOWN/BYTE pieces are looked up
 *    first, then the others; a miss is the UNKNOWN id.
 *  - sentencepiece_processor.cc PopulateSentencePieceText: an unknown symbol
 *    becomes its UTF-8 bytes as <0xNN> pieces with byte_fallback; without it,
 *    a run of unknown symbols becomes a single unknown id.
 *  - sentencepiece_processor.cc Decode: control pieces decode to nothing, the
 *    UNKNOWN piece to the default unk_surface " \xE2\x81\x87 " (U+2047),
 *    byte pieces to their byte, U+2581 to ' '; the leading U+2581 of the
 *    first piece is dropped when add_dummy_prefix (here: when prev is BOS,
 *    as llama2.c run.c decode does).
 *  - util.cc DecodeUTF8: strict UTF-8 (no overlongs, surrogates or code
 *    points above U+10FFFF).
 * One deliberate difference: SentencePiece's Decode turns each bad byte into
 * U+FFFD; utf8_stream follows Unicode's maximal-subpart rule instead, so a
 * character cut short (E4 B8 then 'x', or at the end of the stream) is one
 * U+FFFD, and a flush never writes more than 3 bytes. Valid text, the only
 * kind the decoder of an encoded string produces, comes out the same. */
#include "tokenizer.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "unicode.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the tokenizer section is read in place and is little-endian"
#endif

static const char SPACE_MARK[3] = {'\xe2', '\x96', '\x81'}; /* U+2581 */
static const char REPLACEMENT[3] = {'\xef', '\xbf', '\xbd'}; /* U+FFFD */
/* SentencePiece's default TrainerSpec.unk_surface (sentencepiece_model.proto). */
static const char UNK_SURFACE[] = " \xe2\x81\x87 ";

#define KNOWN_FLAGS (HEARTH_TOK_ADD_DUMMY_PREFIX | HEARTH_TOK_BYTE_FALLBACK | HEARTH_TOK_IGNORE_MERGES | \
                     HEARTH_TOK_NO_BOS | HEARTH_TOK_NFC)
/* The ids of n_bytes of text are at most 3 * n_bytes + 4 (see
 * tokenizer_max_ids); encode returns an int, so text stays below this. */
#define MAX_TEXT_BYTES (((size_t)INT_MAX - 4) / 3)
/* Hash tables index pieces and merges with 32-bit slot numbers; up to this
 * many keys, a table at most 3/4 full has at most 2^31 slots. */
#define MAX_HASHED (1u << 30)

/* The special-token matcher and the byte-level BPE tables, defined with
 * the code that uses them, further down. */
static int known_pre_tokenizer(uint32_t pre);
static int build_tables(struct tokenizer *t, char *err);
static void free_tables(struct tokenizer_tables *x);

/* ---- UTF-8 ---- */

/* How s[0..n) (n >= 1) starts, against the well-formed UTF-8 table
 * (Unicode 15, table 3-7): *need is the length of the character s[0] starts
 * (0 if no character starts with s[0]); the result is how many leading bytes
 * fit that character (<= *need). */
static size_t utf8_scan(const unsigned char *s, size_t n, size_t *need)
{
    unsigned char b = s[0];
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (b < 0x80)
        *need = 1;
    else if (b >= 0xc2 && b <= 0xdf)
        *need = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        *need = 3;
        lo = b == 0xe0 ? 0xa0 : 0x80; /* E0 80..9F would be overlong */
        hi = b == 0xed ? 0x9f : 0xbf; /* ED A0..BF would be a surrogate */
    } else if (b >= 0xf0 && b <= 0xf4) {
        *need = 4;
        lo = b == 0xf0 ? 0x90 : 0x80; /* F0 80..8F would be overlong */
        hi = b == 0xf4 ? 0x8f : 0xbf; /* F4 90.. would exceed U+10FFFF */
    } else {
        *need = 0; /* C0, C1 (overlong), F5..FF, or a continuation byte */
        return 0;
    }
    size_t ok = 1;
    while (ok < *need && ok < n) {
        unsigned char l = ok == 1 ? lo : 0x80, h = ok == 1 ? hi : 0xbf;
        if (s[ok] < l || s[ok] > h)
            break;
        ok++;
    }
    return ok;
}

/* Length of the complete, well-formed character at s, or 0. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    size_t need, ok = utf8_scan(s, n, &need);
    return need > 0 && ok == need ? need : 0;
}

/* Emits what the pending bytes allow: a whole character as it is; one U+FFFD
 * for each maximal subpart of an ill-formed sequence (Unicode 15, section
 * 3.9 "U+FFFD Substitution of Maximal Subparts": a byte that starts no
 * character, or the longest prefix of a character cut short by a byte that
 * does not fit it). A prefix that may still complete waits, unless the
 * stream ends (final). Returns bytes written to out. */
static size_t utf8_drain(struct utf8_stream *s, char *out, int final)
{
    size_t k = 0;
    while (s->n_pending > 0) {
        size_t n = (size_t)s->n_pending, need, ok = utf8_scan(s->pending, n, &need);
        size_t used;
        if (need > 0 && ok == need) {
            memcpy(out + k, s->pending, need);
            k += need;
            used = need;
        } else if (need > 0 && ok == n && !final) {
            break; /* incomplete: wait for more bytes */
        } else {
            memcpy(out + k, REPLACEMENT, sizeof REPLACEMENT);
            k += sizeof REPLACEMENT;
            used = ok > 0 ? ok : 1;
        }
        memmove(s->pending, s->pending + used, n - used);
        s->n_pending -= (int)used;
    }
    return k;
}

/* A stream whose count is out of range was never initialized: start over
 * rather than write past pending[]. */
static void utf8_check(struct utf8_stream *s)
{
    if (s->n_pending < 0 || s->n_pending > 3)
        s->n_pending = 0;
}

size_t utf8_stream_push(struct utf8_stream *s, const char *in, size_t n, char *out)
{
    size_t k = 0;
    utf8_check(s);
    for (size_t i = 0; i < n; i++) {
        /* invariant: n_pending <= 3 here, as a pending tail is always a
         * proper prefix of a character */
        s->pending[s->n_pending++] = (unsigned char)in[i];
        k += utf8_drain(s, out + k, 0);
    }
    return k;
}

size_t utf8_stream_flush(struct utf8_stream *s, char *out)
{
    utf8_check(s);
    return utf8_drain(s, out, 1);
}

/* ---- section validation and the piece index ---- */

static const char *piece_at(const struct tokenizer *t, uint32_t id, uint32_t *n)
{
    *n = t->piece_offsets[id + 1] - t->piece_offsets[id];
    return t->piece_bytes + t->piece_offsets[id];
}

const char *tokenizer_piece(const struct tokenizer *t, uint32_t id, uint32_t *n_bytes)
{
    if (!t || !t->piece_offsets || id >= t->hdr.n_tokens) {
        *n_bytes = 0;
        return NULL;
    }
    return piece_at(t, id, n_bytes);
}

int tokenizer_byte_piece_value(const char *p, size_t n)
{
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static int compare_bytes(const char *a, size_t na, const char *b, size_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c)
        return c;
    return na < nb ? -1 : na > nb;
}

struct sort_entry {
    const char *bytes;
    uint32_t n, id;
};

static int compare_sort_entry(const void *a, const void *b)
{
    const struct sort_entry *x = a, *y = b;
    int c = compare_bytes(x->bytes, x->n, y->bytes, y->n);
    if (c)
        return c;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Byte offsets of the section's parts, computed in 64 bits (no overflow for
 * any u32 counts). */
struct layout {
    uint64_t kinds, padding, offsets, merges, pieces;
};

static struct layout layout_of(const struct hearth_tokenizer_header *h)
{
    struct layout l;
    uint64_t n = h->n_tokens;
    l.kinds = sizeof(struct hearth_tokenizer_header) + 4 * n;
    l.padding = l.kinds + n;
    l.offsets = (l.padding + 3) & ~(uint64_t)3;
    l.merges = l.offsets + 4 * (n + 1);
    l.pieces = l.merges + 8 * (uint64_t)h->n_merges;
    return l;
}

static int check_header(const struct hearth_tokenizer_header *h, uint64_t n_bytes, char *err)
{
    if (h->type != HEARTH_TOKENIZER_SPM && h->type != HEARTH_TOKENIZER_BYTE_BPE)
        return fail(err, "tokenizer section: unknown type %u", h->type);
    if (h->n_tokens == 0)
        return fail(err, "tokenizer section: n_tokens is 0");
    if (h->flags & ~KNOWN_FLAGS)
        return fail(err, "tokenizer section: unknown flags 0x%x", h->flags & ~KNOWN_FLAGS);
    if (h->reserved != 0)
        return fail(err, "tokenizer section: reserved field is %u, not 0", h->reserved);
    if (h->unk_id != UINT32_MAX && h->unk_id >= h->n_tokens)
        return fail(err, "tokenizer section: unk_id %u is not below n_tokens %u", h->unk_id,
                    h->n_tokens);
    if (h->type == HEARTH_TOKENIZER_SPM) {
        if (h->n_merges != 0 || h->pre_tokenizer != 0 ||
            (h->flags & (HEARTH_TOK_IGNORE_MERGES | HEARTH_TOK_NFC)))
            return fail(err, "tokenizer section: a SentencePiece tokenizer has n_merges %u, "
                             "pre_tokenizer %u, flags 0x%x (merges, pre-tokenizer, "
                             "ignore_merges and NFC are byte-level BPE only)",
                        h->n_merges, h->pre_tokenizer, h->flags);
        if (h->unk_id == UINT32_MAX)
            return fail(err, "tokenizer section: a SentencePiece tokenizer needs an unk_id");
    } else {
        if (h->flags & (HEARTH_TOK_ADD_DUMMY_PREFIX | HEARTH_TOK_BYTE_FALLBACK))
            return fail(err, "tokenizer section: a byte-level BPE tokenizer has flags 0x%x "
                             "(dummy prefix and byte fallback are SentencePiece only)",
                        h->flags);
        if (!known_pre_tokenizer(h->pre_tokenizer))
            return fail(err, "tokenizer section: unknown pre_tokenizer %u", h->pre_tokenizer);
    }
    struct layout l = layout_of(h);
    if (l.pieces > n_bytes)
        return fail(err,
                    "tokenizer section: n_tokens %u and n_merges %u need %" PRIu64
                    " bytes before the piece bytes, but the section is %" PRIu64 " bytes",
                    h->n_tokens, h->n_merges, l.pieces, n_bytes);
    return 0;
}

/* Offsets start at 0, never decrease and end inside the section; only
 * alignment padding (< 8 bytes) may follow the last piece. */
static int check_piece_offsets(const struct tokenizer *t, uint64_t n_bytes, char *err)
{
    uint32_t n = t->hdr.n_tokens;
    struct layout l = layout_of(&t->hdr);
    if (t->piece_offsets[0] != 0)
        return fail(err, "tokenizer section: piece_offsets[0] is %u, not 0", t->piece_offsets[0]);
    uint32_t longest = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a = t->piece_offsets[i], b = t->piece_offsets[i + 1];
        if (b < a)
            return fail(err, "tokenizer section: piece_offsets[%u] = %u is below piece_offsets[%u] = %u",
                        i + 1, b, i, a);
        if (b - a > longest)
            longest = b - a;
    }
    uint64_t end = l.pieces + t->piece_offsets[n];
    if (end > n_bytes)
        return fail(err, "tokenizer section: piece bytes end at %" PRIu64 ", past the section's %" PRIu64
                         " bytes (piece_offsets[%u] = %u)",
                    end, n_bytes, n, t->piece_offsets[n]);
    if (n_bytes - end >= 8)
        return fail(err, "tokenizer section: %" PRIu64 " unexplained bytes after the pieces",
                    n_bytes - end);
    if (longest != t->hdr.max_piece_bytes)
        return fail(err, "tokenizer section: max_piece_bytes is %u but the longest piece is %u bytes",
                    t->hdr.max_piece_bytes, longest);
    return 0;
}

static int check_tables(const struct tokenizer *t, const uint8_t *section, char *err)
{
    uint32_t n = t->hdr.n_tokens;
    struct layout l = layout_of(&t->hdr);
    for (uint64_t p = l.padding; p < l.offsets; p++)
        if (section[p] != 0)
            return fail(err, "tokenizer section: padding byte at offset %" PRIu64 " is not 0", p);
    for (uint32_t i = 0; i < n; i++) {
        if (t->kinds[i] < HEARTH_TOKEN_NORMAL || t->kinds[i] > HEARTH_TOKEN_BYTE)
            return fail(err, "tokenizer section: token %u has unknown kind %u", i, t->kinds[i]);
        if (isnan(t->scores[i]))
            return fail(err, "tokenizer section: token %u has a NaN score", i);
    }
    for (uint32_t m = 0; m < t->hdr.n_merges; m++)
        if (t->merges[m][0] >= n || t->merges[m][1] >= n)
            return fail(err, "tokenizer section: merge %u (%u, %u) names a token id >= n_tokens %u",
                        m, t->merges[m][0], t->merges[m][1], n);
    if (t->hdr.type == HEARTH_TOKENIZER_SPM && t->kinds[t->hdr.unk_id] != HEARTH_TOKEN_UNKNOWN)
        return fail(err, "tokenizer section: unk_id %u is not an UNKNOWN piece", t->hdr.unk_id);
    return 0;
}

/* byte_ids from the BYTE pieces; byte fallback needs all 256 (as
 * SentencePiece's InitializePieces demands). */
static int build_byte_ids(struct tokenizer *t, char *err)
{
    int n_found = 0;
    for (int b = 0; b < 256; b++)
        t->byte_ids[b] = -1;
    for (uint32_t i = 0; i < t->hdr.n_tokens; i++) {
        if (t->kinds[i] != HEARTH_TOKEN_BYTE)
            continue;
        uint32_t n;
        const char *p = piece_at(t, i, &n);
        int b = tokenizer_byte_piece_value(p, n);
        if (b < 0)
            return fail(err, "tokenizer section: BYTE token %u is not spelled <0xHH>", i);
        if (t->byte_ids[b] >= 0)
            return fail(err, "tokenizer section: tokens %d and %u are both byte 0x%02X",
                        t->byte_ids[b], i, b);
        t->byte_ids[b] = (int32_t)i;
        n_found++;
    }
    if ((t->hdr.flags & HEARTH_TOK_BYTE_FALLBACK) && n_found != 256)
        return fail(err, "tokenizer section: byte fallback is on but only %d of 256 byte pieces exist",
                    n_found);
    return 0;
}

static int build_index(struct tokenizer *t, char *err)
{
    uint32_t n = t->hdr.n_tokens;
    struct sort_entry *e = malloc((size_t)n * sizeof *e);
    t->sorted_ids = malloc((size_t)n * sizeof *t->sorted_ids);
    if (!e || !t->sorted_ids) {
        free(e);
        return fail(err, "tokenizer: out of memory for the index of %u pieces", n);
    }
    for (uint32_t i = 0; i < n; i++) {
        e[i].bytes = piece_at(t, i, &e[i].n);
        e[i].id = i;
    }
    qsort(e, n, sizeof *e, compare_sort_entry);
    for (uint32_t i = 0; i < n; i++)
        t->sorted_ids[i] = e[i].id;
    free(e);
    return 0;
}

/* Points the table fields of t into the section; check_header has made
 * sure they all lie inside it. */
static void map_tables(struct tokenizer *t, const uint8_t *base)
{
    struct layout l = layout_of(&t->hdr);
    /* 4-byte alignment of every table follows from the section's */
    t->scores = (const float *)(base + sizeof t->hdr);
    t->kinds = base + l.kinds;
    t->piece_offsets = (const uint32_t *)(base + l.offsets);
    t->merges = (const uint32_t(*)[2])(base + l.merges);
    t->piece_bytes = (const char *)(base + l.pieces);
}

static int check_special_ids(const struct tokenizer *t, uint32_t bos_id, uint32_t eos_id,
                             char *err)
{
    if (bos_id != UINT32_MAX && bos_id >= t->hdr.n_tokens)
        return fail(err, "tokenizer: bos_id %u is not below n_tokens %u", bos_id, t->hdr.n_tokens);
    if (eos_id != UINT32_MAX && eos_id >= t->hdr.n_tokens)
        return fail(err, "tokenizer: eos_id %u is not below n_tokens %u", eos_id, t->hdr.n_tokens);
    return 0;
}

int tokenizer_init(struct tokenizer *t, const void *section, uint64_t n_bytes,
                   uint32_t bos_id, uint32_t eos_id, char *err)
{
    memset(t, 0, sizeof *t);
    if (!section)
        return fail(err, "tokenizer section: missing");
    if ((uintptr_t)section % 4 != 0)
        return fail(err, "tokenizer section: not 4-byte aligned in memory");
    if (n_bytes < sizeof t->hdr)
        return fail(err, "tokenizer section: %" PRIu64 " bytes is shorter than its %zu-byte header",
                    n_bytes, sizeof t->hdr);
    memcpy(&t->hdr, section, sizeof t->hdr);
    int rc = check_header(&t->hdr, n_bytes, err);
    if (rc == 0) {
        map_tables(t, section);
        rc = check_special_ids(t, bos_id, eos_id, err);
    }
    if (rc == 0)
        rc = check_piece_offsets(t, n_bytes, err);
    if (rc == 0)
        rc = check_tables(t, section, err);
    if (rc == 0)
        rc = build_byte_ids(t, err);
    if (rc == 0)
        rc = build_index(t, err);
    if (rc == 0)
        rc = build_tables(t, err);
    if (rc < 0) {
        tokenizer_free(t);
        return -1;
    }
    t->bos_id = bos_id;
    t->eos_id = eos_id;
    return 0;
}

void tokenizer_free(struct tokenizer *t)
{
    if (!t)
        return;
    free(t->sorted_ids);
    free_tables(t->tables);
    memset(t, 0, sizeof *t);
}

/* NFC keeps within the 3 bytes per input byte that tokenizer_max_ids and
 * the byte-level encode's buffers count on. */
_Static_assert(UNICODE_NFC_MAX_EXPANSION <= 3, "NFC expands UTF-8 at most 3-fold");

size_t tokenizer_max_ids(size_t n_bytes)
{
    /* Each input byte becomes at most 3 normalized bytes (' ' -> U+2581, a
     * bad byte -> U+FFFD; NFC turns a well-formed character of k bytes into
     * at most 3 k, and leaves U+FFFD as it is), the dummy prefix adds 3,
     * every id covers at least one normalized byte, and BOS adds one. */
    if (n_bytes > (SIZE_MAX - 4) / 3)
        return SIZE_MAX;
    return 3 * n_bytes + 4;
}

/* ---- piece lookup ---- */

/* Position in sorted_ids of the first piece equal to key, or n_tokens. */
static uint32_t find_first(const struct tokenizer *t, const char *key, size_t n)
{
    uint32_t lo = 0, hi = t->hdr.n_tokens;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2, len;
        const char *p = piece_at(t, t->sorted_ids[mid], &len);
        if (compare_bytes(p, len, key, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->hdr.n_tokens) {
        uint32_t len;
        const char *p = piece_at(t, t->sorted_ids[lo], &len);
        if (compare_bytes(p, len, key, n) == 0)
            return lo;
    }
    return t->hdr.n_tokens;
}

enum piece_class { CLASS_MERGEABLE, CLASS_RESERVED, CLASS_USER_DEFINED };

static int in_class(uint8_t kind, enum piece_class c)
{
    switch (c) {
    case CLASS_MERGEABLE:
        return kind == HEARTH_TOKEN_NORMAL || kind == HEARTH_TOKEN_USER_DEFINED ||
               kind == HEARTH_TOKEN_UNUSED;
    case CLASS_RESERVED:
        return kind == HEARTH_TOKEN_CONTROL || kind == HEARTH_TOKEN_UNKNOWN ||
               kind == HEARTH_TOKEN_BYTE;
    case CLASS_USER_DEFINED:
        return kind == HEARTH_TOKEN_USER_DEFINED;
    }
    return 0;
}

/* Lowest id whose piece equals key and whose kind is in class c, or -1. */
static int32_t lookup(const struct tokenizer *t, const char *key, size_t n, enum piece_class c)
{
    if (n == 0 || n > t->hdr.max_piece_bytes)
        return -1;
    for (uint32_t i = find_first(t, key, n); i < t->hdr.n_tokens; i++) {
        uint32_t id = t->sorted_ids[i], len;
        const char *p = piece_at(t, id, &len);
        if (compare_bytes(p, len, key, n) != 0)
            break;
        if (in_class(t->kinds[id], c))
            return (int32_t)id;
    }
    return -1;
}

/* SentencePiece PieceToId: reserved pieces first, then the others, else unk. */
static uint32_t piece_to_id(const struct tokenizer *t, const char *key, size_t n)
{
    int32_t id = lookup(t, key, n, CLASS_RESERVED);
    if (id < 0)
        id = lookup(t, key, n, CLASS_MERGEABLE);
    return id < 0 ? t->hdr.unk_id : (uint32_t)id;
}

/* ---- SentencePiece BPE encoding ---- */

/* Copies text with every byte that starts no well-formed UTF-8 character
 * replaced by U+FFFD and, if mark_spaces, every ' ' by U+2581 (out: room
 * for 3 n bytes). Returns the length. */
static size_t replace_ill_formed(const unsigned char *text, size_t n, int mark_spaces, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char_len(text + i, n - i);
        if (mark_spaces && text[i] == ' ') {
            memcpy(out + k, SPACE_MARK, sizeof SPACE_MARK);
            k += sizeof SPACE_MARK;
            i++;
        } else if (len == 0) {
            memcpy(out + k, REPLACEMENT, sizeof REPLACEMENT);
            k += sizeof REPLACEMENT;
            i++;
        } else {
            memcpy(out + k, text + i, len);
            k += len;
            i += len;
        }
    }
    return k;
}

/* The normalized text (see the header comment). Returns its length. */
static size_t normalize(const struct tokenizer *t, const unsigned char *text, size_t n, char *out)
{
    size_t k = 0;
    if (t->hdr.flags & HEARTH_TOK_ADD_DUMMY_PREFIX) {
        memcpy(out, SPACE_MARK, sizeof SPACE_MARK);
        k = sizeof SPACE_MARK;
    }
    return k + replace_ill_formed(text, n, 1, out + k);
}

/* The USER_DEFINED pieces, which are matched whole before BPE starts. */
struct user_defined {
    uint32_t longest;       /* 0: there are none */
    uint8_t first_byte[32]; /* bitset of the pieces' first bytes */
    int has_unused;         /* any UNUSED piece (needs resegmentation) */
};

static void scan_kinds(const struct tokenizer *t, struct user_defined *ud)
{
    memset(ud, 0, sizeof *ud);
    for (uint32_t i = 0; i < t->hdr.n_tokens; i++) {
        if (t->kinds[i] == HEARTH_TOKEN_UNUSED)
            ud->has_unused = 1;
        if (t->kinds[i] != HEARTH_TOKEN_USER_DEFINED)
            continue;
        uint32_t n;
        const unsigned char *p = (const unsigned char *)piece_at(t, i, &n);
        if (n == 0)
            continue;
        if (n > ud->longest)
            ud->longest = n;
        ud->first_byte[p[0] >> 3] |= (uint8_t)(1u << (p[0] & 7));
    }
}

struct symbol {
    uint32_t start, len; /* bytes of the normalized text; len 0 once merged away */
    int32_t prev, next;  /* neighbours in the live list, -1 at the ends */
    uint32_t node;       /* merge-tree node, for UNUSED resegmentation */
    uint32_t frozen;     /* a USER_DEFINED piece: never merged */
};

/* A candidate merge of symbols left and right into a piece of size bytes. */
struct pair {
    float score;
    uint32_t left, right, size;
};

struct heap {
    struct pair *items;
    size_t n, cap;
};

/* Pop order: highest score first, then the leftmost pair (SentencePiece's
 * SymbolPairComparator). */
static int pair_before(const struct pair *a, const struct pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(struct heap *h, struct pair p)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 256;
        struct pair *items = realloc(h->items, cap * sizeof *items);
        if (!items)
            return -1;
        h->items = items;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && pair_before(&p, &h->items[(i - 1) / 2])) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = p;
    return 0;
}

static struct pair heap_pop(struct heap *h)
{
    struct pair top = h->items[0], last = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && pair_before(&h->items[c + 1], &h->items[c]))
            c++;
        if (!pair_before(&h->items[c], &last))
            break;
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->n > 0)
        h->items[i] = last;
    return top;
}

/* Working state of one encode call. */
struct bpe {
    const struct tokenizer *t;
    const char *text; /* normalized */
    uint32_t text_len;
    struct symbol *sym;
    uint32_t n_sym;
    struct heap heap;
    uint32_t (*children)[2]; /* merge-tree nodes n_sym.., NULL without UNUSED pieces */
    uint32_t n_nodes;
};

static int maybe_add_pair(struct bpe *b, int32_t left, int32_t right)
{
    if (left < 0 || right < 0 || b->sym[left].frozen || b->sym[right].frozen)
        return 0;
    uint32_t size = b->sym[left].len + b->sym[right].len;
    int32_t id = lookup(b->t, b->text + b->sym[left].start, size, CLASS_MERGEABLE);
    if (id < 0)
        return 0;
    struct pair p = {b->t->scores[id], (uint32_t)left, (uint32_t)right, size};
    return heap_push(&b->heap, p);
}

/* Splits the normalized text into the initial symbols. */
static void split_symbols(struct bpe *b, size_t n, const struct user_defined *ud)
{
    const unsigned char *s = (const unsigned char *)b->text;
    uint32_t count = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        int frozen = 0;
        if (ud->longest && (ud->first_byte[s[i] >> 3] & (1u << (s[i] & 7)))) {
            size_t max = n - i < ud->longest ? n - i : ud->longest;
            for (size_t l = max; l > 0 && !frozen; l--) {
                if (lookup(b->t, b->text + i, l, CLASS_USER_DEFINED) >= 0) {
                    len = l;
                    frozen = 1;
                }
            }
        }
        if (!frozen)
            len = utf8_char_len(s + i, n - i); /* >= 1: normalized text is valid UTF-8 */
        b->sym[count] = (struct symbol){(uint32_t)i, (uint32_t)len, (int32_t)count - 1,
                                        (int32_t)count + 1, count, (uint32_t)frozen};
        count++;
        i += len;
    }
    b->sym[count - 1].next = -1;
    b->n_sym = count;
    b->n_nodes = count;
}

/* Applies the best merges until none is left (bpe_model.cc main loop). */
static int merge_all(struct bpe *b)
{
    for (uint32_t i = 1; i < b->n_sym; i++)
        if (maybe_add_pair(b, (int32_t)i - 1, (int32_t)i) < 0)
            return -1;
    while (b->heap.n > 0) {
        struct pair p = heap_pop(&b->heap);
        struct symbol *l = &b->sym[p.left], *r = &b->sym[p.right];
        /* stale: either side merged away or grown since the pair was queued */
        if (l->len == 0 || r->len == 0 || l->len + r->len != p.size)
            continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0)
            b->sym[r->next].prev = (int32_t)p.left;
        r->len = 0;
        if (b->children) {
            b->children[b->n_nodes - b->n_sym][0] = l->node;
            b->children[b->n_nodes - b->n_sym][1] = r->node;
            l->node = b->n_nodes++;
        }
        if (maybe_add_pair(b, l->prev, (int32_t)p.left) < 0 ||
            maybe_add_pair(b, (int32_t)p.left, l->next) < 0)
            return -1;
    }
    return 0;
}

/* Appends ids, refusing to write past max_ids. */
struct out_ids {
    int32_t *ids;
    size_t n, max;
    int prev_unknown;
};

static int emit(struct out_ids *o, uint32_t id, char *err)
{
    if (o->n >= o->max)
        return fail(err, "tokenizer: more than max_ids = %zu ids (tokenizer_max_ids gives a safe size)",
                    o->max);
    o->ids[o->n++] = (int32_t)id;
    return 0;
}

/* Emits the ids of one final piece (text bytes [start, start + len)):
 * byte fallback or run-merging for unknown pieces. */
static int emit_piece(const struct bpe *b, struct out_ids *o, uint32_t start, uint32_t len,
                      char *err)
{
    const struct tokenizer *t = b->t;
    uint32_t id = piece_to_id(t, b->text + start, len);
    int unknown = t->kinds[id] == HEARTH_TOKEN_UNKNOWN;
    int rc = 0;
    if (unknown && (t->hdr.flags & HEARTH_TOK_BYTE_FALLBACK)) {
        for (uint32_t i = 0; i < len && rc == 0; i++) {
            int32_t byte_id = t->byte_ids[(unsigned char)b->text[start + i]];
            rc = emit(o, byte_id >= 0 ? (uint32_t)byte_id : t->hdr.unk_id, err);
        }
    } else if (!(unknown && o->prev_unknown)) {
        rc = emit(o, id, err);
    }
    o->prev_unknown = unknown;
    return rc;
}

/* Bytes covered by merge-tree node k (leaves are the initial symbols). */
static void node_span(const struct bpe *b, const uint32_t *leaf_start, uint32_t k,
                      uint32_t *start, uint32_t *len)
{
    uint32_t first = k, last = k;
    while (first >= b->n_sym)
        first = b->children[first - b->n_sym][0];
    while (last >= b->n_sym)
        last = b->children[last - b->n_sym][1];
    *start = leaf_start[first];
    *len = leaf_start[last + 1] - leaf_start[first];
}

/* A final symbol whose piece is UNUSED is split back into the pieces it was
 * merged from, recursively (bpe_model.cc resegment). */
static int emit_resegmented(const struct bpe *b, struct out_ids *o, const uint32_t *leaf_start,
                            uint32_t root, uint32_t *stack, char *err)
{
    uint32_t depth = 0;
    stack[depth++] = root;
    while (depth > 0) {
        uint32_t k = stack[--depth], start, len;
        node_span(b, leaf_start, k, &start, &len);
        uint32_t id = piece_to_id(b->t, b->text + start, len);
        if (k >= b->n_sym && b->t->kinds[id] == HEARTH_TOKEN_UNUSED) {
            stack[depth++] = b->children[k - b->n_sym][1];
            stack[depth++] = b->children[k - b->n_sym][0];
            continue;
        }
        if (emit_piece(b, o, start, len, err) < 0)
            return -1;
    }
    return 0;
}

static int emit_all(const struct bpe *b, struct out_ids *o, char *err)
{
    if (!b->children) {
        for (int32_t i = 0; i >= 0; i = b->sym[i].next)
            if (emit_piece(b, o, b->sym[i].start, b->sym[i].len, err) < 0)
                return -1;
        return 0;
    }
    /* leaf_start[i]: where initial symbol i began (the merge loop changed
     * sym[].len but never sym[].start); [n_sym] is the text end. Each tree
     * node is on the stack at most once, so n_nodes entries suffice. */
    uint32_t *leaf_start = malloc(((size_t)b->n_sym + 1) * sizeof *leaf_start);
    uint32_t *stack = malloc((size_t)b->n_nodes * sizeof *stack);
    int rc = 0;
    if (!leaf_start || !stack)
        rc = fail(err, "tokenizer: out of memory");
    for (uint32_t i = 0; rc == 0 && i < b->n_sym; i++)
        leaf_start[i] = b->sym[i].start;
    if (rc == 0)
        leaf_start[b->n_sym] = b->text_len;
    for (int32_t i = 0; rc == 0 && i >= 0; i = b->sym[i].next)
        rc = emit_resegmented(b, o, leaf_start, b->sym[i].node, stack, err);
    free(leaf_start);
    free(stack);
    return rc;
}

static int encode_spm(const struct tokenizer *t, const char *text, size_t n_bytes,
                      struct out_ids *o, char *err)
{
    struct user_defined ud;
    scan_kinds(t, &ud);
    struct bpe b = {.t = t};
    /* normalized text: at most 3 bytes per input byte plus the dummy prefix */
    char *norm = malloc(3 * n_bytes + sizeof SPACE_MARK);
    if (!norm)
        return fail(err, "tokenizer: out of memory encoding %zu bytes", n_bytes);
    size_t n = normalize(t, (const unsigned char *)text, n_bytes, norm);
    b.text = norm;
    b.text_len = (uint32_t)n; /* < 2^31: n_bytes <= MAX_TEXT_BYTES */
    /* at most one symbol per normalized byte, one tree node per merge */
    b.sym = malloc(n * sizeof *b.sym);
    if (ud.has_unused)
        b.children = malloc(n * sizeof *b.children);
    int rc = 0;
    if (!b.sym || (ud.has_unused && !b.children))
        rc = fail(err, "tokenizer: out of memory encoding %zu bytes", n_bytes);
    if (rc == 0) {
        split_symbols(&b, n, &ud);
        if (merge_all(&b) < 0)
            rc = fail(err, "tokenizer: out of memory encoding %zu bytes", n_bytes);
    }
    if (rc == 0)
        rc = emit_all(&b, o, err);
    free(norm);
    free(b.sym);
    free(b.children);
    free(b.heap.items);
    return rc;
}

/* ---- special-token matching ---- */

/* Bit masks of token kinds, for choosing which pieces match whole. */
#define KIND_BIT(k) (1u << (k))
#define SPECIAL_KINDS (KIND_BIT(HEARTH_TOKEN_CONTROL) | KIND_BIT(HEARTH_TOKEN_UNKNOWN))

/* Tables tokenizer_init builds besides the sorted index. */
struct tokenizer_tables {
    /* CONTROL, UNKNOWN and USER_DEFINED pieces grouped by first byte
     * (byte b: special_ids[special_start[b] .. special_start[b + 1])), each
     * group longest first, then lowest id first. */
    uint32_t *special_ids;
    uint32_t special_start[257];
    /* byte-level BPE only */
    uint32_t *piece_slots;    /* open addressing on model piece bytes: id + 1, 0 = empty */
    unsigned piece_bits;      /* piece_slots has 2^piece_bits entries */
    int32_t byte_piece[256];  /* model piece that is exactly this byte, -1 if none */
    uint32_t *merge_slots;    /* open addressing on (left, right): merge index + 1, 0 = empty */
    unsigned slot_bits;       /* merge_slots has 2^slot_bits entries */
    uint32_t *merge_result;   /* per merge: id of the merged piece */
};

static int can_match_whole(uint8_t kind)
{
    return kind == HEARTH_TOKEN_CONTROL || kind == HEARTH_TOKEN_UNKNOWN ||
           kind == HEARTH_TOKEN_USER_DEFINED;
}

/* A matcher entry while sorting: the piece's first byte and length. */
struct special_entry {
    uint8_t first;
    uint32_t n, id;
};

static int compare_special(const void *a, const void *b)
{
    const struct special_entry *x = a, *y = b;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int build_special_matcher(const struct tokenizer *t, struct tokenizer_tables *x, char *err)
{
    uint32_t count = 0, k = 0;
    for (uint32_t i = 0; i < t->hdr.n_tokens; i++)
        count += can_match_whole(t->kinds[i]) && t->piece_offsets[i + 1] > t->piece_offsets[i];
    struct special_entry *e = malloc(((size_t)count + 1) * sizeof *e);
    x->special_ids = malloc(((size_t)count + 1) * sizeof *x->special_ids);
    if (!e || !x->special_ids) {
        free(e);
        return fail(err, "tokenizer: out of memory for %u special pieces", count);
    }
    for (uint32_t i = 0; i < t->hdr.n_tokens; i++) {
        uint32_t n;
        const char *p = piece_at(t, i, &n);
        if (can_match_whole(t->kinds[i]) && n > 0)
            e[k++] = (struct special_entry){(uint8_t)p[0], n, i};
    }
    qsort(e, count, sizeof *e, compare_special);
    memset(x->special_start, 0, sizeof x->special_start);
    for (uint32_t i = 0; i < count; i++) {
        x->special_ids[i] = e[i].id;
        x->special_start[e[i].first + 1]++;
    }
    for (int b = 0; b < 256; b++)
        x->special_start[b + 1] += x->special_start[b];
    free(e);
    return 0;
}

/* Length of the longest piece whose kind is in kinds (a KIND_BIT mask) and
 * that s[i..n) starts with; its id goes to *id. 0 if there is none. */
static size_t match_whole_piece(const struct tokenizer *t, unsigned kinds, const char *s,
                                size_t n, size_t i, uint32_t *id)
{
    const struct tokenizer_tables *x = t->tables;
    unsigned char b = (unsigned char)s[i];
    for (uint32_t k = x->special_start[b]; k < x->special_start[b + 1]; k++) {
        uint32_t len, cand = x->special_ids[k];
        const char *p = piece_at(t, cand, &len);
        if (!(kinds & KIND_BIT(t->kinds[cand])) || len > n - i || memcmp(p, s + i, len) != 0)
            continue;
        *id = cand;
        return len;
    }
    return 0;
}

/* ---- byte-level BPE: the GPT-2 byte alphabet ---- */

/* openai/gpt-2 src/encoder.py bytes_to_unicode: the bytes '!'..'~',
 * 0xA1..0xAC and 0xAE..0xFF stand for the code point of the same value;
 * the other 68 bytes (0x00..0x20, 0x7F..0xA0, 0xAD), in increasing order,
 * stand for U+0100, U+0101, ... U+0143. */
static int gpt2_is_self(uint32_t b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

static uint32_t gpt2_code_point(uint8_t b)
{
    if (gpt2_is_self(b))
        return b;
    if (b <= 0x20)
        return 0x100u + b;
    if (b >= 0x7f && b <= 0xa0)
        return 0x100u + 33 + (b - 0x7fu);
    return 0x100u + 67; /* 0xAD */
}

/* The byte code point cp stands for, or -1. */
static int gpt2_byte(uint32_t cp)
{
    if (cp < 0x100)
        return gpt2_is_self(cp) ? (int)cp : -1;
    if (cp > 0x143)
        return -1;
    uint32_t k = cp - 0x100;
    if (k <= 32)
        return (int)k;
    if (k <= 66)
        return (int)(0x7f + k - 33);
    return 0xad;
}

/* The code point of the well-formed UTF-8 character s[0..len). */
static uint32_t utf8_decode(const unsigned char *s, size_t len)
{
    static const unsigned char lead_mask[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    uint32_t cp = s[0] & lead_mask[len];
    for (size_t i = 1; i < len; i++)
        cp = cp << 6 | (s[i] & 0x3fu);
    return cp;
}

size_t tokenizer_gpt2_char(uint8_t b, char *out)
{
    uint32_t cp = gpt2_code_point(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

long tokenizer_gpt2_bytes(const char *s, size_t n, char *out, size_t *bad_at)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char_len(u + i, n - i);
        int b = len ? gpt2_byte(utf8_decode(u + i, len)) : -1;
        if (b < 0) {
            if (bad_at)
                *bad_at = i;
            return -1;
        }
        out[k++] = (char)b;
        i += len;
    }
    return (long)k;
}

/* ---- byte-level BPE: pre-tokenizers ----
 *
 * Each pre-tokenizer is a regex that Hugging Face tokenizers runs with
 * Oniguruma (a backtracking engine: at each position the alternatives are
 * tried left to right, the first that matches wins, quantifiers are greedy
 * and give back characters one at a time). Matches are taken leftmost and
 * back to back; every character starts a match in these regexes, so the
 * pieces cover the text. Each function below returns the end of the match
 * that starts at i, reproducing that search by hand. Classes: \p{L}, \p{N}
 * and \s are unicode.h's LETTER, NUMBER and SPACE (Oniguruma's \s is the
 * White_Space property); [^\s\p{L}\p{N}] is everything else (OTHER, MARK).
 *
 * Llama 3 (Meta llama3 tokenizer.py pat_str; tokenizer.json Split regex):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Qwen2 (Qwen2 tokenizer.json Split regex): the same with \p{N} for
 * \p{N}{1,3}.
 * GPT-2 (openai/gpt-2 src/encoder.py; the regex of tokenizers'
 * ByteLevel pre-tokenizer with use_regex):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * SmolLM (SmolLM2 tokenizer.json: Digits with individual_digits, then
 * ByteLevel with use_regex): every character with Rust's char::is_numeric
 * (General_Category N) is a piece alone (tokenizers pre_tokenizers/
 * digits.rs); the GPT-2 regex then runs on each stretch between them, so
 * its look-ahead stops at the stretch's end. */

struct chr {
    uint32_t cp;
    uint32_t len;
    enum unicode_class cls;
};

/* The character at s[i] (i < n). A byte that starts no well-formed
 * character is a character of its own, of class OTHER. */
static struct chr chr_at(const unsigned char *s, size_t n, size_t i)
{
    struct chr c;
    if (s[i] < 0x80) {
        c.cp = s[i];
        c.len = 1;
        c.cls = unicode_class_of(c.cp);
        return c;
    }
    size_t len = utf8_char_len(s + i, n - i);
    if (len == 0) {
        c.cp = 0xfffd;
        c.len = 1;
        c.cls = UNICODE_OTHER;
        return c;
    }
    c.cp = utf8_decode(s + i, len);
    c.len = (uint32_t)len;
    c.cls = unicode_class_of(c.cp);
    return c;
}

static int is_newline(uint32_t cp)
{
    return cp == '\r' || cp == '\n';
}

/* [^\s\p{L}\p{N}] */
static int is_other(enum unicode_class c)
{
    return c == UNICODE_OTHER || c == UNICODE_MARK;
}

/* End of the run of characters of class cls starting at i (max 0: no
 * limit on the count). */
static size_t run_end(const unsigned char *s, size_t n, size_t i, enum unicode_class cls,
                      size_t max)
{
    size_t count = 0;
    while (i < n && (max == 0 || count < max)) {
        struct chr c = chr_at(s, n, i);
        if (c.cls != cls)
            break;
        i += c.len;
        count++;
    }
    return i;
}

static size_t others_end(const unsigned char *s, size_t n, size_t i)
{
    while (i < n) {
        struct chr c = chr_at(s, n, i);
        if (!is_other(c.cls))
            break;
        i += c.len;
    }
    return i;
}

/* '(s|t|re|ve|m|ll|d) after the apostrophe at s[i]: the match end, or 0.
 * With fold, letters match case-insensitively as Oniguruma's (?i) does with
 * Unicode simple case folding (CaseFolding.txt), under which U+017F LATIN
 * SMALL LETTER LONG S also folds to 's'. */
static size_t contraction_end(const unsigned char *s, size_t n, size_t i, int fold)
{
    static const char *const suffixes[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
        const char *x = suffixes[k];
        size_t j = i + 1;
        while (*x) {
            if (j < n && (s[j] == (unsigned char)*x || (fold && s[j] == (unsigned char)(*x - 32))))
                j++;
            else if (fold && *x == 's' && j + 1 < n && s[j] == 0xc5 && s[j + 1] == 0xbf)
                j += 2; /* U+017F */
            else
                break;
            x++;
        }
        if (!*x)
            return j;
    }
    return 0;
}

/* The white-space alternatives at i (s[i] is white space): with newlines,
 * \s*[\r\n]+ first - \s* gives back characters until a newline follows, so
 * the match ends after the run's last newline; then \s+(?!\S), which gives
 * back the run's last character unless the run reaches the end; then \s+. */
static size_t space_end(const unsigned char *s, size_t n, size_t i, int newlines)
{
    size_t end = i, last_start = i, after_newline = 0;
    while (end < n) {
        struct chr c = chr_at(s, n, end);
        if (c.cls != UNICODE_SPACE)
            break;
        last_start = end;
        end += c.len;
        if (is_newline(c.cp))
            after_newline = end;
    }
    if (newlines && after_newline)
        return after_newline;
    if (end == n || last_start == i)
        return end;
    return last_start;
}

/* Llama 3 (max_digits 3) and Qwen2 (max_digits 1). */
static size_t llama3_end(const unsigned char *s, size_t n, size_t i, size_t max_digits)
{
    struct chr c = chr_at(s, n, i);
    size_t next = i + c.len, j;
    if (c.cp == '\'' && (j = contraction_end(s, n, i, 1)) != 0)
        return j;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c.cls == UNICODE_LETTER)
        return run_end(s, n, i, UNICODE_LETTER, 0);
    if (c.cls != UNICODE_NUMBER && !is_newline(c.cp) && next < n &&
        chr_at(s, n, next).cls == UNICODE_LETTER)
        return run_end(s, n, next, UNICODE_LETTER, 0);
    /* \p{N}{1,3} */
    if (c.cls == UNICODE_NUMBER)
        return run_end(s, n, i, UNICODE_NUMBER, max_digits);
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    j = i;
    if (c.cp == ' ' && next < n && is_other(chr_at(s, n, next).cls))
        j = next;
    else if (!is_other(c.cls))
        return space_end(s, n, i, 1); /* c is white space */
    j = others_end(s, n, j);
    while (j < n && is_newline(s[j]))
        j++;
    return j;
}

static size_t gpt2_end(const unsigned char *s, size_t n, size_t i)
{
    struct chr c = chr_at(s, n, i);
    size_t start = i, j;
    if (c.cp == '\'' && (j = contraction_end(s, n, i, 0)) != 0)
        return j;
    /* the optional space of  ?\p{L}+,  ?\p{N}+ and  ?[^\s\p{L}\p{N}]+ */
    if (c.cp == ' ' && i + 1 < n) {
        struct chr d = chr_at(s, n, i + 1);
        if (d.cls != UNICODE_SPACE) {
            start = i + 1;
            c = d;
        }
    }
    if (c.cls == UNICODE_LETTER || c.cls == UNICODE_NUMBER)
        return run_end(s, n, start, c.cls, 0);
    if (is_other(c.cls))
        return others_end(s, n, start);
    return space_end(s, n, i, 0);
}

/* Iterates over the pieces of s[0..n). */
struct splitter {
    uint32_t pre;
    const unsigned char *s;
    size_t n, pos;
    size_t stretch_end; /* SmolLM: end of the current digit or non-digit stretch */
};

/* End of the next piece (> sp->pos), which then becomes the position.
 * Call only while sp->pos < sp->n. */
static size_t split_next(struct splitter *sp)
{
    const unsigned char *s = sp->s;
    size_t i = sp->pos, end;
    switch (sp->pre) {
    case HEARTH_PRE_LLAMA3:
        end = llama3_end(s, sp->n, i, 3);
        break;
    case HEARTH_PRE_QWEN2:
        end = llama3_end(s, sp->n, i, 1);
        break;
    case HEARTH_PRE_GPT2:
        end = gpt2_end(s, sp->n, i);
        break;
    case HEARTH_PRE_SMOLLM:
        if (i >= sp->stretch_end) {
            struct chr c = chr_at(s, sp->n, i);
            size_t j = i + c.len;
            if (c.cls != UNICODE_NUMBER) {
                while (j < sp->n) {
                    struct chr d = chr_at(s, sp->n, j);
                    if (d.cls == UNICODE_NUMBER)
                        break;
                    j += d.len;
                }
            }
            sp->stretch_end = j;
        }
        end = gpt2_end(s, sp->stretch_end, i);
        break;
    default: /* HEARTH_PRE_NONE */
        end = sp->n;
        break;
    }
    sp->pos = end;
    return end;
}

static int known_pre_tokenizer(uint32_t pre)
{
    return pre <= HEARTH_PRE_SMOLLM;
}

long tokenizer_pre_split(uint32_t pre, const char *text, size_t n_bytes, size_t *ends)
{
    if (!known_pre_tokenizer(pre))
        return -1;
    struct splitter sp = {pre, (const unsigned char *)text, n_bytes, 0, 0};
    long count = 0;
    while (sp.pos < n_bytes)
        ends[count++] = split_next(&sp);
    return count;
}

/* ---- byte-level BPE: merges ---- */

static uint32_t merge_slot(const struct tokenizer_tables *x, uint32_t left, uint32_t right)
{
    /* Fibonacci hashing of the pair (Knuth, TAOCP vol. 3, 6.4) */
    uint64_t h = ((uint64_t)left << 32 | right) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> (64 - x->slot_bits));
}

/* Rank (index) of the merge (left, right), or UINT32_MAX. */
static uint32_t merge_rank(const struct tokenizer *t, uint32_t left, uint32_t right)
{
    const struct tokenizer_tables *x = t->tables;
    uint32_t mask = (1u << x->slot_bits) - 1;
    for (uint32_t k = merge_slot(x, left, right);; k = (k + 1) & mask) {
        uint32_t m = x->merge_slots[k];
        if (m == 0)
            return UINT32_MAX;
        if (t->merges[m - 1][0] == left && t->merges[m - 1][1] == right)
            return m - 1;
    }
}

/* Pieces the BPE model itself holds: not added tokens (CONTROL,
 * USER_DEFINED), which Hugging Face keeps outside model.vocab. */
static int is_model_kind(uint8_t kind)
{
    return kind != HEARTH_TOKEN_CONTROL && kind != HEARTH_TOKEN_USER_DEFINED;
}

/* Slots needed for n keys at most 3/4 full. */
static unsigned slot_bits_for(uint32_t n)
{
    unsigned bits = 4;
    while (((uint64_t)1 << bits) < (uint64_t)n * 4 / 3 + 1)
        bits++;
    return bits;
}

/* FNV-1a 64 of the piece bytes (format.h), folded to bits bits. */
static uint32_t piece_slot(const char *p, size_t n, unsigned bits)
{
    uint64_t h = hearth_fnv1a(HEARTH_FNV_OFFSET, p, n);
    return (uint32_t)((h ^ (h >> 32)) * 0x9e3779b97f4a7c15ull >> (64 - bits));
}

/* The id of the model piece equal to key, or -1. */
static int32_t lookup_model(const struct tokenizer *t, const char *key, size_t n)
{
    const struct tokenizer_tables *x = t->tables;
    if (n == 0 || n > t->hdr.max_piece_bytes)
        return -1;
    uint32_t mask = ((uint32_t)1 << x->piece_bits) - 1;
    for (uint32_t k = piece_slot(key, n, x->piece_bits);; k = (k + 1) & mask) {
        uint32_t id = x->piece_slots[k], len;
        if (id == 0)
            return -1;
        const char *p = piece_at(t, id - 1, &len);
        if (len == n && memcmp(p, key, n) == 0)
            return (int32_t)id - 1;
    }
}

/* Hashes the model pieces; when two share their bytes, the lower id is
 * the one found. */
static int build_piece_index(const struct tokenizer *t, struct tokenizer_tables *x, char *err)
{
    if (t->hdr.n_tokens > MAX_HASHED)
        return fail(err, "tokenizer section: %u tokens is more than the %u supported",
                    t->hdr.n_tokens, MAX_HASHED);
    x->piece_bits = slot_bits_for(t->hdr.n_tokens);
    x->piece_slots = calloc((size_t)1 << x->piece_bits, sizeof *x->piece_slots);
    if (!x->piece_slots)
        return fail(err, "tokenizer: out of memory for the index of %u pieces", t->hdr.n_tokens);
    uint32_t mask = ((uint32_t)1 << x->piece_bits) - 1;
    for (uint32_t id = 0; id < t->hdr.n_tokens; id++) {
        uint32_t n;
        const char *p = piece_at(t, id, &n);
        if (!is_model_kind(t->kinds[id]) || n == 0 || lookup_model(t, p, n) >= 0)
            continue;
        uint32_t k = piece_slot(p, n, x->piece_bits);
        while (x->piece_slots[k] != 0)
            k = (k + 1) & mask;
        x->piece_slots[k] = id + 1;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        x->byte_piece[b] = lookup_model(t, &c, 1);
    }
    return 0;
}

/* Inserts every merge into the hash and finds its merged piece, as
 * tokenizers models/bpe/model.rs BpeBuilder::build does: it refuses a merge
 * whose concatenation is not in the vocabulary. A pair listed twice is
 * refused too (tokenizers would keep the last rank, llama.cpp the first). */
static int build_merge_index(const struct tokenizer *t, struct tokenizer_tables *x, char *err)
{
    uint32_t n_merges = t->hdr.n_merges;
    if (n_merges > MAX_HASHED)
        return fail(err, "tokenizer section: %u merges is more than the %u supported", n_merges,
                    MAX_HASHED);
    x->slot_bits = slot_bits_for(n_merges);
    x->merge_slots = calloc((size_t)1 << x->slot_bits, sizeof *x->merge_slots);
    x->merge_result = malloc(((size_t)n_merges + 1) * sizeof *x->merge_result);
    char *joined = malloc(2 * (size_t)t->hdr.max_piece_bytes + 1);
    int rc = 0;
    if (!x->merge_slots || !x->merge_result || !joined)
        rc = fail(err, "tokenizer: out of memory for the index of %u merges", n_merges);
    uint32_t mask = ((uint32_t)1 << x->slot_bits) - 1;
    for (uint32_t m = 0; rc == 0 && m < n_merges; m++) {
        uint32_t a = t->merges[m][0], b = t->merges[m][1], na, nb;
        const char *pa = piece_at(t, a, &na), *pb = piece_at(t, b, &nb);
        memcpy(joined, pa, na);
        memcpy(joined + na, pb, nb);
        int32_t id = lookup_model(t, joined, (size_t)na + nb);
        if (id < 0) {
            rc = fail(err, "tokenizer section: merge %u (%u, %u): the merged piece is not in "
                      "the vocabulary", m, a, b);
            break;
        }
        x->merge_result[m] = (uint32_t)id;
        uint32_t k = merge_slot(x, a, b);
        while (x->merge_slots[k] != 0) {
            uint32_t other = x->merge_slots[k] - 1;
            if (t->merges[other][0] == a && t->merges[other][1] == b) {
                rc = fail(err, "tokenizer section: merges %u and %u are the same pair (%u, %u)",
                          other, m, a, b);
                break;
            }
            k = (k + 1) & mask;
        }
        x->merge_slots[k] = m + 1;
    }
    free(joined);
    return rc;
}

static int build_tables(struct tokenizer *t, char *err)
{
    t->tables = calloc(1, sizeof *t->tables);
    if (!t->tables)
        return fail(err, "tokenizer: out of memory");
    if (build_special_matcher(t, t->tables, err) < 0)
        return -1;
    if (t->hdr.type != HEARTH_TOKENIZER_BYTE_BPE)
        return 0;
    if (build_piece_index(t, t->tables, err) < 0)
        return -1;
    return build_merge_index(t, t->tables, err);
}

static void free_tables(struct tokenizer_tables *x)
{
    if (!x)
        return;
    free(x->special_ids);
    free(x->piece_slots);
    free(x->merge_slots);
    free(x->merge_result);
    free(x);
}

/* Working state of a byte-level encode call, reused across pieces. */
struct bbpe {
    const struct tokenizer *t;
    struct bsym {
        uint32_t id;        /* UINT32_MAX once merged into its left neighbour */
        int32_t prev, next; /* live neighbours, -1 at the ends */
    } *sym;
    size_t sym_cap;
    uint64_t *heap; /* candidate merges: rank << 32 | left symbol, smallest first */
    size_t heap_n, heap_cap;
    /* NFC of one stretch (HEARTH_TOK_NFC), allocated when a stretch first
     * fails the quick check: nfc holds nfc_cap bytes, work work_len entries */
    char *nfc;
    size_t nfc_cap;
    uint32_t *work;
    size_t work_len;
};

static int heap64_push(struct bbpe *b, uint64_t key)
{
    if (b->heap_n == b->heap_cap) {
        size_t cap = b->heap_cap ? 2 * b->heap_cap : 64;
        uint64_t *h = realloc(b->heap, cap * sizeof *h);
        if (!h)
            return -1;
        b->heap = h;
        b->heap_cap = cap;
    }
    size_t i = b->heap_n++;
    while (i > 0 && key < b->heap[(i - 1) / 2]) {
        b->heap[i] = b->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    b->heap[i] = key;
    return 0;
}

static uint64_t heap64_pop(struct bbpe *b)
{
    uint64_t top = b->heap[0], last = b->heap[--b->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= b->heap_n)
            break;
        if (c + 1 < b->heap_n && b->heap[c + 1] < b->heap[c])
            c++;
        if (b->heap[c] >= last)
            break;
        b->heap[i] = b->heap[c];
        i = c;
    }
    if (b->heap_n > 0)
        b->heap[i] = last;
    return top;
}

/* Queues the merge of symbol i with its right neighbour, if there is one. */
static int queue_pair(struct bbpe *b, int32_t i)
{
    if (i < 0 || b->sym[i].next < 0)
        return 0;
    uint32_t rank = merge_rank(b->t, b->sym[i].id, b->sym[b->sym[i].next].id);
    if (rank == UINT32_MAX)
        return 0;
    return heap64_push(b, (uint64_t)rank << 32 | (uint32_t)i);
}

/* BPE on one pre-tokenizer piece p[0..n) (tokenizers models/bpe/word.rs
 * merge_all): start from one symbol per byte; repeatedly apply the queued
 * merge with the lowest rank, leftmost first on equal ranks. A queued entry
 * is stale when its left symbol is gone or now forms another pair with its
 * neighbour; ranks name pairs uniquely, so re-reading the pair's rank
 * detects that. With ignore_merges (tokenizers BPE::tokenize), a piece that
 * is itself in the vocabulary is one token. */
static int bpe_piece(struct bbpe *b, const char *p, size_t n, struct out_ids *o, char *err)
{
    const struct tokenizer *t = b->t;
    const struct tokenizer_tables *x = t->tables;
    if (t->hdr.flags & HEARTH_TOK_IGNORE_MERGES) {
        int32_t id = lookup_model(t, p, n);
        if (id >= 0)
            return emit(o, (uint32_t)id, err);
    }
    if (n > b->sym_cap) {
        if (n > SIZE_MAX / sizeof *b->sym)
            return fail(err, "tokenizer: a piece of %zu bytes is too long", n);
        struct bsym *s = realloc(b->sym, n * sizeof *s);
        if (!s)
            return fail(err, "tokenizer: out of memory for a piece of %zu bytes", n);
        b->sym = s;
        b->sym_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t id = x->byte_piece[(unsigned char)p[i]];
        if (id < 0)
            return fail(err, "tokenizer: byte 0x%02X has no piece in this byte-level vocabulary",
                        (unsigned char)p[i]);
        b->sym[i] = (struct bsym){(uint32_t)id, (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    }
    b->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (queue_pair(b, (int32_t)i) < 0)
            return fail(err, "tokenizer: out of memory");
    while (b->heap_n > 0) {
        uint64_t key = heap64_pop(b);
        uint32_t rank = (uint32_t)(key >> 32);
        int32_t left = (int32_t)(uint32_t)key, right = b->sym[left].next;
        if (b->sym[left].id == UINT32_MAX || right < 0 ||
            merge_rank(t, b->sym[left].id, b->sym[right].id) != rank)
            continue;
        b->sym[left].id = x->merge_result[rank];
        b->sym[left].next = b->sym[right].next;
        if (b->sym[right].next >= 0)
            b->sym[b->sym[right].next].prev = left;
        b->sym[right].id = UINT32_MAX;
        if (queue_pair(b, b->sym[left].prev) < 0 || queue_pair(b, left) < 0)
            return fail(err, "tokenizer: out of memory");
    }
    for (int32_t i = 0; i >= 0; i = b->sym[i].next)
        if (emit(o, b->sym[i].id, err) < 0)
            return -1;
    return 0;
}

/* Pre-tokenizes one stretch of text between special tokens and encodes
 * each piece. */
static int encode_stretch(struct bbpe *b, const char *s, size_t n, struct out_ids *o, char *err)
{
    struct splitter sp = {b->t->hdr.pre_tokenizer, (const unsigned char *)s, n, 0, 0};
    while (sp.pos < n) {
        size_t start = sp.pos, end = split_next(&sp);
        if (bpe_piece(b, s + start, end - start, o, err) < 0)
            return -1;
    }
    return 0;
}

/* encode_stretch after the normalizer: with HEARTH_TOK_NFC the stretch is
 * put in NFC first, as tokenizers' NFC normalizer does to the text between
 * added tokens (AddedVocabulary::extract_and_normalize; hearth's added
 * tokens are all non-normalized ones, matched before). nfc_bytes is the
 * room for the NFC text: 3 times the bytes the caller was given, which
 * covers every stretch (a U+FFFD that stands for a bad byte stays 3
 * bytes; any other character grows at most 3-fold). */
static int encode_normalized(struct bbpe *b, const char *s, size_t n, size_t nfc_bytes,
                             struct out_ids *o, char *err)
{
    if (!(b->t->hdr.flags & HEARTH_TOK_NFC) || unicode_nfc_quick_check(s, n) == UNICODE_NFC_YES)
        return encode_stretch(b, s, n, o, err);
    size_t need = unicode_nfc_work_len(n);
    if (!b->nfc) {
        b->nfc = malloc(nfc_bytes);
        b->nfc_cap = nfc_bytes;
    }
    if (need != SIZE_MAX && need > b->work_len && need <= SIZE_MAX / sizeof *b->work) {
        free(b->work);
        b->work = malloc(need * sizeof *b->work);
        b->work_len = b->work ? need : 0;
    }
    if (!b->nfc || b->work_len < need)
        return fail(err, "tokenizer: out of memory normalizing %zu bytes", n);
    size_t k = unicode_nfc(s, n, b->nfc, b->nfc_cap, b->work, b->work_len);
    if (k == SIZE_MAX) /* the bounds above make this impossible */
        return fail(err, "tokenizer: the NFC of %zu bytes is longer than %zu bytes", n,
                    b->nfc_cap);
    return encode_stretch(b, b->nfc, k, o, err);
}

/* Byte-level BPE (tokenizers Tokenizer::encode): added tokens are cut out
 * first (AddedVocabulary::extract_and_normalize: non-special ones always,
 * special ones when asked), then each stretch between them is normalized
 * (NFC, if the section says so), pre-tokenized, and each piece goes
 * through BPE. */
static int encode_byte_bpe(const struct tokenizer *t, const char *text, size_t n_bytes,
                           unsigned whole_kinds, struct out_ids *o, char *err)
{
    char *clean = malloc(3 * n_bytes);
    if (!clean)
        return fail(err, "tokenizer: out of memory encoding %zu bytes", n_bytes);
    size_t n = replace_ill_formed((const unsigned char *)text, n_bytes, 0, clean);
    struct bbpe b = {.t = t};
    size_t stretch = 0, i = 0;
    int rc = 0;
    while (rc == 0 && i < n) {
        uint32_t id;
        size_t len = match_whole_piece(t, whole_kinds, clean, n, i, &id);
        if (len == 0) {
            i += utf8_char_len((const unsigned char *)clean + i, n - i); /* >= 1: clean is well-formed */
            continue;
        }
        if (i > stretch)
            rc = encode_normalized(&b, clean + stretch, i - stretch, 3 * n_bytes, o, err);
        if (rc == 0)
            rc = emit(o, id, err);
        i += len;
        stretch = i;
    }
    if (rc == 0 && n > stretch)
        rc = encode_normalized(&b, clean + stretch, n - stretch, 3 * n_bytes, o, err);
    free(clean);
    free(b.sym);
    free(b.heap);
    free(b.nfc);
    free(b.work);
    return rc;
}

/* SentencePiece with special tokens: the text between CONTROL/UNKNOWN
 * pieces is encoded as if it were a whole text, dummy prefix included, as
 * llama.cpp llama_tokenize_impl does for SPM vocabularies. */
static int encode_spm_special(const struct tokenizer *t, const char *text, size_t n,
                              struct out_ids *o, char *err)
{
    size_t stretch = 0, i = 0;
    while (i < n) {
        uint32_t id;
        size_t len = match_whole_piece(t, SPECIAL_KINDS, text, n, i, &id);
        if (len == 0) {
            size_t c = utf8_char_len((const unsigned char *)text + i, n - i);
            i += c ? c : 1;
            continue;
        }
        if (i > stretch && encode_spm(t, text + stretch, i - stretch, o, err) < 0)
            return -1;
        if (emit(o, id, err) < 0)
            return -1;
        o->prev_unknown = 0;
        i += len;
        stretch = i;
    }
    if (n > stretch && encode_spm(t, text + stretch, n - stretch, o, err) < 0)
        return -1;
    return 0;
}

static int encode_text(const struct tokenizer *t, const char *text, size_t n_bytes, int add_bos,
                       int special, int32_t *ids, size_t max_ids, char *err)
{
    if (!t || !t->sorted_ids || !t->tables)
        return fail(err, "tokenizer: not initialized");
    if (!text && n_bytes > 0)
        return fail(err, "tokenizer: text is NULL");
    if (n_bytes > MAX_TEXT_BYTES)
        return fail(err, "tokenizer: text of %zu bytes is too long (limit %zu)", n_bytes,
                    MAX_TEXT_BYTES);
    struct out_ids o = {ids, 0, max_ids, 0};
    if (add_bos) {
        if (t->bos_id == UINT32_MAX)
            return fail(err, "tokenizer: BOS requested but the model has no bos_id");
        if (emit(&o, t->bos_id, err) < 0)
            return -1;
    }
    int rc = 0;
    if (n_bytes == 0)
        rc = 0;
    else if (t->hdr.type == HEARTH_TOKENIZER_BYTE_BPE)
        rc = encode_byte_bpe(t, text, n_bytes,
                             KIND_BIT(HEARTH_TOKEN_USER_DEFINED) | (special ? SPECIAL_KINDS : 0),
                             &o, err);
    else if (special)
        rc = encode_spm_special(t, text, n_bytes, &o, err);
    else
        rc = encode_spm(t, text, n_bytes, &o, err);
    return rc < 0 ? -1 : (int)o.n;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t n_bytes,
                     int add_bos, int32_t *ids, size_t max_ids, char *err)
{
    return encode_text(t, text, n_bytes, add_bos, 0, ids, max_ids, err);
}

int tokenizer_encode_special(const struct tokenizer *t, const char *text, size_t n_bytes,
                             int add_bos, int32_t *ids, size_t max_ids, char *err)
{
    return encode_text(t, text, n_bytes, add_bos, 1, ids, max_ids, err);
}

size_t tokenizer_match_special(const struct tokenizer *t, const char *text, size_t n_bytes,
                               size_t at, int32_t *id)
{
    uint32_t found;
    if (!t || !t->tables || at >= n_bytes)
        return 0;
    size_t len = match_whole_piece(t, SPECIAL_KINDS, text, n_bytes, at, &found);
    *id = len ? (int32_t)found : -1;
    return len;
}

/* ---- decoding ---- */

static size_t copy_out(char *out, size_t cap, size_t k, const char *src, size_t n)
{
    if (k >= cap)
        return k;
    if (n > cap - k)
        n = cap - k;
    memcpy(out + k, src, n);
    return k + n;
}

/* Writes at most cap bytes; cap >= max_piece_bytes + sizeof UNK_SURFACE
 * never cuts a piece short (a decoded piece is never longer than its bytes
 * in the vocabulary, except the 5-byte unknown surface). */
size_t tokenizer_decode(const struct tokenizer *t, int32_t prev, int32_t id, char *out,
                        size_t cap)
{
    if (!t || !t->piece_offsets || id < 0 || (uint32_t)id >= t->hdr.n_tokens)
        return 0;
    uint8_t kind = t->kinds[id];
    if (kind == HEARTH_TOKEN_CONTROL)
        return 0;
    uint32_t n;
    const char *p = piece_at(t, (uint32_t)id, &n);
    if (t->hdr.type != HEARTH_TOKENIZER_SPM)
        return copy_out(out, cap, 0, p, n);
    if (kind == HEARTH_TOKEN_UNKNOWN)
        return copy_out(out, cap, 0, UNK_SURFACE, sizeof UNK_SURFACE - 1);
    if (kind == HEARTH_TOKEN_BYTE) {
        char byte = (char)tokenizer_byte_piece_value(p, n); /* validated at init */
        return copy_out(out, cap, 0, &byte, 1);
    }
    size_t i = 0, k = 0;
    if ((t->hdr.flags & HEARTH_TOK_ADD_DUMMY_PREFIX) && t->bos_id != UINT32_MAX &&
        prev == (int32_t)t->bos_id && n >= sizeof SPACE_MARK &&
        memcmp(p, SPACE_MARK, sizeof SPACE_MARK) == 0)
        i = sizeof SPACE_MARK;
    while (i < n) {
        if (n - i >= sizeof SPACE_MARK && memcmp(p + i, SPACE_MARK, sizeof SPACE_MARK) == 0) {
            k = copy_out(out, cap, k, " ", 1);
            i += sizeof SPACE_MARK;
        } else {
            k = copy_out(out, cap, k, p + i, 1);
            i++;
        }
    }
    return k;
}
