/* The private SIMD layer of the kernels (src/kernels/simd.h): vector exp and erf against
 * double precision over dense grids (the accuracy simd.h promises), NaN propagation, and the
 * reductions / softmax row helper against double sums at every tail length. */
#include <math.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/simd.h"

static void test_exp_erf(void) {
#if MVMOE_SIMD_AVX2
    double worst_exp = 0, worst_erf = 0;
    for (long i = 0; i <= 1754000; i += 8) { /* exp on [-87.3, 88.1] step 1e-4 */
        float x[8], y[8];
        for (int l = 0; l < 8; l++) x[l] = (float)(-87.3 + 1e-4 * (double)(i + l));
        _mm256_storeu_ps(y, mvmoe_simd_exp8(_mm256_loadu_ps(x)));
        for (int l = 0; l < 8; l++) {
            double want = exp((double)x[l]);
            worst_exp = fmax(worst_exp, fabs(y[l] - want) / want);
        }
    }
    for (long i = 0; i <= 160000; i += 8) { /* erf on [-8, 8] step 1e-4 */
        float x[8], y[8];
        for (int l = 0; l < 8; l++) x[l] = (float)(-8.0 + 1e-4 * (double)(i + l));
        _mm256_storeu_ps(y, mvmoe_simd_erf8(_mm256_loadu_ps(x)));
        for (int l = 0; l < 8; l++) worst_erf = fmax(worst_erf, fabs(y[l] - erf((double)x[l])));
    }
    printf("  exp8 max rel err %.3g, erf8 max abs err %.3g\n", worst_exp, worst_erf);
    CHECK(worst_exp < 1.5e-7, "mvmoe_simd_exp8 max rel err %.3g (promised < 1.5e-7)", worst_exp);
    CHECK(worst_erf < 1e-7, "mvmoe_simd_erf8 max abs err %.3g (promised < 1e-7)", worst_erf);
    float sp[8] = {NAN, 0.0f, -1000.0f, 1000.0f, -INFINITY, INFINITY, 1e-30f, -0.0f}, e[8], f[8];
    _mm256_storeu_ps(e, mvmoe_simd_exp8(_mm256_loadu_ps(sp)));
    _mm256_storeu_ps(f, mvmoe_simd_erf8(_mm256_loadu_ps(sp)));
    CHECK(isnan(e[0]) && isnan(f[0]), "NaN must propagate: exp %g erf %g", e[0], f[0]);
    CHECK(e[1] == 1.0f && f[1] == 0.0f && f[7] == 0.0f, "exp(0) = %g, erf(0) = %g", e[1], f[1]);
    CHECK(e[2] >= 0.0f && e[2] < 2e-38f && e[4] >= 0.0f && e[4] < 2e-38f,
          "exp(-1000) = %g, exp(-inf) = %g, want ~0", e[2], e[4]);
    CHECK(isfinite(e[3]) && e[3] > 1e38f, "exp(1000) = %g, want large finite (clamped)", e[3]);
    CHECK(f[4] == -1.0f && f[5] == 1.0f && f[2] == -1.0f && f[3] == 1.0f,
          "erf(±inf, ±1000) = %g %g %g %g", f[4], f[5], f[2], f[3]);
    CHECK(fabsf(f[6] - 1.1283792e-30f) < 1e-36f, "erf(1e-30) = %g", f[6]);
#else
    printf("  (not an AVX2 + FMA build: scalar fallbacks, nothing vector to test)\n");
#endif
}

static void test_reductions(void) {
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 81, 0);
    float a[300], b[300], y[300];
    kc_fill_normal(a, 300, &rng, 1.0f);
    kc_fill_normal(b, 300, &rng, 1.0f);
    int bad = 0;
    for (int n = 1; n <= 300; n += (n < 40 ? 1 : 37)) {
        double s = 0, d = 0, q = 0, mx = a[0], m = 0.3, es = 0, sa = 0;
        for (int i = 0; i < n; i++) {
            s += a[i], d += (double)a[i] * b[i], q += (a[i] - m) * (a[i] - m);
            mx = a[i] > mx ? a[i] : mx;
            sa += fabs(a[i]);
        }
        for (int i = 0; i < n; i++) es += exp(a[i] - mx);
        const double tol = 1e-6 * (sa + 1);
        bad += fabs(mvmoe_simd_sum(a, n) - s) > tol;
        bad += fabs(mvmoe_simd_dot(a, b, n) - d) > tol * 4;
        bad += fabs(mvmoe_simd_sqdev(a, (float)m, n) - q) > 1e-6 * q + 1e-7;
        bad += mvmoe_simd_max(a, n) != (float)mx;
        memset(y, 0x7f, sizeof y); /* sentinel beyond n must survive */
        float got = mvmoe_simd_exp_shift_sum(y, a, (float)mx, n);
        bad += fabs(got - es) > 1e-6 * es;
        for (int i = 0; i < n; i++) bad += fabs(y[i] - exp(a[i] - mx)) > 2e-7;
        if (n < 300) bad += y[n] != y[299] || !(y[n] > 3e38f);
        if (bad) {
            printf("  reductions wrong at n = %d\n", n);
            break;
        }
    }
    CHECK(bad == 0, "sum/dot/sqdev/max/exp_shift_sum disagree with double (%d errors)", bad);
}

int main(void) {
    test_exp_erf();
    test_reductions();
    TEST_MAIN_END("test_simd");
}
