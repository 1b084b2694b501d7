/* tests/vectors.h - reading the reference-vector files the tokenizer tests
 * use (the reference TSVs, format in tests/data/README.md, and llama.cpp's
 * .inp/.out vocabulary vectors) and checking a tokenizer against them, plus
 * the tokenizer fixture test_tokenizer.c and test_bpe.c both build on. Test
 * helper only: it trusts its inputs and reports through CHECK (test.h); it
 * is not library code. */
#ifndef HEARTH_TESTS_VECTORS_H
#define HEARTH_TESTS_VECTORS_H

#include <stddef.h>
#include <stdint.h>

#include "../exporter/source.h"
#include "../tokenizer.h"

/* A tokenizer over a serialized section placed 4 bytes into its buffer
 * (4- but not 8-byte aligned, the weakest placement a model file allows). */
struct tok_fixture {
    uint8_t *buf;
    uint64_t n_bytes;
    struct tokenizer t;
    int ok; /* t was initialized */
};

/* Serializes v and starts a tokenizer on it; 0, or -1 after a failed CHECK
 * (fx is then empty and needs no close). */
int tok_fixture_init(struct tok_fixture *fx, const struct vocab *v, uint32_t bos_id,
                     uint32_t eos_id);
void tok_fixture_close(struct tok_fixture *fx);

/* Decodes the JSON string literal s[0..n) (quotes included) into out (room
 * for n bytes): the escapes of JSON, \uXXXX with surrogate pairs joined.
 * Returns the length, or -1 (also for a lone surrogate). */
long vectors_unquote(const char *s, size_t n, char *out);

/* Space-separated decimal ids in s[0..n); returns the count (<= max), or -1
 * for anything else or an id above INT32_MAX. */
long vectors_parse_ids(const char *s, size_t n, int32_t *ids, size_t max);

/* " id id ..." into out (cap bytes, at least 1), cut short when full. */
void vectors_format_ids(char *out, size_t cap, const int32_t *ids, long n);

/* Encodes without BOS, with tokenizer_encode_special if special, else
 * tokenizer_encode; ids holds tokenizer_max_ids(n) entries. Returns the
 * count, or -1 with err set. */
int vectors_encode(const struct tokenizer *t, int special, const char *text, size_t n,
                   int32_t *ids, char *err);

/* Decodes ids as a streaming client does: tokenizer_decode with prev
 * starting at BOS, through a utf8_stream flushed at the end; with
 * show_special, CONTROL pieces appear as their text, as a --tokenize listing
 * shows them. Returns a malloc'd NUL-terminated string of *len bytes. */
char *vectors_decode(const struct tokenizer *t, const int32_t *ids, long n, int show_special,
                     size_t *len);

/* Checks every data line of a reference TSV ("text" TAB ids TAB "decoded"):
 * the encoding of text (special: as vectors_encode) and the decode of the
 * expected ids (showing CONTROL pieces if special). Returns the number of
 * data lines. */
int vectors_check_tsv(const struct tokenizer *t, const char *path, int special);

/* Checks llama.cpp's vocabulary vectors: inp_path holds texts each followed
 * by "\n__ggml_vocab_test__\n", out_path one line of space-prefixed ids per
 * text. Each text must encode (special: as vectors_encode) to its ids and,
 * if check_decode, the ids must decode back to it. Returns the number of
 * vectors. */
int vectors_check_llamacpp(const struct tokenizer *t, const char *inp_path, const char *out_path,
                           int special, int check_decode);

#endif
