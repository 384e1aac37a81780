/* mvmoe train: builds (or loads) a model, trains it on a dataset's train split with a held-out
 * validation part, saves it, and reports its accuracy on the test split. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "mvmoe.h"
#include "progress.h"
#include "stopsig.h"
#include "train_args.h"

#define TEST_BATCH 256

/* ---------------------------------------------------------------- model set-up */

/* Per-channel mean and std of pixel/255 over the training images. Integer sums are exact
 * (255^2 * 2^31 images * 2^24 pixels still fits in 64 bits), so the variance E[x^2]-E[x]^2
 * suffers no accumulated rounding. */
static void dataset_mean_std(const mvmoe_dataset *ds, const int32_t *idx, int n, float *mean,
                             float *std) {
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    for (int c = 0; c < ds->c; c++) {
        uint64_t s = 0, ss = 0;
        for (int i = 0; i < n; i++) {
            const uint8_t *p = ds->images + ((size_t)idx[i] * (size_t)ds->c + (size_t)c) * hw;
            uint64_t s1 = 0, s2 = 0;
            for (size_t j = 0; j < hw; j++) {
                s1 += p[j];
                s2 += (uint64_t)p[j] * p[j];
            }
            s += s1;
            ss += s2;
        }
        double count = (double)n * (double)hw;
        double m = (double)s / (count * 255.0);
        double var = (double)ss / (count * 255.0 * 255.0) - m * m;
        mean[c] = (float)m;
        /* A constant channel (var 0) would divide by zero when normalizing; 1 leaves it as is. */
        std[c] = var > 1e-12 ? (float)sqrt(var) : 1.0f;
    }
}

/* super-class of each fine class, read off the coarse labels (CIFAR-100) */
static int superclass_map(const mvmoe_dataset *ds, mvmoe_config *c) {
    int *map = malloc(sizeof(int) * (size_t)ds->num_classes);
    if (!map) {
        fprintf(stderr, "mvmoe train: error: out of memory for the %d-class super-class map\n", ds->num_classes);
        return MVMOE_EXIT_FAIL;
    }
    for (int k = 0; k < ds->num_classes; k++) map[k] = -1;
    for (int i = 0; i < ds->n; i++) {
        int y = ds->labels[i], s = ds->coarse[i];
        if (map[y] >= 0 && map[y] != s) {
            fprintf(stderr, "mvmoe train: error: class %d of '%s' has images under two super-classes (%d and %d)\n",
                    y, ds->source ? ds->source : "?", map[y], s);
            free(map);
            return MVMOE_EXIT_FAIL;
        }
        map[y] = s;
    }
    for (int k = 0; k < ds->num_classes; k++)
        if (map[k] < 0) {
            fprintf(stderr, "mvmoe train: error: class %d has no training image to tell its super-class; use more images (--max-images)\n", k);
            free(map);
            return MVMOE_EXIT_FAIL;
        }
    free(c->superclass_of);
    c->superclass_of = map;
    return 0;
}

/* A fresh config, first part: the preset, then the model flags. Done before reading the data
 * so that a mistyped preset fails at once. */
static int preset_config(const train_args *t, mvmoe_config *c) {
    const char *preset = t->preset ? t->preset : MVMOE_TRAIN_DEFAULT_PRESET;
    if (mvmoe_config_preset(c, preset) != MVMOE_OK) {
        fprintf(stderr, "mvmoe train: invalid value '%s' for --preset: %s\n", preset, mvmoe_last_error());
        return MVMOE_EXIT_USAGE;
    }
    mvmoe_cli_shape_apply_sizes(&t->shape, c);
    if (t->routing_given) c->routing = t->routing;
    else if (t->superclasses) c->routing = MVMOE_ROUTING_IMAGE_SUPERCLASS;
    if (c->routing != MVMOE_ROUTING_DENSE) {
        /* the paper's best setting is L = 2 MoE blocks, k = 1 (Sec. 4); E = 4 suits 10 classes */
        if (c->experts == 0) c->experts = 4;
        if (c->moe_layers == 0) c->moe_layers = 2;
    }
    mvmoe_cli_shape_apply_moe(&t->shape, c);
    /* Catch shape mistakes (heads not dividing dim, ...) before a long dataset read. The image
     * size may still change to the dataset's, so the probe uses one that every patch divides. */
    mvmoe_config probe = *c; /* the preset owns no names/maps yet: a shallow copy is safe */
    if (t->shape.img_size <= 0) probe.img_size = probe.patch;
    if (mvmoe_config_validate(&probe) != MVMOE_OK) {
        fprintf(stderr, "mvmoe train: %s\nAdjust the model flags (or --preset); see 'mvmoe train --help'.\n",
                mvmoe_last_error());
        return MVMOE_EXIT_USAGE;
    }
    return 0;
}

/* Second part: what the dataset says (channels, size unless --img-size, classes, names,
 * input statistics of the training images), then the whole config is checked. */
static int dataset_config(const train_args *t, const mvmoe_dataset *ds, const int32_t *train_idx,
                          int n_train, mvmoe_config *c) {
    if (t->shape.in_chans > 0 && t->shape.in_chans != ds->c) {
        fprintf(stderr, "mvmoe train: --in-chans %d does not match the %d channel(s) of the images in '%s'\n",
                t->shape.in_chans, ds->c, t->data);
        return MVMOE_EXIT_USAGE;
    }
    if (ds->c < 1 || ds->c > MVMOE_MAX_CHANNELS) {
        fprintf(stderr, "mvmoe train: error: the images in '%s' have %d channels; at most %d are supported\n",
                t->data, ds->c, MVMOE_MAX_CHANNELS);
        return MVMOE_EXIT_FAIL;
    }
    c->in_chans = ds->c;
    c->img_size = t->shape.img_size > 0 ? t->shape.img_size : ds->h;
    c->num_classes = ds->num_classes;
    dataset_mean_std(ds, train_idx, n_train, c->mean, c->std);
    if (ds->class_names &&
        mvmoe_config_set_class_names(c, (const char *const *)ds->class_names, ds->num_classes) != MVMOE_OK)
        return mvmoe_cli_fail("train");
    if (t->superclasses) {
        int *map = malloc(sizeof(int) * (size_t)ds->num_classes), E = 0;
        if (!map) {
            fprintf(stderr, "mvmoe train: error: out of memory for the super-class map\n");
            return MVMOE_EXIT_FAIL;
        }
        if (mvmoe_superclass_map_load(t->superclasses, ds->num_classes, map, &E) != MVMOE_OK) {
            free(map);
            return mvmoe_cli_fail_flag("train", "--superclasses");
        }
        if (t->shape.experts < 0) {
            c->experts = E; /* one expert per super-class, as in the paper */
        } else if (E > c->experts) {
            fprintf(stderr, "mvmoe train: error: '%s' has %d super-classes but --experts is %d; give at least one expert per super-class\n",
                    t->superclasses, E, c->experts);
            free(map);
            return MVMOE_EXIT_USAGE;
        }
        if (c->top_k > c->experts) c->top_k = c->experts;
        free(c->superclass_of);
        c->superclass_of = map;
    } else if (c->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS && ds->coarse) {
        int rc = superclass_map(ds, c);
        if (rc) return rc;
        if (t->shape.experts < 0) c->experts = ds->num_coarse;
    }
    if (mvmoe_config_validate(c) != MVMOE_OK) {
        fprintf(stderr, "mvmoe train: %s\nAdjust the model flags (or --preset); see 'mvmoe train --help'.\n",
                mvmoe_last_error());
        return MVMOE_EXIT_USAGE;
    }
    return 0;
}

/* A loaded model (--resume / --init) must fit the dataset as it is. */
static int check_loaded(const train_args *t, mvmoe_model *m, const mvmoe_dataset *ds) {
    const mvmoe_config *c = mvmoe_model_config(m);
    const char *ckpt = t->resume ? t->out : t->init;
    if (c->in_chans != ds->c || c->num_classes != ds->num_classes) {
        fprintf(stderr, "mvmoe train: error: checkpoint '%s' takes %d channel(s) and %d classes, but '%s' has %d channel(s) and %d classes\n",
                ckpt, c->in_chans, c->num_classes, t->data, ds->c, ds->num_classes);
        return MVMOE_EXIT_FAIL;
    }
    if (!c->class_names && ds->class_names &&
        mvmoe_config_set_class_names(mvmoe_model_config_mut(m), (const char *const *)ds->class_names,
                                     ds->num_classes) != MVMOE_OK)
        return mvmoe_cli_fail("train");
    return 0;
}

/* ---------------------------------------------------------------- test split */

static int evaluate_test(const train_args *t, mvmoe_model *m, int load_size, const char *which) {
    mvmoe_dataset test;
    memset(&test, 0, sizeof test);
    mvmoe_status ls = mvmoe_dataset_load(&test, t->data, "test", load_size, t->max_images);
    if (ls == MVMOE_ERR_IO) {
        /* A dataset without a test split is normal for image folders; say so and finish. */
        printf("test: not evaluated (%s)\n", mvmoe_last_error());
        mvmoe_dataset_free(&test);
        return 0;
    }
    /* a test split that is there but corrupt, or that does not fit the model trained on the
     * train split (other channels, image size or classes), is an error, not a skipped test */
    const mvmoe_config *c = mvmoe_model_config(m);
    if (ls == MVMOE_OK && (test.c != c->in_chans || test.h != c->img_size || test.w != c->img_size ||
                           test.num_classes > c->num_classes)) {
        fprintf(stderr, "mvmoe train: error: the test split of '%s' has %d channel(s) of %dx%d and %d "
                "classes, but the model trained on its train split takes %d channel(s) of %dx%d and "
                "%d classes; fix the test files\n", t->data, test.c, test.h, test.w, test.num_classes,
                c->in_chans, c->img_size, c->img_size, c->num_classes);
        mvmoe_dataset_free(&test);
        return MVMOE_EXIT_FAIL;
    }
    if (ls == MVMOE_OK &&
        mvmoe_dataset_match_classes(&test, (const char *const *)c->class_names, c->num_classes) != MVMOE_OK)
        ls = MVMOE_ERR_FORMAT;
    if (ls != MVMOE_OK) {
        mvmoe_dataset_free(&test);
        return mvmoe_cli_fail("train");
    }
    mvmoe_eval_result r;
    memset(&r, 0, sizeof r);
    int rc = 0;
    if (mvmoe_evaluate(m, &test, NULL, test.n, TEST_BATCH, &r, NULL) != MVMOE_OK) {
        rc = mvmoe_cli_fail("train");
    } else {
        printf("test%s: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%d images of '%s')\n", which, 100.0 * r.top1,
               100.0 * r.top5, r.loss, r.n, t->data);
    }
    mvmoe_eval_result_free(&r);
    mvmoe_dataset_free(&test);
    return rc;
}

/* ---------------------------------------------------------------- the command */

/* The checkpoint is first written after a whole epoch: an --out that cannot be written (a
 * folder, a device, a missing or read-only folder) must fail now, not after an hour of
 * training; so must the files written beside it. */
static int check_out_folder(const char *out) {
    static const char *const suffix[] = {"", ".state.safetensors", ".ema.safetensors"};
    char side[4096];
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        if (snprintf(side, sizeof side, "%s%s", out, suffix[i]) >= (int)sizeof side ||
            mvmoe_output_check(side, i ? "the file beside --out" : "--out") != MVMOE_OK)
            return mvmoe_cli_fail("train");
    }
    return 0;
}

static int run(train_args *t) {
    mvmoe_config cfg;
    mvmoe_dataset ds;
    memset(&cfg, 0, sizeof cfg);
    memset(&ds, 0, sizeof ds);
    mvmoe_model *m = NULL;
    int32_t *train_idx = NULL, *val_idx = NULL;
    int n_train = 0, n_val = 0, rc = 0;
    char *metrics_path = NULL;
    mvmoe_cli_progress prog;
    int prog_open = 0;

    if (t->threads_given) mvmoe_set_threads(t->o.threads);
    const int rank = mvmoe_dist_rank(); /* under mpirun only rank 0 writes files and reports */
    if (rank == 0 && (rc = check_out_folder(t->out)) != 0) goto done;

    const char *ckpt = t->resume ? t->out : t->init;
    if (ckpt) {
        mvmoe_load_options lo;
        memset(&lo, 0, sizeof lo);
        lo.img_size = t->shape.img_size > 0 ? t->shape.img_size : 0;
        if (mvmoe_model_load(&m, ckpt, &lo) != MVMOE_OK) {
            rc = mvmoe_cli_fail_flag("train", t->resume ? "--resume (the --out checkpoint)" : "--init");
            goto done;
        }
    } else if ((rc = preset_config(t, &cfg)) != 0) {
        goto done;
    }
    /* Image folders are resized when read; fixed-size formats (IDX, CIFAR) are read as they are. */
    int load_size = 0;
    if (mvmoe_cli_is_image_folder(t->data, "train"))
        load_size = m ? mvmoe_model_config(m)->img_size : cfg.img_size;
    if (mvmoe_dataset_load(&ds, t->data, "train", load_size, t->max_images) != MVMOE_OK) {
        rc = mvmoe_cli_fail_flag("train", "--data");
        goto done;
    }
    if (mvmoe_dataset_split(&ds, t->o.val_fraction, t->o.seed, &train_idx, &n_train, &val_idx,
                            &n_val) != MVMOE_OK) {
        rc = mvmoe_cli_fail("train");
        goto done;
    }
    if (n_train < 1) {
        fprintf(stderr, "mvmoe train: error: no training images left in '%s' after holding out %g for validation; lower --val-fraction or raise --max-images\n",
                t->data, (double)t->o.val_fraction);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    if (m) {
        rc = check_loaded(t, m, &ds);
        if (rc == 0) /* before the training state is allocated; the weights already are */
            rc = mvmoe_cli_memlimit_check("train", &t->mem, mvmoe_model_config(m), t->o.batch,
                                          t->o.ema_decay > 0 ? 2 : 1, 1);
    } else {
        rc = dataset_config(t, &ds, train_idx, n_train, &cfg);
        if (rc == 0)
            rc = mvmoe_cli_memlimit_check("train", &t->mem, &cfg, t->o.batch,
                                          t->o.ema_decay > 0 ? 2 : 1, 0);
        if (rc == 0 && mvmoe_model_create(&m, &cfg, t->o.seed) != MVMOE_OK) rc = mvmoe_cli_fail("train");
        if (rc == 0 && t->upcycle) {
            mvmoe_model *dense = NULL;
            if (mvmoe_model_load(&dense, t->upcycle, NULL) != MVMOE_OK)
                rc = mvmoe_cli_fail_flag("train", "--upcycle");
            else if (mvmoe_model_upcycle(m, dense) != MVMOE_OK)
                rc = mvmoe_cli_fail("train");
            if (dense) mvmoe_model_free(dense);
        }
    }
    if (rc) goto done;

    if (rank != 0) goto train; /* no metrics file, no report */
    if (!t->metrics) {
        size_t len = strlen(t->out) + sizeof ".metrics.jsonl";
        metrics_path = malloc(len);
        if (!metrics_path) {
            fprintf(stderr, "mvmoe train: error: out of memory\n");
            rc = MVMOE_EXIT_FAIL;
            goto done;
        }
        snprintf(metrics_path, len, "%s.metrics.jsonl", t->out);
    }
    const char *mpath = t->metrics ? t->metrics : metrics_path;
    if (mvmoe_cli_progress_open(&prog, mpath, t->resume) != 0) {
        fprintf(stderr, "mvmoe train: error: cannot open metrics file '%s' for writing: %s; check the folder exists or pass --metrics FILE\n",
                mpath, strerror(errno));
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    prog_open = 1;
    if (t->metrics_every > 0) prog.metrics_every = t->metrics_every;

    const mvmoe_config *mc = mvmoe_model_config(m);
    printf("data: '%s' train split: %d images (%d train, %d validation), %d classes, %dx%dx%d\n",
           t->data, ds.n, n_train, n_val, ds.num_classes, ds.c, ds.h, ds.w);
    if (t->resume) printf("resuming: '%s'\n", t->out);
    else if (t->init) printf("initialized from: '%s'\n", t->init);
    else if (t->upcycle) printf("upcycled from dense: '%s'\n", t->upcycle);
    mvmoe_cli_print_config(stdout, mc, 1);
    printf("training: epochs %d, batch %d, lr %g -> %g, warmup %g epochs, weight decay %g, seed %llu%s\n",
           t->o.epochs, t->o.batch, (double)t->o.lr, (double)t->o.min_lr, (double)t->o.warmup_epochs,
           (double)t->o.weight_decay, (unsigned long long)t->o.seed,
           t->o.max_steps > 0 ? " (stops early: --max-steps)" : "");
    if (mvmoe_get_precision() != MVMOE_PRECISION_FP32)
        printf("precision: %s products (--precision; results are not fp32's)\n",
               mvmoe_precision_name(mvmoe_get_precision()));
    if (mvmoe_dist_size() > 1)
        printf("data parallel: %d ranks, each with its share of every batch of %d%s (docs/SCALING.md)\n",
               mvmoe_dist_size(), t->o.batch,
               mvmoe_dist_overlap() && !t->o.expert_parallel ? "; gradient sums overlapped with the backward" : "");
    if (t->o.expert_parallel && mc->experts % mvmoe_dist_size() == 0 &&
        (mc->routing == MVMOE_ROUTING_IMAGE_SUPERCLASS || mc->routing == MVMOE_ROUTING_IMAGE_LEARNED))
        printf("expert parallel: %d experts per rank; each image's activations go to its %sexpert's rank "
               "after block %d%s (docs/SCALING.md)\n", mc->experts / mvmoe_dist_size(), mc->top_k > 1 ? "first " : "",
               mc->depth - mc->moe_layers,
               mc->top_k > 1 ? "; its other experts' inputs and outputs travel at every MoE block" : "");
    fflush(stdout);

train:
    t->o.out_path = t->out;
    t->o.resume_path = t->resume ? t->out : NULL;
    mvmoe_cli_stopsig_arm(1); /* SIGINT/SIGTERM: save and exit 130 (stopsig.h) */
    mvmoe_status st = mvmoe_train(m, &ds, train_idx, n_train, val_idx, n_val, &t->o,
                                  prog_open ? mvmoe_cli_progress_fn : NULL, &prog);
    mvmoe_cli_stopsig_arm(0);
    if (prog_open) mvmoe_cli_progress_clear(&prog);
    if (st == MVMOE_ERR_INTERRUPTED && rank != 0) {
        rc = MVMOE_EXIT_INTERRUPTED; /* rank 0 saved and says so */
        goto done;
    }
    if (st == MVMOE_ERR_INTERRUPTED) {
        if (prog.last_step > 0)
            fprintf(stderr, "mvmoe train: interrupted after step %lld; checkpoint saved to '%s' (continue with --resume)\n",
                    prog.last_step, t->out);
        else
            fprintf(stderr, "mvmoe train: interrupted before the first step; nothing new to save\n");
        rc = MVMOE_EXIT_INTERRUPTED;
        goto done;
    }
    if (st != MVMOE_OK) {
        rc = mvmoe_cli_fail("train");
        goto done;
    }
    if (rank != 0) goto done; /* the weights are rank 0's, bit for bit */
    if (mvmoe_model_save(m, t->out) != MVMOE_OK) {
        rc = mvmoe_cli_fail("train");
        goto done;
    }
    printf("saved: '%s'\n", t->out);
    fflush(stdout);
    rc = evaluate_test(t, m, load_size, "");
    if (rc == 0 && t->o.ema_decay > 0) { /* the EMA weights were saved next to the checkpoint */
        size_t n = strlen(t->out) + 32;
        char *ep = malloc(n);
        mvmoe_model *me = NULL;
        mvmoe_load_options lo;
        memset(&lo, 0, sizeof lo);
        lo.img_size = mvmoe_model_config(m)->img_size;
        if (!ep) {
            fprintf(stderr, "mvmoe train: error: out of memory\n");
            rc = MVMOE_EXIT_FAIL;
        } else {
            snprintf(ep, n, "%s.ema.safetensors", t->out);
            if (mvmoe_model_load(&me, ep, &lo) != MVMOE_OK) rc = mvmoe_cli_fail("train");
            else {
                printf("saved: '%s' (EMA of the weights, decay %g)\n", ep, (double)t->o.ema_decay);
                rc = evaluate_test(t, me, load_size, " (EMA weights)");
            }
        }
        mvmoe_model_free(me);
        free(ep);
    }

done:
    if (prog_open && mvmoe_cli_progress_close(&prog) != 0 && rc == 0) rc = MVMOE_EXIT_FAIL;
    free(metrics_path);
    free(train_idx);
    free(val_idx);
    if (m) mvmoe_model_free(m);
    mvmoe_dataset_free(&ds);
    mvmoe_config_free(&cfg);
    return rc;
}

int mvmoe_cmd_train(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        mvmoe_train_args_help();
        return MVMOE_EXIT_OK;
    }
    train_args t;
    int rc = mvmoe_train_args_parse(&t, argc, argv);
    if (rc) return rc;
    /* before any thread exists, so that every thread inherits the blocked signals */
    if (mvmoe_cli_stopsig_start() != 0)
        fprintf(stderr, "mvmoe train: warning: cannot start the signal thread (%s); Ctrl-C and SIGTERM will stop training without saving a checkpoint\n",
                strerror(errno));
    /* after the signals are blocked, so that MPI's threads inherit the mask; a no-op unless
     * launched by mpirun */
    if (mvmoe_dist_init() != MVMOE_OK) return mvmoe_cli_fail("train");
    const int rank = mvmoe_dist_rank(), ranks = mvmoe_dist_size();
    /* a signal meant for the job may reach only mpirun, which can then exit without passing
     * it on (stopsig.c): the rank stops and saves when mpirun goes away */
    if (ranks > 1 && mvmoe_cli_stopsig_launched() != 0)
        fprintf(stderr, "mvmoe train: rank %d: warning: cannot watch for the end of mpirun (%s); a signal to the "
                "whole process group (GNU timeout) may end the job without the stop-step checkpoint\n", rank, strerror(errno));
    /* the other ranks are quiet: rank 0 prints the run; errors still go to each one's stderr */
    if (rank != 0 && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "mvmoe train: rank %d: warning: cannot silence stdout: %s\n", rank, strerror(errno));
    rc = run(&t);
    if (ranks > 1 && rc != 0 && rc != MVMOE_EXIT_INTERRUPTED && !mvmoe_dist_failed_together()) {
        /* the others wait in the next collective: end them all now, naming the cause */
        fprintf(stderr, "mvmoe train: rank %d: failed (exit %d, its error above); aborting all %d ranks\n",
                rank, rc, ranks);
        mvmoe_dist_abort(rc);
    }
    mvmoe_dist_finalize();
    return rc;
}
