/* Linear layer (src/kernels/linear.c, its sgemm and packed backends): known values, fast vs
 * reference at several shapes with 1 and 2 threads, finite-difference check of din/dw/db, +=
 * accumulation and NULL gradients, the overwriting backward against zero + accumulate (bits),
 * row strides. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/kernels.h"
#include "mvmoe.h"

typedef struct {
    float *in, *w, *b, *r, *out;
    int M, K, N;
} lin_ctx;

static double lin_objective(void *p) {
    lin_ctx *c = p;
    mvmoe_linear_forward_ref(c->out, c->in, c->w, c->b, c->M, c->K, c->N);
    return kc_weighted_sum(c->out, c->r, (size_t)c->M * c->N);
}

static void test_known_values(void) {
    /* in [1, 2] · w[[1,0],[0,1],[1,1]]ᵀ + [0.5, 0, -1] = [1.5, 2, 2] */
    const float in[2] = {1, 2}, w[6] = {1, 0, 0, 1, 1, 1}, b[3] = {0.5f, 0, -1};
    const float want[3] = {1.5f, 2.0f, 2.0f}, want_nob[3] = {1.0f, 2.0f, 3.0f};
    float o[3] = {9, 9, 9}, orf[3] = {9, 9, 9};
    mvmoe_linear_forward(o, 3, in, 2, mvmoe_linear_w(w, NULL), b, 1, 2, 3);
    mvmoe_linear_forward_ref(orf, in, w, b, 1, 2, 3);
    CHECK(!memcmp(o, want, sizeof o) && !memcmp(orf, want, sizeof orf),
          "linear known value: fast [%g %g %g] ref [%g %g %g], want [1.5 2 2]", o[0], o[1], o[2],
          orf[0], orf[1], orf[2]);
    for (int i = 0; i < 3; i++) o[i] = orf[i] = 9; /* b = NULL must overwrite, not add */
    mvmoe_linear_forward(o, 3, in, 2, mvmoe_linear_w(w, NULL), NULL, 1, 2, 3);
    mvmoe_linear_forward_ref(orf, in, w, NULL, 1, 2, 3);
    CHECK(!memcmp(o, want_nob, sizeof o) && !memcmp(orf, want_nob, sizeof orf),
          "linear without bias: fast [%g %g %g] ref [%g %g %g], want [1 2 3]", o[0], o[1], o[2],
          orf[0], orf[1], orf[2]);
}

static void test_fast_vs_ref(void) {
    /* {M, K, N}: split by rows, too small to split, and below 32 rows split by columns
     * (ViT-Tiny's class row through fc1 and fc2, the head at batch 7, a last column block
     * narrower than 16); some above the threading threshold of the bias fill and gradient */
    const int shapes[][3] = {{5, 24, 10},   {50, 64, 192},  {33, 1000, 10}, {7, 192, 1000},
                             {1, 1, 1},     {1300, 8, 64},  {700, 16, 100}, {1601, 64, 192},
                             {99, 256, 64}, {32, 96, 128},  {1, 192, 768},  {1, 768, 192},
                             {2, 64, 600},  {31, 192, 192}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 51, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        const size_t ni = (size_t)M * K, nw = (size_t)N * K, no = (size_t)M * N;
        float *in = kc_alloc(ni), *w = kc_alloc(nw), *b = kc_alloc(N), *dy = kc_alloc(no);
        float *di0 = kc_alloc(ni), *dw0 = kc_alloc(nw), *db0 = kc_alloc(N);
        kc_fill_normal(in, ni, &rng, 1.0f);
        kc_fill_normal(w, nw, &rng, 0.1f);
        kc_fill_normal(b, N, &rng, 1.0f);
        kc_fill_normal(dy, no, &rng, 1.0f);
        kc_fill_normal(di0, ni, &rng, 0.1f);
        kc_fill_normal(dw0, nw, &rng, 0.1f);
        kc_fill_normal(db0, N, &rng, 0.1f);
        float *or_ = kc_alloc(no), *orn = kc_alloc(no);
        float *dir = kc_dup(di0, ni), *dwr = kc_dup(dw0, nw), *dbr = kc_dup(db0, N);
        mvmoe_linear_forward_ref(or_, in, w, b, M, K, N);
        mvmoe_linear_forward_ref(orn, in, w, NULL, M, K, N);
        mvmoe_linear_backward_ref(dir, dwr, dbr, dy, in, w, M, K, N);
        float *db1 = kc_alloc(N), *o1 = kc_alloc(no), *di1 = kc_alloc(ni), *dw1 = kc_alloc(nw);
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            float *o = kc_alloc(no), *on = kc_alloc(no);
            float *di = kc_dup(di0, ni), *dw = kc_dup(dw0, nw), *db = kc_dup(db0, N);
            for (size_t i = 0; i < no; i++) on[i] = NAN; /* must be overwritten */
            mvmoe_linear_forward(o, N, in, K, mvmoe_linear_w(w, NULL), b, M, K, N);
            mvmoe_linear_forward(on, N, in, K, mvmoe_linear_w(w, NULL), NULL, M, K, N);
            mvmoe_linear_backward(di, dw, db, dy, in, w, M, K, N, MVMOE_GRAD_ACCUMULATE);
            {   /* overwrite: din from garbage = din accumulated into zeros, bit for bit (sgemm's
                 * beta 0 vs 1); dw and db still accumulate */
                float *dz = kc_alloc(ni), *dg = kc_alloc(ni), *dw2 = kc_dup(dw0, nw), *db2 = kc_dup(db0, N);
                float *dw3 = kc_dup(dw0, nw), *db3 = kc_dup(db0, N);
                memset(dz, 0, sizeof(float) * ni);
                for (size_t i = 0; i < ni; i++) dg[i] = NAN;
                mvmoe_linear_backward(dz, dw2, db2, dy, in, w, M, K, N, MVMOE_GRAD_ACCUMULATE);
                mvmoe_linear_backward(dg, dw3, db3, dy, in, w, M, K, N, MVMOE_GRAD_OVERWRITE);
                CHECK(!memcmp(dz, dg, sizeof(float) * ni) && !memcmp(dw2, dw3, sizeof(float) * nw) &&
                          !memcmp(db2, db3, sizeof(float) * N),
                      "linear backward_overwrite M=%d K=%d N=%d threads=%d: not the bits of zero + accumulate",
                      M, K, N, th);
                free(dz), free(dg), free(dw2), free(db2), free(dw3), free(db3);
            }
            char what[96];
            snprintf(what, sizeof what, "linear out M=%d K=%d N=%d threads=%d", M, K, N, th);
            KC_CHECK_CLOSE(what, o, or_, no);
            snprintf(what, sizeof what, "linear out (no bias) M=%d K=%d N=%d threads=%d", M, K, N, th);
            KC_CHECK_CLOSE(what, on, orn, no);
            snprintf(what, sizeof what, "linear din M=%d K=%d N=%d threads=%d", M, K, N, th);
            KC_CHECK_CLOSE(what, di, dir, ni);
            snprintf(what, sizeof what, "linear dw M=%d K=%d N=%d threads=%d", M, K, N, th);
            KC_CHECK_CLOSE(what, dw, dwr, nw);
            snprintf(what, sizeof what, "linear db M=%d K=%d N=%d threads=%d", M, K, N, th);
            KC_CHECK_CLOSE(what, db, dbr, N);
            if (th == 1) {
                memcpy(db1, db, sizeof(float) * N);
                memcpy(o1, o, sizeof(float) * no);
                memcpy(di1, di, sizeof(float) * ni);
                memcpy(dw1, dw, sizeof(float) * nw);
            } else {
                /* the threaded bias gradient keeps the serial order, and the products are split
                 * into disjoint output rows or column blocks, each computed by one
                 * single-threaded sgemm call: the same bits as on one thread */
                CHECK(!memcmp(db, db1, sizeof(float) * N), "linear db M=%d N=%d: 1 and 2 threads differ", M, N);
                CHECK(!memcmp(o, o1, sizeof(float) * no) && !memcmp(di, di1, sizeof(float) * ni) &&
                          !memcmp(dw, dw1, sizeof(float) * nw),
                      "linear M=%d K=%d N=%d: out, din or dw differ between 1 and 2 threads", M, K, N);
            }
            free(o), free(on), free(di), free(dw), free(db);
        }
        free(db1), free(o1), free(di1), free(dw1);
        free(in), free(w), free(b), free(dy), free(di0), free(dw0), free(db0);
        free(or_), free(orn), free(dir), free(dwr), free(dbr);
    }
    omp_set_num_threads(1);
}

/* The entry point with its default, accumulating din */
static void linear_backward_acc(float *din, float *dw, float *db, const float *dout, const float *in,
                                const float *w, int M, int K, int N) {
    mvmoe_linear_backward(din, dw, db, dout, in, w, M, K, N, MVMOE_GRAD_ACCUMULATE);
}

static void test_gradients(void) {
    enum { M = 3, K = 5, N = 4 };
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 52, 0);
    lin_ctx c = {kc_alloc(M * K), kc_alloc(N * K), kc_alloc(N), kc_alloc(M * N), kc_alloc(M * N),
                 M, K, N};
    kc_fill_normal(c.in, M * K, &rng, 1.0f);
    kc_fill_normal(c.w, N * K, &rng, 1.0f);
    kc_fill_normal(c.b, N, &rng, 1.0f);
    kc_fill_normal(c.r, M * N, &rng, 1.0f);
    float *ni = kc_alloc(M * K), *nw = kc_alloc(N * K), *nb = kc_alloc(N);
    kc_numeric_grad(ni, c.in, M * K, KC_FD_EPS, lin_objective, &c);
    kc_numeric_grad(nw, c.w, N * K, KC_FD_EPS, lin_objective, &c);
    kc_numeric_grad(nb, c.b, N, KC_FD_EPS, lin_objective, &c);
    for (int fast = 1; fast >= 0; fast--) {
        void (*bw)(float *, float *, float *, const float *, const float *, const float *, int,
                   int, int) = fast ? linear_backward_acc : mvmoe_linear_backward_ref;
        const char *v = fast ? "fast" : "ref";
        float di[M * K] = {0}, dw[N * K] = {0}, db[N] = {0};
        bw(di, dw, db, c.r, c.in, c.w, M, K, N);
        char what[64];
        snprintf(what, sizeof what, "linear din (%s)", v);
        KC_CHECK_GRAD(what, di, ni, M * K, 0.5);
        snprintf(what, sizeof what, "linear dw (%s)", v);
        KC_CHECK_GRAD(what, dw, nw, N * K, 0.5);
        snprintf(what, sizeof what, "linear db (%s)", v);
        KC_CHECK_GRAD(what, db, nb, N, 0.5);
        float di2[M * K], dw2[N * K], db2[N];
        memcpy(di2, di, sizeof di), memcpy(dw2, dw, sizeof dw), memcpy(db2, db, sizeof db);
        bw(di2, dw2, db2, c.r, c.in, c.w, M, K, N);
        for (int i = 0; i < M * K; i++) di[i] *= 2.0f;
        for (int i = 0; i < N * K; i++) dw[i] *= 2.0f;
        for (int i = 0; i < N; i++) db[i] *= 2.0f;
        CHECK(tu_rel_err(di2, di, M * K, 1e-6) < 1e-6 && tu_rel_err(dw2, dw, N * K, 1e-6) < 1e-6 &&
                  tu_rel_err(db2, db, N, 1e-6) < 1e-6,
              "linear backward (%s) does not accumulate (+=)", v);
        /* NULL gradients are skipped; the others are still computed */
        float only_db[N] = {0}, only_di[M * K] = {0};
        bw(NULL, NULL, only_db, c.r, c.in, c.w, M, K, N);
        bw(only_di, NULL, NULL, c.r, c.in, c.w, M, K, N);
        for (int i = 0; i < N; i++) db[i] *= 0.5f;
        for (int i = 0; i < M * K; i++) di[i] *= 0.5f;
        CHECK(tu_rel_err(only_db, db, N, 1e-6) < 1e-6 && tu_rel_err(only_di, di, M * K, 1e-6) < 1e-6,
              "linear backward (%s) with NULL gradients: the others are wrong", v);
    }
    free(c.in), free(c.w), free(c.b), free(c.r), free(c.out), free(ni), free(nw), free(nb);
}

/* The forward on packed weights (linear_packed.c): the reference's values with and without
 * bias; the same bits on 1 and 2 threads and for any split of the rows into slices (so the
 * thread count never changes a result); NULL packed weights fall back to the plain ones. */
static void test_packed(void) {
    const int shapes[][3] = {{197, 192, 576}, {98, 768, 192}, {5, 24, 10}, {1, 192, 768},
                             {300, 64, 256}, {33, 40, 24}, {7, 192, 1000}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 53, 0);
    int packed = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        const size_t ni = (size_t)M * K, nw = (size_t)N * K, no = (size_t)M * N, np = mvmoe_linear_packed_size(N, K);
        if (!np) continue;
        packed++;
        float *in = kc_alloc(ni), *w = kc_alloc(nw), *b = kc_alloc(N), *wp = kc_alloc(np);
        float *ref = kc_alloc(no), *refn = kc_alloc(no), *o1 = kc_alloc(no), *o2 = kc_alloc(no), *o3 = kc_alloc(no);
        kc_fill_normal(in, ni, &rng, 1.0f);
        kc_fill_normal(w, nw, &rng, 0.1f);
        kc_fill_normal(b, N, &rng, 1.0f);
        CHECK(mvmoe_linear_pack(wp, w, N, K) == 0, "pack N=%d K=%d failed though its size is known", N, K);
        mvmoe_linear_forward_ref(ref, in, w, b, M, K, N);
        mvmoe_linear_forward_ref(refn, in, w, NULL, M, K, N);
        char what[96];
        for (int bias = 1; bias >= 0; bias--) {
            const float *bb = bias ? b : NULL, *want = bias ? ref : refn;
            omp_set_num_threads(1);
            mvmoe_linear_forward(o1, N, in, K, mvmoe_linear_w(w, wp), bb, M, K, N);
            snprintf(what, sizeof what, "packed linear M=%d K=%d N=%d bias %d", M, K, N, bias);
            KC_CHECK_CLOSE(what, o1, want, no);
            omp_set_num_threads(2);
            mvmoe_linear_forward(o2, N, in, K, mvmoe_linear_w(w, wp), bb, M, K, N);
            const int cut = M / 3;
#pragma omp parallel for schedule(static)
            for (int part = 0; part < 2; part++) {
                const int r0 = part ? cut : 0, r1 = part ? M : cut;
                mvmoe_linear_forward(o3 + (size_t)r0 * N, N, in + (size_t)r0 * K, K, mvmoe_linear_w(w, wp),
                                     bb, r1 - r0, K, N);
            }
            CHECK(!memcmp(o1, o2, no * sizeof(float)) && !memcmp(o1, o3, no * sizeof(float)),
                  "packed linear M=%d K=%d N=%d bias %d: 1 thread, 2 threads and row slices differ", M, K, N, bias);
            mvmoe_linear_forward(o2, N, in, K, mvmoe_linear_w(w, NULL), bb, M, K, N);
            snprintf(what, sizeof what, "packed linear fallback M=%d K=%d N=%d bias %d", M, K, N, bias);
            KC_CHECK_CLOSE(what, o2, want, no);
        }
        free(in), free(w), free(b), free(wp), free(ref), free(refn), free(o1), free(o2), free(o3);
    }
    omp_set_num_threads(1);
    printf("  packed weights available for %d of %zu shapes (%s)\n", packed, sizeof shapes / sizeof *shapes,
           mvmoe_gemm_library());
}

/* Row strides: rows of in and out inside wider rows (the last block's class rows, the qkv
 * columns of its keys and values) give the bits of the dense product, leave the gaps alone,
 * and a packed copy is not used for them (it serves dense rows only). */
static void test_strided(void) {
    const int shapes[][3] = {{50, 64, 192}, {3, 192, 768}, {40, 64, 128}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 54, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2], ldi = K + 8, ldo = N + 5;
        float *in = kc_alloc((size_t)M * ldi), *w = kc_alloc((size_t)N * K), *b = kc_alloc(N);
        float *dense_in = kc_alloc((size_t)M * K), *want = kc_alloc((size_t)M * N), *out = kc_alloc((size_t)M * ldo);
        const size_t np = mvmoe_linear_packed_size(N, K);
        float *wp = np ? kc_alloc(np) : NULL;
        kc_fill_normal(in, (size_t)M * ldi, &rng, 1.0f);
        kc_fill_normal(w, (size_t)N * K, &rng, 0.1f);
        kc_fill_normal(b, N, &rng, 1.0f);
        if (wp) CHECK(mvmoe_linear_pack(wp, w, N, K) == 0, "pack N=%d K=%d", N, K);
        for (int i = 0; i < M; i++) memcpy(dense_in + (size_t)i * K, in + (size_t)i * ldi, sizeof(float) * K);
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            mvmoe_linear_forward(want, N, dense_in, K, mvmoe_linear_w(w, NULL), b, M, K, N);
            for (size_t i = 0; i < (size_t)M * ldo; i++) out[i] = NAN;
            mvmoe_linear_forward(out, ldo, in, ldi, mvmoe_linear_w(w, wp), b, M, K, N);
            int same = 1, gaps = 1;
            for (int i = 0; i < M; i++) {
                same &= !memcmp(out + (size_t)i * ldo, want + (size_t)i * N, sizeof(float) * N);
                for (int j = N; j < ldo; j++) gaps &= isnan(out[(size_t)i * ldo + j]);
            }
            CHECK(same, "strided linear M=%d K=%d N=%d threads=%d: not the bits of the dense product", M, K, N, th);
            CHECK(gaps, "strided linear M=%d K=%d N=%d threads=%d: wrote between the rows", M, K, N, th);
        }
        free(in), free(w), free(b), free(dense_in), free(want), free(out), free(wp);
    }
    omp_set_num_threads(1);
}

int main(void) {
    omp_set_num_threads(1);
    test_known_values();
    test_fast_vs_ref();
    test_gradients();
    test_packed();
    test_strided();
    TEST_MAIN_END("test_linear");
}
