/* chat.h - the chat templates hearth knows, written in C: naming them,
 * recognising a model's own Jinja chat_template as one of them, and
 * rendering a conversation into prompt text.
 *
 * The families are those of enum hearth_chat_template (format.h); each
 * renders exactly as its model's Jinja template does under transformers'
 * apply_chat_template (reference renderings: tests/data/chat/, copied
 * from the project's reference data). Only the plain conversation part of each template
 * is implemented: roles system, user and assistant with text content; tool
 * definitions, tool calls and other template variables are not.
 *
 * What it does not do: tokenize (the caller does, see struct chat_prompt),
 * run arbitrary Jinja, print, or keep any global state. */
#ifndef HEARTH_CHAT_H
#define HEARTH_CHAT_H

#include <stddef.h>
#include <stdint.h>
#include "format.h"

struct json;
struct json_doc;

/* ---- names --------------------------------------------------------------- */

/* The family name of id ("llama2", "llama3", "llama3_1", "mistral_legacy",
 * "mistral_v02", "mistral_v03", "zephyr", "chatml", "smollm2", "qwen2_5"),
 * "none" for HEARTH_CHAT_NONE, NULL for ids outside the enum. */
const char *chat_template_name(uint32_t id);
/* The id of a family name (exact, case-sensitive), or -1 for anything else
 * ("none" included: it names no template). */
int chat_template_by_name(const char *name);
/* All family names in id order, ", "-separated, for messages such as
 * "unknown template X; known ones are: ...". */
const char *chat_template_names(void);

/* The BOS string a family's template writes into its text ("<s>",
 * "<|begin_of_text|>"), or NULL if it writes none. A prompt rendered with
 * such a template must not get a second BOS from the tokenizer. */
const char *chat_template_bos(uint32_t id);
/* The special-token text that ends an assistant turn in a family
 * ("<|eot_id|>", "<|im_end|>", "</s>"), so that generation can stop there;
 * NULL for HEARTH_CHAT_NONE and unknown ids. */
const char *chat_template_end_of_turn(uint32_t id);

/* ---- recognising a model's template -------------------------------------- */

/* The family whose output the Jinja template jinja[0..n) produces, judged
 * by the literal text that decides the output (markers, default system
 * prompts, spacing around [INST]); HEARTH_CHAT_NONE when it is none of
 * them, so that a template hearth would render differently is never
 * mistaken for one it knows. The rules are listed in chat.c. */
int chat_template_detect(const char *jinja, size_t n);

/* Not a template id: what export's readers record in struct source's
 * cfg.chat_template when the model has a chat template of no family
 * chat_template_detect knows. export prints the difference between this and
 * "no template at all"; the writer stores HEARTH_CHAT_NONE for it. */
#define CHAT_TEMPLATE_UNRECOGNISED ((uint32_t)HEARTH_CHAT_COUNT)

/* ---- conversations ------------------------------------------------------- */

/* One message; role is "system", "user" or "assistant" (exactly); neither
 * string needs a NUL terminator. */
struct chat_message {
    const char *role;
    size_t role_len;
    const char *content;
    size_t content_len;
};

/* Messages parsed from JSON. msgs points into doc, which owns the strings. */
struct chat_conversation {
    struct chat_message *msgs;
    size_t n_msgs;
    struct json_doc *doc;
};

/* Parses json_text[0..n) as a JSON array of {"role": string, "content":
 * string} objects, as OpenAI-style clients send "messages". Anything else is
 * refused with a message naming the index and field: other types, other
 * keys, other roles, content holding a NUL character, an empty array.
 * Returns 0 with *out filled (free with chat_conversation_free), or -1 with
 * err set and *out empty. */
int chat_parse_messages(const char *json_text, size_t n, struct chat_conversation *out,
                        char *err);
/* The same check on an array already parsed (e.g. the "messages" member of
 * a request body): *msgs is malloc'd (free() it) and points into the tree,
 * which must outlive it. Returns 0, or -1 with err set and *msgs NULL. */
int chat_messages_from_json(const struct json *array, struct chat_message **msgs,
                            size_t *n_msgs, char *err);
void chat_conversation_free(struct chat_conversation *c);

/* ---- rendering ----------------------------------------------------------- */

/* A rendered prompt: text, and spans that tile it in order, each either
 * message content (bytes copied from the conversation, after any trimming
 * the template does) or template text. Adjacent spans differ in kind; no
 * span is empty.
 *
 * Why the spans: template text is to be tokenized with special-token
 * matching, so "<|eot_id|>" written by the template becomes that token,
 * while content is plain text, so a user who types "<|eot_id|>" gets
 * ordinary tokens. Tokenize as Hugging Face does: split the text only at
 * special tokens found inside template spans, then tokenize each stretch in
 * between (template and content text together) as one piece of plain text. */
struct chat_span {
    size_t offset, n_bytes;
    int is_content;
};

struct chat_prompt {
    char *text;            /* n_bytes long, NUL-terminated after them (once cap > 0) */
    size_t n_bytes, cap;
    struct chat_span *spans;
    size_t n_spans, cap_spans;
};

void chat_prompt_init(struct chat_prompt *p); /* empty, nothing allocated */
void chat_prompt_free(struct chat_prompt *p); /* frees and empties */

/* Renders msgs[0..n_msgs) with template_id, appending to out, exactly as
 * the family's Jinja template renders them with add_generation_prompt (which
 * some templates ignore: see chat.c), including the BOS text the template
 * writes. Errors, with out left as it was: an unknown template id, no
 * messages, a role other than system/user/assistant or content holding a
 * NUL (naming the message), whatever the template itself raises (its own
 * words, e.g. "Conversation roles must alternate
 * user/assistant/user/assistant/..."), and out of memory. Returns 0 or -1. */
int chat_render(uint32_t template_id, const struct chat_message *msgs, size_t n_msgs,
                int add_generation_prompt, struct chat_prompt *out, char *err);

struct tokenizer;

/* Tokenizes a rendered prompt as described above: special tokens only in
 * template spans (tokenizer_match_special), each stretch between them with
 * tokenizer_encode; no BOS added (templates that want one write it). ids
 * needs tokenizer_max_ids(p->n_bytes) entries. Returns the count, or -1
 * with err set. */
int chat_prompt_encode(const struct tokenizer *t, const struct chat_prompt *p, int32_t *ids,
                       size_t max_ids, char *err);

#endif
