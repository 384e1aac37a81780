/* Softmax cross-entropy (see kernels.h for the conventions). */
#ifndef MVMOE_KERNELS_LOSS_H
#define MVMOE_KERNELS_LOSS_H

#include <stddef.h>
#include <stdint.h>

/* ---- softmax cross-entropy with soft targets (loss.c).
 * targets[B,K] are probability rows (one-hot, label-smoothed, or mixed).
 * probs[B,K] = softmax(logits) (saved); loss[B] = -Σ_k targets·log softmax(logits) (computed
 * stably with log-sum-exp). Returns the mean of loss[] over B (as double).
 * Backward: dlogits[B,K] += scale · (probs - targets). */
double mvmoe_softmax_ce_forward(float *loss, float *probs, const float *logits,
                                const float *targets, int B, int K);
void mvmoe_softmax_ce_backward(float *dlogits, const float *probs, const float *targets, int B,
                               int K, float scale);
double mvmoe_softmax_ce_forward_ref(float *loss, float *probs, const float *logits,
                                    const float *targets, int B, int K);
void mvmoe_softmax_ce_backward_ref(float *dlogits, const float *probs, const float *targets,
                                   int B, int K, float scale);
/* Builds label-smoothed one-hot rows: (1-s)·onehot(y) + s/K. targets[B,K]. */
void mvmoe_targets_smoothed(float *targets, const int32_t *labels, int B, int K, float smoothing);

#endif
