/* exporter/export.c - the ./export command: turns a downloaded model into a
 * hearth model file.
 *
 *   ./export SOURCE -o OUT [--type f32] [--tokenizer FILE] [--quiet]
 *
 * SOURCE is a Hugging Face model folder (config.json, safetensors,
 * tokenizer.model or tokenizer.json), a GGUF file (recognised by its magic
 * "GGUF"), or a llama2.c checkpoint (with its tokenizer given as
 * --tokenizer: llama2.c tokenizer.bin or SentencePiece tokenizer.model).
 * This file only parses the command line, picks the reader and reports; the
 * readers and the writer do the work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../chat.h"
#include "../quant.h"
#include "source.h"

static void usage(FILE *to)
{
    fprintf(to,
            "usage: ./export SOURCE -o OUT [options]\n"
            "  SOURCE             a Hugging Face model folder, a GGUF file, or a llama2.c\n"
            "                     checkpoint file\n"
            "  -o, --output OUT   the hearth model file to write\n"
            "  --type TYPE        weight type of the 2-D matrices: f32 (default), q8_0, q4_0\n"
            "  --tokenizer FILE   tokenizer for a llama2.c checkpoint: tokenizer.bin or\n"
            "                     tokenizer.model (a folder or GGUF file brings its own)\n"
            "  -q, --quiet        print nothing but errors\n"
            "  -h, --help         this text\n");
}

static void die(const char *msg)
{
    fprintf(stderr, "export: %s\n", msg);
    exit(1);
}

static void die_usage(const char *msg)
{
    fprintf(stderr, "export: %s\n", msg);
    usage(stderr);
    exit(2);
}

struct options {
    const char *source, *output, *tokenizer;
    uint32_t type;
    int quiet;
};

static uint32_t parse_type(const char *name)
{
    if (!strcmp(name, "f32"))
        return HEARTH_F32;
    if (!strcmp(name, "q8_0"))
        return HEARTH_Q8_0;
    if (!strcmp(name, "q4_0"))
        return HEARTH_Q4_0;
    die_usage("--type must be f32, q8_0 or q4_0");
    return 0;
}

static struct options parse_args(int argc, char **argv)
{
    struct options o = {.type = HEARTH_F32};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has_value) {
            o.output = argv[++i];
        } else if (!strcmp(a, "--type") && has_value) {
            o.type = parse_type(argv[++i]);
        } else if (!strcmp(a, "--tokenizer") && has_value) {
            o.tokenizer = argv[++i];
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (a[0] == '-') {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown option or missing value: %s", a);
            die_usage(msg);
        } else if (!o.source) {
            o.source = a;
        } else {
            die_usage("more than one SOURCE given");
        }
    }
    if (!o.source || !o.output)
        die_usage("SOURCE and -o OUT are required");
    return o;
}

static int read_tokenizer_file(const char *path, uint32_t vocab_size, struct vocab *v, char *err)
{
    size_t n = strlen(path);
    if (n >= 6 && !strcmp(path + n - 6, ".model"))
        return vocab_read_spm_model(path, v, err);
    if (n >= 5 && !strcmp(path + n - 5, ".json"))
        return vocab_read_tokenizer_json(path, v, err);
    return vocab_read_llama2c(path, vocab_size, v, err);
}

/* Whether path starts with GGUF's magic (llama.cpp gguf.h: "GGUF"). */
static int is_gguf(const char *path)
{
    char magic[4];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int yes = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(f);
    return yes;
}

static void read_source(const struct options *o, struct source *src)
{
    char err[HEARTH_ERR_BYTES];
    struct stat st;
    if (stat(o->source, &st) != 0) {
        snprintf(err, sizeof err, "%s: no such file or folder", o->source);
        die(err);
    }
    if (S_ISDIR(st.st_mode)) {
        if (o->tokenizer)
            die("--tokenizer is only for llama2.c checkpoints; a folder brings its own");
        if (hf_read(o->source, src, err) < 0)
            die(err);
        return;
    }
    if (is_gguf(o->source)) {
        if (o->tokenizer)
            die("--tokenizer is only for llama2.c checkpoints; a GGUF file brings its own");
        if (gguf_read(o->source, src, err) < 0)
            die(err);
        return;
    }
    if (!o->tokenizer)
        die_usage("a llama2.c checkpoint needs --tokenizer FILE (tokenizer.bin or tokenizer.model)");
    if (llama2c_read(o->source, src, err) < 0)
        die(err);
    if (read_tokenizer_file(o->tokenizer, src->cfg.vocab_size, &src->vocab, err) < 0)
        die(err);
    if (src->vocab.hdr.n_tokens != src->cfg.vocab_size) {
        snprintf(err, sizeof err, "%s has %u tokens but the checkpoint's vocab_size is %u",
                 o->tokenizer, src->vocab.hdr.n_tokens, src->cfg.vocab_size);
        die(err);
    }
}

static void print_config(const struct options *o, const struct source *src)
{
    const struct hearth_header *c = &src->cfg;
    fprintf(stderr,
            "read %s: dim %u, hidden %u, layers %u, heads %u, kv heads %u, head dim %u, "
            "vocab %u, context %u, rope theta %g%s, norm eps %g, %s classifier%s, "
            "%u tensors, %llu bytes\n",
            o->source, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
            c->head_dim, c->vocab_size, c->max_seq_len, c->rope_theta,
            c->rope_scaling == HEARTH_ROPE_SCALING_LLAMA3 ? " (llama3 scaling)" : "",
            c->norm_eps, c->flags & HEARTH_FLAG_TIED_EMBEDDINGS ? "tied" : "separate",
            c->flags & HEARTH_FLAG_QKV_BIAS ? ", q/k/v biases" : "", src->n_tensors,
            (unsigned long long)src->input_bytes);
    char stops[HEARTH_MAX_STOP_IDS * 12] = "";
    for (uint32_t i = 0; i < c->n_stop_ids && i < HEARTH_MAX_STOP_IDS; i++)
        snprintf(stops + strlen(stops), sizeof stops - strlen(stops), " %u", c->stop_ids[i]);
    fprintf(stderr, "tokenizer: %s, %u tokens, bos %u%s, eos %u, generation stops at%s\n",
            src->vocab.hdr.type == HEARTH_TOKENIZER_SPM ? "SentencePiece BPE" : "byte-level BPE",
            src->vocab.hdr.n_tokens, c->bos_id,
            src->vocab.hdr.flags & HEARTH_TOK_NO_BOS ? " (not added to prompts)" : "", c->eos_id,
            stops);
    if (c->chat_template == HEARTH_CHAT_NONE)
        fprintf(stderr, "no chat template found\n");
    else if (c->chat_template == CHAT_TEMPLATE_UNRECOGNISED)
        fprintf(stderr, "chat template not recognised (use --template at run time)\n");
    else
        fprintf(stderr, "chat template: %s\n", chat_template_name(c->chat_template));
}

/* Says what happens to matrices that arrive quantized (GGUF Q8_0/Q4_0):
 * taken over block for block when the output type is theirs, otherwise
 * dequantized exactly, and for another block type quantized again, which
 * adds rounding error to the file's own. */
static void print_quantized_sources(const struct options *o, const struct source *src)
{
    static const uint32_t block_types[] = {HEARTH_Q8_0, HEARTH_Q4_0};
    for (size_t b = 0; b < sizeof block_types / sizeof block_types[0]; b++) {
        uint32_t from = block_types[b], n = 0;
        for (uint32_t i = 0; i < src->n_tensors; i++)
            n += src->tensors[i].type == from && src->tensors[i].rows > 1;
        if (n == 0)
            continue;
        const char *name = hearth_type_name(from);
        if (o->type == from)
            fprintf(stderr, "note: %u %s matrices are taken over unchanged (no requantization)\n",
                    n, name);
        else if (o->type == HEARTH_F32)
            fprintf(stderr, "note: %u %s matrices are dequantized to f32: exactly their %s "
                    "values, four or more times the size (--type %s keeps them as they are)\n",
                    n, name, name, name);
        else
            fprintf(stderr, "warning: %u %s matrices are dequantized and quantized again as %s: "
                    "this adds rounding error on top of the file's own %s quantization (--type "
                    "%s takes them over unchanged)\n", n, name, hearth_type_name(o->type), name,
                    name);
    }
}

/* Says what was written, naming matrices that could not take the type. */
static void print_written(const struct options *o, const struct source *src)
{
    uint32_t n_typed = 0;
    for (uint32_t i = 0; i < src->n_tensors; i++) {
        const struct src_tensor *t = &src->tensors[i];
        if (t->rows == 1)
            continue;
        if (stored_type(t, o->type) == o->type)
            n_typed++;
        else
            fprintf(stderr, "note: %s kept as f32: %llu columns are not a multiple of 32\n",
                    t->name, (unsigned long long)t->cols);
    }
    struct stat st;
    long long n_bytes = stat(o->output, &st) == 0 ? (long long)st.st_size : -1;
    fprintf(stderr, "wrote %s: %u tensors (%u matrices %s, vectors f32), %lld bytes\n",
            o->output, src->n_tensors, n_typed, hearth_type_name(o->type), n_bytes);
}

int main(int argc, char **argv)
{
    struct options o = parse_args(argc, argv);
    struct source src;
    read_source(&o, &src);
    if (!o.quiet) {
        print_config(&o, &src);
        print_quantized_sources(&o, &src);
    }
    char err[HEARTH_ERR_BYTES];
    if (hearth_write(&src, o.output, o.type, !o.quiet, err) < 0)
        die(err);
    if (!o.quiet)
        print_written(&o, &src);
    source_free(&src);
    return 0;
}
