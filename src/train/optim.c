#include "train/optim.h"

#include <math.h>

/* Mirrors torch 1.13 _single_tensor_adamw: the bias corrections are computed in double
 * (Python floats there) and applied as float scalars. */
static void adamw_tensor(float *restrict w, const float *restrict g, float *restrict m,
                         float *restrict v, size_t n, float lr, float b1, float b2, float eps,
                         float wd, int64_t t) {
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - lr * wd;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float wi = w[i] * decay;
        float mi = m[i] * b1 + (1.0f - b1) * gi;
        float vi = v[i] * b2 + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}

void mvmoe_adamw_update_ref(float *w, const float *g, float *m, float *v, size_t n, float lr,
                            float beta1, float beta2, float eps, float wd, int64_t t) {
    for (size_t i = 0; i < n; i++) {
        w[i] -= lr * wd * w[i];
        m[i] = beta1 * m[i] + (1 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
        double mhat = m[i] / (1.0 - pow(beta1, (double)t));
        double vhat = v[i] / (1.0 - pow(beta2, (double)t));
        w[i] = (float)(w[i] - lr * mhat / (sqrt(vhat) + eps));
    }
}

void mvmoe_adamw_step(float *params, const float *grads, float *m, float *v,
                      const mvmoe_layout *L, const mvmoe_adamw *h, int64_t t) {
    mvmoe_adamw_step_some(params, grads, m, v, L, h, t, NULL);
}

void mvmoe_adamw_step_some(float *params, const float *grads, float *m, float *v, const mvmoe_layout *L,
                           const mvmoe_adamw *h, int64_t t, const unsigned char *update) {
    for (int i = 0; i < L->n; i++) {
        if (update && !update[i]) continue;
        const mvmoe_tensor_info *ti = &L->t[i];
        size_t o = ti->offset;
        adamw_tensor(params + o, grads + o, m + o, v + o, ti->count, h->lr, h->beta1, h->beta2,
                     h->eps, ti->decay ? h->weight_decay : 0.0f, t);
    }
}

/* Each tensor's sum of squares is summed over NORM_PARTS fixed ranges (one thread each) and
 * the partials added in order: the bits do not depend on the thread count. (An OpenMP
 * reduction adds one partial per thread, so 1 and 2 threads gave norms differing in the last
 * bits, and through the clipping coefficient, different weights.) */
#define NORM_PARTS 16

double mvmoe_grad_norm(const float *grads, const mvmoe_layout *L) {
    double ss = 0;
    for (int i = 0; i < L->n; i++) {
        const float *g = grads + L->t[i].offset;
        const size_t n = L->t[i].count;
        double part[NORM_PARTS];
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int s = 0; s < NORM_PARTS; s++) {
            const size_t lo = n * (size_t)s / NORM_PARTS, hi = n * (size_t)(s + 1) / NORM_PARTS;
            double acc = 0;
            for (size_t k = lo; k < hi; k++) acc += (double)g[k] * g[k];
            part[s] = acc;
        }
        for (int s = 0; s < NORM_PARTS; s++) ss += part[s];
    }
    return sqrt(ss);
}

double mvmoe_clip_grad_norm(float *grads, const mvmoe_layout *L, float max_norm) {
    const double norm = mvmoe_grad_norm(grads, L);
    mvmoe_clip_grad_scale(grads, L, max_norm, norm);
    return norm;
}

void mvmoe_clip_grad_scale(float *grads, const mvmoe_layout *L, float max_norm, double norm) {
    if (max_norm > 0) {
        float coef = (float)(max_norm / (norm + 1e-6));
        if (coef < 1.0f) {
            for (int i = 0; i < L->n; i++) {
                float *g = grads + L->t[i].offset;
                for (size_t k = 0; k < L->t[i].count; k++) g[k] *= coef;
            }
        }
    }
}

float mvmoe_lr_at(int64_t t, int64_t total, int64_t warmup, float lr, float min_lr) {
    if (t < warmup) return lr * (float)(t + 1) / (float)warmup;
    int64_t span = total - warmup;
    double prog = span > 1 ? (double)(t - warmup) / (double)(span - 1) : 1.0;
    if (prog > 1) prog = 1;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * prog)));
}
