/* kernels/avx512.c - the kernels for x86-64 CPUs with AVX-512 F/BW/VL and
 * AVX-512 VNNI: activation quantization and the F32 / Q8_0 / Q4_0 matrix x
 * vector products, bit-identical to kernels/scalar.c.
 *
 * Every function carries its own target attribute, so this file builds with
 * the project's plain flags and the binary runs on any x86-64; callers reach
 * these only through kernels_select (cpu.c), which checks the CPU (and that
 * the OS saves the zmm state) first. On other architectures the table exists
 * with no functions, so the program links; kernels_select never hands it out.
 *
 * A 16-row group fills one zmm: 32-bit lane r accumulates row 16g + r.
 * vpdpbusd multiplies unsigned bytes (the weights) by signed bytes (4
 * activation bytes broadcast to every lane) and adds the four products into
 * the int32 lane without saturation, so every block dot is exact:
 *   Q4_0: nibbles 0..15 as they are, offset -8 * sum_a (the offset trick);
 *   Q8_0: w XOR 0x80 = w + 128 (0..255), offset -128 * sum_a.
 * Both offsets use a->sum, so the activations must come from quantize_act
 * (sum = the sum of the q values), as kernels.h defines them. */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__)
#if defined(HEARTH_EMULATE_AVX512)
/* Test builds only (tests/emulated/README.md): this same code on emulated
 * intrinsics, so that CPUs without AVX-512 check it against scalar.c; no
 * target attribute, as nothing then needs AVX-512. */
#include "../tests/emulated/avx512_shim.h"
#define AVX512
#else
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#endif

/* 4 activation bytes (one int32) in every lane. clang 14 folds this into
 * the embedded {1to16} broadcast of vpdpbusd's memory operand; gcc 12
 * emits a vpbroadcastd load instead, one load uop either way. */
AVX512 static inline __m512i bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

AVX512 static inline __m512i load64(const uint8_t *p)
{
    return _mm512_loadu_si512((const void *)p);
}

/* Software prefetch PREFETCH_COLUMNS block columns ahead, as avx2.c does
 * (where it was measured; see there). The memory access pattern is the same
 * here, but this file could not be timed on the development machine, which
 * has no AVX-512: measure before tuning. A prefetch never faults, and the
 * address is formed as an integer, so running past the matrix is harmless. */
#define PREFETCH_COLUMNS 8

AVX512 static inline void prefetch(const uint8_t *base, uint64_t offset)
{
    _mm_prefetch((const char *)((uintptr_t)base + offset), _MM_HINT_T0);
}

/* The 16 fp16 scales of one block column -> f32 (exact, like fp16_to_f32). */
AVX512 static inline __m512 load_scales16(const uint8_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}

/* Stores the 16 row results of group g, only the rows inside [r0, r1). */
AVX512 static void store_group(float *out, __m512 v, uint64_t g, uint64_t r0, uint64_t r1)
{
    uint64_t first = g * ROW_GROUP;
    if (first >= r0 && first + ROW_GROUP <= r1) {
        _mm512_storeu_ps(out + first, v);
        return;
    }
    float tmp[ROW_GROUP];
    _mm512_storeu_ps(tmp, v);
    for (uint64_t r = first > r0 ? first : r0; r < r1 && r < first + ROW_GROUP; r++)
        out[r] = tmp[r - first];
}

/* The scalar quantizer's steps, vectorized (see avx2.c for the NaN and
 * rounding notes, which hold here unchanged): vmaxps with the running
 * maximum second, vcvtps2ph round-to-nearest-even, cvtps2dq of the clamped
 * x * id. Lanes hold no NaN after the max, so reducing them in any order
 * gives the scalar amax. */
AVX512 static void quantize_act_avx512(const float *x, uint64_t n, struct q8_act *a)
{
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (uint64_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(v1), m);
        float amax = _mm512_reduce_max_ps(m);
        __m128i d16 = _mm_cvtps_ph(_mm_set_ss(amax / 127.0f), _MM_FROUND_TO_NEAREST_INT);
        a->d[b] = _mm_cvtss_f32(_mm_cvtph_ps(d16));
        __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        __m512 t0 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, id), lo), hi);
        __m512 t1 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, id), lo), hi);
        __m512i q0 = _mm512_cvtps_epi32(t0), q1 = _mm512_cvtps_epi32(t1);
        _mm_storeu_si128((__m128i *)(void *)(a->q + b * QK), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(void *)(a->q + b * QK + 16), _mm512_cvtepi32_epi8(q1));
        a->sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* The F32 tree of kernels.h on the 16 partial sums in s. */
AVX512 static inline float f32_tree(__m512 s)
{
    __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1));
    __m256 u = _mm256_add_ps(_mm512_castps512_ps256(s), high);
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

/* N rows (N = 4 or 1, a constant after inlining) of the F32 product, one zmm
 * of partial sums per row; the tail updates only its first cols % 16 sums. */
AVX512 static inline __attribute__((always_inline)) void
f32_rows(float *out, const float *w, const float *x, uint64_t cols, int n)
{
    __m512 s[4];
    for (int i = 0; i < n; i++)
        s[i] = _mm512_setzero_ps();
    uint64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        __m512 xv = _mm512_loadu_ps(x + c);
        for (int i = 0; i < n; i++)
            s[i] = _mm512_fmadd_ps(_mm512_loadu_ps(w + i * cols + c), xv, s[i]);
    }
    if (c < cols) {
        __mmask16 k = (__mmask16)((1u << (cols - c)) - 1u);
        __m512 xv = _mm512_maskz_loadu_ps(k, x + c);
        for (int i = 0; i < n; i++)
            s[i] = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(k, w + i * cols + c), xv, s[i], k);
    }
    for (int i = 0; i < n; i++)
        out[i] = f32_tree(s[i]);
}

AVX512 static void matvec_f32_avx512(float *out, const float *w, const float *x, uint64_t cols,
                                     uint64_t r0, uint64_t r1)
{
    uint64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        f32_rows(out + r, w + r * cols, x, cols, 4);
    for (; r < r1; r++)
        f32_rows(out + r, w + r * cols, x, cols, 1);
}

/* One Q8_0 group: per block column, 8 chunks of 64 bytes (chunk c = columns
 * 4c..4c+3 of all 16 rows) into two int32 accumulators (shorter dependency
 * chains), one of them starting at -128 * sum_a; then one convert and one
 * FMA with the 16 row scales times d_a. The int32 sum is the exact block
 * dot, at most 32 * 128 * 127 in magnitude, so the convert is exact too. */
AVX512 static __m512 group_q8_0(const uint8_t *grp, uint64_t nb, const struct q8_act *a)
{
    const uint8_t *scales = grp + nb * Q8_0_QBYTES;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512 acc = _mm512_setzero_ps();
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *q = grp + b * Q8_0_QBYTES;
        const int8_t *qa = a->q + b * QK;
        for (int l = 0; l < Q8_0_QBYTES; l += 64)
            prefetch(q, PREFETCH_COLUMNS * Q8_0_QBYTES + (uint64_t)l);
        prefetch(scales, 32 * (b + PREFETCH_COLUMNS));
        __m512i i0 = _mm512_set1_epi32(-128 * a->sum[b]), i1 = _mm512_setzero_si512();
        /* unrolled: the chunks are independent but for the accumulators */
        #pragma GCC unroll 8
        for (int c = 0; c < 8; c += 2) {
            __m512i u0 = _mm512_xor_si512(load64(q + 64 * c), flip);
            __m512i u1 = _mm512_xor_si512(load64(q + 64 * c + 64), flip);
            i0 = _mm512_dpbusd_epi32(i0, u0, bcast4(qa + 4 * c));
            i1 = _mm512_dpbusd_epi32(i1, u1, bcast4(qa + 4 * c + 4));
        }
        __m512 scale = _mm512_mul_ps(load_scales16(scales + 32 * b), _mm512_set1_ps(a->d[b]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), scale, acc);
    }
    return acc;
}

/* One Q4_0 group: per block column, 4 chunks of 64 bytes; low nibbles
 * (AND 0x0f) against activations 8c..8c+3, high nibbles (shift right 4,
 * AND) against 8c+4..8c+7, into two int32 accumulators, one starting at
 * -8 * sum_a; then one convert and one FMA. */
AVX512 static __m512 group_q4_0(const uint8_t *grp, uint64_t nb, const struct q8_act *a)
{
    const uint8_t *scales = grp + nb * Q4_0_QBYTES;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc = _mm512_setzero_ps();
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *q = grp + b * Q4_0_QBYTES;
        const int8_t *qa = a->q + b * QK;
        for (int l = 0; l < Q4_0_QBYTES; l += 64)
            prefetch(q, PREFETCH_COLUMNS * Q4_0_QBYTES + (uint64_t)l);
        prefetch(scales, 32 * (b + PREFETCH_COLUMNS));
        __m512i i0 = _mm512_set1_epi32(-8 * a->sum[b]), i1 = _mm512_setzero_si512();
        /* unrolled: the chunks are independent but for the accumulators */
        #pragma GCC unroll 8
        for (int c = 0; c < 4; c++) {
            __m512i v = load64(q + 64 * c);
            __m512i low = _mm512_and_si512(v, m4);
            __m512i high = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            i0 = _mm512_dpbusd_epi32(i0, low, bcast4(qa + 8 * c));
            i1 = _mm512_dpbusd_epi32(i1, high, bcast4(qa + 8 * c + 4));
        }
        __m512 scale = _mm512_mul_ps(load_scales16(scales + 32 * b), _mm512_set1_ps(a->d[b]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), scale, acc);
    }
    return acc;
}

AVX512 static void matvec_q8_0_avx512(float *out, const void *w, const struct q8_act *a,
                                      uint64_t cols, uint64_t r0, uint64_t r1)
{
    uint64_t nb = cols / QK, stride = nb * (Q8_0_QBYTES + 2 * ROW_GROUP);
    for (uint64_t g = r0 / ROW_GROUP; g * ROW_GROUP < r1; g++)
        store_group(out, group_q8_0((const uint8_t *)w + g * stride, nb, a), g, r0, r1);
    _mm256_zeroupper(); /* gcc 12 omits it here; see avx2.c matvec_q8_0_avx2 */
}

AVX512 static void matvec_q4_0_avx512(float *out, const void *w, const struct q8_act *a,
                                      uint64_t cols, uint64_t r0, uint64_t r1)
{
    uint64_t nb = cols / QK, stride = nb * (Q4_0_QBYTES + 2 * ROW_GROUP);
    for (uint64_t g = r0 / ROW_GROUP; g * ROW_GROUP < r1; g++)
        store_group(out, group_q4_0((const uint8_t *)w + g * stride, nb, a), g, r0, r1);
    _mm256_zeroupper(); /* gcc 12 omits it here; see avx2.c matvec_q8_0_avx2 */
}

const struct kernels kernels_avx512 = {
    .name = "avx512",
    .matvec_f32 = matvec_f32_avx512,
    .matvec_q8_0 = matvec_q8_0_avx512,
    .matvec_q4_0 = matvec_q4_0_avx512,
    .quantize_act = quantize_act_avx512,
};

#else

/* Not x86-64: no functions; kernels_select refuses this table. */
const struct kernels kernels_avx512 = {.name = "avx512"};

#endif
