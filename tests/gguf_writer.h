/* tests/gguf_writer.h - writes GGUF files for tests; trusts its inputs.
 * Follows llama.cpp's layout (ggml/include/gguf.h): "GGUF", u32 version,
 * u64 tensor count, u64 key/value count, the key/values, the tensor infos
 * (name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64
 * offset into the data), then the data, each tensor at a multiple of the
 * alignment. Strings are a u64 length and the bytes; all little-endian.
 *
 * Hostile-file tests need to break the format, so nothing here checks
 * anything: keys and tensors can be left out (skip), raw bytes added to the
 * metadata (gg_put_* on g->kv), tensor infos edited in g->t before writing,
 * and gg_bytes reports where each header field landed (gg_marks) so a test
 * can damage exactly one. Not a reader, and not library code (it aborts
 * when out of memory). */
#ifndef HEARTH_TESTS_GGUF_WRITER_H
#define HEARTH_TESTS_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "../exporter/source.h"
#include "synth.h"

/* gguf.h enum gguf_type; ggml.h ggml_type values used by tests */
enum { V_U8, V_I8, V_U16, V_I16, V_U32, V_I32, V_F32, V_BOOL, V_STR, V_ARR, V_U64, V_I64, V_F64 };
enum { G_F32 = 0, G_F16 = 1, G_Q4_0 = 2, G_Q8_0 = 8, G_Q4_K = 12, G_BF16 = 30 };

/* ---- a growing byte buffer ---- */

struct gg_buf {
    uint8_t *p;
    size_t n, cap;
};

void gg_put(struct gg_buf *b, const void *data, size_t n);
void gg_put_le(struct gg_buf *b, uint64_t v, unsigned n_bytes);
void gg_put_u32(struct gg_buf *b, uint32_t v);
void gg_put_u64(struct gg_buf *b, uint64_t v);
void gg_put_f32(struct gg_buf *b, float f);
void gg_put_strn(struct gg_buf *b, const char *s, size_t n); /* u64 length, then the bytes */
void gg_put_str(struct gg_buf *b, const char *s);
/* Overwrites n_bytes at `at` (which must lie inside b) with v, little-endian. */
void gg_patch_le(struct gg_buf *b, size_t at, uint64_t v, unsigned n_bytes);
int gg_write_buf(const char *path, const struct gg_buf *b); /* 0 or -1 */

/* ---- a GGUF file being built ---- */

#define GG_MAX_TENSORS 64
#define GG_MAX_SKIP 4

struct gg_tensor {
    char name[80];
    uint32_t n_dims, type;
    uint64_t ne[4];
    uint8_t *data;
    size_t n_bytes;
};

struct gg {
    struct gg_buf kv;              /* the key/values, n_kv of them */
    uint64_t n_kv;
    struct gg_tensor t[GG_MAX_TENSORS];
    int n_t;
    int dropped;                   /* tensors not added: the table was full */
    const char *skip[GG_MAX_SKIP]; /* keys and tensor names the builder leaves out */
    uint32_t version, alignment;   /* written as is (alignment is not a key) */
};

/* Where gg_bytes put things, for tests that damage one field. */
struct gg_marks {
    size_t n_tensors_at, n_kv_at, kv_at, infos_at, data_at;
    size_t info_at[GG_MAX_TENSORS], type_at[GG_MAX_TENSORS], offset_at[GG_MAX_TENSORS];
    uint64_t offset[GG_MAX_TENSORS];
};

void gg_init(struct gg *g); /* empty, version 3, alignment 32 */
void gg_free(struct gg *g);

/* Key/values; each does nothing when key is in g->skip. */
void kv_u32(struct gg *g, const char *key, uint32_t v);
void kv_f32(struct gg *g, const char *key, float v);
void kv_bool(struct gg *g, const char *key, int v);
void kv_str(struct gg *g, const char *key, const char *v);
/* An array of n strings; lens NULL means NUL-terminated. */
void kv_strs(struct gg *g, const char *key, char *const *s, const uint32_t *lens, uint32_t n);
/* An array of n 4-byte elements of elem_type (V_U32, V_I32, V_F32). */
void kv_arr32(struct gg *g, const char *key, uint32_t elem_type, const void *v, uint32_t n);

/* A tensor of rows x cols (rows 1: a vector) holding a copy of n_bytes of
 * data as they are; left out when name is in g->skip. */
void gg_tensor(struct gg *g, const char *name, uint32_t type, uint64_t rows, uint64_t cols,
               const void *data, size_t n_bytes);

/* The whole file in *out (malloc'd; free out->p), with nothing after the
 * last tensor's data so any truncation loses data; mk may be NULL. */
void gg_bytes(const struct gg *g, struct gg_buf *out, struct gg_marks *mk);
int gg_write(const struct gg *g, const char *path); /* 0, or -1 (also if tensors were dropped) */

/* ---- weights and models ---- */

/* rows x cols floats as a GGUF tensor of type G_F32, G_F16, G_BF16, G_Q8_0
 * or G_Q4_0 (cols a multiple of 32 for the last two), malloc'd, size in *n.
 * The block types use a plain rounding quantizer, not ggml's: any valid
 * blocks serve these tests. */
uint8_t *to_gguf(const float *w, uint64_t rows, uint64_t cols, uint32_t type, size_t *n);

/* Rows of a q/k matrix (or bias: cols = 1) in Hugging Face's rotate-half
 * order, as a qwen2 GGUF stores them: per head, HF row p * half + j holds
 * the adjacent-pair row 2j + p. malloc'd. */
float *rotate_half(const float *w, uint64_t rows, uint64_t cols, uint64_t head_dim);

/* w as tensor name of the given type (vectors always F32); with
 * permute_head_dim > 0 the rows in rotate-half order. */
void gg_matrix(struct gg *g, const char *name, const float *w, uint64_t rows, uint64_t cols,
               uint32_t type, uint64_t permute_head_dim);

/* How gg_model writes a synth model. */
struct gg_opts {
    const char *arch;              /* "llama" (default) or "qwen2" */
    uint32_t types[2];             /* ggml types of the matrices, used in turn */
    const float *bq, *bk, *bv;     /* NULL, or q/k/v biases laid out as synth_model's */
};

/* The "<arch>.*" hyperparameters of c (convert_hf_to_gguf.py's keys). */
void gg_meta(struct gg *g, const char *arch, const struct synth_config *c);

/* Metadata and tensors of sm as llama.cpp lays out arch: "llama" keeps
 * q/k rows in adjacent pairs (convert_hf_to_gguf.py permutes HF's), "qwen2"
 * keeps HF's rotate-half order (FACTS.md). No vocabulary, no rope_freqs. */
void gg_model(struct gg *g, const struct synth_model *sm, const struct gg_opts *o);

/* tokenizer.ggml.* of a SentencePiece vocabulary, as convert_hf_to_gguf.py
 * writes them (gguf-py constants.py Keys.Tokenizer; token_type holds the
 * SentencePiece piece types). */
void gg_vocab_spm(struct gg *g, const struct vocab *v);

#endif
