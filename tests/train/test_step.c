/* mvmoe_train_step, the one training step of the trainer and the benchmark: bit-identical to
 * its passes called by hand (pack, forward, loss, backward, clip, AdamW), for a dense and an
 * image-superclass MoE model whose router targets come from the step's own map; a non-finite
 * loss fails before AdamW with the weights and the step count untouched; and the benchmark
 * no longer writes a stand-in super-class map into the caller's model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "test_util.h"
#include "train/step.h"

#define B 4

static void fill_batch(mvmoe_model *m, int32_t *labels) {
    const mvmoe_config *c = &m->cfg;
    mvmoe_acts *a = &m->train_acts;
    mvmoe_rng r;
    mvmoe_rng_init(&r, 9, 1);
    for (size_t i = 0; i < (size_t)B * c->in_chans * c->img_size * c->img_size; i++) a->img[i] = mvmoe_rng_normal(&r);
    for (int i = 0; i < B; i++) labels[i] = (int32_t)((i * 3 + 1) % c->num_classes);
    mvmoe_targets_smoothed(a->targets, labels, B, c->num_classes, 0.1f);
}

static void check_against_passes(const char *name, const mvmoe_config *c, const int *map) {
    mvmoe_model *m1 = NULL, *m2 = NULL;
    CHECK(mvmoe_model_create(&m1, c, 4) == MVMOE_OK && mvmoe_model_create(&m2, c, 4) == MVMOE_OK,
          "%s: create: %s", name, mvmoe_last_error());
    if (!m1 || !m2) return;
    CHECK(mvmoe_model_train_init(m1, B) == MVMOE_OK && mvmoe_model_train_init(m2, B) == MVMOE_OK,
          "%s: train init", name);
    mvmoe_train_options o;
    mvmoe_train_options_default(&o);
    o.drop_path = 0.2f;
    o.seed = 5;
    mvmoe_step_options so;
    mvmoe_step_options_from(&so, &o);
    so.pass.superclass_of = map;
    int32_t labels[B];
    for (int step = 0; step < 2; step++) {
        fill_batch(m1, labels);
        mvmoe_step_result r;
        CHECK(mvmoe_train_step(m1, labels, &so, &r) == MVMOE_OK, "%s: step: %s", name, mvmoe_last_error());
        CHECK(isfinite(r.loss) && fabs(r.loss - (r.loss_ce + r.loss_router + r.loss_aux)) < 1e-9,
              "%s: loss %g is not the sum of its parts", name, r.loss);
        if (map) CHECK(r.loss_router > 0, "%s: the step's own map gave no router loss", name);

        /* the same step by hand */
        fill_batch(m2, labels);
        mvmoe_acts *a = &m2->train_acts;
        mvmoe_pass pass = so.pass;
        pass.step = m2->step;
        CHECK(mvmoe_model_pack_weights(m2) == MVMOE_OK, "%s: pack", name);
        mvmoe_vit_forward(m2, a, B, &pass);
        double loss = mvmoe_vit_loss(m2, a, B, labels, &pass);
        mvmoe_vit_backward(m2, a, B);
        double gnorm = mvmoe_clip_grad_norm(m2->grad_mem, &m2->layout, so.clip_norm);
        m2->step++;
        mvmoe_adamw_step(m2->param_mem, m2->grad_mem, m2->adam_m, m2->adam_v, &m2->layout, &so.adamw, m2->step);
        mvmoe_model_params_changed(m2);
        CHECK(loss == r.loss && gnorm == r.grad_norm, "%s: step %d: loss %g vs %g, norm %g vs %g", name,
              step, r.loss, loss, r.grad_norm, gnorm);
    }
    CHECK(m1->step == 2 && memcmp(m1->param_mem, m2->param_mem, sizeof(float) * m1->layout.total) == 0 &&
              memcmp(m1->adam_v, m2->adam_v, sizeof(float) * m1->layout.total) == 0,
          "%s: weights after two steps differ from the passes called by hand", name);
    CHECK(m1->cfg.superclass_of == c->superclass_of, "%s: the step changed the config's map", name);

    /* a non-finite loss: refused before AdamW */
    float *saved = malloc(sizeof(float) * m1->layout.total);
    if (saved) {
        memcpy(saved, m1->param_mem, sizeof(float) * m1->layout.total);
        fill_batch(m1, labels);
        m1->train_acts.img[0] = NAN;
        mvmoe_step_result r;
        mvmoe_status s = mvmoe_train_step(m1, labels, &so, &r);
        CHECK(s == MVMOE_ERR_NUMERIC && strstr(mvmoe_last_error(), "non-finite") && m1->step == 2 &&
                  memcmp(saved, m1->param_mem, sizeof(float) * m1->layout.total) == 0,
              "%s: NaN input: status %d, step %lld: %s", name, (int)s, (long long)m1->step, mvmoe_last_error());
        free(saved);
    }
    mvmoe_model_free(m1);
    mvmoe_model_free(m2);
}

int main(void) {
    mvmoe_set_threads(2);
    mvmoe_config c;
    CHECK(mvmoe_config_preset(&c, "vit-test-tiny") == MVMOE_OK, "preset");
    check_against_passes("dense", &c, NULL);

    mvmoe_config moe = c;
    moe.depth = 3, moe.routing = MVMOE_ROUTING_IMAGE_SUPERCLASS, moe.experts = 3, moe.top_k = 1, moe.moe_layers = 1;
    int map[10];
    for (int k = 0; k < 10; k++) map[k] = k % 3;
    check_against_passes("image-superclass, the step's own map", &moe, map);

    /* bench: its stand-in map for a model without one stays its own */
    mvmoe_model *m = NULL;
    CHECK(mvmoe_model_create(&m, &moe, 2) == MVMOE_OK, "bench model: %s", mvmoe_last_error());
    if (m) {
        mvmoe_bench_options bo;
        mvmoe_bench_options_default(&bo);
        bo.batch = 2, bo.warmup = 0, bo.steps = 1, bo.infer_batch = 2, bo.infer_reps = 1;
        bo.latency_reps = 1, bo.peak_gflops = 100;
        mvmoe_bench_result br;
        CHECK(mvmoe_bench_run(m, &bo, &br) == MVMOE_OK && isfinite(br.loss_first), "bench: %s", mvmoe_last_error());
        CHECK(mvmoe_model_config(m)->superclass_of == NULL, "bench wrote a super-class map into the model");
        mvmoe_model_free(m);
    }
    TEST_MAIN_END("test_step");
}
