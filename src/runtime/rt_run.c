/* The runtime's public API (include/mvmoe_run.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "mvmoe_run.h"
#include "runtime/rt_checkpoint.h"
#include "runtime/rt_kernels.h"
#include "runtime/rt_model.h"

struct mvmoe_run {
    char err[1024];
    rt_checkpoint ck;
    rt_model m;
    const mvmoe_rt_kernels *k;
    mvmoe_run_options opt;
    int nwork;
    rt_work *work;   /* one per thread */
    int loaded;
};

static const char *const ROUTING[] = {"dense", "image-superclass", "image-learned"};

mvmoe_run_options mvmoe_run_defaults(void) {
    mvmoe_run_options o;
    memset(&o, 0, sizeof o);
    o.precision = MVMOE_RUN_FP32;
    return o;
}

static int set_err(mvmoe_run *r, int st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    return st;
}

int mvmoe_run_open(const char *path, const mvmoe_run_options *opt, mvmoe_run **out) {
    mvmoe_run *r = calloc(1, sizeof *r);
    *out = r;
    if (!r) return MVMOE_RUN_ERR_NOMEM;
    r->ck.fd = -1;
    r->opt = opt ? *opt : mvmoe_run_defaults();
    if (!path) return set_err(r, MVMOE_RUN_ERR_INVALID, "no checkpoint path given");
    if (r->opt.precision != MVMOE_RUN_FP32 && r->opt.precision != MVMOE_RUN_INT8)
        return set_err(r, MVMOE_RUN_ERR_INVALID, "precision %d unknown (fp32 or int8)", (int)r->opt.precision);
    if (!(r->opt.adaptive_k >= 0.0f && r->opt.adaptive_k <= 1.0f))
        return set_err(r, MVMOE_RUN_ERR_INVALID, "adaptive_k %g must be in 0..1", (double)r->opt.adaptive_k);
    if (r->opt.threads < 0) return set_err(r, MVMOE_RUN_ERR_INVALID, "threads %d < 0", r->opt.threads);
    int st = 0;
    if (rt_checkpoint_open(&r->ck, path, r->opt.random_access, r->err, sizeof r->err, &st)) return st;
    if (rt_model_load(&r->m, &r->ck, r->opt.precision == MVMOE_RUN_INT8, r->err, sizeof r->err, &st)) {
        /* name the file in messages about its contents */
        char tmp[2 * sizeof r->err + 16];
        snprintf(tmp, sizeof tmp, "%s: %s", path, r->err);
        memcpy(r->err, tmp, sizeof r->err - 1);
        r->err[sizeof r->err - 1] = 0;
        return st;
    }
    r->loaded = 1;
    const rt_config *c = &r->m.c;
    if (r->opt.adaptive_k > 0.0f && (c->routing == RT_DENSE || c->top_k < 2))
        return set_err(r, MVMOE_RUN_ERR_INVALID, "adaptive k needs an MoE model with top_k >= 2 (this one: %s, top_k %d)",
                       ROUTING[c->routing], c->top_k);
    r->k = mvmoe_rt_kernels_get();
#ifdef _OPENMP
    r->nwork = r->opt.threads > 0 ? r->opt.threads : omp_get_max_threads();
#else
    r->nwork = 1;
#endif
    if (r->nwork < 1) r->nwork = 1;
    r->work = calloc((size_t)r->nwork, sizeof *r->work);
    if (!r->work) return set_err(r, MVMOE_RUN_ERR_NOMEM, "out of memory for %d work buffers", r->nwork);
    for (int i = 0; i < r->nwork; i++) /* work[0] also serves one image split over every thread */
        if (rt_work_init(&r->work[i], &r->m, i == 0 && r->opt.split_image ? r->nwork : 1))
            return set_err(r, MVMOE_RUN_ERR_NOMEM, "out of memory for the work buffers of %d threads", r->nwork);
    r->err[0] = 0;
    return MVMOE_RUN_OK;
}

const char *mvmoe_run_error(const mvmoe_run *r) { return r ? r->err : "out of memory"; }

mvmoe_run_info mvmoe_run_get_info(const mvmoe_run *r) {
    mvmoe_run_info i;
    memset(&i, 0, sizeof i);
    if (!r || !r->loaded) return i;
    const rt_config *c = &r->m.c;
    i.img_size = c->img_size, i.in_chans = c->in_chans, i.patch = c->patch, i.dim = c->dim, i.depth = c->depth;
    i.heads = c->heads, i.mlp_dim = c->mlp_dim, i.num_classes = c->num_classes;
    i.routing = ROUTING[c->routing];
    i.experts = c->experts, i.top_k = c->routing == RT_DENSE ? 0 : c->top_k, i.moe_layers = c->moe_layers;
    memcpy(i.mean, c->mean, sizeof i.mean);
    memcpy(i.std, c->std, sizeof i.std);
    i.class_names = (const char *const *)c->class_names;
    i.kernels = r->k ? r->k->name : "";
    i.precision = r->opt.precision;
    i.file_bytes = r->ck.size;
    return i;
}

static int ready(mvmoe_run *r, int n, const void *in, const float *logits) {
    if (!r || !r->work) return r ? set_err(r, MVMOE_RUN_ERR_INVALID, "the model is not open") : MVMOE_RUN_ERR_INVALID;
    if (n < 0 || (n > 0 && (!in || !logits)))
        return set_err(r, MVMOE_RUN_ERR_INVALID, "run: %d images with a NULL input or logits buffer", n);
    return 0;
}

/* Image i on work[t] over nt threads: its patches (from raw pixels through the table, or the
 * float image) and the forward; -1 if it failed (work[t].err says why). */
static int one_image(mvmoe_run *r, const uint8_t *u8, const float *f32, int i, int t, int nt, float *logits,
                     int64_t *routes, const float (*lut)[256]) {
    const rt_config *c = &r->m.c;
    const size_t px = (size_t)c->in_chans * c->img_size * c->img_size;
    /* raw pixels go through the table straight into the patches (no normalized copy of the
     * image: 602 KB less resident per thread at 224x224x3) */
    const float *img = f32 ? f32 + (size_t)i * px : NULL;
    if (!f32) rt_model_patches_u8(&r->m, &r->work[t], u8 + (size_t)i * px, lut);
    return rt_model_forward(&r->m, r->k, &r->work[t], img, logits + (size_t)i * c->num_classes,
                            routes ? routes + (size_t)i * c->top_k : NULL, r->opt.adaptive_k, nt);
}

/* Keeps the first failed image's message (callers serialize). */
static void failed(mvmoe_run *r, int *bad, int i, int n, int t) {
    if (*bad >= 0 && i > *bad) return;
    *bad = i;
    snprintf(r->err, sizeof r->err, "image %d of the %d in this call: %s (the checkpoint is damaged)", i, n,
             r->work[t].err);
}

/* Images [0, n), in parallel when there are several and several threads. */
static int run(mvmoe_run *r, const uint8_t *u8, const float *f32, int n, float *logits, int64_t *routes) {
    const rt_config *c = &r->m.c;
    /* (v/255 − mean)/std as the library computes it: v·(1/(255·std)) − mean/std, one fused
     * multiply-add (its compiler contracts that loop); a pixel has 256 values, so each channel's
     * 256 results are made once per call here and the pixels look them up (a libm fmaf call
     * per pixel was 2 % of a 224x224 image's int8 time) */
    float lut[4][256];
    for (int ch = 0; ch < c->in_chans; ch++) {
        const float scale = 1.0f / (255.0f * c->std[ch]), shift = c->mean[ch] / c->std[ch];
        for (int v = 0; v < 256; v++) lut[ch][v] = fmaf((float)v, scale, -shift);
    }
    int bad = -1; /* the first image whose forward failed (a chosen expert's int8 tensors) */
    /* One image, or one thread: no parallel construct around the forward. A split image's
     * parallel regions must be top-level ones: inside even a one-thread (if-false) region they
     * are nested, and libgomp starts new threads for each nested region instead of reusing its
     * pool (two threads were 2x slower than one: thread creation at every operation). */
    if (n == 1 || r->nwork == 1) {
        for (int i = 0; i < n; i++)
            if (one_image(r, u8, f32, i, 0, n == 1 && r->opt.split_image ? r->nwork : 1, logits, routes, lut))
                failed(r, &bad, i, n, 0);
    } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(r->nwork)
        for (int i = 0; i < n; i++) {
#ifdef _OPENMP
            const int t = omp_get_thread_num();
#else
            const int t = 0;
#endif
            if (one_image(r, u8, f32, i, t, 1, logits, routes, lut)) {
#pragma omp critical(mvmoe_run_failure)
                failed(r, &bad, i, n, t);
            }
        }
    }
    if (bad >= 0) return MVMOE_RUN_ERR_FORMAT;
    return MVMOE_RUN_OK;
}

int mvmoe_run_images_u8(mvmoe_run *r, const uint8_t *pixels, int n, float *logits, int64_t *routes) {
    const int st = ready(r, n, pixels, logits);
    return st ? st : run(r, pixels, NULL, n, logits, routes);
}

int mvmoe_run_images_f32(mvmoe_run *r, const float *x, int n, float *logits, int64_t *routes) {
    const int st = ready(r, n, x, logits);
    return st ? st : run(r, NULL, x, n, logits, routes);
}

size_t mvmoe_run_mapping(const mvmoe_run *r, const void **base) {
    if (base) *base = r ? r->ck.map : NULL;
    return r ? r->ck.size : 0;
}

int mvmoe_run_tensor(const mvmoe_run *r, int i, const char **name, size_t *offset, size_t *bytes) {
    if (!r) return 0;
    if (i >= 0 && i < r->ck.nt) {
        const rt_tensor *t = &r->ck.t[i];
        if (name) *name = t->name;
        if (offset) *offset = r->ck.data_start + t->begin;
        if (bytes) *bytes = t->end - t->begin;
    }
    return r->ck.nt;
}

void mvmoe_run_close(mvmoe_run *r) {
    if (!r) return;
    for (int i = 0; r->work && i < r->nwork; i++) rt_work_free(&r->work[i]);
    free(r->work);
    rt_model_free(&r->m);
    rt_checkpoint_close(&r->ck);
    free(r);
}
