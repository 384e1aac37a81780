/* Patch extraction: exact index mapping (patch order and (c, py, px) element order), fast vs
 * reference bit-identical (incl. image sizes not divisible by P, 1 and 2 threads), and
 * patchify + linear equals a direct stride-P convolution (what timm's PatchEmbed computes). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/kernels.h"

static void test_mapping(void) {
    enum { B = 2, C = 3, H = 8, W = 12, P = 4, GH = H / P, GW = W / P, E = C * P * P };
    float img[B * C * H * W], pt[B * GH * GW * E], ptr[B * GH * GW * E];
    for (int i = 0; i < B * C * H * W; i++) img[i] = (float)i; /* value = flat index, exact */
    mvmoe_patchify(pt, img, B, C, H, W, P);
    mvmoe_patchify_ref(ptr, img, B, C, H, W, P);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int n = 0; n < GH * GW; n++)
            for (int e = 0; e < E; e++) {
                const int gy = n / GW, gx = n % GW, c = e / (P * P), py = e / P % P, px = e % P;
                const float want = (float)(((b * C + c) * H + gy * P + py) * W + gx * P + px);
                const size_t at = ((size_t)b * GH * GW + n) * E + e;
                bad += pt[at] != want || ptr[at] != want;
            }
    CHECK(bad == 0, "patchify index mapping: %d elements misplaced", bad);
}

static void test_fast_vs_ref(void) {
    const int shapes[][5] = {{2, 1, 28, 28, 4}, {3, 3, 32, 32, 4}, {1, 3, 224, 224, 16},
                             {2, 3, 30, 29, 4}, {4, 3, 32, 32, 16}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 61, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int B = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3],
                  P = shapes[s][4];
        const size_t ni = (size_t)B * C * H * W, np = (size_t)B * (H / P) * (W / P) * C * P * P;
        float *img = kc_alloc(ni), *ref = kc_alloc(np);
        kc_fill_normal(img, ni, &rng, 1.0f);
        mvmoe_patchify_ref(ref, img, B, C, H, W, P);
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            float *got = kc_alloc(np);
            for (size_t i = 0; i < np; i++) got[i] = NAN;
            mvmoe_patchify(got, img, B, C, H, W, P);
            CHECK(!memcmp(got, ref, np * sizeof *got),
                  "patchify B=%d C=%d H=%d W=%d P=%d threads=%d: fast != ref", B, C, H, W, P, th);
            free(got);
        }
        free(img), free(ref);
    }
    omp_set_num_threads(1);
}

/* patches · weightᵀ + bias, weight [D, C, P, P] used as [D, C·P·P], equals Conv2d(stride P). */
static void test_conv_equivalence(void) {
    enum { B = 2, C = 3, H = 8, W = 8, P = 4, D = 5, GH = H / P, GW = W / P, E = C * P * P };
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 62, 0);
    float img[B * C * H * W], wt[D * E], bias[D], pt[B * GH * GW * E], out[B * GH * GW * D],
        conv[B * GH * GW * D];
    kc_fill_normal(img, B * C * H * W, &rng, 1.0f);
    kc_fill_normal(wt, D * E, &rng, 1.0f);
    kc_fill_normal(bias, D, &rng, 1.0f);
    mvmoe_patchify(pt, img, B, C, H, W, P);
    mvmoe_linear_forward_ref(out, pt, wt, bias, B * GH * GW, E, D);
    for (int b = 0; b < B; b++) /* conv[b, gy·GW + gx, d] (tokens-major, as timm flattens) */
        for (int gy = 0; gy < GH; gy++)
            for (int gx = 0; gx < GW; gx++)
                for (int d = 0; d < D; d++) {
                    double acc = bias[d];
                    for (int c = 0; c < C; c++)
                        for (int ky = 0; ky < P; ky++)
                            for (int kx = 0; kx < P; kx++)
                                acc += (double)wt[((d * C + c) * P + ky) * P + kx] *
                                       img[((b * C + c) * H + gy * P + ky) * W + gx * P + kx];
                    conv[((b * GH + gy) * GW + gx) * D + d] = (float)acc;
                }
    double e = tu_rel_err(out, conv, B * GH * GW * D, 1e-6);
    CHECK(e < 1e-6, "patchify + linear vs direct stride-%d conv: rel err %.3g", P, e);
}

int main(void) {
    omp_set_num_threads(1);
    test_mapping();
    test_fast_vs_ref();
    test_conv_equivalence();
    TEST_MAIN_END("test_patch");
}
