/* tests/kernel_tables.h - what the kernel test suites (test_kernels.c,
 * test_gemm.c) share: the SIMD tables to compare against scalar, aligned
 * buffers that end the test run when memory runs out, and random packed
 * matrices. */
#ifndef HEARTH_TESTS_KERNEL_TABLES_H
#define HEARTH_TESTS_KERNEL_TABLES_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/kernels.h"

/* The SIMD tables this CPU runs (in the tests/emulated build the emulated
 * avx512 table too, on any CPU); returns how many (0..2). */
int simd_tables(const struct kernels *out[2]);

/* 64-byte aligned memory, rounded up to 64 bytes; exits on failure. */
void *xalloc(size_t n);

/* Activation buffers for n values, laid out as kernels.h asks (q aligned). */
void act_alloc(struct q8_act *a, uint64_t n);
void act_free(struct q8_act *a);

/* Rows rounded up to whole 16-row groups; bytes of one group of a packed
 * Q8_0 / Q4_0 matrix of cols columns (kernels.h), and of its quants. */
uint64_t padded_rows(uint64_t rows);
uint64_t group_stride(uint32_t type, uint64_t cols);
uint64_t qbytes_of(uint32_t type);

/* A finite fp16 scale of random sign, magnitude about 2^-20 .. 2^4: wide
 * enough that adding the blocks in another order changes the bits. */
uint16_t random_scale(uint64_t *rng);

/* A packed matrix (padded rows included) of random quant bytes (every int8
 * / nibble value, -128 included, which pack_group never writes but an
 * imported file may hold) with random finite scales; from xalloc. */
uint8_t *random_packed(uint32_t type, uint64_t rows, uint64_t cols, uint64_t *rng);

#endif
