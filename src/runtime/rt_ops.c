/* The runtime's operations besides the weight products (rt_ops.h). */
#include "runtime/rt_ops.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- int8 (docs/EDGE.md) */

/* One value to int8 with the reciprocal scale: nearest, ties to even, clamped to ±127 (the
 * library's quant(), which calls nearbyintf). Adding and taking off 1.5·2^23 rounds a float
 * of magnitude below 2^22 to an integer by the current rounding mode, as nearbyintf does, in
 * two instructions where a baseline x86-64 build calls libm for nearbyintf (|x·inv| is at most
 * 127 and a little rounding; a NaN row never gets here). */
static inline int8_t quant(float x, float inv) {
    const float y = x * inv, r = (y + 12582912.0f) - 12582912.0f;
    return (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r);
}

/* A row's scale and reciprocal (0 and 0 for an all-zero row); -1 if the row is not finite. */
static int row_scale(const float *x, int K, float *s, float *inv) {
    /* max is exact in any order, so the vector loop gives the scalar loop's value; a NaN or
     * infinity anywhere makes x - x non-zero (NaN) */
    float amax = 0.0f;
    int bad = 0;
#pragma omp simd reduction(max : amax) reduction(| : bad)
    for (int k = 0; k < K; k++) {
        const float a = fabsf(x[k]);
        amax = a > amax ? a : amax;
        bad |= !(x[k] - x[k] == 0.0f);
    }
    if (bad || !isfinite(amax)) return -1;
    *s = amax / 127.0f;
    *inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    return 0;
}

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
    const int K = L->K, N = L->N;
    if (L->w) {
        k->linear_f32(out, ldo, a, lda, L->w, L->b, M, K, N);
        return;
    }
    /* int8: each row quantized with its own scale; the exact int32 sums; dequantized as the
     * library does: (float)acc·(s_a·s_w[j]) + b[j], two roundings (no fused multiply-add) */
    for (int m = 0; m < M; m++) {
        const float *x = a + (long)m * lda;
        float inv = 0.0f;
        int8_t *qa = s->qa + (long)m * K;
        if (row_scale(x, K, &s->sa[m], &inv)) {
            s->sa[m] = NAN;
            memset(qa, 0, (size_t)K);
            continue;
        }
#pragma omp simd
        for (int i = 0; i < K; i++) qa[i] = quant(x[i], inv);
    }
    k->dot_i8(s->acc, s->qa, L->q, M, K, N);
    for (int m = 0; m < M; m++) {
        const float sa = s->sa[m];
        const int32_t *acc = s->acc + (long)m * N;
        float *o = out + (long)m * ldo;
        const float *sw = L->s, *b = L->b;
        if (b) {
#pragma omp simd
            for (int j = 0; j < N; j++) o[j] = (float)acc[j] * (sa * sw[j]) + b[j];
        } else {
#pragma omp simd
            for (int j = 0; j < N; j++) o[j] = (float)acc[j] * (sa * sw[j]);
        }
    }
}

/* ---------------------------------------------------------------- exp and erf
 * The runtime's own, not libm's: libm's expf and erff differ in their last bits between
 * C libraries and architectures (glibc picks an FMA variant on x86-64), and these feed every
 * block, so with libm the int8 logits of an x86 and an arm64 build would differ in a few
 * bits. Plain float arithmetic with no fused operations (ISO C mode: no contraction) is the
 * same everywhere, and the loops calling them vectorize. */

/* e^x within 2 ulp on [-87, 88] (0 below, NaN kept): 2^n·e^r, n = round(x/ln 2), r by
 * Cody–Waite with ln 2 in two parts, e^r by its Taylor series to r^7 (|r| <= 0.35: the
 * next term is below 5e-9 relative). */
static inline float rt_expf(float x) {
    /* quiet comparisons (isless, isgreater): they cannot trap, so the loops calling this
     * if-convert and vectorize */
    const float xc = !isgreaterequal(x, -87.0f) ? -87.0f : isgreater(x, 88.0f) ? 88.0f : x;
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693145751953125f;
    r = r - n * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { int32_t i; float f; } s = {.i = ((int32_t)n + 127) << 23};
    return isunordered(x, x) ? x : isless(x, -87.0f) ? 0.0f : p * s.f;
}

/* erf(x) within 4.3e-7 absolute: x·P(x²)/Q(x²) on x clamped to ±3.8325 (where erf is 1 to
 * float precision), the rational approximation of Eigen's and XLA's float erf. */
static inline float rt_erff(float x) {
    const float c = 3.832506856900711f;
    x = isgreater(x, c) ? c : isless(x, -c) ? -c : x;
    const float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

/* ---------------------------------------------------------------- fp32 operations */

void rt_layernorm(float *out, const float *in, const float *w, const float *b, int M, int D) {
    for (int r = 0; r < M; r++) {
        const float *x = in + (long)r * D;
        float *y = out + (long)r * D;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < D; c++) m += x[c];
        m /= D;
        for (int c = 0; c < D; c++) v += (x[c] - m) * (x[c] - m);
        v /= D;
        const float mf = (float)m, rs = (float)(1.0 / sqrt(v + 1e-6));
        for (int c = 0; c < D; c++) y[c] = (x[c] - mf) * rs * w[c] + b[c];
    }
}

void rt_gelu(float *x, long n) {
#pragma omp simd
    for (long i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + rt_erff(x[i] * 0.70710678118654752f));
}

void rt_attention(float *out, const float *qkv, int T, int Q, int D, int heads, float *sc, float *kt) {
    const int hd = D / heads, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < heads; h++) {
        /* this head's keys transposed, [hd][T]: the scores of all keys then accumulate
         * elementwise over the keys, each in d order (the same sums, vectorized) */
        for (int j = 0; j < T; j++)
            for (int d = 0; d < hd; d++) kt[(long)d * T + j] = qkv[(long)j * ld + D + h * hd + d];
        for (int i = 0; i < Q; i++) {
            const float *q = qkv + (long)i * ld + h * hd;
#pragma omp simd
            for (int j = 0; j < T; j++) sc[j] = 0.0f;
            for (int d = 0; d < hd; d++) {
                const float qd = q[d], *kd = kt + (long)d * T;
#pragma omp simd
                for (int j = 0; j < T; j++) sc[j] += qd * kd[j];
            }
            float mx = -INFINITY;
            for (int j = 0; j < T; j++) {
                sc[j] *= scale;
                if (sc[j] > mx) mx = sc[j];
            }
#pragma omp simd
            for (int j = 0; j < T; j++) sc[j] = rt_expf(sc[j] - mx);
            float sum = 0.0f;
            for (int j = 0; j < T; j++) sum += sc[j];
            const float inv = 1.0f / sum;
            float *o = out + (long)i * D + h * hd;
            for (int d = 0; d < hd; d++) o[d] = 0.0f;
            for (int j = 0; j < T; j++) {
                const float *v = qkv + (long)j * ld + 2 * D + h * hd, p = sc[j] * inv;
#pragma omp simd
                for (int d = 0; d < hd; d++) o[d] += p * v[d];
            }
        }
    }
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
