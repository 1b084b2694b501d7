/* tests/test_quant.c - tests for quant.c: fp16 and bf16 conversion (every
 * 16-bit pattern, rounding ties, overflow, NaN, subnormals), type names and
 * sizes, tensor byte sizes with overflow, and widening unaligned arrays.
 *
 * Expected values come from IEEE 754 definitions written out independently
 * here (exponent/fraction formulas, nearest-neighbour search), never from
 * earlier outputs of quant.c. Block quantization is not tested here. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../format.h"
#include "../quant.h"
#include "test.h"

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int half_is_nan(uint16_t h)
{
    return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
}

static int bf16_is_nan(uint16_t h)
{
    return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
}

/* binary16 value from its definition (IEEE 754-2008 3.6: bias 15, 10
 * fraction bits, exponent 0 subnormal with scale 2^-14). */
static double half_by_definition(uint16_t h)
{
    int biased_exp = (h >> 10) & 0x1f;
    int frac = h & 0x3ff;
    double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (biased_exp == 31)
        return frac ? NAN : sign * INFINITY;
    if (biased_exp == 0)
        return sign * ldexp(frac, -24);
    return sign * ldexp(1.0 + frac / 1024.0, biased_exp - 15);
}

static void test_fp16_every_value(void)
{
    int bad_value = 0, bad_trip = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = fp16_to_f32(h);
        uint16_t back = f32_to_fp16(f);
        if (half_is_nan(h)) {
            /* NaN: stays NaN with its sign and payload; the quiet bit is set */
            CHECK(isnan(f) && !!signbit(f) == !!(h & 0x8000), "fp16 %04x -> %g", h, (double)f);
            CHECK(back == (h | 0x200u), "NaN fp16 %04x -> f32 -> %04x", h, back);
            continue;
        }
        double want = half_by_definition(h);
        if ((double)f != want || !!signbit(f) != !!(h & 0x8000)) {
            if (bad_value++ < 5)
                CHECK(0, "fp16 %04x -> %.9g, definition says %.9g", h, (double)f, want);
        }
        if (back != h) {
            if (bad_trip++ < 5)
                CHECK(0, "fp16 %04x -> %.9g -> %04x", h, (double)f, back);
        }
    }
    CHECK(bad_value == 0, "%d fp16 values differ from the definition", bad_value);
    CHECK(bad_trip == 0, "%d fp16 values do not round-trip", bad_trip);
}

static void test_fp16_known_values(void)
{
    static const struct {
        uint16_t h;
        float f;
    } known[] = {
        {0x3c00, 1.0f},           {0xc000, -2.0f},         {0x7bff, 65504.0f},
        {0x0400, 6.1035156e-05f}, {0x0001, 5.9604645e-08f}, {0x03ff, 6.0975552e-05f},
        {0x3555, 0.33325195f},    {0x7c00, INFINITY},      {0xfc00, -INFINITY},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        CHECK(fp16_to_f32(known[i].h) == known[i].f, "fp16 %04x -> %.9g, want %.9g",
              known[i].h, (double)fp16_to_f32(known[i].h), (double)known[i].f);
        CHECK(f32_to_fp16(known[i].f) == known[i].h, "%.9g -> fp16 %04x, want %04x",
              (double)known[i].f, f32_to_fp16(known[i].f), known[i].h);
    }
    CHECK(bits_of(fp16_to_f32(0x0000)) == 0x00000000u, "fp16 0000 is not +0");
    CHECK(bits_of(fp16_to_f32(0x8000)) == 0x80000000u, "fp16 8000 is not -0");
    CHECK(f32_to_fp16(0.0f) == 0x0000, "+0 -> %04x", f32_to_fp16(0.0f));
    CHECK(f32_to_fp16(-0.0f) == 0x8000, "-0 -> %04x", f32_to_fp16(-0.0f));
}

static void test_fp16_rounding(void)
{
    static const struct {
        float f;
        uint16_t h;
        const char *why;
    } cases[] = {
        {1.0f + 0x1p-11f, 0x3c00, "tie between 1 and 1+2^-10 goes to even 1"},
        {1.0f + 3 * 0x1p-11f, 0x3c02, "tie between 3c01 and 3c02 goes to even 3c02"},
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01, "just above the tie rounds up"},
        {1.0f + 0x1p-11f - 0x1p-23f, 0x3c00, "just below the tie rounds down"},
        {-(1.0f + 3 * 0x1p-11f), 0xbc02, "negative tie goes to even"},
        {2048.0f + 1.0f, 0x6800, "2049 is a tie between 2048 and 2050: even 2048"},
        {2048.0f + 3.0f, 0x6802, "2051 is a tie between 2050 and 2052: even 2052"},
        {0x1p-25f, 0x0000, "half the smallest subnormal ties to even zero"},
        {0x1p-25f + 0x1p-40f, 0x0001, "just above it rounds up to the smallest subnormal"},
        {3 * 0x1p-25f, 0x0002, "1.5 subnormal steps tie to even 2"},
        {5 * 0x1p-25f, 0x0002, "2.5 subnormal steps tie to even 2"},
        {0x1p-26f, 0x0000, "a quarter step rounds to zero"},
        {-0x1p-25f, 0x8000, "negative underflow keeps the sign"},
        {0x1p-14f - 0x1p-25f, 0x0400, "tie between 03ff and 0400 goes to even 0400"},
        {FLT_MIN, 0x0000, "float's smallest normal underflows"},
        {0x1p-149f, 0x0000, "float's smallest subnormal underflows"},
        {65519.0f, 0x7bff, "65519 rounds down to 65504"},
        {65520.0f, 0x7c00, "65520 is a tie whose even side is inf"},
        {-65520.0f, 0xfc00, "-65520 -> -inf"},
        {1e10f, 0x7c00, "1e10 overflows"},
        {FLT_MAX, 0x7c00, "FLT_MAX overflows"},
        {-FLT_MAX, 0xfc00, "-FLT_MAX overflows"},
        {INFINITY, 0x7c00, "inf"},
        {-INFINITY, 0xfc00, "-inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = f32_to_fp16(cases[i].f);
        CHECK(got == cases[i].h, "%a -> fp16 %04x, want %04x (%s)", (double)cases[i].f, got,
              cases[i].h, cases[i].why);
    }
}

static void test_fp16_nan(void)
{
    /* NaNs with payload only in the low 13 bits would become inf if the
     * payload were simply truncated. */
    static const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u,
                                    0x7fffffffu, 0xffffffffu, 0x7f801fffu, 0x7fa00000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = f32_to_fp16(float_of(nans[i]));
        CHECK(half_is_nan(h), "f32 NaN %08x -> fp16 %04x, not NaN", nans[i], h);
        CHECK((h & 0x200u) != 0, "f32 NaN %08x -> fp16 %04x, not quiet", nans[i], h);
        CHECK(!!(h & 0x8000u) == !!(nans[i] >> 31), "f32 NaN %08x -> fp16 %04x lost its sign",
              nans[i], h);
    }
    CHECK(half_is_nan(f32_to_fp16(NAN)), "NAN -> %04x", f32_to_fp16(NAN));
}

/* Correct rounding by search: the representable neighbours lo <= |f| < hi
 * (found by bisection over the monotonic bit patterns of positive values),
 * then the nearer one, the even pattern on a tie. Past the largest finite
 * value the next "value" is one step further, standing for inf. */
static uint16_t round_by_search(float f, float (*widen)(uint16_t), uint16_t max_finite)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    uint32_t lo = 0, hi = max_finite; /* invariant: widen(lo) <= a */
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if ((double)widen((uint16_t)mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    double vlo = widen((uint16_t)lo);
    double vhi = lo < max_finite ? (double)widen((uint16_t)(lo + 1))
                                 : vlo + (vlo - (double)widen((uint16_t)(lo - 1)));
    double dlo = a - vlo, dhi = vhi - a;
    uint32_t pick = dlo < dhi ? lo : dlo > dhi ? lo + 1 : (lo & 1 ? lo + 1 : lo);
    return (uint16_t)(sign | pick);
}

/* Random floats across each format's range and exact ties between
 * neighbours, compared with round_by_search. */
static void check_against_search(const char *what, uint16_t (*narrow)(float),
                                 float (*widen)(uint16_t), uint16_t max_finite, float limit)
{
    uint64_t rng = 12345;
    int bad = 0;
    for (int i = 0; i < 400000; i++) {
        float f;
        if (i % 2 == 0) {
            f = float_of((uint32_t)test_rand_u64(&rng)); /* any bits */
            if (isnan(f) || fabsf(f) > limit)
                continue;
        } else {
            /* a tie between two neighbours, or one float ulp either side of it */
            uint16_t h = (uint16_t)(test_rand_u64(&rng) % max_finite);
            double mid = ((double)widen(h) + (double)widen((uint16_t)(h + 1))) / 2;
            f = (float)mid;
            if ((double)f != mid)
                continue;
            int side = (int)(test_rand_u64(&rng) % 3);
            if (side == 1)
                f = nextafterf(f, INFINITY);
            else if (side == 2)
                f = nextafterf(f, 0);
            if (test_rand_u64(&rng) & 1)
                f = -f;
        }
        uint16_t got = narrow(f), want = round_by_search(f, widen, max_finite);
        if (got != want && bad++ < 5)
            CHECK(0, "%s: %a -> %04x, nearest-even is %04x", what, (double)f, got, want);
    }
    CHECK(bad == 0, "%s: %d random values rounded wrongly", what, bad);
}

static void test_fp16_random_rounding(void)
{
    /* 65520 and above overflow (tested above); stay below */
    check_against_search("fp16", f32_to_fp16, fp16_to_f32, 0x7bff, 65519.99f);
}

static void test_bf16_every_value(void)
{
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = bf16_to_f32(h);
        uint16_t back = f32_to_bf16(f);
        /* bf16 is by definition the top half of a binary32 */
        CHECK(bits_of(f) == ((uint32_t)h << 16), "bf16 %04x -> f32 bits %08x", h, bits_of(f));
        if (bf16_is_nan(h)) {
            CHECK(isnan(f) && back == (h | 0x40u), "NaN bf16 %04x -> f32 -> %04x", h, back);
            continue;
        }
        if (back != h && bad++ < 5)
            CHECK(0, "bf16 %04x -> %a -> %04x", h, (double)f, back);
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
}

static void test_bf16_rounding(void)
{
    static const struct {
        uint32_t f_bits;
        uint16_t h;
        const char *why;
    } cases[] = {
        {0x3f808000u, 0x3f80, "1 + 2^-8 is a tie: even 1"},
        {0x3f818000u, 0x3f82, "1 + 3*2^-8 is a tie: even 3f82"},
        {0x3f808001u, 0x3f81, "just above the tie rounds up"},
        {0x3f807fffu, 0x3f80, "just below the tie rounds down"},
        {0xbf818000u, 0xbf82, "negative tie goes to even"},
        {0x3fffffffu, 0x4000, "rounding carries into the exponent"},
        {0x7f7fffffu, 0x7f80, "FLT_MAX rounds up to inf"},
        {0x7f7f7fffu, 0x7f7f, "just below the tie with inf stays finite"},
        {0xff7fffffu, 0xff80, "-FLT_MAX rounds to -inf"},
        {0x7f800000u, 0x7f80, "inf"},
        {0xff800000u, 0xff80, "-inf"},
        {0x00008000u, 0x0000, "subnormal tie to even zero"},
        {0x00018000u, 0x0002, "subnormal tie to even 0002"},
        {0x00017fffu, 0x0001, "subnormal below the tie"},
        {0x007fffffu, 0x0080, "largest subnormal rounds up to the smallest normal"},
        {0x80008001u, 0x8001, "negative subnormal above the tie"},
        {0x80000000u, 0x8000, "-0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = f32_to_bf16(float_of(cases[i].f_bits));
        CHECK(got == cases[i].h, "f32 %08x -> bf16 %04x, want %04x (%s)", cases[i].f_bits, got,
              cases[i].h, cases[i].why);
    }
    CHECK(bf16_to_f32(0x0001) == 0x1p-133f, "smallest bf16 subnormal is %a",
          (double)bf16_to_f32(0x0001));
    check_against_search("bf16", f32_to_bf16, bf16_to_f32, 0x7f7f, FLT_MAX);
}

static void test_bf16_nan(void)
{
    /* 7fffffff and ffffffff would carry out of the top half when rounded;
     * 7f800001 and 7f807fff would truncate to inf. */
    static const uint32_t nans[] = {0x7fffffffu, 0xffffffffu, 0x7f800001u, 0xff800001u,
                                    0x7f807fffu, 0x7fc00000u, 0x7fbfffffu, 0x7f80ffffu,
                                    0xffbf8000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = f32_to_bf16(float_of(nans[i]));
        CHECK(bf16_is_nan(h), "f32 NaN %08x -> bf16 %04x, not NaN", nans[i], h);
        CHECK(!!(h & 0x8000u) == !!(nans[i] >> 31), "f32 NaN %08x -> bf16 %04x lost its sign",
              nans[i], h);
        CHECK((h & 0x7fu) == (((nans[i] >> 16) & 0x7fu) | 0x40u),
              "f32 NaN %08x -> bf16 %04x: payload not kept with the quiet bit", nans[i], h);
    }
}

static void test_type_names_and_sizes(void)
{
    CHECK(hearth_type_elem_bytes(HEARTH_F32) == 4, "f32 elem bytes");
    CHECK(hearth_type_elem_bytes(HEARTH_F16) == 2, "f16 elem bytes");
    CHECK(hearth_type_elem_bytes(HEARTH_BF16) == 2, "bf16 elem bytes");
    CHECK(hearth_type_elem_bytes(HEARTH_Q8_0) == 0, "q8_0 is a block type");
    CHECK(hearth_type_elem_bytes(HEARTH_Q4_0) == 0, "q4_0 is a block type");
    CHECK(hearth_type_elem_bytes(3) == 0, "type 3 is unknown");
    static const struct {
        uint32_t type;
        const char *name;
    } names[] = {{HEARTH_F32, "f32"},   {HEARTH_F16, "f16"},   {HEARTH_BF16, "bf16"},
                 {HEARTH_Q8_0, "q8_0"}, {HEARTH_Q4_0, "q4_0"}, {3, "unknown"},
                 {UINT32_MAX, "unknown"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK(strcmp(hearth_type_name(names[i].type), names[i].name) == 0,
              "type %u is named '%s', want '%s'", names[i].type, hearth_type_name(names[i].type),
              names[i].name);
}

static void test_tensor_bytes(void)
{
    static const struct {
        uint32_t type;
        uint64_t rows, cols, bytes;
        const char *why;
    } cases[] = {
        {HEARTH_F32, 3, 5, 60, "f32 3x5"},
        {HEARTH_F16, 3, 5, 30, "f16 3x5"},
        {HEARTH_BF16, 1, 7, 14, "bf16 vector"},
        {HEARTH_Q8_0, 16, 64, 16 * 2 * 34, "q8_0: 34-byte blocks of 32"},
        {HEARTH_Q4_0, 32, 64, 32 * 2 * 18, "q4_0: 18-byte blocks of 32"},
        {HEARTH_Q8_0, 1, 32, 16 * 34, "one q8_0 row is padded to a group of 16"},
        {HEARTH_Q4_0, 17, 4096, 32 * 128 * 18, "q4_0 17x4096: two groups of 16"},
        {HEARTH_Q8_0, 2, 33, 0, "q8_0 cols not a multiple of 32"},
        {HEARTH_Q4_0, 2, 16, 0, "q4_0 cols below one block"},
        {HEARTH_Q4_0, 1, 48, 0, "q4_0 cols 48"},
        {HEARTH_F32, 0, 5, 0, "no rows"},
        {HEARTH_F32, 5, 0, 0, "no cols"},
        {HEARTH_Q8_0, 0, 32, 0, "q8_0 no rows"},
        {3, 2, 32, 0, "unknown type"},
        {HEARTH_F32, 1, 1ull << 61, 1ull << 63, "f32 largest power of two that fits"},
        {HEARTH_F32, 1, 1ull << 62, 0, "f32 2^62 elements is 2^64 bytes"},
        {HEARTH_F16, 1ull << 32, 1ull << 32, 0, "rows*cols overflows"},
        {HEARTH_F32, 3, UINT64_MAX / 3, 0, "rows*cols fits, *4 does not"},
        {HEARTH_Q8_0, UINT64_MAX, 32, 0, "q8_0 rows cannot be padded"},
        {HEARTH_Q4_0, UINT64_MAX / 18 / 16 * 16, 32, UINT64_MAX / 18 / 16 * 16 * 18, "q4_0 largest that fits"},
        {HEARTH_Q4_0, UINT64_MAX / 18 / 16 * 16 + 1, 32, 0, "q4_0 one row more overflows"},
        {HEARTH_Q4_0, UINT64_MAX, UINT64_MAX - 31, 0, "q4_0 huge both ways"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = hearth_tensor_bytes(cases[i].type, cases[i].rows, cases[i].cols);
        CHECK(got == cases[i].bytes, "%s: %llu bytes, want %llu", cases[i].why,
              (unsigned long long)got, (unsigned long long)cases[i].bytes);
    }
}

static void test_convert_unaligned(void)
{
    enum { N = 37 };
    uint64_t rng = 777;
    float want[N];
    uint16_t halves[N], bhalves[N];
    for (int i = 0; i < N; i++) {
        halves[i] = (uint16_t)test_rand_u64(&rng);
        bhalves[i] = (uint16_t)test_rand_u64(&rng);
        want[i] = test_rand_normal(&rng) * 100.0f;
    }
    halves[0] = 0x0001; /* a subnormal and an inf among them */
    halves[1] = 0xfc00;
    unsigned char buf[4 * N + 8];
    float got[N];
    for (size_t off = 1; off < 4; off++) {
        memcpy(buf + off, want, sizeof want);
        convert_to_f32(HEARTH_F32, buf + off, got, N);
        CHECK(memcmp(got, want, sizeof want) == 0, "f32 at offset %zu differs", off);

        memcpy(buf + off, halves, sizeof halves);
        convert_to_f32(HEARTH_F16, buf + off, got, N);
        for (int i = 0; i < N; i++) {
            float w = fp16_to_f32(halves[i]);
            CHECK(bits_of(got[i]) == bits_of(w), "f16 at offset %zu, [%d]: %08x, want %08x",
                  off, i, bits_of(got[i]), bits_of(w));
        }

        memcpy(buf + off, bhalves, sizeof bhalves);
        convert_to_f32(HEARTH_BF16, buf + off, got, N);
        for (int i = 0; i < N; i++)
            CHECK(bits_of(got[i]) == (uint32_t)bhalves[i] << 16,
                  "bf16 at offset %zu, [%d]: %08x, want %08x", off, i, bits_of(got[i]),
                  (uint32_t)bhalves[i] << 16);
    }
    /* little-endian bytes: 0x3c00 is 1.0 */
    const unsigned char one[] = {0xff, 0x00, 0x3c};
    convert_to_f32(HEARTH_F16, one + 1, got, 1);
    CHECK(got[0] == 1.0f, "f16 bytes 00 3c -> %g, want 1", (double)got[0]);

    got[0] = 5.0f;
    convert_to_f32(HEARTH_F32, buf, got, 0);
    CHECK(got[0] == 5.0f, "n = 0 wrote to dst");
    convert_to_f32(HEARTH_Q8_0, buf, got, 3);
    CHECK(isnan(got[0]) && isnan(got[2]), "a block type is not convertible: dst should be NaN");
}

const struct test_case quant_tests[] = {
    {"quant_fp16_every_value", test_fp16_every_value},
    {"quant_fp16_known_values", test_fp16_known_values},
    {"quant_fp16_rounding", test_fp16_rounding},
    {"quant_fp16_nan", test_fp16_nan},
    {"quant_fp16_random_rounding", test_fp16_random_rounding},
    {"quant_bf16_every_value", test_bf16_every_value},
    {"quant_bf16_rounding", test_bf16_rounding},
    {"quant_bf16_nan", test_bf16_nan},
    {"quant_type_names_and_sizes", test_type_names_and_sizes},
    {"quant_tensor_bytes", test_tensor_bytes},
    {"quant_convert_unaligned", test_convert_unaligned},
    {NULL, NULL},
};
