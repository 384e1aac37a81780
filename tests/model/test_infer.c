/* Inference forward (class-token-only last block, src/model/vit.c) against the full forward
 * that training runs: same logits (up to float summation order) and the same routing, for
 * every routing mode and for MoE blocks at the last position, before it, and everywhere.
 * And the bits do not depend on the thread count: logits (inference and training, with
 * stochastic depth) and every gradient on 1 and 2 threads, for batches whose rows split
 * between the threads inside an image. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "test_util.h"

static void check(const char *name, mvmoe_config c, int B) {
    mvmoe_model *m = NULL;
    CHECK(mvmoe_model_create(&m, &c, 5) == MVMOE_OK, "%s: create: %s", name, mvmoe_last_error());
    if (!m) return;
    /* the training forward without a pass (no noise, no capacity) is inference's */
    /* larger weights than the init's 0.02 so every block matters to the logits */
    mvmoe_rng r;
    mvmoe_rng_init(&r, 11, 0);
    for (size_t i = 0; i < m->layout.total; i++) m->param_mem[i] += 0.2f * mvmoe_rng_normal(&r);
    mvmoe_model_params_changed(m);
    /* inference on the packed copies of the weights (kernels/linear_packed.c) */
    CHECK(mvmoe_model_pack_weights(m) == MVMOE_OK, "%s: prepare", name);
    CHECK(m->packed.mem || !mvmoe_model_packed_floats(&c), "%s: no packed weights", name);
    CHECK(mvmoe_model_train_init(m, B) == MVMOE_OK, "%s: train init", name);
    mvmoe_acts inf;
    CHECK(mvmoe_acts_init(&inf, &c, B, 0) == MVMOE_OK, "%s: acts init", name);
    size_t ni = (size_t)B * c.in_chans * c.img_size * c.img_size;
    for (size_t i = 0; i < ni; i++) m->train_acts.img[i] = inf.img[i] = mvmoe_rng_normal(&r);

    mvmoe_vit_forward(m, &m->train_acts, B, NULL);
    mvmoe_vit_forward(m, &inf, B, NULL);
    size_t nl = (size_t)B * c.num_classes;
    double err = tu_rel_err(inf.logits, m->train_acts.logits, nl, 1e-3), spread = 0;
    for (size_t i = 1; i < nl; i++) spread = fmax(spread, fabs(inf.logits[i] - inf.logits[0]));
    CHECK(err < 1e-5, "%s: inference vs full forward logits rel err %.3g", name, err);
    CHECK(spread > 1e-2, "%s: logits nearly constant (%.3g): the check would be vacuous", name, spread);
    /* changed weights: the stale packed copies must not be used, until made again */
    for (size_t i = 0; i < m->layout.total; i++) m->param_mem[i] *= 1.01f;
    mvmoe_model_params_changed(m);
    float *before = malloc(nl * sizeof(float));
    CHECK(before != NULL, "alloc");
    if (before) {
        memcpy(before, inf.logits, nl * sizeof(float));
        mvmoe_vit_forward(m, &m->train_acts, B, NULL);
        mvmoe_vit_forward(m, &inf, B, NULL);
        err = tu_rel_err(inf.logits, m->train_acts.logits, nl, 1e-3);
        CHECK(err < 1e-5 && memcmp(before, inf.logits, nl * sizeof(float)),
              "%s: changed weights, stale packed copies: rel err %.3g", name, err);
        CHECK(mvmoe_model_pack_weights(m) == MVMOE_OK, "%s: prepare again", name);
        mvmoe_vit_forward(m, &inf, B, NULL);
        err = tu_rel_err(inf.logits, m->train_acts.logits, nl, 1e-3);
        CHECK(err < 1e-5, "%s: changed weights, packed again: rel err %.3g", name, err);
        free(before);
    }
    if (c.routing != MVMOE_ROUTING_DENSE) {
        const mvmoe_plan *p = &inf.plans[0], *q = &m->train_acts.plans[0];
        int same = p->n == q->n && p->rows == q->rows;
        for (int i = 0; same && i < p->n * p->k; i++) same = p->expert[i] == q->expert[i] && p->pos[i] == q->pos[i];
        CHECK(same, "%s: routing differs between inference and the full forward", name);
    }
    mvmoe_acts_free(&inf);
    mvmoe_model_free(m);
}

/* logits (inference, then training forward), then every gradient, on `threads` threads */
static void run_threads(mvmoe_model *m, mvmoe_acts *inf, int B, int threads, float *out) {
    const mvmoe_config *c = &m->cfg;
    const size_t nl = (size_t)B * c->num_classes;
    omp_set_num_threads(threads);
    mvmoe_vit_forward(m, inf, B, NULL);
    memcpy(out, inf->logits, nl * sizeof(float));
    mvmoe_acts *a = &m->train_acts;
    /* a training pass with stochastic depth and the trainer's MoE settings (router noise on) */
    const mvmoe_pass pass = {.drop_path = 0.3f, .seed = 17, .step = 2, .superclass_lambda = 0.3f,
                             .aux_weight = 0.01f, .capacity_ratio = 1.05f, .route_noise = 1};
    mvmoe_vit_forward(m, a, B, &pass);
    memcpy(out + nl, a->logits, nl * sizeof(float));
    int32_t labels[64];
    for (int b = 0; b < B; b++) labels[b] = (b * 5 + 1) % c->num_classes;
    mvmoe_targets_smoothed(a->targets, labels, B, c->num_classes, 0.1f);
    mvmoe_vit_loss(m, a, B, labels, &pass);
    mvmoe_vit_backward(m, a, B);
    memcpy(out + 2 * nl, m->grad_mem, m->layout.total * sizeof(float));
    omp_set_num_threads(1);
}

static void check_threads(const char *name, mvmoe_config c, int B) {
    mvmoe_model *m = NULL;
    CHECK(B <= 64 && mvmoe_model_create(&m, &c, 6) == MVMOE_OK, "%s: create: %s", name, mvmoe_last_error());
    if (!m) return;
    mvmoe_rng r;
    mvmoe_rng_init(&r, 12, 0);
    for (size_t i = 0; i < m->layout.total; i++) m->param_mem[i] += 0.2f * mvmoe_rng_normal(&r);
    mvmoe_model_params_changed(m);
    CHECK(mvmoe_model_pack_weights(m) == MVMOE_OK, "%s: prepare", name);
    CHECK(mvmoe_model_train_init(m, B) == MVMOE_OK, "%s: train init", name);
    mvmoe_acts inf;
    CHECK(mvmoe_acts_init(&inf, &c, B, 0) == MVMOE_OK, "%s: acts init", name);
    size_t ni = (size_t)B * c.in_chans * c.img_size * c.img_size;
    for (size_t i = 0; i < ni; i++) m->train_acts.img[i] = inf.img[i] = mvmoe_rng_normal(&r);
    const size_t n = 2 * (size_t)B * c.num_classes + m->layout.total;
    float *one = calloc(n, sizeof(float)), *two = calloc(n, sizeof(float));
    CHECK(one && two, "%s: alloc", name);
    if (one && two) {
        run_threads(m, &inf, B, 1, one);
        run_threads(m, &inf, B, 2, two);
        double gmax = 0;
        for (size_t i = 2 * (size_t)B * c.num_classes; i < n; i++) gmax = fmax(gmax, fabs(one[i]));
        CHECK(gmax > 0, "%s: all gradients zero: the comparison would be vacuous", name);
        CHECK(!memcmp(one, two, n * sizeof(float)),
              "%s, batch %d: logits or gradients differ between 1 and 2 threads", name, B);
    }
    free(one), free(two);
    mvmoe_acts_free(&inf);
    mvmoe_model_free(m);
}

int main(void) {
    mvmoe_config c;
    memset(&c, 0, sizeof c);
    CHECK(mvmoe_config_preset(&c, "vit-test-tiny") == MVMOE_OK, "preset");
    c.img_size = 12, c.patch = 3, c.in_chans = 2, c.dim = 24, c.heads = 3, c.mlp_dim = 40;
    c.num_classes = 7, c.depth = 3;
    check("dense", c, 5);
    c.routing = MVMOE_ROUTING_IMAGE_SUPERCLASS, c.experts = 3, c.top_k = 1, c.moe_layers = 1;
    check("image-superclass E3 k1 L1 (router and experts in the last block)", c, 5);
    c.moe_layers = 2;
    check("image-superclass E3 k1 L2", c, 6);
    c.depth = 4, c.moe_layers = 3;
    check("image-superclass E3 k1 L3 of 4", c, 4);
    c.depth = 3;
    c.routing = MVMOE_ROUTING_IMAGE_LEARNED, c.experts = 4, c.top_k = 2, c.moe_layers = 2;
    check("image-learned E4 k2 L2", c, 7);
    c.routing = MVMOE_ROUTING_TOKEN_LEARNED;
    check("token-learned E4 k2 L2 (full last block)", c, 3);
    c.routing = MVMOE_ROUTING_DENSE, c.experts = 0, c.top_k = 1, c.moe_layers = 0;
    c.depth = 1;
    check("dense, depth 1", c, 2);

    /* 17 tokens per image: batch 5 has 85 rows, split 42/43 inside image 2 */
    c.depth = 3;
    check_threads("dense", c, 5);
    check_threads("dense, batch 1 (17 rows: one thread)", c, 1);
    c.routing = MVMOE_ROUTING_IMAGE_SUPERCLASS, c.experts = 3, c.top_k = 1, c.moe_layers = 1;
    check_threads("image-superclass E3 k1 L1", c, 5);
    /* an MoE block before the last runs by rows: its router on one thread mid-region, each
     * thread the experts of the images in its rows (image 2 split between the threads) */
    c.moe_layers = 2;
    check_threads("image-superclass E3 k1 L2", c, 5);
    c.routing = MVMOE_ROUTING_IMAGE_LEARNED, c.experts = 4, c.top_k = 2, c.moe_layers = 2;
    check_threads("image-learned E4 k2 L2", c, 5);
    c.routing = MVMOE_ROUTING_TOKEN_LEARNED, c.experts = 4, c.top_k = 2, c.moe_layers = 2;
    check_threads("token-learned E4 k2 L2", c, 3);
    TEST_MAIN_END("test_infer");
}
