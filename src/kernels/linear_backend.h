/* The linear backends below the dispatcher (linear.c), private to src/kernels.
 *
 * linear.c chooses one per call; the backends never call each other nor the dispatcher. What
 * more than one needs (the serial sgemm, the bias gradient's sums, bf16 rounding) lives below
 * them, in gemm.c and bf16.c; their oneDNN state lives in onednn.c. Arguments as in
 * kernels.h's linear section; din_beta 1 accumulates into din, 0 overwrites it. */
#ifndef MVMOE_KERNELS_LINEAR_BACKEND_H
#define MVMOE_KERNELS_LINEAR_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* ---- shared (gemm.c) */
/* dnnl_sgemm on the calling thread (as mvmoe_gemm_serial) inside a parallel region; aborts on
 * a oneDNN failure, which only invalid arguments cause (a bug). */
void mvmoe_sgemm_checked(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc);
/* C[m0:m1, n0:n1] = bias[n0:n1] broadcast over rows. */
void mvmoe_fill_bias(float *C, int ldc, const float *bias, int m0, int m1, int n0, int n1);
/* out[M,N] (rows at ldo) = in[M,K] (rows at ldi)·w[N,K]ᵀ + b on the calling thread: the bias
 * fill, then one sgemm adding to it (b NULL: beta 0). */
void mvmoe_sgemm_forward_serial(float *out, int ldo, const float *in, int ldi, const float *w,
                                const float *b, int M, int K, int N);
/* db[N] += Σ_rows dout[M,N] (db may be NULL) over fixed row ranges, so its bits do not depend
 * on the thread count; with `rounded`, also writes dout rounded to bf16 there in that pass. */
void mvmoe_bias_grad_round(float *db, uint16_t *rounded, const float *dout, int M, int N);

/* ---- sgemm (linear_sgemm.c): every shape, every stride; threaded by output slices. */
void mvmoe_linear_sgemm_forward(float *out, int ldo, const float *in, int ldi, const float *w,
                                const float *b, int M, int K, int N);
void mvmoe_linear_sgemm_backward(float *din, float din_beta, float *dw, float *db, const float *dout,
                                 const float *in, const float *w, int M, int K, int N);

/* ---- packed fp32 weights (linear_packed.c), forward only, dense rows.
 * bytes of the packed copy of w[N,K] (0: unavailable); pack: 0 or -1. forward: 0, or -1 having
 * written nothing (no primitive for this call: the caller runs sgemm). */
size_t mvmoe_linear_packed_bytes(int N, int K);
int mvmoe_linear_packed_pack(void *dst, const float *w, int N, int K);
int mvmoe_linear_packed_forward(float *out, const float *in, const void *wp, const float *w,
                                const float *b, int M, int K, int N);

/* ---- bf16 products (linear_bf16.c): operands rounded to bf16, sums in fp32. probe: 0 if
 * this CPU has a bf16 kernel, else -1. forward: from wb = w rounded to bf16 (row-major [N,K]);
 * forward returns 0, or -1 (the caller then runs the whole product in fp32; some rows may
 * have been written); backward returns 0, or -1 having written nothing (the caller runs fp32). */
int mvmoe_linear_bf16_probe(void);
int mvmoe_linear_bf16_forward(float *out, const float *in, const uint16_t *wb, const float *b,
                              int M, int K, int N);
int mvmoe_linear_bf16_backward(float *din, float din_beta, float *dw, float *db, const float *dout,
                               const float *in, const float *w, int M, int K, int N);

/* ---- int8 products (linear_int8.c), forward only, dense rows, while the int8 mode is on.
 * bytes: of the packed int8 copy of w[N,K] (scales, row sums, padded int8 rows; 0 if K is
 * outside the backend's range); pack: 0 or -1; forward: 0, or -1 having written nothing (the
 * caller runs sgemm). AVX-512 VNNI when mvmoe_isa_vnni(), else plain C: the same bits. */
size_t mvmoe_linear_int8_bytes(int N, int K);
int mvmoe_linear_int8_pack(void *dst, const float *w, int N, int K);
int mvmoe_linear_int8_forward(float *out, const float *in, const void *wq, const float *b, int M,
                              int K, int N);

#endif
