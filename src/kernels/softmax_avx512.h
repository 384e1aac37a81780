/* AVX-512 softmax rows (softmax_avx512.c), private to attention.c: called only when
 * mvmoe_isa_width() is 512. */
#ifndef MVMOE_KERNELS_SOFTMAX_AVX512_H
#define MVMOE_KERNELS_SOFTMAX_AVX512_H

/* Each of the `rows` rows of A[rows, T] (T >= 1) replaced by its softmax, in place. */
void mvmoe_softmax_rows_avx512(float *A, int rows, int T);

#endif
