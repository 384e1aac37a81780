/* Linear layers through oneDNN's sgemm, threaded by us.
 *
 * Why oneDNN: measured against OpenBLAS 0.3.21 (the previous backend), BLIS 0.9 and LIBXSMM 1.17
 * on the products a ViT step issues (docs/PERFORMANCE.md, "GEMM library"), oneDNN 2.6's JIT
 * sgemm is 10-30 % faster on one thread and up to 2x faster on the weight-gradient products (a
 * reduction over all B·T rows), where OpenBLAS packs a lot for little arithmetic.
 *
 * Why we thread it ourselves: oneDNN's own threading of these small products is erratic (some
 * calls of 50 rows ran at a tenth of their one-thread speed). So every product is split into
 * disjoint row slices of its output (rows of out and din, rows of dw); each thread runs one
 * single-threaded sgemm on its slice (oneDNN stays single-threaded inside a parallel region);
 * no element is summed by two threads. oneDNN allocates its packing buffers inside sgemm; our
 * code allocates nothing. */
#include <dnnl.h>
#include <omp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "mvmoe.h"

/* The bias gradient db = Σ_rows dout sums DB_PARTS fixed row ranges (one thread each, reading
 * whole rows: a stream), then adds the DB_PARTS partial sums in order, DB_COLS columns at a
 * time (the partials live on the stack). The ranges depend on M only, so the bits do not
 * depend on the thread count. Summing by column blocks instead (each thread a block, every
 * row in turn) read 128 bytes of each row: 2-4x slower (12x64 training: 5 % of a step). */
#define DB_PARTS 16
#define DB_COLS 1024
/* Products smaller than this many multiply-adds run on one thread: a fork-join costs ~2 µs. */
#define SPLIT_MIN_MACS (64 * 64 * 64)
/* Every slice has at least this many rows. oneDNN 2.6 computes each row of C with the same
 * arithmetic whatever M is, except for 'N','T' products of fewer than 16 rows and 1-row
 * 'T','N' products, which take other paths (tested bit by bit on the shapes we issue; see
 * test_linear). Slices of 16 rows or more therefore give the bits of the unsplit product. */
#define MIN_SLICE_ROWS 16
/* Forward products ('N','T') too short to split by rows (a last block's class rows, the head,
 * at small batches) are split by columns of C, in blocks of COL_ALIGN, once the weights hold
 * COL_SPLIT_MIN_WEIGHTS floats: such a product is a read of the weights, which two cores share
 * (1 row x 768 x 192: 22 -> 11 us; 192 x 192: 4.9 -> 2.1 us). Column blocks at multiples of 16
 * give the bits of the unsplit product (checked bit by bit on the shapes we issue, M = 1..39,
 * and by test_linear). Products of more rows stay split by rows: their consumers read rows,
 * and measured in place a column split of 197-row products was slower. */
#define COL_ALIGN 16
#define COL_SPLIT_MIN_WEIGHTS 32768

/* oneDNN fails only on invalid arguments, which the callers rule out: a failure is a bug. */
static void sgemm_or_die(char ta, char tb, int M, int N, int K, float alpha, const float *A,
                         int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    dnnl_status_t st = dnnl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (st != dnnl_success) {
        fprintf(stderr,
                "mvmoe: internal error: dnnl_sgemm(%c%c, M=%d N=%d K=%d) failed with status %d "
                "(%s:%d); please report this\n",
                ta, tb, M, N, K, (int)st, __FILE__, __LINE__);
        abort();
    }
}

/* C[m0:m1, n0:n1] = bias[n0:n1] broadcast over rows. */
static void fill_bias(float *C, int ldc, const float *bias, int m0, int m1, int n0, int n1) {
    for (int i = m0; i < m1; i++)
        for (int j = n0; j < n1; j++) C[(size_t)i * ldc + j] = bias[j];
}

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
        if (bias) fill_bias(C, ldc, bias, 0, M, 0, N);
        mvmoe_gemm_serial(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        if (by_cols) {
            const int n0 = split_point(parts, t, n) * COL_ALIGN;
            const int n1 = t + 1 == n ? N : split_point(parts, t + 1, n) * COL_ALIGN;
            if (bias) fill_bias(C, ldc, bias, 0, M, n0, n1);
            sgemm_or_die(ta, tb, M, n1 - n0, K, 1.0f, A, lda, B + (size_t)n0 * ldb, ldb, beta, C + n0, ldc);
        } else {
            const int m0 = split_point(M, t, n), m1 = split_point(M, t + 1, n);
            if (bias) fill_bias(C, ldc, bias, m0, m1, 0, N);
            sgemm_or_die(ta, tb, m1 - m0, N, K, 1.0f, ta == 'N' ? A + (size_t)m0 * lda : A + m0, lda, B,
                         ldb, beta, C + (size_t)m0 * ldc, ldc);
        }
    }
}

const char *mvmoe_gemm_library(void) {
    static char name[48];
    if (!name[0]) { /* racing first calls write the same bytes */
        const dnnl_version_t *v = dnnl_version();
        snprintf(name, sizeof name, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    }
    return name;
}

void mvmoe_gemm_serial(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
    if (omp_in_parallel()) {
        sgemm_or_die(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* oneDNN threads a call made outside a parallel region by itself: tell it not to */
    const int saved = omp_get_max_threads();
    if (saved > 1) omp_set_num_threads(1);
    sgemm_or_die(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (saved > 1) omp_set_num_threads(saved);
}

void mvmoe_linear_forward(float *out, const float *in, const float *w, const float *b, int M, int K,
                          int N) {
    gemm_rows('N', 'T', M, N, K, in, K, w, K, b, b ? 1.0f : 0.0f, out, N);
}

void mvmoe_linear_forward_strided(float *out, int ldo, const float *in, int ldi, const float *w,
                                  const float *b, int M, int K, int N) {
    gemm_rows('N', 'T', M, N, K, in, ldi, w, K, b, b ? 1.0f : 0.0f, out, ldo);
}

/* db[N] += Σ_{i<M} dout[i, :] (see DB_PARTS); db may be NULL. If `rounded` is not NULL, the
 * same pass also writes dout rounded to bf16 there ([M, N]): the bf16 backward's operand,
 * rounded while dout is in cache for the sums (mvmoe_linear_backward_bf16). */
void mvmoe_bias_grad_round(float *db, uint16_t *rounded, const float *dout, int M, int N) {
    float part[DB_PARTS][DB_COLS];
    const int par = (size_t)M * N >= 65536 && !omp_in_parallel();
    for (int j0 = 0; j0 < N; j0 += DB_COLS) {
        const int nc = N - j0 < DB_COLS ? N - j0 : DB_COLS;
#pragma omp parallel if (par)
        {
#pragma omp for schedule(static)
            for (int s = 0; s < DB_PARTS; s++) {
                const int r0 = split_point(M, s, DB_PARTS), r1 = split_point(M, s + 1, DB_PARTS);
                float *p = part[s];
                for (int j = 0; j < nc; j++) p[j] = 0.0f;
                for (int i = r0; i < r1; i++) {
                    const float *row = dout + (size_t)i * N + j0;
                    if (rounded) mvmoe_bf16_round(rounded + (size_t)i * N + j0, row, (size_t)nc);
                    if (db)
                        for (int j = 0; j < nc; j++) p[j] += row[j];
                }
            }
            if (db) {
#pragma omp for schedule(static)
                for (int jb = 0; jb < (nc + 15) / 16; jb++)
                    for (int j = jb * 16; j < nc && j < jb * 16 + 16; j++) {
                        float acc = part[0][j];
                        for (int s = 1; s < DB_PARTS; s++) acc += part[s][j];
                        db[j0 + j] += acc;
                    }
            }
        }
    }
}

/* din_beta 1: din accumulates; 0: din is overwritten, which gives the bits of accumulating into
 * zeros (x + 0 = x) without the pass over din that zeroes it (~1 GB a step for 12x192). */
static void linear_backward(float *din, float din_beta, float *dw, float *db, const float *dout,
                            const float *in, const float *w, int M, int K, int N) {
    if ((din || dw) && mvmoe_linear_backward_bf16(din, din_beta, dw, db, dout, in, w, M, K, N) == 0)
        return; /* done with bf16 products (opt-in mode), db included */
    if (din) gemm_rows('N', 'N', M, K, N, dout, N, w, K, NULL, din_beta, din, K);
    if (dw) gemm_rows('T', 'N', N, K, M, dout, N, in, K, NULL, 1.0f, dw, K);
    if (db) mvmoe_bias_grad_round(db, NULL, dout, M, N);
}

void mvmoe_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                           const float *w, int M, int K, int N) {
    linear_backward(din, 1.0f, dw, db, dout, in, w, M, K, N);
}

void mvmoe_linear_backward_overwrite(float *din, float *dw, float *db, const float *dout,
                                     const float *in, const float *w, int M, int K, int N) {
    linear_backward(din, 0.0f, dw, db, dout, in, w, M, K, N);
}

/* out[M,N] = in[M,K]·w[N,K]ᵀ + b — plain loops, the oracle. */
void mvmoe_linear_forward_ref(float *out, const float *in, const float *w, const float *b, int M,
                              int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = b ? b[j] : 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)in[(size_t)i * K + k] * w[(size_t)j * K + k];
            out[(size_t)i * N + j] = (float)acc;
        }
}

void mvmoe_linear_backward_ref(float *din, float *dw, float *db, const float *dout, const float *in,
                               const float *w, int M, int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float g = dout[(size_t)i * N + j];
            if (db) db[j] += g;
            for (int k = 0; k < K; k++) {
                if (din) din[(size_t)i * K + k] += g * w[(size_t)j * K + k];
                if (dw) dw[(size_t)j * K + k] += g * in[(size_t)i * K + k];
            }
        }
}
