/* Elementwise helpers (residual adds, zeroing). Each element is touched by one thread, so results do
 * not depend on the thread count. */
#include <omp.h>
#include <stddef.h>
#include <string.h>

#include "kernels/kernels.h"

/* Elements per OpenMP chunk; small arrays stay on the calling thread. */
#define EW_CHUNK 16384

void mvmoe_add_inplace(float *y, const float *x, size_t n) {
    const size_t chunks = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        const size_t lo = c * EW_CHUNK, hi = n - lo < EW_CHUNK ? n : lo + EW_CHUNK;
        for (size_t i = lo; i < hi; i++) y[i] += x[i];
    }
}

/* memset is one thread: the backward zeroes ~20 MB of activation gradients per 12x64 step,
 * which on 2 threads was a serial part of the step (Amdahl). */
void mvmoe_zero(float *y, size_t n) {
    const size_t chunks = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        const size_t lo = c * EW_CHUNK, len = n - lo < EW_CHUNK ? n - lo : EW_CHUNK;
        memset(y + lo, 0, sizeof(float) * len);
    }
}

/* One row: y[D] = x[D] + k·(br[D] + bias[D]), the bias of the linear layer that made br added
 * where br is read anyway rather than filled into its output before the GEMM (bias may be
 * NULL: y = x + k·br). */
void mvmoe_residual_row(float *y, const float *x, const float *br, const float *bias, float k, int D) {
    if (bias)
        for (int d = 0; d < D; d++) y[d] = x[d] + k * (br[d] + bias[d]);
    else
        for (int d = 0; d < D; d++) y[d] = x[d] + k * br[d];
}

void mvmoe_residual_add(float *y, const float *x, const float *br, const float *bias,
                        const float *keep, int T, int r0, int M, int D) {
    const int par = (size_t)M * D >= EW_CHUNK && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int r = 0; r < M; r++) {
        const size_t base = (size_t)r * D;
        mvmoe_residual_row(y + base, x + base, br + base, bias, keep[(r0 + r) / T], D);
    }
}
