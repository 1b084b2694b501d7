/* kernels/attention.h - the attention kernels over one KV-cache head: query
 * x keys scores, softmax, and the weighted sum of values; plus the layout of
 * a KV-cache head they read.
 *
 * As for the matrix kernels (kernels.h), the scalar functions
 * (kernels/attention.c) are the definition and every SIMD version returns
 * the same bits: the order of every operation is fixed below. This is what
 * makes a batched prefill give exactly the logits of token-by-token decode.
 *
 * KV-cache layout of one (layer, kv head), n_pos positions (a multiple of
 * KV_BLOCK), elements of type HEARTH_F32 or HEARTH_F16 (IEEE half, rounded
 * to nearest even when stored):
 *
 *   keys:   blocks of KV_BLOCK positions; block b holds positions
 *           KV_BLOCK*b .. KV_BLOCK*b + KV_BLOCK-1 as [head_dim][KV_BLOCK]:
 *           element (pos, i) is at b * head_dim * KV_BLOCK + i * KV_BLOCK +
 *           pos % KV_BLOCK. A SIMD lane then holds one position, and a score
 *           is a chain of FMAs with no horizontal sum.
 *   values: [n_pos][head_dim], row after row.
 *
 * Both are read front to back, so decode at a long context streams them.
 *
 * The kernels take the n_q query heads that share one kv head (grouped-
 * query attention) at once, so each key and value is loaded and converted
 * once for all of them. Definitions (the contract), for each query head h:
 *   scores:  for pos in [p0, p1): acc = 0; for i = 0 .. head_dim-1:
 *            acc = fmaf(q[h][i], k(pos, i), acc); out[h][pos - p0] = acc * scale.
 *   softmax: m = max of x[0..n) (NaNs aside); e[t] = exp_approx(x[t] - m)
 *            (attention.c); the sum of e in 16 partial sums s[t % 16] in
 *            order of t, then the tree s[j] += s[j + 8], s[j + 4], s[j + 2],
 *            s[j + 1]; x[t] = e[t] * (1 / s[0]).
 *   values:  for i < head_dim: acc = 0; for t = 0 .. n-1:
 *            acc = fmaf(att[h][t], v(t, i), acc); out[h][i] = acc.
 * q[h] is q + h * head_dim, out[h] of scores and att[h] are rows of a
 * stride given by the caller, out[h] of values is out + h * head_dim. */
#ifndef HEARTH_ATTENTION_H
#define HEARTH_ATTENTION_H

#include <stdint.h>

#define KV_BLOCK 16u

struct attn_kernels {
    const char *name;
    /* keys: the kv head's whole key cache (layout above); kv_type
     * HEARTH_F32 or HEARTH_F16. Writes p1 - p0 scores per query head. */
    void (*scores)(float *out, uint64_t out_stride, const float *q, uint32_t n_q,
                   const void *keys, uint32_t kv_type, uint32_t p0, uint32_t p1,
                   uint32_t head_dim, float scale);
    void (*softmax)(float *x, uint32_t n);
    /* values: the rows of the n positions to sum (the first at row 0). */
    void (*values)(float *out, const float *att, uint64_t att_stride, uint32_t n_q,
                   const void *values, uint32_t kv_type, uint32_t n, uint32_t head_dim);
};

extern const struct attn_kernels attn_kernels_scalar;
extern const struct attn_kernels attn_kernels_avx2; /* needs AVX2, FMA, F16C */

/* exp(x) to within about 2 ulp for x in [-87, 0], 0 below -87 (the
 * softmax's only inputs are x - max <= 0); the one function the SIMD
 * versions mirror step by step. */
float exp_approx(float x);

#endif
