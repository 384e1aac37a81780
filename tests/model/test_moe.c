/* Routing and MoE MLP unit tests:
 *  - the router's plan (top-k, grouping, capacity) against brute force;
 *  - sparse dispatch/experts/combine against the dense "all experts, masked" oracle;
 *  - sparsity: experts no item chose are never read (their weights are NaN here);
 *  - finite-difference checks of each auxiliary loss and of the MoE backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/moe.h"
#include "model/router.h"
#include "test_util.h"

typedef struct {
    int *ints;
    float *gate;
    mvmoe_plan p;
} plan_buf;

static void plan_alloc(plan_buf *b, int n, int k, int E) {
    b->ints = calloc((size_t)3 * n * k + E + 1, sizeof(int));
    b->gate = calloc((size_t)n * k, sizeof(float));
    b->p.expert = b->ints;
    b->p.pos = b->ints + n * k;
    b->p.src = b->ints + 2 * n * k;
    b->p.start = b->ints + 3 * n * k;
    b->p.gate = b->gate;
}

static void plan_free(plan_buf *b) {
    free(b->ints);
    free(b->gate);
}

static void fill(float *x, size_t n, mvmoe_rng *r, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * mvmoe_rng_normal(r);
}

/* ------------------------------------------------------------ router plan */
static void test_plan(void) {
    const int n = 37, D = 8, E = 5;
    mvmoe_rng r;
    mvmoe_rng_init(&r, 1, 0);
    float x[37 * 8], W[5 * 8], z[37 * 5], p[37 * 5], noise[37 * 5];
    fill(x, sizeof x / sizeof *x, &r, 1);
    fill(W, sizeof W / sizeof *W, &r, 1);
    fill(noise, sizeof noise / sizeof *noise, &r, 0.2f);
    for (int k = 1; k <= 3; k++)
        for (int cap = 0; cap <= 9; cap += 9)
            for (int ad = 0; ad < 2; ad++) {
            /* adaptive k: choices after the first only where the top probability < tau */
            float tau = ad ? 0.6f : 0.0f;
            plan_buf b;
            plan_alloc(&b, n, k, E);
            mvmoe_router_forward(&b.p, z, p, x, D, W, noise, n, D, E, k, cap, tau, 1);
            int used[5] = {0}, total = 0, sure = 0, unsure = 0;
            for (int i = 0; i < n; i++) {
                double s = 0;
                for (int e = 0; e < E; e++) {
                    double zz = 0;
                    for (int d = 0; d < D; d++) zz += (double)x[i * D + d] * W[e * D + d];
                    CHECK(fabs(zz - z[i * E + e]) < 1e-5, "logit %d,%d", i, e);
                    s += p[i * E + e];
                }
                CHECK(fabs(s - 1) < 1e-5, "probabilities of item %d sum to %g", i, s);
                float top = p[i * E + b.p.expert[i * k]];
                int single = tau > 0 && top >= tau;
                sure += single;
                unsure += !single;
                for (int q = 0; q < k; q++) {
                    int e = b.p.expert[i * k + q];
                    /* exactly q experts beat the q-th choice */
                    int better = 0;
                    for (int f = 0; f < E; f++) better += p[i * E + f] > p[i * E + e];
                    CHECK(better == q, "item %d choice %d: %d experts are more probable", i, q, better);
                    int j = b.p.pos[i * k + q];
                    if (j >= 0) {
                        CHECK(b.p.gate[i * k + q] == p[i * E + e], "gate = p");
                        CHECK(j >= b.p.start[e] && j < b.p.start[e + 1], "position in expert's group");
                        CHECK(b.p.src[j] == i * k + q, "src inverse of pos");
                        used[e]++;
                        total++;
                    } else {
                        CHECK((cap > 0 || (q > 0 && single)) && b.p.gate[i * k + q] == 0,
                              "dropped only under capacity or adaptive k");
                    }
                    if (q > 0 && single) CHECK(j < 0, "item %d (top p %.3f >= %.2f) keeps choice %d", i, top, tau, q);
                }
            }
            CHECK(b.p.start[E] == total, "start[E] = kept assignments");
            for (int e = 0; e < E; e++) {
                CHECK(b.p.start[e + 1] - b.p.start[e] == used[e], "group size of expert %d", e);
                if (cap > 0) CHECK(used[e] <= cap, "expert %d over capacity", e);
            }
            if (cap == 0 && !ad) CHECK(total == n * k, "nothing dropped without capacity");
            if (cap == 0 && ad) CHECK(total == n * k - sure * (k - 1), "adaptive k keeps exactly the unsure items' extra choices");
            if (ad) CHECK(sure > 0 && unsure > 0, "the adaptive threshold splits the items (%d sure, %d unsure)", sure, unsure);
            plan_free(&b);
            }
}

/* ------------------------------------------------------------ sparse vs dense oracle */
static void test_sparse_vs_oracle(void) {
    const int D = 12, H = 20, E = 4;
    mvmoe_rng r;
    mvmoe_rng_init(&r, 2, 0);
    float *w1 = malloc(sizeof(float) * E * H * D), *b1 = malloc(sizeof(float) * E * H),
          *w2 = malloc(sizeof(float) * E * D * H), *b2 = malloc(sizeof(float) * E * D);
    fill(w1, (size_t)E * H * D, &r, 0.3f);
    fill(b1, (size_t)E * H, &r, 0.3f);
    fill(w2, (size_t)E * D * H, &r, 0.3f);
    fill(b2, (size_t)E * D, &r, 0.3f);
    mvmoe_experts w = {w1, b1, w2, b2, NULL, NULL, 0, 0}; /* no packed copies */
    /* per-image (rows = 5 tokens) and per-token (rows = 1), k = 1 and 2, with/without capacity */
    for (int mode = 0; mode < 2; mode++)
        for (int k = 1; k <= 2; k++)
            for (int cap = 0; cap <= 3; cap += 3)
                for (int ad = 0; ad < 1 + (k == 2 && cap == 0); ad++) {
                float tau = ad ? 0.5f : 0.0f; /* adaptive k: drops behave like capacity drops */
                int rows = mode == 0 ? 5 : 1, n = mode == 0 ? 6 : 30, M = n * rows;
                float *u = malloc(sizeof(float) * M * D), *x = malloc(sizeof(float) * n * D),
                      *W = malloc(sizeof(float) * E * D), *z = malloc(sizeof(float) * n * E),
                      *p = malloc(sizeof(float) * n * E);
                fill(u, (size_t)M * D, &r, 1);
                fill(W, (size_t)E * D, &r, 1);
                for (int i = 0; i < n; i++) memcpy(x + i * D, u + (size_t)i * rows * D, sizeof(float) * D);
                plan_buf b;
                plan_alloc(&b, n, k, E);
                mvmoe_router_forward(&b.p, z, p, x, D, W, NULL, n, D, E, k, cap, tau, rows);
                size_t R = (size_t)M * k;
                float *out = malloc(sizeof(float) * M * D), *ref = malloc(sizeof(float) * M * D),
                      *xg = malloc(sizeof(float) * R * D), *h = malloc(sizeof(float) * R * H),
                      *hg = malloc(sizeof(float) * R * H), *y = malloc(sizeof(float) * R * D),
                      *scr = malloc(sizeof(float) * ((size_t)2 * M * H + (size_t)M * D));
                mvmoe_moe_forward(out, xg, h, hg, y, u, &w, &b.p, D, H);
                mvmoe_moe_forward_dense_ref(ref, scr, u, &w, &b.p, D, H);
                double err = tu_rel_err(out, ref, (size_t)M * D, 1e-3);
                CHECK(err < 1e-5, "mode %d k %d cap %d tau %.1f: sparse vs oracle %.3g", mode, k, cap, (double)tau, err);
                /* backward vs finite differences of L = Σ out·R on a few inputs/weights/gates */
                float *Rw = malloc(sizeof(float) * M * D), *du = calloc((size_t)M * D, sizeof(float)),
                      *dg = calloc((size_t)n * k, sizeof(float)), *sd = malloc(sizeof(float) * R * D),
                      *sh = malloc(sizeof(float) * R * H), *shg = malloc(sizeof(float) * R * H);
                float *gw1 = calloc((size_t)E * H * D, sizeof(float)), *gb1 = calloc((size_t)E * H, sizeof(float)),
                      *gw2 = calloc((size_t)E * D * H, sizeof(float)), *gb2 = calloc((size_t)E * D, sizeof(float));
                mvmoe_experts g = {gw1, gb1, gw2, gb2, NULL, NULL, 0, 0};
                fill(Rw, (size_t)M * D, &r, 1);
                mvmoe_moe_backward(du, dg, &g, sd, sh, shg, Rw, xg, h, hg, y, &w, &b.p, D, H);
                double num_norm = 0, err_norm = 0;
                struct { float *v, *grad; size_t n; } prm[] = {
                    {u, du, (size_t)M * D}, {w1, gw1, (size_t)E * H * D}, {b1, gb1, (size_t)E * H},
                    {w2, gw2, (size_t)E * D * H}, {b2, gb2, (size_t)E * D}, {b.p.gate, dg, (size_t)n * k}};
                for (size_t q = 0; q < sizeof prm / sizeof prm[0]; q++)
                    for (int s = 0; s < 6; s++) {
                        size_t i = mvmoe_rng_below(&r, (uint32_t)prm[q].n);
                        float v0 = prm[q].v[i], eps = 1e-2f;
                        double L[2];
                        for (int sign = 0; sign < 2; sign++) {
                            prm[q].v[i] = v0 + (sign ? -eps : eps);
                            mvmoe_moe_forward(out, xg, h, hg, y, u, &w, &b.p, D, H);
                            double acc = 0;
                            for (size_t t = 0; t < (size_t)M * D; t++) acc += (double)out[t] * Rw[t];
                            L[sign] = acc;
                        }
                        prm[q].v[i] = v0;
                        double num = (L[0] - L[1]) / (2 * eps);
                        /* a dropped choice's gate has no effect: its gradient stays 0 */
                        num_norm += num * num;
                        err_norm += (num - prm[q].grad[i]) * (num - prm[q].grad[i]);
                    }
                CHECK(num_norm > 1e-4, "mode %d k %d: finite differences all zero", mode, k);
                CHECK(sqrt(err_norm / num_norm) < 1e-2, "mode %d k %d cap %d: backward vs FD rel %.3g",
                      mode, k, cap, sqrt(err_norm / num_norm));
                free(Rw), free(du), free(dg), free(sd), free(sh), free(shg);
                free(gw1), free(gb1), free(gw2), free(gb2);
                free(out), free(ref), free(xg), free(h), free(hg), free(y), free(scr);
                free(u), free(x), free(W), free(z), free(p);
                plan_free(&b);
            }
    /* sparsity: one image, k = 1 → only its expert's weights may be read */
    {
        const int rows = 5, n = 1;
        float u[5 * 12], W[4 * 12], z[4], p[4], out[5 * 12], xg[5 * 12], h[5 * 20], hg[5 * 20], y[5 * 12];
        fill(u, sizeof u / sizeof *u, &r, 1);
        fill(W, sizeof W / sizeof *W, &r, 1);
        plan_buf b;
        plan_alloc(&b, n, 1, E);
        mvmoe_router_forward(&b.p, z, p, u, D, W, NULL, n, D, E, 1, 0, 0.0f, rows);
        int chosen = b.p.expert[0];
        float *save = malloc(sizeof(float) * E * H * D);
        memcpy(save, w1, sizeof(float) * E * H * D);
        for (int e = 0; e < E; e++)
            if (e != chosen)
                for (int q = 0; q < H * D; q++) w1[(size_t)e * H * D + q] = NAN;
        mvmoe_moe_forward(out, xg, h, hg, y, u, &w, &b.p, D, H);
        int finite = 1;
        for (int q = 0; q < rows * D; q++) finite &= isfinite(out[q]) != 0;
        CHECK(finite, "batch 1, k = 1: an unchosen expert's weights were read");
        memcpy(w1, save, sizeof(float) * E * H * D);
        free(save);
        plan_free(&b);
    }
    free(w1), free(b1), free(w2), free(b2);
}

/* ------------------------------------------------------------ auxiliary losses */
typedef double (*aux_fn)(float *grad, float *in, void *ctx);

/* central differences of f over every input; compares with the analytic gradient */
static void fd_check(const char *name, float *in, int count, aux_fn f, void *ctx) {
    float *grad = calloc((size_t)count, sizeof(float));
    f(grad, in, ctx);
    double nn = 0, en = 0;
    for (int i = 0; i < count; i++) {
        float v0 = in[i], eps = 1e-3f;
        in[i] = v0 + eps;
        double lp = f(NULL, in, ctx);
        in[i] = v0 - eps;
        double lm = f(NULL, in, ctx);
        in[i] = v0;
        double num = (lp - lm) / (2 * eps);
        nn += num * num;
        en += (num - grad[i]) * (num - grad[i]);
    }
    CHECK(nn > 1e-8, "%s: finite differences all zero", name);
    CHECK(sqrt(en / nn) < 1e-2, "%s: gradient vs finite differences rel %.3g", name, sqrt(en / nn));
    free(grad);
}

typedef struct { int n, E, k; const int32_t *t; const float *noise; } aux_ctx;

static double f_ce(float *g, float *z, void *c) {
    aux_ctx *a = c;
    return mvmoe_aux_router_ce(g, z, a->t, a->n, a->E, 0.3f);
}
static double f_imp(float *g, float *p, void *c) {
    aux_ctx *a = c;
    return mvmoe_aux_importance(g, p, a->n, a->E, 0.7f);
}
static double f_load(float *g, float *z, void *c) {
    aux_ctx *a = c;
    return mvmoe_aux_load(g, z, a->noise, a->n, a->E, a->k, 1.0f / a->E, 0.7f);
}

static void test_aux(void) {
    const int n = 9, E = 4;
    mvmoe_rng r;
    mvmoe_rng_init(&r, 3, 0);
    float z[9 * 4], p[9 * 4], noise[9 * 4];
    fill(z, sizeof z / sizeof *z, &r, 1);
    fill(noise, sizeof noise / sizeof *noise, &r, 0.25f);
    for (int i = 0; i < n * E; i++) p[i] = 0.05f + mvmoe_rng_uniform(&r);
    int32_t t[9] = {0, 1, 2, 3, 0, 1, 2, 3, 3};
    aux_ctx c = {n, E, 1, t, noise};
    fd_check("router CE", z, n * E, f_ce, &c);
    fd_check("importance", p, n * E, f_imp, &c);
    for (c.k = 1; c.k <= 2; c.k++) fd_check(c.k == 1 ? "load k=1" : "load k=2", z, n * E, f_load, &c);
    /* values: CE of uniform logits is log E; importance of equal columns is 0 */
    float zu[9 * 4] = {0}, pu[9 * 4];
    for (int i = 0; i < n * E; i++) pu[i] = 0.25f;
    CHECK(fabs(mvmoe_aux_router_ce(NULL, zu, t, n, E, 1.0f) - log(4.0)) < 1e-6, "CE of uniform logits");
    CHECK(fabs(mvmoe_aux_importance(NULL, pu, n, E, 1.0f)) < 1e-12, "importance of a balanced router");
    /* all mass on one expert: CV² = E − 1 */
    for (int i = 0; i < n * E; i++) pu[i] = i % E == 0 ? 1.0f : 0.0f;
    CHECK(fabs(mvmoe_aux_importance(NULL, pu, n, E, 1.0f) - (E - 1)) < 1e-9, "importance, one expert");
}

int main(void) {
    test_plan();
    test_sparse_vs_oracle();
    test_aux();
    TEST_MAIN_END("test_moe");
}
