/* exporter/protobuf.c - protobuf wire-format field walker (see protobuf.h).
 * Every length is checked against the bytes left in the message before it is
 * used; nothing is allocated. It does not interpret any schema. */
#include "protobuf.h"

#include <inttypes.h>
#include "../err.h"

/* Largest valid field number: 2^29 - 1 (protobuf encoding guide, "Message
 * Structure": field numbers are 29-bit). */
#define PB_MAX_FIELD_NUMBER 0x1fffffffu
#define PB_MAX_VARINT_BYTES 10

void pb_reader_init(struct pb_reader *r, const void *data, size_t n, uint64_t base,
                    const char *path)
{
    r->data = data;
    r->n = n;
    r->pos = 0;
    r->base = base;
    r->path = path;
}

void pb_reader_sub(struct pb_reader *sub, const struct pb_reader *r, const struct pb_field *f)
{
    uint64_t payload_offset = r->base + (uint64_t)(f->data - r->data);
    pb_reader_init(sub, f->data, f->len, payload_offset, r->path);
}

static uint64_t file_offset(const struct pb_reader *r)
{
    return r->base + r->pos;
}

/* Decodes a varint at r->pos: at most 10 bytes, and the 10th may only carry
 * bit 63. */
static int read_varint(struct pb_reader *r, uint64_t *out, const char *what, char *err)
{
    uint64_t start = file_offset(r), v = 0;
    for (int i = 0;; i++) {
        if (r->pos >= r->n)
            return fail(err, "%s: truncated varint (%s) at offset %" PRIu64, r->path, what,
                        start);
        uint8_t b = r->data[r->pos++];
        if (i == PB_MAX_VARINT_BYTES - 1 && (b & 0x80))
            return fail(err, "%s: varint (%s) at offset %" PRIu64 " is longer than 10 bytes",
                        r->path, what, start);
        if (i == PB_MAX_VARINT_BYTES - 1 && b > 1)
            return fail(err, "%s: varint (%s) at offset %" PRIu64 " overflows 64 bits",
                        r->path, what, start);
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
}

static int read_fixed(struct pb_reader *r, size_t width, uint64_t *out, char *err)
{
    if (r->n - r->pos < width)
        return fail(err, "%s: truncated fixed%zu value at offset %" PRIu64, r->path, width * 8,
                    file_offset(r));
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v |= (uint64_t)r->data[r->pos + i] << (8 * i);
    r->pos += width;
    *out = v;
    return 0;
}

int pb_next(struct pb_reader *r, struct pb_field *f, char *err)
{
    if (r->pos >= r->n)
        return 0;
    f->offset = file_offset(r);
    uint64_t key;
    if (read_varint(r, &key, "field key", err) < 0)
        return -1;
    uint64_t number = key >> 3;
    f->wire = (uint32_t)(key & 7);
    if (number == 0 || number > PB_MAX_FIELD_NUMBER)
        return fail(err, "%s: invalid field number %" PRIu64 " at offset %" PRIu64, r->path,
                    number, f->offset);
    f->number = (uint32_t)number;
    f->data = NULL;
    f->len = 0;
    f->value = 0;
    switch (f->wire) {
    case PB_VARINT:
        return read_varint(r, &f->value, "field value", err) < 0 ? -1 : 1;
    case PB_FIXED64:
        return read_fixed(r, 8, &f->value, err) < 0 ? -1 : 1;
    case PB_FIXED32:
        return read_fixed(r, 4, &f->value, err) < 0 ? -1 : 1;
    case PB_LEN: {
        uint64_t len;
        if (read_varint(r, &len, "length", err) < 0)
            return -1;
        if (len > r->n - r->pos)
            return fail(err,
                        "%s: field %u at offset %" PRIu64 " has length %" PRIu64
                        " but only %zu bytes remain in its message",
                        r->path, f->number, f->offset, len, r->n - r->pos);
        f->data = r->data + r->pos;
        f->len = (size_t)len;
        r->pos += (size_t)len;
        return 1;
    }
    default:
        return fail(err, "%s: field %u at offset %" PRIu64 " has unsupported wire type %u",
                    r->path, f->number, f->offset, f->wire);
    }
}

int pb_expect_wire(const struct pb_reader *r, const struct pb_field *f, uint32_t wire,
                   const char *what, char *err)
{
    if (f->wire == wire)
        return 0;
    return fail(err, "%s: %s (field %u) at offset %" PRIu64 " has wire type %u, expected %u",
                r->path, what, f->number, f->offset, f->wire, wire);
}
