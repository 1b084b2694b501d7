/* quant.c - number formats: IEEE binary16 and bfloat16 conversion to and from
 * float, the name and byte size of each hearth_type, and widening an
 * F32/F16/BF16 array to float.
 *
 * Everything is plain portable C on integer bit patterns (no intrinsics, no
 * _Float16), so results are identical on every compiler and CPU. This file
 * does not quantize or dequantize Q8_0/Q4_0 blocks; it only knows their sizes. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "format.h"
#include "quant.h"
#include "kernels/kernels.h"

/* GGUF block layouts (llama.cpp ggml/src/ggml-common.h, block_q8_0 and
 * block_q4_0; gguf.h and gguf.cpp describe the same):
 * 32 weights per block, one fp16 scale d first, then 32 int8 quants (Q8_0)
 * or 16 bytes of nibbles (Q4_0). hearth stores the same blocks, so the
 * sizes are the same. */
#define BLOCK_WEIGHTS QK
#define Q8_0_BLOCK_BYTES (2u + 32u) /* 34 */
#define Q4_0_BLOCK_BYTES (2u + 16u) /* 18 */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Shifts m right by `shift` (1..31) bits, rounding to nearest with ties to
 * the even result. */
static uint32_t shift_round_even(uint32_t m, unsigned shift)
{
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return q;
}

/* binary16 (IEEE 754-2008 section 3.6): 1 sign bit, 5 exponent bits (bias
 * 15), 10 fraction bits. Exponent 0 is zero/subnormal (value = frac * 2^-24),
 * exponent 31 is inf/NaN. binary32: 8 exponent bits (bias 127), 23 fraction
 * bits. Every half is exactly representable as a float. */
float fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t biased_exp = (h >> 10) & 0x1fu;
    uint32_t frac = h & 0x3ffu;
    if (biased_exp == 0) {
        /* zero or subnormal: frac * 2^-24 is exact in float (frac < 2^10) */
        float v = (float)frac * 0x1p-24f;
        return sign ? -v : v;
    }
    if (biased_exp == 31) /* inf, or NaN keeping its payload and sign */
        return bits_f32(sign | 0x7f800000u | (frac << 13));
    /* normal: rebias the exponent from 15 to 127 */
    return bits_f32(sign | ((biased_exp + 127u - 15u) << 23) | (frac << 13));
}

uint16_t f32_to_fp16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t mag = u & 0x7fffffffu;

    if (mag > 0x7f800000u) /* NaN: keep the top payload bits, set the quiet bit
                              so a payload held only in low bits stays a NaN */
        return (uint16_t)(sign | 0x7e00u | ((mag >> 13) & 0x3ffu));
    /* 65520 = 65504 + half a step: the tie rounds to the even neighbour, which
     * is 2^16 = inf (65504 = 0x7bff has an odd fraction). */
    if (mag >= 0x477ff000u) /* 65520.0f */
        return (uint16_t)(sign | 0x7c00u);
    if (mag >= 0x38800000u) { /* >= 2^-14: a normal half, unless rounding
                                 carries into the exponent, which is right */
        uint32_t rebiased = mag - ((127u - 15u) << 23);
        return (uint16_t)(sign | shift_round_even(rebiased, 13));
    }
    /* Below 2^-14 the result is subnormal (or zero), in units of 2^-24.
     * With the implicit bit, value = m * 2^(e - 150), so in units of 2^-24 it
     * is m >> (126 - e). Below 2^-25 (e < 102) everything rounds to zero; at
     * e = 102 the shift is 24 and the rounding helper handles the 2^-25 tie.
     * A result of 0x400 is the smallest normal, the right bits. */
    uint32_t e = mag >> 23;
    if (e < 102u)
        return sign;
    uint32_t m = (mag & 0x7fffffu) | 0x800000u;
    return (uint16_t)(sign | shift_round_even(m, 126u - e));
}

/* bfloat16 is the upper half of a binary32 (same sign and 8-bit exponent,
 * 7 fraction bits), so widening is a shift. */
float bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    /* NaN first: rounding 0x7fffffff up would carry into the sign bit, and
     * truncating 0x7f800001 would give inf. Setting the quiet bit keeps it NaN. */
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    /* Round to nearest even on the upper 16 bits. A carry out of the fraction
     * correctly bumps the exponent (finite values near FLT_MAX become inf);
     * with NaN excluded it can never reach the sign bit. */
    return (uint16_t)shift_round_even(u, 16);
}

uint32_t hearth_type_elem_bytes(uint32_t type)
{
    switch (type) {
    case HEARTH_F32: return 4;
    case HEARTH_F16: return 2;
    case HEARTH_BF16: return 2;
    default: return 0;
    }
}

const char *hearth_type_name(uint32_t type)
{
    switch (type) {
    case HEARTH_F32: return "f32";
    case HEARTH_F16: return "f16";
    case HEARTH_BF16: return "bf16";
    case HEARTH_Q8_0: return "q8_0";
    case HEARTH_Q4_0: return "q4_0";
    default: return "unknown";
    }
}

/* a * b, or 0 if the product does not fit in 64 bits (0 is never a legal
 * tensor size, so it doubles as the error value). */
static uint64_t mul_or_zero(uint64_t a, uint64_t b)
{
    if (a != 0 && b > UINT64_MAX / a)
        return 0;
    return a * b;
}

uint64_t hearth_tensor_bytes(uint32_t type, uint64_t rows, uint64_t cols)
{
    if (rows == 0 || cols == 0)
        return 0;
    uint32_t elem = hearth_type_elem_bytes(type);
    if (elem)
        return mul_or_zero(mul_or_zero(rows, cols), elem);
    uint64_t block_bytes;
    if (type == HEARTH_Q8_0)
        block_bytes = Q8_0_BLOCK_BYTES;
    else if (type == HEARTH_Q4_0)
        block_bytes = Q4_0_BLOCK_BYTES;
    else
        return 0;
    if (cols % BLOCK_WEIGHTS != 0 || rows > UINT64_MAX - (ROW_GROUP - 1))
        return 0;
    /* rows are padded to whole groups of 16 (the interleaved layout of
     * kernels/kernels.h) */
    uint64_t padded_rows = (rows + ROW_GROUP - 1) / ROW_GROUP * ROW_GROUP;
    return mul_or_zero(mul_or_zero(padded_rows, cols / BLOCK_WEIGHTS), block_bytes);
}

/* src holds little-endian values, as in every hearth and source file, and
 * hearth runs on little-endian hosts only (x86-64, aarch64), so a load is a
 * memcpy (src may be unaligned). Callers check the type with
 * hearth_type_elem_bytes first; for any other type dst is filled with NaN so
 * a mistake cannot pass for real numbers. */
void convert_to_f32(uint32_t type, const void *src, float *dst, uint64_t n)
{
    const unsigned char *p = src;
    switch (type) {
    case HEARTH_F32:
        memcpy(dst, p, (size_t)n * sizeof(float));
        return;
    case HEARTH_F16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + i * 2, sizeof h);
            dst[i] = fp16_to_f32(h);
        }
        return;
    case HEARTH_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + i * 2, sizeof h);
            dst[i] = bf16_to_f32(h);
        }
        return;
    default:
        for (uint64_t i = 0; i < n; i++)
            dst[i] = NAN;
        return;
    }
}
