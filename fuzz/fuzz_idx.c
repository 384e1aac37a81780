/* Fuzz target: MNIST-style IDX datasets through mvmoe_dataset_load (format detection, the IDX
 * reader, gzip, classes.txt).
 *
 * Input: one flag byte, then up to three parts separated by FZ_SEP: the image file, the label
 * file, classes.txt. Flag bits: 0-1 how the image file is stored (0 plain name; 1 ".gz" name,
 * bytes as given (so gzip seeds and broken gzip streams); 2 ".gz" name, bytes gzip-compressed
 * here (valid streams around hostile content); 3 the "train-images.idx3-ubyte" spelling),
 * 2-3 the same for the label file, 4 write classes.txt, 5 split "test" instead of "train",
 * 6-7 --max-images 0, 1, 3 or 1000.
 * A dataset that loads must be consistent: labels below num_classes, names for each class. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "fuzz_util.h"

static void fz_idx_put(const char *split, const char *kind, const char *ext, int mode,
                       const fz_part *p) {
    char name[64];
    if (mode == 3) snprintf(name, sizeof name, "%s-%s.%s-ubyte", split, kind, ext);
    else snprintf(name, sizeof name, "%s-%s-%s-ubyte%s", split, kind, ext, mode ? ".gz" : "");
    const char *path = fz_path(name);
    if (mode != 2) {
        fz_write(path, p->p, p->n);
        return;
    }
    gzFile g = gzopen(path, "wb");
    FZ_ASSERT(g != NULL, "gzopen %s", path);
    if (p->n) FZ_ASSERT(gzwrite(g, p->p, (unsigned)p->n) == (int)p->n, "gzwrite");
    FZ_ASSERT(gzclose(g) == Z_OK, "gzclose");
}

int mvmoe_fuzz_idx(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    fz_part parts[3];
    int n = fz_split(data + 1, size - 1, parts, 3);
    const char *dir = fz_dir();
    const char *prefix = flags & 0x20 ? "t10k" : "train";
    static const int caps[4] = {0, 1, 3, 1000};
    fz_idx_put(prefix, "images", "idx3", flags & 3, &parts[0]);
    if (n > 1) fz_idx_put(prefix, "labels", "idx1", (flags >> 2) & 3, &parts[1]);
    if (n > 2 && (flags & 0x10)) fz_write(fz_path("classes.txt"), parts[2].p, parts[2].n);

    mvmoe_dataset ds;
    if (mvmoe_dataset_load(&ds, dir, flags & 0x20 ? "test" : "train", 0, caps[flags >> 6]) ==
        MVMOE_OK) {
        FZ_ASSERT(ds.n >= 1 && ds.c == 1 && ds.h >= 1 && ds.w >= 1, "shape %d %d %d %d", ds.n, ds.c,
                  ds.h, ds.w);
        FZ_ASSERT(caps[flags >> 6] == 0 || ds.n <= caps[flags >> 6], "cap ignored: %d", ds.n);
        FZ_ASSERT(ds.class_names != NULL && ds.num_classes >= 1, "no class names");
        for (int k = 0; k < ds.num_classes; k++) FZ_ASSERT(ds.class_names[k] != NULL, "name %d", k);
        for (int i = 0; i < ds.n; i++)
            FZ_ASSERT(ds.labels[i] >= 0 && ds.labels[i] < ds.num_classes, "label %d = %d", i,
                      ds.labels[i]);
        uint64_t sum = 0; /* touch every pixel: the buffer must be as large as it claims */
        for (size_t i = 0; i < (size_t)ds.n * ds.h * ds.w; i++) sum += ds.images[i];
        (void)sum;
    } else {
        FZ_ASSERT(ds.images == NULL && ds.labels == NULL && ds.class_names == NULL,
                  "failed load left data behind");
    }
    mvmoe_dataset_free(&ds);
    return 0;
}

#ifndef MVMOE_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return mvmoe_fuzz_idx(data, size); }
#endif
