/* Multi-head self-attention core (see kernels.h for the conventions). */
#ifndef MVMOE_KERNELS_ATTENTION_H
#define MVMOE_KERNELS_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/conventions.h"

/* ---- multi-head self-attention core (attention.c), no projections.
 * qkv[B,T,3D]: per token, q = [0,D), k = [D,2D), v = [2D,3D); head h uses columns
 * [h·hd, (h+1)·hd) of each, hd = D/NH.
 * att[B,NH,T,T] (saved): softmax_j(q_i·k_j / √hd) — rows sum to 1.
 * out[B,T,D]: out[b,i,h·hd + c] = Σ_j att[b,h,i,j] · v[b,j,h·hd + c].
 * nq (1..T): only the first nq query rows of each image are computed, against all T keys and
 * values: out[B,nq,D], att[B,NH,nq,T] (the last block, which only the class token leaves,
 * runs nq = 1; every other block nq = T). team (conventions.h): MVMOE_TEAM_CALLER when every
 * thread of an enclosing parallel region calls it (vit.c's dense blocks), else MVMOE_TEAM_OWN. */
void mvmoe_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int NH,
                             int nq, mvmoe_team team);
/* dout[B,nq,D]; datt[B,NH,nq,T] is scratch (overwritten); dqkv[B,T,3D] (+)= (q rows beyond nq
 * get nothing, or zeros when overwriting). */
void mvmoe_attention_backward(float *dqkv, float *datt, const float *dout, const float *att,
                              const float *qkv, int B, int T, int D, int NH, int nq,
                              mvmoe_grad_write dqkv_write);
void mvmoe_attention_forward_ref(float *out, float *att, const float *qkv, int B, int T, int D,
                                 int NH);
void mvmoe_attention_backward_ref(float *dqkv, float *datt, const float *dout, const float *att,
                                  const float *qkv, int B, int T, int D, int NH);

#endif
