/* Attention core: known values, fast vs reference over shapes that exercise every code path
 * (head dims not a multiple of 8, key blocks when T·hd exceeds the tile, odd T, T = 1) with
 * 1 and 2 threads, finite-difference check of dqkv, += accumulation, datt as pure scratch. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/kernels.h"

typedef struct {
    float *qkv, *r, *out, *att;
    int B, T, D, NH;
} att_ctx;

static double att_objective(void *p) {
    att_ctx *c = p;
    mvmoe_attention_forward_ref(c->out, c->att, c->qkv, c->B, c->T, c->D, c->NH);
    return kc_weighted_sum(c->out, c->r, (size_t)c->B * c->T * c->D);
}

static void test_known_values(void) {
    /* T = 2, D = 1: q = [1, 0], k = [ln 3, 0], v = [4, 8]:
     * row 0 scores [ln 3, 0] -> att [0.75, 0.25] -> out 5; row 1 scores [0, 0] -> 6 */
    const float qkv[6] = {1.0f, (float)log(3.0), 4.0f, 0.0f, 0.0f, 8.0f};
    float out[2], att[4], outr[2], attr[4];
    mvmoe_attention_forward(out, att, qkv, 1, 2, 1, 1, 2, MVMOE_TEAM_OWN);
    mvmoe_attention_forward_ref(outr, attr, qkv, 1, 2, 1, 1);
    const float want_att[4] = {0.75f, 0.25f, 0.5f, 0.5f}, want_out[2] = {5.0f, 6.0f};
    for (int i = 0; i < 4; i++) {
        CHECK(fabsf(att[i] - want_att[i]) < 2e-7f, "fast att[%d] = %.8g, want %g", i, att[i], want_att[i]);
        CHECK(fabsf(attr[i] - want_att[i]) < 2e-7f, "ref att[%d] = %.8g, want %g", i, attr[i], want_att[i]);
    }
    for (int i = 0; i < 2; i++) {
        CHECK(fabsf(out[i] - want_out[i]) < 2e-6f, "fast out[%d] = %.8g, want %g", i, out[i], want_out[i]);
        CHECK(fabsf(outr[i] - want_out[i]) < 2e-6f, "ref out[%d] = %.8g, want %g", i, outr[i], want_out[i]);
    }

    /* q = 0: uniform attention 1/T, so out is the mean of the value rows (per head) */
    enum { B = 2, T = 9, D = 32, NH = 2 };
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 31, 0);
    float *x = kc_alloc((size_t)B * T * 3 * D), *o = kc_alloc((size_t)B * T * D);
    float *a = kc_alloc((size_t)B * NH * T * T);
    kc_fill_normal(x, (size_t)B * T * 3 * D, &rng, 1.0f);
    for (int t = 0; t < B * T; t++) memset(x + (size_t)t * 3 * D, 0, D * sizeof(float));
    mvmoe_attention_forward(o, a, x, B, T, D, NH, T, MVMOE_TEAM_OWN);
    double worst_a = 0, worst_o = 0;
    for (size_t i = 0; i < (size_t)B * NH * T * T; i++) worst_a = fmax(worst_a, fabs(a[i] - 1.0 / T));
    for (int b = 0; b < B; b++)
        for (int c = 0; c < D; c++) {
            double mean = 0;
            for (int j = 0; j < T; j++) mean += x[((size_t)b * T + j) * 3 * D + 2 * D + c];
            mean /= T;
            for (int i = 0; i < T; i++)
                worst_o = fmax(worst_o, fabs(o[((size_t)b * T + i) * D + c] - mean));
        }
    CHECK(worst_a < 1e-7, "q = 0: attention not uniform (max dev %.3g)", worst_a);
    CHECK(worst_o < 1e-6, "q = 0: out is not the mean of v (max dev %.3g)", worst_o);

    /* T = 1: attention is 1 and out = v */
    float one_qkv[3 * 16], one_out[16], one_att[2];
    kc_fill_normal(one_qkv, 48, &rng, 1.0f);
    mvmoe_attention_forward(one_out, one_att, one_qkv, 1, 1, 16, 2, 1, MVMOE_TEAM_OWN);
    CHECK(one_att[0] == 1.0f && one_att[1] == 1.0f, "T = 1: att = %g, %g, want 1", one_att[0], one_att[1]);
    CHECK(!memcmp(one_out, one_qkv + 32, sizeof one_out), "T = 1: out != v");
    free(x), free(o), free(a);
}

static void test_fast_vs_ref(void) {
    /* B, T, D, NH (hd = D/NH): 4 (scalar combos), 8, 16, 24 = 16+8, 40 = 32+8, 64, 48 with
     * T·hd above the tile (key blocks), T = 1, odd T, and hd = 1032 (more than the tile holds
     * for 8 keys: the untiled dot-product fallback). */
    const int shapes[][4] = {{2, 5, 12, 3},  {3, 50, 24, 3},  {2, 50, 64, 4}, {1, 197, 192, 3},
                             {2, 7, 24, 1},  {2, 13, 40, 1},  {1, 197, 48, 1}, {1, 1, 16, 2},
                             {2, 50, 192, 3}, {1, 197, 64, 4}, {1, 3, 1032, 1},
                             /* hd = 64, T <= 80: the AVX-512 hd = 64 kernels (every group tail);
                              * T = 81: sgemm again */
                             {2, 65, 192, 3}, {1, 17, 64, 1}, {2, 80, 128, 2}, {1, 6, 64, 1}, {1, 81, 64, 1}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 32, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int B = shapes[s][0], T = shapes[s][1], D = shapes[s][2], NH = shapes[s][3];
        const size_t nq = (size_t)B * T * 3 * D, no = (size_t)B * T * D, na = (size_t)B * NH * T * T;
        float *qkv = kc_alloc(nq), *dout = kc_alloc(no), *g0 = kc_alloc(nq);
        kc_fill_normal(qkv, nq, &rng, 1.0f);
        kc_fill_normal(dout, no, &rng, 1.0f);
        kc_fill_normal(g0, nq, &rng, 1.0f);
        float *outr = kc_alloc(no), *attr = kc_alloc(na), *dattr = kc_alloc(na), *gr = kc_dup(g0, nq);
        mvmoe_attention_forward_ref(outr, attr, qkv, B, T, D, NH);
        mvmoe_attention_backward_ref(gr, dattr, dout, attr, qkv, B, T, D, NH);
        /* the gradient part alone (gr - g0), so the comparison is not dominated by g0 */
        float *dref = kc_alloc(nq);
        for (size_t i = 0; i < nq; i++) dref[i] = gr[i] - g0[i];
        float *keep_o = NULL, *keep_g = NULL;
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            float *out = kc_alloc(no), *att = kc_alloc(na), *datt = kc_alloc(na), *g = kc_dup(g0, nq);
            for (size_t i = 0; i < na; i++) datt[i] = att[i] = NAN; /* scratch: must not be read */
            for (size_t i = 0; i < no; i++) out[i] = NAN; /* outputs: must be overwritten */
            mvmoe_attention_forward(out, att, qkv, B, T, D, NH, T, MVMOE_TEAM_OWN);
            mvmoe_attention_backward(g, datt, dout, att, qkv, B, T, D, NH, T, MVMOE_GRAD_ACCUMULATE);
            char what[128];
            snprintf(what, sizeof what, "attention out B=%d T=%d D=%d NH=%d thr=%d", B, T, D, NH, th);
            KC_CHECK_CLOSE(what, out, outr, no);
            snprintf(what, sizeof what, "attention att B=%d T=%d D=%d NH=%d thr=%d", B, T, D, NH, th);
            KC_CHECK_CLOSE(what, att, attr, na);
            snprintf(what, sizeof what, "attention dqkv B=%d T=%d D=%d NH=%d thr=%d", B, T, D, NH, th);
            float *dfast = kc_alloc(nq);
            for (size_t i = 0; i < nq; i++) dfast[i] = g[i] - g0[i];
            KC_CHECK_CLOSE(what, dfast, dref, nq);
            KC_CHECK_CLOSE(what, g, gr, nq); /* and the accumulated total */
            double rowdev = 0;
            for (size_t r = 0; r < (size_t)B * NH * T; r++) {
                double sum = 0;
                for (int j = 0; j < T; j++) sum += att[r * T + j];
                rowdev = fmax(rowdev, fabs(sum - 1.0));
            }
            CHECK(rowdev < 1e-5, "%s: attention rows sum to 1 +- %.3g", what, rowdev);
            if (th == 1) {
                keep_o = out, keep_g = g;
            } else {
                CHECK(!memcmp(out, keep_o, no * sizeof *out) && !memcmp(g, keep_g, nq * sizeof *g),
                      "attention B=%d T=%d D=%d NH=%d: 1 and 2 threads differ", B, T, D, NH);
                free(out), free(g), free(keep_o), free(keep_g);
            }
            free(att), free(datt), free(dfast);
        }
        free(qkv), free(dout), free(g0), free(outr), free(attr), free(dattr), free(gr), free(dref);
    }
    omp_set_num_threads(1);
}

/* mvmoe_attention_forward with nq rows: the first nq query rows equal the reference's rows, a
 * query row the caller did not ask for is never written (the output holds nq rows per image),
 * and the caller's team (MVMOE_TEAM_CALLER) gives the bits of the kernel's own threads.
 * mvmoe_attention_backward equals the reference backward with dout zero beyond row nq. */
static void test_rows(void) {
    const int shapes[][4] = {{3, 50, 64, 4}, {2, 197, 192, 3}, {2, 13, 40, 1}, {2, 5, 12, 3}, {2, 65, 192, 3}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 34, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int B = shapes[s][0], T = shapes[s][1], D = shapes[s][2], NH = shapes[s][3];
        const size_t n3 = (size_t)B * T * 3 * D;
        float *qkv = kc_alloc(n3), *outr = kc_alloc((size_t)B * T * D),
              *attr = kc_alloc((size_t)B * NH * T * T), *dattr = kc_alloc((size_t)B * NH * T * T),
              *doutr = kc_alloc((size_t)B * T * D), *g0 = kc_alloc(n3);
        kc_fill_normal(qkv, n3, &rng, 1.0f);
        kc_fill_normal(g0, n3, &rng, 1.0f);
        mvmoe_attention_forward_ref(outr, attr, qkv, B, T, D, NH);
        for (int nq = 1; nq <= T; nq = nq == 1 ? 3 : nq < T ? T : T + 1) /* 1, 3 and all rows */
            for (int th = 1; th <= 2; th++) {
                omp_set_num_threads(th);
                size_t no = (size_t)B * nq * D, na = (size_t)B * NH * nq * T;
                float *out = kc_alloc(no + 8), *att = kc_alloc(na + 8), *wo = kc_alloc(no), *wa = kc_alloc(na);
                for (size_t i = 0; i < no + 8; i++) out[i] = NAN;
                for (size_t i = 0; i < na + 8; i++) att[i] = NAN;
                mvmoe_attention_forward(out, att, qkv, B, T, D, NH, nq, MVMOE_TEAM_OWN);
                for (int b = 0; b < B; b++) {
                    memcpy(wo + (size_t)b * nq * D, outr + (size_t)b * T * D, sizeof(float) * nq * D);
                    for (int h = 0; h < NH; h++)
                        memcpy(wa + ((size_t)b * NH + h) * nq * T, attr + ((size_t)b * NH + h) * T * T,
                               sizeof(float) * nq * T);
                }
                char what[128];
                snprintf(what, sizeof what, "attention rows nq=%d B=%d T=%d D=%d NH=%d thr=%d", nq, B, T, D, NH, th);
                KC_CHECK_CLOSE(what, out, wo, no);
                KC_CHECK_CLOSE(what, att, wa, na);
                int untouched = 1;
                for (int i = 0; i < 8; i++) untouched &= isnan(out[no + i]) && isnan(att[na + i]);
                CHECK(untouched, "%s: wrote beyond its nq rows", what);
                {   /* called by every thread of the caller's team: the bits of its own threads */
                    float *to = kc_alloc(no), *ta = kc_alloc(na);
#pragma omp parallel num_threads(th)
                    mvmoe_attention_forward(to, ta, qkv, B, T, D, NH, nq, MVMOE_TEAM_CALLER);
                    CHECK(!memcmp(to, out, sizeof(float) * no) && !memcmp(ta, att, sizeof(float) * na),
                          "%s: the caller's team gives other bits than the kernel's own threads", what);
                    free(to), free(ta);
                }
                /* backward: dout on the nq rows; the reference sees zeros on the others */
                float *dout = kc_alloc(no), *datt = kc_alloc(na), *g = kc_dup(g0, n3), *gr = kc_dup(g0, n3);
                kc_fill_normal(dout, no, &rng, 1.0f);
                memset(doutr, 0, sizeof(float) * (size_t)B * T * D);
                for (int b = 0; b < B; b++)
                    memcpy(doutr + (size_t)b * T * D, dout + (size_t)b * nq * D, sizeof(float) * nq * D);
                mvmoe_attention_backward_ref(gr, dattr, doutr, attr, qkv, B, T, D, NH);
                mvmoe_attention_backward(g, datt, dout, att, qkv, B, T, D, NH, nq, MVMOE_GRAD_ACCUMULATE);
                {   /* overwrite from garbage = accumulate into zeros, bit for bit */
                    float *gz = kc_alloc(n3), *gg = kc_alloc(n3);
                    memset(gz, 0, sizeof(float) * n3);
                    for (size_t i = 0; i < n3; i++) gg[i] = NAN;
                    mvmoe_attention_backward(gz, datt, dout, att, qkv, B, T, D, NH, nq,
                                             MVMOE_GRAD_ACCUMULATE);
                    mvmoe_attention_backward(gg, datt, dout, att, qkv, B, T, D, NH, nq,
                                             MVMOE_GRAD_OVERWRITE);
                    CHECK(!memcmp(gz, gg, sizeof(float) * n3),
                          "attention backward (overwrite) nq=%d B=%d T=%d D=%d NH=%d thr=%d: not the bits of "
                          "zero + accumulate", nq, B, T, D, NH, th);
                    free(gz), free(gg);
                }
                for (size_t i = 0; i < n3; i++) g[i] -= g0[i], gr[i] -= g0[i];
                snprintf(what, sizeof what, "attention rows backward nq=%d B=%d T=%d D=%d NH=%d thr=%d", nq, B, T, D, NH, th);
                KC_CHECK_CLOSE(what, g, gr, n3);
                free(out), free(att), free(wo), free(wa), free(dout), free(datt), free(g), free(gr);
            }
        free(qkv), free(outr), free(attr), free(dattr), free(doutr), free(g0);
    }
    omp_set_num_threads(1);
}

/* The entry point for all T query rows, accumulating (the reference's signature) */
static void attention_backward_acc(float *dqkv, float *datt, const float *dout, const float *att,
                                   const float *qkv, int B, int T, int D, int NH) {
    mvmoe_attention_backward(dqkv, datt, dout, att, qkv, B, T, D, NH, T, MVMOE_GRAD_ACCUMULATE);
}

static void grad_check(int B, int T, int D, int NH, uint64_t seed) {
    const size_t nq = (size_t)B * T * 3 * D, no = (size_t)B * T * D, na = (size_t)B * NH * T * T;
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, seed, 0);
    att_ctx c = {kc_alloc(nq), kc_alloc(no), kc_alloc(no), kc_alloc(na), B, T, D, NH};
    kc_fill_normal(c.qkv, nq, &rng, 1.0f);
    kc_fill_normal(c.r, no, &rng, 1.0f);
    float *num = kc_alloc(nq), *datt = kc_alloc(na);
    kc_numeric_grad(num, c.qkv, nq, KC_FD_EPS, att_objective, &c);
    att_objective(&c); /* att of the unperturbed input */
    for (int fast = 1; fast >= 0; fast--) {
        void (*bw)(float *, float *, const float *, const float *, const float *, int, int, int,
                   int) = fast ? attention_backward_acc : mvmoe_attention_backward_ref;
        float *g = kc_alloc(nq);
        bw(g, datt, c.r, c.att, c.qkv, B, T, D, NH);
        char what[96];
        snprintf(what, sizeof what, "attention dqkv B=%d T=%d D=%d NH=%d (%s)", B, T, D, NH,
                 fast ? "fast" : "ref");
        KC_CHECK_GRAD(what, g, num, nq, 0.5);
        /* each of dq, dk, dv must be non-trivial on its own */
        for (int sl = 0; sl < 3; sl++) {
            double a = 0;
            for (int t = 0; t < B * T; t++)
                for (int k = 0; k < D; k++) {
                    double v = g[(size_t)t * 3 * D + sl * D + k];
                    a += v * v;
                }
            CHECK(sqrt(a) > 0.05, "%s: slice %d (q/k/v) gradient norm %.3g too small", what, sl, sqrt(a));
        }
        float *g2 = kc_dup(g, nq); /* accumulation: a second call doubles */
        bw(g2, datt, c.r, c.att, c.qkv, B, T, D, NH);
        for (size_t i = 0; i < nq; i++) g[i] *= 2.0f;
        double e = tu_rel_err(g2, g, nq, 1e-6);
        CHECK(e < 1e-6, "%s: does not accumulate (2 calls vs 2x: rel err %.3g)", what, e);
        bw(NULL, datt, c.r, c.att, c.qkv, B, T, D, NH); /* NULL: skipped, must not crash */
        free(g), free(g2);
    }
    free(c.qkv), free(c.r), free(c.out), free(c.att), free(num), free(datt);
}

/* The AVX-512 attention (attention_avx512.c: softmax rows, and the fused block for hd = 16,
 * T <= 64, which D = 32, NH = 2 takes) must give the AVX2 path's bits: every T from 1 to 70
 * (all tails of 8 and 16 lanes) and 197, scores from tiny to clamped-exp size; then hd = 64
 * (D = 128) at T = 65..68 (T rows per pair: every remainder of the 4-row groups) and 197.
 * hd = 64 with T <= 80 runs the AVX-512 hd = 64 kernels, which replace the AVX2 path's sgemm
 * calls and need not give its bits: there the two must agree to float tolerance. */
static void test_isa_same_bits(void) {
    if (mvmoe_isa_force(512) != 0) {
        printf("skip: no AVX-512 on this CPU, the softmax ISA comparison did not run\n");
        return;
    }
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 77, 0);
    int checked = 0, same = 0;
    for (int T = 1; T <= 76; T++) {
        const int t = T == 71 || T == 76 ? 197 : T > 71 ? T - 7 : T, B = 2, D = T > 71 ? 128 : 32, NH = 2;
        const size_t nqkv = (size_t)B * t * 3 * D, no = (size_t)B * t * D,
                     na = (size_t)B * NH * t * t;
        float *qkv = kc_alloc(nqkv), *o[2], *a[2];
        kc_fill_normal(qkv, nqkv, &rng, T % 3 == 0 ? 6.0f : 1.0f); /* scores up to ~±300 */
        for (int w = 0; w < 2; w++) {
            o[w] = kc_alloc(no), a[w] = kc_alloc(na);
            mvmoe_isa_force(w ? 512 : 256);
            mvmoe_attention_forward(o[w], a[w], qkv, B, t, D, NH, t, MVMOE_TEAM_OWN);
        }
        checked++;
        const int bitwise = !(D / NH == 64 && t <= 80);
        same += !memcmp(o[0], o[1], no * sizeof(float)) && !memcmp(a[0], a[1], na * sizeof(float));
        if (bitwise) {
            CHECK(!memcmp(o[0], o[1], no * sizeof(float)) && !memcmp(a[0], a[1], na * sizeof(float)),
                  "attention T=%d hd=%d: AVX2 and AVX-512 softmax differ", t, D / NH);
        } else {
            char what[80];
            snprintf(what, sizeof what, "attention T=%d hd=%d: AVX-512 kernels vs AVX2 path", t, D / NH);
            KC_CHECK_CLOSE(what, o[1], o[0], no);
            KC_CHECK_CLOSE(what, a[1], a[0], na);
        }
        free(qkv), free(o[0]), free(o[1]), free(a[0]), free(a[1]);
    }
    mvmoe_isa_force(0);
    printf("  AVX2 vs AVX-512: %d of %d shapes bit-identical (hd = 64, T <= 80 need only be close)\n", same,
           checked);
}

int main(void) {
    omp_set_num_threads(1);
    test_isa_same_bits();
    test_known_values();
    test_fast_vs_ref();
    test_rows();
    grad_check(2, 5, 12, 3, 33); /* hd = 4: plain-loop row combinations */
    grad_check(1, 6, 16, 1, 34); /* hd = 16: AVX2 path, even T */
    grad_check(1, 7, 48, 2, 35); /* hd = 24, odd T */
    grad_check(1, 7, 128, 2, 36); /* hd = 64: the AVX-512 hd = 64 kernels where there is AVX-512 */
    TEST_MAIN_END("test_attention");
}
