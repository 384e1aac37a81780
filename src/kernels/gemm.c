/* The pieces of a linear product that more than one backend (and attention) needs: one
 * single-threaded sgemm, the bias fill, and the bias gradient's sums. They sit below the
 * backends (linear_backend.h) so that no backend calls another. */
#include <dnnl.h>
#include <omp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "kernels/linear_backend.h"

/* The bias gradient db = Σ_rows dout sums DB_PARTS fixed row ranges (one thread each, reading
 * whole rows: a stream), then adds the DB_PARTS partial sums in order, DB_COLS columns at a
 * time (the partials live on the stack). The ranges depend on M only, so the bits do not
 * depend on the thread count. Summing by column blocks instead (each thread a block, every
 * row in turn) read 128 bytes of each row: 2-4x slower (docs/PERFORMANCE.md). */
#define DB_PARTS 16
#define DB_COLS 1024

/* oneDNN fails only on invalid arguments, which the callers rule out: a failure is a bug. */
void mvmoe_sgemm_checked(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc) {
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

void mvmoe_gemm_serial(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
    if (omp_in_parallel()) {
        mvmoe_sgemm_checked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* oneDNN threads a call made outside a parallel region by itself: tell it not to */
    const int saved = omp_get_max_threads();
    if (saved > 1) omp_set_num_threads(1);
    mvmoe_sgemm_checked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (saved > 1) omp_set_num_threads(saved);
}

void mvmoe_fill_bias(float *C, int ldc, const float *bias, int m0, int m1, int n0, int n1) {
    for (int i = m0; i < m1; i++)
        for (int j = n0; j < n1; j++) C[(size_t)i * ldc + j] = bias[j];
}

void mvmoe_sgemm_forward_serial(float *out, int ldo, const float *in, int ldi, const float *w,
                                const float *b, int M, int K, int N) {
    if (b) mvmoe_fill_bias(out, ldo, b, 0, M, 0, N);
    mvmoe_gemm_serial('N', 'T', M, N, K, 1.0f, in, ldi, w, K, b ? 1.0f : 0.0f, out, ldo);
}

/* First row of part s of M rows cut into n. */
static int split_point(int M, int s, int n) { return (int)((long long)M * s / n); }

/* (See DB_PARTS.) If `rounded` is not NULL, the same pass also writes dout rounded to bf16
 * there ([M, N]): the bf16 backward's operand, rounded while dout is in cache for the sums. */
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
