/* Per-image expert parallelism (docs/SCALING.md, "Per-image expert parallelism"): the E
 * experts of every MoE block are spread over the N ranks, E/N each (expert e on rank
 * e / (E/N)). Each rank runs its share of the global batch through the embedding, the dense
 * blocks and the per-image router (the front half, model.h); then each image's [T, D]
 * activations travel by one all-to-all to the rank holding its expert, which runs the L MoE
 * blocks, the final norm, the head and the classification loss on every image routed to its
 * experts (the back half); one all-to-all returns each image's logits (for the accuracy),
 * its gate gradient and d(activations) [T, D] to its home rank, which finishes the backward
 * through the router and the dense blocks. Shared weights' gradients are summed over the
 * ranks; an expert's gradient exists only on its rank, which alone updates it (AdamW skips
 * another rank's experts, whose copy here is stale until mvmoe_ep_sync brings the owner's
 * weights, moments and EMA). Top-k > 1 (docs/SCALING.md, "Top-2", scheme 3): an image goes
 * to its first expert's rank; at every MoE block, each of its other choices whose expert
 * lives on another rank gets the image's norm2 rows sent there and that expert's output
 * back (and in the backward, the gated gradient there and the input gradient back; the
 * expert's weight gradient stays on its rank). A choice on the first expert's rank moves
 * nothing. */
#ifndef MVMOE_TRAIN_EP_H
#define MVMOE_TRAIN_EP_H

#include <stdint.h>

#include "model/model.h"
#include "train/step.h"

typedef struct mvmoe_ep {
    int ranks, rank, per_rank;  /* experts per rank: expert e lives on rank e / per_rank */
    int Bg, Bl, off;            /* global batch; this rank's share [off, off + Bl) */
    int rec_fwd, rec_bwd;       /* floats per image record, there and back */
    mvmoe_acts back;            /* the back half's activations, for up to Bg images */
    float *keep_g;              /* [depth, 2, Bg] the global batch's drop-path masks */
    float *send, *recv;         /* [Bg · max(rec_fwd, rec_bwd)] each */
    int *scount, *sdispl, *rcount, *rdispl; /* [N] each */
    int *order;                 /* [Bl] the local image of each record sent, in send order */
    int k, D, H;                /* choices per image (top-k), width, expert MLP width */
    int *expert;                /* [Bg, k] the received images' experts */
    float *gate;                /* [Bg, k] and gates */
    int Bm;                     /* images received this step */
    /* top-k > 1: the choices of the received images whose expert lives on another rank
     * ("out": this rank sends their norm2 rows there at every MoE block) and the other
     * ranks' choices on this rank's experts ("in"); all sized for Bg·(k-1) choices */
    int *plan_expert;           /* [Bg, k] the back half's plan: an out choice is -1 (dropped) */
    int n_out, n_in;
    int *out_item, *out_choice; /* [n_out] by destination rank, then image, then choice */
    int *out_count, *in_count;  /* [N] choices sent to / received from each rank */
    int *xs_cnt, *xs_dsp, *xr_cnt, *xr_dsp; /* [N] a block's exchange in floats */
    unsigned char *has_out;     /* [Bg] a received image has an out choice */
    int *in_expert;             /* [n_in] */
    float *ones;                /* [Bg·(k-1)] the in choices' gates in in_plan */
    mvmoe_plan in_plan;         /* the in choices, one item each, grouped by expert */
    int *in_imem;
    size_t x_rd, x_rh;          /* per-MoE-block strides of the saved in rows: Bg·(k-1)·T·D, ·H */
    float *in_xg, *in_h, *in_hg, *in_y; /* [L, Bg·(k-1)·T, D|H] the in choices' expert rows */
    float *in_sd, *in_sh, *in_shg, *in_dgate; /* their backward's scratch */
    float *out_y;               /* [L, Bg·(k-1)·T, D] the out choices' expert outputs (unscaled),
                                   for their gate gradients */
    mvmoe_moe_remote remote;    /* the hooks (ep.c) that ep->back.remote points to */
    mvmoe_status hook_status;   /* the first failure inside a hook */
    /* the expert tensors of the layout (owner: the rank whose experts they are), and the rest
     * of the arena as ranges: the shared weights, whose gradients are summed over the ranks */
    int n_xt, n_shared, n_xmerged;
    size_t *xt_off, *xt_cnt;
    int *xt_owner;
    size_t *shared_off, *shared_cnt;
    size_t *xm_off, *xm_cnt;    /* the expert tensors merged into contiguous runs */
    unsigned char *update;      /* [layout.n] 1: a tensor this rank's AdamW updates (shared
                                   weights and its own experts) */
} mvmoe_ep;

/* Whether config c can train expert parallel over `ranks` ranks; the error says why not and
 * what to do (per-image routing, N dividing E). */
mvmoe_status mvmoe_ep_check(const mvmoe_config *c, int ranks);

/* The choices 1..k-1 of n images (expert[n, k]; choice 0 lives on this rank) whose expert
 * lives on another rank than `rank` (expert e on rank e / per_rank, of `ranks`): count[r]
 * of them go to rank r; item[], choice[] list them by destination rank, then image, then
 * choice. Returns how many. */
int mvmoe_ep_out_choices(const int *expert, int n, int k, int per_rank, int rank, int ranks, int *count, int *item,
                         int *choice);

/* Buffers for a global batch of Bg images of which this rank holds [off, off + Bl). Needs
 * mvmoe_model_train_init(m, Bl). Free with mvmoe_ep_free (also after a failed init). */
mvmoe_status mvmoe_ep_init(mvmoe_ep *ep, const mvmoe_model *m, int Bg, int off, int Bl);
void mvmoe_ep_free(mvmoe_ep *ep);

/* Collective: every rank gets every expert's current weights, AdamW moments and EMA from
 * the expert's rank. Between two of these, a rank's copies of other ranks' experts are stale
 * (they are neither read nor meaningfully updated there); the trainer calls this before what
 * reads the whole model: the epoch-end check, validation and saves, and the end of training.
 * One process: nothing to do. */
mvmoe_status mvmoe_ep_sync(mvmoe_model *m, const mvmoe_ep *ep);

/* One training step, expert parallel: what mvmoe_train_step does for the global batch (o->pass
 * with batch_offset/batch_global of this share), from m->train_acts' img and targets and this
 * share's labels. A collective: every rank calls it for the same step. m->train_acts.logits
 * holds this share's logits after. */
mvmoe_status mvmoe_train_step_ep(mvmoe_model *m, mvmoe_ep *ep, const int32_t *labels, const mvmoe_step_options *o,
                                 mvmoe_step_result *r);

#endif
