/* Routers (per-image and per-token) and their auxiliary losses; formulas in docs/MOE.md.
 * The router GEMMs are tiny (E ≤ a few dozen rows): n·E·D multiply-adds next to the experts'
 * 2·n·rows·D·H, so plain loops (threaded over items) are used rather than BLAS calls on
 * strided inputs. */
#include "model/router.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- forward */
void mvmoe_router_forward(mvmoe_plan *plan, float *z, float *p, const float *x, int ldx,
                          const float *W, const float *noise, int n, int D, int E, int k,
                          int capacity, float single_above, int rows) {
    plan->n = n;
    plan->k = k;
    plan->E = E;
    plan->rows = rows;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * ldx;
        float *zi = z + (size_t)i * E, *pi = p + (size_t)i * E;
        for (int e = 0; e < E; e++) {
            const float *w = W + (size_t)e * D;
            float s = 0;
            for (int d = 0; d < D; d++) s += xi[d] * w[d];
            zi[e] = s;
        }
        /* p = softmax(z + noise), stably */
        float mx = -INFINITY;
        for (int e = 0; e < E; e++) {
            float v = zi[e] + (noise ? noise[(size_t)i * E + e] : 0.0f);
            pi[e] = v;
            if (v > mx) mx = v;
        }
        float sum = 0;
        for (int e = 0; e < E; e++) {
            pi[e] = expf(pi[e] - mx);
            sum += pi[e];
        }
        for (int e = 0; e < E; e++) pi[e] /= sum;
        /* top-k by selection: k is small (1, 2) */
        int *ex = plan->expert + (size_t)i * k;
        for (int r = 0; r < k; r++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int q = 0; q < r; q++) taken |= ex[q] == e;
                if (!taken && (best < 0 || pi[e] > pi[best])) best = e;
            }
            ex[r] = best;
            plan->gate[(size_t)i * k + r] = pi[best];
        }
    }
    /* adaptive k, capacity and grouping: serial, O(n·k + E), deterministic */
    int *count = plan->start; /* counts first, prefix sums after */
    for (int e = 0; e <= E; e++) count[e] = 0;
    for (int r = 0; r < k; r++)
        for (int i = 0; i < n; i++) {
            size_t j = (size_t)i * k + r;
            int e = plan->expert[j];
            int sure = r > 0 && single_above > 0 &&
                       p[(size_t)i * E + plan->expert[(size_t)i * k]] >= single_above;
            if (sure || (capacity > 0 && count[e] >= capacity)) {
                plan->pos[j] = -1;
                plan->gate[j] = 0.0f;
            } else {
                plan->pos[j] = count[e]++; /* rank within the expert, made absolute below */
            }
        }
    int acc = 0;
    for (int e = 0; e < E; e++) {
        int c = count[e];
        count[e] = acc;
        acc += c;
    }
    count[E] = acc;
    for (size_t j = 0; j < (size_t)n * k; j++) {
        if (plan->pos[j] < 0) continue;
        plan->pos[j] += plan->start[plan->expert[j]];
        plan->src[plan->pos[j]] = (int)j;
    }
}

void mvmoe_plan_from_choices(mvmoe_plan *plan, const int *expert, const float *gate, int n, int k,
                             int E, int rows) {
    plan->n = n, plan->k = k, plan->E = E, plan->rows = rows;
    int *count = plan->start;
    for (int e = 0; e <= E; e++) count[e] = 0;
    for (size_t j = 0; j < (size_t)n * k; j++) {
        plan->expert[j] = expert[j];
        plan->gate[j] = gate[j];
    }
    /* choice-major, then item order: the order mvmoe_router_forward gives */
    for (int r = 0; r < k; r++)
        for (int i = 0; i < n; i++) {
            const size_t j = (size_t)i * k + r;
            if (expert[j] < 0) { /* dropped: runs elsewhere (expert parallelism) */
                plan->pos[j] = -1, plan->gate[j] = 0;
                continue;
            }
            plan->pos[j] = count[expert[j]]++;
        }
    int acc = 0;
    for (int e = 0; e < E; e++) {
        const int c = count[e];
        count[e] = acc;
        acc += c;
    }
    count[E] = acc;
    for (size_t j = 0; j < (size_t)n * k; j++) {
        if (plan->pos[j] < 0) continue;
        plan->pos[j] += plan->start[plan->expert[j]];
        plan->src[plan->pos[j]] = (int)j;
    }
}

/* ---------------------------------------------------------------- backward */
void mvmoe_router_backward(float *dx, int lddx, float *dW, float *dz, const float *dp,
                           const float *p, const float *x, int ldx, const float *W, int n, int D,
                           int E) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *pi = p + (size_t)i * E, *dpi = dp + (size_t)i * E;
        float *dzi = dz + (size_t)i * E;
        float dot = 0;
        for (int e = 0; e < E; e++) dot += pi[e] * dpi[e];
        for (int e = 0; e < E; e++) dzi[e] += pi[e] * (dpi[e] - dot);
        if (dx) {
            float *dxi = dx + (size_t)i * lddx;
            for (int e = 0; e < E; e++) {
                const float *w = W + (size_t)e * D;
                for (int d = 0; d < D; d++) dxi[d] += dzi[e] * w[d];
            }
        }
    }
    /* dW = dzᵀ·x: threaded over experts' rows so no two threads write one element */
#pragma omp parallel for schedule(static)
    for (int e = 0; e < E; e++) {
        float *dw = dW + (size_t)e * D;
        for (int i = 0; i < n; i++) {
            float g = dz[(size_t)i * E + e];
            if (g == 0.0f) continue;
            const float *xi = x + (size_t)i * ldx;
            for (int d = 0; d < D; d++) dw[d] += g * xi[d];
        }
    }
}

void mvmoe_plan_gate_backward(float *dp, const float *dgate, const mvmoe_plan *plan) {
    for (size_t j = 0; j < (size_t)plan->n * plan->k; j++)
        if (plan->pos[j] >= 0) dp[(j / plan->k) * plan->E + plan->expert[j]] += dgate[j];
}

/* ---------------------------------------------------------------- auxiliary losses */
double mvmoe_aux_router_ce(float *dz, const float *z, const int32_t *target, int n, int E,
                           float weight) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * E;
        float mx = zi[0];
        for (int e = 1; e < E; e++) mx = zi[e] > mx ? zi[e] : mx;
        double se = 0;
        for (int e = 0; e < E; e++) se += exp((double)zi[e] - mx);
        double lse = log(se) + mx;
        total += lse - zi[target[i]];
        if (dz) {
            float s = weight / (float)n;
            for (int e = 0; e < E; e++) {
                float pe = (float)exp((double)zi[e] - lse);
                dz[(size_t)i * E + e] += s * (pe - (e == target[i] ? 1.0f : 0.0f));
            }
        }
    }
    return weight * total / n;
}

/* CV(v)² = var(v)/mean(v)² with population variance over the E entries; g[E] receives
 * ∂CV²/∂v_e = 2(v_e − μ)/(E·μ²) − 2·var/(E·μ³). */
static double cv_squared(const double *v, int E, double *g) {
    double mu = 0, var = 0;
    for (int e = 0; e < E; e++) mu += v[e];
    mu /= E;
    for (int e = 0; e < E; e++) var += (v[e] - mu) * (v[e] - mu);
    var /= E;
    if (mu <= 0) {
        for (int e = 0; e < E; e++) g[e] = 0;
        return 0;
    }
    for (int e = 0; e < E; e++) g[e] = 2 * (v[e] - mu) / (E * mu * mu) - 2 * var / (E * mu * mu * mu);
    return var / (mu * mu);
}

#define AUX_MAX_E 1024 /* config validation caps experts at 1024 */

double mvmoe_aux_importance(float *dp, const float *p, int n, int E, float weight) {
    double imp[AUX_MAX_E] = {0}, g[AUX_MAX_E];
    for (int e = 0; e < E; e++) imp[e] = 0;
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E; e++) imp[e] += p[(size_t)i * E + e];
    double L = cv_squared(imp, E, g);
    if (dp)
        for (int i = 0; i < n; i++)
            for (int e = 0; e < E; e++) dp[(size_t)i * E + e] += (float)(weight * g[e]);
    return weight * L;
}

/* k-th largest entry of v (1-based k), ties to the lower index; returns its index. */
static int kth_largest(const float *v, int E, int k) {
    int chosen[64], idx = -1;
    for (int r = 0; r < k; r++) {
        idx = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int q = 0; q < r; q++) taken |= chosen[q] == e;
            if (!taken && (idx < 0 || v[e] > v[idx])) idx = e;
        }
        if (r < 64) chosen[r] = idx;
    }
    return idx;
}

double mvmoe_aux_load(float *dz, const float *z, const float *noise, int n, int E, int k,
                      float sigma, float weight) {
    double load[AUX_MAX_E], g[AUX_MAX_E];
    float zn[AUX_MAX_E];
    const double inv_sqrt2 = 0.70710678118654752440, inv_sqrt2pi = 0.39894228040143267794;
    for (int e = 0; e < E; e++) load[e] = 0;
    for (int i = 0; i < n; i++) {
        for (int e = 0; e < E; e++) zn[e] = z[(size_t)i * E + e] + noise[(size_t)i * E + e];
        double eta = zn[kth_largest(zn, E, k)];
        for (int e = 0; e < E; e++) {
            double a = (eta - z[(size_t)i * E + e]) / sigma;
            load[e] += 1.0 - 0.5 * erfc(-a * inv_sqrt2); /* 1 − Φ(a) */
        }
    }
    double L = cv_squared(load, E, g);
    if (dz)
        for (int i = 0; i < n; i++) {
            const float *zi = z + (size_t)i * E;
            for (int e = 0; e < E; e++) zn[e] = zi[e] + noise[(size_t)i * E + e];
            int j = kth_largest(zn, E, k);
            double eta = zn[j], through_eta = 0;
            for (int e = 0; e < E; e++) {
                double a = (eta - zi[e]) / sigma;
                double dq = weight * g[e] * inv_sqrt2pi * exp(-0.5 * a * a) / sigma; /* ∂L/∂q·φ(a)/σ */
                dz[(size_t)i * E + e] += (float)dq;  /* ∂q/∂z_e = +φ(a)/σ */
                through_eta -= dq;                   /* ∂q/∂η = −φ(a)/σ, η = z_j + noise_j */
            }
            dz[(size_t)i * E + j] += (float)through_eta;
        }
    return weight * L;
}
