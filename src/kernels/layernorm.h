/* LayerNorm (see kernels.h for the conventions). */
#ifndef MVMOE_KERNELS_LAYERNORM_H
#define MVMOE_KERNELS_LAYERNORM_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/conventions.h"

/* ---- LayerNorm (layernorm.c) over the last dim D, biased variance, eps inside the sqrt.
 * mean[M], rstd[M] = 1/sqrt(var+eps) are saved for backward. */
void mvmoe_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                             const float *b, int M, int D, float eps);
/* res[M,D] = x + keep[(r0+r)/T]·(br + bias[D]) per row r of a slice that starts at row r0 of
 * its batch (bias may be NULL; keep: one factor per image of T rows; mvmoe_residual_add), then
 * out, mean, rstd = LayerNorm(res) exactly as mvmoe_layernorm_forward. */
void mvmoe_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                      const float *x, const float *br, const float *bias,
                                      const float *keep, int T, int r0, const float *w,
                                      const float *b, int M, int D, float eps);
void mvmoe_layernorm_backward(float *din, float *dw, float *db, const float *dout,
                              const float *mean, const float *rstd, const float *in,
                              const float *w, int M, int D);
void mvmoe_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *in,
                                 const float *w, const float *b, int M, int D, float eps);
void mvmoe_layernorm_backward_ref(float *din, float *dw, float *db, const float *dout,
                                  const float *mean, const float *rstd, const float *in,
                                  const float *w, int M, int D);

#endif
