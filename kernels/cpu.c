/* kernels/cpu.c - which instruction sets this CPU and OS let us use (CPUID
 * and XGETBV), and the choice of kernel table from that or from a name.
 *
 * A feature counts only when the CPU reports it AND the OS saves the
 * registers it needs across context switches (XCR0), so a forced name can
 * fail with a message but never end in SIGILL. This file does not time or
 * benchmark anything, and on non-x86 builds it reports no features. */
#include <stdint.h>
#include <string.h>

#include "../err.h"
#include "kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>

/* XCR0 (extended control register 0), readable with XGETBV once the OS has
 * set CR4.OSXSAVE. The mnemonic rather than the _xgetbv intrinsic, which
 * would need a target attribute of its own. */
static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int bit(uint32_t reg, unsigned n)
{
    return (int)((reg >> n) & 1u);
}

/* Bit numbers: Intel SDM Vol. 2A, CPUID, tables "Feature Information
 * Returned in the ECX Register" (leaf 1) and "Structured Extended Feature
 * Flags Enumeration Leaf" (leaf 7). OS support: Intel SDM Vol. 1, 14.3
 * (AVX: CPUID.1:ECX.OSXSAVE[27] = 1, then XCR0[2:1] = 11b, XMM and YMM
 * state) and 15.2-15.3 (AVX-512: additionally XCR0[7:5] = 111b, the opmask,
 * ZMM_Hi256 and Hi16_ZMM state). FMA, F16C, AVX2 and AVX-VNNI are VEX
 * instructions on ymm registers and need the AVX state; the AVX-512
 * groups need both. */
void cpu_detect(struct cpu_features *f)
{
    memset(f, 0, sizeof *f);
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 1)
        return;
    unsigned eax, ebx, ecx, edx;
    __cpuid_count(1, 0, eax, ebx, ecx, edx);
    int osxsave = bit(ecx, 27), avx = bit(ecx, 28);
    int fma = bit(ecx, 12), f16c = bit(ecx, 29);
    if (!osxsave || !avx)
        return;
    uint64_t xcr0 = read_xcr0();
    int os_avx = (xcr0 & 0x6u) == 0x6u;
    int os_avx512 = os_avx && (xcr0 & 0xe0u) == 0xe0u;
    if (!os_avx)
        return;
    f->fma = fma;
    f->f16c = f16c;
    if (max_leaf < 7)
        return;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    unsigned max_subleaf = eax;
    f->avx2 = bit(ebx, 5);
    if (os_avx512) {
        f->avx512f = bit(ebx, 16);
        f->avx512bw = bit(ebx, 30);
        f->avx512vl = bit(ebx, 31);
        f->avx512vnni = bit(ecx, 11);
    }
    if (max_subleaf >= 1) {
        __cpuid_count(7, 1, eax, ebx, ecx, edx);
        f->avxvnni = bit(eax, 4);
    }
}

#else

void cpu_detect(struct cpu_features *f)
{
    memset(f, 0, sizeof *f);
}

#endif

/* What each SIMD table's target attributes ask for (avx2.c, avx512.c). */
static int has_avx2_set(const struct cpu_features *f)
{
    return f->avx2 && f->fma && f->f16c;
}

static int has_avx512_set(const struct cpu_features *f)
{
    return has_avx2_set(f) && f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni;
}

/* Names the first thing the avx512 kernels need that this CPU lacks. */
static const char *avx512_missing(const struct cpu_features *f)
{
    if (!f->avx512f)
        return "AVX-512 F (or the OS does not enable the AVX-512 registers)";
    if (!f->avx512bw)
        return "AVX-512 BW";
    if (!f->avx512vl)
        return "AVX-512 VL";
    if (!f->avx512vnni)
        return "AVX-512 VNNI";
    return "AVX2/FMA/F16C";
}

static const char *avx2_missing(const struct cpu_features *f)
{
    if (!f->avx2)
        return "AVX2 (or the OS does not enable the AVX registers)";
    if (!f->fma)
        return "FMA";
    return "F16C";
}

const struct kernels *kernels_select(const char *name, char *err)
{
    struct cpu_features f;
    cpu_detect(&f);
#if defined(__x86_64__)
    int x86 = 1;
#else
    int x86 = 0;
#endif
    if (!name)
        return has_avx512_set(&f) ? &kernels_avx512
               : has_avx2_set(&f) ? &kernels_avx2
                                  : &kernels_scalar;
    if (strcmp(name, "scalar") == 0)
        return &kernels_scalar;
    if (strcmp(name, "avx2") == 0) {
        if (!x86) {
            fail(err, "kernels \"avx2\": these kernels need an x86-64 CPU");
            return NULL;
        }
        if (!has_avx2_set(&f)) {
            fail(err, "kernels \"avx2\": this CPU lacks %s", avx2_missing(&f));
            return NULL;
        }
        return &kernels_avx2;
    }
    if (strcmp(name, "avx512") == 0) {
        if (!x86) {
            fail(err, "kernels \"avx512\": these kernels need an x86-64 CPU");
            return NULL;
        }
        if (!has_avx512_set(&f)) {
            fail(err, "kernels \"avx512\": this CPU lacks %s", avx512_missing(&f));
            return NULL;
        }
        return &kernels_avx512;
    }
    fail(err, "unknown kernels \"%s\" (valid: scalar, avx2, avx512)", name);
    return NULL;
}
