/* The arm64 kernels of the runtime (src/runtime/rt_kernels_neon.c) against the plain-C
 * reference, over awkward shapes: M, N and K of 1, K not a multiple of 4, 8 or 16, row strides
 * wider than K and N, large K, and int8 operands at the extremes of -127…127.
 *   - int8: every implementation returns exactly the reference's int32 sums;
 *   - fp32 on integer-valued data (every product and partial sum exact in float, so any order
 *     of summation gives the same bits): exactly the reference, which catches any element
 *     read twice, skipped or misplaced;
 *   - fp32 on random data: within rounding of a double-precision sum;
 *   - nothing is written outside the M x N output (the stride's gap keeps its sentinel).
 * Usage: rt_neon_check [--expect-dotprod yes|no]: with it, fails unless the CPU's dot-product
 * extension is found (or not) as told, so that tests/runtime/test_aarch64.sh knows both int8
 * paths ran (it runs this under qemu once with a CPU model that has the extension and once with
 * one that has not). Not named test_*.c: the native suite must not build and run it, where it
 * could only skip (an x86 build exits 77). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt_kernels.h"
#include "test_util.h"
#include "runtime/rt_ops_check.h"

#if defined(__aarch64__)

/* The dispatcher (src/runtime/rt_kernels.c) when it is linked in: weak, so this test also
 * links against the kernels alone. */
extern const mvmoe_rt_kernels *mvmoe_rt_kernels_get(void) __attribute__((weak));

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static int rand_int(int lo, int hi) { return lo + (int)(next_u32() % (uint32_t)(hi - lo + 1)); }
static float rand_float(void) { return (float)((next_u32() >> 8) * (2.0 / 16777216.0) - 1.0); }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "rt_neon_check: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

#define SENTINEL (-12345.0f)
#define SENTINEL_I (-1234567)

/* fp32: integer-valued (exact) when exact, else random; compares impl with plain */
static void check_f32(const mvmoe_rt_kernels *impl, int M, int K, int N, int exact, int bias) {
    const mvmoe_rt_kernels *ref = mvmoe_rt_kernels_plain();
    int lda = K + 3, ldo = N + 2; /* strides wider than the rows: the kernels must honour them */
    float *a = xmalloc(sizeof(float) * (size_t)M * lda), *w = xmalloc(sizeof(float) * (size_t)N * K);
    float *b = xmalloc(sizeof(float) * (size_t)N);
    float *o1 = xmalloc(sizeof(float) * (size_t)M * ldo), *o2 = xmalloc(sizeof(float) * (size_t)M * ldo);
    for (long i = 0; i < (long)M * lda; i++) a[i] = exact ? (float)rand_int(-8, 8) : rand_float();
    for (long i = 0; i < (long)N * K; i++) w[i] = exact ? (float)rand_int(-8, 8) : rand_float();
    for (int i = 0; i < N; i++) b[i] = exact ? (float)rand_int(-100, 100) : rand_float();
    for (long i = 0; i < (long)M * ldo; i++) o1[i] = o2[i] = SENTINEL;
    ref->linear_f32(o1, ldo, a, lda, w, bias ? b : NULL, M, K, N);
    impl->linear_f32(o2, ldo, a, lda, w, bias ? b : NULL, M, K, N);
    int bad = 0, gap = 0;
    double worst = 0;
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < ldo; n++) {
            float got = o2[(long)m * ldo + n];
            if (n >= N) {
                gap += got != SENTINEL;
                continue;
            }
            if (exact) {
                bad += got != o1[(long)m * ldo + n];
                continue;
            }
            /* within rounding: |error| of a K-term float sum, against the double sum, scaled
             * by the sum of |terms| (a generous sqrt(K) growth of the unit roundoff) */
            double s = bias ? b[n] : 0, mag = bias ? fabs(b[n]) : 0;
            for (int k = 0; k < K; k++) {
                double t = (double)a[(long)m * lda + k] * w[(long)n * K + k];
                s += t, mag += fabs(t);
            }
            double err = fabs(got - s) / (mag > 0 ? mag : 1);
            if (err > worst) worst = err;
            bad += !(err <= 4.0 * 5.96e-8 * (sqrt((double)K) + 2));
        }
    }
    CHECK(bad == 0, "%s linear_f32 %s M=%d K=%d N=%d bias=%d: %d outputs differ (worst rel %.3g)",
          impl->name, exact ? "integer data" : "random data", M, K, N, bias, bad, worst);
    CHECK(gap == 0, "%s linear_f32 M=%d K=%d N=%d: %d writes outside the output", impl->name, M, K,
          N, gap);
    free(a), free(w), free(b), free(o1), free(o2);
}

/* int8: kind 0 random, 1 every operand +127 (the largest sums), 2 a = ±127 alternating against
 * w = -127 (large sums of both signs), 3 random extremes ±127 */
static void check_i8(const mvmoe_rt_kernels *impl, int M, int K, int N, int kind) {
    const mvmoe_rt_kernels *ref = mvmoe_rt_kernels_plain();
    int8_t *qa = xmalloc((size_t)M * K), *qw = xmalloc((size_t)N * K);
    int32_t *c1 = xmalloc(sizeof(int32_t) * ((size_t)M * N + 1)),
            *c2 = xmalloc(sizeof(int32_t) * ((size_t)M * N + 1));
    for (long i = 0; i < (long)M * K; i++)
        qa[i] = (int8_t)(kind == 0   ? rand_int(-127, 127)
                         : kind == 1 ? 127
                         : kind == 2 ? ((i / 3) % 2 ? 127 : -127)
                                     : (next_u32() & 1 ? 127 : -127));
    for (long i = 0; i < (long)N * K; i++)
        qw[i] = (int8_t)(kind == 0   ? rand_int(-127, 127)
                         : kind == 1 ? 127
                         : kind == 2 ? -127
                                     : (next_u32() & 1 ? 127 : -127));
    for (long i = 0; i <= (long)M * N; i++) c1[i] = c2[i] = SENTINEL_I;
    ref->dot_i8(c1, qa, qw, M, K, N);
    impl->dot_i8(c2, qa, qw, M, K, N);
    int bad = 0;
    for (long i = 0; i < (long)M * N; i++) bad += c1[i] != c2[i];
    CHECK(bad == 0, "%s dot_i8 kind %d M=%d K=%d N=%d: %d of %d sums differ (first: %d vs %d)",
          impl->name, kind, M, K, N, bad, M * N, c2[0], c1[0]);
    CHECK(c2[(long)M * N] == SENTINEL_I, "%s dot_i8 M=%d K=%d N=%d: wrote past the output",
          impl->name, M, K, N);
    if (kind == 1) /* the reference itself: K·127² exactly */
        CHECK(c1[0] == K * 127 * 127, "plain dot_i8 K=%d: %d, want %d", K, c1[0], K * 127 * 127);
    free(qa), free(qw), free(c1), free(c2);
}

static void check_impl(const mvmoe_rt_kernels *impl) {
    static const int Ks[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 48, 63, 64, 65, 100, 192, 771};
    static const int MN[][2] = {{1, 1}, {1, 4}, {4, 1}, {1, 7}, {3, 5}, {4, 4}, {5, 9}, {8, 8}, {9, 13}};
    for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
        for (size_t s = 0; s < sizeof MN / sizeof *MN; s++) {
            int M = MN[s][0], N = MN[s][1], K = Ks[ki];
            check_f32(impl, M, K, N, 1, (int)(s % 2));
            check_f32(impl, M, K, N, 0, (int)((s + 1) % 2));
            check_i8(impl, M, K, N, 0);
            check_i8(impl, M, K, N, 3);
        }
    /* large K: a ViT-Tiny MLP's 4·192 and beyond, and the int32 limit of rt_kernels.h */
    check_f32(impl, 5, 3077, 6, 1, 1);
    check_f32(impl, 5, 3077, 6, 0, 1);
    check_i8(impl, 5, 3077, 6, 0);
    for (int kind = 1; kind <= 3; kind++) check_i8(impl, 5, 65535, 5, kind);
    check_i8(impl, 1, 65999, 1, 1);
    /* layernorm, gelu, attention, quant_rows, dequant: the plain set's bits */
    CHECK(rt_ops_check(impl) == 0, "%s: the operations differ from the plain set (above)", impl->name);
}

int main(int argc, char **argv) {
    const char *expect = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--expect-dotprod") && i + 1 < argc &&
            (!strcmp(argv[i + 1], "yes") || !strcmp(argv[i + 1], "no")))
            expect = argv[++i];
        else {
            fprintf(stderr, "usage: rt_neon_check [--expect-dotprod yes|no]\n");
            return 2;
        }
    }
    const mvmoe_rt_kernels *neon = mvmoe_rt_kernels_neon(), *dp = mvmoe_rt_kernels_neon_dotprod();
    printf("rt_neon_check: neon %s, neon-dotprod %s\n", neon ? "available" : "absent",
           dp ? "available" : "absent (this CPU has no dot-product extension)");
    CHECK(neon != NULL, "NEON is part of every arm64 CPU: mvmoe_rt_kernels_neon() returned NULL");
    if (expect)
        CHECK((dp != NULL) == (expect[0] == 'y'),
              "--expect-dotprod %s but mvmoe_rt_kernels_neon_dotprod() is %s", expect,
              dp ? "available" : "NULL");
    if (neon) check_impl(neon);
    if (dp) check_impl(dp);
    if (mvmoe_rt_kernels_get) { /* the dispatcher's choice on this CPU */
        const char *want = dp ? "neon-dotprod" : neon ? "neon" : "plain";
        const char *isa = getenv("MVMOE_ISA");
        if (isa && !strcmp(isa, "plain")) want = "plain";
        if (isa && !strcmp(isa, "neon") && neon) want = "neon";
        const mvmoe_rt_kernels *got = mvmoe_rt_kernels_get();
        printf("rt_neon_check: mvmoe_rt_kernels_get() chose %s\n", got ? got->name : "(null)");
        CHECK(got && !strcmp(got->name, want), "the dispatcher chose %s, want %s",
              got ? got->name : "(null)", want);
    } else {
        printf("rt_neon_check: the dispatcher (rt_kernels.c) is not linked in: not checked\n");
    }
    TEST_MAIN_END("rt_neon_check");
}

#else

int main(void) {
    (void)tu_passed, (void)tu_failed;
    TEST_SKIP("rt_neon_check", "not arm64 (it runs under qemu-aarch64: tests/runtime/test_aarch64.sh)");
}

#endif
