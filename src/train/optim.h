/* AdamW (Loshchilov & Hutter 2019) exactly as torch.optim.AdamW, global-norm gradient
 * clipping as torch.nn.utils.clip_grad_norm_, and the warm-up + cosine learning-rate schedule. */
#ifndef MVMOE_TRAIN_OPTIM_H
#define MVMOE_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "model/layout.h"

typedef struct mvmoe_adamw {
    float lr, beta1, beta2, eps, weight_decay;
} mvmoe_adamw;

/* One step t (1-based) over every tensor of the layout: decoupled decay (p -= lr·wd·p) only on
 * tensors marked `decay` (matmul/conv weights; not norms, biases, pos_embed, cls_token). */
void mvmoe_adamw_step(float *params, const float *grads, float *m, float *v,
                      const mvmoe_layout *L, const mvmoe_adamw *h, int64_t t);
/* The same over the tensors i with update[i] != 0 only (update NULL: all); the others keep
 * their weights and moments (expert parallelism: another rank's experts). */
void mvmoe_adamw_step_some(float *params, const float *grads, float *m, float *v, const mvmoe_layout *L,
                           const mvmoe_adamw *h, int64_t t, const unsigned char *update);
/* The reference: plain loop over one tensor, kept as the oracle. */
void mvmoe_adamw_update_ref(float *w, const float *g, float *m, float *v, size_t n, float lr,
                            float beta1, float beta2, float eps, float wd, int64_t t);

/* L2 norm of all gradients (double accumulation). */
double mvmoe_grad_norm(const float *grads, const mvmoe_layout *L);
/* Scales grads by max_norm/(norm+1e-6) when that is < 1; returns the norm before clipping. */
double mvmoe_clip_grad_norm(float *grads, const mvmoe_layout *L, float max_norm);
/* The scaling of mvmoe_clip_grad_norm for a norm computed elsewhere (expert parallelism: the
 * experts' gradients are spread over the ranks). */
void mvmoe_clip_grad_scale(float *grads, const mvmoe_layout *L, float max_norm, double norm);

/* Learning rate for step t (0-based) of `total`: linear warm-up over `warmup` steps from
 * lr/warmup to lr, then cosine decay to min_lr at the last step. */
float mvmoe_lr_at(int64_t t, int64_t total, int64_t warmup, float lr, float min_lr);

#endif
