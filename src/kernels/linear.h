/* Linear layers: the one entry point over the sgemm, packed and bf16 backends (see kernels.h). */
#ifndef MVMOE_KERNELS_LINEAR_H
#define MVMOE_KERNELS_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/conventions.h"

/* ---- linear layers (linear.c; backends linear_sgemm.c, linear_packed.c, linear_bf16.c):
 * out[M,N] = in[M,K] · w[N,K]ᵀ + b[N] (b may be NULL).
 *
 * The weights of a product: the plain w[N,K] (always: every backend can fall back on it, and
 * the backward reads it), and optionally `packed`, the copy mvmoe_linear_pack made of it
 * (oneDNN's blocked layout, or w rounded to bf16 while bf16 products are on). */
typedef struct mvmoe_linear_weights {
    const float *w;
    const float *packed; /* NULL: none */
} mvmoe_linear_weights;
static inline mvmoe_linear_weights mvmoe_linear_w(const float *w, const float *packed) {
    return (mvmoe_linear_weights){w, packed};
}
/* out rows at stride ldo (>= N), in rows at stride ldi (>= K). The packed copy serves only
 * dense rows (ldo == N, ldi == K); bf16 products run for weights of 64·64 elements or more
 * while the mode is on. Threaded by rows (or, for a few rows, by column blocks); the bits do
 * not depend on the thread count. */
void mvmoe_linear_forward(float *out, int ldo, const float *in, int ldi, mvmoe_linear_weights w,
                          const float *b, int M, int K, int N);
/* din[M,K] (+)= dout·w ; dw[N,K] += doutᵀ·in ; db[N] += Σ_rows dout (each may be NULL).
 * din_write: MVMOE_GRAD_ACCUMULATE (the default), or MVMOE_GRAD_OVERWRITE: the bits of zeroing
 * din first, without that pass; dw and db always accumulate. */
void mvmoe_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                           const float *w, int M, int K, int N, mvmoe_grad_write din_write);
/* Floats of the packed copy of a weight w[N,K] in the current precision mode (0: packing is
 * unavailable), and the packing (0, or -1 if unavailable). A copy made in one mode serves
 * only that mode (mvmoe_get_precision tells which). */
size_t mvmoe_linear_packed_size(int N, int K);
int mvmoe_linear_pack(float *dst, const float *w, int N, int K);
void mvmoe_linear_forward_ref(float *out, const float *in, const float *w, const float *b, int M,
                              int K, int N);
void mvmoe_linear_backward_ref(float *din, float *dw, float *db, const float *dout,
                               const float *in, const float *w, int M, int K, int N);
/* int8 (linear_int8.c; convention there): w[N,K] -> q[N,K] int8 and scale[N], symmetric per
 * output row (scale = max|w_row|/127; NaN for a row that is not finite). The reference
 * product from such weights: activations quantized per row at run time, int32 sums, fp32
 * out — the oracle of the int8 backend, which must match it bit for bit. */
void mvmoe_int8_quantize_rows(int8_t *q, float *scale, const float *w, int N, int K);
void mvmoe_linear_int8_forward_ref(float *out, const float *in, const int8_t *qw, const float *sw,
                                   const float *b, int M, int K, int N);
/* C[M,N] = alpha·op(A)·op(B) + beta·C on the calling thread only (op 'N' or 'T', row-major,
 * BLAS argument order; gemm.c): the small products inside other kernels' parallel loops. */
void mvmoe_gemm_serial(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);
/* float -> bf16 (bf16.c): nearest even, denormal inputs to signed zero, NaNs quieted (the
 * rules of AVX-512 BF16's conversion, which the fast path uses; _ref is the plain loop) */
void mvmoe_bf16_round(uint16_t *dst, const float *src, size_t n);
void mvmoe_bf16_round_ref(uint16_t *dst, const float *src, size_t n);
float mvmoe_bf16_to_float(uint16_t h);

#endif
