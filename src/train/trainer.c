/* The training loop: batches → forward → loss → backward → clip → AdamW, with validation,
 * checkpoints (model + optimizer state) and resumption. Everything it needs is allocated
 * before the first step; the step itself allocates nothing. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/status.h"
#include "data/augment.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "train/dist.h"
#include "train/ep.h"
#include "train/optim.h"
#include "train/step.h"

/* Set by a signal handler or by another thread (the CLI's thread waiting in sigwait): lock-free
 * atomic accesses are async-signal-safe and free of data races across threads. */
static int stop_requested;

void mvmoe_request_stop(void) { __atomic_store_n(&stop_requested, 1, __ATOMIC_RELAXED); }

void mvmoe_train_options_default(mvmoe_train_options *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 30;
    o->batch = 128;
    o->lr = 1e-3f;
    o->min_lr = 1e-5f;
    o->weight_decay = 0.05f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->warmup_epochs = 2.0f;
    o->clip_norm = 1.0f;
    o->label_smoothing = 0.1f;
    o->seed = 0;
    o->val_fraction = 0.1f;
    o->crop_pad = 2;
    o->hflip = 1;
    o->superclass_lambda = 0.3f;
    o->aux_weight = 0.01f;
    o->capacity_ratio = 1.05f;
    o->eval_every = 1;
}

static mvmoe_status check_options(const mvmoe_train_options *o, int n_train) {
#define REQ(cond, ...) \
    if (!(cond)) MVMOE_FAIL(MVMOE_ERR_INVALID, "training options: " __VA_ARGS__)
    REQ(o->epochs >= 1, "epochs %d must be >= 1", o->epochs);
    REQ(o->batch >= 1 && o->batch <= 65536, "batch %d not in 1..65536", o->batch);
    REQ(n_train >= o->batch, "%d training images are fewer than one batch of %d", n_train, o->batch);
    REQ(isfinite(o->lr) && o->lr > 0, "lr %g must be > 0", (double)o->lr);
    REQ(isfinite(o->min_lr) && o->min_lr >= 0 && o->min_lr <= o->lr, "min_lr %g must be in [0, lr]",
        (double)o->min_lr);
    REQ(o->weight_decay >= 0 && o->weight_decay < 1, "weight_decay %g not in [0, 1)", (double)o->weight_decay);
    REQ(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1, "betas must be in [0, 1)");
    REQ(o->eps > 0, "eps must be > 0");
    REQ(o->warmup_epochs >= 0, "warmup must be >= 0");
    REQ(o->label_smoothing >= 0 && o->label_smoothing < 1, "label_smoothing %g not in [0, 1)",
        (double)o->label_smoothing);
    REQ(o->drop_path >= 0 && o->drop_path < 1, "drop_path %g not in [0, 1)", (double)o->drop_path);
    REQ(o->mixup >= 0 && o->cutmix >= 0, "mixup/cutmix alphas must be >= 0");
    REQ(o->erase_prob >= 0 && o->erase_prob <= 1, "erase probability must be in [0, 1]");
    REQ(o->crop_pad >= 0, "crop padding must be >= 0");
    REQ(o->randaug_n >= 0 && o->randaug_m >= 0 && o->randaug_m <= 30, "randaug n, m out of range");
    REQ(o->superclass_lambda >= 0 && o->aux_weight >= 0 && o->capacity_ratio >= 0,
        "router loss weights and capacity ratio must be >= 0");
#undef REQ
    return MVMOE_OK;
}

/* Optimizer state beside the checkpoint: OUT.state.safetensors; while a new pair is being
 * written, the previous state waits as OUT.state.prev.safetensors. */
static void state_path(char *buf, size_t n, const char *out) { snprintf(buf, n, "%s.state.safetensors", out); }
static void prev_state_path(char *buf, size_t n, const char *out) { snprintf(buf, n, "%s.state.prev.safetensors", out); }

static void ema_path(char *buf, size_t n, const char *out) { snprintf(buf, n, "%s.ema.safetensors", out); }

/* ---------------------------------------------------------------- the run's settings
 * Everything that changes what a step computes, recorded in the optimizer state as
 * "name=value" words so that --resume with other settings is refused (bit-identical
 * continuation is only possible with the same ones). The names are the flags'. */
#define SETTINGS_CAP 1024

static void settings_text(char *buf, size_t cap, const mvmoe_train_options *o, int n_train) {
    snprintf(buf, cap,
             "--epochs=%d --batch=%d --lr=%.9g --min-lr=%.9g --weight-decay=%.9g adam-betas=%.9g,%.9g "
             "adam-eps=%.9g --warmup=%.9g --clip=%.9g --label-smoothing=%.9g --seed=%llu "
             "--crop-pad=%d --hflip=%d --rrc=%d --drop-path=%.9g --mixup=%.9g --cutmix=%.9g "
             "--randaug=%d,%d --erase=%.9g --ema=%.9g --superclass-lambda=%.9g --aux-weight=%.9g "
             "--capacity-ratio=%.9g --precision=%s training-images=%d",
             o->epochs, o->batch, (double)o->lr, (double)o->min_lr, (double)o->weight_decay,
             (double)o->beta1, (double)o->beta2, (double)o->eps, (double)o->warmup_epochs,
             (double)o->clip_norm, (double)o->label_smoothing, (unsigned long long)o->seed,
             o->crop_pad, o->hflip, o->rrc, (double)o->drop_path, (double)o->mixup,
             (double)o->cutmix, o->randaug_n, o->randaug_m, (double)o->erase_prob,
             (double)o->ema_decay, (double)o->superclass_lambda, (double)o->aux_weight,
             (double)o->capacity_ratio, mvmoe_precision_name(mvmoe_get_precision()), n_train);
}

/* The words of `was` whose value differs in `now`, as "--batch 128 (now 64), ..." in buf. */
static int settings_diff(char *buf, size_t cap, const char *was, const char *now) {
    size_t used = 0;
    int n = 0;
    buf[0] = 0;
    for (const char *w = was; *w;) {
        size_t len = strcspn(w, " "), key = strcspn(w, "=");
        if (key < len) {
            const char *found = NULL;
            for (const char *v = now; *v; v += strcspn(v, " "), v += *v == ' ')
                if (strncmp(v, w, key + 1) == 0) found = v;
            size_t flen = found ? strcspn(found, " ") : 0;
            if (!found || flen != len || strncmp(found, w, len) != 0) {
                int k = snprintf(buf + used, cap - used, "%s%.*s %.*s (now %.*s)", n ? ", " : "",
                                 (int)key, w, (int)(len - key - 1), w + key + 1,
                                 found ? (int)(flen - key - 1) : 4, found ? found + key + 1 : "none");
                if (k > 0 && (size_t)k < cap - used) used += (size_t)k;
                n++;
            }
        }
        w += len;
        while (*w == ' ') w++;
    }
    return n;
}

/* The EMA weights as a checkpoint of their own (what `mvmoe eval` takes): swapped into the
 * parameter arena around the save, with the gradient arena (free between steps) as scratch. */
static mvmoe_status save_ema(mvmoe_model *m, const char *out) {
    char ep[4096];
    ema_path(ep, sizeof ep, out);
    size_t bytes = sizeof(float) * m->layout.total;
    memcpy(m->grad_mem, m->param_mem, bytes);
    memcpy(m->param_mem, m->ema_mem, bytes);
    mvmoe_status s = mvmoe_model_save(m, ep);
    memcpy(m->param_mem, m->grad_mem, bytes);
    return s;
}

/* The weights and their optimizer state are two files, replaced one after the other: a kill
 * between the two renames would leave a pair of different steps. So the previous state is
 * first renamed to OUT.state.prev.safetensors and removed only once both new files are in
 * place; whenever the run stops, either the state or the previous state matches the weights'
 * step, and --resume (load_state) takes the one that does. */
static mvmoe_status save_all(mvmoe_model *m, const char *out, const char *settings) {
    char sp[4096], pp[4096];
    state_path(sp, sizeof sp, out);
    prev_state_path(pp, sizeof pp, out);
    char step[32], total[32];
    snprintf(step, sizeof step, "%lld", (long long)m->step);
    snprintf(total, sizeof total, "%zu", m->layout.total);
    mvmoe_st_out t[3] = {{.name = "adamw.exp_avg", .ndim = 1, .shape = {(int64_t)m->layout.total}, .data = m->adam_m},
                         {.name = "adamw.exp_avg_sq", .ndim = 1, .shape = {(int64_t)m->layout.total}, .data = m->adam_v},
                         {.name = "ema.weights", .ndim = 1, .shape = {(int64_t)m->layout.total}, .data = m->ema_mem}};
    const char *keys[] = {"step", "arena_floats", "settings"}, *vals[] = {step, total, settings};
    if (rename(sp, pp) != 0 && errno != ENOENT)
        MVMOE_FAIL(MVMOE_ERR_IO, "%s: cannot keep the previous optimizer state as %s: %s; check the "
                   "folder's permissions", sp, pp, strerror(errno));
    mvmoe_status s = mvmoe_st_write(sp, t, m->ema_mem ? 3 : 2, keys, vals, 3);
    if (s == MVMOE_OK) s = mvmoe_model_save(m, out);
    if (s != MVMOE_OK) { /* a write failed (disk full): put the previous pair back as it was */
        if (rename(pp, sp) != 0 && errno != ENOENT) unlink(sp); /* else the message stands */
        return s;
    }
    if (unlink(pp) != 0 && errno != ENOENT)
        MVMOE_FAIL(MVMOE_ERR_IO, "%s: cannot remove the previous optimizer state: %s", pp, strerror(errno));
    return m->ema_mem ? save_ema(m, out) : MVMOE_OK;
}

/* A kept copy of the weights at an epoch end (--keep-every): OUT.epochN.safetensors, a
 * checkpoint of its own for eval, --init or --upcycle; no optimizer state. */
static mvmoe_status save_kept(mvmoe_model *m, const char *out, int epoch) {
    char kp[4096];
    const char *ext = strrchr(out, '.');
    size_t stem = ext && strcmp(ext, ".safetensors") == 0 ? (size_t)(ext - out) : strlen(out);
    if ((size_t)snprintf(kp, sizeof kp, "%.*s.epoch%d.safetensors", (int)stem, out, epoch) >= sizeof kp)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: the path is too long for its kept copies (--keep-every)", out);
    return mvmoe_model_save(m, kp);
}

/* Reads the optimizer state file sp; *st = its step. */
static mvmoe_status read_state(mvmoe_model *m, const char *sp, long long *st, const char *settings) {
    mvmoe_st_file f;
    MVMOE_TRY(mvmoe_st_open(&f, sp));
    mvmoe_status s = MVMOE_OK;
    const char *step = mvmoe_st_meta(&f, "step"), *was = mvmoe_st_meta(&f, "settings");
    const mvmoe_st_tensor *tm = mvmoe_st_find(&f, "adamw.exp_avg"), *tv = mvmoe_st_find(&f, "adamw.exp_avg_sq");
    char *end = NULL;
    *st = step ? strtoll(step, &end, 10) : -1;
    if (!step || !end || *end || *st < 0 || !tm || !tv)
        s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                            "%s: not an mvmoe optimizer state (needs step, adamw.exp_avg, adamw.exp_avg_sq)", sp);
    /* a state written before settings were recorded resumes as before, unchecked */
    char diff[2048];
    if (s == MVMOE_OK && was && settings && settings_diff(diff, sizeof diff, was, settings) > 0)
        s = mvmoe_error_set(MVMOE_ERR_INVALID, __FILE__, __LINE__,
                            "--resume with settings other than the run's: %s. A resumed run continues "
                            "bit for bit only with the same ones; resume with the run's settings, or "
                            "start a new run from these weights with --init", diff);
    if (s == MVMOE_OK) s = mvmoe_st_read_f32(&f, tm, m->adam_m, m->layout.total);
    if (s == MVMOE_OK) s = mvmoe_st_read_f32(&f, tv, m->adam_v, m->layout.total);
    if (s == MVMOE_OK && m->ema_mem) {
        const mvmoe_st_tensor *te = mvmoe_st_find(&f, "ema.weights");
        if (!te)
            s = mvmoe_error_set(MVMOE_ERR_FORMAT, __FILE__, __LINE__,
                                "%s has no weight EMA (the run was started without --ema); resume "
                                "without --ema, or start a new run with it", sp);
        else
            s = mvmoe_st_read_f32(&f, te, m->ema_mem, m->layout.total);
    }
    mvmoe_st_close(&f);
    return s;
}

/* The state whose step is the weights' (the state, or the previous one kept during a save). */
static mvmoe_status load_state(mvmoe_model *m, const char *path, const char *settings) {
    char sp[4096], pp[4096];
    state_path(sp, sizeof sp, path);
    prev_state_path(pp, sizeof pp, path);
    const int have_sp = access(sp, F_OK) == 0, have_pp = access(pp, F_OK) == 0;
    long long st = -1, prev = -1;
    if (have_sp || !have_pp) {
        MVMOE_TRY(read_state(m, sp, &st, settings));
        if (m->ckpt_step < 0 || m->ckpt_step == st) {
            m->step = st;
            return MVMOE_OK;
        }
        if (!have_pp)
            MVMOE_FAIL(MVMOE_ERR_FORMAT,
                       "%s is at step %lld but its optimizer state %s is at step %lld; restart from "
                       "an earlier copy or train anew with --init %s",
                       path, (long long)m->ckpt_step, sp, st, path);
    }
    /* stopped between the two renames of a save: the previous state is the weights' */
    MVMOE_TRY(read_state(m, pp, &prev, settings));
    if (m->ckpt_step < 0 || m->ckpt_step == prev) {
        m->step = prev;
        return MVMOE_OK;
    }
    MVMOE_FAIL(MVMOE_ERR_FORMAT,
               "%s is at step %lld, but neither its optimizer state %s (step %lld) nor the previous "
               "one %s (step %lld) is; restart from an earlier copy or train anew with --init %s",
               path, (long long)m->ckpt_step, sp, st, pp, prev, path);
}

/* What makes a run impossible, found before anything is allocated. Under several ranks these
 * run after mvmoe_dist_check_inputs has shown every rank the same inputs, so they fail on
 * every rank alike. */
static mvmoe_status check_run(const mvmoe_model *m, const mvmoe_dataset *ds, int n_train,
                              const mvmoe_train_options *o, int ranks) {
    const mvmoe_config *c = &m->cfg;
    if (mvmoe_get_precision() == MVMOE_PRECISION_INT8)
        MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED,
                   "int8 is an inference precision (its products have no backward, and rounding "
                   "weights to 8 bits every step would undo small updates): train with --precision "
                   "fp32 or bf16, then run eval/predict with --precision int8 or 'mvmoe quantize'");
    MVMOE_TRY(check_options(o, n_train));
    if (c->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS && !c->superclass_of)
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "image-superclass routing trains its router on each label's super-class, but the "
                   "model has no class -> super-class map; pass --superclasses MAP.json (made by "
                   "'mvmoe superclasses') or use --routing image-learned");
    if (ds->c != c->in_chans)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "dataset %s has %d channels, the model expects %d",
                   ds->source ? ds->source : "", ds->c, c->in_chans);
    if (ds->num_classes > c->num_classes)
        MVMOE_FAIL(MVMOE_ERR_INVALID, "dataset has %d classes, the model's head only %d",
                   ds->num_classes, c->num_classes);
    /* data parallel (dist.h, docs/SCALING.md): rank r trains on images [off, off + b) of every
     * global batch of B; what would make N ranks compute other than one process is refused */
    if (ranks > 1) {
        if (o->batch < ranks)
            MVMOE_FAIL(MVMOE_ERR_INVALID, "--batch %d is smaller than the %d ranks; every rank needs "
                       "at least one image of each batch: raise --batch to %d or more, or run fewer "
                       "ranks", o->batch, ranks, ranks);
        if (o->mixup > 0 || o->cutmix > 0)
            MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED, "--mixup/--cutmix pair images across the whole batch, "
                       "which is split over %d ranks; train without them, or in one process", ranks);
        if (c->routing == MVMOE_ROUTING_IMAGE_LEARNED || c->routing == MVMOE_ROUTING_TOKEN_LEARNED)
            MVMOE_FAIL(MVMOE_ERR_UNSUPPORTED, "learned routing's importance and load losses (and "
                       "token routing's expert capacity) are statistics of the whole batch, which is "
                       "split over %d ranks; use dense or image-superclass routing, or one process", ranks);
    }
    /* expert parallel (ep.h): refused before training starts, on every rank alike */
    if (o->expert_parallel) MVMOE_TRY(mvmoe_ep_check(c, ranks));
    return MVMOE_OK;
}

mvmoe_status mvmoe_train(mvmoe_model *m, const mvmoe_dataset *ds, const int32_t *train_idx,
                         int n_train, const int32_t *val_idx, int n_val,
                         const mvmoe_train_options *o, mvmoe_progress_fn cb, void *user) {
    const mvmoe_config *c = &m->cfg;
    const int rank = mvmoe_dist_rank(), ranks = mvmoe_dist_size();
    char settings[SETTINGS_CAP];
    settings_text(settings, sizeof settings, o, n_train);
    /* several ranks: first that they all got the same inputs (a collective every rank reaches
     * before any check of its own can fail), so that the checks below fail on all or none */
    MVMOE_TRY(mvmoe_dist_check_inputs(m, ds, train_idx, n_train, val_idx, n_val, o, settings, 0));
    mvmoe_status s0 = check_run(m, ds, n_train, o, ranks);
    if (s0 != MVMOE_OK) {
        if (ranks > 1) mvmoe_dist_fail_together();
        return s0;
    }
    if (o->threads > 0) mvmoe_set_threads(o->threads);
    int off = 0, Bl = o->batch;
    mvmoe_dist_share(o->batch, rank, ranks, &off, &Bl);
    if (rank != 0) cb = NULL; /* rank 0 reports */

    const int B = o->batch, K = c->num_classes, S = c->img_size;
    const int steps_per_epoch = n_train / B; /* the last partial batch is dropped, as timm does */
    const int64_t total = (int64_t)steps_per_epoch * o->epochs;
    const int64_t warmup = (int64_t)llround((double)o->warmup_epochs * steps_per_epoch);
    MVMOE_TRY(mvmoe_model_train_init(m, Bl));
    free(m->ema_mem);
    m->ema_mem = NULL;
    if (o->ema_decay > 0) { /* starts at the initial weights; a resumed run reads its own */
        MVMOE_ALLOC_ALIGNED(m->ema_mem, m->layout.total, "weight EMA");
        memcpy(m->ema_mem, m->param_mem, sizeof(float) * m->layout.total);
    }
    if (o->resume_path) MVMOE_TRY(load_state(m, o->resume_path, settings));
    else m->step = 0;
    /* every rank, resumed or not: the same step, moments and EMA (a rank that missed --resume,
     * or read another host's older state, would otherwise train from elsewhere) */
    MVMOE_TRY(mvmoe_dist_check_inputs(m, ds, train_idx, n_train, val_idx, n_val, o, settings, 1));
    if (m->step > total) {
        if (ranks > 1) mvmoe_dist_fail_together();
        MVMOE_FAIL(MVMOE_ERR_INVALID,
                   "%s: optimizer state is at step %lld, beyond this run's %lld steps; "
                   "raise --epochs",
                   o->resume_path, (long long)m->step, (long long)total);
    }

    mvmoe_ep ep = {0};
    if (o->expert_parallel) {
        mvmoe_status se = mvmoe_ep_init(&ep, m, B, off, Bl);
        if (se != MVMOE_OK) {
            mvmoe_ep_free(&ep);
            return se;
        }
    }
    int32_t *order = calloc((size_t)n_train, sizeof *order), *labels = malloc(sizeof(int32_t) * (size_t)Bl);
    if (!order || !labels) {
        free(order);
        free(labels);
        mvmoe_ep_free(&ep);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "epoch order and label buffer (%d images)", n_train);
    }
    mvmoe_augment aug = {.crop_pad = o->crop_pad, .hflip = o->hflip, .rrc = o->rrc,
                         .randaug_n = o->randaug_n, .randaug_m = o->randaug_m,
                         .erase_prob = o->erase_prob};
    mvmoe_step_options so;
    mvmoe_step_options_from(&so, o);
    if (ranks > 1) {
        so.global_batch = B;
        so.pass.batch_offset = off;
        so.pass.batch_global = B;
    }
    mvmoe_acts *a = &m->train_acts;
    mvmoe_status s = MVMOE_OK;
    double t_start = mvmoe_clock_seconds(), t_epoch = t_start, comm_s0, comm_b0;
    mvmoe_dist_comm_take(&comm_s0, &comm_b0); /* the steps' sums only from here */
    (void)mvmoe_dist_a2a_take();
    int64_t step0 = m->step;
    mvmoe_progress pr = {.epochs = o->epochs, .steps_total = total, .steps_per_epoch = steps_per_epoch,
                         .val_acc = -1, .val_loss = -1, .train_acc = -1};
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;

    while (m->step < total && s == MVMOE_OK) {
        int epoch = (int)(m->step / steps_per_epoch), si = (int)(m->step % steps_per_epoch);
        if (si == 0 || m->step == step0) {
            /* the epoch's order depends only on (seed, epoch): resumable mid-epoch */
            for (int i = 0; i < n_train; i++) order[i] = train_idx[i];
            mvmoe_rng r;
            mvmoe_rng_init(&r, o->seed, 0x0E0C0000ull + (uint64_t)epoch);
            mvmoe_rng_shuffle_i32(&r, order, n_train);
            loss_sum = 0; /* epoch statistics cover the steps this process ran */
            correct = seen = 0;
            t_epoch = mvmoe_clock_seconds();
        }
        const int32_t *idx = order + (size_t)si * B + off; /* this rank's share */
        /* batch: augmented images, smoothed (and possibly mixed) targets */
        /* a failure here (e.g. --crop-pad larger than the image) is the real cause to report,
         * not the NaN loss an unfilled batch would give */
        /* an image's augmentation stream is its global position's, whichever rank draws it */
        s = mvmoe_augment_batch(a->img, ds, idx, Bl, S, c->mean, c->std, &aug, o->seed,
                                (uint64_t)m->step * (uint64_t)B + (uint64_t)off);
        if (s != MVMOE_OK) break;
        for (int i = 0; i < Bl; i++) labels[i] = ds->labels[idx[i]];
        mvmoe_targets_smoothed(a->targets, labels, Bl, K, o->label_smoothing);
        if (o->mixup > 0 || o->cutmix > 0)
            mvmoe_mix_batch(a->img, a->targets, B, c->in_chans, S, K, o->mixup, o->cutmix, o->seed,
                            (uint64_t)m->step);

        float lr = mvmoe_lr_at(m->step, total, warmup, o->lr, o->min_lr);
        so.adamw.lr = lr;
        mvmoe_step_result sr;
        s = o->expert_parallel ? mvmoe_train_step_ep(m, &ep, labels, &so, &sr) : mvmoe_train_step(m, labels, &so, &sr);
        if (s == MVMOE_ERR_NUMERIC) {
            char why[512]; /* the step's message without its " [file:line]" */
            snprintf(why, sizeof why, "%s", mvmoe_last_error());
            char *at = strrchr(why, '[');
            if (at && at > why) at[-1] = '\0';
            s = mvmoe_error_set(s, __FILE__, __LINE__,
                                "%s. Nothing was saved for this step; try a lower --lr or --clip", why);
            /* the check ran on the summed loss and gradient: every rank stops here alike */
            if (ranks > 1) mvmoe_dist_fail_together();
        }
        if (s != MVMOE_OK) break;
        const double loss = sr.loss, gnorm = sr.grad_norm;
        if (m->ema_mem) { /* DeiT/timm ModelEma: ema = d·ema + (1 − d)·w after every step */
            const float d = o->ema_decay, *w = m->param_mem;
            float *e = m->ema_mem;
            const long long nt = (long long)m->layout.total;
#pragma omp parallel for schedule(static) if (nt > 65536)
            for (long long i = 0; i < nt; i++) e[i] = d * e[i] + (1.0f - d) * w[i];
        }

        int64_t right = 0;
        for (int i = 0; i < Bl; i++) {
            const float *row = a->logits + (size_t)i * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (row[k] > row[best]) best = k;
            right += best == labels[i];
        }
        /* the stop flag too: a signal to any rank stops all of them after this same step */
        int stop = __atomic_exchange_n(&stop_requested, 0, __ATOMIC_RELAXED);
        if (ranks > 1) {
            double v[2] = {(double)right, (double)stop};
            s = mvmoe_dist_allreduce_sum_f64(v, 2);
            if (s != MVMOE_OK) break;
            right = (int64_t)v[0];
            stop = v[1] > 0;
        }
        mvmoe_dist_comm_take(&pr.comm_s, &pr.comm_bytes); /* this step's sums */
        pr.a2a_bytes = mvmoe_dist_a2a_take();
        correct += right;
        seen += B;
        loss_sum += loss;

        double t = mvmoe_clock_seconds();
        pr.epoch = epoch + 1;
        pr.step = m->step;
        pr.step_in_epoch = si + 1;
        pr.loss = (float)loss;
        pr.lr = lr;
        pr.grad_norm = (float)gnorm;
        pr.elapsed_s = t - t_start;
        pr.images_per_s = (double)(m->step - step0) * B / (t - t_start);
        pr.eta_s = (double)(total - m->step) * B / (pr.images_per_s > 0 ? pr.images_per_s : 1);
        pr.event = 0;
        if (cb) cb(&pr, user);

        int epoch_end = si + 1 == steps_per_epoch;
        if (epoch_end) {
            pr.event = 1;
            pr.loss = (float)(loss_sum * B / (seen > 0 ? seen : 1));
            pr.train_acc = seen ? (float)correct / (float)seen : -1;
            pr.images_per_s = (double)seen / (t - t_epoch);
            pr.val_acc = pr.val_loss = -1;
            int last = m->step == total;
            /* expert parallel: every expert's state from its rank, for validation and the save */
            if (o->expert_parallel) s = mvmoe_ep_sync(m, &ep);
            if (s != MVMOE_OK) break;
            /* several ranks: still the same state everywhere, before rank 0 saves it as the run's */
            s = mvmoe_dist_check_inputs(m, ds, train_idx, n_train, val_idx, n_val, o, settings, 2);
            if (s != MVMOE_OK) break;
            if (rank == 0 && n_val > 0 && ((o->eval_every > 0 && (epoch + 1) % o->eval_every == 0) || last)) {
                mvmoe_eval_result r;
                s = mvmoe_evaluate(m, ds, val_idx, n_val, B, &r, NULL);
                if (s != MVMOE_OK) break;
                pr.val_acc = (float)r.top1;
                pr.val_loss = (float)r.loss;
                mvmoe_eval_result_free(&r);
            }
            if (rank == 0 && o->out_path) s = save_all(m, o->out_path, settings);
            if (s == MVMOE_OK && rank == 0 && o->out_path && o->keep_every > 0 && (epoch + 1) % o->keep_every == 0)
                s = save_kept(m, o->out_path, epoch + 1);
            if (cb) cb(&pr, user);
        }
        if (s == MVMOE_OK && stop && !epoch_end && o->expert_parallel) s = mvmoe_ep_sync(m, &ep);
        if (s == MVMOE_OK && stop) {
            if (rank == 0 && o->out_path && !epoch_end) s = save_all(m, o->out_path, settings);
            if (s == MVMOE_OK)
                s = mvmoe_error_set(MVMOE_ERR_INTERRUPTED, __FILE__, __LINE__,
                                    "interrupted at step %lld%s%s", (long long)m->step,
                                    o->out_path ? "; checkpoint saved to " : "",
                                    o->out_path ? o->out_path : "");
        }
        if (o->max_steps > 0 && m->step - step0 >= o->max_steps) break;
    }
    /* expert parallel: the whole model on every rank again (the caller's test evaluation and
     * the save below read it); every rank gets here after the same step, or failed alike */
    if (s == MVMOE_OK && o->expert_parallel && m->step % steps_per_epoch != 0) s = mvmoe_ep_sync(m, &ep);
    /* stopped early (--max-steps) between epoch ends: save so --resume can continue */
    if (s == MVMOE_OK && rank == 0 && o->out_path && m->step % steps_per_epoch != 0 && m->step != step0)
        s = save_all(m, o->out_path, settings);
    if (s == MVMOE_OK && cb) {
        pr.event = 2;
        pr.step = m->step;
        pr.elapsed_s = mvmoe_clock_seconds() - t_start;
        cb(&pr, user);
    }
    free(order);
    free(labels);
    mvmoe_ep_free(&ep);
    return s;
}
