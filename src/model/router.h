/* Routing: decides which experts each item uses and returns a dispatch plan; plus the
 * routers' auxiliary losses, each its own function (docs/MOE.md has every formula).
 *
 * An "item" is what the router sees: an image (per-image routing, paper Sec. 3.1: all T token
 * rows of the image travel together) or a token (per-token routing, V-MoE). The plan says, per
 * item, its top-k experts and combine weights, and groups the chosen (item, expert) pairs by
 * expert so each expert runs one GEMM over exactly the rows routed to it (src/model/moe.c). */
#ifndef MVMOE_MODEL_ROUTER_H
#define MVMOE_MODEL_ROUTER_H

#include <stdint.h>

typedef struct mvmoe_plan {
    int n, k, E;   /* items, choices per item, experts */
    int rows;      /* token rows per item: T (per-image) or 1 (per-token) */
    int *expert;   /* [n, k] chosen experts, most probable first */
    float *gate;   /* [n, k] combine weight p[expert] (g = TOP_k(softmax), not renormalized) */
    int *pos;      /* [n, k] position in the expert-grouped buffer (in items); -1 = dropped */
    int *start;    /* [E + 1] first grouped position of each expert; start[E] = used positions */
    int *src;      /* [n·k] grouped position -> item·k + choice */
} mvmoe_plan;

/* Router forward. x: item inputs, row i at x + i·ldx, [n, D]; W [E, D].
 * z[n,E] = x·Wᵀ (clean logits, saved); noise[n,E] (NULL: none) is added before the softmax
 * (V-MoE's noisy top-k, training only); p[n,E] = softmax(z + noise) (saved).
 * Top-k of p per item (ties: lower index first). Adaptive k: single_above > 0 drops every
 * choice after the first of an item whose top probability is >= single_above, so a second
 * expert runs only where the router is unsure (docs/MOE.md, "Adaptive k"). capacity > 0 caps
 * the items each expert takes, filled choice-major then in item order (V-MoE without batch
 * priority). A dropped choice has pos = -1, gate = 0. The plan's arrays must hold n·k (+E+1)
 * entries. */
void mvmoe_router_forward(mvmoe_plan *plan, float *z, float *p, const float *x, int ldx,
                          const float *W, const float *noise, int n, int D, int E, int k,
                          int capacity, float single_above, int rows);

/* A plan from choices made elsewhere (expert parallelism, train/ep.c: the router ran on the
 * image's home rank): expert[n·k], gate[n·k] as a router would have chosen them; grouped by
 * expert in item order, as mvmoe_router_forward groups them. A negative expert is a dropped
 * choice (pos -1, gate 0): one that runs on another rank (top-k expert parallelism). */
void mvmoe_plan_from_choices(mvmoe_plan *plan, const int *expert, const float *gate, int n, int k,
                             int E, int rows);

/* Router backward. dz[n,E] holds gradients that act on the logits directly (aux losses) and
 * gets the softmax backward of dp[n,E] added: dz += p ⊙ (dp − Σ_e p·dp).
 * Then dx (+=, row i at dx + i·lddx; NULL: skip) += dz·W and dW[E,D] += dzᵀ·x. */
void mvmoe_router_backward(float *dx, int lddx, float *dW, float *dz, const float *dp,
                           const float *p, const float *x, int ldx, const float *W, int n, int D,
                           int E);

/* dp[i, expert[i,r]] += dgate[i,r]: gate gradients back onto the router probabilities. */
void mvmoe_plan_gate_backward(float *dp, const float *dgate, const mvmoe_plan *plan);

/* ---- auxiliary losses: each returns its value (already multiplied by `weight`) and adds its
 * gradient (× weight) into the given buffer. */

/* Super-class routing loss (paper Sec. 3.2): weight · mean_i CE(z_i, target_i) on the clean
 * router logits z[n,E]; target[i] in 0..E-1. dz += weight/n · (softmax(z_i) − onehot). */
double mvmoe_aux_router_ce(float *dz, const float *z, const int32_t *target, int n, int E,
                           float weight);

/* V-MoE importance loss (Riquelme et al. 2021, App. A): imp_e = Σ_i p[i,e];
 * L = weight · CV(imp)² = weight · var(imp)/mean(imp)² (population variance). dp += ∂L/∂p. */
double mvmoe_aux_importance(float *dp, const float *p, int n, int E, float weight);

/* V-MoE load loss: with η_i the k-th largest of z_i + noise_i, the probability that expert e
 * would still be chosen under fresh noise is q[i,e] = 1 − Φ((η_i − z[i,e])/σ);
 * load_e = Σ_i q[i,e]; L = weight · CV(load)². dz += ∂L/∂z (through q and through η_i).
 * Needs the noise used in the forward (noise != NULL, σ > 0). */
double mvmoe_aux_load(float *dz, const float *z, const float *noise, int n, int E, int k,
                      float sigma, float weight);

#endif
