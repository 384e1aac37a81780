/* Shared helpers of the kernel tests: random tensors, norms, and a central finite-difference
 * gradient of a scalar objective. Test code, so a failed allocation just aborts the test. */
#ifndef MVMOE_TESTS_KERNEL_CHECK_H
#define MVMOE_TESTS_KERNEL_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "test_util.h"

/* The fast kernels must match their references to float rounding (brief: rel err < 1e-5). */
#define KC_FAST_TOL 1e-5
/* Finite differences in float with step KC_FD_EPS: the analytic gradient must match the
 * numeric one within KC_FD_TOL in whole-tensor relative L2 norm. Expected error is ~1e-4
 * (output rounding / step, plus O(step²) truncation), so 1e-2 leaves margin yet catches any
 * wrong term (a missing or doubled term gives errors of order 1). */
#define KC_FD_EPS 1e-2f
#define KC_FD_TOL 1e-2

static inline float *kc_alloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        fprintf(stderr, "kernel test: out of memory allocating %zu floats\n", n);
        exit(2);
    }
    return p;
}

static inline float *kc_dup(const float *x, size_t n) {
    float *p = kc_alloc(n);
    memcpy(p, x, n * sizeof *p);
    return p;
}

static inline void kc_fill_normal(float *x, size_t n, mvmoe_rng *r, float sd) {
    for (size_t i = 0; i < n; i++) x[i] = sd * mvmoe_rng_normal(r);
}

static inline void kc_fill_uniform(float *x, size_t n, mvmoe_rng *r, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * mvmoe_rng_uniform(r);
}

static inline double kc_norm(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

/* ||a - b|| / ||b|| (b the trusted one). */
static inline double kc_rel_norm_err(const float *a, const float *b, size_t n) {
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        d += e * e;
        s += (double)b[i] * b[i];
    }
    if (d != d) return INFINITY;
    return s > 0 ? sqrt(d / s) : (d > 0 ? INFINITY : 0.0);
}

/* Σ r ⊙ out accumulated in double: the scalar objective of the gradient checks. */
static inline double kc_weighted_sum(const float *out, const float *r, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * out[i];
    return s;
}

/* num[i] = (L(x_i + eps) - L(x_i - eps)) / (2 eps) for every element of x (restored after). */
typedef double (*kc_objective)(void *ctx);
static inline void kc_numeric_grad(float *num, float *x, size_t n, float eps, kc_objective f,
                                   void *ctx) {
    for (size_t i = 0; i < n; i++) {
        const float x0 = x[i];
        x[i] = x0 + eps;
        const float hp = x[i] - x0; /* the step actually taken, after float rounding */
        double lp = f(ctx);
        x[i] = x0 - eps;
        const float hm = x0 - x[i];
        double lm = f(ctx);
        x[i] = x0;
        num[i] = (float)((lp - lm) / ((double)hp + hm));
    }
}

/* Checks analytic vs numeric gradient: relative L2 error under KC_FD_TOL and an analytic norm
 * above min_norm (so an all-zero or missing gradient cannot pass). */
#define KC_CHECK_GRAD(what, analytic, numeric, n, min_norm)                                     \
    do {                                                                                        \
        double e_ = kc_rel_norm_err((analytic), (numeric), (n));                                \
        double na_ = kc_norm((analytic), (n));                                                  \
        CHECK(e_ < KC_FD_TOL, "%s: finite-difference rel err %.3g (tol %.1g)", (what), e_,      \
              KC_FD_TOL);                                                                       \
        CHECK(na_ > (min_norm), "%s: analytic gradient norm %.3g not above %.3g", (what), na_,  \
              (double)(min_norm));                                                              \
        printf("  %-40s fd rel err %.2e  |grad| %.3g\n", (what), e_, na_);                      \
    } while (0)

/* fast vs ref within KC_FAST_TOL (max abs diff over max |ref|, tu_rel_err). */
#define KC_CHECK_CLOSE(what, fast, ref, n)                                                      \
    do {                                                                                        \
        double e_ = tu_rel_err((fast), (ref), (n), 1e-6);                                       \
        CHECK(e_ < KC_FAST_TOL, "%s: fast vs ref rel err %.3g (tol %.1g)", (what), e_,          \
              KC_FAST_TOL);                                                                     \
        CHECK(kc_norm((ref), (n)) > 0, "%s: reference output is all zero (vacuous test)", (what)); \
    } while (0)

#endif
