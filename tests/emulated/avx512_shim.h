/* tests/emulated/avx512_shim.h - the AVX-512 intrinsics kernels/avx512.c
 * uses, for test builds on CPUs without AVX-512: SIMDe's portable versions
 * (Debian package libsimde-dev, 0.7.4) where they keep the instruction's
 * exact result, and versions written here where SIMDe 0.7.4 has none, its
 * result differs from the hardware's, or (VPDPBUSD) gcc compiles it slowly.
 * tests/emulated/README.md lists which is which; tests/emulated/shim_check.c
 * checks every one written here, and the SIMDe ones whose corner cases matter
 * (NaN and signed-zero order, lane order, shifts), against the Intel SDM.
 *
 * Included by kernels/avx512.c when HEARTH_EMULATE_AVX512 is defined
 * (tests/emulated/emulated.mk) and by shim_check.c; never by the engine. Not
 * emulated: timing, MXCSR exception flags, rounding modes other than the
 * default round-to-nearest-even (the kernels assume it), and any intrinsic
 * avx512.c does not use.
 *
 * One deliberate difference from hardware: _mm512_reduce_max_ps stops the
 * program when its result would depend on the order the compiler reduces
 * the lanes in (a NaN lane, or +0 and -0 as the maximum): gcc's header and
 * clang's builtin may reduce in different orders, so no single answer is
 * right, and avx512.c promises never to ask for one. */
#ifndef HEARTH_AVX512_SHIM_H
#define HEARTH_AVX512_SHIM_H

#if defined(__has_include)
#if !__has_include(<simde/x86/avx512.h>)
#error "the emulated AVX-512 check needs the SIMDe headers: apt-get install libsimde-dev"
#endif
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* _mm512_* names map to SIMDe's simde_mm512_*; the SSE/SSE2 ones stay the
 * compiler's own, which are native on x86-64. */
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

typedef simde__mmask16 __mmask16;

/* ---- lanes as plain arrays (memcpy: no aliasing or alignment questions) */

#define HEARTH_EMU_LANES(type, name, vec)                                                    \
    type name[sizeof(vec) / sizeof(type)];                                                   \
    memcpy(name, &(vec), sizeof(vec))

static inline simde__m512 hearth_emu_ps512(const float f[16])
{
    simde__m512 v;
    memcpy(&v, f, sizeof v);
    return v;
}

static inline simde__m512i hearth_emu_si512(const void *p)
{
    simde__m512i v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- fused multiply-add ------------------------------------------------
 * VFMADD*PS: a * b + c rounded once (Intel SDM Vol. 2, VFMADD132PS/
 * VFMADD213PS/VFMADD231PS); fmaf is that operation (C11 7.12.13.1).
 * SIMDe 0.7.4 rounds the product first unless the CPU has FMA natively,
 * which would break bit-identity with kernels/scalar.c's fmaf.
 * mask3: lanes whose bit in k is 0 keep c. */
static inline simde__m512 hearth_emu_mask3_fmadd_ps(simde__m512 a, simde__m512 b,
                                                    simde__m512 c, __mmask16 k)
{
    HEARTH_EMU_LANES(float, fa, a);
    HEARTH_EMU_LANES(float, fb, b);
    HEARTH_EMU_LANES(float, fc, c);
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1u)
            fc[i] = fmaf(fa[i], fb[i], fc[i]);
    return hearth_emu_ps512(fc);
}

static inline simde__m512 hearth_emu_fmadd_ps(simde__m512 a, simde__m512 b, simde__m512 c)
{
    return hearth_emu_mask3_fmadd_ps(a, b, c, 0xffff);
}

/* ---- byte dot products -------------------------------------------------
 * VPDPBUSD: each int32 lane of src plus the 4 products of the unsigned
 * bytes of a with the signed bytes of b at the same positions, wrapping,
 * no saturation (SDM Vol. 2, VPDPBUSD). SIMDe 0.7.4's version gives the
 * same results, but gcc takes 5 s longer to compile its shuffles here. */
static inline simde__m512i hearth_emu_dpbusd_epi32(simde__m512i src, simde__m512i a,
                                                   simde__m512i b)
{
    HEARTH_EMU_LANES(uint32_t, acc, src);
    HEARTH_EMU_LANES(uint8_t, ua, a);
    HEARTH_EMU_LANES(int8_t, sb, b);
    for (int i = 0; i < 64; i++)
        acc[i / 4] += (uint32_t)((int32_t)ua[i] * (int32_t)sb[i]);
    return hearth_emu_si512(acc);
}

/* ---- masked load -------------------------------------------------------
 * VMOVUPS with {z}: lanes whose bit is 0 are +0.0 and their memory is not
 * read (faults are suppressed there, SDM Vol. 1 15.4.1), so neither is it
 * here: reading past the end of a buffer stays an ASan error, as it would
 * be a possible fault on hardware. */
static inline simde__m512 hearth_emu_maskz_loadu_ps(__mmask16 k, const void *p)
{
    float f[16];
    for (int i = 0; i < 16; i++) {
        f[i] = 0.0f;
        if ((k >> i) & 1u)
            memcpy(&f[i], (const char *)p + 4 * i, sizeof(float));
    }
    return hearth_emu_ps512(f);
}

/* ---- half precision ----------------------------------------------------
 * VCVTPS2PH with imm8 rounding control 00b: IEEE 754 binary32 -> binary16,
 * round to nearest even, overflow to infinity, tiny results to subnormals
 * (MXCSR.FTZ/DAZ ignored: SDM Vol. 2, VCVTPS2PH). A NaN keeps its sign and
 * its 10 high payload bits and is made quiet, as CVTPD2PS narrows NaNs
 * (SDM Vol. 1, Table E-12). Compared with the F16C instruction on all 2^32
 * inputs when this was written. SIMDe 0.7.4 turns every NaN into 0x7e00
 * and, under clang, converts through __fp16 instead of its own code. */
static inline uint16_t hearth_emu_f32_to_f16(float value)
{
    uint32_t x;
    memcpy(&x, &value, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t mag = x & 0x7fffffffu;
    if (mag > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((mag >> 13) & 0x3ffu));
    if (mag >= 0x477ff000u) /* >= 65520 = 65504 + half an ulp: the tie goes to inf */
        return (uint16_t)(sign | 0x7c00u);
    uint32_t kept, rest, half;
    if (mag >= 0x38800000u) { /* >= 2^-14, a normal half: rebias 127 -> 15 */
        uint32_t m = mag - (112u << 23);
        kept = m >> 13;
        rest = m & 0x1fffu;
        half = 0x1000u;
    } else {
        uint32_t e = mag >> 23;
        if (e < 102) /* below 2^-25, half the smallest subnormal: 0 */
            return sign;
        /* value = sig * 2^(e - 150); in units of 2^-24 that is sig >> (126 - e) */
        uint32_t sig = (mag & 0x7fffffu) | 0x800000u;
        unsigned shift = 126u - e; /* 14 .. 24 */
        kept = sig >> shift;
        rest = sig & ((1u << shift) - 1u);
        half = 1u << (shift - 1u);
    }
    /* a carry out of the mantissa steps the exponent up, as it should */
    if (rest > half || (rest == half && (kept & 1u)))
        kept++;
    return (uint16_t)(sign | kept);
}

/* VCVTPH2PS: exact; subnormal halves become normal floats (DAZ ignored),
 * a NaN keeps sign and payload and is made quiet (checked against F16C on
 * all 2^16 inputs). */
static inline float hearth_emu_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 31)
        x = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u);
    else if (e != 0)
        x = sign | ((e + 112u) << 23) | (m << 13);
    else if (m == 0)
        x = sign;
    else {
        /* m * 2^-24: shift the leading 1 up to bit 10, the implicit bit */
        uint32_t exp = 113u; /* biased exponent of 2^-14 */
        while (!(m & 0x400u)) {
            m <<= 1;
            exp--;
        }
        x = sign | (exp << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* _mm_cvtps_ph: 4 floats -> 4 halves in the low 64 bits, the rest zero.
 * Only round-to-nearest-even is emulated (imm8 bits 2:0 = 0): any other
 * rounding control fails to compile rather than be emulated wrongly. */
#define HEARTH_EMU_REQUIRE(cond) ((void)sizeof(char[(cond) ? 1 : -1]))

static inline simde__m128i hearth_emu_cvtps_ph(simde__m128 a)
{
    HEARTH_EMU_LANES(float, f, a);
    uint16_t h[8] = {0};
    for (int i = 0; i < 4; i++)
        h[i] = hearth_emu_f32_to_f16(f[i]);
    simde__m128i r;
    memcpy(&r, h, sizeof r);
    return r;
}

static inline simde__m128 hearth_emu_cvtph_ps(simde__m128i a)
{
    HEARTH_EMU_LANES(uint16_t, h, a);
    float f[4];
    for (int i = 0; i < 4; i++)
        f[i] = hearth_emu_f16_to_f32(h[i]);
    simde__m128 r;
    memcpy(&r, f, sizeof r);
    return r;
}

static inline simde__m512 hearth_emu_cvtph_ps512(simde__m256i a)
{
    HEARTH_EMU_LANES(uint16_t, h, a);
    float f[16];
    for (int i = 0; i < 16; i++)
        f[i] = hearth_emu_f16_to_f32(h[i]);
    return hearth_emu_ps512(f);
}

/* ---- conversions, built from the SSE2 instruction per 128-bit quarter -- */

/* VCVTPS2DQ: round by MXCSR (nearest even by default); NaN and results
 * outside int32 give 0x80000000 (SDM Vol. 2, CVTPS2DQ). On x86-64 the SSE2
 * intrinsic is the instruction itself. */
static inline simde__m512i hearth_emu_cvtps_epi32(simde__m512 a)
{
    simde__m128 q[4];
    simde__m128i r[4];
    memcpy(q, &a, sizeof q);
    for (int i = 0; i < 4; i++)
        r[i] = simde_mm_cvtps_epi32(q[i]);
    return hearth_emu_si512(r);
}

/* VCVTDQ2PS: int32 -> float rounded by MXCSR (nearest even). */
static inline simde__m512 hearth_emu_cvtepi32_ps(simde__m512i a)
{
    simde__m128i q[4];
    simde__m128 r[4];
    memcpy(q, &a, sizeof q);
    for (int i = 0; i < 4; i++)
        r[i] = simde_mm_cvtepi32_ps(q[i]);
    simde__m512 v;
    memcpy(&v, r, sizeof v);
    return v;
}

/* VPMOVDB: the low byte of each int32 lane (truncation, not the saturation
 * of VPMOVSDB), 16 bytes. */
static inline simde__m128i hearth_emu_cvtepi32_epi8(simde__m512i a)
{
    HEARTH_EMU_LANES(uint32_t, d, a);
    uint8_t b[16];
    for (int i = 0; i < 16; i++)
        b[i] = (uint8_t)(d[i] & 0xffu);
    simde__m128i r;
    memcpy(&r, b, sizeof r);
    return r;
}

/* VANDPS with 0x7fffffff (what compilers emit for _mm512_abs_ps): clears
 * the sign bit of every lane, NaN and -0 included. SIMDe 0.7.4 negates
 * lanes below zero, which leaves -0 and negative NaNs negative. */
static inline simde__m512 hearth_emu_abs_ps(simde__m512 a)
{
    return simde_mm512_castsi512_ps(
        simde_mm512_and_si512(simde_mm512_castps_si512(a), simde_mm512_set1_epi32(0x7fffffff)));
}

/* ---- reductions (sequences of instructions in the compilers' headers) -- */

/* Wrapping int32 sum of the 16 lanes; any order gives the same. */
static inline int32_t hearth_emu_reduce_add_epi32(simde__m512i a)
{
    HEARTH_EMU_LANES(uint32_t, d, a);
    uint32_t s = 0;
    for (int i = 0; i < 16; i++)
        s += d[i];
    int32_t r;
    memcpy(&r, &s, sizeof r);
    return r;
}

/* The maximum lane, by halving with MAXPS (gcc's order). Lanes with no NaN
 * and no +0/-0 tie give one answer in any order; otherwise gcc's and
 * clang's headers differ, so this stops with a message (see the top). */
static inline float hearth_emu_reduce_max_ps(simde__m512 a)
{
    HEARTH_EMU_LANES(float, f, a);
    int nan = 0, pos_zero = 0, neg_zero = 0;
    for (int i = 0; i < 16; i++) {
        nan |= isnan(f[i]);
        pos_zero |= f[i] == 0.0f && !signbit(f[i]);
        neg_zero |= f[i] == 0.0f && signbit(f[i]);
    }
    for (int n = 8; n >= 1; n /= 2)
        for (int i = 0; i < n; i++)
            f[i] = f[i + n] > f[i] ? f[i + n] : f[i];
    if (nan || (f[0] == 0.0f && pos_zero && neg_zero)) {
        fprintf(stderr, "avx512 emulation: _mm512_reduce_max_ps of %s: the result "
                        "depends on the compiler's reduction order\n",
                nan ? "a NaN lane" : "+0 and -0");
        abort();
    }
    return f[0];
}

/* ---- the names avx512.c uses ------------------------------------------ */

#undef _mm512_fmadd_ps
#undef _mm512_mask3_fmadd_ps
#undef _mm512_maskz_loadu_ps
#undef _mm512_cvtph_ps
#undef _mm_cvtps_ph
#undef _mm_cvtph_ps
#undef _mm512_cvtps_epi32
#undef _mm512_cvtepi32_ps
#undef _mm512_cvtepi32_epi8
#undef _mm512_abs_ps
#undef _mm512_reduce_add_epi32
#undef _mm512_reduce_max_ps
#undef _mm512_dpbusd_epi32
#define _mm512_fmadd_ps(a, b, c) hearth_emu_fmadd_ps(a, b, c)
#define _mm512_mask3_fmadd_ps(a, b, c, k) hearth_emu_mask3_fmadd_ps(a, b, c, k)
#define _mm512_maskz_loadu_ps(k, p) hearth_emu_maskz_loadu_ps(k, p)
#define _mm512_cvtph_ps(a) hearth_emu_cvtph_ps512(a)
#define _mm_cvtps_ph(a, imm)                                                                 \
    (HEARTH_EMU_REQUIRE(((imm) & 7) == _MM_FROUND_TO_NEAREST_INT), hearth_emu_cvtps_ph(a))
#define _mm_cvtph_ps(a) hearth_emu_cvtph_ps(a)
#define _mm512_cvtps_epi32(a) hearth_emu_cvtps_epi32(a)
#define _mm512_cvtepi32_ps(a) hearth_emu_cvtepi32_ps(a)
#define _mm512_cvtepi32_epi8(a) hearth_emu_cvtepi32_epi8(a)
#define _mm512_abs_ps(a) hearth_emu_abs_ps(a)
#define _mm512_reduce_add_epi32(a) hearth_emu_reduce_add_epi32(a)
#define _mm512_reduce_max_ps(a) hearth_emu_reduce_max_ps(a)
#define _mm512_dpbusd_epi32(src, a, b) hearth_emu_dpbusd_epi32(src, a, b)
/* vzeroupper only clears hardware register state, which emulation has none of. */
#undef _mm256_zeroupper
#define _mm256_zeroupper() ((void)0)

#endif
