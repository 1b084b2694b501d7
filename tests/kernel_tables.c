/* tests/kernel_tables.c - helpers of the kernel test suites (see
 * kernel_tables.h). Built with HEARTH_EMULATE_AVX512 in tests/emulated. */
#include "kernel_tables.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../err.h"

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
