/* xnnpack_fc: XNNPACK's fully-connected operators against the runtime's kernels
 * (src/runtime/rt_kernels.h, rt_ops.h) on the linear layers of our models, y = x·Wᵀ + b with
 * W [N, K]: the measurement docs/EDGE.md "XNNPACK measurement" records, taken before
 * hand-writing more kernels.
 *
 *   build/bench/xnnpack_fc [--threads 1,2] [--samples 31] [--min-us 200] [--csv]
 *
 * Built by `make bench-xnnpack` only (Debian's libxnnpack-dev and libpthreadpool-dev): a
 * bench-only dependency, never linked into the runtime, the library or the tests.
 *
 * What is compared (XNNPACK as Debian 12 ships it, git 2022-02-16, has no int8 operator with
 * run-time activation quantization, so its int8 rows are static quantization; EDGE.md):
 *   xnn-f32      xnn_fully_connected_nc_f32 (weights packed at create)
 *   ours-f32     the runtime's linear_f32 (weights read in place, [N, K])
 *   xnn-qc8      xnn_convolution2d_nhwc_qc8 as a 1×1 convolution: int8 weights with a scale
 *                per output channel (our weights and scales), int8 activations with one
 *                static scale, int8 outputs requantized: the int8 operator alone
 *   xnn-qc8+cvt  the same with its fp32 edges, XNNPACK's convert f32→qs8 before and
 *                qs8→f32 after, as our graph needs (LayerNorm and GELU are fp32)
 *   xnn-qs8+cvt  xnn_fully_connected_nc_qs8 (one weight scale per tensor) with the converts
 *   ours-i8      rt_linear_forward on int8 weights: per-token scale and quantization, the
 *                exact int32 sums (dot_i8), dequantization + bias: the whole int8 linear
 *   ours-dot     dot_i8 alone on already quantized activations
 * The static scales of the XNNPACK int8 rows are calibrated on this very input and output
 * (their best case) and their cost of finding a scale is not counted; ours finds each
 * token's scale at run time and that is counted.
 * Threads: XNNPACK with no pool at 1 thread and a pthreadpool of T otherwise; ours with an
 * OpenMP team of T, each thread a block of rows (the runtime itself runs one image per
 * thread; this is what threading one product would cost).
 * Each time is the median over --samples samples of one call, each sample a loop of calls
 * lasting at least --min-us, after a warm-up; the implementations' samples take turns. Outputs are checked against a double-precision
 * reference after timing: fp32 within 1e-4 of the largest output, int8 within 5 % relative
 * L2 error; exit status 1 if any is not. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthreadpool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xnnpack.h>

#include "runtime/rt_kernels.h"
#include "runtime/rt_ops.h"

#define MAX_THREADS 64
#define MAX_SETTINGS 8
#define F32_TOL 1e-4
#define I8_TOL 0.05

static const char USAGE[] =
    "usage: xnnpack_fc [--threads N,N,...] [--samples S] [--min-us U] [--csv]\n"
    "  --threads  thread counts to measure at [1,2]\n"
    "  --samples  timed samples per operator, the median is reported [31]\n"
    "  --min-us   least duration of one sample, microseconds [200]\n"
    "  --csv      one CSV line per measurement instead of tables\n";

typedef struct {
    const char *model, *layer;
    int M, K, N;
} fc_case;

/* Tokens: 1 + (image/patch)²: 28 px patch 4 → 50, 32 px patch 4 → 65, 224 px patch 16 → 197
 * (docs/MODELS.md). The expert MLPs of the MoE layers have the shapes of the dense MLP. */
static const fc_case CASES[] = {
    {"vit-12x64@28", "qkv", 50, 64, 192},       {"vit-12x64@28", "proj", 50, 64, 64},
    {"vit-12x64@28", "mlp-in", 50, 64, 256},    {"vit-12x64@28", "mlp-out", 50, 256, 64},
    {"vit-12x192@32", "qkv", 65, 192, 576},     {"vit-12x192@32", "proj", 65, 192, 192},
    {"vit-12x192@32", "mlp-in", 65, 192, 768},  {"vit-12x192@32", "mlp-out", 65, 768, 192},
    {"vit-tiny16-224", "qkv", 197, 192, 576},   {"vit-tiny16-224", "proj", 197, 192, 192},
    {"vit-tiny16-224", "mlp-in", 197, 192, 768}, {"vit-tiny16-224", "mlp-out", 197, 768, 192},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

enum { XNN_F32, OURS_F32, XNN_QC8, XNN_QC8_CVT, XNN_QS8_CVT, OURS_I8, OURS_DOT, N_IMPL };
static const char *const IMPL_NAME[N_IMPL] = {"xnn-f32", "ours-f32", "xnn-qc8", "xnn-qc8+cvt",
                                              "xnn-qs8+cvt", "ours-i8", "ours-dot"};

typedef struct {
    int M, K, N, threads;
    const mvmoe_rt_kernels *k;
    float *x, *w, *b, *sw;
    double *yref;
    int8_t *qw, *qwt;         /* per-channel (ours, qc8) and per-tensor (qs8) int8 weights */
    float swt, sx, sy;        /* per-tensor weight scale; XNNPACK's static in/out scales */
    int32_t *bq_qc8, *bq_qs8; /* XNNPACK's int32 biases */
    float *y[N_IMPL];         /* each implementation's fp32 output */
    int8_t *xq, *yq_qc8, *yq_qs8;
    rt_i8_scratch scr[MAX_THREADS];
    int8_t *qa; /* ours-dot's input: the activations as ours-i8 quantizes them */
    int32_t *acc;
    xnn_operator_t op_f32, op_qc8, op_qs8, cvt_in, cvt_out_qc8, cvt_out_qs8;
    pthreadpool_t pool;
} bench;

/* ---------------------------------------------------------------- the timed calls */

static int xnn_ok = 1;
static void xrun(xnn_operator_t op, pthreadpool_t pool) {
    if (xnn_run_operator(op, pool) != xnn_status_success) xnn_ok = 0;
}

static void run_xnn_f32(bench *B) { xrun(B->op_f32, B->pool); }
static void run_xnn_qc8(bench *B) { xrun(B->op_qc8, B->pool); }
static void run_xnn_qc8_cvt(bench *B) {
    xrun(B->cvt_in, B->pool);
    xrun(B->op_qc8, B->pool);
    xrun(B->cvt_out_qc8, B->pool);
}
static void run_xnn_qs8_cvt(bench *B) {
    xrun(B->cvt_in, B->pool);
    xrun(B->op_qs8, B->pool);
    xrun(B->cvt_out_qs8, B->pool);
}

/* rows [*m0, *m1) of thread t of T */
static void rows_of(int M, int t, int T, int *m0, int *m1) {
    const int per = (M + T - 1) / T;
    *m0 = t * per < M ? t * per : M;
    *m1 = *m0 + per < M ? *m0 + per : M;
}

static void run_ours_f32(bench *B) {
#pragma omp parallel num_threads(B->threads) if (B->threads > 1)
    {
        int m0, m1;
        rows_of(B->M, omp_get_thread_num(), omp_get_num_threads(), &m0, &m1);
        if (m1 > m0)
            B->k->linear_f32(B->y[OURS_F32] + (long)m0 * B->N, B->N, B->x + (long)m0 * B->K, B->K, B->w, B->b,
                             m1 - m0, B->K, B->N);
    }
}

static void run_ours_i8(bench *B) {
    const rt_linear L = {NULL, B->qw, B->sw, B->b, B->N, B->K, NULL};
#pragma omp parallel num_threads(B->threads) if (B->threads > 1)
    {
        int m0, m1;
        const int t = omp_get_thread_num();
        rows_of(B->M, t, omp_get_num_threads(), &m0, &m1);
        if (m1 > m0)
            rt_linear_forward(B->k, &L, B->y[OURS_I8] + (long)m0 * B->N, B->N, B->x + (long)m0 * B->K, B->K,
                              m1 - m0, &B->scr[t]);
    }
}

static void run_ours_dot(bench *B) {
#pragma omp parallel num_threads(B->threads) if (B->threads > 1)
    {
        int m0, m1;
        rows_of(B->M, omp_get_thread_num(), omp_get_num_threads(), &m0, &m1);
        if (m1 > m0) B->k->dot_i8(B->acc + (long)m0 * B->N, B->qa + (long)m0 * B->K, B->qw, m1 - m0, B->K, B->N);
    }
}

static void (*const RUN[N_IMPL])(bench *) = {run_xnn_f32,     run_ours_f32, run_xnn_qc8, run_xnn_qc8_cvt,
                                             run_xnn_qs8_cvt, run_ours_i8,  run_ours_dot};

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median microseconds of one call of each implementation. The samples take turns (one of
 * each implementation, then again), so that a change of the machine's load falls on all of
 * them alike rather than on whichever was being timed. */
static void time_medians_us(bench *B, int samples, double min_us, double us[N_IMPL]) {
    long inner[N_IMPL];
    for (int i = 0; i < N_IMPL; i++) {
        const double t0 = now_us();
        long reps = 0;
        do { /* warm-up: caches, the thread team, the CPU's clock; also sizes the samples */
            RUN[i](B);
            reps++;
        } while (now_us() - t0 < 20000.0 || reps < 3);
        const double per = (now_us() - t0) / reps;
        inner[i] = per >= min_us ? 1 : (long)(min_us / per) + 1;
    }
    static double t[N_IMPL][256];
    for (int s = 0; s < samples; s++)
        for (int i = 0; i < N_IMPL; i++) {
            const double a = now_us();
            for (long r = 0; r < inner[i]; r++) RUN[i](B);
            t[i][s] = (now_us() - a) / inner[i];
        }
    for (int i = 0; i < N_IMPL; i++) {
        qsort(t[i], (size_t)samples, sizeof t[i][0], cmp_double);
        us[i] = t[i][samples / 2];
    }
}

/* ---------------------------------------------------------------- data, reference, checks */

static uint64_t rng = 0x9E3779B97F4A7C15u;
static float uniform(void) { /* [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}
static float gaussish(void) { /* sum of 3 uniforms: bell-shaped, variance 1 */
    return uniform() + uniform() + uniform();
}

static float max_abs(const float *v, long n) {
    float m = 0.0f;
    for (long i = 0; i < n; i++) m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

/* max |y - ref| / max |ref| */
static double err_max(const float *y, const double *ref, long n) {
    double e = 0.0, r = 0.0;
    for (long i = 0; i < n; i++) {
        e = fmax(e, fabs(y[i] - ref[i]));
        r = fmax(r, fabs(ref[i]));
    }
    return r > 0.0 ? e / r : e;
}

/* ||y - ref||₂ / ||ref||₂ */
static double err_l2(const float *y, const double *ref, long n) {
    double e = 0.0, r = 0.0;
    for (long i = 0; i < n; i++) {
        e += (y[i] - ref[i]) * (y[i] - ref[i]);
        r += ref[i] * ref[i];
    }
    return r > 0.0 ? sqrt(e / r) : sqrt(e);
}

static int8_t q8(float v, float inv) {
    const float r = nearbyintf(v * inv);
    return (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r);
}

static void *xalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "xnnpack_fc: out of memory allocating %zu bytes\n", n);
        exit(1);
    }
    return p;
}

/* ours-i8's scratch of one thread, for up to all M rows */
static void scratch_alloc(rt_i8_scratch *s, int M, int K, int N) {
    if (s->qa) return;
    s->qa = xalloc((size_t)M * K);
    s->sa = xalloc(sizeof(float) * M);
    s->acc = xalloc(sizeof(int32_t) * M * N);
}

static int xfail(const char *what, const fc_case *c) {
    fprintf(stderr, "xnnpack_fc: XNNPACK's %s failed for %s %s (M %d, K %d, N %d)\n", what, c->model, c->layer,
            c->M, c->K, c->N);
    return -1;
}

/* Inputs, reference, int8 weights, and XNNPACK's operators (created once: weights packed). */
static int bench_init(bench *B, const fc_case *c) {
    const int M = c->M, K = c->K, N = c->N;
    memset(B, 0, sizeof *B);
    B->M = M, B->K = K, B->N = N;
    B->k = mvmoe_rt_kernels_get();
    B->x = xalloc(sizeof(float) * M * K);
    B->w = xalloc(sizeof(float) * N * K);
    B->b = xalloc(sizeof(float) * N);
    B->sw = xalloc(sizeof(float) * N);
    B->yref = xalloc(sizeof(double) * M * N);
    B->qw = xalloc((size_t)N * K);
    B->qwt = xalloc((size_t)N * K);
    B->bq_qc8 = xalloc(sizeof(int32_t) * N);
    B->bq_qs8 = xalloc(sizeof(int32_t) * N);
    for (int i = 0; i < N_IMPL; i++) B->y[i] = xalloc(sizeof(float) * M * N);
    B->xq = xalloc((size_t)M * K);
    B->yq_qc8 = xalloc((size_t)M * N);
    B->yq_qs8 = xalloc((size_t)M * N);
    scratch_alloc(&B->scr[0], M, K, N);
    B->qa = xalloc((size_t)M * K);
    B->acc = xalloc(sizeof(int32_t) * M * N);

    /* activations like LayerNorm outputs (unit scale), weights of std 1/√K, small biases */
    for (long i = 0; i < (long)M * K; i++) B->x[i] = gaussish();
    const float ws = 1.0f / sqrtf((float)K);
    for (long i = 0; i < (long)N * K; i++) B->w[i] = ws * gaussish();
    for (int j = 0; j < N; j++) B->b[j] = 0.1f * uniform();
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) {
            double s = B->b[j];
            for (int i = 0; i < K; i++) s += (double)B->x[(long)m * K + i] * B->w[(long)j * K + i];
            B->yref[(long)m * N + j] = s;
        }

    rt_quantize_rows(B->qw, B->sw, B->w, N, K);
    B->swt = max_abs(B->w, (long)N * K) / 127.0f;
    for (long i = 0; i < (long)N * K; i++) B->qwt[i] = q8(B->w[i], 1.0f / B->swt);
    B->sx = max_abs(B->x, (long)M * K) / 127.0f;
    double ymax = 0.0;
    for (long i = 0; i < (long)M * N; i++) ymax = fmax(ymax, fabs(B->yref[i]));
    B->sy = (float)(ymax / 127.0);
    for (int j = 0; j < N; j++) {
        B->bq_qc8[j] = (int32_t)lrint(B->b[j] / ((double)B->sx * B->sw[j]));
        B->bq_qs8[j] = (int32_t)lrint(B->b[j] / ((double)B->sx * B->swt));
    }

    /* ours-dot's input: what ours-i8 quantizes */
    const rt_linear L = {NULL, B->qw, B->sw, B->b, N, K, NULL};
    rt_linear_forward(B->k, &L, B->y[OURS_I8], N, B->x, K, M, &B->scr[0]);
    memcpy(B->qa, B->scr[0].qa, (size_t)M * K);

    if (xnn_create_fully_connected_nc_f32(K, N, K, N, B->w, B->b, -INFINITY, INFINITY, 0, &B->op_f32))
        return xfail("create_fully_connected_nc_f32", c);
    if (xnn_create_convolution2d_nhwc_qc8(0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, K, N, K, N, 0, B->sx, B->sw, B->qw,
                                          B->bq_qc8, 0, B->sy, -127, 127, 0, &B->op_qc8))
        return xfail("create_convolution2d_nhwc_qc8", c);
    if (xnn_create_fully_connected_nc_qs8(K, N, K, N, 0, B->sx, B->swt, B->qwt, B->bq_qs8, 0, B->sy, -127, 127, 0,
                                          &B->op_qs8))
        return xfail("create_fully_connected_nc_qs8", c);
    if (xnn_create_convert_nc_f32_qs8(K, K, K, B->sx, 0, -127, 127, 0, &B->cvt_in))
        return xfail("create_convert_nc_f32_qs8", c);
    if (xnn_create_convert_nc_qs8_f32(N, N, N, B->sy, 0, 0, &B->cvt_out_qc8) ||
        xnn_create_convert_nc_qs8_f32(N, N, N, B->sy, 0, 0, &B->cvt_out_qs8))
        return xfail("create_convert_nc_qs8_f32", c);
    return 0;
}

/* XNNPACK binds buffers and the pool at setup: once per thread count. */
static int bench_setup(bench *B, const fc_case *c, int threads) {
    if (B->pool) pthreadpool_destroy(B->pool);
    B->pool = NULL;
    B->threads = threads;
    if (threads > 1 && !(B->pool = pthreadpool_create((size_t)threads))) return xfail("pthreadpool_create", c);
    const int M = B->M;
    for (int t = 0; t < threads; t++) scratch_alloc(&B->scr[t], M, B->K, B->N);
    if (xnn_setup_fully_connected_nc_f32(B->op_f32, M, B->x, B->y[XNN_F32], B->pool))
        return xfail("setup_fully_connected_nc_f32", c);
    if (xnn_setup_convolution2d_nhwc_qc8(B->op_qc8, 1, M, 1, B->xq, B->yq_qc8, B->pool))
        return xfail("setup_convolution2d_nhwc_qc8", c);
    if (xnn_setup_fully_connected_nc_qs8(B->op_qs8, M, B->xq, B->yq_qs8, B->pool))
        return xfail("setup_fully_connected_nc_qs8", c);
    if (xnn_setup_convert_nc_f32_qs8(B->cvt_in, M, B->x, B->xq, B->pool)) return xfail("setup_convert_nc_f32_qs8", c);
    if (xnn_setup_convert_nc_qs8_f32(B->cvt_out_qc8, M, B->yq_qc8, B->y[XNN_QC8_CVT], B->pool) ||
        xnn_setup_convert_nc_qs8_f32(B->cvt_out_qs8, M, B->yq_qs8, B->y[XNN_QS8_CVT], B->pool))
        return xfail("setup_convert_nc_qs8_f32", c);
    return 0;
}

static void bench_free(bench *B) {
    xnn_operator_t ops[] = {B->op_f32, B->op_qc8, B->op_qs8, B->cvt_in, B->cvt_out_qc8, B->cvt_out_qs8};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (ops[i]) xnn_delete_operator(ops[i]);
    if (B->pool) pthreadpool_destroy(B->pool);
    free(B->x), free(B->w), free(B->b), free(B->sw), free(B->yref), free(B->qw), free(B->qwt);
    free(B->bq_qc8), free(B->bq_qs8), free(B->xq), free(B->yq_qc8), free(B->yq_qs8), free(B->qa), free(B->acc);
    for (int i = 0; i < N_IMPL; i++) free(B->y[i]);
    for (int t = 0; t < MAX_THREADS; t++) free(B->scr[t].qa), free(B->scr[t].sa), free(B->scr[t].acc);
}

/* Errors of the outputs the timed calls left (NAN where the row has no fp32 output). The
 * int32 sums of ours-dot must be the ones ours-i8 dequantized: checked exactly against the
 * reference implementation's. Returns the number of failed checks. */
static int bench_check(bench *B, const fc_case *c, double err[N_IMPL]) {
    const long n = (long)B->M * B->N;
    int bad = 0;
    for (int i = 0; i < N_IMPL; i++) err[i] = NAN;
    err[XNN_F32] = err_max(B->y[XNN_F32], B->yref, n);
    err[OURS_F32] = err_max(B->y[OURS_F32], B->yref, n);
    for (int i = XNN_F32; i <= OURS_F32; i++)
        if (!(err[i] <= F32_TOL)) bad++;
    double d = 0.0, r = 0.0;
    for (long i = 0; i < n; i++) {
        d = fmax(d, fabsf(B->y[XNN_F32][i] - B->y[OURS_F32][i]));
        r = fmax(r, fabs(B->yref[i]));
    }
    if (!(d <= F32_TOL * r)) {
        fprintf(stderr, "xnnpack_fc: %s %s: xnn-f32 and ours-f32 differ by %.3g of the largest output\n", c->model,
                c->layer, d / r);
        bad++;
    }
    /* xnn-qc8 has int8 outputs: its error is xnn-qc8+cvt's, the convert being exact */
    const int i8[] = {XNN_QC8_CVT, XNN_QS8_CVT, OURS_I8};
    for (int i = 0; i < 3; i++) {
        err[i8[i]] = err_l2(B->y[i8[i]], B->yref, n);
        if (!(err[i8[i]] <= I8_TOL)) bad++;
    }
    int32_t *ref = xalloc(sizeof(int32_t) * n);
    mvmoe_rt_kernels_plain()->dot_i8(ref, B->qa, B->qw, B->M, B->K, B->N);
    if (memcmp(ref, B->acc, sizeof(int32_t) * n) != 0) {
        fprintf(stderr, "xnnpack_fc: %s %s: ours-dot's int32 sums differ from the reference's\n", c->model, c->layer);
        bad++;
    } else {
        err[OURS_DOT] = 0.0;
    }
    free(ref);
    for (int i = 0; i < N_IMPL; i++)
        if (i != XNN_QC8 && i != OURS_DOT && !(err[i] <= (i <= OURS_F32 ? F32_TOL : I8_TOL)))
            fprintf(stderr, "xnnpack_fc: %s %s: %s error %.3g is above its bound %g\n", c->model, c->layer,
                    IMPL_NAME[i], err[i], i <= OURS_F32 ? F32_TOL : I8_TOL);
    return bad;
}

/* ---------------------------------------------------------------- main */

static void print_cpu(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512], model[256] = "unknown (no /proc/cpuinfo)";
    if (f) {
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon) {
                snprintf(model, sizeof model, "%s", colon + 2);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    printf("# CPU: %s (lscpu's \"Model name\"); online CPUs %ld\n", model, sysconf(_SC_NPROCESSORS_ONLN));
}

static int usage_error(const char *what, const char *value) {
    fprintf(stderr, "xnnpack_fc: invalid %s '%s'\n%s", what, value ? value : "(missing)", USAGE);
    return 2;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    const long v = strtol(s, &end, 10);
    if (errno || (*end && *end != ',') || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    int threads[MAX_SETTINGS] = {1, 2}, n_threads = 2, csv = 0;
    long samples = 31, min_us = 200;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            printf("%s", USAGE);
            return 0;
        } else if (strcmp(f, "--csv") == 0) {
            csv = 1;
        } else if (strcmp(f, "--samples") == 0) {
            if (parse_int(v, 1, 255, &samples) || strchr(v, ',')) return usage_error("--samples", v);
            i++;
        } else if (strcmp(f, "--min-us") == 0) {
            if (parse_int(v, 1, 10000000, &min_us) || strchr(v, ',')) return usage_error("--min-us", v);
            i++;
        } else if (strcmp(f, "--threads") == 0) {
            if (!v) return usage_error("--threads", v);
            n_threads = 0;
            for (const char *p = v; *p;) {
                long t;
                if (n_threads == MAX_SETTINGS || parse_int(p, 1, MAX_THREADS, &t)) return usage_error("--threads", v);
                threads[n_threads++] = (int)t;
                p = strchr(p, ',');
                p = p ? p + 1 : v + strlen(v);
            }
            i++;
        } else {
            return usage_error("option", f);
        }
    }
    if (xnn_initialize(NULL) != xnn_status_success) {
        fprintf(stderr, "xnnpack_fc: xnn_initialize failed (this CPU lacks what XNNPACK needs, or out of memory)\n");
        return 1;
    }
    print_cpu();
    printf("# ours: runtime kernels '%s' (MVMOE_ISA=plain forces the reference); XNNPACK: Debian's libXNNPACK\n",
           mvmoe_rt_kernels_get()->name);
    printf("# median of %ld samples, each >= %ld us; times in microseconds per call\n", samples, min_us);
    if (csv) printf("threads,model,layer,M,K,N,impl,us,error\n");
    int bad = 0;
    double errs[N_CASES][N_IMPL];
    for (int ti = 0; ti < n_threads; ti++) {
        if (!csv) {
            printf("\n## threads %d\n%-15s %-7s %4s %4s %4s |", threads[ti], "model", "layer", "M", "K", "N");
            for (int i = 0; i < N_IMPL; i++) printf(" %11s", IMPL_NAME[i]);
            printf(" | f32 ours/xnn  i8 ours/xnn+cvt\n");
        }
        for (int ci = 0; ci < N_CASES; ci++) {
            const fc_case *c = &CASES[ci];
            bench B;
            double us[N_IMPL], err[N_IMPL];
            if (bench_init(&B, c) || bench_setup(&B, c, threads[ti])) {
                bench_free(&B);
                return 1;
            }
            time_medians_us(&B, (int)samples, (double)min_us, us);
            if (!xnn_ok) {
                fprintf(stderr, "xnnpack_fc: xnn_run_operator failed for %s %s\n", c->model, c->layer);
                bench_free(&B);
                return 1;
            }
            bad += bench_check(&B, c, err);
            if (csv) {
                for (int i = 0; i < N_IMPL; i++)
                    printf("%d,%s,%s,%d,%d,%d,%s,%.3f,%.3g\n", threads[ti], c->model, c->layer, c->M, c->K, c->N,
                           IMPL_NAME[i], us[i], err[i]);
            } else {
                printf("%-15s %-7s %4d %4d %4d |", c->model, c->layer, c->M, c->K, c->N);
                for (int i = 0; i < N_IMPL; i++) printf(" %11.2f", us[i]);
                printf(" | %12.2f %17.2f\n", us[OURS_F32] / us[XNN_F32], us[OURS_I8] / us[XNN_QC8_CVT]);
            }
            if (ti == 0) memcpy(errs[ci], err, sizeof err);
            bench_free(&B);
        }
    }
    xnn_deinitialize();
    if (!csv) { /* the outputs are checked at every thread count; the first's errors shown */
        printf("\n## output error vs a double-precision reference (threads %d): fp32 max|y-ref|/max|ref|, "
               "int8 ||y-ref||/||ref||\n%-15s %-7s |", threads[0], "model", "layer");
        for (int i = 0; i < N_IMPL; i++)
            if (i != XNN_QC8 && i != OURS_DOT) printf(" %11s", IMPL_NAME[i]);
        printf("\n");
        for (int ci = 0; ci < N_CASES; ci++) {
            printf("%-15s %-7s |", CASES[ci].model, CASES[ci].layer);
            for (int i = 0; i < N_IMPL; i++)
                if (i != XNN_QC8 && i != OURS_DOT) printf(" %11.2e", errs[ci][i]);
            printf("\n");
        }
    }
    if (bad) {
        fprintf(stderr, "xnnpack_fc: %d output checks failed: the timings above do not compare the same math\n",
                bad);
        return 1;
    }
    printf("\n# outputs checked: fp32 within %g of the largest output, int8 within %g relative L2 error\n",
           F32_TOL, I8_TOL);
    return 0;
}
