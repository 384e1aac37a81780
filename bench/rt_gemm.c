/* Micro-benchmark of the runtime's x86 matmul kernels (src/runtime/rt_kernels.h) on the
 * model's shapes: a base revision's kernels ("old", built by bench/rt_gemm.sh from git with
 * their entry points renamed old_*) against this tree's ("new"), measured interleaved in one
 * process (round robin, best of the rounds), so a busy machine slows both alike.
 * Prints per shape and set: microseconds per call (old, new) and old/new. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/rt_kernels.h"

const mvmoe_rt_kernels *old_rt_kernels_avx512(void);
const mvmoe_rt_kernels *old_rt_kernels_avx2(void);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    float *a, *w, *b, *out;
    int8_t *qa, *qw;
    int32_t *acc;
    int M, K, N;
} problem;

/* seconds per call of one kernel, over reps calls */
static double run(const mvmoe_rt_kernels *k, int i8, const problem *p, int reps) {
    const double t0 = now();
    for (int r = 0; r < reps; r++) {
        if (i8)
            k->dot_i8(p->acc, p->qa, p->qw, p->M, p->K, p->N);
        else
            k->linear_f32(p->out, p->N, p->a, p->K, p->w, p->b, p->M, p->K, p->N);
    }
    return (now() - t0) / reps;
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 ? atoi(argv[1]) : 7;
    static const int Ms[] = {1, 50, 65, 197};
    static const int KN[][2] = {{64, 192}, {64, 64}, {64, 256}, {256, 64}, {192, 576}, {192, 192}, {192, 768}, {768, 192}};
    const mvmoe_rt_kernels *sets[2][2] = {{old_rt_kernels_avx512(), mvmoe_rt_kernels_avx512()},
                                          {old_rt_kernels_avx2(), mvmoe_rt_kernels_avx2()}};
    printf("%-6s %-12s %4s %4s %4s %10s %10s %8s %8s\n", "kind", "set", "M", "K", "N", "old_us", "new_us", "old/new",
           "new_GF/s");
    for (int s = 0; s < 2; s++) {
        if (!sets[s][0] || !sets[s][1]) continue;
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
            for (size_t j = 0; j < sizeof KN / sizeof *KN; j++) {
                problem p = {.M = Ms[mi], .K = KN[j][0], .N = KN[j][1]};
                const size_t MK = (size_t)p.M * p.K, NK = (size_t)p.N * p.K, MN = (size_t)p.M * p.N;
                p.a = malloc(MK * 4), p.w = malloc(NK * 4), p.b = malloc((size_t)p.N * 4), p.out = malloc(MN * 4);
                p.qa = malloc(MK), p.qw = malloc(NK), p.acc = malloc(MN * 4);
                if (!p.a || !p.w || !p.b || !p.out || !p.qa || !p.qw || !p.acc) {
                    fprintf(stderr, "rt_gemm: out of memory\n");
                    return 1;
                }
                for (size_t i = 0; i < MK; i++) p.a[i] = (float)(i % 7) - 3, p.qa[i] = (int8_t)(i % 255 - 127);
                for (size_t i = 0; i < NK; i++) p.w[i] = (float)(i % 5) - 2, p.qw[i] = (int8_t)(i % 253 - 126);
                for (int i = 0; i < p.N; i++) p.b[i] = 1;
                const double flop = 2.0 * p.M * p.K * p.N;
                const int reps = (int)(2e6 / flop * 100) + 1; /* ~ a millisecond at 100 GFLOP/s */
                for (int i8 = 0; i8 < 2; i8++) {
                    double best[2] = {1e9, 1e9};
                    for (int r = 0; r < rounds; r++)
                        for (int v = 0; v < 2; v++) {
                            const double t = run(sets[s][v], i8, &p, reps);
                            if (t < best[v]) best[v] = t;
                        }
                    printf("%-6s %-12s %4d %4d %4d %10.2f %10.2f %8.2f %8.1f\n", i8 ? "int8" : "fp32", sets[s][1]->name,
                           p.M, p.K, p.N, best[0] * 1e6, best[1] * 1e6, best[0] / best[1], flop / best[1] * 1e-9);
                }
                free(p.a), free(p.w), free(p.b), free(p.out), free(p.qa), free(p.qw), free(p.acc);
            }
    }
    return 0;
}
