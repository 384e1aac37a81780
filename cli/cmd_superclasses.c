/* mvmoe superclasses: the class -> super-class map of paper Sec. 3.2. A dense model's
 * confusion matrix on the validation images its training held out (same --val-fraction and
 * --seed as `mvmoe train`, hence the same images) is cut into E balanced groups of classes it
 * confuses with each other; each MoE expert then specializes on one group. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "mvmoe.h"

#define MAX_EXPERTS 16384

static const char SYNOPSIS[] =
    "usage: mvmoe superclasses --model DENSE.safetensors --data DIR --experts E --out MAP.json\n"
    "                          [--method metis|spectral] [--val-fraction 0.1] [--seed 0]\n"
    "                          [--split val|test] [--listing MAP.txt] [--json] [--batch 256]\n"
    "                          [--threads N] [--max-images N]\n"
    "       mvmoe superclasses --confusion EVAL.json --experts E --out MAP.json [...]\n";

static void print_help(void) {
    printf("%s\n", SYNOPSIS);
    printf("Groups the classes into E super-classes, one per expert (paper Sec. 3.2): evaluates a\n"
           "dense model on the validation images held out of DIR's train split, builds the\n"
           "confusion graph (edge i-j weighted by C[i][j] + C[j][i]: how often the two classes\n"
           "are mistaken for each other) and cuts it into E balanced groups, so that classes\n"
           "that look alike share an expert. Prints the groups and how much of the confusion\n"
           "stays inside them, and writes the map for 'mvmoe train --routing image-superclass'.\n\n"
           "  --model M            the dense checkpoint (.safetensors)\n"
           "  --data DIR           its dataset (IDX, CIFAR binary, or DIR/SPLIT/CLASS/*)\n"
           "  --confusion F        instead of --model/--data: the output of 'mvmoe eval --json'\n"
           "                       (its \"confusion\" matrix and \"class_names\")\n"
           "  --experts E          number of super-classes, 1..classes (required)\n"
           "  --out MAP.json       the map to write (required): superclass_of, experts, sizes,\n"
           "                       groups (class names), method, source\n"
           "  --listing F          also write the text listing to F\n"
           "  --method NAME        metis (graph partitioning, the paper's; default) or spectral\n"
           "                       (normalized-Laplacian embedding + k-means)\n"
           "  --val-fraction X     fraction of the train split held out (default 0.1); use the\n"
           "                       value and --seed the model was trained with: the same images\n"
           "  --seed N             split seed and partition seed (default 0)\n"
           "  --split NAME         val (default: the held-out images, the paper's protocol) or\n"
           "                       test (the test split; NOT the paper's protocol: it looks at\n"
           "                       the data you will report accuracy on)\n"
           "  --json               print one JSON object instead of the text listing\n"
           "  --batch N            images per forward pass (default 256)\n"
           "  --threads N          threads (0: all cores; default: OMP_NUM_THREADS or all)\n"
           "  --max-images N       read only the first N images of the split (0: all); for\n"
           "                       --split val, use the value training used\n"
           MVMOE_CLI_LOAD_FLAGS
           "\nExit status: 0 done, 1 failure (message names the file), 2 usage error.\n");
}

typedef struct sc_args {
    const char *model, *data, *confusion, *out, *listing, *split, *method_name;
    mvmoe_partition_method method;
    float val_fraction;
    uint64_t seed;
    int experts, json, batch, threads, threads_given, max_images, val_given;
    mvmoe_cli_load load;
} sc_args;

static int parse(sc_args *s, int argc, char **argv) {
    memset(s, 0, sizeof *s);
    s->split = "val";
    s->method_name = "metis";
    s->val_fraction = 0.1f;
    s->batch = 256;
    mvmoe_cli_load_init(&s->load);
    mvmoe_args a;
    mvmoe_args_init(&a, "superclasses", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0, load_flags = 0, data_flags = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) return mvmoe_args_error(&a, "unexpected argument '%s' (give the model with --model and the dataset with --data)", pos);
        if (mvmoe_cli_load_flag(&a, &s->load, &rc)) { load_flags = 1; continue; }
        if (mvmoe_args_is(&a, "--model")) rc = mvmoe_args_str(&a, &s->model);
        else if (mvmoe_args_is(&a, "--data")) rc = mvmoe_args_str(&a, &s->data);
        else if (mvmoe_args_is(&a, "--confusion")) rc = mvmoe_args_str(&a, &s->confusion);
        else if (mvmoe_args_is(&a, "--experts")) rc = mvmoe_args_int(&a, 1, MAX_EXPERTS, &s->experts);
        else if (mvmoe_args_is(&a, "--out")) rc = mvmoe_args_str(&a, &s->out);
        else if (mvmoe_args_is(&a, "--listing")) rc = mvmoe_args_str(&a, &s->listing);
        else if (mvmoe_args_is(&a, "--method")) rc = mvmoe_args_str(&a, &s->method_name);
        else if (mvmoe_args_is(&a, "--val-fraction")) { rc = mvmoe_args_float(&a, 0, 1, MVMOE_ARGS_LO_OPEN | MVMOE_ARGS_HI_OPEN, &s->val_fraction); s->val_given = data_flags = 1; }
        else if (mvmoe_args_is(&a, "--seed")) rc = mvmoe_args_u64(&a, &s->seed);
        else if (mvmoe_args_is(&a, "--split")) { rc = mvmoe_args_str(&a, &s->split); data_flags = 1; }
        else if (mvmoe_args_is(&a, "--json")) { rc = mvmoe_args_switch(&a); s->json = 1; }
        else if (mvmoe_args_is(&a, "--batch")) { rc = mvmoe_args_int(&a, 1, 65536, &s->batch); data_flags = 1; }
        else if (mvmoe_args_is(&a, "--threads")) { rc = mvmoe_args_int(&a, 0, 4096, &s->threads); s->threads_given = 1; }
        else if (mvmoe_args_is(&a, "--max-images")) { rc = mvmoe_args_int(&a, 0, 2147483647L, &s->max_images); data_flags = 1; }
        else return mvmoe_args_unknown(&a);
    }
    if (rc) return rc;
    if (strcmp(s->method_name, "metis") == 0) s->method = MVMOE_PARTITION_METIS;
    else if (strcmp(s->method_name, "spectral") == 0) s->method = MVMOE_PARTITION_SPECTRAL;
    else return mvmoe_args_error(&a, "invalid value '%s' for --method: use metis or spectral", s->method_name);
    if (s->confusion) {
        if (s->model || s->data)
            return mvmoe_args_error(&a, "--confusion replaces --model and --data; give one or the other");
        if (load_flags || data_flags)
            return mvmoe_args_error(&a, "--split, --val-fraction, --batch, --max-images and the load flags need --model/--data, not --confusion");
    } else {
        if (!s->model) return mvmoe_args_error(&a, "--model DENSE.safetensors (or --confusion EVAL.json) is required");
        if (!s->data) return mvmoe_args_error(&a, "--data DIR is required with --model");
    }
    if (strcmp(s->split, "val") != 0 && strcmp(s->split, "test") != 0)
        return mvmoe_args_error(&a, "invalid value '%s' for --split: use val or test", s->split);
    if (s->val_given && strcmp(s->split, "test") == 0)
        return mvmoe_args_error(&a, "--val-fraction applies to --split val, not to --split test");
    if (!s->experts) return mvmoe_args_error(&a, "--experts E is required");
    if (!s->out) return mvmoe_args_error(&a, "--out MAP.json is required");
    return mvmoe_cli_load_finish(&a, &s->load);
}

/* ---------------------------------------------------------------- the confusion matrix */

/* What the partition works on, from either source. */
typedef struct confusion_src {
    int K, n;          /* classes; images evaluated (0: unknown) */
    int64_t *C;        /* [K*K] row = true, col = predicted */
    char **names;      /* [K] owned, entries may be NULL; or NULL */
    double top1;       /* < 0: unknown */
    char source[1024]; /* one line for the map's "source" */
} confusion_src;

static void confusion_free(confusion_src *c) {
    if (c->names)
        for (int k = 0; k < c->K; k++) free(c->names[k]);
    free(c->names);
    free(c->C);
    memset(c, 0, sizeof *c);
}

/* The matrix of an eval JSON file, read by the library's one reader of that format (the one
 * `mvmoe report` uses): every field present is checked, a bad one named with its file. */
static int confusion_from_json(const char *path, confusion_src *c) {
    mvmoe_eval_confusion e;
    if (mvmoe_eval_confusion_load(path, &e) != MVMOE_OK) return mvmoe_cli_fail_flag("superclasses", "--confusion");
    c->K = e.K;
    c->n = e.n;
    c->top1 = e.top1;
    c->C = e.confusion; /* now owned by c */
    c->names = e.class_names;
    snprintf(c->source, sizeof c->source, "confusion matrix from '%s'", path);
    return 0;
}

/* The model's confusion on the held-out validation images (or the test split). */
static int confusion_from_model(const sc_args *s, confusion_src *cs) {
    mvmoe_model *m = NULL;
    mvmoe_dataset ds;
    memset(&ds, 0, sizeof ds);
    mvmoe_eval_result r;
    memset(&r, 0, sizeof r);
    int32_t *train_idx = NULL, *val_idx = NULL;
    int n_train = 0, n_val = 0, rc = 0;
    int use_val = strcmp(s->split, "val") == 0;
    const char *split = use_val ? "train" : "test";

    if (mvmoe_model_load(&m, s->model, &s->load.o) != MVMOE_OK) {
        rc = mvmoe_cli_fail_flag("superclasses", "--model");
        goto done;
    }
    const mvmoe_config *c = mvmoe_model_config(m);
    int load_size = mvmoe_cli_is_image_folder(s->data, split) ? c->img_size : 0;
    if (mvmoe_dataset_load(&ds, s->data, split, load_size, s->max_images) != MVMOE_OK) {
        rc = mvmoe_cli_fail_flag("superclasses", "--data");
        goto done;
    }
    if (ds.c != c->in_chans || ds.num_classes > c->num_classes) {
        fprintf(stderr, "mvmoe superclasses: error: model '%s' takes %d channel(s) and %d classes, but the %s split of '%s' has %d channel(s) and %d classes\n",
                s->model, c->in_chans, c->num_classes, split, s->data, ds.c, ds.num_classes);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    /* The same call, arguments and order as `mvmoe train`: the same held-out images. */
    if (use_val && mvmoe_dataset_split(&ds, s->val_fraction, s->seed, &train_idx, &n_train, &val_idx,
                                       &n_val) != MVMOE_OK) {
        rc = mvmoe_cli_fail("superclasses");
        goto done;
    }
    int n = use_val ? n_val : ds.n;
    if (n < 1) {
        fprintf(stderr, "mvmoe superclasses: error: no images to evaluate in the %s of '%s'; raise --val-fraction or --max-images\n",
                use_val ? "validation part of the train split" : "test split", s->data);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    if (mvmoe_evaluate(m, &ds, use_val ? val_idx : NULL, n, s->batch, &r, NULL) != MVMOE_OK) {
        rc = mvmoe_cli_fail("superclasses");
        goto done;
    }
    int K = c->num_classes;
    cs->K = K;
    cs->n = r.n;
    cs->top1 = r.top1;
    cs->C = r.confusion;
    r.confusion = NULL; /* now owned by cs */
    if (!(cs->names = calloc((size_t)K, sizeof *cs->names))) {
        fprintf(stderr, "mvmoe superclasses: error: out of memory for %d class names\n", K);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    for (int k = 0; k < K; k++) {
        const char *nm = c->class_names && c->class_names[k] ? c->class_names[k]
                         : ds.class_names && k < ds.num_classes ? ds.class_names[k]
                                                                : NULL;
        if (nm && !(cs->names[k] = strdup(nm))) {
            fprintf(stderr, "mvmoe superclasses: error: out of memory for class names\n");
            rc = MVMOE_EXIT_FAIL;
            goto done;
        }
    }
    if (use_val)
        snprintf(cs->source, sizeof cs->source,
                 "confusion of '%s' on the %d validation images held out of the train split of "
                 "'%s' (val-fraction %g, seed %llu%s)",
                 s->model, n, s->data, (double)s->val_fraction, (unsigned long long)s->seed,
                 s->max_images ? ", --max-images" : "");
    else
        snprintf(cs->source, sizeof cs->source, "confusion of '%s' on the %d images of the test split of '%s'",
                 s->model, n, s->data);

done:
    free(train_idx);
    free(val_idx);
    mvmoe_eval_result_free(&r);
    mvmoe_dataset_free(&ds);
    if (m) mvmoe_model_free(m);
    return rc;
}

/* ---------------------------------------------------------------- reports */

/* The confusion split over the map (mvmoe_superclass_confusion_stats) and the group sizes. */
typedef struct stats {
    mvmoe_superclass_stats n;
    int *size;
} stats;

static const char *name_of(const confusion_src *c, int k, char *buf, size_t cap) {
    if (c->names && c->names[k]) return c->names[k];
    snprintf(buf, cap, "%d", k);
    return buf;
}

static void write_listing(FILE *f, const sc_args *s, const confusion_src *c, const int *map, int E,
                          const stats *st) {
    fprintf(f, "source:  %s\n", c->source);
    if (c->top1 >= 0) fprintf(f, "top-1:   %.2f%%\n", 100.0 * c->top1);
    fprintf(f, "method:  %s, seed %llu: %d classes into %d super-classes\n", s->method_name,
            (unsigned long long)s->seed, c->K, E);
    for (int g = 0; g < E; g++) {
        fprintf(f, "  super-class %d (%d %s):", g, st->size[g], st->size[g] == 1 ? "class" : "classes");
        int first = 1;
        for (int k = 0; k < c->K; k++) {
            if (map[k] != g) continue;
            char buf[16];
            fprintf(f, "%s %s", first ? "" : ",", name_of(c, k, buf, sizeof buf));
            first = 0;
        }
        fprintf(f, "\n");
    }
    int64_t errs = st->n.within + st->n.across;
    if (errs > 0)
        fprintf(f, "confusion: %lld of %lld misclassifications (%.1f%%) are within a super-class, %lld (%.1f%%) across\n",
                (long long)st->n.within, (long long)errs, 100.0 * (double)st->n.within / (double)errs,
                (long long)st->n.across, 100.0 * (double)st->n.across / (double)errs);
    else
        fprintf(f, "confusion: no misclassifications; the groups are arbitrary (balanced)\n");
}

/* The text listing, also to --listing PATH (via PATH.tmp + rename: never half-written). */
static int save_listing(const sc_args *s, const confusion_src *c, const int *map, int E, const stats *st) {
    size_t len = strlen(s->listing) + sizeof ".tmp";
    char *tmp = malloc(len);
    if (!tmp) {
        fprintf(stderr, "mvmoe superclasses: error: out of memory\n");
        return MVMOE_EXIT_FAIL;
    }
    snprintf(tmp, len, "%s.tmp", s->listing);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "mvmoe superclasses: error: cannot create '%s': %s; check that the folder exists and is writable\n",
                tmp, strerror(errno));
        free(tmp);
        return MVMOE_EXIT_FAIL;
    }
    write_listing(f, s, c, map, E, st);
    int ok = !ferror(f), err = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (ok && rename(tmp, s->listing) != 0) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        fprintf(stderr, "mvmoe superclasses: error: cannot write the listing '%s': %s\n", s->listing, strerror(err));
        remove(tmp);
    }
    free(tmp);
    return ok ? 0 : MVMOE_EXIT_FAIL;
}

/* The --json object, built by the library (mvmoe_superclass_summary_json). */
static int print_json(const sc_args *s, const confusion_src *c, const int *map, int E) {
    mvmoe_superclass_summary sum = {
        .out = s->out, .source = c->source, .method = s->method_name, .seed = s->seed,
        .K = c->K, .E = E, .images = c->n, .top1 = c->top1, .confusion = c->C,
        .class_names = (const char *const *)c->names, .superclass_of = map};
    char *text = NULL;
    if (mvmoe_superclass_summary_json(&sum, &text) != MVMOE_OK) return mvmoe_cli_fail("superclasses");
    printf("%s\n", text);
    free(text);
    return 0;
}

/* ---------------------------------------------------------------- the command */

static int run(const sc_args *s) {
    confusion_src c;
    memset(&c, 0, sizeof c);
    int *map = NULL, rc = 0;
    stats st = {0};
    /* before the evaluation: a --out that cannot be written fails now */
    if (mvmoe_output_check(s->out, "--out") != MVMOE_OK ||
        (s->listing && mvmoe_output_check(s->listing, "--listing") != MVMOE_OK))
        return mvmoe_cli_fail("superclasses");
    if (s->threads_given) mvmoe_set_threads(s->threads);
    rc = s->confusion ? confusion_from_json(s->confusion, &c) : confusion_from_model(s, &c);
    if (rc) goto done;
    if (s->experts > c.K) {
        fprintf(stderr, "mvmoe superclasses: error: --experts %d is more than the %d classes; each super-class needs at least one class\n",
                s->experts, c.K);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    map = calloc((size_t)c.K, sizeof *map);
    st.size = calloc((size_t)s->experts, sizeof *st.size);
    if (!map || !st.size) {
        fprintf(stderr, "mvmoe superclasses: error: out of memory for %d classes\n", c.K);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    if (mvmoe_superclass_partition(c.C, c.K, s->experts, s->method, s->seed, map) != MVMOE_OK ||
        mvmoe_superclass_map_save(s->out, map, c.K, s->experts, (const char *const *)c.names,
                                  s->method_name, c.source) != MVMOE_OK) {
        rc = mvmoe_cli_fail("superclasses");
        goto done;
    }
    st.n = mvmoe_superclass_confusion_stats(c.C, c.K, map, s->experts, st.size);
    if (s->listing && (rc = save_listing(s, &c, map, s->experts, &st)) != 0) goto done;
    if (s->json) {
        rc = print_json(s, &c, map, s->experts);
    } else {
        write_listing(stdout, s, &c, map, s->experts, &st);
        printf("written: '%s'%s%s%s\n", s->out, s->listing ? ", '" : "", s->listing ? s->listing : "",
               s->listing ? "'" : "");
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "mvmoe superclasses: error: cannot write the report to standard output: %s\n", strerror(errno));
        rc = MVMOE_EXIT_FAIL;
    }
done:
    free(st.size);
    free(map);
    confusion_free(&c);
    return rc;
}

int mvmoe_cmd_superclasses(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        print_help();
        return MVMOE_EXIT_OK;
    }
    sc_args s;
    int rc = parse(&s, argc, argv);
    return rc ? rc : run(&s);
}
