/* tests/kernel_tables.c - helpers of the kernel test suites (see
 * kernel_tables.h). Built with HEARTH_EMULATE_AVX512 in tests/emulated. */
#include "kernel_tables.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../err.h"
#include "../format.h"
#include "test.h"

int simd_tables(const struct kernels *out[2])
{
    static const char *const names[] = {"avx2", "avx512"};
    int n = 0;
    for (int i = 0; i < 2; i++) {
        char err[HEARTH_ERR_BYTES];
        const struct kernels *k = kernels_select(names[i], err);
#if defined(HEARTH_EMULATE_AVX512)
        /* tests/emulated/ build: kernels_avx512 is the emulated table,
         * which runs on any x86-64 CPU, so it is tested on every CPU */
        if (!k && strcmp(names[i], "avx512") == 0)
            k = &kernels_avx512;
#endif
        if (k)
            out[n++] = k;
    }
    return n;
}

void *xalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

void act_alloc(struct q8_act *a, uint64_t n)
{
    a->q = xalloc(n);
    a->d = xalloc(n / QK * sizeof(float));
    a->sum = xalloc(n / QK * sizeof(int32_t));
    a->q4_start = xalloc(n / QK * sizeof(int32_t));
}

void act_free(struct q8_act *a)
{
    free(a->q);
    free(a->d);
    free(a->sum);
    free(a->q4_start);
}

uint64_t padded_rows(uint64_t rows)
{
    return (rows + ROW_GROUP - 1) / ROW_GROUP * ROW_GROUP;
}

uint64_t qbytes_of(uint32_t type)
{
    return type == HEARTH_Q8_0 ? Q8_0_QBYTES : Q4_0_QBYTES;
}

uint64_t group_stride(uint32_t type, uint64_t cols)
{
    return cols / QK * (qbytes_of(type) + 2 * ROW_GROUP);
}

uint16_t random_scale(uint64_t *rng)
{
    uint16_t h = (uint16_t)(test_rand_u64(rng) & 0xffff);
    uint16_t exp = (uint16_t)(test_rand_u64(rng) % 20); /* biased 0..19 */
    return (uint16_t)((h & 0x83ffu) | (exp << 10));
}

uint8_t *random_packed(uint32_t type, uint64_t rows, uint64_t cols, uint64_t *rng)
{
    uint64_t nb = cols / QK, stride = group_stride(type, cols);
    uint64_t groups = padded_rows(rows) / ROW_GROUP;
    uint8_t *w = xalloc(groups * stride);
    for (uint64_t g = 0; g < groups; g++) {
        uint8_t *grp = w + g * stride;
        for (uint64_t i = 0; i < nb * qbytes_of(type); i++)
            grp[i] = (uint8_t)test_rand_u64(rng);
        for (uint64_t i = 0; i < nb * ROW_GROUP; i++) {
            uint16_t h = random_scale(rng);
            memcpy(grp + nb * qbytes_of(type) + 2 * i, &h, 2);
        }
    }
    return w;
}
