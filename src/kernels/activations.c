/* Exact (erf-based) GELU, as torch.nn.functional.gelu(approximate='none') and timm's ViT MLP:
 * gelu(x) = x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (Hendrycks & Gimpel 2016). The derivative is
 * Φ(x) + x·φ(x) with φ(x) = exp(-x²/2)/√(2π).
 *
 * The fast version evaluates erf/exp eight lanes at a time (simd.h): libm's scalar erff/expf
 * cannot be vectorized and would cost as much as the MLP matmuls. Evaluation order follows
 * PyTorch's CPU kernel, x·0.5·(1 + erf(x·(1/√2))), so the two agree to float rounding. */
#include <math.h>
#include <omp.h>
#include <stddef.h>

#include "kernels/activations_avx512.h"
#include "kernels/kernels.h"
#include "kernels/simd.h"

#define GELU_INV_SQRT2 MVMOE_GELU_INV_SQRT2
#define GELU_INV_SQRT2PI MVMOE_GELU_INV_SQRT2PI
/* Elements per OpenMP chunk; below two chunks threading costs more than it saves. */
#define GELU_CHUNK 8192

/* ---------------------------------------------------------------- reference (double) */

/* out[n] = in·Φ(in) */
static void gelu_ref(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = in[i];
        out[i] = (float)(0.5 * x * (1.0 + erf(x * GELU_INV_SQRT2)));
    }
}

void mvmoe_gelu_forward_ref(float *out, float *pre, const float *b, size_t M, int N) {
    for (size_t i = 0; b && i < M; i++) /* pre[M,N] += b[N]; out = pre·Φ(pre) */
        for (int j = 0; j < N; j++) pre[i * N + j] += b[j];
    gelu_ref(out, pre, M * (size_t)N);
}

void mvmoe_gelu_backward_ref(float *din, const float *dout, const float *in, size_t n) {
    if (!din) return;
    for (size_t i = 0; i < n; i++) { /* din[n] += dout·(Φ(x) + x·φ(x)) */
        double x = in[i];
        double cdf = 0.5 * (1.0 + erf(x * GELU_INV_SQRT2));
        double pdf = exp(-0.5 * x * x) * GELU_INV_SQRT2PI;
        din[i] = (float)(din[i] + (double)dout[i] * (cdf + x * pdf));
    }
}

/* ---------------------------------------------------------------- fast */

/* The spans dispatch on the vector width; the arithmetic is the SIMD layer's (simd.h), or the
 * AVX-512 file's, which gives the same bits. */
static void gelu_forward_span(float *out, const float *in, size_t n) {
#if MVMOE_SIMD_AVX2
    if (mvmoe_isa_width() == 512) {
        mvmoe_gelu_forward_span_avx512(out, in, n, mvmoe_simd_erf_coef, mvmoe_simd_erf_centers,
                                       (float)GELU_INV_SQRT2);
        return;
    }
#endif
    mvmoe_simd_gelu(out, in, n);
}

/* din = (acc ? din : 0) + dout·GELU'(in), element by element: din may be dout itself. */
static void gelu_backward_span(float *din, const float *dout, const float *in, size_t n, int acc) {
#if MVMOE_SIMD_AVX2
    if (mvmoe_isa_width() == 512) {
        mvmoe_gelu_backward_span_avx512(din, dout, in, n, mvmoe_simd_erf_coef, mvmoe_simd_erf_centers,
                                        (float)GELU_INV_SQRT2, (float)GELU_INV_SQRT2PI, acc);
        return;
    }
#endif
    mvmoe_simd_gelu_grad(din, dout, in, n, acc);
}

/* out = gelu(x) and g (which held x) = GELU'(x), each with the bits of gelu_forward_span and
 * gelu_backward_span: the derivative costs one exp more here, and the backward no erf. */
static void gelu_forward_grad_span(float *out, float *g, size_t n) {
#if MVMOE_SIMD_AVX2
    if (mvmoe_isa_width() == 512) {
        mvmoe_gelu_forward_grad_span_avx512(out, g, n, mvmoe_simd_erf_coef, mvmoe_simd_erf_centers,
                                            (float)GELU_INV_SQRT2, (float)GELU_INV_SQRT2PI);
        return;
    }
#endif
    mvmoe_simd_gelu_and_grad(out, g, n);
}

/* The bias of the linear layer before GELU, added here, row by row, right before the row is
 * read (the sgemm path then needs no bias-fill pass over its output); b NULL: the product
 * added it already (the packed products take their bias, vit.c). With grad, pre ends up
 * holding GELU'(pre + b). */
static void gelu_bias_forward(float *out, float *pre, const float *b, size_t M, int N, int grad) {
    const size_t rows = GELU_CHUNK / (size_t)N > 0 ? GELU_CHUNK / (size_t)N : 1;
    const size_t chunks = (M + rows - 1) / rows;
    const int par = chunks > 1 && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (size_t c = 0; c < chunks; c++) {
        const size_t r0 = c * rows, r1 = r0 + rows < M ? r0 + rows : M;
        for (size_t i = r0; b && i < r1; i++) {
            float *p = pre + i * N;
            for (int j = 0; j < N; j++) p[j] += b[j];
        }
        if (grad)
            gelu_forward_grad_span(out + r0 * N, pre + r0 * N, (r1 - r0) * N);
        else
            gelu_forward_span(out + r0 * N, pre + r0 * N, (r1 - r0) * N);
    }
}

void mvmoe_gelu_forward(float *out, float *pre, const float *b, size_t M, int N, mvmoe_gelu_save save) {
    gelu_bias_forward(out, pre, b, M, N, save == MVMOE_GELU_SAVE_GRAD);
}

void mvmoe_gelu_backward_saved(float *din, const float *dout, const float *grad, size_t n,
                               mvmoe_grad_write din_write) {
    if (!din) return;
    const int acc = din_write != MVMOE_GRAD_OVERWRITE;
    size_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        size_t lo = c * GELU_CHUNK, hi = n - lo < GELU_CHUNK ? n : lo + GELU_CHUNK;
        if (acc) /* one fused multiply-add, as gelu_backward_span's */
            for (size_t i = lo; i < hi; i++) din[i] = fmaf(dout[i], grad[i], din[i]);
        else /* + 0: a product of -0 becomes +0, as the accumulating backward's 0 + dout·g gives */
            for (size_t i = lo; i < hi; i++) din[i] = dout[i] * grad[i] + 0.0f;
    }
}

static void gelu_backward(float *din, const float *dout, const float *in, size_t n, int acc) {
    if (!din) return;
    size_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        size_t lo = c * GELU_CHUNK, len = n - lo < GELU_CHUNK ? n - lo : GELU_CHUNK;
        gelu_backward_span(din + lo, dout + lo, in + lo, len, acc);
    }
}

void mvmoe_gelu_backward(float *din, const float *dout, const float *in, size_t n, mvmoe_grad_write din_write) {
    gelu_backward(din, dout, in, n, din_write != MVMOE_GRAD_OVERWRITE);
}
