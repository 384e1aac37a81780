/* `mvmoe bench`: training-step and inference speed of a model on random data, its fraction of
 * the machine's FP32 peak (MFU) and its memory. The training step is the trainer's
 * (mvmoe_train_step, src/train/step.c) without data loading and augmentation: packing,
 * forward, loss, backward, gradient clipping, AdamW, on buffers allocated once before the
 * first step. */
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/rng.h"
#include "core/status.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "train/step.h"

#define CHECK_IMAGES 8
#define LATENCY_WARMUP 3
#define PEAK_SECONDS 0.3

void mvmoe_bench_options_default(mvmoe_bench_options *o) {
    memset(o, 0, sizeof *o);
    o->batch = 128;
    o->warmup = 3;
    o->steps = 20;
    o->infer_batch = 256;
    o->infer_reps = 3;
    o->latency_reps = 200;
    o->threads = 0;
    o->seed = 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* q-quantile of sorted v[0..n) by linear interpolation (numpy's default). */
static double quantile(const double *v, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

/* Median of v[0..n) (sorts v). */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return quantile(v, n, 0.5);
}

/* Bytes of an allocation the model made; the acts struct keeps pointers into its arenas, not
 * their sizes, so ask the allocator (rounded up to its granularity, < 1 page). */
static size_t arena_bytes(const void *p) { return p ? malloc_usable_size((void *)p) : 0; }

/* The activation workspace: the float arena plus the MoE dispatch plans and their indices. */
static size_t acts_bytes(const mvmoe_acts *a) {
    return arena_bytes(a->mem) + arena_bytes(a->imem) + arena_bytes(a->plans);
}

static mvmoe_status check_options(const mvmoe_bench_options *o) {
#define REQ(cond, ...) \
    if (!(cond)) MVMOE_FAIL(MVMOE_ERR_INVALID, "bench options: " __VA_ARGS__)
    REQ(o->batch >= 1 && o->batch <= 65536, "batch %d not in 1..65536", o->batch);
    REQ(o->warmup >= 0 && o->steps >= 1, "need warmup >= 0 (got %d) and steps >= 1 (got %d)",
        o->warmup, o->steps);
    REQ(o->infer_batch >= 1 && o->infer_batch <= 65536, "infer_batch %d not in 1..65536",
        o->infer_batch);
    REQ(o->infer_reps >= 1 && o->latency_reps >= 1, "infer_reps (%d) and latency_reps (%d) must be >= 1",
        o->infer_reps, o->latency_reps);
    REQ(o->threads >= 0 && o->threads <= 4096, "threads %d not in 0..4096", o->threads);
    REQ(o->peak_gflops >= 0 && isfinite(o->peak_gflops), "peak_gflops %g must be >= 0", o->peak_gflops);
#undef REQ
    return MVMOE_OK;
}

static void random_images(uint8_t *img, size_t n, uint64_t seed, uint64_t stream) {
    mvmoe_rng r;
    mvmoe_rng_init(&r, seed, stream);
    for (size_t i = 0; i < n; i++) img[i] = (uint8_t)mvmoe_rng_below(&r, 256);
}

/* Logits of CHECK_IMAGES random images with the current weights, for cross-framework checks. */
static mvmoe_status write_check(mvmoe_model *m, const char *path, uint64_t seed) {
    const mvmoe_config *c = &m->cfg;
    size_t px = (size_t)c->in_chans * c->img_size * c->img_size, K = (size_t)c->num_classes;
    uint8_t *img = malloc(px * CHECK_IMAGES);
    float *imgf = malloc(sizeof(float) * px * CHECK_IMAGES), *logits = malloc(sizeof(float) * K * CHECK_IMAGES);
    mvmoe_status s = MVMOE_OK;
    if (!img || !imgf || !logits)
        s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__, "bench: check batch buffers");
    if (s == MVMOE_OK) {
        random_images(img, px * CHECK_IMAGES, seed, 0xC4EC0000ull);
        for (size_t i = 0; i < px * CHECK_IMAGES; i++) imgf[i] = (float)img[i];
        s = mvmoe_model_logits(m, img, CHECK_IMAGES, logits);
    }
    if (s == MVMOE_OK) {
        mvmoe_st_out t[2] = {
            {.name = "images", .ndim = 4,
             .shape = {CHECK_IMAGES, c->in_chans, c->img_size, c->img_size}, .data = imgf},
            {.name = "logits", .ndim = 2, .shape = {CHECK_IMAGES, (int64_t)K}, .data = logits}};
        s = mvmoe_st_write(path, t, 2, NULL, NULL, 0);
    }
    free(img);
    free(imgf);
    free(logits);
    return s;
}

static mvmoe_status bench_train(mvmoe_model *m, const mvmoe_bench_options *o, mvmoe_bench_result *r) {
    const int B = o->batch, K = m->cfg.num_classes;
    MVMOE_TRY(mvmoe_model_train_init(m, B));
    mvmoe_acts *a = &m->train_acts;
    /* the trainer's step with its default options (no drop path, no augmentation) */
    mvmoe_train_options d;
    mvmoe_train_options_default(&d);
    mvmoe_step_options so;
    mvmoe_step_options_from(&so, &d);
    int *map = NULL;
    if (m->cfg.routing == MVMOE_ROUTING_IMAGE_SUPERCLASS && !m->cfg.superclass_of) {
        /* the router loss needs a class -> super-class map; which one does not change the cost */
        MVMOE_ALLOC(map, K, "bench super-class map");
        for (int k = 0; k < K; k++) map[k] = k % m->cfg.experts;
        so.pass.superclass_of = map;
    }
    /* inputs as the augmenter leaves them (normalized, roughly unit variance), fixed labels */
    size_t n_img = (size_t)B * m->cfg.in_chans * m->cfg.img_size * m->cfg.img_size;
    mvmoe_rng rng;
    mvmoe_rng_init(&rng, o->seed, 0xBE7C0000ull);
    for (size_t i = 0; i < n_img; i++) a->img[i] = mvmoe_rng_normal(&rng);
    int32_t *labels;
    double *t;
    labels = malloc(sizeof *labels * (size_t)B);
    t = calloc((size_t)o->steps * 5, sizeof *t); /* step times, then the 4 phases' */
    if (!labels || !t) {
        free(map);
        free(labels);
        free(t);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "bench: labels and %d step times", o->steps);
    }
    for (int i = 0; i < B; i++) labels[i] = (int32_t)mvmoe_rng_below(&rng, (uint32_t)K);
    mvmoe_status s = MVMOE_OK;
    for (int i = 0; i < o->warmup + o->steps; i++) {
        double t0 = mvmoe_clock_seconds();
        mvmoe_targets_smoothed(a->targets, labels, B, K, d.label_smoothing);
        mvmoe_step_result sr;
        s = mvmoe_train_step(m, labels, &so, &sr);
        double dt = mvmoe_clock_seconds() - t0;
        if (s != MVMOE_OK) break;
        if (i == 0) r->loss_first = sr.loss;
        r->loss_last = sr.loss;
        if (i >= o->warmup) {
            const int j = i - o->warmup, n = o->steps;
            t[j] = dt;
            t[n + j] = sr.t_pack, t[2 * n + j] = sr.t_forward, t[3 * n + j] = sr.t_backward;
            t[4 * n + j] = sr.t_optimizer;
        }
    }
    if (s == MVMOE_OK) {
        qsort(t, (size_t)o->steps, sizeof *t, cmp_double);
        int n = o->steps;
        r->step_ms_median = 1e3 * quantile(t, n, 0.5);
        r->step_ms_p10 = 1e3 * quantile(t, n, 0.1);
        r->step_ms_p90 = 1e3 * quantile(t, n, 0.9);
        r->step_ms_min = 1e3 * t[0];
        r->step_ms_max = 1e3 * t[n - 1];
        r->train_images_per_s = B / (r->step_ms_median / 1e3);
        r->phase_ms_pack = 1e3 * median(t + n, n);
        r->phase_ms_forward = 1e3 * median(t + 2 * n, n);
        r->phase_ms_backward = 1e3 * median(t + 3 * n, n);
        r->phase_ms_optimizer = 1e3 * median(t + 4 * n, n);
    }
    free(map);
    free(labels);
    free(t);
    return s;
}

static mvmoe_status bench_infer(mvmoe_model *m, const mvmoe_bench_options *o, mvmoe_bench_result *r) {
    const mvmoe_config *c = &m->cfg;
    size_t px = (size_t)c->in_chans * c->img_size * c->img_size;
    int nb = o->infer_batch, reps = o->latency_reps > o->infer_reps ? o->latency_reps : o->infer_reps;
    uint8_t *img = malloc(px * (size_t)nb);
    float *logits = malloc(sizeof(float) * (size_t)c->num_classes * (size_t)nb);
    double *t = calloc((size_t)reps, sizeof *t);
    mvmoe_status s = MVMOE_OK;
    if (!img || !logits || !t)
        s = mvmoe_error_set(MVMOE_ERR_NOMEM, __FILE__, __LINE__,
                            "bench: inference buffers for %d images", nb);
    if (s == MVMOE_OK) random_images(img, px * (size_t)nb, o->seed, 0x1F0E0000ull);
    /* batch-1 latency: one image after another, as an interactive caller would */
    for (int i = 0; s == MVMOE_OK && i < LATENCY_WARMUP + o->latency_reps; i++) {
        const uint8_t *x = img + px * (size_t)(i % nb);
        double t0 = mvmoe_clock_seconds();
        s = mvmoe_model_logits(m, x, 1, logits);
        if (i >= LATENCY_WARMUP) t[i - LATENCY_WARMUP] = mvmoe_clock_seconds() - t0;
    }
    if (s == MVMOE_OK) {
        qsort(t, (size_t)o->latency_reps, sizeof *t, cmp_double);
        r->latency_ms_median = 1e3 * quantile(t, o->latency_reps, 0.5);
        r->latency_ms_p10 = 1e3 * quantile(t, o->latency_reps, 0.1);
        r->latency_ms_p90 = 1e3 * quantile(t, o->latency_reps, 0.9);
    }
    /* throughput: whole batches, one warm-up pass */
    for (int i = 0; s == MVMOE_OK && i < 1 + o->infer_reps; i++) {
        double t0 = mvmoe_clock_seconds();
        s = mvmoe_model_logits(m, img, nb, logits);
        if (i >= 1) t[i - 1] = mvmoe_clock_seconds() - t0;
    }
    if (s == MVMOE_OK) {
        qsort(t, (size_t)o->infer_reps, sizeof *t, cmp_double);
        r->infer_images_per_s = nb / quantile(t, o->infer_reps, 0.5);
    }
    free(img);
    free(logits);
    free(t);
    return s;
}

mvmoe_status mvmoe_bench_run(mvmoe_model *m, const mvmoe_bench_options *o, mvmoe_bench_result *r) {
    memset(r, 0, sizeof *r);
    MVMOE_TRY(check_options(o));
    mvmoe_set_threads(o->threads);
    r->threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    if (o->check_path) MVMOE_TRY(write_check(m, o->check_path, o->seed));

    if (o->peak_gflops > 0) {
        r->peak_gflops = o->peak_gflops;
    } else {
        MVMOE_TRY(mvmoe_bench_peak_gflops(r->threads, PEAK_SECONDS, &r->peak_gflops, NULL));
        r->peak_measured = 1;
    }
    if (!o->inference_only) MVMOE_TRY(bench_train(m, o, r));
    MVMOE_TRY(bench_infer(m, o, r));

    const double F = mvmoe_config_flops(&m->cfg), peak = r->peak_gflops * 1e9;
    r->flops_per_image = F;
    /* backward costs 2x forward (one matmul each for input and weight gradients) */
    r->train_mfu = 3 * F * r->train_images_per_s / peak;
    r->infer_mfu = F * r->infer_images_per_s / peak;
    r->latency_mfu = F / (r->latency_ms_median / 1e3) / peak;

    const size_t f = sizeof(float);
    r->params = mvmoe_config_num_params(&m->cfg);
    /* the arenas as allocated: every tensor padded to a SIMD-friendly boundary */
    r->bytes_params = f * m->layout.total;
    r->bytes_grads = m->grad_mem ? f * m->layout.total : 0;
    r->bytes_adam = (m->adam_m ? f * m->layout.total : 0) + (m->adam_v ? f * m->layout.total : 0);
    r->bytes_train_acts = acts_bytes(&m->train_acts);
    r->bytes_infer_acts = acts_bytes(&m->infer_acts);
    r->bytes_train_total = r->bytes_params + r->bytes_grads + r->bytes_adam + r->bytes_train_acts;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) r->peak_rss_bytes = (size_t)ru.ru_maxrss * 1024; /* KiB */
    return MVMOE_OK;
}
