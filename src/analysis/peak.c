/* Machine peaks that benchmarks divide by: FP32 FMA throughput (independent FMA chains, the
 * widest vector ISA the CPU runs) and STREAM-style triad bandwidth (McCalpin's STREAM
 * convention: 3 arrays x 4 bytes per element counted, write-allocate traffic not counted). */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"

/* acc = acc·a + b converges (|a| < 1) so no chain overflows or goes subnormal however long it
 * runs; the chains are independent so the loop is bound by FMA throughput, not latency
 * (4-cycle latency x 2 ports needs >= 8 chains; more hides scheduling slack). The chains are
 * spelled out as separate variables: written as an array, gcc keeps them in memory. */
#define AVX2_CHAINS 12
#define AVX512_CHAINS 24
#define FMA_BLOCK 4096 /* iterations between clock reads (~50 µs) */

#define X12(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)
#define X24(M) X12(M) M(12) M(13) M(14) M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23)

static float fma_avx2(uint64_t iters, float seed) {
    const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-4f);
#define INIT(j) __m256 c##j = _mm256_set1_ps(seed + 0.01f * (float)(j));
#define STEP(j) c##j = _mm256_fmadd_ps(c##j, a, b);
#define SUM(j) s = _mm256_add_ps(s, c##j);
    X12(INIT)
    for (uint64_t i = 0; i < iters; i++) {
        X12(STEP)
    }
    __m256 s = _mm256_setzero_ps();
    X12(SUM)
#undef INIT
#undef STEP
#undef SUM
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}

__attribute__((target("avx512f"))) static float fma_avx512(uint64_t iters, float seed) {
    const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-4f);
#define INIT(j) __m512 c##j = _mm512_set1_ps(seed + 0.01f * (float)(j));
#define STEP(j) c##j = _mm512_fmadd_ps(c##j, a, b);
#define SUM(j) s = _mm512_add_ps(s, c##j);
    X24(INIT)
    for (uint64_t i = 0; i < iters; i++) {
        X24(STEP)
    }
    __m512 s = _mm512_setzero_ps();
    X24(SUM)
#undef INIT
#undef STEP
#undef SUM
    return _mm512_reduce_add_ps(s);
}

mvmoe_status mvmoe_bench_peak_gflops(int threads, double seconds, double *gflops,
                                     const char **isa) {
    if (threads < 1 || threads > 4096)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "peak: threads %d not in 1..4096", threads);
    if (!(seconds > 0 && seconds <= 600))
        MVMOE_FAIL(MVMOE_ERR_INVALID, "peak: seconds %g not in (0, 600]", seconds);
    __builtin_cpu_init();
    const int wide = __builtin_cpu_supports("avx512f");
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED, "peak: this CPU has neither AVX-512F nor AVX2+FMA");
    /* flops per iteration: chains x lanes x 2 (one FMA = one multiply-add = 2 FLOPs) */
    const double per_iter = wide ? AVX512_CHAINS * 16 * 2 : AVX2_CHAINS * 8 * 2;
    volatile float sink = 0;
    double total_iters = 0, t0 = 0, t1 = 0, sum = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total_iters, sum)
    {
        float seed = 1.0f + 0.001f * (float)omp_get_thread_num(), s = 0;
        (wide ? fma_avx512 : fma_avx2)(FMA_BLOCK, seed); /* wake the vector units */
#pragma omp barrier
#pragma omp master
        t0 = mvmoe_clock_seconds();
        double start = mvmoe_clock_seconds();
        uint64_t n = 0;
        do {
            s += (wide ? fma_avx512 : fma_avx2)(FMA_BLOCK, seed);
            n += FMA_BLOCK;
        } while (mvmoe_clock_seconds() - start < seconds);
        total_iters += (double)n;
        sum += s;
#pragma omp barrier
#pragma omp master
        t1 = mvmoe_clock_seconds();
    }
    sink = (float)sum; /* the chains' results are used: nothing can be optimized away */
    (void)sink;
    *gflops = total_iters * per_iter / (t1 - t0) / 1e9;
    if (isa) *isa = wide ? "avx512f" : "avx2";
    return MVMOE_OK;
}

mvmoe_status mvmoe_bench_triad_gbs(int threads, size_t bytes_per_array, int reps, double *gbs) {
    if (threads < 1 || threads > 4096)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "triad: threads %d not in 1..4096", threads);
    if (reps < 1) MVMOE_FAIL(MVMOE_ERR_INVALID, "triad: reps %d must be >= 1", reps);
    size_t n = bytes_per_array / sizeof(float);
    if (n < 1024) MVMOE_FAIL(MVMOE_ERR_INVALID, "triad: arrays of %zu bytes are too small", bytes_per_array);
    float *a = mvmoe_aligned_alloc_checked(n * sizeof(float), "triad array a", __FILE__, __LINE__);
    float *b = a ? mvmoe_aligned_alloc_checked(n * sizeof(float), "triad array b", __FILE__, __LINE__) : NULL;
    float *c = b ? mvmoe_aligned_alloc_checked(n * sizeof(float), "triad array c", __FILE__, __LINE__) : NULL;
    if (!c) {
        free(a);
        free(b);
        return MVMOE_ERR_NOMEM;
    }
    const ptrdiff_t nn = (ptrdiff_t)n;
    /* first touch by the same static schedule as the timed loop (pages local to their thread) */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (ptrdiff_t i = 0; i < nn; i++) {
        a[i] = 0.0f;
        b[i] = 1.0f;
        c[i] = 2.0f;
    }
    const float s = 3.0f;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) { /* the first pass is a warm-up */
        double t0 = mvmoe_clock_seconds();
#pragma omp parallel for simd schedule(static) num_threads(threads)
        for (ptrdiff_t i = 0; i < nn; i++) a[i] = b[i] + s * c[i];
        double t = mvmoe_clock_seconds() - t0;
        if (r > 0 && t < best) best = t;
    }
    volatile float check = a[n / 2];
    (void)check;
    free(a);
    free(b);
    free(c);
    *gbs = 3.0 * (double)n * sizeof(float) / best / 1e9;
    return MVMOE_OK;
}
