/* kernels/attention.c - the scalar attention kernels: the definition that
 * kernels/attention_avx2.c matches bit for bit (contract in attention.h).
 * Written to be read; they run when no SIMD table fits the CPU. */
#include <math.h>
#include <stdint.h>

#include "../format.h"
#include "../quant.h"
#include "attention.h"

/* Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, with ln2 split in a
 * high part of few bits (so n * LN2_HI is exact for |n| < 2^12) and the
 * rest; then e^r by its Taylor series to degree 7 (remainder below
 * r^8 / 8! < 6e-9 relative) in Horner form, and 2^n put in the exponent.
 * Every step is one f32 operation or one fmaf, so a SIMD version doing the
 * same instructions gets the same bits. */
#define LOG2E 1.44269504f
#define LN2_HI 0.693145751953125f
#define LN2_LO 1.42860677e-6f
#define EXP_MIN (-87.0f) /* below this the result would be subnormal: return 0 */

static const float exp_coef[8] = {
    1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f,
};

float exp_approx(float x)
{
    if (isnan(x))
        return x; /* NaNs aside: the SIMD version gives some NaN too */
    if (x < EXP_MIN)
        return 0.0f;
    float n = nearbyintf(x * LOG2E);
    float r = fmaf(n, -LN2_HI, x);
    r = fmaf(n, -LN2_LO, r);
    float p = exp_coef[0];
    for (int i = 1; i < 8; i++)
        p = fmaf(p, r, exp_coef[i]);
    union { uint32_t u; float f; } scale = {.u = (uint32_t)((int32_t)n + 127) << 23};
    return p * scale.f;
}

static float kv_at(const void *base, uint32_t kv_type, uint64_t index)
{
    if (kv_type == HEARTH_F16)
        return fp16_to_f32(((const uint16_t *)base)[index]);
    return ((const float *)base)[index];
}

static void scores_scalar(float *out, uint64_t out_stride, const float *q, uint32_t n_q,
                          const void *keys, uint32_t kv_type, uint32_t p0, uint32_t p1,
                          uint32_t head_dim, float scale)
{
    for (uint32_t h = 0; h < n_q; h++)
        for (uint32_t pos = p0; pos < p1; pos++) {
            uint64_t block = (uint64_t)(pos / KV_BLOCK) * head_dim * KV_BLOCK + pos % KV_BLOCK;
            const float *qh = q + (uint64_t)h * head_dim;
            float acc = 0.0f;
            for (uint32_t i = 0; i < head_dim; i++)
                acc = fmaf(qh[i], kv_at(keys, kv_type, block + (uint64_t)i * KV_BLOCK), acc);
            out[h * out_stride + pos - p0] = acc * scale;
        }
}

static void softmax_scalar(float *x, uint32_t n)
{
    float m = x[0];
    for (uint32_t t = 1; t < n; t++)
        m = x[t] > m ? x[t] : m;
    float s[16] = {0};
    for (uint32_t t = 0; t < n; t++) {
        x[t] = exp_approx(x[t] - m);
        s[t % 16] += x[t];
    }
    for (unsigned step = 8; step >= 1; step /= 2)
        for (unsigned j = 0; j < step; j++)
            s[j] += s[j + step];
    float inv = 1.0f / s[0];
    for (uint32_t t = 0; t < n; t++)
        x[t] *= inv;
}

static void values_scalar(float *out, const float *att, uint64_t att_stride, uint32_t n_q,
                          const void *values, uint32_t kv_type, uint32_t n, uint32_t head_dim)
{
    for (uint32_t h = 0; h < n_q; h++)
        for (uint32_t i = 0; i < head_dim; i++) {
            float acc = 0.0f;
            for (uint32_t t = 0; t < n; t++)
                acc = fmaf(att[h * att_stride + t], kv_at(values, kv_type, (uint64_t)t * head_dim + i),
                           acc);
            out[(uint64_t)h * head_dim + i] = acc;
        }
}

const struct attn_kernels attn_kernels_scalar = {
    .name = "scalar",
    .scores = scores_scalar,
    .softmax = softmax_scalar,
    .values = values_scalar,
};
