/* Every runtime kernel set this CPU runs (src/runtime/rt_kernels.h) against the plain-C
 * reference over awkward shapes (M, N, K of 1, K not a multiple of the vector widths, large K,
 * every edge of the blocked kernels' panels, tiles and blocks) and the model's shapes:
 * linear_f32 within float rounding, dot_i8 exactly (the int8 sums are exact integers, which
 * is what makes int8 logits the same bits on every CPU). Links only libmvmoe_run.a; builds and
 * runs on arm64 too (the x86 and arm64 sets are each named under their own #if). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt_kernels.h"
#include "runtime/rt_ops_check.h"

static int failures;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float frnd(void) { return (float)(rnd() % 20001) / 10000.0f - 1.0f; }

static void check_set(const mvmoe_rt_kernels *k, const mvmoe_rt_kernels *ref, int M, int K, int N, int ld_extra,
                      int bias) {
    const int lda = K + ld_extra, ldo = N + ld_extra;
    float *a = malloc(sizeof(float) * (size_t)M * lda), *w = malloc(sizeof(float) * (size_t)N * K);
    float *b = malloc(sizeof(float) * (size_t)N), *o1 = malloc(sizeof(float) * (size_t)M * ldo);
    float *o2 = malloc(sizeof(float) * (size_t)M * ldo);
    int8_t *qa = malloc((size_t)M * K), *qw = malloc((size_t)N * K);
    int32_t *i1 = malloc(sizeof(int32_t) * (size_t)M * N), *i2 = malloc(sizeof(int32_t) * (size_t)M * N);
    if (!a || !w || !b || !o1 || !o2 || !qa || !qw || !i1 || !i2) {
        fprintf(stderr, "FAIL: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < (long)M * lda; i++) a[i] = frnd();
    for (long i = 0; i < (long)N * K; i++) w[i] = frnd();
    for (int i = 0; i < N; i++) b[i] = frnd();
    for (long i = 0; i < (long)M * ldo; i++) o1[i] = o2[i] = 12345.0f; /* the gaps must stay untouched */
    ref->linear_f32(o1, ldo, a, lda, w, bias ? b : NULL, M, K, N);
    k->linear_f32(o2, ldo, a, lda, w, bias ? b : NULL, M, K, N);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < ldo; n++) {
            const float x = o1[(long)m * ldo + n], y = o2[(long)m * ldo + n];
            if (n >= N) {
                if (y != 12345.0f) worst = INFINITY;
                continue;
            }
            /* |a|, |w| <= 1: the sums' rounding is at most ~K·eps·Σ|a·w| <= K²·eps. Each set
             * is held to the exact (double) sum, not to the plain set's float sum: at K = 65,000
             * the plain set's own sequential rounding is as large as the bound. The plain set
             * must agree with it too (a wrong index in either shows up as a difference of
             * about one |a·w|, far above the bound). */
            double exact = bias ? (double)b[n] : 0.0;
            for (int q = 0; q < K; q++) exact += (double)a[(long)m * lda + q] * w[(long)n * K + q];
            const double scale = 1.0 + sqrt((double)K);
            const double err = fmax(fabs(exact - y), 0.5 * fabs((double)x - y)) / scale;
            if (!(err <= worst)) worst = err;
        }
    if (!(worst <= 1e-5)) {
        fprintf(stderr, "FAIL: %s linear_f32 M=%d K=%d N=%d: error %g\n", k->name, M, K, N, worst);
        failures++;
    }
    /* int8 in -127..127, with the extremes present */
    for (long i = 0; i < (long)M * K; i++) qa[i] = (int8_t)((int)(rnd() % 255) - 127);
    for (long i = 0; i < (long)N * K; i++) qw[i] = (int8_t)((int)(rnd() % 255) - 127);
    if (K > 3) qa[0] = 127, qa[1] = -127, qw[0] = -127, qw[1] = -127;
    ref->dot_i8(i1, qa, qw, M, K, N);
    k->dot_i8(i2, qa, qw, M, K, N);
    if (memcmp(i1, i2, sizeof(int32_t) * (size_t)M * N) != 0) {
        fprintf(stderr, "FAIL: %s dot_i8 M=%d K=%d N=%d: sums differ from the reference\n", k->name, M, K, N);
        failures++;
    }
    /* linear_i8 (the product with its dequantization, and the residual add, in the blocked
     * kernels' stores): plain's must be dot_i8, dequant, then out + y; every set plain's bits
     * (a NaN row scale, a zero one, and rows around the ldo gaps included) */
    {
        float *sa = malloc(sizeof(float) * (size_t)M), *sw = malloc(sizeof(float) * (size_t)N);
        float *want = malloc(sizeof(float) * (size_t)M * ldo), *y = malloc(sizeof(float) * (size_t)M * ldo);
        int32_t *scratch = malloc(sizeof(int32_t) * (size_t)M * N);
        if (!sa || !sw || !want || !y || !scratch) {
            fprintf(stderr, "FAIL: out of memory\n");
            exit(1);
        }
        for (int m = 0; m < M; m++) sa[m] = (frnd() + 1.5f) * 1e-3f;
        for (int n = 0; n < N; n++) sw[n] = (frnd() + 1.5f) * 1e-2f;
        if (M > 2) sa[1] = NAN, sa[2] = 0.0f;
        /* the weight sums made at open (rt_model.c), or NULL (made by the kernel): both */
        int32_t *ws = malloc(sizeof(int32_t) * (size_t)N);
        if (!ws) {
            fprintf(stderr, "FAIL: out of memory\n");
            exit(1);
        }
        for (int n = 0; n < N; n++) {
            ws[n] = 0;
            for (int q = 0; q < K; q++) ws[n] += qw[(long)n * K + q];
        }
        for (int add = 0; add < 4; add++) {
            const int32_t *wsums = add >= 2 ? ws : NULL;
            for (long i = 0; i < (long)M * ldo; i++) want[i] = o1[i] = o2[i] = i % 7 ? frnd() : 12345.0f;
            ref->dequant(y, ldo, i1, sa, sw, bias ? b : NULL, M, N);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    const long i = (long)m * ldo + n;
                    want[i] = add % 2 ? want[i] + y[i] : y[i];
                }
            ref->linear_i8(o1, ldo, qa, sa, qw, sw, wsums, bias ? b : NULL, M, K, N, add % 2, scratch);
            k->linear_i8(o2, ldo, qa, sa, qw, sw, wsums, bias ? b : NULL, M, K, N, add % 2, scratch);
            if (memcmp(want, o1, sizeof(float) * (size_t)M * ldo) != 0) {
                fprintf(stderr, "FAIL: plain linear_i8 add=%d M=%d K=%d N=%d: not dot_i8 + dequant\n", add, M, K, N);
                failures++;
            }
            if (memcmp(o1, o2, sizeof(float) * (size_t)M * ldo) != 0) {
                fprintf(stderr, "FAIL: %s linear_i8 add=%d M=%d K=%d N=%d: not the plain set's bits\n", k->name, add,
                        M, K, N);
                failures++;
            }
        }
        free(sa), free(sw), free(want), free(y), free(scratch), free(ws);
    }
    /* all extremes: the largest sums (VPMADDUBSW pairs, int32 range) */
    memset(qa, 127, (size_t)M * K);
    for (long i = 0; i < (long)N * K; i++) qw[i] = (int8_t)(i % 2 ? -127 : 127);
    ref->dot_i8(i1, qa, qw, M, K, N);
    k->dot_i8(i2, qa, qw, M, K, N);
    if (memcmp(i1, i2, sizeof(int32_t) * (size_t)M * N) != 0) {
        fprintf(stderr, "FAIL: %s dot_i8 extremes M=%d K=%d N=%d\n", k->name, M, K, N);
        failures++;
    }
    free(a), free(w), free(b), free(o1), free(o2), free(qa), free(qw), free(i1), free(i2);
}

static void check_all(const mvmoe_rt_kernels *k) {
    static const int Ms[] = {1, 2, 3, 4, 5, 7, 16, 50, 65, 130};
    static const int Ks[] = {1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 129, 784, 1000};
    static const int Ns[] = {1, 2, 3, 4, 5, 6, 9, 13, 33};
    const mvmoe_rt_kernels *ref = mvmoe_rt_kernels_plain();
    for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
        for (size_t j = 0; j < sizeof Ks / sizeof *Ks; j++)
            for (size_t l = 0; l < sizeof Ns / sizeof *Ns; l++)
                check_set(k, ref, Ms[i], Ks[j], Ns[l], (int)((i + j + l) % 3), (int)((i + l) % 2));
    /* the model's shapes (tokens x K -> N; M = 1: the class token of the last block) */
    static const int model_M[] = {1, 50, 65, 197};
    static const int model_KN[][2] = {{64, 192}, {64, 64},   {64, 256},  {256, 64},
                                      {192, 576}, {192, 192}, {192, 768}, {768, 192}};
    for (size_t i = 0; i < sizeof model_M / sizeof *model_M; i++)
        for (size_t j = 0; j < sizeof model_KN / sizeof *model_KN; j++)
            check_set(k, ref, model_M[i], model_KN[j][0], model_KN[j][1], (int)(j % 2), (int)((i + j) % 2));
    /* the blocked kernels' edges: panels of 8/16 tokens, blocks of 64 tokens, of 128 k (fp32)
     * and 512 k (int8), tiles of 8/16 weight rows, groups of 4 bytes */
    static const int Mb[] = {8, 9, 16, 17, 63, 64, 65, 130};
    static const int Kb[] = {1, 2, 3, 4, 5, 127, 128, 129, 255, 257, 511, 512, 513, 515, 1027};
    static const int Nb[] = {1, 7, 8, 15, 16, 17, 33};
    for (size_t i = 0; i < sizeof Mb / sizeof *Mb; i++)
        for (size_t j = 0; j < sizeof Kb / sizeof *Kb; j++)
            for (size_t l = 0; l < sizeof Nb / sizeof *Nb; l++)
                check_set(k, ref, Mb[i], Kb[j], Nb[l], (int)((i + j + l) % 3), (int)((j + l) % 2));
    check_set(k, ref, 2, 16384, 3, 5, 1); /* large K */
    check_set(k, ref, 20, 16384, 17, 1, 1);
    check_set(k, ref, 20, 65000, 17, 0, 1); /* the int32 limit, through the blocked kernels */
    check_set(k, ref, 33, 2052, 13, 1, 1); /* panels of rows over several chunks of k */
    check_set(k, ref, 20, 40, 1030, 2, 0); /* more columns than the VNNI kernels' chunk of weight sums (1024) */
    check_set(k, ref, 1, 65000, 2, 0, 0); /* near the int32 limit of the int8 sums */
    failures += rt_ops_check(k); /* layernorm, gelu, attention, quant_rows, dequant */
    printf("ok: %s against plain\n", k->name);
}

int main(void) {
    int sets = 0;
    const mvmoe_rt_kernels *chosen = mvmoe_rt_kernels_get();
    printf("chosen: %s\n", chosen->name);
    check_all(mvmoe_rt_kernels_plain()); /* the reference against itself: the harness */
#if defined(__x86_64__)
    const mvmoe_rt_kernels *x86[] = {mvmoe_rt_kernels_avx512(), mvmoe_rt_kernels_avx2_vnni(), mvmoe_rt_kernels_avx2()};
    for (int i = 0; i < 3; i++)
        if (x86[i]) check_all(x86[i]), sets++;
#endif
#if defined(__aarch64__)
    const mvmoe_rt_kernels *arm[] = {mvmoe_rt_kernels_neon_dotprod(), mvmoe_rt_kernels_neon()};
    for (int i = 0; i < 2; i++)
        if (arm[i]) check_all(arm[i]), sets++;
#endif
    if (sets == 0) printf("skip: this CPU runs only the plain kernels\n");
    if (failures) {
        printf("%d failure(s)\n", failures);
        return 1;
    }
    printf("all kernel sets agree with plain (%d SIMD set(s))\n", sets);
    return 0;
}
