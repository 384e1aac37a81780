/* AVX-512 GELU spans (activations_avx512.c), private to activations.c: called only when
 * mvmoe_isa_width() is 512. C8/centers8 are simd.h's erf coefficient table and interval centers. */
#ifndef MVMOE_KERNELS_ACTIVATIONS_AVX512_H
#define MVMOE_KERNELS_ACTIVATIONS_AVX512_H

#include <stddef.h>

void mvmoe_gelu_forward_span_avx512(float *out, const float *in, size_t n, const float (*C8)[8],
                                    const float *centers8, float inv_sqrt2);
void mvmoe_gelu_backward_span_avx512(float *din, const float *dout, const float *in, size_t n,
                                     const float (*C8)[8], const float *centers8, float inv_sqrt2,
                                     float inv_sqrt2pi, int acc);

void mvmoe_gelu_forward_grad_span_avx512(float *out, float *g, size_t n, const float (*C8)[8],
                                         const float *centers8, float inv_sqrt2, float inv_sqrt2pi);

#endif
