/* The MoE MLP (paper Sec. 3.1): dispatch → per-expert MLPs → combine, following a router's
 * plan (src/model/router.h). Sparse: each expert runs one GEMM pair over exactly the rows
 * routed to it; an expert no item chose is not touched (at batch 1 with per-image routing only
 * the image's k experts' weights are read). */
#ifndef MVMOE_MODEL_MOE_H
#define MVMOE_MODEL_MOE_H

#include <stddef.h>
#include "model/router.h"

/* Expert weights of one MoE block, stacked: fc1_w [E, H, D], fc1_b [E, H], fc2_w [E, D, H],
 * fc2_b [E, D] (consecutive slots of the parameter layout). */
typedef struct mvmoe_experts {
    float *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    /* packed copies for the forward (model.h, mvmoe_packed; NULL: none), expert e's at
     * fc1_p + e·n_fc1, fc2_p + e·n_fc2 */
    const float *fc1_p, *fc2_p;
    size_t n_fc1, n_fc2;
} mvmoe_experts;

/* out[n·rows, D] = Σ_r gate[i,r] · expert_{e(i,r)}(u rows of item i); items whose choices were
 * all dropped get 0. Saved for backward, in grouped order (R = plan->start[E]·rows rows):
 * xg[R,D] gathered inputs, h[R,H] fc1 outputs, hg[R,H] = GELU(h), y[R,D] expert outputs. */
void mvmoe_moe_forward(float *out, float *xg, float *h, float *hg, float *y, const float *u,
                       const mvmoe_experts *w, const mvmoe_plan *plan, int D, int H);
/* The same for rows [r0, r0+n) of out and u only (row = item·rows + t): what a thread of a
 * parallel region that owns those rows computes (the model's row pipeline, per-image routing).
 * Each row's bits, and its saved xg/h/hg/y rows, are those of mvmoe_moe_forward. */
void mvmoe_moe_forward_rows(float *out, float *xg, float *h, float *hg, float *y, const float *u,
                            const mvmoe_experts *w, const mvmoe_plan *plan, int D, int H, int r0, int n);

/* Backward of mvmoe_moe_forward given dout[n·rows, D]:
 * du (+=) [n·rows, D]; dgate (+=) [n, k] with dgate[i,r] = Σ_rows ⟨dout, y⟩;
 * expert weight gradients (+=) in g. Scratch: s_d [R, D], s_h [R, H], s_hg [R, H]. */
void mvmoe_moe_backward(float *du, float *dgate, const mvmoe_experts *g, float *s_d, float *s_h,
                        float *s_hg, const float *dout, const float *xg, const float *h,
                        const float *hg, const float *y, const mvmoe_experts *w,
                        const mvmoe_plan *plan, int D, int H);

/* The oracle for tests: every expert on every row, masked and combined by the plan's gates
 * (the "compute all experts and mask" path, never used outside tests). scratch [2·n·rows·H +
 * n·rows·D] floats. */
void mvmoe_moe_forward_dense_ref(float *out, float *scratch, const float *u,
                                 const mvmoe_experts *w, const mvmoe_plan *plan, int D, int H);

#endif
