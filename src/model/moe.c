/* MoE MLP: dispatch (gather), per-expert MLPs on contiguous row groups, combine (scatter with
 * gates). The gather costs n·k·rows·D copies, ≪ the experts' 4·n·k·rows·D·H FLOPs, and turns
 * every expert's work into two plain GEMMs over its own rows. */
#include "model/moe.h"

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

void mvmoe_moe_forward(float *out, float *xg, float *h, float *hg, float *y, const float *u,
                       const mvmoe_experts *w, const mvmoe_plan *plan, int D, int H) {
    const int E = plan->E, k = plan->k, rows = plan->rows, used = plan->start[E];
    const size_t item_floats = (size_t)rows * D;
    /* dispatch: grouped position j holds item src[j]/k's rows (a fork-join only when there is
     * enough to copy: at batch 1 it cost more than the copy) */
#pragma omp parallel for schedule(static) if ((size_t)used * item_floats >= 16384)
    for (int j = 0; j < used; j++)
        memcpy(xg + (size_t)j * item_floats, u + (size_t)(plan->src[j] / k) * item_floats,
               sizeof(float) * item_floats);
    /* experts: one GEMM pair each over its rows (the linear kernels thread internally) */
    for (int e = 0; e < E; e++) {
        int n_e = plan->start[e + 1] - plan->start[e];
        if (n_e == 0) continue;
        size_t r0 = (size_t)plan->start[e] * rows;
        int M = n_e * rows;
        float *w1, *b1, *w2, *b2;
        expert_ptrs(w, e, D, H, &w1, &b1, &w2, &b2);
        mvmoe_linear_forward_packed(h + r0 * H, xg + r0 * D, w->fc1_p ? w->fc1_p + e * w->n_fc1 : NULL, w1, b1,
                                    M, D, H);
        mvmoe_gelu_forward(hg + r0 * H, h + r0 * H, (size_t)M * H);
        mvmoe_linear_forward_packed(y + r0 * D, hg + r0 * H, w->fc2_p ? w->fc2_p + e * w->n_fc2 : NULL, w2, b2,
                                    M, H, D);
    }
    /* combine: per item, Σ_r gate·y in choice order (deterministic, no write races) */
#pragma omp parallel for schedule(static) if ((size_t)plan->n * k * item_floats >= 16384)
    for (int i = 0; i < plan->n; i++) {
        float *o = out + (size_t)i * item_floats;
        memset(o, 0, sizeof(float) * item_floats);
        for (int r = 0; r < k; r++) {
            int j = plan->pos[(size_t)i * k + r];
            if (j < 0) continue;
            float g = plan->gate[(size_t)i * k + r];
            const float *yj = y + (size_t)j * item_floats;
            for (size_t q = 0; q < item_floats; q++) o[q] += g * yj[q];
        }
    }
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
        mvmoe_linear_backward_overwrite(s_hg + r0 * H, gw2, gb2, s_d + r0 * D, hg + r0 * H, w2, M, H, D);
        mvmoe_gelu_backward_overwrite(s_h + r0 * H, s_hg + r0 * H, h + r0 * H, (size_t)M * H);
        /* s_d's rows of this expert are consumed: reuse them for d(xg) */
        mvmoe_linear_backward_overwrite(s_d + r0 * D, gw1, gb1, s_h + r0 * H, xg + r0 * D, w1, M, D, H);
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
        mvmoe_gelu_forward_ref(hg, h, (size_t)M * H);
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
