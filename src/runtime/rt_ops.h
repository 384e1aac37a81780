/* The runtime's linear entry point (fp32 or int8 by the layer's weights), weight quantization
 * and routing. LayerNorm, GELU and attention are kernel-set operations (rt_kernels.h, bodies
 * in rt_ops_body.h): every set returns the same bits for them, and the int8 sums are exact,
 * so int8 results are the same bits everywhere. */
#ifndef MVMOE_RUNTIME_RT_OPS_H
#define MVMOE_RUNTIME_RT_OPS_H

#include <stdint.h>

#include "runtime/rt_kernels.h"

/* A linear layer y = x·Wᵀ + b, W [N, K]: fp32 weights (w), or int8 weights with a scale per
 * output channel (q, s; docs/EDGE.md "int8"). b may be NULL. */
typedef struct {
    const float *w;
    const int8_t *q;
    const float *s;
    const float *b;
    int N, K;
    const int32_t *ws; /* int8: Σ_k q[n·K + k] per output channel (VNNI's correction), or NULL
                        * (last, after the fields older initializers list) */
} rt_linear;

/* Scratch of the int8 path: qa [rows·K], sa [rows], acc [rows·N], for the largest call. */
typedef struct {
    int8_t *qa;
    float *sa;
    int32_t *acc;
} rt_i8_scratch;

/* out[m·ldo + n] for M rows of a (stride lda). */
void rt_linear_forward(const mvmoe_rt_kernels *k, const rt_linear *L, float *out, int ldo, const float *a, int lda,
                       int M, rt_i8_scratch *s);

/* The same with add: out[m·ldo + n] = out[m·ldo + n] + y (the residual add, fused into the
 * int8 product's store); fp32 layers compute y into tmp ([M·N]) first. */
void rt_linear_forward_add(const mvmoe_rt_kernels *k, const rt_linear *L, float *out, int ldo, const float *a, int lda,
                           int M, rt_i8_scratch *s, int add, float *tmp);

/* Per-row symmetric int8 quantization of weights (the library's convention, including its
 * round-trip-stable scale): q [N·K], s [N]. */
void rt_quantize_rows(int8_t *q, float *s, const float *w, int N, int K);

/* Per-image routing: p = softmax(W r) (E), the top k by probability (ties: lower index) into
 * ex/gate; choices after the first dropped (ex -1, gate 0) when p[first] >= adaptive (> 0). */
void rt_route(const float *r, const float *W, int D, int E, int k, float adaptive, float *p, int *ex, float *gate);

#endif
