/* Softmax cross-entropy with soft targets and label smoothing: known values, stability with
 * large logits, fast vs reference (1 and 2 threads), finite-difference check of dlogits,
 * += accumulation. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/kernels.h"

typedef struct {
    float *logits, *targets, *loss, *probs;
    int B, K;
} ce_ctx;

static double ce_objective(void *p) {
    ce_ctx *c = p;
    return mvmoe_softmax_ce_forward_ref(c->loss, c->probs, c->logits, c->targets, c->B, c->K);
}

/* Random probability rows: a smoothed one-hot mixed with another (like mixup) or a random
 * normalized row, alternating. */
static void random_targets(float *t, int B, int K, mvmoe_rng *rng) {
    for (int b = 0; b < B; b++) {
        float *row = t + (size_t)b * K;
        if (b % 2) {
            double s = 0;
            for (int k = 0; k < K; k++) s += row[k] = mvmoe_rng_uniform(rng) + 1e-3f;
            for (int k = 0; k < K; k++) row[k] = (float)(row[k] / s);
        } else {
            int32_t y[2] = {(int32_t)mvmoe_rng_below(rng, K), (int32_t)mvmoe_rng_below(rng, K)};
            float a[1024]; /* K <= 1024 in these tests */
            mvmoe_targets_smoothed(row, y, 1, K, 0.1f);
            mvmoe_targets_smoothed(a, y + 1, 1, K, 0.1f);
            float lam = mvmoe_rng_uniform(rng);
            for (int k = 0; k < K; k++) row[k] = lam * row[k] + (1 - lam) * a[k];
        }
    }
}

static void test_known_values(void) {
    /* logits [0, ln 3] -> probs [1/4, 3/4]; one-hot on class 1: -ln(3/4); class 0: ln 4 */
    const float z[4] = {0.0f, (float)log(3.0), 0.0f, (float)log(3.0)};
    const float t[4] = {0, 1, 1, 0};
    const double want[2] = {0.2876820724517809, 1.3862943611198906};
    float loss[2], probs[4];
    for (int fast = 1; fast >= 0; fast--) {
        double mean = fast ? mvmoe_softmax_ce_forward(loss, probs, z, t, 2, 2)
                           : mvmoe_softmax_ce_forward_ref(loss, probs, z, t, 2, 2);
        const char *v = fast ? "fast" : "ref";
        CHECK(fabs(loss[0] - want[0]) < 2e-7 && fabs(loss[1] - want[1]) < 2e-7,
              "%s CE loss = [%.9g, %.9g], want [%.9g, %.9g]", v, loss[0], loss[1], want[0], want[1]);
        CHECK(fabs(mean - 0.5 * (want[0] + want[1])) < 2e-7, "%s CE mean = %.9g, want %.9g", v,
              mean, 0.5 * (want[0] + want[1]));
        CHECK(fabsf(probs[0] - 0.25f) < 1e-7f && fabsf(probs[1] - 0.75f) < 1e-7f,
              "%s probs = [%g, %g], want [0.25, 0.75]", v, probs[0], probs[1]);
        /* backward with scale 1/2: dlogits = (p - t)/2 */
        float d[4] = {0};
        (fast ? mvmoe_softmax_ce_backward : mvmoe_softmax_ce_backward_ref)(d, probs, t, 2, 2, 0.5f);
        CHECK(fabsf(d[0] - 0.125f) < 1e-7f && fabsf(d[1] + 0.125f) < 1e-7f &&
                  fabsf(d[2] + 0.375f) < 1e-7f && fabsf(d[3] - 0.375f) < 1e-7f,
              "%s CE dlogits = [%g %g %g %g], want [.125 -.125 -.375 .375]", v, d[0], d[1], d[2], d[3]);
    }
    /* stability: logits [1000, 0] (exp would overflow without the max shift) */
    const float zb[2] = {1000.0f, 0.0f}, tb[2] = {0.0f, 1.0f}, tc[2] = {1.0f, 0.0f};
    float pb[2];
    double lb = mvmoe_softmax_ce_forward(loss, pb, zb, tb, 1, 2);
    double lc = mvmoe_softmax_ce_forward(loss, pb, zb, tc, 1, 2);
    CHECK(fabs(lb - 1000.0) < 1e-3 && fabs(lc) < 1e-6 && pb[0] == 1.0f && pb[1] >= 0.0f &&
              pb[1] < 1e-30f,
          "large logits: loss %g (want 1000) and %g (want 0), probs [%g, %g]", lb, lc, pb[0], pb[1]);
    /* targets need not sum to 1 (the loss is linear in them): t = [0.5, 0] -> 0.5·ln 4 */
    const float th[2] = {0.5f, 0.0f};
    for (int fast = 1; fast >= 0; fast--) {
        double lh = fast ? mvmoe_softmax_ce_forward(loss, probs, z, th, 1, 2)
                         : mvmoe_softmax_ce_forward_ref(loss, probs, z, th, 1, 2);
        CHECK(fabs(lh - 0.5 * want[1]) < 2e-7, "%s CE with target [0.5, 0]: %.9g, want %.9g",
              fast ? "fast" : "ref", lh, 0.5 * want[1]);
    }
    /* equal logits: loss = ln K for any target row summing to 1 */
    enum { K = 10 };
    float ze[K] = {0}, te[K], pe[K], le;
    for (int k = 0; k < K; k++) te[k] = (k + 1) / 55.0f;
    double l = mvmoe_softmax_ce_forward(&le, pe, ze, te, 1, K);
    CHECK(fabs(l - log(10.0)) < 1e-6, "uniform logits: loss %.9g, want ln 10", l);

    /* label smoothing: (1-s)·onehot + s/K */
    const int32_t y[3] = {3, 0, 9};
    float ts[3 * K];
    mvmoe_targets_smoothed(ts, y, 3, K, 0.1f);
    int ok = 1;
    for (int b = 0; b < 3; b++) {
        double s = 0;
        for (int k = 0; k < K; k++) {
            s += ts[b * K + k];
            ok &= fabsf(ts[b * K + k] - (k == y[b] ? 0.91f : 0.01f)) < 1e-7f;
        }
        ok &= fabs(s - 1.0) < 1e-6;
    }
    CHECK(ok, "smoothed targets: want 0.91 at the label, 0.01 elsewhere, rows summing to 1");
    mvmoe_targets_smoothed(ts, y, 1, K, 0.0f);
    ok = 1;
    for (int k = 0; k < K; k++) ok &= ts[k] == (k == 3 ? 1.0f : 0.0f);
    CHECK(ok, "smoothing 0 must give an exact one-hot row");
    const int32_t bad[1] = {K};
    mvmoe_targets_smoothed(ts, bad, 1, K, 0.1f);
    CHECK(isnan(ts[0]) && isnan(ts[K - 1]), "out-of-range label must give a NaN row");
}

static void test_fast_vs_ref(void) {
    const int shapes[][2] = {{1, 10}, {128, 10}, {64, 1000}, {5, 7}, {33, 1001}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 41, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int B = shapes[s][0], K = shapes[s][1];
        const size_t n = (size_t)B * K;
        float *z = kc_alloc(n), *t = kc_alloc(n), *d0 = kc_alloc(n);
        kc_fill_normal(z, n, &rng, 3.0f);
        random_targets(t, B, K, &rng);
        kc_fill_normal(d0, n, &rng, 0.01f);
        float *lr = kc_alloc(B), *pr = kc_alloc(n), *dr = kc_dup(d0, n);
        double mr = mvmoe_softmax_ce_forward_ref(lr, pr, z, t, B, K);
        mvmoe_softmax_ce_backward_ref(dr, pr, t, B, K, 1.0f / B);
        float *keep_l = NULL, *keep_p = NULL;
        double keep_m = 0;
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            float *l = kc_alloc(B), *p = kc_alloc(n), *d = kc_dup(d0, n);
            for (int i = 0; i < B; i++) l[i] = NAN; /* outputs must be overwritten */
            for (size_t i = 0; i < n; i++) p[i] = NAN;
            double m = mvmoe_softmax_ce_forward(l, p, z, t, B, K);
            mvmoe_softmax_ce_backward(d, p, t, B, K, 1.0f / B);
            char what[96];
            snprintf(what, sizeof what, "CE loss B=%d K=%d threads=%d", B, K, th);
            KC_CHECK_CLOSE(what, l, lr, B);
            CHECK(fabs(m - mr) <= 1e-5 * fabs(mr), "%s: mean %.9g vs ref %.9g", what, m, mr);
            snprintf(what, sizeof what, "CE probs B=%d K=%d threads=%d", B, K, th);
            KC_CHECK_CLOSE(what, p, pr, n);
            snprintf(what, sizeof what, "CE dlogits B=%d K=%d threads=%d", B, K, th);
            KC_CHECK_CLOSE(what, d, dr, n);
            if (th == 1) {
                keep_l = l, keep_p = p, keep_m = m;
            } else {
                CHECK(!memcmp(l, keep_l, B * sizeof *l) && !memcmp(p, keep_p, n * sizeof *p) &&
                          m == keep_m,
                      "CE B=%d K=%d: 1 and 2 threads differ", B, K);
                free(l), free(p), free(keep_l), free(keep_p);
            }
            free(d);
        }
        free(z), free(t), free(d0), free(lr), free(pr), free(dr);
    }
    omp_set_num_threads(1);
}

static void grad_check(int B, int K, int soft, uint64_t seed) {
    const size_t n = (size_t)B * K;
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, seed, 0);
    ce_ctx c = {kc_alloc(n), kc_alloc(n), kc_alloc(B), kc_alloc(n), B, K};
    kc_fill_normal(c.logits, n, &rng, 2.0f);
    if (soft) {
        random_targets(c.targets, B, K, &rng);
    } else {
        int32_t y[64];
        for (int b = 0; b < B; b++) y[b] = (int32_t)mvmoe_rng_below(&rng, K);
        mvmoe_targets_smoothed(c.targets, y, B, K, 0.0f);
    }
    float *num = kc_alloc(n);
    kc_numeric_grad(num, c.logits, n, KC_FD_EPS, ce_objective, &c);
    ce_objective(&c); /* probs of the unperturbed logits */
    for (int fast = 1; fast >= 0; fast--) {
        void (*bw)(float *, const float *, const float *, int, int, float) =
            fast ? mvmoe_softmax_ce_backward : mvmoe_softmax_ce_backward_ref;
        float *g = kc_alloc(n);
        bw(g, c.probs, c.targets, B, K, 1.0f / B); /* d(mean loss)/dlogits */
        char what[96];
        snprintf(what, sizeof what, "CE dlogits B=%d K=%d %s (%s)", B, K, soft ? "soft" : "one-hot",
                 fast ? "fast" : "ref");
        KC_CHECK_GRAD(what, g, num, n, 0.1);
        float *g2 = kc_dup(g, n);
        bw(g2, c.probs, c.targets, B, K, 1.0f / B);
        for (size_t i = 0; i < n; i++) g[i] *= 2.0f;
        double e = tu_rel_err(g2, g, n, 1e-6);
        CHECK(e < 1e-6, "%s: does not accumulate (rel err %.3g)", what, e);
        bw(NULL, c.probs, c.targets, B, K, 1.0f); /* skipped, must not crash */
        free(g), free(g2);
    }
    free(c.logits), free(c.targets), free(c.loss), free(c.probs), free(num);
}

int main(void) {
    omp_set_num_threads(1);
    test_known_values();
    test_fast_vs_ref();
    grad_check(4, 10, 0, 42);
    grad_check(3, 17, 1, 43);
    TEST_MAIN_END("test_loss");
}
