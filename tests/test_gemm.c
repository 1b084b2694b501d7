/* tests/test_gemm.c - tests for the batched products of kernels/kernels.h
 * (gemm_f32, gemm_q8_0, gemm_q4_0): for the scalar table and every SIMD
 * table this CPU runs, each token's outputs must be bit for bit (memcmp)
 * what the table's own matvec, and the scalar matvec, give for that token
 * alone; and nothing outside rows [r0, r1) of each token's output may be
 * written. Shapes cover tail groups, cols from 32 to 4096 (odd multiples
 * of 32; any cols for F32), 1..70 tokens (every remainder of the SIMD
 * kernels' token tiles) and about 1030 (across their token blocks), row
 * subranges and an output stride larger than the rows. Also: int16
 * saturation extremes, empty calls, and the int8 peak probe's contract.
 *
 * In the tests/emulated/ build the avx512 table is emulated and tested on
 * any CPU, as in tests/test_kernels.c. Nothing here times anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../err.h"
#include "../format.h"
#include "../kernels/kernels.h"
#include "../quant.h"
#include "kernel_tables.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------- */

/* scalar first, then the SIMD tables this CPU runs; returns how many. */
static int all_tables(const struct kernels *out[3])
{
    out[0] = &kernels_scalar;
    return 1 + simd_tables(out + 1);
}

/* n_tok tokens of cols values: normal, each token with its own scale (so
 * tokens differ in d, q and sum), a zero block now and then. */
static void fill_tokens(float *x, uint64_t n_tok, uint64_t cols, uint64_t *rng)
{
    for (uint64_t t = 0; t < n_tok; t++) {
        float scale = 1.0f + 100.0f * test_rand_uniform(rng);
        for (uint64_t c = 0; c < cols; c++)
            x[t * cols + c] = scale * test_rand_normal(rng);
        if (cols >= 2 * QK && test_rand_u64(rng) % 4 == 0)
            memset(x + t * cols + QK, 0, QK * sizeof(float));
    }
}

/* Every byte of a float output nobody should write. */
#define SENTINEL_BYTE 0xa5

struct shape {
    uint64_t rows, cols;
    uint32_t n_tok;
    uint64_t r0, r1, ldo;
};

static const char *type_name(uint32_t type)
{
    return type == HEARTH_F32 ? "f32" : type == HEARTH_Q8_0 ? "q8_0" : "q4_0";
}

/* Per-token matvec of table k into out (n_tok x ldo, pre-filled). */
static void per_token(const struct kernels *k, uint32_t type, float *out, const struct shape *s,
                      const void *w, const float *x, const struct q8_act *a)
{
    for (uint64_t t = 0; t < s->n_tok; t++) {
        float *o = out + t * s->ldo;
        if (type == HEARTH_F32) {
            k->matvec_f32(o, w, x + t * s->cols, s->cols, s->r0, s->r1);
        } else {
            struct q8_act at = q8_act_from(a, t, s->cols);
            if (type == HEARTH_Q8_0)
                k->matvec_q8_0(o, w, &at, s->cols, s->r0, s->r1);
            else
                k->matvec_q4_0(o, w, &at, s->cols, s->r0, s->r1);
        }
    }
}

static void run_gemm(const struct kernels *k, uint32_t type, float *out, const struct shape *s,
                     const void *w, const float *x, const struct q8_act *a)
{
    if (type == HEARTH_F32)
        k->gemm_f32(out, s->ldo, w, x, s->n_tok, s->cols, s->r0, s->r1);
    else if (type == HEARTH_Q8_0)
        k->gemm_q8_0(out, s->ldo, w, a, s->n_tok, s->cols, s->r0, s->r1);
    else
        k->gemm_q4_0(out, s->ldo, w, a, s->n_tok, s->cols, s->r0, s->r1);
}

/* Output buffers hold n_tok rows of ldo floats and then GUARD_FLOATS more,
 * which no kernel may write either. */
#define GUARD_FLOATS 64

static uint64_t out_floats(const struct shape *s)
{
    return (uint64_t)s->n_tok * s->ldo + GUARD_FLOATS;
}

/* Reports the first float where got and want differ; returns 1 if none. */
static int same_outputs(const float *want, const float *got, const struct shape *s,
                        const char *table, uint32_t type, const char *what)
{
    uint64_t n = out_floats(s);
    if (memcmp(want, got, n * sizeof(float)) == 0)
        return 1;
    uint64_t i = 0;
    while (memcmp(want + i, got + i, sizeof(float)) == 0)
        i++;
    CHECK(0,
          "%s %s %s: rows %llu cols %llu n_tok %u [%llu, %llu) ldo %llu: token %llu row %llu "
          "is %.9g, want %.9g%s",
          table, type_name(type), what, (unsigned long long)s->rows,
          (unsigned long long)s->cols, s->n_tok, (unsigned long long)s->r0,
          (unsigned long long)s->r1, (unsigned long long)s->ldo,
          (unsigned long long)(i / s->ldo), (unsigned long long)(i % s->ldo), got[i], want[i],
          i / s->ldo < s->n_tok && i % s->ldo >= s->r0 && i % s->ldo < s->r1
              ? ""
              : " (outside what it may write)");
    return 0;
}

/* The scalar matvec per token is the reference; every table's gemm, and
 * its own per-token matvec, must equal it everywhere, sentinels included. */
static void check_against(uint32_t type, const struct shape *s, const void *w, const float *x,
                          const struct q8_act *a)
{
    const struct kernels *tables[3];
    int n = all_tables(tables);
    size_t bytes = out_floats(s) * sizeof(float);
    float *want = xalloc(bytes), *got = xalloc(bytes);
    memset(want, SENTINEL_BYTE, bytes);
    per_token(&kernels_scalar, type, want, s, w, x, a);
    for (int i = 0; i < n; i++) {
        memset(got, SENTINEL_BYTE, bytes);
        run_gemm(tables[i], type, got, s, w, x, a);
        same_outputs(want, got, s, tables[i]->name, type, "gemm vs scalar matvec per token");
        if (tables[i] == &kernels_scalar)
            continue;
        memset(got, SENTINEL_BYTE, bytes);
        per_token(tables[i], type, got, s, w, x, a);
        same_outputs(want, got, s, tables[i]->name, type, "own matvec per token");
    }
    free(want);
    free(got);
}

/* Random data of one shape, checked for every table. */
static void check_shape(uint32_t type, const struct shape *s, uint64_t *rng)
{
    float *x = xalloc((size_t)s->n_tok * s->cols * sizeof(float));
    fill_tokens(x, s->n_tok, s->cols, rng);
    if (type == HEARTH_F32) {
        float *w = xalloc((size_t)s->rows * s->cols * sizeof(float));
        for (uint64_t r = 0; r < s->rows; r++) {
            /* rows of very different magnitude: a swapped row shows */
            float scale = (float)(1 + r % 7) * (r % 3 ? 1.0f : 1e-3f);
            for (uint64_t c = 0; c < s->cols; c++)
                w[r * s->cols + c] = scale * test_rand_normal(rng);
        }
        check_against(type, s, w, x, NULL);
        free(w);
    } else {
        struct q8_act a;
        act_alloc(&a, (uint64_t)s->n_tok * s->cols);
        kernels_scalar.quantize_act(x, (uint64_t)s->n_tok * s->cols, &a);
        uint8_t *w = random_packed(type, s->rows, s->cols, rng);
        check_against(type, s, w, x, &a);
        free(w);
        act_free(&a);
    }
    free(x);
}

/* A valid [r0, r1) of rows: for packed types r0 a multiple of 16 and r1 a
 * multiple of 16 or rows; for F32 anything. Half the time all rows. */
static void pick_range(uint32_t type, struct shape *s, uint64_t *rng)
{
    s->r0 = 0;
    s->r1 = s->rows;
    if (test_rand_u64(rng) % 2 == 0)
        return;
    if (type == HEARTH_F32) {
        s->r0 = test_rand_u64(rng) % s->rows;
        s->r1 = s->r0 + 1 + test_rand_u64(rng) % (s->rows - s->r0);
        return;
    }
    uint64_t groups = (s->rows + ROW_GROUP - 1) / ROW_GROUP;
    uint64_t g0 = test_rand_u64(rng) % groups;
    uint64_t g1 = g0 + 1 + test_rand_u64(rng) % (groups - g0);
    s->r0 = g0 * ROW_GROUP;
    s->r1 = g1 * ROW_GROUP < s->rows ? g1 * ROW_GROUP : s->rows;
}

/* Token counts: the SIMD tile sizes (4 and 8 tokens) and their neighbours,
 * and counts long enough to take full tiles and a remainder. */
static const uint32_t token_counts[] = {1, 2, 3, 5, 7, 17, 64, 65, 4, 6, 8, 9, 13, 70};
#define N_TOKEN_COUNTS (sizeof token_counts / sizeof token_counts[0])

/* Fixed shapes (each with every token count up to a work budget), then
 * random ones. Work per shape is kept to rows * cols * n_tok <= 6M. */
static void check_type(uint32_t type, uint64_t seed)
{
    static const uint64_t cols_fixed[] = {32, 96, 160, 1024, 1056, 4096};
    static const uint64_t rows_fixed[] = {1, 9, 16, 33};
    uint64_t rng = seed;
    for (size_t ci = 0; ci < sizeof cols_fixed / sizeof cols_fixed[0]; ci++)
        for (size_t ri = 0; ri < sizeof rows_fixed / sizeof rows_fixed[0]; ri++)
            for (size_t ti = 0; ti < N_TOKEN_COUNTS; ti++) {
                struct shape s = {rows_fixed[ri], cols_fixed[ci], token_counts[ti], 0, 0, 0};
                if (s.rows * s.cols * s.n_tok > 6000000u)
                    continue;
                pick_range(type, &s, &rng);
                s.ldo = s.rows + (ti % 3 == 0 ? 0 : 1 + test_rand_u64(&rng) % 5);
                check_shape(type, &s, &rng);
            }
    for (int i = 0; i < 60; i++) {
        struct shape s;
        /* odd multiples of 32 most of the time; F32 any cols now and then */
        s.cols = 32 * (1 + 2 * (test_rand_u64(&rng) % 64));
        if (i % 4 == 1)
            s.cols = 32 * (1 + test_rand_u64(&rng) % 128);
        if (type == HEARTH_F32 && i % 3 == 2)
            s.cols = 1 + test_rand_u64(&rng) % 300;
        s.rows = 1 + test_rand_u64(&rng) % 70;
        s.n_tok = token_counts[test_rand_u64(&rng) % N_TOKEN_COUNTS];
        while (s.n_tok > 1 && s.rows * s.cols * s.n_tok > 6000000u)
            s.n_tok /= 2;
        pick_range(type, &s, &rng);
        s.ldo = s.rows + test_rand_u64(&rng) % 9;
        check_shape(type, &s, &rng);
    }
}

/* ---- the tests ---------------------------------------------------------- */

static void test_complete(void)
{
    const struct kernels *tables[3];
    int n = all_tables(tables);
    for (int i = 0; i < n; i++) {
        const struct kernels *k = tables[i];
        CHECK(k->gemm_f32 && k->gemm_q8_0 && k->gemm_q4_0, "%s: a gemm kernel is missing",
              k->name);
        if (k == &kernels_scalar)
            CHECK(k->int8_peak_loop == NULL, "scalar has no int8 peak probe");
        else
            CHECK(k->int8_peak_loop != NULL, "%s: no int8 peak probe", k->name);
    }
}

static void test_gemm_q4_0(void)
{
    check_type(HEARTH_Q4_0, 0x4a0ull);
}

static void test_gemm_q8_0(void)
{
    check_type(HEARTH_Q8_0, 0x8a0ull);
}

/* F32 also with cols that are not multiples of 16 (the masked tail). */
static void test_gemm_f32(void)
{
    check_type(HEARTH_F32, 0xf32ull);
    static const uint64_t odd_cols[] = {1, 7, 15, 17, 31, 33, 100, 1001};
    uint64_t rng = 0xf320ull;
    for (size_t ci = 0; ci < sizeof odd_cols / sizeof odd_cols[0]; ci++)
        for (size_t ti = 0; ti < N_TOKEN_COUNTS; ti++) {
            struct shape s = {5 + ci, odd_cols[ci], token_counts[ti], 0, 0, 0};
            pick_range(HEARTH_F32, &s, &rng);
            s.ldo = s.rows + ti % 4;
            check_shape(HEARTH_F32, &s, &rng);
        }
}

/* Long prompts: the SIMD kernels walk the tokens in blocks of at most 4 MB
 * of activations (GEMM_ACT_BYTES in kernels/avx2.c and avx512.c: 1024
 * tokens of 4096 int8 columns, 1023 or 1024 of 1024 F32 columns); these
 * counts cross a block boundary and end in a partial tile. */
static void test_token_blocks(void)
{
    uint64_t rng = 0xb10c;
    struct shape q = {9, 4096, 1029, 0, 9, 11};
    check_shape(HEARTH_Q4_0, &q, &rng);
    check_shape(HEARTH_Q8_0, &q, &rng);
    struct shape f = {5, 1024, 1027, 0, 5, 6};
    check_shape(HEARTH_F32, &f, &rng);
}

/* The largest int16 sums the SIMD kernels' exactness arguments allow:
 * Q8_0 weights -128 (|w| = 128) and Q4_0 nibbles 15, against activations
 * all +127 or all -127 per token, so any int16 pair or lane sum that were
 * one product too long, or saturated, would show. Scales are random. */
static void test_extremes(void)
{
    uint64_t rng = 0xe7;
    const uint64_t cols = 256, rows = 40;
    const uint32_t n_tok = 9;
    struct q8_act a;
    act_alloc(&a, (uint64_t)n_tok * cols);
    for (uint64_t t = 0; t < n_tok; t++) {
        int8_t v = t % 2 ? -127 : 127;
        memset(a.q + t * cols, (unsigned char)v, cols);
        for (uint64_t b = 0; b < cols / QK; b++) {
            a.d[t * (cols / QK) + b] = fp16_to_f32(random_scale(&rng));
            a.sum[t * (cols / QK) + b] = QK * v;
            a.q4_start[t * (cols / QK) + b] = q4_start_of(a.q + t * cols + b * QK);
        }
    }
    for (int type_i = 0; type_i < 2; type_i++) {
        uint32_t type = type_i ? HEARTH_Q4_0 : HEARTH_Q8_0;
        uint8_t *w = random_packed(type, rows, cols, &rng);
        uint64_t nb = cols / QK, stride = nb * (qbytes_of(type) + 2 * ROW_GROUP);
        for (uint64_t g = 0; g * stride < padded_rows(rows) / ROW_GROUP * group_stride(type, cols); g++)
            memset(w + g * stride, type == HEARTH_Q8_0 ? 0x80 : 0xff, nb * qbytes_of(type));
        struct shape s = {rows, cols, n_tok, 0, rows, rows + 3};
        check_against(type, &s, w, NULL, &a);
        free(w);
    }
    act_free(&a);
}

/* n_tok = 0 and r0 = r1 write nothing. */
static void test_empty(void)
{
    const struct kernels *tables[3];
    int n = all_tables(tables);
    uint64_t rng = 0xe4;
    const uint64_t cols = 64, rows = 32;
    struct q8_act a;
    act_alloc(&a, 4 * cols);
    float x[4 * 64], w[32 * 64], out[4 * 32], sentinel[4 * 32];
    fill_tokens(x, 4, cols, &rng);
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        w[i] = test_rand_normal(&rng);
    kernels_scalar.quantize_act(x, 4 * cols, &a);
    uint8_t *q8 = random_packed(HEARTH_Q8_0, rows, cols, &rng);
    uint8_t *q4 = random_packed(HEARTH_Q4_0, rows, cols, &rng);
    memset(sentinel, SENTINEL_BYTE, sizeof sentinel);
    for (int i = 0; i < n; i++) {
        const struct kernels *k = tables[i];
        memcpy(out, sentinel, sizeof out);
        k->gemm_f32(out, rows, w, x, 0, cols, 0, rows);
        k->gemm_f32(out, rows, w, x, 4, cols, 5, 5);
        k->gemm_q8_0(out, rows, q8, &a, 0, cols, 0, rows);
        k->gemm_q8_0(out, rows, q8, &a, 4, cols, 16, 16);
        k->gemm_q4_0(out, rows, q4, &a, 0, cols, 0, rows);
        k->gemm_q4_0(out, rows, q4, &a, 4, cols, 16, 16);
        CHECK(memcmp(out, sentinel, sizeof out) == 0, "%s: an empty gemm wrote output",
              k->name);
    }
    free(q8);
    free(q4);
    act_free(&a);
}

/* The probe's contract (kernels.h): work proportional to n_iter, the
 * count returned, and *sink written. Its speed is the bench's business. */
static void test_peak_probe(void)
{
    const struct kernels *tables[3];
    int n = all_tables(tables);
    for (int i = 0; i < n; i++) {
        const struct kernels *k = tables[i];
        if (!k->int8_peak_loop)
            continue;
        int32_t sink1 = 0x5a5a5a5a, sink3 = 0x5a5a5a5a;
        uint64_t ops1 = k->int8_peak_loop(1, &sink1), ops3 = k->int8_peak_loop(3, &sink3);
        CHECK(ops1 > 0 && ops3 == 3 * ops1, "%s: %llu ops for 1 iteration, %llu for 3",
              k->name, (unsigned long long)ops1, (unsigned long long)ops3);
        CHECK(sink1 != sink3 && (sink1 != 0x5a5a5a5a || sink3 != 0x5a5a5a5a),
              "%s: *sink does not follow the accumulators (%d, %d)", k->name, sink1, sink3);
        int32_t sink0;
        CHECK(k->int8_peak_loop(0, &sink0) == 0, "%s: ops for 0 iterations", k->name);
    }
}

const struct test_case gemm_tests[] = {
    {"gemm_tables_complete", test_complete},
    {"gemm_q4_0_vs_matvec", test_gemm_q4_0},
    {"gemm_q8_0_vs_matvec", test_gemm_q8_0},
    {"gemm_f32_vs_matvec", test_gemm_f32},
    {"gemm_token_blocks", test_token_blocks},
    {"gemm_extremes", test_extremes},
    {"gemm_empty", test_empty},
    {"gemm_peak_probe", test_peak_probe},
    {NULL, NULL},
};
