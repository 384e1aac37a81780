/* Fuzz target: the dependency-free runtime's readers (src/runtime, include/mvmoe_run.h).
 *
 * 1. rt_json_parse on the raw bytes: accepted documents must have consistent nodes (every
 *    child and sibling index inside the array, counts matching the lists).
 * 2. The bytes as a checkpoint through mvmoe_run_open (fp32 or int8, with or without
 *    random_access, from the input's last byte): a refusal must leave a message; a model that
 *    opens and is small runs one image, whose logits must not be read out of bounds (ASan).
 * Built on its own with the runtime's sources (the runtime links nothing of libmvmoe), so it
 * does not use fuzz_util.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mvmoe_run.h"
#include "runtime/rt_json.h"

#define RT_ASSERT(cond, ...)                                                                \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "fuzz invariant broken at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fprintf(stderr, "\n");                                                          \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

static void fz_json(const uint8_t *data, size_t size) {
    rt_json doc;
    char err[160];
    if (rt_json_parse(&doc, (const char *)data, size, err, sizeof err)) {
        RT_ASSERT(err[0] && !doc.nodes && doc.n == 0, "a rejected document left state or no message");
        return;
    }
    RT_ASSERT(doc.n >= 1, "an accepted document has no value");
    for (int i = 0; i < doc.n; i++) {
        const rt_jnode *x = &doc.nodes[i];
        RT_ASSERT(x->child < doc.n && x->next < doc.n && x->child != i && x->next != i, "node %d links badly", i);
        if (x->type == RT_J_STR) {
            RT_ASSERT(x->off + x->len <= size, "string %d outside the text", i);
            char buf[64];
            (void)rt_json_str(&doc, i, buf, sizeof buf);
        }
        if (x->type == RT_J_ARR || x->type == RT_J_OBJ) {
            int n = 0;
            for (int c = x->child; c >= 0; c = doc.nodes[c].next) {
                n++;
                if (x->type == RT_J_OBJ) c = doc.nodes[c].next; /* the member's value */
                RT_ASSERT(n <= doc.n, "a loop in the list of node %d", i);
            }
            RT_ASSERT(n == x->count, "node %d counts %d of %d", i, n, x->count);
        }
    }
    rt_json_free(&doc);
}

static void fz_open(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "%s/mvmoe-fuzz-rt-%d.safetensors",
                           access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    FILE *f = fopen(path, "wb");
    RT_ASSERT(f != NULL, "cannot write %s", path);
    RT_ASSERT(fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write %s", path);
    const uint8_t tail = size ? data[size - 1] : 0;
    mvmoe_run_options o = mvmoe_run_defaults();
    o.precision = tail & 1 ? MVMOE_RUN_INT8 : MVMOE_RUN_FP32;
    o.random_access = (tail >> 1) & 1;
    o.threads = 1;
    mvmoe_run *rt = NULL;
    const int st = mvmoe_run_open(path, &o, &rt);
    if (st != MVMOE_RUN_OK) {
        RT_ASSERT(mvmoe_run_error(rt)[0] != 0, "status %d without a message", st);
    } else {
        const mvmoe_run_info in = mvmoe_run_get_info(rt);
        const double px = (double)in.in_chans * in.img_size * in.img_size;
        const double work = px * in.dim * (double)in.depth + (double)in.dim * in.mlp_dim * in.depth;
        if (px <= 65536 && work <= 5e7) {
            uint8_t *img = calloc((size_t)px, 1);
            float *logits = malloc(sizeof(float) * (size_t)in.num_classes);
            int64_t *routes = malloc(sizeof(int64_t) * (size_t)(in.top_k > 0 ? in.top_k : 1));
            RT_ASSERT(img && logits && routes, "out of memory");
            /* an int8 expert's tensors are checked when an image first routes to it: a damaged
             * one fails the run (FORMAT, with a message), never the open */
            const int rs = mvmoe_run_images_u8(rt, img, 1, logits, routes);
            RT_ASSERT(rs == MVMOE_RUN_OK || (rs == MVMOE_RUN_ERR_FORMAT && mvmoe_run_error(rt)[0] != 0), "run: %d %s", rs,
                      mvmoe_run_error(rt));
            for (int q = 0; rs == MVMOE_RUN_OK && q < in.top_k; q++)
                RT_ASSERT(routes[q] >= -1 && routes[q] < in.experts, "route %lld of %d experts", (long long)routes[q],
                          in.experts);
            free(img), free(logits), free(routes);
        }
    }
    mvmoe_run_close(rt);
    unlink(path);
}

int mvmoe_fuzz_runtime(const uint8_t *data, size_t size);
int mvmoe_fuzz_runtime(const uint8_t *data, size_t size) {
    fz_json(data, size);
    if (size >= 8) {
        /* the JSON of a safetensors header, when the input is one */
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = n << 8 | data[i];
        if (n <= size - 8) fz_json(data + 8, (size_t)n);
    }
    fz_open(data, size);
    return 0;
}

#ifndef MVMOE_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return mvmoe_fuzz_runtime(data, size); }
#endif
