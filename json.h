/* json.h - a strict RFC 8259 JSON parser that builds a read-only
 * tree, for config.json, tokenizer.json, safetensors headers (export) and chat
 * messages (run).
 *
 * What it does: parses a whole buffer or file (no streaming), keeps object members in
 * file order, looks members up by key (hashed for large objects), decodes
 * \u escapes (surrogate pairs to UTF-8; a lone surrogate is an error), keeps
 * string lengths so strings may contain NUL, keeps every number as a double
 * plus an exact 64-bit integer when the number is an integer. Nesting depth is
 * bounded by the caller; the parser never recurses. Every parse error names
 * the byte offset and line.
 *
 * What it does not do: write JSON, modify a tree, accept extensions (comments,
 * trailing commas, NaN, single quotes). Duplicate keys in one object are an
 * error: RFC 8259 section 4 leaves their meaning to the implementation
 * (some parsers keep the first, some the last), and a file that means
 * different things to different readers is refused rather than guessed at.
 * Numbers whose magnitude overflows a double are an error; numbers that
 * underflow become 0 or a subnormal, as strtod rounds them.
 *
 * All memory of a parsed document lives in one arena freed by json_free;
 * pointers into the tree stay valid until then. */
#ifndef HEARTH_JSON_H
#define HEARTH_JSON_H

#include <stddef.h>
#include <stdint.h>

enum json_type {
    JSON_NULL = 0,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

/* json.int_form bits: which exact integer forms a NUMBER has. */
#define JSON_INT64 0x1u  /* int_bits read as int64_t is the exact value */
#define JSON_UINT64 0x2u /* int_bits read as uint64_t is the exact value */

struct json_member;

struct json {
    uint8_t type;       /* enum json_type */
    uint8_t int_form;   /* NUMBER: JSON_INT64 | JSON_UINT64, 0 if not an integer */
    size_t offset;      /* byte offset of the value's first character in the text */
    size_t n;           /* STRING: bytes; ARRAY: items; OBJECT: members; else 0 */
    union {
        struct {
            double d;            /* the value, correctly rounded */
            uint64_t int_bits;   /* exact integer value when int_form != 0 */
        } num;
        const char *str;         /* n bytes, NUL-terminated after them, may hold NUL */
        const struct json *items;
        struct {
            const struct json_member *members;
            const uint32_t *index; /* hash slots (member index + 1), NULL for small objects */
        } obj;
    } u;
};

struct json_member {
    const char *key;    /* key_len bytes, NUL-terminated after them */
    size_t key_len;
    struct json value;
};

struct json_doc;

/* Default depth limit for callers with no reason to choose another. */
#define JSON_DEFAULT_MAX_DEPTH 256u

/* Parses text[0 .. n_bytes) (need not be NUL-terminated) as one JSON value.
 * Nesting deeper than max_depth arrays/objects is an error. `what` names the
 * input in messages (usually the file path). A leading UTF-8 byte order mark
 * is skipped (RFC 8259 section 8.1 allows that). Returns 0 with *out set, or
 * -1 with err holding "<what>: <problem> at byte N (line L, column C)". */
int json_parse(const char *text, size_t n_bytes, unsigned max_depth, const char *what,
               struct json_doc **out, char *err);
const struct json *json_root(const struct json_doc *doc);
void json_free(struct json_doc *doc);

/* Reads the regular file at path (at most max_bytes long) and parses it as
 * json_parse does, with path as `what`. */
int json_parse_file(const char *path, uint64_t max_bytes, unsigned max_depth,
                    struct json_doc **out, char *err);

/* Tree access; all return NULL / 0 for a value of the wrong type. */
const struct json *json_get(const struct json *obj, const char *key);
const struct json *json_get_n(const struct json *obj, const char *key, size_t key_len);
size_t json_len(const struct json *v);            /* array items or object members */
const struct json *json_at(const struct json *arr, size_t i);
const struct json_member *json_member_at(const struct json *obj, size_t i);
int json_is_string(const struct json *v, const char *s); /* equal to the C string s */

/* Exact integer forms of a NUMBER; return 1 and set *out when v has one. */
int json_int64(const struct json *v, int64_t *out);
int json_uint64(const struct json *v, uint64_t *out);

const char *json_type_name(int type);

/* Typed member getters for objects read from a file named `what`.
 * Return 1 when the member is present with the right type (and in range),
 * 0 when it is absent or null and req is JSON_OPTIONAL (outputs untouched),
 * -1 with err naming `what`, the key, what was expected and what was found
 * (with its byte offset) otherwise, including absent/null when JSON_REQUIRED. */
#define JSON_OPTIONAL 0
#define JSON_REQUIRED 1
int json_get_int(const struct json *obj, const char *what, const char *key, int req,
                 int64_t lo, int64_t hi, int64_t *out, char *err);
int json_get_num(const struct json *obj, const char *what, const char *key, int req,
                 double *out, char *err);
int json_get_bool(const struct json *obj, const char *what, const char *key, int req,
                  int *out, char *err);
/* STRING, ARRAY or OBJECT member: *out points at the value. */
int json_get_typed(const struct json *obj, const char *what, const char *key, int req,
                   int type, const struct json **out, char *err);

#endif
