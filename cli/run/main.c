/* mvmoe-run: runs mvmoe checkpoints with the dependency-free runtime (include/mvmoe_run.h):
 * evaluation on a dataset split in `mvmoe eval`'s form, top-5 of image files, batch-1
 * latency. Links only libc, libm and OpenMP's runtime. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "mvmoe_run.h"
#include "run_cli.h"

static const char SYNOPSIS[] =
    "usage: mvmoe-run --model M.safetensors --data DIR [--split test] [--precision fp32|int8]\n"
    "                 [--logits OUT.f32] [--routes OUT.i64] [--json] [--threads N] [--split-image] [--batch N]\n"
    "                 [--max-images N] [--adaptive-k P]\n"
    "       mvmoe-run --model M.safetensors [--precision fp32|int8] IMAGE.pgm...\n"
    "       mvmoe-run --model M.safetensors (--data DIR | IMAGE...) --latency N [--json]\n";

static void help(void) {
    printf("%s\n", SYNOPSIS);
    printf("Runs an mvmoe checkpoint (dense, image-superclass or image-learned routing; fp32 or an\n"
           "int8 checkpoint from `mvmoe quantize`) with the dependency-free runtime.\n\n"
           "  --model M          checkpoint (.safetensors written by mvmoe train or mvmoe quantize)\n"
           "  --data DIR         evaluate a split of a raw IDX folder (MNIST, Fashion-MNIST): the\n"
           "                     files `mvmoe eval` reads, uncompressed (gunzip -k DIR/*.gz first:\n"
           "                     this program links no zlib)\n"
           "  --split NAME       train or test (default test)\n"
           "  --precision P      fp32 (default) or int8 (weight products in int8, docs/EDGE.md)\n"
           "  --logits OUT.f32   write the logits: little-endian float32 [N x classes], file order\n"
           "  --routes OUT.i64   per-image MoE models: each image's experts, little-endian int64\n"
           "                     [N x top_k], most probable first, -1 for a choice not run\n"
           "  --json             print one JSON object (the keys of `mvmoe eval --json` that apply)\n"
           "  --threads N        images run in parallel on N threads (0: all; default 0)\n"
           "  --split-image      a call of one image (--batch 1, --latency, IMAGE files) splits it\n"
           "                     over the threads (products' and attention's rows; 2 free cores:\n"
           "                     about 1.4x faster, slower when a core is busy)\n"
           "  --batch N          images per call of the runtime (default 256)\n"
           "  --max-images N     only the first N images (0: all)\n"
           "  --adaptive-k P     top_k >= 2 models: extra experts only below top probability P\n"
           "  --latency N        batch-1 latency over N images (from --data, or the IMAGE files in\n"
           "                     turn): median and p90 in milliseconds; one thread, or each image\n"
           "                     split over --threads N (N > 0)\n"
           "  --page-report I    expert paging: run image I of --data (batch 1, fresh map) and report\n"
           "                     the checkpoint's bytes this process touched, faults, and which\n"
           "                     experts' pages were read (Linux; docs/EDGE.md)\n"
           "  IMAGE              binary PGM (P5, gray) or PPM (P6, RGB) files of the model's size:\n"
           "                     prints the top-5 classes (PNG/JPEG: convert them first)\n"
           "  --version          print the version\n"
           "\nEnvironment: MVMOE_ISA=plain (the reference kernels), avx2-vnni or avx2 (x86-64: a\n"
           "smaller kernel set than this CPU's best); --data and --latency runs name the set used.\n"
           "\nExit status: 0 done, 1 failure (message names the file), 2 usage error.\n");
}

static int usage(const char *fmt, const char *arg) {
    fprintf(stderr, "mvmoe-run: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s(mvmoe-run --help explains every option)\n", SYNOPSIS);
    return RUN_EXIT_USAGE;
}

static int int_arg(const char *s, long lo, long hi, int *v) {
    char *end;
    errno = 0;
    const long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) return -1;
    *v = (int)x;
    return 0;
}

static int parse(run_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->split = "test";
    a->batch = 256;
    a->page_image = -1;
    a->images = calloc((size_t)argc, sizeof *a->images);
    if (!a->images) return RUN_EXIT_FAIL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (o[0] != '-' || o[1] == 0) {
            a->images[a->n_images++] = o;
            continue;
        }
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            help();
            exit(0);
        }
        if (!strcmp(o, "--version")) {
            printf("mvmoe-run 0.1.0\n");
            exit(0);
        }
        if (!strcmp(o, "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(o, "--split-image")) {
            a->split_image = 1;
            continue;
        }
        if (i + 1 >= argc) return usage("%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--data")) a->data = v;
        else if (!strcmp(o, "--split")) a->split = v;
        else if (!strcmp(o, "--logits")) a->logits = v;
        else if (!strcmp(o, "--routes")) a->routes = v;
        else if (!strcmp(o, "--precision")) {
            if (!strcmp(v, "fp32")) a->int8 = 0;
            else if (!strcmp(v, "int8")) a->int8 = 1;
            else return usage("invalid value '%s' for --precision: use fp32 or int8", v);
        } else if (!strcmp(o, "--threads")) {
            if (int_arg(v, 0, 4096, &a->threads)) return usage("invalid value '%s' for --threads: 0..4096", v);
        } else if (!strcmp(o, "--batch")) {
            if (int_arg(v, 1, 65536, &a->batch)) return usage("invalid value '%s' for --batch: 1..65536", v);
        } else if (!strcmp(o, "--max-images")) {
            if (int_arg(v, 0, 2147483647L, &a->max_images)) return usage("invalid value '%s' for --max-images", v);
        } else if (!strcmp(o, "--latency")) {
            if (int_arg(v, 1, 1000000, &a->latency)) return usage("invalid value '%s' for --latency: 1..1000000", v);
        } else if (!strcmp(o, "--page-report")) {
            if (int_arg(v, 0, 2147483647L, &a->page_image)) return usage("invalid value '%s' for --page-report", v);
        } else if (!strcmp(o, "--adaptive-k")) {
            char *end;
            a->adaptive_k = strtof(v, &end);
            if (end == v || *end || !(a->adaptive_k > 0.0f && a->adaptive_k <= 1.0f))
                return usage("invalid value '%s' for --adaptive-k: a probability in (0, 1]", v);
        } else {
            return usage("unknown option '%s'", o);
        }
    }
    if (!a->model) return usage("%s", "--model M.safetensors is required");
    if (strcmp(a->split, "train") && strcmp(a->split, "test"))
        return usage("invalid value '%s' for --split: use train or test", a->split);
    if (a->data && a->n_images && !a->latency) return usage("%s", "give either --data DIR or IMAGE files, not both");
    if (!a->data && !a->n_images) return usage("%s", "give --data DIR or IMAGE files");
    if (a->page_image >= 0 && !a->data) return usage("%s", "--page-report needs --data DIR");
    return 0;
}

int main(int argc, char **argv) {
    run_args a;
    int rc = parse(&a, argc, argv);
    if (rc) {
        free(a.images);
        return rc;
    }
    if (a.page_image >= 0) {
        rc = run_page_report(&a);
        free(a.images);
        return rc;
    }
    mvmoe_run_options o = mvmoe_run_defaults();
    o.precision = a.int8 ? MVMOE_RUN_INT8 : MVMOE_RUN_FP32;
    o.threads = a.latency ? (a.threads > 0 ? a.threads : 1) : a.threads;
    o.split_image = a.split_image || (a.latency && a.threads > 1); /* latency --threads N: one image, N threads */
    o.adaptive_k = a.adaptive_k;
    mvmoe_run *rt = NULL;
    if (mvmoe_run_open(a.model, &o, &rt) != MVMOE_RUN_OK) {
        fprintf(stderr, "mvmoe-run: error: %s\n", mvmoe_run_error(rt));
        mvmoe_run_close(rt);
        free(a.images);
        return RUN_EXIT_FAIL;
    }
    if (a.latency) rc = run_latency(&a, rt);
    else if (a.data) rc = run_eval(&a, rt);
    else rc = run_predict(&a, rt);
    mvmoe_run_close(rt);
    free(a.images);
    return rc;
}
