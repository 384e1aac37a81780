/* The model object (internal): config, parameter arena, and lazily created training state and
 * activation workspaces. Lifetimes: params live with the model; the training arenas
 * (gradients, AdamW moments, activations for one batch size) are created once per training
 * run, so the training step itself never allocates. */
#ifndef MVMOE_MODEL_MODEL_H
#define MVMOE_MODEL_MODEL_H

#include "model/layout.h"
#include "mvmoe.h"

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
    float *fch;       /* [depth?, B, T, H] fc1 output before GELU */
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
    float *mem;       /* the one allocation behind all of the above */
} mvmoe_acts;

struct mvmoe_model {
    mvmoe_config cfg;
    mvmoe_layout layout;
    float *param_mem;   /* [layout.total] */
    mvmoe_params p;
    /* training state (NULL until mvmoe_model_train_init) */
    float *grad_mem;    /* [layout.total] */
    mvmoe_params g;
    float *adam_m, *adam_v; /* [layout.total] each */
    int64_t step;       /* optimizer steps taken */
    mvmoe_acts train_acts;
    mvmoe_acts infer_acts;
};

mvmoe_status mvmoe_acts_init(mvmoe_acts *a, const mvmoe_config *c, int B, int training);
void mvmoe_acts_free(mvmoe_acts *a);

/* Allocates gradients, AdamW moments and training activations for batch B (idempotent). */
mvmoe_status mvmoe_model_train_init(mvmoe_model *m, int B);

/* Forward pass on a normalized batch a->img [B, C, S, S] → a->logits [B, K].
 * drop_path > 0 only when training (needs `seed`/`step` for the per-sample masks). */
void mvmoe_vit_forward(mvmoe_model *m, mvmoe_acts *a, int B, float drop_path, uint64_t seed,
                       int64_t step);
/* Loss on a->targets (filled by the caller): fills probs/losses, returns the mean. */
double mvmoe_vit_loss(mvmoe_acts *a, int B, int K);
/* Backward of the mean loss: zeroes and fills m->grad_mem. Needs a forward in training mode. */
void mvmoe_vit_backward(mvmoe_model *m, mvmoe_acts *a, int B);

/* Initializes weights as timm does (trunc-normal 0.02 linears, zero biases, ...). */
void mvmoe_model_init_weights(mvmoe_model *m, uint64_t seed);
/* Creates a model with zeroed weights (loaders fill them). Takes a copy of c. */
mvmoe_status mvmoe_model_alloc(mvmoe_model **out, const mvmoe_config *c);

#endif
