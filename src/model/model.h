/* The model object (internal): config, parameter arena, and lazily created training state and
 * activation workspaces. Lifetimes: params live with the model; the training arenas
 * (gradients, AdamW moments, activations for one batch size) are created once per training
 * run, so the training step itself never allocates. */
#ifndef MVMOE_MODEL_MODEL_H
#define MVMOE_MODEL_MODEL_H

#include "model/layout.h"
#include "model/moe.h"
#include "model/router.h"
#include "mvmoe.h"

/* One MoE block's choices that run on another rank (train/ep.c: top-k > 1 under per-image
 * expert parallelism, docs/SCALING.md "Top-2"). The back half's plan drops the choices whose
 * expert lives elsewhere (mvmoe_plan_from_choices with a negative expert); after the block's
 * forward with the choices run here, mvmoe_moe_remote.forward adds the others' gated outputs
 * to the gated sum and redoes the residual of those images; after the block's MoE backward,
 * .backward adds their input gradients and gate gradients. Both are collectives: every rank
 * calls them for every MoE block, in the same order (forward: first to last; backward: last
 * to first), also with B = 0 (a rank that received no image still runs other ranks' choices
 * on its experts). */
typedef struct mvmoe_moe_site {
    int lm, B, rows;      /* MoE block (0: the first), images, rows per image here (T, or 1 in
                             the class-only last block) */
    mvmoe_experts w;      /* the block's experts (forward: with their packed copies if any) */
    mvmoe_experts g;      /* their gradients (backward) */
    /* forward, after the block ran the plan's choices: */
    const float *ln2;     /* [B·rows, D] the experts' input */
    float *branch;        /* [B·rows, D] Σ gate·expert(ln2) over the plan's choices */
    const float *res1;    /* [B·rows, D] the residual stream before the MLP branch */
    float *out;           /* [B·rows, D] the block's output, res1 + keep·branch */
    const float *keep;    /* [B] the MLP branch's drop-path factors */
    /* backward, after the plan's choices' backward: */
    const float *dbr;     /* [B·rows, D] d(branch) */
    float *d_ln;          /* [B·rows, D] d(ln2), += */
    float *d_gates;       /* [B, k] gate gradients, += */
} mvmoe_moe_site;
typedef struct mvmoe_moe_remote {
    void *ctx;
    void (*forward)(void *ctx, const mvmoe_moe_site *s);
    void (*backward)(void *ctx, const mvmoe_moe_site *s);
} mvmoe_moe_remote;

/* Activations of one forward pass for a batch of B images. In training mode every per-layer
 * tensor has `depth` copies (saved for backward); in inference mode the per-layer stride is 0,
 * so each layer overwrites the last one's buffers. T tokens, N = T-1 patches, D, H, K, NH. */
typedef struct mvmoe_acts {
    int B, training;
    size_t layer_bt_d, layer_bt_3d, layer_bt_h, layer_att, layer_bt; /* per-layer strides */
    float *img;       /* [B, C, S, S] normalized input */
    float *patches;   /* [B, N, C·P·P] */
    float *pe;        /* [B, N, D] patch embeddings */
    float *x0;        /* [B, T, D] embedded tokens = input of block 0 */
    float *ln1;       /* [depth?, B, T, D] */
    float *ln1_mean;  /* [depth?, B, T] */
    float *ln1_rstd;  /* [depth?, B, T] */
    float *qkv;       /* [depth?, B, T, 3D] */
    float *att;       /* [depth?, B, NH, T, T] softmax probabilities */
    float *atty;      /* [depth?, B, T, D] attention output before proj */
    float *res1;      /* [depth?, B, T, D] residual stream after attention */
    float *ln2;       /* [depth?, B, T, D] */
    float *ln2_mean;  /* [depth?, B, T] */
    float *ln2_rstd;  /* [depth?, B, T] */
    float *fch;       /* [depth?, B, T, H] fc1 output before GELU; in training, a dense block
                         run by rows keeps GELU' of it instead (mvmoe_gelu_bias_forward_grad) */
    float *fch_gelu;  /* [depth?, B, T, H] */
    float *res2;      /* [depth?, B, T, D] block output */
    float *branch;    /* [B, T, D] scratch: a residual branch before drop-path scaling */
    float *keep;      /* [depth, 2, B] drop-path scale per sample (0 or 1/(1-p)), 1 if off */
    float *clsx;      /* [B, D] class-token rows of the last block output */
    float *lnf;       /* [B, D] final norm of the class token */
    float *lnf_mean, *lnf_rstd; /* [B] */
    float *logits;    /* [B, K] */
    float *probs;     /* [B, K] */
    float *losses;    /* [B] */
    float *targets;   /* [B, K] */
    /* gradients of activations (training only), reused across layers */
    float *d_res;     /* [B, T, D] gradient of the residual stream */
    float *d_branch;  /* [B, T, D] */
    float *d_ln;      /* [B, T, D] */
    float *d_qkv;     /* [B, T, 3D] */
    float *d_att;     /* [B, NH, T, T] scratch */
    float *d_atty;    /* [B, T, D] */
    float *d_fch;     /* [B, T, H] */
    float *d_fch_gelu; /* [B, T, H] */
    float *d_clsx;    /* [B, D] */
    float *d_lnf;     /* [B, D] */
    float *d_logits;  /* [B, K] */
    float *d_pe;      /* [B, N, D] */
    /* MoE blocks (routing != dense). R = B·T·k grouped rows; Lm = moe_layers copies when
     * training (saved for backward), else 1. Router tensors: Lr plans over n items each —
     * per-image routing: one router, Lr = 1, n = B; per-token: Lr = moe_layers, n = B·T. */
    size_t layer_moe_rd, layer_moe_rh;  /* per-MoE-layer strides (0 in inference) */
    int n_route, n_plans;               /* n and Lr above */
    float *moe_xg;    /* [Lm?, R, D] expert inputs, grouped by expert */
    float *moe_h;     /* [Lm?, R, H] fc1 outputs */
    float *moe_hg;    /* [Lm?, R, H] GELU(fc1) */
    float *moe_y;     /* [Lm?, R, D] expert outputs */
    float *router_logits;        /* [Lr, n, E] clean router logits */
    float *router_probs;        /* [Lr, n, E] router probabilities softmax(z + noise) */
    float *router_noise;    /* [Lr, n, E] router noise (training, learned routing), else unused */
    float *rgate;     /* [Lr, n, k] plan gates */
    float *d_moe;     /* [R, D] scratch (training) */
    float *d_moe_h, *d_moe_hg; /* [R, H] scratch (training) */
    float *d_router_logits, *d_router_probs; /* [Lr, n, E] gradients at the router logits / probabilities (training) */
    float *d_gates;    /* [Lr, n, k] (training) */
    int32_t *rtarget; /* [n] super-class targets of the per-image router */
    int route_noise;        /* this pass's routing settings (mvmoe_pass), set by the forward */
    float capacity_ratio;
    mvmoe_plan *plans; /* [Lr] dispatch plans (their int arrays live in imem) */
    int *imem;
    const mvmoe_moe_remote *remote; /* NULL, or choices run elsewhere (mvmoe_moe_site); set
                                       by the caller after mvmoe_acts_init */
    double loss_ce, loss_router, loss_aux; /* parts of the last mvmoe_vit_loss */
    /* called by the backward after each transformer block's (index l, depth-1 down to 0), from
     * the calling thread: that block's parameter gradients are final then (the overlapped
     * data-parallel sums start there, train/step.c); NULL: none */
    void (*after_block_backward)(void *user, int l);
    void *after_block_user;
    float *mem;       /* the one allocation behind all of the above */
} mvmoe_acts;

/* Copies of the blocks' linear weights (and the patch embedding's) in oneDNN's packed layout
 * for the forward products (kernels/linear_packed.c), made by mvmoe_model_pack_weights from
 * the weights of params_version. Block l's copy of qkv_w is at qkv_w + l·n_qkv (proj_w
 * likewise); MLP slot s's (mvmoe_mlp_slot: a dense block or one expert) at fc1_w + s·n_fc1. */
typedef struct mvmoe_packed {
    float *mem;                       /* the one allocation, NULL until prepared (or unavailable) */
    float *patch_w;                   /* [1 copy] */
    float *qkv_w, *proj_w;            /* [depth, copy] */
    float *fc1_w, *fc2_w;             /* [MLP slots, copy] */
    size_t n_qkv, n_proj, n_fc1, n_fc2;    /* floats per copy */
    int64_t version;                  /* params_version packed from */
    int precision;                    /* mvmoe_precision packed under: bf16 or int8 copies */
} mvmoe_packed;

struct mvmoe_model {
    mvmoe_config cfg;
    mvmoe_layout layout;
    float *param_mem;   /* [layout.total] */
    mvmoe_params p;
    /* training state (NULL until mvmoe_model_train_init) */
    float *grad_mem;    /* [layout.total] */
    mvmoe_params g;
    float *adam_m, *adam_v; /* [layout.total] each */
    float *ema_mem;     /* [layout.total] exponential moving average of the weights (--ema), or NULL */
    int64_t step;       /* optimizer steps taken */
    int64_t ckpt_step;  /* the step recorded in the loaded checkpoint (-1: none / not loaded) */
    mvmoe_acts train_acts;
    mvmoe_acts infer_acts;
    /* Bumped by mvmoe_model_params_changed after every write to param_mem (optimizer step,
     * EMA swap, load, init): inference uses `packed` only while its version matches. */
    int64_t params_version;
    mvmoe_packed packed;
    float adaptive_k;        /* > 0: choices after the first run only where the top router
                                probability is below this (docs/MOE.md, "Adaptive k"); 0: off */
};

/* The activation arena (acts.c): allocation, and its size from the same buffer table, which
 * the memory estimate (memory.c) reads instead of re-listing the buffers. Sizes are in double
 * (a hostile config or batch can exceed size_t); mvmoe_acts_init refuses what cannot be
 * addressed, or rows beyond int. */
typedef struct mvmoe_acts_size {
    double floats; /* the float arena, every buffer rounded up to 16 floats */
    double plans;  /* routing plans (mvmoe_plan); 0 for dense models */
    double ints;   /* the plans' integers and the per-image router's super-class targets */
    double bytes;  /* all of it as allocated (the float arena rounded up to 64 bytes) */
} mvmoe_acts_size;
void mvmoe_acts_size_of(mvmoe_acts_size *s, const mvmoe_config *c, double B, int training);
mvmoe_status mvmoe_acts_init(mvmoe_acts *a, const mvmoe_config *c, int B, int training);
void mvmoe_acts_free(mvmoe_acts *a);

/* Every write to m->param_mem must be followed by this: it marks the packed copies of the
 * weights stale (the plain weights serve until they are made again). */
void mvmoe_model_params_changed(mvmoe_model *m);
/* Makes the packed copies of the weights for the forward products if missing or stale: once
 * per change of the weights (mvmoe_model_logits and mvmoe_evaluate call it, and the trainer
 * and bench before each training step's forward). Without them, or where oneDNN cannot pack,
 * the forward uses the plain weights: slower, same results to float rounding. */
mvmoe_status mvmoe_model_pack_weights(mvmoe_model *m);
/* Floats of the packed copies for config c (0 if packing is unavailable). */
size_t mvmoe_model_packed_floats(const mvmoe_config *c);

/* Allocates gradients, AdamW moments and training activations for batch B (idempotent). */
mvmoe_status mvmoe_model_train_init(mvmoe_model *m, int B);

/* What a training pass takes beyond the model and the batch: stochastic depth and the MoE
 * loss settings, from the training options (mvmoe_train_step); a pass without them (NULL:
 * inference, or a training-mode pass in tests) has no drop path, no router noise, no capacity
 * limit and no router losses. */
typedef struct mvmoe_pass {
    float drop_path;          /* stochastic depth rate (the last block's); 0: off */
    uint64_t seed;            /* drop-path masks and router noise are functions of (seed, step), */
    int64_t step;             /* so that resumption and finite differences see the same ones */
    float superclass_lambda;  /* λ of CE(router, superclass) (paper Sec. 3.2) */
    float aux_weight;         /* weight of the importance and load losses (learned routing) */
    float capacity_ratio;     /* token-learned expert capacity factor in training; 0: none */
    int route_noise;          /* learned routing adds N(0, 1/E²) noise to router logits in training */
    const int *superclass_of; /* [K] targets of the per-image router; NULL: the config's map */
    /* data-parallel training (train/dist.h): this batch is images [batch_offset, batch_offset
     * + B) of a global batch of batch_global (0: the batch is the whole batch); drop-path
     * masks are drawn for the global batch, so an image's mask is that of its global position */
    int batch_offset, batch_global;
    /* expert parallelism (train/ep.c): the caller filled a->keep (the images are not a
     * contiguous slice of the global batch) */
    int keep_given;
} mvmoe_pass;

/* Forward pass on a normalized batch a->img [B, C, S, S] → a->logits [B, K]. t (may be NULL)
 * applies only to training-mode activations. */
void mvmoe_vit_forward(mvmoe_model *m, mvmoe_acts *a, int B, const mvmoe_pass *t);
/* Loss on a->targets (filled by the caller): mean CE, plus for MoE models the router losses
 * of t (super-class CE on labels' super-classes, or importance + load); returns the total and
 * keeps the parts in a->loss_*. Prepares the router-loss gradients for mvmoe_vit_backward.
 * labels [B] may be NULL for dense models. */
double mvmoe_vit_loss(mvmoe_model *m, mvmoe_acts *a, int B, const int32_t *labels, const mvmoe_pass *t);
/* Backward of the mean loss: zeroes and fills m->grad_mem. Needs a forward in training mode. */
void mvmoe_vit_backward(mvmoe_model *m, mvmoe_acts *a, int B);

/* The training pass in two halves for per-image expert parallelism (train/ep.c,
 * docs/SCALING.md), for image-routed MoE models. Together on one rank they compute what
 * mvmoe_vit_forward, _loss and _backward compute (to float rounding).
 * Front, on the image's home rank: embedding, the dense blocks and the per-image router;
 * a->plans[0] then holds each image's choices and mvmoe_vit_moe_input(m, a) [B, T, D] the
 * MoE part's input (res2 of the last dense block, or x0). */
void mvmoe_vit_forward_front(mvmoe_model *m, mvmoe_acts *a, int B, const mvmoe_pass *t);
float *mvmoe_vit_moe_input(const mvmoe_model *m, mvmoe_acts *a);
/* The router losses of t with their weights times scale (B/global batch: this share's part of
 * the global mean); fills the router-side gradients for mvmoe_vit_backward_front. */
double mvmoe_vit_loss_router(mvmoe_model *m, mvmoe_acts *a, int B, const int32_t *labels, const mvmoe_pass *t,
                             float scale);
/* Back, on the rank holding the images' experts: the MoE blocks, final norm and head on
 * mvmoe_vit_moe_input(m, a), routed by a->plans[0] (mvmoe_plan_from_choices), drop-path masks
 * in a->keep when t->keep_given; → a->logits. With a->remote set, this and
 * mvmoe_vit_backward_back call its hooks at every MoE block; with B = 0 they only call them (a
 * rank that received no image still runs the other ranks' choices on its experts). */
void mvmoe_vit_forward_back(mvmoe_model *m, mvmoe_acts *a, int B, const mvmoe_pass *t);
/* Backward of the back half from d_logits = (probs − targets)·scale (probs from
 * mvmoe_softmax_ce_forward on a->logits): accumulates into m->grad_mem (not zeroed: the
 * caller zeroes it once for both halves) and leaves d(MoE input) in a->d_res [B, T, D] and
 * the gate gradients in a->d_gates [B, k]. */
void mvmoe_vit_backward_back(mvmoe_model *m, mvmoe_acts *a, int B, float scale);
/* Backward of the front half from a->d_res = d(MoE input) and a->d_gates (filled by the
 * caller) and the router-loss gradients of mvmoe_vit_loss_router; accumulates into m->grad_mem. */
void mvmoe_vit_backward_front(mvmoe_model *m, mvmoe_acts *a, int B);
/* Drop-path masks [depth, 2, B] for a whole batch of B (the global batch), as the forward
 * draws them; all ones without drop path. */
void mvmoe_vit_drop_path_masks(float *keep, const mvmoe_config *c, int B, const mvmoe_pass *t);

/* Initializes weights as timm does (trunc-normal 0.02 linears, zero biases, ...). */
void mvmoe_model_init_weights(mvmoe_model *m, uint64_t seed);
/* Creates a model with zeroed weights (loaders fill them). Takes a copy of c. */
mvmoe_status mvmoe_model_alloc(mvmoe_model **out, const mvmoe_config *c);

#endif
