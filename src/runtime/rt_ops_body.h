/* The bodies of the runtime's non-product operations (rt_kernels.h: layernorm, gelu,
 * attention, quant_rows, dequant), as always-inline plain C, instantiated once per kernel set
 * by RT_OPS_DEFINE: in rt_kernels_plain.c with the portable flags, in rt_kernels_x86.c under
 * each set's target attribute, so the compiler vectorizes the same loops with that set's
 * vectors. Only the vector width differs, never the arithmetic: every sum has one fixed order
 * (sums that would be one long dependency chain run in RT_LANES interleaved partial sums,
 * combined by a fixed tree, in every instantiation, the plain one included), nothing is
 * contracted (ISO C mode), and the runtime's own exp and erf are used, so every kernel set
 * returns the same bits as the plain one and int8 logits stay the same bits on every CPU.
 * No intrinsics here. Included only by src/runtime files. */
#ifndef MVMOE_RUNTIME_RT_OPS_BODY_H
#define MVMOE_RUNTIME_RT_OPS_BODY_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define RT_INLINE static inline __attribute__((always_inline))
/* interleaved partial sums of the reductions (a fixed number: the order is part of the result) */
#define RT_LANES 16
/* attention: at most RT_QB queries per block (rt_att_block.h), keys padded to RT_JB (the
 * scratch sizes of rt_kernels.h, RT_ATT_SC and RT_ATT_KT, assume these) */
#define RT_QB 8
#define RT_JB 32

/* 16 floats as one value (GCC/Clang vector extension, not an instruction set's intrinsics):
 * elementwise IEEE operations, one register per value on AVX-512, two on AVX2, four with SSE2
 * or NEON: the same bits everywhere, and a value the compiler keeps in registers where a
 * float array of accumulators stays in memory. The narrower ones serve the trees below. */
typedef float rt_v16 __attribute__((vector_size(64)));
typedef float rt_v8 __attribute__((vector_size(32)));
typedef float rt_v4 __attribute__((vector_size(16)));
typedef double rt_d8 __attribute__((vector_size(64)));
typedef double rt_d4 __attribute__((vector_size(32)));
/* (a macro: a function returning one would change the ABI between targets, -Wpsabi) */
#define RT_V16_LOAD(v, p) memcpy(&(v), (p), sizeof(rt_v16))

/* The fixed tree that combines RT_LANES (16) partial sums: l[i] += l[i + h] for h = 8, 4, 2, 1,
 * written as halves of vectors, so it runs as a few vector adds where the unrolled scalar form
 * was a chain of sixteen dependent scalar operations per row (the rows here are short: 192
 * values for ViT-Tiny, so that chain was a good part of a row's time). Same operations, same
 * order, same bits. */
RT_INLINE float rt_tree_sum16(const float *l) {
    rt_v8 a, b;
    memcpy(&a, l, sizeof a), memcpy(&b, l + 8, sizeof b);
    a = a + b;
    rt_v4 c, d;
    memcpy(&c, &a, sizeof c), memcpy(&d, (const char *)&a + sizeof c, sizeof d);
    c = c + d;
    return (c[0] + c[2]) + (c[1] + c[3]);
}
RT_INLINE double rt_tree_sum16d(const double *l) {
    rt_d8 a, b;
    memcpy(&a, l, sizeof a), memcpy(&b, l + 8, sizeof b);
    a = a + b;
    rt_d4 c, d;
    memcpy(&c, &a, sizeof c), memcpy(&d, (const char *)&a + sizeof c, sizeof d);
    c = c + d;
    return (c[0] + c[2]) + (c[1] + c[3]);
}
/* The maximum of 16 (exact in any order; NaN lanes are not expected: callers check apart):
 * halves of vectors compared, the larger taken by the comparison's mask (C has no vector ?:). */
typedef int32_t rt_m8 __attribute__((vector_size(32)));
typedef int32_t rt_m4 __attribute__((vector_size(16)));
RT_INLINE float rt_tree_max16(const float *l) {
    rt_v8 a, b;
    rt_m8 ai, bi;
    memcpy(&a, l, sizeof a), memcpy(&b, l + 8, sizeof b);
    memcpy(&ai, &a, sizeof a), memcpy(&bi, &b, sizeof b);
    const rt_m8 gt = b > a;
    ai = (ai & ~gt) | (bi & gt);
    rt_v4 c, d;
    rt_m4 ci, di;
    memcpy(&c, &ai, sizeof c), memcpy(&d, (const char *)&ai + sizeof c, sizeof d);
    memcpy(&ci, &c, sizeof c), memcpy(&di, &d, sizeof d);
    const rt_m4 gt4 = d > c;
    ci = (ci & ~gt4) | (di & gt4);
    memcpy(&c, &ci, sizeof c);
    const float e = c[2] > c[0] ? c[2] : c[0], f = c[3] > c[1] ? c[3] : c[1];
    return f > e ? f : e;
}

/* One value to int8 with the reciprocal scale: nearest, ties to even, clamped to ±127 (the
 * library's quant(), which calls nearbyintf). Adding and taking off 1.5·2^23 rounds a float
 * of magnitude below 2^22 to an integer by the current rounding mode, as nearbyintf does, in
 * two instructions where a baseline x86-64 build calls libm for nearbyintf (|x·inv| is at most
 * 127 and a little rounding; a NaN row never gets here). */
RT_INLINE int8_t quant(float x, float inv) {
    const float y = x * inv, r = (y + 12582912.0f) - 12582912.0f;
    /* converted (exact: r is an integer below 2^22), then clamped as an int (integer min and
     * max instructions): comparing the float vectorized into a dozen mask operations per vector */
    const int i = (int)r, c = i > 127 ? 127 : i < -127 ? -127 : i;
    return (int8_t)c;
}

/* A row's scale and reciprocal (0 and 0 for an all-zero row); -1 if the row is not finite. */
RT_INLINE int row_scale(const float *x, int K, float *s, float *inv) {
    /* max is exact in any order; a NaN or infinity anywhere makes x - x, and so the sum of
     * them, NaN (else +0 in any order): RT_LANES lanes and the trees (a reduction clause
     * ended each row in a scalar loop over the vector's lanes) */
    float am[RT_LANES] = {0}, zl[RT_LANES] = {0};
    int k = 0;
    for (; k + RT_LANES <= K; k += RT_LANES)
#pragma omp simd
        for (int e = 0; e < RT_LANES; e++) {
            const float a = fabsf(x[k + e]);
            am[e] = a > am[e] ? a : am[e];
            zl[e] += x[k + e] - x[k + e];
        }
    for (int e = 0; k < K; k++, e++) {
        const float a = fabsf(x[k]);
        am[e] = a > am[e] ? a : am[e];
        zl[e] += x[k] - x[k];
    }
    const float amax = rt_tree_max16(am), z = rt_tree_sum16(zl);
    if (z != 0.0f || !isfinite(amax)) return -1;
    *s = amax / 127.0f;
    *inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    return 0;
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
RT_INLINE float rt_expf(float x) {
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
RT_INLINE float rt_erff(float x) {
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

/* ---------------------------------------------------------------- the operations */

RT_INLINE void rt_body_layernorm(float *out, const float *in, const float *w, const float *b, int M, int D) {
    for (int r = 0; r < M; r++) {
        const float *x = in + (long)r * D;
        float *y = out + (long)r * D;
        double m = 0.0, v = 0.0;
        {
            double l[RT_LANES] = {0};
            int c = 0;
            for (; c + RT_LANES <= D; c += RT_LANES)
#pragma omp simd
                for (int i = 0; i < RT_LANES; i++) l[i] += x[c + i];
            for (int i = 0; c < D; c++, i++) l[i] += x[c];
            m = rt_tree_sum16d(l) / D;
        }
        {
            double l[RT_LANES] = {0};
            int c = 0;
            for (; c + RT_LANES <= D; c += RT_LANES)
#pragma omp simd
                for (int i = 0; i < RT_LANES; i++) l[i] += (x[c + i] - m) * (x[c + i] - m);
            for (int i = 0; c < D; c++, i++) l[i] += (x[c] - m) * (x[c] - m);
            v = rt_tree_sum16d(l) / D;
        }
        const float mf = (float)m, rs = (float)(1.0 / sqrt(v + 1e-6));
#pragma omp simd
        for (int c = 0; c < D; c++) y[c] = (x[c] - mf) * rs * w[c] + b[c];
    }
}

RT_INLINE float rt_gelu1(float x) { return 0.5f * x * (1.0f + rt_erff(x * 0.70710678118654752f)); }
RT_INLINE void rt_body_gelu(float *x, long n) {
    /* 64 values per step: the vectorized body then holds four independent chains (the erf's
     * polynomials and its division are one long dependency chain per vector, which one vector
     * at a time left mostly waiting) */
    long i = 0;
    for (; i + 64 <= n; i += 64)
#pragma omp simd
        for (int e = 0; e < 64; e++) x[i + e] = rt_gelu1(x[i + e]);
#pragma omp simd
    for (long j = i; j < n; j++) x[j] = rt_gelu1(x[j]);
}

/* Attention in blocks of queries × keys (scores) and queries × columns (outputs) held in
 * registers: rt_att_block.h, below. Scratch sizes: rt_kernels.h (RT_ATT_SC, RT_ATT_KT). */

/* r[j][d] -> r[d][j] for a 16 x 16 block: four stages, each exchanging one bit of the row
 * index with the same bit of the column index between the rows i and i + s (a copy: no
 * arithmetic, so the same bits as the scalar transposition; 64 two-register shuffles where a
 * strided scalar copy took 256 loads and stores). */
/* (__builtin_shufflevector, with constant indices: GCC 12 and clang both have it) */
RT_INLINE void rt_transpose16(rt_v16 r[16]) {
    _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) if (!(i & 1)) {
        const rt_v16 a = r[i], b = r[i + 1];
        r[i] = __builtin_shufflevector(a, b, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
        r[i + 1] = __builtin_shufflevector(a, b, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    }
    _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) if (!(i & 2)) {
        const rt_v16 a = r[i], b = r[i + 2];
        r[i] = __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        r[i + 2] = __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
    _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) if (!(i & 4)) {
        const rt_v16 a = r[i], b = r[i + 4];
        r[i] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        r[i + 4] = __builtin_shufflevector(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    }
    _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) if (!(i & 8)) {
        const rt_v16 a = r[i], b = r[i + 8];
        r[i] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        r[i + 8] = __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    }
}

/* The softmax of qb rows of T scores (stride Tp), not yet normalized: e^(s - max) in place,
 * rinv[i] = 1 / the row's sum (applied to the attention's outputs: hd products per query, not
 * T). */
RT_INLINE void rt_att_softmax(float *sc, int Tp, int T, int qb, float *rinv) {
    for (int ii = 0; ii < qb; ii++) {
        float *s = sc + (long)ii * Tp;
        /* the maximum (exact in any order) in RT_LANES lanes, then a tree: a reduction clause
         * left a scalar loop over the vector's lanes per row */
        float m[RT_LANES];
        for (int e = 0; e < RT_LANES; e++) m[e] = -INFINITY;
        int j = 0;
        for (; j + RT_LANES <= T; j += RT_LANES)
#pragma omp simd
            for (int e = 0; e < RT_LANES; e++) m[e] = s[j + e] > m[e] ? s[j + e] : m[e];
        for (int e = 0; j < T; j++, e++) m[e] = s[j] > m[e] ? s[j] : m[e];
        const float mx = rt_tree_max16(m);
        /* e^(s - max) and their sum in one pass: RT_LANES partial sums, combined by a tree */
        float l[RT_LANES] = {0};
        j = 0;
        for (; j + RT_LANES <= T; j += RT_LANES)
#pragma omp simd
            for (int e = 0; e < RT_LANES; e++) {
                const float v = rt_expf(s[j + e] - mx);
                s[j + e] = v;
                l[e] += v;
            }
        for (int e = 0; j < T; j++, e++) {
            const float v = rt_expf(s[j] - mx);
            s[j] = v;
            l[e] += v;
        }
        rinv[ii] = 1.0f / rt_tree_sum16(l);
    }
}

/* The attention's blocks, once per vector width RT_AW (16, 8, 4 floats: rt_att_block.h, a
 * template included three times): a set uses the width of its registers, since GCC splits a
 * wider vector-extension value into pieces through general registers and the stack (AVX2 with
 * 16-float values: 10x slower than with 8-float ones). */
#define RT_CAT_(a, b) a##_##b
#define RT_CAT(a, b) RT_CAT_(a, b)
#define RT_AW 16
#include "runtime/rt_att_block.h"
#undef RT_AW
#define RT_AW 8
#include "runtime/rt_att_block.h"
#undef RT_AW
#define RT_AW 4
#include "runtime/rt_att_block.h"
#undef RT_AW

/* Constants per kernel set (RT_OPS_DEFINE). W: its vector width in floats (16: AVX-512, 8:
 * AVX2, 4: NEON and plain); the keys are transposed in 16 x 16 register blocks where W = 16;
 * elsewhere that shuffle becomes long element-wise code (the plain and AVX2 attention grew
 * 3.5x), so the strided copy stays (the same bits either way: a copy). QB, NK, NO: the blocks
 * (rt_att_block.h), as many accumulators as the set has registers: QB queries × NK vectors of
 * keys, QB × NO vectors of output columns. */
RT_INLINE void rt_body_attention(float *out, const float *qkv, int T, int q0, int q1, int D, int heads, int h0, int h1,
                                 float *sc, float *kt, const int W, const int QB, const int NK, const int NO) {
    const int wide = W == 16;
    const int hd = D / heads, ld = 3 * D, Tp = (T + RT_JB - 1) / RT_JB * RT_JB;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = h0; h < h1; h++) {
        /* this head's keys transposed, [hd][Tp], zero past T (scores computed, never used); 16
         * keys at a time, so the rows read stay in the L1 cache over d */
        for (int j0 = 0; j0 < Tp; j0 += 16) {
            const int nj = T - j0 < 16 ? (T - j0 > 0 ? T - j0 : 0) : 16;
            int d = 0;
            for (; wide && d + 16 <= hd; d += 16) { /* 16 x 16 blocks in registers */
                rt_v16 r[16];
                _Pragma("GCC unroll 16") for (int jj = 0; jj < 16; jj++) {
                    if (jj < nj)
                        RT_V16_LOAD(r[jj], qkv + (long)(j0 + jj) * ld + D + h * hd + d);
                    else
                        r[jj] = (rt_v16){0};
                }
                rt_transpose16(r);
                _Pragma("GCC unroll 16") for (int dd = 0; dd < 16; dd++)
                    memcpy(kt + (long)(d + dd) * Tp + j0, &r[dd], sizeof r[dd]);
            }
            for (; d < hd; d++) {
                float *kd = kt + (long)d * Tp + j0;
                const float *k0 = qkv + (long)j0 * ld + D + h * hd + d;
                for (int jj = 0; jj < nj; jj++) kd[jj] = k0[(long)jj * ld];
                for (int jj = nj; jj < 16; jj++) kd[jj] = 0.0f;
            }
        }
        for (int i0 = q0; i0 < q1; i0 += QB) {
            const int qb = q1 - i0 < QB ? q1 - i0 : QB;
            if (W == 16)
                rt_att_block_16(out, qkv, T, Tp, D, hd, h, i0, qb, sc, kt, scale, QB, NK, NO);
            else if (W == 8)
                rt_att_block_8(out, qkv, T, Tp, D, hd, h, i0, qb, sc, kt, scale, QB, NK, NO);
            else
                rt_att_block_4(out, qkv, T, Tp, D, hd, h, i0, qb, sc, kt, scale, QB, NK, NO);
        }
    }
}

/* Per-row symmetric int8 of M activation rows (stride lda): qa [M·K], sa [M] (NaN and zeros
 * for a row that is not finite). */
RT_INLINE void rt_body_quant_rows(int8_t *qa, float *sa, const float *a, int lda, int M, int K) {
    for (int m = 0; m < M; m++) {
        const float *x = a + (long)m * lda;
        float inv = 0.0f;
        int8_t *q = qa + (long)m * K;
        if (row_scale(x, K, &sa[m], &inv)) {
            sa[m] = NAN;
            memset(q, 0, (size_t)K);
            continue;
        }
#pragma omp simd
        for (int i = 0; i < K; i++) q[i] = quant(x[i], inv);
    }
}

/* out[m·ldo + j] = (float)acc[m·N + j]·(sa[m]·sw[j]) + b[j]: two roundings, as the library;
 * with add, out[m·ldo + j] + that (one more rounding: the residual add of the forward). */
RT_INLINE void rt_body_dequant_add(float *out, int ldo, const int32_t *acc, const float *sa, const float *sw,
                                   const float *b, int M, int N, int add) {
    for (int m = 0; m < M; m++) {
        const float s = sa[m];
        const int32_t *c = acc + (long)m * N;
        float *o = out + (long)m * ldo;
        if (b && add) {
#pragma omp simd
            for (int j = 0; j < N; j++) o[j] = o[j] + ((float)c[j] * (s * sw[j]) + b[j]);
        } else if (b) {
#pragma omp simd
            for (int j = 0; j < N; j++) o[j] = (float)c[j] * (s * sw[j]) + b[j];
        } else if (add) {
#pragma omp simd
            for (int j = 0; j < N; j++) o[j] = o[j] + (float)c[j] * (s * sw[j]);
        } else {
#pragma omp simd
            for (int j = 0; j < N; j++) o[j] = (float)c[j] * (s * sw[j]);
        }
    }
}

RT_INLINE void rt_body_dequant(float *out, int ldo, const int32_t *acc, const float *sa, const float *sw,
                               const float *b, int M, int N) {
    rt_body_dequant_add(out, ldo, acc, sa, sw, b, M, N, 0);
}

/* The operations of one kernel set, under the function attribute ATTR, named NAME_SUFFIX; W,
 * QB, NK, NO: its vector width and the attention's blocks for its registers
 * (rt_body_attention). */
#define RT_OPS_DEFINE(ATTR, SUFFIX, W, QB, NK, NO)                                                           \
    ATTR static void layernorm_##SUFFIX(float *out, const float *in, const float *w, const float *b, int M,  \
                                        int D) {                                                             \
        rt_body_layernorm(out, in, w, b, M, D);                                                              \
    }                                                                                                        \
    ATTR static void gelu_##SUFFIX(float *x, long n) { rt_body_gelu(x, n); }                                 \
    ATTR static void attention_##SUFFIX(float *out, const float *qkv, int T, int q0, int q1, int D, int heads, \
                                        int h0, int h1, float *sc, float *kt) {                              \
        rt_body_attention(out, qkv, T, q0, q1, D, heads, h0, h1, sc, kt, W, QB, NK, NO);                     \
    }                                                                                                        \
    ATTR static void quant_rows_##SUFFIX(int8_t *qa, float *sa, const float *a, int lda, int M, int K) {     \
        rt_body_quant_rows(qa, sa, a, lda, M, K);                                                            \
    }                                                                                                        \
    ATTR static void dequant_##SUFFIX(float *out, int ldo, const int32_t *acc, const float *sa,              \
                                      const float *sw, const float *b, int M, int N) {                       \
        rt_body_dequant(out, ldo, acc, sa, sw, b, M, N);                                                     \
    }
/* linear_i8 of a set whose dot_i8 is DOT (a function of that file): the exact sums into acc, then
 * the dequantization body (the sets whose kernels do not dequantize in their tiles). */
#define RT_LINEAR_I8_DEFINE(ATTR, SUFFIX, DOT)                                                               \
    ATTR static void linear_i8_##SUFFIX(float *out, int ldo, const int8_t *qa, const float *sa,             \
                                        const int8_t *qw, const float *sw, const int32_t *wsum,              \
                                        const float *b, int M, int K, int N, int add, int32_t *acc) {        \
        (void)wsum;                                                                                          \
        DOT(acc, qa, qw, M, K, N);                                                                           \
        rt_body_dequant_add(out, ldo, acc, sa, sw, b, M, N, add);                                            \
    }
/* The table entries RT_OPS_DEFINE made, in rt_kernels.h's order. */
#define RT_OPS_ENTRIES(SUFFIX) \
    layernorm_##SUFFIX, gelu_##SUFFIX, attention_##SUFFIX, quant_rows_##SUFFIX, dequant_##SUFFIX

#endif
