/* Reference routing and MoE MLP (moe_ref.h): the definitions of router.c and moe.c written as
 * plain loops, one item and one choice at a time, sums in double. No grouping by expert, no
 * threads: this is the version to read first, and the oracle the fast one is tested against. */
#include "model/moe_ref.h"

#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* ---------------------------------------------------------------- router forward */
/* Index of the largest v[e] not yet in taken[0..nt) (ties: lower index). */
static int argmax_excluding(const float *v, int E, const int *taken, int nt) {
    int best = -1;
    for (int e = 0; e < E; e++) {
        int used = 0;
        for (int q = 0; q < nt; q++) used |= taken[q] == e;
        if (!used && (best < 0 || v[e] > v[best])) best = e;
    }
    return best;
}

void mvmoe_route_ref_forward(mvmoe_route_ref *r, const float *x, int ldx, const float *W, int D,
                             int capacity, float single_above) {
    const int n = r->n, k = r->k, E = r->E;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * ldx;                  /* [D] the item's router input */
        float *zi = r->z + (size_t)i * E, *pi = r->p + (size_t)i * E; /* [E] each */
        const float *ni = r->noise + (size_t)i * E;              /* [E] */
        for (int e = 0; e < E; e++) {                            /* z[i,e] = x_i · W_e */
            double s = 0;
            for (int d = 0; d < D; d++) s += (double)xi[d] * W[(size_t)e * D + d];
            zi[e] = (float)s;
        }
        double mx = -INFINITY, sum = 0;                          /* p_i = softmax(z_i + noise_i) */
        for (int e = 0; e < E; e++) mx = fmax(mx, (double)zi[e] + ni[e]);
        for (int e = 0; e < E; e++) sum += exp((double)zi[e] + ni[e] - mx);
        for (int e = 0; e < E; e++) pi[e] = (float)(exp((double)zi[e] + ni[e] - mx) / sum);
        int *ex = r->expert + (size_t)i * k;                     /* [k] top-k of p_i */
        for (int c = 0; c < k; c++) ex[c] = argmax_excluding(pi, E, ex, c);
    }
    /* keep or drop each choice, choice-major then item order (capacity fills in that order) */
    int taken[1024] = {0}; /* [E] choices each expert took so far; config caps E at 1024 */
    for (int c = 0; c < k; c++)
        for (int i = 0; i < n; i++) {
            const size_t j = (size_t)i * k + c;
            const int e = r->expert[j];
            const float top = r->p[(size_t)i * E + r->expert[(size_t)i * k]];
            const int sure = c > 0 && single_above > 0 && top >= single_above; /* adaptive k */
            const int full = capacity > 0 && taken[e] >= capacity;
            r->kept[j] = !sure && !full;
            if (r->kept[j]) taken[e]++;
            r->gate[j] = r->kept[j] ? r->p[(size_t)i * E + e] : 0.0f;
        }
}

/* ---------------------------------------------------------------- router backward */
void mvmoe_route_ref_backward(float *dx, int lddx, float *dW, mvmoe_route_ref *r, const float *x,
                              int ldx, const float *W, int D) {
    const int n = r->n, k = r->k, E = r->E;
    for (int i = 0; i < n; i++) {
        float *dpi = r->dp + (size_t)i * E, *dzi = r->dz + (size_t)i * E; /* [E] each */
        const float *pi = r->p + (size_t)i * E;                           /* [E] */
        for (int c = 0; c < k; c++) /* gate = p[expert]: its gradient lands on p */
            if (r->kept[(size_t)i * k + c]) dpi[r->expert[(size_t)i * k + c]] += r->dgate[(size_t)i * k + c];
        double dot = 0;             /* softmax backward: dz += p ⊙ (dp − ⟨p, dp⟩) */
        for (int e = 0; e < E; e++) dot += (double)pi[e] * dpi[e];
        for (int e = 0; e < E; e++) dzi[e] = (float)(dzi[e] + pi[e] * (dpi[e] - dot));
        const float *xi = x + (size_t)i * ldx; /* [D] */
        for (int e = 0; e < E; e++)
            for (int d = 0; d < D; d++) {
                if (dx) dx[(size_t)i * lddx + d] += dzi[e] * W[(size_t)e * D + d]; /* dx_i += dz_i·W */
                dW[(size_t)e * D + d] += dzi[e] * xi[d];                           /* dW += dz_iᵀ x_i */
            }
    }
}

/* ---------------------------------------------------------------- router losses */
double mvmoe_route_ref_superclass_ce(mvmoe_route_ref *r, const int32_t *target, float weight) {
    const int n = r->n, E = r->E;
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *zi = r->z + (size_t)i * E; /* [E] clean logits */
        double mx = -INFINITY, s = 0;
        for (int e = 0; e < E; e++) mx = fmax(mx, zi[e]);
        for (int e = 0; e < E; e++) s += exp(zi[e] - mx);
        const double lse = mx + log(s);
        total += lse - zi[target[i]];           /* CE = logsumexp(z) − z[target] */
        for (int e = 0; e < E; e++)
            r->dz[(size_t)i * E + e] += (float)(weight / n * (exp(zi[e] - lse) - (e == target[i])));
    }
    return weight * total / n;
}

/* CV(v)² = var(v) / mean(v)² over E entries (population variance), and its gradient g[E]:
 * ∂/∂v_e = 2(v_e − μ)/(E μ²) − 2 var/(E μ³). 0 (and g = 0) when μ <= 0. */
static double cv_squared(const double *v, int E, double *g) {
    double mu = 0, var = 0;
    for (int e = 0; e < E; e++) mu += v[e] / E;
    for (int e = 0; e < E; e++) var += (v[e] - mu) * (v[e] - mu) / E;
    for (int e = 0; e < E; e++)
        g[e] = mu > 0 ? 2 * (v[e] - mu) / (E * mu * mu) - 2 * var / (E * mu * mu * mu) : 0;
    return mu > 0 ? var / (mu * mu) : 0;
}

double mvmoe_route_ref_importance(mvmoe_route_ref *r, float weight) {
    const int n = r->n, E = r->E;
    double imp[1024] = {0}, g[1024]; /* [E] */
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E; e++) imp[e] += r->p[(size_t)i * E + e]; /* imp_e = Σ_i p[i,e] */
    const double L = cv_squared(imp, E, g);
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E; e++) r->dp[(size_t)i * E + e] += (float)(weight * g[e]);
    return weight * L;
}

/* Index of the k-th largest noisy logit z_i + noise_i of item i (ties: lower index). */
static int kth_noisy(const mvmoe_route_ref *r, int i) {
    float zn[1024]; /* [E] */
    int top[64];    /* [k], k <= 64 */
    for (int e = 0; e < r->E; e++) zn[e] = r->z[(size_t)i * r->E + e] + r->noise[(size_t)i * r->E + e];
    for (int c = 0; c < r->k; c++) top[c] = argmax_excluding(zn, r->E, top, c);
    return top[r->k - 1];
}

double mvmoe_route_ref_load(mvmoe_route_ref *r, float sigma, float weight) {
    const int n = r->n, E = r->E;
    const float *z = r->z, *noise = r->noise; /* [n, E] each */
    double load[1024] = {0}, g[1024];         /* [E] */
    for (int i = 0; i < n; i++) {
        const int j = kth_noisy(r, i);
        const float eta = z[(size_t)i * E + j] + noise[(size_t)i * E + j]; /* η_i */
        for (int e = 0; e < E; e++) /* q = 1 − Φ(a), a = (η − z)/σ */
            load[e] += 1.0 - 0.5 * erfc(-((double)eta - z[(size_t)i * E + e]) / sigma / sqrt(2.0));
    }
    const double L = cv_squared(load, E, g);
    for (int i = 0; i < n; i++) {
        const int j = kth_noisy(r, i);
        const float eta = z[(size_t)i * E + j] + noise[(size_t)i * E + j];
        double d_eta = 0;
        for (int e = 0; e < E; e++) {
            const double a = ((double)eta - z[(size_t)i * E + e]) / sigma;
            const double dq = weight * g[e] * exp(-0.5 * a * a) / sqrt(2 * M_PI) / sigma; /* ∂L/∂q · φ(a)/σ */
            r->dz[(size_t)i * E + e] += (float)dq; /* ∂q/∂z_e = +φ(a)/σ */
            d_eta -= dq;                           /* ∂q/∂η = −φ(a)/σ; η moves with z[j] */
        }
        r->dz[(size_t)i * E + j] += (float)d_eta;
    }
    return weight * L;
}

/* ---------------------------------------------------------------- MoE MLP */
/* Expert e's weights: fc1 [H, D] + [H], fc2 [D, H] + [D]. */
#define W1(w, e) ((w)->fc1_w + (size_t)(e) * H * D)
#define B1(w, e) ((w)->fc1_b + (size_t)(e) * H)
#define W2(w, e) ((w)->fc2_w + (size_t)(e) * D * H)
#define B2(w, e) ((w)->fc2_b + (size_t)(e) * D)

void mvmoe_moe_ref_forward(float *out, float *h, float *hg, float *y, const float *u,
                           const mvmoe_experts *w, const mvmoe_route_ref *r, int D, int H) {
    const int k = r->k, R = r->rows;
    memset(out, 0, sizeof(float) * (size_t)r->n * R * D);          /* out [n·R, D] */
    for (int i = 0; i < r->n; i++)
        for (int c = 0; c < k; c++) {
            const size_t j = (size_t)i * k + c;                     /* (item, choice) */
            if (!r->kept[j]) continue;
            const int e = r->expert[j];
            const float *ui = u + (size_t)i * R * D;                /* [R, D] the item's rows */
            float *hj = h + j * R * H, *hgj = hg + j * R * H;       /* [R, H] each */
            float *yj = y + j * R * D;                              /* [R, D] */
            mvmoe_linear_forward_ref(hj, ui, W1(w, e), B1(w, e), R, D, H);   /* fc1 */
            mvmoe_gelu_forward_ref(hgj, hj, NULL, (size_t)R, H);             /* GELU */
            mvmoe_linear_forward_ref(yj, hgj, W2(w, e), B2(w, e), R, H, D);  /* fc2 */
            for (size_t q = 0; q < (size_t)R * D; q++)                       /* combine */
                out[(size_t)i * R * D + q] += r->gate[j] * yj[q];
        }
}

void mvmoe_moe_ref_backward(float *du, const mvmoe_experts *g, mvmoe_route_ref *r, float *s_dy,
                            float *s_dhg, float *s_dh, const float *dout, const float *h,
                            const float *hg, const float *y, const float *u,
                            const mvmoe_experts *w, int D, int H) {
    const int k = r->k, R = r->rows;
    for (int i = 0; i < r->n; i++)
        for (int c = 0; c < k; c++) {
            const size_t j = (size_t)i * k + c;
            if (!r->kept[j]) continue;
            const int e = r->expert[j];
            const float *di = dout + (size_t)i * R * D, *ui = u + (size_t)i * R * D; /* [R, D] */
            const float *yj = y + j * R * D;                                         /* [R, D] */
            double dot = 0; /* out = Σ gate·y: dgate = ⟨dout, y⟩, dy = gate·dout */
            for (size_t q = 0; q < (size_t)R * D; q++) {
                dot += (double)di[q] * yj[q];
                s_dy[q] = r->gate[j] * di[q];
            }
            r->dgate[j] += (float)dot;
            memset(s_dhg, 0, sizeof(float) * (size_t)R * H);                         /* [R, H] */
            mvmoe_linear_backward_ref(s_dhg, W2(g, e), B2(g, e), s_dy, hg + j * R * H, W2(w, e), R, H, D);
            memset(s_dh, 0, sizeof(float) * (size_t)R * H);                          /* [R, H] */
            mvmoe_gelu_backward_ref(s_dh, s_dhg, h + j * R * H, (size_t)R * H);
            mvmoe_linear_backward_ref(du + (size_t)i * R * D, W1(g, e), B1(g, e), s_dh, ui, W1(w, e), R, D, H);
        }
}
