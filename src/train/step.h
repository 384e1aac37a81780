/* One training step, the same for the trainer (trainer.c) and the benchmark (analysis/bench.c):
 * pack the weights → forward → loss → backward → clip → AdamW → mark the weights changed. */
#ifndef MVMOE_TRAIN_STEP_H
#define MVMOE_TRAIN_STEP_H

#include <stdint.h>

#include "model/model.h"
#include "train/optim.h"

typedef struct mvmoe_step_options {
    mvmoe_pass pass;   /* drop path, seed and MoE loss settings; pass.step is set from m->step */
    float clip_norm;   /* global gradient-norm clip; <= 0: none */
    mvmoe_adamw adamw; /* this step's learning rate and AdamW hyper-parameters */
    /* data-parallel (train/dist.h): > 0 when m->train_acts holds this rank's share of a global
     * batch of this many images; the gradients and losses are then summed over the ranks,
     * weighted so that they are the global batch's mean, before clipping and AdamW */
    int global_batch;
    /* expert parallel (train/ep.c): [layout.n] tensors AdamW updates (0: another rank's
     * expert, left as it is); NULL: all */
    const unsigned char *update_tensors;
} mvmoe_step_options;

typedef struct mvmoe_step_result {
    double loss;                          /* total: loss_ce + loss_router + loss_aux */
    double loss_ce, loss_router, loss_aux;
    double grad_norm;                     /* before clipping */
    /* seconds each phase took: packing the weights, forward + loss, backward, clipping + AdamW */
    double t_pack, t_forward, t_backward, t_optimizer;
} mvmoe_step_result;

/* The MoE loss settings of the training options (router noise on, as in training). */
void mvmoe_step_options_from(mvmoe_step_options *s, const mvmoe_train_options *o);

/* One step on the batch in m->train_acts (img and targets filled by the caller, for B =
 * m->train_acts.B images; labels [B] for the router's super-class loss, may be NULL for dense
 * models): takes optimizer step m->step + 1. Under several ranks with o->global_batch set, a
 * collective: every rank must call it for the same step. A non-finite loss or gradient norm fails with
 * MVMOE_ERR_NUMERIC before AdamW, the weights and m->step untouched, naming the first tensor
 * with a non-finite gradient. Needs mvmoe_model_train_init. Allocates nothing once the packed
 * weights exist. */
mvmoe_status mvmoe_train_step(mvmoe_model *m, const int32_t *labels, const mvmoe_step_options *o,
                              mvmoe_step_result *r);

/* The end of a step once m->grad_mem holds the (summed) gradient of the global batch's mean
 * loss and r its losses: clip, the finite check, AdamW (step m->step + 1), weights marked
 * changed; sets r->grad_norm and r->t_optimizer. norm: the global gradient norm if the caller
 * computed it (expert parallelism: no rank holds every expert's gradient), < 0: computed
 * here from m->grad_mem. (mvmoe_train_step, and the expert-parallel step, train/ep.c.) */
mvmoe_status mvmoe_train_step_apply(mvmoe_model *m, const mvmoe_step_options *o, mvmoe_step_result *r,
                                    double norm);

#endif
