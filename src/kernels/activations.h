/* Activations: exact GELU (see kernels.h for the conventions). */
#ifndef MVMOE_KERNELS_ACTIVATIONS_H
#define MVMOE_KERNELS_ACTIVATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/conventions.h"

/* ---- exact GELU (activations.c): gelu(x) = x · Φ(x) = 0.5·x·(1 + erf(x/√2)).
 * AVX-512 version (activations_avx512.c) when mvmoe_isa_width() is 512: same bits. */
typedef enum mvmoe_gelu_save {
    MVMOE_GELU_PLAIN = 0,    /* pre keeps the pre-activations */
    MVMOE_GELU_SAVE_GRAD = 1 /* pre is overwritten with GELU'(pre + b), all the backward needs */
} mvmoe_gelu_save;
/* pre[M,N] += b[N] (each row; b NULL: none, the product added it), then out = gelu(pre).
 * With MVMOE_GELU_SAVE_GRAD (training), pre then holds GELU'(pre + b) for
 * mvmoe_gelu_backward_saved, computed while erf is at hand: one erf per element for forward
 * and backward instead of two; the bits of the separate kernels. */
void mvmoe_gelu_forward(float *out, float *pre, const float *b, size_t M, int N, mvmoe_gelu_save save);
/* din (+)= dout·GELU'(in), n elements; din may be dout (in place) when overwriting. */
void mvmoe_gelu_backward(float *din, const float *dout, const float *in, size_t n, mvmoe_grad_write din_write);
/* din (+)= dout·grad, grad from mvmoe_gelu_forward's MVMOE_GELU_SAVE_GRAD: the bits of
 * mvmoe_gelu_backward on the pre-activations. */
void mvmoe_gelu_backward_saved(float *din, const float *dout, const float *grad, size_t n,
                               mvmoe_grad_write din_write);
void mvmoe_gelu_forward_ref(float *out, float *pre, const float *b, size_t M, int N);
void mvmoe_gelu_backward_ref(float *din, const float *dout, const float *in, size_t n);

#endif
