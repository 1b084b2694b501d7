/* exporter/safetensors.c - the safetensors header reader of safetensors.h.
 *
 * Reads only the 8-byte length and the JSON header; validates every entry
 * against the real file size before anyone reads data. Element sizes and the
 * 100 MB header limit follow huggingface/safetensors safetensors/src/tensor.rs
 * (Dtype::size, MAX_HEADER_SIZE). Not here: reading tensor data, conversion. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "../json.h"
#include "../err.h"
#include "../format.h"

static const struct {
    const char *name;
    uint32_t bytes;
} dtypes[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1},        [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1},  [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_I16] = {"I16", 2},          [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},        [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},          [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(uint32_t dtype)
{
    return dtype < ST_N_DTYPES ? dtypes[dtype].name : "?";
}

uint32_t st_dtype_bytes(uint32_t dtype)
{
    return dtype < ST_N_DTYPES ? dtypes[dtype].bytes : 0;
}

uint32_t st_dtype_to_hearth(uint32_t dtype)
{
    switch (dtype) {
    case ST_F32:
        return HEARTH_F32;
    case ST_F16:
        return HEARTH_F16;
    case ST_BF16:
        return HEARTH_BF16;
    default:
        return UINT32_MAX;
    }
}

/* Reads exactly n bytes at offset, retrying short reads. */
static int pread_full(int fd, void *buf, size_t n, uint64_t offset)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t got = pread(fd, p, n, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
    return 0;
}

static int parse_dtype(const struct json *v, const char *path, const char *name, uint32_t *out,
                       char *err)
{
    for (uint32_t i = 0; i < ST_N_DTYPES; i++) {
        if (json_is_string(v, dtypes[i].name)) {
            *out = i;
            return 0;
        }
    }
    return fail(err, "%s: tensor \"%s\": unknown dtype \"%.32s\" (byte %zu of the header)", path,
                name, v->u.str, v->offset);
}

static int parse_shape(const struct json *shape, const char *path, struct st_tensor *t, char *err)
{
    if (shape->n > ST_MAX_DIMS)
        return fail(err, "%s: tensor \"%s\": shape has %zu dimensions, at most %u supported",
                    path, t->name, shape->n, ST_MAX_DIMS);
    t->n_dims = (uint32_t)shape->n;
    t->n_elems = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t dim;
        if (!json_uint64(json_at(shape, d), &dim))
            return fail(err, "%s: tensor \"%s\": shape[%u] is not a non-negative integer "
                        "(byte %zu of the header)", path, t->name, d, json_at(shape, d)->offset);
        t->shape[d] = dim;
        if (dim && t->n_elems > UINT64_MAX / dim)
            return fail(err, "%s: tensor \"%s\": shape product overflows 64 bits", path, t->name);
        t->n_elems *= dim;
    }
    return 0;
}

/* Validates data_offsets against the data buffer size and the shape. */
static int parse_offsets(const struct json *offs, const char *path, uint64_t data_bytes,
                         uint64_t data_offset, struct st_tensor *t, char *err)
{
    uint64_t begin, end;
    if (json_len(offs) != 2 || !json_uint64(json_at(offs, 0), &begin) ||
        !json_uint64(json_at(offs, 1), &end))
        return fail(err, "%s: tensor \"%s\": data_offsets must be two non-negative integers "
                    "(byte %zu of the header)", path, t->name, offs->offset);
    if (begin > end || end > data_bytes)
        return fail(err, "%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64 ") outside "
                    "the %" PRIu64 "-byte data buffer", path, t->name, begin, end, data_bytes);
    uint64_t elem = dtypes[t->dtype].bytes;
    if (t->n_elems > UINT64_MAX / elem || end - begin != t->n_elems * elem)
        return fail(err, "%s: tensor \"%s\": data_offsets span %" PRIu64 " bytes but shape x %s "
                    "needs %" PRIu64 " x %" PRIu64, path, t->name, end - begin,
                    dtypes[t->dtype].name, t->n_elems, elem);
    t->offset = data_offset + begin;
    t->n_bytes = end - begin;
    return 0;
}

static int parse_entry(const struct json_member *m, const char *path, const struct st_file *f,
                       struct st_tensor *t, char *err)
{
    if (memchr(m->key, 0, m->key_len))
        return fail(err, "%s: a tensor name contains a NUL byte (byte %zu of the header)", path,
                    m->value.offset);
    t->name = m->key;
    const struct json *e = &m->value, *dtype, *shape, *offs;
    char what[HEARTH_ERR_BYTES / 2];
    snprintf(what, sizeof what, "%s: tensor \"%.100s\"", path, t->name);
    if (e->type != JSON_OBJECT)
        return fail(err, "%s must be an object, found %s", what, json_type_name(e->type));
    if (json_get_typed(e, what, "dtype", JSON_REQUIRED, JSON_STRING, &dtype, err) < 0 ||
        json_get_typed(e, what, "shape", JSON_REQUIRED, JSON_ARRAY, &shape, err) < 0 ||
        json_get_typed(e, what, "data_offsets", JSON_REQUIRED, JSON_ARRAY, &offs, err) < 0)
        return -1;
    if (parse_dtype(dtype, path, t->name, &t->dtype, err) < 0 ||
        parse_shape(shape, path, t, err) < 0 ||
        parse_offsets(offs, path, f->file_bytes - f->data_offset, f->data_offset, t, err) < 0)
        return -1;
    return 0;
}

static int check_metadata(const struct json *meta, const char *path, char *err)
{
    if (meta->type != JSON_OBJECT)
        return fail(err, "%s: \"__metadata__\" must be an object, found %s", path,
                    json_type_name(meta->type));
    for (size_t i = 0; i < meta->n; i++) {
        const struct json_member *m = json_member_at(meta, i);
        if (m->value.type != JSON_STRING)
            return fail(err, "%s: \"__metadata__\" value of \"%.64s\" must be a string, found %s",
                        path, m->key, json_type_name(m->value.type));
    }
    return 0;
}

static int by_name_cmp(const void *a, const void *b)
{
    const struct st_tensor *x = *(const struct st_tensor *const *)a;
    const struct st_tensor *y = *(const struct st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int by_offset_cmp(const void *a, const void *b)
{
    const struct st_tensor *x = *(const struct st_tensor *const *)a;
    const struct st_tensor *y = *(const struct st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Refuses tensors whose byte ranges overlap (empty tensors excepted).
 * by_offset is scratch space for n_tensors pointers. */
static int check_overlaps(const struct st_file *f, const struct st_tensor **by_offset,
                          const char *path, char *err)
{
    memcpy(by_offset, f->by_name, (size_t)f->n_tensors * sizeof *by_offset);
    qsort(by_offset, f->n_tensors, sizeof *by_offset, by_offset_cmp);
    const struct st_tensor *prev = NULL;
    for (uint32_t i = 0; i < f->n_tensors; i++) {
        const struct st_tensor *t = by_offset[i];
        if (!t->n_bytes)
            continue;
        if (prev && t->offset < prev->offset + prev->n_bytes)
            return fail(err, "%s: tensors \"%s\" and \"%s\" overlap in the data buffer", path,
                        prev->name, t->name);
        prev = t;
    }
    return 0;
}

static int read_header(struct st_file *f, const char *path, char *err)
{
    unsigned char len_bytes[8];
    if (f->file_bytes < 8 || pread_full(f->fd, len_bytes, 8, 0) < 0)
        return fail(err, "%s: too short for a safetensors file (%" PRIu64 " bytes)", path,
                    f->file_bytes);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | len_bytes[i];
    if (n > ST_MAX_HEADER_BYTES)
        return fail(err, "%s: safetensors header length %" PRIu64 " exceeds the %llu-byte limit "
                    "(not a safetensors file?)", path, n, ST_MAX_HEADER_BYTES);
    if (n > f->file_bytes - 8)
        return fail(err, "%s: safetensors header length %" PRIu64 " runs past the end of the "
                    "%" PRIu64 "-byte file", path, n, f->file_bytes);
    f->data_offset = 8 + n;
    char *text = malloc(n ? n : 1);
    if (!text)
        return fail(err, "%s: out of memory for a %" PRIu64 "-byte header", path, n);
    if (pread_full(f->fd, text, n, 8) < 0) {
        free(text);
        return fail(err, "%s: cannot read the safetensors header: %s", path, strerror(errno));
    }
    int rc = json_parse(text, n, 16, path, &f->header, err);
    free(text);
    if (rc < 0)
        return -1;
    const struct json *root = json_root(f->header);
    if (root->type != JSON_OBJECT)
        return fail(err, "%s: the safetensors header must be a JSON object, found %s", path,
                    json_type_name(root->type));
    return 0;
}

static int parse_entries(struct st_file *f, const char *path, char *err)
{
    const struct json *root = json_root(f->header);
    f->tensors = calloc(root->n + 1, sizeof *f->tensors);
    f->by_name = calloc(root->n + 1, sizeof *f->by_name);
    const struct st_tensor **scratch = calloc(root->n + 1, sizeof *scratch);
    int rc = -1;
    if (!f->tensors || !f->by_name || !scratch) {
        fail(err, "%s: out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < root->n; i++) {
        const struct json_member *m = json_member_at(root, i);
        if (m->key_len == 12 && !memcmp(m->key, "__metadata__", 12)) {
            if (check_metadata(&m->value, path, err) < 0)
                goto out;
            continue;
        }
        if (parse_entry(m, path, f, &f->tensors[f->n_tensors], err) < 0)
            goto out;
        f->by_name[f->n_tensors] = &f->tensors[f->n_tensors];
        f->n_tensors++;
    }
    qsort(f->by_name, f->n_tensors, sizeof *f->by_name, by_name_cmp);
    rc = check_overlaps(f, scratch, path, err);
out:
    free(scratch);
    return rc;
}

int st_open(struct st_file *f, const char *path, char *err)
{
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        st_close(f);
        return fail(err, "%s: not a regular file", path);
    }
    f->file_bytes = (uint64_t)st.st_size;
    if (read_header(f, path, err) < 0 || parse_entries(f, path, err) < 0) {
        st_close(f);
        return -1;
    }
    return 0;
}

void st_close(struct st_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    json_free(f->header);
    free(f->tensors);
    free((void *)f->by_name);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

int st_take_fd(struct st_file *f)
{
    int fd = f->fd;
    f->fd = -1;
    return fd;
}

const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct st_tensor *t = f->by_name[mid];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
