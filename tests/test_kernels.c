/* tests/test_kernels.c - tests for kernels/: every SIMD table this CPU runs
 * against the scalar reference bit for bit (memcmp of the outputs) on
 * random and crafted inputs, the scalar kernels against a double-precision
 * dot product, weight packing against an independent transcription of
 * ggml's reference quantizers, pack/unpack round trips, partial row ranges,
 * and kernels_select.
 *
 * Tables the CPU cannot run are skipped (kernels_select says which), except
 * in the tests/emulated/ build, where the avx512 table is emulated and runs
 * everywhere; the comparison loops print the table's name on failure.
 * Nothing here times anything. */
#include <math.h>
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

static int act_equal(const struct q8_act *x, const struct q8_act *y, uint64_t n)
{
    return memcmp(x->q, y->q, n) == 0 && memcmp(x->d, y->d, n / QK * sizeof(float)) == 0 &&
           memcmp(x->sum, y->sum, n / QK * sizeof(int32_t)) == 0 &&
           memcmp(x->q4_start, y->q4_start, n / QK * sizeof(int32_t)) == 0;
}

/* Packs a rows x cols F32 matrix (row-major) into the group layout. */
static uint8_t *pack_matrix(uint32_t type, const float *w, uint64_t rows, uint64_t cols)
{
    uint64_t stride = group_stride(type, cols);
    uint8_t *out = xalloc(padded_rows(rows) / ROW_GROUP * stride);
    for (uint64_t g = 0; g * ROW_GROUP < rows; g++) {
        const float *ptrs[ROW_GROUP];
        int n = 0;
        for (uint64_t r = g * ROW_GROUP; r < rows && n < ROW_GROUP; r++)
            ptrs[n++] = w + r * cols;
        if (type == HEARTH_Q8_0)
            pack_group_q8_0(ptrs, n, cols, out + g * stride);
        else
            pack_group_q4_0(ptrs, n, cols, out + g * stride);
    }
    return out;
}

/* Random floats: normal, times a per-row scale spanning 1e-3..1e3, with a
 * zero row, a zero block and an outlier now and then. */
static void fill_matrix(float *w, uint64_t rows, uint64_t cols, uint64_t *rng)
{
    for (uint64_t r = 0; r < rows; r++) {
        float scale = powf(10.0f, 6.0f * test_rand_uniform(rng) - 3.0f);
        int kind = (int)(test_rand_u64(rng) % 8);
        for (uint64_t c = 0; c < cols; c++)
            w[r * cols + c] = kind == 0 ? 0.0f : scale * test_rand_normal(rng);
        if (kind == 1)
            memset(w + r * cols, 0, QK * sizeof(float));
        if (kind == 2)
            w[r * cols + test_rand_u64(rng) % cols] = 100.0f * scale;
    }
}

static void fill_vector(float *x, uint64_t n, uint64_t *rng)
{
    for (uint64_t i = 0; i < n; i++)
        x[i] = test_rand_normal(rng);
    if (n > QK && (test_rand_u64(rng) & 1))
        memset(x + QK, 0, QK * sizeof(float)); /* a zero block */
}

typedef void (*matvec_q_fn)(float *, const void *, const struct q8_act *, uint64_t, uint64_t,
                            uint64_t);

static matvec_q_fn q_kernel(const struct kernels *k, uint32_t type)
{
    return type == HEARTH_Q8_0 ? k->matvec_q8_0 : k->matvec_q4_0;
}

/* Runs every SIMD table against scalar on one packed matrix and one
 * activation vector; returns 1 if all outputs match bit for bit. */
static int packed_matches(uint32_t type, const uint8_t *w, const struct q8_act *a,
                          uint64_t rows, uint64_t cols)
{
    const struct kernels *simd[2];
    int n = simd_tables(simd), ok = 1;
    float *want = xalloc(rows * sizeof(float)), *got = xalloc(rows * sizeof(float));
    q_kernel(&kernels_scalar, type)(want, w, a, cols, 0, rows);
    for (int i = 0; i < n; i++) {
        memset(got, 0, rows * sizeof(float));
        q_kernel(simd[i], type)(got, w, a, cols, 0, rows);
        if (memcmp(want, got, rows * sizeof(float)) != 0) {
            uint64_t r = 0;
            while (r < rows && memcmp(want + r, got + r, sizeof(float)) == 0)
                r++;
            CHECK(0, "%s %s rows %llu cols %llu: row %llu is %.9g, scalar %.9g", simd[i]->name,
                  hearth_type_name(type), (unsigned long long)rows, (unsigned long long)cols,
                  (unsigned long long)r, got[r], want[r]);
            ok = 0;
        }
    }
    free(want);
    free(got);
    return ok;
}

/* ---- kernels_select --------------------------------------------------- */

static void test_select(void)
{
    char err[HEARTH_ERR_BYTES] = "";
    const struct kernels *k = kernels_select("bogus", err);
    CHECK(k == NULL, "a bogus name was accepted");
    CHECK(strstr(err, "bogus") && strstr(err, "scalar, avx2, avx512"),
          "message should name the input and the valid names: %s", err);

    k = kernels_select("scalar", err);
    CHECK(k == &kernels_scalar, "scalar must always be available");

    struct cpu_features f;
    cpu_detect(&f);
    int can_avx2 = f.avx2 && f.fma && f.f16c;
    int can_avx512 = can_avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
    const struct kernels *best = kernels_select(NULL, err);
    const struct kernels *expect = can_avx512 ? &kernels_avx512
                                   : can_avx2 ? &kernels_avx2
                                              : &kernels_scalar;
    CHECK(best == expect, "default choice %s, expected %s", best ? best->name : "NULL",
          expect->name);

    const char *names[] = {"avx2", "avx512"};
    int can[] = {can_avx2, can_avx512};
    for (int i = 0; i < 2; i++) {
        err[0] = 0;
        k = kernels_select(names[i], err);
        if (can[i]) {
            CHECK(k && strcmp(k->name, names[i]) == 0 && k->matvec_f32 && k->matvec_q8_0 &&
                      k->matvec_q4_0 && k->quantize_act,
                  "%s: a supported table must be complete", names[i]);
        } else {
            CHECK(k == NULL && strstr(err, "lacks") && strstr(err, names[i]),
                  "%s on a CPU without it: got %p, message \"%s\"", names[i], (const void *)k,
                  err);
        }
    }
    /* AVX-512 implies what the AVX2 set needs on every real CPU; a CPU
     * reporting otherwise would be odd enough to flag */
    CHECK(!f.avx512f || (f.avx2 && f.fma), "cpu_detect: AVX-512 F without AVX2/FMA");
}

/* ---- activation quantization ------------------------------------------ */

/* The spec's property for one block: d is fp16(amax/127) widened, q is
 * x * (127/amax) rounded to nearest with ties to even, |q| <= 127, and sum
 * adds the q. Checked on the scalar quantizer; the SIMD ones must equal it. */
static int act_block_ok(const float *x, const struct q8_act *a, uint64_t b)
{
    float amax = 0.0f;
    for (int k = 0; k < QK; k++)
        if (fabsf(x[k]) > amax)
            amax = fabsf(x[k]);
    float d = fp16_to_f32(f32_to_fp16(amax / 127.0f));
    if (memcmp(&d, &a->d[b], sizeof d) != 0)
        return 0;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int k = 0; k < QK; k++) {
        int q = a->q[b * QK + k];
        sum += q;
        if (q < -127 || q > 127)
            return 0;
        if (!isfinite(x[k]))
            continue;
        float v = x[k] * id;
        double dist = fabs((double)v - q);
        if (dist > 0.5 || (dist == 0.5 && (q & 1)))
            return 0;
    }
    int32_t pair_sum[2] = {0, 0}; /* k % 4 in {0, 1}, then {2, 3} */
    for (int k = 0; k < QK; k++)
        pair_sum[(k / 2) % 2] += a->q[b * QK + k];
    uint32_t start = (uint32_t)a->q4_start[b];
    return sum == a->sum[b] && (int16_t)(start & 0xffffu) == -8 * pair_sum[0] &&
           (int16_t)(start >> 16) == -8 * pair_sum[1];
}

static void check_act_all(const float *x, uint64_t n, const char *what)
{
    struct q8_act want, got;
    act_alloc(&want, n);
    act_alloc(&got, n);
    kernels_scalar.quantize_act(x, n, &want);
    for (uint64_t b = 0; b < n / QK; b++)
        CHECK(act_block_ok(x + b * QK, &want, b), "%s: scalar block %llu breaks the spec", what,
              (unsigned long long)b);
    const struct kernels *simd[2];
    int ns = simd_tables(simd);
    for (int i = 0; i < ns; i++) {
        memset(got.q, 0x5a, n);
        simd[i]->quantize_act(x, n, &got);
        CHECK(act_equal(&want, &got, n), "%s: %s quantize_act differs from scalar (n %llu)",
              what, simd[i]->name, (unsigned long long)n);
    }
    act_free(&want);
    act_free(&got);
}

/* Blocks whose values land exactly on .5 after x * (127/amax): first with
 * amax = 127 * 2^e (id a power of two, so k + 0.5 is exact), then with
 * random amax, searching the floats next to (k + 0.5) / id for one whose
 * product is exactly k + 0.5. Expected q for the power-of-two case is
 * written out: ties go to the even neighbour. */
static void test_act_ties(void)
{
    float x[QK] = {127.0f, 63.5f, -63.5f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 3.5f, 126.5f, -1.5f};
    static const int8_t expect[11] = {127, 64, -64, 0, 0, 2, 2, -2, 4, 126, -2};
    struct q8_act a;
    act_alloc(&a, QK);
    kernels_scalar.quantize_act(x, QK, &a);
    for (int k = 0; k < 11; k++)
        CHECK(a.q[k] == expect[k], "x = %g: q %d, expected %d (half to even)", x[k], a.q[k],
              expect[k]);
    CHECK(a.d[0] == 1.0f, "amax 127 gives d = 1, got %g", a.d[0]);
    act_free(&a);

    uint64_t rng = 0x7e57ab1e5ull;
    uint64_t n = 64 * QK;
    float *v = xalloc(n * sizeof(float));
    int ties = 0;
    for (uint64_t b = 0; b < n / QK; b++) {
        float *xb = v + b * QK;
        float amax = b < 16 ? 127.0f * ldexpf(1.0f, (int)b - 8)
                            : powf(10.0f, 8.0f * test_rand_uniform(&rng) - 4.0f);
        float id = 127.0f / amax;
        xb[0] = (b & 1) ? -amax : amax;
        for (int k = 1; k < QK; k++) {
            float half = (float)(test_rand_u64(&rng) % 127) + 0.5f;
            float sign = (test_rand_u64(&rng) & 1) ? -1.0f : 1.0f;
            float c = half / id;
            float cand[3] = {c, nextafterf(c, 0.0f), nextafterf(c, INFINITY)};
            xb[k] = sign * c;
            for (int j = 0; j < 3; j++) {
                if (cand[j] * id == half && cand[j] <= amax) {
                    xb[k] = sign * cand[j];
                    ties++;
                    break;
                }
            }
        }
    }
    CHECK(ties > (int)n / 2, "could craft only %d exact ties out of %llu", ties,
          (unsigned long long)n);
    check_act_all(v, n, "ties");
    free(v);
}

/* The activation scale is fp16(amax / 127), a division: for a few amax
 * values in every 2^23 that differs from fp16(amax * (1 / 127)). Find such
 * values and check every kernel set gets them right. */
static void test_act_scale_division(void)
{
    float amaxes[16];
    int found = 0;
    for (uint32_t bits = 0x3f800000u; bits < 0x40000000u && found < 16; bits++) {
        float amax;
        memcpy(&amax, &bits, sizeof amax);
        if (f32_to_fp16(amax / 127.0f) != f32_to_fp16(amax * (1.0f / 127.0f)))
            amaxes[found++] = amax;
    }
    CHECK(found > 0, "no amax in [1, 2) where division and reciprocal round apart");
    if (!found)
        return;
    uint64_t n = (uint64_t)found * QK;
    float *v = xalloc(n * sizeof(float));
    for (uint64_t i = 0; i < n; i++)
        v[i] = (i % QK == 0) ? amaxes[i / QK] : amaxes[i / QK] * (float)(i % QK) / QK;
    struct q8_act a;
    act_alloc(&a, n);
    kernels_scalar.quantize_act(v, n, &a);
    for (int b = 0; b < found; b++)
        CHECK(a.d[b] == fp16_to_f32(f32_to_fp16(amaxes[b] / 127.0f)),
              "amax %a: d %a is not fp16(amax / 127)", amaxes[b], a.d[b]);
    act_free(&a);
    check_act_all(v, n, "scale division");
    free(v);
}

static void test_act_random(void)
{
    uint64_t rng = 0xac71ull;
    static const float scales[] = {1.0f, 1e6f, 1e-6f, 1e-30f, 1e30f, 3e-5f, 65504.0f * 127.0f};
    for (int s = 0; s < (int)(sizeof scales / sizeof scales[0]); s++) {
        for (uint64_t n = QK; n <= 4096; n = n * 2 + QK) {
            float *x = xalloc(n * sizeof(float));
            for (uint64_t i = 0; i < n; i++)
                x[i] = scales[s] * test_rand_normal(&rng);
            if (n >= 3 * QK) {
                memset(x + QK, 0, QK * sizeof(float));      /* zero block */
                x[2 * QK + 5] = 1000.0f * scales[s];        /* outlier block */
            }
            char what[64];
            snprintf(what, sizeof what, "scale %g", scales[s]);
            check_act_all(x, n, what);
            free(x);
        }
    }
    /* non-finite inputs: the kernels must agree (and stay defined) */
    float y[4 * QK];
    for (int i = 0; i < 4 * QK; i++)
        y[i] = test_rand_normal(&rng);
    y[3] = INFINITY;
    y[QK + 7] = -INFINITY;
    y[2 * QK + 1] = NAN;
    y[3 * QK] = NAN;
    y[3 * QK + 9] = INFINITY;
    check_act_all(y, 4 * QK, "inf/nan");
}

/* ---- packed matrix x vector: SIMD vs scalar --------------------------- */

static void check_packed_shape(uint32_t type, uint64_t rows, uint64_t cols, uint64_t *rng)
{
    float *w = xalloc(rows * cols * sizeof(float)), *x = xalloc(cols * sizeof(float));
    fill_matrix(w, rows, cols, rng);
    fill_vector(x, cols, rng);
    struct q8_act a;
    act_alloc(&a, cols);
    kernels_scalar.quantize_act(x, cols, &a);
    uint8_t *packed = pack_matrix(type, w, rows, cols);
    packed_matches(type, packed, &a, rows, cols);
    free(packed);
    packed = random_packed(type, rows, cols, rng);
    packed_matches(type, packed, &a, rows, cols);
    free(packed);
    act_free(&a);
    free(w);
    free(x);
}

static void check_packed_type(uint32_t type)
{
    uint64_t rng = 0x9a1dull + type;
    static const uint64_t rows_list[] = {1, 15, 16, 17, 33, 100};
    static const uint64_t cols_list[] = {32, 64, 96, 512, 4096};
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++)
            check_packed_shape(type, rows_list[i], cols_list[j], &rng);
    for (int i = 0; i < 6; i++)
        check_packed_shape(type, 1 + test_rand_u64(&rng) % 300,
                           QK * (1 + test_rand_u64(&rng) % 96), &rng);
    for (uint64_t cols = QK; cols <= 4096; cols += QK)
        check_packed_shape(type, 17, cols, &rng);
}

static void test_matvec_q8_0_simd(void)
{
    check_packed_type(HEARTH_Q8_0);
}

static void test_matvec_q4_0_simd(void)
{
    check_packed_type(HEARTH_Q4_0);
}

/* The extremes of the int16 reasoning in avx2.c: every weight -128 (Q8_0)
 * or 15 (Q4_0) against activations all +-127. */
static void test_matvec_extremes(void)
{
    const uint64_t rows = 16, cols = 256, nb = cols / QK;
    float x[256];
    struct q8_act a;
    act_alloc(&a, cols);
    for (int pattern = 0; pattern < 3; pattern++) {
        for (uint64_t i = 0; i < cols; i++)
            x[i] = pattern == 0 ? 1.0f : pattern == 1 ? -1.0f : (i & 1 ? 1.0f : -1.0f);
        kernels_scalar.quantize_act(x, cols, &a);
        for (int t = 0; t < 2; t++) {
            uint32_t type = t ? HEARTH_Q4_0 : HEARTH_Q8_0;
            uint8_t *w = xalloc(group_stride(type, cols));
            memset(w, type == HEARTH_Q8_0 ? 0x80 : 0xff, nb * qbytes_of(type));
            uint16_t one = 0x3c00; /* 1.0 */
            for (uint64_t i = 0; i < nb * ROW_GROUP; i++)
                memcpy(w + nb * qbytes_of(type) + 2 * i, &one, 2);
            packed_matches(type, w, &a, rows, cols);
            float out[16];
            q_kernel(&kernels_scalar, type)(out, w, &a, cols, 0, rows);
            /* per block: Q8_0 32 * (-128) * q_a, Q4_0 32 * 7 * q_a, exact in f32 */
            double per = type == HEARTH_Q8_0 ? -128.0 : 7.0, want = 0.0;
            for (uint64_t i = 0; i < cols; i++)
                want += per * a.q[i] * a.d[i / QK];
            double mag = fabs(per) * 127.0 * cols * a.d[0];
            double bound = (double)(nb + 2) * ldexp(1.0, -24) * mag;
            CHECK(fabs(out[0] - want) <= bound, "%s pattern %d: %.9g, expected %.9g",
                  hearth_type_name(type), pattern, out[0], want);
            free(w);
        }
    }
    act_free(&a);
}

/* ---- F32 --------------------------------------------------------------- */

static void check_f32_shape(uint64_t rows, uint64_t cols, uint64_t *rng)
{
    float *w = xalloc(rows * cols * sizeof(float)), *x = xalloc(cols * sizeof(float));
    for (uint64_t i = 0; i < rows * cols; i++)
        w[i] = test_rand_normal(rng);
    for (uint64_t i = 0; i < cols; i++)
        x[i] = test_rand_normal(rng) * 10.0f;
    float *want = xalloc(rows * sizeof(float)), *got = xalloc(rows * sizeof(float));
    kernels_scalar.matvec_f32(want, w, x, cols, 0, rows);
    const struct kernels *simd[2];
    int n = simd_tables(simd);
    for (int i = 0; i < n; i++) {
        memset(got, 0, rows * sizeof(float));
        simd[i]->matvec_f32(got, w, x, cols, 0, rows);
        CHECK(memcmp(want, got, rows * sizeof(float)) == 0,
              "%s f32 rows %llu cols %llu differs from scalar", simd[i]->name,
              (unsigned long long)rows, (unsigned long long)cols);
    }
    free(want);
    free(got);
    free(w);
    free(x);
}

static void test_matvec_f32_simd(void)
{
    uint64_t rng = 0xf32ull;
    static const uint64_t rows_list[] = {1, 3, 4, 5, 15, 16, 17, 33};
    static const uint64_t cols_list[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 1000, 4096};
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 13; j++)
            check_f32_shape(rows_list[i], cols_list[j], &rng);
    for (uint64_t cols = 1; cols <= 80; cols++)
        check_f32_shape(5, cols, &rng);
    for (int i = 0; i < 10; i++)
        check_f32_shape(1 + test_rand_u64(&rng) % 40, 1 + test_rand_u64(&rng) % 3000, &rng);
}

/* ---- partial row ranges ------------------------------------------------ */

/* out[r0, r1) must equal the full product's rows and nothing else in out
 * may change (out is as long as the padded row count). */
static void test_subrange(void)
{
    const uint64_t rows = 37, cols = 96, pad = 48;
    uint64_t rng = 0x5b6ull;
    float *w = xalloc(rows * cols * sizeof(float)), x[96];
    fill_matrix(w, rows, cols, &rng);
    fill_vector(x, cols, &rng);
    struct q8_act a;
    act_alloc(&a, cols);
    kernels_scalar.quantize_act(x, cols, &a);
    uint8_t *packed[2] = {pack_matrix(HEARTH_Q8_0, w, rows, cols),
                          pack_matrix(HEARTH_Q4_0, w, rows, cols)};
    static const uint64_t ranges[][2] = {{16, 37}, {16, 32}, {0, 5}, {32, 37}, {0, 37}, {16, 17}};
    const struct kernels *tables[3] = {&kernels_scalar};
    int n = 1 + simd_tables(tables + 1);
    float full[48], out[48], sentinel;
    memset(&sentinel, 0xa5, sizeof sentinel);
    for (int t = 0; t < n; t++) {
        for (int kind = 0; kind < 3; kind++) {
            for (int r = 0; r < 6; r++) {
                uint64_t r0 = ranges[r][0], r1 = ranges[r][1];
                for (uint64_t i = 0; i < pad; i++)
                    full[i] = out[i] = sentinel;
                if (kind == 2) {
                    tables[t]->matvec_f32(full, w, x, cols, 0, rows);
                    tables[t]->matvec_f32(out, w, x, cols, r0, r1);
                } else {
                    uint32_t type = kind ? HEARTH_Q4_0 : HEARTH_Q8_0;
                    q_kernel(tables[t], type)(full, packed[kind], &a, cols, 0, rows);
                    q_kernel(tables[t], type)(out, packed[kind], &a, cols, r0, r1);
                }
                int ok = 1;
                for (uint64_t i = 0; i < pad; i++) {
                    const float *expect = (i >= r0 && i < r1) ? &full[i] : &sentinel;
                    if (memcmp(&out[i], expect, sizeof(float)) != 0)
                        ok = 0;
                }
                for (uint64_t i = rows; i < pad; i++)
                    if (memcmp(&full[i], &sentinel, sizeof(float)) != 0)
                        ok = 0;
                CHECK(ok, "%s kind %d rows [%llu, %llu): wrote outside the range or wrong rows",
                      tables[t]->name, kind, (unsigned long long)r0, (unsigned long long)r1);
            }
        }
    }
    free(packed[0]);
    free(packed[1]);
    act_free(&a);
    free(w);
}

/* ---- scalar vs double precision --------------------------------------- */

/* Error bound: the block dots are exact integers; each block adds one
 * rounding in d_w * d_a and one in the fmaf, each at most 2^-24 relative to
 * the term or to the running sum, which are bounded by S = sum |w||x| over
 * the dequantized values. So |out - exact| <= (nb + 2) * 2^-24 * S, about
 * 7.7e-6 * S at 4096 columns. F32: each partial sum takes cols/16 roundings
 * and the tree 4 more, so (cols/16 + 5) * 2^-24 * S. */
static void test_scalar_vs_double(void)
{
    uint64_t rng = 0xd0b1eull;
    static const uint64_t cols_list[] = {32, 96, 1024, 4096};
    const uint64_t rows = 20;
    for (int j = 0; j < 4; j++) {
        uint64_t cols = cols_list[j], nb = cols / QK;
        float *w = xalloc(rows * cols * sizeof(float)), *x = xalloc(cols * sizeof(float));
        float *row = xalloc(cols * sizeof(float)), out[20];
        fill_matrix(w, rows, cols, &rng);
        fill_vector(x, cols, &rng);
        struct q8_act a;
        act_alloc(&a, cols);
        kernels_scalar.quantize_act(x, cols, &a);
        for (int t = 0; t < 2; t++) {
            uint32_t type = t ? HEARTH_Q4_0 : HEARTH_Q8_0;
            uint8_t *packed = pack_matrix(type, w, rows, cols);
            q_kernel(&kernels_scalar, type)(out, packed, &a, cols, 0, rows);
            for (uint64_t r = 0; r < rows; r++) {
                unpack_row(type, packed, cols, r, row);
                double dot = 0.0, mag = 0.0;
                for (uint64_t c = 0; c < cols; c++) {
                    double xa = (double)a.q[c] * a.d[c / QK];
                    dot += (double)row[c] * xa;
                    mag += fabs((double)row[c] * xa);
                }
                double bound = (double)(nb + 2) * ldexp(1.0, -24) * mag;
                CHECK(fabs(out[r] - dot) <= bound, "%s cols %llu row %llu: %.9g vs %.9g > %g",
                      hearth_type_name(type), (unsigned long long)cols, (unsigned long long)r,
                      out[r], dot, bound);
            }
            free(packed);
        }
        kernels_scalar.matvec_f32(out, w, x, cols, 0, rows);
        for (uint64_t r = 0; r < rows; r++) {
            double dot = 0.0, mag = 0.0;
            for (uint64_t c = 0; c < cols; c++) {
                dot += (double)w[r * cols + c] * x[c];
                mag += fabs((double)w[r * cols + c] * x[c]);
            }
            double bound = (double)(cols / 16 + 5) * ldexp(1.0, -24) * mag;
            CHECK(fabs(out[r] - dot) <= bound, "f32 cols %llu row %llu: %.9g vs %.9g",
                  (unsigned long long)cols, (unsigned long long)r, out[r], dot);
        }
        act_free(&a);
        free(w);
        free(x);
        free(row);
    }
}

/* ---- packing ----------------------------------------------------------- */

/* ggml's reference quantizers, transcribed from their definition
 * (llama.cpp ggml/src/ggml-quants.c, quantize_row_q8_0_ref and
 * quantize_row_q4_0_ref) for one block of finite values, independently of
 * pack.c: returns the fp16 scale, fills q (Q4_0: 0..15). */
static uint16_t ref_q8_0(const float *x, int q[QK])
{
    float amax = 0.0f;
    for (int k = 0; k < QK; k++)
        amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
    float d = amax / 127;
    float id = d ? 1.0f / d : 0.0f;
    for (int k = 0; k < QK; k++) {
        float v = x[k] * id;
        q[k] = (int)roundf(v);
    }
    return f32_to_fp16(d);
}

static uint16_t ref_q4_0(const float *x, int q[QK])
{
    float amax = 0.0f, max = 0.0f;
    for (int k = 0; k < QK; k++) {
        if (amax < fabsf(x[k])) {
            amax = fabsf(x[k]);
            max = x[k];
        }
    }
    float d = max / -8;
    float id = d ? 1.0f / d : 0.0f;
    for (int k = 0; k < QK; k++) {
        float v = x[k] * id;
        float shifted = v + 8.5f;
        int t = (int)(int8_t)shifted;
        q[k] = t < 15 ? t : 15;
    }
    return f32_to_fp16(d);
}

/* The byte layout of kernels.h, restated: where weight (r, k) of block b
 * lives in a group, and for Q4_0 which nibble. */
static int layout_quant(uint32_t type, const uint8_t *grp, uint64_t b, unsigned r, unsigned k)
{
    if (type == HEARTH_Q8_0)
        return (int8_t)grp[b * Q8_0_QBYTES + 64 * (k / 4) + 4 * r + k % 4];
    uint8_t byte = grp[b * Q4_0_QBYTES + 64 * (k / 8) + 4 * r + (k % 8) % 4];
    return (k % 8) < 4 ? (byte & 0x0f) : (byte >> 4);
}

static uint16_t layout_scale(uint32_t type, const uint8_t *grp, uint64_t nb, uint64_t b,
                             unsigned r)
{
    const uint8_t *p = grp + nb * qbytes_of(type) + 2 * (b * ROW_GROUP + r);
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* Packs rows x cols, then checks every block against the reference
 * quantizer (scale and quants at their layout positions), unpack_row
 * against d * q bit for bit, and the round-trip error: at most |d|/2 plus
 * the fp16 rounding of d (2^-11 relative, times |q| <= 127 or 8), except
 * that a Q4_0 value clamped from 16 to 15 may be off by up to |d|. */
static void check_pack(uint32_t type, const float *w, uint64_t rows, uint64_t cols)
{
    uint64_t nb = cols / QK, stride = group_stride(type, cols);
    uint8_t *packed = pack_matrix(type, w, rows, cols);
    float *row = xalloc(cols * sizeof(float));
    CHECK(hearth_tensor_bytes(type, rows, cols) == padded_rows(rows) / ROW_GROUP * stride,
          "layout size disagrees with hearth_tensor_bytes");
    int bad_layout = 0, bad_unpack = 0, bad_error = 0;
    for (uint64_t r = 0; r < padded_rows(rows); r++) {
        const uint8_t *grp = packed + r / ROW_GROUP * stride;
        unsigned rr = (unsigned)(r % ROW_GROUP);
        unpack_row(type, packed, cols, r, row);
        for (uint64_t b = 0; b < nb; b++) {
            static const float zeros[QK];
            const float *x = r < rows ? w + r * cols + b * QK : zeros;
            int q[QK];
            uint16_t d16 = type == HEARTH_Q8_0 ? ref_q8_0(x, q) : ref_q4_0(x, q);
            if (layout_scale(type, grp, nb, b, rr) != d16)
                bad_layout++;
            float d = fp16_to_f32(d16);
            for (unsigned k = 0; k < QK; k++) {
                if (layout_quant(type, grp, b, rr, k) != q[k])
                    bad_layout++;
                int qv = type == HEARTH_Q8_0 ? q[k] : q[k] - 8;
                float v = d * (float)qv;
                if (memcmp(&v, &row[b * QK + k], sizeof v) != 0)
                    bad_unpack++;
                double bound = fabs(d) * (0.5 + abs(qv) * ldexp(1.0, -10)) + 1e-7 * fabs(x[k]);
                if (type == HEARTH_Q4_0 && q[k] == 15)
                    bound += 0.5 * fabs(d);
                if (fabs((double)x[k] - v) > bound)
                    bad_error++;
            }
        }
    }
    CHECK(bad_layout == 0, "%s %llux%llu: %d quants/scales differ from ggml's reference",
          hearth_type_name(type), (unsigned long long)rows, (unsigned long long)cols,
          bad_layout);
    CHECK(bad_unpack == 0, "%s: %d unpacked values differ from d * q", hearth_type_name(type),
          bad_unpack);
    CHECK(bad_error == 0, "%s: %d values beyond the round-trip bound", hearth_type_name(type),
          bad_error);
    free(packed);
    free(row);
}

static void test_pack_roundtrip(void)
{
    uint64_t rng = 0x9ac4ull;
    static const uint64_t shapes[][2] = {{1, 32}, {16, 64}, {17, 256}, {40, 96}, {3, 4096}};
    for (int s = 0; s < 5; s++) {
        uint64_t rows = shapes[s][0], cols = shapes[s][1];
        float *w = xalloc(rows * cols * sizeof(float));
        fill_matrix(w, rows, cols, &rng);
        check_pack(HEARTH_Q8_0, w, rows, cols);
        check_pack(HEARTH_Q4_0, w, rows, cols);
        free(w);
    }
}

/* Hand-made blocks with known answers from ggml's formulas. */
static void test_pack_crafted(void)
{
    float rows[3][64] = {{0}};
    /* row 0, block 0: all zeros. block 1: amax 127 with halves */
    float *b1 = rows[0] + 32;
    b1[0] = 127.0f;
    b1[1] = 2.5f;
    b1[2] = -2.5f;
    b1[3] = 0.5f;
    b1[4] = -0.5f;
    b1[5] = 1.5f;
    /* row 1, block 0: Q4_0 max +4 at k = 3, -4 at k = 9 (first largest wins
     * ties, so max = +4, d = -0.5); block 1: max -8, d = 1, halves */
    rows[1][3] = 4.0f;
    rows[1][9] = -4.0f;
    rows[1][10] = 1.0f;
    float *c1 = rows[1] + 32;
    c1[0] = -8.0f;
    c1[1] = 0.5f;  /* 0.5 + 8.5 = 9 -> 9 */
    c1[2] = -0.5f; /* 8 -> 8 */
    c1[3] = 1.49f; /* 9.99 -> 9 */
    c1[4] = 7.9f;  /* 16.4 -> 16 -> 15 */
    const float *ptrs[3] = {rows[0], rows[1], rows[2]};
    const uint64_t cols = 64, nb = 2;

    uint8_t *q8 = xalloc(group_stride(HEARTH_Q8_0, cols));
    pack_group_q8_0(ptrs, 3, cols, q8);
    CHECK(layout_scale(HEARTH_Q8_0, q8, nb, 0, 0) == 0, "zero block: scale must be 0");
    CHECK(layout_quant(HEARTH_Q8_0, q8, 0, 0, 7) == 0, "zero block: q must be 0");
    CHECK(fp16_to_f32(layout_scale(HEARTH_Q8_0, q8, nb, 1, 0)) == 1.0f, "amax 127: d = 1");
    static const int want8[6] = {127, 3, -3, 1, -1, 2}; /* half away from zero */
    for (unsigned k = 0; k < 6; k++)
        CHECK(layout_quant(HEARTH_Q8_0, q8, 1, 0, k) == want8[k], "Q8_0 k %u: q %d want %d", k,
              layout_quant(HEARTH_Q8_0, q8, 1, 0, k), want8[k]);
    for (unsigned r = 3; r < 16; r++)
        CHECK(layout_scale(HEARTH_Q8_0, q8, nb, 1, r) == 0 &&
                  layout_quant(HEARTH_Q8_0, q8, 1, r, 0) == 0,
              "missing row %u must be zero", r);

    uint8_t *q4 = xalloc(group_stride(HEARTH_Q4_0, cols));
    pack_group_q4_0(ptrs, 3, cols, q4);
    /* d = 0 / -8 = -0: ggml stores the fp16 -0 (0x8000), value still 0 */
    CHECK(layout_scale(HEARTH_Q4_0, q4, nb, 0, 0) == 0x8000 &&
              layout_quant(HEARTH_Q4_0, q4, 0, 0, 5) == 8,
          "Q4_0 zero block: scale -0, q 8");
    CHECK(fp16_to_f32(layout_scale(HEARTH_Q4_0, q4, nb, 0, 1)) == -0.5f, "max +4: d = -0.5");
    CHECK(layout_quant(HEARTH_Q4_0, q4, 0, 1, 3) == 0, "the max value maps to q = 0");
    CHECK(layout_quant(HEARTH_Q4_0, q4, 0, 1, 9) == 15, "-max maps to 16, clamped to 15");
    CHECK(layout_quant(HEARTH_Q4_0, q4, 0, 1, 10) == 6, "1 / -0.5 = -2 -> 6.5 -> 6");
    CHECK(fp16_to_f32(layout_scale(HEARTH_Q4_0, q4, nb, 1, 1)) == 1.0f, "max -8: d = 1");
    static const int want4[5] = {0, 9, 8, 9, 15};
    for (unsigned k = 0; k < 5; k++)
        CHECK(layout_quant(HEARTH_Q4_0, q4, 1, 1, k) == want4[k], "Q4_0 k %u: q %d want %d", k,
              layout_quant(HEARTH_Q4_0, q4, 1, 1, k), want4[k]);
    float out[64];
    unpack_row(HEARTH_Q4_0, q4, cols, 1, out);
    CHECK(out[3] == 4.0f && out[32] == -8.0f && out[9] == -3.5f,
          "unpack: %g %g %g, expected 4 -8 -3.5", out[3], out[32], out[9]);
    unpack_row(HEARTH_F32, q4, cols, 0, out);
    CHECK(isnan(out[0]) && isnan(out[63]), "unpack of a non-block type must fill NaN");
    free(q8);
    free(q4);
}

const struct test_case kernels_tests[] = {
    {"kernels_select", test_select},
    {"kernels_act_ties", test_act_ties},
    {"kernels_act_random", test_act_random},
    {"kernels_act_scale_division", test_act_scale_division},
    {"kernels_q8_0_simd_vs_scalar", test_matvec_q8_0_simd},
    {"kernels_q4_0_simd_vs_scalar", test_matvec_q4_0_simd},
    {"kernels_extremes", test_matvec_extremes},
    {"kernels_f32_simd_vs_scalar", test_matvec_f32_simd},
    {"kernels_subrange", test_subrange},
    {"kernels_scalar_vs_double", test_scalar_vs_double},
    {"kernels_pack_roundtrip", test_pack_roundtrip},
    {"kernels_pack_crafted", test_pack_crafted},
    {NULL, NULL},
};
