/* LayerNorm: known values, fast vs reference (forward and backward, 1 and 2 threads, several
 * widths), finite-difference checks of din/dw/db, += accumulation and NULL gradients. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/kernels.h"

#define EPS 1e-6f

typedef struct {
    float *x, *w, *b, *r, *out, *mean, *rstd;
    int M, D;
} ln_ctx;

static double ln_objective(void *p) {
    ln_ctx *c = p;
    mvmoe_layernorm_forward_ref(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->M, c->D, EPS);
    return kc_weighted_sum(c->out, c->r, (size_t)c->M * c->D);
}

static void test_known_values(void) {
    /* a constant row normalizes to 0, so the output is exactly the bias */
    enum { D = 24 };
    float x[D], w[D], b[D], y[D], yr[D], mean, rstd;
    for (int c = 0; c < D; c++) x[c] = 3.25f, w[c] = 1.0f + c, b[c] = 0.1f * c - 1.0f;
    mvmoe_layernorm_forward(y, &mean, &rstd, x, w, b, 1, D, EPS);
    mvmoe_layernorm_forward_ref(yr, &mean, &rstd, x, w, b, 1, D, EPS);
    int same = 1;
    for (int c = 0; c < D; c++) same &= y[c] == b[c] && yr[c] == b[c];
    CHECK(same, "layernorm of a constant row must give the bias exactly");
    CHECK(fabsf(rstd - 1000.0f) < 1e-3f, "rstd of a constant row = %g, want 1/sqrt(eps) = 1000",
          rstd);
    /* [1,2,3,4]: mean 2.5, biased var 1.25 -> (x - 2.5)/sqrt(1.25 + eps) */
    const float x4[4] = {1, 2, 3, 4}, w4[4] = {1, 1, 1, 1}, b4[4] = {0, 0, 0, 0};
    float y4[4], y4r[4];
    mvmoe_layernorm_forward(y4, &mean, &rstd, x4, w4, b4, 1, 4, EPS);
    for (int c = 0; c < 4; c++) {
        double want = (x4[c] - 2.5) / sqrt(1.25 + 1e-6);
        CHECK(fabs(y4[c] - want) < 2e-7, "fast layernorm([1,2,3,4])[%d] = %.9g, want %.9g", c,
              y4[c], want);
    }
    CHECK(mean == 2.5f, "mean of [1,2,3,4] = %g", mean);
    mvmoe_layernorm_forward_ref(y4r, &mean, &rstd, x4, w4, b4, 1, 4, EPS);
    for (int c = 0; c < 4; c++) {
        double want = (x4[c] - 2.5) / sqrt(1.25 + 1e-6);
        CHECK(fabs(y4r[c] - want) < 2e-7, "ref layernorm([1,2,3,4])[%d] = %.9g, want %.9g", c,
              y4r[c], want);
    }
    /* large offset: a one-pass E[x²]-E[x]² in float would lose the variance entirely */
    float xo[8], w8[8], b8[8], yo[8];
    for (int c = 0; c < 8; c++) xo[c] = 10000.0f + (c % 2 ? 1.0f : -1.0f), w8[c] = 1, b8[c] = 0;
    mvmoe_layernorm_forward(yo, &mean, &rstd, xo, w8, b8, 1, 8, EPS);
    CHECK(fabsf(yo[0] + 1.0f) < 1e-5f && fabsf(yo[1] - 1.0f) < 1e-5f,
          "layernorm with offset 1e4: got %g, %g, want -1, 1", yo[0], yo[1]);
}

static void test_fast_vs_ref(void) {
    const int shapes[][2] = {{1, 24}, {37, 24}, {50, 64}, {100, 192}, {300, 64}, {3, 13},
                             {70, 400} /* wider than the fused dw/db pass takes */, {900, 24}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 21, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int M = shapes[s][0], D = shapes[s][1];
        const size_t n = (size_t)M * D;
        float *x = kc_alloc(n), *w = kc_alloc(D), *b = kc_alloc(D), *dy = kc_alloc(n);
        float *dx0 = kc_alloc(n), *dw0 = kc_alloc(D), *db0 = kc_alloc(D);
        kc_fill_normal(x, n, &rng, 2.0f);
        for (size_t i = 0; i < n; i++) x[i] += 0.5f * (float)(i % 7); /* non-zero row means */
        kc_fill_normal(w, D, &rng, 1.0f);
        kc_fill_normal(b, D, &rng, 1.0f);
        kc_fill_normal(dy, n, &rng, 1.0f);
        kc_fill_normal(dx0, n, &rng, 1.0f);
        kc_fill_normal(dw0, D, &rng, 1.0f);
        kc_fill_normal(db0, D, &rng, 1.0f);
        float *yr = kc_alloc(n), *mr = kc_alloc(M), *rr = kc_alloc(M);
        float *dxr = kc_dup(dx0, n), *dwr = kc_dup(dw0, D), *dbr = kc_dup(db0, D);
        mvmoe_layernorm_forward_ref(yr, mr, rr, x, w, b, M, D, EPS);
        mvmoe_layernorm_backward_ref(dxr, dwr, dbr, dy, mr, rr, x, w, M, D);
        float *keep[5] = {0};
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            float *y = kc_alloc(n), *m = kc_alloc(M), *r = kc_alloc(M);
            float *dx = kc_dup(dx0, n), *dw = kc_dup(dw0, D), *db = kc_dup(db0, D);
            for (size_t i = 0; i < n; i++) y[i] = NAN; /* outputs must be overwritten */
            for (int i = 0; i < M; i++) m[i] = r[i] = NAN;
            mvmoe_layernorm_forward(y, m, r, x, w, b, M, D, EPS);
            mvmoe_layernorm_backward(dx, dw, db, dy, m, r, x, w, M, D);
            char what[96];
            snprintf(what, sizeof what, "layernorm out M=%d D=%d threads=%d", M, D, th);
            KC_CHECK_CLOSE(what, y, yr, n);
            snprintf(what, sizeof what, "layernorm mean M=%d D=%d threads=%d", M, D, th);
            KC_CHECK_CLOSE(what, m, mr, M);
            snprintf(what, sizeof what, "layernorm rstd M=%d D=%d threads=%d", M, D, th);
            KC_CHECK_CLOSE(what, r, rr, M);
            snprintf(what, sizeof what, "layernorm din M=%d D=%d threads=%d", M, D, th);
            KC_CHECK_CLOSE(what, dx, dxr, n);
            snprintf(what, sizeof what, "layernorm dw M=%d D=%d threads=%d", M, D, th);
            KC_CHECK_CLOSE(what, dw, dwr, D);
            snprintf(what, sizeof what, "layernorm db M=%d D=%d threads=%d", M, D, th);
            KC_CHECK_CLOSE(what, db, dbr, D);
            float *got[5] = {y, dx, dw, db, r};
            const size_t len[5] = {n, n, D, D, M};
            for (int k = 0; k < 5; k++) {
                if (th == 1) {
                    keep[k] = got[k];
                } else {
                    CHECK(!memcmp(got[k], keep[k], len[k] * sizeof(float)),
                          "layernorm M=%d D=%d tensor %d: 1 and 2 threads differ", M, D, k);
                    free(got[k]);
                    free(keep[k]);
                }
            }
            free(m); /* r is kept / freed through got[4] */
        }
        free(x), free(w), free(b), free(dy), free(dx0), free(dw0), free(db0);
        free(yr), free(mr), free(rr), free(dxr), free(dwr), free(dbr);
    }
    omp_set_num_threads(1);
}

static void test_gradients(void) {
    enum { M = 4, D = 24 };
    const size_t n = (size_t)M * D;
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 22, 0);
    ln_ctx c = {kc_alloc(n), kc_alloc(D), kc_alloc(D), kc_alloc(n), kc_alloc(n), kc_alloc(M),
                kc_alloc(M), M, D};
    kc_fill_normal(c.x, n, &rng, 1.5f);
    kc_fill_normal(c.w, D, &rng, 1.0f);
    kc_fill_normal(c.b, D, &rng, 1.0f);
    kc_fill_normal(c.r, n, &rng, 1.0f);
    float *nx = kc_alloc(n), *nw = kc_alloc(D), *nb = kc_alloc(D);
    kc_numeric_grad(nx, c.x, n, KC_FD_EPS, ln_objective, &c);
    kc_numeric_grad(nw, c.w, D, KC_FD_EPS, ln_objective, &c);
    kc_numeric_grad(nb, c.b, D, KC_FD_EPS, ln_objective, &c);
    ln_objective(&c); /* restore mean/rstd of the unperturbed input */
    for (int fast = 1; fast >= 0; fast--) {
        float *dx = kc_alloc(n), *dw = kc_alloc(D), *db = kc_alloc(D);
        void (*bw)(float *, float *, float *, const float *, const float *, const float *,
                   const float *, const float *, int, int) =
            fast ? mvmoe_layernorm_backward : mvmoe_layernorm_backward_ref;
        bw(dx, dw, db, c.r, c.mean, c.rstd, c.x, c.w, M, D);
        KC_CHECK_GRAD(fast ? "layernorm din (fast)" : "layernorm din (ref)", dx, nx, n, 0.5);
        KC_CHECK_GRAD(fast ? "layernorm dw (fast)" : "layernorm dw (ref)", dw, nw, D, 0.5);
        KC_CHECK_GRAD(fast ? "layernorm db (fast)" : "layernorm db (ref)", db, nb, D, 0.5);

        /* accumulation: a second call doubles; NULL gradients are skipped, others still added */
        float *dx2 = kc_dup(dx, n), *dw2 = kc_dup(dw, D), *db2 = kc_dup(db, D);
        bw(dx2, dw2, db2, c.r, c.mean, c.rstd, c.x, c.w, M, D);
        for (size_t i = 0; i < n; i++) dx[i] *= 2.0f;
        for (int i = 0; i < D; i++) dw[i] *= 2.0f, db[i] *= 2.0f;
        CHECK(tu_rel_err(dx2, dx, n, 1e-6) < 1e-6 && tu_rel_err(dw2, dw, D, 1e-6) < 1e-6 &&
                  tu_rel_err(db2, db, D, 1e-6) < 1e-6,
              "layernorm backward (%s) does not accumulate (+=)", fast ? "fast" : "ref");
        float *dwn = kc_alloc(D);
        bw(NULL, dwn, NULL, c.r, c.mean, c.rstd, c.x, c.w, M, D);
        for (int i = 0; i < D; i++) dw[i] *= 0.5f;
        CHECK(tu_rel_err(dwn, dw, D, 1e-6) < 1e-6,
              "layernorm backward (%s) with NULL din/db: dw wrong", fast ? "fast" : "ref");
        float *dxn = kc_alloc(n);
        bw(dxn, NULL, NULL, c.r, c.mean, c.rstd, c.x, c.w, M, D);
        for (size_t i = 0; i < n; i++) dx[i] *= 0.5f;
        CHECK(tu_rel_err(dxn, dx, n, 1e-6) < 1e-6,
              "layernorm backward (%s) with NULL dw/db: din wrong", fast ? "fast" : "ref");
        free(dx), free(dw), free(db), free(dx2), free(dw2), free(db2), free(dwn), free(dxn);
    }
    free(c.x), free(c.w), free(c.b), free(c.r), free(c.out), free(c.mean), free(c.rstd);
    free(nx), free(nw), free(nb);
}

/* The fused residual + LayerNorm: the bits of the residual add followed by
 * mvmoe_layernorm_forward, with and without a bias, 1 and 2 threads, a keep factor per image;
 * the same for slices of rows that start inside an image (r0), each called by one thread of a
 * parallel region (the kernels then run on the calling thread), and for mvmoe_residual_add. */
static void test_residual_fused(void) {
    const int B = 3, T = 50, D = 72, M = B * T;
    const size_t n = (size_t)M * D;
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 95, 0);
    float *x = kc_alloc(n), *br = kc_alloc(n), *bias = kc_alloc(D), *w = kc_alloc(D), *b = kc_alloc(D);
    float keep[3] = {1.0f, 0.0f, 1.25f};
    kc_fill_normal(x, n, &rng, 1.0f);
    kc_fill_normal(br, n, &rng, 1.0f);
    kc_fill_normal(bias, D, &rng, 0.5f);
    kc_fill_normal(w, D, &rng, 1.0f);
    kc_fill_normal(b, D, &rng, 1.0f);
    float *res = kc_alloc(n), *out = kc_alloc(n), *mean = kc_alloc(M), *rstd = kc_alloc(M);
    float *res2 = kc_alloc(n), *out2 = kc_alloc(n), *mean2 = kc_alloc(M), *rstd2 = kc_alloc(M);
    for (int with_bias = 0; with_bias < 2; with_bias++)
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            for (int r = 0; r < M; r++)
                for (int d = 0; d < D; d++) {
                    const size_t i = (size_t)r * D + d;
                    res2[i] = x[i] + keep[r / T] * (with_bias ? br[i] + bias[d] : br[i]);
                }
            mvmoe_layernorm_forward(out2, mean2, rstd2, res2, w, b, M, D, 1e-6f);
            mvmoe_residual_layernorm_forward(res, out, mean, rstd, x, br, with_bias ? bias : NULL, keep,
                                             T, 0, w, b, M, D, 1e-6f);
            CHECK(!memcmp(res, res2, n * sizeof(float)) && !memcmp(out, out2, n * sizeof(float)) &&
                      !memcmp(mean, mean2, M * sizeof(float)) && !memcmp(rstd, rstd2, M * sizeof(float)),
                  "residual+layernorm (bias %d, threads %d): not the bits of the two separate steps",
                  with_bias, th);
            memset(res, 0, n * sizeof(float));
            mvmoe_residual_add(res, x, br, with_bias ? bias : NULL, keep, T, 0, M, D);
            CHECK(!memcmp(res, res2, n * sizeof(float)), "residual add (bias %d, threads %d): wrong bits",
                  with_bias, th);
            memset(res, 0, n * sizeof(float));
            memset(out, 0, n * sizeof(float));
            const int cut[4] = {0, 37, 101, M}; /* slices starting inside images 0 and 2 */
#pragma omp parallel for schedule(static)
            for (int s = 0; s < 3; s++) {
                const size_t o = (size_t)cut[s] * D;
                mvmoe_residual_layernorm_forward(res + o, out + o, mean + cut[s], rstd + cut[s], x + o, br + o,
                                                 with_bias ? bias : NULL, keep, T, cut[s], w, b,
                                                 cut[s + 1] - cut[s], D, 1e-6f);
            }
            CHECK(!memcmp(res, res2, n * sizeof(float)) && !memcmp(out, out2, n * sizeof(float)),
                  "residual+layernorm on slices (bias %d, threads %d): not the bits of the whole", with_bias,
                  th);
            memset(res, 0, n * sizeof(float));
#pragma omp parallel for schedule(static)
            for (int s = 0; s < 3; s++) {
                const size_t o = (size_t)cut[s] * D;
                mvmoe_residual_add(res + o, x + o, br + o, with_bias ? bias : NULL, keep, T, cut[s],
                                   cut[s + 1] - cut[s], D);
            }
            CHECK(!memcmp(res, res2, n * sizeof(float)), "residual add on slices (bias %d, threads %d): wrong",
                  with_bias, th);
        }
    omp_set_num_threads(1);
    free(x), free(br), free(bias), free(w), free(b), free(res), free(out), free(mean), free(rstd);
    free(res2), free(out2), free(mean2), free(rstd2);
}

int main(void) {
    test_residual_fused();
    omp_set_num_threads(1);
    test_known_values();
    test_fast_vs_ref();
    test_gradients();
    TEST_MAIN_END("test_layernorm");
}
