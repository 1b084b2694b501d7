/* run.c - the ./run command: loads a hearth model and generates text, chats,
 * tokenizes, prints logits, renders chat prompts, or verifies a file.
 *
 *   ./run [MODEL] [-i PROMPT] [-n STEPS] [sampling options] [--stop S]...
 *   ./run [MODEL] --chat [--system TEXT] [-i QUESTION] [--template NAME]
 *   ./run [MODEL] --tokenize TEXT | --ids "1 2 3" [--logits] | --verify | --info
 *   ./run --template NAME --render MESSAGES.json     (no model needed)
 *   ./run bench [options]                            (bench.c)
 *
 * Without MODEL it uses the small model `make` builds next to the binary.
 * Generation prints the prompt and streams the continuation to stdout as
 * llama2.c's run.c does, and timings to stderr. The prompt is prefilled in
 * batches (model_prefill), then tokens are decoded one at a time. This file
 * parses options and drives the library; it holds the only die() of the
 * engine and its one piece of global state, the Ctrl-C flag of chat mode. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "chat.h"
#include "err.h"
#include "json.h"
#include "kernels/kernels.h"
#include "model.h"
#include "quant.h"
#include "sampler.h"
#include "stop.h"
#include "threads.h"
#include "tokenizer.h"

#define DEFAULT_MODEL "models/stories260K.hearth"

/* The default context is the model's trained one, capped so that the KV
 * cache takes at most this share of physical memory. */
#define KV_BUDGET_DIVISOR 4

struct options {
    const char *model_path;
    const char *prompt;
    const char *tokenize_text;
    const char *ids_text;
    long steps;
    int steps_given;       /* -n was given: in chat it caps each reply */
    struct sampler_params sampling;
    long threads;          /* 0: one per online core */
    const char *kernels;   /* NULL: the best this CPU runs */
    int logits, verify, info;
    int special;           /* parse special-token text (e.g. <|eot_id|>) into ids */
    long batch;            /* prefill batch; 0: the engine's default */
    long ctx;              /* context positions; 0: the default (see choose_context) */
    uint32_t kv_type;      /* HEARTH_F16 (default) or HEARTH_F32 */
    const char *stops[STOP_MAX_STRINGS];
    int n_stops;
    int chat;
    const char *system;    /* chat: the system message */
    const char *template_name;
    const char *render_path;
    int verbose;           /* chat: report prefilled tokens per turn on stderr */
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: ./run [MODEL] [options]\n"
            "       ./run [MODEL] --chat [--system TEXT] [-i QUESTION] [--template NAME]\n"
            "       ./run --template NAME --render MESSAGES.json\n"
            "       ./run bench [--shape llama3.2-1b|tinyllama] [--types f32,q8_0,q4_0]\n"
            "                   [--threads N] [--kernels NAME] [--tokens N] [--repeats N]\n"
            "                   [--batch N] [--kv-type f16|f32]\n"
            "  MODEL             a hearth model file (default: %s next to ./run)\n"
            "  -i PROMPT         prompt text (default: empty, generation starts from BOS);\n"
            "                    with --chat: ask this one question, print the reply, exit\n"
            "  -n STEPS          positions to run, prompt included, as llama2.c (default 256;\n"
            "                    clamped to the context); with --chat: tokens per reply at\n"
            "                    most (default: no limit)\n"
            "sampling (llama.cpp's defaults):\n"
            "  -t, --temp T      temperature, 0 = greedy (default 0.8)\n"
            "  --top-k K         keep the K most likely tokens, 0 = off (default 40)\n"
            "  -p, --top-p P     nucleus mass in (0, 1], 1 = off (default 0.95)\n"
            "  --min-p P         drop tokens below P x the top probability, 0 = off (default 0.05)\n"
            "  --repeat-penalty F    > 0, 1 = off (default 1)\n"
            "  --frequency-penalty F, --presence-penalty F   in [-2, 2], 0 = off (default 0)\n"
            "  --repeat-last-n N the penalty window in tokens, -1 = whole context (default 64)\n"
            "  -s, --seed N      random seed (default: from the clock)\n"
            "  --stop TEXT       stop when the output would contain TEXT (not printed);\n"
            "                    repeatable, up to %d\n"
            "chat:\n"
            "  --chat            talk to an instruct model; the KV cache is kept across turns.\n"
            "                    Ctrl-D quits, Ctrl-C stops a reply, /reset starts over,\n"
            "                    /drop drops the oldest exchange\n"
            "  --system TEXT     the system message\n"
            "  --template NAME   the chat template, overriding the model's:\n"
            "                    %s\n"
            "  --render FILE     print the prompt --template makes of a JSON array of\n"
            "                    {\"role\", \"content\"} messages, and exit\n"
            "  -v                chat: print the tokens prefilled per turn to stderr\n"
            "context and speed:\n"
            "  --ctx N           context positions (default: the model's, capped so the KV cache\n"
            "                    fits in 1/%d of physical memory)\n"
            "  --batch N         prompt tokens per forward step, 1 = token by token (default %u)\n"
            "  --kv-type T       KV cache f16 (default) or f32 (exact comparisons)\n"
            "  --threads N       worker threads (default: one per online core)\n"
            "  --kernels NAME    force the kernels: scalar, avx2 or avx512 (default: the best\n"
            "                    this CPU runs)\n"
            "other:\n"
            "  --tokenize TEXT   print the token ids of TEXT (no BOS) and exit\n"
            "  --ids \"1 2 3\"     feed these token ids instead of a text prompt (no BOS added)\n"
            "  --special         let special-token text in the prompt or --tokenize TEXT\n"
            "                    (e.g. <|eot_id|>, <s>) become special ids; off by default\n"
            "  --logits          print the logits of the last prompt position, one %%.6f value\n"
            "                    per line, and exit\n"
            "  --verify          check the model file's checksum and exit\n"
            "  --info            print the model, the memory it needs, the CPU features seen\n"
            "                    and the kernels chosen\n"
            "  -h, --help        this text\n",
            DEFAULT_MODEL, STOP_MAX_STRINGS, chat_template_names(), KV_BUDGET_DIVISOR,
            STATE_DEFAULT_BATCH);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "run: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void die_usage(const char *what, const char *arg)
{
    fprintf(stderr, "run: %s%s\n", what, arg);
    usage(stderr);
    exit(2);
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("%s expects an integer in %ld..%ld, got '%s'", opt, lo, hi, s);
    return v;
}

static float parse_float(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        die("%s expects a number, got '%s'", opt, s);
    return v;
}

/* The default model lives next to the binary (make builds it there). */
static const char *default_model_path(void)
{
    static char path[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return DEFAULT_MODEL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return DEFAULT_MODEL;
    *slash = 0;
    snprintf(path, sizeof path, "%.*s/%s", (int)(sizeof path - sizeof DEFAULT_MODEL - 2), exe,
             DEFAULT_MODEL);
    return path;
}

static int is_flag(const char *a, struct options *o)
{
    int *flag = !strcmp(a, "--logits")    ? &o->logits
                : !strcmp(a, "--verify")  ? &o->verify
                : !strcmp(a, "--info")    ? &o->info
                : !strcmp(a, "--special") ? &o->special
                : !strcmp(a, "--chat")    ? &o->chat
                : !strcmp(a, "-v")        ? &o->verbose
                                          : NULL;
    if (flag)
        *flag = 1;
    return flag != NULL;
}

static int is(const char *a, const char *short_name, const char *long_name)
{
    return (short_name && !strcmp(a, short_name)) || (long_name && !strcmp(a, long_name));
}

/* The sampling options; returns 0 if a is none of them. */
static int parse_sampling(const char *a, const char *v, struct sampler_params *p)
{
    if (is(a, "-t", "--temp"))
        p->temperature = parse_float(a, v);
    else if (is(a, "-p", "--top-p"))
        p->top_p = parse_float(a, v);
    else if (is(a, NULL, "--top-k"))
        p->top_k = (int32_t)parse_long(a, v, INT32_MIN, INT32_MAX);
    else if (is(a, NULL, "--min-p"))
        p->min_p = parse_float(a, v);
    else if (is(a, NULL, "--repeat-penalty"))
        p->repeat_penalty = parse_float(a, v);
    else if (is(a, NULL, "--frequency-penalty"))
        p->frequency_penalty = parse_float(a, v);
    else if (is(a, NULL, "--presence-penalty"))
        p->presence_penalty = parse_float(a, v);
    else if (is(a, NULL, "--repeat-last-n"))
        p->penalty_last_n = (int32_t)parse_long(a, v, INT32_MIN, INT32_MAX);
    else if (is(a, "-s", "--seed"))
        p->seed = (uint64_t)parse_long(a, v, 0, LONG_MAX);
    else
        return 0;
    return 1;
}

/* Options that take a value; returns 0 if a is none of them. */
static int parse_valued(const char *a, const char *v, struct options *o)
{
    if (parse_sampling(a, v, &o->sampling))
        return 1;
    if (is(a, "-i", NULL))
        o->prompt = v;
    else if (is(a, "-n", NULL))
        o->steps = parse_long(a, v, 1, LONG_MAX), o->steps_given = 1;
    else if (is(a, NULL, "--tokenize"))
        o->tokenize_text = v;
    else if (is(a, NULL, "--ids"))
        o->ids_text = v;
    else if (is(a, NULL, "--threads"))
        o->threads = parse_long(a, v, 1, POOL_MAX_THREADS);
    else if (is(a, NULL, "--kernels"))
        o->kernels = v;
    else if (is(a, NULL, "--batch"))
        o->batch = parse_long(a, v, 1, 1 << 16);
    else if (is(a, NULL, "--ctx"))
        o->ctx = parse_long(a, v, 1, UINT32_MAX);
    else if (is(a, NULL, "--system"))
        o->system = v;
    else if (is(a, NULL, "--template"))
        o->template_name = v;
    else if (is(a, NULL, "--render"))
        o->render_path = v;
    else if (is(a, NULL, "--kv-type")) {
        if (strcmp(v, "f16") && strcmp(v, "f32"))
            die("--kv-type expects f16 or f32, got '%s'", v);
        o->kv_type = strcmp(v, "f16") ? HEARTH_F32 : HEARTH_F16;
    } else if (is(a, NULL, "--stop")) {
        if (o->n_stops == STOP_MAX_STRINGS)
            die("--stop: at most %d stop strings", STOP_MAX_STRINGS);
        o->stops[o->n_stops++] = v;
    } else
        return 0;
    return 1;
}

static struct options parse_args(int argc, char **argv)
{
    struct options o = {.steps = 256, .sampling = sampler_default_params(),
                        .kv_type = HEARTH_F16};
    o.sampling.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    int i = 1;
    if (i < argc && argv[i][0] != '-')
        o.model_path = argv[i++];
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (is_flag(a, &o)) {
            continue;
        } else if (!v) {
            die_usage(a[0] == '-' ? "unknown option or missing value: " : "unexpected argument: ",
                      a);
        } else if (parse_valued(a, v, &o)) {
            i++;
        } else {
            die_usage(a[0] == '-' ? "unknown option: " : "unexpected argument: ", a);
        }
    }
    if (o.prompt && o.ids_text)
        die("-i and --ids are exclusive: give a text prompt or token ids, not both");
    char err[HEARTH_ERR_BYTES];
    if (sampler_check_params(&o.sampling, err) < 0)
        die("%s", err);
    if (!o.model_path)
        o.model_path = default_model_path();
    return o;
}

/* Parses "1 345 22" into ids (malloc'd); every id must be below vocab_size. */
static int32_t *parse_ids(const char *text, uint32_t vocab_size, size_t *n_ids)
{
    size_t cap = strlen(text) / 2 + 1, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        die("out of memory");
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p) {
            if (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',') {
                p++;
                continue;
            }
            die("--ids: '%s' is not a list of token ids", text);
        }
        if (errno || v < 0 || v >= (long)vocab_size)
            die("--ids: token id %.20s is outside 0..%u", p, vocab_size - 1);
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (n == 0)
        die("--ids: no token ids given");
    *n_ids = n;
    return ids;
}

/* A BOS goes first unless the tokenizer says its model takes none (Qwen2). */
static int adds_bos(const struct model *m)
{
    return !(m->tok.hdr.flags & HEARTH_TOK_NO_BOS);
}

static int32_t *encode_prompt(const struct model *m, const char *text, int add_bos, int special,
                              size_t *n_ids)
{
    char err[HEARTH_ERR_BYTES];
    size_t len = strlen(text), cap = tokenizer_max_ids(len);
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        die("out of memory");
    int n = special ? tokenizer_encode_special(&m->tok, text, len, add_bos, ids, cap, err)
                    : tokenizer_encode(&m->tok, text, len, add_bos, ids, cap, err);
    if (n < 0)
        die("%s", err);
    *n_ids = (size_t)n;
    return ids;
}

/* What runs the model: kernels and threads, chosen once. */
struct engine {
    const struct kernels *kern;
    struct thread_pool *pool;
};

static struct engine engine_start(const struct options *o)
{
    char err[HEARTH_ERR_BYTES];
    struct engine e;
    e.kern = kernels_select(o->kernels, err);
    if (!e.kern)
        die("--kernels: %s", err);
    long n = o->threads ? o->threads : sysconf(_SC_NPROCESSORS_ONLN);
    e.pool = pool_create(n < 1 ? 1 : (int)n, err);
    if (!e.pool)
        die("%s", err);
    return e;
}

static uint64_t physical_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
}

/* The context: --ctx, which may not exceed the trained context (the file's
 * max_seq_len already counts any rope scaling the model was trained with),
 * or by default the trained context capped to the KV budget. */
static uint32_t choose_context(const struct model *m, const struct options *o)
{
    uint32_t trained = m->cfg.max_seq_len;
    if (o->ctx) {
        if ((uint64_t)o->ctx > trained)
            die("--ctx %ld exceeds the model's trained context of %u positions; hearth runs a "
                "model only within it (its rope scaling, if any, is already counted there)",
                o->ctx, trained);
        return (uint32_t)o->ctx;
    }
    uint64_t per_block = state_kv_bytes(m, KV_BLOCK, o->kv_type);
    uint64_t fit = physical_bytes() / KV_BUDGET_DIVISOR / per_block * KV_BLOCK;
    return fit < trained ? (uint32_t)(fit > KV_BLOCK ? fit : KV_BLOCK) : trained;
}

static struct state_options state_options_for(const struct engine *e, const struct options *o,
                                              uint32_t positions)
{
    return (struct state_options){positions, (uint32_t)o->batch, o->kv_type, e->kern, e->pool};
}

/* Opens a state, refusing before any allocation what cannot fit in memory. */
static void open_state(struct state *s, const struct model *m, const struct state_options *so)
{
    char err[HEARTH_ERR_BYTES];
    uint64_t need = state_bytes(m, so), have = physical_bytes();
    if (need > have)
        die("a %u-position context needs %llu MiB for the KV cache and activations, more than "
            "this machine's %llu MiB of memory; use a smaller --ctx", so->max_seq,
            (unsigned long long)(need >> 20), (unsigned long long)(have >> 20));
    if (state_open(s, m, so, err) < 0)
        die("%s", err);
}

static void print_info(const struct model *m, const struct engine *e, const struct options *o)
{
    const struct hearth_header *h = &m->cfg;
    struct cpu_features f;
    cpu_detect(&f);
    printf("model: %s\n", m->path);
    printf("  dim %u, hidden %u, layers %u, heads %u, kv heads %u, head dim %u, vocab %u, "
           "context %u\n", h->dim, h->hidden_dim, h->n_layers, h->n_heads, h->n_kv_heads,
           h->head_dim, h->vocab_size, h->max_seq_len);
    printf("  weights: embedding %s, attn_q %s, ffn_down %s, classifier %s%s; %llu bytes\n",
           hearth_type_name(m->token_embd.type), hearth_type_name(m->layers[0].attn_q.type),
           hearth_type_name(m->layers[0].ffn_down.type), hearth_type_name(m->output.type),
           h->flags & HEARTH_FLAG_TIED_EMBEDDINGS ? " (tied)" : "",
           (unsigned long long)m->map_bytes);
    printf("  chat template: %s\n", h->chat_template ? chat_template_name(h->chat_template)
                                                     : "none");
    uint32_t ctx = choose_context(m, o);
    struct state_options so = state_options_for(e, o, ctx);
    uint64_t kv = state_kv_bytes(m, ctx, o->kv_type), all = state_bytes(m, &so);
    printf("memory: context %u positions%s, KV cache %s %.1f MiB, activations %.1f MiB "
           "(batch %u), weights %.1f MiB (mapped)\n", ctx,
           ctx < h->max_seq_len && !o->ctx ? " (capped to 1/4 of RAM for the KV cache)" : "",
           o->kv_type == HEARTH_F16 ? "f16" : "f32", (double)kv / (1 << 20),
           (double)(all - kv) / (1 << 20), o->batch ? (uint32_t)o->batch : STATE_DEFAULT_BATCH,
           (double)m->map_bytes / (1 << 20));
    printf("cpu features: avx2 %d, fma %d, f16c %d, avx512f %d, avx512bw %d, avx512vl %d, "
           "avx512vnni %d, avxvnni %d\n", f.avx2, f.fma, f.f16c, f.avx512f, f.avx512bw,
           f.avx512vl, f.avx512vnni, f.avxvnni);
    printf("kernels: %s\nthreads: %d\n", e->kern->name, pool_size(e->pool));
}

static void print_tokenization(const struct model *m, const char *text, int special)
{
    size_t n;
    int32_t *ids = encode_prompt(m, text, 0, special, &n);
    for (size_t i = 0; i < n; i++)
        printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
}

static void print_logits(const struct model *m, const struct engine *e, const struct options *o,
                         const int32_t *ids, size_t n_ids)
{
    struct state s;
    struct state_options so = state_options_for(e, o, (uint32_t)n_ids);
    open_state(&s, m, &so);
    float *logits = model_prefill(m, &s, ids, (uint32_t)n_ids, 0);
    for (uint32_t i = 0; i < m->cfg.vocab_size; i++)
        printf("%.6f\n", logits[i]);
    state_free(&s);
}

/* --template NAME --render FILE: the prompt text, byte for byte. */
static void render_file(const struct options *o)
{
    char err[HEARTH_ERR_BYTES];
    if (!o->template_name)
        die("--render needs --template NAME (%s)", chat_template_names());
    int id = chat_template_by_name(o->template_name);
    if (id < 0)
        die("--template: unknown template '%s'; known ones are: %s", o->template_name,
            chat_template_names());
    struct json_doc *doc;
    if (json_parse_file(o->render_path, 64u << 20, 64, &doc, err) < 0)
        die("%s", err);
    struct chat_message *msgs;
    size_t n_msgs;
    struct chat_prompt p;
    chat_prompt_init(&p);
    if (chat_messages_from_json(json_root(doc), &msgs, &n_msgs, err) < 0 ||
        chat_render((uint32_t)id, msgs, n_msgs, 1, &p, err) < 0)
        die("%s: %s", o->render_path, err);
    fwrite(p.text, 1, p.n_bytes, stdout);
    chat_prompt_free(&p);
    free(msgs);
    json_free(doc);
}

static int is_stop_id(const struct hearth_header *h, int32_t id, int32_t end_of_turn)
{
    if (id == end_of_turn)
        return 1;
    for (uint32_t i = 0; i < h->n_stop_ids; i++)
        if ((uint32_t)id == h->stop_ids[i])
            return 1;
    return 0;
}

/* Streams decoded tokens to stdout: whole UTF-8 characters only, special
 * tokens as nothing, text held back while it could be the start of a stop
 * string. Buffers are sized once from the longest piece (tokenizer.h:
 * decode needs max_piece_bytes + 5, the UTF-8 stream three bytes per input
 * byte plus four), so the generation loop allocates nothing. Optionally the
 * printed text is also appended to a growing reply (chat history). */
struct printer {
    struct utf8_stream stream;
    struct stop_matcher stop;
    char *piece, *text, *out;
    size_t piece_cap;
    char *reply;           /* chat: the text printed this turn */
    size_t reply_len, reply_cap;
};

static void printer_init(struct printer *p, const struct model *m, const struct options *o)
{
    char err[HEARTH_ERR_BYTES];
    *p = (struct printer){0};
    stop_init(&p->stop);
    for (int i = 0; i < o->n_stops; i++)
        if (stop_add(&p->stop, o->stops[i], strlen(o->stops[i]), err) < 0)
            die("--stop: %s", err);
    p->piece_cap = (size_t)m->tok.hdr.max_piece_bytes + 5;
    p->piece = malloc(p->piece_cap);
    p->text = malloc(3 * (p->piece_cap + 4));
    p->out = malloc(STOP_OUT_BYTES(3 * (p->piece_cap + 4)));
    if (!p->piece || !p->text || !p->out)
        die("out of memory");
}

static void printer_write(struct printer *p, const char *s, size_t n)
{
    fwrite(s, 1, n, stdout);
    fflush(stdout);
    if (!p->reply_cap)
        return;
    if (p->reply_len + n + 1 > p->reply_cap) {
        size_t cap = 2 * (p->reply_len + n + 1);
        char *r = realloc(p->reply, cap);
        if (!r)
            die("out of memory");
        p->reply = r, p->reply_cap = cap;
    }
    memcpy(p->reply + p->reply_len, s, n);
    p->reply_len += n;
    p->reply[p->reply_len] = 0;
}

/* Prints token id (after prev), through the stop matcher if match_stops
 * (generated text; an echoed prompt is not matched); returns 1 once a stop
 * string has matched. */
static int printer_emit(const struct model *m, struct printer *p, int32_t prev, int32_t id,
                        int match_stops)
{
    size_t n = tokenizer_decode(&m->tok, prev, id, p->piece, p->piece_cap);
    size_t k = utf8_stream_push(&p->stream, p->piece, n, p->text);
    if (!match_stops) {
        printer_write(p, p->text, k);
        return 0;
    }
    printer_write(p, p->out, stop_feed(&p->stop, p->text, k, p->out));
    return stop_matched(&p->stop) >= 0;
}

/* Ends a text: what the UTF-8 stream and the stop matcher held back. */
static void printer_end_text(struct printer *p)
{
    size_t k = utf8_stream_flush(&p->stream, p->text);
    size_t n = stop_feed(&p->stop, p->text, k, p->out);
    n += stop_flush(&p->stop, p->out + n);
    printer_write(p, p->out, n);
    p->stream = (struct utf8_stream){0};
    stop_reset(&p->stop);
}

static void printer_free(struct printer *p)
{
    free(p->piece);
    free(p->text);
    free(p->out);
    free(p->reply);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sampler_open(struct sampler *s, const struct model *m, const struct options *o,
                         uint32_t ctx)
{
    char err[HEARTH_ERR_BYTES];
    if (sampler_init(s, m->cfg.vocab_size, ctx, &o->sampling, err) < 0)
        die("%s", err);
}

/* Runs `steps` positions as llama2.c does: the prompt is forced (prefilled
 * in batches), then tokens are sampled until a stop id, a stop string or
 * the last step; every token after the first is printed. */
static void generate(const struct model *m, const struct engine *e, const struct options *o,
                     const int32_t *prompt, size_t n_prompt, uint32_t steps)
{
    struct state s;
    struct sampler sampler;
    struct state_options so = state_options_for(e, o, steps);
    open_state(&s, m, &so);
    sampler_open(&sampler, m, o, steps);
    struct printer printer;
    printer_init(&printer, m, o);
    for (size_t i = 0; i < n_prompt; i++)
        sampler_accept(&sampler, prompt[i]);
    double start = now_s();
    float *logits = model_prefill(m, &s, prompt, (uint32_t)n_prompt, 0);
    double first = now_s();
    for (size_t i = 1; i < n_prompt; i++)
        printer_emit(m, &printer, prompt[i - 1], prompt[i], 0);
    int32_t token = prompt[n_prompt - 1];
    uint32_t pos = (uint32_t)n_prompt - 1, n_generated = 0;
    while (pos < steps) {
        int32_t next = sampler_sample(&sampler, logits);
        n_generated++;
        if (is_stop_id(&m->cfg, next, -1) || printer_emit(m, &printer, token, next, 1))
            break;
        sampler_accept(&sampler, next);
        token = next;
        if (++pos < steps)
            logits = model_forward(m, &s, token, pos);
    }
    printer_end_text(&printer);
    printf("\n");
    double end = now_s();
    fprintf(stderr, "prompt: %zu tokens in %.3f s (%.1f tokens/s); generated: %u tokens in "
            "%.3f s (%.1f tokens/s)\n", n_prompt, first - start,
            first > start ? (double)n_prompt / (first - start) : 0.0, n_generated, end - first,
            end > first ? n_generated / (end - first) : 0.0);
    printer_free(&printer);
    sampler_free(&sampler);
    state_free(&s);
}

/* ------------------------------------------------------------------ chat */

/* Set by SIGINT while a reply streams: stop it, keep the conversation. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* A conversation and the tokens already in the KV cache. Each turn renders
 * the whole conversation with the template, tokenizes it, and prefills only
 * what follows the longest prefix shared with the cached tokens. */
struct chat {
    const struct model *m;
    struct state s;
    struct sampler sampler;
    struct printer printer;
    uint32_t template_id;
    int32_t end_of_turn;      /* the template's end-of-turn id, or -1 */
    struct chat_message *msgs;
    size_t n_msgs, cap_msgs;
    int32_t *cached;          /* the tokens at positions 0 .. n_cached - 1 */
    uint32_t n_cached, ctx;
    uint32_t max_reply;       /* tokens per reply at most (-n), or UINT32_MAX */
    int32_t *ids;             /* this turn's prompt tokens */
    size_t ids_cap;
    int verbose;
};

static char *copy_text(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (!c)
        die("out of memory");
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

static void chat_push(struct chat *c, const char *role, const char *content, size_t n)
{
    if (c->n_msgs == c->cap_msgs) {
        c->cap_msgs = c->cap_msgs ? 2 * c->cap_msgs : 8;
        c->msgs = realloc(c->msgs, c->cap_msgs * sizeof *c->msgs);
        if (!c->msgs)
            die("out of memory");
    }
    c->msgs[c->n_msgs++] = (struct chat_message){role, strlen(role), copy_text(content, n), n};
}

/* Removes messages [from, from + count). */
static void chat_remove(struct chat *c, size_t from, size_t count)
{
    for (size_t i = from; i < from + count; i++)
        free((char *)c->msgs[i].content);
    memmove(c->msgs + from, c->msgs + from + count,
            (c->n_msgs - from - count) * sizeof *c->msgs);
    c->n_msgs -= count;
}

static size_t first_turn(const struct chat *c)
{
    return c->n_msgs && !strcmp(c->msgs[0].role, "system") ? 1 : 0;
}

/* The template's end-of-turn marker as a token id, if it is one token. */
static int32_t end_of_turn_id(const struct model *m, uint32_t template_id)
{
    const char *eot = chat_template_end_of_turn(template_id);
    int32_t ids[8];
    char err[HEARTH_ERR_BYTES];
    if (!eot)
        return -1;
    int n = tokenizer_encode_special(&m->tok, eot, strlen(eot), 0, ids, 8, err);
    return n == 1 ? ids[0] : -1;
}

/* The rendered prompt as token ids (chat_prompt_encode: special tokens
 * only where the template wrote them). */
static size_t chat_tokenize(struct chat *c, const struct chat_prompt *p)
{
    char err[HEARTH_ERR_BYTES];
    size_t cap = tokenizer_max_ids(p->n_bytes);
    if (cap > c->ids_cap) {
        c->ids = realloc(c->ids, cap * sizeof *c->ids);
        if (!c->ids)
            die("out of memory");
        c->ids_cap = cap;
    }
    int n = chat_prompt_encode(&c->m->tok, p, c->ids, cap, err);
    if (n < 0)
        die("%s", err);
    return (size_t)n;
}

/* Prefills the part of ids[0..n) that the cache does not hold yet. */
static float *chat_prefill(struct chat *c, size_t n)
{
    uint32_t keep = 0;
    while (keep < c->n_cached && keep + 1 < n && c->cached[keep] == c->ids[keep])
        keep++;
    if (c->verbose)
        fprintf(stderr, "[prefill %zu tokens, %u reused from the cache]\n", n - keep, keep);
    memcpy(c->cached + keep, c->ids + keep, (n - keep) * sizeof *c->ids);
    for (size_t i = keep; i < n; i++)
        sampler_accept(&c->sampler, c->ids[i]);
    c->n_cached = (uint32_t)n;
    return model_prefill(c->m, &c->s, c->ids + keep, (uint32_t)(n - keep), keep);
}

/* Streams one reply from logits; returns its text (owned by the printer). */
static void chat_reply(struct chat *c, float *logits)
{
    struct printer *p = &c->printer;
    p->reply_len = 0;
    if (p->reply)
        p->reply[0] = 0;
    int32_t token = c->cached[c->n_cached - 1];
    interrupted = 0;
    for (uint32_t n = 0; n < c->max_reply && !interrupted; n++) {
        int32_t next = sampler_sample(&c->sampler, logits);
        if (is_stop_id(&c->m->cfg, next, c->end_of_turn) || printer_emit(c->m, p, token, next, 1))
            break;
        sampler_accept(&c->sampler, next);
        if (c->n_cached == c->ctx) {
            fprintf(stderr, "\n[context full: reply cut at %u positions]", c->ctx);
            break;
        }
        c->cached[c->n_cached] = next;
        logits = model_forward(c->m, &c->s, next, c->n_cached++);
        token = next;
    }
    if (interrupted)
        fprintf(stderr, "\n[interrupted]");
    printer_end_text(p);
    printf("\n");
    fflush(stdout);
}

/* One user turn: render, prefill what is new, reply. Returns 0, or -1 if
 * the conversation no longer fits the context (the turn is withdrawn). */
static int chat_turn(struct chat *c, const char *text, size_t n)
{
    char err[HEARTH_ERR_BYTES];
    chat_push(c, "user", text, n);
    struct chat_prompt p;
    chat_prompt_init(&p);
    if (chat_render(c->template_id, c->msgs, c->n_msgs, 1, &p, err) < 0)
        die("%s", err);
    size_t n_ids = chat_tokenize(c, &p);
    chat_prompt_free(&p);
    if (n_ids >= c->ctx) {
        fprintf(stderr, "[context full: the conversation is %zu tokens and the context holds %u. "
                "Type /drop to drop the oldest exchange (the system message stays), /reset to "
                "start over, or restart with a larger --ctx]\n", n_ids, c->ctx);
        chat_remove(c, c->n_msgs - 1, 1);
        return -1;
    }
    chat_reply(c, chat_prefill(c, n_ids));
    const struct printer *pr = &c->printer;
    chat_push(c, "assistant", pr->reply ? pr->reply : "", pr->reply_len);
    return 0;
}

static void chat_open(struct chat *c, const struct model *m, const struct engine *e,
                      const struct options *o)
{
    memset(c, 0, sizeof *c);
    c->m = m;
    c->verbose = o->verbose;
    c->max_reply = o->steps_given ? (uint32_t)(o->steps < UINT32_MAX ? o->steps : UINT32_MAX)
                                  : UINT32_MAX;
    if (o->template_name) {
        int id = chat_template_by_name(o->template_name);
        if (id < 0)
            die("--template: unknown template '%s'; known ones are: %s", o->template_name,
                chat_template_names());
        c->template_id = (uint32_t)id;
    } else {
        c->template_id = m->cfg.chat_template;
        if (c->template_id == HEARTH_CHAT_NONE)
            die("%s has no chat template; choose one with --template NAME (%s)", m->path,
                chat_template_names());
    }
    c->end_of_turn = end_of_turn_id(m, c->template_id);
    c->ctx = choose_context(m, o);
    struct state_options so = state_options_for(e, o, c->ctx);
    open_state(&c->s, m, &so);
    sampler_open(&c->sampler, m, o, c->ctx);
    printer_init(&c->printer, m, o);
    c->printer.reply_cap = 256;
    c->printer.reply = malloc(c->printer.reply_cap);
    c->cached = malloc((size_t)c->ctx * sizeof *c->cached);
    if (!c->printer.reply || !c->cached)
        die("out of memory");
    if (o->system)
        chat_push(c, "system", o->system, strlen(o->system));
}

static void chat_close(struct chat *c)
{
    chat_remove(c, 0, c->n_msgs);
    free(c->msgs);
    free(c->cached);
    free(c->ids);
    printer_free(&c->printer);
    sampler_free(&c->sampler);
    state_free(&c->s);
}

/* /reset and /drop; returns 1 if line was one of them. */
static int chat_command(struct chat *c, const char *line)
{
    if (!strcmp(line, "/reset")) {
        chat_remove(c, first_turn(c), c->n_msgs - first_turn(c));
        c->n_cached = 0;
        sampler_reset(&c->sampler);
        fprintf(stderr, "[conversation reset]\n");
        return 1;
    }
    if (!strcmp(line, "/drop")) {
        size_t from = first_turn(c), n = c->n_msgs - from < 2 ? c->n_msgs - from : 2;
        chat_remove(c, from, n);
        fprintf(stderr, "[dropped the oldest %zu message%s]\n", n, n == 1 ? "" : "s");
        return 1;
    }
    return 0;
}

static void chat_loop(const struct model *m, const struct engine *e, const struct options *o)
{
    struct chat c;
    chat_open(&c, m, e, o);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint; /* no SA_RESTART: Ctrl-C interrupts a read too */
    sigaction(SIGINT, &sa, NULL);
    if (o->prompt) {
        chat_turn(&c, o->prompt, strlen(o->prompt));
        chat_close(&c);
        return;
    }
    int tty = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty)
            fprintf(stderr, "> ");
        interrupted = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0 && interrupted) {
            clearerr(stdin);
            fprintf(stderr, "\n[Ctrl-D quits]\n");
            continue;
        }
        if (n < 0)
            break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0 || chat_command(&c, line))
            continue;
        chat_turn(&c, line, (size_t)n);
    }
    free(line);
    chat_close(&c);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "bench"))
        return bench_main(argc - 2, argv + 2);
    struct options o = parse_args(argc, argv);
    if (o.render_path) {
        render_file(&o);
        return 0;
    }
    struct engine engine = engine_start(&o);
    char err[HEARTH_ERR_BYTES];
    struct model m;
    if (model_open(&m, o.model_path, err) < 0)
        die("%s", err);
    if (o.info) {
        print_info(&m, &engine, &o);
    } else if (o.verify) {
        if (model_verify_checksum(&m, err) < 0)
            die("%s", err);
        printf("%s: checksum ok\n", o.model_path);
    } else if (o.tokenize_text) {
        print_tokenization(&m, o.tokenize_text, o.special);
    } else if (o.chat) {
        chat_loop(&m, &engine, &o);
    } else {
        size_t n_prompt;
        int32_t *prompt = o.ids_text ? parse_ids(o.ids_text, m.cfg.vocab_size, &n_prompt)
                                     : encode_prompt(&m, o.prompt ? o.prompt : "", adds_bos(&m),
                                                     o.special, &n_prompt);
        uint32_t ctx = choose_context(&m, &o);
        if (n_prompt == 0)
            die("the prompt is empty and this model adds no BOS: give a prompt with -i");
        if (n_prompt > ctx)
            die("the prompt is %zu tokens, longer than the context of %u positions%s", n_prompt,
                ctx, o.ctx ? "" : " (--ctx sets it)");
        if (o.logits) {
            print_logits(&m, &engine, &o, prompt, n_prompt);
        } else {
            if (o.steps > (long)ctx) {
                fprintf(stderr, "run: -n %ld exceeds the context; clamped to %u\n", o.steps, ctx);
                o.steps = ctx;
            }
            uint32_t steps = (uint32_t)o.steps < n_prompt ? (uint32_t)n_prompt : (uint32_t)o.steps;
            generate(&m, &engine, &o, prompt, n_prompt, steps);
        }
        free(prompt);
    }
    model_close(&m);
    pool_destroy(engine.pool);
    return 0;
}
