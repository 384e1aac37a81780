/* AVX-512 attention kernels (attention_avx512.c), private to attention.c: called only when
 * mvmoe_isa_width() is 512. The softmax and the small-head block give the bits of attention.c's
 * AVX2 path; the hd = 64 kernels replace sgemm calls (see there). */
#ifndef MVMOE_KERNELS_ATTENTION_AVX512_H
#define MVMOE_KERNELS_ATTENTION_AVX512_H

#include <stddef.h>

/* Each of the `rows` rows of A[rows, T] (T >= 1) replaced by its softmax, in place. */
void mvmoe_softmax_rows_avx512(float *A, int rows, int T);

/* The forward of nr query rows of one (image, head) pair with hd = 16 and T <= 64: q rows
 * [nr, 16] and k, v [T, 16] at stride ld; probabilities to A[nr, T], outputs to o rows
 * [nr, 16] at stride ldo. scale = 1/√hd. */
void mvmoe_attention_small_avx512(float *o, size_t ldo, float *A, const float *q, const float *k,
                                  const float *v, size_t ld, int T, int nr, float scale);

/* The forward of nr query rows of one pair with hd = 64 and T <= 80, arguments as above. */
void mvmoe_attention_hd64_forward_avx512(float *o, size_t ldo, float *A, const float *q, const float *k,
                                         const float *v, size_t ld, int T, int nr, float scale);

/* The backward of one pair with hd = 64 and T <= 80 from its first nq query rows: dq rows [nq],
 * dk, dv rows [T] (64 floats at stride ld) get (acc: += ; else =) their gradients; dS [nq, T]
 * gets dS·scale (scratch); dO rows [nq] at stride ldo; A [nq, T] the forward's probabilities. */
void mvmoe_attention_hd64_backward_avx512(float *dq, float *dk, float *dv, size_t ld, float *dS,
                                          const float *dO, size_t ldo, const float *A, const float *q,
                                          const float *k, const float *v, int T, int nq, float scale,
                                          int acc);

#endif
