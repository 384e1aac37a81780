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

/* How a backward writes the gradient its mvmoe_grad_write argument names. */
typedef enum mvmoe_grad_write {
    MVMOE_GRAD_ACCUMULATE = 0, /* += (the default, as for every other gradient) */
    MVMOE_GRAD_OVERWRITE = 1   /* = : the bits of zeroing it first, without that pass */
} mvmoe_grad_write;

/* ---- linear layers (linear.c; backends linear_sgemm.c, linear_packed.c, linear_bf16.c):
 * out[M,N] = in[M,K] · w[N,K]ᵀ + b[N] (b may be NULL).
 *
 * The weights of a product: the plain w[N,K] (always: every backend can fall back on it, and
 * the backward reads it), and optionally `packed`, the copy mvmoe_linear_pack made of it
 * (oneDNN's blocked layout, or w rounded to bf16 while bf16 products are on). */
typedef struct mvmoe_linear_weights {
    const float *w;
    const float *packed; /* NULL: none */
} mvmoe_linear_weights;
static inline mvmoe_linear_weights mvmoe_linear_w(const float *w, const float *packed) {
    return (mvmoe_linear_weights){w, packed};
}
/* out rows at stride ldo (>= N), in rows at stride ldi (>= K). The packed copy serves only
 * dense rows (ldo == N, ldi == K); bf16 products run for weights of 64·64 elements or more
 * while the mode is on. Threaded by rows (or, for a few rows, by column blocks); the bits do
 * not depend on the thread count. */
void mvmoe_linear_forward(float *out, int ldo, const float *in, int ldi, mvmoe_linear_weights w,
                          const float *b, int M, int K, int N);
/* din[M,K] (+)= dout·w ; dw[N,K] += doutᵀ·in ; db[N] += Σ_rows dout (each may be NULL).
 * din_write: MVMOE_GRAD_ACCUMULATE (the default), or MVMOE_GRAD_OVERWRITE: the bits of zeroing
 * din first, without that pass; dw and db always accumulate. */
void mvmoe_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                           const float *w, int M, int K, int N, mvmoe_grad_write din_write);
/* Floats of the packed copy of a weight w[N,K] in the current precision mode (0: packing is
 * unavailable), and the packing (0, or -1 if unavailable). A copy made in one mode serves
 * only that mode (mvmoe_linear_bf16_mode tells which). */
size_t mvmoe_linear_packed_size(int N, int K);
int mvmoe_linear_pack(float *dst, const float *w, int N, int K);
/* Whether bf16 products are on (mvmoe_set_precision(MVMOE_PRECISION_BF16), for the whole
 * process): operands rounded to bf16 (nearest even), sums in fp32 (linear_bf16.c). */
int mvmoe_linear_bf16_mode(void);
void mvmoe_linear_forward_ref(float *out, const float *in, const float *w, const float *b, int M,
                              int K, int N);
void mvmoe_linear_backward_ref(float *din, float *dw, float *db, const float *dout,
                               const float *in, const float *w, int M, int K, int N);
/* C[M,N] = alpha·op(A)·op(B) + beta·C on the calling thread only (op 'N' or 'T', row-major,
 * BLAS argument order; gemm.c): the small products inside other kernels' parallel loops. */
void mvmoe_gemm_serial(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);
/* float -> bf16 (bf16.c): nearest even, denormal inputs to signed zero, NaNs quieted (the
 * rules of AVX-512 BF16's conversion, which the fast path uses; _ref is the plain loop) */
void mvmoe_bf16_round(uint16_t *dst, const float *src, size_t n);
void mvmoe_bf16_round_ref(uint16_t *dst, const float *src, size_t n);
float mvmoe_bf16_to_float(uint16_t h);

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

/* ---- instruction set (isa.c): 512 when the AVX-512 kernel versions (GELU, attention's
 * softmax; same bits as AVX2) run, else 256.
 * mvmoe_isa_force(256 | 512 | 0 = automatic) is for tests and benchmarks; -1 if unsupported. */
int mvmoe_isa_width(void);
int mvmoe_isa_force(int width);

/* ---- exact GELU (activations.c): gelu(x) = x · Φ(x) = 0.5·x·(1 + erf(x/√2)).
 * AVX-512 version (activations_avx512.c) when mvmoe_isa_width() is 512: same bits. */
typedef enum mvmoe_gelu_save {
    MVMOE_GELU_PLAIN = 0,    /* pre keeps the pre-activations */
    MVMOE_GELU_SAVE_GRAD = 1 /* pre is overwritten with GELU'(pre + b), all the backward needs */
} mvmoe_gelu_save;
/* pre[M,N] += b[N] (each row; b NULL: none, the product added it), then out = gelu(pre).
 * With MVMOE_GELU_SAVE_GRAD (training), pre then holds GELU'(pre + b) for
 * mvmoe_gelu_backward_saved, computed while erf is at hand: one erf per element for forward
 * and backward instead of two; the bits of the separate kernels. */
void mvmoe_gelu_forward(float *out, float *pre, const float *b, size_t M, int N, mvmoe_gelu_save save);
/* din (+)= dout·GELU'(in), n elements; din may be dout (in place) when overwriting. */
void mvmoe_gelu_backward(float *din, const float *dout, const float *in, size_t n, mvmoe_grad_write din_write);
/* din (+)= dout·grad, grad from mvmoe_gelu_forward's MVMOE_GELU_SAVE_GRAD: the bits of
 * mvmoe_gelu_backward on the pre-activations. */
void mvmoe_gelu_backward_saved(float *din, const float *dout, const float *grad, size_t n,
                               mvmoe_grad_write din_write);
void mvmoe_gelu_forward_ref(float *out, float *pre, const float *b, size_t M, int N);
void mvmoe_gelu_backward_ref(float *din, const float *dout, const float *in, size_t n);

/* ---- multi-head self-attention core (attention.c), no projections.
 * qkv[B,T,3D]: per token, q = [0,D), k = [D,2D), v = [2D,3D); head h uses columns
 * [h·hd, (h+1)·hd) of each, hd = D/NH.
 * att[B,NH,T,T] (saved): softmax_j(q_i·k_j / √hd) — rows sum to 1.
 * out[B,T,D]: out[b,i,h·hd + c] = Σ_j att[b,h,i,j] · v[b,j,h·hd + c].
 * nq (1..T): only the first nq query rows of each image are computed, against all T keys and
 * values: out[B,nq,D], att[B,NH,nq,T] (the last block, which only the class token leaves,
 * runs nq = 1; every other block nq = T). */
typedef enum mvmoe_team {
    MVMOE_TEAM_OWN = 0,   /* the kernel runs its own threads (alone inside a parallel region) */
    MVMOE_TEAM_CALLER = 1 /* every thread of the caller's parallel region calls it with the same
                           * arguments and the work is shared among them (an orphaned `omp for`,
                           * with its barrier at the end) */
} mvmoe_team;
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
