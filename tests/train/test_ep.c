/* The expert-parallel step (train/ep.c) in one process: it runs the model's two halves
 * (front: embedding, dense blocks, router; back: MoE blocks, head, loss) and exchanges the
 * images with itself, and must give the bits of mvmoe_train_step (loss, gradient norm,
 * weights, moments, logits), with drop path on, for two MoE blocks after a dense one and for
 * the last block alone as MoE (the class-only last block then starts the back half), top-1 and
 * top-2 (top-2 runs each MoE block on its own with the exchange hooks of the other choices, none
 * of which leaves one process). The helpers of top-k: which choices go to which rank, and the
 * back half's plan with those choices dropped. Its refusals say why: dense and per-token
 * routing, ranks not dividing the experts, adaptive k. Under several ranks:
 * tests/e2e/test_mpi_ep.sh. */
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "test_util.h"
#include "train/ep.h"
#include "train/step.h"

#define B 5

static void fill_batch(mvmoe_model *m, int32_t *labels, int step) {
    const mvmoe_config *c = &m->cfg;
    mvmoe_acts *a = &m->train_acts;
    mvmoe_rng r;
    mvmoe_rng_init(&r, 11, (uint64_t)step);
    for (size_t i = 0; i < (size_t)B * c->in_chans * c->img_size * c->img_size; i++) a->img[i] = mvmoe_rng_normal(&r);
    for (int i = 0; i < B; i++) labels[i] = (int32_t)((i * 3 + step) % c->num_classes);
    mvmoe_targets_smoothed(a->targets, labels, B, c->num_classes, 0.1f);
}

static void check_same_as_step(const char *name, const mvmoe_config *c, const int *map) {
    mvmoe_model *m1 = NULL, *m2 = NULL;
    CHECK(mvmoe_model_create(&m1, c, 4) == MVMOE_OK && mvmoe_model_create(&m2, c, 4) == MVMOE_OK,
          "%s: create: %s", name, mvmoe_last_error());
    if (!m1 || !m2) return;
    CHECK(mvmoe_model_train_init(m1, B) == MVMOE_OK && mvmoe_model_train_init(m2, B) == MVMOE_OK,
          "%s: train init", name);
    mvmoe_ep ep;
    CHECK(mvmoe_ep_init(&ep, m2, B, 0, B) == MVMOE_OK, "%s: ep init: %s", name, mvmoe_last_error());
    mvmoe_train_options o;
    mvmoe_train_options_default(&o);
    o.drop_path = 0.3f;
    o.seed = 7;
    mvmoe_step_options so;
    mvmoe_step_options_from(&so, &o);
    so.pass.superclass_of = map;
    int32_t labels[B];
    for (int step = 0; step < 3; step++) {
        mvmoe_step_result r1, r2;
        fill_batch(m1, labels, step);
        CHECK(mvmoe_train_step(m1, labels, &so, &r1) == MVMOE_OK, "%s: step: %s", name, mvmoe_last_error());
        fill_batch(m2, labels, step);
        CHECK(mvmoe_train_step_ep(m2, &ep, labels, &so, &r2) == MVMOE_OK, "%s: ep step: %s", name, mvmoe_last_error());
        CHECK(r1.loss == r2.loss && r1.loss_ce == r2.loss_ce && r1.loss_router == r2.loss_router &&
                  r1.loss_aux == r2.loss_aux && r1.grad_norm == r2.grad_norm,
              "%s: step %d: loss %.9g vs %.9g (ce %.9g vs %.9g), norm %.9g vs %.9g", name, step, r1.loss, r2.loss,
              r1.loss_ce, r2.loss_ce, r1.grad_norm, r2.grad_norm);
        CHECK(memcmp(m1->train_acts.logits, m2->train_acts.logits, sizeof(float) * B * c->num_classes) == 0,
              "%s: step %d: the logits brought home differ", name, step);
        CHECK(ep.Bm == B, "%s: one process received %d of %d images", name, ep.Bm, B);
    }
    const size_t n = m1->layout.total;
    CHECK(m1->step == 3 && m2->step == 3 && memcmp(m1->param_mem, m2->param_mem, sizeof(float) * n) == 0 &&
              memcmp(m1->adam_m, m2->adam_m, sizeof(float) * n) == 0 &&
              memcmp(m1->adam_v, m2->adam_v, sizeof(float) * n) == 0,
          "%s: weights or moments after three steps differ from mvmoe_train_step's", name);
    CHECK(mvmoe_ep_sync(m2, &ep) == MVMOE_OK, "%s: sync in one process", name);
    mvmoe_ep_free(&ep);
    mvmoe_model_free(m1);
    mvmoe_model_free(m2);
}

/* mvmoe_ep_out_choices: 6 images, top-3, 6 experts over 3 ranks (2 each), this rank 1 */
static void check_out_choices(void) {
    const int expert[6 * 3] = {2, 3, 0, /* rank 1, 1, 0: choice 2 to rank 0 */
                               3, 4, 5, /* both to rank 2 */
                               2, 1, 3, /* to rank 0; 3 stays */
                               3, 2, 2, /* all here */
                               2, 5, 0, /* to rank 2, rank 0 */
                               3, 0, 4}; /* to rank 0, rank 2 */
    int count[3], item[12], choice[12];
    const int n = mvmoe_ep_out_choices(expert, 6, 3, 2, 1, 3, count, item, choice);
    const int want_item[8] = {0, 2, 4, 5, 1, 1, 4, 5}, want_choice[8] = {2, 1, 2, 1, 1, 2, 1, 2};
    int same = n == 8 && count[0] == 4 && count[1] == 0 && count[2] == 4;
    for (int i = 0; same && i < 8; i++) same = item[i] == want_item[i] && choice[i] == want_choice[i];
    CHECK(same, "out choices: %d (counts %d %d %d), by destination rank, image, choice", n, count[0], count[1],
          count[2]);
    /* top-1 or every expert here: nothing goes out */
    CHECK(mvmoe_ep_out_choices(expert, 6, 3, 6, 0, 1, count, item, choice) == 0 && count[0] == 0,
          "one rank: no out choices");
}

/* mvmoe_plan_from_choices with dropped (-1) choices: the others grouped as a router groups
 * them (choice-major, item order), the dropped ones at pos -1 with gate 0 */
static void check_plan_drops(void) {
    int ex[8], pos[8], src[8], start[4];
    float gt[8];
    mvmoe_plan p = {0, 0, 0, 0, ex, gt, pos, start, src};
    const int e[8] = {1, -1, 0, 2, 1, 0, 2, -1};
    const float g[8] = {.5f, .3f, .6f, .2f, .4f, .35f, .7f, .1f};
    mvmoe_plan_from_choices(&p, e, g, 4, 2, 3, 5);
    /* expert 0: item 1 choice 0 (j 2), item 2 choice 1 (j 5); 1: item 0 (j 0), item 2 (j 4); 2: item 3 (j 6), item 1 choice 1 (j 3) */
    const int want_pos[8] = {2, -1, 0, 5, 3, 1, 4, -1};
    int same = start[0] == 0 && start[1] == 2 && start[2] == 4 && start[3] == 6 && gt[1] == 0 && gt[7] == 0 &&
               gt[0] == .5f && p.rows == 5;
    for (int j = 0; same && j < 8; j++) same = pos[j] == want_pos[j] && (pos[j] < 0 || src[pos[j]] == j);
    CHECK(same, "plan with dropped choices: start %d %d %d %d", start[0], start[1], start[2], start[3]);
}

static void check_refused(const char *name, const mvmoe_config *c, int ranks, const char *why) {
    mvmoe_status s = mvmoe_ep_check(c, ranks);
    CHECK(s != MVMOE_OK && strstr(mvmoe_last_error(), why), "%s: status %d: %s", name, (int)s, mvmoe_last_error());
}

int main(void) {
    mvmoe_set_threads(2);
    mvmoe_config c;
    CHECK(mvmoe_config_preset(&c, "vit-test-tiny") == MVMOE_OK, "preset");
    mvmoe_config moe = c;
    moe.depth = 3, moe.routing = MVMOE_ROUTING_IMAGE_SUPERCLASS, moe.experts = 3, moe.top_k = 1, moe.moe_layers = 2;
    int map[10];
    for (int k = 0; k < 10; k++) map[k] = k % 3;
    check_same_as_step("image-superclass, 2 MoE blocks after a dense one", &moe, map);
    mvmoe_config last = moe;
    last.moe_layers = 1; /* the class-only last block is the only MoE block */
    check_same_as_step("image-superclass, the last block MoE", &last, map);
    mvmoe_config learned = moe;
    learned.routing = MVMOE_ROUTING_IMAGE_LEARNED;
    check_same_as_step("image-learned, one process", &learned, NULL);

    CHECK(mvmoe_ep_check(&moe, 3) == MVMOE_OK, "3 experts over 3 ranks: %s", mvmoe_last_error());
    check_refused("3 experts over 2 ranks", &moe, 2, "the 3 experts do not split evenly over 2 ranks");
    mvmoe_config top2 = moe;
    top2.top_k = 2;
    check_same_as_step("image-superclass, top-2, one process", &top2, map);
    mvmoe_config top2last = last;
    top2last.top_k = 2;
    check_same_as_step("image-superclass, top-2, the last block MoE", &top2last, map);
    mvmoe_config top3 = moe;
    top3.top_k = 3;
    check_same_as_step("image-superclass, top-3, one process", &top3, map);
    CHECK(mvmoe_ep_check(&top2, 3) == MVMOE_OK, "top-2, 3 experts over 3 ranks: %s", mvmoe_last_error());
    check_out_choices();
    check_plan_drops();
    {
        mvmoe_model *m = NULL;
        mvmoe_ep ep;
        CHECK(mvmoe_model_create(&m, &top2, 4) == MVMOE_OK && mvmoe_model_train_init(m, B) == MVMOE_OK, "create");
        if (m) {
            m->adaptive_k = 0.5f;
            mvmoe_status s = mvmoe_ep_init(&ep, m, B, 0, B);
            CHECK(s != MVMOE_OK && strstr(mvmoe_last_error(), "with adaptive k"), "adaptive k: %s", mvmoe_last_error());
            mvmoe_ep_free(&ep);
            mvmoe_model_free(m);
        }
    }
    check_refused("dense", &c, 1, "routing is dense");
    mvmoe_config token = moe;
    token.routing = MVMOE_ROUTING_TOKEN_LEARNED;
    check_refused("token-learned", &token, 1, "needs one router per image");
    TEST_MAIN_END("test_ep");
}
