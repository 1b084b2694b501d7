/* kernels/pack.c - weight quantization into the row-interleaved Q8_0 / Q4_0
 * group layout of kernels.h (export side), and dequantization of one row
 * back to floats (embedding lookup, tests).
 *
 * The per-block math is ggml's reference quantizers, so a block quantized
 * here holds the same scale and quants as llama.cpp's would; only the byte
 * arrangement differs. This file does no I/O, computes no dot products and
 * does not validate tensor shapes: callers pass cols as a multiple of 32 and
 * buffers of the group size. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../format.h"
#include "../quant.h"
#include "kernels.h"

/* Row r of the group's input, or NULL for a missing (zero) row. */
static const float *group_row(const float *const *rows, int n_rows, unsigned r)
{
    return (int)r < n_rows ? rows[r] : NULL;
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* ggml's quantize_row_q8_0_ref (llama.cpp ggml/src/ggml-quants.c): amax =
 * max |x|, d = amax / 127, id = 1/d (0 when d is 0), scale = fp16(d),
 * q = roundf(x * id) (half away from zero). The clamp to +-127 changes
 * nothing for finite input (|x * id| <= 127 up to rounding, and roundf of
 * 127.00001 is 127) but keeps the int8 conversion defined for NaN/inf,
 * which become 0 or +-127. */
static uint16_t quantize_block_q8_0(const float *x, int8_t q[QK])
{
    float amax = 0.0f;
    for (unsigned k = 0; k < QK; k++) {
        float ax = fabsf(x[k]);
        if (ax > amax)
            amax = ax;
    }
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (unsigned k = 0; k < QK; k++) {
        float v = x[k] * id;
        q[k] = v != v ? 0 : (int8_t)roundf(fminf(fmaxf(v, -127.0f), 127.0f));
    }
    return f32_to_fp16(d);
}

/* ggml's quantize_row_q4_0_ref (same file): max = the value of largest
 * magnitude (the first one on ties), d = max / -8, id = 1/d (0 when d is 0),
 * scale = fp16(d), q = min(15, (int8_t)(x * id + 8.5f)) - truncation toward
 * zero, so the max value itself maps to q = 0 and the opposite extreme to
 * 16, clamped to 15. For finite input x * id + 8.5 lies in [0.5, 16.5] up to
 * rounding; the explicit range test gives the same q there (anything in
 * (-1, 1) truncates to 0) and keeps NaN/inf defined (q = 0 or 15). */
static uint16_t quantize_block_q4_0(const float *x, uint8_t q[QK])
{
    float amax = 0.0f, max = 0.0f;
    for (unsigned k = 0; k < QK; k++) {
        if (amax < fabsf(x[k])) {
            amax = fabsf(x[k]);
            max = x[k];
        }
    }
    float d = max / -8.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (unsigned k = 0; k < QK; k++) {
        /* two statements, so that no compiler fuses them into an FMA (C11
         * 6.5p8 allows contraction only within one expression) */
        float scaled = x[k] * id;
        float v = scaled + 8.5f;
        if (!(v >= 1.0f))
            q[k] = 0;
        else if (v >= 15.0f)
            q[k] = 15;
        else
            q[k] = (uint8_t)v;
    }
    return f32_to_fp16(d);
}

/* Each block column b: quantize the 16 rows (zeros for missing rows), put
 * each row's quants at their interleaved bytes and its scale at
 * scales[b][r]. */
void pack_group_q8_0(const float *const *rows, int n_rows, uint64_t cols, uint8_t *out)
{
    static const float zeros[QK];
    uint64_t nb = cols / QK;
    uint8_t *scales = out + nb * Q8_0_QBYTES;
    for (uint64_t b = 0; b < nb; b++) {
        uint8_t *quants = out + b * Q8_0_QBYTES;
        for (unsigned r = 0; r < ROW_GROUP; r++) {
            const float *row = group_row(rows, n_rows, r);
            int8_t q[QK];
            uint16_t d = quantize_block_q8_0(row ? row + b * QK : zeros, q);
            put_le16(scales + 2u * (b * ROW_GROUP + r), d);
            /* chunk c, byte 4r + j holds column 4c + j (kernels.h) */
            for (unsigned k = 0; k < QK; k++)
                quants[64u * (k / 4) + 4u * r + k % 4] = (uint8_t)q[k];
        }
    }
}

void pack_group_q4_0(const float *const *rows, int n_rows, uint64_t cols, uint8_t *out)
{
    static const float zeros[QK];
    uint64_t nb = cols / QK;
    uint8_t *scales = out + nb * Q4_0_QBYTES;
    for (uint64_t b = 0; b < nb; b++) {
        uint8_t *quants = out + b * Q4_0_QBYTES;
        for (unsigned r = 0; r < ROW_GROUP; r++) {
            const float *row = group_row(rows, n_rows, r);
            uint8_t q[QK];
            uint16_t d = quantize_block_q4_0(row ? row + b * QK : zeros, q);
            put_le16(scales + 2u * (b * ROW_GROUP + r), d);
            /* chunk c, byte 4r + j: column 8c + j low, 8c + 4 + j high */
            for (unsigned c = 0; c < 4; c++)
                for (unsigned j = 0; j < 4; j++)
                    quants[64u * c + 4u * r + j] =
                        (uint8_t)(q[8 * c + j] | (q[8 * c + 4 + j] << 4));
        }
    }
}

/* value = fp16_to_f32(d) * q (Q8_0) or * (q - 8) (Q4_0), one multiply, as
 * ggml's dequantize_row_q8_0 / dequantize_row_q4_0. Any other type fills
 * the row with NaN so that a misuse shows in the results instead of
 * passing for plausible numbers. */
void unpack_row(uint32_t type, const void *w, uint64_t cols, uint64_t r, float *out)
{
    uint64_t nb = cols / QK;
    unsigned rr = (unsigned)(r % ROW_GROUP);
    if (type != HEARTH_Q8_0 && type != HEARTH_Q4_0) {
        for (uint64_t c = 0; c < cols; c++)
            out[c] = NAN;
        return;
    }
    uint64_t qbytes = type == HEARTH_Q8_0 ? Q8_0_QBYTES : Q4_0_QBYTES;
    const uint8_t *group = (const uint8_t *)w + (r / ROW_GROUP) * nb * (qbytes + 2u * ROW_GROUP);
    const uint8_t *scales = group + nb * qbytes;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *quants = group + b * qbytes;
        float d = fp16_to_f32(get_le16(scales + 2u * (b * ROW_GROUP + rr)));
        float *o = out + b * QK;
        for (unsigned k = 0; k < QK; k++) {
            if (type == HEARTH_Q8_0) {
                o[k] = d * (float)(int8_t)quants[64u * (k / 4) + 4u * rr + k % 4];
            } else {
                unsigned c = k / 8, j = k % 8;
                uint8_t byte = quants[64u * c + 4u * rr + j % 4];
                int q = j < 4 ? (byte & 0x0f) : (byte >> 4);
                o[k] = d * (float)(q - 8);
            }
        }
    }
}
