/* mvmoe predict: the top-k classes, with probabilities, of each given image file. */
#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "memlimit.h"
#include "precision.h"
#include "mvmoe.h"



#define PREDICT_BATCH 32 /* images per forward pass */

static const char SYNOPSIS[] =
    "usage: mvmoe predict --model M.safetensors [--top 5] [--json] [--threads 0] IMAGE...\n";

static void print_help(void) {
    printf("%s\n", SYNOPSIS);
    printf("Classifies PNG/JPEG images: each is converted to the model's channels, its shorter\n"
           "side resized to the model's size and center-cropped; prints the top classes with\n"
           "their softmax probabilities.\n\n"
           "  --model M           checkpoint (.safetensors)\n"
           "  --top K             how many classes to show per image (default 5)\n"
           "  --json              print one JSON object instead of text\n"
           "  --threads N         threads (0: all cores)\n"
           MVMOE_CLI_LOAD_FLAGS
           MVMOE_CLI_MEMLIMIT_HELP MVMOE_CLI_PRECISION_HELP
           "\nExit status: 0 done, 1 failure (message names the file), 2 usage error.\n");
}

typedef struct predict_args {
    const char *model;
    const char **images;
    int n_images, top, json, threads, threads_given;
    mvmoe_cli_load load;
    mvmoe_cli_memlimit mem;
} predict_args;

static int parse(predict_args *p, int argc, char **argv) {
    memset(p, 0, sizeof *p);
    p->top = 5;
    mvmoe_cli_load_init(&p->load);
    /* positional arguments are at most argc; the array outlives parse (freed by the caller) */
    p->images = malloc(sizeof *p->images * (size_t)(argc > 0 ? argc : 1));
    if (!p->images) {
        fprintf(stderr, "mvmoe predict: error: out of memory\n");
        return MVMOE_EXIT_FAIL;
    }
    mvmoe_args a;
    mvmoe_args_init(&a, "predict", SYNOPSIS, argc, argv);
    const char *pos;
    int kind, rc = 0;
    while (rc == 0 && (kind = mvmoe_args_next(&a, &pos)) >= 0) {
        if (kind == 0) { p->images[p->n_images++] = pos; continue; }
        if (mvmoe_cli_load_flag(&a, &p->load, &rc)) continue;
        if (mvmoe_cli_memlimit_flag(&a, &p->mem, &rc)) continue;
        if (mvmoe_cli_precision_flag(&a, "predict", &rc)) continue;
        if (mvmoe_args_is(&a, "--model")) rc = mvmoe_args_str(&a, &p->model);
        else if (mvmoe_args_is(&a, "--top")) rc = mvmoe_args_int(&a, 1, 100000, &p->top);
        else if (mvmoe_args_is(&a, "--json")) { rc = mvmoe_args_switch(&a); p->json = 1; }
        else if (mvmoe_args_is(&a, "--threads")) { rc = mvmoe_args_int(&a, 0, 4096, &p->threads); p->threads_given = 1; }
        else return mvmoe_args_unknown(&a);
    }
    if (rc) return rc;
    if (!p->model) return mvmoe_args_error(&a, "--model M.safetensors is required");
    if (p->n_images == 0) return mvmoe_args_error(&a, "no IMAGE given");
    return mvmoe_cli_load_finish(&a, &p->load);
}

/* In-place softmax of one row, in double for the sum (exp of max-shifted values: no overflow). */
static void softmax(const float *z, int K, double *p) {
    double mx = z[0];
    for (int k = 1; k < K; k++) if (z[k] > mx) mx = z[k];
    double s = 0;
    for (int k = 0; k < K; k++) s += p[k] = exp((double)z[k] - mx);
    for (int k = 0; k < K; k++) p[k] /= s;
}

/* The `top` largest of p into order[0..top) (descending; ties: lower index first).
 * Selection in O(K * top): top is small next to K. */
static void top_k(const double *p, int K, int top, int *order) {
    for (int t = 0; t < top; t++) {
        int best = -1;
        for (int k = 0; k < K; k++) {
            int taken = 0;
            for (int u = 0; u < t && !taken; u++) taken = order[u] == k;
            if (!taken && (best < 0 || p[k] > p[best])) best = k;
        }
        order[t] = best;
    }
}

typedef struct predict_out {
    cJSON *list; /* JSON mode: array of per-image objects */
    int ok;      /* JSON mode: every cJSON allocation succeeded */
} predict_out;

static void report(const predict_args *a, const mvmoe_config *c, const char *path, const double *p,
                   const int *order, int top, predict_out *out) {
    if (!a->json) {
        printf("%s\n", path);
        for (int t = 0; t < top; t++) {
            int k = order[t];
            const char *nm = c->class_names && c->class_names[k] ? c->class_names[k] : "";
            printf("  %2d. %6.2f%%  %4d  %s\n", t + 1, 100.0 * p[k], k, nm);
        }
        return;
    }
    cJSON *img = cJSON_CreateObject(), *arr = NULL;
    out->ok &= img && cJSON_AddItemToArray(out->list, img);
    out->ok &= out->ok && cJSON_AddStringToObject(img, "image", path) != NULL;
    out->ok &= out->ok && (arr = cJSON_AddArrayToObject(img, "top")) != NULL;
    for (int t = 0; out->ok && t < top; t++) {
        int k = order[t];
        cJSON *e = cJSON_CreateObject();
        out->ok &= e && cJSON_AddItemToArray(arr, e);
        out->ok &= out->ok && cJSON_AddNumberToObject(e, "class", k) != NULL;
        if (out->ok && c->class_names && c->class_names[k])
            out->ok &= cJSON_AddStringToObject(e, "name", c->class_names[k]) != NULL;
        out->ok &= out->ok && cJSON_AddNumberToObject(e, "prob", p[k]) != NULL;
    }
}

static int run(const predict_args *a) {
    mvmoe_model *m = NULL;
    uint8_t *batch = NULL;
    float *logits = NULL;
    double *prob = NULL;
    int *order = NULL;
    predict_out out = {NULL, 1};
    int rc = 0;

    if (a->threads_given) mvmoe_set_threads(a->threads);
    if (mvmoe_model_load(&m, a->model, &a->load.o) != MVMOE_OK) {
        rc = mvmoe_cli_fail_flag("predict", "--model");
        goto done;
    }
    const mvmoe_config *c = mvmoe_model_config(m);
    if ((rc = mvmoe_cli_memlimit_check("predict", &a->mem, c,
                                       a->n_images < PREDICT_BATCH ? a->n_images : PREDICT_BATCH, 0, 1)) != 0)
        goto done;
    int K = c->num_classes, S = c->img_size, C = c->in_chans;
    int top = a->top < K ? a->top : K;
    size_t img_bytes = (size_t)C * (size_t)S * (size_t)S;
    batch = malloc(img_bytes * PREDICT_BATCH);
    logits = malloc(sizeof *logits * (size_t)K * PREDICT_BATCH);
    prob = malloc(sizeof *prob * (size_t)K);
    order = malloc(sizeof *order * (size_t)top);
    if (a->json) {
        out.list = cJSON_CreateArray();
        out.ok = out.list != NULL;
    }
    if (!batch || !logits || !prob || !order || !out.ok) {
        fprintf(stderr, "mvmoe predict: error: out of memory for a batch of %d %dx%dx%d images\n",
                PREDICT_BATCH, C, S, S);
        rc = MVMOE_EXIT_FAIL;
        goto done;
    }
    for (int i0 = 0; i0 < a->n_images; i0 += PREDICT_BATCH) {
        int n = a->n_images - i0 < PREDICT_BATCH ? a->n_images - i0 : PREDICT_BATCH;
        for (int i = 0; i < n; i++) {
            uint8_t *img = NULL;
            if (mvmoe_image_load(a->images[i0 + i], C, S, &img) != MVMOE_OK) {
                rc = mvmoe_cli_fail("predict");
                goto done;
            }
            memcpy(batch + (size_t)i * img_bytes, img, img_bytes);
            free(img);
        }
        if (mvmoe_model_logits(m, batch, n, logits) != MVMOE_OK) {
            rc = mvmoe_cli_fail("predict");
            goto done;
        }
        for (int i = 0; i < n; i++) {
            softmax(logits + (size_t)i * (size_t)K, K, prob);
            top_k(prob, K, top, order);
            report(a, c, a->images[i0 + i], prob, order, top, &out);
        }
    }
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        int ok = o && out.ok && cJSON_AddStringToObject(o, "model", a->model) != NULL;
        ok = ok && cJSON_AddItemToObject(o, "predictions", out.list);
        if (ok) out.list = NULL; /* now owned by o */
        char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        if (!text) {
            fprintf(stderr, "mvmoe predict: error: out of memory building the JSON output\n");
            rc = MVMOE_EXIT_FAIL;
            goto done;
        }
        printf("%s\n", text);
        free(text);
    }

done:
    cJSON_Delete(out.list);
    free(batch);
    free(logits);
    free(prob);
    free(order);
    if (m) mvmoe_model_free(m);
    return rc;
}

int mvmoe_cmd_predict(int argc, char **argv) {
    if (mvmoe_args_wants_help(argc, argv)) {
        print_help();
        return MVMOE_EXIT_OK;
    }
    predict_args p;
    int rc = parse(&p, argc, argv);
    if (rc == 0) rc = run(&p);
    free(p.images);
    return rc;
}
