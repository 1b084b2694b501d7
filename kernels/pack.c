/* kernels/pack.c - weight quantization into the row-interleaved Q8_0 / Q4_0
 * group layout of kernels.h (export side), and dequantization of one row
 * back to floats (embedding lookup, tests); the same layout made from GGUF's
 * own Q8_0/Q4_0 blocks without requantizing (GGUF import), and GGUF blocks
 * dequantized.
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

/* Puts one row's block b (quants q, scale d) at its interleaved place in a
 * Q8_0 group of nb block columns: chunk c, byte 4r + j holds weight 4c + j
 * (kernels.h); scales[b][r] after the quants. */
static void place_q8_0(uint8_t *group, uint64_t nb, uint64_t b, unsigned r, const int8_t q[QK],
                       uint16_t d)
{
    uint8_t *quants = group + b * Q8_0_QBYTES;
    put_le16(group + nb * Q8_0_QBYTES + 2u * (b * ROW_GROUP + r), d);
    for (unsigned k = 0; k < QK; k++)
        quants[64u * (k / 4) + 4u * r + k % 4] = (uint8_t)q[k];
}

/* The same for Q4_0: chunk c, byte 4r + j holds weight 8c + j in its low
 * nibble and weight 8c + 4 + j in its high nibble. */
static void place_q4_0(uint8_t *group, uint64_t nb, uint64_t b, unsigned r, const uint8_t q[QK],
                       uint16_t d)
{
    uint8_t *quants = group + b * Q4_0_QBYTES;
    put_le16(group + nb * Q4_0_QBYTES + 2u * (b * ROW_GROUP + r), d);
    for (unsigned c = 0; c < 4; c++)
        for (unsigned j = 0; j < 4; j++)
            quants[64u * c + 4u * r + j] = (uint8_t)(q[8 * c + j] | (q[8 * c + 4 + j] << 4));
}

/* One row's block: its quants (Q8_0: the int8 bits; Q4_0: 0..15, one per
 * byte) and its fp16 scale. */
struct block {
    uint8_t q[QK];
    uint16_t d;
};

static void quantize_block(uint32_t type, const float *x, struct block *bl)
{
    if (type == HEARTH_Q8_0)
        bl->d = quantize_block_q8_0(x, (int8_t *)bl->q);
    else
        bl->d = quantize_block_q4_0(x, bl->q);
}

/* A GGUF block (kernels.h): fp16 d, then the quants; Q4_0 byte j holds
 * weight j in its low nibble and weight j + 16 in its high nibble. */
static void read_gguf_block(uint32_t type, const uint8_t *src, struct block *bl)
{
    bl->d = get_le16(src);
    if (type == HEARTH_Q8_0) {
        memcpy(bl->q, src + 2, QK);
        return;
    }
    for (unsigned j = 0; j < QK / 2; j++) {
        bl->q[j] = src[2 + j] & 0x0f;
        bl->q[j + QK / 2] = src[2 + j] >> 4;
    }
}

static void place_block(uint32_t type, uint8_t *group, uint64_t nb, uint64_t b, unsigned r,
                        const struct block *bl)
{
    if (type == HEARTH_Q8_0)
        place_q8_0(group, nb, b, r, (const int8_t *)bl->q, bl->d);
    else
        place_q4_0(group, nb, b, r, bl->q, bl->d);
}

/* Each block column b: quantize the 16 rows (zeros for missing rows) and
 * place each row's block. */
static void pack_group(uint32_t type, const float *const *rows, int n_rows, uint64_t cols,
                       uint8_t *out)
{
    static const float zeros[QK];
    uint64_t nb = cols / QK;
    for (uint64_t b = 0; b < nb; b++) {
        for (unsigned r = 0; r < ROW_GROUP; r++) {
            const float *row = group_row(rows, n_rows, r);
            struct block bl;
            quantize_block(type, row ? row + b * QK : zeros, &bl);
            place_block(type, out, nb, b, r, &bl);
        }
    }
}

void pack_group_q8_0(const float *const *rows, int n_rows, uint64_t cols, uint8_t *out)
{
    pack_group(HEARTH_Q8_0, rows, n_rows, cols, out);
}

void pack_group_q4_0(const float *const *rows, int n_rows, uint64_t cols, uint8_t *out)
{
    pack_group(HEARTH_Q4_0, rows, n_rows, cols, out);
}

/* GGUF blocks are placed as they are. A missing row gets the block
 * quantize_block makes of 32 zeros, computed rather than spelled out so that
 * it cannot drift from pack_group. */
static void repack_group(uint32_t type, const uint8_t *const *rows, int n_rows, uint64_t cols,
                         uint8_t *out)
{
    static const float zeros[QK];
    struct block zero;
    quantize_block(type, zeros, &zero);
    uint64_t nb = cols / QK;
    uint64_t block_bytes = type == HEARTH_Q8_0 ? GGUF_Q8_0_BLOCK_BYTES : GGUF_Q4_0_BLOCK_BYTES;
    for (uint64_t b = 0; b < nb; b++) {
        for (unsigned r = 0; r < ROW_GROUP; r++) {
            struct block bl = zero;
            if ((int)r < n_rows)
                read_gguf_block(type, rows[r] + b * block_bytes, &bl);
            place_block(type, out, nb, b, r, &bl);
        }
    }
}

void repack_group_q8_0(const uint8_t *const *rows, int n_rows, uint64_t cols, uint8_t *out)
{
    repack_group(HEARTH_Q8_0, rows, n_rows, cols, out);
}

void repack_group_q4_0(const uint8_t *const *rows, int n_rows, uint64_t cols, uint8_t *out)
{
    repack_group(HEARTH_Q4_0, rows, n_rows, cols, out);
}

/* ggml's dequantize_row_q8_0 / dequantize_row_q4_0 (ggml-quants.c): one
 * multiply per weight, d * q or d * (q - 8), as unpack_row below. */
void dequantize_gguf_row(uint32_t type, const uint8_t *blocks, uint64_t cols, float *out)
{
    uint64_t nb = cols / QK;
    if (type != HEARTH_Q8_0 && type != HEARTH_Q4_0) {
        for (uint64_t c = 0; c < cols; c++)
            out[c] = NAN;
        return;
    }
    uint64_t block_bytes = type == HEARTH_Q8_0 ? GGUF_Q8_0_BLOCK_BYTES : GGUF_Q4_0_BLOCK_BYTES;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *block = blocks + b * block_bytes;
        float d = fp16_to_f32(get_le16(block));
        float *o = out + b * QK;
        for (unsigned k = 0; k < QK; k++) {
            if (type == HEARTH_Q8_0) {
                o[k] = d * (float)(int8_t)block[2 + k];
            } else {
                uint8_t byte = block[2 + k % (QK / 2)];
                int q = k < QK / 2 ? (byte & 0x0f) : (byte >> 4);
                o[k] = d * (float)(q - 8);
            }
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
