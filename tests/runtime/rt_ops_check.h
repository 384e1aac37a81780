/* The kernel sets' non-product operations (rt_kernels.h: layernorm, gelu, attention,
 * quant_rows, dequant) against the plain set, shared by test_rt_kernels.c (every set this CPU
 * runs) and rt_neon_check.c (arm64 under qemu). One body compiled per set (rt_ops_body.h), so
 * every set must return exactly the plain set's bits; and the plain set itself against
 * double-precision definitions, with tolerances a wrong index or a lost term would exceed.
 * rt_ops_check(k) returns the number of failures, each printed to stderr. */
#ifndef MVMOE_TESTS_RT_OPS_CHECK_H
#define MVMOE_TESTS_RT_OPS_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt_kernels.h"

static uint64_t ops_rng = 0x2545F4914F6CDD1Dull;
static float ops_frand(void) { /* -1…1 */
    ops_rng ^= ops_rng << 13, ops_rng ^= ops_rng >> 7, ops_rng ^= ops_rng << 17;
    return (float)((ops_rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

static void *ops_alloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "rt_ops_check: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static int ops_same(const char *what, const char *set, const void *a, const void *b, size_t bytes, int x, int y) {
    if (memcmp(a, b, bytes) == 0) return 0;
    fprintf(stderr, "FAIL: %s %s (%d, %d): not the plain set's bits\n", set, what, x, y);
    return 1;
}

static int rt_ops_check(const mvmoe_rt_kernels *k) {
    const mvmoe_rt_kernels *p = mvmoe_rt_kernels_plain();
    int fails = 0;
    /* layernorm: D around the lane count and the vector widths */
    static const int Ds[] = {1, 3, 15, 16, 17, 31, 48, 64, 100, 192, 771};
    for (size_t i = 0; i < sizeof Ds / sizeof *Ds; i++) {
        const int D = Ds[i], M = 3;
        float *x = ops_alloc(sizeof(float) * M * D), *w = ops_alloc(sizeof(float) * D), *b = ops_alloc(sizeof(float) * D);
        float *y1 = ops_alloc(sizeof(float) * M * D), *y2 = ops_alloc(sizeof(float) * M * D);
        for (int c = 0; c < M * D; c++) x[c] = 3.0f + 2.0f * ops_frand(); /* a mean far from 0 */
        for (int c = 0; c < D; c++) w[c] = ops_frand(), b[c] = ops_frand();
        p->layernorm(y1, x, w, b, M, D);
        k->layernorm(y2, x, w, b, M, D);
        fails += ops_same("layernorm", k->name, y1, y2, sizeof(float) * M * D, M, D);
        for (int r = 0; r < M; r++) {
            double m = 0, v = 0;
            for (int c = 0; c < D; c++) m += x[r * D + c];
            m /= D;
            for (int c = 0; c < D; c++) v += (x[r * D + c] - m) * (x[r * D + c] - m);
            v /= D;
            for (int c = 0; c < D; c++) {
                const double want = (x[r * D + c] - m) / sqrt(v + 1e-6) * w[c] + b[c];
                if (!(fabs(want - y1[r * D + c]) <= 1e-5 * (1 + fabs(want)))) {
                    fprintf(stderr, "FAIL: plain layernorm D=%d row %d col %d: %g, want %g\n", D, r, c, y1[r * D + c], want);
                    fails++;
                    c = D, r = M;
                }
            }
        }
        free(x), free(w), free(b), free(y1), free(y2);
    }
    /* gelu over -6…6 and an odd count */
    {
        const long n = 1001;
        float *a = ops_alloc(sizeof(float) * n), *g = ops_alloc(sizeof(float) * n);
        for (long i = 0; i < n; i++) a[i] = g[i] = -6.0f + 12.0f * (float)i / (float)(n - 1);
        p->gelu(a, n);
        k->gelu(g, n);
        fails += ops_same("gelu", k->name, a, g, sizeof(float) * n, (int)n, 0);
        for (long i = 0; i < n; i++) {
            const double x = -6.0 + 12.0 * (double)i / (double)(n - 1), want = 0.5 * x * (1 + erf(x / sqrt(2.0)));
            if (!(fabs(want - a[i]) <= 1e-6 * (1 + fabs(x)))) {
                fprintf(stderr, "FAIL: plain gelu(%g) = %g, want %g\n", x, a[i], want);
                fails++;
                break;
            }
        }
        free(a), free(g);
    }
    /* attention: T around the lane count, 1…3 heads, all queries or the first only */
    static const int Ts[] = {1, 2, 5, 15, 16, 17, 33, 50, 65, 197};
    static const int HD[][2] = {{1, 4}, {2, 32}, {3, 48}, {3, 192}, {1, 70}};
    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++)
        for (size_t hi = 0; hi < sizeof HD / sizeof *HD; hi++)
            for (int qall = 0; qall < 2; qall++) {
                const int T = Ts[ti], H = HD[hi][0], D = HD[hi][1], Q = qall ? T : 1, hd = D / H;
                float *qkv = ops_alloc(sizeof(float) * T * 3 * D), *o1 = ops_alloc(sizeof(float) * T * D);
                float *o2 = ops_alloc(sizeof(float) * T * D), *sc = ops_alloc(sizeof(float) * (size_t)RT_ATT_SC(T));
                float *kt = ops_alloc(sizeof(float) * (size_t)RT_ATT_KT(T, D));
                for (int i = 0; i < T * 3 * D; i++) qkv[i] = 2.0f * ops_frand();
                p->attention(o1, qkv, T, 0, Q, D, H, 0, H, sc, kt);
                /* the heads in two calls, as two threads make them */
                k->attention(o2, qkv, T, 0, Q, D, H, 0, H / 2, sc, kt);
                k->attention(o2, qkv, T, 0, Q, D, H, H / 2, H, sc, kt);
                fails += ops_same("attention", k->name, o1, o2, sizeof(float) * Q * D, T, D);
                /* the queries in two calls (a split not on the blocks of 8), as two threads make them */
                memset(o2, 0, sizeof(float) * T * D);
                k->attention(o2, qkv, T, 0, Q / 2, D, H, 0, H, sc, kt);
                k->attention(o2, qkv, T, Q / 2, Q, D, H, 0, H, sc, kt);
                fails += ops_same("attention (rows split)", k->name, o1, o2, sizeof(float) * Q * D, T, D);
                for (int h = 0; h < H; h++)
                    for (int i = 0; i < Q; i++) {
                        double s[197], mx = -INFINITY, sum = 0;
                        for (int j = 0; j < T; j++) {
                            s[j] = 0;
                            for (int d = 0; d < hd; d++) s[j] += (double)qkv[i * 3 * D + h * hd + d] * qkv[j * 3 * D + D + h * hd + d];
                            s[j] /= sqrt((double)hd);
                            if (s[j] > mx) mx = s[j];
                        }
                        for (int j = 0; j < T; j++) sum += s[j] = exp(s[j] - mx);
                        for (int d = 0; d < hd; d++) {
                            double want = 0;
                            for (int j = 0; j < T; j++) want += s[j] / sum * qkv[j * 3 * D + 2 * D + h * hd + d];
                            if (!(fabs(want - o1[i * D + h * hd + d]) <= 1e-5)) {
                                fprintf(stderr, "FAIL: plain attention T=%d D=%d heads %d: (%d, %d) %g, want %g\n", T, D,
                                        H, i, h * hd + d, o1[i * D + h * hd + d], want);
                                fails++;
                                d = hd, i = Q, h = H;
                            }
                        }
                    }
                free(qkv), free(o1), free(o2), free(sc), free(kt);
            }
    /* quant_rows and dequant: a zero row, a non-finite row, strided rows */
    static const int Ks[] = {1, 7, 16, 17, 64, 100, 192};
    for (size_t i = 0; i < sizeof Ks / sizeof *Ks; i++) {
        const int K = Ks[i], M = 4, lda = K + 3, N = 19, ldo = N + 2;
        float *a = ops_alloc(sizeof(float) * M * lda), *s1 = ops_alloc(sizeof(float) * M), *s2 = ops_alloc(sizeof(float) * M);
        int8_t *q1 = ops_alloc((size_t)M * K), *q2 = ops_alloc((size_t)M * K);
        for (int j = 0; j < M * lda; j++) a[j] = 5.0f * ops_frand();
        for (int c = 0; c < K; c++) a[lda + c] = 0.0f; /* row 1 all zero */
        a[2 * lda + K / 2] = NAN;                      /* row 2 not finite */
        p->quant_rows(q1, s1, a, lda, M, K);
        k->quant_rows(q2, s2, a, lda, M, K);
        fails += ops_same("quant_rows q", k->name, q1, q2, (size_t)M * K, M, K);
        fails += ops_same("quant_rows scale", k->name, s1, s2, sizeof(float) * M, M, K);
        if (!(isnan(s1[2]) && s1[1] == 0.0f)) fprintf(stderr, "FAIL: plain quant_rows: special rows\n"), fails++;
        for (int r = 0; r < M; r += 3)
            for (int c = 0; c < K; c++)
                if (!(fabsf(q1[r * K + c] * s1[r] - a[r * lda + c]) <= 0.5f * s1[r] * 1.0001f) || q1[r * K + c] < -127) {
                    fprintf(stderr, "FAIL: plain quant_rows K=%d (%d, %d): %d·%g for %g\n", K, r, c, q1[r * K + c], s1[r],
                            a[r * lda + c]);
                    fails++;
                    c = K, r = M;
                }
        int32_t *acc = ops_alloc(sizeof(int32_t) * M * N);
        float *sw = ops_alloc(sizeof(float) * N), *b = ops_alloc(sizeof(float) * N);
        float *o1 = ops_alloc(sizeof(float) * M * ldo), *o2 = ops_alloc(sizeof(float) * M * ldo);
        for (int j = 0; j < M * N; j++) acc[j] = (int32_t)(ops_frand() * 1e6f);
        for (int j = 0; j < N; j++) sw[j] = 0.01f * (1.5f + ops_frand()), b[j] = ops_frand();
        s1[2] = 0.5f;
        for (int bias = 0; bias < 2; bias++) {
            p->dequant(o1, ldo, acc, s1, sw, bias ? b : NULL, M, N);
            k->dequant(o2, ldo, acc, s1, sw, bias ? b : NULL, M, N);
            fails += ops_same("dequant", k->name, o1, o2, sizeof(float) * M * ldo, M, N);
            for (int r = 0; r < M; r++)
                for (int j = 0; j < N; j++) {
                    const float want = (float)acc[r * N + j] * (s1[r] * sw[j]) + (bias ? b[j] : 0.0f);
                    if (o1[r * ldo + j] != want) {
                        fprintf(stderr, "FAIL: plain dequant (%d, %d): %g, want %g\n", r, j, o1[r * ldo + j], want);
                        fails++;
                        j = N, r = M;
                    }
                }
        }
        free(a), free(s1), free(s2), free(q1), free(q2), free(acc), free(sw), free(b), free(o1), free(o2);
    }
    return fails;
}

#endif
