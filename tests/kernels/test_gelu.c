/* Exact GELU: known values, accuracy of the fast (vector erf/exp) version against double
 * precision over a dense grid, fast vs reference at several sizes and thread counts,
 * finite-difference check of the backward, and += accumulation. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/kernels.h"

typedef struct {
    float *x, *r, *out;
    size_t n;
} gelu_ctx;

static double gelu_objective(void *p) {
    gelu_ctx *c = p;
    mvmoe_gelu_forward_ref(c->out, c->x, NULL, 1, c->n);
    return kc_weighted_sum(c->out, c->r, c->n);
}

static double gelu_exact(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double gelu_grad_exact(double x) {
    return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

static void test_known_values(void) {
    /* 0.5·x·(1 + erf(x/√2)) in double (Python math.erf); gelu(1) is the brief's value */
    float x[5] = {1.0f, -1.0f, 0.0f, 2.0f, -3.0f};
    const double want[5] = {0.8413447460685429, -0.15865525393145707, 0.0, 1.9544997361036416,
                            -0.00404969409489031};
    float y[5], yr[5];
    mvmoe_gelu_forward(y, x, NULL, 1, 5, MVMOE_GELU_PLAIN);
    mvmoe_gelu_forward_ref(yr, x, NULL, 1, 5);
    for (int i = 0; i < 5; i++) {
        /* about one float ulp of the result, in the absolute sense of 0.5·x·(1+erf) */
        double tol = 1.5e-7 * fmax(1.0, fabs(x[i]));
        CHECK(fabs(y[i] - want[i]) <= tol, "fast gelu(%g) = %.9g, want %.9g", x[i], y[i], want[i]);
        CHECK(fabs(yr[i] - want[i]) <= tol, "ref gelu(%g) = %.9g, want %.9g", x[i], yr[i], want[i]);
    }
    CHECK(y[2] == 0.0f, "gelu(0) = %g, want exactly 0", y[2]);
    /* derivative: gelu'(0) = 0.5, gelu'(1) = Φ(1) + φ(1) */
    const float gx[2] = {0.0f, 1.0f}, ones[2] = {1.0f, 1.0f};
    const double gwant[2] = {0.5, 0.8413447460685429 + 0.24197072451914337};
    float g[2] = {0}, gr[2] = {0};
    mvmoe_gelu_backward(g, ones, gx, 2, MVMOE_GRAD_ACCUMULATE);
    mvmoe_gelu_backward_ref(gr, ones, gx, 2);
    for (int i = 0; i < 2; i++) {
        CHECK(fabs(g[i] - gwant[i]) < 2e-7, "fast gelu'(%g) = %.9g, want %.9g", gx[i], g[i], gwant[i]);
        CHECK(fabs(gr[i] - gwant[i]) < 2e-7, "ref gelu'(%g) = %.9g, want %.9g", gx[i], gr[i], gwant[i]);
    }
    /* NaN must propagate (the trainer detects divergence through it) */
    float nx[9], ny[9], nd[9] = {0}, n1[9];
    for (int i = 0; i < 9; i++) nx[i] = n1[i] = 1.0f;
    nx[3] = NAN;
    mvmoe_gelu_forward(ny, nx, NULL, 1, 9, MVMOE_GELU_PLAIN);
    mvmoe_gelu_backward(nd, n1, nx, 9, MVMOE_GRAD_ACCUMULATE);
    CHECK(isnan(ny[3]) && isnan(nd[3]), "gelu(NaN) = %g, gelu'(NaN) = %g, want NaN", ny[3], nd[3]);
    CHECK(!isnan(ny[2]) && !isnan(nd[4]), "NaN leaked into neighbouring lanes");
}

/* The fast path's own erf/exp: absolute error against double over a dense grid. */
static void test_dense_accuracy(void) {
    const size_t n = 240001; /* [-12, 12] step 1e-4 */
    float *x = kc_alloc(n), *y = kc_alloc(n), *g = kc_alloc(n), *one = kc_alloc(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)(-12.0 + 1e-4 * (double)i);
        one[i] = 1.0f;
    }
    mvmoe_gelu_forward(y, x, NULL, 1, n, MVMOE_GELU_PLAIN);
    mvmoe_gelu_backward(g, one, x, n, MVMOE_GRAD_ACCUMULATE);
    double worst_y = 0, worst_g = 0;
    for (size_t i = 0; i < n; i++) {
        double s = fmax(1.0, fabs(x[i]));
        worst_y = fmax(worst_y, fabs(y[i] - gelu_exact(x[i])) / s);
        worst_g = fmax(worst_g, fabs(g[i] - gelu_grad_exact(x[i])) / s);
    }
    printf("  dense grid [-12,12]: max |err|/max(1,|x|): forward %.3g, backward %.3g\n", worst_y,
           worst_g);
    CHECK(worst_y < 1.5e-7, "fast gelu forward error %.3g over the grid (tol 1.5e-7)", worst_y);
    CHECK(worst_g < 3e-7, "fast gelu backward error %.3g over the grid (tol 3e-7)", worst_g);
    free(x), free(y), free(g), free(one);
}

static void test_fast_vs_ref(void) {
    const size_t sizes[] = {1, 7, 8, 1000, 100003};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 11, 0);
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const size_t n = sizes[si];
        float *x = kc_alloc(n), *dy = kc_alloc(n), *g0 = kc_alloc(n);
        kc_fill_normal(x, n, &rng, 3.0f);
        kc_fill_normal(dy, n, &rng, 1.0f);
        kc_fill_normal(g0, n, &rng, 1.0f);
        float *yr = kc_alloc(n), *gr = kc_dup(g0, n);
        mvmoe_gelu_forward_ref(yr, x, NULL, 1, n);
        mvmoe_gelu_backward_ref(gr, dy, x, n);
        float *y1 = NULL, *g1 = NULL;
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            float *y = kc_alloc(n), *g = kc_dup(g0, n);
            for (size_t i = 0; i < n; i++) y[i] = NAN; /* must be overwritten */
            mvmoe_gelu_forward(y, x, NULL, 1, n, MVMOE_GELU_PLAIN);
            mvmoe_gelu_backward(g, dy, x, n, MVMOE_GRAD_ACCUMULATE);
            char what[96];
            snprintf(what, sizeof what, "gelu forward n=%zu threads=%d", n, th);
            KC_CHECK_CLOSE(what, y, yr, n);
            snprintf(what, sizeof what, "gelu backward n=%zu threads=%d", n, th);
            KC_CHECK_CLOSE(what, g, gr, n);
            if (th == 1) {
                y1 = y, g1 = g;
            } else {
                CHECK(!memcmp(y, y1, n * sizeof *y) && !memcmp(g, g1, n * sizeof *g),
                      "gelu n=%zu: 1 and 2 threads differ (must be bit-identical)", n);
                free(y), free(g);
            }
        }
        free(y1), free(g1), free(x), free(dy), free(g0), free(yr), free(gr);
    }
    omp_set_num_threads(1);
}

static void test_gradients(void) {
    const size_t n = 203;
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 12, 0);
    gelu_ctx c = {kc_alloc(n), kc_alloc(n), kc_alloc(n), n};
    for (size_t i = 0; i < n; i++) c.x[i] = -5.0f + 10.0f * (float)i / (float)(n - 1);
    kc_fill_normal(c.r, n, &rng, 1.0f);
    float *num = kc_alloc(n), *ga = kc_alloc(n), *gr = kc_alloc(n);
    kc_numeric_grad(num, c.x, n, KC_FD_EPS, gelu_objective, &c);
    mvmoe_gelu_backward(ga, c.r, c.x, n, MVMOE_GRAD_ACCUMULATE);
    mvmoe_gelu_backward_ref(gr, c.r, c.x, n);
    KC_CHECK_GRAD("gelu din (fast)", ga, num, n, 1.0);
    KC_CHECK_GRAD("gelu din (ref)", gr, num, n, 1.0);

    /* accumulation: a second call adds the same gradient again */
    float *twice = kc_dup(ga, n);
    mvmoe_gelu_backward(twice, c.r, c.x, n, MVMOE_GRAD_ACCUMULATE);
    for (size_t i = 0; i < n; i++) ga[i] *= 2.0f;
    double e = tu_rel_err(twice, ga, n, 1e-6);
    CHECK(e < 1e-6, "gelu backward does not accumulate: 2 calls vs 2x one call rel err %.3g", e);
    float *rt = kc_dup(gr, n);
    mvmoe_gelu_backward_ref(rt, c.r, c.x, n);
    for (size_t i = 0; i < n; i++) gr[i] *= 2.0f;
    e = tu_rel_err(rt, gr, n, 1e-6);
    CHECK(e < 1e-6, "gelu backward_ref does not accumulate: rel err %.3g", e);
    mvmoe_gelu_backward(NULL, c.r, c.x, n, MVMOE_GRAD_ACCUMULATE); /* NULL gradient: skipped, must not crash */
    mvmoe_gelu_backward_ref(NULL, c.r, c.x, n);
    free(c.x), free(c.r), free(c.out), free(num), free(ga), free(gr), free(twice), free(rt);
}

/* The AVX-512 and AVX2 versions give the same bits (chosen at run time, isa.c), on ordinary
 * values, every tail length, huge/tiny/signed zero/inf/NaN inputs; the AVX-512 run is skipped
 * with a message on a CPU without it. */
static void test_isa_same_bits(void) {
    if (mvmoe_isa_force(512) != 0) {
        printf("skip: this CPU has no AVX-512F/DQ; only the AVX2 GELU runs here\n");
        return;
    }
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 77, 0);
    const size_t N = 40000 + 13;
    float *x = malloc(sizeof(float) * N), *dy = malloc(sizeof(float) * N);
    for (size_t i = 0; i < N; i++) {
        x[i] = 4.0f * mvmoe_rng_normal(&rng);
        dy[i] = mvmoe_rng_normal(&rng);
    }
    const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 3.9999f, 4.0f, -4.5f, 30.0f, -30.0f,
                             100.0f, -100.0f, INFINITY, -INFINITY, NAN};
    memcpy(x, special, sizeof special);
    for (size_t n = 1; n <= N; n = n < 40 ? n + 1 : n * 3) {
        float *o[2], *g[2];
        for (int w = 0; w < 2; w++) {
            CHECK(mvmoe_isa_force(w ? 512 : 256) == 0 && mvmoe_isa_width() == (w ? 512 : 256), "force isa");
            o[w] = malloc(sizeof(float) * n);
            g[w] = malloc(sizeof(float) * n);
            for (size_t i = 0; i < n; i++) g[w][i] = 0.25f;
            mvmoe_gelu_forward(o[w], x, NULL, 1, n, MVMOE_GELU_PLAIN);
            mvmoe_gelu_backward(g[w], dy, x, n, MVMOE_GRAD_ACCUMULATE);
        }
        CHECK(!memcmp(o[0], o[1], sizeof(float) * n), "n=%zu: AVX-512 GELU forward differs from AVX2", n);
        CHECK(!memcmp(g[0], g[1], sizeof(float) * n), "n=%zu: AVX-512 GELU backward differs from AVX2", n);
        /* overwrite, here in place (din = dout), on both ISAs: the bits of accumulating into
         * zeros */
        for (int w = 0; w < 2; w++) {
            CHECK(mvmoe_isa_force(w ? 512 : 256) == 0, "force isa");
            float *z = calloc(n, sizeof(float)), *ip = malloc(sizeof(float) * n);
            memcpy(ip, dy, sizeof(float) * n);
            mvmoe_gelu_backward(z, dy, x, n, MVMOE_GRAD_ACCUMULATE);
            mvmoe_gelu_backward(ip, ip, x, n, MVMOE_GRAD_OVERWRITE);
            CHECK(!memcmp(z, ip, sizeof(float) * n),
                  "n=%zu isa=%d: in-place GELU backward (overwrite) differs from zero + accumulate", n, w ? 512 : 256);
            free(z), free(ip);
        }
        for (int w = 0; w < 2; w++) free(o[w]), free(g[w]);
    }
    mvmoe_isa_force(0);
    free(x), free(dy);
}

/* fc1's bias folded into GELU (mvmoe_gelu_forward with b): pre gets the bias, out its GELU; the
 * same as adding the bias and calling mvmoe_gelu_forward (bits), and close to the reference;
 * 1 and 2 threads give the same bits; row lengths not a multiple of the vector width. */
static void test_bias_forward(void) {
    const int shapes[][2] = {{3, 5}, {50, 256}, {700, 37}, {1, 9000}, {129, 768}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 91, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const size_t M = (size_t)shapes[s][0], n = M * shapes[s][1];
        const int N = shapes[s][1];
        float *pre0 = kc_alloc(n), *b = kc_alloc(N), *pre = kc_alloc(n), *out = kc_alloc(n);
        float *pre_r = kc_alloc(n), *out_r = kc_alloc(n), *pre_s = kc_alloc(n), *out_s = kc_alloc(n);
        float *out1 = kc_alloc(n);
        kc_fill_normal(pre0, n, &rng, 2.0f);
        kc_fill_normal(b, N, &rng, 1.0f);
        memcpy(pre_r, pre0, n * sizeof(float));
        mvmoe_gelu_forward_ref(out_r, pre_r, b, M, N);
        memcpy(pre_s, pre0, n * sizeof(float));
        for (size_t i = 0; i < M; i++)
            for (int j = 0; j < N; j++) pre_s[i * N + j] += b[j];
        mvmoe_gelu_forward(out_s, pre_s, NULL, 1, n, MVMOE_GELU_PLAIN);
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            memcpy(pre, pre0, n * sizeof(float));
            mvmoe_gelu_forward(out, pre, b, M, N, MVMOE_GELU_PLAIN);
            char what[80];
            snprintf(what, sizeof what, "gelu+bias M=%zu N=%d threads=%d", M, N, th);
            KC_CHECK_CLOSE(what, out, out_r, n);
            CHECK(!memcmp(pre, pre_s, n * sizeof(float)) && !memcmp(out, out_s, n * sizeof(float)),
                  "gelu+bias M=%zu N=%d threads=%d: not the bits of bias add + gelu_forward", M, N, th);
            if (th == 1) memcpy(out1, out, n * sizeof(float));
            else CHECK(!memcmp(out, out1, n * sizeof(float)), "gelu+bias M=%zu N=%d: 1 and 2 threads differ", M, N);
            /* b NULL (the product added the bias): pre untouched, out = gelu(pre) */
            memcpy(pre, pre_s, n * sizeof(float));
            memset(out, 0xff, n * sizeof(float));
            mvmoe_gelu_forward(out, pre, NULL, M, N, MVMOE_GELU_PLAIN);
            CHECK(!memcmp(pre, pre_s, n * sizeof(float)) && !memcmp(out, out_s, n * sizeof(float)),
                  "gelu, no bias, M=%zu N=%d threads=%d: not the bits of gelu_forward", M, N, th);
        }
        free(pre0), free(b), free(pre), free(out), free(pre_r), free(out_r), free(pre_s), free(out_s), free(out1);
    }
    omp_set_num_threads(1);
}

/* Training's fused version (MVMOE_GELU_SAVE_GRAD): out has the bits of the plain forward, and
 * pre ends up holding GELU' so that mvmoe_gelu_backward_saved gives the bits of
 * mvmoe_gelu_backward on the pre-activations (overwriting and accumulating); both ISAs, 1 and 2
 * threads, tails, special values (±0, ±inf, NaN, large |x|), and a check of GELU' against the
 * double-precision derivative so the pair cannot agree on something wrong. */
static void test_bias_forward_grad(void) {
    const int shapes[][2] = {{3, 5}, {50, 256}, {700, 37}, {1, 9000}, {129, 768}};
    const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 4.0f, -4.5f, 30.0f, -30.0f, INFINITY, -INFINITY, NAN};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 92, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const size_t M = (size_t)shapes[s][0], n = M * shapes[s][1];
        const int N = shapes[s][1];
        float *pre0 = kc_alloc(n), *b = kc_alloc(N), *dy = kc_alloc(n);
        float *pre = kc_alloc(n), *out = kc_alloc(n), *pre_s = kc_alloc(n), *out_s = kc_alloc(n);
        float *d = kc_alloc(n), *d_s = kc_alloc(n);
        kc_fill_normal(pre0, n, &rng, 2.0f);
        kc_fill_normal(b, N, &rng, 1.0f);
        kc_fill_normal(dy, n, &rng, 1.0f);
        memcpy(pre0, special, (n < 11 ? n : 11) * sizeof(float));
        memset(b, 0, sizeof(float) * (N < 11 ? N : 11)); /* the special values stay special */
        for (int isa = 256; isa <= 512; isa += 256) {
            if (mvmoe_isa_force(isa) != 0) continue;
            for (int th = 1; th <= 2; th++) {
                omp_set_num_threads(th);
                memcpy(pre_s, pre0, n * sizeof(float));
                mvmoe_gelu_forward(out_s, pre_s, b, M, N, MVMOE_GELU_PLAIN);
                mvmoe_gelu_backward(d_s, dy, pre_s, n, MVMOE_GRAD_OVERWRITE);
                memcpy(pre, pre0, n * sizeof(float));
                mvmoe_gelu_forward(out, pre, b, M, N, MVMOE_GELU_SAVE_GRAD);
                mvmoe_gelu_backward_saved(d, dy, pre, n, MVMOE_GRAD_OVERWRITE);
                CHECK(!memcmp(out, out_s, n * sizeof(float)),
                      "gelu+bias+grad M=%zu N=%d isa=%d threads=%d: forward not the bits of gelu_bias_forward", M, N,
                      isa, th);
                CHECK(!memcmp(d, d_s, n * sizeof(float)),
                      "gelu backward from saved GELU' M=%zu N=%d isa=%d threads=%d: not the bits of the recomputing one",
                      M, N, isa, th);
                /* accumulating: into the same nonzero gradient, the bits of the recomputing one */
                for (size_t i = 0; i < n; i++) d[i] = d_s[i] = 0.25f * dy[(i * 7) % n];
                mvmoe_gelu_backward(d_s, dy, pre_s, n, MVMOE_GRAD_ACCUMULATE);
                mvmoe_gelu_backward_saved(d, dy, pre, n, MVMOE_GRAD_ACCUMULATE);
                CHECK(!memcmp(d, d_s, n * sizeof(float)),
                      "gelu backward from saved GELU', accumulating, M=%zu N=%d isa=%d threads=%d: not the "
                      "bits of the recomputing one", M, N, isa, th);
                double worst = 0;
                for (size_t i = 0; i < n; i++) {
                    double x = pre_s[i];
                    if (!isfinite(x) || fabs(x) > 20) continue;
                    worst = fmax(worst, fabs(pre[i] - gelu_grad_exact(x)));
                }
                CHECK(worst < 2e-6, "GELU' saved by the forward M=%zu N=%d isa=%d: off by %.3g", M, N, isa, worst);
            }
        }
        mvmoe_isa_force(0);
        free(pre0), free(b), free(dy), free(pre), free(out), free(pre_s), free(out_s), free(d), free(d_s);
    }
    omp_set_num_threads(1);
}

int main(void) {
    omp_set_num_threads(1);
    test_bias_forward();
    test_bias_forward_grad();
    test_isa_same_bits();
    test_known_values();
    test_dense_accuracy();
    test_fast_vs_ref();
    test_gradients();
    TEST_MAIN_END("test_gelu");
}
