/* Elementwise helpers: mvmoe_add_inplace equals a plain float loop exactly, at sizes below and
 * above the threading chunk, with 1 and 2 threads. */
#include <omp.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/kernels.h"

int main(void) {
    const size_t sizes[] = {1, 17, 16384, 16385, 100003};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 71, 0);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        const size_t n = sizes[s];
        float *x = kc_alloc(n), *y0 = kc_alloc(n), *want = kc_alloc(n);
        kc_fill_normal(x, n, &rng, 1.0f);
        kc_fill_normal(y0, n, &rng, 1.0f);
        for (size_t i = 0; i < n; i++) want[i] = y0[i] + x[i];
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            float *y = kc_dup(y0, n);
            mvmoe_add_inplace(y, x, n);
            CHECK(!memcmp(y, want, n * sizeof *y), "add_inplace n=%zu threads=%d: wrong sum", n, th);
            free(y);
        }
        free(x), free(y0), free(want);
    }
    float z = 1.0f;
    mvmoe_add_inplace(&z, &z, 0); /* n = 0: no-op */
    CHECK(z == 1.0f, "add_inplace n=0 changed its target");
    TEST_MAIN_END("test_elementwise");
}
