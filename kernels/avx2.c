/* kernels/avx2.c - the kernels for x86-64 CPUs with AVX2, FMA and F16C (no
 * VNNI): activation quantization and the F32 / Q8_0 / Q4_0 matrix x vector
 * products and their batched forms (gemm_*, prompt prefill), bit-identical
 * to kernels/scalar.c; and the int8 peak probe the bench times.
 *
 * Every function carries its own target attribute, so this file builds with
 * the project's plain flags and the binary runs on any x86-64; callers reach
 * these only through kernels_select (cpu.c), which checks the CPU first. On
 * other architectures the table still exists, with no functions, so the
 * program links; kernels_select never hands it out there.
 *
 * The int8 dot products use vpmaddubsw (unsigned x signed bytes -> int16
 * pairs, saturating) and vpmaddwd with ones (int16 pairs -> int32). Each
 * use below states why no int16 sum can saturate, which is what makes the
 * results exact and so equal to the scalar kernels. A 16-row group is two
 * ymm halves: rows 0-7 in the first 32 bytes of each 64-byte chunk, rows
 * 8-15 in the second. */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* 4 activation bytes (one int32) in every 32-bit lane. */
AVX2 static inline __m256i bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

AVX2 static inline __m256i load32(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)p);
}

/* Software prefetch PREFETCH_COLUMNS block columns ahead of the loads.
 * Measured on the development machine (AMD EPYC Zen 3 VM, one thread,
 * medians of 5 interleaved runs, 2048 x 8192 and 8192 x 2048): from DRAM
 * equal to 15% faster (Q8_0 2048 x 8192: 8.1 -> 9.3 GB/s), from cache
 * much faster (Q4_0: 11 -> 17 GB/s); 4 or 16 columns ahead did no better,
 * and prefetching one line per column instead of all was slower than none.
 * Near the end of a group the address runs into its scales and the next
 * group, which are read next anyway, or past the matrix: a prefetch is only
 * a hint and never faults, and the address is formed as an integer so that
 * no out-of-object pointer is made. */
#define PREFETCH_COLUMNS 8

/* matvec_q4_0 splits the groups of the rows [r0, r1) it is given into
 * STREAMS equal runs and walks one group of each run at a time, block
 * column by block column (the last (g1 - g0) % STREAMS groups follow one by
 * one), so STREAMS far-apart sequential streams are read at once, each with
 * its own prefetches. Measured on the development machine (Zen 3 VM, 2
 * cores; ./run bench --types q4_0 --threads 2, Llama-3.2-1B shape, medians
 * of 7 runs interleaved with the one-group kernel): decode 12.8 -> 16.1
 * tokens/s at 1 thread and 20.7 -> 22.3 at 2 threads; 2-thread GB/s
 * ffn_gate 14.4 -> 16.0, ffn_down 16.0 -> 17.9, classifier 14.0 -> 16.1.
 * 2 streams did less (3 runs: 2 threads 20.9 -> 21.4 tokens/s). The same
 * change to Q8_0 gave 1 thread 7.8 -> 10.2 tokens/s but 2 threads only
 * 13.0 -> 13.2 (3 runs), under the 5% bar set for keeping it, so Q8_0
 * still walks one group at a time. */
#define STREAMS 4

AVX2 static inline void prefetch(const uint8_t *base, uint64_t offset)
{
    _mm_prefetch((const char *)((uintptr_t)base + offset), _MM_HINT_T0);
}

/* 8 fp16 scales -> f32 (exact, like fp16_to_f32). */
AVX2 static inline __m256 load_scales8(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* Stores the 16 row results of group g, only the rows inside [r0, r1). */
AVX2 static void store_group(float *out, __m256 lo, __m256 hi, uint64_t g, uint64_t r0,
                             uint64_t r1)
{
    uint64_t first = g * ROW_GROUP;
    if (first >= r0 && first + ROW_GROUP <= r1) {
        _mm256_storeu_ps(out + first, lo);
        _mm256_storeu_ps(out + first + 8, hi);
        return;
    }
    float tmp[ROW_GROUP];
    _mm256_storeu_ps(tmp, lo);
    _mm256_storeu_ps(tmp + 8, hi);
    for (uint64_t r = first > r0 ? first : r0; r < r1 && r < first + ROW_GROUP; r++)
        out[r] = tmp[r - first];
}

/* The scalar quantizer's steps, vectorized: amax with vmaxps taking the
 * running maximum as its second operand (a NaN |x| leaves it unchanged, as
 * the scalar comparison does), d through vcvtps2ph with round-to-nearest-
 * even, q = cvtps2dq (round half to even under the default MXCSR, like
 * nearbyintf) of x * id clamped to +-127 (vmaxps(NaN, -127) = -127, like
 * fmaxf). */
AVX2 static void quantize_act_avx2(const float *x, uint64_t n, struct q8_act *a)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    /* packs works within 128-bit lanes; this puts the dwords back in order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (uint64_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            m = _mm256_max_ps(_mm256_and_ps(v[i], abs_mask), m);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        __m128i d16 = _mm_cvtps_ph(_mm_set_ss(amax / 127.0f), _MM_FROUND_TO_NEAREST_INT);
        a->d[b] = _mm_cvtss_f32(_mm_cvtph_ps(d16));
        __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        __m256i q[4];
        for (int i = 0; i < 4; i++) {
            __m256 t = _mm256_mul_ps(v[i], id);
            q[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(t, lo), hi));
        }
        __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
                                           _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)(void *)(a->q + b * QK),
                            _mm256_permutevar8x32_epi32(bytes, order));
        /* lane j of s4: the q at k % 4 == j; lanes 0 + 1 and 2 + 3 are
         * the halves q4_start_of sums */
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        int32_t lo = _mm_cvtsi128_si32(s4), hi = _mm_extract_epi32(s4, 2);
        a->sum[b] = lo + hi;
        a->q4_start[b] = q4_start_pack(lo, hi);
    }
}

/* The F32 tree of kernels.h on s = s[0..7], t = s[8..15]. */
AVX2 static inline float f32_tree(__m256 s, __m256 t)
{
    __m256 u = _mm256_add_ps(s, t);
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

/* N rows (N = 4 or 1, a constant after inlining) of the F32 product. Each
 * row keeps its 16 partial sums in two ymm registers; the tail loads zeros
 * past the end (vmaskmovps does not touch those addresses), and
 * fma(0, 0, s) = s because s is never -0 (it starts at +0, and an FMA only
 * returns -0 from a -0 addend). */
AVX2 static inline __attribute__((always_inline)) void
f32_rows(float *out, const float *w, const float *x, uint64_t cols, int n)
{
    __m256 s[4][2];
    for (int i = 0; i < n; i++)
        s[i][0] = s[i][1] = _mm256_setzero_ps();
    uint64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
        for (int i = 0; i < n; i++) {
            s[i][0] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i * cols + c), x0, s[i][0]);
            s[i][1] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i * cols + c + 8), x1, s[i][1]);
        }
    }
    if (c < cols) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        int rem = (int)(cols - c);
        __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lane);
        __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 8), lane);
        __m256 x0 = _mm256_maskload_ps(x + c, m0), x1 = _mm256_maskload_ps(x + c + 8, m1);
        for (int i = 0; i < n; i++) {
            s[i][0] = _mm256_fmadd_ps(_mm256_maskload_ps(w + i * cols + c, m0), x0, s[i][0]);
            s[i][1] = _mm256_fmadd_ps(_mm256_maskload_ps(w + i * cols + c + 8, m1), x1, s[i][1]);
        }
    }
    for (int i = 0; i < n; i++)
        out[i] = f32_tree(s[i][0], s[i][1]);
}

AVX2 static void matvec_f32_avx2(float *out, const float *w, const float *x, uint64_t cols,
                                 uint64_t r0, uint64_t r1)
{
    uint64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        f32_rows(out + r, w + r * cols, x, cols, 4);
    for (; r < r1; r++)
        f32_rows(out + r, w + r * cols, x, cols, 1);
}

/* One Q8_0 group. Sign trick: |w| (0..128, unsigned) times a * sign(w)
 * gives w * a; a pair sum is at most 2 * 128 * 127 = 32512 < 32767 because
 * |a| <= 127 (quantize_act clamps), so vpmaddubsw never saturates. Each
 * chunk's pairs are widened to int32 at once (two chunks could overflow
 * int16). */
AVX2 static void group_q8_0(const uint8_t *grp, uint64_t nb, const struct q8_act *a, __m256 *lo,
                            __m256 *hi)
{
    const uint8_t *scales = grp + nb * Q8_0_QBYTES;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *q = grp + b * Q8_0_QBYTES;
        const int8_t *qa = a->q + b * QK;
        for (int l = 0; l < Q8_0_QBYTES; l += 64)
            prefetch(q, PREFETCH_COLUMNS * Q8_0_QBYTES + (uint64_t)l);
        prefetch(scales, 32 * (b + PREFETCH_COLUMNS));
        __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
        /* unrolled: the chunks are independent but for the accumulators */
        #pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i av = bcast4(qa + 4 * c);
            __m256i w0 = load32(q + 64 * c), w1 = load32(q + 64 * c + 32);
            __m256i p0 = _mm256_maddubs_epi16(_mm256_abs_epi8(w0), _mm256_sign_epi8(av, w0));
            __m256i p1 = _mm256_maddubs_epi16(_mm256_abs_epi8(w1), _mm256_sign_epi8(av, w1));
            i0 = _mm256_add_epi32(i0, _mm256_madd_epi16(p0, ones));
            i1 = _mm256_add_epi32(i1, _mm256_madd_epi16(p1, ones));
        }
        __m256 da = _mm256_set1_ps(a->d[b]);
        __m256 s0 = _mm256_mul_ps(load_scales8(scales + 32 * b), da);
        __m256 s1 = _mm256_mul_ps(load_scales8(scales + 32 * b + 16), da);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), s0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), s1, acc1);
    }
    *lo = acc0;
    *hi = acc1;
}

/* n Q4_0 groups (n = 1, 2 or 4, a constant after inlining) walked together,
 * block column by block column, so that n far-apart DRAM streams are in
 * flight at once (see STREAMS). Each group's arithmetic is exactly that of
 * one group alone; only the activation loads are shared. Offset trick: the
 * nibble q (0..15) times a, summed, minus 8 * sum_a. An int16 lane collects
 * 2 products per vpmaddubsw, 2 of those (low and high nibbles) per chunk
 * and 4 chunks: 16 products of at most 15 * 128 = 1920, so |sum| <= 30720
 * < 32767 and nothing saturates before the one widening vpmaddwd per
 * block. */
AVX2 static inline __attribute__((always_inline)) void
groups_q4_0(const uint8_t *const *grp, int n, uint64_t nb, const struct q8_act *a, __m256 *lo,
            __m256 *hi)
{
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f);
    const uint8_t *scales[4];
    __m256 acc0[4], acc1[4];
    #pragma GCC unroll 4
    for (int k = 0; k < n; k++) {
        scales[k] = grp[k] + nb * Q4_0_QBYTES;
        acc0[k] = acc1[k] = _mm256_setzero_ps();
    }
    for (uint64_t b = 0; b < nb; b++) {
        const int8_t *qa = a->q + b * QK;
        __m256i h0[4], h1[4];
        #pragma GCC unroll 4
        for (int k = 0; k < n; k++) {
            const uint8_t *q = grp[k] + b * Q4_0_QBYTES;
            for (int l = 0; l < Q4_0_QBYTES; l += 64)
                prefetch(q, PREFETCH_COLUMNS * Q4_0_QBYTES + (uint64_t)l);
            prefetch(scales[k], 32 * (b + PREFETCH_COLUMNS));
            h0[k] = h1[k] = _mm256_setzero_si256();
        }
        /* unrolled: the chunks are independent but for the accumulators */
        #pragma GCC unroll 8
        for (int c = 0; c < 4; c++) {
            __m256i alo = bcast4(qa + 8 * c), ahi = bcast4(qa + 8 * c + 4);
            #pragma GCC unroll 4
            for (int k = 0; k < n; k++) {
                const uint8_t *q = grp[k] + b * Q4_0_QBYTES;
                __m256i w0 = load32(q + 64 * c), w1 = load32(q + 64 * c + 32);
                __m256i p0 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(_mm256_and_si256(w0, m4), alo),
                    _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w0, 4), m4), ahi));
                __m256i p1 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(_mm256_and_si256(w1, m4), alo),
                    _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w1, 4), m4), ahi));
                h0[k] = _mm256_add_epi16(h0[k], p0);
                h1[k] = _mm256_add_epi16(h1[k], p1);
            }
        }
        __m256i off = _mm256_set1_epi32(8 * a->sum[b]);
        __m256 da = _mm256_set1_ps(a->d[b]);
        #pragma GCC unroll 4
        for (int k = 0; k < n; k++) {
            __m256i i0 = _mm256_sub_epi32(_mm256_madd_epi16(h0[k], ones), off);
            __m256i i1 = _mm256_sub_epi32(_mm256_madd_epi16(h1[k], ones), off);
            __m256 s0 = _mm256_mul_ps(load_scales8(scales[k] + 32 * b), da);
            __m256 s1 = _mm256_mul_ps(load_scales8(scales[k] + 32 * b + 16), da);
            acc0[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), s0, acc0[k]);
            acc1[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), s1, acc1[k]);
        }
    }
    #pragma GCC unroll 4
    for (int k = 0; k < n; k++) {
        lo[k] = acc0[k];
        hi[k] = acc1[k];
    }
}

AVX2 static void matvec_q8_0_avx2(float *out, const void *w, const struct q8_act *a,
                                  uint64_t cols, uint64_t r0, uint64_t r1)
{
    uint64_t nb = cols / QK, stride = nb * (Q8_0_QBYTES + 2 * ROW_GROUP);
    for (uint64_t g = r0 / ROW_GROUP; g * ROW_GROUP < r1; g++) {
        __m256 lo, hi;
        group_q8_0((const uint8_t *)w + g * stride, nb, a, &lo, &hi);
        store_group(out, lo, hi, g, r0, r1);
    }
    /* gcc 12 emits no vzeroupper here (it does in the other entry points);
     * leaving the upper ymm halves dirty made the caller's SSE code (expf in
     * the FFN) about 20x slower on the Zen 3 development machine. */
    _mm256_zeroupper();
}

AVX2 static void matvec_q4_0_avx2(float *out, const void *w, const struct q8_act *a,
                                  uint64_t cols, uint64_t r0, uint64_t r1)
{
    uint64_t nb = cols / QK, stride = nb * (Q4_0_QBYTES + 2 * ROW_GROUP);
    uint64_t g0 = r0 / ROW_GROUP, g1 = (r1 + ROW_GROUP - 1) / ROW_GROUP;
    uint64_t len = g1 > g0 ? (g1 - g0) / STREAMS : 0;
    const uint8_t *base = w;
    for (uint64_t i = 0; i < len; i++) {
        const uint8_t *grp[STREAMS];
        __m256 lo[STREAMS], hi[STREAMS];
        for (int k = 0; k < STREAMS; k++)
            grp[k] = base + (g0 + (uint64_t)k * len + i) * stride;
        groups_q4_0(grp, STREAMS, nb, a, lo, hi);
        for (int k = 0; k < STREAMS; k++)
            store_group(out, lo[k], hi[k], g0 + (uint64_t)k * len + i, r0, r1);
    }
    for (uint64_t g = g0 + STREAMS * len; g < g1; g++) {
        const uint8_t *grp = base + g * stride;
        __m256 lo, hi;
        groups_q4_0(&grp, 1, nb, a, &lo, &hi);
        store_group(out, lo, hi, g, r0, r1);
    }
    _mm256_zeroupper();
}

/* ---- batched products (prompt prefill) ---------------------------------
 * A tile is 8 rows (one ymm half of a 16-row group) x GEMM_TOKENS tokens:
 * per block column each 32-byte weight load, and its unpacking, serves
 * every token of the tile, while each token keeps its int block
 * accumulator and its f32 accumulator in registers (8 of the 16 ymm with
 * 4 tokens; the unpacked weights and constants take the rest). Per output
 * the arithmetic is exactly matvec's: the same exact int32 block dot, then
 * one f32 multiply d_w * d_a and one FMA per block, in block order.
 *
 * Loop order: token blocks, then the half groups of [r0, r1), then the
 * tiles of the token block; a half group's weights (tens of KB) stay in
 * L1/L2 while the tiles pass over them, and the activations stream from
 * L2/L3. Token blocks are capped at GEMM_ACT_BYTES of activations, so a
 * very long prompt does not push them out of the last-level cache; smaller
 * blocks, which re-read the weights more often, were slower. Measured on
 * the development machine (Zen 3, one thread, Q4_0, best of 4 x 15 runs,
 * GOP/s): blocks of 64 KB / 1 MB / 4 MB: 120 / 151 / 155 (2048 x 8192, 256
 * tokens); 2 / 3 / 4 / 5 tokens per tile: 130 / 148 / 153 / 152 (2048 x
 * 2048, 64 tokens); tiles of 16 rows x 2 / 3 / 4 tokens, sharing each
 * activation broadcast between both halves: 135 / 94 / 99. Figures:
 * docs/KERNELS.md, "GEMM kernels". */
#define GEMM_TOKENS 4
#define GEMM_ACT_BYTES (4u << 20)

/* Tokens per token block: a multiple of GEMM_TOKENS whose int8
 * activations fit GEMM_ACT_BYTES (at least one tile). */
static uint64_t gemm_token_block(uint64_t cols)
{
    uint64_t n = GEMM_ACT_BYTES / cols / GEMM_TOKENS * GEMM_TOKENS;
    return n ? n : GEMM_TOKENS;
}

/* Stores the 8 results v of one tile row set at p: all of them, or the
 * first n (a tail group: the padded rows and rows past r1 stay untouched). */
AVX2 static inline void store_rows8(float *p, __m256 v, int n)
{
    if (n == 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), v);
}

/* One Q4_0 tile: rows 8 * half .. + 7 of the group at grp, tokens t0 ..
 * t0 + n - 1 (n a constant after inlining), results to out rows from
 * row (the tile's first row), n_rows of them. Each token's int16 lanes
 * start at the block's q4_start (kernels.h): the low lane of a row's
 * 32-bit lane takes the q at k % 4 in {0, 1}, the high one those at
 * {2, 3}, and each starts at -8 times the sum of its 16 q. So after the
 * chunks the lane pair holds sum (q_w - 8) * q_a, and vpmaddwd gives the
 * block's int32 dot with the offset already in. Bound: at every step a
 * lane is 16 terms, each a product (q_w - 8) * q_a already added or a
 * -8 * q_a still pending, each at most 8 * 127 in magnitude: 16256 <
 * 32767, and a vpmaddubsw pair sum is at most 2 * 15 * 127; so nothing
 * saturates or wraps and the result is exact. Against the previous form
 * (start at 0, subtract 8 * sum after vpmaddwd), both in one process and
 * called alternately, one thread, 64 tokens, medians of 400 / 100 / 60
 * calls, GOP/s: 256 x 2048 161.7 -> 170.8 (again: 160.6 -> 169.3),
 * 2048 x 2048 157.1 -> 164.4, 2048 x 8192 151.1 -> 159.8.
 *
 * The chunk loop is kept rolled on purpose: fully unrolled, gcc 12
 * reassociates each token's chain of adds into a tree at the end of the
 * block, keeping all 32 products alive, and spills them; rolled, every
 * add must wait for its iteration. Measured (2048 x 2048, 64 tokens, one
 * thread, best of 5 x 15 runs): 118 -> 150 GOP/s. */
AVX2 static inline __attribute__((always_inline)) void
tile_q4_0(float *out, uint64_t ldo, uint64_t row, int n_rows, const uint8_t *grp, int half,
          uint64_t nb, const struct q8_act *a, uint64_t cols, uint64_t t0, int n)
{
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f);
    const uint8_t *quants = grp + 32 * half, *scales = grp + nb * Q4_0_QBYTES + 16 * half;
    const int8_t *qa = a->q + t0 * cols;
    const float *da = a->d + t0 * nb;
    const int32_t *start = a->q4_start + t0 * nb;
    __m256 acc[GEMM_TOKENS];
    #pragma GCC unroll 4
    for (int k = 0; k < n; k++)
        acc[k] = _mm256_setzero_ps();
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *q = quants + b * Q4_0_QBYTES;
        const int8_t *ab = qa + b * QK;
        __m256i h[GEMM_TOKENS];
        #pragma GCC unroll 4
        for (int k = 0; k < n; k++)
            h[k] = _mm256_set1_epi32(start[k * nb + b]);
        #pragma GCC unroll 1
        for (int c = 0; c < 4; c++) {
            __m256i v = load32(q + 64 * c);
            __m256i lo = _mm256_and_si256(v, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            #pragma GCC unroll 4
            for (int k = 0; k < n; k++) {
                const int8_t *ak = ab + k * cols + 8 * c;
                __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(ak)),
                                             _mm256_maddubs_epi16(hi, bcast4(ak + 4)));
                h[k] = _mm256_add_epi16(h[k], p);
            }
        }
        __m256 ws = load_scales8(scales + 32 * b);
        #pragma GCC unroll 4
        for (int k = 0; k < n; k++) {
            __m256i i = _mm256_madd_epi16(h[k], ones);
            __m256 s = _mm256_mul_ps(ws, _mm256_set1_ps(da[k * nb + b]));
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), s, acc[k]);
        }
    }
    #pragma GCC unroll 4
    for (int k = 0; k < n; k++)
        store_rows8(out + (t0 + k) * ldo + row, acc[k], n_rows);
}

/* One Q8_0 tile, as tile_q4_0 (chunk loop rolled for the same reason).
 * Sign trick of group_q8_0: |w| (unsigned, shared by the tile's tokens)
 * times a * sign(w); a pair sum is at most 2 * 128 * 127 < 32767, and
 * each chunk's pairs are widened to int32 at once. */
AVX2 static inline __attribute__((always_inline)) void
tile_q8_0(float *out, uint64_t ldo, uint64_t row, int n_rows, const uint8_t *grp, int half,
          uint64_t nb, const struct q8_act *a, uint64_t cols, uint64_t t0, int n)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *quants = grp + 32 * half, *scales = grp + nb * Q8_0_QBYTES + 16 * half;
    const int8_t *qa = a->q + t0 * cols;
    const float *da = a->d + t0 * nb;
    __m256 acc[GEMM_TOKENS];
    #pragma GCC unroll 4
    for (int k = 0; k < n; k++)
        acc[k] = _mm256_setzero_ps();
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *q = quants + b * Q8_0_QBYTES;
        const int8_t *ab = qa + b * QK;
        __m256i i[GEMM_TOKENS];
        #pragma GCC unroll 4
        for (int k = 0; k < n; k++)
            i[k] = _mm256_setzero_si256();
        #pragma GCC unroll 1
        for (int c = 0; c < 8; c++) {
            __m256i v = load32(q + 64 * c), u = _mm256_abs_epi8(v);
            #pragma GCC unroll 4
            for (int k = 0; k < n; k++) {
                __m256i av = bcast4(ab + k * cols + 4 * c);
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(av, v)),
                                              ones);
                i[k] = _mm256_add_epi32(i[k], p);
            }
        }
        __m256 ws = load_scales8(scales + 32 * b);
        #pragma GCC unroll 4
        for (int k = 0; k < n; k++) {
            __m256 s = _mm256_mul_ps(ws, _mm256_set1_ps(da[k * nb + b]));
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i[k]), s, acc[k]);
        }
    }
    #pragma GCC unroll 4
    for (int k = 0; k < n; k++)
        store_rows8(out + (t0 + k) * ldo + row, acc[k], n_rows);
}

/* Either tile, by type (a constant after inlining). */
AVX2 static inline __attribute__((always_inline)) void
tile_packed(int is_q4, float *out, uint64_t ldo, uint64_t row, int n_rows, const uint8_t *grp,
            int half, uint64_t nb, const struct q8_act *a, uint64_t cols, uint64_t t0, int n)
{
    if (is_q4)
        tile_q4_0(out, ldo, row, n_rows, grp, half, nb, a, cols, t0, n);
    else
        tile_q8_0(out, ldo, row, n_rows, grp, half, nb, a, cols, t0, n);
}

/* Token blocks, then the half groups of [r0, r1) (a half wholly past r1 is
 * skipped), then tiles of GEMM_TOKENS (4) tokens and one tile of the 1..3
 * left. */
AVX2 static inline __attribute__((always_inline)) void
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
            for (int half = 0; half < 2; half++) {
                uint64_t row = g * ROW_GROUP + 8u * (unsigned)half;
                if (row >= r1)
                    break;
                int n_rows = r1 - row < 8 ? (int)(r1 - row) : 8;
                uint64_t t = tb;
                for (; t + GEMM_TOKENS <= te; t += GEMM_TOKENS)
                    tile_packed(is_q4, out, ldo, row, n_rows, grp, half, nb, a, cols, t,
                                GEMM_TOKENS);
                if (te - t == 3)
                    tile_packed(is_q4, out, ldo, row, n_rows, grp, half, nb, a, cols, t, 3);
                else if (te - t == 2)
                    tile_packed(is_q4, out, ldo, row, n_rows, grp, half, nb, a, cols, t, 2);
                else if (te - t == 1)
                    tile_packed(is_q4, out, ldo, row, n_rows, grp, half, nb, a, cols, t, 1);
            }
        }
    }
}

AVX2 static void gemm_q4_0_avx2(float *out, uint64_t ldo, const void *w, const struct q8_act *a,
                                uint32_t n_tok, uint64_t cols, uint64_t r0, uint64_t r1)
{
    gemm_packed(1, out, ldo, w, a, n_tok, cols, r0, r1);
    _mm256_zeroupper(); /* see matvec_q8_0_avx2 */
}

AVX2 static void gemm_q8_0_avx2(float *out, uint64_t ldo, const void *w, const struct q8_act *a,
                                uint32_t n_tok, uint64_t cols, uint64_t r0, uint64_t r1)
{
    gemm_packed(0, out, ldo, w, a, n_tok, cols, r0, r1);
    _mm256_zeroupper(); /* see matvec_q8_0_avx2 */
}

/* F32 tiles: F32_ROWS rows x F32_TOKENS tokens, each output with the two
 * ymm of partial sums f32_rows keeps (columns c .. c + 15 feed lanes 0..7
 * of the first and 0..7 of the second), updated by the same FMAs in the
 * same column order, and the same tail (masked loads give 0, and
 * fma(0, 0, s) = s as s is never -0) and tree; so each output is
 * matvec_f32_avx2's. 2 x 3 uses 12 accumulators, 2 weight and 1
 * activation register per half step. Tokens are walked in blocks of at
 * most GEMM_ACT_BYTES of activations, as the packed types: 96 KB blocks
 * (which kept them in L2) re-read the far larger F32 weights more often and
 * were slower (2048 x 2048, 64 tokens, best of 3 x 15 runs: 31.6 against
 * 45.3 GFLOP/s). */
#define F32_ROWS 2
#define F32_TOKENS 3

AVX2 static inline __attribute__((always_inline)) void
tile_f32(float *out, uint64_t ldo, const float *w, const float *x, uint64_t cols, uint64_t r,
         uint64_t t0, int nr, int nt)
{
    const float *wr = w + r * cols, *xt = x + t0 * cols;
    __m256 s[F32_ROWS][F32_TOKENS][2];
    #pragma GCC unroll 2
    for (int i = 0; i < nr; i++)
        #pragma GCC unroll 3
        for (int j = 0; j < nt; j++)
            s[i][j][0] = s[i][j][1] = _mm256_setzero_ps();
    uint64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256 wv[F32_ROWS];
            #pragma GCC unroll 2
            for (int i = 0; i < nr; i++)
                wv[i] = _mm256_loadu_ps(wr + i * cols + c + 8 * h);
            #pragma GCC unroll 3
            for (int j = 0; j < nt; j++) {
                __m256 xv = _mm256_loadu_ps(xt + j * cols + c + 8 * h);
                #pragma GCC unroll 2
                for (int i = 0; i < nr; i++)
                    s[i][j][h] = _mm256_fmadd_ps(wv[i], xv, s[i][j][h]);
            }
        }
    }
    if (c < cols) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        int rem = (int)(cols - c);
        __m256i m[2] = {_mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lane),
                        _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 8), lane)};
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256 wv[F32_ROWS];
            #pragma GCC unroll 2
            for (int i = 0; i < nr; i++)
                wv[i] = _mm256_maskload_ps(wr + i * cols + c + 8 * h, m[h]);
            #pragma GCC unroll 3
            for (int j = 0; j < nt; j++) {
                __m256 xv = _mm256_maskload_ps(xt + j * cols + c + 8 * h, m[h]);
                #pragma GCC unroll 2
                for (int i = 0; i < nr; i++)
                    s[i][j][h] = _mm256_fmadd_ps(wv[i], xv, s[i][j][h]);
            }
        }
    }
    #pragma GCC unroll 2
    for (int i = 0; i < nr; i++)
        #pragma GCC unroll 3
        for (int j = 0; j < nt; j++)
            out[(t0 + j) * ldo + r + i] = f32_tree(s[i][j][0], s[i][j][1]);
}

/* All tokens t0 .. t0 + nt - 1 against rows [r0, r1), rows in pairs. */
AVX2 static inline __attribute__((always_inline)) void
rows_f32(float *out, uint64_t ldo, const float *w, const float *x, uint64_t cols, uint64_t r0,
         uint64_t r1, uint64_t t0, int nt)
{
    uint64_t r = r0;
    for (; r + F32_ROWS <= r1; r += F32_ROWS)
        tile_f32(out, ldo, w, x, cols, r, t0, F32_ROWS, nt);
    if (r < r1)
        tile_f32(out, ldo, w, x, cols, r, t0, 1, nt);
}

AVX2 static void gemm_f32_avx2(float *out, uint64_t ldo, const float *w, const float *x,
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
            if (te - t == 2)
                rows_f32(out, ldo, w, x, cols, r, re, t, 2);
            else if (te - t == 1)
                rows_f32(out, ldo, w, x, cols, r, re, t, 1);
        }
    }
    _mm256_zeroupper(); /* see matvec_q8_0_avx2 */
}

/* The int8 peak probe (kernels.h): 8 triples vpmaddubsw + vpmaddwd +
 * vpaddd per iteration on 4 accumulators, from registers only. The empty
 * asm statements make the weight-like operands opaque each iteration, so
 * the compiler cannot hoist the products out of the loop or share them
 * between accumulators; they emit no instruction. One vpmaddubsw is 32
 * byte multiplies whose results vpmaddubsw, vpmaddwd and vpaddd add up:
 * 32 multiply-adds, counted as 64 operations. */
AVX2 static uint64_t int8_peak_loop_avx2(uint64_t n_iter, int32_t *sink)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i s0 = _mm256_set1_epi8(3), s1 = _mm256_set1_epi8(-5);
    __m256i acc[4], u[4];
    for (int k = 0; k < 4; k++) {
        acc[k] = _mm256_setzero_si256();
        u[k] = _mm256_set1_epi8((char)(k + 1));
    }
    for (uint64_t it = 0; it < n_iter; it++) {
        #pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __asm__("" : "+x"(u[k]));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], s0), ones);
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], s1), ones);
            acc[k] = _mm256_add_epi32(_mm256_add_epi32(acc[k], p0), p1);
        }
    }
    __m256i t = _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]),
                                 _mm256_add_epi32(acc[2], acc[3]));
    __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0x4e));
    t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0xb1));
    *sink = _mm_cvtsi128_si32(t4);
    _mm256_zeroupper(); /* see matvec_q8_0_avx2 */
    return n_iter * 8u * 64u;
}

const struct kernels kernels_avx2 = {
    .name = "avx2",
    .matvec_f32 = matvec_f32_avx2,
    .matvec_q8_0 = matvec_q8_0_avx2,
    .matvec_q4_0 = matvec_q4_0_avx2,
    .quantize_act = quantize_act_avx2,
    .gemm_f32 = gemm_f32_avx2,
    .gemm_q8_0 = gemm_q8_0_avx2,
    .gemm_q4_0 = gemm_q4_0_avx2,
    .int8_peak_loop = int8_peak_loop_avx2,
};

#else

/* Not x86-64: no functions; kernels_select refuses this table. */
const struct kernels kernels_avx2 = {.name = "avx2"};

#endif
