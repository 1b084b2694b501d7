/* format.h - the hearth model file, byte by byte.
 *
 * One definition shared by the writer (export/) and the reader (model.c).
 * docs/FORMAT.md describes the same layout in prose; keep the two in step.
 * This header holds layout only: no I/O and no validation logic.
 *
 * File layout (all integers little-endian, all offsets absolute from byte 0):
 *
 *   struct hearth_header              at offset 0, HEARTH_HEADER_BYTES long
 *   tokenizer section                 at header.tokenizer_offset
 *   tensor directory                  at header.tensors_offset,
 *                                     n_tensors x struct hearth_tensor_entry
 *   tensor data                       each tensor at a multiple of 64
 *   checksum                          last 8 bytes: FNV-1a 64 of every byte before it
 *
 * Version rule: HEARTH_VERSION changes whenever a reader of the old version
 * would misread a new file. Readers refuse any other version.
 */
#ifndef HEARTH_FORMAT_H
#define HEARTH_FORMAT_H

#include <stdint.h>

#define HEARTH_MAGIC "HRTH"
#define HEARTH_VERSION 1u
#define HEARTH_HEADER_BYTES 256u
#define HEARTH_TENSOR_ALIGN 64u
#define HEARTH_NAME_BYTES 56u
#define HEARTH_MAX_STOP_IDS 8u
#define HEARTH_CHECKSUM_BYTES 8u

/* Tensor element types. Values are part of the file format. */
enum hearth_type {
    HEARTH_F32 = 0,
    HEARTH_F16 = 1,
    HEARTH_BF16 = 2,
    HEARTH_Q8_0 = 8,  /* blocks of 32: fp16 scale, 32 x int8 (GGUF Q8_0 math) */
    HEARTH_Q4_0 = 9,  /* blocks of 32: fp16 scale, 16 bytes of nibbles (GGUF Q4_0 math) */
};

enum hearth_rope_scaling {
    HEARTH_ROPE_SCALING_NONE = 0,
    HEARTH_ROPE_SCALING_LLAMA3 = 1, /* transformers _compute_llama3_parameters */
};

/* header.chat_template: the prompt format the model was trained on, as
 * recognised by export from the model's own Jinja chat_template. The names
 * (chat.c) are those of tests/data/chat/INDEX.tsv. */
enum hearth_chat_template {
    HEARTH_CHAT_NONE = 0,
    HEARTH_CHAT_LLAMA2 = 1,
    HEARTH_CHAT_LLAMA3 = 2,
    HEARTH_CHAT_LLAMA3_1 = 3,
    HEARTH_CHAT_MISTRAL_LEGACY = 4,
    HEARTH_CHAT_MISTRAL_V02 = 5,
    HEARTH_CHAT_MISTRAL_V03 = 6,
    HEARTH_CHAT_ZEPHYR = 7,
    HEARTH_CHAT_CHATML = 8,
    HEARTH_CHAT_SMOLLM2 = 9,
    HEARTH_CHAT_QWEN2_5 = 10,
    HEARTH_CHAT_COUNT
};

/* header.flags */
#define HEARTH_FLAG_TIED_EMBEDDINGS 0x1u /* no "output.weight": classifier = token_embd */
#define HEARTH_FLAG_QKV_BIAS 0x2u        /* "blk.N.attn_{q,k,v}.bias" present */

/* The header: fixed 256 bytes, every field naturally aligned, no padding.
 * Rotary pairs are always adjacent (2i, 2i+1) inside a head: export undoes
 * the Hugging Face rotate-half row order (see docs/FORMAT.md). */
struct hearth_header {
    char magic[4];             /* "HRTH" */
    uint32_t version;          /* HEARTH_VERSION */
    uint64_t file_bytes;       /* total file size, checksum included */

    uint32_t dim;              /* model width */
    uint32_t hidden_dim;       /* FFN width */
    uint32_t n_layers;
    uint32_t n_heads;
    uint32_t n_kv_heads;       /* divides n_heads */
    uint32_t head_dim;         /* dim / n_heads, even */
    uint32_t vocab_size;       /* rows of token_embd; == tokenizer n_tokens */
    uint32_t max_seq_len;      /* trained context */

    float rope_theta;
    uint32_t rope_scaling;     /* enum hearth_rope_scaling */
    float rope_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    uint32_t rope_orig_max_seq_len;
    float norm_eps;            /* RMSNorm epsilon */
    uint32_t flags;            /* HEARTH_FLAG_* */
    uint32_t sliding_window;   /* 0 = none */

    uint32_t bos_id;
    uint32_t eos_id;
    uint32_t n_stop_ids;       /* ids that end generation, eos included */
    uint32_t stop_ids[HEARTH_MAX_STOP_IDS];
    uint32_t chat_template;    /* enum hearth_chat_template */

    uint32_t n_tensors;
    uint64_t tokenizer_offset;
    uint64_t tokenizer_bytes;
    uint64_t tensors_offset;   /* the directory */
    uint64_t data_offset;      /* first tensor's data, 64-aligned */

    uint8_t reserved[256 - 168];
};

/* Tokenizer section, at header.tokenizer_offset:
 *   struct hearth_tokenizer_header
 *   float    scores[n_tokens]        SentencePiece scores (0 for byte-level BPE)
 *   uint8_t  kinds[n_tokens]         enum hearth_token_kind
 *   (zero padding to a multiple of 4)
 *   uint32_t piece_offsets[n_tokens + 1]  into the piece bytes; [0] == 0, non-decreasing
 *   uint32_t merges[n_merges][2]     byte-level BPE merge pairs (left id, right id), rank order
 *   uint8_t  piece_bytes[piece_offsets[n_tokens]]
 * Pieces are stored as in the source vocabulary for SentencePiece (with U+2581
 * for space and "<0xNN>" byte pieces) and as the raw bytes they stand for in
 * byte-level BPE (export undoes the GPT-2 byte-to-unicode mapping). */
enum hearth_tokenizer_type {
    HEARTH_TOKENIZER_SPM = 1,      /* SentencePiece BPE, score-ordered merges */
    HEARTH_TOKENIZER_BYTE_BPE = 2, /* byte-level BPE, rank-ordered merges */
};

enum hearth_token_kind { /* the SentencePiece ModelProto piece types */
    HEARTH_TOKEN_NORMAL = 1,
    HEARTH_TOKEN_UNKNOWN = 2,
    HEARTH_TOKEN_CONTROL = 3,
    HEARTH_TOKEN_USER_DEFINED = 4,
    HEARTH_TOKEN_UNUSED = 5,
    HEARTH_TOKEN_BYTE = 6,
};

/* hearth_tokenizer_header.flags */
#define HEARTH_TOK_ADD_DUMMY_PREFIX 0x1u /* SentencePiece: one U+2581 before the text */
#define HEARTH_TOK_BYTE_FALLBACK 0x2u    /* unknown characters become <0xNN> pieces */
#define HEARTH_TOK_IGNORE_MERGES 0x4u    /* byte-level BPE: a whole-word vocab hit wins */
#define HEARTH_TOK_NO_BOS 0x8u           /* a text prompt gets no BOS (Qwen2: add_bos_token false) */
#define HEARTH_TOK_NFC 0x10u             /* Unicode NFC before pre-tokenization (tokenizer.json normalizer "NFC") */

struct hearth_tokenizer_header {
    uint32_t type;             /* enum hearth_tokenizer_type */
    uint32_t n_tokens;
    uint32_t n_merges;
    uint32_t flags;            /* HEARTH_TOK_* */
    uint32_t pre_tokenizer;    /* byte-level BPE split rule; 0 for SentencePiece */
    uint32_t unk_id;           /* UINT32_MAX if none */
    uint32_t max_piece_bytes;
    uint32_t reserved;
};

/* hearth_tokenizer_header.pre_tokenizer for byte-level BPE: how text is split
 * before BPE (tokenizer.c implements each; the regexes are quoted there).
 * NONE: no split, the whole text is one piece. LLAMA3: Meta's Llama 3
 * pat_str. GPT2: the GPT-2 regex. QWEN2: Llama 3's with single digits.
 * SMOLLM: every \p{N} character alone, then the GPT-2 regex on the rest. */
enum hearth_pre_tokenizer {
    HEARTH_PRE_NONE = 0,
    HEARTH_PRE_LLAMA3 = 1,
    HEARTH_PRE_GPT2 = 2,
    HEARTH_PRE_QWEN2 = 3,
    HEARTH_PRE_SMOLLM = 4,
};

/* One tensor directory entry: 96 bytes. A vector has rows == 1. */
struct hearth_tensor_entry {
    char name[HEARTH_NAME_BYTES]; /* NUL-terminated, NUL-padded, e.g. "blk.3.attn_q.weight" */
    uint32_t type;                /* enum hearth_type */
    uint32_t reserved;
    uint64_t rows;                /* output features (y = W x) */
    uint64_t cols;                /* input features, contiguous in memory */
    uint64_t offset;              /* absolute, multiple of HEARTH_TENSOR_ALIGN */
    uint64_t n_bytes;             /* exactly hearth_tensor_bytes(type, rows, cols) */
};

_Static_assert(sizeof(struct hearth_header) == HEARTH_HEADER_BYTES, "header layout");
_Static_assert(sizeof(struct hearth_tokenizer_header) == 32, "tokenizer header layout");
_Static_assert(sizeof(struct hearth_tensor_entry) == 96, "tensor entry layout");

/* FNV-1a 64-bit (Fowler/Noll/Vo, http://www.isthe.com/chongo/tech/comp/fnv/):
 * offset basis and prime. The checksum is FNV-1a over bytes [0, file_bytes - 8). */
#define HEARTH_FNV_OFFSET 0xcbf29ce484222325ull
#define HEARTH_FNV_PRIME 0x100000001b3ull

static inline uint64_t hearth_fnv1a(uint64_t h, const void *data, uint64_t n_bytes)
{
    const uint8_t *p = data;
    for (uint64_t i = 0; i < n_bytes; i++) {
        h ^= p[i];
        h *= HEARTH_FNV_PRIME;
    }
    return h;
}

#endif
