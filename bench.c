/* bench.c - `./run bench`: how fast hearth runs on this machine, measured
 * against the machine's own limit.
 *
 * Decode streams every weight once per token, so its ceiling is memory
 * bandwidth. The bench first measures read bandwidth in-process (1 and N
 * threads), then builds a model of a real shape with random weights in
 * memory (no file needed) for each weight type, and reports per-matrix
 * kernel GB/s and decode tokens/s, each as a fraction of the bandwidth
 * roofline (bytes read per token / bandwidth). On all threads it then times
 * prompt prefill (tokens/s and time to first token), decode at context
 * depths up to 4096, and the GEMM kernel against the int8 peak of a
 * register-only loop. It prints medians of several runs and asserts
 * nothing: timings never decide a test. */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "kernels/kernels.h"
#include "model.h"
#include "quant.h"
#include "threads.h"

#define MAX_REPEATS 31
#define BENCH_CONTEXT 8192u /* decode at depth 4096 plus up to 4000 timed tokens */

struct shape {
    const char *name;
    uint32_t dim, hidden, layers, heads, kv_heads, vocab, tied;
};

/* Llama 3.2 1B (config.json of meta-llama/Llama-3.2-1B) and TinyLlama 1.1B
 * (TinyLlama/TinyLlama-1.1B-Chat-v1.0). */
static const struct shape shapes[] = {
    {"llama3.2-1b", 2048, 8192, 16, 32, 8, 128256, 1},
    {"tinyllama", 2048, 5632, 22, 32, 4, 32000, 0},
};

struct bench_options {
    const struct shape *shape;
    const char *kernels;
    int threads, tokens, repeats;
    uint32_t batch, kv_type;   /* prefill batch (0: the default), KV cache type */
    uint32_t types[3];
    int n_types;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ------------------------------------------------------- memory bandwidth */

struct read_job {
    const uint64_t *buf;
    uint64_t n_words;
    int streams;                     /* far-apart parts each thread walks at once */
    const struct kernels *kern;      /* read_f32_worker: whose matvec_f32 streams */
    float out[POOL_MAX_THREADS];     /* kept so the reads are not optimised away */
};

/* One 8-byte load per 64-byte line brings the whole line from DRAM, so the
 * DRAM traffic is the buffer's size while the instruction count stays far
 * below what the memory system can serve. Each thread walks `streams`
 * far-apart parts of its share in lockstep (on the development machine one
 * stream read best with one thread, four with two). Plain C. */
static void read_worker(void *ctx, int thread, int n_threads)
{
    struct read_job *job = ctx;
    unsigned long long b0, b1; /* in blocks of 8 lines = 64 words */
    pool_split(job->n_words / 64, thread, n_threads, &b0, &b1);
    uint64_t part = (b1 - b0) / (uint64_t)job->streams * 64, start = b0 * 64;
    uint64_t s[8] = {0};
    for (uint64_t i = 0; i < part; i += 64)
        for (int k = 0; k < 8; k++)
            for (int r = 0; r < job->streams; r++)
                s[k] += job->buf[start + (uint64_t)r * part + i + 8 * (uint64_t)k];
    job->out[thread] = (float)(s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7]);
}

/* The buffer as an F32 matrix of 4096-float rows, streamed through the F32
 * kernel: on the development machine its wide loads read faster than the
 * plain loop on one thread, so it is a third way to find the ceiling. */
#define F32_PROBE_COLS 4096u
static void read_f32_worker(void *ctx, int thread, int n_threads)
{
    struct read_job *job = ctx;
    uint64_t rows = job->n_words * 2 / F32_PROBE_COLS;
    unsigned long long r0, r1;
    pool_split(rows / ROW_GROUP, thread, n_threads, &r0, &r1);
    const float *x = (const float *)job->buf; /* the first row doubles as the input */
    for (uint64_t r = r0 * ROW_GROUP; r < r1 * ROW_GROUP; r += ROW_GROUP) {
        float y[ROW_GROUP];
        job->kern->matvec_f32(y, (const float *)job->buf + r * F32_PROBE_COLS, x,
                              F32_PROBE_COLS, 0, ROW_GROUP);
        job->out[thread] += y[0];
    }
}

/* The best of several runs of each way of reading: on a shared machine a
 * disturbance only ever slows a run, so the best is the closest to the
 * hardware, and a roofline from it is the strictest. */
static double read_bandwidth_gbs(struct thread_pool *pool, const struct kernels *kern,
                                 const uint64_t *buf, uint64_t n_bytes, int repeats)
{
    double best = 0;
    for (int way = 0; way < 3; way++) {
        struct read_job job = {.buf = buf, .n_words = n_bytes / 8, .streams = way == 1 ? 4 : 1,
                               .kern = kern};
        for (int r = 0; r < repeats + 2; r++) {
            double t0 = now_s();
            pool_run(pool, way == 2 ? read_f32_worker : read_worker, &job);
            double gbs = (double)n_bytes / (now_s() - t0) / 1e9;
            best = gbs > best ? gbs : best;
        }
    }
    return best;
}

/* ------------------------------------------------------ a model in memory */

struct bench_model {
    struct model m;
    void *allocs[512];
    int n_allocs;
    uint64_t weight_bytes_per_token; /* bytes every decode step reads */
};

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* (Vigna 2016), as in sampler.c */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-0.05, 0.05): the scale of trained Llama weights. */
static void random_row(float *row, uint64_t n, uint64_t *rng)
{
    for (uint64_t i = 0; i < n; i++)
        row[i] = ((float)(rng_next(rng) >> 40) / 16777216.0f - 0.5f) * 0.1f;
}

static int fill_tensor(struct bench_model *bm, struct tensor *t, uint32_t type, uint64_t rows,
                       uint64_t cols, uint64_t seed, char *err)
{
    uint64_t n_bytes = hearth_tensor_bytes(type, rows, cols);
    void *data = aligned_alloc(64, (n_bytes + 63) / 64 * 64);
    float *group = malloc(ROW_GROUP * cols * sizeof(float));
    if (!data || !group || bm->n_allocs == (int)(sizeof bm->allocs / sizeof bm->allocs[0])) {
        free(data), free(group);
        return fail(err, "out of memory building a %llux%llu %s tensor", (unsigned long long)rows,
                    (unsigned long long)cols, hearth_type_name(type));
    }
    bm->allocs[bm->n_allocs++] = data;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    uint64_t group_bytes = hearth_tensor_bytes(type, ROW_GROUP, cols);
    for (uint64_t r0 = 0; r0 < rows; r0 += ROW_GROUP) {
        int n = rows - r0 < ROW_GROUP ? (int)(rows - r0) : ROW_GROUP;
        const float *ptrs[ROW_GROUP];
        for (int i = 0; i < n; i++) {
            ptrs[i] = group + (uint64_t)i * cols;
            random_row(group + (uint64_t)i * cols, cols, &rng);
        }
        if (type == HEARTH_F32)
            memcpy((float *)data + r0 * cols, group, (size_t)n * cols * sizeof(float));
        else if (type == HEARTH_Q8_0)
            pack_group_q8_0(ptrs, n, cols, (uint8_t *)data + r0 / ROW_GROUP * group_bytes);
        else
            pack_group_q4_0(ptrs, n, cols, (uint8_t *)data + r0 / ROW_GROUP * group_bytes);
    }
    if (rows == 1) /* norm weights near 1, as trained models have */
        for (uint64_t i = 0; i < cols; i++)
            ((float *)data)[i] = 1.0f + ((float *)data)[i];
    free(group);
    *t = (struct tensor){type, rows, cols, data};
    return 0;
}

static void free_model(struct bench_model *bm)
{
    for (int i = 0; i < bm->n_allocs; i++)
        free(bm->allocs[i]);
    free(bm->m.layers);
    free(bm->m.rope_inv_freq);
    memset(bm, 0, sizeof *bm);
}

static int build_model(struct bench_model *bm, const struct shape *sh, uint32_t type, char *err)
{
    memset(bm, 0, sizeof *bm);
    struct hearth_header *h = &bm->m.cfg;
    *h = (struct hearth_header){.dim = sh->dim, .hidden_dim = sh->hidden, .n_layers = sh->layers,
                                .n_heads = sh->heads, .n_kv_heads = sh->kv_heads,
                                .head_dim = sh->dim / sh->heads, .vocab_size = sh->vocab,
                                .max_seq_len = BENCH_CONTEXT, .rope_theta = 500000.0f, .norm_eps = 1e-5f,
                                .flags = sh->tied ? HEARTH_FLAG_TIED_EMBEDDINGS : 0};
    bm->m.layers = calloc(sh->layers, sizeof *bm->m.layers);
    bm->m.rope_inv_freq = calloc(h->head_dim / 2, sizeof(float));
    if (!bm->m.layers || !bm->m.rope_inv_freq)
        return fail(err, "out of memory");
    uint64_t q_dim = (uint64_t)h->n_heads * h->head_dim, kv_dim = (uint64_t)h->n_kv_heads * h->head_dim;
    uint64_t seed = 1;
    int rc = fill_tensor(bm, &bm->m.token_embd, type, sh->vocab, sh->dim, seed++, err);
    rc = rc ? rc : fill_tensor(bm, &bm->m.output_norm, HEARTH_F32, 1, sh->dim, seed++, err);
    if (!sh->tied)
        rc = rc ? rc : fill_tensor(bm, &bm->m.output, type, sh->vocab, sh->dim, seed++, err);
    for (uint32_t l = 0; l < sh->layers && rc == 0; l++) {
        struct layer *L = &bm->m.layers[l];
        struct { struct tensor *t; uint32_t type; uint64_t rows, cols; } parts[] = {
            {&L->attn_norm, HEARTH_F32, 1, sh->dim},   {&L->attn_q, type, q_dim, sh->dim},
            {&L->attn_k, type, kv_dim, sh->dim},       {&L->attn_v, type, kv_dim, sh->dim},
            {&L->attn_output, type, sh->dim, q_dim},   {&L->ffn_norm, HEARTH_F32, 1, sh->dim},
            {&L->ffn_gate, type, sh->hidden, sh->dim}, {&L->ffn_up, type, sh->hidden, sh->dim},
            {&L->ffn_down, type, sh->dim, sh->hidden},
        };
        for (size_t i = 0; i < sizeof parts / sizeof parts[0] && rc == 0; i++) {
            rc = fill_tensor(bm, parts[i].t, parts[i].type, parts[i].rows, parts[i].cols, seed++,
                             err);
            bm->weight_bytes_per_token += hearth_tensor_bytes(parts[i].type, parts[i].rows,
                                                              parts[i].cols);
        }
    }
    if (rc)
        return rc;
    model_setup_derived(&bm->m);
    bm->weight_bytes_per_token += hearth_tensor_bytes(bm->m.output.type, sh->vocab, sh->dim) +
                                  (uint64_t)sh->dim * 4;
    return 0;
}

/* ------------------------------------------------------------ measurement */

/* Reading a buffer twice the size of the last-level cache before each timed
 * run leaves no weights cached, so small matrices are timed from DRAM as
 * decode reads them. */
#define EVICT_BYTES (64u << 20)

static void evict_caches(struct thread_pool *pool, const uint64_t *evict)
{
    struct read_job job = {.buf = evict, .n_words = EVICT_BYTES / 8, .streams = 1};
    pool_run(pool, read_worker, &job);
}

/* Kernel GB/s for one kind of matrix: every layer's matrix of that kind in
 * turn, starting from cold caches, as decode streams them. */
static double kernel_gbs(struct state *s, const struct bench_model *bm, size_t field_offset,
                         const uint64_t *evict, int repeats)
{
    const struct model *m = &bm->m;
    const struct tensor *first = (const struct tensor *)((const char *)&m->layers[0] + field_offset);
    uint64_t bytes = hearth_tensor_bytes(first->type, first->rows, first->cols) * m->cfg.n_layers;
    float *x = s->hb2, *out = s->hb; /* hidden-sized scratch, big enough for any layer matrix */
    for (uint64_t i = 0; i < first->cols; i++)
        x[i] = (float)(i % 7) * 0.1f - 0.3f;
    double gbs[MAX_REPEATS];
    for (int r = 0; r < repeats; r++) {
        evict_caches(s->pool, evict);
        double t0 = now_s();
        for (uint32_t l = 0; l < m->cfg.n_layers; l++)
            model_matmul(s, out, x, 1,
                         (const struct tensor *)((const char *)&m->layers[l] + field_offset));
        gbs[r] = (double)bytes / (now_s() - t0) / 1e9;
    }
    return median(gbs, repeats);
}

static double classifier_gbs(struct state *s, const struct bench_model *bm,
                             const uint64_t *evict, int repeats)
{
    const struct tensor *w = &bm->m.output;
    uint64_t bytes = hearth_tensor_bytes(w->type, w->rows, w->cols);
    double gbs[MAX_REPEATS];
    for (int r = 0; r < repeats; r++) {
        evict_caches(s->pool, evict);
        double t0 = now_s();
        model_matmul(s, s->logits, s->x, 1, w);
        gbs[r] = (double)bytes / (now_s() - t0) / 1e9;
    }
    return median(gbs, repeats);
}

static double decode_tokens_per_s(struct state *s, const struct bench_model *bm, int tokens,
                                  int repeats)
{
    double tps[MAX_REPEATS];
    for (int r = 0; r < repeats; r++) {
        for (uint32_t p = 0; p < 2; p++) /* warm-up */
            model_forward(&bm->m, s, (int32_t)(p + 1), p);
        double t0 = now_s();
        for (int p = 0; p < tokens; p++)
            model_forward(&bm->m, s, (int32_t)(p * 7 + 3), (uint32_t)(p + 2));
        tps[r] = tokens / (now_s() - t0);
    }
    return median(tps, repeats);
}

/* ------------------------------------------- prefill, long context, GEMM */

/* Prompt lengths and context depths the bench reports (issue targets). */
static const uint32_t prefill_lengths[] = {64, 256, 1024};
static const uint32_t decode_depths[] = {0, 1024, 4096};

/* Prefill tokens/s of an n-token prompt from an empty cache; the time is
 * also the time to the first token (its logits come out of the prefill). */
static double prefill_seconds(struct state *s, const struct bench_model *bm, uint32_t n,
                              int repeats)
{
    int32_t *tokens = malloc(n * sizeof *tokens);
    double t[MAX_REPEATS];
    if (!tokens)
        return NAN;
    for (uint32_t i = 0; i < n; i++)
        tokens[i] = (int32_t)((i * 7919u + 13u) % bm->m.cfg.vocab_size);
    for (int r = 0; r < repeats; r++) {
        double t0 = now_s();
        model_prefill(&bm->m, s, tokens, n, 0);
        t[r] = now_s() - t0;
    }
    free(tokens);
    return median(t, repeats);
}

/* Fills the KV cache with random finite values, so decode at a depth can be
 * timed without prefilling that many tokens first: attention reads the same
 * bytes and does the same arithmetic whatever the values are. */
static void fill_kv_cache(struct state *s, const struct model *m)
{
    uint64_t n = (uint64_t)m->cfg.n_layers * m->cfg.n_kv_heads * s->kv_head_elems, rng = 7;
    for (uint64_t i = 0; i < n; i++) {
        float v = (float)(rng_next(&rng) >> 40) / (float)(1 << 24) - 0.5f;
        if (s->kv_type == HEARTH_F16) {
            ((uint16_t *)s->key_cache)[i] = f32_to_fp16(v);
            ((uint16_t *)s->value_cache)[i] = f32_to_fp16(-v);
        } else {
            ((float *)s->key_cache)[i] = v;
            ((float *)s->value_cache)[i] = -v;
        }
    }
}

/* Decode tokens/s of `tokens` steps starting after position `depth`. */
static double decode_tps_at(struct state *s, const struct bench_model *bm, uint32_t depth,
                            int tokens)
{
    model_forward(&bm->m, s, 1, depth); /* warm-up */
    double t0 = now_s();
    for (int p = 0; p < tokens; p++)
        model_forward(&bm->m, s, (int32_t)(p * 7 + 3), depth + 1 + (uint32_t)p);
    return tokens / (now_s() - t0);
}

/* Decode tokens/s at each of the depths, medians of `repeats` rounds. A
 * round times every depth once, so a change in the machine's speed (it is
 * shared) falls on all depths alike rather than on the last ones. */
static void decode_at_depths(struct state *s, const struct bench_model *bm, int tokens,
                             int repeats, double *tps)
{
    enum { N_DEPTHS = sizeof decode_depths / sizeof decode_depths[0] };
    double runs[N_DEPTHS][MAX_REPEATS];
    for (int r = 0; r < repeats; r++)
        for (int i = 0; i < N_DEPTHS; i++)
            runs[i][r] = decode_tps_at(s, bm, decode_depths[i], tokens);
    for (int i = 0; i < N_DEPTHS; i++)
        tps[i] = median(runs[i], repeats);
}

struct peak_job {
    const struct kernels *kern;
    uint64_t n_iter;
    uint64_t ops[POOL_MAX_THREADS];
    int32_t sink[POOL_MAX_THREADS];
};

static void peak_worker(void *ctx, int thread, int n_threads)
{
    (void)n_threads;
    struct peak_job *j = ctx;
    j->ops[thread] = j->kern->int8_peak_loop(j->n_iter, &j->sink[thread]);
}

/* One timed run of the int8 peak loop on every thread of the pool at once
 * (the kernel table's register-only loop, kernels.h int8_peak_loop), in
 * GOP/s. *n_iter grows until a run takes at least 0.1 s. */
static double int8_peak_once(struct thread_pool *pool, const struct kernels *kern,
                             uint64_t *n_iter)
{
    struct peak_job j = {.kern = kern};
    for (;;) {
        j.n_iter = *n_iter;
        double t0 = now_s();
        pool_run(pool, peak_worker, &j);
        double dt = now_s() - t0;
        if (dt >= 0.1) {
            uint64_t ops = 0;
            for (int i = 0; i < pool_size(pool); i++)
                ops += j.ops[i];
            return (double)ops / dt / 1e9;
        }
        *n_iter *= 2;
    }
}

/* One pass of the GEMM over ffn_gate of every layer against a batch of
 * n_tok tokens (weights warm or not as prefill meets them), in GOP/s (2 x
 * rows x cols x tokens per product). */
static double gemm_once(struct state *s, const struct bench_model *bm, uint32_t n_tok)
{
    const struct model *m = &bm->m;
    const struct tensor *w0 = &m->layers[0].ffn_gate;
    double t0 = now_s();
    for (uint32_t l = 0; l < m->cfg.n_layers; l++)
        model_matmul(s, s->hb, s->xb, n_tok, &m->layers[l].ffn_gate);
    double dt = now_s() - t0;
    return 2.0 * (double)w0->rows * w0->cols * n_tok * m->cfg.n_layers / dt / 1e9;
}

/* The GEMM against the int8 peak: rounds of one peak run then one GEMM
 * pass, so that both meet the shared machine in the same state; medians
 * of each and of the per-round ratio. */
static void gemm_vs_peak(struct state *s, const struct bench_model *bm,
                         struct thread_pool *pool, const struct kernels *kern, int rounds,
                         double *gemm, double *peak, double *ratio)
{
    double g[MAX_REPEATS], p[MAX_REPEATS], r[MAX_REPEATS];
    uint64_t n_iter = 1u << 16;
    const struct tensor *w0 = &bm->m.layers[0].ffn_gate;
    for (uint64_t i = 0; i < (uint64_t)s->max_batch * w0->cols; i++)
        s->xb[i] = (float)(i % 13) * 0.05f - 0.3f;
    for (int k = 0; k < rounds; k++) {
        p[k] = int8_peak_once(pool, kern, &n_iter);
        g[k] = gemm_once(s, bm, s->max_batch);
        r[k] = g[k] / p[k];
    }
    *gemm = median(g, rounds);
    *peak = median(p, rounds);
    *ratio = median(r, rounds);
}

/* The prefill, long-context and GEMM figures of one weight type. */
static int bench_prefill(const struct bench_options *o, const struct bench_model *bm,
                         const struct kernels *kern, struct thread_pool *pool)
{
    char err[HEARTH_ERR_BYTES];
    struct state s;
    struct state_options so = {BENCH_CONTEXT, o->batch, o->kv_type, kern, pool};
    if (state_open(&s, &bm->m, &so, err) < 0) {
        fprintf(stderr, "bench: %s\n", err);
        return -1;
    }
    int reps = o->repeats < 3 ? o->repeats : 3;
    printf("    prefill (batch %u, KV cache %s), medians of %d runs:\n", s.max_batch,
           o->kv_type == HEARTH_F16 ? "f16" : "f32", reps);
    for (size_t i = 0; i < sizeof prefill_lengths / sizeof prefill_lengths[0]; i++) {
        double sec = prefill_seconds(&s, bm, prefill_lengths[i], reps);
        printf("      %4u-token prompt: %7.1f tokens/s, time to first token %.0f ms\n",
               prefill_lengths[i], prefill_lengths[i] / sec, 1e3 * sec);
    }
    fill_kv_cache(&s, &bm->m);
    double tps[sizeof decode_depths / sizeof decode_depths[0]];
    decode_at_depths(&s, bm, o->tokens, o->repeats, tps);
    printf("    decode at context depth (KV cache filled with random values; depths "
           "interleaved):\n");
    for (size_t i = 0; i < sizeof decode_depths / sizeof decode_depths[0]; i++)
        printf("      depth %4u: %6.2f tokens/s (%.2f x depth 0)\n", decode_depths[i], tps[i],
               tps[i] / tps[0]);
    if (bm->m.layers[0].ffn_gate.type != HEARTH_F32 && kern->int8_peak_loop) {
        double gops, peak, ratio;
        gemm_vs_peak(&s, bm, pool, kern, o->repeats, &gops, &peak, &ratio);
        printf("    GEMM ffn_gate x %u tokens: %.1f GOP/s; int8 peak of this loop on %d "
               "thread%s: %.1f GOP/s; GEMM / peak %.1f%% (medians of %d alternated "
               "rounds)\n", s.max_batch, gops, pool_size(pool), pool_size(pool) > 1 ? "s" : "",
               peak, 100 * ratio, o->repeats);
    }
    state_free(&s);
    return 0;
}

/* -------------------------------------------------------------- the report */

struct bandwidth {
    double one, all;
    int n_threads;
};

static int bench_type(const struct bench_options *o, uint32_t type, const struct kernels *kern,
                      struct thread_pool *pools[2], const struct bandwidth *bw,
                      const uint64_t *evict)
{
    char err[HEARTH_ERR_BYTES];
    struct bench_model bm;
    double t0 = now_s();
    if (build_model(&bm, o->shape, type, err) < 0) {
        fprintf(stderr, "bench: %s\n", err);
        free_model(&bm);
        return -1;
    }
    printf("\n%s %s: %.2f GB of weights read per token (built in %.1f s)\n", o->shape->name,
           hearth_type_name(type), bm.weight_bytes_per_token / 1e9, now_s() - t0);
    static const struct { const char *name; size_t offset; } kinds[] = {
        {"attn_q", offsetof(struct layer, attn_q)},     {"attn_k", offsetof(struct layer, attn_k)},
        {"attn_v", offsetof(struct layer, attn_v)},     {"attn_output", offsetof(struct layer, attn_output)},
        {"ffn_gate", offsetof(struct layer, ffn_gate)}, {"ffn_up", offsetof(struct layer, ffn_up)},
        {"ffn_down", offsetof(struct layer, ffn_down)},
    };
    for (int p = 0; p < 2; p++) {
        int n_threads = pool_size(pools[p]);
        double bw_gbs = p == 0 ? bw->one : bw->all;
        struct state s;
        if (state_init(&s, &bm.m, (uint32_t)o->tokens + 2, kern, pools[p], err) < 0) {
            fprintf(stderr, "bench: %s\n", err);
            free_model(&bm);
            return -1;
        }
        printf("  %d thread%s (%s kernels), bandwidth %.1f GB/s\n", n_threads,
               n_threads > 1 ? "s" : "", kern->name, bw_gbs);
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            const struct tensor *t =
                (const struct tensor *)((const char *)&bm.m.layers[0] + kinds[k].offset);
            double gbs = kernel_gbs(&s, &bm, kinds[k].offset, evict, o->repeats);
            printf("    %-12s %6llu x %-6llu %7.1f GB/s  %5.1f%% of bandwidth\n", kinds[k].name,
                   (unsigned long long)t->rows, (unsigned long long)t->cols, gbs,
                   100 * gbs / bw_gbs);
        }
        double gbs = classifier_gbs(&s, &bm, evict, o->repeats);
        printf("    %-12s %6u x %-6u %7.1f GB/s  %5.1f%% of bandwidth\n", "classifier",
               o->shape->vocab, o->shape->dim, gbs, 100 * gbs / bw_gbs);
        double tps = decode_tokens_per_s(&s, &bm, o->tokens, o->repeats);
        double roof = bw_gbs * 1e9 / (double)bm.weight_bytes_per_token;
        printf("    decode: %.2f tokens/s, roofline %.2f tokens/s: %.1f%%\n", tps, roof,
               100 * tps / roof);
        state_free(&s);
        if (pools[0] == pools[1])
            break;
    }
    int rc = bench_prefill(o, &bm, kern, pools[1]);
    free_model(&bm);
    return rc;
}

static void bench_usage(FILE *to)
{
    fprintf(to, "usage: ./run bench [--shape llama3.2-1b|tinyllama] [--types f32,q8_0,q4_0]\n"
                "                   [--threads N] [--kernels NAME] [--tokens N] [--repeats N]\n"
                "                   [--batch N] [--kv-type f16|f32]\n");
}

static int parse_int_option(const char *opt, const char *v, int lo, int hi, int *out)
{
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "bench: %s expects an integer in %d..%d\n", opt, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_types(const char *v, struct bench_options *o)
{
    o->n_types = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v ? v : "");
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        uint32_t type = !strcmp(t, "f32") ? HEARTH_F32 : !strcmp(t, "q8_0") ? HEARTH_Q8_0
                      : !strcmp(t, "q4_0") ? HEARTH_Q4_0 : UINT32_MAX;
        if (type == UINT32_MAX || o->n_types == 3) {
            fprintf(stderr, "bench: --types takes a list of f32, q8_0, q4_0\n");
            return -1;
        }
        o->types[o->n_types++] = type;
    }
    return o->n_types ? 0 : -1;
}

static int parse_bench_args(int argc, char **argv, struct bench_options *o)
{
    *o = (struct bench_options){.shape = &shapes[0], .tokens = 16, .repeats = 5,
                                .types = {HEARTH_Q4_0, HEARTH_Q8_0, HEARTH_F32}, .n_types = 3,
                                .kv_type = HEARTH_F16,
                                .threads = (int)sysconf(_SC_NPROCESSORS_ONLN)};
    int batch = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--threads"))
            rc = parse_int_option(a, v, 1, POOL_MAX_THREADS, &o->threads), i++;
        else if (!strcmp(a, "--tokens"))
            rc = parse_int_option(a, v, 1, 4000, &o->tokens), i++;
        else if (!strcmp(a, "--repeats"))
            rc = parse_int_option(a, v, 1, MAX_REPEATS, &o->repeats), i++;
        else if (!strcmp(a, "--kernels") && v)
            o->kernels = v, i++;
        else if (!strcmp(a, "--batch"))
            rc = parse_int_option(a, v, 1, 1 << 16, &batch), o->batch = (uint32_t)batch, i++;
        else if (!strcmp(a, "--kv-type") && v && (!strcmp(v, "f16") || !strcmp(v, "f32")))
            o->kv_type = strcmp(v, "f16") ? HEARTH_F32 : HEARTH_F16, i++;
        else if (!strcmp(a, "--types"))
            rc = parse_types(v, o), i++;
        else if (!strcmp(a, "--shape") && v) {
            size_t k = 0;
            while (k < sizeof shapes / sizeof shapes[0] && strcmp(shapes[k].name, v))
                k++;
            if (k == sizeof shapes / sizeof shapes[0]) {
                fprintf(stderr, "bench: unknown shape '%s'\n", v);
                return -1;
            }
            o->shape = &shapes[k], i++;
        } else {
            fprintf(stderr, "bench: unknown option or missing value: %s\n", a);
            rc = -1;
        }
        if (rc < 0) {
            bench_usage(stderr);
            return -1;
        }
    }
    return 0;
}

int bench_main(int argc, char **argv)
{
    struct bench_options o;
    if (parse_bench_args(argc, argv, &o) < 0)
        return 2;
    char err[HEARTH_ERR_BYTES];
    const struct kernels *kern = kernels_select(o.kernels, err);
    struct thread_pool *pools[2] = {pool_create(1, err), NULL};
    if (!kern || !pools[0]) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    pools[1] = o.threads == 1 ? pools[0] : pool_create(o.threads, err);
    if (!pools[1]) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    const uint64_t n_bytes = 1ull << 30;
    uint64_t *buf = aligned_alloc(64, n_bytes);
    if (!buf) {
        fprintf(stderr, "bench: out of memory for a 1 GiB bandwidth buffer\n");
        return 1;
    }
    memset(buf, 1, n_bytes); /* as floats: 2.4e-38, finite and normal */
    struct bandwidth bw = {read_bandwidth_gbs(pools[0], kern, buf, n_bytes, o.repeats),
                           read_bandwidth_gbs(pools[1], kern, buf, n_bytes, o.repeats), o.threads};
    uint64_t *evict = buf; /* its first EVICT_BYTES serve to flush the caches */
    printf("memory read bandwidth (1 GiB buffer, best of %d runs of 3 ways of reading): "
           "1 thread %.1f GB/s, %d threads %.1f GB/s\n", o.repeats + 2, bw.one, o.threads, bw.all);
    printf("kernel GB/s and decode tokens/s below are medians of %d runs\n", o.repeats);
    int rc = 0;
    for (int i = 0; i < o.n_types && rc == 0; i++)
        rc = bench_type(&o, o.types[i], kern, pools, &bw, evict);
    free(buf);
    if (pools[1] != pools[0])
        pool_destroy(pools[1]);
    pool_destroy(pools[0]);
    return rc ? 1 : 0;
}
