/* kernels/scalar.c - the reference kernels in plain C: activation
 * quantization, the F32 / Q8_0 / Q4_0 matrix x vector products and their
 * batched forms (gemm_*, defined as one matrix x vector product per token).
 *
 * These are the definition (kernels.h): every SIMD kernel must return the
 * same bits, so each loop here spells out the accumulation order of the
 * contract in kernels.h literally - fmaf where the SIMD code uses an FMA
 * instruction, one f32 multiply for d_w * d_a, exact int32 block dots. They
 * are written to be read, not to be fast, and run only when the CPU has no
 * SIMD table or when asked for by name. Weight packing lives in pack.c. */
#include <math.h>
#include <stdint.h>

#include "../quant.h"
#include "kernels.h"

/* Byte offsets inside one packed group (layout in kernels.h). */
static uint64_t group_bytes(uint64_t nb, uint64_t qbytes)
{
    return nb * (qbytes + 2u * ROW_GROUP);
}

/* Scale of row r (0..15) of block column b: fp16, little-endian. */
static float group_scale(const uint8_t *scales, uint64_t b, unsigned r)
{
    const uint8_t *p = scales + 2u * (b * ROW_GROUP + r);
    return fp16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

/* The activation quantizer's rounding: clamp to +-127 first (a no-op for
 * finite inputs, since |x * 127/amax| <= 127 * (1 + 2^-23)), then round half
 * to even under the default rounding mode. fmaxf maps NaN (from an infinite
 * input, where amax is inf and id is 0) to -127, the same as the SIMD
 * max instruction with -127 as its second operand, so even then the
 * kernels agree and the float-to-int conversion stays defined. */
static int act_round(float v)
{
    return (int)nearbyintf(fminf(fmaxf(v, -127.0f), 127.0f));
}

/* ggml's activation quantizer for x86 (llama.cpp
 * ggml/src/ggml-cpu/arch/x86/quants.c, quantize_row_q8_0, AVX2 path):
 * amax over the block, d = fp16(amax / 127), id = 127 / amax (0 when amax
 * is 0), q = round-half-even(x * id). A NaN input is skipped when taking
 * amax (the comparison is false), as the SIMD max with the running maximum
 * as its second operand does. */
static void quantize_act_scalar(const float *x, uint64_t n, struct q8_act *a)
{
    for (uint64_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0.0f;
        for (unsigned k = 0; k < QK; k++) {
            float ax = fabsf(xb[k]);
            if (ax > amax)
                amax = ax;
        }
        a->d[b] = fp16_to_f32(f32_to_fp16(amax / 127.0f));
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (unsigned k = 0; k < QK; k++) {
            int q = act_round(xb[k] * id);
            a->q[b * QK + k] = (int8_t)q;
            sum += q;
        }
        a->sum[b] = sum;
        a->q4_start[b] = q4_start_of(a->q + b * QK);
    }
}

/* F32: 16 partial sums, s[j] takes columns j, j+16, ... in order, then the
 * tree s[j] += s[j+8], += s[j+4], += s[j+2], += s[j+1] (kernels.h). */
static void matvec_f32_scalar(float *out, const float *w, const float *x, uint64_t cols,
                              uint64_t r0, uint64_t r1)
{
    for (uint64_t r = r0; r < r1; r++) {
        const float *wr = w + r * cols;
        float s[16] = {0};
        for (uint64_t c = 0; c < cols; c++)
            s[c % 16] = fmaf(wr[c], x[c], s[c % 16]);
        for (unsigned step = 8; step >= 1; step /= 2)
            for (unsigned j = 0; j < step; j++)
                s[j] += s[j + step];
        out[r] = s[0];
    }
}

/* Q8_0 weight k (0..31) of row r in the block column starting at q. */
static int q8_weight(const uint8_t *q, unsigned r, unsigned k)
{
    return (int8_t)q[64u * (k / 4) + 4u * r + k % 4];
}

/* Q4_0 weight k (0..31) of row r, 0..15 (the stored value, before - 8). */
static int q4_weight(const uint8_t *q, unsigned r, unsigned k)
{
    unsigned chunk = k / 8, j = k % 8;
    uint8_t byte = q[64u * chunk + 4u * r + j % 4];
    return j < 4 ? (byte & 0x0f) : (byte >> 4);
}

/* One output row of a packed matrix: acc = fmaf((float)i_b, d_w * d_a, acc)
 * over the blocks b in order, i_b the exact int32 block dot. For Q4_0,
 * i_b = sum q_w * q_a - 8 * sum_a with q_w in 0..15 (the offset trick the
 * SIMD kernels use, equal to sum (q_w - 8) * q_a). */
static float packed_row(const uint8_t *group, uint64_t nb, unsigned r, const struct q8_act *a,
                        int is_q4)
{
    uint64_t qbytes = is_q4 ? Q4_0_QBYTES : Q8_0_QBYTES;
    const uint8_t *scales = group + nb * qbytes;
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *q = group + b * qbytes;
        const int8_t *qa = a->q + b * QK;
        int32_t i = 0;
        for (unsigned k = 0; k < QK; k++)
            i += (is_q4 ? q4_weight(q, r, k) : q8_weight(q, r, k)) * qa[k];
        if (is_q4)
            i -= 8 * a->sum[b];
        float scale = group_scale(scales, b, r) * a->d[b];
        acc = fmaf((float)i, scale, acc);
    }
    return acc;
}

static void matvec_packed(float *out, const void *w, const struct q8_act *a, uint64_t cols,
                          uint64_t r0, uint64_t r1, int is_q4)
{
    uint64_t nb = cols / QK;
    uint64_t stride = group_bytes(nb, is_q4 ? Q4_0_QBYTES : Q8_0_QBYTES);
    for (uint64_t r = r0; r < r1; r++) {
        const uint8_t *group = (const uint8_t *)w + (r / ROW_GROUP) * stride;
        out[r] = packed_row(group, nb, (unsigned)(r % ROW_GROUP), a, is_q4);
    }
}

static void matvec_q8_0_scalar(float *out, const void *w, const struct q8_act *a, uint64_t cols,
                               uint64_t r0, uint64_t r1)
{
    matvec_packed(out, w, a, cols, r0, r1, 0);
}

static void matvec_q4_0_scalar(float *out, const void *w, const struct q8_act *a, uint64_t cols,
                               uint64_t r0, uint64_t r1)
{
    matvec_packed(out, w, a, cols, r0, r1, 1);
}

/* The batched products are the matrix x vector products token by token:
 * that is their definition (kernels.h), spelt out. Token t's activations
 * start t * cols values (t * cols / QK blocks) into a. */
static void gemm_f32_scalar(float *out, uint64_t ldo, const float *w, const float *x,
                            uint32_t n_tok, uint64_t cols, uint64_t r0, uint64_t r1)
{
    for (uint64_t t = 0; t < n_tok; t++)
        matvec_f32_scalar(out + t * ldo, w, x + t * cols, cols, r0, r1);
}

static void gemm_q8_0_scalar(float *out, uint64_t ldo, const void *w, const struct q8_act *a,
                             uint32_t n_tok, uint64_t cols, uint64_t r0, uint64_t r1)
{
    for (uint64_t t = 0; t < n_tok; t++) {
        struct q8_act at = q8_act_from(a, t, cols);
        matvec_packed(out + t * ldo, w, &at, cols, r0, r1, 0);
    }
}

static void gemm_q4_0_scalar(float *out, uint64_t ldo, const void *w, const struct q8_act *a,
                             uint32_t n_tok, uint64_t cols, uint64_t r0, uint64_t r1)
{
    for (uint64_t t = 0; t < n_tok; t++) {
        struct q8_act at = q8_act_from(a, t, cols);
        matvec_packed(out + t * ldo, w, &at, cols, r0, r1, 1);
    }
}

const struct kernels kernels_scalar = {
    .name = "scalar",
    .matvec_f32 = matvec_f32_scalar,
    .matvec_q8_0 = matvec_q8_0_scalar,
    .matvec_q4_0 = matvec_q4_0_scalar,
    .quantize_act = quantize_act_scalar,
    .gemm_f32 = gemm_f32_scalar,
    .gemm_q8_0 = gemm_q8_0_scalar,
    .gemm_q4_0 = gemm_q4_0_scalar,
    .int8_peak_loop = NULL, /* no int8 SIMD to probe */
};
