/* The reference model: a plain forward and backward of the whole (Mobile V-)MoE ViT built
 * only from the kernels' `_ref` versions and plain loops (the style of karpathy/llm.c's
 * train_gpt2.c). Read this first: src/model/vit.c computes the same function, fast (row
 * pipeline, packed weights, class-token-only last block, grouped experts); tests hold it
 * against this one for every routing mode (tests/model/test_vit_ref.c). Never called by the
 * fast path.
 *
 * Model (docs/CHECKPOINT_FORMAT.md "Forward pass"; Daxberger et al. 2023):
 *   x = [cls; patch_embed(img)] + pos                      [B, T, D], T = 1 + N patches
 *   per block l: x = x + keep·proj(attention(qkv(LN1(x))))
 *                x = x + keep·MLP(LN2(x))   MLP = fc2(GELU(fc1)), or in the last moe_layers
 *                                           blocks a gated sum of the routed experts' MLPs
 *   logits = head(LN(x[:, 0]))                             [B, K]
 *   loss = mean_b CE(logits, targets) + router losses (super-class CE, or importance + load) */
#ifndef MVMOE_MODEL_VIT_REF_H
#define MVMOE_MODEL_VIT_REF_H

#include <stdint.h>

#include "model/layout.h"
#include "mvmoe.h"

/* What the fast model keeps in mvmoe_model (or takes as arguments) besides the weights; the
 * caller copies them from there (the reference keeps no defaults of its own to drift). */
typedef struct mvmoe_vit_ref_opts {
    int training;            /* 1: drop-path, router noise and expert capacity apply */
    float drop_path;         /* stochastic-depth rate of the last block (training) */
    uint64_t seed;           /* drop-path masks and router noise: pure functions of (seed, step) */
    int64_t step;
    float superclass_lambda; /* λ of the super-class router loss (image-superclass) */
    float aux_weight;        /* weight of the importance and load losses (learned routing) */
    float capacity_ratio;    /* token-learned, training: expert capacity factor; 0: none */
    int route_noise;         /* learned routing, training: N(0, 1/E²) noise on router logits */
    float adaptive_k;        /* > 0: choices 2..k only where the top router p is below this */
} mvmoe_vit_ref_opts;

/* Activations of one batch of B images (all saved for the backward) and the activation
 * gradients, in one allocation. T tokens, N = T-1 patches, C·P·P = CPP, D, H, K, NH heads,
 * depth blocks, L = moe_layers MoE blocks (the last ones), E experts, k choices.
 * Routers: per-image routing has one (R = 1) over n = B images of T rows each; per-token
 * routing one per MoE block (R = L) over n = B·T tokens of 1 row. */
typedef struct mvmoe_vit_ref {
    const mvmoe_config *c; /* not owned */
    int B;
    float *patches;  /* [B, N, CPP] */
    float *pe;       /* [B, N, D] patch embeddings */
    float *x0;       /* [B, T, D] embedded tokens: input of block 0 */
    float *keep;     /* [depth, 2, B] drop-path factor (0 or 1/(1-p)) of the attention, MLP branch */
    float *ln1;      /* [depth, B, T, D] */
    float *ln1_mean; /* [depth, B, T] */
    float *ln1_rstd; /* [depth, B, T] */
    float *qkv;      /* [depth, B, T, 3D] */
    float *att;      /* [depth, B, NH, T, T] attention probabilities */
    float *atty;     /* [depth, B, T, D] attention output before proj */
    float *attn;     /* [depth, B, T, D] attention branch: proj(atty) */
    float *res1;     /* [depth, B, T, D] residual stream after the attention branch */
    float *ln2;      /* [depth, B, T, D] */
    float *ln2_mean; /* [depth, B, T] */
    float *ln2_rstd; /* [depth, B, T] */
    float *fch;      /* [depth, B, T, H] fc1 output (dense blocks) */
    float *fch_gelu; /* [depth, B, T, H] GELU(fch) */
    float *mlp;      /* [depth, B, T, D] MLP branch (dense MLP or the experts' gated sum) */
    float *res2;     /* [depth, B, T, D] block output */
    float *moe_h;    /* [L, B·T·k, H] experts' fc1 outputs, per (item, choice) */
    float *moe_hg;   /* [L, B·T·k, H] GELU(moe_h) */
    float *moe_y;    /* [L, B·T·k, D] experts' outputs */
    float *router_logits, *router_noise, *router_probs;  /* [R, n, E] router logits, noise, probabilities */
    float *rgate;             /* [R, n, k] */
    float *d_router_logits, *d_router_probs;         /* [R, n, E] their gradients */
    float *d_gates;            /* [R, n, k] */
    int *rexpert, *rkept;     /* [R, n, k] choices, and whether each runs */
    int32_t *rtarget;         /* [B] super-class targets of the router */
    int n_route, n_routers;   /* n and R above */
    float *clsx;     /* [B, D] class-token rows of the last block's output */
    float *lnf;      /* [B, D] final LayerNorm of clsx */
    float *lnf_mean, *lnf_rstd; /* [B] */
    float *logits;   /* [B, K] */
    float *probs;    /* [B, K] softmax(logits) */
    float *losses;   /* [B] */
    float *targets;  /* [B, K] probability rows the loss was taken on */
    double loss_ce, loss_router, loss_aux; /* parts of the last mvmoe_vit_ref_loss */
    /* gradients of activations, reused across blocks */
    float *d_logits; /* [B, K] */
    float *d_lnf;    /* [B, D] */
    float *d_clsx;   /* [B, D] */
    float *d_res;    /* [B, T, D] gradient of the residual stream */
    float *d_branch; /* [B, T, D] gradient of a branch output (keep · d_res) */
    float *d_ln;     /* [B, T, D] gradient of a LayerNorm output */
    float *d_atty;   /* [B, T, D] */
    float *d_qkv;    /* [B, T, 3D] */
    float *d_att;    /* [B, NH, T, T] scratch of the attention backward */
    float *d_fch_gelu, *d_fch; /* [B, T, H] */
    float *d_pe;     /* [B, N, D] */
    float *d_moe_y;  /* [T, D] one item's scratch in the MoE backward */
    float *d_moe_hg, *d_moe_h; /* [T, H] */
    void *mem;       /* the one allocation behind every pointer above */
} mvmoe_vit_ref;

mvmoe_status mvmoe_vit_ref_init(mvmoe_vit_ref *r, const mvmoe_config *c, int B);
void mvmoe_vit_ref_free(mvmoe_vit_ref *r);
/* Forward of the normalized images img [B, C, S, S] with weights p: r->logits [B, K]. */
void mvmoe_vit_ref_forward(mvmoe_vit_ref *r, const float *img, const mvmoe_params *p,
                           const mvmoe_vit_ref_opts *o);
/* Mean CE on targets [B, K] plus the router losses (labels [B] give the super-classes; may
 * be NULL for other routings); returns the total, parts in r->loss_*. */
double mvmoe_vit_ref_loss(mvmoe_vit_ref *r, const float *targets, const int32_t *labels,
                          const mvmoe_vit_ref_opts *o);
/* Backward of that loss after forward and loss: ACCUMULATES (+=) into the gradient view g. */
void mvmoe_vit_ref_backward(mvmoe_params *g, mvmoe_vit_ref *r, const mvmoe_params *p);

#endif
