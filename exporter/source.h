/* exporter/source.h - what every export source reader (llama2.c checkpoint,
 * Hugging Face folder, tokenizer files) hands to the writer. Readers find and
 * describe tensors and the vocabulary; they never convert weights: the writer
 * streams each tensor row by row from its source file. */
#ifndef HEARTH_EXPORT_SOURCE_H
#define HEARTH_EXPORT_SOURCE_H

#include <stdint.h>
#include "../format.h"
#include "../err.h"

/* One tensor in a source file, described in hearth terms. */
struct src_tensor {
    char name[HEARTH_NAME_BYTES]; /* hearth name, e.g. "blk.0.attn_q.weight" */
    int fd;                       /* open source file (owned by struct source) */
    uint64_t offset;              /* byte offset of element [0][0] in fd */
    uint32_t type;                /* HEARTH_F32, HEARTH_F16 or HEARTH_BF16 */
    uint64_t rows, cols;          /* row-major, cols contiguous */
    /* > 0: the rows are in Hugging Face rotate-half order within each of this
     * many heads; the writer reorders them to adjacent rotary pairs. */
    uint32_t unpermute_heads;
};

/* A vocabulary as read from a tokenizer source. All arrays are malloc'd and
 * owned by the struct (vocab_free). Pieces are raw bytes, not NUL-terminated. */
struct vocab {
    struct hearth_tokenizer_header hdr; /* type, n_tokens, n_merges, flags, unk_id ... */
    char **pieces;
    uint32_t *piece_bytes;
    float *scores;
    uint8_t *kinds;                     /* enum hearth_token_kind */
    uint32_t (*merges)[2];              /* byte-level BPE only */
    uint32_t bos_id, eos_id;            /* UINT32_MAX when the source names none */
};

/* A whole model source: config (the hearth_header fields dim .. chat_template;
 * layout fields are the writer's), tensors and vocabulary. */
#define SOURCE_MAX_FILES 64
struct source {
    struct hearth_header cfg;
    struct src_tensor *tensors;
    uint32_t n_tensors;
    struct vocab vocab;
    int fds[SOURCE_MAX_FILES];
    int n_fds;
    uint64_t input_bytes;               /* sum of the source files' sizes */
};

/* A tensor dimension named by what it is in the config, so readers can
 * state expected shapes as tables. */
enum dim_ref { D_ONE, D_DIM, D_HIDDEN, D_Q, D_KV, D_VOCAB, D_HALF_HEAD };
uint64_t dim_value(const struct hearth_header *c, uint8_t ref);

void source_free(struct source *src);
/* "<prefix>N.<suffix>" (N decimal, no leading zeros) -> suffix, *layer = N; else NULL. */
const char *layer_suffix(const char *name, const char *prefix, uint64_t *layer);
void vocab_free(struct vocab *v);
/* Zeroes v and allocates its per-token arrays (pieces NULL) for n_tokens;
 * -1 with err naming path, and v left empty, if out of memory. */
int vocab_alloc(struct vocab *v, uint32_t n_tokens, const char *path, char *err);

/* Readers. Each returns 0, or -1 with err naming the file and the problem. */
int llama2c_read(const char *path, struct source *src, char *err);
int hf_read(const char *dir, struct source *src, char *err);
int gguf_read(const char *path, struct source *src, char *err);

int vocab_read_spm_model(const char *path, struct vocab *v, char *err);     /* tokenizer.model */
int vocab_read_llama2c(const char *path, uint32_t n_tokens, struct vocab *v, char *err); /* tokenizer.bin */
int vocab_read_tokenizer_json(const char *path, struct vocab *v, char *err); /* tokenizer.json */

/* Serializes a vocabulary as the tokenizer section of format.h into a
 * malloc'd buffer. */
int vocab_serialize(const struct vocab *v, uint8_t **out, uint64_t *n_bytes, char *err);

/* The type a tensor is stored as when matrices are exported as out_type:
 * vectors, and matrices whose cols are not a multiple of 32, stay F32. */
uint32_t stored_type(const struct src_tensor *t, uint32_t out_type);

/* Writes the hearth model file for src at out_path with 2-D weights stored
 * as out_type (HEARTH_F32, HEARTH_Q8_0 or HEARTH_Q4_0, see stored_type).
 * Prints progress to stderr when verbose. */
int hearth_write(const struct source *src, const char *out_path, uint32_t out_type,
                 int verbose, char *err);

#endif
