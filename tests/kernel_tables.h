/* tests/kernel_tables.h - what the kernel test suites (test_kernels.c,
 * test_gemm.c) share: the SIMD tables to compare against scalar, and
 * aligned buffers that end the test run when memory runs out. */
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

#endif
