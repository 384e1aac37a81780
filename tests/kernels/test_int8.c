/* The int8 linear backend (src/kernels/linear_int8.c) against its plain-C reference
 * mvmoe_linear_int8_forward_ref, and against the fp32 product.
 *
 *  - quantization rules on hand-made rows (scale max|w|/127, round to nearest even, 0 rows);
 *  - the dispatcher's int8 path (AVX-512 VNNI where the CPU has it, and the plain-C loop
 *    forced with mvmoe_isa_force(256)) equals the reference BIT FOR BIT: both compute exact
 *    int32 sums and share the fp32 epilogue, so any difference is a bug (a wrong +128
 *    correction, padding, or layout), on shapes with K not a multiple of 64, 1 and 2 threads;
 *  - the int8 product is within the quantization error of the fp32 product, per element:
 *    |x·w - x̂·ŵ| <= Σ_k (|x_k|·s_w/2 + |ŵ_k|·s_a/2) (each operand off by at most half its
 *    step), plus fp32 rounding; and the whole-output relative error is small (< 4 %: the rows carry 8x outliers every 7th
 *    element, which coarsen the activation step as real activations do; ~2.5 % at K 1000);
 *  - a non-finite input row gives NaN outputs, as fp32 would. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/kernels.h"
#include "mvmoe.h"

static void test_quantize_rules(void) {
    const float w[6] = {1.0f, -0.5f, 0.25f, 0.0f, 0.0f, 0.0f};
    int8_t q[6];
    float s[2];
    mvmoe_int8_quantize_rows(q, s, w, 2, 3);
    CHECK(s[0] == 1.0f / 127.0f, "scale %g, want 1/127", (double)s[0]);
    /* -0.5·127 = -63.5 -> -64 (even), 0.25·127 = 31.75 -> 32 */
    CHECK(q[0] == 127 && q[1] == -64 && q[2] == 32, "q = %d %d %d, want 127 -64 32", q[0], q[1], q[2]);
    CHECK(s[1] == 0.0f && q[3] == 0 && q[4] == 0 && q[5] == 0, "an all-zero row: scale %g", (double)s[1]);
    const float bad[2] = {1.0f, NAN};
    mvmoe_int8_quantize_rows(q, s, bad, 1, 2);
    CHECK(isnan(s[0]), "a row with a NaN gets a NaN scale (callers refuse it), got %g", (double)s[0]);
}

/* The checkpoint round trip: quantize, dequantize (w = q·s, as the loader does), quantize
 * again: the same int8 values and the same scales, bit for bit, over rows of many
 * magnitudes (else eval --precision int8 of a quantized file would not run what it stores). */
static void test_round_trip(void) {
    enum { N = 4000, K = 37 };
    mvmoe_rng r;
    mvmoe_rng_init(&r, 11, 2);
    float *w = kc_alloc((size_t)N * K), *back = kc_alloc((size_t)N * K), s1[N], s2[N];
    static int8_t q1[N * K], q2[N * K];
    for (int j = 0; j < N; j++) {
        const float mag = powf(2.0f, 12.0f * mvmoe_rng_uniform(&r) - 10.0f);
        kc_fill_normal(w + (size_t)j * K, K, &r, mag);
    }
    mvmoe_int8_quantize_rows(q1, s1, w, N, K);
    for (size_t i = 0; i < (size_t)N * K; i++) back[i] = (float)q1[i] * s1[i / K];
    mvmoe_int8_quantize_rows(q2, s2, back, N, K);
    int bad_q = 0, bad_s = 0;
    for (size_t i = 0; i < (size_t)N * K; i++) bad_q += q1[i] != q2[i];
    for (int j = 0; j < N; j++) bad_s += s1[j] != s2[j];
    CHECK(bad_q == 0 && bad_s == 0, "round trip: %d int8 values and %d scales changed", bad_q, bad_s);
    free(w), free(back);
}

/* One shape: the dispatcher (fast path) vs the reference, bit for bit; and the error bound. */
static void check_shape(int M, int K, int N, int with_bias, mvmoe_rng *r) {
    float *x = kc_alloc((size_t)M * K), *w = kc_alloc((size_t)N * K), *b = kc_alloc((size_t)N);
    kc_fill_normal(x, (size_t)M * K, r, 1.0f);
    kc_fill_normal(w, (size_t)N * K, r, 0.05f);
    kc_fill_normal(b, (size_t)N, r, 0.1f);
    for (int k = 0; k < K; k += 7) x[k] *= 8.0f; /* outliers, as in real activations */
    int8_t *q = malloc((size_t)N * K);
    float *sw = kc_alloc((size_t)N);
    if (!q) exit(2);
    mvmoe_int8_quantize_rows(q, sw, w, N, K);
    float *ref = kc_alloc((size_t)M * N), *fast = kc_alloc((size_t)M * N), *f32 = kc_alloc((size_t)M * N);
    const float *bias = with_bias ? b : NULL;
    mvmoe_linear_int8_forward_ref(ref, x, q, sw, bias, M, K, N);

    CHECK(mvmoe_set_precision(MVMOE_PRECISION_INT8) == MVMOE_OK, "int8 mode: %s", mvmoe_last_error());
    const size_t nf = mvmoe_linear_packed_size(N, K);
    CHECK(nf > 0, "int8 packed size for %dx%d", N, K);
    float *packed = kc_alloc(nf);
    CHECK(mvmoe_linear_pack(packed, w, N, K) == 0, "int8 pack %dx%d", N, K);
    for (int isa = 0; isa < 2; isa++) {
        if (isa == 0 && !mvmoe_isa_vnni()) continue; /* no VNNI here: the plain loop below only */
        if (isa == 1) mvmoe_isa_force(256);           /* the plain-C loop */
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            memset(fast, 0xff, sizeof(float) * (size_t)M * N);
            mvmoe_linear_forward(fast, N, x, K, mvmoe_linear_w(w, packed), bias, M, K, N);
            CHECK(memcmp(fast, ref, sizeof(float) * (size_t)M * N) == 0,
                  "%s path, %d threads, M %d K %d N %d bias %d: not the reference's bits (first: %g vs %g)",
                  isa ? "plain-C" : "VNNI", threads, M, K, N, with_bias, (double)fast[0], (double)ref[0]);
        }
        mvmoe_isa_force(0);
    }
    omp_set_num_threads(1);
    CHECK(mvmoe_set_precision(MVMOE_PRECISION_FP32) == MVMOE_OK, "back to fp32");

    /* the quantization error bound, per element, and overall */
    mvmoe_linear_forward_ref(f32, x, w, bias, M, K, N);
    int over = 0;
    for (int i = 0; i < M; i++) {
        float amax = 0;
        for (int k = 0; k < K; k++) amax = fmaxf(amax, fabsf(x[(size_t)i * K + k]));
        const double sa = amax / 127.0;
        for (int j = 0; j < N; j++) {
            double bound = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                const double xk = fabs(x[(size_t)i * K + k]), wq = fabs((double)q[(size_t)j * K + k] * sw[j]);
                bound += xk * sw[j] / 2 + wq * sa / 2;
                mag += xk * fabs(w[(size_t)j * K + k]);
            }
            bound += 1e-5 * mag + 1e-6; /* fp32 rounding of the result and of the fp32 product */
            const double e = fabs((double)ref[(size_t)i * N + j] - f32[(size_t)i * N + j]);
            if (e > bound && over++ < 3)
                printf("  M %d K %d N %d (%d,%d): |int8 - fp32| %g > bound %g\n", M, K, N, i, j, e, bound);
        }
    }
    CHECK(over == 0, "%d outputs beyond the quantization error bound", over);
    double rel = kc_rel_norm_err(ref, f32, (size_t)M * N);
    CHECK(rel < 0.04, "M %d K %d N %d: int8 vs fp32 relative error %g >= 4%%", M, K, N, rel);
    free(x), free(w), free(b), free(q), free(sw), free(ref), free(fast), free(f32), free(packed);
}

static void test_products(void) {
    mvmoe_rng r;
    mvmoe_rng_init(&r, 7, 1);
    const int shapes[][3] = {{1, 16, 64}, {50, 16, 64}, {50, 64, 192}, {37, 100, 3}, {13, 256, 64},
                             {64, 64, 256}, {5, 1000, 17}, {2, 1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int bias = 0; bias < 2; bias++) check_shape(shapes[s][0], shapes[s][1], shapes[s][2], bias, &r);
}

static void test_nonfinite_row(void) {
    const int M = 2, K = 70, N = 5;
    float x[M * K], w[N * K], out[M * N];
    for (int i = 0; i < M * K; i++) x[i] = (float)(i % 11) - 5.0f;
    for (int i = 0; i < N * K; i++) w[i] = (float)(i % 5) * 0.01f;
    x[3] = INFINITY; /* row 0 only */
    CHECK(mvmoe_set_precision(MVMOE_PRECISION_INT8) == MVMOE_OK, "int8 mode");
    float *packed = kc_alloc(mvmoe_linear_packed_size(N, K));
    CHECK(mvmoe_linear_pack(packed, w, N, K) == 0, "pack");
    mvmoe_linear_forward(out, N, x, K, mvmoe_linear_w(w, packed), NULL, M, K, N);
    for (int j = 0; j < N; j++) {
        CHECK(isnan(out[j]), "row 0 holds an infinity: output %d is %g, want NaN", j, (double)out[j]);
        CHECK(isfinite(out[N + j]), "row 1 is finite: output %d is %g", j, (double)out[N + j]);
    }
    free(packed);
    CHECK(mvmoe_set_precision(MVMOE_PRECISION_FP32) == MVMOE_OK, "back to fp32");
}

int main(void) {
    omp_set_num_threads(1);
    CHECK(strcmp(mvmoe_precision_name(MVMOE_PRECISION_INT8), "int8") == 0, "name of int8");
    printf("  int8 fast path here: %s\n", mvmoe_isa_vnni() ? "AVX-512 VNNI and plain C" : "plain C only (no VNNI)");
    test_quantize_rules();
    test_round_trip();
    test_products();
    test_nonfinite_row();
    TEST_MAIN_END("test_int8");
}
