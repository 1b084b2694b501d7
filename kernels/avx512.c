/* kernels/avx512.c - the kernels for x86-64 CPUs with AVX-512 F/BW/VL and
 * AVX-512 VNNI: activation quantization and the F32 / Q8_0 / Q4_0 matrix x
 * vector products and their batched forms (gemm_*, prompt prefill),
 * bit-identical to kernels/scalar.c; and the int8 peak probe.
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
        a->q4_start[b] = q4_start_of(a->q + b * QK);
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

/* ---- batched products (prompt prefill) ---------------------------------
 * A tile is one 16-row group (one zmm, lane r = row 16g + r) x up to
 * GEMM_TOKENS tokens: per block column each 64-byte weight load, and its
 * unpacking, serves every token of the tile; each token keeps two int32
 * accumulators (two dependency chains, as the matrix x vector kernels) and
 * one f32 accumulator in registers: 8 x 3 + 3 of the 32 zmm. Per output
 * the arithmetic is exactly group_q8_0's / group_q4_0's: the same exact
 * int32 block dot, one f32 multiply d_w * d_a and one FMA per block, in
 * block order. Loop order and token blocks (at most GEMM_ACT_BYTES of
 * activations) as in avx2.c, where they were measured. Not timed here:
 * the development machine has no AVX-512, so the tile size comes from the
 * register count and vpdpbusd's latency, not from measurement. Checked bit
 * for bit in emulation, tests/emulated/. */
#define GEMM_TOKENS 8
#define GEMM_ACT_BYTES (4u << 20)

/* Tokens per token block: a multiple of GEMM_TOKENS whose int8
 * activations fit GEMM_ACT_BYTES (at least one tile). */
static uint64_t gemm_token_block(uint64_t cols)
{
    uint64_t n = GEMM_ACT_BYTES / cols / GEMM_TOKENS * GEMM_TOKENS;
    return n ? n : GEMM_TOKENS;
}

/* One Q4_0 tile: group grp (its first row g * 16), tokens t0 .. t0 + n - 1
 * (n a constant after inlining). As group_q4_0: low nibbles against
 * activations 8c..8c+3, high nibbles against 8c+4..8c+7, the first chain
 * starting at -8 * sum_a. */
AVX512 static inline __attribute__((always_inline)) void
tile_q4_0(float *out, uint64_t ldo, uint64_t g, uint64_t r0, uint64_t r1, const uint8_t *grp,
          uint64_t nb, const struct q8_act *a, uint64_t cols, uint64_t t0, int n)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const uint8_t *scales = grp + nb * Q4_0_QBYTES;
    const int8_t *qa = a->q + t0 * cols;
    const float *da = a->d + t0 * nb;
    const int32_t *sa = a->sum + t0 * nb;
    __m512 acc[GEMM_TOKENS];
    #pragma GCC unroll 8
    for (int k = 0; k < n; k++)
        acc[k] = _mm512_setzero_ps();
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *q = grp + b * Q4_0_QBYTES;
        const int8_t *ab = qa + b * QK;
        __m512i i0[GEMM_TOKENS], i1[GEMM_TOKENS];
        #pragma GCC unroll 8
        for (int k = 0; k < n; k++) {
            i0[k] = _mm512_set1_epi32(-8 * sa[k * nb + b]);
            i1[k] = _mm512_setzero_si512();
        }
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i v = load64(q + 64 * c);
            __m512i low = _mm512_and_si512(v, m4);
            __m512i high = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            #pragma GCC unroll 8
            for (int k = 0; k < n; k++) {
                const int8_t *ak = ab + k * cols + 8 * c;
                i0[k] = _mm512_dpbusd_epi32(i0[k], low, bcast4(ak));
                i1[k] = _mm512_dpbusd_epi32(i1[k], high, bcast4(ak + 4));
            }
        }
        __m512 ws = load_scales16(scales + 32 * b);
        #pragma GCC unroll 8
        for (int k = 0; k < n; k++) {
            __m512 s = _mm512_mul_ps(ws, _mm512_set1_ps(da[k * nb + b]));
            __m512i i = _mm512_add_epi32(i0[k], i1[k]);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc[k]);
        }
    }
    #pragma GCC unroll 8
    for (int k = 0; k < n; k++)
        store_group(out + (t0 + k) * ldo, acc[k], g, r0, r1);
}

/* One Q8_0 tile, as tile_q4_0 with group_q8_0's arithmetic: w XOR 0x80 =
 * w + 128 (unsigned, shared by the tile's tokens), the even chunks' chain
 * starting at -128 * sum_a. */
AVX512 static inline __attribute__((always_inline)) void
tile_q8_0(float *out, uint64_t ldo, uint64_t g, uint64_t r0, uint64_t r1, const uint8_t *grp,
          uint64_t nb, const struct q8_act *a, uint64_t cols, uint64_t t0, int n)
{
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const uint8_t *scales = grp + nb * Q8_0_QBYTES;
    const int8_t *qa = a->q + t0 * cols;
    const float *da = a->d + t0 * nb;
    const int32_t *sa = a->sum + t0 * nb;
    __m512 acc[GEMM_TOKENS];
    #pragma GCC unroll 8
    for (int k = 0; k < n; k++)
        acc[k] = _mm512_setzero_ps();
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *q = grp + b * Q8_0_QBYTES;
        const int8_t *ab = qa + b * QK;
        __m512i i0[GEMM_TOKENS], i1[GEMM_TOKENS];
        #pragma GCC unroll 8
        for (int k = 0; k < n; k++) {
            i0[k] = _mm512_set1_epi32(-128 * sa[k * nb + b]);
            i1[k] = _mm512_setzero_si512();
        }
        #pragma GCC unroll 4
        for (int c = 0; c < 8; c += 2) {
            __m512i u0 = _mm512_xor_si512(load64(q + 64 * c), flip);
            __m512i u1 = _mm512_xor_si512(load64(q + 64 * c + 64), flip);
            #pragma GCC unroll 8
            for (int k = 0; k < n; k++) {
                const int8_t *ak = ab + k * cols + 4 * c;
                i0[k] = _mm512_dpbusd_epi32(i0[k], u0, bcast4(ak));
                i1[k] = _mm512_dpbusd_epi32(i1[k], u1, bcast4(ak + 4));
            }
        }
        __m512 ws = load_scales16(scales + 32 * b);
        #pragma GCC unroll 8
        for (int k = 0; k < n; k++) {
            __m512 s = _mm512_mul_ps(ws, _mm512_set1_ps(da[k * nb + b]));
            __m512i i = _mm512_add_epi32(i0[k], i1[k]);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc[k]);
        }
    }
    #pragma GCC unroll 8
    for (int k = 0; k < n; k++)
        store_group(out + (t0 + k) * ldo, acc[k], g, r0, r1);
}

/* Either tile, by type (a constant after inlining). */
AVX512 static inline __attribute__((always_inline)) void
tile_packed(int is_q4, float *out, uint64_t ldo, uint64_t g, uint64_t r0, uint64_t r1,
            const uint8_t *grp, uint64_t nb, const struct q8_act *a, uint64_t cols, uint64_t t0,
            int n)
{
    if (is_q4)
        tile_q4_0(out, ldo, g, r0, r1, grp, nb, a, cols, t0, n);
    else
        tile_q8_0(out, ldo, g, r0, r1, grp, nb, a, cols, t0, n);
}

/* Token blocks, then the groups of [r0, r1), then tiles of GEMM_TOKENS
 * tokens, then the 1..7 tokens left as tiles of 4, 2 and 1. */
AVX512 static inline __attribute__((always_inline)) void
gemm_packed(int is_q4, float *out, uint64_t ldo, const void *w, const struct q8_act *a,
            uint64_t n_tok, uint64_t cols, uint64_t r0, uint64_t r1)
{
    uint64_t nb = cols / QK;
    uint64_t stride = nb * ((is_q4 ? Q4_0_QBYTES : Q8_0_QBYTES) + 2 * ROW_GROUP);
    uint64_t tblock = gemm_token_block(cols);
    for (uint64_t tb = 0; tb < n_tok; tb += tblock) {
        uint64_t te = n_tok - tb < tblock ? n_tok : tb + tblock;
        for (uint64_t g = r0 / ROW_GROUP; g * ROW_GROUP < r1; g++) {
            const uint8_t *grp = (const uint8_t *)w + g * stride;
            uint64_t t = tb;
            for (; t + GEMM_TOKENS <= te; t += GEMM_TOKENS)
                tile_packed(is_q4, out, ldo, g, r0, r1, grp, nb, a, cols, t, GEMM_TOKENS);
            if (te - t >= 4) {
                tile_packed(is_q4, out, ldo, g, r0, r1, grp, nb, a, cols, t, 4);
                t += 4;
            }
            if (te - t >= 2) {
                tile_packed(is_q4, out, ldo, g, r0, r1, grp, nb, a, cols, t, 2);
                t += 2;
            }
            if (te - t == 1)
                tile_packed(is_q4, out, ldo, g, r0, r1, grp, nb, a, cols, t, 1);
        }
    }
}

AVX512 static void gemm_q4_0_avx512(float *out, uint64_t ldo, const void *w,
                                    const struct q8_act *a, uint32_t n_tok, uint64_t cols,
                                    uint64_t r0, uint64_t r1)
{
    gemm_packed(1, out, ldo, w, a, n_tok, cols, r0, r1);
    _mm256_zeroupper(); /* gcc 12 omits it here; see avx2.c matvec_q8_0_avx2 */
}

AVX512 static void gemm_q8_0_avx512(float *out, uint64_t ldo, const void *w,
                                    const struct q8_act *a, uint32_t n_tok, uint64_t cols,
                                    uint64_t r0, uint64_t r1)
{
    gemm_packed(0, out, ldo, w, a, n_tok, cols, r0, r1);
    _mm256_zeroupper(); /* gcc 12 omits it here; see avx2.c matvec_q8_0_avx2 */
}

/* F32 tiles: F32_ROWS rows x F32_TOKENS tokens, one zmm of partial sums per
 * output updated by the FMAs of f32_rows in the same column order, the
 * same masked tail (lanes past cols % 16 keep their sum) and the same
 * tree, so each output is matvec_f32_avx512's. 4 x 4 = 16 accumulators,
 * 4 weight registers and 1 activation register per step; token blocks of
 * at most GEMM_ACT_BYTES of activations. */
#define F32_ROWS 4
#define F32_TOKENS 4

AVX512 static inline __attribute__((always_inline)) void
tile_f32(float *out, uint64_t ldo, const float *w, const float *x, uint64_t cols, uint64_t r,
         uint64_t t0, int nr, int nt)
{
    const float *wr = w + r * cols, *xt = x + t0 * cols;
    __m512 s[F32_ROWS][F32_TOKENS];
    #pragma GCC unroll 4
    for (int i = 0; i < nr; i++)
        #pragma GCC unroll 4
        for (int j = 0; j < nt; j++)
            s[i][j] = _mm512_setzero_ps();
    uint64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        __m512 wv[F32_ROWS];
        #pragma GCC unroll 4
        for (int i = 0; i < nr; i++)
            wv[i] = _mm512_loadu_ps(wr + i * cols + c);
        #pragma GCC unroll 4
        for (int j = 0; j < nt; j++) {
            __m512 xv = _mm512_loadu_ps(xt + j * cols + c);
            #pragma GCC unroll 4
            for (int i = 0; i < nr; i++)
                s[i][j] = _mm512_fmadd_ps(wv[i], xv, s[i][j]);
        }
    }
    if (c < cols) {
        __mmask16 k = (__mmask16)((1u << (cols - c)) - 1u);
        __m512 wv[F32_ROWS];
        #pragma GCC unroll 4
        for (int i = 0; i < nr; i++)
            wv[i] = _mm512_maskz_loadu_ps(k, wr + i * cols + c);
        #pragma GCC unroll 4
        for (int j = 0; j < nt; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(k, xt + j * cols + c);
            #pragma GCC unroll 4
            for (int i = 0; i < nr; i++)
                s[i][j] = _mm512_mask3_fmadd_ps(wv[i], xv, s[i][j], k);
        }
    }
    #pragma GCC unroll 4
    for (int i = 0; i < nr; i++)
        #pragma GCC unroll 4
        for (int j = 0; j < nt; j++)
            out[(t0 + j) * ldo + r + i] = f32_tree(s[i][j]);
}

/* Tokens t0 .. t0 + nt - 1 against rows [r, re) (re - r <= F32_ROWS). */
AVX512 static inline __attribute__((always_inline)) void
rows_f32(float *out, uint64_t ldo, const float *w, const float *x, uint64_t cols, uint64_t r,
         uint64_t re, uint64_t t0, int nt)
{
    if (re - r == 4)
        tile_f32(out, ldo, w, x, cols, r, t0, 4, nt);
    else
        for (; r < re; r++)
            tile_f32(out, ldo, w, x, cols, r, t0, 1, nt);
}

AVX512 static void gemm_f32_avx512(float *out, uint64_t ldo, const float *w, const float *x,
                                   uint32_t n_tok, uint64_t cols, uint64_t r0, uint64_t r1)
{
    uint64_t tblock = GEMM_ACT_BYTES / (cols * sizeof(float)) / F32_TOKENS * F32_TOKENS;
    if (tblock == 0)
        tblock = F32_TOKENS;
    for (uint64_t tb = 0; tb < n_tok; tb += tblock) {
        uint64_t te = n_tok - tb < tblock ? n_tok : tb + tblock;
        for (uint64_t r = r0; r < r1; r += F32_ROWS) {
            uint64_t re = r1 - r < F32_ROWS ? r1 : r + F32_ROWS;
            uint64_t t = tb;
            for (; t + F32_TOKENS <= te; t += F32_TOKENS)
                rows_f32(out, ldo, w, x, cols, r, re, t, F32_TOKENS);
            for (; t < te; t++)
                rows_f32(out, ldo, w, x, cols, r, re, t, 1);
        }
    }
    _mm256_zeroupper(); /* gcc 12 omits it here; see avx2.c matvec_q8_0_avx2 */
}

/* The int8 peak probe (kernels.h): 12 independent vpdpbusd accumulators
 * per iteration, enough to cover its latency (5 cycles on Ice Lake) at up
 * to two per cycle, from registers only: the accumulators are both input
 * and output, so nothing can be hoisted, and the operands come from n_iter
 * so nothing is known at compile time. One vpdpbusd is 64 byte
 * multiply-adds, counted as 128 operations.
 *
 * In the native build the instruction is written out: for the intrinsic
 * in this loop gcc 12 emits two zmm register copies per vpdpbusd (24 per
 * iteration, seen in its assembly; clang 14 emits none), which would make
 * the probe measure the front end instead of the multiply units. The
 * emulated build (no AVX-512 registers to name) uses the intrinsic. */
#define PEAK_CHAINS 12

#if defined(HEARTH_EMULATE_AVX512)
#define DPBUSD_IN_PLACE(acc, u, s) ((acc) = _mm512_dpbusd_epi32((acc), (u), (s)))
#else
/* AT&T operand order: vpdpbusd signed, unsigned, accumulator */
#define DPBUSD_IN_PLACE(acc, u, s) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s))
#endif

AVX512 static uint64_t int8_peak_loop_avx512(uint64_t n_iter, int32_t *sink)
{
    const __m512i u = _mm512_set1_epi8((char)(n_iter | 1));
    const __m512i s = _mm512_set1_epi8((char)(3 + (n_iter & 4)));
    __m512i acc[PEAK_CHAINS];
    #pragma GCC unroll 12
    for (int k = 0; k < PEAK_CHAINS; k++)
        acc[k] = _mm512_set1_epi32(k);
    for (uint64_t it = 0; it < n_iter; it++) {
        #pragma GCC unroll 12
        for (int k = 0; k < PEAK_CHAINS; k++)
            DPBUSD_IN_PLACE(acc[k], u, s);
    }
    __m512i t = acc[0];
    #pragma GCC unroll 12
    for (int k = 1; k < PEAK_CHAINS; k++)
        t = _mm512_add_epi32(t, acc[k]);
    *sink = _mm512_reduce_add_epi32(t);
    _mm256_zeroupper(); /* gcc 12 omits it here; see avx2.c matvec_q8_0_avx2 */
    return n_iter * PEAK_CHAINS * 128u;
}

const struct kernels kernels_avx512 = {
    .name = "avx512",
    .matvec_f32 = matvec_f32_avx512,
    .matvec_q8_0 = matvec_q8_0_avx512,
    .matvec_q4_0 = matvec_q4_0_avx512,
    .quantize_act = quantize_act_avx512,
    .gemm_f32 = gemm_f32_avx512,
    .gemm_q8_0 = gemm_q8_0_avx512,
    .gemm_q4_0 = gemm_q4_0_avx512,
    .int8_peak_loop = int8_peak_loop_avx512,
};

#else

/* Not x86-64: no functions; kernels_select refuses this table. */
const struct kernels kernels_avx512 = {.name = "avx512"};

#endif
