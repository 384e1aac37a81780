/* The sgemm backend of the linear layers (linear.c chooses it): oneDNN's sgemm, threaded by us.
 * It takes every shape and stride, and every product the other backends do not.
 *
 * Why oneDNN: measured against OpenBLAS 0.3.21 (the previous backend), BLIS 0.9 and LIBXSMM 1.17
 * on the products a ViT step issues (docs/PERFORMANCE.md §2.1), oneDNN 2.6's JIT sgemm was
 * faster than OpenBLAS and BLIS on almost every shape, by far the most on the weight-gradient
 * products (a reduction over all B·T rows), where OpenBLAS packs a lot for little arithmetic;
 * LIBXSMM tied it on the forward products but has no kernel for the weight gradients.
 *
 * Why we thread it ourselves: oneDNN's own threading of these small products is erratic (some
 * calls of 50 rows ran several times slower on 2 threads than on one; docs/PERFORMANCE.md
 * §2.2). So every product is split into disjoint row slices of its output (rows of out and
 * din, rows of dw); each thread runs one single-threaded sgemm on its slice (oneDNN stays
 * single-threaded inside a parallel region); no element is summed by two threads. oneDNN
 * allocates its packing buffers inside sgemm; our code allocates nothing. */
#include <dnnl.h>
#include <omp.h>
#include <stddef.h>

#include "kernels/kernels.h"
#include "kernels/linear_backend.h"

/* Products smaller than this many multiply-adds run on one thread: a fork-join costs more than
 * splitting them saves (docs/PERFORMANCE.md §2.2). */
#define SPLIT_MIN_MACS (64 * 64 * 64)
/* Every slice has at least this many rows. oneDNN 2.6 computes each row of C with the same
 * arithmetic whatever M is, except for 'N','T' products of fewer than 16 rows and 1-row
 * 'T','N' products, which take other paths (tested bit by bit on the shapes we issue; see
 * test_linear). Slices of 16 rows or more therefore give the bits of the unsplit product. */
#define MIN_SLICE_ROWS 16
/* Forward products ('N','T') too short to split by rows (a last block's class rows, the head,
 * at small batches) are split by columns of C, in blocks of COL_ALIGN, once the weights hold
 * COL_SPLIT_MIN_WEIGHTS floats: such a product is a read of the weights, which two cores share,
 * so splitting its columns on two cores about halves its time (docs/PERFORMANCE.md §2.3).
 * Column blocks at multiples of 16 give the bits of the unsplit product (checked bit by bit on
 * the shapes we issue, M = 1..39, and by test_linear). Products of more rows stay split by
 * rows: their consumers read rows, and measured in place a column split of 197-row products
 * was slower (§4). */
#define COL_ALIGN 16
#define COL_SPLIT_MIN_WEIGHTS 32768

/* First row of thread t's slice of M rows split n ways. */
static int split_point(int M, int t, int n) { return (int)((long long)M * t / n); }

/* C[M,N] = op(A)·op(B) + beta·C, all row-major: op(A) = A[M,K] (ta 'N') or A[K,M]ᵀ ('T'),
 * op(B) = B[K,N] ('N') or B[N,K]ᵀ ('T'). C is split between the threads by rows, or for a
 * forward product of few rows by columns. With a bias (beta must then be 1), each thread first
 * fills its own part of C with it: next to the product, where it needs no fork-join of its own
 * and leaves the part in cache. */
static void gemm_rows(char ta, char tb, int M, int N, int K, const float *A, int lda,
                      const float *B, int ldb, const float *bias, float beta, float *C, int ldc) {
    const int by_cols = ta == 'N' && tb == 'T' && M < 2 * MIN_SLICE_ROWS &&
                        (double)N * K >= COL_SPLIT_MIN_WEIGHTS;
    const int parts = by_cols ? N / COL_ALIGN : M / MIN_SLICE_ROWS;
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > parts) nt = parts;
    if ((!by_cols && (double)M * N * K < SPLIT_MIN_MACS) || nt < 1) nt = 1;
    if (nt == 1) {
        if (bias) mvmoe_fill_bias(C, ldc, bias, 0, M, 0, N);
        mvmoe_gemm_serial(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        if (by_cols) {
            const int n0 = split_point(parts, t, n) * COL_ALIGN;
            const int n1 = t + 1 == n ? N : split_point(parts, t + 1, n) * COL_ALIGN;
            if (bias) mvmoe_fill_bias(C, ldc, bias, 0, M, n0, n1);
            mvmoe_sgemm_checked(ta, tb, M, n1 - n0, K, 1.0f, A, lda, B + (size_t)n0 * ldb, ldb, beta, C + n0, ldc);
        } else {
            const int m0 = split_point(M, t, n), m1 = split_point(M, t + 1, n);
            if (bias) mvmoe_fill_bias(C, ldc, bias, m0, m1, 0, N);
            mvmoe_sgemm_checked(ta, tb, m1 - m0, N, K, 1.0f, ta == 'N' ? A + (size_t)m0 * lda : A + m0, lda, B,
                         ldb, beta, C + (size_t)m0 * ldc, ldc);
        }
    }
}

void mvmoe_linear_sgemm_forward(float *out, int ldo, const float *in, int ldi, const float *w,
                                const float *b, int M, int K, int N) {
    gemm_rows('N', 'T', M, N, K, in, ldi, w, K, b, b ? 1.0f : 0.0f, out, ldo);
}

/* din_beta 1: din accumulates; 0: din is overwritten, which gives the bits of accumulating into
 * zeros (x + 0 = x) without the pass over din that zeroes it (~1 GB a step for 12x192). */
void mvmoe_linear_sgemm_backward(float *din, float din_beta, float *dw, float *db, const float *dout,
                                 const float *in, const float *w, int M, int K, int N) {
    if (din) gemm_rows('N', 'N', M, K, N, dout, N, w, K, NULL, din_beta, din, K);
    if (dw) gemm_rows('T', 'N', N, K, M, dout, N, in, K, NULL, 1.0f, dw, K);
    if (db) mvmoe_bias_grad_round(db, NULL, dout, M, N);
}
