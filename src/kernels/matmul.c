/* Linear layers through BLAS sgemm. OpenBLAS (its OpenMP build) was chosen by measurement over
 * BLIS: about 2x faster on every ViT-shaped product here (docs/PERFORMANCE.md). The OpenMP build
 * runs single-threaded when called inside our own parallel regions, so the two never fight. */
#include <cblas.h>
#include <stddef.h>

#include "kernels/kernels.h"

/* Columns per thread block of the bias-gradient sum (a multiple of the vector width). */
#define DB_COLS 32

void mvmoe_linear_forward(float *out, const float *in, const float *w, const float *b, int M, int K,
                          int N) {
    if (b) { /* threaded: a serial fill of B·T·N floats per call limited the 2-thread speed-up */
#pragma omp parallel for schedule(static) if ((size_t)M * N >= 65536)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) out[(size_t)i * N + j] = b[j];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, in, K, w, K, b ? 1.0f : 0.0f,
                out, N);
}

void mvmoe_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                           const float *w, int M, int K, int N) {
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, w, K, 1.0f,
                    din, K);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, in, K, 1.0f,
                    dw, K);
    if (db) {
        /* threads own blocks of columns and each column is summed over rows in order, so the
         * result is the serial one for any thread count */
        const int nb = (N + DB_COLS - 1) / DB_COLS;
#pragma omp parallel for schedule(static) if ((size_t)M * N >= 65536 && nb > 1)
        for (int jb = 0; jb < nb; jb++) {
            const int j0 = jb * DB_COLS, j1 = j0 + DB_COLS < N ? j0 + DB_COLS : N;
            for (int i = 0; i < M; i++) {
                const float *row = dout + (size_t)i * N;
                for (int j = j0; j < j1; j++) db[j] += row[j];
            }
        }
    }
}

/* out[M,N] = in[M,K]·w[N,K]ᵀ + b — plain loops, the oracle. */
void mvmoe_linear_forward_ref(float *out, const float *in, const float *w, const float *b, int M,
                              int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = b ? b[j] : 0.0;
            for (int k = 0; k < K; k++) acc += (double)in[(size_t)i * K + k] * w[(size_t)j * K + k];
            out[(size_t)i * N + j] = (float)acc;
        }
}

void mvmoe_linear_backward_ref(float *din, float *dw, float *db, const float *dout,
                               const float *in, const float *w, int M, int K, int N) {
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
