/* mvmoe-run's evaluation (`mvmoe eval`'s form and files), top-5 of image files, and batch-1
 * latency. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "run_cli.h"

/* Raw little-endian values (this program runs on little-endian CPUs only: x86-64, arm64),
 * written to PATH.tmp and renamed so a reader never sees a partial file. */
static int write_raw(const char *path, const void *data, size_t bytes) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        fprintf(stderr, "mvmoe-run: error: path '%s' is too long\n", path);
        return RUN_EXIT_FAIL;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "mvmoe-run: error: cannot create '%s': %s; check that the folder exists and is writable\n", tmp,
                strerror(errno));
        return RUN_EXIT_FAIL;
    }
    int ok = fwrite(data, 1, bytes, f) == bytes;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "mvmoe-run: error: cannot write '%s': %s; check free disk space\n", path, strerror(errno));
        remove(tmp);
        return RUN_EXIT_FAIL;
    }
    return RUN_EXIT_OK;
}

static int check_images(const run_images *im, const mvmoe_run_info *in, const char *what) {
    if (im->c != in->in_chans || im->h != in->img_size || im->w != in->img_size) {
        fprintf(stderr,
                "mvmoe-run: error: %s has %d channel(s) of %dx%d but the model takes %d of %dx%d (mvmoe-run does not "
                "resize: give images of the model's size)\n",
                what, im->c, im->h, im->w, in->in_chans, in->img_size, in->img_size);
        return RUN_EXIT_FAIL;
    }
    return RUN_EXIT_OK;
}

static int load_data(const run_args *a, const mvmoe_run_info *in, run_images *im) {
    char err[1024];
    if (run_idx_load(a->data, a->split, im, err, sizeof err)) {
        fprintf(stderr, "mvmoe-run: error: %s\n", err);
        return RUN_EXIT_FAIL;
    }
    if (a->max_images > 0 && a->max_images < im->n) im->n = a->max_images;
    char what[4200];
    snprintf(what, sizeof what, "the %s split of '%s'", a->split, a->data);
    return check_images(im, in, what);
}

typedef struct {
    int64_t top1, top5, *confusion, *expert_images, kept;
    double loss;
} stats;

static void score(stats *s, const float *row, int y, int K, const int64_t *routes, int k) {
    int best = 0, rank = 0;
    float mx = row[0];
    for (int j = 1; j < K; j++)
        if (row[j] > row[best]) best = j;
    for (int j = 0; j < K; j++) {
        if (row[j] > mx) mx = row[j];
        if (row[j] > row[y] || (row[j] == row[y] && j < y)) rank++; /* ties by index, as eval */
    }
    double se = 0;
    for (int j = 0; j < K; j++) se += exp((double)row[j] - mx);
    s->loss += log(se) + mx - row[y];
    s->top1 += best == y;
    s->top5 += rank < 5;
    s->confusion[(size_t)y * K + best]++;
    if (routes) {
        s->expert_images[routes[0]]++;
        for (int q = 0; q < k; q++) s->kept += routes[q] >= 0;
    }
}

static void print_json(const run_args *a, const mvmoe_run_info *in, const stats *s, int n, double secs) {
    const int K = in->num_classes;
    printf("{\"model\": ");
    run_json_str(stdout, a->model);
    printf(", \"data\": ");
    run_json_str(stdout, a->data);
    printf(", \"split\": ");
    run_json_str(stdout, a->split);
    printf(", \"n\": %d, \"num_classes\": %d, \"top1\": %.17g, \"top5\": %.17g, \"loss\": %.17g", n, K,
           n ? (double)s->top1 / n : 0.0, n ? (double)s->top5 / n : 0.0, n ? s->loss / n : 0.0);
    printf(", \"class_names\": [");
    for (int j = 0; j < K; j++) {
        if (j) printf(", ");
        run_json_str(stdout, in->class_names ? in->class_names[j] : NULL);
    }
    printf("], \"per_class\": [");
    for (int j = 0; j < K; j++) {
        int64_t row = 0;
        for (int i = 0; i < K; i++) row += s->confusion[(size_t)j * K + i];
        printf("%s%.17g", j ? ", " : "", row ? (double)s->confusion[(size_t)j * K + j] / row : 0.0);
    }
    printf("], \"class_count\": [");
    for (int j = 0; j < K; j++) {
        int64_t row = 0;
        for (int i = 0; i < K; i++) row += s->confusion[(size_t)j * K + i];
        printf("%s%lld", j ? ", " : "", (long long)row);
    }
    printf("], \"confusion\": [");
    for (int j = 0; j < K; j++) {
        printf("%s[", j ? ", " : "");
        for (int i = 0; i < K; i++) printf("%s%lld", i ? ", " : "", (long long)s->confusion[(size_t)j * K + i]);
        printf("]");
    }
    printf("], \"logits\": ");
    run_json_str(stdout, a->logits);
    printf(", \"precision\": \"%s\", \"kernels\": \"%s\", \"seconds\": %.6f", a->int8 ? "int8" : "fp32", in->kernels,
           secs);
    if (in->experts > 0) {
        printf(", \"moe\": {\"experts\": %d, \"top_k\": %d, \"experts_per_item\": %.17g, \"adaptive_k\": %g, "
               "\"router_acc\": null, \"expert_images\": [",
               in->experts, in->top_k, n ? (double)s->kept / n : 0.0, (double)a->adaptive_k);
        for (int e = 0; e < in->experts; e++) printf("%s%lld", e ? ", " : "", (long long)s->expert_images[e]);
        printf("]}");
    }
    printf("}\n");
}

int run_eval(const run_args *a, mvmoe_run *rt) {
    const mvmoe_run_info in = mvmoe_run_get_info(rt);
    run_images im;
    int rc = load_data(a, &in, &im);
    if (rc) {
        run_images_free(&im);
        return rc;
    }
    const int n = im.n, K = in.num_classes, k = in.top_k;
    const size_t px = (size_t)im.c * im.h * im.w;
    float *logits = malloc(sizeof(float) * ((size_t)n * K + 1));
    int64_t *routes = k ? malloc(sizeof(int64_t) * ((size_t)n * k + 1)) : NULL;
    stats s = {0};
    s.confusion = calloc((size_t)K * K, sizeof *s.confusion);
    s.expert_images = calloc((size_t)(in.experts + 1), sizeof *s.expert_images);
    if (!logits || (k && !routes) || !s.confusion || !s.expert_images) {
        fprintf(stderr, "mvmoe-run: error: out of memory for %d images' logits; use --max-images\n", n);
        rc = RUN_EXIT_FAIL;
    }
    for (int i = 0; !rc && i < n; i++)
        if (im.labels[i] < 0 || im.labels[i] >= K) {
            fprintf(stderr, "mvmoe-run: error: image %d of '%s' has label %d but the model has %d classes\n", i,
                    a->data, im.labels[i], K);
            rc = RUN_EXIT_FAIL;
        }
    const double t0 = run_now();
    for (int i0 = 0; !rc && i0 < n; i0 += a->batch) {
        const int B = n - i0 < a->batch ? n - i0 : a->batch;
        if (mvmoe_run_images_u8(rt, im.pixels + (size_t)i0 * px, B, logits + (size_t)i0 * K,
                                routes ? routes + (size_t)i0 * k : NULL)) {
            fprintf(stderr, "mvmoe-run: error: %s\n", mvmoe_run_error(rt));
            rc = RUN_EXIT_FAIL;
        }
    }
    const double secs = run_now() - t0;
    for (int i = 0; !rc && i < n; i++)
        score(&s, logits + (size_t)i * K, im.labels[i], K, routes ? routes + (size_t)i * k : NULL, k);
    if (!rc && a->logits) rc = write_raw(a->logits, logits, sizeof(float) * (size_t)n * K);
    if (!rc && a->routes) {
        if (!routes) {
            fprintf(stderr, "mvmoe-run: error: --routes: '%s' is a dense model (no routes)\n", a->model);
            rc = RUN_EXIT_FAIL;
        } else {
            rc = write_raw(a->routes, routes, sizeof(int64_t) * (size_t)n * k);
        }
    }
    if (!rc && a->json) print_json(a, &in, &s, n, secs);
    else if (!rc) {
        printf("model:  '%s' (%s, %s kernels)\n", a->model, a->int8 ? "int8" : "fp32", in.kernels);
        printf("data:   '%s' %s split, %d images\n", a->data, a->split, n);
        printf("top-1:  %.2f%%\n", n ? 100.0 * (double)s.top1 / n : 0.0);
        printf("top-5:  %.2f%%\n", n ? 100.0 * (double)s.top5 / n : 0.0);
        printf("loss:   %.4f\n", n ? s.loss / n : 0.0);
        printf("time:   %.3f s (%.1f images/s)\n", secs, secs > 0 ? n / secs : 0.0);
    }
    free(logits);
    free(routes);
    free(s.confusion);
    free(s.expert_images);
    run_images_free(&im);
    return rc;
}

int run_predict(const run_args *a, mvmoe_run *rt) {
    const mvmoe_run_info in = mvmoe_run_get_info(rt);
    const int K = in.num_classes, k = in.top_k;
    float *logits = malloc(sizeof(float) * (size_t)K);
    int64_t routes[64];
    if (!logits) return RUN_EXIT_FAIL;
    int rc = 0;
    for (int f = 0; !rc && f < a->n_images; f++) {
        run_images im;
        char err[1024];
        if (run_pnm_load(a->images[f], &im, err, sizeof err)) {
            fprintf(stderr, "mvmoe-run: error: %s\n", err);
            rc = RUN_EXIT_FAIL;
            break;
        }
        rc = check_images(&im, &in, a->images[f]);
        if (!rc && mvmoe_run_images_u8(rt, im.pixels, 1, logits, k ? routes : NULL)) {
            fprintf(stderr, "mvmoe-run: error: %s\n", mvmoe_run_error(rt));
            rc = RUN_EXIT_FAIL;
        }
        run_images_free(&im);
        if (rc) break;
        double mx = logits[0], se = 0;
        for (int j = 0; j < K; j++) mx = logits[j] > mx ? logits[j] : mx;
        for (int j = 0; j < K; j++) se += exp(logits[j] - mx);
        printf("%s%s\n", a->images[f], k ? "" : ":");
        if (k) {
            printf("  experts:");
            for (int q = 0; q < k; q++) printf(" %lld", (long long)routes[q]);
            printf("\n");
        }
        int taken[5] = {-1, -1, -1, -1, -1};
        for (int r = 0; r < 5 && r < K; r++) {
            int best = -1;
            for (int j = 0; j < K; j++) {
                int used = 0;
                for (int q = 0; q < r; q++) used |= taken[q] == j;
                if (!used && (best < 0 || logits[j] > logits[best])) best = j;
            }
            taken[r] = best;
            const char *name = in.class_names && in.class_names[best] ? in.class_names[best] : "";
            printf("  %d. %-4d %6.2f%%  %s\n", r + 1, best, 100.0 * exp(logits[best] - mx) / se, name);
        }
    }
    free(logits);
    return rc;
}

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int run_latency(const run_args *a, mvmoe_run *rt) {
    const mvmoe_run_info in = mvmoe_run_get_info(rt);
    run_images data = {0}, *files = NULL;
    int rc = 0, pool = 0;
    if (a->data) {
        rc = load_data(a, &in, &data);
        pool = data.n;
    } else {
        files = calloc((size_t)a->n_images, sizeof *files);
        if (!files) rc = RUN_EXIT_FAIL;
        for (int f = 0; !rc && f < a->n_images; f++) {
            char err[1024];
            if (run_pnm_load(a->images[f], &files[f], err, sizeof err)) {
                fprintf(stderr, "mvmoe-run: error: %s\n", err);
                rc = RUN_EXIT_FAIL;
            } else {
                rc = check_images(&files[f], &in, a->images[f]);
            }
        }
        pool = a->n_images;
    }
    if (!rc && pool < 1) {
        fprintf(stderr, "mvmoe-run: error: no images to time\n");
        rc = RUN_EXIT_FAIL;
    }
    const size_t px = (size_t)in.in_chans * in.img_size * in.img_size;
    float *logits = malloc(sizeof(float) * (size_t)in.num_classes);
    double *ms = malloc(sizeof(double) * (size_t)a->latency);
    int64_t routes[64];
    if (!rc && (!logits || !ms)) rc = RUN_EXIT_FAIL;
    /* one untimed run first: the pages of the weights come in, as on a warm device */
    for (int i = -1; !rc && i < a->latency; i++) {
        const int j = (i < 0 ? 0 : i) % pool;
        const uint8_t *p = a->data ? data.pixels + (size_t)j * px : files[j].pixels;
        const double t0 = run_now();
        if (mvmoe_run_images_u8(rt, p, 1, logits, in.top_k ? routes : NULL)) {
            fprintf(stderr, "mvmoe-run: error: %s\n", mvmoe_run_error(rt));
            rc = RUN_EXIT_FAIL;
        }
        if (i >= 0) ms[i] = 1e3 * (run_now() - t0);
    }
    if (!rc) {
        const int nt = a->threads > 0 ? a->threads : 1; /* main.c: the threads one image is split over */
        qsort(ms, (size_t)a->latency, sizeof *ms, cmp_double);
        const int n = a->latency;
        const double med = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
        const double p90 = ms[(int)ceil(0.9 * n) - 1];
        if (a->json) {
            printf("{\"model\": ");
            run_json_str(stdout, a->model);
            printf(", \"precision\": \"%s\", \"kernels\": \"%s\", \"images\": %d, \"batch\": 1, \"threads\": %d, "
                   "\"median_ms\": %.6f, \"p90_ms\": %.6f, \"min_ms\": %.6f}\n",
                   a->int8 ? "int8" : "fp32", in.kernels, n, nt, med, p90, ms[0]);
        } else {
            printf("latency of '%s' (%s, %s kernels, batch 1, %d thread%s, %d images): median %.3f ms, p90 %.3f ms, "
                   "min %.3f ms\n", a->model, a->int8 ? "int8" : "fp32", in.kernels, nt, nt > 1 ? "s" : "", n, med, p90,
                   ms[0]);
        }
    }
    free(logits);
    free(ms);
    run_images_free(&data);
    for (int f = 0; files && f < a->n_images; f++) run_images_free(&files[f]);
    free(files);
    return rc;
}
