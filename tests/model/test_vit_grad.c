/* Whole-model finite-difference gradient check: every parameter tensor of a tiny ViT, with
 * and without drop-path (its masks are a pure function of (seed, step), so the numerical
 * derivative sees the same masks). Also checks save/load round trip and config JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "test_util.h"

/* The trainer's MoE settings; the MoE variants below raise the balancing weight and cap the
 * experts' capacity. */
static mvmoe_pass pass = {.superclass_lambda = 0.3f, .aux_weight = 0.01f, .capacity_ratio = 1.05f,
                          .route_noise = 1};

static double loss_at(mvmoe_model *m, const float *img, const int32_t *labels, int B, float dp) {
    mvmoe_acts *a = &m->train_acts;
    const mvmoe_config *c = &m->cfg;
    memcpy(a->img, img, sizeof(float) * (size_t)B * c->in_chans * c->img_size * c->img_size);
    mvmoe_targets_smoothed(a->targets, labels, B, c->num_classes, 0.1f);
    pass.drop_path = dp, pass.seed = 7, pass.step = 3;
    mvmoe_vit_forward(m, a, B, &pass);
    return mvmoe_vit_loss(m, a, B, labels, &pass);
}

static float fd_eps = 1e-2f;
static double fd_floor = 1e-4; /* |num| below this is compared absolutely (float32 noise) */
static int busy_experts; /* expert tensors with a non-zero gradient in the last check */

static void grad_check(mvmoe_model *m, const float *img, const int32_t *labels, int B, float dp) {
    loss_at(m, img, labels, B, dp);
    mvmoe_vit_backward(m, &m->train_acts, B);
    mvmoe_rng r;
    mvmoe_rng_init(&r, 99, 0);
    busy_experts = 0;
    for (int i = 0; i < m->layout.n; i++) {
        const mvmoe_tensor_info *t = &m->layout.t[i];
        /* sample up to 12 entries per tensor; compare as whole vectors */
        int ns = t->count < 12 ? (int)t->count : 12;
        double num[12], ana[12], dn = 0, an = 0, diff = 0;
        for (int s = 0; s < ns; s++) {
            size_t k = t->count <= 12 ? (size_t)s : mvmoe_rng_below(&r, (uint32_t)t->count);
            float *w = m->param_mem + t->offset + k;
            float w0 = *w, eps = fd_eps * fmaxf(1.0f, fabsf(w0));
            *w = w0 + eps;
            double lp = loss_at(m, img, labels, B, dp);
            *w = w0 - eps;
            double lm = loss_at(m, img, labels, B, dp);
            *w = w0;
            num[s] = (lp - lm) / (2.0 * eps);
            ana[s] = m->grad_mem[t->offset + k];
            dn += num[s] * num[s];
            an += ana[s] * ana[s];
            diff += (num[s] - ana[s]) * (num[s] - ana[s]);
        }
        double rel = sqrt(diff) / fmax(sqrt(dn), fd_floor);
        CHECK(rel < 3e-2, "drop_path %.1f: %s: |num-ana|/|num| = %.3g (|num| %.3g, |ana| %.3g)",
              (double)dp, t->name, rel, sqrt(dn), sqrt(an));
        /* guard: a gradient that is identically zero must not pass by matching a tiny
         * numerical derivative (cls_token's gradient is tiny but not zero) */
        /* (an expert no image was routed to has a true gradient of zero: then the numerical
         * one must be zero too, which the relative check above already compares) */
        int idle_expert = strstr(t->name, ".experts.") && sqrt(dn) < 1e-6;
        CHECK(idle_expert || sqrt(an) > 1e-7, "%s: analytic gradient is zero", t->name);
        if (strstr(t->name, ".experts.") && sqrt(an) > 1e-7) busy_experts++;
    }
}

int main(void) {
    mvmoe_config c;
    CHECK(mvmoe_config_preset(&c, "vit-test-tiny") == MVMOE_OK, "preset");
    c.img_size = 8; c.in_chans = 2; c.patch = 4; c.dim = 12; c.depth = 2; c.heads = 3;
    c.mlp_dim = 20; c.num_classes = 4;
    c.mean[0] = 0.1f; c.std[1] = 0.7f;
    mvmoe_model *m;
    CHECK(mvmoe_model_create(&m, &c, 1) == MVMOE_OK, "create: %s", mvmoe_last_error());
    /* larger weights than timm's init so every path carries signal */
    mvmoe_rng r;
    mvmoe_rng_init(&r, 5, 0);
    for (int i = 0; i < m->layout.n; i++)
        for (size_t k = 0; k < m->layout.t[i].count; k++)
            m->param_mem[m->layout.t[i].offset + k] += 0.3f * mvmoe_rng_normal(&r);
    const int B = 3;
    CHECK(mvmoe_model_train_init(m, B) == MVMOE_OK, "train init");
    size_t ni = (size_t)B * c.in_chans * c.img_size * c.img_size;
    float *img = malloc(sizeof(float) * ni);
    for (size_t k = 0; k < ni; k++) img[k] = mvmoe_rng_normal(&r);
    int32_t labels[3] = {0, 3, 1};
    grad_check(m, img, labels, B, 0.0f);
    grad_check(m, img, labels, B, 0.5f);

    /* save → load round trip is bit-exact and keeps the config */
    char path[] = "/tmp/mvmoe_test_ckptXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(mvmoe_model_save(m, path) == MVMOE_OK, "save: %s", mvmoe_last_error());
    mvmoe_model *m2 = NULL;
    CHECK(mvmoe_model_load(&m2, path, NULL) == MVMOE_OK, "load: %s", mvmoe_last_error());
    if (m2) {
        CHECK(m2->layout.total == m->layout.total, "arena size");
        CHECK(memcmp(m2->param_mem, m->param_mem, sizeof(float) * m->layout.total) == 0,
              "weights differ after round trip");
        CHECK(m2->cfg.heads == 3 && m2->cfg.std[1] == 0.7f && m2->cfg.mean[0] == 0.1f,
              "config round trip");
        mvmoe_model_free(m2);
    }
    /* loading at another image size resamples pos_embed and still runs */
    mvmoe_load_options lo = {.img_size = 16};
    CHECK(mvmoe_model_load(&m2, path, &lo) == MVMOE_OK, "load at 16: %s", mvmoe_last_error());
    if (m2) {
        CHECK(mvmoe_config_tokens(&m2->cfg) == 17, "tokens at 16x16/4");
        mvmoe_model_free(m2);
    }
    unlink(path);
    mvmoe_model_free(m);

    /* MoE models: every routing mode, k = 1 and 2, one and two MoE blocks. The finite
     * differences see the same routing decisions (perturbations are far smaller than the
     * router's top-k margins here) and the same noise (a function of seed and step). */
    struct { mvmoe_routing r; int E, k, L, depth; } moe[] = {
        {MVMOE_ROUTING_IMAGE_SUPERCLASS, 3, 1, 1, 2}, {MVMOE_ROUTING_IMAGE_SUPERCLASS, 3, 2, 2, 3},
        {MVMOE_ROUTING_IMAGE_LEARNED, 3, 1, 1, 2},    {MVMOE_ROUTING_IMAGE_LEARNED, 4, 2, 1, 2},
        {MVMOE_ROUTING_TOKEN_LEARNED, 3, 1, 2, 2},    {MVMOE_ROUTING_TOKEN_LEARNED, 3, 2, 1, 2},
    };
    int sc[4] = {0, 2, 1, 2};
    for (size_t v = 0; v < sizeof moe / sizeof moe[0]; v++) {
        mvmoe_config mc = c;
        mc.class_names = NULL;
        mc.superclass_of = NULL;
        mc.routing = moe[v].r;
        mc.experts = moe[v].E;
        mc.top_k = moe[v].k;
        mc.moe_layers = moe[v].L;
        mc.depth = moe[v].depth;
        if (moe[v].r == MVMOE_ROUTING_IMAGE_SUPERCLASS) mc.superclass_of = sc;
        mvmoe_model *mm = NULL;
        CHECK(mvmoe_model_create(&mm, &mc, 3) == MVMOE_OK, "create moe %zu: %s", v, mvmoe_last_error());
        if (!mm) continue;
        for (int i = 0; i < mm->layout.n; i++)
            for (size_t k = 0; k < mm->layout.t[i].count; k++)
                mm->param_mem[mm->layout.t[i].offset + k] += 0.3f * mvmoe_rng_normal(&r);
        /* strong router weights: clear top-k margins, so no finite difference flips a choice */
        float *rw = mm->p.router_w ? mm->p.router_w : mm->p.trouter_w;
        size_t rn = (size_t)mc.experts * mc.dim * (mm->p.router_w ? 1 : mc.moe_layers);
        for (size_t k = 0; k < rn; k++) rw[k] *= 4.0f;
        pass.aux_weight = 0.5f; /* make the balancing losses' gradients visible */
        pass.capacity_ratio = moe[v].r == MVMOE_ROUTING_TOKEN_LEARNED ? 0.8f : 0.0f; /* some drops */
        CHECK(mvmoe_model_train_init(mm, B) == MVMOE_OK, "train init moe");
        printf("moe variant %zu: routing %s E %d k %d L %d\n", v, mvmoe_routing_name(mc.routing),
               mc.experts, mc.top_k, mc.moe_layers);
        fd_eps = 2e-3f; /* small: no routing decision may flip */
        fd_floor = 5e-3; /* float32 loss noise / eps ≈ 5e-5: gates of a 2nd expert sit there */
        grad_check(mm, img, labels, B, 0.0f);
        CHECK(busy_experts >= 4 * mc.moe_layers, "variant %zu: only %d expert tensors got gradients", v,
              busy_experts);
        grad_check(mm, img, labels, B, 0.5f);
        fflush(stdout);
        mvmoe_model_free(mm);
    }
    free(img);
    mvmoe_config_free(&c);
    TEST_MAIN_END("test_vit_grad");
}
