/* kernels/attention_avx2.c - the attention kernels for CPUs with AVX2, FMA
 * and F16C, bit-identical to kernels/attention.c (each function names the
 * scalar one it matches). Target attributes per function, as in avx2.c, so
 * the file builds with plain flags; on other architectures the table is
 * empty and kernels_select never hands it out. The AVX-512 kernel table
 * uses these too: attention is a small share of the time next to the
 * matrix products, and the machine these were written on has no AVX-512,
 * so a 16-lane version could not have been measured. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../format.h"
#include "attention.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* 8 cache elements from p (index counted in elements) as floats. */
AVX2 static inline __m256 load8(const void *p, uint32_t kv_type, uint64_t index)
{
    if (kv_type == HEARTH_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + index)));
    return _mm256_loadu_ps((const float *)p + index);
}

/* Query heads per pass: 2 accumulators each plus 2 keys and a broadcast
 * stay within the 16 ymm registers. */
#define HEADS_PER_PASS 4u

/* The kernels' bodies are written once with the head count and the cache
 * type as parameters and inlined into one function per constant pair, so
 * the compiler unrolls the head loop and keeps every accumulator in a
 * register (with run-time values it kept them on the stack: 8x slower). */
#define INLINE AVX2 static inline __attribute__((always_inline))

/* scores_scalar for nh (<= HEADS_PER_PASS) heads: one block of 16
 * positions per step, a position in each lane, each key converted once
 * for all heads. */
INLINE void scores_body(float *out, uint64_t out_stride, const float *q, uint32_t nh,
                        const void *keys, uint32_t kv_type, uint32_t p0, uint32_t p1,
                        uint32_t head_dim, float scale)
{
    for (uint32_t b = p0 / KV_BLOCK; b * KV_BLOCK < p1; b++) {
        uint64_t base = (uint64_t)b * head_dim * KV_BLOCK;
        __m256 acc[HEADS_PER_PASS][2];
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nh; h++)
            acc[h][0] = acc[h][1] = _mm256_setzero_ps();
        for (uint32_t i = 0; i < head_dim; i++) {
            __m256 lo = load8(keys, kv_type, base + (uint64_t)i * KV_BLOCK);
            __m256 hi = load8(keys, kv_type, base + (uint64_t)i * KV_BLOCK + 8);
            _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nh; h++) {
                __m256 qi = _mm256_set1_ps(q[(uint64_t)h * head_dim + i]);
                acc[h][0] = _mm256_fmadd_ps(qi, lo, acc[h][0]);
                acc[h][1] = _mm256_fmadd_ps(qi, hi, acc[h][1]);
            }
        }
        uint32_t first = b * KV_BLOCK > p0 ? b * KV_BLOCK : p0;
        uint32_t end = (b + 1) * KV_BLOCK < p1 ? (b + 1) * KV_BLOCK : p1;
        for (uint32_t h = 0; h < nh; h++) {
            float s[KV_BLOCK];
            _mm256_storeu_ps(s, _mm256_mul_ps(acc[h][0], _mm256_set1_ps(scale)));
            _mm256_storeu_ps(s + 8, _mm256_mul_ps(acc[h][1], _mm256_set1_ps(scale)));
            for (uint32_t pos = first; pos < end; pos++)
                out[h * out_stride + pos - p0] = s[pos % KV_BLOCK];
        }
    }
}

/* One instance per (head count, cache type). */
#define SCORES_INSTANCE(NH, TYPE, NAME)                                                        \
    AVX2 static void NAME(float *out, uint64_t out_stride, const float *q, const void *keys,  \
                          uint32_t p0, uint32_t p1, uint32_t head_dim, float scale)           \
    {                                                                                          \
        scores_body(out, out_stride, q, NH, keys, TYPE, p0, p1, head_dim, scale);             \
    }
SCORES_INSTANCE(1, HEARTH_F16, scores_1_f16)
SCORES_INSTANCE(2, HEARTH_F16, scores_2_f16)
SCORES_INSTANCE(3, HEARTH_F16, scores_3_f16)
SCORES_INSTANCE(4, HEARTH_F16, scores_4_f16)
SCORES_INSTANCE(1, HEARTH_F32, scores_1_f32)
SCORES_INSTANCE(2, HEARTH_F32, scores_2_f32)
SCORES_INSTANCE(3, HEARTH_F32, scores_3_f32)
SCORES_INSTANCE(4, HEARTH_F32, scores_4_f32)

typedef void scores_fn(float *, uint64_t, const float *, const void *, uint32_t, uint32_t,
                       uint32_t, float);
static scores_fn *const scores_by_heads[2][HEADS_PER_PASS] = {
    {scores_1_f32, scores_2_f32, scores_3_f32, scores_4_f32},
    {scores_1_f16, scores_2_f16, scores_3_f16, scores_4_f16},
};

AVX2 static void scores_avx2(float *out, uint64_t out_stride, const float *q, uint32_t n_q,
                             const void *keys, uint32_t kv_type, uint32_t p0, uint32_t p1,
                             uint32_t head_dim, float scale)
{
    for (uint32_t h = 0; h < n_q; h += HEADS_PER_PASS) {
        uint32_t nh = n_q - h < HEADS_PER_PASS ? n_q - h : HEADS_PER_PASS;
        scores_by_heads[kv_type == HEARTH_F16][nh - 1](out + h * out_stride, out_stride,
                                                       q + (uint64_t)h * head_dim, keys, p0, p1,
                                                       head_dim, scale);
    }
    _mm256_zeroupper();
}

/* exp_approx on 8 lanes, the same operations in the same order. */
AVX2 static inline __m256 exp8(__m256 x)
{
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693145751953125f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.42860677e-6f), r);
    static const float coef[8] = {
        1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f,
    };
    __m256 p = _mm256_set1_ps(coef[0]);
    for (int i = 1; i < 8; i++)
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(coef[i]));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
    return _mm256_andnot_ps(tiny, e);
}

/* softmax_scalar: lanes 0-7 of the 16 partial sums in lo, 8-15 in hi; the
 * tail and the tree go through the same scalar steps. */
AVX2 static void softmax_avx2(float *x, uint32_t n)
{
    uint32_t n8 = n / 8 * 8, n16 = n / 16 * 16;
    __m256 vm = _mm256_set1_ps(x[0]);
    for (uint32_t t = 0; t < n8; t += 8)
        vm = _mm256_max_ps(_mm256_loadu_ps(x + t), vm);
    float lanes[8], m = x[0];
    _mm256_storeu_ps(lanes, vm);
    for (int j = 0; j < 8; j++)
        m = lanes[j] > m ? lanes[j] : m;
    for (uint32_t t = n8; t < n; t++)
        m = x[t] > m ? x[t] : m;
    __m256 vmax = _mm256_set1_ps(m), lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (uint32_t t = 0; t < n16; t += 16) {
        __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + t), vmax));
        __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + t + 8), vmax));
        _mm256_storeu_ps(x + t, e0);
        _mm256_storeu_ps(x + t + 8, e1);
        lo = _mm256_add_ps(lo, e0);
        hi = _mm256_add_ps(hi, e1);
    }
    float s[16];
    _mm256_storeu_ps(s, lo);
    _mm256_storeu_ps(s + 8, hi);
    for (uint32_t t = n16; t < n; t++) {
        x[t] = exp_approx(x[t] - m);
        s[t % 16] += x[t];
    }
    for (unsigned step = 8; step >= 1; step /= 2)
        for (unsigned j = 0; j < step; j++)
            s[j] += s[j + step];
    __m256 inv = _mm256_set1_ps(1.0f / s[0]);
    for (uint32_t t = 0; t < n8; t += 8)
        _mm256_storeu_ps(x + t, _mm256_mul_ps(_mm256_loadu_ps(x + t), inv));
    for (uint32_t t = n8; t < n; t++)
        x[t] *= 1.0f / s[0];
    _mm256_zeroupper();
}

/* values_scalar for nh (<= HEADS_PER_PASS) heads, two chunks of 8 output
 * elements from i0 (the second ignored when one_chunk) and rows [t0, t1):
 * element i in a lane, the chain over t in order continued from out (which
 * holds the chain so far), each value converted once for all heads. */
INLINE void values_body(float *out, const float *att, uint64_t att_stride, uint32_t nh,
                        const void *values, uint32_t kv_type, uint32_t t0, uint32_t t1,
                        uint32_t head_dim, uint32_t i0, int one_chunk)
{
    __m256 acc[HEADS_PER_PASS][2];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nh; h++) {
        acc[h][0] = _mm256_loadu_ps(out + (uint64_t)h * head_dim + i0);
        acc[h][1] = one_chunk ? acc[h][0] : _mm256_loadu_ps(out + (uint64_t)h * head_dim + i0 + 8);
    }
    for (uint32_t t = t0; t < t1; t++) {
        uint64_t row = (uint64_t)t * head_dim + i0;
        __m256 v0 = load8(values, kv_type, row);
        __m256 v1 = one_chunk ? v0 : load8(values, kv_type, row + 8);
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nh; h++) {
            __m256 a = _mm256_set1_ps(att[h * att_stride + t]);
            acc[h][0] = _mm256_fmadd_ps(a, v0, acc[h][0]);
            acc[h][1] = _mm256_fmadd_ps(a, v1, acc[h][1]);
        }
    }
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nh; h++) {
        _mm256_storeu_ps(out + (uint64_t)h * head_dim + i0, acc[h][0]);
        if (!one_chunk)
            _mm256_storeu_ps(out + (uint64_t)h * head_dim + i0 + 8, acc[h][1]);
    }
}

#define VALUES_INSTANCE(NH, TYPE, NAME)                                                        \
    AVX2 static void NAME(float *out, const float *att, uint64_t att_stride, const void *values, \
                          uint32_t t0, uint32_t t1, uint32_t head_dim, uint32_t i0,            \
                          int one_chunk)                                                       \
    {                                                                                          \
        values_body(out, att, att_stride, NH, values, TYPE, t0, t1, head_dim, i0, one_chunk); \
    }
VALUES_INSTANCE(1, HEARTH_F16, values_1_f16)
VALUES_INSTANCE(2, HEARTH_F16, values_2_f16)
VALUES_INSTANCE(3, HEARTH_F16, values_3_f16)
VALUES_INSTANCE(4, HEARTH_F16, values_4_f16)
VALUES_INSTANCE(1, HEARTH_F32, values_1_f32)
VALUES_INSTANCE(2, HEARTH_F32, values_2_f32)
VALUES_INSTANCE(3, HEARTH_F32, values_3_f32)
VALUES_INSTANCE(4, HEARTH_F32, values_4_f32)

typedef void values_fn(float *, const float *, uint64_t, const void *, uint32_t, uint32_t,
                       uint32_t, uint32_t, int);
static values_fn *const values_by_heads[2][HEADS_PER_PASS] = {
    {values_1_f32, values_2_f32, values_3_f32, values_4_f32},
    {values_1_f16, values_2_f16, values_3_f16, values_4_f16},
};

/* The elements past the last multiple of 8 take the scalar chain. */
AVX2 static void values_tail(float *out, const float *att, uint64_t att_stride, uint32_t n_q,
                             const void *values, uint32_t kv_type, uint32_t n, uint32_t head_dim)
{
    for (uint32_t h = 0; h < n_q; h++)
        for (uint32_t i = head_dim / 8 * 8; i < head_dim; i++) {
            float acc = 0.0f;
            for (uint32_t t = 0; t < n; t++) {
                uint64_t k = (uint64_t)t * head_dim + i;
                float v = kv_type == HEARTH_F16 ? _cvtsh_ss(((const uint16_t *)values)[k])
                                                : ((const float *)values)[k];
                acc = fmaf(att[h * att_stride + t], v, acc);
            }
            out[(uint64_t)h * head_dim + i] = acc;
        }
}

/* Rows per tile: each pass over the 16-element chunks of a row reads only
 * part of it, so the rows of a tile (64 x head_dim values) stay in L1
 * between passes and each cache line comes from memory once. */
#define VALUES_TILE 64u

AVX2 static void values_avx2(float *out, const float *att, uint64_t att_stride, uint32_t n_q,
                             const void *values, uint32_t kv_type, uint32_t n, uint32_t head_dim)
{
    uint32_t chunks = head_dim / 8;
    memset(out, 0, (size_t)n_q * head_dim * sizeof *out);
    for (uint32_t t0 = 0; t0 < n; t0 += VALUES_TILE) {
        uint32_t t1 = n - t0 < VALUES_TILE ? n : t0 + VALUES_TILE;
        for (uint32_t h = 0; h < n_q; h += HEADS_PER_PASS) {
            uint32_t nh = n_q - h < HEADS_PER_PASS ? n_q - h : HEADS_PER_PASS;
            for (uint32_t c = 0; c < chunks; c += 2)
                values_by_heads[kv_type == HEARTH_F16][nh - 1](out + (uint64_t)h * head_dim,
                                                               att + h * att_stride, att_stride,
                                                               values, t0, t1, head_dim, 8 * c,
                                                               chunks - c < 2);
        }
    }
    _mm256_zeroupper();
    values_tail(out, att, att_stride, n_q, values, kv_type, n, head_dim);
}

const struct attn_kernels attn_kernels_avx2 = {
    .name = "avx2",
    .scores = scores_avx2,
    .softmax = softmax_avx2,
    .values = values_avx2,
};

#else

const struct attn_kernels attn_kernels_avx2 = {.name = "avx2"};

#endif
