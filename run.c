/* run.c - the ./run command: loads a hearth model and generates text, or
 * tokenizes, or prints logits, or verifies a file.
 *
 *   ./run [MODEL] [-i PROMPT] [-n STEPS] [-t TEMP] [-p TOP_P] [-s SEED]
 *   ./run [MODEL] --tokenize TEXT | --ids "1 2 3" [--logits] | --verify | --info
 *   ./run bench [options]                       (bench.c)
 *
 * Without MODEL it uses the small model `make` builds next to the binary.
 * Generation prints the prompt and streams the continuation to stdout as
 * llama2.c's run.c does, and one tokens/s line to stderr. This file parses
 * options and drives the library; it holds the only die() of the engine. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "err.h"
#include "kernels/kernels.h"
#include "model.h"
#include "quant.h"
#include "sampler.h"
#include "threads.h"
#include "tokenizer.h"

#define DEFAULT_MODEL "models/stories260K.hearth"

struct options {
    const char *model_path;
    const char *prompt;
    const char *tokenize_text;
    const char *ids_text;
    long steps;
    float temperature, top_p;
    uint64_t seed;
    long threads;          /* 0: one per online core */
    const char *kernels;   /* NULL: the best this CPU runs */
    int logits, verify, info;
    int special;           /* parse special-token text (e.g. <|eot_id|>) into ids */
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: ./run [MODEL] [options]\n"
            "       ./run bench [--shape llama3.2-1b|tinyllama] [--types f32,q8_0,q4_0]\n"
            "                   [--threads N] [--kernels NAME] [--tokens N] [--repeats N]\n"
            "  MODEL             a hearth model file (default: %s next to ./run)\n"
            "  -i PROMPT         prompt text (default: empty, generation starts from BOS)\n"
            "  -n STEPS          positions to run, prompt included, as llama2.c (default 256;\n"
            "                    clamped to the model's context)\n"
            "  -t TEMPERATURE    0 = greedy (default 1.0)\n"
            "  -p TOP_P          nucleus sampling mass in (0, 1] (default 0.9)\n"
            "  -s SEED           random seed (default: from the clock)\n"
            "  --tokenize TEXT   print the token ids of TEXT (no BOS) and exit\n"
            "  --ids \"1 2 3\"     feed these token ids instead of a text prompt (no BOS added)\n"
            "  --special         let special-token text in the prompt or --tokenize TEXT\n"
            "                    (e.g. <|eot_id|>, <s>) become special ids; off by default\n"
            "  --logits          print the logits of the last prompt position, one %%.6f value\n"
            "                    per line, and exit\n"
            "  --verify          check the model file's checksum and exit\n"
            "  --threads N       worker threads (default: one per online core)\n"
            "  --kernels NAME    force the kernels: scalar, avx2 or avx512 (default: the best\n"
            "                    this CPU runs)\n"
            "  --info            print the model, the CPU features seen and the kernels chosen\n"
            "  -h, --help        this text\n",
            DEFAULT_MODEL);
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

static struct options parse_args(int argc, char **argv)
{
    struct options o = {.steps = 256, .temperature = 1.0f, .top_p = 0.9f,
                        .seed = (uint64_t)time(NULL)};
    int i = 1;
    if (i < argc && argv[i][0] != '-')
        o.model_path = argv[i++];
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--logits")) {
            o.logits = 1;
        } else if (!strcmp(a, "--verify")) {
            o.verify = 1;
        } else if (!strcmp(a, "--info")) {
            o.info = 1;
        } else if (!strcmp(a, "--special")) {
            o.special = 1;
        } else if (!v) {
            die_usage(a[0] == '-' ? "unknown option or missing value: " : "unexpected argument: ",
                      a);
        } else if (!strcmp(a, "-i")) {
            o.prompt = v, i++;
        } else if (!strcmp(a, "-n")) {
            o.steps = parse_long("-n", v, 1, LONG_MAX), i++;
        } else if (!strcmp(a, "-t")) {
            o.temperature = parse_float("-t", v), i++;
        } else if (!strcmp(a, "-p")) {
            o.top_p = parse_float("-p", v), i++;
        } else if (!strcmp(a, "-s")) {
            o.seed = (uint64_t)parse_long("-s", v, 0, LONG_MAX), i++;
        } else if (!strcmp(a, "--tokenize")) {
            o.tokenize_text = v, i++;
        } else if (!strcmp(a, "--ids")) {
            o.ids_text = v, i++;
        } else if (!strcmp(a, "--threads")) {
            o.threads = parse_long("--threads", v, 1, POOL_MAX_THREADS), i++;
        } else if (!strcmp(a, "--kernels")) {
            o.kernels = v, i++;
        } else {
            die_usage(a[0] == '-' ? "unknown option: " : "unexpected argument: ", a);
        }
    }
    if (o.prompt && o.ids_text)
        die("-i and --ids are exclusive: give a text prompt or token ids, not both");
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

static void print_info(const struct model *m, const struct engine *e)
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

static void print_logits(const struct model *m, const struct engine *e, const int32_t *ids,
                         size_t n_ids)
{
    char err[HEARTH_ERR_BYTES];
    struct state s;
    if (state_init(&s, m, (uint32_t)n_ids, e->kern, e->pool, err) < 0)
        die("%s", err);
    float *logits = NULL;
    for (size_t pos = 0; pos < n_ids; pos++)
        logits = model_forward(m, &s, ids[pos], (uint32_t)pos);
    for (uint32_t i = 0; i < m->cfg.vocab_size; i++)
        printf("%.6f\n", logits[i]);
    state_free(&s);
}

static int is_stop(const struct hearth_header *h, int32_t id)
{
    for (uint32_t i = 0; i < h->n_stop_ids; i++)
        if ((uint32_t)id == h->stop_ids[i])
            return 1;
    return 0;
}

/* Output buffers sized once from the longest piece (tokenizer.h: decode
 * needs max_piece_bytes + 5, the UTF-8 stream three bytes per input byte
 * plus four), so the generation loop allocates nothing. */
struct printer {
    struct utf8_stream stream;
    char *piece, *text;
    size_t piece_cap;
};

static void printer_init(struct printer *p, const struct model *m)
{
    p->stream = (struct utf8_stream){0};
    p->piece_cap = (size_t)m->tok.hdr.max_piece_bytes + 5;
    p->piece = malloc(p->piece_cap);
    p->text = malloc(3 * (p->piece_cap + 4));
    if (!p->piece || !p->text)
        die("out of memory");
}

static void emit(const struct model *m, struct printer *p, int32_t prev, int32_t id)
{
    size_t n = tokenizer_decode(&m->tok, prev, id, p->piece, p->piece_cap);
    size_t k = utf8_stream_push(&p->stream, p->piece, n, p->text);
    fwrite(p->text, 1, k, stdout);
    fflush(stdout);
}

static void printer_finish(struct printer *p)
{
    fwrite(p->text, 1, utf8_stream_flush(&p->stream, p->text), stdout);
    printf("\n");
    free(p->piece);
    free(p->text);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs `steps` positions: the prompt is forced, then tokens are sampled
 * until a stop id or the last step; every token after the first is printed. */
static void generate(const struct model *m, const struct engine *e, const struct options *o,
                     const int32_t *prompt, size_t n_prompt, uint32_t steps)
{
    char err[HEARTH_ERR_BYTES];
    struct state s;
    struct sampler sampler;
    if (state_init(&s, m, steps, e->kern, e->pool, err) < 0 ||
        sampler_init(&sampler, m->cfg.vocab_size, o->temperature, o->top_p, o->seed, err) < 0)
        die("%s", err);
    struct printer printer;
    printer_init(&printer, m);
    int32_t token = prompt[0];
    uint32_t pos = 0, n_generated = 0;
    double start = now_s();
    while (pos < steps) {
        float *logits = model_forward(m, &s, token, pos);
        int32_t next;
        if (pos + 1 < n_prompt) {
            next = prompt[pos + 1];
        } else {
            next = sampler_sample(&sampler, logits);
            n_generated++;
            if (is_stop(&m->cfg, next))
                break;
        }
        pos++;
        emit(m, &printer, token, next);
        token = next;
    }
    printer_finish(&printer);
    double elapsed = now_s() - start;
    fprintf(stderr, "%u positions (%zu prompt, %u generated) in %.3f s: %.1f tokens/s\n", pos,
            n_prompt, n_generated, elapsed, elapsed > 0 ? pos / elapsed : 0.0);
    sampler_free(&sampler);
    state_free(&s);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "bench"))
        return bench_main(argc - 2, argv + 2);
    struct options o = parse_args(argc, argv);
    struct engine engine = engine_start(&o);
    char err[HEARTH_ERR_BYTES];
    struct model m;
    if (model_open(&m, o.model_path, err) < 0)
        die("%s", err);
    if (o.info) {
        print_info(&m, &engine);
    } else if (o.verify) {
        if (model_verify_checksum(&m, err) < 0)
            die("%s", err);
        printf("%s: checksum ok\n", o.model_path);
    } else if (o.tokenize_text) {
        print_tokenization(&m, o.tokenize_text, o.special);
    } else {
        size_t n_prompt;
        int32_t *prompt = o.ids_text ? parse_ids(o.ids_text, m.cfg.vocab_size, &n_prompt)
                                     : encode_prompt(&m, o.prompt ? o.prompt : "", 1, o.special,
                                                     &n_prompt);
        uint32_t ctx = m.cfg.max_seq_len;
        if (n_prompt > ctx)
            die("the prompt is %zu tokens, longer than the model's context of %u", n_prompt, ctx);
        if (o.logits) {
            print_logits(&m, &engine, prompt, n_prompt);
        } else {
            if (o.steps > (long)ctx) {
                fprintf(stderr, "run: -n %ld exceeds the model's context; clamped to %u\n",
                        o.steps, ctx);
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
