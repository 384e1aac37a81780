/* Softmax cross-entropy with soft targets: loss_b = -Σ_k t_bk · log softmax(z_b)_k, the loss
 * used with label smoothing (Szegedy et al. 2016) and mixup/cutmix targets (timm's
 * SoftTargetCrossEntropy). log softmax is computed as z - lse(z) with the log-sum-exp
 * shifted by the row max, so large logits neither overflow nor lose the small ones.
 * Gradient w.r.t. the logits of Σ_b loss_b is probs - targets (when each target row sums to 1).
 * The batch mean is summed serially in double after the parallel row loop, so the returned
 * value does not depend on the thread count. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

/* Below this many logits a parallel region costs more than the work. */
#define CE_PAR_MIN 16384

/* ---------------------------------------------------------------- reference (double) */

double mvmoe_softmax_ce_forward_ref(float *loss, float *probs, const float *logits,
                                    const float *targets, int B, int K) {
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K, *t = targets + (size_t)b * K; /* [K] each */
        float *p = probs + (size_t)b * K;
        double m = -INFINITY, s = 0.0, l = 0.0;
        for (int k = 0; k < K; k++) m = z[k] > m ? z[k] : m;
        for (int k = 0; k < K; k++) s += exp(z[k] - m);
        double lse = m + log(s);
        for (int k = 0; k < K; k++) {
            p[k] = (float)exp(z[k] - lse);
            l -= (double)t[k] * (z[k] - lse);
        }
        loss[b] = (float)l;
        total += l;
    }
    return B > 0 ? total / B : 0.0;
}

void mvmoe_softmax_ce_backward_ref(float *dlogits, const float *probs, const float *targets,
                                   int B, int K, float scale) {
    if (!dlogits) return;
    for (size_t i = 0; i < (size_t)B * K; i++) /* dlogits[B,K] += scale·(p - t) */
        dlogits[i] = (float)(dlogits[i] + (double)scale * ((double)probs[i] - targets[i]));
}

/* ---------------------------------------------------------------- fast */

/* Σ t_k·(z_k - m) and Σ t_k with 8 partial sums each (vectorizable without reassociation). */
static void ce_target_sums(const float *t, const float *z, float m, int K, float *stz, float *st) {
    float a[8] = {0}, c[8] = {0};
    int k = 0;
    for (; k + 8 <= K; k += 8)
        for (int l = 0; l < 8; l++) {
            a[l] += t[k + l] * (z[k + l] - m);
            c[l] += t[k + l];
        }
    float sa = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    float sc = ((c[0] + c[1]) + (c[2] + c[3])) + ((c[4] + c[5]) + (c[6] + c[7]));
    for (; k < K; k++) {
        sa += t[k] * (z[k] - m);
        sc += t[k];
    }
    *stz = sa;
    *st = sc;
}

double mvmoe_softmax_ce_forward(float *loss, float *probs, const float *logits,
                                const float *targets, int B, int K) {
#pragma omp parallel for schedule(static) if ((size_t)B * K >= CE_PAR_MIN)
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K, *t = targets + (size_t)b * K;
        float *p = probs + (size_t)b * K;
        const float m = mvmoe_simd_max(z, K);
        const float s = mvmoe_simd_exp_shift_sum(p, z, m, K); /* p = exp(z - m) */
        mvmoe_simd_scale(p, 1.0f / s, K);
        float stz, st;
        ce_target_sums(t, z, m, K, &stz, &st);
        /* -Σ t·(z - m - log s) */
        loss[b] = logf(s) * st - stz;
    }
    double total = 0.0;
    for (int b = 0; b < B; b++) total += loss[b];
    return B > 0 ? total / B : 0.0;
}

void mvmoe_softmax_ce_backward(float *dlogits, const float *probs, const float *targets, int B,
                               int K, float scale) {
    if (!dlogits) return;
    const size_t n = (size_t)B * K;
#pragma omp parallel for schedule(static) if (n >= CE_PAR_MIN)
    for (int b = 0; b < B; b++) {
        float *d = dlogits + (size_t)b * K;
        const float *p = probs + (size_t)b * K, *t = targets + (size_t)b * K;
        for (int k = 0; k < K; k++) d[k] += scale * (p[k] - t[k]);
    }
}

/* A label outside [0, K) cannot come from a validated dataset; its row is filled with NaN so
 * the loss turns NaN and the trainer stops with MVMOE_ERR_NUMERIC instead of silently
 * training on a wrong target (kernels cannot report errors themselves). */
void mvmoe_targets_smoothed(float *targets, const int32_t *labels, int B, int K, float smoothing) {
    const float off = smoothing / (float)K, on = (1.0f - smoothing) + off;
    for (int b = 0; b < B; b++) {
        float *t = targets + (size_t)b * K;
        const int ok = labels[b] >= 0 && labels[b] < K;
        for (int k = 0; k < K; k++) t[k] = ok ? off : NAN;
        if (ok) t[labels[b]] = on;
    }
}
