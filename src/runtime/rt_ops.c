/* The runtime's operations besides the weight products (rt_ops.h). */
#include "runtime/rt_ops.h"
#include "runtime/rt_ops_body.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- int8 (docs/EDGE.md) */

/* The library's fixed point of the checkpoint round trip (src/kernels/linear_int8.c): the
 * scale an int8 checkpoint stores, so fp32 → int8 at open gives the same int8 weights and
 * scales as `mvmoe quantize` does. */
static float stable_scale(float s) {
    for (int i = 0; i < 8; i++) {
        volatile float up = 127.0f * s;
        const float next = up / 127.0f;
        if (next == s) break;
        s = next;
    }
    return s;
}

void rt_quantize_rows(int8_t *q, float *s, const float *w, int N, int K) {
    for (int j = 0; j < N; j++) {
        float sc = 0.0f, inv = 0.0f;
        const float *row = w + (long)j * K;
        if (row_scale(row, K, &sc, &inv)) sc = NAN, inv = 0.0f; /* the loader checks weights first */
        s[j] = isfinite(sc) ? stable_scale(sc) : sc;
        for (int k = 0; k < K; k++) q[(long)j * K + k] = quant(row[k], inv);
    }
}

void rt_linear_forward(const mvmoe_rt_kernels *k, const rt_linear *L, float *out, int ldo, const float *a, int lda,
                       int M, rt_i8_scratch *s) {
    rt_linear_forward_add(k, L, out, ldo, a, lda, M, s, 0, NULL);
}

void rt_linear_forward_add(const mvmoe_rt_kernels *k, const rt_linear *L, float *out, int ldo, const float *a, int lda,
                           int M, rt_i8_scratch *s, int add, float *tmp) {
    const int K = L->K, N = L->N;
    if (L->w) {
        float *y = add ? tmp : out;
        const int ldy = add ? N : ldo;
        k->linear_f32(y, ldy, a, lda, L->w, L->b, M, K, N);
        if (add)
            for (int m = 0; m < M; m++) {
                float *o = out + (long)m * ldo;
                const float *r = y + (long)m * ldy;
#pragma omp simd
                for (int j = 0; j < N; j++) o[j] = o[j] + r[j];
            }
        return;
    }
    /* int8: each row quantized with its own scale; the exact int32 sums, dequantized as the
     * library does (rt_ops_body.h), in the product kernel's store where it can */
    k->quant_rows(s->qa, s->sa, a, lda, M, K);
    k->linear_i8(out, ldo, s->qa, s->sa, L->q, L->s, L->ws, L->b, M, K, N, add, s->acc);
}

void rt_route(const float *r, const float *W, int D, int E, int k, float adaptive, float *p, int *ex, float *gate) {
    float mx = -INFINITY;
    for (int e = 0; e < E; e++) {
        const float *w = W + (long)e * D;
        float s = 0.0f;
        for (int d = 0; d < D; d++) s += r[d] * w[d];
        p[e] = s;
        if (s > mx) mx = s;
    }
    float sum = 0.0f;
    for (int e = 0; e < E; e++) {
        p[e] = rt_expf(p[e] - mx);
        sum += p[e];
    }
    for (int e = 0; e < E; e++) p[e] /= sum;
    for (int c = 0; c < k; c++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int q = 0; q < c; q++) taken |= ex[q] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        ex[c] = best;
        gate[c] = p[best];
    }
    if (adaptive > 0.0f && p[ex[0]] >= adaptive)
        for (int c = 1; c < k; c++) ex[c] = -1, gate[c] = 0.0f;
}
