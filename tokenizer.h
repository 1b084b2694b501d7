/* tokenizer.h - text <-> token ids over the tokenizer section of a hearth
 * model file (layout in format.h). The tokenizer reads the section in place
 * (usually inside the mmap of the model) and allocates only its lookup index. */
#ifndef HEARTH_TOKENIZER_H
#define HEARTH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "format.h"

struct tokenizer_tables;

struct tokenizer {
    struct hearth_tokenizer_header hdr;
    const float *scores;
    const uint8_t *kinds;
    const uint32_t *piece_offsets;      /* n_tokens + 1 */
    const uint32_t (*merges)[2];        /* n_merges */
    const char *piece_bytes;
    uint32_t *sorted_ids;               /* ids sorted by piece bytes, for lookup */
    int32_t byte_ids[256];              /* id of the <0xNN> piece, -1 if none */
    uint32_t bos_id, eos_id;
    /* built by tokenizer_init: the special-token matcher and, for byte-level
     * BPE, the merge index (tokenizer.c) */
    struct tokenizer_tables *tables;
};

/* Validates the section (every count, offset and id against n_bytes) and
 * builds the lookup index. bos_id/eos_id come from the model header. */
int tokenizer_init(struct tokenizer *t, const void *section, uint64_t n_bytes,
                   uint32_t bos_id, uint32_t eos_id, char *err);
void tokenizer_free(struct tokenizer *t);

/* Upper bound on the ids tokenizer_encode can produce for n_bytes of text
 * (also for tokenizer_encode_special when no CONTROL piece is one byte long). */
size_t tokenizer_max_ids(size_t n_bytes);

/* Encodes text (UTF-8, n_bytes long, need not be NUL-terminated) into ids,
 * BOS first if add_bos. Special-token text is plain text. Returns the count,
 * or -1 with err set if text is not usable or max_ids is too small.
 * Byte-level BPE: a byte that starts no well-formed UTF-8 character is
 * encoded as U+FFFD, as SentencePiece's normalizer does; the text of a
 * USER_DEFINED piece (a non-special added token) is always that piece.
 * With HEARTH_TOK_NFC (byte-level BPE only), the text between added tokens
 * is put in Unicode NFC (unicode.h) before pre-tokenization; the ids still
 * fit tokenizer_max_ids(n_bytes). */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t n_bytes,
                     int add_bos, int32_t *ids, size_t max_ids, char *err);

/* Like tokenizer_encode, but text that spells a CONTROL or UNKNOWN piece
 * exactly (case-sensitive; at each position the longest such piece wins)
 * becomes that piece's id, as Hugging Face encode() does by default: for
 * chat templates and an explicit --special, never for untrusted text. */
int tokenizer_encode_special(const struct tokenizer *t, const char *text, size_t n_bytes,
                             int add_bos, int32_t *ids, size_t max_ids, char *err);

/* The length of the longest CONTROL or UNKNOWN piece that text[at..n_bytes)
 * starts with (its id in *id), or 0: the match tokenizer_encode_special makes
 * at each position. A caller that allows special tokens only in parts of a
 * text (chat templates: never inside message content) splits the text at
 * the matches it allows and encodes the stretches between them with
 * tokenizer_encode, which is what tokenizer_encode_special does. */
size_t tokenizer_match_special(const struct tokenizer *t, const char *text, size_t n_bytes,
                               size_t at, int32_t *id);

/* Splits text into the pieces byte-level pre-tokenizer pre (enum
 * hearth_pre_tokenizer) makes: ends[k] is the end offset of piece k (ends
 * needs room for n_bytes entries). A byte that starts no well-formed UTF-8
 * character is one character of no class (like punctuation). Returns the
 * number of pieces, or -1 if pre is not a known pre-tokenizer. */
long tokenizer_pre_split(uint32_t pre, const char *text, size_t n_bytes, size_t *ends);

/* GPT-2's byte-to-unicode alphabet (openai/gpt-2 src/encoder.py
 * bytes_to_unicode), in which byte-level vocabularies spell their pieces:
 * decodes the UTF-8 text s[0..n) to the bytes it stands for, into out (room
 * for n bytes: every character stands for one byte and takes at least one).
 * Returns the byte count, or -1 if s is not well-formed UTF-8 or holds a
 * character outside the alphabet (*bad_at is then its offset in s). */
long tokenizer_gpt2_bytes(const char *s, size_t n, char *out, size_t *bad_at);
/* The alphabet character of byte b as UTF-8 into out (2 bytes of room);
 * returns its length (1 or 2). */
size_t tokenizer_gpt2_char(uint8_t b, char *out);

/* The byte a SentencePiece byte-fallback piece stands for: p is exactly
 * "<0xHH>" with upper-case hex, as SentencePiece's ByteToPiece spells it;
 * -1 for any other piece. */
int tokenizer_byte_piece_value(const char *p, size_t n);

/* The piece bytes of id as raw vocabulary text (not decoded). */
const char *tokenizer_piece(const struct tokenizer *t, uint32_t id, uint32_t *n_bytes);

/* Writes the text bytes that id stands for after prev into out (SentencePiece:
 * U+2581 -> ' ', <0xNN> -> that byte, the leading space right after BOS
 * stripped; control tokens -> nothing). Returns the byte count (<= cap). */
size_t tokenizer_decode(const struct tokenizer *t, int32_t prev, int32_t id,
                        char *out, size_t cap);

/* Holds back incomplete UTF-8 sequences so streamed output never prints half
 * a character. Ill-formed input becomes U+FFFD (EF BF BD): one per byte that
 * starts no character (invalid, overlong, surrogate, above U+10FFFF), and one
 * per character cut short (Unicode's maximal-subpart rule). Start from {0}. */
struct utf8_stream {
    unsigned char pending[4];
    int n_pending;
};
/* Appends n bytes; writes the complete characters to out (cap >= 3 * (n + 4))
 * and returns their count. */
size_t utf8_stream_push(struct utf8_stream *s, const char *in, size_t n, char *out);
/* Ends the stream: writes one U+FFFD if an incomplete character is pending
 * (out needs 3 bytes), clears it and returns the count. */
size_t utf8_stream_flush(struct utf8_stream *s, char *out);

#endif
