/* mvmoe eval: accuracy, loss, per-class accuracy and confusion matrix of a checkpoint on one
 * split of a dataset; optionally the raw logits. Scripts depend on this command's form. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "memlimit.h"
#include "precision.h"
#include "mvmoe.h"

/* Beyond this many classes the text confusion matrix is unreadable; --json has it all. */
#define MAX_TEXT_CONFUSION 40

static const char SYNOPSIS[] =
    "usage: mvmoe eval --model M.safetensors --data DIR [--split test] [--logits OUT.f32]\n"
    "                  [--routes OUT.i64] [--json] [--batch 256] [--threads 0] [--max-images 0]\n"
    "                  [--heads N --mean a,b,c --std a,b,c --img-size N] [--adaptive-k P]\n";

static void print_help(void) {
    printf("%s\n", SYNOPSIS);
    printf("Evaluates a checkpoint on a split of a dataset: top-1, top-5, mean cross-entropy,\n"
           "per-class accuracy and the confusion matrix (rows: true class, columns: predicted).\n\n"
           "  --model M            checkpoint (.safetensors: ours, or a plain timm ViT)\n"
           "  --data DIR           dataset folder (IDX, CIFAR binary, or DIR/SPLIT/CLASS/*)\n"
           "  --split NAME         train or test (default test)\n"
           "  --logits OUT.f32     also write the logits: little-endian float32 [N x classes],\n"
           "                       images in file order\n"
           "  --routes OUT.i64     per-image MoE models: also write each image's experts,\n"
           "                       little-endian int64 [N x top_k], most probable first (-1: a\n"
           "                       choice --adaptive-k did not run)\n"
           "  --json               print one JSON object instead of text\n"
           "  --batch N            images per forward pass (default 256)\n"
           "  --threads N          threads (0: all cores; default: OMP_NUM_THREADS or all)\n"
           "  --max-images N       evaluate only the first N images (0: all)\n"
           MVMOE_CLI_LOAD_FLAGS
           MVMOE_CLI_MEMLIMIT_HELP MVMOE_CLI_PRECISION_HELP
           "\nExit status: 0 done, 1 failure (message names the file), 2 usage error.\n");
}

typedef struct eval_args {
    const char *model, *data, *split, *logits, *routes;
    int json, batch, threads, threads_given, max_images;
    mvmoe_cli_load load;
    mvmoe_cli_memlimit mem;
} eval_args;

static int parse(eval_args *e, int argc, char **argv) {
    memset(e, 0, sizeof *e);
    e->split = "test";
    e->batch = 256;
    mvmoe_cli_load_init(&e->load);
    mvmoe_args a;
    mvmoe_args_init(&a, "eval", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) return mvmoe_args_error(&a, "unexpected argument '%s' (give the checkpoint with --model and the dataset with --data)", pos);
        if (mvmoe_cli_load_flag(&a, &e->load, &rc)) continue;
        if (mvmoe_cli_memlimit_flag(&a, &e->mem, &rc)) continue;
        if (mvmoe_cli_precision_flag(&a, "eval", &rc)) continue;
        if (mvmoe_args_is(&a, "--model")) rc = mvmoe_args_str(&a, &e->model);
        else if (mvmoe_args_is(&a, "--data")) rc = mvmoe_args_str(&a, &e->data);
        else if (mvmoe_args_is(&a, "--split")) rc = mvmoe_args_str(&a, &e->split);
        else if (mvmoe_args_is(&a, "--logits")) rc = mvmoe_args_str(&a, &e->logits);
        else if (mvmoe_args_is(&a, "--routes")) rc = mvmoe_args_str(&a, &e->routes);
        else if (mvmoe_args_is(&a, "--json")) { rc = mvmoe_args_switch(&a); e->json = 1; }
        else if (mvmoe_args_is(&a, "--batch")) rc = mvmoe_args_int(&a, 1, 65536, &e->batch);
        else if (mvmoe_args_is(&a, "--threads")) { rc = mvmoe_args_int(&a, 0, 4096, &e->threads); e->threads_given = 1; }
        else if (mvmoe_args_is(&a, "--max-images")) rc = mvmoe_args_int(&a, 0, 2147483647L, &e->max_images);
        else return mvmoe_args_unknown(&a);
    }
    if (rc) return rc;
    if (!e->model) return mvmoe_args_error(&a, "--model M.safetensors is required");
    if (!e->data) return mvmoe_args_error(&a, "--data DIR is required");
    if (strcmp(e->split, "train") != 0 && strcmp(e->split, "test") != 0)
        return mvmoe_args_error(&a, "invalid value '%s' for --split: use train or test", e->split);
    return mvmoe_cli_load_finish(&a, &e->load);
}

/* ---------------------------------------------------------------- logits and routes files */

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* Raw little-endian values of `elem` bytes (4 or 8), no header: the simplest thing
 * numpy.fromfile reads. Written to PATH.tmp and renamed, so a reader never sees a half-written
 * file. `what` names the values in messages. */
static int write_raw(const char *path, void *data, size_t count, size_t elem, const char *what) {
    if (!host_is_little_endian()) {
        for (size_t i = 0; i < count; i++) {
            char *at = (char *)data + i * elem;
            if (elem == 4) {
                uint32_t u;
                memcpy(&u, at, 4);
                u = __builtin_bswap32(u);
                memcpy(at, &u, 4);
            } else {
                uint64_t u;
                memcpy(&u, at, 8);
                u = __builtin_bswap64(u);
                memcpy(at, &u, 8);
            }
        }
    }
    size_t len = strlen(path) + sizeof ".tmp";
    char *tmp = malloc(len);
    if (!tmp) {
        fprintf(stderr, "mvmoe eval: error: out of memory\n");
        return MVMOE_EXIT_FAIL;
    }
    snprintf(tmp, len, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "mvmoe eval: error: cannot create '%s': %s; check that the folder exists and is writable\n",
                tmp, strerror(errno));
        free(tmp);
        return MVMOE_EXIT_FAIL;
    }
    int ok = fwrite(data, elem, count, f) == count;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        fprintf(stderr, "mvmoe eval: error: cannot rename '%s' to '%s': %s\n", tmp, path, strerror(errno));
        remove(tmp);
        free(tmp);
        return MVMOE_EXIT_FAIL;
    }
    if (!ok) {
        fprintf(stderr, "mvmoe eval: error: cannot write the %zu %s to '%s': %s; check free disk space\n",
                count, what, tmp, strerror(err));
        remove(tmp);
        free(tmp);
        return MVMOE_EXIT_FAIL;
    }
    free(tmp);
    return 0;
}

/* The per-image routes as int64 (what ONNX Runtime's TopK returns, for direct comparison with
 * `mvmoe export`'s "routes" output). */
static int write_routes(const char *path, const mvmoe_eval_result *r, const mvmoe_config *c) {
    const size_t count = (size_t)r->n * (size_t)c->top_k;
    int64_t *v = malloc((count ? count : 1) * sizeof *v);
    if (!v) {
        fprintf(stderr, "mvmoe eval: error: cannot allocate %zu routes; evaluate fewer images with --max-images\n", count);
        return MVMOE_EXIT_FAIL;
    }
    for (size_t i = 0; i < count; i++) v[i] = r->moe.routes[i];
    int rc = write_raw(path, v, count, sizeof *v, "routes");
    free(v);
    return rc;
}

/* ---------------------------------------------------------------- reports */

static int64_t row_total(const mvmoe_eval_result *r, int k) {
    int64_t s = 0;
    for (int j = 0; j < r->num_classes; j++) s += r->confusion[(size_t)k * (size_t)r->num_classes + (size_t)j];
    return s;
}

static const char *class_name(const mvmoe_config *c, const mvmoe_dataset *ds, int k) {
    if (c->class_names && c->class_names[k]) return c->class_names[k];
    if (ds->class_names && k < ds->num_classes && ds->class_names[k]) return ds->class_names[k];
    return NULL;
}

static void print_text(const eval_args *e, const mvmoe_config *c, const mvmoe_dataset *ds,
                       const mvmoe_eval_result *r) {
    int K = r->num_classes;
    printf("model:  '%s'\n", e->model);
    printf("data:   '%s' %s split, %d images\n", e->data, e->split, r->n);
    printf("top-1:  %.2f%%\n", 100.0 * r->top1);
    printf("top-5:  %.2f%%\n", 100.0 * r->top5);
    printf("loss:   %.4f\n", r->loss);
    int name_w = 5;
    for (int k = 0; k < K; k++) {
        const char *nm = class_name(c, ds, k);
        int l = nm ? (int)strlen(nm) : 0;
        if (l > name_w) name_w = l < 40 ? l : 40;
    }
    printf("\nper-class accuracy:\n  %5s  %-*s  %8s  %7s\n", "index", name_w, "class", "accuracy", "images");
    for (int k = 0; k < K; k++) {
        const char *nm = class_name(c, ds, k);
        int64_t n = row_total(r, k);
        char acc[32];
        if (n > 0) snprintf(acc, sizeof acc, "%.2f%%", 100.0 * r->per_class[k]);
        else snprintf(acc, sizeof acc, "-");
        printf("  %5d  %-*.*s  %8s  %7lld\n", k, name_w, name_w, nm ? nm : "", acc, (long long)n);
    }
    if (r->moe.experts > 0) {
        const mvmoe_moe_eval *me = &r->moe;
        int64_t total = 0;
        for (int x = 0; x < me->experts; x++) total += me->expert_load[x];
        printf("\nrouting: %s, %d experts, top-%d", mvmoe_routing_name(c->routing), me->experts, c->top_k);
        if (e->load.o.adaptive_k > 0)
            printf(" adaptive (below top probability %g): %.3f experts per %s, %.2f MFLOPs per image",
                   (double)e->load.o.adaptive_k, me->experts_per_item,
                   c->routing == MVMOE_ROUTING_TOKEN_LEARNED ? "token" : "image", mvmoe_eval_flops(c, r) / 1e6);
        printf("\n");
        if (me->router_acc >= 0) printf("router accuracy (top-1 expert = super-class of the label): %.2f%%\n", 100.0 * me->router_acc);
        printf("  %6s  %8s  %7s  %9s\n", "expert", "load", "images", "accuracy");
        for (int x = 0; x < me->experts; x++) {
            char acc[32];
            if (me->expert_acc[x] >= 0) snprintf(acc, sizeof acc, "%.2f%%", 100.0 * me->expert_acc[x]);
            else snprintf(acc, sizeof acc, "-");
            printf("  %6d  %7.1f%%  %7lld  %9s\n", x, total ? 100.0 * (double)me->expert_load[x] / (double)total : 0.0,
                   (long long)me->expert_images[x], acc);
        }
    }
    if (K > MAX_TEXT_CONFUSION) {
        printf("\nconfusion matrix: %d x %d, not printed as text; use --json\n", K, K);
        return;
    }
    int64_t mx = K - 1;
    for (size_t i = 0; i < (size_t)K * (size_t)K; i++)
        if (r->confusion[i] > mx) mx = r->confusion[i];
    int w = snprintf(NULL, 0, "%lld", (long long)mx) + 1;
    if (w < 4) w = 4;
    printf("\nconfusion matrix (rows: true class, columns: predicted class):\n%*s", 6, "");
    for (int j = 0; j < K; j++) printf("%*d", w, j);
    printf("\n");
    for (int k = 0; k < K; k++) {
        printf("  %4d", k);
        for (int j = 0; j < K; j++) printf("%*lld", w, (long long)r->confusion[(size_t)k * (size_t)K + (size_t)j]);
        printf("\n");
    }
}

/* The eval JSON (the library's one writer of it, mvmoe_eval_json_format) on standard output. */
static int print_json(const eval_args *e, const mvmoe_config *c, const mvmoe_dataset *ds,
                      const mvmoe_eval_result *r) {
    const char **names = calloc((size_t)r->num_classes, sizeof *names);
    if (!names) {
        fprintf(stderr, "mvmoe eval: error: out of memory building the JSON report\n");
        return MVMOE_EXIT_FAIL;
    }
    for (int k = 0; k < r->num_classes; k++) names[k] = class_name(c, ds, k);
    mvmoe_eval_meta meta = {.model = e->model, .data = e->data, .split = e->split, .logits = e->logits,
                            .class_names = names, .adaptive_k = e->load.o.adaptive_k};
    char *text = NULL;
    mvmoe_status s = mvmoe_eval_json_format(r, c, &meta, &text);
    free(names);
    if (s != MVMOE_OK) return mvmoe_cli_fail("eval");
    printf("%s\n", text);
    free(text);
    return 0;
}

/* ---------------------------------------------------------------- the command */

static int run(const eval_args *e) {
    mvmoe_model *m = NULL;
    mvmoe_dataset ds;
    memset(&ds, 0, sizeof ds);
    mvmoe_eval_result r;
    memset(&r, 0, sizeof r);
    float *logits = NULL;
    int rc = 0;

    if (e->threads_given) mvmoe_set_threads(e->threads);
    if ((e->logits && mvmoe_output_check(e->logits, "--logits") != MVMOE_OK) ||
        (e->routes && mvmoe_output_check(e->routes, "--routes") != MVMOE_OK)) {
        rc = mvmoe_cli_fail("eval");
        goto done;
    }
    if (mvmoe_model_load(&m, e->model, &e->load.o) != MVMOE_OK) {
        rc = mvmoe_cli_fail_flag("eval", "--model");
        goto done;
    }
    const mvmoe_config *c = mvmoe_model_config(m);
    if (e->routes && (c->routing == MVMOE_ROUTING_DENSE || c->routing == MVMOE_ROUTING_TOKEN_LEARNED)) {
        fprintf(stderr, "mvmoe eval: error: --routes: model '%s' has %s routing; per-image routes exist only "
                "for image-superclass and image-learned models\n", e->model, mvmoe_routing_name(c->routing));
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    int load_size = mvmoe_cli_is_image_folder(e->data, e->split) ? c->img_size : 0;
    if (mvmoe_dataset_load(&ds, e->data, e->split, load_size, e->max_images) != MVMOE_OK ||
        mvmoe_dataset_match_classes(&ds, (const char *const *)c->class_names, c->num_classes) != MVMOE_OK) {
        rc = mvmoe_cli_fail_flag("eval", "--data");
        goto done;
    }
    if (ds.c != c->in_chans || ds.num_classes > c->num_classes) {
        fprintf(stderr, "mvmoe eval: error: model '%s' takes %d channel(s) and %d classes, but the %s split of '%s' has %d channel(s) and %d classes\n",
                e->model, c->in_chans, c->num_classes, e->split, e->data, ds.c, ds.num_classes);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    if (ds.n < 1) {
        fprintf(stderr, "mvmoe eval: error: the %s split of '%s' has no images\n", e->split, e->data);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    if ((rc = mvmoe_cli_memlimit_check("eval", &e->mem, c, e->batch < ds.n ? e->batch : ds.n, 0, 1)) != 0)
        goto done;
    size_t count = (size_t)ds.n * (size_t)c->num_classes;
    if (e->logits && !(logits = malloc(count * sizeof *logits))) {
        fprintf(stderr, "mvmoe eval: error: cannot allocate %zu logits (%d images x %d classes); evaluate fewer images with --max-images\n",
                count, ds.n, c->num_classes);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    if (mvmoe_evaluate(m, &ds, NULL, ds.n, e->batch, &r, logits) != MVMOE_OK) {
        rc = mvmoe_cli_fail("eval");
        goto done;
    }
    if (logits && (rc = write_raw(e->logits, logits, count, sizeof *logits, "logits")) != 0) goto done;
    if (e->routes && (rc = write_routes(e->routes, &r, c)) != 0) goto done;
    if (e->json) rc = print_json(e, c, &ds, &r);
    else print_text(e, c, &ds, &r);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "mvmoe eval: error: cannot write the report to standard output: %s\n", strerror(errno));
        rc = MVMOE_EXIT_FAIL;
    }

done:
    free(logits);
    mvmoe_eval_result_free(&r);
    mvmoe_dataset_free(&ds);
    if (m) mvmoe_model_free(m);
    return rc;
}

int mvmoe_cmd_eval(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        print_help();
        return MVMOE_EXIT_OK;
    }
    eval_args e;
    int rc = parse(&e, argc, argv);
    return rc ? rc : run(&e);
}
