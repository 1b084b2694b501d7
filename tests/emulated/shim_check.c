/* tests/emulated/shim_check.c - checks the emulated intrinsics that
 * kernels/avx512.c uses (avx512_shim.h: SIMDe's and the hand-written ones)
 * against results worked out by hand from the Intel SDM's definition of
 * each instruction, on inputs where a plausible wrong emulation would
 * differ: rounding ties, out-of-range conversions, NaN and signed-zero
 * operand order, unsigned x signed bytes, fused vs unfused multiply-add,
 * lane order. Prints one line per failure and ends with
 * "shim_check: N checks, N failed"; exit status 1 if any failed.
 *
 * It does not test the kernels (tests/test_kernels.c does, with this
 * emulation standing in for AVX-512) nor run anything natively. */
#include "avx512_shim.h"

#include <limits.h>

static int checks, failures;

static void check(int ok, const char *what)
{
    checks++;
    if (!ok) {
        failures++;
        printf("  FAIL shim_check: %s\n", what);
    }
}

static float f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* 16 float lanes, lane i = f[i]; and back. */
static __m512 ps16(const float f[16])
{
    __m512 v;
    memcpy(&v, f, sizeof v);
    return v;
}

static void lanes16(__m512 v, float f[16])
{
    memcpy(f, &v, sizeof v);
}

static __m512i epi32x16(const int32_t d[16])
{
    __m512i v;
    memcpy(&v, d, sizeof v);
    return v;
}

static void fused_multiply_add(void)
{
    /* (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: rounding the product first loses
     * the 2^-24 (a tie to even), so only a fused FMA leaves 2^-24 */
    float a = 1.0f + ldexpf(1.0f, -12), c = -(1.0f + ldexpf(1.0f, -11));
    float fa[16], fc[16], out[16];
    for (int i = 0; i < 16; i++) {
        fa[i] = a;
        fc[i] = c;
    }
    lanes16(_mm512_fmadd_ps(ps16(fa), ps16(fa), ps16(fc)), out);
    int ok = 1;
    for (int i = 0; i < 16; i++)
        ok &= out[i] == ldexpf(1.0f, -24);
    check(ok, "_mm512_fmadd_ps must round once (fused)");

    /* mask3: lanes off in k keep c bit for bit, here a NaN payload */
    fc[3] = f32(0x7fc01234u);
    lanes16(_mm512_mask3_fmadd_ps(ps16(fa), ps16(fa), ps16(fc), (__mmask16)0x00f0), out);
    ok = bits(out[3]) == 0x7fc01234u && bits(out[0]) == bits(c) && bits(out[15]) == bits(c);
    for (int i = 4; i < 8; i++)
        ok &= out[i] == ldexpf(1.0f, -24);
    check(ok, "_mm512_mask3_fmadd_ps: fused where k is set, c elsewhere");
}

static void masked_load(void)
{
    /* exactly 3 floats: reading a 4th would be an ASan error */
    float *p = malloc(3 * sizeof(float));
    if (!p) {
        check(0, "out of memory");
        return;
    }
    p[0] = 1.5f;
    p[1] = -2.0f;
    p[2] = 3.0f;
    float out[16];
    lanes16(_mm512_maskz_loadu_ps((__mmask16)0x5, p), out);
    int ok = out[0] == 1.5f && bits(out[1]) == 0 && out[2] == 3.0f;
    for (int i = 3; i < 16; i++)
        ok &= bits(out[i]) == 0;
    check(ok, "_mm512_maskz_loadu_ps: masked lanes +0, only set lanes read");
    free(p);
}

/* VPDPBUSD: per int32 lane, src + sum of 4 products of an UNSIGNED byte of
 * a and the SIGNED byte of b at the same position, no saturation. */
static void dot_product_bytes(void)
{
    int32_t src[16], out[16];
    for (int i = 0; i < 16; i++)
        src[i] = 1000;
    __m512i s = epi32x16(src);
    memcpy(out, (__m512i[]){_mm512_dpbusd_epi32(s, _mm512_set1_epi8((char)0xff),
                                                _mm512_set1_epi8(1))},
           sizeof out);
    check(out[0] == 1000 + 4 * 255 && out[15] == 1000 + 4 * 255,
          "_mm512_dpbusd_epi32: a is unsigned (0xff = 255)");
    memcpy(out, (__m512i[]){_mm512_dpbusd_epi32(s, _mm512_set1_epi8(1),
                                                _mm512_set1_epi8((char)0xff))},
           sizeof out);
    check(out[0] == 1000 - 4 && out[9] == 1000 - 4,
          "_mm512_dpbusd_epi32: b is signed (0xff = -1)");
    memcpy(out, (__m512i[]){_mm512_dpbusd_epi32(s, _mm512_set1_epi8((char)0xff),
                                                _mm512_set1_epi8(127))},
           sizeof out);
    check(out[0] == 1000 + 4 * 255 * 127, "_mm512_dpbusd_epi32: no 16-bit saturation");
    /* positions: lane bytes a = 1,2,3,4 and b = 5,6,7,8 -> 5+12+21+32 */
    memcpy(out, (__m512i[]){_mm512_dpbusd_epi32(s, _mm512_set1_epi32(0x04030201),
                                                _mm512_set1_epi32(0x08070605))},
           sizeof out);
    check(out[0] == 1070 && out[7] == 1070, "_mm512_dpbusd_epi32: bytes pair by position");
    for (int i = 0; i < 16; i++)
        src[i] = INT_MAX;
    memcpy(out, (__m512i[]){_mm512_dpbusd_epi32(epi32x16(src), _mm512_set1_epi8(1),
                                                _mm512_set1_epi8(1))},
           sizeof out);
    check(out[0] == INT_MIN + 3, "_mm512_dpbusd_epi32: the int32 sum wraps");
}

static void conversions(void)
{
    /* VCVTPS2DQ, nearest even; NaN and out of range -> 0x80000000 */
    float in[16] = {2.5f, 3.5f, -2.5f, 0.5f, 1.5f, -0.5f, NAN, 3e9f,
                    -3e9f, 2147483520.0f, -2147483648.0f, 2147483648.0f, INFINITY, 1e-30f,
                    -1.5f, 126.5f};
    static const int32_t want[16] = {2, 4, -2, 0, 2, 0, INT_MIN, INT_MIN,
                                     INT_MIN, 2147483520, INT_MIN, INT_MIN, INT_MIN, 0,
                                     -2, 126};
    int32_t got[16];
    memcpy(got, (__m512i[]){_mm512_cvtps_epi32(ps16(in))}, sizeof got);
    check(memcmp(got, want, sizeof got) == 0,
          "_mm512_cvtps_epi32: ties to even, 0x80000000 for NaN and out of range");

    /* VCVTDQ2PS, nearest even */
    int32_t d[16] = {16777217, 16777219, -2147483647, 7, -1, 0, 2147483647, 100};
    float f[16];
    lanes16(_mm512_cvtepi32_ps(epi32x16(d)), f);
    check(f[0] == 16777216.0f && f[1] == 16777220.0f && f[2] == -2147483648.0f &&
              f[3] == 7.0f && f[4] == -1.0f && bits(f[5]) == 0 && f[6] == 2147483648.0f,
          "_mm512_cvtepi32_ps: rounds to nearest even");

    /* VPMOVDB truncates (VPMOVSDB would saturate) */
    int32_t t[16] = {0x12345680, 300, -129, -1, 127, -128, 255, 256};
    int8_t b[16];
    memcpy(b, (__m128i[]){_mm512_cvtepi32_epi8(epi32x16(t))}, sizeof b);
    check(b[0] == -128 && b[1] == 44 && b[2] == 127 && b[3] == -1 && b[4] == 127 &&
              b[5] == -128 && b[6] == -1 && b[7] == 0 && b[8] == 0,
          "_mm512_cvtepi32_epi8: keeps the low byte of each lane");
}

static void half_precision(void)
{
    /* VCVTPS2PH, imm8 = nearest even: 1 + 2^-11 is a tie between 0x3c00 and
     * 0x3c01 (even: 0x3c00); 65520 ties 65504 and inf (even: inf); 2^-25
     * ties 0 and the smallest subnormal (even: 0) */
    uint16_t h[8];
    __m128 a = _mm_setr_ps(1.0f + ldexpf(1.0f, -11), 1.0f + 3.0f * ldexpf(1.0f, -11),
                           65519.0f, 65520.0f);
    memcpy(h, (__m128i[]){_mm_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT)}, sizeof h);
    check(h[0] == 0x3c00 && h[1] == 0x3c02 && h[2] == 0x7bff && h[3] == 0x7c00 && h[4] == 0 &&
              h[7] == 0,
          "_mm_cvtps_ph: nearest even at 1 and at the overflow edge, upper lanes 0");
    a = _mm_setr_ps(ldexpf(1.0f, -25), ldexpf(1.0f, -25) * 1.0001f, ldexpf(1.0f, -14), -0.0f);
    memcpy(h, (__m128i[]){_mm_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT)}, sizeof h);
    check(h[0] == 0 && h[1] == 0x0001 && h[2] == 0x0400 && h[3] == 0x8000,
          "_mm_cvtps_ph: subnormal results and -0");
    a = _mm_setr_ps(INFINITY, f32(0xffc00000u), f32(0x7f812345u), 3e38f);
    memcpy(h, (__m128i[]){_mm_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT)}, sizeof h);
    check(h[0] == 0x7c00 && h[1] == 0xfe00 && h[2] == 0x7e09 && h[3] == 0x7c00,
          "_mm_cvtps_ph: inf, NaN sign and payload kept and made quiet");

    /* VCVTPH2PS: exact */
    uint16_t in[16] = {0x0001, 0x3555, 0xfbff, 0x7c00, 0x8000, 0x03ff, 0x7d00, 0x3c00};
    for (int i = 8; i < 16; i++)
        in[i] = (uint16_t)(0x4000 + i); /* lane order */
    __m128i h4;
    memcpy(&h4, in, sizeof h4);
    float f4[4];
    memcpy(f4, (__m128[]){_mm_cvtph_ps(h4)}, sizeof f4);
    check(f4[0] == ldexpf(1.0f, -24) && f4[1] == 0.333251953125f && f4[2] == -65504.0f &&
              f4[3] == INFINITY,
          "_mm_cvtph_ps: subnormal, normal, max, inf");
    __m256i h16;
    memcpy(&h16, in, sizeof h16);
    float f[16];
    lanes16(_mm512_cvtph_ps(h16), f);
    int ok = bits(f[4]) == 0x80000000u && f[5] == 1023.0f * ldexpf(1.0f, -24) &&
             bits(f[6]) == 0x7fe00000u && f[7] == 1.0f;
    for (int i = 8; i < 16; i++)
        ok &= f[i] == 2.0f + (float)i / 512.0f;
    check(ok, "_mm512_cvtph_ps: -0, largest subnormal, signalling NaN made quiet, lane order");
}

/* MAXPS/MINPS return the SECOND operand when either is NaN or both are
 * zeros (SDM Vol. 2, MAXPS); VANDPS abs clears every sign bit. */
static void min_max_abs(void)
{
    float a[16] = {NAN, 1.0f, -0.0f, 0.0f, 2.0f, -3.0f};
    float b[16] = {1.0f, NAN, 0.0f, -0.0f, -5.0f, -1.0f};
    float mx[16], mn[16];
    lanes16(_mm512_max_ps(ps16(a), ps16(b)), mx);
    lanes16(_mm512_min_ps(ps16(a), ps16(b)), mn);
    check(mx[0] == 1.0f && isnan(mx[1]) && bits(mx[2]) == 0 && bits(mx[3]) == 0x80000000u &&
              mx[4] == 2.0f && mx[5] == -1.0f,
          "_mm512_max_ps: second operand on NaN and on +0/-0");
    check(mn[0] == 1.0f && isnan(mn[1]) && bits(mn[2]) == 0 && bits(mn[3]) == 0x80000000u &&
              mn[4] == -5.0f && mn[5] == -3.0f,
          "_mm512_min_ps: second operand on NaN and on +0/-0");

    float c[16] = {-0.0f, -INFINITY, f32(0xffc01234u), -2.5f, 3.0f};
    float r[16];
    lanes16(_mm512_abs_ps(ps16(c)), r);
    check(bits(r[0]) == 0 && r[1] == INFINITY && bits(r[2]) == 0x7fc01234u && r[3] == 2.5f &&
              r[4] == 3.0f,
          "_mm512_abs_ps: clears the sign bit of -0 and of NaN too");
}

static void reductions(void)
{
    int32_t d[16];
    for (int i = 0; i < 16; i++)
        d[i] = i + 1;
    check(_mm512_reduce_add_epi32(epi32x16(d)) == 136, "_mm512_reduce_add_epi32: sum");
    memset(d, 0, sizeof d);
    d[0] = INT_MAX;
    d[13] = 1;
    check(_mm512_reduce_add_epi32(epi32x16(d)) == INT_MIN, "_mm512_reduce_add_epi32: wraps");

    float f[16];
    for (int i = 0; i < 16; i++)
        f[i] = (float)((i * 7) % 16) - 20.0f;
    f[11] = 3.5f;
    check(_mm512_reduce_max_ps(ps16(f)) == 3.5f, "_mm512_reduce_max_ps: the largest lane");
}

/* The shuffles of avx512.c's f32_tree, and the 16-bit shift of its Q4_0
 * nibbles: lane i holds i, so each result names the lanes it came from. */
static void lane_order(void)
{
    float f[16];
    for (int i = 0; i < 16; i++)
        f[i] = (float)i;
    __m512 v = ps16(f);
    float hi[8], lo[8], q[4];
    memcpy(hi, (__m256[]){_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))},
           sizeof hi);
    memcpy(lo, (__m256[]){_mm512_castps512_ps256(v)}, sizeof lo);
    check(hi[0] == 8.0f && hi[7] == 15.0f && lo[0] == 0.0f && lo[7] == 7.0f,
          "_mm512_extractf64x4_pd(.., 1) is lanes 8..15, the cast lanes 0..7");
    __m256 u = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    memcpy(q, (__m128[]){_mm256_extractf128_ps(u, 1)}, sizeof q);
    check(q[0] == 4.0f && q[3] == 7.0f, "_mm256_extractf128_ps(.., 1) is lanes 4..7");
    __m128 w = _mm_setr_ps(10, 11, 12, 13);
    memcpy(q, (__m128[]){_mm_movehl_ps(w, w)}, sizeof q);
    check(q[0] == 12.0f && q[1] == 13.0f, "_mm_movehl_ps: lanes 2, 3 to 0, 1");
    memcpy(q, (__m128[]){_mm_movehdup_ps(w)}, sizeof q);
    check(q[0] == 11.0f && q[1] == 11.0f && q[2] == 13.0f, "_mm_movehdup_ps: odd lanes twice");
    memcpy(q, (__m128[]){_mm_add_ss(w, w)}, sizeof q);
    check(q[0] == 20.0f && q[1] == 11.0f, "_mm_add_ss: lane 0 only");

    /* 16-bit lanes: 0xf0f0 >> 4 = 0x0f0f; 0x0001 in a lane's upper half
     * must not shift into the lower 16-bit lane */
    uint16_t s[32], r[32];
    for (int i = 0; i < 32; i++)
        s[i] = (i % 2) ? 0x0001 : 0xf0f0;
    __m512i sv;
    memcpy(&sv, s, sizeof sv);
    memcpy(r, (__m512i[]){_mm512_srli_epi16(sv, 4)}, sizeof r);
    check(r[0] == 0x0f0f && r[1] == 0 && r[30] == 0x0f0f && r[31] == 0,
          "_mm512_srli_epi16: shifts within 16-bit lanes");
}

int main(void)
{
    fused_multiply_add();
    masked_load();
    dot_product_bytes();
    conversions();
    half_precision();
    min_max_abs();
    reductions();
    lane_order();
    printf("shim_check: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
