/* tests/test_chat.c - chat templates (chat.c): every reference rendering in
 * tests/data/chat/INDEX.tsv reproduced byte for byte, the template's own
 * errors, content spans, recognition of the models' Jinja templates, name
 * lookups, and refusal of bad message lists.
 *
 * The reference renderings were made with the models' own Jinja templates
 * (tests/data/README.md, section chat/). The hand-written
 * expectations below follow those templates' statements for conversations
 * the reference set does not cover (several turns, an assistant turn last,
 * whitespace and non-ASCII content, odd roles). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "../chat.h"
#include "../err.h"
#include "../exporter/source.h"
#include "../tokenizer.h"
#include "vectors.h"

#define CHAT_DIR "tests/data/chat/"

/* ---- helpers ------------------------------------------------------------- */

/* Spans tile the text in order, none empty, adjacent ones of different
 * kinds; returns 1 if so, else 0 with the reason in why. */
static int spans_tile(const struct chat_prompt *p, char *why, size_t cap)
{
    size_t at = 0;
    for (size_t i = 0; i < p->n_spans; i++) {
        const struct chat_span *s = &p->spans[i];
        if (s->offset != at || s->n_bytes == 0) {
            snprintf(why, cap, "span %zu at %zu+%zu, expected offset %zu and bytes", i, s->offset,
                     s->n_bytes, at);
            return 0;
        }
        if (i && s->is_content == p->spans[i - 1].is_content) {
            snprintf(why, cap, "spans %zu and %zu are both %s", i - 1, i,
                     s->is_content ? "content" : "template");
            return 0;
        }
        at += s->n_bytes;
    }
    if (at != p->n_bytes || (p->cap && p->text[p->n_bytes] != 0)) {
        snprintf(why, cap, "spans cover %zu of %zu bytes (or text not NUL-terminated)", at,
                 p->n_bytes);
        return 0;
    }
    return 1;
}

/* The bytes of the content (or template) spans, concatenated; malloc'd. */
static char *span_text(const struct chat_prompt *p, int content, size_t *n)
{
    char *s = malloc(p->n_bytes + 1);
    *n = 0;
    for (size_t i = 0; s && i < p->n_spans; i++) {
        if (p->spans[i].is_content != content)
            continue;
        memcpy(s + *n, p->text + p->spans[i].offset, p->spans[i].n_bytes);
        *n += p->spans[i].n_bytes;
    }
    if (s)
        s[*n] = 0;
    return s;
}

static struct chat_message msg(const char *role, const char *content)
{
    return (struct chat_message){role, strlen(role), content, strlen(content)};
}

/* Renders and compares with want (NULL: expects an error holding want_err). */
static void expect_render(const char *what, uint32_t id, const struct chat_message *m, size_t n,
                          int agp, const char *want, const char *want_err)
{
    struct chat_prompt p;
    chat_prompt_init(&p);
    char err[HEARTH_ERR_BYTES] = "";
    int rc = chat_render(id, m, n, agp, &p, err);
    if (want) {
        CHECK(rc == 0, "%s: %s", what, err);
        CHECK(rc != 0 || (p.n_bytes == strlen(want) && (p.n_bytes == 0 || !memcmp(p.text, want, p.n_bytes))),
              "%s:\n got \"%s\"\nwant \"%s\"", what, p.text ? p.text : "", want);
        char why[160];
        CHECK(rc != 0 || spans_tile(&p, why, sizeof why), "%s: %s", what, why);
    } else {
        CHECK(rc < 0 && strstr(err, want_err), "%s: rc %d, message \"%s\" should hold \"%s\"",
              what, rc, err, want_err);
        CHECK(p.n_bytes == 0 && p.n_spans == 0, "%s: a failed render left output", what);
    }
    chat_prompt_free(&p);
}

/* ---- the reference renderings -------------------------------------------- */

#define INDEX_COLUMNS 11

/* Splits line (modified in place) at tabs into col; returns the count. */
static int split_tabs(char *line, char **col, int max)
{
    int n = 0;
    for (char *p = line; n < max;) {
        col[n++] = p;
        char *tab = strchr(p, '\t');
        if (!tab)
            break;
        *tab = 0;
        p = tab + 1;
    }
    return n;
}

/* What the content spans of a reference row must hold: every message's
 * text in order, except the system messages mistral_v03's template drops.
 * (The reference contents have no surrounding whitespace, so the trimming
 * of llama2 / llama3 / llama3_1 leaves them as they are.) */
static char *expected_content(uint32_t id, const struct chat_conversation *c, size_t *n)
{
    size_t total = 0;
    for (size_t i = 0; i < c->n_msgs; i++)
        total += c->msgs[i].content_len;
    char *s = malloc(total + 1);
    *n = 0;
    for (size_t i = 0; s && i < c->n_msgs; i++) {
        const struct chat_message *m = &c->msgs[i];
        if (id == HEARTH_CHAT_MISTRAL_V03 && m->role_len == 6 && !memcmp(m->role, "system", 6))
            continue;
        memcpy(s + *n, m->content, m->content_len);
        *n += m->content_len;
    }
    return s;
}

static void check_row(char **col, int line_no)
{
    const char *family = col[0], *file = col[2], *json = col[3], *bos = col[5];
    int id = chat_template_by_name(family);
    CHECK(id > 0, "INDEX.tsv line %d: family %s unknown", line_no, family);
    if (id <= 0)
        return;
    struct chat_conversation conv;
    char err[HEARTH_ERR_BYTES] = "";
    int rc = chat_parse_messages(json, strlen(json), &conv, err);
    CHECK(rc == 0, "INDEX.tsv line %d: messages_json: %s", line_no, err);
    if (rc < 0)
        return;
    char path[256];
    snprintf(path, sizeof path, CHAT_DIR "%s", file);
    size_t want_n;
    char *want = test_read_file(path, &want_n);
    CHECK(want != NULL, "cannot read %s", path);
    struct chat_prompt p;
    chat_prompt_init(&p);
    rc = chat_render((uint32_t)id, conv.msgs, conv.n_msgs, !strcmp(col[4], "true"), &p, err);
    if (want && !strcmp(col[9], "error")) {
        CHECK(rc < 0 && strstr(err, want), "%s: expected the template's error \"%s\", got rc %d "
              "\"%s\"", path, want, rc, err);
    } else if (want) {
        CHECK(rc == 0 && p.n_bytes == want_n && !memcmp(p.text, want, want_n),
              "%s: rendering differs (rc %d, %zu bytes, want %zu): \"%s\" %s", path, rc,
              p.n_bytes, want_n, p.text ? p.text : "", err);
        char why[160];
        CHECK(spans_tile(&p, why, sizeof why), "%s: %s", path, why);
        size_t got_n, exp_n;
        char *got = span_text(&p, 1, &got_n), *exp = expected_content((uint32_t)id, &conv, &exp_n);
        CHECK(got && exp && got_n == exp_n && !memcmp(got, exp, exp_n),
              "%s: content spans hold \"%s\", expected \"%s\"", path, got ? got : "",
              exp ? exp : "");
        free(got);
        free(exp);
        /* a template that writes the BOS writes the row's bos string first */
        const char *tb = chat_template_bos((uint32_t)id);
        CHECK(!tb || (!strcmp(tb, bos) && p.n_bytes >= strlen(tb) &&
                      !memcmp(p.text, tb, strlen(tb))),
              "%s: bos \"%s\" vs INDEX bos \"%s\"", path, tb ? tb : "(none)", bos);
    }
    free(want);
    chat_prompt_free(&p);
    chat_conversation_free(&conv);
}

static void test_chat_reference_renderings(void)
{
    size_t n;
    char *index = test_read_file(CHAT_DIR "INDEX.tsv", &n);
    CHECK(index != NULL, "cannot read " CHAT_DIR "INDEX.tsv");
    if (!index)
        return;
    int rows = 0, errors = 0, line_no = 0;
    uint32_t seen = 0;
    for (char *line = index, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        if (++line_no == 1)
            continue; /* header */
        char *col[INDEX_COLUMNS];
        int k = split_tabs(line, col, INDEX_COLUMNS);
        CHECK(k == INDEX_COLUMNS, "INDEX.tsv line %d has %d columns", line_no, k);
        if (k != INDEX_COLUMNS)
            continue;
        int id = chat_template_by_name(col[0]);
        if (id > 0)
            seen |= 1u << id;
        errors += !strcmp(col[9], "error");
        check_row(col, line_no);
        rows++;
    }
    CHECK(rows == 25 && errors == 1, "INDEX.tsv: %d rows, %d error rows (expected 25 and 1)", rows,
          errors);
    CHECK(seen == ((1u << HEARTH_CHAT_COUNT) - 2), "INDEX.tsv does not cover every family (%#x)",
          seen);
    free(index);
}

/* ---- conversations beyond the reference set ------------------------------ */

static void test_chat_llama_family(void)
{
    /* Jinja's trim and Python's strip() remove str.isspace() characters:
     * NBSP, U+3000, \x1f, U+0085 yes; U+FEFF, U+200B no. */
    struct chat_message u1 = msg("user", " \t\xc2\xa0Gr\xc3\xbc\xc3\x9f" "e <|eot_id|> \xe4\xb8\x96"
                                         "\xe7\x95\x8c\xe3\x80\x80\n\x1f\xc2\x85");
    expect_render("llama3 trim, unicode, literal marker", HEARTH_CHAT_LLAMA3, &u1, 1, 1,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                  "Gr\xc3\xbc\xc3\x9f" "e <|eot_id|> \xe4\xb8\x96\xe7\x95\x8c<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n", NULL);
    struct chat_message zw = msg("user", "\xef\xbb\xbfX\xe2\x80\x8b");
    expect_render("llama3 keeps U+FEFF and U+200B", HEARTH_CHAT_LLAMA3, &zw, 1, 0,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                  "\xef\xbb\xbfX\xe2\x80\x8b<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n", NULL);

    /* the literal <|eot_id|> typed by the user is content; the template's are not */
    struct chat_prompt p;
    chat_prompt_init(&p);
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(chat_render(HEARTH_CHAT_LLAMA3, &u1, 1, 1, &p, err) == 0, "llama3: %s", err);
    size_t nc, nt;
    char *c = span_text(&p, 1, &nc), *t = span_text(&p, 0, &nt);
    CHECK(c && !strcmp(c, "Gr\xc3\xbc\xc3\x9f" "e <|eot_id|> \xe4\xb8\x96\xe7\x95\x8c"),
          "llama3 content span \"%s\"", c ? c : "");
    CHECK(t && !strcmp(t, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                          "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
          "llama3 template spans \"%s\"", t ? t : "");
    free(c);
    free(t);
    chat_prompt_free(&p);

    /* several turns, a second system message, assistant last, no generation prompt */
    struct chat_message conv[] = {msg("system", " Be brief.\n"), msg("user", "Hi"),
                                  msg("assistant", " Hello! "), msg("system", "Now French."),
                                  msg("user", "Bye"), msg("assistant", "Au revoir")};
    expect_render("llama3 several turns", HEARTH_CHAT_LLAMA3, conv, 6, 0,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                  "<|start_header_id|>system<|end_header_id|>\n\nNow French.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nAu revoir<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n", NULL);
    expect_render("llama3_1 several turns", HEARTH_CHAT_LLAMA3_1, conv, 6, 0,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
                  "Be brief.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                  "<|start_header_id|>system<|end_header_id|>\n\nNow French.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nAu revoir<|eot_id|>", NULL);
    expect_render("llama3_1 assistant first", HEARTH_CHAT_LLAMA3_1, &conv[2], 1, 1,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n", NULL);

    /* llama2: strip() of the whole first turn, <<SYS>> block included */
    struct chat_message l2[] = {msg("system", " S "), msg("user", "  \n")};
    expect_render("llama2 blank user after system", HEARTH_CHAT_LLAMA2, l2, 2, 1,
                  "<s>[INST] <<SYS>>\n S \n<</SYS>> [/INST]", NULL);
    struct chat_message l2b[] = {msg("user", " Hi "), msg("assistant", "\tHello!\n"),
                                 msg("user", "Bye"), msg("assistant", "See you")};
    expect_render("llama2 assistant last", HEARTH_CHAT_LLAMA2, l2b, 4, 1,
                  "<s>[INST] Hi [/INST] Hello! </s><s>[INST] Bye [/INST] See you </s>", NULL);
    struct chat_message l2c[] = {msg("system", "S"), msg("user", "U"), msg("system", "T")};
    expect_render("llama2 system at an odd position renders nothing", HEARTH_CHAT_LLAMA2, l2c, 3, 1,
                  "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]", NULL);
    expect_render("llama2 system only", HEARTH_CHAT_LLAMA2, l2c, 1, 1, "", NULL);
    expect_render("llama2 assistant first", HEARTH_CHAT_LLAMA2, &l2b[1], 1, 1, NULL,
                  "Conversation roles must alternate user/assistant/user/assistant/...");
    struct chat_message uu[] = {msg("user", "a"), msg("user", "b")};
    expect_render("llama2 two user turns", HEARTH_CHAT_LLAMA2, uu, 2, 1, NULL,
                  "Conversation roles must alternate");
}

static void test_chat_mistral_family(void)
{
    struct chat_message c[] = {msg("user", "a "), msg("assistant", " b"), msg("user", "c"),
                               msg("assistant", "d")};
    expect_render("mistral_legacy assistant last", HEARTH_CHAT_MISTRAL_LEGACY, c, 4, 1,
                  "<s>[INST] a  [/INST] b</s>[INST] c [/INST]d</s>", NULL);
    struct chat_message us[] = {msg("user", "a"), msg("system", "s")};
    expect_render("mistral_legacy system second", HEARTH_CHAT_MISTRAL_LEGACY, us, 2, 1, NULL,
                  "Only user and assistant roles are supported!");
    struct chat_message uas[] = {msg("user", "a"), msg("assistant", "b"), msg("system", "s")};
    expect_render("mistral_legacy system third", HEARTH_CHAT_MISTRAL_LEGACY, uas, 3, 1, NULL,
                  "Conversation roles must alternate user/assistant/user/assistant/...");

    struct chat_message s[] = {msg("system", "Sys"), msg("user", "a"), msg("assistant", "b"),
                               msg("user", "c"), msg("assistant", "d")};
    expect_render("mistral_v02 assistant last", HEARTH_CHAT_MISTRAL_V02, s, 5, 1,
                  "<s> [INST] Sys\n\na [/INST] b</s> [INST] c [/INST] d</s>", NULL);
    expect_render("mistral_v02 system only", HEARTH_CHAT_MISTRAL_V02, s, 1, 1, "<s>", NULL);
    struct chat_message sa[] = {msg("system", "Sys"), msg("assistant", "b")};
    expect_render("mistral_v02 assistant after system", HEARTH_CHAT_MISTRAL_V02, sa, 2, 1, NULL,
                  "After the optional system message, conversation roles must alternate "
                  "user/assistant/user/assistant/...");
    struct chat_message sus[] = {msg("system", "Sys"), msg("user", "a"), msg("system", "t")};
    expect_render("mistral_v02 second system", HEARTH_CHAT_MISTRAL_V02, sus, 3, 1, NULL,
                  "Only user and assistant roles are supported, with the exception of an "
                  "initial optional system message!");

    struct chat_message v3[] = {msg("system", "Sys"), msg("user", "a"), msg("assistant", "b"),
                                msg("system", "t"), msg("user", "c"), msg("user", "e")};
    expect_render("mistral_v03 drops system, allows any order", HEARTH_CHAT_MISTRAL_V03, v3, 6, 1,
                  "<s> [INST] a [/INST] b </s> [INST] c [/INST] [INST] e [/INST]", NULL);
}

static void test_chat_chatml_family(void)
{
    struct chat_message c[] = {msg("user", " h\xc3\xa9llo "), msg("assistant", "<|im_end|>"),
                               msg("system", "late"), msg("user", "")};
    const char *body = "<|im_start|>user\n h\xc3\xa9llo <|im_end|>\n"
                       "<|im_start|>assistant\n<|im_end|><|im_end|>\n"
                       "<|im_start|>system\nlate<|im_end|>\n"
                       "<|im_start|>user\n<|im_end|>\n";
    char want[1024];
    expect_render("chatml no generation prompt", HEARTH_CHAT_CHATML, c, 4, 0, body, NULL);
    snprintf(want, sizeof want, "%s<|im_start|>assistant\n", body);
    expect_render("chatml", HEARTH_CHAT_CHATML, c, 4, 1, want, NULL);
    snprintf(want, sizeof want, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You "
             "are a helpful assistant.<|im_end|>\n%s", body);
    expect_render("qwen2_5 default system", HEARTH_CHAT_QWEN2_5, c, 4, 0, want, NULL);
    snprintf(want, sizeof want, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
             "trained by Hugging Face<|im_end|>\n%s<|im_start|>assistant\n", body);
    expect_render("smollm2 default system", HEARTH_CHAT_SMOLLM2, c, 4, 1, want, NULL);
    expect_render("qwen2_5 own system", HEARTH_CHAT_QWEN2_5, &c[2], 2, 1,
                  "<|im_start|>system\nlate<|im_end|>\n<|im_start|>user\n<|im_end|>\n"
                  "<|im_start|>assistant\n", NULL);

    struct chat_message z[] = {msg("user", "q"), msg("assistant", " a ")};
    expect_render("zephyr assistant last", HEARTH_CHAT_ZEPHYR, z, 2, 0,
                  "<|user|>\nq</s>\n<|assistant|>\n a </s>\n", NULL);
    expect_render("zephyr generation prompt", HEARTH_CHAT_ZEPHYR, z, 2, 1,
                  "<|user|>\nq</s>\n<|assistant|>\n a </s>\n<|assistant|>\n", NULL);

    /* the user's "<|im_end|>" stays content */
    struct chat_prompt p;
    chat_prompt_init(&p);
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(chat_render(HEARTH_CHAT_CHATML, c, 2, 1, &p, err) == 0, "chatml: %s", err);
    size_t n;
    char *content = span_text(&p, 1, &n);
    CHECK(content && !strcmp(content, " h\xc3\xa9llo <|im_end|>"), "chatml content \"%s\"",
          content ? content : "");
    free(content);
    chat_prompt_free(&p);
}

/* Rendering appends; a failed render leaves the prompt as it was. */
static void test_chat_append_and_rollback(void)
{
    struct chat_message a = msg("user", "one"), b = msg("user", "two");
    struct chat_prompt p;
    chat_prompt_init(&p);
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(chat_render(HEARTH_CHAT_CHATML, &a, 1, 0, &p, err) == 0 &&
          chat_render(HEARTH_CHAT_CHATML, &b, 1, 1, &p, err) == 0, "append: %s", err);
    const char *want = "<|im_start|>user\none<|im_end|>\n<|im_start|>user\ntwo<|im_end|>\n"
                       "<|im_start|>assistant\n";
    CHECK(p.n_bytes == strlen(want) && !strcmp(p.text, want), "appended \"%s\"", p.text);
    char why[160];
    CHECK(spans_tile(&p, why, sizeof why) && p.n_spans == 5, "appended spans: %s (%zu spans)",
          why, p.n_spans);
    size_t n_bytes = p.n_bytes, n_spans = p.n_spans, last = p.spans[p.n_spans - 1].n_bytes;
    /* mistral_legacy writes "<s>" (extending the last span), then raises */
    struct chat_message sys = msg("system", "s");
    CHECK(chat_render(HEARTH_CHAT_MISTRAL_LEGACY, &sys, 1, 1, &p, err) < 0, "legacy system accepted");
    CHECK(p.n_bytes == n_bytes && p.n_spans == n_spans && p.spans[n_spans - 1].n_bytes == last &&
          !strcmp(p.text, want), "failed render changed the prompt: \"%s\"", p.text);
    struct chat_message bad = msg("tool", "x");
    CHECK(chat_render(HEARTH_CHAT_CHATML, &bad, 1, 1, &p, err) < 0 && strstr(err, "\"tool\"") &&
          strstr(err, "message 0"), "role tool: %s", err);
    CHECK(p.n_bytes == n_bytes && !strcmp(p.text, want), "bad role changed the prompt");
    chat_prompt_free(&p);
    CHECK(p.text == NULL && p.n_bytes == 0 && p.spans == NULL, "chat_prompt_free leaves state");
}

static void test_chat_render_refusals(void)
{
    struct chat_message ok = msg("user", "x");
    struct chat_prompt p;
    chat_prompt_init(&p);
    char err[HEARTH_ERR_BYTES];
    static const uint32_t bad_ids[] = {HEARTH_CHAT_NONE, CHAT_TEMPLATE_UNRECOGNISED, 99};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        err[0] = 0;
        CHECK(chat_render(bad_ids[i], &ok, 1, 1, &p, err) < 0 && strstr(err, "llama3_1") &&
              strstr(err, "qwen2_5"), "template id %u: %s", bad_ids[i], err);
    }
    CHECK(chat_render(HEARTH_CHAT_LLAMA3, &ok, 0, 1, &p, err) < 0 && strstr(err, "no messages"),
          "no messages: %s", err);
    struct chat_message m[2] = {msg("user", "a"), {"assistant", 9, "b\0c", 3}};
    CHECK(chat_render(HEARTH_CHAT_LLAMA3, m, 2, 1, &p, err) < 0 && strstr(err, "message 1") &&
          strstr(err, "NUL"), "NUL content: %s", err);
    struct chat_message upper = msg("User", "a");
    CHECK(chat_render(HEARTH_CHAT_LLAMA3, &upper, 1, 1, &p, err) < 0 && strstr(err, "\"User\""),
          "role User: %s", err);
    CHECK(p.n_bytes == 0 && p.n_spans == 0, "refusals wrote output");
    chat_prompt_free(&p);
}

/* ---- names --------------------------------------------------------------- */

static void test_chat_names(void)
{
    static const char *const names[HEARTH_CHAT_COUNT] = {
        "none", "llama2", "llama3", "llama3_1", "mistral_legacy", "mistral_v02", "mistral_v03",
        "zephyr", "chatml", "smollm2", "qwen2_5",
    };
    char list[512] = "";
    for (uint32_t id = 0; id < HEARTH_CHAT_COUNT; id++) {
        const char *name = chat_template_name(id);
        CHECK(name && !strcmp(name, names[id]), "name of %u: %s", id, name ? name : "NULL");
        if (id == 0)
            continue;
        CHECK(chat_template_by_name(names[id]) == (int)id, "by_name(%s)", names[id]);
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", id > 1 ? ", " : "",
                 names[id]);
    }
    CHECK(!strcmp(chat_template_names(), list), "names list \"%s\", expected \"%s\"",
          chat_template_names(), list);
    CHECK(chat_template_name(HEARTH_CHAT_COUNT) == NULL && chat_template_name(UINT32_MAX) == NULL,
          "names of ids outside the enum");
    static const char *const bad[] = {"none", "LLAMA3", "llama3 ", "", "llama", "chatml2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(chat_template_by_name(bad[i]) == -1, "by_name(\"%s\") accepted", bad[i]);
    CHECK(chat_template_by_name(NULL) == -1, "by_name(NULL)");

    /* what the templates write: bos_token where used, the turn-closing token */
    CHECK(!strcmp(chat_template_end_of_turn(HEARTH_CHAT_LLAMA3_1), "<|eot_id|>") &&
          !strcmp(chat_template_end_of_turn(HEARTH_CHAT_QWEN2_5), "<|im_end|>") &&
          !strcmp(chat_template_end_of_turn(HEARTH_CHAT_ZEPHYR), "</s>") &&
          chat_template_end_of_turn(HEARTH_CHAT_NONE) == NULL, "end-of-turn tokens");
    CHECK(!strcmp(chat_template_bos(HEARTH_CHAT_MISTRAL_V03), "<s>") &&
          chat_template_bos(HEARTH_CHAT_ZEPHYR) == NULL &&
          chat_template_bos(HEARTH_CHAT_CHATML) == NULL && chat_template_bos(0) == NULL,
          "bos strings");
}

/* ---- recognising the models' templates ----------------------------------- */

static int detect_text(const char *s)
{
    return chat_template_detect(s, strlen(s));
}

/* The template file of family with every `from` replaced by `to`; malloc'd. */
static char *altered(const char *family, const char *from, const char *to)
{
    char path[256];
    snprintf(path, sizeof path, CHAT_DIR "templates/%s.jinja", family);
    size_t n, nf = strlen(from), nt = strlen(to), hits = 0;
    char *t = test_read_file(path, &n);
    for (const char *p = t; p && (p = strstr(p, from)); p += nf)
        hits++;
    CHECK(hits > 0, "%s has no \"%s\"", path, from);
    if (hits == 0) {
        free(t);
        return NULL;
    }
    char *out = malloc(n + hits * nt + 1), *o = out;
    for (const char *p = t, *hit; *p; p = hit + nf) {
        hit = strstr(p, from);
        if (!hit) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, to, nt);
        o += nt;
        *o = 0;
    }
    free(t);
    return out;
}

static void expect_altered(const char *family, const char *from, const char *to, int want)
{
    char *t = altered(family, from, to);
    if (!t)
        return;
    int got = detect_text(t);
    CHECK(got == want, "%s with \"%s\" -> \"%s\": detected %s, expected %s", family, from, to,
          chat_template_name((uint32_t)got), chat_template_name((uint32_t)want));
    free(t);
}

static void test_chat_detect(void)
{
    for (uint32_t id = 1; id < HEARTH_CHAT_COUNT; id++) {
        char path[256];
        snprintf(path, sizeof path, CHAT_DIR "templates/%s.jinja", chat_template_name(id));
        size_t n;
        char *t = test_read_file(path, &n);
        CHECK(t != NULL, "cannot read %s", path);
        int got = t ? chat_template_detect(t, n) : -1;
        CHECK(got == (int)id, "%s detected as %s", path,
              got >= 0 ? chat_template_name((uint32_t)got) : "(unread)");
        free(t);
    }
    /* one feature changed: another family, or none */
    expect_altered("llama3_1", "Cutting Knowledge Date", "Knowledge cutoff", HEARTH_CHAT_LLAMA3);
    expect_altered("llama3", "<|eot_id|>", "<|end_of_turn|>", HEARTH_CHAT_NONE);
    expect_altered("qwen2_5", "You are Qwen, created by Alibaba Cloud.", "You are Bob.",
                   HEARTH_CHAT_NONE);
    expect_altered("smollm2", "named SmolLM", "named Tiny", HEARTH_CHAT_NONE);
    expect_altered("chatml", "{% for message", "{{ '<|im_start|>system\nYou are a helpful "
                   "assistant.<|im_end|>\n' }}{% for message", HEARTH_CHAT_NONE);
    expect_altered("chatml", "{% for message", "{# <think> #}{% for message", HEARTH_CHAT_NONE);
    expect_altered("zephyr", "eos_token }}\n{% elif message['role'] == 'system' %}",
                   "'<|end|>' }}\n{% elif message['role'] == 'system' %}", HEARTH_CHAT_NONE);
    expect_altered("mistral_legacy", "message['content'] + eos_token}}",
                   "message['content'] + eos_token + ' '}}", HEARTH_CHAT_NONE);
    expect_altered("mistral_legacy", "'[INST] '", "' [INST] '", HEARTH_CHAT_NONE);
    expect_altered("mistral_v03", "{%- for message in messages %}",
                   "{%- set system_message = '' %}{%- for message in messages %}",
                   HEARTH_CHAT_NONE);
    expect_altered("llama2", "<<SYS>>", "<<SYSTEM>>", HEARTH_CHAT_NONE);
    /* Phi-3's template: Zephyr's role markers, turns closed by <|end|> */
    CHECK(detect_text("{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + "
                      "message['content'] + '<|end|>\n'}}{% endfor %}{% if add_generation_prompt "
                      "%}{{ '<|assistant|>\n' }}{% endif %} <|user|>") == HEARTH_CHAT_NONE,
          "phi-3 template recognised");
    static const char *const none[] = {
        "", "{{ messages }}", "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
        "<|start_header_id|>", "[INST]",
    };
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        CHECK(detect_text(none[i]) == HEARTH_CHAT_NONE, "\"%s\" recognised", none[i]);
    CHECK(chat_template_detect(NULL, 0) == HEARTH_CHAT_NONE, "NULL template");
    /* bytes after a NUL still count: the length is what matters */
    CHECK(chat_template_detect("\0<|im_start|><|im_end|>", 23) == HEARTH_CHAT_CHATML,
          "template with a NUL byte");
}

/* ---- message lists ------------------------------------------------------- */

static void test_chat_parse_messages(void)
{
    const char *good = "[{\"role\": \"system\", \"content\": \"S\\u00e9\"}, "
                       "{\"content\": \"\", \"role\": \"user\"}]";
    struct chat_conversation c;
    char err[HEARTH_ERR_BYTES] = "";
    CHECK(chat_parse_messages(good, strlen(good), &c, err) == 0, "good messages: %s", err);
    if (!err[0]) {
        CHECK(c.n_msgs == 2 && c.msgs[0].role_len == 6 && !memcmp(c.msgs[0].role, "system", 6) &&
              c.msgs[0].content_len == 3 && !memcmp(c.msgs[0].content, "S\xc3\xa9", 3) &&
              c.msgs[1].content_len == 0 && c.msgs[1].role_len == 4, "parsed messages");
        chat_conversation_free(&c);
    }
    static const struct {
        const char *json, *needle1, *needle2;
    } bad[] = {
        {"[{\"role\": \"user\", \"content\": \"x\"}", "messages", "byte"},
        {"{\"role\": \"user\", \"content\": \"x\"}", "JSON array", "object"},
        {"[]", "empty", NULL},
        {"[\"hello\"]", "messages[0]", "string"},
        {"[{\"role\": \"user\", \"content\": \"x\"}, {\"content\": \"y\"}]", "messages[1]",
         "\"role\" is missing"},
        {"[{\"role\": \"user\"}]", "messages[0]", "\"content\" is missing"},
        {"[{\"role\": 1, \"content\": \"x\"}]", "messages[0].role", "number"},
        {"[{\"role\": \"tool\", \"content\": \"x\"}]", "messages[0].role", "\"tool\""},
        {"[{\"role\": \"Assistant\", \"content\": \"x\"}]", "messages[0].role", "Assistant"},
        {"[{\"role\": \"user\", \"content\": null}]", "messages[0].content", "null"},
        {"[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"x\"}]}]",
         "messages[0].content", "content parts"},
        {"[{\"role\": \"user\", \"content\": \"a\\u0000b\"}]", "messages[0].content", "NUL"},
        {"[{\"role\": \"user\", \"content\": \"x\", \"name\": \"bob\"}]", "messages[0]",
         "\"name\""},
        {"[{\"role\": \"user\", \"content\": \"x\", \"role\": \"user\"}]", "messages", "duplicate"},
        {"[[[[[[[[[[\"deep\"]]]]]]]]]]", "messages", "deep"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = chat_parse_messages(bad[i].json, strlen(bad[i].json), &c, err);
        CHECK(rc < 0 && strstr(err, bad[i].needle1) &&
              (!bad[i].needle2 || strstr(err, bad[i].needle2)),
              "bad messages %zu (%s): rc %d, \"%s\" should mention \"%s\" and \"%s\"", i,
              bad[i].json, rc, err, bad[i].needle1, bad[i].needle2 ? bad[i].needle2 : "");
        CHECK(c.msgs == NULL && c.doc == NULL && c.n_msgs == 0, "bad messages %zu: not freed", i);
        if (rc == 0)
            chat_conversation_free(&c);
    }
}

/* chat_prompt_encode with the real Llama 3 tokenizer: the template's
 * special tokens become their ids, exactly as tokenizer_encode_special
 * reads the whole text when the content holds no special-token text; a
 * user who types "<|eot_id|>" gets plain-text ids for it, never 128009. */
static void test_chat_prompt_encode(void)
{
    struct vocab v;
    struct tok_fixture fx;
    char err[HEARTH_ERR_BYTES] = "";
    if (vocab_read_tokenizer_json("tests/data/llama3/tokenizer.json", &v, err) < 0) {
        CHECK(0, "llama3 tokenizer.json: %s", err);
        return;
    }
    int ok = tok_fixture_init(&fx, &v, 128000u, 128001u) == 0;
    vocab_free(&v);
    CHECK(ok, "the Llama 3 tokenizer did not load");
    if (!ok)
        return;
    const char *typed = "What does <|eot_id|> mean?";
    struct chat_message msgs[2] = {
        {"system", 6, "You are terse.", 14},
        {"user", 4, typed, strlen(typed)},
    };
    for (int with_marker = 0; with_marker < 2; with_marker++) {
        struct chat_prompt p;
        chat_prompt_init(&p);
        msgs[1].content = with_marker ? typed : "What does it mean?";
        msgs[1].content_len = strlen(msgs[1].content);
        CHECK(chat_render(HEARTH_CHAT_LLAMA3, msgs, 2, 1, &p, err) == 0, "render: %s", err);
        size_t cap = tokenizer_max_ids(p.n_bytes);
        int32_t *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
        int na = chat_prompt_encode(&fx.t, &p, a, cap, err);
        int nb = tokenizer_encode_special(&fx.t, p.text, p.n_bytes, 0, b, cap, err);
        int eot_a = 0, eot_b = 0;
        for (int i = 0; i < na; i++)
            eot_a += a[i] == 128009;
        for (int i = 0; i < nb; i++)
            eot_b += b[i] == 128009;
        CHECK(na > 10 && a[0] == 128000 && eot_a == 2, "%d ids, first %d, %d <|eot_id|>", na,
              na > 0 ? a[0] : -1, eot_a);
        if (!with_marker)
            CHECK(na == nb && !memcmp(a, b, (size_t)na * sizeof *a),
                  "chat_prompt_encode differs from tokenizer_encode_special on a prompt "
                  "without special text in its content");
        else
            CHECK(eot_b == 3 && na > nb, "the typed marker: %d eot ids when parsed as special, "
                  "%d vs %d ids", eot_b, na, nb);
        free(a), free(b);
        chat_prompt_free(&p);
    }
    tok_fixture_close(&fx);
}

const struct test_case chat_tests[] = {
    {"chat_prompt_encode: special ids only from the template", test_chat_prompt_encode},
    {"chat_reference_renderings", test_chat_reference_renderings},
    {"chat_llama_family", test_chat_llama_family},
    {"chat_mistral_family", test_chat_mistral_family},
    {"chat_chatml_family", test_chat_chatml_family},
    {"chat_append_and_rollback", test_chat_append_and_rollback},
    {"chat_render_refusals", test_chat_render_refusals},
    {"chat_names", test_chat_names},
    {"chat_detect", test_chat_detect},
    {"chat_parse_messages", test_chat_parse_messages},
    {NULL, NULL},
};
