/* kernels/kernels.h - the matrix x vector kernels, one table of function
 * pointers per instruction set, and the weight layouts they read.
 *
 * The scalar kernels (kernels/scalar.c) are the definition: every SIMD kernel
 * returns bit-identical results, because each output is accumulated in the
 * same order with the same fused multiply-adds (see the order below).
 *
 * Weight layouts (what a HEARTH_F32 / HEARTH_Q8_0 / HEARTH_Q4_0 matrix holds
 * in a model file; docs/FORMAT.md repeats this):
 *
 * F32: row-major [rows][cols].
 *
 * Q8_0 and Q4_0: GGUF's block math (FACTS.md: blocks of 32 weights along a
 * row, one fp16 scale d each; Q8_0 value = d * q with q int8; Q4_0 value =
 * d * (q - 8) with q in 0..15), stored row-interleaved in groups of 16 rows
 * so that each 32-bit SIMD lane accumulates one row. cols is a multiple of
 * 32; rows are padded up to a multiple of 16 with all-zero rows (scale 0).
 * With nb = cols / 32 blocks per row, group g (rows 16g .. 16g+15) is
 *
 *   quants: nb x QBYTES bytes, block column after block column
 *   scales: nb x 16 fp16 (uint16_t), scales[b][r] = d of row 16g+r, block b
 *
 * Q8_0 quants (QBYTES = 512) of block column b: 8 chunks of 64 bytes; in
 * chunk c, byte 4r + j (r < 16, j < 4) is q[16g + r][32b + 4c + j] (int8).
 * Q4_0 quants (QBYTES = 256) of block column b: 4 chunks of 64 bytes; in
 * chunk c, byte 4r + j holds q[16g + r][32b + 8c + j] in its low nibble and
 * q[16g + r][32b + 8c + 4 + j] in its high nibble.
 * Group stride: nb * (QBYTES + 32) bytes, which is 16 rows of GGUF blocks
 * (34 or 18 bytes each), so hearth_tensor_bytes counts padded rows x blocks.
 *
 * Activations: quantized once per matmul into blocks of 32 (ggml's Q8_0 for
 * activations on x86, so results match llama.cpp bit for bit in the integer
 * part): amax = max |x| over the block, d = fp16-rounded(amax / 127), and
 * q = round-half-to-even(x * (127 / amax)) computed in f32 (0 when amax = 0);
 * sum = sum of the 32 q values (for the Q4_0 offset trick), and q4_start
 * the same offset split in two (struct q8_act below).
 *
 * Accumulation order, per output row (the contract every kernel keeps):
 *   F32:  16 partial sums s[0..15]; s[j] = fmaf(w[c], x[c], s[j]) for
 *         c = j, j + 16, j + 32, ... in increasing c (a tail shorter than 16
 *         feeds only the first cols % 16 sums); then s[j] += s[j + 8],
 *         s[j] += s[j + 4], s[j] += s[j + 2], s[j] += s[j + 1] for j below
 *         the step (a tree), result s[0].
 *   Q8_0: acc = 0; for each block b in order: i = sum_k q_w * q_a (int32,
 *         exact); acc = fmaf((float)i, d_w * d_a, acc).
 *   Q4_0: the same with i = sum_k q_w * q_a - 8 * sum_a (int32, exact, equal
 *         to sum_k (q_w - 8) * q_a).
 *
 * The batched products (gemm_*, prompt prefill) compute many tokens at once
 * but keep this order for every output, so each token's results are the
 * bits matvec_* gives for that token alone.
 */
#ifndef HEARTH_KERNELS_H
#define HEARTH_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define QK 32           /* weights per block */
#define ROW_GROUP 16    /* rows interleaved per group */
#define Q8_0_QBYTES 512 /* quant bytes of one block column of a group */
#define Q4_0_QBYTES 256

/* A quantized activation vector of n values (n a multiple of QK). */
struct q8_act {
    int8_t *q;      /* n values, 64-byte aligned */
    float *d;       /* n / QK scales (fp16-rounded values, stored as f32) */
    int32_t *sum;   /* n / QK sums of q */
    int32_t *q4_start; /* n / QK: q4_start_of each block's q (below) */
};

/* The Q4_0 offset -8 * sum of a block's 32 q, split in two halves packed
 * as two int16 (two's complement): -8 * (the q at k % 4 in {0, 1}) in the
 * low 16 bits, -8 * (k % 4 in {2, 3}) in the high. Each half is at most
 * 16 * 127 * 8 = 16256 in magnitude. The AVX2 Q4_0 tile starts its int16
 * accumulators here, which is where the q at those k land (kernels/avx2.c,
 * tile_q4_0), so the offset costs nothing per block there. */
static inline int32_t q4_start_pack(int32_t sum_lo, int32_t sum_hi)
{
    return (int32_t)((uint32_t)(uint16_t)(int16_t)(-8 * sum_lo) |
                     (uint32_t)(uint16_t)(int16_t)(-8 * sum_hi) << 16);
}

static inline int32_t q4_start_of(const int8_t *q)
{
    int32_t lo = 0, hi = 0;
    for (int k = 0; k < QK; k++) {
        if (k % 4 < 2)
            lo += q[k];
        else
            hi += q[k];
    }
    return q4_start_pack(lo, hi);
}

/* The activations of tokens t, t + 1, ... of a (cols values each). */
static inline struct q8_act q8_act_from(const struct q8_act *a, uint64_t t, uint64_t cols)
{
    uint64_t b = t * (cols / QK);
    return (struct q8_act){a->q + t * cols, a->d + b, a->sum + b, a->q4_start + b};
}

/* Export side: quantizes up to 16 F32 rows (n_rows <= 16, each cols long,
 * rows[i] pointing at row i; missing rows count as zeros) into one group of
 * the layout above, written to out (group stride bytes). Weight quantization
 * follows ggml's reference quantizers (quantize_row_q8_0_ref /
 * quantize_row_q4_0_ref: round half away from zero). */
void pack_group_q8_0(const float *const *rows, int n_rows, uint64_t cols, uint8_t *out);
void pack_group_q4_0(const float *const *rows, int n_rows, uint64_t cols, uint8_t *out);

/* Dequantizes row r of a packed matrix into out[cols] (embedding lookup,
 * tests). Q8_0/Q4_0 only. */
void unpack_row(uint32_t type, const void *w, uint64_t cols, uint64_t r, float *out);

struct kernels {
    const char *name;   /* "scalar", "avx2", "avx512" */
    /* out[r] for r in [r0, r1) of a rows x cols F32 matrix. */
    void (*matvec_f32)(float *out, const float *w, const float *x, uint64_t cols,
                       uint64_t r0, uint64_t r1);
    /* out[r] for r in [r0, r1) of a packed matrix; r0 is a multiple of 16,
     * r1 is a multiple of 16 or the true row count (the tail group's padded
     * rows are not written). */
    void (*matvec_q8_0)(float *out, const void *w, const struct q8_act *a, uint64_t cols,
                        uint64_t r0, uint64_t r1);
    void (*matvec_q4_0)(float *out, const void *w, const struct q8_act *a, uint64_t cols,
                        uint64_t r0, uint64_t r1);
    /* Quantizes x[n] (n a multiple of QK) into a. */
    void (*quantize_act)(const float *x, uint64_t n, struct q8_act *a);
    /* Batched products (prompt prefill): for every token t < n_tok and row
     * r in [r0, r1), out[t * ldo + r] = exactly what matvec_X would write to
     * (out + t * ldo)[r] for token t alone (bit-identical: same per-output
     * accumulation order). r0/r1 rules as for matvec_*. Nothing else of out
     * is written (not the rows outside [r0, r1), not the padded rows). */
    void (*gemm_f32)(float *out, uint64_t ldo, const float *w,
                     const float *x /* n_tok rows of cols, row stride cols */, uint32_t n_tok,
                     uint64_t cols, uint64_t r0, uint64_t r1);
    /* a holds n_tok * cols quantized values, token t's at a->q + t * cols,
     * a->d + t * cols / 32, a->sum + t * cols / 32 (quantize_act over
     * n_tok * cols values produces exactly this, blocks being independent). */
    void (*gemm_q8_0)(float *out, uint64_t ldo, const void *w, const struct q8_act *a,
                      uint32_t n_tok, uint64_t cols, uint64_t r0, uint64_t r1);
    void (*gemm_q4_0)(float *out, uint64_t ldo, const void *w, const struct q8_act *a,
                      uint32_t n_tok, uint64_t cols, uint64_t r0, uint64_t r1);
    /* The int8 peak probe: n_iter iterations of a register-only loop of this
     * ISA's int8 multiply-accumulate instructions (AVX2: vpmaddubsw +
     * vpmaddwd + vpaddd on independent accumulators; AVX-512: vpdpbusd), no
     * memory traffic; returns the number of int8 operations done (a multiply
     * and an add count as 2), and stores something derived from the
     * accumulators into *sink so nothing is optimized away. Scalar: NULL.
     * The bench times it. */
    uint64_t (*int8_peak_loop)(uint64_t n_iter, int32_t *sink);
};

extern const struct kernels kernels_scalar;
extern const struct kernels kernels_avx2;   /* needs AVX2, FMA, F16C */
extern const struct kernels kernels_avx512; /* needs AVX-512 F/BW/VL and VNNI */

struct cpu_features {
    int avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni, avxvnni;
};
void cpu_detect(struct cpu_features *f);

/* The best kernels this CPU runs, or the named ones ("scalar", "avx2",
 * "avx512"); NULL with err set when the name is unknown or this CPU lacks
 * what the named kernels need. */
const struct kernels *kernels_select(const char *name, char *err);

/* GGUF's own Q8_0 / Q4_0 blocks, as a GGUF file stores them row after row
 * (llama.cpp ggml/src/ggml-common.h, block_q8_0 and block_q4_0; FACTS.md,
 * "File formats"): fp16 d, then 32 int8 q (Q8_0); or fp16 d, then 16 bytes
 * where byte j holds q of weight j in its low nibble and of weight j + 16
 * in its high nibble (Q4_0). A row of cols weights is cols / 32 blocks. */
#define GGUF_Q8_0_BLOCK_BYTES 34u
#define GGUF_Q4_0_BLOCK_BYTES 18u

/* Export side, GGUF passthrough: rearranges up to 16 rows of GGUF blocks
 * (rows[i] points at row i's cols / 32 blocks; n_rows <= 16) into one group
 * of the interleaved layout above without touching a scale or a quant: the
 * bytes equal what pack_group_q8_0 / pack_group_q4_0 store for weights that
 * quantize to the same d and q. Missing rows are what those functions store
 * for a row of zeros (Q8_0: d = +0, q = 0; Q4_0: d = -0, q = 8). */
void repack_group_q8_0(const uint8_t *const *rows, int n_rows, uint64_t cols, uint8_t *out);
void repack_group_q4_0(const uint8_t *const *rows, int n_rows, uint64_t cols, uint8_t *out);

/* Dequantizes one row of GGUF blocks (type HEARTH_Q8_0 or HEARTH_Q4_0) into
 * out[cols] with the arithmetic of unpack_row, so a passed-through matrix
 * unpacks to exactly these values. Any other type fills out with NaN. */
void dequantize_gguf_row(uint32_t type, const uint8_t *blocks, uint64_t cols, float *out);

#endif
