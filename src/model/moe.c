/* MoE MLP: dispatch (gather), per-expert MLPs on contiguous row groups, combine (scatter with
 * gates). The gather costs n·k·rows·D copies, ≪ the experts' 4·n·k·rows·D·H FLOPs, and turns
 * every expert's work into two plain GEMMs over its own rows. */
#include "model/moe.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* the weights of expert e */
static void expert_ptrs(const mvmoe_experts *w, int e, int D, int H, float **w1, float **b1,
                        float **w2, float **b2) {
    *w1 = w->fc1_w + (size_t)e * H * D;
    *b1 = w->fc1_b + (size_t)e * H;
    *w2 = w->fc2_w + (size_t)e * D * H;
    *b2 = w->fc2_b + (size_t)e * D;
}

/* Rows [ta, tb) of item i that fall in [r0, r0+n), rows per item R. */
static void item_rows(int i, int R, int r0, int n, int *ta, int *tb) {
    *ta = r0 > i * R ? r0 - i * R : 0;
    *tb = r0 + n < (i + 1) * R ? r0 + n - i * R : R;
}

/* Expert e's MLP on grouped rows [g0, g1) of xg into h, hg, y (packed products when the
 * experts have packed copies; the linear kernels thread themselves outside a parallel region). */
static void expert_rows(const mvmoe_experts *w, int e, float *xg, float *h, float *hg, float *y, int g0,
                        int g1, int D, int H) {
    const int M = g1 - g0;
    const size_t o = (size_t)g0 * D, oh = (size_t)g0 * H;
    float *w1, *b1, *w2, *b2;
    expert_ptrs(w, e, D, H, &w1, &b1, &w2, &b2);
    mvmoe_linear_forward(h + oh, H, xg + o, D,
                         mvmoe_linear_w(w1, w->fc1_p ? w->fc1_p + e * w->n_fc1 : NULL), b1, M, D, H);
    mvmoe_gelu_forward(hg + oh, h + oh, NULL, M, H, MVMOE_GELU_PLAIN);
    mvmoe_linear_forward(y + o, D, hg + oh, H,
                         mvmoe_linear_w(w2, w->fc2_p ? w->fc2_p + e * w->n_fc2 : NULL), b2, M, H, D);
}

void mvmoe_moe_forward_rows(float *out, float *xg, float *h, float *hg, float *y, const float *u,
                            const mvmoe_experts *w, const mvmoe_plan *plan, int D, int H, int r0, int n) {
    const int k = plan->k, R = plan->rows, i_lo = r0 / R, i_hi = (r0 + n - 1) / R;
    /* a fork-join only outside a parallel region and when there is enough to copy (at batch 1
     * it cost more than the copy) */
    const int par = !omp_in_parallel() && (size_t)n * k * D >= 16384;
    /* dispatch: each item's rows in range to the grouped rows of each of its choices */
#pragma omp parallel for schedule(static) if (par)
    for (int i = i_lo; i <= i_hi; i++) {
        int ta, tb;
        item_rows(i, R, r0, n, &ta, &tb);
        for (int q = 0; q < k; q++) {
            const int j = plan->pos[(size_t)i * k + q];
            if (j >= 0)
                memcpy(xg + ((size_t)j * R + ta) * D, u + ((size_t)i * R + ta) * D, sizeof(float) * (size_t)(tb - ta) * D);
        }
    }
    /* experts: one MLP per contiguous run of grouped rows in range. An expert's items are
     * grouped in item order per choice rank, so a range has at most k runs per expert (one
     * for the whole batch). */
    for (int e = 0; e < plan->E; e++) {
        int g0 = -1, g1 = -1;
        for (int j = plan->start[e]; j < plan->start[e + 1]; j++) {
            const int i = plan->src[j] / k;
            if (i < i_lo || i > i_hi) continue;
            int ta, tb;
            item_rows(i, R, r0, n, &ta, &tb);
            if (g0 >= 0 && g1 != j * R + ta) { /* not contiguous with the run: flush it */
                expert_rows(w, e, xg, h, hg, y, g0, g1, D, H);
                g0 = -1;
            }
            if (g0 < 0) g0 = j * R + ta;
            g1 = j * R + tb;
        }
        if (g0 >= 0) expert_rows(w, e, xg, h, hg, y, g0, g1, D, H);
    }
    /* combine: per item, Σ gate·y in choice order (deterministic, no write races) */
#pragma omp parallel for schedule(static) if (par)
    for (int i = i_lo; i <= i_hi; i++) {
        int ta, tb;
        item_rows(i, R, r0, n, &ta, &tb);
        float *o = out + ((size_t)i * R + ta) * D;
        const size_t len = (size_t)(tb - ta) * D;
        memset(o, 0, sizeof(float) * len);
        for (int q = 0; q < k; q++) {
            const int j = plan->pos[(size_t)i * k + q];
            if (j < 0) continue;
            const float g = plan->gate[(size_t)i * k + q], *yj = y + ((size_t)j * R + ta) * D;
            for (size_t x = 0; x < len; x++) o[x] += g * yj[x];
        }
    }
}

void mvmoe_moe_forward(float *out, float *xg, float *h, float *hg, float *y, const float *u,
                       const mvmoe_experts *w, const mvmoe_plan *plan, int D, int H) {
    if (plan->n > 0) mvmoe_moe_forward_rows(out, xg, h, hg, y, u, w, plan, D, H, 0, plan->n * plan->rows);
}

void mvmoe_moe_backward(float *du, float *dgate, const mvmoe_experts *g, float *s_d, float *s_h,
                        float *s_hg, const float *dout, const float *xg, const float *h,
                        const float *hg, const float *y, const mvmoe_experts *w,
                        const mvmoe_plan *plan, int D, int H) {
    const int E = plan->E, k = plan->k, rows = plan->rows, used = plan->start[E];
    const size_t item_floats = (size_t)rows * D;
    /* combine backward: dy_j = gate·dout[item rows]; dgate = ⟨dout[item rows], y_j⟩ */
#pragma omp parallel for schedule(static)
    for (int j = 0; j < used; j++) {
        int src = plan->src[j];
        const float *d = dout + (size_t)(src / k) * item_floats;
        const float *yj = y + (size_t)j * item_floats;
        float *dy = s_d + (size_t)j * item_floats, gt = plan->gate[src];
        double dot = 0;
        for (size_t q = 0; q < item_floats; q++) {
            dot += (double)d[q] * yj[q];
            dy[q] = gt * d[q];
        }
        dgate[src] += (float)dot;
    }
    for (int e = 0; e < E; e++) {
        int n_e = plan->start[e + 1] - plan->start[e];
        if (n_e == 0) continue;
        size_t r0 = (size_t)plan->start[e] * rows;
        int M = n_e * rows;
        float *w1, *b1, *w2, *b2, *gw1, *gb1, *gw2, *gb2;
        expert_ptrs(w, e, D, H, &w1, &b1, &w2, &b2);
        expert_ptrs(g, e, D, H, &gw1, &gb1, &gw2, &gb2);
        /* each input gradient overwritten (the bits of zeroing it and accumulating) */
        mvmoe_linear_backward(s_hg + r0 * H, gw2, gb2, s_d + r0 * D, hg + r0 * H, w2, M, H, D,
                              MVMOE_GRAD_OVERWRITE);
        mvmoe_gelu_backward(s_h + r0 * H, s_hg + r0 * H, h + r0 * H, (size_t)M * H, MVMOE_GRAD_OVERWRITE);
        /* s_d's rows of this expert are consumed: reuse them for d(xg) */
        mvmoe_linear_backward(s_d + r0 * D, gw1, gb1, s_h + r0 * H, xg + r0 * D, w1, M, D, H,
                              MVMOE_GRAD_OVERWRITE);
    }
    /* dispatch backward: scatter-add per item in choice order (deterministic) */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < plan->n; i++) {
        float *d = du + (size_t)i * item_floats;
        for (int r = 0; r < k; r++) {
            int j = plan->pos[(size_t)i * k + r];
            if (j < 0) continue;
            const float *dx = s_d + (size_t)j * item_floats;
            for (size_t q = 0; q < item_floats; q++) d[q] += dx[q];
        }
    }
}

void mvmoe_moe_forward_dense_ref(float *out, float *scratch, const float *u,
                                 const mvmoe_experts *w, const mvmoe_plan *plan, int D, int H) {
    const int k = plan->k, rows = plan->rows, M = plan->n * rows;
    float *h = scratch, *hg = scratch + (size_t)M * H, *y = hg + (size_t)M * H;
    memset(out, 0, sizeof(float) * (size_t)M * D);
    for (int e = 0; e < plan->E; e++) {
        float *w1, *b1, *w2, *b2;
        expert_ptrs(w, e, D, H, &w1, &b1, &w2, &b2);
        mvmoe_linear_forward_ref(h, u, w1, b1, M, D, H);
        mvmoe_gelu_forward_ref(hg, h, NULL, M, H);
        mvmoe_linear_forward_ref(y, hg, w2, b2, M, H, D);
        for (int i = 0; i < plan->n; i++)
            for (int r = 0; r < k; r++) {
                size_t j = (size_t)i * k + r;
                if (plan->expert[j] != e || plan->pos[j] < 0) continue;
                for (size_t q = 0; q < (size_t)rows * D; q++)
                    out[(size_t)i * rows * D + q] += plan->gate[j] * y[(size_t)i * rows * D + q];
            }
    }
}
