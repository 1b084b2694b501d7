/* exporter/write.c - writes a hearth model file (format.h) from a source.
 *
 * The whole layout (header, tokenizer section, tensor directory, 64-byte
 * aligned tensor data) is planned before the first byte is written, so the
 * file is written front to back in one pass, hashed as it goes, with the
 * FNV-1a checksum appended last. Tensors stream row by row from their source
 * files: memory stays at a few rows whatever the model size. The output goes
 * to OUT.tmp and is renamed to OUT only when complete.
 *
 * Sources are F32/F16/BF16 rows, or rows of GGUF Q8_0/Q4_0 blocks (a GGUF
 * file). A block source written as its own type is rearranged block for
 * block (repack_group_*, no requantization); written as another type it is
 * dequantized first, exactly as ggml dequantizes it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../chat.h"
#include "../kernels/kernels.h"
#include "../quant.h"
#include "source.h"

struct out_file {
    FILE *f;
    const char *path;
    uint64_t pos;
    uint64_t hash;
};

static int out_write(struct out_file *o, const void *data, size_t n_bytes, char *err)
{
    if (fwrite(data, 1, n_bytes, o->f) != n_bytes)
        return fail(err, "%s: write failed at offset %llu: %s", o->path,
                    (unsigned long long)o->pos, strerror(errno));
    o->hash = hearth_fnv1a(o->hash, data, n_bytes);
    o->pos += n_bytes;
    return 0;
}

static int out_pad_to(struct out_file *o, uint64_t offset, char *err)
{
    static const uint8_t zeros[HEARTH_TENSOR_ALIGN];
    while (o->pos < offset) {
        uint64_t n = offset - o->pos < sizeof zeros ? offset - o->pos : sizeof zeros;
        if (out_write(o, zeros, (size_t)n, err) < 0)
            return -1;
    }
    return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

/* Hugging Face stores q/k rows per head in rotate-half order: row j of the
 * first half pairs with row j of the second half. hearth rotates adjacent
 * pairs, so output row 2j+p of a head comes from source row p*head_dim/2 + j
 * (FACTS.md: view as (heads, 2, head_dim/2), swap the middle axes). */
static uint64_t source_row(const struct src_tensor *t, uint64_t row, uint64_t n)
{
    if (!t->unpermute_heads)
        return row;
    uint64_t head_dim = n / t->unpermute_heads, half = head_dim / 2;
    uint64_t head = row / head_dim, i = row % head_dim;
    return head * head_dim + (i % 2) * half + i / 2;
}

/* Norms and biases stay F32; a matrix whose rows do not split into blocks
 * of 32 cannot be block-quantized and stays F32 too. */
uint32_t stored_type(const struct src_tensor *t, uint32_t out_type)
{
    if (t->rows == 1 || (out_type != HEARTH_F32 && t->cols % QK != 0))
        return HEARTH_F32;
    return out_type;
}

static int is_block_type(uint32_t type)
{
    return type == HEARTH_Q8_0 || type == HEARTH_Q4_0;
}

/* Bytes of one source row: cols elements, or cols / 32 GGUF blocks. */
static uint64_t src_row_bytes(const struct src_tensor *t)
{
    if (t->type == HEARTH_Q8_0)
        return t->cols / QK * GGUF_Q8_0_BLOCK_BYTES;
    if (t->type == HEARTH_Q4_0)
        return t->cols / QK * GGUF_Q4_0_BLOCK_BYTES;
    return t->cols * hearth_type_elem_bytes(t->type);
}

static void row_to_f32(const struct src_tensor *t, const void *raw, float *out)
{
    if (is_block_type(t->type))
        dequantize_gguf_row(t->type, raw, t->cols, out);
    else
        convert_to_f32(t->type, raw, out, t->cols);
}

static int read_at(const struct src_tensor *t, void *buf, uint64_t n_bytes, uint64_t offset,
                   char *err)
{
    uint64_t done = 0;
    while (done < n_bytes) {
        ssize_t got = pread(t->fd, (char *)buf + done, n_bytes - done, (off_t)(offset + done));
        if (got <= 0)
            return fail(err, "tensor '%s': read failed at source offset %llu: %s", t->name,
                        (unsigned long long)(offset + done),
                        got == 0 ? "unexpected end of file" : strerror(errno));
        done += (uint64_t)got;
    }
    return 0;
}

/* Reads source row `row` of t (after unpermuting) as stored. */
static int read_row_raw(const struct src_tensor *t, uint64_t row, void *raw, char *err)
{
    uint64_t row_bytes = src_row_bytes(t);
    uint64_t from = source_row(t, row, t->rows);
    return read_at(t, raw, row_bytes, t->offset + from * row_bytes, err);
}

/* Reads source row `row` of t (after unpermuting) as floats. */
static int read_row_f32(const struct src_tensor *t, uint64_t row, void *raw, float *out, char *err)
{
    if (read_row_raw(t, row, raw, err) < 0)
        return -1;
    row_to_f32(t, raw, out);
    return 0;
}

/* A vector: elements permuted like rows (q/k biases). */
static int write_vector(struct out_file *o, const struct src_tensor *t, void *raw, float *buf,
                        char *err)
{
    if (read_at(t, raw, src_row_bytes(t), t->offset, err) < 0)
        return -1;
    row_to_f32(t, raw, buf);
    for (uint64_t i = 0; i < t->cols; i++) {
        float v = buf[source_row(t, i, t->cols)];
        if (out_write(o, &v, sizeof v, err) < 0)
            return -1;
    }
    return 0;
}

/* Rows r0 .. r0 + n - 1 of a block source, rearranged into one group of
 * the same type without requantizing. raw holds n source rows. */
static int repack_rows(const struct src_tensor *t, uint64_t r0, int n, uint8_t *raw,
                       uint8_t *packed, char *err)
{
    const uint8_t *row_ptrs[ROW_GROUP];
    uint64_t row_bytes = src_row_bytes(t);
    for (int i = 0; i < n; i++) {
        row_ptrs[i] = raw + (uint64_t)i * row_bytes;
        if (read_row_raw(t, r0 + (uint64_t)i, raw + (uint64_t)i * row_bytes, err) < 0)
            return -1;
    }
    if (t->type == HEARTH_Q8_0)
        repack_group_q8_0(row_ptrs, n, t->cols, packed);
    else
        repack_group_q4_0(row_ptrs, n, t->cols, packed);
    return 0;
}

/* A matrix in groups of 16 rows: F32 rows as they are, or one packed group
 * of the interleaved Q8_0/Q4_0 layout (kernels/kernels.h), quantized from
 * floats or, for a block source of the same type, repacked. */
static int write_matrix(struct out_file *o, const struct src_tensor *t, uint32_t type,
                        void *raw, float *rows, uint8_t *packed, char *err)
{
    uint64_t group_bytes = hearth_tensor_bytes(type, ROW_GROUP, t->cols);
    for (uint64_t r0 = 0; r0 < t->rows; r0 += ROW_GROUP) {
        int n = t->rows - r0 < ROW_GROUP ? (int)(t->rows - r0) : ROW_GROUP;
        if (type == t->type && is_block_type(type)) {
            if (repack_rows(t, r0, n, raw, packed, err) < 0 ||
                out_write(o, packed, group_bytes, err) < 0)
                return -1;
            continue;
        }
        const float *row_ptrs[ROW_GROUP];
        for (int i = 0; i < n; i++) {
            row_ptrs[i] = rows + (uint64_t)i * t->cols;
            if (read_row_f32(t, r0 + (uint64_t)i, raw, rows + (uint64_t)i * t->cols, err) < 0)
                return -1;
        }
        int rc;
        if (type == HEARTH_F32) {
            rc = out_write(o, rows, (size_t)n * t->cols * sizeof(float), err);
        } else {
            if (type == HEARTH_Q8_0)
                pack_group_q8_0(row_ptrs, n, t->cols, packed);
            else
                pack_group_q4_0(row_ptrs, n, t->cols, packed);
            rc = out_write(o, packed, group_bytes, err);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int check_tensor(const struct src_tensor *t, char *err)
{
    if (!hearth_type_elem_bytes(t->type) && !is_block_type(t->type))
        return fail(err, "tensor '%s': source type %s cannot be exported", t->name,
                    hearth_type_name(t->type));
    if (is_block_type(t->type) && t->cols % QK)
        return fail(err, "tensor '%s': a %s source needs rows of whole 32-weight blocks, but "
                    "it has %llu columns", t->name, hearth_type_name(t->type),
                    (unsigned long long)t->cols);
    uint64_t n = t->rows == 1 ? t->cols : t->rows;
    if (t->unpermute_heads && (n % t->unpermute_heads || (n / t->unpermute_heads) % 2))
        return fail(err, "tensor '%s': %llu rows do not split into %u heads of even size",
                    t->name, (unsigned long long)n, t->unpermute_heads);
    return 0;
}

/* Fills the header and the directory: every offset is fixed here. */
static void plan_layout(const struct source *src, uint32_t out_type, uint64_t tok_bytes,
                            struct hearth_header *h, struct hearth_tensor_entry *dir)
{
    *h = src->cfg;
    /* readers mark a chat template they found but could not place (chat.h) */
    if (h->chat_template == CHAT_TEMPLATE_UNRECOGNISED)
        h->chat_template = HEARTH_CHAT_NONE;
    memcpy(h->magic, HEARTH_MAGIC, 4);
    h->version = HEARTH_VERSION;
    h->n_tensors = src->n_tensors;
    h->tokenizer_offset = HEARTH_HEADER_BYTES;
    h->tokenizer_bytes = tok_bytes;
    h->tensors_offset = align_up(HEARTH_HEADER_BYTES + tok_bytes, 8);
    h->data_offset = align_up(h->tensors_offset + (uint64_t)src->n_tensors * sizeof *dir,
                              HEARTH_TENSOR_ALIGN);
    memset(h->reserved, 0, sizeof h->reserved);
    uint64_t end = h->data_offset;
    for (uint32_t i = 0; i < src->n_tensors; i++) {
        const struct src_tensor *t = &src->tensors[i];
        struct hearth_tensor_entry *e = &dir[i];
        memset(e, 0, sizeof *e);
        memcpy(e->name, t->name, sizeof e->name - 1);
        e->type = stored_type(t, out_type);
        e->rows = t->rows;
        e->cols = t->cols;
        e->offset = align_up(end, HEARTH_TENSOR_ALIGN);
        e->n_bytes = hearth_tensor_bytes(e->type, e->rows, e->cols);
        end = e->offset + e->n_bytes;
    }
    h->file_bytes = end + HEARTH_CHECKSUM_BYTES;
}

/* Prints the percentage of source bytes done when it has changed since
 * *shown, for inputs over 100 MB. */
static void show_progress(const struct source *src, uint64_t done_bytes, int verbose, int *shown)
{
    if (!verbose || src->input_bytes < 100000000ull)
        return;
    int pct = (int)(100 * done_bytes / src->input_bytes);
    if (pct == *shown)
        return;
    *shown = pct;
    fprintf(stderr, "\r  writing tensors: %3d%%", pct);
    fflush(stderr);
}

static int write_body(struct out_file *o, const struct source *src, const uint8_t *tok,
                      const struct hearth_header *h, const struct hearth_tensor_entry *dir,
                      int verbose, char *err)
{
    uint64_t max_cols = 1;
    for (uint32_t i = 0; i < src->n_tensors; i++)
        if (src->tensors[i].cols > max_cols)
            max_cols = src->tensors[i].cols;
    /* raw holds up to 16 source rows (4 bytes per weight at most) */
    void *raw = malloc(ROW_GROUP * max_cols * sizeof(float));
    float *rows = malloc(ROW_GROUP * max_cols * sizeof(float));
    uint8_t *packed = malloc(ROW_GROUP * max_cols * sizeof(float));
    int rc = -1;
    if (!raw || !rows || !packed) {
        fail(err, "out of memory for a %llu-column row group", (unsigned long long)max_cols);
        goto done;
    }
    if (out_write(o, h, sizeof *h, err) < 0 || out_write(o, tok, h->tokenizer_bytes, err) < 0 ||
        out_pad_to(o, h->tensors_offset, err) < 0 ||
        out_write(o, dir, (size_t)h->n_tensors * sizeof *dir, err) < 0)
        goto done;
    uint64_t done_bytes = 0;
    int shown = -1;
    for (uint32_t i = 0; i < src->n_tensors; i++) {
        const struct src_tensor *t = &src->tensors[i];
        if (out_pad_to(o, dir[i].offset, err) < 0)
            goto done;
        if (t->rows == 1 ? write_vector(o, t, raw, rows, err) < 0
                         : write_matrix(o, t, dir[i].type, raw, rows, packed, err) < 0)
            goto done;
        done_bytes += t->rows * src_row_bytes(t);
        show_progress(src, done_bytes, verbose, &shown);
    }
    uint64_t checksum = o->hash;
    rc = out_write(o, &checksum, sizeof checksum, err);
    if (verbose && src->input_bytes >= 100000000ull)
        fprintf(stderr, "\n");
done:
    free(raw);
    free(rows);
    free(packed);
    return rc;
}

int hearth_write(const struct source *src, const char *out_path, uint32_t out_type, int verbose,
                 char *err)
{
    if (out_type != HEARTH_F32 && out_type != HEARTH_Q8_0 && out_type != HEARTH_Q4_0)
        return fail(err, "output type %s is not supported (use f32, q8_0 or q4_0)",
                    hearth_type_name(out_type));
    for (uint32_t i = 0; i < src->n_tensors; i++)
        if (check_tensor(&src->tensors[i], err) < 0)
            return -1;
    uint8_t *tok = NULL;
    uint64_t tok_bytes = 0;
    if (vocab_serialize(&src->vocab, &tok, &tok_bytes, err) < 0)
        return -1;
    struct hearth_header h;
    struct hearth_tensor_entry *dir = calloc(src->n_tensors ? src->n_tensors : 1, sizeof *dir);
    char *tmp_path = malloc(strlen(out_path) + 5);
    int rc = -1;
    if (!dir || !tmp_path) {
        fail(err, "out of memory");
        goto done;
    }
    plan_layout(src, out_type, tok_bytes, &h, dir);
    sprintf(tmp_path, "%s.tmp", out_path);
    struct out_file o = {fopen(tmp_path, "wb"), tmp_path, 0, HEARTH_FNV_OFFSET};
    if (!o.f) {
        fail(err, "%s: cannot create: %s", tmp_path, strerror(errno));
        goto done;
    }
    rc = write_body(&o, src, tok, &h, dir, verbose, err);
    if (fclose(o.f) != 0 && rc == 0)
        rc = fail(err, "%s: write failed: %s", tmp_path, strerror(errno));
    if (rc == 0 && rename(tmp_path, out_path) != 0)
        rc = fail(err, "%s: cannot rename to %s: %s", tmp_path, out_path, strerror(errno));
    if (rc != 0)
        unlink(tmp_path);
done:
    free(tok);
    free(dir);
    free(tmp_path);
    return rc;
}
