/* exporter/protobuf.h - a minimal reader of the protobuf wire format, enough
 * to walk the fields of a message held in memory. It decodes tags, varints,
 * fixed32/fixed64 and length-delimited payloads and checks every length
 * against the buffer; it knows no schema (callers interpret field numbers)
 * and does not support the deprecated group wire types.
 *
 * Wire format: https://protobuf.dev/programming-guides/encoding/ - a field is
 * a varint key (field_number << 3 | wire_type) followed by its payload;
 * wire types 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 (3 and 4 are
 * groups). Varints are little-endian groups of 7 bits, at most 10 bytes. */
#ifndef HEARTH_PROTOBUF_H
#define HEARTH_PROTOBUF_H

#include <stddef.h>
#include <stdint.h>

enum pb_wire {
    PB_VARINT = 0,
    PB_FIXED64 = 1,
    PB_LEN = 2,
    PB_FIXED32 = 5,
};

/* A view of one message: bytes [0, n) of data, which start at file offset
 * base (for error messages). path names the file in messages. */
struct pb_reader {
    const uint8_t *data;
    size_t n;
    size_t pos;
    uint64_t base;
    const char *path;
};

/* One decoded field. For PB_LEN, data/len is the payload; otherwise value
 * holds the varint or the fixed-width little-endian integer. offset is the
 * file offset of the field's key. */
struct pb_field {
    uint32_t number;
    uint32_t wire;
    uint64_t value;
    const uint8_t *data;
    size_t len;
    uint64_t offset;
};

void pb_reader_init(struct pb_reader *r, const void *data, size_t n, uint64_t base,
                    const char *path);

/* A reader over the payload of a PB_LEN field f read from r. */
void pb_reader_sub(struct pb_reader *sub, const struct pb_reader *r, const struct pb_field *f);

/* Reads the next field: 1 on success, 0 at the end of the message, -1 with
 * err set on malformed input (naming path, what and the file offset). */
int pb_next(struct pb_reader *r, struct pb_field *f, char *err);

/* Checks f has the wire type a schema field needs; -1 with err otherwise.
 * what names the field in the message, e.g. "SentencePiece.score". */
int pb_expect_wire(const struct pb_reader *r, const struct pb_field *f, uint32_t wire,
                   const char *what, char *err);

#endif
