/* exporter/gguf.c - reads a GGUF file (llama.cpp's model format, versions 2
 * and 3) into struct source: the config from the metadata, the tensors
 * (described, never converted: the writer streams them from this file),
 * the vocabulary from tokenizer.ggml.* (SentencePiece "llama" or byte-level
 * BPE "gpt2", with whether prompts start with BOS) and the chat template
 * family from tokenizer.chat_template.
 *
 * Architectures: "llama" (q/k rows already in adjacent-pair rotary order)
 * and "qwen2" (q/k rows in Hugging Face's rotate-half order, which the
 * writer converts). Tensor types: F32, F16, BF16, Q8_0, Q4_0 (Q8_0/Q4_0 pass
 * to the writer as GGUF blocks). Anything else is refused by name.
 *
 * Layout (llama.cpp ggml/include/gguf.h, header comment, and
 * ggml/src/gguf.cpp, gguf_init_from_file_impl; FACTS.md "File formats"):
 *   "GGUF", u32 version, i64 n_tensors, i64 n_kv;
 *   n_kv x (string key, u32 value type, value); a string is u64 length +
 *   bytes (no NUL); an array is u32 element type, u64 count, elements;
 *   n_tensors x (string name, u32 n_dims, i64 ne[n_dims], u32 ggml type,
 *   u64 offset into the data section); ne[0] is the contiguous dimension;
 *   the data section starts at the next multiple of general.alignment (u32,
 *   a power of two, default 32) and every tensor offset is a multiple of it.
 * All integers little-endian; enums are stored as 32-bit integers and bools
 * as one byte. Version 2 (llama.cpp PR #2821) made every count and length
 * 64-bit; version 3 added big-endian files (ggml docs/gguf.md), which show
 * a byte-swapped version and are refused. Versions 2 and 3 read alike.
 *
 * Trust nothing: every count, length and offset is checked against the
 * file size before it is used, with overflow-safe arithmetic. The file is
 * read with pread through a 1 MiB window, never whole. Each error names the
 * file, the key or tensor, and the offset. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "../chat.h"
#include "../kernels/kernels.h"
#include "../quant.h"
#include "../tokenizer.h"
#include "gguf.h"
#include "source.h"

#define GGUF_DEFAULT_ALIGNMENT 32u /* GGUF_DEFAULT_ALIGNMENT in gguf.h */
#define GGUF_MAX_NAME 64u          /* GGML_MAX_NAME: tensor names are shorter */
#define GGUF_MAX_DIMS 4u           /* GGML_MAX_DIMS */
/* hearth's own limits, far above real files (a Llama 3.1 405B GGUF has
 * about 1300 tensors and 40 keys; vocabularies up to a few 100k tokens). */
#define GGUF_MAX_KV (1u << 16)
#define GGUF_MAX_TENSORS (1u << 16)
#define GGUF_MAX_KEY_BYTES (1u << 16)
#define GGUF_MAX_TOKENS (1u << 24)
#define GGUF_MAX_MERGES (1u << 24)
#define GGUF_MAX_TOKEN_BYTES (1u << 16)
#define GGUF_MAX_NAME_VALUE 256u   /* scalar strings hearth reads: short names */
#define GGUF_WINDOW (1u << 20)
/* config limits, as in hf.c */
#define GGUF_MAX_DIM (1u << 16)
#define GGUF_MAX_HIDDEN (1u << 20)
#define GGUF_MAX_LAYERS 1024u
#define GGUF_MAX_HEADS 1024u
#define GGUF_MAX_CONTEXT (1u << 26)

/* ---- the file, read through a window ------------------------------------ */

struct gguf_in {
    int fd;
    const char *path;
    uint64_t size, pos;   /* file bytes; next byte to read */
    uint8_t *win;         /* file bytes [win_at, win_at + win_len) */
    uint64_t win_at, win_len;
    char label[160];      /* what is being read, for messages */
    int64_t elem;         /* array element being read, or -1 */
};

/* "FILE: LABEL[ element N] at offset X: message" */
static int in_fail(const struct gguf_in *in, uint64_t at, char *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int in_fail(const struct gguf_in *in, uint64_t at, char *err, const char *fmt, ...)
{
    char msg[320], elem[40] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (in->elem >= 0)
        snprintf(elem, sizeof elem, " element %" PRId64, in->elem);
    return fail(err, "%s: %s%s at offset %" PRIu64 ": %s", in->path, in->label, elem, at, msg);
}

static void in_label(struct gguf_in *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void in_label(struct gguf_in *in, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(in->label, sizeof in->label, fmt, ap);
    va_end(ap);
    in->elem = -1;
}

static int pread_all(struct gguf_in *in, void *dst, uint64_t n, uint64_t at, char *err)
{
    uint64_t done = 0;
    while (done < n) {
        ssize_t got = pread(in->fd, (uint8_t *)dst + done, n - done, (off_t)(at + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return in_fail(in, at + done, err, "read failed: %s",
                           got == 0 ? "the file is shorter than when it was opened"
                                    : strerror(errno));
        done += (uint64_t)got;
    }
    return 0;
}

/* Copies n bytes at pos into dst and advances; refuses to pass the end. */
static int in_read(struct gguf_in *in, void *dst, uint64_t n, char *err)
{
    if (n > in->size - in->pos)
        return in_fail(in, in->pos, err, "needs %" PRIu64 " bytes but the file ends at byte %"
                       PRIu64, n, in->size);
    uint8_t *d = dst;
    if (n >= GGUF_WINDOW) {
        if (pread_all(in, d, n, in->pos, err) < 0)
            return -1;
        in->pos += n;
        return 0;
    }
    while (n) {
        if (in->pos < in->win_at || in->pos >= in->win_at + in->win_len) {
            uint64_t left = in->size - in->pos;
            in->win_len = left < GGUF_WINDOW ? left : GGUF_WINDOW;
            in->win_at = in->pos;
            if (pread_all(in, in->win, in->win_len, in->win_at, err) < 0) {
                in->win_len = 0;
                return -1;
            }
        }
        uint64_t k = in->win_at + in->win_len - in->pos;
        k = k < n ? k : n;
        memcpy(d, in->win + (in->pos - in->win_at), (size_t)k);
        d += k;
        in->pos += k;
        n -= k;
    }
    return 0;
}

static int in_skip(struct gguf_in *in, uint64_t n, char *err)
{
    if (n > in->size - in->pos)
        return in_fail(in, in->pos, err, "%" PRIu64 " bytes run past the end of the file (%"
                       PRIu64 " bytes)", n, in->size);
    in->pos += n;
    return 0;
}

static uint64_t le_bytes(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int in_u32(struct gguf_in *in, uint32_t *v, char *err)
{
    uint8_t b[4];
    if (in_read(in, b, 4, err) < 0)
        return -1;
    *v = (uint32_t)le_bytes(b, 4);
    return 0;
}

static int in_u64(struct gguf_in *in, uint64_t *v, char *err)
{
    uint8_t b[8];
    if (in_read(in, b, 8, err) < 0)
        return -1;
    *v = le_bytes(b, 8);
    return 0;
}

/* A string's u64 length, checked against the file and against max. */
static int in_strlen(struct gguf_in *in, uint64_t max, uint64_t *len, char *err)
{
    uint64_t at = in->pos;
    if (in_u64(in, len, err) < 0)
        return -1;
    if (*len > in->size - in->pos)
        return in_fail(in, at, err, "string length %" PRIu64 " runs past the end of the file (%"
                       PRIu64 " bytes)", *len, in->size);
    if (*len > max)
        return in_fail(in, at, err, "string of %" PRIu64 " bytes is longer than the %" PRIu64
                       " bytes hearth accepts here", *len, max);
    return 0;
}

/* ---- value types ---------------------------------------------------------- */

/* enum gguf_type (gguf.h) and the sizes and names gguf.cpp gives them. */
enum {
    GV_U8, GV_I8, GV_U16, GV_I16, GV_U32, GV_I32, GV_F32, GV_BOOL, GV_STRING, GV_ARRAY,
    GV_U64, GV_I64, GV_F64, GV_COUNT
};
static const uint8_t VALUE_BYTES[GV_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const VALUE_NAMES[GV_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};

static const char *value_name(uint32_t type)
{
    return type < GV_COUNT ? VALUE_NAMES[type] : "unknown";
}

/* One metadata entry. Scalars are decoded; strings and arrays are located
 * (at .. end) and read when needed. */
struct gguf_kv {
    char *key;
    uint32_t type;       /* GV_* */
    uint32_t elem_type;  /* arrays */
    uint64_t n;          /* arrays: elements; strings: bytes */
    uint64_t at, end;    /* file offsets of the value (array: first element) and past it */
    uint64_t u;          /* unsigned integers and bool */
    int64_t i;           /* signed integers */
    double f;            /* f32, f64 */
};

/* ggml_type values (ggml.h) by their gguf-py names (constants.py,
 * GGMLQuantizationType), for messages. Gaps are removed types. */
static const char *ggml_type_name(uint32_t type)
{
    static const char *const names[] = {
        "F32", "F16", "Q4_0", "Q4_1", NULL, NULL, "Q5_0", "Q5_1", "Q8_0", "Q8_1",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
        "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
        "BF16", NULL, NULL, NULL, "TQ1_0", "TQ2_0",
    };
    if (type < sizeof names / sizeof names[0] && names[type])
        return names[type];
    return "unknown";
}

/* The ggml types hearth takes: F32 0, F16 1, Q4_0 2, Q8_0 8, BF16 30. */
static uint32_t hearth_type_of(uint32_t ggml_type)
{
    switch (ggml_type) {
    case 0:
        return HEARTH_F32;
    case 1:
        return HEARTH_F16;
    case 2:
        return HEARTH_Q4_0;
    case 8:
        return HEARTH_Q8_0;
    case 30:
        return HEARTH_BF16;
    default:
        return UINT32_MAX;
    }
}

/* ---- the container: header, metadata, tensor infos ------------------------ */

struct gguf_tensor {
    char name[GGUF_MAX_NAME];
    uint32_t n_dims, ggml_type, type; /* type: hearth_type */
    uint64_t ne[GGUF_MAX_DIMS];       /* ne[0] contiguous; unused dims are 1 */
    uint64_t offset;                  /* into the data section */
    uint64_t n_bytes;
    uint64_t info_at;                 /* file offset of its tensor info */
};

struct gguf {
    struct gguf_in in;
    uint32_t version, alignment;
    uint64_t n_kv, n_tensors, data_offset;
    struct gguf_kv *kv;              /* sorted by key */
    struct gguf_tensor *tensors;
};

static int read_header(struct gguf *g, char *err)
{
    struct gguf_in *in = &g->in;
    char magic[4];
    in_label(in, "header");
    if (in_read(in, magic, 4, err) < 0)
        return -1;
    if (memcmp(magic, "GGUF", 4))
        return in_fail(in, 0, err, "not a GGUF file (magic is not \"GGUF\")");
    if (in_u32(in, &g->version, err) < 0)
        return -1;
    if (g->version == (2u << 24) || g->version == (3u << 24))
        return in_fail(in, 4, err, "a big-endian GGUF file; hearth reads little-endian files");
    if (g->version < 2 || g->version > 3)
        return in_fail(in, 4, err, "GGUF version %u; hearth reads versions 2 and 3%s",
                       g->version, g->version == 1 ? " (version 1 is obsolete: re-convert the "
                       "model with a current llama.cpp)" : "");
    if (in_u64(in, &g->n_tensors, err) < 0 || in_u64(in, &g->n_kv, err) < 0)
        return -1;
    /* Smallest entries: a key of 1 byte + type + 1-byte value = 14 bytes; a
     * tensor info with a 1-byte name and no dims = 25 bytes. */
    uint64_t left = in->size - in->pos;
    if (g->n_tensors > INT64_MAX || g->n_kv > INT64_MAX)
        return in_fail(in, g->n_tensors > INT64_MAX ? 8 : 16, err, "the %s count is negative",
                       g->n_tensors > INT64_MAX ? "tensor" : "metadata");
    if (g->n_tensors > GGUF_MAX_TENSORS || g->n_tensors > left / 25)
        return in_fail(in, 8, err, "tensor count %" PRIu64 " is %s", g->n_tensors,
                       g->n_tensors > GGUF_MAX_TENSORS ? "above hearth's limit of 65536"
                                                       : "more than the file could hold");
    if (g->n_kv > GGUF_MAX_KV || g->n_kv > left / 14)
        return in_fail(in, 16, err, "metadata count %" PRIu64 " is %s", g->n_kv,
                       g->n_kv > GGUF_MAX_KV ? "above hearth's limit of 65536"
                                             : "more than the file could hold");
    return 0;
}

static int read_key(struct gguf_in *in, uint64_t index, char **key, char *err)
{
    uint64_t len, at = in->pos;
    in_label(in, "metadata entry %" PRIu64 " key", index);
    if (in_strlen(in, GGUF_MAX_KEY_BYTES, &len, err) < 0)
        return -1;
    if (len == 0)
        return in_fail(in, at, err, "the key is empty");
    *key = malloc(len + 1);
    if (!*key)
        return in_fail(in, at, err, "out of memory");
    if (in_read(in, *key, len, err) < 0)
        return -1;
    (*key)[len] = 0;
    if (strlen(*key) != len)
        return in_fail(in, at, err, "the key contains a NUL byte");
    in_label(in, "key \"%.100s\"", *key);
    return 0;
}

/* The two's complement value of an n-byte integer, computed without
 * implementation-defined conversions. */
static int64_t sign_extend(uint64_t raw, unsigned n_bytes)
{
    unsigned bits = 8 * n_bytes;
    uint64_t sign = 1ull << (bits - 1);
    if (!(raw & sign))
        return (int64_t)raw;
    uint64_t magnitude = (bits == 64 ? 0 : 1ull << bits) - raw; /* in 1 .. 2^(bits-1) */
    return magnitude == sign && bits == 64 ? INT64_MIN : -(int64_t)magnitude;
}

static void decode_scalar(struct gguf_kv *kv, const uint8_t *b)
{
    unsigned n = VALUE_BYTES[kv->type];
    uint64_t raw = le_bytes(b, n);
    kv->u = raw;
    kv->i = sign_extend(raw, n);
    if (kv->type == GV_F32) {
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, sizeof f);
        kv->f = f;
    } else if (kv->type == GV_F64) {
        memcpy(&kv->f, &raw, sizeof kv->f);
    } else if (kv->type == GV_BOOL) {
        kv->u = raw != 0; /* gguf.cpp reads a bool as int8 != 0 */
    }
}

/* Walks past an array's elements, checking every string length. */
static int skip_array(struct gguf_in *in, struct gguf_kv *kv, char *err)
{
    uint64_t left = in->size - in->pos;
    if (kv->elem_type == GV_STRING) {
        if (kv->n > left / 8)
            return in_fail(in, in->pos, err, "an array of %" PRIu64 " strings cannot fit in the %"
                           PRIu64 " bytes left", kv->n, left);
        for (uint64_t e = 0; e < kv->n; e++) {
            uint64_t len;
            in->elem = (int64_t)e;
            if (in_strlen(in, UINT64_MAX, &len, err) < 0 || in_skip(in, len, err) < 0)
                return -1;
        }
        in->elem = -1;
        return 0;
    }
    uint64_t size = VALUE_BYTES[kv->elem_type];
    if (kv->n > left / size)
        return in_fail(in, in->pos, err, "an array of %" PRIu64 " %s values needs more than the %"
                       PRIu64 " bytes left", kv->n, value_name(kv->elem_type), left);
    return in_skip(in, kv->n * size, err);
}

static int read_value(struct gguf_in *in, struct gguf_kv *kv, char *err)
{
    uint64_t at = in->pos;
    if (in_u32(in, &kv->type, err) < 0)
        return -1;
    if (kv->type >= GV_COUNT)
        return in_fail(in, at, err, "unknown value type %u (GGUF defines 0 to 12)", kv->type);
    if (kv->type == GV_ARRAY) {
        at = in->pos;
        if (in_u32(in, &kv->elem_type, err) < 0 || in_u64(in, &kv->n, err) < 0)
            return -1;
        if (kv->elem_type == GV_ARRAY)
            return in_fail(in, at, err, "arrays of arrays are not allowed (gguf.cpp refuses "
                           "them too)");
        if (kv->elem_type >= GV_COUNT)
            return in_fail(in, at, err, "unknown array element type %u (GGUF defines 0 to 12)",
                           kv->elem_type);
        kv->at = in->pos;
        if (skip_array(in, kv, err) < 0)
            return -1;
    } else if (kv->type == GV_STRING) {
        if (in_strlen(in, UINT64_MAX, &kv->n, err) < 0)
            return -1;
        kv->at = in->pos;
        if (in_skip(in, kv->n, err) < 0)
            return -1;
    } else {
        uint8_t b[8];
        kv->at = in->pos;
        if (in_read(in, b, VALUE_BYTES[kv->type], err) < 0)
            return -1;
        decode_scalar(kv, b);
    }
    kv->end = in->pos;
    return 0;
}

static int compare_kv(const void *a, const void *b)
{
    return strcmp(((const struct gguf_kv *)a)->key, ((const struct gguf_kv *)b)->key);
}

static int read_metadata(struct gguf *g, char *err)
{
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    if (!g->kv)
        return fail(err, "%s: out of memory for %" PRIu64 " metadata entries", g->in.path,
                    g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (read_key(&g->in, i, &g->kv[i].key, err) < 0 || read_value(&g->in, &g->kv[i], err) < 0)
            return -1;
    }
    qsort(g->kv, g->n_kv, sizeof *g->kv, compare_kv);
    for (uint64_t i = 1; i < g->n_kv; i++)
        if (!strcmp(g->kv[i - 1].key, g->kv[i].key))
            return fail(err, "%s: key \"%.100s\" appears twice (at offsets %" PRIu64 " and %"
                        PRIu64 ")", g->in.path, g->kv[i].key, g->kv[i - 1].at, g->kv[i].at);
    return 0;
}

static const struct gguf_kv *find_kv(const struct gguf *g, const char *key)
{
    struct gguf_kv probe = {.key = (char *)key};
    return g->n_kv ? bsearch(&probe, g->kv, g->n_kv, sizeof *g->kv, compare_kv) : NULL;
}

static int read_tensor_name(struct gguf_in *in, struct gguf_tensor *t, char *err)
{
    uint64_t len, at = in->pos;
    if (in_strlen(in, UINT64_MAX, &len, err) < 0)
        return -1;
    if (len == 0 || len >= GGUF_MAX_NAME)
        return in_fail(in, at, err, "tensor name of %" PRIu64 " bytes (names are 1 to %u bytes)",
                       len, GGUF_MAX_NAME - 1);
    if (in_read(in, t->name, len, err) < 0)
        return -1;
    t->name[len] = 0;
    if (strlen(t->name) != len)
        return in_fail(in, at, err, "the tensor name contains a NUL byte");
    in_label(in, "tensor \"%s\"", t->name);
    return 0;
}

/* Name, dims and type of one tensor info; sizes are checked later, once the
 * alignment is known. */
static int read_tensor_info(struct gguf_in *in, uint64_t index, struct gguf_tensor *t, char *err)
{
    t->info_at = in->pos;
    in_label(in, "tensor info %" PRIu64, index);
    if (read_tensor_name(in, t, err) < 0)
        return -1;
    uint64_t at = in->pos;
    if (in_u32(in, &t->n_dims, err) < 0)
        return -1;
    if (t->n_dims > GGUF_MAX_DIMS)
        return in_fail(in, at, err, "%u dimensions (at most %u)", t->n_dims, GGUF_MAX_DIMS);
    /* The product of the non-zero dimensions stays below 2^63, so no
     * product of dimensions computed later can overflow. */
    uint64_t product = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        at = in->pos;
        if (d < t->n_dims && in_u64(in, &t->ne[d], err) < 0)
            return -1;
        if (t->ne[d] > INT64_MAX)
            return in_fail(in, at, err, "dimension %u is negative", d);
        if (t->ne[d] && product > INT64_MAX / t->ne[d])
            return in_fail(in, at, err, "more elements than fit in 63 bits");
        product *= t->ne[d] ? t->ne[d] : 1;
    }
    if (in_u32(in, &t->ggml_type, err) < 0 || in_u64(in, &t->offset, err) < 0)
        return -1;
    return 0;
}

static int read_alignment(struct gguf *g, char *err)
{
    const struct gguf_kv *kv = find_kv(g, "general.alignment");
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!kv)
        return 0;
    /* gguf.cpp reads it with gguf_get_val_u32, which demands type u32 */
    if (kv->type != GV_U32)
        return fail(err, "%s: key \"general.alignment\" (offset %" PRIu64 ") has type %s; it must "
                    "be u32", g->in.path, kv->at, value_name(kv->type));
    if (kv->u == 0 || (kv->u & (kv->u - 1)))
        return fail(err, "%s: key \"general.alignment\" (offset %" PRIu64 ") is %" PRIu64
                    ", not a power of two", g->in.path, kv->at, kv->u);
    g->alignment = (uint32_t)kv->u;
    return 0;
}

/* Type, byte size and place of one tensor's data. */
static int check_tensor_data(const struct gguf *g, struct gguf_tensor *t, char *err)
{
    const char *path = g->in.path;
    t->type = hearth_type_of(t->ggml_type);
    if (t->type == UINT32_MAX)
        return fail(err, "%s: tensor \"%s\" (info at offset %" PRIu64 ") has type %s (%u); hearth "
                    "reads GGUF tensors of types F32, F16, BF16, Q8_0 and Q4_0 only (convert "
                    "or re-quantize the model to one of them)", path, t->name, t->info_at,
                    ggml_type_name(t->ggml_type), t->ggml_type);
    if (t->ne[0] > UINT64_MAX / 4)
        return fail(err, "%s: tensor \"%s\": byte size overflows 64 bits", path, t->name);
    uint64_t row_bytes = t->ne[0] * hearth_type_elem_bytes(t->type);
    if (t->type == HEARTH_Q8_0 || t->type == HEARTH_Q4_0) {
        if (t->ne[0] % QK)
            return fail(err, "%s: tensor \"%s\" (info at offset %" PRIu64 ") has rows of %" PRIu64
                        " values, not a multiple of the %s block size 32", path, t->name,
                        t->info_at, t->ne[0], ggml_type_name(t->ggml_type));
        row_bytes = t->ne[0] / QK *
                    (t->type == HEARTH_Q8_0 ? GGUF_Q8_0_BLOCK_BYTES : GGUF_Q4_0_BLOCK_BYTES);
    }
    uint64_t rows = t->ne[1] * t->ne[2] * t->ne[3]; /* < 2^63 (read_tensor_info) */
    if (rows && row_bytes > UINT64_MAX / rows)
        return fail(err, "%s: tensor \"%s\": byte size overflows 64 bits", path, t->name);
    t->n_bytes = rows * row_bytes;
    uint64_t room = g->in.size - g->data_offset;
    if (t->offset % g->alignment)
        return fail(err, "%s: tensor \"%s\" (info at offset %" PRIu64 "): data offset %" PRIu64
                    " is not a multiple of the alignment %u", path, t->name, t->info_at,
                    t->offset, g->alignment);
    if (t->offset > room || t->n_bytes > room - t->offset)
        return fail(err, "%s: tensor \"%s\" (info at offset %" PRIu64 "): %" PRIu64 " bytes at "
                    "data offset %" PRIu64 " run past the end of the file (the data section "
                    "starts at %" PRIu64 " and holds %" PRIu64 " bytes)", path, t->name,
                    t->info_at, t->n_bytes, t->offset, g->data_offset, room);
    return 0;
}

struct placed {
    uint64_t offset;
    uint32_t index;
};

static int compare_placed(const void *a, const void *b)
{
    const struct placed *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* No two tensors share a byte (llama.cpp even requires them in order, back
 * to back with padding; hearth only needs them apart). */
static int check_overlaps(const struct gguf *g, char *err)
{
    if (g->n_tensors < 2)
        return 0;
    struct placed *order = malloc(g->n_tensors * sizeof *order);
    if (!order)
        return fail(err, "%s: out of memory", g->in.path);
    for (uint32_t i = 0; i < g->n_tensors; i++)
        order[i] = (struct placed){g->tensors[i].offset, i};
    qsort(order, g->n_tensors, sizeof *order, compare_placed);
    int rc = 0;
    for (uint32_t i = 1; i < g->n_tensors && rc == 0; i++) {
        const struct gguf_tensor *a = &g->tensors[order[i - 1].index];
        const struct gguf_tensor *b = &g->tensors[order[i].index];
        if (a->n_bytes && b->n_bytes && a->offset + a->n_bytes > b->offset)
            rc = fail(err, "%s: the data of tensors \"%s\" (%" PRIu64 " bytes at data offset %"
                      PRIu64 ") and \"%s\" (at data offset %" PRIu64 ") overlap", g->in.path,
                      a->name, a->n_bytes, a->offset, b->name, b->offset);
    }
    free(order);
    return rc;
}

static int read_tensor_infos(struct gguf *g, char *err)
{
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors)
        return fail(err, "%s: out of memory for %" PRIu64 " tensors", g->in.path, g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (read_tensor_info(&g->in, i, &g->tensors[i], err) < 0)
            return -1;
    if (read_alignment(g, err) < 0)
        return -1;
    uint64_t end = g->in.pos;
    g->data_offset = (end + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && g->data_offset > g->in.size)
        return fail(err, "%s: the data section would start at offset %" PRIu64 ", past the end "
                    "of the file (%" PRIu64 " bytes)", g->in.path, g->data_offset, g->in.size);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (check_tensor_data(g, &g->tensors[i], err) < 0)
            return -1;
    return check_overlaps(g, err);
}

static void gguf_close(struct gguf *g, int close_fd)
{
    for (uint64_t i = 0; g->kv && i < g->n_kv; i++)
        free(g->kv[i].key);
    free(g->kv);
    free(g->tensors);
    free(g->in.win);
    if (close_fd && g->in.fd >= 0)
        close(g->in.fd);
    memset(g, 0, sizeof *g);
    g->in.fd = -1;
}

/* Opens path and reads everything but the tensor data. On failure nothing
 * is left open. */
static int gguf_open(struct gguf *g, const char *path, char *err)
{
    memset(g, 0, sizeof *g);
    g->in.path = path;
    g->in.elem = -1;
    g->in.fd = open(path, O_RDONLY);
    if (g->in.fd < 0)
        return fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = -1;
    if (fstat(g->in.fd, &st) != 0 || !S_ISREG(st.st_mode))
        fail(err, "%s: not a regular file", path);
    else if (!(g->in.win = malloc(GGUF_WINDOW)))
        fail(err, "%s: out of memory", path);
    else {
        g->in.size = (uint64_t)st.st_size;
        rc = 0;
    }
    if (rc == 0 && (read_header(g, err) < 0 || read_metadata(g, err) < 0 ||
                    read_tensor_infos(g, err) < 0))
        rc = -1;
    if (rc < 0)
        gguf_close(g, 1);
    return rc;
}

/* ---- metadata getters: 1 found, 0 absent, -1 error ------------------------ */

static int kv_fail(const struct gguf *g, const struct gguf_kv *kv, char *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int kv_fail(const struct gguf *g, const struct gguf_kv *kv, char *err, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(err, "%s: key \"%.100s\" (value at offset %" PRIu64 ") %s", g->in.path, kv->key,
                kv->at, msg);
}

/* Any integer type, in [lo, hi]. */
static int get_uint(const struct gguf *g, const char *key, uint64_t lo, uint64_t hi, uint64_t *out,
                    char *err)
{
    const struct gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return 0;
    int is_unsigned = kv->type == GV_U8 || kv->type == GV_U16 || kv->type == GV_U32 ||
                      kv->type == GV_U64;
    int is_signed = kv->type == GV_I8 || kv->type == GV_I16 || kv->type == GV_I32 ||
                    kv->type == GV_I64;
    if (!is_unsigned && !is_signed)
        return kv_fail(g, kv, err, "has type %s%s; expected one integer", value_name(kv->type),
                       kv->type == GV_ARRAY ? " (per-layer values are not supported)" : "");
    if (is_signed && kv->i < 0)
        return kv_fail(g, kv, err, "is %" PRId64 "; expected %" PRIu64 " to %" PRIu64, kv->i, lo,
                       hi);
    uint64_t v = is_signed ? (uint64_t)kv->i : kv->u;
    if (v < lo || v > hi)
        return kv_fail(g, kv, err, "is %" PRIu64 "; expected %" PRIu64 " to %" PRIu64, v, lo, hi);
    *out = v;
    return 1;
}

static int need_uint(const struct gguf *g, const char *key, uint64_t lo, uint64_t hi,
                     uint32_t *out, char *err)
{
    uint64_t v;
    int r = get_uint(g, key, lo, hi, &v, err);
    if (r == 0)
        return fail(err, "%s: required key \"%s\" is missing", g->in.path, key);
    if (r > 0)
        *out = (uint32_t)v;
    return r < 0 ? -1 : 0;
}

/* f32 or f64, finite, in (lo, hi]. */
static int get_float(const struct gguf *g, const char *key, double lo, double hi, float *out,
                     char *err)
{
    const struct gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return 0;
    if (kv->type != GV_F32 && kv->type != GV_F64)
        return kv_fail(g, kv, err, "has type %s; expected f32", value_name(kv->type));
    if (!(kv->f > lo && kv->f <= hi))
        return kv_fail(g, kv, err, "is %g; expected a number above %g and at most %g", kv->f, lo,
                       hi);
    *out = (float)kv->f;
    return 1;
}

static int get_bool(const struct gguf *g, const char *key, int *out, char *err)
{
    const struct gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return 0;
    if (kv->type != GV_BOOL)
        return kv_fail(g, kv, err, "has type %s; expected bool", value_name(kv->type));
    *out = (int)kv->u;
    return 1;
}

/* A short string (a name), NUL-terminated into buf. */
static int get_string(struct gguf *g, const char *key, char *buf, size_t cap, char *err)
{
    const struct gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return 0;
    if (kv->type != GV_STRING)
        return kv_fail(g, kv, err, "has type %s; expected a string", value_name(kv->type));
    if (kv->n >= cap)
        return kv_fail(g, kv, err, "is %" PRIu64 " bytes long; hearth expects a short name (at "
                       "most %zu bytes)", kv->n, cap - 1);
    in_label(&g->in, "key \"%.100s\"", kv->key);
    g->in.pos = kv->at;
    if (in_read(&g->in, buf, kv->n, err) < 0)
        return -1;
    buf[kv->n] = 0;
    return 1;
}

/* A string of at most max bytes (it may hold NULs), malloc'd with a NUL
 * after it. */
static int get_text(struct gguf *g, const char *key, uint64_t max, char **out, uint64_t *n,
                    char *err)
{
    const struct gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return 0;
    if (kv->type != GV_STRING)
        return kv_fail(g, kv, err, "has type %s; expected a string", value_name(kv->type));
    if (kv->n > max)
        return kv_fail(g, kv, err, "is %" PRIu64 " bytes long; hearth accepts at most %" PRIu64,
                       kv->n, max);
    char *buf = malloc(kv->n + 1);
    if (!buf)
        return kv_fail(g, kv, err, "out of memory");
    in_label(&g->in, "key \"%.100s\"", kv->key);
    g->in.pos = kv->at;
    if (in_read(&g->in, buf, kv->n, err) < 0) {
        free(buf);
        return -1;
    }
    buf[kv->n] = 0;
    *out = buf;
    *n = kv->n;
    return 1;
}

/* An array of elem_type; positions the reader at its first element. */
static int get_array(struct gguf *g, const char *key, uint32_t elem_type,
                     const struct gguf_kv **out, char *err)
{
    const struct gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return 0;
    if (kv->type != GV_ARRAY || kv->elem_type != elem_type)
        return kv_fail(g, kv, err, "has type %s%s%s; expected an array of %s",
                       value_name(kv->type), kv->type == GV_ARRAY ? " of " : "",
                       kv->type == GV_ARRAY ? value_name(kv->elem_type) : "",
                       value_name(elem_type));
    in_label(&g->in, "key \"%.100s\"", kv->key);
    g->in.pos = kv->at;
    *out = kv;
    return 1;
}

/* ---- architecture and config ---------------------------------------------- */

/* What differs between the architectures hearth reads. Rotary order:
 * llama.cpp llama_model_rope_type (src/llama-model.cpp) gives LLM_ARCH_LLAMA
 * LLAMA_ROPE_TYPE_NORM (adjacent pairs; convert_hf_to_gguf.py's LlamaModel
 * permutes q/k into that order) and LLM_ARCH_QWEN2 LLAMA_ROPE_TYPE_NEOX
 * (pairs offset by head_dim / 2: Hugging Face's order, left as it is;
 * FACTS.md). Qwen2 always has q/k/v biases (llama.cpp loads them as
 * required tensors). */
struct arch {
    const char *name;
    int rotate_half;
    int needs_bias;
};

static const struct arch ARCHS[] = {
    {"llama", 0, 0},
    {"qwen2", 1, 1},
};

static int find_arch(struct gguf *g, const struct arch **out, char *err)
{
    char name[GGUF_MAX_NAME_VALUE];
    int r = get_string(g, "general.architecture", name, sizeof name, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return fail(err, "%s: required key \"general.architecture\" is missing", g->in.path);
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++) {
        if (!strcmp(name, ARCHS[i].name)) {
            *out = &ARCHS[i];
            return 0;
        }
    }
    return fail(err, "%s: general.architecture \"%.64s\" is not supported; hearth exports: llama, "
                "qwen2", g->in.path, name);
}

/* Formats "<arch>.<suffix>" into key (gguf-py constants.py, Keys.LLM,
 * Keys.Attention, Keys.Rope). */
static const char *arch_key(char *key, size_t cap, const struct arch *a, const char *suffix)
{
    snprintf(key, cap, "%s.%s", a->name, suffix);
    return key;
}

static int read_shape(struct gguf *g, const struct arch *a, struct hearth_header *c, char *err)
{
    char k[96];
    if (need_uint(g, arch_key(k, sizeof k, a, "context_length"), 1, GGUF_MAX_CONTEXT,
                  &c->max_seq_len, err) < 0 ||
        need_uint(g, arch_key(k, sizeof k, a, "embedding_length"), 1, GGUF_MAX_DIM, &c->dim,
                  err) < 0 ||
        need_uint(g, arch_key(k, sizeof k, a, "feed_forward_length"), 1, GGUF_MAX_HIDDEN,
                  &c->hidden_dim, err) < 0 ||
        need_uint(g, arch_key(k, sizeof k, a, "block_count"), 1, GGUF_MAX_LAYERS, &c->n_layers,
                  err) < 0 ||
        need_uint(g, arch_key(k, sizeof k, a, "attention.head_count"), 1, GGUF_MAX_HEADS,
                  &c->n_heads, err) < 0)
        return -1;
    uint64_t kv_heads = c->n_heads;
    if (get_uint(g, arch_key(k, sizeof k, a, "attention.head_count_kv"), 1, GGUF_MAX_HEADS,
                 &kv_heads, err) < 0)
        return -1;
    c->n_kv_heads = (uint32_t)kv_heads;
    if (c->dim % c->n_heads)
        return fail(err, "%s: %s.attention.head_count %u does not divide embedding_length %u",
                    g->in.path, a->name, c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads)
        return fail(err, "%s: %s.attention.head_count_kv %u does not divide head_count %u",
                    g->in.path, a->name, c->n_kv_heads, c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    if (c->head_dim % 2)
        return fail(err, "%s: head dimension %u is odd; rotary embeddings need it even",
                    g->in.path, c->head_dim);
    return 0;
}

/* Keys that may restate the head size; hearth supports only head_dim =
 * dim / heads, rotated over its whole width (llama.cpp defaults n_rot and
 * the key/value lengths to that). */
static int check_head_keys(struct gguf *g, const struct arch *a, const struct hearth_header *c,
                           char *err)
{
    static const char *const suffixes[] = {
        "attention.key_length", "attention.value_length", "rope.dimension_count",
    };
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char k[96];
        uint64_t v;
        int r = get_uint(g, arch_key(k, sizeof k, a, suffixes[i]), 0, UINT32_MAX, &v, err);
        if (r < 0)
            return -1;
        if (r > 0 && v != c->head_dim)
            return fail(err, "%s: %s is %" PRIu64 " but embedding_length / head_count is %u; "
                        "hearth supports only heads of that size, rotated whole", g->in.path, k,
                        v, c->head_dim);
    }
    return 0;
}

/* Mixture-of-experts llama files (Mixtral) and rope scaling other than
 * Llama 3's are refused by name. */
static int check_unsupported(struct gguf *g, const struct arch *a, char *err)
{
    char k[96], type[GGUF_MAX_NAME_VALUE];
    uint64_t experts = 0;
    if (get_uint(g, arch_key(k, sizeof k, a, "expert_count"), 0, UINT32_MAX, &experts, err) < 0)
        return -1;
    if (experts > 0)
        return fail(err, "%s: %s = %" PRIu64 ": mixture-of-experts models are not supported",
                    g->in.path, k, experts);
    int r = get_string(g, arch_key(k, sizeof k, a, "rope.scaling.type"), type, sizeof type, err);
    if (r < 0)
        return -1;
    if (r > 0 && strcmp(type, "none"))
        return fail(err, "%s: %s \"%.64s\" is not supported (hearth supports Llama 3 scaling, "
                    "which GGUF stores as the tensor rope_freqs.weight)", g->in.path, k, type);
    return 0;
}

static int read_config(struct gguf *g, const struct arch *a, struct hearth_header *c, char *err)
{
    char k[96];
    if (read_shape(g, a, c, err) < 0 || check_head_keys(g, a, c, err) < 0 ||
        check_unsupported(g, a, err) < 0)
        return -1;
    /* llama.cpp's default rope_freq_base_train is 10000 */
    c->rope_theta = 10000.0f;
    int r = get_float(g, arch_key(k, sizeof k, a, "attention.layer_norm_rms_epsilon"), 0, 0.5,
                      &c->norm_eps, err);
    if (r == 0)
        return fail(err, "%s: required key \"%s\" is missing", g->in.path, k);
    if (r < 0 || get_float(g, arch_key(k, sizeof k, a, "rope.freq_base"), 1, 1e12, &c->rope_theta,
                           err) < 0)
        return -1;
    /* gguf-py constants.py Keys.Attention.SLIDING_WINDOW: attention sees the
     * last this many positions; absent or 0, all of them */
    uint64_t window = 0;
    if (get_uint(g, arch_key(k, sizeof k, a, "attention.sliding_window"), 0, UINT32_MAX, &window,
                 err) < 0)
        return -1;
    c->sliding_window = (uint32_t)window;
    return 0;
}

/* ---- tensors -------------------------------------------------------------- */

/* Per-layer tensors in the order of src->tensors (the order hf.c uses, so
 * the same weights give the same file from either source). */
enum layer_kind {
    L_ATTN_NORM, L_Q, L_K, L_V, L_Q_BIAS, L_K_BIAS, L_V_BIAS, L_O,
    L_FFN_NORM, L_GATE, L_UP, L_DOWN, L_N_KINDS
};
enum global_kind { G_EMBD, G_OUT_NORM, G_OUT, G_ROPE_FREQS, G_N_KINDS };
/* Expected sizes, in terms of the config. */
enum { P_NONE, P_Q, P_KV }; /* rotary rows: per query head, per kv head */

struct tensor_rule {
    const char *name;   /* global name, or suffix after "blk.N." */
    uint8_t rows, cols; /* enum dim_ref; rows D_ONE: a vector of cols */
    uint8_t rotary;     /* P_*: q/k rows (and biases) that carry rotary pairs */
};

/* Names: llama.cpp gguf-py constants.py, TENSOR_NAMES (token_embd,
 * output_norm, output, rope_freqs, blk.{bid}.attn_norm, attn_q, attn_k,
 * attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down) with the
 * ".weight" / ".bias" suffixes the converter appends. GGUF shapes are the
 * same matrices with ne[0] = cols (contiguous) and ne[1] = rows. */
static const struct tensor_rule LAYER_RULES[L_N_KINDS] = {
    [L_ATTN_NORM] = {"attn_norm.weight", D_ONE, D_DIM, P_NONE},
    [L_Q] = {"attn_q.weight", D_Q, D_DIM, P_Q},
    [L_K] = {"attn_k.weight", D_KV, D_DIM, P_KV},
    [L_V] = {"attn_v.weight", D_KV, D_DIM, P_NONE},
    [L_Q_BIAS] = {"attn_q.bias", D_ONE, D_Q, P_Q},
    [L_K_BIAS] = {"attn_k.bias", D_ONE, D_KV, P_KV},
    [L_V_BIAS] = {"attn_v.bias", D_ONE, D_KV, P_NONE},
    [L_O] = {"attn_output.weight", D_DIM, D_Q, P_NONE},
    [L_FFN_NORM] = {"ffn_norm.weight", D_ONE, D_DIM, P_NONE},
    [L_GATE] = {"ffn_gate.weight", D_HIDDEN, D_DIM, P_NONE},
    [L_UP] = {"ffn_up.weight", D_HIDDEN, D_DIM, P_NONE},
    [L_DOWN] = {"ffn_down.weight", D_DIM, D_HIDDEN, P_NONE},
};

static const struct tensor_rule GLOBAL_RULES[G_N_KINDS] = {
    [G_EMBD] = {"token_embd.weight", D_VOCAB, D_DIM, P_NONE},
    [G_OUT_NORM] = {"output_norm.weight", D_ONE, D_DIM, P_NONE},
    [G_OUT] = {"output.weight", D_VOCAB, D_DIM, P_NONE},
    [G_ROPE_FREQS] = {"rope_freqs.weight", D_ONE, D_HALF_HEAD, P_NONE},
};

/* Where each hearth tensor is among the GGUF tensors (-1: absent). */
struct tensor_map {
    const struct gguf *g;
    const struct hearth_header *cfg;
    int32_t global[G_N_KINDS];
    int32_t *layers; /* [n_layers][L_N_KINDS] */
};

static int place(const struct tensor_map *m, int32_t *slot, int32_t index, char *err)
{
    if (*slot >= 0)
        return fail(err, "%s: tensor \"%s\" appears twice (tensor infos at offsets %" PRIu64
                    " and %" PRIu64 ")", m->g->in.path, m->g->tensors[index].name,
                    m->g->tensors[*slot].info_at, m->g->tensors[index].info_at);
    *slot = index;
    return 0;
}

static int map_tensor(struct tensor_map *m, int32_t index, char *err)
{
    const struct gguf_tensor *t = &m->g->tensors[index];
    for (int k = 0; k < G_N_KINDS; k++)
        if (!strcmp(t->name, GLOBAL_RULES[k].name))
            return place(m, &m->global[k], index, err);
    uint64_t layer;
    const char *suffix = layer_suffix(t->name, "blk.", &layer);
    for (int k = 0; suffix && k < L_N_KINDS; k++) {
        if (strcmp(suffix, LAYER_RULES[k].name))
            continue;
        if (layer >= m->cfg->n_layers)
            return fail(err, "%s: tensor \"%s\" is for layer %" PRIu64 " but block_count is %u",
                        m->g->in.path, t->name, layer, m->cfg->n_layers);
        return place(m, &m->layers[layer * L_N_KINDS + (uint64_t)k], index, err);
    }
    return fail(err, "%s: unexpected tensor \"%s\" (info at offset %" PRIu64 "; not part of a "
                "model hearth runs)", m->g->in.path, t->name, t->info_at);
}

static int check_shape(const struct tensor_map *m, int32_t index, const struct tensor_rule *r,
                       char *err)
{
    const struct gguf_tensor *t = &m->g->tensors[index];
    uint64_t rows = dim_value(m->cfg, r->rows), cols = dim_value(m->cfg, r->cols);
    if (t->ne[0] == cols && t->ne[1] == rows && t->ne[2] == 1 && t->ne[3] == 1)
        return 0;
    return fail(err, "%s: tensor \"%s\" (info at offset %" PRIu64 ") has shape [%" PRIu64 ", %"
                PRIu64 ", %" PRIu64 ", %" PRIu64 "] (GGUF order, contiguous first) but the "
                "metadata implies [%" PRIu64 ", %" PRIu64 "]", m->g->in.path, t->name,
                t->info_at, t->ne[0], t->ne[1], t->ne[2], t->ne[3], cols, rows);
}

static int has_any_bias(const struct tensor_map *m)
{
    for (uint32_t l = 0; l < m->cfg->n_layers; l++)
        for (int k = L_Q_BIAS; k <= L_V_BIAS; k++)
            if (m->layers[l * L_N_KINDS + (uint32_t)k] >= 0)
                return 1;
    return 0;
}

static int is_bias(int kind)
{
    return kind == L_Q_BIAS || kind == L_K_BIAS || kind == L_V_BIAS;
}

static void emit(struct source *src, const struct tensor_map *m, int32_t index,
                 const struct tensor_rule *r, const char *name, const struct arch *a)
{
    const struct gguf_tensor *t = &m->g->tensors[index];
    const struct hearth_header *c = &src->cfg;
    struct src_tensor *o = &src->tensors[src->n_tensors++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->fd = m->g->in.fd;
    o->offset = m->g->data_offset + t->offset;
    o->type = t->type;
    o->rows = t->ne[1];
    o->cols = t->ne[0];
    if (a->rotate_half)
        o->unpermute_heads = r->rotary == P_Q ? c->n_heads : r->rotary == P_KV ? c->n_kv_heads : 0;
}

/* Fills src->tensors in hearth order once every tensor is found and shaped
 * as the config says. */
static int build_tensor_list(struct tensor_map *m, struct source *src, const struct arch *a,
                             char *err)
{
    struct hearth_header *c = &src->cfg;
    const char *path = m->g->in.path;
    int tied = m->global[G_OUT] < 0, bias = a->needs_bias || has_any_bias(m);
    c->flags = (tied ? HEARTH_FLAG_TIED_EMBEDDINGS : 0) | (bias ? HEARTH_FLAG_QKV_BIAS : 0);
    for (int k = 0; k < G_N_KINDS; k++) {
        if (m->global[k] < 0 && (k == G_EMBD || k == G_OUT_NORM))
            return fail(err, "%s: tensor \"%s\" is missing", path, GLOBAL_RULES[k].name);
        if (m->global[k] >= 0 && check_shape(m, m->global[k], &GLOBAL_RULES[k], err) < 0)
            return -1;
    }
    uint64_t n = 2 + (uint64_t)c->n_layers * (bias ? 12 : 9) + !tied;
    src->tensors = calloc(n, sizeof *src->tensors);
    if (!src->tensors)
        return fail(err, "%s: out of memory for %" PRIu64 " tensors", path, n);
    emit(src, m, m->global[G_EMBD], &GLOBAL_RULES[G_EMBD], "token_embd.weight", a);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < L_N_KINDS; k++) {
            int32_t index = m->layers[l * L_N_KINDS + (uint32_t)k];
            char name[HEARTH_NAME_BYTES];
            snprintf(name, sizeof name, "blk.%u.%s", l, LAYER_RULES[k].name);
            if (is_bias(k) && !bias)
                continue;
            if (index < 0)
                return fail(err, "%s: tensor \"%s\" is missing%s", path, name,
                            is_bias(k) ? (a->needs_bias ? " (this architecture has q/k/v biases)"
                                                        : " (other q/k/v biases are present)")
                                       : "");
            if (check_shape(m, index, &LAYER_RULES[k], err) < 0)
                return -1;
            emit(src, m, index, &LAYER_RULES[k], name, a);
        }
    }
    emit(src, m, m->global[G_OUT_NORM], &GLOBAL_RULES[G_OUT_NORM], "output_norm.weight", a);
    if (!tied)
        emit(src, m, m->global[G_OUT], &GLOBAL_RULES[G_OUT], "output.weight", a);
    return 0;
}

/* ---- Llama 3 rope scaling from rope_freqs.weight -------------------------- */

/* convert_hf_to_gguf.py (LlamaModel.generate_extra_tensors) stores Llama 3
 * rope scaling only as rope_freqs.weight: per rotary pair i a divisor of the
 * frequency theta^(-2i/head_dim): 1 where the wavelength 2 pi / freq is
 * below orig_ctx / high_freq_factor, factor where it is above
 * orig_ctx / low_freq_factor, and 1 / ((1 - smooth) / factor + smooth) in
 * between, smooth = (orig_ctx / wavelength - low) / (high - low). llama.cpp
 * divides each pair's angle by it (ggml_rope_ext, freq_factors). hearth's
 * header holds the four parameters instead and model.c applies the same
 * formula (FACTS.md), so export recovers parameters that reproduce the
 * divisors and refuses a tensor that no parameters explain. */

/* model.c's frequency of pair i (compute_rope_inv_freq), in the same float
 * arithmetic. */
static float hearth_pair_freq(const struct hearth_header *h, uint32_t i)
{
    float freq = 1.0f / powf(h->rope_theta, (float)(2 * i) / (float)h->head_dim);
    if (h->rope_scaling != HEARTH_ROPE_SCALING_LLAMA3)
        return freq;
    float wavelen = 2.0f * (float)M_PI / freq;
    float low_wl = (float)h->rope_orig_max_seq_len / h->rope_low_freq_factor;
    float high_wl = (float)h->rope_orig_max_seq_len / h->rope_high_freq_factor;
    if (wavelen > low_wl)
        return freq / h->rope_factor;
    if (wavelen < high_wl)
        return freq;
    float smooth = ((float)h->rope_orig_max_seq_len / wavelen - h->rope_low_freq_factor) /
                   (h->rope_high_freq_factor - h->rope_low_freq_factor);
    return (1.0f - smooth) * freq / h->rope_factor + smooth * freq;
}

/* Whether c's parameters give every pair the frequency llama.cpp uses
 * (base frequency / divisor) to within float rounding. */
static int rope_matches(const struct hearth_header *c, const float *div, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        double base = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
        double want = base / div[i], got = hearth_pair_freq(c, i);
        if (fabs(got - want) > 1e-5 * want)
            return 0;
    }
    return 1;
}

static int try_llama3(struct hearth_header *c, const float *div, uint32_t n, float factor,
                      float high, uint64_t orig)
{
    struct hearth_header t = *c;
    t.rope_scaling = HEARTH_ROPE_SCALING_LLAMA3;
    t.rope_factor = factor;
    t.rope_low_freq_factor = 1.0f;
    t.rope_high_freq_factor = high;
    t.rope_orig_max_seq_len = (uint32_t)orig;
    if (!(high > 1.0f) || orig < 1 || orig > UINT32_MAX || !rope_matches(&t, div, n))
        return 0;
    *c = t;
    return 1;
}

/* Fits the smooth region: with low = 1 (only ratios matter: scaling low,
 * high and orig_ctx together changes nothing), smooth_i = A / wavelen_i - B
 * with A = orig / (high - 1) and B = 1 / (high - 1); two pairs inside the
 * region fix A and B. Returns 0 when fewer than two pairs are there. */
static int fit_smooth(struct hearth_header *c, const float *div, uint32_t n, float factor)
{
    int first = -1, last = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (div[i] > 1.0f + 1e-6f && div[i] < factor * (1.0f - 1e-6f)) {
            first = first < 0 ? (int)i : first;
            last = (int)i;
        }
    }
    if (first < 0 || first == last)
        return 0;
    double s[2], inv_wl[2];
    int at[2] = {first, last};
    for (int k = 0; k < 2; k++) {
        double base = 1.0 / pow(c->rope_theta, (double)(2 * at[k]) / c->head_dim);
        s[k] = (1.0 / div[at[k]] - 1.0 / factor) / (1.0 - 1.0 / factor);
        inv_wl[k] = base / (2.0 * M_PI);
    }
    double a = (s[0] - s[1]) / (inv_wl[0] - inv_wl[1]), b = a * inv_wl[0] - s[0];
    if (!(b > 0) || !(a > 0))
        return 0;
    double orig = round(a / b);
    return orig >= 1 && orig <= UINT32_MAX &&
           try_llama3(c, div, n, factor, (float)(1.0 + 1.0 / b), (uint64_t)orig);
}

static int rope_from_divisors(struct gguf *g, const struct arch *a, struct hearth_header *c,
                              const float *div, uint32_t n, char *err)
{
    float factor = 1.0f;
    for (uint32_t i = 0; i < n; i++) {
        if (!isfinite(div[i]) || div[i] < 1.0f)
            return fail(err, "%s: rope_freqs.weight[%u] = %g; Llama 3 rope scaling divides "
                        "frequencies by factors of at least 1", g->in.path, i, div[i]);
        factor = div[i] > factor ? div[i] : factor;
    }
    if (factor == 1.0f)
        return 0; /* every divisor 1: no scaling */
    /* Meta's values for every Llama 3.1/3.2 model (low 1, high 4, original
     * context 8192; FACTS.md), unless the file names its original context */
    char k[96];
    uint64_t orig = 8192;
    if (get_uint(g, arch_key(k, sizeof k, a, "rope.scaling.original_context_length"), 1,
                 UINT32_MAX, &orig, err) < 0)
        return -1;
    if (try_llama3(c, div, n, factor, 4.0f, orig) || fit_smooth(c, div, n, factor))
        return 0;
    char values[160] = "";
    for (uint32_t i = 0; i < n && i < 8; i++)
        snprintf(values + strlen(values), sizeof values - strlen(values), "%s%g", i ? ", " : "",
                 div[i]);
    return fail(err, "%s: rope_freqs.weight [%s%s] is not Llama 3 rope scaling for any "
                "parameters hearth can recover; refusing to guess", g->in.path, values,
                n > 8 ? ", ..." : "");
}

static int read_rope_freqs(struct gguf *g, const struct arch *a, const struct tensor_map *m,
                           struct hearth_header *c, char *err)
{
    if (m->global[G_ROPE_FREQS] < 0)
        return 0;
    const struct gguf_tensor *t = &g->tensors[m->global[G_ROPE_FREQS]];
    if (t->type != HEARTH_F32)
        return fail(err, "%s: tensor \"%s\" has type %s; expected F32", g->in.path, t->name,
                    ggml_type_name(t->ggml_type));
    uint32_t n = c->head_dim / 2;
    float *div = malloc(n * sizeof *div);
    uint8_t *raw = malloc(n * 4u);
    int rc = -1;
    in_label(&g->in, "tensor \"%s\"", t->name);
    g->in.pos = g->data_offset + t->offset;
    if (!div || !raw)
        fail(err, "%s: out of memory", g->in.path);
    else if (in_read(&g->in, raw, n * 4u, err) == 0) {
        for (uint32_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)le_bytes(raw + 4 * i, 4);
            memcpy(&div[i], &bits, sizeof bits);
        }
        rc = rope_from_divisors(g, a, c, div, n, err);
    }
    free(div);
    free(raw);
    return rc;
}

static int read_tensors(struct gguf *g, const struct arch *a, struct source *src, char *err)
{
    struct tensor_map m = {.g = g, .cfg = &src->cfg};
    for (int k = 0; k < G_N_KINDS; k++)
        m.global[k] = -1;
    uint64_t n_slots = (uint64_t)src->cfg.n_layers * L_N_KINDS;
    m.layers = malloc(n_slots * sizeof *m.layers);
    if (!m.layers)
        return fail(err, "%s: out of memory", g->in.path);
    for (uint64_t i = 0; i < n_slots; i++)
        m.layers[i] = -1;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < g->n_tensors; i++)
        rc = map_tensor(&m, (int32_t)i, err);
    if (rc == 0)
        rc = build_tensor_list(&m, src, a, err);
    if (rc == 0)
        rc = read_rope_freqs(g, a, &m, &src->cfg, err);
    free(m.layers);
    return rc;
}

/* ---- vocabulary ----------------------------------------------------------- */

/* The token strings as the file stores them, with a hash index (merges and
 * special tokens are looked up by these strings). */
struct tokens {
    char *bytes;      /* all strings back to back */
    uint64_t *start;  /* n + 1 offsets into bytes */
    uint32_t n;
    uint32_t *slots;  /* open addressing: id + 1, 0 = empty */
    uint64_t mask;
};

static void tokens_free(struct tokens *tk)
{
    free(tk->bytes);
    free(tk->start);
    free(tk->slots);
    memset(tk, 0, sizeof *tk);
}

static uint32_t tokens_find(const struct tokens *tk, const char *s, uint64_t n)
{
    for (uint64_t h = hearth_fnv1a(HEARTH_FNV_OFFSET, s, n) & tk->mask;; h = (h + 1) & tk->mask) {
        uint32_t slot = tk->slots[h];
        if (!slot)
            return UINT32_MAX;
        uint32_t id = slot - 1;
        if (tk->start[id + 1] - tk->start[id] == n && !memcmp(tk->bytes + tk->start[id], s, n))
            return id;
    }
}

/* Indexes token id; returns the id of an earlier identical string, or
 * UINT32_MAX. */
static uint32_t tokens_insert(struct tokens *tk, uint32_t id)
{
    const char *s = tk->bytes + tk->start[id];
    uint64_t n = tk->start[id + 1] - tk->start[id];
    uint32_t same = tokens_find(tk, s, n);
    if (same != UINT32_MAX)
        return same;
    uint64_t h = hearth_fnv1a(HEARTH_FNV_OFFSET, s, n) & tk->mask;
    while (tk->slots[h])
        h = (h + 1) & tk->mask;
    tk->slots[h] = id + 1;
    return UINT32_MAX;
}

static int tokens_alloc(struct tokens *tk, const struct gguf_kv *kv)
{
    tk->n = (uint32_t)kv->n;
    uint64_t n_slots = 1;
    while (n_slots < 2 * (uint64_t)tk->n)
        n_slots *= 2;
    tk->mask = n_slots - 1;
    /* the scan walked n strings of u64 length + bytes from at to end */
    uint64_t n_bytes = kv->end - kv->at - 8 * kv->n;
    tk->bytes = malloc(n_bytes ? n_bytes : 1);
    tk->start = calloc((size_t)tk->n + 1, sizeof *tk->start);
    tk->slots = calloc(n_slots, sizeof *tk->slots);
    return tk->bytes && tk->start && tk->slots ? 0 : -1;
}

/* tokenizer.ggml.tokens: n non-empty, distinct strings. llama.cpp asserts
 * that no two are equal (id_to_token.size() == token_to_id.size()). */
static int read_tokens(struct gguf *g, struct tokens *tk, char *err)
{
    const struct gguf_kv *kv;
    int r = get_array(g, "tokenizer.ggml.tokens", GV_STRING, &kv, err);
    if (r <= 0)
        return r < 0 ? -1 : fail(err, "%s: required key \"tokenizer.ggml.tokens\" is missing",
                                 g->in.path);
    if (kv->n == 0 || kv->n > GGUF_MAX_TOKENS)
        return kv_fail(g, kv, err, "holds %" PRIu64 " tokens; expected 1 to %u", kv->n,
                       GGUF_MAX_TOKENS);
    uint64_t string_bytes = kv->end - kv->at - 8 * kv->n; /* the scan walked them */
    if (string_bytes > kv->n * GGUF_MAX_TOKEN_BYTES)
        return kv_fail(g, kv, err, "holds %" PRIu64 " bytes of token text, more than %" PRIu64
                       " tokens of at most %u bytes", string_bytes, kv->n, GGUF_MAX_TOKEN_BYTES);
    if (tokens_alloc(tk, kv) < 0)
        return fail(err, "%s: out of memory for %" PRIu64 " tokens", g->in.path, kv->n);
    uint64_t room = string_bytes, used = 0;
    for (uint32_t id = 0; id < tk->n; id++) {
        uint64_t len, at = g->in.pos;
        g->in.elem = id;
        if (in_strlen(&g->in, GGUF_MAX_TOKEN_BYTES, &len, err) < 0)
            return -1;
        if (len == 0)
            return in_fail(&g->in, at, err, "the token is empty");
        if (len > room - used)
            return in_fail(&g->in, at, err, "the file changed while it was being read");
        if (in_read(&g->in, tk->bytes + used, len, err) < 0)
            return -1;
        used += len;
        tk->start[id + 1] = used;
        uint32_t same = tokens_insert(tk, id);
        if (same != UINT32_MAX)
            return in_fail(&g->in, at, err, "the token \"%.*s\" is the same string as token %u",
                           (int)(len > 64 ? 64 : len), tk->bytes + tk->start[id], same);
    }
    g->in.elem = -1;
    return 0;
}

/* tokenizer.ggml.token_type: llama.cpp's llama_token_type (llama.h):
 * 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte - the
 * SentencePiece piece types, which hearth_token_kind also uses. Absent, all
 * tokens are normal, as llama.cpp then assumes. Type 0 (undefined) and
 * other values are refused. */
static int read_kinds(struct gguf *g, struct vocab *v, char *err)
{
    const struct gguf_kv *kv = find_kv(g, "tokenizer.ggml.token_type");
    uint32_t n = v->hdr.n_tokens;
    /* gguf-py writes i32; llama.cpp reads the values as int32 whatever the
     * declared type, so u32 is taken too */
    uint32_t elem = kv && kv->type == GV_ARRAY && kv->elem_type == GV_U32 ? GV_U32 : GV_I32;
    int r = get_array(g, "tokenizer.ggml.token_type", elem, &kv, err);
    if (r < 0)
        return -1;
    if (r == 0) {
        memset(v->kinds, HEARTH_TOKEN_NORMAL, n);
        return 0;
    }
    if (kv->n != n)
        return kv_fail(g, kv, err, "has %" PRIu64 " entries for %u tokens", kv->n, n);
    for (uint32_t id = 0; id < n; id++) {
        uint32_t raw;
        uint64_t at = g->in.pos;
        g->in.elem = id;
        if (in_u32(&g->in, &raw, err) < 0)
            return -1;
        int32_t type = (int32_t)raw;
        if (type < HEARTH_TOKEN_NORMAL || type > HEARTH_TOKEN_BYTE)
            return in_fail(&g->in, at, err, "token type %d is not one of 1 (normal) to 6 (byte)",
                           type);
        v->kinds[id] = (uint8_t)type;
    }
    g->in.elem = -1;
    return 0;
}

/* tokenizer.ggml.scores: optional (byte-level BPE files have none; 0 then,
 * as in llama.cpp). */
static int read_scores(struct gguf *g, struct vocab *v, char *err)
{
    const struct gguf_kv *kv;
    uint32_t n = v->hdr.n_tokens;
    int r = get_array(g, "tokenizer.ggml.scores", GV_F32, &kv, err);
    if (r <= 0)
        return r;
    if (kv->n != n)
        return kv_fail(g, kv, err, "has %" PRIu64 " entries for %u tokens", kv->n, n);
    for (uint32_t id = 0; id < n; id++) {
        uint32_t bits;
        uint64_t at = g->in.pos;
        g->in.elem = id;
        if (in_u32(&g->in, &bits, err) < 0)
            return -1;
        memcpy(&v->scores[id], &bits, sizeof bits);
        if (isnan(v->scores[id]))
            return in_fail(&g->in, at, err, "the score is NaN");
    }
    g->in.elem = -1;
    return 0;
}

static int set_piece(struct vocab *v, uint32_t id, const char *bytes, uint64_t n)
{
    v->pieces[id] = malloc(n ? n : 1);
    if (!v->pieces[id])
        return -1;
    memcpy(v->pieces[id], bytes, n);
    v->piece_bytes[id] = (uint32_t)n;
    return 0;
}

/* Byte-level BPE: normal tokens are stored in the GPT-2 alphabet and
 * become raw bytes (format.h); control, user-defined and other tokens are
 * stored as their text already (convert_hf_to_gguf.py get_vocab_base keeps
 * added tokens as they are; llama.cpp's token_to_piece decodes only normal
 * ones). */
static int set_bpe_pieces(struct gguf *g, const struct tokens *tk, struct vocab *v, char *err)
{
    char *buf = malloc(GGUF_MAX_TOKEN_BYTES);
    if (!buf)
        return fail(err, "%s: out of memory", g->in.path);
    int rc = 0;
    for (uint32_t id = 0; rc == 0 && id < tk->n; id++) {
        const char *s = tk->bytes + tk->start[id];
        uint64_t n = tk->start[id + 1] - tk->start[id];
        size_t bad = 0;
        long k = (long)n; /* n <= GGUF_MAX_TOKEN_BYTES, the room in buf (read_tokens) */
        if (v->kinds[id] == HEARTH_TOKEN_NORMAL) {
            k = tokenizer_gpt2_bytes(s, (size_t)n, buf, &bad);
            s = buf;
        }
        if (k < 0)
            rc = fail(err, "%s: tokenizer.ggml.tokens[%u] \"%.*s\" is a normal token but byte %"
                      PRIu64 " is not a character of the GPT-2 byte alphabet", g->in.path, id,
                      (int)(n > 64 ? 64 : n), tk->bytes + tk->start[id], (uint64_t)bad);
        else if (set_piece(v, id, s, (uint64_t)k) < 0)
            rc = fail(err, "%s: out of memory", g->in.path);
    }
    free(buf);
    return rc;
}

static int set_spm_pieces(struct gguf *g, const struct tokens *tk, struct vocab *v, char *err)
{
    for (uint32_t id = 0; id < tk->n; id++)
        if (set_piece(v, id, tk->bytes + tk->start[id], tk->start[id + 1] - tk->start[id]) < 0)
            return fail(err, "%s: out of memory", g->in.path);
    return 0;
}

/* A special-token id key: absent leaves *id as it is. */
static int get_token_id(const struct gguf *g, const char *key, uint32_t n_tokens, uint32_t *id,
                        char *err)
{
    uint64_t v;
    int r = get_uint(g, key, 0, n_tokens - 1, &v, err);
    if (r > 0)
        *id = (uint32_t)v;
    return r < 0 ? -1 : 0;
}

/* SentencePiece: BYTE tokens spelled <0xHH> (byte fallback when all 256
 * exist: llama.cpp's SPM tokenizer always falls back to them), exactly one
 * UNKNOWN token (SentencePiece requires it), the dummy prefix from
 * tokenizer.ggml.add_space_prefix (llama.cpp's default for "llama": true)
 * and BOS/EOS defaulting to 1/2 as llama.cpp's llama-vocab.cpp does. */
static int finish_spm(struct gguf *g, struct vocab *v, char *err)
{
    uint32_t n_byte_pieces = 0, unk = UINT32_MAX, n = v->hdr.n_tokens;
    for (uint32_t id = 0; id < n; id++) {
        if (v->kinds[id] == HEARTH_TOKEN_UNKNOWN) {
            if (unk != UINT32_MAX)
                return fail(err, "%s: tokens %u and %u are both of type unknown (2)", g->in.path,
                            unk, id);
            unk = id;
        }
        if (v->kinds[id] != HEARTH_TOKEN_BYTE)
            continue;
        if (tokenizer_byte_piece_value(v->pieces[id], v->piece_bytes[id]) < 0)
            return fail(err, "%s: token %u has type byte (6) but is not spelled <0xHH>",
                        g->in.path, id);
        n_byte_pieces++; /* tokens are distinct, so 256 means every byte */
    }
    if (unk == UINT32_MAX)
        return fail(err, "%s: no token has type unknown (2); a SentencePiece vocabulary needs one",
                    g->in.path);
    uint32_t unk_key = unk;
    int dummy = 1;
    v->bos_id = 1 < n ? 1 : UINT32_MAX;
    v->eos_id = 2 < n ? 2 : UINT32_MAX;
    if (get_token_id(g, "tokenizer.ggml.unknown_token_id", n, &unk_key, err) < 0 ||
        get_bool(g, "tokenizer.ggml.add_space_prefix", &dummy, err) < 0)
        return -1;
    if (unk_key != unk)
        return fail(err, "%s: tokenizer.ggml.unknown_token_id is %u but token %u has type unknown",
                    g->in.path, unk_key, unk);
    v->hdr.type = HEARTH_TOKENIZER_SPM;
    v->hdr.unk_id = unk;
    v->hdr.flags = (dummy ? HEARTH_TOK_ADD_DUMMY_PREFIX : 0) |
                   (n_byte_pieces == 256 ? HEARTH_TOK_BYTE_FALLBACK : 0);
    return 0;
}

/* tokenizer.ggml.pre names llama.cpp's llama-vocab.cpp maps to each split
 * rule hearth implements (enum hearth_pre_tokenizer in format.h). */
static int pre_tokenizer(struct gguf *g, struct vocab *v, char *err)
{
    static const struct {
        const char *name;
        uint32_t code;
    } known[] = {
        {"llama-bpe", HEARTH_PRE_LLAMA3}, {"llama3", HEARTH_PRE_LLAMA3},
        {"llama-v3", HEARTH_PRE_LLAMA3},  {"gpt-2", HEARTH_PRE_GPT2},
        {"qwen2", HEARTH_PRE_QWEN2},      {"smollm", HEARTH_PRE_SMOLLM},
    };
    char name[GGUF_MAX_NAME_VALUE];
    int r = get_string(g, "tokenizer.ggml.pre", name, sizeof name, err);
    if (r <= 0)
        return r < 0 ? -1 : fail(err, "%s: key \"tokenizer.ggml.pre\" is missing; hearth does "
                                 "not guess a byte-level BPE pre-tokenizer", g->in.path);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(name, known[i].name))
            continue;
        v->hdr.pre_tokenizer = known[i].code;
        /* llama.cpp sets ignore_merges for the Llama 3 rule only; so does
         * Llama 3's tokenizer.json (FACTS.md) */
        if (known[i].code == HEARTH_PRE_LLAMA3)
            v->hdr.flags |= HEARTH_TOK_IGNORE_MERGES;
        return 0;
    }
    return fail(err, "%s: tokenizer.ggml.pre \"%.64s\" is not supported; hearth implements "
                "llama-bpe (llama3, llama-v3), gpt-2, qwen2 and smollm", g->in.path, name);
}

/* One merge "LEFT RIGHT": both halves and their concatenation must be
 * tokens (Hugging Face tokenizers refuses a merge otherwise). llama.cpp
 * splits at the first space after the first byte. */
static int parse_merge(struct gguf *g, const struct tokens *tk, char *text, uint64_t len,
                       uint64_t at, uint32_t pair[2], char *err)
{
    char *space = len > 1 ? memchr(text + 1, ' ', len - 1) : NULL;
    int shown = (int)(len > 64 ? 64 : len);
    if (!space)
        return in_fail(&g->in, at, err, "merge \"%.*s\" is not two tokens separated by a space",
                       shown, text);
    uint64_t left_len = (uint64_t)(space - text), right_len = len - left_len - 1;
    pair[0] = tokens_find(tk, text, left_len);
    pair[1] = tokens_find(tk, space + 1, right_len);
    memmove(space, space + 1, right_len); /* text now starts with LEFT RIGHT joined */
    uint32_t joined = tokens_find(tk, text, len - 1);
    if (pair[0] == UINT32_MAX || pair[1] == UINT32_MAX || joined == UINT32_MAX)
        return in_fail(&g->in, at, err, "merge of \"%.*s\" and \"%.*s\": %s is not a token",
                       (int)(left_len > 64 ? 64 : left_len), text,
                       (int)(right_len > 64 ? 64 : right_len), text + left_len,
                       pair[0] == UINT32_MAX ? "the left part"
                       : pair[1] == UINT32_MAX ? "the right part" : "the merged string");
    return 0;
}

static int read_merges(struct gguf *g, const struct tokens *tk, struct vocab *v, char *err)
{
    const struct gguf_kv *kv;
    int r = get_array(g, "tokenizer.ggml.merges", GV_STRING, &kv, err);
    if (r <= 0)
        return r < 0 ? -1 : fail(err, "%s: key \"tokenizer.ggml.merges\" is missing (byte-level "
                                 "BPE needs its merges)", g->in.path);
    if (kv->n > GGUF_MAX_MERGES)
        return kv_fail(g, kv, err, "holds %" PRIu64 " merges; the limit is %u", kv->n,
                       GGUF_MAX_MERGES);
    uint64_t max_len = 2 * (uint64_t)GGUF_MAX_TOKEN_BYTES + 1;
    char *text = malloc(max_len);
    v->merges = malloc(kv->n ? kv->n * sizeof *v->merges : 1);
    if (!text || !v->merges) {
        free(text);
        return fail(err, "%s: out of memory for %" PRIu64 " merges", g->in.path, kv->n);
    }
    int rc = 0;
    for (uint32_t m = 0; rc == 0 && m < kv->n; m++) {
        uint64_t len, at = g->in.pos;
        g->in.elem = m;
        rc = in_strlen(&g->in, max_len, &len, err);
        if (rc == 0)
            rc = in_read(&g->in, text, len, err);
        if (rc == 0)
            rc = parse_merge(g, tk, text, len, at, v->merges[m], err);
    }
    g->in.elem = -1;
    free(text);
    v->hdr.n_merges = (uint32_t)kv->n;
    return rc;
}

/* Byte-level BPE: the pre-tokenizer, the merges, no dummy prefix (a
 * tokenizer.ggml.add_space_prefix of true is refused: hearth's byte-level
 * BPE has none), BOS and EOS required (llama.cpp's fallback ids for "gpt2"
 * are not meaningful), unk optional. */
static int finish_bpe(struct gguf *g, const struct tokens *tk, struct vocab *v, char *err)
{
    int prefix = 0;
    uint32_t n = v->hdr.n_tokens;
    v->hdr.type = HEARTH_TOKENIZER_BYTE_BPE;
    if (pre_tokenizer(g, v, err) < 0 || read_merges(g, tk, v, err) < 0 ||
        get_bool(g, "tokenizer.ggml.add_space_prefix", &prefix, err) < 0 ||
        get_token_id(g, "tokenizer.ggml.unknown_token_id", n, &v->hdr.unk_id, err) < 0 ||
        get_token_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos_id, err) < 0 ||
        get_token_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos_id, err) < 0)
        return -1;
    if (prefix)
        return fail(err, "%s: tokenizer.ggml.add_space_prefix is true for a byte-level BPE "
                    "vocabulary; not supported", g->in.path);
    if (v->bos_id == UINT32_MAX || v->eos_id == UINT32_MAX)
        return fail(err, "%s: key \"tokenizer.ggml.%s_token_id\" is missing", g->in.path,
                    v->bos_id == UINT32_MAX ? "bos" : "eos");
    return 0;
}

/* Whether this build's tokenizer loads a section of v's type and
 * pre-tokenizer with these flags: a one-token vocabulary through
 * tokenizer_init. (A flag the engine does not implement yet is refused by
 * the loader, and a file carrying it could not be run at all.) */
static int tokenizer_accepts(const struct vocab *v, uint32_t flags)
{
    struct vocab probe;
    char err[HEARTH_ERR_BYTES];
    if (vocab_alloc(&probe, 1, "probe", err) < 0)
        return 0;
    probe.hdr.type = v->hdr.type;
    probe.hdr.pre_tokenizer = v->hdr.pre_tokenizer;
    probe.hdr.flags = flags;
    probe.hdr.unk_id = UINT32_MAX;
    probe.kinds[0] = HEARTH_TOKEN_NORMAL;
    int ok = set_piece(&probe, 0, "a", 1) == 0;
    uint8_t *section = NULL;
    uint64_t n_bytes = 0;
    struct tokenizer t;
    ok = ok && vocab_serialize(&probe, &section, &n_bytes, err) == 0 &&
         tokenizer_init(&t, section, n_bytes, 0, 0, err) == 0;
    if (ok)
        tokenizer_free(&t);
    free(section);
    vocab_free(&probe);
    return ok;
}

/* Whether prompts start with BOS: tokenizer.ggml.add_bos_token (gguf-py
 * constants.py Keys.Tokenizer.ADD_BOS) when present. Absent, llama.cpp's
 * default (src/llama-vocab.cpp, llama_vocab::impl::load, as of
 * ggml-org/llama.cpp@00ad355e): add_bos starts false, SentencePiece
 * vocabularies set it true, and of the byte-level pre-tokenizers hearth
 * reads only Llama 3's (llama3, llama-v3, llama-bpe) do; gpt-2, qwen2 and
 * smollm leave it false. Without BOS: HEARTH_TOK_NO_BOS.
 * Qwen2 (pre "qwen2"): its tokenizer.json normalizes text to NFC before
 * anything else, which GGUF does not record, so HEARTH_TOK_NFC is set, once
 * this build's tokenizer accepts that flag. */
static int set_tokenizer_flags(struct gguf *g, struct vocab *v, char *err)
{
    int add_bos = v->hdr.type == HEARTH_TOKENIZER_SPM || v->hdr.pre_tokenizer == HEARTH_PRE_LLAMA3;
    if (get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, err) < 0)
        return -1;
    if (!add_bos)
        v->hdr.flags |= HEARTH_TOK_NO_BOS;
    if (v->hdr.type == HEARTH_TOKENIZER_BYTE_BPE && v->hdr.pre_tokenizer == HEARTH_PRE_QWEN2 &&
        tokenizer_accepts(v, v->hdr.flags | HEARTH_TOK_NFC))
        v->hdr.flags |= HEARTH_TOK_NFC;
    return 0;
}

/* The vocabulary, with its token strings kept in tk for lookups. */
static int read_vocab(struct gguf *g, struct vocab *v, struct tokens *tk, char *err)
{
    char model[GGUF_MAX_NAME_VALUE];
    int r = get_string(g, "tokenizer.ggml.model", model, sizeof model, err);
    if (r <= 0)
        return r < 0 ? -1 : fail(err, "%s: required key \"tokenizer.ggml.model\" is missing",
                                 g->in.path);
    int spm = !strcmp(model, "llama");
    if (!spm && strcmp(model, "gpt2"))
        return fail(err, "%s: tokenizer.ggml.model \"%.64s\" is not supported; hearth reads "
                    "\"llama\" (SentencePiece) and \"gpt2\" (byte-level BPE)", g->in.path, model);
    if (read_tokens(g, tk, err) < 0)
        return -1;
    if (vocab_alloc(v, tk->n, g->in.path, err) < 0)
        return -1;
    v->hdr.unk_id = UINT32_MAX; /* until the file names them */
    v->bos_id = v->eos_id = UINT32_MAX;
    if (read_kinds(g, v, err) < 0 || read_scores(g, v, err) < 0 ||
        (spm ? set_spm_pieces(g, tk, v, err) : set_bpe_pieces(g, tk, v, err)) < 0)
        return -1;
    if (spm) {
        if (finish_spm(g, v, err) < 0 ||
            get_token_id(g, "tokenizer.ggml.bos_token_id", tk->n, &v->bos_id, err) < 0 ||
            get_token_id(g, "tokenizer.ggml.eos_token_id", tk->n, &v->eos_id, err) < 0)
            return -1;
        if (v->bos_id == UINT32_MAX || v->eos_id == UINT32_MAX)
            return fail(err, "%s: the vocabulary has %u tokens and names no %s token", g->in.path,
                        tk->n, v->bos_id == UINT32_MAX ? "BOS" : "EOS");
    } else if (finish_bpe(g, tk, v, err) < 0) {
        return -1;
    }
    return set_tokenizer_flags(g, v, err);
}

/* ---- special ids and the whole reader ------------------------------------- */

static int add_stop_id(const struct gguf *g, struct hearth_header *c, uint32_t id, char *err)
{
    for (uint32_t k = 0; k < c->n_stop_ids; k++)
        if (c->stop_ids[k] == id)
            return 0;
    if (c->n_stop_ids == HEARTH_MAX_STOP_IDS)
        return fail(err, "%s: more than %u end-of-generation tokens", g->in.path,
                    HEARTH_MAX_STOP_IDS);
    c->stop_ids[c->n_stop_ids++] = id;
    return 0;
}

/* Ids that end generation: eos first, then tokenizer.ggml.eot_token_id and
 * eom_token_id, then the tokens llama.cpp's vocabulary loader also treats as
 * end of generation by their text (llama-vocab.cpp, special_eog_ids). */
static int set_stop_ids(const struct gguf *g, const struct tokens *tk, const struct vocab *v,
                        struct hearth_header *c, char *err)
{
    static const char *const eog_texts[] = {
        "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>", "<|end|>",
        "<end_of_turn>", "<EOT>",
    };
    uint32_t ids[3 + sizeof eog_texts / sizeof eog_texts[0]], n = 0;
    uint32_t eot = UINT32_MAX, eom = UINT32_MAX;
    if (get_token_id(g, "tokenizer.ggml.eot_token_id", tk->n, &eot, err) < 0 ||
        get_token_id(g, "tokenizer.ggml.eom_token_id", tk->n, &eom, err) < 0)
        return -1;
    ids[n++] = v->eos_id;
    ids[n++] = eot;
    ids[n++] = eom;
    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0]; i++)
        ids[n++] = tokens_find(tk, eog_texts[i], strlen(eog_texts[i]));
    c->n_stop_ids = 0;
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] != UINT32_MAX && add_stop_id(g, c, ids[i], err) < 0)
            return -1;
    c->bos_id = v->bos_id;
    c->eos_id = v->eos_id;
    return 0;
}

/* tokenizer.chat_template (gguf-py constants.py Keys.Tokenizer.CHAT_TEMPLATE,
 * the model's Jinja template as convert_hf_to_gguf.py copies it): the
 * recognised family, or CHAT_TEMPLATE_UNRECOGNISED; absent, HEARTH_CHAT_NONE.
 * (The token closing each family's turns, chat_template_end_of_turn, is
 * already a stop id: the eos, or one of set_stop_ids' texts.) */
#define GGUF_MAX_TEMPLATE_BYTES (1u << 20) /* real templates are a few KB */

static int read_chat_template(struct gguf *g, struct hearth_header *c, char *err)
{
    char *text = NULL;
    uint64_t n = 0;
    int r = get_text(g, "tokenizer.chat_template", GGUF_MAX_TEMPLATE_BYTES, &text, &n, err);
    c->chat_template = HEARTH_CHAT_NONE;
    if (r <= 0)
        return r;
    int family = chat_template_detect(text, (size_t)n);
    free(text);
    c->chat_template = family ? (uint32_t)family : CHAT_TEMPLATE_UNRECOGNISED;
    return 0;
}

/* <arch>.vocab_size, when present, must agree with the token list. */
static int check_vocab_size(const struct gguf *g, const struct arch *a, struct hearth_header *c,
                            uint32_t n_tokens, char *err)
{
    char k[96];
    uint64_t size = n_tokens;
    if (get_uint(g, arch_key(k, sizeof k, a, "vocab_size"), 0, UINT32_MAX, &size, err) < 0)
        return -1;
    if (size != n_tokens)
        return fail(err, "%s: %s is %" PRIu64 " but tokenizer.ggml.tokens holds %u tokens",
                    g->in.path, k, size, n_tokens);
    c->vocab_size = n_tokens;
    return 0;
}

int gguf_read(const char *path, struct source *src, char *err)
{
    memset(src, 0, sizeof *src);
    struct gguf g;
    if (gguf_open(&g, path, err) < 0)
        return -1;
    src->fds[src->n_fds++] = g.in.fd; /* src owns the file from here on */
    src->input_bytes = g.in.size;
    struct tokens tk = {0};
    const struct arch *a = NULL;
    int rc = find_arch(&g, &a, err);
    if (rc == 0)
        rc = read_config(&g, a, &src->cfg, err);
    if (rc == 0)
        rc = read_vocab(&g, &src->vocab, &tk, err);
    if (rc == 0)
        rc = check_vocab_size(&g, a, &src->cfg, tk.n, err);
    if (rc == 0)
        rc = read_tensors(&g, a, src, err);
    if (rc == 0)
        rc = set_stop_ids(&g, &tk, &src->vocab, &src->cfg, err);
    if (rc == 0)
        rc = read_chat_template(&g, &src->cfg, err);
    tokens_free(&tk);
    gguf_close(&g, 0);
    if (rc < 0)
        source_free(src);
    return rc;
}

int gguf_read_vocab(const char *path, struct vocab *v, char *err)
{
    memset(v, 0, sizeof *v);
    struct gguf g;
    if (gguf_open(&g, path, err) < 0)
        return -1;
    struct tokens tk = {0};
    int rc = read_vocab(&g, v, &tk, err);
    tokens_free(&tk);
    gguf_close(&g, 1);
    if (rc < 0)
        vocab_free(v);
    return rc;
}
