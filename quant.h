/* quant.h - number formats: fp16/bf16 conversion and the byte size of a
 * tensor of each hearth_type. Block quantization (Q8_0, Q4_0) lives here too. */
#ifndef HEARTH_QUANT_H
#define HEARTH_QUANT_H

#include <stdint.h>

float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);   /* round to nearest even; overflow -> inf; NaN stays NaN */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);   /* round to nearest even; NaN stays NaN */

/* Bytes per element of F32/F16/BF16, or 0 for a block type or unknown type. */
uint32_t hearth_type_elem_bytes(uint32_t type);
const char *hearth_type_name(uint32_t type);

/* Exact byte size of a rows x cols tensor of this type; 0 if the type is
 * unknown, the shape is illegal for it (cols not a multiple of the block), or
 * the size overflows 64 bits. */
uint64_t hearth_tensor_bytes(uint32_t type, uint64_t rows, uint64_t cols);

/* Converts n elements of an F32/F16/BF16 array to float. */
void convert_to_f32(uint32_t type, const void *src, float *dst, uint64_t n);

#endif
