/* Reference routing and MoE MLP: plain loops over items and choices, the oracle the tests hold
 * router.c and moe.c (through the whole model, src/model/vit_ref.c) against. Never called by
 * the fast path. Formulas: docs/MOE.md; paper: Daxberger et al. 2023, Sec. 3.1-3.2.
 *
 * An "item" is what a router sees: an image (per-image routing: its T token rows travel
 * together, rows = T) or one token (per-token routing, V-MoE: rows = 1). */
#ifndef MVMOE_MODEL_MOE_REF_H
#define MVMOE_MODEL_MOE_REF_H

#include <stdint.h>

#include "model/moe.h"

/* One router's decision and its saved tensors, all plain arrays. */
typedef struct mvmoe_route_ref {
    int n, k, E;    /* items, choices per item, experts */
    int rows;       /* token rows per item */
    float *z;       /* [n, E] clean router logits x·Wᵀ */
    float *noise;   /* [n, E] added to z before the softmax (all zero: no noise) */
    float *p;       /* [n, E] softmax(z + noise) */
    int *expert;    /* [n, k] chosen experts, most probable first (ties: lower index) */
    int *kept;      /* [n, k] 1: the choice runs; 0: dropped (expert capacity, adaptive k) */
    float *gate;    /* [n, k] p[expert] if kept, else 0 (TOP_k(softmax), not renormalized) */
    float *dz, *dp; /* [n, E] gradients at z and p */
    float *dgate;   /* [n, k] gradient at the gates */
} mvmoe_route_ref;

/* z = x·Wᵀ (x rows at stride ldx, [n, D]; W [E, D]), p = softmax(z + noise), top-k of p.
 * Adaptive k: single_above > 0 drops choices 2..k of an item whose top p is >= single_above.
 * capacity > 0: each expert takes at most `capacity` choices, filled choice-major (all first
 * choices, then all second ones), items in order. r->noise must be filled by the caller. */
void mvmoe_route_ref_forward(mvmoe_route_ref *r, const float *x, int ldx, const float *W, int D,
                             int capacity, float single_above);

/* Backward from r->dgate, r->dp and r->dz (each holding what the losses and the MoE blocks
 * added): dp[expert] += dgate (kept choices), dz += p ⊙ (dp − ⟨p, dp⟩), then dx (row i at
 * dx + i·lddx; NULL: skip) += dz·W and dW [E, D] += dzᵀ·x. */
void mvmoe_route_ref_backward(float *dx, int lddx, float *dW, mvmoe_route_ref *r, const float *x,
                              int ldx, const float *W, int D);

/* Router losses; each returns its value times `weight` and adds its gradient (times weight).
 * Super-class CE (paper Sec. 3.2): weight · mean_i CE(z_i, target_i) on the CLEAN logits;
 * dz += weight/n · (softmax(z_i) − onehot(target_i)). */
double mvmoe_route_ref_superclass_ce(mvmoe_route_ref *r, const int32_t *target, float weight);
/* V-MoE importance loss: imp_e = Σ_i p[i,e], weight · CV(imp)² (population variance); dp +=. */
double mvmoe_route_ref_importance(mvmoe_route_ref *r, float weight);
/* V-MoE load loss: η_i = k-th largest of z_i + noise_i, q[i,e] = 1 − Φ((η_i − z[i,e])/σ),
 * load_e = Σ_i q[i,e], weight · CV(load)²; dz += through q and through η_i. */
double mvmoe_route_ref_load(mvmoe_route_ref *r, float sigma, float weight);

/* The MoE MLP: out [n·rows, D] = Σ_kept choices gate · expert(rows of the item in u).
 * Saved per (item i, choice c) at row (i·k + c)·rows: h [n·k·rows, H] fc1 outputs,
 * hg = GELU(h), y [n·k·rows, D] expert outputs (rows of dropped choices untouched). */
void mvmoe_moe_ref_forward(float *out, float *h, float *hg, float *y, const float *u,
                           const mvmoe_experts *w, const mvmoe_route_ref *r, int D, int H);

/* Backward of mvmoe_moe_ref_forward from dout [n·rows, D]: du (+=) [n·rows, D], expert weight
 * gradients (+=) in g, r->dgate (+=) with dgate[i,c] = Σ_rows ⟨dout, y⟩. Scratch for one item:
 * s_dy [rows, D], s_dhg [rows, H], s_dh [rows, H]. */
void mvmoe_moe_ref_backward(float *du, const mvmoe_experts *g, mvmoe_route_ref *r, float *s_dy,
                            float *s_dhg, float *s_dh, const float *dout, const float *h,
                            const float *hg, const float *y, const float *u,
                            const mvmoe_experts *w, int D, int H);

#endif
