/* tests/test_gguf.c - GGUF as an export source: the reference models of
 * tests/data/gguf against llama.cpp's logits, Q8_0/Q4_0 tensors taken over
 * without changing a quantized byte, the same weights as a Hugging Face
 * folder and as GGUF giving the same model file, vocabularies (SentencePiece
 * and byte-level BPE) and hostile files.
 *
 * GGUF files are written by the test writer (gguf_writer.h), which follows
 * llama.cpp's layout and records where each header field landed so that the
 * hostile-file tests here can damage exactly one of them. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../chat.h"
#include "../exporter/gguf.h"
#include "../kernels/kernels.h"
#include "../model.h"
#include "../quant.h"
#include "../tokenizer.h"
#include "gguf_writer.h"
#include "synth.h"
#include "test.h"

#define DATA "tests/data/gguf/"
#define TOK512 "tests/data/tok512.model"

/* ---- GGUF blocks read back ---------------------------------------------- */

static uint16_t le16_at(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Weight k of a row of GGUF blocks, written out independently of pack.c:
 * d * q (Q8_0) or d * (nibble - 8), low nibbles first (Q4_0). */
static float ref_dequant(uint32_t hearth_type, const uint8_t *row, uint64_t k)
{
    const uint8_t *block = row + k / 32 * (hearth_type == HEARTH_Q8_0 ? 34 : 18);
    float d = fp16_to_f32(le16_at(block));
    unsigned j = (unsigned)(k % 32);
    if (hearth_type == HEARTH_Q8_0)
        return d * (float)(int8_t)block[2 + j];
    int q = j < 16 ? block[2 + j] & 15 : block[2 + j - 16] >> 4;
    return d * (float)(q - 8);
}

/* A small SentencePiece-style vocabulary of n (>= 259) tokens: <unk>, <s>,
 * </s>, the 256 byte pieces, then "▁" followed by letters. */
static void tiny_vocab(struct vocab *v, uint32_t n)
{
    memset(v, 0, sizeof *v);
    v->pieces = calloc(n, sizeof *v->pieces);
    v->piece_bytes = calloc(n, sizeof *v->piece_bytes);
    v->scores = calloc(n, sizeof *v->scores);
    v->kinds = calloc(n, 1);
    v->hdr.n_tokens = n;
    for (uint32_t i = 0; i < n; i++) {
        char s[32];
        if (i < 3)
            snprintf(s, sizeof s, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259)
            snprintf(s, sizeof s, "<0x%02X>", i - 3);
        else
            snprintf(s, sizeof s, "\xe2\x96\x81%c%c", 'a' + (i - 259) % 26, 'a' + (i - 259) / 26);
        v->pieces[i] = strdup(s);
        v->piece_bytes[i] = (uint32_t)strlen(s);
        v->scores[i] = i < 259 ? 0.0f : -(float)i;
        v->kinds[i] = i == 0 ? HEARTH_TOKEN_UNKNOWN : i < 3 ? HEARTH_TOKEN_CONTROL
                      : i < 259 ? HEARTH_TOKEN_BYTE : HEARTH_TOKEN_NORMAL;
    }
    v->hdr.unk_id = 0;
    v->bos_id = 1;
    v->eos_id = 2;
}

/* The small model most tests use: 300 tokens (not a multiple of 16, so
 * the last row group of token_embd is partial), dim 64, 1 layer. */
static const struct synth_config tiny_cfg = {
    .dim = 64, .hidden_dim = 96, .n_layers = 1, .n_heads = 4, .n_kv_heads = 2,
    .vocab_size = 300, .seq_len = 64, .tied = 1, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
    .seed = 7,
};

/* tiny_cfg (with changes in *cfg if not NULL) as a GGUF builder, leaving
 * out the key or tensor `skip` and changing the vocabulary with edit. */
static struct synth_model *tiny_gg_edit(struct gg *g, const struct synth_config *cfg,
                                        const struct gg_opts *o, const char *skip,
                                        void (*edit)(struct vocab *))
{
    static const struct gg_opts f32 = {.types = {G_F32, G_F32}};
    struct synth_model *sm = synth_create(cfg ? cfg : &tiny_cfg, 0);
    struct vocab v;
    tiny_vocab(&v, (uint32_t)sm->cfg.vocab_size);
    if (edit)
        edit(&v);
    gg_init(g);
    g->skip[0] = skip;
    gg_model(g, sm, o ? o : &f32);
    gg_vocab_spm(g, &v);
    vocab_free(&v);
    return sm;
}

static struct synth_model *tiny_gg(struct gg *g, const struct synth_config *cfg,
                                   const struct gg_opts *o, const char *skip)
{
    return tiny_gg_edit(g, cfg, o, skip, NULL);
}

/* gguf_read of a file the builder made; returns the status. */
static int read_gg(const struct gg *g, const char *name, struct source *src, char *err)
{
    char *path = test_path(name);
    int rc = gg_write(g, path) == 0 ? gguf_read(path, src, err) : -2;
    free(path);
    return rc;
}

/* ---- shared checks -------------------------------------------------------- */

/* DATA/name.gguf.gz unpacked into the temporary directory (once). */
static char *unpacked(const char *name)
{
    char file[128], cmd[1024];
    snprintf(file, sizeof file, "%s.gguf", name);
    char *path = test_path(file);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        return path;
    }
    snprintf(cmd, sizeof cmd, "gzip -dc '%s%s.gguf.gz' > '%s.part' && mv '%s.part' '%s'", DATA,
             name, path, path, path);
    CHECK(test_run(cmd, NULL, NULL) == 0, "gzip -dc %s%s.gguf.gz failed", DATA, name);
    return path;
}

static int export_gguf(const char *gguf, const char *out, uint32_t type, char *err)
{
    struct source src;
    if (gguf_read(gguf, &src, err) < 0)
        return -1;
    int rc = hearth_write(&src, out, type, 0, err);
    source_free(&src);
    return rc;
}

static int files_equal(const char *a, const char *b)
{
    size_t na, nb;
    char *x = test_read_file(a, &na), *y = test_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* The tensor of a loaded model with this directory name. */
static const struct tensor *find_tensor(const struct model *m, const char *name)
{
    static const struct {
        const char *suffix;
        size_t offset;
    } fields[] = {
        {"attn_norm.weight", offsetof(struct layer, attn_norm)},
        {"attn_q.weight", offsetof(struct layer, attn_q)},
        {"attn_k.weight", offsetof(struct layer, attn_k)},
        {"attn_v.weight", offsetof(struct layer, attn_v)},
        {"attn_output.weight", offsetof(struct layer, attn_output)},
        {"ffn_norm.weight", offsetof(struct layer, ffn_norm)},
        {"ffn_gate.weight", offsetof(struct layer, ffn_gate)},
        {"ffn_up.weight", offsetof(struct layer, ffn_up)},
        {"ffn_down.weight", offsetof(struct layer, ffn_down)},
    };
    if (!strcmp(name, "token_embd.weight"))
        return &m->token_embd;
    if (!strcmp(name, "output.weight"))
        return &m->output;
    unsigned l;
    char suffix[64];
    if (sscanf(name, "blk.%u.%63s", &l, suffix) != 2 || l >= m->cfg.n_layers)
        return NULL;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!strcmp(suffix, fields[i].suffix))
            return (const struct tensor *)((const char *)&m->layers[l] + fields[i].offset);
    return NULL;
}

/* Every GGUF block matrix of gguf that hearth stores as its own type holds
 * exactly the GGUF's values (unpack_row against an independent dequant, bit
 * for bit); returns the number of matrices checked. Matrices stored as
 * another type are skipped. */
static int check_blocks_unchanged(const char *gguf, const char *hearth)
{
    struct source src;
    struct model m;
    char err[HEARTH_ERR_BYTES];
    int checked = 0;
    if (gguf_read(gguf, &src, err) < 0) {
        CHECK(0, "gguf_read %s: %s", gguf, err);
        return 0;
    }
    if (model_open(&m, hearth, err) < 0) {
        CHECK(0, "model_open %s: %s", hearth, err);
        source_free(&src);
        return 0;
    }
    for (uint32_t i = 0; i < src.n_tensors; i++) {
        const struct src_tensor *st = &src.tensors[i];
        const struct tensor *t = find_tensor(&m, st->name);
        if (st->rows == 1 || !t || t->type != st->type)
            continue;
        uint64_t rb = st->cols / 32 * (st->type == HEARTH_Q8_0 ? 34 : 18);
        uint8_t *row = malloc(rb);
        float *got = malloc(st->cols * sizeof *got);
        int bad = 0;
        for (uint64_t r = 0; r < st->rows && !bad; r++) {
            bad = pread(st->fd, row, rb, (off_t)(st->offset + r * rb)) != (ssize_t)rb;
            unpack_row(t->type, t->data, t->cols, r, got);
            for (uint64_t k = 0; k < st->cols && !bad; k++) {
                float want = ref_dequant(st->type, row, k);
                bad = memcmp(&want, &got[k], sizeof want) != 0;
                CHECK(!bad, "%s row %llu weight %llu: hearth %g, GGUF %g", st->name,
                      (unsigned long long)r, (unsigned long long)k, got[k], want);
            }
        }
        checked++;
        free(row);
        free(got);
    }
    model_close(&m);
    source_free(&src);
    return checked;
}

/* ---- llama.cpp's logits on the reference models ---------------------------- */

static size_t read_numbers(const char *path, float *out, size_t max)
{
    char *text = test_read_file(path, NULL);
    size_t n = 0;
    char *p = text, *end;
    while (text && n < max) {
        float v = strtof(p, &end);
        if (end == p)
            break;
        out[n++] = v;
        p = end;
    }
    free(text);
    return n;
}

/* The rule of tests/data/gguf's README (ref/gguf/README.md, "Comparison
 * rule"): all values finite, max|d| and rms(d) within the tier's multiple of
 * s = std(r), and the same argmax unless r's top-2 gap is below the max|d|
 * tolerance. */
static void compare_logits(const float *e, const float *r, uint32_t n, double tol_max,
                           double tol_rms, const char *what)
{
    double mean = 0, var = 0, max_d = 0, sum_d2 = 0;
    uint32_t ae = 0, ar = 0, finite = 1;
    for (uint32_t i = 0; i < n; i++)
        mean += r[i];
    mean /= n;
    for (uint32_t i = 0; i < n; i++) {
        double d = (double)e[i] - r[i];
        var += (r[i] - mean) * (r[i] - mean);
        max_d = fabs(d) > max_d ? fabs(d) : max_d;
        sum_d2 += d * d;
        finite &= isfinite(e[i]) != 0;
        ae = e[i] > e[ae] ? i : ae;
        ar = r[i] > r[ar] ? i : ar;
    }
    double s = sqrt(var / n), rms = sqrt(sum_d2 / n), second = -INFINITY;
    for (uint32_t i = 0; i < n; i++)
        if (i != ar && r[i] > second)
            second = r[i];
    CHECK(finite, "%s: logits not all finite", what);
    CHECK(max_d <= tol_max * s, "%s: max|d| = %.3g s > %.3g s", what, max_d / s, tol_max);
    CHECK(rms <= tol_rms * s, "%s: rms(d) = %.3g s > %.3g s", what, rms / s, tol_rms);
    if (r[ar] - second >= tol_max * s)
        CHECK(ae == ar, "%s: argmax %u, llama.cpp %u", what, ae, ar);
    else
        CHECK(r[ae] >= r[ar] - tol_max * s, "%s: argmax %u scores %g, below max %g - tolerance",
              what, ae, r[ae], r[ar]);
    if (getenv("HEARTH_PRINT_GGUF"))
        printf("    %s: max|d| = %.3g s, rms(d) = %.3g s, argmax %u (llama.cpp %u)\n", what,
               max_d / s, rms / s, ae, ar);
}

static void check_sequence(const struct model *m, const char *name, int seq, double tol_max,
                           double tol_rms)
{
    char path[256], what[96], err[HEARTH_ERR_BYTES];
    float ids_f[128], *ref = malloc(32000 * sizeof *ref);
    snprintf(path, sizeof path, DATA "%s.seq%d.ids", name, seq);
    size_t n_ids = read_numbers(path, ids_f, 128);
    snprintf(path, sizeof path, DATA "%s.seq%d.logits", name, seq);
    size_t n_ref = read_numbers(path, ref, 32000);
    snprintf(what, sizeof what, "%s seq%d", name, seq);
    CHECK(n_ids > 0 && n_ref == 32000 && m->cfg.vocab_size == 32000,
          "%s: %zu ids, %zu reference logits, vocab %u", what, n_ids, n_ref, m->cfg.vocab_size);
    struct state s;
    if (n_ids > 0 && n_ref == 32000 && m->cfg.vocab_size == 32000 &&
        state_init(&s, m, (uint32_t)n_ids, NULL, NULL, err) == 0) {
        float *logits = NULL;
        for (size_t p = 0; p < n_ids; p++)
            logits = model_forward(m, &s, (int32_t)ids_f[p], (uint32_t)p);
        compare_logits(logits, ref, 32000, tol_max, tol_rms, what);
        state_free(&s);
    }
    free(ref);
}

/* Exports the reference model as type and runs both sequences (token by
 * token: hearth has no batched prefill). */
static void check_reference(const char *name, uint32_t type, double tol_max, double tol_rms)
{
    char *gguf = unpacked(name), out_name[96], err[HEARTH_ERR_BYTES];
    snprintf(out_name, sizeof out_name, "%s.%s.hearth", name, hearth_type_name(type));
    char *out = test_path(out_name);
    struct model m;
    int ok = export_gguf(gguf, out, type, err) == 0;
    CHECK(ok, "export %s: %s", name, err);
    ok = ok && model_open(&m, out, err) == 0;
    CHECK(ok, "model_open %s: %s", out, err);
    if (ok) {
        check_sequence(&m, name, 1, tol_max, tol_rms);
        check_sequence(&m, name, 2, tol_max, tol_rms);
        model_close(&m);
    }
    if (ok && type != HEARTH_F32)
        CHECK(check_blocks_unchanged(gguf, out) == 15, "%s: not all 15 matrices taken over", name);
    free(gguf);
    free(out);
}

/* F16 weights: the F16 tier (0.01 s, 0.0025 s); llama.cpp rounds the
 * activations to F16 there, hearth exports F32 and keeps them F32. */
static void test_reference_f16(void)
{
    check_reference("vis-gqa-f16", HEARTH_F32, 0.01, 0.0025);
    check_reference("vis-scaled-f16", HEARTH_F32, 0.01, 0.0025);
}

/* Q8_0/Q4_0 taken over unchanged, activations quantized as ggml does on
 * x86: the bit-exact tier (1e-4 s, 2e-5 s). */
static void test_reference_quantized(void)
{
    check_reference("vis-gqa-q8_0", HEARTH_Q8_0, 1e-4, 2e-5);
    check_reference("vis-gqa-q4_0", HEARTH_Q4_0, 1e-4, 2e-5);
}

/* The Llama 3 scaling of vis-scaled-f16 lives only in rope_freqs.weight
 * (factor 32, low 1, high 4, original context 8192: its README). */
static void test_reference_rope_scaling(void)
{
    char *gguf = unpacked("vis-scaled-f16"), err[HEARTH_ERR_BYTES];
    struct source src;
    int ok = gguf_read(gguf, &src, err) == 0;
    CHECK(ok, "gguf_read: %s", err);
    if (ok) {
        const struct hearth_header *c = &src.cfg;
        CHECK(c->rope_scaling == HEARTH_ROPE_SCALING_LLAMA3 && c->rope_factor == 32.0f &&
              c->rope_low_freq_factor == 1.0f && c->rope_high_freq_factor == 4.0f &&
              c->rope_orig_max_seq_len == 8192 && c->rope_theta == 500000.0f,
              "rope: scaling %u factor %g low %g high %g orig %u theta %g", c->rope_scaling,
              c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
              c->rope_orig_max_seq_len, c->rope_theta);
        CHECK(c->max_seq_len == 1024 && c->n_kv_heads == 2 && c->hidden_dim == 160 &&
              (c->flags & HEARTH_FLAG_TIED_EMBEDDINGS) && c->n_stop_ids == 1 &&
              c->stop_ids[0] == 2 && c->bos_id == 1,
              "config: ctx %u kv %u hidden %u flags %u stops %u", c->max_seq_len, c->n_kv_heads,
              c->hidden_dim, c->flags, c->n_stop_ids);
        source_free(&src);
    }
    free(gguf);
}

/* ---- Q8_0/Q4_0 blocks taken over ------------------------------------------ */

/* Row r's block b of a packed group, back as a GGUF block, read by the
 * layout of kernels.h (written out here, not taken from pack.c). */
static void group_block(uint32_t type, const uint8_t *group, uint64_t nb, unsigned r, uint64_t b,
                        uint8_t *block)
{
    uint64_t qbytes = type == HEARTH_Q8_0 ? Q8_0_QBYTES : Q4_0_QBYTES;
    const uint8_t *quants = group + b * qbytes, *scale = group + nb * qbytes + 2 * (b * 16 + r);
    block[0] = scale[0];
    block[1] = scale[1];
    for (unsigned k = 0; k < 32; k++) {
        if (type == HEARTH_Q8_0) {
            block[2 + k] = quants[64 * (k / 4) + 4 * r + k % 4];
            continue;
        }
        unsigned c = k / 8, j = k % 8;
        uint8_t byte = quants[64 * c + 4 * r + j % 4];
        uint8_t q = j < 4 ? byte & 15 : byte >> 4;
        if (k < 16)
            block[2 + k] = (uint8_t)((block[2 + k] & 0xf0) | q);
        else
            block[2 + k - 16] = (uint8_t)((block[2 + k - 16] & 0x0f) | q << 4);
    }
}

/* repack_group_* of the blocks pack_group_* made gives the same bytes, for
 * every row count 1..16 (missing rows included), and dequantize_gguf_row
 * gives unpack_row's values. */
static void test_repack_matches_pack(void)
{
    uint64_t state = 11, cols = 96, nb = cols / 32;
    static const uint32_t types[] = {HEARTH_Q8_0, HEARTH_Q4_0};
    float *rows = malloc(16 * cols * sizeof *rows), got[96], want[96];
    uint8_t *blocks = malloc(16 * nb * 34), packed[16 * 3 * 34], repacked[16 * 3 * 34];
    for (size_t i = 0; i < 16 * cols; i++)
        rows[i] = test_rand_normal(&state) * (i % 7 == 0 ? 10.0f : 1.0f);
    for (int ti = 0; ti < 2; ti++) {
        uint32_t type = types[ti];
        uint64_t bb = type == HEARTH_Q8_0 ? 34 : 18;
        for (int n = 1; n <= 16; n++) {
            const float *ptrs[16];
            const uint8_t *bptrs[16];
            for (int i = 0; i < n; i++)
                ptrs[i] = rows + (uint64_t)i * cols;
            size_t group = hearth_tensor_bytes(type, 16, cols);
            memset(blocks, 0, 16 * nb * 34);
            (type == HEARTH_Q8_0 ? pack_group_q8_0 : pack_group_q4_0)(ptrs, n, cols, packed);
            for (int i = 0; i < n; i++) {
                bptrs[i] = blocks + (uint64_t)i * nb * bb;
                for (uint64_t b = 0; b < nb; b++)
                    group_block(type, packed, nb, (unsigned)i, b, blocks + ((uint64_t)i * nb + b) * bb);
            }
            (type == HEARTH_Q8_0 ? repack_group_q8_0 : repack_group_q4_0)(bptrs, n, cols, repacked);
            CHECK(!memcmp(packed, repacked, group), "%s, %d rows: repacked bytes differ",
                  hearth_type_name(type), n);
            for (int i = 0; i < n; i++) {
                unpack_row(type, packed, cols, (uint64_t)i, want);
                dequantize_gguf_row(type, bptrs[i], cols, got);
                CHECK(!memcmp(want, got, sizeof got), "%s row %d: dequantize_gguf_row differs "
                      "from unpack_row", hearth_type_name(type), i);
            }
        }
    }
    free(rows);
    free(blocks);
}

/* Blocks a quantizer would not make but a file may hold: subnormal and
 * negative scales, scale 0 with non-zero quants, q = -128, every nibble. */
static void plant_odd_blocks(struct gg *g)
{
    static const uint16_t scales[] = {0x0001, 0xbc00, 0x0000, 0x8001, 0x7bff};
    for (int i = 0; i < g->n_t; i++) {
        struct gg_tensor *t = &g->t[i];
        if (t->type != G_Q8_0 && t->type != G_Q4_0)
            continue;
        size_t bb = t->type == G_Q8_0 ? 34 : 18;
        size_t n_blocks = t->n_bytes / bb;
        for (size_t b = 0; b < 5; b++) {
            uint8_t *block = t->data + b * 7 % n_blocks * bb;
            block[0] = (uint8_t)scales[b];
            block[1] = (uint8_t)(scales[b] >> 8);
            for (size_t k = 2; k < bb; k++)
                block[k] = (uint8_t)(t->type == G_Q8_0 ? (b == 1 ? 0x80 : 0x80 + 7 * k) : 17 * k);
        }
    }
}

/* Matrices of type `from` in gguf, stored by hearth as another block type:
 * each weight within about a quantization step (block amax / 127 for Q8_0,
 * / 8 for Q4_0) of the GGUF value. */
static void check_requantized(const char *gguf, const char *hearth, uint32_t from)
{
    struct source src;
    struct model m;
    char err[HEARTH_ERR_BYTES];
    if (gguf_read(gguf, &src, err) < 0)
        return;
    if (model_open(&m, hearth, err) < 0) {
        source_free(&src);
        return;
    }
    int checked = 0;
    for (uint32_t i = 0; i < src.n_tensors; i++) {
        const struct src_tensor *st = &src.tensors[i];
        const struct tensor *t = find_tensor(&m, st->name);
        if (st->rows == 1 || !t || st->type != from || t->type == from)
            continue;
        uint64_t rb = st->cols / 32 * (from == HEARTH_Q8_0 ? 34 : 18);
        uint8_t *row = malloc(rb);
        float *got = malloc(st->cols * sizeof *got);
        double worst = 0;
        for (uint64_t r = 0; r < st->rows; r++) {
            if (pread(st->fd, row, rb, (off_t)(st->offset + r * rb)) != (ssize_t)rb)
                break;
            unpack_row(t->type, t->data, t->cols, r, got);
            for (uint64_t b = 0; b < st->cols / 32; b++) {
                double amax = 0;
                for (uint64_t k = 32 * b; k < 32 * b + 32; k++)
                    amax = fmax(amax, fabs(ref_dequant(from, row, k)));
                double step = amax / (t->type == HEARTH_Q8_0 ? 127 : 8);
                /* the planted odd blocks: a new scale outside fp16's normal
                 * range cannot hold these values (ggml's quantizer fails
                 * alike) */
                if (step < 6.2e-5 || step > 65504)
                    continue;
                for (uint64_t k = 32 * b; k < 32 * b + 32; k++) {
                    double d = fabs(got[k] - ref_dequant(from, row, k));
                    worst = fmax(worst, d / step);
                }
            }
        }
        /* rounding: half a step for Q8_0, up to one for Q4_0 (ggml's
         * quantizer clamps q = 16 to 15); plus the scale's fp16 rounding,
         * coarse for subnormal scales */
        double limit = t->type == HEARTH_Q8_0 ? 0.75 : 1.5;
        CHECK(worst <= limit, "%s re-quantized as %s: error %.3g quantization steps", st->name,
              hearth_type_name(t->type), worst);
        checked++;
        free(row);
        free(got);
    }
    CHECK(checked > 0, "no %s matrix was re-quantized", hearth_type_name(from));
    model_close(&m);
    source_free(&src);
}

/* A GGUF with Q8_0 and Q4_0 matrices (token_embd of 300 rows: a partial
 * last group): exported as q8_0 the Q8_0 ones keep every value, as q4_0 the
 * Q4_0 ones, as f32 all of them; the others are re-quantized close to the
 * original values. */
static void test_blocks_pass_through(void)
{
    struct gg g;
    struct synth_config cfg = tiny_cfg;
    cfg.tied = 0;
    struct gg_opts o = {.types = {G_Q8_0, G_Q4_0}};
    synth_free(tiny_gg(&g, &cfg, &o, NULL));
    plant_odd_blocks(&g);
    char *gguf = test_path("blocks.gguf"), *q8 = test_path("blocks.q8.hearth");
    char *q4 = test_path("blocks.q4.hearth"), *f32 = test_path("blocks.f32.hearth");
    char err[HEARTH_ERR_BYTES];
    CHECK(gg_write(&g, gguf) == 0, "write %s", gguf);
    int ok = export_gguf(gguf, q8, HEARTH_Q8_0, err) == 0;
    CHECK(ok, "export q8_0: %s", err);
    CHECK(!ok || check_blocks_unchanged(gguf, q8) == 5, "q8_0: expected 5 Q8_0 matrices kept");
    if (ok)
        check_requantized(gguf, q8, HEARTH_Q4_0);
    ok = export_gguf(gguf, q4, HEARTH_Q4_0, err) == 0;
    CHECK(ok, "export q4_0: %s", err);
    CHECK(!ok || check_blocks_unchanged(gguf, q4) == 4, "q4_0: expected 4 Q4_0 matrices kept");
    if (ok)
        check_requantized(gguf, q4, HEARTH_Q8_0);
    ok = export_gguf(gguf, f32, HEARTH_F32, err) == 0;
    CHECK(ok, "export f32: %s", err);
    struct source src;
    struct model m;
    if (ok && gguf_read(gguf, &src, err) == 0) {
        if (model_open(&m, f32, err) == 0) {
            for (uint32_t i = 0; i < src.n_tensors; i++) {
                const struct src_tensor *st = &src.tensors[i];
                const struct tensor *t = find_tensor(&m, st->name);
                if (st->rows == 1 || !t)
                    continue;
                uint64_t rb = st->cols / 32 * (st->type == HEARTH_Q8_0 ? 34 : 18);
                uint8_t *row = malloc(rb);
                int bad = 0;
                for (uint64_t r = 0; r < st->rows && !bad; r++) {
                    bad = pread(st->fd, row, rb, (off_t)(st->offset + r * rb)) != (ssize_t)rb;
                    const float *got = (const float *)t->data + r * st->cols;
                    for (uint64_t k = 0; k < st->cols && !bad; k++) {
                        float want = ref_dequant(st->type, row, k);
                        bad = memcmp(&want, &got[k], 4) != 0;
                    }
                }
                CHECK(!bad && t->type == HEARTH_F32, "f32 export of %s is not the GGUF values",
                      st->name);
                free(row);
            }
            model_close(&m);
        }
        source_free(&src);
    }
    gg_free(&g);
    free(gguf);
    free(q8);
    free(q4);
    free(f32);
}

/* ./export on a GGUF: found by its magic, says what happens to quantized
 * matrices, refuses --tokenizer. */
static void test_export_command(void)
{
    struct gg g;
    struct gg_opts o = {.types = {G_Q8_0, G_Q4_0}};
    synth_free(tiny_gg(&g, NULL, &o, NULL));
    char *gguf = test_path("cli.gguf"), *out = test_path("cli.hearth"), cmd[1024];
    char *errout = NULL;
    CHECK(gg_write(&g, gguf) == 0, "write");
    snprintf(cmd, sizeof cmd, "./export '%s' -o '%s' --type q8_0", gguf, out);
    int rc = test_run(cmd, NULL, &errout);
    CHECK(rc == 0 && errout && strstr(errout, "q8_0 matrices are taken over unchanged") &&
          strstr(errout, "q4_0 matrices are dequantized and quantized again as q8_0"),
          "./export --type q8_0: status %d, stderr: %s", rc, errout ? errout : "");
    free(errout);
    snprintf(cmd, sizeof cmd, "./export '%s' -o '%s'", gguf, out);
    rc = test_run(cmd, NULL, &errout);
    CHECK(rc == 0 && errout && strstr(errout, "dequantized to f32"),
          "./export (f32): status %d, stderr: %s", rc, errout ? errout : "");
    free(errout);
    snprintf(cmd, sizeof cmd, "./export '%s' -o '%s' --tokenizer x", gguf, out);
    rc = test_run(cmd, NULL, &errout);
    CHECK(rc == 1 && errout && strstr(errout, "GGUF file brings its own"),
          "--tokenizer with a GGUF: status %d, stderr: %s", rc, errout ? errout : "");
    free(errout);
    gg_free(&g);
    free(gguf);
    free(out);
}

/* ---- the same weights from a Hugging Face folder and from GGUF ------------ */

/* Exports a GGUF builder's file and an HF folder; returns whether both
 * exports worked and gave the same bytes. */
static int same_as_hf(const struct gg *g, const char *hf_dir, const char *tag)
{
    char name[96], err[HEARTH_ERR_BYTES];
    snprintf(name, sizeof name, "%s.gguf", tag);
    char *gguf = test_path(name);
    snprintf(name, sizeof name, "%s.from-gguf.hearth", tag);
    char *a = test_path(name);
    snprintf(name, sizeof name, "%s.from-hf.hearth", tag);
    char *b = test_path(name);
    struct source src;
    int ok = gg_write(g, gguf) == 0 && export_gguf(gguf, a, HEARTH_F32, err) == 0;
    CHECK(ok, "%s: GGUF export: %s", tag, err);
    int ok_hf = hf_read(hf_dir, &src, err) == 0;
    CHECK(ok_hf, "%s: hf_read: %s", tag, err);
    if (ok_hf) {
        ok_hf = hearth_write(&src, b, HEARTH_F32, 0, err) == 0;
        CHECK(ok_hf, "%s: HF export: %s", tag, err);
        source_free(&src);
    }
    int same = ok && ok_hf && files_equal(a, b);
    free(gguf);
    free(a);
    free(b);
    return same;
}

/* synth weights (tok512 vocabulary) written as an HF folder (q/k in
 * rotate-half order) and as a llama GGUF (adjacent pairs): the two model
 * files are byte for byte the same, config, tokenizer section and weights.
 * F32 and BF16 (the GGUF then holds BF16 tensors), tied and untied. */
static void test_same_as_hf_folder(void)
{
    static const struct {
        const char *dtype;
        uint32_t type;
        int tied;
    } cases[] = {{"F32", G_F32, 0}, {"BF16", G_BF16, 1}};
    struct vocab v;
    char err[HEARTH_ERR_BYTES];
    int ok = vocab_read_spm_model(TOK512, &v, err) == 0;
    CHECK(ok, "%s: %s", TOK512, err);
    for (size_t i = 0; ok && i < sizeof cases / sizeof cases[0]; i++) {
        struct synth_config cfg = {.dim = 64, .hidden_dim = 96, .n_layers = 2, .n_heads = 4,
                                   .n_kv_heads = 2, .vocab_size = (int)v.hdr.n_tokens,
                                   .seq_len = 128, .tied = cases[i].tied,
                                   .rope_theta = 10000.0f, .norm_eps = 1e-5f, .seed = 31 + i};
        struct synth_model *sm = synth_create(&cfg, cases[i].type == G_BF16);
        char tag[32];
        snprintf(tag, sizeof tag, "hf-%s", cases[i].dtype);
        char *dir = test_path(tag);
        CHECK(sm && synth_write_hf(sm, dir, cases[i].dtype, 1, TOK512) == 0, "synth_write_hf");
        struct gg g;
        gg_init(&g);
        struct gg_opts o = {.types = {cases[i].type, cases[i].type}};
        gg_model(&g, sm, &o);
        gg_vocab_spm(&g, &v);
        CHECK(same_as_hf(&g, dir, tag), "%s: the HF folder and the GGUF give different files",
              tag);
        gg_free(&g);
        synth_free(sm);
        free(dir);
    }
    if (ok)
        vocab_free(&v);
}

/* Tensor `name` of a gguf_read source (F32/F16/BF16) as floats in out. */
static int load_floats(const struct source *src, const char *name, float *out)
{
    for (uint32_t i = 0; i < src->n_tensors; i++) {
        const struct src_tensor *t = &src->tensors[i];
        if (strcmp(t->name, name))
            continue;
        uint64_t n = t->rows * t->cols, bytes = n * hearth_type_elem_bytes(t->type);
        void *raw = malloc(bytes ? bytes : 1);
        int ok = bytes && pread(t->fd, raw, bytes, (off_t)t->offset) == (ssize_t)bytes;
        if (ok)
            convert_to_f32(t->type, raw, out, n);
        free(raw);
        return ok ? 0 : -1;
    }
    return -1;
}

/* vis-gqa-f16's weights as a synth model (F16 -> F32 is exact). */
static struct synth_model *vis_weights(const struct source *src)
{
    const struct hearth_header *c = &src->cfg;
    struct synth_model *sm = calloc(1, sizeof *sm);
    sm->cfg = (struct synth_config){(int)c->dim, (int)c->hidden_dim, (int)c->n_layers,
                                    (int)c->n_heads, (int)c->n_kv_heads, (int)c->vocab_size,
                                    (int)c->max_seq_len, 1, c->rope_theta, c->norm_eps, 0};
    size_t L = c->n_layers, dim = c->dim, hidden = c->hidden_dim;
    size_t kv = (size_t)c->n_kv_heads * c->head_dim;
    sm->token_embd = malloc(c->vocab_size * dim * sizeof(float));
    sm->attn_norm = malloc(L * dim * sizeof(float));
    sm->ffn_norm = malloc(L * dim * sizeof(float));
    sm->wq = malloc(L * dim * dim * sizeof(float));
    sm->wk = malloc(L * kv * dim * sizeof(float));
    sm->wv = malloc(L * kv * dim * sizeof(float));
    sm->wo = malloc(L * dim * dim * sizeof(float));
    sm->w_gate = malloc(L * hidden * dim * sizeof(float));
    sm->w_up = malloc(L * hidden * dim * sizeof(float));
    sm->w_down = malloc(L * dim * hidden * sizeof(float));
    sm->output_norm = malloc(dim * sizeof(float));
    int bad = load_floats(src, "token_embd.weight", sm->token_embd) |
              load_floats(src, "output_norm.weight", sm->output_norm);
    for (size_t l = 0; l < L; l++) {
        char name[64];
#define LOAD(suffix, dst) \
    (snprintf(name, sizeof name, "blk.%zu." suffix, l), bad |= load_floats(src, name, dst))
        LOAD("attn_norm.weight", sm->attn_norm + l * dim);
        LOAD("ffn_norm.weight", sm->ffn_norm + l * dim);
        LOAD("attn_q.weight", sm->wq + l * dim * dim);
        LOAD("attn_k.weight", sm->wk + l * kv * dim);
        LOAD("attn_v.weight", sm->wv + l * kv * dim);
        LOAD("attn_output.weight", sm->wo + l * dim * dim);
        LOAD("ffn_gate.weight", sm->w_gate + l * hidden * dim);
        LOAD("ffn_up.weight", sm->w_up + l * hidden * dim);
        LOAD("ffn_down.weight", sm->w_down + l * dim * hidden);
#undef LOAD
    }
    CHECK(!bad, "could not read vis-gqa-f16's tensors");
    return sm;
}

/* vis-gqa-f16 and an HF folder holding its weights (q/k rows in HF order,
 * Llama 2's tokenizer.model) export to the same file. */
static void test_vis_same_as_hf_folder(void)
{
    char *gguf = unpacked("vis-gqa-f16"), *dir = test_path("vis-hf"), err[HEARTH_ERR_BYTES];
    struct source src;
    int ok = gguf_read(gguf, &src, err) == 0;
    CHECK(ok, "gguf_read: %s", err);
    if (ok) {
        struct synth_model *sm = vis_weights(&src);
        CHECK(synth_write_hf(sm, dir, "F32", 1, "tests/data/llama2/tokenizer.model") == 0,
              "synth_write_hf");
        char *a = test_path("vis.from-gguf.hearth"), *b = test_path("vis.from-hf.hearth");
        struct source hf;
        ok = hearth_write(&src, a, HEARTH_F32, 0, err) == 0 && hf_read(dir, &hf, err) == 0;
        CHECK(ok, "export: %s", err);
        if (ok) {
            CHECK(hearth_write(&hf, b, HEARTH_F32, 0, err) == 0 && files_equal(a, b),
                  "vis-gqa-f16 and its HF folder give different files %s", err);
            source_free(&hf);
        }
        synth_free(sm);
        source_free(&src);
        free(a);
        free(b);
    }
    free(gguf);
    free(dir);
}

/* A qwen2 GGUF keeps q/k rows (and their biases) in rotate-half order; a
 * llama GGUF of the same weights has them in adjacent pairs. Both must
 * become the same model file. */
static void test_qwen2_rows_converted(void)
{
    struct synth_config cfg = tiny_cfg;
    /* head_dim 16; q, k and v biases of all layers one after another */
    uint64_t n_layers = (uint64_t)cfg.n_layers, q_all = (uint64_t)cfg.dim * n_layers;
    uint64_t kv_all = 16 * (uint64_t)cfg.n_kv_heads * n_layers, state = 5;
    float *biases = malloc((q_all + 2 * kv_all) * sizeof *biases);
    for (uint64_t i = 0; i < q_all + 2 * kv_all; i++)
        biases[i] = test_rand_normal(&state);
    struct gg llama, qwen;
    struct gg_opts ol = {.types = {G_F32, G_Q8_0}, .bq = biases, .bk = biases + q_all,
                         .bv = biases + q_all + kv_all};
    struct gg_opts oq = ol;
    oq.arch = "qwen2";
    synth_free(tiny_gg(&llama, &cfg, &ol, NULL));
    synth_free(tiny_gg(&qwen, &cfg, &oq, NULL));
    char *a = test_path("llama-bias.gguf"), *b = test_path("qwen2.gguf");
    char *ha = test_path("llama-bias.hearth"), *hb = test_path("qwen2.hearth");
    char err[HEARTH_ERR_BYTES] = "";
    int ok = gg_write(&llama, a) == 0 && gg_write(&qwen, b) == 0 &&
             export_gguf(a, ha, HEARTH_Q8_0, err) == 0 && export_gguf(b, hb, HEARTH_Q8_0, err) == 0;
    CHECK(ok, "export: %s", err);
    CHECK(ok && files_equal(ha, hb), "qwen2 and llama GGUFs of the same weights differ");
    struct model m;
    if (ok && model_open(&m, hb, err) == 0) {
        CHECK(m.cfg.flags & HEARTH_FLAG_QKV_BIAS, "biases flag missing");
        model_close(&m);
    }
    gg_free(&llama);
    gg_free(&qwen);
    free(biases);
    free(a);
    free(b);
    free(ha);
    free(hb);
}

/* ---- Llama 3 rope scaling -------------------------------------------------- */

/* convert_hf_to_gguf.py's rope_freqs for Llama 3 scaling, in double. */
static void llama3_divisors(float *div, int n, double theta, int head_dim, double factor,
                            double low, double high, double orig)
{
    for (int i = 0; i < n; i++) {
        double freq = 1.0 / pow(theta, 2.0 * i / head_dim), wl = 2 * M_PI / freq;
        if (wl < orig / high)
            div[i] = 1;
        else if (wl > orig / low)
            div[i] = (float)factor;
        else {
            double smooth = (orig / wl - low) / (high - low);
            div[i] = (float)(1 / ((1 - smooth) / factor + smooth));
        }
    }
}

/* gguf_read of the tiny model with head_dim 64, theta 500000 and the given
 * rope_freqs.weight; returns its status and fills *c. */
static int read_with_divisors(const float *div, struct hearth_header *c, char *err)
{
    struct synth_config cfg = tiny_cfg;
    cfg.dim = 128;
    cfg.n_heads = 2;
    cfg.n_kv_heads = 1;
    cfg.rope_theta = 500000.0f;
    struct gg g;
    synth_free(tiny_gg(&g, &cfg, NULL, NULL));
    gg_tensor(&g, "rope_freqs.weight", G_F32, 1, 32, div, 32 * sizeof *div);
    struct source src;
    int rc = read_gg(&g, "rope.gguf", &src, err);
    if (rc == 0) {
        *c = src.cfg;
        source_free(&src);
    }
    gg_free(&g);
    return rc;
}

static void test_rope_freqs(void)
{
    static const struct {
        double factor, low, high, orig;
    } cases[] = {
        {8, 1, 4, 8192},  /* Llama 3.1 */
        {32, 1, 4, 8192}, /* Llama 3.2 */
        {16, 1, 8, 8192}, /* not Meta's: recovered from the smooth region */
        {4, 2, 8, 16384}, /* the same ratios as low 1, high 4, orig 8192 */
    };
    char err[HEARTH_ERR_BYTES];
    float div[32];
    struct hearth_header c;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llama3_divisors(div, 32, 500000.0, 64, cases[i].factor, cases[i].low, cases[i].high,
                        cases[i].orig);
        int ok = read_with_divisors(div, &c, err) == 0;
        CHECK(ok, "case %zu: %s", i, err);
        /* only the ratios to low matter (FACTS.md formula) */
        double scale = cases[i].low;
        CHECK(!ok || (c.rope_scaling == HEARTH_ROPE_SCALING_LLAMA3 &&
                      c.rope_factor == (float)cases[i].factor && c.rope_low_freq_factor == 1.0f &&
                      fabs(c.rope_high_freq_factor - cases[i].high / scale) < 1e-4 &&
                      c.rope_orig_max_seq_len == (uint32_t)(cases[i].orig / scale)),
              "case %zu: got factor %g low %g high %g orig %u", i, c.rope_factor,
              c.rope_low_freq_factor, c.rope_high_freq_factor, c.rope_orig_max_seq_len);
    }
    for (int i = 0; i < 32; i++)
        div[i] = 1.0f;
    CHECK(read_with_divisors(div, &c, err) == 0 && c.rope_scaling == HEARTH_ROPE_SCALING_NONE,
          "all divisors 1 should mean no scaling: %s", err);
    for (int i = 0; i < 32; i++)
        div[i] = 1.0f + (float)(i % 3); /* not monotonic: no parameters fit */
    CHECK(read_with_divisors(div, &c, err) < 0 && strstr(err, "not Llama 3 rope scaling"),
          "garbage divisors accepted: %s", err);
    div[3] = 0.5f;
    CHECK(read_with_divisors(div, &c, err) < 0 && strstr(err, "at least 1"),
          "a divisor below 1 accepted: %s", err);
}

/* ---- vocabularies --------------------------------------------------------- */

/* llama.cpp's vocab-only GGUF of Llama 2 and SentencePiece's own
 * tokenizer.model give the same tokenizer section, byte for byte. */
static void test_spm_vocab_matches_tokenizer_model(void)
{
    char *gguf = unpacked("ggml-vocab-llama-spm"), err[HEARTH_ERR_BYTES];
    struct vocab a, b;
    uint8_t *sa = NULL, *sb = NULL;
    uint64_t na = 0, nb = 0;
    int ok_a = gguf_read_vocab(gguf, &a, err) == 0;
    CHECK(ok_a, "gguf_read_vocab: %s", err);
    int ok_b = vocab_read_spm_model("tests/data/llama2/tokenizer.model", &b, err) == 0;
    CHECK(ok_b, "tokenizer.model: %s", err);
    if (ok_a && ok_b) {
        CHECK(vocab_serialize(&a, &sa, &na, err) == 0 && vocab_serialize(&b, &sb, &nb, err) == 0,
              "serialize: %s", err);
        CHECK(sa && sb && na == nb && !memcmp(sa, sb, na),
              "tokenizer sections differ (%llu vs %llu bytes)", (unsigned long long)na,
              (unsigned long long)nb);
        CHECK(a.bos_id == b.bos_id && a.eos_id == b.eos_id, "bos/eos %u/%u vs %u/%u", a.bos_id,
              a.eos_id, b.bos_id, b.eos_id);
    }
    free(sa);
    free(sb);
    if (ok_a)
        vocab_free(&a);
    if (ok_b)
        vocab_free(&b);
    free(gguf);
}

/* GPT-2's vocabulary from llama.cpp's vocab-only GGUF: byte-level pieces
 * become raw bytes (ids 0..255 are the 256 single bytes, in the order of
 * GPT-2's bytes_to_unicode: '!' is id 0, byte 0x00 id 188, ' ' id 220),
 * merges become id pairs ("Ġ t" is the first: 220, 83). The file has no
 * tokenizer.ggml.add_bos_token, and llama.cpp adds no BOS for pre "gpt-2". */
static void test_gpt2_vocab(void)
{
    char *gguf = unpacked("ggml-vocab-gpt-2"), err[HEARTH_ERR_BYTES];
    struct vocab v;
    int ok = gguf_read_vocab(gguf, &v, err) == 0;
    CHECK(ok, "gguf_read_vocab: %s", err);
    if (ok) {
        CHECK(v.hdr.type == HEARTH_TOKENIZER_BYTE_BPE && v.hdr.n_tokens == 50257 &&
              v.hdr.n_merges == 50000 && v.hdr.pre_tokenizer == HEARTH_PRE_GPT2 &&
              v.hdr.flags == HEARTH_TOK_NO_BOS && v.bos_id == 50256 && v.eos_id == 50256,
              "header: type %u, %u tokens, %u merges, pre %u, flags %u, bos %u eos %u",
              v.hdr.type, v.hdr.n_tokens, v.hdr.n_merges, v.hdr.pre_tokenizer, v.hdr.flags,
              v.bos_id, v.eos_id);
        int seen[256] = {0}, singles = 1;
        for (int id = 0; id < 256; id++) {
            singles &= v.piece_bytes[id] == 1;
            if (v.piece_bytes[id] == 1)
                seen[(uint8_t)v.pieces[id][0]]++;
        }
        for (int b = 0; b < 256; b++)
            singles &= seen[b] == 1;
        CHECK(singles, "ids 0..255 are not the 256 single bytes");
        CHECK(v.pieces[0][0] == '!' && v.pieces[188][0] == 0 && v.pieces[220][0] == ' ',
              "byte order of ids 0, 188, 220 wrong");
        CHECK(v.merges[0][0] == 220 && v.merges[0][1] == 83, "first merge (%u, %u)",
              v.merges[0][0], v.merges[0][1]);
        CHECK(v.kinds[50256] == HEARTH_TOKEN_CONTROL && v.piece_bytes[50256] == 13 &&
              !memcmp(v.pieces[50256], "<|endoftext|>", 13), "<|endoftext|> not kept as text");
        vocab_free(&v);
    }
    free(gguf);
}

/* UTF-8 of GPT-2's stand-in for byte b (openai/gpt-2 encoder.py
 * bytes_to_unicode), written out here independently of gguf.c. */
static int gpt2_char(unsigned b, char *out)
{
    unsigned cp = b, n = 0;
    if (!((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)) {
        for (unsigned x = 0; x < b; x++)
            n += !((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || x >= 0xae);
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

/* A byte-level BPE vocabulary: the 256 byte tokens (id = byte), "Ġt",
 * "he", "Ġthe", three control tokens and a user-defined "中" stored as
 * text. extra_normal: one more normal token (for hostile tests). */
static void gg_vocab_bpe(struct gg *g, const char *pre, const char *const *merges, int n_merges,
                         const char *extra_normal)
{
    char *tokens[264];
    int32_t types[264];
    uint32_t n = 0;
    for (unsigned b = 0; b < 256; b++) {
        char c[3] = {0};
        gpt2_char(b, c);
        tokens[n] = strdup(c);
        types[n++] = 1;
    }
    static const char *const more[] = {
        "\xc4\xa0t", "he", "\xc4\xa0the", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
        "\xe4\xb8\xad",
    };
    static const int32_t more_types[] = {1, 1, 1, 3, 3, 3, 4};
    for (int i = 0; i < 7; i++) {
        tokens[n] = strdup(more[i]);
        types[n++] = more_types[i];
    }
    if (extra_normal) {
        tokens[n] = strdup(extra_normal);
        types[n++] = 1;
    }
    kv_str(g, "tokenizer.ggml.model", "gpt2");
    if (pre)
        kv_str(g, "tokenizer.ggml.pre", pre);
    kv_strs(g, "tokenizer.ggml.tokens", tokens, NULL, n);
    kv_arr32(g, "tokenizer.ggml.token_type", V_I32, types, n);
    if (merges)
        kv_strs(g, "tokenizer.ggml.merges", (char *const *)merges, NULL, (uint32_t)n_merges);
    kv_u32(g, "tokenizer.ggml.bos_token_id", 259);
    kv_u32(g, "tokenizer.ggml.eos_token_id", 260);
    for (uint32_t i = 0; i < n; i++)
        free(tokens[i]);
}

static const char *const bpe_merges[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he"};

/* A whole llama model with a byte-level BPE vocabulary of 263 tokens. */
static int read_bpe_model(const char *pre, const char *const *merges, int n_merges,
                          const char *extra, struct source *src, char *err)
{
    struct synth_config cfg = tiny_cfg;
    cfg.vocab_size = 263 + (extra != NULL);
    struct synth_model *sm = synth_create(&cfg, 0);
    static const struct gg_opts f32 = {.types = {G_F32, G_F32}};
    struct gg g;
    gg_init(&g);
    gg_model(&g, sm, &f32);
    gg_vocab_bpe(&g, pre, merges, n_merges, extra);
    int rc = read_gg(&g, "bpe.gguf", src, err);
    gg_free(&g);
    synth_free(sm);
    return rc;
}

static void test_bpe_model(void)
{
    struct source src;
    char err[HEARTH_ERR_BYTES];
    int ok = read_bpe_model("llama-bpe", bpe_merges, 3, NULL, &src, err) == 0;
    CHECK(ok, "gguf_read: %s", err);
    if (!ok)
        return;
    const struct vocab *v = &src.vocab;
    CHECK(v->hdr.type == HEARTH_TOKENIZER_BYTE_BPE && v->hdr.pre_tokenizer == HEARTH_PRE_LLAMA3 &&
          v->hdr.flags == HEARTH_TOK_IGNORE_MERGES && v->hdr.unk_id == UINT32_MAX,
          "header: type %u pre %u flags %u unk %u", v->hdr.type, v->hdr.pre_tokenizer,
          v->hdr.flags, v->hdr.unk_id);
    CHECK(v->piece_bytes[32] == 1 && v->pieces[32][0] == ' ' && v->piece_bytes[10] == 1 &&
          v->pieces[10][0] == '\n', "byte tokens not decoded");
    CHECK(v->piece_bytes[258] == 4 && !memcmp(v->pieces[258], " the", 4), "\"Ġthe\" not \" the\"");
    CHECK(v->piece_bytes[262] == 3 && !memcmp(v->pieces[262], "\xe4\xb8\xad", 3) &&
          v->kinds[262] == HEARTH_TOKEN_USER_DEFINED, "user-defined token changed");
    CHECK(v->hdr.n_merges == 3 && v->merges[0][0] == 32 && v->merges[0][1] == 't' &&
          v->merges[1][0] == 'h' && v->merges[1][1] == 'e' && v->merges[2][0] == 256 &&
          v->merges[2][1] == 257, "merges wrong");
    /* eos <|end_of_text|>, then <|eot_id|> by its text as llama.cpp does */
    CHECK(src.cfg.bos_id == 259 && src.cfg.eos_id == 260 && src.cfg.n_stop_ids == 2 &&
          src.cfg.stop_ids[0] == 260 && src.cfg.stop_ids[1] == 261,
          "bos %u eos %u, %u stop ids", src.cfg.bos_id, src.cfg.eos_id, src.cfg.n_stop_ids);
    source_free(&src);
}

static void expect_bpe_error(const char *pre, const char *const *merges, int n_merges,
                             const char *extra, const char *needle)
{
    struct source src;
    char err[HEARTH_ERR_BYTES] = "";
    int rc = read_bpe_model(pre, merges, n_merges, extra, &src, err);
    CHECK(rc == -1 && strstr(err, needle), "expected an error with \"%s\", got status %d: %s",
          needle, rc, err);
    if (rc == 0)
        source_free(&src);
}

static void test_bpe_refusals(void)
{
    static const char *const unknown_left[] = {"x\xc4\xa0 t"};
    static const char *const unknown_joined[] = {"h t"};
    static const char *const no_space[] = {"ht"};
    expect_bpe_error("llama-bpe", unknown_left, 1, NULL, "the left part is not a token");
    expect_bpe_error("llama-bpe", unknown_joined, 1, NULL, "the merged string is not a token");
    expect_bpe_error("llama-bpe", no_space, 1, NULL, "separated by a space");
    expect_bpe_error("falcon", bpe_merges, 3, NULL, "\"falcon\" is not supported");
    expect_bpe_error(NULL, bpe_merges, 3, NULL, "tokenizer.ggml.pre\" is missing");
    expect_bpe_error("llama-bpe", NULL, 0, NULL, "tokenizer.ggml.merges\" is missing");
    expect_bpe_error("llama-bpe", bpe_merges, 3, "\xe4\xb8\xad\xe6\x96\x87", "GPT-2 byte alphabet");
}

/* ---- hostile files -------------------------------------------------------- */

/* gguf_read of these bytes fails with one message naming the file and
 * containing needle (ASan shows anything left allocated). */
static void expect_bytes_error(const struct gg_buf *b, const char *needle, const char *what)
{
    char *path = test_path("hostile.gguf");
    struct source src;
    char err[HEARTH_ERR_BYTES] = "";
    int rc = gg_write_buf(path, b) == 0 ? gguf_read(path, &src, err) : -2;
    CHECK(rc == -1 && strstr(err, needle) && strstr(err, path),
          "%s: expected an error with \"%s\", got status %d: %s", what, needle, rc, err);
    if (getenv("HEARTH_PRINT_GGUF"))
        printf("    %s: %s\n", what, err);
    if (rc == 0)
        source_free(&src);
    free(path);
}

static void expect_gg_error(const struct gg *g, const char *needle, const char *what)
{
    struct gg_buf b;
    gg_bytes(g, &b, NULL);
    expect_bytes_error(&b, needle, what);
    free(b.p);
}

/* Header and tensor-info fields damaged in place. */
static void test_hostile_fields(void)
{
    struct gg g;
    struct gg_marks mk;
    struct gg_buf b;
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    gg_bytes(&g, &b, &mk);
    size_t name0 = strlen(g.t[0].name), dims0 = mk.info_at[0] + 8 + name0;
    const struct {
        size_t at;
        uint64_t value;
        unsigned bytes;
        const char *needle, *what;
    } cases[] = {
        {0, 0x58554747, 4, "not a GGUF file", "magic"},
        {4, 1, 4, "version 1", "version 1"},
        {4, 4, 4, "version 4", "version 4"},
        {4, 3u << 24, 4, "big-endian", "big-endian version"},
        {mk.n_tensors_at, 1ull << 40, 8, "tensor count", "huge tensor count"},
        {mk.n_tensors_at, UINT64_MAX, 8, "the tensor count is negative", "negative tensor count"},
        {mk.n_kv_at, 1ull << 63, 8, "the metadata count is negative", "negative metadata count"},
        {mk.n_kv_at, 1ull << 40, 8, "metadata count", "huge metadata count"},
        {mk.n_kv_at, g.n_kv + 1, 8, "", "one metadata entry too many"},
        {mk.n_kv_at, g.n_kv - 1, 8, "", "one metadata entry too few"},
        {mk.n_tensors_at, (uint64_t)g.n_t + 1, 8, "", "one tensor too many"},
        {mk.n_tensors_at, (uint64_t)g.n_t - 1, 8, "", "one tensor too few"},
        {mk.kv_at, 1ull << 62, 8, "runs past the end", "huge key length"},
        {mk.kv_at, 0, 8, "the key is empty", "empty key"},
        {mk.info_at[0], 200, 8, "tensor name of 200 bytes", "long tensor name"},
        {mk.info_at[0], 1ull << 62, 8, "runs past the end", "huge tensor name"},
        {dims0, 5, 4, "5 dimensions", "5 dimensions"},
        {dims0 + 4, UINT64_MAX, 8, "dimension 0 is negative", "negative dimension"},
        {dims0 + 4, 1ull << 62, 8, "more elements than fit", "huge dimensions"},
        {mk.type_at[1], G_Q4_K, 4, "type Q4_K (12)", "Q4_K tensor"},
        {mk.type_at[1], 99, 4, "type unknown (99)", "unknown tensor type"},
        {mk.offset_at[1], mk.offset[1] + 1, 8, "not a multiple of the alignment", "misaligned"},
        {mk.offset_at[2], 1ull << 50, 8, "run past the end", "offset past the end"},
        {mk.offset_at[2], UINT64_MAX - 31, 8, "run past the end", "offset near 2^64"},
        {mk.offset_at[2], mk.offset[1], 8, "overlap", "overlapping tensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gg_buf c = {malloc(b.n), b.n, b.n};
        memcpy(c.p, b.p, b.n);
        gg_patch_le(&c, cases[i].at, cases[i].value, cases[i].bytes);
        expect_bytes_error(&c, cases[i].needle, cases[i].what);
        free(c.p);
    }
    b.n--; /* the last tensor's data cut short by one byte */
    expect_bytes_error(&b, "run past the end", "data cut short");
    free(b.p);
    gg_free(&g);
}

/* Every truncation of a valid file fails cleanly: each byte of the header,
 * metadata and tensor infos, then steps through the data. */
static void test_hostile_truncation(void)
{
    struct gg g;
    struct gg_marks mk;
    struct gg_buf b;
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    gg_bytes(&g, &b, &mk);
    char *path = test_path("truncated.gguf"), err[HEARTH_ERR_BYTES];
    int bad = 0;
    CHECK(gg_write_buf(path, &b) == 0, "write %s", path);
    /* cuts from the end down, so that truncate only ever shortens */
    for (size_t cut = b.n; cut-- > 0 && bad < 5;) {
        if (cut > mk.data_at && cut % 1009 != 0)
            continue;
        struct source src;
        err[0] = 0;
        int rc = truncate(path, (off_t)cut) == 0 ? gguf_read(path, &src, err) : -2;
        if (rc != -1 || !err[0]) {
            bad++;
            CHECK(0, "cut at %zu of %zu bytes: status %d, error \"%s\"", cut, b.n, rc, err);
        }
        if (rc == 0)
            source_free(&src);
    }
    free(path);
    free(b.p);
    gg_free(&g);
}

/* Random bytes of the metadata changed: any outcome but a crash, a hang or
 * a silent failure (ASan and UBSan watch the reader). */
static void test_hostile_random_bytes(void)
{
    struct gg g;
    struct gg_marks mk;
    struct gg_buf b;
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    gg_bytes(&g, &b, &mk);
    char *path = test_path("fuzzed.gguf"), err[HEARTH_ERR_BYTES];
    uint64_t state = 99;
    struct gg_buf c = {malloc(b.n), b.n, b.n};
    for (int iter = 0; iter < 400; iter++) {
        memcpy(c.p, b.p, b.n);
        int flips = 1 + (int)(test_rand_u64(&state) % 4);
        for (int f = 0; f < flips; f++)
            c.p[test_rand_u64(&state) % mk.data_at] ^= (uint8_t)(1 + test_rand_u64(&state) % 255);
        struct source src;
        err[0] = 0;
        int rc = gg_write_buf(path, &c) == 0 ? gguf_read(path, &src, err) : -2;
        CHECK(rc == 0 || (rc == -1 && err[0]), "iteration %d: status %d without a message", iter,
              rc);
        if (rc == 0)
            source_free(&src);
    }
    free(c.p);
    free(path);
    free(b.p);
    gg_free(&g);
}

/* Metadata values: raw KVs added to the tiny model (after leaving out the
 * key they replace, if any). */
static void test_hostile_metadata(void)
{
    static const struct {
        const char *skip, *key;
        size_t key_len;
        uint32_t type;
        const char *value;
        size_t n;
        const char *needle;
    } cases[] = {
        {NULL, "x.a", 3, 13, "\0", 1, "unknown value type 13"},
        {NULL, "x.a", 3, 9, "\x09\0\0\0\x01\0\0\0\0\0\0\0", 12, "arrays of arrays"},
        {NULL, "x.a", 3, 9, "\x14\0\0\0\x01\0\0\0\0\0\0\0", 12, "unknown array element type 20"},
        {NULL, "x.a", 3, 9, "\x04\0\0\0\0\0\0\0\0\0\0\x10", 12, "needs more than"},
        {NULL, "x.a", 3, 9, "\x08\0\0\0\0\0\0\0\0\0\0\x10", 12, "cannot fit"},
        {NULL, "x.a", 3, 8, "\0\0\0\0\0\0\0\x40", 8, "runs past the end"},
        {NULL, "x\0a", 3, 4, "\0\0\0\0", 4, "NUL byte"},
        {NULL, "general.alignment", 17, 10, " \0\0\0\0\0\0\0", 8, "must be u32"},
        {NULL, "general.alignment", 17, 4, "\0\0\0\0", 4, "not a power of two"},
        {NULL, "general.alignment", 17, 4, "0\0\0\0", 4, "not a power of two"},
        {NULL, "general.architecture", 20, 8, "\x05\0\0\0\0\0\0\0llama", 13, "appears twice"},
        {NULL, "llama.expert_count", 18, 4, "\x08\0\0\0", 4, "mixture-of-experts"},
        {NULL, "llama.rope.scaling.type", 23, 8, "\x04\0\0\0\0\0\0\0yarn", 12, "\"yarn\" is not"},
        {NULL, "llama.vocab_size", 16, 4, "\x2d\x01\0\0", 4, "vocab_size is 301"},
        {NULL, "llama.attention.key_length", 26, 4, " \0\0\0", 4, "key_length is 32"},
        {"general.architecture", "general.architecture", 20, 8, "\x04\0\0\0\0\0\0\0gpt2", 12,
         "hearth exports: llama, qwen2"},
        {"llama.embedding_length", NULL, 0, 0, NULL, 0, "\"llama.embedding_length\" is missing"},
        {"llama.attention.head_count", "llama.attention.head_count", 26, 4, "\x03\0\0\0", 4,
         "does not divide"},
        {"llama.attention.head_count", "llama.attention.head_count", 26, 9,
         "\x04\0\0\0\x01\0\0\0\0\0\0\0\x04\0\0\0", 16, "per-layer values"},
        {"llama.attention.layer_norm_rms_epsilon", "llama.attention.layer_norm_rms_epsilon", 38,
         8, "\x01\0\0\0\0\0\0\0e", 9, "has type str"},
        {"llama.rope.dimension_count", "llama.rope.dimension_count", 26, 4, "\x08\0\0\0", 4,
         "rope.dimension_count is 8"},
        {"tokenizer.ggml.model", "tokenizer.ggml.model", 20, 8, "\x04\0\0\0\0\0\0\0bert", 12,
         "\"bert\" is not supported"},
        {"tokenizer.ggml.tokens", NULL, 0, 0, NULL, 0, "\"tokenizer.ggml.tokens\" is missing"},
        {"tokenizer.ggml.token_type", "tokenizer.ggml.token_type", 25, 9,
         "\x05\0\0\0\x01\0\0\0\0\0\0\0\x01\0\0\0", 16, "1 entries for 300 tokens"},
        {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.bos_token_id", 27, 4, "\x2c\x01\0\0", 4,
         "expected 0 to 299"},
        {"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.unknown_token_id", 31, 4,
         "\x05\0\0\0", 4, "unknown_token_id is 5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gg g;
        synth_free(tiny_gg(&g, NULL, NULL, cases[i].skip));
        if (cases[i].key) {
            gg_put_strn(&g.kv, cases[i].key, cases[i].key_len);
            gg_put_u32(&g.kv, cases[i].type);
            gg_put(&g.kv, cases[i].value, cases[i].n);
            g.n_kv++;
        }
        char what[64];
        snprintf(what, sizeof what, "metadata case %zu", i);
        expect_gg_error(&g, cases[i].needle, what);
        gg_free(&g);
    }
}

/* tokenizer.ggml.add_space_prefix false: no dummy prefix (llama.cpp's
 * default for "llama" is true). */
static void test_spm_no_space_prefix(void)
{
    struct gg g;
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    kv_bool(&g, "tokenizer.ggml.add_space_prefix", 0);
    struct source src;
    char err[HEARTH_ERR_BYTES];
    int ok = read_gg(&g, "noprefix.gguf", &src, err) == 0;
    CHECK(ok, "%s", err);
    if (ok) {
        CHECK(src.vocab.hdr.flags == HEARTH_TOK_BYTE_FALLBACK, "flags 0x%x", src.vocab.hdr.flags);
        source_free(&src);
    }
    gg_free(&g);
}

/* GGUF version 2 has the layout of version 3 (ggml docs/gguf.md: version 3
 * only added big-endian files). */
static void test_version_2(void)
{
    struct gg g;
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    char *v3 = test_path("v3.hearth"), *v2 = test_path("v2.hearth");
    char *p3 = test_path("v3.gguf"), *p2 = test_path("v2.gguf"), err[HEARTH_ERR_BYTES] = "";
    int ok = gg_write(&g, p3) == 0 && export_gguf(p3, v3, HEARTH_F32, err) == 0;
    g.version = 2;
    ok = ok && gg_write(&g, p2) == 0 && export_gguf(p2, v2, HEARTH_F32, err) == 0;
    CHECK(ok && files_equal(v2, v3), "version 2 and 3 files differ: %s", err);
    gg_free(&g);
    free(v3);
    free(v2);
    free(p3);
    free(p2);
}

/* A valid general.alignment other than 32 moves the data section. */
static void test_alignment_64(void)
{
    struct gg g;
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    kv_u32(&g, "general.alignment", 64);
    g.alignment = 64;
    struct source src;
    char err[HEARTH_ERR_BYTES];
    int ok = read_gg(&g, "align64.gguf", &src, err) == 0;
    CHECK(ok, "alignment 64: %s", err);
    for (uint32_t i = 0; ok && i < src.n_tensors; i++)
        CHECK(src.tensors[i].offset % 64 == 0, "tensor %s at %llu", src.tensors[i].name,
              (unsigned long long)src.tensors[i].offset);
    if (ok)
        source_free(&src);
    gg_free(&g);
}

static void edit_type0(struct vocab *v) { v->kinds[5] = 0; }
static void edit_nan(struct vocab *v) { v->scores[7] = NAN; }
static void edit_empty(struct vocab *v) { v->piece_bytes[280] = 0; }
static void edit_no_unk(struct vocab *v) { v->kinds[0] = HEARTH_TOKEN_CONTROL; }
static void edit_two_unk(struct vocab *v) { v->kinds[1] = HEARTH_TOKEN_UNKNOWN; }
static void edit_bad_byte(struct vocab *v) { memcpy(v->pieces[5], "<0x0g>", 6); }

static void edit_dup(struct vocab *v)
{
    free(v->pieces[281]);
    v->pieces[281] = strdup(v->pieces[280]);
    v->piece_bytes[281] = v->piece_bytes[280];
}

static void edit_long(struct vocab *v)
{
    free(v->pieces[290]);
    v->pieces[290] = malloc(70000);
    memset(v->pieces[290], 'a', 70000);
    v->piece_bytes[290] = 70000;
}

static void test_hostile_vocab(void)
{
    static const struct {
        void (*edit)(struct vocab *);
        const char *needle;
    } cases[] = {
        {edit_type0, "token type 0"},
        {edit_nan, "the score is NaN"},
        {edit_empty, "the token is empty"},
        {edit_dup, "is the same string as token 280"},
        {edit_no_unk, "no token has type unknown"},
        {edit_two_unk, "tokens 0 and 1 are both of type unknown"},
        {edit_bad_byte, "not spelled <0xHH>"},
        {edit_long, "70000 bytes is longer than"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gg g;
        synth_free(tiny_gg_edit(&g, NULL, NULL, NULL, cases[i].edit));
        char what[64];
        snprintf(what, sizeof what, "vocabulary case %zu", i);
        expect_gg_error(&g, cases[i].needle, what);
        gg_free(&g);
    }
}

static const float zeros64[64];

static void test_hostile_tensors(void)
{
    struct gg g;
    synth_free(tiny_gg(&g, NULL, NULL, "blk.0.ffn_up.weight"));
    expect_gg_error(&g, "\"blk.0.ffn_up.weight\" is missing", "missing tensor");
    gg_free(&g);

    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    gg_tensor(&g, "blk.0.attn_output.bias", G_F32, 1, 64, zeros64, sizeof zeros64);
    expect_gg_error(&g, "unexpected tensor \"blk.0.attn_output.bias\"", "extra tensor");
    gg_free(&g);

    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    snprintf(g.t[1].name, sizeof g.t[1].name, "blk.7.attn_norm.weight");
    expect_gg_error(&g, "block_count is 1", "layer out of range");
    gg_free(&g);

    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    snprintf(g.t[2].name, sizeof g.t[2].name, "%s", g.t[1].name);
    expect_gg_error(&g, "appears twice", "duplicate tensor");
    gg_free(&g);

    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    for (int i = 0; i < g.n_t; i++) {
        if (!strcmp(g.t[i].name, "blk.0.attn_k.weight")) {
            g.t[i].ne[0] = 32;
            g.t[i].ne[1] = 64;
        }
    }
    expect_gg_error(&g, "has shape [32, 64, 1, 1]", "transposed tensor");
    gg_free(&g);

    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    gg_tensor(&g, "blk.0.attn_q.bias", G_F32, 1, 64, zeros64, sizeof zeros64);
    expect_gg_error(&g, "other q/k/v biases are present", "some biases");
    gg_free(&g);

    struct gg_opts qwen = {.arch = "qwen2", .types = {G_F32, G_F32}};
    synth_free(tiny_gg(&g, NULL, &qwen, NULL));
    expect_gg_error(&g, "this architecture has q/k/v biases", "qwen2 without biases");
    gg_free(&g);
}

/* ---- chat template, BOS, sliding window ------------------------------------ */

/* A byte-level model GGUF as read_bpe_model makes it, left open for more
 * keys. */
static struct synth_model *bpe_gg(struct gg *g, const char *pre)
{
    struct synth_config cfg = tiny_cfg;
    cfg.vocab_size = 263;
    struct synth_model *sm = synth_create(&cfg, 0);
    static const struct gg_opts f32 = {.types = {G_F32, G_F32}};
    gg_init(g);
    gg_model(g, sm, &f32);
    gg_vocab_bpe(g, pre, bpe_merges, 3, NULL);
    return sm;
}

/* The text of tests/data/chat/templates/NAME.jinja; malloc'd. */
static char *chat_template_file(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "tests/data/chat/templates/%s.jinja", name);
    size_t n;
    char *t = test_read_file(path, &n);
    CHECK(t != NULL, "cannot read %s", path);
    return t;
}

/* gguf_read of g; the source's header fields and tokenizer flags. */
static int read_meta(struct gg *g, struct hearth_header *cfg, uint32_t *tok_flags, char *err)
{
    struct source src;
    int rc = read_gg(g, "meta.gguf", &src, err);
    if (rc == 0) {
        *cfg = src.cfg;
        *tok_flags = src.vocab.hdr.flags;
        source_free(&src);
    }
    return rc;
}

static void test_chat_template_and_window(void)
{
    static const struct {
        const char *family; /* a template file, or NULL: text is the template */
        const char *text;
        uint32_t want;
    } cases[] = {
        {"llama2", NULL, HEARTH_CHAT_LLAMA2},
        {"mistral_v02", NULL, HEARTH_CHAT_MISTRAL_V02},
        {NULL, "{% for m in messages %}{{ m.content }}{% endfor %}", CHAT_TEMPLATE_UNRECOGNISED},
    };
    char err[HEARTH_ERR_BYTES];
    struct hearth_header cfg;
    uint32_t flags = 0;
    memset(&cfg, 0, sizeof cfg);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gg g;
        synth_free(tiny_gg(&g, NULL, NULL, NULL));
        char *text = cases[i].family ? chat_template_file(cases[i].family) : NULL;
        kv_str(&g, "tokenizer.chat_template", text ? text : cases[i].text);
        err[0] = 0;
        int rc = read_meta(&g, &cfg, &flags, err);
        CHECK(rc == 0 && cfg.chat_template == cases[i].want, "chat template case %zu: rc %d, "
              "template %u (want %u) %s", i, rc, rc == 0 ? cfg.chat_template : 0, cases[i].want,
              err);
        free(text);
        gg_free(&g);
    }
    /* absent: none, no window; an unrecognised template is written as none */
    struct gg g;
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    CHECK(read_meta(&g, &cfg, &flags, err) == 0 && cfg.chat_template == HEARTH_CHAT_NONE &&
          cfg.sliding_window == 0, "no template: %u, window %u", cfg.chat_template,
          cfg.sliding_window);
    gg_free(&g);
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    kv_str(&g, "tokenizer.chat_template", "{{ messages }}");
    kv_u32(&g, "llama.attention.sliding_window", 4096);
    char *gguf = test_path("window.gguf"), *out = test_path("window.hearth");
    struct source src;
    int ok = gg_write(&g, gguf) == 0 && gguf_read(gguf, &src, err) == 0;
    CHECK(ok, "window: %s", err);
    if (ok) {
        CHECK(src.cfg.sliding_window == 4096 &&
              src.cfg.chat_template == CHAT_TEMPLATE_UNRECOGNISED, "window %u, template %u",
              src.cfg.sliding_window, src.cfg.chat_template);
        CHECK(hearth_write(&src, out, HEARTH_F32, 0, err) == 0, "write: %s", err);
        size_t n;
        char *file = test_read_file(out, &n);
        struct hearth_header h;
        CHECK(file && n >= sizeof h, "cannot read %s", out);
        if (file && n >= sizeof h) {
            memcpy(&h, file, sizeof h);
            CHECK(h.chat_template == HEARTH_CHAT_NONE && h.sliding_window == 4096,
                  "written: template %u, window %u", h.chat_template, h.sliding_window);
        }
        free(file);
        source_free(&src);
    }
    free(gguf);
    free(out);
    gg_free(&g);
    /* wrong types are refused by key */
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    kv_u32(&g, "tokenizer.chat_template", 1);
    expect_gg_error(&g, "tokenizer.chat_template\" (value at offset", "chat_template u32");
    gg_free(&g);
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    kv_str(&g, "llama.attention.sliding_window", "4096");
    expect_gg_error(&g, "llama.attention.sliding_window", "sliding_window string");
    gg_free(&g);
}

/* Whether the tokenizer loads v's section with flags. */
static int tokenizer_loads(const struct vocab *v, uint32_t flags)
{
    struct vocab copy = *v;
    copy.hdr.flags = flags;
    uint8_t *section = NULL;
    uint64_t n = 0;
    char err[HEARTH_ERR_BYTES];
    struct tokenizer t;
    int ok = vocab_serialize(&copy, &section, &n, err) == 0 &&
             tokenizer_init(&t, section, n, v->bos_id, v->eos_id, err) == 0;
    if (ok)
        tokenizer_free(&t);
    free(section);
    return ok;
}

/* BOS for prompts: tokenizer.ggml.add_bos_token, else llama.cpp's default
 * (SPM and Llama 3's pre-tokenizer yes, gpt-2 / qwen2 / smollm no); Qwen2
 * gets NFC when this build's tokenizer takes the flag. */
static void test_bos_and_nfc_flags(void)
{
    static const struct {
        const char *pre; /* NULL: the SentencePiece tiny model */
        int add_bos;     /* -1: key absent */
        int no_bos;
    } cases[] = {
        {NULL, -1, 0}, {NULL, 0, 1}, {"llama-bpe", -1, 0}, {"llama-bpe", 0, 1},
        {"gpt-2", -1, 1}, {"gpt-2", 1, 0}, {"smollm", -1, 1}, {"qwen2", -1, 1},
        {"qwen2", 1, 0},
    };
    char err[HEARTH_ERR_BYTES];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gg g;
        synth_free(cases[i].pre ? bpe_gg(&g, cases[i].pre) : tiny_gg(&g, NULL, NULL, NULL));
        if (cases[i].add_bos >= 0)
            kv_bool(&g, "tokenizer.ggml.add_bos_token", cases[i].add_bos);
        struct source src;
        err[0] = 0;
        int ok = read_gg(&g, "bos.gguf", &src, err) == 0;
        CHECK(ok, "case %zu: %s", i, err);
        if (ok) {
            uint32_t f = src.vocab.hdr.flags;
            CHECK(!!(f & HEARTH_TOK_NO_BOS) == cases[i].no_bos, "case %zu (%s, add_bos %d): "
                  "flags %#x", i, cases[i].pre ? cases[i].pre : "spm", cases[i].add_bos, f);
            int qwen2 = cases[i].pre && !strcmp(cases[i].pre, "qwen2");
            int nfc_ok = tokenizer_loads(&src.vocab, f | HEARTH_TOK_NFC);
            CHECK(!!(f & HEARTH_TOK_NFC) == (qwen2 && nfc_ok), "case %zu: NFC flag %#x, "
                  "tokenizer takes NFC: %d", i, f, nfc_ok);
            CHECK(tokenizer_loads(&src.vocab, f), "case %zu: flags %#x not loadable", i, f);
            source_free(&src);
        }
        gg_free(&g);
    }
    struct gg g;
    synth_free(tiny_gg(&g, NULL, NULL, NULL));
    kv_u32(&g, "tokenizer.ggml.add_bos_token", 1);
    expect_gg_error(&g, "tokenizer.ggml.add_bos_token", "add_bos_token u32");
    gg_free(&g);
}

const struct test_case gguf_tests[] = {
    {"gguf: F16 reference models give llama.cpp's logits (F16 tier)", test_reference_f16},
    {"gguf: Q8_0/Q4_0 reference models pass through, llama.cpp's logits (exact tier)",
     test_reference_quantized},
    {"gguf: Llama 3 rope scaling of vis-scaled-f16 recovered from rope_freqs",
     test_reference_rope_scaling},
    {"gguf: repack_group_* stores what pack_group_* stores", test_repack_matches_pack},
    {"gguf: Q8_0/Q4_0 blocks kept bit for bit, re-quantized or dequantized on request",
     test_blocks_pass_through},
    {"gguf: ./export reads GGUF and says what it does with quantized matrices",
     test_export_command},
    {"gguf: same weights as HF folder and GGUF give the same file", test_same_as_hf_folder},
    {"gguf: vis-gqa-f16 and an HF folder of its weights give the same file",
     test_vis_same_as_hf_folder},
    {"gguf: qwen2 rotate-half q/k rows and biases converted", test_qwen2_rows_converted},
    {"gguf: rope_freqs divisors to Llama 3 parameters, or refused", test_rope_freqs},
    {"gguf: llama-spm vocab GGUF equals tokenizer.model", test_spm_vocab_matches_tokenizer_model},
    {"gguf: GPT-2 vocab GGUF decoded to bytes and merge ids", test_gpt2_vocab},
    {"gguf: byte-level BPE model vocabulary, pre-tokenizer, stop ids", test_bpe_model},
    {"gguf: byte-level BPE refusals", test_bpe_refusals},
    {"gguf: hostile header and tensor fields", test_hostile_fields},
    {"gguf: every truncation refused", test_hostile_truncation},
    {"gguf: random metadata damage never crashes", test_hostile_random_bytes},
    {"gguf: hostile metadata values", test_hostile_metadata},
    {"gguf: general.alignment 64", test_alignment_64},
    {"gguf: version 2", test_version_2},
    {"gguf: add_space_prefix false", test_spm_no_space_prefix},
    {"gguf: hostile vocabularies", test_hostile_vocab},
    {"gguf: hostile tensor sets", test_hostile_tensors},
    {"gguf: chat template family, sliding window", test_chat_template_and_window},
    {"gguf: BOS for prompts by add_bos_token or llama.cpp's default; NFC for qwen2",
     test_bos_and_nfc_flags},
    {NULL, NULL},
};
