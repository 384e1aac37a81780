/* Compute kernels. All tensors float32, row-major, shapes in brackets.
 *
 * Conventions (shared by every op):
 *  - forward(outputs, saved stats, inputs, params, sizes)
 *  - backward(input/param gradients, upstream gradient, saved stats, inputs, params, sizes
 *    [, write mode]); backward ACCUMULATES (+=) into every gradient it writes, unless its last
 *    argument, a mvmoe_grad_write, says MVMOE_GRAD_OVERWRITE for the gradient it names
 *    (documented per op: always the bits of zeroing that gradient and accumulating, without
 *    the pass that zeroes it). A NULL gradient pointer means "not needed" and is skipped.
 *  - Each op has a plain loop reference `*_ref` (kept forever, the oracle for tests) and the
 *    public name is the fast version (OpenMP threads, vectorizable inner loops). They must
 *    agree to float rounding (tests/kernels).
 *  - No kernel allocates memory. */
#ifndef MVMOE_KERNELS_H
#define MVMOE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* One header per op family; this one includes them all, so users of the kernels need only it. */
#include "kernels/activations.h" /* GELU */
#include "kernels/attention.h"
#include "kernels/conventions.h" /* mvmoe_grad_write, mvmoe_team */
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/loss.h"

/* ---- instruction set (isa.c): 512 when the AVX-512 kernel versions (GELU, attention's
 * softmax; same bits as AVX2) run, else 256.
 * mvmoe_isa_force(256 | 512 | 0 = automatic) is for tests and benchmarks; -1 if unsupported. */
int mvmoe_isa_width(void);
int mvmoe_isa_force(int width);
/* 1 when the int8 products use AVX-512 VNNI (width 512 and the CPU has it), else 0. */
int mvmoe_isa_vnni(void);

/* ---- patch embedding (patch.c) as im2col + linear: patches[B, N, C·P·P] with
 * N = (H/P)·(W/P) in row-major patch order and per patch the (c, py, px) order of
 * Conv2d weight [D, C, P, P]. img[B,C,H,W]. Backward not needed (the image is a leaf). */
void mvmoe_patchify(float *patches, const float *img, int B, int C, int H, int W, int P);
void mvmoe_patchify_ref(float *patches, const float *img, int B, int C, int H, int W, int P);

/* ---- elementwise helpers (elementwise.c) */
/* y[n] += x[n] */
void mvmoe_add_inplace(float *y, const float *x, size_t n);
/* y[n] = 0, threaded for large n. */
void mvmoe_zero(float *y, size_t n);
/* Residual add over the M rows of a slice that starts at row r0 of a batch of T-row images:
 * y[r,:] = x[r,:] + keep[(r0+r)/T]·(br[r,:] + bias[D]) (bias may be NULL; keep: one factor
 * per image, the stochastic-depth scale). y may alias x. */
void mvmoe_residual_add(float *y, const float *x, const float *br, const float *bias,
                        const float *keep, int T, int r0, int M, int D);
/* The same for one row with factor k. */
void mvmoe_residual_row(float *y, const float *x, const float *br, const float *bias, float k, int D);

#endif
