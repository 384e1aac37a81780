/* The training step (step.h): the one place that calls the model's training passes and the
 * optimizer in order, so the trainer and the benchmark time and train the same thing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

static mvmoe_status reduce_losses(mvmoe_step_result *r, int B, int Bg);

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
    return reduce_losses(r, B, Bg);
}

/* Overlapped sums (MVMOE_OVERLAP_ALLREDUCE=1, mvmoe_dist_overlap): each tensor's weighted
 * gradient starts its sum (MPI_Iallreduce) once the backward has finished it, the blocks' as
 * each block ends (last block first), the rest (head, norm, router, embedding) after the whole
 * backward; progress calls between blocks move them on. Per element the same weighting and the
 * same sum as reduce_over_ranks, only split into more messages: with 2 ranks the same bits
 * (a + b either way); with more, the MPI library may pick another summation order per size. The
 * arena is laid out role by role (layout.c), so a block's tensors are not one range: one sum
 * per tensor. */
typedef struct overlap {
    mvmoe_model *m;
    float w;          /* B / global batch */
    mvmoe_status s;   /* the first failure */
} overlap;

/* the block index of a tensor named "blocks.L.…", or -1 for the others */
static int tensor_block(const char *name) {
    return strncmp(name, "blocks.", 7) == 0 ? atoi(name + 7) : -1;
}

static void start_sums(overlap *x, int block) {
    const mvmoe_layout *L = &x->m->layout;
    for (int i = 0; i < L->n && x->s == MVMOE_OK; i++) {
        if (tensor_block(L->t[i].name) != block) continue;
        float *g = x->m->grad_mem + L->t[i].offset;
        const long long n = (long long)L->t[i].count;
        const float w = x->w;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (long long k = 0; k < n; k++) g[k] *= w;
        x->s = mvmoe_dist_isum_f32(g, L->t[i].count);
    }
}

static void after_block(void *user, int l) {
    overlap *x = user;
    start_sums(x, l);
    if (x->s == MVMOE_OK) x->s = mvmoe_dist_progress();
}

/* The loss parts, weighted like the gradient and summed over the ranks. */
static mvmoe_status reduce_losses(mvmoe_step_result *r, int B, int Bg) {
    const double wd = (double)B / (double)Bg;
    double l[4] = {r->loss * wd, r->loss_ce * wd, r->loss_router * wd, r->loss_aux * wd};
    MVMOE_TRY(mvmoe_dist_allreduce_sum_f64(l, 4));
    r->loss = l[0], r->loss_ce = l[1], r->loss_router = l[2], r->loss_aux = l[3];
    return MVMOE_OK;
}

/* The backward with the overlapped sums; always waits for every started sum. */
static mvmoe_status backward_overlapped(mvmoe_model *m, mvmoe_acts *a, mvmoe_step_result *r, int B, int Bg) {
    overlap x = {m, (float)B / (float)Bg, MVMOE_OK};
    a->after_block_backward = after_block;
    a->after_block_user = &x;
    mvmoe_vit_backward(m, a, B);
    a->after_block_backward = NULL;
    a->after_block_user = NULL;
    start_sums(&x, -1);
    const mvmoe_status ws = mvmoe_dist_wait();
    MVMOE_TRY(x.s);
    MVMOE_TRY(ws);
    return reduce_losses(r, B, Bg);
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
    if (o->global_batch > 0 && mvmoe_dist_size() > 1 && mvmoe_dist_overlap()) {
        MVMOE_TRY(backward_overlapped(m, a, r, B, o->global_batch));
    } else {
        mvmoe_vit_backward(m, a, B);
        if (o->global_batch > 0 && mvmoe_dist_size() > 1) MVMOE_TRY(reduce_over_ranks(m, r, B, o->global_batch));
    }
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
