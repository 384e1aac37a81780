/* Elementwise helpers (residual adds). Each element is touched by one thread, so results do
 * not depend on the thread count. */
#include <stddef.h>

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
