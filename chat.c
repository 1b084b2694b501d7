/* chat.c - hearth's built-in chat templates: names, recognition of a
 * model's Jinja chat_template, parsing of OpenAI-style message lists, and
 * rendering (chat.h).
 *
 * Each renderer follows its family's Jinja template statement by statement
 * (the templates are in tests/data/chat/templates/, their sources in
 * tests/data/chat/INDEX.tsv), as transformers' apply_chat_template runs it:
 * trim_blocks and lstrip_blocks on, bos_token / eos_token set to the
 * model's strings, no tools, no custom variables. Python's str.strip() and
 * Jinja's trim filter remove the characters str.isspace() accepts; both are
 * implemented here for UTF-8.
 *
 * What it does not do: evaluate Jinja (a template outside these families is
 * reported as unrecognised, never approximated), tool calls or tool
 * messages, tokenization, I/O. */
#include "chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "json.h"
#include "tokenizer.h"

/* ---- the families ------------------------------------------------------- */

struct emitter;
struct family;
typedef int (*render_fn)(struct emitter *e, const struct family *f,
                         const struct chat_message *m, size_t n, int agp, char *err);

struct family {
    const char *name;
    const char *bos, *eos;       /* what the template gets as bos_token / eos_token */
    const char *end_of_turn;     /* the token that closes an assistant turn */
    const char *default_system;  /* ChatML-style families: system text used when none is given */
    render_fn render;
};

static int render_llama2(struct emitter *, const struct family *, const struct chat_message *,
                         size_t, int, char *);
static int render_llama3(struct emitter *, const struct family *, const struct chat_message *,
                         size_t, int, char *);
static int render_llama3_1(struct emitter *, const struct family *, const struct chat_message *,
                           size_t, int, char *);
static int render_mistral_legacy(struct emitter *, const struct family *,
                                 const struct chat_message *, size_t, int, char *);
static int render_mistral_v02(struct emitter *, const struct family *,
                              const struct chat_message *, size_t, int, char *);
static int render_mistral_v03(struct emitter *, const struct family *,
                              const struct chat_message *, size_t, int, char *);
static int render_zephyr(struct emitter *, const struct family *, const struct chat_message *,
                         size_t, int, char *);
static int render_chatml(struct emitter *, const struct family *, const struct chat_message *,
                         size_t, int, char *);

/* bos/eos strings: INDEX.tsv columns 6 and 7 (the models' tokenizer
 * configs). Zephyr, ChatML, SmolLM2 and Qwen2.5 templates use no bos_token;
 * ChatML-style templates write <|im_end|> themselves. Default system texts:
 * the templates' own (smollm2.jinja, qwen2_5.jinja). */
static const struct family FAMILIES[HEARTH_CHAT_COUNT] = {
    [HEARTH_CHAT_LLAMA2] = {"llama2", "<s>", "</s>", "</s>", NULL, render_llama2},
    [HEARTH_CHAT_LLAMA3] = {"llama3", "<|begin_of_text|>", NULL, "<|eot_id|>", NULL,
                            render_llama3},
    [HEARTH_CHAT_LLAMA3_1] = {"llama3_1", "<|begin_of_text|>", NULL, "<|eot_id|>", NULL,
                              render_llama3_1},
    [HEARTH_CHAT_MISTRAL_LEGACY] = {"mistral_legacy", "<s>", "</s>", "</s>", NULL,
                                    render_mistral_legacy},
    [HEARTH_CHAT_MISTRAL_V02] = {"mistral_v02", "<s>", "</s>", "</s>", NULL, render_mistral_v02},
    [HEARTH_CHAT_MISTRAL_V03] = {"mistral_v03", "<s>", "</s>", "</s>", NULL, render_mistral_v03},
    [HEARTH_CHAT_ZEPHYR] = {"zephyr", NULL, "</s>", "</s>", NULL, render_zephyr},
    [HEARTH_CHAT_CHATML] = {"chatml", NULL, NULL, "<|im_end|>", NULL, render_chatml},
    [HEARTH_CHAT_SMOLLM2] = {"smollm2", NULL, NULL, "<|im_end|>",
                             "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                             render_chatml},
    [HEARTH_CHAT_QWEN2_5] = {"qwen2_5", NULL, NULL, "<|im_end|>",
                             "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                             render_chatml},
};

static const struct family *family_of(uint32_t id)
{
    return id > HEARTH_CHAT_NONE && id < HEARTH_CHAT_COUNT ? &FAMILIES[id] : NULL;
}

const char *chat_template_name(uint32_t id)
{
    if (id == HEARTH_CHAT_NONE)
        return "none";
    const struct family *f = family_of(id);
    return f ? f->name : NULL;
}

int chat_template_by_name(const char *name)
{
    for (uint32_t id = 1; name && id < HEARTH_CHAT_COUNT; id++)
        if (!strcmp(name, FAMILIES[id].name))
            return (int)id;
    return -1;
}

const char *chat_template_names(void)
{
    /* In id order; tests/test_chat.c checks it against FAMILIES. */
    return "llama2, llama3, llama3_1, mistral_legacy, mistral_v02, mistral_v03, zephyr, chatml, "
           "smollm2, qwen2_5";
}

const char *chat_template_bos(uint32_t id)
{
    const struct family *f = family_of(id);
    /* FAMILIES gives a bos string only to families whose template writes
     * bos_token (Zephyr's, given "<s>" in INDEX.tsv, never uses it). */
    return f ? f->bos : NULL;
}

const char *chat_template_end_of_turn(uint32_t id)
{
    const struct family *f = family_of(id);
    return f ? f->end_of_turn : NULL;
}

/* ---- recognising a template --------------------------------------------- */

static int has(const char *t, size_t n, const char *s)
{
    return memmem(t, n, s, strlen(s)) != NULL;
}

/* Whether t holds the Jinja string literal s, in single or double quotes:
 * spacing inside a literal is output, so "'[INST] '" and "' [INST] '" are
 * different templates. */
static int has_literal(const char *t, size_t n, const char *s)
{
    char quoted[64];
    size_t len = strlen(s);
    if (len + 2 > sizeof quoted)
        return 0;
    memcpy(quoted + 1, s, len);
    quoted[0] = quoted[len + 1] = '\'';
    if (memmem(t, n, quoted, len + 2))
        return 1;
    quoted[0] = quoted[len + 1] = '"';
    return memmem(t, n, quoted, len + 2) != NULL;
}

/* Rules, first match wins. Each looks only at literal text that decides the
 * output, so that a template which would render differently from the family
 * it resembles gets HEARTH_CHAT_NONE (the user can still pick one with
 * --template) rather than a silently wrong prompt.
 *
 * 1. <|start_header_id|>: Llama 3 headers. "Cutting Knowledge Date" is the
 *    system preamble the 3.1 template writes into every prompt -> llama3_1
 *    (3.2 and 3.3 templates have it too; they compute the date themselves,
 *    hearth writes the 3.1 default "26 Jul 2024"). Without it and with
 *    <|eot_id|> -> llama3 (the original Meta-Llama-3 template).
 * 2. <|im_start|>: ChatML. "<think>" marks reasoning templates (Qwen3,
 *    QwQ) that rewrite assistant turns -> none. Qwen2.5's and SmolLM2's
 *    default system texts name those families. Any other literal
 *    "<|im_start|>system" is a default system turn hearth does not know the
 *    text of (Qwen2-Instruct's, for one) -> none. Otherwise plain ChatML
 *    (every turn written as given, no default system message).
 * 3. <|user|> with <|assistant|>: Zephyr turns, each closed by eos_token.
 *    Phi-3 uses the same role markers but closes turns with <|end|> -> none.
 * 4. [INST]: the Llama 2 / Mistral family.
 *    - <<SYS>> is Llama 2's system block -> llama2.
 *    - [AVAILABLE_TOOLS] is Mistral v0.3's. The mid-2024 revision (the
 *      reference) drops system messages; later revisions keep one in a
 *      system_message variable and put it into the last user turn, a format
 *      hearth does not implement -> none.
 *    - the literal " [INST] " (leading space) with a system_message is the
 *      2024 v0.2 template -> mistral_v02.
 *    - the literal "[INST] " (no leading space), no system handling, the
 *      "Only user and assistant roles are supported!" check: the original
 *      Mistral/Mixtral template -> mistral_legacy, unless each assistant
 *      turn ends in eos_token + ' ' (Mistral-7B-Instruct-v0.1's variant,
 *      one space different) -> none. */
int chat_template_detect(const char *t, size_t n)
{
    if (!t || n == 0)
        return HEARTH_CHAT_NONE;
    if (has(t, n, "<|start_header_id|>")) {
        if (has(t, n, "Cutting Knowledge Date"))
            return HEARTH_CHAT_LLAMA3_1;
        return has(t, n, "<|eot_id|>") ? HEARTH_CHAT_LLAMA3 : HEARTH_CHAT_NONE;
    }
    if (has(t, n, "<|im_start|>")) {
        if (has(t, n, "<think>"))
            return HEARTH_CHAT_NONE;
        if (has(t, n, FAMILIES[HEARTH_CHAT_QWEN2_5].default_system))
            return HEARTH_CHAT_QWEN2_5;
        if (has(t, n, FAMILIES[HEARTH_CHAT_SMOLLM2].default_system))
            return HEARTH_CHAT_SMOLLM2;
        return has(t, n, "<|im_start|>system") ? HEARTH_CHAT_NONE : HEARTH_CHAT_CHATML;
    }
    if (has(t, n, "<|user|>") && has(t, n, "<|assistant|>")) {
        if (has(t, n, "<|end|>"))
            return HEARTH_CHAT_NONE;
        return has(t, n, "eos_token") ? HEARTH_CHAT_ZEPHYR : HEARTH_CHAT_NONE;
    }
    if (!has(t, n, "[INST]"))
        return HEARTH_CHAT_NONE;
    if (has(t, n, "<<SYS>>"))
        return HEARTH_CHAT_LLAMA2;
    int system_message = has(t, n, "system_message");
    if (has(t, n, "[AVAILABLE_TOOLS]"))
        return system_message ? HEARTH_CHAT_NONE : HEARTH_CHAT_MISTRAL_V03;
    if (has_literal(t, n, " [INST] "))
        return system_message ? HEARTH_CHAT_MISTRAL_V02 : HEARTH_CHAT_NONE;
    int eos_space = has(t, n, "eos_token + ' '") || has(t, n, "eos_token + \" \"") ||
                    has(t, n, "eos_token+' '") || has(t, n, "eos_token+\" \"");
    if (has_literal(t, n, "[INST] ") && has(t, n, "Only user and assistant roles are supported!") &&
        !system_message && !eos_space)
        return HEARTH_CHAT_MISTRAL_LEGACY;
    return HEARTH_CHAT_NONE;
}

/* ---- parsing messages --------------------------------------------------- */

static const char *const ROLES[] = {"system", "user", "assistant"};

static int role_is(const struct chat_message *m, const char *role)
{
    size_t n = strlen(role);
    return m->role && m->role_len == n && !memcmp(m->role, role, n);
}

static int role_known(const struct chat_message *m)
{
    for (size_t i = 0; i < sizeof ROLES / sizeof ROLES[0]; i++)
        if (role_is(m, ROLES[i]))
            return 1;
    return 0;
}

/* One {"role", "content"} object into *m. */
static int message_from_json(const struct json *item, size_t i, struct chat_message *m, char *err)
{
    if (item->type != JSON_OBJECT)
        return fail(err, "messages[%zu]: expected an object with \"role\" and \"content\", found "
                    "%s (byte %zu)", i, json_type_name(item->type), item->offset);
    const struct json *role = NULL, *content = NULL;
    for (size_t k = 0; k < item->n; k++) {
        const struct json_member *mb = json_member_at(item, k);
        if (!strcmp(mb->key, "role") && mb->key_len == 4)
            role = &mb->value;
        else if (!strcmp(mb->key, "content") && mb->key_len == 7)
            content = &mb->value;
        else
            return fail(err, "messages[%zu]: unexpected field \"%.64s\" (byte %zu); only \"role\" "
                        "and \"content\" are supported", i, mb->key, mb->value.offset);
    }
    if (!role || !content)
        return fail(err, "messages[%zu]: \"%s\" is missing", i, role ? "content" : "role");
    if (role->type != JSON_STRING)
        return fail(err, "messages[%zu].role: expected a string, found %s (byte %zu)", i,
                    json_type_name(role->type), role->offset);
    *m = (struct chat_message){role->u.str, role->n, NULL, 0};
    if (!role_known(m))
        return fail(err, "messages[%zu].role \"%.32s\" is not supported (system, user or "
                    "assistant)", i, role->u.str);
    if (content->type == JSON_ARRAY)
        return fail(err, "messages[%zu].content: content parts (an array, byte %zu) are not "
                    "supported; send the text as a string", i, content->offset);
    if (content->type != JSON_STRING)
        return fail(err, "messages[%zu].content: expected a string, found %s (byte %zu)", i,
                    json_type_name(content->type), content->offset);
    const char *nul = memchr(content->u.str, 0, content->n);
    if (nul)
        return fail(err, "messages[%zu].content holds a NUL character (at character byte %zu of "
                    "the string)", i, (size_t)(nul - content->u.str));
    m->content = content->u.str;
    m->content_len = content->n;
    return 0;
}

int chat_messages_from_json(const struct json *array, struct chat_message **msgs,
                            size_t *n_msgs, char *err)
{
    *msgs = NULL;
    *n_msgs = 0;
    if (!array || array->type != JSON_ARRAY)
        return fail(err, "messages: expected a JSON array of {\"role\", \"content\"} objects, "
                    "found %s", array ? json_type_name(array->type) : "nothing");
    if (array->n == 0)
        return fail(err, "messages: the array is empty");
    struct chat_message *m = calloc(array->n, sizeof *m);
    if (!m)
        return fail(err, "messages: out of memory for %zu messages", array->n);
    for (size_t i = 0; i < array->n; i++) {
        if (message_from_json(json_at(array, i), i, &m[i], err) < 0) {
            free(m);
            return -1;
        }
    }
    *msgs = m;
    *n_msgs = array->n;
    return 0;
}

/* Messages nest two levels (array, object); a little room beyond that lets
 * a deeper value reach the type checks and get their message. */
#define CHAT_JSON_MAX_DEPTH 8u

int chat_parse_messages(const char *json_text, size_t n, struct chat_conversation *out,
                        char *err)
{
    memset(out, 0, sizeof *out);
    if (json_parse(json_text, n, CHAT_JSON_MAX_DEPTH, "messages", &out->doc, err) < 0) {
        out->doc = NULL;
        return -1;
    }
    if (chat_messages_from_json(json_root(out->doc), &out->msgs, &out->n_msgs, err) < 0) {
        chat_conversation_free(out);
        return -1;
    }
    return 0;
}

void chat_conversation_free(struct chat_conversation *c)
{
    free(c->msgs);
    json_free(c->doc);
    memset(c, 0, sizeof *c);
}

/* ---- the prompt buffer -------------------------------------------------- */

void chat_prompt_init(struct chat_prompt *p)
{
    memset(p, 0, sizeof *p);
}

void chat_prompt_free(struct chat_prompt *p)
{
    free(p->text);
    free(p->spans);
    memset(p, 0, sizeof *p);
}

/* Appends to the prompt; after the first failure (out of memory) it does
 * nothing and render reports the failure once. */
struct emitter {
    struct chat_prompt *out;
    int oom;
};

static int grow_text(struct chat_prompt *p, size_t n)
{
    if (n > SIZE_MAX / 2 - p->n_bytes - 1)
        return -1;
    size_t need = p->n_bytes + n + 1;
    if (need <= p->cap)
        return 0;
    size_t cap = p->cap ? p->cap : 256;
    while (cap < need)
        cap *= 2;
    char *text = realloc(p->text, cap);
    if (!text)
        return -1;
    p->text = text;
    p->cap = cap;
    return 0;
}

static int grow_spans(struct chat_prompt *p)
{
    if (p->n_spans < p->cap_spans)
        return 0;
    size_t cap = p->cap_spans ? p->cap_spans * 2 : 32;
    if (cap > SIZE_MAX / sizeof *p->spans)
        return -1;
    struct chat_span *spans = realloc(p->spans, cap * sizeof *spans);
    if (!spans)
        return -1;
    p->spans = spans;
    p->cap_spans = cap;
    return 0;
}

static void emit(struct emitter *e, const char *s, size_t n, int is_content)
{
    struct chat_prompt *p = e->out;
    if (n == 0 || e->oom)
        return;
    int extend = p->n_spans && p->spans[p->n_spans - 1].is_content == is_content;
    if (grow_text(p, n) < 0 || (!extend && grow_spans(p) < 0)) {
        e->oom = 1;
        return;
    }
    if (extend)
        p->spans[p->n_spans - 1].n_bytes += n;
    else
        p->spans[p->n_spans++] = (struct chat_span){p->n_bytes, n, is_content};
    memcpy(p->text + p->n_bytes, s, n);
    p->n_bytes += n;
    p->text[p->n_bytes] = 0;
}

static void tmpl(struct emitter *e, const char *s)
{
    if (s)
        emit(e, s, strlen(s), 0);
}

static void role_text(struct emitter *e, const struct chat_message *m)
{
    emit(e, m->role, m->role_len, 0);
}

static void content(struct emitter *e, const struct chat_message *m)
{
    emit(e, m->content, m->content_len, 1);
}

/* ---- whitespace, as Python's str.isspace() ------------------------------ */

/* Python: a character is whitespace when its general category is Zs or its
 * bidirectional class is WS, B or S (docs.python.org, str.isspace), which
 * is this set. */
static int is_space_cp(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The code point of the well-formed UTF-8 sequence that is exactly
 * s[0..n), or UINT32_MAX. Only sequences up to 3 bytes can be whitespace. */
static uint32_t decode_exact(const unsigned char *s, size_t n)
{
    if (n == 1 && s[0] < 0x80)
        return s[0];
    if (n == 2 && s[0] >= 0xc2 && s[0] <= 0xdf && (s[1] & 0xc0) == 0x80)
        return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    if (n == 3 && (s[0] & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80) {
        uint32_t c = (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
        return c >= 0x800 ? c : UINT32_MAX;
    }
    return UINT32_MAX;
}

/* Bytes of the whitespace character starting s[0..n), 0 if there is none. */
static size_t space_at_start(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t c = decode_exact(s, len);
    return c != UINT32_MAX && is_space_cp(c) ? len : 0;
}

/* Bytes of the whitespace character ending s[0..n), 0 if there is none. */
static size_t space_at_end(const unsigned char *s, size_t n)
{
    for (size_t len = 1; len <= 3 && len <= n; len++) {
        uint32_t c = decode_exact(s + n - len, len);
        if (c != UINT32_MAX)
            return is_space_cp(c) ? len : 0;
    }
    return 0;
}

/* A piece of output before it is written: strip() applies to strings that
 * the template builds from template text and content together. */
struct seg {
    const char *p;
    size_t n;
    int is_content;
};

/* Python's str.strip() on the concatenation of s[0..k), done in place. */
static void strip_segs(struct seg *s, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        size_t w;
        while (s[i].n && (w = space_at_start((const unsigned char *)s[i].p, s[i].n))) {
            s[i].p += w;
            s[i].n -= w;
        }
        if (s[i].n)
            break;
    }
    for (size_t i = k; i-- > 0;) {
        size_t w;
        while (s[i].n && (w = space_at_end((const unsigned char *)s[i].p, s[i].n)))
            s[i].n -= w;
        if (s[i].n)
            break;
    }
}

static void emit_segs(struct emitter *e, const struct seg *s, size_t k)
{
    for (size_t i = 0; i < k; i++)
        emit(e, s[i].p, s[i].n, s[i].is_content);
}

/* message content | trim */
static void trimmed_content(struct emitter *e, const struct chat_message *m)
{
    struct seg s = {m->content, m->content_len, 1};
    strip_segs(&s, 1);
    emit_segs(e, &s, 1);
}

/* raise_exception(text) in the template. */
static int template_raise(char *err, const struct family *f, const struct chat_message *m, size_t i,
                 const char *text)
{
    return fail(err, "chat template %s: %s (message %zu has role %.*s)", f->name, text, i,
                (int)m[i].role_len, m[i].role);
}

/* ---- the renderers ------------------------------------------------------ */

static const char ALTERNATE[] = "Conversation roles must alternate user/assistant/user/assistant/...";

/* llama2.jinja: an optional first system message goes into the first turn
 * as a <<SYS>> block; turns must alternate user, assistant, ... (checked on
 * the messages after it); each turn's whole text, <<SYS>> block included, is
 * strip()-ed; bos before every [INST]. A system message at an odd position
 * passes the check and renders nothing, as in the template. No
 * generation-prompt branch: a prompt already ends with " [/INST]". */
static int render_llama2(struct emitter *e, const struct family *f, const struct chat_message *m,
                         size_t n, int agp, char *err)
{
    (void)agp;
    size_t first = role_is(&m[0], "system");
    for (size_t i = first; i < n; i++) {
        size_t k = i - first; /* loop.index0 */
        int user = role_is(&m[i], "user");
        if (user != (k % 2 == 0))
            return template_raise(err, f, m, i, ALTERNATE);
        struct seg s[4];
        size_t ns = 0;
        if (k == 0 && first) {
            s[ns++] = (struct seg){"<<SYS>>\n", 8, 0};
            s[ns++] = (struct seg){m[0].content, m[0].content_len, 1};
            s[ns++] = (struct seg){"\n<</SYS>>\n\n", 11, 0};
        }
        s[ns++] = (struct seg){m[i].content, m[i].content_len, 1};
        strip_segs(s, ns);
        if (user) {
            tmpl(e, f->bos);
            tmpl(e, "[INST] ");
            emit_segs(e, s, ns);
            tmpl(e, " [/INST]");
        } else if (role_is(&m[i], "assistant")) {
            tmpl(e, " ");
            emit_segs(e, s, ns);
            tmpl(e, " ");
            tmpl(e, f->eos);
        }
    }
    return 0;
}

/* One Llama 3 turn: header, content | trim, <|eot_id|>. */
static void llama3_turn(struct emitter *e, const struct chat_message *m)
{
    tmpl(e, "<|start_header_id|>");
    role_text(e, m);
    tmpl(e, "<|end_header_id|>\n\n");
    trimmed_content(e, m);
    tmpl(e, "<|eot_id|>");
}

/* llama3.jinja: bos before the first turn; the assistant header is written
 * whatever add_generation_prompt says (the template ignores the flag). */
static int render_llama3(struct emitter *e, const struct family *f, const struct chat_message *m,
                         size_t n, int agp, char *err)
{
    (void)agp;
    (void)err;
    tmpl(e, f->bos); /* n > 0: the first turn exists */
    for (size_t i = 0; i < n; i++)
        llama3_turn(e, &m[i]);
    tmpl(e, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

/* llama3_1.jinja without tools: bos, then always a system turn holding the
 * knowledge cutoff and the template's default date_string ("26 Jul 2024";
 * apply_chat_template passes none), followed by the first message's text |
 * trim when that message is a system message (it is then not repeated). */
static int render_llama3_1(struct emitter *e, const struct family *f,
                           const struct chat_message *m, size_t n, int agp, char *err)
{
    (void)err;
    size_t first = role_is(&m[0], "system");
    tmpl(e, f->bos);
    tmpl(e, "<|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\n");
    if (first)
        trimmed_content(e, &m[0]);
    tmpl(e, "<|eot_id|>");
    for (size_t i = first; i < n; i++)
        llama3_turn(e, &m[i]);
    if (agp)
        tmpl(e, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

/* mistral_legacy.jinja: bos; user and assistant strictly alternating from
 * a user turn (so any system message raises); content as given; the
 * assistant's text follows " [/INST]" directly. No generation-prompt
 * branch. */
static int render_mistral_legacy(struct emitter *e, const struct family *f,
                                 const struct chat_message *m, size_t n, int agp, char *err)
{
    (void)agp;
    tmpl(e, f->bos);
    for (size_t i = 0; i < n; i++) {
        int user = role_is(&m[i], "user");
        if (user != (i % 2 == 0))
            return template_raise(err, f, m, i, ALTERNATE);
        if (user) {
            tmpl(e, "[INST] ");
            content(e, &m[i]);
            tmpl(e, " [/INST]");
        } else if (role_is(&m[i], "assistant")) {
            content(e, &m[i]);
            tmpl(e, f->eos);
        } else {
            return template_raise(err, f, m, i, "Only user and assistant roles are supported!");
        }
    }
    return 0;
}

/* mistral_v02.jinja: an optional first system message is joined to the
 * first user turn with a blank line; then strict alternation; " [INST] "
 * with a leading space; content as given. No generation-prompt branch. */
static int render_mistral_v02(struct emitter *e, const struct family *f,
                              const struct chat_message *m, size_t n, int agp, char *err)
{
    (void)agp;
    size_t first = role_is(&m[0], "system");
    tmpl(e, f->bos);
    for (size_t i = first; i < n; i++) {
        size_t k = i - first;
        int user = role_is(&m[i], "user");
        if (user != (k % 2 == 0))
            return template_raise(err, f, m, i, "After the optional system message, conversation roles "
                         "must alternate user/assistant/user/assistant/...");
        if (user) {
            tmpl(e, " [INST] ");
            if (k == 0 && first) {
                content(e, &m[0]);
                tmpl(e, "\n\n");
            }
            content(e, &m[i]);
            tmpl(e, " [/INST]");
        } else if (role_is(&m[i], "assistant")) {
            tmpl(e, " ");
            content(e, &m[i]);
            tmpl(e, f->eos);
        } else {
            return template_raise(err, f, m, i, "Only user and assistant roles are supported, with the "
                         "exception of an initial optional system message!");
        }
    }
    return 0;
}

/* mistral_v03.jinja without tools: bos; user and assistant turns in any
 * order; system messages are dropped (this revision has no system branch).
 * No generation-prompt branch. */
static int render_mistral_v03(struct emitter *e, const struct family *f,
                              const struct chat_message *m, size_t n, int agp, char *err)
{
    (void)agp;
    (void)err;
    tmpl(e, f->bos);
    for (size_t i = 0; i < n; i++) {
        if (role_is(&m[i], "user")) {
            tmpl(e, " [INST] ");
            content(e, &m[i]);
            tmpl(e, " [/INST]");
        } else if (role_is(&m[i], "assistant")) {
            tmpl(e, " ");
            content(e, &m[i]);
            tmpl(e, " ");
            tmpl(e, f->eos);
        }
    }
    return 0;
}

/* zephyr.jinja: "<|role|>\n" + content + eos_token, then a newline (the
 * line break after each {{ }} survives trim_blocks); after the last
 * message "<|assistant|>\n" when add_generation_prompt. */
static int render_zephyr(struct emitter *e, const struct family *f, const struct chat_message *m,
                         size_t n, int agp, char *err)
{
    (void)err;
    for (size_t i = 0; i < n; i++) {
        tmpl(e, "<|");
        role_text(e, &m[i]);
        tmpl(e, "|>\n");
        content(e, &m[i]);
        tmpl(e, f->eos);
        tmpl(e, "\n");
    }
    if (agp)
        tmpl(e, "<|assistant|>\n");
    return 0;
}

/* chatml.jinja, smollm2.jinja and qwen2_5.jinja (without tools) render the
 * same way: "<|im_start|>role\n" + content + "<|im_end|>\n" per message and
 * "<|im_start|>assistant\n" when add_generation_prompt; SmolLM2 and Qwen2.5
 * first write a default system turn when the first message is not a system
 * message. (Qwen2.5 writes a first system message in a branch of its own
 * and skips it in the loop, which gives the same text.) */
static int render_chatml(struct emitter *e, const struct family *f, const struct chat_message *m,
                         size_t n, int agp, char *err)
{
    (void)err;
    if (f->default_system && !role_is(&m[0], "system")) {
        tmpl(e, "<|im_start|>system\n");
        tmpl(e, f->default_system);
        tmpl(e, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        tmpl(e, "<|im_start|>");
        role_text(e, &m[i]);
        tmpl(e, "\n");
        content(e, &m[i]);
        tmpl(e, "<|im_end|>\n");
    }
    if (agp)
        tmpl(e, "<|im_start|>assistant\n");
    return 0;
}

/* ---- rendering ---------------------------------------------------------- */

static int check_messages(const struct chat_message *m, size_t n, char *err)
{
    if (n == 0 || !m)
        return fail(err, "chat: no messages to render");
    for (size_t i = 0; i < n; i++) {
        if (!role_known(&m[i]))
            return fail(err, "chat: message %zu has role \"%.*s\"; supported roles: system, user, "
                        "assistant", i, m[i].role ? (int)(m[i].role_len > 32 ? 32 : m[i].role_len)
                        : 0, m[i].role ? m[i].role : "");
        if (!m[i].content && m[i].content_len)
            return fail(err, "chat: message %zu has no content text", i);
        const char *nul = m[i].content ? memchr(m[i].content, 0, m[i].content_len) : NULL;
        if (nul)
            return fail(err, "chat: message %zu content holds a NUL character at byte %zu", i,
                        (size_t)(nul - m[i].content));
    }
    return 0;
}

int chat_render(uint32_t template_id, const struct chat_message *msgs, size_t n_msgs,
                int add_generation_prompt, struct chat_prompt *out, char *err)
{
    const struct family *f = family_of(template_id);
    if (!f)
        return fail(err, "chat: template id %u is not a chat template; known ones are: %s",
                    template_id, chat_template_names());
    if (check_messages(msgs, n_msgs, err) < 0)
        return -1;
    size_t n_bytes = out->n_bytes, n_spans = out->n_spans;
    struct emitter e = {out, 0};
    int rc = f->render(&e, f, msgs, n_msgs, add_generation_prompt != 0, err);
    if (rc == 0 && e.oom)
        rc = fail(err, "chat template %s: out of memory for the prompt", f->name);
    if (rc < 0) {
        /* drop what this call appended; a span it extended shrinks back */
        out->n_bytes = n_bytes;
        out->n_spans = n_spans;
        if (n_spans)
            out->spans[n_spans - 1].n_bytes = n_bytes - out->spans[n_spans - 1].offset;
        if (out->cap)
            out->text[n_bytes] = 0;
    }
    return rc;
}

/* ------------------------------------------------------------ tokenizing */

/* Appends the ids of text[from, to) as plain text at ids[*n_ids]. */
static int encode_stretch(const struct tokenizer *t, const char *text, size_t from, size_t to,
                          int32_t *ids, size_t max_ids, size_t *n_ids, char *err)
{
    int n = tokenizer_encode(t, text + from, to - from, 0, ids + *n_ids, max_ids - *n_ids, err);
    if (n < 0)
        return -1;
    *n_ids += (size_t)n;
    return 0;
}

int chat_prompt_encode(const struct tokenizer *t, const struct chat_prompt *p, int32_t *ids,
                       size_t max_ids, char *err)
{
    size_t n_ids = 0, stretch = 0;
    for (size_t s = 0; s < p->n_spans; s++) {
        const struct chat_span *sp = &p->spans[s];
        size_t end = sp->offset + sp->n_bytes;
        for (size_t i = sp->offset; !sp->is_content && i < end; i++) {
            int32_t id;
            size_t len = tokenizer_match_special(t, p->text, end, i, &id);
            if (len == 0)
                continue;
            if (encode_stretch(t, p->text, stretch, i, ids, max_ids, &n_ids, err) < 0)
                return -1;
            if (n_ids == max_ids)
                return fail(err, "chat prompt: more than %zu tokens", max_ids);
            ids[n_ids++] = id;
            stretch = i + len;
            i += len - 1;
        }
    }
    if (encode_stretch(t, p->text, stretch, p->n_bytes, ids, max_ids, &n_ids, err) < 0)
        return -1;
    return n_ids > INT32_MAX ? fail(err, "chat prompt: too many tokens") : (int)n_ids;
}
