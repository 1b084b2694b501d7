/* json.c - the strict JSON parser declared in json.h.
 *
 * Grammar: RFC 8259 (value, object, array, number, string, whitespace),
 * text in UTF-8 (RFC 8259 section 8.1) validated per RFC 3629 section 4.
 * The parser is a loop over an explicit stack of open containers, so deep
 * input costs memory bounded by max_depth, never C stack. Children of an open
 * container collect on one growable scratch vector and are copied into the
 * arena, contiguous, when the container closes.
 *
 * Not here: serialization, streaming, comments or any other extension. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "err.h"

/* ---- arena --------------------------------------------------------------- */

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

struct json_doc {
    struct arena_chunk *chunks; /* newest first */
    size_t next_cap;            /* size of the next chunk; doubles up to a limit */
    struct json root;
};

#define ARENA_FIRST_CHUNK ((size_t)64 << 10)
#define ARENA_MAX_CHUNK ((size_t)16 << 20)

/* Returns n bytes aligned to 8 from the arena, or NULL when out of memory. */
static void *arena_alloc(struct json_doc *doc, size_t n)
{
    if (n > SIZE_MAX - 16)
        return NULL;
    n = (n + 7) & ~(size_t)7;
    struct arena_chunk *c = doc->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = doc->next_cap > n ? doc->next_cap : n;
        if (cap > SIZE_MAX - sizeof *c)
            return NULL;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = doc->chunks;
        c->used = 0;
        c->cap = cap;
        doc->chunks = c;
        if (doc->next_cap < ARENA_MAX_CHUNK)
            doc->next_cap *= 2;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

void json_free(struct json_doc *doc)
{
    if (!doc)
        return;
    struct arena_chunk *c = doc->chunks;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(doc);
}

const struct json *json_root(const struct json_doc *doc)
{
    return &doc->root;
}

/* ---- parser state -------------------------------------------------------- */

struct frame {
    uint8_t type;       /* JSON_ARRAY or JSON_OBJECT */
    size_t offset;      /* of the opening bracket */
    size_t first_child; /* index into the scratch vector */
    const char *key;    /* object: key of the member whose value is being parsed */
    size_t key_len;
};

struct parser {
    const unsigned char *s;
    size_t n, pos;
    const char *what;
    char *err;
    struct json_doc *doc;
    struct json_member *scratch; /* children of all open containers */
    size_t n_scratch, cap_scratch;
    struct frame *frames;
    size_t n_frames, cap_frames;
    unsigned max_depth;
};

/* Formats "<what>: <message> at byte N (line L, column C)". Lines and
 * columns count from 1; columns count bytes. Computed only on error. */
static int parse_error(struct parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int parse_error(struct parser *p, size_t at, const char *fmt, ...)
{
    if (!p->err)
        return -1;
    char msg[HEARTH_ERR_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < at && i < p->n; i++) {
        if (p->s[i] == '\n') {
            line++;
            line_start = i + 1;
        }
    }
    return fail(p->err, "%s: %s at byte %zu (line %zu, column %zu)", p->what, msg, at, line,
                at - line_start + 1);
}

static int out_of_memory(struct parser *p)
{
    return parse_error(p, p->pos, "out of memory");
}

static void skip_ws(struct parser *p)
{
    /* RFC 8259 section 2: ws = *( %x20 / %x09 / %x0A / %x0D ) */
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* Describes the byte at pos for messages: "end of input" or 'x' or 0xNN. */
static const char *describe_byte(const struct parser *p, size_t pos, char buf[16])
{
    if (pos >= p->n)
        return "end of input";
    unsigned char c = p->s[pos];
    if (c >= 0x20 && c < 0x7f && c != '\'')
        snprintf(buf, 16, "'%c'", c);
    else
        snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

/* ---- strings ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..avail) (RFC 3629 section 4),
 * or 0 if it is not valid: overlong forms, surrogates and code points above
 * U+10FFFF are rejected. */
static size_t utf8_valid_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(unsigned char *d, unsigned cp)
{
    if (cp < 0x80) {
        d[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (unsigned char)(0xc0 | (cp >> 6));
        d[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (unsigned char)(0xe0 | (cp >> 12));
        d[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        d[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    d[0] = (unsigned char)(0xf0 | (cp >> 18));
    d[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    d[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    d[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes the \u escape at s[pos] (pointing at the backslash) into d.
 * Advances *pos past it (and past a low surrogate that completes a pair). */
static int decode_u_escape(struct parser *p, size_t *pos, unsigned char *d, size_t *d_len)
{
    size_t at = *pos;
    unsigned cp;
    if (p->n - at < 6 || hex4(p->s + at + 2, &cp) < 0)
        return parse_error(p, at, "\\u escape needs four hex digits");
    at += 6;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return parse_error(p, *pos, "lone low surrogate \\u%04X", cp);
    if (cp >= 0xd800 && cp <= 0xdbff) {
        /* RFC 8259 section 7: a character outside the BMP is escaped as a
         * UTF-16 surrogate pair, high (D800-DBFF) then low (DC00-DFFF). */
        unsigned lo;
        if (p->n - at < 6 || p->s[at] != '\\' || p->s[at + 1] != 'u' ||
            hex4(p->s + at + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
            return parse_error(p, *pos, "high surrogate \\u%04X not followed by a low surrogate",
                               cp);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        at += 6;
    }
    *d_len += put_utf8(d + *d_len, cp);
    *pos = at;
    return 0;
}

/* Parses the string whose opening quote is at p->pos into the arena. */
static int parse_string(struct parser *p, const char **out, size_t *out_len)
{
    size_t start = p->pos + 1;
    /* Pass 1: find the closing quote; the raw length bounds the decoded
     * length because every escape decodes to fewer bytes than it spans. */
    size_t end = start;
    while (end < p->n && p->s[end] != '"')
        end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n)
        return parse_error(p, p->pos, "unterminated string");
    unsigned char *d = arena_alloc(p->doc, end - start + 1);
    if (!d)
        return out_of_memory(p);
    /* Pass 2: validate and decode. */
    size_t len = 0, i = start;
    while (i < end) {
        unsigned char c = p->s[i];
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            d[len++] = c;
            i++;
        } else if (c < 0x20) {
            return parse_error(p, i, "control character 0x%02x inside a string (must be escaped)",
                               c);
        } else if (c >= 0x80) {
            size_t k = utf8_valid_len(p->s + i, end - i);
            if (!k)
                return parse_error(p, i, "invalid UTF-8 byte 0x%02x in a string", c);
            memcpy(d + len, p->s + i, k);
            len += k;
            i += k;
        } else {
            unsigned char e = p->s[i + 1];
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *hit = e ? strchr(from, e) : NULL;
            if (hit) {
                d[len++] = (unsigned char)to[hit - from];
                i += 2;
            } else if (e == 'u') {
                if (decode_u_escape(p, &i, d, &len) < 0)
                    return -1;
            } else {
                char buf[16];
                return parse_error(p, i, "invalid escape \\%s", describe_byte(p, i + 1, buf));
            }
        }
    }
    d[len] = 0;
    *out = (const char *)d;
    *out_len = len;
    p->pos = end + 1;
    return 0;
}

/* ---- numbers ------------------------------------------------------------- */

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 8259 section 6: number = [ minus ] int [ frac ] [ exp ] */
static int parse_number(struct parser *p, struct json *v)
{
    size_t start = p->pos, i = start;
    int negative = 0, is_integer = 1;
    if (i < p->n && p->s[i] == '-') {
        negative = 1;
        i++;
    }
    if (i >= p->n || !is_digit(p->s[i]))
        return parse_error(p, i, "a number needs a digit here");
    if (p->s[i] == '0' && i + 1 < p->n && is_digit(p->s[i + 1]))
        return parse_error(p, i, "a number must not have a leading zero");
    uint64_t mag = 0;
    int mag_overflow = 0;
    while (i < p->n && is_digit(p->s[i])) {
        unsigned digit = (unsigned)(p->s[i] - '0');
        if (mag > (UINT64_MAX - digit) / 10)
            mag_overflow = 1;
        else
            mag = mag * 10 + digit;
        i++;
    }
    if (i < p->n && p->s[i] == '.') {
        is_integer = 0;
        i++;
        if (i >= p->n || !is_digit(p->s[i]))
            return parse_error(p, i, "a number needs a digit after '.'");
        while (i < p->n && is_digit(p->s[i]))
            i++;
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        is_integer = 0;
        i++;
        if (i < p->n && (p->s[i] == '+' || p->s[i] == '-'))
            i++;
        if (i >= p->n || !is_digit(p->s[i]))
            return parse_error(p, i, "a number needs a digit in its exponent");
        while (i < p->n && is_digit(p->s[i]))
            i++;
    }
    v->type = JSON_NUMBER;
    v->int_form = 0;
    if (is_integer && !mag_overflow) {
        /* Integer-to-double conversion rounds to nearest, like strtod. */
        v->u.num.d = negative ? -(double)mag : (double)mag;
        if (!negative || mag == 0) {
            v->int_form = JSON_UINT64 | (mag <= (uint64_t)INT64_MAX ? JSON_INT64 : 0);
            v->u.num.int_bits = mag;
        } else if (mag <= (uint64_t)INT64_MAX + 1) {
            v->int_form = JSON_INT64;
            v->u.num.int_bits = (uint64_t)0 - mag; /* two's complement of -mag */
        }
    } else {
        /* strtod needs a NUL-terminated copy: the text may end right here.
         * hearth never calls setlocale, so the decimal point is '.'. */
        size_t len = i - start;
        char small[64], *buf = len < sizeof small ? small : malloc(len + 1);
        if (!buf)
            return out_of_memory(p);
        memcpy(buf, p->s + start, len);
        buf[len] = 0;
        errno = 0;
        double d = strtod(buf, NULL);
        int range = errno == ERANGE;
        if (buf != small)
            free(buf);
        if (range && isinf(d))
            return parse_error(p, start, "number too large for a double");
        v->u.num.d = d;
        /* A non-integer spelling (2.0, 1e3) of an integer small enough to be
         * exact in a double still has an exact integer form. */
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
            int64_t iv = (int64_t)d;
            v->int_form = JSON_INT64 | (iv >= 0 ? JSON_UINT64 : 0);
            v->u.num.int_bits = (uint64_t)iv;
        }
    }
    p->pos = i;
    return 0;
}

/* ---- containers ---------------------------------------------------------- */

static int scratch_push(struct parser *p, const char *key, size_t key_len, const struct json *v)
{
    if (p->n_scratch == p->cap_scratch) {
        size_t cap = p->cap_scratch ? p->cap_scratch * 2 : 256;
        struct json_member *s = realloc(p->scratch, cap * sizeof *s);
        if (!s)
            return out_of_memory(p);
        p->scratch = s;
        p->cap_scratch = cap;
    }
    struct json_member *m = &p->scratch[p->n_scratch++];
    m->key = key;
    m->key_len = key_len;
    m->value = *v;
    return 0;
}

static int push_frame(struct parser *p, uint8_t type)
{
    if (p->n_frames >= p->max_depth)
        return parse_error(p, p->pos, "nesting deeper than %u arrays/objects", p->max_depth);
    if (p->n_frames == p->cap_frames) {
        size_t cap = p->cap_frames ? p->cap_frames * 2 : 16;
        struct frame *f = realloc(p->frames, cap * sizeof *f);
        if (!f)
            return out_of_memory(p);
        p->frames = f;
        p->cap_frames = cap;
    }
    p->frames[p->n_frames++] = (struct frame){type, p->pos, p->n_scratch, NULL, 0};
    p->pos++;
    return 0;
}

/* Objects with more members than this get a hash index; smaller ones are
 * searched linearly. */
#define JSON_LINEAR_MEMBERS 8u

static uint64_t key_hash(const char *key, size_t len)
{
    /* FNV-1a 64 (http://www.isthe.com/chongo/tech/comp/fnv/) */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Power of two at least twice n: the load factor stays at or below 1/2. */
static size_t index_slots(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

static int same_key(const struct json_member *m, const char *key, size_t len)
{
    return m->key_len == len && memcmp(m->key, key, len) == 0;
}

static int duplicate_key(struct parser *p, const struct json_member *m)
{
    return parse_error(p, m->value.offset, "duplicate object key \"%.*s\"",
                       (int)(m->key_len > 80 ? 80 : m->key_len), m->key);
}

/* Builds the hash index of a large object, refusing duplicate keys. */
static int build_index(struct parser *p, struct json *obj, const struct json_member *members)
{
    size_t cap = index_slots(obj->n);
    if (obj->n > UINT32_MAX - 1 || cap > SIZE_MAX / sizeof(uint32_t))
        return parse_error(p, obj->offset, "object has too many members");
    uint32_t *slots = arena_alloc(p->doc, cap * sizeof *slots);
    if (!slots)
        return out_of_memory(p);
    memset(slots, 0, cap * sizeof *slots);
    for (size_t i = 0; i < obj->n; i++) {
        size_t h = (size_t)key_hash(members[i].key, members[i].key_len) & (cap - 1);
        while (slots[h]) {
            if (same_key(&members[slots[h] - 1], members[i].key, members[i].key_len))
                return duplicate_key(p, &members[i]);
            h = (h + 1) & (cap - 1);
        }
        slots[h] = (uint32_t)(i + 1);
    }
    obj->u.obj.index = slots;
    return 0;
}

/* Closes the innermost container (p->pos at its closing bracket): moves its
 * children from the scratch vector into the arena. */
static int close_frame(struct parser *p, struct json *v)
{
    struct frame f = p->frames[--p->n_frames];
    size_t n = p->n_scratch - f.first_child;
    /* (scratch may still be NULL when there are no children) */
    const struct json_member *kids = n ? p->scratch + f.first_child : NULL;
    memset(v, 0, sizeof *v);
    v->type = f.type;
    v->offset = f.offset;
    v->n = n;
    if (f.type == JSON_ARRAY) {
        struct json *items = NULL;
        if (n) {
            if (n > SIZE_MAX / sizeof *items || !(items = arena_alloc(p->doc, n * sizeof *items)))
                return out_of_memory(p);
            for (size_t i = 0; i < n; i++)
                items[i] = kids[i].value;
        }
        v->u.items = items;
    } else {
        struct json_member *members = NULL;
        if (n) {
            if (n > SIZE_MAX / sizeof *members ||
                !(members = arena_alloc(p->doc, n * sizeof *members)))
                return out_of_memory(p);
            memcpy(members, kids, n * sizeof *members);
        }
        v->u.obj.members = members;
        if (n > JSON_LINEAR_MEMBERS) {
            if (build_index(p, v, members) < 0)
                return -1;
        } else {
            for (size_t i = 1; i < n; i++)
                for (size_t j = 0; j < i; j++)
                    if (same_key(&members[j], members[i].key, members[i].key_len))
                        return duplicate_key(p, &members[i]);
        }
    }
    p->n_scratch = f.first_child;
    p->pos++;
    return 0;
}

/* true, false or null at p->pos; v is already zeroed with its offset set. */
static int literal(struct parser *p, const char *word, uint8_t type, struct json *v)
{
    size_t len = strlen(word);
    if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len) != 0) {
        char buf[16];
        return parse_error(p, p->pos, "unexpected %s, expected a value",
                           describe_byte(p, p->pos, buf));
    }
    v->type = type;
    p->pos += len;
    return 0;
}

/* Parses the key string and ':' of a member of the innermost (object)
 * container at p->pos and records the key in its frame. */
static int parse_key(struct parser *p)
{
    struct frame *top = &p->frames[p->n_frames - 1];
    skip_ws(p);
    char buf[16];
    if (p->pos >= p->n || p->s[p->pos] != '"')
        return parse_error(p, p->pos, "expected a string key, found %s",
                           describe_byte(p, p->pos, buf));
    if (parse_string(p, &top->key, &top->key_len) < 0)
        return -1;
    skip_ws(p);
    if (p->pos >= p->n || p->s[p->pos] != ':')
        return parse_error(p, p->pos, "expected ':' after an object key, found %s",
                           describe_byte(p, p->pos, buf));
    p->pos++;
    return 0;
}

/* Parses a scalar (string, number, literal) at p->pos into v. */
static int parse_scalar(struct parser *p, struct json *v)
{
    unsigned char c = p->s[p->pos];
    memset(v, 0, sizeof *v);
    v->offset = p->pos;
    if (c == '"') {
        v->type = JSON_STRING;
        return parse_string(p, &v->u.str, &v->n);
    }
    if (c == '-' || is_digit(c))
        return parse_number(p, v);
    if (c == 't')
        return literal(p, "true", JSON_TRUE, v);
    if (c == 'f')
        return literal(p, "false", JSON_FALSE, v);
    if (c == 'n')
        return literal(p, "null", JSON_NULL, v);
    char buf[16];
    return parse_error(p, p->pos, "unexpected %s, expected a value",
                       describe_byte(p, p->pos, buf));
}

/* Attaches the complete value v to the innermost open container, then
 * consumes the ',' or closing bracket after it. Returns 1 when a new value
 * must be parsed next, 0 when the top-level value is complete (in *root),
 * -1 on error. Closing a container completes it as a value of its parent,
 * so this loops until a ',' or the end of the document. */
static int attach_value(struct parser *p, struct json v, struct json *root)
{
    char buf[16];
    for (;;) {
        if (p->n_frames == 0) {
            *root = v;
            return 0;
        }
        struct frame *top = &p->frames[p->n_frames - 1];
        if (scratch_push(p, top->key, top->key_len, &v) < 0)
            return -1;
        skip_ws(p);
        unsigned char close = top->type == JSON_ARRAY ? ']' : '}';
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            if (top->type == JSON_OBJECT && parse_key(p) < 0)
                return -1;
            return 1;
        }
        if (p->pos >= p->n || p->s[p->pos] != close)
            return parse_error(p, p->pos, "expected ',' or '%c', found %s", close,
                               describe_byte(p, p->pos, buf));
        if (close_frame(p, &v) < 0)
            return -1;
    }
}

/* The main loop: each turn starts one value at p->pos. An opening bracket
 * pushes a frame and the loop goes on with its first child (or closes it
 * at once when empty); anything else is a scalar that attach_value files
 * away, closing whatever containers end after it. */
static int parse_document(struct parser *p, struct json *root)
{
    for (;;) {
        struct json v;
        skip_ws(p);
        if (p->pos >= p->n)
            return parse_error(p, p->pos, "unexpected end of input, expected a value");
        unsigned char c = p->s[p->pos];
        if (c == '[' || c == '{') {
            if (push_frame(p, c == '[' ? JSON_ARRAY : JSON_OBJECT) < 0)
                return -1;
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != (c == '[' ? ']' : '}')) {
                if (c == '{' && parse_key(p) < 0)
                    return -1;
                continue;
            }
            if (close_frame(p, &v) < 0)
                return -1;
        } else if (parse_scalar(p, &v) < 0) {
            return -1;
        }
        int r = attach_value(p, v, root);
        if (r <= 0)
            return r;
    }
}

int json_parse(const char *text, size_t n_bytes, unsigned max_depth, const char *what,
               struct json_doc **out, char *err)
{
    *out = NULL;
    struct json_doc *doc = calloc(1, sizeof *doc);
    if (!doc)
        return fail(err, "%s: out of memory", what);
    doc->next_cap = ARENA_FIRST_CHUNK;
    struct parser p = {.s = (const unsigned char *)text, .n = n_bytes, .what = what,
                       .err = err, .doc = doc, .max_depth = max_depth};
    if (n_bytes >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
        p.pos = 3;
    int rc = parse_document(&p, &doc->root);
    if (rc == 0) {
        skip_ws(&p);
        if (p.pos < p.n) {
            char buf[16];
            rc = parse_error(&p, p.pos, "unexpected %s after the end of the JSON value",
                             describe_byte(&p, p.pos, buf));
        }
    }
    free(p.scratch);
    free(p.frames);
    if (rc < 0) {
        json_free(doc);
        return -1;
    }
    *out = doc;
    return 0;
}

/* ---- access -------------------------------------------------------------- */

const struct json *json_get_n(const struct json *obj, const char *key, size_t key_len)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    const struct json_member *m = obj->u.obj.members;
    if (!obj->u.obj.index) {
        for (size_t i = 0; i < obj->n; i++)
            if (same_key(&m[i], key, key_len))
                return &m[i].value;
        return NULL;
    }
    size_t cap = index_slots(obj->n);
    size_t h = (size_t)key_hash(key, key_len) & (cap - 1);
    for (uint32_t slot; (slot = obj->u.obj.index[h]) != 0; h = (h + 1) & (cap - 1))
        if (same_key(&m[slot - 1], key, key_len))
            return &m[slot - 1].value;
    return NULL;
}

const struct json *json_get(const struct json *obj, const char *key)
{
    return json_get_n(obj, key, strlen(key));
}

size_t json_len(const struct json *v)
{
    return v && (v->type == JSON_ARRAY || v->type == JSON_OBJECT) ? v->n : 0;
}

const struct json *json_at(const struct json *arr, size_t i)
{
    return arr && arr->type == JSON_ARRAY && i < arr->n ? &arr->u.items[i] : NULL;
}

const struct json_member *json_member_at(const struct json *obj, size_t i)
{
    return obj && obj->type == JSON_OBJECT && i < obj->n ? &obj->u.obj.members[i] : NULL;
}

int json_is_string(const struct json *v, const char *s)
{
    size_t len = strlen(s);
    return v && v->type == JSON_STRING && v->n == len && memcmp(v->u.str, s, len) == 0;
}

int json_int64(const struct json *v, int64_t *out)
{
    if (!v || v->type != JSON_NUMBER || !(v->int_form & JSON_INT64))
        return 0;
    /* int_bits holds the two's complement pattern; convert without
     * implementation-defined unsigned-to-signed conversion. */
    uint64_t b = v->u.num.int_bits;
    *out = b <= (uint64_t)INT64_MAX ? (int64_t)b : -(int64_t)(~b) - 1;
    return 1;
}

int json_uint64(const struct json *v, uint64_t *out)
{
    if (!v || v->type != JSON_NUMBER || !(v->int_form & JSON_UINT64))
        return 0;
    *out = v->u.num.int_bits;
    return 1;
}

const char *json_type_name(int type)
{
    static const char *names[] = {"null", "false", "true", "a number", "a string", "an array",
                                  "an object"};
    return type >= 0 && type <= JSON_OBJECT ? names[type] : "an unknown value";
}

/* Shared front half of the getters: finds key and handles absent/null. */
static int member_or_absent(const struct json *obj, const char *what, const char *key, int req,
                            const struct json **v, char *err)
{
    *v = json_get(obj, key);
    if (*v && (*v)->type != JSON_NULL)
        return 1;
    if (req == JSON_OPTIONAL)
        return 0;
    if (*v)
        return fail(err, "%s: \"%s\" is null, a value is required (byte %zu)", what, key,
                    (*v)->offset);
    return fail(err, "%s: \"%s\" is missing", what, key);
}

static int wrong_type(const char *what, const char *key, const char *expected,
                      const struct json *v, char *err)
{
    return fail(err, "%s: \"%s\" must be %s, found %s (byte %zu)", what, key, expected,
                json_type_name(v->type), v->offset);
}

int json_get_int(const struct json *obj, const char *what, const char *key, int req,
                 int64_t lo, int64_t hi, int64_t *out, char *err)
{
    const struct json *v;
    int r = member_or_absent(obj, what, key, req, &v, err);
    if (r <= 0)
        return r;
    int64_t x;
    if (!json_int64(v, &x)) {
        if (v->type == JSON_NUMBER)
            return fail(err, "%s: \"%s\" must be an integer, found %.17g (byte %zu)", what, key,
                        v->u.num.d, v->offset);
        return wrong_type(what, key, "an integer", v, err);
    }
    if (x < lo || x > hi)
        return fail(err, "%s: \"%s\" = %" PRId64 " is outside %" PRId64 "..%" PRId64
                    " (byte %zu)", what, key, x, lo, hi, v->offset);
    *out = x;
    return 1;
}

int json_get_num(const struct json *obj, const char *what, const char *key, int req,
                 double *out, char *err)
{
    const struct json *v;
    int r = member_or_absent(obj, what, key, req, &v, err);
    if (r <= 0)
        return r;
    if (v->type != JSON_NUMBER)
        return wrong_type(what, key, "a number", v, err);
    *out = v->u.num.d;
    return 1;
}

int json_get_bool(const struct json *obj, const char *what, const char *key, int req,
                  int *out, char *err)
{
    const struct json *v;
    int r = member_or_absent(obj, what, key, req, &v, err);
    if (r <= 0)
        return r;
    if (v->type != JSON_TRUE && v->type != JSON_FALSE)
        return wrong_type(what, key, "true or false", v, err);
    *out = v->type == JSON_TRUE;
    return 1;
}

int json_get_typed(const struct json *obj, const char *what, const char *key, int req,
                   int type, const struct json **out, char *err)
{
    const struct json *v;
    int r = member_or_absent(obj, what, key, req, &v, err);
    if (r <= 0)
        return r;
    if (v->type != type)
        return wrong_type(what, key, json_type_name(type), v, err);
    *out = v;
    return 1;
}

/* ---- files --------------------------------------------------------------- */

int json_parse_file(const char *path, uint64_t max_bytes, unsigned max_depth,
                    struct json_doc **out, char *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return fail(err, "%s: %lld bytes is too large for this JSON file (limit %" PRIu64 ")",
                    path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size, done = 0;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return fail(err, "%s: out of memory for %zu bytes", path, n);
    }
    while (done < n) {
        ssize_t got = read(fd, buf + done, n - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        done += (size_t)got;
    }
    close(fd);
    int rc = done == n ? json_parse(buf, n, max_depth, path, out, err)
                       : fail(err, "%s: short read (%zu of %zu bytes)", path, done, n);
    free(buf);
    return rc;
}
