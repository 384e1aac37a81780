/* The training step (step.h): the one place that calls the model's training passes and the
 * optimizer in order, so the trainer and the benchmark time and train the same thing. */
#include <math.h>

#include "core/status.h"
#include "train/dist.h"
#include "train/step.h"

void mvmoe_step_options_from(mvmoe_step_options *s, const mvmoe_train_options *o) {
    *s = (mvmoe_step_options){
        .pass = {.drop_path = o->drop_path, .seed = o->seed,
                 .superclass_lambda = o->superclass_lambda, .aux_weight = o->aux_weight,
                 .capacity_ratio = o->capacity_ratio, .route_noise = 1},
        .clip_norm = o->clip_norm,
        .adamw = {.lr = o->lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps,
                  .weight_decay = o->weight_decay},
    };
}

/* First tensor (layout order) holding a NaN/Inf gradient, for the error message. */
static const char *first_bad_tensor(const mvmoe_model *m) {
    for (int i = 0; i < m->layout.n; i++) {
        const float *g = m->grad_mem + m->layout.t[i].offset;
        for (size_t k = 0; k < m->layout.t[i].count; k++)
            if (!isfinite(g[k])) return m->layout.t[i].name;
    }
    return "(none: the loss itself)";
}

/* Data parallel: each rank's loss and gradient are means over its B of the global batch's Bg
 * images (1/B normalization); weighted by B/Bg and summed over the ranks they are the global
 * batch's means, what one process computes on the whole batch (to float rounding). The sum
 * comes out the same on every rank, so clipping and AdamW keep the ranks' states identical. */
static mvmoe_status reduce_over_ranks(mvmoe_model *m, mvmoe_step_result *r, int B, int Bg) {
    const float w = (float)B / (float)Bg;
    float *g = m->grad_mem;
    const long long n = (long long)m->layout.total;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long long i = 0; i < n; i++) g[i] *= w;
    MVMOE_TRY(mvmoe_dist_allreduce_sum_f32(g, m->layout.total));
    const double wd = (double)B / (double)Bg;
    double l[4] = {r->loss * wd, r->loss_ce * wd, r->loss_router * wd, r->loss_aux * wd};
    MVMOE_TRY(mvmoe_dist_allreduce_sum_f64(l, 4));
    r->loss = l[0], r->loss_ce = l[1], r->loss_router = l[2], r->loss_aux = l[3];
    return MVMOE_OK;
}

mvmoe_status mvmoe_train_step(mvmoe_model *m, const int32_t *labels, const mvmoe_step_options *o,
                              mvmoe_step_result *r) {
    mvmoe_acts *a = &m->train_acts;
    const int B = a->B;
    if (!m->grad_mem || !a->mem)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "training step before mvmoe_model_train_init");
    mvmoe_pass pass = o->pass;
    pass.step = m->step;
    const double t0 = mvmoe_clock_seconds();
    /* the forward's products on packed copies of this step's weights (kernels/linear_packed.c) */
    MVMOE_TRY(mvmoe_model_pack_weights(m));
    const double t1 = mvmoe_clock_seconds();
    mvmoe_vit_forward(m, a, B, &pass);
    r->loss = mvmoe_vit_loss(m, a, B, labels, &pass);
    r->loss_ce = a->loss_ce, r->loss_router = a->loss_router, r->loss_aux = a->loss_aux;
    const double t2 = mvmoe_clock_seconds();
    mvmoe_vit_backward(m, a, B);
    if (o->global_batch > 0 && mvmoe_dist_size() > 1) MVMOE_TRY(reduce_over_ranks(m, r, B, o->global_batch));
    const double t3 = mvmoe_clock_seconds();
    r->t_pack = t1 - t0, r->t_forward = t2 - t1, r->t_backward = t3 - t2;
    return mvmoe_train_step_apply(m, o, r, -1);
}

mvmoe_status mvmoe_train_step_apply(mvmoe_model *m, const mvmoe_step_options *o, mvmoe_step_result *r,
                                    double norm) {
    const double t3 = mvmoe_clock_seconds();
    if (norm < 0) {
        r->grad_norm = mvmoe_clip_grad_norm(m->grad_mem, &m->layout, o->clip_norm);
    } else {
        r->grad_norm = norm;
        mvmoe_clip_grad_scale(m->grad_mem, &m->layout, o->clip_norm, norm);
    }
    if (!isfinite(r->loss) || !isfinite(r->grad_norm))
        MVMOE_FAIL(MVMOE_ERR_NUMERIC, "step %lld: loss %g, gradient norm %g; first non-finite gradient in '%s'",
                   (long long)m->step, r->loss, r->grad_norm, first_bad_tensor(m));
    m->step++;
    mvmoe_adamw_step_some(m->param_mem, m->grad_mem, m->adam_m, m->adam_v, &m->layout, &o->adamw, m->step,
                          o->update_tensors);
    mvmoe_model_params_changed(m);
    r->t_optimizer = mvmoe_clock_seconds() - t3;
    return MVMOE_OK;
}
