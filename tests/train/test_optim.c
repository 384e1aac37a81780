/* AdamW fast path vs the plain reference, clipping, and the LR schedule's shape. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/layout.h"
#include "train/optim.h"
#include "test_util.h"

int main(void) {
    mvmoe_config c;
    mvmoe_config_preset(&c, "vit-test-tiny");
    mvmoe_layout L;
    CHECK(mvmoe_layout_build(&L, &c) == MVMOE_OK, "layout");
    size_t n = L.total;
    float *w = calloc(n, 4), *g = calloc(n, 4), *m = calloc(n, 4), *v = calloc(n, 4);
    float *w2 = calloc(n, 4), *m2 = calloc(n, 4), *v2 = calloc(n, 4);
    mvmoe_rng r;
    mvmoe_rng_init(&r, 1, 2);
    for (size_t k = 0; k < n; k++) w[k] = w2[k] = mvmoe_rng_normal(&r);
    mvmoe_adamw h = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f};
    for (int t = 1; t <= 5; t++) {
        for (size_t k = 0; k < n; k++) g[k] = mvmoe_rng_normal(&r);
        mvmoe_adamw_step(w, g, m, v, &L, &h, t);
        for (int i = 0; i < L.n; i++) {
            size_t o = L.t[i].offset;
            mvmoe_adamw_update_ref(w2 + o, g + o, m2 + o, v2 + o, L.t[i].count, h.lr, h.beta1,
                                   h.beta2, h.eps, L.t[i].decay ? h.weight_decay : 0, t);
        }
    }
    CHECK(tu_rel_err(w, w2, n, 1e-6) < 1e-5, "adamw fast vs ref: %g", tu_rel_err(w, w2, n, 1e-6));
    /* decay mask: norms, biases, pos_embed, cls_token are not decayed */
    for (int i = 0; i < L.n; i++) {
        const char *nm = L.t[i].name;
        int want = strstr(nm, ".weight") && !strstr(nm, "norm");
        CHECK(L.t[i].decay == want, "decay flag of %s", nm);
    }
    /* clipping: the norm drops to max_norm */
    for (size_t k = 0; k < n; k++) g[k] = 1.0f;
    double before = mvmoe_clip_grad_norm(g, &L, 0.5f);
    CHECK(fabs(before - sqrt((double)mvmoe_config_num_params(&c))) < 1e-2 * before, "norm %g", before);
    CHECK(fabs(mvmoe_grad_norm(g, &L) - 0.5) < 1e-4, "clipped norm %g", mvmoe_grad_norm(g, &L));
    {   /* the norm does not depend on the thread count (it feeds the clipping coefficient):
         * a layout whose tensors are large enough to be threaded */
        mvmoe_config cb;
        mvmoe_config_preset(&cb, "vit-12x192");
        mvmoe_layout Lb;
        CHECK(mvmoe_layout_build(&Lb, &cb) == MVMOE_OK, "layout 12x192");
        float *gb = malloc(sizeof(float) * Lb.total);
        for (size_t k = 0; k < Lb.total; k++) gb[k] = mvmoe_rng_normal(&r) * (k % 7 ? 1.0f : 1e3f);
        double nrm[2];
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            nrm[th - 1] = mvmoe_grad_norm(gb, &Lb);
        }
        CHECK(!memcmp(&nrm[0], &nrm[1], sizeof(double)), "gradient norm: 1 thread %.17g, 2 threads %.17g",
              nrm[0], nrm[1]);
        double want = 0;
        for (int i = 0; i < Lb.n; i++) /* the tensors, not the padding between them */
            for (size_t k = Lb.t[i].offset; k < Lb.t[i].offset + Lb.t[i].count; k++) want += (double)gb[k] * gb[k];
        CHECK(fabs(nrm[0] - sqrt(want)) < 1e-12 * sqrt(want), "gradient norm %.17g, serial sum %.17g", nrm[0],
              sqrt(want));
        free(gb);
        mvmoe_layout_free(&Lb);
    }
    /* schedule: ramps up, peaks at lr, ends at min_lr, monotone decay after warm-up */
    CHECK(mvmoe_lr_at(0, 100, 10, 1.0f, 0.01f) == 0.1f, "first warm-up step");
    CHECK(fabsf(mvmoe_lr_at(10, 100, 10, 1.0f, 0.01f) - 1.0f) < 1e-6f, "peak");
    CHECK(fabsf(mvmoe_lr_at(99, 100, 10, 1.0f, 0.01f) - 0.01f) < 1e-6f, "end %g",
          (double)mvmoe_lr_at(99, 100, 10, 1.0f, 0.01f));
    int mono = 1;
    for (int t = 11; t < 100; t++) mono &= mvmoe_lr_at(t, 100, 10, 1, 0.01f) <= mvmoe_lr_at(t - 1, 100, 10, 1, 0.01f);
    CHECK(mono, "cosine decay is monotone");
    free(w), free(g), free(m), free(v), free(w2), free(m2), free(v2);
    mvmoe_layout_free(&L);
    TEST_MAIN_END("test_optim");
}
