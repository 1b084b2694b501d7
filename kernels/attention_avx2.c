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

/* scores_scalar: one block of 16 positions per step, position in the lane. */
AVX2 static void scores_avx2(float *out, const float *q, const void *keys, uint32_t kv_type,
                             uint32_t p0, uint32_t p1, uint32_t head_dim, float scale)
{
    for (uint32_t b = p0 / KV_BLOCK; b * KV_BLOCK < p1; b++) {
        uint64_t base = (uint64_t)b * head_dim * KV_BLOCK;
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
        for (uint32_t i = 0; i < head_dim; i++) {
            __m256 qi = _mm256_set1_ps(q[i]);
            lo = _mm256_fmadd_ps(qi, load8(keys, kv_type, base + i * KV_BLOCK), lo);
            hi = _mm256_fmadd_ps(qi, load8(keys, kv_type, base + i * KV_BLOCK + 8), hi);
        }
        float s[KV_BLOCK];
        _mm256_storeu_ps(s, _mm256_mul_ps(lo, _mm256_set1_ps(scale)));
        _mm256_storeu_ps(s + 8, _mm256_mul_ps(hi, _mm256_set1_ps(scale)));
        uint32_t first = b * KV_BLOCK > p0 ? b * KV_BLOCK : p0;
        uint32_t end = (b + 1) * KV_BLOCK < p1 ? (b + 1) * KV_BLOCK : p1;
        for (uint32_t pos = first; pos < end; pos++)
            out[pos - p0] = s[pos % KV_BLOCK];
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

/* Up to 8 chunks of 8 output elements starting at i0, over all n rows. */
AVX2 static void values_chunks(float *out, const float *att, const void *values, uint32_t kv_type,
                               uint32_t n, uint32_t head_dim, uint32_t i0, uint32_t n_chunks)
{
    __m256 acc[8];
    for (uint32_t c = 0; c < 8; c++)
        acc[c] = _mm256_setzero_ps();
    for (uint32_t t = 0; t < n; t++) {
        __m256 a = _mm256_set1_ps(att[t]);
        uint64_t row = (uint64_t)t * head_dim + i0;
        for (uint32_t c = 0; c < 8; c++)
            if (c < n_chunks)
                acc[c] = _mm256_fmadd_ps(a, load8(values, kv_type, row + 8 * c), acc[c]);
    }
    for (uint32_t c = 0; c < n_chunks; c++)
        _mm256_storeu_ps(out + i0 + 8 * c, acc[c]);
}

/* values_scalar: element i in a lane, the chain over t in order; elements
 * past the last multiple of 8 take the scalar chain. */
AVX2 static void values_avx2(float *out, const float *att, const void *values, uint32_t kv_type,
                             uint32_t n, uint32_t head_dim)
{
    uint32_t full = head_dim / 8;
    for (uint32_t c0 = 0; c0 < full; c0 += 8)
        values_chunks(out, att, values, kv_type, n, head_dim, 8 * c0,
                      full - c0 < 8 ? full - c0 : 8);
    _mm256_zeroupper();
    for (uint32_t i = full * 8; i < head_dim; i++) {
        float acc = 0.0f;
        for (uint32_t t = 0; t < n; t++) {
            uint64_t k = (uint64_t)t * head_dim + i;
            float v = kv_type == HEARTH_F16 ? _cvtsh_ss(((const uint16_t *)values)[k])
                                            : ((const float *)values)[k];
            acc = fmaf(att[t], v, acc);
        }
        out[i] = acc;
    }
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
