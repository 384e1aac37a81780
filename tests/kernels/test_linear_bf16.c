/* The opt-in bf16 products (src/kernels/linear_bf16.c): rounding to bf16, and the forward,
 * input-gradient and weight-gradient products against a double-precision reference computed
 * on the bf16-rounded operands. The AMX / AVX-512 BF16 kernels multiply bf16 values exactly
 * and sum in fp32, so the only error allowed is fp32 summation's: |err| <= K·2⁻²⁴·Σ|terms|
 * per element (the classic bound, K terms). A wrong layout or a missing rounding gives errors
 * of order 1 or 2⁻⁹·Σ|terms| and fails; test_unrounded_differs shows the bound is tight enough
 * to tell rounded from unrounded operands. On a CPU without bf16 kernels, checks only that
 * mvmoe_set_precision refuses with MVMOE_ERR_UNSUPPORTED. */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/kernels.h"
#include "mvmoe.h"

static float bf(float x) {
    uint16_t h;
    mvmoe_bf16_round(&h, &x, 1);
    return mvmoe_bf16_to_float(h);
}

static uint16_t bits16(float x) {
    uint16_t h;
    mvmoe_bf16_round(&h, &x, 1);
    return h;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static void test_rounding(void) {
    CHECK(bits16(1.0f) == 0x3f80, "1.0 -> %04x", bits16(1.0f));
    CHECK(bits16(-2.0f) == 0xc000, "-2.0 -> %04x", bits16(-2.0f));
    /* ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 */
    CHECK(bits16(from_bits(0x3f808000u)) == 0x3f80, "tie below even -> %04x", bits16(from_bits(0x3f808000u)));
    CHECK(bits16(from_bits(0x3f818000u)) == 0x3f82, "tie above odd -> %04x", bits16(from_bits(0x3f818000u)));
    CHECK(bits16(from_bits(0x3f808001u)) == 0x3f81, "just above a tie -> %04x", bits16(from_bits(0x3f808001u)));
    CHECK(bits16(from_bits(0x3f807fffu)) == 0x3f80, "just below a tie -> %04x", bits16(from_bits(0x3f807fffu)));
    CHECK(bits16(INFINITY) == 0x7f80 && bits16(-INFINITY) == 0xff80, "infinities");
    CHECK(bits16(from_bits(0x7f7fffffu)) == 0x7f80, "FLT_MAX rounds to +inf (nearest even)");
    const float nan = from_bits(0x7f800001u); /* a NaN whose payload sits in the low bits */
    CHECK(isnan(bf(nan)), "a NaN stays a NaN (%g)", (double)bf(nan));
    CHECK(bits16(0.0f) == 0 && bits16(-0.0f) == 0x8000, "signed zeros");
    /* denormal inputs flush to signed zero, as AVX-512 BF16's conversion does */
    CHECK(bits16(from_bits(0x00000001u)) == 0, "the smallest denormal -> +0");
    CHECK(bits16(from_bits(0x007fffffu)) == 0, "the largest denormal -> +0 (not rounded up to a normal)");
    CHECK(bits16(from_bits(0x807fffffu)) == 0x8000, "a negative denormal -> -0");
    CHECK(bits16(from_bits(0x00800000u)) == 0x0080, "the smallest normal stays");
    /* the fast path (the instruction, where the CPU has it) gives the plain loop's bits: random
     * values over a wide exponent range, every special value above, odd lengths for the tail */
    const uint32_t special[] = {0x7f800001u, 0xff800001u, 0x7fc00000u, 0x00000001u, 0x807fffffu, 0x007fffffu,
                                0x00800000u, 0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x7f800000u, 0x80000000u};
    const size_t n = 100003;
    float *x = kc_alloc(n);
    uint16_t *a = malloc(n * sizeof *a), *r = malloc(n * sizeof *r);
    if (!a || !r) exit(2);
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 70, 0);
    for (size_t i = 0; i < n; i++) x[i] = ldexpf(mvmoe_rng_normal(&rng), (int)(mvmoe_rng_uniform(&rng) * 300) - 150);
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) memcpy(&x[i * 997], &special[i], 4);
    mvmoe_bf16_round(a, x, n);
    mvmoe_bf16_round_ref(r, x, n);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += a[i] != r[i];
    CHECK(diff == 0, "fast and plain rounding differ in %zu of %zu values", diff, n);
    free(x), free(a), free(r);
}

/* max over elements of |got - want| / (K·2⁻²⁴·Σ|terms| + tiny): must be <= 1 */
static double bound_ratio(const float *got, const double *want, const double *absum, size_t n, int K) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)got[i] - want[i]) / (K * 0x1p-24 * absum[i] + 1e-30);
        if (!(r <= worst)) worst = r; /* NaN wins */
    }
    return worst;
}

static void round_all(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf(src[i]);
}

/* want[M,N] = base + Σ_k a[m,k]·b[k,n] with a(m,k) = A[m·sam + k·sak], b(k,n) = B[k·sbk + n·sbn],
 * in double; absum the same over |terms| (base included). */
static void ref_product(double *want, double *absum, const float *base, const float *A, size_t sam,
                        size_t sak, const float *B, size_t sbk, size_t sbn, int M, int N, int K) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = base ? base[(size_t)m * N + n] : 0, a = fabs(s);
            for (int k = 0; k < K; k++) {
                double t = (double)A[m * sam + k * sak] * B[k * sbk + n * sbn];
                s += t, a += fabs(t);
            }
            want[(size_t)m * N + n] = s, absum[(size_t)m * N + n] = a;
        }
}

static void test_products(void) {
    /* (M, K, N): 12x192's and 12x64's layers at a few row counts (one of 5 rows: a padded
     * block), a ragged shape, and weights below the size where bf16 pays (those must stay
     * fp32: checked against unrounded operands) */
    const int shapes[][3] = {{416, 192, 576}, {333, 768, 192}, {200, 64, 256}, {5, 64, 256},
                             {97, 72, 80}, {97, 40, 72}, {8, 16, 16}};
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 71, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        const int small = N * K < 64 * 64; /* weights this small stay fp32 (linear.c) */
        const size_t ni = (size_t)M * K, nw = (size_t)N * K, no = (size_t)M * N;
        float *in = kc_alloc(ni), *w = kc_alloc(nw), *b = kc_alloc(N), *dout = kc_alloc(no);
        float *inr = kc_alloc(ni), *wr = kc_alloc(nw), *doutr = kc_alloc(no);
        kc_fill_normal(in, ni, &rng, 1.0f);
        kc_fill_normal(w, nw, &rng, 0.1f);
        kc_fill_normal(b, N, &rng, 1.0f);
        kc_fill_normal(dout, no, &rng, 1.0f);
        /* what the kernels see: rounded operands, except below the size threshold */
        if (small) memcpy(inr, in, ni * 4), memcpy(wr, w, nw * 4), memcpy(doutr, dout, no * 4);
        else round_all(inr, in, ni), round_all(wr, w, nw), round_all(doutr, dout, no);
        const size_t big = no > ni ? (no > nw ? no : nw) : (ni > nw ? ni : nw);
        double *want = malloc(big * sizeof *want), *absum = malloc(big * sizeof *absum);
        float *o1 = kc_alloc(big), *o2 = kc_alloc(big), *wp = kc_alloc(mvmoe_linear_packed_size(N, K) + 1);
        float *base = kc_alloc(big);
        if (!want || !absum) exit(2);
        kc_fill_normal(base, big, &rng, 1.0f);
        double r;

        /* forward through the packed path: out = in·wᵀ + b (bias in every row) */
        CHECK(mvmoe_linear_pack(wp, w, N, K) == 0, "bf16 pack");
        float *brow = kc_alloc(no);
        for (int m = 0; m < M; m++) memcpy(brow + (size_t)m * N, b, N * 4);
        ref_product(want, absum, brow, inr, K, 1, wr, 1, K, M, N, K);
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            mvmoe_linear_forward(th == 1 ? o1 : o2, N, in, K, mvmoe_linear_w(w, wp), b, M, K, N);
        }
        r = bound_ratio(o1, want, absum, no, K);
        CHECK(r <= 1.0, "bf16 forward M=%d K=%d N=%d: error %.3g x the fp32 summation bound", M, K, N, r);
        CHECK(!memcmp(o1, o2, no * 4), "bf16 forward M=%d K=%d N=%d: 1 and 2 threads differ", M, K, N);
        /* row slices cut anywhere (the row pipeline's calls, inside a parallel region) */
        const int cut = M / 3 + 5 < M ? M / 3 + 5 : M / 2;
#pragma omp parallel for schedule(static) num_threads(2)
        for (int part = 0; part < 2; part++) {
            const int r0 = part ? cut : 0, r1 = part ? M : cut;
            mvmoe_linear_forward(o2 + (size_t)r0 * N, N, in + (size_t)r0 * K, K, mvmoe_linear_w(w, wp), b,
                                 r1 - r0, K, N);
        }
        CHECK(!memcmp(o1, o2, no * 4), "bf16 forward M=%d K=%d N=%d: row slices %d + %d differ", M, K, N, cut, M - cut);

        /* din = dout·w (overwrite) and din = base + dout·w (accumulate) */
        ref_product(want, absum, NULL, doutr, N, 1, wr, K, 1, M, K, N);
        for (int th = 1; th <= 2; th++) {
            float *o = th == 1 ? o1 : o2;
            memset(o, 0xff, ni * 4); /* NaNs: an overwrite must not read them */
            omp_set_num_threads(th);
            mvmoe_linear_backward(o, NULL, NULL, dout, in, w, M, K, N, MVMOE_GRAD_OVERWRITE);
        }
        r = bound_ratio(o1, want, absum, ni, N);
        CHECK(r <= 1.0, "bf16 din (overwrite) M=%d K=%d N=%d: error %.3g x the bound", M, K, N, r);
        CHECK(!memcmp(o1, o2, ni * 4), "bf16 din M=%d K=%d N=%d: 1 and 2 threads differ", M, K, N);
        ref_product(want, absum, base, doutr, N, 1, wr, K, 1, M, K, N);
        memcpy(o1, base, ni * 4);
        mvmoe_linear_backward(o1, NULL, NULL, dout, in, w, M, K, N, MVMOE_GRAD_ACCUMULATE);
        r = bound_ratio(o1, want, absum, ni, N);
        CHECK(r <= 1.0, "bf16 din (accumulate) M=%d K=%d N=%d: error %.3g x the bound", M, K, N, r);

        /* dw = base + doutᵀ·in, and db (fp32, as ever) */
        ref_product(want, absum, base, doutr, 1, N, inr, K, 1, N, K, M);
        /* with db, which the bf16 path sums in its rounding pass: the fp32 path's bits */
        float *db = kc_alloc(N), *db2 = kc_alloc(N), *dbf = kc_alloc(N), *dbr = kc_alloc(N);
        for (int th = 1; th <= 2; th++) {
            float *o = th == 1 ? o1 : o2, *d = th == 1 ? db : db2;
            memcpy(o, base, nw * 4);
            memcpy(d, base, N * 4);
            omp_set_num_threads(th);
            mvmoe_linear_backward(NULL, o, d, dout, in, w, M, K, N, MVMOE_GRAD_ACCUMULATE);
        }
        r = bound_ratio(o1, want, absum, nw, M);
        CHECK(r <= 1.0, "bf16 dw M=%d K=%d N=%d: error %.3g x the bound", M, K, N, r);
        CHECK(!memcmp(o1, o2, nw * 4), "bf16 dw M=%d K=%d N=%d: 1 and 2 threads differ", M, K, N);
        memcpy(dbf, base, N * 4);
        mvmoe_linear_backward(NULL, NULL, dbf, dout, in, w, M, K, N, MVMOE_GRAD_ACCUMULATE); /* no product: the fp32 path */
        memcpy(dbr, base, N * 4);
        mvmoe_linear_backward_ref(NULL, NULL, dbr, dout, in, w, M, K, N);
        KC_CHECK_CLOSE("bf16 mode db", db, dbr, N);
        CHECK(!memcmp(db, dbf, N * 4) && !memcmp(db2, dbf, N * 4),
              "bf16 mode db M=%d N=%d: not the fp32 path's bits (1 or 2 threads)", M, N);
        free(db2), free(dbf);

        free(in), free(w), free(b), free(dout), free(inr), free(wr), free(doutr), free(want), free(absum);
        free(o1), free(o2), free(wp), free(base), free(brow), free(db), free(dbr);
    }
    omp_set_num_threads(1);
}

/* The bound is tight enough to tell: the same forward against unrounded operands fails it. */
static void test_unrounded_differs(void) {
    const int M = 256, K = 192, N = 192;
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, 72, 0);
    float *in = kc_alloc((size_t)M * K), *w = kc_alloc((size_t)N * K), *o = kc_alloc((size_t)M * N);
    float *wp = kc_alloc(mvmoe_linear_packed_size(N, K) + 1);
    double *want = malloc((size_t)M * N * sizeof *want), *absum = malloc((size_t)M * N * sizeof *absum);
    if (!want || !absum) exit(2);
    kc_fill_normal(in, (size_t)M * K, &rng, 1.0f);
    kc_fill_normal(w, (size_t)N * K, &rng, 0.1f);
    mvmoe_linear_pack(wp, w, N, K);
    mvmoe_linear_forward(o, N, in, K, mvmoe_linear_w(w, wp), NULL, M, K, N);
    ref_product(want, absum, NULL, in, K, 1, w, 1, K, M, N, K);
    const double r = bound_ratio(o, want, absum, (size_t)M * N, K);
    CHECK(r > 1.0, "bf16 forward within the fp32 bound of unrounded operands (%.3g): was it fp32?", r);
    printf("  bf16 forward vs unrounded operands: %.0f x the fp32 summation bound\n", r);
    free(in), free(w), free(o), free(wp), free(want), free(absum);
}

int main(void) {
    omp_set_num_threads(1);
    test_rounding();
    if (mvmoe_set_precision(MVMOE_PRECISION_BF16) != MVMOE_OK) {
        CHECK(mvmoe_set_precision(MVMOE_PRECISION_BF16) == MVMOE_ERR_UNSUPPORTED,
              "refused for another reason: %s", mvmoe_last_error());
        CHECK(mvmoe_get_precision() == MVMOE_PRECISION_FP32, "a refused bf16 mode left fp32 on");
        printf("  this CPU has no bf16 kernel (%s): products not tested\n", mvmoe_last_error());
        TEST_MAIN_END("test_linear_bf16");
    }
    CHECK(mvmoe_get_precision() == MVMOE_PRECISION_BF16, "bf16 mode on");
    test_products();
    test_unrounded_differs();
    CHECK(mvmoe_set_precision(MVMOE_PRECISION_FP32) == MVMOE_OK && mvmoe_get_precision() == MVMOE_PRECISION_FP32,
          "back to fp32");
    CHECK(mvmoe_set_precision((mvmoe_precision)7) == MVMOE_ERR_INVALID, "an unknown precision is refused");
    TEST_MAIN_END("test_linear_bf16");
}
