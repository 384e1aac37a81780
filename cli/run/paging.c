/* mvmoe-run --page-report I: expert paging, measured (issue 17 item 5; docs/EDGE.md). From a
 * cold page cache, one image at batch 1 on one thread; which bytes of the checkpoint the
 * process read, and which experts' pages among them.
 *
 * How "read" is measured: the file's pages are first dropped from the page cache
 * (posix_fadvise DONTNEED: clean pages of a file no one maps), the runtime maps it with
 * MADV_RANDOM (no read-ahead: a fault reads its one page; fault-around maps only pages already
 * cached), and mincore() then says which pages are in the cache: the pages this process
 * faulted in (the header, read at open, and what the image touched). An expert counts as
 * touched when any page lying wholly inside its tensors is resident (a page it shares with a
 * neighbouring tensor may have come in for that neighbour). If the pages cannot be dropped
 * (another process maps the file, or a file system without a page cache such as tmpfs), the
 * report says "cold": false. Linux (mincore, posix_fadvise, getrusage). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "data.h"
#include "run_cli.h"

typedef struct {
    int block, expert;
    size_t bytes, interior, resident_open, resident; /* interior: whole pages inside its tensors */
} expert_pages;

/* Pages wholly inside [off, off+len) that vec marks resident; *whole gets their count. */
static size_t resident_inside(const unsigned char *vec, size_t off, size_t len, size_t ps, size_t *whole) {
    const size_t p0 = (off + ps - 1) / ps, p1 = (off + len) / ps;
    size_t r = 0;
    *whole = p1 > p0 ? p1 - p0 : 0;
    for (size_t p = p0; p < p1; p++) r += vec[p] & 1;
    return r;
}

static size_t count_resident(const unsigned char *vec, size_t pages) {
    size_t r = 0;
    for (size_t p = 0; p < pages; p++) r += vec[p] & 1;
    return r;
}

int run_page_report(const run_args *a) {
    run_images im;
    char err[1024];
    if (run_idx_load(a->data, a->split, &im, err, sizeof err)) {
        fprintf(stderr, "mvmoe-run: error: %s\n", err);
        return RUN_EXIT_FAIL;
    }
    if (a->page_image >= im.n) {
        fprintf(stderr, "mvmoe-run: error: --page-report %d: the split has %d images\n", a->page_image, im.n);
        run_images_free(&im);
        return RUN_EXIT_FAIL;
    }
    /* cold: drop the file's pages from the page cache */
    const int fd = open(a->model, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fdatasync(fd);
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    mvmoe_run_options o = mvmoe_run_defaults();
    o.precision = a->int8 ? MVMOE_RUN_INT8 : MVMOE_RUN_FP32;
    o.threads = 1;
    o.random_access = 1;
    o.adaptive_k = a->adaptive_k;
    mvmoe_run *rt = NULL;
    if (mvmoe_run_open(a->model, &o, &rt) != MVMOE_RUN_OK) {
        fprintf(stderr, "mvmoe-run: error: %s\n", mvmoe_run_error(rt));
        mvmoe_run_close(rt);
        run_images_free(&im);
        return RUN_EXIT_FAIL;
    }
    const mvmoe_run_info in = mvmoe_run_get_info(rt);
    int rc = 0;
    if (im.c != in.in_chans || im.h != in.img_size || im.w != in.img_size) {
        fprintf(stderr, "mvmoe-run: error: the images of '%s' are not of the model's size\n", a->data);
        rc = RUN_EXIT_FAIL;
    }
    const void *base;
    const size_t size = mvmoe_run_mapping(rt, &base), ps = (size_t)sysconf(_SC_PAGESIZE), pages = (size + ps - 1) / ps;
    unsigned char *v_open = malloc(pages), *v_img = malloc(pages);
    float *logits = malloc(sizeof(float) * (size_t)in.num_classes);
    int64_t routes[64];
    const int nt = mvmoe_run_tensor(rt, 0, NULL, NULL, NULL), ne = in.moe_layers * in.experts;
    expert_pages *ex = calloc((size_t)(ne > 0 ? ne : 1), sizeof *ex);
    if (!rc && (!v_open || !v_img || !logits || !ex)) rc = RUN_EXIT_FAIL;
    if (!rc && mincore((void *)base, size, v_open) != 0) {
        perror("mvmoe-run: error: mincore");
        rc = RUN_EXIT_FAIL;
    }
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    const double t0 = run_now();
    if (!rc && mvmoe_run_images_u8(rt, im.pixels + (size_t)a->page_image * im.c * im.h * im.w, 1, logits,
                                   in.top_k ? routes : NULL)) {
        fprintf(stderr, "mvmoe-run: error: %s\n", mvmoe_run_error(rt));
        rc = RUN_EXIT_FAIL;
    }
    const double secs = run_now() - t0;
    getrusage(RUSAGE_SELF, &r1);
    if (!rc && mincore((void *)base, size, v_img) != 0) {
        perror("mvmoe-run: error: mincore");
        rc = RUN_EXIT_FAIL;
    }
    if (rc) goto done;
    const int first_moe = in.depth - in.moe_layers;
    for (int i = 0; i < ne; i++) ex[i].block = first_moe + i / in.experts, ex[i].expert = i % in.experts;
    for (int i = 0; i < nt; i++) {
        const char *name;
        size_t off, len, whole;
        int l, e, used = 0;
        mvmoe_run_tensor(rt, i, &name, &off, &len);
        if (sscanf(name, "blocks.%d.mlp.experts.%d.%n", &l, &e, &used) != 2 || !used) continue;
        const int j = (l - first_moe) * in.experts + e;
        if (l < first_moe || e < 0 || e >= in.experts || j >= ne) continue;
        ex[j].bytes += len;
        ex[j].resident += resident_inside(v_img, off, len, ps, &whole) * ps;
        ex[j].resident_open += resident_inside(v_open, off, len, ps, &whole) * ps;
        ex[j].interior += whole * ps;
    }
    int cold = 1;
    for (int i = 0; i < ne; i++) cold &= ex[i].resident_open == 0;
    const size_t open_b = count_resident(v_open, pages) * ps, img_b = count_resident(v_img, pages) * ps;
    printf("{\"model\": ");
    run_json_str(stdout, a->model);
    printf(", \"precision\": \"%s\", \"routing\": \"%s\", \"experts\": %d, \"top_k\": %d, \"image\": %d, \"routes\": [",
           a->int8 ? "int8" : "fp32", in.routing, in.experts, in.top_k, a->page_image);
    for (int q = 0; q < in.top_k; q++) printf("%s%lld", q ? ", " : "", (long long)routes[q]);
    printf("], \"file_bytes\": %zu, \"page_bytes\": %zu, \"cold\": %s, \"resident_after_open_bytes\": %zu, "
           "\"resident_after_image_bytes\": %zu, \"minor_faults\": %ld, \"major_faults\": %ld, \"seconds\": %.6f, "
           "\"expert_pages\": [",
           size, ps, cold ? "true" : "false", open_b, img_b, r1.ru_minflt - r0.ru_minflt, r1.ru_majflt - r0.ru_majflt,
           secs);
    for (int i = 0; i < ne; i++)
        printf("%s{\"block\": %d, \"expert\": %d, \"bytes\": %zu, \"whole_page_bytes\": %zu, \"resident_bytes\": %zu, "
               "\"touched\": %s}",
               i ? ", " : "", ex[i].block, ex[i].expert, ex[i].bytes, ex[i].interior, ex[i].resident,
               ex[i].resident ? "true" : "false");
    printf("]}\n");
done:
    free(v_open);
    free(v_img);
    free(logits);
    free(ex);
    mvmoe_run_close(rt);
    run_images_free(&im);
    return rc;
}
